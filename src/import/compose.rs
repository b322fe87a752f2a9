//! docker-compose files into berth manifests: each service becomes a `Container`, each distinct
//! image an `Image`. What has no berth equivalent is listed as a [`Note`] rather than dropped
//! silently.
//!
//! Converted: `image`, `command`, `entrypoint`, `environment` (list and map), `ports` (short
//! and long syntax), `volumes` (named, anonymous, binds, long syntax), `tmpfs`, `depends_on`
//! (list, and the map form with `service_started` / `service_healthy`), `healthcheck`,
//! `restart`, `labels`, `user`, `working_dir`, `hostname`, `stop_signal`, `stop_grace_period`,
//! `init`, `privileged`, `cap_add`, `cap_drop`, `devices`, `network_mode`, `pid`, `mem_limit`,
//! `cpus`, `pids_limit`, `deploy.resources.limits`, `pull_policy`, and `${VAR}` /
//! `${VAR:-default}` interpolation from the environment.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

/// The metadata label naming the compose project a resource came from.
pub const PROJECT_LABEL: &str = "berth.dev/compose-project";
/// The metadata label naming the compose service a resource came from.
pub const SERVICE_LABEL: &str = "berth.dev/compose-service";

/// Something the converter could not carry over, or changed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Where in the compose file (`services.web.build`).
    pub path: String,
    /// What happened.
    pub message: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a compose file could not be converted at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not YAML.
    #[error("not a YAML file")]
    Yaml(#[source] serde_saphyr::Error),
    /// The YAML is not a compose file.
    #[error("{0}")]
    Shape(String),
}

/// What a conversion produced.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The manifests, in order: images, then containers.
    pub resources: Vec<Value>,
    /// What was not converted, or was approximated.
    pub notes: Vec<Note>,
}

/// Options for a conversion.
#[derive(Debug, Clone)]
pub struct Options {
    /// The project name (compose's `name:`, else the directory name).
    pub project: String,
    /// The namespace the resources go into.
    pub namespace: String,
    /// The directory relative bind paths are resolved against.
    pub base_dir: std::path::PathBuf,
}

/// A DNS-label form of a compose name: lower case, `-` for anything else, at most 63 chars.
pub fn dns_label(s: &str) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-');
    let mut out: String = out.chars().take(63).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() { "x".into() } else { out }
}

/// A label value form: letters, digits, `-`, `_`, `.`, alphanumeric at both ends, ≤63.
fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
}

/// Replaces `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$VAR` from `env`; `$$` is `$`.
pub fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let Some(end) = r.find('}') else {
                out.push_str(&rest[i..]);
                return out;
            };
            let expr = &r[..end];
            let value = if let Some((name, def)) = expr.split_once(":-") {
                env(name).filter(|v| !v.is_empty()).unwrap_or_else(|| def.to_owned())
            } else if let Some((name, def)) = expr.split_once('-') {
                env(name).unwrap_or_else(|| def.to_owned())
            } else if let Some((name, _)) = expr.split_once(":?").or_else(|| expr.split_once('?')) {
                env(name).unwrap_or_default()
            } else {
                env(expr).unwrap_or_default()
            };
            out.push_str(&value);
            rest = &r[end + 1..];
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if n == 0 {
                out.push('$');
            } else {
                out.push_str(&env(&after[..n]).unwrap_or_default());
            }
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    out
}

fn interpolate_all(v: &mut Value, env: &dyn Fn(&str) -> Option<String>) {
    match v {
        Value::String(s) if s.contains('$') => *s = interpolate(s, env),
        Value::Array(a) => a.iter_mut().for_each(|x| interpolate_all(x, env)),
        Value::Object(m) => m.values_mut().for_each(|x| interpolate_all(x, env)),
        _ => {}
    }
}

/// Splits a command string as a POSIX shell would for plain words and quotes.
pub fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(shell_words(s)),
        Value::Array(a) => a.iter().map(scalar).collect(),
        _ => None,
    }
}

