//! The `berth` binary: the kubectl-like client and `berth serve`.

use clap::Parser;

/// berth: a declarative control plane for Docker.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
