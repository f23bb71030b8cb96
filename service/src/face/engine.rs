//! The engine: the model sessions, the slot pool and the pipeline of one analysis.

use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use super::align::{self, CHIP_PADDING, CHIP_SIZE, Chip};
use super::detect::{self, Detection};
use super::embed::Embedding;
use super::landmarks;
use super::liveness::{self, LivenessReport, LivenessSignals, RawFeatures};
use super::minifasnet;
use super::models::{self, RecognitionPrecision, VerifiedModel};
use super::pool::Pool;
use super::quality::{self, MIN_FACE_PX};
use super::{
    Analysis, AnalyzeOptions, COMPARABLE_FACE_AREA, DOMINANT_FACE_AREA, DOMINANT_FACE_CENTRE,
    EngineConfig, EngineError, FaceError, FaceReport, Purpose, StageTimings, decode,
};

/// Every face of an image (see [`FaceEngine::embed_all_blocking`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AllFaces {
    /// The faces, largest first.
    pub faces: Vec<FaceEntry>,
    /// Milliseconds per stage, summed over the faces.
    pub timings: StageTimings,
}

/// One network's timing (see [`FaceEngine::time_networks`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkTiming {
    /// Network (and the image size its input is for).
    pub name: String,
    /// Input width x height.
    pub input: String,
    /// GFLOP per inference.
    pub gflop: f64,
    /// Fastest run.
    pub min_ms: f64,
    /// Median run.
    pub median_ms: f64,
}

/// One face of [`AllFaces`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaceEntry {
    /// The face.
    #[serde(flatten)]
    pub face: FaceReport,
    /// The quality check it fails, if any.
    pub issue: Option<super::QualityIssue>,
}

/// One set of sessions: what a single analysis needs exclusively.
struct Sessions {
    detector: Session,
    landmarks: Session,
    recognition: Session,
    anti_spoof: Session,
    minifasnet_v2: Session,
    minifasnet_v1se: Session,
}

struct Inner {
    config: EngineConfig,
    pool: Pool<Sessions>,
    admission: Arc<tokio::sync::Semaphore>,
    model_version: String,
    model_hashes: Vec<(&'static str, String)>,
    /// The recognition precision that runs (the setting, resolved for this CPU).
    precision: RecognitionPrecision,
}

/// The face engine. Cloning is cheap (an `Arc`); every clone shares the sessions.
#[derive(Clone)]
pub struct FaceEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FaceEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceEngine")
            .field("model_version", &self.inner.model_version)
            .field("pool_size", &self.inner.pool.size())
            .field("config", &self.inner.config)
            .finish()
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn infer_err(stage: &str) -> impl Fn(ort::Error) -> FaceError + '_ {
    move |e| FaceError::Inference(format!("{stage}: {e}"))
}

/// Runs `session` on one `[n, 3, h, w]` input and returns its first output.
fn run(
    session: &mut Session,
    stage: &str,
    shape: [usize; 4],
    data: &[f32],
) -> Result<(Vec<i64>, Vec<f32>), FaceError> {
    run_output(session, stage, shape, data, None)
}

/// [`run`], returning the output called `name` (the first one when `None`).
fn run_output(
    session: &mut Session,
    stage: &str,
    shape: [usize; 4],
    data: &[f32],
    name: Option<&str>,
) -> Result<(Vec<i64>, Vec<f32>), FaceError> {
    let input = TensorRef::from_array_view((shape, data)).map_err(infer_err(stage))?;
    let outputs = session.run(ort::inputs![input]).map_err(infer_err(stage))?;
    let output = match name {
        Some(name) => outputs.get(name),
        None if outputs.len() > 0 => Some(&outputs[0]),
        None => None,
    }
    .ok_or_else(|| FaceError::Inference(format!("{stage}: no output {name:?}")))?;
    let (out_shape, values) = output
        .try_extract_tensor::<f32>()
        .map_err(infer_err(stage))?;
    Ok((out_shape.to_vec(), values.to_vec()))
}

