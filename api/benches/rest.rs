//! REST API benchmarks, in one run:
//!
//! 1. single-resource apply latency (p50, p99) over real HTTP to a real server (the API server
//!    on 127.0.0.1:0 in this process, with the real sled store in a temp dir, every write
//!    durable), at 1 and 16 concurrent clients, next to the store's own durable write
//!    (`ResourceStore::apply` on another store in the same run) at 1 and 16 concurrent writers
//!    (targets: p99 ≤ 15 ms at 16 clients, and ≤ 3× the store's write);
//! 2. get p99, and list of 1,000 resources p99 (target ≤ 30 ms);
//! 3. idle RSS of the real `berth serve` binary (`/proc/PID/status` `VmRSS`), fresh (target
//!    ≤ 30 MiB) and with 1,000 resources applied and reconciled (target ≤ 80 MiB);
//! 4. end-to-end cold start of 50 containers through `POST /api/v1/apply` on the real binary
//!    (to the Engine's `start` event of the 50th container) vs `docker-compose up -d` of the
//!    same services (wall time), interleaved trials.
//!
//! ```sh
//! source .test-env/env                 # the test Docker Engine and image
//! cargo build --release --bin berth    # the binary parts 3 and 4 run (or set BERTH_BIN)
//! cargo bench -p berth-api --bench rest
//! ```
//!
//! Tunable with `BENCH_SAMPLES` (apply samples per series, default 800), `BENCH_COLD_N` (50),
//! `BENCH_COLD_TRIALS` (3). Every container it makes carries the label `berth-bench.run` and
//! is removed at the end.

use std::collections::HashSet;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use berth_api::{AppState, ServeConfig};
use berth_controller::docker::{BollardDriver, ContainerFilter, DockerConfig, Driver, EventKind};
use berth_controller::labels;
use berth_controller::store::{
    AccountStore, ResourceStore, SledStore, StoreConfig, WriteContext, token_hash,
};
use berth_schemas::{DynamicObject, ParseLimits, parse_and_validate};
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const RUN_LABEL: &str = "berth-bench.run";
const PASSWORD: &str = "bench-password-bench";

