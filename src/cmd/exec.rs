//! `berth exec [-i] [-t] NAME -- CMD...`: runs a command in a container through the GraphQL
//! `exec` subscription. `-i` forwards stdin (`execInput`) and closes the command's stdin when
//! ours ends (`execInput(eof: true)`), `-t` gives the command a terminal:
//! the local one goes into raw mode and window size changes are forwarded (`execResize`).
//!
//! Exit status: the command's own exit code; 1 when it cannot be started or the connection
//! fails; 2 on usage errors.

use std::io::Write;
use std::process::ExitCode;

use base64::Engine;
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::client::{Client, ClientOpts, runtime};

use super::{EXIT_FAILURE, UsageError};

/// Arguments of `berth exec`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Forward stdin to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal (raw mode here, resize forwarded).
    #[arg(short, long)]
    pub tty: bool,
    /// The namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// The container's name.
    pub name: String,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub client: ClientOpts,
}

const EXEC: &str = "subscription Exec($namespace: String!, $name: String!, $command: [String!]!, \
    $tty: Boolean!) { exec(namespace: $namespace, name: $name, command: $command, tty: $tty) \
    { type sessionId stream data exitCode } }";
const INPUT: &str =
    "mutation In($s: String!, $d: String!) { execInput(sessionId: $s, data: $d, base64: true) }";
const EOF: &str = "mutation Eof($s: String!) { execInput(sessionId: $s, eof: true) }";
const RESIZE: &str = "mutation Rs($s: String!, $c: Int!, $r: Int!) { execResize(sessionId: $s, cols: $c, rows: $r) }";

/// Leaves raw mode when dropped.
struct RawMode;

impl RawMode {
    fn enter() -> Option<Self> {
        crossterm::terminal::enable_raw_mode().ok().map(|()| Self)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

async fn resize(client: &Client, session: &str) {
    if let Ok((cols, rows)) = crossterm::terminal::size() {
        let vars = json!({"s": session, "c": cols, "r": rows});
        let _ = client.graphql(RESIZE, vars).await;
    }
}

/// Runs the command.
///
/// # Errors
///
/// A failed subscription.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.command.is_empty() {
        return Err(UsageError("give the command after --".into()).into());
    }
    let client = std::sync::Arc::new(Client::connect(&args.client)?);
    runtime()?.block_on(async {
        let vars = json!({"namespace": args.namespace, "name": args.name, "command": args.command, "tty": args.tty});
        let mut sub = client.subscribe(EXEC, vars).await?;
        let mut raw = None;
        let mut tasks = tokio::task::JoinSet::new();
        let mut code: Option<i64> = None;
        while let Some(data) = sub.next().await? {
            let ev = &data["exec"];
            match ev["type"].as_str() {
                Some("STARTED") => {
                    let session = ev["sessionId"].as_str().unwrap_or_default().to_owned();
                    if args.tty {
                        raw = RawMode::enter();
                        resize(&client, &session).await;
                        #[cfg(unix)]
                        {
                            let (c, s) = (client.clone(), session.clone());
                            tasks.spawn(async move {
                                use tokio::signal::unix::{SignalKind, signal};
                                let Ok(mut winch) = signal(SignalKind::window_change()) else { return };
                                while winch.recv().await.is_some() {
                                    resize(&c, &s).await;
                                }
                            });
                        }
                    }
                    if args.interactive {
                        let (c, s) = (client.clone(), session.clone());
                        tasks.spawn(async move {
                            let mut stdin = tokio::io::stdin();
                            let mut buf = vec![0u8; 8192];
                            loop {
                                let n = stdin.read(&mut buf).await.unwrap_or(0);
                                if n == 0 {
                                    // End of our stdin: close the command's, so that
                                    // `echo hi | berth exec -i c -- wc -c` ends.
                                    let _ = c.graphql(EOF, json!({"s": s})).await;
                                    break;
                                }
                                let d = base64::engine::general_purpose::STANDARD.encode(&buf[..n]);
                                if c.graphql(INPUT, json!({"s": s, "d": d})).await.is_err() {
                                    break;
                                }
                            }
                        });
                    }
                }
                Some("OUTPUT") => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(ev["data"].as_str().unwrap_or_default())
                        .unwrap_or_default();
                    if ev["stream"] == "STDERR" {
                        let mut e = std::io::stderr().lock();
                        let _ = e.write_all(&bytes).and_then(|()| e.flush());
                    } else {
                        let mut o = std::io::stdout().lock();
                        let _ = o.write_all(&bytes).and_then(|()| o.flush());
                    }
                }
                Some("EXIT") => {
                    code = ev["exitCode"].as_i64();
                    break;
                }
                _ => {}
            }
        }
        drop(raw);
        tasks.abort_all();
        sub.close().await;
        Ok(match code {
            Some(c) => ExitCode::from(u8::try_from(c.clamp(0, 255)).unwrap_or(EXIT_FAILURE)),
            None => {
                eprintln!("error: the command's exit code is unknown");
                ExitCode::from(EXIT_FAILURE)
            }
        })
    })
}
