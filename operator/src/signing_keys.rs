//! Rotation of a tenant's token signing keys (pure: the clock and the key generator are
//! parameters).
//!
//! The keys live in the tenant's credentials Secret as the `SIGNING_KEYS` document
//! ([`faceid_keys::KeyDocument`]); the operator never regenerates a key it finds there.
//! For each algorithm (EdDSA and ES256) [`plan`]:
//!
//! 1. drops the keys whose `expires` has passed (every token they signed has expired);
//! 2. creates a first key when the algorithm has none (it signs at once: nothing was
//!    signed before);
//! 3. when the signing key is at least `rotationPeriodDays` old and no successor waits,
//!    creates the successor with `not_before` = now + [`PUBLISH_AHEAD`] (it is in every
//!    pod's key set and every client's JWKS cache before its first token), and sets the
//!    old key's `expires` to that instant + `overlapMinutes` (at least the access-token
//!    lifetime, checked at admission): the old key signs until the successor starts,
//!    then only verifies until its last token has expired, then leaves.
//!
//! Each replica chooses the signing key by the clock (the latest `not_before` that has
//! passed), so all switch together without another rollout.

use chrono::{DateTime, Duration, Utc};
use faceid_keys::{Alg, KeyDocument, KeyEntry};

use crate::crd::FaceIdTenantSpec;

/// How long before a new key signs it is published: longer than a rollout of the
/// tenant's pods and than the JWKS's cache lifetime (300 s).
pub const PUBLISH_AHEAD: Duration = Duration::hours(1);

/// The rotation the tenant declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Age of the signing key at which its successor is made.
    pub period: Duration,
    /// How long a replaced key keeps verifying after its successor starts signing.
    pub overlap: Duration,
}

impl Rotation {
    /// `spec.tokens.signingKeys`.
    pub fn of(spec: &FaceIdTenantSpec) -> Self {
        let k = &spec.tokens.signing_keys;
        Self {
            period: Duration::days(i64::from(k.rotation_period_days.max(1))),
            overlap: Duration::minutes(i64::from(k.overlap_minutes.max(1))),
        }
    }
}

/// What a pass changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A first key of an algorithm, signing at once.
    Created {
        /// Algorithm.
        alg: Alg,
        /// The new key.
        kid: String,
    },
    /// A successor published; it signs from `signs_from`, the old key verifies until
    /// `old_expires`.
    Rotated {
        /// Algorithm.
        alg: Alg,
        /// The key being replaced.
        old: String,
        /// The successor.
        new: String,
        /// When the successor starts signing.
        signs_from: DateTime<Utc>,
        /// When the old key stops verifying and leaves the JWKS.
        old_expires: DateTime<Utc>,
    },
    /// A key whose overlap has passed, removed.
    Dropped {
        /// Algorithm.
        alg: Alg,
        /// The key removed.
        kid: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Created { alg, kid } => write!(f, "created {alg} signing key {kid}"),
            Change::Rotated {
                alg,
                old,
                new,
                signs_from,
                old_expires,
            } => write!(
                f,
                "rotated the {alg} signing key: {new} published, signing from {}; {old} verifies until {}",
                signs_from.to_rfc3339(),
                old_expires.to_rfc3339()
            ),
            Change::Dropped { alg, kid } => {
                write!(
                    f,
                    "dropped {alg} key {kid}: every token it signed has expired"
                )
            }
        }
    }
}

/// The document to store, what changed, and when to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The keys to store.
    pub document: KeyDocument,
    /// What changed from the stored document.
    pub changes: Vec<Change>,
    /// The next instant something is due (a rotation, a key starting to sign, an
    /// expiry); `None` never happens with at least one key per algorithm.
    pub next: Option<DateTime<Utc>>,
}

