//! `berth serve`: opens the store, starts the controller and serves the API until a signal.
//!
//! Settings come from, in order of precedence: flags, `BERTH_*` environment variables, the
//! config file (`--config`, YAML; `deploy/berth.yaml` is a commented example) and defaults. The
//! Docker Engine is found as the docker CLI finds it (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`,
//! `DOCKER_CERT_PATH`), unless `--docker-host` says otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use berth_api::server::prepare;
use berth_api::{Metrics, ServeConfig};
use berth_controller::docker::{BollardDriver, CredentialStore, DockerConfig, Driver};
use berth_controller::reconcile::{Controller, ControllerConfig};
use berth_controller::store::audit::AUDIT_KEY_FILE;
use berth_controller::store::{AuditKey, SledStore, StoreConfig};
use berth_schemas::quantity::{parse_duration, parse_memory};
use clap::Parser;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::UsageError;
use crate::sync::{StoreApplier, SyncSource, SyncStatus, run_sync};

/// Flags of `berth serve`. Every flag has a `BERTH_*` environment variable and a config-file key.
#[derive(Debug, Parser)]
pub struct Args {
    /// YAML config file; flags and environment variables override it.
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7480].
    #[arg(long, env = "BERTH_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory: the store, the token signing key [default: ./berth-data].
    #[arg(long, env = "BERTH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Docker Engine address (`unix:///var/run/docker.sock`, `tcp://host:2376`) [default: as the
    /// docker CLI, from DOCKER_HOST].
    #[arg(long, value_name = "URL")]
    pub docker_host: Option<String>,
    /// A directory of manifests to keep applied (GitOps sync).
    #[arg(long, env = "BERTH_SYNC_DIR", value_name = "DIR")]
    pub sync_dir: Option<PathBuf>,
    /// Apply admin-only fields (privileged, bind mounts, host namespaces, capabilities,
    /// devices) from --sync-dir. Without it a directory using them is refused; with it each
    /// such apply is audited. Only for a directory that only admins can change.
    #[arg(long, env = "BERTH_SYNC_ALLOW_ADMIN_FIELDS")]
    pub sync_allow_admin_fields: bool,
    /// PEM certificate chain; with --tls-key, the API is served over HTTPS.
    #[arg(long, env = "BERTH_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "BERTH_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// File holding the access-token signing key [default: DATA_DIR/jwt.key, created 0600].
    #[arg(long, env = "BERTH_SIGNING_KEY_FILE", value_name = "FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// File holding the audit chain's key [default: DATA_DIR/audit.key, created 0600].
    #[arg(long, env = "BERTH_AUDIT_KEY_FILE", value_name = "FILE")]
    pub audit_key_file: Option<PathBuf>,
    /// Remove audit events older than this many days [default: keep them all].
    #[arg(long, env = "BERTH_AUDIT_RETENTION_DAYS", value_name = "DAYS")]
    pub audit_retention_days: Option<u32>,
    /// Keep at most this many audit events, removing the oldest [default: keep them all].
    #[arg(long, env = "BERTH_AUDIT_MAX_EVENTS", value_name = "N")]
    pub audit_max_events: Option<u64>,
    /// docker-style config.json with registry credentials for image pulls.
    #[arg(long, env = "BERTH_REGISTRY_AUTH_FILE", value_name = "FILE")]
    pub registry_auth_file: Option<PathBuf>,
    /// Reconciles that may run at once [default: 8].
    #[arg(long, env = "BERTH_CONCURRENCY", value_name = "N")]
    pub concurrency: Option<usize>,
    /// How often everything is relisted against the Engine [default: 30s].
    #[arg(long, env = "BERTH_RELIST_INTERVAL", value_name = "DURATION")]
    pub relist_interval: Option<String>,
    /// Largest request body [default: 1Mi].
    #[arg(long, env = "BERTH_BODY_LIMIT", value_name = "BYTES")]
    pub body_limit: Option<String>,
    /// Store cache size [default: 16Mi, at most what you give].
    #[arg(long, env = "BERTH_CACHE_SIZE", value_name = "BYTES")]
    pub cache_size: Option<String>,
    /// Access token lifetime [default: 15m].
    #[arg(long, env = "BERTH_ACCESS_TOKEN_TTL", value_name = "DURATION")]
    pub access_token_ttl: Option<String>,
    /// Refresh token lifetime [default: 168h].
    #[arg(long, env = "BERTH_REFRESH_TOKEN_TTL", value_name = "DURATION")]
    pub refresh_token_ttl: Option<String>,
    /// Absolute lifetime of a login session: after it, refresh fails and the user logs in
    /// again [default: 168h].
    #[arg(long, env = "BERTH_SESSION_MAX_AGE", value_name = "DURATION")]
    pub session_max_age: Option<String>,
    /// Requests per second each session or API token regains once its burst is spent; more
    /// answer 429 with Retry-After [default: 50].
    #[arg(long, env = "BERTH_TOKEN_RATE_LIMIT", value_name = "PER_SECOND")]
    pub token_rate_limit: Option<u32>,
    /// Requests each session or API token may make at once after a quiet period [default: 200].
    #[arg(long, env = "BERTH_TOKEN_RATE_BURST", value_name = "N")]
    pub token_rate_burst: Option<u32>,
    /// Log lines as JSON instead of text.
    #[arg(long, env = "BERTH_LOG_JSON")]
    pub log_json: bool,
}

