//! De-identification of an upload before it is stored: what screening does
//! not need is removed, losslessly (no pixel is re-encoded), and
//! deterministically (the same upload always gives the same bytes, so a
//! retry finds the photo it stored the first time).
//!
//! - JPEG: every APPn and COM segment goes (EXIF with its GPS position and
//!   camera serial, XMP, maker notes, thumbnails, Multi-Picture extras) except
//!   JFIF and Adobe's colour-transform flag (each cut to its fixed fields, so
//!   a JFIF thumbnail or text appended to either goes) and the ICC colour
//!   profile; the EXIF
//!   orientation comes back as a minimal EXIF segment holding only that tag.
//!   Anything after the first image's end marker goes too.
//! - PNG: only the chunks that define the pixels and their colours stay
//!   (IHDR, PLTE, IDAT, IEND, tRNS, cHRM, gAMA, iCCP, sBIT, sRGB, cICP);
//!   text, EXIF, time and private chunks go.
//! - DICOM: the basic application level confidentiality profile of PS3.15
//!   Annex E: identifying attributes emptied or removed, UIDs replaced by
//!   derived ones, private groups, overlays and curves removed, the preamble
//!   zeroed, and Patient Identity Removed set. Pixel data is copied as it was.

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::header::Header as _;
use dicom_core::{DataElement, Tag, VR};
use dicom_object::InMemDicomObject;
use sha2::{Digest, Sha256};

use crate::container::{self, Format, sniff};
use crate::exif;
use crate::inspect::Reject;

/// Checks the container (type, truncation, trailers: the same checks as
/// `inspect` runs before decoding) and returns the bytes to store.
pub fn deidentify(bytes: &[u8], declared: Format) -> Result<Vec<u8>, Reject> {
    if bytes.is_empty() {
        return Err(Reject::Empty);
    }
    let actual = sniff(bytes).ok_or(Reject::UnknownFormat)?;
    if actual != declared {
        return Err(Reject::TypeMismatch { declared: declared.media_type(), actual: actual.media_type() });
    }
    match actual {
        Format::Jpeg => jpeg(bytes),
        Format::Png => png(bytes),
        Format::Dicom => dicom(bytes),
    }
}

fn jpeg(b: &[u8]) -> Result<Vec<u8>, Reject> {
    container::jpeg_header(b)?; // trailers and MPF extras are refused or dropped below
    let orientation = exif::jpeg_orientation(b);
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    if orientation != 1 {
        out.extend_from_slice(&exif::orientation_segment(orientation));
    }
    // JFIF and Adobe segments are rewritten to their fixed fields: bytes a
    // writer appends after them (a JFIF thumbnail, or any text) go.
    container::jpeg_pieces(b, |marker, piece| {
        let payload = piece.get(4..).unwrap_or(&[]);
        match marker {
            0xD8 => {} // written above
            // "JFIF\0", version, units, densities; then no thumbnail (0 x 0).
            0xE0 if payload.starts_with(b"JFIF\0") && payload.len() >= 14 => segment(&mut out, 0xE0, &[&payload[..12], &[0, 0][..]].concat()),
            // "Adobe", version, two flag words, the colour transform.
            0xEE if payload.starts_with(b"Adobe") && payload.len() >= 12 => segment(&mut out, 0xEE, &payload[..12]),
            0xE2 if payload.starts_with(b"ICC_PROFILE\0") => out.extend_from_slice(piece),
            0xE0..=0xEF | 0xFE => {}
            _ => out.extend_from_slice(piece),
        }
    })?;
    Ok(out)
}