/// Plans the keys at `now` from the stored document (`None`: none stored yet);
/// `generate(alg, created, not_before)` makes a new key.
pub fn plan(
    stored: Option<&KeyDocument>,
    rotation: Rotation,
    now: DateTime<Utc>,
    generate: &mut dyn FnMut(Alg, DateTime<Utc>, Option<DateTime<Utc>>) -> KeyEntry,
) -> Plan {
    let mut changes = Vec::new();
    let mut keys = Vec::new();
    for key in stored.map(|d| d.keys.clone()).unwrap_or_default() {
        if key.trusted_at(now) {
            keys.push(key);
        } else {
            changes.push(Change::Dropped {
                alg: key.alg,
                kid: key.kid,
            });
        }
    }
    let mut document = KeyDocument { keys };
    for alg in Alg::ALL {
        if !document.keys.iter().any(|k| k.alg == alg) {
            let key = generate(alg, now, None);
            changes.push(Change::Created {
                alg,
                kid: key.kid.clone(),
            });
            document.keys.push(key);
            continue;
        }
        let waiting = document
            .keys
            .iter()
            .any(|k| k.alg == alg && k.signs_from() > now);
        let Some(signing) = document.signing(alg, now).cloned() else {
            continue;
        };
        if waiting || now < signing.created + rotation.period {
            continue;
        }
        let next = generate(alg, now, Some(now + PUBLISH_AHEAD));
        let old_expires = next.signs_from() + rotation.overlap;
        for key in document.keys.iter_mut() {
            if key.alg == alg && key.expires.is_none() {
                key.expires = Some(old_expires);
            }
        }
        changes.push(Change::Rotated {
            alg,
            old: signing.kid.clone(),
            new: next.kid.clone(),
            signs_from: next.signs_from(),
            old_expires,
        });
        document.keys.push(next);
    }
    let next = next_due(&document, rotation, now);
    Plan {
        document,
        changes,
        next,
    }
}

/// The next instant after `now` at which [`plan`] or the signing key changes.
fn next_due(
    document: &KeyDocument,
    rotation: Rotation,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut due = Vec::new();
    for key in &document.keys {
        due.extend(key.expires);
        if key.signs_from() > now {
            due.push(key.signs_from());
        }
    }
    for alg in Alg::ALL {
        let waiting = document
            .keys
            .iter()
            .any(|k| k.alg == alg && k.signs_from() > now);
        if let Some(signing) = document.signing(alg, now)
            && !waiting
        {
            due.push(signing.created + rotation.period);
        }
    }
    due.into_iter().filter(|t| *t > now).min()
}

