//! The HTTP side: SUBSCRIBE on a connection of its own whose response is the
//! event stream, and every other call on a second connection carrying the
//! stream's `Mesos-Stream-Id`.
//!
//! What the master does and how this answers it:
//! - `307 Temporary Redirect` with a protocol-relative `Location: //host:port`
//!   (not the leader): subscribe again there.
//! - `503` (no leader yet, or recovering), refused or dropped connections: the
//!   caller retries with [`Backoff`].
//! - No event for a few heartbeat intervals: the stream is dead even if the TCP
//!   connection is not; [`Subscription::next`] fails with `HeartbeatTimeout`.
//!   The stream itself has no overall timeout.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::StatusCode;
use url::Url;

use crate::proto::{Call, Event, Id};
use crate::recordio::{Decoder, FrameError};

const SCHEDULER_PATH: &str = "/api/v1/scheduler";
/// The largest event accepted (an OFFERS event from a big cluster is a few MB).
const MAX_EVENT: usize = 64 << 20;
/// Redirects followed by one subscribe attempt before giving up on it.
const MAX_REDIRECTS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid master URL {0:?}: {1}")]
    BadUrl(String, String),
    #[error("cannot reach the master at {0}: {1}")]
    Connect(Url, #[source] reqwest::Error),
    #[error("master at {0} is not available (503): {1}")]
    Unavailable(Url, String),
    #[error("master at {0} is not the leader (307 to {1:?})")]
    NotLeader(Url, String),
    #[error("more than {MAX_REDIRECTS} redirects, last to {0}")]
    RedirectLoop(Url),
    #[error("master refused the {call} call ({status}): {body}")]
    Rejected { call: String, status: StatusCode, body: String },
    #[error("SUBSCRIBE response lacks the Mesos-Stream-Id header")]
    NoStreamId,
    #[error("event stream ended")]
    StreamEnded,
    #[error("event stream broke: {0}")]
    Stream(#[source] reqwest::Error),
    #[error("no event for {0:?}: the master stopped sending heartbeats")]
    HeartbeatTimeout(Duration),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("undecodable event: {0}")]
    Decode(#[from] crate::proto::DecodeError),
}

impl Error {
    /// Worth another attempt after a pause (as opposed to a request the master
    /// will refuse whatever the timing).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Error::BadUrl(..) | Error::Rejected { status: StatusCode::BAD_REQUEST, .. })
    }
}

/// Exponential backoff with jitter: each delay is drawn from the upper half of
/// `base * 2^n`, capped (the scheduler API documentation recommends 15 s).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap, attempt: 0 }
    }

    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(20)).min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        exp.mul_f64(rand::random_range(0.5..=1.0))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(15))
    }
}

/// Where the master is and how to talk to it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    master: Url,
    stream_http: reqwest::Client,
    call_http: reqwest::Client,
    /// The stream is declared dead after this many heartbeat intervals without an event.
    missed_heartbeats: f64,
}

impl Client {
    /// `master` is the base URL, e.g. `http://10.0.0.1:5050`.
    pub fn new(master: &str) -> Result<Self, Error> {
        let master = parse_master(master)?;
        // No redirects: a 307 is the master telling us who leads, handled here.
        let stream_http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .tcp_keepalive(Duration::from_secs(30))
            .http1_only()
            .build()
            .map_err(|e| Error::BadUrl(master.to_string(), e.to_string()))?;
        let call_http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .http1_only()
            .build()
            .map_err(|e| Error::BadUrl(master.to_string(), e.to_string()))?;
        Ok(Client { master, stream_http, call_http, missed_heartbeats: 3.0 })
    }

    /// How many heartbeat intervals without an event mean the stream is dead (default 3).
    pub fn with_missed_heartbeats(mut self, n: f64) -> Self {
        self.missed_heartbeats = n.max(1.0);
        self
    }

    /// The master last talked to (after redirects).
    pub fn master(&self) -> &Url {
        &self.master
    }

