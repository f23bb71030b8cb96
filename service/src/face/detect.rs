//! Face detection with face-api's tiny face detector (a tiny-YOLOv2 with depthwise
//! separable convolutions, one class, five anchors, stride 32).
//!
//! Pre-processing follows face-api (`NetInput.toBatchTensor(inputSize, false)`): the image
//! is scaled so that its long side equals the input size and placed at the top-left, the
//! rest is black. Unlike face-api the padded input is not forced square: each side is
//! rounded up to a multiple of 32 (the network is fully convolutional), which saves up
//! to 40% of the work on a 16:9 photo with identical boxes. Nor is a photo smaller than
//! the input scaled up to it ([`input_long_side`]). The network normalises (mean RGB,
//! /255) itself.
//!
//! Post-processing is `TinyYolov2Base.extractBoxes`: per cell and anchor, score =
//! sigmoid(t_o), centre = (cell + sigmoid(t_x, t_y)) * 32, size = exp(t_w, t_h) * anchor
//! * 32, score threshold 0.5, then greedy non-maximum suppression at IoU 0.4.

use image::RgbImage;

use super::BoundingBox;
use super::resample::{Placement, resample_planar};

/// Anchors (width, height) in grid cells, from face-api `tinyFaceDetector/const.ts`.
pub const ANCHORS: [(f32, f32); 5] = [
    (1.603_231, 2.094_468),
    (6.041_143, 7.080_126),
    (2.882_459, 3.518_061),
    (4.266_906, 5.178_857),
    (9.041_765, 10.663_08),
];
/// Pixels per grid cell.
pub const STRIDE: usize = 32;
/// face-api's default minimum detection score.
pub const SCORE_THRESHOLD: f32 = 0.5;
/// face-api's IoU threshold for the tiny face detector.
pub const IOU_THRESHOLD: f32 = 0.4;

/// When nothing is found, the image is searched again inside a border of the image's
/// mean colour, of these fractions of its long side, until a face is found. A photo
/// cropped tightly to the face (the 150x150 crops in `../shared/faces`) gives the
/// detector no context otherwise. With these two borders every face photo there is
/// found and still no face in `noface/`; the fractions were chosen on that set (a 0.25
/// border alone misses 8 of the 32 crops, 1.0 finds a dog's face in `noface/dogs.jpg`).
pub const RETRY_BORDERS: [f32; 2] = [0.5, 0.6];

/// The detector input's long side for the bordered retries (capped by the variant's). The
/// face they look for spans about half of the bordered image, 160 px at this size, well
/// inside the detector's range; at 416 each retry cost 2.6x more and found the same faces
/// on `../shared/faces` (every genuine photo, nothing in `noface/`).
pub const RETRY_INPUT: usize = 320;

/// Detector variant: the long side of the detector input, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
pub enum DetectionModel {
    /// 224 px: fastest; faces should be at least a fifth of the image.
    #[value(name = "tiny-224")]
    #[serde(rename = "tiny-224")]
    Tiny224,
    /// 320 px.
    #[value(name = "tiny-320")]
    #[serde(rename = "tiny-320")]
    Tiny320,
    /// 416 px: face-api's default (also accepted as `hog`, the original's default).
    #[value(name = "tiny-416", alias = "hog")]
    #[serde(rename = "tiny-416")]
    Tiny416,
    /// 512 px.
    #[value(name = "tiny-512")]
    #[serde(rename = "tiny-512")]
    Tiny512,
    /// 608 px: finds the smallest faces (also accepted as `cnn`).
    #[value(name = "tiny-608", alias = "cnn")]
    #[serde(rename = "tiny-608")]
    Tiny608,
}

impl DetectionModel {
    /// Long side of the network input.
    pub fn input_size(self) -> usize {
        match self {
            DetectionModel::Tiny224 => 224,
            DetectionModel::Tiny320 => 320,
            DetectionModel::Tiny416 => 416,
            DetectionModel::Tiny512 => 512,
            DetectionModel::Tiny608 => 608,
        }
    }

    /// The name used in settings (`tiny-416`).
    pub fn name(self) -> &'static str {
        match self {
            DetectionModel::Tiny224 => "tiny-224",
            DetectionModel::Tiny320 => "tiny-320",
            DetectionModel::Tiny416 => "tiny-416",
            DetectionModel::Tiny512 => "tiny-512",
            DetectionModel::Tiny608 => "tiny-608",
        }
    }
}

