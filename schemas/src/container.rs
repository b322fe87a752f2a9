//! The `Container` kind: a Docker container kept in the state its spec describes.
//!
//! The spec covers what `docker run` and a compose service express. Durations (`30s`) and
//! quantities (`512Mi`, `0.5`) stay strings here; [`crate::quantity`] parses them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::meta::Kind;
use crate::object::Object;
use crate::path::FieldPath;
use crate::quantity::Quantity;

/// A `Container` resource.
pub type Container = Object<ContainerSpec, ContainerStatus>;

/// When to pull an image from its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(feature = "graphql", graphql(rename_items = "PascalCase"))]
pub enum PullPolicy {
    /// Pull every time the container is (re)created, so a moved tag is picked up.
    Always,
    /// Pull only when the image is not on the host yet (the default).
    #[default]
    IfNotPresent,
    /// Never pull; the image must already be on the host.
    Never,
}

/// Whether berth keeps the container running or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(feature = "graphql", graphql(rename_items = "PascalCase"))]
pub enum DesiredState {
    /// The container is created and kept running (the default).
    #[default]
    Running,
    /// The container is created but kept stopped; berth stops it if something starts it.
    Stopped,
}

/// An environment variable set in the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct EnvVar {
    /// The variable's name (letters, digits and `_`, not starting with a digit).
    pub name: String,
    /// The variable's value; empty when omitted.
    #[serde(default)]
    pub value: String,
}

/// A transport protocol for a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(feature = "graphql", graphql(rename_items = "lowercase"))]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The protocol as Docker writes it (`tcp`, `udp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A port the container listens on, optionally published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
#[cfg_attr(feature = "graphql", graphql(complex))]
pub struct PortMapping {
    /// The port inside the container (1-65535).
    pub container_port: u16,
    /// The port on the host that forwards to `containerPort` (1-65535). Omit it to expose the
    /// port only on the container's networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// The host address to publish on (for example `127.0.0.1`); all addresses when omitted.
    /// Only meaningful with `hostPort`.
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "graphql", graphql(skip))]
    pub host_ip: Option<IpAddr>,
    /// `tcp` (the default) or `udp`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub protocol: Protocol,
}

/// What a mount attaches at its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(feature = "graphql", graphql(rename_items = "lowercase"))]
pub enum MountType {
    /// A Docker named volume (`source` is the volume name; created on first use). Without a
    /// `source`, an anonymous volume.
    Volume,
    /// A host directory or file (`source` is an absolute host path). Admin-only: it can expose
    /// any host file to the container.
    Bind,
    /// A memory-backed filesystem; takes no `source`.
    Tmpfs,
}

/// A filesystem mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct Mount {
    /// `volume`, `bind` or `tmpfs`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "graphql", graphql(name = "type"))]
    pub type_: MountType,
    /// The volume name (`volume`) or absolute host path (`bind`); not allowed for `tmpfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The absolute path inside the container.
    pub target: String,
    /// Mount read-only (default `false`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub read_only: bool,
}

#[cfg(feature = "graphql")]
#[async_graphql::ComplexObject]
impl PortMapping {
    /// The host address to publish on (for example `127.0.0.1`); all addresses when null.
    /// Only meaningful with `hostPort`.
    #[graphql(name = "hostIP")]
    async fn host_ip(&self) -> Option<String> {
        self.host_ip.map(|ip| ip.to_string())
    }
}

/// What Docker does when the container's process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(feature = "graphql", graphql(rename_items = "PascalCase"))]
pub enum RestartPolicyKind {
    /// Restart whatever the exit code (the default).
    #[default]
    Always,
    /// Restart only after a non-zero exit, at most `maxRetries` times when given.
    OnFailure,
    /// Never restart; the container stays exited.
    Never,
}

/// The restart policy, written `restartPolicy: {policy: OnFailure, maxRetries: 5}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct RestartPolicy {
    /// `Always` (the default), `OnFailure` or `Never`.
    #[serde(default)]
    pub policy: RestartPolicyKind,
    /// With `OnFailure`: how many restarts Docker attempts before giving up. Unlimited when
    /// omitted. Not allowed with the other policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

