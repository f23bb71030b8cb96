//! The Python reference service (`../shared/reference/seed-python/`: FastAPI +
//! face_recognition/dlib + pgvector + slowapi), run from a git-ignored copy in
//! `.dev/seedref/` with its own venv, on our PostgreSQL (a database of its own) and our
//! Redis, with its rate limits off.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Platform;
use crate::repo_root;

/// Where the reference is copied and installed (git-ignored).
pub fn work_dir() -> PathBuf {
    repo_root().join(".dev/seedref")
}

/// The read-only source of the reference (`SEEDREF_DIR`, else
/// `../shared/reference/seed-python` beside the repository).
pub fn source_dir() -> PathBuf {
    std::env::var_os("SEEDREF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/reference/seed-python"))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".venv" || name == "__pycache__" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            let mut perms = std::fs::metadata(&target)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms)?;
        }
    }
    Ok(())
}

/// Copies the reference into `.dev/seedref/` and runs its `env.sh setup` (a venv with
/// its pinned packages from PyPI; prebuilt `dlib-bin`, no compile) unless already done.
/// Returns the work directory.
pub fn ensure_installed() -> Result<PathBuf> {
    let dir = work_dir();
    if dir.join(".venv/bin/uvicorn").exists() && dir.join("app.py").exists() {
        return Ok(dir);
    }
    let src = source_dir();
    if !src.join("app.py").exists() {
        bail!(
            "the Python reference is not at {} (set SEEDREF_DIR)",
            src.display()
        );
    }
    copy_dir(&src, &dir)?;
    eprintln!(
        "installing the Python reference into {} (env.sh setup: pip from PyPI, a few minutes the first time)",
        dir.display()
    );
    let log = std::fs::File::create(dir.join("setup.log"))?;
    let status = Command::new("bash")
        .arg("env.sh")
        .arg("setup")
        .current_dir(&dir)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("running env.sh setup")?;
    if !status.success() || !dir.join(".venv/bin/uvicorn").exists() {
        bail!(
            "env.sh setup failed ({status}); see {}",
            dir.join("setup.log").display()
        );
    }
    Ok(dir)
}

/// A running reference (uvicorn), stopped (SIGTERM to the master, then every worker)
/// when dropped; its database is dropped by [`Reference::stop`].
#[derive(Debug)]
pub struct Reference {
    child: Child,
    /// Base URL.
    pub url: String,
    /// uvicorn workers.
    pub workers: usize,
    database: String,
    log: PathBuf,
}

impl Reference {
    /// Creates a fresh database `database` (with pgvector) on our PostgreSQL and starts
    /// `uvicorn app:app --workers N` on it, rate limits off.
    pub async fn start(platform: &Platform, workers: usize, database: &str) -> Result<Reference> {
        let dir = ensure_installed()?;
        let admin = platform.admin_pool(1).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .execute(&admin)
        .await?;
        sqlx::query(&format!("CREATE DATABASE \"{database}\""))
            .execute(&admin)
            .await?;
        admin.close().await;
        let db_url = platform.database_url_for(database)?;
        {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&db_url)
                .await?;
            sqlx::query("CREATE EXTENSION IF NOT EXISTS vector")
                .execute(&pool)
                .await?;
            pool.close().await;
        }
        let redis = match &platform.redis_url {
            Some(r) => {
                let mut u = url::Url::parse(r)?;
                u.set_path("/2");
                u.to_string()
            }
            None => "redis://127.0.0.1:6390/0".to_owned(),
        };
        let port = crate::free_port()?;
        let log = std::env::temp_dir().join(format!(
            "faceid-bench-seedref-{}-{port}.log",
            std::process::id()
        ));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(dir.join(".venv/bin/uvicorn"))
            .args([
                "app:app",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                &workers.to_string(),
                "--log-level",
                "warning",
                "--no-access-log",
            ])
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env(
                "DATABASE_URL",
                db_url.replacen("postgres://", "postgresql://", 1),
            )
            .env("REDIS_URL", redis)
            .env("RATE_LIMIT_ENABLED", "0")
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .context("starting uvicorn")?;
        let mut r = Reference {
            child,
            url: format!("http://127.0.0.1:{port}"),
            workers,
            database: database.to_owned(),
            log,
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = r.child.try_wait()? {
                bail!("uvicorn exited with {status}:\n{}", r.log_tail());
            }
            if let Ok(resp) = client.get(format!("{}/ready", r.url)).send().await
                && resp.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("the reference was not ready after 180 s:\n{}", r.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if workers > 1 {
            // every worker loads dlib's models after the first answers
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        Ok(r)
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn terminate(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops uvicorn and drops the reference's database.
    pub async fn stop(mut self, platform: &Platform) -> Result<()> {
        self.terminate();
        let admin = platform.admin_pool(1).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.database
        ))
        .execute(&admin)
        .await?;
        let _ = std::fs::remove_file(&self.log);
        Ok(())
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        self.terminate();
    }
}
