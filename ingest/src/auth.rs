//! Device tokens: created once by `fundus admin`, shown once, stored as their
//! SHA-256 (the tokens are 256 random bits, so a slow hash buys nothing).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

const PREFIX: &str = "fdt_";

/// A new device token: `fdt_` and 43 URL-safe characters.
pub fn new_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Device(pub db::DeviceAuth);

impl FromRequestParts<AppState> for Device {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with(PREFIX) && t.len() < 128)
            .ok_or(ApiError::Unauthorized)?;
        let hash = hash_token(token);
        let ip = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        if state.guard.known_unknown(&hash) {
            state.guard.failed(ip, hash);
            return Err(ApiError::Unauthorized);
        }
        if state.guard.throttled(ip) {
            return Err(ApiError::TooManyRequests);
        }
        let found = {
            let _slot = state.guard.lookup_slot().await;
            // Checked again: the budget may have run out while this waited.
            if state.guard.throttled(ip) {
                return Err(ApiError::TooManyRequests);
            }
            db::access::device_by_token(&state.db, &hash).await?
        };
        let Some(auth) = found else {
            state.guard.failed(ip, hash);
            return Err(ApiError::Unauthorized);
        };
        tracing::Span::current().record("device_id", tracing::field::display(auth.device_id));
        Ok(Device(auth))
    }
}
