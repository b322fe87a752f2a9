//! `berth token ...`: API tokens for CI and GitOps: list, create (the secret is printed once),
//! revoke. Exit status 0, 1 when the server refuses, 2 on usage errors.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Body, Client, ClientOpts, runtime, seg};

use super::EXIT_OK;
use super::get::print_rows;
use super::user::Role;

/// Arguments of `berth token`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: TokenCommand,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `berth token` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// List your tokens (`--all`: everyone's, admin).
    List {
        /// Every user's tokens.
        #[arg(long)]
        all: bool,
    },
    /// Create a token; prints the secret once, on stdout.
    Create {
        /// A name to recognise it by (`ci`, `gitops`).
        name: String,
        /// Its role (at most your own; yours by default).
        #[arg(long, value_enum)]
        role: Option<Role>,
        /// Days until it expires.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token's id.
        id: String,
    },
}

/// Runs the subcommand.
///
/// # Errors
///
/// A failed request.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.client)?;
    let rt = runtime()?;
    match args.command {
        TokenCommand::List { all } => {
            let q = if all { vec![("all", "true".to_owned())] } else { Vec::new() };
            let tokens: Vec<Value> = rt.block_on(client.get("/api/v1/tokens", &q))?;
            let mut rows = vec![
                ["ID", "NAME", "OWNER", "ROLE", "CREATED", "EXPIRES", "REVOKED"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for t in &tokens {
                let f = |k: &str| match &t[k] {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".into(),
                    v => v.to_string(),
                };
                rows.push(vec![
                    f("id"),
                    f("name"),
                    f("owner"),
                    f("role"),
                    f("created"),
                    f("expires"),
                    f("revoked"),
                ]);
            }
            print_rows(&rows, false);
        }
        TokenCommand::Create { name, role, expires_in_days } => {
            let mut body = json!({ "name": name });
            if let Some(r) = role {
                body["role"] = json!(format!("{r:?}").to_lowercase());
            }
            if let Some(d) = expires_in_days {
                body["expiresInDays"] = json!(d);
            }
            let created: Value =
                rt.block_on(client.json(Method::POST, "/api/v1/tokens", &[], Body::Json(body)))?;
            eprintln!(
                "token {} created; it is shown only this once:",
                created["id"].as_str().unwrap_or("?")
            );
            println!("{}", created["token"].as_str().unwrap_or_default());
        }
        TokenCommand::Revoke { id } => {
            rt.block_on(client.send(
                Method::DELETE,
                &format!("/api/v1/tokens/{}", seg(&id)),
                &[],
                Body::Empty,
            ))?;
            println!("token/{id} revoked");
        }
    }
    Ok(ExitCode::from(EXIT_OK))
}
