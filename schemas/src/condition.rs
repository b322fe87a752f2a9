//! Status conditions, as Kubernetes reports them: one entry per aspect (`Ready`, `Progressing`,
//! `Degraded`), each with a machine-readable reason and a human message.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type: the resource is doing what its spec asks.
pub const READY: &str = "Ready";
/// Condition type: the controller is working towards the spec (pulling, creating, replacing).
pub const PROGRESSING: &str = "Progressing";
/// Condition type: something stops the resource from reaching its spec.
pub const DEGRADED: &str = "Degraded";

/// Whether a condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(feature = "graphql", graphql(rename_items = "PascalCase"))]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The controller cannot tell (yet).
    Unknown,
}

/// One observed aspect of a resource's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct Condition {
    /// The aspect: `Ready`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "graphql", graphql(name = "type"))]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// A CamelCase reason a script can match on (`ImagePullFailed`, `NameConflict`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// A sentence for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: DateTime<Utc>,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
}

/// Sets `cond` in `conditions`, keeping `lastTransitionTime` when the status did not change.
/// Returns whether anything changed.
pub fn set_condition(conditions: &mut Vec<Condition>, cond: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(existing) => {
            let transition = if existing.status == cond.status {
                existing.last_transition_time
            } else {
                cond.last_transition_time
            };
            let next = Condition { last_transition_time: transition, ..cond };
            if *existing == next {
                false
            } else {
                *existing = next;
                true
            }
        }
        None => {
            conditions.push(cond);
            true
        }
    }
}

/// Finds the condition of the given type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: ConditionStatus, secs: i64) -> Condition {
        Condition {
            type_: READY.into(),
            status,
            reason: "Running".into(),
            message: String::new(),
            last_transition_time: DateTime::from_timestamp(secs, 0).unwrap(),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let mut cs = vec![cond(ConditionStatus::True, 10)];
        assert!(!set_condition(&mut cs, cond(ConditionStatus::True, 20)));
        assert_eq!(cs[0].last_transition_time.timestamp(), 10);
    }

    #[test]
    fn set_condition_moves_transition_time_when_status_flips() {
        let mut cs = vec![cond(ConditionStatus::True, 10)];
        assert!(set_condition(&mut cs, cond(ConditionStatus::False, 20)));
        assert_eq!(cs[0].last_transition_time.timestamp(), 20);
    }
}
