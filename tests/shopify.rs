//! The Shopify connector against the sandbox's Admin GraphQL fake: paging, the
//! updated_at window, cost-based pacing and THROTTLED, refused tokens, bad orders
//! skipped, and what an order carries (status, customer, gid, parcels).

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use nightdesk::clock::{ManualClock, SharedClock};
use nightdesk::http::RetryPolicy;
use nightdesk::model::{Customer, Fulfillment, OrderStatus, SalesChannel};
use nightdesk::sandbox::marketplaces::shopify::SANDBOX_ACCESS_TOKEN;
use nightdesk::sandbox::{Fault, Sandbox, SandboxOptions, Scenario};
use nightdesk::schedule::Schedule;
use nightdesk::sources::shopify::{ShopifySettings, ShopifySource};
use nightdesk::sources::{OrderSource, PollWindow, poll_once};
use secrecy::SecretString;
use url::Url;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

async fn sandbox(yaml: &str) -> (Sandbox, ManualClock) {
    let scenario = match Scenario::from_yaml_str(yaml) {
        Ok(s) => s,
        Err(e) => panic!("scenario: {e}"),
    };
    let clock = ManualClock::new(t0());
    let shared: SharedClock = Arc::new(clock.clone());
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    match Sandbox::start(listener, SandboxOptions::new(scenario, shared)).await {
        Ok(s) => (s, clock),
        Err(e) => panic!("sandbox: {e}"),
    }
}

fn source(sandbox: &Sandbox, clock: &ManualClock, token: &str, page_size: u32) -> ShopifySource {
    let base = match Url::parse(&format!("{}/shopify", sandbox.base_url())) {
        Ok(u) => u,
        Err(e) => panic!("url: {e}"),
    };
    let schedule = match Schedule::parse("* * * * *") {
        Ok(s) => s,
        Err(e) => panic!("schedule: {e}"),
    };
    let mut settings = ShopifySettings::new(
        "ridgeline-coffee",
        base,
        SecretString::from(token),
        "ridgeline",
        schedule,
    );
    settings.page_size = page_size;
    let shared: SharedClock = Arc::new(clock.clone());
    match ShopifySource::new(settings, shared, RetryPolicy::fast()) {
        Ok(s) => s,
        Err(e) => panic!("source: {e}"),
    }
}

/// `count` paid, unfulfilled orders `#1001…`, updated an hour apart up to 1 h ago.
fn orders_yaml(count: usize) -> String {
    let mut yaml = String::from("shopify:\n  orders:\n");
    for i in 0..count {
        yaml.push_str(&format!(
            "    - id: {}\n      name: \"#{}\"\n      created: {}h\n      \
             line_items: [{{sku: RC-{i}, title: Beans {i}, quantity: 1, price: \"12.00\"}}]\n",
            5000 + i,
            1001 + i,
            count - i
        ));
    }
    yaml
}

fn window(from_ago: Duration, to_ago: Duration) -> PollWindow {
    PollWindow {
        from: t0() - from_ago,
        to: t0() - to_ago,
    }
}

async fn list_all(source: &ShopifySource, window: PollWindow) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = None;
    for _ in 0..50 {
        let page = match source.orders_page(window, token).await {
            Ok(p) => p,
            Err(e) => panic!("orders_page: {e}"),
        };
        ids.extend(page.orders.into_iter().map(|o| o.id));
        token = page.next_token;
        if token.is_none() {
            return ids;
        }
    }
    panic!("paging did not end");
}

fn graphql_calls(sandbox: &Sandbox) -> Vec<u16> {
    sandbox
        .journal()
        .into_iter()
        .filter(|e| e.operation == "shopify.graphql")
        .map(|e| e.status)
        .collect()
}

