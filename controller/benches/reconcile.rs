//! Reconciler benchmark against the real Docker Engine (issue 4, item 8), side by side in one
//! run on the same Engine: berth (a `Controller` with the real sled store and bollard driver)
//! against `docker-compose up -d` of the same services and raw Engine API calls (the floor).
//!
//! Run with `cargo bench -p berth-controller --bench reconcile` after `scripts/test-env up`
//! (the settings come from the environment or `.test-env/env`, as for the Engine tests).
//!
//! Measured:
//!
//! - **cold start** of N containers to all Running (N = 1, 10, 50): berth from the first store
//!   write to the Engine's last `start` event; compose the wall time of `docker-compose up -d`;
//!   raw `create` + `start` per container, sequentially and at berth's parallelism (8);
//! - **re-apply** of the unchanged 50: berth's mutating Docker calls, store writes and the time
//!   of the re-apply plus one full reconcile pass over the 50 (what a relist does), against a
//!   no-op `docker-compose up -d`;
//! - **change one of 50**: from the store write to the replacement's `start` event, against
//!   `docker-compose up -d` after changing one service and raw stop + remove + create + start;
//! - **drift repair**: from the Engine's `destroy` (after `docker rm -f`) or `die` (after
//!   `docker kill`) event to the `start` event of the repaired container;
//! - **idle CPU** of this process with berth managing 50 containers (utime + stime from
//!   `/proc/self/stat`), and the mutating calls made meanwhile.
//!
//! Trials are interleaved (the order of the systems rotates each round), every teardown is
//! followed by a pause before the next trial, and medians are given with min and max.
//!
//! Tuning (environment): `BERTH_BENCH_SIZES` (default `1,10,50`), `BERTH_BENCH_TRIALS` (5),
//! `BERTH_BENCH_STEADY_N` (50), `BERTH_BENCH_DRIFT_TRIALS` (20), `BERTH_BENCH_IDLE_SECS` (60),
//! `BERTH_BENCH_SETTLE_SECS` (5).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use berth_controller::docker::{
    BollardDriver, ContainerCreate, ContainerFilter, CredentialStore, Driver, EngineEvent,
    EventKind, EventStream,
};
use berth_controller::labels;
use berth_controller::reconcile::container::{self, create::container_create};
use berth_controller::reconcile::{Context, Controller, ControllerConfig};
use berth_controller::store::{ResourceStore, SledStore, StoreConfig, WriteContext};
use berth_schemas::{API_VERSION, Container, DynamicObject, Kind, ObjectMeta, ResourceKey};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};
use support::TestEnv;
use tokio_util::sync::CancellationToken;

/// The label on every container this benchmark makes (value: the run id), for teardown.
const BENCH_LABEL: &str = "dev.berth.bench";
/// The label naming one trial's set of containers.
const TRIAL_LABEL: &str = "dev.berth.bench-trial";
/// berth's default parallelism, which the parallel floor uses too.
const PARALLELISM: usize = 8;
/// How long any one wait may take before the benchmark gives up.
const DEADLINE: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------------
// Settings and statistics

#[derive(Debug, Clone)]
struct Settings {
    sizes: Vec<usize>,
    trials: usize,
    steady_n: usize,
    drift_trials: usize,
    idle: Duration,
    settle: Duration,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

impl Settings {
    fn from_env() -> Self {
        let sizes = std::env::var("BERTH_BENCH_SIZES")
            .ok()
            .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect::<Vec<usize>>())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec![1, 10, 50]);
        Self {
            sizes,
            trials: env_or("BERTH_BENCH_TRIALS", 5usize).max(1),
            steady_n: env_or("BERTH_BENCH_STEADY_N", 50usize).max(2),
            drift_trials: env_or("BERTH_BENCH_DRIFT_TRIALS", 20usize).max(1),
            idle: Duration::from_secs(env_or("BERTH_BENCH_IDLE_SECS", 60u64)),
            settle: Duration::from_secs(env_or("BERTH_BENCH_SETTLE_SECS", 5u64)),
        }
    }
}

