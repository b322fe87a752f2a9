//! Resources: apply (multi-document YAML or JSON, dry run, prune), get, list, watch (NDJSON),
//! delete (optionally waiting until gone) and the status subresource.

use std::collections::HashSet;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_controller::store::{EventType, ListQuery, WatchError, WatchQuery, WriteOutcome};
use berth_schemas::selector::Selector;
use berth_schemas::{
    DynamicObject, Kind, ParseLimits, ParsedDocument, Resource, ResourceKey, parse_and_validate,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiBytes, ApiPath, ApiQuery};
use crate::policy::{Action, Role, authorize};
use crate::state::AppState;

/// Content types `POST /api/v1/apply` accepts.
pub const APPLY_CONTENT_TYPES: [&str; 5] =
    ["application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "application/json"];

fn kind_of(plural: &str) -> Result<Kind, ApiError> {
    Kind::ALL
        .into_iter()
        .find(|k| k.plural() == plural)
        .ok_or_else(|| ApiError::NotFound(format!("resource type {plural:?}")))
}

fn parse_selector(s: Option<&str>) -> Result<Selector, ApiError> {
    match s {
        None => Ok(Selector::everything()),
        Some(s) => Selector::parse(s).map_err(|e| ApiError::BadRequest {
            message: e.to_string(),
            details: json!({ "parameter": "labelSelector" }),
        }),
    }
}

/// One changed field in an apply diff.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Change {
    /// The field path (`spec.image`, `metadata.labels.app`).
    pub path: String,
    /// `add`, `remove` or `replace`.
    pub op: String,
    /// The value before (absent for `add`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    /// The value after (absent for `remove`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

fn diff_values(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    let join = |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                diff_values(&join(k), a.get(k), b.get(k), out);
            }
        }
        (Some(a), Some(b)) if a == b => {}
        (None | Some(Value::Null), None | Some(Value::Null)) => {}
        (None | Some(Value::Null), Some(b)) => {
            out.push(Change {
                path: path.to_owned(),
                op: "add".into(),
                from: None,
                to: Some(b.clone()),
            });
        }
        (Some(a), None | Some(Value::Null)) => {
            out.push(Change {
                path: path.to_owned(),
                op: "remove".into(),
                from: Some(a.clone()),
                to: None,
            });
        }
        (Some(a), Some(b)) => out.push(Change {
            path: path.to_owned(),
            op: "replace".into(),
            from: Some(a.clone()),
            to: Some(b.clone()),
        }),
    }
}

fn user_view(o: &DynamicObject) -> Value {
    json!({
        "metadata": { "labels": o.metadata.labels, "annotations": o.metadata.annotations },
        "spec": o.spec,
    })
}

/// The changes between two versions of a resource (labels, annotations and spec).
pub fn diff(old: Option<&DynamicObject>, new: &DynamicObject) -> Vec<Change> {
    let mut out = Vec::new();
    let old = old.map(user_view);
    diff_values("", old.as_ref(), Some(&user_view(new)), &mut out);
    out
}

/// `POST /api/v1/apply` query.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyQuery {
    /// Validate and report what would change, writing nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Delete resources matching this label selector that the request does not contain.
    pub prune: Option<String>,
}

/// What happened to one document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResult {
    /// 0-based document index in the request.
    pub doc: usize,
    /// Kind.
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `created`, `configured` or `unchanged` (or `deleted` / `terminating` for pruned ones).
    pub outcome: String,
    /// `resourceVersion` after the write (absent in a dry run of a create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// `generation` after the write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// What changed.
    pub diff: Vec<Change>,
}

/// `POST /api/v1/apply` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResponse {
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// One entry per resource in the request, in order.
    pub results: Vec<ApplyResult>,
    /// Resources removed (or that would be) by `prune`.
    pub pruned: Vec<ApplyResult>,
}

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