/// The config file: the same settings as the flags, in camelCase.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    /// See `--listen`.
    pub listen: Option<SocketAddr>,
    /// See `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// See `--docker-host`.
    pub docker_host: Option<String>,
    /// See `--sync-dir`.
    pub sync_dir: Option<PathBuf>,
    /// See `--sync-allow-admin-fields`.
    pub sync_allow_admin_fields: Option<bool>,
    /// See `--tls-cert` / `--tls-key`.
    pub tls: Option<TlsFileConfig>,
    /// See `--signing-key-file`.
    pub signing_key_file: Option<PathBuf>,
    /// See `--audit-key-file`.
    pub audit_key_file: Option<PathBuf>,
    /// See `--audit-retention-days`.
    pub audit_retention_days: Option<u32>,
    /// See `--audit-max-events`.
    pub audit_max_events: Option<u64>,
    /// See `--registry-auth-file`.
    pub registry_auth_file: Option<PathBuf>,
    /// See `--concurrency`.
    pub concurrency: Option<usize>,
    /// See `--relist-interval`.
    pub relist_interval: Option<String>,
    /// See `--body-limit`.
    pub body_limit: Option<String>,
    /// See `--cache-size`.
    pub cache_size: Option<String>,
    /// See `--access-token-ttl`.
    pub access_token_ttl: Option<String>,
    /// See `--refresh-token-ttl`.
    pub refresh_token_ttl: Option<String>,
    /// See `--session-max-age`.
    pub session_max_age: Option<String>,
    /// See `--token-rate-limit`.
    pub token_rate_limit: Option<u32>,
    /// See `--token-rate-burst`.
    pub token_rate_burst: Option<u32>,
    /// See `--log-json`.
    pub log_json: Option<bool>,
}

/// `tls:` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsFileConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl FileConfig {
    /// Reads and checks a config file.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or is not valid YAML of this shape (unknown keys included).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        Ok(serde_saphyr::from_str(text)?)
    }
}

/// Everything `serve` runs with, after flags, environment, file and defaults are merged.
#[derive(Debug)]
pub struct Settings {
    /// The API server's settings.
    pub api: ServeConfig,
    /// The store's settings.
    pub store: StoreConfig,
    /// How to reach the Engine.
    pub docker: DockerConfig,
    /// The controller's settings.
    pub controller: ControllerConfig,
    /// Registry credentials file.
    pub registry_auth_file: Option<PathBuf>,
    /// The audit key file (`DATA_DIR/audit.key` unless set elsewhere).
    pub audit_key_file: PathBuf,
    /// GitOps directory.
    pub sync_dir: Option<PathBuf>,
    /// Whether the GitOps directory may use admin-only fields.
    pub sync_allow_admin_fields: bool,
    /// JSON log lines.
    pub log_json: bool,
}

fn duration(what: &str, value: Option<String>) -> anyhow::Result<Option<Duration>> {
    value
        .map(|v| parse_duration(&v).map_err(|e| UsageError(format!("{what} {v:?}: {e}")).into()))
        .transpose()
}

fn bytes(what: &str, value: Option<String>) -> anyhow::Result<Option<u64>> {
    value
        .map(|v| parse_memory(&v).map_err(|e| UsageError(format!("{what} {v:?}: {e}")).into()))
        .transpose()
}

