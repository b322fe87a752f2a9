//! The typed GraphQL schema over real HTTP against a real server on 127.0.0.1:0 and the real
//! store: resources typed per kind from the schema crate's own types, the caller, users and
//! tokens as types, and the REST parity fields (audit verify, sync status) answering as their
//! REST routes do. The Docker parity fields (disk usage, prune) are in `system_engine.rs`.

mod common;

use berth_controller::store::WriteContext;
use berth_schemas::condition::{Condition, ConditionStatus};
use berth_schemas::{BoundPort, ContainerState, ContainerStatus, Kind, Protocol, ResourceKey};
use serde_json::{Value, json};

use common::TestServer;

async fn gql(s: &TestServer, token: &str, query: &str) -> Value {
    let r = s.post_json("/graphql", Some(token), json!({ "query": query })).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// `data` of a query that must succeed.
async fn data(s: &TestServer, token: &str, query: &str) -> Value {
    let j = gql(s, token, query).await;
    assert!(j["errors"].is_null(), "{query}: {j}");
    j["data"].clone()
}

fn code(j: &Value) -> &str {
    j["errors"][0]["extensions"]["code"].as_str().unwrap_or_default()
}

const WEB: &str = "apiVersion: berth.dev/v1
kind: Container
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  image: berth-test/busybox:1
  imagePullPolicy: Never
  command: [sleep]
  args: ['300']
  env:
    - {name: MODE, value: test}
  ports:
    - {containerPort: 80, hostPort: 18080, hostIP: 127.0.0.1}
    - {containerPort: 53, protocol: udp}
  resources: {memory: 64Mi, cpus: '0.5'}
  restartPolicy: {policy: OnFailure, maxRetries: 3}
  dependsOn:
    - {kind: Image, name: busybox}
---
apiVersion: berth.dev/v1
kind: Image
metadata:
  name: busybox
spec:
  reference: berth-test/busybox:1
  pullPolicy: Never
";

/// Writes a status the way the controller does (the API server under test runs no
/// controller).
async fn write_status(s: &TestServer) {
    let status = ContainerStatus {
        observed_generation: Some(1),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: ConditionStatus::True,
            reason: "Running".into(),
            message: "the container runs".into(),
            last_transition_time: chrono::Utc::now(),
            observed_generation: Some(1),
        }],
        container_id: Some("0123456789ab".into()),
        state: Some(ContainerState::Running),
        ports: vec![BoundPort {
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: "127.0.0.1".into(),
            host_port: 18080,
        }],
        ..ContainerStatus::default()
    };
    s.state
        .resources()
        .update_status(
            &WriteContext::controller(),
            &ResourceKey::new(Kind::Container, "default", "web"),
            serde_json::to_value(&status).expect("status JSON"),
        )
        .await
        .expect("write status");
}

