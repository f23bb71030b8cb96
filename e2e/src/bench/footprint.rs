//! Footprint: the service's resident memory after start and under load, and the time from
//! process start to the first `/ready` 200 (migrations already applied).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

use super::http::{self, Bounds};
use super::{BenchService, Platform, f, faceid_path, machine_line, percentile, rss_mib, run_id};

/// Options of `faceid-bench footprint`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `faceid` binary (default: the release build).
    pub faceid: Option<PathBuf>,
    /// Process starts timed.
    pub starts: usize,
    /// Concurrency of the load.
    pub concurrency: usize,
    /// Bounds of each case's load.
    pub bounds: Bounds,
    /// People enrolled before the load.
    pub gallery: usize,
}

/// Runs the bench; returns the Markdown report.
pub async fn run(opts: &Options) -> Result<String> {
    let platform = Platform::from_env()?;
    let binary = faceid_path(opts.faceid.as_deref())?;
    let run = run_id();
    let started = chrono::Utc::now();
    let load_before = super::load_average();
    let schema = format!("bench_fp_{run}");
    let pool = platform.admin_pool(1).await?;
    faceid_migrations::apply(&pool, &schema).await?;
    let env = platform.service_env(&schema);
    let outcome = measure(opts, &platform, &binary, &env).await;
    super::drop_schema(&pool, &schema).await;
    let (starts, idle, under_load, peak, after, load_results, case_rss) = outcome?;

    let ready: Vec<f64> = starts.iter().map(|(r, _)| *r).collect();
    let rss: Vec<f64> = starts.iter().map(|(_, m)| *m).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Footprint\n\nRun {} UTC on {}; load average before {load_before}, after {}. \
         `{}` serve (defaults: `FACE_POOL_SIZE` = CPUs, intra-op 1), migrations applied \
         beforehand, rate limits off. Ready time = from spawning the process to the first \
         `/ready` 200 (polled every 10 ms); RSS = `VmRSS` of /proc/PID/status (1 s after \
         ready, idle); under load = the highest `VmRSS` sampled every 50 ms while the HTTP \
         cases below ran at concurrency {}; peak = `VmHWM` at the end.{}\n",
        started.format("%Y-%m-%d %H:%M"),
        machine_line(),
        super::load_average(),
        super::relative(&binary).display(),
        opts.concurrency,
        platform.extra_env_note()
    );
    let _ = writeln!(
        out,
        "| measure | value |\n|---|---|\n\
         | starts | {} |\n\
         | time to /ready 200, median / max | {} s / {} s |\n\
         | RSS after start (idle), median | {} MiB |\n\
         | RSS of the loaded process, idle before load | {} MiB |\n\
         | RSS under load, max sampled | {} MiB (max per case, in order, MiB: {}) |\n\
         | peak RSS (VmHWM) | {} MiB |\n\
         | RSS 2 s after the load | {} MiB |\n",
        starts.len(),
        f(percentile(&ready, 50.0), 2),
        f(percentile(&ready, 100.0), 2),
        f(percentile(&rss, 50.0), 1),
        f(idle, 1),
        f(under_load, 1),
        case_rss.join(", "),
        f(peak, 1),
        f(after, 1),
    );
    let _ = writeln!(
        out,
        "Load during the sampling:\n\n{}",
        http::table(&load_results)
    );
    let ready_max = percentile(&ready, 100.0);
    let _ = writeln!(
        out,
        "**Targets:** resident memory <= 400 MB with models loaded: {} (peak {} MiB = {} MB). \
         `/ready` within 3 s of start: {} (slowest of {} starts: {} s).",
        if peak * 1.048_576 <= 400.0 {
            "met"
        } else {
            "missed"
        },
        f(peak, 1),
        f(peak * 1.048_576, 1),
        if ready_max <= 3.0 { "met" } else { "missed" },
        starts.len(),
        f(ready_max, 2)
    );
    Ok(out)
}

type Measured = (
    Vec<(f64, f64)>,
    f64,
    f64,
    f64,
    f64,
    Vec<http::RunResult>,
    Vec<String>,
);

async fn measure(
    opts: &Options,
    platform: &Platform,
    binary: &std::path::Path,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<Measured> {
    let mut starts = Vec::new();
    let mut last = None;
    for i in 0..opts.starts.max(1) {
        let svc = BenchService::start(binary, env, "fp").await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss, _) = rss_mib(svc.pid())?;
        starts.push((svc.ready_s, rss));
        eprintln!(
            "footprint: start {i}: ready in {:.2} s, RSS {rss:.1} MiB",
            svc.ready_s
        );
        if i + 1 == opts.starts.max(1) {
            last = Some(svc);
        } else {
            svc.stop();
        }
    }
    let svc = last.context("no start")?;
    http::register_gallery(&svc.url, &platform.faces, opts.gallery).await?;
    let (idle, _) = rss_mib(svc.pid())?;
    let pid = svc.pid();
    let cases = http::cases(&platform.faces, opts.gallery)?;
    let mut results = Vec::new();
    let mut case_rss = Vec::new();
    for case in &cases {
        // RSS sampled every 50 ms while this case runs
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut max = 0.0f64;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((rss, _)) = rss_mib(pid) {
                        max = max.max(rss);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                max
            })
        };
        let r = http::run_case(
            &svc.url,
            case,
            opts.concurrency,
            opts.bounds,
            Some(pid),
            &format!("fp{}", &case.name[..1]),
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        let max = sampler.await?;
        results.push(r?);
        case_rss.push(format!("{} {max:.0}", case.name));
        eprintln!(
            "footprint: {} at c={}: max RSS {max:.1} MiB",
            case.name, opts.concurrency
        );
    }
    let under_load = case_rss
        .iter()
        .filter_map(|s| s.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .fold(0.0, f64::max);
    let (_, peak) = rss_mib(pid)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, _) = rss_mib(pid)?;
    svc.stop();
    Ok((starts, idle, under_load, peak, after, results, case_rss))
}
