//! GraphQL subscription benchmarks against the test Docker Engine, in one run:
//!
//! 1. bytes per second through the `logs` subscription ÷ a raw Engine API log read of the same
//!    container (target ≥ 0.9);
//! 2. N concurrent `stats` subscribers to one container, on a server in a child process (this
//!    binary again, with `BERTH_GQLBENCH_SERVER=driver`), the clients in this process: Engine
//!    streams opened (target: constant, reported by the child when it ends), p99 delivery
//!    latency from the Engine's read time of the sample to the client's receipt (target
//!    ≤ 100 ms);
//! 3. N concurrent idle `resourceChanges` subscribers on a fresh server in a child process
//!    (`BERTH_GQLBENCH_SERVER=1`), so that its RSS is the server's alone: RSS per idle
//!    subscriber from the child's `VmRSS` before and after the N subscriptions were taken
//!    (target ≤ 50 KiB); then p99 delivery latency of a change to all N (from just before the
//!    `apply` mutation was sent, so the store write is included, to each subscriber's receipt;
//!    target ≤ 100 ms). `resourceChanges` reads the store's watch, no Engine stream.
//!
//! In the latency phases the clients only note the receipt time and keep the raw message;
//! they parse after the phase, so that their own work does not count as delivery latency.
//!
//! `eval "$(scripts/test-env env)"; cargo bench -p berth-api --bench graphql`
//! (`BENCH_SUBSCRIBERS`, default 1000). Every phase has a time limit, so a hang is reported as
//! an error naming the phase rather than a benchmark that never ends.

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

