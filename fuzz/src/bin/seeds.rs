//! Writes the seed corpora into the folder given (one sub-folder per target),
//! made by the same generators the tests use: small synthetic fundus photos as
//! JPEG (plain, progressive-free 4:2:0, with EXIF orientation, with a
//! Multi-Picture extra), PNG and DICOM; manifests; RecordIO streams.
//! Run as `seeds DIR` (it ignores standard input).

use std::path::Path;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("corpus folder");
    std::fs::write(d.join(name), bytes).expect("seed");
}

fn main() {
    let dir = std::env::args_os().nth(1).expect("usage: seeds DIR");
    let dir = Path::new(&dir);
    let img = imaging::synth::render(&imaging::synth::Params::healthy(64, 48, 1));
    let jpeg = imaging::synth::to_jpeg(&img, 80);
    let exif = imaging::exif::with_orientation(&jpeg, 6);
    let mut mpf = jpeg[..2].to_vec();
    mpf.extend_from_slice(&[0xFF, 0xE2, 0, 14]);
    mpf.extend_from_slice(b"MPF\0MM\0\x2a\0\0\0\x08");
    mpf.extend_from_slice(&jpeg[2..]);
    mpf.extend_from_slice(&jpeg);
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).expect("PNG");
    let dicom = imaging::synth::to_dicom(Some(&img), 64, 48, 1);
    for (name, bytes) in [("plain.jpg", &jpeg), ("exif.jpg", &exif), ("mpf.jpg", &mpf)] {
        write(dir, "jpeg", name, bytes);
        write(dir, "inspect", name, bytes);
    }
    write(dir, "exif", "exif.jpg", &exif);
    write(dir, "exif", "tiff", &exif[12..]);
    write(dir, "png", "plain.png", &png);
    write(dir, "inspect", "plain.png", &png);
    write(dir, "dicom", "op.dcm", &dicom);
    write(dir, "inspect", "op.dcm", &dicom);
    write(dir, "manifest", "full.csv", b"path,label,eye\na.jpg,1,left\nsub/b.png,normal,right\n\"c,d.jpg\",,\n");
    write(dir, "manifest", "climb.csv", b"path\n../x.jpg\n/etc/passwd\n");
    let mut stream = vec![7u8];
    for r in [&b"{\"type\":\"SUBSCRIBED\"}"[..], b"{\"type\":\"HEARTBEAT\"}", b""] {
        stream.extend_from_slice(format!("{}\n", r.len()).as_bytes());
        stream.extend_from_slice(r);
    }
    write(dir, "recordio", "events", &stream);
}
