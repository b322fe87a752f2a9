//! What a `Container` resource's status says, computed from what was observed.

use berth_schemas::condition::{DEGRADED, PROGRESSING, READY};
use berth_schemas::{
    BoundPort, ConditionStatus, Container, ContainerState, ContainerStatus, DesiredState,
    HealthStatus, ImageReference, Protocol,
};
use chrono::{DateTime, Utc};

use crate::docker::{self, Health, ObservedContainer, ObservedImage};
use crate::reconcile::{condition, set_conditions};

/// Why the reconcile could not reach the spec, though nothing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// A container berth does not own holds the wanted name.
    NameConflict {
        /// The wanted name.
        name: String,
        /// The foreign container's id.
        holder_id: String,
    },
    /// The image is not on the host and the pull policy is `Never`.
    ImageMissing {
        /// The image reference.
        image: String,
    },
    /// `dependsOn` resources that are not Ready.
    WaitingForDependencies(Vec<String>),
    /// The container's process exited on its own and the restart policy leaves it exited
    /// (see [`crate::reconcile::exits`]).
    Exited,
}

/// Maps the driver's container state to the schema's.
pub fn state_of(state: docker::ContainerState) -> ContainerState {
    match state {
        docker::ContainerState::Created => ContainerState::Created,
        docker::ContainerState::Running => ContainerState::Running,
        docker::ContainerState::Paused => ContainerState::Paused,
        docker::ContainerState::Restarting => ContainerState::Restarting,
        docker::ContainerState::Removing => ContainerState::Removing,
        docker::ContainerState::Exited => ContainerState::Exited,
        docker::ContainerState::Dead | docker::ContainerState::Unknown => ContainerState::Dead,
    }
}

