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
//! - [`json_schema`]: the JSON Schemas committed under `schemas/json/`.
//! - [`manifest`]: multi-document YAML/JSON parsing with located errors and limits.
//! - [`reference`](mod@reference): image references (`name[:tag][@digest]`).
//! - [`validate`]: semantic validation; every error names its field path.
//! - [`readiness`](mod@readiness): the one rule for whether a stored resource is Ready.
//! - [`path`]: field paths (`spec.ports[1].hostPort`) that errors point at.
//! - [`selector`]: label selectors in kubectl syntax (`app=web,env in (prod,staging),!legacy`).
#![warn(missing_docs)]

pub mod condition;
pub mod container;
pub mod image;
pub mod json_schema;
pub mod manifest;
pub mod meta;
pub mod object;
pub mod path;
pub mod quantity;
pub mod readiness;
pub mod reference;
pub mod resource;
pub mod selector;
pub mod validate;

pub use condition::{Condition, ConditionStatus};
pub use container::{
    ADMIN_ONLY_FIELDS, BoundPort, Container, ContainerSpec, ContainerState, ContainerStatus,
    DesiredState, Device, EnvVar, HealthCheck, HealthStatus, Mount, MountType, NetworkMode,
    ObjectReference, PidMode, PortMapping, Protocol, PullPolicy, Resources, RestartPolicy,
    RestartPolicyKind,
};
pub use image::{Image, ImageSpec, ImageStatus, Presence};
pub use manifest::{
    ManifestError, ParseLimits, ParsedDocument, parse_and_validate, parse_manifests,
};
pub use meta::{Kind, ObjectMeta, ResourceKey};
pub use object::{API_VERSION, DynamicObject, Object};
pub use path::FieldPath;
pub use quantity::{Quantity, QuantityError, parse_cpus, parse_duration, parse_memory};
pub use readiness::{Readiness, Why, readiness};
pub use reference::{ImageReference, ReferenceError};
pub use resource::Resource;
pub use validate::{ValidationError, validate_dynamic, validate_resource};
