//! Service: resources — apply (parse, validate, the admin-only check, create or update each
//! document, prune by selector, dry run), replace, delete (optionally waiting until gone) and
//! restart. REST, GraphQL and the directory sync call these functions and only render their
//! typed outcomes.
//!
//! The rules live here once: who may write what ([`refuse_admin_fields`]), which documents a
//! request holds ([`parse_manifest`]), what prune removes. What a single write does
//! (preconditions, generation, finalizers, which metadata a client may set) is the store's
//! rule, and a dry run asks the store's own code ([`ResourceStore::apply_dry_run`]).
//!
//! [`ResourceStore::apply_dry_run`]: berth_controller::store::ResourceStore::apply_dry_run

mod diff;

use std::collections::HashSet;
use std::time::Duration;

use berth_controller::store::{
    Actor, AuditEntry, AuditOutcome, EventType, ListQuery, Source, StoreError, WatchQuery,
    WriteContext, WriteOutcome, WriteResult,
};
use berth_schemas::selector::Selector;
use berth_schemas::{DynamicObject, Kind, ParseLimits, ParsedDocument, ResourceKey};
use chrono::{SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use self::diff::{Change, diff};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::policy::{Action, Role, authorize};
use crate::state::AppState;

/// The annotation [`restart`] bumps; a change of it makes the controller replace the container.
pub const RESTARTED_AT: &str = berth_schemas::meta::RESTARTED_AT_ANNOTATION;

/// The audit verb of an apply that used admin-only fields under an explicit grant
/// ([`AdminFields::Granted`]).
pub const ADMIN_FIELDS_VERB: &str = "apply.admin-fields";

/// Where a caller's right to admin-only spec fields comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminFields {
    /// From the role: admins may, everyone else may not.
    ByRole,
    /// Granted whatever the role, by the named server setting (for example
    /// `--sync-allow-admin-fields`). Every write that uses them is audited, naming the grant.
    Granted(&'static str),
}

/// Who is writing: the store context (actor and source, for audit), the role, and where the
/// right to admin-only fields comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Actor and source, recorded in every audit event.
    pub ctx: WriteContext,
    /// The effective role.
    pub role: Role,
    /// Whether admin-only fields are allowed beyond the role.
    pub admin_fields: AdminFields,
}

impl Caller {
    /// An authenticated person or API token (REST or GraphQL, as the principal says).
    pub fn principal(p: &Principal) -> Self {
        Self { ctx: p.ctx(), role: p.role, admin_fields: AdminFields::ByRole }
    }

    /// The server's directory sync (`berth serve --sync-dir`): actor and source `sync`, the
    /// rights of an operator (apply, prune), and admin-only fields only when
    /// `allow_admin_fields` (`--sync-allow-admin-fields`).
    pub fn sync(allow_admin_fields: bool) -> Self {
        Self {
            ctx: WriteContext::new(Actor::Sync, Source::Sync),
            role: Role::Operator,
            admin_fields: if allow_admin_fields {
                AdminFields::Granted("--sync-allow-admin-fields")
            } else {
                AdminFields::ByRole
            },
        }
    }

    /// Whether this caller may write admin-only fields.
    pub fn may_use_admin_fields(&self) -> bool {
        self.role >= Role::Admin || matches!(self.admin_fields, AdminFields::Granted(_))
    }

    fn authorize(&self, action: Action) -> Result<(), ApiError> {
        authorize(self.role, action)
    }
}

/// One resource to write, as parsed from a manifest (with the location of every field, so
/// that errors name the line).
#[derive(Debug, Clone)]
pub struct ApplyDocument {
    /// The file it came from, when the request spans files (the directory sync); `None` for a
    /// request body.
    pub file: Option<String>,
    /// The parsed, validated document.
    pub parsed: ParsedDocument,
}

impl ApplyDocument {
    /// A document of a request body.
    pub fn body(parsed: ParsedDocument) -> Self {
        Self { file: None, parsed }
    }

    /// The resource as the store keeps it.
    pub fn object(&self) -> DynamicObject {
        self.parsed.to_dynamic()
    }

    fn place(&self, line: u64) -> String {
        match &self.file {
            Some(f) => format!("{f}, document {}, line {line}", self.parsed.doc),
            None => format!("document {}, line {line}", self.parsed.doc),
        }
    }
}

