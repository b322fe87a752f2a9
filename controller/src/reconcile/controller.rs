//! The [`Controller`]: wires the store, the Docker driver and the reconcilers to the runtime's
//! work queue, and feeds the queue from its three triggers.
//!
//! - The store's change feed: a resource added, its spec changed or its deletion requested
//!   queues it; a change of its readiness queues the containers that depend on it.
//! - Docker events: an event about a berth-labelled container queues its resource; an event
//!   about an unlabelled container holding a berth name (`berth_<ns>_<name>`) queues that
//!   resource (a name conflict may have cleared); an image event queues every `Image`. After a
//!   disconnect the stream is resumed with `since` set to the last event seen.
//! - A periodic relist (default 30 s): every resource, plus every resource a berth-labelled
//!   container names (orphans whose resource is gone are removed that way). Docker drops
//!   events for slow readers; the relist is what guarantees convergence.
//!
//! On start, Docker actions a previous run announced in the audit log but never saw the end of
//! (it was killed) are settled by observation ([`intents::settle_interrupted`]).
//!
//! An Engine that cannot be reached keeps berth running: readiness goes false, the connection
//! is retried with backoff, and on reconnect everything is relisted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use berth_schemas::{Container, DynamicObject, Image, Kind, ResourceKey};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::container;
use super::image::{self, ImageConfig};
use super::intents;
use super::{Context, ControllerStore, Error};
use crate::docker::{CredentialStore, Driver, EngineEvent, EventKind};
use crate::labels;
use crate::runtime::{Action, Backoff, Reason, Reconcile, Runtime, RuntimeConfig, Trigger};
use crate::store::{ListQuery, WatchError, WatchEvent, WatchQuery};

/// Tuning of the controller.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    /// The work queue: parallelism (default 8) and per-key backoff.
    pub runtime: RuntimeConfig,
    /// How often everything is relisted (default 30 s).
    pub relist_every: Duration,
    /// The image reconciler's tuning.
    pub image: ImageConfig,
    /// The retry schedule for reaching the Engine (default 250 ms doubling to 30 s).
    pub engine_retry: Backoff,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            runtime: RuntimeConfig::default(),
            relist_every: Duration::from_secs(30),
            image: ImageConfig::default(),
            engine_retry: Backoff {
                initial: Duration::from_millis(250),
                max: Duration::from_secs(30),
                jitter: 0.2,
            },
        }
    }
}

/// berth's control loop. Build it with [`Controller::new`], keep [`Controller::readiness`] for
/// `/readyz`, then [`Controller::run`] until shutdown.
#[derive(Debug)]
pub struct Controller {
    ctx: Context,
    config: ControllerConfig,
    ready: watch::Sender<bool>,
}

/// Runs the reconciler of a key's kind; the runtime calls it.
#[derive(Debug)]
struct Dispatcher {
    ctx: Context,
    image: ImageConfig,
}

impl Reconcile for Dispatcher {
    type Error = Error;

    async fn reconcile(&self, key: ResourceKey, _reason: Reason) -> Result<Action, Error> {
        let stored = self.ctx.store.get(&key).await.map_err(super::store_err("get resource"))?;
        let Some(stored) = stored else {
            return container::remove_orphans(&self.ctx, &key).await;
        };
        match key.kind {
            Kind::Container => {
                let obj: Container = stored.to_typed().map_err(Error::Conversion)?;
                container::reconcile(&obj, &self.ctx).await
            }
            Kind::Image => {
                let obj: Image = stored.to_typed().map_err(Error::Conversion)?;
                image::reconcile(&obj, &self.ctx, &self.image).await
            }
        }
    }

    async fn on_error(&self, key: &ResourceKey, error: &Error, retry_in: Duration) {
        if let Err(e) = super::report_failure(&self.ctx, key, error, retry_in).await {
            warn!(object = %key, error = %e, "could not record the failure in status");
        }
    }
}

