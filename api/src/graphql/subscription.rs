//! The `Subscription` root: resource changes, Docker events, container logs and stats (shared
//! upstreams, see [`super::hub`]), interactive exec and apply progress.
//!
//! Every subscription holds one of its user's slots (see
//! [`GraphqlConfig::max_subscriptions_per_user`](super::GraphqlConfig)) until it ends, and
//! ends when the server shuts down.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_graphql::{Context, Subscription};
use base64::Engine as _;
use berth_controller::docker::{Driver, ExecSpec, LogOptions, OutputChunk, OutputStream};
use berth_controller::store::{WatchError, WatchQuery};
use berth_schemas::{Kind, ResourceKey};
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

use super::error::{GqlResult, IntoGql, coded};
use super::exec::{ExecAudit, ExecRequest, Input, SessionHandle};
use super::hub::Slot;
use super::policy::{Root, RootPolicy, principal};
use super::query::{docker, parse_kind, parse_selector, state};
use super::types::{
    ApplyProgress, ChangeType, DockerEvent, DockerEventFilter, ExecEvent, ExecEventType, LogLine,
    Resource, ResourceChange, StatsSample, Stream,
};
use crate::error::ErrorChain;
use crate::state::AppState;

/// The subscription root.
#[derive(Debug, Default)]
pub struct SubscriptionRoot;

type Items<T> = BoxStream<'static, GqlResult<T>>;

fn slot(ctx: &Context<'_>) -> GqlResult<Slot> {
    let st = state(ctx)?;
    let p = principal(ctx)?;
    let max = st.config().graphql.max_subscriptions_per_user;
    st.graphql().subscriptions.acquire(&p.username, max).ok_or_else(|| {
        coded(
            "too_many_subscriptions",
            format!("at most {max} concurrent subscriptions per user; end one first"),
        )
    })
}

/// Keeps `keep` alive as long as the stream, and ends the stream at shutdown.
fn owned<T: Send + 'static, K: Send + Sync + 'static>(
    s: BoxStream<'static, T>,
    keep: K,
    st: &AppState,
) -> BoxStream<'static, T> {
    let shutdown = st.shutdown_token().clone();
    s.map(move |x| {
        let _keep = &keep;
        x
    })
    .take_until(shutdown.cancelled_owned())
    .boxed()
}

fn watch_error(e: WatchError) -> async_graphql::Error {
    match e {
        WatchError::Closed => coded("unavailable", "the store is shutting down"),
        e => coded("gone", e.to_string()),
    }
}

/// The Docker container of the `Container` resource `namespace/name` that this server's
/// instance made (the running one when there are several), found by the one lookup of a
/// resource's containers: another berth instance's container is `not_found`.
async fn container_id(
    st: &AppState,
    driver: &dyn Driver,
    namespace: &str,
    name: &str,
) -> GqlResult<String> {
    let key = ResourceKey::new(Kind::Container, namespace, name);
    let found = berth_controller::docker::owned_by(driver, st.resources().instance_id(), &key)
        .await
        .gql()?;
    found
        .into_iter()
        .next()
        .map(|c| c.id)
        .ok_or_else(|| coded("not_found", format!("no Docker container for {key}")))
}

fn parse_since(s: &str) -> GqlResult<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    DateTime::parse_from_rfc3339(s).map(|t| t.timestamp()).map_err(|_| {
        coded("bad_request", format!("since must be RFC 3339 or seconds since the epoch: {s:?}"))
    })
}

/// Splits a chunk of Engine log output into lines, taking the timestamp the Engine put in
/// front of each line.
pub fn split_lines(chunk: &OutputChunk) -> Vec<LogLine> {
    let stream = match chunk.stream {
        OutputStream::Stderr => Stream::Stderr,
        OutputStream::Stdout | OutputStream::Console => Stream::Stdout,
    };
    let text = String::from_utf8_lossy(&chunk.data);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    text.split('\n')
        .map(|l| {
            let l = l.strip_suffix('\r').unwrap_or(l);
            let (timestamp, line) = match l.split_once(' ') {
                Some((ts, rest)) => match DateTime::parse_from_rfc3339(ts) {
                    Ok(t) => (Some(t.with_timezone(&Utc)), rest),
                    Err(_) => (None, l),
                },
                None => match DateTime::parse_from_rfc3339(l) {
                    Ok(t) => (Some(t.with_timezone(&Utc)), ""),
                    Err(_) => (None, l),
                },
            };
            LogLine { stream, line: line.to_owned(), timestamp, dropped: 0 }
        })
        .collect()
}

