//! The `Container` reconciler: observe → plan → execute, then status.
//!
//! One pass observes the resource's containers (by ownership label) and the holder of its
//! wanted name, asks [`plan::plan`] what to do, executes the steps through the driver (an
//! intent audit event before each Docker call and an outcome event after it), and observes again until the plan is quiet; then it writes status. A pass
//! that finds nothing to do makes no mutating Docker call and no store write.
//!
//! - [`plan`]: the pure planner.
//! - [`create`]: spec → Docker create request.
//! - [`status`]: observation → status and conditions.
//! - [`volumes`]: named volumes, made as berth's before the container, and which are foreign.

pub mod create;
pub mod plan;
pub mod status;
pub mod volumes;

use std::time::Duration;

use berth_schemas::condition::PROGRESSING;
use berth_schemas::{ConditionStatus, Container, ContainerStatus, Kind, ResourceKey, readiness};
use chrono::Utc;
use futures::StreamExt;
use tracing::{debug, info};

use self::plan::{Desired, NameHolder, Observed, Step, Target};
use self::status::{Blocker, container_status, state_of};
use super::{
    Context, Error, FINALIZER, act, condition, driver_err, exits, intend, settle, store_err, verbs,
};
use crate::docker::{ObservedContainer, ObservedImage};
use crate::labels;
use crate::runtime::Action;
use crate::store::WriteContext;

/// How often a pass may act and look again before it gives up (and retries with backoff).
const MAX_ROUNDS: usize = 4;

/// The stop grace period of an orphan, whose spec (and so its own grace period) is gone.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// How soon to look again while dependencies are not Ready (their changes also trigger).
const DEPENDENCY_POLL: Duration = Duration::from_secs(5);

/// What Docker has for one resource.
struct Observation {
    containers: Vec<ObservedContainer>,
    holder: Option<ObservedContainer>,
}

impl Observation {
    /// What the planner sees; `status` is the resource's stored status (it remembers how
    /// earlier exits were judged, see [`exits`]).
    fn for_plan(
        &self,
        ctx: &Context,
        obj: &Container,
        status: Option<&ContainerStatus>,
    ) -> Observed {
        let watching_since = ctx.stops.watching_since();
        Observed {
            containers: self
                .containers
                .iter()
                .map(|c| plan::ObservedContainer {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    uid: c.label(labels::UID).map(str::to_owned),
                    spec_hash: c.label(labels::SPEC_HASH).map(str::to_owned),
                    state: state_of(c.state),
                    created: c.created_at.map(|t| t.timestamp()).unwrap_or_default(),
                    exited_on_its_own: c.state == crate::docker::ContainerState::Exited
                        && exits::exited_on_its_own(
                            &exits::ExitFacts {
                                id: &c.id,
                                exit_code: c.exit_code,
                                oom_killed: c.oom_killed,
                                finished_at: c.finished_at,
                                restart_policy: obj.spec.restart_policy.policy,
                                stop_seen: ctx.stops.stop_seen(&c.id),
                                watching_since,
                            },
                            status,
                        ),
                })
                .collect(),
            name_holder: self.holder.as_ref().map(|h| NameHolder { id: h.id.clone() }),
        }
    }

    /// The container status reports on: this incarnation's container under the wanted name.
    fn current(&self, uid: &str, name: &str) -> Option<&ObservedContainer> {
        self.containers.iter().find(|c| c.name == name && c.label(labels::UID) == Some(uid))
    }
}

async fn observe(ctx: &Context, key: &ResourceKey, name: &str) -> Result<Observation, Error> {
    let containers = crate::docker::owned_by(ctx.driver.as_ref(), &ctx.instance, key)
        .await
        .map_err(driver_err("list containers"))?;
    let holder = if containers.iter().any(|c| c.name == name) {
        None
    } else {
        ctx.driver
            .inspect_container(name)
            .await
            .map_err(driver_err(format!("inspect container {name}")))?
            .filter(|h| !containers.iter().any(|c| c.id == h.id))
    };
    Ok(Observation { containers, holder })
}

