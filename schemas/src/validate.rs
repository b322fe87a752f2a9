//! Semantic validation of resources: everything the types alone do not say. Every error names
//! the field it is about (`spec.ports[1].hostPort`), and validation reports all errors, not
//! just the first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use crate::container::{
    ContainerSpec, HealthCheck, MountType, NetworkMode, PortMapping, Resources, RestartPolicyKind,
    is_network_mode_name,
};
use crate::image::ImageSpec;
use crate::meta::{Kind, ObjectMeta};
use crate::object::{API_VERSION, DynamicObject};
use crate::path::FieldPath;
use crate::quantity::{parse_cpus, parse_duration, parse_memory};
use crate::reference::ImageReference;
use crate::resource::Resource;

/// Docker refuses memory limits below 6 MiB.
pub const MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;

/// The Docker label prefix berth reserves for its ownership labels.
pub const RESERVED_LABEL_PREFIX: &str = "dev.berth.";

/// One problem with a resource, at a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ValidationError {
    /// The field concerned, from the document root (`spec.ports[1].hostPort`).
    pub path: FieldPath,
    /// What is wrong, for people.
    pub message: String,
}

impl ValidationError {
    fn new(path: FieldPath, message: impl fmt::Display) -> Self {
        Self { path, message: message.to_string() }
    }
}

/// Collects errors while walking a resource.
#[derive(Default)]
struct Errors(Vec<ValidationError>);

impl Errors {
    fn push(&mut self, path: &FieldPath, message: impl fmt::Display) {
        self.0.push(ValidationError::new(path.clone(), message));
    }
}

/// Whether `s` is a DNS label (RFC 1123): 1-63 lower-case letters, digits and `-`, starting and
/// ending with a letter or digit. Resource names and namespaces follow this rule.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a DNS subdomain: dot-separated DNS labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn dns_label_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if is_dns_label(s) {
        return None;
    }
    Some(format!(
        "{s:?} is not a DNS label: use at most 63 lower-case letters, digits and '-', starting \
         and ending with a letter or digit"
    ))
}

/// Whether `s` is a label/annotation name part: 1-63 characters, alphanumeric at both ends,
/// `-`, `_`, `.` allowed inside.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Checks a label or annotation key: `[prefix/]name`, prefix a DNS subdomain, name as
/// Kubernetes allows it. Returns what is wrong.
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Some(format!("key {key:?}: prefix {p:?} is not a DNS subdomain"));
    }
    if !is_qualified_name_part(name) {
        return Some(format!(
            "key {key:?}: name must be 1-63 letters, digits, '-', '_' or '.', starting and \
             ending with a letter or digit"
        ));
    }
    None
}

/// Checks a label value: empty, or 1-63 characters alphanumeric at both ends with `-`, `_`,
/// `.` inside. Returns what is wrong.
pub fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() || is_qualified_name_part(value) {
        None
    } else {
        Some(format!(
            "value {value:?} must be empty or 1-63 letters, digits, '-', '_' or '.', starting \
             and ending with a letter or digit"
        ))
    }
}

/// Validates metadata a user writes: name, namespace, labels, annotation keys.
pub fn validate_metadata(meta: &ObjectMeta) -> Vec<ValidationError> {
    let mut errs = Errors::default();
    check_metadata(meta, &FieldPath::root().field("metadata"), &mut errs);
    errs.0
}

fn check_metadata(meta: &ObjectMeta, path: &FieldPath, errs: &mut Errors) {
    if let Some(p) = dns_label_problem(&meta.name) {
        errs.push(&path.field("name"), p);
    }
    if let Some(p) = dns_label_problem(&meta.namespace) {
        errs.push(&path.field("namespace"), p);
    }
    for (k, v) in &meta.labels {
        let at = path.field("labels").field(k.as_str());
        if let Some(p) = label_key_problem(k) {
            errs.push(&at, p);
        }
        if let Some(p) = label_value_problem(v) {
            errs.push(&at, p);
        }
    }
    for k in meta.annotations.keys() {
        if let Some(p) = label_key_problem(k) {
            errs.push(&path.field("annotations").field(k.as_str()), p);
        }
    }
}

