//! The upload API as a library: `router(state)` is the whole HTTP surface
//! (the phone API here, the review service mounted beside it), and `serve`
//! runs it with graceful shutdown. The binary (`fundus serve`) only parses
//! configuration and calls in.

pub mod api;
pub mod auth;
pub mod config;
pub mod erase;
pub mod error;
pub mod guard;
pub mod metrics;
pub mod ops;
pub mod pseudonym;
pub mod sweep;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Request, StatusCode};
use axum::routing::{MethodRouter, get, post};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use config::{Config, DbArgs};
pub use store::{Secret, Store, StoreArgs};

#[derive(Clone)]
pub struct AppState {
    pub db: db::PgPool,
    pub store: Store,
    pub config: Arc<Config>,
    pub metrics: Arc<metrics::Metrics>,
    /// Bounds how many photos are decoded (and held in memory) at once.
    pub decode_slots: Arc<tokio::sync::Semaphore>,
    /// Bytes uploads in flight may buffer, in KiB permits, and how many
    /// permits it holds in all (no upload asks for more).
    pub buffer_budget: Arc<tokio::sync::Semaphore>,
    pub buffer_kib: u32,
    pub guard: Arc<guard::Guard>,
    /// The clinicians' reading service, on the same pool and store.
    pub review: review::State,
    /// The last readiness probe: `/readyz` answers from it for a moment, so
    /// a flood of probes costs one database and store round trip at a time.
    pub ready: Arc<tokio::sync::Mutex<Option<ops::Probe>>>,
}

impl AppState {
    /// Connects lazily: a database that is down at start-up makes requests
    /// answer 503 until it is back, rather than stopping the server.
    pub fn new(config: Config) -> anyhow::Result<AppState> {
        config.review.validate().map_err(anyhow::Error::msg)?;
        config.pseudonym.validate().map_err(anyhow::Error::msg)?;
        let db = config.db.connect()?;
        let store = Store::open(&config.store)?;
        let slots = config
            .decode_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1);
        let buffer_kib = (config.max_buffered_bytes / 1024).clamp(1, u64::from(u32::MAX).min(tokio::sync::Semaphore::MAX_PERMITS as u64)) as u32;
        let buffer_budget = Arc::new(tokio::sync::Semaphore::new(buffer_kib as usize));
        let guard = Arc::new(guard::Guard::new(config.guard.clone()));
        let review = review::State { db: db.clone(), store: store.clone(), config: Arc::new(config.review.clone()) };
        Ok(AppState {
            db,
            store,
            config: Arc::new(config),
            metrics: Arc::new(metrics::Metrics::new()),
            decode_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            buffer_budget,
            buffer_kib,
            guard,
            review,
            ready: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }
}

async fn not_found() -> error::ApiError {
    error::ApiError::NotFound("route")
}

/// Every route of the phone API: (method, path, handler).
fn table() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    vec![
        (Method::POST, "/v1/studies", post(api::create_study)),
        (Method::GET, "/v1/studies/{id}", get(api::get_study)),
        (Method::POST, "/v1/studies/{id}/images", post(api::upload_image)),
        (Method::GET, "/v1/images/{id}", get(api::get_image)),
        (Method::GET, "/healthz", get(ops::healthz)),
        (Method::GET, "/readyz", get(ops::readyz)),
        (Method::GET, "/metrics", get(ops::metrics)),
        (Method::GET, "/openapi.json", get(ops::openapi)),
    ]
}

/// (method, path) of every route `router` serves, the review service's included.
pub fn routes() -> Vec<(Method, &'static str)> {
    let mut all: Vec<_> = table().into_iter().map(|(m, p, _)| (m, p)).collect();
    all.extend(review::routes());
    all
}

pub fn router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.config.request_timeout_secs);
    let review = review::router(state.review.clone());
    let metrics_apart = state.config.metrics_listen.is_some();
    let guard = state.guard.clone();
    table()
        .into_iter()
        .filter(|(_, path, _)| !(metrics_apart && *path == "/metrics"))
        .fold(Router::new(), |r, (_, path, handler)| r.route(path, handler))
        .with_state(state)
        .merge(review)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(guard, guard::limit))
        // Study JSON and review forms are small; image bodies stream through their own limit.
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    // Only method and path: headers (the token) and bodies are never logged.
                    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path(),
                        device_id = tracing::field::Empty, study_id = tracing::field::Empty, image_id = tracing::field::Empty)
                }))
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
}

/// Runs migrations (retrying while the database comes up), the periodic
/// orphan sweep, and the server until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    for attempt in 1.. {
        match db::migrate(&state.db).await {
            Ok(()) => break,
            Err(e) if e.is_unavailable() && attempt < 30 => {
                tracing::warn!(error = %e, "database not reachable yet; retrying migrations");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => anyhow::bail!("migrations failed: {e}"),
        }
    }
    if state.config.sweep_interval_secs > 0 {
        let (db, store, cfg) = (state.db.clone(), state.store.clone(), state.config.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(cfg.sweep_interval_secs));
            tick.tick().await;
            loop {
                tick.tick().await;
                match sweep::sweep(&db, &store, Duration::from_secs(cfg.sweep_min_age_secs)).await {
                    Ok(r) => tracing::info!(examined = r.examined, removed = r.removed, "orphan sweep"),
                    Err(e) => tracing::warn!(error = %e, "orphan sweep failed"),
                }
            }
        });
    }
    if let Some(addr) = state.config.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} for metrics: {e}"))?;
        let app = Router::new().route("/metrics", get(ops::metrics)).with_state(state.clone());
        tracing::info!(%addr, "metrics listening");
        tokio::spawn(async move { axum::serve(l, app).await });
    }
    tracing::info!(addr = %listener.local_addr()?, store = %state.store.describe, "fundus serve listening");
    // The peer address throttles log-ins and goes into the audit trail.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
