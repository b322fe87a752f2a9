//! The whole controller (runtime, triggers, reconcilers) against the real sled store in a temp
//! dir, the real bollard driver and the Docker Engine and loopback registries of
//! `scripts/test-env up`. These tests fail (they do not skip) without that environment.
//!
//! Every test works in its own namespace, so its containers are `berth_<ns>_<name>`; every
//! container carries the `dev.berth.test=<namespace>` label, and cleanup removes every container
//! with that label (replaced and duplicate ones too) whether the test passed or not.
//! Convergence is asserted by polling with a generous timeout, never by timing.
//!
//! The tests run in parallel: each has its own store, so its own instance id, and a controller
//! adopts or removes only containers labelled with its own instance id.

mod support;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_controller::docker::{
    BollardDriver, ContainerCreate, ContainerFilter, CredentialStore, Driver, ObservedContainer,
};
use berth_controller::labels;
use berth_controller::reconcile::{Context, Controller, ControllerConfig, container};
use berth_controller::store::{
    AuditEvent, AuditLog, AuditOutcome, AuditQuery, ResourceStore, SledStore, StoreConfig,
    WatchQuery, WriteContext,
};
use berth_schemas::condition::{DEGRADED, READY, find_condition};
use berth_schemas::meta::RESTARTED_AT_ANNOTATION;
use berth_schemas::{
    API_VERSION, Condition, ConditionStatus, DynamicObject, Kind, ObjectMeta, ResourceKey,
};
use futures::StreamExt;
use serde_json::{Value, json};
use support::{Cleanup, TEST_LABEL, TestEnv, within};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long convergence may take before a test fails. Generous: the machine is noisy.
const CONVERGE_SECS: u64 = 60;

/// Removes, when dropped, every container labelled `dev.berth.test=<value>`, whether the test
/// passed or not. Never panics: failures are printed.
struct CleanupByLabel {
    driver: BollardDriver,
    value: String,
}

impl Drop for CleanupByLabel {
    fn drop(&mut self) {
        let driver = self.driver.clone();
        let filter = ContainerFilter::all().with_label(TEST_LABEL, self.value.clone());
        // Drop cannot await, and the test's runtime may be shutting down: use a thread with
        // its own runtime.
        let worker = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cleanup: cannot start a runtime: {e}");
                    return;
                }
            };
            runtime.block_on(async {
                let listed =
                    tokio::time::timeout(Duration::from_secs(30), driver.list_containers(&filter))
                        .await;
                let containers = match listed {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return eprintln!("cleanup: listing containers: {e}"),
                    Err(_) => return eprintln!("cleanup: listing containers timed out"),
                };
                for c in containers {
                    match tokio::time::timeout(
                        Duration::from_secs(30),
                        driver.remove_container(&c.id),
                    )
                    .await
                    {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => eprintln!("cleanup: removing container {}: {e}", c.name),
                        Err(_) => eprintln!("cleanup: removing container {} timed out", c.name),
                    }
                }
            });
        });
        if worker.join().is_err() {
            eprintln!("cleanup: the cleanup thread panicked");
        }
    }
}

struct Running {
    env: TestEnv,
    driver: BollardDriver,
    store: SledStore,
    namespace: String,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<()>>,
    /// Image tags and foreign containers made by the test.
    cleanup: Cleanup,
    /// Every container labelled with this test's namespace.
    _by_label: CleanupByLabel,
    _dir: tempfile::TempDir,
}

async fn start(credentials: CredentialStore) -> Running {
    let env = TestEnv::load();
    let driver = env.driver().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(StoreConfig::new(dir.path())).expect("store opens");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let namespace = format!("bt-{}", &id[..10]);
    let controller = Controller::new(
        Arc::new(store.clone()),
        Arc::new(driver.clone()),
        Arc::new(credentials),
        ControllerConfig { relist_every: Duration::from_secs(5), ..ControllerConfig::default() },
    );
    let mut ready = controller.readiness();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(controller.run(shutdown.clone()));
    within(30, "the controller to become ready", ready.wait_for(|r| *r))
        .await
        .expect("readiness sender alive");
    let cleanup = Cleanup::new(&driver);
    let by_label = CleanupByLabel { driver: driver.clone(), value: namespace.clone() };
    Running {
        env,
        driver,
        store,
        namespace,
        shutdown,
        handle: Some(handle),
        cleanup,
        _by_label: by_label,
        _dir: dir,
    }
}

impl Running {
    fn key(&self, kind: Kind, name: &str) -> ResourceKey {
        ResourceKey::new(kind, &self.namespace, name)
    }

