//! `berth logs` and `berth exec` over the GraphQL websocket, against a real server and Engine.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::*;

fn running(s: &Server, ns: &str, name: &str, script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let m = format!(
        "apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  image: {}\n  command: [\"sh\", \"-c\", {script:?}]\n",
        test_image()
    );
    let f = write(dir.path(), "c.yaml", &m);
    s.ok(&["apply", "-f", f.to_str().unwrap(), "--wait", "--timeout", "90s"]);
}

#[test]
fn logs_prints_the_history_and_follow_keeps_printing_new_lines() {
    let s = Server::start();
    let ns = s.namespace("logs");
    running(
        &s,
        &ns,
        "talker",
        "echo first; echo oops >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done",
    );
    let out = eventually(Duration::from_secs(30), "the log has a tick", || {
        let o = s.run(&["logs", "talker", "-n", &ns]);
        let text = stdout(&o);
        (o.status.code() == Some(0) && text.contains("tick")).then_some((text, stderr(&o)))
    });
    let seen_first = std::time::Instant::now();
    assert!(out.0.starts_with("first\n"), "{}", out.0);
    assert!(out.1.contains("oops"), "stderr lines go to stderr: {}", out.1);
    // The last line may be "oops" on stderr: the Engine's stdout and stderr copiers race, so
    // the two streams together hold the one line.
    let o = s.run(&["logs", "talker", "-n", &ns, "--tail", "1", "--timestamps"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let tail = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.starts_with("20"), "a timestamp first: {tail}");

    // `--since` leaves out older lines: "first" was written at least 3 s before `--since 1s`
    // (whole seconds: a window of at most 2 s).
    std::thread::sleep(Duration::from_secs(3).saturating_sub(seen_first.elapsed()));
    let since = s.ok(&["logs", "talker", "-n", &ns, "--since", "1s"]);
    assert!(!since.contains("first") && since.contains("tick"), "--since 1s: {since}");
    assert!(s.ok(&["logs", "talker", "-n", &ns, "--since", "1h"]).starts_with("first\n"));

    // `--tail 0` is no past line at all (docker/kubectl semantics).
    let none = s.ok(&["logs", "talker", "-n", &ns, "--tail", "0"]);
    assert_eq!(none, "", "--tail 0 prints no past line");

    let last: u64 =
        out.0.lines().filter_map(|l| l.strip_prefix("tick ")?.parse().ok()).max().unwrap_or(0);

    let mut child = s
        .berth()
        .args(["logs", "talker", "-n", &ns, "-f", "--tail", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    let newer = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => {
                let n: Option<u64> = l.strip_prefix("tick ").and_then(|n| n.parse().ok());
                got.push(l);
                if n.is_some_and(|n| n > last + 1) {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(newer, "follow delivers lines written after it started: {got:?}");

    // `-f --tail 0`: only lines written after it started; the first is newer than the newest
    // line printed before it started.
    let before: u64 = s
        .ok(&["logs", "talker", "-n", &ns, "--tail", "1"])
        .trim()
        .strip_prefix("tick ")
        .and_then(|n| n.parse().ok())
        .expect("the last line is a tick");
    let mut child = s
        .berth()
        .args(["logs", "talker", "-n", &ns, "-f", "--tail", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok);
    let _ = child.kill();
    let _ = child.wait();
    let first = first.expect("follow with --tail 0 prints new lines");
    let n: u64 = first
        .strip_prefix("tick ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a tick line, not {first:?}"));
    assert!(n > before, "tick {n} was written before `logs -f --tail 0` started (tick {before})");
}

#[test]
fn exec_forwards_stdin_and_returns_the_command_exit_code() {
    let s = Server::start();
    let ns = s.namespace("exec");
    running(&s, &ns, "box", "sleep 3600");
    let o = s.run_stdin(
        &["exec", "-i", "box", "-n", &ns, "--", "head", "-n", "1"],
        "hello through stdin\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hello through stdin\n");
    // The end of berth's stdin closes the command's, so commands that read to the end finish
    // and their exit code becomes berth's.
    let o = s.run_stdin(&["exec", "-i", "box", "-n", &ns, "--", "wc", "-c"], "hello\n");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "6");
    let o = s.run_stdin(
        &["exec", "-i", "box", "-n", &ns, "--", "sh", "-c", "cat; exit 4"],
        "piped through",
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(stdout(&o), "piped through");
    let o = s.run(&["exec", "box", "-n", &ns, "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "out\n");
    assert!(stderr(&o).contains("err"), "{}", stderr(&o));
    let o = s.run(&["exec", "nope", "-n", &ns, "--", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).lines().count(), 1, "one clear line: {}", stderr(&o));
}

// Issue 11, hole 2, with the real controller making the containers: an operator's `berth exec`
// reaches a container made from a plain spec (as root), but not one whose spec binds a host
// directory, which only an admin may exec into.
#[test]
fn an_operator_execs_into_plain_containers_but_not_into_ones_whose_spec_needs_an_admin() {
    let s = Server::start();
    let ns = s.namespace("opexec");
    running(&s, &ns, "plain", "sleep 3600");
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("secret.txt"), "host-file").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = format!(
        "apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: hostmnt\n  namespace: {ns}\nspec:\n  image: {}\n  command: [\"sleep\", \"3600\"]\n  mounts:\n    - type: bind\n      source: {}\n      target: /host\n",
        test_image(),
        host.path().display()
    );
    let f = write(dir.path(), "c.yaml", &m);
    s.ok(&["apply", "-f", f.to_str().unwrap(), "--wait", "--timeout", "90s"]);
    let token = s.ok(&["token", "create", "op-exec", "--role", "operator"]);
    let token = token.trim();
    let as_operator = |args: &[&str]| {
        s.berth()
            .args(args)
            .env("BERTH_SERVER", &s.url)
            .env("BERTH_TOKEN", token)
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = as_operator(&["exec", "plain", "-n", &ns, "--", "id", "-u"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "0\n");
    let o = as_operator(&["exec", "hostmnt", "-n", &ns, "--", "cat", "/host/secret.txt"]);
    assert_eq!(o.status.code(), Some(1), "refused: {}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "", "nothing of the host file is shown");
    assert!(stderr(&o).contains("spec.mounts[0]"), "the refusal says why: {}", stderr(&o));
    let o = s.run(&["exec", "hostmnt", "-n", &ns, "--", "cat", "/host/secret.txt"]);
    assert_eq!(o.status.code(), Some(0), "an admin may: {}", stderr(&o));
    assert_eq!(stdout(&o), "host-file");
}
