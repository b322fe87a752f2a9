//! GraphQL over a real websocket (tokio-tungstenite) and HTTP against a real server on
//! 127.0.0.1:0, the real store, and a real container from `berth-test/busybox:1` on the test
//! Docker Engine (`scripts/test-env env`). Without an Engine these tests fail.

mod common;

use std::time::Duration;

use base64::Engine as _;
use berth_controller::docker::{BollardDriver, ContainerCreate, DockerConfig, Driver};
use berth_controller::labels;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use common::{TestServer, engine, image};

const LIMIT: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A running container labelled as berth's `Container default/<name>`; removed on drop, also
/// when the test panics (the removal runs on its own thread and runtime, so it completes while
/// the test's runtime is going away). Test scripts end on their own too (bounded loops,
/// `timeout`), so that even a leaked container cannot eat CPU for long.
struct TestContainer {
    id: String,
}

impl TestContainer {
    /// A container of `Container default/<name>` carrying the ownership labels of `instance`
    /// (the server's, `instance_of(&s)`, unless a test means another berth's), with no stored
    /// resource behind it.
    async fn start(instance: &str, name: &str, script: &str) -> Self {
        let mut labels: std::collections::HashMap<String, String> = [
            (labels::MANAGED_BY, labels::MANAGED_BY_VALUE),
            (labels::INSTANCE, instance),
            (labels::KIND, "Container"),
            (labels::NAMESPACE, "default"),
            (labels::NAME, name),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        labels.insert(TEST_LABEL.0.to_owned(), TEST_LABEL.1.to_owned());
        let spec = ContainerCreate {
            name: format!("berth-gqltest-{name}-{}", uuid::Uuid::new_v4().simple()),
            image: image(),
            cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
            labels,
            ..ContainerCreate::default()
        };
        Self::run(&spec).await
    }

    /// Creates and starts `spec`.
    async fn run(spec: &ContainerCreate) -> Self {
        let driver = engine().await;
        let id = within("container create", driver.create_container(spec)).await.expect("create");
        // Guard first, so that a failed start still removes the container.
        let c = Self { id };
        within("container start", driver.start_container(&c.id)).await.expect("start");
        c
    }
}

/// The label every container of these tests carries.
const TEST_LABEL: (&str, &str) = ("dev.berth.test", "graphql");

/// The instance id of the server's store: the controller's containers carry it.
fn instance_of(s: &TestServer) -> String {
    s.state.resources().instance_id().to_owned()
}

/// A resource name no other test (or test process on the same Engine) uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Applies `Container default/<name>` running `script` (`extra_spec`: more lines under `spec`,
/// indented two spaces) as `token`, then runs the container this server's controller would
/// make for it: the controller's own create request (`container_create`) with the stored
/// uid and the spec hash of the image it resolves. (The API tests run no controller.)
async fn applied(
    s: &TestServer,
    token: &str,
    name: &str,
    script: &str,
    extra_spec: &str,
) -> TestContainer {
    use berth_controller::reconcile::container::create::container_create;
    use berth_schemas::{Kind, Resource, ResourceKey};
    let yaml = format!(
        "apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: {name}\n  labels:\n    {}: {}\nspec:\n  image: {}\n  command: [\"sh\", \"-c\", {script:?}]\n{extra_spec}",
        TEST_LABEL.0,
        TEST_LABEL.1,
        image()
    );
    let r = s.apply_yaml(token, "", &yaml).await;
    assert_eq!(r.status, 200, "apply {name}: {}", r.text());
    let key = ResourceKey::new(Kind::Container, "default", name);
    let stored = s.state.resources().get(&key).await.expect("get").expect("stored");
    let Ok(Resource::Container(obj)) = Resource::from_dynamic(&stored) else {
        panic!("{key} is not a Container");
    };
    let uid = obj.metadata.uid.clone().expect("uid");
    let image_id = within("inspect image", engine().await.inspect_image(&obj.spec.image))
        .await
        .expect("inspect")
        .expect("the test image is on the Engine")
        .id;
    let hash = labels::container_spec_hash(&obj, &image_id);
    let create = container_create(&obj, &instance_of(s), &uid, &hash).expect("create request");
    TestContainer::run(&create).await
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let id = self.id.clone();
        // Cleanup must not panic.
        let removal = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                if let Ok(d) = BollardDriver::connect(&DockerConfig::from_env()).await {
                    let _ = tokio::time::timeout(LIMIT, d.remove_container(&id)).await;
                }
            });
        });
        let _ = removal.join();
    }
}

async fn server() -> TestServer {
    server_with(|_| {}).await
}

/// A server on 127.0.0.1:0 over a fresh store, with the test Engine as its driver.
async fn server_with(tweak: impl FnOnce(&mut berth_api::ServeConfig)) -> TestServer {
    TestServer::start_driver(tweak, |_| {}, Some(engine().await)).await
}

struct Ws {
    inner: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

type Handshake = Result<Ws, tokio_tungstenite::tungstenite::Error>;

async fn ws_raw(s: &TestServer, protocol: &str, origin: Option<&str>) -> Handshake {
    let mut req = format!("ws://{}/graphql/ws", s.addr).into_client_request().expect("request");
    req.headers_mut().insert("sec-websocket-protocol", protocol.parse().expect("header"));
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().expect("header"));
    }
    let (inner, _) = within("websocket handshake", tokio_tungstenite::connect_async(req)).await?;
    Ok(Ws { inner })
}

impl Ws {
    async fn connect(s: &TestServer, token: &str) -> Self {
        let mut ws = ws_raw(s, "graphql-transport-ws", None).await.expect("handshake");
        ws.send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}))
            .await;
        let ack = ws.recv().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        ws
    }

    async fn send(&mut self, v: Value) {
        within("send", self.inner.send(Message::Text(v.to_string().into()))).await.expect("send");
    }

    /// The next protocol message, answering server pings. The time limit covers the whole
    /// wait, so that keepalive pings cannot keep a test waiting for ever.
    async fn recv(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for a websocket message"))
                .expect("the socket closed")
                .expect("websocket error");
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if v["type"] == "ping" {
                    self.send(json!({"type": "pong"})).await;
                    continue;
                }
                return v;
            }
        }
    }

    /// Waits for the close frame and returns its code.
    async fn close_code(&mut self) -> u16 {
        loop {
            match within("the close frame", self.inner.next()).await {
                Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                Some(Ok(Message::Close(None))) | None => return u16::from(CloseCode::Status),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("websocket error before close: {e}"),
            }
        }
    }

    /// The next protocol message or the close frame, as is (pings are not answered).
    async fn frame(&mut self) -> Frame {
        loop {
            match within("a websocket frame", self.inner.next()).await {
                Some(Ok(Message::Text(t))) => {
                    return Frame::Text(serde_json::from_str(&t).expect("JSON"));
                }
                Some(Ok(Message::Close(Some(f)))) => {
                    return Frame::Close(u16::from(f.code), f.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None => {
                    return Frame::Close(u16::from(CloseCode::Status), String::new());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("websocket error: {e}"),
            }
        }
    }

    async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}))
            .await;
    }

    /// The next `next` payload's data for `id` (panics on an error message).
    async fn next_data(&mut self, id: &str) -> Value {
        loop {
            let m = self.recv().await;
            if m["id"] != id {
                continue;
            }
            match m["type"].as_str() {
                Some("next") => {
                    assert!(m["payload"]["errors"].is_null(), "errors: {m}");
                    return m["payload"]["data"].clone();
                }
                _ => panic!("expected data for {id}, got {m}"),
            }
        }
    }

    /// The next message for `id`, whatever it is.
    async fn next_for(&mut self, id: &str) -> Value {
        loop {
            let m = self.recv().await;
            if m["id"] == id {
                return m;
            }
        }
    }
}

