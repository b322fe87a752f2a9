//! The reconcilers: each observes Docker, plans the steps towards its resource's spec as a pure
//! function, and executes them through the driver, writing status and audit events back.
//!
//! - [`container`]: `Container` resources.
//! - [`image`]: `Image` resources.
//! - [`exits`]: whether an exited container was stopped (drift) or its process ended.
//! - [`intents`]: the audit trail of Docker actions (intent before, outcome after) and how
//!   intents left by a killed controller are settled on the next start.
//! - [`Context`]: what every reconcile gets (store, driver, registry credentials, the store's
//!   instance id).
//! - [`Error`]: what a reconcile can fail with, classified for the retry policy.

pub mod container;
pub mod controller;
pub mod exits;
pub mod image;
pub mod intents;

pub use controller::{Controller, ControllerConfig};

use std::fmt;
use std::sync::Arc;

use berth_schemas::condition::PROGRESSING;
use berth_schemas::{
    Condition, ConditionStatus, ResourceKey, condition::set_condition,
    object::ConversionError as ObjectConversionError,
};
use chrono::{DateTime, Utc};
use std::time::Duration;

use crate::docker::{ContainerFilter, CredentialStore, Driver, DriverError};
use crate::labels;
use crate::store::{AuditEntry, AuditLog, AuditOutcome, ResourceStore, StoreError, WriteContext};

/// The finalizer berth puts on every resource that owns Docker objects; it is dropped once
/// they are gone.
pub const FINALIZER: &str = "berth.dev/docker-cleanup";

/// What the reconcilers need of the store: resources and the audit log.
pub trait ControllerStore: ResourceStore + AuditLog {}

impl<T: ResourceStore + AuditLog + ?Sized> ControllerStore for T {}

/// What every reconcile gets.
#[derive(Clone)]
pub struct Context {
    /// The store (resources, status, finalizers, audit).
    pub store: Arc<dyn ControllerStore>,
    /// The Docker Engine.
    pub driver: Arc<dyn Driver>,
    /// Registry credentials for pulls (from a docker-style `config.json`).
    pub credentials: Arc<CredentialStore>,
    /// The store's instance id ([`ResourceStore::instance_id`]): every container made carries
    /// it as [`labels::INSTANCE`], and only containers carrying it are adopted or removed.
    pub instance: Arc<str>,
    /// The stop requests the Docker event stream showed (see [`exits`]).
    pub stops: Arc<exits::StopTracker>,
}

impl Context {
    /// A context over `store`, `driver` and `credentials`, with the store's instance id.
    pub fn new(
        store: Arc<dyn ControllerStore>,
        driver: Arc<dyn Driver>,
        credentials: Arc<CredentialStore>,
    ) -> Self {
        let instance = Arc::from(store.instance_id());
        Self { store, driver, credentials, instance, stops: Arc::default() }
    }

    /// The filter selecting every container this instance made.
    pub fn owned(&self) -> ContainerFilter {
        ContainerFilter::managed().with_label(labels::INSTANCE, &*self.instance)
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("driver", &self.driver)
            .field("instance", &self.instance)
            .field("registries_with_credentials", &self.credentials.len())
            .finish_non_exhaustive()
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Docker call failed.
    #[error("{action} failed")]
    Driver {
        /// What was being done (`pull busybox:1`, `create container berth_default_web`).
        action: String,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
    /// A store read or write failed.
    #[error("store {action} failed")]
    Store {
        /// What was being done.
        action: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The stored object does not fit its kind's schema.
    #[error("the stored resource does not fit its schema")]
    Conversion(#[source] ObjectConversionError),
    /// The spec cannot be turned into a Docker request.
    #[error("the spec cannot be applied")]
    Spec(#[source] container::create::SpecError),
    /// The plan did not settle after the image was pulled (the image moved again meanwhile).
    #[error("the plan for {0} did not settle; will retry")]
    Unsettled(ResourceKey),
}

impl Error {
    /// Whether a retry may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Driver { source, .. } => source.is_transient(),
            // A conflicting write is retried against the new revision; other store failures need
            // someone to act.
            Error::Store { source, .. } => matches!(source, StoreError::Conflict { .. }),
            Error::Unsettled(_) => true,
            Error::Conversion(_) | Error::Spec(_) => false,
        }
    }

    /// The CamelCase reason written into the `Degraded` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Driver { source, .. } => match source {
                DriverError::EngineUnreachable { .. } => "EngineUnreachable",
                DriverError::RegistryAuth { .. } => "RegistryAuthFailed",
                DriverError::ImageNotFound { .. } => "ImageNotFound",
                DriverError::Pull { .. } => "ImagePullFailed",
                DriverError::NameInUse { .. } => "NameConflict",
                DriverError::Rejected { .. } => "DockerRejected",
                _ => "DockerError",
            },
            Error::Store { .. } => "StoreError",
            Error::Conversion(_) | Error::Spec(_) => "InvalidSpec",
            Error::Unsettled(_) => "Unsettled",
        }
    }
}

