//! The face engine: photo in, decision data out. Knows nothing of HTTP or storage.
//!
//! # Pipeline
//! 1. [`decode`]: JPEG/PNG/WebP by magic bytes, limits checked on the header before
//!    allocation, EXIF orientation applied, everything reduced to 8-bit RGB.
//! 2. [`detect`]: face-api's tiny face detector (tiny-YOLOv2, 5 anchors) on an input whose
//!    long side is the configured size ([`DetectionModel`]), non-maximum suppression.
//! 3. [`landmarks`]: the 68-point landmark net on the detected box.
//! 4. [`align`]: dlib's `get_face_chip_details(shape, 150, 0.25)`: a least-squares
//!    similarity transform from 33 landmarks to dlib's mean face, sampled bilinearly
//!    (through a 2x pyramid when shrinking) into the 150x150 chip the recogniser was
//!    trained on.
//! 5. [`quality`]: size, sharpness, exposure and pose, each with a named reason.
//! 6. [`embed`]: the dlib ResNet (face-api port), a 128-d vector compared by Euclidean
//!    distance; the tolerance 0.6 keeps `face_recognition`'s meaning. By default its int8
//!    version runs where the CPU has VNNI ([`RecognitionPrecision`]).
//! 7. [`liveness`] (optional): texture, frequency, colour and brightness signals and the
//!    small anti-spoofing net, combined with the two MiniFASNet networks ([`minifasnet`])
//!    into one score in `[0, 1]`.
//!
//! # Thread model
//! * One ONNX Runtime environment per process; every model's SHA-256 is checked against
//!   `models/SHA256SUMS` as compiled into the binary, then each session is built once, at
//!   [`FaceEngine::load`].
//! * The engine owns `FACE_POOL_SIZE` *slots*; a slot is a private set of the six
//!   sessions (ONNX Runtime's `run` needs exclusive access to a session). A request checks
//!   a slot out for the whole pipeline and returns it, so up to `FACE_POOL_SIZE` images are
//!   analysed in parallel and no lock is held during inference.
//! * [`FaceEngine::analyze`] never runs on an async runtime thread: it waits (without
//!   blocking) for one of `FACE_POOL_SIZE` admission permits, then runs the pipeline on
//!   Tokio's blocking thread pool. When every slot is busy, callers queue on the permits
//!   in FIFO order; the HTTP layer's request timeout bounds that wait.
//! * Each session uses `FACE_INTRA_OP_THREADS` threads inside an operator (default 1, no
//!   inter-op threads). The CPU cost of the engine is at most
//!   `FACE_POOL_SIZE x FACE_INTRA_OP_THREADS` cores; the defaults (pool = CPUs, intra = 1)
//!   give the best throughput, `intra > 1` lowers the latency of a single request.
//! * Memory: each slot holds its own copy of the weights after graph optimisation (see
//!   `docs/FACE_ENGINE.md`).

pub mod align;
pub mod bench;
pub mod cli;
pub mod decode;
pub mod detect;
pub mod embed;
mod engine;
pub mod eval;
pub mod identification;
pub mod landmarks;
pub mod liveness;
pub mod minifasnet;
pub mod models;
mod pool;
pub mod quality;
mod resample;

use std::path::PathBuf;

pub use cli::{FaceCommand, run};
pub use decode::ImageLimits;
pub use detect::DetectionModel;
pub use embed::Embedding;
pub use engine::{AllFaces, FaceEngine, FaceEntry, NetworkTiming};
pub use liveness::{LivenessReport, LivenessSignals};
pub use models::RecognitionPrecision;
pub use quality::{QualityIssue, QualityReport};

