//! `berth completion bash|zsh|fish`: prints a shell completion script on stdout.

use std::process::ExitCode;

use super::EXIT_OK;

/// Arguments of `berth completion`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Prints the script for `cmd` (the whole CLI).
///
/// # Errors
///
/// Never.
pub fn run(args: Args, mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    clap_complete::generate(args.shell, &mut cmd, "berth", &mut std::io::stdout());
    Ok(ExitCode::from(EXIT_OK))
}
