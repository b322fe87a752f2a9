//! The `berth` binary: the kubectl-like client and `berth serve`.
//!
//! Each subcommand is one variant of [`Command`] and one module under `cmd/` with an `Args`
//! struct and a `run(args) -> anyhow::Result<ExitCode>` function.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// berth: a declarative control plane for Docker.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Check manifests offline: syntax, schema and semantics, with file:line:col errors.
    Validate(cmd::validate::Args),
    /// Print the JSON Schema of a kind's manifests, or of any berth resource.
    Schema(cmd::schema::Args),
}

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with status 2.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => cmd::validate::run(args),
        Command::Schema(args) => cmd::schema::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            cmd::exit_code_for(&e)
        }
    }
}
