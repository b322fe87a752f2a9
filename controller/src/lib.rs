//! berth's control loop: the embedded store, its change feed and audit log, and the reconcilers
//! that drive the Docker Engine towards it.
//!
//! # Layout
//!
//! Filled in as the modules land: `store` (sled-backed resources, revisions, change feed, audit,
//! accounts), `docker` (the Engine driver), `runtime` (work queue) and the reconcilers.
pub mod labels;
pub mod runtime;
