//! The upstream of the `dockerEvents` subscription: Engine events that outlive a dropped
//! Engine event stream.
//!
//! The Engine ends its event stream when it restarts or the connection drops. Like the
//! controller, [`resubscribing`] then opens it again with `since` set to the time of the last
//! event it delivered (or of the subscription's start, before any), so events that happened in
//! between are replayed rather than lost, and skips the replayed ones it had already
//! delivered. While the Engine stays unreachable it retries after a pause that doubles from
//! [`FIRST_RETRY`] up to [`MAX_RETRY`]. The stream only ends when it is dropped.

use std::sync::Arc;
use std::time::Duration;

use berth_controller::docker::{Driver, EngineEvent, EventStream};
use futures::stream::{self, BoxStream, StreamExt as _};

/// Pause before the first resubscription after the stream ended.
pub const FIRST_RETRY: Duration = Duration::from_millis(200);
/// Longest pause between resubscriptions while the Engine is unreachable.
pub const MAX_RETRY: Duration = Duration::from_secs(5);

struct Upstream {
    driver: Arc<dyn Driver>,
    current: Option<EventStream>,
    /// Resubscribe from here: the last delivered event's time, or the start.
    since_nano: i64,
    /// What was delivered at exactly `since_nano` (id, action), to skip its replay.
    at_since: Vec<(String, String)>,
    failures: u32,
}

impl Upstream {
    fn retry_pause(&self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(16);
        FIRST_RETRY.saturating_mul(1 << exp).min(MAX_RETRY)
    }

    /// Whether `e` was delivered already (a replay after a resubscription).
    fn seen(&self, e: &EngineEvent) -> bool {
        e.time_nano < self.since_nano
            || (e.time_nano == self.since_nano
                && self.at_since.iter().any(|(id, a)| *id == e.id && *a == e.action))
    }

    fn delivered(&mut self, e: &EngineEvent) {
        if e.time_nano > self.since_nano {
            self.since_nano = e.time_nano;
            self.at_since.clear();
        }
        self.at_since.push((e.id.clone(), e.action.clone()));
    }

    async fn next(mut self) -> Option<(EngineEvent, Self)> {
        loop {
            let events = match self.current.as_mut() {
                Some(s) => s,
                None => {
                    // The first subscription starts at the start; later ones where the last
                    // delivered event was.
                    self.current.insert(self.driver.events(Some(self.since_nano)))
                }
            };
            match events.next().await {
                Some(Ok(e)) => {
                    self.failures = 0;
                    if self.seen(&e) {
                        continue;
                    }
                    self.delivered(&e);
                    return Some((e, self));
                }
                end => {
                    if let Some(Err(e)) = end {
                        tracing::debug!(error = %e, "Docker event stream failed; resubscribing");
                    }
                    self.current = None;
                    self.failures += 1;
                    tokio::time::sleep(self.retry_pause()).await;
                }
            }
        }
    }
}

/// Engine events (container and image) from `start_nano` (nanoseconds since the epoch: the
/// subscription's start) on, resubscribing whenever the Engine's stream ends, with `since`
/// the last delivered event's time (or `start_nano` before any).
pub fn resubscribing(driver: Arc<dyn Driver>, start_nano: i64) -> BoxStream<'static, EngineEvent> {
    let up = Upstream {
        driver,
        current: None,
        since_nano: start_nano,
        at_since: Vec::new(),
        failures: 0,
    };
    stream::unfold(up, Upstream::next).boxed()
}

#[cfg(test)]
mod tests {
    use berth_controller::docker::ContainerCreate;
    use berth_controller::docker::fake::FakeDriver;
    use chrono::Utc;

    use super::*;

    fn spec(name: &str) -> ContainerCreate {
        ContainerCreate {
            name: name.to_owned(),
            image: "berth-test/busybox:1".to_owned(),
            ..ContainerCreate::default()
        }
    }

    async fn next(s: &mut BoxStream<'static, EngineEvent>) -> (String, String) {
        let e = tokio::time::timeout(Duration::from_secs(30), s.next())
            .await
            .expect("an event in time")
            .expect("the stream does not end");
        (e.attributes.get("name").cloned().unwrap_or_default(), e.action)
    }

    #[tokio::test]
    async fn a_dropped_engine_stream_is_resubscribed_from_the_last_event_without_repeats() {
        let fake = Arc::new(FakeDriver::new());
        fake.add_image("berth-test/busybox:1");
        let start = Utc::now().timestamp_nanos_opt().expect("time");
        let mut events = resubscribing(fake.clone(), start);
        fake.insert_container(&spec("a"), true);
        assert_eq!(next(&mut events).await, ("a".to_owned(), "create".to_owned()));
        assert_eq!(next(&mut events).await, ("a".to_owned(), "start".to_owned()));
        // The Engine goes away: its stream ends. What happens meanwhile is replayed once it
        // is back, and what was delivered before is not repeated.
        fake.set_unreachable(true);
        fake.insert_container(&spec("b"), false);
        fake.set_unreachable(false);
        assert_eq!(next(&mut events).await, ("b".to_owned(), "create".to_owned()));
        fake.simulate_exit("a", 0);
        assert_eq!(next(&mut events).await, ("a".to_owned(), "die".to_owned()));
        // The stream was opened again, with since = a's start event.
        let opened = fake.count(berth_controller::docker::fake::Op::Events);
        assert!(opened >= 2, "resubscribed: {opened} subscriptions");
    }

    #[test]
    fn the_retry_pause_doubles_up_to_a_cap() {
        let mut up = Upstream {
            driver: Arc::new(FakeDriver::new()),
            current: None,
            since_nano: 0,
            at_since: Vec::new(),
            failures: 1,
        };
        assert_eq!(up.retry_pause(), FIRST_RETRY);
        up.failures = 2;
        assert_eq!(up.retry_pause(), FIRST_RETRY * 2);
        up.failures = 40;
        assert_eq!(up.retry_pause(), MAX_RETRY);
    }
}