/// Validates a resource of any kind: envelope, metadata and spec.
pub fn validate_resource(resource: &Resource) -> Vec<ValidationError> {
    let mut errs = Errors::default();
    let (api_version, meta) = match resource {
        Resource::Container(c) => (&c.api_version, &c.metadata),
        Resource::Image(i) => (&i.api_version, &i.metadata),
    };
    if api_version != API_VERSION {
        errs.push(
            &FieldPath::root().field("apiVersion"),
            format_args!("unsupported apiVersion {api_version:?} (expected {API_VERSION})"),
        );
    }
    check_metadata(meta, &FieldPath::root().field("metadata"), &mut errs);
    let spec_path = FieldPath::root().field("spec");
    match resource {
        Resource::Container(c) => {
            check_container_spec(&c.spec, &meta.namespace, &meta.name, &spec_path, &mut errs);
        }
        Resource::Image(i) => check_image_spec(&i.spec, &spec_path, &mut errs),
    }
    errs.0
}

/// Validates a resource held as a [`DynamicObject`]: its spec must fit the kind's types, then
/// [`validate_resource`] applies.
pub fn validate_dynamic(obj: &DynamicObject) -> Vec<ValidationError> {
    match Resource::from_dynamic(obj) {
        Ok(r) => validate_resource(&r),
        Err(e) => vec![ValidationError::new(
            FieldPath::root().field(e.part),
            format_args!("does not match the {} schema: {}", e.kind, e.source),
        )],
    }
}

/// Validates a container spec on its own. `namespace` and `name` are the resource's own, used
/// to refuse a `dependsOn` entry that names the resource itself. Paths start at `spec`.
pub fn validate_container_spec(
    spec: &ContainerSpec,
    namespace: &str,
    name: &str,
) -> Vec<ValidationError> {
    let mut errs = Errors::default();
    check_container_spec(spec, namespace, name, &FieldPath::root().field("spec"), &mut errs);
    errs.0
}

/// Validates an image spec on its own. Paths start at `spec`.
pub fn validate_image_spec(spec: &ImageSpec) -> Vec<ValidationError> {
    let mut errs = Errors::default();
    check_image_spec(spec, &FieldPath::root().field("spec"), &mut errs);
    errs.0
}

fn check_image_reference(reference: &str, path: &FieldPath, errs: &mut Errors) {
    if let Err(e) = ImageReference::parse(reference) {
        errs.push(path, e);
    }
}

fn check_absolute(p: &str, path: &FieldPath, errs: &mut Errors) {
    if !p.starts_with('/') {
        errs.push(path, format_args!("{p:?} must be an absolute path (starting with /)"));
    }
}

fn check_duration(value: &Option<String>, path: &FieldPath, errs: &mut Errors, allow_zero: bool) {
    if let Some(v) = value {
        match parse_duration(v) {
            Ok(d) if d.is_zero() && !allow_zero => {
                errs.push(path, "must be greater than zero");
            }
            Ok(d) if !d.is_zero() && d.as_millis() < 1 => {
                errs.push(path, "must be at least 1ms");
            }
            Ok(_) => {}
            Err(e) => errs.push(path, format_args!("invalid duration: {e}")),
        }
    }
}

fn is_unspecified(ip: Option<IpAddr>) -> bool {
    ip.is_none_or(|ip| ip.is_unspecified())
}

fn check_ports(ports: &[PortMapping], path: &FieldPath, errs: &mut Errors) {
    let mut published: Vec<(usize, &PortMapping)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let at = path.index(i);
        if p.container_port == 0 {
            errs.push(&at.field("containerPort"), "must be between 1 and 65535");
        }
        match p.host_port {
            Some(0) => errs.push(&at.field("hostPort"), "must be between 1 and 65535"),
            Some(hp) => {
                let clash = published.iter().find(|(_, q)| {
                    q.host_port == Some(hp)
                        && q.protocol == p.protocol
                        && (is_unspecified(q.host_ip)
                            || is_unspecified(p.host_ip)
                            || q.host_ip == p.host_ip)
                });
                if let Some((j, _)) = clash {
                    errs.push(
                        &at.field("hostPort"),
                        format_args!(
                            "host port {hp}/{} is already published by {}",
                            p.protocol.as_str(),
                            path.index(*j)
                        ),
                    );
                }
                published.push((i, p));
            }
            None => {
                if p.host_ip.is_some() {
                    errs.push(&at.field("hostIP"), "hostIP needs a hostPort");
                }
            }
        }
    }
}

