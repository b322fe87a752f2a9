//! Backups: a consistent snapshot of the whole store (resources, audit log, accounts) taken
//! while it runs, and restore into an empty data directory.
//!
//! # File format (`berth-backup` version 1)
//!
//! ```text
//! "BERTHBK1"                          8-byte magic
//! u32 BE length, header JSON           format, version, created, revision, audit events, trees
//! records, each:                       u8 tree index, u32 BE key length, key, u32 BE value
//!                                      length, value (the engine's records as they are)
//! 0xFF                                 end of records
//! 32 bytes                             SHA-256 of everything before
//! ```
//!
//! Restore reads the whole file and checks its checksum before writing anything, writes into
//! an empty directory, then opens the result with a full audit-chain check.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StoreResult;
use super::config::StoreConfig;
use super::engine::{META_AUDIT_HEAD, SledStore, TREE_NAMES, open_engine_for_restore};
use super::error::{EngineError, StoreError};

const MAGIC: &[u8; 8] = b"BERTHBK1";
const END: u8 = 0xFF;
const MAX_HEADER: u32 = 1 << 20;
const MAX_RECORD: u32 = 1 << 30;

/// What a backup holds, from its header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupHeader {
    /// Always `berth-backup`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// When the snapshot was taken.
    pub created: DateTime<Utc>,
    /// The store revision at the snapshot.
    pub revision: u64,
    /// How many audit events it holds.
    pub audit_events: u64,
    /// The engine's tree names, indexed by the records' tree byte.
    pub trees: Vec<String>,
}

/// What a backup or restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// The header written or read.
    pub header: BackupHeader,
    /// Records copied.
    pub records: u64,
    /// Size of the backup file.
    pub bytes: u64,
}

fn backup_err(
    path: &Path,
    detail: impl Into<String>,
    source: Option<std::io::Error>,
) -> StoreError {
    StoreError::Backup { path: path.to_owned(), detail: detail.into(), source }
}

/// Writes through to a file while hashing.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_record(w: &mut impl Write, tree: u8, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    let len = |n: usize| u32::try_from(n).map_err(|_| std::io::Error::other("record too large"));
    w.write_all(&[tree])?;
    w.write_all(&len(key.len())?.to_be_bytes())?;
    w.write_all(key)?;
    w.write_all(&len(value.len())?.to_be_bytes())?;
    w.write_all(value)
}