/// The `dependsOn` resources of `obj` that are not Ready ([`berth_schemas::readiness`]), by
/// key.
async fn not_ready_dependencies(ctx: &Context, obj: &Container) -> Result<Vec<String>, Error> {
    let mut waiting = Vec::new();
    for dep in &obj.spec.depends_on {
        let key = ResourceKey::new(dep.kind, dep.namespace_or(&obj.metadata.namespace), &dep.name);
        let found = ctx.store.get(&key).await.map_err(store_err("get dependency"))?;
        if !found.as_ref().is_some_and(|o| readiness(o).is_ready()) {
            waiting.push(key.to_string());
        }
    }
    Ok(waiting)
}

fn desired(
    obj: &Container,
    uid: &str,
    image: Option<&ObservedImage>,
    waiting: Vec<String>,
) -> Desired {
    let key = obj.key();
    Desired {
        uid: uid.to_owned(),
        name: labels::container_name(&key.namespace, &key.name),
        spec_hash: image.map(|i| labels::container_spec_hash(obj, &i.id)),
        pull_policy: obj.spec.image_pull_policy,
        desired_state: obj.spec.desired_state,
        grace: create::grace_period(&obj.spec),
        deleting: obj.metadata.deletion_timestamp.is_some(),
        holds_finalizer: obj.metadata.finalizers.iter().any(|f| f == FINALIZER),
        waiting_for: waiting,
    }
}

/// Drives one `Container` resource towards its spec (or, when it is being deleted, removes its
/// containers and drops the finalizer).
///
/// # Errors
///
/// Driver and store failures, and specs that cannot be turned into a create request. Nothing
/// is left half-owned: the next pass converges from wherever this one stopped.
pub async fn reconcile(obj: &Container, ctx: &Context) -> Result<Action, Error> {
    let key = obj.key();
    let uid = obj.metadata.uid.clone().unwrap_or_default();
    let deleting = obj.metadata.deletion_timestamp.is_some();
    let has_finalizer = obj.metadata.finalizers.iter().any(|f| f == FINALIZER);
    if !deleting && !has_finalizer {
        // Before anything exists in Docker, so that a deletion always waits for its cleanup.
        ctx.store
            .add_finalizer(&WriteContext::controller(), &key, FINALIZER)
            .await
            .map_err(store_err("add finalizer"))?;
    }
    let name = labels::container_name(&key.namespace, &key.name);

    let mut acted = false;
    // What the store holds as status now (a progress report may have replaced `obj.status`).
    let mut stored_status = obj.status.clone();
    for _round in 0..MAX_ROUNDS {
        let image = if deleting {
            None
        } else {
            ctx.driver
                .inspect_image(&obj.spec.image)
                .await
                .map_err(driver_err(format!("inspect image {}", obj.spec.image)))?
        };
        let observation = observe(ctx, &key, &name).await?;
        let waiting = if deleting { Vec::new() } else { not_ready_dependencies(ctx, obj).await? };
        let desired = desired(obj, &uid, image.as_ref(), waiting);
        let steps = plan::plan(&desired, &observation.for_plan(ctx, obj, stored_status.as_ref()));

        if plan::is_quiet(&steps) {
            if deleting {
                return Ok(Action::await_change());
            }
            let blocker = steps.iter().find_map(|s| match s {
                Step::ReportConflict { holder_id } => {
                    Some(Blocker::NameConflict { name: name.clone(), holder_id: holder_id.clone() })
                }
                Step::ReportImageMissing => {
                    Some(Blocker::ImageMissing { image: obj.spec.image.clone() })
                }
                Step::WaitForDependencies { waiting_for } => {
                    Some(Blocker::WaitingForDependencies(waiting_for.clone()))
                }
                Step::ReportExited { .. } => Some(Blocker::Exited),
                _ => None,
            });
            let current = observation.current(&uid, &name);
            let status =
                container_status(obj, current, image.as_ref(), blocker.as_ref(), Utc::now());
            write_status_if_changed(ctx, &key, stored_status.as_ref(), &status).await?;
            if acted {
                info!(state = ?status.state, "converged");
            }
            return Ok(match blocker {
                Some(Blocker::WaitingForDependencies(_)) => Action::requeue(DEPENDENCY_POLL),
                _ => Action::await_change(),
            });
        }

        if !acted && !deleting {
            stored_status = Some(report_progress(ctx, obj, &steps).await?);
        }
        acted = true;
        if execute(ctx, obj, &uid, &steps, image.as_ref()).await? == Flow::ObjectGone {
            return Ok(Action::await_change());
        }
    }
    Err(Error::Unsettled(key))
}