/// A command Docker runs inside the container to decide whether it is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct HealthCheck {
    /// The command, exec form: `["curl", "-fsS", "http://localhost/"]`. For a shell command
    /// write `["sh", "-c", "..."]`. Exit code 0 means healthy.
    pub command: Vec<String>,
    /// Time between checks, e.g. `30s` (Docker's default 30s when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0|(([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|ms|s|m|h))+)$"))]
    pub interval: Option<String>,
    /// How long one check may run before it counts as failed, e.g. `5s` (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0|(([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|ms|s|m|h))+)$"))]
    pub timeout: Option<String>,
    /// Consecutive failures before the container is `unhealthy` (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Grace period after start during which failures do not count, e.g. `10s` (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0|(([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|ms|s|m|h))+)$"))]
    pub start_period: Option<String>,
}

/// Limits on what the container may use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct Resources {
    /// CPU limit in CPUs: `0.5`, `2`, or millicpus `500m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Quantity>,
    /// Memory limit: `512Mi`, `1Gi` (powers of 1024), `1G` (powers of 1000) or bytes. At
    /// least 6Mi (Docker's minimum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Maximum number of processes in the container (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
}

/// The container's network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(feature = "graphql", graphql(rename_items = "lowercase"))]
pub enum NetworkMode {
    /// Docker's default bridge network, plus any `networks` listed.
    Bridge,
    /// The host's network stack. Admin-only.
    Host,
    /// No networking apart from loopback.
    None,
}

/// The names Docker reads as a network mode, not a network, when they come first in a
/// container's networks: [`is_network_mode_name`] refuses them in `spec.networks`.
pub const RESERVED_NETWORK_NAMES: [&str; 4] = ["host", "none", "bridge", "default"];

/// Whether `name` means a network *mode* to Docker rather than a network to join: one of
/// [`RESERVED_NETWORK_NAMES`] (in any case) or a `container:<id>` / `service:<name>` form (any
/// name with a `:`). Such a name in `spec.networks` would become the container's network mode
/// (host networking for `host`) without the `networkMode` rules, so validation refuses it and
/// the driver never derives a network mode from it.
pub fn is_network_mode_name(name: &str) -> bool {
    RESERVED_NETWORK_NAMES.iter().any(|r| name.eq_ignore_ascii_case(r)) || name.contains(':')
}

/// The container's process-ID namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(feature = "graphql", graphql(rename_items = "lowercase"))]
pub enum PidMode {
    /// A private PID namespace (Docker's default).
    Private,
    /// The host's PID namespace: the container sees and can signal every host process.
    /// Admin-only.
    Host,
}

/// A host device made available in the container. Admin-only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct Device {
    /// The device on the host, e.g. `/dev/fuse`.
    pub host_path: String,
    /// Where it appears in the container; the same as `hostPath` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,
    /// cgroup permissions, some of `r`, `w`, `m` (default `rwm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
}

fn container_kind() -> Kind {
    Kind::Container
}

fn is_container_kind(k: &Kind) -> bool {
    *k == Kind::Container
}

/// A reference to another berth resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ObjectReference {
    /// The kind referred to; `Container` when omitted.
    #[serde(default = "container_kind", skip_serializing_if = "is_container_kind")]
    pub kind: Kind,
    /// The referred resource's name.
    pub name: String,
    /// The referred resource's namespace; the referring resource's own when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl ObjectReference {
    /// The namespace this reference points into, given the referring resource's namespace.
    pub fn namespace_or<'a>(&'a self, own: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(own)
    }
}

