//! Walmart refunds and cancellations through the outbox (`executors::walmart`) against
//! the sandbox's Walmart, on every store backend: each path, the reasons, what is
//! refused before any call, the answers that leave it open whether Walmart acted (read
//! back, adopted, or resubmitted once), and the token and headers on every call. The
//! request bodies and the answers are checked against the Walmart contract.

use crate::openapi;

use std::sync::OnceLock;

use chrono::Duration;
use nightdesk::clock::Clock;
use nightdesk::daemon::Daemon;
use nightdesk::model::{
    ActionRequest, OrderStatus, PlannedAction, RefundLine, SalesChannel, Subject,
};
use nightdesk::sandbox::marketplaces::walmart::{
    CLIENT_ID, CLIENT_SECRET, WalmartScenario, WalmartScenarioAddress, WalmartScenarioLine,
    WalmartScenarioOrder, WalmartScenarioTracking,
};
use nightdesk::sandbox::{Amount, Fault, JournalEntry, Scenario, When};
use nightdesk::store::OutboxRow;
use openapi::OpenApi;
use serde_json::{Value, json};

use crate::common::{self, Harness, harnesses};

const SPEC: &str = "walmart/walmart-marketplace-orders-openapi-original.yml";
const CANCEL: &str = "walmart.cancelOrderLines";
const REFUND: &str = "walmart.refundOrderLines";
const GET_AN_ORDER: &str = "walmart.getAnOrder";

/// Unshipped: line 1 two mugs (created), line 2 a kettle (acknowledged).
const OPEN: &str = "1000000000101";
/// Shipped and delivered: line 1 a mug, line 2 two filters.
const SHIPPED: &str = "1000000000102";
/// One line shipped, one still open.
const PART_SHIPPED: &str = "1000000000103";

fn contract() -> &'static OpenApi {
    static CONTRACT: OnceLock<OpenApi> = OnceLock::new();
    CONTRACT.get_or_init(|| OpenApi::load_spec(SPEC))
}

fn line(sku: &str, quantity: u32, price: i64, tax: i64, status: &str) -> WalmartScenarioLine {
    let shipped = matches!(status, "Shipped" | "Delivered");
    WalmartScenarioLine {
        sku: sku.to_owned(),
        product_name: format!("Product {sku}"),
        quantity,
        price: Amount::from_cents(price),
        tax: Amount::from_cents(tax),
        shipping: Amount::from_cents(0),
        status: status.to_owned(),
        cancelled_quantity: 0,
        cancellation_reason: None,
        tracking: shipped.then(|| WalmartScenarioTracking {
            carrier: "USPS".to_owned(),
            number: format!("9400111899223{sku:0>9}"),
            url: None,
            shipped: When::hours_ago(30),
        }),
        status_date: None,
        intent_to_cancel: false,
    }
}

fn order(po: &str, lines: Vec<WalmartScenarioLine>) -> WalmartScenarioOrder {
    WalmartScenarioOrder {
        purchase_order_id: po.to_owned(),
        customer_order_id: format!("2{po}"),
        order_date: When::days_ago(2),
        last_modified: Some(When::hours_ago(3)),
        customer_email: None,
        ship_to: WalmartScenarioAddress {
            name: "Ann Lee".to_owned(),
            address1: "1 Main St".to_owned(),
            address2: None,
            city: "Bentonville".to_owned(),
            state: "AR".to_owned(),
            postal_code: "72712".to_owned(),
            country: "USA".to_owned(),
            phone: "5555550100".to_owned(),
        },
        method: "Standard".to_owned(),
        estimated_ship: None,
        estimated_delivery: None,
        ship_node: None,
        lines,
        malformed: false,
    }
}

fn scenario() -> Scenario {
    Scenario {
        walmart: WalmartScenario {
            orders: vec![
                order(
                    OPEN,
                    vec![
                        line("100", 2, 2400, 192, "Created"),
                        line("200", 1, 4999, 337, "Acknowledged"),
                    ],
                ),
                order(
                    SHIPPED,
                    vec![
                        line("300", 1, 1999, 160, "Shipped"),
                        line("400", 2, 1000, 80, "Delivered"),
                    ],
                ),
                order(
                    PART_SHIPPED,
                    vec![
                        line("500", 1, 1500, 0, "Shipped"),
                        line("600", 1, 800, 0, "Created"),
                    ],
                ),
            ],
            ..WalmartScenario::default()
        },
        ..Scenario::default()
    }
}

