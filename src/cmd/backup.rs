//! `berth backup FILE`: writes a consistent snapshot of a store (resources, audit log,
//! accounts) to FILE.
//!
//! Online (the default): downloads `GET /api/v1/system/backup` from the server the flags, the
//! environment or the login context name (admin only), while berth keeps running. The download
//! goes to a temporary file beside FILE (mode 0600), is checked (structure and trailing
//! SHA-256) and only then renamed to FILE: a truncated or damaged download never becomes FILE.
//! `-` writes the checked backup to standard output.
//!
//! Offline (`--data-dir DIR`): opens a stopped server's data directory itself.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use berth_controller::store::audit::AUDIT_KEY_FILE;
use berth_controller::store::backup::{self, BackupSummary};
use berth_controller::store::{AuditKey, SledStore, StoreConfig, StoreError};
use reqwest::Method;

use crate::client::{Body, Client, ClientError, ClientOpts, runtime};

use super::{EXIT_OK, UsageError};

/// Arguments of `berth backup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the backup (downloaded beside it first, checked, then renamed into
    /// place); `-` for standard output.
    pub file: PathBuf,
    /// Back up this data directory offline instead of asking the server. It must not be in
    /// use: stop `berth serve` first, or leave this out to back up a running server.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Takes the backup and prints what it holds.
///
/// # Errors
///
/// [`UsageError`] when the data directory does not exist or no server is configured; an error
/// naming the server when the download fails or is refused (403 for a non-admin); an error
/// naming the file when the download is damaged or cannot be written.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match &args.data_dir {
        Some(dir) => offline(dir, &args.file),
        None => online(&args),
    }
}

fn offline(data_dir: &Path, file: &Path) -> anyhow::Result<ExitCode> {
    if !data_dir.is_dir() {
        return Err(UsageError(format!("no data directory at {}", data_dir.display())).into());
    }
    if file == Path::new("-") {
        return Err(UsageError(
            "an offline backup (--data-dir) is written to a file, not to standard output".into(),
        )
        .into());
    }
    let mut config = StoreConfig::new(data_dir);
    // The audit key beside the store, when it is there, so that the chain is checked with it.
    config.audit_key = AuditKey::load_if_present(&data_dir.join(AUDIT_KEY_FILE))?;
    let store = SledStore::open(config).map_err(|e| match e {
        StoreError::Open { .. } => anyhow::Error::new(e).context(format!(
            "cannot open {} (is `berth serve` running on it? Leave out --data-dir to back up a \
             running server through its API)",
            data_dir.display()
        )),
        other => other.into(),
    })?;
    let summary = store.backup(file).context("backup failed")?;
    let report = store.verify_audit_blocking()?;
    store.close();
    println!(
        "backup of {} written to {}: revision {}, {} audit events, {} records, {} bytes",
        data_dir.display(),
        file.display(),
        summary.header.revision,
        summary.header.audit_events,
        summary.records,
        summary.bytes
    );
    if let Some(bad) = report.first_bad {
        eprintln!(
            "warning: the audit chain of {} is broken at event {bad}: {}",
            data_dir.display(),
            report.problem.unwrap_or_default()
        );
    }
    Ok(ExitCode::from(EXIT_OK))
}

/// Creates `path` for writing, readable by its owner only (a backup holds password and token
/// hashes).
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

/// A temporary file that is removed unless kept.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn online(args: &Args) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.client).map_err(|e| match e {
        ClientError::NoServer => anyhow::Error::new(UsageError(
            "no server: pass --server URL, set BERTH_SERVER or run `berth login` to back up a \
             running server, or pass --data-dir DIR to back up a stopped one"
                .into(),
        )),
        other => other.into(),
    })?;
    let to_stdout = args.file == Path::new("-");
    let tmp_path = if to_stdout {
        std::env::temp_dir().join(format!("berth-backup-{}.partial", std::process::id()))
    } else {
        let name = args
            .file
            .file_name()
            .ok_or_else(|| UsageError(format!("{} does not name a file", args.file.display())))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.partial", std::process::id()));
        args.file.with_file_name(tmp_name)
    };
    let mut file = create_private(&tmp_path)
        .with_context(|| format!("cannot create {}", tmp_path.display()))?;
    let mut tmp = TempFile { path: tmp_path, keep: false };

    let server = client.server().to_owned();
    let bytes = runtime()?.block_on(async {
        let mut resp = client.send(Method::GET, "/api/v1/system/backup", &[], Body::Empty).await?;
        let mut bytes = 0u64;
        while let Some(chunk) = resp.chunk().await.with_context(|| {
            format!("the backup download from {server} was interrupted after {bytes} bytes")
        })? {
            file.write_all(&chunk)
                .with_context(|| format!("cannot write {}", tmp.path.display()))?;
            bytes += chunk.len() as u64;
        }
        anyhow::Ok(bytes)
    })?;
    file.sync_all().with_context(|| format!("cannot write {}", tmp.path.display()))?;
    drop(file);

    let summary: BackupSummary = backup::check(&tmp.path).map_err(|e| {
        anyhow::anyhow!(
            "the backup downloaded from {server} is damaged ({bytes} bytes): {}; nothing was \
             written to {}",
            detail(&e),
            args.file.display()
        )
    })?;
    if to_stdout {
        let mut src =
            File::open(&tmp.path).with_context(|| format!("cannot read {}", tmp.path.display()))?;
        let mut out = std::io::stdout().lock();
        std::io::copy(&mut src, &mut out).context("cannot write the backup to standard output")?;
        out.flush().context("cannot write the backup to standard output")?;
    } else {
        std::fs::rename(&tmp.path, &args.file).with_context(|| {
            format!("cannot move the backup into place at {}", args.file.display())
        })?;
        tmp.keep = true;
        if let Some(dir) = args.file.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
    }
    let line = format!(
        "backup of {server} written to {}: revision {}, {} audit events, {} records, {} bytes \
         (checksum verified)",
        if to_stdout { "standard output".into() } else { args.file.display().to_string() },
        summary.header.revision,
        summary.header.audit_events,
        summary.records,
        summary.bytes
    );
    if to_stdout {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    Ok(ExitCode::from(EXIT_OK))
}

/// What is wrong with a backup file, without repeating the temporary file's name.
fn detail(e: &StoreError) -> String {
    match e {
        StoreError::Backup { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}
