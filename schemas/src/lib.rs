//! berth's resource model: the types users write as manifests, and what the controller reports.
//!
//! This crate is serde + schemars only: it does no I/O, so every other crate (and editors, via
//! the generated JSON Schemas) can share one definition of a berth resource.
//!
//! # Layout
//!
//! - [`meta`]: the Kubernetes-style envelope metadata ([`ObjectMeta`]) and resource keys.
//! - [`object`]: the typed envelope [`Object<Spec, Status>`](Object) and its untyped form
//!   [`DynamicObject`] that the store keeps.
//! - [`condition`]: status conditions (`Ready`, `Progressing`, `Degraded`).
#![warn(missing_docs)]

pub mod condition;
pub mod meta;
pub mod object;

pub use condition::{Condition, ConditionStatus};
pub use meta::{Kind, ObjectMeta, ResourceKey};
pub use object::{API_VERSION, DynamicObject, Object};
