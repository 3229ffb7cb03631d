//! The people who read photos, their sessions, and failed log-ins. Passwords
//! arrive here already hashed; session ids arrive as their SHA-256.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Error, PgPool, Result};

#[derive(Debug, Clone)]
pub struct UserLogin {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub password_hash: String,
    pub disabled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub sites: Vec<String>,
}

/// A live session and who holds it.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user_id: Uuid,
    pub csrf_token: String,
    pub last_seen: DateTime<Utc>,
    pub name: String,
    pub role: String,
    pub site_ids: Vec<Uuid>,
    pub site_names: Vec<String>,
}

/// Creates a user with access to `sites` (by name), all in one transaction.
pub async fn user_create(pool: &PgPool, name: &str, role: &str, password_hash: &str, sites: &[String]) -> Result<Uuid> {
    let mut tx = pool.begin().await?;
    let id = sqlx::query_file_scalar!("queries/user_create.sql", name, role, password_hash)
        .fetch_one(&mut *tx)
        .await?;
    for site in sites {
        let site_id = sqlx::query_file_scalar!("queries/site_by_name_id.sql", site)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NotFound(format!("site {site:?}")))?;
        sqlx::query_file!("queries/user_add_site.sql", id, site_id).execute(&mut *tx).await?;
    }
    crate::audit(&mut *tx, "admin", "user.create", Some(&id.to_string()), serde_json::json!({ "name": name, "role": role, "sites": sites })).await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn user_by_name(pool: &PgPool, name: &str) -> Result<Option<UserLogin>> {
    Ok(sqlx::query_file_as!(UserLogin, "queries/user_by_name.sql", name).fetch_optional(pool).await?)
}

pub async fn user_list(pool: &PgPool) -> Result<Vec<UserRow>> {
    Ok(sqlx::query_file_as!(UserRow, "queries/user_list.sql").fetch_all(pool).await?)
}

/// Disables the user and ends their sessions; `NotFound` when there is no
/// enabled user of that name.
pub async fn user_disable(pool: &PgPool, name: &str) -> Result<Uuid> {
    let mut tx = pool.begin().await?;
    let id = sqlx::query_file_scalar!("queries/user_disable.sql", name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("enabled user {name:?}")))?;
    sqlx::query_file!("queries/session_delete_user.sql", id).execute(&mut *tx).await?;
    crate::audit(&mut *tx, "admin", "user.disable", Some(&id.to_string()), serde_json::json!({ "name": name })).await?;
    tx.commit().await?;
    Ok(id)
}

/// Sets a new password hash and ends the user's sessions.
pub async fn user_set_password(pool: &PgPool, name: &str, password_hash: &str) -> Result<Uuid> {
    let mut tx = pool.begin().await?;
    let id = sqlx::query_file_scalar!("queries/user_set_password.sql", name, password_hash)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("user {name:?}")))?;
    sqlx::query_file!("queries/session_delete_user.sql", id).execute(&mut *tx).await?;
    crate::audit(&mut *tx, "admin", "user.password", Some(&id.to_string()), serde_json::json!({ "name": name })).await?;
    tx.commit().await?;
    Ok(id)
}

/// Starts a session and records the log-in, in one transaction.
pub async fn session_create(
    pool: &PgPool,
    id_hash: &[u8],
    user: &UserLogin,
    csrf_token: &str,
    addr: &str,
    absolute_secs: f64,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query_file!("queries/session_create.sql", id_hash, user.id, csrf_token, addr, absolute_secs)
        .execute(&mut *tx)
        .await?;
    crate::audit(&mut *tx, &user.name, "login", Some(&user.id.to_string()), serde_json::json!({ "role": user.role, "addr": addr })).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn session_get(pool: &PgPool, id_hash: &[u8], idle_secs: f64) -> Result<Option<SessionRow>> {
    Ok(sqlx::query_file_as!(SessionRow, "queries/session_get.sql", id_hash, idle_secs).fetch_optional(pool).await?)
}

pub async fn session_touch(pool: &PgPool, id_hash: &[u8]) -> Result<()> {
    sqlx::query_file!("queries/session_touch.sql", id_hash).execute(pool).await?;
    Ok(())
}

/// Ends a session; records the log-out when there was one.
pub async fn session_end(pool: &PgPool, id_hash: &[u8], actor: &str) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let user = sqlx::query_file_scalar!("queries/session_delete.sql", id_hash).fetch_optional(&mut *tx).await?;
    if let Some(id) = user {
        crate::audit(&mut *tx, actor, "logout", Some(&id.to_string()), serde_json::json!({})).await?;
    }
    tx.commit().await?;
    Ok(user.is_some())
}

/// Records a log-in attempt before its password is checked; returns its id.
pub async fn login_attempt(pool: &PgPool, username: &str, addr: &str, window_secs: f64) -> Result<i64> {
    Ok(sqlx::query_file_scalar!("queries/login_failure_insert.sql", username, addr, window_secs).fetch_one(pool).await?)
}

/// Forgets an attempt that succeeded (or was refused unchecked).
pub async fn login_attempt_clear(pool: &PgPool, id: i64) -> Result<()> {
    sqlx::query_file!("queries/login_attempt_delete.sql", id).execute(pool).await?;
    Ok(())
}

/// Unsuccessful log-in attempts within the window, this one included:
/// (for this user name, from this address).
pub async fn login_failures(pool: &PgPool, username: &str, addr: &str, window_secs: f64) -> Result<(i64, i64)> {
    let r = sqlx::query_file!("queries/login_failures_recent.sql", username, addr, window_secs).fetch_one(pool).await?;
    Ok((r.by_user, r.by_addr))
}