/// A compose size (`512m`, `1g`, `1024k`, `1000000`) as a berth quantity (`512Mi`).
fn size(v: &Value) -> Option<String> {
    let s = scalar(v)?.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').filter(|r| r.ends_with(['k', 'm', 'g'])).unwrap_or(&s);
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    num.parse::<f64>().ok()?;
    let unit = match unit {
        "" => "",
        "k" => "Ki",
        "m" => "Mi",
        "g" => "Gi",
        _ => return None,
    };
    Some(format!("{num}{unit}"))
}

/// A compose duration (`1m30s`, `10s`, `500ms`) as berth writes it (the same syntax).
fn duration(v: &Value) -> Option<String> {
    let s = scalar(v)?;
    berth_schemas::parse_duration(&s).ok().map(|_| s)
}

fn env_list(v: &Value, at: &str, notes: &mut Vec<Note>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut push = |name: &str, value: Option<String>, notes: &mut Vec<Note>| match value {
        Some(value) => out.push(json!({"name": name, "value": value})),
        None => notes.push(Note {
            path: format!("{at}.{name}"),
            message: "takes its value from the host environment at run time; set a value".into(),
        }),
    };
    match v {
        Value::Array(items) => {
            for i in items {
                let Some(s) = scalar(i) else { continue };
                match s.split_once('=') {
                    Some((k, val)) => push(k, Some(val.to_owned()), notes),
                    None => push(&s, std::env::var(&s).ok(), notes),
                }
            }
        }
        Value::Object(m) => {
            for (k, val) in m {
                match val {
                    Value::Null => push(k, std::env::var(k).ok(), notes),
                    other => push(k, scalar(other), notes),
                }
            }
        }
        _ => notes.push(Note { path: at.into(), message: "not a list or a map; ignored".into() }),
    }
    out
}

fn labels_map(v: &Value) -> BTreeMap<String, String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(scalar)
            .map(|s| match s.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (s, String::new()),
            })
            .collect(),
        Value::Object(m) => {
            m.iter().map(|(k, v)| (k.clone(), scalar(v).unwrap_or_default())).collect()
        }
        _ => BTreeMap::new(),
    }
}

