//! Takeover paths through the face decision, each tried as an attacker would, against the
//! real stores and face engine with real photos: a user hiding rivals from the ambiguity
//! check, one face registering several accounts, and a stolen token walking an account's
//! face to another person's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed assertion

mod common;

use common::{Tenant, face};
use image::{ImageFormat, RgbImage};

const IP: &str = "192.0.2.40";

fn decode(path: &str) -> RgbImage {
    image::load_from_memory(&face(path)).unwrap().to_rgb8()
}

fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .unwrap();
    out
}

fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

/// `a` blended towards `b` by `t` in [0, 1], pixel by pixel (same-size photos).
fn blend(a: &RgbImage, b: &RgbImage, t: f32) -> RgbImage {
    assert_eq!(a.dimensions(), b.dimensions());
    RgbImage::from_fn(a.width(), a.height(), |x, y| {
        let (pa, pb) = (a.get_pixel(x, y), b.get_pixel(x, y));
        image::Rgb(std::array::from_fn(|c| {
            (f32::from(pa[c]) * (1.0 - t) + f32::from(pb[c]) * t).round() as u8
        }))
    })
}

#[tokio::test]
async fn filling_every_candidate_slot_does_not_hide_a_rival() {
    // Two accounts of one face (allowed here, so the rival can exist at all), and a margin
    // that the rival's re-encoded photo (0.05-0.1 away) is clearly within.
    let t = Tenant::new(&[
        "--allow-duplicate-faces",
        "true",
        "--match-ambiguity-margin",
        "0.2",
    ])
    .await;
    let photo = face("genuine/colin_powell_1.jpg");
    let owner = t.register("owner", &photo, IP).await;
    owner.expect(201);
    // The rival's photo: the same picture re-encoded, a hair's breadth away.
    let rival_photo = jpeg(&decode("genuine/colin_powell_1.jpg"), 90);
    t.register("rival", &rival_photo, IP).await.expect(201);
    // The owner fills every slot a search used to fetch with templates of the probe itself.
    let token = owner.access_token();
    for _ in 1..10 {
        t.enrol(&token, &photo, IP).await.expect(201);
    }
    assert_eq!(
        t.scalar_i64("SELECT count(*) FROM face_embeddings").await,
        11
    );
    // The probe is as near the rival as the owner (within the margin): ambiguous,
    // whatever the templates per user.
    t.login(&photo, None, IP)
        .await
        .expect_error(401, "ambiguous_match");
}

#[tokio::test]
async fn one_face_cannot_open_a_second_account() {
    let t = Tenant::new(&[]).await;
    let first = t
        .register("first", &face("genuine/george_w_bush_1.jpg"), IP)
        .await;
    first.expect(201);
    let owner = first.user_id();
    // Another photo of the same person, under another name, again and again.
    for i in 0..12 {
        t.register(
            &format!("second{i}"),
            &face("genuine/george_w_bush_3.jpg"),
            "198.51.100.7",
        )
        .await
        .expect_error(400, "duplicate_face");
    }
    assert_eq!(t.scalar_i64("SELECT count(*) FROM users").await, 1);
    // A fraud signal naming the account whose face was presented...
    let attempts = t.admin_get("/api/v1/admin/failed-attempts?hours=1").await;
    attempts.expect(200);
    let text = attempts.text.clone();
    assert!(text.contains("duplicate_face"), "{text}");
    assert!(text.contains(&owner), "{text}");
    // ...that never locks the owner out.
    t.login(&face("genuine/george_w_bush_3.jpg"), Some("first"), IP)
        .await
        .expect(200);
    // Another person registers as usual.
    t.register("colin", &face("genuine/colin_powell_1.jpg"), IP)
        .await
        .expect(201);
}

#[tokio::test]
async fn one_face_registering_at_once_under_many_names_opens_one_account() {
    let t = std::sync::Arc::new(Tenant::new(&[]).await);
    let photo = std::sync::Arc::new(face("genuine/tony_blair_1.jpg"));
    let replies = futures::future::join_all((0..6).map(|i| {
        let (t, photo) = (t.clone(), photo.clone());
        tokio::spawn(async move { t.register(&format!("blair{i}"), &photo, IP).await })
    }))
    .await;
    let mut codes: Vec<String> = replies
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            format!("{} {}", r.status.as_u16(), r.code())
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            "201 <none>",
            "400 duplicate_face",
            "400 duplicate_face",
            "400 duplicate_face",
            "400 duplicate_face",
            "400 duplicate_face"
        ],
        "{codes:?}"
    );
    assert_eq!(t.scalar_i64("SELECT count(*) FROM users").await, 1);
}

#[tokio::test]
async fn a_stolen_token_cannot_walk_the_face_to_another_person() {
    let t = Tenant::new(&[]).await;
    let (victim, attacker) = (
        decode("genuine/colin_powell_1.jpg"),
        decode("genuine/george_w_bush_1.jpg"),
    );
    let reg = t.register("victim", &png(&victim), IP).await;
    reg.expect(201);
    let token = reg.access_token();
    // Six steps from the victim's photo to the attacker's, each near the one before.
    let mut accepted = Vec::new();
    for step in 1..=6 {
        let image = png(&blend(&victim, &attacker, step as f32 / 6.0));
        let r = t.enrol(&token, &image, IP).await;
        match r.status.as_u16() {
            201 => accepted.push(step),
            _ => {
                r.expect_error(400, "face_mismatch");
            }
        }
    }
    assert!(
        !accepted.contains(&6),
        "the attacker's own photo was enrolled (steps accepted: {accepted:?})"
    );
    // Whatever was enrolled, the attacker's face does not open the account.
    let probe = face("genuine/george_w_bush_3.jpg");
    let r = t.login(&probe, Some("victim"), IP).await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.text);
    // The victim still does.
    t.login(&face("genuine/colin_powell_2.jpg"), Some("victim"), IP)
        .await
        .expect(200);
}

