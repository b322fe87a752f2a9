//! The one error type every REST handler returns, and its `{code, message, details}` body.
//!
//! Each variant maps to an HTTP status and a stable machine-readable `code` that clients may
//! match on. Internal causes are logged when the response is built and never sent.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_controller::store::StoreError;
use serde::Serialize;
use serde_json::Value;

/// A boxed internal cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a REST request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad query, bad path, unparsable body.
    #[error("{message}")]
    BadRequest {
        /// What was wrong.
        message: String,
        /// Structured detail (field paths, lines), or `null`.
        details: Value,
    },
    /// No credentials, or credentials that are not (or no longer) valid.
    #[error("authentication required")]
    Unauthenticated,
    /// The caller is authenticated but its role does not allow this.
    #[error("{message}")]
    Forbidden {
        /// What was refused.
        message: String,
        /// Structured detail (the action, the field), or `null`.
        details: Value,
    },
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The route exists but not with this method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The request conflicts with the current state (stale resourceVersion, duplicate name,
    /// last admin).
    #[error("{message}")]
    Conflict {
        /// What conflicted.
        message: String,
        /// Structured detail, or `null`.
        details: Value,
    },
    /// A watch asked to resume from a revision the server no longer keeps.
    #[error("{0}")]
    Gone(String),
    /// The request body is larger than the configured limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body's content type is not one this route accepts.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body parsed but does not validate (schema, field rules).
    #[error("{message}")]
    Invalid {
        /// A summary.
        message: String,
        /// Per-document / per-field errors.
        details: Value,
    },
    /// Too many requests; try again after the given delay.
    #[error("too many requests")]
    RateLimited {
        /// When the caller may try again.
        retry_after: Duration,
    },
    /// The request took longer than the server allows.
    #[error("the request took too long")]
    Timeout,
    /// A dependency (store, Docker Engine) is not available right now.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: a bug or an I/O failure. The cause is logged, the client sees only
    /// "internal error".
    #[error("internal error")]
    Internal(#[source] BoxError),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, schemars::JsonSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code (`unauthenticated`, `conflict`, ...).
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Structured detail, or `null`.
    pub details: Value,
}

impl ApiError {
    /// A 400 with just a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest { message: message.into(), details: Value::Null }
    }

    /// A 403 with just a message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden { message: message.into(), details: Value::Null }
    }

    /// A 409 with just a message.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict { message: message.into(), details: Value::Null }
    }

    /// A 422 with just a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid { message: message.into(), details: Value::Null }
    }

    /// Wraps an internal cause (logged, never sent).
    pub fn internal(e: impl Into<BoxError>) -> Self {
        Self::Internal(e.into())
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "bad_request",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict { .. } => "conflict",
            Self::Gone(_) => "gone",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Invalid { .. } => "invalid",
            Self::RateLimited { .. } => "rate_limited",
            Self::Timeout => "timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn details(&self) -> Value {
        match self {
            Self::BadRequest { details, .. }
            | Self::Forbidden { details, .. }
            | Self::Conflict { details, .. }
            | Self::Invalid { details, .. } => details.clone(),
            Self::PayloadTooLarge { limit } => serde_json::json!({ "limit": limit }),
            Self::RateLimited { retry_after } => {
                serde_json::json!({ "retryAfterSeconds": retry_secs(*retry_after) })
            }
            _ => Value::Null,
        }
    }

    /// The body this error is answered with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().to_owned(),
            message: self.to_string(),
            details: self.details(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { key } => ApiError::NotFound(key.to_string()),
            StoreError::AccountNotFound { what } => ApiError::NotFound(what),
            StoreError::AlreadyExists { key } => {
                ApiError::conflict(format!("{key} already exists"))
            }
            StoreError::AccountExists { what } => {
                ApiError::conflict(format!("{what} already exists"))
            }
            StoreError::Conflict { ref key, ref expected, ref actual } => ApiError::Conflict {
                message: e.to_string(),
                details: serde_json::json!({
                    "key": key.to_string(),
                    "resourceVersion": expected,
                    "currentResourceVersion": actual,
                }),
            },
            StoreError::Terminating { key } => {
                ApiError::conflict(format!("{key} is being deleted and can no longer change"))
            }
            StoreError::Invalid { reason } => ApiError::invalid(reason),
            StoreError::Closed => ApiError::Unavailable("the store is shutting down".to_owned()),
            other => ApiError::internal(other),
        }
    }
}

fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = %ErrorChain(cause.as_ref()), "internal error");
        }
        let status = self.status();
        let mut resp = (status, axum::Json(self.body())).into_response();
        if let Self::RateLimited { retry_after } = &self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_secs(*retry_after)));
        }
        if let Self::Unauthenticated = &self {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Displays an error and its sources, separated by `: `.
pub(crate) struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(e) = src {
            write!(f, ": {e}")?;
            src = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_reveal_their_cause() {
        let e = ApiError::internal(std::io::Error::other("disk /secret/path exploded"));
        let body = e.body();
        assert_eq!(body.code, "internal");
        assert_eq!(body.message, "internal error");
        assert!(!serde_json::to_string(&body).unwrap().contains("secret"));
    }

    #[test]
    fn rate_limited_rounds_retry_after_up_to_whole_seconds() {
        let e = ApiError::RateLimited { retry_after: Duration::from_millis(1500) };
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
    }
}