fn log_lines(
    s: berth_controller::docker::LogStream,
) -> BoxStream<'static, Result<LogLine, async_graphql::Error>> {
    s.flat_map(|item| match item {
        Ok(chunk) => stream::iter(split_lines(&chunk).into_iter().map(Ok).collect::<Vec<_>>()),
        Err(e) => stream::iter(vec![Err(super::error::driver(e))]),
    })
    .boxed()
}

#[Subscription(guard = "RootPolicy(Root::Subscription)")]
impl SubscriptionRoot {
    /// Changes to resources, in store order. Without `sinceRevision`, the current resources
    /// come first as `ADDED`; with it, changes after that revision. A revision older than the
    /// kept history is a `gone` error: relist with the `resources` query and resume from its
    /// `revision`.
    async fn resource_changes(
        &self,
        ctx: &Context<'_>,
        kind: Option<String>,
        namespace: Option<String>,
        label_selector: Option<String>,
        since_revision: Option<String>,
    ) -> Result<Items<ResourceChange>, async_graphql::Error> {
        let keep = slot(ctx)?;
        let st = state(ctx)?;
        let kind = kind.as_deref().map(parse_kind).transpose()?;
        let selector = parse_selector(label_selector.as_deref())?;
        let mut wq = WatchQuery { after_revision: None, kind, namespace: namespace.clone() };
        let mut initial = Vec::new();
        match since_revision {
            Some(rv) => {
                let rev = rv.parse::<u64>().map_err(|_| {
                    coded("bad_request", format!("sinceRevision {rv:?} is not a revision number"))
                })?;
                wq.after_revision = Some(rev);
            }
            None => {
                let q = berth_controller::store::ListQuery {
                    kind,
                    namespace,
                    selector: selector.clone(),
                };
                let list = st.resources().list(&q).await.gql()?;
                wq.after_revision = Some(list.revision);
                initial = list
                    .items
                    .into_iter()
                    .map(|o| {
                        Ok(ResourceChange {
                            kind: ChangeType::Added,
                            revision: o.metadata.resource_version.clone().unwrap_or_default(),
                            object: Resource(o),
                        })
                    })
                    .collect();
            }
        }
        let w = st.resources().watch(wq).map_err(watch_error)?;
        let changes = stream::unfold(Some((w, selector)), |s| async move {
            let (mut w, selector) = s?;
            loop {
                match w.next().await {
                    Ok(ev) if !selector.matches(&ev.object.metadata.labels) => {}
                    Ok(ev) => {
                        let c = ResourceChange {
                            kind: ev.event_type.into(),
                            revision: ev.revision.to_string(),
                            object: Resource(ev.object),
                        };
                        return Some((Ok(c), Some((w, selector))));
                    }
                    Err(e) => return Some((Err(watch_error(e)), None)),
                }
            }
        });
        Ok(owned(stream::iter(initial).chain(changes).boxed(), keep, st))
    }

    /// Docker Engine events (containers and images) from now on, filtered. When the Engine's
    /// event stream drops (an Engine restart), it is resubscribed from the last event's time,
    /// so the subscription carries on without losing or repeating events.
    async fn docker_events(
        &self,
        ctx: &Context<'_>,
        filters: Option<DockerEventFilter>,
    ) -> Result<Items<DockerEvent>, async_graphql::Error> {
        let keep = slot(ctx)?;
        let filters = filters.unwrap_or_default();
        let start = Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let events = super::events::resubscribing(docker(ctx)?, start).filter_map(move |e| {
            let out = filters.matches(&e).then(|| Ok(DockerEvent::from(e)));
            futures::future::ready(out)
        });
        Ok(owned(events.boxed(), keep, state(ctx)?))
    }

