//! `berth logs NAME`: a container's log through the GraphQL `logs` subscription; with `-f`,
//! keeps following. stdout lines go to stdout, stderr lines to stderr. Exit status 0 when the
//! log ended (or on Ctrl-C), 1 when the container does not exist or the request fails.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use crate::client::{Client, ClientOpts, runtime};

use super::EXIT_OK;
use super::apply::parse_duration;

/// Arguments of `berth logs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container's name.
    pub name: String,
    /// The namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of the existing log.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// Only lines newer than this (`10m`, `1h`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Prefix each line with its time.
    #[arg(long)]
    pub timestamps: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// The subscription document for the arguments.
fn query() -> &'static str {
    "subscription Logs($namespace: String!, $name: String!, $tail: Int, $since: String, \
     $follow: Boolean!, $timestamps: Boolean!) { logs(namespace: $namespace, name: $name, \
     tail: $tail, since: $since, follow: $follow, timestamps: $timestamps) \
     { stream line timestamp dropped } }"
}

/// Prints the log.
///
/// # Errors
///
/// A failed subscription.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.client)?;
    let since = args.since.map(|d| {
        let t = chrono::Utc::now() - chrono::Duration::from_std(d).unwrap_or_default();
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    let vars = json!({
        "namespace": args.namespace, "name": args.name, "tail": args.tail, "since": since,
        "follow": args.follow, "timestamps": args.timestamps,
    });
    runtime()?.block_on(async {
        let mut sub = client.subscribe(query(), vars).await?;
        loop {
            let item = tokio::select! {
                item = sub.next() => item?,
                _ = tokio::signal::ctrl_c() => None,
            };
            let Some(data) = item else { break };
            let l = &data["logs"];
            if let Some(n) = l["dropped"].as_u64().filter(|n| *n > 0) {
                eprintln!("berth: {n} line(s) skipped (reading too slowly)");
            }
            let text = l["line"].as_str().unwrap_or_default();
            let line = match l["timestamp"].as_str() {
                Some(t) if args.timestamps => format!("{t} {text}"),
                _ => text.to_owned(),
            };
            if l["stream"] == "STDERR" {
                let mut e = std::io::stderr().lock();
                let _ = writeln!(e, "{line}");
            } else {
                let mut o = std::io::stdout().lock();
                if writeln!(o, "{line}").and_then(|()| o.flush()).is_err() {
                    break; // stdout closed (`| head`)
                }
            }
        }
        sub.close().await;
        Ok(ExitCode::from(EXIT_OK))
    })
}
