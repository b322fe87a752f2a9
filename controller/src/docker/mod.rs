//! The Docker Engine driver: the small [`Driver`] trait the reconcilers call, its bollard
//! implementation ([`BollardDriver`]) and an in-memory [`fake::FakeDriver`] for unit tests.
//!
//! # Contract
//!
//! - Types are berth's own ([`types`]), never bollard's, so the fake is easy to write.
//! - Idempotent where Docker allows: starting a running container, stopping a stopped one and
//!   removing a missing container or image succeed and change nothing.
//! - Errors are [`DriverError`]; [`DriverError::is_transient`] drives the retry policy. An Engine
//!   that cannot be reached is [`DriverError::EngineUnreachable`] (transient) from every call,
//!   the API version is negotiated on the first call that reaches it, so a driver can be built
//!   before the Engine is up.
//! - Registry credentials are passed with each pull and never stored in the Engine.
//! - Every call is cancel-safe in the sense that dropping its future leaves the Engine in a
//!   state the next reconcile can observe and converge from.

pub mod config;
pub mod credentials;
pub mod engine;
pub mod error;
pub mod fake;
pub mod streams;
pub mod types;

use std::time::Duration;

use futures::stream::BoxStream;

pub use self::config::{DEFAULT_DOCKER_HOST, DockerConfig, TlsConfig};
pub use self::credentials::{CredentialStore, CredentialsError};
pub use self::engine::BollardDriver;
pub use self::error::DriverError;
pub use self::streams::{
    ContainerStats, ExecSession, ExecSpec, LogOptions, OutputChunk, OutputStream,
};
pub use self::types::{
    BoundPort, BuildCacheUsage, ContainerCreate, ContainerFilter, ContainerState, ContainerUsage,
    DeviceMapping, DiskUsage, EngineEvent, EngineInfo, EngineVersion, EventKind, Health,
    Healthcheck, ImageUsage, MountKind, MountSpec, ObservedContainer, ObservedImage,
    ObservedVolume, PortPublish, Protocol, PullProgress, RegistryCredentials, ResourceLimits,
    RestartPolicy, VolumeUsage,
};

/// The containers (running or not) the controller of store `instance` made for the resource
/// `key`, running ones first: the one lookup of a resource's containers, used by the
/// reconciler and by logs, stats and exec (see [`crate::labels::owned_by`]).
///
/// # Errors
///
/// The driver's, from listing containers.
pub async fn owned_by(
    driver: &dyn Driver,
    instance: &str,
    key: &berth_schemas::ResourceKey,
) -> Result<Vec<ObservedContainer>, DriverError> {
    let mut found = driver.list_containers(&ContainerFilter::owned_by(instance, key)).await?;
    // Stable: among equals, the Engine's order stays.
    found.sort_by_key(|c| c.state != ContainerState::Running);
    Ok(found)
}

/// A stream of pull progress messages; it ends after the pull succeeded, or with one error.
pub type PullStream = BoxStream<'static, Result<PullProgress, DriverError>>;

/// A stream of Engine events; it ends (with or without an error) when the connection drops.
/// Resubscribe with `since` set to the last event's [`EngineEvent::time_nano`] (events at that
/// very instant are delivered again, so handle duplicates).
pub type EventStream = BoxStream<'static, Result<EngineEvent, DriverError>>;

/// A stream of container or exec output; it ends when the log (or the process) ends, or with
/// one error.
pub type LogStream = BoxStream<'static, Result<OutputChunk, DriverError>>;

/// A stream of stats samples, about one a second, until the container stops or the
/// connection drops.
pub type StatsStream = BoxStream<'static, Result<ContainerStats, DriverError>>;

