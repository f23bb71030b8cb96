//! Hostile input through the HTTP API, against the real stores and face engine: each
//! attack gets its documented 4xx (never a 5xx), and the stored data is untouched (rows
//! counted before and after).
//!
//! Covered: decompression bombs (tiny files declaring huge sizes, and a within-limits
//! PNG that inflates 1000-fold), oversize uploads refused before the body is read, wrong
//! content types, missing/duplicated/unknown/non-UTF-8 multipart fields, Unicode and SQL
//! metacharacters in usernames and e-mails, extremely long fields and headers, and forged
//! tokens (`alg: none`, RS256 and HS/RS key confusion, wrong key, another tenant's key
//! or audience, expired, not yet valid, tampered payload, wrong type, replayed refresh
//! token).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed assertion

mod common;
#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, header};
use common::{Multipart, Reply, Tenant, face};
use faceid_service::domain::tokens::TokenService;
use serde_json::{Value, json};

const IP: &str = "198.51.100.7";

/// Rows of every table a request could write, in this tenant's schema.
async fn rows(t: &Tenant) -> [i64; 4] {
    [
        t.scalar_i64("SELECT count(*) FROM users").await,
        t.scalar_i64("SELECT count(*) FROM face_embeddings").await,
        t.scalar_i64("SELECT count(*) FROM refresh_tokens").await,
        t.scalar_i64("SELECT count(*) FROM failed_login_attempts")
            .await,
    ]
}

/// A JPEG whose frame header (SOF) declares `width`x`height`, over the data of a real
/// small photo.
fn jpeg_declaring(width: u16, height: u16) -> Vec<u8> {
    let mut data = face("genuine/colin_powell_1.jpg");
    let sof = data
        .windows(2)
        .position(|w| w[0] == 0xFF && matches!(w[1], 0xC0..=0xC2))
        .expect("SOF marker");
    // FF Cx, length (2), precision (1), height (2), width (2)
    data[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    data[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    data
}

/// A WebP (VP8X) whose canvas declares `width`x`height`.
fn webp_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut vp8x = vec![0u8; 10];
    vp8x[4..7].copy_from_slice(&(width - 1).to_le_bytes()[..3]);
    vp8x[7..10].copy_from_slice(&(height - 1).to_le_bytes()[..3]);
    let mut chunks = b"VP8X".to_vec();
    chunks.extend_from_slice(&10u32.to_le_bytes());
    chunks.extend_from_slice(&vp8x);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(4 + chunks.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&chunks);
    out
}

#[tokio::test]
async fn decompression_bombs_are_refused_from_the_header() {
    let t = Tenant::new(&[]).await;
    let before = rows(&t).await;
    let bombs = [
        ("png 60000x60000", harness::png_bomb(60_000, 60_000)),
        ("png 1x4000000000", harness::png_bomb(1, 4_000_000_000)),
        ("jpeg 60000x60000", jpeg_declaring(60_000, 60_000)),
        ("webp 16384x16384", webp_declaring(16_384, 16_384)),
    ];
    for (what, bomb) in &bombs {
        assert!(bomb.len() < 70_000, "{what} is not tiny");
        let started = Instant::now();
        let reply = t.register("bomber", bomb, IP).await;
        // The documented answer for an image over the limits (400 image_too_large), or
        // image_corrupt where the container is refused before its size is read.
        assert_eq!(reply.status.as_u16(), 400, "{what}: {}", reply.text);
        assert!(
            matches!(reply.code(), "image_too_large" | "image_corrupt"),
            "{what}: {}",
            reply.text
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what} took {:?}",
            started.elapsed()
        );
    }
    // The PNG and JPEG bombs are refused on their declared size, not by running out of
    // data.
    for (what, bomb) in &bombs[..3] {
        let reply = t.register("bomber", bomb, IP).await;
        assert_eq!(reply.code(), "image_too_large", "{what}: {}", reply.text);
    }
    // Login refuses them the same way (and records the failed attempt, nothing else).
    t.login(&bombs[0].1, None, IP)
        .await
        .expect_error(400, "image_too_large");
    let after = rows(&t).await;
    assert_eq!(
        after[..3],
        before[..3],
        "users, templates, tokens unchanged"
    );
    assert_eq!(after[3], before[3] + 1, "one failed attempt recorded");
}

#[tokio::test]
async fn a_within_limits_png_that_inflates_a_thousandfold_is_bounded() {
    // 3000x3000 pixels of one grey: ~10 kB on the wire, 9 MB decoded (27 MB as RGB).
    // Within the default limits, so it is decoded; it must still end in a 4xx, promptly.
    let img = image::GrayImage::from_pixel(3000, 3000, image::Luma([128]));
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    let png = png.into_inner();
    assert!(png.len() < 100_000, "{} bytes", png.len());
    let t = Tenant::new(&[]).await;
    let started = Instant::now();
    let reply = t.register("inflate", &png, IP).await;
    assert_eq!(reply.status.as_u16(), 400, "{}", reply.text);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(rows(&t).await, [0, 0, 0, 0]);
}

