//! What can go wrong talking to a tracking server, sorted by what a caller does about it:
//! the server is not there, it refused (with MLflow's own error code), the transfer broke,
//! or the request was refused here before anything was sent.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// MLflow's error code for a missing experiment, run, model, version or artifact.
pub const RESOURCE_DOES_NOT_EXIST: &str = "RESOURCE_DOES_NOT_EXIST";
/// MLflow's error code for creating something whose name is taken.
pub const RESOURCE_ALREADY_EXISTS: &str = "RESOURCE_ALREADY_EXISTS";
/// MLflow's error code for a request it will not accept as it is.
pub const INVALID_PARAMETER_VALUE: &str = "INVALID_PARAMETER_VALUE";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be made: nothing listens there, the name does not resolve, or the
    /// connect timed out.
    #[error("the MLflow tracking server at {uri} could not be reached: {reason}")]
    Unreachable { uri: String, reason: String },

    /// The server refused the request with MLflow's JSON error
    /// (`{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": ...}`).
    #[error("MLflow {error_code} (HTTP {status}): {message}")]
    Api { status: u16, error_code: String, message: String },

    /// An HTTP error without MLflow's JSON body: something else answered (a proxy, a
    /// security middleware, a server that is not MLflow).
    #[error("the MLflow tracking server answered HTTP {status}: {body}")]
    Http { status: u16, body: String },

    /// Connected, but the exchange failed: a timeout, a reset, a transfer that stalled.
    #[error("request to the MLflow tracking server at {uri} failed: {reason}")]
    Transport { uri: String, reason: String },

    /// A successful answer this client cannot read.
    #[error("unexpected answer from the MLflow tracking server to {endpoint}: {detail}")]
    Protocol { endpoint: String, detail: String },

    /// Refused before sending: the server would reject it (a limit, a malformed name).
    #[error("{0}")]
    Invalid(String),

    /// The server is set up in a way this client does not support.
    #[error("{0}")]
    Unsupported(String),

    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    /// MLflow's error code, when the server sent one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Error::Api { error_code, .. } => Some(error_code),
            _ => None,
        }
    }

    /// The HTTP status of a refusal from the server.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Api { error_code, .. } => error_code == RESOURCE_DOES_NOT_EXIST,
            Error::Http { status, .. } => *status == 404,
            _ => false,
        }
    }

    /// A create failed because the name is taken.
    pub fn is_already_exists(&self) -> bool {
        self.error_code() == Some(RESOURCE_ALREADY_EXISTS)
    }

    /// No connection could be made to the tracking server.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// The innermost cause of an error: for reqwest that is the part worth reading
/// ("Connection refused (os error 111)"), not "error sending request for url".
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
