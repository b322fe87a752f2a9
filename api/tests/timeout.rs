//! The request timeout: a request that takes longer than `request_timeout` to produce its
//! response head gets the JSON error shape with 503 `timeout`; streams (watch) are not cut once
//! their head is sent. Real server on 127.0.0.1:0 with a short timeout, real sled store, a raw
//! TCP client for the slow request.
//!
//! The caller authenticates with an API token written straight into the store, so that no
//! password hash (slow by design) runs inside the short timeout.

mod common;

use std::time::Duration;

use berth_api::Role;
use berth_controller::store::{NewApiToken, WriteContext, token_hash};
use common::{TestServer, container_yaml};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_millis(500);
/// A watchdog so that a broken server fails the test instead of hanging it.
const WATCHDOG: Duration = Duration::from_secs(30);

async fn start() -> (TestServer, String) {
    let srv = TestServer::start_with(|c| c.request_timeout = TIMEOUT).await;
    let token = format!("berth_{}", "T".repeat(43));
    srv.state
        .accounts()
        .create_api_token(
            &WriteContext::controller(),
            NewApiToken {
                name: "timeout-test".into(),
                owner: "admin".into(),
                role: Role::Admin,
                token_hash: token_hash(&token),
                expires: None,
            },
        )
        .await
        .expect("create API token");
    (srv, token)
}

/// Reads one HTTP/1.1 response (head and a `content-length` body) from a raw connection.
async fn read_response(conn: &mut tokio::net::TcpStream) -> (u16, Value) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "connection closed before a full response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
            })
            .expect("content-length");
        let body = &buf[head_end + 4..];
        if body.len() < len {
            continue;
        }
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
        return (status, serde_json::from_slice(&body[..len]).expect("JSON body"));
    }
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_gets_503_timeout_in_the_error_shape() {
    let (srv, token) = start().await;
    // A fast request answers normally under the same timeout.
    let r = srv.get("/api/v1/me", Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // An apply whose body never finishes arriving (a slow or stalled client).
    let mut conn = tokio::net::TcpStream::connect(srv.addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/apply HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/yaml\r\ncontent-length: 1000\r\n\r\napiVersion: berth.dev/v1\n",
        srv.addr
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    let (status, body) = tokio::time::timeout(WATCHDOG, read_response(&mut conn))
        .await
        .expect("the server answers a stalled request");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "timeout", "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(body.as_object().unwrap().contains_key("details"), "{body}");
    // Nothing was written.
    assert_eq!(
        srv.get("/api/v1/containers", Some(&token)).await.json()["items"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn a_watch_stream_outlives_the_request_timeout() {
    let (srv, token) = start().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::get(format!("http://{}/api/v1/containers?watch=true", srv.addr))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();

    // Stay well past the request timeout, then change something.
    tokio::time::sleep(TIMEOUT * 3).await;
    let docs = berth_schemas::parse_and_validate(
        container_yaml("late", "nginx").as_bytes(),
        &berth_schemas::ParseLimits::default(),
    )
    .expect("a valid manifest");
    let obj = docs[0].to_dynamic();
    srv.state.resources().apply(&WriteContext::controller(), obj).await.expect("apply");

    let mut buf = Vec::new();
    let line = tokio::time::timeout(WATCHDOG, async {
        loop {
            let frame = body.frame().await.expect("the stream is still open").expect("frame");
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    return serde_json::from_slice::<Value>(&buf[..pos]).unwrap();
                }
            }
        }
    })
    .await
    .expect("an event after the timeout");
    assert_eq!(line["type"], "ADDED", "{line}");
    assert_eq!(line["object"]["metadata"]["name"], "late", "{line}");
}
