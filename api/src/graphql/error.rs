//! GraphQL errors: every error a resolver returns carries `extensions.code`, the same stable
//! codes as the REST `{code, message, details}` body.

use async_graphql::{Error, ErrorExtensions as _};
use berth_controller::docker::DriverError;
use berth_controller::store::StoreError;

use crate::error::{ApiError, ErrorChain};

/// Result of a resolver.
pub type GqlResult<T> = Result<T, Error>;

/// An error with a code and a message, no details.
pub fn coded(code: &str, message: impl Into<String>) -> Error {
    let code = code.to_owned();
    Error::new(message).extend_with(move |_, e| e.set("code", code.clone()))
}

/// Converts a REST error (code, message, details); internal causes are logged, never sent.
pub fn api(e: ApiError) -> Error {
    if let ApiError::Internal(cause) = &e {
        tracing::error!(error = %ErrorChain(cause.as_ref()), "GraphQL resolver failed");
    }
    let body = e.body();
    let details = body.details;
    Error::new(body.message).extend_with(move |_, ext| {
        ext.set("code", body.code.clone());
        if !details.is_null()
            && let Ok(v) = async_graphql::Value::from_json(details.clone())
        {
            ext.set("details", v);
        }
    })
}

/// Converts a store error through its REST mapping.
pub fn store(e: StoreError) -> Error {
    api(ApiError::from(e))
}

/// Converts a Docker driver error: `not_found`, `conflict`, `unavailable` or `docker_error`.
pub fn driver(e: DriverError) -> Error {
    match &e {
        DriverError::NotFound { .. } => coded("not_found", e.to_string()),
        DriverError::Conflict { .. } => coded("conflict", e.to_string()),
        DriverError::Rejected { .. } => coded("invalid", e.to_string()),
        DriverError::EngineUnreachable { .. } | DriverError::Timeout { .. } => {
            coded("unavailable", e.to_string())
        }
        _ => {
            tracing::warn!(error = %ErrorChain(&e), "Docker Engine call failed");
            coded("docker_error", "the Docker Engine call failed")
        }
    }
}

/// Adds `.gql()` to results carrying one of berth's errors.
pub trait IntoGql<T> {
    /// Converts the error into a coded GraphQL error.
    fn gql(self) -> GqlResult<T>;
}

impl<T> IntoGql<T> for Result<T, ApiError> {
    fn gql(self) -> GqlResult<T> {
        self.map_err(api)
    }
}

impl<T> IntoGql<T> for Result<T, StoreError> {
    fn gql(self) -> GqlResult<T> {
        self.map_err(store)
    }
}

impl<T> IntoGql<T> for Result<T, DriverError> {
    fn gql(self) -> GqlResult<T> {
        self.map_err(driver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_keep_their_code_and_hide_internal_causes() {
        let e = api(ApiError::internal("disk on fire"));
        assert_eq!(e.message, "internal error");
        let ext = e.extensions.expect("extensions");
        assert_eq!(ext.get("code"), Some(&async_graphql::Value::from("internal")));
        let e = api(ApiError::conflict("stale"));
        assert_eq!(
            e.extensions.and_then(|x| x.get("code").cloned()),
            Some(async_graphql::Value::from("conflict"))
        );
    }
}
