//! The `Query` root: resources (kind-agnostic, and typed per kind), the caller, users and
//! tokens, audit, the directory sync, the Engine and its containers, images and disk usage.

use std::sync::Arc;

use async_graphql::{Context, Json, Object};
use axum::extract::State;
use berth_controller::docker::Driver;
use berth_controller::store::ListQuery;
use berth_schemas::selector::Selector;
use berth_schemas::{
    Container, ContainerSpec, ContainerStatus, Image, ImageSpec, ImageStatus, Kind, ResourceKey,
};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::error::{GqlResult, IntoGql, coded};
use super::policy::{Root, RootPolicy, principal};
use super::types::{
    ApiToken, AuditVerification, DockerContainer, DockerImage, Me, Resource, ResourceList, User,
    typed,
};
use crate::extract::ApiQuery;
use crate::routes;
use crate::service::accounts;
use crate::service::sync::SyncStatus;
use crate::service::system::{self, DiskUsageReport, SystemInfo, SystemVersion};
use crate::state::AppState;

/// The query root.
#[derive(Debug, Default)]
pub struct Query;

/// The kind named by `Container`, `container` or `containers`.
pub fn parse_kind(s: &str) -> GqlResult<Kind> {
    Kind::ALL
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(s) || k.plural().eq_ignore_ascii_case(s))
        .ok_or_else(|| coded("bad_request", format!("unknown kind {s:?}")))
}

/// A label selector (`app=web,tier!=db`); everything when absent.
pub fn parse_selector(s: Option<&str>) -> GqlResult<Selector> {
    match s {
        None => Ok(Selector::everything()),
        Some(s) => Selector::parse(s).map_err(|e| coded("bad_request", e.to_string())),
    }
}

/// The Docker driver, or `unavailable`.
pub fn docker(ctx: &Context<'_>) -> GqlResult<Arc<dyn Driver>> {
    state(ctx)?
        .driver_arc()
        .ok_or_else(|| coded("unavailable", "this server has no Docker Engine connection"))
}

/// The shared state.
pub fn state<'a>(ctx: &Context<'a>) -> GqlResult<&'a AppState> {
    ctx.data::<AppState>().map_err(|_| coded("internal", "internal error"))
}

fn to_json<T: serde::Serialize>(v: &T) -> GqlResult<Json<Value>> {
    serde_json::to_value(v).map(Json).map_err(|_| coded("internal", "internal error"))
}

/// The resources of `kind` in `namespace` (all when absent) matching `label_selector`, typed.
async fn typed_list<Spec, Status>(
    ctx: &Context<'_>,
    kind: Kind,
    namespace: Option<String>,
    label_selector: Option<&str>,
) -> GqlResult<Vec<berth_schemas::Object<Spec, Status>>>
where
    Spec: serde::de::DeserializeOwned,
    Status: serde::de::DeserializeOwned,
{
    let q = ListQuery { kind: Some(kind), namespace, selector: parse_selector(label_selector)? };
    let list = state(ctx)?.resources().list(&q).await.gql()?;
    list.items.iter().map(typed).collect()
}

/// One resource of `kind`, typed, or `None`.
async fn typed_one<Spec, Status>(
    ctx: &Context<'_>,
    kind: Kind,
    namespace: String,
    name: String,
) -> GqlResult<Option<berth_schemas::Object<Spec, Status>>>
where
    Spec: serde::de::DeserializeOwned,
    Status: serde::de::DeserializeOwned,
{
    let key = ResourceKey::new(kind, namespace, name);
    match state(ctx)?.resources().get(&key).await.gql()? {
        Some(o) => typed(&o).map(Some),
        None => Ok(None),
    }
}

#[Object(guard = "RootPolicy(Root::Query)")]
impl Query {
    /// The caller: username, role, effective role, how they authenticated.
    async fn me(&self, ctx: &Context<'_>) -> GqlResult<Me> {
        let me = accounts::me(state(ctx)?, principal(ctx)?).await.gql()?;
        Ok(me.into())
    }

    /// `Container` resources, typed, optionally in one namespace and matching a label
    /// selector.
    async fn containers(
        &self,
        ctx: &Context<'_>,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> GqlResult<Vec<Container>> {
        typed_list::<ContainerSpec, ContainerStatus>(
            ctx,
            Kind::Container,
            namespace,
            label_selector.as_deref(),
        )
        .await
    }

