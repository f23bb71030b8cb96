//! Helpers of the end-to-end suites: locating the built `faceid` binary, starting it as a
//! real process with a given environment, waiting for readiness, and turning a face
//! photo into a camera feed for Chromium.

pub mod bench;
pub mod control_plane;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The repository root.
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Chromium refuses a fake-camera file whose path contains `..`.
    root.canonicalize().unwrap_or(root)
}

/// The test photos: `testdata/faces` in the repository, or `FACES_DIR` for a bigger set.
pub fn faces_dir() -> PathBuf {
    std::env::var_os("FACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("testdata/faces"))
}

/// An environment variable the suites need, with a hint when it is missing.
pub fn required_env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: run the tests through scripts/test.sh (or `scripts/platform.sh start && source .dev/env`)")
    })
}

/// The `faceid` binary that `cargo test --workspace` built beside this test executable.
pub fn faceid_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/faceid
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target directory")?;
    let bin = profile_dir.join("faceid");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (`cargo build -p faceid-service --bin faceid`; `cargo test --workspace` does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A `faceid serve` process, killed when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
}

impl ServiceProcess {
    /// Starts `faceid serve` with exactly `env` (plus `PATH`), listening on `port`, and
    /// waits until `/ready` answers 200.
    pub async fn start(
        env: &BTreeMap<String, String>,
        port: u16,
        log_name: &str,
    ) -> Result<ServiceProcess> {
        let log =
            std::env::temp_dir().join(format!("faceid-e2e-{log_name}-{}.log", std::process::id()));
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(faceid_binary()?);
        cmd.arg("serve")
            .env_clear()
            .envs(env)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null());
        let child = cmd.spawn().context("starting faceid serve")?;
        let mut service = ServiceProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        service.wait_ready(Duration::from_secs(60)).await?;
        Ok(service)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "faceid exited with {status} before it was ready:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(r) = client.get(format!("{}/ready", self.url)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("faceid not ready after {timeout:?}:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines the process logged.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Everything the process logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a YUV4MPEG2 video of `frames` identical frames of `photo`, letterboxed into
/// `width`x`height`, for Chromium's `--use-file-for-fake-video-capture`.
pub fn write_y4m(photo: &Path, out: &Path, width: u32, height: u32, frames: usize) -> Result<()> {
    let img = image::open(photo)
        .with_context(|| format!("decoding {}", photo.display()))?
        .to_rgb8();
    let scale = f64::min(
        f64::from(width) / f64::from(img.width()),
        f64::from(height) / f64::from(img.height()),
    );
    let (w, h) = (
        ((f64::from(img.width()) * scale) as u32).max(1),
        ((f64::from(img.height()) * scale) as u32).max(1),
    );
    let resized = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([128, 128, 128]));
    image::imageops::overlay(
        &mut canvas,
        &resized,
        i64::from((width - w) / 2),
        i64::from((height - h) / 2),
    );

    let (wu, hu) = (width as usize, height as usize);
    let mut y = vec![0u8; wu * hu];
    let mut u = vec![0u8; (wu / 2) * (hu / 2)];
    let mut v = vec![0u8; (wu / 2) * (hu / 2)];
    for (x, yy, p) in canvas.enumerate_pixels() {
        let [r, g, b] = p.0.map(f64::from);
        let (xi, yi) = (x as usize, yy as usize);
        y[yi * wu + xi] = (0.299 * r + 0.587 * g + 0.114 * b)
            .round()
            .clamp(0.0, 255.0) as u8;
        if xi % 2 == 0 && yi % 2 == 0 {
            let i = (yi / 2) * (wu / 2) + xi / 2;
            u[i] = (128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b)
                .round()
                .clamp(0.0, 255.0) as u8;
            v[i] = (128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b)
                .round()
                .clamp(0.0, 255.0) as u8;
        }
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
    writeln!(f, "YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg")?;
    for _ in 0..frames {
        f.write_all(b"FRAME\n")?;
        f.write_all(&y)?;
        f.write_all(&u)?;
        f.write_all(&v)?;
    }
    f.flush()?;
    Ok(())
}
