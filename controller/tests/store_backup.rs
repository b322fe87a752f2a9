//! Backup and restore of the sled store: a consistent snapshot taken while writers run,
//! restored into an empty directory, with the audit chain verified.

mod store_support;

use berth_controller::store::{
    AccountStore, AuditLog, ListQuery, NewUser, ResourceStore, Role, StoreConfig, StoreError,
    WriteContext, backup,
};
use serde_json::json;
use store_support::{alice, container, key, open};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writing_restores_to_a_consistent_store() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir.path().join("live"));
    store
        .create_user(
            &alice(),
            NewUser {
                username: "alice".into(),
                password_hash: "$argon2id$fake".into(),
                role: Role::Admin,
            },
        )
        .await?;
    for i in 0..50 {
        store.create(&alice(), container(&format!("c{i}"), "nginx")).await?;
    }

    // Writers keep going while the backup is taken.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                store
                    .apply(&alice(), container(&format!("c{}", i % 60), &format!("nginx:{i}")))
                    .await?;
                store
                    .update_status(
                        &WriteContext::controller(),
                        &key(&format!("c{}", i % 50)),
                        json!({"n": i}),
                    )
                    .await?;
            }
            Ok::<_, StoreError>(())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let file = dir.path().join("berth.backup");
    let summary = {
        let store = store.clone();
        let file = file.clone();
        tokio::task::spawn_blocking(move || store.backup(&file)).await??
    };
    writer.await??;
    assert!(summary.records > 0);
    assert_eq!(backup::check(&file)?.header, summary.header);

    let restored_dir = dir.path().join("restored");
    let restored_summary = backup::restore(&file, &StoreConfig::new(&restored_dir))?;
    assert_eq!(restored_summary.header.revision, summary.header.revision);

    let restored = open(&restored_dir);
    // The snapshot is one point in time: its revision, and no object newer than it.
    assert_eq!(restored.revision(), summary.header.revision);
    let list = restored.list(&ListQuery::default()).await?;
    for o in &list.items {
        let rv: u64 = o.metadata.resource_version.as_deref().unwrap_or("0").parse()?;
        assert!(rv <= summary.header.revision, "{} at {rv} is newer than the snapshot", o.key());
    }
    let report = restored.verify().await?;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events, summary.header.audit_events);
    assert!(restored.get_user("alice").await?.is_some());

    // Every event in the restored log is in the live log, unchanged.
    let live_report = store.verify().await?;
    assert!(live_report.is_ok());
    assert!(live_report.events >= report.events);

    // And the restored store takes writes, continuing the revision.
    let r = restored.create(&alice(), container("after-restore", "nginx")).await?;
    assert_eq!(r.revision, summary.header.revision + 1);
    Ok(())
}

#[tokio::test]
async fn a_quiet_store_round_trips_exactly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir.path().join("live"));
    for i in 0..20 {
        store.create(&alice(), container(&format!("c{i}"), "nginx")).await?;
    }
    store.delete(&alice(), &key("c3")).await?;
    let file = dir.path().join("b");
    store.backup(&file)?;
    let restored_dir = dir.path().join("restored");
    backup::restore(&file, &StoreConfig::new(&restored_dir))?;
    let restored = open(&restored_dir);
    assert_eq!(
        restored.list(&ListQuery::default()).await?,
        store.list(&ListQuery::default()).await?
    );
    assert_eq!(restored.verify().await?, store.verify().await?);
    Ok(())
}

#[tokio::test]
async fn restore_refuses_a_directory_that_is_not_empty() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir.path().join("live"));
    store.create(&alice(), container("web", "nginx")).await?;
    let file = dir.path().join("b");
    store.backup(&file)?;
    let target = dir.path().join("occupied");
    std::fs::create_dir_all(&target)?;
    std::fs::write(target.join("keep-me"), "important")?;
    let err = backup::restore(&file, &StoreConfig::new(&target));
    assert!(matches!(err, Err(StoreError::Backup { .. })), "{err:?}");
    assert_eq!(std::fs::read_to_string(target.join("keep-me"))?, "important");
    // Restoring into the live directory is refused the same way.
    let err = backup::restore(&file, &StoreConfig::new(dir.path().join("live")));
    assert!(matches!(err, Err(StoreError::Backup { .. })), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn a_damaged_backup_is_refused_and_leaves_nothing_behind() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir.path().join("live"));
    for i in 0..10 {
        store.create(&alice(), container(&format!("c{i}"), "nginx")).await?;
    }
    let file = dir.path().join("b");
    store.backup(&file)?;
    let good = std::fs::read(&file)?;

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    let damaged = dir.path().join("flipped");
    std::fs::write(&damaged, &flipped)?;
    let target = dir.path().join("t1");
    match backup::restore(&damaged, &StoreConfig::new(&target)) {
        Err(StoreError::Backup { .. }) => {}
        other => panic!("expected a damaged-backup error, got {other:?}"),
    }
    assert!(!target.exists(), "a failed restore must leave no data directory");

    let truncated = dir.path().join("truncated");
    std::fs::write(&truncated, &good[..good.len() - 100])?;
    assert!(matches!(
        backup::restore(&truncated, &StoreConfig::new(dir.path().join("t2"))),
        Err(StoreError::Backup { .. })
    ));

    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"this is not a backup at all, just some text of sufficient length")?;
    assert!(matches!(backup::check(&garbage), Err(StoreError::Backup { .. })));
    Ok(())
}

#[tokio::test]
async fn a_streamed_backup_is_the_same_file_and_restores() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir.path().join("live"));
    for i in 0..20 {
        store.create(&alice(), container(&format!("c{i}"), "nginx")).await?;
    }
    let mut streamed = Vec::new();
    let summary = store.backup_to(&mut streamed)?;
    assert_eq!(summary.bytes, streamed.len() as u64);
    let file = dir.path().join("streamed");
    std::fs::write(&file, &streamed)?;
    assert_eq!(backup::check(&file)?.header, summary.header);
    let restored_dir = dir.path().join("restored");
    backup::restore(&file, &StoreConfig::new(&restored_dir))?;
    let restored = open(&restored_dir);
    assert_eq!(
        restored.list(&ListQuery::default()).await?,
        store.list(&ListQuery::default()).await?
    );
    assert!(restored.verify().await?.is_ok());
    Ok(())
}

/// A sink that takes `room` bytes, then fails as a closed socket does.
struct FailingSink {
    taken: Vec<u8>,
    room: usize,
}

impl std::io::Write for FailingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.taken.len() >= self.room {
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone"));
        }
        let n = buf.len().min(self.room - self.taken.len());
        self.taken.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_streamed_backup_cut_off_by_its_sink_fails_and_its_prefix_is_refused()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir.path().join("live"));
    for i in 0..20 {
        store.create(&alice(), container(&format!("c{i}"), "nginx")).await?;
    }
    let mut sink = FailingSink { taken: Vec::new(), room: 1000 };
    let err = store.backup_to(&mut sink);
    assert!(matches!(err, Err(StoreError::Backup { .. })), "{err:?}");
    let prefix = dir.path().join("prefix");
    std::fs::write(&prefix, &sink.taken)?;
    assert!(matches!(backup::check(&prefix), Err(StoreError::Backup { .. })));
    // The store is unharmed and keeps serving.
    store.create(&alice(), container("after", "nginx")).await?;
    Ok(())
}
