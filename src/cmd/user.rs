//! `berth user ...` (admin): list, create, delete users, change roles, disable and enable
//! them, and reset passwords. Exit status 0, 1 when the server refuses, 2 on usage errors.

use std::io::BufRead;
use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Body, Client, ClientOpts, runtime, seg};

use super::get::print_rows;
use super::{EXIT_OK, UsageError};

/// Arguments of `berth user`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: UserCommand,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Roles.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Role {
    /// Everything, including users and system prune.
    Admin,
    /// Apply, delete, exec.
    Operator,
    /// Read, logs, stats.
    Viewer,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

/// `berth user` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// List users.
    List,
    /// Create a user; the password is read from stdin (one line).
    Create {
        /// The user name.
        username: String,
        /// The role.
        #[arg(long, value_enum)]
        role: Role,
    },
    /// Delete a user.
    Delete {
        /// The user name.
        username: String,
    },
    /// Change a user's role.
    SetRole {
        /// The user name.
        username: String,
        /// The new role.
        #[arg(value_enum)]
        role: Role,
    },
    /// Disable a user (their sessions end).
    Disable {
        /// The user name.
        username: String,
    },
    /// Enable a disabled user.
    Enable {
        /// The user name.
        username: String,
    },
    /// Set a user's password, read from stdin (one line). The user's login sessions end; their
    /// API tokens keep working unless `--revoke-tokens` is given.
    Passwd {
        /// The user name.
        username: String,
        /// Also revoke every API token of the user (for a compromised account).
        #[arg(long)]
        revoke_tokens: bool,
    },
}

fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let pw = line.trim_end_matches(['\r', '\n']).to_owned();
    if pw.is_empty() {
        return Err(UsageError("give the password on stdin".into()).into());
    }
    Ok(pw)
}

/// Runs the subcommand.
///
/// # Errors
///
/// A failed request; [`UsageError`].
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.client)?;
    let rt = runtime()?;
    let path = |u: &str| format!("/api/v1/users/{}", seg(u));
    match args.command {
        UserCommand::List => {
            let users: Vec<Value> = rt.block_on(client.get("/api/v1/users", &[]))?;
            let mut rows = vec![vec![
                "USERNAME".to_owned(),
                "ROLE".into(),
                "DISABLED".into(),
                "CREATED".into(),
            ]];
            for u in &users {
                let f = |k: &str| match &u[k] {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                rows.push(vec![f("username"), f("role"), f("disabled"), f("created")]);
            }
            print_rows(&rows, false);
        }
        UserCommand::Create { username, role } => {
            let password = password_from_stdin()?;
            let body = json!({"username": username, "password": password, "role": role.as_str()});
            rt.block_on(client.json::<Value>(
                Method::POST,
                "/api/v1/users",
                &[],
                Body::Json(body),
            ))?;
            println!("user/{username} created");
        }
        UserCommand::Delete { username } => {
            rt.block_on(client.send(Method::DELETE, &path(&username), &[], Body::Empty))?;
            println!("user/{username} deleted");
        }
        UserCommand::SetRole { username, role } => {
            let body = json!({"role": role.as_str()});
            rt.block_on(client.json::<Value>(
                Method::PATCH,
                &path(&username),
                &[],
                Body::Json(body),
            ))?;
            println!("user/{username} role set to {}", role.as_str());
        }
        UserCommand::Disable { username } => {
            let body = json!({"disabled": true});
            rt.block_on(client.json::<Value>(
                Method::PATCH,
                &path(&username),
                &[],
                Body::Json(body),
            ))?;
            println!("user/{username} disabled");
        }
        UserCommand::Enable { username } => {
            let body = json!({"disabled": false});
            rt.block_on(client.json::<Value>(
                Method::PATCH,
                &path(&username),
                &[],
                Body::Json(body),
            ))?;
            println!("user/{username} enabled");
        }
        UserCommand::Passwd { username, revoke_tokens } => {
            let password = password_from_stdin()?;
            let body = json!({"password": password, "revokeTokens": revoke_tokens});
            rt.block_on(client.send(
                Method::PUT,
                &format!("{}/password", path(&username)),
                &[],
                Body::Json(body),
            ))?;
            if revoke_tokens {
                println!("user/{username} password set; API tokens revoked");
            } else {
                println!("user/{username} password set");
            }
        }
    }
    Ok(ExitCode::from(EXIT_OK))
}
