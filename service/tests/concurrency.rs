//! Concurrency and faults under load, against the real PostgreSQL, Redis and face engine:
//! racing registrations of one identity, racing failed logins against one account,
//! Redis killed and restarted and PostgreSQL cut and restored while registrations run,
//! and a database too slow for its statement timeout. Every request is answered with its
//! documented status (never a 500, never past its timeout), the service recovers without
//! a restart, and no registration answered 201 is lost (rows counted afterwards).
//!
//! Loads are bounded: a few workers, a few seconds, a request cap, loopback only. Each
//! test prints its figures (requests, statuses, faults, rows) for docs/SECURITY.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed assertion

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::faults::{Cuttable, OwnRedis};
use common::{Multipart, Reply, Tenant, face, required_env};
use sqlx::Connection;
use tokio::sync::Barrier;

const IP: &str = "192.0.2.77";

/// Sends `requests` at once (released together by a barrier) and returns the replies in
/// order.
async fn all_at_once<F, Fut>(t: &Arc<Tenant>, n: usize, make: F) -> Vec<Reply>
where
    F: Fn(Arc<Tenant>, usize) -> Fut,
    Fut: std::future::Future<Output = Reply> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let fut = make(t.clone(), i);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for h in handles {
        replies.push(h.await.unwrap());
    }
    replies
}

fn tally(replies: &[Reply]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in replies {
        *m.entry(format!("{} {}", r.status.as_u16(), r.code()))
            .or_insert(0) += 1;
    }
    m
}

#[tokio::test]
async fn concurrent_registrations_of_one_identity_give_exactly_one_201() {
    // Username and e-mail uniqueness, with photos that repeat (one face, one account has
    // its own race test in takeover.rs).
    let t = Arc::new(Tenant::new(&["--allow-duplicate-faces", "true"]).await);
    let photos: Arc<Vec<Vec<u8>>> = Arc::new(
        [
            "genuine/george_w_bush_1.jpg",
            "genuine/george_w_bush_3.jpg",
            "genuine/colin_powell_1.jpg",
            "genuine/barack_obama_1.jpg",
        ]
        .iter()
        .map(|p| face(p))
        .collect(),
    );

    // One username (in different cases) with different e-mails, then one e-mail (in
    // different cases) with different usernames: `form(i)` is racer i's (username, e-mail).
    type Form = fn(usize) -> (String, String);
    let cases: [(&str, Form); 2] = [
        ("same username", |i| {
            let name = if i % 2 == 0 { "samename" } else { "SameName" };
            (name.to_owned(), format!("user{i}@example.com"))
        }),
        ("same e-mail", |i| {
            let email = if i % 2 == 0 {
                "same@example.com"
            } else {
                "SAME@Example.COM"
            };
            (format!("mailuser{i}"), email.to_owned())
        }),
    ];
    for (what, form) in cases {
        let p = photos.clone();
        let replies = all_at_once(&t, 6, move |t, i| {
            let p = p.clone();
            async move {
                let (username, email) = form(i);
                t.send(
                    Multipart::registration(
                        &username,
                        &email,
                        "correct horse battery",
                        &p[i % p.len()],
                    )
                    .request("/api/v1/auth/register"),
                    IP,
                )
                .await
            }
        })
        .await;
        let counts = tally(&replies);
        eprintln!("{what} x6: {counts:?}");
        assert_eq!(counts.get("201 <none>"), Some(&1), "{counts:?}");
        assert_eq!(counts.get("400 user_exists"), Some(&5), "{counts:?}");
    }

    assert_eq!(t.scalar_i64("SELECT count(*) FROM users").await, 2);
    assert_eq!(
        t.scalar_i64("SELECT count(*) FROM face_embeddings").await,
        2
    );
    assert_eq!(
        t.scalar_i64("SELECT count(*) FROM refresh_tokens").await,
        2,
        "tokens issued only to the winners"
    );
}

/// `n` failed 1:1 logins against `username` at once, with someone else's face.
async fn failed_logins_at_once(t: &Arc<Tenant>, username: &'static str, n: usize) -> Vec<Reply> {
    let strangers: Arc<Vec<Vec<u8>>> = Arc::new(
        [
            "genuine/george_w_bush_3.jpg",
            "genuine/tony_blair_1.jpg",
            "genuine/hugo_chavez_2.jpg",
        ]
        .iter()
        .map(|p| face(p))
        .collect(),
    );
    all_at_once(t, n, move |t, i| {
        let s = strangers.clone();
        async move { t.login(&s[i % s.len()], Some(username), IP).await }
    })
    .await
}

