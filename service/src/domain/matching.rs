//! Deciding who a probe face belongs to, from the nearest stored templates.
//!
//! Distances are Euclidean between 128-d embeddings of the dlib-derived network, so the
//! tolerance keeps face_recognition's meaning (0.6: lower is stricter).
//!
//! 1:N identification must not let a large gallery raise false accepts unnoticed: the
//! more people enrolled, the likelier some stranger falls under the tolerance. A probe
//! is therefore refused as *ambiguous* when the nearest template of a *different* user
//! is within `margin` of the best one: such a probe does not single out one person.
//! For a gallery of N people with an impostor-accept rate p at the tolerance, the chance
//! that an unenrolled face matches someone is about 1 - (1 - p)^N; operators of large
//! tenants should lower the tolerance (or use 1:1 login with a username) as N grows.

use uuid::Uuid;

/// One stored template near the probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// The template's owner.
    pub user_id: Uuid,
    /// Euclidean distance to the probe.
    pub distance: f32,
}

/// Result of a match decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MatchOutcome {
    /// The probe is this user.
    Matched {
        /// Who.
        user_id: Uuid,
        /// Distance of the nearest template.
        distance: f32,
        /// See [`confidence_score`].
        confidence: f32,
    },
    /// Nobody within the tolerance (or no templates at all).
    NoMatch {
        /// Nearest distance seen, if any.
        best_distance: Option<f32>,
    },
    /// Two different users both lie within the tolerance and within `margin` of each other.
    Ambiguous {
        /// Nearest distance.
        best_distance: f32,
        /// Nearest distance of another user.
        runner_up_distance: f32,
    },
}

/// The `confidence_score` of a login: `1 − distance`, clamped to [0, 1].
///
/// It is the original service's formula applied to the Euclidean distance: 1.0 for an
/// identical template, 0.4 for the least similar match accepted at the default
/// tolerance 0.6. It is a presentation of the distance, not a probability.
pub fn confidence_score(distance: f32) -> f32 {
    (1.0 - distance).clamp(0.0, 1.0)
}

/// Decides the owner of a probe from its nearest templates (any order, several per user
/// allowed).
pub fn decide(candidates: &[Candidate], tolerance: f32, margin: f32) -> MatchOutcome {
    // Nearest template per user.
    let mut per_user: Vec<Candidate> = Vec::with_capacity(candidates.len());
    for c in candidates.iter().filter(|c| c.distance.is_finite()) {
        match per_user.iter_mut().find(|p| p.user_id == c.user_id) {
            Some(p) if c.distance < p.distance => p.distance = c.distance,
            Some(_) => {}
            None => per_user.push(*c),
        }
    }
    per_user.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    let Some(best) = per_user.first().copied() else {
        return MatchOutcome::NoMatch {
            best_distance: None,
        };
    };
    if best.distance > tolerance {
        return MatchOutcome::NoMatch {
            best_distance: Some(best.distance),
        };
    }
    if let Some(runner_up) = per_user.get(1)
        && runner_up.distance <= tolerance
        && runner_up.distance - best.distance < margin
    {
        return MatchOutcome::Ambiguous {
            best_distance: best.distance,
            runner_up_distance: runner_up.distance,
        };
    }
    MatchOutcome::Matched {
        user_id: best.user_id,
        distance: best.distance,
        confidence: confidence_score(best.distance),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(user: u128, distance: f32) -> Candidate {
        Candidate {
            user_id: Uuid::from_u128(user),
            distance,
        }
    }

    #[test]
    fn nearest_user_within_tolerance_matches() {
        let out = decide(&[c(2, 0.55), c(1, 0.35), c(1, 0.30)], 0.6, 0.05);
        assert_eq!(
            out,
            MatchOutcome::Matched {
                user_id: Uuid::from_u128(1),
                distance: 0.30,
                confidence: 0.7
            }
        );
    }

    #[test]
    fn nothing_within_tolerance_is_no_match() {
        assert_eq!(
            decide(&[c(1, 0.7)], 0.6, 0.05),
            MatchOutcome::NoMatch {
                best_distance: Some(0.7)
            }
        );
        assert_eq!(
            decide(&[], 0.6, 0.05),
            MatchOutcome::NoMatch {
                best_distance: None
            }
        );
    }

    #[test]
    fn close_runner_up_of_another_user_is_ambiguous() {
        assert!(matches!(
            decide(&[c(1, 0.40), c(2, 0.42)], 0.6, 0.05),
            MatchOutcome::Ambiguous { .. }
        ));
        // Several templates of the same user are not ambiguity.
        assert!(matches!(
            decide(&[c(1, 0.40), c(1, 0.41)], 0.6, 0.05),
            MatchOutcome::Matched { .. }
        ));
        // A runner-up beyond the tolerance is not a rival.
        assert!(matches!(
            decide(&[c(1, 0.58), c(2, 0.61)], 0.6, 0.05),
            MatchOutcome::Matched { .. }
        ));
    }

    #[test]
    fn confidence_is_clamped() {
        assert_eq!(confidence_score(0.0), 1.0);
        assert_eq!(confidence_score(1.3), 0.0);
    }
}
