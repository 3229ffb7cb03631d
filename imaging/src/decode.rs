//! Pixel decoding to 8-bit RGB. JPEG goes through libjpeg-turbo, which can
//! decode at 1/2, 1/4 or 1/8 scale in the DCT domain: far cheaper than a full
//! decode followed by a resize when the target is much smaller than the photo.

use image::{ImageFormat, ImageReader, RgbImage};
use turbojpeg::{Colorspace, Decompressor, PixelFormat, ScalingFactor};

use crate::container::Format;
use crate::dicom;
use crate::inspect::Reject;

/// Allocation ceiling for one decode, whatever the header claims.
const MAX_DECODE_BYTES: u64 = 1 << 30;

/// Decodes the whole image at full resolution.
pub fn decode_rgb(bytes: &[u8], format: Format) -> Result<RgbImage, Reject> {
    decode_rgb_at_least(bytes, format, u32::MAX)
}

/// Decodes at the smallest scale whose shorter side is still at least
/// `min_side` pixels (JPEG only; other formats decode at full size).
pub fn decode_rgb_at_least(bytes: &[u8], format: Format, min_side: u32) -> Result<RgbImage, Reject> {
    match format {
        Format::Jpeg => decode_jpeg(bytes, min_side),
        Format::Png => decode_png(bytes),
        Format::Dicom => dicom::decode(bytes),
    }
}

fn tj_err(e: turbojpeg::Error) -> Reject {
    Reject::Corrupt(format!("JPEG decoder: {e}"))
}

/// Decodes a JPEG at the smallest scale whose shorter side is at least
/// `min_side`, with the scale as `(numerator, denominator)`. Whatever the
/// scale, libjpeg-turbo entropy-decodes every coefficient of every scan (it
/// must, to find the next), so a corrupt, truncated or malformed scan fails
/// here as it would in a full decode; only the inverse DCT is smaller.
pub fn decode_jpeg_scaled(bytes: &[u8], min_side: u32) -> Result<(RgbImage, (usize, usize)), Reject> {
    let mut d = Decompressor::new().map_err(tj_err)?;
    // A progressive JPEG with thousands of tiny scans is a known CPU bomb.
    d.set_scan_limit(500).map_err(tj_err)?;
    let header = d.read_header(bytes).map_err(tj_err)?;
    let short = header.width.min(header.height);
    let factor = [ScalingFactor::ONE_EIGHTH, ScalingFactor::ONE_QUARTER, ScalingFactor::ONE_HALF]
        .into_iter()
        .find(|f| f.scale(short) as u64 >= min_side as u64)
        .unwrap_or(ScalingFactor::ONE);
    d.set_scaling_factor(factor).map_err(tj_err)?;
    let ratio = (factor.num(), factor.denom());
    let scaled = header.scaled(factor);
    let (w, h) = (scaled.width, scaled.height);
    let cmyk = matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK);
    let channels = if cmyk { 4 } else { 3 };
    let mut pixels = vec![0u8; w * h * channels];
    let format = if cmyk { PixelFormat::CMYK } else { PixelFormat::RGB };
    let out = turbojpeg::Image { pixels: pixels.as_mut_slice(), width: w, pitch: w * channels, height: h, format };
    d.decompress(bytes, out).map_err(tj_err)?;
    if cmyk {
        pixels = cmyk_to_rgb(&pixels);
    }
    let img = RgbImage::from_raw(w as u32, h as u32, pixels).ok_or_else(|| Reject::Corrupt("JPEG buffer size mismatch".into()))?;
    Ok((img, ratio))
}

fn decode_jpeg(bytes: &[u8], min_side: u32) -> Result<RgbImage, Reject> {
    decode_jpeg_scaled(bytes, min_side).map(|(img, _)| img)
}

/// Adobe writes CMYK JPEGs inverted (0 = full ink), which is what libjpeg hands back.
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    cmyk.chunks_exact(4)
        .flat_map(|p| {
            let k = p[3] as u16;
            [0, 1, 2].map(|c| ((p[c] as u16 * k) / 255) as u8)
        })
        .collect()
}

fn decode_png(bytes: &[u8]) -> Result<RgbImage, Reject> {
    let mut reader = ImageReader::with_format(std::io::Cursor::new(bytes), ImageFormat::Png);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| Reject::Corrupt(format!("PNG decoder: {e}")))?;
    Ok(img.into_rgb8())
}
