//! Store benchmark, one run side by side:
//!
//! - durable writes per second: bare sled `insert + flush` per write (the floor), then the
//!   berth store with 1 and 16 concurrent writers (group commit);
//! - bytes on disk per logical byte after 100,000 audit events;
//! - peak RSS of this process (`VmHWM`).
//!
//! Run with `cargo bench -p berth-controller --bench store`. Scale the write counts with
//! `BERTH_BENCH_SCALE` (default 1.0); `BERTH_BENCH_CACHE_MIB` sets sled's cache cap;
//! `BERTH_BENCH_SKIP_WRITES=1` runs only the audit phase (its memory in a fresh process);
//! `BERTH_BENCH_BARE_SCAN=1` runs only a diagnostic of where a full scan's memory goes. Targets (issue 3): 16 writers ≥ 10× the floor and
//! ≥ 5,000 writes/s; disk ÷ logical ≤ 2; peak RSS ≤ 64 MiB.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_controller::store::{
    AuditEntry, AuditLog, AuditOutcome, ResourceStore, SledStore, StoreConfig, WriteContext,
};
use berth_schemas::{API_VERSION, DynamicObject, Kind, ObjectMeta};

fn object(name: &str, i: u64) -> DynamicObject {
    let mut metadata = ObjectMeta::named(name);
    metadata.labels.insert("app".into(), "bench".into());
    DynamicObject {
        api_version: API_VERSION.into(),
        kind: Kind::Container,
        metadata,
        spec: serde_json::json!({
            "image": format!("registry.local/bench/app:{i}"),
            "ports": [{"containerPort": 8080, "hostPort": 18080}],
            "env": [{"name": "MODE", "value": "bench"}],
            "restartPolicy": {"kind": "Always"},
        }),
        status: serde_json::Value::Null,
    }
}

/// Allocated bytes (like `du`) and apparent bytes of every file under `dir`.
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut allocated = 0;
    let mut apparent = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                allocated += meta.blocks() * 512;
                apparent += meta.len();
            }
        }
    }
    (allocated, apparent)
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn vm_hwm_kib() -> Option<u64> {
    proc_status_kib("VmHWM:")
}

fn report_memory(phase: &str) {
    println!(
        "memory after {phase}: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        proc_status_kib("VmRSS:").unwrap_or(0) as f64 / 1024.0,
        proc_status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0
    );
}

/// The store configuration used: defaults, with `BERTH_BENCH_CACHE_MIB` overriding the cache.
fn config(dir: &Path) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    if let Some(mib) =
        std::env::var("BERTH_BENCH_CACHE_MIB").ok().and_then(|s| s.parse::<u64>().ok())
    {
        config.cache_bytes = mib << 20;
    }
    config
}

