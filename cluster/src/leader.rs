//! Leadership without ZooKeeper: the instance holding a Postgres advisory lock
//! leads. The lock belongs to one dedicated connection, so it ends with that
//! connection — a leader killed with `kill -9` releases it as soon as Postgres
//! sees the socket close, and a standby polling for it takes over within a
//! second or two.
//!
//! A leader checks its connection every second (each check bounded by two
//! seconds) and the moment one fails, [`Leadership::lost`] fires and it stops
//! acting: Postgres may already have given the lock to someone else.

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_secs(1);
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Leadership {
    /// Cancelled when leadership can no longer be vouched for.
    pub lost: CancellationToken,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.lost.cancel();
        // Dropping the watcher drops the connection, which releases the lock.
        self.watcher.abort();
    }
}

/// Waits until this instance leads `name`, or `stop` is cancelled (`None`).
pub async fn acquire(database_url: &str, name: &str, stop: &CancellationToken) -> Option<Leadership> {
    let mut announced = false;
    loop {
        let conn = tokio::select! {
            c = PgConnection::connect(database_url) => c,
            _ = stop.cancelled() => return None,
        };
        match conn {
            Ok(mut conn) => loop {
                match db::mesos::try_lead(&mut conn, name).await {
                    Ok(true) => {
                        let lost = CancellationToken::new();
                        let watcher = tokio::spawn(watch(conn, lost.clone()));
                        return Some(Leadership { lost, watcher });
                    }
                    Ok(false) => {
                        if !announced {
                            tracing::info!(framework = name, "another instance leads; standing by");
                            announced = true;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("leadership check failed: {e}; reconnecting");
                        break;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.cancelled() => return None,
                }
            },
            Err(e) => tracing::warn!("cannot reach the database for leadership: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL * 2) => {}
            _ = stop.cancelled() => return None,
        }
    }
}

async fn watch(mut conn: PgConnection, lost: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = lost.cancelled() => return,
        }
        match tokio::time::timeout(CHECK_TIMEOUT, conn.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!("lost the leadership connection: {e}; stopping at once");
                lost.cancel();
                return;
            }
            Err(_) => {
                tracing::error!("the leadership connection did not answer within {CHECK_TIMEOUT:?}; stopping at once");
                lost.cancel();
                return;
            }
        }
    }
}
