//! Whether a resource is Ready, judged from its stored status alone: the one rule the
//! reconciler's `dependsOn` check, the API (GraphQL `applyProgress`), the CLI's `--wait` and the
//! tests share.
//!
//! # The rule
//!
//! A resource is [`Readiness::Ready`] only when all of these hold:
//! - it is not being deleted (`metadata.deletionTimestamp` is unset);
//! - the controller reported on its current generation (`status.observedGeneration ==
//!   metadata.generation`);
//! - its `Ready` condition is `True`, and was computed for that generation when the condition
//!   names one (`observedGeneration` on the condition).
//!
//! Otherwise it is [`Readiness::Failed`] when, for the current generation, `Degraded` is
//! `True` and the controller has stopped working on it (`Progressing` is not `True`: it waits
//! for a retry or for a change); [`Readiness::Pending`] when the controller has not written any
//! status yet; and [`Readiness::NotReady`] with the most telling condition in every other case.

use serde::Deserialize;

use crate::condition::{DEGRADED, PROGRESSING, READY};
use crate::object::DynamicObject;

/// Where a resource stands on its way to Ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The controller has written no status yet.
    Pending,
    /// Not Ready yet (being worked on, waiting for something, or being deleted).
    NotReady(Why),
    /// `Ready=True` for the current generation, and not being deleted.
    Ready,
    /// `Degraded=True` for the current generation and no longer progressing.
    Failed(Why),
}

impl Readiness {
    /// Whether this is [`Readiness::Ready`].
    pub fn is_ready(&self) -> bool {
        *self == Readiness::Ready
    }

    /// The reason and message behind a state that is not Ready, if any.
    pub fn why(&self) -> Option<&Why> {
        match self {
            Readiness::NotReady(w) | Readiness::Failed(w) => Some(w),
            Readiness::Pending | Readiness::Ready => None,
        }
    }
}

/// The reason and message of the condition that best explains a [`Readiness`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Why {
    /// A CamelCase reason (`PullingImage`, `ImagePullFailed`, `Terminating`); may be empty.
    pub reason: String,
    /// A sentence for people; may be empty.
    pub message: String,
}

impl Why {
    fn of(c: &Cond) -> Self {
        Self { reason: c.reason.clone(), message: c.message.clone() }
    }
}

impl std::fmt::Display for Why {
    /// `reason: message`, or whichever of the two is not empty.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.reason.is_empty(), self.message.is_empty()) {
            (false, false) => write!(f, "{}: {}", self.reason, self.message),
            (false, true) => f.write_str(&self.reason),
            (true, false) => f.write_str(&self.message),
            (true, true) => Ok(()),
        }
    }
}

/// The fields of a stored condition the rule reads; lenient, so that a status written by an
/// older build (or by hand in a test) is still judged.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cond {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    observed_generation: Option<u64>,
}

impl Cond {
    fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// The conditions in a stored status (`status.conditions`); entries that do not parse are
/// left out.
fn conditions_of(status: &serde_json::Value) -> Vec<Cond> {
    status
        .get("conditions")
        .and_then(serde_json::Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| Cond::deserialize(c).ok()).collect())
        .unwrap_or_default()
}

