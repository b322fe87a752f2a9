//! `prepare` + `serve` as the binary uses them: first start, restart, graceful shutdown.

use berth_api::{Metrics, ServeConfig, server::prepare};
use berth_controller::store::{SledStore, StoreConfig};
use tokio::sync::watch;

#[tokio::test]
async fn first_start_generates_an_admin_password_once_and_a_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig { data_dir: dir.path().join("data"), ..ServeConfig::default() };
    let store = SledStore::open(StoreConfig::new(config.data_dir.join("store"))).unwrap();
    let (_tx, rx) = watch::channel(true);
    let p = prepare(config.clone(), store.clone(), Metrics::new(), rx.clone(), None).await.unwrap();
    let boot = p.bootstrap.expect("first start creates admin");
    assert_eq!(boot.username, "admin");
    let pw = boot.generated_password.expect("a generated password");
    assert!(pw.len() >= 16);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(config.data_dir.join("jwt.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // second start: nothing generated again
    let again = prepare(config, store, Metrics::new(), rx, None).await.unwrap();
    assert!(again.bootstrap.is_none());
}

#[tokio::test]
async fn a_too_short_admin_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig { data_dir: dir.path().to_owned(), ..ServeConfig::default() };
    let store = SledStore::open(StoreConfig::new(dir.path().join("store"))).unwrap();
    let (_tx, rx) = watch::channel(true);
    let r = prepare(config, store, Metrics::new(), rx, Some("short".into())).await;
    assert!(matches!(r, Err(berth_api::server::StartError::Bootstrap(_))));
}

#[tokio::test]
async fn serve_stops_when_shutdown_resolves_even_with_a_watch_open() {
    use http_body_util::BodyExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig { data_dir: dir.path().to_owned(), ..ServeConfig::default() };
    let store = SledStore::open(StoreConfig::new(dir.path().join("store"))).unwrap();
    let (_tx, rx) = watch::channel(true);
    let p =
        prepare(config, store, Metrics::new(), rx, Some("a-long-password".into())).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(berth_api::serve(listener, p.state, async move {
        let _ = stop_rx.await;
    }));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let login = hyper::Request::post(format!("http://{addr}/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            r#"{"username":"admin","password":"a-long-password"}"#,
        )))
        .unwrap();
    let body = client.request(login).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    let token = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let watch = hyper::Request::get(format!("http://{addr}/api/v1/containers?watch=true"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client.request(watch).await.unwrap();
    assert_eq!(resp.status(), 200);
    stop.send(()).unwrap();
    let done = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
    assert!(done.is_ok(), "serve must return after shutdown although a watch was open");
    done.unwrap().unwrap().unwrap();
    // the open watch stream ended rather than hanging
    let rest =
        tokio::time::timeout(std::time::Duration::from_secs(10), resp.into_body().collect()).await;
    assert!(rest.is_ok(), "the watch stream ends on shutdown");
}
