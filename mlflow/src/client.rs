//! The connection to one tracking server: its address, the HTTP clients, timeouts, and the
//! JSON call that every REST method goes through.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result, root_cause};

/// How long to wait, and for what.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To open a connection.
    pub connect: Duration,
    /// For a whole REST call (request and answer). Not applied to artifact transfers, whose
    /// length grows with the file.
    pub request: Duration,
    /// For an artifact transfer: the longest wait without progress (no bytes sent or received)
    /// before giving up.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(10), request: Duration::from_secs(60), idle: Duration::from_secs(60) }
    }
}

/// A client for one MLflow tracking server. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct Client {
    /// The tracking URI as given, without a trailing slash (for messages).
    uri: String,
    /// The same with a trailing slash, so that joining keeps any path prefix.
    base: Url,
    /// REST calls and downloads: reqwest's read timeout bounds each wait for bytes.
    pub(crate) http: reqwest::Client,
    /// Uploads: reqwest's read timeout would run from the start of the request to the
    /// answer's headers, so it would cap how long an upload may take. Uploads watch their
    /// own progress instead (`artifacts::watch`).
    pub(crate) upload_http: reqwest::Client,
    pub(crate) timeouts: Timeouts,
}

impl Client {
    /// A client for the tracking server at `tracking_uri` (`http://host:port`, optionally with a
    /// path prefix), with the default timeouts. Nothing is sent until the first call.
    pub fn new(tracking_uri: &str) -> Result<Client> {
        Client::with_timeouts(tracking_uri, Timeouts::default())
    }

    pub fn with_timeouts(tracking_uri: &str, timeouts: Timeouts) -> Result<Client> {
        let uri = tracking_uri.trim_end_matches('/').to_owned();
        let base = Url::parse(&format!("{uri}/"))
            .map_err(|e| Error::Invalid(format!("tracking URI {tracking_uri:?} is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(Error::Invalid(format!(
                "tracking URI {tracking_uri:?} must be http:// or https:// with a host"
            )));
        }
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!(env!("CARGO_PKG_NAME"), "-rs/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(timeouts.connect)
        };
        let build = |b: reqwest::ClientBuilder| {
            b.build().map_err(|e| Error::Unsupported(format!("cannot set up the HTTP client: {}", root_cause(&e))))
        };
        Ok(Client {
            uri,
            base,
            http: build(builder().read_timeout(timeouts.idle))?,
            upload_http: build(builder())?,
            timeouts,
        })
    }

    /// The tracking URI this client talks to.
    pub fn tracking_uri(&self) -> &str {
        &self.uri
    }

    /// `path` under the tracking URI; `path` has no leading slash.
    pub(crate) fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let prefix = url.path().to_owned();
        url.set_path(&format!("{prefix}{path}"));
        url
    }

    /// A REST endpoint of the tracking API, e.g. `runs/get`.
    fn endpoint_url(&self, endpoint: &str) -> Url {
        self.url(&format!("api/2.0/mlflow/{endpoint}"))
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<T> {
        let mut url = self.endpoint_url(endpoint);
        url.query_pairs_mut().extend_pairs(query);
        self.call_json(endpoint, self.http.get(url)).await
    }

    pub(crate) async fn post_json<T: DeserializeOwned>(&self, endpoint: &str, body: &impl Serialize) -> Result<T> {
        self.call_json(endpoint, self.http.post(self.endpoint_url(endpoint)).json(body)).await
    }

    /// MLflow's DELETE endpoints read their arguments from a JSON body, not the query.
    pub(crate) async fn delete_json<T: DeserializeOwned>(&self, endpoint: &str, body: &impl Serialize) -> Result<T> {
        self.call_json(endpoint, self.http.request(Method::DELETE, self.endpoint_url(endpoint)).json(body)).await
    }

    async fn call_json<T: DeserializeOwned>(&self, endpoint: &str, req: RequestBuilder) -> Result<T> {
        let resp = self.send(req.timeout(self.timeouts.request)).await?;
        let text = resp.text().await.map_err(|e| self.transport_error(e))?;
        // Endpoints that return nothing answer `{}`, which deserialises into an empty struct.
        serde_json::from_str(&text)
            .map_err(|e| Error::Protocol { endpoint: endpoint.to_owned(), detail: e.to_string() })
    }

    /// Sends, and turns any failure or non-2xx answer into an `Error`.
    pub(crate) async fn send(&self, req: RequestBuilder) -> Result<Response> {
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        if resp.status().is_success() { Ok(resp) } else { Err(refusal(resp).await) }
    }

    pub(crate) fn transport_error(&self, e: reqwest::Error) -> Error {
        let reason = if e.is_timeout() { format!("timed out ({})", root_cause(&e)) } else { root_cause(&e) };
        if e.is_connect() {
            Error::Unreachable { uri: self.uri.clone(), reason }
        } else {
            Error::Transport { uri: self.uri.clone(), reason }
        }
    }

    pub(crate) fn stalled(&self, what: &str) -> Error {
        Error::Transport {
            uri: self.uri.clone(),
            reason: format!("{what} made no progress for {} s", self.timeouts.idle.as_secs()),
        }
    }
}

#[derive(serde::Deserialize)]
struct ApiError {
    error_code: String,
    #[serde(default)]
    message: String,
}

/// A non-2xx answer as an error: MLflow's own JSON error when it sent one.
async fn refusal(resp: Response) -> Error {
    let status = resp.status().as_u16();
    // A refusal is short; a body that cannot be read still leaves the status to report.
    let body = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<ApiError>(&body) {
        Ok(e) => Error::Api { status, error_code: e.error_code, message: e.message },
        Err(_) => Error::Http { status, body: excerpt(&body, 500) },
    }
}

/// At most `max` characters of `text`, trimmed, for messages.
fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_path_prefix() {
        let c = Client::new("http://127.0.0.1:5000/mlflow/").expect("client");
        assert_eq!(c.tracking_uri(), "http://127.0.0.1:5000/mlflow");
        assert_eq!(c.endpoint_url("runs/get").as_str(), "http://127.0.0.1:5000/mlflow/api/2.0/mlflow/runs/get");
        let c = Client::new("http://localhost:5000").expect("client");
        assert_eq!(c.endpoint_url("runs/get").as_str(), "http://localhost:5000/api/2.0/mlflow/runs/get");
    }

    #[test]
    fn refuses_what_is_not_an_http_url() {
        for uri in ["", "127.0.0.1:5000", "file:///tmp/mlruns", "databricks"] {
            assert!(matches!(Client::new(uri), Err(Error::Invalid(_))), "{uri:?}");
        }
    }

    #[test]
    fn excerpt_cuts_on_a_character_boundary() {
        assert_eq!(excerpt("  ééé ", 2), "éé…");
        assert_eq!(excerpt("ok", 2), "ok");
    }
}
