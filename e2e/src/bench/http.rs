//! The bounded HTTP load generator: multipart logins (matching face, non-matching face,
//! no-face image) and registrations against any server with the original API (ours or
//! the Python reference), closed loop, loopback only, a fixed request count and a time
//! cap per run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::multipart::{Form, Part};

use super::{Photo, ensure_loopback, f, percentile, process_tree_cpu_s};

/// The enrolled people, in enrolment order: (identity, enrolment photo). The first 8 are
/// LFW's 250x250 colour photos (the reference's headline mix); then larger photos.
pub const GALLERY: &[(&str, &str)] = &[
    ("ariel_sharon", "ariel_sharon_1.jpg"),
    ("arnold_schwarzenegger", "arnold_schwarzenegger_1.jpg"),
    ("colin_powell", "colin_powell_1.jpg"),
    ("donald_rumsfeld", "donald_rumsfeld_1.jpg"),
    ("george_w_bush", "george_w_bush_1.jpg"),
    ("gerhard_schroeder", "gerhard_schroeder_1.jpg"),
    ("hugo_chavez", "hugo_chavez_1.jpg"),
    ("jacques_chirac", "jacques_chirac_1.jpg"),
    ("barack_obama", "barack_obama_1.jpg"),
    ("joe_biden", "joe_biden_1.jpg"),
    ("rose_leslie", "rose_leslie_1.jpg"),
    // alex_lacamoire_1.png fails the reference's liveness heuristic.
    ("alex_lacamoire", "alex_lacamoire_2.jpg"),
];

/// LFW people never enrolled: their photos are the non-matching faces.
pub const STRANGERS: &[&str] = &["tony_blair", "vladimir_putin"];

/// Login photos left out of the matching mix: two faces in one photo (our service
/// answers `multiple_faces` by design; the reference picks the largest).
const LEFT_OUT: &[&str] = &["ariel_sharon_4.jpg"];

