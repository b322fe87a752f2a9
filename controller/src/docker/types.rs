//! berth-owned types the [`Driver`](super::Driver) speaks: what to create, what was observed.
//!
//! They mirror the parts of the Docker Engine API the reconciler needs and nothing more, so that
//! the in-memory fake and the bollard implementation agree on one small vocabulary.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::labels;
use berth_schemas::ResourceKey;

/// The Engine's version, as `GET /version` reports it, with the API version berth negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineVersion {
    /// The Engine release, e.g. `20.10.24`.
    pub version: String,
    /// The newest API version the Engine speaks, e.g. `1.41`.
    pub api_version: String,
    /// The oldest API version the Engine accepts.
    pub min_api_version: Option<String>,
    /// The API version berth's client uses after negotiation.
    pub negotiated_api_version: String,
    /// The Engine's operating system (`linux`).
    pub os: String,
    /// The Engine's architecture (`amd64`).
    pub arch: String,
}

/// The Engine's host and object counts, as `GET /info` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineInfo {
    /// The Engine's host name.
    pub name: String,
    /// The Engine release (`ServerVersion`).
    pub server_version: String,
    /// Every container on the host.
    pub containers: u64,
    /// Running containers.
    pub containers_running: u64,
    /// Paused containers.
    pub containers_paused: u64,
    /// Stopped (created, exited, dead) containers.
    pub containers_stopped: u64,
    /// Images (including intermediate layers, as Docker counts them).
    pub images: u64,
    /// The storage driver (`overlay2`).
    pub storage_driver: String,
    /// The host's kernel version.
    pub kernel_version: String,
    /// The host's operating system (`Debian GNU/Linux 12 (bookworm)`).
    pub operating_system: String,
    /// `linux` or `windows`.
    pub os_type: String,
    /// The host's architecture (`x86_64`).
    pub architecture: String,
    /// CPUs the Engine sees.
    pub cpus: u64,
    /// Memory the Engine sees, in bytes.
    pub memory_bytes: u64,
    /// The Engine's data directory (`/var/lib/docker`).
    pub root_dir: String,
}

/// Disk use of one container (its writable layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    /// The container id.
    pub id: String,
    /// The name without Docker's leading `/`.
    pub name: String,
    /// Its labels (berth's ownership labels among them when it is berth's).
    pub labels: HashMap<String, String>,
    /// Its lifecycle state.
    pub state: ContainerState,
    /// Bytes in its writable layer (`SizeRw`).
    pub size_rw: u64,
}

/// Disk use of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUsage {
    /// The image id (`sha256:...`).
    pub id: String,
    /// Its tags.
    pub repo_tags: Vec<String>,
    /// Its size in bytes, layers shared with other images included.
    pub size: u64,
    /// Bytes shared with other images, when the Engine computed it.
    pub shared_size: Option<u64>,
}

/// Disk use of one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeUsage {
    /// The volume name.
    pub name: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Its size in bytes, when the Engine reports it.
    pub size: Option<u64>,
    /// How many containers use it, when the Engine reports it.
    pub ref_count: Option<u64>,
}

/// A Docker volume as inspected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedVolume {
    /// The volume name.
    pub name: String,
    /// Its driver (`local`).
    pub driver: String,
    /// Its labels (berth's ownership labels on the volumes berth made).
    pub labels: HashMap<String, String>,
    /// The driver options it was created with (`type=none,o=bind,device=/etc` makes a local
    /// volume a host path).
    pub options: HashMap<String, String>,
}

/// The build cache's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildCacheUsage {
    /// Cache records.
    pub count: u64,
    /// Their size in bytes.
    pub size: u64,
    /// Bytes a prune would free.
    pub reclaimable: u64,
}

/// What occupies the Engine's disk (`docker system df`), object by object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Every image.
    pub images: Vec<ImageUsage>,
    /// Every container, running or not.
    pub containers: Vec<ContainerUsage>,
    /// Every volume.
    pub volumes: Vec<VolumeUsage>,
    /// The build cache, when the Engine's API version reports it (`None` otherwise).
    pub build_cache: Option<BuildCacheUsage>,
}

/// A Docker container's lifecycle state (`State.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Its process runs.
    Running,
    /// Frozen by `docker pause`.
    Paused,
    /// Docker is restarting it under its restart policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Its process exited (or it was stopped).
    Exited,
    /// Docker failed to stop or remove it.
    Dead,
    /// A state this driver does not know.
    Unknown,
}

