//! Validation of an uploaded photo before anything is stored: magic bytes
//! against the declared type, container structure (truncation, trailing data),
//! dimensions from the header before any decode (decompression bombs), one
//! complete decode, then the quick quality estimate from that decode's pixels.
//!
//! A JPEG is decoded at the smallest DCT scale that still gives the quality
//! estimate its working size: the entropy decoder reads every coefficient of
//! every scan at any scale, so corrupt, truncated and malformed scans fail as
//! in a full decode, at a fraction of the cost (the full inverse DCT and
//! colour conversion of 12 MP are most of a full decode). What this cannot
//! see is damage that decodes cleanly, a flipped bit in a coefficient that
//! still forms valid Huffman codes: a full decode cannot see it either (JPEG
//! has no checksum), only the picture shows it. PNG and DICOM have no
//! cheaper complete check than a full decode (PNG's CRCs and zlib stream
//! need inflating every byte), so they are decoded in full.

use crate::container::{self, Format, sniff};
use crate::quality::{Quality, WORK_SIDE, assess};
use crate::decode::decode_jpeg_scaled;
use crate::{decode_rgb, dicom};

/// Why an upload was refused. `code()` is a stable identifier clients may
/// match on; the message is for people.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reject {
    #[error("the body is empty")]
    Empty,
    #[error("the bytes are not a JPEG, PNG or DICOM file")]
    UnknownFormat,
    #[error("declared as {declared} but the bytes are {actual}")]
    TypeMismatch { declared: &'static str, actual: &'static str },
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("unexpected data after the image: {0}")]
    TrailingData(String),
    #[error("corrupt image: {0}")]
    Corrupt(String),
    #[error("{width}x{height} is {megapixels:.0} megapixels, above the limit of {limit} megapixels")]
    TooManyPixels { width: u32, height: u32, megapixels: f64, limit: u32 },
    #[error("{width}x{height} is too small: the shorter side must be at least {min_side} pixels")]
    TooSmall { width: u32, height: u32, min_side: u32 },
    #[error("the DICOM file has no pixel data")]
    DicomNoPixelData,
    #[error("the DICOM pixel data cannot be decoded: {0}")]
    DicomUnsupported(String),
    #[error("this is not a fundus photograph: {:.0}% of its lit pixels have a retina's colour, a fundus photo has at least {:.0}%", 100.0 * share, 100.0 * crate::FUNDUS_MIN_SHARE)]
    NotFundus { share: f32 },
    #[error("no optic disc was found in the field of view, so the photo cannot be judged for glaucoma")]
    NoDisc,
}

impl Reject {
    pub fn code(&self) -> &'static str {
        match self {
            Reject::Empty => "empty_body",
            Reject::UnknownFormat => "unknown_format",
            Reject::TypeMismatch { .. } => "type_mismatch",
            Reject::Truncated(_) => "truncated",
            Reject::TrailingData(_) => "trailing_data",
            Reject::Corrupt(_) => "corrupt_image",
            Reject::TooManyPixels { .. } => "too_many_pixels",
            Reject::TooSmall { .. } => "too_small",
            Reject::DicomNoPixelData => "dicom_no_pixel_data",
            Reject::DicomUnsupported(_) => "dicom_unsupported",
            Reject::NotFundus { .. } => "not_fundus",
            Reject::NoDisc => "no_disc",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_megapixels: u32,
    pub min_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_megapixels: 100, min_side: 512 }
    }
}

#[derive(Debug, Clone)]
pub struct Inspection {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub quality: Quality,
}

