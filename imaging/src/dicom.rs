//! DICOM Part 10 files (ophthalmic photography, usually JPEG-compressed or
//! native RGB pixel data): header dimensions and decoding of the first frame.

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions, file::ReadPreamble};
use dicom_pixeldata::{ConvertOptions, DecodedPixelData, PhotometricInterpretation, PixelDecoder, VoiLutOption};
use image::RgbImage;

use crate::container::Header;
use crate::inspect::Reject;

/// Explicit-VR value representations with a 4-byte length.
const LONG_VRS: [&[u8; 2]; 13] = [b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"];
/// The other value representations, with a 2-byte length.
const SHORT_VRS: [&[u8; 2]; 21] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
];
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Walks every element header of a Part 10 file (meta group and data set,
/// explicit or implicit VR little endian) and refuses a declared length
/// longer than the bytes that follow it, or odd. The parser allocates a value's
/// buffer by its declared length before reading it, so without this a
/// 10 kB file could make it allocate gigabytes (found by fuzzing).
fn check_lengths(b: &[u8]) -> Result<(), Reject> {
    let corrupt = |what: String| Reject::Corrupt(format!("DICOM: {what}"));
    let u16_at = |i: usize| b.get(i..i + 2).map(|x| u16::from_le_bytes([x[0], x[1]]));
    let u32_at = |i: usize| b.get(i..i + 4).map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]));
    let mut i = 132;
    let mut explicit = true;
    let mut in_meta = true;
    // Inside encapsulated pixel data, items are fragments of compressed
    // bytes (a JPEG, say), not elements: skipped by their length.
    let mut in_fragments = false;
    while i < b.len() {
        let (group, element) = match (u16_at(i), u16_at(i + 2)) {
            (Some(g), Some(e)) => (g, e),
            _ => return Err(Reject::Truncated("DICOM ends inside an element header".into())),
        };
        if in_meta && group != 0x0002 {
            in_meta = false;
            // The transfer syntax was read with the meta group.
        }
        // Items and delimiters (FFFE,xxxx) always have a 4-byte length, no VR.
        let mut uid = false;
        let mut unit = 1u32;
        let (len, header) = if group == 0xFFFE {
            (u32_at(i + 4), 8)
        } else if explicit || in_meta {
            let vr: [u8; 2] = b.get(i + 4..i + 6).and_then(|v| v.try_into().ok()).ok_or_else(|| Reject::Truncated("DICOM ends inside an element header".into()))?;
            if LONG_VRS.contains(&&vr) {
                (u32_at(i + 8), 12)
            } else if SHORT_VRS.contains(&&vr) {
                uid = &vr == b"UI";
                // Binary values come in whole units.
                unit = match &vr {
                    b"US" | b"SS" => 2,
                    b"UL" | b"SL" | b"FL" | b"AT" => 4,
                    b"FD" => 8,
                    _ => 1,
                };
                (u16_at(i + 6).map(u32::from), 8)
            } else {
                // A parser would have to guess its length field; refuse.
                return Err(corrupt(format!("element ({group:04X},{element:04X}) has no known value representation ({:?})", String::from_utf8_lossy(&vr))));
            }
        } else {
            (u32_at(i + 4), 8)
        };
        let len = len.ok_or_else(|| Reject::Truncated("DICOM ends inside an element header".into()))?;
        let start = i + header;
        if (group, element) == (0xFFFE, 0xE0DD) {
            in_fragments = false; // the end of a sequence or of the fragments
        }
        if len == UNDEFINED || (group == 0xFFFE && element == 0xE000 && !in_fragments) {
            // A sequence, an item or encapsulated pixel data: walk into it.
            in_fragments |= (group, element) == (0x7FE0, 0x0010);
            i = start;
            continue;
        }
        // Values have even lengths (PS3.5 7.1.1); a parser that rounds an
        // odd one up reads everything after it out of step.
        if len % 2 == 1 || len % unit != 0 {
            return Err(corrupt(format!("element ({group:04X},{element:04X}) has a length of {len}, not a whole number of values")));
        }
        let end = start.checked_add(len as usize).filter(|&e| e <= b.len()).ok_or_else(|| {
            corrupt(format!("element ({group:04X},{element:04X}) claims {len} bytes, but {} follow", b.len().saturating_sub(start)))
        })?;
        // A UID is digits and dots (NUL-padded); the parser rewrites others
        // differently on each pass (found by fuzzing).
        let value = &b[start..end];
        if uid && !value.iter().rev().skip_while(|&&c| c == 0).all(|&c| c.is_ascii_digit() || c == b'.') {
            return Err(corrupt(format!("element ({group:04X},{element:04X}) is not a UID: {:?}", String::from_utf8_lossy(value))));
        }
        // The meta group is in the default repertoire: its text is ASCII.
        // (Other bytes are rewritten as U+FFFD, which shifts the group on
        // each pass; found by fuzzing.)
        if in_meta && unit == 1 && !matches!(element, 0x0001 | 0x0102) && !value.is_ascii() {
            return Err(corrupt(format!("file meta element (0002,{element:04X}) is not ASCII")));
        }
        if in_meta && element == 0x0010 {
            let ts = String::from_utf8_lossy(&b[start..end]).trim_end_matches(['\0', ' ']).to_owned();
            explicit = match ts.as_str() {
                "1.2.840.10008.1.2" => false,
                // Deflated and big-endian data sets cannot be walked here, nor decoded below.
                "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.2" => return Err(Reject::DicomUnsupported(format!("transfer syntax {ts}"))),
                _ => true,
            };
        }
        i = end;
    }
    Ok(())
}

