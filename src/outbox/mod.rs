//! The outbox executor: claims due actions under a lease, performs each through its
//! channel or executor, and records every attempt. States:
//!
//! ```text
//! planned ─► claimed ─► done
//!    ▲  ▲       ├─► retry ─► (claimed again, attempt⁴ s ±10 %, ≤ 1 h, ≤ max_attempts)
//!    │  │       ├─► failed   (permanent, alerted)
//!    │  │       ├─► unknown  (may have happened: never retried by itself, alerted)
//!    │  └───────┴─► planned  (deferred: quiet hours, alert grouping, a feed in progress)
//! held ─ approve ┘   held/unknown ─ reject ─► rejected
//! ```
//!
//! What an unclear outcome may lead to is the action's safety class
//! ([`crate::executors::Safety`]). A completion after the lease was taken over is
//! rejected by the store's fencing token, so two workers never both record an action.
//!
//! Alerts of one channel and rule are grouped: the first goes out at once, the ones
//! that follow within the channel's window wait for its end and leave as one message
//! with a count and a few examples. A channel in its quiet hours is not posted to.
//!
//! Failpoints (feature `failpoints`, for the crash tests): `outbox.before_send` stops
//! after the action is claimed and before anything is sent; `outbox.after_send` stops
//! after the upstream answered and before the outcome is recorded.

pub mod approvals;
pub mod summary;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rand::Rng;

use crate::channels::{Alert, AlertLine, Channel, EXAMPLES};
use crate::clock::SharedClock;
use crate::config::{ExecutorConfig, QuietHours};
use crate::executors::reply::ReplyExecutor;
use crate::executors::{ActionError, ActionExecutor, Attempt, Performed, Safety};
use crate::http::UpstreamError;
use crate::model::{ActionRequest, PlannedAction, Subject};
use crate::store::{ClaimedAction, Outcome, Store, StoreError};
use crate::telemetry;

/// How many actions one claim takes.
const CLAIM_BATCH: i64 = 16;
/// Most alerts folded into one message.
const GROUP_LIMIT: i64 = 1000;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutorReport {
    pub done: usize,
    pub retry: usize,
    pub failed: usize,
    pub unknown: usize,
    pub held: usize,
    pub deferred: usize,
    pub stale: usize,
    /// Chat messages sent (a group counts once).
    pub messages: usize,
}

impl ExecutorReport {
    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Done { .. } => self.done += 1,
            Outcome::Retry { .. } => self.retry += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Unknown { .. } => self.unknown += 1,
            Outcome::Held { .. } => self.held += 1,
            Outcome::Deferred { .. } => self.deferred += 1,
        }
    }

    /// Add another pass's counts.
    pub fn add(&mut self, other: &ExecutorReport) {
        self.done += other.done;
        self.retry += other.retry;
        self.failed += other.failed;
        self.unknown += other.unknown;
        self.held += other.held;
        self.deferred += other.deferred;
        self.stale += other.stale;
        self.messages += other.messages;
    }

    pub fn attempted(&self) -> usize {
        self.done + self.retry + self.failed + self.unknown + self.held + self.stale
    }
}

/// Why a pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A failpoint stopped the pass as a crash would; the claimed rows stay claimed
    /// until their lease expires (tests only).
    #[error("simulated crash at {0}")]
    Crashed(&'static str),
}

/// Delay before attempt `attempt + 1`: attempt⁴ seconds, jittered, at most an hour.
pub fn backoff(attempt: i64, jitter: f64) -> Duration {
    let base = (attempt.clamp(1, 100) as f64).powi(4).min(3600.0);
    let jittered = (base * (1.0 + jitter.clamp(-0.1, 0.1))).max(1.0);
    Duration::milliseconds((jittered * 1000.0) as i64)
}

/// A chat channel as the outbox uses it.
#[derive(Clone)]
pub struct Route {
    pub channel: Arc<dyn Channel>,
    pub quiet_hours: Option<QuietHours>,
    pub group_window: Duration,
}

