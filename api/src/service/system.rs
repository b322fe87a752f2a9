//! Service: the Docker system views and the admin's prune, written once for REST
//! (`/api/v1/system/*`) and GraphQL (`engine`, `systemInfo`, `diskUsage`, `dockerContainers`,
//! `dockerImages`, `systemPrune`).
//!
//! Every function answers a typed outcome; each type serializes to the REST body and is the
//! GraphQL type as well, so the two faces cannot drift apart.
//!
//! # What prune removes
//!
//! berth never touches Docker objects it does not own, so [`prune`] removes only:
//!
//! - **orphan containers**: labelled `dev.berth.managed-by=berth` with this store's instance id
//!   (`dev.berth.instance`), whose resource (`dev.berth.kind`/`namespace`/`name`) no longer
//!   exists in the store;
//! - **leftover images**: image references berth pulled (a successful `docker.image.pull` in
//!   the audit log) that no resource names (no `Image` `reference`, no `Container` `image`).
//!   When the reference is the image's last tag, removing it deletes the image, so then also no
//!   container at all (berth's or anyone's) may use the image and no resource may want it under
//!   another name; otherwise only the tag goes.
//!
//! Containers of other berth instances, containers without the ownership labels, images berth
//! did not pull, volumes, networks and the build cache are never removed: `docker system prune`
//! remains the tool for those. Every removal (and every failed one) is audited, here.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use async_graphql::{Enum, SimpleObject};
use berth_controller::docker::{ContainerFilter, Driver, DriverError};
use berth_controller::labels;
use berth_controller::reconcile::container::pulled_reference;
use berth_controller::reconcile::verbs;
use berth_controller::store::{AuditEntry, AuditOutcome, AuditQuery, ListQuery};
use berth_schemas::{DynamicObject, Kind, ResourceKey};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::policy::{Action, authorize};
use crate::state::AppState;

fn driver_error(e: DriverError) -> ApiError {
    if e.is_transient() {
        tracing::warn!(error = %crate::error::ErrorChain(&e), "Docker Engine call failed");
        ApiError::Unavailable("the Docker Engine is not reachable".to_owned())
    } else {
        ApiError::internal(e)
    }
}

fn driver(state: &AppState) -> Result<&dyn Driver, ApiError> {
    state.driver().ok_or_else(|| ApiError::Unavailable("no Docker Engine is configured".to_owned()))
}

/// The Engine's version and berth's (`GET /api/v1/system/version`, GraphQL `engine`).
#[derive(Debug, Clone, Serialize, SimpleObject, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "EngineInfo")]
pub struct SystemVersion {
    /// The Engine release, e.g. `20.10.24`.
    pub version: String,
    /// The newest API version the Engine speaks.
    pub api_version: String,
    /// The oldest API version the Engine accepts.
    pub min_api_version: Option<String>,
    /// The API version berth's client uses after negotiation.
    pub negotiated_api_version: String,
    /// The Engine's operating system (`linux`).
    pub os: String,
    /// The Engine's architecture (`amd64`).
    pub arch: String,
    /// berth's own version.
    pub berth_version: String,
}

