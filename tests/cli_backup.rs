//! `berth backup` of a running server (through `GET /api/v1/system/backup`) and `berth
//! restore`, driven through the real binary against a real `berth serve` and the real Docker
//! Engine; the restored data directory is opened with the real store.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_controller::store::{AccountStore, ListQuery, SledStore, StoreConfig};
use berth_schemas::Kind;
use common::*;

fn image_manifest(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  reference: {}\n",
        test_image()
    )
}

/// No temporary download is left beside the target.
fn assert_no_partials(dir: &Path) {
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");
}

#[test]
fn an_online_backup_taken_while_writing_restores_every_acknowledged_write() {
    let s = Arc::new(Server::start());
    let ns = s.namespace("backup");
    let out = s.run_stdin(&["user", "create", "bob", "--role", "viewer"], "bob-password-123\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A writer applies one Image after another and records each acknowledged write.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (s, ns, acked, stop) = (s.clone(), ns.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("img-{i}");
                let f = write(dir.path(), &format!("{name}.yaml"), &image_manifest(&ns, &name));
                let o = s.run(&["apply", "-f", f.to_str().expect("utf-8 path")]);
                assert_eq!(o.status.code(), Some(0), "apply {name}: {}", stderr(&o));
                acked.lock().expect("lock").push(name);
                i += 1;
            }
        })
    };
    let count = || acked.lock().expect("lock").len();
    eventually(Duration::from_secs(60), "the writer acknowledges 3 writes", || {
        (count() >= 3).then_some(())
    });

    let out_dir = tempfile::tempdir().expect("tempdir");
    let file = out_dir.path().join("berth.backup");
    let before = count();
    let printed = s.ok(&["backup", file.to_str().expect("utf-8 path")]);
    let after_backup = count();
    eventually(Duration::from_secs(60), "the writer goes on after the backup", || {
        (count() > after_backup).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer thread");
    assert!(printed.contains("checksum verified"), "{printed}");
    assert_no_partials(out_dir.path());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).expect("backup file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the backup holds password hashes");
    }

    // The backup is audited with who took it.
    let audit = s.ok(&["audit", "--verb", "store.backup", "--json"]);
    let event: serde_json::Value =
        serde_json::from_str(audit.lines().next().expect("a store.backup event")).expect("json");
    assert_eq!(event["actor"], "user:admin", "{event}");
    assert_eq!(event["outcome"], "success", "{event}");

    let restored = out_dir.path().join("restored");
    let o = s.run(&["restore", file.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "restore: {}", stderr(&o));
    assert!(stdout(&o).contains("chain verified"), "{}", stdout(&o));
    // Restoring again into the now non-empty directory is refused.
    let o = s.run(&["restore", file.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));

    let store = SledStore::open(StoreConfig::new(&restored)).expect("the restored store opens");
    let images =
        store.list_blocking(&ListQuery::kind(Kind::Image).in_namespace(ns.clone())).expect("list");
    let names: Vec<String> = images.items.iter().map(|o| o.metadata.name.clone()).collect();
    let acked = acked.lock().expect("lock").clone();
    for name in &acked[..before] {
        assert!(names.contains(name), "{name} was acknowledged before the backup but is missing");
    }
    for name in &names {
        assert!(acked.contains(name), "{name} in the backup was never written");
    }
    // A consistent cut: the writes in the backup are a prefix of the acknowledged ones.
    let mut sorted = names.clone();
    sorted.sort_by_key(|x| x.trim_start_matches("img-").parse::<u32>().unwrap_or(u32::MAX));
    assert_eq!(sorted[..], acked[..sorted.len()]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let bob = runtime.block_on(store.get_user("bob")).expect("read user");
    assert!(bob.is_some(), "the account created before the backup is restored");
    let report = store.verify_audit_blocking().expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert!(report.events > 0);
    store.close();
    drop(store);

    // The binary opens the restored directory too (offline backup verifies the chain).
    let again = out_dir.path().join("again.backup");
    let printed =
        s.ok(&["backup", again.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()]);
    assert!(!printed.contains("broken"), "{printed}");
}

#[test]
fn viewers_and_operators_may_not_download_a_backup() {
    let s = Server::start();
    let out_dir = tempfile::tempdir().expect("tempdir");
    for role in ["viewer", "operator"] {
        let token = s.ok(&["token", "create", &format!("bk-{role}"), "--role", role]);
        let token = token.trim();
        assert!(token.starts_with("berth_"), "{token}");
        let file = out_dir.path().join(format!("{role}.backup"));
        let o = s.run(&["backup", file.to_str().unwrap(), "--server", &s.url, "--token", token]);
        assert_eq!(o.status.code(), Some(1), "{role}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("role {role} may not backup")), "{role}: {err}");
        assert!(!file.exists(), "{role}: nothing may be written");
        assert_no_partials(out_dir.path());
    }
    // Refusals are audited.
    let denied = s.ok(&["audit", "--verb", "request.denied", "--json"]);
    assert_eq!(denied.matches("/api/v1/system/backup").count(), 2, "{denied}");
}

/// Serves `bodies` one per connection on 127.0.0.1 as answers to `GET
/// /api/v1/system/backup`; a body with `Some(n)` declares `n` bytes but sends fewer and
/// closes (a download cut off mid-way).
fn fake_server(bodies: Vec<(Vec<u8>, Option<usize>)>) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        for (body, declared) in bodies {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            reader.read_line(&mut line).expect("request line");
            assert!(line.starts_with("GET /api/v1/system/backup "), "{line}");
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).expect("header") <= 2 {
                    break;
                }
            }
            let len = declared.unwrap_or(body.len());
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: \
                 {len}\r\nconnection: close\r\n\r\n"
            );
            conn.write_all(head.as_bytes()).expect("write head");
            conn.write_all(&body).expect("write body");
            conn.flush().expect("flush");
            drop(conn);
        }
    });
    (url, handle)
}

#[test]
fn a_truncated_or_corrupted_download_is_refused() {
    let s = Server::start();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let good = out_dir.path().join("good.backup");
    s.ok(&["backup", good.to_str().unwrap()]);
    let mut bytes = Vec::new();
    std::fs::File::open(&good).unwrap().read_to_end(&mut bytes).unwrap();
    assert!(bytes.len() > 100, "a real backup has some size");

    let truncated = bytes[..bytes.len() - 10].to_vec();
    let mut corrupted = bytes.clone();
    let mid = corrupted.len() / 2;
    corrupted[mid] ^= 0x55;
    let cut_off = bytes[..bytes.len() / 2].to_vec();
    let cases = vec![
        ("truncated", truncated, None, "damaged"),
        ("corrupted", corrupted, None, "damaged"),
        ("cut off", cut_off, Some(bytes.len()), "interrupted"),
    ];
    let (url, server) = fake_server(cases.iter().map(|(_, b, d, _)| (b.clone(), *d)).collect());
    for (what, _, _, expect) in &cases {
        let file = out_dir.path().join("from-fake.backup");
        let o = s.run(&["backup", file.to_str().unwrap(), "--server", &url, "--token", "t"]);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains(expect), "{what}: {err}");
        assert!(!file.exists(), "{what}: a bad download must not become the file");
        assert_no_partials(out_dir.path());
    }
    server.join().expect("fake server");

    // To standard output: the checked backup, byte for byte.
    let o = s.run(&["backup", "-"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.starts_with(b"BERTHBK1"), "a backup on stdout");
    assert!(stderr(&o).contains("checksum verified"), "{}", stderr(&o));
}
