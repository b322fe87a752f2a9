//! The `Image` reconciler: keeps an image present (pulled per `pullPolicy`, with registry
//! credentials passed per pull) or absent on the host.
//!
//! - `Present`: `IfNotPresent` pulls when the image is missing; `Always` also re-pulls once the
//!   last pull is older than [`ImageConfig::always_repull_after`], so a moved tag is followed;
//!   `Never` only checks. While the pull runs, its progress is in `status.pull` (bytes and
//!   layers) and in the `Progressing` condition's message (at most every [`PROGRESS_EVERY`],
//!   plus once when sizes are first known and once when the download is complete).
//! - `Absent`: removes the image only if berth pulled it for this resource (the local image's
//!   id is `status.pulledImageId`, see [`pulled_by_berth`]) and no berth-managed container uses
//!   it. An image berth did not pull stays, with `Ready=False` reason `NotPulledByBerth`
//!   saying why; one in use stays with reason `InUse`.
//! - Deletion removes the image under the same rule, then drops the finalizer.
//!
//! A pull counts as berth's only when it brought an image the host did not have under that
//! reference (the id changed, or there was none): re-pulling an image someone else put there
//! does not make it berth's to remove ([`pulled_image_id_after`]).

use std::collections::BTreeMap;
use std::time::Duration;

use berth_schemas::condition::{DEGRADED, PROGRESSING, READY};
use berth_schemas::{ConditionStatus, Image, ImageStatus, Presence, PullPolicy, ResourceKey};
use chrono::Utc;
use futures::StreamExt;
use tokio::time::Instant;

use super::container::{pull_action, write_status_if_changed};
use super::{
    Context, Error, FINALIZER, act, condition, driver_err, intend, set_conditions, settle,
    store_err, verbs,
};
use crate::docker::{ContainerFilter, ObservedImage, PullProgress};
use crate::runtime::Action;
use crate::store::WriteContext;

/// How often pull progress is written to status at most.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Tuning of the image reconciler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageConfig {
    /// With `pullPolicy: Always`, how old the last pull may get before the next one.
    pub always_repull_after: Duration,
    /// How soon to look again at an `Absent` image held by a container.
    pub in_use_recheck: Duration,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            always_repull_after: Duration::from_secs(300),
            in_use_recheck: Duration::from_secs(30),
        }
    }
}

/// The berth-managed containers that run `image`, by name.
async fn users_of(ctx: &Context, image: &ObservedImage) -> Result<Vec<String>, Error> {
    let containers = ctx
        .driver
        .list_containers(&ContainerFilter::managed())
        .await
        .map_err(driver_err("list managed containers"))?;
    Ok(containers.into_iter().filter(|c| c.image_id == image.id).map(|c| c.name).collect())
}

/// Clears the failure fields of a pass that ends well.
fn settled(status: &mut ImageStatus) {
    status.last_error = None;
    status.next_retry_time = None;
}

/// Whether berth may remove `local`: berth's own pull for this resource produced it
/// (`status.pulledImageId` is its id). Anything else on the host under that reference was
/// put there by someone else, and berth leaves it.
pub fn pulled_by_berth(status: &ImageStatus, local: &ObservedImage) -> bool {
    status.pulled_image_id.as_deref() == Some(local.id.as_str())
}

/// What `status.pulledImageId` becomes after a pull: the new id when the pull brought an image
/// the host did not have under the reference (`before` is the id it had), the recorded id when
/// the pull confirmed the image berth had pulled, and nothing when the pull only confirmed an
/// image someone else had put there.
pub fn pulled_image_id_after(
    recorded: Option<&str>,
    before: Option<&str>,
    after: Option<&str>,
) -> Option<String> {
    match after {
        Some(a) if before != Some(a) || recorded == Some(a) => Some(a.to_owned()),
        _ => None,
    }
}

fn observed(status: &mut ImageStatus, image: Option<&ObservedImage>) {
    status.image_id = image.map(|i| i.id.clone());
    status.repo_digests = image.map(|i| i.repo_digests.clone()).unwrap_or_default();
    status.size = image.and_then(|i| u64::try_from(i.size).ok());
}