#[tokio::test]
async fn concurrent_failed_logins_are_all_counted_and_lock_at_the_threshold() {
    // The account-wide lock (failures from every client together); one client's own
    // lockout is read from the same rows, so counting them all is what matters.
    let threshold = 5;
    let t = Arc::new(
        Tenant::new(&[
            "--account-lock-failures",
            &threshold.to_string(),
            "--max-failed-login-attempts",
            "100",
            "--lockout-minutes",
            "5",
        ])
        .await,
    );
    let powell = t
        .register("powell", &face("genuine/colin_powell_1.jpg"), IP)
        .await;
    powell.expect(201);
    let obama = t
        .register("obama", &face("genuine/barack_obama_1.jpg"), IP)
        .await;
    obama.expect(201);

    // One fewer than the threshold, all at once: every one counted, no lock yet.
    let replies = failed_logins_at_once(&t, "obama", threshold - 1).await;
    let counts = tally(&replies);
    assert_eq!(
        counts.get("401 face_not_recognized"),
        Some(&(threshold - 1)),
        "{counts:?}"
    );
    let counted = t
        .scalar_i64(&format!(
            "SELECT count(*) FROM failed_login_attempts WHERE user_id = '{}'",
            obama.user_id()
        ))
        .await;
    assert_eq!(counted, threshold as i64 - 1);
    // The owner, from another client (the attacking one must now wait between attempts).
    t.login(
        &face("genuine/barack_obama_2.jpg"),
        Some("obama"),
        "203.0.113.9",
    )
    .await
    .expect(200);

    // Exactly the threshold, all at once: a lost update would leave every request seeing
    // fewer than `threshold` failures and the account unlocked.
    let replies = failed_logins_at_once(&t, "powell", threshold).await;
    let counts = tally(&replies);
    eprintln!("{threshold} failed logins at once: {counts:?}");
    assert_eq!(
        counts.get("401 face_not_recognized"),
        Some(&threshold),
        "{counts:?}"
    );
    let counted = t
        .scalar_i64(&format!(
            "SELECT count(*) FROM failed_login_attempts WHERE user_id = '{}'",
            powell.user_id()
        ))
        .await;
    assert_eq!(counted, threshold as i64, "every failure recorded");
    let locked: bool =
        sqlx::query_scalar("SELECT is_locked AND locked_until > now() FROM users WHERE id = $1")
            .bind(uuid::Uuid::parse_str(&powell.user_id()).unwrap())
            .fetch_one(t.state.db())
            .await
            .unwrap();
    assert!(locked, "the account locks at the threshold");
    // The genuine face is refused now, with the documented 423.
    let reply = t.login(&face("genuine/colin_powell_2.jpg"), None, IP).await;
    reply.expect_error(423, "account_locked");
    assert!(reply.headers.contains_key("retry-after"));
}

/// One registration request of a load run.
#[derive(Debug)]
struct Sent {
    username: String,
    status: u16,
    code: String,
    /// When it started, from the start of the run.
    at: Duration,
    took: Duration,
}

/// What the fault script of a load run sees: every answered request so far, and when
/// the run started.
#[derive(Clone)]
struct Progress {
    log: Arc<std::sync::Mutex<Vec<Sent>>>,
    started: Instant,
}

