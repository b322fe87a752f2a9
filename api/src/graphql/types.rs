//! What the schema returns: resources (typed per kind from `berth-schemas`' own types, and
//! kind-agnostic with spec and status as JSON), changes, accounts, Docker objects and events,
//! log lines, stats samples and exec events.
//!
//! The resource types (`Container`, `ContainerSpec`, `Condition`, ...) are not written here:
//! they are the schema crate's structs, derived as GraphQL types by its `graphql` feature.

use async_graphql::{Enum, InputObject, Json, Object, SimpleObject};
use berth_controller::docker::{ContainerStats, EngineEvent};
use berth_controller::store::EventType;
use berth_schemas::condition::Condition;
use berth_schemas::image::PullProgress;
use berth_schemas::{
    Container, ContainerSpec, ContainerStatus, DynamicObject, Image, ImageSpec, ImageStatus,
    ObjectMeta,
};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::error::{GqlResult, coded};
use crate::service::system::{Owner, SystemContainer, SystemImage};

/// A stored resource.
#[derive(Debug, Clone)]
pub struct Resource(pub DynamicObject);

/// The conditions in a status value (none when it has none, or they do not parse).
pub fn conditions(status: &Value) -> Vec<Condition> {
    status
        .get("conditions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|c| serde_json::from_value(c.clone()).ok()).collect())
        .unwrap_or_default()
}

/// `o` with its spec and status typed as its kind's.
///
/// # Errors
///
/// `internal` when the stored JSON does not fit the kind's types (the store only keeps
/// validated specs, so this means a bug; the cause is logged).
pub fn typed<Spec, Status>(o: &DynamicObject) -> GqlResult<berth_schemas::Object<Spec, Status>>
where
    Spec: serde::de::DeserializeOwned,
    Status: serde::de::DeserializeOwned,
{
    o.to_typed().map_err(|e| {
        tracing::error!(error = %crate::error::ErrorChain(&e), "stored resource does not fit its kind");
        coded("internal", "internal error")
    })
}

/// A stored resource: its envelope, with spec and status as JSON, and its typed form
/// (`asContainer`, `asImage`).
#[Object]
impl Resource {
    /// `berth.dev/v1`.
    async fn api_version(&self) -> &str {
        &self.0.api_version
    }
    /// `Container`, `Image`, ...
    async fn kind(&self) -> &str {
        self.0.kind.as_str()
    }
    /// Namespace.
    async fn namespace(&self) -> &str {
        &self.0.metadata.namespace
    }
    /// Name.
    async fn name(&self) -> &str {
        &self.0.metadata.name
    }
    /// Server-set unique id.
    async fn uid(&self) -> Option<&str> {
        self.0.metadata.uid.as_deref()
    }
    /// Moves on every spec change.
    async fn generation(&self) -> Option<u64> {
        self.0.metadata.generation
    }
    /// For optimistic concurrency (a revision number).
    async fn resource_version(&self) -> Option<&str> {
        self.0.metadata.resource_version.as_deref()
    }
    /// Labels.
    async fn labels(&self) -> Json<&std::collections::BTreeMap<String, String>> {
        Json(&self.0.metadata.labels)
    }
    /// Annotations.
    async fn annotations(&self) -> Json<&std::collections::BTreeMap<String, String>> {
        Json(&self.0.metadata.annotations)
    }
    /// When it was created.
    async fn creation_timestamp(&self) -> Option<DateTime<Utc>> {
        self.0.metadata.creation_timestamp
    }
    /// When deletion was asked for (the controller is cleaning up).
    async fn deletion_timestamp(&self) -> Option<DateTime<Utc>> {
        self.0.metadata.deletion_timestamp
    }
    /// The whole metadata, typed (server-set fields included).
    async fn metadata(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    /// What the user asked for, as JSON (typed: `asContainer { spec { ... } }`).
    async fn spec(&self) -> Json<&Value> {
        Json(&self.0.spec)
    }
    /// What the controller observed, as JSON (typed: `asContainer { status { ... } }`).
    async fn status(&self) -> Json<&Value> {
        Json(&self.0.status)
    }
    /// The resource typed as a `Container`; null for another kind.
    async fn as_container(&self) -> GqlResult<Option<Container>> {
        match self.0.kind {
            berth_schemas::Kind::Container => {
                typed::<ContainerSpec, ContainerStatus>(&self.0).map(Some)
            }
            _ => Ok(None),
        }
    }
    /// The resource typed as an `Image`; null for another kind.
    async fn as_image(&self) -> GqlResult<Option<Image>> {
        match self.0.kind {
            berth_schemas::Kind::Image => typed::<ImageSpec, ImageStatus>(&self.0).map(Some),
            _ => Ok(None),
        }
    }
    /// The status conditions, typed.
    async fn conditions(&self) -> Vec<Condition> {
        conditions(&self.0.status)
    }
    /// The whole object as the REST API returns it.
    async fn object(&self) -> Json<&DynamicObject> {
        Json(&self.0)
    }
}

/// A list with the store revision it was read at (resume `resourceChanges` from it).
#[derive(Debug, SimpleObject)]
pub struct ResourceList {
    /// The store revision of this list.
    pub revision: String,
    /// The resources.
    pub items: Vec<Resource>,
}

/// What happened to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ChangeType {
    /// Created (or present when the subscription started without `sinceRevision`).
    Added,
    /// Changed.
    Modified,
    /// Gone.
    Deleted,
}

impl From<EventType> for ChangeType {
    fn from(t: EventType) -> Self {
        match t {
            EventType::Added => ChangeType::Added,
            EventType::Modified => ChangeType::Modified,
            EventType::Deleted => ChangeType::Deleted,
        }
    }
}

/// One change from `resourceChanges`.
#[derive(Debug, SimpleObject)]
pub struct ResourceChange {
    /// What happened.
    #[graphql(name = "type")]
    pub kind: ChangeType,
    /// The store revision of the change: pass it as `sinceRevision` to resume after it.
    pub revision: String,
    /// The resource after the change (before it, for `DELETED`).
    pub object: Resource,
}

/// A Docker container, berth's or not.
#[derive(Debug, SimpleObject)]
pub struct DockerContainer {
    /// Container id.
    pub id: String,
    /// Name (without the leading `/`).
    pub name: String,
    /// Image as asked for.
    pub image: String,
    /// `running`, `exited`, ...
    pub state: String,
    /// The id of the image it runs.
    pub image_id: String,
    /// When it was created.
    pub created_at: Option<DateTime<Utc>>,
    /// Whether berth manages it.
    pub managed: bool,
    /// For berth's: the resource `namespace/name`.
    pub resource: Option<String>,
    /// For berth's: the resource its labels name.
    pub owner: Option<Owner>,
    /// Labels.
    pub labels: Json<std::collections::HashMap<String, String>>,
}

impl From<SystemContainer> for DockerContainer {
    fn from(c: SystemContainer) -> Self {
        let resource = match &c.owner {
            Some(Owner { namespace: Some(ns), name: Some(n), .. }) => Some(format!("{ns}/{n}")),
            _ => None,
        };
        Self {
            id: c.id,
            name: c.name,
            image: c.image,
            state: c.state,
            image_id: c.image_id,
            created_at: c.created_at,
            managed: c.managed,
            resource,
            owner: c.owner,
            labels: Json(c.labels),
        }
    }
}

/// A Docker image.
#[derive(Debug, SimpleObject)]
pub struct DockerImage {
    /// Image id.
    pub id: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Registry digests.
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    pub size: i64,
    /// When it was built.
    pub created_at: Option<DateTime<Utc>>,
    /// Whether an `Image` or `Container` resource refers to one of its tags (or it carries
    /// berth's labels).
    pub managed: bool,
    /// The resources (`Kind/namespace/name`) naming one of its tags.
    pub wanted_by: Vec<String>,
}

impl From<SystemImage> for DockerImage {
    fn from(i: SystemImage) -> Self {
        Self {
            id: i.id,
            tags: i.repo_tags,
            repo_digests: i.repo_digests,
            size: i.size,
            created_at: i.created_at,
            managed: i.managed,
            wanted_by: i.wanted_by,
        }
    }
}

/// Which Engine events `dockerEvents` delivers; all given fields must match.
#[derive(Debug, Default, InputObject)]
pub struct DockerEventFilter {
    /// `container` or `image`.
    #[graphql(name = "type")]
    pub kind: Option<String>,
    /// Actions (`start`, `die`, `health_status`, ...), matched without their detail.
    pub actions: Option<Vec<String>>,
    /// A container or image id, or a container name.
    pub id: Option<String>,
    /// A label: `key` or `key=value`.
    pub label: Option<String>,
    /// Only events about objects berth manages (or, `false`, only foreign ones).
    pub managed: Option<bool>,
}

impl DockerEventFilter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &EngineEvent) -> bool {
        let kind = match &e.kind {
            berth_controller::docker::EventKind::Container => "container",
            berth_controller::docker::EventKind::Image => "image",
            berth_controller::docker::EventKind::Other(o) => o.as_str(),
        };
        if self.kind.as_deref().is_some_and(|k| !k.eq_ignore_ascii_case(kind)) {
            return false;
        }
        if self.actions.as_ref().is_some_and(|a| !a.iter().any(|x| x == e.base_action())) {
            return false;
        }
        if let Some(id) = &self.id
            && !(e.id.starts_with(id.as_str()) || e.attributes.get("name").is_some_and(|n| n == id))
        {
            return false;
        }
        if let Some(l) = &self.label {
            let ok = match l.split_once('=') {
                Some((k, v)) => e.attributes.get(k).is_some_and(|x| x == v),
                None => e.attributes.contains_key(l.as_str()),
            };
            if !ok {
                return false;
            }
        }
        if self.managed.is_some_and(|m| m != e.is_managed()) {
            return false;
        }
        true
    }
}