/// Samples of one measure, in seconds.
#[derive(Debug, Clone, Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64());
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// Nearest-rank percentile.
    fn percentile(&self, p: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        v[rank.min(v.len()) - 1]
    }

    fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// `median (min–max)` in seconds.
    fn summary(&self) -> String {
        format!("{:.3} s ({:.3}–{:.3})", self.median(), self.min(), self.max())
    }
}

fn ratio(a: &Samples, b: &Samples) -> String {
    format!("{:.2}×", a.median() / b.median())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

fn nanos_between(from: i64, to: i64) -> Duration {
    Duration::from_nanos(u64::try_from(to - from).unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Counting what berth does to the Engine

/// The Engine's events from a moment on, recorded in the background. Every mutating call on a
/// container or image (create, start, stop, kill, remove, pull ...) shows as an event; reads
/// (list, inspect) do not. So counting the events about berth's containers counts berth's
/// mutating calls, as the Engine saw them, without wrapping the driver.
struct EventLog {
    events: Arc<Mutex<Vec<EngineEvent>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventLog {
    fn start(driver: &BollardDriver, since_nano: i64) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut stream = driver.events(Some(since_nano));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                if let Ok(mut v) = sink.lock() {
                    v.push(event);
                }
            }
        });
        Self { events, task }
    }

    /// Waits a moment for late events, stops, and counts the events up to `until_nano` that
    /// match `pred`.
    async fn count(self, until_nano: i64, pred: impl Fn(&EngineEvent) -> bool) -> u64 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.task.abort();
        let events = self.events.lock().map(|v| v.clone()).unwrap_or_default();
        events.iter().filter(|e| e.time_nano <= until_nano && pred(e)).count() as u64
    }
}

/// Whether an event is a mutation of one of berth's containers in `namespace`, or of an image.
fn berth_mutation(event: &EngineEvent, namespace: &str) -> bool {
    match event.kind {
        EventKind::Container => label_is(event, labels::NAMESPACE, namespace),
        EventKind::Image => true,
        EventKind::Other(_) => false,
    }
}

// ---------------------------------------------------------------------------------------------
// The workload: N identical sleepers

