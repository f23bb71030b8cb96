//! Biometric template protection against the real database and engine: stored vectors
//! are key-rotated embeddings, distances are preserved, one face at two tenants is
//! stored as unrelated vectors, and re-keying keeps logins working.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{Tenant, face};
use faceid_service::face::{AnalyzeOptions, Purpose};
use faceid_service::store::templates::{KeyCheck, RekeyError, check_or_record, rekey};
use pgvector::Vector;

const IP: &str = "192.0.2.44";
const KEY_A: &str = "template-key-of-tenant-a-0123456789";
const KEY_B: &str = "template-key-of-tenant-b-0123456789";

fn raw_embedding(photo: &str) -> Vec<f32> {
    let analysis = common::engine()
        .analyze_blocking(
            &face(photo),
            AnalyzeOptions {
                purpose: Purpose::Enroll,
                liveness: false,
            },
        )
        .unwrap();
    analysis.face.embedding.as_slice().to_vec()
}

async fn stored(t: &Tenant, username: &str) -> Vec<f32> {
    let v: Vector = sqlx::query_scalar("SELECT face_embedding FROM users WHERE username = $1")
        .bind(username)
        .fetch_one(t.state.db())
        .await
        .unwrap();
    v.to_vec()
}

fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

fn correlation(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len() as f32;
    let (ma, mb) = (a.iter().sum::<f32>() / n, b.iter().sum::<f32>() / n);
    let cov: f32 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f32 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f32 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va.sqrt() * vb.sqrt())
}

#[tokio::test]
async fn stored_templates_are_protected_distance_preserving_and_unlinkable() {
    let a = Tenant::new(&["--template-key", KEY_A]).await;
    let b = Tenant::new(&["--template-key", KEY_B]).await;
    for t in [&a, &b] {
        t.register("obama", &face("genuine/barack_obama_1.jpg"), IP)
            .await
            .expect(201);
        t.register("bush", &face("genuine/george_w_bush_1.jpg"), IP)
            .await
            .expect(201);
    }
    let raw_obama = raw_embedding("genuine/barack_obama_1.jpg");
    let raw_bush = raw_embedding("genuine/george_w_bush_1.jpg");
    let (a_obama, b_obama) = (stored(&a, "obama").await, stored(&b, "obama").await);
    let a_bush = stored(&a, "bush").await;

    // Not the raw embedding.
    assert!(
        distance(&a_obama, &raw_obama) > 0.5,
        "stored vector is the raw embedding"
    );
    assert!(correlation(&a_obama, &raw_obama).abs() < 0.45);
    // Distances survive exactly (to float rounding).
    let (raw_d, stored_d) = (distance(&raw_obama, &raw_bush), distance(&a_obama, &a_bush));
    assert!((raw_d - stored_d).abs() < 1e-4, "{raw_d} vs {stored_d}");
    // The same face at two tenants: unrelated vectors.
    assert!(
        correlation(&a_obama, &b_obama).abs() < 0.45,
        "r = {}",
        correlation(&a_obama, &b_obama)
    );
    assert!(distance(&a_obama, &b_obama) > 1.0);
    // And logins work as before.
    a.login(&face("genuine/barack_obama_2.jpg"), None, IP)
        .await
        .expect(200);
}

