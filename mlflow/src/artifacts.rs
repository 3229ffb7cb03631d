//! A run's artifacts through the tracking server's artifact proxy (`mlflow server
//! --serve-artifacts`): files are streamed to and from disk, never held whole in memory, so
//! model weights of any size go through.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Body, Url};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_util::io::ReaderStream;

use crate::client::{Client, MAX_DOWNLOAD_BYTES, MAX_READ_BYTES};
use crate::de;
use crate::error::{Error, Result};
use crate::tracking::RunInfo;

const PROXY_PATH: &str = "api/2.0/mlflow-artifacts/artifacts";
const UPLOAD_CHUNK_BYTES: usize = 256 * 1024;

/// One entry of an artifact listing.
#[derive(Debug, Clone, Deserialize)]
pub struct FileInfo {
    /// Relative to the run's artifact root, e.g. `model/weights.pt`.
    pub path: String,
    #[serde(default)]
    pub is_dir: bool,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub file_size: Option<i64>,
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    files: Vec<FileInfo>,
}

impl Client {
    /// Streams the local file `file` to `artifact_path` (e.g. `model/weights.pt`) among the run's
    /// artifacts, replacing what was there. Returns the bytes sent.
    pub async fn upload_artifact(&self, run: &RunInfo, artifact_path: &str, file: &Path) -> Result<u64> {
        let url = self.artifact_url(run, artifact_path)?;
        let f = tokio::fs::File::open(file).await.map_err(Error::io(file))?;
        let len = f.metadata().await.map_err(Error::io(file))?.len();
        let progress = Progress::new();
        let seen = progress.clone();
        let path = file.to_owned();
        let stream = ReaderStream::with_capacity(f, UPLOAD_CHUNK_BYTES).map(move |chunk| {
            seen.touch();
            // Keep the file's name on a read error; reqwest would only say "body error".
            chunk.map_err(|e| std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))
        });
        // An explicit length: without it the body goes chunked, and the server must then
        // take the size on trust.
        let req = self
            .upload_http
            .put(url)
            .header(CONTENT_LENGTH, len)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(Body::wrap_stream(stream));
        self.watch("upload", &progress, self.send(req)).await??;
        Ok(len)
    }

    /// Writes `bytes` to `artifact_path` among the run's artifacts. For small files; use
    /// `upload_artifact` for anything large.
    pub async fn upload_artifact_bytes(&self, run: &RunInfo, artifact_path: &str, bytes: Vec<u8>) -> Result<()> {
        let req = self.http.put(self.artifact_url(run, artifact_path)?).timeout(self.timeouts.request).body(bytes);
        self.send(req).await?;
        Ok(())
    }

    /// The entries directly under `dir` (the artifact root when `None`). A directory that does
    /// not exist lists as empty.
    pub async fn list_artifacts(&self, run: &RunInfo, dir: Option<&str>) -> Result<Vec<FileInfo>> {
        let root = proxy_root(run)?;
        let dir = match dir {
            Some(d) => Some(checked_path(d.trim_end_matches('/'))?),
            None => None,
        };
        let path = match &dir {
            Some(d) => format!("{root}/{d}"),
            None => root,
        };
        let mut url = self.url(PROXY_PATH);
        url.query_pairs_mut().append_pair("path", &path);
        let req = self.http.get(url).timeout(self.timeouts.request);
        let text = self.send(req).await?.text().await.map_err(|e| self.transport_error(e))?;
        let listing: Listing = serde_json::from_str(&text)
            .map_err(|e| Error::Protocol { endpoint: PROXY_PATH.into(), detail: e.to_string() })?;
        // The server names entries relative to the listed directory; callers want them
        // relative to the run, as they pass them back to download.
        Ok(listing
            .files
            .into_iter()
            .map(|mut f| {
                if let Some(d) = &dir {
                    f.path = format!("{d}/{}", f.path);
                }
                f
            })
            .collect())
    }

    /// Streams `artifact_path` into the local file `dest`, which appears only once complete.
    /// Returns the bytes received.
    pub async fn download_artifact(&self, run: &RunInfo, artifact_path: &str, dest: &Path) -> Result<u64> {
        let url = self.artifact_url(run, artifact_path)?;
        let resp = self.send(self.http.get(url)).await?;
        let mut body = self.capped(resp, MAX_DOWNLOAD_BYTES, artifact_path, "the artifact")?;
        let partial = partial_path(dest);
        let written = async {
            let mut out = tokio::fs::File::create(&partial).await.map_err(Error::io(&partial))?;
            let mut n = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                n += chunk.len() as u64;
                out.write_all(&chunk).await.map_err(Error::io(&partial))?;
            }
            out.flush().await.map_err(Error::io(&partial))?;
            Ok::<_, Error>(n)
        }
        .await;
        match written {
            Ok(n) => {
                tokio::fs::rename(&partial, dest).await.map_err(Error::io(dest))?;
                Ok(n)
            }
            Err(e) => {
                // Best effort: the error that matters is the one that stopped the download.
                let _ = tokio::fs::remove_file(&partial).await;
                Err(e)
            }
        }
    }

    /// Deletes `artifact_path` among the run's artifacts, a directory with all it holds.
    /// Deleting what is not there succeeds.
    pub async fn delete_artifacts(&self, run: &RunInfo, artifact_path: &str) -> Result<()> {
        let req = self.http.delete(self.artifact_url(run, artifact_path)?).timeout(self.timeouts.request);
        self.send(req).await?;
        Ok(())
    }

    /// The whole artifact in memory. For small files; use `download_artifact` for anything large.
    pub async fn read_artifact(&self, run: &RunInfo, artifact_path: &str) -> Result<Vec<u8>> {
        let req = self.http.get(self.artifact_url(run, artifact_path)?).timeout(self.timeouts.request);
        let resp = self.send(req).await?;
        self.read_capped(resp, MAX_READ_BYTES, artifact_path).await
    }

    /// The proxy URL of one artifact, each path segment percent-encoded.
    fn artifact_url(&self, run: &RunInfo, artifact_path: &str) -> Result<Url> {
        let root = proxy_root(run)?;
        let path = checked_path(artifact_path)?;
        let mut url = self.url(PROXY_PATH);
        url.path_segments_mut()
            .map_err(|()| Error::Invalid(format!("tracking URI {} cannot carry a path", self.tracking_uri())))?
            .extend(root.split('/'))
            .extend(path.split('/'));
        Ok(url)
    }

    /// Runs `fut` until it ends, or until `progress` has not moved for the idle timeout.
    async fn watch<F: Future>(&self, what: &str, progress: &Progress, fut: F) -> Result<F::Output> {
        tokio::pin!(fut);
        loop {
            let deadline = progress.last() + self.timeouts.idle;
            tokio::select! {
                out = &mut fut => return Ok(out),
                () = tokio::time::sleep_until(deadline) => {
                    if progress.last() + self.timeouts.idle <= Instant::now() {
                        return Err(self.stalled(what));
                    }
                }
            }
        }
    }
}

