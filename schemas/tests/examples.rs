//! Every manifest under `examples/` must parse and validate: users start from them.

use std::path::{Path, PathBuf};

use berth_schemas::{ParseLimits, parse_and_validate};

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_manifest_is_valid() {
    let files = example_files();
    assert!(files.len() >= 5, "expected at least five examples, found {}", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).expect("example is readable");
        if let Err(errors) = parse_and_validate(&bytes, &ParseLimits::default()) {
            for e in errors {
                failures.push(format!("{}:{e}", f.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_examples_cover_what_the_manifest_reference_promises() {
    let mut stopped = false;
    let mut depends = false;
    let mut digest = false;
    let mut health_and_port = false;
    let mut multi = false;
    for f in example_files() {
        let bytes = std::fs::read(&f).expect("example is readable");
        let docs = parse_and_validate(&bytes, &ParseLimits::default()).expect("valid example");
        multi |= docs.iter().any(|d| d.doc > 0);
        for d in docs {
            match &d.resource {
                berth_schemas::Resource::Container(c) => {
                    stopped |= c.spec.desired_state == berth_schemas::DesiredState::Stopped;
                    depends |=
                        c.spec.depends_on.iter().any(|r| r.kind == berth_schemas::Kind::Container);
                    digest |= c.spec.image.contains("@sha256:");
                    health_and_port |= c.spec.health_check.is_some()
                        && c.spec.ports.iter().any(|p| p.host_port.is_some());
                }
                berth_schemas::Resource::Image(i) => {
                    digest |= i.spec.reference.contains("@sha256:")
                }
            }
        }
    }
    assert!(stopped && depends && digest && health_and_port && multi);
}

#[test]
fn the_complete_manifests_in_the_reference_are_valid() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/manifests.md"))
            .expect("docs/manifests.md is readable");
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        // Complete resources only: the envelope sketch has `spec: {}` on purpose.
        .filter(|b| b.contains("apiVersion: berth.dev/v1") && !b.contains("spec: {}"))
        .collect();
    assert!(blocks.len() >= 3, "found {} complete manifests", blocks.len());
    for b in blocks {
        if let Err(errors) = parse_and_validate(b.as_bytes(), &ParseLimits::default()) {
            panic!("{errors:#?}\nin:\n{b}");
        }
    }
}