/// A websocket frame as the client sees it.
#[derive(Debug)]
enum Frame {
    Text(Value),
    Close(u16, String),
}

async fn post(s: &TestServer, token: Option<&str>, body: Value) -> common::Resp {
    s.post_json("/graphql", token, body).await
}

fn code_of(v: &Value) -> String {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or("<none>").to_owned()
}

const LOGS: &str = "subscription L($name: String!, $tail: Int, $follow: Boolean!) {
  logs(name: $name, tail: $tail, follow: $follow, timestamps: true) { stream line timestamp dropped }
}";

#[tokio::test]
async fn logs_tail_returns_the_last_lines_and_follow_keeps_streaming_new_ones() {
    let s = server().await;
    let admin = s.admin().await;
    let c = TestContainer::start(
        &instance_of(&s),
        "logs",
        "i=0; while [ $i -lt 6000 ]; do echo line $i; i=$((i+1)); sleep 0.1; done",
    )
    .await;
    let mut ws = Ws::connect(&s, &admin).await;
    // Follow until line 5 has been written: the live part works.
    ws.subscribe("f", LOGS, json!({"name": "logs", "follow": true})).await;
    let mut seen = Vec::new();
    loop {
        let d = ws.next_data("f").await;
        let line = d["logs"]["line"].as_str().expect("line").to_owned();
        assert_eq!(d["logs"]["stream"], "STDOUT");
        assert!(d["logs"]["timestamp"].is_string());
        seen.push(line.clone());
        if line == "line 12" {
            break;
        }
    }
    let nums: Vec<u64> = seen.iter().map(|l| l[5..].parse().expect("number")).collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "gap or duplicate: {nums:?}");
    assert_eq!(nums.first(), Some(&0));
    // Tail without follow: exactly the last three lines, consecutive, then complete.
    ws.subscribe("t", LOGS, json!({"name": "logs", "tail": 3, "follow": false})).await;
    let mut tail = Vec::new();
    loop {
        let m = ws.next_for("t").await;
        match m["type"].as_str() {
            Some("next") => {
                tail.push(m["payload"]["data"]["logs"]["line"].as_str().expect("line").to_owned())
            }
            Some("complete") => break,
            _ => panic!("unexpected {m}"),
        }
    }
    assert_eq!(tail.len(), 3, "{tail:?}");
    let t: Vec<u64> = tail.iter().map(|l| l[5..].parse().expect("number")).collect();
    assert!(t[2] >= 12 && t[1] == t[0] + 1 && t[2] == t[1] + 1, "{t:?}");
    // A second follower shares the first one's Engine stream.
    ws.subscribe("g", LOGS, json!({"name": "logs", "tail": 0, "follow": true})).await;
    let d = ws.next_data("g").await;
    assert!(d["logs"]["line"].as_str().expect("line").starts_with("line "));
    assert_eq!(
        berth_api::graphql::upstreams_opened(&s.state).0,
        1,
        "one Engine log stream per container"
    );
    drop(c);
}

#[tokio::test]
async fn stats_report_sane_cpu_memory_network_and_pids() {
    let s = server().await;
    let admin = s.admin().await;
    let _c =
        TestContainer::start(&instance_of(&s), "stats", "timeout 600 sh -c 'while :; do :; done'")
            .await;
    let mut ws = Ws::connect(&s, &admin).await;
    let q = "subscription { stats(name: \"stats\", intervalMs: 500) { cpuPercent onlineCpus memoryUsage memoryLimit memoryPercent netRx netTx blockRead blockWrite pids timestamp dropped } }";
    ws.subscribe("s", q, json!({})).await;
    let mut busy = false;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let v = ws.next_data("s").await["stats"].clone();
        let cpus = v["onlineCpus"].as_f64().expect("cpus");
        let cpu = v["cpuPercent"].as_f64().expect("cpu");
        assert!(cpus >= 1.0);
        assert!((0.0..=cpus * 100.0 + 5.0).contains(&cpu), "cpu {cpu} with {cpus} CPUs");
        busy |= cpu > 1.0;
        seen.push(v.clone());
        let mem = v["memoryUsage"].as_f64().expect("mem");
        let limit = v["memoryLimit"].as_f64().expect("limit");
        assert!(mem > 0.0 && mem < limit, "memory {mem} of {limit}");
        assert!(v["pids"].as_u64().expect("pids") >= 1);
        assert!(v["timestamp"].is_string());
        assert!(v["netRx"].as_u64().is_some() && v["blockRead"].as_u64().is_some());
    }
    assert!(busy, "a busy loop shows CPU use: {seen:?}");
    // Another subscriber reuses the same Engine stream.
    ws.subscribe("s2", q, json!({})).await;
    ws.next_data("s2").await;
    assert_eq!(berth_api::graphql::upstreams_opened(&s.state).1, 1);
}

