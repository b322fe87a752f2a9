//! `berth schema [KIND]`: prints the JSON Schema of a kind's manifests, or the combined schema.

use std::io::Write;
use std::process::ExitCode;

use berth_schemas::Kind;
use berth_schemas::json_schema::{combined_schema, kind_schema};

use super::{EXIT_OK, UsageError};

/// Arguments of `berth schema`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kind (`Container`, `containers`, `image`, ...). Without it, the schema that accepts
    /// any berth resource.
    pub kind: Option<String>,
}

/// Prints the schema to stdout.
///
/// # Errors
///
/// [`UsageError`] for an unknown kind; an I/O error when stdout is closed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let schema = match args.kind.as_deref() {
        None => combined_schema(),
        Some(k) => match Kind::parse_loose(k) {
            Some(kind) => kind_schema(kind),
            None => {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(UsageError(format!(
                    "unknown kind {k:?} (expected one of: {})",
                    known.join(", ")
                ))
                .into());
            }
        },
    };
    let mut text = serde_json::to_string_pretty(&schema)?;
    text.push('\n');
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        // `berth schema | head` closes the pipe early; that is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::from(EXIT_OK)),
    }
}
