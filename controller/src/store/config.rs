//! How a store is opened: where, how much memory it may use, how much change history it keeps.

use std::path::PathBuf;

use super::audit::{AuditKey, AuditRetention};

/// The default cap on the engine's page cache: 16 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Settings for [`SledStore::open`](super::SledStore::open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The data directory (created when missing).
    pub data_dir: PathBuf,
    /// Cap on the engine's page cache, in bytes (default [`DEFAULT_CACHE_BYTES`]).
    pub cache_bytes: u64,
    /// How many change events are kept in memory for watchers to resume from (default 1024; about 4 KiB of memory each).
    pub watch_history: usize,
    /// How many events a watcher may have waiting before it is cut off (default 1024).
    pub watch_buffer: usize,
    /// The most writes committed with one flush (default 512).
    pub max_batch: usize,
    /// Check the whole audit chain when opening (default `false`: only the head is checked;
    /// `berth audit verify` checks everything).
    pub verify_audit_on_open: bool,
    /// The key of the audit chain (default `None`: new events are unkeyed SHA-256). `berth
    /// serve` always gives one ([`AuditKey::load_or_create`]).
    pub audit_key: Option<AuditKey>,
    /// Which audit events [`SledStore::prune_audit`](super::SledStore::prune_audit) removes
    /// (default: none).
    pub audit_retention: AuditRetention,
}

impl StoreConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            cache_bytes: DEFAULT_CACHE_BYTES,
            watch_history: 1024,
            watch_buffer: 1024,
            max_batch: 512,
            verify_audit_on_open: false,
            audit_key: None,
            audit_retention: AuditRetention::default(),
        }
    }
}
