//! `berth version`: the client's version and, when a server is configured, the server's and
//! its Docker Engine's. Exit status 0; 1 only with `--server-only` when the server cannot be
//! asked.

use std::process::ExitCode;

use serde_json::Value;

use crate::client::{Client, ClientOpts, runtime};

use super::{EXIT_FAILURE, EXIT_OK};

/// Arguments of `berth version`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print only the client's version, without asking a server.
    #[arg(long)]
    pub client_only: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Prints the versions.
///
/// # Errors
///
/// Never for an unreachable server (reported on stderr).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    println!("Client: berth {}", env!("CARGO_PKG_VERSION"));
    if args.client_only {
        return Ok(ExitCode::from(EXIT_OK));
    }
    let client = match Client::connect(&args.client) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Server: unknown ({e})");
            return Ok(ExitCode::from(EXIT_OK));
        }
    };
    match runtime()?.block_on(client.get::<Value>("/api/v1/system/version", &[])) {
        Ok(v) => {
            let f = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
            println!("Server: berth {} at {}", f("berthVersion"), client.server());
            println!(
                "Docker Engine: {} (API {}, negotiated {}, {}/{})",
                f("version"),
                f("apiVersion"),
                f("negotiatedApiVersion"),
                f("os"),
                f("arch")
            );
            Ok(ExitCode::from(EXIT_OK))
        }
        Err(e) if e.code() == Some("unavailable") => {
            println!("Server: berth at {}", client.server());
            println!("Docker Engine: unavailable ({e})");
            Ok(ExitCode::from(EXIT_OK))
        }
        Err(e) => {
            eprintln!("Server: cannot ask {} ({e})", client.server());
            Ok(ExitCode::from(EXIT_FAILURE))
        }
    }
}