/// The Engine's version.
///
/// # Errors
///
/// `unavailable` without an Engine or when it does not answer.
pub async fn version(state: &AppState) -> Result<SystemVersion, ApiError> {
    let v = driver(state)?.version().await.map_err(driver_error)?;
    Ok(SystemVersion {
        version: v.version,
        api_version: v.api_version,
        min_api_version: v.min_api_version,
        negotiated_api_version: v.negotiated_api_version,
        os: v.os,
        arch: v.arch,
        berth_version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// The resource that owns a Docker object, from its ownership labels.
#[derive(Debug, Clone, Serialize, SimpleObject, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "DockerOwner")]
pub struct Owner {
    /// Kind.
    pub kind: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// The resource's uid.
    pub uid: Option<String>,
}

/// A Docker container, berth's or not.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemContainer {
    /// Container id.
    pub id: String,
    /// Name (without the leading `/`).
    pub name: String,
    /// Image as asked for.
    pub image: String,
    /// The id of the image it runs.
    pub image_id: String,
    /// `running`, `exited`, ...
    pub state: String,
    /// When it was created.
    pub created_at: Option<DateTime<Utc>>,
    /// Whether it carries berth's `dev.berth.managed-by=berth` label.
    pub managed: bool,
    /// For berth's: the resource its labels name.
    pub owner: Option<Owner>,
    /// Its labels (not in the REST body, which predates them).
    #[serde(skip)]
    pub labels: HashMap<String, String>,
}

/// Every container on the Engine.
///
/// # Errors
///
/// `unavailable` without an Engine or when it does not answer.
pub async fn containers(state: &AppState) -> Result<Vec<SystemContainer>, ApiError> {
    let all =
        driver(state)?.list_containers(&ContainerFilter::all()).await.map_err(driver_error)?;
    Ok(all
        .into_iter()
        .map(|c| {
            let managed = c.is_managed();
            let owner = managed.then(|| Owner {
                kind: c.labels.get(labels::KIND).cloned(),
                namespace: c.labels.get(labels::NAMESPACE).cloned(),
                name: c.labels.get(labels::NAME).cloned(),
                uid: c.labels.get(labels::UID).cloned(),
            });
            SystemContainer {
                id: c.id,
                name: c.name.trim_start_matches('/').to_owned(),
                image: c.image,
                image_id: c.image_id,
                state: c.state.as_str().to_owned(),
                created_at: c.created_at,
                managed,
                owner,
                labels: c.labels,
            }
        })
        .collect())
}

/// A Docker image and the resources that want it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemImage {
    /// Image id.
    pub id: String,
    /// Tags.
    pub repo_tags: Vec<String>,
    /// Registry digests.
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    pub size: i64,
    /// When it was built.
    pub created_at: Option<DateTime<Utc>>,
    /// Whether a resource wants it, or it carries berth's labels.
    pub managed: bool,
    /// The resources (`Kind/namespace/name`) naming one of its tags.
    pub wanted_by: Vec<String>,
}

/// The image reference a resource wants present: an `Image`'s `reference`, a `Container`'s
/// `image`.
fn referenced_image(o: &DynamicObject) -> Option<&str> {
    let field = match o.kind {
        Kind::Image => "reference",
        Kind::Container => "image",
    };
    o.spec.get(field).and_then(serde_json::Value::as_str)
}

/// The spellings under which an image tag may be listed for a reference: as written, and in
/// Docker's familiar `repository:tag` form (`busybox` is listed as `busybox:latest`).
fn tag_forms(reference: &str) -> [String; 2] {
    let familiar = berth_schemas::ImageReference::parse(reference)
        .map(|i| format!("{}:{}", i.repository(), i.tag_or_latest()))
        .unwrap_or_else(|_| reference.to_owned());
    [reference.to_owned(), familiar]
}

/// Every image on the Engine, with the resources that want it (an `Image` naming one of its
/// tags, or a `Container` running it).
///
/// # Errors
///
/// `unavailable` without an Engine or when it does not answer.
pub async fn images(state: &AppState) -> Result<Vec<SystemImage>, ApiError> {
    let all = driver(state)?.list_images().await.map_err(driver_error)?;
    let resources = state.resources().list(&ListQuery::default()).await?;
    let mut wanted: HashMap<String, Vec<String>> = HashMap::new();
    for o in &resources.items {
        if let Some(r) = referenced_image(o) {
            let key = o.key().to_string();
            for form in BTreeSet::from(tag_forms(r)) {
                wanted.entry(form).or_default().push(key.clone());
            }
        }
    }
    Ok(all
        .into_iter()
        .map(|i| {
            let wanted_by: BTreeSet<String> =
                i.repo_tags.iter().filter_map(|t| wanted.get(t)).flatten().cloned().collect();
            let managed = !wanted_by.is_empty() || labels::is_managed(&i.labels);
            SystemImage {
                id: i.id,
                repo_tags: i.repo_tags,
                repo_digests: i.repo_digests,
                size: i.size,
                created_at: i.created_at,
                managed,
                wanted_by: wanted_by.into_iter().collect(),
            }
        })
        .collect())
}

/// The bytes under `path`, recursively (symlinks not followed; unreadable entries count 0).
fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Container counts by state.
#[derive(Debug, Clone, Copy, Serialize, SimpleObject, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerCounts {
    /// Every container.
    pub total: u64,
    /// Running.
    pub running: u64,
    /// Paused.
    pub paused: u64,
    /// Stopped (created, exited, dead).
    pub stopped: u64,
}

