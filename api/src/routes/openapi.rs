//! The OpenAPI 3.1 document at `/api/v1/openapi.json`, generated from the route list and the
//! policy table, so a route cannot be served without being documented (a test checks that the
//! document covers every route and that real responses match it).

use axum::Json;
use axum::http::Method;
use serde_json::{Map, Value, json};

use crate::app::{Route, routes};
use crate::policy::Access;

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn array_of(v: Value) -> Value {
    json!({ "type": "array", "items": v })
}

fn schemas() -> Value {
    let string = json!({ "type": "string" });
    let time = json!({ "type": "string", "format": "date-time" });
    let role = json!({ "type": "string", "enum": ["viewer", "operator", "admin"] });
    let mut all = json!({
        "Error": {
            "type": "object", "required": ["code", "message", "details"],
            "properties": { "code": string, "message": string, "details": {} }
        },
        "Status": { "type": "object", "required": ["status"], "properties": { "status": string } },
        "LoginRequest": {
            "type": "object", "required": ["username", "password"],
            "properties": { "username": { "type": "string", "maxLength": 256 }, "password": string }
        },
        "RefreshRequest": {
            "type": "object", "required": ["refreshToken"], "properties": { "refreshToken": string }
        },
        "TokenPair": {
            "type": "object", "required": ["accessToken", "refreshToken", "expiresIn", "tokenType"],
            "properties": {
                "accessToken": string, "refreshToken": string,
                "expiresIn": { "type": "integer" }, "tokenType": string
            }
        },
        "User": {
            "type": "object", "required": ["username", "role", "disabled", "created", "updated"],
            "properties": {
                "username": string, "role": role, "disabled": { "type": "boolean" },
                "created": time, "updated": time
            }
        },
        "Me": {
            "type": "object",
            "required": ["username", "role", "disabled", "effectiveRole", "authMethod"],
            "properties": {
                "username": string, "role": role, "disabled": { "type": "boolean" },
                "created": time, "updated": time, "effectiveRole": role,
                "authMethod": { "type": "string", "enum": ["session", "apiToken"] },
                "tokenId": string
            }
        },
        "CreateUser": {
            "type": "object", "required": ["username", "password", "role"],
            "properties": { "username": string, "password": string, "role": role }
        },
        "PatchUser": {
            "type": "object", "properties": { "role": role, "disabled": { "type": "boolean" } }
        },
        "SetPassword": {
            "type": "object", "required": ["password"],
            "properties": { "password": string, "revokeTokens": { "type": "boolean", "default": false } }
        },
        "ChangeOwnPassword": {
            "type": "object", "required": ["currentPassword", "newPassword"],
            "properties": { "currentPassword": string, "newPassword": string }
        },
        "ApiToken": {
            "type": "object", "required": ["id", "name", "owner", "role", "created"],
            "properties": {
                "id": string, "name": string, "owner": string, "role": role, "created": time,
                "expires": { "type": ["string", "null"] }, "revoked": { "type": ["string", "null"] }
            }
        },
        "CreatedToken": {
            "type": "object", "required": ["id", "name", "owner", "role", "created", "token"],
            "properties": {
                "id": string, "name": string, "owner": string, "role": role, "created": time,
                "expires": { "type": ["string", "null"] }, "revoked": { "type": ["string", "null"] },
                "token": { "type": "string", "description": "Shown once." }
            }
        },
        "CreateToken": {
            "type": "object", "required": ["name"],
            "properties": {
                "name": string, "role": role, "expiresInDays": { "type": "integer", "minimum": 1 }
            }
        },
        "Object": {
            "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {
                "apiVersion": string, "kind": string, "metadata": { "type": "object" },
                "spec": { "type": "object" }, "status": {}
            }
        },
        "ObjectList": {
            "type": "object", "required": ["apiVersion", "kind", "metadata", "items"],
            "properties": {
                "apiVersion": string, "kind": string,
                "metadata": {
                    "type": "object", "required": ["resourceVersion"],
                    "properties": { "resourceVersion": string }
                },
                "items": array_of(r("Object"))
            }
        },
        "ObjectStatus": {
            "type": "object", "required": ["kind", "metadata", "status"],
            "properties": { "kind": string, "metadata": { "type": "object" }, "status": {} }
        },
        "DeleteResult": {
            "type": "object", "required": ["outcome", "object"],
            "properties": {
                "outcome": { "type": "string", "enum": ["deleted", "terminating"] },
                "object": r("Object")
            }
        },
        "Change": {
            "type": "object", "required": ["path", "op"],
            "properties": {
                "path": string, "op": { "type": "string", "enum": ["add", "remove", "replace"] },
                "from": {}, "to": {}
            }
        },
        "ApplyResult": {
            "type": "object", "required": ["doc", "kind", "namespace", "name", "outcome", "diff"],
            "properties": {
                "doc": { "type": "integer" }, "kind": string, "namespace": string, "name": string,
                "outcome": {
                    "type": "string",
                    "enum": ["created", "configured", "unchanged", "deleted", "terminating"]
                },
                "resourceVersion": string, "generation": { "type": "integer" },
                "diff": array_of(r("Change"))
            }
        },
        "ApplyResponse": {
            "type": "object", "required": ["dryRun", "results", "pruned"],
            "properties": {
                "dryRun": { "type": "boolean" },
                "results": array_of(r("ApplyResult")), "pruned": array_of(r("ApplyResult"))
            }
        },
        "AuditEvent": {
            "type": "object", "required": ["seq", "time", "actor", "source", "verb", "outcome", "prevHash"],
            "properties": {
                "seq": { "type": "integer" }, "time": time, "actor": string, "source": string,
                "verb": string, "kind": string, "namespace": string, "name": string,
                "outcome": {
                    "type": "string",
                    "enum": ["success", "denied", "failure", "pending", "unknown"]
                },
                "message": string, "diff": array_of(string.clone()), "prevHash": string,
                "intentSeq": { "type": "integer" }
            }
        },
        "AuditPage": {
            "type": "object", "required": ["events", "nextCursor"],
            "properties": {
                "events": array_of(r("AuditEvent")),
                "nextCursor": { "type": ["integer", "null"] }
            }
        },
        "VerifyReport": {
            "type": "object", "required": ["events", "headHash", "firstBad", "problem"],
            "properties": {
                "events": { "type": "integer" }, "headHash": string,
                "firstBad": { "type": ["integer", "null"] }, "problem": { "type": ["string", "null"] },
                "verifiedFrom": { "type": "integer" }, "headSeq": { "type": ["integer", "null"] },
                "keyedFrom": { "type": ["integer", "null"] }, "keyChecked": { "type": "boolean" },
                "expectedHead": { "type": ["string", "null"] }
            }
        },
        "AuditHead": {
            "type": "object", "required": ["seq", "hash"],
            "properties": { "seq": { "type": "integer" }, "hash": string }
        },
        "EngineVersion": {
            "type": "object", "required": ["version", "apiVersion", "os", "arch"],
            "properties": {
                "version": string, "apiVersion": string, "negotiatedApiVersion": string,
                "os": string, "arch": string, "berthVersion": string
            }
        },
        "Items": {
            "type": "object", "required": ["items"],
            "properties": { "items": array_of(json!({ "type": "object" })) }
        }
    });
    all["SyncStatus"] = sync_status_schema();
    all
}

