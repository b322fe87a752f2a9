//! `berth serve --sync-dir` applies through the service layer (issue 11, hole 9): admin-only
//! fields are refused unless the server runs with `--sync-allow-admin-fields` (then audited),
//! symbolic links never lead out of the synced tree and never leak what they point at, and
//! link loops are refused. Also hole 10: a name an operator once gave client-set finalizers
//! does not block the sync set.

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(90);

fn sync_status(s: &Server) -> serde_json::Value {
    let out = s.ok(&["sync", "status", "-o", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("sync status is JSON ({e}): {out}"))
}

fn image(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  reference: {}\n",
        test_image()
    )
}

/// A container bind-mounting a host directory: an admin-only field.
fn bind_mount(ns: &str, name: &str, host: &std::path::Path) -> String {
    container(
        ns,
        name,
        &format!("  mounts:\n  - type: bind\n    source: {}\n    target: /host\n", host.display()),
    )
}

#[test]
fn sync_refuses_admin_only_fields_without_the_flag_and_applies_them_audited_with_it() {
    let host = tempfile::tempdir().unwrap();
    let repo = tempfile::tempdir().unwrap();
    let ns = unique_ns("sync-admin");
    write(repo.path(), "web.yaml", &bind_mount(&ns, "web", host.path()));
    write(repo.path(), "img.yaml", &image(&ns, "img"));

    // Without the flag: the set is broken, nothing of it applied.
    let s = Server::start_with(&["--sync-dir", repo.path().to_str().unwrap()]);
    s.namespaces.lock().unwrap().push(ns.clone());
    let st = eventually(LIMIT, "the sync reports the admin-only field", || {
        let v = sync_status(&s);
        (v["state"] == "error").then_some(v)
    });
    let message = st["lastError"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("spec.mounts[0]") && message.contains("admin"), "{st}");
    assert!(message.contains("--sync-allow-admin-fields"), "{st}");
    assert!(s.get_json("container", &ns, "web").is_none(), "the bind mount was applied");
    assert!(s.get_json("image", &ns, "img").is_none(), "part of a refused set was applied");
    drop(s);

    // With the flag: applied, and the use of admin-only fields is an audit event.
    let s = Server::start_with(&[
        "--sync-dir",
        repo.path().to_str().unwrap(),
        "--sync-allow-admin-fields",
    ]);
    s.namespaces.lock().unwrap().push(ns.clone());
    eventually(LIMIT, "the sync applies the set", || {
        let v = sync_status(&s);
        (v["state"] == "ok").then_some(v)
    });
    assert!(s.get_json("container", &ns, "web").is_some());
    let audit = s.ok(&["audit", "--verb", "apply.admin-fields", "--json"]);
    assert!(
        audit.contains("spec.mounts[0]") && audit.contains("--sync-allow-admin-fields"),
        "{audit}"
    );
    assert!(audit.contains("\"sync\""), "the sync is the actor: {audit}");
}

