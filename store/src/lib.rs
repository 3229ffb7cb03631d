//! The object store behind a small wrapper, shared by the upload API, the
//! worker and the review service: S3 (MinIO, Garage, AWS), Azure Blob Storage,
//! Google Cloud Storage or a local folder, chosen by URL, with content-addressed
//! keys and short retries so an outage turns into a quick 503 rather than a hung
//! request. Knows no HTTP routes and no SQL.

pub mod copy;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
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
    /// Where photos go: `s3://bucket[/prefix]`, `az://container[/prefix]`,
    /// `gs://bucket[/prefix]`, or a local folder (`file:///path` or a plain path).
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
    /// Azure storage account; otherwise `AZURE_STORAGE_ACCOUNT_NAME`.
    #[arg(long = "azure-account", env = "FUNDUS_AZURE_ACCOUNT")]
    pub azure_account: Option<String>,
    /// Azure account key; without one, the standard Azure credential chain
    /// (`AZURE_STORAGE_*`, workload or managed identity, the Azure CLI).
    #[arg(long = "azure-access-key", env = "FUNDUS_AZURE_ACCESS_KEY")]
    pub azure_access_key: Option<Secret>,
    /// Blob service URL (Azurite: `http://127.0.0.1:10000/<account>`); empty
    /// for `https://<account>.blob.core.windows.net`.
    #[arg(long = "azure-endpoint", env = "FUNDUS_AZURE_ENDPOINT")]
    pub azure_endpoint: Option<String>,
    /// Path of a GCS service-account key file; without one, the standard
    /// Google chain (`GOOGLE_*`, application default credentials, the
    /// metadata server).
    #[arg(long = "gcs-service-account", env = "FUNDUS_GCS_SERVICE_ACCOUNT")]
    pub gcs_service_account: Option<String>,
    /// GCS API base URL (fake-gcs-server: `http://127.0.0.1:4443`); empty for Google's.
    #[arg(long = "gcs-endpoint", env = "FUNDUS_GCS_ENDPOINT")]
    pub gcs_endpoint: Option<String>,
    /// Send GCS requests unsigned (an emulator, or a public bucket).
    #[arg(long = "gcs-anonymous", env = "FUNDUS_GCS_ANONYMOUS", action = clap::ArgAction::Set, default_value_t = false)]
    pub gcs_anonymous: bool,
}

impl Default for StoreArgs {
    fn default() -> Self {
        StoreArgs {
            store_url: "fundus-data/blobs".into(),
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_access_key: None,
            s3_secret_key: None,
            azure_account: None,
            azure_access_key: None,
            azure_endpoint: None,
            gcs_service_account: None,
            gcs_endpoint: None,
            gcs_anonymous: false,
        }
    }
}

impl StoreArgs {
    /// The same store `prefix` further down (a test's or a benchmark's own corner).
    pub fn under(&self, prefix: &str) -> StoreArgs {
        StoreArgs { store_url: format!("{}/{prefix}", self.store_url.trim_end_matches('/')), ..self.clone() }
    }

    /// These settings as the environment a child `fundus` process reads,
    /// every variable present (empty when unset) so that nothing the parent
    /// inherited leaks into the child's choice of store.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        let secret = |o: &Option<Secret>| o.as_ref().map(|s| s.expose().to_owned()).unwrap_or_default();
        vec![
            ("FUNDUS_STORE_URL", self.store_url.clone()),
            ("FUNDUS_S3_ENDPOINT", opt(&self.s3_endpoint)),
            ("FUNDUS_S3_REGION", self.s3_region.clone()),
            ("FUNDUS_S3_ACCESS_KEY", secret(&self.s3_access_key)),
            ("FUNDUS_S3_SECRET_KEY", secret(&self.s3_secret_key)),
            ("FUNDUS_AZURE_ACCOUNT", opt(&self.azure_account)),
            ("FUNDUS_AZURE_ACCESS_KEY", secret(&self.azure_access_key)),
            ("FUNDUS_AZURE_ENDPOINT", opt(&self.azure_endpoint)),
            ("FUNDUS_GCS_SERVICE_ACCOUNT", opt(&self.gcs_service_account)),
            ("FUNDUS_GCS_ENDPOINT", opt(&self.gcs_endpoint)),
            ("FUNDUS_GCS_ANONYMOUS", self.gcs_anonymous.to_string()),
        ]
    }
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
    /// Where it points, for logs (no credentials): `URL at ENDPOINT`, or
    /// `folder PATH` with the path made absolute.
    pub describe: String,
}

/// Connect in 2 s, answer within 60: an outage is a quick error, not a hung request.
fn client_options() -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(60))
        .with_allow_http(true)
}

fn retry() -> RetryConfig {
    RetryConfig { max_retries: 2, retry_timeout: Duration::from_secs(5), ..Default::default() }
}

