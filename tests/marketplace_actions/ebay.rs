//! eBay refunds through the outbox against the sandbox's Sell Fulfillment fake, on every
//! store backend: a refund PENDING then confirmed through getOrder, one that FAILED, an
//! answer lost after eBay acted (read back and adopted) or before (asked once more), the
//! token's finances scope, and a cancellation held for Seller Hub. The issue_refund
//! request and answers are checked against the published contract.

use crate::openapi;

use chrono::Duration;
use nightdesk::daemon::Daemon;
use nightdesk::model::{ActionRequest, RefundLine, SalesChannel, Subject};
use nightdesk::sandbox::marketplaces::ebay::{
    CLIENT_ID, CLIENT_SECRET, EbayRefundOutcome, REFRESH_TOKEN,
};
use nightdesk::sandbox::{Fault, Scenario};
use openapi::OpenApi;
use serde_json::{Value, json};

use crate::common::{Harness, harnesses};
use crate::support::{self, execute, receipt, row_in};

const ORDER: &str = "12-34567-89012";
const FINANCES: &str = "https://api.ebay.com/oauth/api_scope/sell.finances";
const FULFILLMENT: &str = "https://api.ebay.com/oauth/api_scope/sell.fulfillment";
const REFUND_PATH: &str = "/ebay/sell/fulfillment/v1/order/12-34567-89012/issue_refund";

fn scenario() -> Scenario {
    let yaml = r##"
ebay:
  orders:
    - id: 12-34567-89012
      created: 2d
      buyer: { username: karen_m_pdx, name: Karen Miller }
      items:
        - { id: "10001", sku: RC-MUG-BLUE, title: Blue ceramic mug, quantity: 2, price: 12.99 }
        - { id: "10002", sku: RC-SPOON, title: Tasting spoon, quantity: 1, price: 3.50 }
      shipping: 5.99
"##;
    match Scenario::from_yaml_str(yaml) {
        Ok(s) => s,
        Err(e) => panic!("scenario: {e}"),
    }
}

fn contract() -> OpenApi {
    OpenApi::load_spec("ebay/sell_fulfillment_v1_oas3.yaml")
}

fn valid(api: &OpenApi, schema: &Value, body: &Value, what: &str) {
    if let Err(problems) = api.check(schema, body) {
        panic!("{what}: {problems}\n{body:#}");
    }
}

/// An issue_refund request body follows the contract.
fn valid_refund_request(api: &OpenApi, body: &Value, what: &str) {
    valid(api, &api.schema("IssueRefundRequest"), body, what);
}

async fn polled(h: &Harness) -> Daemon {
    let section = format!(
        r#"ebay:
  accounts:
    - name: ebay-us
      client_id: {CLIENT_ID}
      client_secret: env:T_EBAY_SECRET
      refresh_token: env:T_EBAY_REFRESH
      schedule: "* * * * *"
"#
    );
    let secrets = [
        ("T_EBAY_SECRET", CLIENT_SECRET),
        ("T_EBAY_REFRESH", REFRESH_TOKEN),
    ];
    let d = support::daemon(h, &section, &secrets);
    support::polled(h, d, SalesChannel::Ebay, &[ORDER]).await
}

async fn plan(h: &Harness, key: &str, request: ActionRequest) {
    support::plan(h, Subject::order(SalesChannel::Ebay, ORDER), key, request).await;
}

fn refund(reason: &str, items: Vec<RefundLine>, amount: Option<&str>) -> ActionRequest {
    support::refund(ORDER, reason, items, amount)
}

fn refund_calls(h: &Harness) -> Vec<Value> {
    h.journal("ebay.issueRefund")
        .into_iter()
        .map(|e| e.body)
        .collect()
}

#[tokio::test]
async fn a_pending_refund_is_confirmed_through_get_order() {
    let api = contract();
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        plan(&h, "refund-whole", refund("CustomerReturn", vec![], None)).await;
        execute(&h, &d).await;
        let waiting = row_in(&h, "refund-whole", "planned").await;
        let refunds = h.sandbox.ebay_refunds();
        assert_eq!(refunds.len(), 1, "{}", h.label());
        assert_eq!(refunds[0].cents, 3547);
        assert_eq!(refunds[0].reason, "BUYER_RETURN");
        assert_eq!(
            waiting.progress.as_ref().map(|p| p["refund_id"].clone()),
            Some(json!(refunds[0].refund_id))
        );
        let sent = refund_calls(&h);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0]["orderLevelRefundAmount"],
            json!({"value": "35.47", "currency": "USD"})
        );
        valid_refund_request(&api, &sent[0], "the request sent");

        // Five minutes on, eBay has settled it.
        h.clock.advance(Duration::minutes(5));
        execute(&h, &d).await;
        let done = row_in(&h, "refund-whole", "done").await;
        assert_eq!(refund_calls(&h).len(), 1, "confirmed, never asked twice");
        let receipt = receipt(&h, done.id).await;
        assert_eq!(receipt["safety"], "verify-then-retry");
        assert_eq!(
            receipt["result"],
            json!({"refund_id": refunds[0].refund_id, "status": "REFUNDED", "amount": "35.47",
                   "currency": "USD", "reason": "BUYER_RETURN", "read_back": false})
        );
    }
}

