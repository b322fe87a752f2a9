//! Opening the sled store: damaged, foreign or locked data directories are refused with an error
//! naming the directory; a full disk fails writes cleanly without acknowledging them.

mod store_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_controller::store::{AuditLog, ResourceStore, SledStore, StoreConfig, StoreError};
use store_support::{alice, container, key, open, raw_sled, waiting_for_the_lock};

/// The error opening `dir`, which must not open, once sled has let go of the lock that the
/// test's own last handle held.
fn open_err(dir: &Path) -> StoreError {
    match waiting_for_the_lock(|| SledStore::open(StoreConfig::new(dir))) {
        Ok(_) => panic!("{} should not open", dir.display()),
        Err(e) => e,
    }
}

/// The error opening `dir` at once, with no waiting for a lock.
fn open_err_now(dir: &Path) -> StoreError {
    match SledStore::open(StoreConfig::new(dir)) {
        Ok(_) => panic!("{} should not open", dir.display()),
        Err(e) => e,
    }
}

fn names_dir(e: &StoreError, dir: &Path) -> bool {
    e.to_string().contains(&dir.display().to_string())
}

#[tokio::test]
async fn a_directory_locked_by_another_store_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let _running = open(dir.path());
    let e = open_err_now(dir.path());
    assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
    assert!(names_dir(&e, dir.path()), "{e}");
    Ok(())
}

#[tokio::test]
async fn garbage_in_the_data_directory_is_an_error_not_a_crash() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("conf"), b"\x00\x01garbage\xff")?;
    std::fs::write(dir.path().join("db"), vec![0xA5u8; 70_000])?;
    let e = open_err(dir.path());
    assert!(matches!(e, StoreError::Open { .. } | StoreError::Corrupt { .. }), "{e:?}");
    assert!(names_dir(&e, dir.path()), "{e}");
    Ok(())
}

#[tokio::test]
async fn foreign_data_without_the_format_marker_is_corrupt() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let db = raw_sled(dir.path())?;
        db.open_tree("resources")?.insert(b"x", b"y")?;
        db.flush()?;
    }
    let e = open_err(dir.path());
    assert!(
        matches!(e, StoreError::Corrupt { ref detail, .. } if detail.contains("format")),
        "{e:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_resource_newer_than_the_revision_is_corrupt() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    store.create(&alice(), container("web", "nginx")).await?;
    store.close();
    drop(store);
    {
        let db = raw_sled(dir.path())?;
        db.open_tree("meta")?.insert(b"revision", &0u64.to_be_bytes())?;
        db.flush()?;
    }
    let e = open_err(dir.path());
    assert!(
        matches!(e, StoreError::Corrupt { ref detail, .. } if detail.contains("beyond")),
        "{e:?}"
    );
    assert!(names_dir(&e, dir.path()), "{e}");
    Ok(())
}

#[tokio::test]
async fn an_undecodable_resource_is_corrupt() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    store.create(&alice(), container("web", "nginx")).await?;
    store.close();
    drop(store);
    {
        let db = raw_sled(dir.path())?;
        db.open_tree("resources")?.insert(b"Container\0default\0web", b"{not json")?;
        db.flush()?;
    }
    let e = open_err(dir.path());
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    Ok(())
}

#[tokio::test]
async fn a_missing_last_audit_event_is_corrupt() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    store.create(&alice(), container("a", "nginx")).await?;
    store.create(&alice(), container("b", "nginx")).await?;
    store.close();
    drop(store);
    {
        let db = raw_sled(dir.path())?;
        db.open_tree("audit")?.remove(1u64.to_be_bytes())?;
        db.flush()?;
    }
    let e = open_err(dir.path());
    assert!(
        matches!(e, StoreError::Corrupt { ref detail, .. } if detail.contains("audit")),
        "{e:?}"
    );
    Ok(())
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: PathBuf, size: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&path)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()?;
        anyhow::ensure!(
            status.success(),
            "cannot mount a tmpfs at {} (this test needs root, as CI runs): {status}",
            path.display()
        );
        Ok(Self { path })
    }

    fn resize(&self, size: &str) -> anyhow::Result<()> {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()?;
        anyhow::ensure!(status.success(), "cannot resize the tmpfs: {status}");
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test]
async fn a_full_disk_fails_writes_cleanly_and_loses_nothing_acknowledged() -> anyhow::Result<()> {
    let base = tempfile::tempdir()?;
    let fs = Tmpfs::mount(base.path().join("small"), "3m")?;
    let dir = fs.path.join("data");
    let store = open(&dir);
    let big = "x".repeat(16 * 1024);
    let mut acknowledged = Vec::new();
    let failure = loop {
        let name = format!("c{}", acknowledged.len());
        let mut obj = container(&name, "nginx");
        obj.spec["padding"] = serde_json::json!(big);
        match store.create(&alice(), obj).await {
            Ok(_) => acknowledged.push(name),
            Err(e) => break e,
        }
        anyhow::ensure!(acknowledged.len() < 10_000, "3 MiB never filled up");
    };
    assert!(matches!(failure, StoreError::Storage { .. }), "{failure:?}");
    assert!(failure.is_disk_full(), "expected a disk-full error: {failure:#?}");
    assert!(!acknowledged.is_empty());
    // Nothing more is accepted, nor read: the store stopped.
    let after = store.create(&alice(), container("later", "nginx")).await;
    assert!(matches!(after, Err(StoreError::Poisoned { .. })), "{after:?}");
    assert!(matches!(store.get(&key("c0")).await, Err(StoreError::Poisoned { .. })));
    store.close();
    drop(store);

    // With room again, everything acknowledged is there and the log verifies.
    fs.resize("64m")?;
    let store = open(&dir);
    for name in &acknowledged {
        assert!(store.get(&key(name)).await?.is_some(), "acknowledged {name} is missing");
    }
    assert!(store.verify().await?.is_ok());
    store.close();
    Ok(())
}