/// How a key stands at `now`: `signing`, `next` (published, not signing yet) or
/// `retiring` (replaced, verifying until it expires).
pub fn state(document: &KeyDocument, key: &KeyEntry, now: DateTime<Utc>) -> &'static str {
    if key.signs_from() > now {
        "next"
    } else if document
        .signing(key.alg, now)
        .is_some_and(|s| s.kid == key.kid)
    {
        "signing"
    } else {
        "retiring"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Deterministic keys: kid `<alg>-<n>` over a fresh key (the tests look at the
    /// document, not at the key material).
    fn generator() -> impl FnMut(Alg, DateTime<Utc>, Option<DateTime<Utc>>) -> KeyEntry {
        let mut n = 0;
        move |alg, created, not_before| {
            n += 1;
            let mut key = KeyEntry::generate(alg, created, not_before);
            key.kid = format!("{alg}-{n}");
            key
        }
    }

    const ROTATION: Rotation = Rotation {
        period: Duration::days(30),
        overlap: Duration::minutes(60),
    };

    fn kids(doc: &KeyDocument) -> Vec<&str> {
        doc.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    #[test]
    fn a_new_tenant_gets_one_key_per_algorithm_signing_at_once() {
        let now = t("2026-01-01T00:00:00Z");
        let mut gen_ = generator();
        let p = plan(None, ROTATION, now, &mut gen_);
        assert_eq!(kids(&p.document), ["EdDSA-1", "ES256-2"]);
        assert_eq!(p.changes.len(), 2);
        assert!(matches!(
            p.changes[0],
            Change::Created {
                alg: Alg::EdDsa,
                ..
            }
        ));
        assert_eq!(p.document.signing(Alg::EdDsa, now).unwrap().kid, "EdDSA-1");
        assert_eq!(p.next, Some(now + Duration::days(30)));
        p.document.check().unwrap();
    }

    #[test]
    fn stored_keys_are_never_regenerated() {
        let now = t("2026-01-01T00:00:00Z");
        let mut gen_ = generator();
        let first = plan(None, ROTATION, now, &mut gen_).document;
        for later in [now, now + Duration::days(1), now + Duration::days(29)] {
            let again = plan(Some(&first), ROTATION, later, &mut gen_);
            assert_eq!(again.document, first, "at {later}");
            assert!(again.changes.is_empty());
        }
    }

    /// A whole rotation: published ahead, signing at `not_before`, the old key verifying
    /// through the overlap, then dropped; each step due at the instant [`Plan::next`] said.
    #[test]
    fn a_rotation_publishes_ahead_switches_then_drops_after_the_overlap() {
        let t0 = t("2026-01-01T00:00:00Z");
        let mut gen_ = generator();
        let first = plan(None, ROTATION, t0, &mut gen_);
        let due = first.next.unwrap();
        assert_eq!(due, t0 + ROTATION.period);

        // One second early: nothing.
        let early = plan(
            Some(&first.document),
            ROTATION,
            due - Duration::seconds(1),
            &mut gen_,
        );
        assert!(early.changes.is_empty());

        let rotated = plan(Some(&first.document), ROTATION, due, &mut gen_);
        let d = &rotated.document;
        assert_eq!(kids(d), ["EdDSA-1", "ES256-2", "EdDSA-3", "ES256-4"]);
        let switch = due + PUBLISH_AHEAD;
        let drop_at = switch + ROTATION.overlap;
        assert_eq!(
            rotated.changes[0],
            Change::Rotated {
                alg: Alg::EdDsa,
                old: "EdDSA-1".into(),
                new: "EdDSA-3".into(),
                signs_from: switch,
                old_expires: drop_at,
            }
        );
        // Until the switch the old key signs; the new one is published already.
        assert_eq!(
            d.signing(Alg::EdDsa, switch - Duration::seconds(1))
                .unwrap()
                .kid,
            "EdDSA-1"
        );
        assert_eq!(state(d, &d.keys[2], due), "next");
        assert_eq!(d.trusted(due).count(), 4);
        assert_eq!(rotated.next, Some(switch));

        // At the switch the new key signs, the old one only verifies.
        let switched = plan(Some(d), ROTATION, switch, &mut gen_);
        assert!(switched.changes.is_empty());
        assert_eq!(
            switched.document.signing(Alg::EdDsa, switch).unwrap().kid,
            "EdDSA-3"
        );
        assert_eq!(state(d, &d.keys[0], switch), "retiring");
        assert_eq!(switched.next, Some(drop_at));

        // At the end of the overlap the old keys leave; the next rotation is a period
        // after the new keys were made.
        let dropped = plan(Some(&switched.document), ROTATION, drop_at, &mut gen_);
        assert_eq!(kids(&dropped.document), ["EdDSA-3", "ES256-4"]);
        assert_eq!(
            dropped.changes,
            [
                Change::Dropped {
                    alg: Alg::EdDsa,
                    kid: "EdDSA-1".into()
                },
                Change::Dropped {
                    alg: Alg::Es256,
                    kid: "ES256-2".into()
                },
            ]
        );
        assert_eq!(dropped.next, Some(due + ROTATION.period));
        dropped.document.check().unwrap();
    }

    #[test]
    fn a_missing_algorithm_is_added_without_touching_the_other() {
        let now = t("2026-01-01T00:00:00Z");
        let mut gen_ = generator();
        let only_ed = KeyDocument {
            keys: vec![gen_(Alg::EdDsa, now - Duration::days(3), None)],
        };
        let p = plan(Some(&only_ed), ROTATION, now, &mut gen_);
        assert_eq!(kids(&p.document), ["EdDSA-1", "ES256-2"]);
        assert_eq!(p.next, Some(now - Duration::days(3) + ROTATION.period));
    }

    #[test]
    fn an_overdue_key_rotates_once_not_on_every_pass() {
        let t0 = t("2026-01-01T00:00:00Z");
        let mut gen_ = generator();
        let first = plan(None, ROTATION, t0, &mut gen_).document;
        // The operator was down for a year.
        let late = t0 + Duration::days(365);
        let rotated = plan(Some(&first), ROTATION, late, &mut gen_);
        assert_eq!(rotated.document.keys.len(), 4);
        let again = plan(
            Some(&rotated.document),
            ROTATION,
            late + Duration::minutes(1),
            &mut gen_,
        );
        assert!(again.changes.is_empty(), "{:?}", again.changes);
    }
}
