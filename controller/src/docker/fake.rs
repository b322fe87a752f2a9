//! [`FakeDriver`]: an in-memory Docker Engine for unit tests of the reconcilers.
//!
//! It keeps containers and images with Docker's state transitions (create → created, start →
//! running, stop/kill → exited, remove → gone), a pretend registry with optional credentials,
//! and an event stream. It counts every call so that a test can assert, for example, that a
//! steady-state resync made **zero mutating calls** ([`FakeDriver::mutating_calls`]).
//!
//! Out-of-band changes ("someone ran `docker stop`") go through the `simulate_*` methods, which
//! emit events like the Engine does but are not counted as calls.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use berth_schemas::ImageReference;
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use tokio::sync::broadcast;

use super::error::DriverError;
use super::streams::{ExecSession, ExecSpec, LogOptions};
use super::types::{
    BoundPort, ContainerCreate, ContainerFilter, ContainerState, ContainerUsage, DiskUsage,
    EngineEvent, EngineInfo, EngineVersion, EventKind, ImageUsage, ObservedContainer,
    ObservedImage, ObservedVolume, PullProgress, RegistryCredentials,
};
use super::{Driver, EventStream, LogStream, PullStream, StatsStream};

/// The size the fake reports for the one layer of every pull.
pub const FAKE_LAYER_BYTES: u64 = 2_000_000;

/// A driver operation, for counting and failure injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// [`Driver::ping`].
    Ping,
    /// [`Driver::version`].
    Version,
    /// [`Driver::info`].
    Info,
    /// [`Driver::disk_usage`].
    DiskUsage,
    /// [`Driver::list_containers`].
    ListContainers,
    /// [`Driver::inspect_container`].
    InspectContainer,
    /// [`Driver::create_container`].
    CreateContainer,
    /// [`Driver::inspect_volume`].
    InspectVolume,
    /// [`Driver::create_volume`].
    CreateVolume,
    /// [`Driver::start_container`].
    StartContainer,
    /// [`Driver::stop_container`].
    StopContainer,
    /// [`Driver::kill_container`].
    KillContainer,
    /// [`Driver::remove_container`].
    RemoveContainer,
    /// [`Driver::inspect_image`].
    InspectImage,
    /// [`Driver::list_images`].
    ListImages,
    /// [`Driver::pull_image`].
    PullImage,
    /// [`Driver::remove_image`].
    RemoveImage,
    /// [`Driver::events`].
    Events,
}

impl Op {
    /// Whether the operation changes the Engine's state.
    pub fn is_mutating(self) -> bool {
        matches!(
            self,
            Op::CreateContainer
                | Op::CreateVolume
                | Op::StartContainer
                | Op::StopContainer
                | Op::KillContainer
                | Op::RemoveContainer
                | Op::PullImage
                | Op::RemoveImage
        )
    }
}

/// One recorded call: the operation and its target (container id or name, image reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The operation.
    pub op: Op,
    /// What it was called on (empty for ping, version, list and events).
    pub target: String,
}

#[derive(Debug, Clone)]
enum Broadcast {
    Event(EngineEvent),
    Disconnect,
}

#[derive(Debug, Clone)]
struct RemoteImage {
    digest: String,
    labels: HashMap<String, String>,
}

#[derive(Debug, Default)]
struct State {
    containers: BTreeMap<String, (ObservedContainer, ContainerCreate)>,
    images: BTreeMap<String, ObservedImage>,
    volumes: BTreeMap<String, ObservedVolume>,
    remote: HashMap<String, RemoteImage>,
    registry_auth: HashMap<String, (String, String)>,
    unreachable: bool,
    failures: HashMap<Op, Vec<(String, bool)>>,
    calls: Vec<Call>,
    next_id: u64,
    next_port: u16,
    last_nano: i64,
    log: Vec<EngineEvent>,
}

/// An in-memory Docker Engine implementing [`Driver`].
#[derive(Debug)]
pub struct FakeDriver {
    state: Mutex<State>,
    events: broadcast::Sender<Broadcast>,
}

impl Default for FakeDriver {
    fn default() -> Self {
        Self::new()
    }
}

/// The familiar form Docker lists tags in: `nginx:latest`, `127.0.0.1:5000/app:1`.
fn familiar_tag(r: &ImageReference) -> String {
    format!("{}:{}", familiar_repository(r), r.tag_or_latest())
}

fn familiar_repository(r: &ImageReference) -> String {
    match r.registry.as_deref() {
        None | Some("docker.io") | Some("index.docker.io") => {
            r.path.strip_prefix("library/").unwrap_or(&r.path).to_owned()
        }
        Some(registry) => format!("{registry}/{}", r.path),
    }
}