/// The harness config with a Walmart account on the sandbox.
fn daemon(h: &Harness) -> Daemon {
    let text = format!(
        "{}walmart:\n  accounts:\n    - name: walmart-us\n      client_id: {CLIENT_ID}\n      client_secret: env:T_WALMART\n",
        common::CONFIG
    );
    let config =
        match nightdesk::config::Config::from_str(&text, &h.dir.path().join("nightdesk.yaml")) {
            Ok(c) => c,
            Err(e) => panic!("config: {e}"),
        };
    let secrets = h
        .secrets()
        .with_override("T_WALMART", CLIENT_SECRET.to_owned());
    h.daemon_with(config, secrets)
}

/// A daemon with the sandbox's Walmart orders in its store.
async fn polled(h: &Harness) -> Daemon {
    let d = daemon(h);
    if let Err(e) = d.run_cycle().await {
        panic!("{}: cycle: {e}", h.label());
    }
    for po in [OPEN, SHIPPED, PART_SHIPPED] {
        match h.store.store.order(SalesChannel::Walmart, po).await {
            Ok(Some(_)) => {}
            other => panic!("{}: order {po} not stored: {other:?}", h.label()),
        }
    }
    d
}

fn action(po: &str, request: ActionRequest, key: &str) -> PlannedAction {
    PlannedAction {
        rule: "t".into(),
        rule_version: "test".into(),
        subject: Subject::order(SalesChannel::Walmart, po),
        request,
        idempotency_key: key.into(),
        hold: None,
        dry_run: false,
    }
}

fn cancel(po: &str, reason: &str) -> ActionRequest {
    ActionRequest::Cancel {
        order: po.into(),
        reason: reason.into(),
    }
}

fn refund(po: &str, reason: &str, items: Vec<RefundLine>, amount: Option<&str>) -> ActionRequest {
    ActionRequest::Refund {
        order: po.into(),
        reason: reason.into(),
        items,
        amount: amount.map(str::to_owned),
    }
}

fn refund_line(item: &str, quantity: Option<i64>, amount: Option<&str>) -> RefundLine {
    RefundLine {
        item: item.into(),
        quantity,
        amount: amount.map(str::to_owned),
    }
}

async fn plan(h: &Harness, actions: &[PlannedAction]) {
    if let Err(e) = h.store.store.plan(None, actions, h.clock.now()).await {
        panic!("{}: plan: {e}", h.label());
    }
}

async fn execute(h: &Harness, d: &Daemon) {
    if let Err(e) = d.execute_due(&|| false).await {
        panic!("{}: execute: {e}", h.label());
    }
}

async fn row(h: &Harness, key: &str) -> OutboxRow {
    let rows = match h.store.store.outbox().await {
        Ok(rows) => rows,
        Err(e) => panic!("{}: outbox: {e}", h.label()),
    };
    match rows.into_iter().find(|r| r.idempotency_key == key) {
        Some(r) => r,
        None => panic!("{}: no outbox row {key}", h.label()),
    }
}

/// The receipt of the action's successful attempt.
async fn receipt(h: &Harness, po: &str) -> Value {
    let subject = Subject::order(SalesChannel::Walmart, po);
    let entries = match h.store.store.audit_log(Some(subject.as_str())).await {
        Ok(entries) => entries,
        Err(e) => panic!("{}: audit: {e}", h.label()),
    };
    entries
        .into_iter()
        .rev()
        .find(|e| e.detail["outcome"] == "done")
        .map(|e| e.detail["detail"]["result"].clone())
        .unwrap_or(Value::Null)
}

/// The Walmart calls after the first `skip` journal entries.
fn walmart_calls(h: &Harness, skip: usize) -> Vec<JournalEntry> {
    h.sandbox
        .journal()
        .into_iter()
        .skip(skip)
        .filter(|e| e.operation.starts_with("walmart.") && e.operation != "walmart.token")
        .collect()
}

fn calls(h: &Harness, operation: &str) -> Vec<JournalEntry> {
    h.journal(operation)
}

/// Every request body sent for `path` follows the contract's request schema.
fn check_requests(entries: &[JournalEntry], path: &str) {
    let schema = contract().doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]
        .clone();
    assert!(schema.is_object(), "no request schema for {path}");
    for entry in entries {
        if let Err(problems) = contract().check(&schema, &entry.body) {
            panic!("{problems}\nbody: {}", entry.body);
        }
    }
}

