//! `faceid-bench`: the platform's benchmarks (docs/PERFORMANCE.md). Each subcommand starts
//! what it measures, sends traffic over loopback only, stops by itself (a request count and
//! a time cap), prints Markdown with its method, and stops what it started. `--smoke` runs a
//! tiny version in seconds (the tests run those).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use faceid_e2e::bench::{self, http::Bounds};

/// FaceID benchmarks (run after `source .dev/env`; build the service with
/// `cargo build --release -p faceid-service --bin faceid`).
#[derive(Parser, Debug)]
#[command(name = "faceid-bench")]
struct Cli {
    /// The `faceid` binary to benchmark (default: target/release/faceid).
    #[arg(long, global = true)]
    faceid: Option<PathBuf>,
    /// Tiny sizes, a few requests, seconds: checks that the bench works, measures nothing.
    #[arg(long, global = true)]
    smoke: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Per-stage pipeline latency at intra-op 1 and 2 and each network's GFLOP/s. A thin
    /// wrapper: the benchmark is `faceid bench`, run as a process with the platform's
    /// models and ONNX Runtime; this adds the run line (time, machine, load) and passes
    /// any arguments after `--` on to it.
    Pipeline {
        /// Timed runs per configuration (default 50; smoke 1).
        #[arg(long)]
        runs: Option<u32>,
        /// Photo letterboxed into 640x480 and 1280x720.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Further `faceid bench` arguments, after `--` (e.g. `-- --face-recognition-precision float32`).
        #[arg(last = true)]
        faceid_args: Vec<String>,
    },
    /// HTTP load against a running server (ours or the Python reference; loopback only).
    Http {
        /// Base URL, e.g. http://127.0.0.1:8000.
        #[arg(long)]
        url: String,
        /// Register the gallery first (an existing account counts as registered).
        #[arg(long)]
        register: bool,
        #[command(flatten)]
        load: LoadArgs,
        /// Cases to run (match, nonmatch, noface, register).
        #[arg(long, value_delimiter = ',', default_values_t = ["match".to_owned(), "nonmatch".to_owned(), "noface".to_owned(), "register".to_owned()])]
        cases: Vec<String>,
        /// The server's pid, to report its CPU per request.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// The same HTTP load against our release service and the Python reference, in one
    /// run, on the same PostgreSQL; prints both and the ratios.
    SideBySide {
        #[command(flatten)]
        load: LoadArgs,
        /// uvicorn worker counts for the reference (each a separate run).
        #[arg(long, value_delimiter = ',')]
        ref_workers: Option<Vec<usize>>,
        /// Skip the Python reference (the default with --smoke).
        #[arg(long)]
        no_reference: bool,
    },
    /// 1:N search at scale: synthetic identities by binary COPY, HNSW build, sizes,
    /// recall@1, latency per ef_search, end-to-end login latency.
    Vectors {
        /// Gallery sizes (the smallest is the login baseline).
        #[arg(long, value_delimiter = ',')]
        sizes: Option<Vec<usize>>,
        /// hnsw.ef_search values.
        #[arg(long, value_delimiter = ',')]
        ef: Option<Vec<u32>>,
        /// Probe queries per size.
        #[arg(long)]
        probes: Option<usize>,
        /// End-to-end logins per size.
        #[arg(long)]
        logins: Option<usize>,
        /// Generator seed.
        #[arg(long, default_value_t = 1234)]
        seed: u64,
        /// maintenance_work_mem for the index build.
        #[arg(long, default_value = "2GB")]
        maintenance_work_mem: String,
        /// Keep the bench schemas.
        #[arg(long)]
        keep: bool,
        /// HNSW m (with --ef-construction; default: the migration's index, m 16 / 64).
        #[arg(long, requires = "ef_construction")]
        m: Option<u32>,
        /// HNSW ef_construction (with --m).
        #[arg(long, requires = "m")]
        ef_construction: Option<u32>,
        /// Between-person spectrum exponent instead of the fitted one (sensitivity check).
        #[arg(long)]
        decay: Option<f64>,
        /// Fit the synthetic identities to the photos of DIR/genuine (`<person>_<n>.<ext>`,
        /// e.g. ../shared/faces-lfw-dev) instead of the platform's face set; the real
        /// people of the login measurement still come from the platform's set.
        #[arg(long, value_name = "DIR")]
        calibrate: Option<PathBuf>,
    },
    /// The operator on the local control plane (`scripts/kube.sh start`): N tenants at
    /// once on one PostgreSQL; time until all are Ready, API requests and reconciles per
    /// tenant, operator memory.
    OperatorScale {
        /// Tenants created at once (default 200; smoke 3).
        #[arg(long)]
        tenants: Option<usize>,
        /// The faceid-operator binary (default: target/release, else target/debug).
        #[arg(long)]
        operator: Option<PathBuf>,
        /// Quiet seconds after all are Ready, in which requests are counted (default 60;
        /// smoke 5).
        #[arg(long)]
        settle_seconds: Option<u64>,
    },
    /// Resident memory after start and under load; time from start to /ready 200.
    Footprint {
        /// Starts timed.
        #[arg(long)]
        starts: Option<usize>,
        #[command(flatten)]
        load: LoadArgs,
    },
}

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// Concurrency levels (default 1,4,16).
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
    /// Requests per run, at most (default 400).
    #[arg(long)]
    requests: Option<usize>,
    /// Seconds per run, at most (default 20).
    #[arg(long)]
    max_seconds: Option<f64>,
    /// People enrolled first (1..=12, default 12).
    #[arg(long)]
    gallery: Option<usize>,
}

