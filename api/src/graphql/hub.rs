//! Fan-out of Engine streams: one upstream stream per container (followed logs, stats), shared
//! by every subscriber through a bounded broadcast buffer. A subscriber that falls more than
//! the buffer behind loses the oldest items and is told how many (`dropped`); the upstream and
//! the other subscribers never wait for it. The upstream closes when its last subscriber goes.
//!
//! Also [`PerUserCount`], the per-user cap on concurrent subscriptions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One shared upstream per key.
#[derive(Debug)]
pub struct Fanout<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Default for Fanout<T> {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                opened: AtomicU64::new(0),
                next_id: AtomicU64::new(0),
            }),
        }
    }
}

#[derive(Debug)]
struct Inner<T> {
    entries: Mutex<HashMap<String, Entry<T>>>,
    tasks: TaskTracker,
    opened: AtomicU64,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Entry<T> {
    id: u64,
    tx: broadcast::Sender<T>,
    subscribers: usize,
    cancel: CancellationToken,
}

/// Keeps a subscriber counted; the last one to go closes the upstream.
#[derive(Debug)]
struct Membership<T> {
    inner: Arc<Inner<T>>,
    key: String,
    id: u64,
}

impl<T> Drop for Membership<T> {
    fn drop(&mut self) {
        let mut entries = self.inner.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = entries.get_mut(&self.key)
            && e.id == self.id
        {
            e.subscribers = e.subscribers.saturating_sub(1);
            if e.subscribers == 0 {
                e.cancel.cancel();
                entries.remove(&self.key);
            }
        }
    }
}

/// An item from a shared stream, with how many items this subscriber missed just before it.
#[derive(Debug, Clone)]
pub struct Delivered<T> {
    /// The item.
    pub item: T,
    /// Items dropped just before it because this subscriber was too slow.
    pub dropped: u64,
}

impl<T: Clone + Send + Sync + 'static> Fanout<T> {
    /// Subscribes to `key`'s stream, opening it with `open` if no one else is subscribed.
    /// `capacity` bounds this subscriber's backlog (it applies when the stream is opened).
    pub fn subscribe(
        &self,
        key: &str,
        capacity: usize,
        open: impl FnOnce() -> BoxStream<'static, T>,
    ) -> BoxStream<'static, Delivered<T>> {
        let inner = Arc::clone(&self.inner);
        let (rx, id) = {
            let mut entries = inner.entries.lock().unwrap_or_else(PoisonError::into_inner);
            match entries.get_mut(key) {
                Some(e) => {
                    e.subscribers += 1;
                    (e.tx.subscribe(), e.id)
                }
                None => {
                    let (tx, rx) = broadcast::channel(capacity.max(1));
                    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
                    let cancel = CancellationToken::new();
                    inner.opened.fetch_add(1, Ordering::Relaxed);
                    let upstream = open();
                    inner.tasks.spawn(pump(
                        Arc::clone(&inner),
                        key.to_owned(),
                        id,
                        upstream,
                        tx.clone(),
                        cancel.clone(),
                    ));
                    entries.insert(key.to_owned(), Entry { id, tx, subscribers: 1, cancel });
                    (rx, id)
                }
            }
        };
        let membership = Membership { inner, key: key.to_owned(), id };
        futures::stream::unfold((rx, membership, 0u64), |(mut rx, m, mut dropped)| async move {
            loop {
                match rx.recv().await {
                    Ok(item) => {
                        let d = Delivered { item, dropped };
                        return Some((d, (rx, m, 0)));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => dropped += n,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }

    /// Upstream streams opened so far (for tests and benchmarks: constant in subscribers).
    pub fn upstreams_opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// Upstream streams open now.
    pub fn upstreams_open(&self) -> usize {
        self.inner.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Stops every upstream and waits for their tasks to end.
    pub async fn close(&self) {
        {
            let entries = self.inner.entries.lock().unwrap_or_else(PoisonError::into_inner);
            for e in entries.values() {
                e.cancel.cancel();
            }
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

async fn pump<T: Clone + Send + 'static>(
    inner: Arc<Inner<T>>,
    key: String,
    id: u64,
    mut upstream: BoxStream<'static, T>,
    tx: broadcast::Sender<T>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            item = upstream.next() => match item {
                // Never waits: a slow receiver only lags.
                Some(item) => { let _ = tx.send(item); }
                None => break,
            },
        }
    }
    // The stream ended (container stopped) or everyone left: forget the entry so that
    // receivers see the end and the next subscriber opens a fresh stream.
    let mut entries = inner.entries.lock().unwrap_or_else(PoisonError::into_inner);
    if entries.get(&key).is_some_and(|e| e.id == id) {
        entries.remove(&key);
    }
}

/// Open subscriptions per user, capped.
#[derive(Debug, Default)]
pub struct PerUserCount {
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// Holds one subscription slot; released on drop.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = c.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(&self.user);
            }
        }
    }
}

impl PerUserCount {
    /// Takes a slot for `user`, or `None` when they already hold `max`.
    pub fn acquire(&self, user: &str, max: usize) -> Option<Slot> {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = c.entry(user.to_owned()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot { counts: Arc::clone(&self.counts), user: user.to_owned() })
    }

    /// Slots `user` holds now.
    pub fn held(&self, user: &str) -> usize {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).get(user).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_share_one_upstream_and_a_slow_one_is_told_what_it_dropped() {
        let hub: Fanout<u32> = Fanout::default();
        let (tx, rx) = tokio::sync::mpsc::channel::<u32>(100);
        let upstream = tokio_stream_from(rx);
        let mut fast = Box::pin(hub.subscribe("c1", 4, move || upstream));
        let slow = Box::pin(hub.subscribe("c1", 4, || panic!("a second upstream was opened")));
        assert_eq!(hub.upstreams_opened(), 1);
        for i in 0..10 {
            tx.send(i).await.expect("send");
            let got = fast.next().await.expect("item");
            assert_eq!((got.item, got.dropped), (i, 0));
        }
        drop(tx);
        let rest: Vec<Delivered<u32>> = slow.collect().await;
        assert_eq!(rest.first().map(|d| (d.item, d.dropped)), Some((6, 6)));
        assert_eq!(rest.len(), 4);
    }

    #[tokio::test]
    async fn the_upstream_closes_when_the_last_subscriber_leaves() {
        let hub: Fanout<u32> = Fanout::default();
        let a = hub.subscribe("c1", 4, || futures::stream::pending().boxed());
        let b = hub.subscribe("c1", 4, || futures::stream::pending().boxed());
        assert_eq!(hub.upstreams_open(), 1);
        drop(a);
        assert_eq!(hub.upstreams_open(), 1);
        drop(b);
        assert_eq!(hub.upstreams_open(), 0);
        hub.close().await;
    }

    #[test]
    fn a_user_cannot_hold_more_than_the_cap() {
        let c = PerUserCount::default();
        let a = c.acquire("alice", 2).expect("first");
        let _b = c.acquire("alice", 2).expect("second");
        assert!(c.acquire("alice", 2).is_none());
        assert!(c.acquire("bob", 2).is_some());
        drop(a);
        assert!(c.acquire("alice", 2).is_some());
    }

    fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<u32>) -> BoxStream<'static, u32> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
    }
}
