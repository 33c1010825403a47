//! Shopify refunds and cancellations through the outbox against the sandbox's Admin
//! GraphQL fake, on every store backend: whole and per-line refunds, a refund whose
//! answer was lost (the idempotency key makes it one refund), a cancellation whose job
//! runs a while, one Shopify refuses, and one whose answer was lost (read back, adopted).

use chrono::Duration;
use nightdesk::daemon::Daemon;
use nightdesk::executors::shopify::refund_key;
use nightdesk::model::{ActionRequest, RefundLine, SalesChannel, Subject};
use nightdesk::sandbox::marketplaces::shopify::SANDBOX_ACCESS_TOKEN;
use nightdesk::sandbox::{Fault, Scenario, When};
use serde_json::{Value, json};

use crate::common::{Harness, harnesses};
use crate::support::{self, execute, receipt, row_in};

const ORDER: &str = "#1001";
const ORDER_GID: &str = "gid://shopify/Order/5001";
/// The sandbox numbers line items `{order id × 1000 + position}`.
const BEANS: &str = "gid://shopify/LineItem/5001001";
const FILTERS: &str = "gid://shopify/LineItem/5001002";

fn scenario() -> Scenario {
    let yaml = r##"
shopify:
  orders:
    - id: 5001
      name: "#1001"
      created: 2d
      customer: {email: sam.lee@example.com, first_name: Sam, last_name: Lee}
      line_items:
        - {sku: RC-BEANS-1KG, title: Espresso beans 1 kg, quantity: 2, price: "12.00"}
        - {sku: RC-FILTER-100, title: Paper filters, quantity: 1, price: "4.00"}
"##;
    match Scenario::from_yaml_str(yaml) {
        Ok(s) => s,
        Err(e) => panic!("scenario: {e}"),
    }
}

const SECTION: &str = r#"shopify:
  accounts:
    - name: ridgeline
      shop: ridgeline-coffee
      access_token: env:T_SHOPIFY
      schedule: "* * * * *"
"#;

/// The daemon, after one poll stored the shop's orders.
async fn polled(h: &Harness) -> Daemon {
    let d = support::daemon(h, SECTION, &[("T_SHOPIFY", SANDBOX_ACCESS_TOKEN)]);
    support::polled(h, d, SalesChannel::Shopify, &[ORDER]).await
}

async fn plan(h: &Harness, key: &str, request: ActionRequest) {
    support::plan(
        h,
        Subject::order(SalesChannel::Shopify, ORDER),
        key,
        request,
    )
    .await;
}

/// The GraphQL calls whose query names `field`, with their variables.
fn calls(h: &Harness, field: &str) -> Vec<Value> {
    h.journal("shopify.graphql")
        .into_iter()
        .filter(|e| {
            e.body["query"]
                .as_str()
                .is_some_and(|q| q.contains(&format!("{field}(")))
        })
        .map(|e| e.body["variables"].clone())
        .collect()
}

fn refund(items: Vec<RefundLine>, amount: Option<&str>) -> ActionRequest {
    support::refund(ORDER, "CustomerReturn", items, amount)
}

fn cancel(reason: &str) -> ActionRequest {
    support::cancel(ORDER, reason)
}

#[tokio::test]
async fn a_whole_order_refund_is_one_refund_create_with_the_key_and_the_sale_as_parent() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        plan(&h, "refund-whole", refund(vec![], None)).await;
        execute(&h, &d).await;
        let row = row_in(&h, "refund-whole", "done").await;
        let refunds = h.sandbox.shopify_refunds();
        assert_eq!(refunds.len(), 1, "{}", h.label());
        assert_eq!(refunds[0].amount_cents, 2800);
        assert_eq!(refunds[0].order_id, ORDER_GID);
        assert_eq!(
            refunds[0].idempotency_key.as_deref(),
            Some(refund_key("refund-whole").as_str())
        );
        let input = &refunds[0].input;
        assert_eq!(
            input["refundLineItems"],
            json!([
                {"lineItemId": BEANS, "quantity": 2, "restockType": "NO_RESTOCK"},
                {"lineItemId": FILTERS, "quantity": 1, "restockType": "NO_RESTOCK"},
            ])
        );
        assert_eq!(input["transactions"][0]["kind"], "REFUND");
        assert_eq!(input["transactions"][0]["amount"], "28.00");
        assert_eq!(input["transactions"][0]["gateway"], "shopify_payments");
        assert_eq!(input["shipping"], json!({"fullRefund": true}));
        assert!(
            input["note"]
                .as_str()
                .is_some_and(|n| n.contains("CUSTOMER")),
            "the mapped reason is noted: {input}"
        );
        let receipt = receipt(&h, row.id).await;
        assert_eq!(receipt["result"]["refund_id"], json!(refunds[0].id));
        assert_eq!(receipt["result"]["amount"], "28.00");
        assert_eq!(receipt["safety"], "retry");
        assert!(!receipt.to_string().contains(SANDBOX_ACCESS_TOKEN));
        // The order now shows the refund.
        let orders = h.sandbox.shopify_orders();
        assert_eq!(orders[0].financial_status, "REFUNDED");
    }
}

