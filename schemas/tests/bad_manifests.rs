//! The corpus of bad manifests under `tests/bad/`: each must be refused with a located error
//! (document, path, line, column) and none may panic. Inputs too large to commit are generated.

use berth_schemas::{ManifestError, ParseLimits, parse_and_validate};

struct Case {
    file: &'static str,
    doc: usize,
    path: &'static str,
    line: u64,
    column: u64,
    message: &'static str,
}

const CASES: &[Case] = &[
    Case {
        file: "carriage-return-lines.yaml",
        doc: 0,
        path: ".",
        line: 8,
        column: 3,
        message: "duplicate key \"image\"",
    },
    Case {
        file: "alias-bomb.yaml",
        doc: 0,
        path: ".",
        line: 11,
        column: 12,
        message: "billion laughs",
    },
    Case {
        file: "deep-nesting.yaml",
        doc: 0,
        path: ".",
        line: 6,
        column: 72,
        message: "nesting is deeper than the limit of 64 levels",
    },
    Case {
        file: "duplicate-key.yaml",
        doc: 0,
        path: ".",
        line: 10,
        column: 7,
        message: "duplicate key \"hostPort\"",
    },
    Case {
        file: "empty-document.yaml",
        doc: 0,
        path: ".",
        line: 1,
        column: 1,
        message: "holds no resources",
    },
    Case {
        file: "non-utf8.yaml",
        doc: 0,
        path: ".",
        line: 6,
        column: 12,
        message: "not valid UTF-8",
    },
    Case {
        file: "not-a-mapping.yaml",
        doc: 0,
        path: "[0]",
        line: 1,
        column: 3,
        message: "must be a mapping",
    },
    Case {
        file: "syntax-error.yaml",
        doc: 0,
        path: ".",
        line: 6,
        column: 10,
        message: "unclosed quote",
    },
    Case {
        file: "unknown-field.yaml",
        doc: 0,
        path: "spec.imagePolicy",
        line: 7,
        column: 3,
        message: "unknown field `imagePolicy` (did you mean `imagePullPolicy`?)",
    },
    Case {
        file: "wrong-api-version.yaml",
        doc: 0,
        path: "apiVersion",
        line: 1,
        column: 13,
        message: "unsupported apiVersion \"v1\"",
    },
    Case {
        file: "wrong-kind.yaml",
        doc: 0,
        path: "kind",
        line: 2,
        column: 7,
        message: "unknown kind \"Pod\"",
    },
    Case {
        file: "wrong-type.yaml",
        doc: 0,
        path: "spec.ports[1].containerPort",
        line: 9,
        column: 22,
        message: "invalid type: string \"http\", expected u16",
    },
    Case {
        file: "wrong-type-metadata.yaml",
        doc: 0,
        path: "metadata.labels",
        line: 5,
        column: 11,
        message: "expected a map",
    },
    Case {
        file: "second-document-invalid.yaml",
        doc: 1,
        path: "spec.mounts[0].target",
        line: 17,
        column: 15,
        message: "must be an absolute path",
    },
];

fn corpus_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad")
}

fn first_error(input: &[u8], limits: &ParseLimits) -> ManifestError {
    match parse_and_validate(input, limits) {
        Ok(docs) => panic!("accepted {} resources from a bad manifest", docs.len()),
        Err(errors) => errors.into_iter().next().expect("an Err carries at least one error"),
    }
}

#[test]
fn every_bad_manifest_is_refused_with_a_located_error() {
    let mut failures = Vec::new();
    for case in CASES {
        let input = std::fs::read(corpus_dir().join(case.file)).expect("corpus file is readable");
        let e = first_error(&input, &ParseLimits::default());
        let got = (e.doc, e.path.to_string(), e.line, e.column);
        let want = (case.doc, case.path.to_owned(), case.line, case.column);
        if got != want || !e.message.contains(case.message) {
            failures.push(format!(
                "{}: got {got:?} {:?}, want {want:?} {:?}",
                case.file, e.message, case.message
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_file_in_the_corpus_has_a_case() {
    let mut files: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("tests/bad exists")
        .map(|e| e.expect("directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut cased: Vec<String> = CASES.iter().map(|c| c.file.to_owned()).collect();
    cased.sort();
    assert_eq!(files, cased);
}

#[test]
fn a_ten_mebibyte_document_is_refused_before_parsing() {
    let mut input = b"apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: big\n  annotations:\n    blob: \"".to_vec();
    input.resize(10 * 1024 * 1024, b'x');
    input.extend_from_slice(b"\"\nspec:\n  image: nginx\n");
    let e = first_error(&input, &ParseLimits::default());
    assert_eq!((e.doc, e.path.to_string(), e.line, e.column), (0, ".".into(), 1, 1));
    assert!(e.message.contains("more than the limit of 1048576 bytes"), "{}", e.message);
}

#[test]
fn the_caller_can_raise_the_size_limit() {
    let mut input = b"apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: big\n  annotations:\n    blob: \"".to_vec();
    input.resize(2 * 1024 * 1024, b'x');
    input.extend_from_slice(b"\"\nspec:\n  image: nginx\n");
    let limits = ParseLimits { max_bytes: 4 * 1024 * 1024, ..ParseLimits::default() };
    let docs = parse_and_validate(&input, &limits).expect("a 2 MiB manifest fits a 4 MiB limit");
    assert_eq!(docs.len(), 1);
}

#[test]
fn more_documents_than_the_limit_are_refused_at_the_first_one_too_many() {
    let doc = "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: img-NUM\nspec:\n  reference: busybox\n";
    let input: String =
        (0..5).map(|i| format!("---\n{}", doc.replace("NUM", &i.to_string()))).collect();
    let limits = ParseLimits { max_documents: 4, ..ParseLimits::default() };
    let e = first_error(input.as_bytes(), &limits);
    assert_eq!((e.doc, e.line), (4, 29), "{e:?}");
    assert!(e.message.contains("more than 4 documents"), "{}", e.message);
}

#[test]
fn too_many_aliases_are_refused() {
    let mut input = String::from(
        "apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: a\nspec:\n  image: nginx\n  args:\n    - &x hello\n",
    );
    for _ in 0..200 {
        input.push_str("    - *x\n");
    }
    let e = first_error(input.as_bytes(), &ParseLimits::default());
    assert!(e.message.contains("aliases"), "{}", e.message);
    assert!(e.line > 8, "{e:?}");
}

#[test]
fn a_few_aliases_are_fine() {
    let input = "apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: a\n  labels: &l {app: web}\nspec:\n  image: nginx\n  labels: *l\n";
    let docs = parse_and_validate(input.as_bytes(), &ParseLimits::default()).expect("valid");
    assert_eq!(docs.len(), 1);
}
