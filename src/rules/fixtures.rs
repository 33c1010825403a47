//! Rule fixtures: `nightdesk test`. A fixture file sits beside its rule
//! (`rules/NAME.test.yaml` tests `rules/NAME.rhai`) and lists cases: given a clock,
//! a hook, the state it sees (order, message, shipment) and an event, expect these
//! actions, or none. Cases run the real engine and the real state maps, so a passing
//! fixture means the rule does the same in the daemon. Nothing here performs I/O but
//! reading the files.
//!
//! ```yaml
//! cases:
//!   - name: alerts about an order Pending for 9 days
//!     now: 2026-11-22T12:00:00Z        # optional; relative times below count from it
//!     hook: on_order_sweep
//!     order: { id: 113-4829301-5520617, status: Pending, fulfillment: MFN, purchased: 9d }
//!     expect:
//!       - alert: { channel: ops, text_contains: "113-4829301-5520617" }
//!   - name: quiet at 7 days
//!     hook: on_order_sweep
//!     order: { id: 113-4829301-5520617, status: Pending, purchased: 7d }
//!     expect: []
//! ```
//! Times: `9d`, `3h`, `90m` ago; `in 2d` ahead; or RFC 3339.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use rhai::Dynamic;
use serde::Deserialize;

use super::{RequestedAction, RuleEngine, RuleOutcome, RuleSet, view};
use crate::model::{
    ActionRequest, BuyerMessage, EventKind, Fulfillment, Money, Order, OrderItem, OrderStatus,
    ParcelRef, SalesChannel, Shipment, StoredOrder, TrackingStatus,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    /// The rule under test; default: the file's name without `.test.yaml`.
    #[serde(default)]
    rule: Option<String>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    now: Option<DateTime<Utc>>,
    hook: String,
    #[serde(default)]
    order: Option<FixtureOrder>,
    #[serde(default)]
    message: Option<FixtureMessage>,
    #[serde(default)]
    shipment: Option<FixtureShipment>,
    #[serde(default)]
    customer_orders: Vec<FixtureOrder>,
    /// The event's fields: `from`/`to` (status changes), `hours` (SLA), `reason`
    /// (shipment exception), `name` (schedule).
    #[serde(default)]
    event: BTreeMap<String, serde_json::Value>,
    expect: Vec<BTreeMap<String, Expected>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureOrder {
    id: String,
    status: OrderStatus,
    #[serde(default)]
    fulfillment: Option<Fulfillment>,
    #[serde(default = "default_marketplace")]
    marketplace: String,
    #[serde(default = "default_account")]
    account: String,
    purchased: String,
    #[serde(default)]
    last_update: Option<String>,
    /// When it entered its status (default: bought, for Pending; else last update).
    #[serde(default)]
    status_since: Option<String>,
    #[serde(default)]
    latest_ship: Option<String>,
    #[serde(default)]
    latest_delivery: Option<String>,
    #[serde(default)]
    total: Option<Money>,
    #[serde(default)]
    prime: bool,
    #[serde(default)]
    items: Vec<FixtureItem>,
    /// The channel it was placed on (default amazon).
    #[serde(default)]
    channel: Option<SalesChannel>,
    /// For `customer_orders`: how sure the customer index is (default 1.0).
    #[serde(default)]
    match_confidence: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureItem {
    id: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default = "one")]
    quantity: i64,
    #[serde(default)]
    shipped: i64,
    #[serde(default)]
    price: Option<Money>,
    /// Set: the buyer used the official cancellation request, with this reason.
    #[serde(default)]
    buyer_cancel_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureMessage {
    #[serde(default = "default_message_id")]
    id: String,
    #[serde(default = "default_relay")]
    from: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default = "default_received")]
    received: String,
    #[serde(default)]
    order_id: Option<String>,
    #[serde(default)]
    tracking_number: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    intent: Option<String>,
    #[serde(default)]
    answered: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureShipment {
    carrier: String,
    tracking_number: String,
    #[serde(default)]
    tracking_url: Option<String>,
    status: TrackingStatus,
    #[serde(default)]
    exception_reason: Option<String>,
    #[serde(default)]
    status_text: Option<String>,
    #[serde(default)]
    last_event: Option<String>,
    #[serde(default)]
    estimated_delivery: Option<String>,
}

/// What one expected action must match; absent fields match anything.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    channel: Option<String>,
    text: Option<String>,
    text_contains: Option<String>,
    template: Option<String>,
    message_type: Option<String>,
    reason: Option<String>,
    name: Option<String>,
    amount: Option<String>,
    /// `true`: must be held for approval; `false`: must not.
    held: Option<bool>,
}

