//! The ONNX models: integrity check and session construction.
//!
//! `models/SHA256SUMS` is compiled into the binary, so a model file that changed after the
//! build (corruption, tampering, a rebuilt model with other embeddings) is refused at
//! start-up with the expected and the actual hash. The bytes that were hashed are the
//! bytes given to ONNX Runtime (no second read of the file).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use sha2::{Digest, Sha256};

use super::EngineError;

/// `models/SHA256SUMS` as it was when this binary was built.
pub const SHA256SUMS: &str = include_str!("../../../models/SHA256SUMS");

/// The face detector file.
pub const DETECTOR_FILE: &str = "face_detector.onnx";
/// The landmark model file.
pub const LANDMARKS_FILE: &str = "face_landmarks.onnx";
/// The recognition model file (float32, the source's weights).
pub const RECOGNITION_FILE: &str = "face_recognition.onnx";
/// The recognition model with int8 weights and activations (`models/convert/quantize.py`).
pub const RECOGNITION_INT8_FILE: &str = "face_recognition_int8.onnx";
/// The anti-spoofing model file.
pub const ANTI_SPOOF_FILE: &str = "anti_spoof.onnx";
/// MiniFASNetV2 (Silent-Face-Anti-Spoofing, 2.7x crop).
pub const MINIFASNET_V2_FILE: &str = "anti_spoof_minifasnet_v2.onnx";
/// MiniFASNetV1SE (Silent-Face-Anti-Spoofing, 4x crop).
pub const MINIFASNET_V1SE_FILE: &str = "anti_spoof_minifasnet_v1se.onnx";
/// Every model file in `models/`.
pub const ALL_FILES: [&str; 7] = [
    DETECTOR_FILE,
    LANDMARKS_FILE,
    RECOGNITION_FILE,
    RECOGNITION_INT8_FILE,
    ANTI_SPOOF_FILE,
    MINIFASNET_V2_FILE,
    MINIFASNET_V1SE_FILE,
];

/// Where the recognition weights come from (part of the model version).
pub const RECOGNITION_SOURCE: &str = "face-api-resnet128@1.7.15";

/// How the recognition network computes: the float32 original or its int8 version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecognitionPrecision {
    /// `int8` on x86-64 CPUs with AVX-512 VNNI or AVX-VNNI, `float32` elsewhere (see
    /// [`RecognitionPrecision::resolve`]).
    Auto,
    /// int8 weights and activations: 2.9x faster on CPUs with VNNI; its embeddings are
    /// 0.036 (median) from the float32 ones (docs/FACE_ENGINE.md).
    Int8,
    /// The source's float32 computation (face-api and dlib parity).
    Float32,
}

impl RecognitionPrecision {
    /// The name used in settings and in the model version.
    pub fn name(self) -> &'static str {
        match self {
            RecognitionPrecision::Auto => "auto",
            RecognitionPrecision::Int8 => "int8",
            RecognitionPrecision::Float32 => "float32",
        }
    }

    /// What runs on this CPU: `Auto` becomes `Int8` only where ONNX Runtime's int8
    /// convolutions are both fast and exact. Without VNNI, x86-64 falls back to
    /// `vpmaddubsw`, whose 16-bit sums of uint8 x int8 products can saturate (ONNX
    /// Runtime's quantisation notes; the model was not quantised with `reduce_range`),
    /// and other architectures were not measured: both get `Float32`.
    pub fn resolve(self) -> RecognitionPrecision {
        match self {
            RecognitionPrecision::Auto if cpu_has_vnni() => RecognitionPrecision::Int8,
            RecognitionPrecision::Auto => RecognitionPrecision::Float32,
            explicit => explicit,
        }
    }

    /// The model file of a resolved precision (`Auto` is resolved first).
    pub fn file(self) -> &'static str {
        match self.resolve() {
            RecognitionPrecision::Int8 => RECOGNITION_INT8_FILE,
            _ => RECOGNITION_FILE,
        }
    }
}

/// Whether this CPU has 8-bit dot-product instructions (AVX-512 VNNI or AVX-VNNI).
pub fn cpu_has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512vnni") || std::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The files one engine loads, in load order: detector, landmarks, recognition,
/// anti-spoofing, MiniFASNetV2, MiniFASNetV1SE.
pub fn model_files(precision: RecognitionPrecision) -> [&'static str; 6] {
    [
        DETECTOR_FILE,
        LANDMARKS_FILE,
        precision.file(),
        ANTI_SPOOF_FILE,
        MINIFASNET_V2_FILE,
        MINIFASNET_V1SE_FILE,
    ]
}

