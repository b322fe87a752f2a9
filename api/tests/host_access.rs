//! Issue 11, holes 1 and 7: ways an operator could reach the host through a container spec
//! without the admin-only fields, over real HTTP against a real server on 127.0.0.1:0 (and,
//! for volumes, the test Docker Engine: `source .test-env/env`; without one those tests fail).

mod common;

use common::{TestServer, image};

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
