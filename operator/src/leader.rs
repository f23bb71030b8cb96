//! Leader election on a `coordination.k8s.io/v1` Lease, the protocol of client-go's
//! `leaderelection`: the holder renews `renewTime` every `retry` period; a candidate
//! takes over only once `renewTime + leaseDurationSeconds` has passed. Writes use the
//! Lease's `resourceVersion`, so two candidates can never both win the same round.
//!
//! A leader that cannot renew within the renew deadline stops leading (the binary then
//! exits and restarts as a candidate), so two replicas never reconcile at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

/// What a candidate should do with the Lease as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it and it is fresh: wait.
    Wait,
}

/// Pure decision for `identity` at `now` given the Lease's spec.
pub fn decide(
    spec: Option<&LeaseSpec>,
    identity: &str,
    now: Timestamp,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(h) if h == identity => Decision::Renew,
        Some(_) => {
            let duration = spec.lease_duration_seconds.map_or(default_duration, |s| {
                Duration::from_secs(u64::try_from(s.max(1)).unwrap_or(1))
            });
            let expires = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .and_then(|t| {
                    SignedDuration::try_from(duration)
                        .ok()
                        .and_then(|d| t.0.checked_add(d).ok())
                });
            match expires {
                Some(e) if e > now => Decision::Wait,
                _ => Decision::Acquire,
            }
        }
    }
}

/// A candidate for the leadership of one Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    retry: Duration,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// A candidate `identity` for Lease `name` (in `api`'s namespace). Renews every third
    /// of `lease_duration`.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, lease_duration: Duration) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration,
            retry: (lease_duration / 3).max(Duration::from_secs(1)),
        }
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One attempt to acquire or renew: `Ok(true)` when we hold the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration_secs()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        match decide(
            lease.spec.as_ref(),
            &self.identity,
            now,
            self.lease_duration,
        ) {
            Decision::Wait => return Ok(false),
            Decision::Renew => {
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(self.duration_secs());
            }
            Decision::Acquire => {
                spec.holder_identity = Some(self.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(self.duration_secs());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        lease.spec = Some(spec);
        // `replace` carries metadata.resourceVersion: a concurrent writer makes it 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: could not read or write the Lease")
                }
            }
            tokio::time::sleep(self.retry).await;
        }
    }

    /// Renews the Lease until leadership is lost (another holder, or no successful
    /// renewal within two thirds of the lease duration); then returns.
    pub async fn hold(&self) {
        let deadline = self.lease_duration * 2 / 3;
        let mut last = std::time::Instant::now();
        loop {
            tokio::time::sleep(self.retry).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last = std::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "leadership lost to another replica");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: renewal failed");
                    if last.elapsed() > deadline {
                        tracing::error!(lease = %self.name, "leadership lost: no renewal within the deadline");
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up (on shutdown) so another replica takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        lease.spec = Some(spec);
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, "could not release the Lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn spec(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "me", at(0), d), Decision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "me", at(0), d),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&spec("me", 0)), "me", at(100), d),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&spec("other", 0)), "me", at(10), d),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&spec("other", 0)), "me", at(16), d),
            Decision::Acquire
        );
    }
}