/// A request body that records whether anyone read it and how much: it streams
/// `total` bytes in 64 kB chunks.
struct Watched {
    polled: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    total: usize,
}

impl futures::Stream for Watched {
    type Item = Result<bytes::Bytes, std::io::Error>;
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.polled.store(true, Ordering::SeqCst);
        let sent = self.sent.load(Ordering::SeqCst);
        if sent >= self.total {
            return Poll::Ready(None);
        }
        let n = (self.total - sent).min(64 * 1024);
        self.sent.fetch_add(n, Ordering::SeqCst);
        Poll::Ready(Some(Ok(bytes::Bytes::from(vec![b'x'; n]))))
    }
}

#[tokio::test]
async fn oversize_uploads_get_413_without_the_body_being_read() {
    let limit = 100_000usize;
    let t = Tenant::new(&["--max-upload-bytes", &limit.to_string()]).await;
    let before = rows(&t).await;
    for path in ["/api/v1/auth/register", "/api/v1/auth/login"] {
        // Declared too large: refused on the header, the body never polled.
        let polled = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let body = Watched {
            polled: polled.clone(),
            sent: sent.clone(),
            total: 50 * 1024 * 1024,
        };
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=xyzzy")
            .header(header::CONTENT_LENGTH, 50 * 1024 * 1024)
            .body(Body::from_stream(body))
            .unwrap();
        t.send(request, IP)
            .await
            .expect_error(413, "payload_too_large");
        assert!(
            !polled.load(Ordering::SeqCst),
            "{path}: the body was read before the 413"
        );

        // No length declared (chunked): read only up to the limit, then 413.
        let polled = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let body = Watched {
            polled: polled.clone(),
            sent: sent.clone(),
            total: 50 * 1024 * 1024,
        };
        let mut head = b"--xyzzy\r\nContent-Disposition: form-data; name=\"face_image\"; filename=\"a.jpg\"\r\n\r\n"
            .to_vec();
        head.resize(head.len() + 16, b'x');
        let stream = futures::StreamExt::chain(
            futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(head))]),
            body,
        );
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=xyzzy")
            .body(Body::from_stream(stream))
            .unwrap();
        t.send(request, IP)
            .await
            .expect_error(413, "payload_too_large");
        let read = sent.load(Ordering::SeqCst);
        assert!(
            read <= limit + 2 * 64 * 1024,
            "{path}: {read} bytes read past a {limit}-byte limit"
        );
    }
    assert_eq!(rows(&t).await, before);
}

#[tokio::test]
async fn wrong_content_types_are_415() {
    let t = Tenant::new(&[]).await;
    let photo = face("genuine/colin_powell_1.jpg");
    for path in ["/api/v1/auth/register", "/api/v1/auth/login"] {
        for content_type in [
            Some("application/json"),
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data"), // no boundary
            Some("image/jpeg"),
            None,
        ] {
            let mut r = Request::post(path);
            if let Some(ct) = content_type {
                r = r.header(header::CONTENT_TYPE, ct);
            }
            let body = if content_type == Some("image/jpeg") {
                photo.clone()
            } else {
                b"username=powell&email=p%40example.com&password=correct+horse".to_vec()
            };
            let reply = t.send(r.body(Body::from(body)).unwrap(), IP).await;
            reply.expect_error(415, "unsupported_media_type");
        }
    }
    // JSON endpoints refuse forms and bodies without a JSON content type.
    for path in ["/api/v1/auth/refresh", "/api/v1/auth/logout"] {
        let r = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("refresh_token=abc"))
            .unwrap();
        t.send(r, IP)
            .await
            .expect_error(415, "unsupported_media_type");
        // Declared JSON that is not: 422.
        let r = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{\"refresh_token\": "))
            .unwrap();
        t.send(r, IP).await.expect_error(422, "validation_error");
    }
    assert_eq!(rows(&t).await, [0, 0, 0, 0]);
}

