//! Face-only login is closed past the gallery size measured safe for the tenant's
//! tolerance (docs/FACE_ENGINE.md, "1:N identification"): the client is asked for the
//! username instead, unless the tenant explicitly accepted the risk. Real stores, real
//! face engine, real photos.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed assertion

mod common;

use common::{Tenant, face};

const IP: &str = "192.0.2.30";

/// Distinct people, registration photo and a second photo for login.
const PEOPLE: &[(&str, &str, &str)] = &[
    (
        "colin",
        "genuine/colin_powell_1.jpg",
        "genuine/colin_powell_2.jpg",
    ),
    (
        "george",
        "genuine/george_w_bush_1.jpg",
        "genuine/george_w_bush_3.jpg",
    ),
    (
        "tony",
        "genuine/tony_blair_1.jpg",
        "genuine/tony_blair_2.jpg",
    ),
    (
        "hugo",
        "genuine/hugo_chavez_1.jpg",
        "genuine/hugo_chavez_2.jpg",
    ),
    (
        "jacques",
        "genuine/jacques_chirac_1.jpg",
        "genuine/jacques_chirac_2.jpg",
    ),
    (
        "vladimir",
        "genuine/vladimir_putin_1.jpg",
        "genuine/vladimir_putin_2.jpg",
    ),
    (
        "donald",
        "genuine/donald_rumsfeld_1.jpg",
        "genuine/donald_rumsfeld_2.jpg",
    ),
    (
        "gerhard",
        "genuine/gerhard_schroeder_1.jpg",
        "genuine/gerhard_schroeder_2.jpg",
    ),
    (
        "ariel",
        "genuine/ariel_sharon_1.jpg",
        "genuine/ariel_sharon_2.jpg",
    ),
];

async fn register_people(t: &Tenant, n: usize) {
    for (name, photo, _) in &PEOPLE[..n] {
        t.register(name, &face(photo), IP).await.expect(201);
    }
}

#[tokio::test]
async fn face_only_login_closes_past_the_safe_size_by_default() {
    // The shipped tolerance (0.6) and no risk accepted: the tenant defaults.
    let t = Tenant::new(&["--face-only-accept-risk", "false"]).await;
    let safe = faceid_limits::safe_face_only_gallery(0.6);
    let safe = usize::try_from(safe).unwrap();
    assert!(
        safe < PEOPLE.len(),
        "the test needs more people than the safe size {safe}"
    );
    register_people(&t, safe).await;
    let (name, _, login_photo) = PEOPLE[0];
    // Within the safe size face-only login works.
    t.login(&face(login_photo), None, IP).await.expect(200);

    // One past it: face-only login asks for the username, before any face work.
    let (extra, photo, _) = PEOPLE[safe];
    let extra_user = t.register(extra, &face(photo), IP).await;
    extra_user.expect(201);
    let refused = t.login(&face(login_photo), None, IP).await;
    refused.expect_error(401, "username_required");
    assert!(
        refused.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("username"),
        "{}",
        refused.text
    );
    // Not a failed attempt against anyone: nothing recorded, nobody closer to a lock.
    assert_eq!(
        t.scalar_i64("SELECT count(*) FROM failed_login_attempts")
            .await,
        0
    );
    // 1:1 with the username stays open whatever the size.
    let ok = t.login(&face(login_photo), Some(name), IP).await;
    ok.expect(200);
    assert_eq!(ok.json["user"]["username"], name);

    // Deactivating the extra account brings the gallery back within the size.
    let id = extra_user.user_id();
    t.admin_post(&format!("/api/v1/admin/users/{id}/deactivate"))
        .await
        .expect(200);
    t.login(&face(login_photo), None, IP).await.expect(200);
}

#[tokio::test]
async fn accepting_the_risk_or_a_larger_size_keeps_face_only_open() {
    let n = 4;
    for flags in [
        &["--face-only-accept-risk", "true"][..],
        &[
            "--face-only-accept-risk",
            "false",
            "--face-only-max-users",
            "4",
        ][..],
    ] {
        let t = Tenant::new(flags).await;
        register_people(&t, n).await;
        for (name, _, login_photo) in &PEOPLE[..n] {
            let r = t.login(&face(login_photo), None, IP).await;
            r.expect(200);
            assert_eq!(r.json["user"]["username"], *name, "{flags:?}");
        }
    }
    // A smaller explicit size closes it earlier than measured.
    let t = Tenant::new(&[
        "--face-only-accept-risk",
        "false",
        "--face-only-max-users",
        "0",
    ])
    .await;
    register_people(&t, 1).await;
    t.login(&face(PEOPLE[0].2), None, IP)
        .await
        .expect_error(401, "username_required");
}

#[tokio::test]
async fn login_modes_decide_what_a_login_must_carry() {
    let t = Tenant::new(&["--login-mode", "username"]).await;
    register_people(&t, 1).await;
    let (name, _, photo) = PEOPLE[0];
    // Even with one user and the risk accepted (the test default).
    t.login(&face(photo), None, IP)
        .await
        .expect_error(401, "username_required");
    t.login(&face(photo), Some(name), IP).await.expect(200);

    let t = Tenant::new(&["--login-mode", "face"]).await;
    register_people(&t, 1).await;
    t.login(&face(photo), Some(name), IP)
        .await
        .expect_error(400, "username_not_accepted");
    t.login(&face(photo), None, IP).await.expect(200);
}
