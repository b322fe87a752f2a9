//! `berth validate -f FILE|DIR|-`: checks manifests offline and prints each problem as
//! `file:line:col: path: message`. Exit status 0 when every resource is valid, 1 when any is
//! not, 2 on usage errors (a missing file, a directory without manifests).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berth_schemas::{FieldPath, ParseLimits, ResourceKey, parse_and_validate};

use super::{EXIT_FAILURE, EXIT_OK, UsageError};

/// Arguments of `berth validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A manifest file, a directory (searched recursively for *.yaml, *.yml and *.json), or
    /// `-` for stdin. Repeat to check several.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-", required = true)]
    pub files: Vec<PathBuf>,
    /// The largest manifest accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = ParseLimits::default().max_bytes)]
    pub max_bytes: usize,
}

/// A manifest to check: its name for messages and its bytes.
struct Input {
    name: String,
    bytes: Vec<u8>,
}

fn is_manifest(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// Every manifest file under `dir`, sorted, recursing into subdirectories.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), UsageError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| UsageError(format!("cannot read directory {}: {e}", dir.display())))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| UsageError(format!("cannot read directory {}: {e}", dir.display())))?;
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

fn read_inputs(files: &[PathBuf]) -> Result<Vec<Input>, UsageError> {
    let mut inputs = Vec::new();
    for f in files {
        if f.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| UsageError(format!("cannot read stdin: {e}")))?;
            inputs.push(Input { name: "<stdin>".into(), bytes });
            continue;
        }
        let meta = std::fs::metadata(f)
            .map_err(|e| UsageError(format!("cannot read {}: {e}", f.display())))?;
        let paths = if meta.is_dir() {
            let mut found = Vec::new();
            walk(f, &mut found)?;
            if found.is_empty() {
                return Err(UsageError(format!(
                    "no *.yaml, *.yml or *.json files under {}",
                    f.display()
                )));
            }
            found
        } else {
            vec![f.clone()]
        };
        for path in paths {
            let bytes = std::fs::read(&path)
                .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
            inputs.push(Input { name: path.display().to_string(), bytes });
        }
    }
    Ok(inputs)
}

/// Validates every manifest and prints the problems to stderr.
///
/// # Errors
///
/// [`UsageError`] when an input cannot be read.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let inputs = read_inputs(&args.files)?;
    let limits = ParseLimits { max_bytes: args.max_bytes, ..ParseLimits::default() };
    let mut problems = 0usize;
    let mut resources = 0usize;
    // Applying several files is one request: the same resource twice is a conflict.
    let mut seen: HashMap<ResourceKey, (String, u64)> = HashMap::new();
    for input in &inputs {
        match parse_and_validate(&input.bytes, &limits) {
            Ok(docs) => {
                for d in &docs {
                    resources += 1;
                    let key = d.resource.key();
                    if let Some((file, line)) = seen.get(&key) {
                        let path = FieldPath::root().field("metadata").field("name");
                        let (l, c) = d.locate(&path);
                        eprintln!(
                            "{}:{l}:{c}: {}: {key} is already defined at {file}:{line}",
                            input.name,
                            d.prefix.join(&path)
                        );
                        problems += 1;
                    } else {
                        seen.insert(key, (input.name.clone(), d.line));
                    }
                }
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{}:{}:{}: {}: {}", input.name, e.line, e.column, e.path, e.message);
                }
                problems += errors.len();
            }
        }
    }
    if problems == 0 {
        println!("{resources} resource(s) in {} file(s) are valid", inputs.len());
        Ok(ExitCode::from(EXIT_OK))
    } else {
        eprintln!("{problems} problem(s) found");
        Ok(ExitCode::from(EXIT_FAILURE))
    }
}