#[tokio::test]
async fn missing_duplicated_and_malformed_multipart_fields_are_422() {
    let t = Tenant::new(&[]).await;
    let photo = face("genuine/colin_powell_1.jpg");
    let reg = "/api/v1/auth/register";
    let cases: Vec<(&str, Request<Body>)> = vec![
        (
            "no username",
            Multipart::new()
                .text("email", "a@example.com")
                .text("password", "correct horse")
                .file("face_image", "a.jpg", &photo)
                .request(reg),
        ),
        (
            "no email",
            Multipart::new()
                .text("username", "powell")
                .text("password", "correct horse")
                .file("face_image", "a.jpg", &photo)
                .request(reg),
        ),
        (
            "no password",
            Multipart::new()
                .text("username", "powell")
                .text("email", "a@example.com")
                .file("face_image", "a.jpg", &photo)
                .request(reg),
        ),
        (
            "no image",
            Multipart::new()
                .text("username", "powell")
                .text("email", "a@example.com")
                .text("password", "correct horse")
                .request(reg),
        ),
        (
            "empty image",
            Multipart::registration("powell", "a@example.com", "correct horse", b"").request(reg),
        ),
        (
            "blank username",
            Multipart::registration("   ", "a@example.com", "correct horse", &photo).request(reg),
        ),
        (
            "two images",
            Multipart::registration("powell", "a@example.com", "correct horse", &photo)
                .file("face_image", "b.jpg", &photo)
                .request(reg),
        ),
        (
            "two e-mails",
            Multipart::registration("powell", "a@example.com", "correct horse", &photo)
                .text("email", "b@example.com")
                .request(reg),
        ),
        (
            "image sent as the username",
            Multipart::new()
                .file("username", "a.jpg", &photo)
                .text("email", "a@example.com")
                .text("password", "correct horse")
                .file("face_image", "a.jpg", &photo)
                .request(reg),
        ),
        (
            "login without image",
            Multipart::new()
                .text("username", "powell")
                .request("/api/v1/auth/login"),
        ),
        (
            "login with two usernames",
            Multipart::new()
                .text("username", "powell")
                .text("username", "admin")
                .file("face_image", "a.jpg", &photo)
                .request("/api/v1/auth/login"),
        ),
    ];
    for (what, request) in cases {
        let reply = t.send(request, IP).await;
        assert_eq!(reply.status.as_u16(), 422, "{what}: {}", reply.text);
        reply.expect_error(422, "validation_error");
    }

    // Raw bodies: non-UTF-8 text, no closing boundary, garbage between boundaries.
    let boundary = "b0undary";
    let raw = |body: Vec<u8>| {
        Request::post(reg)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap()
    };
    let mut non_utf8 =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n")
            .into_bytes();
    non_utf8.extend_from_slice(&[0xC3, 0x28, 0xFF, 0xFE]);
    non_utf8.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let unterminated =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\npowell")
            .into_bytes();
    let garbage = b"\x00\x01\x02 this is not multipart at all \xFF".to_vec();
    let no_disposition =
        format!("--{boundary}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{boundary}--\r\n")
            .into_bytes();
    for (what, body) in [
        ("non-UTF-8 text field", non_utf8),
        ("unterminated", unterminated),
        ("garbage", garbage),
        ("part without a name", no_disposition),
    ] {
        let reply = t.send(raw(body), IP).await;
        assert_eq!(reply.status.as_u16(), 422, "{what}: {}", reply.text);
    }

    // Unknown extra fields are ignored, not stored: a valid form with extras registers.
    let reply = t
        .send(
            Multipart::registration("powell", "powell@example.com", "correct horse", &photo)
                .text("is_admin", "true")
                .text("id", "00000000-0000-0000-0000-000000000000")
                .request(reg),
            IP,
        )
        .await;
    reply.expect(201);
    assert_ne!(
        reply.json["user"]["id"],
        "00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(rows(&t).await[..2], [1, 1]);
}

#[tokio::test]
async fn unicode_and_sql_metacharacters_in_identities() {
    let t = Tenant::new(&[]).await;
    let photo = face("genuine/george_w_bush_1.jpg");
    let hostile_usernames = [
        "robert'); DROP TABLE users;--",
        "admin'--",
        "' OR '1'='1",
        "x\" OR \"\"=\"",
        "a;b",
        "ünïcödé",
        "名前名前",
        "zero\u{200B}width",
        "rtl\u{202E}gnp.exe",
        "nul\u{0}byte",
        "tab\tname",
        "%27%3B--",
        "ＡＢＣ", // full-width letters
        "../../etc/passwd",
    ];
    for username in hostile_usernames {
        t.send(
            Multipart::registration(username, "ok@example.com", "correct horse", &photo)
                .request("/api/v1/auth/register"),
            IP,
        )
        .await
        .expect_error(422, "validation_error");
        // 1:1 login with the same names: refused before any lookup.
        t.login(&photo, Some(username), IP)
            .await
            .expect_error(422, "validation_error");
    }
    let hostile_emails = [
        "a@b",
        "nul\u{0}@example.com",
        "a@example.com\r\nBcc: victim@example.com",
        "a@exa mple.com",
        "a@@example.com",
        "a@example..com",
        "a@example.com'; DROP TABLE users;--",
        "a@<script>.com",
    ];
    for email in hostile_emails {
        let reply = t
            .send(
                Multipart::registration("validname", email, "correct horse", &photo)
                    .request("/api/v1/auth/register"),
                IP,
            )
            .await;
        assert_eq!(reply.status.as_u16(), 422, "{email:?}: {}", reply.text);
    }
    assert_eq!(rows(&t).await[..3], [0, 0, 0]);

    // SQL metacharacters that are legal in an address are stored verbatim (bound
    // parameters), and every table is still there afterwards.
    let email = "o'brien+\"x\";--@example.com";
    let reply = t
        .send(
            Multipart::registration("obrien", email, "pass'word\"; DROP TABLE users;--", &photo)
                .request("/api/v1/auth/register"),
            IP,
        )
        .await;
    reply.expect(201);
    assert_eq!(reply.json["user"]["email"], email);
    let stored: String = sqlx::query_scalar("SELECT email FROM users")
        .fetch_one(t.state.db())
        .await
        .unwrap();
    assert_eq!(stored, email);
    assert_eq!(rows(&t).await[..2], [1, 1]);
    // HTML in the local part is data too: stored and answered verbatim (JSON-escaped);
    // the service's own page renders every value with textContent, never as HTML.
    let email = "<img/src=x/onerror=alert(1)>@example.com";
    let reply = t
        .send(
            Multipart::registration(
                "htmlmail",
                email,
                "correct horse",
                &face("genuine/barack_obama_1.jpg"),
            )
            .request("/api/v1/auth/register"),
            IP,
        )
        .await;
    reply.expect(201);
    assert_eq!(reply.json["user"]["email"], email);
    let page =
        std::fs::read_to_string(common::repo_root().join("service/static/index.html")).unwrap();
    assert!(
        !page.contains("innerHTML") && !page.contains("insertAdjacentHTML"),
        "the camera page must not render values as HTML"
    );
    assert_eq!(rows(&t).await[..2], [2, 2]);
    // The same address in another case is the same account.
    t.send(
        Multipart::registration(
            "obrien2",
            &email.to_uppercase(),
            "correct horse",
            &face("genuine/george_w_bush_2.jpg"),
        )
        .request("/api/v1/auth/register"),
        IP,
    )
    .await
    .expect_error(400, "user_exists");
    assert_eq!(rows(&t).await[..2], [2, 2]);
}

#[tokio::test]
async fn extremely_long_fields_and_headers_are_refused() {
    let t = Tenant::new(&[]).await;
    let photo = face("genuine/george_w_bush_1.jpg");
    let long = "a".repeat(10 * 1024);
    for (what, f) in [
        (
            "10 kB username",
            Multipart::registration(&long, "ok@example.com", "correct horse", &photo),
        ),
        (
            "10 kB e-mail",
            Multipart::registration(
                "okname",
                &format!("{long}@example.com"),
                "correct horse",
                &photo,
            ),
        ),
        (
            "10 kB password",
            Multipart::registration("okname", "ok@example.com", &long, &photo),
        ),
        (
            "129-character password",
            Multipart::registration("okname", "ok@example.com", &"p".repeat(129), &photo),
        ),
        (
            "65-character username",
            Multipart::registration(&"u".repeat(65), "ok@example.com", "correct horse", &photo),
        ),
        (
            "255-character e-mail",
            Multipart::registration(
                "okname",
                &format!("{}@example.com", "e".repeat(243)),
                "correct horse",
                &photo,
            ),
        ),
    ] {
        let reply = t.send(f.request("/api/v1/auth/register"), IP).await;
        assert_eq!(reply.status.as_u16(), 422, "{what}: {}", reply.text);
        reply.expect_error(422, "validation_error");
    }
    // A 10 kB username at 1:1 login.
    t.login(&photo, Some(&long), IP)
        .await
        .expect_error(422, "validation_error");
    // A 64 kB bearer token and a 10 kB request id.
    let r = Request::get("/api/v1/auth/me")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", "A".repeat(64 * 1024)),
        )
        .header("x-request-id", "r".repeat(10 * 1024))
        .body(Body::empty())
        .unwrap();
    let reply = t.send(r, IP).await;
    reply.expect_error(401, "unauthorized");
    let id = reply.headers["x-request-id"].to_str().unwrap();
    assert!(id.len() <= 128, "the long request id was echoed");
    // A 10 kB refresh token.
    t.refresh(&long).await.expect_error(422, "validation_error");
    // A 10 kB file name is only a name.
    let reply = t
        .send(
            Multipart::new()
                .text("username", "longname")
                .text("email", "long@example.com")
                .text("password", "correct horse")
                .file("face_image", &"f".repeat(10 * 1024), &photo)
                .request("/api/v1/auth/register"),
            IP,
        )
        .await;
    assert!(
        reply.status.as_u16() == 201 || reply.status.is_client_error(),
        "{}",
        reply.text
    );
    let created = i64::from(reply.status.as_u16() == 201);
    assert_eq!(rows(&t).await[..2], [created, created]);
}

