//! Keyed token-bucket rate limiters for login attempts and per-token request rates.
//!
//! Time comes from `tokio::time::Instant`, so tests can pause and advance it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How many requests a key may make: a burst, refilled at a steady rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
    /// Requests regained per second.
    pub per_second: f64,
}

impl RateLimit {
    /// A limit of `burst` requests, regaining `per_minute` each minute.
    pub fn per_minute(burst: u32, per_minute: u32) -> Self {
        Self { burst, per_second: f64::from(per_minute) / 60.0 }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Entries beyond this count trigger a sweep of full (idle) buckets.
const SWEEP_AT: usize = 10_000;

/// A token bucket per key.
#[derive(Debug)]
pub struct RateLimiter<K> {
    limit: RateLimit,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// A limiter applying `limit` to every key.
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, buckets: Mutex::new(HashMap::new()) }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        b.updated = now;
    }

    /// Takes one token for `key`.
    ///
    /// # Errors
    ///
    /// When the bucket is empty: how long until a token is available.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= SWEEP_AT {
            let burst = f64::from(self.limit.burst);
            let per = self.limit.per_second;
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * per < burst
            });
        }
        let b = map
            .entry(key.clone())
            .or_insert(Bucket { tokens: f64::from(self.limit.burst), updated: now });
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else if self.limit.per_second <= 0.0 {
            Err(Duration::from_secs(3600))
        } else {
            let wait = (1.0 - b.tokens) / self.limit.per_second;
            Err(Duration::from_secs_f64(wait.max(0.001)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_gets_its_burst_then_waits_for_refill() {
        let rl = RateLimiter::new(RateLimit { burst: 3, per_second: 1.0 });
        for _ in 0..3 {
            rl.check(&"alice").unwrap();
        }
        let wait = rl.check(&"alice").unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        // other keys are independent
        rl.check(&"bob").unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        rl.check(&"alice").unwrap();
        assert!(rl.check(&"alice").is_err());
    }
}