impl Settings {
    /// Merges flags (with their environment variables) over the config file over defaults.
    ///
    /// # Errors
    ///
    /// A config file that cannot be read or parsed, or a value that does not parse.
    pub fn resolve(args: Args) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let mut api = ServeConfig::default();
        if let Some(listen) = args.listen.or(file.listen) {
            api.listen = listen;
        }
        if let Some(dir) = args.data_dir.or(file.data_dir) {
            api.data_dir = dir;
        }
        let (file_cert, file_key) = file.tls.map(|t| (t.cert, t.key)).unzip();
        api.tls_cert = args.tls_cert.or(file_cert);
        api.tls_key = args.tls_key.or(file_key);
        api.signing_key_file = args.signing_key_file.or(file.signing_key_file);
        if let Some(d) =
            duration("access token lifetime", args.access_token_ttl.or(file.access_token_ttl))?
        {
            api.access_token_ttl = d;
        }
        if let Some(d) =
            duration("refresh token lifetime", args.refresh_token_ttl.or(file.refresh_token_ttl))?
        {
            api.refresh_token_ttl = d;
        }
        if let Some(d) = duration("session max age", args.session_max_age.or(file.session_max_age))?
        {
            api.session_max_age = d;
        }
        if let Some(b) = bytes("body limit", args.body_limit.or(file.body_limit))? {
            api.body_limit = usize::try_from(b).unwrap_or(usize::MAX);
        }
        if let Some(n) = args.token_rate_limit.or(file.token_rate_limit) {
            if n == 0 {
                bail!(UsageError("token rate limit must be at least 1 request per second".into()));
            }
            api.per_token.per_second = f64::from(n);
        }
        if let Some(n) = args.token_rate_burst.or(file.token_rate_burst) {
            if n == 0 {
                bail!(UsageError("token rate burst must be at least 1 request".into()));
            }
            api.per_token.burst = n;
        }

        let mut store = StoreConfig::new(api.data_dir.clone());
        if let Some(b) = bytes("cache size", args.cache_size.or(file.cache_size))? {
            store.cache_bytes = b;
        }
        let audit_key_file = args
            .audit_key_file
            .or(file.audit_key_file)
            .unwrap_or_else(|| api.data_dir.join(AUDIT_KEY_FILE));
        if let Some(days) = args.audit_retention_days.or(file.audit_retention_days) {
            if days == 0 {
                bail!(UsageError("audit retention must be at least 1 day".into()));
            }
            store.audit_retention.max_age = Some(Duration::from_secs(u64::from(days) * 86_400));
        }
        if let Some(n) = args.audit_max_events.or(file.audit_max_events) {
            if n == 0 {
                bail!(UsageError("audit max events must be at least 1".into()));
            }
            store.audit_retention.max_events = Some(n);
        }

        let mut docker = DockerConfig::from_env();
        if let Some(host) = args.docker_host.or(file.docker_host) {
            docker = docker.with_host(host);
        }

        let mut controller = ControllerConfig::default();
        if let Some(n) = args.concurrency.or(file.concurrency) {
            if n == 0 {
                bail!(UsageError("concurrency must be at least 1".into()));
            }
            controller.runtime.concurrency = n;
        }
        if let Some(d) = duration("relist interval", args.relist_interval.or(file.relist_interval))?
        {
            controller.relist_every = d;
        }

        Ok(Self {
            api,
            store,
            docker,
            controller,
            registry_auth_file: args.registry_auth_file.or(file.registry_auth_file),
            audit_key_file,
            sync_dir: args.sync_dir.or(file.sync_dir),
            sync_allow_admin_fields: args.sync_allow_admin_fields
                || file.sync_allow_admin_fields.unwrap_or(false),
            log_json: args.log_json || file.log_json.unwrap_or(false),
        })
    }
}

