//! The face engine's command line: `embed`, `liveness`, `compare`, `eval`, `bench`.
//! Each prints JSON lines (one per image) or, for `eval` and `bench`, a Markdown report.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use super::{AnalyzeOptions, EngineArgs, FaceEngine, FaceError, Purpose};

/// The exit codes of the per-image commands, shown by their `--help`.
const EXIT_CODES: &str = "Exit status: 0 when at least one image was processed (each failed \
image is a JSON line with an `error`), 1 when the command could not run (e.g. the face \
engine did not load), 2 on a usage error, 3 when every image failed.";

/// The exit status of a per-image command whose every image failed.
pub const EVERY_IMAGE_FAILED: u8 = 3;

/// Face engine commands (subcommands of the service binary).
#[derive(clap::Subcommand, Debug, Clone)]
pub enum FaceCommand {
    /// Embed faces: one JSON line per image with every face's box, score, landmarks,
    /// quality, 128-d embedding, and the per-stage milliseconds.
    #[command(after_help = EXIT_CODES)]
    Embed {
        /// Image files (JPEG, PNG, WebP).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Passive liveness: one JSON line per image with the score, the decision at
    /// LIVENESS_THRESHOLD and every signal (largest face).
    #[command(after_help = EXIT_CODES)]
    Liveness {
        /// Image files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Compare the largest faces of two images: Euclidean distance and the decision at
    /// FACE_RECOGNITION_TOLERANCE.
    Compare {
        /// First image.
        a: PathBuf,
        /// Second image.
        b: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Evaluate on a folder laid out like testdata/faces (genuine/, noface/, multiface/,
    /// bad/, spoof/attack, spoof/live): distance distributions, acceptance rates, EER,
    /// liveness APCER/BPCER. Prints Markdown.
    Eval {
        /// The folder.
        #[arg(default_value = "testdata/faces")]
        dir: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// 1:N identification against gallery size: for random galleries of N people (each
    /// person's first photo enrolled) the share of genuine probes identified as the right
    /// person and of strangers (the same probes with their own enrolment removed) logged
    /// in as somebody, under the service's tolerance and ambiguity-margin rule. Prints
    /// Markdown.
    IdentifyEval {
        /// A folder with `genuine/<identity>_<n>.<ext>` photos.
        #[arg(default_value = "testdata/faces")]
        dir: PathBuf,
        /// Gallery sizes (people enrolled).
        #[arg(long, value_delimiter = ',', default_value = "10,25,50,100,250")]
        sizes: Vec<usize>,
        /// Tolerances to measure.
        #[arg(long, value_delimiter = ',', default_value = "0.6,0.55,0.5,0.45")]
        tolerances: Vec<f32>,
        /// Ambiguity margin (MATCH_AMBIGUITY_MARGIN).
        #[arg(long, default_value_t = 0.05)]
        margin: f32,
        /// Random galleries per size.
        #[arg(long, default_value_t = 20)]
        draws: usize,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Per-stage latency (min/median/p95) for a 640x480 and a 1280x720 photo, one thread
    /// and two, plus model FLOPs and achieved GFLOP/s. Prints Markdown.
    Bench {
        /// Photo to letterbox into the two sizes.
        #[arg(long, default_value = "testdata/faces/genuine/barack_obama_1.jpg")]
        image: PathBuf,
        /// Timed runs per configuration (after 3 warm-up runs).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100000))]
        runs: u32,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

/// Runs a face command, printing its output on stdout; the exit status when it ran to
/// the end: success, or [`EVERY_IMAGE_FAILED`] when a per-image command (`embed`,
/// `liveness`) printed only error lines.
pub fn run(cmd: FaceCommand) -> anyhow::Result<std::process::ExitCode> {
    let mut images_ok = true;
    match cmd {
        FaceCommand::Embed { images, engine } => {
            let engine = load(&engine)?;
            let mut lines = Vec::new();
            for path in images {
                let line = match std::fs::read(&path) {
                    Ok(bytes) => match engine.embed_all_blocking(&bytes) {
                        Ok(all) => json!({
                            "image": path,
                            "face_count": all.faces.len(),
                            "faces": all.faces,
                            "timings": all.timings,
                            "model_version": engine.model_version(),
                        }),
                        Err(e) => error_line(&path, &e),
                    },
                    Err(e) => {
                        json!({"image": path, "error": {"code": "io", "message": e.to_string()}})
                    }
                };
                println!("{line}");
                lines.push(line);
            }
            images_ok = some_succeeded(&lines);
        }
        FaceCommand::Liveness { images, engine } => {
            let engine = load(&engine)?;
            let mut lines = Vec::new();
            for path in images {
                let line = match std::fs::read(&path) {
                    Ok(bytes) => match engine.liveness_blocking(&bytes) {
                        Ok((report, raw)) => json!({
                            "image": path,
                            "score": short(report.score),
                            "is_live": report.is_live,
                            "threshold": short(engine.liveness_threshold()),
                            "signals": report.signals,
                            "raw": raw,
                        }),
                        Err(e) => error_line(&path, &e),
                    },
                    Err(e) => {
                        json!({"image": path, "error": {"code": "io", "message": e.to_string()}})
                    }
                };
                println!("{line}");
                lines.push(line);
            }
            images_ok = some_succeeded(&lines);
        }
        FaceCommand::Compare { a, b, engine } => {
            let engine = load(&engine)?;
            let opts = AnalyzeOptions {
                purpose: Purpose::Identify,
                liveness: false,
            };
            let embed = |p: &PathBuf| -> anyhow::Result<super::Embedding> {
                let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                let analysis = engine
                    .analyze_blocking(&bytes, opts)
                    .map_err(|e| anyhow::anyhow!("{}: {} ({})", p.display(), e, e.code()))?;
                Ok(analysis.face.embedding)
            };
            let (ea, eb) = (embed(&a)?, embed(&b)?);
            let distance = ea.distance(&eb);
            println!(
                "{}",
                json!({
                    "a": a,
                    "b": b,
                    "distance": short(distance),
                    "tolerance": short(engine.tolerance()),
                    "same_person": distance <= engine.tolerance(),
                })
            );
        }
        FaceCommand::Eval { dir, engine } => {
            let args = engine.clone();
            let engine = load(&engine)?;
            let report = super::eval::evaluate(&engine, &dir)?;
            print!("{}", super::eval::markdown(&report, &dir, &args));
        }
        FaceCommand::IdentifyEval {
            dir,
            sizes,
            tolerances,
            margin,
            draws,
            engine,
        } => {
            let engine = load(&engine)?;
            let people = super::identification::embed_people(&engine, &dir)?;
            print!(
                "{}",
                super::identification::report(&people, &sizes, &tolerances, margin, draws)
            );
        }
        FaceCommand::Bench {
            image,
            runs,
            engine,
        } => {
            let text = super::bench::run(&engine, &image, runs as usize)?;
            print!("{text}");
        }
    }
    Ok(if images_ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(EVERY_IMAGE_FAILED)
    })
}

/// Whether any of the printed lines is not an error line.
fn some_succeeded(lines: &[serde_json::Value]) -> bool {
    lines.iter().any(|l| l.get("error").is_none())
}

fn load(args: &EngineArgs) -> anyhow::Result<FaceEngine> {
    FaceEngine::load(args.config()).context("loading the face engine")
}

/// An `f32` as the `f64` with the same shortest decimal form (0.6, not 0.6000000238).
fn short(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

fn error_line(path: &std::path::Path, e: &FaceError) -> serde_json::Value {
    json!({"image": path, "error": {"code": e.code(), "message": e.to_string()}})
}