#[tokio::test]
async fn pages_are_followed_by_cursor_across_several_pages() {
    let (sandbox, clock) = sandbox(&orders_yaml(7)).await;
    let source = source(&sandbox, &clock, SANDBOX_ACCESS_TOKEN, 3);
    let ids = list_all(&source, window(Duration::days(1), Duration::zero())).await;
    let want: Vec<String> = (1001..=1007).map(|n| format!("#{n}")).collect();
    assert_eq!(ids, want, "oldest update first, each once");
    assert_eq!(graphql_calls(&sandbox), vec![200, 200, 200]);
    let first = sandbox.journal();
    let Some(entry) = first.iter().find(|e| e.operation == "shopify.graphql") else {
        panic!("no call journaled");
    };
    assert_eq!(entry.path, "/shopify/admin/api/2026-01/graphql.json");
    assert_eq!(source.key(), "shopify/ridgeline");
    assert_eq!(source.channel(), SalesChannel::Shopify);
}

#[tokio::test]
async fn the_updated_at_window_is_honoured() {
    let yaml = r##"
shopify:
  orders:
    - {id: 1, name: "#1001", created: 5d, line_items: [{title: A, quantity: 1, price: "1.00"}]}
    - {id: 2, name: "#1002", created: 6d, updated: 2d, line_items: [{title: B, quantity: 1, price: "1.00"}]}
    - {id: 3, name: "#1003", created: 1h, line_items: [{title: C, quantity: 1, price: "1.00"}]}
    - {id: 4, name: "#1004", created: 10m, line_items: [{title: D, quantity: 1, price: "1.00"}]}
"##;
    let (sandbox, clock) = sandbox(yaml).await;
    let source = source(&sandbox, &clock, SANDBOX_ACCESS_TOKEN, 10);
    // #1001 is older than the window, #1004 newer; #1003 sits exactly on the upper bound.
    let ids = list_all(&source, window(Duration::days(3), Duration::hours(1))).await;
    assert_eq!(ids, vec!["#1002".to_owned(), "#1003".to_owned()]);
    let Some(call) = sandbox
        .journal()
        .into_iter()
        .find(|e| e.operation == "shopify.graphql")
    else {
        panic!("no call journaled");
    };
    let filter = call.body["variables"]["query"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        filter.contains("updated_at:>='2026-11-19T12:00:00Z'"),
        "{filter}"
    );
    assert!(
        call.body["query"]
            .as_str()
            .unwrap_or_default()
            .contains("sortKey: UPDATED_AT")
    );
}

#[tokio::test]
async fn throttled_answers_are_waited_out_then_succeed() {
    let yaml = format!(
        "{}  throttle: {{maximum_available: 1000, restore_rate: 2000}}\n",
        orders_yaml(3)
    );
    let (sandbox, clock) = sandbox(&yaml).await;
    let source = source(&sandbox, &clock, SANDBOX_ACCESS_TOKEN, 10);
    sandbox.shopify_drain_bucket();
    let ids = list_all(&source, window(Duration::days(1), Duration::zero())).await;
    assert_eq!(ids.len(), 3);
    assert_eq!(sandbox.shopify_throttled(), 1, "one THROTTLED, then paced");
    // THROTTLED is an HTTP 200: two calls, both 200.
    assert_eq!(graphql_calls(&sandbox), vec![200, 200]);
}

#[tokio::test]
async fn the_pacer_waits_for_the_bucket_instead_of_hammering() {
    // Each page of 2 costs 2 + 2 × (4 + 50) = 110 points; the bucket holds 200 and
    // restores 200 a second, so pages 2 and 3 must each wait about 0.1 s.
    let yaml = format!(
        "{}  throttle: {{maximum_available: 200, restore_rate: 200}}\n",
        orders_yaml(6)
    );
    let (sandbox, clock) = sandbox(&yaml).await;
    let source = source(&sandbox, &clock, SANDBOX_ACCESS_TOKEN, 2);
    let started = std::time::Instant::now();
    let ids = list_all(&source, window(Duration::days(1), Duration::zero())).await;
    let took = started.elapsed();
    assert_eq!(ids.len(), 6);
    assert_eq!(sandbox.shopify_throttled(), 0, "never throttled");
    assert_eq!(graphql_calls(&sandbox).len(), 3, "no extra calls");
    assert!(
        took >= StdDuration::from_millis(150),
        "did not wait: {took:?}"
    );
}

