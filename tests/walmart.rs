//! The Walmart connector (`sources::walmart`) against the sandbox's Walmart
//! (`sandbox::marketplaces::walmart`), each written from the contract on its own:
//! nextCursor paging, the lastModified window, tokens that expire mid-run, refused
//! credentials, the required headers, a malformed order among good ones, throttling,
//! the status table, the customer and the lines' tracking.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use nightdesk::clock::{ManualClock, SharedClock};
use nightdesk::http::RetryPolicy;
use nightdesk::model::{OrderStatus, SalesChannel};
use nightdesk::sandbox::marketplaces::walmart::{
    WalmartScenario, WalmartScenarioAddress, WalmartScenarioLine, WalmartScenarioOrder,
    WalmartScenarioTracking,
};
use nightdesk::sandbox::{Amount, Fault, JournalEntry, Sandbox, SandboxOptions, Scenario, When};
use nightdesk::schedule::Schedule;
use nightdesk::sources::walmart::{WalmartSettings, WalmartSource};
use nightdesk::sources::{self, OrderSource, OrdersPage, PollWindow, SourceError};
use secrecy::SecretString;
use url::Url;

const CLIENT_ID: &str = "sandbox-walmart-client-id";
const CLIENT_SECRET: &str = "sandbox-walmart-client-secret";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn line(sku: &str, status: &str) -> WalmartScenarioLine {
    WalmartScenarioLine {
        sku: sku.to_owned(),
        product_name: format!("Product {sku}"),
        quantity: 1,
        price: Amount::from_cents(1999),
        tax: Amount::from_cents(160),
        shipping: Amount::from_cents(0),
        status: status.to_owned(),
        cancelled_quantity: 0,
        cancellation_reason: None,
        tracking: None,
        status_date: None,
        intent_to_cancel: false,
    }
}

fn shipped(sku: &str, number: &str) -> WalmartScenarioLine {
    WalmartScenarioLine {
        tracking: Some(WalmartScenarioTracking {
            carrier: "USPS".to_owned(),
            number: number.to_owned(),
            url: None,
            shipped: When::hours_ago(20),
        }),
        ..line(sku, "Shipped")
    }
}

