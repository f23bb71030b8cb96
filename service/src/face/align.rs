//! Face alignment the way dlib's recognition network was trained:
//! `get_face_chip_details(shape, 150, 0.25)` then `extract_image_chip`.
//!
//! * A least-squares similarity transform (rotation, uniform scale, translation; the 2-D
//!   closed form of Umeyama's method that dlib's `find_similarity_transform` uses) maps
//!   dlib's mean face (`mean_face_shape_x/y` in `dlib/image_transforms/interpolation.h`,
//!   landmarks 17..67 without the eyebrows 17..26 and the lower lip 55..59, 65..67: 33
//!   points), padded by 0.25 on each side and scaled to 150 px, onto the landmarks.
//! * The chip is the rotated square of side `150 * scale` centred on the transformed chip
//!   centre; chip pixel (0, 0) maps to its top-left corner and (149, 149) to its
//!   bottom-right one, as in dlib.
//! * When that square is more than twice the chip's side, the image is first halved
//!   (a `[1 3 3 1]/8` pyramid, like dlib's `pyramid_down<2>`) until it is not, so bilinear
//!   sampling does not alias. Samples outside the image are black, as in dlib.
//! * Coordinates: landmarks come in face-api's continuous convention (pixel edges on
//!   integers); dlib puts pixel centres on integers, so 0.5 is subtracted first.

use image::RgbImage;

use super::resample::FloatImage;

/// Side of the recognition network's input chip.
pub const CHIP_SIZE: usize = 150;
/// dlib's padding for the recognition chip (`face_recognition`'s default).
pub const CHIP_PADDING: f64 = 0.25;

/// dlib's mean face shape, x, for landmarks 17..=67.
const MEAN_FACE_X: [f64; 51] = [
    0.000213256,
    0.0752622,
    0.18113,
    0.29077,
    0.393397,
    0.586856,
    0.689483,
    0.799124,
    0.904991,
    0.98004,
    0.490127,
    0.490127,
    0.490127,
    0.490127,
    0.36688,
    0.426036,
    0.490127,
    0.554217,
    0.613373,
    0.121737,
    0.187122,
    0.265825,
    0.334606,
    0.260918,
    0.182743,
    0.645647,
    0.714428,
    0.793132,
    0.858516,
    0.79751,
    0.719335,
    0.254149,
    0.340985,
    0.428858,
    0.490127,
    0.551395,
    0.639268,
    0.726104,
    0.642159,
    0.556721,
    0.490127,
    0.423532,
    0.338094,
    0.290379,
    0.428096,
    0.490127,
    0.552157,
    0.689874,
    0.553364,
    0.490127,
    0.42689,
];
/// dlib's mean face shape, y, for landmarks 17..=67.
const MEAN_FACE_Y: [f64; 51] = [
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915,
    0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345,
    0.587326, 0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852,
    0.178758, 0.216423, 0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578, 0.727388,
    0.745405, 0.780233, 0.864805, 0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746,
    0.785343, 0.778746, 0.784792, 0.824182, 0.831803, 0.824182,
];

/// Landmark indices dlib fits (17..=67 without the eyebrows and the lower lip).
fn used_landmarks() -> impl Iterator<Item = usize> {
    (27..=67).filter(|i| !((55..=59).contains(i) || (65..=67).contains(i)))
}

/// The template position of landmark `i` (17..=67) in a chip of `size` with `padding`.
pub fn template_point(i: usize, size: f64, padding: f64) -> [f64; 2] {
    let x = (padding + MEAN_FACE_X[i - 17]) / (2.0 * padding + 1.0);
    let y = (padding + MEAN_FACE_Y[i - 17]) / (2.0 * padding + 1.0);
    [x * size, y * size]
}

/// `p -> [a -b; b a] p + t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// `scale * cos(angle)`.
    pub a: f64,
    /// `scale * sin(angle)`.
    pub b: f64,
    /// Translation.
    pub t: [f64; 2],
}

