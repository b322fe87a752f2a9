//! berth's HTTP face: REST under `/api/v1` and GraphQL at `/graphql`, with authentication and one
//! authorization policy for both. Built on top of `berth-controller`'s store.
//!
//! # Layout
//!
//! - [`config`]: [`ServeConfig`], the server's settings and defaults.
//! - [`state`]: [`AppState`], shared by every handler (no globals).
//! - [`app`]: [`router`], the route list and the middleware stack.
//! - [`policy`]: roles, [`Action`]s and the one route policy table ([`authorize`]).
//! - [`auth`]: access JWTs, refresh tokens, API tokens, the authenticated [`auth::Principal`].
//! - [`routes`]: the handlers, one module per area.
//! - [`error`]: [`ApiError`] and the `{code, message, details}` body.
//! - [`graphql`]: the GraphQL schema (queries, mutations, subscriptions) and its transports.
//! - [`extract`]: body, query and path extractors whose rejections use the error shape.
//! - [`service`]: the one write path (apply, delete, users, tokens, system actions).
//! - [`server`]: [`serve`] (HTTP or HTTPS, graceful shutdown) and [`server::prepare`] for the
//!   binary; [`tls`]: the rustls listener.
//! - [`metrics`], [`ratelimit`]: the Prometheus registry and token buckets.

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod graphql;
pub mod metrics;
pub mod policy;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod service;
pub mod state;
pub mod tls;

pub use app::router;
pub use config::ServeConfig;
pub use error::ApiError;
pub use metrics::Metrics;
pub use policy::{Action, Role, authorize};
pub use server::serve;
pub use state::AppState;
