//! Evaluation on a folder laid out like `../shared/faces`:
//!
//! * `genuine/<identity>_<n>.<ext>`: every pair of images of one identity is a genuine
//!   pair, every pair across identities an impostor pair (largest face, `Identify`).
//!   Reports the Euclidean distance distributions, the acceptance rates at the tolerance
//!   and the equal-error rate; also the liveness decision on each photo (BPCER).
//! * `noface/`, `multiface/`, `bad/`: the outcome (error code) per file.
//! * `spoof/attack/`, `spoof/live/`: liveness per image; APCER (attacks accepted as live)
//!   and BPCER (live captures refused).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::liveness::{self, Fusion, LivenessReport, RawFeatures};
use super::{AnalyzeOptions, Embedding, EngineArgs, FaceEngine, Purpose};

/// What happened to one image.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// File name.
    pub file: String,
    /// `ok` or the error code.
    pub code: String,
    /// The embedding when analysed.
    pub embedding: Option<Embedding>,
    /// The liveness report when analysed.
    pub liveness: Option<LivenessReport>,
    /// The largest face's liveness whatever its quality (when a face was found).
    pub face_liveness: Option<LivenessReport>,
    /// Raw liveness features when analysed.
    pub raw: Option<RawFeatures>,
    /// Faces found.
    pub face_count: usize,
    /// Quality measurements.
    pub quality: Option<super::QualityReport>,
    /// Milliseconds for the whole analysis.
    pub total_ms: f64,
}

/// Summary statistics of a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Sample size.
    pub n: usize,
    /// Minimum.
    pub min: f32,
    /// 5th percentile.
    pub p5: f32,
    /// Median.
    pub p50: f32,
    /// Mean.
    pub mean: f32,
    /// 95th percentile.
    pub p95: f32,
    /// Maximum.
    pub max: f32,
}

/// Percentile `q` in `[0, 1]` of sorted data, linear interpolation.
pub fn percentile(sorted: &[f32], q: f32) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f32;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f32)
}

/// Statistics of `values`.
pub fn stats(values: &[f32]) -> Stats {
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    if v.is_empty() {
        return Stats::default();
    }
    Stats {
        n: v.len(),
        min: v[0],
        p5: percentile(&v, 0.05),
        p50: percentile(&v, 0.5),
        mean: v.iter().sum::<f32>() / v.len() as f32,
        p95: percentile(&v, 0.95),
        max: v[v.len() - 1],
    }
}

/// Equal-error rate and the threshold where it occurs: the threshold `t` minimising
/// |FAR(t) - FRR(t)|, FAR = impostors <= t, FRR = genuine > t.
pub fn equal_error_rate(genuine: &[f32], impostor: &[f32]) -> (f32, f32) {
    if genuine.is_empty() || impostor.is_empty() {
        return (f32::NAN, f32::NAN);
    }
    let mut thresholds: Vec<f32> = genuine.iter().chain(impostor).copied().collect();
    thresholds.sort_by(f32::total_cmp);
    let mut best = (f32::INFINITY, 0.0f32, 0.0f32);
    for &t in &thresholds {
        let frr = rate(genuine, |d| d > t);
        let far = rate(impostor, |d| d <= t);
        let gap = (far - frr).abs();
        if gap < best.0 {
            best = (gap, (far + frr) / 2.0, t);
        }
    }
    (best.1, best.2)
}

/// Share of `values` for which `pred` holds.
pub fn rate(values: &[f32], pred: impl Fn(f32) -> bool) -> f32 {
    if values.is_empty() {
        return f32::NAN;
    }
    values.iter().filter(|&&v| pred(v)).count() as f32 / values.len() as f32
}

/// Everything the evaluation measured.
#[derive(Debug, Clone, Default)]
pub struct EvalReport {
    /// `genuine/` images with their identity.
    pub genuine: Vec<(String, Outcome)>,
    /// Distances of same-identity pairs.
    pub genuine_distances: Vec<f32>,
    /// Distances of different-identity pairs.
    pub impostor_distances: Vec<f32>,
    /// Closest impostor pairs (distance, a, b), ascending.
    pub closest_impostors: Vec<(f32, String, String)>,
    /// Farthest genuine pairs (distance, a, b), descending.
    pub farthest_genuine: Vec<(f32, String, String)>,
    /// `noface/` outcomes (Identify).
    pub noface: Vec<Outcome>,
    /// `multiface/` outcomes for Enroll.
    pub multiface_enroll: Vec<Outcome>,
    /// `multiface/` outcomes for Identify.
    pub multiface_identify: Vec<Outcome>,
    /// `bad/` outcomes.
    pub bad: Vec<Outcome>,
    /// `spoof/attack/` liveness outcomes.
    pub attack: Vec<Outcome>,
    /// `spoof/live/` liveness outcomes.
    pub live: Vec<Outcome>,
    /// Tolerance used.
    pub tolerance: f32,
    /// Liveness threshold used.
    pub liveness_threshold: f32,
}

