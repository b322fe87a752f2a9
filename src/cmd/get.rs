//! `berth get KIND [NAME]`: lists resources as a table (or `wide`, `yaml`, `json`, `name`), and
//! with `-w` keeps printing changes as they happen. Exit status 0 on success, 1 when the
//! resource does not exist or the request fails, 2 on usage errors.

use std::io::Write;
use std::process::ExitCode;

use berth_schemas::{DynamicObject, Kind};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::client::{Body, Client, ClientOpts, runtime};

use super::{EXIT_OK, UsageError};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Columns for people.
    Table,
    /// More columns.
    Wide,
    /// YAML, as the server keeps the resource.
    Yaml,
    /// JSON, as the server keeps the resource.
    Json,
    /// `kind/name` only.
    Name,
}

/// Arguments of `berth get`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kind: `containers` (`container`, `ctr`) or `images` (`image`, `img`).
    pub kind: String,
    /// One resource's name; all of the kind when omitted.
    pub name: Option<String>,
    /// The namespace.
    #[arg(short, long, default_value = "default", conflicts_with = "all_namespaces")]
    pub namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// A label selector (`app=web,tier!=db`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
    /// After the list, keep printing changes.
    #[arg(short, long)]
    pub watch: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Parses a kind as users type it.
///
/// # Errors
///
/// [`UsageError`] naming the known kinds.
pub fn parse_kind(s: &str) -> Result<Kind, UsageError> {
    Kind::parse_loose(s).ok_or_else(|| {
        UsageError(format!("unknown kind {s:?}: use containers (ctr) or images (img)"))
    })
}

