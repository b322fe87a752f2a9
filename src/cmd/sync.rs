//! `berth sync DIR`: keeps the server's resources equal to a directory of manifests, through
//! the REST API, until interrupted (see [`crate::sync`]). Resources get the label
//! `berth.dev/sync-source=NAME`; those with the label that leave the directory are pruned.
//!
//! Exit status 0 after Ctrl-C (or, with `--once`, when the directory was applied); 1 with
//! `--once` when it was broken or refused, or when the directory cannot be watched; 2 on usage
//! errors. Its status is its own output (one line per change, per problem) and, on the server,
//! the audit events of the writes it makes as the logged-in user.
//!
//! `berth sync status` shows what the server's own sync (`berth serve --sync-dir DIR`) last did,
//! from `GET /api/v1/sync`: exit status 0 when the request succeeded, whatever the sync's state.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::client::{Client, ClientOpts, runtime};
use crate::sync::{HttpApplier, Outcome, SyncSource, SyncStatus, label_value, run_sync, sync_once};

use super::apply::parse_duration;
use super::{EXIT_FAILURE, EXIT_OK, UsageError};

/// Arguments of `berth sync`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    /// What else to do than syncing a directory.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The directory of manifests (recursive; hidden entries such as .git are skipped). A
    /// directory named `status` is given as `./status`.
    #[arg(required = true)]
    pub dir: Option<PathBuf>,
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

/// `berth sync` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show what the server's directory sync (`berth serve --sync-dir`) last did: directory,
    /// state, last applied time, Git commit, counts per kind, the last error with its file and
    /// line.
    Status(StatusArgs),
}

/// Output formats of `berth sync status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusOutput {
    /// Lines for people.
    Table,
    /// The API's JSON.
    Json,
}

/// Arguments of `berth sync status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: StatusOutput,
    #[command(flatten)]
    pub client: ClientOpts,
}

fn time(v: &Value) -> String {
    v.as_str().map_or_else(|| "never".to_owned(), str::to_owned)
}

/// The status as lines for people.
fn status_lines(v: &Value) -> Vec<Vec<String>> {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    let mut rows = vec![
        vec!["DIRECTORY".to_owned(), s("directory")],
        vec!["SOURCE".to_owned(), s("source")],
        vec!["STATE".to_owned(), s("state")],
        vec!["COMMIT".to_owned(), v["commit"].as_str().unwrap_or("-").to_owned()],
        vec![
            "LAST APPLIED".to_owned(),
            format!("{} ({} resource(s))", time(&v["lastAppliedAt"]), v["resources"]),
        ],
        vec!["LAST ATTEMPT".to_owned(), time(&v["lastAttemptAt"])],
    ];
    if let Some(counts) = v["counts"].as_object() {
        for (kind, c) in counts {
            rows.push(vec![
                format!("{}S", kind.to_ascii_uppercase()),
                format!(
                    "{} applied ({} created, {} configured, {} unchanged), {} pruned",
                    c["applied"], c["created"], c["configured"], c["unchanged"], c["pruned"]
                ),
            ]);
        }
    }
    if let Some(e) = v["lastError"].as_object() {
        rows.push(vec!["ERROR".to_owned(), e["message"].as_str().unwrap_or("").to_owned()]);
        if let Some(file) = e.get("file").and_then(Value::as_str) {
            let line = e.get("line").and_then(Value::as_u64).unwrap_or(0);
            let col = e.get("column").and_then(Value::as_u64).unwrap_or(0);
            rows.push(vec!["ERROR AT".to_owned(), format!("{file}:{line}:{col}")]);
        }
        for p in e.get("problems").and_then(Value::as_array).into_iter().flatten().skip(1) {
            rows.push(vec![String::new(), p.as_str().unwrap_or("").to_owned()]);
        }
    }
    rows
}

fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.client)?;
    let v: Value = runtime()?.block_on(client.get("/api/v1/sync", &[]))?;
    match args.output {
        StatusOutput::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        StatusOutput::Table if v["enabled"] != Value::Bool(true) => {
            println!("{} syncs no directory (start it with --sync-dir DIR)", client.server());
        }
        StatusOutput::Table => super::get::print_rows(&status_lines(&v), false),
    }
    Ok(ExitCode::from(EXIT_OK))
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
    let dir = match (args.command, args.dir) {
        (Some(Command::Status(a)), _) => return status(a),
        (None, Some(dir)) => dir,
        (None, None) => return Err(UsageError("name the directory: berth sync DIR".into()).into()),
    };
    if !dir.is_dir() {
        return Err(UsageError(format!("{} is not a directory", dir.display())).into());
    }
    let mut source = SyncSource::new(&dir);
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