    fn container_name(&self, name: &str) -> String {
        labels::container_name(&self.namespace, name)
    }

    async fn apply(&mut self, kind: Kind, name: &str, mut spec: Value) {
        if kind == Kind::Container {
            spec["labels"] = json!({ TEST_LABEL: self.namespace });
        }
        let obj = DynamicObject {
            api_version: API_VERSION.into(),
            kind,
            metadata: ObjectMeta { namespace: self.namespace.clone(), ..ObjectMeta::named(name) },
            spec,
            status: Value::Null,
        };
        self.store.apply(&WriteContext::rest_user("tester"), obj).await.expect("apply");
    }

    async fn delete(&self, kind: Kind, name: &str) {
        self.store
            .delete(&WriteContext::rest_user("tester"), &self.key(kind, name))
            .await
            .expect("delete");
    }

    async fn get(&self, kind: Kind, name: &str) -> Option<DynamicObject> {
        self.store.get(&self.key(kind, name)).await.expect("store get")
    }

    /// The resource when it is Ready by berth's one readiness rule.
    async fn ready(&self, kind: Kind, name: &str) -> Option<DynamicObject> {
        self.get(kind, name).await.filter(|o| berth_schemas::readiness(o).is_ready())
    }

    async fn condition(&self, kind: Kind, name: &str, type_: &str) -> Option<Condition> {
        let obj = self.get(kind, name).await?;
        let conditions: Vec<Condition> =
            serde_json::from_value(obj.status.get("conditions")?.clone()).ok()?;
        find_condition(&conditions, type_).cloned()
    }

    /// Every container of this test's namespace that this test's berth manages.
    async fn managed(&self) -> Vec<ObservedContainer> {
        let filter = ContainerFilter::managed()
            .with_label(labels::INSTANCE, self.store.instance_id())
            .with_label(labels::NAMESPACE, &self.namespace);
        self.driver.list_containers(&filter).await.expect("list containers")
    }

    async fn one(&self, name: &str) -> Option<ObservedContainer> {
        let mine: Vec<_> = self
            .managed()
            .await
            .into_iter()
            .filter(|c| c.label(labels::NAME) == Some(name))
            .collect();
        assert!(mine.len() <= 1, "duplicate containers for {name}: {mine:?}");
        mine.into_iter().next()
    }