/// Engine settings from the command line or the environment (`--help` shows these docs).
#[derive(clap::Args, Clone, Debug)]
pub struct EngineArgs {
    /// Directory holding the ONNX models; each is checked against the SHA-256 sums
    /// compiled into this binary.
    #[arg(
        long,
        env = "MODELS_DIR",
        value_name = "MODELS_DIR",
        default_value = "models"
    )]
    pub models_dir: PathBuf,

    /// ONNX Runtime shared library (libonnxruntime.so). Unset: the `ORT_DYLIB_PATH`
    /// environment variable, then the system library path.
    #[arg(long, env = "ORT_DYLIB_PATH", value_name = "ORT_DYLIB_PATH")]
    pub ort_dylib_path: Option<PathBuf>,

    /// Threads each inference may use inside one operator (1..=64).
    #[arg(long, env = "FACE_INTRA_OP_THREADS", value_name = "FACE_INTRA_OP_THREADS",
          default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub face_intra_op_threads: u16,

    /// Images analysed concurrently: one set of model sessions per slot (1..=256).
    /// Default: the number of CPUs.
    #[arg(long, env = "FACE_POOL_SIZE", value_name = "FACE_POOL_SIZE",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub face_pool_size: Option<u16>,

    /// Face detector: the tiny face detector with the image's long side scaled to 224, 320,
    /// 416, 512 or 608 pixels. Larger finds smaller faces and costs more (about
    /// proportional to the pixel count). `hog` (the original default) is accepted as
    /// `tiny-416` and `cnn` as `tiny-608`.
    #[arg(
        long,
        env = "FACE_DETECTION_MODEL",
        value_name = "FACE_DETECTION_MODEL",
        default_value = "tiny-416"
    )]
    pub face_detection_model: DetectionModel,

    /// Scale photos smaller than the detector input up to it before detection. Off (the
    /// default), a small photo is first searched at its own size (a 250x250 photo at
    /// 256 instead of 416: 0.15 instead of 0.40 GFLOP); on, small second faces in small
    /// photos are found more often (see docs/PERFORMANCE.md).
    #[arg(
        long,
        env = "FACE_DETECTION_UPSCALE",
        value_name = "FACE_DETECTION_UPSCALE",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub face_detection_upscale: bool,

    /// Recognition network precision: `int8` (2.9x faster embedding on CPUs with VNNI,
    /// embeddings 0.036 from the float32 ones at the median), `float32` (the original
    /// computation) or `auto` (int8 on x86-64 CPUs with AVX-512 VNNI or AVX-VNNI, float32
    /// elsewhere). Part of the stored model version (docs/FACE_ENGINE.md).
    #[arg(
        long,
        env = "FACE_RECOGNITION_PRECISION",
        value_name = "FACE_RECOGNITION_PRECISION",
        default_value = "auto"
    )]
    pub face_recognition_precision: RecognitionPrecision,

    /// Largest Euclidean distance between two embeddings of the same person (0 < t <= 2).
    /// Lower is stricter; 0.6 is `face_recognition`'s tolerance.
    #[arg(long, env = "FACE_RECOGNITION_TOLERANCE", value_name = "FACE_RECOGNITION_TOLERANCE",
          default_value_t = 0.6, value_parser = parse_tolerance)]
    pub face_recognition_tolerance: f32,

    /// Liveness score at or above which an image counts as a live capture (0..=1).
    #[arg(long, env = "LIVENESS_THRESHOLD", value_name = "LIVENESS_THRESHOLD",
          default_value_t = 0.7, value_parser = parse_unit_interval)]
    pub liveness_threshold: f32,

    /// Largest accepted image width in pixels, checked before decoding (32..=65535).
    #[arg(long, env = "MAX_IMAGE_WIDTH", value_name = "MAX_IMAGE_WIDTH",
          default_value_t = 4096, value_parser = clap::value_parser!(u32).range(32..=65535))]
    pub max_image_width: u32,

    /// Largest accepted image height in pixels, checked before decoding (32..=65535).
    #[arg(long, env = "MAX_IMAGE_HEIGHT", value_name = "MAX_IMAGE_HEIGHT",
          default_value_t = 4096, value_parser = clap::value_parser!(u32).range(32..=65535))]
    pub max_image_height: u32,

    /// Largest accepted width x height, checked before decoding (1024..=100000000).
    #[arg(long, env = "MAX_IMAGE_PIXELS", value_name = "MAX_IMAGE_PIXELS",
          default_value_t = 16_000_000,
          value_parser = clap::value_parser!(u64).range(1024..=100_000_000))]
    pub max_image_pixels: u64,
}

