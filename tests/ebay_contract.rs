//! The sandbox's eBay against the contract (`specs/ebay/sell_fulfillment_v1_oas3.yaml`):
//! every answer it gives, successes and errors, validates against the contract's
//! schemas, and the connector reads the same scenario without skipping anything.

#[path = "common/openapi.rs"]
mod openapi;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use nightdesk::clock::{ManualClock, SharedClock};
use nightdesk::http::RetryPolicy;
use nightdesk::sandbox::marketplaces::ebay::{
    CLIENT_ID, CLIENT_SECRET, CancelState, EbayAddress, EbayBuyer, EbayItem, EbayOrder,
    EbayScenario, EbayShipment, FulfillmentStatus, PaymentStatus, REFRESH_TOKEN,
};
use nightdesk::sandbox::{Amount, Sandbox, SandboxOptions, Scenario, When};
use nightdesk::schedule::Schedule;
use nightdesk::sources::ebay::{EbaySettings, EbaySource};
use nightdesk::sources::{OrderSource, PollWindow, WindowPolicy};
use openapi::OpenApi;
use secrecy::SecretString;
use serde_json::{Value, json};

const SCOPE: &str = "https://api.ebay.com/oauth/api_scope/sell.fulfillment";

fn t0() -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z") {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => panic!("t0: {e}"),
    }
}

fn contract() -> OpenApi {
    OpenApi::load_spec("ebay/sell_fulfillment_v1_oas3.yaml")
}

/// Every shape the sandbox renders: shipped with two parcels, partly shipped, pending,
/// cancelled, a relay e-mail, an order older than 14 days (no e-mail), shipping charged.
fn orders() -> Vec<EbayOrder> {
    let item = |id: &str, qty: u32, cents: i64| EbayItem {
        id: id.to_owned(),
        sku: Some(format!("SKU-{id}")),
        title: format!("Item {id}"),
        quantity: qty,
        price: Amount::from_cents(cents),
    };
    let karen = EbayBuyer {
        username: "karen_m_pdx".into(),
        name: Some("Karen Miller".into()),
        email: Some("karen.miller@example.com".into()),
    };
    let portland = EbayAddress {
        name: Some("Karen Miller".into()),
        line1: "1200 NW Everett St".into(),
        city: "Portland".into(),
        state: Some("OR".into()),
        postal_code: "97209".into(),
        country_code: "US".into(),
        phone: Some("503-555-0100".into()),
    };
    vec![
        EbayOrder {
            fulfillment_status: FulfillmentStatus::Fulfilled,
            last_modified: Some(When::hours_ago(3)),
            buyer: karen.clone(),
            ship_to: portland.clone(),
            shipping: Some(Amount::from_cents(599)),
            shipments: vec![
                EbayShipment {
                    tracking_number: "9400111899223197428490".into(),
                    carrier: "USPS".into(),
                    shipped: When::hours_ago(3),
                    items: vec!["10001".into()],
                },
                EbayShipment {
                    tracking_number: "1Z999AA10123456784".into(),
                    carrier: "UPS".into(),
                    shipped: When::hours_ago(3),
                    items: vec!["10002".into()],
                },
            ],
            ..EbayOrder::new(
                "12-34567-00001",
                When::days_ago(2),
                vec![item("10001", 2, 1299), item("10002", 1, 2500)],
            )
        },
        EbayOrder {
            fulfillment_status: FulfillmentStatus::InProgress,
            last_modified: Some(When::hours_ago(4)),
            shipments: vec![EbayShipment {
                tracking_number: "9400111899223197428491".into(),
                carrier: "USPS".into(),
                shipped: When::hours_ago(4),
                items: vec!["20001".into()],
            }],
            ..EbayOrder::new(
                "12-34567-00002",
                When::days_ago(1),
                vec![item("20001", 1, 999), item("20002", 1, 1999)],
            )
        },
        EbayOrder {
            payment_status: PaymentStatus::Pending,
            last_modified: Some(When::hours_ago(5)),
            buyer: EbayBuyer {
                username: "relay_buyer".into(),
                name: None,
                email: Some("4f7c2a9e1b@members.ebay.com".into()),
            },
            ..EbayOrder::new(
                "12-34567-00003",
                When::hours_ago(6),
                vec![item("30001", 1, 4999)],
            )
        },
        EbayOrder {
            cancel_state: CancelState::Canceled,
            last_modified: Some(When::hours_ago(6)),
            buyer: karen,
            ship_to: portland,
            ..EbayOrder::new(
                "12-34567-00004",
                When::days_ago(20),
                vec![item("40001", 3, 500)],
            )
        },
    ]
}

struct Run {
    sandbox: Sandbox,
    clock: ManualClock,
    http: reqwest::Client,
}

async fn start() -> Run {
    let clock = ManualClock::new(t0());
    let scenario = Scenario {
        ebay: EbayScenario {
            orders: orders(),
            page_size: 3,
            ..EbayScenario::default()
        },
        ..Scenario::default()
    };
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let shared: SharedClock = Arc::new(clock.clone());
    let sandbox = match Sandbox::start(listener, SandboxOptions::new(scenario, shared)).await {
        Ok(s) => s,
        Err(e) => panic!("sandbox: {e}"),
    };
    Run {
        sandbox,
        clock,
        http: reqwest::Client::new(),
    }
}

