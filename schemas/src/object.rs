//! The resource envelope: `apiVersion`, `kind`, `metadata`, `spec`, `status`.
//!
//! [`Object<Spec, Status>`](Object) is the typed form a reconciler works with;
//! [`DynamicObject`] keeps `spec` and `status` as JSON so the store, the change feed and the API
//! can carry any kind without knowing its fields.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::meta::{Kind, ObjectMeta, ResourceKey};

/// The only API version berth serves today.
pub const API_VERSION: &str = "berth.dev/v1";

/// A resource with a typed spec and status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Object<Spec, Status> {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// The resource's kind.
    pub kind: Kind,
    /// Name, namespace, labels and server-set bookkeeping.
    pub metadata: ObjectMeta,
    /// What the user asked for.
    pub spec: Spec,
    /// What the controller observed; written by berth only, ignored in manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl<Spec, Status> Object<Spec, Status> {
    /// The key (kind, namespace, name) that identifies this resource.
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.kind, &self.metadata.namespace, &self.metadata.name)
    }
}

/// The GraphQL type of one kind's typed resource (`Container`, `Image`): the envelope with its
/// spec and status as that kind's GraphQL types.
#[cfg(feature = "graphql")]
macro_rules! graphql_object {
    ($name:tt, $spec:ty, $status:ty, $doc:tt) => {
        #[doc = $doc]
        #[async_graphql::Object(name = $name)]
        impl Object<$spec, $status> {
            /// Always `berth.dev/v1`.
            async fn api_version(&self) -> &str {
                &self.api_version
            }
            /// The resource's kind.
            async fn kind(&self) -> Kind {
                self.kind
            }
            /// Name, namespace, labels and server-set bookkeeping.
            async fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            /// What the user asked for.
            async fn spec(&self) -> &$spec {
                &self.spec
            }
            /// What the controller observed; null until it has written any.
            async fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
        }
    };
}

#[cfg(feature = "graphql")]
graphql_object!(
    "Container",
    crate::container::ContainerSpec,
    crate::container::ContainerStatus,
    "A `Container` resource: a Docker container kept in the state its spec describes."
);

#[cfg(feature = "graphql")]
graphql_object!(
    "Image",
    crate::image::ImageSpec,
    crate::image::ImageStatus,
    "An `Image` resource: a Docker image kept present (pulled) on the host, or absent."
);

/// A resource whose spec and status are kept as JSON values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DynamicObject {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// The resource's kind.
    pub kind: Kind,
    /// Name, namespace, labels and server-set bookkeeping.
    pub metadata: ObjectMeta,
    /// What the user asked for.
    pub spec: serde_json::Value,
    /// What the controller observed (`null` until it has written any).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub status: serde_json::Value,
}

/// A [`DynamicObject`] whose spec or status does not fit the typed form of its kind.
#[derive(Debug, thiserror::Error)]
#[error("{key}: stored {part} does not match the {kind} schema")]
pub struct ConversionError {
    /// The resource concerned.
    pub key: ResourceKey,
    /// The resource's kind.
    pub kind: Kind,
    /// `spec` or `status`.
    pub part: &'static str,
    /// What serde said.
    #[source]
    pub source: serde_json::Error,
}

impl DynamicObject {
    /// The key (kind, namespace, name) that identifies this resource.
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.kind, &self.metadata.namespace, &self.metadata.name)
    }

    /// Reads spec and status into their typed forms.
    ///
    /// # Errors
    ///
    /// [`ConversionError`] when the JSON does not fit `Spec` or `Status`.
    pub fn to_typed<Spec, Status>(&self) -> Result<Object<Spec, Status>, ConversionError>
    where
        Spec: DeserializeOwned,
        Status: DeserializeOwned,
    {
        let err = |part, source| ConversionError { key: self.key(), kind: self.kind, part, source };
        let spec = serde_json::from_value(self.spec.clone()).map_err(|e| err("spec", e))?;
        let status = if self.status.is_null() {
            None
        } else {
            Some(serde_json::from_value(self.status.clone()).map_err(|e| err("status", e))?)
        };
        Ok(Object {
            api_version: self.api_version.clone(),
            kind: self.kind,
            metadata: self.metadata.clone(),
            spec,
            status,
        })
    }
}

impl<Spec: Serialize, Status: Serialize> From<&Object<Spec, Status>> for DynamicObject {
    fn from(o: &Object<Spec, Status>) -> Self {
        DynamicObject {
            api_version: o.api_version.clone(),
            kind: o.kind,
            metadata: o.metadata.clone(),
            spec: to_json(&o.spec),
            status: o.status.as_ref().map_or(serde_json::Value::Null, to_json),
        }
    }
}

/// Serializes plain model data to JSON. The model has no maps with non-string keys and no
/// fallible custom serializers, so this cannot fail; `Null` stands in should that ever change.
fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}
