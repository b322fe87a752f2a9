//! `berth system info|df|prune` and the `--token-rate-limit` setting of `berth serve`, driven
//! through the real binary against a real `berth serve` and the real Docker Engine.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// A container made with `docker create`, removed when dropped (prune may have removed it
/// already).
struct MadeContainer(String);

impl Drop for MadeContainer {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.0]);
    }
}

/// Whether a container with this id exists on the Engine.
fn exists(id: &str) -> bool {
    !docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("id={id}")]).trim().is_empty()
}

#[test]
fn system_info_and_df_print_sections_and_valid_json() {
    let s = Server::start();
    let info = s.ok(&["system", "info"]);
    assert!(info.contains(&format!("Server: {}", s.url)), "{info}");
    assert!(info.contains(&format!("berth version: {}", env!("CARGO_PKG_VERSION"))), "{info}");
    assert!(info.contains("Docker Engine:") && info.contains("Storage driver: "), "{info}");
    assert!(info.contains("Managed containers: 0 (running: 0)"), "{info}");
    let j: serde_json::Value = serde_json::from_str(&s.ok(&["system", "info", "-o", "json"]))
        .expect("system info -o json is JSON");
    assert!(j["engine"]["version"].is_string(), "{j}");
    let instance = j["berth"]["instanceId"].as_str().expect("instanceId");
    assert!(info.contains(&format!("Instance ID: {instance}")), "{info}");

    let df = s.ok(&["system", "df"]);
    let lines: Vec<&str> = df.lines().collect();
    assert_eq!(lines.len(), 5, "{df}");
    assert!(lines[0].starts_with("TYPE") && lines[0].contains("RECLAIMABLE"), "{df}");
    for (line, t) in lines[1..].iter().zip(["Images", "Containers", "Volumes", "Build cache"]) {
        assert!(line.starts_with(t), "{df}");
    }
    let j: serde_json::Value = serde_json::from_str(&s.ok(&["system", "df", "-o", "json"]))
        .expect("system df -o json is JSON");
    let images = j["images"]["count"].as_u64().expect("images.count");
    assert!(images >= 1, "the test image is there: {j}");
    assert!(lines[1].split_whitespace().nth(1) == Some(&images.to_string()), "{df}");
}