/// The password of every benchmark account.
pub const PASSWORD: &str = "correct horse battery staple";

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /api/v1/auth/login`.
    Login,
    /// `POST /api/v1/auth/register` (a new account each request).
    Register,
}

/// One workload: the images sent in turn and what a correct answer is.
#[derive(Debug, Clone)]
pub struct Case {
    /// `match`, `nonmatch`, `noface` or `register`.
    pub name: &'static str,
    /// What the requests do.
    pub action: Action,
    /// Request k sends `items[k % len]`.
    pub items: Vec<Photo>,
}

impl Case {
    /// Whether a response is the correct outcome of this case.
    fn correct(&self, status: u16, body: &[u8], item: &Photo) -> bool {
        match self.name {
            "match" => {
                status == 200
                    && serde_json::from_slice::<serde_json::Value>(body)
                        .ok()
                        .and_then(|v| v["user"]["username"].as_str().map(str::to_owned))
                        .is_some_and(|u| u == item.identity)
            }
            "register" => status == 201,
            // a refusal (no face, no match, liveness)
            _ => (400..500).contains(&status),
        }
    }
}

/// The photos of the first `gallery` enrolled people.
pub fn gallery_photos(faces: &Path, gallery: usize) -> Result<Vec<Photo>> {
    if gallery == 0 || gallery > GALLERY.len() {
        bail!("--gallery must be 1..={}", GALLERY.len());
    }
    GALLERY[..gallery]
        .iter()
        .map(|(_, file)| Photo::read(faces, "genuine", file))
        .collect()
}

/// The four cases on the shared faces: `match` = the other photos of the enrolled LFW
/// people, `nonmatch` = photos of LFW people never enrolled, `noface` = `noface/`,
/// `register` = the LFW photos again, each under a new account.
pub fn cases(faces: &Path, gallery: usize) -> Result<Vec<Case>> {
    let all = super::genuine_photos(faces)?;
    let enrolled: Vec<&str> = GALLERY[..gallery.min(GALLERY.len())]
        .iter()
        .map(|(i, _)| *i)
        .collect();
    let enrol_files: Vec<&str> = GALLERY.iter().map(|(_, p)| *p).collect();
    let lfw: Vec<&str> = GALLERY[..8].iter().map(|(i, _)| *i).collect();
    let matching: Vec<Photo> = all
        .iter()
        .filter(|p| {
            enrolled.contains(&p.identity.as_str())
                && lfw.contains(&p.identity.as_str())
                && !enrol_files.contains(&p.name.as_str())
                && !LEFT_OUT.contains(&p.name.as_str())
        })
        .cloned()
        .collect();
    let strangers: Vec<Photo> = all
        .iter()
        .filter(|p| STRANGERS.contains(&p.identity.as_str()))
        .cloned()
        .collect();
    let mut noface_names: Vec<String> = std::fs::read_dir(faces.join("noface"))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    noface_names.sort();
    let noface: Vec<Photo> = noface_names
        .iter()
        .map(|n| Photo::read(faces, "noface", n))
        .collect::<Result<_>>()?;
    if matching.is_empty() || strangers.is_empty() || noface.is_empty() {
        bail!("the face set lacks photos for some case (match/nonmatch/noface)");
    }
    Ok(vec![
        Case {
            name: "match",
            action: Action::Login,
            items: matching.clone(),
        },
        Case {
            name: "nonmatch",
            action: Action::Login,
            items: strangers,
        },
        Case {
            name: "noface",
            action: Action::Login,
            items: noface,
        },
        Case {
            name: "register",
            action: Action::Register,
            items: matching,
        },
    ])
}

/// Registers the first `gallery` people (sequentially). An account that already exists
/// (400) counts as enrolled, so `--register` can be repeated against one server.
pub async fn register_gallery(url: &str, faces: &Path, gallery: usize) -> Result<Vec<f64>> {
    ensure_loopback(url)?;
    let client = client(1)?;
    let mut ms = Vec::new();
    for ((identity, _), photo) in GALLERY.iter().zip(gallery_photos(faces, gallery)?) {
        let started = Instant::now();
        let r = client
            .post(format!("{url}/api/v1/auth/register"))
            .multipart(register_form(identity, &photo))
            .send()
            .await
            .with_context(|| format!("registering {identity}"))?;
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        if status == 201 {
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
        } else if !(status == 400 && body.contains("xist")) {
            bail!(
                "registering {identity} with {} failed: {status} {body}",
                photo.name
            );
        }
    }
    Ok(ms)
}

fn register_form(username: &str, photo: &Photo) -> Form {
    Form::new()
        .text("username", username.to_owned())
        .text("email", format!("{username}@example.org"))
        .text("password", PASSWORD)
        .part("face_image", image_part(photo))
}

fn image_part(photo: &Photo) -> Part {
    Part::bytes(photo.bytes.clone())
        .file_name(photo.name.clone())
        .mime_str("application/octet-stream")
        .unwrap_or_else(|_| Part::bytes(photo.bytes.clone()).file_name(photo.name.clone()))
}

fn client(concurrency: usize) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// The numbers of one run (one case at one concurrency).
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Case name.
    pub case: &'static str,
    /// Concurrent connections (closed loop).
    pub concurrency: usize,
    /// Requests timed.
    pub requests: usize,
    /// Wall time of the timed part, seconds.
    pub wall_s: f64,
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles, ms.
    pub p50: f64,
    /// 95th percentile, ms.
    pub p95: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// Slowest, ms.
    pub max: f64,
    /// Status code (or transport error) counts.
    pub statuses: BTreeMap<String, usize>,
    /// Responses that were the case's correct outcome.
    pub correct: usize,
    /// Server CPU (user + system, whole process tree) per request, ms, when its pid is known.
    pub server_cpu_ms: Option<f64>,
    /// This load generator's own CPU per request, ms.
    pub client_cpu_ms: f64,
}

/// Bounds of a run.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Requests per run (at most).
    pub requests: usize,
    /// Seconds per run (at most; the run stops after the request in flight).
    pub max_seconds: f64,
}

struct Sample {
    ms: f64,
    status: String,
    correct: bool,
}

async fn one(client: &reqwest::Client, url: &str, case: &Case, k: usize, tag: &str) -> Sample {
    let item = &case.items[k % case.items.len()];
    let started = Instant::now();
    let request = match case.action {
        Action::Login => client
            .post(format!("{url}/api/v1/auth/login"))
            .multipart(Form::new().part("face_image", image_part(item))),
        Action::Register => {
            let username = format!("b{tag}n{k}");
            client
                .post(format!("{url}/api/v1/auth/register"))
                .multipart(register_form(&username, item))
        }
    };
    let (status, correct) = match request.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            match r.bytes().await {
                Ok(body) => (status.to_string(), case.correct(status, &body, item)),
                Err(e) => (format!("body error: {e}"), false),
            }
        }
        Err(e) => (
            if e.is_timeout() {
                "timeout".to_owned()
            } else {
                "connect/transport error".to_owned()
            },
            false,
        ),
    };
    Sample {
        ms: started.elapsed().as_secs_f64() * 1000.0,
        status,
        correct,
    }
}

/// Runs one case at one concurrency: one untimed warm-up request per connection on a
/// separate client, then `concurrency` workers on fresh keep-alive connections taking
/// request numbers from a shared counter until `bounds.requests` are sent or
/// `bounds.max_seconds` have passed.
pub async fn run_case(
    url: &str,
    case: &Case,
    concurrency: usize,
    bounds: Bounds,
    server_pid: Option<u32>,
    tag: &str,
) -> Result<RunResult> {
    ensure_loopback(url)?;
    if concurrency == 0 || bounds.requests == 0 {
        bail!("concurrency and request count must be positive");
    }
    let url: Arc<str> = Arc::from(url);
    let case = Arc::new(case.clone());
    {
        let warm = client(concurrency)?;
        let mut set = tokio::task::JoinSet::new();
        for w in 0..concurrency {
            let (warm, url, case) = (warm.clone(), url.clone(), case.clone());
            let tag = format!("{tag}w");
            set.spawn(async move { one(&warm, &url, &case, w, &tag).await });
        }
        while set.join_next().await.is_some() {}
    }
    let measured = client(concurrency)?;
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = server_pid.map(process_tree_cpu_s);
    let own0 = super::own_cpu_s();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(bounds.max_seconds);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, case, next) = (measured.clone(), url.clone(), case.clone(), next.clone());
        let tag = tag.to_owned();
        set.spawn(async move {
            let mut samples = Vec::new();
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= bounds.requests {
                    break;
                }
                samples.push(one(&client, &url, &case, k, &tag).await);
            }
            samples
        });
    }
    let mut samples = Vec::new();
    while let Some(r) = set.join_next().await {
        samples.extend(r.context("load worker panicked")?);
    }
    let wall_s = started.elapsed().as_secs_f64();
    let cpu1 = server_pid.map(process_tree_cpu_s);
    let own1 = super::own_cpu_s();
    let ms: Vec<f64> = samples.iter().map(|s| s.ms).collect();
    let mut statuses = BTreeMap::new();
    for s in &samples {
        *statuses.entry(s.status.clone()).or_insert(0) += 1;
    }
    let n = samples.len();
    Ok(RunResult {
        case: case.name,
        concurrency,
        requests: n,
        wall_s,
        rps: n as f64 / wall_s,
        p50: percentile(&ms, 50.0),
        p95: percentile(&ms, 95.0),
        p99: percentile(&ms, 99.0),
        max: percentile(&ms, 100.0),
        statuses,
        correct: samples.iter().filter(|s| s.correct).count(),
        server_cpu_ms: match (cpu0, cpu1) {
            (Some(a), Some(b)) if n > 0 => Some((b - a) * 1000.0 / n as f64),
            _ => None,
        },
        client_cpu_ms: (own1 - own0) * 1000.0 / n.max(1) as f64,
    })
}

/// Runs every case at every concurrency (logins first, registrations last, since new
/// accounts of already enrolled faces would make later logins ambiguous).
pub async fn run_all(
    url: &str,
    cases: &[Case],
    concurrency: &[usize],
    bounds: Bounds,
    server_pid: Option<u32>,
    progress: bool,
) -> Result<Vec<RunResult>> {
    let run = super::run_id();
    let mut out = Vec::new();
    for case in cases {
        for &c in concurrency {
            let tag = format!("{}{}c{c}", &run[..4], &case.name[..1]);
            let r = run_case(url, case, c, bounds, server_pid, &tag).await?;
            if progress {
                eprintln!(
                    "  {} c={c}: {} requests, {:.2} req/s, p50 {:.1} ms, statuses {:?}",
                    case.name, r.requests, r.rps, r.p50, r.statuses
                );
            }
            out.push(r);
        }
    }
    Ok(out)
}

/// The method paragraph printed with the HTTP tables.
pub fn method(cases: &[Case], gallery: usize, bounds: Bounds) -> String {
    let describe = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .map(|c| {
                let mut names: Vec<&str> = c.items.iter().map(|p| p.name.as_str()).collect();
                names.dedup();
                format!("{} images ({})", names.len(), names.join(", "))
            })
            .unwrap_or_default()
    };
    let enrolled: Vec<&str> = GALLERY[..gallery].iter().map(|(_, p)| *p).collect();
    format!(
        "Closed-loop load from this process (Rust, reqwest + tokio) over loopback: for each case \
         and concurrency c, one untimed warm-up request per connection, then c workers on \
         keep-alive connections send requests until {} are sent or {} s have passed; request k \
         sends image k mod n of the case. Latency = client round trip; percentiles by linear \
         interpolation; req/s = timed requests / timed wall time. The load generator shares \
         the machine's CPUs with the server and PostgreSQL. 'correct' = the case's right \
         answer: `match` 200 as the expected user; `nonmatch` and `noface` a 4xx refusal; \
         `register` 201. Server CPU = user+system CPU of the server's process tree per request \
         (PostgreSQL not included); client CPU = this load generator's own.\n\n\
         Gallery: {gallery} people enrolled first (sequential registrations): {}.\n\
         - match: {}\n- nonmatch: {}\n- noface: {}\n- register: the match images, each \
         under a new account (runs last).",
        bounds.requests,
        bounds.max_seconds,
        enrolled.join(", "),
        describe("match"),
        describe("nonmatch"),
        describe("noface"),
    )
}

/// Markdown table of run results.
pub fn table(results: &[RunResult]) -> String {
    let mut out = String::from(
        "| case | c | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | statuses | correct | server CPU ms/req | client CPU ms/req |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let statuses: Vec<String> = r.statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.case,
            r.concurrency,
            r.requests,
            f(r.rps, 2),
            f(r.p50, 1),
            f(r.p95, 1),
            f(r.p99, 1),
            f(r.max, 1),
            statuses.join(" "),
            r.correct,
            r.server_cpu_ms.map_or("-".to_owned(), |c| f(c, 1)),
            f(r.client_cpu_ms, 1),
        );
    }
    out
}
