//! Property tests: a resource serialized to YAML or JSON and parsed back as a manifest is the
//! same resource.

use std::collections::BTreeMap;
use std::net::IpAddr;

use berth_schemas::container::{
    DesiredState, Device, EnvVar, HealthCheck, Mount, MountType, NetworkMode, ObjectReference,
    PidMode, PortMapping, Protocol, PullPolicy, Resources, RestartPolicy, RestartPolicyKind,
};
use berth_schemas::image::Presence;
use berth_schemas::{
    API_VERSION, Container, ContainerSpec, Image, ImageSpec, Kind, Object, ObjectMeta, ParseLimits,
    Quantity, Resource, parse_manifests,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

/// Any printable text, including YAML's tricky scalars (`~`, `null`, `yes`, `0x1F`, `- a`).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        Just("~".to_owned()),
        Just("null".to_owned()),
        Just("yes".to_owned()),
        Just("0x1F".to_owned()),
        Just("1e3".to_owned()),
        Just("- a".to_owned()),
        Just("a: b".to_owned()),
        Just("#x".to_owned()),
        Just("".to_owned()),
        Just(" padded ".to_owned()),
        Just("line\nbreak".to_owned()),
    ]
}

fn pull_policy() -> impl Strategy<Value = PullPolicy> {
    prop_oneof![Just(PullPolicy::Always), Just(PullPolicy::IfNotPresent), Just(PullPolicy::Never)]
}

fn port() -> impl Strategy<Value = PortMapping> {
    (any::<u16>(), option::of(any::<u16>()), option::of(any::<IpAddr>()), any::<bool>()).prop_map(
        |(container_port, host_port, host_ip, udp)| PortMapping {
            container_port,
            host_port,
            host_ip,
            protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
        },
    )
}

fn mount() -> impl Strategy<Value = Mount> {
    (
        prop_oneof![Just(MountType::Volume), Just(MountType::Bind), Just(MountType::Tmpfs)],
        option::of(text()),
        text(),
        any::<bool>(),
    )
        .prop_map(|(type_, source, target, read_only)| Mount {
            type_,
            source,
            target,
            read_only,
        })
}

fn health() -> impl Strategy<Value = HealthCheck> {
    (
        vec(text(), 0..3),
        option::of(text()),
        option::of(text()),
        option::of(any::<u32>()),
        option::of(text()),
    )
        .prop_map(|(command, interval, timeout, retries, start_period)| HealthCheck {
            command,
            interval,
            timeout,
            retries,
            start_period,
        })
}

fn resources() -> impl Strategy<Value = Resources> {
    (option::of(text()), option::of(text()), option::of(any::<i64>())).prop_map(
        |(cpus, memory, pids_limit)| Resources {
            cpus: cpus.map(Quantity),
            memory: memory.map(Quantity),
            pids_limit,
        },
    )
}

fn reference() -> impl Strategy<Value = ObjectReference> {
    (any::<bool>(), text(), option::of(text())).prop_map(|(image, name, namespace)| {
        ObjectReference { kind: if image { Kind::Image } else { Kind::Container }, name, namespace }
    })
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(text(), text(), 0..3)
}