/// A Docker Engine event.
#[derive(Debug, SimpleObject)]
pub struct DockerEvent {
    /// `container` or `image`.
    #[graphql(name = "type")]
    pub kind: String,
    /// Docker's action (`start`, `die`, `health_status: healthy`, ...).
    pub action: String,
    /// Container id or image reference.
    pub id: String,
    /// Attributes (labels, `name`, `image`, `exitCode`).
    pub attributes: Json<std::collections::HashMap<String, String>>,
    /// When, in nanoseconds since the epoch (as a string: it does not fit a GraphQL Int).
    pub time_nano: String,
    /// When, as a timestamp.
    pub time: Option<DateTime<Utc>>,
}

impl From<EngineEvent> for DockerEvent {
    fn from(e: EngineEvent) -> Self {
        let kind = match &e.kind {
            berth_controller::docker::EventKind::Container => "container".to_owned(),
            berth_controller::docker::EventKind::Image => "image".to_owned(),
            berth_controller::docker::EventKind::Other(o) => o.clone(),
        };
        Self {
            kind,
            time: DateTime::from_timestamp_nanos(e.time_nano).into(),
            time_nano: e.time_nano.to_string(),
            action: e.action,
            id: e.id,
            attributes: Json(e.attributes),
        }
    }
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum Stream {
    /// Standard output (and a TTY's combined output).
    Stdout,
    /// Standard error.
    Stderr,
}

/// One log line.
#[derive(Debug, Clone, SimpleObject)]
pub struct LogLine {
    /// Where it was written.
    pub stream: Stream,
    /// The text, without its line ending (invalid UTF-8 replaced).
    pub line: String,
    /// When the Engine logged it (null unless `timestamps` is true).
    pub timestamp: Option<DateTime<Utc>>,
    /// Lines this subscriber missed just before this one because it read too slowly.
    pub dropped: u64,
}

/// One stats sample, computed as `docker stats` does.
#[derive(Debug, Clone, SimpleObject)]
pub struct StatsSample {
    /// CPU use in percent of one CPU (200 = two CPUs busy), from the delta since the
    /// previous reading.
    pub cpu_percent: f64,
    /// CPUs available to the container.
    pub online_cpus: u32,
    /// Memory in use minus reclaimable page cache, bytes.
    pub memory_usage: u64,
    /// Memory limit, bytes.
    pub memory_limit: u64,
    /// `memoryUsage / memoryLimit` in percent.
    pub memory_percent: f64,
    /// Bytes received over all networks.
    pub net_rx: u64,
    /// Bytes sent over all networks.
    pub net_tx: u64,
    /// Bytes read from block devices.
    pub block_read: u64,
    /// Bytes written to block devices.
    pub block_write: u64,
    /// Processes and threads.
    pub pids: u64,
    /// When the Engine read it.
    pub timestamp: Option<DateTime<Utc>>,
    /// Samples this subscriber missed just before this one because it read too slowly.
    pub dropped: u64,
}

impl From<&ContainerStats> for StatsSample {
    fn from(s: &ContainerStats) -> Self {
        let cpu_delta = s.cpu_total.saturating_sub(s.precpu_total) as f64;
        let system_delta = s.system_cpu.saturating_sub(s.presystem_cpu) as f64;
        let cpu_percent = if s.presystem_cpu > 0 && system_delta > 0.0 && cpu_delta > 0.0 {
            cpu_delta / system_delta * f64::from(s.online_cpus.max(1)) * 100.0
        } else {
            0.0
        };
        let memory_usage = s.memory_usage.saturating_sub(s.memory_cache);
        let memory_percent = if s.memory_limit > 0 {
            memory_usage as f64 / s.memory_limit as f64 * 100.0
        } else {
            0.0
        };
        Self {
            cpu_percent,
            online_cpus: s.online_cpus,
            memory_usage,
            memory_limit: s.memory_limit,
            memory_percent,
            net_rx: s.net_rx,
            net_tx: s.net_tx,
            block_read: s.block_read,
            block_write: s.block_write,
            pids: s.pids,
            timestamp: s.read,
            dropped: 0,
        }
    }
}

/// What an exec event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ExecEventType {
    /// The first event: the session id for `execInput` and `execResize`.
    Started,
    /// Output.
    Output,
    /// The last event: the process ended with `exitCode`.
    Exit,
}