/// A line's statuses in the sandbox: (status, cancelled units, cancellation reason).
fn sandbox_line(h: &Harness, po: &str, index: usize) -> (String, u32, Option<String>) {
    h.sandbox
        .walmart_orders()
        .into_iter()
        .find(|o| o.purchase_order_id == po)
        .and_then(|o| o.lines.get(index).cloned())
        .map(|l| (l.status, l.cancelled_quantity, l.cancellation_reason))
        .unwrap_or_default()
}

#[tokio::test]
async fn a_cancellation_cancels_every_open_unit_and_later_reads_show_it() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        plan(&h, &[action(OPEN, cancel(OPEN, "NoInventory"), "t|cancel")]).await;
        execute(&h, &d).await;
        let done = row(&h, "t|cancel").await;
        assert_eq!(done.state, "done", "{}: {done:?}", h.label());
        let sent = calls(&h, CANCEL);
        assert_eq!(sent.len(), 1, "{}", h.label());
        assert_eq!(sent[0].path, format!("/walmart/v3/orders/{OPEN}/cancel"));
        check_requests(&sent, "/v3/orders/{purchaseOrderId}/cancel");
        // Amazon's NoInventory is Walmart's out-of-stock cancellation; two mugs, a kettle.
        let lines = &sent[0].body["orderCancellation"]["orderLines"]["orderLine"];
        for (index, units) in [(0, "2"), (1, "1")] {
            let status = &lines[index]["orderLineStatuses"]["orderLineStatus"][0];
            assert_eq!(status["cancellationReason"], "SELLER_CANCEL_OUT_OF_STOCK");
            assert_eq!(
                status["statusQuantity"]["amount"], units,
                "{}",
                sent[0].body
            );
        }
        for index in 0..2 {
            assert_eq!(
                sandbox_line(&h, OPEN, index),
                (
                    "Cancelled".to_owned(),
                    if index == 0 { 2 } else { 1 },
                    Some("SELLER_CANCEL_OUT_OF_STOCK".to_owned())
                ),
                "{}",
                h.label()
            );
        }
        assert_eq!(h.sandbox.walmart_cancellations(Some(OPEN)).len(), 2);
        let result = receipt(&h, OPEN).await;
        assert_eq!(result["reason"], "SELLER_CANCEL_OUT_OF_STOCK", "{result}");
        assert_eq!(result["read_back"], false, "{result}");
        assert!(!result.to_string().contains("Ann Lee"), "{result}");
        // The next poll stores the order as cancelled.
        h.clock.advance(Duration::minutes(6));
        if let Err(e) = d.run_cycle().await {
            panic!("{}: cycle: {e}", h.label());
        }
        let stored = h.store.store.order(SalesChannel::Walmart, OPEN).await;
        assert_eq!(
            stored.ok().flatten().map(|o| o.order.status),
            Some(OrderStatus::Canceled),
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn a_shipped_order_or_an_unknown_reason_is_refused_before_any_call() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        let before = h.sandbox.journal().len();
        plan(
            &h,
            &[
                action(SHIPPED, cancel(SHIPPED, "BuyerCanceled"), "t|shipped"),
                action(PART_SHIPPED, cancel(PART_SHIPPED, "NoInventory"), "t|part"),
                action(OPEN, cancel(OPEN, "BecauseISaidSo"), "t|reason"),
                action(
                    SHIPPED,
                    refund(SHIPPED, "CarrierCreditDecision", vec![], None),
                    "t|refund-reason",
                ),
                action(
                    PART_SHIPPED,
                    refund(
                        PART_SHIPPED,
                        "CustomerReturn",
                        vec![refund_line("2", None, None)],
                        None,
                    ),
                    "t|refund-open-line",
                ),
            ],
        )
        .await;
        execute(&h, &d).await;
        for (key, why) in [
            ("t|shipped", "refund them instead"),
            ("t|part", "refund them instead"),
            ("t|reason", "BecauseISaidSo"),
            ("t|refund-reason", "CarrierCreditDecision"),
            ("t|refund-open-line", "cancel it instead"),
        ] {
            let failed = row(&h, key).await;
            assert_eq!(failed.state, "failed", "{}: {failed:?}", h.label());
            let error = failed.last_error.unwrap_or_default();
            assert!(
                error.contains(why) && error.contains("nothing was sent"),
                "{error}"
            );
        }
        assert_eq!(
            walmart_calls(&h, before)
                .iter()
                .map(|e| e.operation.clone())
                .collect::<Vec<_>>(),
            Vec::<String>::new(),
            "{}: no call at all",
            h.label()
        );
        assert!(h.sandbox.walmart_cancellations(None).is_empty());
        assert!(h.sandbox.walmart_refunds(None).is_empty());
    }
}

