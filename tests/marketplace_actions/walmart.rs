//! Walmart refunds and cancellations through the outbox (`executors::walmart`) against
//! the sandbox's Walmart, on every store backend: each path, the reasons, what is
//! refused before any call, the answers that leave it open whether Walmart acted (read
//! back, adopted, or resubmitted once), and the token and headers on every call. The
//! request bodies and the answers are checked against the Walmart contract.

use crate::openapi;

use std::sync::OnceLock;

use chrono::Duration;
use nightdesk::daemon::Daemon;
use nightdesk::model::{OrderStatus, PlannedAction, RefundLine, SalesChannel, Subject};
use nightdesk::sandbox::marketplaces::walmart::{
    CLIENT_ID, CLIENT_SECRET, WalmartScenario, WalmartScenarioAddress, WalmartScenarioLine,
    WalmartScenarioOrder, WalmartScenarioTracking,
};
use nightdesk::sandbox::{Amount, Fault, JournalEntry, Scenario, When};
use nightdesk::sources::walmart::orders::WalmartOrder;
use nightdesk::store::OutboxRow;
use openapi::OpenApi;
use serde_json::{Value, json};

use crate::common::{Harness, harnesses};
use crate::support::{self, execute, plan_all, row_in};

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

/// The harness daemon with a Walmart account on the sandbox.
fn daemon(h: &Harness) -> Daemon {
    let section = format!(
        r#"walmart:
  accounts:
    - name: walmart-us
      client_id: {CLIENT_ID}
      client_secret: env:T_WALMART
"#
    );
    support::daemon(h, &section, &[("T_WALMART", CLIENT_SECRET)])
}

/// A daemon with the sandbox's Walmart orders in its store.
async fn polled(h: &Harness) -> Daemon {
    let orders = [OPEN, SHIPPED, PART_SHIPPED];
    support::polled(h, daemon(h), SalesChannel::Walmart, &orders).await
}

fn cancel(po: &str, reason: &str, key: &str) -> PlannedAction {
    let subject = Subject::order(SalesChannel::Walmart, po);
    support::action(subject, key, support::cancel(po, reason))
}

fn refund(
    po: &str,
    reason: &str,
    items: Vec<RefundLine>,
    amount: Option<&str>,
    key: &str,
) -> PlannedAction {
    let subject = Subject::order(SalesChannel::Walmart, po);
    support::action(subject, key, support::refund(po, reason, items, amount))
}

/// Everything shipped on `po`, for the buyer's return.
fn full_refund(po: &str, key: &str) -> PlannedAction {
    refund(po, "CustomerReturn", vec![], None, key)
}

fn refund_line(item: &str, quantity: Option<i64>, amount: Option<&str>) -> RefundLine {
    RefundLine {
        item: item.into(),
        quantity,
        amount: amount.map(str::to_owned),
    }
}