/// `POST /api/v1/apply` query: the options of an apply.
#[derive(Debug, Default, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyQuery {
    /// Validate and report what would change, writing nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Delete resources matching this label selector that the request does not contain.
    pub prune: Option<String>,
}

/// An apply: the documents and the options.
#[derive(Debug, Clone, Default)]
pub struct ApplyRequest {
    /// The resources, in order.
    pub documents: Vec<ApplyDocument>,
    /// Dry run and prune.
    pub options: ApplyQuery,
}

/// What happened to one document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResponse {
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// One entry per resource in the request, in order.
    pub results: Vec<ApplyResult>,
    /// Resources removed (or that would be) by `prune`.
    pub pruned: Vec<ApplyResult>,
}

/// `PUT /api/v1/{plural}/{namespace}/{name}` answer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplaceResponse {
    /// `configured` or `unchanged`.
    pub outcome: String,
    /// The resource after the write.
    #[schemars(with = "Value")]
    pub object: DynamicObject,
    /// What changed.
    pub diff: Vec<Change>,
}

/// `DELETE /api/v1/{plural}/{namespace}/{name}` query.
#[derive(Debug, Default, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteParams {
    /// Wait until the resource is gone (its finalizers done).
    #[serde(default)]
    pub wait: bool,
    /// How long to wait, in seconds (default and maximum: just under the request timeout).
    pub timeout_seconds: Option<u64>,
}

/// Where a deleted resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeleteOutcome {
    /// Gone from the store.
    Deleted,
    /// Deletion requested; the controller still cleans up what it made in Docker.
    Terminating,
}

impl DeleteOutcome {
    /// `deleted` or `terminating`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Terminating => "terminating",
        }
    }
}

/// What a delete did: `{outcome, object}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteResponse {
    /// Gone, or still terminating.
    pub outcome: DeleteOutcome,
    /// The resource: its last state when deleted, its current one while terminating.
    #[schemars(with = "Value")]
    pub object: DynamicObject,
}

/// One admin-only field a request uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminFieldUse {
    /// The file, when the request spans files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The document index.
    pub doc: usize,
    /// The resource's kind.
    pub kind: Kind,
    /// The resource's namespace.
    pub namespace: String,
    /// The resource's name.
    pub name: String,
    /// The field (`spec.mounts[0]`).
    pub path: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

/// The kind named by a REST plural (`containers`).
///
/// # Errors
///
/// [`ApiError::NotFound`] for an unknown plural.
pub fn kind_of(plural: &str) -> Result<Kind, ApiError> {
    Kind::ALL
        .into_iter()
        .find(|k| k.plural() == plural)
        .ok_or_else(|| ApiError::NotFound(format!("resource type {plural:?}")))
}

/// Parses a label selector (`labelSelector`, `prune`).
///
/// # Errors
///
/// [`ApiError::BadRequest`] naming `parameter`.
pub fn parse_selector(s: Option<&str>, parameter: &str) -> Result<Selector, ApiError> {
    match s {
        None => Ok(Selector::everything()),
        Some(s) => Selector::parse(s).map_err(|e| ApiError::BadRequest {
            message: e.to_string(),
            details: json!({ "parameter": parameter }),
        }),
    }
}

/// Parses and validates every document of a manifest body (YAML or JSON, multi-document).
///
/// # Errors
///
/// [`ApiError::Invalid`] (422) listing every error with its document, path, line and column.
pub fn parse_manifest(state: &AppState, body: &[u8]) -> Result<Vec<ApplyDocument>, ApiError> {
    let limits = ParseLimits { max_bytes: state.config().body_limit, ..ParseLimits::default() };
    let docs = berth_schemas::parse_and_validate(body, &limits).map_err(|errors| {
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
    })?;
    Ok(docs.into_iter().map(ApplyDocument::body).collect())
}

