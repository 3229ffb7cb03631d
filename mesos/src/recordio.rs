//! RecordIO, the framing of the SUBSCRIBE stream: `<decimal byte count>\n<record>`
//! repeated, with nothing between records. Chunk boundaries mean nothing (a proxy
//! may split a record anywhere, or deliver several at once), so the decoder
//! counts bytes and never looks for line ends inside a record.

use bytes::{Buf, Bytes, BytesMut};

/// A length prefix longer than this many digits is garbage, not a size.
const MAX_DIGITS: usize = 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("RecordIO: the length prefix {0:?} is not a positive decimal number")]
    BadLength(String),
    #[error("RecordIO: a record of {0} bytes is larger than the {1}-byte limit")]
    TooLarge(usize, usize),
}

/// Incremental decoder: `push` whatever bytes arrived, then take whole records
/// with `next` until it returns `None`.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// The length of the record being read, once its prefix is complete.
    want: Option<usize>,
    max: usize,
}

impl Decoder {
    pub fn new(max_record: usize) -> Self {
        Decoder { buf: BytesMut::new(), want: None, max: max_record }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet returned as a record.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn next(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.want.is_none() {
            // A prefix is digits and a newline: refused at its first wrong
            // byte, so what is refused (and said) never depends on where
            // the chunks were cut (found by fuzzing).
            let bad = |upto: usize| Err(FrameError::BadLength(String::from_utf8_lossy(&self.buf[..upto]).into_owned()));
            let nl = match self.buf.iter().position(|b| !b.is_ascii_digit()) {
                None if self.buf.len() > MAX_DIGITS => return bad(MAX_DIGITS + 1),
                None => return Ok(None),
                Some(i) if i > MAX_DIGITS => return bad(MAX_DIGITS + 1),
                Some(i) if i == 0 || self.buf[i] != b'\n' => return bad(i + 1),
                Some(i) => i,
            };
            let text = String::from_utf8_lossy(&self.buf[..nl]).into_owned();
            let n: usize = text.parse().map_err(|_| FrameError::BadLength(text.clone()))?;
            if n == 0 {
                return Err(FrameError::BadLength(text));
            }
            if n > self.max {
                return Err(FrameError::TooLarge(n, self.max));
            }
            self.buf.advance(nl + 1);
            self.want = Some(n);
        }
        match self.want {
            Some(n) if self.buf.len() >= n => {
                self.want = None;
                Ok(Some(self.buf.split_to(n).freeze()))
            }
            _ => Ok(None),
        }
    }
}

/// Frames one record (what the master writes; used by tests and proxies).
pub fn encode(record: &[u8]) -> Vec<u8> {
    let mut out = format!("{}\n", record.len()).into_bytes();
    out.extend_from_slice(record);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Vec<u8>> {
        vec![
            br#"{"type":"SUBSCRIBED","subscribed":{"framework_id":{"value":"x"}}}"#.to_vec(),
            br#"{"type":"HEARTBEAT"}"#.to_vec(),
            // Newlines and digits inside a record must not confuse the framing.
            b"12\n34\n{\"a\":\"\n\"}".to_vec(),
            "{\"message\":\"caf\u{e9} \u{1F441}\"}".as_bytes().to_vec(), // byte count, not char count
            vec![b'x'; 300],
        ]
    }

    fn decode_all(d: &mut Decoder, out: &mut Vec<Vec<u8>>) {
        while let Some(r) = d.next().expect("valid stream") {
            out.push(r.to_vec());
        }
    }

    /// Everything `data` decodes to, fed in chunks of `size`.
    fn outcome(data: &[u8], size: usize) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut d = Decoder::new(4096);
        let mut out = Vec::new();
        for c in data.chunks(size) {
            d.push(c);
            loop {
                match d.next() {
                    Ok(Some(r)) => out.push(Ok(r.to_vec())),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            }
        }
        out
    }

    /// A fuzzing finding: a bad prefix was refused with a message that
    /// depended on the chunking, and only once a newline or 21 bytes came.
    #[test]
    fn a_bad_prefix_is_refused_at_its_first_wrong_byte_however_the_stream_is_cut() {
        let data = b"21*{\"type\":\"SUBSCRIBED\"}20\n{\"type\":\"HEARTBEAT\"}0\n";
        for size in 1..=data.len() {
            assert_eq!(outcome(data, size), vec![Err(FrameError::BadLength("21*".into()))], "chunks of {size}");
        }
        let long = b"1234567890123456789012\n";
        for size in 1..=long.len() {
            assert_eq!(outcome(long, size), vec![Err(FrameError::BadLength("123456789012345678901".into()))], "chunks of {size}");
        }
        let mut d = Decoder::new(4096);
        d.push(b"x");
        assert!(d.next().is_err(), "garbage is refused at once, without waiting for a newline");
    }

    #[test]
    fn every_chunking_gives_the_same_records() {
        let want = records();
        let stream: Vec<u8> = want.iter().flat_map(|r| encode(r)).collect();
        // Every chunk size from single bytes up to the whole stream at once.
        for size in 1..=stream.len() {
            let mut d = Decoder::new(1 << 20);
            let mut got = Vec::new();
            for chunk in stream.chunks(size) {
                d.push(chunk);
                decode_all(&mut d, &mut got);
            }
            assert_eq!(got, want, "chunk size {size}");
            assert_eq!(d.buffered(), 0);
        }
        // Every single split point of the stream into two pieces.
        for cut in 0..=stream.len() {
            let mut d = Decoder::new(1 << 20);
            let mut got = Vec::new();
            d.push(&stream[..cut]);
            decode_all(&mut d, &mut got);
            d.push(&stream[cut..]);
            decode_all(&mut d, &mut got);
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn a_partial_record_waits_for_the_rest() {
        let mut d = Decoder::new(100);
        d.push(b"5\nabc");
        assert_eq!(d.next(), Ok(None));
        d.push(b"de6\n");
        assert_eq!(d.next().expect("ok").as_deref(), Some(&b"abcde"[..]));
        assert_eq!(d.next(), Ok(None));
        d.push(b"abcdef");
        assert_eq!(d.next().expect("ok").as_deref(), Some(&b"abcdef"[..]));
    }

    #[test]
    fn bad_prefixes_are_errors() {
        for bad in [&b"x\n"[..], b"\n", b"-3\nabc", b"0\n", b" 3\nabc", b"+3\nabc", b"123456789012345678901234"] {
            let mut d = Decoder::new(100);
            d.push(bad);
            assert!(matches!(d.next(), Err(FrameError::BadLength(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut d = Decoder::new(100);
        d.push(b"101\n");
        assert_eq!(d.next(), Err(FrameError::TooLarge(101, 100)));
    }
}