/// The files of `dir`, sorted by name; none when it does not exist.
pub fn list_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Identity of `genuine/<identity>_<n>.<ext>`.
pub fn identity_of(file: &str) -> String {
    let stem = file.split('.').next().unwrap_or(file);
    match stem.rsplit_once('_') {
        Some((id, n)) if n.chars().all(|c| c.is_ascii_digit()) => id.to_string(),
        _ => stem.to_string(),
    }
}

/// Analyses one file (all stages, liveness on).
pub fn analyse(engine: &FaceEngine, path: &Path, purpose: Purpose) -> Outcome {
    let file = file_name(path);
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return Outcome {
                file,
                code: format!("io: {e}"),
                embedding: None,
                liveness: None,
                face_liveness: None,
                raw: None,
                face_count: 0,
                quality: None,
                total_ms: 0.0,
            };
        }
    };
    let opts = AnalyzeOptions {
        purpose,
        liveness: true,
    };
    let start = std::time::Instant::now();
    let result = engine.analyze_blocking(&bytes, opts);
    let total_ms = start.elapsed().as_secs_f64() * 1000.0;
    let face = engine.liveness_blocking(&bytes).ok();
    let (face_liveness, raw) = (face.map(|f| f.0), face.map(|f| f.1));
    match result {
        Ok(a) => Outcome {
            file,
            code: "ok".into(),
            embedding: Some(a.face.embedding),
            liveness: a.liveness,
            face_liveness,
            raw,
            face_count: a.face_count,
            quality: Some(a.face.quality),
            total_ms,
        },
        Err(e) => Outcome {
            file,
            code: e.code().to_string(),
            embedding: None,
            liveness: None,
            face_liveness,
            raw,
            face_count: 0,
            quality: None,
            total_ms,
        },
    }
}

/// Liveness only (spoof folders): the largest face, whatever its quality.
fn liveness_only(engine: &FaceEngine, path: &Path) -> Outcome {
    let file = file_name(path);
    let start = std::time::Instant::now();
    let result = std::fs::read(path)
        .map_err(|e| format!("io: {e}"))
        .and_then(|b| {
            engine
                .liveness_blocking(&b)
                .map_err(|e| e.code().to_string())
        });
    let total_ms = start.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok((report, raw)) => Outcome {
            file,
            code: "ok".into(),
            embedding: None,
            liveness: Some(report),
            face_liveness: Some(report),
            raw: Some(raw),
            face_count: 1,
            quality: None,
            total_ms,
        },
        Err(code) => Outcome {
            file,
            code,
            embedding: None,
            liveness: None,
            face_liveness: None,
            raw: None,
            face_count: 0,
            quality: None,
            total_ms,
        },
    }
}

/// Runs the evaluation.
pub fn evaluate(engine: &FaceEngine, dir: &Path) -> anyhow::Result<EvalReport> {
    let genuine_files = list_files(&dir.join("genuine"))?;
    if genuine_files.is_empty() {
        anyhow::bail!("{} has no genuine/ images", dir.display());
    }
    let mut report = EvalReport {
        tolerance: engine.tolerance(),
        liveness_threshold: engine.liveness_threshold(),
        ..EvalReport::default()
    };
    for p in &genuine_files {
        let o = analyse(engine, p, Purpose::Identify);
        report.genuine.push((identity_of(&o.file), o));
    }
    let embedded: Vec<(&String, &String, &Embedding)> = report
        .genuine
        .iter()
        .filter_map(|(id, o)| o.embedding.as_ref().map(|e| (id, &o.file, e)))
        .collect();
    let mut imp = Vec::new();
    let mut same = Vec::new();
    for i in 0..embedded.len() {
        for j in i + 1..embedded.len() {
            let (ia, fa, ea) = embedded[i];
            let (ib, fb, eb) = embedded[j];
            let d = ea.distance(eb);
            if ia == ib {
                report.genuine_distances.push(d);
                same.push((d, fa.clone(), fb.clone()));
            } else {
                report.impostor_distances.push(d);
                imp.push((d, fa.clone(), fb.clone()));
            }
        }
    }
    imp.sort_by(|a, b| a.0.total_cmp(&b.0));
    same.sort_by(|a, b| b.0.total_cmp(&a.0));
    report.closest_impostors = imp.into_iter().take(5).collect();
    report.farthest_genuine = same.into_iter().take(5).collect();

    for p in list_files(&dir.join("noface"))? {
        report.noface.push(analyse(engine, &p, Purpose::Identify));
    }
    for p in list_files(&dir.join("multiface"))? {
        report
            .multiface_enroll
            .push(analyse(engine, &p, Purpose::Enroll));
        report
            .multiface_identify
            .push(analyse(engine, &p, Purpose::Identify));
    }
    for p in list_files(&dir.join("bad"))? {
        report.bad.push(analyse(engine, &p, Purpose::Enroll));
    }
    for p in list_files(&dir.join("spoof").join("attack"))? {
        report.attack.push(liveness_only(engine, &p));
    }
    for p in list_files(&dir.join("spoof").join("live"))? {
        report.live.push(liveness_only(engine, &p));
    }
    Ok(report)
}

