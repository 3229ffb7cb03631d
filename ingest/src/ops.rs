//! Operational endpoints: liveness, readiness, metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use utoipa::OpenApi;

use crate::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

/// A readiness probe's answer and when it was taken.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    at: std::time::Instant,
    /// When it was taken, for the answer.
    taken: chrono::DateTime<chrono::Utc>,
    db: bool,
    store: bool,
}

/// How long a probe's answer is reused.
const PROBE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready when both the database and the object store answer. One probe at a
/// time, its answer reused for two seconds: unauthenticated probes cannot
/// multiply into database and store traffic.
pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let mut last = s.ready.lock().await;
    let p = match *last {
        Some(p) if p.at.elapsed() < PROBE_TTL => p,
        _ => {
            let (db, store) = tokio::join!(db::ping(&s.db), s.store.ping());
            let p = Probe { at: std::time::Instant::now(), taken: chrono::Utc::now(), db, store };
            *last = Some(p);
            p
        }
    };
    drop(last);
    let (db_ok, store_ok) = (p.db, p.store);
    let status = if db_ok && store_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let probed_at = p.taken.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    (status, Json(serde_json::json!({ "database": word(db_ok), "store": word(store_ok), "probed_at": probed_at })))
}

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    // The review gauges come from the database; a scrape during an outage
    // still answers, with the last figures.
    if let Err(e) = s.metrics.review.refresh(&s.db).await {
        tracing::warn!(error = %e, "refreshing the review gauges");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Fundus upload API", description = "The phone app's contract with Fundus. Errors are {\"code\", \"message\"}; codes are listed in docs/errors.md."),
    paths(crate::api::create_study, crate::api::get_study, crate::api::upload_image, crate::api::get_image),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme("device_token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

/// Serves `/metrics` (what `render` returns) and `/healthz` on `addr` in the
/// background: the metrics endpoint of the processes that have no API of
/// their own (`fundus worker`, `fundus mesos`).
pub async fn serve_metrics(addr: std::net::SocketAddr, render: impl Fn() -> String + Clone + Send + Sync + 'static) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(move || std::future::ready(render())))
        .route("/healthz", axum::routing::get(healthz));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}