impl Similarity {
    /// Applies the transform.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.t[0],
            self.b * p[0] + self.a * p[1] + self.t[1],
        ]
    }

    /// The inverse transform (`None` for a degenerate one).
    pub fn inverse(&self) -> Option<Similarity> {
        let d = self.a * self.a + self.b * self.b;
        if d <= f64::EPSILON {
            return None;
        }
        let (a, b) = (self.a / d, -self.b / d);
        let t = [
            -(a * self.t[0] - b * self.t[1]),
            -(b * self.t[0] + a * self.t[1]),
        ];
        Some(Similarity { a, b, t })
    }

    /// Uniform scale factor.
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    /// Rotation in radians.
    pub fn angle(&self) -> f64 {
        self.b.atan2(self.a)
    }
}

/// Least-squares similarity mapping `from[i]` onto `to[i]`.
pub fn fit_similarity(from: &[[f64; 2]], to: &[[f64; 2]]) -> Option<Similarity> {
    let n = from.len().min(to.len());
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let mut mf = [0.0; 2];
    let mut mt = [0.0; 2];
    for i in 0..n {
        for k in 0..2 {
            mf[k] += from[i][k] / nf;
            mt[k] += to[i][k] / nf;
        }
    }
    let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let p = [from[i][0] - mf[0], from[i][1] - mf[1]];
        let q = [to[i][0] - mt[0], to[i][1] - mt[1]];
        dot += p[0] * q[0] + p[1] * q[1];
        cross += p[0] * q[1] - p[1] * q[0];
        norm += p[0] * p[0] + p[1] * p[1];
    }
    if norm <= f64::EPSILON || !dot.is_finite() || !cross.is_finite() {
        return None;
    }
    let (a, b) = (dot / norm, cross / norm);
    let t = [
        mt[0] - (a * mf[0] - b * mf[1]),
        mt[1] - (b * mf[0] + a * mf[1]),
    ];
    Some(Similarity { a, b, t })
}

/// Where the chip lies in the image (dlib's `chip_details`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChipDetails {
    /// Chip-to-image transform fitted on the landmarks (dlib pixel-centre coordinates).
    pub transform: Similarity,
    /// Centre of the chip's square in the image.
    pub center: [f64; 2],
    /// Side of the square in image pixels (`size * scale`).
    pub side: f64,
    /// Rotation in radians.
    pub angle: f64,
    /// Chip side in pixels.
    pub size: usize,
}

/// `get_face_chip_details(landmarks, size, padding)`; `None` for fewer than 68 points or
/// a degenerate shape.
pub fn chip_details(landmarks: &[[f32; 2]], size: usize, padding: f64) -> Option<ChipDetails> {
    if landmarks.len() < 68 {
        return None;
    }
    let s = size as f64;
    let (from, to): (Vec<[f64; 2]>, Vec<[f64; 2]>) = used_landmarks()
        .map(|i| {
            let p = landmarks[i];
            (
                template_point(i, s, padding),
                [f64::from(p[0]) - 0.5, f64::from(p[1]) - 0.5],
            )
        })
        .unzip();
    let transform = fit_similarity(&from, &to)?;
    let scale = transform.scale();
    if !(scale.is_finite() && scale > 1e-6) {
        return None;
    }
    Some(ChipDetails {
        transform,
        center: transform.apply([s / 2.0, s / 2.0]),
        side: s * scale,
        angle: transform.angle(),
        size,
    })
}

/// An aligned chip: `size x size` RGB, values 0..255 (rounded, as dlib's 8-bit chip).
#[derive(Debug, Clone)]
pub struct Chip {
    /// Side in pixels.
    pub size: usize,
    /// Interleaved RGB samples.
    pub data: Vec<f32>,
}

impl Chip {
    /// Planar `[3, size, size]` copy for a network input.
    pub fn to_planar(&self) -> Vec<f32> {
        let plane = self.size * self.size;
        let mut out = vec![0.0f32; 3 * plane];
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            out[i] = px[0];
            out[plane + i] = px[1];
            out[2 * plane + i] = px[2];
        }
        out
    }

    /// Luma (BT.601) per pixel.
    pub fn luma(&self) -> Vec<f32> {
        self.data
            .chunks_exact(3)
            .map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
            .collect()
    }
}