/// Drives one `Image` resource towards its spec.
///
/// # Errors
///
/// Driver and store failures (a refused credential is [`Error::Driver`] with
/// `RegistryAuth`, reason `RegistryAuthFailed`).
pub async fn reconcile(obj: &Image, ctx: &Context, config: &ImageConfig) -> Result<Action, Error> {
    let key = obj.key();
    let reference = obj.spec.reference.as_str();
    let generation = obj.metadata.generation;
    let deleting = obj.metadata.deletion_timestamp.is_some();
    if !deleting && !obj.metadata.finalizers.iter().any(|f| f == FINALIZER) {
        ctx.store
            .add_finalizer(&WriteContext::controller(), &key, FINALIZER)
            .await
            .map_err(store_err("add finalizer"))?;
    }
    let local = ctx
        .driver
        .inspect_image(reference)
        .await
        .map_err(driver_err(format!("inspect image {reference}")))?;
    let old = obj.status.clone();
    let mut status = old.clone().unwrap_or_default();
    status.observed_generation = generation;
    let now = Utc::now();
    let c = |t: &str, s, r: &str, m: String| condition(t, s, r, m, generation, now);
    use ConditionStatus::{False, True};

    if deleting {
        if let Some(image) = local.as_ref().filter(|i| pulled_by_berth(&status, i)) {
            let users = users_of(ctx, image).await?;
            if !users.is_empty() {
                let msg = format!(
                    "not removing {reference}: used by berth-managed container(s) {}",
                    users.join(", ")
                );
                set_conditions(
                    &mut status.conditions,
                    [
                        c(READY, False, "InUse", msg.clone()),
                        c(PROGRESSING, True, "Deleting", msg),
                        c(DEGRADED, False, "AsExpected", String::new()),
                    ],
                );
                settled(&mut status);
                write_status_if_changed(ctx, &key, old.as_ref(), &status).await?;
                return Ok(Action::requeue(config.in_use_recheck));
            }
            let action = format!("remove image {reference}");
            act(ctx, &key, verbs::IMAGE_REMOVE, action, || {
                ctx.driver.remove_image(reference, false)
            })
            .await?;
        }
        ctx.store
            .remove_finalizer(&WriteContext::controller(), &key, FINALIZER)
            .await
            .map_err(store_err("remove finalizer"))?;
        return Ok(Action::await_change());
    }

    match obj.spec.presence {
        Presence::Absent => {
            let Some(image) = local else {
                observed(&mut status, None);
                set_conditions(
                    &mut status.conditions,
                    [
                        c(READY, True, "Absent", String::new()),
                        c(PROGRESSING, False, "Reconciled", String::new()),
                        c(DEGRADED, False, "AsExpected", String::new()),
                    ],
                );
                settled(&mut status);
                write_status_if_changed(ctx, &key, old.as_ref(), &status).await?;
                return Ok(Action::await_change());
            };
            if !pulled_by_berth(&status, &image) {
                let msg = format!(
                    "{reference} ({}) was not pulled by berth for this resource; berth removes \
                     only images it pulled, so it stays",
                    short_id(&image.id)
                );
                observed(&mut status, Some(&image));
                set_conditions(
                    &mut status.conditions,
                    [
                        c(READY, False, "NotPulledByBerth", msg.clone()),
                        c(PROGRESSING, False, "NotPulledByBerth", String::new()),
                        c(DEGRADED, True, "NotPulledByBerth", msg),
                    ],
                );
                settled(&mut status);
                write_status_if_changed(ctx, &key, old.as_ref(), &status).await?;
                return Ok(Action::await_change());
            }
            let users = users_of(ctx, &image).await?;
            if !users.is_empty() {
                let msg = format!(
                    "{reference} is used by berth-managed container(s) {}; it stays until they \
                     no longer use it",
                    users.join(", ")
                );
                observed(&mut status, Some(&image));
                set_conditions(
                    &mut status.conditions,
                    [
                        c(READY, False, "InUse", msg.clone()),
                        c(PROGRESSING, False, "InUse", String::new()),
                        c(DEGRADED, True, "InUse", msg),
                    ],
                );
                settled(&mut status);
                write_status_if_changed(ctx, &key, old.as_ref(), &status).await?;
                return Ok(Action::requeue(config.in_use_recheck));
            }
            let action = format!("remove image {reference}");
            act(ctx, &key, verbs::IMAGE_REMOVE, action, || {
                ctx.driver.remove_image(reference, false)
            })
            .await?;
            observed(&mut status, None);
            set_conditions(
                &mut status.conditions,
                [
                    c(READY, True, "Absent", String::new()),
                    c(PROGRESSING, False, "Reconciled", String::new()),
                    c(DEGRADED, False, "AsExpected", String::new()),
                ],
            );
            settled(&mut status);
            write_status_if_changed(ctx, &key, old.as_ref(), &status).await?;
            Ok(Action::await_change())
        }
        Presence::Present => {
            let last_pull_age =
                status.pulled_at.and_then(|t| (now - t).to_std().ok()).unwrap_or(Duration::MAX);
            let pull = match (obj.spec.pull_policy, &local) {
                (PullPolicy::Never, _) => false,
                (_, None) => true,
                (PullPolicy::Always, Some(_)) => last_pull_age >= config.always_repull_after,
                (PullPolicy::IfNotPresent, Some(_)) => false,
            };
            let image = if pull {
                pull_reporting_progress(ctx, obj, &mut status).await?;
                status.pulled_at = Some(Utc::now());
                let pulled = ctx
                    .driver
                    .inspect_image(reference)
                    .await
                    .map_err(driver_err(format!("inspect image {reference}")))?;
                status.pulled_image_id = pulled_image_id_after(
                    status.pulled_image_id.as_deref(),
                    local.as_ref().map(|i| i.id.as_str()),
                    pulled.as_ref().map(|i| i.id.as_str()),
                );
                pulled
            } else {
                local
            };
            observed(&mut status, image.as_ref());
            let conditions = match &image {
                Some(_) => [
                    c(READY, True, "Present", String::new()),
                    c(PROGRESSING, False, "Reconciled", String::new()),
                    c(DEGRADED, False, "AsExpected", String::new()),
                ],
                None => {
                    let msg = format!("{reference} is not on the host and pullPolicy is Never");
                    [
                        c(READY, False, "ImageMissing", msg.clone()),
                        c(PROGRESSING, False, "ImageMissing", String::new()),
                        c(DEGRADED, True, "ImageMissing", msg),
                    ]
                }
            };
            set_conditions(&mut status.conditions, conditions);
            settled(&mut status);
            write_status_if_changed(ctx, &key, old.as_ref(), &status).await?;
            Ok(match obj.spec.pull_policy {
                PullPolicy::Always => Action::requeue(config.always_repull_after),
                _ => Action::await_change(),
            })
        }
    }
}

