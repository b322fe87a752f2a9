//! Authentication before the body, and one body limit everywhere (issue 11, hole 4), over the
//! real HTTP server: an anonymous or forged request to a route that needs credentials gets 401
//! before its body is read, and every route that reads a body reads at most the configured limit
//! (413 at once for a `Content-Length` over it, 413 at the limit for a chunked body).
//!
//! "Before it is read" is measured in bytes, not time: the client streams an oversized body
//! while it waits for the answer, and counts how much of it the server had taken (kernel buffers
//! included) when the answer came. A server that reads the body first answers only after all of
//! it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::TestServer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The oversized body each request offers.
const OFFERED: u64 = 256 * 1024 * 1024;
/// More than socket buffers on loopback can hold: a server that answered after taking less than
/// this did not read the body first.
const READ_FIRST: u64 = 64 * 1024 * 1024;
const CHUNK: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    ContentLength,
    Chunked,
}

/// Sends `method path` with an oversized body generated on the fly; answers the response's
/// status and how many body bytes the server had taken when the response head arrived.
async fn offer(
    srv: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    framing: Framing,
) -> (u16, u64) {
    let stream = TcpStream::connect(srv.addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n",
        srv.addr
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    match framing {
        Framing::ContentLength => head.push_str(&format!("Content-Length: {OFFERED}\r\n\r\n")),
        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n\r\n"),
    }
    wr.write_all(head.as_bytes()).await.expect("send the head");
    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicBool::new(false));
    let writer = {
        let (sent, answered) = (Arc::clone(&sent), Arc::clone(&answered));
        tokio::spawn(async move {
            let chunk = vec![b'x'; CHUNK];
            while sent.load(Ordering::SeqCst) < OFFERED && !answered.load(Ordering::SeqCst) {
                let ok = match framing {
                    Framing::ContentLength => wr.write_all(&chunk).await.is_ok(),
                    Framing::Chunked => {
                        let mut framed = format!("{CHUNK:x}\r\n").into_bytes();
                        framed.extend_from_slice(&chunk);
                        framed.extend_from_slice(b"\r\n");
                        wr.write_all(&framed).await.is_ok()
                    }
                };
                if !ok {
                    return; // the server closed the connection: it read no more
                }
                sent.fetch_add(CHUNK as u64, Ordering::SeqCst);
            }
            if framing == Framing::Chunked {
                let _ = wr.write_all(b"0\r\n\r\n").await;
            }
        })
    };
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    let status = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        loop {
            let n = rd.read(&mut byte).await.expect("read the response");
            assert!(n > 0, "the server closed without answering");
            buf.extend_from_slice(&byte[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    status.expect("a response head within 120 s (a guard against hangs)");
    let taken = sent.load(Ordering::SeqCst);
    answered.store(true, Ordering::SeqCst);
    writer.abort();
    let line = String::from_utf8_lossy(&buf);
    let code = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status");
    (code, taken)
}

#[tokio::test]
async fn an_anonymous_oversized_body_to_graphql_gets_401_before_it_is_read() {
    let srv = TestServer::start().await;
    for framing in [Framing::ContentLength, Framing::Chunked] {
        for token in [None, Some("forged-token")] {
            let (status, taken) = offer(&srv, "POST", "/graphql", token, framing).await;
            assert_eq!(status, 401, "{framing:?} {token:?}");
            assert!(taken < READ_FIRST, "{framing:?} {token:?}: answered after {taken} bytes");
        }
    }
}

#[tokio::test]
async fn anonymous_oversized_bodies_to_rest_routes_get_401_before_they_are_read() {
    let srv = TestServer::start().await;
    for (method, path) in [
        ("POST", "/api/v1/apply"),
        ("PUT", "/api/v1/containers/default/web"),
        ("POST", "/api/v1/users"),
        ("POST", "/api/v1/auth/logout"),
    ] {
        let (status, taken) = offer(&srv, method, path, None, Framing::Chunked).await;
        assert_eq!(status, 401, "{method} {path}");
        assert!(taken < READ_FIRST, "{method} {path}: answered after {taken} bytes");
    }
}

#[tokio::test]
async fn an_authenticated_oversized_body_to_graphql_gets_413_at_the_limit() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    for framing in [Framing::ContentLength, Framing::Chunked] {
        let (status, taken) = offer(&srv, "POST", "/graphql", Some(&admin), framing).await;
        assert_eq!(status, 413, "{framing:?}");
        assert!(taken < READ_FIRST, "{framing:?}: answered after {taken} bytes");
    }
}

#[tokio::test]
async fn oversized_bodies_to_public_and_authenticated_rest_routes_get_413_at_the_limit() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    for (method, path, token) in [
        ("POST", "/api/v1/auth/login", None),
        ("POST", "/api/v1/auth/refresh", None),
        ("POST", "/api/v1/apply", Some(admin.as_str())),
        ("POST", "/api/v1/users", Some(admin.as_str())),
    ] {
        for framing in [Framing::ContentLength, Framing::Chunked] {
            let (status, taken) = offer(&srv, method, path, token, framing).await;
            assert_eq!(status, 413, "{method} {path} {framing:?}");
            assert!(taken < READ_FIRST, "{method} {path} {framing:?}: answered after {taken}");
        }
    }
}

#[tokio::test]
async fn a_body_within_the_limit_still_reaches_graphql() {
    let srv = TestServer::start_with(|c| c.body_limit = 64 * 1024).await;
    let admin = srv.admin().await;
    let padding = " ".repeat(60 * 1024);
    let body = format!(r#"{{"query":"{{__typename}}"{padding}}}"#);
    let r = srv
        .request(
            hyper::Method::POST,
            "/graphql",
            Some(&admin),
            Some(("application/json", body.into_bytes())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"]["__typename"], "Query");
    let body = format!(r#"{{"query":"{{__typename}}"{}}}"#, " ".repeat(70 * 1024));
    let r = srv
        .request(
            hyper::Method::POST,
            "/graphql",
            Some(&admin),
            Some(("application/json", body.into_bytes())),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["errors"][0]["extensions"]["code"], "payload_too_large");
}