// ---------------------------------------------------------------------------------
// Tokens

/// Claims as the service issues them, for forging variants.
fn claims(t: &Tenant, sub: &str, iat: i64, exp: i64, nbf: i64) -> Value {
    let tenant = &t.state.config().tenant;
    json!({
        "iss": format!("faceid/{tenant}"),
        "aud": tenant,
        "sub": sub,
        "iat": iat,
        "exp": exp,
        "nbf": nbf,
        "jti": uuid::Uuid::new_v4(),
        "typ": "access",
    })
}

/// A JWT signed with HMAC-SHA256 under `secret`, made here from its parts (not by the
/// service's own token code) so the forgeries below do not share its assumptions.
fn hs256(claims: &Value, secret: &[u8]) -> String {
    use hmac::Mac;
    let input = signing_input("HS256", claims);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("{input}.{}", harness::b64url(&tag))
}

/// `base64url(header).base64url(claims)` for a token of algorithm `alg`.
fn signing_input(alg: &str, claims: &Value) -> String {
    let header = json!({ "alg": alg, "typ": "JWT" });
    format!(
        "{}.{}",
        harness::b64url(header.to_string().as_bytes()),
        harness::b64url(claims.to_string().as_bytes())
    )
}

/// An RS256 token for `claims` signed with a fresh RSA key by the openssl command line
/// tool, and that key's public half as PEM text (SPKI): the material of an algorithm
/// confusion attack.
fn rs256_forgery(claims: &Value) -> (String, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("faceid-rsa-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("private.pem");
    let public = dir.join("public.pem");
    let input_file = dir.join("input");
    let signature_file = dir.join("signature");
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("the openssl command line tool");
        assert!(status.success(), "openssl {args:?}");
    };
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &path(&private),
    ]);
    run(&[
        "pkey",
        "-in",
        &path(&private),
        "-pubout",
        "-out",
        &path(&public),
    ]);
    let input = signing_input("RS256", claims);
    std::fs::write(&input_file, &input).unwrap();
    // RS256 is RSASSA-PKCS1-v1_5 over SHA-256: `openssl dgst -sign` with an RSA key.
    run(&[
        "dgst",
        "-sha256",
        "-sign",
        &path(&private),
        "-out",
        &path(&signature_file),
        &path(&input_file),
    ]);
    let token = format!(
        "{input}.{}",
        harness::b64url(&std::fs::read(&signature_file).unwrap())
    );
    let public_pem = std::fs::read(&public).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (token, public_pem)
}