/// What the user asks of a container: the `spec` of a `Container` resource.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ContainerSpec {
    /// The image reference, `name[:tag][@sha256:digest]`, e.g. `nginx:1.27` or
    /// `registry.example.com:5000/team/app@sha256:...`. `latest` when neither tag nor digest
    /// is given.
    pub image: String,
    /// When to pull the image: `Always`, `IfNotPresent` (the default) or `Never`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub image_pull_policy: PullPolicy,
    /// Replaces the image's `ENTRYPOINT` when given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the image's `CMD` when given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Ports the container listens on, and where they are published on the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// Volumes, host paths and tmpfs mounted into the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Docker networks to attach the container to, by name. Docker's network modes (`host`,
    /// `none`, `bridge`, `default`, `container:<id>`, `service:<name>`) are not network names
    /// here: set them with `networkMode`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// `bridge` (Docker's default), `host` (admin-only) or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<NetworkMode>,
    /// What Docker does when the process exits; `{policy: Always}` when omitted.
    #[serde(default, skip_serializing_if = "is_default")]
    pub restart_policy: RestartPolicy,
    /// A command Docker runs to decide whether the container is healthy. The container is
    /// `Ready` only once healthy when a check is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// CPU, memory and process limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The user (and group) the process runs as: `1000`, `1000:1000`, `nobody`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The working directory of the process (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The container's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Docker labels set on the container (besides the `dev.berth.*` labels berth adds, which
    /// may not be set here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The signal that asks the process to stop, e.g. `SIGTERM` (the image's default when
    /// omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds to wait after the stop signal before killing the process (Docker's default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period_seconds: Option<u32>,
    /// Run a tiny init as PID 1 that forwards signals and reaps zombies (default `false`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub init: bool,
    /// `Running` (the default) or `Stopped`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub desired_state: DesiredState,
    /// Resources that must be `Ready` before this container is started (kind defaults to
    /// `Container`, namespace to this resource's own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ObjectReference>,
    /// Give the container every capability and access to all host devices. Admin-only.
    #[serde(default, skip_serializing_if = "is_default")]
    pub privileged: bool,
    /// `private` (Docker's default) or `host` (admin-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<PidMode>,
    /// Linux capabilities to add, e.g. `NET_ADMIN`. Admin-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Linux capabilities to drop, e.g. `NET_RAW`, or `ALL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Host devices to make available. Admin-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
}

/// The spec fields that can give a container root on the host, by their path under `spec`.
/// Only admins may set them; see [`ContainerSpec::admin_only_fields`].
pub const ADMIN_ONLY_FIELDS: [&str; 6] = [
    "spec.privileged",
    "spec.networkMode: host",
    "spec.pidMode: host",
    "spec.capAdd",
    "spec.devices",
    "spec.mounts[*] with type: bind",
];

impl ContainerSpec {
    /// The admin-only fields this spec actually uses, by path (`spec.privileged`,
    /// `spec.networkMode`, `spec.pidMode`, `spec.capAdd`, `spec.devices`, `spec.mounts[2]` for a
    /// bind mount). Empty when a non-admin may write this spec. The API refuses a write from a
    /// non-admin when this is not empty, on every write path.
    pub fn admin_only_fields(&self) -> Vec<FieldPath> {
        let spec = FieldPath::root().field("spec");
        let mut out = Vec::new();
        if self.privileged {
            out.push(spec.field("privileged"));
        }
        if self.network_mode == Some(NetworkMode::Host) {
            out.push(spec.field("networkMode"));
        }
        if self.pid_mode == Some(PidMode::Host) {
            out.push(spec.field("pidMode"));
        }
        if !self.cap_add.is_empty() {
            out.push(spec.field("capAdd"));
        }
        if !self.devices.is_empty() {
            out.push(spec.field("devices"));
        }
        for (i, m) in self.mounts.iter().enumerate() {
            if m.type_ == MountType::Bind {
                out.push(spec.field("mounts").index(i));
            }
        }
        out
    }

    /// Whether only an admin may write this spec.
    pub fn requires_admin(&self) -> bool {
        !self.admin_only_fields().is_empty()
    }
}

/// The Docker container state as last observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(feature = "graphql", graphql(rename_items = "PascalCase"))]
pub enum ContainerState {
    /// No Docker container exists for this resource (yet, or any more).
    Missing,
    /// Created but never started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Docker is restarting it under its restart policy.
    Restarting,
    /// Being removed.
    Removing,
    /// The process exited.
    Exited,
    /// Docker could not fully remove or stop it.
    Dead,
}

/// The result of the container's health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(feature = "graphql", graphql(rename_items = "PascalCase"))]
pub enum HealthStatus {
    /// Within the start period, or no check has finished yet.
    Starting,
    /// The last checks passed.
    Healthy,
    /// `retries` checks in a row failed.
    Unhealthy,
}