/// dlib's `extract_image_chip(img, details, chip)` with bilinear interpolation.
pub fn extract_chip(img: &RgbImage, d: &ChipDetails) -> Chip {
    let size = d.size;
    let (cos, sin) = (d.angle.cos(), d.angle.sin());
    let half = d.side / 2.0;
    // Bounding box of the rotated square, with a margin for the pyramid filters.
    let ext = half * (cos.abs() + sin.abs()) + 4.0;
    let x0 = (d.center[0] - ext).floor() as i64;
    let y0 = (d.center[1] - ext).floor() as i64;
    let x1 = (d.center[0] + ext).ceil() as i64 + 1;
    let y1 = (d.center[1] + ext).ceil() as i64 + 1;
    let cx0 = x0.clamp(0, i64::from(img.width()));
    let cy0 = y0.clamp(0, i64::from(img.height()));
    let mut level = FloatImage::from_region(img, x0, y0, x1, y1, 1);
    // image coordinate p maps to level coordinate (p - origin) * factor + offset
    let mut factor = 1.0f64;
    let mut offset = 0.0f64;
    let mut side = d.side;
    while side > 2.0 * size as f64 && level.width >= 4 && level.height >= 4 {
        level = level.pyramid_down();
        // pixel i of the new level is centred on 2i + 0.5 of the old one
        factor *= 0.5;
        offset = (offset - 0.5) * 0.5;
        side *= 0.5;
    }
    let step = if size > 1 {
        d.side / (size - 1) as f64
    } else {
        0.0
    };
    let mut data = vec![0.0f32; size * size * 3];
    for r in 0..size {
        let v = r as f64 * step - half;
        for c in 0..size {
            let u = c as f64 * step - half;
            let ix = d.center[0] + cos * u - sin * v;
            let iy = d.center[1] + sin * u + cos * v;
            let lx = (ix - cx0 as f64) * factor + offset;
            let ly = (iy - cy0 as f64) * factor + offset;
            if let Some(p) = level.bilinear_strict(lx as f32, ly as f32) {
                let o = (r * size + c) * 3;
                data[o] = round_sample(p[0]);
                data[o + 1] = round_sample(p[1]);
                data[o + 2] = round_sample(p[2]);
            }
        }
    }
    Chip { size, data }
}

/// `v.round().clamp(0.0, 255.0)` (dlib stores chips as 8-bit pixels), exactly, but
/// without the libm `roundf` call the portable x86-64 baseline compiles `round` into:
/// for the non-negative values left after the clamp, truncation plus a comparison of
/// the (exact) fraction rounds half away from zero.
#[inline]
fn round_sample(v: f32) -> f32 {
    let v = v.clamp(0.0, 255.0);
    let whole = v as u32 as f32;
    if v - whole >= 0.5 { whole + 1.0 } else { whole }
}

