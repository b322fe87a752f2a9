//! `berth restart NAME`: asks for a fresh container by setting the annotation
//! `berth.dev/restartedAt` to now (as `kubectl rollout restart` does), written with the
//! resource's `resourceVersion` so a concurrent change is not overwritten. Exit status 0, 1 when
//! the container does not exist or the write fails.

use std::process::ExitCode;

use berth_schemas::Kind;

use crate::client::{Client, ClientOpts, runtime};

use super::{EXIT_FAILURE, EXIT_OK};

/// The annotation `restart` sets.
pub const RESTARTED_AT: &str = berth_schemas::meta::RESTARTED_AT_ANNOTATION;

/// Arguments of `berth restart`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container's name.
    pub name: String,
    /// The namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Restarts.
///
/// # Errors
///
/// A failed request.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.client)?;
    runtime()?.block_on(async {
        let Some(mut o) = client.get_resource(Kind::Container, &args.namespace, &args.name).await?
        else {
            eprintln!("error: container {:?} not found in namespace {}", args.name, args.namespace);
            return Ok(ExitCode::from(EXIT_FAILURE));
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        o.metadata.annotations.insert(RESTARTED_AT.to_owned(), now);
        o.status = serde_json::Value::Null;
        let m = &mut o.metadata;
        m.uid = None;
        m.generation = None;
        m.creation_timestamp = None;
        m.deletion_timestamp = None;
        m.finalizers.clear();
        client.apply(&[o], false, None).await?;
        println!("container/{} restarted", args.name);
        Ok(ExitCode::from(EXIT_OK))
    })
}
