//! `berth login`, `apply`, `diff`, `get`, `describe`, `delete`, `restart`, `audit`, `user`,
//! `token` and `version`, driven through the real binary against a real `berth serve` and the
//! real Docker Engine.

mod common;

use common::*;

#[test]
fn apply_creates_waits_until_ready_and_then_reports_unchanged() {
    let s = Server::start();
    let ns = s.namespace("apply");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "web.yaml", &container(&ns, "web", ""));
    write(dir.path(), "nested/worker.yaml", &container(&ns, "worker", ""));
    let d = dir.path().to_str().unwrap();
    let out = s.ok(&["apply", "-f", d, "--wait", "--timeout", "90s"]);
    assert!(out.contains(&format!("container/web -n {ns} created")), "{out}");
    assert!(out.contains(&format!("container/worker -n {ns} created")), "{out}");
    assert!(out.contains(&format!("container/web -n {ns} ready")), "{out}");
    let web = s.get_json("container", &ns, "web").expect("web exists");
    assert!(is_ready(&web), "{web}");
    let again = s.ok(&["apply", "-f", d]);
    assert!(again.contains(&format!("container/web -n {ns} unchanged")), "{again}");
}

#[test]
fn apply_of_a_broken_manifest_prints_file_line_and_column_and_sends_nothing() {
    let s = Server::start();
    let ns = s.namespace("broken");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a-good.yaml", &container(&ns, "good", ""));
    let bad = write(dir.path(), "b-bad.yaml", &container(&ns, "bad", "  imagePolicy: Always\n"));
    let o = s.run(&["apply", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}:11:3: spec.imagePolicy: unknown field", bad.display())),
        "{err}"
    );
    assert!(s.get_json("container", &ns, "good").is_none(), "nothing may be applied");
}

#[test]
fn dry_run_reports_what_would_happen_and_writes_nothing() {
    let s = Server::start();
    let ns = s.namespace("dry");
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "web.yaml", &container(&ns, "web", ""));
    let out = s.ok(&["apply", "-f", f.to_str().unwrap(), "--dry-run"]);
    assert_eq!(out.trim(), format!("container/web -n {ns} created (dry run)"));
    assert!(s.get_json("container", &ns, "web").is_none());
}

#[test]
fn prune_deletes_labelled_resources_missing_from_the_set_and_keeps_the_others() {
    let s = Server::start();
    let ns = s.namespace("prune");
    let dir = tempfile::tempdir().unwrap();
    let mk = |name: &str, tier: &str| {
        format!(
            "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    tier: {tier}\nspec:\n  reference: {}\n",
            test_image()
        )
    };
    write(dir.path(), "a.yaml", &mk("a", "front"));
    write(dir.path(), "b.yaml", &mk("b", "front"));
    let other = write(&dir.path().join("../"), &format!("other-{ns}.yaml"), &mk("c", "back"));
    s.ok(&["apply", "-f", dir.path().to_str().unwrap()]);
    s.ok(&["apply", "-f", other.to_str().unwrap()]);
    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    let out = s.ok(&["apply", "-f", dir.path().to_str().unwrap(), "--prune", "-l", "tier=front"]);
    assert!(out.contains(&format!("image/b -n {ns} pruned")), "{out}");
    assert!(s.get_json("image", &ns, "a").is_some());
    assert!(s.get_json("image", &ns, "c").is_some(), "a resource outside the selector stays");
    let _ = std::fs::remove_file(other);
    let o = s.run(&["apply", "-f", dir.path().to_str().unwrap(), "--prune"]);
    assert_eq!(o.status.code(), Some(2), "--prune without -l is a usage error");
}

