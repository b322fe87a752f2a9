//! Apply, dry run, prune, get, list, watch, delete and optimistic concurrency, over real HTTP
//! against the real sled store.

mod common;

use common::{TestServer, container_yaml};
use hyper::Method;
use serde_json::Value;

#[tokio::test]
async fn apply_creates_then_reports_unchanged_then_configured_with_a_diff() {
    let srv = TestServer::start().await;
    let op = srv.user(&srv.admin().await, "olga", "operator").await;
    let r = srv.apply_yaml(&op, "", &container_yaml("web", "nginx:1.27")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let res = &r.json()["results"][0];
    assert_eq!(res["outcome"], "created");
    assert_eq!(res["generation"], 1);

    let r = srv.apply_yaml(&op, "", &container_yaml("web", "nginx:1.27")).await;
    assert_eq!(r.json()["results"][0]["outcome"], "unchanged");
    assert_eq!(r.json()["results"][0]["diff"], serde_json::json!([]));

    let r = srv.apply_yaml(&op, "", &container_yaml("web", "nginx:1.28")).await;
    let res = &r.json()["results"][0];
    assert_eq!(res["outcome"], "configured");
    assert_eq!(res["generation"], 2);
    let diff = res["diff"].as_array().unwrap();
    assert!(
        diff.iter()
            .any(|c| c["path"] == "spec.image" && c["op"] == "replace" && c["to"] == "nginx:1.28"),
        "{diff:?}"
    );

    let got = srv.get("/api/v1/containers/default/web", Some(&op)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["spec"]["image"], "nginx:1.28");
    assert_eq!(srv.get("/api/v1/containers/default/nope", Some(&op)).await.status, 404);
}

#[tokio::test]
async fn a_multi_document_apply_with_one_bad_document_writes_nothing() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let yaml = format!(
        "{}---\napiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: Bad_Name\nspec:\n  image: nginx\n",
        container_yaml("good", "nginx")
    );
    let r = srv.apply_yaml(&admin, "", &yaml).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let body = r.json();
    assert_eq!(body["code"], "invalid");
    let errors = body["details"]["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["doc"] == 1 && e["path"] == "metadata.name" && e["line"].as_u64() > Some(1)),
        "{errors:?}"
    );
    let list = srv.get("/api/v1/containers", Some(&admin)).await;
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 0, "nothing was written");
}

#[tokio::test]
async fn dry_run_reports_what_would_change_and_writes_nothing() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let r = srv.apply_yaml(&admin, "?dryRun=true", &container_yaml("web", "nginx")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["dryRun"], true);
    assert_eq!(r.json()["results"][0]["outcome"], "created");
    assert_eq!(srv.get("/api/v1/containers/default/web", Some(&admin)).await.status, 404);
    let audit = srv.get("/api/v1/audit?verb=create", Some(&admin)).await;
    assert_eq!(audit.json()["events"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn json_bodies_are_accepted_and_other_content_types_refused() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let doc = serde_json::json!({
        "apiVersion": "berth.dev/v1", "kind": "Container",
        "metadata": {"name": "j"}, "spec": {"image": "nginx"}
    });
    let r = srv.post_json("/api/v1/apply", Some(&admin), doc).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = srv
        .request(Method::POST, "/api/v1/apply", Some(&admin), Some(("text/plain", b"x".to_vec())))
        .await;
    assert_eq!(r.status, 415);
    assert_eq!(r.json()["code"], "unsupported_media_type");
}

#[tokio::test]
async fn prune_removes_selected_resources_missing_from_the_request() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let with_label =
        |name: &str| container_yaml(name, "nginx").replace("    app: ", "    team: a\n    app: ");
    let both = format!("{}---\n{}", with_label("one"), with_label("two"));
    assert_eq!(srv.apply_yaml(&admin, "", &both).await.status, 200);
    srv.apply_yaml(&admin, "", &container_yaml("other", "nginx")).await;

    let r = srv.apply_yaml(&admin, "?prune=team%3Da", &with_label("one")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let pruned = r.json()["pruned"].as_array().unwrap().clone();
    assert_eq!(pruned.len(), 1, "{pruned:?}");
    assert_eq!(pruned[0]["name"], "two");
    assert_eq!(srv.get("/api/v1/containers/default/two", Some(&admin)).await.status, 404);
    assert_eq!(srv.get("/api/v1/containers/default/one", Some(&admin)).await.status, 200);
    assert_eq!(srv.get("/api/v1/containers/default/other", Some(&admin)).await.status, 200);
}

#[tokio::test]
async fn list_filters_by_namespace_and_label_selector() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let in_ns =
        container_yaml("a", "nginx").replace("  name: a\n", "  name: a\n  namespace: blue\n");
    srv.apply_yaml(&admin, "", &in_ns).await;
    srv.apply_yaml(&admin, "", &container_yaml("b", "nginx")).await;
    let names = |r: common::Resp| -> Vec<String> {
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(srv.get("/api/v1/containers", Some(&admin)).await), vec!["a", "b"]);
    assert_eq!(names(srv.get("/api/v1/containers?namespace=blue", Some(&admin)).await), vec!["a"]);
    assert_eq!(
        names(srv.get("/api/v1/containers?labelSelector=app%3Db", Some(&admin)).await),
        vec!["b"]
    );
    let bad = srv.get("/api/v1/containers?labelSelector=%3D%3D%3D", Some(&admin)).await;
    assert_eq!(bad.status, 400);
    assert_eq!(srv.get("/api/v1/gizmos", Some(&admin)).await.status, 404);
}

