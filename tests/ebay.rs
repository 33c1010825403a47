//! The eBay connector (`sources::ebay`) against the sandbox's eBay
//! (`sandbox::marketplaces::ebay`), each written from the Sell Fulfillment contract on
//! its own: offset paging, the lastmodifieddate window, OAuth refresh and refusal, a
//! malformed order skipped, throttling retried, the status table, the customer.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use nightdesk::clock::{ManualClock, SharedClock};
use nightdesk::http::{RetryPolicy, UpstreamError};
use nightdesk::model::{OrderStatus, SalesChannel};
use nightdesk::sandbox::marketplaces::ebay::{
    CancelState, EbayAddress, EbayBuyer, EbayItem, EbayOrder, EbayScenario, EbayShipment,
    FulfillmentStatus, PaymentStatus, REFRESH_TOKEN,
};
use nightdesk::sandbox::{Amount, Fault, Sandbox, SandboxOptions, Scenario, When};
use nightdesk::schedule::Schedule;
use nightdesk::sources::ebay::{EbaySettings, EbaySource};
use nightdesk::sources::{self, OrderSource, PollWindow, SourceError, WindowPolicy};
use nightdesk::store::testing::{self, TestStore};
use secrecy::SecretString;

const CLIENT_ID: &str = "sandbox-ebay-client-id";
const CLIENT_SECRET: &str = "sandbox-ebay-client-secret";

fn t0() -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z") {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => panic!("t0: {e}"),
    }
}

struct Run {
    sandbox: Sandbox,
    clock: ManualClock,
}

fn item(id: &str, cents: i64) -> EbayItem {
    EbayItem {
        id: id.to_owned(),
        sku: Some(format!("SKU-{id}")),
        title: format!("Item {id}"),
        quantity: 1,
        price: Amount::from_cents(cents),
    }
}

/// An order created `hours_ago` + 1 hours ago and modified `hours_ago` ago.
fn order(id: &str, hours_ago: i64) -> EbayOrder {
    EbayOrder {
        last_modified: Some(When::hours_ago(hours_ago)),
        buyer: EbayBuyer {
            username: format!("buyer_{hours_ago}"),
            name: Some("Some Buyer".into()),
            email: None,
        },
        ..EbayOrder::new(
            id,
            When::hours_ago(hours_ago + 1),
            vec![item(&format!("1{hours_ago:04}"), 1299)],
        )
    }
}

async fn start(orders: Vec<EbayOrder>) -> Run {
    let clock = ManualClock::new(t0());
    let scenario = Scenario {
        ebay: EbayScenario {
            orders,
            ..EbayScenario::default()
        },
        ..Scenario::default()
    };
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let shared: SharedClock = Arc::new(clock.clone());
    match Sandbox::start(listener, SandboxOptions::new(scenario, shared)).await {
        Ok(sandbox) => Run { sandbox, clock },
        Err(e) => panic!("sandbox: {e}"),
    }
}

impl Run {
    fn source_with(&self, refresh_token: &str, page_size: u32) -> EbaySource {
        let base = match url::Url::parse(&format!("{}/ebay", self.sandbox.base_url())) {
            Ok(u) => u,
            Err(e) => panic!("base url: {e}"),
        };
        let schedule = match Schedule::parse("*/5 * * * *") {
            Ok(s) => s,
            Err(e) => panic!("schedule: {e}"),
        };
        let settings = EbaySettings {
            base_url: base,
            client_id: CLIENT_ID.to_owned(),
            client_secret: SecretString::from(CLIENT_SECRET.to_owned()),
            refresh_token: SecretString::from(refresh_token.to_owned()),
            account: "main".to_owned(),
            schedule,
            page_size,
            window: WindowPolicy::default(),
        };
        let clock: SharedClock = Arc::new(self.clock.clone());
        match EbaySource::new(settings, clock, RetryPolicy::fast()) {
            Ok(s) => s,
            Err(e) => panic!("source: {e}"),
        }
    }

    fn source(&self, page_size: u32) -> EbaySource {
        self.source_with(REFRESH_TOKEN, page_size)
    }

