//! `berth audit [filters]` lists audit events (admin); `berth audit verify [--expect-head
//! SEQ:HASH]` checks the keyed hash chain; `berth audit head` prints the latest event's
//! `SEQ:HASH` to keep elsewhere. Exit status 0; for `verify`, 1 when the chain is broken or
//! does not contain the expected head; 1 when a request fails.

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
        /// A head printed earlier by `berth audit head` (`SEQ:HASH`, or the hash alone): fail
        /// unless the chain still contains it, which catches a rewrite of history even by
        /// someone holding the audit key.
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Print the latest event as `SEQ:HASH`; keep it elsewhere and pass it to
    /// `berth audit verify --expect-head` later.
    Head {
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// `berth audit verify`: prints what was checked (from which event, what is keyed, the
/// expected head) or what is wrong.
fn verify(expect_head: Option<&str>, client: &ClientOpts) -> anyhow::Result<ExitCode> {
    let client = Client::connect(client)?;
    let query: Vec<(&str, String)> =
        expect_head.map(|h| ("expectHead", h.to_owned())).into_iter().collect();
    let report: Value = runtime()?.block_on(client.get("/api/v1/audit/verify", &query))?;
    let from = report["verifiedFrom"].as_u64().unwrap_or(0);
    let keyed = match (report["keyedFrom"].as_u64(), report["keyChecked"].as_bool()) {
        (Some(0), Some(true)) => "every event keyed (HMAC-SHA256)".to_owned(),
        (Some(k), Some(true)) if k <= from => "every event keyed (HMAC-SHA256)".to_owned(),
        (Some(k), Some(true)) => {
            format!("keyed (HMAC-SHA256) from event {k}; events before it are unkeyed SHA-256")
        }
        (Some(k), _) => {
            format!("keyed from event {k}, but the server has no audit key to check it")
        }
        (None, _) => "not keyed (unkeyed SHA-256 chain)".to_owned(),
    };
    if !report["firstBad"].is_null() {
        println!(
            "audit log BROKEN at event {}: {}",
            report["firstBad"],
            report["problem"].as_str().unwrap_or("hash mismatch")
        );
        return Ok(ExitCode::from(EXIT_FAILURE));
    }
    if let Some(problem) = report["problem"].as_str() {
        println!("audit log does NOT contain the expected head: {problem}");
        return Ok(ExitCode::from(EXIT_FAILURE));
    }
    let head = match report["headSeq"].as_u64() {
        Some(seq) => format!("{seq}:{}", report["headHash"].as_str().unwrap_or("-")),
        None => "none".to_owned(),
    };
    println!(
        "audit log intact: {} events verified from seq {from}, head {head}; {keyed}",
        report["events"]
    );
    if let Some(expected) = report["expectedHead"].as_str() {
        println!("expected head {expected} is in the chain");
    }
    Ok(ExitCode::from(EXIT_OK))
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
    match &args.command {
        Some(AuditCommand::Verify { expect_head, client }) => {
            return verify(expect_head.as_deref(), client);
        }
        Some(AuditCommand::Head { client }) => {
            let client = Client::connect(client)?;
            let head: Value = runtime()?.block_on(client.get("/api/v1/audit/head", &[]))?;
            println!("{}:{}", head["seq"], head["hash"].as_str().unwrap_or("-"));
            return Ok(ExitCode::from(EXIT_OK));
        }
        None => {}
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
