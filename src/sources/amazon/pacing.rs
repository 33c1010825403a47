//! Client-side pacing of SP-API calls: one token bucket per operation, shared by every
//! client of one seller account (Amazon's usage plans are per account and application).
//!
//! A bucket starts at the operation's published usage plan and follows the rate Amazon
//! states in `x-amzn-RateLimit-Limit` ("dynamic usage plans": a seller's plan may be
//! lower or higher than the default). Calls are paced a little below the stated rate
//! ([`SAFETY_MARGIN`]) because Amazon's bucket sees each request a network hop later
//! than ours and jitter would otherwise cost 429s. A 429 empties the bucket: Amazon's is
//! empty, so ours must be too.
//!
//! Hand-written rather than `governor`: a governor quota cannot change in place, and
//! replacing the limiter when the rate changes would hand out a fresh burst exactly when
//! Amazon just said to slow down.
//!
//! Never sleeps while holding the lock, and never lets a plan from a header drive the
//! rate to zero or the wait to infinity.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A usage plan: requests per second and burst, as the models state them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsagePlan {
    pub rate: f64,
    pub burst: u32,
}

impl UsagePlan {
    /// One request per `seconds`, with `burst`.
    pub const fn one_per(seconds: u32, burst: u32) -> Self {
        Self {
            rate: 1.0 / seconds as f64,
            burst,
        }
    }
}

/// The share of the stated rate nightdesk uses.
pub const SAFETY_MARGIN: f64 = 0.95;

/// Rates outside this range in a header are ignored as nonsense.
const SANE_RATES: std::ops::RangeInclusive<f64> = 0.000_1..=10_000.0;

#[derive(Debug)]
struct Bucket {
    /// Requests per second Amazon grants (the plan's, or the latest header's).
    granted: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn new(plan: UsagePlan, now: Instant) -> Self {
        let burst = f64::from(plan.burst.max(1));
        Self {
            granted: plan.rate,
            burst,
            tokens: burst,
            refilled: now,
        }
    }

    fn paced_rate(&self) -> f64 {
        (self.granted * SAFETY_MARGIN).max(*SANE_RATES.start())
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.paced_rate()).min(self.burst);
        self.refilled = now;
    }
}

/// What a bucket paces at now, for logs, metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// The rate Amazon grants (plan or header), requests per second.
    pub granted: f64,
    pub burst: f64,
}

#[derive(Debug, Default)]
pub struct Pacer {
    buckets: Mutex<HashMap<&'static str, Bucket>>,
}

impl Pacer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wait until `operation` may be called, and take its token.
    pub async fn acquire(&self, operation: &'static str, plan: UsagePlan) {
        loop {
            let wait = {
                let mut buckets = self.lock();
                let now = Instant::now();
                let bucket = buckets
                    .entry(operation)
                    .or_insert_with(|| Bucket::new(plan, now));
                bucket.refill(now);
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - bucket.tokens) / bucket.paced_rate())
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Follow the rate Amazon stated for `operation` (`x-amzn-RateLimit-Limit`). Returns
    /// the new pace when it changed.
    pub fn observe_limit(
        &self,
        operation: &'static str,
        plan: UsagePlan,
        stated: &str,
    ) -> Option<Pace> {
        let rate: f64 = stated
            .trim()
            .parse()
            .ok()
            .filter(|r| SANE_RATES.contains(r))?;
        let mut buckets = self.lock();
        let now = Instant::now();
        let bucket = buckets
            .entry(operation)
            .or_insert_with(|| Bucket::new(plan, now));
        // Amazon rounds its rates (0.0167 for one a minute): ignore differences below 1 %.
        if (rate - bucket.granted).abs() <= bucket.granted * 0.01 {
            return None;
        }
        bucket.refill(now);
        bucket.granted = rate;
        Some(Pace {
            granted: rate,
            burst: bucket.burst,
        })
    }

    /// Amazon answered 429: its bucket is empty, so ours is emptied too.
    pub fn throttled(&self, operation: &'static str, plan: UsagePlan) {
        let mut buckets = self.lock();
        let now = Instant::now();
        let bucket = buckets
            .entry(operation)
            .or_insert_with(|| Bucket::new(plan, now));
        bucket.refill(now);
        bucket.tokens = 0.0;
    }

    /// The pace of `operation`, if it was ever called.
    pub fn pace(&self, operation: &str) -> Option<Pace> {
        self.lock().get(operation).map(|b| Pace {
            granted: b.granted,
            burst: b.burst,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Bucket>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: UsagePlan = UsagePlan {
        rate: 0.5,
        burst: 3,
    };

    /// How many acquisitions complete within `window` of (paused) tokio time.
    async fn granted_within(pacer: &Pacer, window: Duration) -> usize {
        let start = Instant::now();
        let mut n = 0;
        loop {
            pacer.acquire("getOrderItems", PLAN).await;
            if start.elapsed() > window {
                return n;
            }
            n += 1;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_the_paced_rate() {
        let pacer = Pacer::new();
        // 3 at once, then one every 2 s / 0.95 = 2.105 s: 9 more within 20 s.
        assert_eq!(granted_within(&pacer, Duration::from_secs(20)).await, 12);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lower_stated_rate_slows_the_bucket_without_a_new_burst() {
        let pacer = Pacer::new();
        for _ in 0..3 {
            pacer.acquire("getOrderItems", PLAN).await;
        }
        let changed = pacer.observe_limit("getOrderItems", PLAN, "0.1");
        assert_eq!(changed.map(|p| p.granted), Some(0.1));
        // Empty bucket at 0.095/s: one token every 10.5 s, so 2 within 25 s.
        assert_eq!(granted_within(&pacer, Duration::from_secs(25)).await, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn rounding_and_nonsense_in_the_header_change_nothing() {
        let pacer = Pacer::new();
        let one_a_minute = UsagePlan::one_per(60, 20);
        assert_eq!(
            pacer.observe_limit("getOrders", one_a_minute, "0.0167"),
            None
        );
        assert_eq!(pacer.observe_limit("getOrders", one_a_minute, "zero"), None);
        assert_eq!(pacer.observe_limit("getOrders", one_a_minute, "0"), None);
        assert_eq!(pacer.observe_limit("getOrders", one_a_minute, "-3"), None);
        assert_eq!(
            pacer.pace("getOrders").map(|p| p.granted),
            Some(one_a_minute.rate)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_empties_the_bucket() {
        let pacer = Pacer::new();
        pacer.acquire("getOrderItems", PLAN).await;
        pacer.throttled("getOrderItems", PLAN);
        let start = Instant::now();
        pacer.acquire("getOrderItems", PLAN).await;
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}
