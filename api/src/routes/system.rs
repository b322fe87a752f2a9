//! Docker system views: Engine version, info and disk usage, every container and image on the
//! host with whether berth manages it and which resource owns or wants it, and the admin's
//! prune of berth's own leftovers.
//!
//! # What prune removes
//!
//! berth never touches Docker objects it does not own, so `POST /api/v1/system/prune` removes
//! only:
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
//! remains the tool for those. Every removal (and every failed one) is audited.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use axum::Json;
use axum::extract::State;
use berth_controller::docker::{
    ContainerFilter, DiskUsage, DriverError, EngineInfo, EngineVersion,
};
use berth_controller::labels;
use berth_controller::reconcile::container::pulled_reference;
use berth_controller::reconcile::verbs;
use berth_controller::store::{AuditEntry, AuditOutcome, AuditQuery, ListQuery};
use berth_schemas::{Kind, ResourceKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

fn driver_error(e: DriverError) -> ApiError {
    if e.is_transient() {
        tracing::warn!(error = %crate::error::ErrorChain(&e), "Docker Engine call failed");
        ApiError::Unavailable("the Docker Engine is not reachable".to_owned())
    } else {
        ApiError::internal(e)
    }
}

fn driver(state: &AppState) -> Result<&dyn berth_controller::docker::Driver, ApiError> {
    state.driver().ok_or_else(|| ApiError::Unavailable("no Docker Engine is configured".to_owned()))
}

/// `GET /api/v1/system/version`.
pub async fn version(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let EngineVersion { version, api_version, min_api_version, negotiated_api_version, os, arch } =
        driver(&state)?.version().await.map_err(driver_error)?;
    Ok(Json(json!({
        "version": version, "apiVersion": api_version, "minApiVersion": min_api_version,
        "negotiatedApiVersion": negotiated_api_version, "os": os, "arch": arch,
        "berthVersion": env!("CARGO_PKG_VERSION"),
    })))
}

/// The resource that owns a Docker object, from its ownership labels.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
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

/// `GET /api/v1/system/containers`: every container on the Engine.
pub async fn containers(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all =
        driver(&state)?.list_containers(&ContainerFilter::all()).await.map_err(driver_error)?;
    let items: Vec<Value> = all
        .into_iter()
        .map(|c| {
            let managed = c.labels.get(labels::MANAGED_BY).map(String::as_str)
                == Some(labels::MANAGED_BY_VALUE);
            let owner = managed.then(|| Owner {
                kind: c.labels.get(labels::KIND).cloned(),
                namespace: c.labels.get(labels::NAMESPACE).cloned(),
                name: c.labels.get(labels::NAME).cloned(),
                uid: c.labels.get(labels::UID).cloned(),
            });
            json!({
                "id": c.id, "name": c.name, "image": c.image, "imageId": c.image_id,
                "state": format!("{:?}", c.state).to_lowercase(), "createdAt": c.created_at,
                "managed": managed, "owner": owner,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// `GET /api/v1/system/images`: every image on the Engine and the resources that want it (an
/// `Image` naming one of its tags, or a `Container` running it).
pub async fn images(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = driver(&state)?.list_images().await.map_err(driver_error)?;
    let resources = state.resources().list(&ListQuery::default()).await?;
    let wants = |tags: &[String]| -> Vec<String> {
        let tags: BTreeSet<&str> = tags.iter().map(String::as_str).collect();
        resources
            .items
            .iter()
            .filter(|o| {
                let field = match o.kind {
                    Kind::Image => "reference",
                    Kind::Container => "image",
                };
                o.spec.get(field).and_then(Value::as_str).is_some_and(|r| tags.contains(r))
            })
            .map(|o| o.key().to_string())
            .collect()
    };
    let items: Vec<Value> = all
        .into_iter()
        .map(|i| {
            let wanted_by = wants(&i.repo_tags);
            json!({
                "id": i.id, "repoTags": i.repo_tags, "repoDigests": i.repo_digests, "size": i.size,
                "createdAt": i.created_at, "managed": !wanted_by.is_empty(), "wantedBy": wanted_by,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
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

/// `GET /api/v1/system/info`: the Engine's host facts and object counts, and berth's own
/// (store size, resources by kind, containers it manages).
pub async fn info(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let d = driver(&state)?;
    let EngineInfo {
        name,
        server_version,
        containers,
        containers_running,
        containers_paused,
        containers_stopped,
        images,
        storage_driver,
        kernel_version,
        operating_system,
        os_type,
        architecture,
        cpus,
        memory_bytes,
        root_dir,
    } = d.info().await.map_err(driver_error)?;
    let instance = state.resources().instance_id().to_owned();
    let managed = d
        .list_containers(&ContainerFilter::managed().with_label(labels::INSTANCE, instance.clone()))
        .await
        .map_err(driver_error)?;
    let resources = state.resources().list(&ListQuery::default()).await?;
    let mut by_kind: BTreeSet<(&str, usize)> = BTreeSet::new();
    for k in Kind::ALL {
        by_kind.insert((k.as_str(), resources.items.iter().filter(|o| o.kind == k).count()));
    }
    let by_kind: serde_json::Map<String, Value> =
        by_kind.into_iter().map(|(k, n)| (k.to_owned(), json!(n))).collect();
    let data_dir = state.config().data_dir.clone();
    let store_bytes =
        tokio::task::spawn_blocking(move || dir_size(&data_dir)).await.unwrap_or_default();
    Ok(Json(json!({
        "engine": {
            "name": name, "version": server_version,
            "containers": {
                "total": containers, "running": containers_running,
                "paused": containers_paused, "stopped": containers_stopped,
            },
            "images": images, "storageDriver": storage_driver, "kernelVersion": kernel_version,
            "operatingSystem": operating_system, "osType": os_type,
            "architecture": architecture, "cpus": cpus, "memoryBytes": memory_bytes,
            "rootDir": root_dir,
        },
        "berth": {
            "version": env!("CARGO_PKG_VERSION"),
            "instanceId": instance,
            "storeBytes": store_bytes,
            "revision": resources.revision,
            "resources": by_kind,
            "managedContainers": {
                "total": managed.len(),
                "running": managed.iter().filter(|c| c.state.is_up()).count(),
            },
        },
    })))
}

/// `GET /api/v1/system/df`: disk usage by images, containers, volumes and build cache, each with
/// the share berth manages.
pub async fn df(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let d = driver(&state)?;
    let DiskUsage { images, containers, volumes, build_cache } =
        d.disk_usage().await.map_err(driver_error)?;
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
    let shared: u64 = images.iter().filter_map(|i| i.shared_size).sum();
    let image_total: u64 = images.iter().map(|i| i.size).sum();
    let images_json = json!({
        "count": images.len(),
        "active": images.iter().filter(|i| image_ids_in_use.contains(&i.id)).count(),
        "sizeBytes": image_total,
        "sharedBytes": shared,
        "reclaimableBytes": images.iter().filter(|i| !image_ids_in_use.contains(&i.id))
            .map(|i| i.size.saturating_sub(i.shared_size.unwrap_or(0))).sum::<u64>(),
        "berth": {
            "count": images.iter().filter(|i| managed_image(&i.repo_tags)).count(),
            "sizeBytes": images.iter().filter(|i| managed_image(&i.repo_tags))
                .map(|i| i.size).sum::<u64>(),
        },
    });
    let is_berth = |l: &HashMap<String, String>| labels::is_managed(l);
    let containers_json = json!({
        "count": containers.len(),
        "active": containers.iter().filter(|c| c.state.is_up()).count(),
        "sizeBytes": containers.iter().map(|c| c.size_rw).sum::<u64>(),
        "reclaimableBytes": containers.iter().filter(|c| !c.state.is_up())
            .map(|c| c.size_rw).sum::<u64>(),
        "berth": {
            "count": containers.iter().filter(|c| is_berth(&c.labels)).count(),
            "sizeBytes": containers.iter().filter(|c| is_berth(&c.labels))
                .map(|c| c.size_rw).sum::<u64>(),
        },
    });
    let volume_sizes: Option<u64> = volumes.iter().map(|v| v.size).sum();
    let volumes_json = json!({
        "count": volumes.len(),
        "active": volumes.iter().filter(|v| v.ref_count.is_some_and(|n| n > 0)).count(),
        "sizeBytes": volume_sizes,
        "berth": {
            "count": volumes.iter().filter(|v| is_berth(&v.labels)).count(),
        },
    });
    let build_cache_json = build_cache.map(
        |b| json!({ "count": b.count, "sizeBytes": b.size, "reclaimableBytes": b.reclaimable }),
    );
    Ok(Json(json!({
        "images": images_json,
        "containers": containers_json,
        "volumes": volumes_json,
        "buildCache": build_cache_json,
    })))
}

/// The image reference a resource wants present: an `Image`'s `reference`, a `Container`'s
/// `image`.
fn referenced_image(o: &berth_schemas::DynamicObject) -> Option<&str> {
    let field = match o.kind {
        Kind::Image => "reference",
        Kind::Container => "image",
    };
    o.spec.get(field).and_then(Value::as_str)
}

/// `POST /api/v1/system/prune` query.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PruneQuery {
    /// Answer what would be removed, removing nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// One object prune removed, would remove, or failed to remove.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pruned {
    /// `container` or `image`.
    pub r#type: &'static str,
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

/// `POST /api/v1/system/prune` (admin): removes berth's own leftovers, never what a resource
/// wants and never another owner's objects (see the module documentation).
#[tracing::instrument(skip_all, fields(user = %principal.username, dry_run = q.dry_run))]
pub async fn prune(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<PruneQuery>,
) -> Result<Json<Value>, ApiError> {
    let d = driver(&state)?;
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
                r#type: "container",
                id: c.id.clone(),
                name: c.name.clone(),
                reason: format!("its resource {key} no longer exists"),
                removed: false,
                error: None,
            },
            Some(key),
        ));
    }
    let pulled = pulled_by_berth(&state).await?;
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
                    r#type: "image",
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
        if !q.dry_run {
            // Containers first (the plan lists them first), so their images are free after.
            let result = match p.r#type {
                "container" => {
                    // The resource may have been applied again meanwhile: look once more.
                    if let Some(k) = &key
                        && state.resources().get(k).await?.is_some()
                    {
                        continue;
                    }
                    d.remove_container(&p.id).await
                }
                _ => d.remove_image(&p.name, false).await,
            };
            let verb = format!("docker.{}.remove", p.r#type);
            let mut entry;
            match result {
                Ok(()) => {
                    p.removed = true;
                    entry = AuditEntry::new(ctx.clone(), verb, AuditOutcome::Success).message(
                        format!("system prune: remove {} {} ({})", p.r#type, p.name, p.reason),
                    );
                }
                Err(e) => {
                    let msg = if e.is_transient() {
                        "the Docker Engine is not reachable".to_owned()
                    } else {
                        e.to_string()
                    };
                    entry = AuditEntry::new(ctx.clone(), verb, AuditOutcome::Failure)
                        .message(format!("system prune: remove {} {}: {msg}", p.r#type, p.name));
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
    Ok(Json(json!({ "dryRun": q.dry_run, "items": items })))
}