/// The schema of `GET /api/v1/sync` (apart: the main `json!` would exceed the macro recursion
/// limit).
fn sync_status_schema() -> Value {
    let string = json!({ "type": "string" });
    let time = json!({ "type": "string", "format": "date-time" });
    json!({
        "type": "object", "required": ["enabled"],
        "description": "{\"enabled\": false} alone when the server syncs no directory.",
        "properties": {
            "enabled": { "type": "boolean" }, "directory": string, "source": string,
            "state": { "type": "string", "enum": ["pending", "ok", "error"] },
            "lastAppliedAt": { "type": ["string", "null"], "format": "date-time" },
            "lastAttemptAt": { "type": ["string", "null"], "format": "date-time" },
            "commit": { "type": ["string", "null"] },
            "resources": { "type": "integer" },
            "counts": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "applied": { "type": "integer" }, "created": { "type": "integer" },
                        "configured": { "type": "integer" },
                        "unchanged": { "type": "integer" }, "pruned": { "type": "integer" }
                    }
                }
            },
            "lastError": {
                "type": ["object", "null"],
                "properties": {
                    "message": string, "file": string, "line": { "type": "integer" },
                    "column": { "type": "integer" }, "problems": array_of(string.clone()),
                    "at": time, "commit": string
                }
            }
        }
    })
}