fn default_marketplace() -> String {
    "ATVPDKIKX0DER".into()
}
fn default_account() -> String {
    "fixture".into()
}
fn default_message_id() -> String {
    "fixture-message".into()
}
fn default_relay() -> String {
    "buyer-fixture@marketplace.amazon.com".into()
}
fn default_received() -> String {
    "1h".into()
}
fn one() -> i64 {
    1
}

/// The fixed clock of cases that name none.
pub fn default_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// `9d`, `3h`, `90m`, `1d12h` ago, `in 2d` ahead, or RFC 3339.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let (ahead, span) = match text.strip_prefix("in ") {
        Some(rest) => (true, rest.trim()),
        None => (false, text.strip_suffix(" ago").unwrap_or(text).trim()),
    };
    let mut total = Duration::zero();
    let mut digits = String::new();
    for c in span.chars().filter(|c| !c.is_whitespace()) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a time (9d, 3h, in 2d, or RFC 3339)"))?;
        digits.clear();
        total += match c {
            'w' => Duration::weeks(n),
            'd' => Duration::days(n),
            'h' => Duration::hours(n),
            'm' => Duration::minutes(n),
            's' => Duration::seconds(n),
            _ => return Err(format!("{text:?}: unknown unit {c:?} (w, d, h, m, s)")),
        };
    }
    if !digits.is_empty() || span.is_empty() {
        return Err(format!(
            "{text:?} is not a time (9d, 3h, in 2d, or RFC 3339)"
        ));
    }
    Ok(if ahead { now + total } else { now - total })
}

fn time_opt(text: &Option<String>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, String> {
    text.as_deref().map(|t| parse_time(t, now)).transpose()
}

impl FixtureOrder {
    fn build(&self, now: DateTime<Utc>) -> Result<StoredOrder, String> {
        let purchase_date = parse_time(&self.purchased, now)?;
        let last_update = time_opt(&self.last_update, now)?.unwrap_or(purchase_date);
        let status_since = match time_opt(&self.status_since, now)? {
            Some(t) => t,
            None if self.status == OrderStatus::Pending => purchase_date,
            None => last_update,
        };
        let items = self
            .items
            .iter()
            .map(|i| OrderItem {
                id: i.id.clone(),
                asin: None,
                sku: i.sku.clone(),
                title: i.title.clone(),
                quantity_ordered: i.quantity,
                quantity_shipped: i.shipped,
                price: i.price.clone(),
                tax: None,
                buyer_requested_cancel: i.buyer_cancel_reason.is_some(),
                buyer_cancel_reason: i.buyer_cancel_reason.clone(),
                details: Default::default(),
            })
            .collect();
        let order = Order {
            customer: Default::default(),
            channel: self.channel.unwrap_or(SalesChannel::Amazon),
            account: self.account.clone(),
            id: self.id.clone(),
            marketplace_id: Some(self.marketplace.clone()),
            status: self.status,
            fulfillment: self.fulfillment,
            purchase_date,
            last_update,
            earliest_ship_date: None,
            latest_ship_date: time_opt(&self.latest_ship, now)?,
            earliest_delivery_date: None,
            latest_delivery_date: time_opt(&self.latest_delivery, now)?,
            total: self.total.clone(),
            order_type: None,
            is_prime: self.prime,
            is_business: false,
            items,
            details: Default::default(),
        };
        Ok(StoredOrder {
            order,
            status_since,
            first_seen: purchase_date,
        })
    }
}

/// The event of a case; a tracking event is about the case's parcel (`parcel`).
fn event_kind(
    hook: &str,
    fields: &BTreeMap<String, serde_json::Value>,
    parcel: ParcelRef,
) -> Result<EventKind, String> {
    let text = |name: &str| fields.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let parsed =
        |name: &str| -> Result<Option<serde_json::Value>, String> { Ok(fields.get(name).cloned()) };
    Ok(match hook {
        super::HOOK_ORDER_STATUS_CHANGED => EventKind::OrderStatusChanged {
            from: parsed("from")?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| format!("event.from: {e}"))?,
            to: serde_json::from_value(
                parsed("to")?.ok_or("event.to is required for on_order_status_changed")?,
            )
            .map_err(|e| format!("event.to: {e}"))?,
        },
        super::HOOK_TRACKING_UPDATED => EventKind::TrackingUpdated {
            from: parsed("from")?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| format!("event.from: {e}"))?,
            to: serde_json::from_value(
                parsed("to")?.ok_or("event.to is required for on_tracking_updated")?,
            )
            .map_err(|e| format!("event.to: {e}"))?,
            parcel,
        },
        super::HOOK_SLA_AT_RISK => EventKind::SlaAtRisk {
            hours: fields.get("hours").and_then(|v| v.as_i64()).unwrap_or(20),
        },
        super::HOOK_SHIPMENT_EXCEPTION => EventKind::ShipmentException {
            reason: text("reason").unwrap_or_else(|| "other".into()),
            parcel,
        },
        super::HOOK_TRACKING_CONDITION => EventKind::TrackingCondition {
            condition: text("condition")
                .ok_or("event.condition is required for on_tracking_condition")?,
            parcel,
        },
        super::HOOK_SCHEDULE => EventKind::Schedule {
            name: text("name").ok_or("event.name is required for on_schedule")?,
        },
        super::HOOK_BUYER_MESSAGE | super::HOOK_UNANSWERED_MESSAGE => {
            EventKind::BuyerMessageReceived
        }
        other => return Err(format!("{other} takes no event")),
    })
}