#[test]
fn system_prune_lists_and_removes_only_this_servers_orphan_and_refuses_a_viewer() {
    let s = Server::start();
    let ns = s.namespace("prune-sys");
    let info: serde_json::Value =
        serde_json::from_str(&s.ok(&["system", "info", "-o", "json"])).unwrap();
    let instance = info["berth"]["instanceId"].as_str().unwrap().to_owned();
    // An orphan: this server's ownership labels, but no such resource in its store. It names an
    // `Image` resource: the running controller removes orphans of `Container` resources itself
    // as soon as it sees them (a Docker event), so such an orphan would race prune; the
    // controller leaves other kinds to prune.
    let mk = |name: &str, inst: &str| {
        let id = docker(&[
            "create",
            "--name",
            &format!("{ns}-{name}"),
            "--label",
            "dev.berth.managed-by=berth",
            "--label",
            &format!("dev.berth.instance={inst}"),
            "--label",
            "dev.berth.kind=Image",
            "--label",
            &format!("dev.berth.namespace={ns}"),
            "--label",
            &format!("dev.berth.name={name}"),
            "--label",
            "dev.berth.uid=00000000-0000-0000-0000-000000000000",
            &test_image(),
            "sleep",
            "3600",
        ]);
        let id = id.trim().to_owned();
        assert!(!id.is_empty(), "docker create failed");
        MadeContainer(id)
    };
    let orphan = mk("gone", &instance);
    let foreign = mk("theirs", "another-berth-instance");

    // A viewer is refused: one line, exit 1, nothing removed.
    let token = s.ok(&["token", "create", "sys-viewer", "--role", "viewer"]);
    let o = s.run(&["system", "prune", "-y", "--server", &s.url, "--token", token.trim()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains("role viewer may not"), "{err}");
    assert!(exists(&orphan.0));

    // Without a terminal, prune wants -y (a usage error), and removes nothing.
    let o = s.run(&["system", "prune"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("pass -y"), "{}", stderr(&o));
    assert!(exists(&orphan.0));

    // The dry run lists the orphan, not the other instance's container.
    let dry = s.ok(&["system", "prune", "--dry-run"]);
    let short = &orphan.0[..12];
    let line = dry.lines().find(|l| l.contains(short)).unwrap_or_else(|| panic!("{dry}"));
    assert!(line.contains("would remove") && line.contains(&format!("{ns}-gone")), "{dry}");
    assert!(!dry.contains(&foreign.0[..12]), "{dry}");
    let j: serde_json::Value =
        serde_json::from_str(&s.ok(&["system", "prune", "--dry-run", "-o", "json"])).unwrap();
    assert_eq!(j["dryRun"], true, "{j}");
    assert!(exists(&orphan.0), "a dry run removes nothing");

    // On a terminal it asks; "n" removes nothing and exits 1.
    let o = prune_on_a_terminal(&s, "n\n");
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let said = stdout(&o);
    assert!(said.contains("Continue? [y/N]") && said.contains("nothing was removed"), "{said}");
    assert!(exists(&orphan.0), "a declined prune removes nothing");

    let out = s.ok(&["system", "prune", "-y"]);
    let line = out.lines().find(|l| l.contains(short)).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("removed"), "{out}");
    assert!(!exists(&orphan.0), "the orphan is gone");
    assert!(exists(&foreign.0), "another instance's container stays");
    assert_eq!(s.ok(&["system", "prune", "--dry-run"]).trim(), "nothing to prune");
}

/// `berth system prune` with a terminal as stdin (util-linux `script`, which gives the command
/// a pty and forwards `answer` to it); the pty's output, stderr included, is on stdout.
fn prune_on_a_terminal(s: &Server, answer: &str) -> std::process::Output {
    let cmd = format!("{} system prune", env!("CARGO_BIN_EXE_berth"));
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("XDG_CONFIG_HOME", s.config_home.path())
        .env_remove("BERTH_SERVER")
        .env_remove("BERTH_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs");
    child.stdin.take().expect("stdin").write_all(answer.as_bytes()).expect("answer");
    child.wait_with_output().expect("script finishes")
}

/// One raw HTTP/1.1 GET with a bearer token: the status and the `Retry-After` header.
fn get_with_token(url: &str, path: &str, token: &str) -> (u16, Option<String>) {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: \
         close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status");
    let mut retry = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap() == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("retry-after")
        {
            retry = Some(v.trim().to_owned());
        }
    }
    let _ = r.read_to_end(&mut Vec::new());
    (status, retry)
}

#[test]
fn a_server_with_a_low_token_rate_limit_answers_429_with_retry_after_after_the_burst() {
    let s = Server::start_with(&["--token-rate-limit", "1", "--token-rate-burst", "5"]);
    let token = s.ok(&["token", "create", "rl", "--role", "viewer"]);
    let token = token.trim();
    // A fresh token's bucket is full: the whole burst is served.
    for i in 0..5 {
        let (status, _) = get_with_token(&s.url, "/api/v1/me", token);
        assert_eq!(status, 200, "request {i} of the burst");
    }
    // Then requests faster than 1 a second are refused (50 cannot take 45 s).
    let refused = (0..50)
        .map(|_| get_with_token(&s.url, "/api/v1/me", token))
        .find(|(status, _)| *status == 429);
    let (_, retry) = refused.expect("a 429 after the burst");
    let retry: u64 = retry.expect("Retry-After").parse().expect("Retry-After in seconds");
    assert!(retry >= 1, "{retry}");
}