impl LoadArgs {
    fn resolve(&self, smoke: bool) -> (Vec<usize>, Bounds, usize) {
        let concurrency = self
            .concurrency
            .clone()
            .unwrap_or_else(|| if smoke { vec![1, 2] } else { vec![1, 4, 16] });
        let bounds = Bounds {
            requests: self.requests.unwrap_or(if smoke { 4 } else { 400 }),
            max_seconds: self.max_seconds.unwrap_or(if smoke { 30.0 } else { 20.0 }),
        };
        let gallery = self.gallery.unwrap_or(if smoke { 2 } else { 12 });
        (concurrency, bounds, gallery)
    }
}

async fn run(cli: Cli) -> anyhow::Result<String> {
    let smoke = cli.smoke;
    let faceid = cli.faceid.clone();
    match cli.command {
        Cmd::Pipeline {
            runs,
            image,
            faceid_args,
        } => bench::pipeline::run(
            faceid.as_deref(),
            runs.unwrap_or(if smoke { 1 } else { 50 }),
            image,
            &faceid_args,
        ),
        Cmd::Http {
            url,
            register,
            load,
            cases,
            server_pid,
        } => {
            let (concurrency, bounds, gallery) = load.resolve(smoke);
            let faces = bench::Platform::from_env()
                .map(|p| p.faces)
                .unwrap_or_else(|_| faceid_e2e::faces_dir());
            bench::ensure_loopback(&url)?;
            let all = bench::http::cases(&faces, gallery)?;
            let selected: Vec<_> = all
                .into_iter()
                .filter(|c| cases.iter().any(|n| n == c.name))
                .collect();
            let started = chrono::Utc::now();
            let load_before = bench::load_average();
            let mut register_line = String::new();
            if register {
                let ms = bench::http::register_gallery(&url, &faces, gallery).await?;
                register_line = format!(
                    "Gallery registrations: {} new, p50 {} ms.\n\n",
                    ms.len(),
                    bench::f(bench::percentile(&ms, 50.0), 1)
                );
            }
            let results =
                bench::http::run_all(&url, &selected, &concurrency, bounds, server_pid, true)
                    .await?;
            Ok(format!(
                "## HTTP load against {url}\n\nRun {} UTC on {}; load average before {load_before}, after {}.\n\n{}\n\n{register_line}{}",
                started.format("%Y-%m-%d %H:%M"),
                bench::machine_line(),
                bench::load_average(),
                bench::http::method(&selected, gallery, bounds),
                bench::http::table(&results)
            ))
        }
        Cmd::SideBySide {
            load,
            ref_workers,
            no_reference,
        } => {
            let (concurrency, bounds, gallery) = load.resolve(smoke);
            let reference_workers = if no_reference {
                Vec::new()
            } else {
                ref_workers.unwrap_or_else(|| if smoke { Vec::new() } else { vec![1, 2] })
            };
            bench::side_by_side::run(&bench::side_by_side::Options {
                faceid,
                concurrency,
                bounds,
                gallery,
                reference_workers,
            })
            .await
        }
        Cmd::Vectors {
            sizes,
            ef,
            probes,
            logins,
            seed,
            maintenance_work_mem,
            keep,
            m,
            ef_construction,
            decay,
            calibrate,
        } => {
            bench::vectors::run(&bench::vectors::Options {
                faceid,
                sizes: sizes.unwrap_or_else(|| {
                    if smoke {
                        vec![300]
                    } else {
                        vec![1000, 100_000, 1_000_000]
                    }
                }),
                ef: ef.unwrap_or_else(|| {
                    if smoke {
                        vec![40]
                    } else {
                        vec![40, 100, 200, 400]
                    }
                }),
                probes: probes.unwrap_or(if smoke { 20 } else { 1000 }),
                sql_exact_probes: if smoke { 3 } else { 20 },
                logins: logins.unwrap_or(if smoke { 3 } else { 60 }),
                calibration_photos: smoke.then_some(10),
                calibration_dir: calibrate,
                real_gallery: if smoke { 2 } else { 12 },
                seed,
                maintenance_work_mem,
                keep,
                hnsw: m.zip(ef_construction),
                decay,
            })
            .await
            // printed part by part as it ran
            .map(|()| String::new())
        }
        Cmd::OperatorScale {
            tenants,
            operator,
            settle_seconds,
        } => {
            bench::operator_scale::run(&bench::operator_scale::Options {
                tenants: tenants.unwrap_or(if smoke { 3 } else { 200 }),
                operator,
                settle: std::time::Duration::from_secs(settle_seconds.unwrap_or(if smoke {
                    5
                } else {
                    60
                })),
                timeout: std::time::Duration::from_secs(900),
            })
            .await
        }
        Cmd::Footprint { starts, load } => {
            let (concurrency, bounds, gallery) = load.resolve(smoke);
            bench::footprint::run(&bench::footprint::Options {
                faceid,
                starts: starts.unwrap_or(if smoke { 1 } else { 5 }),
                concurrency: concurrency.iter().copied().max().unwrap_or(16),
                bounds,
                gallery,
            })
            .await
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(report) => {
            if !report.is_empty() {
                println!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
