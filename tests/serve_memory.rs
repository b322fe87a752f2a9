//! Memory of the real `berth serve` under oversized anonymous bodies (issue 11, hole 4): eight
//! concurrent anonymous clients each offer a 300 MiB body, generated on the fly, to `/graphql`,
//! `/api/v1/apply`, `/api/v1/auth/login` and a websocket upgrade at `/graphql/ws` (as one huge
//! first message); the server's peak resident memory (`VmHWM`) stays under 100 MiB and it still
//! answers `/healthz` afterwards.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;

const OFFERED: u64 = 300 * 1024 * 1024;
const CHUNK: usize = 1024 * 1024;
const PEAK_LIMIT_KIB: u64 = 100 * 1024;

/// How one client frames its body.
#[derive(Debug, Clone, Copy)]
enum Client {
    /// An HTTP request with `Content-Length`.
    Sized(&'static str),
    /// An HTTP request with `Transfer-Encoding: chunked`.
    Chunked(&'static str),
    /// A websocket upgrade, then one text frame of the whole size.
    Websocket,
}

fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc status")
}

/// Offers the body; answers how many bytes the server took before it stopped reading (the
/// loop is bounded by the size, and a write that stalls for a minute ends it).
fn offer(port: u16, client: Client) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(60))).expect("timeout");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let host = format!("127.0.0.1:{port}");
    let head = match client {
        Client::Sized(path) => format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {OFFERED}\r\n\r\n"
        ),
        Client::Chunked(path) => format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        ),
        Client::Websocket => format!(
            "GET /graphql/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        ),
    };
    if s.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    if let Client::Websocket = client {
        let mut reader = BufReader::new(s.try_clone().expect("clone"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("upgrade answer");
        assert!(line.contains(" 101 "), "the anonymous upgrade is accepted: {line}");
        loop {
            line.clear();
            reader.read_line(&mut line).expect("upgrade headers");
            if line == "\r\n" {
                break;
            }
        }
        // FIN + text, masked, 64-bit length, a zero masking key (the payload goes as it is).
        let mut frame = vec![0x81, 0xff];
        frame.extend_from_slice(&OFFERED.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        if s.write_all(&frame).is_err() {
            return 0;
        }
    }
    let chunk = vec![b'x'; CHUNK];
    let mut sent = 0u64;
    while sent < OFFERED {
        let ok = match client {
            Client::Chunked(_) => s
                .write_all(format!("{CHUNK:x}\r\n").as_bytes())
                .and_then(|()| s.write_all(&chunk))
                .and_then(|()| s.write_all(b"\r\n"))
                .is_ok(),
            Client::Sized(_) | Client::Websocket => s.write_all(&chunk).is_ok(),
        };
        if !ok {
            break; // the server answered and closed, or stopped reading
        }
        sent += CHUNK as u64;
    }
    if let Client::Chunked(_) = client {
        let _ = s.write_all(b"0\r\n\r\n");
    }
    // Read whatever answer there is, so a server that reads everything is not cut short.
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    sent
}

#[test]
fn serve_stays_under_100_mib_while_anonymous_clients_send_8_bodies_of_300_mib() {
    let srv = Server::start();
    let port: u16 = srv.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let before = peak_kib(srv.pid());
    let clients = [
        Client::Sized("/graphql"),
        Client::Chunked("/graphql"),
        Client::Sized("/api/v1/apply"),
        Client::Chunked("/api/v1/apply"),
        Client::Sized("/api/v1/auth/login"),
        Client::Chunked("/api/v1/auth/login"),
        Client::Websocket,
        Client::Websocket,
    ];
    let threads: Vec<_> =
        clients.into_iter().map(|c| std::thread::spawn(move || (c, offer(port, c)))).collect();
    for t in threads {
        let (client, sent) = t.join().expect("client thread");
        eprintln!("{client:?}: the server took {} MiB", sent / (1024 * 1024));
    }
    let peak = peak_kib(srv.pid());
    eprintln!("VmHWM before {before} KiB, after {peak} KiB");
    assert!(
        peak < PEAK_LIMIT_KIB,
        "berth serve peaked at {} MiB (limit {} MiB; {} MiB before the clients)",
        peak / 1024,
        PEAK_LIMIT_KIB / 1024,
        before / 1024
    );
    assert_eq!(common::http_status(port, "/healthz"), Some(200), "berth serve still answers");
}