/// The spec of every benchmark container, as a berth resource.
fn spec(image: &str, run: &str, trial: &str, version: u32) -> Value {
    json!({
        "image": image,
        "command": ["sleep", "3600"],
        "init": true,
        "stopGracePeriodSeconds": 2,
        "env": [{"name": "BENCH_VERSION", "value": version.to_string()}],
        "labels": {BENCH_LABEL: run, TRIAL_LABEL: trial},
    })
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

fn service_name(i: usize) -> String {
    format!("s{i:03}")
}

/// The same container as berth would create, named `name` and labelled for the benchmark
/// only (not as berth's).
fn raw_request(image: &str, run: &str, trial: &str, name: &str) -> Result<ContainerCreate> {
    let obj: Container = resource("raw", "raw", spec(image, run, trial, 1)).to_typed()?;
    let mut request = container_create(&obj, "raw", "raw", "raw")?;
    request.name = name.to_owned();
    request.labels =
        [(BENCH_LABEL.to_owned(), run.to_owned()), (TRIAL_LABEL.to_owned(), trial.to_owned())]
            .into();
    Ok(request)
}

/// A docker-compose file with the same services.
fn compose_file(image: &str, run: &str, trial: &str, n: usize, versions: &[u32]) -> String {
    let mut out = String::from("version: \"2.4\"\nservices:\n");
    for i in 0..n {
        let version = versions.get(i).copied().unwrap_or(1);
        let _ = write!(
            out,
            "  {name}:\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n    init: true\n    \
             stop_grace_period: 2s\n    restart: always\n    network_mode: bridge\n    \
             environment:\n      BENCH_VERSION: \"{version}\"\n    labels:\n      \
             {BENCH_LABEL}: \"{run}\"\n      {TRIAL_LABEL}: \"{trial}\"\n",
            name = service_name(i),
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers on the Engine

struct Bench {
    env: TestEnv,
    driver: BollardDriver,
    run: String,
    settings: Settings,
    dir: tempfile::TempDir,
}

impl Bench {
    fn trial_id(&self, what: &str) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("{what}-{}", &id[..8])
    }

    /// Removes every container of `trial` (or of the whole run), `PARALLELISM` at a time.
    async fn teardown(&self, label: &str, value: &str) -> Result<()> {
        let found =
            self.driver.list_containers(&ContainerFilter::all().with_label(label, value)).await?;
        stream::iter(found)
            .map(|c| async move { self.driver.remove_container(&c.id).await })
            .buffer_unordered(PARALLELISM)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Teardown of a trial, then the pause before the next one.
    async fn teardown_and_settle(&self, trial: &str) -> Result<()> {
        self.teardown(TRIAL_LABEL, trial).await?;
        tokio::time::sleep(self.settings.settle).await;
        Ok(())
    }

    fn compose(&self, project: &str, file: &Path, args: &[&str]) -> Result<Duration> {
        let started = Instant::now();
        let out = std::process::Command::new("docker-compose")
            .arg("--no-ansi")
            .args(["-p", project, "-f"])
            .arg(file)
            .args(args)
            .env("DOCKER_HOST", &self.env.docker_host)
            .output()
            .context("run docker-compose (apt-get install docker-compose)")?;
        let took = started.elapsed();
        if !out.status.success() {
            bail!("docker-compose {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(took)
    }

    fn write_compose(&self, project: &str, body: &str) -> Result<std::path::PathBuf> {
        let path = self.dir.path().join(format!("{project}.yml"));
        std::fs::write(&path, body)?;
        Ok(path)
    }
}

/// Reads `events` until `want` distinct containers matching `pred` have started; returns the
/// Engine's time of the last of those starts.
async fn starts(
    events: &mut EventStream,
    want: usize,
    pred: impl Fn(&EngineEvent) -> bool,
) -> Result<i64> {
    let mut seen = HashSet::new();
    let mut last = 0;
    tokio::time::timeout(DEADLINE, async {
        while let Some(event) = events.next().await {
            let event = event?;
            if event.kind == EventKind::Container && event.action == "start" && pred(&event) {
                seen.insert(event.id.clone());
                last = last.max(event.time_nano);
                if seen.len() >= want {
                    return Ok(last);
                }
            }
        }
        bail!("the event stream ended")
    })
    .await
    .context("timed out waiting for containers to start")?
}

/// Reads `events` until one matches; returns the event.
async fn first_event(
    events: &mut EventStream,
    pred: impl Fn(&EngineEvent) -> bool,
) -> Result<EngineEvent> {
    tokio::time::timeout(DEADLINE, async {
        while let Some(event) = events.next().await {
            let event = event?;
            if pred(&event) {
                return Ok(event);
            }
        }
        bail!("the event stream ended")
    })
    .await
    .context("timed out waiting for an event")?
}

fn label_is(event: &EngineEvent, key: &str, value: &str) -> bool {
    event.attributes.get(key).is_some_and(|v| v == value)
}

// ---------------------------------------------------------------------------------------------
// berth

/// A running controller over a fresh store.
struct Berth {
    store: SledStore,
    driver: Arc<dyn Driver>,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
    namespace: String,
    _dir: tempfile::TempDir,
}

impl Berth {
    async fn start(bench: &Bench) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = SledStore::open(StoreConfig::new(dir.path()))?;
        let driver: Arc<dyn Driver> = Arc::new(bench.driver.clone());
        let controller = Controller::new(
            Arc::new(store.clone()),
            driver.clone(),
            Arc::new(CredentialStore::empty()),
            ControllerConfig::default(),
        );
        let mut ready = controller.readiness();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(controller.run(shutdown.clone()));
        tokio::time::timeout(DEADLINE, ready.wait_for(|r| *r))
            .await
            .context("the controller did not become ready")??;
        let namespace = bench.trial_id("bb");
        Ok(Self { store, driver, shutdown, handle, namespace, _dir: dir })
    }

    /// Applies the N resources at once (as one multi-document apply would).
    async fn apply_all(&self, bench: &Bench, n: usize, versions: &[u32]) -> Result<()> {
        let writes = (0..n).map(|i| {
            let version = versions.get(i).copied().unwrap_or(1);
            let obj = resource(
                &self.namespace,
                &service_name(i),
                spec(&bench.env.image, &bench.run, &self.namespace, version),
            );
            async move { self.store.apply(&WriteContext::rest_user("bench"), obj).await }
        });
        futures::future::try_join_all(writes).await?;
        Ok(())
    }

    fn key(&self, i: usize) -> ResourceKey {
        ResourceKey::new(Kind::Container, &self.namespace, service_name(i))
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.handle).await.context("controller shutdown")??;
        self.store.close();
        Ok(())
    }
}

/// One berth cold start: time, mutating calls, machine CPU busy %, berth's CPU seconds.
async fn berth_cold_start(bench: &Bench, n: usize) -> Result<(Duration, u64, f64, f64)> {
    let berth = Berth::start(bench).await?;
    let meter = CpuMeter::start();
    let t0 = now_nanos();
    let mut events = bench.driver.events(Some(t0));
    let log = EventLog::start(&bench.driver, t0);
    let ns = berth.namespace.clone();
    berth.apply_all(bench, n, &[]).await?;
    let last = starts(&mut events, n, |e| label_is(e, labels::NAMESPACE, &ns)).await?;
    let (busy, own) = meter.stop();
    drop(events);
    let calls = log.count(last, |e| berth_mutation(e, &ns)).await;
    let trial = berth.namespace.clone();
    berth.stop().await?;
    bench.teardown_and_settle(&trial).await?;
    Ok((nanos_between(t0, last), calls, busy, own))
}

async fn compose_cold_start(bench: &Bench, n: usize) -> Result<(Duration, f64)> {
    let project = bench.trial_id("bc").replace('-', "");
    let file = bench
        .write_compose(&project, &compose_file(&bench.env.image, &bench.run, &project, n, &[]))?;
    let meter = CpuMeter::start();
    let took = bench.compose(&project, &file, &["up", "-d"])?;
    let (busy, _) = meter.stop();
    bench.teardown_and_settle(&project).await?;
    Ok((took, busy))
}

async fn raw_cold_start(bench: &Bench, n: usize, parallelism: usize) -> Result<(Duration, f64)> {
    let trial = bench.trial_id("br");
    let requests: Vec<ContainerCreate> = (0..n)
        .map(|i| raw_request(&bench.env.image, &bench.run, &trial, &format!("{trial}-{i}")))
        .collect::<Result<_>>()?;
    let meter = CpuMeter::start();
    let started = Instant::now();
    stream::iter(requests)
        .map(|r| async move {
            let id = bench.driver.create_container(&r).await?;
            bench.driver.start_container(&id).await
        })
        .buffer_unordered(parallelism)
        .try_collect::<Vec<()>>()
        .await?;
    let took = started.elapsed();
    let (busy, _) = meter.stop();
    bench.teardown_and_settle(&trial).await?;
    Ok((took, busy))
}

// ---------------------------------------------------------------------------------------------
// The phases

#[derive(Debug, Default)]
struct ColdStart {
    berth: Samples,
    berth_calls: Vec<u64>,
    /// berth's own CPU seconds per trial.
    berth_cpu: Vec<f64>,
    compose: Samples,
    raw_seq: Samples,
    raw_par: Samples,
    /// Every container at once.
    raw_all: Samples,
    /// Machine CPU busy % per trial: berth, compose, raw sequential, raw ×8, raw all.
    busy: [Vec<f64>; 5],
}

async fn cold_start(bench: &Bench, n: usize) -> Result<ColdStart> {
    let mut r = ColdStart::default();
    for trial in 0..bench.settings.trials {
        for k in 0..5 {
            match (trial + k) % 5 {
                0 => {
                    let (d, calls, busy, own) = berth_cold_start(bench, n).await?;
                    r.berth.push(d);
                    r.berth_calls.push(calls);
                    r.berth_cpu.push(own);
                    r.busy[0].push(busy);
                }
                1 => {
                    let (d, busy) = compose_cold_start(bench, n).await?;
                    r.compose.push(d);
                    r.busy[1].push(busy);
                }
                2 => {
                    let (d, busy) = raw_cold_start(bench, n, 1).await?;
                    r.raw_seq.push(d);
                    r.busy[2].push(busy);
                }
                3 => {
                    let (d, busy) = raw_cold_start(bench, n, PARALLELISM).await?;
                    r.raw_par.push(d);
                    r.busy[3].push(busy);
                }
                _ => {
                    let (d, busy) = raw_cold_start(bench, n, n).await?;
                    r.raw_all.push(d);
                    r.busy[4].push(busy);
                }
            }
        }
        let last = |s: &Samples| s.0.last().copied().unwrap_or_default();
        eprintln!(
            "  cold start N={n} trial {}: berth {:.3}s compose {:.3}s raw {:.3}s raw×{PARALLELISM} {:.3}s raw×{n} {:.3}s (load {})",
            trial + 1,
            last(&r.berth),
            last(&r.compose),
            last(&r.raw_seq),
            last(&r.raw_par),
            last(&r.raw_all),
            load_average()
        );
    }
    Ok(r)
}

#[derive(Debug, Default)]
struct Steady {
    reapply_berth: Samples,
    reapply_mutating: Vec<u64>,
    reapply_store_writes: Vec<u64>,
    reapply_compose: Samples,
    change_berth: Samples,
    change_compose: Samples,
    change_raw: Samples,
    drift_rm: Samples,
    drift_kill: Samples,
    idle_cpu_percent: f64,
    idle_mutating: u64,
    idle_secs: f64,
}

/// One full reconcile pass over every key, at berth's parallelism: what a relist does.
async fn reconcile_all(berth: &Berth, n: usize) -> Result<()> {
    let ctx = Context::new(
        Arc::new(berth.store.clone()),
        berth.driver.clone(),
        Arc::new(CredentialStore::empty()),
    );
    let ctx = &ctx;
    stream::iter(0..n)
        .map(|i| async move {
            let stored = berth.store.get(&berth.key(i)).await?.context("resource")?;
            let obj: Container = stored.to_typed()?;
            container::reconcile(&obj, ctx).await?;
            anyhow::Ok(())
        })
        .buffer_unordered(PARALLELISM)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn steady(bench: &Bench) -> Result<Steady> {
    let n = bench.settings.steady_n;
    let changed = n / 3;
    let mut r = Steady::default();

    // berth's 50 and compose's 50, both up (not timed).
    let berth = Berth::start(bench).await?;
    let mut events = bench.driver.events(Some(now_nanos()));
    berth.apply_all(bench, n, &[]).await?;
    let ns = berth.namespace.clone();
    starts(&mut events, n, |e| label_is(e, labels::NAMESPACE, &ns)).await?;
    drop(events);
    let project = bench.trial_id("bs").replace('-', "");
    let mut versions = vec![1u32; n];
    let compose_path = bench.write_compose(
        &project,
        &compose_file(&bench.env.image, &bench.run, &project, n, &versions),
    )?;
    bench.compose(&project, &compose_path, &["up", "-d"])?;
    // One raw container for the floor of a replace.
    let raw_trial = bench.trial_id("bs-raw");
    let raw_name = format!("{raw_trial}-0");
    let raw = raw_request(&bench.env.image, &bench.run, &raw_trial, &raw_name)?;
    let mut raw_id = bench.driver.create_container(&raw).await?;
    bench.driver.start_container(&raw_id).await?;
    // Let the start-up status writes and the first relist pass.
    tokio::time::sleep(bench.settings.settle).await;

    eprintln!("  re-apply of the unchanged {n}");
    for trial in 0..bench.settings.trials {
        for k in 0..2 {
            if (trial + k) % 2 == 0 {
                let revision = berth.store.revision();
                let log = EventLog::start(&bench.driver, now_nanos());
                let started = Instant::now();
                berth.apply_all(bench, n, &[]).await?;
                reconcile_all(&berth, n).await?;
                r.reapply_berth.push(started.elapsed());
                // And anything the running controller might do about it meanwhile.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let mutations = log.count(now_nanos(), |e| berth_mutation(e, &berth.namespace));
                r.reapply_mutating.push(mutations.await);
                r.reapply_store_writes.push(berth.store.revision() - revision);
            } else {
                r.reapply_compose.push(bench.compose(&project, &compose_path, &["up", "-d"])?);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    eprintln!("  change one of {n}");
    let target = service_name(changed);
    let berth_name = labels::container_name(&berth.namespace, &target);
    let mut berth_versions = vec![1u32; n];
    for trial in 0..bench.settings.trials {
        for k in 0..3 {
            match (trial + k) % 3 {
                0 => {
                    let old = bench
                        .driver
                        .inspect_container(&berth_name)
                        .await?
                        .context("berth's container")?;
                    berth_versions[changed] += 1;
                    let t0 = now_nanos();
                    let mut events = bench.driver.events(Some(t0));
                    let obj = resource(
                        &berth.namespace,
                        &target,
                        spec(
                            &bench.env.image,
                            &bench.run,
                            &berth.namespace,
                            berth_versions[changed],
                        ),
                    );
                    berth.store.apply(&WriteContext::rest_user("bench"), obj).await?;
                    let name = format!("/{berth_name}");
                    let last = starts(&mut events, 1, |e| {
                        e.id != old.id
                            && e.attributes
                                .get("name")
                                .is_some_and(|v| *v == berth_name || *v == name)
                    })
                    .await?;
                    r.change_berth.push(nanos_between(t0, last));
                }
                1 => {
                    versions[changed] += 1;
                    std::fs::write(
                        &compose_path,
                        compose_file(&bench.env.image, &bench.run, &project, n, &versions),
                    )?;
                    r.change_compose.push(bench.compose(&project, &compose_path, &["up", "-d"])?);
                }
                _ => {
                    let started = Instant::now();
                    bench.driver.stop_container(&raw_id, Duration::from_secs(2)).await?;
                    bench.driver.remove_container(&raw_id).await?;
                    raw_id = bench.driver.create_container(&raw).await?;
                    bench.driver.start_container(&raw_id).await?;
                    r.change_raw.push(started.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    // The compose set is not needed any more: the rest measures berth alone.
    bench.teardown(TRIAL_LABEL, &project).await?;
    bench.teardown(TRIAL_LABEL, &raw_trial).await?;
    tokio::time::sleep(bench.settings.settle).await;

    eprintln!("  drift repair, {} trials each", bench.settings.drift_trials);
    for trial in 0..bench.settings.drift_trials {
        for k in 0..2 {
            // A different container each time, never the one just repaired.
            let i = (trial * 7 + k * 3) % n;
            let name = labels::container_name(&berth.namespace, &service_name(i));
            let c = bench.driver.inspect_container(&name).await?.context("berth's container")?;
            let mut events = bench.driver.events(Some(now_nanos()));
            let slash = format!("/{name}");
            let is_it = |e: &EngineEvent| {
                e.attributes.get("name").is_some_and(|v| *v == name || *v == slash)
            };
            if k == 0 {
                bench.driver.remove_container(&c.id).await?;
                let gone =
                    first_event(&mut events, |e| e.id == c.id && e.action == "destroy").await?;
                let back = starts(&mut events, 1, |e| e.id != c.id && is_it(e)).await?;
                r.drift_rm.push(nanos_between(gone.time_nano, back));
            } else {
                bench.driver.kill_container(&c.id, None).await?;
                let died = first_event(&mut events, |e| e.id == c.id && e.action == "die").await?;
                let back = starts(&mut events, 1, |e| e.id == c.id).await?;
                r.drift_kill.push(nanos_between(died.time_nano, back));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    eprintln!("  idle for {:?} with {n} containers", bench.settings.idle);
    tokio::time::sleep(bench.settings.settle).await;
    let log = EventLog::start(&bench.driver, now_nanos());
    let (cpu0, wall0) = (process_cpu_seconds()?, Instant::now());
    tokio::time::sleep(bench.settings.idle).await;
    let (cpu1, wall) = (process_cpu_seconds()?, wall0.elapsed());
    r.idle_cpu_percent = 100.0 * (cpu1 - cpu0) / wall.as_secs_f64();
    r.idle_mutating = log.count(now_nanos(), |e| berth_mutation(e, &berth.namespace)).await;
    r.idle_secs = wall.as_secs_f64();

    let trial = berth.namespace.clone();
    berth.stop().await?;
    bench.teardown(TRIAL_LABEL, &trial).await?;
    Ok(r)
}

/// Busy and total jiffies of the whole machine (all cores), from `/proc/stat`.
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else { return (0, 0) };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait are fields 4 and 5.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Measures the machine's CPU use (percent of all cores busy) and this process's CPU seconds
/// across a section.
#[derive(Debug, Clone, Copy)]
struct CpuMeter {
    machine: (u64, u64),
    process: f64,
}

impl CpuMeter {
    fn start() -> Self {
        Self { machine: machine_jiffies(), process: process_cpu_seconds().unwrap_or_default() }
    }

    /// (machine busy %, this process's CPU seconds) since `start`.
    fn stop(self) -> (f64, f64) {
        let (busy, total) = machine_jiffies();
        let busy_pct =
            100.0 * (busy - self.machine.0) as f64 / ((total - self.machine.1).max(1)) as f64;
        (busy_pct, process_cpu_seconds().unwrap_or_default() - self.process)
    }
}

/// utime + stime of this process, in seconds.
fn process_cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("parse /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here (0-based 11, 12).
    let utime: f64 = fields.get(11).context("utime")?.parse()?;
    let stime: f64 = fields.get(12).context("stime")?.parse()?;
    Ok((utime + stime) / clock_ticks()?)
}

fn clock_ticks() -> Result<f64> {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100.0))
}

// ---------------------------------------------------------------------------------------------
// The report

fn report(settings: &Settings, cold: &BTreeMap<usize, ColdStart>, s: &Steady, loads: (&str, &str)) {
    println!();
    println!("berth reconciler benchmark (same Engine, interleaved trials; median (min–max))");
    println!(
        "trials: {} per cold-start size, {} re-apply / change, {} drift per kind; pause after teardown {:?}",
        settings.trials, settings.trials, settings.drift_trials, settings.settle
    );
    println!("load average at start: {}; at end: {}", loads.0, loads.1);
    println!();
    println!("## Cold start to all Running");
    println!();
    println!(
        "| N | berth | docker-compose up -d | raw sequential | raw ×{PARALLELISM} (floor) | raw, all at once | berth ÷ compose | berth ÷ floor | berth mutating calls (Engine events) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (n, r) in cold {
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.berth.summary(),
            r.compose.summary(),
            r.raw_seq.summary(),
            r.raw_par.summary(),
            r.raw_all.summary(),
            ratio(&r.berth, &r.compose),
            ratio(&r.berth, &r.raw_par),
            r.berth_calls.iter().max().copied().unwrap_or_default(),
        );
    }
    println!();
    println!(
        "Machine CPU busy during the timed section (% of all cores, median) and berth's own CPU:"
    );
    println!();
    println!(
        "| N | berth | compose | raw sequential | raw ×{PARALLELISM} | raw, all at once | berth process CPU |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (n, r) in cold {
        let med = |v: &Vec<f64>| Samples(v.clone()).median();
        println!(
            "| {n} | {:.0} % | {:.0} % | {:.0} % | {:.0} % | {:.0} % | {:.3} s |",
            med(&r.busy[0]),
            med(&r.busy[1]),
            med(&r.busy[2]),
            med(&r.busy[3]),
            med(&r.busy[4]),
            med(&r.berth_cpu),
        );
    }
    let n = settings.steady_n;
    println!();
    println!("## With {n} running");
    println!();
    println!("| measure | berth | docker-compose | raw (floor) | berth ÷ compose |");
    println!("|---|---|---|---|---|");
    println!(
        "| re-apply unchanged set + one full reconcile pass | {} | {} (no-op `up -d`) | — | {} |",
        s.reapply_berth.summary(),
        s.reapply_compose.summary(),
        ratio(&s.reapply_berth, &s.reapply_compose)
    );
    println!(
        "| re-apply, all trials: mutating Docker calls (Engine events) / store writes | {} / {} | — | — | — |",
        s.reapply_mutating.iter().sum::<u64>(),
        s.reapply_store_writes.iter().sum::<u64>(),
    );
    println!(
        "| change one of {n}: to replaced and Running | {} | {} | {} (stop, rm, create, start) | {} |",
        s.change_berth.summary(),
        s.change_compose.summary(),
        s.change_raw.summary(),
        ratio(&s.change_berth, &s.change_compose)
    );
    println!();
    println!("## Drift repair (Engine event to Engine event)");
    println!();
    println!("| drift | trials | p50 | p95 | min | max |");
    println!("|---|---|---|---|---|---|");
    for (what, d) in [
        ("`docker rm -f` (destroy → start)", &s.drift_rm),
        ("`docker kill` (die → start)", &s.drift_kill),
    ] {
        println!(
            "| {what} | {} | {:.3} s | {:.3} s | {:.3} s | {:.3} s |",
            d.0.len(),
            d.percentile(50.0),
            d.percentile(95.0),
            d.min(),
            d.max()
        );
    }
    println!();
    println!("## Idle");
    println!();
    println!(
        "{n} containers, {:.0} s: {:.3} % of a core (utime + stime of this process); {} mutating calls (Engine events)",
        s.idle_secs, s.idle_cpu_percent, s.idle_mutating
    );
    println!();
    println!("## Targets");
    println!();
    if let Some(r) = cold.get(&50) {
        let vs_compose = r.berth.median() / r.compose.median();
        let vs_floor = r.berth.median() / r.raw_par.median();
        println!(
            "- N=50 cold start ≤ 0.6× compose: {vs_compose:.2}× {}",
            verdict(vs_compose <= 0.6)
        );
        println!(
            "- N=50 cold start ≤ 1.2× parallel floor: {vs_floor:.2}× {}",
            verdict(vs_floor <= 1.2)
        );
    }
    let zero = s.reapply_mutating.iter().sum::<u64>() == 0;
    println!(
        "- zero mutating calls on re-apply: {} {}",
        s.reapply_mutating.iter().sum::<u64>(),
        verdict(zero)
    );
    let (rm, kill) = (s.drift_rm.percentile(50.0), s.drift_kill.percentile(50.0));
    println!(
        "- drift repair p50 < 1 s: rm -f {rm:.3} s, kill {kill:.3} s {}",
        verdict(rm < 1.0 && kill < 1.0)
    );
    println!(
        "- idle CPU < 1 % of a core: {:.3} % {}",
        s.idle_cpu_percent,
        verdict(s.idle_cpu_percent < 1.0)
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "(met)" } else { "(MISSED)" }
}

// ---------------------------------------------------------------------------------------------

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and must not start a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

async fn run() -> Result<()> {
    let settings = Settings::from_env();
    let env = TestEnv::load();
    let driver = BollardDriver::connect(&env.docker_config()).await.with_context(|| {
        format!("no Docker Engine at {}: run `scripts/test-env up`", env.docker_host)
    })?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let bench = Bench {
        env,
        driver,
        run: format!("bench-{}", &id[..8]),
        settings: settings.clone(),
        dir: tempfile::tempdir()?,
    };
    let load_start = load_average();
    eprintln!("benchmark run {} (load {load_start}): {settings:?}", bench.run);

    let result = async {
        let mut cold = BTreeMap::new();
        for &n in &settings.sizes {
            eprintln!("cold start, N = {n}");
            cold.insert(n, cold_start(&bench, n).await?);
        }
        eprintln!("steady state, N = {}", settings.steady_n);
        let steady = steady(&bench).await?;
        anyhow::Ok((cold, steady))
    }
    .await;
    // Whatever happened, leave nothing behind.
    if let Err(e) = bench.teardown(BENCH_LABEL, &bench.run).await {
        eprintln!("teardown of run {}: {e:#}", bench.run);
    }
    let (cold, steady) = result?;
    report(&settings, &cold, &steady, (&load_start, &load_average()));
    Ok(())
}
