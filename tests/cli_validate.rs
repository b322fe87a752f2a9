//! `berth validate` and `berth schema`, driven through the real binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn berth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn run(args: &[&str]) -> Output {
    berth().args(args).output().expect("berth runs")
}

fn run_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = berth()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth runs");
    child.stdin.take().expect("stdin is piped").write_all(stdin).expect("write stdin");
    child.wait_with_output().expect("berth finishes")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const VALID: &str = "apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  image: nginx:1.27\n";

#[test]
fn validate_accepts_every_example_and_exits_zero() {
    let o = run(&["validate", "-f", "examples/"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("are valid"), "{}", stdout(&o));
    assert_eq!(stderr(&o), "");
}

#[test]
fn validate_prints_file_line_column_path_and_message_for_each_bad_manifest() {
    let o = run(&["validate", "-f", "schemas/tests/bad"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for line in [
        "schemas/tests/bad/unknown-field.yaml:7:3: spec.imagePolicy: unknown field `imagePolicy`",
        "schemas/tests/bad/wrong-type.yaml:9:22: spec.ports[1].containerPort: invalid type",
        "schemas/tests/bad/duplicate-key.yaml:10:7: .: duplicate key \"hostPort\"",
        "schemas/tests/bad/wrong-api-version.yaml:1:13: apiVersion: unsupported apiVersion",
        "schemas/tests/bad/wrong-kind.yaml:2:7: kind: unknown kind \"Pod\"",
        "schemas/tests/bad/alias-bomb.yaml:11:12: .: aliases expand to more than",
        "schemas/tests/bad/non-utf8.yaml:6:12: .: the manifest is not valid UTF-8",
        "schemas/tests/bad/second-document-invalid.yaml:17:15: spec.mounts[0].target:",
    ] {
        assert!(err.lines().any(|l| l.starts_with(line)), "missing {line:?} in:\n{err}");
    }
    let files = std::fs::read_dir("schemas/tests/bad").map(|d| d.count()).unwrap_or_default();
    let located = err.lines().filter(|l| l.starts_with("schemas/tests/bad/")).count();
    assert!(located >= files, "{located} located errors for {files} files:\n{err}");
}

#[test]
fn validate_reads_stdin_when_given_a_dash() {
    let o = run_with_stdin(&["validate", "-f", "-"], VALID.as_bytes());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o =
        run_with_stdin(&["validate", "-f", "-"], VALID.replace("nginx:1.27", "Nginx").as_bytes());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("<stdin>:6:10: spec.image: "), "{}", stderr(&o));
}

#[test]
fn validate_exits_two_on_usage_errors() {
    let missing = run(&["validate", "-f", "no/such/file.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no/such/file.yaml"), "{}", stderr(&missing));

    let no_flag = run(&["validate"]);
    assert_eq!(no_flag.status.code(), Some(2));

    let bad_flag = run(&["validate", "-f", "examples", "--frobnicate"]);
    assert_eq!(bad_flag.status.code(), Some(2));

    let empty = tempfile::tempdir().expect("temp dir");
    std::fs::write(empty.path().join("notes.txt"), "not a manifest").expect("write");
    let o = run(&["validate", "-f", path_str(empty.path())]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no *.yaml"), "{}", stderr(&o));
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

#[test]
fn validate_walks_directories_recursively_and_only_reads_manifest_extensions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nested: PathBuf = dir.path().join("a/b");
    std::fs::create_dir_all(&nested).expect("mkdir");
    std::fs::write(nested.join("web.yml"), VALID).expect("write");
    std::fs::write(dir.path().join("README.md"), "# not: [a manifest").expect("write");
    let o = run(&["validate", "-f", path_str(dir.path())]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("1 resource(s) in 1 file(s)"), "{}", stdout(&o));
}

#[test]
fn validate_refuses_the_same_resource_in_two_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("a.yaml"), VALID).expect("write");
    std::fs::write(dir.path().join("b.yaml"), format!("# copy\n{VALID}")).expect("write");
    let o = run(&["validate", "-f", path_str(dir.path())]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("b.yaml:5:9: metadata.name: Container/default/web is already defined at"),
        "{err}"
    );
}

#[test]
fn validate_honours_a_lower_size_limit() {
    let o = run(&["validate", "-f", "examples/web-server.yaml", "--max-bytes", "100"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("more than the limit of 100 bytes"), "{}", stderr(&o));
}

#[test]
fn schema_prints_the_combined_schema_and_one_per_kind() {
    let o = run(&["schema"]);
    assert_eq!(o.status.code(), Some(0));
    let combined: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(combined["title"], "berth resource");
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("schemas/json/berth.json").expect("committed schema"),
    )
    .expect("JSON");
    assert_eq!(combined, committed);

    let o = run(&["schema", "containers"]);
    assert_eq!(o.status.code(), Some(0));
    let container: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(container["properties"]["kind"]["const"], "Container");
}

#[test]
fn schema_of_an_unknown_kind_is_a_usage_error() {
    let o = run(&["schema", "pod"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown kind \"pod\""), "{}", stderr(&o));
}