/// An alert about nightdesk itself, to the ops channel, once per `topic`.
pub fn system_alert(channel: &str, topic: &str, text: String, dry_run: bool) -> PlannedAction {
    PlannedAction {
        rule: "nightdesk".to_owned(),
        rule_version: env!("CARGO_PKG_VERSION").to_owned(),
        subject: Subject::named("nightdesk", topic),
        idempotency_key: format!("nightdesk|{topic}"),
        request: ActionRequest::Alert {
            channel: channel.to_owned(),
            text,
        },
        hold: None,
        dry_run,
    }
}

pub struct Executor {
    store: Arc<dyn Store>,
    routes: HashMap<String, Route>,
    /// Per upstream account (`amazon/<account>`).
    actions: HashMap<String, Arc<dyn ActionExecutor>>,
    /// Replies to buyer mail, when mailboxes are configured.
    replies: Option<Arc<ReplyExecutor>>,
    /// Where failed and unknown actions are alerted.
    ops_channel: Option<String>,
    clock: SharedClock,
    config: ExecutorConfig,
    owner: String,
}

impl Executor {
    pub fn new(
        store: Arc<dyn Store>,
        routes: HashMap<String, Route>,
        clock: SharedClock,
        config: ExecutorConfig,
        owner: String,
    ) -> Self {
        Self {
            store,
            routes,
            actions: HashMap::new(),
            replies: None,
            ops_channel: None,
            clock,
            config,
            owner,
        }
    }

    /// Executors per upstream account, keyed `amazon/<account>`.
    pub fn with_actions(mut self, actions: HashMap<String, Arc<dyn ActionExecutor>>) -> Self {
        self.actions = actions;
        self
    }

    pub fn with_replies(mut self, replies: Option<Arc<ReplyExecutor>>) -> Self {
        self.replies = replies;
        self
    }

    pub fn with_ops_channel(mut self, channel: Option<String>) -> Self {
        self.ops_channel = channel;
        self
    }

    fn lease(&self) -> Duration {
        Duration::seconds(self.config.lease_seconds)
    }