/// The mounts of `spec` naming an existing Docker volume berth did not make: mounting those is
/// admin-only (issue 11, hole 7; see `berth_controller::reconcile::container::volumes`). A spec
/// without named volume mounts needs no Engine.
///
/// # Errors
///
/// [`ApiError::Unavailable`] (503) when there are named volume mounts and the Engine cannot be
/// asked: the write is refused rather than let through unchecked.
async fn foreign_volume_mounts(
    state: &AppState,
    spec: &berth_schemas::ContainerSpec,
) -> Result<Vec<berth_schemas::FieldPath>, ApiError> {
    use berth_controller::reconcile::container::volumes;
    if volumes::named_volumes(spec).next().is_none() {
        return Ok(Vec::new());
    }
    let unavailable = || {
        ApiError::Unavailable(
            "cannot check whether the mounted volumes are berth's: the Docker Engine is not \
             reachable"
                .to_owned(),
        )
    };
    let driver = state.driver().ok_or_else(unavailable)?;
    volumes::foreign_volume_mounts(driver, state.resources().instance_id(), spec).await.map_err(
        |e| {
            tracing::warn!(error = %e, "checking volume ownership failed");
            unavailable()
        },
    )
}

/// The admin-only check, the one copy every write path runs before writing anything: lists
/// the admin-only fields the documents use, and refuses them from a caller who may not use
/// them.
///
/// It is `async` and has the whole state so that checks needing the Docker Engine (a named
/// volume that berth does not own) can live here too.
///
/// # Errors
///
/// [`ApiError::Forbidden`] (403) naming every such field with its file, document, line and
/// column.
pub async fn refuse_admin_fields(
    state: &AppState,
    caller: &Caller,
    docs: &[ApplyDocument],
) -> Result<Vec<AdminFieldUse>, ApiError> {
    let mut used = Vec::new();
    let mut first_place = None;
    for d in docs {
        let meta = d.parsed.resource.metadata();
        let mut paths = d.parsed.resource.admin_only_fields();
        // Asks the Engine, so only for a caller the answer can stop (an admin's write needs no
        // Engine to be checked; its volume mounts are then not listed for the grant audit).
        if !caller.may_use_admin_fields()
            && let berth_schemas::Resource::Container(c) = &d.parsed.resource
        {
            paths.extend(foreign_volume_mounts(state, &c.spec).await?);
        }
        for path in paths {
            let (line, column) = d.parsed.locate(&path);
            if first_place.is_none() {
                first_place = Some(d.place(line));
            }
            used.push(AdminFieldUse {
                file: d.file.clone(),
                doc: d.parsed.doc,
                kind: d.parsed.resource.kind(),
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                path: d.parsed.prefix.join(&path).to_string(),
                line,
                column,
            });
        }
    }
    if used.is_empty() || caller.may_use_admin_fields() {
        return Ok(used);
    }
    let first = &used[0];
    Err(ApiError::Forbidden {
        message: format!(
            "field {} may only be set by an admin ({})",
            first.path,
            first_place.unwrap_or_default()
        ),
        details: json!({ "action": Action::UseAdminFields.as_str(), "fields": used }),
    })
}

/// Audits the admin-only fields a caller used under an explicit grant, one event per resource.
async fn audit_granted_fields(state: &AppState, caller: &Caller, used: &[AdminFieldUse]) {
    let AdminFields::Granted(grant) = caller.admin_fields else {
        return;
    };
    if caller.role >= Role::Admin {
        return;
    }
    let mut by_resource: Vec<(ResourceKey, Vec<&str>)> = Vec::new();
    for u in used {
        let key = ResourceKey::new(u.kind, &u.namespace, &u.name);
        match by_resource.iter_mut().find(|(k, _)| *k == key) {
            Some((_, paths)) => paths.push(&u.path),
            None => by_resource.push((key, vec![&u.path])),
        }
    }
    for (key, paths) in by_resource {
        let entry = AuditEntry::new(caller.ctx.clone(), ADMIN_FIELDS_VERB, AuditOutcome::Success)
            .target(key.kind.as_str(), Some(key.namespace.clone()), key.name.clone())
            .message(format!("admin-only fields {} allowed by {grant}", paths.join(", ")));
        if let Err(e) = state.audit().append(entry).await {
            tracing::warn!(error = %e, key = %key, "cannot audit the use of admin-only fields");
        }
    }
}

