//! `faceid-bench`: the performance benchmarks of the platform (see docs/PERFORMANCE.md).
//!
//! Every bench starts what it measures itself (a release `faceid serve`, the Python
//! reference), talks to it over loopback only, is bounded by a request count and a time
//! cap, prints Markdown tables with the method, and stops what it started.

pub mod footprint;
pub mod http;
pub mod operator_scale;
pub mod pipeline;
pub mod reference;
pub mod side_by_side;
pub mod vectors;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{faces_dir, repo_root, required_env};

/// Linear-interpolated percentile (`q` in 0..=100) of unsorted samples; NaN when empty.
pub fn percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = (q / 100.0).clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Mean of samples; NaN when empty.
pub fn mean(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        f64::NAN
    } else {
        samples.iter().sum::<f64>() / samples.len() as f64
    }
}

/// The machine as one line: CPUs and CPU model.
pub fn machine_line() -> String {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned());
    format!("{cpus} CPUs ({model})")
}

/// `/proc/loadavg`'s three averages, e.g. `1.02 0.87 0.60`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

/// Refuses any URL whose host is not a loopback address.
pub fn ensure_loopback(url: &str) -> Result<()> {
    let parsed = url::Url::parse(url).with_context(|| format!("invalid URL {url}"))?;
    let ok = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if !ok || parsed.scheme() != "http" {
        bail!("{url}: the benchmarks only send traffic to http://127.0.0.1 (loopback)");
    }
    Ok(())
}

/// Resident set size (`VmRSS`) and its peak (`VmHWM`) of a process, in MiB.
pub fn rss_mib(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} missing in /proc/{pid}/status"))?;
        let kb: f64 = line
            .split_whitespace()
            .nth(1)
            .context("malformed /proc status line")?
            .parse()?;
        Ok(kb / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU seconds of this process alone (every thread; no children).
pub fn own_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// User + system CPU seconds of `root` and every descendant process (Linux `/proc`).
pub fn process_tree_cpu_s(root: u32) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut info: BTreeMap<u32, (u32, f64)> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() > 12 {
                let ppid = f[1].parse().unwrap_or(0);
                let cpu = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
                info.insert(pid, (ppid, cpu / tick));
            }
        }
    }
    let mut keep = vec![root];
    let mut i = 0;
    while i < keep.len() {
        let p = keep[i];
        for (pid, (ppid, _)) in &info {
            if *ppid == p && !keep.contains(pid) {
                keep.push(*pid);
            }
        }
        i += 1;
    }
    keep.iter()
        .filter_map(|p| info.get(p))
        .map(|(_, c)| c)
        .sum()
}

/// The release `faceid` binary (`target/release/faceid`), unless `explicit` names one.
pub fn faceid_path(explicit: Option<&Path>) -> Result<PathBuf> {
    let path = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo_root().join("target/release/faceid"));
    if !path.exists() {
        bail!(
            "{} not found: build it first (`cargo build --release -p faceid-service --bin faceid`)",
            path.display()
        );
    }
    Ok(path)
}

/// `path` relative to the repository root when it is inside it or beside it (reports
/// never show machine-specific absolute paths).
pub fn relative(path: &Path) -> PathBuf {
    let root = repo_root();
    if let Ok(rest) = path.strip_prefix(&root) {
        return rest.to_path_buf();
    }
    if let Some(parent) = root.parent()
        && let Ok(rest) = path.strip_prefix(parent)
    {
        return Path::new("..").join(rest);
    }
    path.to_path_buf()
}

/// What every bench needs from the local platform (`source .dev/env`).
#[derive(Debug, Clone)]
pub struct Platform {
    /// A superuser URL of the local PostgreSQL (`.dev/env`'s `DATABASE_URL`).
    pub database_url: String,
    /// Redis (`REDIS_URL`), when configured.
    pub redis_url: Option<String>,
    /// ONNX Runtime shared library.
    pub ort_dylib_path: String,
    /// The shared face images.
    pub faces: PathBuf,
    /// Extra settings of the benchmarked service: `FACEID_BENCH_SERVICE_ENV`, whitespace-
    /// separated `KEY=VALUE` pairs (e.g. `FACE_DETECTION_MODEL=tiny-320 MALLOC_ARENA_MAX=2`).
    pub extra_env: Vec<(String, String)>,
}

