//! Pixel resampling shared by the stages: bilinear sampling with a box pre-filter when
//! shrinking by 2x or more (plain bilinear would alias), written straight into the planar
//! `[3, H, W]` float layout the networks take (RGB, 0..255).

use image::RgbImage;

/// An RGB image of `f32` samples, interleaved.
#[derive(Debug, Clone)]
pub(crate) struct FloatImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl FloatImage {
    /// The region `[x0, x1) x [y0, y1)` of `img` (clipped to it), averaged over `k x k`
    /// blocks (`k >= 1`). Pixel `(i, j)` of the result has its centre at image coordinate
    /// `x0 + i*k + (k-1)/2` (pixel-centre convention).
    pub fn from_region(img: &RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, k: usize) -> Self {
        let (iw, ih) = (i64::from(img.width()), i64::from(img.height()));
        let x0 = x0.clamp(0, iw);
        let y0 = y0.clamp(0, ih);
        let x1 = x1.clamp(x0, iw);
        let y1 = y1.clamp(y0, ih);
        let k = k.max(1);
        let width = ((x1 - x0) as usize) / k;
        let height = ((y1 - y0) as usize) / k;
        let mut data = vec![0.0f32; width * height * 3];
        let raw = img.as_raw();
        let stride = img.width() as usize * 3;
        if k == 1 {
            // A plain conversion (the common case: crops and upscaling), vectorised.
            for (oy, out) in data.chunks_exact_mut(width * 3).enumerate() {
                let start = (y0 as usize + oy) * stride + x0 as usize * 3;
                for (o, &v) in out.iter_mut().zip(&raw[start..start + width * 3]) {
                    *o = f32::from(v);
                }
            }
            return Self {
                width,
                height,
                data,
            };
        }
        let inv = 1.0 / (k * k) as f32;
        let mut row_acc = vec![0.0f32; width * 3];
        for oy in 0..height {
            row_acc.iter_mut().for_each(|v| *v = 0.0);
            for dy in 0..k {
                let sy = y0 as usize + oy * k + dy;
                let row = &raw[sy * stride + x0 as usize * 3..];
                for ox in 0..width {
                    let base = ox * k * 3;
                    let acc = &mut row_acc[ox * 3..ox * 3 + 3];
                    for dx in 0..k {
                        let p = &row[base + dx * 3..base + dx * 3 + 3];
                        acc[0] += f32::from(p[0]);
                        acc[1] += f32::from(p[1]);
                        acc[2] += f32::from(p[2]);
                    }
                }
            }
            let out = &mut data[oy * width * 3..(oy + 1) * width * 3];
            for (o, a) in out.iter_mut().zip(row_acc.iter()) {
                *o = a * inv;
            }
        }
        Self {
            width,
            height,
            data,
        }
    }