/// The `/api/v1/system` and replace schemas (a separate `json!` keeps the macro under its
/// recursion limit).
fn more_schemas() -> Value {
    let string = json!({ "type": "string" });
    json!({
        "ReplaceResponse": {
            "type": "object", "required": ["outcome", "object", "diff"],
            "properties": {
                "outcome": { "type": "string", "enum": ["configured", "unchanged"] },
                "object": r("Object"), "diff": array_of(r("Change"))
            }
        },
        "SystemInfo": {
            "type": "object", "required": ["engine", "berth"],
            "properties": {
                "engine": {
                    "type": "object",
                    "required": ["version", "containers", "images", "storageDriver", "kernelVersion",
                        "operatingSystem", "cpus", "memoryBytes"],
                    "properties": {
                        "name": string, "version": string,
                        "containers": {
                            "type": "object", "required": ["total", "running", "paused", "stopped"],
                            "properties": {
                                "total": { "type": "integer" }, "running": { "type": "integer" },
                                "paused": { "type": "integer" }, "stopped": { "type": "integer" }
                            }
                        },
                        "images": { "type": "integer" }, "storageDriver": string,
                        "kernelVersion": string, "operatingSystem": string, "osType": string,
                        "architecture": string, "cpus": { "type": "integer" },
                        "memoryBytes": { "type": "integer" }, "rootDir": string
                    }
                },
                "berth": {
                    "type": "object",
                    "required": ["version", "instanceId", "storeBytes", "resources", "managedContainers"],
                    "properties": {
                        "version": string, "instanceId": string,
                        "storeBytes": { "type": "integer" }, "revision": { "type": "integer" },
                        "resources": { "type": "object", "additionalProperties": { "type": "integer" } },
                        "managedContainers": {
                            "type": "object", "required": ["total", "running"],
                            "properties": {
                                "total": { "type": "integer" }, "running": { "type": "integer" }
                            }
                        }
                    }
                }
            }
        },
        "DiskUsage": {
            "type": "object", "required": ["images", "containers", "volumes", "buildCache"],
            "properties": {
                "images": r("UsageClass"), "containers": r("UsageClass"),
                "volumes": r("UsageClass"),
                "buildCache": {
                    "description": "null when the Engine's API version does not report it",
                    "type": ["object", "null"]
                }
            }
        },
        "UsageClass": {
            "type": "object", "required": ["count", "active", "sizeBytes", "berth"],
            "properties": {
                "count": { "type": "integer" }, "active": { "type": "integer" },
                "sizeBytes": { "type": ["integer", "null"] },
                "reclaimableBytes": { "type": "integer" },
                "berth": {
                    "type": "object", "required": ["count"],
                    "properties": { "count": { "type": "integer" }, "sizeBytes": { "type": "integer" } }
                }
            }
        },
        "PruneResponse": {
            "type": "object", "required": ["dryRun", "items"],
            "properties": {
                "dryRun": { "type": "boolean" },
                "items": array_of(json!({
                    "type": "object", "required": ["type", "id", "name", "reason", "removed"],
                    "properties": {
                        "type": { "type": "string", "enum": ["container", "image"] },
                        "id": string, "name": string, "reason": string,
                        "removed": { "type": "boolean" }, "error": string
                    }
                }))
            }
        }
    })
}

fn all_schemas() -> Value {
    let mut all = schemas();
    if let (Value::Object(m), Value::Object(more)) = (&mut all, more_schemas()) {
        m.extend(more);
    }
    all
}

