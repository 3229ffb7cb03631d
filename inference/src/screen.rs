//! `fundus batch`: screen a backlog. Registers every photo of a source (an
//! object-store prefix or a CSV manifest of local files) as an image with a
//! scoring job at batch priority, so phone uploads still go first; a re-run of
//! the same source finds its batch and skips what is registered. Then it
//! waits, showing progress, and writes a report: a CSV row per photo and an
//! HTML summary.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use store::Store;
use store::raw_key;

use crate::manifest::{Entry, read_manifest};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Batch work runs after every phone upload (those are enqueued at 100).
pub const BATCH_PRIORITY: i16 = 0;
/// The site batch studies belong to.
pub const BATCH_SITE: &str = "batch";

#[derive(Debug, Clone)]
pub enum Source {
    /// Every object under this prefix of the store.
    Prefix(String),
    /// A CSV with a `path` column (relative to the CSV's folder), and
    /// optionally `label` (1/0, true/false, glaucoma/normal, RG/NRG) and `eye`.
    /// Paths must stay inside that folder (no absolute paths, no `..`, no
    /// symbolic link out of it) unless `allow_outside`.
    Manifest { path: PathBuf, allow_outside: bool },
}

impl Source {
    /// What names the batch: the prefix, or the manifest's absolute path and digest.
    fn key(&self) -> anyhow::Result<String> {
        Ok(match self {
            Source::Prefix(p) => format!("prefix:{p}"),
            Source::Manifest { path: m, .. } => {
                let bytes = std::fs::read(m).with_context(|| format!("manifest {}", m.display()))?;
                let abs = std::fs::canonicalize(m)?;
                format!("manifest:{}#{}", abs.display(), &hex::encode(Sha256::digest(&bytes))[..16])
            }
        })
    }
}

#[derive(Debug, Default, Clone)]
pub struct Registered {
    pub batch_id: Uuid,
    pub added: usize,
    pub skipped: usize,
    /// Photos refused at registration, with the reason (the same checks as an upload).
    pub rejected: Vec<(String, String)>,
}