    /// Claim and perform due actions until none is due, or `stop` says so between
    /// actions (an action once started is always finished and recorded).
    pub async fn run_due(
        &self,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<ExecutorReport, ExecutorError> {
        let mut report = ExecutorReport::default();
        loop {
            if stop() {
                return Ok(report);
            }
            let claimed = self
                .store
                .claim_due(&self.owner, self.clock.now(), self.lease(), CLAIM_BATCH)
                .await?;
            if claimed.is_empty() {
                return Ok(report);
            }
            // Alerts of one group claimed together leave together.
            let mut groups: Vec<(ClaimedAction, Vec<ClaimedAction>)> = Vec::new();
            for claim in claimed {
                if stop() {
                    // Shutting down: what is claimed but not started goes back at once,
                    // for this or another instance, instead of waiting out its lease.
                    self.release(&claim, &mut report).await?;
                    continue;
                }
                if claim.kind != "alert" {
                    self.perform(claim, &mut report).await?;
                    continue;
                }
                let grouped = alert_of(&claim)
                    .and_then(|(channel, _)| self.routes.get(&channel))
                    .is_some_and(|route| route.group_window > Duration::zero());
                let lead = claim
                    .group_key
                    .as_ref()
                    .filter(|_| grouped)
                    .and_then(|key| {
                        groups
                            .iter_mut()
                            .find(|(lead, _)| lead.group_key.as_ref() == Some(key))
                    });
                match lead {
                    Some((_, batch)) => batch.push(claim),
                    None => groups.push((claim, Vec::new())),
                }
            }
            for (lead, batch) in groups {
                if stop() {
                    self.release(&lead, &mut report).await?;
                    for claim in &batch {
                        self.release(claim, &mut report).await?;
                    }
                    continue;
                }
                self.deliver_alert(lead, batch, &mut report).await?;
            }
        }
    }

    /// Give a claimed action back untouched (not counted as an attempt).
    async fn release(
        &self,
        claim: &ClaimedAction,
        report: &mut ExecutorReport,
    ) -> Result<(), ExecutorError> {
        let outcome = Outcome::Deferred {
            at: self.clock.now(),
            reason: "released unstarted at shutdown".to_owned(),
        };
        self.finish(claim, outcome, report).await
    }

    /// Record an outcome; a stale lease is counted, not an error.
    async fn finish(
        &self,
        claim: &ClaimedAction,
        outcome: Outcome,
        report: &mut ExecutorReport,
    ) -> Result<(), ExecutorError> {
        telemetry::action_attempted(&claim.rule, &claim.kind, claim.attempt, &outcome);
        match self.store.finish(claim, &outcome, self.clock.now()).await {
            Ok(()) => report.count(&outcome),
            Err(StoreError::StaleLease(id)) => {
                telemetry::action_stale(id, &claim.rule);
                report.stale += 1;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if matches!(outcome, Outcome::Failed { .. } | Outcome::Unknown { .. }) {
            self.alert_ops(claim, &outcome).await?;
        }
        Ok(())
    }

    /// Tell the ops channel about a failed or unknown action, with what to do.
    async fn alert_ops(&self, claim: &ClaimedAction, outcome: &Outcome) -> Result<(), StoreError> {
        let Some(ops) = &self.ops_channel else {
            return Ok(());
        };
        // An alert that failed is not alerted about on its own channel (it would fail
        // too) nor about nightdesk's own alerts (no loops).
        if claim.rule == "nightdesk"
            || claim
                .group_key
                .as_deref()
                .is_some_and(|g| g.starts_with(&format!("{ops}|")))
        {
            return Ok(());
        }
        let (state, what) = match outcome {
            Outcome::Failed { error } => ("failed", format!("failed for good: {error}")),
            Outcome::Unknown { error } => (
                "unknown",
                format!(
                    "may or may not have happened and will not be retried by itself: {error}. \
                     After checking: `nightdesk approve {id}` to perform it again, `nightdesk reject {id}` to leave it.",
                    id = claim.id
                ),
            ),
            _ => return Ok(()),
        };
        let text = format!(
            "nightdesk: {} action #{} (rule {}, {}) {what}",
            claim.kind, claim.id, claim.rule, claim.subject
        );
        let alert = system_alert(ops, &format!("outbox/{}/{state}", claim.id), text, false);
        self.store.plan(None, &[alert], self.clock.now()).await?;
        Ok(())
    }

    /// Deliver an alert, folded with the due alerts of its group (`batch`: those claimed
    /// with it).
    async fn deliver_alert(
        &self,
        claim: ClaimedAction,
        batch: Vec<ClaimedAction>,
        report: &mut ExecutorReport,
    ) -> Result<(), ExecutorError> {
        let now = self.clock.now();
        let Some((channel, text)) = alert_of(&claim) else {
            let outcome = Outcome::Failed {
                error: "stored alert is unreadable".into(),
            };
            return self.defer_all(claim, batch, outcome, report).await;
        };
        let Some(route) = self.routes.get(&channel) else {
            let outcome = Outcome::Failed {
                error: format!("no channel named {channel:?} in the config"),
            };
            return self.defer_all(claim, batch, outcome, report).await;
        };
        if let Some(end) = route.quiet_hours.and_then(|q| q.end_if_quiet(now)) {
            let outcome = Outcome::Deferred {
                at: end,
                reason: format!("quiet hours on {channel}"),
            };
            return self.defer_all(claim, batch, outcome, report).await;
        }
        // The channel asked us to slow down (429): nothing goes to it before then.
        if let Some(until) = self.store.channel_retry_until(&channel).await?
            && until > now
        {
            let outcome = Outcome::Deferred {
                at: until,
                reason: format!("{channel} asked to retry later"),
            };
            return self.defer_all(claim, batch, outcome, report).await;
        }
        let mut members = vec![(claim.clone(), text)];
        let mut others = batch;
        if let Some(group) = claim.group_key.as_deref()
            && route.group_window > Duration::zero()
        {
            if let Some(last) = self.store.last_delivery(group).await?
                && last + route.group_window > now
            {
                let outcome = Outcome::Deferred {
                    at: last + route.group_window,
                    reason: "grouped with the alerts of the same rule".into(),
                };
                return self.defer_all(claim, others, outcome, report).await;
            }
            others.extend(
                self.store
                    .claim_group(&self.owner, group, now, self.lease(), GROUP_LIMIT)
                    .await?,
            );
        }
        {
            for other in others {
                if other.id == claim.id {
                    continue;
                }
                match alert_of(&other) {
                    Some((_, text)) => members.push((other, text)),
                    None => {
                        let outcome = Outcome::Failed {
                            error: "stored alert is unreadable".into(),
                        };
                        self.finish(&other, outcome, report).await?;
                    }
                }
            }
        }
        members.sort_by_key(|(c, _)| c.id);
        let alert = Alert {
            rule: claim.rule.clone(),
            key: claim.idempotency_key.clone(),
            total: members.len(),
            lines: members
                .iter()
                .take(EXAMPLES)
                .map(|(c, text)| AlertLine {
                    subject: c.subject.to_string(),
                    text: text.clone(),
                })
                .collect(),
        };
        fail::fail_point!("outbox.before_send", |_| Err(ExecutorError::Crashed(
            "outbox.before_send"
        )));
        let result = route.channel.send(&alert).await;
        fail::fail_point!("outbox.after_send", |_| Err(ExecutorError::Crashed(
            "outbox.after_send"
        )));
        report.messages += 1;
        let lead = members.first().map(|(c, _)| c.id).unwrap_or(claim.id);
        let outcome = match result {
            Ok(receipt) => Outcome::Done {
                detail: serde_json::json!({
                    "channel": channel, "kind": route.channel.kind(), "receipt": receipt,
                    "grouped": members.len(),
                }),
            },
            Err(error) => self.after_failure(&claim, &error, route.channel.kind()),
        };
        for (member, _) in &members {
            let outcome = match &outcome {
                Outcome::Done { .. } if member.id != lead => Outcome::Done {
                    detail: serde_json::json!({ "channel": channel, "grouped_into": lead }),
                },
                other => other.clone(),
            };
            self.finish(member, outcome, report).await?;
        }
        Ok(())
    }

    /// The same outcome for an alert and the rest of its batch (each checked alone).
    async fn defer_all(
        &self,
        claim: ClaimedAction,
        batch: Vec<ClaimedAction>,
        outcome: Outcome,
        report: &mut ExecutorReport,
    ) -> Result<(), ExecutorError> {
        self.finish(&claim, outcome.clone(), report).await?;
        for other in batch {
            self.finish(&other, outcome.clone(), report).await?;
        }
        Ok(())
    }

    /// Perform a non-alert action through its upstream's executor.
    async fn perform(
        &self,
        claim: ClaimedAction,
        report: &mut ExecutorReport,
    ) -> Result<(), ExecutorError> {
        let request: ActionRequest = match serde_json::from_str(&claim.payload) {
            Ok(request) => request,
            Err(e) => {
                let outcome = Outcome::Failed {
                    error: format!("stored action is unreadable: {e}"),
                };
                return self.finish(&claim, outcome, report).await;
            }
        };
        let outcome = match &request {
            ActionRequest::Tag { name } => Outcome::Done {
                detail: serde_json::json!({ "tag": name }),
            },
            ActionRequest::Reply { .. } => self.perform_reply(&claim, &request).await?,
            _ => self.perform_upstream(&claim, &request).await?,
        };
        self.finish(&claim, outcome, report).await
    }

    async fn perform_upstream(
        &self,
        claim: &ClaimedAction,
        request: &ActionRequest,
    ) -> Result<Outcome, ExecutorError> {
        let order = match claim.subject.as_order() {
            Some((channel, id)) => self.store.order(channel, id).await?,
            None => None,
        };
        let Some(order) = order else {
            return Ok(Outcome::Failed {
                error: format!("{} is not a stored order; nothing was sent", claim.subject),
            });
        };
        let account = format!("{}/{}", order.order.channel.as_str(), order.order.account);
        let Some(executor) = self.actions.get(&account) else {
            return Ok(Outcome::Held {
                reason: format!(
                    "no executor for {} actions on account {account} (is it configured?)",
                    request.kind()
                ),
            });
        };
        let safety = executor.safety(request);
        let mut attempt =
            Attempt::new(claim, request, Some(&order), self.clock.now(), &*self.store);
        fail::fail_point!("outbox.before_send", |_| Err(ExecutorError::Crashed(
            "outbox.before_send"
        )));
        let result = executor.perform(&mut attempt).await;
        self.outcome_of(claim, safety, result)
    }

    /// Reply to a buyer message through the mail executor.
    async fn perform_reply(
        &self,
        claim: &ClaimedAction,
        request: &ActionRequest,
    ) -> Result<Outcome, ExecutorError> {
        let Some(replies) = &self.replies else {
            return Ok(Outcome::Held {
                reason: "no mailbox is configured for replies (mail.mailboxes); answer the buyer \
                         yourself, then reject this action"
                    .into(),
            });
        };
        let message = match claim.subject.as_str().strip_prefix("message:") {
            Some(id) => self.store.buyer_message(id).await?,
            None => None,
        };
        let Some(message) = message else {
            return Ok(Outcome::Failed {
                error: format!(
                    "{} is not a stored buyer message; nothing was sent",
                    claim.subject
                ),
            });
        };
        // The order the message is about; without one, the writer's order on another
        // channel when the match is sure enough to answer with (the ghost-order reply).
        let order = match crate::customers::order_of_message(self.store.as_ref(), &message).await? {
            Some(order) => Some(order),
            None => crate::customers::matches(self.store.as_ref(), &message, None)
                .await?
                .into_iter()
                .find(|m| m.confidence >= crate::customers::ANSWERABLE)
                .map(|m| m.order),
        };
        let mut attempt = Attempt::new(
            claim,
            request,
            order.as_ref(),
            self.clock.now(),
            &*self.store,
        );
        fail::fail_point!("outbox.before_send", |_| Err(ExecutorError::Crashed(
            "outbox.before_send"
        )));
        let result = replies
            .perform(&mut attempt, &message, order.as_ref())
            .await;
        self.outcome_of(claim, Safety::AtMostOnce, result)
    }

    /// What an executor's result means for the row, given the action's safety class.
    fn outcome_of(
        &self,
        claim: &ClaimedAction,
        safety: Safety,
        result: Result<Performed, ActionError>,
    ) -> Result<Outcome, ExecutorError> {
        if result.is_ok() {
            fail::fail_point!("outbox.after_send", |_| Err(ExecutorError::Crashed(
                "outbox.after_send"
            )));
        }
        Ok(match result {
            Ok(Performed::Done(detail)) => Outcome::Done {
                detail: serde_json::json!({ "safety": safety.as_str(), "result": detail }),
            },
            Ok(Performed::Wait { at, note }) => Outcome::Deferred { at, reason: note },
            Err(ActionError::Upstream { during, error }) => {
                if safety == Safety::AtMostOnce && error.may_have_acted() {
                    Outcome::Unknown {
                        error: format!("{during}: {error}"),
                    }
                } else {
                    self.after_failure(claim, &error, during)
                }
            }
            Err(ActionError::Permanent(error)) => Outcome::Failed { error },
            Err(ActionError::Unknown(error)) => Outcome::Unknown { error },
            Err(ActionError::Held(reason)) => Outcome::Held { reason },
            Err(ActionError::Store(StoreError::StaleLease(id))) => {
                // Another worker owns it now; record nothing.
                telemetry::action_stale(id, &claim.rule);
                return Ok(Outcome::Deferred {
                    at: self.clock.now(),
                    reason: "stale lease".into(),
                });
            }
            Err(ActionError::Store(e)) => return Err(e.into()),
            Err(ActionError::Crashed(at)) => return Err(ExecutorError::Crashed(at)),
        })
    }

    /// Retry (with backoff, honouring Retry-After) or fail, for an error that did not
    /// leave the outcome unclear. `during` names the call.
    fn after_failure(&self, claim: &ClaimedAction, error: &UpstreamError, during: &str) -> Outcome {
        if !error.is_retryable() {
            return Outcome::Failed {
                error: format!("{during}: {error}"),
            };
        }
        if claim.attempt >= i64::from(self.config.max_attempts) {
            return Outcome::Failed {
                error: format!(
                    "gave up after {} attempts: {during}: {error}",
                    claim.attempt
                ),
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
            error: format!("{during}: {error}"),
        }
    }

    /// When the next retry falls due, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.store.next_due().await
    }
}

/// The channel and text of a stored alert.
fn alert_of(claim: &ClaimedAction) -> Option<(String, String)> {
    match serde_json::from_str(&claim.payload).ok()? {
        ActionRequest::Alert { channel, text } => Some((channel, text)),
        _ => None,
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
