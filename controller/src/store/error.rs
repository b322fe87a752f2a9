//! What can go wrong in the store, classified for callers: conflicts and missing objects map to
//! 4xx answers, the rest means the data directory is unusable.

use std::fmt;
use std::path::PathBuf;

use berth_schemas::ResourceKey;

/// An error from the storage engine underneath. Opaque on purpose: callers never depend on the
/// engine; its message is kept for logs.
#[derive(Debug)]
pub struct EngineError(pub(crate) Box<dyn std::error::Error + Send + Sync + 'static>);

impl EngineError {
    pub(crate) fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(e))
    }

    /// Whether the cause is the disk being full (`ENOSPC` / `EDQUOT`).
    pub fn is_disk_full(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self.0.as_ref());
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                // 28 = ENOSPC, 122 = EDQUOT on Linux.
                if io.kind() == std::io::ErrorKind::StorageFull
                    || matches!(io.raw_os_error(), Some(28 | 122))
                {
                    return true;
                }
            }
            if let Some(sled::Error::Io(io)) = e.downcast_ref::<sled::Error>()
                && (io.kind() == std::io::ErrorKind::StorageFull
                    || matches!(io.raw_os_error(), Some(28 | 122)))
            {
                return true;
            }
            cause = e.source();
        }
        false
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Errors from [`ResourceStore`](super::ResourceStore), [`AuditLog`](super::AuditLog) and
/// [`AccountStore`](super::AccountStore).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be opened (missing permissions, locked by another berth,
    /// unreadable files). berth must refuse to start.
    #[error("cannot open the store in {data_dir}")]
    Open {
        /// The data directory.
        data_dir: PathBuf,
        /// What the engine said.
        #[source]
        source: EngineError,
    },
    /// The data directory opened but failed its checks (corrupt records, broken revision or
    /// audit chain, unknown format). berth must refuse to start rather than serve partial state.
    #[error("the store in {data_dir} is corrupt: {detail}")]
    Corrupt {
        /// The data directory.
        data_dir: PathBuf,
        /// Which check failed.
        detail: String,
    },
    /// A write or read failed in the engine. The store is poisoned afterwards: nothing later is
    /// acknowledged, and berth should restart.
    #[error("storage failure in {data_dir}{}", if source.is_disk_full() { " (disk full)" } else { "" })]
    Storage {
        /// The data directory.
        data_dir: PathBuf,
        /// What the engine said.
        #[source]
        source: EngineError,
    },
    /// An earlier storage failure stopped the store; no write is accepted any more.
    #[error("the store in {data_dir} stopped after a storage failure; restart berth")]
    Poisoned {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The store was shut down.
    #[error("the store is closed")]
    Closed,
    /// The object does not exist.
    #[error("{key} not found")]
    NotFound {
        /// The object's key.
        key: ResourceKey,
    },
    /// `create` of an object that already exists.
    #[error("{key} already exists")]
    AlreadyExists {
        /// The object's key.
        key: ResourceKey,
    },
    /// The write named a `resourceVersion` that is not the current one (HTTP 409).
    #[error("{key}: resourceVersion {expected} is stale (current: {})", actual.as_deref().unwrap_or("object does not exist"))]
    Conflict {
        /// The object's key.
        key: ResourceKey,
        /// The `resourceVersion` the write named.
        expected: String,
        /// The current `resourceVersion` (`None` when the object does not exist).
        actual: Option<String>,
    },
    /// The object is being deleted; its spec can no longer change and no finalizer can be added.
    #[error("{key} is being deleted")]
    Terminating {
        /// The object's key.
        key: ResourceKey,
    },
    /// The request cannot be stored as given (empty name, a NUL byte in a key, an account
    /// record that is not well formed).
    #[error("invalid request: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// An account record (user, token, refresh family) does not exist.
    #[error("{what} not found")]
    AccountNotFound {
        /// What was looked up, e.g. `user "alice"`.
        what: String,
    },
    /// An account record with that name already exists.
    #[error("{what} already exists")]
    AccountExists {
        /// What was created, e.g. `user "alice"`.
        what: String,
    },
    /// A stored record could not be decoded.
    #[error("cannot decode stored {what}")]
    Decode {
        /// Which record.
        what: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A backup file is unreadable, truncated or fails its checksum.
    #[error("backup {path}: {detail}")]
    Backup {
        /// The backup file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
        /// The underlying I/O error, when there is one.
        #[source]
        source: Option<std::io::Error>,
    },
}

impl StoreError {
    /// Whether the caller sent something wrong (a 4xx answer), as opposed to the store failing.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            StoreError::NotFound { .. }
                | StoreError::AlreadyExists { .. }
                | StoreError::Conflict { .. }
                | StoreError::Terminating { .. }
                | StoreError::Invalid { .. }
                | StoreError::AccountNotFound { .. }
                | StoreError::AccountExists { .. }
        )
    }

    /// Whether the cause is a full disk.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Storage { source, .. } if source.is_disk_full())
    }
}
