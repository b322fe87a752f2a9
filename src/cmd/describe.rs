//! `berth describe KIND NAME`: a resource's metadata, spec summary, status and conditions, and
//! its recent audit events. Exit status 0, or 1 when it does not exist or the request fails.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::Value;

use crate::client::{Body, Client, ClientOpts, runtime};

use super::get::{parse_kind, print_rows, to_yaml};
use super::{EXIT_FAILURE, EXIT_OK};

/// Arguments of `berth describe`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kind (`container`, `image`).
    pub kind: String,
    /// The resource's name.
    pub name: String,
    /// The namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// How many recent audit events to show.
    #[arg(long, default_value_t = 10)]
    pub events: usize,
    #[command(flatten)]
    pub client: ClientOpts,
}

fn indent(text: &str, by: usize) -> String {
    text.lines().map(|l| format!("{:by$}{l}\n", "")).collect()
}

fn kv(map: &std::collections::BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "<none>".into();
    }
    map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// Describes.
///
/// # Errors
///
/// A failed request.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let kind = parse_kind(&args.kind)?;
    let client = Client::connect(&args.client)?;
    runtime()?.block_on(async {
        let Some(o) = client.get_resource(kind, &args.namespace, &args.name).await? else {
            eprintln!(
                "error: {} {:?} not found in namespace {}",
                kind.as_str().to_ascii_lowercase(),
                args.name,
                args.namespace
            );
            return Ok(ExitCode::from(EXIT_FAILURE));
        };
        let m = &o.metadata;
        println!("Name:         {}", m.name);
        println!("Namespace:    {}", m.namespace);
        println!("Kind:         {}", o.kind);
        println!("Labels:       {}", kv(&m.labels));
        println!("Annotations:  {}", kv(&m.annotations));
        println!("UID:          {}", m.uid.as_deref().unwrap_or("-"));
        println!("Generation:   {}", m.generation.unwrap_or(0));
        println!("Created:      {}", m.creation_timestamp.map_or("-".into(), |t| t.to_rfc3339()));
        if let Some(t) = m.deletion_timestamp {
            println!("Deleting:     since {}", t.to_rfc3339());
        }
        println!("Spec:");
        print!("{}", indent(&to_yaml(&o.spec)?, 2));
        println!("Status:");
        let mut status = o.status.clone();
        let conditions = status.as_object_mut().and_then(|s| s.remove("conditions"));
        if status.as_object().is_some_and(|s| !s.is_empty()) {
            print!("{}", indent(&to_yaml(&status)?, 2));
        } else {
            println!("  <none yet>");
        }
        if let Some(Value::Array(cs)) = conditions {
            println!("Conditions:");
            let mut rows = vec![vec![
                "  TYPE".to_owned(),
                "STATUS".into(),
                "REASON".into(),
                "SINCE".into(),
                "MESSAGE".into(),
            ]];
            for c in &cs {
                let f = |k: &str| c[k].as_str().unwrap_or("").to_owned();
                rows.push(vec![
                    format!("  {}", f("type")),
                    f("status"),
                    f("reason"),
                    f("lastTransitionTime"),
                    f("message"),
                ]);
            }
            print_rows(&rows, false);
        }
        let query = vec![
            ("kind", o.kind.as_str().to_owned()),
            ("namespace", m.namespace.clone()),
            ("name", m.name.clone()),
            ("order", "desc".to_owned()),
            ("limit", args.events.max(1).to_string()),
        ];
        println!("Events:");
        match client.json::<Value>(Method::GET, "/api/v1/audit", &query, Body::Empty).await {
            Ok(page) => {
                let events = page["events"].as_array().cloned().unwrap_or_default();
                if events.is_empty() {
                    println!("  <none>");
                }
                let mut rows = vec![vec![
                    "  TIME".to_owned(),
                    "ACTOR".into(),
                    "VERB".into(),
                    "OUTCOME".into(),
                    "MESSAGE".into(),
                ]];
                for e in events.iter().rev() {
                    let f = |k: &str| e[k].as_str().unwrap_or("").to_owned();
                    rows.push(vec![
                        format!("  {}", f("time")),
                        f("actor"),
                        f("verb"),
                        f("outcome"),
                        f("message"),
                    ]);
                }
                if rows.len() > 1 {
                    print_rows(&rows, false);
                }
            }
            Err(e) if e.code() == Some("forbidden") => {
                println!("  <the audit log needs the admin role>")
            }
            Err(e) => println!("  <cannot read the audit log: {e}>"),
        }
        Ok(ExitCode::from(EXIT_OK))
    })
}
