//! Container walk, inspection, decoding and de-identification of JPEG uploads.
fn main() {
    afl::fuzz!(|data: &[u8]| fundus_fuzz::photo(data, imaging::Format::Jpeg));
}
