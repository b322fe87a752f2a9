//! JSON Schemas of the manifests, one per kind and one for any berth resource, generated with
//! schemars. They are committed under `schemas/json/` for editors (see `docs/manifests.md`) and
//! printed by `berth schema [KIND]`.

use serde_json::{Map, Value, json};

use crate::container::Container;
use crate::image::Image;
use crate::meta::Kind;
use crate::object::API_VERSION;

/// Where the committed schemas are published, for `$id` and editor modelines.
pub const SCHEMA_BASE_URL: &str =
    "https://raw.githubusercontent.com/berth-dev/berth/main/schemas/json/";

/// The file name of a kind's schema under `schemas/json/` (`container.json`).
pub fn file_name(kind: Kind) -> String {
    format!("{}.json", kind.as_str().to_ascii_lowercase())
}

/// The file name of the schema that accepts any berth resource.
pub const COMBINED_FILE_NAME: &str = "berth.json";

fn generate<T: schemars::JsonSchema>() -> Map<String, Value> {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
    match schema.to_value() {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Pins `apiVersion` and `kind` of a kind's root schema and gives it a title.
fn pin_envelope(root: &mut Map<String, Value>, kind: Kind) {
    root.insert("title".into(), json!(kind.as_str()));
    root.insert(
        "description".into(),
        json!(format!("A berth {} resource (apiVersion {API_VERSION}).", kind.as_str())),
    );
    if let Some(Value::Object(props)) = root.get_mut("properties") {
        props.insert(
            "apiVersion".into(),
            json!({"description": "Always berth.dev/v1.", "const": API_VERSION}),
        );
        props.insert(
            "kind".into(),
            json!({"description": "The resource's kind.", "const": kind.as_str()}),
        );
        if let Some(Value::Object(status)) = props.get_mut("status") {
            status.insert("readOnly".into(), json!(true));
        }
    }
}

/// The JSON Schema of one kind's manifests.
pub fn kind_schema(kind: Kind) -> Value {
    let mut root = match kind {
        Kind::Container => generate::<Container>(),
        Kind::Image => generate::<Image>(),
    };
    pin_envelope(&mut root, kind);
    root.insert("$id".into(), json!(format!("{SCHEMA_BASE_URL}{}", file_name(kind))));
    Value::Object(root)
}

/// The JSON Schema that accepts a resource of any berth kind, dispatching on `kind`.
pub fn combined_schema() -> Value {
    let mut defs = Map::new();
    let mut branches = Vec::new();
    for kind in Kind::ALL {
        let Value::Object(mut root) = kind_schema(kind) else { continue };
        for key in ["$schema", "$id"] {
            root.remove(key);
        }
        if let Some(Value::Object(sub)) = root.remove("$defs") {
            defs.extend(sub);
        }
        defs.insert(kind.as_str().into(), Value::Object(root));
        branches.push(json!({
            "if": {"properties": {"kind": {"const": kind.as_str()}}, "required": ["kind"]},
            "then": {"$ref": format!("#/$defs/{}", kind.as_str())}
        }));
    }
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("{SCHEMA_BASE_URL}{COMBINED_FILE_NAME}"),
        "title": "berth resource",
        "description": "Any berth resource; the schema of its kind applies.",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"description": "Always berth.dev/v1.", "const": API_VERSION},
            "kind": {"description": "The resource's kind.", "enum": kinds}
        },
        "allOf": branches,
        "$defs": defs
    })
}

/// `v` with every object's keys in sorted order, so the output is the same whether or not
/// serde_json's `preserve_order` feature is on in a given build.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Every committed schema file: (`file name`, pretty JSON with a trailing newline).
pub fn schema_files() -> Vec<(String, String)> {
    let pretty = |v: &Value| {
        let mut s = serde_json::to_string_pretty(&sorted(v.clone())).unwrap_or_default();
        s.push('\n');
        s
    };
    let mut files: Vec<(String, String)> =
        Kind::ALL.iter().map(|k| (file_name(*k), pretty(&kind_schema(*k)))).collect();
    files.push((COMBINED_FILE_NAME.to_owned(), pretty(&combined_schema())));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_schema_pins_api_version_and_kind_and_refuses_unknown_fields() {
        let s = kind_schema(Kind::Container);
        assert_eq!(s["properties"]["apiVersion"]["const"], API_VERSION);
        assert_eq!(s["properties"]["kind"]["const"], "Container");
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["$defs"]["ContainerSpec"]["additionalProperties"], false);
        let image_doc = s["$defs"]["ContainerSpec"]["properties"]["image"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(image_doc.contains("name[:tag]"), "{image_doc}");
    }

    #[test]
    fn the_combined_schema_dispatches_on_kind() {
        let s = combined_schema();
        assert_eq!(s["properties"]["kind"]["enum"], json!(["Container", "Image"]));
        assert_eq!(s["allOf"][1]["then"]["$ref"], "#/$defs/Image");
        assert!(s["$defs"]["ImageSpec"].is_object());
        assert!(s["$defs"]["Container"]["$defs"].is_null());
    }
}