#[tokio::test]
async fn a_refused_token_is_a_credentials_error() {
    let (sandbox, clock) = sandbox(&orders_yaml(1)).await;
    let source = source(&sandbox, &clock, "shpat_wrong", 10);
    let Err(error) = source
        .orders_page(window(Duration::days(1), Duration::zero()), None)
        .await
    else {
        panic!("a wrong token was accepted");
    };
    assert!(error.is_credentials(), "{error}");
    assert!(!error.to_string().contains("shpat_wrong"));
    assert_eq!(graphql_calls(&sandbox), vec![401], "not retried");
}

#[tokio::test]
async fn server_errors_are_retried() {
    let (sandbox, clock) = sandbox(&orders_yaml(2)).await;
    sandbox.inject(Fault::status("shopify.graphql", 503));
    let source = source(&sandbox, &clock, SANDBOX_ACCESS_TOKEN, 10);
    let ids = list_all(&source, window(Duration::days(1), Duration::zero())).await;
    assert_eq!(ids.len(), 2);
    assert_eq!(graphql_calls(&sandbox), vec![503, 200]);
}

#[tokio::test]
async fn a_malformed_order_is_skipped_and_the_others_stored() {
    let yaml = r##"
shopify:
  orders:
    - {id: 1, name: "#1001", created: 3h, line_items: [{title: A, quantity: 1, price: "1.00"}]}
    - id: 2
      name: "#1002"
      created: 2h
      line_items: [{title: B, quantity: 1, price: "1.00"}]
      raw_overrides: {createdAt: "yesterday"}
    - {id: 3, name: "#1003", created: 1h, financial_status: PENDING, line_items: [{title: C, quantity: 1, price: "1.00"}]}
"##;
    let (sandbox, clock) = sandbox(yaml).await;
    let source = source(&sandbox, &clock, SANDBOX_ACCESS_TOKEN, 10);
    let test_store = match nightdesk::store::testing::sqlite().await {
        Ok(s) => s,
        Err(e) => panic!("store: {e}"),
    };
    let store = test_store.store.clone();
    let report = match poll_once(&source, store.as_ref(), t0()).await {
        Ok(r) => r,
        Err(e) => panic!("poll: {e}"),
    };
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.skipped[0].0, "#1002");
    assert!(
        report.skipped[0].1.contains("createdAt"),
        "{:?}",
        report.skipped
    );
    assert_eq!(report.ingest.stored, 2);
    for (id, status) in [
        ("#1001", OrderStatus::Unshipped),
        ("#1003", OrderStatus::Pending),
    ] {
        match store.order(SalesChannel::Shopify, id).await {
            Ok(Some(stored)) => {
                assert_eq!(stored.order.status, status, "{id}");
                assert_eq!(stored.order.items.len(), 1, "{id}");
            }
            other => panic!("{id} not stored: {other:?}"),
        }
    }
    assert!(matches!(
        store.order(SalesChannel::Shopify, "#1002").await,
        Ok(None)
    ));
}

