//! `berth audit [filters]` lists audit events (admin); `berth audit verify` checks the hash
//! chain. Exit status 0; for `verify`, 1 when the chain is broken; 1 when a request fails.

use std::process::ExitCode;

use serde_json::Value;

use crate::client::{Client, ClientOpts, runtime};

use super::get::print_rows;
use super::{EXIT_FAILURE, EXIT_OK};

/// Arguments of `berth audit`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// Only events at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only events before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this actor (`user:alice`, `token:ID`, `controller`, `sync`).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this verb (`create`, `delete`, `login`, ...).
    #[arg(long)]
    pub verb: Option<String>,
    /// Only this kind (`Container`, `User`).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this namespace.
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Only this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Newest first.
    #[arg(long)]
    pub reverse: bool,
    /// At most this many events.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Print the events as JSON lines.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `berth audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check that the audit log's hash chain is intact (exit 1 when it is not).
    Verify {
        #[command(flatten)]
        client: ClientOpts,
    },
}

fn target(e: &Value) -> String {
    match (e["kind"].as_str(), e["namespace"].as_str(), e["name"].as_str()) {
        (Some(k), Some(ns), Some(n)) => format!("{k}/{ns}/{n}"),
        (Some(k), None, Some(n)) => format!("{k}/{n}"),
        (_, _, Some(n)) => n.to_owned(),
        _ => "-".into(),
    }
}

/// Lists or verifies.
///
/// # Errors
///
/// A failed request.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(AuditCommand::Verify { client }) = &args.command {
        let client = Client::connect(client)?;
        let report: Value = runtime()?.block_on(client.get("/api/v1/audit/verify", &[]))?;
        return Ok(if report["firstBad"].is_null() {
            println!(
                "audit log intact: {} events, head {}",
                report["events"],
                report["headHash"].as_str().unwrap_or("-")
            );
            ExitCode::from(EXIT_OK)
        } else {
            println!(
                "audit log BROKEN at event {}: {}",
                report["firstBad"],
                report["problem"].as_str().unwrap_or("hash mismatch")
            );
            ExitCode::from(EXIT_FAILURE)
        });
    }
    let client = Client::connect(&args.client)?;
    let mut base = Vec::new();
    for (k, v) in [
        ("since", &args.since),
        ("until", &args.until),
        ("actor", &args.actor),
        ("verb", &args.verb),
        ("kind", &args.kind),
        ("namespace", &args.namespace),
        ("name", &args.name),
    ] {
        if let Some(v) = v {
            base.push((k, v.clone()));
        }
    }
    base.push(("order", if args.reverse { "desc" } else { "asc" }.to_owned()));
    runtime()?.block_on(async {
        let mut events: Vec<Value> = Vec::new();
        let mut cursor: Option<u64> = None;
        while events.len() < args.limit {
            let mut q = base.clone();
            q.push(("limit", (args.limit - events.len()).min(1000).to_string()));
            if let Some(c) = cursor {
                q.push(("cursor", c.to_string()));
            }
            let page: Value = client.get("/api/v1/audit", &q).await?;
            events.extend(page["events"].as_array().cloned().unwrap_or_default());
            match page["nextCursor"].as_u64() {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        if args.json {
            for e in &events {
                println!("{e}");
            }
        } else {
            let mut rows = vec![
                ["SEQ", "TIME", "ACTOR", "SOURCE", "VERB", "TARGET", "OUTCOME", "MESSAGE"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for e in &events {
                let f = |k: &str| match &e[k] {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".into(),
                    v => v.to_string(),
                };
                rows.push(vec![
                    f("seq"),
                    f("time"),
                    f("actor"),
                    f("source"),
                    f("verb"),
                    target(e),
                    f("outcome"),
                    f("message"),
                ]);
            }
            print_rows(&rows, false);
        }
        Ok(ExitCode::from(EXIT_OK))
    })
}