impl FaceEngine {
    /// Verifies every model against the checksums compiled into the binary, loads ONNX
    /// Runtime and builds `pool_size` sets of sessions.
    pub fn load(config: EngineConfig) -> Result<FaceEngine, EngineError> {
        if config.pool_size == 0 || config.intra_op_threads == 0 {
            return Err(EngineError::Config(
                "FACE_POOL_SIZE and FACE_INTRA_OP_THREADS must be at least 1".into(),
            ));
        }
        if !(config.tolerance > 0.0 && config.tolerance <= 2.0) {
            return Err(EngineError::Config(format!(
                "FACE_RECOGNITION_TOLERANCE {} is outside (0, 2]",
                config.tolerance
            )));
        }
        if !(0.0..=1.0).contains(&config.liveness_threshold) {
            return Err(EngineError::Config(format!(
                "LIVENESS_THRESHOLD {} is outside [0, 1]",
                config.liveness_threshold
            )));
        }
        let precision = config.recognition_precision.resolve();
        if precision != config.recognition_precision {
            tracing::info!(
                setting = config.recognition_precision.name(),
                precision = precision.name(),
                vnni = models::cpu_has_vnni(),
                "recognition precision chosen for this CPU"
            );
        }
        let verified: Vec<VerifiedModel> = models::model_files(precision)
            .iter()
            .map(|f| models::read_verified(&config.models_dir, f))
            .collect::<Result<_, _>>()?;
        let env = models::environment(config.ort_dylib_path.as_deref())?;
        let mut slots = Vec::with_capacity(config.pool_size);
        for _ in 0..config.pool_size {
            let mut built = verified
                .iter()
                .map(|m| models::build_session(&env, m, config.intra_op_threads))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter();
            let mut next = || {
                built
                    .next()
                    .ok_or_else(|| EngineError::Runtime("missing session".into()))
            };
            slots.push(Sessions {
                detector: next()?,
                landmarks: next()?,
                recognition: next()?,
                anti_spoof: next()?,
                minifasnet_v2: next()?,
                minifasnet_v1se: next()?,
            });
        }
        let recognition_sha = verified
            .iter()
            .find(|m| m.file == precision.file())
            .map(|m| m.sha256[..8].to_string())
            .unwrap_or_default();
        let model_version = match precision {
            RecognitionPrecision::Float32 => {
                format!("{}+{recognition_sha}", models::RECOGNITION_SOURCE)
            }
            precision => format!(
                "{}-{}+{recognition_sha}",
                models::RECOGNITION_SOURCE,
                precision.name()
            ),
        };
        let model_hashes = verified
            .iter()
            .map(|m| (m.file, m.sha256.clone()))
            .collect();
        Ok(FaceEngine {
            inner: Arc::new(Inner {
                admission: Arc::new(tokio::sync::Semaphore::new(config.pool_size)),
                precision,
                pool: Pool::new(slots),
                config,
                model_version,
                model_hashes,
            }),
        })
    }

