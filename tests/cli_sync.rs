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

    let broken = tempfile::tempdir().unwrap();
    write(broken.path(), "x.yaml", "kind: [");
    let o = s.run(&["sync", broken.path().to_str().unwrap(), "--once", "--name", "other"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("x.yaml:1:"), "{}", stderr(&o));
}