impl Case {
    /// The hook's arguments, built through the same view functions the daemon uses.
    fn arguments(&self) -> Result<(DateTime<Utc>, Vec<Dynamic>), String> {
        let now = self.now.unwrap_or_else(default_now);
        let order = self.order.as_ref().map(|o| o.build(now)).transpose()?;
        let others = self
            .customer_orders
            .iter()
            .map(|o| o.build(now))
            .collect::<Result<Vec<_>, _>>()?;
        let need = |what: &str| format!("{} needs `{what}`", self.hook);
        let args = match self.hook.as_str() {
            super::HOOK_ORDER_SWEEP => vec![view::order(
                order.as_ref().ok_or_else(|| need("order"))?,
                now,
            )],
            super::HOOK_ORDER_STATUS_CHANGED => {
                let order = order.as_ref().ok_or_else(|| need("order"))?;
                vec![
                    view::order(order, now),
                    view::event(
                        &event_kind(&self.hook, &self.event, ParcelRef::default())?,
                        now,
                    ),
                ]
            }
            super::HOOK_BUYER_MESSAGE
            | super::HOOK_UNANSWERED_MESSAGE
            | super::HOOK_SLA_AT_RISK => {
                let m = self.message.as_ref().ok_or_else(|| need("message"))?;
                let msg = BuyerMessage {
                    id: m.id.clone(),
                    channel: SalesChannel::Amazon,
                    account: "fixture".into(),
                    marketplace_id: order.as_ref().and_then(|o| o.order.marketplace_id.clone()),
                    from: m.from.clone(),
                    subject: m.subject.clone(),
                    body: m.body.clone(),
                    received_at: parse_time(&m.received, now)?,
                    order_id: m.order_id.clone(),
                    tracking_number: m.tracking_number.clone(),
                    language: m.language.clone(),
                    intent: m.intent.clone(),
                    answered: m.answered,
                    mail: Default::default(),
                };
                let matches: Vec<crate::customers::CustomerMatch> = self
                    .customer_orders
                    .iter()
                    .zip(others.iter())
                    .map(|(fixture, order)| crate::customers::CustomerMatch {
                        order: order.clone(),
                        confidence: fixture.match_confidence.unwrap_or(1.0),
                        reason: "fixture",
                    })
                    .collect();
                let mut args = vec![view::with_customer_matches(
                    view::message(&msg, order.as_ref(), &others, now),
                    &matches,
                    now,
                )];
                if self.hook == super::HOOK_SLA_AT_RISK {
                    args.push(view::event(
                        &event_kind(&self.hook, &self.event, ParcelRef::default())?,
                        now,
                    ));
                }
                args
            }
            super::HOOK_TRACKING_UPDATED
            | super::HOOK_SHIPMENT_EXCEPTION
            | super::HOOK_TRACKING_CONDITION => {
                let s = self.shipment.as_ref().ok_or_else(|| need("shipment"))?;
                let parcel = Shipment {
                    carrier: s.carrier.clone(),
                    tracking_number: s.tracking_number.clone(),
                    tracking_url: s.tracking_url.clone(),
                    status: s.status,
                    exception_reason: s.exception_reason.clone(),
                    raw_code: None,
                    status_text: s.status_text.clone(),
                    last_event_at: time_opt(&s.last_event, now)?,
                    last_event_location: None,
                    estimated_delivery: time_opt(&s.estimated_delivery, now)?,
                    conditions: Vec::new(),
                };
                let event = event_kind(&self.hook, &self.event, ParcelRef::of(&parcel))?;
                vec![
                    view::shipment(&parcel, order.as_ref(), now),
                    view::event(&event, now),
                ]
            }
            super::HOOK_SCHEDULE => {
                let EventKind::Schedule { name } =
                    event_kind(&self.hook, &self.event, ParcelRef::default())?
                else {
                    return Err("on_schedule needs event.name".into());
                };
                vec![name.into()]
            }
            other => return Err(format!("unknown hook {other}")),
        };
        Ok((now, args))
    }
}