    /// Analyses an image off the async executor (see the module docs' thread model):
    /// waits for a pool permit without blocking, then runs on the blocking thread pool.
    pub async fn analyze(
        &self,
        image: bytes::Bytes,
        opts: AnalyzeOptions,
    ) -> Result<Analysis, FaceError> {
        let queued = Instant::now();
        let permit = self
            .inner
            .admission
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| FaceError::Inference("the face engine is shut down".into()))?;
        let engine = self.clone();
        let queue_ms = ms(queued);
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            engine.analyze_blocking(&image, opts)
        })
        .await
        .map_err(|e| FaceError::Inference(format!("analysis task failed: {e}")))?;
        result.map(|mut a| {
            a.timings.queue_ms += queue_ms;
            a
        })
    }

    /// Analyses an image on the calling thread (waits for a free slot when all are busy).
    pub fn analyze_blocking(
        &self,
        image: &[u8],
        opts: AnalyzeOptions,
    ) -> Result<Analysis, FaceError> {
        let queued = Instant::now();
        let mut slot = self.inner.pool.checkout();
        let queue_ms = ms(queued);
        let mut analysis = self.pipeline(&mut slot, image, opts)?;
        analysis.timings.queue_ms = queue_ms;
        Ok(analysis)
    }

    /// Every detected face, each aligned, measured and embedded, with its quality issue
    /// (if any) reported instead of refused (the `embed` command). Faces are sorted by
    /// descending box area.
    pub fn embed_all_blocking(&self, image: &[u8]) -> Result<AllFaces, FaceError> {
        let mut slot = self.inner.pool.checkout();
        let start = Instant::now();
        let mut t = StageTimings::default();
        let img = decode::decode(image, &self.inner.config.limits)?.rgb;
        t.decode_ms = ms(start);
        let t0 = Instant::now();
        let faces = detect_faces(&mut slot, &img, &self.inner.config)?;
        t.detect_ms = ms(t0);
        let mut out = Vec::with_capacity(faces.len());
        for face in faces {
            let t0 = Instant::now();
            let (points, details, chip) = align_face(&mut slot, &img, &face)?;
            t.align_ms += ms(t0);
            let t0 = Instant::now();
            let quality = quality::measure(&details, &chip, &points);
            t.quality_ms += ms(t0);
            let t0 = Instant::now();
            let embedding = embed_chip(&mut slot, &chip)?;
            t.embed_ms += ms(t0);
            out.push(FaceEntry {
                issue: quality.issue(),
                face: FaceReport {
                    bbox: face.bbox,
                    score: face.score,
                    landmarks: points,
                    quality,
                    embedding,
                },
            });
        }
        t.total_ms = ms(start);
        Ok(AllFaces {
            faces: out,
            timings: t,
        })
    }

    /// Liveness only (the `liveness` command): the largest face's report and raw features.
    pub fn liveness_blocking(
        &self,
        image: &[u8],
    ) -> Result<(LivenessReport, RawFeatures), FaceError> {
        let mut slot = self.inner.pool.checkout();
        let img = decode::decode(image, &self.inner.config.limits)?.rgb;
        let faces = detect_faces(&mut slot, &img, &self.inner.config)?;
        let face = faces.first().ok_or(FaceError::NoFace)?;
        self.liveness(&mut slot, &img, face, SignalSet::All)
    }

    /// The version stored with every embedding: the recognition weights' source and the
    /// first 8 hex digits of the model file's SHA-256.
    pub fn model_version(&self) -> &str {
        &self.inner.model_version
    }

    /// Euclidean match tolerance.
    pub fn tolerance(&self) -> f32 {
        self.inner.config.tolerance
    }

    /// Liveness decision threshold.
    pub fn liveness_threshold(&self) -> f32 {
        self.inner.config.liveness_threshold
    }

    /// The recognition precision that runs (`Auto` resolved for this CPU).
    pub fn recognition_precision(&self) -> RecognitionPrecision {
        self.inner.precision
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// SHA-256 of each loaded model file.
    pub fn model_hashes(&self) -> &[(&'static str, String)] {
        &self.inner.model_hashes
    }

    /// Runs every network once on a zero input of its smallest shape and checks that it
    /// answers finite numbers: what `/ready` reports as "models ok" (a process whose
    /// ONNX Runtime or sessions broke after start-up is then taken out of the Service).
    /// Does not wait for a busy pool: analyses running on every slot show it works, and
    /// `Ok(false)` says the check was skipped for that reason.
    pub async fn self_check(&self) -> Result<bool, FaceError> {
        let Ok(permit) = self.inner.admission.clone().try_acquire_owned() else {
            return Ok(false);
        };
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            engine.self_check_blocking().map(|()| true)
        })
        .await
        .map_err(|e| FaceError::Inference(format!("self-check task failed: {e}")))?
    }

    fn self_check_blocking(&self) -> Result<(), FaceError> {
        let mut slot = self.inner.pool.checkout();
        let s: &mut Sessions = &mut slot;
        let (_, [dw, dh]) = detect::input_size(64, 64, 64);
        let (ls, a, m) = (
            landmarks::INPUT_SIZE,
            liveness::MODEL_INPUT,
            minifasnet::INPUT,
        );
        let cases: [(&str, &mut Session, [usize; 4]); 6] = [
            ("detector", &mut s.detector, [1, 3, dh, dw]),
            ("landmarks", &mut s.landmarks, [1, 3, ls, ls]),
            (
                "recognition",
                &mut s.recognition,
                [1, 3, CHIP_SIZE, CHIP_SIZE],
            ),
            ("anti-spoofing", &mut s.anti_spoof, [1, 3, a, a]),
            ("MiniFASNetV2", &mut s.minifasnet_v2, [1, 3, m, m]),
            ("MiniFASNetV1SE", &mut s.minifasnet_v1se, [1, 3, m, m]),
        ];
        for (name, session, shape) in cases {
            let data = vec![0.0f32; shape.iter().product()];
            let (_, values) = run(session, name, shape, &data)?;
            if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
                return Err(FaceError::Inference(format!(
                    "{name}: no finite output on the self-check input"
                )));
            }
        }
        Ok(())
    }

    /// Times each network alone on pixel noise (`runs` times after one warm-up); the
    /// detector at the input sizes for a photo of `photo` (width, height) and for a
    /// 640x480 and a 1280x720 frame. Used by `faceid bench`.
    pub fn time_networks(
        &self,
        runs: usize,
        photo: (u32, u32),
    ) -> Result<Vec<NetworkTiming>, FaceError> {
        use super::bench::flops;
        let mut slot = self.inner.pool.checkout();
        let s: &mut Sessions = &mut slot;
        let mut out = Vec::new();
        let model = self.inner.config.detection_model;
        let mut cases: Vec<(String, [usize; 4], f64)> = Vec::new();
        for (w, h) in [photo, (640, 480), (1280, 720)] {
            let (_, [iw, ih]) = detect::input_size(w, h, detect::input_long_side(w, h, model));
            cases.push((
                format!("detector (for {w}x{h})"),
                [1, 3, ih, iw],
                flops::DETECTOR_PER_PIXEL * (iw * ih) as f64,
            ));
        }
        let ls = landmarks::INPUT_SIZE;
        cases.push(("landmarks".into(), [1, 3, ls, ls], flops::LANDMARKS));
        cases.push((
            format!("recognition ({})", self.inner.precision.name()),
            [1, 3, CHIP_SIZE, CHIP_SIZE],
            flops::RECOGNITION,
        ));
        let a = liveness::MODEL_INPUT;
        cases.push(("anti-spoofing".into(), [1, 3, a, a], flops::ANTI_SPOOF));
        let m = minifasnet::INPUT;
        cases.push(("MiniFASNetV2".into(), [1, 3, m, m], flops::MINIFASNET));
        cases.push(("MiniFASNetV1SE".into(), [1, 3, m, m], flops::MINIFASNET));
        for (name, shape, fl) in cases {
            let data = pixel_noise(shape.iter().product());
            let session = match name.as_str() {
                "landmarks" => &mut s.landmarks,
                n if n.starts_with("recognition") => &mut s.recognition,
                "anti-spoofing" => &mut s.anti_spoof,
                "MiniFASNetV2" => &mut s.minifasnet_v2,
                "MiniFASNetV1SE" => &mut s.minifasnet_v1se,
                _ => &mut s.detector,
            };
            run(session, &name, shape, &data)?;
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs.max(1) {
                let t0 = Instant::now();
                run(session, &name, shape, &data)?;
                times.push(ms(t0));
            }
            times.sort_by(f64::total_cmp);
            let med = times[times.len() / 2];
            out.push(NetworkTiming {
                name,
                input: format!("{}x{}", shape[3], shape[2]),
                gflop: fl / 1e9,
                min_ms: times[0],
                median_ms: med,
            });
        }
        Ok(out)
    }

    fn pipeline(
        &self,
        s: &mut Sessions,
        bytes: &[u8],
        opts: AnalyzeOptions,
    ) -> Result<Analysis, FaceError> {
        let start = Instant::now();
        let mut t = StageTimings::default();

        let decoded = decode::decode(bytes, &self.inner.config.limits)?;
        let (img, reduced_by) = (decoded.rgb, decoded.reduced_by);
        t.decode_ms = ms(start);

        let t0 = Instant::now();
        let faces = detect_faces(s, &img, &self.inner.config)?;
        t.detect_ms = ms(t0);
        let face = select_face(&faces, opts.purpose, img.dimensions())?;

        let t0 = Instant::now();
        let (points, details, chip) = align_face(s, &img, &face)?;
        t.align_ms = ms(t0);

        let t0 = Instant::now();
        let quality = quality::measure(&details, &chip, &points);
        t.quality_ms = ms(t0);
        if let Some(issue) = quality.issue() {
            return Err(FaceError::PoorQuality(issue));
        }

        let t0 = Instant::now();
        let embedding = embed_chip(s, &chip)?;
        t.embed_ms = ms(t0);

        let liveness = if opts.liveness {
            let t0 = Instant::now();
            let (report, _) = self.liveness(s, &img, &face, SignalSet::Decision)?;
            t.liveness_ms = ms(t0);
            Some(report)
        } else {
            None
        };
        t.total_ms = ms(start);
        Ok(Analysis {
            face: FaceReport {
                bbox: face.bbox,
                score: face.score,
                landmarks: points,
                quality,
                embedding,
            },
            face_count: faces.len(),
            liveness,
            reduced_by,
            timings: t,
        })
    }

    /// The liveness report for `face`. `signals` says whether every signal is measured
    /// (`faceid eval` and `faceid liveness` compare rules) or only those the service's
    /// rule reads for this photo.
    fn liveness(
        &self,
        s: &mut Sessions,
        img: &RgbImage,
        face: &Detection,
        signals: SignalSet,
    ) -> Result<(LivenessReport, RawFeatures), FaceError> {
        let context = minifasnet::context(img.width(), img.height(), &face.bbox);
        let needed = signals == SignalSet::All || liveness::FUSION.needs_small_network(context);
        let model = if needed {
            Some(small_network_real(s, img, face)?)
        } else {
            None
        };
        let raw = liveness::raw_features(img, &face.bbox);
        let [texture, frequency, color, brightness] = liveness::hand_signals(&raw);
        let signals = LivenessSignals {
            texture,
            frequency,
            color,
            brightness,
            model,
            minifasnet_v2: minifasnet_real(
                &mut s.minifasnet_v2,
                "MiniFASNetV2",
                img,
                face,
                minifasnet::V2_SCALE,
            )?,
            minifasnet_v1se: minifasnet_real(
                &mut s.minifasnet_v1se,
                "MiniFASNetV1SE",
                img,
                face,
                minifasnet::V1SE_SCALE,
            )?,
            context,
        };
        let score = liveness::fuse(&signals);
        Ok((
            LivenessReport {
                score,
                is_live: score >= self.inner.config.liveness_threshold,
                signals,
            },
            raw,
        ))
    }
}

