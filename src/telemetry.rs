//! Telemetry as named events: each notable occurrence is one function here that writes
//! the log line and bumps the metric together, with stable field names. Labels stay of
//! bounded cardinality (sources, rules, kinds, outcomes, operations; never order ids).
//! Every metric is described (HELP, unit) in one place, [`describe_metrics`]; the
//! gauges that reflect stored state (outbox, sources, mail clocks) are set by the
//! `*_observed` functions when `/metrics` is scraped.
//!
//! # Log fields
//! With `--json-logs` each line is one JSON object with these stable fields:
//! - `timestamp` (RFC 3339, UTC), `level` (`INFO`, `WARN`…), `target` (the module),
//!   `message` (the sentence);
//! - then the event's own fields, named the same everywhere: `source` (a poller's key,
//!   e.g. `amazon/eu`), `rule`, `kind` (an action's kind), `action_id`, `attempt`,
//!   `outcome` (an action's resulting state), `error`, `operation` (an upstream
//!   operation), `upstream`, `carrier`, `mailbox`, `marketplace`.
//!
//! Nothing here may format a secret; callers pass only names, counts and error texts
//! that were built secret-free (see `http`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock, PoisonError};

use chrono::{DateTime, Utc};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::sources::{PollReport, SourceError};
use crate::store::{MailClocks, Outcome, StateCount};

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the process-wide metrics recorder once, with every metric described; later
/// calls return the same handle.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok();
            describe_metrics();
            handle
        })
        .clone()
}

/// Every outbox state, so a state without rows reads 0 instead of vanishing.
pub const OUTBOX_STATES: [&str; 9] = [
    "planned", "dry_run", "claimed", "retry", "held", "unknown", "done", "failed", "rejected",
];