/// Wraps a driver error with what was being done.
pub(crate) fn driver_err(action: impl Into<String>) -> impl FnOnce(DriverError) -> Error {
    let action = action.into();
    move |source| Error::Driver { action, source }
}

/// Wraps a store error with what was being done.
pub(crate) fn store_err(action: &'static str) -> impl FnOnce(StoreError) -> Error {
    move |source| Error::Store { action, source }
}

/// The audit verbs of the Docker actions the controller takes.
pub mod verbs {
    /// `docker create`.
    pub const CONTAINER_CREATE: &str = "docker.container.create";
    /// `docker start`.
    pub const CONTAINER_START: &str = "docker.container.start";
    /// `docker stop`.
    pub const CONTAINER_STOP: &str = "docker.container.stop";
    /// `docker rm -f`.
    pub const CONTAINER_REMOVE: &str = "docker.container.remove";
    /// `docker pull`.
    pub const IMAGE_PULL: &str = "docker.image.pull";
    /// `docker rmi`.
    pub const IMAGE_REMOVE: &str = "docker.image.remove";
    /// `docker volume create` (a named volume a container mounts, made as berth's).
    pub const VOLUME_CREATE: &str = "docker.volume.create";
}

/// A Docker action announced in the audit log (outcome `pending`) and not settled yet.
#[derive(Debug)]
#[must_use = "an intent must be settled with its result"]
pub(crate) struct Intent {
    seq: u64,
    verb: &'static str,
    action: String,
}

fn audit_entry(key: &ResourceKey, verb: &str, outcome: AuditOutcome) -> AuditEntry {
    AuditEntry::new(WriteContext::controller(), verb, outcome).target(
        key.kind.as_str(),
        Some(key.namespace.clone()),
        key.name.clone(),
    )
}

/// Writes the intent event of one Docker action (actor and source `controller`, outcome
/// `pending`) durably — the store has flushed it when this returns — before the action is
/// taken. A `kill -9` after this point leaves the intent, which the next start settles
/// ([`intents::settle_interrupted`]).
pub(crate) async fn intend(
    ctx: &Context,
    key: &ResourceKey,
    verb: &'static str,
    action: impl Into<String>,
) -> Result<Intent, Error> {
    let action = action.into();
    let entry = audit_entry(key, verb, AuditOutcome::Pending).message(action.clone());
    let event = ctx.store.append(entry).await.map_err(store_err("audit append"))?;
    Ok(Intent { seq: event.seq, verb, action })
}

/// Writes the outcome event of an intent (`success`, or `failure` with the error), naming the
/// intent's `seq` in `intentSeq`, and passes the result on.
pub(crate) async fn settle<T>(
    ctx: &Context,
    key: &ResourceKey,
    intent: Intent,
    result: Result<T, DriverError>,
) -> Result<T, Error> {
    let (outcome, message) = match &result {
        Ok(_) => (AuditOutcome::Success, intent.action.clone()),
        Err(e) => (AuditOutcome::Failure, format!("{}: {e}", intent.action)),
    };
    let entry = audit_entry(key, intent.verb, outcome).message(message).intent(intent.seq);
    ctx.store.append(entry).await.map_err(store_err("audit append"))?;
    result.map_err(driver_err(intent.action))
}

