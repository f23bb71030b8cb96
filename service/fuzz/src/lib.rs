//! Fuzz harnesses of the service's hostile-input surfaces, shared by the libFuzzer
//! targets (`service/fuzz/fuzz_targets/`, run with `service/fuzz/run.sh` on nightly) and
//! the bounded mutational smoke tests of the normal test command
//! (`service/tests/fuzz_smoke.rs` includes this file as a module).
//!
//! Each harness takes arbitrary bytes, drives one surface and asserts a property that
//! must hold for every input (not merely "does not panic"):
//! - [`decode`]: image decoding under limits either refuses the input with an image error
//!   or returns an 8-bit RGB image inside the limits.
//! - [`multipart`]: a multipart body (with one of several `Content-Type` headers, streamed
//!   in chunks) read by the service's `Form::read` through axum's `Multipart` extractor on
//!   a minimal router answers 200, 413, 415 or 422, never 5xx, and a form it accepts holds
//!   only bounded, valid values.
//! - [`token`]: an access token, raw or built from arbitrary header/payload JSON and
//!   signed with the right or a wrong key, verifies only when it is HS256, signed with the
//!   tenant's key and carries the tenant's `aud`/`iss`, `typ` = `access` and current times.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a broken property is a crash: that is the point

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart};
use axum::http::{Request, StatusCode, header};
use axum::routing::post;
use faceid_service::domain::tokens::{AccessAlgorithm, KeySet, TokenError, TokenService};
use faceid_service::face::decode::{ImageLimits, MIN_IMAGE_SIDE, decode as decode_image};
use faceid_service::http::extract::{Form, validate_email, validate_password, validate_username};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

/// Limits of the decode harness: small, so a fuzzer cannot spend its memory on one input.
pub const DECODE_LIMITS: ImageLimits = ImageLimits {
    max_width: 1024,
    max_height: 1024,
    max_pixels: 1 << 20,
};

/// Image decoding: refused with an image error, or an RGB image within the limits.
pub fn decode(data: &[u8]) {
    match decode_image(data, &DECODE_LIMITS) {
        Ok(img) => {
            let (w, h) = img.rgb.dimensions();
            assert!(
                w <= DECODE_LIMITS.max_width
                    && h <= DECODE_LIMITS.max_height
                    && u64::from(w) * u64::from(h) <= DECODE_LIMITS.max_pixels,
                "decoded {w}x{h} past the limits"
            );
            assert!(
                w >= MIN_IMAGE_SIDE && h >= MIN_IMAGE_SIDE,
                "decoded {w}x{h} under the minimum"
            );
            assert_eq!(img.rgb.as_raw().len(), w as usize * h as usize * 3);
        }
        Err(e) => {
            // Every refusal has a stable code and a message.
            assert!(e.code().starts_with("image_"));
            assert!(!e.to_string().is_empty());
        }
    }
}

/// Body limit of the multipart harness (the service's `MAX_UPLOAD_BYTES`, scaled down).
pub const MULTIPART_MAX_BYTES: usize = 4096;

/// The boundary the multipart seeds use.
pub const BOUNDARY: &str = "fuzzBoundary7MA4YWxk";

fn runtime() -> &'static tokio::runtime::Runtime {
    thread_local! {
        static RT: &'static tokio::runtime::Runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("tokio runtime"),
        ));
    }
    RT.with(|rt| *rt)
}

async fn form_handler(multipart: Result<Multipart, MultipartRejection>) -> StatusCode {
    let form = match Form::read(
        multipart,
        &["username", "email", "password"],
        &["face_image"],
        MULTIPART_MAX_BYTES as u64,
    )
    .await
    {
        Ok(form) => form,
        Err(e) => return e.status_and_code().0,
    };
    // Run what the register handler runs on an accepted form.
    for name in ["username", "email", "password"] {
        if let Some(v) = form.optional_text(name) {
            assert!(v.len() <= 1024, "text field {name} of {} bytes", v.len());
        }
    }
    let checks = [
        form.text("username")
            .and_then(validate_username)
            .map(|u| {
                assert!((3..=64).contains(&u.chars().count()));
                assert!(
                    u.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                );
            })
            .err(),
        form.text("email")
            .and_then(validate_email)
            .map(|e| {
                assert!(e.len() <= 254 && e.contains('@'));
                assert!(!e.chars().any(char::is_control));
            })
            .err(),
        form.text("password")
            .and_then(validate_password)
            .map(drop)
            .err(),
        form.file("face_image")
            .map(|f| assert!(!f.is_empty() && f.len() <= MULTIPART_MAX_BYTES))
            .err(),
    ];
    for e in checks.into_iter().flatten() {
        assert_eq!(e.status_and_code().0, StatusCode::UNPROCESSABLE_ENTITY);
    }
    StatusCode::OK
}

