//! `berth config get-contexts|current-context|use-context|delete-context`, driven through the
//! real binary against two real `berth serve`s (and so the real Docker Engine).

mod common;

use common::*;

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("contexts file").permissions().mode() & 0o777
}

#[test]
fn contexts_list_switch_and_delete_like_kubectl_config() {
    let one = Server::start();
    let two = Server::start();
    let file = one.config_home.path().join("berth/config.yaml");
    // Two more logins into the first server's contexts file: "one" and "two".
    for (url, name) in [(&one.url, "one"), (&two.url, "two")] {
        let o = one.run_stdin(
            &["login", "--server", url, "--as", name, "--password-stdin"],
            &format!("{PASSWORD}\n"),
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    assert_eq!(one.ok(&["config", "current-context"]).trim(), "two");
    let table = one.ok(&["config", "get-contexts"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("CURRENT") && lines[0].contains("SERVER"), "{table}");
    assert_eq!(lines.len(), 4, "header, default, one, two: {table}");
    let row = |name: &str| {
        lines[1..]
            .iter()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("no {name} in {table}"))
            .to_string()
    };
    assert!(row("two").starts_with('*') && row("two").contains(&two.url), "{table}");
    assert!(!row("one").starts_with('*') && row("one").contains(&one.url), "{table}");
    assert_eq!(one.ok(&["config", "get-contexts", "--names"]), "default\none\ntwo\n");

    // Commands go to the current context's server, with its token.
    let instance = |s: &Server| -> String {
        let j: serde_json::Value =
            serde_json::from_str(&s.ok(&["system", "info", "-o", "json"])).unwrap();
        j["berth"]["instanceId"].as_str().unwrap().to_owned()
    };
    // `two`'s own contexts file has only its "default", for server two.
    let id_two = instance(&two);
    let j: serde_json::Value =
        serde_json::from_str(&one.ok(&["system", "info", "-o", "json", "--context", "default"]))
            .unwrap();
    let id_one = j["berth"]["instanceId"].as_str().unwrap().to_owned();
    assert_ne!(id_one, id_two);
    assert!(one.ok(&["system", "info"]).contains(&format!("Server: {}", two.url)));
    assert_eq!(instance(&one), id_two, "context two is current");
    let out = one.ok(&["config", "use-context", "one"]);
    assert!(out.contains("one"), "{out}");
    assert_eq!(one.ok(&["config", "current-context"]).trim(), "one");
    assert_eq!(instance(&one), id_one, "after use-context one, commands go to server one");
    assert_eq!(mode(&file), 0o600, "use-context keeps the file private");

    // An unknown context is a clear error, and changes nothing.
    let o = one.run(&["config", "use-context", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("no context named \"nope\"") && err.contains("one, two"), "{err}");
    assert_eq!(one.ok(&["config", "current-context"]).trim(), "one");
    let o = one.run(&["config", "delete-context", "nope"]);
    assert_eq!(o.status.code(), Some(1));

    // Deleting a context forgets it; deleting the current one leaves none current.
    one.ok(&["config", "delete-context", "two"]);
    assert_eq!(mode(&file), 0o600, "delete-context keeps the file private");
    assert!(!one.ok(&["config", "get-contexts"]).contains(&two.url));
    let o = one.run(&["config", "use-context", "two"]);
    assert_eq!(o.status.code(), Some(1), "a deleted context is unknown");
    let o = one.run(&["config", "delete-context", "one"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("none is current"), "{}", stderr(&o));
    let o = one.run(&["config", "current-context"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no current context"), "{}", stderr(&o));
    assert!(!std::fs::read_to_string(&file).unwrap().contains(&two.url));
}

#[test]
fn shell_completion_knows_the_config_and_system_commands() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["completion", "bash"])
        .output()
        .expect("berth runs");
    assert_eq!(o.status.code(), Some(0));
    let script = String::from_utf8_lossy(&o.stdout);
    for word in ["get-contexts", "current-context", "use-context", "delete-context", "prune"] {
        assert!(script.contains(word), "{word} is not completed");
    }
    assert!(script.contains("berth__subcmd__system__subcmd__df") && script.contains("--dry-run"));
}
