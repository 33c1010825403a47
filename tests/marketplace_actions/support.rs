//! What every marketplace module of this test binary does around its own assertions: a
//! daemon with one marketplace's config section and its secrets, polled; actions planned
//! on an order, executed; the outbox row by key and the receipt of its done attempt.
//! It asserts nothing about any one marketplace: each module's tests say what they expect.

use nightdesk::clock::Clock;
use nightdesk::daemon::Daemon;
use nightdesk::model::{ActionRequest, PlannedAction, RefundLine, SalesChannel, Subject};
use nightdesk::store::OutboxRow;
use serde_json::Value;

use crate::common::{self, Harness};

/// The harness daemon with `section` (one marketplace's YAML) added to the common config,
/// and `secrets` as `(env name, value)` overrides for its `env:` references.
pub fn daemon(h: &Harness, section: &str, secrets: &[(&str, &str)]) -> Daemon {
    let text = format!("{}{section}", common::CONFIG);
    let path = h.dir.path().join("nightdesk.yaml");
    let config = match nightdesk::config::Config::from_str(&text, &path) {
        Ok(c) => c,
        Err(e) => panic!("config: {e}"),
    };
    let resolver = secrets.iter().fold(h.secrets(), |resolver, (name, value)| {
        resolver.with_override(name, (*value).to_owned())
    });
    h.daemon_with(config, resolver)
}

/// `d` after one poll cycle, which must have stored every one of `orders`.
pub async fn polled(h: &Harness, d: Daemon, channel: SalesChannel, orders: &[&str]) -> Daemon {
    if let Err(e) = d.run_cycle().await {
        panic!("{}: cycle: {e}", h.label());
    }
    for order in orders {
        match h.store.store.order(channel, order).await {
            Ok(Some(_)) => {}
            other => panic!("{}: order {order} was not stored: {other:?}", h.label()),
        }
    }
    d
}

/// An action of the rule `test_rule` on `subject`, due now.
pub fn action(subject: Subject, key: &str, request: ActionRequest) -> PlannedAction {
    PlannedAction {
        rule: "test_rule".into(),
        rule_version: "test".into(),
        subject,
        request,
        idempotency_key: key.into(),
        hold: None,
        dry_run: false,
    }
}

/// Plans `actions` together, as one rule evaluation would.
pub async fn plan_all(h: &Harness, actions: &[PlannedAction]) {
    if let Err(e) = h.store.store.plan(None, actions, h.clock.now()).await {
        panic!("{}: plan: {e}", h.label());
    }
}

/// Plans one action on `subject`.
pub async fn plan(h: &Harness, subject: Subject, key: &str, request: ActionRequest) {
    plan_all(h, &[action(subject, key, request)]).await;
}

pub fn refund(
    order: &str,
    reason: &str,
    items: Vec<RefundLine>,
    amount: Option<&str>,
) -> ActionRequest {
    ActionRequest::Refund {
        order: order.into(),
        reason: reason.into(),
        items,
        amount: amount.map(str::to_owned),
    }
}

pub fn cancel(order: &str, reason: &str) -> ActionRequest {
    ActionRequest::Cancel {
        order: order.into(),
        reason: reason.into(),
    }
}

/// One pass of the outbox executor over what is due.
pub async fn execute(h: &Harness, d: &Daemon) {
    if let Err(e) = d.execute_due(&|| false).await {
        panic!("{}: execute: {e}", h.label());
    }
}

/// The outbox row of the action planned with `key`.
pub async fn row(h: &Harness, key: &str) -> OutboxRow {
    let rows = match h.store.store.outbox().await {
        Ok(rows) => rows,
        Err(e) => panic!("{}: outbox: {e}", h.label()),
    };
    match rows.into_iter().find(|r| r.idempotency_key == key) {
        Some(r) => r,
        None => panic!("{}: no outbox row {key}", h.label()),
    }
}

/// The outbox row of `key`, which must be in `state`.
pub async fn row_in(h: &Harness, key: &str, state: &str) -> OutboxRow {
    let row = row(h, key).await;
    assert_eq!(row.state, state, "{}: {key}: {row:?}", h.label());
    row
}

/// The receipt the outbox recorded when the action with outbox id `id` was done.
pub async fn receipt(h: &Harness, id: i64) -> Value {
    let log = match h.store.store.audit_log(None).await {
        Ok(log) => log,
        Err(e) => panic!("{}: audit log: {e}", h.label()),
    };
    match log
        .into_iter()
        .find(|e| e.outbox_id == Some(id) && e.kind == "attempt" && e.detail["outcome"] == "done")
    {
        Some(entry) => entry.detail["detail"].clone(),
        None => panic!("{}: no done entry for action {id}", h.label()),
    }
}
