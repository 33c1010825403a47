//! The outbox executor: claims due actions under a lease, performs each through its
//! channel, and records every attempt. Retryable failures are rescheduled with backoff
//! (attempt⁴ seconds, ±10 % jitter, capped at an hour, at most `max_attempts`);
//! permanent ones fail at once. A completion after the lease was taken over is
//! rejected by the store's fencing token.
//!
//! Safety class of alerts: retry. A crash after Slack accepted a post but before the
//! result was recorded can repeat that one alert after the lease expires (Slack
//! webhooks have no idempotency key); nothing else is ever sent twice.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rand::Rng;

use crate::channels::{Alert, Channel};
use crate::clock::SharedClock;
use crate::config::ExecutorConfig;
use crate::http::UpstreamError;
use crate::model::ActionRequest;
use crate::store::{ClaimedAction, Outcome, Store, StoreError};
use crate::telemetry;

/// How many actions one claim takes.
const CLAIM_BATCH: i64 = 16;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutorReport {
    pub done: usize,
    pub retry: usize,
    pub failed: usize,
    pub unknown: usize,
    pub held: usize,
    pub stale: usize,
}

impl ExecutorReport {
    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Done { .. } => self.done += 1,
            Outcome::Retry { .. } => self.retry += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Unknown { .. } => self.unknown += 1,
            Outcome::Held { .. } => self.held += 1,
        }
    }

    pub fn attempted(&self) -> usize {
        self.done + self.retry + self.failed + self.unknown + self.held + self.stale
    }
}

/// Delay before attempt `attempt + 1`: attempt⁴ seconds, jittered, at most an hour.
pub fn backoff(attempt: i64, jitter: f64) -> Duration {
    let base = (attempt.clamp(1, 100) as f64).powi(4).min(3600.0);
    let jittered = (base * (1.0 + jitter.clamp(-0.1, 0.1))).max(1.0);
    Duration::milliseconds((jittered * 1000.0) as i64)
}

pub struct Executor {
    store: Arc<dyn Store>,
    channels: HashMap<String, Arc<dyn Channel>>,
    clock: SharedClock,
    config: ExecutorConfig,
    owner: String,
}

impl Executor {
    pub fn new(
        store: Arc<dyn Store>,
        channels: HashMap<String, Arc<dyn Channel>>,
        clock: SharedClock,
        config: ExecutorConfig,
        owner: String,
    ) -> Self {
        Self {
            store,
            channels,
            clock,
            config,
            owner,
        }
    }

    /// Claim and perform due actions until none is due, or `stop` says so between
    /// actions (an action once started is always finished and recorded).
    pub async fn run_due(
        &self,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<ExecutorReport, StoreError> {
        let mut report = ExecutorReport::default();
        loop {
            if stop() {
                return Ok(report);
            }
            let lease = Duration::seconds(self.config.lease_seconds);
            let claimed = self
                .store
                .claim_due(&self.owner, self.clock.now(), lease, CLAIM_BATCH)
                .await?;
            if claimed.is_empty() {
                return Ok(report);
            }
            for claim in claimed {
                let outcome = self.perform(&claim).await;
                telemetry::action_attempted(&claim.rule, &claim.kind, claim.attempt, &outcome);
                match self.store.finish(&claim, &outcome, self.clock.now()).await {
                    Ok(()) => report.count(&outcome),
                    Err(StoreError::StaleLease(id)) => {
                        telemetry::action_stale(id, &claim.rule);
                        report.stale += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }

    async fn perform(&self, claim: &ClaimedAction) -> Outcome {
        let request: ActionRequest = match serde_json::from_str(&claim.payload) {
            Ok(request) => request,
            Err(e) => {
                return Outcome::Failed {
                    error: format!("stored action is unreadable: {e}"),
                };
            }
        };
        let result = match &request {
            ActionRequest::Alert { channel, text } => {
                let Some(target) = self.channels.get(channel) else {
                    return Outcome::Failed {
                        error: format!("no channel named {channel:?} in the config"),
                    };
                };
                let alert = Alert {
                    rule: claim.rule.clone(),
                    subject: claim.subject.to_string(),
                    text: text.clone(),
                };
                target
                    .send(&alert)
                    .await
                    .map(|receipt| serde_json::json!({ "channel": channel, "receipt": receipt }))
            }
            // Planned, shown and testable now; their executors are not built yet, so
            // they wait where a person can see them instead of failing.
            other => {
                return Outcome::Held {
                    reason: format!("no executor for {} actions yet", other.kind()),
                };
            }
        };
        match result {
            Ok(detail) => Outcome::Done { detail },
            Err(error) => self.after_failure(claim, &error),
        }
    }

    fn after_failure(&self, claim: &ClaimedAction, error: &UpstreamError) -> Outcome {
        if !error.is_retryable() {
            return Outcome::Failed {
                error: error.to_string(),
            };
        }
        if claim.attempt >= i64::from(self.config.max_attempts) {
            return Outcome::Failed {
                error: format!("gave up after {} attempts: {error}", claim.attempt),
            };
        }
        let jitter = rand::rng().random_range(-0.1..=0.1);
        let delay = backoff(claim.attempt, jitter);
        let delay = error
            .retry_after()
            .and_then(|d| Duration::from_std(d).ok())
            .map_or(delay, |d| d.max(delay));
        Outcome::Retry {
            at: self.clock.now() + delay,
            error: error.to_string(),
        }
    }

    /// When the next retry falls due, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.store.next_due().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_as_the_fourth_power_and_is_capped() {
        assert_eq!(backoff(1, 0.0), Duration::seconds(1));
        assert_eq!(backoff(2, 0.0), Duration::seconds(16));
        assert_eq!(backoff(5, 0.0), Duration::seconds(625));
        assert_eq!(backoff(9, 0.0), Duration::seconds(3600));
        assert_eq!(backoff(3, 0.1), Duration::milliseconds(89_100));
        // Ten attempts stay well inside a day (the upstreams' idempotency windows).
        let total: i64 = (1..10).map(|a| backoff(a, 0.1).num_seconds()).sum();
        assert!(total < 24 * 3600, "{total}");
    }
}
