//! berth's control loop: the embedded store, its change feed and audit log, and the reconcilers
//! that drive the Docker Engine towards it.
//!
//! # Layout
//!
//! - [`store`]: the embedded store (sled): resources with revisions and optimistic concurrency,
//!   the change feed, the hash-chained audit log, accounts, backup and restore.
//! - [`docker`]: the Docker Engine driver: the [`docker::Driver`] trait, its bollard
//!   implementation and an in-memory fake for unit tests.
//!
//! Filled in as the modules land: `docker` (the Engine driver), `runtime` (work queue) and the
//! reconcilers.
pub mod docker;
pub mod labels;
pub mod reconcile;
pub mod runtime;
pub mod store;
