//! `PUT /api/v1/{plural}/{namespace}/{name}` (replace), over real HTTP against the real sled
//! store: conditional on `metadata.resourceVersion`, admin-only fields refused for non-admins,
//! validation, and the audit event.

mod common;

use common::{TestServer, container_yaml};
use hyper::Method;
use serde_json::json;

async fn put_yaml(srv: &TestServer, token: &str, path: &str, yaml: &str) -> common::Resp {
    srv.request(
        Method::PUT,
        path,
        Some(token),
        Some(("application/yaml", yaml.as_bytes().to_vec())),
    )
    .await
}

fn with_rv(yaml: &str, name: &str, rv: &str) -> String {
    yaml.replace(
        &format!("  name: {name}\n"),
        &format!("  name: {name}\n  resourceVersion: \"{rv}\"\n"),
    )
}

const WEB: &str = "/api/v1/containers/default/web";

#[tokio::test]
async fn replace_updates_an_existing_resource_and_reports_the_diff() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let op = srv.user(&admin, "olga", "operator").await;
    let r = srv.apply_yaml(&admin, "", &container_yaml("web", "nginx:1.27")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rv = r.json()["results"][0]["resourceVersion"].as_str().unwrap().to_owned();

    let r =
        put_yaml(&srv, &op, WEB, &with_rv(&container_yaml("web", "nginx:1.28"), "web", &rv)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["outcome"], "configured");
    assert_eq!(j["object"]["spec"]["image"], "nginx:1.28");
    assert_eq!(j["object"]["metadata"]["generation"], 2);
    assert_ne!(j["object"]["metadata"]["resourceVersion"], rv.as_str());
    assert_eq!(j["diff"][0]["path"], "spec.image", "{j}");
    assert_eq!(j["diff"][0]["from"], "nginx:1.27");
    assert_eq!(srv.get(WEB, Some(&op)).await.json()["spec"]["image"], "nginx:1.28");

    // The same again, as JSON and without a resourceVersion: unchanged, nothing written.
    let body = json!({
        "apiVersion": "berth.dev/v1", "kind": "Container",
        "metadata": { "name": "web", "labels": { "app": "web" } },
        "spec": { "image": "nginx:1.28" },
    });
    let r = srv.send_json(Method::PUT, WEB, Some(&op), body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["outcome"], "unchanged");
    assert_eq!(r.json()["diff"], json!([]));

    // One audit event for the replace, by the operator.
    let audit = srv.get("/api/v1/audit?verb=update&kind=Container&name=web", Some(&admin)).await;
    assert_eq!(audit.status, 200, "{}", audit.text());
    let events = audit.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor"], "user:olga");
    assert_eq!(events[0]["source"], "rest");
    assert!(events[0]["diff"].as_array().unwrap().iter().any(|d| d == "spec.image"), "{events:?}");
}

#[tokio::test]
async fn a_stale_resource_version_is_409_and_writes_nothing() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let r = srv.apply_yaml(&admin, "", &container_yaml("web", "nginx:1.27")).await;
    let stale = r.json()["results"][0]["resourceVersion"].as_str().unwrap().to_owned();
    let r = srv.apply_yaml(&admin, "", &container_yaml("web", "nginx:1.28")).await;
    assert_eq!(r.json()["results"][0]["outcome"], "configured");

    let r =
        put_yaml(&srv, &admin, WEB, &with_rv(&container_yaml("web", "nginx:1.29"), "web", &stale))
            .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["code"], "conflict");
    assert_eq!(srv.get(WEB, Some(&admin)).await.json()["spec"]["image"], "nginx:1.28");
}

#[tokio::test]
async fn admin_only_fields_from_an_operator_are_403_and_an_admin_may_set_them() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let op = srv.user(&admin, "olga", "operator").await;
    let viewer = srv.user(&admin, "vic", "viewer").await;
    srv.apply_yaml(&admin, "", &container_yaml("web", "nginx")).await;
    let privileged = format!("{}  privileged: true\n", container_yaml("web", "nginx"));

    let r = put_yaml(&srv, &op, WEB, &privileged).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["details"]["fields"][0]["path"], "spec.privileged");
    assert!(srv.get(WEB, Some(&admin)).await.json()["spec"]["privileged"].is_null());
    // A viewer may not replace at all.
    let r = put_yaml(&srv, &viewer, WEB, &container_yaml("web", "nginx:2")).await;
    assert_eq!(r.status, 403, "{}", r.text());

    let r = put_yaml(&srv, &admin, WEB, &privileged).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(srv.get(WEB, Some(&admin)).await.json()["spec"]["privileged"], true);
}

#[tokio::test]
async fn missing_mismatched_and_invalid_bodies_get_clear_4xx() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    srv.apply_yaml(&admin, "", &container_yaml("web", "nginx")).await;

    // Missing resource: 404, and replace does not create it.
    let r =
        put_yaml(&srv, &admin, "/api/v1/containers/default/nope", &container_yaml("nope", "nginx"))
            .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["code"], "not_found");
    assert_eq!(srv.get("/api/v1/containers/default/nope", Some(&admin)).await.status, 404);

    // The body names another resource than the path: 400 naming both.
    let r = put_yaml(&srv, &admin, WEB, &container_yaml("other", "nginx")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["message"].as_str().unwrap().contains("Container/default/other"),
        "{}",
        r.text()
    );

    // Invalid spec: 422 with the field and line.
    let bad =
        container_yaml("web", "nginx").replace("spec:\n  image: nginx\n", "spec:\n  image: \"\"\n");
    let r = put_yaml(&srv, &admin, WEB, &bad).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["code"], "invalid");
    assert!(r.json()["details"]["errors"][0]["line"].is_u64(), "{}", r.text());

    // Two documents: 422.
    let two = format!("{}---\n{}", container_yaml("web", "nginx"), container_yaml("web", "nginx"));
    let r = put_yaml(&srv, &admin, WEB, &two).await;
    assert_eq!(r.status, 422, "{}", r.text());

    // Unknown resource type: 404; wrong content type: 415.
    let r = put_yaml(&srv, &admin, "/api/v1/widgets/default/web", &container_yaml("web", "nginx"))
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r =
        srv.request(Method::PUT, WEB, Some(&admin), Some(("text/plain", b"hello".to_vec()))).await;
    assert_eq!(r.status, 415, "{}", r.text());

    assert_eq!(srv.get(WEB, Some(&admin)).await.json()["metadata"]["generation"], 1);
}
