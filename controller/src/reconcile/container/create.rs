//! Turns a `Container` spec into the driver's [`ContainerCreate`], ownership labels included.

use std::time::Duration;

use berth_schemas::{
    Container, ContainerSpec, MountType, NetworkMode, PidMode, Protocol, RestartPolicyKind,
    parse_duration,
};

use crate::docker::{
    self, ContainerCreate, DeviceMapping, Healthcheck, MountKind, MountSpec, PortPublish,
    ResourceLimits, RestartPolicy,
};
use crate::labels;

/// A spec field that does not convert (validation should have refused it).
#[derive(Debug, thiserror::Error)]
#[error("spec.{field} is invalid: {message}")]
pub struct SpecError {
    /// The field, under `spec`.
    pub field: &'static str,
    /// Why.
    pub message: String,
}

/// The stop grace period of a spec: `stopGracePeriodSeconds`, or Docker's 10 s.
pub fn grace_period(spec: &ContainerSpec) -> Duration {
    Duration::from_secs(u64::from(spec.stop_grace_period_seconds.unwrap_or(10)))
}

fn duration(field: &'static str, value: Option<&String>) -> Result<Option<Duration>, SpecError> {
    value
        .map(|v| parse_duration(v).map_err(|e| SpecError { field, message: e.to_string() }))
        .transpose()
}

