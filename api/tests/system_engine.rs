//! `/api/v1/system/info`, `/df` and `/prune` over real HTTP against a real server on
//! 127.0.0.1:0, the real store on disk, and the test Docker Engine (`source .test-env/env`).
//! Without an Engine these tests fail.
//!
//! The containers are made directly through the driver with the labels berth's controller puts
//! on its own (the API server under test runs no controller); every one carries a unique name
//! and is removed at the end, also when the test fails.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_controller::docker::{BollardDriver, ContainerCreate, DockerConfig, Driver};
use berth_controller::labels;
use berth_controller::reconcile::container::pull_action;
use berth_controller::reconcile::verbs;
use berth_controller::store::{AuditEntry, AuditOutcome, AuditQuery, WriteContext};
use common::{TestServer, container_yaml, engine, image};

const LIMIT: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Containers and image tags this test made; removed on drop (from a thread of its own, so it
/// also works while a failed test unwinds).
struct Cleanup {
    containers: Vec<String>,
    tags: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let containers = std::mem::take(&mut self.containers);
        let tags = std::mem::take(&mut self.tags);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Runtime::new() else { return };
            rt.block_on(async {
                let Ok(d) = BollardDriver::connect(&DockerConfig::from_env()).await else {
                    return;
                };
                for c in &containers {
                    let _ = d.remove_container(c).await;
                }
                for t in &tags {
                    let _ = d.remove_image(t, false).await;
                }
            });
        })
        .join();
    }
}