fn fake_hex(n: u64, salt: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{salt}:{n}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl FakeDriver {
    /// An empty Engine: no containers, no images, an empty registry.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        Self { state: Mutex::new(State { next_port: 49153, ..State::default() }), events }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not turn every later call into a panic.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ----- setup and out-of-band changes (not counted as calls) -----

    /// Adds a local image under `reference` (as if built or loaded) and returns its id.
    pub fn add_image(&self, reference: &str) -> String {
        let mut st = self.lock();
        st.next_id += 1;
        let id = format!("sha256:{}", fake_hex(st.next_id, reference));
        let tag = ImageReference::parse(reference)
            .map(|r| familiar_tag(&r))
            .unwrap_or_else(|_| reference.to_owned());
        untag_everywhere(&mut st, &tag);
        st.images.insert(
            id.clone(),
            ObservedImage {
                id: id.clone(),
                repo_tags: vec![tag],
                repo_digests: vec![],
                size: 1_000_000,
                labels: HashMap::new(),
                created_at: Some(Utc::now()),
            },
        );
        id
    }

    /// Adds a volume directly, as if someone ran `docker volume create` (with `options` such as
    /// `type=none,o=bind,device=/etc`).
    pub fn insert_volume(&self, volume: ObservedVolume) {
        self.lock().volumes.insert(volume.name.clone(), volume);
    }

    /// The volumes the fake holds.
    pub fn volumes(&self) -> Vec<ObservedVolume> {
        self.lock().volumes.values().cloned().collect()
    }

    /// Publishes `reference` in the pretend registry (pulling it then succeeds) and returns its
    /// manifest digest. Publishing again gives a new digest, as pushing a new build would.
    pub fn add_registry_image(&self, reference: &str) -> String {
        let mut st = self.lock();
        st.next_id += 1;
        let digest = format!("sha256:{}", fake_hex(st.next_id, reference));
        let key = ImageReference::parse(reference)
            .map(|r| familiar_tag(&r))
            .unwrap_or_else(|_| reference.to_owned());
        st.remote.insert(key, RemoteImage { digest: digest.clone(), labels: HashMap::new() });
        digest
    }

    /// Makes the pretend registry at `registry` (`127.0.0.1:5000`) demand these credentials.
    pub fn require_registry_auth(&self, registry: &str, username: &str, password: &str) {
        self.lock()
            .registry_auth
            .insert(registry.to_owned(), (username.to_owned(), password.to_owned()));
    }

    /// Makes every call fail with [`DriverError::EngineUnreachable`] (and ends event streams)
    /// until set back to `false`.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.lock().unreachable = unreachable;
        if unreachable {
            let _ = self.events.send(Broadcast::Disconnect);
        }
    }

    /// Makes the next call of `op` fail with [`DriverError::Injected`].
    pub fn fail_next(&self, op: Op, message: &str, transient: bool) {
        self.lock().failures.entry(op).or_default().push((message.to_owned(), transient));
    }

    /// Adds a container directly (for example a foreign one without berth's labels), as if
    /// someone ran `docker create`; returns its id.
    pub fn insert_container(&self, spec: &ContainerCreate, running: bool) -> String {
        let mut st = self.lock();
        let image_id = image_id_for(&st, &spec.image).unwrap_or_default();
        let id = new_container(&mut st, spec, image_id);
        let event = container_event(&st, &id, "create");
        self.emit(&mut st, event);
        if running {
            start(&mut st, &id);
            let event = container_event(&st, &id, "start");
            self.emit(&mut st, event);
        }
        id
    }

    /// The container's process exits by itself with `exit_code` (a crash, or `docker stop` /
    /// `docker kill` from outside). Docker's restart policy is not simulated.
    pub fn simulate_exit(&self, id_or_name: &str, exit_code: i64) -> bool {
        let mut st = self.lock();
        let Some(id) = resolve(&st, id_or_name) else { return false };
        if !st.containers.get(&id).is_some_and(|(c, _)| c.state.is_up()) {
            return false;
        }
        exit(&mut st, &id, exit_code);
        let mut die = container_event(&st, &id, "die");
        die.attributes.insert("exitCode".into(), exit_code.to_string());
        self.emit(&mut st, die);
        true
    }

    /// The container is removed from outside (`docker rm -f`).
    pub fn simulate_remove(&self, id_or_name: &str) -> bool {
        let mut st = self.lock();
        let Some(id) = resolve(&st, id_or_name) else { return false };
        if st.containers.get(&id).is_some_and(|(c, _)| c.state.is_up()) {
            exit(&mut st, &id, 137);
            let event = container_event(&st, &id, "die");
            self.emit(&mut st, event);
        }
        let event = container_event(&st, &id, "destroy");
        st.containers.remove(&id);
        self.emit(&mut st, event);
        true
    }

    /// Sets a running container's health (as the health check would).
    pub fn simulate_health(&self, id_or_name: &str, health: super::types::Health) -> bool {
        let mut st = self.lock();
        let Some(id) = resolve(&st, id_or_name) else { return false };
        let word = match health {
            super::types::Health::Starting => "starting",
            super::types::Health::Healthy => "healthy",
            super::types::Health::Unhealthy => "unhealthy",
        };
        if let Some((c, _)) = st.containers.get_mut(&id) {
            c.health = Some(health);
        }
        let event = container_event(&st, &id, &format!("health_status: {word}"));
        self.emit(&mut st, event);
        true
    }

    /// The create request a container was made from (to assert what the reconciler asked for).
    pub fn created_spec(&self, id_or_name: &str) -> Option<ContainerCreate> {
        let st = self.lock();
        let id = resolve(&st, id_or_name)?;
        st.containers.get(&id).map(|(_, spec)| spec.clone())
    }

    /// A snapshot of every container, without counting a call.
    pub fn containers(&self) -> Vec<ObservedContainer> {
        self.lock().containers.values().map(|(c, _)| c.clone()).collect()
    }

    /// A snapshot of every image, without counting a call.
    pub fn images(&self) -> Vec<ObservedImage> {
        self.lock().images.values().cloned().collect()
    }

    // ----- call accounting -----

    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// How many calls of `op` were made.
    pub fn count(&self, op: Op) -> usize {
        self.lock().calls.iter().filter(|c| c.op == op).count()
    }

    /// How many calls changed (or tried to change) the Engine: create, start, stop, kill,
    /// remove, pull, remove image.
    pub fn mutating_calls(&self) -> usize {
        self.lock().calls.iter().filter(|c| c.op.is_mutating()).count()
    }

    /// Forgets the calls recorded so far (state is kept).
    pub fn reset_calls(&self) {
        self.lock().calls.clear();
    }

    // ----- internals -----

    /// Records a call, then applies unreachability and injected failures.
    fn enter(&self, op: Op, target: &str) -> Result<MutexGuard<'_, State>, DriverError> {
        let mut st = self.lock();
        st.calls.push(Call { op, target: target.to_owned() });
        if st.unreachable {
            return Err(DriverError::EngineUnreachable {
                host: "fake://".into(),
                source: "the fake Engine is set unreachable".into(),
            });
        }
        if let Some(queue) = st.failures.get_mut(&op)
            && !queue.is_empty()
        {
            let (message, transient) = queue.remove(0);
            return Err(DriverError::Injected { message, transient });
        }
        Ok(st)
    }

    fn emit(&self, st: &mut State, mut event: EngineEvent) {
        let now = Utc::now().timestamp_nanos_opt().unwrap_or(0);
        st.last_nano = now.max(st.last_nano + 1);
        event.time_nano = st.last_nano;
        st.log.push(event.clone());
        // No receivers is fine.
        let _ = self.events.send(Broadcast::Event(event));
    }
}