/// The Engine's host facts and object counts.
#[derive(Debug, Clone, Serialize, SimpleObject, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EngineFacts {
    /// The Engine's host name.
    pub name: String,
    /// The Engine release.
    pub version: String,
    /// Containers by state.
    pub containers: ContainerCounts,
    /// Images (as Docker counts them).
    pub images: u64,
    /// The storage driver (`overlay2`).
    pub storage_driver: String,
    /// The host's kernel version.
    pub kernel_version: String,
    /// The host's operating system.
    pub operating_system: String,
    /// `linux` or `windows`.
    pub os_type: String,
    /// The host's architecture.
    pub architecture: String,
    /// CPUs the Engine sees.
    pub cpus: u64,
    /// Memory the Engine sees, in bytes.
    pub memory_bytes: u64,
    /// The Engine's data directory.
    pub root_dir: String,
}

/// The containers berth manages.
#[derive(Debug, Clone, Copy, Serialize, SimpleObject, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedContainers {
    /// How many.
    pub total: u64,
    /// How many are up (running, paused or restarting).
    pub running: u64,
}

/// berth's own facts.
#[derive(Debug, Clone, Serialize, SimpleObject, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BerthFacts {
    /// berth's version.
    pub version: String,
    /// This store's instance id (`dev.berth.instance` on what it creates).
    pub instance_id: String,
    /// Bytes the data directory holds.
    pub store_bytes: u64,
    /// The store revision.
    pub revision: u64,
    /// Resources by kind (`{"Container": 3, "Image": 1}`).
    pub resources: BTreeMap<String, u64>,
    /// The containers this instance manages.
    pub managed_containers: ManagedContainers,
}

/// `docker info` and berth's own numbers (`GET /api/v1/system/info`, GraphQL `systemInfo`).
#[derive(Debug, Clone, Serialize, SimpleObject, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemInfo {
    /// The Engine.
    pub engine: EngineFacts,
    /// berth.
    pub berth: BerthFacts,
}

/// The Engine's host facts and object counts, and berth's own (store size, resources by kind,
/// containers it manages).
///
/// # Errors
///
/// `unavailable` without an Engine or when it does not answer; store errors.
pub async fn info(state: &AppState) -> Result<SystemInfo, ApiError> {
    let d = driver(state)?;
    let i = d.info().await.map_err(driver_error)?;
    let instance = state.resources().instance_id().to_owned();
    let managed = d
        .list_containers(&ContainerFilter::managed().with_label(labels::INSTANCE, instance.clone()))
        .await
        .map_err(driver_error)?;
    let resources = state.resources().list(&ListQuery::default()).await?;
    let by_kind = Kind::ALL
        .into_iter()
        .map(|k| {
            (k.as_str().to_owned(), resources.items.iter().filter(|o| o.kind == k).count() as u64)
        })
        .collect();
    let data_dir = state.config().data_dir.clone();
    let store_bytes =
        tokio::task::spawn_blocking(move || dir_size(&data_dir)).await.unwrap_or_default();
    Ok(SystemInfo {
        engine: EngineFacts {
            name: i.name,
            version: i.server_version,
            containers: ContainerCounts {
                total: i.containers,
                running: i.containers_running,
                paused: i.containers_paused,
                stopped: i.containers_stopped,
            },
            images: i.images,
            storage_driver: i.storage_driver,
            kernel_version: i.kernel_version,
            operating_system: i.operating_system,
            os_type: i.os_type,
            architecture: i.architecture,
            cpus: i.cpus,
            memory_bytes: i.memory_bytes,
            root_dir: i.root_dir,
        },
        berth: BerthFacts {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            instance_id: instance,
            store_bytes,
            revision: resources.revision,
            resources: by_kind,
            managed_containers: ManagedContainers {
                total: managed.len() as u64,
                running: managed.iter().filter(|c| c.state.is_up()).count() as u64,
            },
        },
    })
}