impl Progress {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits (bounded) until `done` holds for the answered requests.
    async fn until(&self, what: &str, done: impl Fn(&[Sent]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if done(&self.log.lock().unwrap()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "load run: gave up waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `workers` workers register new users (unique names) back to back, at most `cap`
/// requests in all, while `fault` runs beside them; they stop once `fault` has finished
/// and a request started after that has been answered. The fault script is driven by
/// what it observes (not by wall-clock times), so a slow machine cannot make it miss
/// its window.
async fn registrations_under<F, Fut>(
    t: &Arc<Tenant>,
    workers: usize,
    cap: usize,
    fault: F,
) -> Vec<Sent>
where
    F: FnOnce(Progress) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let photos: Arc<Vec<Vec<u8>>> = Arc::new(
        [
            "genuine/george_w_bush_1.jpg",
            "genuine/colin_powell_1.jpg",
            "genuine/barack_obama_1.jpg",
            "genuine/hugo_chavez_1.jpg",
        ]
        .iter()
        .map(|p| face(p))
        .collect(),
    );
    let progress = Progress {
        log: Arc::new(std::sync::Mutex::new(Vec::new())),
        started: Instant::now(),
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (t, photos, sent, stop, progress) = (
                t.clone(),
                photos.clone(),
                sent.clone(),
                stop.clone(),
                progress.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst)
                    && sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < cap
                {
                    let username = format!("load{w}x{i}");
                    let at = progress.now();
                    let reply = t
                        .register(&username, &photos[(w + i) % photos.len()], IP)
                        .await;
                    let failed = reply.status.as_u16() != 201;
                    progress.log.lock().unwrap().push(Sent {
                        username,
                        status: reply.status.as_u16(),
                        code: reply.code().to_owned(),
                        at,
                        took: progress.now() - at,
                    });
                    i += 1;
                    if failed {
                        // Failing fast: do not spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        })
        .collect();
    fault(progress.clone()).await;
    let ended = progress.now();
    progress
        .until("a request after the fault was answered", |log| {
            log.iter().any(|s| s.at >= ended)
        })
        .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for h in handles {
        h.await.unwrap();
    }
    std::mem::take(&mut *progress.log.lock().unwrap())
}

/// Every request of a fault run was either created (201) or refused as unavailable (503),
/// and none hung: the pool's acquire timeout (3 s) plus a statement at most.
fn assert_created_or_refused_promptly(sent: &[Sent]) {
    for s in sent {
        assert!(
            matches!(
                (s.status, s.code.as_str()),
                (201, _) | (503, "service_unavailable")
            ),
            "{s:?}"
        );
        assert!(s.took < Duration::from_secs(10), "{s:?} hung");
    }
}

fn summary(sent: &[Sent]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in sent {
        *m.entry(format!("{} {}", s.status, s.code)).or_insert(0) += 1;
    }
    m
}

/// Usernames in the tenant's table.
async fn stored_usernames(t: &Tenant) -> std::collections::BTreeSet<String> {
    sqlx::query_scalar::<_, String>("SELECT username FROM users")
        .fetch_all(t.state.db())
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn wait_ready(t: &Tenant, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if t.get("/ready", None).await.status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_killed_and_restarted_under_load() {
    let mut redis = OwnRedis::start(OwnRedis::free_port());
    let port = redis.port;
    // The load repeats a few photos under new names: duplicate faces allowed.
    let t = Arc::new(
        Tenant::new(&[
            "--redis-url",
            &redis.url(),
            "--allow-duplicate-faces",
            "true",
        ])
        .await,
    );
    let (mut kill_at, mut restart_at) = (Duration::ZERO, Duration::ZERO);
    let (kill_ref, restart_ref, redis_ref) = (&mut kill_at, &mut restart_at, &mut redis);
    let sent = registrations_under(&t, 3, 300, |p| async move {
        p.until("the load is flowing", |log| {
            log.iter().any(|s| s.status == 201)
        })
        .await;
        let killed = p.now();
        *kill_ref = killed;
        redis_ref.stop();
        p.until("a request sent while Redis was down was answered", |log| {
            log.iter().any(|s| s.at >= killed)
        })
        .await;
        *restart_ref = p.now();
        *redis_ref = OwnRedis::start(port);
    })
    .await;
    let counts = summary(&sent);
    eprintln!(
        "redis fault run: {} registrations, {counts:?}, killed at {kill_at:?}, restarted at {restart_at:?}",
        sent.len()
    );
    assert_created_or_refused_promptly(&sent);
    assert!(
        sent.iter().any(|s| s.status == 503),
        "the fault was never seen: {counts:?}"
    );
    // No registration answered 201 is lost; none refused was half-written.
    let created: Vec<&Sent> = sent.iter().filter(|s| s.status == 201).collect();
    let stored = stored_usernames(&t).await;
    for s in &created {
        assert!(stored.contains(&s.username), "{} lost", s.username);
    }
    assert_eq!(stored.len(), created.len(), "users rows == 201 answers");
    // Recovered without a restart.
    wait_ready(&t, Duration::from_secs(10)).await;
    t.register("afterwards", &face("genuine/tony_blair_1.jpg"), IP)
        .await
        .expect(201);
    drop(redis);
}

#[tokio::test]
async fn postgres_cut_and_restored_under_load() {
    let (proxy, proxied) = Cuttable::in_front_of(&required_env("DATABASE_URL")).await;
    let schema = common::unique_schema("t");
    // The load repeats a few photos under new names: duplicate faces allowed.
    let t = Arc::new(
        Tenant::with_schema_and_url(&schema, &proxied, &["--allow-duplicate-faces", "true"]).await,
    );
    let (mut cut_at, mut restore_at) = (Duration::ZERO, Duration::ZERO);
    let (cut_ref, restore_ref, proxy_ref) = (&mut cut_at, &mut restore_at, &proxy);
    let sent = registrations_under(&t, 3, 300, |p| async move {
        p.until("the load is flowing", |log| {
            log.iter().any(|s| s.status == 201)
        })
        .await;
        let cut = p.now();
        *cut_ref = cut;
        proxy_ref.down();
        p.until(
            "a request sent while PostgreSQL was cut was answered",
            |log| log.iter().any(|s| s.at >= cut),
        )
        .await;
        *restore_ref = p.now();
        proxy_ref.restore();
    })
    .await;
    let counts = summary(&sent);
    eprintln!(
        "postgres fault run: {} registrations, {counts:?}, cut at {cut_at:?}, restored at {restore_at:?}",
        sent.len()
    );
    assert_created_or_refused_promptly(&sent);
    assert!(
        sent.iter().any(|s| s.status == 503 && s.at >= cut_at),
        "the fault was never seen: {counts:?}"
    );
    wait_ready(&t, Duration::from_secs(15)).await;
    let created: Vec<&Sent> = sent.iter().filter(|s| s.status == 201).collect();
    let stored = stored_usernames(&t).await;
    for s in &created {
        assert!(
            stored.contains(&s.username),
            "{} answered 201 but lost",
            s.username
        );
    }
    // A registration cut between its commit and its answer is stored but answered 503;
    // it is complete (user, template) and the person can log in. Report how many.
    let unanswered = stored.len() - created.len();
    eprintln!(
        "postgres fault run: {} users stored for {} answered 201 ({unanswered} committed but answered 503)",
        stored.len(),
        created.len()
    );
    let orphans = t
        .scalar_i64(
            "SELECT count(*) FROM users u WHERE NOT EXISTS
             (SELECT 1 FROM face_embeddings f WHERE f.user_id = u.id)",
        )
        .await;
    assert_eq!(orphans, 0, "a user without its template");
    // Recovered without a restart.
    t.register("afterwards", &face("genuine/tony_blair_1.jpg"), IP)
        .await
        .expect(201);
}

#[tokio::test]
async fn a_stalled_database_answers_503_within_the_statement_timeout() {
    let t = Tenant::new(&["--database-statement-timeout-ms", "300"]).await;
    let reg = t
        .register("rumsfeld", &face("genuine/donald_rumsfeld_1.jpg"), IP)
        .await;
    reg.expect(201);
    let token = reg.access_token();
    let before = t.scalar_i64("SELECT count(*) FROM users").await;

    // Another session holds the users table while the requests run.
    let mut locker = sqlx::PgConnection::connect(&required_env("DATABASE_URL"))
        .await
        .unwrap();
    let mut tx = locker.begin().await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE \"{}\".users IN ACCESS EXCLUSIVE MODE",
        t.schema
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    let stalled_at = Instant::now();

    let started = Instant::now();
    t.get("/api/v1/auth/me", Some(&token))
        .await
        .expect_error(503, "service_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let reply = t
        .register("wolfowitz", &face("genuine/george_w_bush_1.jpg"), IP)
        .await;
    reply.expect_error(503, "service_unavailable");
    assert!(reply.headers.contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    t.login(&face("genuine/donald_rumsfeld_2.jpg"), None, IP)
        .await
        .expect_error(503, "service_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stalled_at.elapsed() < Duration::from_secs(4),
        "the checks outlasted the stall"
    );

    tx.commit().await.unwrap();
    drop(locker);
    // Recovered without a restart; the refused registration left nothing behind.
    t.get("/api/v1/auth/me", Some(&token)).await.expect(200);
    assert_eq!(t.scalar_i64("SELECT count(*) FROM users").await, before);
    t.register("wolfowitz", &face("genuine/george_w_bush_1.jpg"), IP)
        .await
        .expect(201);
}

#[tokio::test]
async fn one_refresh_token_presented_concurrently_rotates_once() {
    let t = Arc::new(Tenant::new(&[]).await);
    let reg = t
        .register("chirac", &face("genuine/jacques_chirac_1.jpg"), IP)
        .await;
    reg.expect(201);
    let token = Arc::new(reg.refresh_token());
    let replies = all_at_once(&t, 6, move |t, _| {
        let token = token.clone();
        async move { t.refresh(&token).await }
    })
    .await;
    let counts = tally(&replies);
    eprintln!("one refresh token x6: {counts:?}");
    assert_eq!(counts.get("200 <none>"), Some(&1), "{counts:?}");
    assert_eq!(
        counts.get("401 invalid_refresh_token"),
        Some(&5),
        "{counts:?}"
    );
    // The losers were replays: the family is revoked, the winner's successor included.
    let winner = replies.iter().find(|r| r.status == 200).unwrap();
    t.refresh(&winner.refresh_token())
        .await
        .expect_error(401, "invalid_refresh_token");
    assert_eq!(
        t.scalar_i64("SELECT count(*) FROM refresh_tokens").await,
        2,
        "one rotation, one successor"
    );
    assert_eq!(
        t.scalar_i64(
            "SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL AND used_at IS NULL"
        )
        .await,
        0
    );
}
