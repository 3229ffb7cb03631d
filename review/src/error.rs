//! The review service's one error type: `{"code", "message"}` with a stable
//! code (docs/errors.md) for the JSON API, a short HTML page for the UI.
//! Internal details are logged, never sent.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no review session: log in at /review/login")]
    NoSession,
    #[error("missing or wrong CSRF token")]
    Csrf,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("someone else is reading this item")]
    Claimed,
    #[error("open the item (claim it) before deciding")]
    NotClaimed,
    #[error("this item is already decided")]
    Decided,
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("too many failed log-ins; try again later")]
    Throttled,
    #[error("wrong user name or password")]
    BadLogin,
    #[error("the database is unavailable; retry later")]
    DatabaseUnavailable,
    #[error("the object store is unavailable; retry later")]
    StoreUnavailable,
    #[error("internal error")]
    Internal(String),
}

impl ReviewError {
    pub fn code(&self) -> &'static str {
        match self {
            ReviewError::NoSession => "no_session",
            ReviewError::Csrf => "csrf",
            ReviewError::Forbidden(_) => "forbidden",
            ReviewError::NotFound(_) => "not_found",
            ReviewError::Claimed => "claimed",
            ReviewError::NotClaimed => "not_claimed",
            ReviewError::Decided => "already_decided",
            ReviewError::BadRequest(code, _) => code,
            ReviewError::Throttled => "too_many_attempts",
            ReviewError::BadLogin => "bad_login",
            ReviewError::DatabaseUnavailable => "database_unavailable",
            ReviewError::StoreUnavailable => "store_unavailable",
            ReviewError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ReviewError::NoSession | ReviewError::BadLogin => StatusCode::UNAUTHORIZED,
            ReviewError::Csrf | ReviewError::Forbidden(_) => StatusCode::FORBIDDEN,
            ReviewError::NotFound(_) => StatusCode::NOT_FOUND,
            ReviewError::Claimed | ReviewError::NotClaimed | ReviewError::Decided => StatusCode::CONFLICT,
            ReviewError::BadRequest(..) => StatusCode::BAD_REQUEST,
            ReviewError::Throttled => StatusCode::TOO_MANY_REQUESTS,
            ReviewError::DatabaseUnavailable | ReviewError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ReviewError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn log(&self) {
        if let ReviewError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
    }
}

pub fn bad(code: &'static str, msg: impl Into<String>) -> ReviewError {
    ReviewError::BadRequest(code, msg.into())
}

impl From<db::Error> for ReviewError {
    fn from(e: db::Error) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            ReviewError::DatabaseUnavailable
        } else {
            ReviewError::Internal(e.to_string())
        }
    }
}

/// Transactions are begun and committed in handlers: their errors go through
/// `db::Error`'s classification like every other.
impl From<sqlx::Error> for ReviewError {
    fn from(e: sqlx::Error) -> Self {
        db::Error::from(e).into()
    }
}

impl From<store::StoreError> for ReviewError {
    fn from(e: store::StoreError) -> Self {
        tracing::warn!(error = %e, "object store unavailable");
        ReviewError::StoreUnavailable
    }
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
}

impl IntoResponse for ReviewError {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status();
        let mut resp = (status, Json(ErrorBody { code: self.code(), message: self.to_string() })).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        resp
    }
}

/// The same errors for the HTML pages: a page with the message, and a
/// missing session sends the browser to the log-in form.
#[derive(Debug)]
pub struct PageError(pub ReviewError);

impl<E: Into<ReviewError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        if matches!(e, ReviewError::NoSession) {
            return axum::response::Redirect::to("/review/login").into_response();
        }
        e.log();
        let page = crate::pages::error_page(e.status(), e.code(), &e.to_string());
        (e.status(), page).into_response()
    }
}
