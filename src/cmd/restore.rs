//! `berth restore FILE`: restores a backup into an empty data directory and checks the result.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_controller::store::{StoreConfig, backup};

use super::EXIT_OK;

/// Arguments of `berth restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup file, from `berth backup`.
    pub file: PathBuf,
    /// The data directory to restore into; it must be missing or empty.
    #[arg(long, default_value = "./berth-data")]
    pub data_dir: PathBuf,
}

/// Restores, verifying the file's checksum first and the audit chain after.
///
/// # Errors
///
/// An error naming the file when it is damaged or the directory is not empty; an error naming
/// the directory when the restored store fails its checks (the directory is then removed).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let summary = backup::restore(&args.file, &StoreConfig::new(&args.data_dir))?;
    println!(
        "restored {} into {}: revision {}, {} audit events (chain verified), backup taken {}",
        args.file.display(),
        args.data_dir.display(),
        summary.header.revision,
        summary.header.audit_events,
        summary.header.created.to_rfc3339()
    );
    Ok(ExitCode::from(EXIT_OK))
}