/// The smallest detector input used for any image (the smallest variant's).
pub const MIN_INPUT: usize = 224;

/// The detector input's long side for an image of `width x height`: the variant's, but
/// no larger than the image's own long side rounded up to the stride (and never below
/// [`MIN_INPUT`]). Upscaling a photo smaller than the input adds no detail: the smallest
/// face the service accepts ([`super::quality::MIN_FACE_PX`], 40 px) already spans more
/// than a grid cell at the photo's own scale, while the upscaled input costs the
/// detector up to 2.6x the work (a 250x250 photo at 416 instead of 256) and the
/// resampling on top.
pub fn input_long_side(width: u32, height: u32, model: DetectionModel) -> usize {
    let own = (width.max(height) as usize).div_ceil(STRIDE) * STRIDE;
    model.input_size().min(own).max(MIN_INPUT)
}

/// One detected face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Box in image pixels.
    pub bbox: BoundingBox,
    /// Confidence in `(0, 1)`.
    pub score: f32,
}

/// A prepared detector input.
#[derive(Debug, Clone)]
pub struct DetectorInput {
    /// `[1, 3, height, width]`, RGB 0..255.
    pub tensor: Vec<f32>,
    /// Tensor width (a multiple of 32).
    pub width: usize,
    /// Tensor height (a multiple of 32).
    pub height: usize,
    /// Tensor pixels per image pixel.
    pub scale: f32,
}

/// The scaled image size (`sw x sh`, at least 1x1) and the tensor size (each side rounded
/// up to the stride) for a `width x height` image scaled to `long_side`.
pub fn input_size(width: u32, height: u32, long_side: usize) -> ([f32; 2], [usize; 2]) {
    let (w, h) = (width as f32, height as f32);
    let scale = long_side as f32 / w.max(h);
    let sw = (w * scale).round().max(1.0);
    let sh = (h * scale).round().max(1.0);
    let tensor = [
        (sw as usize).div_ceil(STRIDE) * STRIDE,
        (sh as usize).div_ceil(STRIDE) * STRIDE,
    ];
    ([sw, sh], tensor)
}

/// Scales `img` for the detector (see the module docs).
pub fn prepare(img: &RgbImage, long_side: usize) -> DetectorInput {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let ([sw, sh], [width, height]) = input_size(img.width(), img.height(), long_side);
    let mut tensor = vec![0.0f32; 3 * width * height];
    resample_planar(
        img,
        Placement {
            src: [0.0, 0.0, w, h],
            dst: [0.0, 0.0, sw, sh],
        },
        &mut tensor,
        width,
        height,
    );
    DetectorInput {
        tensor,
        width,
        height,
        scale: sw / w,
    }
}