#[tokio::test]
async fn a_line_refund_is_confirmed_by_its_date_and_a_failed_refund_fails_the_action() {
    let api = contract();
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        let one_mug = vec![RefundLine {
            item: "RC-MUG-BLUE".into(),
            quantity: Some(1),
            amount: None,
        }];
        plan(&h, "refund-mug", refund("DifferentItem", one_mug, None)).await;
        execute(&h, &d).await;
        let sent = refund_calls(&h);
        assert_eq!(sent.len(), 1, "{}", h.label());
        assert_eq!(sent[0]["reasonForRefund"], "ITEM_NOT_AS_DESCRIBED");
        assert_eq!(
            sent[0]["refundItems"],
            json!([{"lineItemId": "10001", "refundAmount": {"value": "12.99", "currency": "USD"}}])
        );
        valid_refund_request(&api, &sent[0], "the line refund sent");
        h.clock.advance(Duration::minutes(5));
        execute(&h, &d).await;
        let done = row_in(&h, "refund-mug", "done").await;
        assert_eq!(receipt(&h, done.id).await["result"]["amount"], "12.99");

        // eBay fails the next one: the order shows it FAILED.
        h.sandbox.ebay_set_refund_outcome(EbayRefundOutcome::Failed);
        plan(
            &h,
            "refund-failed",
            refund("PriceError", vec![], Some("2.00")),
        )
        .await;
        execute(&h, &d).await;
        row_in(&h, "refund-failed", "planned").await;
        h.clock.advance(Duration::minutes(5));
        execute(&h, &d).await;
        let failed = row_in(&h, "refund-failed", "failed").await;
        assert!(
            failed.last_error.unwrap_or_default().contains("FAILED"),
            "{}",
            h.label()
        );
        assert_eq!(refund_calls(&h).len(), 2, "never asked again");
    }
}

#[tokio::test]
async fn an_answer_lost_after_ebay_refunded_is_adopted_without_a_second_refund() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        h.sandbox
            .inject(Fault::status("ebay.issueRefund", 500).after_effect());
        plan(
            &h,
            "refund-lost",
            refund("SELLER_CANCEL", vec![], Some("10.00")),
        )
        .await;
        execute(&h, &d).await;
        row_in(&h, "refund-lost", "retry").await;
        assert_eq!(h.sandbox.ebay_refunds().len(), 1);
        // The next attempt reads the order back: the refund is there (settled by now).
        h.clock.advance(Duration::minutes(2));
        execute(&h, &d).await;
        let done = row_in(&h, "refund-lost", "done").await;
        assert_eq!(
            refund_calls(&h).len(),
            1,
            "{}: adopted, not resent",
            h.label()
        );
        let refunds = h.sandbox.ebay_refunds();
        assert_eq!(refunds.len(), 1);
        assert_eq!(refunds[0].cents, 1000);
        let receipt = receipt(&h, done.id).await;
        assert_eq!(receipt["result"]["refund_id"], json!(refunds[0].refund_id));
        assert_eq!(receipt["result"]["read_back"], true);
    }
}

#[tokio::test]
async fn an_answer_lost_before_ebay_acted_is_asked_once_more() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        h.sandbox.inject(Fault::status("ebay.issueRefund", 500));
        plan(&h, "refund-again", refund("CustomerCancel", vec![], None)).await;
        execute(&h, &d).await;
        row_in(&h, "refund-again", "retry").await;
        assert!(h.sandbox.ebay_refunds().is_empty());
        h.clock.advance(Duration::seconds(5));
        execute(&h, &d).await;
        row_in(&h, "refund-again", "planned").await;
        assert_eq!(refund_calls(&h).len(), 2, "{}: resubmitted once", h.label());
        assert_eq!(h.sandbox.ebay_refunds().len(), 1);
        h.clock.advance(Duration::minutes(5));
        execute(&h, &d).await;
        row_in(&h, "refund-again", "done").await;
        assert_eq!(refund_calls(&h).len(), 2);
        assert_eq!(h.sandbox.ebay_refunds().len(), 1);
    }
}

#[tokio::test]
async fn the_refund_token_asks_for_the_finances_scope_and_polling_does_not() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        plan(&h, "refund-scope", refund("Other", vec![], Some("1.00"))).await;
        execute(&h, &d).await;
        let scopes: Vec<String> = h
            .journal("ebay.token")
            .into_iter()
            .map(|e| e.body["scope"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(scopes.len(), 2, "{}: {scopes:?}", h.label());
        assert_eq!(scopes[0], FULFILLMENT, "polling asks for what it reads");
        assert!(
            scopes[1].split(' ').any(|s| s == FINANCES)
                && scopes[1].split(' ').any(|s| s == FULFILLMENT),
            "{scopes:?}"
        );
        assert_eq!(refund_calls(&h).len(), 1);
        assert_eq!(h.journal("ebay.issueRefund")[0].status, 200);
    }
}

