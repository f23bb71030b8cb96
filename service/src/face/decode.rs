//! Safe image decoding: format by magic bytes, limits checked on the header before any
//! pixel buffer is allocated, EXIF orientation applied, every colour type reduced to 8-bit
//! RGB.
//!
//! Accepted: JPEG (baseline, progressive, greyscale, CMYK/YCCK converted to RGB by the
//! decoder), PNG (greyscale, RGB, palette, with alpha, 8 or 16 bits per channel) and WebP.
//! The file name or declared content type plays no part: only the leading bytes decide.
//! Alpha is dropped (the colour values are kept as stored), the way the original
//! `face_recognition.load_image_file` (PIL `convert("RGB")`) treats it.
//!
//! A JPEG that ends before its end-of-image marker is refused as truncated: the decoder
//! would otherwise fill the missing rows with grey and the face pipeline would run on a
//! half picture.
//!
//! **Phone photos above the limits** (a 20 MP or 50 MP camera JPEG against the default
//! 16 MP): a baseline JPEG whose upright size exceeds [`ImageLimits`] but not
//! [`MAX_REDUCIBLE_JPEG_PIXELS`] is decoded at a reduced scale, 1/2, 1/4 or 1/8, the
//! largest that fits the limits and [`MAX_REDUCED_PIXELS`], by the inverse DCT itself
//! (`jpeg-decoder`): the full-size picture is never in memory, only one row of blocks and
//! the reduced output (a 50 MP photo becomes 3.2 MP, 9.5 MB; a 20 MP one 5 MP). Progressive JPEGs keep every coefficient of the full picture
//! while decoding (2-3 bytes per pixel), so above the limits they stay `image_too_large`,
//! as do PNG and WebP.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use super::ImageError;

/// Smallest accepted width or height, in pixels; nothing smaller can hold a usable face.
pub const MIN_IMAGE_SIDE: u32 = 32;

/// Largest baseline JPEG (width x height) decoded at a reduced scale when it exceeds the
/// limits: 1/8 of it still has to fit them, and the decoder's per-row working memory
/// grows with the width. 100 MP covers every phone camera sold today (200 MP sensors
/// write 12-50 MP files by default).
pub const MAX_REDUCIBLE_JPEG_PIXELS: u64 = 100_000_000;

/// Most pixels a reduced decode produces, whatever the limits allow: the face pipeline
/// works on crops of the photo in float (12 bytes a pixel), so a 12.6 MP half of a 50 MP
/// photo would cost several times its decoded 38 MB per engine slot; 8 MP keeps a face
/// across a phone photo at 300-600 pixels, more than the 150-pixel chip needs.
pub const MAX_REDUCED_PIXELS: u64 = 8_000_000;

/// The reduction factors the JPEG inverse DCT offers, smallest first.
const JPEG_REDUCTIONS: [u32; 3] = [2, 4, 8];

/// Bounds on an input image, checked on the header before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest accepted width in pixels (of the upright image, after EXIF rotation).
    pub max_width: u32,
    /// Largest accepted height in pixels.
    pub max_height: u32,
    /// Largest accepted width x height.
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_width: 4096,
            max_height: 4096,
            max_pixels: 16_000_000,
        }
    }
}

impl ImageLimits {
    /// Checks the dimensions of the upright image.
    pub fn check(&self, width: u32, height: u32) -> Result<(), ImageError> {
        let pixels = u64::from(width) * u64::from(height);
        if width > self.max_width || height > self.max_height || pixels > self.max_pixels {
            return Err(ImageError::TooLarge { width, height });
        }
        if width < MIN_IMAGE_SIDE || height < MIN_IMAGE_SIDE {
            return Err(ImageError::TooSmall { width, height });
        }
        Ok(())
    }

    fn decoder_limits(&self) -> image::Limits {
        // Width and height are checked by `check` (with a precise error); the decoder only
        // gets an allocation ceiling as a second line of defence.
        let mut limits = image::Limits::default();
        // Output buffer (at most 16-bit RGBA) plus the decoder's own working memory.
        limits.max_alloc = Some(self.max_pixels.saturating_mul(8).saturating_add(64 << 20));
        limits
    }
}

/// A decoded image: 8-bit RGB, upright (EXIF orientation applied).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The pixels.
    pub rgb: RgbImage,
    /// The container format found from the magic bytes.
    pub format: ImageFormat,
    /// 1 when decoded at full size; 2, 4 or 8 when a JPEG above the limits was decoded
    /// at that fraction of its size.
    pub reduced_by: u32,
}

