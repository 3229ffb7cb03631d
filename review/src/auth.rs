//! Who is reading: argon2id passwords, server-side sessions behind an
//! HttpOnly cookie, a CSRF token bound to each session, throttled log-ins,
//! and the roles.

use std::net::SocketAddr;
use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::State;
use crate::error::ReviewError;

pub const COOKIE: &str = "fundus_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Grader,
    Senior,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "grader" => Some(Role::Grader),
            "senior" => Some(Role::Senior),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Grader => "grader",
            Role::Senior => "senior",
            Role::Admin => "admin",
        }
    }

    /// Seniors and admins arbitrate and see the monitoring figures.
    pub fn is_senior(self) -> bool {
        self >= Role::Senior
    }
}

fn random_b64(n: usize) -> String {
    let mut raw = vec![0u8; n];
    rand::rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// A password for a new user when none is given: 18 random bytes, 24 characters.
pub fn generate_password() -> String {
    random_b64(18)
}

pub fn hash_password(password: &str) -> Result<String, ReviewError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| ReviewError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ReviewError::Internal(format!("hashing a password: {e}")))
}

/// A hash of nothing anyone knows, verified against when the user does not
/// exist, so that a wrong name costs as long as a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash_password(&generate_password()).unwrap_or_default());

pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    let hash = hash.unwrap_or(&DUMMY_HASH);
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

pub fn check_password_rules(password: &str) -> Result<(), String> {
    if password.chars().count() < 12 {
        return Err("a password needs at least 12 characters".into());
    }
    if password.len() > 256 {
        return Err("a password may have at most 256 bytes".into());
    }
    Ok(())
}

/// A new session: the cookie's value (256 random bits) and its stored hash.
pub fn new_session_id() -> (String, [u8; 32]) {
    let id = random_b64(32);
    let hash = Sha256::digest(id.as_bytes()).into();
    (id, hash)
}

pub fn new_csrf_token() -> String {
    random_b64(32)
}

pub fn session_cookie(value: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

pub fn clear_cookie(secure: bool) -> String {
    session_cookie("", 0, secure)
}

/// The cookie beside the log-in form's token (an hour, the form's path only).
pub const LOGIN_COOKIE: &str = "fundus_login";

pub fn login_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{LOGIN_COOKIE}={token}; Path=/review/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}")
}

/// Whether a log-in form's token is the one its cookie carries.
pub fn login_token_matches(headers: &HeaderMap, token: &str) -> bool {
    cookie_value(headers, LOGIN_COOKIE).is_some_and(|c| !c.is_empty() && same(c, token))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The hash of the session id the request carries, if any.
pub fn session_hash(headers: &HeaderMap) -> Option<[u8; 32]> {
    let v = cookie_value(headers, COOKIE).filter(|v| !v.is_empty() && v.len() <= 64)?;
    Some(Sha256::digest(v.as_bytes()).into())
}

/// Equal in constant time (for tokens of the same length).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The signed-in reader of a request.
#[derive(Debug, Clone)]
pub struct Reader {
    pub user_id: Uuid,
    pub name: String,
    pub role: Role,
    /// The sites whose photos this reader may see (every site for an admin).
    pub site_ids: Vec<Uuid>,
    pub site_names: Vec<String>,
    pub csrf: String,
    pub session_hash: [u8; 32],
}

impl Reader {
    pub fn sees(&self, site: Uuid) -> bool {
        self.site_ids.contains(&site)
    }

    /// The JSON API's CSRF check: the `X-CSRF-Token` header.
    pub fn check_csrf_header(&self, headers: &HeaderMap) -> Result<(), ReviewError> {
        let got = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        self.check_csrf(got)
    }

    /// The forms' CSRF check: their hidden `csrf` field.
    pub fn check_csrf(&self, got: &str) -> Result<(), ReviewError> {
        if same(got, &self.csrf) { Ok(()) } else { Err(ReviewError::Csrf) }
    }

    pub fn require_senior(&self) -> Result<(), ReviewError> {
        if self.role.is_senior() { Ok(()) } else { Err(ReviewError::Forbidden("this needs a senior grader or an admin")) }
    }
}

impl FromRequestParts<State> for Reader {
    type Rejection = ReviewError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, ReviewError> {
        let hash = session_hash(&parts.headers).ok_or(ReviewError::NoSession)?;
        let idle = state.config.idle_minutes as f64 * 60.0;
        let row = db::users::session_get(&state.db, &hash, idle).await?.ok_or(ReviewError::NoSession)?;
        // Idle expiry counts from the last request; renewing it at most once a
        // minute keeps most requests read-only.
        if chrono::Utc::now() - row.last_seen > chrono::Duration::seconds(60) {
            db::users::session_touch(&state.db, &hash).await?;
        }
        let role = Role::parse(&row.role).ok_or_else(|| ReviewError::Internal(format!("unknown role {:?}", row.role)))?;
        Ok(Reader {
            user_id: row.user_id,
            name: row.name,
            role,
            site_ids: row.site_ids,
            site_names: row.site_names,
            csrf: row.csrf_token,
            session_hash: hash,
        })
    }
}

/// A reader for the HTML pages: without a session the browser is sent to
/// the log-in form instead of getting a JSON 401.
pub struct PageReader(pub Reader);

impl FromRequestParts<State> for PageReader {
    type Rejection = crate::error::PageError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        Ok(PageReader(Reader::from_request_parts(parts, state).await?))
    }
}