fn live_rate(outcomes: &[&Outcome]) -> (usize, usize) {
    let n = outcomes.len();
    let live = outcomes
        .iter()
        .filter(|o| o.liveness.is_some_and(|l| l.is_live))
        .count();
    (live, n)
}

fn pct(num: usize, den: usize) -> String {
    if den == 0 {
        "-".into()
    } else {
        format!("{:.1}% ({num}/{den})", 100.0 * num as f64 / den as f64)
    }
}

fn stats_row(name: &str, s: &Stats) -> String {
    format!(
        "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
        s.n, s.min, s.p5, s.p50, s.mean, s.p95, s.max
    )
}

fn outcome_table(out: &mut String, title: &str, rows: &[Outcome]) {
    let _ = writeln!(
        out,
        "\n**{title}**\n\n| file | outcome | faces |\n|---|---|---|"
    );
    for o in rows {
        let _ = writeln!(out, "| {} | {} | {} |", o.file, o.code, o.face_count);
    }
}

fn signal_row(o: &Outcome) -> String {
    match (o.liveness, o.raw) {
        (Some(l), Some(r)) => format!(
            "| {} | {:.3} | {} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.2} / {:.3} / {:.1} / {:.2} / {:.2} / {:.0} / {:.0} |",
            o.file,
            l.score,
            if l.is_live { "live" } else { "spoof" },
            liveness::signal_score(&l.signals),
            l.signals.minifasnet_v2,
            l.signals.minifasnet_v1se,
            l.signals.context,
            l.signals.texture,
            l.signals.frequency,
            l.signals.color,
            l.signals.brightness,
            l.signals.model.unwrap_or(f32::NAN),
            r.lbp_entropy,
            r.hf_energy,
            r.hf_peak,
            r.skin_share,
            r.saturation,
            r.luma_mean,
            r.luma_std
        ),
        _ => format!("| {} | - | {} | | | | | | | | | | |", o.file, o.code),
    }
}

