//! Telemetry as named events: each notable occurrence is one function here that writes
//! the log line and bumps the metric together, with stable field names. Labels stay of
//! bounded cardinality (sources, rules, kinds, outcomes; never order ids).
//!
//! Nothing here may format a secret; callers pass only names, counts and error texts
//! that were built secret-free (see `http`).

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::sources::{PollReport, SourceError};
use crate::store::Outcome;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the process-wide metrics recorder once; later calls return the same handle.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
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
        builder.json().flatten_event(true).try_init()
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
        gauge!("nightdesk_poll_watermark_seconds", "source" => source.to_owned())
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
    match outcome {
        Outcome::Done { .. } => tracing::info!(rule, kind, attempt, "Action done."),
        Outcome::Retry { at, error } => {
            tracing::warn!(rule, kind, attempt, error, retry_at = %at, "Action will be retried.")
        }
        Outcome::Failed { error } => {
            tracing::error!(rule, kind, attempt, error, "Action failed for good.")
        }
        Outcome::Held { reason } => {
            tracing::warn!(rule, kind, attempt, reason, "Action held for a person.")
        }
        Outcome::Unknown { error } => tracing::error!(
            rule,
            kind,
            attempt,
            error,
            "Action outcome unknown; not retried."
        ),
        Outcome::Deferred { at, reason } => {
            tracing::debug!(rule, kind, reason, due = %at, "Action deferred.")
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