const ELODIE: &str = r##"
shopify:
  currency: EUR
  orders:
    - id: 5820011
      name: "#10482"
      created: 6d
      updated: 4d
      financial_status: PAID
      fulfillment_status: FULFILLED
      email: elodie.fournier@example.fr
      customer: {email: elodie.fournier@example.fr, first_name: Élodie, last_name: Fournier}
      shipping_address: {name: Élodie Fournier, zip: "69002", city: Lyon, country_code: FR}
      line_items:
        - {sku: RC-ESP-1KG, title: Espresso Ridgeline 1 kg, quantity: 2, fulfilled: 2, price: "21.25"}
      fulfillments:
        - {company: DHL Express, number: "1234567890", url: "https://www.dhl.com/fr-en/home/tracking.html?tracking-id=1234567890"}
    - id: 5820012
      name: "#10483"
      created: 2d
      financial_status: PAID
      fulfillment_status: PARTIALLY_FULFILLED
      customer: {first_name: Sam}
      line_items:
        - {title: Grinder, quantity: 1, fulfilled: 1, price: "80.00"}
        - {title: Filters, quantity: 3, price: "4.00"}
    - id: 5820013
      name: "#10484"
      created: 3d
      updated: 1d
      cancelled: 1d
      cancel_reason: CUSTOMER
      financial_status: REFUNDED
      line_items: [{title: Mug, quantity: 1, price: "9.00"}]
"##;

#[tokio::test]
async fn orders_carry_status_customer_gid_and_parcels() {
    let (sandbox, clock) = sandbox(ELODIE).await;
    let source = source(&sandbox, &clock, SANDBOX_ACCESS_TOKEN, 10);
    let page = match source
        .orders_page(window(Duration::days(7), Duration::zero()), None)
        .await
    {
        Ok(p) => p,
        Err(e) => panic!("orders_page: {e}"),
    };
    assert!(page.skipped.is_empty(), "{:?}", page.skipped);
    let Some(elodie) = page.orders.iter().find(|o| o.id == "#10482") else {
        panic!("#10482 missing");
    };
    assert_eq!(elodie.status, OrderStatus::Shipped);
    assert_eq!(elodie.fulfillment, Some(Fulfillment::Mfn));
    assert_eq!(elodie.purchase_date, t0() - Duration::days(6));
    assert_eq!(elodie.last_update, t0() - Duration::days(4));
    assert_eq!(
        elodie
            .total
            .as_ref()
            .map(|m| (m.amount.as_str(), m.currency.as_str())),
        Some(("42.50", "EUR"))
    );
    assert_eq!(
        elodie.customer,
        Customer {
            email: Some("elodie.fournier@example.fr".into()),
            name: Some("Élodie Fournier".into()),
            postcode: Some("69002".into()),
            city: Some("Lyon".into()),
            country: Some("FR".into()),
        }
    );
    assert_eq!(
        elodie.details.seller_order_id.as_deref(),
        Some("gid://shopify/Order/5820011")
    );
    let parcels = source.parcels("#10482");
    assert_eq!(parcels.len(), 1);
    assert_eq!(parcels[0].tracking_number, "1234567890");
    assert_eq!(parcels[0].carrier.as_deref(), Some("DHL Express"));

    let status_of = |id: &str| page.orders.iter().find(|o| o.id == id).map(|o| o.status);
    assert_eq!(status_of("#10483"), Some(OrderStatus::PartiallyShipped));
    assert_eq!(status_of("#10484"), Some(OrderStatus::Canceled));

    // On demand, by gid: the same order, and nothing for an unknown one.
    match source.order_snapshot("gid://shopify/Order/5820013").await {
        Ok(Some(snapshot)) => {
            assert_eq!(snapshot.cancelled_at, Some(t0() - Duration::days(1)));
            assert_eq!(snapshot.cancel_reason.as_deref(), Some("CUSTOMER"));
        }
        other => panic!("snapshot: {other:?}"),
    }
    assert!(matches!(
        source.order_snapshot("gid://shopify/Order/1").await,
        Ok(None)
    ));
}