/// An order placed `ordered` ago and last modified `modified` ago.
fn order(
    po: &str,
    ordered: When,
    modified: When,
    lines: Vec<WalmartScenarioLine>,
) -> WalmartScenarioOrder {
    WalmartScenarioOrder {
        purchase_order_id: po.to_owned(),
        customer_order_id: format!("20{po}"),
        order_date: ordered,
        last_modified: Some(modified),
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

/// A plain unshipped order modified `minutes` ago.
fn recent(po: &str, minutes: i64) -> WalmartScenarioOrder {
    order(
        po,
        When::minutes_ago(minutes + 60),
        When::minutes_ago(minutes),
        vec![line("SKU-1", "Created")],
    )
}

struct Run {
    sandbox: Sandbox,
    clock: ManualClock,
}

async fn start(orders: Vec<WalmartScenarioOrder>) -> Run {
    let clock = ManualClock::new(t0());
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let scenario = Scenario {
        walmart: WalmartScenario {
            orders,
            ..WalmartScenario::default()
        },
        ..Scenario::default()
    };
    let shared: SharedClock = Arc::new(clock.clone());
    match Sandbox::start(listener, SandboxOptions::new(scenario, shared)).await {
        Ok(sandbox) => Run { sandbox, clock },
        Err(e) => panic!("sandbox: {e}"),
    }
}

impl Run {
    fn settings(&self, secret: &str, page_size: u32) -> WalmartSettings {
        let base = match Url::parse(&format!("{}/walmart", self.sandbox.base_url())) {
            Ok(url) => url,
            Err(e) => panic!("base url: {e}"),
        };
        let schedule = match Schedule::parse("*/5 * * * *") {
            Ok(s) => s,
            Err(e) => panic!("schedule: {e}"),
        };
        WalmartSettings {
            base_url: base,
            client_id: CLIENT_ID.to_owned(),
            client_secret: SecretString::from(secret.to_owned()),
            account: "us-main".to_owned(),
            schedule,
            page_size,
            service_name: "Walmart Marketplace".to_owned(),
        }
    }

    fn source_with(&self, secret: &str, page_size: u32) -> WalmartSource {
        let clock: SharedClock = Arc::new(self.clock.clone());
        match WalmartSource::new(self.settings(secret, page_size), clock, RetryPolicy::fast()) {
            Ok(source) => source,
            Err(e) => panic!("source: {e}"),
        }
    }

    fn source(&self) -> WalmartSource {
        self.source_with(CLIENT_SECRET, 100)
    }

    fn journal(&self, operation: &str) -> Vec<JournalEntry> {
        self.sandbox
            .journal()
            .into_iter()
            .filter(|e| e.operation == operation)
            .collect()
    }
}

fn window(from: DateTime<Utc>, to: DateTime<Utc>) -> PollWindow {
    PollWindow { from, to }
}

fn last_day() -> PollWindow {
    window(t0() - Duration::days(1), t0())
}

/// Every page of `window`, in order.
async fn all_pages(source: &WalmartSource, window: PollWindow) -> Vec<OrdersPage> {
    let mut pages = Vec::new();
    let mut token = None;
    loop {
        let page = match source.orders_page(window, token).await {
            Ok(page) => page,
            Err(e) => panic!("orders_page: {e}"),
        };
        token = page.next_token.clone();
        pages.push(page);
        if token.is_none() || pages.len() > 20 {
            return pages;
        }
    }
}

fn ids(pages: &[OrdersPage]) -> Vec<String> {
    let mut ids: Vec<String> = pages
        .iter()
        .flat_map(|p| p.orders.iter().map(|o| o.id.clone()))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn pages_follow_next_cursor_until_the_last() {
    let orders = (1..=5)
        .map(|n| recent(&format!("100000000000{n}"), 10 * n))
        .collect();
    let run = start(orders).await;
    let source = run.source_with(CLIENT_SECRET, 2);
    let pages = all_pages(&source, last_day()).await;
    assert_eq!(pages.len(), 3);
    assert_eq!(
        pages.iter().map(|p| p.orders.len()).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    assert_eq!(
        ids(&pages),
        (1..=5)
            .map(|n| format!("100000000000{n}"))
            .collect::<Vec<_>>()
    );
    let calls = run.journal("walmart.getAllOrders");
    assert_eq!(calls.len(), 3);
    assert!(calls[0].query.contains("limit=2"), "{}", calls[0].query);
    // The later pages are called with the cursor's query string as Walmart gave it.
    for call in &calls[1..] {
        assert!(
            call.query.contains("hasMoreElements=true"),
            "{}",
            call.query
        );
        assert!(
            call.query.contains("lastModifiedStartDate"),
            "{}",
            call.query
        );
    }
    assert!(calls[2].query.contains("soIndex=4"), "{}", calls[2].query);
}

#[tokio::test]
async fn the_last_modified_window_is_honoured() {
    let old_but_changed = order(
        "2000000000003",
        When::days_ago(20),
        When::minutes_ago(30),
        vec![line("SKU-3", "Acknowledged")],
    );
    let run = start(vec![
        recent("2000000000001", 30),
        recent("2000000000002", 60 * 26),
        old_but_changed,
        recent("2000000000004", 60 * 3),
    ])
    .await;
    let source = run.source();
    let pages = all_pages(&source, window(t0() - Duration::hours(2), t0())).await;
    // Modified inside the window only, including an order created 20 days ago (outside
    // Walmart's default createdStartDate of 7 days).
    assert_eq!(ids(&pages), vec!["2000000000001", "2000000000003"]);
    let pages = all_pages(
        &source,
        window(t0() - Duration::hours(27), t0() - Duration::hours(2)),
    )
    .await;
    assert_eq!(ids(&pages), vec!["2000000000002", "2000000000004"]);
    let first = &run.journal("walmart.getAllOrders")[0];
    assert!(
        first
            .query
            .contains("lastModifiedStartDate=2026-11-22T10%3A00%3A00Z")
            && first
                .query
                .contains("lastModifiedEndDate=2026-11-22T12%3A00%3A00Z")
            && first.query.contains("createdStartDate="),
        "{}",
        first.query
    );
}

#[tokio::test]
async fn an_expired_token_is_fetched_again_once_and_the_poll_goes_on() {
    let orders = (1..=4)
        .map(|n| recent(&format!("300000000000{n}"), 10 * n))
        .collect();
    let run = start(orders).await;
    let source = run.source_with(CLIENT_SECRET, 2);
    let first = match source.orders_page(last_day(), None).await {
        Ok(page) => page,
        Err(e) => panic!("page 1: {e}"),
    };
    assert_eq!(run.sandbox.walmart_tokens_issued(), 1);
    // Walmart drops the token before it said it would expire: one 401, one new token.
    run.sandbox.expire_walmart_tokens();
    let second = match source.orders_page(last_day(), first.next_token).await {
        Ok(page) => page,
        Err(e) => panic!("page 2 after expiry: {e}"),
    };
    assert_eq!(second.orders.len(), 2);
    assert_eq!(run.sandbox.walmart_tokens_issued(), 2);
    assert_eq!(run.journal("walmart.token").len(), 2);
    let statuses: Vec<u16> = run
        .journal("walmart.getAllOrders")
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses, vec![200, 401, 200]);
    // A token near its 15 minutes is renewed before use, without a 401.
    run.clock.advance(Duration::minutes(15));
    if let Err(e) = source.orders_page(last_day(), None).await {
        panic!("after 15 minutes: {e}");
    }
    assert_eq!(run.sandbox.walmart_tokens_issued(), 3);
    assert_eq!(
        run.journal("walmart.getAllOrders")
            .iter()
            .filter(|e| e.status == 401)
            .count(),
        1
    );
}

#[tokio::test]
async fn refused_credentials_are_a_credentials_error() {
    let run = start(vec![recent("4000000000001", 10)]).await;
    let source = run.source_with("not-the-secret", 100);
    match source.orders_page(last_day(), None).await {
        Err(error) => {
            assert!(error.is_credentials(), "{error}");
            assert!(!error.to_string().contains("not-the-secret"), "{error}");
        }
        Ok(_) => panic!("a wrong secret was accepted"),
    }
    // Not retried: no retry gets past refused credentials.
    assert_eq!(run.journal("walmart.token").len(), 1);
    assert!(run.journal("walmart.getAllOrders").is_empty());
}

#[tokio::test]
async fn the_required_headers_are_sent_and_a_missing_one_is_refused() {
    let run = start(vec![recent("5000000000001", 10)]).await;
    let source = run.source();
    if let Err(e) = source.orders_page(last_day(), None).await {
        panic!("poll: {e}");
    }
    let token_call = &run.journal("walmart.token")[0];
    let call = &run.journal("walmart.getAllOrders")[0];
    assert_eq!(call.status, 200);
    for entry in [token_call, call] {
        assert_eq!(
            entry.headers.get("wm_svc.name").map(String::as_str),
            Some("Walmart Marketplace")
        );
        assert!(
            entry
                .headers
                .get("wm_qos.correlation_id")
                .is_some_and(|id| id.len() == 36)
        );
    }
    assert_ne!(
        token_call.headers.get("wm_qos.correlation_id"),
        call.headers.get("wm_qos.correlation_id"),
        "a fresh correlation id per request"
    );
    assert!(call.headers.contains_key("wm_sec.access_token"));

    // Without WM_SVC.NAME the sandbox refuses the call, in Walmart's error shape.
    let http = reqwest::Client::new();
    let token: serde_json::Value = match http
        .post(format!("{}/walmart/v3/token", run.sandbox.base_url()))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("WM_SVC.NAME", "test")
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
    let access = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!access.is_empty(), "{token}");
    let refused = match http
        .get(format!("{}/walmart/v3/orders", run.sandbox.base_url()))
        .header("WM_SEC.ACCESS_TOKEN", access)
        .header(
            "WM_QOS.CORRELATION_ID",
            "b3261d2d-028a-4ef7-8602-633c23200af6",
        )
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => panic!("orders: {e}"),
    };
    assert_eq!(refused.status().as_u16(), 400);
    let body: serde_json::Value = refused.json().await.unwrap_or_default();
    assert_eq!(body["errors"]["error"][0]["field"], "WM_SVC.NAME", "{body}");
}

#[tokio::test]
async fn a_malformed_order_is_skipped_and_the_others_are_stored() {
    let mut broken = recent("6000000000002", 20);
    broken.malformed = true;
    let run = start(vec![
        recent("6000000000001", 10),
        broken,
        recent("6000000000003", 30),
    ])
    .await;
    let source = run.source();
    let store = match nightdesk::store::testing::sqlite().await {
        Ok(store) => store,
        Err(e) => panic!("store: {e}"),
    };
    let report = match sources::poll_once(&source, store.store.as_ref(), t0()).await {
        Ok(report) => report,
        Err(e) => panic!("poll: {e}"),
    };
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.skipped[0].0, "6000000000002");
    assert!(
        report.skipped[0].1.contains("malformed"),
        "{:?}",
        report.skipped
    );
    assert_eq!(report.ingest.stored, 2);
    for id in ["6000000000001", "6000000000003"] {
        match store.store.order(SalesChannel::Walmart, id).await {
            Ok(Some(stored)) => {
                assert_eq!(stored.order.account, "us-main");
                assert_eq!(stored.order.items.len(), 1);
            }
            other => panic!("{id}: {other:?}"),
        }
    }
    // Items came with the listing: no getAnOrder per order.
    assert!(run.journal("walmart.getAnOrder").is_empty());
    assert_eq!(source.key(), "walmart/us-main");
}

