//! Harness for the CLI's end-to-end tests: a real `berth serve` on 127.0.0.1 with a temporary
//! data directory and the real Docker Engine, and the real `berth` binary driven against it
//! with its own contexts file.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct-horse-battery-staple";

/// The test environment's variables (`scripts/test-env env`), read from `.test-env/env` when
/// they are not in the environment already.
pub fn test_env() -> Vec<(String, String)> {
    let mut vars = Vec::new();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-env/env");
    if let Ok(text) = std::fs::read_to_string(file) {
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("export ") else { continue };
            let Some((k, v)) = rest.split_once('=') else { continue };
            if std::env::var_os(k).is_none() {
                vars.push((k.to_owned(), v.trim_matches('\'').to_owned()));
            }
        }
    }
    vars
}

pub fn test_image() -> String {
    std::env::var("BERTH_TEST_IMAGE")
        .ok()
        .or_else(|| test_env().into_iter().find(|(k, _)| k == "BERTH_TEST_IMAGE").map(|(_, v)| v))
        .unwrap_or_else(|| "berth-test/busybox:1".into())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique namespace for one test, so that tests sharing the Engine never see each other.
pub fn unique_ns(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A running `berth serve` plus a logged-in client configuration.
pub struct Server {
    pub url: String,
    pub data: tempfile::TempDir,
    pub config_home: tempfile::TempDir,
    pub namespaces: std::sync::Mutex<Vec<String>>,
    child: Child,
}

/// Runs `f` until it answers `Some`, or fails the test with `why` after `limit` (a guard
/// against hangs, not a timing assertion).
pub fn eventually<T>(limit: Duration, why: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(start.elapsed() < limit, "gave up after {limit:?}: {why}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The status of `GET path` on 127.0.0.1:`port`, or `None` when nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Server {
    /// Starts a server and logs the admin in. Fails (never skips) when the Docker Engine is not
    /// there.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// As [`Server::start`], with more `berth serve` flags (`--sync-dir DIR`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_inner(extra, None, None)
    }

    /// As [`Server::start_with`], in a temporary directory the test prepared: the server's
    /// data directory is `data/data`, its log `data/serve.log`.
    pub fn start_in(data: tempfile::TempDir, extra: &[&str]) -> Self {
        Self::start_inner(extra, None, Some(data))
    }

    /// As [`Server::start`], serving HTTPS with `cert`/`key`; the client trusts `ca` through
    /// `berth login --ca-cert`.
    pub fn start_tls(ca: &Path, cert: &Path, key: &Path) -> Self {
        let (cert, key) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
        Self::start_inner(&["--tls-cert", cert, "--tls-key", key], Some(ca), None)
    }

    fn start_inner(extra: &[&str], ca: Option<&Path>, data: Option<tempfile::TempDir>) -> Self {
        let port = free_port();
        let data = data.unwrap_or_else(|| tempfile::tempdir().expect("tempdir"));
        let config_home = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(data.path().join("serve.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data.path().join("data"))
            .args(extra)
            .env("BERTH_ADMIN_PASSWORD", PASSWORD)
            .envs(test_env())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("berth serve starts");
        let scheme = if ca.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let mut server =
            Self { url, data, config_home, namespaces: std::sync::Mutex::new(Vec::new()), child };
        let log_path = server.data.path().join("serve.log");
        let ready = Instant::now();
        loop {
            // Over TLS, readiness shows in the log; the Engine is checked by the test's first
            // command that needs it.
            let up = match ca {
                None => http_status(port, "/readyz") == Some(200),
                Some(_) => std::fs::read_to_string(&log_path)
                    .unwrap_or_default()
                    .contains("berth: serving"),
            };
            if up {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "berth serve exited ({status}): {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(
                ready.elapsed() < Duration::from_secs(60),
                "berth serve did not become ready in 60 s — is the Docker Engine up? Run \
                 `scripts/test-env up`. Log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let url = server.url.clone();
        let mut login = vec!["login", "--server", &url, "--username", "admin", "--password-stdin"];
        let ca = ca.map(|c| c.to_str().expect("utf-8").to_owned());
        if let Some(ca) = &ca {
            login.extend(["--ca-cert", ca]);
        }
        let o = server.run_stdin(&login, &format!("{PASSWORD}\n"));
        assert_eq!(o.status.code(), Some(0), "login failed: {}", stderr(&o));
        server
    }

    /// A `berth` command with this server's contexts file.
    pub fn berth(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("XDG_CONFIG_HOME", self.config_home.path())
            .env_remove("BERTH_SERVER")
            .env_remove("BERTH_TOKEN")
            .env("NO_COLOR", "1")
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.berth().args(args).stdin(Stdio::null()).output().expect("berth runs")
    }

    /// Runs with `input` on stdin. A berth that does not finish is killed after a generous
    /// limit, so a test fails instead of hanging (its status then has no exit code).
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .berth()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("berth runs");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        let pid = child.id();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if finished.recv_timeout(Duration::from_secs(120)).is_err() {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        });
        let out = child.wait_with_output().expect("berth finishes");
        let _ = done.send(());
        out
    }

    /// Runs and asserts exit status 0; answers stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "berth {args:?} failed:\n{}\n{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// A namespace cleaned of Docker objects when the server is dropped.
    pub fn namespace(&self, prefix: &str) -> String {
        let ns = unique_ns(prefix);
        self.namespaces.lock().unwrap_or_else(|e| e.into_inner()).push(ns.clone());
        ns
    }

    /// The resource as JSON, or `None` when it does not exist.
    pub fn get_json(&self, kind: &str, ns: &str, name: &str) -> Option<serde_json::Value> {
        let o = self.run(&["get", kind, name, "-n", ns, "-o", "json"]);
        if o.status.code() != Some(0) {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    /// The `berth serve` process id (for reading its `/proc` status).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("serve.log")).unwrap_or_default()
    }
}

pub fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).envs(test_env()).output().expect("docker runs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let namespaces = self.namespaces.lock().map(|n| n.clone()).unwrap_or_default();
        for ns in namespaces {
            let ids =
                docker(&["ps", "-aq", "--filter", &format!("label=dev.berth.namespace={ns}")]);
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                docker(&args);
            }
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A Container manifest on the test image.
pub fn container(ns: &str, name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app: {name}\nspec:\n  image: {}\n  command: [\"sh\", \"-c\", \"echo hello from {name}; sleep 3600\"]\n{extra_spec}",
        test_image()
    )
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, text).expect("write manifest");
    p
}

/// Whether a resource (as `berth get -o json` prints it) is Ready, by berth's one readiness
/// rule ([`berth_schemas::readiness`]).
pub fn is_ready(v: &serde_json::Value) -> bool {
    serde_json::from_value::<berth_schemas::DynamicObject>(v.clone())
        .is_ok_and(|o| berth_schemas::readiness(&o).is_ready())
}