fn dry_outcome(
    existing: Option<&DynamicObject>,
    req: &DynamicObject,
) -> Result<WriteOutcome, ApiError> {
    let key = req.key();
    let wanted_rv = req.metadata.resource_version.as_deref();
    match existing {
        None => match wanted_rv {
            Some(rv) => Err(berth_controller::store::StoreError::Conflict {
                key,
                expected: rv.to_owned(),
                actual: None,
            }
            .into()),
            None => Ok(WriteOutcome::Created),
        },
        Some(cur) => {
            if let Some(rv) = wanted_rv
                && cur.metadata.resource_version.as_deref() != Some(rv)
            {
                return Err(berth_controller::store::StoreError::Conflict {
                    key,
                    expected: rv.to_owned(),
                    actual: cur.metadata.resource_version.clone(),
                }
                .into());
            }
            if user_view(cur) == user_view(req) {
                Ok(WriteOutcome::Unchanged)
            } else if cur.metadata.deletion_timestamp.is_some() {
                Err(berth_controller::store::StoreError::Terminating { key }.into())
            } else {
                Ok(WriteOutcome::Configured)
            }
        }
    }
}

/// Parses and validates every document of a manifest body.
///
/// # Errors
///
/// [`ApiError::Invalid`] (422) listing every error with its document, path, line and column.
fn parse_documents(state: &AppState, body: &[u8]) -> Result<Vec<ParsedDocument>, ApiError> {
    let limits = ParseLimits { max_bytes: state.config().body_limit, ..ParseLimits::default() };
    parse_and_validate(body, &limits).map_err(|errors| {
        let n = errors.len();
        let details: Vec<Value> = errors
            .iter()
            .map(|e| {
                json!({
                    "doc": e.doc, "path": e.path.to_string(), "line": e.line,
                    "column": e.column, "message": e.message,
                })
            })
            .collect();
        let first = errors.first().map(|e| format!("document {}: {e}", e.doc)).unwrap_or_default();
        ApiError::Invalid {
            message: if n == 1 { first } else { format!("{n} errors; first: {first}") },
            details: json!({ "errors": details }),
        }
    })
}

/// Refuses admin-only spec fields from a caller below admin (every write path calls this
/// before writing anything).
///
/// # Errors
///
/// [`ApiError::Forbidden`] (403) naming every such field with its document, line and column.
fn refuse_admin_fields(principal: &Principal, docs: &[ParsedDocument]) -> Result<(), ApiError> {
    if principal.role >= Role::Admin {
        return Ok(());
    }
    let mut fields = Vec::new();
    for d in docs {
        if let Resource::Container(c) = &d.resource {
            for path in c.spec.admin_only_fields() {
                let (line, column) = d.locate(&path);
                fields.push(json!({
                    "doc": d.doc, "name": c.metadata.name, "path": path.to_string(),
                    "line": line, "column": column,
                }));
            }
        }
    }
    match fields.first() {
        None => Ok(()),
        Some(first) => Err(ApiError::Forbidden {
            message: format!(
                "field {} may only be set by an admin (document {}, line {})",
                first["path"].as_str().unwrap_or("?"),
                first["doc"],
                first["line"]
            ),
            details: json!({ "action": Action::UseAdminFields.as_str(), "fields": fields }),
        }),
    }
}

