//! Face engine against the real models and the shared test photos.
//!
//! Needs ONNX Runtime: run through `scripts/test.sh`, or `source .dev/env` first (it sets
//! `ORT_DYLIB_PATH`). Photos: `FACES_DIR`, default `testdata/faces` in the repository.

// Helpers outside `#[test]` functions: a failed unwrap is a failed assertion here too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use faceid_service::face::{
    AnalyzeOptions, EngineConfig, EngineError, FaceEngine, FaceError, Purpose,
    RecognitionPrecision, decode,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn faces_dir() -> PathBuf {
    std::env::var_os("FACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/faces")))
}

fn config() -> EngineConfig {
    assert!(
        std::env::var_os("ORT_DYLIB_PATH").is_some_and(|p| !p.is_empty()),
        "ORT_DYLIB_PATH is not set: the face engine tests need ONNX Runtime. \
         Run them through scripts/test.sh, or `source .dev/env` first \
         (scripts/platform.sh start installs it)."
    );
    let mut c = EngineConfig::new(repo_root().join("models"));
    c.pool_size = 2;
    c
}

fn engine() -> &'static FaceEngine {
    static ENGINE: OnceLock<FaceEngine> = OnceLock::new();
    ENGINE.get_or_init(|| FaceEngine::load(config()).expect("the face engine loads"))
}

fn files(sub: &str) -> Vec<PathBuf> {
    let dir = faces_dir().join(sub);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (set FACES_DIR)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "{} is empty", dir.display());
    v
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn analyze(
    path: &Path,
    purpose: Purpose,
    liveness: bool,
) -> Result<faceid_service::face::Analysis, FaceError> {
    let bytes = std::fs::read(path).unwrap();
    engine().analyze_blocking(&bytes, AnalyzeOptions { purpose, liveness })
}