/// Resident set size of process `pid`, in KiB (from `/proc/PID/status`).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A running container of `Container default/<name>` as the controller of store `instance`
/// labels what it makes (logs and stats find only that instance's containers).
async fn container(
    driver: &Arc<dyn Driver>,
    instance: &str,
    name: &str,
    script: &str,
) -> Result<String> {
    let spec = ContainerCreate {
        name: format!("berth-gqlbench-{name}-{}", uuid::Uuid::new_v4().simple()),
        image: std::env::var("BERTH_TEST_IMAGE").unwrap_or_else(|_| "berth-test/busybox:1".into()),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        labels: [
            (labels::MANAGED_BY, labels::MANAGED_BY_VALUE),
            (labels::INSTANCE, instance),
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
    if let Ok(v) = std::env::var(SERVER_ENV) {
        return rt.block_on(child_server(v == "driver"));
    }
    rt.block_on(run())
}

/// Set in the environment of the child process that serves phase 3.
const SERVER_ENV: &str = "BERTH_GQLBENCH_SERVER";

/// A server over a fresh store, for the subscription budget of `subscriptions`.
async fn start_server(
    subscriptions: usize,
    driver: Option<Arc<dyn Driver>>,
) -> Result<(AppState, std::net::SocketAddr, String, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let mut config = ServeConfig { data_dir: dir.path().to_owned(), ..ServeConfig::default() };
    config.graphql.max_subscriptions_per_user = subscriptions;
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
    let (_ready, ready_rx) = tokio::sync::watch::channel(true);
    let mut state = AppState::new(config, keys, store, berth_api::Metrics::new(), ready_rx);
    if let Some(d) = driver {
        state = state.with_driver(d);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(berth_api::serve(listener, state.clone(), std::future::pending()));
    Ok((state, addr, token, dir))
}

/// The child: serves (with the test Engine if `with_driver`) until its stdin closes; prints
/// `ADDR TOKEN` when listening and `STREAMS LOGS STATS` (Engine streams opened) at the end.
async fn child_server(with_driver: bool) -> Result<()> {
    use tokio::io::AsyncReadExt as _;
    let driver: Option<Arc<dyn Driver>> = if with_driver {
        Some(Arc::new(
            BollardDriver::connect(&DockerConfig::from_env()).await.context("the test Engine")?,
        ))
    } else {
        None
    };
    let (state, addr, token, _dir) = start_server(1_000_000, driver).await?;
    println!("{addr} {token} {}", state.resources().instance_id());
    let mut sink = Vec::new();
    tokio::io::stdin().read_to_end(&mut sink).await?;
    let (logs, stats) = berth_api::graphql::upstreams_opened(&state);
    println!("STREAMS {logs} {stats}");
    Ok(())
}

/// A server in a child process (this binary again).
struct Child {
    process: tokio::process::Child,
    out: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    pid: u32,
    addr: std::net::SocketAddr,
    token: String,
    /// Its store's instance id.
    instance: String,
}

impl Child {
    async fn spawn(with_driver: bool) -> Result<Self> {
        use tokio::io::AsyncBufReadExt as _;
        let mut process = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--bench")
            .env(SERVER_ENV, if with_driver { "driver" } else { "1" })
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = process.id().context("the child's pid")?;
        let out = process.stdout.take().context("the child's stdout")?;
        let mut out = tokio::io::BufReader::new(out).lines();
        let line = out.next_line().await?.context("ADDR TOKEN INSTANCE from the child")?;
        let mut f = line.split_whitespace();
        let (Some(addr), Some(token), Some(instance)) = (f.next(), f.next(), f.next()) else {
            bail!("bad ADDR TOKEN INSTANCE line {line:?}");
        };
        let (addr, token, instance) = (addr.parse()?, token.to_owned(), instance.to_owned());
        Ok(Self { addr, token, instance, process, out, pid })
    }

    /// Ends the child; answers the Engine streams it opened (logs, stats).
    async fn finish(mut self) -> Result<(u64, u64)> {
        drop(self.process.stdin.take());
        let line = tokio::time::timeout(Duration::from_secs(10), self.out.next_line())
            .await
            .context("the child did not end")??
            .context("no STREAMS line from the child")?;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.process.wait()).await;
        let mut f = line.split_whitespace().skip(1).map(str::parse::<u64>);
        match (f.next(), f.next()) {
            (Some(Ok(l)), Some(Ok(s))) => Ok((l, s)),
            _ => bail!("bad STREAMS line {line:?}"),
        }
    }
}

/// Runs `f`, or fails naming `phase` after `limit`.
async fn phase<T>(
    name: &str,
    limit: Duration,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .with_context(|| format!("{name}: no end after {limit:?}"))?
}

async fn run() -> Result<()> {
    let subscribers: usize =
        std::env::var("BENCH_SUBSCRIBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let driver: Arc<dyn Driver> = Arc::new(
        BollardDriver::connect(&DockerConfig::from_env()).await.context("the test Engine")?,
    );
    let (state, addr, token, _dir) =
        start_server(subscribers * 3, Some(Arc::clone(&driver))).await?;
    // The server of phase 2, in a child process: its stats container carries its instance id.
    let stats_server = Child::spawn(true).await?;
    // Both containers first, so that they are removed whatever happens to the phases.
    let instance = state.resources().instance_id();
    let logs_id = container(&driver, instance, "logs", "seq 1 400000; sleep 1800").await?;
    let made = vec![logs_id.clone()];
    let made = match container(&driver, &stats_server.instance, "stats", "sleep 1800").await {
        Ok(id) => [made, vec![id]].concat(),
        Err(e) => {
            let _ = driver.remove_container(&logs_id).await;
            return Err(e);
        }
    };
    let result = phases(&driver, addr, &token, subscribers, &logs_id, stats_server).await;
    for id in made {
        let _ = driver.remove_container(&id).await;
    }
    result
}

async fn phases(
    driver: &Arc<dyn Driver>,
    addr: std::net::SocketAddr,
    token: &str,
    subscribers: usize,
    logs_id: &str,
    server: Child,
) -> Result<()> {
    // 1. Log throughput: a container that writes a fixed log; then a raw Engine API follow
    // from the start and a GraphQL `logs(follow: true)` subscription each read it until its
    // last line (the follow stays open; the reader stops at the known line count).
    let id = logs_id;
    let total_lines = 400_000usize;
    loop {
        let opts = LogOptions { tail: Some(1), stdout: true, ..LogOptions::default() };
        let last: Vec<_> = driver.logs(id, &opts).collect().await;
        if last.iter().any(|c| c.as_ref().is_ok_and(|c| c.data.starts_with(b"400000"))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut raw_rate = 0.0f64;
    let mut gql_rate = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let opts = LogOptions { follow: true, stdout: true, stderr: true, ..LogOptions::default() };
        let mut s = driver.logs(id, &opts);
        let (mut bytes, mut lines) = (0usize, 0usize);
        phase("raw logs", Duration::from_secs(300), async {
            while lines < total_lines {
                let c = s.next().await.context("the Engine ended a follow")??;
                bytes += c.data.len();
                lines += c.data.iter().filter(|b| **b == b'\n').count();
            }
            Ok(())
        })
        .await?;
        drop(s);
        raw_rate = raw_rate.max(bytes as f64 / t.elapsed().as_secs_f64());

        let mut ws = connect(addr, token).await?;
        let t = Instant::now();
        let q = "subscription { logs(name: \"logs\", follow: true) { line dropped } }";
        subscribe(&mut ws, "l", q).await?;
        let (lines, bytes, last) = phase("GraphQL logs", Duration::from_secs(300), async {
            let (mut lines, mut bytes, mut last) = (0usize, 0usize, String::new());
            while lines < total_lines {
                let m = ws.next().await.context("the server closed the socket")?;
                let Message::Text(t) = m? else { continue };
                let v: Value = serde_json::from_str(&t)?;
                match v["type"].as_str() {
                    Some("next") => {
                        let l = &v["payload"]["data"]["logs"];
                        lines += 1 + usize::try_from(l["dropped"].as_u64().unwrap_or(0))?;
                        last = l["line"].as_str().unwrap_or_default().to_owned();
                        bytes += last.len() + 1;
                    }
                    _ => bail!("unexpected {v}"),
                }
            }
            Ok((lines, bytes, last))
        })
        .await?;
        if lines != total_lines || last != total_lines.to_string() {
            bail!("got {lines} lines ending with {last:?}, expected {total_lines}");
        }
        gql_rate = gql_rate.max(bytes as f64 / t.elapsed().as_secs_f64());
    }
    println!(
        "logs: raw Engine follow {:.1} MB/s, GraphQL logs(follow) subscription {:.1} MB/s (log bytes), ratio {:.2} (target >= 0.9)",
        raw_rate / 1e6,
        gql_rate / 1e6,
        gql_rate / raw_rate
    );

    // 2. N stats subscribers on one container over 10 connections, to a server in a child.
    let conns = 10usize;
    let mut sockets = Vec::new();
    for c in 0..conns {
        let mut ws = connect(server.addr, &server.token).await?;
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
            let mut raw = Vec::with_capacity(per * 3);
            while raw.len() < per * 3 {
                let Some(Ok(Message::Text(t))) = ws.next().await else { break };
                if t.contains("\"next\"") {
                    raw.push((chrono::Utc::now(), t));
                }
            }
            let mut out = Vec::new();
            for (now, t) in raw {
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
    phase("stats", Duration::from_secs(300), async {
        while let Some(r) = tasks.join_next().await {
            latencies.extend(r?);
        }
        Ok(())
    })
    .await?;
    latencies.sort_unstable();
    let p = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let (_, stats_streams) = server.finish().await?;
    println!(
        "stats: {subscribers} subscribers, {} samples, Engine stats streams opened {stats_streams} (target: 1), delivery latency p50 {:.1} ms p99 {:.1} ms (target <= 100 ms)",
        latencies.len(),
        p(0.5),
        p(0.99)
    );

    // 3. N idle resourceChanges subscribers on a server in a child process.
    let (idle_kib, rc_latencies) =
        phase("resourceChanges", Duration::from_secs(600), resource_changes(subscribers, conns))
            .await?;
    let mut rc = rc_latencies;
    rc.sort_unstable();
    let q = |v: &[i64], q: f64| {
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(0)
            as f64
            / 1000.0
    };
    println!(
        "resourceChanges: {subscribers} idle subscribers, server RSS +{idle_kib} KiB, {:.1} KiB per subscriber (target <= 50 KiB; server in its own process)",
        idle_kib as f64 / subscribers as f64
    );
    println!(
        "resourceChanges: {} deliveries of {WRITES} applies to {subscribers} subscribers, latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms (target <= 100 ms; Engine streams: none, the store's watch)",
        rc.len(),
        q(&rc, 0.5),
        q(&rc, 0.99),
        q(&rc, 1.0)
    );

    Ok(())
}

/// Applies made while phase 3's subscribers listen.
const WRITES: usize = 5;

/// Phase 3: opens `subscribers` idle `resourceChanges` subscriptions over `conns` connections
/// to a server in a child process; answers the child's RSS growth (KiB) and the delivery
/// latencies (µs) of [`WRITES`] applies to every subscriber.
async fn resource_changes(subscribers: usize, conns: usize) -> Result<(u64, Vec<i64>)> {
    let child = Child::spawn(false).await?;
    let (pid, addr, token) = (child.pid, child.addr, child.token.clone());
    // One connection and one query first, so that the baseline includes a warm server.
    let mut control = connect(addr, &token).await?;
    subscribe(&mut control, "warm", "query { me { username } }").await?;
    while let Some(m) = control.next().await {
        if let Message::Text(t) = m?
            && t.contains("\"complete\"")
        {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    let mut idle = Vec::new();
    for c in 0..conns {
        let mut ws = connect(addr, &token).await?;
        for i in 0..subscribers / conns {
            subscribe(
                &mut ws,
                &format!("r{c}-{i}"),
                "subscription { resourceChanges(kind: \"Container\") { revision object { name } } }",
            )
            .await?;
        }
        idle.push(ws);
    }
    // Every subscription has been taken once a query sent after them is answered.
    for ws in &mut idle {
        subscribe(ws, "probe", "query { me { username } }").await?;
        while let Some(m) = ws.next().await {
            if let Message::Text(t) = m?
                && t.contains("\"probe\"")
                && t.contains("\"complete\"")
            {
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = rss_kib(pid).saturating_sub(before);

    // Delivery latency: each subscriber notes when each change arrives.
    let per = subscribers / conns;
    let mut tasks = tokio::task::JoinSet::new();
    for mut ws in idle {
        tasks.spawn(async move {
            let mut raw = Vec::with_capacity(per * WRITES);
            while raw.len() < per * WRITES {
                let Some(Ok(Message::Text(t))) = ws.next().await else { break };
                if t.contains("\"next\"") {
                    raw.push((chrono::Utc::now(), t));
                }
            }
            let mut got = Vec::new();
            for (at, t) in raw {
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                if let Some(name) =
                    v["payload"]["data"]["resourceChanges"]["object"]["name"].as_str()
                {
                    got.push((name.to_owned(), at));
                }
            }
            got
        });
    }
    let mut sent = std::collections::HashMap::new();
    for k in 0..WRITES {
        let name = format!("w{k}");
        let manifest = format!(
            "apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: berth-test/busybox:1\n"
        );
        let m = json!({"id": format!("a{k}"), "type": "subscribe", "payload": {
            "query": "mutation($m: String!) { apply(manifest: $m) }", "variables": {"m": manifest}}});
        sent.insert(name, chrono::Utc::now());
        control.send(Message::Text(m.to_string().into())).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut latencies = Vec::new();
    while let Some(r) = tasks.join_next().await {
        for (name, at) in r? {
            if let Some(t0) = sent.get(&name) {
                latencies.push((at - *t0).num_microseconds().unwrap_or(0));
            }
        }
    }
    if latencies.len() != subscribers / conns * conns * WRITES {
        bail!("{} deliveries, expected {}", latencies.len(), subscribers / conns * conns * WRITES);
    }
    child.finish().await?;
    Ok((grown, latencies))
}
