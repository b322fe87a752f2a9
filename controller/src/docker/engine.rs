//! [`BollardDriver`]: the [`Driver`] over the Docker Engine API, through bollard.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use berth_schemas::ImageReference;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, EventMessage,
    EventMessageTypeEnum, HealthConfig, HostConfig, ImageInspect, ImageSummary, Mount, MountType,
    NetworkConnectRequest, NetworkingConfig, PortBinding, PortMap, RestartPolicyNameEnum, Volume,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, DataUsageOptions, EventsOptions,
    KillContainerOptions, ListContainersOptions, ListImagesOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveImageOptions, StopContainerOptions,
};
use chrono::{DateTime, Datelike, Utc};
use futures::{StreamExt, TryStreamExt, stream};

use super::config::DockerConfig;
use super::error::DriverError;
use super::streams::{
    ContainerStats, ExecSession, ExecSpec, LogOptions, OutputChunk, OutputStream,
};
use super::types::{
    BoundPort, BuildCacheUsage, ContainerCreate, ContainerFilter, ContainerState, ContainerUsage,
    DiskUsage, EngineEvent, EngineInfo, EngineVersion, EventKind, Health, ImageUsage, MountKind,
    ObservedContainer, ObservedImage, ObservedVolume, Protocol, PullProgress, RegistryCredentials,
    RestartPolicy, VolumeUsage,
};
use super::{Driver, EventStream, LogStream, PullStream, StatsStream};

/// bollard's own per-request limit; berth applies tighter ones per operation.
const TRANSPORT_TIMEOUT: Duration = Duration::from_secs(3600);
/// How many containers are inspected at once when listing.
const INSPECT_PARALLELISM: usize = 8;

/// The Docker Engine driver over bollard. Cheap to clone (clones share one connection pool
/// and one negotiated API version).
#[derive(Debug, Clone)]
pub struct BollardDriver {
    /// Built on first use for a unix socket (bollard refuses a socket path that does not exist
    /// yet, which is just an Engine that is not up); at once for tcp.
    client: Arc<OnceLock<Docker>>,
    host: String,
    request_timeout: Duration,
    negotiated: Arc<AtomicBool>,
}

impl BollardDriver {
    /// Builds a driver without contacting the Engine (the API version is negotiated by the
    /// first call that reaches it). Use this when berth must start while the Engine is down.
    ///
    /// # Errors
    ///
    /// [`DriverError::Config`] for an unsupported `DOCKER_HOST` scheme or missing TLS files.
    pub fn new(config: &DockerConfig) -> Result<Self, DriverError> {
        let host = config.host.clone();
        let config_error = |source: Box<dyn std::error::Error + Send + Sync>| DriverError::Config {
            host: host.clone(),
            source,
        };
        let timeout = TRANSPORT_TIMEOUT.as_secs();
        let version = bollard::API_DEFAULT_VERSION;
        let client = Arc::new(OnceLock::new());
        if host.starts_with("unix://") {
            // Built lazily by `client()`.
        } else if host.starts_with("tcp://")
            || host.starts_with("http://")
            || host.starts_with("https://")
        {
            let docker = match &config.tls {
                Some(tls) => {
                    let files = ["ca.pem", "cert.pem", "key.pem"].map(|f| tls.cert_path.join(f));
                    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
                        return Err(config_error(
                            format!(
                                "DOCKER_TLS_VERIFY is set but {} does not exist \
                                 (DOCKER_CERT_PATH must hold ca.pem, cert.pem and key.pem)",
                                missing.display()
                            )
                            .into(),
                        ));
                    }
                    let [ca, cert, key] = &files;
                    Docker::connect_with_ssl(&host, key, cert, ca, timeout, version)
                        .map_err(|e| config_error(Box::new(e)))?
                }
                None if host.starts_with("https://") => {
                    return Err(config_error(
                        "an https:// host needs TLS settings (DOCKER_TLS_VERIFY and \
                         DOCKER_CERT_PATH)"
                            .into(),
                    ));
                }
                None => Docker::connect_with_http(&host, timeout, version)
                    .map_err(|e| config_error(Box::new(e)))?,
            };
            let _ = client.set(docker);
        } else {
            return Err(config_error(
                format!("unsupported scheme in {host:?}: use unix:// or tcp://").into(),
            ));
        }
        Ok(Self {
            client,
            host,
            request_timeout: config.request_timeout,
            negotiated: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The bollard client, built now if the unix socket has appeared since.
    fn client(&self) -> Result<&Docker, DriverError> {
        if let Some(docker) = self.client.get() {
            return Ok(docker);
        }
        let docker = Docker::connect_with_unix(
            &self.host,
            TRANSPORT_TIMEOUT.as_secs(),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| match e {
            e @ BollardError::SocketNotFoundError(_) => {
                DriverError::EngineUnreachable { host: self.host.clone(), source: Box::new(e) }
            }
            e => DriverError::Config { host: self.host.clone(), source: Box::new(e) },
        })?;
        Ok(self.client.get_or_init(|| docker))
    }

    /// Builds a driver and checks that the Engine answers, negotiating the API version.
    ///
    /// # Errors
    ///
    /// [`DriverError::Config`] as for [`new`](Self::new); [`DriverError::EngineUnreachable`]
    /// (transient: retry with backoff) when no Engine answers.
    pub async fn connect(config: &DockerConfig) -> Result<Self, DriverError> {
        let driver = Self::new(config)?;
        driver.ping().await?;
        Ok(driver)
    }

    /// The address this driver talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Negotiates the API version once, on the first call that reaches the Engine.
    async fn ensure_negotiated(&self) -> Result<(), DriverError> {
        if self.negotiated.load(Ordering::Acquire) {
            return Ok(());
        }
        let result =
            tokio::time::timeout(self.request_timeout, self.client()?.clone().negotiate_version())
                .await;
        match result {
            Ok(Ok(_)) => {
                self.negotiated.store(true, Ordering::Release);
                Ok(())
            }
            Ok(Err(e)) => Err(self.map_error(e, || "the Engine".to_owned())),
            Err(_) => Err(self.unreachable_after_timeout()),
        }
    }

    fn unreachable_after_timeout(&self) -> DriverError {
        DriverError::EngineUnreachable {
            host: self.host.clone(),
            source: format!("no answer within {}s", self.request_timeout.as_secs()).into(),
        }
    }

    /// Runs one call under `limit`, after negotiation.
    async fn call<T, F>(
        &self,
        operation: impl FnOnce() -> String,
        limit: Duration,
        fut: F,
    ) -> Result<T, DriverError>
    where
        F: Future<Output = Result<T, BollardError>>,
    {
        self.ensure_negotiated().await?;
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_error(e, operation)),
            Err(_) => {
                Err(DriverError::Timeout { operation: operation(), seconds: limit.as_secs() })
            }
        }
    }