/// A secret that is set and not empty (an unset one is passed on as "").
fn present(s: &Option<Secret>) -> Option<&str> {
    s.as_ref().map(|k| k.expose().trim()).filter(|k| !k.is_empty())
}

/// The bucket or container of a cloud store URL, which must name one.
fn named<'a>(name: &'a str, what: &str, url: &str) -> Result<&'a str, StoreError> {
    if name.is_empty() {
        return Err(StoreError::Config(format!("no {what} in store URL {url:?}")));
    }
    Ok(name)
}

fn prefixed<S: ObjectStore>(store: S, prefix: &str) -> Arc<dyn ObjectStore> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() { Arc::new(store) } else { Arc::new(PrefixStore::new(store, prefix)) }
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
        let cloud = |scheme: &str| url.strip_prefix(scheme).map(|rest| rest.split_once('/').unwrap_or((rest, "")));
        let config = |e: object_store::Error| StoreError::Config(e.to_string());
        // Present but empty counts as absent (an unset variable passed on as "").
        let set = |o: &Option<String>| o.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let (inner, endpoint): (Arc<dyn ObjectStore>, String) = if let Some((bucket, prefix)) = cloud("s3://") {
            let bucket = named(bucket, "bucket", url)?;
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(&args.s3_region)
                .with_virtual_hosted_style_request(false)
                .with_client_options(client_options())
                .with_retry(retry());
            if let Some(e) = set(&args.s3_endpoint) {
                b = b.with_endpoint(e);
            }
            if let (Some(k), Some(s)) = (present(&args.s3_access_key), present(&args.s3_secret_key)) {
                b = b.with_access_key_id(k).with_secret_access_key(s);
            }
            let endpoint = set(&args.s3_endpoint).unwrap_or_else(|| "aws".into());
            (prefixed(b.build().map_err(config)?, prefix), endpoint)
        } else if let Some((container, prefix)) = cloud("az://") {
            let container = named(container, "container", url)?;
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_container_name(container)
                .with_client_options(client_options())
                .with_retry(retry());
            if let Some(a) = set(&args.azure_account) {
                b = b.with_account(a);
            }
            if let Some(k) = present(&args.azure_access_key) {
                b = b.with_access_key(k);
            }
            let endpoint = set(&args.azure_endpoint);
            if let Some(e) = &endpoint {
                b = b.with_endpoint(e.clone());
            }
            (prefixed(b.build().map_err(config)?, prefix), endpoint.unwrap_or_else(|| "azure".into()))
        } else if let Some((bucket, prefix)) = cloud("gs://") {
            let bucket = named(bucket, "bucket", url)?;
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_client_options(client_options())
                .with_retry(retry());
            match (set(&args.gcs_service_account), args.gcs_anonymous) {
                (Some(_), true) => {
                    return Err(StoreError::Config("a GCS service account and anonymous access exclude each other".into()));
                }
                (Some(p), false) => b = b.with_service_account_path(p),
                // object_store's own way to an unauthenticated emulator
                // (`with_skip_signature` still fetches a token for writes).
                (None, true) => {
                    b = b.with_service_account_key(r#"{"private_key":"","private_key_id":"","client_email":"","disable_oauth":true}"#)
                }
                (None, false) => {}
            }
            let endpoint = set(&args.gcs_endpoint);
            if let Some(e) = &endpoint {
                b = b.with_base_url(e);
            }
            (prefixed(b.build().map_err(config)?, prefix), endpoint.unwrap_or_else(|| "google".into()))
        } else {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            if dir.is_empty() || url.contains("://") && !url.starts_with("file://") {
                return Err(StoreError::Config(format!(
                    "unsupported store URL {url:?}: use s3://bucket, az://container, gs://bucket or a folder"
                )));
            }
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Config(format!("cannot create {dir}: {e}")))?;
            let canonical = std::fs::canonicalize(dir).map_err(|e| StoreError::Config(format!("cannot resolve {dir}: {e}")))?;
            let fs = LocalFileSystem::new_with_prefix(&canonical).map_err(config)?;
            return Ok(Store { inner: Arc::new(fs), describe: format!("folder {}", canonical.display()) });
        };
        Ok(Store { inner, describe: format!("{url} at {endpoint}") })
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

    /// Every key under `prefix` with its size, sorted by key.
    pub async fn list_sizes(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let metas: Vec<_> = self.inner.list(Some(&Path::from(prefix))).try_collect().await?;
        let mut out: Vec<(String, u64)> = metas.into_iter().map(|m| (m.location.to_string(), m.size)).collect();
        out.sort();
        Ok(out)
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

    /// Whether this store and `other` are one, or one lies inside the other
    /// (the same endpoint, and one's bucket and prefix a prefix of the other's).
    pub fn overlaps(&self, other: &Store) -> bool {
        let split = |d: &str| match d.rsplit_once(" at ") {
            Some((url, endpoint)) => (url.trim_end_matches('/').to_owned(), endpoint.to_owned()),
            None => (d.trim_end_matches('/').to_owned(), String::new()),
        };
        let ((a, ea), (b, eb)) = (split(&self.describe), split(&other.describe));
        ea == eb && (a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/")))
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

#[cfg(test)]
mod config_tests {
    use super::*;

    fn args(url: &str) -> StoreArgs {
        StoreArgs { store_url: url.into(), ..Default::default() }
    }

    fn config_error(a: &StoreArgs) -> String {
        match Store::open(a) {
            Err(StoreError::Config(m)) => m,
            other => panic!("{} opened as {:?}", a.store_url, other.map(|s| s.describe)),
        }
    }

    #[test]
    fn every_cloud_url_must_name_its_bucket_or_container() {
        assert!(config_error(&args("s3://")).contains("no bucket"));
        assert!(config_error(&args("gs:///photos")).contains("no bucket"));
        assert!(config_error(&args("az://")).contains("no container"));
        let m = config_error(&args("ftp://host/photos"));
        assert!(m.contains("unsupported store URL") && m.contains("az://container"), "{m}");
    }

    #[test]
    fn azure_says_where_it_points_and_refuses_a_bad_key() {
        let mut a = args("az://photos/site-a");
        a.azure_endpoint = Some("http://127.0.0.1:10000/acct".into());
        a.azure_account = Some("acct".into());
        a.azure_access_key = Some(Secret("a2V5".into()));
        let s = Store::open(&a).expect("opens without connecting");
        assert_eq!(s.describe, "az://photos/site-a at http://127.0.0.1:10000/acct");
        // A bad key is refused when opened, not at the first photo.
        a.azure_access_key = Some(Secret("not base64!".into()));
        assert!(Store::open(&a).is_err());
    }

    #[test]
    fn gcs_opens_on_an_emulator_without_credentials() {
        let mut a = args("gs://photos");
        a.gcs_endpoint = Some("http://127.0.0.1:4443".into());
        a.gcs_anonymous = true;
        assert_eq!(Store::open(&a).expect("opens").describe, "gs://photos at http://127.0.0.1:4443");
        a.gcs_service_account = Some("/nonexistent/key.json".into());
        assert!(config_error(&a).contains("exclude each other"));
        a.gcs_anonymous = false;
        let m = config_error(&a);
        assert!(m.contains("No such file") || m.contains("not found") || m.contains("nonexistent"), "{m}");
    }

    #[test]
    fn stores_overlap_when_one_lies_inside_the_other() {
        let dir = std::env::temp_dir().join(format!("fundus-overlap-{}", std::process::id()));
        let open = |url: &str, endpoint: Option<&str>| {
            Store::open(&StoreArgs { store_url: url.into(), s3_endpoint: endpoint.map(Into::into), ..Default::default() }).expect("opens")
        };
        let (a, b) = (dir.to_string_lossy().into_owned(), dir.join("backup").to_string_lossy().into_owned());
        assert!(open(&a, None).overlaps(&open(&format!("{b}/"), None)));
        assert!(open(&format!("{a}/./"), None).overlaps(&open(&a, None)), "the same folder spelt two ways");
        assert!(!open(&b, None).overlaps(&open(&format!("{a}2"), None)));
        let _ = std::fs::remove_dir_all(format!("{a}2"));
        let _ = std::fs::remove_dir_all(&dir);
        let s3 = |url: &str, e: &str| open(url, Some(e));
        assert!(s3("s3://photos", "http://a").overlaps(&s3("s3://photos/site-b", "http://a")));
        assert!(!s3("s3://photos", "http://a").overlaps(&s3("s3://photos", "http://b")), "another server");
        assert!(!s3("s3://photos", "http://a").overlaps(&s3("s3://photos2", "http://a")));
    }

    #[test]
    fn settings_pass_to_a_child_whole_and_print_no_secret() {
        let mut a = args("az://photos");
        a.azure_access_key = Some(Secret("hunter2-azure".into()));
        a.s3_secret_key = Some(Secret("hunter2-s3".into()));
        let debug = format!("{a:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let env = a.env();
        assert!(env.contains(&("FUNDUS_AZURE_ACCESS_KEY", "hunter2-azure".into())));
        assert!(env.contains(&("FUNDUS_S3_ENDPOINT", String::new())), "unset settings are passed on empty");
        // The child is given exactly the variables the CLI reads.
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            store: StoreArgs,
        }
        let mut read: Vec<String> =
            Cli::command().get_arguments().filter_map(|x| x.get_env()).map(|e| e.to_string_lossy().into_owned()).collect();
        let mut given: Vec<String> = env.iter().map(|(k, _)| k.to_string()).collect();
        read.sort();
        given.sort();
        assert_eq!(given, read);
        assert_eq!(a.under("site-b/").store_url, "az://photos/site-b/");
    }
}
