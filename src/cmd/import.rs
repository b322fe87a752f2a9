//! `berth import compose FILE`: converts a docker-compose file into berth manifests on stdout
//! and lists on stderr what it could not convert. The output is validated before it is
//! printed. Exit status 0 when manifests were written (even with notes), 1 when the output would
//! not validate, 2 when the file cannot be read or is not a compose file.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_schemas::{ParseLimits, parse_and_validate};

use crate::import::compose::{Options, convert, dns_label, to_yaml_stream};

use super::{EXIT_FAILURE, EXIT_OK, UsageError};

/// Arguments of `berth import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub format: Format,
}

/// What to import from.
#[derive(Debug, clap::Subcommand)]
pub enum Format {
    /// A docker-compose file (`compose.yaml`, `docker-compose.yml`).
    Compose {
        /// The compose file (`-` for stdin).
        file: PathBuf,
        /// The namespace for the resources.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// The project name (compose's `name:`, else the file's directory name).
        #[arg(long)]
        project: Option<String>,
        /// Write the manifests to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Converts.
///
/// # Errors
///
/// [`UsageError`] when the file cannot be read or converted.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Format::Compose { file, namespace, project, output } = args.format;
    let (text, base_dir) = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| UsageError(format!("cannot read stdin: {e}")))?;
        (s, std::env::current_dir()?)
    } else {
        let s = std::fs::read_to_string(&file)
            .map_err(|e| UsageError(format!("cannot read {}: {e}", file.display())))?;
        let abs = std::path::absolute(&file)?;
        (s, abs.parent().map(PathBuf::from).unwrap_or_default())
    };
    let project = project.unwrap_or_else(|| {
        base_dir.file_name().map_or("compose".into(), |n| dns_label(&n.to_string_lossy()))
    });
    let opts = Options { project, namespace, base_dir };
    let converted =
        convert(&text, &opts).map_err(|e| UsageError(format!("{}: {e:#}", file.display())))?;
    let header = format!(
        "Converted from {} by `berth import compose`.\nReview before applying; see the notes printed on stderr.",
        file.display()
    );
    let yaml = to_yaml_stream(&converted.resources, &header)?;
    for n in &converted.notes {
        eprintln!("note: {n}");
    }
    if let Err(errors) = parse_and_validate(yaml.as_bytes(), &ParseLimits::default()) {
        for e in &errors {
            eprintln!("<output>:{}:{}: {}: {}", e.line, e.column, e.path, e.message);
        }
        eprintln!(
            "error: the converted manifests do not validate; fix the compose file or edit the output"
        );
        print!("{yaml}");
        return Ok(ExitCode::from(EXIT_FAILURE));
    }
    match output {
        Some(path) => std::fs::write(&path, &yaml)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => print!("{yaml}"),
    }
    let containers = converted.resources.iter().filter(|r| r["kind"] == "Container").count();
    eprintln!(
        "converted {containers} service(s) into {} resource(s); {} note(s)",
        converted.resources.len(),
        converted.notes.len()
    );
    Ok(ExitCode::from(EXIT_OK))
}