fn container_spec() -> impl Strategy<Value = ContainerSpec> {
    let a = (
        text(),
        pull_policy(),
        vec(text(), 0..3),
        vec(text(), 0..3),
        vec((text(), text()).prop_map(|(name, value)| EnvVar { name, value }), 0..3),
        vec(port(), 0..3),
        vec(mount(), 0..3),
        vec(text(), 0..2),
        option::of(prop_oneof![
            Just(NetworkMode::Bridge),
            Just(NetworkMode::Host),
            Just(NetworkMode::None)
        ]),
    );
    let b = (
        (
            prop_oneof![
                Just(RestartPolicyKind::Always),
                Just(RestartPolicyKind::OnFailure),
                Just(RestartPolicyKind::Never)
            ],
            option::of(any::<u32>()),
        )
            .prop_map(|(policy, max_retries)| RestartPolicy { policy, max_retries }),
        option::of(health()),
        option::of(resources()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        labels(),
        option::of(text()),
        option::of(any::<u32>()),
    );
    let c = (
        any::<bool>(),
        prop_oneof![Just(DesiredState::Running), Just(DesiredState::Stopped)],
        vec(reference(), 0..3),
        any::<bool>(),
        option::of(prop_oneof![Just(PidMode::Private), Just(PidMode::Host)]),
        vec(text(), 0..2),
        vec(text(), 0..2),
        vec(
            (text(), option::of(text()), option::of(text())).prop_map(
                |(host_path, container_path, permissions)| Device {
                    host_path,
                    container_path,
                    permissions,
                },
            ),
            0..2,
        ),
    );
    (a, b, c).prop_map(
        |(
            (image, image_pull_policy, command, args, env, ports, mounts, networks, network_mode),
            (
                restart_policy,
                health_check,
                resources,
                user,
                working_dir,
                hostname,
                labels,
                stop_signal,
                stop_grace_period_seconds,
            ),
            (init, desired_state, depends_on, privileged, pid_mode, cap_add, cap_drop, devices),
        )| ContainerSpec {
            image,
            image_pull_policy,
            command,
            args,
            env,
            ports,
            mounts,
            networks,
            network_mode,
            restart_policy,
            health_check,
            resources,
            user,
            working_dir,
            hostname,
            labels,
            stop_signal,
            stop_grace_period_seconds,
            init,
            desired_state,
            depends_on,
            privileged,
            pid_mode,
            cap_add,
            cap_drop,
            devices,
        },
    )
}

fn image_spec() -> impl Strategy<Value = ImageSpec> {
    (text(), pull_policy(), option::of(text()), any::<bool>()).prop_map(
        |(reference, pull_policy, platform, absent)| ImageSpec {
            reference,
            pull_policy,
            platform,
            presence: if absent { Presence::Absent } else { Presence::Present },
        },
    )
}

fn meta() -> impl Strategy<Value = ObjectMeta> {
    (text(), text(), labels(), labels()).prop_map(|(name, namespace, labels, annotations)| {
        ObjectMeta { name, namespace, labels, annotations, ..ObjectMeta::default() }
    })
}

fn parse_one(text: &str) -> Resource {
    let limits = ParseLimits::default();
    let mut docs = parse_manifests(text.as_bytes(), &limits)
        .unwrap_or_else(|e| panic!("round trip failed to parse: {e:?}\n{text}"));
    assert_eq!(docs.len(), 1);
    docs.remove(0).resource
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_container_survives_yaml_and_json_round_trips(metadata in meta(), spec in container_spec()) {
        let c: Container = Object { api_version: API_VERSION.into(), kind: Kind::Container, metadata, spec, status: None };
        let expected = Resource::Container(Box::new(c.clone()));
        let yaml = serde_saphyr::to_string(&c).expect("serialize YAML");
        prop_assert_eq!(&parse_one(&yaml), &expected, "YAML:\n{}", yaml);
        let json = serde_json::to_string_pretty(&c).expect("serialize JSON");
        prop_assert_eq!(&parse_one(&json), &expected, "JSON:\n{}", json);
    }

    #[test]
    fn an_image_survives_yaml_and_json_round_trips(metadata in meta(), spec in image_spec()) {
        let i: Image = Object { api_version: API_VERSION.into(), kind: Kind::Image, metadata, spec, status: None };
        let expected = Resource::Image(Box::new(i.clone()));
        let yaml = serde_saphyr::to_string(&i).expect("serialize YAML");
        prop_assert_eq!(&parse_one(&yaml), &expected, "YAML:\n{}", yaml);
        let json = serde_json::to_string(&i).expect("serialize JSON");
        prop_assert_eq!(&parse_one(&json), &expected, "JSON:\n{}", json);
    }
}