#[tokio::test]
async fn rekeying_keeps_logins_working_and_checks_the_old_key() {
    let schema = common::unique_schema("t");
    let before = Tenant::with_schema(&schema, &["--template-key", KEY_A]).await;
    assert_eq!(
        check_or_record(before.state.db(), before.state.templates())
            .await
            .unwrap(),
        KeyCheck::Recorded
    );
    before
        .register("powell", &face("genuine/colin_powell_1.jpg"), IP)
        .await
        .expect(201);
    before
        .register("bush", &face("genuine/george_w_bush_1.jpg"), IP)
        .await
        .expect(201);
    let old_vector = stored(&before, "powell").await;

    let after = Tenant::with_schema(&schema, &["--template-key", KEY_B]).await;
    assert!(matches!(
        check_or_record(after.state.db(), after.state.templates())
            .await
            .unwrap(),
        KeyCheck::Mismatch(_)
    ));
    // The wrong old key is refused and changes nothing.
    let err = rekey(
        before.state.db(),
        after.state.templates(),
        before.state.templates(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RekeyError::WrongOldKey { .. }), "{err}");
    assert_eq!(stored(&before, "powell").await, old_vector);

    let done = rekey(
        before.state.db(),
        before.state.templates(),
        after.state.templates(),
    )
    .await
    .unwrap();
    assert_eq!((done.users, done.faces), (2, 2));
    assert_eq!(
        check_or_record(after.state.db(), after.state.templates())
            .await
            .unwrap(),
        KeyCheck::Matches
    );
    assert_ne!(stored(&after, "powell").await, old_vector);
    // The new key logs the right people in; the old one no longer matches anyone.
    let login = after
        .login(&face("genuine/colin_powell_2.jpg"), None, IP)
        .await;
    login.expect(200);
    assert_eq!(login.json["user"]["username"], "powell");
    after
        .login(&face("genuine/george_w_bush_3.jpg"), Some("bush"), IP)
        .await
        .expect(200);
    before
        .login(&face("genuine/colin_powell_2.jpg"), None, IP)
        .await
        .expect_error(401, "face_not_recognized");
}

#[tokio::test]
async fn a_schema_recorded_before_the_matrix_fingerprint_is_upgraded_once() {
    let t = Tenant::new(&["--template-key", KEY_A]).await;
    let key = t.state.templates();
    // What a schema written by an older version holds: the key's fingerprint alone.
    sqlx::query("INSERT INTO template_protection (fingerprint) VALUES ($1)")
        .bind(key.legacy_fingerprint())
        .execute(t.state.db())
        .await
        .unwrap();
    assert_eq!(
        check_or_record(t.state.db(), key).await.unwrap(),
        KeyCheck::Upgraded
    );
    assert_eq!(
        check_or_record(t.state.db(), key).await.unwrap(),
        KeyCheck::Matches
    );
    let stored: String = sqlx::query_scalar("SELECT fingerprint FROM template_protection")
        .fetch_one(t.state.db())
        .await
        .unwrap();
    assert_eq!(stored, key.fingerprint());
    assert!(stored.starts_with("q1-"), "{stored}");
    // Another key's legacy fingerprint is still a mismatch.
    let other = Tenant::new(&["--template-key", KEY_B]).await;
    sqlx::query("INSERT INTO template_protection (fingerprint) VALUES ($1)")
        .bind(key.legacy_fingerprint())
        .execute(other.state.db())
        .await
        .unwrap();
    assert!(matches!(
        check_or_record(other.state.db(), other.state.templates())
            .await
            .unwrap(),
        KeyCheck::Mismatch(_)
    ));
}

#[tokio::test]
async fn templates_of_another_network_are_never_compared() {
    let t = Tenant::new(&[]).await;
    let reg = t
        .register("powell", &face("genuine/colin_powell_1.jpg"), IP)
        .await;
    reg.expect(201);
    let network: String = sqlx::query_scalar("SELECT network FROM face_embeddings")
        .fetch_one(t.state.db())
        .await
        .unwrap();
    assert_eq!(network, faceid_service::flows::RECOGNITION_NETWORK);
    // As if the account had been enrolled by another network.
    sqlx::query("UPDATE face_embeddings SET network = 'another-net/512'")
        .execute(t.state.db())
        .await
        .unwrap();
    sqlx::query("UPDATE users SET network = 'another-net/512'")
        .execute(t.state.db())
        .await
        .unwrap();
    let same_photo = face("genuine/colin_powell_1.jpg");
    t.login(&same_photo, None, IP)
        .await
        .expect_error(401, "face_not_recognized");
    t.login(&same_photo, Some("powell"), IP)
        .await
        .expect_error(401, "face_not_recognized");
    t.enrol(&reg.access_token(), &same_photo, IP)
        .await
        .expect_error(400, "face_mismatch");
    // The face is no duplicate of a template it cannot be compared with.
    t.register("powell2", &same_photo, IP).await.expect(201);
}