/// Decodes `bytes` within `limits`. Never panics on hostile input.
pub fn decode(bytes: &[u8], limits: &ImageLimits) -> Result<Decoded, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let format = sniff(bytes)?;
    if format == ImageFormat::Jpeg && !jpeg_has_end_marker(bytes) {
        return Err(ImageError::Corrupt(
            "the JPEG data ends before its end-of-image marker (truncated upload?)".into(),
        ));
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.decoder_limits());
    let mut decoder = reader.into_decoder().map_err(|e| map_err(e, None))?;
    let (width, height) = decoder.dimensions();
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    {
        use image::metadata::Orientation as O;
        let swaps = matches!(
            orientation,
            O::Rotate90 | O::Rotate270 | O::Rotate90FlipH | O::Rotate270FlipH
        );
        let (w, h) = if swaps {
            (height, width)
        } else {
            (width, height)
        };
        match limits.check(w, h) {
            Err(ImageError::TooLarge { .. })
                if format == ImageFormat::Jpeg
                    && u64::from(w) * u64::from(h) <= MAX_REDUCIBLE_JPEG_PIXELS =>
            {
                return decode_jpeg_reduced(bytes, limits, (w, h), orientation);
            }
            checked => checked?,
        }
    }
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| map_err(e, Some((width, height))))?;
    img.apply_orientation(orientation);
    let rgb = match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    };
    Ok(Decoded {
        rgb,
        format,
        reduced_by: 1,
    })
}

/// Decodes a baseline JPEG whose upright size `upright` exceeds `limits` at the largest
/// reduced scale that fits them (see the module documentation).
fn decode_jpeg_reduced(
    bytes: &[u8],
    limits: &ImageLimits,
    upright: (u32, u32),
    orientation: image::metadata::Orientation,
) -> Result<Decoded, ImageError> {
    let too_large = || ImageError::TooLarge {
        width: upright.0,
        height: upright.1,
    };
    let corrupt = |e: jpeg_decoder::Error| ImageError::Corrupt(e.to_string());
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().map_err(corrupt)?;
    let info = decoder.info().ok_or_else(too_large)?;
    if info.coding_process != jpeg_decoder::CodingProcess::DctSequential {
        return Err(too_large());
    }
    let reduced = |n: u32, by: u32| n.div_ceil(by);
    let by = JPEG_REDUCTIONS
        .into_iter()
        .find(|&by| {
            let (w, h) = (reduced(upright.0, by), reduced(upright.1, by));
            limits.check(w, h).is_ok() && u64::from(w) * u64::from(h) <= MAX_REDUCED_PIXELS
        })
        .ok_or_else(too_large)?;
    let (stored_w, stored_h) = (u32::from(info.width), u32::from(info.height));
    let request = |n: u32| u16::try_from(reduced(n, by)).unwrap_or(u16::MAX);
    let (out_w, out_h) = decoder
        .scale(request(stored_w), request(stored_h))
        .map_err(corrupt)?;
    // The output buffer (4 bytes per pixel at most) is all the decoder may allocate
    // beyond its per-row state.
    decoder.set_max_decoding_buffer_size(usize::from(out_w) * usize::from(out_h) * 4);
    let pixels = decoder.decode().map_err(corrupt)?;
    let (out_w, out_h) = (u32::from(out_w), u32::from(out_h));
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => RgbImage::from_raw(out_w, out_h, pixels),
        jpeg_decoder::PixelFormat::L8 => RgbImage::from_raw(
            out_w,
            out_h,
            pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        ),
        // CMYK and 16-bit baseline files are rare enough in phone photos to stay refused
        // above the limits rather than be converted by a second code path.
        jpeg_decoder::PixelFormat::CMYK32 | jpeg_decoder::PixelFormat::L16 => None,
    }
    .ok_or_else(too_large)?;
    let mut img = DynamicImage::ImageRgb8(rgb);
    img.apply_orientation(orientation);
    let DynamicImage::ImageRgb8(rgb) = img else {
        return Err(too_large());
    };
    limits.check(rgb.width(), rgb.height())?;
    Ok(Decoded {
        rgb,
        format: ImageFormat::Jpeg,
        reduced_by: by,
    })
}

/// Identifies the container from its leading bytes; refuses anything but JPEG/PNG/WebP
/// with a message naming what was found.
fn sniff(bytes: &[u8]) -> Result<ImageFormat, ImageError> {
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)) => Ok(f),
        Ok(other) => Err(ImageError::UnsupportedFormat(
            other
                .extensions_str()
                .first()
                .copied()
                .unwrap_or("unknown")
                .to_ascii_uppercase(),
        )),
        Err(_) => Err(ImageError::UnsupportedFormat("unrecognised data".into())),
    }
}

