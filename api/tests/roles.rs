//! The route table is the whole router: every (method, path) outside it is refused, and every
//! entry × role (anonymous and forged credentials included) gets exactly what its access says,
//! over real HTTP.

mod common;

use berth_api::app::routes;
use berth_api::policy::{Access, ROLES, authorize};
use common::TestServer;
use futures::{SinkExt as _, StreamExt as _};
use hyper::Method;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

fn concrete(path: &str) -> String {
    path.replace("{plural}", "containers")
        .replace("{namespace}", "default")
        .replace("{name}", "nothing-here")
        .replace("{username}", "nobody")
        .replace("{id}", "no-such-token")
}

/// A body the route can read, so that an allowed call is not refused for its body.
fn body_for(method: &Method, path: &str) -> Option<(&'static str, Vec<u8>)> {
    match (method.as_str(), path) {
        ("POST", "/graphql") => Some(("application/json", br#"{"query":"{__typename}"}"#.to_vec())),
        _ => None,
    }
}

const METHODS: [Method; 5] =
    [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

/// The router serves exactly the table: at every path of the table, a method without an entry
/// gets 405 with and without credentials (it reaches no handler), and paths next to the table's
/// get 404. With the entries checked by the matrix below, this walks every (method, path) the
/// router could serve.
#[tokio::test]
async fn the_router_serves_nothing_that_is_not_in_the_route_table() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let table = routes();
    let mut refused = 0;
    for path in table.iter().map(|r| r.path).collect::<std::collections::BTreeSet<_>>() {
        for method in METHODS {
            if table.iter().any(|r| r.method == method && r.path == path) {
                continue;
            }
            for token in [None, Some(admin.as_str())] {
                let r = srv.request(method.clone(), &concrete(path), token, None).await;
                assert_eq!(r.status, 405, "{method} {path} is not in the table: {}", r.text());
                refused += 1;
            }
        }
    }
    assert!(refused > 100, "only {refused} method/path pairs were refused");
    for path in ["/graphql/", "/graphql/other", "/graphql/ws/x", "/api/v1", "/api", "/api/v2/me"] {
        for method in METHODS {
            let r = srv.request(method.clone(), path, Some(&admin), None).await;
            assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        }
    }
}

#[tokio::test]
async fn every_route_and_role_gets_what_the_policy_table_says() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let operator = srv.user(&admin, "olga", "operator").await;
    let viewer = srv.user(&admin, "victor", "viewer").await;
    let token_of = |role| match role {
        berth_api::Role::Admin => admin.clone(),
        berth_api::Role::Operator => operator.clone(),
        berth_api::Role::Viewer => viewer.clone(),
    };
    let mut checked = 0;
    let mut denials = 0;
    for p in routes() {
        // Logout would end the session the rest of the matrix uses; it is covered in auth.rs.
        if p.path == "/api/v1/auth/logout" {
            continue;
        }
        let path = concrete(p.path);
        let body = || body_for(&p.method, p.path);
        match p.access {
            Access::Public => {
                let r = srv.request(p.method.clone(), &path, None, body()).await;
                assert!(
                    r.status != 401 && r.status != 403,
                    "{} {path} public but got {}",
                    p.method,
                    r.status
                );
                checked += 1;
            }
            Access::WebsocketInit => {
                websocket_authenticates_in_connection_init(&srv, &viewer).await;
                checked += 1;
            }
            Access::Authenticated(_) | Access::GraphqlFields => {
                let r = srv.request(p.method.clone(), &path, None, body()).await;
                assert_eq!(r.status, 401, "{} {path} without a token", p.method);
                let r = srv.request(p.method.clone(), &path, Some("forged"), body()).await;
                assert_eq!(r.status, 401, "{} {path} with a forged token", p.method);
                for role in ROLES {
                    let r =
                        srv.request(p.method.clone(), &path, Some(&token_of(role)), body()).await;
                    if p.access.action().is_none_or(|a| authorize(role, a).is_ok()) {
                        assert!(
                            r.status != 401 && r.status != 403,
                            "{} {path} as {role} should be allowed, got {}: {}",
                            p.method,
                            r.status,
                            r.text()
                        );
                    } else {
                        assert_eq!(
                            r.status,
                            403,
                            "{} {path} as {role} should be denied: {}",
                            p.method,
                            r.text()
                        );
                        assert_eq!(r.json()["code"], "forbidden");
                        denials += 1;
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 50, "the matrix covered only {checked} cases");
    let audit = srv.get("/api/v1/audit?verb=request.denied&limit=1000", Some(&admin)).await;
    let denied = audit.json()["events"].as_array().unwrap().len();
    assert_eq!(denied, denials, "every denied request is audited once");
}

/// `GET /graphql/ws` upgrades without credentials (the token travels in `connection_init`), and
/// the connection is closed with 4401 when `connection_init` has none, or answered with an ack
/// when it has a valid one.
async fn websocket_authenticates_in_connection_init(srv: &TestServer, token: &str) {
    for (payload, ack) in [
        (serde_json::json!({}), false),
        (serde_json::json!({"authorization": "Bearer forged"}), false),
        (serde_json::json!({"authorization": format!("Bearer {token}")}), true),
    ] {
        let mut req = format!("ws://{}/graphql/ws", srv.addr).into_client_request().unwrap();
        req.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
        let (mut ws, _) = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            tokio_tungstenite::connect_async(req),
        )
        .await
        .expect("handshake in time")
        .expect("an anonymous upgrade is accepted");
        let init = serde_json::json!({"type": "connection_init", "payload": payload});
        ws.send(Message::Text(init.to_string().into())).await.expect("send");
        let first = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next())
            .await
            .expect("an answer in time")
            .expect("a message")
            .expect("no error");
        match first {
            Message::Text(t) if ack => assert!(t.contains("connection_ack"), "{t}"),
            Message::Close(Some(f)) if !ack => assert_eq!(u16::from(f.code), 4401, "{payload}"),
            m => panic!("{payload}: unexpected {m:?}"),
        }
    }
}
