//! One module per subcommand. A command returns the exit code it wants, or an error: a
//! [`UsageError`] exits with status 2 (as clap does for bad flags), anything else with 1.

pub mod apply;
pub mod audit;
pub mod backup;
pub mod completion;
pub mod config;
pub mod delete;
pub mod describe;
pub mod diff;
pub mod exec;
pub mod get;
pub mod import;
pub mod login;
pub mod logs;
pub mod restart;
pub mod restore;
pub mod schema;
pub mod serve;
pub mod sync;
pub mod system;
pub mod token;
pub mod user;
pub mod validate;
pub mod version;

use std::process::ExitCode;

/// Exit status for success.
pub const EXIT_OK: u8 = 0;
/// Exit status when the command ran and found a problem (invalid manifests, a failed request).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for usage errors: bad flags, a missing file, an unknown kind.
pub const EXIT_USAGE: u8 = 2;

/// The user asked for something that cannot be done as asked (exit status 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code for an error a command returned.
pub fn exit_code_for(e: &anyhow::Error) -> ExitCode {
    if e.downcast_ref::<UsageError>().is_some() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}