/// One event of an `exec` subscription.
#[derive(Debug, Clone, SimpleObject)]
pub struct ExecEvent {
    /// What it is.
    #[graphql(name = "type")]
    pub kind: ExecEventType,
    /// The session id (on every event).
    pub session_id: String,
    /// For `OUTPUT`: which stream.
    pub stream: Option<Stream>,
    /// For `OUTPUT`: the bytes, base64.
    pub data: Option<String>,
    /// For `EXIT`: the exit code (null if the Engine did not report one).
    pub exit_code: Option<i64>,
}

/// Where an apply stands, from `applyProgress`.
#[derive(Debug, Clone, SimpleObject)]
pub struct ApplyProgress {
    /// `PENDING`, `PROGRESSING`, `READY`, `FAILED` or `DELETED`.
    pub phase: String,
    /// The most telling condition's reason.
    pub reason: Option<String>,
    /// The most telling condition's message (image pull progress, errors).
    pub message: Option<String>,
    /// The resource's generation.
    pub generation: Option<u64>,
    /// The generation the controller last acted on.
    pub observed_generation: Option<u64>,
    /// Store revision of this state.
    pub revision: String,
    /// The resource's conditions.
    pub conditions: Vec<Condition>,
    /// For an `Image` while it is being pulled: bytes and layers so far (its `status.pull`).
    pub pull: Option<PullProgress>,
}