#[tokio::test]
async fn orders_with_more_than_fifty_lines_get_all_their_items() {
    let mut yaml = String::from(
        "shopify:\n  orders:\n    - id: 77\n      name: \"#2001\"\n      created: 1h\n      line_items:\n",
    );
    for i in 0..55 {
        yaml.push_str(&format!(
            "        - {{sku: S{i}, title: Item {i}, quantity: 1, price: \"1.00\"}}\n"
        ));
    }
    let (sandbox, clock) = sandbox(&yaml).await;
    let source = source(&sandbox, &clock, SANDBOX_ACCESS_TOKEN, 10);
    let page = match source
        .orders_page(window(Duration::days(1), Duration::zero()), None)
        .await
    {
        Ok(p) => p,
        Err(e) => panic!("orders_page: {e}"),
    };
    let Some(order) = page.orders.first() else {
        panic!("no order");
    };
    assert_eq!(order.items.len(), 50);
    let items = match source.order_items(order).await {
        Ok(items) => items,
        Err(e) => panic!("order_items: {e}"),
    };
    assert_eq!(items.len(), 55);
    let skus: std::collections::HashSet<_> = items.iter().filter_map(|i| i.sku.clone()).collect();
    assert_eq!(skus.len(), 55, "no line twice");
}

#[tokio::test]
async fn the_sandbox_refunds_once_per_idempotency_key_and_cancels_once() {
    let (sandbox, clock) = sandbox(ELODIE).await;
    let source = source(&sandbox, &clock, SANDBOX_ACCESS_TOKEN, 10);
    let refund = "mutation Refund($input: RefundInput!, $key: String!) { \
        refundCreate(input: $input) @idempotent(key: $key) { \
        refund { id totalRefundedSet { shopMoney { amount currencyCode } } } \
        userErrors { field message } } }";
    let variables = serde_json::json!({
        "key": "nightdesk-refund-1",
        "input": { "orderId": "gid://shopify/Order/5820012", "transactions": [
            { "orderId": "gid://shopify/Order/5820012", "kind": "REFUND",
              "gateway": "shopify_payments", "amount": "4.00" } ] },
    });
    let mut ids = Vec::new();
    for _ in 0..2 {
        let data: serde_json::Value = match source
            .api()
            .execute("refundCreate", refund, variables.clone())
            .await
        {
            Ok(d) => d,
            Err(e) => panic!("refundCreate: {e}"),
        };
        assert_eq!(data["refundCreate"]["userErrors"], serde_json::json!([]));
        ids.push(data["refundCreate"]["refund"]["id"].clone());
    }
    assert_eq!(ids[0], ids[1], "the same key answers the same refund");
    let refunds = sandbox.shopify_refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].amount_cents, 400);

    let cancel = "mutation Cancel($orderId: ID!, $reason: OrderCancelReason!, $refund: Boolean!, \
        $restock: Boolean!) { orderCancel(orderId: $orderId, reason: $reason, refund: $refund, \
        restock: $restock) { job { id done } orderCancelUserErrors { field message code } } }";
    let variables = serde_json::json!({ "orderId": "gid://shopify/Order/5820012",
        "reason": "CUSTOMER", "refund": true, "restock": true });
    let first: serde_json::Value = match source
        .api()
        .execute("orderCancel", cancel, variables.clone())
        .await
    {
        Ok(d) => d,
        Err(e) => panic!("orderCancel: {e}"),
    };
    assert_eq!(
        first["orderCancel"]["orderCancelUserErrors"],
        serde_json::json!([])
    );
    assert!(first["orderCancel"]["job"]["id"].is_string());
    match source.order_snapshot("gid://shopify/Order/5820012").await {
        Ok(Some(s)) => {
            assert_eq!(s.cancelled_at, Some(t0()));
            assert_eq!(s.order.status, OrderStatus::Canceled);
        }
        other => panic!("snapshot: {other:?}"),
    }
    let again: serde_json::Value =
        match source.api().execute("orderCancel", cancel, variables).await {
            Ok(d) => d,
            Err(e) => panic!("orderCancel again: {e}"),
        };
    assert_eq!(
        again["orderCancel"]["orderCancelUserErrors"][0]["message"],
        "Order has already been cancelled"
    );
}