/// What the reconcilers need from a Docker Engine. Object-safe: hold it as
/// `Arc<dyn Driver>`.
#[async_trait::async_trait]
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// Checks that the Engine answers (and negotiates the API version if not done yet).
    ///
    /// # Errors
    ///
    /// [`DriverError::EngineUnreachable`] when it does not answer.
    async fn ping(&self) -> Result<(), DriverError>;

    /// The Engine's version and the API version in use.
    async fn version(&self) -> Result<EngineVersion, DriverError>;

    /// The Engine's host facts and object counts (`docker info`).
    async fn info(&self) -> Result<EngineInfo, DriverError>;

    /// What occupies the Engine's disk, object by object (`docker system df -v`).
    async fn disk_usage(&self) -> Result<DiskUsage, DriverError>;

    /// Every container (running or not) whose labels match `filter`, fully inspected.
    /// Containers that vanish while being listed are left out.
    async fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> Result<Vec<ObservedContainer>, DriverError>;

    /// One container by id or name; `Ok(None)` when there is none.
    async fn inspect_container(
        &self,
        id_or_name: &str,
    ) -> Result<Option<ObservedContainer>, DriverError>;

    /// Creates (does not start) a container and returns its id. When `spec.networks` lists
    /// more than one network, the others are connected before this returns; if that fails the
    /// container is removed again. The network mode is `spec.networkMode` only: a Docker network
    /// mode listed as a network (`host`, `none`, `bridge`, `default`, `container:<id>`, see
    /// [`berth_schemas::container::is_network_mode_name`]) is refused, never made the mode.
    ///
    /// # Errors
    ///
    /// [`DriverError::NameInUse`] when the name is taken, [`DriverError::NotFound`] when the
    /// image is not present locally, [`DriverError::Rejected`] for a spec the Engine refuses
    /// and for a network mode listed in `spec.networks` (nothing is created then).
    async fn create_container(&self, spec: &ContainerCreate) -> Result<String, DriverError>;

    /// One volume by name; `Ok(None)` when there is none.
    async fn inspect_volume(&self, name: &str) -> Result<Option<ObservedVolume>, DriverError>;

    /// Creates a named volume with the `local` driver, no driver options and `labels`, and
    /// answers it as the Engine reports it. A volume of that name that exists already is
    /// answered as it is, unchanged (the Engine's own behaviour): inspect it to tell.
    async fn create_volume(
        &self,
        name: &str,
        labels: &std::collections::HashMap<String, String>,
    ) -> Result<ObservedVolume, DriverError>;

    /// Starts a container; a running one is left as it is.
    async fn start_container(&self, id: &str) -> Result<(), DriverError>;

    /// Sends the stop signal, waits up to `grace`, then kills; a stopped one is left as it is.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), DriverError>;

    /// Sends `signal` (`SIGKILL` when `None`).
    ///
    /// # Errors
    ///
    /// [`DriverError::Conflict`] when the container is not running.
    async fn kill_container(&self, id: &str, signal: Option<&str>) -> Result<(), DriverError>;

    /// Removes a container, running or not (force), keeping its named volumes. A missing one
    /// is not an error.
    async fn remove_container(&self, id: &str) -> Result<(), DriverError>;

    /// One image by reference or id; `Ok(None)` when it is not present.
    async fn inspect_image(&self, reference: &str) -> Result<Option<ObservedImage>, DriverError>;

    /// Every image present (without intermediate layers).
    async fn list_images(&self) -> Result<Vec<ObservedImage>, DriverError>;

    /// Pulls an image (`repo:tag`, `repo@digest`, or `repo` for `:latest`), with credentials
    /// for its registry when given. The stream must be polled to completion for the pull to
    /// finish; the last `Ok` item before the end is Docker's `Status:` line.
    fn pull_image(&self, reference: &str, credentials: Option<RegistryCredentials>) -> PullStream;

    /// Removes an image (a tag, or all of an id with `force`). A missing one is not an error.
    ///
    /// # Errors
    ///
    /// [`DriverError::Conflict`] when a container uses it and `force` is false.
    async fn remove_image(&self, reference: &str, force: bool) -> Result<(), DriverError>;

    /// Container and image events from now (or from `since_nano`, nanoseconds since the
    /// epoch) on, until the connection drops; the stream then ends, with or without an error,
    /// and the caller resubscribes with `since`. The request is sent when the stream is first
    /// polled, so pass a `since_nano` taken before any action whose events must not be missed.
    fn events(&self, since_nano: Option<i64>) -> EventStream;

    /// A container's log, streamed as the Engine sends it (never collected whole). With
    /// `follow` it stays open until the container stops or the stream is dropped.
    fn logs(&self, id: &str, options: &LogOptions) -> LogStream;

    /// A container's resource use, one sample about every second, until dropped.
    fn stats(&self, id: &str) -> StatsStream;

    /// Creates and starts an exec in a running container, attached to its stdin, stdout and
    /// stderr.
    ///
    /// # Errors
    ///
    /// [`DriverError::NotFound`] for a missing container, [`DriverError::Conflict`] when it is
    /// not running.
    async fn exec_start(
        &self,
        container: &str,
        spec: &ExecSpec,
    ) -> Result<ExecSession, DriverError>;

    /// Resizes an exec's terminal.
    async fn exec_resize(&self, exec_id: &str, cols: u16, rows: u16) -> Result<(), DriverError>;

    /// An exec's exit code once it has ended (`None` while it runs).
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, DriverError>;
}
