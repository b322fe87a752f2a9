//! The OpenAPI document covers every route, and real responses match the schemas it declares.

mod common;

use berth_api::policy::Access;
use common::{TestServer, container_yaml};
use hyper::Method;
use serde_json::{Value, json};

/// A small JSON Schema checker for what the document uses: `$ref`, `type` (one or a list),
/// `properties`, `required`, `items`, `enum`.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "dangling $ref {r}");
        return check(doc, target, v, at, errors);
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            errors.push(format!("{at}: expected {types:?}, got {v}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!("{at}: {v} not in {e:?}"));
    }
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for k in req.iter().filter_map(Value::as_str) {
            if v.get(k).is_none() {
                errors.push(format!("{at}: missing required {k}"));
            }
        }
    }
    if let (Some(props), Some(obj)) =
        (schema.get("properties").and_then(Value::as_object), v.as_object())
    {
        for (k, s) in props {
            if let Some(x) = obj.get(k) {
                check(doc, s, x, &format!("{at}.{k}"), errors);
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            check(doc, items, x, &format!("{at}[{i}]"), errors);
        }
    }
}

fn conforms(doc: &Value, method: &Method, template: &str, r: &common::Resp) {
    let op = &doc["paths"][template][method.as_str().to_lowercase()];
    assert!(op.is_object(), "{method} {template} is not in the document");
    let status = r.status.to_string();
    let resp = if op["responses"][&status].is_object() {
        &op["responses"][&status]
    } else {
        assert!(r.status >= 400, "{method} {template}: undocumented success status {status}");
        &op["responses"]["default"]
    };
    let schema = &resp["content"]["application/json"]["schema"];
    if schema.is_null() {
        return;
    }
    let body: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| panic!("{method} {template}: not JSON: {}", r.text()));
    let mut errors = Vec::new();
    check(doc, schema, &body, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "{method} {template} ({status}) does not match the document: {errors:#?}\n{body}"
    );
}

#[tokio::test]
async fn the_document_covers_every_route() {
    let srv = TestServer::start().await;
    let r = srv.get("/api/v1/openapi.json", None).await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for route in berth_api::app::routes() {
        let (method, path) = (route.method, route.path);
        let op = &doc["paths"][path][method.as_str().to_lowercase()];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(!op["summary"].as_str().unwrap_or("").is_empty(), "{method} {path} has no summary");
        // Public routes and the websocket say so; every other one falls under the document's
        // bearer requirement and names what it needs.
        match route.access {
            Access::Public | Access::WebsocketInit => {
                assert_eq!(op["security"], json!([]), "{method} {path}")
            }
            Access::Authenticated(_) | Access::GraphqlFields => {
                assert!(op["security"].is_null(), "{method} {path}");
                assert!(op["description"].is_string(), "{method} {path}");
            }
        }
    }
    assert_eq!(doc["security"], json!([{ "bearer": [] }]));
    // Schemas are derived from the handlers' own types.
    for name in ["LoginRequest", "TokenPair", "ApplyResponse", "UserView", "AuditPage", "ErrorBody"]
    {
        assert!(doc["components"]["schemas"][name].is_object(), "no schema {name}");
    }
    let login = &doc["paths"]["/api/v1/auth/login"]["post"];
    assert_eq!(
        login["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/LoginRequest"
    );
    let params = doc["paths"]["/api/v1/apply"]["post"]["parameters"].as_array().expect("params");
    let names: Vec<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["dryRun", "prune"]);
}