/// The expected SHA-256 (lower-case hex) of `file`, from the embedded `SHA256SUMS`.
pub fn expected_sha256(file: &str) -> Option<&'static str> {
    SHA256SUMS.lines().find_map(|line| {
        let (hash, name) = line.split_once(char::is_whitespace)?;
        let name = name.trim_start().trim_start_matches('*');
        (name == file).then_some(hash.trim())
    })
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A model file read from disk and verified.
#[derive(Debug, Clone)]
pub struct VerifiedModel {
    /// File name.
    pub file: &'static str,
    /// Full path.
    pub path: PathBuf,
    /// Its SHA-256.
    pub sha256: String,
    /// The verified bytes.
    pub bytes: Vec<u8>,
}

/// Reads `dir/file` and checks it against the embedded checksum.
pub fn read_verified(dir: &Path, file: &'static str) -> Result<VerifiedModel, EngineError> {
    let path = dir.join(file);
    let bytes = std::fs::read(&path).map_err(|source| EngineError::ModelFile {
        path: path.clone(),
        source,
    })?;
    let actual = sha256_hex(&bytes);
    let expected = expected_sha256(file).ok_or_else(|| EngineError::Checksum {
        path: path.clone(),
        expected: "(no entry in the SHA256SUMS this binary was built with)".into(),
        actual: actual.clone(),
    })?;
    if expected != actual {
        return Err(EngineError::Checksum {
            path,
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(VerifiedModel {
        file,
        path,
        sha256: actual,
        bytes,
    })
}

/// The process-wide ONNX Runtime environment (ONNX Runtime allows one per process).
/// The library is loaded from `dylib`, else `ORT_DYLIB_PATH`, else the system path, on the
/// first call; later calls reuse it.
pub fn environment(dylib: Option<&Path>) -> Result<Environment, EngineError> {
    static ENV: OnceLock<Environment> = OnceLock::new();
    static INIT: Mutex<()> = Mutex::new(());
    if let Some(env) = ENV.get() {
        return Ok(env.clone());
    }
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = ENV.get() {
        return Ok(env.clone());
    }
    let path: PathBuf = match dylib {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("ORT_DYLIB_PATH") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(format!(
                "{}onnxruntime{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX
            )),
        },
    };
    let builder = ort::init_from(&path).map_err(|e| {
        EngineError::Runtime(format!(
            "cannot load the ONNX Runtime library {}: {e} (set ORT_DYLIB_PATH; \
             scripts/platform.sh installs it and writes .dev/env)",
            path.display()
        ))
    })?;
    let env = builder
        .with_name("faceid")
        .with_telemetry(false)
        .build()
        .map_err(|e| EngineError::Runtime(format!("cannot create the environment: {e}")))?;
    let _ = ENV.set(env.clone());
    Ok(env)
}

/// Builds a CPU session for a verified model: graph optimisation level 3, the given
/// intra-op threads, no inter-op parallelism. For the float models also
/// `session.disable_quant_qdq = 1`, so the `DequantizeLinear` nodes on constant uint8
/// weights are folded into float32 weights at load time (the stored models keep the
/// source's quantised weights to stay small); the int8 model keeps ONNX Runtime's QDQ
/// fusion, which turns its quantise/dequantise pairs into int8 convolutions.
pub fn build_session(
    env: &Environment,
    model: &VerifiedModel,
    intra_op_threads: usize,
) -> Result<Session, EngineError> {
    let err = |e: String| EngineError::Runtime(format!("{}: {e}", model.path.display()));
    let fold_weight_quantisation = model.file != RECOGNITION_INT8_FILE;
    Session::builder(env)
        .map_err(|e| err(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| err(e.to_string()))?
        .with_intra_threads(intra_op_threads)
        .map_err(|e| err(e.to_string()))?
        .with_inter_threads(1)
        .map_err(|e| err(e.to_string()))?
        .with_config_entry(
            "session.disable_quant_qdq",
            if fold_weight_quantisation { "1" } else { "0" },
        )
        .map_err(|e| err(e.to_string()))?
        .with_config_entry("session.intra_op.allow_spinning", "0")
        .map_err(|e| err(e.to_string()))?
        .commit_from_memory(&model.bytes)
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_precisions_stay_and_auto_follows_the_cpu() {
        use RecognitionPrecision::*;
        assert_eq!(Int8.resolve(), Int8);
        assert_eq!(Float32.resolve(), Float32);
        let auto = if cpu_has_vnni() { Int8 } else { Float32 };
        assert_eq!(Auto.resolve(), auto);
        assert_eq!(Auto.file(), auto.file());
        assert_eq!(model_files(Int8)[2], RECOGNITION_INT8_FILE);
        assert_eq!(model_files(Float32)[2], RECOGNITION_FILE);
    }

    #[test]
    fn every_model_has_a_checksum() {
        for f in ALL_FILES {
            let h = expected_sha256(f).unwrap();
            assert_eq!(h.len(), 64, "{f}");
        }
        assert!(expected_sha256("nope.onnx").is_none());
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
