//! The face pipeline's benchmark is `faceid bench` (per-stage latency at intra-op 1 and
//! 2, pool 2, and each network's FLOPs and GFLOP/s; `service/src/face/bench.rs`). This is
//! only its thin wrapper in the bench suite: it runs that command as a process with the
//! platform's models and ONNX Runtime, passes extra arguments through, and prints its
//! Markdown as is under the run line the other benches print (time, machine, load).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{Platform, faceid_path, machine_line};
use crate::repo_root;

/// Runs `faceid bench --runs N --image IMAGE [EXTRA...]`; returns its Markdown with a
/// header.
pub fn run(
    faceid: Option<&Path>,
    runs: u32,
    image: Option<PathBuf>,
    extra: &[String],
) -> Result<String> {
    let platform = Platform::from_env()?;
    let binary = faceid_path(faceid)?;
    let image = super::relative(
        &image.unwrap_or_else(|| platform.faces.join("genuine/barack_obama_1.jpg")),
    );
    let started = chrono::Utc::now();
    let load_before = super::load_average();
    let out = Command::new(&binary)
        .arg("bench")
        .arg("--runs")
        .arg(runs.to_string())
        .arg("--image")
        .arg(&image)
        .args(extra)
        .env("ORT_DYLIB_PATH", &platform.ort_dylib_path)
        .env("MODELS_DIR", repo_root().join("models"))
        .current_dir(repo_root())
        .output()
        .with_context(|| format!("running {} bench", binary.display()))?;
    if !out.status.success() {
        bail!(
            "{} bench failed ({}):\n{}",
            binary.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(format!(
        "## Pipeline (`faceid bench --runs {runs}{}`)\n\nRun {} UTC on {}; load average before \
         {load_before}, after {}.\n\n{}",
        extra.iter().map(|a| format!(" {a}")).collect::<String>(),
        started.format("%Y-%m-%d %H:%M"),
        machine_line(),
        super::load_average(),
        String::from_utf8_lossy(&out.stdout)
    ))
}
