//! A real Docker Engine restarted under a running `Controller`: berth notices, reconnects,
//! relists and converges, with no duplicate container.
//!
//! The shared test Engine is not touched: the test starts a private `dockerd` of its own (its
//! own socket, data root, exec root, pid file and bridge, no iptables rules), loads the test
//! image into it with `docker save | docker load`, and restarts that one. It needs root (to run
//! `dockerd` and make a bridge with `ip`), `dockerd`, `docker` and `ip`; without them it fails
//! with a message saying what is missing — it never skips. Everything it makes (the Engine, its
//! bridge, exec root and data root) goes when it ends, passed or not.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_controller::docker::{
    BollardDriver, ContainerFilter, ContainerState, CredentialStore, DockerConfig, Driver,
};
use berth_controller::labels;
use berth_controller::reconcile::{Controller, ControllerConfig};
use berth_controller::store::{ResourceStore, SledStore, StoreConfig, WriteContext};
use berth_schemas::{API_VERSION, DynamicObject, Kind, ObjectMeta};
use serde_json::{Value, json};
use support::{TestEnv, within};
use tokio_util::sync::CancellationToken;

/// How long convergence may take before the test fails. Generous: the machine is noisy.
const CONVERGE_SECS: u64 = 120;

/// A private Docker Engine for one test, removed with everything it made when dropped.
struct PrivateEngine {
    dir: tempfile::TempDir,
    exec_root: PathBuf,
    bridge: String,
    child: Option<std::process::Child>,
}

/// Runs `program args` (with `DOCKER_HOST` set when given), failing the test if it fails.
fn run(what: &str, program: &str, args: &[&str], docker_host: Option<&str>) {
    let mut command = std::process::Command::new(program);
    command.args(args);
    if let Some(host) = docker_host {
        command.env("DOCKER_HOST", host);
    }
    match command.stdout(Stdio::null()).stderr(Stdio::piped()).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{what} failed ({}): {} — this test needs root, dockerd, docker and ip (iproute2)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("cannot run {what}: {e} — this test needs dockerd, docker and ip"),
    }
}

impl PrivateEngine {
    /// Makes the bridge and directories; the Engine is not started yet.
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("berth-rt").tempdir().expect("temp dir");
        let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
        // Interface names are limited to 15 bytes, unix socket paths to 107: keep both short.
        let bridge = format!("berth-rt-{id}");
        let exec_root = PathBuf::from(format!("/run/berth-rt-{id}"));
        std::fs::write(dir.path().join("daemon.json"), "{}").expect("write daemon.json");
        std::fs::create_dir_all(&exec_root).expect("create the exec root (needs root)");
        let engine = Self { dir, exec_root, bridge, child: None };
        let bridge = engine.bridge.as_str();
        run(
            "ip link add (a bridge for the private Engine)",
            "ip",
            &["link", "add", bridge, "type", "bridge"],
            None,
        );
        // A /24 in 10.214.0.0/16 that nothing else here uses; a collision only matters for
        // container traffic, which this test has none of.
        let octet = rand::random::<u8>();
        let cidr = format!("10.214.{octet}.1/24");
        run("ip addr add", "ip", &["addr", "add", &cidr, "dev", bridge], None);
        run("ip link set up", "ip", &["link", "set", bridge, "up"], None);
        engine
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("dockerd.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Starts `dockerd` and waits until it answers.
    async fn start(&mut self) {
        assert!(self.child.is_none(), "the private Engine is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("open the dockerd log");
        let d = self.dir.path();
        let child = std::process::Command::new("dockerd")
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--host")
            .arg(self.host())
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(&self.exec_root)
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            // Never `--bridge none`: dockerd then deletes docker0, which the shared Engine needs.
            .args(["--bridge", &self.bridge, "--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dockerd: {e} (is docker.io installed?)"));
        self.child = Some(child);
        let config = DockerConfig::default().with_host(self.host());
        let answered = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Ok(driver) = BollardDriver::connect(&config).await {
                    return driver;
                }
                if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                    panic!("the private dockerd exited ({status}):\n{}", self.log_tail());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if answered.is_err() {
            panic!("the private dockerd did not answer within 60s:\n{}", self.log_tail());
        }
    }

    /// Stops `dockerd` with SIGTERM, as an init system would, and waits for it to exit.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        run("kill -TERM dockerd", "kill", &["-TERM", &child.id().to_string()], None);
        let exited = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Err(e) => panic!("waiting for dockerd: {e}"),
                }
            }
        })
        .await;
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the private dockerd did not stop within 60s of SIGTERM:\n{}", self.log_tail());
        }
    }

    /// Copies `image` from the shared Engine at `from_host` into this one.
    fn load_image(&self, from_host: &str, image: &str) {
        let script = r#"set -o pipefail; docker save "$1" | DOCKER_HOST="$2" docker load"#;
        run(
            "docker save | docker load (into the private Engine)",
            "bash",
            &["-c", script, "bash", image, &self.host()],
            Some(from_host),
        );
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        eprintln!("cleanup: the private dockerd did not stop; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        match std::process::Command::new("ip").args(["link", "del", &self.bridge]).status() {
            Ok(s) if s.success() => {}
            other => eprintln!("cleanup: removing bridge {}: {other:?}", self.bridge),
        }
        if let Err(e) = std::fs::remove_dir_all(&self.exec_root) {
            eprintln!("cleanup: removing {}: {e}", self.exec_root.display());
        }
    }
}