    fn calls(&self, operation: &str) -> Vec<String> {
        self.sandbox
            .journal()
            .into_iter()
            .filter(|e| e.operation == operation)
            .map(|e| e.query)
            .collect()
    }
}

async fn store() -> TestStore {
    match testing::sqlite().await {
        Ok(s) => s,
        Err(e) => panic!("store: {e}"),
    }
}

fn last_day() -> PollWindow {
    PollWindow {
        from: t0() - Duration::days(1),
        to: t0() - Duration::minutes(3),
    }
}

#[tokio::test]
async fn paging_reads_every_page_by_offset() {
    let orders = (1..=5)
        .map(|n| order(&format!("12-00000-0000{n}"), n))
        .collect();
    let run = start(orders).await;
    let source = run.source(2);
    let store = store().await;
    let report = match sources::poll_once(&source, store.store.as_ref(), t0()).await {
        Ok(r) => r,
        Err(e) => panic!("poll: {e}"),
    };
    assert_eq!(report.fetched, 5);
    assert_eq!(report.ingest.stored, 5, "{report:?}");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let offsets: Vec<String> = run
        .calls("ebay.getOrders")
        .iter()
        .map(|q| {
            q.split('&')
                .find(|p| p.starts_with("offset="))
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(offsets, ["offset=0", "offset=2", "offset=4"]);
    for n in 1..=5 {
        let id = format!("12-00000-0000{n}");
        let stored = store.store.order(SalesChannel::Ebay, &id).await;
        let Ok(Some(stored)) = stored else {
            panic!("{id} not stored: {stored:?}")
        };
        assert_eq!(stored.order.items.len(), 1, "{id}: items inline");
        assert_eq!(stored.order.channel, SalesChannel::Ebay);
    }
    assert_eq!(source.key(), "ebay/main");
}

#[tokio::test]
async fn the_window_filter_is_honoured() {
    // Modified 2 h, 30 h and 50 h ago; the window is the last day.
    let run = start(vec![
        order("12-00000-00001", 2),
        order("12-00000-00002", 30),
        order("12-00000-00003", 50),
    ])
    .await;
    let page = match run.source(50).orders_page(last_day(), None).await {
        Ok(p) => p,
        Err(e) => panic!("page: {e}"),
    };
    let ids: Vec<&str> = page.orders.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["12-00000-00001"]);
    assert_eq!(page.next_token, None);
    let queries = run.calls("ebay.getOrders");
    assert_eq!(queries.len(), 1);
    // `[`, `]` and `:` percent-encoded.
    assert!(
        queries[0].contains("filter=lastmodifieddate%3A%5B2026-11-21T12%3A00%3A00.000Z..2026-11-22T11%3A57%3A00.000Z%5D"),
        "{}",
        queries[0]
    );
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_poll_succeeds() {
    let run = start(vec![order("12-00000-00001", 2)]).await;
    let source = run.source(50);
    assert!(source.orders_page(last_day(), None).await.is_ok());
    run.sandbox.ebay_expire_tokens();
    let page = source.orders_page(last_day(), None).await;
    assert!(page.as_ref().is_ok_and(|p| p.orders.len() == 1), "{page:?}");
    assert_eq!(run.sandbox.ebay_tokens_issued(), 2);
    assert_eq!(run.calls("ebay.getOrders").len(), 3, "401, then the retry");
    // A token near its end is renewed before use, not after a 401.
    run.clock.advance(Duration::seconds(7200 - 30));
    assert!(source.orders_page(last_day(), None).await.is_ok());
    assert_eq!(run.sandbox.ebay_tokens_issued(), 3);
    assert_eq!(run.calls("ebay.getOrders").len(), 4);
}

#[tokio::test]
async fn a_refused_refresh_token_is_a_credentials_error() {
    let run = start(vec![order("12-00000-00001", 2)]).await;
    let wrong = run.source_with("not-the-refresh-token", 50);
    let Err(error) = wrong.orders_page(last_day(), None).await else {
        panic!("a wrong refresh token was accepted")
    };
    assert!(error.is_credentials(), "{error}");
    assert!(error.to_string().contains("invalid_grant"), "{error}");
    assert!(!error.to_string().contains("not-the-refresh-token"));
    assert_eq!(run.calls("ebay.token").len(), 1, "no retry of a refusal");

    run.sandbox.ebay_revoke_refresh_token(true);
    let revoked = run.source(50).orders_page(last_day(), None).await;
    assert!(revoked.as_ref().is_err_and(SourceError::is_credentials));
}

#[tokio::test]
async fn a_malformed_order_is_skipped_and_the_others_stored() {
    let mut broken = order("12-00000-00002", 3);
    broken.raw_overrides = serde_json::from_str(r#"{"creationDate": "yesterday"}"#).ok();
    let run = start(vec![
        order("12-00000-00001", 2),
        broken,
        order("12-00000-00003", 4),
    ])
    .await;
    let store = store().await;
    let report = match sources::poll_once(&run.source(50), store.store.as_ref(), t0()).await {
        Ok(r) => r,
        Err(e) => panic!("poll: {e}"),
    };
    assert_eq!(report.ingest.stored, 2);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].0, "12-00000-00002");
    assert!(
        report.skipped[0].1.contains("creationDate"),
        "{:?}",
        report.skipped
    );
}

#[tokio::test]
async fn throttling_is_retried_and_a_bad_request_is_not() {
    let run = start(vec![order("12-00000-00001", 2)]).await;
    let source = run.source(50);
    run.sandbox
        .inject(Fault::status("ebay.getOrders", 429).retry_after(0));
    let page = source.orders_page(last_day(), None).await;
    assert!(page.as_ref().is_ok_and(|p| p.orders.len() == 1), "{page:?}");
    assert_eq!(run.calls("ebay.getOrders").len(), 2);

    run.sandbox.inject(Fault::status("ebay.getOrders", 400));
    let refused = source.orders_page(last_day(), None).await;
    let Err(SourceError::Upstream {
        error: UpstreamError::Status { status: 400, .. },
        ..
    }) = refused
    else {
        panic!("400 expected: {refused:?}")
    };
    assert_eq!(run.calls("ebay.getOrders").len(), 3, "a 400 is not retried");

    // getOrder of an unknown id: eBay's 404 with error 32100 in the text.
    let unknown = source.order("99-99999-99999").await;
    let Err(error) = unknown else {
        panic!("unknown order found")
    };
    assert!(error.to_string().contains("32100"), "{error}");
    assert_eq!(run.calls("ebay.getOrder").len(), 1);
}

#[tokio::test]
async fn statuses_map_by_the_table() {
    let with = |id: &str, f: FulfillmentStatus, p: PaymentStatus, c: CancelState| EbayOrder {
        fulfillment_status: f,
        payment_status: p,
        cancel_state: c,
        ..order(id, 2)
    };
    use CancelState as C;
    use FulfillmentStatus as F;
    use PaymentStatus as P;
    let cases = [
        (
            "12-00000-00001",
            F::NotStarted,
            P::Paid,
            C::NoneRequested,
            OrderStatus::Unshipped,
        ),
        (
            "12-00000-00002",
            F::InProgress,
            P::Paid,
            C::NoneRequested,
            OrderStatus::PartiallyShipped,
        ),
        (
            "12-00000-00003",
            F::Fulfilled,
            P::Paid,
            C::NoneRequested,
            OrderStatus::Shipped,
        ),
        (
            "12-00000-00004",
            F::NotStarted,
            P::Pending,
            C::NoneRequested,
            OrderStatus::Pending,
        ),
        (
            "12-00000-00005",
            F::NotStarted,
            P::Failed,
            C::InProgress,
            OrderStatus::Pending,
        ),
        (
            "12-00000-00006",
            F::NotStarted,
            P::Paid,
            C::Canceled,
            OrderStatus::Canceled,
        ),
        (
            "12-00000-00007",
            F::Fulfilled,
            P::FullyRefunded,
            C::NoneRequested,
            OrderStatus::Shipped,
        ),
        (
            "12-00000-00008",
            F::NotStarted,
            P::PartiallyRefunded,
            C::InProgress,
            OrderStatus::Unshipped,
        ),
    ];
    let run = start(
        cases
            .iter()
            .map(|(id, f, p, c, _)| with(id, *f, *p, *c))
            .collect(),
    )
    .await;
    let page = match run.source(50).orders_page(last_day(), None).await {
        Ok(p) => p,
        Err(e) => panic!("page: {e}"),
    };
    assert!(page.skipped.is_empty(), "{:?}", page.skipped);
    for (id, _, _, _, expected) in cases {
        let found = page.orders.iter().find(|o| o.id == id).map(|o| o.status);
        assert_eq!(found, Some(expected), "{id}");
    }
}

#[tokio::test]
async fn the_customer_is_filled_and_relay_addresses_are_not_kept() {
    let karen = EbayOrder {
        buyer: EbayBuyer {
            username: "karen_m_pdx".into(),
            name: Some("Karen Miller".into()),
            email: Some("karen.miller@example.com".into()),
        },
        ship_to: EbayAddress {
            name: Some("Karen Miller".into()),
            line1: "1200 NW Everett St".into(),
            city: "Portland".into(),
            state: Some("OR".into()),
            postal_code: "97209".into(),
            country_code: "US".into(),
            phone: None,
        },
        ..order("12-00000-00001", 2)
    };
    let relayed = EbayOrder {
        buyer: EbayBuyer {
            username: "hidden_buyer".into(),
            name: Some("Jan Novak".into()),
            email: Some("4f7c2a9e1b@members.ebay.com".into()),
        },
        ..order("12-00000-00002", 3)
    };
    let run = start(vec![karen, relayed]).await;
    let page = match run.source(50).orders_page(last_day(), None).await {
        Ok(p) => p,
        Err(e) => panic!("page: {e}"),
    };
    let customer = |id: &str| {
        page.orders
            .iter()
            .find(|o| o.id == id)
            .map(|o| o.customer.clone())
            .unwrap_or_default()
    };
    let k = customer("12-00000-00001");
    assert_eq!(k.name.as_deref(), Some("Karen Miller"));
    assert_eq!(k.email.as_deref(), Some("karen.miller@example.com"));
    assert_eq!(k.postcode.as_deref(), Some("97209"));
    assert_eq!(k.city.as_deref(), Some("Portland"));
    assert_eq!(k.country.as_deref(), Some("US"));
    let r = customer("12-00000-00002");
    assert_eq!(r.name.as_deref(), Some("Jan Novak"));
    assert_eq!(r.email, None, "a relay address is not a customer's address");
}

#[tokio::test]
async fn shipped_orders_give_their_tracking_numbers() {
    let shipped = EbayOrder {
        fulfillment_status: FulfillmentStatus::Fulfilled,
        shipments: vec![EbayShipment {
            tracking_number: "9400111899223197428490".into(),
            carrier: "USPS".into(),
            shipped: When::hours_ago(2),
            items: vec![],
        }],
        ..order("12-00000-00001", 2)
    };
    let run = start(vec![shipped]).await;
    let source = run.source(50);
    let found = source.shipping_fulfillments("12-00000-00001").await;
    let Ok(shipments) = found else {
        panic!("fulfillments: {found:?}")
    };
    assert_eq!(shipments.len(), 1);
    assert_eq!(
        shipments[0].tracking_number.as_deref(),
        Some("9400111899223197428490")
    );
    assert_eq!(shipments[0].carrier_code.as_deref(), Some("USPS"));
    assert_eq!(shipments[0].shipped_at, Some(t0() - Duration::hours(2)));
    let order = source.order("12-00000-00001").await;
    assert!(
        order
            .as_ref()
            .is_ok_and(|o| o.status == OrderStatus::Shipped
                && o.items
                    .iter()
                    .all(|i| i.quantity_shipped == i.quantity_ordered)),
        "{order:?}"
    );
}