async fn batch_for(pool: &db::PgPool, source: &str) -> anyhow::Result<(Uuid, Uuid)> {
    if let Some(b) = db::batches::by_source(pool, source).await? {
        return Ok(b);
    }
    let site = match db::access::site_by_name(pool, BATCH_SITE).await {
        Ok(s) => s.id,
        Err(db::Error::NotFound(_)) => match db::access::site_create(pool, BATCH_SITE).await {
            Ok(id) => id,
            Err(db::Error::Conflict(_)) => db::access::site_by_name(pool, BATCH_SITE).await?.id,
            Err(e) => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    let study = db::images::study_create(
        pool,
        &db::NewStudy {
            site_id: site,
            device_id: None,
            patient_ref: "batch",
            captured_at: chrono::Utc::now(),
            device_model: None,
            metadata: serde_json::json!({ "batch_source": source }),
        },
    )
    .await?;
    match db::batches::create(pool, source, study).await? {
        Some(id) => Ok((id, study)),
        None => db::batches::by_source(pool, source).await?.context("batch vanished"),
    }
}

/// Registers the source's photos (8 at a time) and enqueues their jobs.
pub async fn register(
    pool: &db::PgPool,
    store: &Store,
    source: &Source,
    limits: imaging::Limits,
    max_bytes: u64,
) -> anyhow::Result<Registered> {
    let entries = match source {
        Source::Manifest { path, allow_outside } => read_manifest(path, *allow_outside)?,
        Source::Prefix(p) => store
            .list(p)
            .await?
            .into_iter()
            .map(|k| Entry { name: k.clone(), label: None, eye: "unknown".into(), location: k })
            .collect(),
    };
    anyhow::ensure!(!entries.is_empty(), "the batch source has no photos");
    let (batch_id, study_id) = batch_for(pool, &source.key()?).await?;
    let done: HashSet<String> = db::batches::names(pool, batch_id).await?.into_iter().collect();
    let total = entries.len();
    let todo: Vec<Entry> = entries.into_iter().filter(|e| !done.contains(&e.name)).collect();
    let mut reg = Registered { batch_id, skipped: total - todo.len(), ..Default::default() };
    let from_store = matches!(source, Source::Prefix(_));
    let results: Vec<(String, Result<(), String>)> = futures::stream::iter(todo)
        .map(|e| async move {
            let r = register_one(pool, store, batch_id, study_id, &e, from_store, limits, max_bytes).await;
            (e.name, r)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (name, r) in results {
        match r {
            Ok(()) => reg.added += 1,
            Err(msg) => reg.rejected.push((name, msg)),
        }
    }
    reg.rejected.sort();
    Ok(reg)
}

async fn register_one(
    pool: &db::PgPool,
    store: &Store,
    batch_id: Uuid,
    study_id: Uuid,
    e: &Entry,
    from_store: bool,
    limits: imaging::Limits,
    max_bytes: u64,
) -> Result<(), String> {
    let bytes: Bytes = if from_store {
        let b = store.get(&e.location).await.map_err(|err| err.to_string())?;
        if b.len() as u64 > max_bytes {
            return Err(format!("too_large: {} bytes is over the {max_bytes} byte limit", b.len()));
        }
        b
    } else {
        let size = std::fs::metadata(&e.location).map_err(|err| format!("{}: {err}", e.location))?.len();
        if size > max_bytes {
            return Err(format!("too_large: {size} bytes is over the {max_bytes} byte limit"));
        }
        tokio::fs::read(&e.location).await.map_err(|err| format!("{}: {err}", e.location))?.into()
    };
    // Stored de-identified, as uploads are (see imaging::deidentify).
    let bytes: Bytes = tokio::task::spawn_blocking(move || {
        let format = imaging::sniff(&bytes).ok_or(imaging::Reject::UnknownFormat)?;
        imaging::deidentify(&bytes, format)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|r| format!("{}: {r}", r.code()))?
    .into();
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    if let Some(row) = db::images::image_by_sha256(pool, study_id, &digest).await.map_err(|e| e.to_string())? {
        return db::batches::add_image(pool, batch_id, &e.name, row.id, e.label).await.map_err(|e| e.to_string());
    }
    let b = bytes.clone();
    let inspection = tokio::task::spawn_blocking(move || {
        let format = imaging::sniff(&b).ok_or(imaging::Reject::UnknownFormat)?;
        imaging::inspect(&b, format, limits)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|r| format!("{}: {r}", r.code()))?;
    let key = raw_key(&hex::encode(digest), inspection.format.extension());
    // Reserved before the store is looked at, so the orphan sweep cannot take the object away.
    let reservation = db::images::reserve_object(pool, &key, db::images::RESERVATION_SECS).await.map_err(|e| e.to_string())?;
    store.put_if_absent(&key, bytes.clone()).await.map_err(|e| e.to_string())?;
    let new = db::NewImage {
        study_id,
        eye: &e.eye,
        sha256: &digest,
        object_key: &key,
        format: inspection.format.as_str(),
        width: inspection.width as i32,
        height: inspection.height as i32,
        size_bytes: bytes.len() as i64,
        quality: serde_json::to_value(&inspection.quality).map_err(|e| e.to_string())?,
        idempotency_key: None,
        priority: BATCH_PRIORITY,
    };
    let id = match db::images::image_insert_and_enqueue(pool, &new, reservation).await.map_err(|e| e.to_string())? {
        Some(id) => id,
        None => db::images::image_by_sha256(pool, study_id, &digest).await.map_err(|e| e.to_string())?.ok_or("image vanished")?.id,
    };
    db::batches::add_image(pool, batch_id, &e.name, id, e.label).await.map_err(|e| e.to_string())
}

/// Waits until every job of the batch is done or dead, drawing a progress bar.
pub async fn wait(pool: &db::PgPool, batch_id: Uuid, show: bool, timeout: Option<Duration>) -> anyhow::Result<db::batches::Progress> {
    let started = std::time::Instant::now();
    let bar = if show { indicatif::ProgressBar::new(0) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} scored {msg} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        let p = db::batches::progress(pool, batch_id).await?;
        bar.set_length(p.total as u64);
        bar.set_position((p.done + p.dead) as u64);
        bar.set_message(if p.dead > 0 { format!("({} dead-lettered)", p.dead) } else { String::new() });
        if p.finished() {
            bar.finish();
            db::batches::set_state(pool, batch_id, "done").await?;
            return Ok(p);
        }
        if let Some(t) = timeout {
            anyhow::ensure!(started.elapsed() < t, "batch not finished after {:?}: {}/{} done, {} dead; is a worker running?", t, p.done, p.total, p.dead);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub use crate::report::{ReportSummary, write_report};

/// Writes the batch's report into `out` (report.csv, report.html).
pub async fn report(pool: &db::PgPool, reg: &Registered, out: &Path, review_url: &str) -> anyhow::Result<ReportSummary> {
    let rows = db::batches::report(pool, reg.batch_id).await?;
    write_report(&rows, &reg.rejected, out, review_url)
}
