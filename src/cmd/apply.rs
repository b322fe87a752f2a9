//! `berth apply -f FILE|DIR|-`: validates the manifests locally (errors as
//! `file:line:col: path: message`), sends them as one request, and prints what happened to each
//! resource (`container/web created`). With `--wait`, follows each resource until it is Ready.
//!
//! Exit status: 0 when everything was applied (and, with `--wait`, became Ready); 1 when the
//! manifests are invalid, the server refused them, or `--wait` timed out; 2 on usage errors.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use berth_api::routes::resources::ApplyResponse;
use berth_schemas::{DynamicObject, Kind};

use crate::client::resources::{Readiness, readiness};
use crate::client::{Client, ClientOpts, runtime};
use crate::manifests::{display_name, parse_set, read_inputs};

use super::{EXIT_FAILURE, EXIT_OK, UsageError};

/// Arguments of `berth apply`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A manifest file, a directory (recursive), or `-` for stdin. Repeat for several.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-", required = true)]
    pub files: Vec<PathBuf>,
    /// Ask the server what would change, writing nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete resources matching `-l` that these manifests do not contain.
    #[arg(long, requires = "selector")]
    pub prune: bool,
    /// A label selector for `--prune` (`app=web,tier!=db`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Wait until every applied resource is Ready.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits (`90s`, `5m`).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Parses `30s`, `5m`, `1h` (clap value parser).
///
/// # Errors
///
/// A message naming the accepted forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    berth_schemas::parse_duration(s).map_err(|e| format!("{e} (use a duration such as 90s or 5m)"))
}

/// Prints the per-resource results of an apply.
pub fn print_results(resp: &ApplyResponse) {
    let suffix = if resp.dry_run { " (dry run)" } else { "" };
    for r in &resp.results {
        println!("{} {}{suffix}", display_name(r.kind.as_str(), &r.namespace, &r.name), r.outcome);
    }
    for r in &resp.pruned {
        let how = if r.outcome == "terminating" { "pruned (terminating)" } else { "pruned" };
        println!("{} {how}{suffix}", display_name(r.kind.as_str(), &r.namespace, &r.name));
    }
}

/// How progress is shown: bars on a terminal, plain lines otherwise.
enum Progress {
    Bars {
        /// Keeps the shared terminal area alive while the bars draw.
        _multi: indicatif::MultiProgress,
        bars: HashMap<String, indicatif::ProgressBar>,
    },
    Lines(HashMap<String, String>),
}

impl Progress {
    fn new(names: &[String]) -> Self {
        if !std::io::stdout().is_terminal() {
            return Self::Lines(HashMap::new());
        }
        let multi = indicatif::MultiProgress::new();
        let style = indicatif::ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        let bars = names
            .iter()
            .map(|n| {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(n.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                (n.clone(), bar)
            })
            .collect();
        Self::Bars { _multi: multi, bars }
    }

    fn update(&mut self, name: &str, line: &str, done: bool) {
        match self {
            Self::Bars { bars, .. } => {
                if let Some(bar) = bars.get(name) {
                    if done {
                        bar.finish_with_message(line.to_owned());
                    } else {
                        bar.set_message(line.to_owned());
                    }
                }
            }
            Self::Lines(last) => {
                if last.get(name).map(String::as_str) != Some(line) {
                    println!("{name} {line}");
                    last.insert(name.to_owned(), line.to_owned());
                }
            }
        }
    }

    fn finish(self) {
        if let Self::Bars { bars, .. } = self {
            for bar in bars.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        }
    }
}

/// Polls each resource until Ready or until `timeout`, showing progress (spinners on a
/// terminal, a line per change otherwise). Answers the names that did not become Ready.
///
/// # Errors
///
/// A request that fails for another reason than the resource not being ready.
pub async fn wait_ready(
    client: &Client,
    keys: &[(Kind, String, String)],
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pending: Vec<(Kind, String, String)> = keys.to_vec();
    let names: Vec<String> =
        keys.iter().map(|(k, ns, n)| display_name(k.as_str(), ns, n)).collect();
    let mut progress = Progress::new(&names);
    loop {
        let mut still = Vec::new();
        for (kind, ns, name) in pending {
            let shown = display_name(kind.as_str(), &ns, &name);
            let state = match client.get_resource(kind, &ns, &name).await {
                Ok(Some(o)) => readiness(&o),
                Ok(None) => Readiness::Gone,
                Err(e) => {
                    progress.finish();
                    return Err(e.into());
                }
            };
            let line = match &state {
                Readiness::Ready => "ready".to_owned(),
                Readiness::Waiting(s) => format!("waiting: {s}"),
                Readiness::Degraded(s) => format!("degraded: {s}"),
                Readiness::Gone => "gone".to_owned(),
            };
            let done = matches!(state, Readiness::Ready | Readiness::Gone);
            progress.update(&shown, &line, done);
            if !done {
                still.push((kind, ns, name));
            }
        }
        pending = still;
        if pending.is_empty() {
            progress.finish();
            return Ok(Vec::new());
        }
        if tokio::time::Instant::now() >= deadline {
            progress.finish();
            return Ok(pending.iter().map(|(k, ns, n)| display_name(k.as_str(), ns, n)).collect());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Prints located problems and answers exit status 1.
pub fn report_problems(problems: &[crate::manifests::Problem]) -> ExitCode {
    for p in problems {
        eprintln!("{p}");
    }
    eprintln!("{} problem(s) found; nothing was applied", problems.len());
    ExitCode::from(EXIT_FAILURE)
}

/// Reads, validates and applies.
///
/// # Errors
///
/// [`UsageError`] for unreadable inputs; the server's error.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.selector.is_some() && !args.prune {
        return Err(UsageError("-l/--selector is only used with --prune".into()).into());
    }
    let inputs = read_inputs(&args.files).map_err(|e| UsageError(format!("{e:#}")))?;
    let objects: Vec<DynamicObject> = match parse_set(&inputs) {
        Ok(o) => o,
        Err(problems) => return Ok(report_problems(&problems)),
    };
    let client = Client::connect(&args.client)?;
    runtime()?.block_on(async {
        let prune = if args.prune { args.selector.as_deref() } else { None };
        let resp = client.apply(&objects, args.dry_run, prune).await?;
        print_results(&resp);
        if args.wait && !args.dry_run {
            let keys: Vec<(Kind, String, String)> = resp
                .results
                .iter()
                .map(|r| (r.kind, r.namespace.clone(), r.name.clone()))
                .collect();
            let late = wait_ready(&client, &keys, args.timeout).await?;
            if !late.is_empty() {
                eprintln!(
                    "error: not ready after {}: {}",
                    humantime(args.timeout),
                    late.join(", ")
                );
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
        }
        Ok(ExitCode::from(EXIT_OK))
    })
}

/// `90s`, `5m`, `1h30m`.
pub fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}