#[tokio::test]
async fn real_responses_match_the_document() {
    let srv = TestServer::start().await;
    let doc = srv.get("/api/v1/openapi.json", None).await.json();
    let admin = srv.admin().await;
    let g = Method::GET;

    conforms(&doc, &g, "/healthz", &srv.get("/healthz", None).await);
    conforms(&doc, &g, "/readyz", &srv.get("/readyz", None).await);
    let login = srv.login("admin", common::ADMIN_PASSWORD).await;
    conforms(&doc, &Method::POST, "/api/v1/auth/login", &login);
    conforms(
        &doc,
        &Method::POST,
        "/api/v1/auth/login",
        &srv.login("admin", "wrong-password").await,
    );
    let refresh = login.json()["refreshToken"].as_str().unwrap().to_owned();
    conforms(
        &doc,
        &Method::POST,
        "/api/v1/auth/refresh",
        &srv.post_json("/api/v1/auth/refresh", None, json!({"refreshToken": refresh})).await,
    );
    conforms(&doc, &g, "/api/v1/me", &srv.get("/api/v1/me", Some(&admin)).await);
    conforms(&doc, &g, "/api/v1/me", &srv.get("/api/v1/me", None).await);

    let created = srv
        .post_json(
            "/api/v1/users",
            Some(&admin),
            json!({"username": "u1", "password": "u1-password", "role": "viewer"}),
        )
        .await;
    conforms(&doc, &Method::POST, "/api/v1/users", &created);
    conforms(&doc, &g, "/api/v1/users", &srv.get("/api/v1/users", Some(&admin)).await);
    conforms(
        &doc,
        &g,
        "/api/v1/users/{username}",
        &srv.get("/api/v1/users/u1", Some(&admin)).await,
    );
    conforms(
        &doc,
        &g,
        "/api/v1/users/{username}",
        &srv.get("/api/v1/users/nobody", Some(&admin)).await,
    );
    conforms(
        &doc,
        &Method::PATCH,
        "/api/v1/users/{username}",
        &srv.send_json(
            Method::PATCH,
            "/api/v1/users/u1",
            Some(&admin),
            json!({"role": "operator"}),
        )
        .await,
    );

    let tok = srv.post_json("/api/v1/tokens", Some(&admin), json!({"name": "ci"})).await;
    conforms(&doc, &Method::POST, "/api/v1/tokens", &tok);
    conforms(&doc, &g, "/api/v1/tokens", &srv.get("/api/v1/tokens", Some(&admin)).await);
    let id = tok.json()["id"].as_str().unwrap().to_owned();
    conforms(
        &doc,
        &Method::DELETE,
        "/api/v1/tokens/{id}",
        &srv.delete(&format!("/api/v1/tokens/{id}"), Some(&admin)).await,
    );

    conforms(
        &doc,
        &Method::POST,
        "/api/v1/apply",
        &srv.apply_yaml(&admin, "", &container_yaml("web", "nginx")).await,
    );
    conforms(
        &doc,
        &Method::POST,
        "/api/v1/apply",
        &srv.apply_yaml(&admin, "", &container_yaml("web", "nginx:2")).await,
    );
    conforms(
        &doc,
        &Method::POST,
        "/api/v1/apply",
        &srv.apply_yaml(&admin, "?dryRun=true", "kind: Nope\n").await,
    );
    conforms(&doc, &g, "/api/v1/{plural}", &srv.get("/api/v1/containers", Some(&admin)).await);
    for image in ["nginx:3", "nginx:3"] {
        let body = container_yaml("web", image).into_bytes();
        conforms(
            &doc,
            &Method::PUT,
            "/api/v1/{plural}/{namespace}/{name}",
            &srv.request(
                Method::PUT,
                "/api/v1/containers/default/web",
                Some(&admin),
                Some(("application/yaml", body)),
            )
            .await,
        );
    }
    conforms(
        &doc,
        &g,
        "/api/v1/{plural}/{namespace}/{name}",
        &srv.get("/api/v1/containers/default/web", Some(&admin)).await,
    );
    conforms(
        &doc,
        &g,
        "/api/v1/{plural}/{namespace}/{name}/status",
        &srv.get("/api/v1/containers/default/web/status", Some(&admin)).await,
    );
    conforms(
        &doc,
        &Method::DELETE,
        "/api/v1/{plural}/{namespace}/{name}",
        &srv.delete("/api/v1/containers/default/web", Some(&admin)).await,
    );
    conforms(
        &doc,
        &g,
        "/api/v1/audit",
        &srv.get("/api/v1/audit?limit=5&order=desc", Some(&admin)).await,
    );
    conforms(
        &doc,
        &g,
        "/api/v1/audit/verify",
        &srv.get("/api/v1/audit/verify", Some(&admin)).await,
    );
    conforms(
        &doc,
        &g,
        "/api/v1/system/version",
        &srv.get("/api/v1/system/version", Some(&admin)).await,
    );
    conforms(&doc, &g, "/api/v1/system/info", &srv.get("/api/v1/system/info", Some(&admin)).await);
    conforms(&doc, &g, "/api/v1/system/df", &srv.get("/api/v1/system/df", Some(&admin)).await);
    conforms(
        &doc,
        &Method::POST,
        "/api/v1/system/prune",
        &srv.post_json("/api/v1/system/prune?dryRun=true", Some(&admin), json!({})).await,
    );
    conforms(&doc, &g, "/api/v1/sync", &srv.get("/api/v1/sync", Some(&admin)).await);
}