#[tokio::test]
async fn a_stranger_cannot_lock_the_owner_out() {
    let t = Tenant::new(&["--max-failed-login-attempts", "5"]).await;
    t.register("owner", &face("genuine/hugo_chavez_1.jpg"), "203.0.113.20")
        .await
        .expect(201);
    let stranger = face("genuine/jacques_chirac_1.jpg");
    let attack = || t.login(&stranger, Some("owner"), IP);
    // Three failures are answered at once...
    for _ in 0..4 {
        attack().await.expect_error(401, "face_not_recognized");
    }
    // ...after the fourth, the stranger must wait before the next attempt is looked at.
    let throttled = attack().await;
    throttled.expect_error(429, "login_throttled");
    let wait: u64 = throttled.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(wait, 1, "the first delay is one second");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    attack().await.expect_error(401, "face_not_recognized");
    // Five failures: the stranger is locked out of the account...
    for _ in 0..3 {
        attack().await.expect_error(423, "account_locked");
    }
    // ...and its refused attempts neither renewed the lock nor wrote a row each.
    assert_eq!(
        t.scalar_i64("SELECT count(*) FROM failed_login_attempts")
            .await,
        5
    );
    // The owner logs in from their own device, by 1:1 and by 1:N.
    t.login(
        &face("genuine/hugo_chavez_2.jpg"),
        Some("owner"),
        "203.0.113.20",
    )
    .await
    .expect(200);
    t.login(&face("genuine/hugo_chavez_2.jpg"), None, "203.0.113.20")
        .await
        .expect(200);
    // An IPv6 attacker cannot dodge the count by rotating addresses within its /64.
    let t6 = Tenant::new(&["--max-failed-login-attempts", "3"]).await;
    t6.register("owner", &face("genuine/hugo_chavez_1.jpg"), "203.0.113.20")
        .await
        .expect(201);
    for i in 1..=3 {
        t6.login(&stranger, Some("owner"), &format!("2001:db8:7:7::{i}"))
            .await
            .expect_error(401, "face_not_recognized");
    }
    t6.login(&stranger, Some("owner"), "2001:db8:7:7::99")
        .await
        .expect_error(423, "account_locked");
}

#[tokio::test]
async fn access_tokens_die_with_logout_deactivation_and_lock() {
    let t = Tenant::new(&["--account-lock-failures", "2"]).await;
    let reg = t
        .register("blair", &face("genuine/tony_blair_1.jpg"), IP)
        .await;
    reg.expect(201);
    let user = reg.user_id();
    let me = |token: String| {
        let t = &t;
        async move { t.get("/api/v1/auth/me", Some(&token)).await }
    };

    // Logout: the access token issued with the refresh token stops working at once
    // (the bound is the next request: checked per request, no cache).
    let stolen = reg.access_token();
    me(stolen.clone()).await.expect(200);
    t.post_json(
        "/api/v1/auth/logout",
        serde_json::json!({"refresh_token": reg.refresh_token()}),
        None,
    )
    .await
    .expect(204);
    let revoked = me(stolen.clone()).await;
    revoked.expect_error(401, "unauthorized");
    assert!(revoked.text.contains("revoked"), "{}", revoked.text);
    // Erasing needs a live token too: the stolen one cannot.
    t.erase(&stolen, None, IP)
        .await
        .expect_error(401, "unauthorized");

    // Deactivation by the admin.
    let login = t.login(&face("genuine/tony_blair_2.jpg"), None, IP).await;
    login.expect(200);
    me(login.access_token()).await.expect(200);
    t.admin_post(&format!("/api/v1/admin/users/{user}/deactivate"))
        .await
        .expect(200);
    me(login.access_token())
        .await
        .expect_error(401, "unauthorized");
    t.admin_post(&format!("/api/v1/admin/users/{user}/activate"))
        .await
        .expect(200);

    // An account-wide lock (two failures from two clients here).
    let login = t.login(&face("genuine/tony_blair_3.jpg"), None, IP).await;
    login.expect(200);
    me(login.access_token()).await.expect(200);
    for ip in ["198.51.100.31", "198.51.100.32"] {
        t.login(&face("genuine/colin_powell_1.jpg"), Some("blair"), ip)
            .await
            .expect_error(401, "face_not_recognized");
    }
    me(login.access_token())
        .await
        .expect_error(401, "unauthorized");

    // Unlocked, the owner erases the account with a live token and the password.
    t.admin_post(&format!("/api/v1/admin/users/{user}/unlock"))
        .await
        .expect(200);
    let login = t.login(&face("genuine/tony_blair_2.jpg"), None, IP).await;
    login.expect(200);
    let proof = common::Multipart::new().text("password", "correct horse battery");
    t.erase(&login.access_token(), Some(proof), IP)
        .await
        .expect(204);
    assert_eq!(t.scalar_i64("SELECT count(*) FROM users").await, 0);
}
