//! Reclaims objects no image row points at: left by an upload whose database
//! commit failed and whose immediate clean-up failed too (or a crash between
//! the two). Only objects older than a grace period are considered, so an
//! upload in flight is never touched.

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
    for key in keys {
        if !db::images::object_key_in_use(db, &key).await? {
            store.delete(&key).await?;
            tracing::info!(%key, "removed orphan object");
            report.removed += 1;
        }
    }
    Ok(report)
}