impl ContainerState {
    /// Parses Docker's spelling (`running`, `exited`, ...); anything else is `Unknown`.
    pub fn from_docker(s: &str) -> Self {
        match s {
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "removing" => Self::Removing,
            "exited" => Self::Exited,
            "dead" => Self::Dead,
            _ => Self::Unknown,
        }
    }

    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
            Self::Unknown => "unknown",
        }
    }

    /// Whether the container's process is alive (running, paused or restarting).
    pub fn is_up(self) -> bool {
        matches!(self, Self::Running | Self::Paused | Self::Restarting)
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of a container's health check; absent when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// In the start period, or no check finished yet.
    Starting,
    /// The last check passed.
    Healthy,
    /// `retries` checks in a row failed.
    Unhealthy,
}

impl Health {
    /// Parses Docker's spelling; `none` and unknown values give `None`.
    pub fn from_docker(s: &str) -> Option<Self> {
        match s {
            "starting" => Some(Self::Starting),
            "healthy" => Some(Self::Healthy),
            "unhealthy" => Some(Self::Unhealthy),
            _ => None,
        }
    }
}

/// A transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }

    /// Parses Docker's spelling; `None` for anything else.
    pub fn from_docker(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Self::Tcp),
            "udp" => Some(Self::Udp),
            "sctp" => Some(Self::Sctp),
            _ => None,
        }
    }
}

/// A port Docker actually published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BoundPort {
    /// The port inside the container.
    pub container_port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// The host address it is bound on (`0.0.0.0`, `127.0.0.1`, `::`).
    pub host_ip: String,
    /// The host port.
    pub host_port: u16,
}

/// A container as the Engine reports it (list + inspect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    /// The full container id.
    pub id: String,
    /// The name without Docker's leading `/`.
    pub name: String,
    /// All its labels (berth's ownership labels among them when it is berth's).
    pub labels: HashMap<String, String>,
    /// The image reference it was created from, as given (`Config.Image`).
    pub image: String,
    /// The id of the image it runs (`sha256:...`).
    pub image_id: String,
    /// Its lifecycle state.
    pub state: ContainerState,
    /// Its health, when it has a health check.
    pub health: Option<Health>,
    /// The last exit code (0 while it has never exited).
    pub exit_code: Option<i64>,
    /// Whether the kernel's OOM killer ended its last run.
    pub oom_killed: bool,
    /// The error Docker recorded for its last start, if any.
    pub error: Option<String>,
    /// When it was created.
    pub created_at: Option<DateTime<Utc>>,
    /// When its process last started; `None` if never.
    pub started_at: Option<DateTime<Utc>>,
    /// When its process last finished; `None` if never.
    pub finished_at: Option<DateTime<Utc>>,
    /// How many times Docker restarted it under its restart policy.
    pub restart_count: u32,
    /// The ports Docker published (empty unless it runs).
    pub ports: Vec<BoundPort>,
}

impl ObservedContainer {
    /// Whether it carries berth's `dev.berth.managed-by=berth` label.
    pub fn is_managed(&self) -> bool {
        labels::is_managed(&self.labels)
    }

    /// The value of one label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// Which containers to list: all of them (running or not) whose labels match every entry.
///
/// `Some(value)` requires `key=value`, `None` only that the key is present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFilter {
    /// Required labels.
    pub labels: BTreeMap<String, Option<String>>,
}

impl ContainerFilter {
    /// Every container, berth's or not.
    pub fn all() -> Self {
        Self::default()
    }

    /// Containers carrying `dev.berth.managed-by=berth`.
    pub fn managed() -> Self {
        Self::default().with_label(labels::MANAGED_BY, labels::MANAGED_BY_VALUE)
    }

    /// The containers the controller of store `instance` made for the resource `key`
    /// ([`labels::owned_by`]); another berth instance's containers on the same Engine do not
    /// pass, even with the same namespace and name.
    pub fn owned_by(instance: &str, key: &ResourceKey) -> Self {
        labels::owned_by(instance, key)
            .into_iter()
            .fold(Self::default(), |f, (k, v)| f.with_label(k, v))
    }

    /// Also require `key=value`.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), Some(value.into()));
        self
    }

    /// Also require that `key` is present, whatever its value.
    pub fn with_label_key(mut self, key: impl Into<String>) -> Self {
        self.labels.insert(key.into(), None);
        self
    }

    /// Whether a container with these labels passes the filter.
    pub fn matches(&self, labels: &HashMap<String, String>) -> bool {
        self.labels.iter().all(|(k, want)| match (labels.get(k), want) {
            (Some(v), Some(w)) => v == w,
            (Some(_), None) => true,
            (None, _) => false,
        })
    }

    /// The filter in Docker's `label=` syntax, one expression per entry.
    pub fn docker_expressions(&self) -> Vec<String> {
        self.labels
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            })
            .collect()
    }
}

