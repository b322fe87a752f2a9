//! Per-key exponential backoff with jitter: 100 ms doubling up to 5 minutes.

use std::time::Duration;

/// How long to wait before retrying a key whose reconcile failed.
///
/// The `n`th consecutive failure waits `initial * 2^(n-1)`, capped at `max`, shortened by up to
/// `jitter` of itself (a fraction in `0.0..=1.0`) so that keys failing together do not retry
/// together. Jitter only ever shortens the wait: the documented schedule is an upper bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// The largest fraction of a wait that jitter may take off (`0.0` turns jitter off).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_millis(100), max: Duration::from_secs(300), jitter: 0.2 }
    }
}

impl Backoff {
    /// The wait after `failures` consecutive failures (`failures >= 1`; `0` is treated as `1`),
    /// with `sample` a uniform random number in `0.0..1.0` choosing the jitter.
    pub fn delay(&self, failures: u32, sample: f64) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let cut = self.jitter.clamp(0.0, 1.0) * sample.clamp(0.0, 1.0);
        base.mul_f64(1.0 - cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_one_hundred_milliseconds_without_jitter() {
        let b = Backoff { jitter: 0.0, ..Backoff::default() };
        let ms: Vec<u128> = (1..=5).map(|n| b.delay(n, 0.7).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1600]);
    }

    #[test]
    fn delays_stop_growing_at_five_minutes() {
        let b = Backoff { jitter: 0.0, ..Backoff::default() };
        assert_eq!(b.delay(12, 0.0), Duration::from_millis(204_800));
        assert_eq!(b.delay(13, 0.0), Duration::from_secs(300));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(300));
    }

    #[test]
    fn jitter_only_shortens_a_delay_and_by_at_most_its_fraction() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(80));
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(90));
    }

    #[test]
    fn zero_failures_is_treated_as_the_first() {
        let b = Backoff { jitter: 0.0, ..Backoff::default() };
        assert_eq!(b.delay(0, 0.0), b.delay(1, 0.0));
    }
}
