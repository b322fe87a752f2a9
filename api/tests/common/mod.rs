//! Test harness: a real `berth-api` server on 127.0.0.1:0 over a temp data directory, and a
//! small HTTP/1 client.
#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use berth_api::{AppState, ServeConfig};
use berth_controller::store::{SledStore, StoreConfig};
use serde_json::json;

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    pub ready: watch::Sender<bool>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    client: HyperClient<HttpConnector, Full<Bytes>>,
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body))
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn test_config(dir: &std::path::Path) -> ServeConfig {
    ServeConfig { data_dir: dir.to_owned(), ..ServeConfig::default() }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServeConfig)) -> Self {
        Self::start_full(tweak, |_| {}).await
    }

    pub async fn start_full(
        tweak: impl FnOnce(&mut ServeConfig),
        tweak_store: impl FnOnce(&mut StoreConfig),
    ) -> Self {
        Self::start_driver(tweak, tweak_store, None).await
    }

    pub async fn start_driver(
        tweak: impl FnOnce(&mut ServeConfig),
        tweak_store: impl FnOnce(&mut StoreConfig),
        driver: Option<std::sync::Arc<dyn berth_controller::docker::Driver>>,
    ) -> Self {
        Self::start_state(tweak, tweak_store, |state| match driver {
            Some(d) => state.with_driver(d),
            None => state,
        })
        .await
    }

    /// As [`TestServer::start_driver`], with `tweak_state` given the state before it is shared
    /// (for `AppState::with_*` settings such as the directory sync's status).
    pub async fn start_state(
        tweak: impl FnOnce(&mut ServeConfig),
        tweak_store: impl FnOnce(&mut StoreConfig),
        tweak_state: impl FnOnce(AppState) -> AppState,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let mut store_config = StoreConfig::new(config.data_dir.join("store"));
        tweak_store(&mut store_config);
        let (ready, ready_rx) = watch::channel(false);
        let state = tweak_state(build_state(config, store_config, ready_rx).await);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(berth_api::serve(listener, state.clone(), async move {
            let _ = stop_rx.await;
        }));
        let client = HyperClient::builder(TokioExecutor::new()).build_http();
        Self { addr, state, ready, dir, stop: Some(stop), task: Some(task), client }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Resp {
        let mut b =
            hyper::Request::builder().method(method).uri(format!("http://{}{}", self.addr, path));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some((ct, bytes)) => b.header("content-type", ct).body(Full::new(Bytes::from(bytes))),
            None => b.body(Full::new(Bytes::new())),
        }
        .expect("request");
        let resp = self.client.request(req).await.expect("HTTP request failed");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("read body").to_bytes();
        Resp { status: parts.status.as_u16(), headers: parts.headers, body }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.request(
            Method::POST,
            path,
            token,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    /// Stops the server, waits for it to drain and starts a new one on the same data directory
    /// (same store, same signing key, a new process state).
    pub async fn restart(mut self) -> Self {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        let config = self.state.config().clone();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server result");
        }
        drop(self);
        let store_config = StoreConfig::new(config.data_dir.join("store"));
        let (ready, ready_rx) = watch::channel(false);
        let keys = berth_api::auth::jwt::JwtKeys::load_or_create(
            &config.signing_key_path(),
            config.issuer.clone(),
        )
        .expect("keys");
        // The old state's last handles may still be dropping: retry the store's lock briefly.
        let mut store = None;
        for _ in 0..100 {
            match SledStore::open(store_config.clone()) {
                Ok(s) => {
                    store = Some(s);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        let store = store.expect("reopen the store");
        let boot = berth_api::auth::bootstrap_admin(&store, Some(ADMIN_PASSWORD.to_owned()))
            .await
            .expect("bootstrap");
        assert!(boot.is_none(), "a reopened store keeps its admin");
        let state = AppState::new(config, keys, store, berth_api::Metrics::new(), ready_rx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(berth_api::serve(listener, state.clone(), async move {
            let _ = stop_rx.await;
        }));
        let client = HyperClient::builder(TokioExecutor::new()).build_http();
        Self { addr, state, ready, dir, stop: Some(stop), task: Some(task), client }
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server result");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

pub async fn build_state(
    config: ServeConfig,
    store_config: StoreConfig,
    ready: watch::Receiver<bool>,
) -> AppState {
    std::fs::create_dir_all(&config.data_dir).expect("data dir");
    let keys = berth_api::auth::jwt::JwtKeys::load_or_create(
        &config.signing_key_path(),
        config.issuer.clone(),
    )
    .expect("keys");
    let store = SledStore::open(store_config).expect("open store");
    let boot = berth_api::auth::bootstrap_admin(&store, Some(ADMIN_PASSWORD.to_owned()))
        .await
        .expect("bootstrap");
    assert!(boot.is_some(), "a fresh store gets an admin");
    AppState::new(config, keys, store, berth_api::Metrics::new(), ready)
}

impl TestServer {
    pub async fn login(&self, username: &str, password: &str) -> Resp {
        self.post_json(
            "/api/v1/auth/login",
            None,
            json!({ "username": username, "password": password }),
        )
        .await
    }

    /// Logs in and returns (access, refresh).
    pub async fn tokens(&self, username: &str, password: &str) -> (String, String) {
        let r = self.login(username, password).await;
        assert_eq!(r.status, 200, "login as {username}: {}", r.text());
        let j = r.json();
        (
            j["accessToken"].as_str().unwrap().to_owned(),
            j["refreshToken"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn admin(&self) -> String {
        self.tokens("admin", ADMIN_PASSWORD).await.0
    }

    /// Creates a user with `role` (password `<name>-password`) and returns an access token.
    pub async fn user(&self, admin: &str, name: &str, role: &str) -> String {
        let pw = format!("{name}-password");
        let r = self
            .post_json(
                "/api/v1/users",
                Some(admin),
                json!({ "username": name, "password": pw, "role": role }),
            )
            .await;
        assert_eq!(r.status, 201, "create user {name}: {}", r.text());
        self.tokens(name, &pw).await.0
    }

    pub async fn apply_yaml(&self, token: &str, query: &str, yaml: &str) -> Resp {
        self.request(
            Method::POST,
            &format!("/api/v1/apply{query}"),
            Some(token),
            Some(("application/yaml", yaml.as_bytes().to_vec())),
        )
        .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.request(Method::DELETE, path, token, None).await
    }

    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Resp {
        self.request(method, path, token, Some(("application/json", body.to_string().into_bytes())))
            .await
    }
}

pub fn container_yaml(name: &str, image: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\nspec:\n  image: {image}\n"
    )
}

/// The test image (`BERTH_TEST_IMAGE`, from `scripts/test-env`).
pub fn image() -> String {
    std::env::var("BERTH_TEST_IMAGE").unwrap_or_else(|_| "berth-test/busybox:1".to_owned())
}

/// The test Docker Engine, as the docker CLI would reach it; panics (so the test fails, never
/// skips) when there is none.
pub async fn engine() -> std::sync::Arc<dyn berth_controller::docker::Driver> {
    use berth_controller::docker::{BollardDriver, DockerConfig};
    let d = BollardDriver::connect(&DockerConfig::from_env())
        .await
        .expect("the test Docker Engine must be running (scripts/test-env up)");
    std::sync::Arc::new(d)
}