/// Runs every check, cheapest first. CPU-bound (tens of milliseconds for a
/// phone photo): call it off the async executor.
pub fn inspect(bytes: &[u8], declared: Format, limits: Limits) -> Result<Inspection, Reject> {
    if bytes.is_empty() {
        return Err(Reject::Empty);
    }
    let actual = sniff(bytes).ok_or(Reject::UnknownFormat)?;
    if actual != declared {
        return Err(Reject::TypeMismatch { declared: declared.media_type(), actual: actual.media_type() });
    }
    let header = match actual {
        Format::Jpeg => container::jpeg_header(bytes)?,
        Format::Png => container::png_header(bytes)?,
        Format::Dicom => dicom::header(bytes)?,
    };
    let (width, height) = (header.width, header.height);
    let pixels = width as u64 * height as u64;
    if pixels > limits.max_megapixels as u64 * 1_000_000 {
        return Err(Reject::TooManyPixels { width, height, megapixels: pixels as f64 / 1e6, limit: limits.max_megapixels });
    }
    if width.min(height) < limits.min_side {
        return Err(Reject::TooSmall { width, height, min_side: limits.min_side });
    }
    let (decoded, (num, den)) = match actual {
        Format::Jpeg => decode_jpeg_scaled(bytes, WORK_SIDE)?,
        _ => (decode_rgb(bytes, actual)?, (1, 1)),
    };
    let expect = |side: u32| (side as usize * num).div_ceil(den) as u32;
    if decoded.dimensions() != (expect(width), expect(height)) {
        return Err(Reject::Corrupt(format!(
            "header says {width}x{height} but the pixels are {}x{} at scale {num}/{den}",
            decoded.width(),
            decoded.height()
        )));
    }
    // The quality estimate wants a small image: shrink the decode by an
    // integer box average (a few ms) rather than decode a second time.
    let small = crate::resize::box_shrink(&decoded, (decoded.width().min(decoded.height()) / WORK_SIDE).max(1));
    drop(decoded);
    let quality = assess(&small);
    // A face, a room, a document: refused, so it is neither kept nor scored.
    if let Some(share) = quality.fundus_colour.filter(|_| quality.issues.contains(&crate::QualityIssue::NotFundus)) {
        return Err(Reject::NotFundus { share });
    }
    Ok(Inspection { format: actual, width, height, quality })
}

#[cfg(test)]
mod tests {
    /// Scans damaged in the ways a decoder can see (cut short with the end
    /// marker put back, invalid Huffman codes, a restart marker out of order)
    /// fail at the smallest DCT scale exactly as in a full decode, and the
    /// upload is refused as corrupt.
    #[test]
    fn a_corrupt_scan_fails_at_the_smallest_scale_as_in_a_full_decode() {
        use crate::synth::{Params, render, to_jpeg};
        let good = to_jpeg(&render(&Params::healthy(1024, 768, 4)), 90);
        let sos = good.windows(2).position(|w| w == [0xFF, 0xDA]).expect("SOS");
        let len = usize::from(u16::from_be_bytes([good[sos + 2], good[sos + 3]]));
        let (start, end) = (sos + 2 + len, good.len() - 2);
        let mid = (start + end) / 2;
        let mut cut = good[..mid].to_vec();
        cut.extend_from_slice(&[0xFF, 0xD9]);
        let mut ones = good.clone();
        for b in ones[mid..mid + 64].chunks_exact_mut(2) {
            b.copy_from_slice(&[0xFF, 0x00]); // all-ones bits: no valid Huffman code
        }
        let mut restart = good.clone();
        restart[mid..mid + 2].copy_from_slice(&[0xFF, 0xD3]); // a restart marker where none belongs
        let cases = [("cut short", cut), ("invalid Huffman codes", ones), ("stray restart marker", restart)];
        assert!(super::inspect(&good, super::Format::Jpeg, super::Limits::default()).is_ok());
        for (name, bad) in cases {
            let full = crate::decode_rgb(&bad, super::Format::Jpeg);
            let small = super::decode_jpeg_scaled(&bad, 1);
            assert!(full.is_err(), "{name}: a full decode accepts it");
            assert!(small.is_err(), "{name}: the 1/8 decode accepts what the full decode refuses");
            let code = super::inspect(&bad, super::Format::Jpeg, super::Limits::default()).err().map(|e| e.code());
            assert!(matches!(code, Some("corrupt_image" | "truncated" | "trailing_data")), "{name}: {code:?}");
        }
    }
}
