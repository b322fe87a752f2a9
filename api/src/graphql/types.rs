//! What the schema returns: resources (spec and status as JSON, conditions typed), changes,
//! Docker objects and events, log lines, stats samples and exec events.

use async_graphql::{Enum, InputObject, Json, Object, SimpleObject};
use berth_controller::docker::{ContainerStats, EngineEvent, ObservedContainer, ObservedImage};
use berth_controller::store::EventType;
use berth_schemas::DynamicObject;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// A stored resource.
#[derive(Debug, Clone)]
pub struct Resource(pub DynamicObject);

/// One status condition (`Ready`, `Progressing`, `Degraded`).
#[derive(Debug, Clone, SimpleObject)]
pub struct Condition {
    /// `Ready`, `Progressing` or `Degraded`.
    #[graphql(name = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    pub reason: Option<String>,
    /// A human message.
    pub message: Option<String>,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: Option<String>,
}

/// The conditions in a status value.
pub fn conditions(status: &Value) -> Vec<Condition> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    status
        .get("conditions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| Condition {
                    kind: s(c, "type").unwrap_or_default(),
                    status: s(c, "status").unwrap_or_default(),
                    reason: s(c, "reason"),
                    message: s(c, "message"),
                    last_transition_time: s(c, "lastTransitionTime"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A stored resource: its envelope, with spec and status as JSON.
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
    /// What the user asked for.
    async fn spec(&self) -> Json<&Value> {
        Json(&self.0.spec)
    }
    /// What the controller observed.
    async fn status(&self) -> Json<&Value> {
        Json(&self.0.status)
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

/// The Docker Engine berth talks to.
#[derive(Debug, SimpleObject)]
pub struct EngineInfo {
    /// Engine version.
    pub version: String,
    /// Highest API version the Engine speaks.
    pub api_version: String,
    /// API version in use.
    pub negotiated_api_version: String,
    /// Operating system.
    pub os: String,
    /// Architecture.
    pub arch: String,
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
    /// Whether berth manages it.
    pub managed: bool,
    /// For berth's: the resource `namespace/name`.
    pub resource: Option<String>,
    /// Labels.
    pub labels: Json<std::collections::HashMap<String, String>>,
}

impl From<ObservedContainer> for DockerContainer {
    fn from(c: ObservedContainer) -> Self {
        let managed = c.is_managed();
        let resource = match (
            c.label(berth_controller::labels::NAMESPACE),
            c.label(berth_controller::labels::NAME),
        ) {
            (Some(ns), Some(n)) if managed => Some(format!("{ns}/{n}")),
            _ => None,
        };
        Self {
            id: c.id,
            name: c.name.trim_start_matches('/').to_owned(),
            image: c.image,
            state: c.state.as_str().to_owned(),
            managed,
            resource,
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
    /// Size in bytes.
    pub size: i64,
    /// Whether an `Image` or `Container` resource refers to one of its tags.
    pub managed: bool,
}

impl DockerImage {
    /// From what the Engine reports and the image references berth's resources name.
    pub fn new(i: ObservedImage, referenced: &std::collections::HashSet<String>) -> Self {
        let managed = i.repo_tags.iter().any(|t| referenced.contains(t))
            || berth_controller::labels::is_managed(&i.labels);
        Self { id: i.id, tags: i.repo_tags, size: i.size, managed }
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

/// How far an image pull has come (an `Image`'s `status.pull`).
#[derive(Debug, Clone, SimpleObject)]
pub struct PullProgress {
    /// Bytes downloaded so far, over the layers whose size is known.
    pub current_bytes: u64,
    /// The size of those layers.
    pub total_bytes: u64,
    /// Layers finished (downloaded, or already on the host).
    pub layers_done: u32,
    /// Layers seen so far.
    pub layers_total: u32,
}

impl From<berth_schemas::image::PullProgress> for PullProgress {
    fn from(p: berth_schemas::image::PullProgress) -> Self {
        Self {
            current_bytes: p.current_bytes,
            total_bytes: p.total_bytes,
            layers_done: p.layers_done,
            layers_total: p.layers_total,
        }
    }
}

impl ApplyProgress {
    /// The progress an object shows, and whether it is final.
    pub fn of(o: &DynamicObject, revision: u64) -> (Self, bool) {
        let conds = conditions(&o.status);
        let generation = o.metadata.generation;
        let observed = o.status.get("observedGeneration").and_then(Value::as_u64);
        let find = |t: &str| conds.iter().find(|c| c.kind == t);
        let current = observed.is_some() && observed >= generation;
        let ready = find("Ready").filter(|c| c.status == "True");
        let degraded = find("Degraded").filter(|c| c.status == "True");
        let ready_false = find("Ready").filter(|c| c.status == "False");
        let progressing = find("Progressing").filter(|c| c.status == "True");
        let (phase, cond, done) = if current && ready.is_some() {
            ("READY", ready, true)
        } else if current && degraded.is_some() && progressing.is_none() {
            ("FAILED", degraded, true)
        } else if observed.is_none() && conds.is_empty() {
            ("PENDING", None, false)
        } else {
            ("PROGRESSING", progressing.or(ready_false).or(degraded), false)
        };
        (
            Self {
                phase: phase.to_owned(),
                reason: cond.and_then(|c| c.reason.clone()),
                message: cond.and_then(|c| c.message.clone()),
                generation,
                observed_generation: observed,
                revision: revision.to_string(),
                conditions: conds.clone(),
                pull: o
                    .status
                    .get("pull")
                    .and_then(|p| {
                        serde_json::from_value::<berth_schemas::image::PullProgress>(p.clone()).ok()
                    })
                    .map(PullProgress::from),
            },
            done,
        )
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
                {"type": "Progressing", "status": "True", "reason": "Pulling"}],
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
            "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .expect("object");
        assert!(!ApplyProgress::of(&o, 1).1);
        o.status["observedGeneration"] = 2.into();
        let (p, done) = ApplyProgress::of(&o, 2);
        assert!(done);
        assert_eq!(p.phase, "READY");
    }
}
