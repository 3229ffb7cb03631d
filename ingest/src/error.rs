//! The API's one error type. Every failure becomes `{"code", "message"}` with
//! a stable code (listed in docs/errors.md); internal details are logged, never
//! sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use imaging::Reject;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("unsupported media type {0:?}: send image/jpeg, image/png or application/dicom")]
    UnsupportedMediaType(String),
    #[error("the body is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("this Idempotency-Key was already used for different bytes")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Rejected(#[from] Reject),
    #[error("the database is unavailable; retry later")]
    DatabaseUnavailable,
    #[error("the object store is unavailable; retry later")]
    StoreUnavailable,
    #[error("the server is handling as many requests as it may; retry later")]
    Overloaded,
    #[error("too many requests from this address; slow down")]
    TooManyRequests,
    #[error("uploads in flight fill the server's buffer budget; retry later")]
    Busy,
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(code, _) => code,
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooLarge(_) => "too_large",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::Rejected(r) => r.code(),
            ApiError::DatabaseUnavailable => "database_unavailable",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::Overloaded => "overloaded",
            ApiError::TooManyRequests => "too_many_requests",
            ApiError::Busy => "server_busy",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(..) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::IdempotencyKeyReused => StatusCode::CONFLICT,
            ApiError::Rejected(Reject::TypeMismatch { .. } | Reject::UnknownFormat) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Rejected(Reject::Empty) => StatusCode::BAD_REQUEST,
            ApiError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::DatabaseUnavailable | ApiError::StoreUnavailable | ApiError::Overloaded | ApiError::Busy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<db::Error> for ApiError {
    fn from(e: db::Error) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::DatabaseUnavailable
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        tracing::warn!(error = %e, "object store unavailable");
        ApiError::StoreUnavailable
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `too_small`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let status = self.status();
        let mut resp = (status, Json(ErrorBody { code: self.code(), message: self.to_string() })).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("5"));
        }
        resp
    }
}
