//! [`StoreApplier`]: applies a sync set straight to the store, in the server process
//! (`berth serve --sync-dir DIR`), as actor `sync` through source `sync`.

use std::collections::HashSet;

use berth_api::AppState;
use berth_controller::store::{
    Actor, AuditEntry, AuditOutcome, ListQuery, Source, StoreError, WriteContext,
};
use berth_schemas::ResourceKey;
use berth_schemas::selector::Selector;

use crate::manifests::display_name;

use super::{Apply, ApplyError, Change, SyncSet};

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
    async fn apply(&self, set: SyncSet) -> Result<Vec<Change>, ApplyError> {
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
            lines.push(Change {
                kind: key.kind.as_str().to_owned(),
                name: display_name(key.kind.as_str(), &key.namespace, &key.name),
                outcome: w.outcome.as_str().to_owned(),
            });
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
                Ok(_) | Err(StoreError::NotFound { .. }) => lines.push(Change {
                    kind: key.kind.as_str().to_owned(),
                    name: display_name(key.kind.as_str(), &key.namespace, &key.name),
                    outcome: "pruned".to_owned(),
                }),
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

#[cfg(test)]
mod tests {
    use berth_api::ServeConfig;
    use berth_controller::store::{AuditQuery, SledStore, StoreConfig};
    use berth_schemas::{DynamicObject, Kind};
    use tokio::sync::watch;

    use super::*;
    use crate::sync::{Outcome, SYNC_SOURCE_LABEL, SyncSource, SyncStatus, run_sync, sync_once};

    fn state(dir: &std::path::Path) -> AppState {
        let config = ServeConfig { data_dir: dir.to_owned(), ..ServeConfig::default() };
        let keys = berth_api::auth::jwt::JwtKeys::load_or_create(
            &config.signing_key_path(),
            config.issuer.clone(),
        )
        .expect("keys");
        let store = SledStore::open(StoreConfig::new(dir.join("store"))).expect("store");
        let (_tx, rx) = watch::channel(true);
        AppState::new(config, keys, store, berth_api::Metrics::new(), rx)
    }

    fn image(name: &str) -> String {
        format!(
            "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: {name}\nspec:\n  reference: x:1\n"
        )
    }

    async fn names(st: &AppState) -> Vec<String> {
        let list = st.resources().list(&ListQuery::default()).await.unwrap();
        list.items
            .iter()
            .filter(|o: &&DynamicObject| o.metadata.deletion_timestamp.is_none())
            .map(|o| o.metadata.name.clone())
            .collect()
    }

    #[tokio::test]
    async fn the_store_applier_applies_prunes_only_its_own_resources_and_audits_errors() {
        let data = tempfile::tempdir().unwrap();
        let st = state(data.path());
        // A hand-applied resource without the sync label.
        let hand: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Image",
            "metadata": {"name": "by-hand"}, "spec": {"reference": "x:1"},
        }))
        .unwrap();
        st.resources().apply(&WriteContext::rest_user("admin"), hand).await.unwrap();
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("a.yaml"), image("a")).unwrap();
        std::fs::write(repo.path().join("b.yaml"), image("b")).unwrap();
        let mut source = SyncSource::new(repo.path());
        source.name = "repo".into();
        let applier = StoreApplier::new(st.clone());
        let (tx, _rx) = watch::channel(SyncStatus::default());
        let mut last = None;
        assert_eq!(sync_once(&source, &applier, &tx, &mut last).await, Outcome::Applied);
        let a = st.resources().get(&ResourceKey::new(Kind::Image, "default", "a")).await.unwrap();
        assert_eq!(a.unwrap().metadata.labels[SYNC_SOURCE_LABEL], "repo");
        std::fs::remove_file(repo.path().join("b.yaml")).unwrap();
        assert_eq!(sync_once(&source, &applier, &tx, &mut last).await, Outcome::Applied);
        let mut got = names(&st).await;
        got.sort();
        assert_eq!(got, vec!["a".to_owned(), "by-hand".to_owned()]);
        std::fs::write(repo.path().join("c.yaml"), "kind: [").unwrap();
        assert_eq!(sync_once(&source, &applier, &tx, &mut last).await, Outcome::Broken);
        let q = AuditQuery { verb: Some("sync.error".into()), limit: 10, ..AuditQuery::default() };
        let page = st.audit().query(&q).await.unwrap();
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].actor, Actor::Sync);
    }

    #[test]
    fn run_sync_with_the_store_applier_can_be_spawned_on_a_multithreaded_runtime() {
        fn is_send<T: Send + 'static>(_: &T) {}
        let data = tempfile::tempdir().unwrap();
        let (tx, _rx) = watch::channel(SyncStatus::default());
        let fut = run_sync(
            SyncSource::new(data.path()),
            StoreApplier::new(state(data.path())),
            tx,
            std::future::pending::<()>(),
        );
        is_send(&fut);
    }
}
