//! `berth config ...`: the contexts file `berth login` writes, as `kubectl config` handles
//! kubeconfig: list the contexts, print or switch the current one, delete one. Every write keeps
//! the file 0600 (see [`ConfigFile::save`]). Nothing is sent to a server; a deleted context's
//! session is not revoked (`berth logout --context NAME` does that).
//!
//! Exit status 0; 1 for an unknown context or when no context is current; 2 on usage errors.

use std::process::ExitCode;

use anyhow::bail;

use crate::client::ClientOpts;
use crate::client::config::ConfigFile;

use super::EXIT_OK;
use super::get::print_rows;

/// Arguments of `berth config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ConfigCommand,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `berth config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// List the saved contexts; `*` marks the current one.
    GetContexts {
        /// Print only the names, one a line.
        #[arg(short, long)]
        names: bool,
    },
    /// Print the current context's name.
    CurrentContext,
    /// Make NAME the current context.
    UseContext {
        /// The context's name (from `berth login --as NAME`).
        name: String,
    },
    /// Forget a context and its tokens (without revoking them on the server).
    DeleteContext {
        /// The context's name.
        name: String,
    },
}

/// The "no such context" error, naming the ones there are.
fn unknown(name: &str, file: &ConfigFile) -> anyhow::Error {
    let known: Vec<&str> = file.contexts.keys().map(String::as_str).collect();
    if known.is_empty() {
        anyhow::anyhow!("no context named {name:?}: there are no contexts; run `berth login`")
    } else {
        anyhow::anyhow!("no context named {name:?}; the contexts are: {}", known.join(", "))
    }
}

/// Runs the subcommand.
///
/// # Errors
///
/// An unknown context, no current context, or a contexts file that cannot be read or written.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = args.client.config_path()?;
    let mut file = ConfigFile::load(&path)?;
    match args.command {
        ConfigCommand::GetContexts { names } => {
            if names {
                for n in file.contexts.keys() {
                    println!("{n}");
                }
                return Ok(ExitCode::from(EXIT_OK));
            }
            let mut rows = vec![
                ["CURRENT", "NAME", "SERVER", "USER", "LOGGED-IN"].map(str::to_owned).to_vec(),
            ];
            for (name, c) in &file.contexts {
                let current = file.current_context.as_deref() == Some(name.as_str());
                let logged_in = c.access_token.is_some() || c.refresh_token.is_some();
                rows.push(vec![
                    if current { "*".into() } else { String::new() },
                    name.clone(),
                    c.server.clone(),
                    c.username.clone().unwrap_or_else(|| "-".into()),
                    if logged_in { "yes".into() } else { "no".into() },
                ]);
            }
            print_rows(&rows, false);
        }
        ConfigCommand::CurrentContext => match &file.current_context {
            Some(n) => println!("{n}"),
            None => bail!("no current context: run `berth login` or `berth config use-context`"),
        },
        ConfigCommand::UseContext { name } => {
            if !file.contexts.contains_key(&name) {
                return Err(unknown(&name, &file));
            }
            file.current_context = Some(name.clone());
            file.save(&path)?;
            println!("switched to context {name:?}");
        }
        ConfigCommand::DeleteContext { name } => {
            if file.contexts.remove(&name).is_none() {
                return Err(unknown(&name, &file));
            }
            let was_current = file.current_context.as_deref() == Some(name.as_str());
            if was_current {
                file.current_context = None;
            }
            file.save(&path)?;
            println!("deleted context {name:?}");
            if was_current {
                eprintln!(
                    "warning: it was the current context; none is current now (berth config \
                     use-context NAME)"
                );
            }
        }
    }
    Ok(ExitCode::from(EXIT_OK))
}