#[tokio::test]
async fn a_full_refund_takes_every_shipped_line_with_its_tax() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        plan(
            &h,
            &[action(
                SHIPPED,
                refund(SHIPPED, "CustomerReturn", vec![], None),
                "t|refund",
            )],
        )
        .await;
        execute(&h, &d).await;
        let done = row(&h, "t|refund").await;
        assert_eq!(done.state, "done", "{}: {done:?}", h.label());
        let sent = calls(&h, REFUND);
        assert_eq!(sent.len(), 1);
        check_requests(&sent, "/v3/orders/{purchaseOrderId}/refund");
        assert_eq!(sent[0].body["orderRefund"]["purchaseOrderId"], SHIPPED);
        let refunds = h.sandbox.walmart_refunds(Some(SHIPPED));
        let got: Vec<(String, String, i64, i64)> = refunds
            .iter()
            .map(|r| {
                (
                    r.line_number.clone(),
                    r.reason.clone(),
                    r.amount.cents(),
                    r.tax.cents(),
                )
            })
            .collect();
        // Amazon's CustomerReturn is Walmart's "Customer returned item".
        let reason = "Customer returned item".to_owned();
        assert_eq!(
            got,
            vec![
                ("1".to_owned(), reason.clone(), 1999, 160),
                ("2".to_owned(), reason, 1000, 80)
            ],
            "{}",
            h.label()
        );
        assert!(refunds.iter().all(|r| r.charge_type == "PRODUCT"));
        let result = receipt(&h, SHIPPED).await;
        assert_eq!(result["total"], "32.39", "{result}");
        assert_eq!(result["currency"], "USD", "{result}");
        // A second full refund: nothing is left, refused before the call.
        plan(
            &h,
            &[action(
                SHIPPED,
                refund(SHIPPED, "CustomerReturn", vec![], None),
                "t|again",
            )],
        )
        .await;
        execute(&h, &d).await;
        let again = row(&h, "t|again").await;
        assert_eq!(again.state, "failed", "{}: {again:?}", h.label());
        assert!(
            again
                .last_error
                .unwrap_or_default()
                .contains("left to refund")
        );
        assert_eq!(calls(&h, REFUND).len(), 1, "{}", h.label());
    }
}

#[tokio::test]
async fn a_refund_of_one_line_a_unit_or_an_amount_takes_only_that() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        plan(
            &h,
            &[
                // One of the two filters of line 2, named by SKU; PriceError maps to
                // Walmart's BillingError.
                action(
                    SHIPPED,
                    refund(
                        SHIPPED,
                        "PriceError",
                        vec![refund_line("400", Some(1), None)],
                        None,
                    ),
                    "t|one-unit",
                ),
                // 5.00 of the partly shipped order's shipped line, in Walmart's own code.
                action(
                    PART_SHIPPED,
                    refund(PART_SHIPPED, "Finance -> Goodwill", vec![], Some("5.00")),
                    "t|amount",
                ),
            ],
        )
        .await;
        execute(&h, &d).await;
        for key in ["t|one-unit", "t|amount"] {
            let done = row(&h, key).await;
            assert_eq!(done.state, "done", "{}: {done:?}", h.label());
        }
        check_requests(&calls(&h, REFUND), "/v3/orders/{purchaseOrderId}/refund");
        let one: Vec<(String, String, i64, i64)> = h
            .sandbox
            .walmart_refunds(Some(SHIPPED))
            .into_iter()
            .map(|r| (r.line_number, r.reason, r.amount.cents(), r.tax.cents()))
            .collect();
        assert_eq!(
            one,
            vec![("2".to_owned(), "BillingError".to_owned(), 500, 40)],
            "{}",
            h.label()
        );
        let goodwill: Vec<(String, String, i64)> = h
            .sandbox
            .walmart_refunds(Some(PART_SHIPPED))
            .into_iter()
            .map(|r| (r.line_number, r.reason, r.amount.cents()))
            .collect();
        assert_eq!(
            goodwill,
            vec![("1".to_owned(), "Finance -> Goodwill".to_owned(), 500)],
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn an_ambiguous_cancellation_that_landed_is_read_back_and_adopted() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        h.sandbox.inject(Fault::status(CANCEL, 500).after_effect());
        plan(
            &h,
            &[action(OPEN, cancel(OPEN, "BuyerCanceled"), "t|cancel")],
        )
        .await;
        execute(&h, &d).await;
        let done = row(&h, "t|cancel").await;
        assert_eq!(done.state, "done", "{}: {done:?}", h.label());
        assert_eq!(
            calls(&h, CANCEL).len(),
            1,
            "{}: never resubmitted",
            h.label()
        );
        assert_eq!(
            h.sandbox.walmart_cancellations(Some(OPEN)).len(),
            2,
            "{}: one effect per line",
            h.label()
        );
        assert_eq!(
            sandbox_line(&h, OPEN, 0).2.as_deref(),
            Some("CUSTOMER_REQUESTED_SELLER_TO_CANCEL")
        );
        let result = receipt(&h, OPEN).await;
        assert_eq!(result["read_back"], true, "{result}");
        // Nothing left to do on a later pass.
        h.clock.advance(Duration::minutes(5));
        execute(&h, &d).await;
        assert_eq!(calls(&h, CANCEL).len(), 1, "{}", h.label());
    }
}