/// `POST /api/v1/apply`: validates every document, refuses admin-only fields from non-admins,
/// then creates or updates each resource in order.
#[tracing::instrument(skip_all, fields(user = %principal.username, dry_run = q.dry_run))]
pub async fn apply(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ApplyQuery>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Json<ApplyResponse>, ApiError> {
    check_content_type(&headers)?;
    let prune = match q.prune.as_deref() {
        None => None,
        Some(s) => {
            authorize(principal.role, Action::DeleteResources)?;
            let sel = parse_selector(Some(s))?;
            if sel.is_everything() {
                return Err(ApiError::bad_request("prune needs a non-empty label selector"));
            }
            Some(sel)
        }
    };
    let docs = parse_documents(&state, &body)?;
    refuse_admin_fields(&principal, &docs)?;

    let ctx = principal.ctx();
    let store = state.resources();
    let mut results = Vec::with_capacity(docs.len());
    let mut wanted: HashSet<ResourceKey> = HashSet::new();
    for d in &docs {
        let obj = d.to_dynamic();
        wanted.insert(obj.key());
        let (outcome, after, old) = if q.dry_run {
            let existing = store.get(&obj.key()).await?;
            let outcome = dry_outcome(existing.as_ref(), &obj)?;
            (outcome, obj.clone(), existing)
        } else {
            let w = match store.apply(&ctx, obj.clone()).await {
                Ok(w) => w,
                Err(e) => {
                    let mut err = ApiError::from(e);
                    attach_partial(&mut err, &results);
                    return Err(err);
                }
            };
            (w.outcome, w.object, w.old)
        };
        let diff =
            if outcome == WriteOutcome::Unchanged { Vec::new() } else { diff(old.as_ref(), &obj) };
        let (resource_version, generation) = if q.dry_run {
            (
                old.as_ref().and_then(|o| o.metadata.resource_version.clone()),
                old.as_ref().and_then(|o| o.metadata.generation),
            )
        } else {
            (after.metadata.resource_version.clone(), after.metadata.generation)
        };
        results.push(ApplyResult {
            doc: d.doc,
            kind: obj.kind,
            namespace: obj.metadata.namespace.clone(),
            name: obj.metadata.name.clone(),
            outcome: outcome.as_str().to_owned(),
            resource_version,
            generation,
            diff,
        });
    }

    let mut pruned = Vec::new();
    if let Some(selector) = prune {
        let list = store.list(&ListQuery { selector, ..ListQuery::default() }).await?;
        for o in list.items.into_iter().filter(|o| !wanted.contains(&o.key())) {
            let outcome = if q.dry_run {
                WriteOutcome::Deleted
            } else {
                match store.delete(&ctx, &o.key()).await {
                    Ok(w) => w.outcome,
                    Err(berth_controller::store::StoreError::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            pruned.push(ApplyResult {
                doc: 0,
                kind: o.kind,
                namespace: o.metadata.namespace.clone(),
                name: o.metadata.name.clone(),
                outcome: outcome.as_str().to_owned(),
                resource_version: o.metadata.resource_version.clone(),
                generation: o.metadata.generation,
                diff: Vec::new(),
            });
        }
    }
    Ok(Json(ApplyResponse { dry_run: q.dry_run, results, pruned }))
}

fn attach_partial(err: &mut ApiError, done: &[ApplyResult]) {
    if done.is_empty() {
        return;
    }
    let applied = serde_json::to_value(done).unwrap_or(Value::Null);
    if let ApiError::Conflict { details, .. } | ApiError::Invalid { details, .. } = err {
        if let Value::Object(m) = details {
            m.insert("applied".into(), applied);
        } else {
            *details = json!({ "applied": applied });
        }
    }
}

/// `GET /api/v1/{plural}` query.
#[derive(Debug, Default, Deserialize)]
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

/// `PUT /api/v1/{plural}/{namespace}/{name}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplaceResponse {
    /// `configured` or `unchanged`.
    pub outcome: String,
    /// The resource after the write.
    pub object: DynamicObject,
    /// What changed.
    pub diff: Vec<Change>,
}

/// `PUT /api/v1/{plural}/{namespace}/{name}`: replaces an existing resource with the one
/// document in the body (YAML or JSON), which must name the same kind, namespace and name.
/// With `metadata.resourceVersion` the write is conditional (409 when stale); admin-only fields
/// from a non-admin are refused (403) before anything is written.
#[tracing::instrument(skip_all, fields(user = %principal.username))]
pub async fn replace(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((plural, namespace, name)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Json<ReplaceResponse>, ApiError> {
    let key = ResourceKey::new(kind_of(&plural)?, namespace, name);
    check_content_type(&headers)?;
    let docs = parse_documents(&state, &body)?;
    let [doc] = docs.as_slice() else {
        return Err(ApiError::Invalid {
            message: format!("the body must hold exactly one resource, not {}", docs.len()),
            details: json!({ "documents": docs.len() }),
        });
    };
    let obj = doc.to_dynamic();
    if obj.key() != key {
        return Err(ApiError::BadRequest {
            message: format!("the body names {}, the path {key}", obj.key()),
            details: json!({ "path": key.to_string(), "body": obj.key().to_string() }),
        });
    }
    refuse_admin_fields(&principal, &docs)?;
    let w = state.resources().update(&principal.ctx(), obj.clone()).await?;
    let diff =
        if w.outcome == WriteOutcome::Unchanged { Vec::new() } else { diff(w.old.as_ref(), &obj) };
    Ok(Json(ReplaceResponse { outcome: w.outcome.as_str().to_owned(), object: w.object, diff }))
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

/// `DELETE /api/v1/{plural}/{namespace}/{name}` query.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteParams {
    /// Wait until the resource is gone (its finalizers done).
    #[serde(default)]
    pub wait: bool,
    /// How long to wait, in seconds (default and maximum: just under the request timeout).
    pub timeout_seconds: Option<u64>,
}

/// `DELETE /api/v1/{plural}/{namespace}/{name}`: 200 when gone, 202 while the controller still
/// cleans up (`wait=false`, or the wait timed out).
#[tracing::instrument(skip_all, fields(user = %principal.username))]
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((plural, namespace, name)): ApiPath<(String, String, String)>,
    ApiQuery(p): ApiQuery<DeleteParams>,
) -> Result<Response, ApiError> {
    let key = ResourceKey::new(kind_of(&plural)?, namespace, name);
    let store = state.resources();
    // Subscribe before deleting so the final DELETED event cannot be missed.
    let mut w = if p.wait {
        let q = WatchQuery {
            after_revision: Some(store.revision()),
            kind: Some(key.kind),
            namespace: Some(key.namespace.clone()),
        };
        Some(
            store
                .watch(q)
                .map_err(|_| ApiError::Unavailable("the store is shutting down".into()))?,
        )
    } else {
        None
    };
    let res = store.delete(&principal.ctx(), &key).await?;
    let body = |outcome: &str, o: &DynamicObject| json!({ "outcome": outcome, "object": o });
    if res.outcome == WriteOutcome::Deleted {
        return Ok((StatusCode::OK, Json(body("deleted", &res.object))).into_response());
    }
    let Some(w) = w.as_mut() else {
        return Ok((StatusCode::ACCEPTED, Json(body("terminating", &res.object))).into_response());
    };
    let max = state
        .config()
        .request_timeout
        .saturating_sub(Duration::from_secs(1))
        .max(Duration::from_millis(100));
    let limit = p.timeout_seconds.map_or(max, |s| Duration::from_secs(s).min(max));
    let gone = tokio::time::timeout(limit, async {
        loop {
            match w.next().await {
                Ok(ev) if ev.event_type == EventType::Deleted && ev.object.key() == key => {
                    return Ok(ev.object);
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match gone {
        Ok(Ok(o)) => Ok((StatusCode::OK, Json(body("deleted", &o))).into_response()),
        Ok(Err(_)) | Err(_) => {
            let cur = store.get(&key).await?;
            match cur {
                None => Ok((StatusCode::OK, Json(body("deleted", &res.object))).into_response()),
                Some(o) => {
                    Ok((StatusCode::ACCEPTED, Json(body("terminating", &o))).into_response())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_added_removed_and_replaced_fields() {
        let mut out = Vec::new();
        let a = json!({"spec": {"image": "a", "env": [1], "gone": true}});
        let b = json!({"spec": {"image": "b", "env": [1], "new": 1}});
        diff_values("", Some(&a), Some(&b), &mut out);
        let ops: Vec<(String, String)> =
            out.iter().map(|c| (c.path.clone(), c.op.clone())).collect();
        assert_eq!(
            ops,
            vec![
                ("spec.gone".to_owned(), "remove".to_owned()),
                ("spec.image".to_owned(), "replace".to_owned()),
                ("spec.new".to_owned(), "add".to_owned()),
            ]
        );
    }

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