#[test]
fn sync_refuses_a_link_out_of_the_tree_and_never_shows_what_it_points_at() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("credentials.yaml");
    std::fs::write(&secret, "password: TOPSECRET-8c1f\nkind: [ TOPSECRET-8c1f\n").unwrap();
    let repo = tempfile::tempdir().unwrap();
    let ns = unique_ns("sync-link");
    write(repo.path(), "a.yaml", &image(&ns, "a"));
    std::os::unix::fs::symlink(&secret, repo.path().join("leak.yaml")).unwrap();

    let s = Server::start_with(&["--sync-dir", repo.path().to_str().unwrap()]);
    s.namespaces.lock().unwrap().push(ns.clone());
    let st = eventually(LIMIT, "the sync reports the link", || {
        let v = sync_status(&s);
        (v["state"] == "error").then_some(v)
    });
    let text = st.to_string();
    assert!(text.contains("leak.yaml") && text.contains("outside"), "{st}");
    assert!(!text.contains("TOPSECRET"), "the target's content leaked: {st}");
    assert!(!text.contains("credentials.yaml"), "the target's path leaked: {st}");
    let audit = s.ok(&["audit", "--verb", "sync.error", "--json"]);
    assert!(audit.contains("leak.yaml"), "{audit}");
    assert!(!audit.contains("TOPSECRET"), "{audit}");
    assert!(s.get_json("image", &ns, "a").is_none(), "nothing of the set is applied");

    // A directory link looping back up the tree: refused (not walked 40 levels deep).
    std::fs::remove_file(repo.path().join("leak.yaml")).unwrap();
    std::fs::create_dir(repo.path().join("sub")).unwrap();
    std::os::unix::fs::symlink("..", repo.path().join("sub/loop")).unwrap();
    let st = eventually(LIMIT, "the sync reports the loop", || {
        let v = sync_status(&s);
        v["lastError"]["message"].as_str().is_some_and(|m| m.contains("loop")).then_some(v)
    });
    assert_eq!(st["state"], "error", "{st}");

    // Removed: the set applies.
    std::fs::remove_file(repo.path().join("sub/loop")).unwrap();
    eventually(LIMIT, "the sync applies once the link is gone", || {
        let v = sync_status(&s);
        (v["state"] == "ok").then_some(v)
    });
    assert!(s.get_json("image", &ns, "a").is_some());
}

#[test]
fn berth_apply_of_a_directory_refuses_a_link_out_of_it_too() {
    let s = Server::start();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.yaml");
    std::fs::write(&secret, "kind: [ TOPSECRET-77\n").unwrap();
    let repo = tempfile::tempdir().unwrap();
    let ns = s.namespace("apply-link");
    write(repo.path(), "a.yaml", &image(&ns, "a"));
    std::os::unix::fs::symlink(&secret, repo.path().join("leak.yaml")).unwrap();
    let o = s.run(&["apply", "-f", repo.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("leak.yaml") && !err.contains("TOPSECRET"), "{err}");
    assert!(s.get_json("image", &ns, "a").is_none());
}

#[test]
fn a_name_once_given_client_finalizers_is_deleted_and_does_not_block_the_sync_set() {
    let repo = tempfile::tempdir().unwrap();
    let ns = unique_ns("sync-fin");
    write(repo.path(), "keep.yaml", &image(&ns, "keep"));
    let s = Server::start_with(&["--sync-dir", repo.path().to_str().unwrap()]);
    s.namespaces.lock().unwrap().push(ns.clone());
    eventually(LIMIT, "the first set applies", || {
        let v = sync_status(&s);
        (v["state"] == "ok").then_some(v)
    });
    // Someone applies a resource by hand with a finalizer nobody will ever remove...
    let stuck = image(&ns, "stuck")
        .replace("  name: stuck\n", "  name: stuck\n  finalizers:\n  - example.com/never\n");
    let file = write(repo.path().parent().unwrap(), &format!("{ns}-stuck.yaml"), &stuck);
    s.ok(&["apply", "-f", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    // ...and deletes it: it goes (only the controller's own finalizer held it).
    s.ok(&["delete", "image", "stuck", "-n", &ns, "--wait"]);
    eventually(LIMIT, "the deleted image is gone", || {
        s.get_json("image", &ns, "stuck").is_none().then_some(())
    });
    // The sync set that names it applies.
    write(repo.path(), "stuck.yaml", &image(&ns, "stuck"));
    let st = eventually(LIMIT, "the set naming it applies", || {
        let v = sync_status(&s);
        (v["state"] == "ok" && v["resources"] == 2).then_some(v)
    });
    assert!(st["lastError"].is_null(), "{st}");
    let o = s.get_json("image", &ns, "stuck").expect("applied");
    let fin = o["metadata"]["finalizers"].to_string();
    assert!(!fin.contains("example.com/never"), "{o}");
}