#[tokio::test]
async fn a_partial_refund_names_its_lines_and_pays_their_value_or_the_amount() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        // By SKU, the whole line; by gid, one of two units, capped by an amount.
        let by_line = vec![RefundLine {
            item: "RC-FILTER-100".into(),
            quantity: None,
            amount: None,
        }];
        plan(&h, "refund-filters", refund(by_line, None)).await;
        let one_bag = vec![RefundLine {
            item: BEANS.into(),
            quantity: Some(1),
            amount: None,
        }];
        plan(&h, "refund-beans", refund(one_bag, Some("10.00"))).await;
        execute(&h, &d).await;
        for key in ["refund-filters", "refund-beans"] {
            row_in(&h, key, "done").await;
        }
        let refunds = h.sandbox.shopify_refunds();
        assert_eq!(refunds.len(), 2, "{}", h.label());
        let of = |line: &str| {
            refunds
                .iter()
                .find(|r| r.input["refundLineItems"][0]["lineItemId"] == line)
                .cloned()
        };
        let Some(filters) = of(FILTERS) else {
            panic!("no refund of the filters")
        };
        assert_eq!(filters.amount_cents, 400);
        assert_eq!(filters.input["refundLineItems"][0]["quantity"], 1);
        assert!(
            filters.input.get("shipping").is_none(),
            "a partial refund keeps shipping"
        );
        let Some(beans) = of(BEANS) else {
            panic!("no refund of the beans")
        };
        assert_eq!(beans.amount_cents, 1000);
        assert_eq!(beans.input["refundLineItems"][0]["quantity"], 1);
        assert_ne!(filters.idempotency_key, beans.idempotency_key);
        assert_eq!(
            h.sandbox.shopify_orders()[0].financial_status,
            "PARTIALLY_REFUNDED"
        );
    }
}

#[tokio::test]
async fn a_refund_whose_answers_were_lost_is_retried_with_the_same_key_and_refunds_once() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        // Every call of the first attempt (and its in-call retries) acts and loses its
        // answer.
        h.sandbox.inject(
            Fault::status("shopify.refundCreate", 500)
                .after_effect()
                .times(4),
        );
        plan(&h, "refund-lost", refund(vec![], None)).await;
        execute(&h, &d).await;
        row_in(&h, "refund-lost", "retry").await;
        assert_eq!(h.sandbox.shopify_refunds().len(), 1, "{}", h.label());
        h.clock.advance(Duration::seconds(5));
        execute(&h, &d).await;
        let done = row_in(&h, "refund-lost", "done").await;
        let refunds = h.sandbox.shopify_refunds();
        assert_eq!(refunds.len(), 1, "{}: one refund upstream", h.label());
        let sent = calls(&h, "refundCreate");
        assert_eq!(sent.len(), 5, "{}: four lost answers, then one", h.label());
        assert!(
            sent.iter()
                .all(|v| v["key"] == json!(refund_key("refund-lost"))),
            "the same key every time"
        );
        assert_eq!(
            receipt(&h, done.id).await["result"]["refund_id"],
            json!(refunds[0].id)
        );
    }
}