fn describe(action: &RequestedAction) -> String {
    super::describe_action(&action.request, action.hold.as_deref())
}

fn matches(expected: &BTreeMap<String, Expected>, got: &RequestedAction) -> bool {
    let Some((kind, want)) = expected.iter().next() else {
        return false;
    };
    if expected.len() != 1 || kind != got.request.kind() {
        return false;
    }
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    if want.held.is_some_and(|h| h != got.hold.is_some()) {
        return false;
    }
    match &got.request {
        ActionRequest::Alert { channel, text } => {
            eq(&want.channel, channel)
                && eq(&want.text, text)
                && want
                    .text_contains
                    .as_deref()
                    .is_none_or(|c| text.contains(c))
        }
        ActionRequest::Reply { template, .. } => eq(&want.template, template),
        ActionRequest::NotifyBuyer {
            message_type,
            template,
            ..
        } => eq(&want.message_type, message_type) && eq(&want.template, template),
        ActionRequest::Refund { reason, amount, .. } => {
            eq(&want.reason, reason)
                && want
                    .amount
                    .as_deref()
                    .is_none_or(|a| amount.as_deref() == Some(a))
        }
        ActionRequest::Cancel { reason, .. } => eq(&want.reason, reason),
        ActionRequest::Tag { name } => eq(&want.name, name),
    }
}

fn describe_expected(expected: &BTreeMap<String, Expected>) -> String {
    match expected.iter().next() {
        Some((kind, want)) => {
            let mut parts = Vec::new();
            for (field, value) in [
                ("channel", &want.channel),
                ("text", &want.text),
                ("text_contains", &want.text_contains),
                ("template", &want.template),
                ("message_type", &want.message_type),
                ("reason", &want.reason),
                ("name", &want.name),
                ("amount", &want.amount),
            ] {
                if let Some(v) = value {
                    parts.push(format!("{field}={v:?}"));
                }
            }
            if let Some(h) = want.held {
                parts.push(format!("held={h}"));
            }
            format!("{kind} {}", parts.join(" "))
        }
        None => "(empty expectation)".into(),
    }
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub file: PathBuf,
    pub name: String,
    /// `None` when the case passed; else what differed.
    pub failure: Option<String>,
}

/// Every fixture file's results, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixtureReport {
    pub cases: Vec<CaseResult>,
}

impl FixtureReport {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.failure.is_none()).count()
    }

    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    /// Human text: each case, the differences of failures, and a closing count.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut file: Option<&PathBuf> = None;
        for case in &self.cases {
            if file != Some(&case.file) {
                let _ = writeln!(out, "{}", case.file.display());
                file = Some(&case.file);
            }
            match &case.failure {
                None => {
                    let _ = writeln!(out, "  ok    {}", case.name);
                }
                Some(why) => {
                    let _ = writeln!(out, "  FAIL  {}", case.name);
                    for line in why.lines() {
                        let _ = writeln!(out, "        {line}");
                    }
                }
            }
        }
        let _ = writeln!(out, "{} passed, {} failed", self.passed(), self.failed());
        out
    }
}

