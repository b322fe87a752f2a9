//! `berth delete -f FILE|DIR|-` or `berth delete KIND NAME`: asks the server to delete
//! resources; with `--wait`, until the controller has removed what it made in Docker.
//!
//! Exit status 0 when every resource was deleted (or is terminating without `--wait`), 1 when
//! one does not exist (unless `--ignore-not-found`), the request fails, or `--wait` timed out;
//! 2 on usage errors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use berth_schemas::Kind;

use crate::client::{Client, ClientOpts, runtime};
use crate::manifests::{display_name, parse_set, read_inputs};

use super::apply::{parse_duration, report_problems};
use super::get::parse_kind;
use super::{EXIT_FAILURE, EXIT_OK, UsageError};

/// Arguments of `berth delete`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kind (`container`, `image`), when not using `-f`.
    #[arg(required_unless_present = "files", requires = "name")]
    pub kind: Option<String>,
    /// The resource's name.
    pub name: Option<String>,
    /// The namespace (with KIND NAME).
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Delete the resources these manifests define.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-", conflicts_with = "kind")]
    pub files: Vec<PathBuf>,
    /// Wait until the resources are gone.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits (at most just under the server's request timeout per resource).
    #[arg(long, value_name = "DURATION", default_value = "25s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Succeed for resources that do not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Deletes.
///
/// # Errors
///
/// [`UsageError`]; a failed request.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let keys: Vec<(Kind, String, String)> = if args.files.is_empty() {
        let kind = parse_kind(args.kind.as_deref().unwrap_or_default())?;
        let name = args.name.clone().ok_or_else(|| UsageError("name the resource".into()))?;
        vec![(kind, args.namespace.clone(), name)]
    } else {
        let inputs = read_inputs(&args.files).map_err(|e| UsageError(format!("{e:#}")))?;
        match parse_set(&inputs) {
            Ok(objects) => objects
                .into_iter()
                .map(|o| (o.kind, o.metadata.namespace, o.metadata.name))
                .collect(),
            Err(problems) => return Ok(report_problems(&problems)),
        }
    };
    let client = Client::connect(&args.client)?;
    runtime()?.block_on(async {
        let mut failed = false;
        let wait = args.wait.then(|| args.timeout.as_secs().max(1));
        for (kind, ns, name) in &keys {
            let shown = display_name(kind.as_str(), ns, name);
            match client.delete(*kind, ns, name, wait).await {
                Ok(true) => println!("{shown} deleted"),
                Ok(false) if args.wait => {
                    eprintln!("error: {shown} is still terminating");
                    failed = true;
                }
                Ok(false) => println!("{shown} terminating"),
                Err(e) if e.is_not_found() && args.ignore_not_found => {}
                Err(e) if e.is_not_found() => {
                    eprintln!("error: {shown} not found");
                    failed = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(ExitCode::from(if failed { EXIT_FAILURE } else { EXIT_OK }))
    })
}