/// The report as Markdown.
pub fn markdown(r: &EvalReport, dir: &Path, args: &EngineArgs) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Folder `{}`; detector {}{}, recognition {}, tolerance {}, liveness threshold {}.\n",
        dir.display(),
        args.face_detection_model.name(),
        if args.face_detection_upscale {
            " (small photos scaled up)"
        } else {
            ""
        },
        args.face_recognition_precision.resolve().name(),
        r.tolerance,
        r.liveness_threshold
    );

    // --- recognition
    let analysed = r.genuine.iter().filter(|(_, o)| o.code == "ok").count();
    let identities: BTreeMap<&String, usize> =
        r.genuine.iter().fold(BTreeMap::new(), |mut m, (id, _)| {
            *m.entry(id).or_default() += 1;
            m
        });
    let _ = writeln!(
        out,
        "### Recognition (genuine/)\n\n{} images of {} identities; {} analysed (largest face, quality checks passed).",
        r.genuine.len(),
        identities.len(),
        analysed
    );
    let failed: Vec<String> = r
        .genuine
        .iter()
        .filter(|(_, o)| o.code != "ok")
        .map(|(_, o)| format!("{} ({})", o.file, o.code))
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "Not analysed: {}.", failed.join(", "));
    }
    let g = stats(&r.genuine_distances);
    let i = stats(&r.impostor_distances);
    let _ = writeln!(
        out,
        "\n| pairs (Euclidean distance) | n | min | p5 | p50 | mean | p95 | max |\n|---|---|---|---|---|---|---|---|"
    );
    out.push_str(&stats_row("same person (genuine)", &g));
    out.push_str(&stats_row("different people (impostor)", &i));
    let tol = r.tolerance;
    let gar = rate(&r.genuine_distances, |d| d <= tol);
    let far = rate(&r.impostor_distances, |d| d <= tol);
    let (eer, eer_t) = equal_error_rate(&r.genuine_distances, &r.impostor_distances);
    let _ = writeln!(
        out,
        "\nAt tolerance {tol}: genuine pairs accepted {:.2}% ({}/{}), impostor pairs accepted {:.3}% ({}/{}). \
         Equal-error rate {:.2}% at distance {:.3}.",
        100.0 * gar,
        r.genuine_distances.iter().filter(|&&d| d <= tol).count(),
        r.genuine_distances.len(),
        100.0 * far,
        r.impostor_distances.iter().filter(|&&d| d <= tol).count(),
        r.impostor_distances.len(),
        100.0 * eer,
        eer_t
    );
    let _ = writeln!(
        out,
        "\nTolerance sweep. The 1:N columns estimate the chance that an unenrolled face \
         matches at least one of N enrolled people, 1 - (1 - FAR)^N, treating comparisons as \
         independent (a rough guide: the margin rule on the runner-up and a stricter \
         tolerance are what keep large galleries safe).\n\n\
         | tolerance | genuine accepted | impostor pairs accepted (FAR) | 1:N false match, N=100 | N=10,000 |\n|---|---|---|---|---|"
    );
    for t in [0.40f32, 0.45, 0.50, 0.55, 0.60] {
        let far = f64::from(rate(&r.impostor_distances, |d| d <= t));
        let n_far = |n: i32| 1.0 - (1.0 - far).powi(n);
        let _ = writeln!(
            out,
            "| {t:.2} | {:.1}% | {:.3}% | {:.1}% | {:.1}% |",
            100.0 * rate(&r.genuine_distances, |d| d <= t),
            100.0 * far,
            100.0 * n_far(100),
            100.0 * n_far(10_000)
        );
    }
    let _ = writeln!(out, "\nClosest impostor pairs: {}.", {
        r.closest_impostors
            .iter()
            .map(|(d, a, b)| format!("{a} / {b} {d:.3}"))
            .collect::<Vec<_>>()
            .join("; ")
    });
    let _ = writeln!(out, "Farthest genuine pairs: {}.", {
        r.farthest_genuine
            .iter()
            .map(|(d, a, b)| format!("{a} / {b} {d:.3}"))
            .collect::<Vec<_>>()
            .join("; ")
    });
    let qs: Vec<_> = r.genuine.iter().filter_map(|(_, o)| o.quality).collect();
    if !qs.is_empty() {
        let col =
            |f: fn(&super::QualityReport) -> f32| stats(&qs.iter().map(f).collect::<Vec<_>>());
        let _ = writeln!(
            out,
            "\nQuality measurements on the analysed genuine photos:\n\n| measure | n | min | p5 | p50 | mean | p95 | max |\n|---|---|---|---|---|---|---|---|"
        );
        out.push_str(&stats_row("face size px", &col(|q| q.face_size_px)));
        out.push_str(&stats_row("sharpness", &col(|q| q.sharpness)));
        out.push_str(&stats_row("brightness", &col(|q| q.brightness)));
        out.push_str(&stats_row("clipped", &col(|q| q.clipped)));
        out.push_str(&stats_row("yaw", &col(|q| q.yaw)));
        out.push_str(&stats_row("pitch", &col(|q| q.pitch)));
        out.push_str(&stats_row("roll deg", &col(|q| q.roll_deg)));
    }
    let times: Vec<f32> = r.genuine.iter().map(|(_, o)| o.total_ms as f32).collect();
    let t = stats(&times);
    let _ = writeln!(
        out,
        "\nAnalysis time per genuine photo (all stages with liveness, this build): median {:.1} ms, p95 {:.1} ms.",
        t.p50, t.p95
    );

    // --- other folders
    let _ = writeln!(out, "\n### Other inputs");
    outcome_table(&mut out, "noface/ (Identify)", &r.noface);
    let _ = writeln!(
        out,
        "\n**multiface/** (the same file for each purpose)\n\n| file | Enroll | Identify |\n|---|---|---|"
    );
    for (e, i) in r.multiface_enroll.iter().zip(&r.multiface_identify) {
        let _ = writeln!(out, "| {} | {} | {} |", e.file, e.code, i.code);
    }
    outcome_table(&mut out, "bad/ (Enroll)", &r.bad);

    liveness_section(&mut out, r);
    out
}