impl Run {
    fn url(&self, path: &str) -> String {
        format!("{}/ebay{path}", self.sandbox.base_url())
    }

    async fn token(&self) -> String {
        let reply = self
            .http
            .post(self.url("/identity/v1/oauth2/token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", REFRESH_TOKEN),
                ("scope", SCOPE),
            ])
            .send()
            .await;
        let body = match reply {
            Ok(r) if r.status().is_success() => r.json::<Value>().await,
            Ok(r) => panic!("token: HTTP {}", r.status()),
            Err(e) => panic!("token: {e}"),
        };
        match body {
            Ok(b) => {
                assert_eq!(b["token_type"], "User Access Token");
                assert!(b["expires_in"].as_i64().is_some_and(|s| s > 0));
                b["access_token"].as_str().unwrap_or_default().to_owned()
            }
            Err(e) => panic!("token body: {e}"),
        }
    }

    /// `GET /ebay/sell/fulfillment/v1<path>` with a token: status and JSON body.
    async fn get(&self, token: &str, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let reply = self
            .http
            .get(self.url(&format!("/sell/fulfillment/v1{path}")))
            .bearer_auth(token)
            .query(query)
            .send()
            .await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => panic!("GET {path}: {e}"),
        };
        let status = reply.status().as_u16();
        match reply.json::<Value>().await {
            Ok(body) => (status, body),
            Err(e) => panic!("GET {path}: body is not JSON: {e}"),
        }
    }

    fn source(&self) -> EbaySource {
        let base = match url::Url::parse(&format!("{}/ebay", self.sandbox.base_url())) {
            Ok(u) => u,
            Err(e) => panic!("base: {e}"),
        };
        let schedule = match Schedule::parse("*/5 * * * *") {
            Ok(s) => s,
            Err(e) => panic!("schedule: {e}"),
        };
        let settings = EbaySettings {
            base_url: base,
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(CLIENT_SECRET.to_owned()),
            refresh_token: SecretString::from(REFRESH_TOKEN.to_owned()),
            account: "main".into(),
            schedule,
            page_size: 2,
            window: WindowPolicy::default(),
        };
        let clock: SharedClock = Arc::new(self.clock.clone());
        match EbaySource::new(settings, clock, RetryPolicy::fast()) {
            Ok(s) => s,
            Err(e) => panic!("source: {e}"),
        }
    }
}

fn valid(api: &OpenApi, schema: &Value, body: &Value, what: &str) {
    if let Err(problems) = api.check(schema, body) {
        panic!("{what}: {problems}\n{body:#}");
    }
}

/// The error container every error status answers (the contract's `Error` list).
fn errors_schema() -> Value {
    json!({
        "type": "object",
        "required": ["errors"],
        "properties": {
            "errors": {
                "type": "array",
                "minItems": 1,
                "items": {"allOf": [
                    {"$ref": "#/components/schemas/Error"},
                    {"required": ["errorId", "domain", "category", "message"]}
                ]}
            }
        }
    })
}

const WEEK: &str = "lastmodifieddate:[2026-11-15T12:00:00.000Z..2026-11-22T11:57:00.000Z]";

#[tokio::test]
async fn get_orders_pages_follow_the_contract() {
    let run = start().await;
    let api = contract();
    let token = run.token().await;
    let page_schema = api.schema("OrderSearchPagedCollection");
    let order_schema = api.schema("Order");
    // The validator does refuse what breaks the contract.
    assert!(api.check(&page_schema, &json!({"total": "four"})).is_err());
    assert!(
        api.check(&order_schema, &json!({"lineItems": [{"quantity": "2"}]}))
            .is_err()
    );
    let (status, first) = run.get(&token, "/order", &[("filter", WEEK)]).await;
    assert_eq!(status, 200);
    valid(&api, &page_schema, &first, "getOrders page 1");
    assert_eq!(first["total"], 4);
    assert_eq!(first["limit"], 3);
    assert_eq!(first["orders"].as_array().map(Vec::len), Some(3));
    let Some(next) = first["next"].as_str() else {
        panic!("no next on page 1: {first:#}")
    };
    assert!(next.contains("offset=3"), "{next}");
    for order in first["orders"].as_array().into_iter().flatten() {
        valid(&api, &order_schema, order, "getOrders order");
    }
    let (status, second) = run
        .get(&token, "/order", &[("filter", WEEK), ("offset", "3")])
        .await;
    assert_eq!(status, 200);
    valid(&api, &page_schema, &second, "getOrders page 2");
    assert_eq!(second["orders"].as_array().map(Vec::len), Some(1));
    assert!(second.get("next").is_none());
    assert!(second["prev"].as_str().is_some());
    // The 14-day e-mail rule: the 20-day-old order has none.
    let old = &second["orders"][0];
    assert_eq!(old["orderId"], "12-34567-00004");
    assert!(
        old["buyer"]["buyerRegistrationAddress"]
            .get("email")
            .is_none()
    );
}