/// HELP and unit of every metric nightdesk records: the one place they are named
/// together (the recorder prints them as `# HELP` and `# TYPE`).
fn describe_metrics() {
    describe_counter!(
        "nightdesk_polls_total",
        "Polls of a source, by outcome (ok, error)."
    );
    describe_counter!(
        "nightdesk_orders_stored_total",
        "Orders new or changed, stored by a source's polls."
    );
    describe_counter!(
        "nightdesk_orders_skipped_total",
        "Orders skipped because their data broke the upstream contract."
    );
    describe_counter!(
        "nightdesk_parcels_skipped_total",
        "FBA parcels skipped by the fulfillment tracking poll."
    );
    describe_counter!(
        "nightdesk_sweep_missed_orders_total",
        "Orders the reconciliation sweep found that regular polls had missed."
    );
    describe_counter!(
        "nightdesk_credential_failures_total",
        "Times an account's or carrier's credentials were refused."
    );
    describe_gauge!(
        "nightdesk_poll_watermark_timestamp_seconds",
        Unit::Seconds,
        "End of the last window a source's poll read (Unix time)."
    );
    describe_gauge!(
        "nightdesk_source_last_success_timestamp_seconds",
        Unit::Seconds,
        "When a source was last polled successfully (Unix time), from the store."
    );
    describe_gauge!(
        "nightdesk_source_last_success_age_seconds",
        Unit::Seconds,
        "Seconds since a source was last polled successfully."
    );
    describe_gauge!(
        "nightdesk_source_watermark_lag_seconds",
        Unit::Seconds,
        "How far a source's stored watermark is behind now."
    );
    describe_gauge!(
        "nightdesk_source_consecutive_failures",
        "Failed polls of a source since its last good one."
    );
    describe_gauge!(
        "nightdesk_source_ready",
        "1 when a source was polled successfully within its expected interval, else 0."
    );
    describe_counter!(
        "nightdesk_upstream_calls_total",
        "Calls to an upstream operation, by HTTP status class."
    );
    describe_counter!(
        "nightdesk_upstream_throttled_total",
        "Calls an upstream answered with 429 (quota used up)."
    );
    describe_gauge!(
        "nightdesk_upstream_quota_rate_per_second",
        "Requests per second an upstream operation's usage plan grants."
    );
    describe_gauge!(
        "nightdesk_upstream_quota_burst",
        "Burst an upstream operation's usage plan grants."
    );
    describe_counter!(
        "nightdesk_rule_errors_total",
        "Rule runs that failed, by class (error, limit)."
    );
    describe_counter!(
        "nightdesk_rule_quarantines_total",
        "Times a rule was quarantined after failing."
    );
    describe_gauge!(
        "nightdesk_rules_quarantined",
        "Rules this instance skips until their file changes."
    );
    describe_gauge!(
        "nightdesk_rule_quarantined",
        "1 while this rule is quarantined on this instance."
    );
    describe_gauge!("nightdesk_rules_loaded", "Rules in the rule set in force.");
    describe_counter!(
        "nightdesk_rule_reload_errors_total",
        "Rule reloads refused because the folder did not pass check."
    );
    describe_counter!(
        "nightdesk_actions_planned_total",
        "Actions new to the outbox, by rule and kind."
    );
    describe_counter!(
        "nightdesk_action_attempts_total",
        "Attempts at actions, by rule, kind and resulting state."
    );
    describe_counter!(
        "nightdesk_action_stale_completions_total",
        "Action results discarded because the lease had been taken over."
    );
    describe_gauge!("nightdesk_outbox_actions", "Outbox rows by state.");
    describe_gauge!(
        "nightdesk_outbox_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest change among the outbox rows of a state."
    );
    describe_gauge!(
        "nightdesk_leases_held",
        "Leases on scheduled work this instance holds."
    );
    describe_gauge!(
        "nightdesk_store_up",
        "1 when the store answered the scrape's queries, else 0."
    );
    describe_counter!(
        "nightdesk_carrier_calls_total",
        "Tracking calls to a carrier, by outcome."
    );
    describe_counter!(
        "nightdesk_parcels_polled_total",
        "Parcels asked about in tracking polls."
    );
    describe_counter!(
        "nightdesk_tracking_events_total",
        "Tracking events the tracking polls stored."
    );
    describe_counter!(
        "nightdesk_parcels_watched_total",
        "Parcels added to tracking from ship confirmations."
    );
    describe_counter!(
        "nightdesk_mail_read_total",
        "Buyer mails read and stored, by mailbox."
    );
    describe_counter!(
        "nightdesk_mail_duplicates_total",
        "Buyer mails read again that were already stored."
    );
    describe_counter!(
        "nightdesk_mail_unreadable_total",
        "Mails skipped because they could not be parsed."
    );
    describe_counter!(
        "nightdesk_mailbox_errors_total",
        "Failed reads of a mailbox, by class."
    );
    describe_counter!(
        "nightdesk_mailbox_restarts_total",
        "Mailbox reads restarted from the beginning."
    );
    describe_histogram!(
        "nightdesk_first_reply_seconds",
        Unit::Seconds,
        "Time from a buyer message to its first substantive reply."
    );
    describe_counter!(
        "nightdesk_messages_handled_total",
        "Buyer messages answered, by who answered (nightdesk, people)."
    );
    describe_counter!(
        "nightdesk_replies_sent_total",
        "Replies sent, by kind (substantive, acknowledgement)."
    );
    describe_gauge!(
        "nightdesk_mail_open_clocks",
        "Buyer messages that may be answered and have no substantive reply yet."
    );
    describe_gauge!(
        "nightdesk_mail_oldest_open_age_seconds",
        Unit::Seconds,
        "Age of the oldest buyer message whose 24-hour clock runs."
    );
}

/// Labels each scrape-time gauge family was last set for, so a label that disappeared
/// (a state emptied, a rule released) reads 0 instead of keeping its old value.
static FAMILIES: Mutex<BTreeMap<&'static str, BTreeSet<String>>> = Mutex::new(BTreeMap::new());

