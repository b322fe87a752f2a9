//! Durability under `kill -9`: a child process writes as fast as it can and prints every
//! acknowledged write; the parent kills it with SIGKILL at a random moment (20-100 ms after the
//! child opened the store), reopens the store
//! and checks that every acknowledged write is there, the audit chain verifies and the store
//! opens cleanly. Repeated for many rounds on the same data directory.
//!
//! This is a `harness = false` test: the same binary is the child when started with
//! `--child DIR ROUND`. Set `BERTH_CRASH_SEED` to replay a run; `BERTH_CRASH_ROUNDS` to change
//! the number of rounds (default 60).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use berth_controller::store::{
    AuditEntry, AuditLog, AuditOutcome, ResourceStore, SledStore, StoreConfig, WriteContext,
};
use berth_schemas::{API_VERSION, DynamicObject, Kind, ObjectMeta, ResourceKey};

const WRITERS: usize = 6;
const KEYS_PER_WRITER: usize = 40;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let dir = args.get(i + 1).context("--child needs DIR")?;
        let round: u64 = args.get(i + 2).context("--child needs ROUND")?.parse()?;
        return child(Path::new(dir), round);
    }
    if args.iter().any(|a| a == "--list") {
        // `cargo test -- --list` asks harnesses for their tests.
        println!("kill_9_never_loses_an_acknowledged_write: test");
        return Ok(());
    }
    parent()
}

fn object(name: &str, image: &str) -> DynamicObject {
    DynamicObject {
        api_version: API_VERSION.into(),
        kind: Kind::Container,
        metadata: ObjectMeta::named(name),
        spec: serde_json::json!({ "image": image }),
        status: serde_json::Value::Null,
    }
}

/// The child: concurrent writers applying to a bounded set of keys, printing `ACK name rv image`
/// after each acknowledged write. Runs until killed.
fn child(dir: &Path, round: u64) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let store = SledStore::open(StoreConfig::new(dir))?;
        println!("READY");
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let store = store.clone();
            tasks.spawn(async move {
                let ctx = WriteContext::controller();
                for i in 0u64.. {
                    let name = format!("w{w}-k{}", i as usize % KEYS_PER_WRITER);
                    let image = format!("img:{round}-{i}");
                    let r = store.apply(&ctx, object(&name, &image)).await?;
                    println!("ACK {name} {} {image}", r.revision);
                    if i % 10 == 0 {
                        let entry =
                            AuditEntry::new(ctx.clone(), "crash-test.tick", AuditOutcome::Success);
                        let e = store.append(entry).await?;
                        println!("AUDIT {}", e.seq);
                    }
                }
                Ok::<_, berth_controller::store::StoreError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(())
    })
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

struct Acked {
    revision: u64,
    image: String,
}

fn parent() -> anyhow::Result<()> {
    let seed = match std::env::var("BERTH_CRASH_SEED") {
        Ok(s) => s.parse()?,
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64 | 1,
    };
    let rounds: u64 =
        std::env::var("BERTH_CRASH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    println!("running 1 test (kill -9 durability, {rounds} rounds, BERTH_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir()?;
    let dir: PathBuf = tmp.path().join("data");
    let exe = std::env::current_exe()?;
    let mut acked: BTreeMap<String, Acked> = BTreeMap::new();
    let mut max_audit_seq: Option<u64> = None;
    let mut rounds_with_acks = 0;
    let mut total_acks = 0usize;

    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .arg("--child")
            .arg(&dir)
            .arg(round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        let stderr = child.stderr.take().context("child stderr")?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "READY" {
                    let _ = ready_tx.send(());
                }
                lines.push(line);
            }
            lines
        });
        let err_reader = std::thread::spawn(move || {
            BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<String>>()
        });
        // The random moment is counted from when the child has opened the store (its start-up
        // time varies with machine load), so every round kills it in the middle of writing.
        if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            let errors = err_reader.join().unwrap_or_default();
            bail!("round {round}: the child never opened the store: {errors:?}");
        }
        let wait_ms = 20 + rng.next() % 81;
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill()?; // SIGKILL on Unix
        let status = child.wait()?;
        let lines = reader.join().map_err(|_| anyhow::anyhow!("stdout reader panicked"))?;
        let errors = err_reader.join().map_err(|_| anyhow::anyhow!("stderr reader panicked"))?;
        if status.code().is_some() {
            bail!(
                "round {round}: the child exited by itself ({status}) instead of being killed: {errors:?}"
            );
        }

        let mut acks_this_round = 0;
        for line in &lines {
            let mut parts = line.split(' ');
            match parts.next() {
                Some("ACK") => {
                    let (Some(name), Some(rv), Some(image)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        continue; // the kill can cut the last line short
                    };
                    let Ok(revision) = rv.parse::<u64>() else { continue };
                    let entry = acked
                        .entry(name.to_owned())
                        .or_insert(Acked { revision: 0, image: String::new() });
                    if revision > entry.revision {
                        *entry = Acked { revision, image: image.to_owned() };
                    }
                    acks_this_round += 1;
                }
                Some("AUDIT") => {
                    if let Some(Ok(seq)) = parts.next().map(str::parse::<u64>) {
                        max_audit_seq = max_audit_seq.max(Some(seq));
                    }
                }
                _ => {}
            }
        }
        if acks_this_round > 0 {
            rounds_with_acks += 1;
        }
        total_acks += acks_this_round;

        check(&dir, round, &acked, max_audit_seq)?;
    }
    ensure!(
        rounds_with_acks * 10 >= rounds * 9,
        "only {rounds_with_acks} of {rounds} rounds acknowledged any write: the test did not exercise the store"
    );
    println!(
        "test kill_9_never_loses_an_acknowledged_write ... ok ({total_acks} acknowledged writes, {rounds_with_acks}/{rounds} rounds with writes)"
    );
    println!("\ntest result: ok. 1 passed; 0 failed");
    Ok(())
}

/// Reopens the store after a kill and checks every acknowledged write.
fn check(
    dir: &Path,
    round: u64,
    acked: &BTreeMap<String, Acked>,
    max_audit_seq: Option<u64>,
) -> anyhow::Result<()> {
    let store = SledStore::open(StoreConfig::new(dir))
        .with_context(|| format!("round {round}: the store does not open after kill -9"))?;
    let mut max_rv = 0;
    for (name, want) in acked {
        let key = ResourceKey::new(Kind::Container, "default", name.as_str());
        let got = store.get_blocking(&key)?.with_context(|| {
            format!("round {round}: acknowledged {name} (revision {}) is missing", want.revision)
        })?;
        let rv: u64 = got.metadata.resource_version.as_deref().unwrap_or("0").parse()?;
        ensure!(
            rv >= want.revision,
            "round {round}: {name} is at revision {rv}, older than the acknowledged {}",
            want.revision
        );
        if rv == want.revision {
            ensure!(
                got.spec["image"] == want.image.as_str(),
                "round {round}: {name} at revision {rv} has image {} but {} was acknowledged",
                got.spec["image"],
                want.image
            );
        }
        max_rv = max_rv.max(want.revision);
    }
    ensure!(store.revision() >= max_rv, "round {round}: revision went back");
    let report = store.verify_audit_blocking()?;
    ensure!(report.is_ok(), "round {round}: audit chain broken: {report:?}");
    if let Some(seq) = max_audit_seq {
        ensure!(report.events > seq, "round {round}: acknowledged audit event {seq} is missing");
    }
    store.close();
    Ok(())
}