fn port_entries(v: &Value, at: &str, notes: &mut Vec<Note>) -> Vec<Value> {
    let mut out = Vec::new();
    let Value::Array(items) = v else {
        notes.push(Note { path: at.into(), message: "not a list; ignored".into() });
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let mut p = Map::new();
        match item {
            Value::Object(m) => {
                let Some(target) = m.get("target").and_then(|t| scalar(t)?.parse::<u16>().ok())
                else {
                    notes.push(Note { path: here, message: "no target port; skipped".into() });
                    continue;
                };
                p.insert("containerPort".into(), json!(target));
                if let Some(pub_) = m.get("published").and_then(scalar) {
                    match pub_.parse::<u16>() {
                        Ok(h) => {
                            p.insert("hostPort".into(), json!(h));
                        }
                        Err(_) => {
                            notes.push(Note {
                                path: here.clone(),
                                message: format!(
                                    "published range {pub_:?} is not supported; skipped"
                                ),
                            });
                            continue;
                        }
                    }
                }
                if let Some(ip) = m.get("host_ip").and_then(scalar) {
                    p.insert("hostIP".into(), json!(ip));
                }
                if let Some(proto) = m.get("protocol").and_then(scalar) {
                    p.insert("protocol".into(), json!(proto));
                }
            }
            other => {
                let Some(s) = scalar(other) else { continue };
                let (spec, proto) = match s.split_once('/') {
                    Some((a, b)) => (a.to_owned(), Some(b.to_owned())),
                    None => (s.clone(), None),
                };
                // ip:host:container, host:container, container; IPv6 hosts in brackets.
                let (ip, rest) = if let Some(r) = spec.strip_prefix('[') {
                    match r.split_once("]:") {
                        Some((ip, rest)) => (Some(ip.to_owned()), rest.to_owned()),
                        None => (None, spec.clone()),
                    }
                } else {
                    let parts: Vec<&str> = spec.split(':').collect();
                    if parts.len() == 3 {
                        (Some(parts[0].to_owned()), format!("{}:{}", parts[1], parts[2]))
                    } else {
                        (None, spec.clone())
                    }
                };
                let (host, container) = match rest.split_once(':') {
                    Some((h, c)) => (Some(h.to_owned()), c.to_owned()),
                    None => (None, rest.clone()),
                };
                if container.contains('-') || host.as_deref().is_some_and(|h| h.contains('-')) {
                    notes.push(Note {
                        path: here,
                        message: format!(
                            "port range {s:?} is not supported; list the ports one by one"
                        ),
                    });
                    continue;
                }
                let Ok(c) = container.parse::<u16>() else {
                    notes.push(Note {
                        path: here,
                        message: format!("cannot read port {s:?}; skipped"),
                    });
                    continue;
                };
                p.insert("containerPort".into(), json!(c));
                match host.as_deref() {
                    None | Some("") => {}
                    Some(h) => match h.parse::<u16>() {
                        Ok(h) => {
                            p.insert("hostPort".into(), json!(h));
                        }
                        Err(_) => {
                            notes.push(Note {
                                path: here,
                                message: format!("cannot read host port in {s:?}; skipped"),
                            });
                            continue;
                        }
                    },
                }
                if let Some(ip) = ip.filter(|ip| !ip.is_empty()) {
                    p.insert("hostIP".into(), json!(ip));
                }
                if let Some(proto) = proto {
                    p.insert("protocol".into(), json!(proto));
                }
            }
        }
        out.push(Value::Object(p));
    }
    out
}

fn resolve_bind(source: &str, base: &Path) -> String {
    if let Some(rest) = source.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return Path::new(&home).join(rest).display().to_string();
    }
    let p = Path::new(source);
    if p.is_absolute() {
        source.to_owned()
    } else {
        let joined = base.join(p);
        let mut clean = std::path::PathBuf::new();
        for c in joined.components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                c => clean.push(c),
            }
        }
        clean.display().to_string()
    }
}

fn mounts(
    v: &Value,
    at: &str,
    opts: &Options,
    volumes: &BTreeMap<String, String>,
    notes: &mut Vec<Note>,
) -> Vec<Value> {
    let mut out = Vec::new();
    let Value::Array(items) = v else { return out };
    for (i, item) in items.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let (kind, source, target, ro) = match item {
            Value::Object(m) => {
                let kind = m.get("type").and_then(scalar).unwrap_or_else(|| "volume".into());
                let Some(target) = m.get("target").and_then(scalar) else {
                    notes.push(Note { path: here, message: "no target; skipped".into() });
                    continue;
                };
                let ro = m.get("read_only").and_then(Value::as_bool).unwrap_or(false);
                (kind, m.get("source").and_then(scalar), target, ro)
            }
            other => {
                let Some(s) = scalar(other) else { continue };
                let parts: Vec<&str> = s.split(':').collect();
                match parts.as_slice() {
                    [t] => ("volume".to_owned(), None, (*t).to_owned(), false),
                    [src, t] | [src, t, _] => {
                        let mode = parts.get(2).copied().unwrap_or("");
                        let ro = mode.split(',').any(|m| m == "ro");
                        if mode.split(',').any(|m| !matches!(m, "ro" | "rw" | "")) {
                            notes.push(Note { path: here.clone(), message: format!("mount options {mode:?} other than ro/rw are not supported; dropped") });
                        }
                        let bind = src.starts_with(['/', '.', '~']);
                        let kind = if bind { "bind" } else { "volume" };
                        (kind.to_owned(), Some((*src).to_owned()), (*t).to_owned(), ro)
                    }
                    _ => {
                        notes.push(Note {
                            path: here,
                            message: format!("cannot read volume {s:?}; skipped"),
                        });
                        continue;
                    }
                }
            }
        };
        let mut m = Map::new();
        match kind.as_str() {
            "bind" => {
                let Some(src) = source else {
                    notes.push(Note { path: here, message: "bind without source; skipped".into() });
                    continue;
                };
                m.insert("type".into(), json!("bind"));
                m.insert("source".into(), json!(resolve_bind(&src, &opts.base_dir)));
                notes.push(Note {
                    path: here.clone(),
                    message: "bind mount: only an admin may apply it".into(),
                });
            }
            "volume" => {
                m.insert("type".into(), json!("volume"));
                if let Some(src) = source {
                    let name = volumes.get(&src).cloned().unwrap_or(src);
                    m.insert("source".into(), json!(name));
                }
            }
            "tmpfs" => {
                m.insert("type".into(), json!("tmpfs"));
            }
            other => {
                notes.push(Note {
                    path: here,
                    message: format!("mount type {other:?} is not supported; skipped"),
                });
                continue;
            }
        }
        m.insert("target".into(), json!(target));
        if ro {
            m.insert("readOnly".into(), json!(true));
        }
        out.push(Value::Object(m));
    }
    out
}

