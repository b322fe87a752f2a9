//! [`HttpApplier`]: applies a sync set through the REST API (`berth sync DIR`).

use crate::client::{Client, ClientError};
use crate::manifests::display_name;

use super::{Apply, ApplyError, Change, SyncSet};

/// Applies through `POST /api/v1/apply?prune=<selector>` with the client's credentials (an
/// operator or admin token: pruning needs the right to delete).
#[derive(Debug)]
pub struct HttpApplier {
    client: Client,
}

impl HttpApplier {
    /// An applier over a connected client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn apply_error(e: ClientError) -> ApplyError {
    if e.is_transient() {
        return ApplyError::Unavailable(format!("{e:#}"));
    }
    let mut msg = e.to_string();
    if let ClientError::Api { details, .. } = &e
        && let Some(errors) = details["errors"].as_array()
    {
        for err in errors.iter().take(5) {
            msg.push_str(&format!(
                "; {}: {}",
                err["path"].as_str().unwrap_or("."),
                err["message"].as_str().unwrap_or("")
            ));
        }
    }
    ApplyError::Refused(msg)
}

impl Apply for HttpApplier {
    async fn apply(&self, set: SyncSet) -> Result<Vec<Change>, ApplyError> {
        tracing::debug!(source = %set.source, commit = ?set.commit, server = %self.client.server(), "sync: applying");
        let resp = self
            .client
            .apply(&set.objects(), false, Some(&set.prune_selector))
            .await
            .map_err(apply_error)?;
        let change = |r: &berth_api::routes::resources::ApplyResult, outcome: String| Change {
            kind: r.kind.as_str().to_owned(),
            name: display_name(r.kind.as_str(), &r.namespace, &r.name),
            outcome,
        };
        let mut changes: Vec<Change> =
            resp.results.iter().map(|r| change(r, r.outcome.clone())).collect();
        changes.extend(resp.pruned.iter().map(|r| change(r, "pruned".to_owned())));
        Ok(changes)
    }

    async fn report_error(&self, _source: &str, _commit: Option<&str>, _message: &str) {
        // The REST API has no route for client-side sync events; the log line is the report.
    }
}