/// `n` pseudo-random pixel values in 0..255, the range every network takes: some
/// operators' cost depends on the data (MiniFASNet's PReLUs, before they were rewritten,
/// ran 1.8x faster on zeros than on any photo), so timings on zeros flatter them.
fn pixel_noise(n: usize) -> Vec<f32> {
    let mut state: u32 = 0x9E37_79B9;
    (0..n)
        .map(|_| {
            // xorshift32: deterministic, no dependency
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as f32
        })
        .collect()
}

/// Which liveness signals to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignalSet {
    /// Every signal, whether the shipped rule reads it or not.
    All,
    /// Only what [`liveness::FUSION`] reads for this photo.
    Decision,
}

/// The small anti-spoofing network's "real" probability for `face`.
fn small_network_real(
    s: &mut Sessions,
    img: &RgbImage,
    face: &Detection,
) -> Result<f32, FaceError> {
    let input = liveness::model_input(img, &face.bbox);
    let (_, out) = run(
        &mut s.anti_spoof,
        "anti-spoofing",
        [1, 3, liveness::MODEL_INPUT, liveness::MODEL_INPUT],
        &input,
    )?;
    out.first()
        .copied()
        .filter(|v| v.is_finite())
        .map(|v| v.clamp(0.0, 1.0))
        .ok_or_else(|| FaceError::Inference("anti-spoofing: no score".into()))
}