/// What the action's done attempt reported (its receipt's `result`).
async fn result(h: &Harness, row: &OutboxRow) -> Value {
    support::receipt(h, row.id).await["result"].clone()
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
        plan_all(&h, &[cancel(OPEN, "NoInventory", "t|cancel")]).await;
        execute(&h, &d).await;
        let done = row_in(&h, "t|cancel", "done").await;
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
        let result = result(&h, &done).await;
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
        plan_all(
            &h,
            &[
                cancel(SHIPPED, "BuyerCanceled", "t|shipped"),
                cancel(PART_SHIPPED, "NoInventory", "t|part"),
                cancel(OPEN, "BecauseISaidSo", "t|reason"),
                refund(
                    SHIPPED,
                    "CarrierCreditDecision",
                    vec![],
                    None,
                    "t|refund-reason",
                ),
                refund(
                    PART_SHIPPED,
                    "CustomerReturn",
                    vec![refund_line("2", None, None)],
                    None,
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
            let failed = row_in(&h, key, "failed").await;
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
        plan_all(&h, &[full_refund(SHIPPED, "t|refund")]).await;
        execute(&h, &d).await;
        let done = row_in(&h, "t|refund", "done").await;
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
        let result = result(&h, &done).await;
        assert_eq!(result["total"], "32.39", "{result}");
        assert_eq!(result["currency"], "USD", "{result}");
        // A second full refund: nothing is left, refused before the call.
        plan_all(&h, &[full_refund(SHIPPED, "t|again")]).await;
        execute(&h, &d).await;
        let again = row_in(&h, "t|again", "failed").await;
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
        plan_all(
            &h,
            &[
                // One of the two filters of line 2, named by SKU; PriceError maps to
                // Walmart's BillingError.
                refund(
                    SHIPPED,
                    "PriceError",
                    vec![refund_line("400", Some(1), None)],
                    None,
                    "t|one-unit",
                ),
                // 5.00 of the partly shipped order's shipped line, in Walmart's own code.
                refund(
                    PART_SHIPPED,
                    "Finance -> Goodwill",
                    vec![],
                    Some("5.00"),
                    "t|amount",
                ),
            ],
        )
        .await;
        execute(&h, &d).await;
        for key in ["t|one-unit", "t|amount"] {
            row_in(&h, key, "done").await;
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
        plan_all(&h, &[cancel(OPEN, "BuyerCanceled", "t|cancel")]).await;
        execute(&h, &d).await;
        let done = row_in(&h, "t|cancel", "done").await;
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
        let result = result(&h, &done).await;
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
        plan_all(
            &h,
            &[
                refund(
                    SHIPPED,
                    "CustomerReturn",
                    vec![refund_line("1", None, None)],
                    None,
                    "t|lost-answer",
                ),
                full_refund(PART_SHIPPED, "t|unreadable"),
            ],
        )
        .await;
        execute(&h, &d).await;
        for (key, po) in [("t|lost-answer", SHIPPED), ("t|unreadable", PART_SHIPPED)] {
            let done = row_in(&h, key, "done").await;
            assert_eq!(
                h.sandbox.walmart_refunds(Some(po)).len(),
                1,
                "{}: exactly one refund",
                h.label()
            );
            let result = result(&h, &done).await;
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
        plan_all(&h, &[full_refund(SHIPPED, "t|refund")]).await;
        execute(&h, &d).await;
        let waiting = row_in(&h, "t|refund", "retry").await;
        assert!(waiting.progress.is_some_and(|p| p["submitted"].is_object()));
        assert!(h.sandbox.walmart_refunds(None).is_empty());
        h.clock.advance(Duration::seconds(5));
        execute(&h, &d).await;
        row_in(&h, "t|refund", "done").await;
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
        plan_all(
            &h,
            &[
                cancel(OPEN, "NoInventory", "t|cancel"),
                full_refund(SHIPPED, "t|refund"),
            ],
        )
        .await;
        execute(&h, &d).await;
        let throttled = row_in(&h, "t|cancel", "retry").await;
        // Certainly not done: no read-back marker is left behind.
        assert!(
            throttled
                .progress
                .is_none_or(|p| p.get("submitted").is_none())
        );
        let refused = row_in(&h, "t|refund", "failed").await;
        let error = refused.last_error.unwrap_or_default();
        assert!(
            error.contains("Walmart refused the refund") && error.contains("Invalid request."),
            "{error}"
        );
        h.clock.advance(Duration::seconds(3));
        execute(&h, &d).await;
        row_in(&h, "t|cancel", "done").await;
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
        plan_all(
            &h,
            &[
                cancel(OPEN, "NoInventory", "t|cancel"),
                full_refund(SHIPPED, "t|refund"),
            ],
        )
        .await;
        execute(&h, &d).await;
        row_in(&h, "t|cancel", "done").await;
        row_in(&h, "t|refund", "done").await;
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
    let mapped = accepted(&answer, "/v3/orders/{purchaseOrderId}/cancel");
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
    let mapped = accepted(&answer, "/v3/orders/{purchaseOrderId}/refund");
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

/// A 200 answer to the POST on `path` follows the contract; the order in it, as the
/// connector reads it.
fn accepted(answer: &Value, path: &str) -> WalmartOrder {
    let schema = match contract().response_schema("post", path, 200, "application/json") {
        Ok(schema) => schema,
        Err(e) => panic!("{e}"),
    };
    if let Err(problems) = contract().check(&schema, answer) {
        panic!("{problems}\n{answer}");
    }
    match nightdesk::sources::walmart::orders::parse_order(answer["order"].clone(), "us") {
        Ok(order) => order,
        Err(e) => panic!("{e}"),
    }
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

    /// One executor pass that must crash at the failpoint `name`.
    async fn crash_at(h: &Harness, d: &Daemon, name: &str) {
        if let Err(e) = fail::cfg(name, "return") {
            panic!("failpoint {name}: {e}");
        }
        let result = d.execute_due(&|| false).await;
        assert!(
            matches!(result, Err(nightdesk::outbox::ExecutorError::Crashed(_))),
            "{}",
            h.label()
        );
        fail::remove(name);
    }

    /// A new daemon once the crashed one's lease ran out, after one executor pass.
    async fn restart(h: &Harness) {
        h.clock.advance(Duration::seconds(AFTER_LEASE));
        execute(h, &daemon(h)).await;
    }

    #[tokio::test]
    async fn a_crash_between_the_record_and_the_send_reads_back_and_sends_once() {
        for h in harnesses(&scenario()).await {
            let fp = fail::FailScenario::setup();
            let d = polled(&h).await;
            plan_all(&h, &[cancel(OPEN, "NoInventory", "t|cancel")]).await;
            crash_at(&h, &d, "walmart.after_record").await;
            assert!(calls(&h, CANCEL).is_empty(), "{}", h.label());
            restart(&h).await;
            row_in(&h, "t|cancel", "done").await;
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
            plan_all(&h, &[full_refund(SHIPPED, "t|refund")]).await;
            crash_at(&h, &d, "outbox.after_send").await;
            assert_eq!(h.sandbox.walmart_refunds(Some(SHIPPED)).len(), 2);
            restart(&h).await;
            let done = row_in(&h, "t|refund", "done").await;
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
            assert_eq!(result(&h, &done).await["read_back"], true);
            fp.teardown();
        }
    }
}
