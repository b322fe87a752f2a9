//! The `berth` binary: the kubectl-like client and `berth serve`.
//!
//! Each subcommand is one variant of [`Command`] and one module under `cmd/` with an `Args`
//! struct and a `run(args) -> anyhow::Result<ExitCode>` function.

mod client;
mod cmd;
mod import;
mod manifests;
mod sync;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Run the berth server: the store, the controller and the API.
    Serve(cmd::serve::Args),
    /// Write a consistent backup of a running server (or of a stopped one's data directory).
    Backup(cmd::backup::Args),
    /// Restore a backup into an empty data directory.
    Restore(cmd::restore::Args),
    /// Check manifests offline: syntax, schema and semantics, with file:line:col errors.
    Validate(cmd::validate::Args),
    /// Print the JSON Schema of a kind's manifests, or of any berth resource.
    Schema(cmd::schema::Args),
    /// Log in to a berth server and keep the tokens in the contexts file (0600).
    Login(cmd::login::Args),
    /// End the session and forget its tokens.
    Logout(cmd::login::LogoutArgs),
    /// Create or update resources from manifests (files, directories, stdin).
    Apply(cmd::apply::Args),
    /// Show how the server's resources differ from manifests (exit 1 when they do).
    Diff(cmd::diff::Args),
    /// List resources, or show one.
    Get(cmd::get::Args),
    /// Show a resource in detail: spec, status, conditions, recent events.
    Describe(cmd::describe::Args),
    /// Delete resources by manifest or by kind and name.
    Delete(cmd::delete::Args),
    /// Restart a container (sets the berth.dev/restartedAt annotation).
    Restart(cmd::restart::Args),
    /// Query the audit log, or verify its hash chain.
    Audit(cmd::audit::Args),
    /// Manage users (admin).
    User(cmd::user::Args),
    /// Manage API tokens for CI and GitOps.
    Token(cmd::token::Args),
    /// Show the Docker host as berth sees it (`info`, `df`) and prune berth's leftovers.
    System(cmd::system::Args),
    /// Show and switch the saved contexts (`get-contexts`, `use-context`, ...), as kubectl config.
    Config(cmd::config::Args),
    /// Print the client's and the server's versions.
    Version(cmd::version::Args),
    /// Print a shell completion script.
    Completion(cmd::completion::Args),
    /// Convert other formats (docker-compose) into berth manifests.
    Import(cmd::import::Args),
    /// Keep the server equal to a directory of manifests (GitOps), pruning what leaves it.
    Sync(cmd::sync::Args),
    /// Print a container's log (`-f` to follow).
    Logs(cmd::logs::Args),
    /// Run a command in a container (`-i` stdin, `-t` terminal); its exit code becomes berth's.
    Exec(cmd::exec::Args),
}

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with status 2.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Backup(args) => cmd::backup::run(args),
        Command::Restore(args) => cmd::restore::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Schema(args) => cmd::schema::run(args),
        Command::Login(args) => cmd::login::run(args),
        Command::Logout(args) => cmd::login::logout(args),
        Command::Apply(args) => cmd::apply::run(args),
        Command::Diff(args) => cmd::diff::run(args),
        Command::Get(args) => cmd::get::run(args),
        Command::Describe(args) => cmd::describe::run(args),
        Command::Delete(args) => cmd::delete::run(args),
        Command::Restart(args) => cmd::restart::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::User(args) => cmd::user::run(args),
        Command::Token(args) => cmd::token::run(args),
        Command::System(args) => cmd::system::run(args),
        Command::Config(args) => cmd::config::run(args),
        Command::Version(args) => cmd::version::run(args),
        Command::Completion(args) => cmd::completion::run(args, Cli::command()),
        Command::Import(args) => cmd::import::run(args),
        Command::Sync(args) => cmd::sync::run(args),
        Command::Logs(args) => cmd::logs::run(args),
        Command::Exec(args) => cmd::exec::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            cmd::exit_code_for(&e)
        }
    }
}

/// Starts logging to stderr: `RUST_LOG` filters (default `info`), JSON lines when asked.
fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second initialisation (only possible in tests) keeps the first subscriber.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