fn parse_tolerance(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && v > 0.0 && v <= 2.0 {
        Ok(v)
    } else {
        Err(format!("{v} is outside (0, 2]"))
    }
}

fn parse_unit_interval(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside [0, 1]"))
    }
}

impl EngineArgs {
    /// The plain configuration these arguments describe.
    pub fn config(&self) -> EngineConfig {
        EngineConfig {
            models_dir: self.models_dir.clone(),
            ort_dylib_path: self.ort_dylib_path.clone(),
            intra_op_threads: usize::from(self.face_intra_op_threads),
            pool_size: self
                .face_pool_size
                .map(usize::from)
                .unwrap_or_else(default_pool_size),
            detection_model: self.face_detection_model,
            detection_upscale: self.face_detection_upscale,
            recognition_precision: self.face_recognition_precision,
            tolerance: self.face_recognition_tolerance,
            liveness_threshold: self.liveness_threshold,
            limits: ImageLimits {
                max_width: self.max_image_width,
                max_height: self.max_image_height,
                max_pixels: self.max_image_pixels,
            },
        }
    }
}

fn default_pool_size() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Engine configuration as plain data (tests build it directly).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Directory with the ONNX files (`models/`).
    pub models_dir: PathBuf,
    /// ONNX Runtime library; `None`: `ORT_DYLIB_PATH`, then the system library path.
    pub ort_dylib_path: Option<PathBuf>,
    /// Intra-operator threads per session (>= 1).
    pub intra_op_threads: usize,
    /// Concurrent analyses (>= 1): one set of sessions each.
    pub pool_size: usize,
    /// Detector input size.
    pub detection_model: DetectionModel,
    /// Whether photos smaller than the detector input are scaled up to it.
    pub detection_upscale: bool,
    /// Which recognition model runs (`Auto`: decided by the CPU at load).
    pub recognition_precision: RecognitionPrecision,
    /// Euclidean match tolerance.
    pub tolerance: f32,
    /// Liveness decision threshold.
    pub liveness_threshold: f32,
    /// Input image bounds.
    pub limits: ImageLimits,
}

impl EngineConfig {
    /// Defaults (as documented on [`EngineArgs`]) with the models in `models_dir`.
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        Self {
            models_dir: models_dir.into(),
            ort_dylib_path: None,
            intra_op_threads: 1,
            pool_size: default_pool_size(),
            detection_model: DetectionModel::Tiny416,
            detection_upscale: false,
            recognition_precision: RecognitionPrecision::Auto,
            tolerance: 0.6,
            liveness_threshold: 0.7,
            limits: ImageLimits::default(),
        }
    }
}

/// What the caller wants the face for; decides how several faces are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Registration: one usable face (one whose size passes the quality check), or a
    /// largest face that dominates every other usable one ([`DOMINANT_FACE_AREA`], centred
    /// per [`DOMINANT_FACE_CENTRE`]); otherwise [`FaceError::MultipleFaces`].
    Enroll,
    /// Login: the largest face; [`FaceError::MultipleFaces`] when another face is
    /// comparable, i.e. its box area is at least [`COMPARABLE_FACE_AREA`] of the largest.
    Identify,
}

/// For [`Purpose::Identify`], a second face whose box area is at least this fraction of
/// the largest face's makes the image ambiguous.
pub const COMPARABLE_FACE_AREA: f32 = 0.5;