#[tokio::test]
async fn an_ambiguous_refund_that_landed_is_read_back_and_adopted() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        // A 502 after the refund, and an unreadable 200 after another: both landed.
        h.sandbox.inject(Fault::status(REFUND, 502).after_effect());
        h.sandbox.inject(Fault::malformed(REFUND));
        plan(
            &h,
            &[
                action(
                    SHIPPED,
                    refund(
                        SHIPPED,
                        "CustomerReturn",
                        vec![refund_line("1", None, None)],
                        None,
                    ),
                    "t|lost-answer",
                ),
                action(
                    PART_SHIPPED,
                    refund(PART_SHIPPED, "CustomerReturn", vec![], None),
                    "t|unreadable",
                ),
            ],
        )
        .await;
        execute(&h, &d).await;
        for (key, po) in [("t|lost-answer", SHIPPED), ("t|unreadable", PART_SHIPPED)] {
            let done = row(&h, key).await;
            assert_eq!(done.state, "done", "{}: {done:?}", h.label());
            assert_eq!(
                h.sandbox.walmart_refunds(Some(po)).len(),
                1,
                "{}: exactly one refund",
                h.label()
            );
            let result = receipt(&h, po).await;
            assert_eq!(result["read_back"], true, "{result}");
        }
        assert_eq!(calls(&h, REFUND).len(), 2, "{}: one call each", h.label());
        assert!(
            calls(&h, GET_AN_ORDER).len() >= 4,
            "{}: read before and after",
            h.label()
        );
    }
}

#[tokio::test]
async fn an_ambiguous_refund_that_did_not_land_is_resubmitted_once() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        // Walmart fails without acting: nothing to read back, so it is sent again.
        h.sandbox.inject(Fault::status(REFUND, 500));
        plan(
            &h,
            &[action(
                SHIPPED,
                refund(SHIPPED, "CustomerReturn", vec![], None),
                "t|refund",
            )],
        )
        .await;
        execute(&h, &d).await;
        let waiting = row(&h, "t|refund").await;
        assert_eq!(waiting.state, "retry", "{}: {waiting:?}", h.label());
        assert!(waiting.progress.is_some_and(|p| p["submitted"].is_object()));
        assert!(h.sandbox.walmart_refunds(None).is_empty());
        h.clock.advance(Duration::seconds(5));
        execute(&h, &d).await;
        let done = row(&h, "t|refund").await;
        assert_eq!(done.state, "done", "{}: {done:?}", h.label());
        assert_eq!(calls(&h, REFUND).len(), 2, "{}: sent twice", h.label());
        assert_eq!(
            h.sandbox.walmart_refunds(Some(SHIPPED)).len(),
            2,
            "{}: one refund per line, once",
            h.label()
        );
        check_requests(&calls(&h, REFUND), "/v3/orders/{purchaseOrderId}/refund");
    }
}

