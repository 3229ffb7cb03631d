//! Sites and their devices: the bearer tokens the phone app authenticates with.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Error, PgPool, Result};

#[derive(Debug, Clone)]
pub struct Site {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: Uuid,
    pub site: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Who is calling: resolved from a token hash.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    pub device_id: Uuid,
    pub site_id: Uuid,
    pub site_name: String,
}

pub async fn site_create(pool: &PgPool, name: &str) -> Result<Uuid> {
    let id = sqlx::query_file_scalar!("queries/site_create.sql", name)
        .fetch_one(pool)
        .await?;
    Ok(id)
}

pub async fn site_by_name(pool: &PgPool, name: &str) -> Result<Site> {
    sqlx::query_file_as!(Site, "queries/site_by_name.sql", name)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| Error::NotFound(format!("site {name:?}")))
}

pub async fn device_create(pool: &PgPool, site_id: Uuid, name: &str, token_hash: &[u8]) -> Result<Uuid> {
    let id = sqlx::query_file_scalar!("queries/device_create.sql", site_id, name, token_hash)
        .fetch_one(pool)
        .await?;
    Ok(id)
}

/// Revokes the site's active device of that name; `NotFound` when there is none.
pub async fn device_revoke(pool: &PgPool, site: &str, name: &str) -> Result<Uuid> {
    sqlx::query_file_scalar!("queries/device_revoke.sql", site, name)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| Error::NotFound(format!("active device {name:?} of site {site:?}")))
}

pub async fn device_list(pool: &PgPool) -> Result<Vec<Device>> {
    Ok(sqlx::query_file_as!(Device, "queries/device_list.sql").fetch_all(pool).await?)
}

pub async fn device_by_token(pool: &PgPool, token_hash: &[u8]) -> Result<Option<DeviceAuth>> {
    Ok(sqlx::query_file_as!(DeviceAuth, "queries/device_by_token.sql", token_hash)
        .fetch_optional(pool)
        .await?)
}
