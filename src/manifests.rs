//! Reading manifests for `apply`, `diff`, `delete -f` and `sync`: files, directories (recursive,
//! `*.yaml`, `*.yml`, `*.json`) and stdin, parsed and validated locally so that problems show as
//! `file:line:col: path: message` before anything is sent.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use berth_schemas::{DynamicObject, FieldPath, ParseLimits, ResourceKey, parse_and_validate};

/// A manifest file that could not be read, or a directory without manifests.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path cannot be read.
    #[error("cannot read {path}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A directory holds no manifest files.
    #[error("no *.yaml, *.yml or *.json files under {0}")]
    Empty(String),
}

/// One manifest file's bytes and the name to show in messages.
#[derive(Debug, Clone)]
pub struct Input {
    /// The file's path as given (or `<stdin>`).
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// A located problem: `file:line:col: path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// The field path.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}: {}", self.file, self.line, self.column, self.path, self.message)
    }
}

/// Whether `path` names a manifest file by its extension.
pub fn is_manifest(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// Every manifest file under `dir`, sorted, recursing into subdirectories and skipping hidden
/// entries (`.git`).
///
/// # Errors
///
/// [`ReadError::Io`] when a directory cannot be listed.
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReadError> {
    let io = |source| ReadError::Io { path: dir.display().to_string(), source };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        paths.push(entry.path());
    }
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_manifest(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every input: `-` is stdin, a directory is searched recursively.
///
/// # Errors
///
/// [`ReadError`] when something cannot be read or a named directory is empty.
pub fn read_inputs(files: &[PathBuf]) -> Result<Vec<Input>, ReadError> {
    let mut inputs = Vec::new();
    for f in files {
        if f.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|source| ReadError::Io { path: "<stdin>".into(), source })?;
            inputs.push(Input { name: "<stdin>".into(), bytes });
            continue;
        }
        let io = |source| ReadError::Io { path: f.display().to_string(), source };
        let meta = std::fs::metadata(f).map_err(io)?;
        let paths = if meta.is_dir() {
            let mut found = Vec::new();
            walk(f, &mut found)?;
            if found.is_empty() {
                return Err(ReadError::Empty(f.display().to_string()));
            }
            found
        } else {
            vec![f.clone()]
        };
        for path in paths {
            let bytes = std::fs::read(&path)
                .map_err(|source| ReadError::Io { path: path.display().to_string(), source })?;
            inputs.push(Input { name: path.display().to_string(), bytes });
        }
    }
    Ok(inputs)
}

/// Parses and validates every input as one set: all resources, in order, or every problem
/// (including the same resource defined twice).
///
/// # Errors
///
/// The located problems, when there is any.
pub fn parse_set(inputs: &[Input]) -> Result<Vec<DynamicObject>, Vec<Problem>> {
    let limits = ParseLimits::default();
    let mut problems = Vec::new();
    let mut objects = Vec::new();
    let mut seen: HashMap<ResourceKey, (String, u64)> = HashMap::new();
    for input in inputs {
        match parse_and_validate(&input.bytes, &limits) {
            Ok(docs) => {
                for d in &docs {
                    let key = d.resource.key();
                    if let Some((file, line)) = seen.get(&key) {
                        let path = FieldPath::root().field("metadata").field("name");
                        let (line_here, column) = d.locate(&path);
                        problems.push(Problem {
                            file: input.name.clone(),
                            line: line_here,
                            column,
                            path: d.prefix.join(&path).to_string(),
                            message: format!("{key} is already defined at {file}:{line}"),
                        });
                    } else {
                        seen.insert(key, (input.name.clone(), d.line));
                        objects.push(d.to_dynamic());
                    }
                }
            }
            Err(errors) => problems.extend(errors.into_iter().map(|e| Problem {
                file: input.name.clone(),
                line: e.line,
                column: e.column,
                path: e.path.to_string(),
                message: e.message,
            })),
        }
    }
    if problems.is_empty() { Ok(objects) } else { Err(problems) }
}

/// `kind/name` as kubectl prints it (`container/web`), with the namespace when not default.
pub fn display_name(kind: &str, namespace: &str, name: &str) -> String {
    let k = kind.to_ascii_lowercase();
    if namespace == berth_schemas::meta::DEFAULT_NAMESPACE || namespace.is_empty() {
        format!("{k}/{name}")
    } else {
        format!("{k}/{name} -n {namespace}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, text: &str) -> Input {
        Input { name: name.into(), bytes: text.as_bytes().to_vec() }
    }

    #[test]
    fn a_resource_defined_in_two_files_is_a_located_problem() {
        let m = "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: a\nspec:\n  reference: x:1\n";
        let problems = parse_set(&[input("a.yaml", m), input("b.yaml", m)]).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].to_string().starts_with("b.yaml:4:9: metadata.name: "),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn a_broken_file_fails_the_whole_set() {
        let good = "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: a\nspec:\n  reference: x:1\n";
        let bad = "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: b\nspec:\n  nope: 1\n";
        let problems = parse_set(&[input("a.yaml", good), input("b.yaml", bad)]).unwrap_err();
        assert!(problems.iter().all(|p| p.file == "b.yaml"));
    }
}