#[test]
fn diff_exits_zero_when_equal_one_when_different_and_above_one_on_error() {
    let s = Server::start();
    let ns = s.namespace("diff");
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "web.yaml", &container(&ns, "web", ""));
    let f = f.to_str().unwrap();
    let o = s.run(&["diff", "-f", f]);
    assert_eq!(o.status.code(), Some(1), "absent on the server is a difference");
    assert!(stdout(&o).contains("+kind: Container"), "{}", stdout(&o));
    s.ok(&["apply", "-f", f]);
    let o = s.run(&["diff", "-f", f]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "");
    write(dir.path(), "web.yaml", &container(&ns, "web", "  workingDir: /tmp\n"));
    let o = s.run(&["diff", "-f", f]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("+  workingDir: /tmp"), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("--- live/container/{ns}/web")), "{}", stdout(&o));
    write(dir.path(), "web.yaml", "kind: [");
    assert_eq!(s.run(&["diff", "-f", f]).status.code(), Some(2), "invalid manifests");
    let o = s
        .berth()
        .args(["diff", "-f", "examples/", "--server", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(o.status.code().unwrap_or(0) > 1, "unreachable server: {}", stderr(&o));
}

#[test]
fn get_prints_table_wide_yaml_json_and_name_and_filters_by_label() {
    let s = Server::start();
    let ns = s.namespace("get");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &container(&ns, "alpha", "  ports:\n    - containerPort: 80\n"));
    write(dir.path(), "b.yaml", &container(&ns, "beta", ""));
    s.ok(&["apply", "-f", dir.path().to_str().unwrap(), "--wait"]);
    let table = s.ok(&["get", "containers", "-n", &ns]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME "), "{table}");
    assert!(lines[0].contains("IMAGE") && lines[0].contains("READY"), "{table}");
    assert!(lines[1].starts_with("alpha ") && lines[1].contains("True"), "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    let wide = s.ok(&["get", "ctr", "-n", &ns, "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("PORTS"), "{wide}");
    assert!(wide.contains("80"), "{wide}");
    let yaml = s.ok(&["get", "container", "alpha", "-n", &ns, "-o", "yaml"]);
    assert!(yaml.contains("kind: Container") && yaml.contains("name: alpha"), "{yaml}");
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "containers", "-n", &ns, "-o", "json"])).unwrap();
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"].as_array().unwrap().len(), 2);
    let names = s.ok(&["get", "containers", "-n", &ns, "-l", "app=beta", "-o", "name"]);
    assert_eq!(names.trim(), "container/beta");
    let all = s.ok(&["get", "containers", "-A"]);
    assert!(all.lines().next().unwrap().starts_with("NAMESPACE"), "{all}");
    let o = s.run(&["get", "pods"]);
    assert_eq!(o.status.code(), Some(2), "unknown kind is a usage error");
    let o = s.run(&["get", "container", "nope", "-n", &ns]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).lines().count(), 1, "one clear line: {}", stderr(&o));
}

#[test]
fn get_watch_prints_a_line_when_a_resource_changes() {
    use std::io::BufRead;
    let s = Server::start();
    let ns = s.namespace("watch");
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "img.yaml",
        &format!(
            "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: w\n  namespace: {ns}\nspec:\n  reference: {}\n",
            test_image()
        ),
    );
    let mut child = s
        .berth()
        .args(["get", "images", "-n", &ns, "-w", "-o", "name"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // A watchdog ends the watch (and so the read loop) should the line never come.
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        let _ = std::process::Command::new("kill").arg(&pid).status();
    });
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    // The apply may land before or after the watch's initial list: the resource shows up
    // either as a listed line (`image/w`) or as a watch event (`ADDED image/w`), as with
    // `kubectl get -w`.
    let mut seen = Vec::new();
    while let Some(Ok(l)) = lines.next() {
        seen.push(l.clone());
        if l == "ADDED image/w" || l == "image/w" {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|l| l == "ADDED image/w" || l == "image/w"),
        "the watch never showed image/w: {seen:?}"
    );
}

#[test]
fn delete_by_name_and_by_file_waits_until_the_docker_container_is_gone() {
    let s = Server::start();
    let ns = s.namespace("delete");
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.yaml", &container(&ns, "a", ""));
    write(dir.path(), "b.yaml", &container(&ns, "b", ""));
    s.ok(&["apply", "-f", dir.path().to_str().unwrap(), "--wait"]);
    let filter = format!("label=dev.berth.namespace={ns}");
    assert_eq!(docker(&["ps", "-aq", "--filter", &filter]).lines().count(), 2);
    let out = s.ok(&["delete", "container", "b", "-n", &ns, "--wait"]);
    assert_eq!(out.trim(), format!("container/b -n {ns} deleted"));
    let out = s.ok(&["delete", "-f", a.to_str().unwrap(), "--wait"]);
    assert_eq!(out.trim(), format!("container/a -n {ns} deleted"));
    assert_eq!(docker(&["ps", "-aq", "--filter", &filter]).trim(), "");
    let o = s.run(&["delete", "container", "a", "-n", &ns]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    s.ok(&["delete", "container", "a", "-n", &ns, "--ignore-not-found"]);
}

#[test]
fn describe_shows_conditions_and_recent_audit_events_and_restart_sets_the_annotation() {
    let s = Server::start();
    let ns = s.namespace("describe");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &container(&ns, "a", ""));
    s.ok(&["apply", "-f", dir.path().to_str().unwrap(), "--wait"]);
    let out = s.ok(&["describe", "container", "a", "-n", &ns]);
    assert!(out.contains("Conditions:") && out.contains("Ready"), "{out}");
    assert!(
        out.contains("Events:") && out.contains("user:admin") && out.contains("create"),
        "{out}"
    );
    let out = s.ok(&["restart", "a", "-n", &ns]);
    assert_eq!(out.trim(), "container/a restarted");
    let a = s.get_json("container", &ns, "a").unwrap();
    assert!(a["metadata"]["annotations"]["berth.dev/restartedAt"].is_string(), "{a}");
}

