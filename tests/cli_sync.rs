//! `berth sync DIR` against a real server and Engine: files added, changed, removed and
//! broken; hand-applied resources left alone; polling mode.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

fn image(ns: &str, name: &str, extra_label: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    note: \"{extra_label}\"\nspec:\n  reference: {}\n",
        test_image()
    )
}

struct Sync {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Sync {
    fn start(s: &Server, dir: &std::path::Path, extra: &[&str]) -> Self {
        let mut child = s
            .berth()
            .args(["sync", dir.to_str().unwrap(), "--name", "repo", "--debounce", "300ms"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("berth sync starts");
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for a stderr line containing `needle` (a hang guard, not a timing assertion).
    fn expect_line(&self, needle: &str) -> String {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(LIMIT) {
                Ok(l) if l.contains(needle) => return l,
                Ok(l) => seen.push(l),
                Err(_) => {
                    panic!("no line with {needle:?} from berth sync; saw:\n{}", seen.join("\n"))
                }
            }
        }
    }
}

impl Drop for Sync {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn note(s: &Server, ns: &str, name: &str) -> Option<String> {
    s.get_json("image", ns, name)
        .map(|v| v["metadata"]["labels"]["note"].as_str().unwrap_or("").to_owned())
}

#[test]
fn sync_applies_added_changed_and_removed_files_and_keeps_the_last_good_state_on_a_broken_one() {
    let s = Server::start();
    let ns = s.namespace("sync");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &image(&ns, "a", "v1"));
    // A resource applied by hand, with no sync label: never pruned.
    let hand = tempfile::tempdir().unwrap();
    let h = write(hand.path(), "h.yaml", &image(&ns, "by-hand", "manual"));
    s.ok(&["apply", "-f", h.to_str().unwrap()]);

    let sync = Sync::start(&s, dir.path(), &[]);
    sync.expect_line("sync: applied");
    let a = s.get_json("image", &ns, "a").expect("a is applied");
    assert_eq!(a["metadata"]["labels"]["berth.dev/sync-source"], "repo");

    // Added.
    write(dir.path(), "sub/b.yaml", &image(&ns, "b", "v1"));
    sync.expect_line("sync: applied");
    assert!(s.get_json("image", &ns, "b").is_some());

    // Changed.
    write(dir.path(), "a.yaml", &image(&ns, "a", "v2"));
    sync.expect_line("sync: applied");
    assert_eq!(note(&s, &ns, "a").as_deref(), Some("v2"));

    // Broken: reported with file:line:col, and nothing of the set is applied.
    write(dir.path(), "a.yaml", &image(&ns, "a", "v3"));
    let bad = write(dir.path(), "c.yaml", &image(&ns, "c", "x").replace("reference:", "refrence:"));
    let line = sync.expect_line("broken manifest");
    assert!(line.contains(&format!("{}:", bad.display())), "{line}");
    sync.expect_line("nothing applied");
    assert_eq!(note(&s, &ns, "a").as_deref(), Some("v2"), "the last good state stays");
    assert!(s.get_json("image", &ns, "c").is_none());

    // Fixed and one file removed: applied once, the removed one pruned, the hand-applied kept.
    std::fs::remove_file(&bad).unwrap();
    std::fs::remove_file(dir.path().join("sub/b.yaml")).unwrap();
    sync.expect_line("sync: applied");
    assert_eq!(note(&s, &ns, "a").as_deref(), Some("v3"));
    eventually(LIMIT, "image b is pruned", || {
        s.get_json("image", &ns, "b").is_none().then_some(())
    });
    assert!(s.get_json("image", &ns, "by-hand").is_some(), "hand-applied resources stay");
}

#[test]
fn sync_by_polling_notices_a_change_and_once_mode_reports_a_broken_directory() {
    let s = Server::start();
    let ns = s.namespace("poll");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &image(&ns, "a", "v1"));
    let sync = Sync::start(&s, dir.path(), &["--poll", "--poll-interval", "200ms"]);
    sync.expect_line("sync: applied");
    write(dir.path(), "a.yaml", &image(&ns, "a", "v2"));
    sync.expect_line("sync: applied");
    assert_eq!(note(&s, &ns, "a").as_deref(), Some("v2"));
    drop(sync);
    // This server syncs no directory of its own.
    let st = s.ok(&["sync", "status", "-o", "json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&st).unwrap()["enabled"], false, "{st}");
    assert!(s.ok(&["sync", "status"]).contains("syncs no directory"));

    let broken = tempfile::tempdir().unwrap();
    write(broken.path(), "x.yaml", "kind: [");
    let o = s.run(&["sync", broken.path().to_str().unwrap(), "--once", "--name", "other"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("x.yaml:1:"), "{}", stderr(&o));
}

/// Runs git in `dir` with a fixed identity.
fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git")
        .args(["-c", "user.name=berth-test", "-c", "user.email=test@berth.invalid"])
        .args(["-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git must be installed");
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn sync_status(s: &Server) -> serde_json::Value {
    let out = s.ok(&["sync", "status", "-o", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("sync status is JSON ({e}): {out}"))
}

#[test]
fn serve_sync_dir_reports_commit_applied_time_counts_and_a_broken_file_through_the_api() {
    let repo = tempfile::tempdir().unwrap();
    let ns = unique_ns("status");
    write(repo.path(), "a.yaml", &image(&ns, "a", "v1"));
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-q", "-m", "first"]);
    let first = git(repo.path(), &["rev-parse", "HEAD"]);

    let s = Server::start_with(&["--sync-dir", repo.path().to_str().unwrap()]);
    s.namespaces.lock().unwrap().push(ns.clone());
    let st = eventually(LIMIT, "the sync status shows the first commit applied", || {
        let v = sync_status(&s);
        (v["state"] == "ok" && v["commit"] == first.as_str()).then_some(v)
    });
    assert_eq!(st["enabled"], true);
    assert_eq!(st["directory"], repo.path().to_str().unwrap());
    assert_eq!(st["resources"], 1);
    assert_eq!(st["counts"]["Image"]["created"], 1, "{st}");
    let applied_at = st["lastAppliedAt"].as_str().expect("an applied time").to_owned();
    assert!(st["lastError"].is_null(), "{st}");
    let table = s.ok(&["sync", "status"]);
    assert!(table.contains(&first) && table.contains("ok"), "{table}");

    // A broken file: the status names it with its line; the last good state stays in force.
    let bad =
        write(repo.path(), "b.yaml", &image(&ns, "b", "x").replace("reference:", "refrence:"));
    let st = eventually(LIMIT, "the sync status shows the broken file", || {
        let v = sync_status(&s);
        (v["state"] == "error").then_some(v)
    });
    let err = &st["lastError"];
    assert_eq!(err["file"], bad.to_str().unwrap(), "{st}");
    let line = err["line"].as_u64().expect("a line number");
    assert!(line >= 8, "the line of the misspelt field or of its spec: {st}");
    assert!(err["message"].as_str().unwrap().contains("nothing applied"), "{st}");
    assert_eq!(st["commit"], first.as_str(), "the applied commit stays: {st}");
    assert_eq!(st["lastAppliedAt"], applied_at.as_str(), "{st}");
    assert!(s.get_json("image", &ns, "a").is_some(), "the last good state stays");
    assert!(s.get_json("image", &ns, "b").is_none(), "nothing of the broken set is applied");
    let table = s.ok(&["sync", "status"]);
    assert!(
        table.contains("error") && table.contains(&format!("{}:{line}:", bad.display())),
        "{table}"
    );
    let audit = s.ok(&["audit", "--verb", "sync.error", "--json"]);
    assert!(audit.contains("b.yaml"), "the broken file is an audit event: {audit}");

    // Fixed and committed: applied, and the status follows HEAD.
    write(repo.path(), "b.yaml", &image(&ns, "b", "v1"));
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-q", "-m", "second"]);
    let second = git(repo.path(), &["rev-parse", "HEAD"]);
    let st = eventually(LIMIT, "the sync status shows the second commit applied", || {
        let v = sync_status(&s);
        (v["state"] == "ok" && v["commit"] == second.as_str()).then_some(v)
    });
    assert!(st["lastError"].is_null(), "{st}");
    assert_eq!(st["resources"], 2, "{st}");
    assert!(s.get_json("image", &ns, "b").is_some());
}