/// Fixture files under `path` (a folder: every `*.test.yaml` in it; or one file).
pub fn fixture_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".test.yaml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Run one fixture file against `rules`.
pub fn run_file(engine: &RuleEngine, rules: &RuleSet, path: &Path) -> Vec<CaseResult> {
    let fail = |name: &str, why: String| CaseResult {
        file: path.to_owned(),
        name: name.to_owned(),
        failure: Some(why),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return vec![fail("(file)", format!("cannot read: {e}"))],
    };
    let fixture: FixtureFile = match serde_yaml::from_str(&text) {
        Ok(f) => f,
        Err(e) => return vec![fail("(file)", format!("{}: {e}", path.display()))],
    };
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".test.yaml"))
        .unwrap_or("");
    let rule_name = fixture.rule.clone().unwrap_or_else(|| stem.to_owned());
    let Some(rule) = rules.rules.iter().find(|r| r.name == rule_name) else {
        return vec![fail(
            "(file)",
            format!("no rule named {rule_name:?} (expected {rule_name}.rhai beside the fixture)"),
        )];
    };
    let only = RuleSet {
        rules: vec![rule.clone()],
    };
    fixture
        .cases
        .iter()
        .map(|case| {
            let (_, args) = match case.arguments() {
                Ok(built) => built,
                Err(why) => return fail(&case.name, format!("the case is invalid: {why}")),
            };
            if !rule.has_hook(&case.hook) {
                return fail(
                    &case.name,
                    format!("rule {rule_name} defines no {}", case.hook),
                );
            }
            let got: Vec<RequestedAction> =
                match engine.run(&only, &case.hook, &args).into_iter().next() {
                    Some(RuleOutcome::Ran { requests, .. }) => requests,
                    Some(RuleOutcome::Failed { error, .. }) => {
                        return fail(&case.name, format!("the rule failed: {error}"));
                    }
                    Some(RuleOutcome::Quarantined { .. }) => {
                        return fail(&case.name, "the rule is quarantined".into());
                    }
                    None => Vec::new(),
                };
            let ok = got.len() == case.expect.len()
                && case
                    .expect
                    .iter()
                    .zip(&got)
                    .all(|(want, have)| matches(want, have));
            if ok {
                return CaseResult {
                    file: path.to_owned(),
                    name: case.name.clone(),
                    failure: None,
                };
            }
            let list = |items: Vec<String>| {
                if items.is_empty() {
                    "  (no actions)".to_owned()
                } else {
                    items
                        .iter()
                        .map(|i| format!("  - {i}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            };
            let expected = list(case.expect.iter().map(describe_expected).collect());
            let actual = list(got.iter().map(describe).collect());
            fail(&case.name, format!("expected:\n{expected}\ngot:\n{actual}"))
        })
        .collect()
}

/// Run every fixture under `path` against the rules of `rules_dir`.
pub fn run(engine: &RuleEngine, rules: &RuleSet, path: &Path) -> Result<FixtureReport, String> {
    let mut report = FixtureReport::default();
    for file in fixture_files(path)? {
        report.cases.extend(run_file(engine, rules, &file));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuleLimits;

    #[test]
    fn relative_times() {
        let now = default_now();
        assert_eq!(parse_time("9d", now), Ok(now - Duration::days(9)));
        assert_eq!(parse_time("1d12h ago", now), Ok(now - Duration::hours(36)));
        assert_eq!(parse_time("7d 23h", now), Ok(now - Duration::hours(191)));
        assert_eq!(parse_time("in 2d", now), Ok(now + Duration::days(2)));
        assert!(parse_time("soon", now).is_err());
        assert!(parse_time("9x", now).is_err());
    }

    #[test]
    fn a_fixture_passes_and_a_wrong_expectation_fails_with_a_diff() {
        let dir = std::env::temp_dir().join(format!("nightdesk-fixture-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let rule = "fn on_order_sweep(order) { if order.pending_days > 7 { alert(\"ops\", `late ${order.id}`); } }";
        let fixture = "cases:\n  - name: nine days\n    hook: on_order_sweep\n    order: { id: 113-4829301-5520617, status: Pending, purchased: 9d }\n    expect:\n      - alert: { channel: ops, text_contains: late }\n  - name: wrongly expects nothing\n    hook: on_order_sweep\n    order: { id: 113-4829301-5520617, status: Pending, purchased: 9d }\n    expect: []\n";
        let written = std::fs::write(dir.join("late.rhai"), rule)
            .and_then(|_| std::fs::write(dir.join("late.test.yaml"), fixture));
        assert!(written.is_ok());
        let engine = RuleEngine::new(RuleLimits::default());
        let Ok(rules) = engine.load_dir(&dir) else {
            panic!("rules")
        };
        let report = run(&engine, &rules, &dir).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            (report.passed(), report.failed()),
            (1, 1),
            "{}",
            report.render()
        );
        let text = report.render();
        assert!(text.contains("expected:\n          (no actions)\n        got:\n          - alert ops: \"late 113-4829301-5520617\""), "{text}");
        assert!(text.ends_with("1 passed, 1 failed\n"), "{text}");
    }
}
