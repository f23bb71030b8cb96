//! 1:N identification measured on real photos: how a gallery's size changes who face-only
//! login lets in.
//!
//! Folder layout as for `eval` (`genuine/<identity>_<n>.<ext>`). Each identity's first
//! photo that analyses is its *enrolment*, its other photos are *probes*. For a gallery
//! of N people (drawn at random from the identities, `draws` times):
//!
//! * **identification rate**: a genuine probe of an enrolled person is decided
//!   [`MatchOutcome::Matched`] to that person, by exactly the service's rule
//!   ([`decide`]: tolerance, then the ambiguity margin between users);
//! * **FPIR** (false positive identification rate): a probe of a person who is *not* in
//!   a gallery of N others (N+1 people are drawn; each one's probes go against the other
//!   N) is decided `Matched` to anyone.
//!
//! Search is exact (every enrolment compared), so these are the network's limits, not
//! the index's. Beyond the largest gallery the photos allow, FPIR is bounded from the
//! impostor-pair acceptance rate p at the tolerance: `1 - (1 - p)^N` (the rate without
//! the margin, which only lowers it), with p taken at its one-sided 95% upper confidence
//! limit so that few accepted pairs do not read as "safe".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use uuid::Uuid;

use super::eval::{identity_of, list_files};
use super::{AnalyzeOptions, Embedding, FaceEngine, Purpose};
use crate::domain::matching::{Candidate, MatchOutcome, decide};

/// One identity's embeddings: enrolment first, then probes.
#[derive(Debug, Clone)]
pub struct Person {
    /// Identity (file-name prefix).
    pub identity: String,
    /// Embeddings of the photos that analysed, in file order.
    pub embeddings: Vec<Embedding>,
}

/// Identification outcome at one gallery size and tolerance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Gallery size (people enrolled).
    pub gallery: usize,
    /// Tolerance.
    pub tolerance: f32,
    /// Genuine probes decided to the right person.
    pub identified: usize,
    /// Genuine probes tried.
    pub genuine_probes: usize,
    /// Stranger probes decided to somebody.
    pub false_positives: usize,
    /// Stranger probes tried.
    pub stranger_probes: usize,
}

impl Point {
    /// Identification rate.
    pub fn identification(&self) -> f64 {
        ratio(self.identified, self.genuine_probes)
    }