impl Controller {
    /// A controller over `store` and `driver`, pulling with `credentials`.
    pub fn new(
        store: Arc<dyn ControllerStore>,
        driver: Arc<dyn Driver>,
        credentials: Arc<CredentialStore>,
        config: ControllerConfig,
    ) -> Self {
        let (ready, _) = watch::channel(false);
        Self { ctx: Context::new(store, driver, credentials), config, ready }
    }

    /// Whether the controller is ready: the Engine answers and the first relist is done. Goes
    /// back to `false` while the Engine is unreachable.
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Runs until `shutdown` is cancelled, then stops the triggers and waits for the running
    /// reconciles to finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let Controller { ctx, config, ready } = self;
        let runtime = Runtime::new(config.runtime.clone());
        let trigger = runtime.trigger();
        let dispatcher = Arc::new(Dispatcher { ctx: ctx.clone(), image: config.image });
        let sources = shutdown.child_token();
        // Intents up to here were written by earlier runs; those without an outcome are
        // settled once the Engine answers.
        let interrupted_up_to = match intents::audit_head(&ctx).await {
            Ok(head) => head,
            Err(e) => {
                warn!(error = %e, "could not read the audit log; interrupted actions stay open");
                None
            }
        };

        let mut tasks = JoinSet::new();
        tasks.spawn(store_feed(ctx.clone(), trigger.clone(), sources.clone()));
        tasks.spawn(docker_feed(
            ctx.clone(),
            trigger.clone(),
            ready,
            config.engine_retry,
            interrupted_up_to,
            sources.clone(),
        ));
        tasks.spawn(relist_every(ctx, trigger, config.relist_every, sources.clone()));
        drop(sources);
        runtime.run(dispatcher, shutdown).await;
        // The trigger tasks hold nothing that needs finishing (they only queue keys, and the
        // queue is gone); one may be waiting on a slow Engine call, so end them rather than
        // wait for it.
        tasks.shutdown().await;
        info!("controller stopped");
    }
}

/// Queues every resource in the store and every resource a container of this instance names.
async fn relist(ctx: &Context, trigger: &Trigger, reason: Reason) -> Result<u64, Error> {
    let list = ctx.store.list(&ListQuery::default()).await.map_err(super::store_err("list"))?;
    let mut keys: HashSet<ResourceKey> = list.items.iter().map(DynamicObject::key).collect();
    match ctx.driver.list_containers(&ctx.owned()).await {
        Ok(containers) => {
            keys.extend(
                containers
                    .iter()
                    .filter_map(|c| labels::owned_resource_key(&c.labels, &ctx.instance)),
            );
        }
        Err(e) => debug!(error = %e, "relist could not list containers"),
    }
    for key in keys {
        if !trigger.send(key, reason).await {
            break;
        }
    }
    Ok(list.revision)
}

async fn relist_every(
    ctx: Context,
    trigger: Trigger,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the feeds list at start themselves
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = relist(&ctx, &trigger, Reason::Relist).await {
                    warn!(error = %e, "periodic relist failed");
                }
            }
        }
    }
}

/// What the store feed remembers per resource to tell spec changes from status writes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    uid: Option<String>,
    generation: Option<u64>,
    deleting: bool,
    ready: bool,
}

impl Seen {
    fn of(obj: &DynamicObject) -> Self {
        Self {
            uid: obj.metadata.uid.clone(),
            generation: obj.metadata.generation,
            deleting: obj.metadata.deletion_timestamp.is_some(),
            ready: berth_schemas::readiness(obj).is_ready(),
        }
    }
}

/// The store triggers: which keys a change of `event` queues, and the bookkeeping behind it.
#[derive(Debug, Default)]
struct StoreTriggers {
    seen: HashMap<ResourceKey, Seen>,
    /// Container → the resources it depends on.
    depends_on: HashMap<ResourceKey, Vec<ResourceKey>>,
}