fn resolve(st: &State, id_or_name: &str) -> Option<String> {
    if st.containers.contains_key(id_or_name) {
        return Some(id_or_name.to_owned());
    }
    let name = id_or_name.trim_start_matches('/');
    st.containers
        .values()
        .find(|(c, _)| c.name == name || (id_or_name.len() >= 12 && c.id.starts_with(id_or_name)))
        .map(|(c, _)| c.id.clone())
}

fn image_id_for(st: &State, reference: &str) -> Option<String> {
    if st.images.contains_key(reference) {
        return Some(reference.to_owned());
    }
    let tag = ImageReference::parse(reference).ok().map(|r| familiar_tag(&r));
    st.images
        .values()
        .find(|i| {
            tag.as_ref().is_some_and(|t| i.repo_tags.contains(t))
                || i.repo_digests.iter().any(|d| d == reference)
        })
        .map(|i| i.id.clone())
}

fn untag_everywhere(st: &mut State, tag: &str) {
    for image in st.images.values_mut() {
        image.repo_tags.retain(|t| t != tag);
    }
}

fn new_container(st: &mut State, spec: &ContainerCreate, image_id: String) -> String {
    st.next_id += 1;
    let id = fake_hex(st.next_id, &spec.name);
    let observed = ObservedContainer {
        id: id.clone(),
        name: spec.name.clone(),
        labels: spec.labels.clone(),
        image: spec.image.clone(),
        image_id,
        state: ContainerState::Created,
        health: None,
        exit_code: Some(0),
        oom_killed: false,
        error: None,
        created_at: Some(Utc::now()),
        started_at: None,
        finished_at: None,
        restart_count: 0,
        ports: vec![],
    };
    st.containers.insert(id.clone(), (observed, spec.clone()));
    id
}

