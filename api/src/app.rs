//! The REST router and its middleware: tracing (outermost), metrics, timeout, body limit, and
//! authentication + authorization through the one policy table.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use tokio::time::Instant;
use tower_http::trace::TraceLayer;

use crate::auth;
use crate::error::ApiError;
use crate::policy::{Access, authorize, route_policy};
use crate::routes;
use crate::state::AppState;

/// Every REST route: method, path as registered, handler. The policy table must name each one
/// (checked by a test and, at run time, by deny-by-default in [`authorize_request`]).
pub fn routes() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    use routes::{audit, auth as a, backup, health, resources, system, tokens, users};
    vec![
        (Method::GET, "/healthz", get(health::healthz)),
        (Method::GET, "/readyz", get(health::readyz)),
        (Method::GET, "/metrics", get(health::metrics)),
        (Method::GET, "/api/v1/openapi.json", get(routes::openapi::document)),
        (Method::POST, "/api/v1/auth/login", post(a::login)),
        (Method::POST, "/api/v1/auth/refresh", post(a::refresh)),
        (Method::POST, "/api/v1/auth/logout", post(a::logout)),
        (Method::GET, "/api/v1/me", get(users::me)),
        (Method::PUT, "/api/v1/me/password", put(users::change_own_password)),
        (Method::GET, "/api/v1/users", get(users::list)),
        (Method::POST, "/api/v1/users", post(users::create)),
        (Method::GET, "/api/v1/users/{username}", get(users::get_one)),
        (Method::PATCH, "/api/v1/users/{username}", patch(users::update)),
        (Method::DELETE, "/api/v1/users/{username}", delete(users::remove)),
        (Method::PUT, "/api/v1/users/{username}/password", put(users::reset_password)),
        (Method::GET, "/api/v1/tokens", get(tokens::list)),
        (Method::POST, "/api/v1/tokens", post(tokens::create)),
        (Method::DELETE, "/api/v1/tokens/{id}", delete(tokens::revoke)),
        (Method::POST, "/api/v1/apply", post(resources::apply)),
        (Method::GET, "/api/v1/audit", get(audit::query)),
        (Method::GET, "/api/v1/audit/verify", get(audit::verify)),
        (Method::GET, "/api/v1/system/version", get(system::version)),
        (Method::GET, "/api/v1/system/containers", get(system::containers)),
        (Method::GET, "/api/v1/system/images", get(system::images)),
        (Method::GET, "/api/v1/system/info", get(system::info)),
        (Method::GET, "/api/v1/system/df", get(system::df)),
        (Method::POST, "/api/v1/system/prune", post(system::prune)),
        (Method::GET, "/api/v1/sync", get(routes::sync::status)),
        (Method::GET, "/api/v1/system/backup", get(backup::download)),
        (Method::GET, "/api/v1/{plural}", get(resources::list)),
        (Method::GET, "/api/v1/{plural}/{namespace}/{name}", get(resources::get_one)),
        (Method::DELETE, "/api/v1/{plural}/{namespace}/{name}", delete(resources::remove)),
        (Method::PUT, "/api/v1/{plural}/{namespace}/{name}", put(resources::replace)),
        (Method::GET, "/api/v1/{plural}/{namespace}/{name}/status", get(resources::status)),
    ]
}

/// The full REST application with its middleware, ready to serve.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config().body_limit;
    let mut r = Router::new();
    let mut registered = Vec::new();
    for (method, path, handler) in routes() {
        registered.push((method, path));
        r = r.route(path, handler);
    }
    r = r.merge(crate::graphql::routes(state.clone()));
    let registered = Arc::new(registered);
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state((state.clone(), registered), authorize_request))
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

/// The (method, path) pairs the router serves.
type Registered = Arc<Vec<(Method, &'static str)>>;

/// Authenticates the caller of a non-public route, applies the per-token rate limit and checks
/// the route's action against the caller's role. The [`auth::Principal`] is left in the request
/// extensions for handlers.
async fn authorize_request(
    State((state, registered)): State<(AppState, Registered)>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(route) = route_of(&req) else {
        return next.run(req).await; // fallback: 404
    };
    let access = match route_policy(req.method(), &route) {
        Some(p) => p.access,
        // The path exists but not with this method: the router answers 405.
        None if !registered.iter().any(|(m, p)| m == req.method() && *p == route) => {
            return next.run(req).await;
        }
        None => {
            tracing::error!(route, method = %req.method(), "route has no policy entry; refused");
            return ApiError::forbidden("this route has no authorization policy").into_response();
        }
    };
    let action = match access {
        Access::Public => return next.run(req).await,
        Access::Authenticated(action) => action,
    };
    let principal = match auth::authenticate(&state, req.headers()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Err(retry_after) = state.per_token().check(&principal.rate_key()) {
        return ApiError::RateLimited { retry_after }.into_response();
    }
    if let Err(e) = authorize(principal.role, action) {
        auth::audit_denied(&state, &principal, req.method(), &route, action).await;
        return e.into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}
