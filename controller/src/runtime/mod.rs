//! The controller runtime: a work queue of resource keys that runs a reconciler with
//! deduplication, one run per key at a time, bounded parallelism and per-key backoff.
//!
//! Triggers (the store's change feed, Docker events, the periodic relist) send keys through a
//! [`Trigger`]; [`Runtime::run`] owns the queue and the reconcile tasks until shut down.
//!
//! # Guarantees
//!
//! - A key triggered many times before it runs is reconciled once.
//! - A key is never reconciled twice at once; a key triggered while its reconcile runs is
//!   reconciled again after that run ends.
//! - At most [`RuntimeConfig::concurrency`] reconciles run at once.
//! - A failing key is retried after [`Backoff`] (100 ms doubling to 5 min, with jitter); a
//!   success resets it. Only a change of the object itself, or the Engine coming back, cuts a
//!   backoff short.
//! - On shutdown no new reconcile starts and the ones running are awaited.

pub mod backoff;
mod queue;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_schemas::ResourceKey;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

pub use backoff::Backoff;
use queue::{Outcome, Queue};

/// What a reconciler asks the runtime to do with its key after a successful run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Run the key again after `after`, even if nothing triggers it sooner.
    pub fn requeue(after: Duration) -> Self {
        Self { requeue_after: Some(after) }
    }

    /// Run the key again only when something triggers it (its object changes, a Docker event
    /// concerns it, or the periodic relist comes round).
    pub fn await_change() -> Self {
        Self { requeue_after: None }
    }

    /// The requested requeue delay, if any.
    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

/// Why a key was queued; recorded as `object.reason` on the reconcile span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The resource was added, changed or marked for deletion in the store.
    ObjectChanged,
    /// A Docker event concerned a Docker object the resource owns.
    DockerEvent,
    /// The periodic relist (or the first list at start-up).
    Relist,
    /// The reconciler asked to run again after a delay.
    Requeue,
    /// The previous run failed and its backoff ran out.
    ErrorBackoff,
    /// Something this resource depends on changed (for example it became Ready).
    Dependency,
    /// The Docker Engine is reachable again after it was not: everything is relisted, and
    /// keys waiting out a backoff (most likely for the Engine itself) run at once.
    EngineReconnected,
}

impl Reason {
    /// A short stable name (`object-changed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ObjectChanged => "object-changed",
            Reason::DockerEvent => "docker-event",
            Reason::Relist => "relist",
            Reason::Requeue => "requeue",
            Reason::ErrorBackoff => "error-backoff",
            Reason::Dependency => "dependency",
            Reason::EngineReconnected => "engine-reconnected",
        }
    }

    /// Whether this trigger runs a key now even while it waits out an error backoff: a change
    /// of its object, or the Engine coming back. Docker events and relists do not.
    pub fn cuts_backoff(self) -> bool {
        matches!(self, Reason::ObjectChanged | Reason::EngineReconnected)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the runtime runs for each key.
///
/// Implementations must be idempotent and cancel-safe: any `.await` inside may be the last one
/// (berth may be killed there), and the next run must converge from whatever state that left.
pub trait Reconcile: Send + Sync + 'static {
    /// The reconciler's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Drives the resource named by `key` one step towards its spec.
    fn reconcile(
        &self,
        key: ResourceKey,
        reason: Reason,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send;

    /// Told after a failed run, before the retry is scheduled, so that the error and the retry
    /// time can be written to the resource's status. Runs inside the key's exclusive slot.
    fn on_error(
        &self,
        key: &ResourceKey,
        error: &Self::Error,
        retry_in: Duration,
    ) -> impl Future<Output = ()> + Send {
        let _ = (key, error, retry_in);
        async {}
    }
}

/// Tuning of the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// How many reconciles may run at once (at least 1).
    pub concurrency: usize,
    /// The retry schedule of failing keys.
    pub backoff: Backoff,
    /// The size of the trigger channel; senders wait when it is full.
    pub trigger_capacity: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self { concurrency: 8, backoff: Backoff::default(), trigger_capacity: 4096 }
    }
}

/// A cloneable handle that queues keys for reconciliation.
#[derive(Debug, Clone)]
pub struct Trigger {
    tx: mpsc::Sender<(ResourceKey, Reason)>,
}

impl Trigger {
    /// Queues `key`. Returns `false` when the runtime has stopped.
    pub async fn send(&self, key: ResourceKey, reason: Reason) -> bool {
        self.tx.send((key, reason)).await.is_ok()
    }

