//! The CLI against a real `berth serve` over HTTPS with a certificate from a private CA (made
//! with the openssl CLI, which the test environment provides): `login --ca-cert` keeps the CA in
//! the context, HTTP requests (apply --wait, get -w) and the `wss://` websocket (logs, exec)
//! trust it, and without it the server is refused.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (scripts/test-env installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for localhost/127.0.0.1 signed by it: (ca, cert, key).
fn make_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-subj",
        "/CN=berth-cli-test-ca",
        "-days",
        "1",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&ca, dir);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-subj", "/CN=localhost", "-keyout", "tls.key", "-out", "tls.csr"]);
    openssl(&csr, dir);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "tls.crt",
        ],
        dir,
    );
    (dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key"))
}

#[test]
fn logs_and_exec_use_wss_with_the_ca_from_login_against_an_https_server() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_cert(certs.path());
    let s = Server::start_tls(&ca, &cert, &key);
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let ns = s.namespace("tls");
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "c.yaml", &container(&ns, "web", ""));
    s.ok(&["apply", "-f", f.to_str().unwrap(), "--wait", "--timeout", "90s"]);

    // logs over wss://, with the CA the context keeps.
    let out = eventually(Duration::from_secs(30), "the log has the first line", || {
        let o = s.run(&["logs", "web", "-n", &ns]);
        (o.status.code() == Some(0) && stdout(&o).contains("hello from web")).then(|| stdout(&o))
    });
    assert_eq!(out, "hello from web\n");
    let (first, err) = first_line_of_stream(&s, &["logs", "web", "-n", &ns, "-f", "--tail", "1"]);
    assert_eq!(first.as_deref(), Some("hello from web"), "{err}");

    // get -w: the REST watch stream over HTTPS.
    let (first, err) =
        first_line_of_stream(&s, &["get", "containers", "-n", &ns, "-w", "-o", "name"]);
    assert_eq!(first.as_deref(), Some("container/web"), "{err}");

    // exec over wss://: the command's output and exit code.
    let o = s.run(&["exec", "web", "-n", &ns, "--", "sh", "-c", "echo over-tls; exit 4"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(stdout(&o), "over-tls\n");

    // Without the CA the certificate is refused, for HTTP and the websocket alike.
    let empty = tempfile::tempdir().unwrap();
    let contexts = empty.path().join("contexts.yaml");
    let contexts = contexts.to_str().unwrap();
    for args in [["get", "containers", "-n", &ns], ["logs", "web", "-n", &ns]] {
        let o = s
            .berth()
            .args(args)
            .args(["--server", &s.url, "--token", "not-a-token", "--contexts-file", contexts])
            .env_remove("BERTH_CA_CERT")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.contains("cannot reach") || err.contains("websocket"),
            "{args:?}: a TLS failure: {err}"
        );
    }
    // ... and with --ca-cert on the command line it is trusted (the token is then refused).
    let o = s
        .berth()
        .args(["get", "containers", "-n", &ns, "--server", &s.url, "--token", "not-a-token"])
        .args(["--contexts-file", contexts, "--ca-cert", ca.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("token was refused"), "{}", stderr(&o));
}

/// Starts a streaming berth command (`logs -f`, `get -w`), reads its first line of output, then
/// stops it; answers the line and what berth printed on stderr.
fn first_line_of_stream(s: &Server, args: &[&str]) -> (Option<String>, String) {
    let mut child =
        s.berth().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let first = BufReader::new(child.stdout.take().unwrap()).lines().next().and_then(Result::ok);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (first, stderr(&out))
}
