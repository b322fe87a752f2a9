//! Issue 11, holes 1 and 7: ways an operator could reach the host through a container spec
//! without the admin-only fields, over real HTTP against a real server on 127.0.0.1:0 (and,
//! for volumes, the test Docker Engine: `source .test-env/env`; without one those tests fail).

mod common;

use common::{TestServer, engine, image};

/// A container manifest in `default` with `extra` appended under `spec`.
fn container(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {}\n{extra}",
        image()
    )
}

#[tokio::test]
async fn an_operator_cannot_get_a_network_mode_through_spec_networks() {
    // Hole 1: the first listed network became the container's network mode, so `[host]` gave
    // host networking without the admin-only `networkMode: host` rule.
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let operator = srv.user(&admin, "olga", "operator").await;
    for (i, mode) in
        ["host", "none", "bridge", "default", "container:abc", "service:db"].iter().enumerate()
    {
        let name = format!("net{i}");
        let yaml = container(&name, &format!("  networks: [\"{mode}\"]\n"));
        let r = srv.apply_yaml(&operator, "", &yaml).await;
        assert_eq!(r.status, 422, "networks: [{mode}]: {}", r.text());
        let body = r.text();
        assert!(body.contains("spec.networks[0]") && body.contains("networkMode"), "{body}");
        let stored = srv.get(&format!("/api/v1/containers/default/{name}"), Some(&admin)).await;
        assert_eq!(stored.status, 404, "nothing is stored for networks: [{mode}]");
    }
}

/// Runs the docker CLI against the test Engine, failing the test if it fails.
fn docker(args: &[&str]) {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e} (the docker CLI is needed)"));
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// `docker volume rm` on drop (also when the test fails).
struct Volumes(Vec<String>);

impl Drop for Volumes {
    fn drop(&mut self) {
        for v in &self.0 {
            let _ = std::process::Command::new("docker").args(["volume", "rm", "-f", v]).output();
        }
    }
}

fn unique(what: &str) -> String {
    format!("berth-test-{what}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

#[tokio::test]
async fn mounting_an_existing_volume_berth_did_not_make_is_admin_only() {
    // Hole 7: a local volume created with bind options is a host path (here /etc), and
    // mounting an existing named volume was not admin-only.
    let driver = engine().await;
    let srv = TestServer::start_driver(|_| {}, |_| {}, Some(driver.clone())).await;
    let admin = srv.admin().await;
    let operator = srv.user(&admin, "olga", "operator").await;
    let (etc, ours, fresh) = (unique("etc"), unique("ours"), unique("fresh"));
    let _volumes = Volumes(vec![etc.clone(), ours.clone(), fresh.clone()]);
    docker(&["volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device=/etc", &etc]);
    let instance = srv.state.resources().instance_id().to_owned();
    let labels = std::collections::HashMap::from([
        (berth_controller::labels::MANAGED_BY.to_owned(), "berth".to_owned()),
        (berth_controller::labels::INSTANCE.to_owned(), instance),
    ]);
    driver.create_volume(&ours, &labels).await.expect("create a berth-labelled volume");

    let mounts = |source: &str| {
        format!(
            "  mounts:\n  - {{type: tmpfs, target: /tmp/x}}\n  - {{type: volume, source: {source}, target: /data}}\n"
        )
    };
    let r = srv.apply_yaml(&operator, "", &container("hostetc", &mounts(&etc))).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("spec.mounts[1]"), "the refusal names the mount: {}", r.text());
    let stored = srv.get("/api/v1/containers/default/hostetc", Some(&admin)).await;
    assert_eq!(stored.status, 404, "nothing is stored");

    let r = srv.apply_yaml(&admin, "", &container("hostetc", &mounts(&etc))).await;
    assert_eq!(r.status, 200, "an admin may: {}", r.text());

    for (name, source) in [("ours", &ours), ("fresh", &fresh)] {
        let r = srv.apply_yaml(&operator, "", &container(name, &mounts(source))).await;
        assert_eq!(r.status, 200, "an operator may mount {name}: {}", r.text());
    }
}