fn health_of(h: Health) -> HealthStatus {
    match h {
        Health::Starting => HealthStatus::Starting,
        Health::Healthy => HealthStatus::Healthy,
        Health::Unhealthy => HealthStatus::Unhealthy,
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The digest of the image `c` runs: the registry digest when the image came from a registry,
/// else the local image id.
fn image_digest(obj: &Container, c: &ObservedContainer, image: Option<&ObservedImage>) -> String {
    let Some(image) = image.filter(|i| i.id == c.image_id) else {
        return c.image_id.clone();
    };
    let by_repo = ImageReference::parse(&obj.spec.image)
        .ok()
        .and_then(|r| image.digest_for(&r.repository()).map(str::to_owned));
    by_repo
        .or_else(|| {
            image.repo_digests.first().and_then(|d| d.split_once('@')).map(|(_, d)| d.to_owned())
        })
        .unwrap_or_else(|| c.image_id.clone())
}

/// The status for `obj` given its current container (`None` when there is none), the image as
/// inspected, and what blocked the reconcile if anything did. Conditions keep their
/// `lastTransitionTime` when their status did not change, so an unchanged world gives an equal
/// status (and so no store write).
pub fn container_status(
    obj: &Container,
    current: Option<&ObservedContainer>,
    image: Option<&ObservedImage>,
    blocker: Option<&Blocker>,
    now: DateTime<Utc>,
) -> ContainerStatus {
    let generation = obj.metadata.generation;
    let mut status = obj.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    // This pass ended well: the failure of an earlier one is over.
    status.last_error = None;
    status.next_retry_time = None;
    match current {
        Some(c) => {
            status.container_id = Some(c.id.clone());
            status.state = Some(state_of(c.state));
            status.health = c.health.map(health_of);
            status.restart_count = c.restart_count;
            status.started_at = c.started_at;
            status.finished_at = c.finished_at;
            status.exit_code = match c.state {
                docker::ContainerState::Exited | docker::ContainerState::Dead => c.exit_code,
                _ => None,
            };
            status.image_digest = Some(image_digest(obj, c, image));
            let mut ports: Vec<BoundPort> = c
                .ports
                .iter()
                .map(|p| BoundPort {
                    container_port: p.container_port,
                    protocol: match p.protocol {
                        docker::Protocol::Udp => Protocol::Udp,
                        _ => Protocol::Tcp,
                    },
                    host_ip: p.host_ip.clone(),
                    host_port: p.host_port,
                })
                .collect();
            ports.sort_by(|a, b| {
                (a.container_port, &a.host_ip, a.host_port).cmp(&(
                    b.container_port,
                    &b.host_ip,
                    b.host_port,
                ))
            });
            status.ports = ports;
        }
        None => {
            status.container_id = None;
            status.state = Some(ContainerState::Missing);
            status.health = None;
            status.exit_code = None;
            status.ports = Vec::new();
        }
    }

    use ConditionStatus::{False, True};
    let c = |t: &str, s, r: &str, m: String| condition(t, s, r, m, generation, now);
    let ok = || c(DEGRADED, False, "AsExpected", String::new());
    let conditions = match blocker {
        Some(Blocker::NameConflict { name, holder_id }) => {
            let msg = format!(
                "the container name {name} is held by container {} which berth does not manage; \
                 berth leaves it alone: remove or rename it to let berth create its own",
                short(holder_id)
            );
            [
                c(READY, False, "NameConflict", msg.clone()),
                c(PROGRESSING, False, "NameConflict", String::new()),
                c(DEGRADED, True, "NameConflict", msg),
            ]
        }
        Some(Blocker::ImageMissing { image }) => {
            let msg = format!("image {image} is not on the host and imagePullPolicy is Never");
            [
                c(READY, False, "ImageMissing", msg.clone()),
                c(PROGRESSING, False, "ImageMissing", String::new()),
                c(DEGRADED, True, "ImageMissing", msg),
            ]
        }
        Some(Blocker::WaitingForDependencies(keys)) => {
            let msg = format!("waiting for {} to be Ready", keys.join(", "));
            [
                c(READY, False, "WaitingForDependencies", msg.clone()),
                c(PROGRESSING, True, "WaitingForDependencies", msg),
                ok(),
            ]
        }
        Some(Blocker::Exited) => {
            let code = current.and_then(|c| c.exit_code).unwrap_or_default();
            let oom = current.is_some_and(|c| c.oom_killed);
            let when = current
                .and_then(|c| c.finished_at)
                .map(|t| format!(" at {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
                .unwrap_or_default();
            let policy = match obj.spec.restart_policy.policy {
                berth_schemas::RestartPolicyKind::Always => "Always",
                berth_schemas::RestartPolicyKind::OnFailure => "OnFailure",
                berth_schemas::RestartPolicyKind::Never => "Never",
            };
            let (reason, what) = if oom {
                ("OOMKilled", format!("was killed by the kernel's OOM killer (exit code {code})"))
            } else if code == 0 {
                ("Completed", "exited with code 0".to_owned())
            } else {
                ("Exited", format!("exited with code {code}"))
            };
            let msg = format!(
                "the container's process {what}{when}; restart policy {policy} leaves it \
                 exited, and berth does not restart a process that ended on its own (berth \
                 restart, or a changed spec, runs it again)"
            );
            let degraded =
                if reason == "Completed" { ok() } else { c(DEGRADED, True, reason, msg.clone()) };
            [
                c(READY, False, reason, msg),
                c(PROGRESSING, False, "Reconciled", String::new()),
                degraded,
            ]
        }
        None => match (obj.spec.desired_state, current) {
            (_, None) => [
                c(READY, False, "ContainerMissing", "no container exists yet".into()),
                c(PROGRESSING, True, "Creating", String::new()),
                ok(),
            ],
            (DesiredState::Stopped, Some(ctr)) if !ctr.state.is_up() => [
                c(READY, True, "Stopped", String::new()),
                c(PROGRESSING, False, "Reconciled", String::new()),
                ok(),
            ],
            (DesiredState::Stopped, Some(ctr)) => [
                c(READY, False, "Stopping", format!("the container is {}", ctr.state)),
                c(PROGRESSING, True, "Stopping", String::new()),
                ok(),
            ],
            (DesiredState::Running, Some(ctr)) => match (ctr.state, ctr.health) {
                (docker::ContainerState::Running, None | Some(Health::Healthy)) => [
                    c(READY, True, "Running", String::new()),
                    c(PROGRESSING, False, "Reconciled", String::new()),
                    ok(),
                ],
                (docker::ContainerState::Running, Some(Health::Starting)) => [
                    c(
                        READY,
                        False,
                        "HealthCheckStarting",
                        "waiting for the first passing health check".into(),
                    ),
                    c(PROGRESSING, True, "HealthCheckStarting", String::new()),
                    ok(),
                ],
                (docker::ContainerState::Running, Some(Health::Unhealthy)) => [
                    c(READY, False, "Unhealthy", "the health check fails".into()),
                    c(PROGRESSING, False, "Reconciled", String::new()),
                    c(DEGRADED, True, "Unhealthy", "the health check fails".into()),
                ],
                (docker::ContainerState::Restarting, _) => {
                    let msg = format!(
                        "Docker is restarting the container under its restart policy \
                         (restarts: {}, last exit code: {})",
                        ctr.restart_count,
                        ctr.exit_code.unwrap_or_default()
                    );
                    [
                        c(READY, False, "Restarting", msg.clone()),
                        c(PROGRESSING, False, "Reconciled", String::new()),
                        c(DEGRADED, True, "CrashLooping", msg),
                    ]
                }
                (state, _) => [
                    c(READY, False, "NotRunning", format!("the container is {state}")),
                    c(PROGRESSING, True, "Starting", String::new()),
                    ok(),
                ],
            },
        },
    };
    set_conditions(&mut status.conditions, conditions);
    status
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use berth_schemas::{ContainerSpec, ObjectMeta, condition::find_condition};

    use super::*;

    fn obj() -> Container {
        Container {
            api_version: berth_schemas::API_VERSION.into(),
            kind: berth_schemas::Kind::Container,
            metadata: ObjectMeta { generation: Some(3), ..ObjectMeta::named("web") },
            spec: ContainerSpec { image: "busybox:1".into(), ..ContainerSpec::default() },
            status: None,
        }
    }

    fn running() -> ObservedContainer {
        ObservedContainer {
            id: "0123456789abcdef".into(),
            name: "berth_default_web".into(),
            labels: HashMap::new(),
            image: "busybox:1".into(),
            image_id: "sha256:img".into(),
            state: docker::ContainerState::Running,
            health: None,
            exit_code: Some(0),
            oom_killed: false,
            error: None,
            created_at: None,
            started_at: None,
            finished_at: None,
            restart_count: 0,
            ports: vec![],
        }
    }

    fn ready(s: &ContainerStatus) -> (ConditionStatus, String) {
        let c = find_condition(&s.conditions, READY).expect("Ready is set");
        (c.status, c.reason.clone())
    }

    #[test]
    fn a_running_container_is_ready_and_its_generation_observed() {
        let s = container_status(&obj(), Some(&running()), None, None, Utc::now());
        assert_eq!(ready(&s), (ConditionStatus::True, "Running".into()));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.state, Some(ContainerState::Running));
        assert_eq!(s.exit_code, None, "a running container has no exit code yet");
        assert_eq!(s.image_digest.as_deref(), Some("sha256:img"));
    }

    #[test]
    fn the_same_observation_later_gives_an_equal_status() {
        let first = container_status(&obj(), Some(&running()), None, None, Utc::now());
        let mut o = obj();
        o.status = Some(first.clone());
        let later = Utc::now() + chrono::Duration::seconds(60);
        assert_eq!(container_status(&o, Some(&running()), None, None, later), first);
    }

    #[test]
    fn a_name_conflict_is_degraded_with_a_reason_naming_the_holder() {
        let b = Blocker::NameConflict {
            name: "berth_default_web".into(),
            holder_id: "ffffffffffff0000".into(),
        };
        let s = container_status(&obj(), None, None, Some(&b), Utc::now());
        let d = find_condition(&s.conditions, DEGRADED).expect("Degraded");
        assert_eq!((d.status, d.reason.as_str()), (ConditionStatus::True, "NameConflict"));
        assert!(d.message.contains("ffffffffffff"), "{}", d.message);
        assert_eq!(ready(&s).0, ConditionStatus::False);
    }

    #[test]
    fn an_unhealthy_container_is_not_ready_and_degraded() {
        let c = ObservedContainer { health: Some(Health::Unhealthy), ..running() };
        let s = container_status(&obj(), Some(&c), None, None, Utc::now());
        assert_eq!(ready(&s), (ConditionStatus::False, "Unhealthy".into()));
        assert_eq!(s.health, Some(HealthStatus::Unhealthy));
    }

    #[test]
    fn an_image_from_a_registry_reports_its_registry_digest() {
        let image = ObservedImage {
            id: "sha256:img".into(),
            repo_tags: vec!["busybox:1".into()],
            repo_digests: vec!["busybox@sha256:abc".into()],
            size: 1,
            labels: HashMap::new(),
            created_at: None,
        };
        let s = container_status(&obj(), Some(&running()), Some(&image), None, Utc::now());
        assert_eq!(s.image_digest.as_deref(), Some("sha256:abc"));
    }
}

#[cfg(test)]
mod exit_tests {
    use std::collections::HashMap;

    use berth_schemas::{
        ContainerSpec, ObjectMeta, RestartPolicy, RestartPolicyKind, condition::find_condition,
    };

    use super::*;

    fn never() -> Container {
        Container {
            api_version: berth_schemas::API_VERSION.into(),
            kind: berth_schemas::Kind::Container,
            metadata: ObjectMeta { generation: Some(1), ..ObjectMeta::named("job") },
            spec: ContainerSpec {
                image: "busybox:1".into(),
                restart_policy: RestartPolicy {
                    policy: RestartPolicyKind::Never,
                    max_retries: None,
                },
                ..ContainerSpec::default()
            },
            status: None,
        }
    }

    fn exited(code: i64, oom: bool) -> ObservedContainer {
        ObservedContainer {
            id: "0123456789abcdef".into(),
            name: "berth_default_job".into(),
            labels: HashMap::new(),
            image: "busybox:1".into(),
            image_id: "sha256:img".into(),
            state: docker::ContainerState::Exited,
            health: None,
            exit_code: Some(code),
            oom_killed: oom,
            error: None,
            created_at: None,
            started_at: None,
            finished_at: DateTime::from_timestamp(1_800_000_000, 0),
            restart_count: 0,
            ports: vec![],
        }
    }

    fn conditions(s: &ContainerStatus) -> Vec<(String, ConditionStatus, String)> {
        [READY, DEGRADED]
            .iter()
            .map(|t| {
                let c = find_condition(&s.conditions, t).expect("condition set");
                (c.type_.clone(), c.status, c.reason.clone())
            })
            .collect()
    }

    #[test]
    fn an_exit_of_its_own_is_reported_with_its_code() {
        let s = container_status(
            &never(),
            Some(&exited(3, false)),
            None,
            Some(&Blocker::Exited),
            Utc::now(),
        );
        assert_eq!(
            conditions(&s),
            vec![
                (READY.into(), ConditionStatus::False, "Exited".into()),
                (DEGRADED.into(), ConditionStatus::True, "Exited".into()),
            ]
        );
        assert_eq!(s.exit_code, Some(3));
        assert_eq!(s.state, Some(ContainerState::Exited));
        let ready = find_condition(&s.conditions, READY).expect("Ready");
        assert!(ready.message.contains("exited with code 3"), "{}", ready.message);
        assert!(ready.message.contains("restart policy Never"), "{}", ready.message);
    }

    #[test]
    fn exit_code_zero_is_completed_and_not_degraded() {
        let s = container_status(
            &never(),
            Some(&exited(0, false)),
            None,
            Some(&Blocker::Exited),
            Utc::now(),
        );
        assert_eq!(
            conditions(&s),
            vec![
                (READY.into(), ConditionStatus::False, "Completed".into()),
                (DEGRADED.into(), ConditionStatus::False, "AsExpected".into()),
            ]
        );
    }

    #[test]
    fn an_oom_kill_is_reported_as_such() {
        let s = container_status(
            &never(),
            Some(&exited(137, true)),
            None,
            Some(&Blocker::Exited),
            Utc::now(),
        );
        assert_eq!(
            conditions(&s),
            vec![
                (READY.into(), ConditionStatus::False, "OOMKilled".into()),
                (DEGRADED.into(), ConditionStatus::True, "OOMKilled".into()),
            ]
        );
    }
}