#[tokio::test]
async fn a_stale_resource_version_is_409() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let r = srv.apply_yaml(&admin, "", &container_yaml("web", "nginx")).await;
    let rv = r.json()["results"][0]["resourceVersion"].as_str().unwrap().to_owned();
    srv.apply_yaml(&admin, "", &container_yaml("web", "nginx:2")).await;
    let stale = container_yaml("web", "nginx:3")
        .replace("  name: web\n", &format!("  name: web\n  resourceVersion: \"{rv}\"\n"));
    let r = srv.apply_yaml(&admin, "", &stale).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["code"], "conflict");
}

#[tokio::test]
async fn concurrent_conflicting_applies_have_exactly_one_winner_and_one_audit_event() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let r = srv.apply_yaml(&admin, "", &container_yaml("race", "nginx")).await;
    let rv = r.json()["results"][0]["resourceVersion"].as_str().unwrap().to_owned();
    let srv = std::sync::Arc::new(srv);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let srv = srv.clone();
        let admin = admin.clone();
        let yaml = container_yaml("race", &format!("nginx:{i}"))
            .replace("  name: race\n", &format!("  name: race\n  resourceVersion: \"{rv}\"\n"));
        tasks.push(tokio::spawn(async move { srv.apply_yaml(&admin, "", &yaml).await.status }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 409, 409, 409, 409, 409, 409, 409]);
    let audit = srv.get("/api/v1/audit?verb=update&name=race", Some(&admin)).await;
    assert_eq!(audit.json()["events"].as_array().unwrap().len(), 1, "{}", audit.text());
}

#[tokio::test]
async fn admin_only_fields_from_an_operator_are_403_naming_the_field() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let op = srv.user(&admin, "olga", "operator").await;
    let yaml = format!("{}  privileged: true\n", container_yaml("priv", "nginx"));
    let r = srv.apply_yaml(&op, "", &yaml).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let body = r.json();
    assert!(body["message"].as_str().unwrap().contains("spec.privileged"), "{body}");
    assert_eq!(body["details"]["fields"][0]["path"], "spec.privileged");
    assert_eq!(srv.get("/api/v1/containers/default/priv", Some(&admin)).await.status, 404);
    // an admin may
    assert_eq!(srv.apply_yaml(&admin, "", &yaml).await.status, 200);
}

#[tokio::test]
async fn writes_are_audited_with_the_actor_and_source_rest() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let op = srv.user(&admin, "olga", "operator").await;
    srv.apply_yaml(&op, "", &container_yaml("web", "nginx")).await;
    let audit = srv.get("/api/v1/audit?verb=create&kind=Container", Some(&admin)).await;
    let ev = &audit.json()["events"][0];
    assert_eq!(ev["actor"], "user:olga");
    assert_eq!(ev["source"], "rest");
    assert_eq!(ev["name"], "web");
}

#[tokio::test]
async fn delete_removes_a_resource_without_finalizers_and_get_is_404_after() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    srv.apply_yaml(&admin, "", &container_yaml("web", "nginx")).await;
    let r = srv.delete("/api/v1/containers/default/web?wait=true", Some(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["outcome"], "deleted");
    assert_eq!(srv.get("/api/v1/containers/default/web", Some(&admin)).await.status, 404);
    assert_eq!(srv.delete("/api/v1/containers/default/web", Some(&admin)).await.status, 404);
}

#[tokio::test]
async fn status_subresource_shows_generation_and_status() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    srv.apply_yaml(&admin, "", &container_yaml("web", "nginx")).await;
    let r = srv.get("/api/v1/containers/default/web/status", Some(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["metadata"]["generation"], 1);
    assert_eq!(r.json()["status"], Value::Null);
}

async fn read_lines(srv: &TestServer, path: &str, token: &str, n: usize) -> Vec<Value> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::get(format!("http://{}{}", srv.addr, path))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    while lines.len() < n {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("a watch event within 10 s")
            .expect("stream open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                lines.push(serde_json::from_slice(&line).unwrap());
            }
        }
    }
    lines
}