/// A port to publish on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortPublish {
    /// The port inside the container.
    pub container_port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// The host address to bind; all addresses when `None`.
    pub host_ip: Option<String>,
    /// The host port; an ephemeral one when `None`.
    pub host_port: Option<u16>,
}

/// What a mount attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MountKind {
    /// A named volume (`source` is its name), or an anonymous one without `source`.
    Volume,
    /// A host path (`source`).
    Bind,
    /// A memory-backed filesystem.
    Tmpfs,
}

/// A filesystem mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountSpec {
    /// What it attaches.
    pub kind: MountKind,
    /// Volume name or host path.
    pub source: Option<String>,
    /// The path inside the container.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
}

/// What Docker does when the container's process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RestartPolicy {
    /// Never restart (`no`).
    #[default]
    No,
    /// Always restart (`always`).
    Always,
    /// Restart unless stopped by hand (`unless-stopped`).
    UnlessStopped,
    /// Restart after a non-zero exit, at most `max_retries` times when given (`on-failure`).
    OnFailure {
        /// The cap on restarts; unlimited when `None`.
        max_retries: Option<u32>,
    },
}

/// A health check Docker runs inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Healthcheck {
    /// The command in exec form (the driver adds Docker's `CMD` marker).
    pub command: Vec<String>,
    /// Time between checks; Docker's default (30 s) when `None`.
    pub interval: Option<Duration>,
    /// How long one check may take; Docker's default (30 s) when `None`.
    pub timeout: Option<Duration>,
    /// Failures in a row before `unhealthy`; Docker's default (3) when `None`.
    pub retries: Option<u32>,
    /// Grace period after start; Docker's default (0) when `None`.
    pub start_period: Option<Duration>,
}

/// Resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ResourceLimits {
    /// CPU limit in billionths of a CPU (`--cpus 0.5` is 500 000 000).
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<i64>,
    /// Maximum number of processes.
    pub pids_limit: Option<i64>,
}

/// A host device made available in the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceMapping {
    /// The device on the host.
    pub host_path: String,
    /// Where it appears in the container (same as `host_path` when `None`).
    pub container_path: Option<String>,
    /// cgroup permissions (`rwm` when `None`).
    pub permissions: Option<String>,
}

/// Everything needed to create a container. Fields left at their default leave Docker's (or the
/// image's) default in place.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerCreate {
    /// The container name (deterministic; see [`labels::container_name`]).
    pub name: String,
    /// The image reference to run (it must be present locally).
    pub image: String,
    /// Overrides the image's entrypoint when `Some` (`Some(vec![])` clears it).
    pub entrypoint: Option<Vec<String>>,
    /// Overrides the image's command when `Some`.
    pub cmd: Option<Vec<String>>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Labels (berth's ownership labels included by the caller).
    pub labels: HashMap<String, String>,
    /// Ports to publish.
    pub ports: Vec<PortPublish>,
    /// Mounts.
    pub mounts: Vec<MountSpec>,
    /// The restart policy.
    pub restart_policy: RestartPolicy,
    /// The health check; the image's when `None`.
    pub healthcheck: Option<Healthcheck>,
    /// Limits.
    pub resources: ResourceLimits,
    /// `user[:group]` to run as.
    pub user: Option<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// Hostname.
    pub hostname: Option<String>,
    /// Signal that stops it (`SIGTERM` by default).
    pub stop_signal: Option<String>,
    /// Grace period between the stop signal and SIGKILL (Docker's 10 s when `None`).
    pub stop_timeout: Option<Duration>,
    /// Run Docker's init as PID 1 (reaps zombies, forwards signals).
    pub init: bool,
    /// `bridge`, `host`, `none` or a network name; Docker's default when `None`.
    pub network_mode: Option<String>,
    /// User-defined networks to attach (the first at create time, the others right after).
    pub networks: Vec<String>,
    /// Privileged mode.
    pub privileged: bool,
    /// `host` to share the host's PID namespace.
    pub pid_mode: Option<String>,
    /// Capabilities to add.
    pub cap_add: Vec<String>,
    /// Capabilities to drop.
    pub cap_drop: Vec<String>,
    /// Host devices.
    pub devices: Vec<DeviceMapping>,
}

