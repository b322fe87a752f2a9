//! Resources: apply (multi-document YAML or JSON, dry run, prune), get, list, watch (NDJSON),
//! delete (optionally waiting until gone) and the status subresource.
//!
//! Writes are thin: extractors and content type here, the rules in
//! [`crate::service::resources`].

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_controller::store::{EventType, ListQuery, WatchError, WatchQuery};
use berth_schemas::{DynamicObject, Kind, ResourceKey};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiBytes, ApiPath, ApiQuery};
use crate::service::resources::{self as service, ApplyRequest, Caller, kind_of};
pub use crate::service::resources::{
    ApplyQuery, ApplyResponse, ApplyResult, Change, DeleteOutcome, DeleteParams, DeleteResponse,
    ReplaceResponse, diff,
};
use crate::state::AppState;

fn parse_selector(s: Option<&str>) -> Result<berth_schemas::selector::Selector, ApiError> {
    service::parse_selector(s, "labelSelector")
}

/// Content types `POST /api/v1/apply` accepts.
pub const APPLY_CONTENT_TYPES: [&str; 5] =
    ["application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "application/json"];

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if APPLY_CONTENT_TYPES.contains(&essence.as_str()) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "content type {ct:?} is not accepted; use one of {}",
            APPLY_CONTENT_TYPES.join(", ")
        )))
    }
}

/// `POST /api/v1/apply`: the body's documents through [`service::apply`].
pub async fn apply(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ApplyQuery>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Json<ApplyResponse>, ApiError> {
    check_content_type(&headers)?;
    let documents = service::parse_manifest(&state, &body)?;
    let req = ApplyRequest { documents, options: q };
    Ok(Json(service::apply(&state, &Caller::principal(&principal), req).await?))
}

/// `GET /api/v1/{plural}` query.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListParams {
    /// One namespace (all when absent).
    pub namespace: Option<String>,
    /// A label selector (`app=web,tier!=db`).
    pub label_selector: Option<String>,
    /// Stream changes as newline-delimited JSON instead of answering a list.
    #[serde(default)]
    pub watch: bool,
    /// With `watch`: resume after this revision (410 when it is too old).
    pub resource_version: Option<String>,
}

/// `GET /api/v1/{plural}`: a list, or with `watch=true` an NDJSON stream of changes.
pub async fn list(
    State(state): State<AppState>,
    ApiPath(plural): ApiPath<String>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&plural)?;
    let selector = parse_selector(p.label_selector.as_deref())?;
    let query =
        ListQuery { kind: Some(kind), namespace: p.namespace.clone(), selector: selector.clone() };
    if p.watch {
        return watch(state, kind, query, p.resource_version.as_deref()).await;
    }
    let list = state.resources().list(&query).await?;
    Ok(Json(json!({
        "apiVersion": berth_schemas::API_VERSION,
        "kind": format!("{}List", kind.as_str()),
        "metadata": { "resourceVersion": list.revision.to_string() },
        "items": list.items,
    }))
    .into_response())
}

fn ndjson_line(v: &Value) -> bytes::Bytes {
    let mut s = v.to_string();
    s.push('\n');
    bytes::Bytes::from(s)
}