async fn me(t: &Tenant, token: &str) -> Reply {
    t.get("/api/v1/auth/me", Some(token)).await
}

/// HS256 forgeries against a tenant that keeps HS256 on (`LEGACY_HS256_TOKENS`, the
/// original API's tokens): the asymmetric ones are below.
#[tokio::test]
async fn forged_and_foreign_access_tokens_are_refused() {
    let t = Tenant::new(&["--legacy-hs256-tokens", "true"]).await;
    let victim = t
        .register("powell", &face("genuine/colin_powell_1.jpg"), IP)
        .await;
    victim.expect(201);
    let attacker = t
        .register("bush", &face("genuine/george_w_bush_1.jpg"), IP)
        .await;
    attacker.expect(201);
    let victim_id = victim.user_id();
    let secret = t.state.config().secret_key.clone();
    let now = chrono::Utc::now().timestamp();
    let before = rows(&t).await;

    // Positive control: a token forged here with the tenant's own key and claims is
    // accepted, so every refusal below is due to the one thing changed.
    let good = hs256(
        &claims(&t, &victim_id, now, now + 600, now),
        secret.as_bytes(),
    );
    me(&t, &good).await.expect(200);
    me(&t, &victim.access_token()).await.expect(200);

    let b64 = |v: &Value| harness::b64url(v.to_string().as_bytes());
    let good_parts: Vec<&str> = good.split('.').collect();
    let (rs256, public_pem) = rs256_forgery(&claims(&t, &victim_id, now, now + 600, now));

    let other = Tenant::new(&["--legacy-hs256-tokens", "true"]).await;
    let foreign_user = other
        .register("chirac", &face("genuine/jacques_chirac_1.jpg"), IP)
        .await;
    foreign_user.expect(201);
    // Another tenant's name under this tenant's key (keys shared by mistake).
    let other_audience = TokenService::new(
        &other.state.config().tenant,
        secret.as_bytes(),
        Duration::from_secs(600),
    )
    .issue_access(victim_id.parse().unwrap(), 0, chrono::Utc::now())
    .unwrap();

    let mut tampered_claims = claims(&t, &victim_id, now, now + 600, now);
    tampered_claims["sub"] = json!(attacker.user_id());
    let tampered = format!(
        "{}.{}.{}",
        good_parts[0],
        b64(&tampered_claims),
        good_parts[2]
    );
    let mut refresh_typ = claims(&t, &victim_id, now, now + 600, now);
    refresh_typ["typ"] = json!("refresh");
    let mut no_exp = claims(&t, &victim_id, now, now + 600, now);
    no_exp.as_object_mut().unwrap().remove("exp");

    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                good_parts[1]
            ),
        ),
        (
            "alg none, signature kept",
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                good_parts[1],
                good_parts[2]
            ),
        ),
        (
            "alg HS512 header over an HS256 signature",
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "HS512", "typ": "JWT"})),
                good_parts[1],
                good_parts[2]
            ),
        ),
        ("RS256 signed with an attacker's RSA key", rs256),
        (
            "HS256 signed with an RSA public key's PEM text as the secret",
            hs256(&claims(&t, &victim_id, now, now + 600, now), &public_pem),
        ),
        (
            "wrong key",
            hs256(
                &claims(&t, &victim_id, now, now + 600, now),
                b"another-secret-0123456789abcdef-xyz",
            ),
        ),
        (
            "the admin API key as the HMAC secret",
            hs256(
                &claims(&t, &victim_id, now, now + 600, now),
                t.state.config().admin_api_key.as_bytes(),
            ),
        ),
        ("another tenant's token", foreign_user.access_token()),
        ("another tenant's audience under this key", other_audience),
        (
            "expired",
            hs256(
                &claims(&t, &victim_id, now - 7200, now - 3600, now - 7200),
                secret.as_bytes(),
            ),
        ),
        (
            "not yet valid",
            hs256(
                &claims(&t, &victim_id, now + 3600, now + 7200, now + 3600),
                secret.as_bytes(),
            ),
        ),
        ("payload tampered to another user", tampered),
        (
            "signature stripped",
            format!("{}.{}.", good_parts[0], good_parts[1]),
        ),
        (
            "refresh-typed token",
            hs256(&refresh_typ, secret.as_bytes()),
        ),
        ("no exp claim", hs256(&no_exp, secret.as_bytes())),
        ("the refresh token as a bearer", victim.refresh_token()),
        ("garbage", "not.a.token".to_owned()),
        ("empty", String::new()),
    ];
    for (what, token) in &cases {
        let reply = me(&t, token).await;
        assert_eq!(reply.status.as_u16(), 401, "{what}: {}", reply.text);
        reply.expect_error(401, "unauthorized");
        assert_eq!(reply.headers["www-authenticate"], "Bearer", "{what}");
        // The same token cannot erase the account either.
        let r = Request::delete("/api/v1/users/me")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(t.send(r, IP).await.status.as_u16(), 401, "{what}");
    }
    // Expired tokens say so; the rest say nothing about why.
    assert!(
        me(&t, &cases[9].1).await.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    // A user token or a forged one is no admin credential.
    for token in [victim.access_token(), good.clone()] {
        t.get("/api/v1/admin/metrics-summary", Some(&token))
            .await
            .expect_error(403, "forbidden");
    }
    t.get("/api/v1/admin/metrics-summary", Some(&cases[0].1))
        .await
        .expect_error(401, "unauthorized");
    // Tenant B refuses tenant A's token too.
    other
        .get("/api/v1/auth/me", Some(&victim.access_token()))
        .await
        .expect_error(401, "unauthorized");
    assert_eq!(rows(&t).await, before, "no forged token changed anything");
}