/// An image present in the Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedImage {
    /// The image id (`sha256:...`).
    pub id: String,
    /// Its tags (`nginx:1.27`).
    pub repo_tags: Vec<String>,
    /// Its repository digests (`nginx@sha256:...`), known once pulled from or pushed to a
    /// registry.
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    pub size: i64,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// When it was built.
    pub created_at: Option<DateTime<Utc>>,
}

impl ObservedImage {
    /// The repository digest (`sha256:...`) recorded for `repository` (`nginx`,
    /// `127.0.0.1:5000/team/app`), if any.
    pub fn digest_for(&self, repository: &str) -> Option<&str> {
        self.repo_digests.iter().find_map(|d| {
            let (repo, digest) = d.split_once('@')?;
            (repo == repository).then_some(digest)
        })
    }
}

/// Credentials for one registry, passed with a single pull (never stored in the Engine).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
    /// The registry as written in `config.json` (`127.0.0.1:5000`,
    /// `https://index.docker.io/v1/`).
    pub server_address: String,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("server_address", &self.server_address)
            .finish()
    }
}

/// One message of a pull's progress stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// The layer it is about, when it is about one.
    pub layer: Option<String>,
    /// Docker's status line (`Downloading`, `Pull complete`, `Digest: sha256:...`).
    pub status: String,
    /// Bytes done, when reported.
    pub current: Option<u64>,
    /// Bytes in all, when reported.
    pub total: Option<u64>,
}

impl PullProgress {
    /// The manifest digest when this is the `Digest: sha256:...` line.
    pub fn digest(&self) -> Option<&str> {
        self.status.strip_prefix("Digest: ").map(str::trim)
    }
}

/// The kind of object a Docker event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A container.
    Container,
    /// An image.
    Image,
    /// Anything else (not delivered by [`Driver::events`](super::Driver::events)).
    Other(String),
}

/// A Docker Engine event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    /// What it is about.
    pub kind: EventKind,
    /// Docker's action: `create`, `start`, `die`, `stop`, `kill`, `destroy`, `oom`,
    /// `health_status: healthy`, `pull`, `delete`, `untag`, ...
    pub action: String,
    /// The container id, or the image reference or id.
    pub id: String,
    /// Attributes: for containers their labels plus `name`, `image` (and `exitCode` on `die`).
    pub attributes: HashMap<String, String>,
    /// When it happened, in nanoseconds since the Unix epoch; pass it back as `since` to
    /// resubscribe.
    pub time_nano: i64,
}

impl EngineEvent {
    /// The action without its detail (`health_status: healthy` gives `health_status`).
    pub fn base_action(&self) -> &str {
        self.action.split(':').next().unwrap_or(&self.action).trim()
    }

    /// For a container event, whether its labels mark it as berth's.
    pub fn is_managed(&self) -> bool {
        labels::is_managed(&self.attributes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_filter_requires_every_label() {
        let filter = ContainerFilter::managed().with_label_key("dev.berth.uid");
        let mut labels =
            HashMap::from([(labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned())]);
        assert!(!filter.matches(&labels));
        labels.insert("dev.berth.uid".into(), "u1".into());
        assert!(filter.matches(&labels));
        labels.insert(labels::MANAGED_BY.into(), "someone-else".into());
        assert!(!filter.matches(&labels));
        assert_eq!(
            filter.docker_expressions(),
            vec!["dev.berth.managed-by=berth".to_owned(), "dev.berth.uid".to_owned()]
        );
    }

    #[test]
    fn image_digest_is_found_per_repository() {
        let image = ObservedImage {
            id: "sha256:aa".into(),
            repo_tags: vec![],
            repo_digests: vec![
                "127.0.0.1:5000/app@sha256:11".into(),
                "127.0.0.1:6000/app@sha256:22".into(),
            ],
            size: 0,
            labels: HashMap::new(),
            created_at: None,
        };
        assert_eq!(image.digest_for("127.0.0.1:6000/app"), Some("sha256:22"));
        assert_eq!(image.digest_for("app"), None);
    }

    #[test]
    fn credentials_debug_output_hides_the_password() {
        let c = RegistryCredentials {
            username: "u".into(),
            password: "hunter2".into(),
            server_address: "r".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn health_status_events_have_a_base_action() {
        let e = EngineEvent {
            kind: EventKind::Container,
            action: "health_status: healthy".into(),
            id: "x".into(),
            attributes: HashMap::new(),
            time_nano: 0,
        };
        assert_eq!(e.base_action(), "health_status");
    }
}
