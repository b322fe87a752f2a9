//! The `Query` root: resources, the caller, users and tokens, audit, the Engine and its
//! containers and images.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::{Context, Json, Object};
use axum::extract::State;
use berth_controller::docker::{ContainerFilter, Driver};
use berth_controller::store::ListQuery;
use berth_schemas::selector::Selector;
use berth_schemas::{Kind, ResourceKey};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::error::{GqlResult, IntoGql, coded};
use super::policy::{Root, RootPolicy, principal};
use super::types::{DockerContainer, DockerImage, EngineInfo, Resource, ResourceList};
use crate::extract::ApiQuery;
use crate::routes;
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

#[Object(guard = "RootPolicy(Root::Query)")]
impl Query {
    /// The caller: username, role, effective role, how they authenticated.
    async fn me(&self, ctx: &Context<'_>) -> GqlResult<Json<Value>> {
        let p = principal(ctx)?.clone();
        let axum::Json(me) = routes::users::me(State(state(ctx)?.clone()), p).await.gql()?;
        to_json(&me)
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
    async fn users(&self, ctx: &Context<'_>) -> GqlResult<Json<Value>> {
        let axum::Json(users) = routes::users::list(State(state(ctx)?.clone())).await.gql()?;
        to_json(&users)
    }

    /// API tokens: the caller's, or with `all` / `owner` (admin) others' too.
    async fn api_tokens(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] all: bool,
        owner: Option<String>,
    ) -> GqlResult<Json<Value>> {
        let p = principal(ctx)?.clone();
        let q = routes::tokens::ListTokens { all, owner };
        let axum::Json(t) =
            routes::tokens::list(State(state(ctx)?.clone()), p, ApiQuery(q)).await.gql()?;
        to_json(&t)
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

    /// The Docker Engine's version.
    async fn engine(&self, ctx: &Context<'_>) -> GqlResult<EngineInfo> {
        let v = docker(ctx)?.version().await.gql()?;
        Ok(EngineInfo {
            version: v.version,
            api_version: v.api_version,
            negotiated_api_version: v.negotiated_api_version,
            os: v.os,
            arch: v.arch,
        })
    }

    /// Every Docker container, berth's or not (`managed`).
    async fn docker_containers(
        &self,
        ctx: &Context<'_>,
        managed: Option<bool>,
    ) -> GqlResult<Vec<DockerContainer>> {
        let list = docker(ctx)?.list_containers(&ContainerFilter::all()).await.gql()?;
        Ok(list
            .into_iter()
            .map(DockerContainer::from)
            .filter(|c| managed.is_none_or(|m| m == c.managed))
            .collect())
    }

    /// Every Docker image, and whether a berth resource refers to it (`managed`).
    async fn docker_images(&self, ctx: &Context<'_>) -> GqlResult<Vec<DockerImage>> {
        let images = docker(ctx)?.list_images().await.gql()?;
        let all = state(ctx)?.resources().list(&ListQuery::default()).await.gql()?;
        let referenced: HashSet<String> = all
            .items
            .iter()
            .filter_map(|o| o.spec.get("image").and_then(Value::as_str))
            .flat_map(|r| {
                let familiar = berth_schemas::ImageReference::parse(r)
                    .map(|i| format!("{}:{}", i.repository(), i.tag_or_latest()))
                    .unwrap_or_else(|_| r.to_owned());
                [r.to_owned(), familiar]
            })
            .collect();
        Ok(images.into_iter().map(|i| DockerImage::new(i, &referenced)).collect())
    }
}