/// The first 12 hex digits of an image id, as `docker images` shows it.
fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

/// Pull progress summed over layers.
#[derive(Debug, Default)]
struct Progress {
    layers: BTreeMap<String, (u64, u64, bool)>,
}

impl Progress {
    fn add(&mut self, p: &PullProgress) {
        let Some(layer) = &p.layer else { return };
        // The Engine names the tag, not a layer, in `Pulling from <repository>`.
        if p.status.starts_with("Pulling from") {
            return;
        }
        let entry = self.layers.entry(layer.clone()).or_default();
        if let (Some(cur), Some(total)) = (p.current, p.total) {
            entry.0 = cur;
            entry.1 = total;
        }
        if p.status.starts_with("Pull complete") || p.status.starts_with("Already exists") {
            entry.0 = entry.1;
            entry.2 = true;
        }
    }

    /// The progress as the schema's `status.pull`.
    fn snapshot(&self) -> berth_schemas::image::PullProgress {
        let (cur, total) = self.layers.values().fold((0u64, 0u64), |(c, t), l| (c + l.0, t + l.1));
        berth_schemas::image::PullProgress {
            current_bytes: cur,
            total_bytes: total,
            layers_done: u32::try_from(self.layers.values().filter(|l| l.2).count())
                .unwrap_or(u32::MAX),
            layers_total: u32::try_from(self.layers.len()).unwrap_or(u32::MAX),
        }
    }

    /// Whether any layer's size is known yet.
    fn has_bytes(&self) -> bool {
        self.layers.values().any(|l| l.1 > 0)
    }

    fn message(&self, reference: &str) -> String {
        let done = self.layers.values().filter(|l| l.2).count();
        let (cur, total) = self.layers.values().fold((0u64, 0u64), |(c, t), l| (c + l.0, t + l.1));
        let mb = |b: u64| b as f64 / 1_000_000.0;
        format!(
            "pulling {reference}: {done} of {} layers done, {:.1} MB of {:.1} MB downloaded",
            self.layers.len(),
            mb(cur),
            mb(total)
        )
    }
}

