//! `berth diff -f FILE|DIR|-`: shows, as a unified diff, how the server's resources differ
//! from the manifests (labels, annotations and spec), coloured on a terminal.
//!
//! Exit status, as `kubectl diff`: 0 when there is no difference, 1 when there is, 2 or more on
//! error (2 for usage errors and invalid manifests, 3 when the server cannot be asked).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use berth_schemas::DynamicObject;
use serde_json::{Value, json};

use crate::client::{Client, ClientOpts, runtime};
use crate::manifests::{parse_set, read_inputs};

use super::get::to_yaml;

/// Exit status when the server could not be asked.
pub const EXIT_DIFF_ERROR: u8 = 3;

/// Arguments of `berth diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A manifest file, a directory (recursive), or `-` for stdin. Repeat for several.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-", required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// The part of a resource a user writes, as YAML: what diff compares.
///
/// # Errors
///
/// When YAML rendering fails (not for API objects).
pub fn user_yaml(o: &DynamicObject) -> anyhow::Result<String> {
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), json!(o.metadata.name));
    meta.insert("namespace".into(), json!(o.metadata.namespace));
    if !o.metadata.labels.is_empty() {
        meta.insert("labels".into(), json!(o.metadata.labels));
    }
    if !o.metadata.annotations.is_empty() {
        meta.insert("annotations".into(), json!(o.metadata.annotations));
    }
    let v = json!({
        "apiVersion": o.api_version, "kind": o.kind, "metadata": Value::Object(meta), "spec": o.spec,
    });
    to_yaml(&v)
}

/// A unified diff of `old` and `new` (empty when equal), coloured when asked.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str, colour: bool) -> String {
    if old == new {
        return String::new();
    }
    let d = similar::TextDiff::from_lines(old, new);
    let text = d.unified_diff().context_radius(3).header(old_name, new_name).to_string();
    if !colour {
        return text;
    }
    text.lines()
        .map(|l| {
            if l.starts_with("+++") || l.starts_with("---") {
                format!("\x1b[1m{l}\x1b[0m\n")
            } else if l.starts_with('+') {
                format!("\x1b[32m{l}\x1b[0m\n")
            } else if l.starts_with('-') {
                format!("\x1b[31m{l}\x1b[0m\n")
            } else if l.starts_with("@@") {
                format!("\x1b[36m{l}\x1b[0m\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// Compares and prints.
///
/// # Errors
///
/// Never: every failure is turned into its exit status here, as `kubectl diff` does.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let inputs = match read_inputs(&args.files) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let objects = match parse_set(&inputs) {
        Ok(o) => o,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let client = match Client::connect(&args.client) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_DIFF_ERROR));
        }
    };
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let result: anyhow::Result<bool> = runtime()?.block_on(async {
        let mut differs = false;
        for o in &objects {
            let live = client.get_resource(o.kind, &o.metadata.namespace, &o.metadata.name).await?;
            let old = match &live {
                Some(l) => user_yaml(l)?,
                None => String::new(),
            };
            let new = user_yaml(o)?;
            let name = format!(
                "{}/{}/{}",
                o.kind.as_str().to_ascii_lowercase(),
                o.metadata.namespace,
                o.metadata.name
            );
            let text = unified(
                &old,
                &new,
                &format!("live/{name}{}", if live.is_none() { " (absent)" } else { "" }),
                &format!("desired/{name}"),
                colour,
            );
            if !text.is_empty() {
                differs = true;
                print!("{text}");
            }
        }
        Ok(differs)
    });
    match result {
        Ok(false) => Ok(ExitCode::from(0)),
        Ok(true) => Ok(ExitCode::from(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(EXIT_DIFF_ERROR))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_an_empty_diff() {
        assert_eq!(unified("a\n", "a\n", "x", "y", false), "");
    }

    #[test]
    fn a_changed_line_shows_as_minus_and_plus() {
        let d = unified("a\nb\n", "a\nc\n", "live", "desired", false);
        assert!(d.contains("--- live\n+++ desired\n"), "{d}");
        assert!(d.contains("-b\n+c\n"), "{d}");
    }
}