#[tokio::test]
async fn a_throttled_listing_is_retried_and_a_bad_request_is_not() {
    let run = start(vec![recent("7000000000001", 10)]).await;
    let source = run.source();
    run.sandbox
        .inject(Fault::status("walmart.getAllOrders", 429).retry_after(0));
    match source.orders_page(last_day(), None).await {
        Ok(page) => assert_eq!(page.orders.len(), 1),
        Err(e) => panic!("after a 429: {e}"),
    }
    let statuses: Vec<u16> = run
        .journal("walmart.getAllOrders")
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses, vec![429, 200]);

    run.sandbox
        .inject(Fault::status("walmart.getAllOrders", 500).times(2));
    if let Err(e) = source.orders_page(last_day(), None).await {
        panic!("after two 500s: {e}");
    }

    run.sandbox
        .inject(Fault::status("walmart.getAllOrders", 400));
    let before = run.journal("walmart.getAllOrders").len();
    match source.orders_page(last_day(), None).await {
        Err(SourceError::Upstream { error, .. }) => {
            assert!(!error.is_retryable(), "{error}");
        }
        other => panic!("a 400 must fail: {other:?}"),
    }
    assert_eq!(run.journal("walmart.getAllOrders").len(), before + 1);

    // An unknown order is a 404 answered once, and is `None`.
    match source.order("7999999999999").await {
        Ok(None) => {}
        other => panic!("unknown order: {other:?}"),
    }
    assert_eq!(run.journal("walmart.getAnOrder").len(), 1);
}