/// How far `obj` is from Ready, by the rule in the [module documentation](self). Pure: it
/// reads only the object.
pub fn readiness(obj: &DynamicObject) -> Readiness {
    let conditions = conditions_of(&obj.status);
    let find = |t: &str| conditions.iter().find(|c| c.type_ == t);
    let holds = |t: &str| find(t).filter(|c| c.is_true());
    let generation = obj.metadata.generation;
    let observed = obj.status.get("observedGeneration").and_then(serde_json::Value::as_u64);

    if obj.metadata.deletion_timestamp.is_some() {
        return Readiness::NotReady(Why {
            reason: "Terminating".into(),
            message: "the resource is being deleted".into(),
        });
    }
    if observed.is_none() && conditions.is_empty() {
        return Readiness::Pending;
    }
    let current = observed == generation;
    if current
        && let Some(ready) = holds(READY)
        && (ready.observed_generation.is_none() || ready.observed_generation == generation)
    {
        return Readiness::Ready;
    }
    if current
        && let Some(degraded) = holds(DEGRADED)
        && holds(PROGRESSING).is_none()
    {
        return Readiness::Failed(Why::of(degraded));
    }
    let telling = holds(PROGRESSING)
        .or_else(|| find(READY).filter(|c| !c.is_true()))
        .or_else(|| holds(DEGRADED))
        .filter(|c| !c.reason.is_empty() || !c.message.is_empty());
    Readiness::NotReady(match telling {
        Some(c) => Why::of(c),
        None if !current => {
            Why { reason: String::new(), message: "waiting for the controller".into() }
        }
        None => Why { reason: String::new(), message: "not ready yet".into() },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(generation: u64, status: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "berth.dev/v1", "kind": "Container",
            "metadata": {"name": "web", "namespace": "default", "generation": generation},
            "spec": {"image": "busybox"},
            "status": status,
        }))
        .expect("object")
    }

    fn cond(t: &str, s: &str, reason: &str, generation: Option<u64>) -> serde_json::Value {
        let mut c = json!({"type": t, "status": s, "reason": reason,
                           "lastTransitionTime": "2026-12-01T00:00:00Z"});
        if let Some(g) = generation {
            c["observedGeneration"] = g.into();
        }
        c
    }

    #[test]
    fn ready_true_for_the_current_generation_is_ready() {
        let o = obj(
            2,
            json!({"observedGeneration": 2, "conditions": [cond("Ready", "True", "Running", Some(2))]}),
        );
        assert_eq!(readiness(&o), Readiness::Ready);
    }

    #[test]
    fn ready_true_for_an_older_generation_is_not_ready() {
        let o = obj(
            2,
            json!({"observedGeneration": 1, "conditions": [cond("Ready", "True", "Running", Some(1))]}),
        );
        assert_eq!(
            readiness(&o),
            Readiness::NotReady(Why {
                reason: String::new(),
                message: "waiting for the controller".into()
            })
        );
        // A status that says current but a Ready condition that says otherwise is not Ready.
        let o = obj(
            2,
            json!({"observedGeneration": 2, "conditions": [cond("Ready", "True", "Running", Some(1))]}),
        );
        assert!(!readiness(&o).is_ready());
        // Without an observedGeneration the status is not for the current generation.
        let o = obj(1, json!({"conditions": [cond("Ready", "True", "Running", None)]}));
        assert!(!readiness(&o).is_ready());
    }

    #[test]
    fn a_terminating_resource_is_not_ready() {
        let mut o = obj(
            1,
            json!({"observedGeneration": 1, "conditions": [cond("Ready", "True", "Running", Some(1))]}),
        );
        o.metadata.deletion_timestamp = Some(chrono::Utc::now());
        assert_eq!(readiness(&o).why().map(|w| w.reason.as_str()), Some("Terminating"));
    }

    #[test]
    fn no_status_is_pending() {
        assert_eq!(readiness(&obj(1, serde_json::Value::Null)), Readiness::Pending);
        assert_eq!(readiness(&obj(1, json!({}))), Readiness::Pending);
    }

    #[test]
    fn degraded_and_no_longer_progressing_is_failed_with_its_reason() {
        let o = obj(
            1,
            json!({"observedGeneration": 1, "conditions": [
            cond("Ready", "False", "ImagePullFailed", Some(1)),
            cond("Progressing", "False", "ImagePullFailed", Some(1)),
            cond("Degraded", "True", "ImagePullFailed", Some(1))]}),
        );
        assert_eq!(
            readiness(&o),
            Readiness::Failed(Why { reason: "ImagePullFailed".into(), message: String::new() })
        );
    }

    #[test]
    fn while_progressing_the_progressing_condition_explains() {
        let o = obj(
            2,
            json!({"observedGeneration": 1, "conditions": [
            cond("Ready", "True", "Running", Some(1)),
            cond("Progressing", "True", "PullingImage", Some(2)),
            cond("Degraded", "True", "Flaky", Some(1))]}),
        );
        assert_eq!(readiness(&o).why().map(ToString::to_string).as_deref(), Some("PullingImage"));
    }
}