/// A port Docker actually published.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct BoundPort {
    /// The port inside the container.
    pub container_port: u16,
    /// `tcp` or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
    /// The host address it is bound on.
    #[serde(rename = "hostIP")]
    #[cfg_attr(feature = "graphql", graphql(name = "hostIP"))]
    pub host_ip: String,
    /// The host port it is bound on.
    pub host_port: u16,
}

/// What the controller observed of a container: the `status` of a `Container` resource.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ContainerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
    /// `Ready`, `Progressing` and `Degraded`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Docker container id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The Docker container state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
    /// The health-check result, when the container has a check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// How many times the container was restarted (by Docker or by berth).
    #[serde(default)]
    pub restart_count: u32,
    /// When the process last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the process last exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The exit code of the last run, once it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The digest of the image the container runs (`sha256:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The ports Docker published, with the host addresses and ports it bound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<BoundPort>,
    /// The error of the last failed reconcile, with its causes (for example `pull image
    /// registry.local/app:1 failed: registry refused access ...`); cleared by the next pass
    /// that succeeds. The `Degraded` condition carries its reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When berth tries again after that failure (exponential backoff, 100 ms doubling to
    /// 5 minutes); cleared with `lastError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_time: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_spec_needs_only_an_image_and_gets_the_documented_defaults() {
        let spec: ContainerSpec = serde_json::from_str(r#"{"image":"nginx"}"#).unwrap();
        assert_eq!(spec.image_pull_policy, PullPolicy::IfNotPresent);
        assert_eq!(spec.desired_state, DesiredState::Running);
        assert_eq!(spec.restart_policy.policy, RestartPolicyKind::Always);
        assert!(!spec.requires_admin());
        assert_eq!(serde_json::to_string(&spec).unwrap(), r#"{"image":"nginx"}"#);
    }

    #[test]
    fn ports_default_to_tcp_and_use_the_kubernetes_field_names() {
        let spec: ContainerSpec = serde_json::from_str(
            r#"{"image":"nginx","ports":[{"containerPort":80,"hostPort":8080,"hostIP":"127.0.0.1"}]}"#,
        )
        .unwrap();
        assert_eq!(spec.ports[0].protocol, Protocol::Tcp);
        assert_eq!(spec.ports[0].host_ip, Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn admin_only_fields_lists_every_host_root_field_in_use() {
        let spec = ContainerSpec {
            image: "busybox".into(),
            privileged: true,
            network_mode: Some(NetworkMode::Host),
            pid_mode: Some(PidMode::Host),
            cap_add: vec!["NET_ADMIN".into()],
            devices: vec![Device {
                host_path: "/dev/fuse".into(),
                container_path: None,
                permissions: None,
            }],
            mounts: vec![
                Mount {
                    type_: MountType::Volume,
                    source: Some("data".into()),
                    target: "/data".into(),
                    read_only: false,
                },
                Mount {
                    type_: MountType::Bind,
                    source: Some("/etc".into()),
                    target: "/host-etc".into(),
                    read_only: true,
                },
            ],
            ..ContainerSpec::default()
        };
        let paths: Vec<String> = spec.admin_only_fields().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            paths,
            [
                "spec.privileged",
                "spec.networkMode",
                "spec.pidMode",
                "spec.capAdd",
                "spec.devices",
                "spec.mounts[1]"
            ]
        );
    }

    #[test]
    fn bridge_network_and_private_pid_mode_are_not_admin_only() {
        let spec = ContainerSpec {
            image: "busybox".into(),
            network_mode: Some(NetworkMode::Bridge),
            pid_mode: Some(PidMode::Private),
            cap_drop: vec!["ALL".into()],
            ..ContainerSpec::default()
        };
        assert!(spec.admin_only_fields().is_empty());
    }

    #[test]
    fn docker_network_modes_are_not_network_names() {
        for mode in ["host", "HOST", "none", "bridge", "default", "container:abc", "service:db"] {
            assert!(is_network_mode_name(mode), "{mode}");
        }
        for name in ["backend", "hostnet", "my-bridge", "default-net"] {
            assert!(!is_network_mode_name(name), "{name}");
        }
    }

    #[test]
    fn unknown_spec_fields_are_refused() {
        let err = serde_json::from_str::<ContainerSpec>(r#"{"image":"nginx","imagePolicy":"x"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("imagePolicy"), "{err}");
    }
}
