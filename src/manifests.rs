//! Reading manifests for `apply`, `diff`, `delete -f` and `sync`: files, directories (recursive,
//! `*.yaml`, `*.yml`, `*.json`) and stdin, parsed and validated locally so that problems show as
//! `file:line:col: path: message` before anything is sent.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use berth_schemas::{
    DynamicObject, FieldPath, ParseLimits, ParsedDocument, ResourceKey, parse_and_validate,
};

/// A manifest file that could not be read, or a directory without manifests.
///
/// No message carries anything read from a file: the sync shows these to viewers.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path cannot be read.
    #[error("cannot read {path}: {source}")]
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
    /// A symbolic link inside a directory points outside it; it is not followed.
    #[error(
        "{link} is a symbolic link to a path outside {root}; refused (links must stay inside the directory)"
    )]
    LinkOutside {
        /// The link, as found in the walk.
        link: String,
        /// The directory being read.
        root: String,
    },
    /// A symbolic link that cannot be resolved: it dangles, or it is a loop.
    #[error("{link} is a symbolic link that does not resolve (dangling, or a loop): {source}")]
    BadLink {
        /// The link, as found in the walk.
        link: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A link to a directory already being read (a loop through the tree).
    #[error("{link} is a symbolic link into a directory already read (a loop); refused")]
    LinkLoop {
        /// The link, as found in the walk.
        link: String,
    },
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

/// One manifest file found in a directory: the path to show (as walked, through any link)
/// and the resolved path to read, checked to be inside the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The path as walked.
    pub shown: PathBuf,
    /// The real path (links resolved), inside the directory.
    pub real: PathBuf,
}

/// Walks a directory tree without leaving it: symbolic links are followed only when they
/// resolve inside the root, and a directory is read once (a link back into the tree is a loop).
struct Walk {
    /// The root, resolved.
    root: PathBuf,
    /// The root as given, for messages.
    shown_root: String,
    /// Directories already read (resolved).
    seen: std::collections::HashSet<PathBuf>,
}

impl Walk {
    fn dir(&mut self, shown: &Path, real: &Path, out: &mut Vec<Found>) -> Result<(), ReadError> {
        let io = |source| ReadError::Io { path: shown.display().to_string(), source };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(real).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            names.push(name);
        }
        names.sort();
        for name in names {
            let shown = shown.join(&name);
            let path = real.join(&name);
            let io = |source| ReadError::Io { path: shown.display().to_string(), source };
            let meta = std::fs::symlink_metadata(&path).map_err(io)?;
            let (target, is_dir) = if meta.file_type().is_symlink() {
                let link = || shown.display().to_string();
                let target = std::fs::canonicalize(&path)
                    .map_err(|source| ReadError::BadLink { link: link(), source })?;
                if !target.starts_with(&self.root) {
                    return Err(ReadError::LinkOutside {
                        link: link(),
                        root: self.shown_root.clone(),
                    });
                }
                let is_dir = std::fs::metadata(&target)
                    .map_err(|source| ReadError::BadLink { link: link(), source })?
                    .is_dir();
                if is_dir && self.seen.contains(&target) {
                    return Err(ReadError::LinkLoop { link: link() });
                }
                (target, is_dir)
            } else {
                (path, meta.is_dir())
            };
            if is_dir {
                if self.seen.insert(target.clone()) {
                    self.dir(&shown, &target, out)?;
                }
            } else if is_manifest(&shown) {
                out.push(Found { shown, real: target });
            }
        }
        Ok(())
    }
}

/// Every manifest file under `dir`, sorted, recursing into subdirectories and skipping hidden
/// entries (`.git`). A symbolic link is followed only when it resolves inside `dir`; one that
/// points outside, dangles or loops is refused, naming the link and nothing of its target.
///
/// # Errors
///
/// [`ReadError::Io`] when a directory cannot be listed; [`ReadError::LinkOutside`],
/// [`ReadError::BadLink`], [`ReadError::LinkLoop`] for links that leave the tree or loop.
pub fn walk(dir: &Path) -> Result<Vec<Found>, ReadError> {
    let io = |source| ReadError::Io { path: dir.display().to_string(), source };
    let root = std::fs::canonicalize(dir).map_err(io)?;
    let mut w = Walk {
        root: root.clone(),
        shown_root: dir.display().to_string(),
        seen: std::collections::HashSet::from([root.clone()]),
    };
    let mut out = Vec::new();
    w.dir(dir, &root, &mut out)?;
    Ok(out)
}