#[tokio::test]
async fn throttling_is_retried_and_a_refusal_is_permanent_with_walmarts_description() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        h.sandbox.inject(Fault::status(CANCEL, 429).retry_after(2));
        h.sandbox.inject(Fault::status(REFUND, 400));
        plan(
            &h,
            &[
                action(OPEN, cancel(OPEN, "NoInventory"), "t|cancel"),
                action(
                    SHIPPED,
                    refund(SHIPPED, "CustomerReturn", vec![], None),
                    "t|refund",
                ),
            ],
        )
        .await;
        execute(&h, &d).await;
        let throttled = row(&h, "t|cancel").await;
        assert_eq!(throttled.state, "retry", "{}: {throttled:?}", h.label());
        // Certainly not done: no read-back marker is left behind.
        assert!(
            throttled
                .progress
                .is_none_or(|p| p.get("submitted").is_none())
        );
        let refused = row(&h, "t|refund").await;
        assert_eq!(refused.state, "failed", "{}: {refused:?}", h.label());
        let error = refused.last_error.unwrap_or_default();
        assert!(
            error.contains("Walmart refused the refund") && error.contains("Invalid request."),
            "{error}"
        );
        h.clock.advance(Duration::seconds(3));
        execute(&h, &d).await;
        assert_eq!(row(&h, "t|cancel").await.state, "done", "{}", h.label());
        assert_eq!(calls(&h, CANCEL).len(), 2);
        assert_eq!(h.sandbox.walmart_cancellations(Some(OPEN)).len(), 2);
        assert!(h.sandbox.walmart_refunds(None).is_empty());
    }
}

#[tokio::test]
async fn every_call_carries_the_token_and_walmarts_headers() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        let before = h.sandbox.journal().len();
        h.sandbox.expire_walmart_tokens();
        plan(
            &h,
            &[
                action(OPEN, cancel(OPEN, "NoInventory"), "t|cancel"),
                action(
                    SHIPPED,
                    refund(SHIPPED, "CustomerReturn", vec![], None),
                    "t|refund",
                ),
            ],
        )
        .await;
        execute(&h, &d).await;
        assert_eq!(row(&h, "t|cancel").await.state, "done", "{}", h.label());
        assert_eq!(row(&h, "t|refund").await.state, "done", "{}", h.label());
        let after = walmart_calls(&h, before);
        let operations: Vec<&str> = after.iter().map(|e| e.operation.as_str()).collect();
        assert!(
            operations.contains(&CANCEL) && operations.contains(&REFUND),
            "{operations:?}"
        );
        let statuses: Vec<u16> = after.iter().map(|e| e.status).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 401).count(),
            1,
            "{}: only the first call meets the expired token: {statuses:?}",
            h.label()
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 401),
            "{statuses:?}"
        );
        let mut correlation_ids = Vec::new();
        for entry in &after {
            assert_eq!(
                entry.headers.get("wm_sec.access_token").map(String::as_str),
                Some("***"),
                "{entry:?}"
            );
            assert_eq!(
                entry.headers.get("wm_svc.name").map(String::as_str),
                Some("nightdesk")
            );
            let id = entry
                .headers
                .get("wm_qos.correlation_id")
                .cloned()
                .unwrap_or_default();
            assert_eq!(id.len(), 36, "{entry:?}");
            correlation_ids.push(id);
        }
        correlation_ids.sort();
        correlation_ids.dedup();
        assert_eq!(correlation_ids.len(), after.len(), "a fresh GUID per call");
        // The expired token was answered 401 once and a new one fetched.
        let tokens = h
            .sandbox
            .journal()
            .into_iter()
            .skip(before)
            .filter(|e| e.operation == "walmart.token")
            .count();
        assert_eq!(tokens, 1, "{}", h.label());
    }
}

