//! `/api/v1/system`: Engine version and the host's containers and images with ownership, over
//! real HTTP, against the controller's in-memory fake Engine (the real Engine is exercised by
//! the controller's and the end-to-end tests).

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use berth_controller::docker::ContainerCreate;
use berth_controller::docker::fake::FakeDriver;
use common::{TestServer, container_yaml};

#[tokio::test]
async fn system_lists_containers_and_images_with_their_owners() {
    let fake = Arc::new(FakeDriver::new());
    fake.add_image("nginx:1.27");
    fake.add_image("redis:7");
    let mut owned = ContainerCreate {
        name: "berth-web".into(),
        image: "nginx:1.27".into(),
        ..ContainerCreate::default()
    };
    owned.labels = HashMap::from([
        ("dev.berth.managed-by".to_owned(), "berth".to_owned()),
        ("dev.berth.kind".to_owned(), "Container".to_owned()),
        ("dev.berth.namespace".to_owned(), "default".to_owned()),
        ("dev.berth.name".to_owned(), "web".to_owned()),
    ])
    .into_iter()
    .collect();
    fake.insert_container(&owned, true);
    let foreign = ContainerCreate {
        name: "someone-elses".into(),
        image: "redis:7".into(),
        ..ContainerCreate::default()
    };
    fake.insert_container(&foreign, false);

    let srv = TestServer::start_driver(|_| {}, |_| {}, Some(fake.clone())).await;
    let admin = srv.admin().await;
    let viewer = srv.user(&admin, "vic", "viewer").await;
    srv.apply_yaml(&admin, "", &container_yaml("web", "nginx:1.27")).await;

    let v = srv.get("/api/v1/system/version", Some(&viewer)).await;
    assert_eq!(v.status, 200, "{}", v.text());
    assert!(v.json()["apiVersion"].is_string());

    let c = srv.get("/api/v1/system/containers", Some(&viewer)).await;
    assert_eq!(c.status, 200, "{}", c.text());
    let items = c.json()["items"].as_array().unwrap().clone();
    let by_name = |n: &str| items.iter().find(|i| i["name"] == n).unwrap().clone();
    assert_eq!(by_name("berth-web")["managed"], true);
    assert_eq!(by_name("berth-web")["owner"]["name"], "web");
    assert_eq!(by_name("someone-elses")["managed"], false);
    assert!(by_name("someone-elses")["owner"].is_null());

    let i = srv.get("/api/v1/system/images", Some(&viewer)).await;
    let items = i.json()["items"].as_array().unwrap().clone();
    let nginx = items.iter().find(|i| i["repoTags"][0] == "nginx:1.27").unwrap();
    assert_eq!(nginx["wantedBy"][0], "Container/default/web");
    let redis = items.iter().find(|i| i["repoTags"][0] == "redis:7").unwrap();
    assert_eq!(redis["managed"], false);
}

#[tokio::test]
async fn system_routes_answer_503_when_the_engine_is_unreachable() {
    let fake = Arc::new(FakeDriver::new());
    fake.set_unreachable(true);
    let srv = TestServer::start_driver(|_| {}, |_| {}, Some(fake)).await;
    let admin = srv.admin().await;
    let r = srv.get("/api/v1/system/containers", Some(&admin)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], "unavailable");
}
