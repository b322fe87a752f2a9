//! Docker system views: Engine version, and every container and image on the host with whether
//! berth manages it and which resource owns or wants it.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use berth_controller::docker::{ContainerFilter, DriverError, EngineVersion};
use berth_controller::labels;
use berth_controller::store::ListQuery;
use berth_schemas::Kind;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::ApiError;
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