#[tokio::test]
async fn exec_with_a_tty_takes_stdin_and_a_resize_and_reports_the_exit_code() {
    let s = server().await;
    let admin = s.admin().await;
    let name = unique("exec");
    let _c = applied(&s, &admin, &name, "sleep 600", "").await;
    let mut ws = Ws::connect(&s, &admin).await;
    let q = "subscription($n: String!) { exec(name: $n, command: [\"sh\"], tty: true) { type sessionId stream data exitCode } }";
    ws.subscribe("x", q, json!({"n": name})).await;
    let first = ws.next_data("x").await;
    assert_eq!(first["exec"]["type"], "STARTED");
    let sid = first["exec"]["sessionId"].as_str().expect("session").to_owned();
    let r = post(
        &s,
        Some(&admin),
        json!({"query": "mutation($s: String!) { execResize(sessionId: $s, cols: 123, rows: 45) }", "variables": {"s": sid}}),
    )
    .await;
    assert_eq!(r.json()["data"]["execResize"], true, "{}", r.text());
    // A viewer may not send input, and another user cannot find the session.
    let viewer = s.user(&admin, "vera", "viewer").await;
    let input = "mutation($s: String!, $d: String!) { execInput(sessionId: $s, data: $d) }";
    let r =
        post(&s, Some(&viewer), json!({"query": input, "variables": {"s": sid, "d": "x"}})).await;
    assert_eq!(code_of(&r.json()), "forbidden");
    let op = s.user(&admin, "otto", "operator").await;
    let r = post(&s, Some(&op), json!({"query": input, "variables": {"s": sid, "d": "x"}})).await;
    assert_eq!(code_of(&r.json()), "not_found");
    let r = post(
        &s,
        Some(&admin),
        json!({"query": input, "variables": {"s": sid, "d": "stty size; exit 3\n"}}),
    )
    .await;
    assert_eq!(r.json()["data"]["execInput"], true, "{}", r.text());
    let mut out = Vec::new();
    let exit = loop {
        let e = ws.next_data("x").await["exec"].clone();
        match e["type"].as_str() {
            Some("OUTPUT") => out.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(e["data"].as_str().expect("data"))
                    .expect("base64"),
            ),
            Some("EXIT") => break e,
            other => panic!("unexpected {other:?}"),
        }
    };
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("45 123"), "the terminal was resized: {text:?}");
    assert_eq!(exit["exitCode"], 3);
    assert_eq!(exit["sessionId"], sid.as_str());
}

#[tokio::test]
async fn a_viewer_can_neither_exec_nor_mutate() {
    let s = server().await;
    let admin = s.admin().await;
    let viewer = s.user(&admin, "vic", "viewer").await;
    let mut ws = Ws::connect(&s, &viewer).await;
    ws.subscribe(
        "x",
        "subscription { exec(name: \"any\", command: [\"true\"]) { type } }",
        json!({}),
    )
    .await;
    let m = ws.next_for("x").await;
    assert_eq!(m["payload"]["errors"][0]["extensions"]["code"], "forbidden", "{m}");
    let r = post(
        &s,
        Some(&viewer),
        json!({"query": "mutation { delete(kind: \"Container\", name: \"x\") }"}),
    )
    .await;
    assert_eq!(code_of(&r.json()), "forbidden");
    let r = post(
        &s,
        Some(&viewer),
        json!({"query": "{ me { username } resources(kind: \"Container\") { revision } }"}),
    )
    .await;
    assert!(r.json()["errors"].is_null(), "{}", r.text());
}

#[tokio::test]
async fn resource_changes_resume_after_a_revision_and_a_too_old_one_says_relist() {
    let s = server().await;
    let admin = s.admin().await;
    let a = s.apply_yaml(&admin, "", &common::container_yaml("alpha", &image())).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let rev = a.json()["results"][0]["resourceVersion"].as_str().expect("rv").to_owned();
    let b = s.apply_yaml(&admin, "", &common::container_yaml("beta", &image())).await;
    assert_eq!(b.status, 200, "{}", b.text());
    let mut ws = Ws::connect(&s, &admin).await;
    let q = "subscription R($rv: String) { resourceChanges(kind: \"Container\", sinceRevision: $rv) { type revision object { name resourceVersion } } }";
    ws.subscribe("r", q, json!({"rv": rev})).await;
    let d = ws.next_data("r").await;
    assert_eq!(d["resourceChanges"]["type"], "ADDED");
    assert_eq!(d["resourceChanges"]["object"]["name"], "beta");
    let c = s.apply_yaml(&admin, "", &common::container_yaml("gamma", &image())).await;
    assert_eq!(c.status, 200);
    let d = ws.next_data("r").await;
    assert_eq!(d["resourceChanges"]["object"]["name"], "gamma");
    // Without a revision: the current ones first.
    ws.subscribe("all", q, json!({})).await;
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(
            ws.next_data("all").await["resourceChanges"]["object"]["name"]
                .as_str()
                .expect("name")
                .to_owned(),
        );
    }
    names.sort();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
}

