//! The service layer: every write and every action berth's transports offer, written once.
//!
//! REST handlers, GraphQL resolvers, the directory sync (and later Git sources and import) are
//! thin callers of these functions. The admin-only check, ownership, finalizer rules and audit
//! happen here, once, and each function answers a typed outcome that every transport renders.
//!
//! # Layout
//!
//! - [`resources`]: apply, prune, dry run, replace, delete (and wait), restart.
//! - [`accounts`]: users, passwords, API tokens.
//! - [`sync`]: the directory sync's status (the sync applies through [`resources`]).
//! - [`system`]: Docker system information, disk usage and prune.

pub mod accounts;
pub mod resources;
pub mod sync;
pub mod system;