    /// A container's log, line by line, streamed (never collected whole). With `follow`, new
    /// lines keep coming from one Engine stream per container shared by every follower; a
    /// follower that reads too slowly skips lines and sees how many in `dropped`.
    #[allow(clippy::too_many_arguments)]
    async fn logs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = "default")] namespace: String,
        name: String,
        #[graphql(desc = "only the last N lines of the existing log")] tail: Option<u64>,
        #[graphql(desc = "RFC 3339 time or seconds since the epoch")] since: Option<String>,
        #[graphql(default)] follow: bool,
        #[graphql(default)] timestamps: bool,
        #[graphql(default = true)] stdout: bool,
        #[graphql(default = true)] stderr: bool,
    ) -> Result<Items<LogLine>, async_graphql::Error> {
        let keep = slot(ctx)?;
        let st = state(ctx)?;
        let driver = docker(ctx)?;
        let id = container_id(st, driver.as_ref(), &namespace, &name).await?;
        let since = since.as_deref().map(parse_since).transpose()?;
        let wanted = move |l: &LogLine| match l.stream {
            Stream::Stdout => stdout,
            Stream::Stderr => stderr,
        };
        let strip = move |mut l: LogLine| {
            if !timestamps {
                l.timestamp = None;
            }
            l
        };
        // Subscribe to the live stream before reading the history, so nothing falls between;
        // lines seen in both are told apart by their Engine timestamps.
        let live = if follow {
            let d = Arc::clone(&driver);
            let cid = id.clone();
            let open = move || {
                let opts = LogOptions {
                    follow: true,
                    tail: None,
                    since: Some(Utc::now().timestamp() - 1),
                    timestamps: true,
                    stdout: true,
                    stderr: true,
                };
                log_lines(d.logs(&cid, &opts))
                    .filter_map(|l| futures::future::ready(l.ok().map(Arc::new)))
                    .boxed()
            };
            Some(st.graphql().logs.subscribe(&id, st.config().graphql.log_buffer, open))
        } else {
            None
        };
        let opts = LogOptions { follow: false, tail, since, timestamps: true, stdout, stderr };
        // `tail: 0` is no past line at all (as `docker logs --tail 0`): no history is read, and
        // a follower sees only lines written after it subscribed (the live stream starts a
        // second early so that nothing falls between).
        let no_history = tail == Some(0);
        let last_seen: Arc<Mutex<Option<DateTime<Utc>>>> =
            Arc::new(Mutex::new(no_history.then(Utc::now)));
        let seen = Arc::clone(&last_seen);
        let history_lines = if no_history {
            futures::stream::empty().boxed()
        } else {
            log_lines(driver.logs(&id, &opts)).boxed()
        };
        let history = history_lines.map(move |l| {
            if let Ok(l) = &l
                && l.timestamp.is_some()
            {
                *seen.lock().unwrap_or_else(PoisonError::into_inner) = l.timestamp;
            }
            l.map(strip)
        });
        let Some(live) = live else {
            return Ok(owned(history.boxed(), keep, st));
        };
        let live = live.filter_map(move |d| {
            let l = &d.item;
            let last = *last_seen.lock().unwrap_or_else(PoisonError::into_inner);
            let newer = match (l.timestamp, last) {
                (Some(t), Some(last)) => t > last,
                _ => true,
            };
            let out = (newer && wanted(l)).then(|| {
                let mut l = strip((**l).clone());
                l.dropped = d.dropped;
                Ok(l)
            });
            futures::future::ready(out)
        });
        Ok(owned(history.chain(live).boxed(), keep, st))
    }

    /// A container's resource use, as `docker stats` computes it, at most one sample per
    /// `intervalMs` (the Engine samples about every second). One Engine stream per container
    /// serves every subscriber.
    async fn stats(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = "default")] namespace: String,
        name: String,
        #[graphql(default = 1000)] interval_ms: u32,
    ) -> Result<Items<StatsSample>, async_graphql::Error> {
        let keep = slot(ctx)?;
        let st = state(ctx)?;
        let driver = docker(ctx)?;
        let id = container_id(st, driver.as_ref(), &namespace, &name).await?;
        let cid = id.clone();
        let open = move || {
            driver
                .stats(&cid)
                .filter_map(|s| {
                    futures::future::ready(s.ok().map(|s| Arc::new(StatsSample::from(&s))))
                })
                .boxed()
        };
        let feed = st.graphql().stats.subscribe(&id, st.config().graphql.stats_buffer, open);
        // Docker's one-second cadence is not exact: allow a tenth of a second early.
        let interval = chrono::Duration::milliseconds(i64::from(interval_ms).saturating_sub(100));
        let mut last: Option<DateTime<Utc>> = None;
        let samples = feed.filter_map(move |d| {
            let t = d.item.timestamp;
            let due = match (last, t) {
                (Some(prev), Some(t)) => t - prev >= interval,
                _ => true,
            };
            let out = if due {
                last = t.or(last);
                let mut s = (*d.item).clone();
                s.dropped = d.dropped;
                Some(Ok(s))
            } else {
                None
            };
            futures::future::ready(out)
        });
        Ok(owned(samples.boxed(), keep, st))
    }

    /// Runs a command in a container: first a `STARTED` event with the session id, then
    /// `OUTPUT` chunks (base64), then `EXIT` with the exit code. Send stdin with `execInput`
    /// and resize the terminal with `execResize`; ending the subscription ends the session.
    #[allow(clippy::too_many_arguments)]
    async fn exec(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = "default")] namespace: String,
        name: String,
        command: Vec<String>,
        #[graphql(default)] tty: bool,
        env: Option<Vec<String>>,
        working_dir: Option<String>,
        user: Option<String>,
    ) -> Result<Items<ExecEvent>, async_graphql::Error> {
        if command.is_empty() {
            return Err(coded("bad_request", "command must not be empty"));
        }
        let keep = slot(ctx)?;
        let st = state(ctx)?;
        let who = principal(ctx)?;
        let owner = who.username.clone();
        let driver = docker(ctx)?;
        let req = ExecRequest {
            key: ResourceKey::new(Kind::Container, namespace, name),
            command,
            user,
            tty,
        };
        let container = super::exec::admit(st, who, driver.as_ref(), &req).await?;
        let mut audit = ExecAudit::start(st, who, &req, &container.id).await?;
        let ExecRequest { command, user, .. } = req;
        let spec = ExecSpec {
            command,
            tty,
            env: env.unwrap_or_default(),
            working_dir,
            user,
            console_size: None,
        };
        let session = match driver.exec_start(&container.id, &spec).await {
            Ok(s) => s,
            Err(e) => {
                let why = ErrorChain(&e).to_string();
                audit.end(Err(why)).await;
                return Err(super::error::driver(e));
            }
        };
        audit.running(Arc::clone(&driver), session.id.clone());
        let session_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = mpsc::channel::<Input>(64);
        let handle = SessionHandle { owner, exec_id: session.id.clone(), input: tx };
        let reg = st.graphql().exec.register(session_id.clone(), handle);
        let started = ExecEvent {
            kind: ExecEventType::Started,
            session_id: session_id.clone(),
            stream: None,
            data: None,
            exit_code: None,
        };
        let run = ExecRun {
            session_id,
            exec_id: session.id,
            output: session.output,
            input: Some(session.input),
            rx,
            driver,
            audit,
            done: false,
        };
        let events = stream::once(futures::future::ready(Ok(started)))
            .chain(stream::unfold(run, ExecRun::step));
        Ok(owned(events.boxed(), (keep, reg), st))
    }

    /// Progress of a resource towards Ready after an apply: one item now, then one per
    /// change, ending at `READY`, `FAILED` or `DELETED`.
    async fn apply_progress(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = "Container")] kind: String,
        #[graphql(default = "default")] namespace: String,
        name: String,
    ) -> Result<Items<ApplyProgress>, async_graphql::Error> {
        let keep = slot(ctx)?;
        let st = state(ctx)?;
        let key = ResourceKey::new(parse_kind(&kind)?, namespace, name);
        let store = st.resources();
        let wq = WatchQuery {
            after_revision: Some(store.revision()),
            kind: Some(key.kind),
            namespace: Some(key.namespace.clone()),
        };
        let w = store.watch(wq).map_err(watch_error)?;
        let current = store
            .get(&key)
            .await
            .gql()?
            .ok_or_else(|| coded("not_found", format!("{key} not found")))?;
        let rev = current.metadata.resource_version.as_deref().and_then(|r| r.parse().ok());
        let (first, done) = ApplyProgress::of(&current, rev.unwrap_or(0));
        let first = stream::once(futures::future::ready(Ok(first)));
        if done {
            return Ok(owned(first.boxed(), keep, st));
        }
        let rest = stream::unfold(Some((w, key)), |s| async move {
            let (mut w, key) = s?;
            loop {
                match w.next().await {
                    Ok(ev) if ev.object.key() != key => {}
                    Ok(ev) if ev.event_type == berth_controller::store::EventType::Deleted => {
                        let (mut p, _) = ApplyProgress::of(&ev.object, ev.revision);
                        p.phase = "DELETED".to_owned();
                        return Some((Ok(p), None));
                    }
                    Ok(ev) => {
                        let (p, done) = ApplyProgress::of(&ev.object, ev.revision);
                        return Some((Ok(p), (!done).then_some((w, key))));
                    }
                    Err(e) => return Some((Err(watch_error(e)), None)),
                }
            }
        });
        Ok(owned(first.chain(rest).boxed(), keep, st))
    }
}