#[tokio::test]
async fn watch_streams_ndjson_and_resumes_from_a_resource_version() {
    let srv = std::sync::Arc::new(TestServer::start().await);
    let admin = srv.admin().await;
    let r = srv.apply_yaml(&admin, "", &container_yaml("first", "nginx")).await;
    let rv = r.json()["results"][0]["resourceVersion"].as_str().unwrap().to_owned();
    srv.apply_yaml(&admin, "", &container_yaml("second", "nginx")).await;
    srv.apply_yaml(&admin, "", &container_yaml("first", "nginx:2")).await;
    // Resume after `first` was created: the two later writes, in order.
    let lines =
        read_lines(&srv, &format!("/api/v1/containers?watch=true&resourceVersion={rv}"), &admin, 2)
            .await;
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["metadata"]["name"], "second");
    assert_eq!(lines[1]["type"], "MODIFIED");
    assert_eq!(lines[1]["object"]["spec"]["image"], "nginx:2");

    // Without a resourceVersion: current state first, then live changes.
    let (srv2, admin2) = (srv.clone(), admin.clone());
    let writer = tokio::spawn(async move {
        // wait until the watcher has its two initial lines is not observable; the watch is
        // started from the list revision, so a write after the list is never missed.
        srv2.apply_yaml(&admin2, "", &container_yaml("third", "nginx")).await.status
    });
    let lines =
        read_lines(&srv, "/api/v1/containers?watch=true&labelSelector=app%3Dthird", &admin, 1)
            .await;
    assert_eq!(writer.await.unwrap(), 200);
    assert_eq!(lines[0]["object"]["metadata"]["name"], "third");
}