    /// False positive identification rate.
    pub fn fpir(&self) -> f64 {
        ratio(self.false_positives, self.stranger_probes)
    }
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// Embeds every photo of `dir/genuine` (largest face, as at login; no liveness: only
/// the embeddings are compared). Unreadable photos and photos without a usable face are
/// left out.
pub fn embed_people(engine: &FaceEngine, dir: &Path) -> anyhow::Result<Vec<Person>> {
    let options = AnalyzeOptions {
        purpose: Purpose::Identify,
        liveness: false,
    };
    let mut by_identity: BTreeMap<String, Vec<Embedding>> = BTreeMap::new();
    for path in list_files(&dir.join("genuine"))? {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if let Ok(analysis) = engine.analyze_blocking(&bytes, options) {
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
            by_identity
                .entry(identity_of(&file.unwrap_or_default()))
                .or_default()
                .push(analysis.face.embedding);
        }
    }
    Ok(by_identity
        .into_iter()
        .map(|(identity, embeddings)| Person {
            identity,
            embeddings,
        })
        .collect())
}

/// Measures one gallery size at one tolerance over `draws` random galleries (seeded, so
/// runs repeat).
pub fn measure(
    people: &[Person],
    gallery: usize,
    tolerance: f32,
    margin: f32,
    draws: usize,
    seed: u64,
) -> Point {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut point = Point {
        gallery,
        tolerance,
        identified: 0,
        genuine_probes: 0,
        false_positives: 0,
        stranger_probes: 0,
    };
    // N enrolled plus one stranger at a time.
    let gallery = gallery.min(people.len().saturating_sub(1));
    point.gallery = gallery;
    let mut order: Vec<usize> = (0..people.len()).collect();
    // Every person drawn every time: drawing again changes nothing.
    let draws = if gallery + 1 == people.len() {
        1
    } else {
        draws
    };
    let id = |i: usize| Uuid::from_u128(i as u128);
    let against = |members: &[usize], probe: &Embedding| -> MatchOutcome {
        let candidates: Vec<Candidate> = members
            .iter()
            .map(|&i| Candidate {
                user_id: id(i),
                distance: people[i].embeddings[0].distance(probe),
            })
            .collect();
        decide(&candidates, tolerance, margin)
    };
    for _ in 0..draws {
        order.shuffle(&mut rng);
        let drawn = &order[..=gallery];
        for (k, &person) in drawn.iter().enumerate() {
            let others: Vec<usize> = drawn.iter().copied().filter(|&i| i != person).collect();
            for probe in &people[person].embeddings[1..] {
                // Genuine: the first N drawn are the gallery.
                if k < gallery {
                    point.genuine_probes += 1;
                    if matches!(against(&drawn[..gallery], probe),
                        MatchOutcome::Matched { user_id, .. } if user_id == id(person))
                    {
                        point.identified += 1;
                    }
                }
                // Stranger: the N others are the gallery.
                point.stranger_probes += 1;
                if matches!(against(&others, probe), MatchOutcome::Matched { .. }) {
                    point.false_positives += 1;
                }
            }
        }
    }
    point
}

/// Impostor pairs (enrolment of one person, any probe of another) within the tolerance,
/// and all impostor pairs.
pub fn impostor_pairs(people: &[Person], tolerance: f32) -> (usize, usize) {
    let (mut accepted, mut pairs) = (0usize, 0usize);
    for (i, a) in people.iter().enumerate() {
        for (j, b) in people.iter().enumerate() {
            if i == j {
                continue;
            }
            for probe in &b.embeddings[1..] {
                pairs += 1;
                if a.embeddings[0].distance(probe) <= tolerance {
                    accepted += 1;
                }
            }
        }
    }
    (accepted, pairs)
}

/// One-sided 95% upper confidence limit of a rate seen `k` times in `n` trials: the
/// "rule of three" (3/n) when never seen, the Wilson score bound otherwise.
pub fn upper_95(k: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let (k, n) = (k as f64, n as f64);
    if k == 0.0 {
        return (3.0 / n).min(1.0);
    }
    let z = 1.645_f64;
    let p = k / n;
    let centre = p + z * z / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((centre + spread) / (1.0 + z * z / n)).min(1.0)
}

/// Largest gallery with FPIR <= `max_fpir` by the bound `1 - (1 - p)^N`.
pub fn extrapolated_safe_size(p: f64, max_fpir: f64) -> Option<u64> {
    if p <= 0.0 {
        return None;
    }
    Some(((1.0 - max_fpir).ln() / (1.0 - p).ln()).floor() as u64)
}

/// Runs the measurement and prints a Markdown report.
pub fn report(
    people: &[Person],
    sizes: &[usize],
    tolerances: &[f32],
    margin: f32,
    draws: usize,
) -> String {
    let people: Vec<Person> = people
        .iter()
        .filter(|p| !p.embeddings.is_empty())
        .cloned()
        .collect();
    let probes: usize = people.iter().map(|p| p.embeddings.len() - 1).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} people with an enrolment photo, {} genuine probes; margin {margin}; exact search; \
         {draws} random galleries per size below the whole set (seed = size)\n",
        people.len(),
        probes
    );
    let _ = writeln!(
        out,
        "| tolerance | gallery | identification | FPIR (stranger logged in as someone) |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for &tolerance in tolerances {
        for &size in sizes.iter().filter(|&&s| s <= people.len()) {
            let p = measure(&people, size, tolerance, margin, draws, size as u64);
            let _ = writeln!(
                out,
                "| {tolerance} | {size} | {}/{} = {:.1}% | {}/{} = {:.2}% |",
                p.identified,
                p.genuine_probes,
                100.0 * p.identification(),
                p.false_positives,
                p.stranger_probes,
                100.0 * p.fpir()
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| tolerance | impostor pairs accepted | p (95% upper limit) | largest gallery with FPIR <= 1% by 1-(1-p)^N |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for &tolerance in tolerances {
        let (accepted, pairs) = impostor_pairs(&people, tolerance);
        let p = upper_95(accepted, pairs);
        let size =
            extrapolated_safe_size(p, 0.01).map_or_else(|| "-".to_owned(), |n| n.to_string());
        let _ = writeln!(
            out,
            "| {tolerance} | {accepted}/{pairs} = {:.4}% | {:.4}% | {size} |",
            100.0 * ratio(accepted, pairs),
            100.0 * p
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(identity: &str, vectors: &[[f32; 2]]) -> Person {
        Person {
            identity: identity.into(),
            embeddings: vectors
                .iter()
                .map(|v| {
                    let mut e = [0.0; crate::face::embed::DIM];
                    e[..2].copy_from_slice(v);
                    Embedding(e)
                })
                .collect(),
        }
    }

    #[test]
    fn strangers_close_to_someone_count_as_false_positives() {
        // a and b look alike (0.3 apart); c is far from both.
        let people = [
            person("a", &[[0.0, 0.0], [0.1, 0.0]]),
            person("b", &[[0.3, 0.0], [0.35, 0.0]]),
            person("c", &[[5.0, 0.0], [5.1, 0.0]]),
        ];
        // Galleries of 2, with the third person the stranger: all 3 drawn, once.
        let p = measure(&people, 2, 0.6, 0.05, 5, 1);
        assert_eq!(p.gallery, 2);
        assert_eq!((p.genuine_probes, p.stranger_probes), (2, 3));
        // Genuine probes of the two enrolled are all identified: a's probe is 0.1 from a
        // and 0.2 from b (0.1 apart: beyond the margin), b's 0.05 from b.
        assert_eq!(p.identified, 2);
        // As strangers, a's probe is taken for b and b's for a; c's for nobody.
        assert_eq!(p.false_positives, 2);
        assert!((p.fpir() - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn upper_limits() {
        assert!((upper_95(0, 300) - 0.01).abs() < 1e-12);
        let u = upper_95(10, 1000);
        assert!(u > 0.01 && u < 0.02, "{u}");
        assert_eq!(upper_95(0, 0), 1.0);
    }

    #[test]
    fn safe_size_bound() {
        assert_eq!(extrapolated_safe_size(0.0, 0.01), None);
        // 1 - (1 - 1e-4)^100 = 0.00995 <= 1%; at 101: 0.01005.
        assert_eq!(extrapolated_safe_size(1e-4, 0.01), Some(100));
    }
}
