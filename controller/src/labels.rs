//! Ownership labels, deterministic container names and the spec hash that tells berth's Docker
//! objects apart from everyone else's.
//!
//! Every Docker object berth creates carries [`MANAGED_BY`]`=berth`, the [`INSTANCE`] id of the
//! store (data directory) whose controller made it, the labels naming its resource ([`KIND`],
//! [`NAMESPACE`], [`NAME`], [`UID`]) and the [`SPEC_HASH`] of the spec that produced it. berth
//! never changes or removes an object without them, and a controller adopts or removes only
//! objects carrying its own instance id ([`owned_selector`], [`is_owned_by`]): a second berth
//! with another data directory on the same Engine, or a container made by a build without
//! instance ids, is left alone.
//!
//! # Container names
//!
//! A `Container` resource `web` in namespace `default` runs as the Docker container
//! `berth_default_web` ([`container_name`]). Docker allows `[a-zA-Z0-9][a-zA-Z0-9_.-]*` in
//! names and sets no practical length limit; berth's namespaces and names are DNS labels
//! (`[a-z0-9-]`, at most 63 characters), so the name is at most 133 characters. The separator is
//! `_` rather than `-` because `-` may appear inside a namespace or a name: with `-`,
//! `a-b`/`c` and `a`/`b-c` would both map to `berth-a-b-c`, while `_` can never be part of
//! either and keeps the mapping one-to-one.

use std::collections::{BTreeMap, HashMap};

use berth_schemas::meta::RESTARTED_AT_ANNOTATION;
use berth_schemas::{Container, ContainerSpec, ImageReference, Kind, ResourceKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `dev.berth.managed-by`: always [`MANAGED_BY_VALUE`] on berth's objects.
pub const MANAGED_BY: &str = "dev.berth.managed-by";
/// The value of [`MANAGED_BY`].
pub const MANAGED_BY_VALUE: &str = "berth";
/// `dev.berth.instance`: the instance id of the store whose controller made the object (see
/// `ResourceStore::instance_id`).
pub const INSTANCE: &str = "dev.berth.instance";
/// `dev.berth.kind`: the resource kind (`Container`).
pub const KIND: &str = "dev.berth.kind";
/// `dev.berth.namespace`: the resource namespace.
pub const NAMESPACE: &str = "dev.berth.namespace";
/// `dev.berth.name`: the resource name.
pub const NAME: &str = "dev.berth.name";
/// `dev.berth.uid`: the uid of the resource incarnation that made the object.
pub const UID: &str = "dev.berth.uid";
/// `dev.berth.spec-hash`: [`spec_hash`] of the spec the object was made from.
pub const SPEC_HASH: &str = "dev.berth.spec-hash";

/// The Docker container name berth uses for a `Container` resource: `berth_<namespace>_<name>`.
pub fn container_name(namespace: &str, name: &str) -> String {
    format!("berth_{namespace}_{name}")
}

/// Who an object is made for: the controller's instance and the resource incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    /// The store's instance id ([`INSTANCE`]).
    pub instance: &'a str,
    /// The resource key.
    pub key: &'a ResourceKey,
    /// The resource's uid ([`UID`]).
    pub uid: &'a str,
}

/// The labels berth puts on the object it makes for a resource: the user's labels, then
/// berth's ownership labels, which overwrite any user label of the same key.
pub fn ownership_labels(
    owner: Owner<'_>,
    spec_hash: &str,
    user: &BTreeMap<String, String>,
) -> HashMap<String, String> {
    let Owner { instance, key, uid } = owner;
    let mut labels: HashMap<String, String> =
        user.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    labels.insert(MANAGED_BY.into(), MANAGED_BY_VALUE.into());
    labels.insert(INSTANCE.into(), instance.into());
    labels.insert(KIND.into(), key.kind.as_str().into());
    labels.insert(NAMESPACE.into(), key.namespace.clone());
    labels.insert(NAME.into(), key.name.clone());
    labels.insert(UID.into(), uid.into());
    labels.insert(SPEC_HASH.into(), spec_hash.into());
    labels
}

/// Whether the labels mark an object as berth's.
pub fn is_managed(labels: &HashMap<String, String>) -> bool {
    labels.get(MANAGED_BY).is_some_and(|v| v == MANAGED_BY_VALUE)
}

/// Whether the labels mark an object as made by the controller of store `instance`: berth's,
/// with that instance id. Objects of other berth instances, and of builds that set no instance
/// id, are not.
pub fn is_owned_by(labels: &HashMap<String, String>, instance: &str) -> bool {
    is_managed(labels) && labels.get(INSTANCE).is_some_and(|v| v == instance)
}