    /// Queues `key` without waiting; returns `false` when the channel is full or closed.
    pub fn try_send(&self, key: ResourceKey, reason: Reason) -> bool {
        self.tx.try_send((key, reason)).is_ok()
    }
}

/// The work queue and its reconcile tasks. Build with [`Runtime::new`], hand out
/// [`Runtime::trigger`]s to event sources, then [`Runtime::run`].
#[derive(Debug)]
pub struct Runtime {
    config: RuntimeConfig,
    tx: mpsc::Sender<(ResourceKey, Reason)>,
    rx: mpsc::Receiver<(ResourceKey, Reason)>,
}

/// What a reconcile task hands back to the loop.
type TaskResult = (ResourceKey, Outcome);

impl Runtime {
    /// A runtime with the given tuning.
    pub fn new(config: RuntimeConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.trigger_capacity.max(1));
        Self { config, tx, rx }
    }

    /// A handle to queue keys with.
    pub fn trigger(&self) -> Trigger {
        Trigger { tx: self.tx.clone() }
    }

    /// Runs reconciles until `shutdown` is cancelled, then waits for the running ones.
    ///
    /// # Guarantees
    ///
    /// See the module documentation. A panicking reconcile counts as a failure of its key.
    pub async fn run<R: Reconcile>(self, reconciler: Arc<R>, shutdown: CancellationToken) {
        let Runtime { config, tx, mut rx } = self;
        // Only outside senders keep the channel open; our own copy would keep it open forever.
        drop(tx);
        let concurrency = config.concurrency.max(1);
        let mut queue = Queue::default();
        let mut tasks: JoinSet<TaskResult> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, ResourceKey> = HashMap::new();
        let mut rng = StdRng::from_os_rng();
        let mut open = true;

        loop {
            let now = Instant::now();
            while tasks.len() < concurrency {
                let Some((key, reason)) = queue.pop_ready(now) else { break };
                let retry_in = config.backoff.delay(queue.failures(&key) + 1, rng.random());
                let span = info_span!(
                    "reconcile",
                    object.kind = %key.kind,
                    object.namespace = %key.namespace,
                    object.name = %key.name,
                    object.reason = %reason,
                );
                let task = run_one(reconciler.clone(), key.clone(), reason, retry_in);
                let handle = tasks.spawn(task.instrument(span));
                running.insert(handle.id(), key);
            }
            let next_due = if tasks.len() < concurrency { queue.next_due() } else { None };

            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(joined) = tasks.join_next_with_id() => {
                    let (id, result) = match joined {
                        Ok((id, result)) => (id, Some(result)),
                        Err(e) => (e.id(), None),
                    };
                    let Some(key) = running.remove(&id) else { continue };
                    let outcome = match result {
                        Some((_, outcome)) => outcome,
                        None => {
                            let delay = config.backoff.delay(queue.failures(&key) + 1, rng.random());
                            warn!(object = %key, retry_in = ?delay, "reconcile task panicked");
                            Outcome::Failed(delay)
                        }
                    };
                    queue.finish(&key, outcome, Instant::now());
                }
                msg = rx.recv(), if open => match msg {
                    Some((key, reason)) => {
                        // Take every trigger already waiting before dispatching, so that a
                        // burst for one key becomes one run.
                        let now = Instant::now();
                        queue.schedule(key, now, reason);
                        while let Ok((key, reason)) = rx.try_recv() {
                            queue.schedule(key, now, reason);
                        }
                    }
                    None => open = false,
                },
                () = sleep_until_opt(next_due), if next_due.is_some() => {}
            }
        }

        debug!(in_flight = tasks.len(), "runtime shutting down; waiting for running reconciles");
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                warn!(error = %e, "reconcile task failed during shutdown");
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