    /// Subscribes, following redirects to the leader. Returns once the master
    /// answered 200; the first event on the stream is normally SUBSCRIBED.
    pub async fn subscribe(&mut self, call: &Call) -> Result<Subscription, Error> {
        let body = serde_json::to_vec(call).expect("calls serialise");
        for _ in 0..=MAX_REDIRECTS {
            let url = endpoint(&self.master);
            let resp = self
                .stream_http
                .post(url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|e| Error::Connect(self.master.clone(), e))?;
            match resp.status() {
                StatusCode::OK => {
                    let stream_id = resp
                        .headers()
                        .get("Mesos-Stream-Id")
                        .and_then(|v| v.to_str().ok())
                        .ok_or(Error::NoStreamId)?
                        .to_owned();
                    let first_wait = Duration::from_secs_f64(15.0 * self.missed_heartbeats);
                    return Ok(Subscription {
                        deadline: tokio::time::Instant::now() + first_wait,
                        master: self.master.clone(),
                        stream_id,
                        framework_id: None,
                        body: resp.bytes_stream().boxed(),
                        decoder: Decoder::new(MAX_EVENT),
                        watchdog: first_wait,
                        missed_heartbeats: self.missed_heartbeats,
                        calls: self.call_http.clone(),
                    });
                }
                StatusCode::TEMPORARY_REDIRECT => {
                    let location = header(&resp, "Location");
                    let next = redirect_target(&self.master, &location)?;
                    tracing::info!(from = %self.master, to = %next, "master is not the leader; following the redirect");
                    self.master = next;
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    return Err(Error::Unavailable(self.master.clone(), text(resp).await));
                }
                status => {
                    return Err(Error::Rejected { call: "SUBSCRIBE".into(), status, body: text(resp).await });
                }
            }
        }
        Err(Error::RedirectLoop(self.master.clone()))
    }
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

async fn text(resp: reqwest::Response) -> String {
    let mut t = resp.text().await.unwrap_or_default();
    t.truncate(500);
    t.trim().to_owned()
}

fn parse_master(s: &str) -> Result<Url, Error> {
    let bad = |why: &str| Error::BadUrl(s.to_owned(), why.to_owned());
    let with_scheme = if s.contains("://") { s.to_owned() } else { format!("http://{s}") };
    let url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
        return Err(bad("give the master's base URL (scheme, host and port), without a path"));
    }
    Ok(url)
}

fn endpoint(master: &Url) -> Url {
    master.join(SCHEDULER_PATH).expect("a base URL joins a path")
}

/// The master's `Location` is protocol-relative (`//host:port`, perhaps with
/// the endpoint's path): keep our scheme, take its host and port.
fn redirect_target(current: &Url, location: &str) -> Result<Url, Error> {
    let bad = |why: &str| Error::BadUrl(location.to_owned(), format!("in a 307 from {current}: {why}"));
    let absolute = if location.starts_with("//") {
        format!("{}:{location}", current.scheme())
    } else if location.contains("://") {
        location.to_owned()
    } else {
        return Err(bad("not a protocol-relative or absolute URL"));
    };
    let mut url = Url::parse(&absolute).map_err(|e| bad(&e.to_string()))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    url.set_path("/");
    url.set_query(None);
    Ok(url)
}

/// An open SUBSCRIBE stream.
pub struct Subscription {
    master: Url,
    stream_id: String,
    framework_id: Option<Id>,
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    decoder: Decoder,
    watchdog: Duration,
    /// When the stream counts as dead unless an event arrives first. Kept
    /// here, not per call, so a caller that polls `next` in a `select!` (and
    /// so cancels it often) does not restart the clock each time.
    deadline: tokio::time::Instant,
    missed_heartbeats: f64,
    calls: reqwest::Client,
}

impl Subscription {
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    pub fn master(&self) -> &Url {
        &self.master
    }