fn is_volume_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_capability(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

fn is_signal(s: &str) -> bool {
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse::<u8>().is_ok_and(|n| (1..=64).contains(&n));
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'+' || c == b'-')
}

fn check_health(h: &HealthCheck, path: &FieldPath, errs: &mut Errors) {
    if h.command.is_empty() {
        errs.push(&path.field("command"), "must name a command to run");
    }
    check_duration(&h.interval, &path.field("interval"), errs, false);
    check_duration(&h.timeout, &path.field("timeout"), errs, false);
    check_duration(&h.start_period, &path.field("startPeriod"), errs, true);
    if h.retries == Some(0) {
        errs.push(&path.field("retries"), "must be at least 1");
    }
}

fn check_resources(r: &Resources, path: &FieldPath, errs: &mut Errors) {
    if let Some(c) = &r.cpus
        && let Err(e) = parse_cpus(c.as_str())
    {
        errs.push(&path.field("cpus"), format_args!("invalid cpus {:?}: {e}", c.as_str()));
    }
    if let Some(m) = &r.memory {
        match parse_memory(m.as_str()) {
            Ok(b) if b < MIN_MEMORY_BYTES => errs.push(
                &path.field("memory"),
                format_args!("{:?} is below Docker's minimum of 6Mi", m.as_str()),
            ),
            Ok(_) => {}
            Err(e) => {
                errs.push(
                    &path.field("memory"),
                    format_args!("invalid memory {:?}: {e}", m.as_str()),
                );
            }
        }
    }
    if let Some(p) = r.pids_limit
        && p != -1
        && p < 1
    {
        errs.push(&path.field("pidsLimit"), "must be at least 1 (or -1 for unlimited)");
    }
}