fn berth_labels(instance: &str, name: &str) -> HashMap<String, String> {
    [
        (labels::MANAGED_BY, labels::MANAGED_BY_VALUE),
        (labels::INSTANCE, instance),
        (labels::KIND, "Container"),
        (labels::NAMESPACE, "default"),
        (labels::NAME, name),
        (labels::UID, "00000000-0000-0000-0000-000000000000"),
        ("dev.berth.test", "system-prune"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

async fn make_container(
    d: &Arc<dyn Driver>,
    cleanup: &mut Cleanup,
    name: &str,
    labels: HashMap<String, String>,
    start: bool,
) -> String {
    let spec = ContainerCreate {
        name: name.to_owned(),
        image: image(),
        cmd: Some(vec!["sleep".into(), "300".into()]),
        labels,
        ..ContainerCreate::default()
    };
    let id = within("container create", d.create_container(&spec)).await.expect("create");
    cleanup.containers.push(id.clone());
    if start {
        within("container start", d.start_container(&id)).await.expect("start");
    }
    id
}

/// Makes a new image of its own (a commit of `container`) tagged `tag`, as if berth had pulled
/// it, with the Docker CLI, since the driver has no commit call.
fn commit_image(container: &str, tag: &str) {
    let out = std::process::Command::new("docker")
        .args(["commit", container, tag])
        .output()
        .expect("the docker CLI must be installed");
    assert!(out.status.success(), "docker tag: {}", String::from_utf8_lossy(&out.stderr));
}

/// Records a successful pull the way the controller does, so prune counts `reference` as an
/// image berth pulled.
async fn record_pull(srv: &TestServer, reference: &str) {
    let entry =
        AuditEntry::new(WriteContext::controller(), verbs::IMAGE_PULL, AuditOutcome::Success)
            .target("Image", Some("default".to_owned()), "pulled")
            .message(pull_action(reference, false));
    srv.state.audit().append(entry).await.expect("audit append");
}

#[tokio::test]
async fn info_and_df_report_the_engine_and_berths_share() {
    let d = engine().await;
    let srv = TestServer::start_driver(|_| {}, |_| {}, Some(d.clone())).await;
    let admin = srv.admin().await;
    let viewer = srv.user(&admin, "vic", "viewer").await;
    let instance = srv.state.resources().instance_id().to_owned();
    let mut cleanup = Cleanup { containers: Vec::new(), tags: Vec::new() };
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let keep = format!("keep-{}", &suffix[..8]);
    let r = srv.apply_yaml(&admin, "", &container_yaml(&keep, &image())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    make_container(
        &d,
        &mut cleanup,
        &format!("berth_default_{keep}_{suffix}"),
        berth_labels(&instance, &keep),
        true,
    )
    .await;

    let r = srv.get("/api/v1/system/info", Some(&viewer)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let e = &j["engine"];
    assert!(e["containers"]["total"].as_u64().unwrap() >= 1, "{j}");
    assert!(e["containers"]["running"].as_u64().unwrap() >= 1, "{j}");
    assert!(e["containers"]["stopped"].is_u64(), "{j}");
    assert!(e["images"].as_u64().unwrap() >= 1, "{j}");
    assert!(e["cpus"].as_u64().unwrap() >= 1, "{j}");
    assert!(e["memoryBytes"].as_u64().unwrap() > 0, "{j}");
    assert!(!e["kernelVersion"].as_str().unwrap().is_empty(), "{j}");
    assert!(!e["operatingSystem"].as_str().unwrap().is_empty(), "{j}");
    assert!(!e["storageDriver"].as_str().unwrap().is_empty(), "{j}");
    assert!(!e["version"].as_str().unwrap().is_empty(), "{j}");
    let b = &j["berth"];
    assert_eq!(b["instanceId"], instance.as_str());
    assert!(b["storeBytes"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(b["resources"]["Container"], 1, "{j}");
    assert_eq!(b["resources"]["Image"], 0, "{j}");
    assert_eq!(b["managedContainers"]["total"], 1, "{j}");
    assert_eq!(b["managedContainers"]["running"], 1, "{j}");

    let r = srv.get("/api/v1/system/df", Some(&viewer)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    for class in ["images", "containers", "volumes"] {
        assert!(j[class]["count"].is_u64(), "{class}: {j}");
        assert!(j[class]["active"].is_u64(), "{class}: {j}");
        assert!(j[class]["berth"]["count"].is_u64(), "{class}: {j}");
    }
    assert!(j["containers"]["count"].as_u64().unwrap() >= 1, "{j}");
    assert!(j["containers"]["berth"]["count"].as_u64().unwrap() >= 1, "{j}");
    assert!(j["images"]["sizeBytes"].as_u64().unwrap() > 0, "{j}");
    // The test image is wanted by the Container resource: berth's share counts it.
    assert!(j["images"]["berth"]["count"].as_u64().unwrap() >= 1, "{j}");
    assert!(j["images"]["berth"]["sizeBytes"].as_u64().unwrap() > 0, "{j}");
    assert!(j.as_object().unwrap().contains_key("buildCache"), "{j}");
    drop(cleanup);
}

#[tokio::test]
async fn prune_removes_only_berths_own_leftovers_and_audits_each_removal() {
    let d = engine().await;
    let srv = TestServer::start_driver(|_| {}, |_| {}, Some(d.clone())).await;
    let admin = srv.admin().await;
    let viewer = srv.user(&admin, "vic", "viewer").await;
    let operator = srv.user(&admin, "otto", "operator").await;
    let instance = srv.state.resources().instance_id().to_owned();
    let mut cleanup = Cleanup { containers: Vec::new(), tags: Vec::new() };
    let s = uuid::Uuid::new_v4().simple().to_string();
    let s = &s[..12];

    // Wanted: a resource and its running container.
    let keep = format!("keep-{s}");
    let r = srv.apply_yaml(&admin, "", &container_yaml(&keep, &image())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let keep_id = make_container(
        &d,
        &mut cleanup,
        &format!("berth_default_{keep}"),
        berth_labels(&instance, &keep),
        true,
    )
    .await;
    // An orphan: this instance's labels, but no resource.
    let gone = format!("gone-{s}");
    let orphan_id = make_container(
        &d,
        &mut cleanup,
        &format!("berth_default_{gone}"),
        berth_labels(&instance, &gone),
        false,
    )
    .await;
    // Another berth instance's leftover, and a container that is not berth's at all.
    let other_id = make_container(
        &d,
        &mut cleanup,
        &format!("berth-prunetest-other-{s}"),
        berth_labels("another-instance", &format!("other-{s}")),
        false,
    )
    .await;
    let foreign_id = make_container(
        &d,
        &mut cleanup,
        &format!("prunetest-foreign-{s}"),
        HashMap::from([("dev.berth.test".to_owned(), "system-prune".to_owned())]),
        false,
    )
    .await;
    // An image berth pulled that nothing uses (an image of its own, made for this test), and
    // the test image itself, pulled by berth too but wanted by the resource.
    let leftover_tag = format!("berth-prunetest-{s}:1");
    commit_image(&foreign_id, &leftover_tag);
    cleanup.tags.push(leftover_tag.clone());
    record_pull(&srv, &leftover_tag).await;
    record_pull(&srv, &image()).await;

    for (who, token) in [("viewer", &viewer), ("operator", &operator)] {
        for q in ["?dryRun=true", ""] {
            let r = srv
                .post_json(&format!("/api/v1/system/prune{q}"), Some(token), serde_json::json!({}))
                .await;
            assert_eq!(r.status, 403, "{who} {q}: {}", r.text());
            assert_eq!(r.json()["code"], "forbidden");
        }
    }
    let r = srv
        .post_json("/api/v1/system/prune?dryRun=maybe", Some(&admin), serde_json::json!({}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());

    let r = srv
        .post_json("/api/v1/system/prune?dryRun=true", Some(&admin), serde_json::json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["dryRun"], true);
    let items = j["items"].as_array().unwrap().clone();
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert!(ids.contains(&orphan_id.as_str()), "the orphan is listed: {j}");
    assert!(names.contains(&leftover_tag.as_str()), "the leftover image is listed: {j}");
    for kept in [&keep_id, &other_id, &foreign_id] {
        assert!(!ids.contains(&kept.as_str()), "{kept} must not be listed: {j}");
    }
    assert!(!names.contains(&image().as_str()), "the wanted image must not be listed: {j}");
    assert_eq!(items.len(), 2, "{j}");
    assert!(items.iter().all(|i| i["removed"] == false), "{j}");
    // A dry run removes nothing.
    assert!(d.inspect_container(&orphan_id).await.unwrap().is_some());
    assert!(d.inspect_image(&leftover_tag).await.unwrap().is_some());

    let r = srv.post_json("/api/v1/system/prune", Some(&admin), serde_json::json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["dryRun"], false);
    let items = j["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{j}");
    assert!(items.iter().all(|i| i["removed"] == true), "{j}");

    assert!(d.inspect_container(&orphan_id).await.unwrap().is_none(), "the orphan is gone");
    assert!(d.inspect_image(&leftover_tag).await.unwrap().is_none(), "the leftover is gone");
    let leftover_id = items.iter().find(|i| i["type"] == "image").unwrap()["id"].clone();
    let leftover_id = leftover_id.as_str().unwrap();
    assert!(d.inspect_image(leftover_id).await.unwrap().is_none(), "the image is deleted");
    for kept in [&keep_id, &other_id, &foreign_id] {
        assert!(d.inspect_container(kept).await.unwrap().is_some(), "{kept} stays");
    }
    assert!(d.inspect_image(&image()).await.unwrap().is_some(), "the wanted image stays");

    // One audit event per removal, by the admin.
    for verb in ["docker.container.remove", "docker.image.remove"] {
        let page = srv
            .state
            .audit()
            .query(&AuditQuery { verb: Some(verb.to_owned()), ..AuditQuery::default() })
            .await
            .unwrap();
        assert_eq!(page.events.len(), 1, "{verb}: {:?}", page.events);
        let e = &page.events[0];
        assert_eq!(e.outcome, AuditOutcome::Success);
        assert_eq!(e.actor.to_string(), "user:admin");
    }
    let page = srv
        .state
        .audit()
        .query(&AuditQuery {
            verb: Some("docker.container.remove".to_owned()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.events[0].name.as_deref(), Some(gone.as_str()));

    // Nothing left: a second prune finds nothing.
    let r = srv
        .post_json("/api/v1/system/prune?dryRun=true", Some(&admin), serde_json::json!({}))
        .await;
    assert_eq!(r.json()["items"], serde_json::json!([]), "{}", r.text());
    drop(cleanup);
}

async fn graphql(srv: &TestServer, token: &str, query: &str) -> serde_json::Value {
    let r = srv.post_json("/graphql", Some(token), serde_json::json!({ "query": query })).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The shape of a JSON value: its object keys, recursively, with the kind of each leaf.
fn shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Number(_) => Value::from("number"),
        Value::String(_) => Value::from("string"),
        Value::Bool(_) => Value::from("bool"),
        Value::Null => Value::from("null"),
        Value::Array(_) => Value::from("array"),
    }
}

#[tokio::test]
async fn graphql_disk_usage_system_info_and_engine_answer_as_their_rest_routes() {
    let d = engine().await;
    let srv = TestServer::start_driver(|_| {}, |_| {}, Some(d.clone())).await;
    let admin = srv.admin().await;
    let viewer = srv.user(&admin, "vic", "viewer").await;
    let keep = format!("keep-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let r = srv.apply_yaml(&admin, "", &container_yaml(&keep, &image())).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let usage =
        "images { count active sizeBytes sharedBytes reclaimableBytes berth { count sizeBytes } }
        containers { count active sizeBytes reclaimableBytes berth { count sizeBytes } }
        volumes { count active sizeBytes berth { count } }
        buildCache { count sizeBytes reclaimableBytes }";
    let j = graphql(
        &srv,
        &viewer,
        &format!(
            "{{ diskUsage {{ {usage} }}
               systemInfo {{ engine {{ name version images cpus memoryBytes storageDriver
                 containers {{ total running paused stopped }} }}
                 berth {{ version instanceId revision resources managedContainers {{ total running }} }} }}
               engine {{ version apiVersion minApiVersion negotiatedApiVersion os arch berthVersion }} }}"
        ),
    )
    .await;
    assert!(j["errors"].is_null(), "{j}");
    let g = &j["data"];
    let df = srv.get("/api/v1/system/df", Some(&viewer)).await.json();
    let info = srv.get("/api/v1/system/info", Some(&viewer)).await.json();
    let version = srv.get("/api/v1/system/version", Some(&viewer)).await.json();
    // Other tests share the Engine, so counts may move between the two calls: the fields and
    // their kinds must be the same, and what this test controls must be equal.
    let mut gdf = g["diskUsage"].clone();
    if gdf["buildCache"].is_null() {
        assert!(df["buildCache"].is_null(), "{df}");
    }
    // GraphQL answers null for a share REST leaves out (volumes have no size share).
    gdf["volumes"]["berth"].as_object_mut().unwrap().retain(|_, v| !v.is_null());
    assert_eq!(shape(&gdf), shape(&df), "GraphQL {gdf}\nREST {df}");
    assert!(g["diskUsage"]["images"]["berth"]["count"].as_u64().unwrap() >= 1, "{g}");
    assert_eq!(g["engine"], version, "engine vs /system/version");
    assert_eq!(g["systemInfo"]["berth"]["instanceId"], info["berth"]["instanceId"]);
    assert_eq!(g["systemInfo"]["berth"]["resources"], info["berth"]["resources"]);
    assert_eq!(g["systemInfo"]["berth"]["resources"]["Container"], 1, "{g}");
    assert_eq!(g["systemInfo"]["berth"]["revision"], info["berth"]["revision"]);
    assert_eq!(g["systemInfo"]["engine"]["version"], info["engine"]["version"]);
    assert_eq!(g["systemInfo"]["engine"]["cpus"], info["engine"]["cpus"]);
    assert_eq!(g["systemInfo"]["engine"]["name"], info["engine"]["name"]);
}

#[tokio::test]
async fn graphql_system_prune_is_admin_only_removes_an_orphan_and_is_audited() {
    let d = engine().await;
    let srv = TestServer::start_driver(|_| {}, |_| {}, Some(d.clone())).await;
    let admin = srv.admin().await;
    let viewer = srv.user(&admin, "vic", "viewer").await;
    let operator = srv.user(&admin, "otto", "operator").await;
    let instance = srv.state.resources().instance_id().to_owned();
    let mut cleanup = Cleanup { containers: Vec::new(), tags: Vec::new() };
    let s = uuid::Uuid::new_v4().simple().to_string();
    let gone = format!("gqlgone-{}", &s[..12]);
    let orphan_id = make_container(
        &d,
        &mut cleanup,
        &format!("berth_default_{gone}"),
        berth_labels(&instance, &gone),
        false,
    )
    .await;

    for (who, token) in [("viewer", &viewer), ("operator", &operator)] {
        for q in [
            "mutation { systemPrune(dryRun: true) { dryRun } }",
            "mutation { systemPrune { dryRun } }",
        ] {
            let j = graphql(&srv, token, q).await;
            assert_eq!(j["errors"][0]["extensions"]["code"], "forbidden", "{who}: {j}");
            assert!(j["data"].is_null(), "{who}: {j}");
        }
    }
    assert!(
        d.inspect_container(&orphan_id).await.unwrap().is_some(),
        "refused prunes remove nothing"
    );

    let q = "mutation { systemPrune(dryRun: true) { dryRun items { type id name reason removed error } } }";
    let j = graphql(&srv, &admin, q).await;
    assert!(j["errors"].is_null(), "{j}");
    let rest = srv
        .post_json("/api/v1/system/prune?dryRun=true", Some(&admin), serde_json::json!({}))
        .await
        .json();
    let mut items = j["data"]["systemPrune"]["items"].clone();
    for i in items.as_array_mut().unwrap() {
        i.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    }
    assert_eq!(items, rest["items"], "GraphQL and REST dry runs list the same");
    assert!(
        items
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == orphan_id.as_str() && i["type"] == "container"),
        "{j}"
    );
    assert!(d.inspect_container(&orphan_id).await.unwrap().is_some(), "a dry run removes nothing");

    let j = graphql(&srv, &admin, "mutation { systemPrune { dryRun items { id removed } } }").await;
    assert!(j["errors"].is_null(), "{j}");
    assert_eq!(j["data"]["systemPrune"]["dryRun"], false);
    let item = j["data"]["systemPrune"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == orphan_id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("the orphan is pruned: {j}"));
    assert_eq!(item["removed"], true, "{j}");
    assert!(d.inspect_container(&orphan_id).await.unwrap().is_none(), "the orphan is gone");
    let page = srv
        .state
        .audit()
        .query(&AuditQuery {
            verb: Some("docker.container.remove".to_owned()),
            name: Some(gone.clone()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 1, "{:?}", page.events);
    assert_eq!(page.events[0].actor.to_string(), "user:admin");
    assert_eq!(page.events[0].outcome, AuditOutcome::Success);
    drop(cleanup);
}