/// True when the JPEG stream contains an EOI marker (`FF D9`) after its first
/// start-of-scan: trailing bytes after EOI (some cameras append data) are tolerated.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let sos = bytes.windows(2).position(|w| w == [0xFF, 0xDA]);
    match sos {
        Some(start) => bytes[start..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

fn map_err(err: image::ImageError, dims: Option<(u32, u32)>) -> ImageError {
    use image::error::{ImageError as E, LimitErrorKind};
    match err {
        E::Limits(l) => match (l.kind(), dims) {
            (LimitErrorKind::DimensionError, Some((width, height)))
            | (LimitErrorKind::InsufficientMemory, Some((width, height))) => {
                ImageError::TooLarge { width, height }
            }
            _ => ImageError::Corrupt(format!("image exceeds the decoder's limits: {l}")),
        },
        E::Unsupported(u) => ImageError::UnsupportedFormat(u.to_string()),
        other => ImageError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, color: image::ColorType) -> Vec<u8> {
        let img = match color {
            image::ColorType::L16 => {
                DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(width, height, |x, _| {
                    image::Luma([(x * 1000) as u16])
                }))
            }
            image::ColorType::Rgba8 => {
                DynamicImage::ImageRgba8(image::ImageBuffer::from_fn(width, height, |x, y| {
                    image::Rgba([x as u8, y as u8, 7, 0])
                }))
            }
            _ => DynamicImage::ImageLuma8(image::ImageBuffer::from_fn(width, height, |x, _| {
                image::Luma([x as u8])
            })),
        };
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn grey_16bit_and_rgba_become_rgb8() {
        let limits = ImageLimits::default();
        let d = decode(&png(40, 50, image::ColorType::L16), &limits).unwrap();
        assert_eq!(d.rgb.dimensions(), (40, 50));
        let p = d.rgb.get_pixel(10, 0);
        assert_eq!(p[0], p[1]);
        let d = decode(&png(40, 50, image::ColorType::Rgba8), &limits).unwrap();
        // alpha dropped, colour kept
        assert_eq!(d.rgb.get_pixel(3, 4).0, [3, 4, 7]);
    }

    #[test]
    fn limits_are_checked_from_the_header() {
        let limits = ImageLimits {
            max_width: 100,
            max_height: 100,
            max_pixels: 5000,
        };
        assert_eq!(
            decode(&png(101, 40, image::ColorType::L8), &limits).unwrap_err(),
            ImageError::TooLarge {
                width: 101,
                height: 40
            }
        );
        assert_eq!(
            decode(&png(80, 80, image::ColorType::L8), &limits).unwrap_err(),
            ImageError::TooLarge {
                width: 80,
                height: 80
            }
        );
        assert_eq!(
            decode(&png(8, 80, image::ColorType::L8), &limits).unwrap_err(),
            ImageError::TooSmall {
                width: 8,
                height: 80
            }
        );
    }

    #[test]
    fn unknown_and_unsupported_formats() {
        let limits = ImageLimits::default();
        assert_eq!(decode(b"", &limits).unwrap_err(), ImageError::Empty);
        assert!(matches!(
            decode(b"hello world, not an image", &limits).unwrap_err(),
            ImageError::UnsupportedFormat(_)
        ));
        let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
        assert_eq!(
            decode(gif, &limits).unwrap_err(),
            ImageError::UnsupportedFormat("GIF".into())
        );
    }

    fn baseline_jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x / 7) as u8, (y / 5) as u8, ((x + y) / 11) as u8])
        });
        let mut out = Cursor::new(Vec::new());
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&img)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn a_jpeg_above_the_limits_is_decoded_at_the_largest_reduced_scale_that_fits() {
        let limits = ImageLimits {
            max_width: 1000,
            max_height: 1000,
            max_pixels: 500_000,
        };
        // 1600x1200: 1/2 = 800x600 = 480k fits
        let d = decode(&baseline_jpeg(1600, 1200), &limits).unwrap();
        assert_eq!((d.rgb.width(), d.rgb.height(), d.reduced_by), (800, 600, 2));
        // the colours survive the reduced inverse DCT (a gradient, sampled mid-image)
        let p = d.rgb.get_pixel(400, 300).0;
        assert!(p[0].abs_diff(114) <= 3 && p[1].abs_diff(120) <= 3, "{p:?}");
        // 3000x2400: 1/2 = 1500 wide, too wide; 1/4 = 750x600 fits
        let d = decode(&baseline_jpeg(3000, 2400), &limits).unwrap();
        assert_eq!((d.rgb.width(), d.rgb.height(), d.reduced_by), (750, 600, 4));
        // within the limits: full size, as before
        let d = decode(&baseline_jpeg(600, 400), &limits).unwrap();
        assert_eq!((d.rgb.width(), d.rgb.height(), d.reduced_by), (600, 400, 1));
    }

    #[test]
    fn the_reduced_output_stays_under_its_own_cap_whatever_the_limits() {
        let limits = ImageLimits {
            max_width: 10_000,
            max_height: 10_000,
            max_pixels: 20_000_000,
        };
        // 6000x6000 = 36 MP: 1/2 = 9 MP fits the limits but not MAX_REDUCED_PIXELS
        let d = decode(&baseline_jpeg(6000, 6000), &limits).unwrap();
        assert_eq!(
            (d.rgb.width(), d.rgb.height(), d.reduced_by),
            (1500, 1500, 4)
        );
    }

    #[test]
    fn nothing_fits_even_at_an_eighth_is_too_large() {
        let tiny = ImageLimits {
            max_width: 100,
            max_height: 100,
            max_pixels: 10_000,
        };
        assert!(matches!(
            decode(&baseline_jpeg(1600, 1200), &tiny),
            Err(ImageError::TooLarge {
                width: 1600,
                height: 1200
            })
        ));
    }

    #[test]
    fn jpeg_end_marker() {
        assert!(jpeg_has_end_marker(&[
            0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0xD9
        ]));
        assert!(!jpeg_has_end_marker(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 3]));
        assert!(!jpeg_has_end_marker(&[0xFF, 0xD8, 0xFF, 0xD9]));
    }
}