/// The server writes every message already ready for a connection together (one flush): a
/// burst to many subscriptions on one socket still arrives whole and, per subscription, in
/// order.
#[tokio::test]
async fn a_burst_to_many_subscriptions_on_one_socket_arrives_whole_and_in_order() {
    let s = server().await;
    let admin = s.admin().await;
    for n in 0..3 {
        let r = s.apply_yaml(&admin, "", &common::container_yaml(&format!("c{n}"), &image())).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut ws = Ws::connect(&s, &admin).await;
    let q = "subscription { resourceChanges(kind: \"Container\") { object { name } } }";
    let subs = 60usize;
    for i in 0..subs {
        ws.subscribe(&format!("s{i}"), q, json!({})).await;
    }
    // Each subscription lists the 3 current ones (180 messages at once), then gets the live
    // changes, in the order they were made.
    let mut got: Vec<Vec<String>> = vec![Vec::new(); subs];
    let mut live_sent = false;
    while got.iter().any(|g| g.len() < 6) {
        if !live_sent && got.iter().all(|g| g.len() >= 3) {
            for n in 3..6 {
                let y = common::container_yaml(&format!("c{n}"), &image());
                let r = s.apply_yaml(&admin, "", &y).await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
            live_sent = true;
        }
        let m = ws.recv().await;
        assert_eq!(m["type"], "next", "{m}");
        let id = m["id"].as_str().expect("id");
        let i: usize = id.trim_start_matches('s').parse().expect("subscription id");
        let name =
            m["payload"]["data"]["resourceChanges"]["object"]["name"].as_str().expect("name");
        got[i].push(name.to_owned());
    }
    for (i, g) in got.iter_mut().enumerate() {
        g[..3].sort();
        assert_eq!(*g, ["c0", "c1", "c2", "c3", "c4", "c5"], "subscription s{i}");
    }
}

#[tokio::test]
async fn a_missing_or_bad_token_closes_with_4401_and_a_disabled_account_with_4403() {
    let s = server().await;
    let admin = s.admin().await;
    for payload in [json!({}), json!({"authorization": "Bearer not-a-token"})] {
        for proto in ["graphql-transport-ws", "graphql-ws"] {
            let mut ws = ws_raw(&s, proto, None).await.expect("handshake");
            ws.send(json!({"type": "connection_init", "payload": payload})).await;
            assert_eq!(ws.close_code().await, 4401, "{proto} {payload}");
        }
    }
    let dora = s.user(&admin, "dora", "operator").await;
    let r = s
        .send_json(
            hyper::Method::PATCH,
            "/api/v1/users/dora",
            Some(&admin),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut ws = ws_raw(&s, "graphql-transport-ws", None).await.expect("handshake");
    ws.send(
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {dora}")}}),
    )
    .await;
    assert_eq!(ws.close_code().await, 4403);
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_loopback_and_listed_ones_are_not() {
    let s = server_with(|c| c.graphql.allowed_origins = vec!["https://dash.example".into()]).await;
    match ws_raw(&s, "graphql-transport-ws", Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a foreign origin was let in"),
    }
    assert!(ws_raw(&s, "graphql-transport-ws", Some("https://dash.example")).await.is_ok());
    assert!(ws_raw(&s, "graphql-transport-ws", Some("http://localhost:5173")).await.is_ok());
}

#[tokio::test]
async fn depth_alias_complexity_and_batch_limits_are_enforced_with_codes() {
    let s = server_with(|c| {
        c.graphql.max_complexity = 20;
        c.graphql.max_aliases = 3;
        c.graphql.max_batch = 2;
    })
    .await;
    let admin = s.admin().await;
    let deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } } }";
    assert_eq!(
        code_of(&post(&s, Some(&admin), json!({"query": deep})).await.json()),
        "depth_limit"
    );
    let aliases = "{ a: me b: me c: me d: me }";
    assert_eq!(
        code_of(&post(&s, Some(&admin), json!({"query": aliases})).await.json()),
        "alias_limit"
    );
    let complex = "{ resources(kind: \"Container\") { revision items { kind name namespace uid generation resourceVersion labels annotations spec status object conditions { type status reason message lastTransitionTime } } } a: resources(kind: \"Image\") { items { kind name namespace uid generation resourceVersion labels annotations spec status object } } }";
    assert_eq!(
        code_of(&post(&s, Some(&admin), json!({"query": complex})).await.json()),
        "complexity_limit"
    );
    let batch = json!([{"query": "{ me { username } }"}, {"query": "{ me { username } }"}, {"query": "{ me { username } }"}]);
    let r = post(&s, Some(&admin), batch).await;
    assert_eq!(r.status, 400);
    assert_eq!(code_of(&r.json()), "batch_limit");
    // Without a token nothing runs, introspection included.
    let r = post(&s, None, json!({"query": "{ __schema { queryType { name } } }"})).await;
    assert_eq!(r.status, 401);
    assert_eq!(code_of(&r.json()), "unauthenticated");
    let r = post(&s, Some(&admin), json!({"query": "{ __schema { queryType { name } } }"})).await;
    assert_eq!(r.json()["data"]["__schema"]["queryType"]["name"], "Query");
}

#[tokio::test]
async fn queries_and_mutations_cover_resources_users_audit_and_the_engine() {
    let s = server().await;
    let admin = s.admin().await;
    let _c = TestContainer::start(&instance_of(&s), "q", "sleep 600").await;
    let yaml = common::container_yaml("web", &image());
    let r = post(&s, Some(&admin), json!({"query": "mutation($m: String!) { apply(manifest: $m, dryRun: true) }", "variables": {"m": yaml}})).await;
    assert_eq!(r.json()["data"]["apply"]["dryRun"], true, "{}", r.text());
    let r = post(
        &s,
        Some(&admin),
        json!({"query": "mutation($m: String!) { apply(manifest: $m) }", "variables": {"m": yaml}}),
    )
    .await;
    assert_eq!(r.json()["data"]["apply"]["results"][0]["outcome"], "created", "{}", r.text());
    let r = post(
        &s,
        Some(&admin),
        json!({"query": "mutation { restartContainer(name: \"web\") { annotations generation } }"}),
    )
    .await;
    assert!(
        r.json()["data"]["restartContainer"]["annotations"]["berth.dev/restartedAt"].is_string(),
        "{}",
        r.text()
    );
    let r = post(&s, Some(&admin), json!({"query": "{ resources(kind: \"containers\", labelSelector: \"app=web\") { items { name spec conditions { type } } } resource(kind: \"Container\", name: \"web\") { name } }"})).await;
    let j = r.json();
    assert_eq!(j["data"]["resources"]["items"][0]["name"], "web", "{j}");
    assert_eq!(j["data"]["resource"]["name"], "web");
    let r = post(&s, Some(&admin), json!({"query": "{ engine { version apiVersion } dockerContainers(managed: true) { id name managed resource } dockerImages { tags managed } }"})).await;
    let j = r.json();
    assert!(j["errors"].is_null(), "{j}");
    assert!(
        j["data"]["dockerContainers"]
            .as_array()
            .expect("list")
            .iter()
            .any(|c| c["resource"] == "default/q")
    );
    assert!(
        j["data"]["dockerImages"].as_array().expect("list").iter().any(|i| i["managed"] == true),
        "{j}"
    );
    let r = post(&s, Some(&admin), json!({"query": "mutation { createUser(username: \"uma\", password: \"uma-password\", role: \"viewer\") createApiToken(name: \"ci\") }"})).await;
    let j = r.json();
    assert_eq!(j["data"]["createUser"]["role"], "viewer", "{j}");
    assert!(j["data"]["createApiToken"]["token"].as_str().expect("token").starts_with("berth_"));
    let r = post(
        &s,
        Some(&admin),
        json!({"query": "{ users { username role } auditEvents(verb: \"create\", limit: 5, order: \"desc\") me { username } }"}),
    )
    .await;
    let j = r.json();
    assert!(j["errors"].is_null(), "{j}");
    assert!(!j["data"]["auditEvents"]["events"].as_array().expect("events").is_empty(), "{j}");
    let r = post(
        &s,
        Some(&admin),
        json!({"query": "mutation { delete(kind: \"Container\", name: \"web\") }"}),
    )
    .await;
    assert!(r.json()["data"]["delete"]["outcome"].is_string(), "{}", r.text());
    let r = post(
        &s,
        Some(&admin),
        json!({"query": "{ resource(kind: \"Nope\", name: \"x\") { name } }"}),
    )
    .await;
    assert_eq!(code_of(&r.json()), "bad_request");
}

#[tokio::test]
async fn the_per_user_subscription_cap_refuses_one_more() {
    let s = server_with(|c| c.graphql.max_subscriptions_per_user = 2).await;
    let admin = s.admin().await;
    let a = s.apply_yaml(&admin, "", &common::container_yaml("capped", &image())).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let mut ws = Ws::connect(&s, &admin).await;
    let q = "subscription { resourceChanges(kind: \"Container\") { type } }";
    // One at a time: subscriptions sent together start in no particular order, so which one
    // is refused would be a matter of luck. Each one's first item shows it holds its slot.
    ws.subscribe("1", q, json!({})).await;
    ws.next_data("1").await;
    ws.subscribe("2", q, json!({})).await;
    ws.next_data("2").await;
    ws.subscribe("3", q, json!({})).await;
    let m = ws.next_for("3").await;
    assert_eq!(m["payload"]["errors"][0]["extensions"]["code"], "too_many_subscriptions", "{m}");
    // Ending one frees its slot.
    ws.send(json!({"id": "1", "type": "complete"})).await;
    ws.subscribe("4", q, json!({})).await;
    let d = ws.next_data("4").await;
    assert_eq!(d["resourceChanges"]["type"], "ADDED");
}

#[tokio::test]
async fn the_stock_graphql_ws_npm_client_subscribes_with_nothing_but_the_url_and_a_token() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/graphql-ws-client");
    assert!(
        dir.join("node_modules/graphql-ws").exists(),
        "install the client first: npm ci --prefix {}",
        dir.display()
    );
    let s = server().await;
    let admin = s.admin().await;
    let a = s.apply_yaml(&admin, "", &common::container_yaml("npm", &image())).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let url = format!("ws://{}/graphql/ws", s.addr);
    let query =
        "subscription { resourceChanges(kind: \"Container\") { type revision object { name } } }";
    let out = within(
        "the node client",
        tokio::process::Command::new("node")
            .arg(dir.join("client.mjs"))
            .args([url.as_str(), admin.as_str(), query, "1"])
            .output(),
    )
    .await
    .expect("node must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: Value =
        serde_json::from_str(stdout.lines().next().expect("a result")).expect("JSON");
    assert_eq!(first["data"]["resourceChanges"]["object"]["name"], "npm");
    assert_eq!(first["data"]["resourceChanges"]["type"], "ADDED");
}

#[tokio::test]
async fn graphql_writes_are_audited_with_source_graphql_and_rest_ones_with_rest() {
    let s = server().await;
    let admin = s.admin().await;
    let yaml = common::container_yaml("audited", &image());
    let gql = |q: &'static str, vars: Value| {
        let (s, admin) = (&s, admin.clone());
        async move {
            let r = post(s, Some(&admin), json!({"query": q, "variables": vars})).await;
            let j = r.json();
            assert!(j["errors"].is_null(), "{q}: {j}");
            j["data"].clone()
        }
    };
    gql("mutation($m: String!) { apply(manifest: $m) }", json!({"m": yaml})).await;
    gql("mutation { restartContainer(name: \"audited\") { name } }", json!({})).await;
    gql("mutation { delete(kind: \"Container\", name: \"audited\") }", json!({})).await;
    gql(
        "mutation { createUser(username: \"gus\", password: \"gus-password\", role: \"viewer\") }",
        json!({}),
    )
    .await;
    gql("mutation { updateUser(username: \"gus\", role: \"operator\") }", json!({})).await;
    gql("mutation { setUserPassword(username: \"gus\", password: \"gus-password-2\") }", json!({}))
        .await;
    let t = gql("mutation { createApiToken(name: \"ci\") }", json!({})).await;
    let id = t["createApiToken"]["id"].as_str().expect("token id").to_owned();
    gql("mutation($id: String!) { revokeApiToken(id: $id) }", json!({"id": id})).await;
    gql("mutation { deleteUser(username: \"gus\") }", json!({})).await;
    // The same kind of write through REST.
    let r = s.apply_yaml(&admin, "", &common::container_yaml("rested", &image())).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let page = gql("{ auditEvents(actor: \"user:admin\", limit: 1000) }", json!({})).await;
    let events = page["auditEvents"]["events"].as_array().expect("events").clone();
    let by_rest = |e: &Value| {
        e["name"] == "rested" || e["verb"].as_str().is_some_and(|v| v.starts_with("refresh."))
    };
    let mut verbs = std::collections::BTreeSet::new();
    for e in &events {
        if by_rest(e) {
            assert_eq!(e["source"], "rest", "{e}");
        } else {
            assert_eq!(e["source"], "graphql", "a GraphQL write audited as {}: {e}", e["source"]);
            verbs.insert(e["verb"].as_str().expect("verb").to_owned());
        }
    }
    for v in [
        "create",
        "update",
        "delete",
        "user.create",
        "user.update",
        "user.delete",
        "token.create",
        "token.revoke",
    ] {
        assert!(verbs.contains(v), "no GraphQL {v} event among {verbs:?}: {events:?}");
    }
    assert!(events.iter().any(|e| e["name"] == "rested" && e["verb"] == "create"), "{events:?}");
}

