//! The clinicians' reading service: log-in and sessions, the worklist, the
//! viewer, decisions under the reading policy (first reads, arbitration by a
//! senior), the blinded QA sample, monitoring of the model in the field, and
//! the audit trail. `router(state)` is its whole HTTP surface: the web UI
//! under `/review/`, the JSON API under `/v1/review/`; `fundus serve` mounts
//! it beside the phone API. It reads photos from the store but never scores
//! them, and it knows nothing of uploads.

pub mod api;
pub mod auth;
pub mod error;
pub mod export;
pub mod metrics;
pub mod pages;
pub mod photos;
pub mod policy;
pub mod stats;
pub mod work;

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodRouter, get, post};

pub use error::ReviewError;

#[derive(Debug, Clone, clap::Args)]
#[group(id = "review-config")]
#[command(next_help_heading = "Review")]
pub struct Config {
    /// Minutes a review session may sit idle before it ends.
    #[arg(long = "review-idle-minutes", env = "FUNDUS_REVIEW_IDLE_MINUTES", default_value_t = 30)]
    pub idle_minutes: u64,
    /// Hours after log-in at which a review session ends, however busy.
    #[arg(long = "review-session-hours", env = "FUNDUS_REVIEW_SESSION_HOURS", default_value_t = 12)]
    pub session_hours: u64,
    /// Mark the session cookie `Secure` (set it when Fundus is reached over TLS).
    #[arg(long = "review-secure-cookie", env = "FUNDUS_REVIEW_SECURE_COOKIE")]
    pub secure_cookie: bool,
    /// Minutes an opened item stays claimed without a renewal (the viewer renews it).
    #[arg(long = "review-claim-minutes", env = "FUNDUS_REVIEW_CLAIM_MINUTES", default_value_t = 15)]
    pub claim_minutes: u64,
    /// Two graders read every photo; when they disagree a senior decides.
    #[arg(long = "review-second-reading", env = "FUNDUS_REVIEW_SECOND_READING")]
    pub second_reading: bool,
    /// Failed log-ins for one user name within the window before log-ins are refused.
    #[arg(long = "login-max-failures", env = "FUNDUS_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: i64,
    /// Failed log-ins from one address within the window before log-ins are refused.
    #[arg(long = "login-max-failures-addr", env = "FUNDUS_LOGIN_MAX_FAILURES_ADDR", default_value_t = 20)]
    pub login_max_failures_addr: i64,
    /// The throttling window, in minutes.
    #[arg(long = "login-window-minutes", env = "FUNDUS_LOGIN_WINDOW_MINUTES", default_value_t = 15)]
    pub login_window_minutes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_minutes: 30,
            session_hours: 12,
            secure_cookie: false,
            claim_minutes: 15,
            second_reading: false,
            login_max_failures: 5,
            login_max_failures_addr: 20,
            login_window_minutes: 15,
        }
    }
}

impl Config {
    /// Refuses settings that would make the service unusable or unsafe.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (self.idle_minutes >= 1 && self.idle_minutes <= 24 * 60, "--review-idle-minutes must be 1 to 1440"),
            (self.session_hours >= 1 && self.session_hours <= 24 * 7, "--review-session-hours must be 1 to 168"),
            (self.claim_minutes >= 1 && self.claim_minutes <= 8 * 60, "--review-claim-minutes must be 1 to 480"),
            (self.login_max_failures >= 1, "--login-max-failures must be at least 1"),
            (self.login_max_failures_addr >= self.login_max_failures, "--login-max-failures-addr must be at least --login-max-failures"),
            (self.login_window_minutes >= 1 && self.login_window_minutes <= 24 * 60, "--login-window-minutes must be 1 to 1440"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err((*msg).to_owned()),
            None => Ok(()),
        }
    }

    pub fn policy(&self) -> policy::Policy {
        policy::Policy { second_reading: self.second_reading }
    }
    pub fn claim_secs(&self) -> f64 {
        self.claim_minutes as f64 * 60.0
    }
}

#[derive(Clone)]
pub struct State {
    pub db: db::PgPool,
    pub store: store::Store,
    pub config: Arc<Config>,
}

/// Every route of the review service: (method, path, handler). The router is
/// built from this table, and the authorisation test walks it.
fn table() -> Vec<(Method, &'static str, MethodRouter<State>)> {
    vec![
        (Method::GET, "/review", get(pages::to_worklist)),
        (Method::GET, "/review/", get(pages::worklist)),
        (Method::GET, "/review/login", get(pages::login_form)),
        (Method::POST, "/review/login", post(pages::login)),
        (Method::POST, "/review/logout", post(pages::logout)),
        (Method::POST, "/review/next", post(pages::next)),
        (Method::GET, "/review/items/{id}", get(pages::item)),
        (Method::POST, "/review/items/{id}/decision", post(pages::decide)),
        (Method::POST, "/review/items/{id}/release", post(pages::release)),
        (Method::GET, "/review/images/{id}", get(pages::image)),
        (Method::GET, "/review/monitoring", get(pages::monitoring)),
        (Method::GET, "/review/assets/review.js", get(pages::script)),
        (Method::GET, "/review/assets/review.css", get(pages::stylesheet)),
        (Method::GET, "/v1/review/session", get(api::session)),
        (Method::GET, "/v1/review/items", get(api::items)),
        (Method::GET, "/v1/review/items/{id}", get(api::item)),
        (Method::POST, "/v1/review/items/{id}/claim", post(api::claim)),
        (Method::POST, "/v1/review/items/{id}/release", post(api::release)),
        (Method::POST, "/v1/review/items/{id}/decision", post(api::decide)),
        (Method::GET, "/v1/review/stats", get(api::stats)),
        (Method::GET, "/v1/review/images/{id}/preview", get(photos::preview)),
        (Method::GET, "/v1/review/images/{id}/full", get(photos::full)),
        (Method::GET, "/v1/review/images/{id}/heatmap", get(photos::heatmap)),
    ]
}

/// (method, path) of every route, as the router has them.
pub fn routes() -> Vec<(Method, &'static str)> {
    table().into_iter().map(|(m, p, _)| (m, p)).collect()
}

pub fn router(state: State) -> Router {
    table()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| r.route(path, handler))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(Config::default().validate().is_ok());
        let bad = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().expect_err("refused")
        };
        assert!(bad(|c| c.claim_minutes = 0).contains("--review-claim-minutes"));
        assert!(bad(|c| c.idle_minutes = 0).contains("--review-idle-minutes"));
        assert!(bad(|c| c.session_hours = 1000).contains("--review-session-hours"));
        assert!(bad(|c| c.login_max_failures = 0).contains("--login-max-failures"));
        assert!(bad(|c| c.login_max_failures_addr = 2).contains("--login-max-failures-addr"));
        assert!(bad(|c| c.login_window_minutes = 0).contains("--login-window-minutes"));
    }
}