/// A running exec session, stepped by the subscription.
struct ExecRun {
    session_id: String,
    exec_id: String,
    output: berth_controller::docker::LogStream,
    input: Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
    rx: mpsc::Receiver<Input>,
    driver: Arc<dyn Driver>,
    audit: ExecAudit,
    done: bool,
}

impl ExecRun {
    fn event(&self, kind: ExecEventType) -> ExecEvent {
        ExecEvent {
            kind,
            session_id: self.session_id.clone(),
            stream: None,
            data: None,
            exit_code: None,
        }
    }

    async fn step(mut self) -> Option<(GqlResult<ExecEvent>, Self)> {
        if self.done {
            return None;
        }
        loop {
            tokio::select! {
                chunk = self.output.next() => match chunk {
                    Some(Ok(c)) => {
                        let mut e = self.event(ExecEventType::Output);
                        e.stream = Some(match c.stream {
                            OutputStream::Stderr => Stream::Stderr,
                            _ => Stream::Stdout,
                        });
                        e.data = Some(base64::engine::general_purpose::STANDARD.encode(&c.data));
                        return Some((Ok(e), self));
                    }
                    Some(Err(e)) => {
                        self.done = true;
                        let why = ErrorChain(&e).to_string();
                        self.audit.end(Err(why)).await;
                        return Some((Err(super::error::driver(e)), self));
                    }
                    None => break,
                },
                data = self.rx.recv(), if self.input.is_some() => match data {
                    Some(Input::Data(d)) => {
                        let ok = match self.input.as_mut() {
                            Some(w) => w.write_all(&d).await.is_ok() && w.flush().await.is_ok(),
                            None => false,
                        };
                        if !ok {
                            self.input = None;
                            self.rx.close();
                        }
                    }
                    Some(Input::Eof) => {
                        // Half-close the attach connection: the Engine closes the process's
                        // stdin and keeps sending its output. Later input is refused.
                        if let Some(mut w) = self.input.take() {
                            let _ = w.shutdown().await;
                        }
                        self.rx.close();
                    }
                    None => self.input = None,
                },
            }
        }
        // The output ended: the process is gone. The Engine may take a moment to record
        // the exit code.
        self.done = true;
        let mut code = None;
        for _ in 0..40 {
            match self.driver.exec_exit_code(&self.exec_id).await {
                Ok(Some(c)) => {
                    code = Some(c);
                    break;
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => break,
            }
        }
        // Audited before the client hears of the end.
        self.audit.end(Ok(code)).await;
        let mut e = self.event(ExecEventType::Exit);
        e.exit_code = code;
        Some((Ok(e), self))
    }
}