#[tokio::test]
async fn a_connection_is_closed_with_4401_when_its_access_token_expires() {
    // Access tokens live 2 to 3 seconds here (JWT times are whole seconds).
    let s = server_with(|c| c.access_token_ttl = Duration::from_secs(3)).await;
    for proto in ["graphql-transport-ws", "graphql-ws"] {
        // A token can expire before its connection_init is answered on a loaded machine:
        // then try again with a fresh one, until a connection was accepted and later closed.
        let mut closed_after_ack = None;
        for _ in 0..5 {
            let (access, _) = s.tokens("admin", common::ADMIN_PASSWORD).await;
            let mut ws = ws_raw(&s, proto, None).await.expect("handshake");
            ws.send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {access}")}}))
                .await;
            match ws.frame().await {
                Frame::Text(m) if m["type"] == "connection_ack" => {}
                Frame::Close(4401, _) => continue, // expired before the ack
                other => panic!("{proto}: unexpected {other:?}"),
            }
            // The connection stays quiet until the token expires; then the server closes it.
            let close = loop {
                match ws.frame().await {
                    Frame::Close(code, reason) => break (code, reason),
                    Frame::Text(m)
                        if ["ping", "ka"].contains(&m["type"].as_str().unwrap_or("")) =>
                    {
                        if m["type"] == "ping" {
                            ws.send(json!({"type": "pong"})).await;
                        }
                    }
                    Frame::Text(m) => panic!("{proto}: unexpected {m}"),
                }
            };
            closed_after_ack = Some(close);
            break;
        }
        let (code, reason) =
            closed_after_ack.unwrap_or_else(|| panic!("{proto}: never acknowledged in 5 tries"));
        assert_eq!(code, 4401, "{proto}: {reason}");
        assert!(reason.contains("expired"), "{proto}: {reason}");
    }
}

#[tokio::test]
async fn idle_connections_get_keepalives_and_pings_are_answered_in_both_protocols() {
    let s = server_with(|c| c.graphql.keepalive_interval = Duration::from_millis(200)).await;
    let admin = s.admin().await;
    // graphql-transport-ws: the server pings an idle connection, and answers a client ping.
    let mut ws = Ws::connect(&s, &admin).await;
    match ws.frame().await {
        Frame::Text(m) => assert_eq!(m["type"], "ping", "{m}"),
        other => panic!("expected a ping, got {other:?}"),
    }
    ws.send(json!({"type": "pong"})).await;
    ws.send(json!({"type": "ping"})).await;
    loop {
        match ws.frame().await {
            Frame::Text(m) if m["type"] == "pong" => break,
            Frame::Text(m) if m["type"] == "ping" => ws.send(json!({"type": "pong"})).await,
            other => panic!("expected a pong, got {other:?}"),
        }
    }
    // The older graphql-ws: `ka` messages after the ack.
    let mut old = ws_raw(&s, "graphql-ws", None).await.expect("handshake");
    old.send(
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {admin}")}}),
    )
    .await;
    let mut kas = 0;
    let mut acked = false;
    while kas < 2 {
        match old.frame().await {
            Frame::Text(m) if m["type"] == "connection_ack" => acked = true,
            Frame::Text(m) if m["type"] == "ka" => {
                assert!(acked, "ka before the ack");
                kas += 1;
            }
            other => panic!("expected ack and ka, got {other:?}"),
        }
    }
}