fn start(st: &mut State, id: &str) {
    let mut next_port = st.next_port;
    if let Some((c, spec)) = st.containers.get_mut(id) {
        c.state = ContainerState::Running;
        c.started_at = Some(Utc::now());
        c.exit_code = Some(0);
        c.health = spec.healthcheck.as_ref().map(|_| super::types::Health::Starting);
        c.ports = spec
            .ports
            .iter()
            .map(|p| BoundPort {
                container_port: p.container_port,
                protocol: p.protocol,
                host_ip: p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".to_owned()),
                host_port: p.host_port.unwrap_or_else(|| {
                    next_port = next_port.wrapping_add(1);
                    next_port
                }),
            })
            .collect();
        c.ports.sort();
    }
    st.next_port = next_port;
}

fn exit(st: &mut State, id: &str, code: i64) {
    if let Some((c, _)) = st.containers.get_mut(id) {
        c.state = ContainerState::Exited;
        c.exit_code = Some(code);
        c.finished_at = Some(Utc::now());
        c.health = None;
        c.ports.clear();
    }
}

fn container_event(st: &State, id: &str, action: &str) -> EngineEvent {
    let (attributes, id) = match st.containers.get(id) {
        Some((c, _)) => {
            let mut a = c.labels.clone();
            a.insert("name".into(), c.name.clone());
            a.insert("image".into(), c.image.clone());
            (a, c.id.clone())
        }
        None => (HashMap::new(), id.to_owned()),
    };
    EngineEvent {
        kind: EventKind::Container,
        action: action.to_owned(),
        id,
        attributes,
        time_nano: 0,
    }
}

fn image_event(id: &str, action: &str) -> EngineEvent {
    EngineEvent {
        kind: EventKind::Image,
        action: action.to_owned(),
        id: id.to_owned(),
        attributes: HashMap::from([("name".to_owned(), id.to_owned())]),
        time_nano: 0,
    }
}