/// Maps image points into chip pixel coordinates (for pose measurements).
pub fn to_chip(d: &ChipDetails, points: &[[f32; 2]]) -> Vec<[f32; 2]> {
    let (cos, sin) = (d.angle.cos(), d.angle.sin());
    let half = d.side / 2.0;
    let step = if d.size > 1 {
        d.side / (d.size - 1) as f64
    } else {
        1.0
    };
    points
        .iter()
        .map(|p| {
            let dx = f64::from(p[0]) - 0.5 - d.center[0];
            let dy = f64::from(p[1]) - 0.5 - d.center[1];
            let u = cos * dx + sin * dy;
            let v = -sin * dx + cos * dy;
            [((u + half) / step) as f32, ((v + half) / step) as f32]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_rounding_matches_round_then_clamp() {
        let mut v = -3.0f32;
        while v < 260.0 {
            for x in [v, v + 0.5, v + 0.499_999_97, v - f32::EPSILON] {
                assert_eq!(round_sample(x), x.round().clamp(0.0, 255.0), "{x}");
            }
            v += 0.125;
        }
    }

    fn template_shape(size: f64, padding: f64) -> Vec<[f32; 2]> {
        let mut pts = vec![[0.0f32; 2]; 68];
        for (i, p) in pts.iter_mut().enumerate().skip(17) {
            let t = template_point(i, size, padding);
            *p = [t[0] as f32, t[1] as f32];
        }
        pts
    }

    #[test]
    fn similarity_fit_recovers_a_known_transform() {
        let truth = Similarity {
            a: 1.7 * 0.3f64.cos(),
            b: 1.7 * 0.3f64.sin(),
            t: [12.0, -4.0],
        };
        let from: Vec<[f64; 2]> = (0..10)
            .map(|i| [f64::from(i) * 3.0, f64::from(i * i) * 0.5])
            .collect();
        let to: Vec<[f64; 2]> = from.iter().map(|p| truth.apply(*p)).collect();
        let fit = fit_similarity(&from, &to).unwrap();
        assert!((fit.a - truth.a).abs() < 1e-9 && (fit.b - truth.b).abs() < 1e-9);
        assert!((fit.t[0] - truth.t[0]).abs() < 1e-9);
        let inv = fit.inverse().unwrap();
        let back = inv.apply(fit.apply([5.0, 7.0]));
        assert!((back[0] - 5.0).abs() < 1e-9 && (back[1] - 7.0).abs() < 1e-9);
    }

    #[test]
    fn chip_of_a_template_face_is_the_identity() {
        // landmarks exactly on the template of a 150 chip (+0.5: face-api coordinates)
        let pts: Vec<[f32; 2]> = template_shape(150.0, 0.25)
            .into_iter()
            .map(|p| [p[0] + 0.5, p[1] + 0.5])
            .collect();
        let d = chip_details(&pts, 150, 0.25).unwrap();
        assert!((d.transform.scale() - 1.0).abs() < 1e-6);
        assert!(d.angle.abs() < 1e-6);
        assert!((d.center[0] - 75.0).abs() < 1e-4 && (d.center[1] - 75.0).abs() < 1e-4);
        let back = to_chip(&d, &pts[30..31]);
        let t = template_point(30, 150.0, 0.25);
        assert!((f64::from(back[0][0]) - t[0]).abs() < 0.6);
    }

    #[test]
    fn rotated_and_scaled_face_is_undone() {
        // a face twice the chip size, rotated by 0.5 rad, in a 600x600 image
        let tf = Similarity {
            a: 2.0 * 0.5f64.cos(),
            b: 2.0 * 0.5f64.sin(),
            t: [200.0, 100.0],
        };
        let pts: Vec<[f32; 2]> = template_shape(150.0, 0.25)
            .into_iter()
            .map(|p| {
                let q = tf.apply([f64::from(p[0]), f64::from(p[1])]);
                [q[0] as f32 + 0.5, q[1] as f32 + 0.5]
            })
            .collect();
        let d = chip_details(&pts, 150, 0.25).unwrap();
        assert!((d.angle - 0.5).abs() < 1e-6);
        assert!((d.side - 300.0).abs() < 1e-3);
        // a bright dot where the nose tip (landmark 30) lands must be bright in the chip
        let nose = pts[30];
        let img = RgbImage::from_fn(600, 600, |x, y| {
            let dx = x as f32 - (nose[0] - 0.5);
            let dy = y as f32 - (nose[1] - 0.5);
            if dx * dx + dy * dy < 36.0 {
                image::Rgb([255, 255, 255])
            } else {
                image::Rgb([0, 0, 0])
            }
        });
        let chip = extract_chip(&img, &d);
        let t = template_point(30, 150.0, 0.25);
        let (c, r) = (t[0].round() as usize, t[1].round() as usize);
        assert!(chip.data[(r * 150 + c) * 3] > 200.0);
        assert!(chip.data[(10 * 150 + 10) * 3] < 1.0);
    }
}
