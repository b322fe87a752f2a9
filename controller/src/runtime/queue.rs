//! The work queue's bookkeeping, free of I/O and tasks: which keys are due, which are running,
//! which changed while running, and how many times each has failed in a row.

use std::collections::HashMap;

use berth_schemas::ResourceKey;
use tokio::time::Instant;

use super::Reason;

/// One scheduled run of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub due: Instant,
    pub reason: Reason,
}

/// The queue state. Every key is in at most one of `scheduled` and `in_flight`; a key triggered
/// while in flight waits in `dirty` and moves to `scheduled` when its run finishes.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    scheduled: HashMap<ResourceKey, Entry>,
    in_flight: HashMap<ResourceKey, ()>,
    dirty: HashMap<ResourceKey, Entry>,
    failures: HashMap<ResourceKey, u32>,
}

/// How a run ended, as the queue needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Success; run again after the duration if one is given.
    Done(Option<std::time::Duration>),
    /// Failure; run again after the backoff delay.
    Failed(std::time::Duration),
}

impl Queue {
    /// Asks for `key` to run at `due` (or earlier, if it is already scheduled earlier).
    ///
    /// A key waiting out an error backoff is only pulled forward by a trigger that
    /// [cuts the backoff](Reason::cuts_backoff): Docker events and relists of a failing key (a
    /// crash-looping container emits many) do not defeat it.
    pub fn schedule(&mut self, key: ResourceKey, due: Instant, reason: Reason) {
        let target =
            if self.in_flight.contains_key(&key) { &mut self.dirty } else { &mut self.scheduled };
        match target.get_mut(&key) {
            Some(existing) => {
                let protected = existing.reason == Reason::ErrorBackoff && !reason.cuts_backoff();
                if due < existing.due && !protected {
                    *existing = Entry { due, reason };
                }
            }
            None => {
                target.insert(key, Entry { due, reason });
            }
        }
    }

    /// The earliest time a scheduled key becomes due.
    pub fn next_due(&self) -> Option<Instant> {
        self.scheduled.values().map(|e| e.due).min()
    }

    /// Takes the key that has been due longest, if any is due at `now`, and marks it in flight.
    pub fn pop_ready(&mut self, now: Instant) -> Option<(ResourceKey, Reason)> {
        let key = self
            .scheduled
            .iter()
            .filter(|(_, e)| e.due <= now)
            .min_by_key(|(k, e)| (e.due, *k))
            .map(|(k, _)| k.clone())?;
        let entry = self.scheduled.remove(&key)?;
        self.in_flight.insert(key.clone(), ());
        Some((key, entry.reason))
    }

    /// How many times `key` has failed in a row.
    pub fn failures(&self, key: &ResourceKey) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }

    /// Records the end of `key`'s run at `now` and schedules what follows: a requeue, a retry
    /// after backoff, and, earliest first, any trigger that arrived while it ran.
    pub fn finish(&mut self, key: &ResourceKey, outcome: Outcome, now: Instant) {
        self.in_flight.remove(key);
        match outcome {
            Outcome::Done(after) => {
                self.failures.remove(key);
                if let Some(after) = after {
                    self.schedule(key.clone(), now + after, Reason::Requeue);
                }
            }
            Outcome::Failed(delay) => {
                *self.failures.entry(key.clone()).or_insert(0) += 1;
                self.schedule(key.clone(), now + delay, Reason::ErrorBackoff);
            }
        }
        if let Some(entry) = self.dirty.remove(key) {
            self.schedule(key.clone(), entry.due.max(now), entry.reason);
        }
    }

    /// Whether `key` is running now.
    #[cfg(test)]
    pub fn is_in_flight(&self, key: &ResourceKey) -> bool {
        self.in_flight.contains_key(key)
    }

    /// How many keys are running now.
    #[cfg(test)]
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_schemas::Kind;

    use super::*;

    fn key(name: &str) -> ResourceKey {
        ResourceKey::new(Kind::Container, "default", name)
    }

    #[test]
    fn a_key_scheduled_twice_is_popped_once() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.schedule(key("a"), now, Reason::ObjectChanged);
        q.schedule(key("a"), now, Reason::DockerEvent);
        assert_eq!(q.pop_ready(now), Some((key("a"), Reason::ObjectChanged)));
        assert_eq!(q.pop_ready(now), None);
    }

    #[test]
    fn the_earlier_of_two_schedules_wins() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.schedule(key("a"), now + Duration::from_secs(10), Reason::Requeue);
        q.schedule(key("a"), now + Duration::from_secs(1), Reason::Relist);
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(1)));
        q.schedule(key("a"), now + Duration::from_secs(5), Reason::DockerEvent);
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(1)));
    }

    #[test]
    fn a_key_triggered_while_in_flight_is_not_popped_until_its_run_finishes() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.schedule(key("a"), now, Reason::ObjectChanged);
        assert!(q.pop_ready(now).is_some());
        q.schedule(key("a"), now, Reason::DockerEvent);
        assert_eq!(q.pop_ready(now), None, "a key must never run twice at once");
        q.finish(&key("a"), Outcome::Done(None), now);
        assert_eq!(q.pop_ready(now), Some((key("a"), Reason::DockerEvent)));
    }

    #[test]
    fn failures_count_up_and_reset_on_success() {
        let now = Instant::now();
        let mut q = Queue::default();
        for expected in 1..=3 {
            q.schedule(key("a"), now, Reason::ObjectChanged);
            let _ = q.pop_ready(now + Duration::from_secs(600));
            q.finish(&key("a"), Outcome::Failed(Duration::from_millis(100)), now);
            assert_eq!(q.failures(&key("a")), expected);
        }
        let _ = q.pop_ready(now + Duration::from_secs(600));
        q.finish(&key("a"), Outcome::Done(None), now);
        assert_eq!(q.failures(&key("a")), 0);
    }

    #[test]
    fn docker_events_do_not_cut_an_error_backoff_short_but_object_changes_do() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.schedule(key("a"), now, Reason::ObjectChanged);
        let _ = q.pop_ready(now);
        q.finish(&key("a"), Outcome::Failed(Duration::from_secs(60)), now);
        q.schedule(key("a"), now, Reason::DockerEvent);
        q.schedule(key("a"), now, Reason::Relist);
        assert_eq!(q.pop_ready(now), None);
        q.schedule(key("a"), now, Reason::ObjectChanged);
        assert_eq!(q.pop_ready(now), Some((key("a"), Reason::ObjectChanged)));
    }

    #[test]
    fn the_engine_coming_back_cuts_an_error_backoff_short() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.schedule(key("a"), now, Reason::Relist);
        let _ = q.pop_ready(now);
        q.finish(&key("a"), Outcome::Failed(Duration::from_secs(300)), now);
        q.schedule(key("a"), now, Reason::EngineReconnected);
        assert_eq!(q.pop_ready(now), Some((key("a"), Reason::EngineReconnected)));
    }

    #[test]
    fn the_key_due_longest_is_popped_first() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.schedule(key("late"), now, Reason::Relist);
        q.schedule(key("early"), now - Duration::from_secs(1), Reason::Relist);
        assert_eq!(q.pop_ready(now).map(|(k, _)| k), Some(key("early")));
        assert_eq!(q.in_flight_len(), 1);
        assert!(q.is_in_flight(&key("early")));
    }
}
