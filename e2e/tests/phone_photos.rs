//! Photos people really send (issue 17): a 50-megapixel phone photo, far above the
//! default 16 MP limit, is decoded at a reduced scale by the JPEG decoder itself instead
//! of being refused, logs its owner in, and sixteen of them at once keep the real
//! `faceid serve` process within the memory bound docs/OPERATOR.md states.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed assertion

use std::io::Cursor;
use std::time::Duration;

use faceid_e2e::bench::rss_mib;
use faceid_e2e::{ServiceProcess, faces_dir, free_port, service_env};
use reqwest::multipart::{Form, Part};

/// Peak resident memory (VmHWM) allowed while 16 uploads of 50 MP photos are in flight,
/// with the allocator setting the image and `scripts/run.sh` use (`MALLOC_ARENA_MAX=2`):
/// the models and runtime (about 175 MiB), 16 request bodies (4 MiB each here, buffered
/// by the HTTP layer and the multipart parser) and two reduced decodes (3.2 MP each, one
/// per engine slot). Measured 470 MiB (2026-12-01, debug build; 583 MiB with glibc's
/// default arenas); docs/OPERATOR.md "Photo size and memory".
const PEAK_BOUND_MIB: f64 = 600.0;

/// `photo` scaled up by `factor` (a 910x1137 portrait x7: 6370x7959, 50.7 MP) as a
/// baseline JPEG: what a 50 MP phone camera writes, as far as decoding is concerned.
fn fifty_megapixel_jpeg(photo: &str, factor: u32) -> Vec<u8> {
    let img = image::open(faces_dir().join("genuine").join(photo))
        .unwrap()
        .to_rgb8();
    let (w, h) = (img.width() * factor, img.height() * factor);
    assert!(u64::from(w) * u64::from(h) >= 50_000_000, "{w}x{h}");
    let big = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&big)
        .unwrap();
    out.into_inner()
}

async fn login(client: &reqwest::Client, url: &str, image: Vec<u8>) -> (u16, serde_json::Value) {
    let form = Form::new()
        .text("username", "obama")
        .part("face_image", Part::bytes(image).file_name("phone.jpg"));
    let r = client
        .post(format!("{url}/api/v1/auth/login"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn fifty_megapixel_photos_log_in_and_sixteen_at_once_stay_within_the_memory_bound() {
    // Made first: the service's idle timeout would close a keep-alive connection left
    // waiting for it.
    let photo = fifty_megapixel_jpeg("barack_obama_1.jpg", 7);
    assert!(
        photo.len() < 10 << 20,
        "{} bytes: above MAX_UPLOAD_BYTES",
        photo.len()
    );
    let schema = format!("phone_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let env = service_env(
        &schema,
        "phone",
        "phone-photos-admin-key",
        &[
            ("FACE_POOL_SIZE", "2"),
            ("RATE_LIMIT_LOGIN", "1000/minute"),
            // as the container image and scripts/run.sh set it
            ("MALLOC_ARENA_MAX", "2"),
        ],
    )
    .unwrap();
    let service = ServiceProcess::start(&env, free_port().unwrap(), "phone-photos")
        .await
        .unwrap();
    let url = service.url.clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        // A fresh connection per request, as a phone app's uploads mostly are.
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let form = Form::new()
        .text("username", "obama")
        .text("email", "obama@example.com")
        .text("password", "correct horse battery")
        .part(
            "face_image",
            Part::bytes(std::fs::read(faces_dir().join("genuine/barack_obama_2.jpg")).unwrap())
                .file_name("face.jpg"),
        );
    let r = client
        .post(format!("{url}/api/v1/auth/register"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    let photo = fifty_megapixel_jpeg("barack_obama_1.jpg", 7);
    assert!(
        photo.len() < 10 << 20,
        "{} bytes: above MAX_UPLOAD_BYTES",
        photo.len()
    );
    let (status, body) = login(&client, &url, photo.clone()).await;
    assert_eq!(status, 200, "{body}\n{}", service.log_tail());
    let (rss_after_one, _) = rss_mib(service.pid()).unwrap();

    let logins: Vec<_> = (0..16)
        .map(|_| {
            let (client, url, photo) = (client.clone(), url.clone(), photo.clone());
            tokio::spawn(async move { login(&client, &url, photo).await })
        })
        .collect();
    for l in logins {
        let (status, body) = l.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (rss, peak) = rss_mib(service.pid()).unwrap();
    // Operators see how often photos arrive above the limit: each 50 MP photo was
    // decoded at a quarter of its sides (3.2 MP).
    let metrics = service.metrics().await.unwrap();
    assert!(
        metrics.contains("faceid_photo_decodes_total{reduced_by=\"4\"} 17"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("photo_decodes"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(metrics.contains("faceid_photo_decodes_total{reduced_by=\"1\"} 1"));
    println!(
        "50 MP JPEG of {} bytes: RSS after one login {rss_after_one:.0} MiB, after 16 at once \
         {rss:.0} MiB, peak (VmHWM) {peak:.0} MiB",
        photo.len()
    );
    assert!(
        peak <= PEAK_BOUND_MIB,
        "peak RSS {peak:.0} MiB above the documented {PEAK_BOUND_MIB} MiB"
    );
}