/// A MiniFASNet network's "real" probability for `face`, on its crop at `scale`.
fn minifasnet_real(
    session: &mut Session,
    stage: &str,
    img: &RgbImage,
    face: &Detection,
    scale: f32,
) -> Result<f32, FaceError> {
    let crop = minifasnet::crop_box(img.width(), img.height(), &face.bbox, scale);
    let input = minifasnet::network_input(img, crop);
    let n = minifasnet::INPUT;
    let (_, prob) = run_output(session, stage, [1, 3, n, n], &input, Some("prob"))?;
    prob.get(minifasnet::REAL_CLASS)
        .copied()
        .filter(|v| v.is_finite())
        .map(|v| v.clamp(0.0, 1.0))
        .ok_or_else(|| FaceError::Inference(format!("{stage}: no score")))
}

/// Detection with NMS; sorted by descending box area. When nothing is found, the image
/// is searched again inside a border (see [`detect::RETRY_BORDERS`]).
fn detect_faces(
    s: &mut Sessions,
    img: &RgbImage,
    config: &EngineConfig,
) -> Result<Vec<Detection>, FaceError> {
    let model = config.detection_model;
    let first = if config.detection_upscale {
        model.input_size()
    } else {
        detect::input_long_side(img.width(), img.height(), model)
    };
    let faces = detect_once(s, img, first)?;
    if !faces.is_empty() {
        return Ok(faces);
    }
    // The retries search at a fixed size (see `detect::RETRY_INPUT`): a face the first
    // pass missed is usually a tight crop, half of the bordered image. The photo is
    // scaled down to what the detector will see *before* it is bordered: padding the
    // full-resolution frame (four times its pixels at a 0.5 border) was most of what a
    // photo without a face cost, the cheapest load an attacker can send.
    let retry_side = model.input_size().min(detect::RETRY_INPUT);
    let mut faces = Vec::new();
    let (mut pad, mut scale) = (0.0, 1.0);
    for fraction in detect::RETRY_BORDERS {
        let (small, s_scale) = shrink_for_retry(img, fraction, retry_side);
        let (padded, px) = detect::pad_image(small.as_ref().unwrap_or(img), fraction);
        faces = detect_once(s, &padded, retry_side)?;
        (pad, scale) = (px, s_scale);
        if !faces.is_empty() {
            break;
        }
    }
    let (iw, ih) = (img.width() as f32, img.height() as f32);
    for f in &mut faces {
        let x0 = ((f.bbox.x - pad) / scale).clamp(0.0, iw);
        let y0 = ((f.bbox.y - pad) / scale).clamp(0.0, ih);
        let x1 = ((f.bbox.x + f.bbox.width - pad) / scale).clamp(0.0, iw);
        let y1 = ((f.bbox.y + f.bbox.height - pad) / scale).clamp(0.0, ih);
        f.bbox = super::BoundingBox {
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
        };
    }
    faces.retain(|f| f.bbox.width >= 1.0 && f.bbox.height >= 1.0);
    Ok(faces)
}