/// berth's share of one kind of Docker object.
#[derive(Debug, Clone, Copy, Serialize, SimpleObject, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BerthShare {
    /// How many are berth's.
    pub count: u64,
    /// Their size in bytes (not reported for volumes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// Disk use of one kind of Docker object (images, containers, volumes).
#[derive(Debug, Clone, Copy, Serialize, SimpleObject, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageSummary {
    /// How many there are.
    pub count: u64,
    /// How many are in use (images: used by a container; containers: up; volumes: mounted).
    pub active: u64,
    /// Their total size in bytes (volumes: null when the Engine does not report sizes).
    pub size_bytes: Option<u64>,
    /// Images: bytes shared between images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_bytes: Option<u64>,
    /// Bytes a prune of unused objects would free (not reported for volumes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reclaimable_bytes: Option<u64>,
    /// The share berth manages.
    pub berth: BerthShare,
}

/// The build cache's totals.
#[derive(Debug, Clone, Copy, Serialize, SimpleObject, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildCacheSummary {
    /// Cache records.
    pub count: u64,
    /// Their size in bytes.
    pub size_bytes: u64,
    /// Bytes a prune would free.
    pub reclaimable_bytes: u64,
}

/// What occupies the Engine's disk (`docker system df`), with berth's share
/// (`GET /api/v1/system/df`, GraphQL `diskUsage`).
#[derive(Debug, Clone, Copy, Serialize, SimpleObject, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskUsageReport {
    /// Images.
    pub images: UsageSummary,
    /// Containers (their writable layers).
    pub containers: UsageSummary,
    /// Volumes.
    pub volumes: UsageSummary,
    /// The build cache, when the Engine's API version reports it.
    pub build_cache: Option<BuildCacheSummary>,
}

/// Disk usage by images, containers, volumes and build cache, each with the share berth
/// manages.
///
/// # Errors
///
/// `unavailable` without an Engine or when it does not answer; store errors.
pub async fn disk_usage(state: &AppState) -> Result<DiskUsageReport, ApiError> {
    let d = driver(state)?;
    let du = d.disk_usage().await.map_err(driver_error)?;
    let resources = state.resources().list(&ListQuery::default()).await?;
    let referenced: HashSet<&str> = resources.items.iter().filter_map(referenced_image).collect();
    let managed_image = |tags: &[String]| tags.iter().any(|t| referenced.contains(t.as_str()));
    let image_ids_in_use: HashSet<String> = d
        .list_containers(&ContainerFilter::all())
        .await
        .map_err(driver_error)?
        .into_iter()
        .map(|c| c.image_id)
        .collect();
    let n = |it: usize| it as u64;
    let images = &du.images;
    let berth_images = images.iter().filter(|i| managed_image(&i.repo_tags));
    let images_summary = UsageSummary {
        count: n(images.len()),
        active: n(images.iter().filter(|i| image_ids_in_use.contains(&i.id)).count()),
        size_bytes: Some(images.iter().map(|i| i.size).sum()),
        shared_bytes: Some(images.iter().filter_map(|i| i.shared_size).sum()),
        reclaimable_bytes: Some(
            images
                .iter()
                .filter(|i| !image_ids_in_use.contains(&i.id))
                .map(|i| i.size.saturating_sub(i.shared_size.unwrap_or(0)))
                .sum(),
        ),
        berth: BerthShare {
            count: n(berth_images.clone().count()),
            size_bytes: Some(berth_images.map(|i| i.size).sum()),
        },
    };
    let containers = &du.containers;
    let berth_containers = containers.iter().filter(|c| labels::is_managed(&c.labels));
    let containers_summary = UsageSummary {
        count: n(containers.len()),
        active: n(containers.iter().filter(|c| c.state.is_up()).count()),
        size_bytes: Some(containers.iter().map(|c| c.size_rw).sum()),
        shared_bytes: None,
        reclaimable_bytes: Some(
            containers.iter().filter(|c| !c.state.is_up()).map(|c| c.size_rw).sum(),
        ),
        berth: BerthShare {
            count: n(berth_containers.clone().count()),
            size_bytes: Some(berth_containers.map(|c| c.size_rw).sum()),
        },
    };
    let volumes = &du.volumes;
    let volumes_summary = UsageSummary {
        count: n(volumes.len()),
        active: n(volumes.iter().filter(|v| v.ref_count.is_some_and(|c| c > 0)).count()),
        size_bytes: volumes.iter().map(|v| v.size).sum(),
        shared_bytes: None,
        reclaimable_bytes: None,
        berth: BerthShare {
            count: n(volumes.iter().filter(|v| labels::is_managed(&v.labels)).count()),
            size_bytes: None,
        },
    };
    Ok(DiskUsageReport {
        images: images_summary,
        containers: containers_summary,
        volumes: volumes_summary,
        build_cache: du.build_cache.map(|b| BuildCacheSummary {
            count: b.count,
            size_bytes: b.size,
            reclaimable_bytes: b.reclaimable,
        }),
    })
}

