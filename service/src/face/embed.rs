//! The 128-d face embedding of dlib's ResNet (`dlib_face_recognition_resnet_model_v1`,
//! as ported by face-api). The network takes the aligned 150x150 chip, RGB 0..255, and
//! normalises it itself; its output is used as is (not re-normalised), so distances keep
//! the meaning of `face_recognition.face_distance`: Euclidean, same person below 0.6.

use serde::Serialize;

/// Embedding dimension.
pub const DIM: usize = 128;

/// A 128-d face embedding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Embedding(pub [f32; DIM]);

impl Embedding {
    /// Euclidean distance, the metric the network was trained for.
    pub fn distance(&self, other: &Embedding) -> f32 {
        self.0
            .iter()
            .zip(other.0.iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt()
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Euclidean norm.
    pub fn norm(&self) -> f32 {
        self.0.iter().map(|v| v * v).sum::<f32>().sqrt()
    }

    /// From a slice of exactly 128 finite values.
    pub fn from_slice(values: &[f32]) -> Option<Embedding> {
        let arr: [f32; DIM] = values.try_into().ok()?;
        arr.iter().all(|v| v.is_finite()).then_some(Embedding(arr))
    }
}

impl Serialize for Embedding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.as_slice().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_euclidean() {
        let a = Embedding([0.0; DIM]);
        let mut b = [0.0; DIM];
        b[0] = 3.0;
        b[5] = 4.0;
        let b = Embedding(b);
        assert_eq!(a.distance(&b), 5.0);
        assert_eq!(b.norm(), 5.0);
        assert!(Embedding::from_slice(&[0.0; 127]).is_none());
        assert!(Embedding::from_slice(&[f32::NAN; 128]).is_none());
        assert_eq!(serde_json::to_string(&a).unwrap().matches(',').count(), 127);
    }
}
