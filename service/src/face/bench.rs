//! The benchmark behind `faceid bench`: per-stage latency of the whole pipeline
//! (decode, detect, align, quality, embed, liveness) for a photo letterboxed into
//! 250x250 (a small upload), 640x480 and 1280x720 JPEGs, in three set-ups, plus each network alone with its FLOPs
//! and the achieved GFLOP/s.
//!
//! * `1 thread`: pool 1, intra-op 1, sequential: the latency on one core.
//! * `intra-op 2`: pool 1, intra-op 2, sequential: one request using two cores.
//! * `pool 2`: pool 2, intra-op 1, two callers at once: throughput on two cores.

use std::fmt::Write as _;
use std::io::Cursor;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use image::RgbImage;

use super::eval::percentile;
use super::{AnalyzeOptions, EngineArgs, FaceEngine, Purpose, StageTimings};

/// FLOPs (2 x multiply-accumulates of every Conv/MatMul) per inference, from
/// `models/README.md` (`python -m convert.flops`).
pub mod flops {
    /// Tiny face detector, per input pixel (0.398 GFLOP at 416x416).
    pub const DETECTOR_PER_PIXEL: f64 = 0.398e9 / (416.0 * 416.0);
    /// Landmark net at 112x112.
    pub const LANDMARKS: f64 = 0.103e9;
    /// Recognition net at 150x150.
    pub const RECOGNITION: f64 = 0.542e9;
    /// Anti-spoofing net at 128x128.
    pub const ANTI_SPOOF: f64 = 0.200e9;
    /// Each MiniFASNet (V2, V1SE) at 80x80, as stored: every PReLU is two convolutions
    /// (0.082 GFLOP in upstream's form; `models/convert/minifasnet.py`).
    pub const MINIFASNET: f64 = 0.136e9;
}

/// `img` scaled to fit `w x h` and centred on a mid-grey canvas, as a JPEG (quality 90).
pub fn letterbox_jpeg(img: &RgbImage, w: u32, h: u32) -> anyhow::Result<Vec<u8>> {
    let scale = (w as f32 / img.width() as f32).min(h as f32 / img.height() as f32);
    let nw = ((img.width() as f32 * scale).round() as u32).clamp(1, w);
    let nh = ((img.height() as f32 * scale).round() as u32).clamp(1, h);
    let resized = image::imageops::resize(img, nw, nh, image::imageops::FilterType::Triangle);
    let mut canvas = RgbImage::from_pixel(w, h, image::Rgb([128, 128, 128]));
    image::imageops::replace(
        &mut canvas,
        &resized,
        i64::from((w - nw) / 2),
        i64::from((h - nh) / 2),
    );
    let mut out = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut out), 90);
    enc.encode_image(&canvas)?;
    Ok(out)
}

type Stage = (&'static str, fn(&StageTimings) -> f64);
const STAGES: [Stage; 7] = [
    ("decode", |t| t.decode_ms),
    ("detect", |t| t.detect_ms),
    ("align (landmarks + chip)", |t| t.align_ms),
    ("quality", |t| t.quality_ms),
    ("embed", |t| t.embed_ms),
    ("liveness", |t| t.liveness_ms),
    ("total", |t| t.total_ms),
];

fn summary(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    (
        f64::from(percentile(&v, 0.0)),
        f64::from(percentile(&v, 0.5)),
        f64::from(percentile(&v, 0.95)),
    )
}

fn timed_runs(engine: &FaceEngine, jpeg: &[u8], runs: usize) -> anyhow::Result<Vec<StageTimings>> {
    let opts = AnalyzeOptions {
        purpose: Purpose::Identify,
        liveness: true,
    };
    for _ in 0..3 {
        engine
            .analyze_blocking(jpeg, opts)
            .map_err(|e| anyhow::anyhow!("the benchmark photo fails: {e} ({})", e.code()))?;
    }
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let a = engine
            .analyze_blocking(jpeg, opts)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        out.push(a.timings);
    }
    Ok(out)
}

fn stage_table(out: &mut String, title: &str, timings: &[StageTimings]) {
    let _ = writeln!(
        out,
        "\n**{title}** ({} runs)\n\n| stage | min ms | median ms | p95 ms |\n|---|---|---|---|",
        timings.len()
    );
    for (name, f) in STAGES {
        let mut v: Vec<f64> = timings.iter().map(f).collect();
        let (min, med, p95) = summary(&mut v);
        let _ = writeln!(out, "| {name} | {min:.2} | {med:.2} | {p95:.2} |");
    }
}

