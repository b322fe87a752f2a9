//! `berth validate -f FILE|DIR|-`: checks manifests offline and prints each problem as
//! `file:line:col: path: message`. Exit status 0 when every resource is valid, 1 when any is
//! not, 2 on usage errors (a missing file, a directory without manifests).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use berth_schemas::{FieldPath, ParseLimits, ResourceKey, parse_and_validate};

use super::{EXIT_FAILURE, EXIT_OK, UsageError};
use crate::manifests::Input;

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

/// Reads the inputs with the same rules as `apply` and the sync (no symlink out of a
/// directory, no loop).
fn read_inputs(files: &[PathBuf]) -> Result<Vec<Input>, UsageError> {
    crate::manifests::read_inputs(files).map_err(|e| UsageError(format!("{e:#}")))
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
