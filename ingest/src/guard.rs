//! What keeps anyone on the network from exhausting the server: a cap on
//! requests in flight, a request rate per client address, a budget of failed
//! token checks per client address, a negative cache of unknown tokens, and a
//! bound on database connections spent on token lookups. None of it needs the
//! database, so a flood of made-up tokens never reaches it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// How long an unknown token is answered from memory.
const UNKNOWN_TTL: Duration = Duration::from_secs(60);
/// Entries each table may hold; past it, the stalest half is dropped.
const MAX_ENTRIES: usize = 100_000;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, clap::Args)]
pub struct GuardArgs {
    /// Requests handled at once; beyond it the server answers 503 `overloaded`.
    #[arg(long, env = "FUNDUS_MAX_IN_FLIGHT", default_value_t = 512)]
    pub max_in_flight: usize,
    /// Requests per second one client address may make (bursts of twice as
    /// many); beyond it 429 `too_many_requests`. 0 turns it off.
    #[arg(long, env = "FUNDUS_CLIENT_RATE", default_value_t = 50.0)]
    pub client_rate: f64,
    /// Failed device-token checks one client address may make per minute;
    /// beyond it its token-bearing requests get 429 until the minute is over.
    #[arg(long, env = "FUNDUS_AUTH_FAILURES_PER_MINUTE", default_value_t = 30)]
    pub auth_failures_per_minute: u32,
    /// Database connections token lookups may hold at once (of the pool).
    #[arg(long, env = "FUNDUS_AUTH_LOOKUPS", default_value_t = 4)]
    pub auth_lookups: usize,
}

impl Default for GuardArgs {
    /// The flags' defaults.
    fn default() -> Self {
        GuardArgs { max_in_flight: 512, client_rate: 50.0, auth_failures_per_minute: 30, auth_lookups: 4 }
    }
}

struct Client {
    tokens: f64,
    refilled: Instant,
    failures: u32,
    window: Instant,
}

pub struct Guard {
    args: GuardArgs,
    in_flight: Arc<Semaphore>,
    lookups: Semaphore,
    clients: Mutex<HashMap<IpAddr, Client>>,
    unknown: Mutex<HashMap<[u8; 32], Instant>>,
}

/// Keeps a table bounded: when full, drops the entries older than the median.
fn prune<K: Copy + Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, at: impl Fn(&V) -> Instant) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    let mut times: Vec<Instant> = map.values().map(&at).collect();
    let mid = times.len() / 2;
    let cut = *times.select_nth_unstable(mid).1;
    map.retain(|_, v| at(v) > cut);
}

impl Guard {
    pub fn new(args: GuardArgs) -> Guard {
        Guard {
            in_flight: Arc::new(Semaphore::new(args.max_in_flight.max(1))),
            lookups: Semaphore::new(args.auth_lookups.max(1)),
            args,
            clients: Mutex::new(HashMap::new()),
            unknown: Mutex::new(HashMap::new()),
        }
    }

    fn client<T>(&self, ip: IpAddr, now: Instant, f: impl FnOnce(&mut Client) -> T) -> T {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if !clients.contains_key(&ip) {
            prune(&mut clients, |c| c.refilled.max(c.window));
        }
        let c = clients.entry(ip).or_insert(Client { tokens: 2.0 * self.args.client_rate, refilled: now, failures: 0, window: now });
        f(c)
    }

    /// Takes one request from the client's bucket; false when it is empty.
    fn admit(&self, ip: IpAddr) -> bool {
        let rate = self.args.client_rate;
        if rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        self.client(ip, now, |c| {
            c.tokens = (c.tokens + rate * now.duration_since(c.refilled).as_secs_f64()).min(2.0 * rate);
            c.refilled = now;
            if c.tokens >= 1.0 {
                c.tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// Whether the client has used up its failed token checks for this minute.
    pub fn throttled(&self, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip else { return false };
        let now = Instant::now();
        self.client(ip, now, |c| {
            if now.duration_since(c.window) >= FAILURE_WINDOW {
                c.window = now;
                c.failures = 0;
            }
            c.failures >= self.args.auth_failures_per_minute
        })
    }

    /// Records a failed token check by `ip` of the token with hash `token`.
    pub fn failed(&self, ip: Option<IpAddr>, token: [u8; 32]) {
        let now = Instant::now();
        if let Some(ip) = ip {
            self.client(ip, now, |c| c.failures = c.failures.saturating_add(1));
        }
        let mut unknown = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut unknown, |t| *t);
        unknown.insert(token, now);
    }

    /// Whether the token was looked up and not found a moment ago. A token is
    /// random and created before it is first used, so this never hides a new
    /// device; a disabled token is not cached the other way, so revoking is
    /// immediate.
    pub fn known_unknown(&self, token: &[u8; 32]) -> bool {
        let unknown = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        unknown.get(token).is_some_and(|t| t.elapsed() < UNKNOWN_TTL)
    }

    /// A slot for one database token lookup, so that lookups never hold more
    /// than `auth_lookups` of the pool's connections.
    pub async fn lookup_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.lookups.acquire().await.expect("the lookup semaphore is never closed")
    }

    fn enter(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }
}

fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The middleware: the in-flight cap for every request, the client's rate for
/// all but the probes and metrics.
pub async fn limit(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let Some(_permit) = guard.enter() else {
        return ApiError::Overloaded.into_response();
    };
    let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(ip) = ip {
        if !exempt(req.uri().path()) && !guard.admit(ip) {
            return ApiError::TooManyRequests.into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(rate: f64, failures: u32) -> Guard {
        Guard::new(GuardArgs { max_in_flight: 2, client_rate: rate, auth_failures_per_minute: failures, auth_lookups: 1 })
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_and_others_are_unaffected() {
        let g = guard(5.0, 3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!((0..20).filter(|_| g.admit(a)).count(), 10, "a burst of twice the rate");
        assert!(g.admit(b));
        std::thread::sleep(Duration::from_millis(450));
        assert!(g.admit(a), "refilled at the rate");
        assert!(guard(0.0, 3).admit(a), "0 turns it off");
    }

    #[test]
    fn failed_checks_are_budgeted_per_client_and_unknown_tokens_remembered() {
        let g = guard(5.0, 3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for i in 0..3 {
            assert!(!g.throttled(Some(a)));
            g.failed(Some(a), [i; 32]);
        }
        assert!(g.throttled(Some(a)));
        assert!(!g.throttled(Some(b)));
        assert!(g.known_unknown(&[1; 32]) && !g.known_unknown(&[9; 32]));
    }

    #[test]
    fn in_flight_requests_are_capped() {
        let g = guard(5.0, 3);
        let (p1, p2) = (g.enter(), g.enter());
        assert!(p1.is_some() && p2.is_some() && g.enter().is_none());
        drop(p1);
        assert!(g.enter().is_some());
    }

    #[test]
    fn tables_stay_bounded() {
        let mut m: HashMap<u32, Instant> = HashMap::new();
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES as u32 {
            m.insert(i, t0 + Duration::from_micros(i as u64));
        }
        prune(&mut m, |t| *t);
        assert!(m.len() <= MAX_ENTRIES / 2 + 1 && m.contains_key(&(MAX_ENTRIES as u32 - 1)), "{}", m.len());
    }
}