fn result_of(
    doc: usize,
    obj: &DynamicObject,
    outcome: WriteOutcome,
    diff: Vec<Change>,
) -> ApplyResult {
    ApplyResult {
        doc,
        kind: obj.kind,
        namespace: obj.metadata.namespace.clone(),
        name: obj.metadata.name.clone(),
        outcome: outcome.as_str().to_owned(),
        resource_version: obj.metadata.resource_version.clone(),
        generation: obj.metadata.generation,
        diff,
    }
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

/// Applies documents in order: the admin-only check first (nothing is written when it
/// refuses), then a create or update of each (kubectl apply semantics, from the store), then
/// the prune of what matches `prune` but is not in the request. A dry run asks the store what
/// each write would do ([`ResourceStore::apply_dry_run`]) and writes nothing.
///
/// [`ResourceStore::apply_dry_run`]: berth_controller::store::ResourceStore::apply_dry_run
///
/// # Errors
///
/// 403 for a caller who may not apply (or prune, or use the admin-only fields present); 400
/// for a bad or empty prune selector; 409 for a conflict (the details list what was applied
/// before it); 422 for a document the store refuses; 503 while the store shuts down.
#[tracing::instrument(skip_all, fields(actor = %caller.ctx.actor, dry_run = req.options.dry_run))]
pub async fn apply(
    state: &AppState,
    caller: &Caller,
    req: ApplyRequest,
) -> Result<ApplyResponse, ApiError> {
    caller.authorize(Action::ApplyResources)?;
    let dry_run = req.options.dry_run;
    let prune = match req.options.prune.as_deref() {
        None => None,
        Some(s) => {
            caller.authorize(Action::DeleteResources)?;
            let sel = parse_selector(Some(s), "prune")?;
            if sel.is_everything() {
                return Err(ApiError::bad_request("prune needs a non-empty label selector"));
            }
            Some(sel)
        }
    };
    let used = refuse_admin_fields(state, caller, &req.documents).await?;

    let store = state.resources();
    let mut results = Vec::with_capacity(req.documents.len());
    let mut wanted: HashSet<ResourceKey> = HashSet::new();
    for d in &req.documents {
        let obj = d.object();
        wanted.insert(obj.key());
        let written = if dry_run {
            store.apply_dry_run(obj.clone()).await
        } else {
            store.apply(&caller.ctx, obj.clone()).await
        };
        let w: WriteResult = match written {
            Ok(w) => w,
            Err(e) => {
                let mut err = ApiError::from(e);
                attach_partial(&mut err, &results);
                return Err(err);
            }
        };
        let diff = if w.outcome == WriteOutcome::Unchanged {
            Vec::new()
        } else {
            diff(w.old.as_ref(), &obj)
        };
        // A dry run reports the versions stored now (none for a create).
        let shown = if dry_run { w.old.as_ref() } else { Some(&w.object) };
        let mut r = result_of(d.parsed.doc, &obj, w.outcome, diff);
        r.resource_version = shown.and_then(|o| o.metadata.resource_version.clone());
        r.generation = shown.and_then(|o| o.metadata.generation);
        results.push(r);
    }
    if !dry_run && !used.is_empty() {
        audit_granted_fields(state, caller, &used).await;
    }

    let mut pruned = Vec::new();
    if let Some(selector) = prune {
        let list = store.list(&ListQuery { selector, ..ListQuery::default() }).await?;
        for o in list.items.into_iter().filter(|o| !wanted.contains(&o.key())) {
            let outcome = if dry_run {
                WriteOutcome::Deleted
            } else {
                match store.delete(&caller.ctx, &o.key()).await {
                    Ok(w) => w.outcome,
                    Err(StoreError::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            pruned.push(result_of(0, &o, outcome, Vec::new()));
        }
    }
    Ok(ApplyResponse { dry_run, results, pruned })
}

/// Replaces an existing resource with the one document given, which must name `key`. With
/// `metadata.resourceVersion` the write is conditional; admin-only fields are checked first.
///
/// # Errors
///
/// 422 unless exactly one document; 400 when it names another resource; 403 as [`apply`];
/// 404 when the resource does not exist; 409 for a stale `resourceVersion`.
#[tracing::instrument(skip_all, fields(actor = %caller.ctx.actor, key = %key))]
pub async fn replace(
    state: &AppState,
    caller: &Caller,
    key: &ResourceKey,
    documents: Vec<ApplyDocument>,
) -> Result<ReplaceResponse, ApiError> {
    caller.authorize(Action::ApplyResources)?;
    let [doc] = documents.as_slice() else {
        return Err(ApiError::Invalid {
            message: format!("the body must hold exactly one resource, not {}", documents.len()),
            details: json!({ "documents": documents.len() }),
        });
    };
    let obj = doc.object();
    if obj.key() != *key {
        return Err(ApiError::BadRequest {
            message: format!("the body names {}, the path {key}", obj.key()),
            details: json!({ "path": key.to_string(), "body": obj.key().to_string() }),
        });
    }
    let used = refuse_admin_fields(state, caller, &documents).await?;
    let w = state.resources().update(&caller.ctx, obj.clone()).await?;
    if !used.is_empty() {
        audit_granted_fields(state, caller, &used).await;
    }
    let diff =
        if w.outcome == WriteOutcome::Unchanged { Vec::new() } else { diff(w.old.as_ref(), &obj) };
    Ok(ReplaceResponse { outcome: w.outcome.as_str().to_owned(), object: w.object, diff })
}

/// Deletes a resource. With finalizers it becomes terminating until the controller has cleaned
/// up; with `wait` the answer comes once it is gone, or when the wait (at most just under the
/// request timeout) ends, whichever is first.
///
/// # Errors
///
/// 403 for a caller who may not delete; 404 when it does not exist; 503 while the store shuts
/// down.
#[tracing::instrument(skip_all, fields(actor = %caller.ctx.actor, key = %key))]
pub async fn delete(
    state: &AppState,
    caller: &Caller,
    key: &ResourceKey,
    params: &DeleteParams,
) -> Result<DeleteResponse, ApiError> {
    caller.authorize(Action::DeleteResources)?;
    let store = state.resources();
    // Subscribe before deleting so the final DELETED event cannot be missed.
    let mut w = if params.wait {
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
    let res = store.delete(&caller.ctx, key).await?;
    let answer = |outcome, object| DeleteResponse { outcome, object };
    if res.outcome == WriteOutcome::Deleted {
        return Ok(answer(DeleteOutcome::Deleted, res.object));
    }
    let Some(w) = w.as_mut() else {
        return Ok(answer(DeleteOutcome::Terminating, res.object));
    };
    let max = state
        .config()
        .request_timeout
        .saturating_sub(Duration::from_secs(1))
        .max(Duration::from_millis(100));
    let limit = params.timeout_seconds.map_or(max, |s| Duration::from_secs(s).min(max));
    let gone = tokio::time::timeout(limit, async {
        loop {
            match w.next().await {
                Ok(ev) if ev.event_type == EventType::Deleted && ev.object.key() == *key => {
                    return Ok(ev.object);
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match gone {
        Ok(Ok(o)) => Ok(answer(DeleteOutcome::Deleted, o)),
        Ok(Err(_)) | Err(_) => match store.get(key).await? {
            None => Ok(answer(DeleteOutcome::Deleted, res.object)),
            Some(o) => Ok(answer(DeleteOutcome::Terminating, o)),
        },
    }
}

/// Restarts a container declaratively: bumps its [`RESTARTED_AT`] annotation, so the restart is
/// audited and survives a restart of berth. Conditional on the version read, so a concurrent
/// change is a conflict rather than lost.
///
/// # Errors
///
/// 403 for a caller who may not restart; 404 when there is no such container; 409 on a
/// concurrent change or while it is being deleted.
#[tracing::instrument(skip_all, fields(actor = %caller.ctx.actor, key = %key))]
pub async fn restart(
    state: &AppState,
    caller: &Caller,
    key: &ResourceKey,
) -> Result<DynamicObject, ApiError> {
    caller.authorize(Action::RestartContainers)?;
    if key.kind != Kind::Container {
        return Err(ApiError::bad_request(format!(
            "only containers restart, not {}",
            key.kind.as_str()
        )));
    }
    let store = state.resources();
    let mut o = store.get(key).await?.ok_or_else(|| ApiError::NotFound(key.to_string()))?;
    o.metadata
        .annotations
        .insert(RESTARTED_AT.to_owned(), Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
    Ok(store.apply(&caller.ctx, o).await?.object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admins_and_explicit_grants_may_use_admin_fields() {
        let mut c = Caller::sync(false);
        assert!(!c.may_use_admin_fields());
        c.role = Role::Admin;
        assert!(c.may_use_admin_fields());
        assert!(Caller::sync(true).may_use_admin_fields());
    }
}
