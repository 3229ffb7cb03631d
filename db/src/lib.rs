//! Fundus's Postgres layer: the migrations, every SQL query (one file each under
//! `queries/`, checked at compile time against the committed `.sqlx/` data), and
//! the row types. Nothing here knows HTTP, objects or tensors.

pub mod access;
pub mod batches;
pub mod erase;
pub mod images;
pub mod mesos;
pub mod queue;
pub mod review;
pub mod users;

use std::time::Duration;

pub use access::{Device, DeviceAuth, Site};
pub use images::{ImageRow, NewImage, NewStudy, ResultRow};
pub use sqlx::PgPool;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached (down, restarting, pool exhausted).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A unique or check constraint said no; the message names the constraint.
    #[error("{0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error(transparent)]
    Other(sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
                Error::Unavailable(e)
            }
            E::Database(d) => match d.code().as_deref() {
                // 57P01..03: admin shutdown, crash shutdown, cannot connect now.
                Some("57P01" | "57P02" | "57P03") => Error::Unavailable(e),
                // unique_violation, check_violation, foreign_key_violation
                Some("23505" | "23514" | "23503") => Error::Conflict(d.message().to_owned()),
                _ => Error::Other(e),
            },
            _ => Error::Other(e),
        }
    }
}

impl Error {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

/// Opens a pool that gives up on an unreachable database within `acquire_timeout`
/// (so callers can answer 503 quickly) and reconnects by itself afterwards.
pub fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<PgPool> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(true)
        .connect_lazy(url)?;
    Ok(pool)
}

/// Applies the embedded migrations; safe to call from several processes at once
/// (sqlx takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<()> {
    sqlx::migrate!("./migrations")
        .run(pool)
        .await
        .map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => Error::from(e),
            other => Error::Other(sqlx::Error::Migrate(Box::new(other))),
        })
}

/// True when the database answers a trivial query.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}

/// Appends an audit row; pass a transaction to record it with the action.
pub async fn audit<'e>(
    ex: impl sqlx::PgExecutor<'e>,
    actor: &str,
    action: &str,
    subject: Option<&str>,
    detail: serde_json::Value,
) -> Result<()> {
    sqlx::query_file!("queries/audit_insert.sql", actor, action, subject, detail)
        .execute(ex)
        .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub detail: serde_json::Value,
}

pub async fn audit_list(
    pool: &PgPool,
    since: Option<chrono::DateTime<chrono::Utc>>,
    actor: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditRow>> {
    Ok(sqlx::query_file_as!(AuditRow, "queries/audit_list.sql", since, actor, limit).fetch_all(pool).await?)
}