pub(crate) fn parse(bytes: &[u8]) -> Result<DefaultDicomObject, Reject> {
    check_lengths(bytes)?;
    OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .from_reader(bytes)
        .map_err(|e| Reject::Corrupt(format!("DICOM parser: {e}")))
}

fn uint(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<u32> {
    obj.element(tag).ok()?.to_int::<u32>().ok()
}

/// Rows and columns of the first frame; fails when there is no pixel data.
pub fn header(bytes: &[u8]) -> Result<Header, Reject> {
    let obj = parse(bytes)?;
    header_of(&obj)
}

fn header_of(obj: &DefaultDicomObject) -> Result<Header, Reject> {
    if obj.element(tags::PIXEL_DATA).is_err() {
        return Err(Reject::DicomNoPixelData);
    }
    // The pixel description the decoder trusts (it asserts on some of these).
    let (allocated, stored, samples) = (uint(obj, tags::BITS_ALLOCATED), uint(obj, tags::BITS_STORED), uint(obj, tags::SAMPLES_PER_PIXEL));
    match (allocated, stored, samples) {
        (Some(a @ (1 | 8 | 16 | 32)), Some(s), Some(1 | 3 | 4)) if (1..=a).contains(&s) => {}
        _ => {
            return Err(Reject::DicomUnsupported(format!(
                "pixel description: bits allocated {allocated:?}, bits stored {stored:?}, samples per pixel {samples:?}"
            )));
        }
    }
    match (uint(obj, tags::COLUMNS), uint(obj, tags::ROWS)) {
        (Some(w), Some(h)) if w > 0 && h > 0 => Ok(Header { width: w, height: h }),
        _ => Err(Reject::Corrupt("DICOM without Rows and Columns".into())),
    }
}

pub fn decode(bytes: &[u8]) -> Result<RgbImage, Reject> {
    let obj = parse(bytes)?;
    header_of(&obj)?;
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0').to_owned();
    // The decoder asserts rather than errs on some inputs: a panic in it is
    // a refusal of the file, never the caller's crash.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let d = obj.decode_pixel_data_frame(0).map_err(|e| Reject::DicomUnsupported(format!("transfer syntax {ts}: {e}")))?;
        to_rgb(&d).map_err(|e| Reject::DicomUnsupported(format!("pixel data of transfer syntax {ts}: {e}")))
    }))
    .map_err(|_| Reject::DicomUnsupported(format!("the decoder failed on this pixel data (transfer syntax {ts})")))??;
    Ok(decoded)
}