/// Reads every input: `-` is stdin, a directory is searched recursively ([`walk`]: links stay
/// inside it), a named file is read as named.
///
/// # Errors
///
/// [`ReadError`] when something cannot be read, a link leaves its directory or loops, or a
/// named directory is empty.
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
        let found = if meta.is_dir() {
            let found = walk(f)?;
            if found.is_empty() {
                return Err(ReadError::Empty(f.display().to_string()));
            }
            found
        } else {
            vec![Found { shown: f.clone(), real: f.clone() }]
        };
        for Found { shown, real } in found {
            let bytes = std::fs::read(&real)
                .map_err(|source| ReadError::Io { path: shown.display().to_string(), source })?;
            inputs.push(Input { name: shown.display().to_string(), bytes });
        }
    }
    Ok(inputs)
}

/// Parses and validates every input as one set: every document with the file it came from,
/// in order, or every problem (including the same resource defined twice).
///
/// # Errors
///
/// The located problems, when there is any.
pub fn parse_documents(inputs: &[Input]) -> Result<Vec<(String, ParsedDocument)>, Vec<Problem>> {
    let limits = ParseLimits::default();
    let mut problems = Vec::new();
    let mut documents = Vec::new();
    let mut seen: HashMap<ResourceKey, (String, u64)> = HashMap::new();
    for input in inputs {
        match parse_and_validate(&input.bytes, &limits) {
            Ok(docs) => {
                for d in docs {
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
                        documents.push((input.name.clone(), d));
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
    if problems.is_empty() { Ok(documents) } else { Err(problems) }
}

/// As [`parse_documents`], the resources alone.
///
/// # Errors
///
/// The located problems, when there is any.
pub fn parse_set(inputs: &[Input]) -> Result<Vec<DynamicObject>, Vec<Problem>> {
    Ok(parse_documents(inputs)?.iter().map(|(_, d)| d.to_dynamic()).collect())
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

    const IMAGE: &str =
        "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: a\nspec:\n  reference: x:1\n";

    #[cfg(unix)]
    #[test]
    fn a_link_out_of_the_directory_is_refused_naming_the_link_and_nothing_of_the_target() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.yaml");
        std::fs::write(&secret, "kind: [ S3CRET-VALUE").unwrap();
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("a.yaml"), IMAGE).unwrap();
        std::os::unix::fs::symlink(&secret, repo.path().join("b.yaml")).unwrap();
        let err = read_inputs(&[repo.path().to_owned()]).unwrap_err();
        let text = format!("{err:#} {err:?}");
        assert!(matches!(err, ReadError::LinkOutside { .. }), "{text}");
        assert!(text.contains("b.yaml"), "{text}");
        assert!(!text.contains("S3CRET") && !text.contains("secret.yaml"), "{text}");
        // A directory link out of the tree too.
        std::fs::remove_file(repo.path().join("b.yaml")).unwrap();
        std::os::unix::fs::symlink(outside.path(), repo.path().join("sub")).unwrap();
        let err = read_inputs(&[repo.path().to_owned()]).unwrap_err();
        assert!(matches!(err, ReadError::LinkOutside { .. }), "{err:?}");
    }

    #[cfg(unix)]
    #[test]
    fn links_inside_the_directory_are_followed_and_loops_are_refused() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir(repo.path().join("real")).unwrap();
        std::fs::write(repo.path().join("real/a.yaml"), IMAGE).unwrap();
        std::os::unix::fs::symlink("real/a.yaml", repo.path().join("link.yaml")).unwrap();
        let inputs = read_inputs(&[repo.path().to_owned()]).unwrap();
        let names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].ends_with("link.yaml"), "{names:?}");
        // A directory link back up the tree: refused at once, not walked 40 levels deep.
        std::os::unix::fs::symlink("..", repo.path().join("real/up")).unwrap();
        let err = read_inputs(&[repo.path().to_owned()]).unwrap_err();
        assert!(matches!(err, ReadError::LinkLoop { .. }), "{err:?}");
        // A link to itself does not resolve.
        std::fs::remove_file(repo.path().join("real/up")).unwrap();
        std::os::unix::fs::symlink("self.yaml", repo.path().join("self.yaml")).unwrap();
        let err = read_inputs(&[repo.path().to_owned()]).unwrap_err();
        assert!(matches!(err, ReadError::BadLink { .. }), "{err:?}");
    }
}