fn resource(namespace: &str, name: &str, spec: Value) -> DynamicObject {
    DynamicObject {
        api_version: API_VERSION.into(),
        kind: Kind::Container,
        metadata: ObjectMeta { namespace: namespace.to_owned(), ..ObjectMeta::named(name) },
        spec,
        status: Value::Null,
    }
}

fn store_in(dir: &Path) -> SledStore {
    SledStore::open(StoreConfig::new(dir)).expect("store opens")
}

#[tokio::test]
async fn berth_reconnects_relists_and_converges_without_duplicates_after_the_engine_restarts() {
    const N: usize = 6;
    let env = TestEnv::load();
    let mut engine = PrivateEngine::new();
    within(90, "the private Engine to start", engine.start()).await;
    engine.load_image(&env.docker_host, &env.image);
    let config = DockerConfig::default().with_host(engine.host());
    let driver = within(30, "a connection to the private Engine", BollardDriver::connect(&config))
        .await
        .expect("connect to the private Engine");

    let data = tempfile::tempdir().expect("temp dir");
    let store = store_in(data.path());
    let namespace = "restart";
    // Half the containers leave restarting to berth (`Never`), half to Docker (`Always`).
    for i in 0..N {
        let policy = if i % 2 == 0 { "Never" } else { "Always" };
        let spec = json!({
            "image": env.image,
            "command": ["sleep", "600"],
            "init": true,
            "stopGracePeriodSeconds": 2,
            "restartPolicy": {"policy": policy},
        });
        store
            .apply(&WriteContext::rest_user("tester"), resource(namespace, &format!("c{i}"), spec))
            .await
            .expect("apply");
    }

    // The default relist period (30 s): convergence after the restart must come from the
    // reconnect, not from a periodic relist.
    let controller = Controller::new(
        Arc::new(store.clone()),
        Arc::new(driver.clone()),
        Arc::new(CredentialStore::empty()),
        ControllerConfig::default(),
    );
    let mut ready = controller.readiness();
    let readiness_seen = Arc::new(Mutex::new(Vec::<bool>::new()));
    let recorder = {
        let seen = readiness_seen.clone();
        let mut ready = controller.readiness();
        tokio::spawn(async move {
            loop {
                let now = *ready.borrow_and_update();
                if let Ok(mut s) = seen.lock() {
                    s.push(now);
                }
                if ready.changed().await.is_err() {
                    return;
                }
            }
        })
    };
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(controller.run(shutdown.clone()));
    within(30, "the controller to become ready", ready.wait_for(|r| *r))
        .await
        .expect("readiness sender alive");

    // Restart the Engine mid-run: as soon as the first container exists.
    let ours = ContainerFilter::managed().with_label(labels::INSTANCE, store.instance_id());
    let made = within(CONVERGE_SECS, "the controller to create a container", async {
        loop {
            let found = driver.list_containers(&ours).await.expect("list");
            if !found.is_empty() {
                return found.len();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    within(90, "the private Engine to stop", engine.stop()).await;
    within(90, "the private Engine to start again", engine.start()).await;
    eprintln!("restarted the Engine with {made} of {N} containers made");

    let all = within(CONVERGE_SECS, "all containers to run after the Engine restart", async {
        loop {
            let found = driver.list_containers(&ContainerFilter::all()).await.unwrap_or_default();
            let running = found.iter().filter(|c| c.state == ContainerState::Running).count();
            if running == N {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    shutdown.cancel();
    within(60, "the controller to shut down", handle).await.expect("controller task");
    recorder.abort();

    // The private Engine holds nothing but berth's containers: any extra one is a duplicate.
    assert_eq!(all.len(), N, "no duplicate container: {all:?}");
    let mut names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    let want: Vec<String> =
        (0..N).map(|i| labels::container_name(namespace, &format!("c{i}"))).collect();
    assert_eq!(names, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(all.iter().all(|c| labels::is_owned_by(&c.labels, store.instance_id())));

    // Readiness went false while the Engine was away and true again after the reconnect.
    let seen = readiness_seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        seen.iter().skip_while(|r| !**r).any(|r| !*r),
        "readiness should drop during the outage and come back: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&true), "ready again at the end: {seen:?}");
}
