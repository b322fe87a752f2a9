//! berth's GraphQL API: the schema (queries, mutations, subscriptions) and its two transports,
//! `POST /graphql` and the websocket at `/graphql/ws`.
//!
//! # Layout
//!
//! - [`schema`]: [`build_schema`], the limits and the error-code extension.
//! - [`policy`]: which [`Action`](crate::policy::Action) every root field is; enforced by one
//!   guard on each root type against the REST policy table.
//! - [`query`], [`mutation`], [`subscription`]: the root types; [`types`]: what they return.
//! - [`hub`]: one Engine stream per container for followed logs and stats, fanned out to every
//!   subscriber with a bounded buffer each; [`exec`]: live exec sessions; [`events`]: the
//!   Engine event stream behind `dockerEvents`, resubscribed when it drops.
//! - [`transport`]: the HTTP handler and the websocket (graphql-transport-ws and the older
//!   graphql-ws), with authentication in `connection_init`.
//!
//! Both transports are entries of the one route table ([`crate::app::routes`]), which mounts
//! them with the schema from [`build_schema`]; the Docker driver comes from
//! [`AppState::with_driver`](crate::AppState::with_driver).

pub mod error;
pub mod events;
pub mod exec;
pub mod hub;
pub mod mutation;
pub mod policy;
pub mod query;
pub mod schema;
pub mod subscription;
pub mod transport;
pub mod types;

use std::time::Duration;

pub use self::schema::{BerthSchema, build_schema, sdl};

/// GraphQL settings: limits, the websocket `Origin` allow-list and keepalive.
#[derive(Debug, Clone)]
pub struct GraphqlConfig {
    /// Origins (`https://dash.example.com`) whose pages may open the websocket, besides the
    /// server's own origin and loopback origins; `*` allows any. Empty by default.
    pub allowed_origins: Vec<String>,
    /// Deepest selection allowed (12).
    pub max_depth: usize,
    /// Highest complexity (fields counted, list fields weighted) allowed (500).
    pub max_complexity: usize,
    /// Most aliases in one document (20): guesses cannot be multiplied through aliases.
    pub max_aliases: usize,
    /// Most operations in one batched HTTP request (10).
    pub max_batch: usize,
    /// Time allowed for a query or mutation (30 s).
    pub query_timeout: Duration,
    /// Time a websocket may take to send `connection_init` (10 s).
    pub connection_init_timeout: Duration,
    /// How often the server pings an idle websocket (15 s).
    pub keepalive_interval: Duration,
    /// How often an open websocket re-checks its credential (token revoked or expired, user
    /// disabled or deleted, role lowered) even when no account change was announced (60 s):
    /// the backstop for changes made by another process on the same store.
    pub credential_recheck_interval: Duration,
    /// Concurrent subscriptions one user may hold across connections (100).
    pub max_subscriptions_per_user: usize,
    /// Items buffered per subscriber of a shared log stream before it is told it dropped some
    /// (1024).
    pub log_buffer: usize,
    /// Samples buffered per subscriber of a shared stats stream (16).
    pub stats_buffer: usize,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_depth: 12,
            max_complexity: 500,
            max_aliases: 20,
            max_batch: 10,
            query_timeout: Duration::from_secs(30),
            connection_init_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(15),
            credential_recheck_interval: Duration::from_secs(60),
            max_subscriptions_per_user: 100,
            log_buffer: 1024,
            stats_buffer: 16,
        }
    }
}

/// State GraphQL keeps across requests, held in [`AppState`](crate::AppState) (no globals).
#[derive(Debug, Default)]
pub struct Shared {
    /// Followed container logs, one Engine stream per container.
    pub logs: hub::Fanout<std::sync::Arc<types::LogLine>>,
    /// Container stats, one Engine stream per container.
    pub stats: hub::Fanout<std::sync::Arc<types::StatsSample>>,
    /// Live exec sessions by id.
    pub exec: exec::Sessions,
    /// Open subscriptions per user.
    pub subscriptions: hub::PerUserCount,
}

/// Engine streams opened so far by the shared (logs, stats) hubs: constant in the number of
/// subscribers to one container.
pub fn upstreams_opened(state: &crate::AppState) -> (u64, u64) {
    let g = state.graphql();
    (g.logs.upstreams_opened(), g.stats.upstreams_opened())
}

/// Subscriptions `user` holds now across connections (counted against
/// [`GraphqlConfig::max_subscriptions_per_user`]); a subscription counts from the moment its
/// resolver has run.
pub fn subscriptions_held(state: &crate::AppState, user: &str) -> usize {
    state.graphql().subscriptions.held(user)
}