/// For [`Purpose::Enroll`], the largest face is used despite other usable faces when it
/// dominates: each other usable face has at most this fraction of its box area (at most
/// 0.8 as wide and high) ...
pub const DOMINANT_FACE_AREA: f32 = 0.64;

/// ... the largest face's centre lies within this fraction of the width and of the height
/// of the frame's centre, and every other usable face's centre lies farther out on at
/// least one axis. The subject of a photo is framed; someone beside or behind them is at
/// the edge (LFW's crops: the subject centred, a neighbour cut by the border). Two faces
/// side by side, or one large face at the edge, stay `multiple_faces`: picking one by
/// size alone would be a guess about whom to enrol.
pub const DOMINANT_FACE_CENTRE: f32 = 0.2;

/// Options of one analysis.
#[derive(Clone, Copy, Debug)]
pub struct AnalyzeOptions {
    /// Enrolment or identification.
    pub purpose: Purpose,
    /// Run the liveness analysis too.
    pub liveness: bool,
}

/// A box in image pixels (of the upright image).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BoundingBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub width: f32,
    /// Height.
    pub height: f32,
}

impl BoundingBox {
    /// Area in square pixels.
    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    /// Intersection over union with `other`.
    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.width).min(other.x + other.width);
        let y1 = (self.y + self.height).min(other.y + other.height);
        let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        let union = self.area() + other.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

/// The result of a successful analysis.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Analysis {
    /// The face used (see [`Purpose`]).
    pub face: FaceReport,
    /// Faces the detector found (after non-maximum suppression).
    pub face_count: usize,
    /// Present when [`AnalyzeOptions::liveness`] was set.
    pub liveness: Option<LivenessReport>,
    /// 1 when the photo was decoded at full size; 2, 4 or 8 when a JPEG above the pixel
    /// limit was decoded at that fraction of its size ([`decode::Decoded::reduced_by`]).
    pub reduced_by: u32,
    /// Milliseconds per stage.
    pub timings: StageTimings,
}

/// One analysed face.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaceReport {
    /// Detector box.
    pub bbox: BoundingBox,
    /// Detector confidence in `(0, 1)`.
    pub score: f32,
    /// The 68 landmarks (iBUG 300-W order) in image pixels.
    pub landmarks: Vec<[f32; 2]>,
    /// Quality measurements (all checks passed when an analysis is returned).
    pub quality: QualityReport,
    /// The 128-d embedding.
    pub embedding: Embedding,
}

/// Milliseconds spent per stage of one analysis.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StageTimings {
    /// Waiting for a free pool slot.
    pub queue_ms: f64,
    /// Decoding the image.
    pub decode_ms: f64,
    /// Face detection (resize, network, decoding boxes, NMS).
    pub detect_ms: f64,
    /// Landmarks and the aligned chip.
    pub align_ms: f64,
    /// Quality checks.
    pub quality_ms: f64,
    /// The recognition network.
    pub embed_ms: f64,
    /// Liveness signals and the anti-spoofing network (0 when not requested).
    pub liveness_ms: f64,
    /// Everything after the queue.
    pub total_ms: f64,
}

/// Why an image could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// No bytes at all.
    #[error("the image is empty")]
    Empty,
    /// Not JPEG, PNG or WebP (judged from the content, not the name).
    #[error("unsupported image format ({0}); send a JPEG, PNG or WebP image")]
    UnsupportedFormat(String),
    /// Width, height or pixel count above the configured limits.
    #[error("the image is {width}x{height} pixels, larger than allowed")]
    TooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// Too small to hold a usable face.
    #[error("the image is {width}x{height} pixels, too small to hold a face")]
    TooSmall {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// Truncated or malformed data.
    #[error("the image data is corrupt or truncated: {0}")]
    Corrupt(String),
}

