//! [`StoreApplier`]: applies a sync set in the server process (`berth serve --sync-dir DIR`),
//! through the service layer's apply ([`berth_api::service::resources::apply`]) as actor
//! `sync` through source `sync`: the same validation, admin-only check, store rules and prune
//! as `POST /api/v1/apply`.

use berth_api::ApiError;
use berth_api::AppState;
use berth_api::policy::Action;
use berth_api::service::resources::{self, ApplyQuery, ApplyRequest, Caller};
use berth_controller::store::{Actor, AuditEntry, AuditOutcome, Source, WriteContext};

use crate::manifests::display_name;

use super::{Apply, ApplyError, Change, SyncSet};

/// Applies through the service layer: every write is audited with actor `sync`, a sync that
/// cannot be applied is audited as `sync.error`, and each applied set as `sync.apply` with its
/// Git commit. Admin-only fields are refused unless [`allow_admin_fields`] was set
/// (`--sync-allow-admin-fields`); each apply that uses them is then audited saying so.
///
/// [`allow_admin_fields`]: StoreApplier::allow_admin_fields
#[derive(Debug, Clone)]
pub struct StoreApplier {
    state: AppState,
    allow_admin_fields: bool,
}

impl StoreApplier {
    /// An applier over the server's state; admin-only fields are refused.
    pub fn new(state: AppState) -> Self {
        Self { state, allow_admin_fields: false }
    }

    /// Allows admin-only fields (privileged, bind mounts, host namespaces, ...) from the
    /// directory: for a repository only admins can change (`--sync-allow-admin-fields`).
    #[must_use]
    pub fn allow_admin_fields(mut self, allow: bool) -> Self {
        self.allow_admin_fields = allow;
        self
    }
}

fn ctx() -> WriteContext {
    WriteContext::new(Actor::Sync, Source::Sync)
}

fn api_error(e: ApiError) -> ApplyError {
    match e {
        ApiError::Unavailable(m) => ApplyError::Unavailable(m),
        ApiError::Forbidden { message, details }
            if details["action"] == Action::UseAdminFields.as_str() =>
        {
            ApplyError::Refused(format!(
                "{message}; admin-only fields are applied from a synced directory only when the \
                 server runs with --sync-allow-admin-fields"
            ))
        }
        e => ApplyError::Refused(e.to_string()),
    }
}

impl Apply for StoreApplier {
    async fn apply(&self, set: SyncSet) -> Result<Vec<Change>, ApplyError> {
        let store = self.state.resources();
        // Refuse the whole set before writing anything if a resource is being deleted.
        for d in &set.documents {
            let key = d.parsed.resource.key();
            let cur = store.get(&key).await.map_err(|e| api_error(e.into()))?;
            if cur.is_some_and(|c| c.metadata.deletion_timestamp.is_some()) {
                return Err(ApplyError::Refused(format!(
                    "{key} is being deleted; the set is applied once it is gone"
                )));
            }
        }
        let n = set.documents.len();
        let req = ApplyRequest {
            documents: set.documents,
            options: ApplyQuery { dry_run: false, prune: Some(set.prune_selector.clone()) },
        };
        let caller = Caller::sync(self.allow_admin_fields);
        let resp = resources::apply(&self.state, &caller, req).await.map_err(api_error)?;
        let change = |r: &resources::ApplyResult, outcome: &str| Change {
            kind: r.kind.as_str().to_owned(),
            name: display_name(r.kind.as_str(), &r.namespace, &r.name),
            outcome: outcome.to_owned(),
        };
        let mut lines: Vec<Change> = resp.results.iter().map(|r| change(r, &r.outcome)).collect();
        lines.extend(resp.pruned.iter().map(|r| change(r, "pruned")));
        let message = match &set.commit {
            Some(c) => format!("applied {n} resource(s) at commit {c}"),
            None => format!("applied {n} resource(s)"),
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
    use berth_controller::store::{AuditQuery, ListQuery, SledStore, StoreConfig};
    use berth_schemas::{DynamicObject, Kind, ResourceKey};
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