#[test]
fn login_keeps_tokens_private_and_logout_ends_the_session() {
    let s = Server::start();
    let cfg = s.config_home.path().join("berth/config.yaml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cfg).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let o = s.run_stdin(
        &["login", "--server", &s.url, "--username", "admin", "--password-stdin"],
        "wrong\n",
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).trim(), "error: login failed: wrong user name or password");
    s.ok(&["get", "images"]);
    s.ok(&["logout"]);
    let o = s.run(&["get", "images"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not logged in"), "{}", stderr(&o));
}

#[test]
fn an_expired_access_token_is_refreshed_with_the_stored_refresh_token() {
    let s = Server::start();
    let cfg = s.config_home.path().join("berth/config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    // Make the saved access token look expired and garbage: the client must refresh.
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("accessToken:") {
            out.push_str("    accessToken: not-a-valid-token\n");
        } else if line.trim_start().starts_with("expiresAt:") {
            out.push_str("    expiresAt: 2000-01-01T00:00:00Z\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(&cfg, out).unwrap();
    s.ok(&["get", "images"]);
    let after = std::fs::read_to_string(&cfg).unwrap();
    assert!(!after.contains("not-a-valid-token"), "the new pair is saved");
}

#[test]
fn users_tokens_audit_version_and_completion_work_for_an_admin() {
    let s = Server::start();
    let o = s.run_stdin(&["user", "create", "olive", "--role", "operator"], "olive-password-123\n");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(s.ok(&["user", "list"]).contains("olive"));
    s.ok(&["user", "set-role", "olive", "viewer"]);
    let token = s.ok(&["token", "create", "ci", "--role", "viewer"]);
    let token = token.trim();
    assert!(!token.is_empty());
    let o = s
        .berth()
        .args(["get", "images", "--server", &s.url])
        .env("BERTH_TOKEN", token)
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "BERTH_TOKEN works: {}", stderr(&o));
    assert!(s.ok(&["token", "list"]).contains("ci"));
    let audit = s.ok(&["audit", "--actor", "user:admin"]);
    assert!(audit.lines().next().unwrap().starts_with("SEQ"), "{audit}");
    assert!(audit.lines().count() > 1 && audit.contains("user:admin"), "{audit}");
    let json = s.ok(&["audit", "--actor", "user:admin", "--json", "--limit", "1"]);
    assert_eq!(json.lines().count(), 1, "{json}");
    let verify = s.ok(&["audit", "verify"]);
    assert!(verify.starts_with("audit log intact"), "{verify}");
    s.ok(&["user", "delete", "olive"]);
    let v = s.ok(&["version"]);
    assert!(v.starts_with(&format!("Client: berth {}", env!("CARGO_PKG_VERSION"))), "{v}");
    assert!(v.contains("Server:"), "{v}");
    for shell in ["bash", "zsh", "fish"] {
        let c = s.ok(&["completion", shell]);
        assert!(c.contains("apply"), "{shell}: {c}");
    }
}

#[test]
fn apply_reads_stdin_ci_variables_name_server_and_token_contexts_switch_and_wait_times_out() {
    let s = Server::start();
    let ns = s.namespace("stdin");
    // `apply -f -`: manifests on stdin.
    let o = s.run_stdin(&["apply", "-f", "-"], &container(&ns, "piped", ""));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("container/piped -n {ns} created"));

    // CI: BERTH_SERVER and BERTH_TOKEN, and no contexts file at all.
    let token = s.ok(&["token", "create", "ci-env", "--role", "viewer"]);
    let o = s
        .berth()
        .args(["get", "containers", "-n", &ns, "-o", "name"])
        .env("BERTH_SERVER", &s.url)
        .env("BERTH_TOKEN", token.trim())
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "container/piped\n");

    // Contexts: `login --as` saves a second context and makes it current; `--context` picks one.
    let o = s.run_stdin(
        &["login", "--server", &s.url, "--as", "second", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("(context second)"), "{}", stdout(&o));
    s.ok(&["logout", "--context", "second"]);
    let o = s.run(&["get", "containers", "-n", &ns, "--context", "second"]);
    assert_eq!(o.status.code(), Some(1), "the logged-out context has no token");
    assert_eq!(stderr(&o).lines().count(), 1, "one clear line: {}", stderr(&o));
    let o = s.run(&["get", "containers", "-n", &ns, "--context", "default", "-o", "name"]);
    assert_eq!(stdout(&o), "container/piped\n", "{}", stderr(&o));

    // `--wait` that runs out: exit 1 naming what is not Ready (its image cannot be pulled: the
    // registry on the discard port refuses the connection).
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "stuck.yaml",
        &container(&ns, "stuck", "").replace(&test_image(), "127.0.0.1:9/berth-missing:1"),
    );
    let o = s.run(&[
        "apply",
        "-f",
        f.to_str().unwrap(),
        "--wait",
        "--timeout",
        "3s",
        "--context",
        "default",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("container/stuck"), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("not ready after 3s") && err.contains("stuck"), "{err}");
}