/// Measured on testdata/faces (the same photos as ../shared/faces) (docs/FACE_ENGINE.md), with the default recognition
/// precision (int8 on this CPU): 84 of 85 photos analysed (one is refused for its head
/// pose), 116 of 117 genuine pairs within 0.6 (float32: 117), 3 of 3369 impostor pairs
/// within 0.6 (0.09%). Asserted with a small margin.
#[test]
fn genuine_pairs_match_and_impostors_do_not() {
    let mut by_id: BTreeMap<String, Vec<(String, faceid_service::face::Embedding)>> =
        BTreeMap::new();
    let mut failed = Vec::new();
    let all = files("genuine");
    for p in &all {
        let file = name(p);
        let id = file.rsplit_once('_').unwrap().0.to_string();
        match analyze(p, Purpose::Identify, false) {
            Ok(a) => by_id.entry(id).or_default().push((file, a.face.embedding)),
            Err(e) => failed.push(format!("{file}: {}", e.code())),
        }
    }
    assert!(failed.len() <= 2, "not analysed: {failed:?}");
    let tol = engine().tolerance();
    let flat: Vec<(&String, &faceid_service::face::Embedding)> = by_id
        .iter()
        .flat_map(|(id, v)| v.iter().map(move |(_, e)| (id, e)))
        .collect();
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for i in 0..flat.len() {
        for j in i + 1..flat.len() {
            let d = flat[i].1.distance(flat[j].1);
            if flat[i].0 == flat[j].0 {
                genuine.push(d)
            } else {
                impostor.push(d)
            }
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let accepted = |v: &[f32]| v.iter().filter(|&&d| d <= tol).count() as f32 / v.len() as f32;
    assert!(
        genuine.len() >= 110 && impostor.len() >= 3300,
        "{} / {}",
        genuine.len(),
        impostor.len()
    );
    assert!(
        accepted(&genuine) >= 0.97,
        "genuine accepted {}",
        accepted(&genuine)
    );
    assert!(
        accepted(&impostor) <= 0.005,
        "impostors accepted {}",
        accepted(&impostor)
    );
    assert!(mean(&genuine) < 0.46, "genuine mean {}", mean(&genuine));
    assert!(mean(&impostor) > 0.78, "impostor mean {}", mean(&impostor));
}

#[test]
fn bad_inputs_give_clean_errors() {
    let expected: BTreeMap<&str, Option<&str>> = [
        ("empty.jpg", Some("image_empty")),
        ("face_gif.gif", Some("image_unsupported_format")),
        ("huge_12000x12000.png", Some("image_too_large")),
        ("text_renamed.jpg", Some("image_unsupported_format")),
        ("tiny_1x1.png", Some("image_too_small")),
        ("truncated_half.jpg", Some("image_corrupt")),
        // a valid PNG whatever its name, and a CMYK JPEG converted to RGB
        ("png_named_as.jpg", None),
        ("face_cmyk.jpg", None),
    ]
    .into_iter()
    .collect();
    for p in files("bad") {
        let file = name(&p);
        let want = expected
            .get(file.as_str())
            .unwrap_or_else(|| panic!("unexpected file {file}"));
        let got = analyze(&p, Purpose::Enroll, true);
        match (want, &got) {
            (Some(code), Err(e)) => assert_eq!(e.code(), *code, "{file}: {e}"),
            (None, Ok(_)) => {}
            _ => panic!("{file}: expected {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn converted_inputs_keep_their_identity() {
    // the CMYK JPEG is George W. Bush, the PNG named .jpg is Tony Blair
    let dir = faces_dir();
    for (bad, genuine) in [
        ("face_cmyk.jpg", "george_w_bush_1.jpg"),
        ("png_named_as.jpg", "tony_blair_2.jpg"),
    ] {
        let a = analyze(&dir.join("bad").join(bad), Purpose::Identify, false).unwrap();
        let b = analyze(&dir.join("genuine").join(genuine), Purpose::Identify, false).unwrap();
        let d = a.face.embedding.distance(&b.face.embedding);
        assert!(d < engine().tolerance(), "{bad} vs {genuine}: {d}");
    }
}

#[test]
fn no_face_images_give_no_face() {
    for p in files("noface") {
        let got = analyze(&p, Purpose::Identify, false);
        assert!(
            matches!(got, Err(FaceError::NoFace)),
            "{}: {got:?}",
            name(&p)
        );
    }
}

/// `FACE_DETECTION_UPSCALE`: a 250x250 photo of two people, whose second face (88x69 px)
/// the detector finds only in the photo scaled up to 416.
#[test]
fn upscaling_small_photos_finds_their_smaller_faces() {
    let mut c = config();
    c.pool_size = 1;
    c.detection_upscale = true;
    let upscaling = FaceEngine::load(c).unwrap();
    let bytes = std::fs::read(faces_dir().join("genuine/ariel_sharon_4.jpg")).unwrap();
    let got = upscaling.analyze_blocking(
        &bytes,
        AnalyzeOptions {
            purpose: Purpose::Enroll,
            liveness: false,
        },
    );
    // Both faces found; the subject, centred, dominates the neighbour at the edge, so it
    // is the one used (before the dominance rule this photo was `multiple_faces`).
    let analysis = got.unwrap();
    assert_eq!(analysis.face_count, 2);
}

#[test]
fn group_photos_are_refused_for_enrolment() {
    for p in files("multiface") {
        let got = analyze(&p, Purpose::Enroll, false);
        assert!(
            matches!(got, Err(FaceError::MultipleFaces { count }) if count >= 2),
            "{}: {got:?}",
            name(&p)
        );
    }
}

#[test]
fn genuine_photos_mostly_pass_liveness_and_signals_are_bounded() {
    // measured: 75 of 84 analysed genuine photos pass at 0.7 (BPCER 11%; 79 before
    // MiniFASNet: it refuses a few ordinary photos the older signals let through, see
    // docs/FACE_ENGINE.md "Liveness"); the bound is unchanged
    let (mut live, mut total) = (0, 0);
    for p in files("genuine").iter().step_by(2) {
        let Ok(a) = analyze(p, Purpose::Identify, true) else {
            continue;
        };
        let l = a.liveness.expect("liveness requested");
        let s = l.signals;
        for v in [
            l.score,
            s.texture,
            s.frequency,
            s.color,
            s.brightness,
            s.model.unwrap_or(0.0),
            s.minifasnet_v2,
            s.minifasnet_v1se,
        ] {
            assert!((0.0..=1.0).contains(&v), "{}: {l:?}", name(p));
        }
        // The small network runs only where the rule reads it: photos without context.
        assert_eq!(
            s.model.is_some(),
            s.context < faceid_service::face::liveness::MIN_CONTEXT,
            "{}: {l:?}",
            name(p)
        );
        assert_eq!(l.is_live, l.score >= engine().liveness_threshold());
        total += 1;
        live += usize::from(l.is_live);
    }
    assert!(total >= 40);
    assert!(
        live as f32 / total as f32 >= 0.85,
        "{live}/{total} genuine photos passed liveness"
    );
}

/// MiniFASNet's probabilities from `models/parity/minifasnet_eval.py` (the Python port of
/// the detector box and upstream's crop and resize, models/README.md): file, v2, v1se.
const MINIFASNET_REFERENCE: [(&str, f32, f32); 7] = [
    ("spoof/attack/hyperfas_replay_1.png", 0.001, 0.029),
    ("spoof/attack/sfas_print_1.jpg", 0.002, 0.171),
    ("spoof/attack/sfas_print_2.jpg", 0.032, 0.468),
    ("spoof/attack/sfas_print_idphoto_1.jpg", 0.004, 0.001),
    ("spoof/attack/sfas_replay_1.jpg", 0.005, 0.544),
    ("spoof/live/sfas_live_1.jpg", 0.986, 0.972),
    ("spoof/live/sfas_live_3.jpg", 0.954, 0.999),
];

/// Largest measured difference from [`MINIFASNET_REFERENCE`] on its JPEGs (0.117, V1SE on
/// `sfas_print_1.jpg`), with a margin.
const MINIFASNET_JPEG_TOLERANCE: f32 = 0.15;

#[test]
fn minifasnet_reproduces_the_reference_crop() {
    for (file, v2, v1se) in MINIFASNET_REFERENCE {
        let bytes = std::fs::read(faces_dir().join(file)).unwrap();
        let (l, _) = engine().liveness_blocking(&bytes).unwrap();
        let s = l.signals;
        // The reference decoded with libjpeg (Pillow); this service's JPEG decoder differs
        // by a level or two per pixel, which moves V1SE on a few photos (sfas_print_1 0.17
        // -> 0.29). Fed Pillow's pixels as PNG, every file here matched within 0.004, so
        // the crop and the resize are upstream's: PNG is held to that, JPEG looser.
        let tolerance = if file.ends_with(".png") {
            0.005
        } else {
            MINIFASNET_JPEG_TOLERANCE
        };
        assert!(
            (s.minifasnet_v2 - v2).abs() < tolerance
                && (s.minifasnet_v1se - v1se).abs() < tolerance,
            "{file}: {s:?}, reference {v2} / {v1se}"
        );
    }
}

#[test]
fn sample_attacks_are_refused_and_live_captures_pass() {
    let threshold = engine().liveness_threshold();
    assert_eq!(threshold, 0.7, "the default threshold");
    for (dir, live) in [("spoof/attack", false), ("spoof/live", true)] {
        for p in files(dir) {
            let (l, _) = engine()
                .liveness_blocking(&std::fs::read(&p).unwrap())
                .unwrap();
            assert_eq!(l.is_live, live, "{}: {l:?}", name(&p));
        }
    }
}

#[test]
fn exif_orientation_is_applied() {
    // stored 640x480 with EXIF orientation 6 (rotate 90 degrees clockwise)
    let bytes = std::fs::read(faces_dir().join("spoof/attack/sfas_print_1.jpg")).unwrap();
    let d = decode::decode(&bytes, &decode::ImageLimits::default()).unwrap();
    assert_eq!(d.rgb.dimensions(), (480, 640));
}

#[test]
fn hostile_bytes_never_panic() {
    // truncations and random corruptions of real files, plus random bytes with real headers
    let limits = decode::ImageLimits::default();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let dir = faces_dir();
    let sources = [
        "genuine/ariel_sharon_1.jpg",
        "genuine/jim_parsons_1.png",
        "genuine/alex_lacamoire_1.png",
    ];
    for src in sources {
        let bytes = std::fs::read(dir.join(src)).unwrap();
        for i in 1..40 {
            let cut = bytes.len() * i / 40;
            let _ = decode::decode(&bytes[..cut], &limits);
        }
        for _ in 0..60 {
            let mut b = bytes.clone();
            for _ in 0..1 + next() % 8 {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
            let _ = decode::decode(&b, &limits);
        }
    }
    for header in [
        &b"\xFF\xD8\xFF\xE0"[..],
        b"\x89PNG\r\n\x1a\n",
        b"RIFF\0\0\0\0WEBPVP8 ",
    ] {
        for len in [0usize, 10, 100, 1000] {
            let mut b = header.to_vec();
            b.extend((0..len).map(|_| next() as u8));
            assert!(decode::decode(&b, &limits).is_err());
        }
    }
    // and through the whole engine
    let bytes = std::fs::read(dir.join(sources[0])).unwrap();
    for cut in [bytes.len() / 3, bytes.len() - 2] {
        let got = engine().analyze_blocking(
            &bytes[..cut],
            AnalyzeOptions {
                purpose: Purpose::Enroll,
                liveness: true,
            },
        );
        assert_eq!(got.unwrap_err().code(), "image_corrupt");
    }
}

#[test]
fn a_modified_model_is_refused() {
    let dir = std::env::temp_dir().join(format!("faceid-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in faceid_service::face::models::ALL_FILES {
        std::fs::copy(repo_root().join("models").join(f), dir.join(f)).unwrap();
    }
    let target = dir.join("face_landmarks.onnx");
    let mut bytes = std::fs::read(&target).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&target, &bytes).unwrap();
    let mut cfg = config();
    cfg.models_dir = dir.clone();
    cfg.pool_size = 1;
    let err = FaceEngine::load(cfg.clone()).unwrap_err();
    match &err {
        EngineError::Checksum {
            path,
            expected,
            actual,
        } => {
            assert!(path.ends_with("face_landmarks.onnx"));
            assert_eq!(expected.len(), 64);
            assert_ne!(expected, actual);
            let msg = err.to_string();
            assert!(
                msg.contains("face_landmarks.onnx")
                    && msg.contains(expected.as_str())
                    && msg.contains(actual.as_str()),
                "{msg}"
            );
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    std::fs::remove_file(&target).unwrap();
    let err = FaceEngine::load(cfg).unwrap_err();
    assert!(matches!(err, EngineError::ModelFile { .. }), "{err:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn async_analyses_run_on_the_pool() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bytes =
        bytes::Bytes::from(std::fs::read(faces_dir().join("genuine/barack_obama_4.jpg")).unwrap());
    let opts = AnalyzeOptions {
        purpose: Purpose::Enroll,
        liveness: true,
    };
    let reference = engine().analyze_blocking(&bytes, opts).unwrap();
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (engine, bytes) = (engine().clone(), bytes.clone());
                tokio::spawn(async move { engine.analyze(bytes, opts).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    for r in results {
        let a = r.unwrap();
        assert!(a.face.embedding.distance(&reference.face.embedding) < 1e-4);
        assert_eq!(a.face_count, 1);
    }
    let expected = match engine().recognition_precision() {
        RecognitionPrecision::Int8 => "face-api-resnet128@1.7.15-int8+",
        _ => "face-api-resnet128@1.7.15+",
    };
    assert_eq!(
        engine().recognition_precision(),
        RecognitionPrecision::Auto.resolve()
    );
    assert!(engine().model_version().starts_with(expected));
}

/// The int8 recognition network against the float32 original on every genuine photo:
/// the same photo's two embeddings are close (measured with VNNI: median 0.036, max 0.046;
/// docs/FACE_ENGINE.md), so a template enrolled under one precision still matches probes
/// under the other, and the model versions tell them apart.
#[test]
fn int8_recognition_stays_close_to_float32() {
    let load = |precision| {
        let mut cfg = config();
        cfg.pool_size = 1;
        cfg.recognition_precision = precision;
        FaceEngine::load(cfg).expect("the engine loads")
    };
    let (int8, float32) = (
        load(RecognitionPrecision::Int8),
        load(RecognitionPrecision::Float32),
    );
    assert!(
        int8.model_version()
            .starts_with("face-api-resnet128@1.7.15-int8+")
    );
    assert!(
        float32
            .model_version()
            .starts_with("face-api-resnet128@1.7.15+")
    );
    let opts = AnalyzeOptions {
        purpose: Purpose::Identify,
        liveness: false,
    };
    let mut gaps = Vec::new();
    let mut cross = Vec::new();
    for p in files("genuine") {
        let bytes = std::fs::read(&p).unwrap();
        let (Ok(a), Ok(b)) = (
            int8.analyze_blocking(&bytes, opts),
            float32.analyze_blocking(&bytes, opts),
        ) else {
            continue;
        };
        gaps.push((name(&p), a.face.embedding.distance(&b.face.embedding)));
        cross.push((name(&p), a.face.embedding, b.face.embedding));
    }
    assert!(gaps.len() >= 80, "{} photos analysed", gaps.len());
    let worst = gaps.iter().map(|g| g.1).fold(0.0f32, f32::max);
    assert!(
        worst < 0.08,
        "int8 vs float32 on the same photo (CPU with VNNI: {}; without it ONNX Runtime's int8 \
         kernels can saturate and `auto` runs float32): {gaps:?}",
        faceid_service::face::models::cpu_has_vnni()
    );
    let person = |f: &str| f.rsplit_once('_').unwrap().0.to_string();
    let tol = engine().tolerance();
    let (mut genuine, mut accepted) = (0, 0);
    for (fi, int8, _) in &cross {
        for (fj, _, f32_template) in &cross {
            if fi != fj && person(fi) == person(fj) {
                genuine += 1;
                accepted += usize::from(int8.distance(f32_template) <= tol);
            }
        }
    }
    assert!(
        accepted * 100 >= genuine * 97,
        "int8 probes against float32 templates: {accepted}/{genuine} genuine pairs accepted"
    );
}

/// Runs the built `faceid` binary with `args`, the models of the repository and a pool of
/// one; returns its exit code and stdout lines.
fn faceid(args: &[&str]) -> (Option<i32>, Vec<String>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_faceid"))
        .args(args)
        .env("MODELS_DIR", repo_root().join("models"))
        .env("FACE_POOL_SIZE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code(),
        stdout.lines().map(str::to_owned).collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_embed_and_liveness_exit_nonzero_only_when_every_image_failed() {
    let genuine = faces_dir().join("genuine/barack_obama_1.jpg");
    let truncated = faces_dir().join("bad/truncated_half.jpg");
    let missing = faces_dir().join("no-such-photo.jpg");
    let (genuine, truncated, missing) = (
        genuine.to_str().unwrap(),
        truncated.to_str().unwrap(),
        missing.to_str().unwrap(),
    );
    for command in ["embed", "liveness"] {
        // Every image failed: one error line each, exit 3.
        let (code, lines, stderr) = faceid(&[command, truncated, missing]);
        assert_eq!(
            code,
            Some(3),
            "{command}, every image failed: {lines:?} {stderr}"
        );
        assert_eq!(lines.len(), 2, "{command}: {lines:?}");
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v.get("error").is_some(), "{command}: {line}");
        }
        // One of three succeeded: exit 0, still an error line for each failure.
        let (code, lines, stderr) = faceid(&[command, truncated, genuine, missing]);
        assert_eq!(
            code,
            Some(0),
            "{command}, one image succeeded: {lines:?} {stderr}"
        );
        let errors = lines.iter().filter(|l| l.contains("\"error\"")).count();
        assert_eq!((lines.len(), errors), (3, 2), "{command}: {lines:?}");
    }
    // The engine cannot load: 1, with the reason on stderr.
    let (code, _, stderr) = faceid(&["embed", "--models-dir", "/nonexistent", genuine]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("face engine"), "{stderr}");
}

#[test]
fn cli_help_shows_defaults_and_exit_codes() {
    for command in ["embed", "liveness"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_faceid"))
            .args([command, "--help"])
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for shown in [
            "[env: MODELS_DIR=]",
            "[default: models]",
            "[default: tiny-416]",
            "[default: 0.6]",
            "[default: 0.7]",
            "[default: 4096]",
            "Exit status: 0 when at least one image was processed",
            "3 when every image failed",
        ] {
            assert!(
                help.contains(shown),
                "{command} --help lacks {shown:?}:\n{help}"
            );
        }
    }
}

/// `subject` (side `subject_side`) at `subject_at` and `other` (side `other_side`) at
/// `other_at` on a 600x600 grey canvas, as a JPEG.
fn composite(
    subject: &str,
    subject_side: u32,
    subject_at: (i64, i64),
    other: &str,
    other_side: u32,
    other_at: (i64, i64),
) -> Vec<u8> {
    let load = |name: &str, side: u32| {
        let img = image::open(faces_dir().join("genuine").join(name))
            .unwrap()
            .to_rgb8();
        image::imageops::resize(&img, side, side, image::imageops::FilterType::Triangle)
    };
    let mut canvas = image::RgbImage::from_pixel(600, 600, image::Rgb([128, 128, 128]));
    image::imageops::overlay(
        &mut canvas,
        &load(other, other_side),
        other_at.0,
        other_at.1,
    );
    image::imageops::overlay(
        &mut canvas,
        &load(subject, subject_side),
        subject_at.0,
        subject_at.1,
    );
    let mut out = std::io::Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)
        .encode_image(&canvas)
        .unwrap();
    out.into_inner()
}

/// The documented rule for several faces (docs/FACE_ENGINE.md, "Several faces"): a
/// centred subject with a smaller face at the edge (how LFW's photos look) is enrolled and
/// identified by the subject's face; two faces side by side, or a large face off-centre,
/// stay `multiple_faces` for enrolment.
#[test]
fn a_dominant_centred_face_is_used_and_ambiguous_photos_are_refused() {
    let analyze_bytes = |bytes: &[u8], purpose| {
        engine().analyze_blocking(
            bytes,
            AnalyzeOptions {
                purpose,
                liveness: false,
            },
        )
    };
    let alone = analyze_bytes(
        &std::fs::read(faces_dir().join("genuine/hugo_chavez_1.jpg")).unwrap(),
        Purpose::Enroll,
    )
    .unwrap();
    // subject 300 px centred, a neighbour 190 px at the left border
    let lfw_like = composite(
        "hugo_chavez_1.jpg",
        300,
        (150, 150),
        "colin_powell_1.jpg",
        190,
        (-30, 20),
    );
    for purpose in [Purpose::Enroll, Purpose::Identify] {
        let a = analyze_bytes(&lfw_like, purpose).unwrap_or_else(|e| panic!("{purpose:?}: {e:?}"));
        assert_eq!(a.face_count, 2, "{purpose:?}");
        let b = a.face.bbox;
        let centre = (b.x + b.width / 2.0, b.y + b.height / 2.0);
        assert!(
            (centre.0 - 300.0).abs() < 60.0 && (centre.1 - 300.0).abs() < 60.0,
            "{purpose:?}: {b:?}"
        );
        let d = a.face.embedding.distance(&alone.face.embedding);
        assert!(d < 0.35, "{purpose:?}: the subject's face, distance {d}");
    }
    // two people side by side, equally framed
    let side_by_side = composite(
        "hugo_chavez_1.jpg",
        280,
        (10, 160),
        "colin_powell_1.jpg",
        260,
        (320, 170),
    );
    // the larger face in a corner, a smaller one in the middle
    let off_centre = composite(
        "hugo_chavez_1.jpg",
        280,
        (0, 0),
        "colin_powell_1.jpg",
        170,
        (215, 215),
    );
    for (what, bytes) in [("side by side", &side_by_side), ("off-centre", &off_centre)] {
        match analyze_bytes(bytes, Purpose::Enroll) {
            Err(FaceError::MultipleFaces { count }) => assert_eq!(count, 2, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}