fn per_second(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// The floor: bare sled, one insert and one flush per write.
fn bare_sled(dir: &Path, n: u64) -> anyhow::Result<f64> {
    let db = sled::Config::new().path(dir).cache_capacity(32 << 20).open()?;
    let tree = db.open_tree("bench")?;
    let value = serde_json::to_vec(&object("floor", 0))?;
    let start = Instant::now();
    for i in 0..n {
        tree.insert(i.to_be_bytes(), value.as_slice())?;
        db.flush()?;
    }
    Ok(per_second(n, start.elapsed()))
}

async fn berth_writes(
    store: &SledStore,
    writers: u64,
    per_writer: u64,
    tag: &str,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = store.clone();
        let tag = tag.to_owned();
        tasks.spawn(async move {
            let ctx = WriteContext::controller();
            for i in 0..per_writer {
                store.create(&ctx, object(&format!("{tag}-w{w}-{i}"), i)).await?;
            }
            Ok::<_, berth_controller::store::StoreError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(per_second(writers * per_writer, start.elapsed()))
}

/// Appends `events` audit events from 32 concurrent writers; answers events per second.
async fn append_audit(store: &SledStore, events: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    let writers = 32;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..events / writers {
                let entry = AuditEntry::new(
                    WriteContext::rest_user(format!("user{w}")),
                    "update",
                    AuditOutcome::Success,
                )
                .target("Container", Some("default".into()), format!("app-{w}-{i}"))
                .message("spec.image changed");
                store.append(entry).await?;
            }
            Ok::<_, berth_controller::store::StoreError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(per_second(events / writers * writers, start.elapsed()))
}

/// `BERTH_BENCH_BARE_SCAN=1`: where the memory of a full scan goes. Appends the events,
/// closes the store, then scans the audit tree with bare sled (no decoding, nothing kept) and
/// reports memory around it. Prints no table.
async fn bare_scan_diagnostic(dir: &Path, events: u64) -> anyhow::Result<()> {
    let store = SledStore::open(config(dir))?;
    append_audit(&store, events).await?;
    store.close();
    drop(store);
    report_memory("appending the audit events and closing the store");
    let cache = config(dir).cache_bytes;
    let db = sled::Config::new().path(dir).cache_capacity(cache).open()?;
    let tree = db.open_tree("audit")?;
    report_memory(&format!("opening bare sled (cache_capacity {} MiB)", cache >> 20));
    let mut bytes = 0usize;
    for item in tree.iter() {
        let (k, v) = item?;
        bytes += k.len() + v.len();
    }
    report_memory(&format!("a bare Tree::iter scan of {} MiB", bytes >> 20));
    drop(tree);
    drop(db);
    report_memory("closing bare sled");
    Ok(())
}

async fn audit_space(dir: &Path, events: u64) -> anyhow::Result<(u64, u64, u64, f64)> {
    let store = SledStore::open(config(dir))?;
    let rate = append_audit(&store, events).await?;
    report_memory("appending the audit events");
    let report = store.verify_audit_blocking()?;
    assert!(report.is_ok(), "{report:?}");
    report_memory("verifying the audit chain");
    // Logical bytes: what the audit events are (key + stored value), nothing else.
    let mut logical = 0u64;
    let mut cursor = None;
    loop {
        let page = store.query_audit_blocking(&berth_controller::store::AuditQuery {
            cursor,
            limit: 1000,
            ..Default::default()
        })?;
        for e in &page.events {
            // Stored value: 32-byte hash + JSON body (without the hash); key: 8 bytes.
            let mut body = e.clone();
            body.hash.clear();
            logical += 8 + 32 + serde_json::to_vec(&body)?.len() as u64;
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    store.close();
    drop(store);
    let (allocated, apparent) = disk_usage(dir);
    Ok((logical, allocated, apparent, rate))
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and must not start a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let scale: f64 =
        std::env::var("BERTH_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let scaled = |n: f64| ((n * scale) as u64).max(1);
    let tmp = match std::env::var("BERTH_BENCH_DIR") {
        Ok(dir) => tempfile::tempdir_in(dir)?,
        Err(_) => tempfile::tempdir()?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    let events = scaled(100_000.0);
    if std::env::var_os("BERTH_BENCH_BARE_SCAN").is_some() {
        return rt.block_on(bare_scan_diagnostic(&tmp.path().join("audit"), events));
    }
    // `BERTH_BENCH_SKIP_WRITES=1`: only the audit phase, to see its memory in a fresh process.
    let skip_writes = std::env::var_os("BERTH_BENCH_SKIP_WRITES").is_some();
    let floor_n = scaled(1000.0);
    let floor = if skip_writes { f64::NAN } else { bare_sled(&tmp.path().join("floor"), floor_n)? };
    report_memory("bare sled");

    let (one, sixteen) = if skip_writes {
        (f64::NAN, f64::NAN)
    } else {
        rt.block_on(async {
        let store = SledStore::open(config(&tmp.path().join("berth")))?;
        let one = berth_writes(&store, 1, scaled(1000.0), "one").await?;
        let before = store.stats();
        let sixteen = berth_writes(&store, 16, scaled(250.0), "sixteen").await?;
        let after = store.stats();
        let batches = after.batches - before.batches;
        let writes = after.writes - before.writes;
        println!(
            "16 writers: {writes} writes in {batches} batches ({:.1} per flush); per batch: apply {:?}, flush {:?}",
            writes as f64 / batches.max(1) as f64,
            (after.apply_time - before.apply_time) / batches.max(1) as u32,
            (after.flush_time - before.flush_time) / batches.max(1) as u32,
        );
        store.close();
        Ok::<_, anyhow::Error>((one, sixteen))
    })?
    };
    report_memory("durable writes");

    let (logical, allocated, apparent, audit_rate) =
        rt.block_on(audit_space(&tmp.path().join("audit"), events))?;
    report_memory("reading the audit events back");
    let hwm = vm_hwm_kib().unwrap_or(0);

    println!();
    println!("berth store benchmark (data on {})", tmp.path().display());
    println!("{:<52} {:>14} {:>12}", "measure", "value", "vs floor");
    println!("{:-<80}", "");
    println!(
        "{:<52} {:>10.0} w/s {:>11.2}x",
        "bare sled: insert + flush per write (floor)", floor, 1.0
    );
    println!(
        "{:<52} {:>10.0} w/s {:>11.2}x",
        "berth store, 1 writer (create + audit, durable)",
        one,
        one / floor
    );
    println!(
        "{:<52} {:>10.0} w/s {:>11.2}x",
        "berth store, 16 writers (group commit)",
        sixteen,
        sixteen / floor
    );
    println!("{:<52} {:>10.0} e/s", "audit appends, 32 writers (group commit)", audit_rate);
    println!("{:-<80}", "");
    println!("{:<52} {:>14}", "audit events written", events);
    println!(
        "{:<52} {:>10.1} MiB",
        "logical bytes (key + hash + event JSON)",
        logical as f64 / 1048576.0
    );
    println!("{:<52} {:>10.1} MiB", "bytes on disk, allocated (du)", allocated as f64 / 1048576.0);
    println!(
        "{:<52} {:>10.1} MiB",
        "bytes on disk, apparent file sizes",
        apparent as f64 / 1048576.0
    );
    println!(
        "{:<52} {:>14.2}",
        "disk (allocated) / logical",
        allocated as f64 / logical.max(1) as f64
    );
    println!(
        "{:<52} {:>14.2}",
        "disk (apparent) / logical",
        apparent as f64 / logical.max(1) as f64
    );
    println!("{:<52} {:>10.1} MiB", "peak RSS of this process (VmHWM)", hwm as f64 / 1024.0);
    println!("{:-<80}", "");
    let verdict = |ok: bool| if ok { "met" } else { "NOT MET" };
    println!("target: 16 writers >= 10x floor ........ {}", verdict(sixteen >= 10.0 * floor));
    println!("target: 16 writers >= 5,000 w/s ........ {}", verdict(sixteen >= 5000.0));
    println!(
        "target: disk / logical <= 2 ............ {}",
        verdict(allocated as f64 <= 2.0 * logical as f64)
    );
    println!("target: peak RSS <= 64 MiB ............. {}", verdict(hwm <= 64 * 1024));
    Ok(())
}