/// Runs `berth serve`.
///
/// # Errors
///
/// Bad settings (exit 2), a store that cannot be opened (berth refuses to start rather than
/// serve partial state), an address that cannot be bound.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings = Settings::resolve(args)?;
    // Everything berth writes from here on (store files, keys, backups) is owner-only; the
    // store also tightens what it finds, for library users who keep a looser umask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    crate::init_tracing(settings.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(settings))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let Settings {
        api,
        mut store,
        docker,
        controller,
        registry_auth_file,
        audit_key_file,
        sync_dir,
        sync_allow_admin_fields,
        ..
    } = settings;
    if let Some(dir) = sync_dir.as_ref().filter(|d| !d.is_dir()) {
        bail!(UsageError(format!("--sync-dir {}: not a directory", dir.display())));
    }
    let data_dir = api.data_dir.clone();
    // The data directory first (0700, or tightened with a warning), then the audit key in it.
    berth_controller::store::datadir::create_private(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    for t in berth_controller::store::datadir::tighten(&data_dir).with_context(|| {
        format!("cannot tighten the permissions of the data directory {}", data_dir.display())
    })? {
        tracing::warn!(
            path = %t.path.display(),
            from = format!("{:o}", t.from),
            to = format!("{:o}", t.to),
            "tightened the permissions of the data directory: it was readable by other users"
        );
    }
    store.audit_key = Some(AuditKey::load_or_create(&audit_key_file)?);
    let retention = store.audit_retention;
    let store = SledStore::open(store).with_context(|| {
        format!("refusing to start: the store in {} cannot be used", data_dir.display())
    })?;

    let credentials = match &registry_auth_file {
        Some(path) => CredentialStore::load(path).context("cannot load registry credentials")?,
        None => CredentialStore::empty(),
    };
    let driver: Arc<dyn Driver> =
        Arc::new(BollardDriver::new(&docker).context("bad Docker Engine settings")?);
    let controller =
        Controller::new(Arc::new(store.clone()), driver.clone(), Arc::new(credentials), controller);

    let admin_password = std::env::var("BERTH_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty());
    let prepared =
        prepare(api.clone(), store.clone(), Metrics::new(), controller.readiness(), admin_password)
            .await
            .context("cannot prepare the API server")?;
    if let Some(created) = prepared.bootstrap {
        match created.generated_password {
            // Printed once, on stderr, and never logged: the store keeps only its hash.
            Some(password) => eprintln!(
                "berth: created user {:?} with password {password}\n\
                 berth: it is shown only this once; change it with `berth user passwd`.",
                created.username
            ),
            None => eprintln!(
                "berth: created user {:?} with the password from BERTH_ADMIN_PASSWORD",
                created.username
            ),
        }
    }
    // The sync loop publishes its status here; `GET /api/v1/sync` reads it.
    let sync = sync_dir.map(|dir| {
        let source = SyncSource::new(dir);
        let initial = SyncStatus {
            directory: std::path::absolute(&source.dir)
                .unwrap_or_else(|_| source.dir.clone())
                .display()
                .to_string(),
            source: source.name.clone(),
            ..SyncStatus::default()
        };
        (source, tokio::sync::watch::channel(initial))
    });
    let mut state = prepared.state.with_driver(driver);
    if let Some((_, (_, rx))) = &sync {
        state = state.with_sync_status(rx.clone());
    }
    tracing::info!(data_dir = %data_dir.display(), "starting berth");

    let listener = tokio::net::TcpListener::bind(api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", api.listen))?;
    let local = listener.local_addr().context("cannot read the listening address")?;
    let scheme = if api.tls_cert.is_some() { "https" } else { "http" };
    eprintln!("berth: serving {scheme}://{local}");
    tracing::info!(listen = %local, "serving the API");

    let shutdown = CancellationToken::new();
    let controller_task = tokio::spawn(controller.run(shutdown.child_token()));
    let sync_task = sync.map(|(source, (status, _))| {
        tracing::info!(dir = %source.dir.display(), source = %source.name, "syncing manifests");
        if sync_allow_admin_fields {
            tracing::warn!(dir = %source.dir.display(), "the synced directory may use admin-only fields (--sync-allow-admin-fields); each such apply is audited");
        }
        let applier =
            StoreApplier::new(state.clone()).allow_admin_fields(sync_allow_admin_fields);
        tokio::spawn(run_sync(source, applier, status, shutdown.child_token().cancelled_owned()))
    });
    let retention_task = retention
        .is_enabled()
        .then(|| tokio::spawn(run_audit_retention(store.clone(), shutdown.child_token())));
    let signals = tokio::spawn(wait_for_signals(shutdown.clone()));
    let server_shutdown = shutdown.clone();
    let served =
        berth_api::serve(listener, state, async move { server_shutdown.cancelled().await }).await;
    shutdown.cancel();
    if let Err(e) = controller_task.await {
        tracing::error!(error = %e, "controller task failed");
    }
    if let Some(task) = sync_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "directory sync stopped"),
            Err(e) => tracing::error!(error = %e, "directory sync task failed"),
        }
    }
    if let Some(task) = retention_task
        && let Err(e) = task.await
    {
        tracing::error!(error = %e, "audit retention task failed");
    }
    signals.abort();
    store.close();
    tracing::info!("berth stopped");
    served.context("the API server stopped")
}

