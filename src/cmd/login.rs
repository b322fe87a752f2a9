//! `berth login` and `berth logout`: keep a server's tokens in the contexts file (0600), and
//! end the session again. Exit status 0 on success, 1 when the server refuses or cannot be
//! reached, 2 on usage errors.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use crate::client::config::{ConfigFile, Context, normalize_server};
use crate::client::{Body, Client, ClientOpts, expiry, runtime};

use super::{EXIT_OK, UsageError};

/// Arguments of `berth login`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user name.
    #[arg(short, long, default_value = "admin")]
    pub username: String,
    /// Read the password from stdin (one line) instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
    /// Save under this context name (default: `default`) and make it current.
    #[arg(long = "as", value_name = "NAME")]
    pub context_name: Option<String>,
    #[command(flatten)]
    pub client: ClientOpts,
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !from_stdin && stdin.is_terminal() {
        eprint!("Password: ");
        std::io::stderr().flush()?;
    } else if !from_stdin {
        return Err(UsageError(
            "no terminal to prompt for the password on: use --password-stdin".into(),
        )
        .into());
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let pw = line.trim_end_matches(['\r', '\n']).to_owned();
    if pw.is_empty() {
        return Err(UsageError("the password is empty".into()).into());
    }
    Ok(pw)
}

/// Logs in and saves the context.
///
/// # Errors
///
/// [`UsageError`] without a server; a failed login.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = args.client.config_path()?;
    let mut file = ConfigFile::load(&path)?;
    let server = match (&args.client.server, file.context(args.client.context.as_deref())) {
        (Some(s), _) => normalize_server(s),
        (None, Some((_, c))) => c.server.clone(),
        (None, None) => {
            return Err(UsageError("name the server: berth login --server URL".into()).into());
        }
    };
    let password = read_password(args.password_stdin)?;
    // The CA file is kept in the context as an absolute path, so that later commands find it
    // from any directory; without --ca-cert, the context's stays.
    let ca = match &args.client.ca_cert {
        Some(p) => Some(std::path::absolute(p)?),
        None => file
            .context(args.client.context.as_deref())
            .filter(|(_, c)| c.server == server)
            .and_then(|(_, c)| c.ca_cert.clone()),
    };
    let client = Client::anonymous(&server, args.client.verbose, ca.as_deref())?;
    let pair = runtime()?.block_on(client.login(&args.username, &password))?;
    let name = args.context_name.or(args.client.context).unwrap_or_else(|| "default".to_owned());
    file.contexts.insert(
        name.clone(),
        Context {
            server: server.clone(),
            username: Some(args.username.clone()),
            access_token: Some(pair.access_token),
            refresh_token: Some(pair.refresh_token),
            expires_at: Some(expiry(pair.expires_in)),
            ca_cert: ca,
        },
    );
    file.current_context = Some(name.clone());
    file.save(&path)?;
    println!("logged in to {server} as {} (context {name})", args.username);
    Ok(ExitCode::from(EXIT_OK))
}

/// Arguments of `berth logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Revokes the session on the server and forgets the context's tokens.
///
/// # Errors
///
/// A contexts-file error. A server that cannot be reached is reported but the local tokens are
/// still removed.
pub fn logout(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let path = args.client.config_path()?;
    let mut file = ConfigFile::load(&path)?;
    let found = match &args.client.server {
        Some(s) if args.client.context.is_none() => file.context_for_server(s),
        _ => file.context(args.client.context.as_deref()),
    }
    .map(|(n, c)| (n.to_owned(), c.clone()));
    let Some((name, ctx)) = found else {
        println!("not logged in");
        return Ok(ExitCode::from(EXIT_OK));
    };
    if let Some(access) = &ctx.access_token {
        let ca = args.client.ca_cert.as_deref().or(ctx.ca_cert.as_deref());
        let client = Client::with_token(&ctx.server, access, ca)?;
        let body = match &ctx.refresh_token {
            Some(rt) => Body::Json(serde_json::json!({ "refreshToken": rt })),
            None => Body::Empty,
        };
        let res = runtime()?.block_on(client.send(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            &[],
            body,
        ));
        if let Err(e) = res {
            // An expired access token cannot log out; the refresh token is dropped below.
            if e.code() != Some("unauthenticated") {
                eprintln!("warning: the server did not confirm the logout: {e}");
            }
        }
    }
    if let Some(c) = file.contexts.get_mut(&name) {
        c.access_token = None;
        c.refresh_token = None;
        c.expires_at = None;
    }
    file.save(&path)?;
    println!("logged out of {} (context {name})", ctx.server);
    Ok(ExitCode::from(EXIT_OK))
}
