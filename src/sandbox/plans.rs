//! SP-API usage plans: one token bucket per operation, the rate each answer states in
//! `x-amzn-RateLimit-Limit`, per-operation overrides ("dynamic usage plans": a seller's
//! plan may be lower or higher than the default), and per-operation usage counters for
//! benchmarks.
//!
//! Refill runs on tokio's clock, never on the scenario clock: throttling is about how
//! fast a client calls, not about the simulated date. It must never throttle an
//! operation that has no plan, nor count a fault's 429 as a throttle.

use std::collections::HashMap;

use tokio::time::Instant;

/// A default usage plan from an operation's description: (operation, rate per second,
/// burst).
pub(super) type Plan = (&'static str, f64, f64);

/// What one operation saw since the sandbox started or since [`super::Sandbox::reset_usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperationUsage {
    /// Answers other than 429, whatever their status (faults included).
    pub answered: u64,
    /// 429s the usage plan answered (an injected 429 fault is not counted).
    pub throttled: u64,
    /// When the first and the last answered call arrived (tokio's clock, so paused test
    /// time is honoured).
    pub first: Option<std::time::Instant>,
    pub last: Option<std::time::Instant>,
}

/// Every bucket and the usage counters.
#[derive(Debug)]
pub(super) struct UsagePlans {
    enabled: bool,
    buckets: HashMap<String, Bucket>,
    usage: HashMap<String, OperationUsage>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            refilled: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
    }
}

impl UsagePlans {
    /// Buckets for `plans`, full.
    pub(super) fn new<'a>(enabled: bool, plans: impl IntoIterator<Item = &'a Plan>) -> Self {
        let now = Instant::now();
        let buckets = plans
            .into_iter()
            .map(|&(op, rate, burst)| (op.to_owned(), Bucket::new(rate, burst, now)))
            .collect();
        Self {
            enabled,
            buckets,
            usage: HashMap::new(),
        }
    }

    pub(super) fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Overrides `operation`'s plan. The bucket keeps the tokens it has (refilled up to
    /// now at the old rate), capped at the new burst; an operation without a plan gets a
    /// full bucket.
    pub(super) fn set_plan(&mut self, operation: &str, rate: f64, burst: f64) {
        let now = Instant::now();
        match self.buckets.get_mut(operation) {
            Some(bucket) => {
                bucket.refill(now);
                bucket.rate = rate;
                bucket.burst = burst;
                bucket.tokens = bucket.tokens.min(burst);
            }
            None => {
                self.buckets
                    .insert(operation.to_owned(), Bucket::new(rate, burst, now));
            }
        }
    }

    /// The rate `operation`'s plan allows now, if it has one.
    pub(super) fn rate(&self, operation: &str) -> Option<f64> {
        self.buckets.get(operation).map(|b| b.rate)
    }

    /// Takes one token for `operation`; false (and counted as throttled) when its
    /// bucket is empty.
    pub(super) fn try_take(&mut self, operation: &str) -> bool {
        if !self.enabled {
            return true;
        }
        let Some(bucket) = self.buckets.get_mut(operation) else {
            return true;
        };
        bucket.refill(Instant::now());
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            self.usage
                .entry(operation.to_owned())
                .or_default()
                .throttled += 1;
            false
        }
    }

    /// Counts an answer other than 429 to `operation`, received at `at`.
    pub(super) fn record_answer(&mut self, operation: &str, at: Instant) {
        let at = at.into_std();
        let usage = self.usage.entry(operation.to_owned()).or_default();
        usage.answered += 1;
        usage.first.get_or_insert(at);
        usage.last = Some(at);
    }

    pub(super) fn usage(&self, operation: &str) -> OperationUsage {
        self.usage.get(operation).copied().unwrap_or_default()
    }

    pub(super) fn reset_usage(&mut self) {
        self.usage.clear();
    }
}

/// A rate as Amazon writes it in `x-amzn-RateLimit-Limit`: the shortest decimal ("2",
/// "0.5", "0.0167", "250"), at most four decimals for rates that have no short form
/// (1/60 → "0.0167").
pub(super) fn rate_text(rate: f64) -> String {
    let shortest = format!("{rate}");
    if shortest.len() <= 8 {
        return shortest;
    }
    let rounded = format!("{rate:.4}");
    let trimmed = rounded.trim_end_matches('0').trim_end_matches('.');
    if trimmed.is_empty() || trimmed == "0" {
        // Below 0.00005/s: four decimals would say zero, which is not the plan.
        return format!("{rate:e}");
    }
    trimmed.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANS: [Plan; 2] = [("getOrders", 0.0167, 20.0), ("getOrder", 0.5, 30.0)];

    #[test]
    fn buckets_allow_the_burst_then_refuse() {
        let mut plans = UsagePlans::new(true, &PLANS);
        for _ in 0..20 {
            assert!(plans.try_take("getOrders"));
        }
        assert!(!plans.try_take("getOrders"));
        assert_eq!(plans.usage("getOrders").throttled, 1);
        assert!(plans.try_take("getOrder"));
        assert!(plans.try_take("noPlan"));
        plans.set_enabled(false);
        assert!(plans.try_take("getOrders"));
    }

    #[test]
    fn a_new_plan_keeps_the_tokens_left_up_to_its_burst() {
        let mut plans = UsagePlans::new(true, &PLANS);
        for _ in 0..25 {
            assert!(plans.try_take("getOrder"));
        }
        // Five left; a higher burst does not refill them.
        plans.set_plan("getOrder", 0.001, 100.0);
        for _ in 0..5 {
            assert!(plans.try_take("getOrder"));
        }
        assert!(!plans.try_take("getOrder"));
        // Twenty left of getOrders' burst; a burst of 3 caps them.
        plans.set_plan("getOrders", 0.001, 3.0);
        for _ in 0..3 {
            assert!(plans.try_take("getOrders"));
        }
        assert!(!plans.try_take("getOrders"));
        assert_eq!(plans.rate("getOrders"), Some(0.001));
    }

    #[test]
    fn rates_are_written_like_amazon_does() {
        assert_eq!(rate_text(0.0167), "0.0167");
        assert_eq!(rate_text(0.5), "0.5");
        assert_eq!(rate_text(2.0), "2");
        assert_eq!(rate_text(250.0), "250");
        assert_eq!(rate_text(1.0 / 60.0), "0.0167");
        assert_eq!(rate_text(0.0083), "0.0083");
        assert_eq!(rate_text(1.0 / 3.0), "0.3333");
    }
}