/// `img` inside a border of `fraction` of its long side, filled with the image's mean
/// colour; returns the new image and the border width in pixels.
pub fn pad_image(img: &RgbImage, fraction: f32) -> (RgbImage, f32) {
    let pad = (img.width().max(img.height()) as f32 * fraction).round() as u32;
    let mut mean = [0u64; 3];
    for p in img.pixels() {
        for c in 0..3 {
            mean[c] += u64::from(p[c]);
        }
    }
    let n = u64::from(img.width()) * u64::from(img.height());
    let fill = image::Rgb(mean.map(|m| (m / n.max(1)) as u8));
    let mut out = RgbImage::from_pixel(img.width() + 2 * pad, img.height() + 2 * pad, fill);
    image::imageops::replace(&mut out, img, i64::from(pad), i64::from(pad));
    (out, pad as f32)
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Decodes the raw grid `[1, 25, gh, gw]` (channel = anchor * 5 + {x, y, w, h, score})
/// into boxes in image pixels, clipped to the image, above `threshold`.
pub fn decode_grid(
    grid: &[f32],
    gh: usize,
    gw: usize,
    input: &DetectorInput,
    image_size: (u32, u32),
    threshold: f32,
) -> Vec<Detection> {
    let cells = gh * gw;
    let mut out = Vec::new();
    if grid.len() < ANCHORS.len() * 5 * cells {
        return out;
    }
    let (iw, ih) = (image_size.0 as f32, image_size.1 as f32);
    let stride = STRIDE as f32;
    for (a, &(aw, ah)) in ANCHORS.iter().enumerate() {
        let ch = |k: usize| &grid[(a * 5 + k) * cells..(a * 5 + k + 1) * cells];
        let (tx, ty, tw, th, to) = (ch(0), ch(1), ch(2), ch(3), ch(4));
        for row in 0..gh {
            for col in 0..gw {
                let i = row * gw + col;
                let score = sigmoid(to[i]);
                if score <= threshold {
                    continue;
                }
                let cx = (col as f32 + sigmoid(tx[i])) * stride;
                let cy = (row as f32 + sigmoid(ty[i])) * stride;
                let bw = tw[i].min(10.0).exp() * aw * stride;
                let bh = th[i].min(10.0).exp() * ah * stride;
                let x0 = ((cx - bw / 2.0) / input.scale).clamp(0.0, iw);
                let y0 = ((cy - bh / 2.0) / input.scale).clamp(0.0, ih);
                let x1 = ((cx + bw / 2.0) / input.scale).clamp(0.0, iw);
                let y1 = ((cy + bh / 2.0) / input.scale).clamp(0.0, ih);
                if x1 - x0 < 1.0 || y1 - y0 < 1.0 {
                    continue;
                }
                out.push(Detection {
                    bbox: BoundingBox {
                        x: x0,
                        y: y0,
                        width: x1 - x0,
                        height: y1 - y0,
                    },
                    score,
                });
            }
        }
    }
    out
}

/// Greedy non-maximum suppression; the result is sorted by descending score.
pub fn nms(mut dets: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Detection> = Vec::with_capacity(dets.len());
    for d in dets {
        if keep.iter().all(|k| k.bbox.iou(&d.bbox) <= iou_threshold) {
            keep.push(d);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_padded_to_multiples_of_32() {
        let img = RgbImage::new(640, 480);
        let inp = prepare(&img, 416);
        assert_eq!((inp.width, inp.height), (416, 320));
        assert!((inp.scale - 0.65).abs() < 1e-6);
        let img = RgbImage::new(150, 150);
        let inp = prepare(&img, 320);
        assert_eq!((inp.width, inp.height), (320, 320));
    }

    #[test]
    fn small_photos_are_not_upscaled_for_detection() {
        use DetectionModel::*;
        assert_eq!(input_long_side(250, 250, Tiny416), 256);
        assert_eq!(input_long_side(640, 480, Tiny416), 416);
        assert_eq!(input_long_side(300, 400, Tiny320), 320);
        assert_eq!(input_long_side(100, 80, Tiny416), MIN_INPUT);
        assert_eq!(input_long_side(100, 80, Tiny224), 224);
        assert_eq!(input_long_side(4000, 3000, Tiny608), 608);
    }

    #[test]
    fn grid_decoding_and_nms() {
        let (gh, gw) = (6, 6);
        let cells = gh * gw;
        let mut grid = vec![-20.0f32; 25 * cells];
        // anchor 1 at row 4, col 4: centred in the cell, size = anchor
        let i = 4 * gw + 4;
        for k in 0..4 {
            grid[(5 + k) * cells + i] = 0.0;
        }
        grid[(5 + 4) * cells + i] = 3.0;
        // a weaker duplicate from anchor 3 at the same place, scaled to the same size
        for k in 0..4 {
            grid[(15 + k) * cells + i] = 0.0;
        }
        grid[(15 + 2) * cells + i] = (6.041_143f32 / 4.266_906).ln();
        grid[(15 + 3) * cells + i] = (7.080_126f32 / 5.178_857).ln();
        grid[(15 + 4) * cells + i] = 1.0;
        let input = DetectorInput {
            tensor: vec![],
            width: 192,
            height: 192,
            scale: 0.5,
        };
        let dets = decode_grid(&grid, gh, gw, &input, (1000, 1000), SCORE_THRESHOLD);
        assert_eq!(dets.len(), 2);
        let kept = nms(dets, IOU_THRESHOLD);
        assert_eq!(kept.len(), 1);
        let b = kept[0].bbox;
        let (cx, cy) = (4.5 * 32.0 / 0.5, 4.5 * 32.0 / 0.5);
        assert!((b.x + b.width / 2.0 - cx).abs() < 1e-2, "{b:?}");
        assert!((b.y + b.height / 2.0 - cy).abs() < 1e-2, "{b:?}");
        assert!((b.width - 6.041_143 * 64.0).abs() < 1e-2);
        assert!((kept[0].score - sigmoid(3.0)).abs() < 1e-6);
    }
}