/// What a pruned object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Enum, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[graphql(rename_items = "lowercase")]
pub enum PrunedType {
    /// A container of a resource that no longer exists.
    Container,
    /// An image tag berth pulled that no resource names.
    Image,
}

impl PrunedType {
    /// `container` or `image`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Image => "image",
        }
    }
}

/// One object prune removed, would remove, or failed to remove.
#[derive(Debug, Clone, Serialize, SimpleObject, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pruned {
    /// `container` or `image`.
    #[graphql(name = "type")]
    pub r#type: PrunedType,
    /// The container id, or the image id.
    pub id: String,
    /// The container name, or the image reference (tag) berth pulled.
    pub name: String,
    /// Why it is a leftover.
    pub reason: String,
    /// Whether it was removed (`false` in a dry run).
    pub removed: bool,
    /// Why removing it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What prune did (`POST /api/v1/system/prune`, GraphQL `systemPrune`).
#[derive(Debug, Clone, Serialize, SimpleObject, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    /// Whether it only reported.
    pub dry_run: bool,
    /// The objects, containers first.
    pub items: Vec<Pruned>,
}

/// The image references berth pulled, from the audit log's successful `docker.image.pull`.
async fn pulled_by_berth(state: &AppState) -> Result<BTreeSet<String>, ApiError> {
    let mut out = BTreeSet::new();
    let mut query =
        AuditQuery { verb: Some(verbs::IMAGE_PULL.to_owned()), limit: 1000, ..Default::default() };
    loop {
        let page = state.audit().query(&query).await?;
        for e in &page.events {
            if e.outcome != AuditOutcome::Success {
                continue;
            }
            if let Some(r) = e.message.as_deref().and_then(pulled_reference) {
                out.insert(r.to_owned());
            }
        }
        match page.next_cursor {
            Some(c) if !page.events.is_empty() => query.cursor = Some(c),
            _ => break,
        }
    }
    Ok(out)
}

