//! 1:N search at scale: synthetic identities calibrated on real embeddings, loaded with
//! binary COPY into a tenant schema made by `faceid_migrations::apply`, then HNSW build
//! time, sizes, recall@1 against exact search, query latency at several `ef_search`, and
//! the service's end-to-end login latency at that gallery size.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pgvector::Vector;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::http::{self, Bounds};
use super::{
    BenchService, Photo, Platform, f, faceid_path, machine_line, mean, percentile, run_id,
};
use faceid_migrations::quote_ident;

/// Embedding dimension.
pub const DIM: usize = 128;

/// Options of `faceid-bench vectors`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `faceid` binary (default: the release build).
    pub faceid: Option<PathBuf>,
    /// Gallery sizes (synthetic identities), ascending; the smallest is the login baseline.
    pub sizes: Vec<usize>,
    /// `hnsw.ef_search` values.
    pub ef: Vec<u32>,
    /// Probe queries per size.
    pub probes: usize,
    /// Probes also answered by PostgreSQL's exact search (sequential scan).
    pub sql_exact_probes: usize,
    /// End-to-end logins per size (concurrency 1).
    pub logins: usize,
    /// Calibrate on at most this many genuine photos (all when `None`).
    pub calibration_photos: Option<usize>,
    /// Calibrate on this folder's `genuine/` photos instead of the platform's face set.
    pub calibration_dir: Option<PathBuf>,
    /// Real people enrolled over HTTP on top of the synthetic gallery.
    pub real_gallery: usize,
    /// Generator seed.
    pub seed: u64,
    /// `maintenance_work_mem` for the index build.
    pub maintenance_work_mem: String,
    /// Keep the schemas (default: dropped).
    pub keep: bool,
    /// HNSW `(m, ef_construction)` instead of the migration's (what the operator sets
    /// per tenant).
    pub hnsw: Option<(u32, u32)>,
    /// Between-person spectrum exponent instead of the fitted one (a sensitivity check:
    /// larger = lower intrinsic dimension).
    pub decay: Option<f64>,
}

// ---------------------------------------------------------------- random numbers

/// SplitMix64: small, fast, seedable per identity (so generation is parallel and
/// reproducible).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64, index: u64) -> Rng {
        let mut r = Rng(seed
            ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)
            ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// Two standard normal samples (Box-Muller).
    fn gauss2(&mut self) -> (f64, f64) {
        let r = (-2.0 * self.uniform().ln()).sqrt();
        let t = std::f64::consts::TAU * self.uniform();
        (r * t.cos(), r * t.sin())
    }
}

// ---------------------------------------------------------------- calibration

/// Distance statistics of a set of templates with identity labels.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Templates.
    pub n: usize,
    /// Identities.
    pub identities: usize,
    /// Mean norm.
    pub norm: f64,
    /// Same-person distances: mean, p50.
    pub genuine: (f64, f64),
    /// Different-person distances: mean, p50, standard deviation.
    pub impostor: (f64, f64, f64),
    gen_d2: f64,
    imp_d2: f64,
    imp_d2_var: f64,
}

fn dist2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = f64::from(*x) - f64::from(*y);
            d * d
        })
        .sum()
}