/// Set `name{label=value}` for every value given, and 0 for those set before only.
fn set_family(name: &'static str, label: &'static str, values: &[(String, f64)]) {
    let mut families = FAMILIES.lock().unwrap_or_else(PoisonError::into_inner);
    let seen = families.entry(name).or_default();
    for stale in seen.iter().filter(|l| !values.iter().any(|(v, _)| v == *l)) {
        gauge!(name, label => stale.clone()).set(0.0);
    }
    for (value, number) in values {
        gauge!(name, label => value.clone()).set(*number);
        seen.insert(value.clone());
    }
}

fn age_seconds(now: DateTime<Utc>, then: DateTime<Utc>) -> f64 {
    ((now - then).num_milliseconds() as f64 / 1000.0).max(0.0)
}

/// A source as a scrape sees it.
#[derive(Debug, Clone)]
pub struct SourceObservation {
    pub source: String,
    pub last_good: Option<DateTime<Utc>>,
    pub consecutive_failures: i64,
    pub watermark: Option<DateTime<Utc>>,
    pub ready: bool,
}

/// Set the per-source gauges from the stored health and checkpoints.
pub fn sources_observed(sources: &[SourceObservation], now: DateTime<Utc>) {
    let each = |f: &dyn Fn(&SourceObservation) -> Option<f64>| -> Vec<(String, f64)> {
        sources
            .iter()
            .filter_map(|s| Some((s.source.clone(), f(s)?)))
            .collect()
    };
    set_family(
        "nightdesk_source_last_success_timestamp_seconds",
        "source",
        &each(&|s| s.last_good.map(|t| t.timestamp_millis() as f64 / 1000.0)),
    );
    set_family(
        "nightdesk_source_last_success_age_seconds",
        "source",
        &each(&|s| s.last_good.map(|t| age_seconds(now, t))),
    );
    set_family(
        "nightdesk_source_watermark_lag_seconds",
        "source",
        &each(&|s| s.watermark.map(|t| age_seconds(now, t))),
    );
    set_family(
        "nightdesk_source_consecutive_failures",
        "source",
        &each(&|s| Some(s.consecutive_failures as f64)),
    );
    set_family(
        "nightdesk_source_ready",
        "source",
        &each(&|s| Some(if s.ready { 1.0 } else { 0.0 })),
    );
}

/// Set the outbox gauges: rows and oldest change by state (every state, 0 if empty).
pub fn outbox_observed(states: &[StateCount], now: DateTime<Utc>) {
    let of = |state: &str| states.iter().find(|c| c.state == state);
    let mut names: Vec<String> = OUTBOX_STATES.iter().map(|s| (*s).to_owned()).collect();
    names.extend(
        states
            .iter()
            .filter(|c| !OUTBOX_STATES.contains(&c.state.as_str()))
            .map(|c| c.state.clone()),
    );
    let counts: Vec<(String, f64)> = names
        .iter()
        .map(|n| (n.clone(), of(n).map_or(0.0, |c| c.count as f64)))
        .collect();
    let ages: Vec<(String, f64)> = names
        .iter()
        .map(|n| (n.clone(), of(n).map_or(0.0, |c| age_seconds(now, c.oldest))))
        .collect();
    set_family("nightdesk_outbox_actions", "state", &counts);
    set_family("nightdesk_outbox_oldest_age_seconds", "state", &ages);
}

/// Set the running 24-hour clocks of buyer mail, by marketplace.
pub fn mail_clocks_observed(clocks: &[MailClocks], now: DateTime<Utc>) {
    let open: Vec<(String, f64)> = clocks
        .iter()
        .map(|c| (c.channel.clone(), c.open as f64))
        .collect();
    let oldest: Vec<(String, f64)> = clocks
        .iter()
        .map(|c| (c.channel.clone(), age_seconds(now, c.oldest_received)))
        .collect();
    set_family("nightdesk_mail_open_clocks", "marketplace", &open);
    set_family(
        "nightdesk_mail_oldest_open_age_seconds",
        "marketplace",
        &oldest,
    );
}

