//! Reclaims objects no image row points at: left by an upload whose database
//! commit failed (the request path never deletes: the object may be shared
//! with a concurrent upload of the same bytes) or by a crash. Only objects
//! older than a grace period are considered, and each is checked and deleted
//! under the key's lock, which an upload needs to reserve the key before it
//! looks at the store: so no upload can find the object between the check
//! and the delete and then commit a row pointing at nothing.

use std::time::{Duration, SystemTime};

use store::Store;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub examined: usize,
    pub removed: usize,
}

pub async fn sweep(db: &db::PgPool, store: &Store, min_age: Duration) -> anyhow::Result<SweepReport> {
    let before = SystemTime::now() - min_age;
    let keys = store.list_older("raw", before).await?;
    let mut report = SweepReport { examined: keys.len(), removed: 0 };
    db::images::expire_reservations(db).await?;
    for key in keys {
        if remove_if_unclaimed(db, store, &key).await? {
            tracing::info!(%key, "removed orphan object");
            report.removed += 1;
        }
    }
    Ok(report)
}

/// Deletes the object at `key` when no image row or reservation claims it,
/// checking and deleting under the key's lock; true when it was deleted.
pub async fn remove_if_unclaimed(db: &db::PgPool, store: &Store, key: &str) -> anyhow::Result<bool> {
    let mut lock = db::images::SweepLock::take(db, key).await?;
    let unclaimed = !lock.claimed(key).await?;
    if unclaimed {
        store.delete(key).await?; // still holding the key
    }
    lock.release().await?;
    Ok(unclaimed)
}