fn age(o: &DynamicObject) -> String {
    let Some(t) = o.metadata.creation_timestamp else {
        return "-".into();
    };
    let s = (chrono::Utc::now() - t).num_seconds().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn cond_status(o: &DynamicObject, t: &str) -> String {
    o.status
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("-")
        .to_owned()
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn ports(o: &DynamicObject) -> String {
    let Some(ps) = o.spec.get("ports").and_then(Value::as_array) else {
        return "-".into();
    };
    ps.iter()
        .map(|p| match p.get("hostPort") {
            Some(h) => format!("{}->{}", h, p["containerPort"]),
            None => p["containerPort"].to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The header and one row per object.
pub fn table(kind: Kind, objects: &[DynamicObject], wide: bool, with_ns: bool) -> Vec<Vec<String>> {
    let mut header: Vec<&str> = Vec::new();
    if with_ns {
        header.push("NAMESPACE");
    }
    match kind {
        Kind::Container => {
            header.extend(["NAME", "IMAGE", "STATE", "READY", "RESTARTS", "AGE"]);
            if wide {
                header.extend(["PORTS", "HEALTH", "CONTAINER-ID"]);
            }
        }
        Kind::Image => {
            header.extend(["NAME", "REFERENCE", "PRESENCE", "READY", "AGE"]);
            if wide {
                header.extend(["IMAGE-ID", "SIZE"]);
            }
        }
    }
    let mut rows = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
    for o in objects {
        let mut row = Vec::new();
        if with_ns {
            row.push(o.metadata.namespace.clone());
        }
        row.push(o.metadata.name.clone());
        match kind {
            Kind::Container => {
                row.push(s(&o.spec["image"]));
                row.push(s(o.status.get("state").unwrap_or(&Value::Null)));
                row.push(cond_status(o, "Ready"));
                row.push(o.status.get("restartCount").map_or("0".into(), s));
                row.push(age(o));
                if wide {
                    row.push(ports(o));
                    row.push(s(o.status.get("health").unwrap_or(&Value::Null)));
                    let id = s(o.status.get("containerId").unwrap_or(&Value::Null));
                    row.push(id.chars().take(12).collect());
                }
            }
            Kind::Image => {
                row.push(s(&o.spec["reference"]));
                row.push(o.spec.get("presence").map_or("Present".into(), s));
                row.push(cond_status(o, "Ready"));
                row.push(age(o));
                if wide {
                    let id = s(o.status.get("imageId").unwrap_or(&Value::Null));
                    row.push(id.trim_start_matches("sha256:").chars().take(12).collect());
                    row.push(o.status.get("size").map_or("-".into(), s));
                }
            }
        }
        rows.push(row);
    }
    rows
}

/// Prints rows with columns padded to the widest cell.
pub fn print_rows(rows: &[Vec<String>], skip_header: bool) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = std::io::stdout().lock();
    for (n, r) in rows.iter().enumerate() {
        if skip_header && n == 0 {
            continue;
        }
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// YAML text for a JSON value.
///
/// # Errors
///
/// When the value cannot be rendered (never for API objects).
pub fn to_yaml(v: &Value) -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(v)?)
}

fn print_objects(
    kind: Kind,
    objects: &[DynamicObject],
    args: &Args,
    single: bool,
) -> anyhow::Result<()> {
    match args.output {
        Output::Table | Output::Wide => {
            if objects.is_empty() {
                eprintln!("No {} found.", kind.plural());
                return Ok(());
            }
            print_rows(
                &table(kind, objects, args.output == Output::Wide, args.all_namespaces),
                false,
            );
        }
        Output::Name => {
            for o in objects {
                println!("{}/{}", kind.as_str().to_ascii_lowercase(), o.metadata.name);
            }
        }
        Output::Json | Output::Yaml => {
            let v = if single {
                serde_json::to_value(&objects[0])?
            } else {
                json!({"apiVersion": "berth.dev/v1", "kind": "List", "items": objects})
            };
            if args.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", to_yaml(&v)?);
            }
        }
    }
    Ok(())
}

async fn watch(client: &Client, kind: Kind, args: &Args, rv: String) -> anyhow::Result<()> {
    let mut query = vec![("watch", "true".to_owned()), ("resourceVersion", rv)];
    if !args.all_namespaces {
        query.push(("namespace", args.namespace.clone()));
    }
    if let Some(sel) = &args.selector {
        query.push(("labelSelector", sel.clone()));
    }
    let path = format!("/api/v1/{}", kind.plural());
    let resp = client.send(reqwest::Method::GET, &path, &query, Body::Empty).await?;
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| anyhow::anyhow!("the watch stream broke: {e}"))?;
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let ev: Value = serde_json::from_slice(&line)?;
            if ev["type"] == "ERROR" {
                anyhow::bail!("the watch ended: {}", s(&ev["object"]["message"]));
            }
            let obj: DynamicObject = serde_json::from_value(ev["object"].clone())?;
            if let Some(n) = &args.name
                && &obj.metadata.name != n
            {
                continue;
            }
            match args.output {
                Output::Json => println!("{}", serde_json::to_string(&ev)?),
                Output::Yaml => print!("---\n{}", to_yaml(&ev)?),
                Output::Name => println!(
                    "{} {}/{}",
                    s(&ev["type"]),
                    kind.as_str().to_ascii_lowercase(),
                    obj.metadata.name
                ),
                Output::Table | Output::Wide => {
                    let rows =
                        table(kind, &[obj], args.output == Output::Wide, args.all_namespaces);
                    print_rows(&rows, true);
                }
            }
            let _ = std::io::stdout().flush();
        }
    }
    Ok(())
}

/// Lists or gets, then watches with `-w`.
///
/// # Errors
///
/// [`UsageError`] for an unknown kind; the server's error.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let kind = parse_kind(&args.kind)?;
    let client = Client::connect(&args.client)?;
    runtime()?.block_on(async {
        let ns = (!args.all_namespaces).then_some(args.namespace.as_str());
        let (objects, rv) = match &args.name {
            Some(name) => {
                let ns = args.namespace.as_str();
                let (items, rv) = client.list(kind, Some(ns), args.selector.as_deref()).await?;
                let found: Vec<DynamicObject> =
                    items.into_iter().filter(|o| &o.metadata.name == name).collect();
                if found.is_empty() && !args.watch {
                    anyhow::bail!(
                        "{} {name:?} not found in namespace {ns}",
                        kind.as_str().to_ascii_lowercase()
                    );
                }
                (found, rv)
            }
            None => client.list(kind, ns, args.selector.as_deref()).await?,
        };
        print_objects(kind, &objects, &args, args.name.is_some())?;
        let _ = std::io::stdout().flush();
        if args.watch {
            watch(&client, kind, &args, rv).await?;
        }
        Ok(ExitCode::from(EXIT_OK))
    })
}