/// Writes a JPEG marker segment.
fn segment(out: &mut Vec<u8>, marker: u8, fields: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((fields.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(fields);
}

/// Chunks that define the pixels and how to show their colours.
const PNG_KEPT: [&[u8; 4]; 11] = [b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB", b"cICP"];

fn png(b: &[u8]) -> Result<Vec<u8>, Reject> {
    container::png_header(b)?;
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..8]);
    let mut i = 8;
    while i < b.len() {
        // png_header has checked every length and that IEND ends the file.
        let len = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let chunk = &b[i..i + 12 + len];
        if PNG_KEPT.iter().any(|k| &chunk[4..8] == *k) {
            out.extend_from_slice(chunk);
        }
        i += 12 + len;
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum Action {
    /// Z: kept, with an empty value (the attribute is required).
    Empty,
    /// X: removed.
    Remove,
    /// U: replaced by a UID derived from it.
    Uid,
}
use Action::*;

/// PS3.15 Annex E, the basic profile's rows for attributes an ophthalmic
/// photograph can carry, with their actions (D taken as Z: no dummy values).
const PROFILE: &[(u16, u16, Action)] = &[
    (0x0008, 0x0014, Uid),    // Instance Creator UID
    (0x0008, 0x0018, Uid),    // SOP Instance UID
    (0x0008, 0x0020, Empty),  // Study Date
    (0x0008, 0x0021, Remove), // Series Date
    (0x0008, 0x0022, Remove), // Acquisition Date
    (0x0008, 0x0023, Empty),  // Content Date
    (0x0008, 0x002A, Remove), // Acquisition DateTime
    (0x0008, 0x0030, Empty),  // Study Time
    (0x0008, 0x0031, Remove), // Series Time
    (0x0008, 0x0032, Remove), // Acquisition Time
    (0x0008, 0x0033, Empty),  // Content Time
    (0x0008, 0x0050, Empty),  // Accession Number
    (0x0008, 0x0080, Remove), // Institution Name
    (0x0008, 0x0081, Remove), // Institution Address
    (0x0008, 0x0082, Remove), // Institution Code Sequence
    (0x0008, 0x0090, Empty),  // Referring Physician's Name
    (0x0008, 0x0092, Remove), // Referring Physician's Address
    (0x0008, 0x0094, Remove), // Referring Physician's Telephone Numbers
    (0x0008, 0x1010, Remove), // Station Name
    (0x0008, 0x1030, Remove), // Study Description
    (0x0008, 0x103E, Remove), // Series Description
    (0x0008, 0x1040, Remove), // Institutional Department Name
    (0x0008, 0x1048, Remove), // Physician(s) of Record
    (0x0008, 0x1050, Remove), // Performing Physician's Name
    (0x0008, 0x1060, Remove), // Name of Physician(s) Reading Study
    (0x0008, 0x1070, Remove), // Operators' Name
    (0x0008, 0x1080, Remove), // Admitting Diagnoses Description
    (0x0008, 0x1110, Remove), // Referenced Study Sequence
    (0x0008, 0x1120, Remove), // Referenced Patient Sequence
    (0x0008, 0x1140, Remove), // Referenced Image Sequence
    (0x0008, 0x1155, Uid),    // Referenced SOP Instance UID
    (0x0008, 0x2111, Remove), // Derivation Description
    (0x0008, 0x4000, Remove), // Identifying Comments
    (0x0010, 0x0010, Empty),  // Patient's Name
    (0x0010, 0x0020, Empty),  // Patient ID
    (0x0010, 0x0021, Remove), // Issuer of Patient ID
    (0x0010, 0x0030, Empty),  // Patient's Birth Date
    (0x0010, 0x0032, Remove), // Patient's Birth Time
    (0x0010, 0x0040, Empty),  // Patient's Sex
    (0x0010, 0x0050, Remove), // Patient's Insurance Plan Code Sequence
    (0x0010, 0x1000, Remove), // Other Patient IDs
    (0x0010, 0x1001, Remove), // Other Patient Names
    (0x0010, 0x1002, Remove), // Other Patient IDs Sequence
    (0x0010, 0x1005, Remove), // Patient's Birth Name
    (0x0010, 0x1010, Remove), // Patient's Age
    (0x0010, 0x1020, Remove), // Patient's Size
    (0x0010, 0x1030, Remove), // Patient's Weight
    (0x0010, 0x1040, Remove), // Patient's Address
    (0x0010, 0x1060, Remove), // Patient's Mother's Birth Name
    (0x0010, 0x1080, Remove), // Military Rank
    (0x0010, 0x1081, Remove), // Branch of Service
    (0x0010, 0x1090, Remove), // Medical Record Locator
    (0x0010, 0x2000, Remove), // Medical Alerts
    (0x0010, 0x2110, Remove), // Allergies
    (0x0010, 0x2154, Remove), // Patient's Telephone Numbers
    (0x0010, 0x2160, Remove), // Ethnic Group
    (0x0010, 0x2180, Remove), // Occupation
    (0x0010, 0x21A0, Remove), // Smoking Status
    (0x0010, 0x21B0, Remove), // Additional Patient History
    (0x0010, 0x21C0, Remove), // Pregnancy Status
    (0x0010, 0x21D0, Remove), // Last Menstrual Date
    (0x0010, 0x21F0, Remove), // Patient's Religious Preference
    (0x0010, 0x2203, Remove), // Patient's Sex Neutered
    (0x0010, 0x4000, Remove), // Patient Comments
    (0x0018, 0x1000, Remove), // Device Serial Number
    (0x0018, 0x1002, Uid),    // Device UID
    (0x0018, 0x1030, Remove), // Protocol Name
    (0x0020, 0x000D, Uid),    // Study Instance UID
    (0x0020, 0x000E, Uid),    // Series Instance UID
    (0x0020, 0x0010, Empty),  // Study ID
    (0x0020, 0x0052, Uid),    // Frame of Reference UID
    (0x0020, 0x0200, Uid),    // Synchronization Frame of Reference UID
    (0x0020, 0x4000, Remove), // Image Comments
    (0x0032, 0x1032, Remove), // Requesting Physician
    (0x0032, 0x1060, Remove), // Requested Procedure Description
    (0x0032, 0x4000, Remove), // Study Comments
    (0x0038, 0x0010, Remove), // Admission ID
    (0x0038, 0x0300, Remove), // Current Patient Location
    (0x0038, 0x0400, Remove), // Patient's Institution Residence
    (0x0038, 0x0500, Remove), // Patient State
    (0x0038, 0x4000, Remove), // Visit Comments
    (0x0040, 0x0009, Remove), // Scheduled Procedure Step ID
    (0x0040, 0x0244, Remove), // Performed Procedure Step Start Date
    (0x0040, 0x0253, Remove), // Performed Procedure Step ID
    (0x0040, 0x0254, Remove), // Performed Procedure Step Description
    (0x0040, 0x0275, Remove), // Request Attributes Sequence
    (0x0040, 0x1001, Remove), // Requested Procedure ID
    (0x0040, 0xA730, Remove), // Content Sequence
    (0x0088, 0x0140, Uid),    // Storage Media File-set UID
    (0x0400, 0x0561, Remove), // Original Attributes Sequence
    (0x3006, 0x0024, Uid),    // Referenced Frame of Reference UID
];

/// `2.25.` and a number derived from the original UID: the same original
/// always maps to the same replacement, so references within a study still
/// agree and a retried upload gives the same file.
fn derived_uid(uid: &str) -> String {
    let h = Sha256::digest(format!("fundus-deid:{}", uid.trim_end_matches(['\0', ' '])));
    let n = u128::from_be_bytes(h[..16].try_into().unwrap_or_default());
    format!("2.25.{n}")
}

/// Recorded in De-identification Method: a file that carries it was made by
/// `deidentify`, and its UIDs are already derived ones (so that a second
/// pass changes nothing).
const METHOD: &str = "PS3.15 Annex E basic profile (Fundus)";

fn scrub(obj: &mut InMemDicomObject, replace_uids: bool) {
    // Private groups (odd group numbers), curves (50xx) and overlays (60xx).
    obj.retain(|e| {
        let g = e.tag().group();
        g % 2 == 0 && !(0x5000..=0x50FF).contains(&g) && !(0x6000..=0x60FF).contains(&g)
    });
    for &(group, element, action) in PROFILE {
        let tag = Tag(group, element);
        let Some(e) = obj.get(tag) else { continue };
        match action {
            Remove => {
                obj.remove_element(tag);
            }
            Empty => {
                let vr = e.vr();
                obj.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
            }
            Uid if !replace_uids => {}
            Uid => {
                let new = e.to_str().map(|s| derived_uid(&s)).unwrap_or_else(|_| derived_uid(""));
                obj.put(DataElement::new(tag, VR::UI, PrimitiveValue::from(new)));
            }
        }
    }
    let sequences: Vec<Tag> = obj.iter().filter(|e| e.items().is_some()).map(|e| e.tag()).collect();
    for tag in sequences {
        obj.update_value(tag, |v| {
            if let Value::Sequence(seq) = v {
                seq.items_mut().iter_mut().for_each(|item| scrub(item, replace_uids));
            }
        });
    }
}

fn dicom(b: &[u8]) -> Result<Vec<u8>, Reject> {
    let mut file = crate::dicom::parse(b)?;
    let ours = file.get(Tag(0x0012, 0x0063)).and_then(|e| e.to_str().ok()).is_some_and(|m| m.trim_end_matches(['\0', ' ']) == METHOD);
    scrub(&mut file, !ours);
    file.put(DataElement::new(Tag(0x0012, 0x0062), VR::CS, PrimitiveValue::from("YES")));
    file.put(DataElement::new(Tag(0x0012, 0x0063), VR::LO, PrimitiveValue::from(METHOD)));
    let sop = file.get(Tag(0x0008, 0x0018)).and_then(|e| e.to_str().ok()).map(|s| s.into_owned());
    file.update_meta(|m| {
        if let Some(s) = sop {
            m.media_storage_sop_instance_uid = s;
        }
        m.source_application_entity_title = None;
        m.sending_application_entity_title = None;
        m.receiving_application_entity_title = None;
        m.private_information_creator_uid = None;
        m.private_information = None;
    });
    let mut out = Vec::with_capacity(b.len());
    file.write_all(&mut out).map_err(|e| Reject::Corrupt(format!("DICOM writer: {e}")))?;
    // What is stored must read back (fuzzing found meta groups the parser
    // takes in but cannot read once rewritten).
    crate::dicom::parse(&out).map_err(|e| Reject::Corrupt(format!("DICOM: the de-identified file does not read back ({e})")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_object::{OpenFileOptions, file::ReadPreamble};

    fn jpeg_with(segments: &[(u8, &[u8])]) -> Vec<u8> {
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 90]));
        let j = crate::synth::to_jpeg(&img, 90);
        let mut out = j[..2].to_vec();
        for (marker, payload) in segments {
            out.extend_from_slice(&[0xFF, *marker]);
            out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
            out.extend_from_slice(payload);
        }
        out.extend_from_slice(&j[2..]);
        out
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn jpeg_loses_exif_xmp_and_comments_but_keeps_pixels_orientation_and_colour() {
        let exif = exif::with_orientation(&jpeg_with(&[]), 6);
        // Orientation 6, with a GPS block and a serial number after it.
        let mut exif_seg = exif[6..6 + u16::from_be_bytes([exif[4], exif[5]]) as usize - 2].to_vec();
        exif_seg.extend_from_slice(b"GPS 51.5072N 0.1276W SERIAL-SN123456");
        let icc = b"ICC_PROFILE\0\x01\x01colour profile bytes";
        let original = jpeg_with(&[
            (0xE1, &exif_seg),
            (0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>patient Jane Doe</x:xmpmeta>"),
            (0xE2, icc),
            (0xED, b"Photoshop 3.0\08BIM caption"),
            (0xFE, b"comment: John Smith 1950-01-01"),
        ]);
        let out = deidentify(&original, Format::Jpeg).expect("de-identified");
        for secret in [&b"SERIAL"[..], b"GPS", b"Jane", b"John", b"8BIM"] {
            assert!(!contains(&out, secret), "{} survived", String::from_utf8_lossy(secret));
        }
        assert!(contains(&out, icc), "the colour profile is kept");
        assert_eq!(exif::jpeg_orientation(&out), 6, "orientation is kept");
        let (a, b) = (crate::decode_rgb(&original, Format::Jpeg).expect("a"), crate::decode_rgb(&out, Format::Jpeg).expect("b"));
        assert_eq!(a.as_raw(), b.as_raw(), "pixels are untouched");
        assert_eq!(deidentify(&out, Format::Jpeg).expect("again"), out, "idempotent");
        assert_eq!(deidentify(&original, Format::Jpeg).expect("same"), out, "deterministic");
    }

    /// JFIF and Adobe segments are kept for their fields only: a thumbnail
    /// or text a writer hides after them does not survive.
    #[test]
    fn jfif_and_adobe_segments_keep_only_their_fields() {
        let mut jfif = b"JFIF\0\x01\x02\x01\x00\x48\x00\x48".to_vec();
        jfif.extend_from_slice(&[2, 1]); // a 2 x 1 thumbnail...
        jfif.extend_from_slice(b"Jane Doe"); // ...whose "pixels" are a name
        let original = jpeg_with(&[(0xE0, &jfif), (0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01patient 12345")]);
        let out = deidentify(&original, Format::Jpeg).expect("de-identified");
        assert!(!contains(&out, b"Jane") && !contains(&out, b"12345"), "hidden text survived");
        assert!(contains(&out, b"\xFF\xE0\x00\x10JFIF\0\x01\x02\x01\x00\x48\x00\x48\x00\x00"), "JFIF fields are kept");
        assert!(contains(&out, b"\xFF\xEE\x00\x0EAdobe\x00\x64\x00\x00\x00\x00\x01"), "the colour transform is kept");
        let (a, b) = (crate::decode_rgb(&original, Format::Jpeg).expect("a"), crate::decode_rgb(&out, Format::Jpeg).expect("b"));
        assert_eq!(a.as_raw(), b.as_raw(), "pixels are untouched");
        assert_eq!(deidentify(&out, Format::Jpeg).expect("again"), out, "idempotent");
    }

    #[test]
    fn jpeg_trailers_are_still_refused_and_mpf_extras_dropped() {
        let plain = jpeg_with(&[]);
        let mut trailer = plain.clone();
        trailer.extend_from_slice(b"<script>");
        assert!(matches!(deidentify(&trailer, Format::Jpeg), Err(Reject::TrailingData(_))));
        let mut mpf = jpeg_with(&[(0xE2, b"MPF\0MM\0\x2a\0\0\0\x08")]);
        mpf.extend_from_slice(&plain);
        let out = deidentify(&mpf, Format::Jpeg).expect("genuine MPF");
        assert_eq!(out, deidentify(&plain, Format::Jpeg).expect("plain"), "only the first image, without its MPF segment");
        assert!(matches!(deidentify(&plain, Format::Png), Err(Reject::TypeMismatch { .. })));
    }

    fn png_with_text() -> Vec<u8> {
        let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut p = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut p), image::ImageFormat::Png).expect("encode");
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            let crc = crc32fast::hash(&c[4..]);
            c.extend_from_slice(&crc.to_be_bytes());
            c
        };
        let ihdr_end = 8 + 12 + 13;
        let mut out = p[..ihdr_end].to_vec();
        out.extend(chunk(b"tEXt", b"Author\0Jane Doe"));
        out.extend(chunk(b"iTXt", b"Comment\0\0\0\0\0patient 12345"));
        out.extend(chunk(b"gAMA", &45455u32.to_be_bytes()));
        out.extend(chunk(b"tIME", &[7, 234, 1, 2, 3, 4, 5]));
        out.extend_from_slice(&p[ihdr_end..]);
        out
    }

    #[test]
    fn png_keeps_only_pixel_and_colour_chunks() {
        let original = png_with_text();
        crate::decode_rgb(&original, Format::Png).expect("the test PNG is valid");
        let out = deidentify(&original, Format::Png).expect("de-identified");
        for secret in [&b"Jane"[..], b"12345", b"tEXt", b"iTXt", b"tIME"] {
            assert!(!contains(&out, secret), "{} survived", String::from_utf8_lossy(secret));
        }
        assert!(contains(&out, b"gAMA"));
        let (a, b) = (crate::decode_rgb(&original, Format::Png).expect("a"), crate::decode_rgb(&out, Format::Png).expect("b"));
        assert_eq!(a.as_raw(), b.as_raw());
        assert_eq!(deidentify(&out, Format::Png).expect("again"), out);
    }

    fn dicom_with_identity() -> Vec<u8> {
        use dicom_object::FileMetaTableBuilder;
        const OP_8BIT: &str = "1.2.840.10008.5.1.4.1.1.77.1.5.1";
        let (w, h) = (32u16, 24u16);
        let pixels: Vec<u8> = (0..w as usize * h as usize * 3).map(|i| (i % 251) as u8).collect();
        let s = |g, e, vr, v: &str| DataElement::new(Tag(g, e), vr, PrimitiveValue::from(v));
        let u = |g, e, v: u16| DataElement::new(Tag(g, e), VR::US, PrimitiveValue::from(v));
        let mut nested = InMemDicomObject::new_empty();
        nested.put(s(0x0010, 0x0020, VR::LO, "NESTED-ID-777"));
        nested.put(s(0x0008, 0x1155, VR::UI, "1.2.3.99"));
        let mut obj = InMemDicomObject::from_element_iter([
            s(0x0008, 0x0016, VR::UI, OP_8BIT),
            s(0x0008, 0x0018, VR::UI, "1.2.3.4.5"),
            s(0x0008, 0x0060, VR::CS, "OP"),
            s(0x0008, 0x0080, VR::LO, "St Elsewhere Eye Clinic"),
            s(0x0010, 0x0010, VR::PN, "Doe^Jane"),
            s(0x0010, 0x0020, VR::LO, "MRN-0042"),
            s(0x0010, 0x0030, VR::DA, "19500101"),
            s(0x0018, 0x1000, VR::LO, "CAM-SERIAL-9"),
            s(0x0009, 0x0010, VR::LO, "ACME private"),
            s(0x0009, 0x1001, VR::LO, "private note Jane"),
            s(0x0020, 0x000D, VR::UI, "1.2.3.4"),
            u(0x0028, 0x0002, 3),
            s(0x0028, 0x0004, VR::CS, "RGB"),
            u(0x0028, 0x0006, 0),
            u(0x0028, 0x0010, h),
            u(0x0028, 0x0011, w),
            u(0x0028, 0x0100, 8),
            u(0x0028, 0x0101, 8),
            u(0x0028, 0x0102, 7),
            u(0x0028, 0x0103, 0),
            DataElement::new(Tag(0x7FE0, 0x0010), VR::OB, PrimitiveValue::from(pixels)),
        ]);
        obj.put(DataElement::new(
            Tag(0x0040, 0x0260), // Performed Protocol Code Sequence: kept, but scrubbed inside
            VR::SQ,
            Value::from(dicom_core::value::DataSetSequence::from(vec![nested])),
        ));
        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax("1.2.840.10008.1.2.1")
                    .media_storage_sop_class_uid(OP_8BIT)
                    .media_storage_sop_instance_uid("1.2.3.4.5"),
            )
            .expect("meta");
        let mut out = Vec::new();
        file.write_all(&mut out).expect("write");
        out
    }

    #[test]
    fn dicom_follows_the_basic_profile_and_keeps_the_pixels() {
        let original = dicom_with_identity();
        let out = deidentify(&original, Format::Dicom).expect("de-identified");
        for secret in [&b"Doe^Jane"[..], b"MRN-0042", b"19500101", b"CAM-SERIAL", b"Elsewhere", b"private note", b"NESTED-ID", b"1.2.3.4.5", b"1.2.3.99"] {
            assert!(!contains(&out, secret), "{} survived", String::from_utf8_lossy(secret));
        }
        let obj = OpenFileOptions::new().read_preamble(ReadPreamble::Always).from_reader(&out[..]).expect("parse");
        assert_eq!(obj.get(Tag(0x0010, 0x0010)).map(|e| e.to_str().unwrap_or_default().trim().to_owned()), Some(String::new()), "the name is emptied, not dropped");
        assert_eq!(obj.get(Tag(0x0012, 0x0062)).and_then(|e| e.to_str().ok()).as_deref().map(str::trim), Some("YES"));
        let sop = obj.get(Tag(0x0008, 0x0018)).and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches('\0').to_owned());
        assert_eq!(sop.as_deref(), Some(derived_uid("1.2.3.4.5").as_str()));
        assert_eq!(obj.meta().media_storage_sop_instance_uid().trim_end_matches('\0'), derived_uid("1.2.3.4.5"));
        let (a, b) = (crate::decode_rgb(&original, Format::Dicom).expect("a"), crate::decode_rgb(&out, Format::Dicom).expect("b"));
        assert_eq!(a.as_raw(), b.as_raw(), "pixels are untouched");
        assert_eq!(deidentify(&original, Format::Dicom).expect("same"), out, "deterministic");
        assert!(deidentify(&out, Format::Dicom).expect("again") == out, "a second pass changes nothing");
    }

    #[test]
    fn derived_uids_are_stable_valid_and_distinct() {
        let (a, b) = (derived_uid("1.2.3.4"), derived_uid("1.2.3.5"));
        assert_ne!(a, b);
        assert_eq!(a, derived_uid("1.2.3.4\0"));
        assert!(a.len() <= 64 && a.starts_with("2.25.") && a[5..].bytes().all(|c| c.is_ascii_digit()), "{a}");
    }
}