impl Platform {
    /// Reads the environment; fails naming what is missing.
    pub fn from_env() -> Result<Platform> {
        let database_url = required_env("DATABASE_URL")?;
        ensure_loopback(
            &database_url.replacen("postgres://", "http://", 1).replacen(
                "postgresql://",
                "http://",
                1,
            ),
        )
        .context("DATABASE_URL must point at the local PostgreSQL")?;
        let faces = faces_dir();
        if !faces.join("genuine").is_dir() {
            bail!(
                "{} has no genuine/ folder: set FACES_DIR to a folder laid out like testdata/faces",
                faces.display()
            );
        }
        let extra_env = std::env::var("FACEID_BENCH_SERVICE_ENV")
            .unwrap_or_default()
            .split_whitespace()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .with_context(|| format!("FACEID_BENCH_SERVICE_ENV: {kv:?} is not KEY=VALUE"))
            })
            .collect::<Result<_>>()?;
        Ok(Platform {
            extra_env,
            database_url,
            redis_url: std::env::var("REDIS_URL").ok().filter(|s| !s.is_empty()),
            ort_dylib_path: required_env("ORT_DYLIB_PATH")?,
            faces,
        })
    }

    /// The extra service settings as a sentence for the reports (empty when none).
    pub fn extra_env_note(&self) -> String {
        if self.extra_env.is_empty() {
            String::new()
        } else {
            let kv: Vec<String> = self
                .extra_env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(" Extra service settings: `{}`.", kv.join(" "))
        }
    }

    /// `DATABASE_URL` with another database name.
    pub fn database_url_for(&self, database: &str) -> Result<String> {
        let mut url = url::Url::parse(&self.database_url)?;
        url.set_path(&format!("/{database}"));
        Ok(url.to_string())
    }

    /// The environment of a benchmarked `faceid serve` on `schema`, rate limits off.
    ///
    /// The benchmark measures the face-only (1:N) path on galleries far past the size at
    /// which it is safe, and registers the same photos under many names, so both guards
    /// are opened explicitly (`FACE_ONLY_ACCEPT_RISK`, `ALLOW_DUPLICATE_FACES`); with
    /// them on, those requests would be refused before any face work and measure nothing.
    /// For the same reason the lockout is set out of reach: one bench client logging in
    /// again and again would otherwise be throttled and locked out of the accounts whose
    /// photos fail (429 and 423 without face work), which flatters the throughput.
    pub fn service_env(&self, schema: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let mut set = |k: &str, v: &str| {
            env.insert(k.to_owned(), v.to_owned());
        };
        set("DATABASE_URL", &self.database_url);
        set("DATABASE_SCHEMA", schema);
        set("TENANT", "bench");
        set(
            "SECRET_KEY",
            "faceid-bench-secret-key-0123456789abcdef-0123",
        );
        set(
            "TEMPLATE_KEY",
            "faceid-bench-template-key-0123456789abcdef-01",
        );
        set("ADMIN_API_KEY", "faceid-bench-admin-key-0123456789");
        set("RATE_LIMIT_ENABLED", "false");
        set("FACE_ONLY_ACCEPT_RISK", "true");
        set("ALLOW_DUPLICATE_FACES", "true");
        set("MAX_FAILED_LOGIN_ATTEMPTS", "1000");
        set("ACCOUNT_LOCK_FAILURES", "100000");
        set("MODELS_DIR", &repo_root().join("models").to_string_lossy());
        set("ORT_DYLIB_PATH", &self.ort_dylib_path);
        set("LOG_FORMAT", "json");
        if let Some(redis) = &self.redis_url {
            set("REDIS_URL", redis);
        }
        for (k, v) in &self.extra_env {
            set(k, v);
        }
        env
    }

    /// A pool on the admin database URL (one connection per task).
    pub async fn admin_pool(&self, max: u32) -> Result<sqlx::PgPool> {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(max)
            .connect(&self.database_url)
            .await
            .context("connecting to DATABASE_URL")
    }
}