#[tokio::test]
async fn typed_spec_and_status_are_queryable_and_answer_what_rest_answers() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let viewer = s.user(&admin, "vic", "viewer").await;
    let r = s.apply_yaml(&admin, "", WEB).await;
    assert_eq!(r.status, 200, "{}", r.text());
    write_status(&s).await;
    let rest = s.get("/api/v1/containers/default/web", Some(&viewer)).await.json();

    let d = data(
        &s,
        &viewer,
        "{ containers(labelSelector: \"app=web\") {
             apiVersion kind metadata { name namespace labels generation resourceVersion }
             spec { image imagePullPolicy command args env { name value }
                    ports { containerPort hostPort hostIP protocol }
                    resources { memory cpus } restartPolicy { policy maxRetries }
                    dependsOn { kind name namespace } desiredState privileged networks }
             status { observedGeneration containerId state restartCount
                      conditions { type status reason message observedGeneration }
                      ports { containerPort protocol hostIP hostPort } } } }",
    )
    .await;
    let c = &d["containers"][0];
    assert_eq!(d["containers"].as_array().map(Vec::len), Some(1), "{d}");
    assert_eq!(c["kind"], "Container");
    assert_eq!(c["apiVersion"], rest["apiVersion"]);
    assert_eq!(c["metadata"]["labels"], rest["metadata"]["labels"]);
    assert_eq!(c["metadata"]["resourceVersion"], rest["metadata"]["resourceVersion"]);
    // GraphQL field names and enum values are the manifest's: what REST answers for these
    // fields is, field for field, what GraphQL answers.
    for f in ["image", "imagePullPolicy", "command", "args", "env", "resources", "restartPolicy"] {
        assert_eq!(c["spec"][f], rest["spec"][f], "spec.{f}: {c}");
    }
    // REST leaves out a default value (`protocol: tcp`); GraphQL answers it.
    let mut port = c["spec"]["ports"][0].clone();
    assert_eq!(port.as_object_mut().expect("port").remove("protocol"), Some(json!("tcp")));
    assert_eq!(port, rest["spec"]["ports"][0], "{c}");
    assert_eq!(c["spec"]["ports"][1]["protocol"], "udp", "{c}");
    assert_eq!(c["spec"]["ports"][1]["hostPort"], Value::Null, "{c}");
    assert_eq!(c["spec"]["dependsOn"][0]["kind"], "Image", "{c}");
    assert_eq!(c["spec"]["desiredState"], "Running", "defaults are filled in: {c}");
    assert_eq!(c["spec"]["privileged"], false, "{c}");
    assert_eq!(c["status"]["state"], "Running", "{c}");
    assert_eq!(c["status"]["state"], rest["status"]["state"]);
    assert_eq!(c["status"]["ports"][0], rest["status"]["ports"][0], "{c}");
    let cond = &c["status"]["conditions"][0];
    assert_eq!(
        (&cond["type"], &cond["status"], &cond["reason"]),
        (
            &rest["status"]["conditions"][0]["type"],
            &rest["status"]["conditions"][0]["status"],
            &rest["status"]["conditions"][0]["reason"]
        )
    );
    assert_eq!(cond["status"], "True", "{c}");

    // One by name, the kind-agnostic form's typed view, and an Image.
    let d = data(
        &s,
        &viewer,
        "{ container(name: \"web\") { spec { ports { containerPort } } status { state } }
           missing: container(name: \"nope\") { kind }
           resource(kind: \"Container\", name: \"web\") {
             asContainer { spec { image } status { conditions { type status } } }
             asImage { kind } }
           images { metadata { name } spec { reference pullPolicy presence } status { imageId } }
           image(name: \"busybox\") { kind spec { reference } } }",
    )
    .await;
    assert_eq!(d["container"]["spec"]["ports"][0]["containerPort"], 80, "{d}");
    assert_eq!(d["container"]["status"]["state"], "Running", "{d}");
    assert_eq!(d["missing"], Value::Null, "{d}");
    assert_eq!(d["resource"]["asContainer"]["spec"]["image"], "berth-test/busybox:1", "{d}");
    assert_eq!(d["resource"]["asContainer"]["status"]["conditions"][0]["type"], "Ready", "{d}");
    assert_eq!(d["resource"]["asImage"], Value::Null, "{d}");
    assert_eq!(d["images"][0]["spec"]["pullPolicy"], "Never", "{d}");
    assert_eq!(d["images"][0]["spec"]["presence"], "Present", "{d}");
    assert_eq!(d["images"][0]["status"], Value::Null, "no status written yet: {d}");
    assert_eq!(d["image"]["kind"], "Image", "{d}");

    // The JSON forms are still there for kind-agnostic clients.
    let d =
        data(&s, &viewer, "{ resource(kind: \"Container\", name: \"web\") { spec status } }").await;
    assert_eq!(d["resource"]["spec"], rest["spec"]);
    assert_eq!(d["resource"]["status"], rest["status"]);

    // Selecting a typed field that does not exist is a validation error, as it should be.
    let j = gql(&s, &viewer, "{ containers { spec { imagePolicy } } }").await;
    assert_eq!(code(&j), "validation_failed", "{j}");
}

/// The GraphQL type of `field` of type `ty`, unwrapped from lists and non-null.
fn named_type(fields: &Value, field: &str) -> (String, String) {
    let f = fields
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == field))
        .unwrap_or_else(|| panic!("no field {field}: {fields}"));
    let mut t = &f["type"];
    while t["name"].is_null() {
        t = &t["ofType"];
    }
    (
        t["kind"].as_str().unwrap_or_default().to_owned(),
        t["name"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn introspection_shows_resources_accounts_and_system_as_types_not_json() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let ty = "fields { name type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }";
    let d = data(
        &s,
        &admin,
        &format!(
            "{{ query: __type(name: \"Query\") {{ {ty} }}
               mutation: __type(name: \"Mutation\") {{ {ty} }}
               container: __type(name: \"Container\") {{ {ty} }}
               spec: __type(name: \"ContainerSpec\") {{ {ty} }}
               status: __type(name: \"ContainerStatus\") {{ {ty} }}
               condition: __type(name: \"Condition\") {{ {ty} }}
               conditionStatus: __type(name: \"ConditionStatus\") {{ kind enumValues {{ name }} }} }}"
        ),
    )
    .await;
    let q = &d["query"]["fields"];
    for (field, kind, name) in [
        ("me", "OBJECT", "Me"),
        ("users", "OBJECT", "User"),
        ("apiTokens", "OBJECT", "ApiToken"),
        ("containers", "OBJECT", "Container"),
        ("container", "OBJECT", "Container"),
        ("images", "OBJECT", "Image"),
        ("diskUsage", "OBJECT", "DiskUsageReport"),
        ("systemInfo", "OBJECT", "SystemInfo"),
        ("syncStatus", "OBJECT", "SyncStatus"),
        ("auditVerify", "OBJECT", "AuditVerification"),
    ] {
        assert_eq!(named_type(q, field), (kind.to_owned(), name.to_owned()), "Query.{field}");
    }
    assert_eq!(
        named_type(&d["mutation"]["fields"], "systemPrune"),
        ("OBJECT".to_owned(), "PruneReport".to_owned())
    );
    let c = &d["container"]["fields"];
    assert_eq!(named_type(c, "spec").1, "ContainerSpec");
    assert_eq!(named_type(c, "status").1, "ContainerStatus");
    assert_eq!(named_type(c, "metadata").1, "ObjectMeta");
    let spec = &d["spec"]["fields"];
    assert_eq!(named_type(spec, "ports"), ("OBJECT".to_owned(), "PortMapping".to_owned()));
    assert_eq!(named_type(spec, "imagePullPolicy"), ("ENUM".to_owned(), "PullPolicy".to_owned()));
    assert_eq!(named_type(spec, "resources").1, "Resources");
    assert_eq!(named_type(spec, "labels"), ("SCALAR".to_owned(), "JSONObject".to_owned()));
    assert_eq!(named_type(&d["status"]["fields"], "state").1, "ContainerState");
    assert_eq!(named_type(&d["status"]["fields"], "conditions").1, "Condition");
    assert_eq!(named_type(&d["condition"]["fields"], "status").1, "ConditionStatus");
    assert_eq!(d["conditionStatus"]["kind"], "ENUM");
    assert_eq!(
        d["conditionStatus"]["enumValues"],
        json!([{"name": "True"}, {"name": "False"}, {"name": "Unknown"}])
    );
}

#[tokio::test]
async fn me_users_and_api_tokens_are_types_answering_what_rest_answers() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let viewer = s.user(&admin, "vic", "viewer").await;
    let r = s.post_json("/api/v1/tokens", Some(&viewer), json!({"name": "ci"})).await;
    assert_eq!(r.status, 201, "{}", r.text());

    let d = data(
        &s,
        &viewer,
        "{ me { username role disabled created updated effectiveRole authMethod tokenId }
           apiTokens { id name owner role created expires revoked } }",
    )
    .await;
    let rest_me = s.get("/api/v1/me", Some(&viewer)).await.json();
    for f in ["username", "role", "disabled", "effectiveRole", "authMethod"] {
        assert_eq!(d["me"][f], rest_me[f], "me.{f}: {d}");
    }
    assert_eq!(d["me"]["role"], "viewer");
    assert_eq!(d["me"]["tokenId"], Value::Null);
    let rest_tokens = s.get("/api/v1/tokens", Some(&viewer)).await.json();
    assert_eq!(d["apiTokens"][0]["id"], rest_tokens[0]["id"], "{d}");
    assert_eq!(d["apiTokens"][0]["name"], "ci");
    assert_eq!(d["apiTokens"][0]["role"], rest_tokens[0]["role"]);

    let d = data(&s, &admin, "{ users { username role disabled } }").await;
    let rest_users = s.get("/api/v1/users", Some(&admin)).await.json();
    let names = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .expect("list")
            .iter()
            .map(|u| {
                (u["username"].as_str().unwrap().to_owned(), u["role"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    assert_eq!(names(&d["users"]), names(&rest_users));
    let j = gql(&s, &viewer, "{ users { username } }").await;
    assert_eq!(code(&j), "forbidden", "{j}");
}

#[tokio::test]
async fn audit_verify_answers_as_rest_and_is_admin_only() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let viewer = s.user(&admin, "vic", "viewer").await;
    let d = data(&s, &admin, "{ auditVerify { ok events headHash firstBad problem } }").await;
    let rest = s.get("/api/v1/audit/verify", Some(&admin)).await.json();
    assert_eq!(d["auditVerify"]["ok"], true, "{d}");
    assert_eq!(d["auditVerify"]["events"], rest["events"], "{d} {rest}");
    assert_eq!(d["auditVerify"]["headHash"], rest["headHash"], "{d} {rest}");
    assert_eq!(d["auditVerify"]["firstBad"], rest["firstBad"]);
    let j = gql(&s, &viewer, "{ auditVerify { ok } }").await;
    assert_eq!(code(&j), "forbidden", "{j}");
}

#[tokio::test]
async fn sync_status_answers_as_rest_with_and_without_a_synced_directory() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let d = data(&s, &admin, "{ syncStatus { state } }").await;
    assert_eq!(d["syncStatus"], Value::Null);
    assert_eq!(s.get("/api/v1/sync", Some(&admin)).await.json(), json!({"enabled": false}));

    let status = berth_api::routes::sync::SyncStatus {
        directory: "/srv/repo".into(),
        source: "repo".into(),
        state: berth_api::routes::sync::SyncState::Error,
        last_attempt_at: Some(chrono::Utc::now()),
        resources: 2,
        last_error: Some(berth_api::routes::sync::SyncProblem {
            message: "1 problem: web.yaml:3:1: bad".into(),
            file: Some("web.yaml".into()),
            line: Some(3),
            column: Some(1),
            problems: vec!["web.yaml:3:1: bad".into()],
            at: chrono::Utc::now(),
            commit: None,
        }),
        ..Default::default()
    };
    let (_tx, rx) = tokio::sync::watch::channel(status);
    let s = TestServer::start_state(|_| {}, |_| {}, |st| st.with_sync_status(rx)).await;
    let admin = s.admin().await;
    let viewer = s.user(&admin, "vic", "viewer").await;
    let d = data(
        &s,
        &viewer,
        "{ syncStatus { directory source state lastAppliedAt lastAttemptAt commit resources counts
             lastError { message file line column problems at commit } } }",
    )
    .await;
    let mut rest = s.get("/api/v1/sync", Some(&viewer)).await.json();
    assert_eq!(rest["enabled"], true);
    rest.as_object_mut().expect("object").remove("enabled");
    let mut g = d["syncStatus"].clone();
    // Times: the same instant (GraphQL writes `+00:00` where serde writes `Z`).
    let take = |v: &mut Value, path: &[&str]| -> Option<chrono::DateTime<chrono::Utc>> {
        let (last, parents) = path.split_last().expect("path");
        let mut v = v;
        for p in parents {
            v = &mut v[*p];
        }
        let t = v.as_object_mut().expect("object").remove(*last)?;
        t.as_str().map(|t| t.parse().expect("RFC 3339"))
    };
    for path in [&["lastAttemptAt"][..], &["lastError", "at"][..]] {
        assert_eq!(take(&mut g, path), take(&mut rest, path), "{path:?}");
    }
    // REST leaves out an absent commit of the problem; GraphQL answers null.
    assert_eq!(g["lastError"].as_object_mut().expect("object").remove("commit"), Some(Value::Null));
    assert_eq!(g, rest, "GraphQL {g}\nREST {rest}");
    assert_eq!(g["state"], "error");
}
