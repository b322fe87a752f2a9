//! The change feed: every committed write becomes a [`WatchEvent`], delivered to watchers in
//! revision order, replayable from a bounded in-memory history.
//!
//! # Guarantees
//!
//! - A watcher sees the events that match its filter strictly in revision order, each once,
//!   with no gap, from the revision it asked for until it is told [`WatchError::FellBehind`] or
//!   [`WatchError::Closed`].
//! - Events are published only after the write is durable (flushed), so a watcher never sees a
//!   write that a crash could take back.
//! - Publishing never waits: each watcher has a bounded buffer; a watcher whose buffer is full
//!   is cut off with [`WatchError::FellBehind`] (after the events already buffered) and must
//!   relist. Writers and other watchers are not slowed down.
//! - A resume revision older than the history gets [`WatchError::TooOld`] (HTTP 410 Gone).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use berth_schemas::{DynamicObject, Kind};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object changed (including `deletionTimestamp` being set).
    Modified,
    /// The object was removed.
    Deleted,
}

/// One change: the revision it was written at, its type and the object after it (for
/// [`EventType::Deleted`], the object's last state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The store revision of the write; strictly increasing along a watch.
    pub revision: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The object.
    pub object: DynamicObject,
}

/// Where a watch starts and what it selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchQuery {
    /// Deliver events with a revision greater than this one (typically the revision of a list).
    /// `None` starts from now.
    pub after_revision: Option<u64>,
    /// Only this kind.
    pub kind: Option<Kind>,
    /// Only this namespace.
    pub namespace: Option<String>,
}

impl WatchQuery {
    /// Every change from now on.
    pub fn from_now() -> Self {
        Self::default()
    }

    /// Every change after `revision`.
    pub fn after(revision: u64) -> Self {
        Self { after_revision: Some(revision), ..Self::default() }
    }

    /// Narrows to one kind.
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Narrows to one namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    fn matches(&self, event: &WatchEvent) -> bool {
        self.kind.is_none_or(|k| k == event.object.kind)
            && self.namespace.as_deref().is_none_or(|ns| ns == event.object.metadata.namespace)
    }
}

/// Why a watch cannot start or has ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The requested revision is older than the kept history: list again, then watch from the
    /// list's revision (Kubernetes answers 410 Gone).
    #[error(
        "revision {requested} is too old: history starts after revision {oldest_resumable}; relist"
    )]
    TooOld {
        /// The revision asked for.
        requested: u64,
        /// The oldest revision a watch can resume after.
        oldest_resumable: u64,
    },
    /// The watcher did not keep up and was cut off; it must relist. Writers were not slowed.
    #[error("the watcher fell behind and was cut off; relist")]
    FellBehind,
    /// The store shut down.
    #[error("the change feed closed")]
    Closed,
}

/// A running watch. Receive with [`Watch::next`] or use it as a [`futures::Stream`]; the
/// stream ends after the first error.
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<Arc<WatchEvent>>,
    fell_behind: Arc<AtomicBool>,
    done: bool,
}

impl Watch {
    /// The next event.
    ///
    /// # Errors
    ///
    /// [`WatchError::FellBehind`] when the watcher was cut off for being slow, after the events
    /// buffered before the cut; [`WatchError::Closed`] when the store shut down.
    pub async fn next(&mut self) -> Result<WatchEvent, WatchError> {
        match self.rx.recv().await {
            Some(event) => Ok(Arc::unwrap_or_clone(event)),
            None => Err(self.end_reason()),
        }
    }

    /// The next event if one is buffered, without waiting (`Ok(None)` when none is).
    ///
    /// # Errors
    ///
    /// As [`Watch::next`].
    pub fn try_next(&mut self) -> Result<Option<WatchEvent>, WatchError> {
        match self.rx.try_recv() {
            Ok(event) => Ok(Some(Arc::unwrap_or_clone(event))),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(self.end_reason()),
        }
    }