/// The resource a berth-managed object belongs to, read from its labels; `None` for an object
/// that is not berth's or whose labels are incomplete. (Whose instance it is is not checked:
/// see [`owned_resource_key`].)
pub fn resource_key(labels: &HashMap<String, String>) -> Option<ResourceKey> {
    if !is_managed(labels) {
        return None;
    }
    let kind = labels.get(KIND)?.parse::<Kind>().ok()?;
    Some(ResourceKey::new(kind, labels.get(NAMESPACE)?.clone(), labels.get(NAME)?.clone()))
}

/// As [`resource_key`], but only for objects made by the controller of store `instance`.
pub fn owned_resource_key(labels: &HashMap<String, String>, instance: &str) -> Option<ResourceKey> {
    if !is_owned_by(labels, instance) {
        return None;
    }
    resource_key(labels)
}

/// The labels, with their values, that mark an object as made by the controller of store
/// `instance` for the resource `key`: [`MANAGED_BY`], [`INSTANCE`], [`KIND`], [`NAMESPACE`]
/// and [`NAME`]. This is the one rule that finds a resource's Docker objects: the reconciler,
/// logs, stats and exec all look containers up by it (through
/// [`ContainerFilter::owned_by`](crate::docker::ContainerFilter::owned_by) and
/// [`docker::owned_by`](crate::docker::owned_by)), so none of them reaches another berth
/// instance's container on a shared Engine.
pub fn owned_by(instance: &str, key: &ResourceKey) -> [(&'static str, String); 5] {
    [
        (MANAGED_BY, MANAGED_BY_VALUE.to_owned()),
        (INSTANCE, instance.to_owned()),
        (KIND, key.kind.as_str().to_owned()),
        (NAMESPACE, key.namespace.clone()),
        (NAME, key.name.clone()),
    ]
}

/// The spec hash ([`spec_hash`]) of the container a `Container` resource asks for, given the
/// id of the image its reference resolves to: the spec plus its `berth.dev/restartedAt`
/// annotation.
pub fn container_spec_hash(obj: &Container, image_id: &str) -> String {
    let restarted_at = obj.metadata.annotations.get(RESTARTED_AT_ANNOTATION).map(String::as_str);
    spec_hash(&obj.spec, image_id, restarted_at)
}

/// Whether a container (its labels and the id of the image it runs) was made from the current
/// incarnation and spec of `obj`: its [`UID`] is the resource's uid and its [`SPEC_HASH`] is
/// the hash of the stored spec. A container that is not is about to be replaced (or is left
/// from an earlier incarnation): what the stored spec says does not describe it.
pub fn is_made_from(labels: &HashMap<String, String>, image_id: &str, obj: &Container) -> bool {
    let uid = obj.metadata.uid.as_deref();
    uid.is_some()
        && labels.get(UID).map(String::as_str) == uid
        && labels.get(SPEC_HASH).is_some_and(|h| *h == container_spec_hash(obj, image_id))
}

/// The label filters that select every object the controller of store `instance` made.
pub fn owned_selector(instance: &str) -> Vec<String> {
    vec![format!("{MANAGED_BY}={MANAGED_BY_VALUE}"), format!("{INSTANCE}={instance}")]
}

/// The label filter that selects every object any berth manages (any instance).
pub fn managed_selector() -> Vec<String> {
    vec![format!("{MANAGED_BY}={MANAGED_BY_VALUE}")]
}

/// The hash of what a container is made from: the normalized spec plus the id of the image it
/// resolved. Equal hashes mean the existing container is what the spec asks for; a different
/// hash means replace.
///
/// The spec is normalized first: the image reference is written fully qualified (`busybox` and
/// `docker.io/library/busybox:latest` hash alike), and the fields that do not shape the
/// container itself are left out: `desiredState` (start and stop act on the same container),
/// `imagePullPolicy` (how the image is fetched, not which one runs: the image id covers that)
/// and `dependsOn` (ordering only). The JSON is canonical (object keys sorted, no whitespace),
/// so the hash is stable across serde versions and field order.
///
/// `restarted_at` is the resource's `berth.dev/restartedAt` annotation
/// ([`berth_schemas::meta::RESTARTED_AT_ANNOTATION`]): a new value gives a new hash, so the container is replaced.
pub fn spec_hash(spec: &ContainerSpec, image_id: &str, restarted_at: Option<&str>) -> String {
    let mut value = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        for field in ["desiredState", "imagePullPolicy", "dependsOn"] {
            map.remove(field);
        }
        if let Ok(r) = ImageReference::parse(&spec.image) {
            map.insert("image".into(), Value::String(r.normalized()));
        }
    }
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
    let mut hasher = Sha256::new();
    hasher.update(canonical.as_bytes());
    hasher.update(b"\n");
    hasher.update(image_id.as_bytes());
    if let Some(at) = restarted_at {
        hasher.update(b"\nrestartedAt:");
        hasher.update(at.as_bytes());
    }
    hex(&hasher.finalize())
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use berth_schemas::{DesiredState, EnvVar, PullPolicy};

    use super::*;

    fn spec(image: &str) -> ContainerSpec {
        ContainerSpec { image: image.into(), ..ContainerSpec::default() }
    }

    #[test]
    fn the_hash_is_the_same_for_equal_specs_and_is_sha256_hex() {
        let h = spec_hash(&spec("busybox:1"), "sha256:abc", None);
        assert_eq!(h, spec_hash(&spec("busybox:1"), "sha256:abc", None));
        assert_eq!(h.len(), 64);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn the_hash_of_a_known_spec_is_pinned_so_that_an_accidental_change_is_noticed() {
        // A different value here makes every berth replace every container on upgrade.
        assert_eq!(
            spec_hash(&spec("busybox:1"), "sha256:abc", None),
            "e0990b12a304624a8941a500aa806bf1b8b2098b17d395d257a4d52f891ff3eb"
        );
    }

    #[test]
    fn a_new_restarted_at_annotation_changes_the_hash_so_the_container_is_replaced() {
        let base = spec_hash(&spec("busybox:1"), "sha256:abc", None);
        let first = spec_hash(&spec("busybox:1"), "sha256:abc", Some("2026-11-27T14:00:00Z"));
        let second = spec_hash(&spec("busybox:1"), "sha256:abc", Some("2026-11-27T14:05:00Z"));
        assert_ne!(base, first);
        assert_ne!(first, second);
        assert_eq!(
            first,
            spec_hash(&spec("busybox:1"), "sha256:abc", Some("2026-11-27T14:00:00Z"))
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let canonical = {
            let mut s = String::new();
            write_canonical(
                &serde_json::json!({"b": [1, {"d": true, "c": null}], "a": "x"}),
                &mut s,
            );
            s
        };
        assert_eq!(canonical, r#"{"a":"x","b":[1,{"c":null,"d":true}]}"#);
    }

    #[test]
    fn the_hash_changes_with_the_spec_and_with_the_image_id() {
        let base = spec_hash(&spec("busybox:1"), "sha256:abc", None);
        assert_ne!(base, spec_hash(&spec("busybox:2"), "sha256:abc", None));
        assert_ne!(base, spec_hash(&spec("busybox:1"), "sha256:def", None));
        let with_env = ContainerSpec {
            env: vec![EnvVar { name: "A".into(), value: "1".into() }],
            ..spec("busybox:1")
        };
        assert_ne!(base, spec_hash(&with_env, "sha256:abc", None));
    }

    #[test]
    fn desired_state_pull_policy_and_dependencies_do_not_change_the_hash() {
        let base = spec_hash(&spec("busybox:1"), "sha256:abc", None);
        let other = ContainerSpec {
            desired_state: DesiredState::Stopped,
            image_pull_policy: PullPolicy::Always,
            ..spec("busybox:1")
        };
        assert_eq!(base, spec_hash(&other, "sha256:abc", None));
    }

    #[test]
    fn equivalent_image_references_hash_alike() {
        assert_eq!(
            spec_hash(&spec("busybox"), "sha256:abc", None),
            spec_hash(&spec("docker.io/library/busybox:latest"), "sha256:abc", None)
        );
    }

    #[test]
    fn container_names_are_unambiguous_for_names_with_dashes() {
        assert_eq!(container_name("default", "web"), "berth_default_web");
        assert_ne!(container_name("a-b", "c"), container_name("a", "b-c"));
    }

    #[test]
    fn ownership_labels_round_trip_to_the_resource_key_and_cannot_be_overridden_by_users() {
        let key = ResourceKey::new(Kind::Container, "prod", "web");
        let user = BTreeMap::from([
            ("app".to_owned(), "web".to_owned()),
            (UID.to_owned(), "forged".to_owned()),
        ]);
        let owner = Owner { instance: "inst-1", key: &key, uid: "uid-1" };
        let labels = ownership_labels(owner, "hash-1", &user);
        assert_eq!(resource_key(&labels), Some(key.clone()));
        assert_eq!(owned_resource_key(&labels, "inst-1"), Some(key));
        assert_eq!(labels.get(UID).map(String::as_str), Some("uid-1"));
        assert_eq!(labels.get(INSTANCE).map(String::as_str), Some("inst-1"));
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get(SPEC_HASH).map(String::as_str), Some("hash-1"));
    }

    #[test]
    fn only_objects_with_this_instance_id_are_owned_by_this_instance() {
        let key = ResourceKey::new(Kind::Container, "default", "web");
        let ours = ownership_labels(
            Owner { instance: "inst-1", key: &key, uid: "u" },
            "h",
            &BTreeMap::new(),
        );
        assert!(is_owned_by(&ours, "inst-1"));
        assert!(!is_owned_by(&ours, "inst-2"), "another berth's container");
        assert_eq!(owned_resource_key(&ours, "inst-2"), None);
        let mut older_build = ours.clone();
        older_build.remove(INSTANCE);
        assert!(is_managed(&older_build));
        assert!(!is_owned_by(&older_build, "inst-1"), "a container made before instance ids");
        // A user label cannot claim another instance's id either.
        let user = BTreeMap::from([(INSTANCE.to_owned(), "inst-2".to_owned())]);
        let forged =
            ownership_labels(Owner { instance: "inst-1", key: &key, uid: "u" }, "h", &user);
        assert!(is_owned_by(&forged, "inst-1"));
    }

    #[test]
    fn the_owned_by_lookup_passes_only_this_instances_container_of_that_resource() {
        use crate::docker::ContainerFilter;
        let key = ResourceKey::new(Kind::Container, "default", "web");
        let ours = ownership_labels(
            Owner { instance: "inst-1", key: &key, uid: "u" },
            "h",
            &BTreeMap::new(),
        );
        assert!(ContainerFilter::owned_by("inst-1", &key).matches(&ours));
        assert!(
            !ContainerFilter::owned_by("inst-2", &key).matches(&ours),
            "another berth instance's container of the same namespace and name"
        );
        let other = ResourceKey::new(Kind::Container, "default", "db");
        assert!(!ContainerFilter::owned_by("inst-1", &other).matches(&ours));
        let mut unlabelled = ours.clone();
        unlabelled.remove(INSTANCE);
        assert!(!ContainerFilter::owned_by("inst-1", &key).matches(&unlabelled));
    }

    #[test]
    fn a_container_is_made_from_a_resource_only_with_its_uid_and_its_current_spec_hash() {
        let mut obj = Container {
            api_version: "berth.dev/v1".into(),
            kind: Kind::Container,
            metadata: berth_schemas::ObjectMeta {
                name: "web".into(),
                namespace: "default".into(),
                uid: Some("uid-1".into()),
                ..Default::default()
            },
            spec: spec("busybox:1"),
            status: None,
        };
        let key = obj.key();
        let hash = container_spec_hash(&obj, "sha256:abc");
        let labels = ownership_labels(
            Owner { instance: "i", key: &key, uid: "uid-1" },
            &hash,
            &BTreeMap::new(),
        );
        assert!(is_made_from(&labels, "sha256:abc", &obj));
        assert!(!is_made_from(&labels, "sha256:def", &obj), "another image");
        let mut restarted = obj.clone();
        restarted
            .metadata
            .annotations
            .insert(RESTARTED_AT_ANNOTATION.into(), "2026-12-08T00:00:00Z".into());
        assert!(!is_made_from(&labels, "sha256:abc", &restarted), "a restart replaces it");
        let mut changed = obj.clone();
        changed.spec.privileged = true;
        assert!(!is_made_from(&labels, "sha256:abc", &changed), "the spec moved on");
        obj.metadata.uid = Some("uid-2".into());
        assert!(!is_made_from(&labels, "sha256:abc", &obj), "another incarnation");
    }

    #[test]
    fn objects_without_the_managed_by_label_belong_to_no_resource() {
        let mut labels = HashMap::from([
            (KIND.to_owned(), "Container".to_owned()),
            (NAMESPACE.to_owned(), "default".to_owned()),
            (NAME.to_owned(), "web".to_owned()),
        ]);
        assert_eq!(resource_key(&labels), None);
        labels.insert(MANAGED_BY.into(), "someone-else".into());
        assert_eq!(resource_key(&labels), None);
    }
}