async fn watch(
    state: AppState,
    kind: Kind,
    query: ListQuery,
    rv: Option<&str>,
) -> Result<Response, ApiError> {
    let mut wq =
        WatchQuery { kind: Some(kind), namespace: query.namespace.clone(), after_revision: None };
    let mut initial = Vec::new();
    match rv {
        Some(rv) => {
            let rev = rv.parse::<u64>().map_err(|_| ApiError::BadRequest {
                message: format!("resourceVersion {rv:?} is not a revision number"),
                details: json!({ "parameter": "resourceVersion" }),
            })?;
            wq.after_revision = Some(rev);
        }
        None => {
            // Like kubectl: the current state first, as ADDED events, then changes after it.
            let list = state.resources().list(&query).await?;
            wq.after_revision = Some(list.revision);
            initial = list
                .items
                .into_iter()
                .map(|o| ndjson_line(&json!({ "type": "ADDED", "object": o })))
                .collect();
        }
    }
    let w = state.resources().watch(wq).map_err(|e| match e {
        WatchError::TooOld { .. } => ApiError::Gone(e.to_string()),
        WatchError::Closed => ApiError::Unavailable("the store is shutting down".into()),
        WatchError::FellBehind => ApiError::Gone(e.to_string()),
    })?;
    let selector = query.selector;
    let shutdown = state.shutdown_token().clone();
    let changes = futures::stream::unfold(Some((w, selector, shutdown)), |st| async move {
        let (mut w, selector, shutdown) = st?;
        loop {
            let ev = tokio::select! {
                () = shutdown.cancelled() => return None,
                ev = w.next() => ev,
            };
            match ev {
                Ok(ev) if !selector.matches(&ev.object.metadata.labels) => {}
                Ok(ev) => {
                    let t = match ev.event_type {
                        EventType::Added => "ADDED",
                        EventType::Modified => "MODIFIED",
                        EventType::Deleted => "DELETED",
                    };
                    let line = ndjson_line(
                        &json!({ "type": t, "revision": ev.revision, "object": ev.object }),
                    );
                    return Some((
                        Ok::<_, std::convert::Infallible>(line),
                        Some((w, selector, shutdown)),
                    ));
                }
                Err(e) => {
                    let code = match e {
                        WatchError::Closed => "unavailable",
                        _ => "gone",
                    };
                    let line = ndjson_line(&json!({
                        "type": "ERROR",
                        "object": { "code": code, "message": e.to_string(), "details": null },
                    }));
                    return Some((Ok(line), None));
                }
            }
        }
    });
    let stream =
        futures::StreamExt::chain(futures::stream::iter(initial.into_iter().map(Ok)), changes);
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(stream))
        .into_response())
}

async fn fetch(
    state: &AppState,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Result<DynamicObject, ApiError> {
    let key = ResourceKey::new(kind_of(plural)?, namespace, name);
    state.resources().get(&key).await?.ok_or_else(|| ApiError::NotFound(key.to_string()))
}

/// `GET /api/v1/{plural}/{namespace}/{name}`.
pub async fn get_one(
    State(state): State<AppState>,
    ApiPath((plural, namespace, name)): ApiPath<(String, String, String)>,
) -> Result<Json<DynamicObject>, ApiError> {
    Ok(Json(fetch(&state, &plural, &namespace, &name).await?))
}

/// `PUT /api/v1/{plural}/{namespace}/{name}`: replaces an existing resource with the one
/// document in the body (YAML or JSON) through [`service::replace`].
pub async fn replace(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((plural, namespace, name)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Json<ReplaceResponse>, ApiError> {
    let key = ResourceKey::new(kind_of(&plural)?, namespace, name);
    check_content_type(&headers)?;
    let documents = service::parse_manifest(&state, &body)?;
    Ok(Json(service::replace(&state, &Caller::principal(&principal), &key, documents).await?))
}

/// `GET /api/v1/{plural}/{namespace}/{name}/status`.
pub async fn status(
    State(state): State<AppState>,
    ApiPath((plural, namespace, name)): ApiPath<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let o = fetch(&state, &plural, &namespace, &name).await?;
    Ok(Json(json!({
        "kind": o.kind,
        "metadata": {
            "name": o.metadata.name, "namespace": o.metadata.namespace,
            "generation": o.metadata.generation, "resourceVersion": o.metadata.resource_version,
            "deletionTimestamp": o.metadata.deletion_timestamp,
        },
        "status": o.status,
    })))
}

/// `DELETE /api/v1/{plural}/{namespace}/{name}` through [`service::delete`]: 200 when gone,
/// 202 while the controller still cleans up (`wait=false`, or the wait timed out).
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((plural, namespace, name)): ApiPath<(String, String, String)>,
    ApiQuery(p): ApiQuery<DeleteParams>,
) -> Result<Response, ApiError> {
    let key = ResourceKey::new(kind_of(&plural)?, namespace, name);
    let r = service::delete(&state, &Caller::principal(&principal), &key, &p).await?;
    let status = match r.outcome {
        DeleteOutcome::Deleted => StatusCode::OK,
        DeleteOutcome::Terminating => StatusCode::ACCEPTED,
    };
    Ok((status, Json(r)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_accepts_yaml_and_json_content_types_only() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/yaml; charset=utf-8".parse().unwrap());
        assert!(check_content_type(&h).is_ok());
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(check_content_type(&h).is_ok());
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(matches!(check_content_type(&h), Err(ApiError::UnsupportedMediaType(_))));
    }
}
