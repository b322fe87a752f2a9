//! The OpenAPI 3.1 document at `/api/v1/openapi.json`, generated from the one route table
//! ([`crate::app::routes`]): every route with its summary, tag, parameters, security and the
//! schemas of its request and response, derived with schemars from the Rust types the handlers
//! read and answer (no schema is written by hand). A test checks that the document covers every
//! route and that real responses match it.

use axum::Json;
use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::app::{Payload, Route, routes};
use crate::error::ErrorBody;
use crate::policy::Access;

fn generator() -> SchemaGenerator {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    SchemaGenerator::new(settings)
}

fn content(g: &mut SchemaGenerator, payload: Payload) -> Option<Value> {
    Some(match payload {
        Payload::Empty => return None,
        Payload::Json(s) => json!({ "application/json": { "schema": s(g) } }),
        Payload::Manifests => json!({
            "application/yaml": { "schema": { "type": "string", "description": "One or more YAML documents" } },
            "application/json": { "schema": { "description": "One resource, or a list of them" } }
        }),
        Payload::Text => json!({ "text/plain": { "schema": { "type": "string" } } }),
        Payload::Binary => json!({
            "application/octet-stream": { "schema": { "type": "string", "format": "binary" } }
        }),
        Payload::ListOrWatch(s) => json!({
            "application/json": { "schema": s(g) },
            "application/x-ndjson": {
                "schema": { "type": "object", "required": ["type", "object"],
                            "description": "With watch=true: one {type, revision, object} per line" }
            }
        }),
    })
}

/// Path parameters from the `{name}` segments, query parameters from the route's query type.
fn parameters(g: &mut SchemaGenerator, route: &Route) -> Vec<Value> {
    let mut params: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    if let Some(query) = route.doc.query {
        let schema = query(g).to_value();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = schema["properties"].as_object() {
            for (name, prop) in props {
                let mut prop = prop.clone();
                let description =
                    prop.as_object_mut().and_then(|p| p.remove("description")).unwrap_or(json!(""));
                params.push(json!({
                    "name": name, "in": "query", "required": required.contains(&name.as_str()),
                    "description": description, "schema": prop
                }));
            }
        }
    }
    params
}

fn operation(g: &mut SchemaGenerator, route: &Route) -> Value {
    let doc = &route.doc;
    let mut op = Map::new();
    op.insert("summary".into(), json!(doc.summary));
    op.insert("operationId".into(), json!(format!("{} {}", route.method, route.path)));
    op.insert("tags".into(), json!([doc.tag]));
    let params = parameters(g, route);
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(c) = content(g, doc.request) {
        let required = route.path != "/api/v1/auth/logout";
        op.insert("requestBody".into(), json!({ "required": required, "content": c }));
    }
    let mut responses = Map::new();
    let ok = match content(g, doc.response) {
        Some(c) => json!({ "description": "OK", "content": c }),
        None => json!({ "description": "No content" }),
    };
    responses.insert(doc.status.to_string(), ok.clone());
    if route.path == "/readyz" {
        responses
            .insert("503".into(), json!({ "description": "Not ready", "content": ok["content"] }));
    }
    let error = json!({ "application/json": { "schema": g.subschema_for::<ErrorBody>() } });
    responses.insert("default".into(), json!({ "description": "Error", "content": error }));
    op.insert("responses".into(), Value::Object(responses));
    match route.access {
        Access::Public => {
            op.insert("security".into(), json!([]));
        }
        Access::WebsocketInit => {
            op.insert("security".into(), json!([]));
            op.insert(
                "description".into(),
                json!(
                    "The upgrade carries no credentials: the token is sent in the \
                       connection_init message's payload as {\"authorization\": \"Bearer ...\"}."
                ),
            );
        }
        Access::GraphqlFields => {
            op.insert(
                "description".into(),
                json!("Any authenticated role; each field then checks its own action."),
            );
        }
        Access::Authenticated(action) => {
            op.insert(
                "description".into(),
                json!(format!(
                    "Needs action `{}` (role {} or above).",
                    action.as_str(),
                    action.min_role()
                )),
            );
        }
    }
    Value::Object(op)
}

/// Builds the document from the route table.
pub fn openapi() -> Value {
    let mut g = generator();
    let mut paths = Map::new();
    for route in &routes() {
        let op = operation(&mut g, route);
        let item = paths.entry(route.path.to_owned()).or_insert_with(|| json!({}));
        if let Value::Object(m) = item {
            m.insert(route.method.as_str().to_lowercase(), op);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "berth REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Declarative control plane for Docker. Errors are {code, message, details}."
        },
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "Access JWT or API token (berth_...)." }
            }
        },
        "security": [{ "bearer": [] }]
    })
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Json<Value> {
    Json(openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ref_in_the_document_names_a_schema_in_it() {
        fn walk(v: &Value, doc: &Value) {
            match v {
                Value::Object(m) => {
                    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                        let name = r.strip_prefix("#/components/schemas/").expect("local ref");
                        assert!(doc["components"]["schemas"][name].is_object(), "dangling {r}");
                    }
                    m.values().for_each(|x| walk(x, doc));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, doc)),
                _ => {}
            }
        }
        let doc = openapi();
        walk(&doc, &doc);
    }
}