/// A decoded frame as 8-bit RGB, as a viewer shows it: colour samples as
/// stored (YBR converted to RGB, 16 bits narrowed to 8), grey ones through
/// the modality rescale and the file's VOI LUT, else its window, else its
/// full range; MONOCHROME1 inverted.
fn to_rgb(d: &DecodedPixelData) -> Result<RgbImage, String> {
    let err = |e: dicom_pixeldata::Error| e.to_string();
    let pi = d.photometric_interpretation();
    let rgb: Vec<u8> = match d.samples_per_pixel() {
        3 => {
            let v: Vec<u8> = match d.bits_allocated() {
                8 => d.to_vec_frame(0).map_err(err)?,
                16 => d.to_vec_frame::<u16>(0).map_err(err)?.into_iter().map(|x| (x >> 8) as u8).collect(),
                bits => return Err(format!("{bits}-bit colour samples")),
            };
            match pi {
                PhotometricInterpretation::Rgb => v,
                PhotometricInterpretation::YbrFull => v.chunks_exact(3).flat_map(|p| ybr_to_rgb(p[0], p[1], p[2])).collect(),
                pi => return Err(format!("photometric interpretation {pi}")),
            }
        }
        1 => {
            let v: Vec<u8> = match d.voi_lut_sequence().map_err(err)? {
                Some([lut, ..]) => {
                    let opts = ConvertOptions::new().with_voi_lut(VoiLutOption::Identity);
                    let rescaled: Vec<f64> = d.to_vec_frame_with_options(0, &opts).map_err(err)?;
                    through_lut(&rescaled, lut.min_pixel_value, &lut.data)
                }
                _ => {
                    let voi = if d.window().map_err(err)?.is_some() { VoiLutOption::First } else { VoiLutOption::Normalize };
                    let opts = ConvertOptions::new().with_voi_lut(voi);
                    // Deeper samples come out of the window at 16 bits.
                    match d.bits_allocated() {
                        8 => d.to_vec_frame_with_options(0, &opts).map_err(err)?,
                        _ => d.to_vec_frame_with_options::<u16>(0, &opts).map_err(err)?.into_iter().map(|g| (g >> 8) as u8).collect(),
                    }
                }
            };
            let invert = *pi == PhotometricInterpretation::Monochrome1;
            v.into_iter().flat_map(|g| [if invert { 255 - g } else { g }; 3]).collect()
        }
        spp => return Err(format!("{spp} samples per pixel")),
    };
    RgbImage::from_raw(d.columns(), d.rows(), rgb).ok_or_else(|| "fewer samples than rows × columns".into())
}

/// Modality-rescaled values through a VOI LUT (its first entry maps `first`,
/// values outside it take the nearest end), to 8 bits by the depth its
/// entries span (devices declare 16 bits for 12-bit tables).
fn through_lut(values: &[f64], first: i32, table: &[u16]) -> Vec<u8> {
    let top = table.iter().copied().max().unwrap_or(0);
    let full = f64::from(u32::MAX >> (32 - (u16::BITS - top.leading_zeros()).clamp(1, 16)));
    let last = table.len().saturating_sub(1) as f64;
    values
        .iter()
        .map(|&v| {
            let i = (v.round() - f64::from(first)).clamp(0.0, last) as usize;
            (f64::from(table[i]) * 255.0 / full).round() as u8
        })
        .collect()
}