fn check_container_spec(
    spec: &ContainerSpec,
    own_namespace: &str,
    own_name: &str,
    path: &FieldPath,
    errs: &mut Errors,
) {
    check_image_reference(&spec.image, &path.field("image"), errs);

    let mut env_seen: HashMap<&str, usize> = HashMap::new();
    for (i, e) in spec.env.iter().enumerate() {
        let at = path.field("env").index(i).field("name");
        if e.name.is_empty() {
            errs.push(&at, "must not be empty");
        } else if e.name.contains('=') || e.name.contains('\0') {
            errs.push(&at, format_args!("{:?} must not contain '=' or NUL", e.name));
        } else if let Some(j) = env_seen.insert(&e.name, i) {
            errs.push(&at, format_args!("{:?} is already set by spec.env[{j}]", e.name));
        }
        if e.value.contains('\0') {
            errs.push(&path.field("env").index(i).field("value"), "must not contain NUL");
        }
    }

    check_ports(&spec.ports, &path.field("ports"), errs);

    let mut targets: HashMap<&str, usize> = HashMap::new();
    for (i, m) in spec.mounts.iter().enumerate() {
        let at = path.field("mounts").index(i);
        check_absolute(&m.target, &at.field("target"), errs);
        if m.target == "/" {
            errs.push(&at.field("target"), "cannot mount over the container's root");
        }
        if let Some(j) = targets.insert(m.target.trim_end_matches('/'), i) {
            errs.push(
                &at.field("target"),
                format_args!("{:?} is already the target of spec.mounts[{j}]", m.target),
            );
        }
        match (m.type_, &m.source) {
            (MountType::Bind, None) => {
                errs.push(&at.field("source"), "a bind mount needs the host path as source");
            }
            (MountType::Bind, Some(s)) => check_absolute(s, &at.field("source"), errs),
            (MountType::Volume, Some(s)) if !is_volume_name(s) => errs.push(
                &at.field("source"),
                format_args!(
                    "{s:?} is not a volume name (letters, digits, '_', '.', '-'; a host path \
                     needs type: bind)"
                ),
            ),
            (MountType::Tmpfs, Some(_)) => {
                errs.push(&at.field("source"), "a tmpfs mount takes no source");
            }
            _ => {}
        }
    }

    let mut nets = HashSet::new();
    for (i, n) in spec.networks.iter().enumerate() {
        let at = path.field("networks").index(i);
        if is_network_mode_name(n) {
            errs.push(
                &at,
                format_args!(
                    "{n:?} is a Docker network mode, not a network name; set it with \
                     networkMode (host, none or bridge) instead"
                ),
            );
        } else if !is_volume_name(n) {
            errs.push(&at, format_args!("{n:?} is not a network name"));
        } else if !nets.insert(n.as_str()) {
            errs.push(&at, format_args!("network {n:?} is listed twice"));
        }
    }
    if let Some(mode @ (NetworkMode::Host | NetworkMode::None)) = spec.network_mode {
        let mode = if mode == NetworkMode::Host { "host" } else { "none" };
        if !spec.networks.is_empty() {
            errs.push(
                &path.field("networks"),
                format_args!("networks cannot be joined with networkMode: {mode}"),
            );
        }
        if let Some(i) = spec.ports.iter().position(|p| p.host_port.is_some()) {
            errs.push(
                &path.field("ports").index(i).field("hostPort"),
                format_args!("ports are not published with networkMode: {mode}"),
            );
        }
    }

    if spec.restart_policy.max_retries.is_some()
        && spec.restart_policy.policy != RestartPolicyKind::OnFailure
    {
        errs.push(
            &path.field("restartPolicy").field("maxRetries"),
            "maxRetries is only allowed with policy: OnFailure",
        );
    }

    if let Some(h) = &spec.health_check {
        check_health(h, &path.field("healthCheck"), errs);
    }
    if let Some(r) = &spec.resources {
        check_resources(r, &path.field("resources"), errs);
    }
    if let Some(u) = &spec.user
        && (u.is_empty() || u.contains(char::is_whitespace))
    {
        errs.push(&path.field("user"), "must be a user name or id, optionally with :group");
    }
    if let Some(w) = &spec.working_dir {
        check_absolute(w, &path.field("workingDir"), errs);
    }
    if let Some(h) = &spec.hostname
        && !is_dns_subdomain(&h.to_ascii_lowercase())
    {
        errs.push(&path.field("hostname"), format_args!("{h:?} is not a valid host name"));
    }
    check_docker_labels(&spec.labels, &path.field("labels"), errs);
    if let Some(s) = &spec.stop_signal
        && !is_signal(s)
    {
        errs.push(&path.field("stopSignal"), format_args!("{s:?} is not a signal (e.g. SIGTERM)"));
    }

    let mut deps = HashSet::new();
    for (i, d) in spec.depends_on.iter().enumerate() {
        let at = path.field("dependsOn").index(i);
        if let Some(p) = dns_label_problem(&d.name) {
            errs.push(&at.field("name"), p);
        }
        if let Some(ns) = &d.namespace
            && let Some(p) = dns_label_problem(ns)
        {
            errs.push(&at.field("namespace"), p);
        }
        let ns = d.namespace_or(own_namespace);
        if d.kind == Kind::Container && ns == own_namespace && d.name == own_name {
            errs.push(&at, "a container cannot depend on itself");
        } else if !deps.insert((d.kind, ns, d.name.as_str())) {
            errs.push(&at, format_args!("{} {ns}/{} is listed twice", d.kind, d.name));
        }
    }

    for (field, caps) in [("capAdd", &spec.cap_add), ("capDrop", &spec.cap_drop)] {
        for (i, c) in caps.iter().enumerate() {
            if !is_capability(c) {
                errs.push(
                    &path.field(field).index(i),
                    format_args!("{c:?} is not a capability name (e.g. NET_ADMIN, ALL)"),
                );
            }
        }
    }
    for (i, d) in spec.devices.iter().enumerate() {
        let at = path.field("devices").index(i);
        check_absolute(&d.host_path, &at.field("hostPath"), errs);
        if let Some(c) = &d.container_path {
            check_absolute(c, &at.field("containerPath"), errs);
        }
        if let Some(p) = &d.permissions {
            let mut seen = HashSet::new();
            if p.is_empty() || !p.chars().all(|c| matches!(c, 'r' | 'w' | 'm') && seen.insert(c)) {
                errs.push(&at.field("permissions"), "must be some of r, w, m (e.g. rwm)");
            }
        }
    }
}

