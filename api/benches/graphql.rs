//! GraphQL subscription benchmarks against the test Docker Engine, in one run:
//!
//! 1. bytes per second through the `logs` subscription ÷ a raw Engine API log read of the same
//!    container (target ≥ 0.9);
//! 2. N concurrent `stats` subscribers to one container: Engine streams opened (target:
//!    constant), p99 delivery latency from the Engine's read time (target ≤ 100 ms);
//! 3. RSS per idle `resourceChanges` subscriber (target ≤ 50 KiB; server and clients share
//!    this process, so the figure is an upper bound).
//!
//! `eval "$(scripts/test-env env)"; cargo bench -p berth-api --bench graphql`
//! (`BENCH_SUBSCRIBERS`, default 1000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use berth_api::{AppState, ServeConfig};
use berth_controller::docker::{BollardDriver, ContainerCreate, DockerConfig, Driver, LogOptions};
use berth_controller::labels;
use berth_controller::store::{SledStore, StoreConfig};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr, token: &str) -> Result<Ws> {
    let mut req = format!("ws://{addr}/graphql/ws").into_client_request()?;
    req.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let init =
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}});
    ws.send(Message::Text(init.to_string().into())).await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("connection_ack") => Ok(ws),
        other => bail!("no ack: {other:?}"),
    }
}