impl ApplyProgress {
    /// The progress an object shows, and whether it is final (`READY` or `FAILED`), by berth's
    /// one readiness rule ([`berth_schemas::readiness`]).
    pub fn of(o: &DynamicObject, revision: u64) -> (Self, bool) {
        let conds = conditions(&o.status);
        let generation = o.metadata.generation;
        let observed = o.status.get("observedGeneration").and_then(Value::as_u64);
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        let (phase, reason, message, done) = match berth_schemas::readiness(o) {
            berth_schemas::Readiness::Ready => {
                let ready = conds.iter().find(|c| c.type_ == "Ready");
                (
                    "READY",
                    ready.map(|c| c.reason.clone()).filter(|r| !r.is_empty()),
                    ready.map(|c| c.message.clone()).filter(|m| !m.is_empty()),
                    true,
                )
            }
            berth_schemas::Readiness::Failed(why) => {
                ("FAILED", non_empty(why.reason), non_empty(why.message), true)
            }
            berth_schemas::Readiness::Pending => ("PENDING", None, None, false),
            berth_schemas::Readiness::NotReady(why) => {
                ("PROGRESSING", non_empty(why.reason), non_empty(why.message), false)
            }
        };
        (
            Self {
                phase: phase.to_owned(),
                reason,
                message,
                generation,
                observed_generation: observed,
                revision: revision.to_string(),
                conditions: conds.clone(),
                pull: o
                    .status
                    .get("pull")
                    .and_then(|p| serde_json::from_value::<PullProgress>(p.clone()).ok()),
            },
            done,
        )
    }
}