/// Set the leases this instance holds and the rules it quarantined.
pub fn instance_observed(leases_held: usize, quarantined: &[String]) {
    gauge!("nightdesk_leases_held").set(leases_held as f64);
    gauge!("nightdesk_rules_quarantined").set(quarantined.len() as f64);
    let rules: Vec<(String, f64)> = quarantined.iter().map(|r| (r.clone(), 1.0)).collect();
    set_family("nightdesk_rule_quarantined", "rule", &rules);
}

/// Whether the store answered a scrape; a failure is logged with it.
pub fn store_observed(error: Option<&crate::store::StoreError>) {
    gauge!("nightdesk_store_up").set(if error.is_some() { 0.0 } else { 1.0 });
    if let Some(error) = error {
        tracing::error!(error = %error, "The store did not answer the metrics scrape.");
    }
}

/// One call to an upstream operation was answered with `status`; `plan` is the
/// (rate per second, burst) it is paced at now, if it has a usage plan.
pub fn upstream_called(upstream: &str, operation: &str, status: u16, plan: Option<(f64, f64)>) {
    let class = match status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    };
    counter!("nightdesk_upstream_calls_total", "upstream" => upstream.to_owned(), "operation" => operation.to_owned(), "status" => class)
        .increment(1);
    if let Some((rate, burst)) = plan {
        gauge!("nightdesk_upstream_quota_rate_per_second", "upstream" => upstream.to_owned(), "operation" => operation.to_owned())
            .set(rate);
        gauge!("nightdesk_upstream_quota_burst", "upstream" => upstream.to_owned(), "operation" => operation.to_owned())
            .set(burst);
    }
}

/// An upstream answered 429: the operation's quota is used up for now.
pub fn upstream_throttled(upstream: &str, operation: &str) {
    counter!("nightdesk_upstream_throttled_total", "upstream" => upstream.to_owned(), "operation" => operation.to_owned())
        .increment(1);
    tracing::warn!(
        upstream,
        operation,
        "Upstream quota used up (429); pacing the operation down."
    );
}

/// Install JSON (or human) logs on stderr, filtered by `RUST_LOG` (default `info`).
/// The IMAP client logs raw server input (mail content) at trace and debug: it is held
/// at `info` whatever `RUST_LOG` asks, because buyer mail must never reach the logs.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let filter = match "async_imap=info".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let filter = match "imap_proto=info".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        // No span fields: a line keeps the documented shape.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

pub fn poll_succeeded(source: &str, report: &PollReport) {
    counter!("nightdesk_polls_total", "source" => source.to_owned(), "outcome" => "ok")
        .increment(1);
    counter!("nightdesk_orders_stored_total", "source" => source.to_owned())
        .increment(report.ingest.stored as u64);
    if let Some(window) = report.window {
        gauge!("nightdesk_poll_watermark_timestamp_seconds", "source" => source.to_owned())
            .set(window.to.timestamp() as f64);
    }
    tracing::info!(
        source,
        fetched = report.fetched,
        stored = report.ingest.stored,
        unchanged = report.ingest.unchanged,
        events = report.ingest.events,
        window_from = ?report.window.map(|w| w.from),
        window_to = ?report.window.map(|w| w.to),
        "Poll succeeded."
    );
}

/// One FBA Multi-Channel Fulfillment tracking poll of an account succeeded.
pub fn fulfillment_polled(
    source: &str,
    report: &crate::sources::amazon::fulfillment::FulfillmentReport,
) {
    counter!("nightdesk_polls_total", "source" => source.to_owned(), "outcome" => "ok")
        .increment(1);
    counter!("nightdesk_parcels_skipped_total", "source" => source.to_owned())
        .increment(report.skipped.len() as u64);
    tracing::info!(
        source,
        listed = report.listed,
        fetched = report.fetched,
        settled = report.settled,
        parcels = report.parcels,
        waiting = report.waiting,
        skipped = report.skipped.len(),
        new = report.shipments.new,
        updated = report.shipments.updated,
        events = report.shipments.events,
        "FBA tracking poll succeeded."
    );
}

