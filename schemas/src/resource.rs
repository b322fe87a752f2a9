//! Kind dispatch: [`Resource`] holds any typed resource and converts to and from
//! [`DynamicObject`].

use crate::container::Container;
use crate::image::Image;
use crate::meta::{Kind, ObjectMeta, ResourceKey};
use crate::object::{ConversionError, DynamicObject};
use crate::path::FieldPath;

/// A resource of any kind, in its typed form.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// A `Container` (boxed: its spec is much larger than an image's).
    Container(Box<Container>),
    /// An `Image`.
    Image(Box<Image>),
}

impl Resource {
    /// Reads a [`DynamicObject`] into the typed form of its kind.
    ///
    /// # Errors
    ///
    /// [`ConversionError`] when spec or status does not fit the kind's types.
    pub fn from_dynamic(obj: &DynamicObject) -> Result<Self, ConversionError> {
        Ok(match obj.kind {
            Kind::Container => Resource::Container(Box::new(obj.to_typed()?)),
            Kind::Image => Resource::Image(Box::new(obj.to_typed()?)),
        })
    }

    /// The untyped form, as the store keeps it.
    pub fn to_dynamic(&self) -> DynamicObject {
        match self {
            Resource::Container(o) => DynamicObject::from(o.as_ref()),
            Resource::Image(o) => DynamicObject::from(o.as_ref()),
        }
    }

    /// The resource's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Container(_) => Kind::Container,
            Resource::Image(_) => Kind::Image,
        }
    }

    /// The resource's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Resource::Container(o) => &o.metadata,
            Resource::Image(o) => &o.metadata,
        }
    }

    /// The resource's metadata, mutable (for the server to set uid, generation, ...).
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Resource::Container(o) => &mut o.metadata,
            Resource::Image(o) => &mut o.metadata,
        }
    }

    /// The key (kind, namespace, name) that identifies this resource.
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.kind(), &self.metadata().namespace, &self.metadata().name)
    }

    /// The admin-only fields this resource uses (see
    /// [`ContainerSpec::admin_only_fields`](crate::ContainerSpec::admin_only_fields)); empty
    /// when any user allowed to write may write it. Images have none.
    pub fn admin_only_fields(&self) -> Vec<FieldPath> {
        match self {
            Resource::Container(c) => c.spec.admin_only_fields(),
            Resource::Image(_) => Vec::new(),
        }
    }
}

impl TryFrom<&DynamicObject> for Resource {
    type Error = ConversionError;

    fn try_from(obj: &DynamicObject) -> Result<Self, Self::Error> {
        Resource::from_dynamic(obj)
    }
}

impl From<&Resource> for DynamicObject {
    fn from(r: &Resource) -> Self {
        r.to_dynamic()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerSpec;
    use crate::meta::ObjectMeta;
    use crate::object::{API_VERSION, Object};

    #[test]
    fn a_container_survives_the_trip_through_dynamic_object() {
        let c: Container = Object {
            api_version: API_VERSION.into(),
            kind: Kind::Container,
            metadata: ObjectMeta::named("web"),
            spec: ContainerSpec { image: "nginx:1.27".into(), ..ContainerSpec::default() },
            status: None,
        };
        let r = Resource::Container(Box::new(c));
        let back = Resource::from_dynamic(&r.to_dynamic()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.key().to_string(), "Container/default/web");
    }

    #[test]
    fn admin_only_fields_come_from_the_container_spec() {
        let mut spec = ContainerSpec { image: "nginx".into(), ..ContainerSpec::default() };
        spec.privileged = true;
        let c: Container = Object {
            api_version: API_VERSION.into(),
            kind: Kind::Container,
            metadata: ObjectMeta::named("web"),
            spec,
            status: None,
        };
        let paths: Vec<String> = Resource::Container(Box::new(c))
            .admin_only_fields()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(paths, ["spec.privileged"]);
    }

    #[test]
    fn a_dynamic_object_with_a_foreign_spec_does_not_convert() {
        let d = DynamicObject {
            api_version: API_VERSION.into(),
            kind: Kind::Image,
            metadata: ObjectMeta::named("x"),
            spec: serde_json::json!({"image": "nginx"}),
            status: serde_json::Value::Null,
        };
        let err = Resource::from_dynamic(&d).unwrap_err();
        assert_eq!(err.part, "spec");
    }
}