/// What a user or token may do (as REST writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "Role", rename_items = "lowercase")]
pub enum RoleName {
    /// Read, logs and stats.
    Viewer,
    /// Viewer, plus apply, delete, restart and exec.
    Operator,
    /// Everything, including users and system prune.
    Admin,
}

impl From<crate::policy::Role> for RoleName {
    fn from(r: crate::policy::Role) -> Self {
        match r {
            crate::policy::Role::Viewer => Self::Viewer,
            crate::policy::Role::Operator => Self::Operator,
            crate::policy::Role::Admin => Self::Admin,
        }
    }
}

/// A user (never the password hash).
#[derive(Debug, Clone, SimpleObject)]
pub struct User {
    /// Login name.
    pub username: String,
    /// Role.
    pub role: RoleName,
    /// Whether the user is disabled.
    pub disabled: bool,
    /// Created at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
}

impl From<crate::routes::users::UserView> for User {
    fn from(u: crate::routes::users::UserView) -> Self {
        Self {
            username: u.username,
            role: u.role.into(),
            disabled: u.disabled,
            created: u.created,
            updated: u.updated,
        }
    }
}

/// The caller, as `GET /api/v1/me` answers.
#[derive(Debug, Clone, SimpleObject)]
pub struct Me {
    /// Login name (for an API token: its owner).
    pub username: String,
    /// The user's role.
    pub role: RoleName,
    /// Whether the user is disabled.
    pub disabled: bool,
    /// Created at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
    /// The role this request runs with (an API token may have less than its owner).
    pub effective_role: RoleName,
    /// `session` or `apiToken`.
    pub auth_method: String,
    /// The API token id, when authenticated by one.
    pub token_id: Option<String>,
}

impl From<crate::routes::users::MeView> for Me {
    fn from(m: crate::routes::users::MeView) -> Self {
        let u = User::from(m.user);
        Self {
            username: u.username,
            role: u.role,
            disabled: u.disabled,
            created: u.created,
            updated: u.updated,
            effective_role: m.effective_role.into(),
            auth_method: m.auth_method,
            token_id: m.token_id,
        }
    }
}

/// An API token (never the secret or its hash).
#[derive(Debug, Clone, SimpleObject)]
pub struct ApiToken {
    /// Id (recorded as `token:<id>` in the audit log).
    pub id: String,
    /// Name chosen by the owner.
    pub name: String,
    /// The user who created it.
    pub owner: String,
    /// Its role.
    pub role: RoleName,
    /// Created at.
    pub created: DateTime<Utc>,
    /// Expires at (null: never).
    pub expires: Option<DateTime<Utc>>,
    /// Revoked at.
    pub revoked: Option<DateTime<Utc>>,
}

