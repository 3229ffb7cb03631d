//! Container-level checks that need no pixel decoding: which format the bytes
//! are, their declared dimensions, whether the file is complete, and whether
//! anything follows its end marker (a polyglot or a smuggled payload).

use crate::inspect::Reject;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Dicom,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Dicom => "dicom",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Dicom => "dcm",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Dicom => "application/dicom",
        }
    }

    pub fn from_media_type(mt: &str) -> Option<Format> {
        let essence = mt.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "image/jpeg" | "image/jpg" => Some(Format::Jpeg),
            "image/png" => Some(Format::Png),
            "application/dicom" => Some(Format::Dicom),
            _ => None,
        }
    }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The format the magic bytes announce, if any.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(PNG_SIGNATURE) {
        Some(Format::Png)
    } else if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        Some(Format::Dicom)
    } else {
        None
    }
}

/// Dimensions read from the container header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]) as usize)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Most further images a Multi-Picture file may carry (phones write one or two).
const MAX_MPF_IMAGES: usize = 8;

/// Walks the JPEG marker structure to its EOI: reads the frame header's
/// dimensions, detects truncation, and rejects bytes after the end unless they
/// are padding or the further images of a Multi-Picture (MPF) file, which
/// phone cameras write for gain maps and depth maps. Those must be complete
/// JPEGs themselves, walked the same way, with nothing but padding after the
/// last: an MPF-looking segment does not open a door to an arbitrary payload.
pub fn jpeg_header(b: &[u8]) -> Result<Header, Reject> {
    let (dims, end, has_mpf) = jpeg_walk(b)?;
    let mut rest = &b[end..];
    if has_mpf {
        let mut n = 0;
        while rest.starts_with(&[0xFF, 0xD8, 0xFF]) {
            n += 1;
            if n > MAX_MPF_IMAGES {
                return Err(Reject::TrailingData(format!("more than {MAX_MPF_IMAGES} images follow the first")));
            }
            let (_, len, _) = jpeg_walk(rest)
                .map_err(|e| Reject::TrailingData(format!("image {} of the Multi-Picture file is not a complete JPEG: {e}", n + 1)))?;
            rest = &rest[len..];
        }
    }
    if !rest.iter().all(|&x| x == 0 || x == 0xFF) {
        return Err(Reject::TrailingData(format!("{} bytes follow the JPEG end-of-image marker", rest.len())));
    }
    Ok(dims)
}

/// One JPEG's marker walk: its dimensions, the offset just past its EOI, and
/// whether it carries an MPF segment.
fn jpeg_walk(b: &[u8]) -> Result<(Header, usize, bool), Reject> {
    jpeg_walk_with(b, |_, _| {})
}

/// Calls `each` with every marker after SOI up to and including EOI, and the
/// bytes it covers: the marker, its segment and, for a scan, the
/// entropy-coded data after it (fill bytes before a marker are left out).
pub(crate) fn jpeg_pieces(b: &[u8], each: impl FnMut(u8, &[u8])) -> Result<(), Reject> {
    jpeg_walk_with(b, each).map(|_| ())
}

fn jpeg_walk_with(b: &[u8], mut each: impl FnMut(u8, &[u8])) -> Result<(Header, usize, bool), Reject> {
    let truncated = || Reject::Truncated("JPEG ends before its end-of-image marker".into());
    let mut dims = None;
    let mut has_mpf = false;
    let mut i = 2;
    let end = loop {
        if *b.get(i).ok_or_else(truncated)? != 0xFF {
            return Err(Reject::Corrupt(format!("JPEG marker expected at byte {i}")));
        }
        while b.get(i + 1) == Some(&0xFF) {
            i += 1; // fill bytes
        }
        let marker = *b.get(i + 1).ok_or_else(truncated)?;
        let start = i;
        i += 2;
        match marker {
            0xD9 => {
                each(marker, &b[start..i]);
                break i;
            }
            0x01 | 0xD0..=0xD7 => {
                each(marker, &b[start..i]);
                continue;
            }
            _ => {}
        }
        let len = be16(b, i).ok_or_else(truncated)?;
        if len < 2 {
            return Err(Reject::Corrupt("JPEG segment with a length below 2".into()));
        }
        let seg = b.get(i + 2..i + len).ok_or_else(truncated)?;
        match marker {
            // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let (h, w) = (be16(seg, 1).ok_or_else(truncated)?, be16(seg, 3).ok_or_else(truncated)?);
                if h == 0 || w == 0 {
                    return Err(Reject::Corrupt("JPEG frame header with a zero dimension".into()));
                }
                dims.get_or_insert(Header { width: w as u32, height: h as u32 });
            }
            0xE2 if seg.starts_with(b"MPF\0") => has_mpf = true,
            _ => {}
        }
        i += len;
        if marker == 0xDA {
            // Entropy-coded data runs to the next marker that is not a
            // stuffed zero or a restart marker.
            loop {
                let at = i + memchr_ff(&b[i.min(b.len())..]).ok_or_else(truncated)?;
                match *b.get(at + 1).ok_or_else(truncated)? {
                    0x00 | 0xD0..=0xD7 | 0xFF => i = at + 1,
                    _ => {
                        i = at;
                        break;
                    }
                }
            }
        }
        each(marker, &b[start..i]);
    };
    let dims = dims.ok_or_else(|| Reject::Corrupt("JPEG without a frame header".into()))?;
    Ok((dims, end, has_mpf))
}

