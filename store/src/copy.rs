//! Moving every object of one store to another (`fundus admin store copy`):
//! raw photos and derived files alike, each read back from the destination
//! and compared by SHA-256 with what was read from the source, a few at a
//! time. Stores write an object whole or not at all, so an interrupted copy
//! leaves only whole objects behind, and the next run copies what is missing
//! or differs: a raw photo by size (its name is its hash), anything else by
//! hash. `verify` compares every object's SHA-256 on both sides without
//! writing anything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::{Store, StoreError};

/// What a copy or a verification found, by object.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Objects in the source.
    pub objects: u64,
    /// Written to the destination by this run.
    pub copied: u64,
    pub bytes_copied: u64,
    /// Already at the destination (same size; with `verify`, same SHA-256).
    pub present: u64,
    /// Keys that are missing at the destination or differ from the source
    /// (`verify` only: a copy writes those).
    pub mismatched: Vec<String>,
    /// Raw photos whose bytes in the source do not hash to the name they are
    /// stored under: not copied.
    pub corrupt_source: Vec<String>,
    /// Objects at the destination that the source does not have (left alone).
    pub extra: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("store_copy_overlap: source ({0}) and destination ({1}) are one store, or one lies inside the other")]
    Overlap(String, String),
    #[error("store_copy_unavailable: {what}: {source}")]
    Store { what: String, source: StoreError },
    #[error("store_copy_readback: {0} read back from the destination with other bytes than were written (removed there)")]
    Readback(String),
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The SHA-256 a raw photo's key names (`raw/ab/<hex>.<ext>`), if it is one.
fn named_sha256(key: &str) -> Option<[u8; 32]> {
    let name = key.strip_prefix("raw/")?.split('/').nth(1)?;
    let hex = name.split('.').next()?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(out)
}

/// Copies (or, with `verify`, compares) every object of `from` into `to`,
/// `jobs` objects at a time; `progress(done, total, bytes)` is called at most
/// every `every`.
pub async fn copy(
    from: &Store,
    to: &Store,
    verify: bool,
    jobs: usize,
    every: Duration,
    progress: impl Fn(u64, u64, u64),
) -> Result<CopyReport, CopyError> {
    if from.overlaps(to) {
        return Err(CopyError::Overlap(from.describe.clone(), to.describe.clone()));
    }
    let source = listing(from, "source").await?;
    let dest: std::collections::HashMap<String, u64> = listing(to, "destination").await?.into_iter().collect();
    let mut report = CopyReport { objects: source.len() as u64, ..Default::default() };
    report.extra = dest.keys().filter(|k| source.binary_search_by(|(s, _)| s.as_str().cmp(k)).is_err()).count() as u64;

    let (done, bytes, last) = (AtomicU64::new(0), AtomicU64::new(0), std::sync::Mutex::new(Instant::now()));
    let total = report.objects;
    let outcomes: Vec<Result<Outcome, CopyError>> = futures::stream::iter(source.iter())
        .map(|(key, size)| {
            let at_dest = dest.get(key).copied();
            let (done, bytes, last, progress) = (&done, &bytes, &last, &progress);
            async move {
                let r = one(from, to, key, *size, at_dest, verify).await;
                if let Ok(Outcome::Copied(n)) = &r {
                    bytes.fetch_add(*n, Ordering::Relaxed);
                }
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                let mut t = last.lock().unwrap_or_else(|p| p.into_inner());
                if t.elapsed() >= every || d == total {
                    *t = Instant::now();
                    progress(d, total, bytes.load(Ordering::Relaxed));
                }
                r
            }
        })
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    for o in outcomes {
        match o? {
            Outcome::Copied(n) => {
                report.copied += 1;
                report.bytes_copied += n;
            }
            Outcome::Present => report.present += 1,
            Outcome::Mismatched(k) => report.mismatched.push(k),
            Outcome::CorruptSource(k) => report.corrupt_source.push(k),
        }
    }
    report.mismatched.sort();
    report.corrupt_source.sort();
    Ok(report)
}

async fn listing(s: &Store, side: &str) -> Result<Vec<(String, u64)>, CopyError> {
    let what = format!("listing the {side} ({})", s.describe);
    s.list_sizes("").await.map_err(|source| CopyError::Store { what, source })
}

enum Outcome {
    Copied(u64),
    Present,
    Mismatched(String),
    CorruptSource(String),
}

async fn one(from: &Store, to: &Store, key: &str, size: u64, at_dest: Option<u64>, verify: bool) -> Result<Outcome, CopyError> {
    let err = |what: String| move |source| CopyError::Store { what, source };
    // A raw photo's name is its hash: the same size under the same name is
    // the same photo. Other objects (heatmaps, previews) may be rewritten at
    // the same size, so their hashes are compared.
    let named = named_sha256(key);
    if !verify && named.is_some() && at_dest == Some(size) {
        return Ok(Outcome::Present);
    }
    let bytes = from.get(key).await.map_err(err(format!("reading {key} from the source")))?;
    let digest = sha256(&bytes);
    if named.is_some_and(|named| named != digest) {
        return Ok(Outcome::CorruptSource(key.to_owned()));
    }
    if verify || at_dest == Some(size) {
        if at_dest.is_none() {
            return Ok(Outcome::Mismatched(key.to_owned()));
        }
        let theirs = to.get(key).await.map_err(err(format!("reading {key} from the destination")))?;
        if sha256(&theirs) == digest {
            return Ok(Outcome::Present);
        }
        if verify {
            return Ok(Outcome::Mismatched(key.to_owned()));
        }
    }
    let n = bytes.len() as u64;
    to.put(key, bytes).await.map_err(err(format!("writing {key} to the destination")))?;
    let back = to.get(key).await.map_err(err(format!("reading {key} back from the destination")))?;
    if sha256(&back) != digest {
        // Not left there: a later run would take it for a copy already made.
        to.delete(key).await.map_err(err(format!("removing the bad copy of {key}")))?;
        return Err(CopyError::Readback(key.to_owned()));
    }
    Ok(Outcome::Copied(n))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_raw_key_names_its_hash_and_others_do_not() {
        let hex = "ab".repeat(32);
        assert_eq!(super::named_sha256(&format!("raw/ab/{hex}.jpg")), Some([0xab; 32]));
        assert_eq!(super::named_sha256("derived/previews/x.jpg"), None);
        assert_eq!(super::named_sha256("raw/ab/not-hex.jpg"), None);
    }
}