/// Removes old audit events at start and then every hour, until `shutdown`.
async fn run_audit_retention(store: SledStore, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Err(e) = store.prune_audit().await {
            tracing::error!(error = %e, "audit retention failed");
        }
    }
}

/// The first SIGINT or SIGTERM starts a graceful shutdown; the second exits at once.
async fn wait_for_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop berth with SIGKILL");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("shutting down: finishing requests and reconciles (signal again to force)");
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    eprintln!("berth: forced exit");
    std::process::exit(130);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_in_deploy_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/berth.yaml");
        let file = FileConfig::load(&path).expect("deploy/berth.yaml must parse");
        assert_eq!(file.listen, Some("127.0.0.1:7480".parse().unwrap()));
        assert!(file.data_dir.is_some());
        assert_eq!(file.token_rate_limit, Some(50), "the documented default");
        assert_eq!(file.token_rate_burst, Some(200), "the documented default");
    }

    #[test]
    fn unknown_config_keys_are_refused_by_name() {
        let err = FileConfig::parse("listen: 127.0.0.1:1\nlisten_port: 3\n").unwrap_err();
        assert!(format!("{err:#}").contains("listen_port"), "{err:#}");
    }

    #[test]
    fn flags_override_the_config_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.yaml");
        std::fs::write(&path, "listen: 127.0.0.1:9000\ndataDir: /srv/berth\nconcurrency: 3\n")
            .unwrap();
        let args = Args::parse_from([
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:9001",
        ]);
        let s = Settings::resolve(args).unwrap();
        assert_eq!(s.api.listen, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(s.api.data_dir, PathBuf::from("/srv/berth"));
        assert_eq!(s.controller.runtime.concurrency, 3);
        assert_eq!(s.api.access_token_ttl, Duration::from_secs(15 * 60));
    }

    #[test]
    fn the_token_rate_limit_comes_from_flag_then_file_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.yaml");
        std::fs::write(&path, "tokenRateLimit: 7\ntokenRateBurst: 20\n").unwrap();
        let p = path.to_str().unwrap();
        let s = Settings::resolve(Args::parse_from(["serve"])).unwrap();
        assert_eq!(s.api.per_token, ServeConfig::default().per_token);
        assert_eq!(s.api.per_token.burst, 200);
        let s = Settings::resolve(Args::parse_from(["serve", "--config", p])).unwrap();
        assert_eq!((s.api.per_token.burst, s.api.per_token.per_second), (20, 7.0));
        let s = Settings::resolve(Args::parse_from([
            "serve",
            "--config",
            p,
            "--token-rate-burst",
            "3",
        ]))
        .unwrap();
        assert_eq!((s.api.per_token.burst, s.api.per_token.per_second), (3, 7.0));
        let err =
            Settings::resolve(Args::parse_from(["serve", "--token-rate-limit", "0"])).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some());
        assert!(err.to_string().contains("token rate limit"), "{err}");
    }

    #[test]
    fn audit_retention_is_off_by_default_and_the_key_sits_in_the_data_dir() {
        let s = Settings::resolve(Args::parse_from(["serve", "--data-dir", "/srv/b"])).unwrap();
        assert!(!s.store.audit_retention.is_enabled());
        assert_eq!(s.audit_key_file, PathBuf::from("/srv/b/audit.key"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.yaml");
        std::fs::write(&path, "auditRetentionDays: 30\nauditKeyFile: /keys/audit.key\n").unwrap();
        let p = path.to_str().unwrap();
        let s = Settings::resolve(Args::parse_from([
            "serve",
            "--config",
            p,
            "--audit-max-events",
            "500",
        ]))
        .unwrap();
        assert_eq!(s.store.audit_retention.max_age, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(s.store.audit_retention.max_events, Some(500));
        assert_eq!(s.audit_key_file, PathBuf::from("/keys/audit.key"));
        let err =
            Settings::resolve(Args::parse_from(["serve", "--audit-max-events", "0"])).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some());
    }

    #[test]
    fn a_bad_duration_is_a_usage_error_naming_the_setting() {
        let args = Args::parse_from(["serve", "--relist-interval", "soon"]);
        let err = Settings::resolve(args).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some());
        assert!(err.to_string().contains("relist interval"), "{err}");
    }
}