fn form_router() -> Router {
    Router::new()
        .route("/", post(form_handler))
        .layer(DefaultBodyLimit::max(MULTIPART_MAX_BYTES))
}

/// The multipart path. Byte 0 picks the `Content-Type`, byte 1 the chunk size the body
/// is streamed in (1..=64 bytes, or whole); the rest is the body.
pub fn multipart(data: &[u8]) {
    let (Some(&ct), Some(&chunk)) = (data.first(), data.get(1)) else {
        return;
    };
    let body = data[2..].to_vec();
    let content_type = match ct % 8 {
        0 | 1 => Some(format!("multipart/form-data; boundary={BOUNDARY}")),
        2 => Some(format!("multipart/form-data; boundary=\"{BOUNDARY}\"")),
        3 => Some("multipart/form-data".to_owned()),
        4 => Some("application/json".to_owned()),
        5 => None,
        6 => Some(format!("multipart/mixed; boundary={BOUNDARY}")),
        _ => Some(format!(
            "multipart/form-data; charset=utf-8; boundary={BOUNDARY}"
        )),
    };
    let mut request = Request::post("/");
    if let Some(ct) = content_type {
        request = request.header(header::CONTENT_TYPE, ct);
    }
    let chunk = usize::from(chunk % 65);
    let request = if chunk == 0 {
        request
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
    } else {
        let parts: Vec<Result<bytes::Bytes, std::io::Error>> = body
            .chunks(chunk)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        request.body(Body::from_stream(futures::stream::iter(parts)))
    }
    .expect("request");
    let status = runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(10), form_router().oneshot(request))
            .await
            .expect("the multipart path hung")
            .expect("infallible")
            .status()
    });
    assert!(
        matches!(status.as_u16(), 200 | 413 | 415 | 422),
        "multipart answered {status}"
    );
}

/// The tenant the token harness verifies for.
pub const TOKEN_TENANT: &str = "acme";
/// Its signing key.
pub const TOKEN_KEY: &[u8] = b"fuzz-secret-0123456789abcdef0123456789";
const WRONG_KEY: &[u8] = b"fuzz-wrong!-0123456789abcdef0123456789";

/// Base64url without padding.
pub fn b64url(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// A JWT from raw header and payload bytes, HS256-signed with `key`.
pub fn sign_jwt(header: &[u8], payload: &[u8], key: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64url(header), b64url(payload));
    let sig = hmac_sha256(key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&sig))
}

fn token_service() -> TokenService {
    TokenService::new(TOKEN_TENANT, TOKEN_KEY, Duration::from_secs(1800))
}

/// The placeholder the asymmetric seeds' headers carry where the key id goes.
pub const KID_PLACEHOLDER: &str = "KID";

/// A tenant with asymmetric tokens only (HS256 off), its key generated in this process
/// (the fuzzer cannot know it): its EdDSA key id and public key bytes.
struct Asymmetric {
    service: TokenService,
    kid: String,
    public: Vec<u8>,
}

fn asymmetric() -> &'static Asymmetric {
    static ASYMMETRIC: std::sync::OnceLock<Asymmetric> = std::sync::OnceLock::new();
    ASYMMETRIC.get_or_init(|| {
        let now = chrono::Utc::now();
        let keys = KeySet::ephemeral(now);
        let jwk = keys
            .jwks(now)
            .into_iter()
            .find(|k| k.alg == "EdDSA")
            .expect("an EdDSA key");
        let service = TokenService::with_keys(
            TOKEN_TENANT,
            keys,
            None,
            AccessAlgorithm::EdDsa,
            Duration::from_secs(1800),
            now,
        )
        .expect("asymmetric token service");
        Asymmetric {
            service,
            public: b64url_decode(&jwk.x).expect("JWK x"),
            kid: jwk.kid,
        }
    })
}