    /// Halves the image with a `[1 3 3 1] / 8` filter in each direction; pixel `i` of the
    /// result is centred on `2i + 0.5` of this one.
    pub fn pyramid_down(&self) -> Self {
        let w2 = self.width / 2;
        let h2 = self.height / 2;
        let (w, h) = (self.width as i64, self.height as i64);
        const K: [f32; 4] = [1.0 / 8.0, 3.0 / 8.0, 3.0 / 8.0, 1.0 / 8.0];
        // horizontal pass
        let mut tmp = vec![0.0f32; w2 * self.height * 3];
        for y in 0..self.height {
            let row = &self.data[y * self.width * 3..(y + 1) * self.width * 3];
            for x in 0..w2 {
                let mut acc = [0.0f32; 3];
                for (t, kv) in K.iter().enumerate() {
                    let sx = (2 * x as i64 - 1 + t as i64).clamp(0, w - 1) as usize;
                    for c in 0..3 {
                        acc[c] += kv * row[sx * 3 + c];
                    }
                }
                tmp[(y * w2 + x) * 3..(y * w2 + x) * 3 + 3].copy_from_slice(&acc);
            }
        }
        let mut data = vec![0.0f32; w2 * h2 * 3];
        for y in 0..h2 {
            for (t, kv) in K.iter().enumerate() {
                let sy = (2 * y as i64 - 1 + t as i64).clamp(0, h - 1) as usize;
                let src = &tmp[sy * w2 * 3..(sy + 1) * w2 * 3];
                let dst = &mut data[y * w2 * 3..(y + 1) * w2 * 3];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += kv * s;
                }
            }
        }
        Self {
            width: w2,
            height: h2,
            data,
        }
    }

    /// Bilinear sample at pixel-centre coordinates `(x, y)`; `None` when a neighbour
    /// falls outside (dlib's rule).
    #[inline]
    pub fn bilinear_strict(&self, x: f32, y: f32) -> Option<[f32; 3]> {
        // For non-negative coordinates truncation is `floor`, without a libm call on
        // CPUs below SSE4.1 (the portable baseline this is compiled for).
        if !(x >= 0.0 && y >= 0.0) {
            return None;
        }
        let (l, t) = (x as usize, y as usize);
        if l + 1 >= self.width || t + 1 >= self.height {
            return None;
        }
        Some(self.lerp(l, t, x - l as f32, y - t as f32))
    }

    /// Bilinear sample with coordinates clamped to the image.
    #[inline]
    pub fn bilinear_clamped(&self, x: f32, y: f32) -> [f32; 3] {
        if self.width == 0 || self.height == 0 {
            return [0.0; 3];
        }
        let x = x.clamp(0.0, (self.width - 1) as f32);
        let y = y.clamp(0.0, (self.height - 1) as f32);
        let l = (x.floor() as usize).min(self.width.saturating_sub(2));
        let t = (y.floor() as usize).min(self.height.saturating_sub(2));
        if self.width < 2 || self.height < 2 {
            let i = (t * self.width + l) * 3;
            return [self.data[i], self.data[i + 1], self.data[i + 2]];
        }
        self.lerp(l, t, x - l as f32, y - t as f32)
    }

    #[inline]
    fn lerp(&self, l: usize, t: usize, fx: f32, fy: f32) -> [f32; 3] {
        let i00 = (t * self.width + l) * 3;
        let i10 = i00 + 3;
        let i01 = i00 + self.width * 3;
        let i11 = i01 + 3;
        let d = &self.data;
        let mut out = [0.0f32; 3];
        for c in 0..3 {
            let top = d[i00 + c] + fx * (d[i10 + c] - d[i00 + c]);
            let bot = d[i01 + c] + fx * (d[i11 + c] - d[i01 + c]);
            out[c] = top + fy * (bot - top);
        }
        out
    }
}

/// Where a source rectangle lands in a planar destination tensor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    /// Source rectangle in image pixels: x, y, width, height (edges, not centres).
    pub src: [f32; 4],
    /// Destination rectangle in tensor pixels: x, y, width, height.
    pub dst: [f32; 4],
}

/// Resamples `placement.src` of `img` into `placement.dst` of the planar tensor `out`
/// (`3 x out_h x out_w`, RGB, 0..255). Pixels outside `dst` are left as they are (callers
/// zero the buffer: face-api pads with black).
pub(crate) fn resample_planar(
    img: &RgbImage,
    placement: Placement,
    out: &mut [f32],
    out_w: usize,
    out_h: usize,
) {
    let Some(source) = Source::new(img, &placement) else {
        return;
    };
    let [dx, dy, dw, dh] = placement.dst;
    let region = &source.region;
    let plane = out_w * out_h;
    let j0 = dx.floor().max(0.0) as usize;
    let j1 = ((dx + dw).ceil() as usize).min(out_w);
    let i0 = dy.floor().max(0.0) as usize;
    let i1 = ((dy + dh).ceil() as usize).min(out_h);
    if region.width < 2 || region.height < 2 {
        // A one-pixel-wide source (a sliver of an image): no neighbours to blend.
        resample_per_pixel(&source, &placement, out, (out_w, out_h));
        return;
    }
    // The sampling grid is separable: each output column has one source column and
    // weight, each output row one source row and weight. Computing them once per column
    // and per row keeps `floor` and the clamps out of the per-pixel loop, which is then
    // a vertical blend of two rows (vectorisable) and a horizontal gather.
    let columns: Vec<(usize, usize, f32)> = (j0..j1)
        .filter_map(|j| {
            let cx = j as f32 + 0.5;
            if cx < dx || cx > dx + dw {
                return None;
            }
            let (l, w) = tap(source.x(&placement, cx), region.width);
            Some((j, l, w))
        })
        .collect();
    let row_len = region.width * 3;
    let mut blended = vec![0.0f32; row_len];
    for i in i0..i1 {
        let cy = i as f32 + 0.5;
        if cy < dy || cy > dy + dh {
            continue;
        }
        let (t, wy) = tap(source.y(&placement, cy), region.height);
        let top = &region.data[t * row_len..(t + 1) * row_len];
        let bottom = &region.data[(t + 1) * row_len..(t + 2) * row_len];
        for ((b, &a), &c) in blended.iter_mut().zip(top).zip(bottom) {
            *b = a + wy * (c - a);
        }
        let row = i * out_w;
        for &(j, l, wx) in &columns {
            let p = &blended[l * 3..l * 3 + 6];
            let o = row + j;
            out[o] = p[0] + wx * (p[3] - p[0]);
            out[plane + o] = p[1] + wx * (p[4] - p[1]);
            out[2 * plane + o] = p[2] + wx * (p[5] - p[2]);
        }
    }
}