#[tokio::test]
async fn a_cancellation_waits_for_its_job_then_is_done() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        h.sandbox.shopify_set_cancel_delay(Duration::seconds(50));
        plan(&h, "cancel-job", cancel("BuyerCanceled")).await;
        execute(&h, &d).await;
        let waiting = row_in(&h, "cancel-job", "planned").await;
        assert!(
            waiting
                .progress
                .as_ref()
                .is_some_and(|p| p["job_id"].is_string()),
            "the job is recorded: {:?}",
            waiting.progress
        );
        let sent = calls(&h, "orderCancel");
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0],
            json!({
                "orderId": ORDER_GID, "reason": "CUSTOMER", "restock": true,
                "notifyCustomer": true,
                "refundMethod": {"originalPaymentMethodsRefund": true},
                "staffNote": "nightdesk: BuyerCanceled (rule test_rule)",
            })
        );
        // 30 s on, the job still runs; 60 s on, the order shows it.
        h.clock.advance(Duration::seconds(30));
        execute(&h, &d).await;
        row_in(&h, "cancel-job", "planned").await;
        h.clock.advance(Duration::seconds(30));
        execute(&h, &d).await;
        let done = row_in(&h, "cancel-job", "done").await;
        assert_eq!(h.sandbox.shopify_cancellations(), 1);
        assert_eq!(calls(&h, "orderCancel").len(), 1, "never asked twice");
        let receipt = receipt(&h, done.id).await;
        assert_eq!(receipt["safety"], "verify-then-retry");
        assert_eq!(receipt["result"]["reason"], "CUSTOMER");
        assert_eq!(receipt["result"]["read_back"], false);
    }
}

#[tokio::test]
async fn a_cancellation_shopify_refuses_fails_with_its_message() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        // Someone cancelled it in the Shopify admin since the last poll.
        if let Err(e) = h
            .sandbox
            .update_shopify_order(ORDER, |o| o.cancelled = Some(When::now()))
        {
            panic!("{e}");
        }
        plan(&h, "cancel-refused", cancel("NoInventory")).await;
        execute(&h, &d).await;
        let failed = row_in(&h, "cancel-refused", "failed").await;
        let error = failed.last_error.unwrap_or_default();
        assert!(
            error.contains("Order has already been cancelled"),
            "{}: {error}",
            h.label()
        );
        assert_eq!(h.sandbox.shopify_cancellations(), 0);
        // An unknown reason is refused before any call.
        plan(&h, "cancel-nonsense", cancel("BecauseISaidSo")).await;
        execute(&h, &d).await;
        let refused = row_in(&h, "cancel-nonsense", "failed").await;
        assert!(
            refused
                .last_error
                .unwrap_or_default()
                .contains("unknown cancel reason")
        );
        assert_eq!(calls(&h, "orderCancel").len(), 1, "{}", h.label());
    }
}

/// A lost answer while Shopify's cancel job is still running: the order is only read
/// back (not cancelled yet) during the grace time, so no second orderCancel is sent into
/// the running job; once the job is done the order shows cancelled and it is adopted.
#[tokio::test]
async fn a_lost_cancellation_whose_job_still_runs_is_not_asked_again() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        h.sandbox.shopify_set_cancel_delay(Duration::minutes(3));
        h.sandbox
            .inject(Fault::status("shopify.orderCancel", 500).after_effect());
        plan(&h, "cancel-running", cancel("BuyerCanceled")).await;
        execute(&h, &d).await;
        for _ in 0..8 {
            h.clock.advance(Duration::seconds(30));
            execute(&h, &d).await;
        }
        let done = row_in(&h, "cancel-running", "done").await;
        assert_eq!(
            calls(&h, "orderCancel").len(),
            1,
            "{}: read back while the job ran, never asked again",
            h.label()
        );
        assert_eq!(h.sandbox.shopify_cancellations(), 1);
        assert_eq!(receipt(&h, done.id).await["result"]["read_back"], true);
    }
}

#[tokio::test]
async fn a_cancellation_whose_answer_was_lost_is_read_back_and_adopted() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        h.sandbox
            .inject(Fault::status("shopify.orderCancel", 500).after_effect());
        plan(&h, "cancel-lost", cancel("BuyerCanceled")).await;
        execute(&h, &d).await;
        row_in(&h, "cancel-lost", "retry").await;
        assert_eq!(h.sandbox.shopify_cancellations(), 1);
        h.clock.advance(Duration::seconds(5));
        execute(&h, &d).await;
        let done = row_in(&h, "cancel-lost", "done").await;
        assert_eq!(
            calls(&h, "orderCancel").len(),
            1,
            "{}: adopted, not resent",
            h.label()
        );
        assert_eq!(h.sandbox.shopify_cancellations(), 1);
        assert_eq!(receipt(&h, done.id).await["result"]["read_back"], true);
    }
}