fn memchr_ff(b: &[u8]) -> Option<usize> {
    memchr::memchr(0xFF, b)
}

/// Walks the PNG chunks to IEND: IHDR dimensions, truncation, trailing bytes.
pub fn png_header(b: &[u8]) -> Result<Header, Reject> {
    let truncated = || Reject::Truncated("PNG ends before its IEND chunk".into());
    let mut i = PNG_SIGNATURE.len();
    let mut dims = None;
    loop {
        let len = be32(b, i).ok_or_else(truncated)? as usize;
        let kind = b.get(i + 4..i + 8).ok_or_else(truncated)?;
        let data = b.get(i + 8..i + 8 + len).ok_or_else(truncated)?;
        b.get(i + 8 + len..i + 12 + len).ok_or_else(truncated)?; // CRC
        if dims.is_none() {
            if kind != b"IHDR" || len != 13 {
                return Err(Reject::Corrupt("PNG does not start with an IHDR chunk".into()));
            }
            let (w, h) = (be32(data, 0).unwrap_or(0), be32(data, 4).unwrap_or(0));
            if w == 0 || h == 0 {
                return Err(Reject::Corrupt("PNG header with a zero dimension".into()));
            }
            dims = Some(Header { width: w, height: h });
        }
        i += 12 + len;
        if kind == b"IEND" {
            break;
        }
    }
    if i < b.len() {
        return Err(Reject::TrailingData(format!("{} bytes follow the PNG IEND chunk", b.len() - i)));
    }
    dims.ok_or_else(truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_jpeg() -> Vec<u8> {
        let img = image::RgbImage::from_pixel(16, 8, image::Rgb([120, 40, 20]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .expect("encode");
        out
    }

    #[test]
    fn jpeg_walk_reads_dimensions_and_rejects_truncation_and_trailers() {
        let j = tiny_jpeg();
        assert_eq!(sniff(&j), Some(Format::Jpeg));
        assert_eq!(jpeg_header(&j).expect("valid"), Header { width: 16, height: 8 });
        assert!(matches!(jpeg_header(&j[..j.len() - 2]), Err(Reject::Truncated(_))));
        let mut zip = j.clone();
        zip.extend_from_slice(b"PK\x03\x04payload");
        assert!(matches!(jpeg_header(&zip), Err(Reject::TrailingData(_))));
        let mut padded = j;
        padded.extend_from_slice(&[0, 0, 0]);
        assert!(jpeg_header(&padded).is_ok());
    }

    /// The first image with an APP2 "MPF" segment inserted after SOI.
    fn with_mpf_segment(j: &[u8]) -> Vec<u8> {
        let payload = b"MPF\0MM\0\x2a\0\0\0\x08";
        let mut out = j[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE2]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(&j[2..]);
        out
    }

    #[test]
    fn a_multi_picture_file_may_carry_only_complete_jpegs_after_the_first() {
        let j = tiny_jpeg();
        let first = with_mpf_segment(&j);
        // A genuine MPF file: further complete images, then padding.
        let mut mpf = first.clone();
        mpf.extend_from_slice(&j);
        mpf.extend_from_slice(&j);
        mpf.extend_from_slice(&[0, 0]);
        assert_eq!(jpeg_header(&mpf).expect("valid MPF"), Header { width: 16, height: 8 });
        // A payload behind the MPF-looking segment, with or without a JPEG start in front.
        let mut script = first.clone();
        script.extend_from_slice(b"<script>alert(1)</script>");
        assert!(matches!(jpeg_header(&script), Err(Reject::TrailingData(_))));
        let mut disguised = first.clone();
        disguised.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
        disguised.extend_from_slice(b"#!/bin/sh\nrm -rf /\n");
        assert!(matches!(jpeg_header(&disguised), Err(Reject::TrailingData(_))));
        let mut after = mpf[..mpf.len() - 2].to_vec();
        after.extend_from_slice(b"PK\x03\x04zip");
        assert!(matches!(jpeg_header(&after), Err(Reject::TrailingData(_))));
        // Without the MPF segment, a second image is a trailer like any other.
        let mut two = j.clone();
        two.extend_from_slice(&j);
        assert!(matches!(jpeg_header(&two), Err(Reject::TrailingData(_))));
        // Bounded: no endless chain of images.
        let mut many = first;
        for _ in 0..=MAX_MPF_IMAGES {
            many.extend_from_slice(&j);
        }
        assert!(matches!(jpeg_header(&many), Err(Reject::TrailingData(_))));
    }

    #[test]
    fn png_walk_rejects_trailers() {
        let img = image::RgbImage::from_pixel(10, 20, image::Rgb([1, 2, 3]));
        let mut p = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut p), image::ImageFormat::Png).expect("encode");
        assert_eq!(png_header(&p).expect("valid"), Header { width: 10, height: 20 });
        assert!(matches!(png_header(&p[..p.len() - 1]), Err(Reject::Truncated(_))));
        p.push(b'<');
        assert!(matches!(png_header(&p), Err(Reject::TrailingData(_))));
    }
}