    /// One `Container` resource, typed, or null.
    async fn container(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = "default")] namespace: String,
        name: String,
    ) -> GqlResult<Option<Container>> {
        typed_one::<ContainerSpec, ContainerStatus>(ctx, Kind::Container, namespace, name).await
    }

    /// `Image` resources, typed, optionally in one namespace and matching a label selector.
    async fn images(
        &self,
        ctx: &Context<'_>,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> GqlResult<Vec<Image>> {
        typed_list::<ImageSpec, ImageStatus>(ctx, Kind::Image, namespace, label_selector.as_deref())
            .await
    }

    /// One `Image` resource, typed, or null.
    async fn image(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = "default")] namespace: String,
        name: String,
    ) -> GqlResult<Option<Image>> {
        typed_one::<ImageSpec, ImageStatus>(ctx, Kind::Image, namespace, name).await
    }

    /// Resources of one kind, optionally in one namespace and matching a label selector.
    async fn resources(
        &self,
        ctx: &Context<'_>,
        kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> GqlResult<ResourceList> {
        let q = ListQuery {
            kind: Some(parse_kind(&kind)?),
            namespace,
            selector: parse_selector(label_selector.as_deref())?,
        };
        let list = state(ctx)?.resources().list(&q).await.gql()?;
        Ok(ResourceList {
            revision: list.revision.to_string(),
            items: list.items.into_iter().map(Resource).collect(),
        })
    }

    /// One resource, or null.
    async fn resource(
        &self,
        ctx: &Context<'_>,
        kind: String,
        #[graphql(default = "default")] namespace: String,
        name: String,
    ) -> GqlResult<Option<Resource>> {
        let key = ResourceKey::new(parse_kind(&kind)?, namespace, name);
        Ok(state(ctx)?.resources().get(&key).await.gql()?.map(Resource))
    }

    /// Every user (admin).
    async fn users(&self, ctx: &Context<'_>) -> GqlResult<Vec<User>> {
        let users = accounts::list_users(state(ctx)?, principal(ctx)?).await.gql()?;
        Ok(users.into_iter().map(User::from).collect())
    }

    /// API tokens: the caller's, or with `all` / `owner` (admin) others' too.
    async fn api_tokens(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] all: bool,
        owner: Option<String>,
    ) -> GqlResult<Vec<ApiToken>> {
        let scope = accounts::TokenScope { all, owner };
        let t = accounts::list_api_tokens(state(ctx)?, principal(ctx)?, scope).await.gql()?;
        Ok(t.into_iter().map(ApiToken::from).collect())
    }

    /// Audit events, filtered and paged: `{events, nextCursor}`; pass `nextCursor` back as
    /// `cursor` for the next page.
    #[allow(clippy::too_many_arguments)]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        actor: Option<String>,
        verb: Option<String>,
        kind: Option<String>,
        namespace: Option<String>,
        name: Option<String>,
        cursor: Option<u64>,
        #[graphql(desc = "`asc` (default) or `desc`")] order: Option<String>,
        #[graphql(desc = "1 to 1000, default 100")] limit: Option<usize>,
    ) -> GqlResult<Json<Value>> {
        let p = routes::audit::AuditParams {
            since,
            until,
            actor,
            verb,
            kind,
            namespace,
            name,
            cursor,
            order,
            limit,
        };
        let axum::Json(page) =
            routes::audit::query(State(state(ctx)?.clone()), ApiQuery(p)).await.gql()?;
        to_json(&page)
    }

    /// The audit chain's check (admin), as `GET /api/v1/audit/verify`.
    async fn audit_verify(&self, ctx: &Context<'_>) -> GqlResult<AuditVerification> {
        let axum::Json(r) =
            routes::audit::verify(State(state(ctx)?.clone()), ApiQuery(Default::default()))
                .await
                .gql()?;
        Ok(r.into())
    }

    /// What the server's directory sync (`berth serve --sync-dir`) last did, as
    /// `GET /api/v1/sync`; null when the server syncs no directory.
    async fn sync_status(&self, ctx: &Context<'_>) -> GqlResult<Option<SyncStatus>> {
        Ok(state(ctx)?.sync_status().map(|rx| rx.borrow().clone()))
    }

    /// The Docker Engine's version, and berth's, as `GET /api/v1/system/version`.
    async fn engine(&self, ctx: &Context<'_>) -> GqlResult<SystemVersion> {
        system::version(state(ctx)?).await.gql()
    }

    /// The Engine's host facts and object counts, and berth's own, as
    /// `GET /api/v1/system/info`.
    async fn system_info(&self, ctx: &Context<'_>) -> GqlResult<SystemInfo> {
        system::info(state(ctx)?).await.gql()
    }

    /// Disk usage by images, containers, volumes and build cache, each with berth's share, as
    /// `GET /api/v1/system/df`.
    async fn disk_usage(&self, ctx: &Context<'_>) -> GqlResult<DiskUsageReport> {
        system::disk_usage(state(ctx)?).await.gql()
    }

    /// Every Docker container, berth's or not (`managed`).
    async fn docker_containers(
        &self,
        ctx: &Context<'_>,
        managed: Option<bool>,
    ) -> GqlResult<Vec<DockerContainer>> {
        let list = system::containers(state(ctx)?).await.gql()?;
        Ok(list
            .into_iter()
            .filter(|c| managed.is_none_or(|m| m == c.managed))
            .map(DockerContainer::from)
            .collect())
    }

    /// Every Docker image, whether a berth resource refers to it (`managed`) and which
    /// (`wantedBy`).
    async fn docker_images(&self, ctx: &Context<'_>) -> GqlResult<Vec<DockerImage>> {
        let list = system::images(state(ctx)?).await.gql()?;
        Ok(list.into_iter().map(DockerImage::from).collect())
    }
}
