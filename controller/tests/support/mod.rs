//! Shared helpers for tests against the real Docker Engine and the loopback registries that
//! `scripts/test-env up` provides.
//!
//! Settings come from the environment (`BERTH_TEST_*`, `DOCKER_HOST`) or, when unset, from the
//! `.test-env/env` file `scripts/test-env up` writes. When neither has them, or no Engine
//! answers, the test **fails** with a message saying what to run: these tests never skip.
#![allow(dead_code)] // Each test file uses a different part of this module.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use berth_controller::docker::{BollardDriver, DockerConfig, Driver};

/// The label every container a test makes carries (value: the test's unique name), so that
/// leftovers of an interrupted run can be found: `docker ps -aq --filter label=dev.berth.test`.
pub const TEST_LABEL: &str = "dev.berth.test";

/// The test environment's settings.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// `DOCKER_HOST` (the default socket when unset).
    pub docker_host: String,
    /// A local image (`berth-test/busybox:1`).
    pub image: String,
    /// A second, different local image (`berth-test/busybox:2`).
    pub image_2: String,
    /// The open registry (`127.0.0.1:31500`).
    pub registry: String,
    /// The registry with htpasswd auth (`127.0.0.1:31501`).
    pub auth_registry: String,
    /// Its user.
    pub registry_user: String,
    /// Its password.
    pub registry_password: String,
    /// A second Engine reachable only over TLS (`tcp://127.0.0.1:31502`).
    pub tls_docker_host: String,
    /// The `DOCKER_CERT_PATH` for it (`ca.pem`, `cert.pem`, `key.pem`).
    pub tls_cert_path: String,
}

fn env_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(".test-env").join("env")
}

/// Reads `export KEY='value'` lines.
fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|rest| rest.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(v);
            (k.trim().to_owned(), v.to_owned())
        })
        .collect()
}

impl TestEnv {
    /// The settings, from the environment or `.test-env/env`. Panics (failing the test) with
    /// instructions when they are missing.
    pub fn load() -> Self {
        let file =
            std::fs::read_to_string(env_file()).map(|t| parse_env_file(&t)).unwrap_or_default();
        let get = |key: &str| -> Option<String> {
            std::env::var(key).ok().filter(|v| !v.is_empty()).or_else(|| file.get(key).cloned())
        };
        let require = |key: &str| -> String {
            get(key).unwrap_or_else(|| {
                panic!(
                    "{key} is not set and {} does not define it: run `scripts/test-env up` \
                     (these tests need a Docker Engine and the loopback registries; they do not \
                     skip)",
                    env_file().display()
                )
            })
        };
        Self {
            docker_host: get("DOCKER_HOST")
                .unwrap_or_else(|| berth_controller::docker::DEFAULT_DOCKER_HOST.to_owned()),
            image: get("BERTH_TEST_IMAGE").unwrap_or_else(|| "berth-test/busybox:1".to_owned()),
            image_2: get("BERTH_TEST_IMAGE_2").unwrap_or_else(|| "berth-test/busybox:2".to_owned()),
            registry: require("BERTH_TEST_REGISTRY"),
            auth_registry: require("BERTH_TEST_AUTH_REGISTRY"),
            registry_user: require("BERTH_TEST_REGISTRY_USER"),
            registry_password: require("BERTH_TEST_REGISTRY_PASSWORD"),
            tls_docker_host: require("BERTH_TEST_TLS_DOCKER_HOST"),
            tls_cert_path: require("BERTH_TEST_TLS_CERT_PATH"),
        }
    }

    /// The connection settings for the test Engine (TLS settings from the environment).
    pub fn docker_config(&self) -> DockerConfig {
        DockerConfig::from_env().with_host(self.docker_host.clone())
    }

    /// A driver connected to the test Engine; fails the test when none answers.
    pub async fn driver(&self) -> BollardDriver {
        let config = self.docker_config();
        match within(30, "the Docker Engine to answer a ping", BollardDriver::connect(&config))
            .await
        {
            Ok(d) => d,
            Err(e) => panic!(
                "no Docker Engine at {}: {e} ({:?}); run `scripts/test-env up`",
                self.docker_host,
                std::error::Error::source(&e).map(ToString::to_string)
            ),
        }
    }
}

/// A name no other test (or run) uses: `berth-test-<what>-<8 hex>`.
pub fn unique_name(what: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("berth-test-{what}-{}", &id[..8])
}

/// Awaits `fut`, failing the test with `what` if it takes longer than `secs` seconds.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s waiting for {what}"),
    }
}

/// Removes containers and image tags when dropped, whether the test passed or not. Never
/// panics: failures are printed.
#[derive(Debug)]
pub struct Cleanup {
    driver: BollardDriver,
    containers: Vec<String>,
    images: Vec<String>,
}

impl Cleanup {
    /// Nothing to clean yet.
    pub fn new(driver: &BollardDriver) -> Self {
        Self { driver: driver.clone(), containers: vec![], images: vec![] }
    }

    /// Removes this container (id or name) at the end.
    pub fn container(&mut self, id_or_name: impl Into<String>) {
        self.containers.push(id_or_name.into());
    }

    /// Removes this image tag at the end.
    pub fn image(&mut self, reference: impl Into<String>) {
        self.images.push(reference.into());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.containers.is_empty() && self.images.is_empty() {
            return;
        }
        let driver = self.driver.clone();
        let containers = std::mem::take(&mut self.containers);
        let images = std::mem::take(&mut self.images);
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
                for c in &containers {
                    match tokio::time::timeout(Duration::from_secs(30), driver.remove_container(c))
                        .await
                    {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => eprintln!("cleanup: removing container {c}: {e}"),
                        Err(_) => eprintln!("cleanup: removing container {c} timed out"),
                    }
                }
                for i in &images {
                    match tokio::time::timeout(
                        Duration::from_secs(30),
                        driver.remove_image(i, false),
                    )
                    .await
                    {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => eprintln!("cleanup: removing image {i}: {e}"),
                        Err(_) => eprintln!("cleanup: removing image {i} timed out"),
                    }
                }
            });
        });
        if worker.join().is_err() {
            eprintln!("cleanup: the cleanup thread panicked");
        }
    }
}