    fn end_reason(&self) -> WatchError {
        if self.fell_behind.load(Ordering::Acquire) {
            WatchError::FellBehind
        } else {
            WatchError::Closed
        }
    }
}

impl futures::Stream for Watch {
    type Item = Result<WatchEvent, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(Arc::unwrap_or_clone(event)))),
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Err(self.end_reason())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

struct Watcher {
    tx: mpsc::Sender<Arc<WatchEvent>>,
    query: WatchQuery,
    /// Deliver only events after this revision (a watch may start ahead of what is published
    /// when it resumes from a list that saw a write still being flushed).
    after: u64,
    fell_behind: Arc<AtomicBool>,
}

struct HubState {
    history: VecDeque<Arc<WatchEvent>>,
    published: u64,
    watchers: Vec<Watcher>,
    closed: bool,
}

/// The fan-out point between the writer and the watchers.
pub(crate) struct WatchHub {
    state: Mutex<HubState>,
    history_capacity: usize,
    buffer: usize,
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHub")
            .field("history_capacity", &self.history_capacity)
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

impl WatchHub {
    /// A hub whose history starts after `revision` (the store's revision at open).
    pub(crate) fn new(revision: u64, history_capacity: usize, buffer: usize) -> Self {
        Self {
            state: Mutex::new(HubState {
                history: VecDeque::with_capacity(history_capacity.min(1024)),
                published: revision,
                watchers: Vec::new(),
                closed: false,
            }),
            history_capacity: history_capacity.max(1),
            buffer: buffer.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding this lock cannot leave the state half-updated in a way that
        // matters more than losing the feed, so a poisoned lock is simply taken over.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a watch.
    pub(crate) fn watch(&self, query: WatchQuery) -> Result<Watch, WatchError> {
        let mut state = self.lock();
        if state.closed {
            return Err(WatchError::Closed);
        }
        let oldest_resumable =
            state.history.front().map_or(state.published, |e| e.revision.saturating_sub(1));
        let after = query.after_revision.unwrap_or(state.published);
        if after < oldest_resumable {
            return Err(WatchError::TooOld { requested: after, oldest_resumable });
        }
        let replay: Vec<Arc<WatchEvent>> = state
            .history
            .iter()
            .filter(|e| e.revision > after && query.matches(e))
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(self.buffer + replay.len());
        for event in replay {
            // The channel was sized for the replay, so this cannot be full.
            let _ = tx.try_send(event);
        }
        let fell_behind = Arc::new(AtomicBool::new(false));
        state.watchers.push(Watcher { tx, query, after, fell_behind: fell_behind.clone() });
        Ok(Watch { rx, fell_behind, done: false })
    }

    /// Publishes committed events, in revision order.
    pub(crate) fn publish(&self, events: Vec<WatchEvent>) {
        if events.is_empty() {
            return;
        }
        let mut state = self.lock();
        for event in events {
            let event = Arc::new(event);
            state.published = state.published.max(event.revision);
            if state.history.len() == self.history_capacity {
                state.history.pop_front();
            }
            state.history.push_back(event.clone());
            state.watchers.retain(|w| {
                if event.revision <= w.after || !w.query.matches(&event) {
                    return !w.tx.is_closed();
                }
                match w.tx.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        w.fell_behind.store(true, Ordering::Release);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
        }
    }

    /// Ends every watch with [`WatchError::Closed`] and refuses new ones.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.watchers.clear();
    }

    /// How many watchers are connected.
    pub(crate) fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }
}

#[cfg(test)]
mod tests {
    use berth_schemas::{API_VERSION, ObjectMeta};

    use super::*;

    fn event(revision: u64, kind: Kind) -> WatchEvent {
        WatchEvent {
            revision,
            event_type: EventType::Modified,
            object: DynamicObject {
                api_version: API_VERSION.into(),
                kind,
                metadata: ObjectMeta::named(format!("o{revision}")),
                spec: serde_json::Value::Null,
                status: serde_json::Value::Null,
            },
        }
    }

    fn drain(w: &mut Watch) -> Vec<u64> {
        let mut out = Vec::new();
        while let Ok(Some(e)) = w.try_next() {
            out.push(e.revision);
        }
        out
    }

    #[test]
    fn a_watch_from_now_sees_only_later_events_in_order() {
        let hub = WatchHub::new(10, 100, 100);
        hub.publish(vec![event(11, Kind::Container)]);
        let mut w = hub.watch(WatchQuery::from_now()).expect("watch");
        hub.publish(vec![event(12, Kind::Container), event(13, Kind::Image)]);
        assert_eq!(drain(&mut w), vec![12, 13]);
    }

    #[test]
    fn a_watch_resumes_from_history_without_gaps() {
        let hub = WatchHub::new(0, 100, 4);
        hub.publish((1..=5).map(|r| event(r, Kind::Container)).collect());
        let mut w = hub.watch(WatchQuery::after(2)).expect("watch");
        hub.publish(vec![event(6, Kind::Container)]);
        assert_eq!(drain(&mut w), vec![3, 4, 5, 6]);
    }

    #[test]
    fn a_revision_older_than_the_history_is_too_old() {
        let hub = WatchHub::new(0, 3, 10);
        hub.publish((1..=5).map(|r| event(r, Kind::Container)).collect());
        // History holds 3, 4, 5: resuming after 2 is fine, after 1 is not.
        assert!(hub.watch(WatchQuery::after(2)).is_ok());
        assert_eq!(
            hub.watch(WatchQuery::after(1)).err(),
            Some(WatchError::TooOld { requested: 1, oldest_resumable: 2 })
        );
    }

    #[test]
    fn an_empty_history_after_restart_accepts_only_the_current_revision() {
        let hub = WatchHub::new(7, 10, 10);
        assert!(hub.watch(WatchQuery::after(7)).is_ok());
        assert!(matches!(hub.watch(WatchQuery::after(6)), Err(WatchError::TooOld { .. })));
    }

    #[test]
    fn a_watch_ahead_of_published_skips_events_up_to_its_revision() {
        let hub = WatchHub::new(0, 10, 10);
        let mut w = hub.watch(WatchQuery::after(2)).expect("watch");
        hub.publish((1..=4).map(|r| event(r, Kind::Container)).collect());
        assert_eq!(drain(&mut w), vec![3, 4]);
    }

    #[test]
    fn a_slow_watcher_is_cut_off_while_others_keep_receiving() {
        let hub = WatchHub::new(0, 100, 2);
        let mut slow = hub.watch(WatchQuery::from_now()).expect("watch");
        let mut fast = hub.watch(WatchQuery::from_now()).expect("watch");
        for r in 1..=5 {
            hub.publish(vec![event(r, Kind::Container)]);
            assert_eq!(drain(&mut fast), vec![r]);
        }
        assert_eq!(slow.try_next().ok().flatten().map(|e| e.revision), Some(1));
        assert_eq!(slow.try_next().ok().flatten().map(|e| e.revision), Some(2));
        assert_eq!(slow.try_next(), Err(WatchError::FellBehind));
        assert_eq!(hub.watcher_count(), 1);
    }

    #[test]
    fn filters_select_kind_and_namespace() {
        let hub = WatchHub::new(0, 100, 10);
        let mut w = hub.watch(WatchQuery::from_now().kind(Kind::Image)).expect("watch");
        hub.publish(vec![event(1, Kind::Container), event(2, Kind::Image)]);
        assert_eq!(drain(&mut w), vec![2]);
        let mut w = hub.watch(WatchQuery::after(0).namespace("other")).expect("watch");
        assert_eq!(drain(&mut w), Vec::<u64>::new());
    }

    #[test]
    fn closing_the_hub_ends_watches_with_closed() {
        let hub = WatchHub::new(0, 10, 10);
        let mut w = hub.watch(WatchQuery::from_now()).expect("watch");
        hub.close();
        assert_eq!(w.try_next(), Err(WatchError::Closed));
        assert!(matches!(hub.watch(WatchQuery::from_now()), Err(WatchError::Closed)));
    }
}