impl SledStore {
    /// Writes a consistent snapshot of the whole store to `path` while the store keeps
    /// serving. The file appears complete or not at all (written beside it, then renamed).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backup`] when the file cannot be written; storage errors.
    pub fn backup(&self, path: &Path) -> StoreResult<BackupSummary> {
        let tmp = temp_path(path);
        let io = |detail: &str, e: std::io::Error| backup_err(path, detail, Some(e));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            // A backup holds password and token hashes: readable by its owner only.
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options.open(&tmp).map_err(|e| io("cannot create the backup file", e))?;
        let mut w = BufWriter::new(file);
        let result = (|| -> StoreResult<BackupSummary> {
            let summary = self.write_backup(&mut w, path)?;
            let file =
                w.into_inner().map_err(|e| io("cannot write the backup file", e.into_error()))?;
            file.sync_all().map_err(|e| io("cannot sync the backup file", e))?;
            std::fs::rename(&tmp, path).map_err(|e| io("cannot move the backup into place", e))?;
            Ok(summary)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Writes a consistent snapshot of the whole store to `sink` (a socket, a pipe) while the
    /// store keeps serving, in the same format as [`SledStore::backup`]. Memory stays bounded
    /// by the small trees (resources, accounts, metadata); the audit log is streamed.
    ///
    /// When `sink` fails part-way, what was written is a prefix without the trailing
    /// checksum: a reader refuses it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backup`] (naming `<stream>`) when `sink` fails; storage errors.
    pub fn backup_to(&self, sink: &mut dyn Write) -> StoreResult<BackupSummary> {
        self.write_backup(sink, Path::new("<stream>"))
    }

    /// The snapshot itself. Writers wait only while the small trees (resources, accounts,
    /// metadata) are copied to memory; the audit log, which is append-only, is streamed
    /// afterwards up to the head recorded at that moment.
    fn write_backup(&self, sink: &mut dyn Write, path: &Path) -> StoreResult<BackupSummary> {
        let core = self.core();
        let storage = |e: sled::Error| StoreError::Storage {
            data_dir: core.data_dir.clone(),
            source: EngineError::new(e),
        };
        let audit_index = TREE_NAMES.iter().position(|n| *n == "audit").unwrap_or(usize::MAX);
        let meta_index = TREE_NAMES.iter().position(|n| *n == "meta").unwrap_or(usize::MAX);
        let mut snapshot: Vec<(u8, sled::IVec, sled::IVec)> = Vec::new();
        let revision;
        let audit_end;
        {
            let _batch = core.batch_lock.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            revision = self.revision_now();
            for (i, tree) in core.trees.iter().enumerate() {
                if i == audit_index {
                    continue;
                }
                for item in tree.iter() {
                    let (k, v) = item.map_err(storage)?;
                    snapshot.push((i as u8, k, v));
                }
            }
            let head = core.trees[meta_index].get(META_AUDIT_HEAD).map_err(storage)?;
            audit_end = head
                .and_then(|h| h.get(..8).and_then(|s| s.try_into().ok()).map(u64::from_be_bytes))
                .map_or(0, |seq| seq + 1);
        }

        let header = BackupHeader {
            format: "berth-backup".into(),
            version: 1,
            created: Utc::now(),
            revision,
            audit_events: audit_end,
            trees: TREE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
        };
        let write_err = |e| backup_err(path, "cannot write the backup", Some(e));
        let mut w = HashingWriter { inner: sink, hasher: Sha256::new(), bytes: 0 };
        let mut records = 0u64;
        let header_json = serde_json::to_vec(&header)
            .map_err(|e| backup_err(path, format!("cannot encode header: {e}"), None))?;
        w.write_all(MAGIC).map_err(write_err)?;
        w.write_all(&(header_json.len() as u32).to_be_bytes()).map_err(write_err)?;
        w.write_all(&header_json).map_err(write_err)?;
        for (tree, k, v) in &snapshot {
            write_record(&mut w, *tree, k, v).map_err(write_err)?;
            records += 1;
        }
        drop(snapshot);
        let audit = &core.trees[audit_index];
        for item in audit.range(0u64.to_be_bytes()..audit_end.to_be_bytes()) {
            let (k, v) = item.map_err(storage)?;
            write_record(&mut w, audit_index as u8, &k, &v).map_err(write_err)?;
            records += 1;
        }
        w.write_all(&[END]).map_err(write_err)?;
        let digest = w.hasher.clone().finalize();
        w.inner.write_all(&digest).map_err(write_err)?;
        w.inner.flush().map_err(write_err)?;
        let bytes = w.bytes + digest.len() as u64;
        Ok(BackupSummary { header, records, bytes })
    }

    fn revision_now(&self) -> u64 {
        super::ResourceStore::revision(self)
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

/// Reads a backup, checking its structure and checksum, calling `record` for each record.
fn read_backup(
    path: &Path,
    mut record: impl FnMut(u8, Vec<u8>, Vec<u8>) -> StoreResult<()>,
) -> StoreResult<(BackupHeader, u64)> {
    let file =
        File::open(path).map_err(|e| backup_err(path, "cannot open the backup file", Some(e)))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size < (MAGIC.len() + 4 + 1 + 32) as u64 {
        return Err(backup_err(path, "file is too short to be a berth backup", None));
    }
    let body_len = size - 32;
    let mut r = BufReader::new(file).take(body_len);
    let mut hasher = Sha256::new();
    let truncated =
        |e: std::io::Error| backup_err(path, "file is truncated or unreadable", Some(e));
    let mut read = |r: &mut std::io::Take<BufReader<File>>, n: usize| -> StoreResult<Vec<u8>> {
        let mut buf = vec![0u8; n];
        r.read_exact(&mut buf).map_err(truncated)?;
        hasher.update(&buf);
        Ok(buf)
    };
    let len = |b: Vec<u8>| b.try_into().map(u32::from_be_bytes).unwrap_or(u32::MAX);
    if read(&mut r, MAGIC.len())? != MAGIC {
        return Err(backup_err(path, "not a berth backup (bad magic)", None));
    }
    let header_len = len(read(&mut r, 4)?);
    if header_len > MAX_HEADER {
        return Err(backup_err(path, "header is too large", None));
    }
    let header: BackupHeader = serde_json::from_slice(&read(&mut r, header_len as usize)?)
        .map_err(|e| backup_err(path, format!("header is not valid: {e}"), None))?;
    if header.format != "berth-backup" || header.version != 1 {
        return Err(backup_err(
            path,
            format!("unsupported backup format {} version {}", header.format, header.version),
            None,
        ));
    }
    if header.trees != TREE_NAMES {
        return Err(backup_err(path, "backup was made with a different set of trees", None));
    }
    let mut records = 0u64;
    loop {
        let tree = read(&mut r, 1)?[0];
        if tree == END {
            break;
        }
        if usize::from(tree) >= TREE_NAMES.len() {
            return Err(backup_err(
                path,
                format!("record {records} names unknown tree {tree}"),
                None,
            ));
        }
        let klen = len(read(&mut r, 4)?);
        if klen > MAX_RECORD {
            return Err(backup_err(path, format!("record {records} is too large"), None));
        }
        let key = read(&mut r, klen as usize)?;
        let vlen = len(read(&mut r, 4)?);
        if vlen > MAX_RECORD {
            return Err(backup_err(path, format!("record {records} is too large"), None));
        }
        let value = read(&mut r, vlen as usize)?;
        record(tree, key, value)?;
        records += 1;
    }
    if r.limit() != 0 {
        return Err(backup_err(path, "unexpected data after the last record", None));
    }
    let mut digest = [0u8; 32];
    r.into_inner().read_exact(&mut digest).map_err(truncated)?;
    if hasher.finalize().as_slice() != digest {
        return Err(backup_err(path, "checksum does not match: the file is damaged", None));
    }
    Ok((header, records))
}

/// Checks a backup file without restoring it: structure and checksum.
///
/// # Errors
///
/// [`StoreError::Backup`] naming what is wrong.
pub fn check(path: &Path) -> StoreResult<BackupSummary> {
    let (header, records) = read_backup(path, |_, _, _| Ok(()))?;
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(BackupSummary { header, records, bytes })
}

/// Restores a backup into `config.data_dir`, which must be missing or empty, then opens the
/// result with a full audit-chain check and closes it again.
///
/// # Errors
///
/// [`StoreError::Backup`] for a damaged file or a non-empty target directory;
/// [`StoreError::Corrupt`] when the restored store fails its checks (the directory is removed
/// again); storage errors.
pub fn restore(path: &Path, config: &StoreConfig) -> StoreResult<BackupSummary> {
    let dir = &config.data_dir;
    let existed = dir.exists();
    if existed {
        let mut entries = std::fs::read_dir(dir)
            .map_err(|e| backup_err(path, format!("cannot read {}", dir.display()), Some(e)))?;
        if entries.next().is_some() {
            return Err(backup_err(
                path,
                format!("restore needs an empty data directory; {} is not empty", dir.display()),
                None,
            ));
        }
    }
    // First pass: the whole file must check out before anything is written.
    let summary = check(path)?;

    let cleanup = || {
        let _ = std::fs::remove_dir_all(dir);
        if existed {
            let _ = std::fs::create_dir_all(dir);
        }
    };
    let result = (|| -> StoreResult<()> {
        let open_err = |e: sled::Error| StoreError::Open {
            data_dir: dir.clone(),
            source: EngineError::new(e),
        };
        // Owner-only from the start: a backup holds password and token hashes.
        super::datadir::create_private(dir).map_err(|e| open_err(sled::Error::Io(e)))?;
        let db = open_engine_for_restore(
            &sled::Config::new().path(dir).cache_capacity(config.cache_bytes),
        )
        .map_err(open_err)?;
        let trees = TREE_NAMES
            .iter()
            .map(|n| db.open_tree(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(open_err)?;
        read_backup(path, |tree, key, value| {
            trees[usize::from(tree)].insert(key, value).map(|_| ()).map_err(open_err)
        })?;
        db.flush().map_err(open_err)?;
        drop(trees);
        drop(db);
        let mut check_config = config.clone();
        check_config.verify_audit_on_open = true;
        let store = SledStore::open(check_config)?;
        store.close();
        Ok(())
    })();
    if let Err(e) = result {
        cleanup();
        return Err(e);
    }
    Ok(summary)
}