async fn subscribe(ws: &mut Ws, id: &str, query: &str) -> Result<()> {
    let m = json!({"id": id, "type": "subscribe", "payload": {"query": query}});
    ws.send(Message::Text(m.to_string().into())).await?;
    Ok(())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn container(driver: &Arc<dyn Driver>, name: &str, script: &str) -> Result<String> {
    let spec = ContainerCreate {
        name: format!("berth-gqlbench-{name}-{}", uuid::Uuid::new_v4().simple()),
        image: std::env::var("BERTH_TEST_IMAGE").unwrap_or_else(|_| "berth-test/busybox:1".into()),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        labels: [
            (labels::MANAGED_BY, labels::MANAGED_BY_VALUE),
            (labels::KIND, "Container"),
            (labels::NAMESPACE, "default"),
            (labels::NAME, name),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        ..ContainerCreate::default()
    };
    let id = driver.create_container(&spec).await?;
    driver.start_container(&id).await?;
    Ok(id)
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and must not start a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run())
}

async fn run() -> Result<()> {
    let subscribers: usize =
        std::env::var("BENCH_SUBSCRIBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let dir = tempfile::tempdir()?;
    let mut config = ServeConfig { data_dir: dir.path().to_owned(), ..ServeConfig::default() };
    config.graphql.max_subscriptions_per_user = subscribers * 3;
    config.per_token.burst = 1_000_000;
    let store = SledStore::open(StoreConfig::new(dir.path().join("store")))?;
    berth_api::auth::bootstrap_admin(&store, Some("bench-password".into())).await?;
    let keys =
        berth_api::auth::jwt::JwtKeys::from_secret(b"bench-secret-bench-secret-bench!", "berth");
    // Access tokens name a login session (refresh family) the store must hold.
    let family = berth_controller::store::AccountStore::issue_refresh_token(
        &store,
        &berth_controller::store::WriteContext::controller(),
        "admin",
        &berth_controller::store::token_hash("bench-refresh-token"),
        chrono::Utc::now() + chrono::Duration::hours(1),
        None,
    )
    .await?
    .family_id;
    let (token, _) =
        keys.issue("admin", berth_api::Role::Admin, &family, Duration::from_secs(3600))?;
    let driver: Arc<dyn Driver> = Arc::new(
        BollardDriver::connect(&DockerConfig::from_env()).await.context("the test Engine")?,
    );
    let (_ready, ready_rx) = tokio::sync::watch::channel(true);
    let state = AppState::new(config, keys, store, berth_api::Metrics::new(), ready_rx)
        .with_driver(Arc::clone(&driver));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(berth_api::serve(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));
    let mut made = Vec::new();

    // 1. Log throughput: a container that writes a fixed log, then read it whole both ways.
    let id = container(&driver, "logs", "seq 1 400000; sleep 3600").await?;
    made.push(id.clone());
    let total_lines = 400_000usize;
    loop {
        let opts = LogOptions { tail: Some(1), stdout: true, ..LogOptions::default() };
        let last: Vec<_> = driver.logs(&id, &opts).collect().await;
        if last.iter().any(|c| c.as_ref().is_ok_and(|c| c.data.starts_with(b"400000"))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut raw_rate = 0.0f64;
    let mut gql_rate = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let opts = LogOptions { stdout: true, stderr: true, ..LogOptions::default() };
        let mut s = driver.logs(&id, &opts);
        let mut bytes = 0usize;
        while let Some(c) = s.next().await {
            bytes += c?.data.len();
        }
        raw_rate = raw_rate.max(bytes as f64 / t.elapsed().as_secs_f64());

        let mut ws = connect(addr, &token).await?;
        let t = Instant::now();
        subscribe(&mut ws, "l", "subscription { logs(name: \"logs\") { line } }").await?;
        let mut lines = 0usize;
        let mut bytes = 0usize;
        while let Some(m) = ws.next().await {
            let Message::Text(t) = m? else { continue };
            let v: Value = serde_json::from_str(&t)?;
            match v["type"].as_str() {
                Some("next") => {
                    lines += 1;
                    bytes += v["payload"]["data"]["logs"]["line"].as_str().map_or(0, str::len) + 1;
                }
                Some("complete") => break,
                _ => bail!("unexpected {v}"),
            }
        }
        if lines != total_lines {
            bail!("got {lines} lines, expected {total_lines}");
        }
        gql_rate = gql_rate.max(bytes as f64 / t.elapsed().as_secs_f64());
    }
    println!(
        "logs: raw Engine {:.1} MB/s, GraphQL subscription {:.1} MB/s (log bytes), ratio {:.2} (target >= 0.9)",
        raw_rate / 1e6,
        gql_rate / 1e6,
        gql_rate / raw_rate
    );

    // 2. N stats subscribers on one container over 10 connections.
    let id = container(&driver, "stats", "sleep 3600").await?;
    made.push(id);
    let conns = 10usize;
    let mut sockets = Vec::new();
    for c in 0..conns {
        let mut ws = connect(addr, &token).await?;
        for i in 0..subscribers / conns {
            subscribe(
                &mut ws,
                &format!("s{c}-{i}"),
                "subscription { stats(name: \"stats\") { timestamp } }",
            )
            .await?;
        }
        sockets.push(ws);
    }
    let mut latencies = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for mut ws in sockets {
        let per = subscribers / conns;
        tasks.spawn(async move {
            let mut out = Vec::new();
            while out.len() < per * 3 {
                let Some(Ok(Message::Text(t))) = ws.next().await else { break };
                let now = chrono::Utc::now();
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                if let Some(ts) = v["payload"]["data"]["stats"]["timestamp"].as_str()
                    && let Ok(ts) = chrono::DateTime::parse_from_rfc3339(ts)
                {
                    out.push(
                        (now - ts.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0),
                    );
                }
            }
            out
        });
    }
    while let Some(r) = tasks.join_next().await {
        latencies.extend(r?);
    }
    latencies.sort_unstable();
    let p = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let (_, stats_streams) = berth_api::graphql::upstreams_opened(&state);
    println!(
        "stats: {subscribers} subscribers, {} samples, Engine stats streams opened {stats_streams} (target: 1), delivery latency p50 {:.1} ms p99 {:.1} ms (target <= 100 ms)",
        latencies.len(),
        p(0.5),
        p(0.99)
    );

    // 3. RSS per idle resourceChanges subscriber.
    let before = rss_kib();
    let mut idle = Vec::new();
    for c in 0..conns {
        let mut ws = connect(addr, &token).await?;
        for i in 0..subscribers / conns {
            subscribe(
                &mut ws,
                &format!("r{c}-{i}"),
                "subscription { resourceChanges(kind: \"Container\") { revision } }",
            )
            .await?;
        }
        idle.push(ws);
    }
    // Let the server take every subscription (a query on each connection answers after them).
    for ws in &mut idle {
        subscribe(ws, "probe", "query { me }").await?;
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m
                && t.contains("\"probe\"")
            {
                break;
            }
        }
    }
    let after = rss_kib();
    println!(
        "resourceChanges: {subscribers} idle subscribers, RSS +{} KiB, {:.1} KiB per subscriber (target <= 50 KiB; server and clients in one process)",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / subscribers as f64
    );

    drop(idle);
    for id in made {
        let _ = driver.remove_container(&id).await;
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    Ok(())
}
