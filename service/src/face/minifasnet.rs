//! MiniFASNet (Silent-Face-Anti-Spoofing) inputs: upstream's `CropImage` box and OpenCV's
//! `INTER_LINEAR` resize, reproduced exactly because the networks were trained on them
//! (`models/README.md`, "Pre-processing").
//!
//! The service's own resampler is deliberately not used here: its box pre-filter when
//! shrinking is not what the networks saw in training and was measured to push live
//! captures towards "spoof" (`sfas_live_2` 0.41 -> 0.09).

use image::RgbImage;

use super::BoundingBox;

/// Side of both networks' square input.
pub const INPUT: usize = 80;
/// MiniFASNetV2's crop: 2.7 times the face box (`2.7_80x80_MiniFASNetV2.pth`).
pub const V2_SCALE: f32 = 2.7;
/// MiniFASNetV1SE's crop: 4.0 times the face box (`4_0_0_80x80_MiniFASNetV1SE.pth`).
pub const V1SE_SCALE: f32 = 4.0;
/// Index of the "real face" class in the networks' `prob` output.
pub const REAL_CLASS: usize = 1;

/// A crop in pixels, bounds inclusive (`img[y1..=y2, x1..=x2]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// Left column.
    pub x1: u32,
    /// Top row.
    pub y1: u32,
    /// Right column (inclusive).
    pub x2: u32,
    /// Bottom row (inclusive).
    pub y2: u32,
}

/// How many face boxes fit in the frame along its tighter axis: `min((W-1)/w, (H-1)/h)`,
/// the cap upstream puts on the crop scale. About 1 when the face fills the frame.
pub fn context(width: u32, height: u32, bbox: &BoundingBox) -> f32 {
    let (w, h) = (bbox.width.max(1.0), bbox.height.max(1.0));
    ((width.max(1) - 1) as f32 / w).min((height.max(1) - 1) as f32 / h)
}

/// Upstream's `CropImage._get_new_box`: the face box scaled by `scale` about its centre
/// (capped so it fits the image less one pixel, not made square), shifted back inside the
/// image, truncated to integers.
pub fn crop_box(width: u32, height: u32, bbox: &BoundingBox, scale: f32) -> CropBox {
    let (w, h) = (bbox.width.max(1.0), bbox.height.max(1.0));
    let (max_x, max_y) = ((width.max(1) - 1) as f32, (height.max(1) - 1) as f32);
    let s = scale.min(max_y / h).min(max_x / w);
    let (cx, cy) = (bbox.x + w / 2.0, bbox.y + h / 2.0);
    let (x1, x2) = shift_inside(cx - s * w / 2.0, cx + s * w / 2.0, max_x);
    let (y1, y2) = shift_inside(cy - s * h / 2.0, cy + s * h / 2.0, max_y);
    // `as u32` truncates like Python's int() on these non-negative values; the clamp
    // only guards against float rounding at the edges
    let px = |v: f32, max: f32| v.clamp(0.0, max) as u32;
    CropBox {
        x1: px(x1, max_x),
        y1: px(y1, max_y),
        x2: px(x2, max_x),
        y2: px(y2, max_y),
    }
}

/// Moves `[lo, hi]` right until `lo >= 0`, then left until `hi <= max` (upstream's order).
fn shift_inside(mut lo: f32, mut hi: f32, max: f32) -> (f32, f32) {
    if lo < 0.0 {
        hi -= lo;
        lo = 0.0;
    }
    if hi > max {
        lo -= hi - max;
        hi = max;
    }
    (lo, hi)
}

/// One output sample's two source taps: `(lo, hi, weight of hi)`.
pub type Tap = (usize, usize, f32);

/// OpenCV `INTER_LINEAR` taps from `n_in` samples to `n_out`: the source position
/// `(dst + 0.5) * n_in / n_out - 0.5`, clamped to the edge samples, with no
/// anti-aliasing however much it shrinks.
pub fn linear_taps(n_in: usize, n_out: usize) -> Vec<Tap> {
    let last = n_in.saturating_sub(1);
    let ratio = n_in as f64 / n_out.max(1) as f64;
    (0..n_out)
        .map(|d| {
            let s = ((d as f64 + 0.5) * ratio - 0.5).clamp(0.0, last as f64);
            let lo = s.floor() as usize;
            (lo, (lo + 1).min(last), (s - lo as f64) as f32)
        })
        .collect()
}