/// A JWT over `claims` with `header`, signed here with the Ed25519 key `key` by the curve
/// library directly.
fn eddsa(header: &Value, claims: &Value, key: &ed25519_dalek::SigningKey) -> String {
    use ed25519_dalek::Signer as _;
    let input = format!(
        "{}.{}",
        harness::b64url(header.to_string().as_bytes()),
        harness::b64url(claims.to_string().as_bytes())
    );
    let signature = key.sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", harness::b64url(&signature))
}

/// A JWT over `claims` with `header`, HMAC-SHA256 under `secret`.
fn hs256_with(header: &Value, claims: &Value, secret: &[u8]) -> String {
    use hmac::Mac;
    let input = format!(
        "{}.{}",
        harness::b64url(header.to_string().as_bytes()),
        harness::b64url(claims.to_string().as_bytes())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", harness::b64url(&mac.finalize().into_bytes()))
}

#[tokio::test]
async fn forged_asymmetric_tokens_are_refused() {
    use faceid_keys::{Alg, KeyDocument, KeyEntry, PrivateKey};
    let created = chrono::Utc::now() - chrono::Duration::days(1);
    let ed_entry = KeyEntry::generate(Alg::EdDsa, created, None);
    let es_entry = KeyEntry::generate(Alg::Es256, created, None);
    let document = KeyDocument {
        keys: vec![ed_entry.clone(), es_entry.clone()],
    };
    let PrivateKey::Ed25519(tenant_key) = ed_entry.private().unwrap() else {
        panic!("not Ed25519")
    };
    let public_x = tenant_key.verifying_key().to_bytes();
    let t = Tenant::new(&["--signing-keys", &document.to_json()]).await;
    let victim = t
        .register("powell", &face("genuine/colin_powell_1.jpg"), IP)
        .await;
    victim.expect(201);
    let victim_id = victim.user_id();
    let before = rows(&t).await;
    let now = chrono::Utc::now().timestamp();
    let good_claims = claims(&t, &victim_id, now, now + 600, now);
    let ed_header = json!({"alg": "EdDSA", "typ": "JWT", "kid": ed_entry.kid});

    // Positive controls: the service's own token, and one signed here with the tenant's
    // key, are accepted, so each refusal below is due to the one thing changed.
    me(&t, &victim.access_token()).await.expect(200);
    let good = eddsa(&ed_header, &good_claims, &tenant_key);
    me(&t, &good).await.expect(200);
    let parts: Vec<&str> = good.split('.').collect();
    let with_header = |h: Value| {
        format!(
            "{}.{}.{}",
            harness::b64url(h.to_string().as_bytes()),
            parts[1],
            parts[2]
        )
    };
    let attacker_key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let mut tampered = good_claims.clone();
    tampered["sub"] = json!(uuid::Uuid::new_v4());
    let other = Tenant::new(&[]).await;
    let foreign_user = other
        .register("chirac", &face("genuine/jacques_chirac_1.jpg"), IP)
        .await;
    foreign_user.expect(201);

    let cases: Vec<(&str, String)> = vec![
        (
            "alg none, kid kept",
            with_header(json!({"alg": "none", "kid": ed_entry.kid})),
        ),
        (
            "alg none, no signature",
            format!("{}.{}.", harness::b64url(br#"{"alg":"none"}"#), parts[1]),
        ),
        (
            "HS256 with the Ed25519 public key as the secret, kid kept",
            hs256_with(
                &json!({"alg": "HS256", "kid": ed_entry.kid}),
                &good_claims,
                &public_x,
            ),
        ),
        (
            "HS256 with the Ed25519 public key as the secret, no kid",
            hs256_with(&json!({"alg": "HS256"}), &good_claims, &public_x),
        ),
        (
            "HS256 with SECRET_KEY while HS256 is off",
            hs256_with(
                &json!({"alg": "HS256"}),
                &good_claims,
                t.state.config().secret_key.as_bytes(),
            ),
        ),
        (
            "an attacker's key under an unknown kid",
            eddsa(
                &json!({"alg": "EdDSA", "kid": "attacker"}),
                &good_claims,
                &attacker_key,
            ),
        ),
        (
            "an attacker's key under the tenant's kid",
            eddsa(&ed_header, &good_claims, &attacker_key),
        ),
        ("no kid", with_header(json!({"alg": "EdDSA"}))),
        (
            "the ES256 key's kid over an EdDSA signature",
            with_header(json!({"alg": "EdDSA", "kid": es_entry.kid})),
        ),
        (
            "alg ES256 claimed for the EdDSA key",
            with_header(json!({"alg": "ES256", "kid": ed_entry.kid})),
        ),
        (
            "payload tampered to another user",
            format!(
                "{}.{}.{}",
                parts[0],
                harness::b64url(tampered.to_string().as_bytes()),
                parts[2]
            ),
        ),
        (
            "another tenant's token (its own keys)",
            foreign_user.access_token(),
        ),
        (
            "expired, signed with the tenant's key",
            eddsa(
                &ed_header,
                &claims(&t, &victim_id, now - 7200, now - 3600, now - 7200),
                &tenant_key,
            ),
        ),
    ];
    for (what, token) in &cases {
        let reply = me(&t, token).await;
        assert_eq!(reply.status.as_u16(), 401, "{what}: {}", reply.text);
        reply.expect_error(401, "unauthorized");
    }
    other
        .get("/api/v1/auth/me", Some(&victim.access_token()))
        .await
        .expect_error(401, "unauthorized");
    assert_eq!(rows(&t).await, before, "no forged token changed anything");
}

#[tokio::test]
async fn replayed_and_foreign_refresh_tokens_are_refused() {
    let t = Tenant::new(&[]).await;
    let reg = t
        .register("schroeder", &face("genuine/gerhard_schroeder_1.jpg"), IP)
        .await;
    reg.expect(201);
    let first = reg.refresh_token();
    let rotated = t.refresh(&first).await;
    rotated.expect(200);
    let second = rotated.refresh_token();
    // Replaying the spent token is refused, and revokes its successor too.
    t.expect_replay_revokes(&first, &second).await;
    // Another tenant's refresh token means nothing here.
    let other = Tenant::new(&[]).await;
    let foreign = other
        .register("chavez", &face("genuine/hugo_chavez_1.jpg"), IP)
        .await;
    foreign.expect(201);
    t.refresh(&foreign.refresh_token())
        .await
        .expect_error(401, "invalid_refresh_token");
    // ...and it still works at home: the failed use elsewhere did not spend it.
    other.refresh(&foreign.refresh_token()).await.expect(200);
    // An access token is no refresh token (and longer than one may be).
    t.refresh(&reg.access_token())
        .await
        .expect_error(422, "validation_error");
    // SQL text, a wildcard, a NUL and a near miss are not refresh tokens.
    let mut near_miss = second.clone();
    near_miss.replace_range(..1, if second.starts_with('0') { "1" } else { "0" });
    for bogus in [
        near_miss,
        second.to_uppercase(),
        "' OR 1=1 --".to_owned(),
        "%".to_owned(),
        "\u{0}".to_owned(),
    ] {
        t.refresh(&bogus)
            .await
            .expect_error(401, "invalid_refresh_token");
    }
    // A logged-out token is refused.
    let login = t
        .login(&face("genuine/gerhard_schroeder_2.jpg"), None, IP)
        .await;
    login.expect(200);
    let r = Request::post("/api/v1/auth/logout")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({ "refresh_token": login.refresh_token() }).to_string(),
        ))
        .unwrap();
    t.send(r, IP).await.expect(204);
    t.refresh(&login.refresh_token())
        .await
        .expect_error(401, "invalid_refresh_token");
    // Tokens of a replayed family are gone for good: every row of the first family is
    // revoked.
    let live: i64 = t
        .scalar_i64(
            "SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL AND used_at IS NULL",
        )
        .await;
    assert_eq!(live, 0, "no refresh token of this user is still usable");
}

/// The OpenAPI document states the limits the handlers enforce, so generated clients
/// and the schemathesis run (e2e/tests/schemathesis.rs) send what the service accepts,
/// and every status the hostile inputs above produce is documented.
#[test]
fn openapi_states_the_enforced_limits_and_statuses() {
    use utoipa::OpenApi;
    let doc: Value =
        serde_json::to_value(faceid_service::http::openapi::ApiDoc::openapi()).unwrap();
    let param = |path: &str, name: &str| -> Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} {name}"))["schema"]
            .clone()
    };
    for (path, name, max) in [
        ("/api/v1/admin/failed-attempts", "hours", 720),
        ("/api/v1/admin/failed-attempts", "limit", 1000),
        ("/api/v1/admin/suspicious-activity", "hours", 720),
        ("/api/v1/admin/suspicious-activity", "threshold", 10000),
    ] {
        let schema = param(path, name);
        assert_eq!(schema["minimum"], 1, "{path} {name}: {schema}");
        assert_eq!(schema["maximum"], max, "{path} {name}: {schema}");
    }
    for action in ["unlock", "deactivate", "activate"] {
        let path = format!("/api/v1/admin/users/{{user_id}}/{action}");
        let p = &doc["paths"][&path]["post"]["parameters"][0]["schema"];
        assert_eq!(p["format"], "uuid", "{path}: {p}");
    }
    let schemas = &doc["components"]["schemas"];
    let register = &schemas["RegisterForm"]["properties"];
    assert_eq!(register["username"]["maxLength"], 64);
    assert_eq!(register["username"]["minLength"], 3);
    assert_eq!(register["email"]["format"], "email");
    assert_eq!(register["password"]["minLength"], 8);
    assert_eq!(register["password"]["maxLength"], 128);
    assert_eq!(
        schemas["RefreshRequest"]["properties"]["refresh_token"]["maxLength"],
        256
    );
    let statuses = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    for (path, method, needed) in [
        (
            "/api/v1/auth/register",
            "post",
            &["413", "415", "422", "503"][..],
        ),
        (
            "/api/v1/auth/login",
            "post",
            &["413", "415", "422", "423", "503"],
        ),
        (
            "/api/v1/users/me/faces",
            "post",
            &["413", "415", "422", "503"],
        ),
        ("/api/v1/auth/me", "get", &["401", "503"]),
        (
            "/api/v1/auth/refresh",
            "post",
            &["401", "415", "422", "503"],
        ),
        ("/api/v1/users/me", "delete", &["401", "422", "503"]),
        (
            "/api/v1/admin/metrics-summary",
            "get",
            &["401", "403", "503"],
        ),
    ] {
        let have = statuses(path, method);
        for s in needed {
            assert!(
                have.iter().any(|h| h == s),
                "{method} {path} lacks {s}: {have:?}"
            );
        }
    }
}
