//! Just enough EXIF to honour a phone's orientation tag: find the JPEG's APP1
//! "Exif" segment, read IFD0, return tag 0x0112. Anything malformed reads as
//! "no orientation" (1): a photo is never refused for its EXIF.

fn u16_at(b: &[u8], at: usize, le: bool) -> Option<u16> {
    let x: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if le { u16::from_le_bytes(x) } else { u16::from_be_bytes(x) })
}

fn u32_at(b: &[u8], at: usize, le: bool) -> Option<u32> {
    let x: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if le { u32::from_le_bytes(x) } else { u32::from_be_bytes(x) })
}

/// The EXIF orientation (1..=8) of a JPEG; 1 when absent or unreadable.
pub fn jpeg_orientation(jpeg: &[u8]) -> u8 {
    app1_exif(jpeg).and_then(tiff_orientation).filter(|o| (1..=8).contains(o)).unwrap_or(1)
}

fn app1_exif(b: &[u8]) -> Option<&[u8]> {
    let mut i = 2;
    while i + 4 <= b.len() && b[i] == 0xFF {
        let marker = b[i + 1];
        if marker == 0xDA || marker == 0xD9 {
            return None; // image data starts: no EXIF before it
        }
        let len = u16_at(b, i + 2, false)? as usize;
        let seg = b.get(i + 4..i + 2 + len)?;
        if marker == 0xE1 && seg.starts_with(b"Exif\0\0") {
            return Some(&seg[6..]);
        }
        i += 2 + len;
    }
    None
}

fn tiff_orientation(t: &[u8]) -> Option<u8> {
    let le = match t.get(..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let ifd = u32_at(t, 4, le)? as usize;
    let entries = u16_at(t, ifd, le)? as usize;
    (0..entries.min(512)).find_map(|k| {
        let e = ifd + 2 + 12 * k;
        (u16_at(t, e, le)? == 0x0112).then(|| u16_at(t, e + 8, le).map(|v| v as u8))?
    })
}

/// Turns the decoded pixels upright as the orientation tag asks.
pub fn apply(img: image::RgbImage, orientation: u8) -> image::RgbImage {
    use image::imageops::{flip_horizontal, flip_vertical, rotate90, rotate180, rotate270};
    match orientation {
        2 => flip_horizontal(&img),
        3 => rotate180(&img),
        4 => flip_vertical(&img),
        5 => flip_horizontal(&rotate90(&img)),
        6 => rotate90(&img),
        7 => flip_horizontal(&rotate270(&img)),
        8 => rotate270(&img),
        _ => img,
    }
}

/// Inserts an EXIF segment carrying `orientation` after a JPEG's SOI (as a
/// phone camera would write it); for tests and tools.
pub fn with_orientation(jpeg: &[u8], orientation: u8) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&orientation_segment(orientation));
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A complete APP1 EXIF segment (marker included) whose only tag is the orientation.
pub fn orientation_segment(orientation: u8) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0, orientation, 0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes());
    let mut seg = b"Exif\0\0".to_vec();
    seg.extend_from_slice(&tiff);
    let mut out = vec![0xFF, 0xE1];
    out.extend_from_slice(&((seg.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&seg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_the_orientation_it_wrote() {
        let img = image::RgbImage::from_pixel(32, 16, image::Rgb([9, 9, 9]));
        let j = crate::synth::to_jpeg(&img, 80);
        assert_eq!(jpeg_orientation(&j), 1);
        for o in 1..=8 {
            assert_eq!(jpeg_orientation(&with_orientation(&j, o)), o);
        }
        assert_eq!(apply(img, 6).dimensions(), (16, 32));
    }
}