/// The network input `[3, 80, 80]` for `crop`: resized with [`linear_taps`], rounded to
/// 8 bits as `cv2.resize` returns it, channels in BGR order, values 0..255.
pub fn network_input(img: &RgbImage, crop: CropBox) -> Vec<f32> {
    let xs = linear_taps((crop.x2 - crop.x1 + 1) as usize, INPUT);
    let ys = linear_taps((crop.y2 - crop.y1 + 1) as usize, INPUT);
    let plane = INPUT * INPUT;
    let mut out = vec![0.0f32; 3 * plane];
    let px = |x: usize, y: usize| img.get_pixel(crop.x1 + x as u32, crop.y1 + y as u32).0;
    for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
        for (ox, &(x0, x1, fx)) in xs.iter().enumerate() {
            let (a, b, c, d) = (px(x0, y0), px(x1, y0), px(x0, y1), px(x1, y1));
            for ch in 0..3 {
                let top = f32::from(a[ch]) * (1.0 - fx) + f32::from(b[ch]) * fx;
                let bottom = f32::from(c[ch]) * (1.0 - fx) + f32::from(d[ch]) * fx;
                let v = (top * (1.0 - fy) + bottom * fy + 0.5)
                    .floor()
                    .clamp(0.0, 255.0);
                // RGB channel `ch` goes to BGR plane `2 - ch`
                out[(2 - ch) * plane + oy * INPUT + ox] = v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bbox(x: f32, y: f32, width: f32, height: f32) -> BoundingBox {
        BoundingBox {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn taps_match_opencv_by_hand() {
        // 4 -> 2: src = (d + 0.5) * 2 - 0.5 = 0.5, 2.5
        assert_eq!(linear_taps(4, 2), vec![(0, 1, 0.5), (2, 3, 0.5)]);
        // 2 -> 4: src = (d + 0.5) * 0.5 - 0.5 = -0.25 (clamped), 0.25, 0.75, 1.25 (clamped)
        assert_eq!(
            linear_taps(2, 4),
            vec![(0, 1, 0.0), (0, 1, 0.25), (0, 1, 0.75), (1, 1, 0.0)]
        );
        // 6.75x shrink: plain taps, no pre-filter (src = 0.5 * 540 / 80 - 0.5 = 2.875)
        let t = linear_taps(540, 80);
        assert_eq!((t[0].0, t[0].1), (2, 3));
        assert!((t[0].2 - 0.875).abs() < 1e-6);
    }

    #[test]
    fn resize_of_a_tiny_image_matches_hand_values() {
        // a 4x2 image, red = 0, 40, 80, 120 along x (row 0), +100 on row 1; green = 7
        let img = RgbImage::from_fn(4, 2, |x, y| image::Rgb([(40 * x + 100 * y) as u8, 7, 200]));
        let crop = CropBox {
            x1: 0,
            y1: 0,
            x2: 3,
            y2: 1,
        };
        let out = network_input(&img, crop);
        let plane = INPUT * INPUT;
        let (red, green, blue) = (&out[2 * plane..], &out[plane..2 * plane], &out[..plane]);
        // x: src = (d + 0.5) * 4 / 80 - 0.5 = 0.05 d - 0.475, clamped at 0 up to d = 9;
        // y: src = (d + 0.5) * 2 / 80 - 0.5, clamped at 0 up to d = 19, at 1 from d = 60
        assert_eq!(red[0], 0.0);
        // d = 10: src = 0.025 -> 40 * 0.025 = 1.0
        assert_eq!(red[10], 1.0);
        // d = 79 in x: src = 3.475 clamped to 3 -> 120; row 79: src 1.4875 clamped -> +100
        assert_eq!(red[79 * INPUT + 79], 220.0);
        // d = 40 in x: src = 1.525 -> 40 + 0.525 * 40 = 61; row 40: src 0.5125 -> +51.25
        // -> 112.25, rounded to 112
        assert_eq!(red[40 * INPUT + 40], 112.0);
        assert!(green.iter().all(|&v| v == 7.0));
        assert!(blue.iter().all(|&v| v == 200.0), "BGR order: blue first");
    }

    #[test]
    fn crop_box_follows_upstream() {
        // room for the full 2.7x crop: 2.7 * 100 = 270 wide, 2.7 * 120 = 324 high,
        // centred on (250, 260)
        let c = crop_box(1000, 800, &bbox(200.0, 200.0, 100.0, 120.0), 2.7);
        assert_eq!(
            c,
            CropBox {
                x1: 115,
                y1: 98,
                x2: 385,
                y2: 422
            }
        );
        // near the top-left corner: shifted right and down, size kept
        let c = crop_box(1000, 800, &bbox(10.0, 20.0, 100.0, 100.0), 2.7);
        assert_eq!((c.x1, c.y1, c.x2, c.y2), (0, 0, 270, 270));
        // near the bottom-right corner: shifted left and up to end at W-1, H-1
        let c = crop_box(640, 480, &bbox(560.0, 400.0, 70.0, 70.0), 4.0);
        assert_eq!((c.x1, c.y1, c.x2, c.y2), (359, 199, 639, 479));
    }

    #[test]
    fn a_face_filling_the_frame_gets_the_whole_frame() {
        // a 150x150 tight crop: the scale is capped at 149/140, the crop is the image
        let b = bbox(5.0, 10.0, 140.0, 138.0);
        assert!((context(150, 150, &b) - 149.0 / 140.0).abs() < 1e-6);
        let c = crop_box(150, 150, &b, 4.0);
        assert_eq!((c.x1, c.x2), (0, 149));
        assert!(c.y2 - c.y1 >= 145, "{c:?}");
    }
}