/// Whether the object still exists after executing a plan.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    ObjectGone,
}

/// Executes `steps`; `observed_image` is the image as this round observed it (reused for the
/// spec hash of a `Create` unless the plan pulled first).
async fn execute(
    ctx: &Context,
    obj: &Container,
    uid: &str,
    steps: &[Step],
    observed_image: Option<&ObservedImage>,
) -> Result<Flow, Error> {
    let key = obj.key();
    let driver = &ctx.driver;
    let mut created: Option<String> = None;
    let mut pulled = false;
    for step in steps {
        debug!(?step, "executing");
        match step {
            Step::PullImage => {
                pull(ctx, &key, &obj.spec.image).await?;
                pulled = true;
            }
            Step::Create => {
                let image = match observed_image.filter(|_| !pulled) {
                    Some(image) => image.clone(),
                    None => driver
                        .inspect_image(&obj.spec.image)
                        .await
                        .map_err(driver_err(format!("inspect image {}", obj.spec.image)))?
                        .ok_or_else(|| Error::Unsettled(key.clone()))?,
                };
                let hash = labels::container_spec_hash(obj, &image.id);
                let request = create::container_create(obj, &ctx.instance, uid, &hash)
                    .map_err(Error::Spec)?;
                // Before the create: the Engine would make a missing one itself, unlabelled.
                volumes::ensure_volumes(ctx, obj, uid).await?;
                let action = format!("create container {}", request.name);
                let id = act(ctx, &key, verbs::CONTAINER_CREATE, action, || {
                    driver.create_container(&request)
                })
                .await?;
                created = Some(id);
            }
            Step::Start(target) => {
                let id = match target {
                    Target::Existing(id) => id.clone(),
                    Target::New => created.clone().ok_or_else(|| Error::Unsettled(key.clone()))?,
                };
                let action = format!("start container {}", short(&id));
                act(ctx, &key, verbs::CONTAINER_START, action, || driver.start_container(&id))
                    .await?;
            }
            Step::Stop { id, grace } => {
                let action = format!("stop container {} (grace {}s)", short(id), grace.as_secs());
                act(ctx, &key, verbs::CONTAINER_STOP, action, || driver.stop_container(id, *grace))
                    .await?;
            }
            Step::Remove { id } => {
                let action = format!("remove container {}", short(id));
                act(ctx, &key, verbs::CONTAINER_REMOVE, action, || driver.remove_container(id))
                    .await?;
            }
            Step::DropFinalizer => {
                if obj.metadata.finalizers.iter().any(|f| f == FINALIZER) {
                    ctx.store
                        .remove_finalizer(&WriteContext::controller(), &key, FINALIZER)
                        .await
                        .map_err(store_err("remove finalizer"))?;
                }
                return Ok(Flow::ObjectGone);
            }
            Step::Replan => return Ok(Flow::Continue),
            Step::ReportImageMissing
            | Step::ReportConflict { .. }
            | Step::ReportExited { .. }
            | Step::WaitForDependencies { .. } => {}
        }
    }
    Ok(Flow::Continue)
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Pulls `image` with the configured credentials for its registry, auditing the outcome.
pub(crate) async fn pull(ctx: &Context, key: &ResourceKey, image: &str) -> Result<(), Error> {
    let credentials = ctx.credentials.for_image(image);
    let action = pull_action(image, credentials.is_some());
    let intent = intend(ctx, key, verbs::IMAGE_PULL, action).await?;
    let mut stream = ctx.driver.pull_image(image, credentials);
    let mut result = Ok(());
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            result = Err(e);
            break;
        }
    }
    settle(ctx, key, intent, result).await
}

/// The start of a pull's audit message, before the image reference.
const PULL_PREFIX: &str = "pull image ";
/// The end of a pull's audit message when registry credentials were passed.
const WITH_CREDENTIALS: &str = " (with registry credentials)";

