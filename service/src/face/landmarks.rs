//! 68-point landmarks with face-api's `FaceLandmark68Net`.
//!
//! Input, as face-api's `extractFaces` + `toBatchTensor(112, true)`: the detector box
//! (floored, clipped to the image) scaled so its long side is 112 and centred on a black
//! 112x112 square. Output: 136 values, (x, y) pairs relative to that square, mapped back
//! to image pixels as face-api's `FaceLandmark68NetBase.postProcess` does.

use image::RgbImage;

use super::BoundingBox;
use super::resample::{Placement, resample_planar};

/// Side of the landmark network's input.
pub const INPUT_SIZE: usize = 112;
/// Number of landmarks.
pub const COUNT: usize = 68;

/// A prepared landmark input and how to map its output back.
#[derive(Debug, Clone)]
pub struct LandmarkInput {
    /// `[3, 112, 112]`, RGB 0..255.
    pub tensor: Vec<f32>,
    /// The crop in image pixels: x, y, width, height.
    pub crop: [f32; 4],
    /// Tensor pixels per image pixel.
    pub scale: f32,
    /// Black border left of / above the crop inside the square, in tensor pixels.
    pub pad: [f32; 2],
}

/// Crops `bbox` from `img` for the landmark network. `None` when the box does not
/// overlap the image by at least one pixel.
pub fn prepare(img: &RgbImage, bbox: &BoundingBox) -> Option<LandmarkInput> {
    let (iw, ih) = (img.width() as f32, img.height() as f32);
    let x = bbox.x.floor().clamp(0.0, iw);
    let y = bbox.y.floor().clamp(0.0, ih);
    let w = bbox.width.floor().min(iw - x);
    let h = bbox.height.floor().min(ih - y);
    if w < 1.0 || h < 1.0 {
        return None;
    }
    let s = INPUT_SIZE as f32;
    let scale = s / w.max(h);
    let (sw, sh) = (w * scale, h * scale);
    let pad = [(s - sw) / 2.0, (s - sh) / 2.0];
    let mut tensor = vec![0.0f32; 3 * INPUT_SIZE * INPUT_SIZE];
    resample_planar(
        img,
        Placement {
            src: [x, y, w, h],
            dst: [pad[0], pad[1], sw, sh],
        },
        &mut tensor,
        INPUT_SIZE,
        INPUT_SIZE,
    );
    Some(LandmarkInput {
        tensor,
        crop: [x, y, w, h],
        scale,
        pad,
    })
}

/// Maps the network's 136 outputs back to image pixels.
pub fn postprocess(out: &[f32], input: &LandmarkInput) -> Vec<[f32; 2]> {
    let s = INPUT_SIZE as f32;
    out.chunks_exact(2)
        .take(COUNT)
        .map(|p| {
            [
                input.crop[0] + (p[0] * s - input.pad[0]) / input.scale,
                input.crop[1] + (p[1] * s - input.pad[1]) / input.scale,
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_the_square() {
        let img = RgbImage::new(300, 200);
        let bbox = BoundingBox {
            x: 50.7,
            y: 20.2,
            width: 100.9,
            height: 150.0,
        };
        let inp = prepare(&img, &bbox).unwrap();
        assert_eq!(inp.crop, [50.0, 20.0, 100.0, 150.0]);
        // the square's centre is the crop's centre
        let pts = postprocess(&[0.5, 0.5], &inp);
        assert!((pts[0][0] - 100.0).abs() < 1e-3 && (pts[0][1] - 95.0).abs() < 1e-3);
        // the square's top edge is the crop's top edge (the crop is taller than wide)
        let pts = postprocess(&[0.5, 0.0], &inp);
        assert!((pts[0][1] - 20.0).abs() < 1e-3);
    }

    #[test]
    fn box_outside_the_image() {
        let img = RgbImage::new(100, 100);
        let bbox = BoundingBox {
            x: 100.0,
            y: 0.0,
            width: 10.0,
            height: 10.0,
        };
        assert!(prepare(&img, &bbox).is_none());
    }
}
