//! The EXIF orientation reader, on JPEG segments and on bare TIFF blocks.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let o = imaging::exif::jpeg_orientation(data);
        assert!((1..=8).contains(&o));
        let mut wrapped = vec![0xFF, 0xD8, 0xFF, 0xE1];
        wrapped.extend_from_slice(&((data.len().min(65_000) + 8) as u16).to_be_bytes());
        wrapped.extend_from_slice(b"Exif\0\0");
        wrapped.extend_from_slice(&data[..data.len().min(65_000)]);
        assert!((1..=8).contains(&imaging::exif::jpeg_orientation(&wrapped)));
    });
}