/// Removes berth's own leftovers (admin), never what a resource wants and never another
/// owner's objects (see the module documentation). With `dry_run`, only reports them.
///
/// # Errors
///
/// `forbidden` unless `principal` may prune (admin); `unavailable` without an Engine or when
/// it does not answer; store errors. A failed removal is not an error: it is reported in its
/// item and audited.
#[tracing::instrument(skip_all, fields(user = %principal.username, dry_run = dry_run))]
pub async fn prune(
    state: &AppState,
    principal: &Principal,
    dry_run: bool,
) -> Result<PruneReport, ApiError> {
    authorize(principal.role, Action::SystemPrune)?;
    let d = driver(state)?;
    let instance = state.resources().instance_id().to_owned();
    let all = d.list_containers(&ContainerFilter::all()).await.map_err(driver_error)?;
    let mut items: Vec<Pruned> = Vec::new();
    let mut plan: Vec<(Pruned, Option<ResourceKey>)> = Vec::new();
    for c in &all {
        let Some(key) = labels::owned_resource_key(&c.labels, &instance) else { continue };
        // Read the store per candidate, right before deciding: a resource applied since the
        // listing keeps its container.
        if state.resources().get(&key).await?.is_some() {
            continue;
        }
        plan.push((
            Pruned {
                r#type: PrunedType::Container,
                id: c.id.clone(),
                name: c.name.clone(),
                reason: format!("its resource {key} no longer exists"),
                removed: false,
                error: None,
            },
            Some(key),
        ));
    }
    let pulled = pulled_by_berth(state).await?;
    if !pulled.is_empty() {
        let resources = state.resources().list(&ListQuery::default()).await?;
        let referenced: HashSet<&str> =
            resources.items.iter().filter_map(referenced_image).collect();
        let orphan_ids: HashSet<&str> = plan.iter().map(|(p, _)| p.id.as_str()).collect();
        // Images used by any container that stays (berth's or anyone's).
        let used: HashSet<&str> = all
            .iter()
            .filter(|c| !orphan_ids.contains(c.id.as_str()))
            .map(|c| c.image_id.as_str())
            .collect();
        let mut wanted_ids: HashSet<String> = HashSet::new();
        for r in &referenced {
            if let Some(i) = d.inspect_image(r).await.map_err(driver_error)? {
                wanted_ids.insert(i.id);
            }
        }
        for reference in pulled.iter().filter(|r| !referenced.contains(r.as_str())) {
            let Some(image) = d.inspect_image(reference).await.map_err(driver_error)? else {
                continue;
            };
            // Removing one of several tags only untags: the image, and every container and
            // resource using it by id or by another tag, stay. Removing the last tag deletes
            // the image, so then nothing may use or want it.
            let last_tag = image.repo_tags.len() <= 1;
            if last_tag && (used.contains(image.id.as_str()) || wanted_ids.contains(&image.id)) {
                continue;
            }
            plan.push((
                Pruned {
                    r#type: PrunedType::Image,
                    id: image.id.clone(),
                    name: reference.clone(),
                    reason: if last_tag {
                        "berth pulled it and no resource or container uses it".to_owned()
                    } else {
                        "berth pulled this tag and no resource names it (the image keeps its \
                         other tags)"
                            .to_owned()
                    },
                    removed: false,
                    error: None,
                },
                None,
            ));
        }
    }
    let ctx = principal.ctx();
    for (mut p, key) in plan {
        if !dry_run {
            // Containers first (the plan lists them first), so their images are free after.
            let result = match p.r#type {
                PrunedType::Container => {
                    // The resource may have been applied again meanwhile: look once more.
                    if let Some(k) = &key
                        && state.resources().get(k).await?.is_some()
                    {
                        continue;
                    }
                    d.remove_container(&p.id).await
                }
                PrunedType::Image => d.remove_image(&p.name, false).await,
            };
            let kind = p.r#type.as_str();
            let verb = format!("docker.{kind}.remove");
            let mut entry;
            match result {
                Ok(()) => {
                    p.removed = true;
                    entry = AuditEntry::new(ctx.clone(), verb, AuditOutcome::Success)
                        .message(format!("system prune: remove {kind} {} ({})", p.name, p.reason));
                }
                Err(e) => {
                    let msg = if e.is_transient() {
                        "the Docker Engine is not reachable".to_owned()
                    } else {
                        e.to_string()
                    };
                    entry = AuditEntry::new(ctx.clone(), verb, AuditOutcome::Failure)
                        .message(format!("system prune: remove {kind} {}: {msg}", p.name));
                    p.error = Some(msg);
                }
            }
            if let Some(k) = &key {
                entry = entry.target(k.kind.as_str(), Some(k.namespace.clone()), k.name.clone());
            }
            state.audit().append(entry).await?;
        }
        items.push(p);
    }
    Ok(PruneReport { dry_run, items })
}
