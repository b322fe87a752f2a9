//! `berth import compose` on compose files shaped like real projects, and one import that is
//! then applied to a real server and Engine.

mod common;

use std::process::Command;

use common::*;

fn import(file: &str) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["import", "compose", file])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("APP_TAG")
        .output()
        .expect("berth runs");
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

fn docs(yaml: &str) -> Vec<serde_json::Value> {
    let limits = berth_schemas::ParseLimits::default();
    berth_schemas::parse_and_validate(yaml.as_bytes(), &limits)
        .unwrap_or_else(|e| panic!("output does not validate: {e:?}\n{yaml}"))
        .iter()
        .map(|d| serde_json::to_value(d.to_dynamic()).unwrap())
        .collect()
}

fn find<'a>(docs: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn a_web_database_and_cache_project_converts_ports_env_volumes_and_restart() {
    let (code, out, err) = import("tests/compose/web-db-cache.yaml");
    assert_eq!(code, 0, "{err}");
    let d = docs(&out);
    assert_eq!(d.iter().filter(|x| x["kind"] == "Container").count(), 4);
    let web = find(&d, "Container", "web");
    assert_eq!(web["spec"]["ports"][0], serde_json::json!({"containerPort": 80, "hostPort": 8080}));
    assert_eq!(web["spec"]["ports"][1]["hostIP"], "127.0.0.1");
    assert_eq!(web["spec"]["mounts"][0]["type"], "bind");
    assert_eq!(web["spec"]["labels"]["com.example.team"], "storefront");
    assert_eq!(web["metadata"]["labels"]["berth.dev/compose-project"], "shop");
    let app = find(&d, "Container", "app");
    assert_eq!(
        app["spec"]["image"], "registry.example.com:5000/shop/app:2.4.1",
        "default from ${{APP_TAG:-...}}"
    );
    assert_eq!(
        app["spec"]["restartPolicy"],
        serde_json::json!({"policy": "OnFailure", "maxRetries": 5})
    );
    assert_eq!(app["spec"]["resources"]["memory"], "512Mi");
    assert_eq!(app["spec"]["dependsOn"], serde_json::json!([{"name": "db"}, {"name": "cache"}]));
    let env = app["spec"]["env"].as_array().unwrap();
    assert!(env.contains(&serde_json::json!({"name": "WORKERS", "value": "4"})), "{env:?}");
    let db = find(&d, "Container", "db");
    assert!(
        db["spec"]["env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"name": "POSTGRES_DB", "value": "shop"}))
    );
    assert_eq!(
        db["spec"]["mounts"][0],
        serde_json::json!({"type": "volume", "source": "pgdata", "target": "/var/lib/postgresql/data"})
    );
    let cache = find(&d, "Container", "cache");
    assert_eq!(cache["spec"]["args"], serde_json::json!(["redis-server", "--appendonly", "yes"]));
    assert!(find(&d, "Image", "postgres-16")["spec"]["reference"] == "postgres:16");
    assert!(err.contains("services.web.restart: unless-stopped became Always"), "{err}");
}

#[test]
fn a_healthcheck_gated_dependency_becomes_depends_on_with_a_health_check() {
    let (code, out, err) = import("tests/compose/healthcheck-gated.yaml");
    assert_eq!(code, 0, "{err}");
    let d = docs(&out);
    let db = find(&d, "Container", "database");
    assert_eq!(
        db["spec"]["healthCheck"],
        serde_json::json!({"command": ["mysqladmin", "ping", "-h", "localhost"], "interval": "10s",
            "timeout": "5s", "retries": 5, "startPeriod": "30s"})
    );
    let api = find(&d, "Container", "api");
    assert_eq!(api["spec"]["dependsOn"], serde_json::json!([{"name": "database"}]));
    assert_eq!(api["spec"]["command"], serde_json::json!(["/usr/local/bin/api"]));
    assert_eq!(api["spec"]["args"], serde_json::json!(["serve", "--port", "3000"]));
    assert_eq!(api["spec"]["healthCheck"]["command"][0], "sh");
    assert_eq!(api["spec"]["stopGracePeriodSeconds"], 90);
    assert_eq!(find(&d, "Container", "migrate")["spec"]["restartPolicy"]["policy"], "Never");
    assert!(err.contains("services.worker_1.build"), "{err}");
    assert!(err.contains("service_completed_successfully"), "{err}");
}

#[test]
fn named_volumes_tmpfs_and_limits_convert_and_networks_are_listed_as_not_converted() {
    let (code, out, err) = import("tests/compose/named-volumes.yaml");
    assert_eq!(code, 0, "{err}");
    let d = docs(&out);
    let prom = find(&d, "Container", "prometheus");
    let mounts = prom["spec"]["mounts"].as_array().unwrap();
    assert!(mounts.contains(&serde_json::json!({"type": "volume", "source": "ops-prometheus-config", "target": "/etc/prometheus", "readOnly": true})), "{mounts:?}");
    assert!(mounts.contains(&serde_json::json!({"type": "tmpfs", "target": "/run"})), "{mounts:?}");
    assert_eq!(prom["spec"]["resources"], serde_json::json!({"cpus": "0.50", "memory": "1Gi"}));
    let graf = find(&d, "Container", "grafana");
    assert_eq!(
        graf["spec"]["mounts"][0],
        serde_json::json!({"type": "volume", "source": "grafana-data", "target": "/var/lib/grafana"})
    );
    for path in
        ["services.grafana.networks", "networks:", "GF_INSTALL_PLUGINS", "volumes.prom-data.driver"]
    {
        assert!(err.contains(path), "{path} missing from notes:\n{err}");
    }
}

#[test]
fn a_file_that_is_not_a_compose_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "x.yaml", "just: text\n");
    let (code, _, err) = import(f.to_str().unwrap());
    assert_eq!(code, 2);
    assert!(err.contains("no `services:`"), "{err}");
}

#[test]
fn an_imported_compose_project_applies_and_its_healthcheck_gated_web_becomes_ready() {
    let s = Server::start();
    let ns = s.namespace("compose");
    let o = s.run(&["import", "compose", "tests/compose/busybox-app.yaml", "-n", &ns]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "app.yaml", &stdout(&o));
    let out = s.ok(&["apply", "-f", f.to_str().unwrap(), "--wait", "--timeout", "120s"]);
    assert!(out.contains(&format!("container/web -n {ns} ready")), "{out}");
    let db = s.get_json("container", &ns, "db").unwrap();
    assert_eq!(db["status"]["health"], "Healthy", "{db}");
    let web = s.get_json("container", &ns, "web").unwrap();
    assert!(is_ready(&web), "{web}");
    let vols = docker(&["volume", "ls", "-q", "--filter", "name=bbdata"]);
    assert!(vols.contains("bbdata"), "{vols}");
    drop(s); // removes the containers, so the named volume can go too
    docker(&["volume", "rm", "bbdata"]);
}
