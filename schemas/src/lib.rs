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
//! - [`container`], [`image`]: the kinds' specs and statuses; [`resource`]: dispatch on kind.
//! - [`quantity`]: durations (`30s`) and quantities (`512Mi`, `0.5`) and their parsers.
//! - [`path`]: field paths (`spec.ports[1].hostPort`) that errors point at.
#![warn(missing_docs)]

pub mod condition;
pub mod container;
pub mod image;
pub mod meta;
pub mod object;
pub mod path;
pub mod quantity;
pub mod resource;

pub use condition::{Condition, ConditionStatus};
pub use container::{
    ADMIN_ONLY_FIELDS, Container, ContainerSpec, ContainerState, ContainerStatus, DesiredState,
    EnvVar, HealthCheck, Mount, MountType, NetworkMode, ObjectReference, PidMode, PortMapping,
    Protocol, PullPolicy, Resources, RestartPolicy, RestartPolicyKind,
};
pub use image::{Image, ImageSpec, ImageStatus, Presence};
pub use meta::{Kind, ObjectMeta, ResourceKey};
pub use object::{API_VERSION, DynamicObject, Object};
pub use path::FieldPath;
pub use quantity::{Quantity, QuantityError, parse_cpus, parse_duration, parse_memory};
pub use resource::Resource;
