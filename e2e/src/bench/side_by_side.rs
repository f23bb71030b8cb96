//! Side by side: the same HTTP load, on the same images and the same PostgreSQL, against
//! our service and the Python reference, in one run; prints both tables and the ratios.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;

use super::http::{self, Bounds, RunResult};
use super::reference::Reference;
use super::{BenchService, Platform, drop_schema, f, faceid_path, machine_line, run_id};

/// Options of `faceid-bench side-by-side`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `faceid` binary (default: the release build).
    pub faceid: Option<PathBuf>,
    /// Concurrency levels.
    pub concurrency: Vec<usize>,
    /// Per-run bounds.
    pub bounds: Bounds,
    /// People enrolled before the load.
    pub gallery: usize,
    /// uvicorn worker counts to run the reference with (empty: no reference).
    pub reference_workers: Vec<usize>,
}

struct Side {
    label: String,
    register_ms: Vec<f64>,
    results: Vec<RunResult>,
}

fn find<'a>(results: &'a [RunResult], case: &str, c: usize) -> Option<&'a RunResult> {
    results
        .iter()
        .find(|r| r.case == case && r.concurrency == c)
}

/// Runs the comparison; returns the Markdown report.
pub async fn run(opts: &Options) -> Result<String> {
    let platform = Platform::from_env()?;
    let binary = faceid_path(opts.faceid.as_deref())?;
    let cases = http::cases(&platform.faces, opts.gallery)?;
    let run = run_id();
    let started = chrono::Utc::now();
    let load_before = super::load_average();
    let mut sides = Vec::new();

    // Ours: the release binary on a schema of its own, rate limits off.
    {
        let schema = format!("bench_sbs_{run}");
        let env = platform.service_env(&schema);
        eprintln!("side-by-side: our service ({})", binary.display());
        let svc = BenchService::start(&binary, &env, "sbs").await?;
        let outcome = async {
            let register_ms =
                http::register_gallery(&svc.url, &platform.faces, opts.gallery).await?;
            let results = http::run_all(
                &svc.url,
                &cases,
                &opts.concurrency,
                opts.bounds,
                Some(svc.pid()),
                true,
            )
            .await?;
            anyhow::Ok((register_ms, results))
        }
        .await;
        svc.stop();
        let admin = platform.admin_pool(1).await?;
        drop_schema(&admin, &schema).await;
        let (register_ms, results) = outcome?;
        sides.push(Side {
            label: "ours (faceid, Rust)".to_owned(),
            register_ms,
            results,
        });
    }

    // The reference, once per worker count, each on a fresh database.
    for &workers in &opts.reference_workers {
        eprintln!("side-by-side: Python reference, {workers} uvicorn worker(s)");
        let database = format!("bench_seedref_{run}_w{workers}");
        let reference = Reference::start(&platform, workers, &database).await?;
        let outcome = async {
            let register_ms =
                http::register_gallery(&reference.url, &platform.faces, opts.gallery).await?;
            let results = http::run_all(
                &reference.url,
                &cases,
                &opts.concurrency,
                opts.bounds,
                Some(reference.pid()),
                true,
            )
            .await?;
            anyhow::Ok((register_ms, results))
        }
        .await;
        reference.stop(&platform).await?;
        let (register_ms, results) = outcome?;
        sides.push(Side {
            label: format!("reference (Python, uvicorn --workers {workers})"),
            register_ms,
            results,
        });
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Side by side: our service vs the Python reference\n\n\
         Run {} UTC on {}; load average before {load_before}, after {}. Our service: `{}` \
         serve (release), defaults (`FACE_POOL_SIZE` = CPUs, intra-op 1), rate limits off, \
         schema of its own. Reference: `.dev/seedref` copy of `shared/reference/seed-python` \
         (uvicorn, rate limits off), a database of its own on the same PostgreSQL. Same \
         images, same load, one after the other in this run.{}\n",
        started.format("%Y-%m-%d %H:%M"),
        machine_line(),
        super::load_average(),
        binary
            .file_name()
            .map_or("faceid".into(), |n| n.to_string_lossy()),
        platform.extra_env_note(),
    );
    let _ = writeln!(out, "{}\n", http::method(&cases, opts.gallery, opts.bounds));
    for side in &sides {
        let _ = writeln!(
            out,
            "### {}\n\nGallery registrations (sequential): p50 {} ms, max {} ms.\n\n{}",
            side.label,
            f(super::percentile(&side.register_ms, 50.0), 1),
            f(super::percentile(&side.register_ms, 100.0), 1),
            http::table(&side.results)
        );
    }
    if sides.len() > 1 {
        let ours = &sides[0];
        let _ = writeln!(
            out,
            "### Ratios (ours / reference for req/s; reference / ours for p50)\n"
        );
        let mut header = "| case | c | ours req/s | ours p50 ms |".to_owned();
        let mut rule = "|---|---|---|---|".to_owned();
        for side in &sides[1..] {
            let w = side
                .label
                .rsplit(' ')
                .next()
                .unwrap_or("")
                .trim_end_matches(')');
            let _ = write!(
                header,
                " ref w{w} req/s | throughput x | ref w{w} p50 ms | latency x |"
            );
            rule.push_str("---|---|---|---|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for r in &ours.results {
            let mut line = format!(
                "| {} | {} | {} | {} |",
                r.case,
                r.concurrency,
                f(r.rps, 2),
                f(r.p50, 1)
            );
            for side in &sides[1..] {
                match find(&side.results, r.case, r.concurrency) {
                    Some(x) => {
                        let _ = write!(
                            line,
                            " {} | {} | {} | {} |",
                            f(x.rps, 2),
                            f(r.rps / x.rps, 1),
                            f(x.p50, 1),
                            f(x.p50 / r.p50, 1)
                        );
                    }
                    None => line.push_str(" - | - | - | - |"),
                }
            }
            let _ = writeln!(out, "{line}");
        }
        // Headline targets against the reference's best configuration for each.
        let c_max = opts.concurrency.iter().copied().max().unwrap_or(1);
        let c_min = opts.concurrency.iter().copied().min().unwrap_or(1);
        let best_rps = sides[1..]
            .iter()
            .filter_map(|s| find(&s.results, "match", c_max).map(|r| (r.rps, s.label.clone())))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let best_p50 = sides[1..]
            .iter()
            .filter_map(|s| find(&s.results, "match", c_min).map(|r| (r.p50, s.label.clone())))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let (
            Some(o_hi),
            Some(o_lo),
            Some((ref_rps, ref_rps_label)),
            Some((ref_p50, ref_p50_label)),
        ) = (
            find(&ours.results, "match", c_max),
            find(&ours.results, "match", c_min),
            best_rps,
            best_p50,
        ) {
            let x = o_hi.rps / ref_rps;
            let l = o_lo.p50 / ref_p50;
            let _ = writeln!(
                out,
                "\n**Targets** (matching logins, against the reference's best configuration for \
                 each number):\n\n\
                 - Throughput at c={c_max}: ours {} req/s vs {} req/s ({ref_rps_label}): **{}x** \
                 (target >= 10x: {}).\n\
                 - Median latency at c={c_min}: ours {} ms vs {} ms ({ref_p50_label}): **{} of \
                 the reference's** (target <= 0.20: {}).",
                f(o_hi.rps, 1),
                f(ref_rps, 2),
                f(x, 1),
                if x >= 10.0 { "met" } else { "missed" },
                f(o_lo.p50, 1),
                f(ref_p50, 1),
                f(l, 3),
                if l <= 0.2 { "met" } else { "missed" },
            );
        }
    } else {
        let _ = writeln!(out, "(reference not run: no ratios)");
    }
    Ok(out)
}
