//! Named volumes: who owns them, and making the missing ones before a container mounts them.
//!
//! # The rule (issue 11, hole 7)
//!
//! An existing volume may be a host path in disguise: a `local` volume created with
//! `-o type=none -o o=bind -o device=/etc` mounts `/etc`. So a `Container` may mount, without
//! being written by an admin,
//! - a named volume that does not exist yet: berth creates it, empty and labelled as berth's
//!   ([`ensure_volumes`]), before it creates the container (Docker would create it unlabelled);
//! - a named volume berth made (it carries this instance's ownership labels).
//!
//! Mounting any other existing volume is admin-only: [`foreign_volume_mounts`] names such
//! mounts, and the API's admin-only check refuses them from a caller below admin.

use std::collections::HashMap;

use berth_schemas::{Container, ContainerSpec, FieldPath, MountType};

use super::super::{Context, Error, act, driver_err, verbs};
use crate::docker::{Driver, DriverError, ObservedVolume};
use crate::labels;

/// The named volumes a spec mounts, with the index of the mount (anonymous volumes, binds and
/// tmpfs mounts are not listed).
pub fn named_volumes(spec: &ContainerSpec) -> impl Iterator<Item = (usize, &str)> {
    spec.mounts.iter().enumerate().filter_map(|(i, m)| match (m.type_, &m.source) {
        (MountType::Volume, Some(name)) => Some((i, name.as_str())),
        _ => None,
    })
}

/// Whether `volume` is one berth (the controller of store `instance`) made.
pub fn is_berth_volume(volume: &ObservedVolume, instance: &str) -> bool {
    labels::is_owned_by(&volume.labels, instance)
}

/// The mounts of `spec` (`spec.mounts[1]`) that name an existing volume berth did not make:
/// mounting those is admin-only. A volume that does not exist is not listed (berth creates it,
/// as its own, before the container).
///
/// # Errors
///
/// The driver's, when a volume cannot be inspected (the Engine is unreachable): the caller
/// cannot tell, and must not let the mount through.
pub async fn foreign_volume_mounts(
    driver: &dyn Driver,
    instance: &str,
    spec: &ContainerSpec,
) -> Result<Vec<FieldPath>, DriverError> {
    let mut foreign = Vec::new();
    for (i, name) in named_volumes(spec) {
        if let Some(volume) = driver.inspect_volume(name).await?
            && !is_berth_volume(&volume, instance)
        {
            foreign.push(FieldPath::root().field("spec").field("mounts").index(i));
        }
    }
    Ok(foreign)
}

/// The labels berth puts on a volume it creates for the container resource `obj` (incarnation
/// `uid`): berth's ownership labels, without a spec hash (a volume outlives specs).
pub fn volume_labels(instance: &str, obj: &Container, uid: &str) -> HashMap<String, String> {
    let key = obj.key();
    HashMap::from([
        (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
        (labels::INSTANCE.to_owned(), instance.to_owned()),
        (labels::KIND.to_owned(), key.kind.as_str().to_owned()),
        (labels::NAMESPACE.to_owned(), key.namespace.clone()),
        (labels::NAME.to_owned(), key.name.clone()),
        (labels::UID.to_owned(), uid.to_owned()),
    ])
}

/// Creates, labelled as berth's, each named volume `obj` mounts that does not exist yet; an
/// existing one (berth's or, when an admin wrote the spec, anyone's) is used as it is. Each
/// creation is audited. Volumes are never removed by berth: they hold data.
///
/// # Errors
///
/// Driver and audit failures.
pub(crate) async fn ensure_volumes(ctx: &Context, obj: &Container, uid: &str) -> Result<(), Error> {
    let key = obj.key();
    for (_, name) in named_volumes(&obj.spec) {
        let found = ctx
            .driver
            .inspect_volume(name)
            .await
            .map_err(driver_err(format!("inspect volume {name}")))?;
        if found.is_some() {
            continue;
        }
        let labels = volume_labels(&ctx.instance, obj, uid);
        act(ctx, &key, verbs::VOLUME_CREATE, format!("create volume {name}"), || {
            ctx.driver.create_volume(name, &labels)
        })
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use berth_schemas::{Mount, ObjectMeta};

    use super::*;
    use crate::docker::fake::FakeDriver;

    fn spec(mounts: &[(MountType, Option<&str>)]) -> ContainerSpec {
        ContainerSpec {
            image: "busybox".into(),
            mounts: mounts
                .iter()
                .enumerate()
                .map(|(i, (t, s))| Mount {
                    type_: *t,
                    source: s.map(str::to_owned),
                    target: format!("/m{i}"),
                    read_only: false,
                })
                .collect(),
            ..ContainerSpec::default()
        }
    }

    fn volume(name: &str, labels: HashMap<String, String>) -> ObservedVolume {
        ObservedVolume {
            name: name.into(),
            driver: "local".into(),
            labels,
            options: HashMap::new(),
        }
    }

    #[tokio::test]
    async fn only_existing_volumes_berth_did_not_make_are_foreign() {
        let fake = FakeDriver::new();
        let obj = Container {
            api_version: berth_schemas::API_VERSION.into(),
            kind: berth_schemas::Kind::Container,
            metadata: ObjectMeta::named("web"),
            spec: ContainerSpec::default(),
            status: None,
        };
        fake.insert_volume(volume("etc", HashMap::new()));
        fake.insert_volume(volume("ours", volume_labels("inst-1", &obj, "uid-1")));
        fake.insert_volume(volume("theirs", volume_labels("inst-2", &obj, "uid-1")));
        let s = spec(&[
            (MountType::Volume, Some("fresh")),
            (MountType::Volume, Some("etc")),
            (MountType::Tmpfs, None),
            (MountType::Volume, Some("ours")),
            (MountType::Volume, None),
            (MountType::Volume, Some("theirs")),
        ]);
        let foreign = foreign_volume_mounts(&fake, "inst-1", &s).await.expect("inspects");
        let paths: Vec<String> = foreign.iter().map(ToString::to_string).collect();
        assert_eq!(paths, ["spec.mounts[1]", "spec.mounts[5]"]);
    }
}