#[tokio::test]
async fn a_watch_from_a_revision_too_old_is_410_and_a_bad_one_400() {
    let srv = TestServer::start_full(|_| {}, |s| s.watch_history = 4).await;
    let admin = srv.admin().await;
    for i in 0..10 {
        let r = srv.apply_yaml(&admin, "", &container_yaml(&format!("c{i}"), "nginx")).await;
        assert_eq!(r.status, 200);
    }
    let r = srv.get("/api/v1/containers?watch=true&resourceVersion=1", Some(&admin)).await;
    assert_eq!(r.status, 410, "{}", r.text());
    assert_eq!(r.json()["code"], "gone");
    let r = srv.get("/api/v1/containers?watch=true&resourceVersion=notanumber", Some(&admin)).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn hostile_bodies_get_4xx_and_change_nothing() {
    let srv = TestServer::start_with(|c| c.body_limit = 64 * 1024).await;
    let admin = srv.admin().await;
    // too large
    let big = format!("{}#{}\n", container_yaml("big", "nginx"), "x".repeat(100 * 1024));
    let r = srv.apply_yaml(&admin, "", &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["code"], "payload_too_large");
    // too deep
    let deep = format!("{}  labels:\n{}", container_yaml("deep", "nginx"), "[".repeat(500));
    let r = srv.apply_yaml(&admin, "", &deep).await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.text());
    // billion laughs
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..10 {
        let prev = (b'a' + i - 1) as char;
        let cur = (b'a' + i) as char;
        bomb.push_str(&format!("{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
    }
    let r = srv.apply_yaml(&admin, "", &bomb).await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.text());
    assert!(r.json()["code"].is_string());
    // not UTF-8, not YAML, empty
    for body in [vec![0xff, 0xfe, 0x00], b"{{{{".to_vec(), Vec::new()] {
        let r = srv
            .request(Method::POST, "/api/v1/apply", Some(&admin), Some(("application/yaml", body)))
            .await;
        assert!((400..500).contains(&r.status), "{} {}", r.status, r.text());
    }
    // bad JSON to a JSON route
    let r = srv
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(("application/json", b"{\"username\":".to_vec())),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["code"], "bad_request");
    let list = srv.get("/api/v1/containers", Some(&admin)).await;
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn delete_with_wait_returns_once_the_finalizer_is_gone_and_202_without_wait() {
    let srv = std::sync::Arc::new(TestServer::start().await);
    let admin = srv.admin().await;
    // Only the controller sets finalizers: play its part.
    let ctl = berth_controller::store::WriteContext::controller();
    for name in ["slow", "quick"] {
        assert_eq!(srv.apply_yaml(&admin, "", &container_yaml(name, "nginx")).await.status, 200);
        let key = berth_schemas::ResourceKey::new(berth_schemas::Kind::Container, "default", name);
        srv.state.resources().add_finalizer(&ctl, &key, "berth.dev/test").await.unwrap();
    }

    // Without wait: 202 and the resource is terminating.
    let r = srv.delete("/api/v1/containers/default/quick", Some(&admin)).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["outcome"], "terminating");
    assert!(r.json()["object"]["metadata"]["deletionTimestamp"].is_string());

    // With wait: the answer comes when the finalizer is removed.
    let (srv2, admin2) = (srv.clone(), admin.clone());
    let waiting = tokio::spawn(async move {
        srv2.delete("/api/v1/containers/default/slow?wait=true&timeoutSeconds=20", Some(&admin2))
            .await
    });
    let key = berth_schemas::ResourceKey::new(berth_schemas::Kind::Container, "default", "slow");
    // The controller's part: once deletion was requested, remove the finalizer.
    let mut terminating = false;
    for _ in 0..1000 {
        let o = srv.state.resources().get(&key).await.unwrap().unwrap();
        if o.metadata.deletion_timestamp.is_some() {
            terminating = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(terminating, "the delete request reached the store");
    srv.state.resources().remove_finalizer(&ctl, &key, "berth.dev/test").await.unwrap();
    let r = waiting.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["outcome"], "deleted");
    assert_eq!(srv.get("/api/v1/containers/default/slow", Some(&admin)).await.status, 404);
}

/// Issue 11, hole 16: a dry run is decided by the store's own precondition code, so a
/// `resourceVersion` moved past only by a status write is accepted by the dry run exactly as by
/// the real apply (it used to answer 409 where the apply succeeded).
#[tokio::test]
async fn a_dry_run_accepts_a_version_moved_only_by_status_as_the_apply_does() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let r = srv.apply_yaml(&admin, "", &container_yaml("dry", "nginx:1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rv = r.json()["results"][0]["resourceVersion"].as_str().unwrap().to_owned();
    // The controller writes status: the resourceVersion moves, the spec does not.
    let key = berth_schemas::ResourceKey::new(berth_schemas::Kind::Container, "default", "dry");
    let ctl = berth_controller::store::WriteContext::controller();
    srv.state
        .resources()
        .update_status(&ctl, &key, serde_json::json!({"phase": "Running"}))
        .await
        .unwrap();
    let edit = container_yaml("dry", "nginx:2")
        .replace("  name: dry\n", &format!("  name: dry\n  resourceVersion: \"{rv}\"\n"));

    let dry = srv.apply_yaml(&admin, "?dryRun=true", &edit).await;
    assert_eq!(dry.status, 200, "the dry run must answer as the apply: {}", dry.text());
    assert_eq!(dry.json()["results"][0]["outcome"], "configured", "{}", dry.text());
    let o = srv.get("/api/v1/containers/default/dry", Some(&admin)).await.json();
    assert_eq!(o["spec"]["image"], "nginx:1", "a dry run writes nothing");

    let real = srv.apply_yaml(&admin, "", &edit).await;
    assert_eq!(real.status, 200, "{}", real.text());
    assert_eq!(real.json()["results"][0]["outcome"], "configured");

    // And a version older than a spec write: both refuse.
    let dry = srv.apply_yaml(&admin, "?dryRun=true", &edit.replace("nginx:2", "nginx:3")).await;
    assert_eq!(dry.status, 409, "{}", dry.text());
    let real = srv.apply_yaml(&admin, "", &edit.replace("nginx:2", "nginx:3")).await;
    assert_eq!(real.status, 409, "{}", real.text());
}

/// Issue 11, hole 10: `metadata.finalizers` from a client are ignored like the other
/// server-set fields, so an operator cannot make a resource that can never be deleted.
#[tokio::test]
async fn client_set_finalizers_are_ignored_so_the_resource_can_be_deleted() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let op = srv.user(&admin, "op", "operator").await;
    let image = "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: stuck\n  finalizers:\n  - example.com/never\nspec:\n  reference: berth-test/busybox:1\n";
    let container = container_yaml("stuck", "nginx")
        .replace("  name: stuck\n", "  name: stuck\n  finalizers:\n  - example.com/never\n");
    for (yaml, path) in [
        (image.to_owned(), "/api/v1/images/default/stuck"),
        (container, "/api/v1/containers/default/stuck"),
    ] {
        let r = srv.apply_yaml(&op, "", &yaml).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let o = srv.get(path, Some(&op)).await.json();
        assert!(o["metadata"]["finalizers"].is_null(), "client finalizers were kept: {o}");
        // An update cannot add them either.
        let edit = yaml.replace("  name: stuck\n", "  name: stuck\n  annotations: {a: b}\n");
        let r = srv.apply_yaml(&op, "", &edit).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let o = srv.get(path, Some(&op)).await.json();
        assert!(o["metadata"]["finalizers"].is_null(), "client finalizers were added: {o}");

        let r = srv.delete(path, Some(&op)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["outcome"], "deleted");
        assert_eq!(srv.get(path, Some(&op)).await.status, 404);
    }
}
