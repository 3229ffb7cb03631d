//! The object store behind a small wrapper, shared by the upload API, the
//! worker and the review service: S3 (MinIO, Garage, AWS) or a local folder,
//! chosen by URL, with content-addressed keys and short retries so an outage
//! turns into a quick 503 rather than a hung request. Knows no HTTP routes and
//! no SQL.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object store unavailable: {0}")]
    Unavailable(#[from] object_store::Error),
    #[error("invalid store configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// The object does not exist (as opposed to the store being unreachable).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Unavailable(object_store::Error::NotFound { .. }))
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// Where it points, for logs (no credentials).
    pub describe: String,
}

/// `raw/ab/abcdef….jpg`: the same bytes always land on the same key.
pub fn raw_key(sha256_hex: &str, ext: &str) -> String {
    format!("raw/{}/{sha256_hex}.{ext}", &sha256_hex[..2])
}

/// A photo's screen-sized preview for reviewers and where the model's square
/// sits on it (`derived/previews/<id>.jpg` and `.box`): made on first view,
/// removed with the photo.
pub fn preview_keys(image_id: &uuid::Uuid) -> [String; 2] {
    [format!("derived/previews/{image_id}.jpg"), format!("derived/previews/{image_id}.box")]
}

/// Where a heatmap lies on its photo (`x,y,w,h` as fractions of the upright
/// photo), stored beside the heatmap.
pub fn heatmap_box_key(heatmap_key: &str) -> String {
    format!("{heatmap_key}.box")
}

/// A square on a photo as stored (preview and heatmap boxes): `x,y,w,h`,
/// fractions of the upright photo.
pub fn box_text(b: &[f32; 4]) -> String {
    b.map(|x| format!("{x:.5}")).join(",")
}

/// `box_text` read back; `None` unless it is four numbers.
pub fn parse_box(b: &[u8]) -> Option<[f32; 4]> {
    let v: Vec<f32> = std::str::from_utf8(b).ok()?.split(',').filter_map(|x| x.trim().parse().ok()).collect();
    v.try_into().ok()
}

impl Store {
    pub fn open(args: &StoreArgs) -> Result<Store, StoreError> {
        let url = args.store_url.trim();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::Config(format!("no bucket in store URL {url:?}")));
            }
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(&args.s3_region)
                .with_virtual_hosted_style_request(false)
                .with_client_options(
                    ClientOptions::new()
                        .with_connect_timeout(Duration::from_secs(2))
                        .with_timeout(Duration::from_secs(60))
                        .with_allow_http(true),
                )
                .with_retry(RetryConfig {
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(5),
                    ..Default::default()
                });
            if let Some(e) = &args.s3_endpoint {
                b = b.with_endpoint(e);
            }
            if let (Some(k), Some(s)) = (&args.s3_access_key, &args.s3_secret_key) {
                b = b.with_access_key_id(k.expose()).with_secret_access_key(s.expose());
            }
            let s3 = b.build().map_err(|e| StoreError::Config(e.to_string()))?;
            let inner: Arc<dyn ObjectStore> =
                if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix)) };
            let endpoint = args.s3_endpoint.as_deref().unwrap_or("aws");
            return Ok(Store { inner, describe: format!("{url} at {endpoint}") });
        }
        let dir = url.strip_prefix("file://").unwrap_or(url);
        if dir.is_empty() || url.contains("://") && !url.starts_with("file://") {
            return Err(StoreError::Config(format!("unsupported store URL {url:?}: use s3://bucket or a folder")));
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Config(format!("cannot create {dir}: {e}")))?;
        let fs = LocalFileSystem::new_with_prefix(dir).map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Store { inner: Arc::new(fs), describe: format!("folder {dir}") })
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.inner.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the object unless it is already there; true when this call
    /// created it (and so may remove it again if the database says no).
    pub async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool, StoreError> {
        if self.exists(key).await? {
            return Ok(false);
        }
        self.inner.put(&Path::from(key), PutPayload::from(bytes)).await?;
        Ok(true)
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        Ok(self.inner.get(&Path::from(key)).await?.bytes().await?)
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every key under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let metas: Vec<_> = self.inner.list(Some(&Path::from(prefix))).try_collect().await?;
        let mut keys: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
        keys.sort();
        Ok(keys)
    }

    /// Writes `bytes` at `key`, replacing what is there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.inner.put(&Path::from(key), PutPayload::from_bytes(bytes)).await?;
        Ok(())
    }

    /// Keys under `prefix` last modified before `before`.
    pub async fn list_older(&self, prefix: &str, before: SystemTime) -> Result<Vec<String>, StoreError> {
        let before: chrono::DateTime<chrono::Utc> = before.into();
        let metas: Vec<_> = self.inner.list(Some(&Path::from(prefix))).try_collect().await?;
        Ok(metas.into_iter().filter(|m| m.last_modified < before).map(|m| m.location.to_string()).collect())
    }

    /// Reachability check for /readyz: a HEAD on a key that need not exist.
    pub async fn ping(&self) -> bool {
        self.exists("readyz-probe").await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_box_round_trips() {
        assert_eq!(super::parse_box(super::box_text(&[0.1, 0.0, 0.8, 1.0]).as_bytes()), Some([0.1, 0.0, 0.8, 1.0]));
        assert_eq!(super::parse_box(b"0.1,0.2"), None);
        assert_eq!(super::parse_box(b"\xff"), None);
    }

    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s: Secret = "hunter2".parse().expect("infallible");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