type Http = Client<HttpConnector, Full<Bytes>>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn image() -> String {
    std::env::var("BERTH_TEST_IMAGE").unwrap_or_else(|_| "berth-test/busybox:1".to_owned())
}

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request; the status and the body.
async fn call(
    client: &Http,
    method: hyper::Method,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Result<(u16, Bytes)> {
    let mut b = hyper::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some((ct, bytes)) => b.header("content-type", ct).body(Full::new(Bytes::from(bytes)))?,
        None => b.body(Full::new(Bytes::new()))?,
    };
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[derive(Debug, Clone, Copy)]
struct Lat {
    p50: Duration,
    p99: Duration,
    n: usize,
}

fn lat(mut v: Vec<Duration>) -> Lat {
    v.sort();
    Lat { p50: pct(&v, 50.0), p99: pct(&v, 99.0), n: v.len() }
}

fn container_doc(namespace: &str, name: &str, version: usize) -> String {
    format!(
        "apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: {name}\n  namespace: \
         {namespace}\n  labels:\n    app: bench\nspec:\n  image: {}\n  command: [\"sleep\", \
         \"3600\"]\n  env:\n  - name: BENCH_VERSION\n    value: \"{version}\"\n",
        image()
    )
}

fn parse_one(yaml: &str) -> Result<DynamicObject> {
    let docs = parse_and_validate(yaml.as_bytes(), &ParseLimits::default())
        .map_err(|e| anyhow::anyhow!("bad benchmark manifest: {e:?}"))?;
    Ok(docs[0].to_dynamic())
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
    let samples = env_usize("BENCH_SAMPLES", 800);
    let cold_n = env_usize("BENCH_COLD_N", 50);
    let cold_trials = env_usize("BENCH_COLD_TRIALS", 3);
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let loadavg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("berth REST benchmark (run {run_id}); load average at start: {}", loadavg().trim());

    // ---- 1 and 2: in-process server over real HTTP, and the store alone ------------------
    let store_lat = store_writes(samples).await?;
    let api = api_latencies(samples).await?;
    println!();
    println!("#### Apply latency (single resource, every write durable)\n");
    println!(
        "| clients / writers | REST apply p50 | REST apply p99 | store write p50 | store write \
         p99 | REST p99 ÷ store p99 | samples |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (c, r, s) in [(1, api.apply_1, store_lat.0), (16, api.apply_16, store_lat.1)] {
        println!(
            "| {c} | {} | {} | {} | {} | {:.2}× | {} |",
            ms(r.p50),
            ms(r.p99),
            ms(s.p50),
            ms(s.p99),
            r.p99.as_secs_f64() / s.p99.as_secs_f64().max(1e-9),
            r.n
        );
    }
    println!();
    println!("#### Reads\n");
    println!("| request | p50 | p99 | samples |");
    println!("|---|---|---|---|");
    println!("| get one resource | {} | {} | {} |", ms(api.get.p50), ms(api.get.p99), api.get.n);
    println!(
        "| list of {} resources ({} KiB of JSON) | {} | {} | {} |",
        api.list_items,
        api.list_bytes / 1024,
        ms(api.list.p50),
        ms(api.list.p99),
        api.list.n
    );

    // ---- 3 and 4: the real binary ------------------------------------------------------------
    let bin = berth_binary()?;
    let driver: Arc<dyn Driver> = Arc::new(
        BollardDriver::connect(&DockerConfig::from_env())
            .await
            .context("the test Docker Engine (source .test-env/env)")?,
    );
    let rss = rss_figures(&bin, &run_id).await?;
    println!();
    println!("#### `berth serve` resident memory (VmRSS; VmHWM in brackets)\n");
    println!("| state | RSS |");
    println!("|---|---|");
    for (what, (rss, hwm)) in &rss {
        println!("| {what} | {:.1} MiB ({:.1} MiB) |", *rss as f64 / 1024.0, *hwm as f64 / 1024.0);
    }
    println!();

    let cold = cold_start(&bin, &driver, &run_id, cold_n, cold_trials).await;
    // Cleanup whatever happened: every container of this run.
    let left =
        driver.list_containers(&ContainerFilter::all().with_label(RUN_LABEL, &run_id)).await?;
    for c in &left {
        let _ = driver.remove_container(&c.id).await;
    }
    let cold = cold?;
    println!();
    println!("#### Cold start of {cold_n} containers\n");
    println!(
        "| trial | berth (`POST /api/v1/apply` → {cold_n}th `start` event) | `docker-compose up -d` \
         | berth ÷ compose |"
    );
    println!("|---|---|---|---|");
    for (i, (b, c)) in cold.iter().enumerate() {
        println!(
            "| {} | {:.3} s | {:.3} s | {:.2}× |",
            i + 1,
            b.as_secs_f64(),
            c.as_secs_f64(),
            b.as_secs_f64() / c.as_secs_f64()
        );
    }
    let mut bs: Vec<Duration> = cold.iter().map(|(b, _)| *b).collect();
    let mut cs: Vec<Duration> = cold.iter().map(|(_, c)| *c).collect();
    bs.sort();
    cs.sort();
    let (bm, cm) = (pct(&bs, 50.0), pct(&cs, 50.0));
    println!(
        "| median | {:.3} s | {:.3} s | {:.2}× |",
        bm.as_secs_f64(),
        cm.as_secs_f64(),
        bm.as_secs_f64() / cm.as_secs_f64()
    );
    println!("\nload average at end: {}", loadavg().trim());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. The store's own durable write

/// `ResourceStore::apply` of a changed single resource, durable, at 1 and 16 writers.
async fn store_writes(samples: usize) -> Result<(Lat, Lat)> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(StoreConfig::new(dir.path().join("store")))?;
    let ctx = WriteContext::controller();
    let mut out = Vec::new();
    for writers in [1usize, 16] {
        let per = (samples / writers).max(1);
        let warm = 20usize;
        let mut tasks = Vec::new();
        for w in 0..writers {
            // Objects are parsed before timing: the store's part is the write alone.
            let objs: Vec<DynamicObject> = (0..per + warm)
                .map(|k| parse_one(&container_doc("store", &format!("w{writers}-{w}"), k)))
                .collect::<Result<_>>()?;
            let store = store.clone();
            let ctx = ctx.clone();
            tasks.push(tokio::spawn(async move {
                let mut v = Vec::with_capacity(per);
                for (k, o) in objs.into_iter().enumerate() {
                    let t = Instant::now();
                    store.apply(&ctx, o).await?;
                    if k >= warm {
                        v.push(t.elapsed());
                    }
                }
                anyhow::Ok(v)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        out.push(lat(all));
    }
    Ok((out[0], out[1]))
}

// ---------------------------------------------------------------------------------------------
// 1 and 2. The REST API over real HTTP

struct ApiLat {
    apply_1: Lat,
    apply_16: Lat,
    get: Lat,
    list: Lat,
    list_items: usize,
    list_bytes: usize,
}

async fn api_latencies(samples: usize) -> Result<ApiLat> {
    let dir = tempfile::tempdir()?;
    let mut config = ServeConfig { data_dir: dir.path().to_owned(), ..ServeConfig::default() };
    // The per-token rate limit would throttle the benchmark's own client.
    config.per_token.burst = 10_000_000;
    let store = SledStore::open(StoreConfig::new(dir.path().join("store")))?;
    berth_api::auth::bootstrap_admin(&store, Some(PASSWORD.into())).await?;
    let keys =
        berth_api::auth::jwt::JwtKeys::from_secret(b"bench-secret-bench-secret-bench!", "berth");
    // Access tokens name a login session (refresh family) the store must hold.
    let family = store
        .issue_refresh_token(
            &WriteContext::controller(),
            "admin",
            &token_hash("bench-refresh-token"),
            chrono::Utc::now() + chrono::Duration::hours(1),
            None,
        )
        .await?
        .family_id;
    let (token, _) =
        keys.issue("admin", berth_api::Role::Admin, &family, Duration::from_secs(3600))?;
    let (_ready, ready_rx) = tokio::sync::watch::channel(true);
    let state = AppState::new(config, keys, store, berth_api::Metrics::new(), ready_rx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(berth_api::serve(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));
    let base = format!("http://{addr}");

    let mut apply = Vec::new();
    for clients in [1usize, 16] {
        let per = (samples / clients).max(1);
        let warm = 20usize;
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (base, token) = (base.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let client = http();
                let url = format!("{base}/api/v1/apply");
                let mut v = Vec::with_capacity(per);
                for k in 0..per + warm {
                    let body = container_doc("api", &format!("c{clients}-{c}"), k).into_bytes();
                    let t = Instant::now();
                    let (status, resp) = call(
                        &client,
                        hyper::Method::POST,
                        &url,
                        Some(&token),
                        Some(("application/yaml", body)),
                    )
                    .await?;
                    let took = t.elapsed();
                    if status != 200 {
                        bail!("apply answered {status}: {}", String::from_utf8_lossy(&resp));
                    }
                    if k >= warm {
                        v.push(took);
                    }
                }
                anyhow::Ok(v)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        apply.push(lat(all));
    }

    let client = http();
    let mut gets = Vec::new();
    let url = format!("{base}/api/v1/containers/api/c1-0");
    for k in 0..samples + 20 {
        let t = Instant::now();
        let (status, _) = call(&client, hyper::Method::GET, &url, Some(&token), None).await?;
        let took = t.elapsed();
        if status != 200 {
            bail!("get answered {status}");
        }
        if k >= 20 {
            gets.push(took);
        }
    }

    // 1,000 resources in one namespace (one multi-document apply), then list them.
    let many: String = (0..1000)
        .map(|i| format!("---\n{}", container_doc("many", &format!("r{i:04}"), 0)))
        .collect();
    let (status, resp) = call(
        &client,
        hyper::Method::POST,
        &format!("{base}/api/v1/apply"),
        Some(&token),
        Some(("application/yaml", many.into_bytes())),
    )
    .await?;
    if status != 200 {
        bail!("apply of 1,000 answered {status}: {}", String::from_utf8_lossy(&resp));
    }
    let url = format!("{base}/api/v1/containers?namespace=many");
    let mut lists = Vec::new();
    let (mut items, mut bytes) = (0, 0);
    for k in 0..220 {
        let t = Instant::now();
        let (status, body) = call(&client, hyper::Method::GET, &url, Some(&token), None).await?;
        let took = t.elapsed();
        if status != 200 {
            bail!("list answered {status}");
        }
        if k == 0 {
            let v: Value = serde_json::from_slice(&body)?;
            items = v["items"].as_array().map_or(0, Vec::len);
            bytes = body.len();
        }
        if k >= 20 {
            lists.push(took);
        }
    }
    let _ = stop.send(());
    server.await??;
    Ok(ApiLat {
        apply_1: apply[0],
        apply_16: apply[1],
        get: lat(gets),
        list: lat(lists),
        list_items: items,
        list_bytes: bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// 3 and 4. The real `berth serve`

fn berth_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("release/berth");
    if !bin.is_file() {
        bail!(
            "{} is missing: run `cargo build --release --bin berth` first (or set BERTH_BIN)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A running `berth serve`; killed on drop.
struct Serve {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Serve {
    async fn start(bin: &PathBuf) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("BERTH_ADMIN_PASSWORD", PASSWORD)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        std::thread::spawn(move || {
            // Read every line (so the pipe never fills); report the address once.
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("berth: serving http://")
                    && let Ok(a) = a.trim().parse()
                {
                    let _ = tx.send(a);
                }
            }
        });
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
            .await?
            .context("berth serve did not report its address")?;
        let s = Self { child, addr, _dir: dir };
        let client = http();
        for _ in 0..600 {
            if let Ok((200, _)) =
                call(&client, hyper::Method::GET, &s.url("/readyz"), None, None).await
            {
                return Ok(s);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("berth serve did not become ready");
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// (VmRSS, VmHWM) in KiB.
    fn rss(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }

    async fn login(&self) -> Result<String> {
        let body = json!({ "username": "admin", "password": PASSWORD }).to_string().into_bytes();
        let (status, resp) = call(
            &http(),
            hyper::Method::POST,
            &self.url("/api/v1/auth/login"),
            None,
            Some(("application/json", body)),
        )
        .await?;
        if status != 200 {
            bail!("login answered {status}");
        }
        let v: Value = serde_json::from_slice(&resp)?;
        Ok(v["accessToken"].as_str().context("accessToken")?.to_owned())
    }

    /// Stops it with SIGTERM (graceful), SIGKILL after 20 s.
    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..200 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Idle RSS of a fresh `berth serve`, then with 1,000 resources applied and reconciled: `Image`
/// resources with `presence: Absent` naming images that do not exist (each reconcile asks the
/// Engine and writes a status, and nothing is pulled or created on the shared Engine).
async fn rss_figures(bin: &PathBuf, run_id: &str) -> Result<Vec<(String, (u64, u64))>> {
    let s = Serve::start(bin).await?;
    let mut out = Vec::new();
    tokio::time::sleep(Duration::from_secs(5)).await;
    out.push(("fresh, idle (5 s after ready, no request served)".to_owned(), s.rss()?));
    let token = s.login().await?;
    let client = http();
    let many: String = (0..1000)
        .map(|i| {
            format!(
                "---\napiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: i{i:04}\nspec:\n  \
                 reference: berth-bench-absent/{run_id}-{i:04}:1\n  presence: Absent\n"
            )
        })
        .collect();
    let (status, resp) = call(
        &client,
        hyper::Method::POST,
        &s.url("/api/v1/apply"),
        Some(&token),
        Some(("application/yaml", many.into_bytes())),
    )
    .await?;
    if status != 200 {
        bail!("apply of 1,000 images answered {status}: {}", String::from_utf8_lossy(&resp));
    }
    // Until every one has been reconciled (has a status for its generation).
    let mut settled = false;
    for _ in 0..600 {
        let (status, body) =
            call(&client, hyper::Method::GET, &s.url("/api/v1/images"), Some(&token), None).await?;
        if status == 200 {
            let v: Value = serde_json::from_slice(&body)?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            if items.len() == 1000
                && items
                    .iter()
                    .all(|o| o["status"]["observedGeneration"] == o["metadata"]["generation"])
            {
                settled = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !settled {
        bail!("the 1,000 images were not reconciled within 5 minutes");
    }
    out.push(("1,000 resources, just reconciled".to_owned(), s.rss()?));
    tokio::time::sleep(Duration::from_secs(10)).await;
    out.push(("1,000 resources, idle 10 s later".to_owned(), s.rss()?));
    s.stop();
    Ok(out)
}

fn compose_file(n: usize, run_id: &str, trial: &str) -> String {
    let mut out = String::from("version: \"2.4\"\nservices:\n");
    for i in 0..n {
        out.push_str(&format!(
            "  s{i:03}:\n    image: {}\n    command: [\"sleep\", \"3600\"]\n    init: true\n    \
             stop_grace_period: 2s\n    network_mode: bridge\n    labels:\n      {RUN_LABEL}: \
             \"{run_id}\"\n      berth-bench.trial: \"{trial}\"\n",
            image()
        ));
    }
    out
}

fn berth_cold_docs(n: usize, run_id: &str, trial: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                "---\napiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: s{i:03}\n  \
                 namespace: {trial}\nspec:\n  image: {}\n  command: [\"sleep\", \"3600\"]\n  \
                 init: true\n  stopGracePeriodSeconds: 2\n  labels:\n    {RUN_LABEL}: \
                 \"{run_id}\"\n",
                image()
            )
        })
        .collect()
}

/// Waits until `driver` lists no container with `label=value`.
async fn until_gone(driver: &Arc<dyn Driver>, label: &str, value: &str) -> Result<()> {
    for _ in 0..600 {
        let left = driver.list_containers(&ContainerFilter::all().with_label(label, value)).await?;
        if left.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("containers with {label}={value} are still there after 2 minutes");
}

/// Interleaved trials: berth (a fresh namespace each time, on one running `berth serve`) and
/// docker-compose (a fresh project each time). Returns (berth, compose) per trial.
async fn cold_start(
    bin: &PathBuf,
    driver: &Arc<dyn Driver>,
    run_id: &str,
    n: usize,
    trials: usize,
) -> Result<Vec<(Duration, Duration)>> {
    let s = Serve::start(bin).await?;
    let token = s.login().await?;
    let client = http();
    let (_, info) =
        call(&client, hyper::Method::GET, &s.url("/api/v1/system/info"), Some(&token), None)
            .await?;
    let info: Value = serde_json::from_slice(&info)?;
    let instance = info["berth"]["instanceId"].as_str().context("instanceId")?.to_owned();
    let dir = tempfile::tempdir()?;
    let mut out = Vec::new();
    for t in 0..trials {
        // berth
        let trial = format!("cold{t}");
        let since = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() - 1_000_000;
        let mut events = driver.events(Some(since));
        // The subscription is made on first poll: make it before the apply.
        let docs = berth_cold_docs(n, run_id, &trial).into_bytes();
        let apply_url = s.url("/api/v1/apply");
        let started = Instant::now();
        let apply = call(
            &client,
            hyper::Method::POST,
            &apply_url,
            Some(&token),
            Some(("application/yaml", docs)),
        );
        let (instance2, trial2) = (instance.clone(), trial.clone());
        let waiter = tokio::spawn(async move {
            let mut seen: HashSet<String> = HashSet::new();
            while let Some(e) = events.next().await {
                let e = e?;
                if e.kind == EventKind::Container
                    && e.base_action() == "start"
                    && e.attributes.get(labels::INSTANCE) == Some(&instance2)
                    && e.attributes.get(labels::NAMESPACE) == Some(&trial2)
                {
                    seen.insert(e.id.clone());
                    if seen.len() == n {
                        return anyhow::Ok(started.elapsed());
                    }
                }
            }
            bail!("the Engine's event stream ended")
        });
        let (status, resp) = match apply.await {
            Ok(r) => r,
            Err(e) => {
                waiter.abort();
                return Err(e);
            }
        };
        if status != 200 {
            waiter.abort();
            bail!("cold-start apply answered {status}: {}", String::from_utf8_lossy(&resp));
        }
        let took = tokio::time::timeout(Duration::from_secs(300), waiter).await;
        let took = took.context("berth cold start took over 5 minutes")??;
        let berth = took?;
        // Teardown: delete the resources (berth removes its containers), then settle.
        for i in 0..n {
            let (status, _) = call(
                &client,
                hyper::Method::DELETE,
                &s.url(&format!("/api/v1/containers/{trial}/s{i:03}")),
                Some(&token),
                None,
            )
            .await?;
            if !(status == 200 || status == 202) {
                bail!("delete answered {status}");
            }
        }
        until_gone(driver, labels::NAMESPACE, &trial).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;

        // docker-compose
        let project = format!("restbench{run_id}{t}");
        let file = dir.path().join(format!("{project}.yml"));
        std::fs::write(&file, compose_file(n, run_id, &project))?;
        let started = Instant::now();
        let outp = Command::new("docker-compose")
            .args(["--no-ansi", "-p", &project, "-f"])
            .arg(&file)
            .args(["up", "-d"])
            .output()
            .context("run docker-compose")?;
        let compose = started.elapsed();
        if !outp.status.success() {
            bail!("docker-compose up failed: {}", String::from_utf8_lossy(&outp.stderr));
        }
        let found = driver
            .list_containers(&ContainerFilter::all().with_label("berth-bench.trial", &project))
            .await?;
        for c in found {
            driver.remove_container(&c.id).await?;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        println!(
            "  cold start trial {}: berth {:.3} s, docker-compose {:.3} s",
            t + 1,
            berth.as_secs_f64(),
            compose.as_secs_f64()
        );
        out.push((berth, compose));
    }
    s.stop();
    Ok(out)
}
