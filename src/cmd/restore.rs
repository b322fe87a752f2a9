//! `berth restore FILE`: restores a backup into an empty data directory and checks the result.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use berth_controller::store::audit::AUDIT_KEY_FILE;
use berth_controller::store::{AuditKey, StoreConfig, backup};

use super::EXIT_OK;

/// Arguments of `berth restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup file, from `berth backup`.
    pub file: PathBuf,
    /// The data directory to restore into; it must be missing or empty.
    #[arg(long, default_value = "./berth-data")]
    pub data_dir: PathBuf,
    /// The audit key of the store the backup was taken from (backups never hold it): the
    /// restored chain is checked with it and it is copied into the data directory (0600).
    #[arg(long, value_name = "FILE")]
    pub audit_key_file: Option<PathBuf>,
}

/// Restores, verifying the file's checksum first and the audit chain after.
///
/// # Errors
///
/// An error naming the file when it is damaged or the directory is not empty; an error naming
/// the directory when the restored store fails its checks (the directory is then removed).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = StoreConfig::new(&args.data_dir);
    if let Some(path) = &args.audit_key_file {
        config.audit_key = Some(
            AuditKey::load_if_present(path)?
                .with_context(|| format!("no audit key file at {}", path.display()))?,
        );
    }
    let summary = backup::restore(&args.file, &config)?;
    if let Some(path) = &args.audit_key_file {
        let target = args.data_dir.join(AUDIT_KEY_FILE);
        copy_private(path, &target).with_context(|| {
            format!("cannot copy the audit key {} to {}", path.display(), target.display())
        })?;
    }
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

/// Copies `from` to a new file `to`, readable by its owner only.
fn copy_private(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let bytes = std::fs::read(from)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(to)?;
    file.write_all(&bytes)?;
    file.sync_all()
}