/// Token verification. Byte 0 picks the mode: 0 the rest is the token text; 1, 2 and 3
/// the rest is `header JSON \0 payload JSON`, HS256-signed with the tenant's key (1),
/// another (2), or the asymmetric tenant's Ed25519 public key bytes with `KID` in the
/// header replaced by that key's id (3: the algorithm-confusion forgery).
///
/// Oracles: no input panics; the HS256 tenant accepts only genuine tokens signed with
/// its key; the asymmetric tenant accepts nothing (no input is signed with its private
/// key).
pub fn token(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let svc = token_service();
    let asym = asymmetric();
    let token = match mode % 4 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        m => {
            let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let (h, p) = (&rest[..split], rest.get(split + 1..).unwrap_or(&[]));
            match m {
                1 => sign_jwt(h, p, TOKEN_KEY),
                2 => sign_jwt(h, p, WRONG_KEY),
                _ => {
                    let header = String::from_utf8_lossy(h).replace(KID_PLACEHOLDER, &asym.kid);
                    sign_jwt(header.as_bytes(), p, &asym.public)
                }
            }
        }
    };
    let forged = asym.service.verify_access(&token);
    assert!(
        matches!(forged, Err(TokenError::Invalid | TokenError::Expired)),
        "the asymmetric tenant accepted a token it never signed: {token:?}"
    );
    let result = svc.verify_access(&token);
    let Ok(claims) = result else {
        assert!(matches!(
            result,
            Err(TokenError::Invalid | TokenError::Expired)
        ));
        return;
    };
    // Accepted: it must be a genuine, current HS256 access token of this tenant, signed
    // with its key.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted a token of {} parts", parts.len());
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    assert_eq!(
        parts[2],
        b64url(&hmac_sha256(TOKEN_KEY, signing_input.as_bytes())),
        "accepted a token not signed with the tenant's key: {token:?}"
    );
    let header = b64url_decode(parts[0]).expect("accepted header is base64url");
    let header: serde_json::Value = serde_json::from_slice(&header).expect("header is JSON");
    assert_eq!(header["alg"], "HS256", "accepted alg {}", header["alg"]);
    assert_eq!(claims.aud, TOKEN_TENANT);
    assert_eq!(claims.iss, format!("faceid/{TOKEN_TENANT}"));
    assert_eq!(claims.typ, "access");
    let now = chrono::Utc::now().timestamp();
    assert!(claims.exp >= now - 10, "expired token accepted: {claims:?}");
    assert!(
        claims.nbf <= now + 10,
        "not-yet-valid token accepted: {claims:?}"
    );
}

/// Base64url decoding (padding optional); `None` on any other character.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    Some(out)
}

/// Seeds for [`token`]: a genuine token and header/payload pairs around the edges.
pub fn token_seeds() -> Vec<Vec<u8>> {
    let svc = token_service();
    let now = chrono::Utc::now().timestamp();
    let genuine = svc
        .issue_access(uuid::Uuid::new_v4(), 0, chrono::Utc::now())
        .expect("issue");
    let mut seeds = vec![[&[0u8][..], genuine.as_bytes()].concat()];
    let sub = uuid::Uuid::new_v4();
    let jti = uuid::Uuid::new_v4();
    for (alg, aud, typ, exp, nbf) in [
        ("HS256", "acme", "access", now + 600, now - 1),
        ("HS256", "acme", "access", now - 600, now - 900),
        ("HS256", "acme", "access", now + 600, now + 600),
        ("HS256", "globex", "access", now + 600, now),
        ("HS256", "acme", "refresh", now + 600, now),
        ("none", "acme", "access", now + 600, now),
        ("HS512", "acme", "access", now + 600, now),
        ("RS256", "acme", "access", now + 600, now),
    ] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let payload = format!(
            r#"{{"iss":"faceid/{aud}","aud":"{aud}","sub":"{sub}","exp":{exp},"iat":{nbf},"nbf":{nbf},"jti":"{jti}","typ":"{typ}"}}"#
        );
        for mode in [1u8, 2] {
            seeds.push([&[mode], header.as_bytes(), &[0], payload.as_bytes()].concat());
        }
    }
    // Against the asymmetric tenant: HS256 (and others) under its key id, signed with its
    // public key bytes.
    let payload = format!(
        r#"{{"iss":"faceid/acme","aud":"acme","sub":"{sub}","exp":{},"iat":{now},"nbf":{now},"jti":"{jti}","typ":"access"}}"#,
        now + 600
    );
    for alg in ["HS256", "EdDSA", "ES256", "none"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{KID_PLACEHOLDER}"}}"#);
        seeds.push([&[3u8], header.as_bytes(), &[0], payload.as_bytes()].concat());
    }
    seeds
}