/// `img` scaled so that, bordered by `fraction` of its long side on each side, it is no
/// larger than the detector's `side`; `None` (and scale 1) when it already is.
fn shrink_for_retry(img: &RgbImage, fraction: f32, side: usize) -> (Option<RgbImage>, f32) {
    let long = img.width().max(img.height()) as f32;
    let target = side as f32 / (1.0 + 2.0 * fraction);
    if long <= target {
        return (None, 1.0);
    }
    let scale = target / long;
    let w = ((img.width() as f32 * scale).round() as u32).max(1);
    let h = ((img.height() as f32 * scale).round() as u32).max(1);
    (
        Some(image::imageops::thumbnail(img, w, h)),
        w as f32 / img.width() as f32,
    )
}

/// One detector pass with the input's long side at `long_side` pixels.
fn detect_once(
    s: &mut Sessions,
    img: &RgbImage,
    long_side: usize,
) -> Result<Vec<Detection>, FaceError> {
    let input = detect::prepare(img, long_side);
    let (shape, grid) = run(
        &mut s.detector,
        "detector",
        [1, 3, input.height, input.width],
        &input.tensor,
    )?;
    let (gh, gw) = match shape.as_slice() {
        [_, _, h, w] => (*h as usize, *w as usize),
        _ => {
            return Err(FaceError::Inference(
                "detector: unexpected output shape".into(),
            ));
        }
    };
    let dets = detect::decode_grid(
        &grid,
        gh,
        gw,
        &input,
        img.dimensions(),
        detect::SCORE_THRESHOLD,
    );
    let mut faces = detect::nms(dets, detect::IOU_THRESHOLD);
    faces.sort_by(|a, b| b.bbox.area().total_cmp(&a.bbox.area()));
    Ok(faces)
}