/// Takes one Docker action with its audit trail: the intent event, then `call()`, then the
/// outcome event. `call` is not invoked before the intent is stored.
pub(crate) async fn act<T, F, Fut>(
    ctx: &Context,
    key: &ResourceKey,
    verb: &'static str,
    action: impl Into<String>,
    call: F,
) -> Result<T, Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, DriverError>>,
{
    let intent = intend(ctx, key, verb, action).await?;
    let result = call().await;
    settle(ctx, key, intent, result).await
}

/// A condition at `now` for `generation`.
pub(crate) fn condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    generation: Option<u64>,
    now: DateTime<Utc>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.into(),
        last_transition_time: now,
        observed_generation: generation,
    }
}

/// Sets the three standard conditions at once, keeping transition times that did not move.
pub(crate) fn set_conditions(conditions: &mut Vec<Condition>, new: [Condition; 3]) {
    for c in new {
        set_condition(conditions, c);
    }
}

/// The error with its causes, `: `-separated.
pub(crate) fn error_chain(error: &Error) -> String {
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    chain
}

/// When a retry `retry_in` from `now` happens.
pub(crate) fn retry_time(retry_in: Duration, now: DateTime<Utc>) -> DateTime<Utc> {
    chrono::Duration::from_std(retry_in).ok().and_then(|d| now.checked_add_signed(d)).unwrap_or(now)
}

/// The `Degraded` condition and message for a failed reconcile, naming the retry time.
pub(crate) fn failure_condition(
    error: &Error,
    retry_in: std::time::Duration,
    generation: Option<u64>,
    now: DateTime<Utc>,
) -> Condition {
    let retry_at = retry_time(retry_in, now);
    let chain = error_chain(error);
    condition(
        berth_schemas::condition::DEGRADED,
        ConditionStatus::True,
        error.reason(),
        format!(
            "{chain}; next retry at {} (in {:.1}s)",
            retry_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            retry_in.as_secs_f64()
        ),
        generation,
        now,
    )
}

/// Records a failed pass in status: `Degraded` with the error and the retry time, and the
/// `lastError` and `nextRetryTime` fields (the next pass that succeeds clears them).
///
/// # Errors
///
/// Store failures.
pub async fn report_failure(
    ctx: &Context,
    key: &ResourceKey,
    error: &Error,
    retry_in: Duration,
) -> Result<(), Error> {
    let Some(stored) = ctx.store.get(key).await.map_err(store_err("get"))? else {
        return Ok(());
    };
    let mut status = stored.status.clone();
    if !status.is_object() {
        status = serde_json::json!({});
    }
    let mut conditions: Vec<Condition> = status
        .get("conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let now = Utc::now();
    let generation = stored.metadata.generation;
    berth_schemas::condition::set_condition(
        &mut conditions,
        failure_condition(error, retry_in, generation, now),
    );
    berth_schemas::condition::set_condition(
        &mut conditions,
        condition(
            PROGRESSING,
            ConditionStatus::False,
            error.reason(),
            String::new(),
            generation,
            now,
        ),
    );
    if let Some(map) = status.as_object_mut() {
        map.insert(
            "conditions".into(),
            serde_json::to_value(&conditions).unwrap_or(serde_json::Value::Null),
        );
        if let Some(g) = generation {
            map.insert("observedGeneration".into(), g.into());
        }
        map.insert("lastError".into(), error_chain(error).into());
        map.insert(
            "nextRetryTime".into(),
            serde_json::to_value(retry_time(retry_in, now)).unwrap_or(serde_json::Value::Null),
        );
    }
    if status != stored.status {
        ctx.store
            .update_status(&WriteContext::controller(), key, status)
            .await
            .map_err(store_err("update status"))?;
    }
    Ok(())
}
