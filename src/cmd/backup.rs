//! `berth backup FILE`: writes a consistent snapshot of a store (resources, audit log,
//! accounts) to FILE.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use berth_controller::store::{SledStore, StoreConfig, StoreError};

use super::{EXIT_OK, UsageError};

/// Arguments of `berth backup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the backup (written beside it first, then renamed into place).
    pub file: PathBuf,
    /// The data directory to back up. It must not be in use: stop `berth serve` first (a
    /// running server takes consistent backups through its API).
    #[arg(long, default_value = "./berth-data")]
    pub data_dir: PathBuf,
}

/// Takes the backup and prints what it holds.
///
/// # Errors
///
/// [`UsageError`] when the data directory does not exist; an error naming the directory when
/// it is in use or damaged; an error naming the file when it cannot be written.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.data_dir.is_dir() {
        return Err(UsageError(format!("no data directory at {}", args.data_dir.display())).into());
    }
    let store = SledStore::open(StoreConfig::new(&args.data_dir)).map_err(|e| match e {
        StoreError::Open { .. } => anyhow::Error::new(e).context(format!(
            "cannot open {} (is `berth serve` running on it?)",
            args.data_dir.display()
        )),
        other => other.into(),
    })?;
    let summary = store.backup(&args.file).context("backup failed")?;
    let report = store.verify_audit_blocking()?;
    store.close();
    println!(
        "backup of {} written to {}: revision {}, {} audit events, {} records, {} bytes",
        args.data_dir.display(),
        args.file.display(),
        summary.header.revision,
        summary.header.audit_events,
        summary.records,
        summary.bytes
    );
    if let Some(bad) = report.first_bad {
        eprintln!(
            "warning: the audit chain of {} is broken at event {bad}: {}",
            args.data_dir.display(),
            report.problem.unwrap_or_default()
        );
    }
    Ok(ExitCode::from(EXIT_OK))
}