fn check_docker_labels(labels: &BTreeMap<String, String>, path: &FieldPath, errs: &mut Errors) {
    for k in labels.keys() {
        let at = path.field(k.as_str());
        if k.is_empty() {
            errs.push(&at, "label keys must not be empty");
        } else if k.starts_with(RESERVED_LABEL_PREFIX) {
            errs.push(&at, format_args!("labels under {RESERVED_LABEL_PREFIX} are set by berth"));
        }
    }
}

fn check_image_spec(spec: &ImageSpec, path: &FieldPath, errs: &mut Errors) {
    check_image_reference(&spec.reference, &path.field("reference"), errs);
    if let Some(p) = &spec.platform {
        let parts: Vec<&str> = p.split('/').collect();
        let ok = (2..=3).contains(&parts.len())
            && parts.iter().all(|s| {
                !s.is_empty()
                    && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
            });
        if !ok {
            errs.push(
                &path.field("platform"),
                format_args!("{p:?} is not a platform (os/arch[/variant], e.g. linux/arm64/v8)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{
        Container, Device, EnvVar, HealthCheck, Mount, ObjectReference, Protocol, RestartPolicy,
    };
    use crate::image::Image;
    use crate::object::Object;
    use crate::quantity::Quantity;

    fn container(spec: ContainerSpec) -> Resource {
        let c: Container = Object {
            api_version: API_VERSION.into(),
            kind: Kind::Container,
            metadata: ObjectMeta::named("web"),
            spec,
            status: None,
        };
        Resource::Container(Box::new(c))
    }

    fn spec() -> ContainerSpec {
        ContainerSpec { image: "nginx:1.27".into(), ..ContainerSpec::default() }
    }

    fn paths(errs: &[ValidationError]) -> Vec<String> {
        errs.iter().map(|e| e.path.to_string()).collect()
    }

    fn port(container_port: u16, host_port: Option<u16>, ip: Option<&str>) -> PortMapping {
        PortMapping {
            container_port,
            host_port,
            host_ip: ip.map(|s| s.parse().unwrap()),
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn a_plain_container_is_valid() {
        assert_eq!(validate_resource(&container(spec())), vec![]);
    }

    #[test]
    fn names_and_namespaces_must_be_dns_labels() {
        let mut r = container(spec());
        r.metadata_mut().name = "Web_1".into();
        r.metadata_mut().namespace = "-x".into();
        assert_eq!(paths(&validate_resource(&r)), ["metadata.name", "metadata.namespace"]);
        assert!(is_dns_label("a"));
        assert!(is_dns_label(&"a".repeat(63)));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(!is_dns_label(""));
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes_syntax() {
        let mut r = container(spec());
        let labels = &mut r.metadata_mut().labels;
        labels.insert("app.kubernetes.io/name".into(), "web".into());
        labels.insert("tier".into(), "".into());
        labels.insert("bad key".into(), "x".into());
        labels.insert("Bad_Prefix/x".into(), "x".into());
        labels.insert("ok".into(), "-bad-value".into());
        assert_eq!(
            paths(&validate_resource(&r)),
            [
                "metadata.labels[\"Bad_Prefix/x\"]",
                "metadata.labels[\"bad key\"]",
                "metadata.labels.ok"
            ]
        );
    }

    #[test]
    fn the_api_version_must_be_berth_dev_v1() {
        let mut c = Object {
            api_version: "berth.dev/v2".into(),
            kind: Kind::Container,
            metadata: ObjectMeta::named("web"),
            spec: spec(),
            status: None,
        };
        let errs = validate_resource(&Resource::Container(Box::new(c.clone())));
        assert_eq!(paths(&errs), ["apiVersion"]);
        c.api_version = API_VERSION.into();
        assert!(validate_resource(&Resource::Container(Box::new(c))).is_empty());
    }

    #[test]
    fn ports_must_be_in_range_and_not_published_twice() {
        let s = ContainerSpec {
            ports: vec![
                port(80, Some(8080), None),
                port(81, Some(8080), Some("127.0.0.1")),
                port(0, Some(0), None),
                port(82, None, Some("127.0.0.1")),
            ],
            ..spec()
        };
        assert_eq!(
            paths(&validate_container_spec(&s, "default", "web")),
            [
                "spec.ports[1].hostPort",
                "spec.ports[2].containerPort",
                "spec.ports[2].hostPort",
                "spec.ports[3].hostIP"
            ]
        );
    }

    #[test]
    fn the_same_host_port_on_different_addresses_or_protocols_is_fine() {
        let mut udp = port(53, Some(53), None);
        udp.protocol = Protocol::Udp;
        let s = ContainerSpec {
            ports: vec![
                port(80, Some(8080), Some("127.0.0.1")),
                port(81, Some(8080), Some("127.0.0.2")),
                port(53, Some(53), None),
                udp,
            ],
            ..spec()
        };
        assert_eq!(validate_container_spec(&s, "default", "web"), vec![]);
    }

    #[test]
    fn mount_targets_must_be_absolute_and_sources_fit_the_type() {
        let m = |type_, source: Option<&str>, target: &str| Mount {
            type_,
            source: source.map(str::to_owned),
            target: target.into(),
            read_only: false,
        };
        let s = ContainerSpec {
            mounts: vec![
                m(MountType::Volume, Some("data"), "data"),
                m(MountType::Bind, None, "/etc/app"),
                m(MountType::Bind, Some("relative/dir"), "/x"),
                m(MountType::Tmpfs, Some("x"), "/tmp"),
                m(MountType::Volume, Some("/host/path"), "/y"),
                m(MountType::Volume, None, "/x/"),
            ],
            ..spec()
        };
        assert_eq!(
            paths(&validate_container_spec(&s, "default", "web")),
            [
                "spec.mounts[0].target",
                "spec.mounts[1].source",
                "spec.mounts[2].source",
                "spec.mounts[3].source",
                "spec.mounts[4].source",
                "spec.mounts[5].target"
            ]
        );
    }

    #[test]
    fn durations_and_quantities_must_parse() {
        let s = ContainerSpec {
            health_check: Some(HealthCheck {
                command: vec![],
                interval: Some("30".into()),
                timeout: Some("0s".into()),
                retries: Some(0),
                start_period: Some("0s".into()),
            }),
            resources: Some(Resources {
                cpus: Some(Quantity::from("half")),
                memory: Some(Quantity::from("1Mi")),
                pids_limit: Some(0),
            }),
            ..spec()
        };
        assert_eq!(
            paths(&validate_container_spec(&s, "default", "web")),
            [
                "spec.healthCheck.command",
                "spec.healthCheck.interval",
                "spec.healthCheck.timeout",
                "spec.healthCheck.retries",
                "spec.resources.cpus",
                "spec.resources.memory",
                "spec.resources.pidsLimit"
            ]
        );
    }

    #[test]
    fn image_references_must_parse() {
        let s = ContainerSpec { image: "Nginx:latest".into(), ..spec() };
        let errs = validate_container_spec(&s, "default", "web");
        assert_eq!(paths(&errs), ["spec.image"]);
        assert!(errs[0].message.contains("\"Nginx\""), "{}", errs[0].message);
    }

    #[test]
    fn depends_on_cannot_name_the_container_itself() {
        let r = |name: &str, namespace: Option<&str>, kind| ObjectReference {
            kind,
            name: name.into(),
            namespace: namespace.map(str::to_owned),
        };
        let s = ContainerSpec {
            depends_on: vec![
                r("web", None, Kind::Container),
                r("web", Some("default"), Kind::Container),
                r("web", None, Kind::Image),
                r("web", Some("other"), Kind::Container),
                r("db", None, Kind::Container),
                r("db", Some("default"), Kind::Container),
            ],
            ..spec()
        };
        assert_eq!(
            paths(&validate_container_spec(&s, "default", "web")),
            ["spec.dependsOn[0]", "spec.dependsOn[1]", "spec.dependsOn[5]"]
        );
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let s = ContainerSpec {
            image: "".into(),
            env: vec![
                EnvVar { name: "A".into(), value: "1".into() },
                EnvVar { name: "A".into(), value: "2".into() },
            ],
            restart_policy: RestartPolicy {
                policy: RestartPolicyKind::Always,
                max_retries: Some(3),
            },
            working_dir: Some("app".into()),
            labels: [("dev.berth.uid".to_owned(), "x".to_owned())].into(),
            stop_signal: Some("TERM me".into()),
            cap_add: vec!["net_admin".into()],
            devices: vec![Device {
                host_path: "dev/fuse".into(),
                container_path: None,
                permissions: Some("rx".into()),
            }],
            ..spec()
        };
        assert_eq!(
            paths(&validate_container_spec(&s, "default", "web")),
            [
                "spec.image",
                "spec.env[1].name",
                "spec.restartPolicy.maxRetries",
                "spec.workingDir",
                "spec.labels[\"dev.berth.uid\"]",
                "spec.stopSignal",
                "spec.capAdd[0]",
                "spec.devices[0].hostPath",
                "spec.devices[0].permissions"
            ]
        );
    }

    #[test]
    fn host_network_mode_excludes_networks_and_published_ports() {
        let s = ContainerSpec {
            network_mode: Some(NetworkMode::Host),
            networks: vec!["backend".into()],
            ports: vec![port(80, Some(80), None)],
            ..spec()
        };
        assert_eq!(
            paths(&validate_container_spec(&s, "default", "web")),
            ["spec.networks", "spec.ports[0].hostPort"]
        );
    }

    #[test]
    fn docker_network_modes_in_networks_are_refused_pointing_at_network_mode() {
        // Issue 11, hole 1: the first listed network became the network mode, so `[host]`
        // gave host networking without the admin-only `networkMode: host` rule.
        for mode in ["host", "none", "bridge", "default", "container:abc", "service:db", "Host"] {
            let s = ContainerSpec { networks: vec![mode.into()], ..spec() };
            let errs = validate_container_spec(&s, "default", "web");
            assert_eq!(paths(&errs), ["spec.networks[0]"], "{mode}");
            assert!(errs[0].message.contains("networkMode"), "{mode}: {}", errs[0].message);
        }
        let s = ContainerSpec { networks: vec!["backend".into(), "host".into()], ..spec() };
        assert_eq!(paths(&validate_container_spec(&s, "default", "web")), ["spec.networks[1]"]);
        let ok = ContainerSpec { networks: vec!["backend".into(), "hostile".into()], ..spec() };
        assert!(validate_container_spec(&ok, "default", "web").is_empty());
    }

    #[test]
    fn image_specs_check_reference_and_platform() {
        let i: Image = Object {
            api_version: API_VERSION.into(),
            kind: Kind::Image,
            metadata: ObjectMeta::named("pg"),
            spec: ImageSpec {
                reference: "postgres@sha256:123".into(),
                platform: Some("linux".into()),
                ..ImageSpec::default()
            },
            status: None,
        };
        assert_eq!(
            paths(&validate_resource(&Resource::Image(Box::new(i)))),
            ["spec.reference", "spec.platform"]
        );
        let ok = ImageSpec {
            reference: "postgres:16".into(),
            platform: Some("linux/arm64/v8".into()),
            ..ImageSpec::default()
        };
        assert!(validate_image_spec(&ok).is_empty());
    }

    #[test]
    fn a_dynamic_object_whose_spec_does_not_fit_is_reported_at_spec() {
        let d = DynamicObject {
            api_version: API_VERSION.into(),
            kind: Kind::Container,
            metadata: ObjectMeta::named("web"),
            spec: serde_json::json!({"image": 3}),
            status: serde_json::Value::Null,
        };
        assert_eq!(paths(&validate_dynamic(&d)), ["spec"]);
    }
}
