//! Typed calls for resources: apply, get, list, delete, and waiting until a resource is Ready.

use berth_api::routes::resources::ApplyResponse;
use berth_schemas::{DynamicObject, Kind};
use reqwest::Method;
use serde_json::Value;

use super::{Body, Client, ClientError, seg};

/// The path of one resource.
pub fn resource_path(kind: Kind, namespace: &str, name: &str) -> String {
    format!("/api/v1/{}/{}/{}", kind.plural(), seg(namespace), seg(name))
}

/// The outcome of waiting on one resource: [`berth_schemas::readiness`] as `--wait` shows it,
/// plus [`Readiness::Gone`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// `Ready=True` for the current generation.
    Ready,
    /// Not ready yet: the reason and message of the most telling condition.
    Waiting(String),
    /// `Degraded=True` and no longer progressing: the reason and message.
    Degraded(String),
    /// The resource is gone.
    Gone,
}

/// How far `o` is from Ready, by berth's one readiness rule ([`berth_schemas::readiness`]).
pub fn readiness(o: &DynamicObject) -> Readiness {
    match berth_schemas::readiness(o) {
        berth_schemas::Readiness::Ready => Readiness::Ready,
        berth_schemas::Readiness::Pending => {
            Readiness::Waiting("waiting for the controller".into())
        }
        berth_schemas::Readiness::NotReady(why) => Readiness::Waiting(why.to_string()),
        berth_schemas::Readiness::Failed(why) => Readiness::Degraded(why.to_string()),
    }
}

impl Client {
    /// `POST /api/v1/apply` with the objects as one JSON array.
    ///
    /// # Errors
    ///
    /// The server's error (422 with located details for invalid documents).
    pub async fn apply(
        &self,
        objects: &[DynamicObject],
        dry_run: bool,
        prune: Option<&str>,
    ) -> Result<ApplyResponse, ClientError> {
        let mut query = Vec::new();
        if dry_run {
            query.push(("dryRun", "true".to_owned()));
        }
        if let Some(p) = prune {
            query.push(("prune", p.to_owned()));
        }
        let body = serde_json::to_value(objects).map_err(|e| ClientError::Decode {
            what: "the manifests".into(),
            source: Box::new(e),
        })?;
        self.json(Method::POST, "/api/v1/apply", &query, Body::Json(body)).await
    }

    /// One resource, or `None` when it does not exist.
    ///
    /// # Errors
    ///
    /// Any error but 404.
    pub async fn get_resource(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, ClientError> {
        match self.get(&resource_path(kind, namespace, name), &[]).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Resources of a kind, optionally in one namespace and matching a selector.
    ///
    /// # Errors
    ///
    /// The server's error.
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<(Vec<DynamicObject>, String), ClientError> {
        let mut query = Vec::new();
        if let Some(ns) = namespace {
            query.push(("namespace", ns.to_owned()));
        }
        if let Some(s) = selector {
            query.push(("labelSelector", s.to_owned()));
        }
        let v: Value = self.get(&format!("/api/v1/{}", kind.plural()), &query).await?;
        let rv = v["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_owned();
        let items =
            serde_json::from_value(v["items"].clone()).map_err(|e| ClientError::Decode {
                what: format!("GET /api/v1/{}", kind.plural()),
                source: Box::new(e),
            })?;
        Ok((items, rv))
    }

    /// Deletes a resource; `Ok(true)` when it is gone, `Ok(false)` while the controller still
    /// cleans up.
    ///
    /// # Errors
    ///
    /// The server's error (404 when it does not exist).
    pub async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        wait_seconds: Option<u64>,
    ) -> Result<bool, ClientError> {
        let mut query = Vec::new();
        if let Some(s) = wait_seconds {
            query.push(("wait", "true".to_owned()));
            query.push(("timeoutSeconds", s.to_string()));
        }
        let v: Value = self
            .json(Method::DELETE, &resource_path(kind, namespace, name), &query, Body::Empty)
            .await?;
        Ok(v["outcome"] == "deleted")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(generation: u64, status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "berth.dev/v1", "kind": "Container",
            "metadata": {"name": "web", "generation": generation},
            "spec": {"image": "x"}, "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_status_for_an_older_generation_is_not_ready() {
        let o = obj(
            2,
            json!({"observedGeneration": 1, "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
        );
        assert!(matches!(readiness(&o), Readiness::Waiting(_)));
    }

    #[test]
    fn ready_true_for_the_current_generation_is_ready() {
        let o = obj(
            2,
            json!({"observedGeneration": 2, "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
        );
        assert_eq!(readiness(&o), Readiness::Ready);
    }

    #[test]
    fn degraded_names_its_reason() {
        let o = obj(
            1,
            json!({"observedGeneration": 1, "conditions": [
            {"type": "Degraded", "status": "True", "reason": "ImagePullFailed", "message": "no such image",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
        );
        assert_eq!(readiness(&o), Readiness::Degraded("ImagePullFailed: no such image".into()));
    }
}