impl ImageError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ImageError::Empty => "image_empty",
            ImageError::UnsupportedFormat(_) => "image_unsupported_format",
            ImageError::TooLarge { .. } => "image_too_large",
            ImageError::TooSmall { .. } => "image_too_small",
            ImageError::Corrupt(_) => "image_corrupt",
        }
    }
}

/// Why an analysis produced no usable face.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// The image itself was refused.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// No face was found.
    #[error("no face was found in the image")]
    NoFace,
    /// More than one face where one is required (see [`Purpose`]).
    #[error("{count} faces were found; the image must show exactly one person")]
    MultipleFaces {
        /// Faces counted by the rule of the [`Purpose`].
        count: usize,
    },
    /// A face was found but is unusable.
    #[error("{}", .0.message())]
    PoorQuality(QualityIssue),
    /// The model runtime failed (a server fault, not the client's).
    #[error("face model inference failed: {0}")]
    Inference(String),
}

impl FaceError {
    /// Stable machine-readable code: the image error's or quality issue's own code
    /// (`image_too_large`, `face_too_small`, ...), else `no_face`, `multiple_faces`,
    /// `inference_failed`.
    pub fn code(&self) -> &'static str {
        match self {
            FaceError::Image(e) => e.code(),
            FaceError::NoFace => "no_face",
            FaceError::MultipleFaces { .. } => "multiple_faces",
            FaceError::PoorQuality(q) => q.code(),
            FaceError::Inference(_) => "inference_failed",
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A model file is missing or unreadable.
    #[error("cannot read model file {path}: {source}")]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A model file differs from the one this binary was built for.
    #[error(
        "model file {path} fails its checksum: expected sha256 {expected}, found {actual}; \
         restore the file (git checkout models/ or models/build.sh)"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// From `models/SHA256SUMS` at build time.
        expected: String,
        /// Of the file on disk.
        actual: String,
    },
    /// ONNX Runtime could not be loaded or a session could not be built.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// An invalid setting.
    #[error("invalid face engine configuration: {0}")]
    Config(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        engine: EngineArgs,
    }

    #[test]
    fn defaults_and_validation() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        let c = cli.engine.config();
        assert_eq!(c.tolerance, 0.6);
        assert_eq!(c.liveness_threshold, 0.7);
        assert_eq!(c.detection_model, DetectionModel::Tiny416);
        assert_eq!(c.limits, ImageLimits::default());
        assert!(c.pool_size >= 1);

        let err = Cli::try_parse_from(["x", "--liveness-threshold", "1.5"]).unwrap_err();
        assert!(err.to_string().contains("LIVENESS_THRESHOLD"), "{err}");
        let err = Cli::try_parse_from(["x", "--face-recognition-tolerance=-1"]).unwrap_err();
        assert!(
            err.to_string().contains("FACE_RECOGNITION_TOLERANCE"),
            "{err}"
        );
        let err = Cli::try_parse_from(["x", "--face-pool-size", "0"]).unwrap_err();
        assert!(err.to_string().contains("FACE_POOL_SIZE"), "{err}");
        let err = Cli::try_parse_from(["x", "--face-detection-model", "ssd"]).unwrap_err();
        assert!(err.to_string().contains("FACE_DETECTION_MODEL"), "{err}");
        let cli = Cli::try_parse_from(["x", "--face-detection-model", "hog"]).unwrap();
        assert_eq!(cli.engine.face_detection_model, DetectionModel::Tiny416);
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(FaceError::NoFace.code(), "no_face");
        assert_eq!(
            FaceError::from(ImageError::TooLarge {
                width: 1,
                height: 2
            })
            .code(),
            "image_too_large"
        );
        assert_eq!(
            FaceError::PoorQuality(QualityIssue::FaceTooSmall).code(),
            "face_too_small"
        );
    }

    #[test]
    fn iou() {
        let a = BoundingBox {
            x: 0.0,
            y: 0.0,
            width: 10.0,
            height: 10.0,
        };
        let b = BoundingBox { x: 5.0, ..a };
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
    }
}