/// Seeds for [`multipart`]: well-formed register forms and near misses.
pub fn multipart_seeds() -> Vec<Vec<u8>> {
    let part = |name: &str, file: Option<&str>, value: &[u8]| -> Vec<u8> {
        let disposition = match file {
            Some(f) => {
                format!("form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: image/jpeg")
            }
            None => format!("form-data; name=\"{name}\""),
        };
        [
            format!("--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n").as_bytes(),
            value,
            b"\r\n",
        ]
        .concat()
    };
    let end = format!("--{BOUNDARY}--\r\n").into_bytes();
    let full = [
        part("username", None, b"alice_01"),
        part("email", None, b"alice@example.com"),
        part("password", None, b"correct horse"),
        part(
            "face_image",
            Some("a.jpg"),
            b"\xFF\xD8\xFF\xE0fakejpeg\xFF\xD9",
        ),
        end.clone(),
    ]
    .concat();
    let duplicated = [
        part("username", None, b"alice"),
        part("username", None, b"bob"),
        end.clone(),
    ]
    .concat();
    let hostile = [
        part("username", None, "robert'); DROP TABLE users;--".as_bytes()),
        part("email", None, "ü@ß.example".as_bytes()),
        part("unknown", None, b"x"),
        part("password", None, &[0xC3, 0x28, 0xFF]),
        end.clone(),
    ]
    .concat();
    let long = [part("username", None, &[b'a'; 1100]), end.clone()].concat();
    let mut seeds = Vec::new();
    for body in [full, duplicated, hostile, long, end] {
        for (ct, chunk) in [(0u8, 0u8), (2, 7), (7, 1), (3, 0), (4, 0)] {
            seeds.push([&[ct, chunk][..], &body].concat());
        }
    }
    seeds
}

/// Seeds for [`decode`]: small valid images of each accepted format and colour type,
/// and headers declaring huge sizes over tiny data (decompression bombs).
pub fn decode_seeds() -> Vec<Vec<u8>> {
    use image::{DynamicImage, ImageBuffer, ImageFormat};
    let encode = |img: DynamicImage, format: ImageFormat| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encode seed");
        out.into_inner()
    };
    let rgb = DynamicImage::ImageRgb8(ImageBuffer::from_fn(48, 40, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, ((x + y) * 3) as u8])
    }));
    let grey16 = DynamicImage::ImageLuma16(ImageBuffer::from_fn(36, 33, |x, y| {
        image::Luma([(x * 1700 + y * 13) as u16])
    }));
    let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_fn(40, 40, |x, y| {
        image::Rgba([x as u8, y as u8, 9, (x * y) as u8])
    }));
    let mut seeds = vec![
        encode(rgb.clone(), ImageFormat::Png),
        encode(grey16, ImageFormat::Png),
        encode(rgba.clone(), ImageFormat::Png),
        encode(rgb.clone(), ImageFormat::Jpeg),
        encode(DynamicImage::ImageLuma8(rgb.to_luma8()), ImageFormat::Jpeg),
        encode(rgba, ImageFormat::WebP),
    ];
    seeds.push(png_bomb(60_000, 60_000));
    seeds.push(png_bomb(1024, 1024));
    seeds
}

/// A PNG whose header declares `width`x`height` (8-bit greyscale) over a few bytes of
/// compressed data: a decompression bomb when the size is large.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).expect("len").to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit greyscale, deflate, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    // A short zlib stream of zeros (stored block of the first row only).
    let row = vec![0u8; 1 + (width as usize).min(1024)];
    let mut idat = vec![0x78, 0x01, 0x01];
    let len = u16::try_from(row.len()).expect("row");
    idat.extend_from_slice(&len.to_le_bytes());
    idat.extend_from_slice(&(!len).to_le_bytes());
    idat.extend_from_slice(&row);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// CRC-32 (IEEE), as PNG chunks need.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
