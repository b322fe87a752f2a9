//! berth's control loop: the embedded store, its change feed and audit log, and the reconcilers
//! that drive the Docker Engine towards it.
//!
//! # Layout
//!
//! - [`store`]: the embedded store (sled): resources with revisions and optimistic concurrency,
//!   the change feed, the hash-chained audit log, accounts, backup and restore.
//! - [`docker`]: the Docker Engine driver: the [`docker::Driver`] trait, its bollard
//!   implementation and an in-memory fake for unit tests.
//! - [`runtime`]: the work queue: deduplicated, one reconcile per key at a time, bounded
//!   parallelism, per-key backoff, graceful shutdown.
//! - [`reconcile`]: the `Container` and `Image` reconcilers (observe → plan → execute) and the
//!   [`reconcile::Controller`] that wires store, driver and triggers to the runtime.
//! - [`labels`]: ownership labels, deterministic container names and the spec hash.
pub mod docker;
pub mod labels;
pub mod reconcile;
pub mod runtime;
pub mod store;