impl Stats {
    /// Statistics of labelled vectors.
    pub fn of(vectors: &[(String, Vec<f32>)]) -> Stats {
        let mut gen_d = Vec::new();
        let mut imp_d = Vec::new();
        for i in 0..vectors.len() {
            for j in i + 1..vectors.len() {
                let d2 = dist2(&vectors[i].1, &vectors[j].1);
                if vectors[i].0 == vectors[j].0 {
                    gen_d.push(d2);
                } else {
                    imp_d.push(d2);
                }
            }
        }
        let sqrt = |v: &[f64]| v.iter().map(|x| x.sqrt()).collect::<Vec<_>>();
        let (g, i) = (sqrt(&gen_d), sqrt(&imp_d));
        let imp_mean = mean(&i);
        let imp_sd = (i.iter().map(|x| (x - imp_mean).powi(2)).sum::<f64>()
            / (i.len().max(2) - 1) as f64)
            .sqrt();
        let imp_d2 = mean(&imp_d);
        let mut ids: Vec<&str> = vectors.iter().map(|(l, _)| l.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        Stats {
            n: vectors.len(),
            identities: ids.len(),
            norm: mean(
                &vectors
                    .iter()
                    .map(|(_, v)| dist2(v, &[0.0; DIM]).sqrt())
                    .collect::<Vec<_>>(),
            ),
            genuine: (mean(&g), percentile(&g, 50.0)),
            impostor: (imp_mean, percentile(&i, 50.0), imp_sd),
            gen_d2: mean(&gen_d),
            imp_d2,
            imp_d2_var: imp_d.iter().map(|x| (x - imp_d2).powi(2)).sum::<f64>()
                / (imp_d.len().max(2) - 1) as f64,
        }
    }
}

/// The generative model: identity centre = mean + N(0, diag(lambda)); capture = centre +
/// N(0, sigma_w² I). Fitted to the real templates' statistics.
#[derive(Debug, Clone)]
pub struct Model {
    /// Mean of the real templates (in the stored, protected space).
    pub mean: Vec<f64>,
    /// Within-person noise per dimension.
    pub sigma_w: f64,
    /// Between-person variance per dimension (power law).
    pub lambda: Vec<f64>,
    /// Power-law exponent of the between-person spectrum.
    pub decay: f64,
    /// What the model was fitted to.
    pub real: Stats,
    /// Model version string of the real templates.
    pub model_version: String,
}

impl Model {
    /// Fits the model: sigma_w from the mean squared same-person distance, the trace of
    /// the between-person covariance from the mean squared different-person distance, and
    /// the exponent of its power-law spectrum from the variance of the squared
    /// different-person distances (Var = 8 tr(Σ²) for Gaussian identities).
    pub fn fit(
        real: Stats,
        mean_vec: Vec<f64>,
        model_version: String,
        decay_override: Option<f64>,
    ) -> Result<Model> {
        if real.gen_d2.is_nan() || real.imp_d2.is_nan() {
            bail!("calibration needs at least two photos of one person and two people");
        }
        let d = DIM as f64;
        let sigma_w2 = real.gen_d2 / (2.0 * d);
        let trace_b = (real.imp_d2 / 2.0 - d * sigma_w2).max(1e-6);
        let spectrum = |a: f64| -> Vec<f64> {
            let w: Vec<f64> = (1..=DIM).map(|j| (j as f64).powf(-a)).collect();
            let s: f64 = w.iter().sum();
            w.iter().map(|x| trace_b * x / s).collect()
        };
        let var_of = |a: f64| -> f64 {
            8.0 * spectrum(a)
                .iter()
                .map(|l| (l + sigma_w2).powi(2))
                .sum::<f64>()
        };
        let (mut lo, mut hi) = (0.0f64, 3.0f64);
        let decay = if real.imp_d2_var <= var_of(lo) {
            lo
        } else if real.imp_d2_var >= var_of(hi) {
            hi
        } else {
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if var_of(mid) < real.imp_d2_var {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            0.5 * (lo + hi)
        };
        let decay = decay_override.unwrap_or(decay);
        Ok(Model {
            mean: mean_vec,
            sigma_w: sigma_w2.sqrt(),
            lambda: spectrum(decay),
            decay,
            real,
            model_version,
        })
    }

    fn centre(&self, seed: u64, i: u64) -> [f64; DIM] {
        let mut rng = Rng::new(seed, 1, i);
        let mut c = [0.0; DIM];
        for j in (0..DIM).step_by(2) {
            let (a, b) = rng.gauss2();
            c[j] = self.mean[j] + self.lambda[j].sqrt() * a;
            c[j + 1] = self.mean[j + 1] + self.lambda[j + 1].sqrt() * b;
        }
        c
    }

    /// Capture `k` (0 = enrolled, 1 = probe, ...) of synthetic identity `i`.
    pub fn capture(&self, seed: u64, i: u64, k: u64) -> [f32; DIM] {
        let c = self.centre(seed, i);
        let mut rng = Rng::new(seed, 2 + k, i);
        let mut v = [0.0f32; DIM];
        for j in (0..DIM).step_by(2) {
            let (a, b) = rng.gauss2();
            v[j] = (c[j] + self.sigma_w * a) as f32;
            v[j + 1] = (c[j + 1] + self.sigma_w * b) as f32;
        }
        v
    }

    /// Captures 0 of identities `0..n`, flat, generated on every CPU; `done` counts the
    /// rows generated.
    pub fn gallery(&self, seed: u64, n: usize, done: &AtomicUsize) -> Vec<f32> {
        let mut out = vec![0.0f32; n * DIM];
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        let per = n.div_ceil(threads).max(1);
        std::thread::scope(|s| {
            for (t, chunk) in out.chunks_mut(per * DIM).enumerate() {
                s.spawn(move || {
                    for (r, row) in chunk.chunks_mut(DIM).enumerate() {
                        row.copy_from_slice(&self.capture(seed, (t * per + r) as u64, 0));
                        if r % 1024 == 1023 {
                            done.fetch_add(1024, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        out
    }
}

/// Registers calibration photos over HTTP (as `cal<k>`), reads their stored templates
/// (protected the way the service stores them), deletes those accounts, fits the model.
async fn calibrate(
    url: &str,
    pool: &PgPool,
    schema: &str,
    photos: &[Photo],
    decay: Option<f64>,
) -> Result<(Model, Vec<String>)> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut skipped = Vec::new();
    let mut label = BTreeMap::new();
    for (k, p) in photos.iter().enumerate() {
        let username = format!("cal{k:04}");
        let form = reqwest::multipart::Form::new()
            .text("username", username.clone())
            .text("email", format!("{username}@example.org"))
            .text("password", http::PASSWORD)
            .part(
                "face_image",
                reqwest::multipart::Part::bytes(p.bytes.clone()).file_name(p.name.clone()),
            );
        let r = client
            .post(format!("{url}/api/v1/auth/register"))
            .multipart(form)
            .send()
            .await?;
        if r.status().as_u16() == 201 {
            label.insert(username, p.identity.clone());
        } else {
            let body = r.text().await.unwrap_or_default();
            let code = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or(body);
            skipped.push(format!("{} ({code})", p.name));
        }
    }
    let s = quote_ident(schema);
    let rows = sqlx::query(&format!(
        "SELECT u.username, f.embedding, f.model_version FROM {s}.face_embeddings f \
         JOIN {s}.users u ON u.id = f.user_id WHERE u.username LIKE 'cal%'"
    ))
    .fetch_all(pool)
    .await?;
    let mut vectors = Vec::new();
    let mut model_version = String::new();
    for row in rows {
        let username: String = row.try_get(0)?;
        let v: Vector = row.try_get(1)?;
        model_version = row.try_get(2)?;
        if let Some(id) = label.get(&username) {
            vectors.push((id.clone(), v.to_vec()));
        }
    }
    sqlx::query(&format!("DELETE FROM {s}.users WHERE username LIKE 'cal%'"))
        .execute(pool)
        .await?;
    sqlx::query(&format!("DELETE FROM {s}.failed_login_attempts"))
        .execute(pool)
        .await?;
    let mut mean_vec = vec![0.0f64; DIM];
    for (_, v) in &vectors {
        for (m, x) in mean_vec.iter_mut().zip(v) {
            *m += f64::from(*x) / vectors.len() as f64;
        }
    }
    let model = Model::fit(Stats::of(&vectors), mean_vec, model_version, decay)?;
    Ok((model, skipped))
}

// ---------------------------------------------------------------- binary COPY

fn put_field(buf: &mut Vec<u8>, data: &[u8]) {
    buf.extend_from_slice(&(data.len() as i32).to_be_bytes());
    buf.extend_from_slice(data);
}

/// pgvector's binary form: int16 dimensions, int16 unused, float4 each (big-endian).
fn put_vector(buf: &mut Vec<u8>, v: &[f32]) {
    buf.extend_from_slice(&((4 + 4 * v.len()) as i32).to_be_bytes());
    buf.extend_from_slice(&(v.len() as i16).to_be_bytes());
    buf.extend_from_slice(&0i16.to_be_bytes());
    for x in v {
        buf.extend_from_slice(&x.to_be_bytes());
    }
}

const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const COPY_TRAILER: [u8; 2] = (-1i16).to_be_bytes();

/// A count of work done, printed on stderr as `what: done/total (pct), elapsed` every two
/// seconds while it lives and once more when dropped.
struct Progress {
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(what: String, total: usize) -> Progress {
        let done = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, st) = (done.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let line = |done: usize| {
                let done = done.min(total);
                eprintln!(
                    "  {what}: {done}/{total} ({:.0}%), {:.1} s",
                    100.0 * done as f64 / total.max(1) as f64,
                    started.elapsed().as_secs_f64()
                );
            };
            let mut next = started + Duration::from_secs(2);
            while !st.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if Instant::now() >= next {
                    line(d.load(Ordering::Relaxed));
                    next += Duration::from_secs(2);
                }
            }
            line(total);
        });
        Progress {
            done,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `indexdef` on `conn` and, every two seconds meanwhile, prints the build's phase
/// and counts from `pg_stat_progress_create_index` (read through `pool`'s other
/// connection) on stderr.
async fn build_index(
    pool: &PgPool,
    conn: &mut sqlx::PgConnection,
    indexdef: &str,
    schema: &str,
) -> Result<()> {
    let started = Instant::now();
    let build = sqlx::query(indexdef).execute(&mut *conn);
    tokio::pin!(build);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    loop {
        tokio::select! {
            done = &mut build => {
                done?;
                eprintln!("  HNSW build: done, {:.1} s", started.elapsed().as_secs_f64());
                return Ok(());
            }
            _ = tick.tick() => {
                let row: Option<(String, i64, i64, i64, i64)> = sqlx::query_as(
                    "SELECT p.phase, p.tuples_done, p.tuples_total, p.blocks_done, p.blocks_total \
                     FROM pg_stat_progress_create_index p JOIN pg_namespace n ON n.nspname = $1 \
                     JOIN pg_class c ON c.oid = p.relid AND c.relnamespace = n.oid",
                )
                .bind(schema)
                .fetch_optional(pool)
                .await
                .unwrap_or(None);
                if let Some((phase, td, tt, bd, bt)) = row {
                    // pgvector's HNSW build counts tuples without a total.
                    let of = |done: i64, total: i64| {
                        if total > 0 { format!("{done}/{total}") } else { done.to_string() }
                    };
                    eprintln!(
                        "  HNSW build: {phase}, tuples {}, blocks {}, {:.1} s",
                        of(td, tt),
                        of(bd, bt),
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }
}

/// Loads `ids`/`gallery` into `users` and `face_embeddings` with two binary COPYs.
async fn copy_gallery(
    pool: &PgPool,
    schema: &str,
    ids: &[Uuid],
    gallery: &[f32],
    model_version: &str,
) -> Result<()> {
    let s = quote_ident(schema);
    // A well-formed argon2id string that matches no password.
    let hash = b"$argon2id$v=19$m=19456,t=2,p=1$YmVuY2hzeW50aGV0aWM$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    copy_binary(
        pool,
        &format!(
            "COPY {s}.users (id, username, email, password_hash, face_embedding, model_version) \
             FROM STDIN WITH (FORMAT BINARY)"
        ),
        ids.len(),
        720,
        |i, buf| {
            buf.extend_from_slice(&6i16.to_be_bytes());
            put_field(buf, ids[i].as_bytes());
            put_field(buf, format!("syn{i:07}").as_bytes());
            put_field(buf, format!("syn{i:07}@bench.invalid").as_bytes());
            put_field(buf, hash);
            put_vector(buf, &gallery[i * DIM..(i + 1) * DIM]);
            put_field(buf, model_version.as_bytes());
        },
    )
    .await?;
    copy_binary(
        pool,
        &format!(
            "COPY {s}.face_embeddings (id, user_id, embedding, model_version) \
             FROM STDIN WITH (FORMAT BINARY)"
        ),
        ids.len(),
        600,
        |i, buf| {
            buf.extend_from_slice(&4i16.to_be_bytes());
            put_field(buf, Uuid::new_v4().as_bytes());
            put_field(buf, ids[i].as_bytes());
            put_vector(buf, &gallery[i * DIM..(i + 1) * DIM]);
            put_field(buf, model_version.as_bytes());
        },
    )
    .await
}

/// Streams `rows` rows through the binary `COPY ... FROM STDIN` statement `sql`, 20,000
/// rows (about `row_bytes` each) per message; `row(i, buf)` appends row `i`, field count
/// first.
async fn copy_binary(
    pool: &PgPool,
    sql: &str,
    rows: usize,
    row_bytes: usize,
    mut row: impl FnMut(usize, &mut Vec<u8>),
) -> Result<()> {
    const BATCH: usize = 20_000;
    let mut copy = pool.copy_in_raw(sql).await?;
    copy.send(COPY_HEADER).await?;
    let table = sql.split_whitespace().nth(1).unwrap_or("?").to_owned();
    let progress = Progress::start(format!("COPY {table}"), rows);
    for start in (0..rows).step_by(BATCH) {
        let end = (start + BATCH).min(rows);
        let mut buf = Vec::with_capacity((end - start) * row_bytes);
        for i in start..end {
            row(i, &mut buf);
        }
        copy.send(buf).await?;
        progress.done.fetch_add(end - start, Ordering::Relaxed);
    }
    copy.send(COPY_TRAILER.as_slice()).await?;
    copy.finish().await?;
    Ok(())
}

// ---------------------------------------------------------------- exact search

/// The exact two nearest neighbours `[(index, squared distance); 2]` of each probe,
/// blocked over the gallery so it stays in cache, on every CPU.
pub fn exact_top2(gallery: &[f32], probes: &[[f32; DIM]]) -> Vec<[(usize, f32); 2]> {
    let n = gallery.len() / DIM;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let per = probes.len().div_ceil(threads).max(1);
    let mut out = vec![[(usize::MAX, f32::INFINITY); 2]; probes.len()];
    std::thread::scope(|s| {
        for (probe_chunk, out_chunk) in probes.chunks(per).zip(out.chunks_mut(per)) {
            s.spawn(move || {
                const BLOCK: usize = 2048;
                for start in (0..n).step_by(BLOCK) {
                    let end = (start + BLOCK).min(n);
                    for (p, best) in probe_chunk.iter().zip(out_chunk.iter_mut()) {
                        for i in start..end {
                            let row = &gallery[i * DIM..(i + 1) * DIM];
                            let mut acc = [0.0f32; 8];
                            for (a, b) in row.chunks_exact(8).zip(p.chunks_exact(8)) {
                                for l in 0..8 {
                                    let d = a[l] - b[l];
                                    acc[l] += d * d;
                                }
                            }
                            let d: f32 = acc.iter().sum();
                            if d < best[1].1 {
                                if d < best[0].1 {
                                    best[1] = best[0];
                                    best[0] = (i, d);
                                } else {
                                    best[1] = (i, d);
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    out
}

// ---------------------------------------------------------------- the face decision

/// Tolerances the identification table reports: the shipped one and a stricter one.
pub const DECISION_TOLERANCES: [f32; 2] = [0.6, 0.5];
/// The service's default `MATCH_AMBIGUITY_MARGIN`.
const MARGIN: f32 = 0.05;

/// The service's 1:N decision (`domain::matching::decide`) on an exact top 2 of squared
/// distances, one gallery row per identity: the nearest identity, unless it is beyond the
/// tolerance or a second identity within the tolerance is within the margin of it.
pub fn decide(top: &[(usize, f32); 2], tolerance: f32) -> Option<usize> {
    let (best, d0) = (top[0].0, top[0].1.sqrt());
    let d1 = top[1].1.sqrt();
    if d0 > tolerance || (d1 <= tolerance && d1 - d0 < MARGIN) {
        None
    } else {
        Some(best)
    }
}

/// (tolerance, identification rate, FPIR) for genuine probes of `probe_ids` and for
/// strangers' probes, from their exact top 2.
fn decisions(
    genuine: &[[(usize, f32); 2]],
    probe_ids: &[usize],
    strangers: &[[(usize, f32); 2]],
) -> Vec<(f32, f64, f64)> {
    let rate = |hits: usize, n: usize| hits as f64 / n.max(1) as f64;
    DECISION_TOLERANCES
        .iter()
        .map(|&t| {
            let identified = genuine
                .iter()
                .zip(probe_ids)
                .filter(|(top, id)| decide(top, t) == Some(**id))
                .count();
            let let_in = strangers
                .iter()
                .filter(|top| decide(top, t).is_some())
                .count();
            (
                t,
                rate(identified, genuine.len()),
                rate(let_in, strangers.len()),
            )
        })
        .collect()
}

// ---------------------------------------------------------------- the run

/// The numbers of one gallery size.
#[derive(Debug, Clone, Default)]
pub struct SizeResult {
    /// Synthetic identities.
    pub n: usize,
    /// Generation, COPY, VACUUM ANALYZE, index build seconds.
    pub generate_s: f64,
    /// COPY of both tables.
    pub copy_s: f64,
    /// VACUUM ANALYZE.
    pub analyze_s: f64,
    /// HNSW build.
    pub build_s: f64,
    /// Sizes in MiB: face_embeddings heap, HNSW index, users (total), schema (total).
    pub sizes_mib: [f64; 4],
    /// Whether the service's query plan uses the HNSW index.
    pub uses_index: bool,
    /// (ef, p50 ms, p99 ms, mean ms, recall@1).
    pub search: Vec<(u32, f64, f64, f64, f64)>,
    /// PostgreSQL exact search (seq scan): probes, p50, p99, agreement with ours.
    pub sql_exact: (usize, f64, f64, f64),
    /// Exact top-1 is the probe's own identity.
    pub identification: f64,
    /// The service's decision on exact search, per tolerance of [`DECISION_TOLERANCES`]:
    /// (tolerance, genuine probes identified as their own identity, strangers' probes
    /// taken for somebody).
    pub decisions: Vec<(f32, f64, f64)>,
    /// Probe to own enrolled template, p50; probe to nearest other identity, p50.
    pub genuine_p50: f64,
    /// Nearest other identity's distance, p50.
    pub impostor_p50: f64,
    /// End-to-end login at c=1.
    pub login: Option<http::RunResult>,
    /// The service's own mean vector-search time during the logins (ms).
    pub service_search_ms: Option<f64>,
}

async fn scrape_search(url: &str) -> Option<(f64, f64)> {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .ok()?
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |prefix: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l.contains("one_to_many"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    Some((
        value("faceid_vector_search_duration_seconds_sum")?,
        value("faceid_vector_search_duration_seconds_count")?,
    ))
}

/// Prints one part of the report (a paragraph or a table) on stdout at once.
fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

/// Runs the bench, printing the Markdown report on stdout part by part: the head once the
/// model is calibrated, each size's tables as soon as they are measured, the targets at
/// the end. Progress (counts and elapsed seconds) goes to stderr.
pub async fn run(opts: &Options) -> Result<()> {
    let platform = Platform::from_env()?;
    let binary = faceid_path(opts.faceid.as_deref())?;
    let run = run_id();
    let started = chrono::Utc::now();
    let t_all = Instant::now();
    let load_before = super::load_average();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&platform.database_url)
        .await
        .context("connecting to DATABASE_URL")?;
    let calibration_set = opts.calibration_dir.as_deref().unwrap_or(&platform.faces);
    let mut photos = super::genuine_photos(calibration_set)
        .with_context(|| format!("calibration photos in {}", calibration_set.display()))?;
    if let Some(n) = opts.calibration_photos {
        photos.truncate(n);
    }
    let cases = http::cases(&platform.faces, opts.real_gallery)?;
    let match_case = cases
        .iter()
        .find(|c| c.name == "match")
        .context("no match case")?
        .clone();

    let mut sizes = opts.sizes.clone();
    sizes.sort_unstable();
    let mut model: Option<Model> = None;
    let mut results: Vec<SizeResult> = Vec::new();
    for &n in &sizes {
        let schema = format!("bench_vec_{run}_{n}");
        eprintln!("vectors: N={n} in schema {schema}");
        faceid_migrations::apply(&pool, &schema).await?;
        let env = platform.service_env(&schema);
        let svc = BenchService::start(&binary, &env, "vec").await?;
        let outcome = async {
            if model.is_none() {
                eprintln!("  calibrating on {} real photos", photos.len());
                let (m, skipped) = calibrate(&svc.url, &pool, &schema, &photos, opts.decay).await?;
                emit(&report_head(
                    opts,
                    &m,
                    &skipped,
                    &started,
                    &load_before,
                    &cases,
                    &platform.extra_env_note(),
                ));
                model = Some(m);
            }
            let m = model.as_ref().context("calibration")?;
            let base = results
                .first()
                .and_then(|r| r.login.as_ref())
                .map(|l| l.p50);
            size_run(opts, &pool, &schema, &svc, n, m, &match_case, base).await
        }
        .await;
        svc.stop();
        if !opts.keep {
            super::drop_schema(&pool, &schema).await;
        }
        results.push(outcome?);
    }
    emit(&report_tail(&results, t_all.elapsed().as_secs_f64()));
    Ok(())
}

/// Loads and measures one gallery size, printing its tables as it goes; `base` is the
/// login p50 at the smallest size (already measured), if any.
#[allow(clippy::too_many_arguments)]
async fn size_run(
    opts: &Options,
    pool: &PgPool,
    schema: &str,
    svc: &BenchService,
    n: usize,
    model: &Model,
    match_case: &http::Case,
    base: Option<f64>,
) -> Result<SizeResult> {
    let s = quote_ident(schema);
    emit(&format!("### N = {n}\n"));
    let mut r = SizeResult {
        n,
        ..SizeResult::default()
    };

    // Generate.
    let t = Instant::now();
    let gallery = {
        let progress = Progress::start(format!("N={n}: generating"), n);
        model.gallery(opts.seed, n, &progress.done)
    };
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let probe_ids: Vec<usize> = {
        let mut rng = Rng::new(opts.seed, 99, n as u64);
        (0..opts.probes)
            .map(|_| (rng.next() % n as u64) as usize)
            .collect()
    };
    let probes: Vec<[f32; DIM]> = probe_ids
        .iter()
        .map(|&i| model.capture(opts.seed, i as u64, 1))
        .collect();
    r.generate_s = t.elapsed().as_secs_f64();

    // Load: drop the (empty) HNSW index the migration made, COPY, rebuild it, timed.
    let indexdef: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'face_embeddings_hnsw_idx'",
    )
    .bind(schema)
    .fetch_one(pool)
    .await
    .context("the migration's HNSW index")?;
    let indexdef = match opts.hnsw {
        Some((m, efc)) => format!(
            "CREATE INDEX face_embeddings_hnsw_idx ON {s}.face_embeddings \
             USING hnsw ((embedding::halfvec(128)) halfvec_l2_ops) \
             WITH (m = {m}, ef_construction = {efc})"
        ),
        None => indexdef,
    };
    sqlx::query(&format!("DROP INDEX {s}.face_embeddings_hnsw_idx"))
        .execute(pool)
        .await?;
    let t = Instant::now();
    copy_gallery(pool, schema, &ids, &gallery, &model.model_version).await?;
    r.copy_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    sqlx::query(&format!("VACUUM ANALYZE {s}.users"))
        .execute(pool)
        .await?;
    sqlx::query(&format!("VACUUM ANALYZE {s}.face_embeddings"))
        .execute(pool)
        .await?;
    r.analyze_s = t.elapsed().as_secs_f64();
    {
        let mut conn = pool.acquire().await?;
        sqlx::query(&format!(
            "SET maintenance_work_mem = '{}'",
            opts.maintenance_work_mem.replace('\'', "")
        ))
        .execute(&mut *conn)
        .await?;
        let t = Instant::now();
        build_index(pool, &mut conn, &indexdef, schema).await?;
        r.build_s = t.elapsed().as_secs_f64();
        sqlx::query("RESET maintenance_work_mem")
            .execute(&mut *conn)
            .await?;
    }
    eprintln!(
        "  N={n}: generated {:.1} s, COPY {:.1} s, VACUUM ANALYZE {:.1} s, HNSW build {:.1} s",
        r.generate_s, r.copy_s, r.analyze_s, r.build_s
    );
    let mib = |sql: String| async move {
        let b: i64 = sqlx::query_scalar(&sql).fetch_one(pool).await?;
        anyhow::Ok(b as f64 / 1048576.0)
    };
    r.sizes_mib = [
        mib(format!("SELECT pg_relation_size('{s}.face_embeddings')")).await?,
        mib(format!("SELECT pg_relation_size('{s}.face_embeddings_hnsw_idx')")).await?,
        mib(format!("SELECT pg_total_relation_size('{s}.users')")).await?,
        mib(format!(
            "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'm')"
        ))
        .await?,
    ];

    emit(&load_table(&r));

    // Exact answers.
    let exact2 = exact_top2(&gallery, &probes);
    let exact: Vec<(usize, f32)> = exact2.iter().map(|t| t[0]).collect();
    let mut gen_d = Vec::new();
    let mut imp_d = Vec::new();
    for ((&pid, p), top) in probe_ids.iter().zip(&probes).zip(&exact2) {
        gen_d.push(dist2(p, &gallery[pid * DIM..(pid + 1) * DIM]).sqrt());
        let other = if top[0].0 == pid { top[1] } else { top[0] };
        imp_d.push(f64::from(other.1).sqrt());
    }
    // Strangers: second captures of identities that were never enrolled.
    let strangers: Vec<[f32; DIM]> = (0..opts.probes)
        .map(|k| model.capture(opts.seed, (n + k) as u64, 1))
        .collect();
    r.decisions = decisions(&exact2, &probe_ids, &exact_top2(&gallery, &strangers));
    r.identification = exact
        .iter()
        .zip(&probe_ids)
        .filter(|((b, _), p)| b == *p)
        .count() as f64
        / probes.len() as f64;
    r.genuine_p50 = percentile(&gen_d, 50.0);
    r.impostor_p50 = percentile(&imp_d, 50.0);
    emit(&identification_table(&r));
    emit(&decisions_table(opts, &r));
    drop(gallery);

    // The service's query (`store::users::NEAREST_SQL`, with its network filter: every
    // loaded row carries the column's default, today's network), on one connection, at
    // each ef_search.
    let query = format!(
        "SELECT user_id, distance FROM (\
         SELECT f.user_id, (f.embedding <-> $1)::float8 AS distance \
         FROM {s}.face_embeddings f JOIN {s}.users u ON u.id = f.user_id \
         WHERE u.is_active AND f.network = 'face-api-resnet128@1.7.15/128' \
         ORDER BY f.embedding::halfvec(128) <-> $1::halfvec(128) LIMIT 11\
         ) candidates ORDER BY distance"
    );
    let mut conn = pool.acquire().await?;
    sqlx::query("SET hnsw.iterative_scan = relaxed_order")
        .execute(&mut *conn)
        .await?;
    let literal = format!(
        "'[{}]'::vector",
        probes[0]
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let plan: Vec<String> =
        sqlx::query_scalar(&format!("EXPLAIN {}", query.replace("$1", &literal)))
            .fetch_all(&mut *conn)
            .await?;
    r.uses_index = plan.iter().any(|l| l.contains("face_embeddings_hnsw_idx"));
    let top1 = |rows: Vec<(Uuid, f64)>| {
        rows.into_iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(u, _)| u)
    };
    for &ef in &opts.ef {
        sqlx::query(&format!("SET hnsw.ef_search = {}", ef.clamp(1, 1000)))
            .execute(&mut *conn)
            .await?;
        for p in probes.iter().take(100) {
            let _: Vec<(Uuid, f64)> = sqlx::query_as(&query)
                .bind(Vector::from(p.to_vec()))
                .fetch_all(&mut *conn)
                .await?;
        }
        let mut ms = Vec::new();
        let mut hits = 0usize;
        for (p, (best, _)) in probes.iter().zip(&exact) {
            let t = Instant::now();
            let rows: Vec<(Uuid, f64)> = sqlx::query_as(&query)
                .bind(Vector::from(p.to_vec()))
                .fetch_all(&mut *conn)
                .await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            hits += usize::from(top1(rows) == Some(ids[*best]));
        }
        r.search.push((
            ef,
            percentile(&ms, 50.0),
            percentile(&ms, 99.0),
            mean(&ms),
            hits as f64 / probes.len() as f64,
        ));
        eprintln!(
            "  N={n} ef_search={ef}: p50 {:.2} ms, p99 {:.2} ms, recall@1 {:.3}",
            percentile(&ms, 50.0),
            percentile(&ms, 99.0),
            hits as f64 / probes.len() as f64
        );
    }
    // PostgreSQL's own exact answer for a few probes (index scans off). A statement of
    // its own: a plan cached while index scans were on would ignore the setting.
    sqlx::query("SET enable_indexscan = off")
        .execute(&mut *conn)
        .await?;
    let query = format!("{query} /* exact */");
    let mut ms = Vec::new();
    let mut agree = 0usize;
    let k = opts.sql_exact_probes.min(probes.len());
    for (p, (best, _)) in probes.iter().zip(&exact).take(k) {
        let t = Instant::now();
        let rows: Vec<(Uuid, f64)> = sqlx::query_as(&query)
            .bind(Vector::from(p.to_vec()))
            .fetch_all(&mut *conn)
            .await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        agree += usize::from(top1(rows) == Some(ids[*best]));
    }
    r.sql_exact = (
        k,
        percentile(&ms, 50.0),
        percentile(&ms, 99.0),
        agree as f64 / k.max(1) as f64,
    );
    emit(&search_table(&r));
    sqlx::query("RESET ALL").execute(&mut *conn).await?;
    drop(conn);

    // End to end: real people enrolled over HTTP on top of the synthetic gallery, then
    // logins with their other photos, one at a time.
    if opts.logins > 0 {
        http::register_gallery(&svc.url, &super::faces_dir(), opts.real_gallery).await?;
        let before = scrape_search(&svc.url).await;
        let login = http::run_case(
            &svc.url,
            match_case,
            1,
            Bounds {
                requests: opts.logins,
                max_seconds: 120.0,
            },
            Some(svc.pid()),
            &format!("v{n}"),
        )
        .await?;
        let after = scrape_search(&svc.url).await;
        if let (Some(a), Some(b)) = (before, after)
            && b.1 > a.1
        {
            r.service_search_ms = Some((b.0 - a.0) / (b.1 - a.1) * 1000.0);
        }
        eprintln!(
            "  N={n}: login p50 {:.1} ms, statuses {:?}",
            login.p50, login.statuses
        );
        r.login = Some(login);
        emit(&login_table(
            &r,
            base.or_else(|| r.login.as_ref().map(|l| l.p50)),
        ));
    }
    Ok(r)
}

/// The report's head: run line, data (the calibration) and method; printed once the
/// model is calibrated, before the first size is loaded.
#[allow(clippy::too_many_arguments)]
fn report_head(
    opts: &Options,
    model: &Model,
    skipped: &[String],
    started: &chrono::DateTime<chrono::Utc>,
    load_before: &str,
    cases: &[http::Case],
    extra_note: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## 1:N search at scale\n\n\
         Run {} UTC on {}; load average before {load_before}.{}\n",
        started.format("%Y-%m-%d %H:%M"),
        machine_line(),
        extra_note
    );
    let real = &model.real;
    let synth: Vec<(String, Vec<f32>)> = (0..300u64)
        .flat_map(|i| {
            (0..3u64).map(move |k| {
                (
                    i.to_string(),
                    model.capture(opts.seed ^ 0x5eed, i, k).to_vec(),
                )
            })
        })
        .collect();
    let syn = Stats::of(&synth);
    let _ = writeln!(
        out,
        "**Data.** Synthetic identities calibrated on real templates: {} genuine photos{} \
         registered through the service (so the vectors are exactly what it stores, template \
         protection included), {} of {} identities kept{}. Model: identity centre = mean of \
         the real templates + N(0, diag(lambda)) with a power-law spectrum lambda_j ~ j^-{:.2} \
         ({}), capture = centre + \
         N(0, {:.4}^2 I) (fitted to same-person distances). Gallery row = capture 0 of each \
         identity (a `users` row and its `face_embeddings` row); probe = capture 1 of a random \
         enrolled identity (a second sample of the same person).\n\n\
         | templates | n | identities | mean norm | same-person d mean / p50 | different-person d mean / p50 / sd |\n\
         |---|---|---|---|---|---|\n\
         | real (calibration) | {} | {} | {} | {} / {} | {} / {} / {} |\n\
         | synthetic (300 identities x 3) | {} | {} | {} | {} / {} | {} / {} / {} |\n",
        real.n,
        opts.calibration_dir
            .as_ref()
            .map(|d| format!(" of `{}`", d.display()))
            .unwrap_or_default(),
        real.identities,
        real.identities,
        refused_note(skipped),
        model.decay,
        if opts.decay.is_some() {
            "**exponent set by --decay, not fitted**: a sensitivity check"
        } else {
            "exponent fitted to the spread of different-person distances"
        },
        model.sigma_w,
        real.n,
        real.identities,
        f(real.norm, 3),
        f(real.genuine.0, 3),
        f(real.genuine.1, 3),
        f(real.impostor.0, 3),
        f(real.impostor.1, 3),
        f(real.impostor.2, 3),
        syn.n,
        syn.identities,
        f(syn.norm, 3),
        f(syn.genuine.0, 3),
        f(syn.genuine.1, 3),
        f(syn.impostor.0, 3),
        f(syn.impostor.1, 3),
        f(syn.impostor.2, 3),
    );
    let _ = writeln!(
        out,
        "**Method.** Per size: a fresh tenant schema by `faceid_migrations::apply`; the \
         migration's (empty) HNSW index dropped; both tables loaded with binary `COPY` \
         (pgvector's binary `vector` format); `VACUUM ANALYZE`; the migration's own index \
         definition (`hnsw ((embedding::halfvec(128)) halfvec_l2_ops) WITH (m = 16, \
         ef_construction = 64)`: half-precision copies in the graph) rebuilt{} with \
         `maintenance_work_mem = {}` (the server's `max_parallel_maintenance_workers`). \
         Query = the service's 1:N query (`face_embeddings JOIN users WHERE is_active ORDER BY \
         embedding::halfvec(128) <-> $1::halfvec(128) LIMIT 11` restricted to the service's \
         network, re-ranked by the exact distance; `hnsw.iterative_scan = relaxed_order`), client round trip \
         on one connection (sqlx, prepared, binary vector), sequential, after 100 warm-up \
         queries per ef. {} probes per size. Recall@1 = the query's nearest user is the exact \
         nearest (brute force over the generated vectors in this process; checked against \
         PostgreSQL's own sequential scan on the first probes). Login = `POST /api/v1/auth/login` \
         of the real people's other photos ({} images) at concurrency 1 against the release \
         service on that schema, after {} real people were registered over HTTP on top of \
         the synthetic gallery. Each size's tables are printed as soon as they are measured.\n",
        opts.hnsw.map_or(String::new(), |(m, efc)| format!(
            " **with m = {m}, ef_construction = {efc} instead**"
        )),
        opts.maintenance_work_mem,
        opts.probes,
        cases
            .iter()
            .find(|c| c.name == "match")
            .map_or(0, |c| c.items.len()),
        opts.real_gallery
    );
    out
}

/// The load table of one size (generation, COPY, VACUUM ANALYZE, build, sizes).
/// The calibration photos refused at registration: each named when few, else counted by
/// error code.
fn refused_note(skipped: &[String]) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    if skipped.len() <= 12 {
        return format!("; refused at registration: {}", skipped.join(", "));
    }
    let mut by_code = BTreeMap::<&str, usize>::new();
    for s in skipped {
        let code = s
            .rsplit_once(" (")
            .map_or(s.as_str(), |(_, c)| c.trim_end_matches(')'));
        *by_code.entry(code).or_default() += 1;
    }
    let counts: Vec<String> = by_code.iter().map(|(c, n)| format!("{c} {n}")).collect();
    format!(
        "; {} refused at registration ({})",
        skipped.len(),
        counts.join(", ")
    )
}

fn load_table(r: &SizeResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| N | generate s | COPY s | VACUUM ANALYZE s | HNSW build s | face_embeddings heap MiB | HNSW index MiB | users total MiB | schema total MiB |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.n,
        f(r.generate_s, 1),
        f(r.copy_s, 1),
        f(r.analyze_s, 1),
        f(r.build_s, 1),
        f(r.sizes_mib[0], 1),
        f(r.sizes_mib[1], 1),
        f(r.sizes_mib[2], 1),
        f(r.sizes_mib[3], 1),
    );
    out
}

/// The search table of one size (HNSW per ef_search, PostgreSQL's exact scan).
fn search_table(r: &SizeResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| N | search | p50 ms | p99 ms | mean ms | recall@1 |\n|---|---|---|---|---|---|"
    );
    for (ef, p50, p99, m, recall) in &r.search {
        let _ = writeln!(
            out,
            "| {} | HNSW ef_search={ef}{} | {} | {} | {} | {} |",
            r.n,
            if r.uses_index {
                ""
            } else {
                " (plan did not use the index!)"
            },
            f(*p50, 2),
            f(*p99, 2),
            f(*m, 2),
            f(*recall, 3)
        );
    }
    let (k, p50, p99, agree) = r.sql_exact;
    let _ = writeln!(
        out,
        "| {} | exact (seq scan), {k} probes | {} | {} | - | 1 (agrees with the brute force on {}) |",
        r.n,
        f(p50, 2),
        f(p99, 2),
        f(agree, 3)
    );
    out
}

/// Exact identification and distances of one size.
fn identification_table(r: &SizeResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| N | exact top-1 is the probe's own identity | probe to own template d p50 | probe to nearest other identity d p50 |\n|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} |",
        r.n,
        f(r.identification, 3),
        f(r.genuine_p50, 3),
        f(r.impostor_p50, 3)
    );
    out
}

/// The service's face-only decisions at each tolerance, one size.
fn decisions_table(opts: &Options, r: &SizeResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "**Face-only login against gallery size** (exact search, the service's rule: \
         tolerance, then margin {MARGIN} between identities; {} genuine probes and {} probes \
         of never-enrolled identities per size):\n\n\
         | N | tolerance | identification (right person) | FPIR (stranger taken for somebody) |\n|---|---|---|---|",
        opts.probes, opts.probes
    );
    for (t, identified, fpir) in &r.decisions {
        let _ = writeln!(
            out,
            "| {} | {t} | {} | {} |",
            r.n,
            f(*identified, 3),
            f(*fpir, 4)
        );
    }
    out
}

/// End-to-end logins of one size; `base` is the p50 at the smallest size.
fn login_table(r: &SizeResult, base: Option<f64>) -> String {
    let Some(l) = &r.login else {
        return String::new();
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| N (+ real) | logins | p50 ms | p95 ms | p50 - p50 at smallest N | statuses | correct user | service vector search mean ms |\n|---|---|---|---|---|---|---|---|"
    );
    let statuses: Vec<String> = l.statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        r.n,
        l.requests,
        f(l.p50, 1),
        f(l.p95, 1),
        base.map_or("-".to_owned(), |b| format!("{:+.1}", l.p50 - b)),
        statuses.join(" "),
        l.correct,
        r.service_search_ms.map_or("-".to_owned(), |m| f(m, 2)),
    );
    out
}

/// The report's tail: the targets at the largest size and the run's end.
fn report_tail(results: &[SizeResult], total_s: f64) -> String {
    let mut out = String::new();
    let base = results
        .first()
        .and_then(|r| r.login.as_ref())
        .map(|l| l.p50);
    if let Some(big) = results.last() {
        let ok = big
            .search
            .iter()
            .filter(|(_, _, p99, _, recall)| *p99 <= 5.0 && *recall >= 0.99)
            .map(|(ef, ..)| ef.to_string())
            .collect::<Vec<_>>();
        let _ = writeln!(
            out,
            "\n**Targets at N = {}:** vector search p99 <= 5 ms with recall@1 >= 0.99: {}. \
             Login median within 10 ms of the smallest gallery's: {}.",
            big.n,
            if ok.is_empty() {
                "missed at every ef_search measured".to_owned()
            } else {
                format!("met at ef_search {}", ok.join(", "))
            },
            match (base, &big.login) {
                (Some(b), Some(l)) => format!(
                    "{} ({:+.1} ms)",
                    if l.p50 - b <= 10.0 { "met" } else { "missed" },
                    l.p50 - b
                ),
                _ => "not measured".to_owned(),
            }
        );
    }
    let _ = writeln!(
        out,
        "\nFinished; load average after {}; total {:.0} s.",
        super::load_average(),
        total_s
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_follows_the_services_rule() {
        // Squared distances: 0.4^2, 0.7^2 -> the nearest; beyond the tolerance -> nobody.
        assert_eq!(decide(&[(3, 0.16), (5, 0.49)], 0.6), Some(3));
        assert_eq!(decide(&[(3, 0.49), (5, 0.64)], 0.6), None);
        // A rival within the margin, both within the tolerance: ambiguous.
        assert_eq!(decide(&[(3, 0.16), (5, 0.1764)], 0.6), None);
        // The same rival beyond a stricter tolerance is no rival.
        assert_eq!(decide(&[(3, 0.16), (5, 0.1764)], 0.41), Some(3));
        let d = decisions(
            &[[(0, 0.09), (1, 0.81)], [(1, 0.81), (2, 0.9)]],
            &[0, 2],
            &[[(4, 0.25), (6, 0.81)], [(4, 0.64), (6, 0.81)]],
        );
        // 0.6: one genuine identified, one stranger (0.5 away) let in; 0.5: same.
        assert_eq!(d, vec![(0.6, 0.5, 0.5), (0.5, 0.5, 0.5)]);
    }
}