/// How a pull is named in audit events and errors.
pub fn pull_action(image: &str, with_credentials: bool) -> String {
    format!("{PULL_PREFIX}{image}{}", if with_credentials { WITH_CREDENTIALS } else { "" })
}

/// The image reference a pull's audit message (a `docker.image.pull` event the controller
/// wrote) names, the inverse of how the controller writes it; `None` for any other message.
pub fn pulled_reference(message: &str) -> Option<&str> {
    let reference = message.strip_prefix(PULL_PREFIX)?;
    Some(reference.strip_suffix(WITH_CREDENTIALS).unwrap_or(reference))
}

/// Writes `Progressing` with what the plan is about to do, before doing it; returns the status
/// now stored.
async fn report_progress(
    ctx: &Context,
    obj: &Container,
    steps: &[Step],
) -> Result<ContainerStatus, Error> {
    let (reason, message) = if steps.contains(&Step::PullImage) {
        ("PullingImage", format!("pulling image {}", obj.spec.image))
    } else if steps.contains(&Step::Create)
        && steps.iter().any(|s| matches!(s, Step::Remove { .. }))
    {
        ("Replacing", "replacing the container".to_owned())
    } else if steps.contains(&Step::Create) {
        ("Creating", "creating the container".to_owned())
    } else if steps.iter().any(|s| matches!(s, Step::Start(_))) {
        ("Starting", "starting the container".to_owned())
    } else if steps.iter().any(|s| matches!(s, Step::Stop { .. })) {
        ("Stopping", "stopping the container".to_owned())
    } else {
        ("Cleaning", "removing extra containers".to_owned())
    };
    let mut status = obj.status.clone().unwrap_or_default();
    let generation = obj.metadata.generation;
    berth_schemas::condition::set_condition(
        &mut status.conditions,
        condition(PROGRESSING, ConditionStatus::True, reason, message, generation, Utc::now()),
    );
    write_status_if_changed(ctx, &obj.key(), obj.status.as_ref(), &status).await?;
    Ok(status)
}

/// Writes `new` as the status of `key` unless it equals `old`.
pub(crate) async fn write_status_if_changed<T: serde::Serialize + PartialEq>(
    ctx: &Context,
    key: &ResourceKey,
    old: Option<&T>,
    new: &T,
) -> Result<(), Error> {
    if old == Some(new) {
        return Ok(());
    }
    let value = serde_json::to_value(new).unwrap_or(serde_json::Value::Null);
    ctx.store
        .update_status(&WriteContext::controller(), key, value)
        .await
        .map_err(store_err("update status"))?;
    Ok(())
}

/// Removes every container this instance made for `key` when no resource `key` exists any
/// more (it was removed without its finalizer, or the store lost it): such containers are
/// orphans. Containers of other berth instances (another data directory) and of builds that
/// set no instance label are never touched.
///
/// # Errors
///
/// Driver and audit failures.
pub async fn remove_orphans(ctx: &Context, key: &ResourceKey) -> Result<Action, Error> {
    if key.kind != Kind::Container {
        return Ok(Action::await_change());
    }
    let name = labels::container_name(&key.namespace, &key.name);
    let observation = observe(ctx, key, &name).await?;
    for c in &observation.containers {
        if c.state.is_up() {
            let action = format!("stop orphaned container {}", short(&c.id));
            act(ctx, key, verbs::CONTAINER_STOP, action, || {
                ctx.driver.stop_container(&c.id, ORPHAN_GRACE)
            })
            .await?;
        }
        let action = format!("remove orphaned container {}", short(&c.id));
        act(ctx, key, verbs::CONTAINER_REMOVE, action, || ctx.driver.remove_container(&c.id))
            .await?;
    }
    Ok(Action::await_change())
}

/// The resource's `berth.dev/restartedAt` annotation, which takes part in the spec hash.
#[cfg(test)]
mod tests {
    use super::{pull_action, pulled_reference};

    #[test]
    fn a_pull_message_names_its_reference_with_or_without_credentials() {
        for reference in ["127.0.0.1:31500/berth-test/busybox:1", "nginx@sha256:abc"] {
            for creds in [false, true] {
                assert_eq!(pulled_reference(&pull_action(reference, creds)), Some(reference));
            }
        }
        assert_eq!(pulled_reference("create container web"), None);
    }
}
