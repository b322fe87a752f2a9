//! What an apply changes: the field-by-field diff of labels, annotations and spec.

use berth_schemas::DynamicObject;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One changed field in an apply diff.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Change {
    /// The field path (`spec.image`, `metadata.labels.app`).
    pub path: String,
    /// `add`, `remove` or `replace`.
    pub op: String,
    /// The value before (absent for `add`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    /// The value after (absent for `remove`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

fn diff_values(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    let join = |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                diff_values(&join(k), a.get(k), b.get(k), out);
            }
        }
        (Some(a), Some(b)) if a == b => {}
        (None | Some(Value::Null), None | Some(Value::Null)) => {}
        (None | Some(Value::Null), Some(b)) => {
            out.push(Change {
                path: path.to_owned(),
                op: "add".into(),
                from: None,
                to: Some(b.clone()),
            });
        }
        (Some(a), None | Some(Value::Null)) => {
            out.push(Change {
                path: path.to_owned(),
                op: "remove".into(),
                from: Some(a.clone()),
                to: None,
            });
        }
        (Some(a), Some(b)) => out.push(Change {
            path: path.to_owned(),
            op: "replace".into(),
            from: Some(a.clone()),
            to: Some(b.clone()),
        }),
    }
}

fn user_view(o: &DynamicObject) -> Value {
    json!({
        "metadata": { "labels": o.metadata.labels, "annotations": o.metadata.annotations },
        "spec": o.spec,
    })
}

/// The changes between two versions of a resource (labels, annotations and spec).
pub fn diff(old: Option<&DynamicObject>, new: &DynamicObject) -> Vec<Change> {
    let mut out = Vec::new();
    let old = old.map(user_view);
    diff_values("", old.as_ref(), Some(&user_view(new)), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_added_removed_and_replaced_fields() {
        let mut out = Vec::new();
        let a = json!({"spec": {"image": "a", "env": [1], "gone": true}});
        let b = json!({"spec": {"image": "b", "env": [1], "new": 1}});
        diff_values("", Some(&a), Some(&b), &mut out);
        let ops: Vec<(String, String)> =
            out.iter().map(|c| (c.path.clone(), c.op.clone())).collect();
        assert_eq!(
            ops,
            vec![
                ("spec.gone".to_owned(), "remove".to_owned()),
                ("spec.image".to_owned(), "replace".to_owned()),
                ("spec.new".to_owned(), "add".to_owned()),
            ]
        );
    }
}