/// Pulls the image, writing progress into `status.pull` and the `Progressing` condition as it
/// goes: at the start, when the first layer sizes are known, at most every [`PROGRESS_EVERY`]
/// after that, and once more when the download is complete; `status.pull` is cleared when the
/// pull ends (on failure the cleared status is written here, on success by the caller).
async fn pull_reporting_progress(
    ctx: &Context,
    obj: &Image,
    status: &mut ImageStatus,
) -> Result<(), Error> {
    let key: ResourceKey = obj.key();
    let reference = obj.spec.reference.as_str();
    let generation = obj.metadata.generation;
    let credentials = ctx.credentials.for_image(reference);
    let action = pull_action(reference, credentials.is_some());
    let intent = intend(ctx, &key, verbs::IMAGE_PULL, action).await?;
    let mut shown = obj.status.clone();
    let mut progress = Progress::default();
    let mut last_write: Option<Instant> = None;
    let mut wrote_bytes = false;
    let mut stream = ctx.driver.pull_image(reference, credentials);
    let mut result = Ok(());
    let mut ended = false;
    loop {
        let due = last_write.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY)
            || (!wrote_bytes && progress.has_bytes())
            || (ended && progress.has_bytes());
        if due {
            berth_schemas::condition::set_condition(
                &mut status.conditions,
                condition(
                    PROGRESSING,
                    ConditionStatus::True,
                    "Pulling",
                    progress.message(reference),
                    generation,
                    Utc::now(),
                ),
            );
            status.pull = Some(progress.snapshot());
            write_status_if_changed(ctx, &key, shown.as_ref(), status).await?;
            shown = Some(status.clone());
            last_write = Some(Instant::now());
            wrote_bytes |= progress.has_bytes();
        }
        if ended {
            break;
        }
        match stream.next().await {
            Some(Ok(p)) => progress.add(&p),
            Some(Err(e)) => {
                result = Err(e);
                break;
            }
            None => ended = true,
        }
    }
    status.pull = None;
    if result.is_err() {
        write_status_if_changed(ctx, &key, shown.as_ref(), status).await?;
    }
    settle(ctx, &key, intent, result).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(layer: &str, status: &str, current: Option<u64>, total: Option<u64>) -> PullProgress {
        PullProgress { layer: Some(layer.into()), status: status.into(), current, total }
    }

    fn image(id: &str) -> ObservedImage {
        ObservedImage {
            id: id.into(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            size: 0,
            labels: std::collections::HashMap::new(),
            created_at: None,
        }
    }

    #[test]
    fn only_the_image_berth_pulled_for_the_resource_is_berths_to_remove() {
        let mut status = ImageStatus::default();
        assert!(!pulled_by_berth(&status, &image("sha256:a")), "nothing recorded");
        status.pulled_image_id = Some("sha256:a".into());
        assert!(pulled_by_berth(&status, &image("sha256:a")));
        assert!(!pulled_by_berth(&status, &image("sha256:b")), "the tag now names another image");
    }

    #[test]
    fn a_pull_is_berths_only_when_it_brought_the_image() {
        // Nothing there before: berth brought it.
        assert_eq!(pulled_image_id_after(None, None, Some("a")).as_deref(), Some("a"));
        // The tag moved: berth brought the new image.
        assert_eq!(pulled_image_id_after(None, Some("a"), Some("b")).as_deref(), Some("b"));
        // Someone else's image, re-pulled unchanged: still not berth's.
        assert_eq!(pulled_image_id_after(None, Some("a"), Some("a")), None);
        // berth's own image, re-pulled unchanged: still berth's.
        assert_eq!(pulled_image_id_after(Some("a"), Some("a"), Some("a")).as_deref(), Some("a"));
        // Gone after the pull: nothing to record.
        assert_eq!(pulled_image_id_after(Some("a"), Some("a"), None), None);
    }

    #[test]
    fn pull_progress_sums_bytes_over_layers_and_counts_finished_ones() {
        let mut p = Progress::default();
        p.add(&msg("a", "Downloading", Some(500_000), Some(1_000_000)));
        p.add(&msg("b", "Downloading", Some(250_000), Some(1_000_000)));
        p.add(&msg("b", "Pull complete", None, None));
        p.add(&PullProgress {
            layer: None,
            status: "Digest: sha256:x".into(),
            current: None,
            total: None,
        });
        p.add(&msg("1.36", "Pulling from library/busybox", None, None));
        assert_eq!(
            p.message("r:1"),
            "pulling r:1: 1 of 2 layers done, 1.5 MB of 2.0 MB downloaded"
        );
    }
}