#[tokio::test]
async fn line_statuses_map_to_the_order_status() {
    let with = |po: &str, lines: Vec<WalmartScenarioLine>| {
        order(po, When::hours_ago(5), When::minutes_ago(10), lines)
    };
    let partly_cancelled = WalmartScenarioLine {
        quantity: 2,
        cancelled_quantity: 1,
        cancellation_reason: Some("SELLER_CANCEL_OUT_OF_STOCK".to_owned()),
        ..shipped("B", "9400100000000000000002")
    };
    let table = vec![
        (
            with("8000000000001", vec![line("A", "Created")]),
            OrderStatus::Unshipped,
        ),
        (
            with("8000000000002", vec![line("A", "Acknowledged")]),
            OrderStatus::Unshipped,
        ),
        (
            with(
                "8000000000003",
                vec![
                    shipped("A", "9400100000000000000001"),
                    line("B", "Acknowledged"),
                ],
            ),
            OrderStatus::PartiallyShipped,
        ),
        (
            with(
                "8000000000004",
                vec![
                    shipped("A", "9400100000000000000003"),
                    line("B", "Delivered"),
                ],
            ),
            OrderStatus::Shipped,
        ),
        (
            with("8000000000005", vec![partly_cancelled]),
            OrderStatus::Shipped,
        ),
        (
            with(
                "8000000000006",
                vec![line("A", "Cancelled"), line("B", "Cancelled")],
            ),
            OrderStatus::Canceled,
        ),
        (
            with(
                "8000000000007",
                vec![line("A", "Cancelled"), line("B", "Created")],
            ),
            OrderStatus::Unshipped,
        ),
    ];
    let run = start(table.iter().map(|(o, _)| o.clone()).collect()).await;
    let pages = all_pages(&run.source(), last_day()).await;
    let listed: Vec<_> = pages.iter().flat_map(|p| p.orders.iter()).collect();
    assert_eq!(listed.len(), table.len());
    for (scenario, want) in &table {
        let Some(found) = listed.iter().find(|o| o.id == scenario.purchase_order_id) else {
            panic!("{} not listed", scenario.purchase_order_id)
        };
        assert_eq!(found.status, *want, "{}", found.id);
    }
    let Some(partial) = listed.iter().find(|o| o.id == "8000000000005") else {
        panic!("8000000000005 not listed")
    };
    assert_eq!(
        (
            partial.items[0].quantity_ordered,
            partial.items[0].quantity_shipped
        ),
        (2, 1)
    );
}