impl StoreTriggers {
    fn dependencies_of(obj: &DynamicObject) -> Vec<ResourceKey> {
        if obj.kind != Kind::Container {
            return Vec::new();
        }
        obj.to_typed::<berth_schemas::ContainerSpec, serde_json::Value>()
            .map(|c| {
                c.spec
                    .depends_on
                    .iter()
                    .map(|d| {
                        ResourceKey::new(d.kind, d.namespace_or(&obj.metadata.namespace), &d.name)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records `obj` as it is now without queueing anything (the initial list).
    fn remember(&mut self, obj: &DynamicObject) {
        self.seen.insert(obj.key(), Seen::of(obj));
        self.depends_on.insert(obj.key(), Self::dependencies_of(obj));
    }

    /// The keys to queue for one change.
    fn on_event(&mut self, event: &WatchEvent) -> Vec<(ResourceKey, Reason)> {
        let key = event.object.key();
        let mut out = Vec::new();
        let now = Seen::of(&event.object);
        let before = match event.event_type {
            crate::store::EventType::Deleted => {
                self.depends_on.remove(&key);
                self.seen.remove(&key)
            }
            _ => {
                self.depends_on.insert(key.clone(), Self::dependencies_of(&event.object));
                self.seen.insert(key.clone(), now.clone())
            }
        };
        let spec_changed = match &before {
            None => true,
            Some(b) => {
                b.uid != now.uid || b.generation != now.generation || b.deleting != now.deleting
            }
        };
        let deleted = event.event_type == crate::store::EventType::Deleted;
        if spec_changed || deleted {
            out.push((key.clone(), Reason::ObjectChanged));
        }
        let readiness_changed = before.as_ref().map(|b| b.ready) != Some(now.ready) || deleted;
        if readiness_changed {
            for (dependent, deps) in &self.depends_on {
                if deps.contains(&key) {
                    out.push((dependent.clone(), Reason::Dependency));
                }
            }
        }
        out
    }
}

async fn store_feed(ctx: Context, trigger: Trigger, shutdown: CancellationToken) {
    let mut triggers = StoreTriggers::default();
    let mut retry = 0u32;
    let backoff = Backoff::default();
    loop {
        // List, then watch from the list's revision: nothing is missed in between.
        let list = match ctx.store.list(&ListQuery::default()).await {
            Ok(list) => list,
            Err(e) => {
                retry += 1;
                let wait = backoff.delay(retry, 0.0);
                warn!(error = %e, retry_in = ?wait, "could not list the store");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        retry = 0;
        for obj in &list.items {
            triggers.remember(obj);
            if !trigger.send(obj.key(), Reason::Relist).await {
                return;
            }
        }
        let mut watch = match ctx.store.watch(WatchQuery::after(list.revision)) {
            Ok(w) => w,
            Err(WatchError::Closed) => return,
            Err(e) => {
                warn!(error = %e, "could not watch the store; relisting");
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = watch.next() => next,
            };
            match next {
                Ok(event) => {
                    for (key, reason) in triggers.on_event(&event) {
                        if !trigger.send(key, reason).await {
                            return;
                        }
                    }
                }
                Err(WatchError::Closed) => return,
                Err(e) => {
                    warn!(error = %e, "the store watch ended; relisting");
                    break;
                }
            }
        }
    }
}

/// The keys a Docker event concerns: by label for a container of this `instance`, else by
/// name for a container holding a berth name (an unlabelled one, another berth instance's or
/// one made before instance ids: a name conflict may have cleared).
fn keys_for_event(event: &EngineEvent, instance: &str, images: &[ResourceKey]) -> Vec<ResourceKey> {
    match &event.kind {
        EventKind::Container => {
            const RELEVANT: [&str; 13] = [
                "create",
                "start",
                "restart",
                "die",
                "kill",
                "oom",
                "stop",
                "destroy",
                "pause",
                "unpause",
                "rename",
                "update",
                "health_status",
            ];
            if !RELEVANT.contains(&event.base_action()) {
                return Vec::new();
            }
            if let Some(key) = labels::owned_resource_key(&event.attributes, instance) {
                return vec![key];
            }
            event
                .attributes
                .get("name")
                .and_then(|n| key_for_container_name(n))
                .into_iter()
                .collect()
        }
        EventKind::Image => images.to_vec(),
        EventKind::Other(_) => Vec::new(),
    }
}

/// The `Container` resource a berth container name stands for (`berth_<ns>_<name>`).
fn key_for_container_name(name: &str) -> Option<ResourceKey> {
    let rest = name.trim_start_matches('/').strip_prefix("berth_")?;
    let (namespace, name) = rest.split_once('_')?;
    if namespace.is_empty() || name.is_empty() || name.contains('_') {
        return None;
    }
    Some(ResourceKey::new(Kind::Container, namespace, name))
}

async fn docker_feed(
    ctx: Context,
    trigger: Trigger,
    ready: watch::Sender<bool>,
    backoff: Backoff,
    mut interrupted_up_to: Option<u64>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    let mut was_ready = false;
    let mut since: Option<i64> = None;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if let Err(e) = ctx.driver.ping().await {
            ready.send_replace(false);
            failures += 1;
            let wait = backoff.delay(failures, rand::random());
            warn!(error = %e, retry_in = ?wait, "Docker Engine not reachable");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => continue,
            }
        }
        let reason = if failures > 0 || was_ready {
            info!("Docker Engine reachable again");
            Reason::EngineReconnected
        } else {
            Reason::Relist
        };
        failures = 0;
        if let Some(head) = interrupted_up_to {
            match intents::settle_interrupted(&ctx, head).await {
                Ok(_) => interrupted_up_to = None,
                Err(e) => warn!(error = %e, "could not settle interrupted actions; will retry"),
            }
        }
        // Subscribe first, then relist: a change between the two is seen by one or the other.
        // Exits from now on are watched (see `exits`); the stream starts at this instant even
        // on the first connection, so no `kill` after it is missed.
        let watch_from = chrono::Utc::now();
        ctx.stops.watching_from(watch_from);
        let from = since.or(watch_from.timestamp_nanos_opt());
        let mut events = ctx.driver.events(from);
        if let Err(e) = relist(&ctx, &trigger, reason).await {
            warn!(error = %e, "relist after connecting to Docker failed");
        }
        ready.send_replace(true);
        was_ready = true;
        let images = image_keys(&ctx).await;
        let mut images = images;
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = events.next() => next,
            };
            match next {
                Some(Ok(event)) => {
                    since = Some(event.time_nano);
                    // Before the event queues anything: the reconcile it triggers must see it.
                    if event.kind == EventKind::Container
                        && labels::owned_resource_key(&event.attributes, &ctx.instance).is_some()
                    {
                        ctx.stops.on_event(&event.id, event.base_action());
                    }
                    if event.kind == EventKind::Image {
                        images = image_keys(&ctx).await;
                    }
                    for key in keys_for_event(&event, &ctx.instance, &images) {
                        if !trigger.send(key, Reason::DockerEvent).await {
                            return;
                        }
                    }
                }
                Some(Err(e)) => {
                    warn!(error = %e, "Docker event stream ended; reconnecting");
                    break;
                }
                None => {
                    debug!("Docker event stream closed; reconnecting");
                    break;
                }
            }
        }
        ctx.stops.not_watching();
        if ctx.driver.ping().await.is_err() {
            ready.send_replace(false);
        }
    }
}

async fn image_keys(ctx: &Context) -> Vec<ResourceKey> {
    ctx.store
        .list(&ListQuery::kind(Kind::Image))
        .await
        .map(|l| l.items.iter().map(DynamicObject::key).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use berth_schemas::{API_VERSION, ObjectMeta};

    use super::*;
    use crate::store::EventType;

    fn obj(name: &str, generation: u64, spec: serde_json::Value) -> DynamicObject {
        DynamicObject {
            api_version: API_VERSION.into(),
            kind: Kind::Container,
            metadata: ObjectMeta {
                uid: Some(format!("uid-{name}")),
                generation: Some(generation),
                ..ObjectMeta::named(name)
            },
            spec,
            status: serde_json::Value::Null,
        }
    }

    fn event(event_type: EventType, object: DynamicObject) -> WatchEvent {
        WatchEvent { revision: 1, event_type, object }
    }

    fn key(name: &str) -> ResourceKey {
        ResourceKey::new(Kind::Container, "default", name)
    }

    #[test]
    fn a_status_only_write_does_not_queue_the_resource_itself() {
        let mut t = StoreTriggers::default();
        let o = obj("web", 1, serde_json::json!({"image": "busybox"}));
        assert_eq!(
            t.on_event(&event(EventType::Added, o.clone())),
            vec![(key("web"), Reason::ObjectChanged)]
        );
        let mut with_status = o.clone();
        with_status.status = serde_json::json!({"restartCount": 1});
        assert_eq!(t.on_event(&event(EventType::Modified, with_status)), vec![]);
        let mut new_spec = obj("web", 2, serde_json::json!({"image": "busybox:2"}));
        new_spec.status = serde_json::Value::Null;
        assert_eq!(
            t.on_event(&event(EventType::Modified, new_spec)),
            vec![(key("web"), Reason::ObjectChanged)]
        );
    }

    #[test]
    fn a_dependency_becoming_ready_queues_its_dependents() {
        let mut t = StoreTriggers::default();
        let db = obj("db", 1, serde_json::json!({"image": "busybox"}));
        let web =
            obj("web", 1, serde_json::json!({"image": "busybox", "dependsOn": [{"name": "db"}]}));
        t.remember(&db);
        t.remember(&web);
        let mut ready_db = db.clone();
        ready_db.status = serde_json::json!({"observedGeneration": 1, "conditions": [{
            "type": "Ready", "status": "True", "reason": "Running",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1
        }]});
        assert_eq!(
            t.on_event(&event(EventType::Modified, ready_db.clone())),
            vec![(key("web"), Reason::Dependency)]
        );
        // The same readiness again queues nothing.
        assert_eq!(t.on_event(&event(EventType::Modified, ready_db)), vec![]);
    }

    #[test]
    fn container_events_map_to_resources_by_label_or_by_berth_name() {
        let managed = EngineEvent {
            kind: EventKind::Container,
            action: "die".into(),
            id: "abc".into(),
            attributes: HashMap::from([
                (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
                (labels::INSTANCE.to_owned(), "inst-1".to_owned()),
                (labels::KIND.to_owned(), "Container".to_owned()),
                (labels::NAMESPACE.to_owned(), "prod".to_owned()),
                (labels::NAME.to_owned(), "web".to_owned()),
            ]),
            time_nano: 1,
        };
        assert_eq!(
            keys_for_event(&managed, "inst-1", &[]),
            vec![ResourceKey::new(Kind::Container, "prod", "web")]
        );
        let foreign = EngineEvent {
            attributes: HashMap::from([("name".to_owned(), "berth_default_api".to_owned())]),
            action: "destroy".into(),
            ..managed.clone()
        };
        assert_eq!(keys_for_event(&foreign, "inst-1", &[]), vec![key("api")]);
        // Another instance's container is not this instance's resource, but its berth name
        // still maps (it may hold the name one of ours wants).
        let mut other = managed.clone();
        other.attributes.insert(labels::INSTANCE.to_owned(), "inst-2".to_owned());
        assert_eq!(keys_for_event(&other, "inst-1", &[]), vec![]);
        other.attributes.insert("name".to_owned(), "berth_prod_web".to_owned());
        assert_eq!(
            keys_for_event(&other, "inst-1", &[]),
            vec![ResourceKey::new(Kind::Container, "prod", "web")]
        );
        let exec = EngineEvent { action: "exec_start: sh".into(), ..managed };
        assert_eq!(keys_for_event(&exec, "inst-1", &[]), vec![]);
    }

    #[test]
    fn only_berth_shaped_names_map_to_a_resource() {
        assert_eq!(key_for_container_name("/berth_default_web"), Some(key("web")));
        assert_eq!(key_for_container_name("web"), None);
        assert_eq!(key_for_container_name("berth_default"), None);
        assert_eq!(key_for_container_name("berth_a_b_c"), None);
    }
}