/// The sandbox's answers to the two calls follow the contract (and the connector reads
/// them), as do its refusals.
#[tokio::test]
async fn the_sandbox_answers_cancel_and_refund_as_the_contract_says() {
    let Some(h) = harnesses(&scenario()).await.into_iter().next() else {
        panic!("no store backend");
    };
    let base = format!("{}/walmart", h.sandbox.base_url());
    let http = reqwest::Client::new();
    let token: Value = match http
        .post(format!("{base}/v3/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("WM_SVC.NAME", "Walmart Marketplace")
        .header(
            "WM_QOS.CORRELATION_ID",
            "b3261d2d-028a-4ef7-8602-633c23200af6",
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(e) => panic!("token: {e}"),
    };
    let token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let post = |path: String, body: Value| {
        let request = http
            .post(format!("{base}{path}"))
            .header("WM_SEC.ACCESS_TOKEN", token.clone())
            .header("WM_SVC.NAME", "Walmart Marketplace")
            .header(
                "WM_QOS.CORRELATION_ID",
                "b3261d2d-028a-4ef7-8602-633c23200af7",
            )
            .json(&body);
        async move {
            match request.send().await {
                Ok(r) => (
                    r.status().as_u16(),
                    r.json::<Value>().await.unwrap_or_default(),
                ),
                Err(e) => panic!("post: {e}"),
            }
        }
    };
    let cancel_body = json!({"orderCancellation": {"orderLines": {"orderLine": [{
        "lineNumber": "2",
        "orderLineStatuses": {"orderLineStatus": [{
            "status": "Cancelled",
            "cancellationReason": "SELLER_CANCEL_PRICING_ERROR",
            "statusQuantity": {"unitOfMeasurement": "EA", "amount": "1"},
        }]},
    }]}}});
    let (status, answer) = post(
        format!("/v3/orders/{PART_SHIPPED}/cancel"),
        cancel_body.clone(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let schema = contract().response_schema(
        "post",
        "/v3/orders/{purchaseOrderId}/cancel",
        200,
        "application/json",
    );
    let schema = schema.unwrap_or_else(|e| panic!("{e}"));
    if let Err(problems) = contract().check(&schema, &answer) {
        panic!("{problems}\n{answer}");
    }
    let mapped = nightdesk::sources::walmart::orders::parse_order(answer["order"].clone(), "us");
    let mapped = mapped.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        mapped.order.status,
        OrderStatus::Shipped,
        "line 2 cancelled, line 1 shipped"
    );
    // The same again: nothing open on line 2 any more.
    let (status, answer) = post(format!("/v3/orders/{PART_SHIPPED}/cancel"), cancel_body).await;
    assert_eq!(status, 400, "{answer}");
    check_gateway_errors(&answer);

    let refund_body = json!({"orderRefund": {
        "purchaseOrderId": SHIPPED,
        "orderLines": {"orderLine": [{
            "lineNumber": "1",
            "isFullRefund": false,
            "refunds": {"refund": [{
                "refundComments": "damaged in transit",
                "refundCharges": {"refundCharge": [{
                    "refundReason": "Shipping & Delivery -> Damaged",
                    "charge": {
                        "chargeType": "PRODUCT",
                        "chargeName": "ItemPrice",
                        "chargeAmount": {"currency": "USD", "amount": -10.5},
                        "tax": {"taxName": "Tax1", "taxAmount": {"currency": "USD", "amount": -0.84}},
                    },
                }]},
            }]},
        }]},
    }});
    let (status, answer) = post(format!("/v3/orders/{SHIPPED}/refund"), refund_body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let schema = contract().response_schema(
        "post",
        "/v3/orders/{purchaseOrderId}/refund",
        200,
        "application/json",
    );
    let schema = schema.unwrap_or_else(|e| panic!("{e}"));
    if let Err(problems) = contract().check(&schema, &answer) {
        panic!("{problems}\n{answer}");
    }
    let mapped = nightdesk::sources::walmart::orders::parse_order(answer["order"].clone(), "us");
    let mapped = mapped.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mapped.refunded.get("1"), Some(&1050));
    // getAnOrder shows it too, in the contract's shape.
    let got = match http
        .get(format!("{base}/v3/orders/{SHIPPED}"))
        .header("WM_SEC.ACCESS_TOKEN", token.clone())
        .header("WM_SVC.NAME", "Walmart Marketplace")
        .header(
            "WM_QOS.CORRELATION_ID",
            "b3261d2d-028a-4ef7-8602-633c23200af8",
        )
        .send()
        .await
    {
        Ok(r) => r.json::<Value>().await.unwrap_or_default(),
        Err(e) => panic!("get: {e}"),
    };
    if let Err(problems) = contract().check(&contract().schema("GetOrderResponse"), &got) {
        panic!("{problems}\n{got}");
    }
    assert_eq!(
        got["order"]["orderLines"]["orderLine"][0]["refund"]["refundComments"],
        "damaged in transit"
    );
    // 10.50 of 19.99 refunded: another 10.50 would be more than was paid.
    let (status, answer) = post(format!("/v3/orders/{SHIPPED}/refund"), refund_body).await;
    assert_eq!(status, 400, "{answer}");
    check_gateway_errors(&answer);
    // An unshipped line is not refunded; a reason outside the list is refused.
    for (po, line, reason) in [(OPEN, "1", "Others"), (SHIPPED, "2", "Because")] {
        let body = json!({"orderRefund": {"purchaseOrderId": po, "orderLines": {"orderLine": [{
            "lineNumber": line,
            "refunds": {"refund": [{"refundCharges": {"refundCharge": [{
                "refundReason": reason,
                "charge": {"chargeType": "PRODUCT", "chargeName": "ItemPrice",
                           "chargeAmount": {"currency": "USD", "amount": -1}},
            }]}}]},
        }]}}});
        let (status, answer) = post(format!("/v3/orders/{po}/refund"), body).await;
        assert_eq!(status, 400, "{po} {answer}");
        check_gateway_errors(&answer);
    }
    let (status, answer) = post("/v3/orders/1999999999999/cancel".to_owned(), json!({})).await;
    assert_eq!(status, 404, "{answer}");
    check_gateway_errors(&answer);
}

fn check_gateway_errors(body: &Value) {
    let items = body["errors"]["error"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!items.is_empty(), "no errors in {body}");
    for item in &items {
        if let Err(problems) = contract().check(&contract().schema("GatewayError"), item) {
            panic!("{problems}\n{item}");
        }
    }
}

/// Crashes at the failpoints (feature `failpoints`): each test process has its own.
#[cfg(feature = "failpoints")]
mod crashes {
    use super::*;

    /// Seconds past the outbox's default lease (300 s).
    const AFTER_LEASE: i64 = 301;

    fn fail_at(name: &str) {
        if let Err(e) = fail::cfg(name, "return") {
            panic!("failpoint {name}: {e}");
        }
    }

    fn crashed(
        result: Result<nightdesk::outbox::ExecutorReport, nightdesk::outbox::ExecutorError>,
    ) -> bool {
        matches!(result, Err(nightdesk::outbox::ExecutorError::Crashed(_)))
    }

    #[tokio::test]
    async fn a_crash_between_the_record_and_the_send_reads_back_and_sends_once() {
        for h in harnesses(&scenario()).await {
            let fp = fail::FailScenario::setup();
            let d = polled(&h).await;
            plan(&h, &[action(OPEN, cancel(OPEN, "NoInventory"), "t|cancel")]).await;
            fail_at("walmart.after_record");
            assert!(crashed(d.execute_due(&|| false).await), "{}", h.label());
            fail::remove("walmart.after_record");
            assert!(calls(&h, CANCEL).is_empty(), "{}", h.label());
            h.clock.advance(Duration::seconds(AFTER_LEASE));
            let restarted = daemon(&h);
            execute(&h, &restarted).await;
            assert_eq!(row(&h, "t|cancel").await.state, "done", "{}", h.label());
            assert_eq!(calls(&h, CANCEL).len(), 1, "{}", h.label());
            assert_eq!(h.sandbox.walmart_cancellations(Some(OPEN)).len(), 2);
            fp.teardown();
        }
    }

    #[tokio::test]
    async fn a_crash_after_walmart_acted_adopts_the_effect_instead_of_sending_again() {
        for h in harnesses(&scenario()).await {
            let fp = fail::FailScenario::setup();
            let d = polled(&h).await;
            plan(
                &h,
                &[action(
                    SHIPPED,
                    refund(SHIPPED, "CustomerReturn", vec![], None),
                    "t|refund",
                )],
            )
            .await;
            fail_at("outbox.after_send");
            assert!(crashed(d.execute_due(&|| false).await), "{}", h.label());
            fail::remove("outbox.after_send");
            assert_eq!(h.sandbox.walmart_refunds(Some(SHIPPED)).len(), 2);
            h.clock.advance(Duration::seconds(AFTER_LEASE));
            let restarted = daemon(&h);
            execute(&h, &restarted).await;
            assert_eq!(row(&h, "t|refund").await.state, "done", "{}", h.label());
            assert_eq!(
                calls(&h, REFUND).len(),
                1,
                "{}: never sent again",
                h.label()
            );
            assert_eq!(
                h.sandbox.walmart_refunds(Some(SHIPPED)).len(),
                2,
                "{}: one refund per line",
                h.label()
            );
            assert_eq!(receipt(&h, SHIPPED).await["read_back"], true);
            fp.teardown();
        }
    }
}