/// A short random run id (8 hex digits) for schema, database and user names.
pub fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// Drops a bench schema (best effort).
pub async fn drop_schema(pool: &sqlx::PgPool, schema: &str) {
    if faceid_migrations::validate_schema_name(schema).is_ok() {
        let _ = sqlx::query(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            faceid_migrations::quote_ident(schema)
        ))
        .execute(pool)
        .await;
    }
}

/// A benchmarked `faceid serve` process (any binary) under a watchdog
/// ([`crate::Guarded`]), killed when dropped or when the bench process is gone. Unlike
/// [`crate::ServiceProcess`] it takes the binary's path (the release build), exposes its
/// pid (for RSS and CPU) and measures the time from spawn to the first `/ready` 200.
#[derive(Debug)]
pub struct BenchService {
    child: crate::Guarded,
    /// Base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Seconds from spawning the process to the first `/ready` 200.
    pub ready_s: f64,
    log: PathBuf,
}

impl BenchService {
    /// Spawns `binary serve` with exactly `env` (plus `PATH`) on a free port and waits
    /// for `/ready` (polled every 10 ms).
    pub async fn start(
        binary: &Path,
        env: &BTreeMap<String, String>,
        name: &str,
    ) -> Result<BenchService> {
        let port = crate::free_port()?;
        let log = std::env::temp_dir().join(format!(
            "faceid-bench-{name}-{}-{port}.log",
            std::process::id()
        ));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let started = Instant::now();
        let child = crate::spawn_guarded(binary, |cmd| {
            cmd.arg("serve")
                .env_clear()
                .envs(env)
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOST", "127.0.0.1")
                .env("PORT", port.to_string())
                .current_dir(repo_root())
                .stdout(out)
                .stderr(err)
                .stdin(Stdio::null());
        })
        .with_context(|| format!("starting {} serve", binary.display()))?;
        let mut svc = BenchService {
            child,
            url: format!("http://127.0.0.1:{port}"),
            ready_s: 0.0,
            log,
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = started + Duration::from_secs(120);
        loop {
            if let Some(status) = svc.child.try_wait()? {
                bail!(
                    "faceid exited with {status} before it was ready:\n{}",
                    svc.log_tail()
                );
            }
            if let Ok(r) = client.get(format!("{}/ready", svc.url)).send().await
                && r.status().is_success()
            {
                svc.ready_s = started.elapsed().as_secs_f64();
                return Ok(svc);
            }
            if Instant::now() > deadline {
                bail!("faceid not ready after 120 s:\n{}", svc.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the process logged.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the process (SIGKILL) and removes its log.
    pub fn stop(mut self) {
        self.child.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One face photo of the shared set.
#[derive(Debug, Clone)]
pub struct Photo {
    /// File name, e.g. `colin_powell_2.jpg`.
    pub name: String,
    /// Identity (the name without `_<n>.<ext>`), empty for non-genuine images.
    pub identity: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Photo {
    /// Reads `faces/<sub>/<name>`.
    pub fn read(faces: &Path, sub: &str, name: &str) -> Result<Photo> {
        let path = faces.join(sub).join(name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let identity = if sub == "genuine" {
            name.rsplit_once('_')
                .map(|(i, _)| i.to_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Photo {
            name: name.to_owned(),
            identity,
            bytes,
        })
    }
}

/// Every file of `faces/genuine`, sorted, as photos.
pub fn genuine_photos(faces: &Path) -> Result<Vec<Photo>> {
    let mut names: Vec<String> = std::fs::read_dir(faces.join("genuine"))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| Photo::read(faces, "genuine", n))
        .collect()
}

/// Formats a float with `d` decimals, `-` for NaN.
pub fn f(x: f64, d: usize) -> String {
    if x.is_nan() {
        "-".to_owned()
    } else {
        format!("{x:.d$}")
    }
}