fn not_found(what: &str) -> DriverError {
    DriverError::NotFound { what: what.to_owned() }
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

#[async_trait]
impl Driver for FakeDriver {
    async fn ping(&self) -> Result<(), DriverError> {
        self.enter(Op::Ping, "").map(drop)
    }

    async fn version(&self) -> Result<EngineVersion, DriverError> {
        drop(self.enter(Op::Version, "")?);
        Ok(EngineVersion {
            version: "20.10.24-fake".into(),
            api_version: "1.41".into(),
            min_api_version: Some("1.12".into()),
            negotiated_api_version: "1.41".into(),
            os: "linux".into(),
            arch: "amd64".into(),
        })
    }

    async fn info(&self) -> Result<EngineInfo, DriverError> {
        let st = self.enter(Op::Info, "")?;
        let count = |f: fn(ContainerState) -> bool| {
            st.containers.values().filter(|(c, _)| f(c.state)).count() as u64
        };
        Ok(EngineInfo {
            name: "fake".into(),
            server_version: "20.10.24-fake".into(),
            containers: st.containers.len() as u64,
            containers_running: count(|s| s == ContainerState::Running),
            containers_paused: count(|s| s == ContainerState::Paused),
            containers_stopped: count(|s| {
                !matches!(s, ContainerState::Running | ContainerState::Paused)
            }),
            images: st.images.len() as u64,
            storage_driver: "fake".into(),
            kernel_version: "6.0.0-fake".into(),
            operating_system: "Fake OS".into(),
            os_type: "linux".into(),
            architecture: "x86_64".into(),
            cpus: 2,
            memory_bytes: 1 << 30,
            root_dir: "/var/lib/docker".into(),
        })
    }

    async fn disk_usage(&self) -> Result<DiskUsage, DriverError> {
        let st = self.enter(Op::DiskUsage, "")?;
        Ok(DiskUsage {
            images: st
                .images
                .values()
                .map(|i| ImageUsage {
                    id: i.id.clone(),
                    repo_tags: i.repo_tags.clone(),
                    size: u64::try_from(i.size).unwrap_or(0),
                    shared_size: Some(0),
                })
                .collect(),
            containers: st
                .containers
                .values()
                .map(|(c, _)| ContainerUsage {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    labels: c.labels.clone(),
                    state: c.state,
                    size_rw: 0,
                })
                .collect(),
            volumes: Vec::new(),
            build_cache: None,
        })
    }

    async fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> Result<Vec<ObservedContainer>, DriverError> {
        let st = self.enter(Op::ListContainers, "")?;
        let mut out: Vec<ObservedContainer> = st
            .containers
            .values()
            .map(|(c, _)| c)
            .filter(|c| filter.matches(&c.labels))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn inspect_container(
        &self,
        id_or_name: &str,
    ) -> Result<Option<ObservedContainer>, DriverError> {
        let st = self.enter(Op::InspectContainer, id_or_name)?;
        Ok(resolve(&st, id_or_name).and_then(|id| st.containers.get(&id)).map(|(c, _)| c.clone()))
    }

    async fn create_container(&self, spec: &ContainerCreate) -> Result<String, DriverError> {
        let mut st = self.enter(Op::CreateContainer, &spec.name)?;
        if let Some(n) =
            spec.networks.iter().find(|n| berth_schemas::container::is_network_mode_name(n))
        {
            return Err(DriverError::Rejected {
                message: format!("{n:?} is a Docker network mode, not a network"),
            });
        }
        if st.containers.values().any(|(c, _)| c.name == spec.name) {
            return Err(DriverError::NameInUse { name: spec.name.clone() });
        }
        let Some(image_id) = image_id_for(&st, &spec.image) else {
            return Err(not_found(&format!("image {}", spec.image)));
        };
        let id = new_container(&mut st, spec, image_id);
        let event = container_event(&st, &id, "create");
        self.emit(&mut st, event);
        Ok(id)
    }

    async fn inspect_volume(&self, name: &str) -> Result<Option<ObservedVolume>, DriverError> {
        let st = self.enter(Op::InspectVolume, name)?;
        Ok(st.volumes.get(name).cloned())
    }

    async fn create_volume(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<ObservedVolume, DriverError> {
        let mut st = self.enter(Op::CreateVolume, name)?;
        let volume = st.volumes.entry(name.to_owned()).or_insert_with(|| ObservedVolume {
            name: name.to_owned(),
            driver: "local".into(),
            labels: labels.clone(),
            options: HashMap::new(),
        });
        Ok(volume.clone())
    }

    async fn start_container(&self, id: &str) -> Result<(), DriverError> {
        let mut st = self.enter(Op::StartContainer, id)?;
        let cid = resolve(&st, id).ok_or_else(|| not_found(&format!("container {id}")))?;
        if st.containers.get(&cid).is_some_and(|(c, _)| c.state == ContainerState::Running) {
            return Ok(());
        }
        start(&mut st, &cid);
        let event = container_event(&st, &cid, "start");
        self.emit(&mut st, event);
        Ok(())
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<(), DriverError> {
        let mut st = self.enter(Op::StopContainer, id)?;
        let cid = resolve(&st, id).ok_or_else(|| not_found(&format!("container {id}")))?;
        if !st.containers.get(&cid).is_some_and(|(c, _)| c.state.is_up()) {
            return Ok(());
        }
        exit(&mut st, &cid, 143);
        for action in ["kill", "die", "stop"] {
            let event = container_event(&st, &cid, action);
            self.emit(&mut st, event);
        }
        Ok(())
    }

    async fn kill_container(&self, id: &str, _signal: Option<&str>) -> Result<(), DriverError> {
        let mut st = self.enter(Op::KillContainer, id)?;
        let cid = resolve(&st, id).ok_or_else(|| not_found(&format!("container {id}")))?;
        if !st.containers.get(&cid).is_some_and(|(c, _)| c.state.is_up()) {
            return Err(DriverError::Conflict {
                message: format!("container {id} is not running"),
            });
        }
        exit(&mut st, &cid, 137);
        for action in ["kill", "die"] {
            let event = container_event(&st, &cid, action);
            self.emit(&mut st, event);
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), DriverError> {
        let mut st = self.enter(Op::RemoveContainer, id)?;
        let Some(cid) = resolve(&st, id) else { return Ok(()) };
        if st.containers.get(&cid).is_some_and(|(c, _)| c.state.is_up()) {
            exit(&mut st, &cid, 137);
            for action in ["kill", "die"] {
                let event = container_event(&st, &cid, action);
                self.emit(&mut st, event);
            }
        }
        let event = container_event(&st, &cid, "destroy");
        st.containers.remove(&cid);
        self.emit(&mut st, event);
        Ok(())
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ObservedImage>, DriverError> {
        let st = self.enter(Op::InspectImage, reference)?;
        Ok(image_id_for(&st, reference).and_then(|id| st.images.get(&id).cloned()))
    }

    async fn list_images(&self) -> Result<Vec<ObservedImage>, DriverError> {
        let st = self.enter(Op::ListImages, "")?;
        Ok(st.images.values().cloned().collect())
    }

    fn pull_image(&self, reference: &str, credentials: Option<RegistryCredentials>) -> PullStream {
        let result = (|| {
            let mut st = self.enter(Op::PullImage, reference)?;
            let parsed = ImageReference::parse(reference).map_err(|source| {
                DriverError::InvalidReference { reference: reference.to_owned(), source }
            })?;
            let registry = parsed.registry_or_default().to_owned();
            if let Some((user, pass)) = st.registry_auth.get(&registry) {
                let ok = credentials
                    .as_ref()
                    .is_some_and(|c| &c.username == user && &c.password == pass);
                if !ok {
                    let message = if credentials.is_some() {
                        "unauthorized: authentication required"
                    } else {
                        "no basic auth credentials"
                    };
                    return Err(DriverError::RegistryAuth {
                        image: reference.to_owned(),
                        message: message.to_owned(),
                    });
                }
            }
            let tag = familiar_tag(&parsed);
            let repository = familiar_repository(&parsed);
            let remote = match &parsed.digest {
                Some(d) => st.remote.values().find(|r| &r.digest == d).cloned(),
                None => st.remote.get(&tag).cloned(),
            };
            let Some(remote) = remote else {
                return Err(DriverError::ImageNotFound {
                    image: reference.to_owned(),
                    message: format!("manifest for {reference} not found: manifest unknown"),
                });
            };
            let id = format!("sha256:{}", remote.digest.trim_start_matches("sha256:"));
            let repo_digest = format!("{repository}@{}", remote.digest);
            let up_to_date = st.images.get(&id).is_some_and(|i| i.repo_tags.contains(&tag));
            if parsed.digest.is_none() {
                untag_everywhere(&mut st, &tag);
            }
            let image = st.images.entry(id.clone()).or_insert_with(|| ObservedImage {
                id: id.clone(),
                repo_tags: vec![],
                repo_digests: vec![],
                size: 1_000_000,
                labels: remote.labels.clone(),
                created_at: Some(now()),
            });
            if parsed.digest.is_none() && !image.repo_tags.contains(&tag) {
                image.repo_tags.push(tag.clone());
            }
            if !image.repo_digests.contains(&repo_digest) {
                image.repo_digests.push(repo_digest);
            }
            self.emit(&mut st, image_event(&tag, "pull"));
            let status = if up_to_date {
                format!("Status: Image is up to date for {tag}")
            } else {
                format!("Status: Downloaded newer image for {tag}")
            };
            let progress =
                |status: String| PullProgress { layer: None, status, current: None, total: None };
            let layer = remote.digest[7..19.min(remote.digest.len())].to_owned();
            Ok(vec![
                progress(format!("Pulling from {}", parsed.path)),
                // One layer of a fixed size, half downloaded, then complete.
                PullProgress {
                    layer: Some(layer.clone()),
                    status: "Downloading".into(),
                    current: Some(FAKE_LAYER_BYTES / 2),
                    total: Some(FAKE_LAYER_BYTES),
                },
                PullProgress {
                    layer: Some(layer),
                    status: "Pull complete".into(),
                    current: None,
                    total: None,
                },
                progress(format!("Digest: {}", remote.digest)),
                progress(status),
            ])
        })();
        match result {
            Ok(items) => stream::iter(items.into_iter().map(Ok)).boxed(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn remove_image(&self, reference: &str, force: bool) -> Result<(), DriverError> {
        let mut st = self.enter(Op::RemoveImage, reference)?;
        let Some(id) = image_id_for(&st, reference) else { return Ok(()) };
        let in_use: HashSet<&str> =
            st.containers.values().map(|(c, _)| c.image_id.as_str()).collect();
        let by_id = reference == id;
        let tags = st.images.get(&id).map(|i| i.repo_tags.len()).unwrap_or(0);
        let removes_image = by_id || tags <= 1;
        if removes_image && in_use.contains(id.as_str()) && !force {
            return Err(DriverError::Conflict {
                message: format!("image {reference} is being used by a container"),
            });
        }
        if removes_image {
            st.images.remove(&id);
            self.emit(&mut st, image_event(&id, "delete"));
        } else {
            let tag = ImageReference::parse(reference)
                .map(|r| familiar_tag(&r))
                .unwrap_or_else(|_| reference.to_owned());
            untag_everywhere(&mut st, &tag);
            self.emit(&mut st, image_event(&id, "untag"));
        }
        Ok(())
    }

    fn events(&self, since_nano: Option<i64>) -> EventStream {
        let (replay, receiver) = match self.enter(Op::Events, "") {
            Ok(st) => {
                let replay: Vec<EngineEvent> = match since_nano {
                    Some(since) => {
                        st.log.iter().filter(|e| e.time_nano >= since).cloned().collect()
                    }
                    None => vec![],
                };
                // Subscribe while holding the lock so that no event falls between.
                (replay, self.events.subscribe())
            }
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let live = stream::unfold(Some(receiver), |receiver| async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Ok(Broadcast::Event(e)) => Some((Ok(e), Some(receiver))),
                Ok(Broadcast::Disconnect) => Some((
                    Err(DriverError::EngineUnreachable {
                        host: "fake://".into(),
                        source: "the fake Engine went away".into(),
                    }),
                    None,
                )),
                Err(broadcast::error::RecvError::Lagged(n)) => Some((
                    Err(DriverError::Protocol {
                        source: format!("event reader fell {n} events behind").into(),
                    }),
                    None,
                )),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        stream::iter(replay.into_iter().map(Ok)).chain(live).boxed()
    }

    // The fake runs no processes: logs and stats are empty and exec is refused. The API's
    // streaming tests use the real Engine.
    fn logs(&self, _id: &str, _options: &LogOptions) -> LogStream {
        stream::empty().boxed()
    }

    fn stats(&self, _id: &str) -> StatsStream {
        stream::empty().boxed()
    }

    async fn exec_start(
        &self,
        _container: &str,
        _spec: &ExecSpec,
    ) -> Result<ExecSession, DriverError> {
        Err(DriverError::Rejected { message: "the fake Engine runs no processes".into() })
    }

    async fn exec_resize(&self, _exec_id: &str, _cols: u16, _rows: u16) -> Result<(), DriverError> {
        Ok(())
    }

    async fn exec_exit_code(&self, _exec_id: &str) -> Result<Option<i64>, DriverError> {
        Ok(Some(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::types::{Health, PortPublish, Protocol};
    use crate::labels;
    use futures::TryStreamExt;

    fn spec(name: &str) -> ContainerCreate {
        ContainerCreate {
            name: name.into(),
            image: "berth-test/busybox:1".into(),
            labels: HashMap::from([(labels::MANAGED_BY.into(), labels::MANAGED_BY_VALUE.into())]),
            ports: vec![PortPublish {
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: None,
                host_port: None,
            }],
            ..ContainerCreate::default()
        }
    }

    #[tokio::test]
    async fn a_container_goes_through_docker_states_and_every_mutation_is_counted() {
        let fake = FakeDriver::new();
        fake.add_image("berth-test/busybox:1");
        let id = fake.create_container(&spec("web")).await.expect("create");
        let c = fake.inspect_container("web").await.expect("inspect").expect("exists");
        assert_eq!(c.state, ContainerState::Created);
        fake.start_container(&id).await.expect("start");
        let c = fake.inspect_container(&id).await.expect("inspect").expect("exists");
        assert_eq!(c.state, ContainerState::Running);
        assert_eq!(c.ports.len(), 1);
        fake.start_container(&id).await.expect("starting a running container is fine");
        fake.stop_container(&id, Duration::from_secs(1)).await.expect("stop");
        fake.stop_container(&id, Duration::from_secs(1)).await.expect("stopping twice is fine");
        let c = fake.inspect_container(&id).await.expect("inspect").expect("exists");
        assert_eq!(c.state, ContainerState::Exited);
        assert!(c.ports.is_empty());
        fake.remove_container(&id).await.expect("remove");
        fake.remove_container(&id).await.expect("removing a missing container is fine");
        assert!(fake.inspect_container(&id).await.expect("inspect").is_none());
        assert_eq!(fake.mutating_calls(), 7);
        assert_eq!(fake.count(Op::InspectContainer), 4);
    }

    #[tokio::test]
    async fn reads_do_not_count_as_mutations() {
        let fake = FakeDriver::new();
        fake.add_image("berth-test/busybox:1");
        fake.insert_container(&spec("web"), true);
        fake.reset_calls();
        fake.list_containers(&ContainerFilter::managed()).await.expect("list");
        fake.inspect_image("berth-test/busybox:1").await.expect("inspect image");
        fake.ping().await.expect("ping");
        assert_eq!(fake.mutating_calls(), 0);
        assert_eq!(fake.calls().len(), 3);
    }

    #[tokio::test]
    async fn create_needs_the_image_and_a_free_name() {
        let fake = FakeDriver::new();
        let err = fake.create_container(&spec("web")).await.expect_err("no image");
        assert!(err.is_not_found());
        fake.add_image("berth-test/busybox:1");
        fake.create_container(&spec("web")).await.expect("create");
        let err = fake.create_container(&spec("web")).await.expect_err("name taken");
        assert!(matches!(err, DriverError::NameInUse { .. }));
    }

    #[tokio::test]
    async fn list_filters_by_label() {
        let fake = FakeDriver::new();
        fake.add_image("berth-test/busybox:1");
        fake.insert_container(&spec("ours"), false);
        let foreign = ContainerCreate { labels: HashMap::new(), ..spec("theirs") };
        fake.insert_container(&foreign, true);
        let managed = fake.list_containers(&ContainerFilter::managed()).await.expect("list");
        assert_eq!(managed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["ours"]);
        assert_eq!(fake.list_containers(&ContainerFilter::all()).await.expect("list").len(), 2);
    }

    #[tokio::test]
    async fn pulls_check_credentials_and_record_the_digest() {
        let fake = FakeDriver::new();
        let digest = fake.add_registry_image("127.0.0.1:5000/app:1");
        fake.require_registry_auth("127.0.0.1:5000", "u", "p");
        let err = fake
            .pull_image("127.0.0.1:5000/app:1", None)
            .try_collect::<Vec<_>>()
            .await
            .expect_err("needs credentials");
        assert!(matches!(err, DriverError::RegistryAuth { .. }));
        let wrong = RegistryCredentials {
            username: "u".into(),
            password: "x".into(),
            server_address: "127.0.0.1:5000".into(),
        };
        assert!(
            fake.pull_image("127.0.0.1:5000/app:1", Some(wrong))
                .try_collect::<Vec<_>>()
                .await
                .is_err()
        );
        let right = RegistryCredentials {
            username: "u".into(),
            password: "p".into(),
            server_address: "127.0.0.1:5000".into(),
        };
        let progress: Vec<PullProgress> = fake
            .pull_image("127.0.0.1:5000/app:1", Some(right.clone()))
            .try_collect()
            .await
            .expect("pull");
        assert!(progress.iter().any(|p| p.digest() == Some(digest.as_str())));
        let image =
            fake.inspect_image("127.0.0.1:5000/app:1").await.expect("inspect").expect("present");
        assert_eq!(image.digest_for("127.0.0.1:5000/app"), Some(digest.as_str()));
        let missing =
            fake.pull_image("127.0.0.1:5000/nope:1", Some(right)).try_collect::<Vec<_>>().await;
        assert!(matches!(missing, Err(DriverError::ImageNotFound { .. })));
        assert_eq!(fake.count(Op::PullImage), 4);
    }

    #[tokio::test]
    async fn an_image_in_use_is_not_removed_without_force() {
        let fake = FakeDriver::new();
        fake.add_image("berth-test/busybox:1");
        fake.insert_container(&spec("web"), true);
        let err = fake.remove_image("berth-test/busybox:1", false).await.expect_err("in use");
        assert!(matches!(err, DriverError::Conflict { .. }));
        fake.remove_image("berth-test/busybox:1", true).await.expect("forced");
        assert!(fake.images().is_empty());
        fake.remove_image("berth-test/busybox:1", false).await.expect("missing is fine");
    }

    #[tokio::test]
    async fn events_report_out_of_band_changes_and_replay_since_a_time() {
        let fake = FakeDriver::new();
        fake.add_image("berth-test/busybox:1");
        let mut events = fake.events(None);
        let id = fake.insert_container(&spec("web"), true);
        fake.simulate_exit("web", 1);
        let mut seen = vec![];
        for _ in 0..3 {
            let e = events.next().await.expect("an event").expect("not an error");
            seen.push(e);
        }
        assert_eq!(
            seen.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["create", "start", "die"]
        );
        assert!(seen.iter().all(|e| e.id == id && e.is_managed()));
        let since = seen[1].time_nano;
        let mut replay = fake.events(Some(since));
        let first = replay.next().await.expect("replayed").expect("ok");
        assert_eq!(first.action, "start");
        fake.simulate_health("web", Health::Healthy);
        fake.set_unreachable(true);
        let mut rest = vec![];
        while let Some(item) = events.next().await {
            rest.push(item);
        }
        assert!(matches!(rest.last(), Some(Err(DriverError::EngineUnreachable { .. }))));
        assert!(fake.ping().await.expect_err("unreachable").is_transient());
    }

    #[tokio::test]
    async fn injected_failures_hit_the_next_call_only() {
        let fake = FakeDriver::new();
        fake.fail_next(Op::Ping, "boom", true);
        let err = fake.ping().await.expect_err("injected");
        assert!(err.is_transient());
        fake.ping().await.expect("only once");
    }
}