async fn run_one<R: Reconcile>(
    reconciler: Arc<R>,
    key: ResourceKey,
    reason: Reason,
    retry_in: Duration,
) -> TaskResult {
    match reconciler.reconcile(key.clone(), reason).await {
        Ok(action) => {
            debug!(requeue_after = ?action.requeue_after(), "reconciled");
            (key, Outcome::Done(action.requeue_after()))
        }
        Err(error) => {
            warn!(error = %error, retry_in = ?retry_in, "reconcile failed");
            reconciler.on_error(&key, &error, retry_in).await;
            (key, Outcome::Failed(retry_in))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use berth_schemas::Kind;
    use tokio::sync::Semaphore;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("scripted failure")]
    struct Scripted;

    /// A reconciler that records every run and follows a per-call script.
    #[derive(Debug, Default)]
    struct Recorder {
        calls: Mutex<Vec<(ResourceKey, Reason, Instant)>>,
        script: Mutex<VecDeque<Result<Action, ()>>>,
        errors: Mutex<Vec<(ResourceKey, Duration)>>,
        running: Mutex<usize>,
        max_running: Mutex<usize>,
        gate: Option<Arc<Semaphore>>,
    }

    impl Recorder {
        fn with_script(script: Vec<Result<Action, ()>>) -> Self {
            Self { script: Mutex::new(script.into()), ..Self::default() }
        }

        fn calls(&self) -> Vec<(ResourceKey, Reason, Instant)> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    impl Reconcile for Recorder {
        type Error = Scripted;

        async fn reconcile(&self, key: ResourceKey, reason: Reason) -> Result<Action, Scripted> {
            if let Ok(mut c) = self.calls.lock() {
                c.push((key, reason, Instant::now()));
            }
            if let (Ok(mut r), Ok(mut m)) = (self.running.lock(), self.max_running.lock()) {
                *r += 1;
                *m = (*m).max(*r);
            }
            if let Some(gate) = &self.gate {
                let _permit = gate.acquire().await;
            }
            if let Ok(mut r) = self.running.lock() {
                *r -= 1;
            }
            let next = self.script.lock().ok().and_then(|mut s| s.pop_front());
            match next {
                Some(Ok(action)) => Ok(action),
                Some(Err(())) => Err(Scripted),
                None => Ok(Action::await_change()),
            }
        }

        async fn on_error(&self, key: &ResourceKey, _error: &Scripted, retry_in: Duration) {
            if let Ok(mut e) = self.errors.lock() {
                e.push((key.clone(), retry_in));
            }
        }
    }

    fn key(name: &str) -> ResourceKey {
        ResourceKey::new(Kind::Container, "default", name)
    }

    fn no_jitter(concurrency: usize) -> RuntimeConfig {
        RuntimeConfig {
            concurrency,
            backoff: Backoff { jitter: 0.0, ..Backoff::default() },
            ..RuntimeConfig::default()
        }
    }

    /// Lets the runtime and its tasks run until nothing more can happen without time passing.
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_triggered_twice_before_it_runs_is_reconciled_once() {
        let rec = Arc::new(Recorder::default());
        let rt = Runtime::new(no_jitter(8));
        let trigger = rt.trigger();
        assert!(trigger.try_send(key("a"), Reason::ObjectChanged));
        assert!(trigger.try_send(key("a"), Reason::DockerEvent));
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(rt.run(rec.clone(), shutdown.clone()));
        settle().await;
        shutdown.cancel();
        run.await.expect("runtime task");
        assert_eq!(rec.calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_changed_while_in_flight_is_reconciled_again_after_but_never_concurrently() {
        let gate = Arc::new(Semaphore::new(0));
        let rec = Arc::new(Recorder { gate: Some(gate.clone()), ..Recorder::default() });
        let rt = Runtime::new(no_jitter(8));
        let trigger = rt.trigger();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(rt.run(rec.clone(), shutdown.clone()));
        trigger.send(key("a"), Reason::ObjectChanged).await;
        settle().await;
        trigger.send(key("a"), Reason::ObjectChanged).await;
        trigger.send(key("a"), Reason::DockerEvent).await;
        settle().await;
        assert_eq!(rec.calls().len(), 1, "the second run must wait for the first");
        gate.add_permits(10);
        settle().await;
        shutdown.cancel();
        run.await.expect("runtime task");
        assert_eq!(rec.calls().len(), 2);
        assert_eq!(rec.max_running.lock().map(|m| *m).unwrap_or(0), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_reconciles_run_at_once_than_the_configured_concurrency() {
        let gate = Arc::new(Semaphore::new(0));
        let rec = Arc::new(Recorder { gate: Some(gate.clone()), ..Recorder::default() });
        let rt = Runtime::new(no_jitter(2));
        let trigger = rt.trigger();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(rt.run(rec.clone(), shutdown.clone()));
        for name in ["a", "b", "c", "d", "e"] {
            trigger.send(key(name), Reason::Relist).await;
        }
        settle().await;
        assert_eq!(rec.calls().len(), 2);
        gate.add_permits(10);
        settle().await;
        shutdown.cancel();
        run.await.expect("runtime task");
        assert_eq!(rec.calls().len(), 5);
        assert_eq!(rec.max_running.lock().map(|m| *m).unwrap_or(0), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_and_a_success_resets_the_backoff() {
        let script = vec![Err(()), Err(()), Err(()), Ok(Action::await_change())];
        let rec = Arc::new(Recorder::with_script(script));
        let rt = Runtime::new(no_jitter(8));
        let trigger = rt.trigger();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(rt.run(rec.clone(), shutdown.clone()));
        trigger.send(key("a"), Reason::ObjectChanged).await;
        settle().await;
        for step in [100, 200, 400] {
            tokio::time::advance(Duration::from_millis(step)).await;
            settle().await;
        }
        let calls = rec.calls();
        assert_eq!(calls.len(), 4);
        let gaps: Vec<u128> = calls.windows(2).map(|w| (w[1].2 - w[0].2).as_millis()).collect();
        assert_eq!(gaps, vec![100, 200, 400]);
        assert_eq!(calls[1].1, Reason::ErrorBackoff);
        let told: Vec<u128> = rec
            .errors
            .lock()
            .map(|e| e.iter().map(|(_, d)| d.as_millis()).collect())
            .unwrap_or_default();
        assert_eq!(told, vec![100, 200, 400], "on_error must be told the retry delay");

        // After the success, a new failure starts again at 100 ms.
        if let Ok(mut s) = rec.script.lock() {
            s.push_back(Err(()));
        }
        trigger.send(key("a"), Reason::ObjectChanged).await;
        settle().await;
        tokio::time::advance(Duration::from_millis(100)).await;
        settle().await;
        let calls = rec.calls();
        assert_eq!(calls.len(), 6);
        assert_eq!((calls[5].2 - calls[4].2).as_millis(), 100);
        shutdown.cancel();
        run.await.expect("runtime task");
    }

    #[tokio::test(start_paused = true)]
    async fn requeue_runs_the_key_again_after_the_delay_and_await_change_does_not() {
        let script = vec![Ok(Action::requeue(Duration::from_secs(10))), Ok(Action::await_change())];
        let rec = Arc::new(Recorder::with_script(script));
        let rt = Runtime::new(no_jitter(8));
        let trigger = rt.trigger();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(rt.run(rec.clone(), shutdown.clone()));
        trigger.send(key("a"), Reason::ObjectChanged).await;
        settle().await;
        tokio::time::advance(Duration::from_secs(9)).await;
        settle().await;
        assert_eq!(rec.calls().len(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        assert_eq!(rec.calls().len(), 2);
        assert_eq!(rec.calls()[1].1, Reason::Requeue);
        tokio::time::advance(Duration::from_secs(3600)).await;
        settle().await;
        assert_eq!(rec.calls().len(), 2);
        shutdown.cancel();
        run.await.expect("runtime task");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_a_running_reconcile_and_starts_no_new_one() {
        let gate = Arc::new(Semaphore::new(0));
        let rec = Arc::new(Recorder { gate: Some(gate.clone()), ..Recorder::default() });
        let rt = Runtime::new(no_jitter(1));
        let trigger = rt.trigger();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(rt.run(rec.clone(), shutdown.clone()));
        trigger.send(key("a"), Reason::ObjectChanged).await;
        trigger.send(key("b"), Reason::ObjectChanged).await;
        settle().await;
        shutdown.cancel();
        settle().await;
        assert!(!run.is_finished(), "the runtime must wait for the running reconcile");
        gate.add_permits(10);
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("runtime stops once the running reconcile ends")
            .expect("runtime task");
        assert_eq!(rec.calls().len(), 1, "no reconcile may start after shutdown");
        assert_eq!(*rec.running.lock().expect("lock"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn docker_events_for_a_failing_key_wait_for_its_backoff() {
        let rec = Arc::new(Recorder::with_script(vec![Err(())]));
        let rt = Runtime::new(RuntimeConfig {
            backoff: Backoff { initial: Duration::from_secs(60), ..no_jitter(8).backoff },
            ..no_jitter(8)
        });
        let trigger = rt.trigger();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(rt.run(rec.clone(), shutdown.clone()));
        trigger.send(key("a"), Reason::ObjectChanged).await;
        settle().await;
        for _ in 0..5 {
            trigger.send(key("a"), Reason::DockerEvent).await;
        }
        settle().await;
        assert_eq!(rec.calls().len(), 1);
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
        assert_eq!(rec.calls().len(), 2);
        shutdown.cancel();
        run.await.expect("runtime task");
    }
}