#[tokio::test]
async fn get_order_and_fulfillments_follow_the_contract() {
    let run = start().await;
    let api = contract();
    let token = run.token().await;
    let (status, order) = run.get(&token, "/order/12-34567-00001", &[]).await;
    assert_eq!(status, 200);
    valid(&api, &api.schema("Order"), &order, "getOrder");
    assert_eq!(order["pricingSummary"]["total"]["value"], "56.97");
    let hrefs = order["fulfillmentHrefs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(hrefs.len(), 2);

    let (status, list) = run
        .get(&token, "/order/12-34567-00001/shipping_fulfillment", &[])
        .await;
    assert_eq!(status, 200);
    valid(
        &api,
        &api.schema("ShippingFulfillmentPagedCollection"),
        &list,
        "getShippingFulfillments",
    );
    assert_eq!(list["total"], 2);
    // Each href names one of them, and answers a ShippingFulfillment.
    for href in hrefs.iter().filter_map(Value::as_str) {
        let Some(path) = href.split("/sell/fulfillment/v1").nth(1) else {
            panic!("href {href}")
        };
        let (status, one) = run.get(&token, path, &[]).await;
        assert_eq!(status, 200, "{href}");
        valid(&api, &api.schema("ShippingFulfillment"), &one, href);
    }
}

#[tokio::test]
async fn error_answers_follow_the_contract() {
    let run = start().await;
    let api = contract();
    let token = run.token().await;
    let schema = errors_schema();
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, i64);
    let cases: [Case; 7] = [
        (
            "/order",
            vec![(
                "filter",
                "lastmodifieddate:[2020-01-01T00:00:00.000Z..2026-11-22T00:00:00.000Z]",
            )],
            400,
            30830,
        ),
        (
            "/order",
            vec![(
                "filter",
                "lastmodifieddate:[2026-11-22T00:00:00.000Z..2026-11-21T00:00:00.000Z]",
            )],
            400,
            30840,
        ),
        (
            "/order",
            vec![("filter", "lastmodifieddate:[yesterday..]")],
            400,
            30810,
        ),
        ("/order", vec![("filter", "colour:{RED}")], 400, 30700),
        ("/order", vec![("limit", "201")], 400, 31100),
        ("/order/99-99999-99999", vec![], 404, 32100),
        (
            "/order/99-99999-99999/shipping_fulfillment",
            vec![],
            400,
            32100,
        ),
    ];
    for (path, query, status, error_id) in cases {
        let (got, body) = run.get(&token, path, &query).await;
        assert_eq!(got, status, "{path} {query:?}: {body}");
        valid(&api, &schema, &body, path);
        assert_eq!(body["errors"][0]["errorId"], error_id, "{path} {query:?}");
    }
    let (got, body) = run.get("not-a-token", "/order", &[]).await;
    assert_eq!(got, 401);
    valid(&api, &schema, &body, "401");
    // The token endpoint refuses like eBay's OAuth server.
    let refused = run
        .http
        .post(run.url("/identity/v1/oauth2/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "wrong")])
        .send()
        .await;
    let Ok(refused) = refused else {
        panic!("token call failed")
    };
    assert_eq!(refused.status().as_u16(), 400);
    let body: Value = refused.json().await.unwrap_or_default();
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn the_connector_reads_every_contract_answer() {
    let run = start().await;
    let source = run.source();
    let window = PollWindow {
        from: t0() - Duration::days(7),
        to: t0() - Duration::minutes(3),
    };
    let mut ids = Vec::new();
    let mut next = None;
    loop {
        let page = match source.orders_page(window, next).await {
            Ok(p) => p,
            Err(e) => panic!("page: {e}"),
        };
        assert!(page.skipped.is_empty(), "{:?}", page.skipped);
        ids.extend(page.orders.iter().map(|o| o.id.clone()));
        next = page.next_token;
        if next.is_none() {
            break;
        }
    }
    ids.sort();
    assert_eq!(
        ids,
        [
            "12-34567-00001",
            "12-34567-00002",
            "12-34567-00003",
            "12-34567-00004"
        ]
    );
    let shipped = source.order("12-34567-00001").await;
    let Ok(shipped) = shipped else {
        panic!("getOrder: {shipped:?}")
    };
    assert_eq!(
        shipped.total.as_ref().map(|m| m.amount.as_str()),
        Some("56.97")
    );
    assert_eq!(
        shipped.customer.email.as_deref(),
        Some("karen.miller@example.com")
    );
    let parcels = source.shipping_fulfillments("12-34567-00002").await;
    assert!(
        parcels
            .as_ref()
            .is_ok_and(|p| p.len() == 1 && p[0].line_items == [("20001".to_owned(), 1)]),
        "{parcels:?}"
    );
    let partly = source.order("12-34567-00002").await;
    assert!(
        partly
            .as_ref()
            .is_ok_and(|o| o.items.iter().map(|i| i.quantity_shipped).sum::<i64>() == 1),
        "{partly:?}"
    );
}
