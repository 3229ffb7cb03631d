//! Configuration of `fundus serve` (and the pieces other subcommands share):
//! every flag also reads an environment variable, and secrets never print.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// A string that `Debug` and `Display` never reveal.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// Postgres connection URL.
    #[arg(long = "database-url", env = "FUNDUS_DATABASE_URL")]
    pub database_url: Secret,
    /// Largest number of pooled connections.
    #[arg(long = "db-max-connections", env = "FUNDUS_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub max_connections: u32,
    /// Seconds to wait for a connection before answering 503.
    #[arg(long = "db-acquire-timeout", env = "FUNDUS_DB_ACQUIRE_TIMEOUT", default_value_t = 3)]
    pub acquire_timeout_secs: u64,
}

impl DbArgs {
    /// A pool with these settings (connects lazily).
    pub fn connect(&self) -> db::Result<db::PgPool> {
        db::connect(self.database_url.expose(), self.max_connections, std::time::Duration::from_secs(self.acquire_timeout_secs))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Where photos go: `s3://bucket[/prefix]` (with --s3-endpoint for MinIO or
    /// Garage) or a local folder, `file:///path` or a plain path.
    #[arg(long = "store-url", env = "FUNDUS_STORE_URL", default_value = "fundus-data/blobs")]
    pub store_url: String,
    /// S3 endpoint (path-style addressing); empty for AWS itself.
    #[arg(long = "s3-endpoint", env = "FUNDUS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long = "s3-region", env = "FUNDUS_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    #[arg(long = "s3-access-key", env = "FUNDUS_S3_ACCESS_KEY")]
    pub s3_access_key: Option<Secret>,
    #[arg(long = "s3-secret-key", env = "FUNDUS_S3_SECRET_KEY")]
    pub s3_secret_key: Option<Secret>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "FUNDUS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Largest accepted upload in bytes, enforced while the body streams.
    #[arg(long, env = "FUNDUS_MAX_UPLOAD_BYTES", default_value_t = 30_000_000)]
    pub max_upload_bytes: u64,
    /// Largest accepted image, in megapixels (read from the header, before decoding).
    #[arg(long, env = "FUNDUS_MAX_MEGAPIXELS", default_value_t = 100)]
    pub max_megapixels: u32,
    /// Smallest accepted shorter side, in pixels.
    #[arg(long, env = "FUNDUS_MIN_SIDE", default_value_t = 512)]
    pub min_side: u32,
    /// Uploads validated at once (each holds a decoded photo in memory).
    /// Defaults to the number of cores.
    #[arg(long, env = "FUNDUS_DECODE_CONCURRENCY")]
    pub decode_concurrency: Option<usize>,
    /// Seconds a request may take in all, slow phone networks included.
    #[arg(long, env = "FUNDUS_REQUEST_TIMEOUT", default_value_t = 120)]
    pub request_timeout_secs: u64,
    /// Seconds between orphan-object sweeps (0 disables them).
    #[arg(long, env = "FUNDUS_SWEEP_INTERVAL", default_value_t = 3600)]
    pub sweep_interval_secs: u64,
    /// An object must be this old (seconds) before the sweep may remove it.
    #[arg(long, env = "FUNDUS_SWEEP_MIN_AGE", default_value_t = 3600)]
    pub sweep_min_age_secs: u64,
}

impl Config {
    pub fn limits(&self) -> imaging::Limits {
        imaging::Limits { max_megapixels: self.max_megapixels, min_side: self.min_side }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s: Secret = "hunter2".parse().expect("infallible");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