fn healthcheck(v: &Value, at: &str, notes: &mut Vec<Note>) -> Option<Value> {
    let Value::Object(m) = v else { return None };
    if m.get("disable").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let command: Vec<String> = match m.get("test")? {
        Value::String(s) => vec!["sh".into(), "-c".into(), s.clone()],
        Value::Array(a) => {
            let items: Vec<String> = a.iter().filter_map(scalar).collect();
            match items.first().map(String::as_str) {
                Some("NONE") => return None,
                Some("CMD") => items[1..].to_vec(),
                Some("CMD-SHELL") => vec!["sh".into(), "-c".into(), items[1..].join(" ")],
                _ => items,
            }
        }
        _ => return None,
    };
    let mut h = Map::new();
    h.insert("command".into(), json!(command));
    for (k, berth) in
        [("interval", "interval"), ("timeout", "timeout"), ("start_period", "startPeriod")]
    {
        if let Some(val) = m.get(k) {
            match duration(val) {
                Some(d) => {
                    h.insert(berth.into(), json!(d));
                }
                None => notes.push(Note {
                    path: format!("{at}.{k}"),
                    message: "not a duration; dropped".into(),
                }),
            }
        }
    }
    if let Some(r) = m.get("retries").and_then(Value::as_u64) {
        h.insert("retries".into(), json!(r));
    }
    for k in m.keys() {
        if !matches!(
            k.as_str(),
            "test" | "interval" | "timeout" | "start_period" | "retries" | "disable"
        ) {
            notes
                .push(Note { path: format!("{at}.{k}"), message: "not supported; dropped".into() });
        }
    }
    Some(Value::Object(h))
}

fn restart(v: &Value, at: &str, notes: &mut Vec<Note>) -> Option<Value> {
    let s = scalar(v)?;
    Some(match s.as_str() {
        "no" | "false" => json!({"policy": "Never"}),
        "always" => json!({"policy": "Always"}),
        "unless-stopped" => {
            notes.push(Note { path: at.into(), message: "unless-stopped became Always: berth keeps a container in its desired state (set desiredState: Stopped to stop it)".into() });
            json!({"policy": "Always"})
        }
        s if s.starts_with("on-failure") => {
            match s.split_once(':').map(|(_, n)| n.parse::<u32>()) {
                Some(Ok(n)) => json!({"policy": "OnFailure", "maxRetries": n}),
                _ => json!({"policy": "OnFailure"}),
            }
        }
        other => {
            notes.push(Note {
                path: at.into(),
                message: format!("unknown restart policy {other:?}; dropped"),
            });
            return None;
        }
    })
}

const IGNORED_QUIETLY: [&str; 2] = ["container_name", "expose"];