/// Full-range YCbCr (ITU-R BT.601, as JPEG and YBR_FULL use it) to RGB.
fn ybr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (f32::from(y), f32::from(cb) - 128.0, f32::from(cr) - 128.0);
    let c = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [c(y + 1.402 * cr), c(y - 0.344_136 * cb - 0.714_136 * cr), c(y + 1.772 * cb)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_dicom() -> (Vec<u8>, RgbImage) {
        let img = crate::synth::render(&crate::synth::Params::healthy(320, 256, 5));
        let jpeg = crate::synth::to_jpeg(&img, 95);
        let decoded = image::load_from_memory(&jpeg).expect("jpeg").to_rgb8();
        (crate::synth::to_dicom_jpeg(&jpeg, 320, 256, 5), decoded)
    }

    /// The fragments of encapsulated pixel data are compressed bytes, not
    /// elements: walked past by their length, and the JPEG decoded.
    #[test]
    fn a_jpeg_compressed_dicom_is_walked_and_decoded() {
        let (file, want) = jpeg_dicom();
        check_lengths(&file).expect("a well-formed file");
        let got = decode(&file).expect("decodes");
        assert_eq!(got.dimensions(), want.dimensions());
        let diff: u64 = got.as_raw().iter().zip(want.as_raw()).map(|(a, b)| u64::from(a.abs_diff(*b))).sum();
        assert!(diff as f64 / (got.as_raw().len() as f64) < 2.0, "mean difference {}", diff as f64 / got.as_raw().len() as f64);
    }

    fn native(pixels: Vec<u8>, photometric: &str, samples: u16, w: u32, h: u32) -> Vec<u8> {
        use dicom_core::{DataElement, PrimitiveValue, VR};
        let px = DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(pixels));
        crate::synth::encode::dicom_file(Some(px), "1.2.840.10008.1.2.1", photometric, samples, w, h, 3)
    }

    /// Native YBR_FULL samples are converted to RGB, not shown as they are.
    #[test]
    fn native_ybr_full_is_converted_to_rgb() {
        let img = crate::synth::render(&crate::synth::Params::healthy(96, 64, 5));
        let ybr: Vec<u8> = img
            .pixels()
            .flat_map(|p| {
                let [r, g, b] = p.0.map(f32::from);
                let y = 0.299 * r + 0.587 * g + 0.114 * b;
                [y, 128.0 + (b - y) / 1.772, 128.0 + (r - y) / 1.402].map(|v| v.round().clamp(0.0, 255.0) as u8)
            })
            .collect();
        let got = decode(&native(ybr, "YBR_FULL", 3, 96, 64)).expect("decodes");
        let worst = got.as_raw().iter().zip(img.as_raw()).map(|(a, b)| a.abs_diff(*b)).max();
        assert!(worst <= Some(2), "largest difference from the RGB photo: {worst:?}");
    }

    /// Grey samples without a window are stretched to the full range, and
    /// MONOCHROME1 (white is zero) is inverted.
    #[test]
    fn grey_photos_are_windowed_and_monochrome1_inverted() {
        let grey: Vec<u8> = (0..64 * 32).map(|i| 20 + (i % 64) as u8 * 2).collect(); // 20..=146, left to right
        let m2 = decode(&native(grey.clone(), "MONOCHROME2", 1, 64, 32)).expect("MONOCHROME2");
        let m1 = decode(&native(grey, "MONOCHROME1", 1, 64, 32)).expect("MONOCHROME1");
        let row: Vec<u8> = (0..64).map(|x| m2.get_pixel(x, 5).0[0]).collect();
        assert!(m2.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]), "grey stays grey");
        assert!(row[0] < 3 && row[63] > 252 && row.windows(2).all(|w| w[0] < w[1]), "stretched, in order: {row:?}");
        assert!(m1.pixels().zip(m2.pixels()).all(|(a, b)| a.0[0] == 255 - b.0[0]), "MONOCHROME1 is the negative");
    }

    /// A native grey file with more elements (bit depth, window, VOI LUT) put in.
    fn grey_with(pixels: dicom_core::DataElement<dicom_object::InMemDicomObject>, w: u32, extra: Vec<dicom_core::DataElement<dicom_object::InMemDicomObject>>) -> Vec<u8> {
        let mut obj = parse(&crate::synth::encode::dicom_file(Some(pixels), "1.2.840.10008.1.2.1", "MONOCHROME2", 1, w, 2, 3)).expect("parses");
        for e in extra {
            obj.put(e);
        }
        let mut out = Vec::new();
        obj.write_all(&mut out).expect("writes");
        out
    }

    fn us(tag: dicom_core::Tag, v: &[u16]) -> dicom_core::DataElement<dicom_object::InMemDicomObject> {
        dicom_core::DataElement::new(tag, dicom_core::VR::US, dicom_core::PrimitiveValue::U16(v.into()))
    }

    /// 12-bit grey in 16-bit samples shown through its window: black below
    /// it, white above, in order within.
    #[test]
    fn sixteen_bit_grey_is_shown_through_its_window() {
        use dicom_core::{DataElement, PrimitiveValue, VR};
        let values: Vec<u16> = (0..2 * 256).map(|i| (i % 256) as u16 * 16).collect(); // 0..=4080, left to right
        let px = DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(values.into()));
        let ds = |tag, v: &str| DataElement::new(tag, VR::DS, PrimitiveValue::from(v));
        let file = grey_with(px, 256, vec![
            us(tags::BITS_ALLOCATED, &[16]),
            us(tags::BITS_STORED, &[12]),
            us(tags::HIGH_BIT, &[11]),
            ds(tags::WINDOW_CENTER, "2048"),
            ds(tags::WINDOW_WIDTH, "1024"),
        ]);
        let img = decode(&file).expect("decodes");
        let row: Vec<u8> = (0..256).map(|x| img.get_pixel(x, 1).0[0]).collect();
        // Below 1536 (x < 96) black, above 2560 (x > 160) white.
        assert!(row[..95].iter().all(|&g| g == 0) && row[161..].iter().all(|&g| g == 255), "{row:?}");
        assert!(row[96..=160].windows(2).all(|w| w[0] < w[1]), "in order inside the window: {:?}", &row[96..=160]);
    }

    /// A VOI LUT sequence, when the file has one, is what maps grey values
    /// (here a table that inverts and halves, over part of the range).
    #[test]
    fn a_voi_lut_sequence_maps_grey_samples() {
        use dicom_core::value::DataSetSequence;
        use dicom_core::{DataElement, PrimitiveValue, VR};
        let grey: Vec<u8> = (0..2 * 256).map(|i| (i % 256) as u8).collect();
        let px = DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(grey));
        // Entries for 64..=191; 8 bits (its top entry 254 spans them).
        let table: Vec<u16> = (0..128).map(|i| 254 - 2 * i).collect();
        let item = dicom_object::InMemDicomObject::from_element_iter([us(tags::LUT_DESCRIPTOR, &[128, 64, 8]), us(tags::LUT_DATA, &table)]);
        let seq = DataElement::new(tags::VOILUT_SEQUENCE, VR::SQ, DataSetSequence::from(vec![item]));
        let img = decode(&grey_with(px, 256, vec![seq])).expect("decodes");
        let row: Vec<u8> = (0..256).map(|x| img.get_pixel(x, 0).0[0]).collect();
        let want: Vec<u8> = (0..256).map(|x: i32| (254 - 2 * (x - 64).clamp(0, 127)) as u8).collect();
        assert_eq!(row, want);
    }

    #[test]
    fn a_fragment_longer_than_the_file_is_refused() {
        let (mut file, _) = jpeg_dicom();
        // The second item (the first fragment after the empty offset table): its length.
        let items: Vec<usize> = file.windows(4).enumerate().filter(|(_, w)| *w == [0xFE, 0xFF, 0x00, 0xE0]).map(|(i, _)| i).collect();
        let at = items[1] + 4;
        file[at..at + 4].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        let err = check_lengths(&file).expect_err("refused");
        assert!(err.to_string().contains("claims"), "{err}");
    }
}