/// Attack species from the file name (`hyperfas_replay` is a replay).
pub fn species(file: &str) -> &'static str {
    if file.contains("idphoto") {
        "idphoto"
    } else if file.contains("replay") {
        "replay"
    } else if file.contains("print") {
        "print"
    } else {
        "other"
    }
}

/// `errors/n` where an error is `score >= t` for attacks (APCER) or `score < t` for
/// bona fide images (BPCER); `-` for an empty set.
fn errors(scores: &[f32], t: f32, attack: bool) -> String {
    if scores.is_empty() {
        return "-".into();
    }
    let e = scores.iter().filter(|&&s| (s >= t) == attack).count();
    format!("{e}/{}", scores.len())
}

/// The liveness sets of one folder, as signals: attacks per species, live captures,
/// genuine photos with and without [`liveness::MIN_CONTEXT`].
struct LivenessSets {
    groups: Vec<(&'static str, bool, Vec<liveness::LivenessSignals>)>,
}

impl LivenessSets {
    fn new(r: &EvalReport) -> LivenessSets {
        let signals = |v: &mut dyn Iterator<Item = &Outcome>| -> Vec<liveness::LivenessSignals> {
            v.filter_map(|o| o.face_liveness.map(|l| l.signals))
                .collect()
        };
        let mut groups = Vec::new();
        for sp in ["print", "replay", "idphoto", "other"] {
            let set = signals(&mut r.attack.iter().filter(|o| species(&o.file) == sp));
            if !set.is_empty() || sp != "other" {
                groups.push((sp, true, set));
            }
        }
        groups.push(("spoof/live", false, signals(&mut r.live.iter())));
        let genuine = signals(&mut r.genuine.iter().map(|(_, o)| o));
        let tight = |s: &liveness::LivenessSignals| s.context < liveness::MIN_CONTEXT;
        groups.push(("genuine", false, genuine.clone()));
        groups.push((
            "genuine, no context",
            false,
            genuine.iter().copied().filter(tight).collect(),
        ));
        groups.push((
            "genuine, context",
            false,
            genuine.into_iter().filter(|s| !tight(s)).collect(),
        ));
        LivenessSets { groups }
    }

    fn header(&self, first: &str) -> String {
        let names: Vec<String> = self
            .groups
            .iter()
            .map(|(n, attack, _)| format!("{} {n}", if *attack { "APCER" } else { "BPCER" }))
            .collect();
        format!(
            "| {first} | {} |\n|---|{}",
            names.join(" | "),
            "---|".repeat(names.len())
        )
    }