pub fn poll_failed(source: &str, error: &SourceError) {
    counter!("nightdesk_polls_total", "source" => source.to_owned(), "outcome" => "error")
        .increment(1);
    tracing::error!(source, error = %error, "Poll failed; the window will be read again next time.");
}

/// An order on a listing page that breaks the contract: logged and skipped.
pub fn order_skipped(source: &str, order: &str, reason: &str) {
    counter!("nightdesk_orders_skipped_total", "source" => source.to_owned()).increment(1);
    tracing::warn!(
        source,
        order,
        reason,
        "Order skipped: its data breaks the contract."
    );
}

/// The daily reconciliation sweep ran; `missed` orders had escaped the regular polls.
pub fn sweep_finished(source: &str, report: &crate::sources::SweepReport) {
    counter!("nightdesk_sweep_missed_orders_total", "source" => source.to_owned())
        .increment(report.missed.len() as u64);
    if report.missed.is_empty() {
        tracing::info!(
            source,
            listed = report.listed,
            "Reconciliation sweep found nothing missed."
        );
    } else {
        tracing::warn!(source, listed = report.listed, missed = ?report.missed, "Reconciliation sweep found orders the regular polls missed.");
    }
}

/// An account's credentials were refused; its polling stops until they are fixed.
pub fn credentials_failing(source: &str, error: &SourceError) {
    counter!("nightdesk_credential_failures_total", "source" => source.to_owned()).increment(1);
    tracing::error!(source, error = %error, "Credentials refused; polling of this account stops until they are fixed.");
}

pub fn rule_failed(rule: &str, error: &crate::rules::RuleError, quarantined: bool) {
    let class = if matches!(error, crate::rules::RuleError::Limit { .. }) {
        "limit"
    } else {
        "error"
    };
    counter!("nightdesk_rule_errors_total", "rule" => rule.to_owned(), "class" => class)
        .increment(1);
    if quarantined {
        counter!("nightdesk_rule_quarantines_total", "rule" => rule.to_owned()).increment(1);
    }
    // The rule engine has already logged the detail at the point of failure.
}

/// An action new to the outbox (a re-request of one it holds is not counted).
pub fn action_planned(rule: &str, kind: &str) {
    counter!("nightdesk_actions_planned_total", "rule" => rule.to_owned(), "kind" => kind.to_owned()).increment(1);
}

pub fn action_attempted(rule: &str, kind: &str, attempt: i64, outcome: &Outcome) {
    counter!(
        "nightdesk_action_attempts_total",
        "rule" => rule.to_owned(), "kind" => kind.to_owned(), "outcome" => outcome.state()
    )
    .increment(1);
    let state = outcome.state();
    match outcome {
        Outcome::Done { .. } => {
            tracing::info!(rule, kind, attempt, outcome = state, "Action done.")
        }
        Outcome::Retry { at, error } => {
            tracing::warn!(rule, kind, attempt, outcome = state, error, retry_at = %at, "Action will be retried.")
        }
        Outcome::Failed { error } => {
            tracing::error!(
                rule,
                kind,
                attempt,
                outcome = state,
                error,
                "Action failed for good."
            )
        }
        Outcome::Held { reason } => {
            tracing::warn!(
                rule,
                kind,
                attempt,
                outcome = state,
                reason,
                "Action held for a person."
            )
        }
        Outcome::Unknown { error } => tracing::error!(
            rule,
            kind,
            attempt,
            outcome = state,
            error,
            "Action outcome unknown; not retried."
        ),
        Outcome::Deferred { at, reason } => {
            tracing::debug!(rule, kind, outcome = state, reason, due = %at, "Action deferred.")
        }
    }
}

