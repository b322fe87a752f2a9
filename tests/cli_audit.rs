//! The data directory's permissions and the keyed audit chain, through the real `berth`
//! binary (issue 11, holes 6 and 15): a fresh `berth serve --data-dir` leaves nothing readable
//! by other users, a loose existing directory is tightened with a warning, and `berth audit
//! head` / `berth audit verify --expect-head` anchor the chain.

mod common;

use std::path::Path;

use common::{Server, stdout};

/// Every file and directory under `dir` (and `dir` itself) with group or other bits.
#[cfg(unix)]
fn readable_by_others(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            out.push(format!("{} {mode:o}", path.display()));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        }
    }
    out
}

#[cfg(unix)]
#[test]
fn a_fresh_data_dir_and_everything_in_it_is_owner_only() {
    let s = Server::start();
    // Writes that create store files and snapshots, then a clean stop flushes.
    s.ok(&["audit", "verify"]);
    let data = s.data.path().join("data");
    let loose = readable_by_others(&data);
    assert!(loose.is_empty(), "readable by other users: {loose:?}");
    for key in ["jwt.key", "audit.key"] {
        assert!(data.join(key).is_file(), "{key} is created in the data directory");
    }
}

#[cfg(unix)]
#[test]
fn a_loose_existing_data_dir_is_tightened_with_a_warning_naming_what_changed() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let leftover = data.join("leftover-notes");
    std::fs::write(&leftover, "from an older berth").expect("write");
    std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let s = Server::start_in(tmp, &[]);
    let data = s.data.path().join("data");
    let loose = readable_by_others(&data);
    assert!(loose.is_empty(), "readable by other users: {loose:?}");
    let log = s.log();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("tightened") && l.contains("leftover-notes"))
        .unwrap_or_else(|| panic!("no warning naming the loose file:\n{log}"));
    assert!(warning.contains("644") && warning.contains("600"), "{warning}");
    assert!(
        log.lines().any(|l| l.contains("tightened") && l.contains("755")),
        "no warning naming the loose directory:\n{log}"
    );
}

#[test]
fn audit_head_is_checked_by_verify_expect_head() {
    let s = Server::start();
    let head = s.ok(&["audit", "head"]);
    let head = head.trim();
    let (seq, hash) = head.split_once(':').unwrap_or_else(|| panic!("SEQ:HASH, got {head:?}"));
    assert!(seq.parse::<u64>().is_ok() && hash.len() == 64, "{head}");

    let verify = s.ok(&["audit", "verify", "--expect-head", head]);
    assert!(verify.starts_with("audit log intact"), "{verify}");
    assert!(verify.contains("verified from seq 0"), "{verify}");
    assert!(verify.contains("every event keyed (HMAC-SHA256)"), "{verify}");
    assert!(verify.contains(&format!("expected head {head} is in the chain")), "{verify}");
    // The hash alone works too.
    s.ok(&["audit", "verify", "--expect-head", hash]);

    // A head that a rewritten history would answer: same seq, another hash.
    let other = format!("{seq}:{}", "ab".repeat(32));
    let o = s.run(&["audit", "verify", "--expect-head", &other]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("does NOT contain the expected head"), "{}", stdout(&o));
    assert!(stdout(&o).contains("rewritten"), "{}", stdout(&o));
    // A head beyond the end (events cut off, or another log).
    let beyond = format!("{}:{hash}", seq.parse::<u64>().unwrap_or(0) + 1000);
    let o = s.run(&["audit", "verify", "--expect-head", &beyond]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));

    // Not a head at all: a clear error, not a verdict.
    let o = s.run(&["audit", "verify", "--expect-head", "not-a-head"]);
    assert_ne!(o.status.code(), Some(0));
    let err = common::stderr(&o);
    assert!(err.contains("expectHead") || err.contains("64 hex digits"), "{err}");
}