    /// Polls `check` until it gives `Some`, failing the test after [`CONVERGE_SECS`].
    async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        within(CONVERGE_SECS, what, async {
            loop {
                if let Some(v) = check().await {
                    return v;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
    }

    async fn running(&self, name: &str) -> ObservedContainer {
        self.eventually(&format!("{name} to run"), || async {
            self.one(name)
                .await
                .filter(|c| c.state == berth_controller::docker::ContainerState::Running)
        })
        .await
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            within(60, "the controller to shut down", handle).await.expect("controller task");
        }
    }
}

fn sleeper(image: &str) -> Value {
    json!({"image": image, "command": ["sleep", "600"], "init": true, "stopGracePeriodSeconds": 2})
}

#[tokio::test]
async fn create_update_stop_start_and_delete_converge_on_the_real_engine() {
    let mut t = start(CredentialStore::empty()).await;
    let image = t.env.image.clone();
    t.apply(Kind::Container, "web", sleeper(&image)).await;
    let first = t.running("web").await;
    assert_eq!(first.name, t.container_name("web"));
    t.eventually("web to be Ready", || async { t.ready(Kind::Container, "web").await }).await;

    // Update: a different spec replaces the container.
    let mut spec = sleeper(&image);
    spec["env"] = json!([{"name": "VERSION", "value": "2"}]);
    t.apply(Kind::Container, "web", spec.clone()).await;
    let second = t
        .eventually("web to be replaced", || async {
            t.one("web").await.filter(|c| {
                c.id != first.id && c.state == berth_controller::docker::ContainerState::Running
            })
        })
        .await;

    // Stop, then start again: the same container.
    spec["desiredState"] = json!("Stopped");
    t.apply(Kind::Container, "web", spec.clone()).await;
    t.eventually("web to stop", || async { t.one("web").await.filter(|c| !c.state.is_up()) }).await;
    spec["desiredState"] = json!("Running");
    t.apply(Kind::Container, "web", spec).await;
    let again = t.running("web").await;
    assert_eq!(again.id, second.id, "start must not replace");

    // Delete: the container goes, then the resource.
    t.delete(Kind::Container, "web").await;
    t.eventually("web's container and resource to be gone", || async {
        (t.one("web").await.is_none() && t.get(Kind::Container, "web").await.is_none())
            .then_some(())
    })
    .await;
    t.stop().await;
}

#[tokio::test]
async fn a_new_restarted_at_annotation_replaces_the_container_with_an_identical_one() {
    let mut t = start(CredentialStore::empty()).await;
    let image = t.env.image.clone();
    t.apply(Kind::Container, "restartme", sleeper(&image)).await;
    let first = t.running("restartme").await;

    // What `berth restart` and GraphQL `restartContainer` write: only the annotation changes.
    let mut obj = t.get(Kind::Container, "restartme").await.expect("resource exists");
    obj.metadata.resource_version = None;
    obj.metadata
        .annotations
        .insert(RESTARTED_AT_ANNOTATION.to_owned(), "2026-11-27T14:00:00Z".to_owned());
    t.store.apply(&WriteContext::rest_user("tester"), obj).await.expect("apply annotation");
    let second = t
        .eventually("restartme to be replaced", || async {
            t.one("restartme").await.filter(|c| {
                c.id != first.id && c.state == berth_controller::docker::ContainerState::Running
            })
        })
        .await;
    assert_eq!(second.name, first.name, "the replacement keeps the deterministic name");
    t.stop().await;
}

#[tokio::test]
async fn a_container_stopped_killed_or_removed_behind_berths_back_comes_back() {
    let mut t = start(CredentialStore::empty()).await;
    let image = t.env.image.clone();
    t.apply(Kind::Container, "drift", sleeper(&image)).await;
    let c = t.running("drift").await;

    t.driver.stop_container(&c.id, Duration::from_secs(2)).await.expect("docker stop");
    let after_stop = t.running("drift").await;
    assert_eq!(after_stop.id, c.id, "a stopped container is started again, not replaced");

    t.driver.kill_container(&c.id, None).await.expect("docker kill");
    t.eventually("drift to run again after kill", || async {
        t.one("drift").await.filter(|x| {
            x.state == berth_controller::docker::ContainerState::Running
                && x.started_at != after_stop.started_at
        })
    })
    .await;

    let removed_at = std::time::Instant::now();
    t.driver.remove_container(&c.id).await.expect("docker rm -f");
    let recreated = t
        .eventually("drift to be recreated after rm -f", || async {
            t.one("drift").await.filter(|x| {
                x.id != c.id && x.state == berth_controller::docker::ContainerState::Running
            })
        })
        .await;
    // Informative only (no timed assertion): how long the repair took on this machine.
    eprintln!("drift repair after rm -f took {:?}", removed_at.elapsed());
    assert_eq!(recreated.name, t.container_name("drift"));
    t.stop().await;
}

#[tokio::test]
async fn restart_never_a_command_that_exits_3_stays_exited_with_a_status_saying_so() {
    let mut t = start(CredentialStore::empty()).await;
    let image = t.env.image.clone();
    t.apply(
        Kind::Container,
        "exits",
        json!({"image": image, "command": ["sh", "-c", "exit 3"],
               "restartPolicy": {"policy": "Never"}}),
    )
    .await;
    let ready = t
        .eventually("status to say the process exited with 3", || async {
            t.condition(Kind::Container, "exits", READY).await.filter(|c| c.reason == "Exited")
        })
        .await;
    assert_eq!(ready.status, ConditionStatus::False);
    assert!(ready.message.contains("exited with code 3"), "{}", ready.message);
    let degraded = t.condition(Kind::Container, "exits", DEGRADED).await.expect("Degraded");
    assert_eq!((degraded.status, degraded.reason.as_str()), (ConditionStatus::True, "Exited"));
    let obj = t.get(Kind::Container, "exits").await.expect("resource");
    assert_eq!(obj.status["exitCode"], json!(3), "{}", obj.status);
    assert_eq!(obj.status["state"], json!("Exited"), "{}", obj.status);

    let c = t.one("exits").await.expect("the container is kept");
    assert_eq!(c.state, berth_controller::docker::ContainerState::Exited);
    assert_eq!(c.exit_code, Some(3));
    // berth started it once (when it made it) and not again after it exited.
    let starts: Vec<AuditEvent> = docker_audit(&t.store)
        .await
        .into_iter()
        .filter(|e| e.verb == "docker.container.start" && e.outcome == AuditOutcome::Success)
        .collect();
    assert_eq!(starts.len(), 1, "{starts:#?}");
    let again = t.one("exits").await.expect("the container is kept");
    assert_eq!(again.started_at, c.started_at, "not started again");
    t.stop().await;
}

#[tokio::test]
async fn restart_never_a_docker_stop_or_kill_of_a_running_container_is_repaired() {
    let mut t = start(CredentialStore::empty()).await;
    let image = t.env.image.clone();
    let mut spec = sleeper(&image);
    spec["restartPolicy"] = json!({"policy": "Never"});
    t.apply(Kind::Container, "stopme", spec).await;
    let c = t.running("stopme").await;

    t.driver.stop_container(&c.id, Duration::from_secs(2)).await.expect("docker stop");
    let after_stop = t
        .eventually("stopme to run again after docker stop", || async {
            t.one("stopme").await.filter(|x| {
                x.state == berth_controller::docker::ContainerState::Running
                    && x.started_at != c.started_at
            })
        })
        .await;
    assert_eq!(after_stop.id, c.id, "started again, not replaced");

    t.driver.kill_container(&c.id, None).await.expect("docker kill");
    t.eventually("stopme to run again after docker kill", || async {
        t.one("stopme").await.filter(|x| {
            x.state == berth_controller::docker::ContainerState::Running
                && x.started_at != after_stop.started_at
        })
    })
    .await;
    t.eventually("stopme to be Ready", || async { t.ready(Kind::Container, "stopme").await }).await;
    t.stop().await;
}

#[tokio::test]
async fn a_foreign_container_with_the_wanted_name_is_reported_and_left_alone() {
    let mut t = start(CredentialStore::empty()).await;
    let image = t.env.image.clone();
    let name = t.container_name("clash");
    let foreign = t
        .driver
        .create_container(&ContainerCreate {
            name: name.clone(),
            image: image.clone(),
            cmd: Some(vec!["sleep".into(), "600".into()]),
            init: true,
            labels: [(TEST_LABEL.to_owned(), t.namespace.clone())].into(),
            ..ContainerCreate::default()
        })
        .await
        .expect("create the foreign container");
    t.apply(Kind::Container, "clash", sleeper(&image)).await;

    let degraded = t
        .eventually("a NameConflict condition", || async {
            t.condition(Kind::Container, "clash", DEGRADED)
                .await
                .filter(|c| c.status == ConditionStatus::True && c.reason == "NameConflict")
        })
        .await;
    assert!(degraded.message.contains(&foreign[..12]), "{}", degraded.message);
    let still = t.driver.inspect_container(&foreign).await.expect("inspect").expect("still there");
    assert!(!still.is_managed());
    assert!(t.managed().await.is_empty(), "berth made no container of its own");

    // Once the foreign container is gone, berth creates its own under the name.
    t.driver.remove_container(&foreign).await.expect("remove foreign");
    let own = t.running("clash").await;
    assert_eq!(own.name, name);
    t.stop().await;
}

#[tokio::test]
async fn a_container_starts_only_after_its_dependency_is_ready() {
    let mut t = start(CredentialStore::empty()).await;
    let image = t.env.image.clone();
    let mut web = sleeper(&image);
    web["dependsOn"] = json!([{"name": "db"}]);
    t.apply(Kind::Container, "web", web).await;
    t.eventually("web to wait for db", || async {
        t.condition(Kind::Container, "web", READY)
            .await
            .filter(|c| c.reason == "WaitingForDependencies")
    })
    .await;
    assert!(t.one("web").await.is_none(), "web must not exist before db is Ready");

    t.apply(Kind::Container, "db", sleeper(&image)).await;
    let db = t.running("db").await;
    let web = t.running("web").await;
    let (Some(db_started), Some(web_created)) = (db.started_at, web.created_at) else {
        panic!("timestamps missing: {db:?} {web:?}");
    };
    assert!(web_created >= db_started, "web was created before db started");
    t.stop().await;
}

#[tokio::test]
async fn two_berths_with_separate_stores_on_one_engine_leave_each_others_containers_alone() {
    let mut a = start(CredentialStore::empty()).await;
    let mut b = start(CredentialStore::empty()).await;
    assert_ne!(a.store.instance_id(), b.store.instance_id());
    let image = a.env.image.clone();
    a.apply(Kind::Container, "web", sleeper(&image)).await;
    a.apply(Kind::Container, "solo", sleeper(&image)).await;
    let web = a.running("web").await;
    let solo = a.running("solo").await;
    assert_eq!(web.label(labels::INSTANCE), Some(a.store.instance_id()));

    // b wants the same namespace and name: the container is a's, so b reports the conflict.
    b.namespace = a.namespace.clone();
    b.apply(Kind::Container, "web", sleeper(&image)).await;
    let conflict = b
        .eventually("b to report a NameConflict", || async {
            b.condition(Kind::Container, "web", DEGRADED)
                .await
                .filter(|c| c.status == ConditionStatus::True && c.reason == "NameConflict")
        })
        .await;
    assert!(conflict.message.contains(&web.id[..12]), "{}", conflict.message);

    // b has no resource `solo`: for b, a's container would be an orphan if it were b's. The
    // orphan pass (what b's controller runs for such a key) must leave it alone.
    let b_ctx = Context::new(
        Arc::new(b.store.clone()),
        Arc::new(b.driver.clone()),
        Arc::new(CredentialStore::empty()),
    );
    container::remove_orphans(&b_ctx, &a.key(Kind::Container, "solo"))
        .await
        .expect("b's orphan pass");

    let web_now = a.one("web").await.expect("a's web is still there");
    let solo_now = a.one("solo").await.expect("a's solo is still there");
    assert_eq!((web_now.id.as_str(), web_now.state), (web.id.as_str(), web.state));
    assert_eq!((solo_now.id.as_str(), solo_now.state), (solo.id.as_str(), solo.state));
    assert!(b.managed().await.is_empty(), "b made no container");
    b.stop().await;
    a.stop().await;
}

fn credentials(registry: &str, user: &str, password: &str, dir: &Path) -> CredentialStore {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let json = json!({"auths": {registry: {"auth": auth}}});
    CredentialStore::parse(json.to_string().as_bytes(), &dir.join("config.json"))
        .expect("credentials parse")
}

/// The image reference of the test image in `registry`, removed locally so that the next use
/// is a real pull.
async fn remote_image(t: &mut Running, registry: &str) -> String {
    let path = t.env.image.split(':').next().unwrap_or("berth-test/busybox").to_owned();
    let reference = format!("{registry}/{path}:1");
    // Leftovers of an earlier run would make the pull a no-op.
    let _ = t.driver.remove_image(&reference, false).await;
    t.cleanup.image(reference.clone());
    reference
}

#[tokio::test]
async fn an_image_is_pulled_from_the_loopback_registry_and_its_digest_recorded() {
    let mut t = start(CredentialStore::empty()).await;
    let registry = t.env.registry.clone();
    let reference = remote_image(&mut t, &registry).await;
    t.apply(Kind::Image, "plain", json!({"reference": reference})).await;
    let ready = t
        .eventually("the image to be Present", || async {
            t.condition(Kind::Image, "plain", READY)
                .await
                .filter(|c| c.status == ConditionStatus::True)
        })
        .await;
    assert_eq!(ready.reason, "Present");
    let obj = t.get(Kind::Image, "plain").await.expect("image resource");
    assert!(obj.status["imageId"].as_str().is_some_and(|s| s.starts_with("sha256:")));
    assert!(
        obj.status["repoDigests"].to_string().contains("@sha256:"),
        "a pulled image has a registry digest: {}",
        obj.status
    );
    t.stop().await;
}

/// Runs the docker CLI (with the test environment's `DOCKER_HOST`), failing the test if it
/// fails.
fn docker_cli(args: &[&str]) {
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

/// An image in `registry` with a layer of 3 MB of random bytes that exists nowhere else, so
/// that pulling it really downloads: made from the test image (`docker run` + `docker
/// commit`), pushed, then removed locally.
fn fresh_registry_image(t: &mut Running, registry: &str) -> String {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let reference = format!("{registry}/berth-test/random-layer:{tag}");
    let builder = format!("berth-test-layer-{tag}");
    let label = format!("{TEST_LABEL}={}", t.namespace);
    docker_cli(&[
        "run",
        "--name",
        &builder,
        "--label",
        &label,
        &t.env.image,
        "sh",
        "-c",
        "head -c 3000000 /dev/urandom > /blob",
    ]);
    docker_cli(&["commit", &builder, &reference]);
    docker_cli(&["rm", &builder]);
    t.cleanup.image(reference.clone());
    docker_cli(&["push", "--quiet", &reference]);
    docker_cli(&["rmi", &reference]);
    reference
}

#[tokio::test]
async fn an_image_pull_reports_its_bytes_and_layers_in_status_while_it_runs() {
    let mut t = start(CredentialStore::empty()).await;
    let registry = t.env.registry.clone();
    let reference = fresh_registry_image(&mut t, &registry);
    let key = t.key(Kind::Image, "bytes");
    let mut watch = t
        .store
        .watch(WatchQuery { kind: Some(Kind::Image), ..WatchQuery::after(t.store.revision()) })
        .expect("watch the store");
    t.apply(Kind::Image, "bytes", json!({"reference": reference})).await;

    // Every status the controller wrote, until the image is Present.
    let seen = within(CONVERGE_SECS, "the image to be pulled", async {
        let mut seen: Vec<Value> = Vec::new();
        loop {
            let event = watch.next().await.expect("the watch");
            if event.object.key() != key {
                continue;
            }
            if let Some(pull) = event.object.status.get("pull") {
                seen.push(pull.clone());
            }
            if berth_schemas::readiness(&event.object).is_ready() {
                assert!(event.object.status.get("pull").is_none(), "cleared when done");
                return seen;
            }
        }
    })
    .await;
    eprintln!("pull progress seen in status: {seen:?}");
    let with_bytes = seen.iter().find(|p| {
        p["totalBytes"].as_u64().is_some_and(|n| n >= 1_000_000)
            && p["currentBytes"].as_u64().is_some_and(|n| n > 0)
            && p["layersTotal"].as_u64().is_some_and(|n| n >= 1)
    });
    assert!(with_bytes.is_some(), "progress with bytes was reported: {seen:?}");
    t.stop().await;
}

#[tokio::test]
async fn a_container_image_behind_auth_is_pulled_with_the_configured_credentials() {
    let env = TestEnv::load();
    let dir = tempfile::tempdir().expect("temp dir");
    let creds =
        credentials(&env.auth_registry, &env.registry_user, &env.registry_password, dir.path());
    let mut t = start(creds).await;
    let registry = t.env.auth_registry.clone();
    let reference = remote_image(&mut t, &registry).await;
    t.apply(Kind::Container, "private", sleeper(&reference)).await;
    let c = t.running("private").await;
    assert_eq!(c.image, reference);
    t.stop().await;
}

#[tokio::test]
async fn a_wrong_registry_credential_gives_a_clear_condition() {
    let env = TestEnv::load();
    let dir = tempfile::tempdir().expect("temp dir");
    let creds = credentials(&env.auth_registry, &env.registry_user, "not-the-password", dir.path());
    let mut t = start(creds).await;
    let registry = t.env.auth_registry.clone();
    let reference = remote_image(&mut t, &registry).await;
    t.apply(Kind::Image, "denied", json!({"reference": reference})).await;
    let degraded = t
        .eventually("a RegistryAuthFailed condition", || async {
            t.condition(Kind::Image, "denied", DEGRADED)
                .await
                .filter(|c| c.status == ConditionStatus::True)
        })
        .await;
    assert_eq!(degraded.reason, "RegistryAuthFailed", "{}", degraded.message);
    assert!(degraded.message.contains("next retry at"), "{}", degraded.message);
    assert!(!degraded.message.contains("not-the-password"), "the secret must not leak");
    t.stop().await;
}

/// Environment variables that turn [`controller_process_for_the_kill_test`] into a controller
/// process (the data directory of its store).
const KILL_TEST_DATA_DIR: &str = "BERTH_KILL_TEST_DATA_DIR";

/// Not a test of its own: the child process of
/// [`berth_killed_mid_reconcile_converges_without_duplicates_after_restart`], run by that test
/// as `<this test binary> --ignored --exact controller_process_for_the_kill_test`. It runs a
/// controller over the store in `BERTH_KILL_TEST_DATA_DIR` until it is killed (or, as a safety
/// net, for two minutes).
#[tokio::test]
#[ignore = "helper process for the kill -9 test; it does nothing when run on its own"]
async fn controller_process_for_the_kill_test() {
    let Ok(data_dir) = std::env::var(KILL_TEST_DATA_DIR) else { return };
    let env = TestEnv::load();
    let driver = env.driver().await;
    let store = SledStore::open(StoreConfig::new(data_dir)).expect("store opens in the child");
    let controller = Controller::new(
        Arc::new(store),
        Arc::new(driver),
        Arc::new(CredentialStore::empty()),
        ControllerConfig::default(),
    );
    let shutdown = CancellationToken::new();
    let _ = tokio::time::timeout(Duration::from_secs(120), controller.run(shutdown)).await;
}

/// Every audit event of a Docker action in `store`, oldest first.
async fn docker_audit(store: &SledStore) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(&AuditQuery { cursor, limit: 1000, ..AuditQuery::default() })
            .await
            .expect("audit query");
        out.extend(page.events.into_iter().filter(|e| e.verb.starts_with("docker.")));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// Kills the child process when dropped, so a failing test leaves no controller behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn berth_killed_mid_reconcile_converges_without_duplicates_after_restart() {
    const N: usize = 8;
    let env = TestEnv::load();
    let driver = env.driver().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let namespace = format!("bk-{}", &id[..10]);
    let cleanup = CleanupByLabel { driver: driver.clone(), value: namespace.clone() };
    let names: Vec<String> = (0..N).map(|i| format!("c{i}")).collect();

    // The desired state, written before the first controller starts.
    {
        let store = SledStore::open(StoreConfig::new(dir.path())).expect("store opens");
        for name in &names {
            let mut spec = sleeper(&env.image);
            spec["labels"] = json!({ TEST_LABEL: namespace });
            let obj = DynamicObject {
                api_version: API_VERSION.into(),
                kind: Kind::Container,
                metadata: ObjectMeta { namespace: namespace.clone(), ..ObjectMeta::named(name) },
                spec,
                status: Value::Null,
            };
            store.apply(&WriteContext::rest_user("tester"), obj).await.expect("apply");
        }
        store.close();
    }

    let filter = ContainerFilter::managed().with_label(labels::NAMESPACE, &namespace);
    let since = chrono::Utc::now().timestamp_nanos_opt().expect("a time in range");
    let mut events = driver.events(Some(since));
    let exe = std::env::current_exe().expect("the test binary's path");
    let child = std::process::Command::new(exe)
        .args(["--ignored", "--exact", "controller_process_for_the_kill_test", "--quiet"])
        .env(KILL_TEST_DATA_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the controller process");
    let mut child = KillOnDrop(child);

    // Kill it with SIGKILL as soon as the Engine reports its first container created (the
    // event stream is faster than polling the list): mid-reconcile.
    let seen = within(CONVERGE_SECS, "the child controller to create a container", async {
        while let Some(event) = events.next().await {
            let event = event.expect("the event stream");
            if event.action == "create"
                && event.attributes.get(labels::NAMESPACE) == Some(&namespace)
            {
                return event.attributes.get("name").cloned().unwrap_or_default();
            }
        }
        panic!("the event stream ended");
    })
    .await;
    child.0.kill().expect("kill -9 the controller process");
    let _ = child.0.wait();
    let at_kill = driver.list_containers(&filter).await.expect("list");
    let running_at_kill = at_kill
        .iter()
        .filter(|c| c.state == berth_controller::docker::ContainerState::Running)
        .count();
    eprintln!(
        "killed with {} of {N} containers made ({running_at_kill} running; first seen: {seen})",
        at_kill.len()
    );

    // Restart in this process over the same data directory.
    let store = SledStore::open(StoreConfig::new(dir.path())).expect("store reopens");
    let log_at_kill = docker_audit(&store).await;
    let open_at_kill: Vec<u64> = log_at_kill
        .iter()
        .filter(|e| {
            e.outcome == AuditOutcome::Pending
                && !log_at_kill.iter().any(|o| o.intent_seq == Some(e.seq))
        })
        .map(|e| e.seq)
        .collect();
    // Every container the killed run made was announced before it was made.
    for c in &at_kill {
        assert!(
            log_at_kill.iter().any(|e| e.verb == "docker.container.create"
                && e.outcome == AuditOutcome::Pending
                && e.message.as_deref().is_some_and(|m| m.contains(&c.name))),
            "no create intent for {} in {log_at_kill:#?}",
            c.name
        );
    }
    let controller = Controller::new(
        Arc::new(store.clone()),
        Arc::new(driver.clone()),
        Arc::new(CredentialStore::empty()),
        ControllerConfig::default(),
    );
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(controller.run(shutdown.clone()));
    let all = within(CONVERGE_SECS, "all containers to run after the restart", async {
        loop {
            let found = driver.list_containers(&filter).await.expect("list");
            let running = found
                .iter()
                .filter(|c| c.state == berth_controller::docker::ContainerState::Running)
                .count();
            if running == N {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // The intents the killed run left open are settled by the restarted one.
    let log = within(CONVERGE_SECS, "the open intents to be settled", async {
        loop {
            let log = docker_audit(&store).await;
            if open_at_kill.iter().all(|seq| log.iter().any(|e| e.intent_seq == Some(*seq))) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    eprintln!("{} Docker action(s) were in flight at the kill", open_at_kill.len());
    for seq in &open_at_kill {
        let outcome = log.iter().find(|e| e.intent_seq == Some(*seq));
        let outcome = outcome.unwrap_or_else(|| panic!("intent {seq} is settled: {log:#?}"));
        assert_eq!(outcome.outcome, AuditOutcome::Unknown, "{outcome:?}");
        assert!(
            outcome.message.as_deref().is_some_and(|m| m.starts_with("unknown-after-restart")),
            "{outcome:?}"
        );
    }
    shutdown.cancel();
    within(60, "the controller to shut down", handle).await.expect("controller task");
    // Every intent has exactly one outcome, and every outcome names an intent.
    let log = docker_audit(&store).await;
    for e in &log {
        match e.outcome {
            AuditOutcome::Pending => {
                let n = log.iter().filter(|o| o.intent_seq == Some(e.seq)).count();
                assert_eq!(n, 1, "intent {e:?} has {n} outcomes");
            }
            _ => assert!(
                log.iter().any(|i| Some(i.seq) == e.intent_seq),
                "outcome {e:?} names no intent"
            ),
        }
    }

    assert_eq!(all.len(), N, "no duplicate and no orphan: {all:?}");
    let mut by_name: Vec<&str> = all.iter().filter_map(|c| c.label(labels::NAME)).collect();
    by_name.sort_unstable();
    by_name.dedup();
    assert_eq!(by_name.len(), N, "one container per resource");
    for c in &all {
        let name = c.label(labels::NAME).unwrap_or_default();
        assert_eq!(c.name, labels::container_name(&namespace, name));
    }
    drop(cleanup);
}

/// `docker volume rm` through the CLI on drop (berth never removes volumes). Declare it before
/// the [`Running`] whose containers mount the volumes, so that they are gone first.
struct VolumeCleanup(Vec<String>);

impl Drop for VolumeCleanup {
    fn drop(&mut self) {
        for v in &self.0 {
            let _ = std::process::Command::new("docker").args(["volume", "rm", "-f", v]).output();
        }
    }
}

#[tokio::test]
async fn a_named_volume_that_does_not_exist_is_created_as_berths_before_the_container() {
    // Issue 11, hole 7: Docker created a missing named volume itself, without berth's labels,
    // so berth could not tell its own volumes from anyone's.
    let volume = format!("berth-test-vol-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let _volumes = VolumeCleanup(vec![volume.clone()]);
    let mut t = start(CredentialStore::empty()).await;
    let image = t.env.image.clone();
    let mut spec = sleeper(&image);
    spec["mounts"] = json!([{"type": "volume", "source": volume, "target": "/data"}]);
    t.apply(Kind::Container, "vol", spec).await;
    t.running("vol").await;
    let made = t.driver.inspect_volume(&volume).await.expect("inspect").expect("volume exists");
    assert!(
        labels::is_owned_by(&made.labels, t.store.instance_id()),
        "the volume carries berth's ownership labels: {:?}",
        made.labels
    );
    assert_eq!(made.labels.get(labels::NAME).map(String::as_str), Some("vol"));
    assert!(made.options.is_empty(), "made without driver options: {:?}", made.options);
    t.delete(Kind::Container, "vol").await;
    t.eventually("vol to be gone", || async {
        t.get(Kind::Container, "vol").await.is_none().then_some(())
    })
    .await;
    t.stop().await;
}

#[tokio::test]
async fn an_absent_image_berth_did_not_pull_stays_and_one_it_pulled_is_removed() {
    // Issue 11, hole 13: `presence: Absent` removed any unused image on the host.
    let mut t = start(CredentialStore::empty()).await;
    let local = format!("berth-test/not-pulled-{}:1", &t.namespace);
    docker_cli(&["tag", &t.env.image, &local]);
    t.cleanup.image(local.clone());
    t.apply(Kind::Image, "local", json!({"reference": local, "presence": "Absent"})).await;
    let kept = t
        .eventually("the Absent image to be reported as not pulled by berth", || async {
            t.condition(Kind::Image, "local", READY)
                .await
                .filter(|c| c.status == ConditionStatus::False && c.reason == "NotPulledByBerth")
        })
        .await;
    assert!(kept.message.contains("not pulled by berth"), "{}", kept.message);
    assert!(
        t.driver.inspect_image(&local).await.expect("inspect").is_some(),
        "an image berth did not pull is left on the host"
    );

    // A reference of this test's own: the shared `remote_image` is pulled by other tests of
    // this binary at the same time, which would bring the removed image back.
    let pulled = format!("{}/berth-test/absent-{}:1", t.env.registry, t.namespace);
    docker_cli(&["tag", &t.env.image, &pulled]);
    docker_cli(&["push", &pulled]);
    docker_cli(&["rmi", &pulled]);
    t.cleanup.image(pulled.clone());
    t.apply(Kind::Image, "pulled", json!({"reference": pulled})).await;
    t.eventually("the image to be pulled", || async { t.ready(Kind::Image, "pulled").await }).await;
    assert!(t.driver.inspect_image(&pulled).await.expect("inspect").is_some());
    t.apply(Kind::Image, "pulled", json!({"reference": pulled, "presence": "Absent"})).await;
    t.eventually("the pulled image to be removed", || async {
        t.ready(Kind::Image, "pulled").await
    })
    .await;
    assert!(
        t.driver.inspect_image(&pulled).await.expect("inspect").is_none(),
        "the image berth pulled is removed"
    );
    t.stop().await;
}
