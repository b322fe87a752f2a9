//! Object metadata: what identifies a resource and what the server records about it.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Annotation whose change makes berth replace a container with an identical one (as
/// `kubectl rollout restart` does): `berth restart` and GraphQL `restartContainer` set it to the
/// current time. Being declarative, a restart is audited and survives a restart of berth.
pub const RESTARTED_AT_ANNOTATION: &str = "berth.dev/restartedAt";

/// The namespace a resource lands in when its manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The kinds of resource berth manages.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(feature = "graphql", graphql(rename_items = "PascalCase"))]
pub enum Kind {
    /// A Docker container kept in the state its spec describes.
    Container,
    /// A Docker image kept present (pulled) or absent on the host.
    Image,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 2] = [Kind::Container, Kind::Image];

    /// The kind's name as written in manifests (`Container`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "Container",
            Kind::Image => "Image",
        }
    }

    /// The lower-case plural used in URLs and the CLI (`containers`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Container => "containers",
            Kind::Image => "images",
        }
    }

    /// Parses a kind as a user types it: `Container`, `container`, `containers`, `ctr`, ...
    pub fn parse_loose(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "container" | "containers" | "ctr" => Some(Kind::Container),
            "image" | "images" | "img" => Some(Kind::Image),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// A kind name that berth does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind {0:?} (expected one of: Container, Image)")]
pub struct UnknownKind(pub String);

/// Identifies one resource: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceKey {
    /// The resource's kind.
    pub kind: Kind,
    /// The resource's namespace.
    pub namespace: String,
    /// The resource's name, unique per kind and namespace.
    pub name: String,
}

impl ResourceKey {
    /// Builds a key.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { kind, namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}

fn is_default_namespace(ns: &str) -> bool {
    ns == DEFAULT_NAMESPACE
}

/// Metadata every resource carries. Users set `name`, `namespace`, `labels` and `annotations`;
/// the server sets the rest and ignores what a manifest says for them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ObjectMeta {
    /// The resource's name: a DNS label (lower-case letters, digits and `-`, at most 63
    /// characters, starting and ending with a letter or digit). Unique per kind and namespace.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(min = 1, max = 63))]
    pub name: String,
    /// The namespace the resource lives in; `default` when omitted. Same rules as `name`.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(min = 1, max = 63))]
    #[serde(default = "default_namespace", skip_serializing_if = "is_default_namespace")]
    pub namespace: String,
    /// Key/value pairs for selecting resources (`berth get containers -l app=web`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form key/value notes that berth keeps but does not select on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Server-set: a unique id for this incarnation of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Server-set: rises by one each time `spec` changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Server-set: the store revision of the last write to this resource. Name it in a write to
    /// make the write conditional (a stale value is refused with 409 Conflict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Server-set: when the resource was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<DateTime<Utc>>,
    /// Server-set: when deletion was requested; the resource goes once its finalizers are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<DateTime<Utc>>,
    /// Server-set: work that must finish before the resource is removed (for example
    /// `berth.dev/docker-cleanup`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

impl ObjectMeta {
    /// Metadata with just a name in the default namespace.
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into(), namespace: default_namespace(), ..Self::default() }
    }
}