fn median_of(timings: &[StageTimings], f: fn(&StageTimings) -> f64) -> f64 {
    let mut v: Vec<f64> = timings.iter().map(f).collect();
    summary(&mut v).1
}

/// Runs the benchmark; returns Markdown.
pub fn run(args: &EngineArgs, image: &Path, runs: usize) -> anyhow::Result<String> {
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let src = image::load_from_memory(&bytes)
        .with_context(|| format!("decoding {}", image.display()))?
        .to_rgb8();
    // A small upload (250x250, the size of the LFW photos: detected at its own size),
    // then two camera frame sizes (scaled down to the detector's input).
    let sizes = [(250u32, 250u32), (640, 480), (1280, 720)];
    let jpegs: Vec<Vec<u8>> = sizes
        .iter()
        .map(|&(w, h)| letterbox_jpeg(&src, w, h))
        .collect::<anyhow::Result<_>>()?;

    let mut out = String::new();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = writeln!(
        out,
        "Photo `{}` letterboxed into each size (JPEG q90); liveness on; detector {}; \
         recognition {}; {runs} timed runs after 3 warm-ups; {cpus} CPUs visible; release build.",
        image.display(),
        args.face_detection_model.name(),
        args.face_recognition_precision.resolve().name()
    );
    if args.face_detection_upscale {
        let _ = writeln!(out, "Small photos scaled up to the detector input.");
    }

    let mut base = args.config();
    base.detection_model = args.face_detection_model;
    let mut single = base.clone();
    single.pool_size = 1;
    single.intra_op_threads = 1;
    let engine1 = FaceEngine::load(single.clone())?;
    let mut intra2 = single.clone();
    intra2.intra_op_threads = 2;
    let engine2 = FaceEngine::load(intra2)?;
    let mut pool2 = single;
    pool2.pool_size = 2;
    let engine_pool = FaceEngine::load(pool2)?;

    let mut medians = Vec::new();
    for ((w, h), jpeg) in sizes.iter().zip(&jpegs) {
        let _ = writeln!(out, "\n### {w}x{h} ({} bytes)", jpeg.len());
        let t1 = timed_runs(&engine1, jpeg, runs)?;
        stage_table(&mut out, "1 thread (pool 1, intra-op 1)", &t1);
        let t2 = timed_runs(&engine2, jpeg, runs)?;
        stage_table(&mut out, "intra-op 2 (pool 1)", &t2);

        // pool 2: two callers at once
        let start = Instant::now();
        let results: Vec<anyhow::Result<Vec<StageTimings>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| s.spawn(|| timed_runs(&engine_pool, jpeg, runs)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("benchmark thread panicked")))
                })
                .collect()
        });
        let wall = start.elapsed().as_secs_f64();
        let mut tp = Vec::new();
        for r in results {
            tp.extend(r?);
        }
        let images = tp.len() + 6; // + warm-ups
        stage_table(&mut out, "pool 2, two concurrent callers (intra-op 1)", &tp);
        let _ = writeln!(
            out,
            "\nThroughput with pool 2: {:.1} images/s ({images} analyses in {wall:.2} s, warm-ups included).",
            images as f64 / wall
        );
        medians.push(((w, h), t1));
    }

    // the networks alone
    let _ = writeln!(
        out,
        "\n### Networks alone (1 thread, batch 1, {runs} runs, pixel noise 0..255)\n\n\
         | network | input | GFLOP | min ms | median ms | GFLOP/s at median |\n|---|---|---|---|---|---|"
    );
    for t in engine1.time_networks(runs, sizes[0])? {
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.2} | {:.2} | {:.1} |",
            t.name,
            t.input,
            t.gflop,
            t.min_ms,
            t.median_ms,
            t.gflop / (t.median_ms / 1000.0)
        );
    }
    let _ = writeln!(
        out,
        "\nWhole pipeline on one thread, median: {}.",
        medians
            .iter()
            .map(|((w, h), t)| format!("{w}x{h} {:.1} ms", median_of(t, |x| x.total_ms)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(out)
}