#[tokio::test]
async fn a_cancellation_is_held_for_seller_hub_and_unknown_reasons_are_refused() {
    for h in harnesses(&scenario()).await {
        let d = polled(&h).await;
        let cancel = |reason: &str| support::cancel(ORDER, reason);
        plan(&h, "cancel", cancel("NoInventory")).await;
        plan(&h, "cancel-nonsense", cancel("BecauseISaidSo")).await;
        plan(
            &h,
            "refund-nonsense",
            refund("BecauseISaidSo", vec![], None),
        )
        .await;
        execute(&h, &d).await;
        let held = row_in(&h, "cancel", "held").await;
        let reason = held.last_error.unwrap_or_default();
        assert!(reason.contains("Seller Hub"), "{reason}");
        assert!(reason.contains("OUT_OF_STOCK"), "{reason}");
        assert!(reason.contains(ORDER), "{reason}");
        for key in ["cancel-nonsense", "refund-nonsense"] {
            let refused = row_in(&h, key, "failed").await;
            assert!(
                refused.last_error.unwrap_or_default().contains("unknown"),
                "{key}"
            );
        }
        assert!(refund_calls(&h).is_empty());
    }
}

/// The sandbox's issue_refund against the contract, called directly: the request, the
/// `Refund` answer, getOrder with the refund on it, errors, and the missing scope.
#[tokio::test]
async fn issue_refund_follows_the_contract() {
    let api = contract();
    let Some(h) = harnesses(&scenario()).await.into_iter().next() else {
        panic!("no harness")
    };
    let http = reqwest::Client::new();
    let base = format!("{}/ebay", h.sandbox.base_url());
    let token = |scope: String| {
        let http = http.clone();
        let url = format!("{base}/identity/v1/oauth2/token");
        async move {
            let reply = http
                .post(url)
                .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", REFRESH_TOKEN),
                    ("scope", scope.as_str()),
                ])
                .send()
                .await;
            match reply {
                Ok(r) => r.json::<Value>().await.map_or_else(
                    |e| panic!("token body: {e}"),
                    |b| b["access_token"].as_str().unwrap_or_default().to_owned(),
                ),
                Err(e) => panic!("token: {e}"),
            }
        }
    };
    let post = |token: String, body: Value| {
        let http = http.clone();
        let url = format!("{}{REFUND_PATH}", h.sandbox.base_url());
        async move {
            match http.post(url).bearer_auth(token).json(&body).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    (status, r.json::<Value>().await.unwrap_or(Value::Null))
                }
                Err(e) => panic!("issue_refund: {e}"),
            }
        }
    };
    let narrow = token(FULFILLMENT.to_owned()).await;
    let broad = token(format!("{FULFILLMENT} {FINANCES}")).await;
    let request = json!({
        "reasonForRefund": "BUYER_RETURN",
        "comment": "returned",
        "refundItems": [{"lineItemId": "10002", "refundAmount": {"value": "3.50", "currency": "USD"}}],
    });
    valid_refund_request(&api, &request, "request");

    let (status, body) = post(narrow, request.clone()).await;
    assert_eq!(status, 403, "no finances scope: {body}");

    let (status, body) = post(broad.clone(), request.clone()).await;
    assert_eq!(status, 200, "{body}");
    let schema = match api.response_schema(
        "post",
        "/order/{order_id}/issue_refund",
        200,
        "application/json",
    ) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    valid(&api, &schema, &body, "issue_refund 200");
    assert_eq!(body["refundStatus"], "PENDING");

    // A second one while the first is processing, and one for too much.
    let (status, busy) = post(broad.clone(), request.clone()).await;
    assert_eq!(status, 400);
    assert_eq!(busy["errors"][0]["errorId"], 34922);
    h.clock.advance(Duration::minutes(2));
    let (status, too_much) = post(
        broad.clone(),
        json!({"reasonForRefund": "OTHER_ADJUSTMENT",
               "orderLevelRefundAmount": {"value": "99.00", "currency": "USD"}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(too_much["errors"][0]["errorId"], 34915);
    let (status, no_reason) = post(
        broad.clone(),
        json!({"orderLevelRefundAmount": {"value": "1.00", "currency": "USD"}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(no_reason["errors"][0]["errorId"], 34903);

    // getOrder shows the line's refund, issued, in the Order schema.
    let order = match http
        .get(format!("{base}/sell/fulfillment/v1/order/{ORDER}"))
        .bearer_auth(&broad)
        .send()
        .await
    {
        Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
        Err(e) => panic!("getOrder: {e}"),
    };
    valid(
        &api,
        &api.schema("Order"),
        &order,
        "getOrder after a refund",
    );
    assert_eq!(
        order["lineItems"][1]["refunds"][0]["refundId"],
        body["refundId"]
    );
    assert!(order["lineItems"][1]["refunds"][0]["refundDate"].is_string());
    assert_eq!(order["orderPaymentStatus"], "PARTIALLY_REFUNDED");
}
