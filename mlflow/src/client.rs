//! The connection to one tracking server: its address, the HTTP clients, timeouts, and the
//! JSON call that every REST method goes through.

use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
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

/// Largest JSON answer read from a REST call.
pub const MAX_JSON_BYTES: u64 = 16 << 20;
/// Largest error body read (for the message).
const MAX_REFUSAL_BYTES: u64 = 64 << 10;
/// Largest artifact `read_artifact` holds in memory.
pub const MAX_READ_BYTES: u64 = 64 << 20;
/// Largest artifact `download_artifact` writes to disk.
pub const MAX_DOWNLOAD_BYTES: u64 = 8 << 30;

/// How requests prove who sends them: MLflow's own environment variables.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// `MLFLOW_TRACKING_TOKEN`: `Authorization: Bearer …`.
    Token(String),
    /// `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`: HTTP basic auth.
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Token(_) => "Token(***)",
            Auth::Basic { .. } => "Basic(***)",
        })
    }
}

impl Auth {
    /// From `MLFLOW_TRACKING_TOKEN`, or `MLFLOW_TRACKING_USERNAME` with `MLFLOW_TRACKING_PASSWORD`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Auth> {
        match (var("MLFLOW_TRACKING_TOKEN"), var("MLFLOW_TRACKING_USERNAME"), var("MLFLOW_TRACKING_PASSWORD")) {
            (Some(_), Some(_), _) => Err(Error::Invalid("set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME, not both".into())),
            (Some(t), None, _) => Ok(Auth::Token(t)),
            (None, Some(user), Some(password)) => Ok(Auth::Basic { user, password }),
            (None, Some(_), None) => Err(Error::Invalid("MLFLOW_TRACKING_USERNAME is set without MLFLOW_TRACKING_PASSWORD".into())),
            (None, None, _) => Ok(Auth::None),
        }
    }

    fn header(&self) -> Result<Option<HeaderValue>> {
        use base64::Engine;
        let text = match self {
            Auth::None => return Ok(None),
            Auth::Token(t) => format!("Bearer {t}"),
            Auth::Basic { user, password } => {
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
            }
        };
        let mut v = HeaderValue::from_str(&text).map_err(|_| Error::Invalid("the MLflow credentials contain characters a header cannot carry".into()))?;
        v.set_sensitive(true);
        Ok(Some(v))
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

    /// A client that authenticates as MLflow's environment variables say (`Auth::from_env`).
    pub fn from_env(tracking_uri: &str) -> Result<Client> {
        Client::with_auth(tracking_uri, Timeouts::default(), Auth::from_env(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))?)
    }

    pub fn with_timeouts(tracking_uri: &str, timeouts: Timeouts) -> Result<Client> {
        Client::with_auth(tracking_uri, timeouts, Auth::None)
    }

    pub fn with_auth(tracking_uri: &str, timeouts: Timeouts, auth: Auth) -> Result<Client> {
        let uri = tracking_uri.trim_end_matches('/').to_owned();
        let base = Url::parse(&format!("{uri}/"))
            .map_err(|e| Error::Invalid(format!("tracking URI {tracking_uri:?} is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(Error::Invalid(format!(
                "tracking URI {tracking_uri:?} must be http:// or https:// with a host"
            )));
        }
        let mut headers = HeaderMap::new();
        if let Some(v) = auth.header()? {
            headers.insert(AUTHORIZATION, v);
        }
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!(env!("CARGO_PKG_NAME"), "-rs/", env!("CARGO_PKG_VERSION")))
                .default_headers(headers.clone())
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
        let body = self.read_capped(resp, MAX_JSON_BYTES, endpoint).await?;
        // Endpoints that return nothing answer `{}`, which deserialises into an empty struct.
        serde_json::from_slice(&body)
            .map_err(|e| Error::Protocol { endpoint: endpoint.to_owned(), detail: e.to_string() })
    }

    /// Sends, and turns any failure or non-2xx answer into an `Error`.
    pub(crate) async fn send(&self, req: RequestBuilder) -> Result<Response> {
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        if resp.status().is_success() { Ok(resp) } else { Err(refusal(resp).await) }
    }

    /// The whole body, refused once it passes `max` bytes (announced or sent).
    pub(crate) async fn read_capped(&self, resp: Response, max: u64, what: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut body = self.capped(resp, max, what, "the answer")?;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The body's chunks, refused (`{noun} is larger than {max} bytes`) when
    /// its announced length or the bytes sent pass `max`.
    pub(crate) fn capped<'a>(
        &'a self,
        resp: Response,
        max: u64,
        what: &'a str,
        noun: &'a str,
    ) -> Result<impl futures::Stream<Item = Result<bytes::Bytes>> + Unpin + 'a> {
        let too_big = move || Error::Protocol { endpoint: what.to_owned(), detail: format!("{noun} is larger than {max} bytes") };
        if resp.content_length().is_some_and(|n| n > max) {
            return Err(too_big());
        }
        let mut seen = 0u64;
        Ok(resp.bytes_stream().map(move |chunk| {
            let chunk = chunk.map_err(|e| self.transport_error(e))?;
            seen += chunk.len() as u64;
            if seen > max { Err(too_big()) } else { Ok(chunk) }
        }))
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
    // A refusal is short (only its start is read); a body that cannot be read
    // still leaves the status to report.
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() as u64 >= MAX_REFUSAL_BYTES {
            break;
        }
    }
    let body = String::from_utf8_lossy(&body).into_owned();
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
    fn credentials_come_from_mlflows_variables_and_never_print() {
        let env = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.to_owned());
        assert!(matches!(Auth::from_env(env(&[])), Ok(Auth::None)));
        let t = Auth::from_env(env(&[("MLFLOW_TRACKING_TOKEN", "tok-123")])).expect("token");
        assert_eq!(t.header().expect("header").expect("some").to_str().expect("ascii"), "Bearer tok-123");
        let b = Auth::from_env(env(&[("MLFLOW_TRACKING_USERNAME", "ann"), ("MLFLOW_TRACKING_PASSWORD", "pw")])).expect("basic");
        assert_eq!(b.header().expect("header").expect("some").to_str().expect("ascii"), "Basic YW5uOnB3");
        assert!(!format!("{b:?}{t:?}").contains("pw") && !format!("{t:?}").contains("tok"));
        assert!(Auth::from_env(env(&[("MLFLOW_TRACKING_USERNAME", "ann")])).is_err());
        assert!(Auth::from_env(env(&[("MLFLOW_TRACKING_TOKEN", "t"), ("MLFLOW_TRACKING_USERNAME", "ann")])).is_err());
    }

    /// What the client sends and how much it reads, against a listener that
    /// records the request and answers with an oversized body.
    #[tokio::test]
    async fn sends_the_credentials_and_refuses_an_oversized_answer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let uri = format!("http://{}", l.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut req = vec![0u8; 4096];
            let n = s.read(&mut req).await.expect("read");
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", MAX_JSON_BYTES + 1);
            s.write_all(head.as_bytes()).await.expect("write");
            String::from_utf8_lossy(&req[..n]).into_owned()
        });
        let c = Client::with_auth(&uri, Timeouts::default(), Auth::Token("tok-9".into())).expect("client");
        let err = c.get_json::<serde_json::Value>("runs/get", &[("run_id", "x")]).await.expect_err("refused");
        assert!(err.to_string().contains("larger than"), "{err}");
        let request = server.await.expect("server");
        assert!(request.to_ascii_lowercase().contains("authorization: bearer tok-9"), "{request}");
    }

    #[test]
    fn excerpt_cuts_on_a_character_boundary() {
        assert_eq!(excerpt("  ééé ", 2), "éé…");
        assert_eq!(excerpt("ok", 2), "ok");
    }
}
