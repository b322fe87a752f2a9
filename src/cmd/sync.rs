//! `berth sync DIR`: keeps the server's resources equal to a directory of manifests, through
//! the REST API, until interrupted (see [`crate::sync`]). Resources get the label
//! `berth.dev/sync-source=NAME`; those with the label that leave the directory are pruned.
//!
//! Exit status 0 after Ctrl-C (or, with `--once`, when the directory was applied); 1 with
//! `--once` when it was broken or refused, or when the directory cannot be watched; 2 on usage
//! errors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio::sync::watch;

use crate::client::{Client, ClientOpts, runtime};
use crate::sync::{HttpApplier, Outcome, SyncSource, SyncStatus, label_value, run_sync, sync_once};

use super::apply::parse_duration;
use super::{EXIT_FAILURE, EXIT_OK, UsageError};

/// Arguments of `berth sync`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory of manifests (recursive; hidden entries such as .git are skipped).
    pub dir: PathBuf,
    /// The sync source's name, the value of the berth.dev/sync-source label (default: the
    /// directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Apply once and exit instead of watching.
    #[arg(long)]
    pub once: bool,
    /// Poll the directory instead of using file events.
    #[arg(long)]
    pub poll: bool,
    /// How often to poll.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// How long the tree must be quiet before a change is applied.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_duration)]
    pub debounce: Duration,
    #[command(flatten)]
    pub client: ClientOpts,
}

fn init_logging(verbose: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if verbose { "debug" } else { "berth=info" })
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Syncs.
///
/// # Errors
///
/// [`UsageError`] for a missing directory or a bad name; a watch that cannot be set up.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.dir.is_dir() {
        return Err(UsageError(format!("{} is not a directory", args.dir.display())).into());
    }
    let mut source = SyncSource::new(&args.dir);
    if let Some(n) = &args.name {
        if label_value(n) != *n || n.is_empty() {
            return Err(UsageError(format!(
                "--name {n:?} must be a label value (letters, digits, '-', '_', '.')"
            ))
            .into());
        }
        source.name = n.clone();
    }
    source.poll = args.poll;
    source.poll_interval = args.poll_interval;
    source.debounce = args.debounce;
    init_logging(args.client.verbose);
    let client = Client::connect(&args.client)?;
    let applier = HttpApplier::new(client);
    let (status, _rx) = watch::channel(SyncStatus::default());
    runtime()?.block_on(async {
        if args.once {
            let outcome = sync_once(&source, &applier, &status, &mut None).await;
            return Ok(ExitCode::from(if outcome == Outcome::Applied {
                EXIT_OK
            } else {
                EXIT_FAILURE
            }));
        }
        eprintln!("syncing {} as {:?}; Ctrl-C to stop", source.dir.display(), source.name);
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        run_sync(source, applier, status, shutdown).await?;
        Ok(ExitCode::from(EXIT_OK))
    })
}