pub fn action_stale(id: i64, rule: &str) {
    counter!("nightdesk_action_stale_completions_total").increment(1);
    tracing::warn!(
        action_id = id,
        rule,
        "A worker finished an action after its lease was taken over; result discarded."
    );
}

pub fn rules_loaded(count: usize) {
    gauge!("nightdesk_rules_loaded").set(count as f64);
    tracing::info!(count, "Rules loaded.");
}

pub fn rules_reload_failed(errors: &[String]) {
    counter!("nightdesk_rule_reload_errors_total").increment(1);
    tracing::error!(errors = ?errors, "Rule reload failed; the last good rules keep running.");
}

/// A call to a carrier failed; its parcels are asked about again later.
pub fn carrier_failed(carrier: &str, error: &crate::sources::carriers::CarrierError) {
    counter!("nightdesk_carrier_calls_total", "carrier" => carrier.to_owned(), "outcome" => "error")
        .increment(1);
    tracing::warn!(carrier, error = %error, "Carrier call failed; its parcels are asked again later.");
}

/// A carrier answered a tracking call.
pub fn carrier_answered(carrier: &str, numbers: usize) {
    counter!("nightdesk_carrier_calls_total", "carrier" => carrier.to_owned(), "outcome" => "ok")
        .increment(1);
    tracing::debug!(carrier, numbers, "Carrier answered.");
}

/// One tracker poll finished.
pub fn tracking_polled(report: &crate::sources::carriers::tracker::TrackReport) {
    counter!("nightdesk_parcels_polled_total").increment(report.asked as u64);
    counter!("nightdesk_tracking_events_total").increment(report.shipments.events as u64);
    tracing::info!(
        asked = report.asked,
        found = report.found,
        not_found = report.not_found,
        stopped = report.stopped,
        events = report.shipments.events,
        failures = report.failures.len(),
        "Tracking poll finished."
    );
}

/// New parcels to watch, from a marketplace's ship confirmations.
pub fn parcels_watched(source: &str, added: usize) {
    counter!("nightdesk_parcels_watched_total", "source" => source.to_owned())
        .increment(added as u64);
    if added > 0 {
        tracing::info!(source, added, "Parcels added to tracking.");
    }
}

/// A carrier refused nightdesk's credentials.
pub fn carrier_credentials_failing(carrier: &str, detail: &str) {
    counter!("nightdesk_credential_failures_total", "source" => format!("carrier/{carrier}"))
        .increment(1);
    tracing::error!(
        carrier,
        detail,
        "Carrier credentials refused; its parcels wait until they are fixed."
    );
}

/// One read of a mailbox was stored.
pub fn mail_read(mailbox: &str, report: &crate::store::MailReport) {
    counter!("nightdesk_mail_read_total", "mailbox" => mailbox.to_owned())
        .increment(report.new as u64);
    counter!("nightdesk_mail_duplicates_total", "mailbox" => mailbox.to_owned())
        .increment(report.duplicates as u64);
    if report.new + report.duplicates > 0 {
        tracing::info!(
            mailbox,
            new = report.new,
            duplicates = report.duplicates,
            to_answer = report.events,
            "Mail read."
        );
    }
}

/// A mail could not be parsed; it is skipped (named by position, never by content).
pub fn mail_unreadable(mailbox: &str, position: &str, error: &crate::sources::mail::MailError) {
    counter!("nightdesk_mail_unreadable_total", "mailbox" => mailbox.to_owned()).increment(1);
    tracing::warn!(mailbox, position, error = %error, "Unreadable mail skipped.");
}

/// A mailbox could not be read.
pub fn mailbox_failed(mailbox: &str, error: &crate::sources::mail::MailboxError) {
    let class = if error.is_retryable() {
        "retryable"
    } else {
        "permanent"
    };
    counter!("nightdesk_mailbox_errors_total", "mailbox" => mailbox.to_owned(), "class" => class)
        .increment(1);
    tracing::warn!(mailbox, error = %error, class, "Mailbox read failed.");
}