/// What [`resample_planar`] computes, pixel by pixel: each output pixel centre inside
/// `placement.dst` maps to a position in `source`'s region (box-filtered by `k`), sampled
/// bilinearly with clamping. Used for one-pixel-wide sources, and by the tests as the
/// definition the separable version must match.
fn resample_per_pixel(
    source: &Source,
    placement: &Placement,
    out: &mut [f32],
    (out_w, out_h): (usize, usize),
) {
    let [dx, dy, dw, dh] = placement.dst;
    let plane = out_w * out_h;
    for i in 0..out_h {
        for j in 0..out_w {
            let (cx, cy) = (j as f32 + 0.5, i as f32 + 0.5);
            if cx < dx || cx > dx + dw || cy < dy || cy > dy + dh {
                continue;
            }
            let v = source
                .region
                .bilinear_clamped(source.x(placement, cx), source.y(placement, cy));
            let o = i * out_w + j;
            out[o] = v[0];
            out[plane + o] = v[1];
            out[2 * plane + o] = v[2];
        }
    }
}

/// The part of an image a placement reads (padded by a pixel for the bilinear
/// neighbours), box-filtered by `k` when shrinking by `k` or more, and the map from
/// output pixel centres into it.
struct Source {
    region: FloatImage,
    /// Image pixel of the region's first sample, x and y.
    origin: [f32; 2],
    /// Box filter size.
    k: f32,
    /// Image pixels per output pixel, x and y.
    step: [f32; 2],
}

impl Source {
    /// `None` for an empty source or destination rectangle.
    fn new(img: &RgbImage, placement: &Placement) -> Option<Self> {
        let [sx, sy, sw, sh] = placement.src;
        let [_, _, dw, dh] = placement.dst;
        if sw <= 0.0 || sh <= 0.0 || dw <= 0.0 || dh <= 0.0 {
            return None;
        }
        let step = [sw / dw, sh / dh];
        let k = step[0].min(step[1]).floor().max(1.0) as usize;
        let rx0 = (sx.floor() as i64 - 1).max(0);
        let ry0 = (sy.floor() as i64 - 1).max(0);
        let rx1 = ((sx + sw).ceil() as i64 + 1).min(i64::from(img.width()));
        let ry1 = ((sy + sh).ceil() as i64 + 1).min(i64::from(img.height()));
        Some(Self {
            region: FloatImage::from_region(img, rx0, ry0, rx1, ry1, k),
            origin: [rx0 as f32, ry0 as f32],
            k: k as f32,
            step,
        })
    }

    /// Region x of the output pixel centre at tensor x `cx` (pixel-centre convention:
    /// region pixel `i` is centred on image pixel `origin + i*k + (k-1)/2`).
    #[inline]
    fn x(&self, placement: &Placement, cx: f32) -> f32 {
        self.to_region(0, placement.src[0] + (cx - placement.dst[0]) * self.step[0])
    }

    /// Region y of the output pixel centre at tensor y `cy`.
    #[inline]
    fn y(&self, placement: &Placement, cy: f32) -> f32 {
        self.to_region(1, placement.src[1] + (cy - placement.dst[1]) * self.step[1])
    }

