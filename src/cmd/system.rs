//! `berth system info|df|prune`: the Docker host as berth sees it (Engine facts, berth's store
//! and the containers it manages), disk usage with berth's share, and the admin's prune of
//! berth's own leftovers (`POST /api/v1/system/prune`; never anything berth does not own).
//! `berth version` already prints the Engine's version, so there is no `system version`.
//!
//! Exit status 0; 1 when the server refuses (a non-admin's prune is 403) or cannot be asked;
//! 2 on usage errors (prune without `-y` and no terminal to confirm on).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use reqwest::Method;
use serde_json::Value;

use crate::client::{Body, Client, ClientOpts, runtime};

use super::get::print_rows;
use super::{EXIT_FAILURE, EXIT_OK, UsageError};

/// Arguments of `berth system`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: SystemCommand,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Output formats of `berth system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Sections and tables for people.
    Table,
    /// The server's JSON answer, for scripts.
    Json,
}

/// `berth system` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SystemCommand {
    /// Engine facts and counts, and berth's own (version, store size, resources, containers).
    Info {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Disk usage of images, containers, volumes and build cache, with berth's share.
    Df {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Remove berth's own leftovers (admin): orphan containers of this server and images
    /// berth pulled that nothing wants. Asks first on a terminal unless `-y`.
    Prune {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(short = 'y', long = "yes")]
        yes: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
}

/// Runs the subcommand.
///
/// # Errors
///
/// A failed request; a prune that cannot be confirmed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Refuse an unconfirmable prune before touching the network.
    if let SystemCommand::Prune { dry_run: false, yes: false, .. } = &args.command
        && !std::io::stdin().is_terminal()
    {
        return Err(UsageError(
            "stdin is not a terminal, so prune cannot ask for confirmation: pass -y to prune \
             without asking, or --dry-run to only list"
                .into(),
        )
        .into());
    }
    let client = Client::connect(&args.client)?;
    let rt = runtime()?;
    match args.command {
        SystemCommand::Info { output } => {
            let v: Value = rt.block_on(client.get("/api/v1/system/info", &[]))?;
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Format::Table => print_info(&v, client.server()),
            }
        }
        SystemCommand::Df { output } => {
            let v: Value = rt.block_on(client.get("/api/v1/system/df", &[]))?;
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Format::Table => print_df(&v),
            }
        }
        SystemCommand::Prune { dry_run, yes, output } => {
            if !dry_run && !yes && !confirm(client.server())? {
                eprintln!("prune cancelled; nothing was removed");
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
            let q = vec![("dryRun", dry_run.to_string())];
            let v: Value =
                rt.block_on(client.json(Method::POST, "/api/v1/system/prune", &q, Body::Empty))?;
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Format::Table => print_prune(&v, dry_run),
            }
            let failed = v["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|i| i.get("error").is_some()));
            if failed {
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
        }
    }
    Ok(ExitCode::from(EXIT_OK))
}

/// Asks on the terminal; `true` only for `y` or `yes`.
fn confirm(server: &str) -> anyhow::Result<bool> {
    eprint!(
        "This removes berth's leftover containers and images on {server} (see --dry-run).\n\
         Continue? [y/N] "
    );
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// A JSON value as text: strings bare, `null` as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

/// Bytes as `docker system df` shows them (`1.2GB`, `512kB`, decimal units); `null` is `-`.
pub fn human_bytes(v: &Value) -> String {
    let Some(b) = v.as_f64() else { return "-".into() };
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut n = b;
    let mut i = 0;
    while n >= 1000.0 && i < UNITS.len() - 1 {
        n /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{n:.3}").trim_end_matches('0').trim_end_matches('.').to_owned() + UNITS[i]
    }
}

fn print_info(v: &Value, server: &str) {
    let e = &v["engine"];
    let b = &v["berth"];
    let c = &e["containers"];
    println!("Server: {server}");
    println!(" berth version: {}", text(&b["version"]));
    println!(" Instance ID: {}", text(&b["instanceId"]));
    println!(" Store size: {}", human_bytes(&b["storeBytes"]));
    println!(" Revision: {}", text(&b["revision"]));
    let resources: Vec<String> = b["resources"]
        .as_object()
        .map(|m| m.iter().map(|(k, n)| format!("{k}: {}", text(n))).collect())
        .unwrap_or_default();
    println!(" Resources: {}", resources.join(", "));
    println!(
        " Managed containers: {} (running: {})",
        text(&b["managedContainers"]["total"]),
        text(&b["managedContainers"]["running"])
    );
    println!("Docker Engine:");
    println!(" Name: {}", text(&e["name"]));
    println!(" Server version: {}", text(&e["version"]));
    println!(
        " Containers: {} (running: {}, paused: {}, stopped: {})",
        text(&c["total"]),
        text(&c["running"]),
        text(&c["paused"]),
        text(&c["stopped"])
    );
    println!(" Images: {}", text(&e["images"]));
    println!(" Storage driver: {}", text(&e["storageDriver"]));
    println!(" Operating system: {}", text(&e["operatingSystem"]));
    println!(" Kernel version: {}", text(&e["kernelVersion"]));
    println!(" OS type / architecture: {} / {}", text(&e["osType"]), text(&e["architecture"]));
    println!(" CPUs: {}", text(&e["cpus"]));
    println!(" Total memory: {}", human_bytes(&e["memoryBytes"]));
    println!(" Docker root dir: {}", text(&e["rootDir"]));
}

fn print_df(v: &Value) {
    let mut rows = vec![
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE", "BERTH", "BERTH SIZE"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for (label, key) in [("Images", "images"), ("Containers", "containers"), ("Volumes", "volumes")]
    {
        let s = &v[key];
        rows.push(vec![
            label.to_owned(),
            text(&s["count"]),
            text(&s["active"]),
            human_bytes(&s["sizeBytes"]),
            human_bytes(&s["reclaimableBytes"]),
            text(&s["berth"]["count"]),
            human_bytes(&s["berth"]["sizeBytes"]),
        ]);
    }
    let bc = &v["buildCache"];
    rows.push(vec![
        "Build cache".to_owned(),
        text(&bc["count"]),
        "-".to_owned(),
        human_bytes(&bc["sizeBytes"]),
        human_bytes(&bc["reclaimableBytes"]),
        "-".to_owned(),
        "-".to_owned(),
    ]);
    print_rows(&rows, false);
}

fn print_prune(v: &Value, dry_run: bool) {
    let items = v["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("nothing to prune");
        return;
    }
    let mut rows = vec![["TYPE", "ID", "NAME", "RESULT", "REASON"].map(str::to_owned).to_vec()];
    for i in &items {
        let id = text(&i["id"]);
        let short = id.trim_start_matches("sha256:").chars().take(12).collect::<String>();
        let result = match (&i["error"], dry_run) {
            (Value::String(e), _) => format!("failed: {e}"),
            (_, true) => "would remove".to_owned(),
            (_, false) => "removed".to_owned(),
        };
        rows.push(vec![text(&i["type"]), short, text(&i["name"]), result, text(&i["reason"])]);
    }
    print_rows(&rows, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_print_in_decimal_units_like_docker() {
        assert_eq!(human_bytes(&Value::from(0)), "0B");
        assert_eq!(human_bytes(&Value::from(999)), "999B");
        assert_eq!(human_bytes(&Value::from(1500)), "1.5kB");
        assert_eq!(human_bytes(&Value::from(4_100_000_000_u64)), "4.1GB");
        assert_eq!(human_bytes(&Value::Null), "-");
    }
}