#[tokio::test]
async fn the_customer_is_filled_without_the_relay_address_and_tracking_is_kept() {
    let mut shipped_order = order(
        "9000000000001",
        When::days_ago(2),
        When::hours_ago(1),
        vec![
            shipped("MUG-1", "9400111899223197428490"),
            WalmartScenarioLine {
                shipping: Amount::from_cents(499),
                ..line("TEA-2", "Acknowledged")
            },
        ],
    );
    shipped_order.customer_email =
        Some("ABCDEF0123456789ABCDEF0123456789@relay.walmart.com".into());
    let run = start(vec![shipped_order]).await;
    let source = run.source();
    let pages = all_pages(&source, last_day()).await;
    let Some(order) = pages.first().and_then(|p| p.orders.first()) else {
        panic!("nothing listed")
    };
    assert_eq!(order.channel, SalesChannel::Walmart);
    assert_eq!(order.customer.email, None);
    assert_eq!(order.customer.name.as_deref(), Some("Ann Lee"));
    assert_eq!(order.customer.postcode.as_deref(), Some("72712"));
    assert_eq!(order.customer.city.as_deref(), Some("Bentonville"));
    assert_eq!(order.customer.country.as_deref(), Some("US"));
    assert_eq!(
        order.details.seller_order_id.as_deref(),
        Some("209000000000001")
    );
    assert_eq!(order.status, OrderStatus::PartiallyShipped);
    // 2 × (19.99 + 1.60) + 4.99 shipping.
    assert_eq!(
        order.total.as_ref().map(|m| m.amount.as_str()),
        Some("48.17")
    );
    assert_eq!(
        order.items[1]
            .details
            .shipping_price
            .as_ref()
            .map(|m| m.amount.as_str()),
        Some("4.99")
    );
    let listed = source.listed_parcels("9000000000001");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].carrier.as_deref(), Some("USPS"));
    assert_eq!(listed[0].tracking_number, "9400111899223197428490");
    assert_eq!(listed[0].line_number, "1");
    assert!(
        listed[0]
            .tracking_url
            .as_deref()
            .is_some_and(|u| u.contains("9400111899223197428490"))
    );
    let fresh = match source.order_parcels("9000000000001").await {
        Ok(parcels) => parcels,
        Err(e) => panic!("getAnOrder: {e}"),
    };
    assert_eq!(fresh, listed);
}
