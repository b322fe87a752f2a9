//! The walk-through of `docs/gitops.md` ("from an empty machine to a synced repository"), step
//! by step, against the real binary and the real Docker Engine. The doc and this test are kept
//! in step: change one, change the other. Substitutions: the test image instead of `nginx`, no
//! host port, its own namespace, temporary directories, and the harness's `berth login`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(90);

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args(["-c", "user.name=berth-test", "-c", "user.email=test@berth.invalid"])
        .args(["-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git must be installed");
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// The doc's manifest, with the test image and a namespace; `say` is what the container prints.
fn manifest(ns: &str, name: &str, say: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{app: {name}}}\nspec:\n  image: {}\n  command: [\"sh\", \"-c\", \"echo {say}; sleep 3600\"]\n",
        test_image()
    )
}

fn ready(s: &Server, ns: &str, name: &str) -> bool {
    s.get_json("container", ns, name).is_some_and(|v| is_ready(&v))
}

fn sync_status(s: &Server) -> serde_json::Value {
    serde_json::from_str(&s.ok(&["sync", "status", "-o", "json"])).expect("JSON")
}

fn docker_containers(ns: &str, name: &str) -> usize {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=dev.berth.namespace={ns}"),
        "--filter",
        &format!("label=dev.berth.name={name}"),
    ])
    .lines()
    .count()
}

#[test]
fn the_gitops_walkthrough_in_the_docs_works_end_to_end() {
    let ns = unique_ns("walk");
    // 1. Make a repository of manifests, validate it offline, commit.
    let repo = tempfile::tempdir().unwrap();
    let infra = repo.path();
    git(infra, &["init", "-q"]);
    write(infra, "web/web.yaml", &manifest(&ns, "web", "web-v1"));
    write(infra, "worker/worker.yaml", &manifest(&ns, "worker", "worker-v1"));
    let bin = env!("CARGO_BIN_EXE_berth");
    let v = Command::new(bin).args(["validate", "-f", "."]).current_dir(infra).output().unwrap();
    assert_eq!(v.status.code(), Some(0), "berth validate: {}", stderr(&v));
    git(infra, &["add", "."]);
    git(infra, &["commit", "-qm", "web and worker"]);
    let first = git(infra, &["rev-parse", "HEAD"]);

    // 2. Start the server with --sync-dir, and 3. log in (the harness runs `berth login`).
    let s = Server::start_with(&["--sync-dir", infra.to_str().unwrap()]);
    s.namespaces.lock().unwrap().push(ns.clone());
    assert!(s.ok(&["version"]).contains("Server: berth"), "berth version shows the server");

    // 4. The sync applied the commit; the containers run.
    let st = eventually(LIMIT, "sync status: the first commit applied", || {
        let v = sync_status(&s);
        (v["state"] == "ok" && v["commit"] == first.as_str()).then_some(v)
    });
    assert_eq!(st["counts"]["Container"]["created"], 2, "{st}");
    eventually(LIMIT, "web and worker are Ready", || {
        (ready(&s, &ns, "web") && ready(&s, &ns, "worker")).then_some(())
    });
    let table = s.ok(&["get", "containers", "-n", &ns, "-l", "berth.dev/sync-source"]);
    assert!(table.contains("web") && table.contains("worker"), "{table}");

    // 5. Change a file and commit: the container is replaced with the new spec.
    write(infra, "web/web.yaml", &manifest(&ns, "web", "web-v2"));
    git(infra, &["commit", "-qam", "web v2"]);
    let second = git(infra, &["rev-parse", "HEAD"]);
    eventually(LIMIT, "web runs the new spec", || {
        let o = s.run(&["logs", "web", "-n", &ns]);
        (ready(&s, &ns, "web") && stdout(&o).contains("web-v2")).then_some(())
    });
    eventually(LIMIT, "sync status: the second commit", || {
        let v = sync_status(&s);
        (v["state"] == "ok" && v["commit"] == second.as_str()).then_some(())
    });

    // 6. Add a file and commit: its container is created.
    write(infra, "cache/cache.yaml", &manifest(&ns, "cache", "cache-v1"));
    git(infra, &["add", "cache"]);
    git(infra, &["commit", "-qm", "cache"]);
    eventually(LIMIT, "cache is Ready", || ready(&s, &ns, "cache").then_some(()));

    // 7. Remove a file and commit: its resource and its Docker container are pruned.
    git(infra, &["rm", "-q", "worker/worker.yaml"]);
    git(infra, &["commit", "-qm", "no worker"]);
    eventually(LIMIT, "worker is pruned", || {
        (s.get_json("container", &ns, "worker").is_none() && docker_containers(&ns, "worker") == 0)
            .then_some(())
    });
    assert!(ready(&s, &ns, "web"), "web stays");
    let st = sync_status(&s);
    assert_eq!(st["counts"]["Container"]["pruned"], 1, "{st}");

    // 8. A typo changes nothing: the status names the file; the last good state stays.
    std::fs::write(
        infra.join("web/web.yaml"),
        manifest(&ns, "web", "web-v3").replace("image:", "imgae:"),
    )
    .unwrap();
    let st = eventually(LIMIT, "sync status: the typo", || {
        let v = sync_status(&s);
        (v["state"] == "error").then_some(v)
    });
    assert!(st["lastError"]["file"].as_str().unwrap_or("").ends_with("web/web.yaml"), "{st}");
    assert!(stdout(&s.run(&["logs", "web", "-n", &ns])).contains("web-v2"));
    git(infra, &["checkout", "--", "web/web.yaml"]);
    eventually(LIMIT, "sync status: ok again", || (sync_status(&s)["state"] == "ok").then_some(()));

    // 9. The audit log shows what the sync did.
    let audit = s.ok(&["audit", "--actor", "sync", "--json"]);
    assert!(audit.contains("sync.apply") && audit.contains(&second), "{audit}");
}