/// What one route takes and answers: (summary, request body schema, success status and schema).
fn operation(method: &Method, path: &str) -> (&'static str, Option<Value>, u16, Option<Value>) {
    let m = method.as_str();
    match (m, path) {
        ("GET", "/healthz") => ("Liveness", None, 200, Some(r("Status"))),
        ("GET", "/readyz") => ("Readiness (503 when not ready)", None, 200, Some(r("Status"))),
        ("GET", "/metrics") => ("Prometheus metrics (text format)", None, 200, None),
        ("GET", "/api/v1/openapi.json") => {
            ("This document", None, 200, Some(json!({"type": "object"})))
        }
        ("POST", "/api/v1/auth/login") => {
            ("Log in", Some(r("LoginRequest")), 200, Some(r("TokenPair")))
        }
        ("POST", "/api/v1/auth/refresh") => {
            ("Exchange a refresh token", Some(r("RefreshRequest")), 200, Some(r("TokenPair")))
        }
        ("POST", "/api/v1/auth/logout") => {
            ("End the session", Some(r("RefreshRequest")), 204, None)
        }
        ("GET", "/api/v1/me") => ("The caller", None, 200, Some(r("Me"))),
        ("PUT", "/api/v1/me/password") => {
            ("Change own password", Some(r("ChangeOwnPassword")), 204, None)
        }
        ("GET", "/api/v1/users") => ("List users", None, 200, Some(array_of(r("User")))),
        ("POST", "/api/v1/users") => ("Create a user", Some(r("CreateUser")), 201, Some(r("User"))),
        ("GET", "/api/v1/users/{username}") => ("Get a user", None, 200, Some(r("User"))),
        ("PATCH", "/api/v1/users/{username}") => {
            ("Change role or disable", Some(r("PatchUser")), 200, Some(r("User")))
        }
        ("DELETE", "/api/v1/users/{username}") => ("Delete a user", None, 204, None),
        ("PUT", "/api/v1/users/{username}/password") => {
            ("Reset a password", Some(r("SetPassword")), 204, None)
        }
        ("GET", "/api/v1/tokens") => ("List API tokens", None, 200, Some(array_of(r("ApiToken")))),
        ("POST", "/api/v1/tokens") => {
            ("Create an API token", Some(r("CreateToken")), 201, Some(r("CreatedToken")))
        }
        ("DELETE", "/api/v1/tokens/{id}") => {
            ("Revoke an API token", None, 200, Some(r("ApiToken")))
        }
        ("POST", "/api/v1/apply") => ("Apply manifests", None, 200, Some(r("ApplyResponse"))),
        ("GET", "/api/v1/audit") => ("Query the audit log", None, 200, Some(r("AuditPage"))),
        ("GET", "/api/v1/audit/verify") => {
            ("Verify the audit chain", None, 200, Some(r("VerifyReport")))
        }
        ("GET", "/api/v1/audit/head") => {
            ("The latest audit event's sequence number and hash", None, 200, Some(r("AuditHead")))
        }
        ("GET", "/api/v1/system/version") => {
            ("Docker Engine version", None, 200, Some(r("EngineVersion")))
        }
        ("GET", "/api/v1/system/containers") => {
            ("Every Docker container", None, 200, Some(r("Items")))
        }
        ("GET", "/api/v1/system/images") => ("Every Docker image", None, 200, Some(r("Items"))),
        ("GET", "/api/v1/system/info") => {
            ("Docker Engine and berth facts", None, 200, Some(r("SystemInfo")))
        }
        ("GET", "/api/v1/system/df") => ("Docker disk usage", None, 200, Some(r("DiskUsage"))),
        ("POST", "/api/v1/system/prune") => {
            ("Remove berth's own leftovers", None, 200, Some(r("PruneResponse")))
        }
        ("GET", "/api/v1/sync") => {
            ("The directory sync's status", None, 200, Some(r("SyncStatus")))
        }
        ("GET", "/api/v1/system/backup") => {
            ("A consistent backup of the whole store (berth-backup format)", None, 200, None)
        }
        ("GET", "/api/v1/{plural}") => {
            ("List or watch resources", None, 200, Some(r("ObjectList")))
        }
        ("GET", "/api/v1/{plural}/{namespace}/{name}") => {
            ("Get a resource", None, 200, Some(r("Object")))
        }
        ("DELETE", "/api/v1/{plural}/{namespace}/{name}") => {
            ("Delete a resource", None, 200, Some(r("DeleteResult")))
        }
        ("PUT", "/api/v1/{plural}/{namespace}/{name}") => {
            ("Replace a resource (YAML or JSON)", None, 200, Some(r("ReplaceResponse")))
        }
        ("GET", "/api/v1/{plural}/{namespace}/{name}/status") => {
            ("A resource's status", None, 200, Some(r("ObjectStatus")))
        }
        _ => ("", None, 200, None),
    }
}