/// Runs `command` through the exec subscription, writes `input` then closes stdin with
/// `execInput(eof: true)`, and returns (stdout bytes, exit code).
async fn exec_to_eof(
    s: &TestServer,
    token: &str,
    name: &str,
    command: &[&str],
    input: &str,
) -> (Vec<u8>, Value) {
    let mut ws = Ws::connect(s, token).await;
    let q = "subscription($n: String!, $c: [String!]!) { exec(name: $n, command: $c) { type sessionId stream data exitCode } }";
    ws.subscribe("x", q, json!({"n": name, "c": command})).await;
    let first = ws.next_data("x").await;
    assert_eq!(first["exec"]["type"], "STARTED", "{first}");
    let sid = first["exec"]["sessionId"].as_str().expect("session").to_owned();
    let m = "mutation($s: String!, $d: String!, $e: Boolean!) { execInput(sessionId: $s, data: $d, eof: $e) }";
    // Data first, then the end of input on its own: the command is still running in between.
    let r =
        post(s, Some(token), json!({"query": m, "variables": {"s": sid, "d": input, "e": false}}))
            .await;
    assert_eq!(r.json()["data"]["execInput"], true, "{}", r.text());
    let r = post(s, Some(token), json!({"query": m, "variables": {"s": sid, "d": "", "e": true}}))
        .await;
    assert_eq!(r.json()["data"]["execInput"], true, "{}", r.text());
    let mut out = Vec::new();
    loop {
        let e = ws.next_data("x").await["exec"].clone();
        match e["type"].as_str() {
            Some("OUTPUT") => out.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(e["data"].as_str().expect("data"))
                    .expect("base64"),
            ),
            Some("EXIT") => {
                // Input after the end of input is refused, not queued.
                let r = post(
                    s,
                    Some(token),
                    json!({"query": m, "variables": {"s": sid, "d": "late", "e": false}}),
                )
                .await;
                assert!(!r.json()["errors"].is_null(), "{}", r.text());
                return (out, e["exitCode"].clone());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn exec_input_eof_closes_stdin_so_cat_and_wc_finish_with_their_exit_code() {
    let s = server().await;
    let admin = s.admin().await;
    let name = unique("eof");
    let _c = applied(&s, &admin, &name, "sleep 600", "").await;
    let (out, code) = exec_to_eof(&s, &admin, &name, &["wc", "-c"], "hello\n").await;
    assert_eq!(String::from_utf8_lossy(&out).trim(), "6");
    assert_eq!(code, 0);
    let (out, code) = exec_to_eof(&s, &admin, &name, &["sh", "-c", "cat; exit 7"], "abc").await;
    assert_eq!(String::from_utf8_lossy(&out), "abc");
    assert_eq!(code, 7);
}

#[tokio::test]
async fn docker_events_deliver_a_container_start_matching_the_filters() {
    let s = server().await;
    let admin = s.admin().await;
    let mut ws = Ws::connect(&s, &admin).await;
    let q = "subscription { dockerEvents(filters: {type: \"container\", actions: [\"start\"], label: \"dev.berth.test=graphql\", managed: true}) { type action id attributes timeNano time } }";
    ws.subscribe("e", q, json!({})).await;
    // The subscription runs once its resolver took its slot; events from then on arrive.
    within("the subscription to start", async {
        while berth_api::graphql::subscriptions_held(&s.state, "admin") == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let c = TestContainer::start(&instance_of(&s), "events", "sleep 600").await;
    loop {
        let e = ws.next_data("e").await["dockerEvents"].clone();
        assert_eq!(e["action"], "start", "{e}");
        assert_eq!(e["attributes"]["dev.berth.test"], "graphql", "{e}");
        if e["id"] == c.id.as_str() {
            assert_eq!(e["type"], "container");
            assert!(e["time"].is_string() && e["timeNano"].is_string(), "{e}");
            break;
        }
    }
}

const EXEC: &str = "subscription($n: String!, $c: [String!]!, $u: String) { exec(name: $n, command: $c, user: $u) { type sessionId stream data exitCode } }";

/// Runs `command` in `Container default/<name>` as `token` (as `user` when given) over a
/// websocket, without input: `Ok((output, exit code))`, or `Err` with the error message the
/// server answered with.
async fn exec_run(
    s: &TestServer,
    token: &str,
    name: &str,
    command: &[&str],
    user: Option<&str>,
) -> Result<(String, i64), Value> {
    let mut ws = Ws::connect(s, token).await;
    ws.subscribe("x", EXEC, json!({"n": name, "c": command, "u": user})).await;
    let mut out = Vec::new();
    loop {
        let m = ws.next_for("x").await;
        if m["type"] == "error" || !m["payload"]["errors"].is_null() {
            return Err(m);
        }
        assert_eq!(m["type"], "next", "{m}");
        let e = &m["payload"]["data"]["exec"];
        match e["type"].as_str() {
            Some("STARTED") => {}
            Some("OUTPUT") => out.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(e["data"].as_str().expect("data"))
                    .expect("base64"),
            ),
            Some("EXIT") => {
                let code = e["exitCode"].as_i64().expect("exit code");
                return Ok((String::from_utf8_lossy(&out).into_owned(), code));
            }
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
}

/// The code and message of the error in a subscription's error answer.
fn sub_error(m: &Value) -> (String, String) {
    let e = if m["type"] == "error" { &m["payload"][0] } else { &m["payload"]["errors"][0] };
    (
        e["extensions"]["code"].as_str().unwrap_or("<none>").to_owned(),
        e["message"].as_str().unwrap_or("").to_owned(),
    )
}

/// The first answer to a subscription: its error (code, message), or `None` for data.
async fn first_error(
    ws: &mut Ws,
    id: &str,
    query: &str,
    variables: Value,
) -> Option<(String, String)> {
    ws.subscribe(id, query, variables).await;
    let m = ws.next_for(id).await;
    (m["type"] == "error" || !m["payload"]["errors"].is_null()).then(|| sub_error(&m))
}

/// The audit events about `Container default/<name>`, oldest first, from the server's store.
async fn audit_of(s: &TestServer, name: &str) -> Vec<berth_controller::store::AuditEvent> {
    let q = berth_controller::store::AuditQuery {
        kind: Some("Container".into()),
        name: Some(name.into()),
        limit: 1000,
        ..Default::default()
    };
    s.state.audit().query(&q).await.expect("audit query").events
}

// Issue 11, hole 14: on a shared Engine, logs, stats and exec found any berth's container of
// that namespace and name, another berth instance's too.
#[tokio::test]
async fn logs_stats_and_exec_never_reach_another_berth_instances_container() {
    let s = server().await;
    let admin = s.admin().await;
    let other_instance = format!("another-berth-{}", uuid::Uuid::new_v4().simple());
    // A resource this server knows, whose only container on the Engine is another berth's.
    let known = unique("shared");
    let r = s.apply_yaml(&admin, "", &common::container_yaml(&known, &image())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let _theirs = TestContainer::start(&other_instance, &known, "echo theirs; sleep 600").await;
    // And a name this server knows nothing of.
    let ghost = unique("ghost");
    let _ghost = TestContainer::start(&other_instance, &ghost, "echo theirs; sleep 600").await;
    let mut ws = Ws::connect(&s, &admin).await;
    for name in [&known, &ghost] {
        let logs =
            first_error(&mut ws, "l", LOGS, json!({"name": name, "tail": 5, "follow": false}));
        let (code, message) = logs.await.expect("logs of another berth's container must fail");
        assert_eq!(code, "not_found", "{message}");
        let stats = "subscription($n: String!) { stats(name: $n) { pids } }";
        let (code, message) = first_error(&mut ws, "s", stats, json!({"n": name}))
            .await
            .expect("stats of another berth's container must fail");
        assert_eq!(code, "not_found", "{message}");
        let err = exec_run(&s, &admin, name, &["echo", "in"], None)
            .await
            .expect_err("exec into another berth's container must fail");
        assert_eq!(sub_error(&err).0, "not_found", "{err}");
    }
    // The server's own container of the same resource is found, and only it.
    let _ours = applied(&s, &admin, &known, "echo ours; sleep 600", "").await;
    ws.subscribe("l2", LOGS, json!({"name": known, "tail": 5, "follow": false})).await;
    let d = ws.next_data("l2").await;
    assert_eq!(d["logs"]["line"], "ours", "{d}");
    let stats = "subscription($n: String!) { stats(name: $n) { pids } }";
    ws.subscribe("s2", stats, json!({"n": known})).await;
    assert!(ws.next_data("s2").await["stats"]["pids"].as_u64().is_some());
    let (out, code) = exec_run(&s, &admin, &known, &["echo", "in"], None).await.expect("exec");
    assert_eq!((out.as_str(), code), ("in\n", 0));
}

// Issue 11, hole 2: an operator could exec, as root, into a container whose spec only an admin
// may write (here a bind mount of a host directory): root on the host through an admin's
// container.
#[tokio::test]
async fn an_operator_cannot_exec_into_a_container_whose_spec_needs_an_admin() {
    let s = server().await;
    let admin = s.admin().await;
    let op = s.user(&admin, "olga", "operator").await;
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("secret.txt"), "host-file").expect("write");
    let mounted = unique("hostmnt");
    let mount = format!(
        "  mounts:\n    - type: bind\n      source: {}\n      target: /host\n",
        host.path().display()
    );
    let _c = applied(&s, &admin, &mounted, "sleep 600", &mount).await;
    let read = ["cat", "/host/secret.txt"];
    for user in [Some("root"), None] {
        let err = exec_run(&s, &op, &mounted, &read, user)
            .await
            .expect_err("an operator's exec into a bind-mounting container must be refused");
        let (code, message) = sub_error(&err);
        assert_eq!(code, "forbidden", "{err}");
        assert!(
            message.contains("spec.mounts[0]") && message.contains("use_admin_fields"),
            "the refusal says why: {message}"
        );
    }
    let (out, code) = exec_run(&s, &admin, &mounted, &read, Some("root")).await.expect("admin");
    assert_eq!((out.as_str(), code), ("host-file", 0), "the admin's exec reaches the mount");
    // The refusals are audited, with the reason.
    let events = audit_of(&s, &mounted).await;
    let denied: Vec<_> = events
        .iter()
        .filter(|e| {
            e.verb == "exec.start" && e.outcome == berth_controller::store::AuditOutcome::Denied
        })
        .collect();
    assert_eq!(denied.len(), 2, "{events:?}");
    for e in denied {
        assert_eq!(e.actor.to_string(), "user:olga", "{e:?}");
        let m = e.message.as_deref().unwrap_or("");
        assert!(m.contains("spec.mounts[0]") && m.contains("cat"), "{m}");
    }

    // An operator's exec into a plain container still works, as root too.
    let plain = unique("plain");
    let _p = applied(&s, &op, &plain, "sleep 600", "").await;
    let (out, code) = exec_run(&s, &op, &plain, &["id", "-u"], Some("root")).await.expect("exec");
    assert_eq!((out.as_str(), code), ("0\n", 0));

    // Writing a plain spec over the admin's does not open the old container: until it is
    // replaced, what the store says does not describe it.
    let r = s.apply_yaml(&op, "", &common::container_yaml(&mounted, &image())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let err = exec_run(&s, &op, &mounted, &read, None).await.expect_err("still refused");
    let (code, message) = sub_error(&err);
    assert_eq!(code, "forbidden", "{err}");
    assert!(message.contains("current spec"), "{message}");
}

// Issue 11, hole 8: exec was not audited at all.
#[tokio::test]
async fn exec_is_audited_at_start_and_end_without_its_input_or_output() {
    let s = server().await;
    let admin = s.admin().await;
    let op = s.user(&admin, "omar", "operator").await;
    let name = unique("audited");
    let _c = applied(&s, &admin, &name, "sleep 600", "").await;
    let command = ["sh", "-c", "tr a-z A-Z; exit 5"];
    let (out, code) = exec_to_eof(&s, &op, &name, &command, "stdin-marker\n").await;
    assert_eq!((String::from_utf8_lossy(&out).as_ref(), code), ("STDIN-MARKER\n", json!(5)));

    let events = audit_of(&s, &name).await;
    let start = events.iter().find(|e| e.verb == "exec.start").expect("exec.start");
    assert_eq!(start.outcome, berth_controller::store::AuditOutcome::Pending, "{start:?}");
    assert_eq!(start.actor.to_string(), "user:omar");
    assert_eq!(start.source.to_string(), "graphql");
    assert_eq!(start.namespace.as_deref(), Some("default"));
    let m = start.message.as_deref().unwrap_or("");
    assert!(m.contains(r#"["sh","-c","tr a-z A-Z; exit 5"]"#), "{m}");
    assert!(m.contains("tty false") && m.contains("user (the container's)"), "{m}");
    let end = events.iter().find(|e| e.verb == "exec.end").expect("exec.end");
    assert_eq!(end.intent_seq, Some(start.seq), "{end:?}");
    assert_eq!(end.outcome, berth_controller::store::AuditOutcome::Success);
    assert_eq!(end.actor.to_string(), "user:omar");
    let m = end.message.as_deref().unwrap_or("");
    assert!(m.starts_with("exit code 5 after "), "{m}");
    for e in &events {
        let text = format!("{e:?}");
        assert!(
            !text.contains("stdin-marker") && !text.contains("STDIN-MARKER"),
            "input or output reached the audit log: {e:?}"
        );
    }

    // A session the client ends while its process runs is closed in the audit log too.
    let mut ws = Ws::connect(&s, &op).await;
    ws.subscribe("y", EXEC, json!({"n": name, "c": ["sleep", "30"], "u": "nobody"})).await;
    assert_eq!(ws.next_data("y").await["exec"]["type"], "STARTED");
    ws.send(json!({"id": "y", "type": "complete"})).await;
    let (start, end) = within("the end of the cut session in the audit log", async {
        loop {
            let events = audit_of(&s, &name).await;
            let start = events
                .iter()
                .find(|e| {
                    e.verb == "exec.start"
                        && e.message.as_deref().is_some_and(|m| m.contains("sleep"))
                })
                .cloned();
            if let Some(start) = start
                && let Some(end) = events.iter().find(|e| e.intent_seq == Some(start.seq))
            {
                break (start, end.clone());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(start.message.as_deref().is_some_and(|m| m.contains(r#"user "nobody""#)), "{start:?}");
    assert_eq!(end.verb, "exec.end");
    assert!(end.message.as_deref().is_some_and(|m| m.contains("after")), "{end:?}");
}

/// Issue 11, hole 3: waits for the server to close `ws`, answering pings; panics on any other
/// message (nothing else was asked on the socket) or when no close comes within [`LIMIT`]
/// (well under the 60 s credential-recheck backstop, so the account change itself closed it).
async fn closed_after_account_change(ws: &mut Ws) -> (u16, String) {
    let wait = async {
        loop {
            match ws.frame().await {
                Frame::Close(code, reason) => return (code, reason),
                Frame::Text(m) if m["type"] == "ping" => ws.send(json!({"type": "pong"})).await,
                Frame::Text(m) => panic!("unexpected message before the close: {m}"),
            }
        }
    };
    within("the server to close the socket after the account change", wait).await
}

#[tokio::test]
async fn issue11_hole3_revoking_an_api_token_closes_its_websocket() {
    let s = server().await;
    let admin = s.admin().await;
    let ann = s.user(&admin, "ann", "operator").await;
    let r = s.post_json("/api/v1/tokens", Some(&ann), json!({"name": "dash"})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let (id, token) = (r.json()["id"].as_str().unwrap().to_owned(), r.json()["token"].clone());
    let mut ws = Ws::connect(&s, token.as_str().unwrap()).await;
    let r = s.delete(&format!("/api/v1/tokens/{id}"), Some(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (code, reason) = closed_after_account_change(&mut ws).await;
    assert_eq!(code, 4401, "{reason}");
}

#[tokio::test]
async fn issue11_hole3_disabling_a_user_closes_their_websocket_with_4403() {
    let s = server().await;
    let admin = s.admin().await;
    let ann = s.user(&admin, "ann", "operator").await;
    let mut ws = Ws::connect(&s, &ann).await;
    let r = s
        .send_json(
            hyper::Method::PATCH,
            "/api/v1/users/ann",
            Some(&admin),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (code, reason) = closed_after_account_change(&mut ws).await;
    assert_eq!(code, 4403, "{reason}");
}

#[tokio::test]
async fn issue11_hole3_a_lowered_role_loses_operator_operations_on_the_open_socket() {
    const DELETE: &str = "mutation { delete(kind: \"Container\", name: \"no-such-thing\") }";
    let s = server().await;
    let admin = s.admin().await;
    let ann = s.user(&admin, "ann", "operator").await;
    let mut ws = Ws::connect(&s, &ann).await;
    // As an operator, the delete is allowed (and finds nothing).
    ws.subscribe("before", DELETE, json!({})).await;
    let m = ws.next_for("before").await;
    assert_eq!(m["payload"]["errors"][0]["extensions"]["code"], "not_found", "{m}");
    let r = s
        .send_json(
            hyper::Method::PATCH,
            "/api/v1/users/ann",
            Some(&admin),
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The same operation over the same socket is now refused: forbidden, or the socket closed
    // with 4403 (reconnect to carry on as a viewer).
    ws.subscribe("after", DELETE, json!({})).await;
    loop {
        match ws.frame().await {
            Frame::Close(code, reason) => {
                assert_eq!(code, 4403, "{reason}");
                break;
            }
            Frame::Text(m) if m["type"] == "ping" => ws.send(json!({"type": "pong"})).await,
            Frame::Text(m) if m["id"] == "after" && m["type"] != "complete" => {
                assert_eq!(m["payload"]["errors"][0]["extensions"]["code"], "forbidden", "{m}");
                break;
            }
            Frame::Text(_) => {}
        }
    }
    // A new connection works, with the viewer's rights.
    let viewer = s.tokens("ann", "ann-password").await.0;
    let mut ws = Ws::connect(&s, &viewer).await;
    ws.subscribe("again", DELETE, json!({})).await;
    let m = ws.next_for("again").await;
    assert_eq!(m["payload"]["errors"][0]["extensions"]["code"], "forbidden", "{m}");
}

#[tokio::test]
async fn issue11_hole11_operations_over_one_websocket_take_the_per_token_rate_limit() {
    let s = server_with(|c| {
        c.per_token = berth_api::ratelimit::RateLimit { burst: 3, per_second: 0.001 };
    })
    .await;
    let admin = s.admin().await;
    let ann = s.user(&admin, "ann", "viewer").await;
    let mut ws = Ws::connect(&s, &ann).await;
    for i in 0..10 {
        ws.subscribe(
            &format!("q{i}"),
            "{ resources(kind: \"Container\") { revision } }",
            json!({}),
        )
        .await;
    }
    // The first answer to each operation, in whatever order they come.
    let mut first = std::collections::BTreeMap::new();
    while first.len() < 10 {
        let m = ws.recv().await;
        if let Some(id) = m["id"].as_str() {
            first.entry(id.to_owned()).or_insert(m);
        }
    }
    let (mut ok, mut limited) = (0, 0);
    for (i, m) in first {
        match m["type"].as_str() {
            Some("next") if m["payload"]["errors"].is_null() => ok += 1,
            Some("error") => {
                assert_eq!(m["payload"][0]["extensions"]["code"], "rate_limited", "{m}");
                assert!(m["payload"][0]["extensions"]["retryAfter"].as_u64() >= Some(1), "{m}");
                limited += 1;
            }
            _ => panic!("{i}: {m}"),
        }
    }
    assert_eq!((ok, limited), (3, 7));
}
