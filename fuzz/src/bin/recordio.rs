//! The Mesos RecordIO decoder: the input is cut into chunks at the positions
//! its first byte chooses, and the records must not depend on the cutting.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&step, data)) = data.split_first() else { return };
        let decode = |chunk: usize| {
            let mut d = fundus_fuzz::recordio::Decoder::new(4096);
            let mut out = Vec::new();
            for c in data.chunks(chunk.max(1)) {
                d.push(c);
                loop {
                    match d.next() {
                        Ok(Some(r)) => out.push(Ok(r)),
                        Ok(None) => break,
                        Err(e) => {
                            out.push(Err(e));
                            return out;
                        }
                    }
                }
            }
            out
        };
        assert_eq!(decode(step as usize), decode(data.len()));
    });
}