/// A mailbox could not continue from its checkpoint and was read from the start.
pub fn mailbox_restarted(mailbox: &str, why: &str) {
    counter!("nightdesk_mailbox_restarts_total", "mailbox" => mailbox.to_owned()).increment(1);
    tracing::warn!(mailbox, why, "Mailbox read from the start.");
}

/// A buyer message got its first substantive reply, `seconds` after it arrived.
pub fn message_answered(marketplace: &str, seconds: i64) {
    histogram!("nightdesk_first_reply_seconds", "marketplace" => marketplace.to_owned())
        .record(seconds as f64);
    counter!("nightdesk_messages_handled_total", "marketplace" => marketplace.to_owned(), "by" => "nightdesk")
        .increment(1);
    tracing::info!(marketplace, seconds, "Buyer message answered.");
}

/// A buyer message reached the SLA-at-risk hour without a substantive reply: people
/// must answer it.
pub fn message_handed_to_people(marketplace: &str, hours: i64) {
    counter!("nightdesk_messages_handled_total", "marketplace" => marketplace.to_owned(), "by" => "people")
        .increment(1);
    tracing::warn!(
        marketplace,
        hours,
        "Buyer message still unanswered; SLA at risk."
    );
}

/// A reply went out.
pub fn reply_sent(marketplace: &str, template: &str, substantive: bool) {
    let kind = if substantive {
        "substantive"
    } else {
        "acknowledgement"
    };
    counter!("nightdesk_replies_sent_total", "marketplace" => marketplace.to_owned(), "kind" => kind)
        .increment(1);
    tracing::info!(marketplace, template, kind, "Reply sent.");
}

// ---------------------------------------------------------------------------------------
// Alerts about nightdesk itself (`daemon::health`): each bumps
// `nightdesk_self_alerts_total{kind}` once per alert raised, not per check.

fn self_alert(kind: &'static str) {
    counter!("nightdesk_self_alerts_total", "kind" => kind).increment(1);
}

/// A source's last `missed` scheduled polls all passed without a good one.
pub fn source_stalled(source: &str, last_good: chrono::DateTime<chrono::Utc>, missed: u32) {
    self_alert("stalled_source");
    tracing::error!(source, last_good = %last_good, missed, "Source stalled: no good poll for several intervals.");
}

/// A stalled source polled successfully again.
pub fn source_recovered(source: &str, stalled_since: chrono::DateTime<chrono::Utc>) {
    self_alert("source_recovered");
    tracing::info!(source, stalled_since = %stalled_since, "Source polls again.");
}

/// A source's credentials were refused (alerted once until they work again).
pub fn credentials_alerted(source: &str) {
    self_alert("credentials");
    tracing::warn!(source, "Refused credentials alerted to ops.");
}

/// The count of overdue actions grew at `checks` health checks in a row.
pub fn backlog_growing(overdue: usize, checks: u32) {
    self_alert("backlog");
    tracing::error!(overdue, checks, "Outbox backlog growing.");
}

/// An action stayed `unknown` past the configured hours without a decision.
pub fn action_stuck_unknown(id: i64, kind: &str, hours: i64) {
    self_alert("unknown");
    tracing::warn!(
        action = id,
        kind,
        hours,
        "Action still unknown; a person must decide."
    );
}

/// The store's disk has less free space than configured.
pub fn disk_nearly_full(free_percent: f64, available_bytes: u64) {
    self_alert("disk");
    tracing::error!(
        free_percent,
        available_bytes,
        "The store's disk is nearly full."
    );
}

/// A rule asked for far more actions of a kind than its usual daily count; the rest
/// of today's are held.
pub fn rule_runaway(rule: &str, kind: &str, today: i64, usual: f64) {
    self_alert("runaway_rule");
    tracing::error!(
        rule,
        kind,
        today,
        usual,
        "Rule runaway: further actions today held for approval."
    );
}