impl From<crate::routes::tokens::TokenView> for ApiToken {
    fn from(t: crate::routes::tokens::TokenView) -> Self {
        Self {
            id: t.id,
            name: t.name,
            owner: t.owner,
            role: t.role.into(),
            created: t.created,
            expires: t.expires,
            revoked: t.revoked,
        }
    }
}

/// The audit chain's check, as `GET /api/v1/audit/verify` answers.
#[derive(Debug, Clone, SimpleObject)]
pub struct AuditVerification {
    /// Whether the whole chain checked out.
    pub ok: bool,
    /// How many events were checked.
    pub events: u64,
    /// The hash of the last good event (publish it elsewhere to anchor the log).
    pub head_hash: String,
    /// The sequence number of the first event that fails a check, if any.
    pub first_bad: Option<u64>,
    /// What is wrong with it.
    pub problem: Option<String>,
}

impl From<berth_controller::store::VerifyReport> for AuditVerification {
    fn from(r: berth_controller::store::VerifyReport) -> Self {
        Self {
            ok: r.is_ok(),
            events: r.events,
            head_hash: r.head_hash,
            first_bad: r.first_bad,
            problem: r.problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_comes_from_the_deltas_times_online_cpus_as_docker_stats_computes_it() {
        let s = ContainerStats {
            cpu_total: 3_000,
            precpu_total: 1_000,
            system_cpu: 20_000,
            presystem_cpu: 10_000,
            online_cpus: 4,
            memory_usage: 1_000,
            memory_cache: 200,
            memory_limit: 4_000,
            ..ContainerStats::default()
        };
        let v = StatsSample::from(&s);
        assert!((v.cpu_percent - 80.0).abs() < 1e-9, "{}", v.cpu_percent);
        assert_eq!(v.memory_usage, 800);
        assert!((v.memory_percent - 20.0).abs() < 1e-9);
    }

    #[test]
    fn the_first_sample_without_a_previous_reading_shows_zero_cpu() {
        let s = ContainerStats {
            cpu_total: 5_000,
            system_cpu: 9_000,
            online_cpus: 2,
            ..ContainerStats::default()
        };
        assert_eq!(StatsSample::from(&s).cpu_percent, 0.0);
    }

    #[test]
    fn progress_of_an_image_being_pulled_carries_its_bytes_and_layers() {
        let o: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Image",
            "metadata": {"name": "app", "namespace": "default", "generation": 1},
            "spec": {"reference": "registry.local/app:1"},
            "status": {"observedGeneration": 1, "conditions": [
                {"type": "Progressing", "status": "True", "reason": "Pulling",
                 "lastTransitionTime": "2026-12-01T00:00:00Z"}],
                "pull": {"currentBytes": 500, "totalBytes": 2000, "layersDone": 1,
                         "layersTotal": 3}}
        }))
        .expect("object");
        let (p, done) = ApplyProgress::of(&o, 7);
        assert!(!done);
        assert_eq!(p.phase, "PROGRESSING");
        let pull = p.pull.expect("pull progress");
        assert_eq!(
            (pull.current_bytes, pull.total_bytes, pull.layers_done, pull.layers_total),
            (500, 2000, 1, 3)
        );
    }

    #[test]
    fn progress_is_ready_only_once_the_current_generation_is_ready() {
        let mut o: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Container",
            "metadata": {"name": "web", "namespace": "default", "generation": 2},
            "spec": {"image": "busybox"},
            "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True",
                "lastTransitionTime": "2026-12-01T00:00:00Z"}]}
        }))
        .expect("object");
        assert!(!ApplyProgress::of(&o, 1).1);
        o.status["observedGeneration"] = 2.into();
        let (p, done) = ApplyProgress::of(&o, 2);
        assert!(done);
        assert_eq!(p.phase, "READY");
    }
}