/// The create request for `obj`, labelled as made by the controller of store `instance` for
/// resource incarnation `uid`, with `spec_hash` (see [`labels::spec_hash`]).
///
/// # Errors
///
/// [`SpecError`] when a duration or quantity does not parse.
pub fn container_create(
    obj: &Container,
    instance: &str,
    uid: &str,
    spec_hash: &str,
) -> Result<ContainerCreate, SpecError> {
    let spec = &obj.spec;
    let key = obj.key();
    let healthcheck = match &spec.health_check {
        Some(h) => Some(Healthcheck {
            command: h.command.clone(),
            interval: duration("healthCheck.interval", h.interval.as_ref())?,
            timeout: duration("healthCheck.timeout", h.timeout.as_ref())?,
            retries: h.retries,
            start_period: duration("healthCheck.startPeriod", h.start_period.as_ref())?,
        }),
        None => None,
    };
    let resources = match &spec.resources {
        Some(r) => ResourceLimits {
            nano_cpus: r
                .cpus
                .as_ref()
                .map(|q| q.nano_cpus())
                .transpose()
                .map_err(|e| SpecError { field: "resources.cpus", message: e.to_string() })?,
            memory_bytes: r
                .memory
                .as_ref()
                .map(|q| q.memory_bytes())
                .transpose()
                .map_err(|e| SpecError { field: "resources.memory", message: e.to_string() })?
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            pids_limit: r.pids_limit,
        },
        None => ResourceLimits::default(),
    };
    let restart_policy = match spec.restart_policy.policy {
        RestartPolicyKind::Always => RestartPolicy::Always,
        RestartPolicyKind::OnFailure => {
            RestartPolicy::OnFailure { max_retries: spec.restart_policy.max_retries }
        }
        RestartPolicyKind::Never => RestartPolicy::No,
    };
    Ok(ContainerCreate {
        name: labels::container_name(&key.namespace, &key.name),
        image: spec.image.clone(),
        entrypoint: (!spec.command.is_empty()).then(|| spec.command.clone()),
        cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: spec.env.iter().map(|e| (e.name.clone(), e.value.clone())).collect(),
        labels: labels::ownership_labels(
            labels::Owner { instance, key: &key, uid },
            spec_hash,
            &spec.labels,
        ),
        ports: spec
            .ports
            .iter()
            .map(|p| PortPublish {
                container_port: p.container_port,
                protocol: match p.protocol {
                    Protocol::Tcp => docker::Protocol::Tcp,
                    Protocol::Udp => docker::Protocol::Udp,
                },
                host_ip: p.host_ip.map(|ip| ip.to_string()),
                host_port: p.host_port,
            })
            .collect(),
        mounts: spec
            .mounts
            .iter()
            .map(|m| MountSpec {
                kind: match m.type_ {
                    MountType::Volume => MountKind::Volume,
                    MountType::Bind => MountKind::Bind,
                    MountType::Tmpfs => MountKind::Tmpfs,
                },
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
            })
            .collect(),
        restart_policy,
        healthcheck,
        resources,
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: Some(grace_period(spec)),
        init: spec.init,
        network_mode: spec.network_mode.map(|m| {
            match m {
                NetworkMode::Bridge => "bridge",
                NetworkMode::Host => "host",
                NetworkMode::None => "none",
            }
            .to_owned()
        }),
        networks: spec.networks.clone(),
        privileged: spec.privileged,
        pid_mode: match spec.pid_mode {
            Some(PidMode::Host) => Some("host".to_owned()),
            Some(PidMode::Private) | None => None,
        },
        cap_add: spec.cap_add.clone(),
        cap_drop: spec.cap_drop.clone(),
        devices: spec
            .devices
            .iter()
            .map(|d| DeviceMapping {
                host_path: d.host_path.clone(),
                container_path: d.container_path.clone(),
                permissions: d.permissions.clone(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use berth_schemas::{EnvVar, HealthCheck, ObjectMeta, PortMapping, RestartPolicy as Rp};

    use super::*;

    fn obj(spec: ContainerSpec) -> Container {
        Container {
            api_version: berth_schemas::API_VERSION.into(),
            kind: berth_schemas::Kind::Container,
            metadata: ObjectMeta::named("web"),
            spec,
            status: None,
        }
    }

    #[test]
    fn the_create_request_carries_the_name_labels_and_converted_fields() {
        let spec = ContainerSpec {
            image: "busybox:1".into(),
            command: vec!["sh".into(), "-c".into()],
            args: vec!["sleep 1000".into()],
            env: vec![EnvVar { name: "A".into(), value: "1".into() }],
            ports: vec![PortMapping {
                container_port: 80,
                host_port: Some(8080),
                host_ip: Some("127.0.0.1".parse().expect("ip")),
                protocol: Protocol::Tcp,
            }],
            restart_policy: Rp { policy: RestartPolicyKind::OnFailure, max_retries: Some(3) },
            health_check: Some(HealthCheck {
                command: vec!["true".into()],
                interval: Some("2s".into()),
                timeout: None,
                retries: Some(2),
                start_period: None,
            }),
            stop_grace_period_seconds: Some(3),
            ..ContainerSpec::default()
        };
        let c = container_create(&obj(spec), "inst-1", "uid-1", "hash-1").expect("converts");
        assert_eq!(c.name, "berth_default_web");
        assert_eq!(c.entrypoint, Some(vec!["sh".to_owned(), "-c".to_owned()]));
        assert_eq!(c.cmd, Some(vec!["sleep 1000".to_owned()]));
        assert_eq!(c.env, vec![("A".to_owned(), "1".to_owned())]);
        assert_eq!(c.labels.get(labels::UID).map(String::as_str), Some("uid-1"));
        assert_eq!(c.labels.get(labels::SPEC_HASH).map(String::as_str), Some("hash-1"));
        assert_eq!(c.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.restart_policy, RestartPolicy::OnFailure { max_retries: Some(3) });
        assert_eq!(c.healthcheck.expect("health").interval, Some(Duration::from_secs(2)));
        assert_eq!(c.stop_timeout, Some(Duration::from_secs(3)));
    }

    #[test]
    fn an_unparsable_duration_is_an_error_naming_the_field() {
        let spec = ContainerSpec {
            image: "busybox:1".into(),
            health_check: Some(HealthCheck {
                command: vec!["true".into()],
                interval: Some("soon".into()),
                timeout: None,
                retries: None,
                start_period: None,
            }),
            ..ContainerSpec::default()
        };
        let err = container_create(&obj(spec), "i", "u", "h").expect_err("must fail");
        assert_eq!(err.field, "healthCheck.interval");
    }
}