    #[inline]
    fn to_region(&self, axis: usize, image_edge_coord: f32) -> f32 {
        (image_edge_coord - 0.5 - self.origin[axis] - (self.k - 1.0) / 2.0) / self.k
    }
}

/// The left (or top) neighbour and its partner's weight for a bilinear tap at `x` on an
/// axis of `n >= 2` samples, with `x` clamped to the axis (as
/// [`FloatImage::bilinear_clamped`]).
#[inline]
fn tap(x: f32, n: usize) -> (usize, f32) {
    let x = x.clamp(0.0, (n - 1) as f32);
    let l = (x.floor() as usize).min(n - 2);
    (l, x - l as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_resample_keeps_pixels() {
        let img = RgbImage::from_fn(8, 6, |x, y| image::Rgb([x as u8 * 10, y as u8 * 10, 5]));
        let mut out = vec![0.0f32; 3 * 6 * 8];
        resample_planar(
            &img,
            Placement {
                src: [0.0, 0.0, 8.0, 6.0],
                dst: [0.0, 0.0, 8.0, 6.0],
            },
            &mut out,
            8,
            6,
        );
        assert_eq!(out[3 * 8 + 5], 50.0);
        assert_eq!(out[48 + 3 * 8 + 5], 30.0);
        assert_eq!(out[96], 5.0);
    }

    #[test]
    fn shrinking_averages() {
        // a 1-pixel checkerboard shrunk 4x becomes flat grey, not aliased
        let img = RgbImage::from_fn(64, 64, |x, y| {
            let v = if (x + y) % 2 == 0 { 255 } else { 0 };
            image::Rgb([v, v, v])
        });
        let mut out = vec![0.0f32; 3 * 16 * 16];
        resample_planar(
            &img,
            Placement {
                src: [0.0, 0.0, 64.0, 64.0],
                dst: [0.0, 0.0, 16.0, 16.0],
            },
            &mut out,
            16,
            16,
        );
        for v in &out[..256] {
            assert!((v - 127.5).abs() < 1.0, "{v}");
        }
    }

    #[test]
    fn separable_resampling_matches_the_per_pixel_definition() {
        let img = RgbImage::from_fn(97, 61, |x, y| {
            image::Rgb([
                (x * 7 + y * 3) as u8,
                (x * x + 5 * y) as u8,
                ((x ^ y) * 11) as u8,
            ])
        });
        let cases = [
            ([0.0, 0.0, 97.0, 61.0], [0.0, 0.0, 160.0, 101.0], 160, 128), // up, padded
            ([0.0, 0.0, 97.0, 61.0], [0.0, 0.0, 97.0, 61.0], 97, 61),     // identity
            ([10.3, 5.7, 40.2, 30.9], [3.5, 2.25, 56.0, 56.0], 64, 64),   // crop, offset
            ([0.0, 0.0, 97.0, 61.0], [0.0, 0.0, 24.0, 15.0], 32, 32),     // down 4x
            ([-8.0, -4.0, 120.0, 80.0], [0.0, 0.0, 48.0, 32.0], 48, 32),  // outside
            ([50.0, 20.0, 1.0, 30.0], [0.0, 0.0, 8.0, 8.0], 8, 8),        // sliver
        ];
        for (src, dst, w, h) in cases {
            let p = Placement { src, dst };
            let mut fast = vec![0.0f32; 3 * w * h];
            let mut slow = vec![0.0f32; 3 * w * h];
            resample_planar(&img, p, &mut fast, w, h);
            if let Some(source) = Source::new(&img, &p) {
                resample_per_pixel(&source, &p, &mut slow, (w, h));
            }
            for (n, (a, b)) in fast.iter().zip(&slow).enumerate() {
                assert!((a - b).abs() <= 1e-3, "{src:?} -> {dst:?}: {n}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn pyramid_halves() {
        let img = RgbImage::from_fn(10, 10, |_, _| image::Rgb([100, 100, 100]));
        let f = FloatImage::from_region(&img, 0, 0, 10, 10, 1);
        let d = f.pyramid_down();
        assert_eq!((d.width, d.height), (5, 5));
        assert!(d.data.iter().all(|v| (v - 100.0).abs() < 1e-3));
    }
}