    fn row(&self, first: &str, rule: Fusion, t: f32) -> String {
        let cells: Vec<String> = self
            .groups
            .iter()
            .map(|(_, attack, set)| {
                let scores: Vec<f32> = set.iter().map(|s| rule.apply(s)).collect();
                errors(&scores, t, *attack)
            })
            .collect();
        format!("| {first} | {} |", cells.join(" | "))
    }
}

fn liveness_section(out: &mut String, r: &EvalReport) {
    let t = r.liveness_threshold;
    let sets = LivenessSets::new(r);
    let _ = writeln!(
        out,
        "\n### Liveness (threshold {t})\n\n\
         Errors / images. APCER: attacks scoring >= the threshold (an attack whose face is \
         not found is left out: it is refused anyway); BPCER: bona fide images scoring \
         below it. Genuine photos: the largest face of every photo with a face, whatever \
         its quality; \"no context\": context < {} (the face fills the frame). \
         The shipped rule is `{}`.\n\n{}",
        liveness::MIN_CONTEXT,
        liveness::FUSION.name(),
        sets.header("fusion rule")
    );
    for rule in Fusion::ALL {
        let _ = writeln!(out, "{}", sets.row(rule.name(), rule, t));
    }
    let _ = writeln!(
        out,
        "\nThreshold sweep of the shipped rule:\n\n{}",
        sets.header("threshold")
    );
    for st in [0.3f32, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9] {
        let _ = writeln!(
            out,
            "{}",
            sets.row(&format!("{st:.1}"), liveness::FUSION, st)
        );
    }
    let genuine: Vec<&Outcome> = r
        .genuine
        .iter()
        .map(|(_, o)| o)
        .filter(|o| o.liveness.is_some())
        .collect();
    let (g_live, g_n) = live_rate(&genuine);
    let _ = writeln!(
        out,
        "\nGenuine photos analysed (quality passed): {g_n}, refused by liveness {}.",
        pct(g_n - g_live, g_n)
    );
    let contexts: Vec<f32> = r
        .genuine
        .iter()
        .filter_map(|(_, o)| o.face_liveness.map(|l| l.signals.context))
        .collect();
    let _ = writeln!(
        out,
        "\n| genuine context | n | min | p5 | p50 | mean | p95 | max |\n|---|---|---|---|---|---|---|---|"
    );
    out.push_str(&stats_row("face boxes per frame", &stats(&contexts)));
    let _ = writeln!(
        out,
        "\n| image | score | decision | signals | MiniFASNet v2 | v1se | context | texture | frequency | color | brightness | model | raw: lbp entropy / hf energy / hf peak / skin / saturation / luma mean / luma std |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for o in r.attack.iter().chain(&r.live) {
        let _ = writeln!(out, "{}", signal_row(o));
    }
    mean_signals(out, r);
    let refused: Vec<String> = r
        .genuine
        .iter()
        .filter_map(|(_, o)| o.face_liveness.map(|l| (o, l)))
        .filter(|(_, l)| !l.is_live)
        .map(|(o, l)| format!("{} ({:.2})", o.file, l.score))
        .collect();
    if !refused.is_empty() {
        let _ = writeln!(
            out,
            "\nGenuine photos refused by liveness ({}): {}.",
            refused.len(),
            refused.join(", ")
        );
    }
}

/// Per-signal means by set, to show what each signal separates.
fn mean_signals(out: &mut String, r: &EvalReport) {
    let _ = writeln!(
        out,
        "\nMean signal per set:\n\n| set | n | texture | frequency | color | brightness | model | signals | MiniFASNet | fused |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    let face = |o: &Outcome| o.face_liveness;
    let sets: [(&str, Vec<LivenessReport>); 3] = [
        ("attack", r.attack.iter().filter_map(face).collect()),
        ("spoof/live", r.live.iter().filter_map(face).collect()),
        (
            "genuine",
            r.genuine.iter().filter_map(|(_, o)| face(o)).collect(),
        ),
    ];
    for (name, ls) in sets {
        if ls.is_empty() {
            continue;
        }
        let n = ls.len() as f32;
        let m = |f: &dyn Fn(&LivenessReport) -> f32| ls.iter().map(f).sum::<f32>() / n;
        let _ = writeln!(
            out,
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ls.len(),
            m(&|l| l.signals.texture),
            m(&|l| l.signals.frequency),
            m(&|l| l.signals.color),
            m(&|l| l.signals.brightness),
            m(&|l| l.signals.model.unwrap_or(f32::NAN)),
            m(&|l| liveness::signal_score(&l.signals)),
            m(&|l| liveness::minifasnet_score(&l.signals)),
            m(&|l| l.score)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn species_from_file_name() {
        assert_eq!(species("sfas_print_idphoto_1.jpg"), "idphoto");
        assert_eq!(species("hyperfas_replay_1.png"), "replay");
        assert_eq!(species("sfas_print_2.jpg"), "print");
        assert_eq!(errors(&[0.1, 0.8, 0.9], 0.7, true), "2/3");
        assert_eq!(errors(&[0.1, 0.8, 0.9], 0.7, false), "1/3");
    }

    #[test]
    fn identity_from_file_name() {
        assert_eq!(identity_of("george_w_bush_3.jpg"), "george_w_bush");
        assert_eq!(identity_of("alex_lacamoire_1.png"), "alex_lacamoire");
        assert_eq!(identity_of("plain.jpg"), "plain");
    }

    #[test]
    fn eer_and_percentiles() {
        let genuine = [0.3, 0.4, 0.5, 0.7];
        let impostor = [0.65, 0.8, 0.9, 1.0];
        let (eer, t) = equal_error_rate(&genuine, &impostor);
        assert!((eer - 0.25).abs() < 1e-6, "{eer} at {t}");
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), 2.0);
        assert_eq!(percentile(&[1.0, 3.0], 0.25), 1.5);
        let s = stats(&[3.0, 1.0, 2.0]);
        assert_eq!((s.min, s.p50, s.max, s.n), (1.0, 2.0, 3.0, 3));
        assert_eq!(rate(&genuine, |d| d <= 0.6), 0.75);
    }
}
