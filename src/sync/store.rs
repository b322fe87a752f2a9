//! [`StoreApplier`]: applies a sync set straight to the store, in the server process
//! (`berth serve --sync-dir DIR`), as actor `sync` through source `sync`.
// Used by `berth serve --sync-dir` only; dead code until that flag is wired.
#![allow(dead_code)]

use std::collections::HashSet;

use berth_api::AppState;
use berth_controller::store::{
    Actor, AuditEntry, AuditOutcome, ListQuery, Source, StoreError, WriteContext,
};
use berth_schemas::ResourceKey;
use berth_schemas::selector::Selector;

use crate::manifests::display_name;

use super::{Apply, ApplyError, SyncSet};

/// Applies through the server's own store: every write is audited with actor `sync`, a sync
/// that cannot be applied is audited as `sync.error`, and each applied set as `sync.apply`
/// with its Git commit.
#[derive(Debug, Clone)]
pub struct StoreApplier {
    state: AppState,
}

impl StoreApplier {
    /// An applier over the server's state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn ctx() -> WriteContext {
    WriteContext::new(Actor::Sync, Source::Sync)
}

fn store_error(key: &ResourceKey, e: StoreError) -> ApplyError {
    match e {
        StoreError::Closed => ApplyError::Unavailable("the store is shutting down".into()),
        e => ApplyError::Refused(format!("{key}: {e}")),
    }
}

impl Apply for StoreApplier {
    async fn apply(&self, set: SyncSet) -> Result<Vec<String>, ApplyError> {
        let store = self.state.resources();
        // Refuse the whole set before writing anything if a resource is being deleted.
        for o in &set.objects {
            let key = o.key();
            if let Some(cur) = store.get(&key).await.map_err(|e| store_error(&key, e))?
                && cur.metadata.deletion_timestamp.is_some()
            {
                return Err(ApplyError::Refused(format!(
                    "{key} is being deleted; the set is applied once it is gone"
                )));
            }
        }
        let mut lines = Vec::new();
        let mut wanted = HashSet::new();
        for o in &set.objects {
            let key = o.key();
            wanted.insert(key.clone());
            let w = store.apply(&ctx(), o.clone()).await.map_err(|e| store_error(&key, e))?;
            lines.push(format!(
                "{} {}",
                display_name(key.kind.as_str(), &key.namespace, &key.name),
                w.outcome.as_str()
            ));
        }
        let selector = Selector::parse(&set.prune_selector)
            .map_err(|e| ApplyError::Refused(format!("bad prune selector: {e}")))?;
        let list = store
            .list(&ListQuery { selector, ..ListQuery::default() })
            .await
            .map_err(|_| ApplyError::Unavailable("cannot list resources to prune".into()))?;
        for o in list.items {
            let key = o.key();
            if wanted.contains(&key) || o.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match store.delete(&ctx(), &key).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => lines.push(format!(
                    "{} pruned",
                    display_name(key.kind.as_str(), &key.namespace, &key.name)
                )),
                Err(e) => return Err(store_error(&key, e)),
            }
        }
        let message = match &set.commit {
            Some(c) => format!("applied {} resource(s) at commit {c}", set.objects.len()),
            None => format!("applied {} resource(s)", set.objects.len()),
        };
        let entry = AuditEntry::new(ctx(), "sync.apply", AuditOutcome::Success)
            .target("SyncSource", None, set.source.clone())
            .message(message);
        if let Err(e) = self.state.audit().append(entry).await {
            tracing::warn!(error = %e, "sync: cannot write the audit event");
        }
        Ok(lines)
    }

    async fn report_error(&self, source: &str, commit: Option<&str>, message: &str) {
        let message = match commit {
            Some(c) => format!("at commit {c}: {message}"),
            None => message.to_owned(),
        };
        let entry = AuditEntry::new(ctx(), "sync.error", AuditOutcome::Failure)
            .target("SyncSource", None, source.to_owned())
            .message(message.chars().take(1000).collect::<String>());
        if let Err(e) = self.state.audit().append(entry).await {
            tracing::warn!(error = %e, "sync: cannot write the audit event");
        }
    }
}
