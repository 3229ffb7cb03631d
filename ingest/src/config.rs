//! Configuration of `fundus serve` (and the pieces other subcommands share):
//! every flag also reads an environment variable, and secrets never print.

use std::net::SocketAddr;

pub use store::{Secret, StoreArgs};

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
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "FUNDUS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve /metrics on this address only (e.g. an internal interface),
    /// instead of beside the API.
    #[arg(long, env = "FUNDUS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
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
    /// Bytes all uploads in flight may hold in memory together (bodies and
    /// their de-identified copies); an upload waits for room, up to 10 s,
    /// then gets 503 `server_busy`.
    #[arg(long, env = "FUNDUS_MAX_BUFFERED_BYTES", default_value_t = 256 << 20)]
    pub max_buffered_bytes: u64,
    #[command(flatten)]
    pub guard: crate::guard::GuardArgs,
    #[command(flatten)]
    pub pseudonym: crate::pseudonym::PseudonymArgs,
    #[command(flatten)]
    pub review: review::Config,
}

impl Config {
    pub fn limits(&self) -> imaging::Limits {
        imaging::Limits { max_megapixels: self.max_megapixels, min_side: self.min_side }
    }
}