/// When a transfer last moved.
#[derive(Clone)]
struct Progress(Arc<Mutex<Instant>>);

impl Progress {
    fn new() -> Progress {
        Progress(Arc::new(Mutex::new(Instant::now())))
    }

    fn touch(&self) {
        // A poisoned lock only means another thread panicked mid-store of an Instant.
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn last(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The run's artifact root under the proxy (`<experiment_id>/<run_id>/artifacts`), read
/// from its `artifact_uri` rather than assumed, since the server decides the layout.
fn proxy_root(run: &RunInfo) -> Result<String> {
    let uri = &run.artifact_uri;
    let unsupported = |why: &str| {
        Err(Error::Unsupported(format!(
            "run {} keeps its artifacts at {uri:?}, {why}; this client reaches artifacts only through \
             the tracking server's proxy (mlflow-artifacts:/…, `mlflow server --serve-artifacts`)",
            run.run_id
        )))
    };
    let Some(rest) = uri.strip_prefix("mlflow-artifacts:") else {
        return unsupported("not behind the artifact proxy");
    };
    // `mlflow-artifacts://host:port/…` names another artifact server than this one.
    if rest.starts_with("//") {
        return unsupported("on another artifact server");
    }
    let root = rest.trim_matches('/');
    if root.is_empty() || root.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return unsupported("which is not a usable path");
    }
    Ok(root.to_owned())
}

/// A relative artifact path with no empty, `.` or `..` parts (the server refuses those anyway).
fn checked_path(path: &str) -> Result<&str> {
    if path.is_empty() || path.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(Error::Invalid(format!(
            "artifact path {path:?} must be relative, with no empty, `.` or `..` parts"
        )));
    }
    Ok(path)
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    dest.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::RunStatus;

    fn run(uri: &str) -> RunInfo {
        RunInfo {
            run_id: "abc".into(),
            experiment_id: "1".into(),
            run_name: String::new(),
            status: RunStatus::Running,
            start_time: None,
            end_time: None,
            artifact_uri: uri.into(),
            lifecycle_stage: "active".into(),
        }
    }

    #[test]
    fn builds_urls_from_the_runs_artifact_uri() {
        let c = Client::new("http://127.0.0.1:5000/prefix").expect("client");
        let url = c.artifact_url(&run("mlflow-artifacts:/7/abc/artifacts"), "model/a b#1.pt").expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/prefix/api/2.0/mlflow-artifacts/artifacts/7/abc/artifacts/model/a%20b%231.pt"
        );
    }

    #[test]
    fn refuses_roots_and_paths_it_cannot_serve() {
        for uri in
            ["/tmp/mlruns/1/abc/artifacts", "s3://b/1/abc", "mlflow-artifacts://other:5000/1/abc", "mlflow-artifacts:/"]
        {
            assert!(matches!(proxy_root(&run(uri)), Err(Error::Unsupported(_))), "{uri}");
        }
        for path in ["", "/etc/passwd", "a/../../b", "a//b", "./a"] {
            assert!(matches!(checked_path(path), Err(Error::Invalid(_))), "{path}");
        }
    }
}
