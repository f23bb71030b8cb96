//! Measured limits of face recognition, shared by the service (which enforces them) and
//! the operator (which reports them in the tenant's status).
//!
//! **Face-only login and gallery size.** A face-only (1:N) login compares a stranger's
//! face with everyone enrolled, so the more people a tenant enrols, the likelier some
//! stranger is taken for somebody. [`safe_face_only_gallery`] is the largest number of
//! enrolled people at which face-only login keeps the false positive identification rate
//! (FPIR, a stranger logged in as someone) at or below [`MAX_FPIR`], measured with
//! `faceid identify-eval` on 823 LFW photos of 250 people (docs/FACE_ENGINE.md,
//! "1:N identification"). Past it the service asks for the username (1:1) unless the
//! tenant explicitly accepts the risk.

/// The false positive identification rate face-only login is sized for: 1 stranger in 100.
pub const MAX_FPIR: f64 = 0.01;

/// `(tolerance, largest safe gallery)`, strictest tolerance first. A tolerance between two
/// rows takes the row of the looser one, so the size is never more than measured.
///
/// Each size is the largest N with `1 - (1 - p)^N <= MAX_FPIR`, p being the one-sided 95%
/// upper confidence limit of the impostor-pair acceptance rate at that tolerance on the
/// LFW set (133,464 pairs: 757 accepted at 0.6, 138 at 0.55, 13 at 0.5, none at 0.45 or
/// 0.4, where the limit is the rule of three and so the sample's size decides). The FPIR
/// measured directly on galleries of 2 to 249 people agrees: at 0.6 it is 0.76% with 2
/// people and 6% with 10; at 0.5, 0.76% with 100 and 1.68% with 249.
pub const SAFE_FACE_ONLY_GALLERY: &[(f32, u64)] =
    &[(0.40, 447), (0.45, 447), (0.50, 65), (0.55, 8), (0.60, 1)];

/// Largest gallery (active users) at which face-only login is safe at `tolerance`:
/// [`SAFE_FACE_ONLY_GALLERY`], rounded to the looser measured tolerance. A tolerance
/// looser than every row (or not a number) gets 0: face-only login is never safe there.
pub fn safe_face_only_gallery(tolerance: f32) -> u64 {
    SAFE_FACE_ONLY_GALLERY
        .iter()
        .find(|(measured, _)| tolerance <= *measured + 1e-6)
        .map_or(0, |&(_, size)| size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_strictest_first_and_shrink() {
        for pair in SAFE_FACE_ONLY_GALLERY.windows(2) {
            assert!(pair[0].0 < pair[1].0 && pair[0].1 >= pair[1].1, "{pair:?}");
        }
    }

    #[test]
    fn a_tolerance_takes_the_looser_measured_row() {
        let (t, size) = SAFE_FACE_ONLY_GALLERY[1];
        assert_eq!(safe_face_only_gallery(t), size);
        // Slightly looser than row 1: row 2's smaller size.
        assert_eq!(
            safe_face_only_gallery(t + 0.01),
            SAFE_FACE_ONLY_GALLERY[2].1
        );
        // Stricter than every row: the first row.
        assert_eq!(safe_face_only_gallery(0.1), SAFE_FACE_ONLY_GALLERY[0].1);
        // Looser than every row, or nonsense: never safe.
        assert_eq!(safe_face_only_gallery(0.9), 0);
        assert_eq!(safe_face_only_gallery(f32::NAN), 0);
    }
}
