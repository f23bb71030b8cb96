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

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use super::ImageError;

/// Smallest accepted width or height, in pixels; nothing smaller can hold a usable face.
pub const MIN_IMAGE_SIDE: u32 = 32;

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
        limits.check(w, h)?;
    }
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| map_err(e, Some((width, height))))?;
    img.apply_orientation(orientation);
    let rgb = match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    };
    Ok(Decoded { rgb, format })
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

    #[test]
    fn jpeg_end_marker() {
        assert!(jpeg_has_end_marker(&[
            0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0xD9
        ]));
        assert!(!jpeg_has_end_marker(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 3]));
        assert!(!jpeg_has_end_marker(&[0xFF, 0xD8, 0xFF, 0xD9]));
    }
}