/// Applies the [`Purpose`] rule to faces sorted by descending area.
fn select_face(
    faces: &[Detection],
    purpose: Purpose,
    frame: (u32, u32),
) -> Result<Detection, FaceError> {
    let largest = *faces.first().ok_or(FaceError::NoFace)?;
    match purpose {
        Purpose::Enroll => {
            // a face counts as usable when its box is at least the minimum face size
            let usable = faces
                .iter()
                .filter(|f| f.bbox.width.min(f.bbox.height) >= MIN_FACE_PX)
                .count();
            if usable > 1 && !dominates(&largest, faces, frame) {
                return Err(FaceError::MultipleFaces { count: usable });
            }
        }
        Purpose::Identify => {
            let min_area = largest.bbox.area() * COMPARABLE_FACE_AREA;
            let comparable = faces.iter().filter(|f| f.bbox.area() >= min_area).count();
            if comparable > 1 && !dominates(&largest, faces, frame) {
                return Err(FaceError::MultipleFaces { count: comparable });
            }
        }
    }
    Ok(largest)
}

/// Whether `largest` (the first of `faces`, sorted by area) dominates the photo for
/// enrolment ([`DOMINANT_FACE_AREA`], [`DOMINANT_FACE_CENTRE`]).
fn dominates(largest: &Detection, faces: &[Detection], (width, height): (u32, u32)) -> bool {
    let (w, h) = (width as f32, height as f32);
    // distance of a box's centre from the frame's centre, per axis, as a fraction of it
    let offset = |f: &Detection| {
        let b = &f.bbox;
        (
            ((b.x + b.width / 2.0) - w / 2.0).abs() / w,
            ((b.y + b.height / 2.0) - h / 2.0).abs() / h,
        )
    };
    let (dx, dy) = offset(largest);
    let centred = dx <= DOMINANT_FACE_CENTRE && dy <= DOMINANT_FACE_CENTRE;
    let max_other = largest.bbox.area() * DOMINANT_FACE_AREA;
    let others_aside = faces[1..]
        .iter()
        .filter(|f| f.bbox.width.min(f.bbox.height) >= MIN_FACE_PX)
        .all(|f| {
            let (dx, dy) = offset(f);
            f.bbox.area() <= max_other && dx.max(dy) > DOMINANT_FACE_CENTRE
        });
    centred && others_aside
}

/// Landmarks, then the dlib chip.
fn align_face(
    s: &mut Sessions,
    img: &RgbImage,
    face: &Detection,
) -> Result<(Vec<[f32; 2]>, align::ChipDetails, Chip), FaceError> {
    let input = landmarks::prepare(img, &face.bbox).ok_or(FaceError::NoFace)?;
    let size = landmarks::INPUT_SIZE;
    let (_, out) = run(
        &mut s.landmarks,
        "landmarks",
        [1, 3, size, size],
        &input.tensor,
    )?;
    if out.len() < 2 * landmarks::COUNT || out.iter().any(|v| !v.is_finite()) {
        return Err(FaceError::Inference("landmarks: bad output".into()));
    }
    let points = landmarks::postprocess(&out, &input);
    let details = align::chip_details(&points, CHIP_SIZE, CHIP_PADDING).ok_or(FaceError::NoFace)?;
    let chip = align::extract_chip(img, &details);
    Ok((points, details, chip))
}

fn embed_chip(s: &mut Sessions, chip: &Chip) -> Result<Embedding, FaceError> {
    let input = chip.to_planar();
    let (_, out) = run(
        &mut s.recognition,
        "recognition",
        [1, 3, chip.size, chip.size],
        &input,
    )?;
    Embedding::from_slice(&out[..out.len().min(super::embed::DIM)])
        .ok_or_else(|| FaceError::Inference("recognition: bad output".into()))
}
