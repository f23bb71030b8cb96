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

/// The environment of a `faceid serve` for a tenant of its own in `schema` of the test
/// database: `DATABASE_URL` and `ORT_DYLIB_PATH` from this process's environment, the
/// repository's models, test keys (`admin_key` for the admin API), then `extra`, which
/// adds to or overrides these.
pub fn service_env(
    schema: &str,
    tenant: &str,
    admin_key: &str,
    extra: &[(&str, &str)],
) -> Result<BTreeMap<String, String>> {
    let mut env: BTreeMap<String, String> = [
        ("DATABASE_URL", required_env("DATABASE_URL")?),
        ("DATABASE_SCHEMA", schema.to_owned()),
        ("TENANT", tenant.to_owned()),
        (
            "SECRET_KEY",
            format!("{tenant}-e2e-secret-key-0123456789abcdef"),
        ),
        ("ADMIN_API_KEY", admin_key.to_owned()),
        (
            "MODELS_DIR",
            repo_root().join("models").display().to_string(),
        ),
        ("ORT_DYLIB_PATH", required_env("ORT_DYLIB_PATH")?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Ok(env)
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

/// A child process run under a watchdog that kills it as soon as the process that
/// started it is gone, however that process ended: a failed assertion, a panic, a
/// `std::process::exit`, a SIGKILL, a value held in a `static` whose `Drop` never runs.
///
/// The watchdog is a `bash` wrapper: it starts the command in the background, writes the
/// command's pid to a file, then every half second checks that its own parent is still
/// the test process (a dead parent's children are re-parented at once, before anyone
/// reaps it) and that the command still runs; when the parent is gone it SIGKILLs the
/// command. The wrapper exits with the command's status, so [`Guarded::try_wait`] and
/// [`Guarded::wait`] report the command's own exit. Dropping the value kills the command.
/// As a background job of a non-interactive shell the command ignores SIGINT: stop it
/// with SIGTERM ([`Guarded::signal`]) or SIGKILL ([`Guarded::kill`]).
#[derive(Debug)]
pub struct Guarded {
    wrapper: Child,
    pid: u32,
}

/// The watchdog script: `$1` is the parent's pid, `$2` the pid file, the rest the command.
const WATCHDOG: &str = r#"
parent=$1 pid_file=$2
shift 2
"$@" & child=$!
echo "$child" > "$pid_file"
alive() {
    local _pid _comm _state ppid _rest
    read -r _pid _comm _state ppid _rest < /proc/$$/stat || return 1
    [ "$ppid" = "$parent" ] && kill -0 "$child" 2>/dev/null
}
while alive; do sleep 0.5; done
kill -9 "$child" 2>/dev/null
wait "$child"
"#;

/// Spawns `program` under the watchdog of [`Guarded`]; `build` adds the arguments,
/// environment, working directory and standard streams exactly as on a plain
/// [`Command`] (they apply to the wrapper, which passes them on). Returns once the
/// command runs.
pub fn spawn_guarded(
    program: impl AsRef<std::ffi::OsStr>,
    build: impl FnOnce(&mut Command),
) -> Result<Guarded> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid_file =
        std::env::temp_dir().join(format!("faceid-e2e-guard-{}-{seq}.pid", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let what = program.as_ref().to_string_lossy().into_owned();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(WATCHDOG)
        .arg("faceid-e2e-guard")
        .arg(std::process::id().to_string())
        .arg(&pid_file)
        .arg(program);
    build(&mut cmd);
    let mut wrapper = cmd
        .spawn()
        .with_context(|| format!("starting {what} under the watchdog"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse()
        {
            break pid;
        }
        if let Some(status) = wrapper.try_wait()? {
            bail!("the watchdog of {what} exited with {status} before it started it");
        }
        if Instant::now() > deadline {
            let _ = wrapper.kill();
            let _ = wrapper.wait();
            bail!("the watchdog of {what} wrote no pid within 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = std::fs::remove_file(&pid_file);
    Ok(Guarded { wrapper, pid })
}

impl Guarded {
    /// The command's process id (not the watchdog's).
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// The command's exit status, if it has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.wrapper.try_wait()
    }

    /// Waits for the command to exit (through its watchdog).
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.wrapper.wait()
    }

    /// Sends `signal` (a name, e.g. `TERM`) to the command.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.pid);
        }
        Ok(())
    }

    /// SIGKILLs the command (if it still runs) and reaps it with its watchdog.
    pub fn kill(&mut self) {
        if matches!(self.wrapper.try_wait(), Ok(None)) {
            let _ = self.signal("KILL");
        }
        let _ = self.wrapper.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `faceid serve` process under a watchdog ([`Guarded`]), killed when dropped or when
/// the test process is gone.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Guarded,
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
        let err = out.try_clone()?;
        let child = spawn_guarded(faceid_binary()?, |cmd| {
            cmd.arg("serve")
                .env_clear()
                .envs(env)
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOST", "127.0.0.1")
                .env("PORT", port.to_string())
                .stdout(out)
                .stderr(err)
                .stdin(Stdio::null());
        })
        .context("starting faceid serve")?;
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

    /// The process id (for `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its `/metrics` page (the Prometheus text format).
    pub async fn metrics(&self) -> Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.url))
            .await?
            .error_for_status()?
            .text()
            .await?)
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use super::*;

    /// Whether process `pid` exists (a reaped process does not; Linux `/proc`).
    fn exists(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
    }

    /// The parent of `a_guarded_child_dies_with_its_parent`, run in a process of its own:
    /// starts a guarded `sleep 300`, writes its pid, then ends the way
    /// `FACEID_GUARD_PROBE` says, never dropping the guard.
    #[test]
    #[ignore = "a helper process of a_guarded_child_dies_with_its_parent"]
    fn guard_probe_parent() {
        static KEPT: std::sync::OnceLock<Guarded> = std::sync::OnceLock::new();
        let mode = std::env::var("FACEID_GUARD_PROBE").unwrap();
        let pid_file = std::env::var("FACEID_GUARD_PROBE_PID").unwrap();
        let child = spawn_guarded("sleep", |c| {
            c.arg("300").stdout(Stdio::null());
        })
        .unwrap();
        assert!(exists(child.id()), "the guarded command does not run");
        std::fs::write(&pid_file, child.id().to_string()).unwrap();
        match mode.as_str() {
            // Exit without unwinding: no destructor runs.
            "exit" => std::process::exit(3),
            // The test passes and the harness exits; statics are never dropped.
            "static" => {
                let _ = KEPT.set(child);
            }
            // Wait to be SIGKILLed.
            _ => loop {
                std::thread::sleep(Duration::from_secs(1));
                let _ = &child;
            },
        }
    }

    #[test]
    fn a_guarded_child_dies_with_its_parent() {
        for mode in ["exit", "static", "sigkill"] {
            let pid_file = std::env::temp_dir().join(format!(
                "faceid-e2e-guard-probe-{}-{mode}",
                std::process::id()
            ));
            let _ = std::fs::remove_file(&pid_file);
            let mut parent = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "tests::guard_probe_parent", "--ignored"])
                .env("FACEID_GUARD_PROBE", mode)
                .env("FACEID_GUARD_PROBE_PID", &pid_file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            let child: u32 = loop {
                if let Ok(text) = std::fs::read_to_string(&pid_file)
                    && let Ok(pid) = text.trim().parse()
                {
                    break pid;
                }
                assert!(Instant::now() < deadline, "{mode}: the probe wrote no pid");
                std::thread::sleep(Duration::from_millis(20));
            };
            let _ = std::fs::remove_file(&pid_file);
            if mode == "sigkill" {
                assert!(exists(child), "{mode}: the guarded command does not run");
                parent.kill().unwrap();
            }
            let status = parent.wait().unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while exists(child) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if exists(child) {
                let _ = Command::new("kill")
                    .args(["-9", &child.to_string()])
                    .status();
                panic!("{mode}: the guarded command {child} outlived its parent ({status}) by 5 s");
            }
        }
    }
}