    /// The next event. SUBSCRIBED sets the watchdog from the master's heartbeat
    /// interval; any error means the stream is finished and a new subscription
    /// is needed. Cancel-safe: dropping the future loses no bytes.
    pub async fn next(&mut self) -> Result<Event, Error> {
        loop {
            if let Some(record) = self.decoder.next()? {
                let event = Event::decode(&record)?;
                if let Event::Subscribed(s) = &event {
                    self.framework_id = Some(s.framework_id.clone());
                    let hb = s.heartbeat_interval_seconds.filter(|h| h.is_finite() && *h > 0.0).unwrap_or(15.0);
                    self.watchdog = Duration::from_secs_f64(hb * self.missed_heartbeats);
                }
                self.deadline = tokio::time::Instant::now() + self.watchdog;
                return Ok(event);
            }
            match tokio::time::timeout_at(self.deadline, self.body.next()).await {
                Err(_) => return Err(Error::HeartbeatTimeout(self.watchdog)),
                Ok(None) => return Err(Error::StreamEnded),
                Ok(Some(Err(e))) => return Err(Error::Stream(e)),
                Ok(Some(Ok(chunk))) => self.decoder.push(&chunk),
            }
        }
    }

    /// A handle for making calls on this subscription (from any task).
    pub fn caller(&self) -> Caller {
        Caller { http: self.calls.clone(), url: endpoint(&self.master), stream_id: self.stream_id.clone() }
    }
}

/// Makes calls for one subscription: same master, same `Mesos-Stream-Id`.
#[derive(Debug, Clone)]
pub struct Caller {
    http: reqwest::Client,
    url: Url,
    stream_id: String,
}

impl Caller {
    pub async fn call(&self, call: &Call) -> Result<(), Error> {
        let body = serde_json::to_vec(call).expect("calls serialise");
        let master = || {
            let mut m = self.url.clone();
            m.set_path("/");
            m
        };
        let resp = self
            .http
            .post(self.url.clone())
            .header("Content-Type", "application/json")
            .header("Mesos-Stream-Id", &self.stream_id)
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Connect(master(), e))?;
        match resp.status() {
            StatusCode::ACCEPTED | StatusCode::OK => Ok(()),
            StatusCode::TEMPORARY_REDIRECT => Err(Error::NotLeader(master(), header(&resp, "Location"))),
            StatusCode::SERVICE_UNAVAILABLE => Err(Error::Unavailable(master(), text(resp).await)),
            status => Err(Error::Rejected { call: call.kind.clone(), status, body: text(resp).await }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_urls() {
        assert_eq!(parse_master("127.0.0.1:5050").expect("ok").as_str(), "http://127.0.0.1:5050/");
        assert_eq!(parse_master("http://m:5050/").expect("ok").as_str(), "http://m:5050/");
        for bad in ["ftp://m:5050", "http://", "http://m:5050/master", "http://m:5050?x=1", ""] {
            assert!(parse_master(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirects_keep_the_scheme_and_drop_the_path() {
        let cur = Url::parse("https://a:5050/").expect("url");
        assert_eq!(redirect_target(&cur, "//b:5051").expect("ok").as_str(), "https://b:5051/");
        assert_eq!(redirect_target(&cur, "//b:5051/api/v1/scheduler").expect("ok").as_str(), "https://b:5051/");
        assert_eq!(redirect_target(&cur, "http://c:1/x").expect("ok").as_str(), "http://c:1/");
        assert!(redirect_target(&cur, "").is_err());
        assert!(redirect_target(&cur, "b:5051").is_err());
        assert!(redirect_target(&cur, "//").is_err());
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(15));
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        for (n, d) in delays.iter().enumerate() {
            let full = Duration::from_millis(100).saturating_mul(1 << n).min(Duration::from_secs(15));
            assert!(*d >= full / 2 && *d <= full, "attempt {n}: {d:?} not within [{:?}, {full:?}]", full / 2);
        }
        assert!(delays[11] >= Duration::from_millis(7500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
