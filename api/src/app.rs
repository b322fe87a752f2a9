//! The one route table and the router built from it: every route's method, path, handler,
//! [`Access`] and OpenAPI description are written once, in [`routes`]; [`router`] mounts each
//! handler behind its own authentication, authorization and body-limit guard, and the OpenAPI
//! document ([`crate::routes::openapi`]) is generated from the same table. A handler that is not
//! in the table is not mounted, so it cannot be reached.
//!
//! Middleware, outermost first: tracing, metrics, timeout, then per route: authenticate (401
//! before any of the body is read), rate limit, authorize (403), body limit (413 for a
//! `Content-Length` over the limit at once; a longer streamed body is cut off at the limit).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use tokio::time::Instant;
use tower_http::trace::TraceLayer;

use crate::auth;
use crate::error::ApiError;
use crate::policy::{Access, Action, authorize};
use crate::routes;
use crate::state::AppState;

/// One entry of the route table.
#[derive(Debug, Clone)]
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path as registered in the router (`/api/v1/{plural}/{namespace}/{name}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What the OpenAPI document says of it.
    pub doc: RouteDoc,
    handler: fn() -> MethodRouter<AppState>,
}

/// The schema of a Rust type, generated with schemars for the OpenAPI document.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// A reference to `T`'s schema (its definition goes to `components/schemas`).
fn schema_ref<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// `T`'s schema itself, for query types whose fields become parameters.
fn schema_inline<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
}

/// What a request or response body is, for the OpenAPI document.
#[derive(Debug, Clone, Copy)]
pub enum Payload {
    /// No body.
    Empty,
    /// JSON of this schema.
    Json(SchemaFn),
    /// Manifests, YAML (one or more documents) or JSON.
    Manifests,
    /// Plain text (Prometheus metrics).
    Text,
    /// A binary file (the backup).
    Binary,
    /// JSON of this schema, or with `watch=true` a stream of NDJSON change events.
    ListOrWatch(SchemaFn),
}

/// The OpenAPI description of one route.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// One line.
    pub summary: &'static str,
    /// The group it is listed under.
    pub tag: &'static str,
    /// The request body.
    pub request: Payload,
    /// The type its query string is read into (each field is one parameter).
    pub query: Option<SchemaFn>,
    /// The success status.
    pub status: u16,
    /// The success body.
    pub response: Payload,
}

impl Route {
    fn new(
        method: Method,
        path: &'static str,
        access: Access,
        handler: fn() -> MethodRouter<AppState>,
    ) -> Self {
        let doc = RouteDoc {
            summary: "",
            tag: "",
            request: Payload::Empty,
            query: None,
            status: 200,
            response: Payload::Empty,
        };
        Self { method, path, access, handler, doc }
    }

    fn doc(mut self, tag: &'static str, summary: &'static str) -> Self {
        self.doc.tag = tag;
        self.doc.summary = summary;
        self
    }

    /// A JSON request body of type `T`.
    fn takes<T: JsonSchema>(mut self) -> Self {
        self.doc.request = Payload::Json(schema_ref::<T>);
        self
    }

    /// A request body of manifests (YAML or JSON).
    fn takes_manifests(mut self) -> Self {
        self.doc.request = Payload::Manifests;
        self
    }

    /// Query parameters read into `T`.
    fn query<T: JsonSchema>(mut self) -> Self {
        self.doc.query = Some(schema_inline::<T>);
        self
    }

    /// A JSON answer of type `T` with `status`.
    fn answers<T: JsonSchema>(mut self, status: u16) -> Self {
        self.doc.status = status;
        self.doc.response = Payload::Json(schema_ref::<T>);
        self
    }

    /// Another kind of answer with `status`.
    fn answers_with(mut self, status: u16, payload: Payload) -> Self {
        self.doc.status = status;
        self.doc.response = payload;
        self
    }

    /// The handler, mounted behind this route's guard.
    fn mount(&self, state: &AppState) -> MethodRouter<AppState> {
        let g = Guard { method: self.method.clone(), path: self.path, access: self.access };
        (self.handler)().route_layer(middleware::from_fn_with_state((state.clone(), g), guard))
    }
}

use Access::{Authenticated as Auth, GraphqlFields, Public, WebsocketInit};

/// Every route berth serves, REST and GraphQL: method, path, access, handler and OpenAPI
/// description. [`router`] mounts exactly these and nothing else.
///
/// Where a handler answers JSON it builds without a Rust type (system views, lists, status),
/// the document says `object` (free-form) rather than a schema written by hand.
pub fn routes() -> Vec<Route> {
    use crate::graphql::transport as gql;
    use Method as M;
    use berth_controller::store::{AuditPage, VerifyReport};
    use berth_schemas::DynamicObject;
    use routes::{
        audit, auth as a, backup, health, openapi, resources, sync, system, tokens, users,
    };
    use serde_json::Value;
    let r = Route::new;
    let any_json = Payload::Json(schema_ref::<Value>);
    vec![
        r(M::GET, "/healthz", Public, || get(health::healthz))
            .doc("health", "Liveness")
            .answers::<health::Health>(200),
        r(M::GET, "/readyz", Public, || get(health::readyz))
            .doc("health", "Readiness (503 when not ready)")
            .answers::<health::Health>(200),
        r(M::GET, "/metrics", Public, || get(health::metrics))
            .doc("health", "Prometheus metrics (text format)")
            .answers_with(200, Payload::Text),
        r(M::GET, "/api/v1/openapi.json", Public, || get(openapi::document))
            .doc("health", "This document")
            .answers_with(200, any_json),
        r(M::POST, "/api/v1/auth/login", Public, || post(a::login))
            .doc("auth", "Log in")
            .takes::<a::LoginRequest>()
            .answers::<a::TokenPair>(200),
        r(M::POST, "/api/v1/auth/refresh", Public, || post(a::refresh))
            .doc("auth", "Exchange a refresh token")
            .takes::<a::RefreshRequest>()
            .answers::<a::TokenPair>(200),
        r(M::POST, "/api/v1/auth/logout", Auth(Action::ReadSelf), || post(a::logout))
            .doc("auth", "End the session (and the refresh token's family, when given)")
            .takes::<a::RefreshRequest>()
            .answers_with(204, Payload::Empty),
        r(M::GET, "/api/v1/me", Auth(Action::ReadSelf), || get(users::me))
            .doc("users", "The caller")
            .answers::<users::MeView>(200),
        r(M::PUT, "/api/v1/me/password", Auth(Action::ReadSelf), || {
            put(users::change_own_password)
        })
        .doc("users", "Change own password")
        .takes::<users::ChangeOwnPassword>()
        .answers_with(204, Payload::Empty),
        r(M::GET, "/api/v1/users", Auth(Action::ManageUsers), || get(users::list))
            .doc("users", "List users")
            .answers::<Vec<users::UserView>>(200),
        r(M::POST, "/api/v1/users", Auth(Action::ManageUsers), || post(users::create))
            .doc("users", "Create a user")
            .takes::<users::CreateUser>()
            .answers::<users::UserView>(201),
        r(M::GET, "/api/v1/users/{username}", Auth(Action::ManageUsers), || get(users::get_one))
            .doc("users", "Get a user")
            .answers::<users::UserView>(200),
        r(M::PATCH, "/api/v1/users/{username}", Auth(Action::ManageUsers), || patch(users::update))
            .doc("users", "Change role or disable")
            .takes::<users::PatchUser>()
            .answers::<users::UserView>(200),
        r(M::DELETE, "/api/v1/users/{username}", Auth(Action::ManageUsers), || {
            delete(users::remove)
        })
        .doc("users", "Delete a user")
        .answers_with(204, Payload::Empty),
        r(M::PUT, "/api/v1/users/{username}/password", Auth(Action::ManageUsers), || {
            put(users::reset_password)
        })
        .doc("users", "Reset a password")
        .takes::<users::SetPassword>()
        .answers_with(204, Payload::Empty),
        r(M::GET, "/api/v1/tokens", Auth(Action::ManageOwnTokens), || get(tokens::list))
            .doc("tokens", "List API tokens")
            .query::<tokens::ListTokens>()
            .answers::<Vec<tokens::TokenView>>(200),
        r(M::POST, "/api/v1/tokens", Auth(Action::ManageOwnTokens), || post(tokens::create))
            .doc("tokens", "Create an API token")
            .takes::<tokens::CreateToken>()
            .answers::<tokens::CreatedToken>(201),
        r(M::DELETE, "/api/v1/tokens/{id}", Auth(Action::ManageOwnTokens), || {
            delete(tokens::revoke)
        })
        .doc("tokens", "Revoke an API token")
        .answers::<tokens::TokenView>(200),
        r(M::POST, "/api/v1/apply", Auth(Action::ApplyResources), || post(resources::apply))
            .doc("resources", "Apply manifests")
            .takes_manifests()
            .query::<resources::ApplyQuery>()
            .answers::<resources::ApplyResponse>(200),
        r(M::GET, "/api/v1/audit", Auth(Action::ReadAudit), || get(audit::query))
            .doc("audit", "Query the audit log")
            .query::<audit::AuditParams>()
            .answers::<AuditPage>(200),
        r(M::GET, "/api/v1/audit/verify", Auth(Action::ReadAudit), || get(audit::verify))
            .doc("audit", "Verify the audit chain")
            .query::<audit::VerifyParams>()
            .answers::<VerifyReport>(200),
        r(M::GET, "/api/v1/audit/head", Auth(Action::ReadAudit), || get(audit::head))
            .doc("audit", "The latest audit event's sequence number and hash")
            .answers::<berth_controller::store::AuditHead>(200),
        r(M::GET, "/api/v1/system/version", Auth(Action::ReadSystem), || get(system::version))
            .doc("system", "Docker Engine version")
            .answers::<crate::service::system::SystemVersion>(200),
        r(M::GET, "/api/v1/system/containers", Auth(Action::ReadSystem), || {
            get(system::containers)
        })
        .doc("system", "Every Docker container")
        .answers_with(200, any_json),
        r(M::GET, "/api/v1/system/images", Auth(Action::ReadSystem), || get(system::images))
            .doc("system", "Every Docker image")
            .answers_with(200, any_json),
        r(M::GET, "/api/v1/system/info", Auth(Action::ReadSystem), || get(system::info))
            .doc("system", "Docker Engine and berth facts")
            .answers::<crate::service::system::SystemInfo>(200),
        r(M::GET, "/api/v1/system/df", Auth(Action::ReadSystem), || get(system::df))
            .doc("system", "Docker disk usage")
            .answers::<crate::service::system::DiskUsageReport>(200),
        r(M::POST, "/api/v1/system/prune", Auth(Action::SystemPrune), || post(system::prune))
            .doc("system", "Remove berth's own leftovers")
            .query::<system::PruneQuery>()
            .answers::<crate::service::system::PruneReport>(200),
        r(M::GET, "/api/v1/system/backup", Auth(Action::Backup), || get(backup::download))
            .doc("system", "A consistent backup of the whole store (berth-backup format)")
            .answers_with(200, Payload::Binary),
        r(M::GET, "/api/v1/sync", Auth(Action::ReadResources), || get(sync::status))
            .doc("resources", "The directory sync's status ({\"enabled\": false} without one)")
            .answers_with(200, any_json),
        r(M::GET, "/api/v1/{plural}", Auth(Action::ReadResources), || get(resources::list))
            .doc("resources", "List or watch resources")
            .query::<resources::ListParams>()
            .answers_with(200, Payload::ListOrWatch(schema_ref::<Value>)),
        r(M::GET, "/api/v1/{plural}/{namespace}/{name}", Auth(Action::ReadResources), || {
            get(resources::get_one)
        })
        .doc("resources", "Get a resource")
        .answers::<DynamicObject>(200),
        r(M::DELETE, "/api/v1/{plural}/{namespace}/{name}", Auth(Action::DeleteResources), || {
            delete(resources::remove)
        })
        .doc("resources", "Delete a resource (200 when gone, 202 while terminating)")
        .query::<resources::DeleteParams>()
        .answers_with(200, any_json),
        r(M::PUT, "/api/v1/{plural}/{namespace}/{name}", Auth(Action::ApplyResources), || {
            put(resources::replace)
        })
        .doc("resources", "Replace a resource (YAML or JSON)")
        .takes_manifests()
        .answers::<resources::ReplaceResponse>(200),
        r(
            M::GET,
            "/api/v1/{plural}/{namespace}/{name}/status",
            Auth(Action::ReadResources),
            || get(resources::status),
        )
        .doc("resources", "A resource's status")
        .answers_with(200, any_json),
        r(M::POST, "/graphql", GraphqlFields, || post(gql::graphql_post))
            .doc("graphql", "GraphQL queries and mutations (each field checks its own action)")
            .takes::<Value>()
            .answers_with(200, any_json),
        r(M::GET, "/graphql/ws", WebsocketInit, || get(gql::graphql_ws))
            .doc("graphql", "GraphQL subscriptions over a websocket (graphql-transport-ws)")
            .answers_with(101, Payload::Empty),
    ]
}

/// The full application with its middleware, ready to serve.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config().body_limit;
    let mut r = Router::new();
    for route in routes() {
        r = r.route(route.path, route.mount(&state));
    }
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(crate::graphql::build_schema(state.clone())))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(middleware::from_fn_with_state(state.clone(), record_metrics))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req.extensions().get::<MatchedPath>().map_or("<unmatched>", |m| m.as_str());
            tracing::info_span!("http", method = %req.method(), route = route)
        }))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn route_of(req: &Request) -> Option<String> {
    req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned())
}

async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = route_of(&req).unwrap_or_else(|| "<unmatched>".to_owned());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let m = state.metrics();
    m.inc_counter(
        "berth_http_requests_total",
        "HTTP requests by method, matched route and status.",
        &[("method", &method), ("route", &route), ("status", &status)],
        1.0,
    );
    m.observe(
        "berth_http_request_duration_seconds",
        "Time to produce the response head, by method and matched route.",
        &[("method", &method), ("route", &route)],
        start.elapsed().as_secs_f64(),
    );
    resp
}

async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit: Duration = state.config().request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// What the guard of one route knows about it.
#[derive(Debug, Clone)]
struct Guard {
    method: Method,
    path: &'static str,
    access: Access,
}

/// The guard in front of every handler: authenticates the caller of a route that needs
/// credentials (401 before any of the body is read), applies the per-token rate limit, checks
/// the route's action against the caller's role (403, audited), then limits the body. The
/// [`auth::Principal`] is left in the request extensions for handlers.
async fn guard(
    State((state, g)): State<(AppState, Guard)>,
    mut req: Request,
    next: Next,
) -> Response {
    let graphql = g.access == Access::GraphqlFields;
    let refuse = |e: ApiError| {
        if graphql { crate::graphql::transport::error_response(&e) } else { e.into_response() }
    };
    if g.access.needs_credentials() {
        let principal = match auth::authenticate(&state, req.headers()).await {
            Ok(p) if graphql => p.via_graphql(),
            Ok(p) => p,
            Err(e) => return refuse(e),
        };
        if let Err(retry_after) = state.per_token().check(&principal.rate_key()) {
            return refuse(ApiError::RateLimited { retry_after });
        }
        if let Some(action) = g.access.action()
            && let Err(e) = authorize(principal.role, action)
        {
            auth::audit_denied(&state, &principal, &g.method, g.path, action).await;
            return refuse(e);
        }
        req.extensions_mut().insert(principal);
    }
    match limit_body(req, state.config().body_limit) {
        Ok(req) => next.run(req).await,
        Err(e) => refuse(e),
    }
}

/// The one body limit: a declared `Content-Length` over `limit` is refused at once (413), and
/// the body is wrapped so that whoever reads it gets an error at `limit` bytes (extractors
/// answer 413), however it is sent.
fn limit_body(req: Request, limit: usize) -> Result<Request, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let (parts, body) = req.into_parts();
    Ok(Request::from_parts(parts, Body::new(http_body_util::Limited::new(body, limit))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_has_no_duplicate_entries() {
        let all = routes();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(!(a.method == b.method && a.path == b.path), "{} {}", a.method, a.path);
            }
        }
    }

    #[test]
    fn every_route_has_a_summary_and_a_tag() {
        for r in routes() {
            assert!(!r.doc.summary.is_empty() && !r.doc.tag.is_empty(), "{} {}", r.method, r.path);
        }
    }
}