    /// Maps a bollard error; `what` names the object for not-found errors.
    fn map_error(&self, e: BollardError, what: impl FnOnce() -> String) -> DriverError {
        map_bollard_error(&self.host, e, what)
    }

    async fn inspect_raw(
        &self,
        id_or_name: &str,
    ) -> Result<Option<ContainerInspectResponse>, DriverError> {
        let result = self
            .call(
                || format!("container {id_or_name}"),
                self.request_timeout,
                self.client()?.inspect_container(id_or_name, None),
            )
            .await;
        match result {
            Ok(c) => Ok(Some(c)),
            Err(DriverError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Driver for BollardDriver {
    async fn ping(&self) -> Result<(), DriverError> {
        self.call(|| "the Engine".to_owned(), self.request_timeout, self.client()?.ping())
            .await
            .map(drop)
            .map_err(|e| match e {
                DriverError::Timeout { .. } => self.unreachable_after_timeout(),
                e => e,
            })
    }

    async fn version(&self) -> Result<EngineVersion, DriverError> {
        let v = self
            .call(|| "the Engine".to_owned(), self.request_timeout, self.client()?.version())
            .await?;
        Ok(EngineVersion {
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            min_api_version: v.min_api_version,
            negotiated_api_version: self.client()?.client_version().to_string(),
            os: v.os.unwrap_or_default(),
            arch: v.arch.unwrap_or_default(),
        })
    }

    async fn info(&self) -> Result<EngineInfo, DriverError> {
        let i = self
            .call(|| "the Engine".to_owned(), self.request_timeout, self.client()?.info())
            .await?;
        let n = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        Ok(EngineInfo {
            name: i.name.unwrap_or_default(),
            server_version: i.server_version.unwrap_or_default(),
            containers: n(i.containers),
            containers_running: n(i.containers_running),
            containers_paused: n(i.containers_paused),
            containers_stopped: n(i.containers_stopped),
            images: n(i.images),
            storage_driver: i.driver.unwrap_or_default(),
            kernel_version: i.kernel_version.unwrap_or_default(),
            operating_system: i.operating_system.unwrap_or_default(),
            os_type: i.os_type.unwrap_or_default(),
            architecture: i.architecture.unwrap_or_default(),
            cpus: n(i.ncpu),
            memory_bytes: n(i.mem_total),
            root_dir: i.docker_root_dir.unwrap_or_default(),
        })
    }

    async fn disk_usage(&self) -> Result<DiskUsage, DriverError> {
        // Built from the object lists rather than `GET /system/df`, whose shape changed in API
        // 1.52 (bollard speaks only the new one): the lists read the same on every Engine.
        let size = |v: i64| u64::try_from(v).unwrap_or(0);
        let images = self
            .call(
                || "images".to_owned(),
                self.request_timeout,
                self.client()?.list_images(Some(ListImagesOptions::default())),
            )
            .await?
            .into_iter()
            .map(|i| ImageUsage {
                id: i.id,
                repo_tags: i.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect(),
                size: size(i.size),
                shared_size: u64::try_from(i.shared_size).ok(),
            })
            .collect();
        let options = ListContainersOptions { all: true, size: true, ..Default::default() };
        let containers = self
            .call(
                || "containers".to_owned(),
                // Computing sizes walks every writable layer: allow it more time.
                self.request_timeout * 4,
                self.client()?.list_containers(Some(options)),
            )
            .await?
            .into_iter()
            .map(|c| ContainerUsage {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
                state: ContainerState::from_docker(
                    &c.state.map(|s| s.to_string()).unwrap_or_default(),
                ),
                size_rw: c.size_rw.map_or(0, size),
            })
            .collect();
        let volumes = self
            .call(
                || "volumes".to_owned(),
                self.request_timeout,
                self.client()?.list_volumes(None::<ListVolumesOptions>),
            )
            .await?
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| VolumeUsage {
                name: v.name,
                labels: v.labels,
                size: v.usage_data.as_ref().and_then(|u| u64::try_from(u.size).ok()),
                ref_count: v.usage_data.as_ref().and_then(|u| u64::try_from(u.ref_count).ok()),
            })
            .collect();
        // The build cache is only in `/system/df`; an Engine older than API 1.52 answers in the
        // old shape, which leaves it `None` here.
        let df = self
            .call(
                || "disk usage".to_owned(),
                self.request_timeout * 4,
                // (bollard cannot encode the `type` filter in the query; ask for everything.)
                self.client()?.df(Some(DataUsageOptions { _type: None, verbose: false })),
            )
            .await?;
        let build_cache = df.build_cache_usage.and_then(|b| {
            Some(BuildCacheUsage {
                count: u64::try_from(b.total_count?).ok()?,
                size: u64::try_from(b.total_size?).ok()?,
                reclaimable: b.reclaimable.and_then(|r| u64::try_from(r).ok()).unwrap_or(0),
            })
        });
        Ok(DiskUsage { images, containers, volumes, build_cache })
    }

    async fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> Result<Vec<ObservedContainer>, DriverError> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        let expressions = filter.docker_expressions();
        if !expressions.is_empty() {
            filters.insert("label".into(), expressions);
        }
        let options = ListContainersOptions {
            all: true,
            filters: (!filters.is_empty()).then_some(filters),
            ..Default::default()
        };
        let summaries = self
            .call(
                || "containers".to_owned(),
                self.request_timeout,
                self.client()?.list_containers(Some(options)),
            )
            .await?;
        let ids: Vec<String> = summaries.into_iter().filter_map(|s| s.id).collect();
        let inspected: Vec<Option<ContainerInspectResponse>> = stream::iter(ids)
            .map(|id| async move { self.inspect_raw(&id).await })
            .buffer_unordered(INSPECT_PARALLELISM)
            .try_collect()
            .await?;
        let mut out: Vec<ObservedContainer> = inspected
            .into_iter()
            .flatten()
            .map(observed_container)
            // Labels can change only by re-creation, but a container listed by a stale name
            // filter must not slip through.
            .filter(|c| filter.matches(&c.labels))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn inspect_container(
        &self,
        id_or_name: &str,
    ) -> Result<Option<ObservedContainer>, DriverError> {
        Ok(self.inspect_raw(id_or_name).await?.map(observed_container))
    }

    async fn create_container(&self, spec: &ContainerCreate) -> Result<String, DriverError> {
        refuse_network_modes_as_networks(spec)?;
        let body = create_body(spec);
        let options =
            CreateContainerOptions { name: Some(spec.name.clone()), ..Default::default() };
        let created = self
            .call(
                || format!("image {}", spec.image),
                self.request_timeout,
                self.client()?.create_container(Some(options), body),
            )
            .await
            .map_err(|e| match e {
                DriverError::Conflict { .. } => DriverError::NameInUse { name: spec.name.clone() },
                e => e,
            })?;
        let id = created.id;
        // API 1.41 takes one network at create time; connect the others now.
        for network in spec.networks.iter().skip(1) {
            let request = NetworkConnectRequest {
                container: id.clone(),
                endpoint_config: Some(EndpointSettings::default()),
            };
            let connected = self
                .call(
                    || format!("network {network}"),
                    self.request_timeout,
                    self.client()?.connect_network(network, request),
                )
                .await;
            if let Err(e) = connected {
                // Leave nothing half-made behind; the next reconcile creates it again.
                if let Err(cleanup) = self.remove_container(&id).await {
                    tracing::warn!(
                        error = %cleanup,
                        container = %id,
                        "removing a container whose network connect failed"
                    );
                }
                return Err(e);
            }
        }
        Ok(id)
    }

    async fn inspect_volume(&self, name: &str) -> Result<Option<ObservedVolume>, DriverError> {
        let result = self
            .call(
                || format!("volume {name}"),
                self.request_timeout,
                self.client()?.inspect_volume(name),
            )
            .await;
        match result {
            Ok(v) => Ok(Some(observed_volume(v))),
            Err(DriverError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_volume(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<ObservedVolume, DriverError> {
        let request = VolumeCreateRequest {
            name: Some(name.to_owned()),
            driver: Some("local".to_owned()),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        let created = self
            .call(
                || format!("volume {name}"),
                self.request_timeout,
                self.client()?.create_volume(request),
            )
            .await?;
        Ok(observed_volume(created))
    }

    async fn start_container(&self, id: &str) -> Result<(), DriverError> {
        self.call(
            || format!("container {id}"),
            self.request_timeout,
            self.client()?.start_container(id, None),
        )
        .await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), DriverError> {
        let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptions { t: Some(secs), signal: None };
        self.call(
            || format!("stop container {id}"),
            grace + self.request_timeout,
            self.client()?.stop_container(id, Some(options)),
        )
        .await
        .map_err(|e| match e {
            DriverError::NotFound { .. } => {
                DriverError::NotFound { what: format!("container {id}") }
            }
            e => e,
        })
    }

    async fn kill_container(&self, id: &str, signal: Option<&str>) -> Result<(), DriverError> {
        let options = KillContainerOptions { signal: signal.unwrap_or("SIGKILL").to_owned() };
        self.call(
            || format!("container {id}"),
            self.request_timeout,
            self.client()?.kill_container(id, Some(options)),
        )
        .await
    }

    async fn remove_container(&self, id: &str) -> Result<(), DriverError> {
        let options = RemoveContainerOptions { force: true, v: false, link: false };
        let result = self
            .call(
                || format!("container {id}"),
                self.request_timeout,
                self.client()?.remove_container(id, Some(options)),
            )
            .await;
        match result {
            Ok(()) | Err(DriverError::NotFound { .. }) => Ok(()),
            Err(DriverError::Conflict { message }) if message.contains("already in progress") => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ObservedImage>, DriverError> {
        let result = self
            .call(
                || format!("image {reference}"),
                self.request_timeout,
                self.client()?.inspect_image(reference),
            )
            .await;
        match result {
            Ok(image) => Ok(Some(observed_image(image))),
            Err(DriverError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_images(&self) -> Result<Vec<ObservedImage>, DriverError> {
        let images = self
            .call(
                || "images".to_owned(),
                self.request_timeout,
                self.client()?.list_images(Some(ListImagesOptions::default())),
            )
            .await?;
        Ok(images.into_iter().map(summary_image).collect())
    }

    fn pull_image(&self, reference: &str, credentials: Option<RegistryCredentials>) -> PullStream {
        let image = reference.to_owned();
        let parsed = match ImageReference::parse(reference) {
            Ok(r) => r,
            Err(source) => {
                return stream::once(async move {
                    Err(DriverError::InvalidReference { reference: image, source })
                })
                .boxed();
            }
        };
        // Docker pulls every tag when none is given: always name one (or the digest).
        let tag = parsed.digest.clone().unwrap_or_else(|| parsed.tag_or_latest().to_owned());
        let options = CreateImageOptions {
            from_image: Some(parsed.repository()),
            tag: Some(tag),
            ..Default::default()
        };
        let credentials = credentials.map(|c| DockerCredentials {
            username: Some(c.username),
            password: Some(c.password),
            serveraddress: Some(c.server_address),
            ..Default::default()
        });
        let this = self.clone();
        let start = async move {
            this.ensure_negotiated().await?;
            let host = this.host.clone();
            let image_for_errors = image.clone();
            let progress = this
                .client()?
                .create_image(Some(options), None, credentials)
                .map_ok(|info| PullProgress {
                    layer: info.id,
                    status: info.status.unwrap_or_default(),
                    current: info
                        .progress_detail
                        .as_ref()
                        .and_then(|p| p.current)
                        .and_then(|n| u64::try_from(n).ok()),
                    total: info
                        .progress_detail
                        .as_ref()
                        .and_then(|p| p.total)
                        .and_then(|n| u64::try_from(n).ok()),
                })
                .map_err(move |e| pull_error(&host, &image_for_errors, e));
            Ok::<_, DriverError>(progress)
        };
        // One error ends the stream.
        stream::once(start)
            .try_flatten()
            .scan(false, |failed, item| {
                let out = if *failed { None } else { Some(item) };
                if matches!(out, Some(Err(_))) {
                    *failed = true;
                }
                futures::future::ready(out)
            })
            .boxed()
    }

    async fn remove_image(&self, reference: &str, force: bool) -> Result<(), DriverError> {
        let options = RemoveImageOptions { force, noprune: false, ..Default::default() };
        let result = self
            .call(
                || format!("image {reference}"),
                self.request_timeout,
                self.client()?.remove_image(reference, Some(options), None),
            )
            .await;
        match result {
            Ok(_) | Err(DriverError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn events(&self, since_nano: Option<i64>) -> EventStream {
        let filters =
            HashMap::from([("type".to_owned(), vec!["container".to_owned(), "image".to_owned()])]);
        let options = EventsOptions {
            since: since_nano.map(|n| {
                format!("{}.{:09}", n.div_euclid(1_000_000_000), n.rem_euclid(1_000_000_000))
            }),
            until: None,
            filters: Some(filters),
        };
        let this = self.clone();
        let start = async move {
            this.ensure_negotiated().await?;
            let host = this.host.clone();
            let events = this
                .client()?
                .events(Some(options))
                .map_ok(engine_event)
                .map_err(move |e| map_bollard_error(&host, e, || "events".to_owned()));
            Ok::<_, DriverError>(events)
        };
        stream::once(start)
            .try_flatten()
            .scan(false, |failed, item| {
                let out = if *failed { None } else { Some(item) };
                if matches!(out, Some(Err(_))) {
                    *failed = true;
                }
                futures::future::ready(out)
            })
            .boxed()
    }

    fn logs(&self, id: &str, options: &LogOptions) -> LogStream {
        let opts = bollard::query_parameters::LogsOptions {
            follow: options.follow,
            stdout: options.stdout,
            stderr: options.stderr,
            since: options.since.map_or(0, |s| i32::try_from(s).unwrap_or(i32::MAX)),
            until: 0,
            timestamps: options.timestamps,
            tail: options.tail.map_or_else(|| "all".to_owned(), |n| n.to_string()),
        };
        let this = self.clone();
        let id = id.to_owned();
        let start = async move {
            this.ensure_negotiated().await?;
            let host = this.host.clone();
            let what = format!("container {id}");
            let out = this
                .client()?
                .logs(&id, Some(opts))
                .map_ok(output_chunk)
                .map_err(move |e| map_bollard_error(&host, e, || what.clone()));
            Ok::<_, DriverError>(out)
        };
        stop_after_error(stream::once(start).try_flatten().boxed())
    }

    fn stats(&self, id: &str) -> StatsStream {
        let opts = bollard::query_parameters::StatsOptions { stream: true, one_shot: false };
        let this = self.clone();
        let id = id.to_owned();
        let start = async move {
            this.ensure_negotiated().await?;
            let host = this.host.clone();
            let what = format!("container {id}");
            let out = this
                .client()?
                .stats(&id, Some(opts))
                .map_ok(container_stats)
                .map_err(move |e| map_bollard_error(&host, e, || what.clone()));
            Ok::<_, DriverError>(out)
        };
        stop_after_error(stream::once(start).try_flatten().boxed())
    }

    async fn exec_start(
        &self,
        container: &str,
        spec: &ExecSpec,
    ) -> Result<ExecSession, DriverError> {
        let config = bollard::models::ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            console_size: spec
                .console_size
                .filter(|_| spec.tty)
                .map(|(cols, rows)| vec![usize::from(rows), usize::from(cols)]),
            tty: Some(spec.tty),
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
            cmd: Some(spec.command.clone()),
            user: spec.user.clone(),
            working_dir: spec.working_dir.clone(),
            ..Default::default()
        };
        let what = || format!("container {container}");
        let docker = self.client()?.clone();
        let created =
            self.call(what, self.request_timeout, docker.create_exec(container, config)).await?;
        let options =
            bollard::exec::StartExecOptions { detach: false, tty: spec.tty, output_capacity: None };
        let started = self
            .call(
                || format!("exec {}", created.id),
                self.request_timeout,
                docker.start_exec(&created.id, Some(options)),
            )
            .await?;
        match started {
            bollard::exec::StartExecResults::Attached { output, input } => {
                let host = self.host.clone();
                let exec_id = created.id.clone();
                let output = output
                    .map_ok(output_chunk)
                    .map_err(move |e| map_bollard_error(&host, e, || format!("exec {exec_id}")))
                    .boxed();
                Ok(ExecSession { id: created.id, output: stop_after_error(output), input })
            }
            bollard::exec::StartExecResults::Detached => {
                Err(DriverError::Protocol { source: "the Engine started the exec detached".into() })
            }
        }
    }

    async fn exec_resize(&self, exec_id: &str, cols: u16, rows: u16) -> Result<(), DriverError> {
        let options =
            bollard::query_parameters::ResizeExecOptions { h: i32::from(rows), w: i32::from(cols) };
        let docker = self.client()?.clone();
        self.call(
            || format!("exec {exec_id}"),
            self.request_timeout,
            docker.resize_exec(exec_id, options),
        )
        .await
    }

    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, DriverError> {
        let docker = self.client()?.clone();
        let info = self
            .call(|| format!("exec {exec_id}"), self.request_timeout, docker.inspect_exec(exec_id))
            .await?;
        Ok(if info.running == Some(true) { None } else { info.exit_code })
    }
}

/// Maps a bollard error to a [`DriverError`]; `what` names the object for not-found errors.
fn map_bollard_error(host: &str, e: BollardError, what: impl FnOnce() -> String) -> DriverError {
    match e {
        BollardError::DockerResponseServerError { status_code, message } => match status_code {
            404 => DriverError::NotFound { what: what() },
            409 => DriverError::Conflict { message },
            400 | 403 | 406 | 422 => DriverError::Rejected { message },
            s if s >= 500 => DriverError::Engine { status: s, message },
            s => DriverError::Rejected { message: format!("HTTP {s}: {message}") },
        },
        BollardError::RequestTimeoutError => DriverError::EngineUnreachable {
            host: host.to_owned(),
            source: "no answer in time".into(),
        },
        e @ (BollardError::HyperLegacyError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::HttpClientError { .. }
        | BollardError::IOError { .. }
        | BollardError::SocketNotFoundError(_)) => {
            DriverError::EngineUnreachable { host: host.to_owned(), source: Box::new(e) }
        }
        e => DriverError::Protocol { source: Box::new(e) },
    }
}

/// Maps an error of a pull: registry errors arrive as messages, classified here once so that
/// callers can use [`DriverError::is_transient`] instead of reading them.
fn pull_error(host: &str, image: &str, e: BollardError) -> DriverError {
    let (message, status) = match e {
        BollardError::DockerStreamError { error } => (error, None),
        BollardError::DockerResponseServerError { status_code, message } => {
            (message, Some(status_code))
        }
        e => return map_bollard_error(host, e, || format!("image {image}")),
    };
    let lower = message.to_ascii_lowercase();
    let image = image.to_owned();
    if ["unauthorized", "authentication required", "no basic auth credentials", "denied"]
        .iter()
        .any(|m| lower.contains(m))
    {
        DriverError::RegistryAuth { image, message }
    } else if status == Some(404)
        || ["manifest unknown", "not found", "name unknown"].iter().any(|m| lower.contains(m))
    {
        DriverError::ImageNotFound { image, message }
    } else {
        DriverError::Pull { image, message }
    }
}

/// A Docker timestamp, or `None` for Docker's "never" (year 1) and unparsable ones.
fn timestamp(s: Option<&str>) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s?).ok()?.with_timezone(&Utc);
    (t.year() > 1).then_some(t)
}

/// Parses a `80/tcp` port key.
fn port_key(key: &str) -> Option<(u16, Protocol)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    Some((port.parse().ok()?, Protocol::from_docker(proto)?))
}

fn bound_ports(map: Option<PortMap>) -> Vec<BoundPort> {
    let mut out: Vec<BoundPort> = map
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, bindings)| Some((port_key(&key)?, bindings?)))
        .flat_map(|((container_port, protocol), bindings)| {
            bindings.into_iter().filter_map(move |b| {
                Some(BoundPort {
                    container_port,
                    protocol,
                    host_ip: b.host_ip.unwrap_or_default(),
                    host_port: b.host_port?.parse().ok()?,
                })
            })
        })
        .collect();
    out.sort();
    out
}

fn observed_container(c: ContainerInspectResponse) -> ObservedContainer {
    let state = c.state.unwrap_or_default();
    let config = c.config.unwrap_or_default();
    ObservedContainer {
        id: c.id.unwrap_or_default(),
        name: c.name.unwrap_or_default().trim_start_matches('/').to_owned(),
        labels: config.labels.unwrap_or_default(),
        image: config.image.unwrap_or_default(),
        image_id: c.image.unwrap_or_default(),
        state: state
            .status
            .map_or(ContainerState::Unknown, |s| ContainerState::from_docker(s.as_ref())),
        health: state.health.and_then(|h| h.status).and_then(|s| Health::from_docker(s.as_ref())),
        exit_code: state.exit_code,
        oom_killed: state.oom_killed.unwrap_or(false),
        error: state.error.filter(|e| !e.is_empty()),
        created_at: c.created,
        started_at: timestamp(state.started_at.as_deref()),
        finished_at: timestamp(state.finished_at.as_deref()),
        restart_count: c.restart_count.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
        ports: bound_ports(c.network_settings.and_then(|n| n.ports)),
    }
}

fn observed_image(i: ImageInspect) -> ObservedImage {
    ObservedImage {
        id: i.id.unwrap_or_default(),
        repo_tags: i.repo_tags.unwrap_or_default(),
        repo_digests: i.repo_digests.unwrap_or_default(),
        size: i.size.unwrap_or(0),
        labels: i.config.and_then(|c| c.labels).unwrap_or_default(),
        created_at: i.created,
    }
}

fn summary_image(i: ImageSummary) -> ObservedImage {
    ObservedImage {
        id: i.id,
        repo_tags: i.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect(),
        repo_digests: i.repo_digests.into_iter().filter(|d| d != "<none>@<none>").collect(),
        size: i.size,
        labels: i.labels,
        created_at: DateTime::from_timestamp(i.created, 0),
    }
}

fn engine_event(e: EventMessage) -> EngineEvent {
    let actor = e.actor.unwrap_or_default();
    EngineEvent {
        kind: match e.typ {
            Some(EventMessageTypeEnum::CONTAINER) => EventKind::Container,
            Some(EventMessageTypeEnum::IMAGE) => EventKind::Image,
            other => EventKind::Other(other.map(|t| t.to_string()).unwrap_or_default()),
        },
        action: e.action.unwrap_or_default(),
        id: actor.id.unwrap_or_default(),
        attributes: actor.attributes.unwrap_or_default(),
        time_nano: e
            .time_nano
            .or_else(|| e.time.map(|t| t.saturating_mul(1_000_000_000)))
            .unwrap_or(0),
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn observed_volume(v: Volume) -> ObservedVolume {
    ObservedVolume { name: v.name, driver: v.driver, labels: v.labels, options: v.options }
}

/// Refuses a Docker network mode listed as a network: the Engine would make the first one the
/// container's network mode (`host` gives host networking), bypassing the rules on
/// `networkMode`. Validation refuses them too; this holds even when it was bypassed.
fn refuse_network_modes_as_networks(spec: &ContainerCreate) -> Result<(), DriverError> {
    match spec.networks.iter().find(|n| berth_schemas::container::is_network_mode_name(n)) {
        Some(n) => Err(DriverError::Rejected {
            message: format!(
                "{n:?} is a Docker network mode, not a network; berth sets network modes only \
                 from networkMode"
            ),
        }),
        None => Ok(()),
    }
}

/// The create request for a [`ContainerCreate`].
fn create_body(spec: &ContainerCreate) -> ContainerCreateBody {
    let mut port_bindings: PortMap = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        let binding = PortBinding {
            host_ip: p.host_ip.clone(),
            host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
        };
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    let exposed: Vec<String> = port_bindings.keys().cloned().collect();
    let mounts: Vec<Mount> = spec
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: m.source.clone(),
            typ: Some(match m.kind {
                MountKind::Volume => MountType::VOLUME,
                MountKind::Bind => MountType::BIND,
                MountKind::Tmpfs => MountType::TMPFS,
            }),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();
    let restart_policy = match spec.restart_policy {
        RestartPolicy::No => bollard::models::RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        },
        RestartPolicy::Always => bollard::models::RestartPolicy {
            name: Some(RestartPolicyNameEnum::ALWAYS),
            maximum_retry_count: None,
        },
        RestartPolicy::UnlessStopped => bollard::models::RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        },
        RestartPolicy::OnFailure { max_retries } => bollard::models::RestartPolicy {
            name: Some(RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: max_retries.map(i64::from),
        },
    };
    let healthcheck = spec.healthcheck.as_ref().map(|h| {
        let test = if h.command.is_empty() {
            vec!["NONE".to_owned()]
        } else {
            std::iter::once("CMD".to_owned()).chain(h.command.iter().cloned()).collect()
        };
        HealthConfig {
            test: Some(test),
            interval: h.interval.map(nanos),
            timeout: h.timeout.map(nanos),
            retries: h.retries.map(i64::from),
            start_period: h.start_period.map(nanos),
            start_interval: None,
        }
    });
    // With networks listed, the first is joined at create time, which the Engine expresses as
    // the network mode; a name that means a mode to Docker is never taken from the list.
    let first_network =
        spec.networks.first().filter(|n| !berth_schemas::container::is_network_mode_name(n));
    let network_mode = first_network.cloned().or_else(|| spec.network_mode.clone());
    let networking_config = first_network.map(|n| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(n.clone(), EndpointSettings::default())])),
    });
    let devices = spec
        .devices
        .iter()
        .map(|d| bollard::models::DeviceMapping {
            path_on_host: Some(d.host_path.clone()),
            path_in_container: Some(
                d.container_path.clone().unwrap_or_else(|| d.host_path.clone()),
            ),
            cgroup_permissions: Some(d.permissions.clone().unwrap_or_else(|| "rwm".to_owned())),
        })
        .collect::<Vec<_>>();
    let host_config = HostConfig {
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        mounts: (!mounts.is_empty()).then_some(mounts),
        restart_policy: Some(restart_policy),
        nano_cpus: spec.resources.nano_cpus,
        memory: spec.resources.memory_bytes,
        pids_limit: spec.resources.pids_limit,
        init: spec.init.then_some(true),
        network_mode,
        privileged: spec.privileged.then_some(true),
        pid_mode: spec.pid_mode.clone(),
        cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
        cap_drop: (!spec.cap_drop.is_empty()).then(|| spec.cap_drop.clone()),
        devices: (!devices.is_empty()).then_some(devices),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.cmd.clone(),
        env: (!spec.env.is_empty())
            .then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(spec.labels.clone()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_timeout.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

/// Ends a stream after its first error.
fn stop_after_error<T: Send + 'static>(
    s: futures::stream::BoxStream<'static, Result<T, DriverError>>,
) -> futures::stream::BoxStream<'static, Result<T, DriverError>> {
    s.scan(false, |failed, item| {
        let out = if *failed { None } else { Some(item) };
        if matches!(out, Some(Err(_))) {
            *failed = true;
        }
        futures::future::ready(out)
    })
    .boxed()
}

fn output_chunk(o: bollard::container::LogOutput) -> OutputChunk {
    use bollard::container::LogOutput;
    match o {
        LogOutput::StdOut { message } => {
            OutputChunk { stream: OutputStream::Stdout, data: message }
        }
        LogOutput::StdErr { message } => {
            OutputChunk { stream: OutputStream::Stderr, data: message }
        }
        LogOutput::Console { message } | LogOutput::StdIn { message } => {
            OutputChunk { stream: OutputStream::Console, data: message }
        }
    }
}

fn container_stats(s: bollard::models::ContainerStatsResponse) -> ContainerStats {
    let cpu = s.cpu_stats.unwrap_or_default();
    let precpu = s.precpu_stats.unwrap_or_default();
    let total = |c: &bollard::models::ContainerCpuStats| {
        c.cpu_usage.as_ref().and_then(|u| u.total_usage).unwrap_or(0)
    };
    let online_cpus = cpu.online_cpus.filter(|n| *n > 0).unwrap_or_else(|| {
        cpu.cpu_usage
            .as_ref()
            .and_then(|u| u.percpu_usage.as_ref())
            .map_or(0, |v| u32::try_from(v.len()).unwrap_or(u32::MAX))
    });
    let mem = s.memory_stats.unwrap_or_default();
    let memory_cache = mem.stats.as_ref().map_or(0, |m| {
        m.get("inactive_file")
            .or_else(|| m.get("total_inactive_file"))
            .or_else(|| m.get("cache"))
            .copied()
            .unwrap_or(0)
    });
    let (net_rx, net_tx) =
        s.networks.unwrap_or_default().values().fold((0u64, 0u64), |(r, t), n| {
            (r.saturating_add(n.rx_bytes.unwrap_or(0)), t.saturating_add(n.tx_bytes.unwrap_or(0)))
        });
    let (block_read, block_write) =
        s.blkio_stats.and_then(|b| b.io_service_bytes_recursive).unwrap_or_default().iter().fold(
            (0u64, 0u64),
            |(r, w), e| {
                let v = e.value.unwrap_or(0);
                match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    Some("read") => (r.saturating_add(v), w),
                    Some("write") => (r, w.saturating_add(v)),
                    _ => (r, w),
                }
            },
        );
    ContainerStats {
        read: s.read,
        cpu_total: total(&cpu),
        precpu_total: total(&precpu),
        system_cpu: cpu.system_cpu_usage.unwrap_or(0),
        presystem_cpu: precpu.system_cpu_usage.unwrap_or(0),
        online_cpus,
        memory_usage: mem.usage.unwrap_or(0),
        memory_cache,
        memory_limit: mem.limit.unwrap_or(0),
        net_rx,
        net_tx,
        block_read,
        block_write,
        pids: s.pids_stats.and_then(|p| p.current).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::config::TlsConfig;
    use crate::docker::types::{Healthcheck, MountSpec, PortPublish};

    #[test]
    fn an_unsupported_scheme_is_a_config_error() {
        let config = DockerConfig::default().with_host("ssh://somewhere");
        let err = BollardDriver::new(&config).expect_err("must fail");
        assert!(matches!(err, DriverError::Config { .. }), "{err:?}");
        assert!(!err.is_transient());
    }

    #[test]
    fn tls_without_certificate_files_is_a_config_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = DockerConfig {
            host: "tcp://127.0.0.1:2376".into(),
            tls: Some(TlsConfig { cert_path: dir.path().to_owned() }),
            ..DockerConfig::default()
        };
        let err = BollardDriver::new(&config).expect_err("must fail");
        let chain = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
        assert!(chain.contains("ca.pem"), "{chain}");
    }

    #[tokio::test]
    async fn a_missing_socket_is_an_unreachable_engine() {
        let config = DockerConfig::default().with_host("unix:///nonexistent/berth-test.sock");
        let err = BollardDriver::connect(&config).await.expect_err("must fail");
        assert!(err.is_unreachable(), "{err:?}");
        assert!(err.is_transient());
        assert!(err.to_string().contains("unix:///nonexistent/berth-test.sock"));
    }

    #[tokio::test]
    async fn a_refused_tcp_connection_is_an_unreachable_engine() {
        // Bind then drop a listener to find a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let config = DockerConfig::default().with_host(format!("tcp://127.0.0.1:{port}"));
        let driver = BollardDriver::new(&config).expect("config is valid");
        let err = driver.ping().await.expect_err("must fail");
        assert!(err.is_unreachable(), "{err:?}");
    }

    #[test]
    fn pull_errors_are_classified_from_registry_messages() {
        let e = |m: &str| BollardError::DockerStreamError { error: m.to_owned() };
        assert!(matches!(
            pull_error(
                "h",
                "r/a:1",
                e("Head \"http://r/v2/a/manifests/1\": no basic auth credentials")
            ),
            DriverError::RegistryAuth { .. }
        ));
        assert!(matches!(
            pull_error("h", "r/a:1", e("unauthorized: authentication required")),
            DriverError::RegistryAuth { .. }
        ));
        assert!(matches!(
            pull_error("h", "r/a:9", e("manifest for r/a:9 not found: manifest unknown")),
            DriverError::ImageNotFound { .. }
        ));
        let other =
            pull_error("h", "r/a:1", e("dial tcp 127.0.0.1:1: connect: connection refused"));
        assert!(matches!(other, DriverError::Pull { .. }));
        assert!(other.is_transient());
    }

    #[test]
    fn docker_never_timestamps_are_none() {
        assert_eq!(timestamp(Some("0001-01-01T00:00:00Z")), None);
        assert!(timestamp(Some("2026-11-27T12:21:26.43Z")).is_some());
        assert_eq!(timestamp(None), None);
    }

    #[test]
    fn the_create_body_carries_every_setting() {
        let spec = ContainerCreate {
            name: "berth_default_web".into(),
            image: "berth-test/busybox:1".into(),
            cmd: Some(vec!["sleep".into(), "60".into()]),
            env: vec![("A".into(), "1".into())],
            labels: HashMap::from([("k".into(), "v".into())]),
            ports: vec![
                PortPublish {
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(8080),
                },
                PortPublish {
                    container_port: 53,
                    protocol: Protocol::Udp,
                    host_ip: None,
                    host_port: None,
                },
            ],
            mounts: vec![MountSpec {
                kind: MountKind::Tmpfs,
                source: None,
                target: "/run".into(),
                read_only: false,
            }],
            restart_policy: RestartPolicy::OnFailure { max_retries: Some(3) },
            healthcheck: Some(Healthcheck {
                command: vec!["true".into()],
                interval: Some(Duration::from_secs(2)),
                timeout: None,
                retries: Some(1),
                start_period: None,
            }),
            stop_timeout: Some(Duration::from_secs(5)),
            init: true,
            networks: vec!["n1".into(), "n2".into()],
            ..ContainerCreate::default()
        };
        let body = create_body(&spec);
        assert_eq!(body.env, Some(vec!["A=1".to_owned()]));
        let mut exposed = body.exposed_ports.clone().unwrap_or_default();
        exposed.sort();
        assert_eq!(exposed, vec!["53/udp".to_owned(), "80/tcp".to_owned()]);
        let hc = body.host_config.clone().unwrap_or_default();
        let bindings = hc.port_bindings.unwrap_or_default();
        let web = bindings.get("80/tcp").cloned().flatten().unwrap_or_default();
        assert_eq!(web[0].host_port.as_deref(), Some("8080"));
        assert_eq!(web[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(hc.init, Some(true));
        assert_eq!(hc.network_mode.as_deref(), Some("n1"));
        assert_eq!(hc.restart_policy.and_then(|r| r.maximum_retry_count), Some(3));
        let health = body.healthcheck.unwrap_or_default();
        assert_eq!(health.test, Some(vec!["CMD".to_owned(), "true".to_owned()]));
        assert_eq!(health.interval, Some(2_000_000_000));
        assert_eq!(body.stop_timeout, Some(5));
    }

    #[test]
    fn a_network_mode_listed_as_a_network_never_becomes_the_network_mode() {
        for mode in ["host", "none", "bridge", "default", "container:abc"] {
            let spec =
                ContainerCreate { networks: vec![mode.into()], ..ContainerCreate::default() };
            let hc = create_body(&spec).host_config.unwrap_or_default();
            assert_eq!(hc.network_mode, None, "{mode}");
            assert!(
                matches!(
                    refuse_network_modes_as_networks(&spec),
                    Err(DriverError::Rejected { .. })
                ),
                "{mode}"
            );
        }
    }

    #[test]
    fn port_keys_parse_with_protocol() {
        assert_eq!(port_key("80/tcp"), Some((80, Protocol::Tcp)));
        assert_eq!(port_key("53/udp"), Some((53, Protocol::Udp)));
        assert_eq!(port_key("x/tcp"), None);
    }
}