/// Converts a compose file's text.
///
/// # Errors
///
/// [`ImportError`] when the text is not YAML or has no `services` map.
pub fn convert(text: &str, opts: &Options) -> Result<Converted, ImportError> {
    convert_with_env(text, opts, &|k| std::env::var(k).ok())
}

/// [`convert`] with the variables for interpolation given explicitly.
///
/// # Errors
///
/// As [`convert`].
pub fn convert_with_env(
    text: &str,
    opts: &Options,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Converted, ImportError> {
    let mut doc: Value = serde_saphyr::from_str(text).map_err(ImportError::Yaml)?;
    interpolate_all(&mut doc, env);
    let Value::Object(top) = doc else {
        return Err(ImportError::Shape("a compose file is a YAML mapping".into()));
    };
    let Some(Value::Object(services)) = top.get("services") else {
        return Err(ImportError::Shape("no `services:` map in this compose file".into()));
    };
    let mut notes = Vec::new();
    let project = top.get("name").and_then(scalar).unwrap_or_else(|| opts.project.clone());
    let project_label = label_value(&project);
    for k in top.keys() {
        if !matches!(k.as_str(), "services" | "volumes" | "name" | "version")
            && !k.starts_with("x-")
        {
            notes.push(Note { path: k.clone(), message: "top-level section not converted".into() });
        }
    }
    // Named volumes: compose name -> Docker volume name (external `name:` honoured).
    let mut volumes: BTreeMap<String, String> = BTreeMap::new();
    if let Some(Value::Object(vs)) = top.get("volumes") {
        for (name, def) in vs {
            let mut docker_name = name.clone();
            if let Value::Object(d) = def {
                if let Some(n) = d.get("name").and_then(scalar) {
                    docker_name = n;
                }
                for k in d.keys() {
                    if !matches!(k.as_str(), "name" | "external") {
                        notes.push(Note { path: format!("volumes.{name}.{k}"), message: "volume options are not supported; Docker creates a plain local volume".into() });
                    }
                }
            }
            volumes.insert(name.clone(), docker_name);
        }
    }
    let names: BTreeMap<String, String> =
        services.keys().map(|k| (k.clone(), dns_label(k))).collect();
    let mut images: BTreeMap<String, String> = BTreeMap::new(); // reference -> resource name
    let mut containers = Vec::new();
    for (svc, def) in services {
        let at = format!("services.{svc}");
        let name = &names[svc];
        if name != svc {
            notes.push(Note {
                path: at.clone(),
                message: format!("renamed to {name:?} (berth names are DNS labels)"),
            });
        }
        let Value::Object(s) = def else {
            notes.push(Note { path: at, message: "not a mapping; skipped".into() });
            continue;
        };
        let Some(image) = s.get("image").and_then(scalar) else {
            notes.push(Note { path: format!("{at}.build"), message: "services without `image:` (build only) are not converted: build and push the image, then set image".into() });
            continue;
        };
        let mut spec = Map::new();
        spec.insert("image".into(), json!(image));
        let mut docker_labels = BTreeMap::new();
        let mut limits = Map::new();
        for (k, v) in s {
            let here = format!("{at}.{k}");
            match k.as_str() {
                "image" => {}
                "command" => match string_list(v) {
                    Some(a) if !a.is_empty() => {
                        spec.insert("args".into(), json!(a));
                    }
                    _ => {}
                },
                "entrypoint" => match string_list(v) {
                    Some(a) if !a.is_empty() => {
                        spec.insert("command".into(), json!(a));
                    }
                    _ => {}
                },
                "environment" => {
                    let e = env_list(v, &here, &mut notes);
                    if !e.is_empty() {
                        spec.insert("env".into(), json!(e));
                    }
                }
                "ports" => {
                    let p = port_entries(v, &here, &mut notes);
                    if !p.is_empty() {
                        spec.insert("ports".into(), json!(p));
                    }
                }
                "volumes" => {
                    let mut m = mounts(v, &here, opts, &volumes, &mut notes);
                    if let Some(Value::Array(existing)) = spec.remove("mounts") {
                        let mut all = existing;
                        all.append(&mut m);
                        m = all;
                    }
                    if !m.is_empty() {
                        spec.insert("mounts".into(), json!(m));
                    }
                }
                "tmpfs" => {
                    let targets: Vec<String> = match v {
                        Value::Array(a) => a.iter().filter_map(scalar).collect(),
                        other => scalar(other).into_iter().collect(),
                    };
                    let mut m: Vec<Value> = targets
                        .iter()
                        .map(|t| json!({"type": "tmpfs", "target": t.split(':').next().unwrap_or(t)}))
                        .collect();
                    if let Some(Value::Array(existing)) = spec.remove("mounts") {
                        let mut all = existing;
                        all.append(&mut m);
                        m = all;
                    }
                    spec.insert("mounts".into(), json!(m));
                }
                "depends_on" => {
                    let mut deps = Vec::new();
                    let mut add = |dep: &str, notes: &mut Vec<Note>| match names.get(dep) {
                        Some(n) => deps.push(json!({"name": n})),
                        None => notes.push(Note { path: here.clone(), message: format!("depends on unknown service {dep:?}; dropped") }),
                    };
                    match v {
                        Value::Array(a) => {
                            for d in a.iter().filter_map(scalar) {
                                add(&d, &mut notes);
                            }
                        }
                        Value::Object(m) => {
                            for (d, cond) in m {
                                let c = cond.get("condition").and_then(scalar).unwrap_or_else(|| "service_started".into());
                                if c == "service_completed_successfully" {
                                    notes.push(Note { path: format!("{here}.{d}"), message: "service_completed_successfully has no berth equivalent; it waits for Ready instead".into() });
                                }
                                add(d, &mut notes);
                            }
                        }
                        _ => {}
                    }
                    if !deps.is_empty() {
                        spec.insert("dependsOn".into(), json!(deps));
                    }
                }
                "healthcheck" => {
                    if let Some(h) = healthcheck(v, &here, &mut notes) {
                        spec.insert("healthCheck".into(), h);
                    }
                }
                "restart" => {
                    if let Some(r) = restart(v, &here, &mut notes) {
                        spec.insert("restartPolicy".into(), r);
                    }
                }
                "labels" => {
                    for (lk, lv) in labels_map(v) {
                        if lk.starts_with("dev.berth.") {
                            notes.push(Note { path: format!("{here}.{lk}"), message: "labels under dev.berth. are berth's own; dropped".into() });
                        } else {
                            docker_labels.insert(lk, lv);
                        }
                    }
                }
                "user" | "working_dir" | "hostname" | "stop_signal" => {
                    let key = match k.as_str() {
                        "working_dir" => "workingDir",
                        "stop_signal" => "stopSignal",
                        other => other,
                    };
                    if let Some(val) = scalar(v) {
                        spec.insert(key.into(), json!(val));
                    }
                }
                "stop_grace_period" => match scalar(v).and_then(|d| berth_schemas::parse_duration(&d).ok()) {
                    Some(d) => {
                        spec.insert("stopGracePeriodSeconds".into(), json!(d.as_secs().max(1)));
                    }
                    None => notes.push(Note { path: here, message: "not a duration; dropped".into() }),
                },
                "init" | "privileged" => {
                    if let Some(b) = v.as_bool() {
                        spec.insert(k.clone(), json!(b));
                        if k == "privileged" && b {
                            notes.push(Note { path: here, message: "privileged: only an admin may apply it".into() });
                        }
                    }
                }
                "cap_add" | "cap_drop" => {
                    let key = if k == "cap_add" { "capAdd" } else { "capDrop" };
                    if let Some(a) = string_list(v) {
                        spec.insert(key.into(), json!(a));
                    }
                }
                "devices" => {
                    let mut ds = Vec::new();
                    for d in v.as_array().into_iter().flatten().filter_map(scalar) {
                        let parts: Vec<&str> = d.split(':').collect();
                        let mut dev = Map::new();
                        dev.insert("hostPath".into(), json!(parts[0]));
                        if let Some(c) = parts.get(1) {
                            dev.insert("containerPath".into(), json!(c));
                        }
                        if let Some(p) = parts.get(2) {
                            dev.insert("permissions".into(), json!(p));
                        }
                        ds.push(Value::Object(dev));
                    }
                    spec.insert("devices".into(), json!(ds));
                }
                "network_mode" => match scalar(v).as_deref() {
                    Some(m @ ("host" | "none" | "bridge")) => {
                        spec.insert("networkMode".into(), json!(m));
                    }
                    other => notes.push(Note { path: here, message: format!("network_mode {other:?} is not supported; dropped") }),
                },
                "pid" => match scalar(v).as_deref() {
                    Some("host") => {
                        spec.insert("pidMode".into(), json!("host"));
                    }
                    other => notes.push(Note { path: here, message: format!("pid {other:?} is not supported; dropped") }),
                },
                "mem_limit" => match size(v) {
                    Some(q) => {
                        limits.insert("memory".into(), json!(q));
                    }
                    None => notes.push(Note { path: here, message: "cannot read the size; dropped".into() }),
                },
                "cpus" => {
                    if let Some(c) = scalar(v) {
                        limits.insert("cpus".into(), json!(c));
                    }
                }
                "pids_limit" => {
                    if let Some(n) = v.as_i64() {
                        limits.insert("pidsLimit".into(), json!(n));
                    }
                }
                "deploy" => {
                    let l = &v["resources"]["limits"];
                    if let Some(c) = l.get("cpus").and_then(scalar) {
                        limits.insert("cpus".into(), json!(c));
                    }
                    if let Some(m) = l.get("memory").and_then(size) {
                        limits.insert("memory".into(), json!(m));
                    }
                    if let Some(n) = l.get("pids").and_then(Value::as_i64) {
                        limits.insert("pidsLimit".into(), json!(n));
                    }
                    if v.get("replicas").and_then(Value::as_u64).is_some_and(|r| r != 1) {
                        notes.push(Note { path: format!("{here}.replicas"), message: "berth runs one container per resource; copy the service for more".into() });
                    }
                    for dk in v.as_object().into_iter().flat_map(|m| m.keys()) {
                        if !matches!(dk.as_str(), "resources" | "replicas") {
                            notes.push(Note { path: format!("{here}.{dk}"), message: "not converted".into() });
                        }
                    }
                }
                "pull_policy" => match scalar(v).as_deref() {
                    Some("always") => {
                        spec.insert("imagePullPolicy".into(), json!("Always"));
                    }
                    Some("never") => {
                        spec.insert("imagePullPolicy".into(), json!("Never"));
                    }
                    Some("missing" | "if_not_present") => {}
                    other => notes.push(Note { path: here, message: format!("pull_policy {other:?} is not supported; dropped") }),
                },
                "networks" => notes.push(Note {
                    path: here,
                    message: "networks are not converted (berth has no Network kind yet): containers join Docker's default bridge and cannot reach each other by service name".into(),
                }),
                k if IGNORED_QUIETLY.contains(&k) => {}
                k if k.starts_with("x-") => {}
                _ => notes.push(Note { path: here, message: "not converted".into() }),
            }
        }
        if !docker_labels.is_empty() {
            spec.insert("labels".into(), json!(docker_labels));
        }
        if !limits.is_empty() {
            spec.insert("resources".into(), Value::Object(limits));
        }
        images.entry(image.clone()).or_insert_with(|| dns_label(&image));
        containers.push(json!({
            "apiVersion": berth_schemas::API_VERSION,
            "kind": "Container",
            "metadata": {
                "name": name,
                "namespace": opts.namespace,
                "labels": { PROJECT_LABEL: project_label, SERVICE_LABEL: label_value(svc) },
            },
            "spec": Value::Object(spec),
        }));
    }
    let mut resources: Vec<Value> = images
        .iter()
        .map(|(reference, name)| {
            json!({
                "apiVersion": berth_schemas::API_VERSION,
                "kind": "Image",
                "metadata": {
                    "name": name,
                    "namespace": opts.namespace,
                    "labels": { PROJECT_LABEL: project_label },
                },
                "spec": { "reference": reference },
            })
        })
        .collect();
    resources.extend(containers);
    Ok(Converted { resources, notes })
}

/// The manifests as one multi-document YAML stream.
///
/// # Errors
///
/// When a value cannot be rendered (not for converter output).
pub fn to_yaml_stream(
    resources: &[Value],
    header: &str,
) -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(&format!("# {line}\n"));
    }
    for (i, r) in resources.iter().enumerate() {
        if i > 0 || !header.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(r)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options { project: "demo".into(), namespace: "default".into(), base_dir: "/srv/app".into() }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn interpolation_takes_defaults_and_keeps_double_dollars() {
        let env = |k: &str| (k == "TAG").then(|| "2".to_owned());
        assert_eq!(interpolate("img:${TAG}", &env), "img:2");
        assert_eq!(interpolate("${PORT:-8080}", &env), "8080");
        assert_eq!(interpolate("$$HOME and $TAG", &env), "$HOME and 2");
    }

    #[test]
    fn shell_words_respect_quotes() {
        assert_eq!(
            shell_words(r#"sh -c "echo 'a b'" x\ y"#),
            vec!["sh", "-c", "echo 'a b'", "x y"]
        );
    }

    #[test]
    fn compose_sizes_become_binary_quantities() {
        assert_eq!(size(&json!("512m")).as_deref(), Some("512Mi"));
        assert_eq!(size(&json!("1gb")).as_deref(), Some("1Gi"));
        assert_eq!(size(&json!(1048576)).as_deref(), Some("1048576"));
    }

    #[test]
    fn short_port_syntax_with_address_and_protocol_is_read() {
        let mut notes = Vec::new();
        let p = port_entries(&json!(["127.0.0.1:8080:80", "53:53/udp", "9000"]), "p", &mut notes);
        assert_eq!(p[0], json!({"containerPort": 80, "hostPort": 8080, "hostIP": "127.0.0.1"}));
        assert_eq!(p[1], json!({"containerPort": 53, "hostPort": 53, "protocol": "udp"}));
        assert_eq!(p[2], json!({"containerPort": 9000}));
        assert!(notes.is_empty());
    }

    #[test]
    fn build_only_services_and_networks_are_listed_as_not_converted() {
        let text = "services:\n  app:\n    build: .\n  db:\n    image: postgres:16\n    networks: [back]\nnetworks:\n  back: {}\n";
        let c = convert_with_env(text, &opts(), &no_env).unwrap();
        let paths: Vec<&str> = c.notes.iter().map(|n| n.path.as_str()).collect();
        assert!(paths.contains(&"services.app.build"), "{paths:?}");
        assert!(paths.contains(&"services.db.networks"), "{paths:?}");
        assert!(paths.contains(&"networks"), "{paths:?}");
    }

    #[test]
    fn relative_binds_resolve_against_the_compose_directory() {
        let text = "services:\n  web:\n    image: nginx\n    volumes: ['./html:/usr/share/nginx/html:ro', 'data:/data', '/cache']\nvolumes:\n  data: {}\n";
        let c = convert_with_env(text, &opts(), &no_env).unwrap();
        let web = c.resources.iter().find(|r| r["kind"] == "Container").unwrap();
        assert_eq!(
            web["spec"]["mounts"],
            json!([
                {"type": "bind", "source": "/srv/app/html", "target": "/usr/share/nginx/html", "readOnly": true},
                {"type": "volume", "source": "data", "target": "/data"},
                {"type": "volume", "target": "/cache"},
            ])
        );
    }
}