fn query_params(method: &Method, path: &str) -> Vec<Value> {
    let q = |name: &str, ty: &str, desc: &str| json!({ "name": name, "in": "query", "required": false, "schema": { "type": ty }, "description": desc });
    match (method.as_str(), path) {
        ("POST", "/api/v1/apply") => vec![
            q("dryRun", "boolean", "Validate and report, write nothing."),
            q(
                "prune",
                "string",
                "Delete resources matching this label selector that the request lacks.",
            ),
        ],
        ("GET", "/api/v1/{plural}") => vec![
            q("namespace", "string", "One namespace (all when absent)."),
            q("labelSelector", "string", "kubectl-style label selector."),
            q("watch", "boolean", "Stream changes as application/x-ndjson."),
            q(
                "resourceVersion",
                "string",
                "With watch: resume after this revision (410 when too old).",
            ),
        ],
        ("DELETE", "/api/v1/{plural}/{namespace}/{name}") => vec![
            q(
                "wait",
                "boolean",
                "Wait until the resource is gone (200) or the wait times out (202).",
            ),
            q("timeoutSeconds", "integer", "How long to wait."),
        ],
        ("POST", "/api/v1/system/prune") => {
            vec![q("dryRun", "boolean", "Answer what would be removed, remove nothing.")]
        }
        ("GET", "/api/v1/tokens") => vec![
            q("all", "boolean", "Every user's tokens (admin)."),
            q("owner", "string", "One user's tokens (admin unless it is the caller)."),
        ],
        ("GET", "/api/v1/audit") => {
            ["since", "until", "actor", "verb", "kind", "namespace", "name", "order"]
                .into_iter()
                .map(|n| q(n, "string", ""))
                .chain([
                    q("cursor", "integer", "The previous page's nextCursor."),
                    q("limit", "integer", "1-1000."),
                ])
                .collect()
        }
        _ => Vec::new(),
    }
}

fn path_item(p: &Route) -> Value {
    let (_, body, status, schema) = operation(&p.method, p.path);
    let summary = p.doc.summary;
    let mut params: Vec<Value> = p
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    params.extend(query_params(&p.method, p.path));
    let mut responses = Map::new();
    let ok = match (&schema, p.path) {
        (_, "/metrics") => {
            json!({ "description": "OK", "content": { "text/plain": { "schema": { "type": "string" } } } })
        }
        (_, "/api/v1/system/backup") => json!({
            "description": "The backup file: magic BERTHBK1, JSON header, records, SHA-256 of \
                            everything before it as the last 32 bytes",
            "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } }
        }),
        (Some(s), _) => {
            json!({ "description": "OK", "content": { "application/json": { "schema": s } } })
        }
        (None, _) => json!({ "description": "No content" }),
    };
    responses.insert(status.to_string(), ok);
    if p.path == "/api/v1/{plural}" && p.method == Method::GET {
        responses.insert(
            "200".into(),
            json!({ "description": "A list; with watch=true a stream of {type, revision, object} lines", "content": {
                "application/json": { "schema": r("ObjectList") },
                "application/x-ndjson": { "schema": { "type": "object", "required": ["type", "object"] } }
            }}),
        );
    }
    if p.path == "/readyz" {
        responses.insert(
            "503".into(),
            json!({ "description": "Not ready", "content": { "application/json": { "schema": r("Status") } } }),
        );
    }
    let err = json!({ "description": "Error", "content": { "application/json": { "schema": r("Error") } } });
    responses.insert("default".into(), err);
    let mut op = Map::new();
    op.insert("summary".into(), json!(summary));
    op.insert("operationId".into(), json!(format!("{} {}", p.method, p.path)));
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if p.path == "/api/v1/apply"
        || (p.method == Method::PUT && p.path == "/api/v1/{plural}/{namespace}/{name}")
    {
        let any = json!({ "schema": { "type": "string" } });
        op.insert(
            "requestBody".into(),
            json!({ "required": true, "content": {
                "application/yaml": any, "application/json": { "schema": {} }
            }}),
        );
    } else if let Some(b) = body {
        op.insert(
            "requestBody".into(),
            json!({ "required": p.path != "/api/v1/auth/logout", "content": { "application/json": { "schema": b } } }),
        );
    }
    op.insert("tags".into(), json!([p.doc.tag]));
    match p.access {
        Access::Public | Access::WebsocketInit => {
            op.insert("security".into(), json!([]));
        }
        Access::GraphqlFields => {
            op.insert(
                "description".into(),
                json!("Any authenticated role; each field checks its own action."),
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
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// Builds the document.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for p in &routes() {
        let item = paths.entry(p.path.to_owned()).or_insert_with(|| json!({}));
        if let Value::Object(m) = item {
            m.insert(p.method.as_str().to_lowercase(), path_item(p));
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
            "schemas": all_schemas(),
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
