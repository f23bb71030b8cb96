//! Smoke mode of the fuzz targets (`service/fuzz/`): the same harnesses, driven by a
//! small deterministic mutator over seed inputs for a bounded time, in the normal test
//! command. The long runs use libFuzzer (`service/fuzz/run.sh`, nightly); see
//! docs/SECURITY.md.
//!
//! Every input in `service/fuzz/regressions/<target>/` (crashes found earlier, kept as
//! regression tests) and `service/fuzz/corpus/<target>/` (a local libFuzzer corpus, when
//! one exists) is replayed first.
//!
//! Settings: `FUZZ_SMOKE_SECS` (time per target, default 3), `FUZZ_SMOKE_ITERS` (most
//! inputs per target, default 1,000,000), `FUZZ_SEED` (mutator seed, default fixed).
//! A failing input is written to `target/fuzz-smoke/<target>-<n>.bin` and the test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed assertion

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: a fast, deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING_U8: [u8; 9] = [0, 1, 0x7F, 0x80, 0xFF, b'"', b'\r', b'\n', b'-'];
const INTERESTING_U32: [u32; 8] = [
    0,
    1,
    0xFFFF,
    0x1_0000,
    60_000,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
];
const MAX_INPUT: usize = 64 * 1024;

/// One to four byte-level mutations of `input`, sometimes spliced with another seed.
fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING_U8[rng.below(INTERESTING_U8.len())];
            }
            2 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            3 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = INTERESTING_U32[rng.below(INTERESTING_U32.len())];
                let bytes = if rng.below(2) == 0 {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                data[i..i + 4].copy_from_slice(&bytes);
            }
            4 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let insert: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, insert);
            }
            5 if len > 1 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                data.drain(at..at + n);
            }
            6 if len > 1 => {
                // Duplicate a chunk in place (repeated headers, parts, markers).
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(256));
                let copy = data[at..at + n].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, copy);
            }
            7 if len > 1 => data.truncate(rng.below(len)),
            8 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
    data.truncate(MAX_INPUT);
    data
}

fn files_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != ".gitkeep"))
        .filter_map(|p| std::fs::read(&p).ok().map(|d| (p, d)))
        .collect();
    files.sort();
    files
}

fn save_failure(target: &str, n: u64, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-smoke");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{target}-{n}.bin"));
    let _ = std::fs::write(&path, input);
    path
}

/// Replays the target's regression inputs and local corpus, then mutates the seeds for
/// the time budget. Panics (with the input saved) when the harness fails.
fn smoke(target: &str, harness: fn(&[u8]), mut seeds: Vec<Vec<u8>>) -> u64 {
    let run_one = |n: u64, input: &[u8], origin: &str| {
        if catch_unwind(AssertUnwindSafe(|| harness(input))).is_err() {
            let path = save_failure(target, n, input);
            panic!(
                "fuzz target {target} failed on {origin}; input saved to {} \
                 (copy it to service/fuzz/regressions/{target}/ with the fix)",
                path.display()
            );
        }
    };
    for dir in ["regressions", "corpus"] {
        for (path, data) in files_in(&fuzz_dir().join(dir).join(target)) {
            run_one(0, &data, &path.display().to_string());
            seeds.push(data);
        }
    }
    for (i, seed) in seeds.iter().enumerate() {
        run_one(i as u64, seed, &format!("seed {i}"));
    }

    let budget = Duration::from_secs(env_u64("FUZZ_SMOKE_SECS", 3));
    let max_iters = env_u64("FUZZ_SMOKE_ITERS", 1_000_000);
    let mut rng = Rng(env_u64("FUZZ_SEED", 0x5EED_FACE_1D00_0001) | 1);
    let started = Instant::now();
    let mut n = 0;
    while n < max_iters && started.elapsed() < budget {
        let base = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, base, &seeds);
        run_one(n, &input, &format!("mutated input {n}"));
        n += 1;
    }
    eprintln!(
        "fuzz smoke {target}: {n} mutated inputs in {:.1}s, no failure",
        started.elapsed().as_secs_f64()
    );
    n
}

#[test]
fn fuzz_smoke_decode() {
    let mut seeds = harness::decode_seeds();
    // Two real photos, so mutations reach the JPEG and PNG decoders' deeper states.
    let faces = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/faces/genuine");
    for name in ["colin_powell_1.jpg", "jim_parsons_1.png"] {
        if let Ok(data) = std::fs::read(faces.join(name)) {
            seeds.push(data);
        }
    }
    let n = smoke("decode", harness::decode, seeds);
    assert!(n > 0, "no input was run");
}

#[test]
fn fuzz_smoke_multipart() {
    let n = smoke("multipart", harness::multipart, harness::multipart_seeds());
    assert!(n > 0, "no input was run");
}

#[test]
fn fuzz_smoke_token() {
    let n = smoke("token", harness::token, harness::token_seeds());
    assert!(n > 0, "no input was run");
}

/// The harnesses' own oracles hold on inputs whose answer is known, so a harness that
/// silently accepted everything would fail here.
#[test]
fn harness_oracles_see_known_answers() {
    // A genuine signed token verifies; the same with a wrong key or alg none does not.
    let svc = faceid_service::domain::tokens::TokenService::new(
        harness::TOKEN_TENANT,
        harness::TOKEN_KEY,
        Duration::from_secs(60),
    );
    let now = chrono::Utc::now().timestamp();
    let payload = format!(
        r#"{{"iss":"faceid/acme","aud":"acme","sub":"{}","exp":{},"iat":{now},"nbf":{now},"jti":"{}","typ":"access"}}"#,
        uuid::Uuid::new_v4(),
        now + 60,
        uuid::Uuid::new_v4()
    );
    let good = harness::sign_jwt(
        br#"{"alg":"HS256","typ":"JWT"}"#,
        payload.as_bytes(),
        harness::TOKEN_KEY,
    );
    assert!(
        svc.verify_access(&good).is_ok(),
        "hand-signed token refused"
    );
    let none = format!(
        "{}.{}.",
        harness::b64url(br#"{"alg":"none","typ":"JWT"}"#),
        harness::b64url(payload.as_bytes())
    );
    assert!(svc.verify_access(&none).is_err());

    // The multipart harness accepts a well-formed form (200) and checks it.
    harness::multipart(&harness::multipart_seeds()[0]);
    // The PNG bomb is a valid PNG header refused on its size.
    let bomb = harness::png_bomb(60_000, 60_000);
    let err = faceid_service::face::decode::decode(&bomb, &harness::DECODE_LIMITS).unwrap_err();
    assert_eq!(err.code(), "image_too_large");
}

/// Writes the seeds to `$FUZZ_WRITE_SEEDS/<target>/` for libFuzzer (`service/fuzz/run.sh`);
/// does nothing otherwise.
#[test]
fn write_seed_corpus() {
    let Some(dir) = std::env::var_os("FUZZ_WRITE_SEEDS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    for (target, seeds) in [
        ("decode", harness::decode_seeds()),
        ("multipart", harness::multipart_seeds()),
        ("token", harness::token_seeds()),
    ] {
        std::fs::create_dir_all(dir.join(target)).unwrap();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(target).join(format!("seed-{i:03}")), seed).unwrap();
        }
    }
}