/// The client's address, for throttling and the audit trail.
pub fn client_addr(parts_ext: &axum::http::Extensions) -> String {
    parts_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Checks a log-in attempt: throttled first (whether or not the user exists),
/// then the password. Returns the user on success; records the failure
/// otherwise. The answer never says whether the user exists.
pub async fn log_in(state: &State, username: &str, password: &str, addr: &str) -> Result<db::users::UserLogin, ReviewError> {
    let c = &state.config;
    let window = c.login_window_minutes as f64 * 60.0;
    // Names are stored as typed only up to a sane length.
    let username: String = username.trim().chars().take(64).collect();
    // The attempt is counted before the password is checked, so guesses sent
    // in parallel cannot all pass the throttle together.
    let attempt = db::users::login_attempt(&state.db, &username, addr, window).await?;
    let (by_user, by_addr) = db::users::login_failures(&state.db, &username, addr, window).await?;
    if by_user > c.login_max_failures || by_addr > c.login_max_failures_addr {
        db::users::login_attempt_clear(&state.db, attempt).await?;
        db::audit(&state.db, &username, "login.throttled", None, serde_json::json!({ "addr": addr })).await?;
        return Err(ReviewError::Throttled);
    }
    let user = db::users::user_by_name(&state.db, &username).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let pw = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_password(&pw, hash.as_deref()))
        .await
        .map_err(|e| ReviewError::Internal(format!("password check: {e}")))?;
    match user {
        Some(u) if ok && u.disabled_at.is_none() => {
            db::users::login_attempt_clear(&state.db, attempt).await?;
            Ok(u)
        }
        other => {
            let why = match other {
                None => "unknown user",
                Some(u) if u.disabled_at.is_some() => "disabled user",
                Some(_) => "wrong password",
            };
            db::audit(&state.db, &username, "login.failed", None, serde_json::json!({ "addr": addr, "why": why })).await?;
            Err(ReviewError::BadLogin)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", Some(&h)));
        assert!(!verify_password("correct horse batterY", Some(&h)));
        assert!(!verify_password("anything", None));
        assert!(!verify_password("anything", Some("not a hash")));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_when_asked() {
        let c = session_cookie("abc", 60, false);
        assert_eq!(c, "fundus_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=60");
        assert!(session_cookie("abc", 60, true).ends_with("; Secure"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "other=1; fundus_session=xyz".parse().expect("header"));
        assert_eq!(session_hash(&h), Some(Sha256::digest(b"xyz").into()));
    }

    #[test]
    fn session_ids_are_256_bits_and_fresh() {
        let (a, ha) = new_session_id();
        let (b, _) = new_session_id();
        assert_eq!(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&a).expect("b64").len(), 32);
        assert_ne!(a, b);
        assert_eq!(ha, <[u8; 32]>::from(Sha256::digest(a.as_bytes())));
    }

    #[test]
    fn csrf_comparison() {
        assert!(same("abcd", "abcd"));
        assert!(!same("abcd", "abce"));
        assert!(!same("abcd", "abc"));
    }
}
