//! End-to-end tests of the usage-plan overrides and counters, late-visible orders,
//! Restricted Data Tokens, FBA Multi-Channel Fulfillment and refresh-token revocation,
//! over HTTP with reqwest and a manual clock fixed at 2026-11-20T12:00:00Z.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::*;
use crate::clock::ManualClock;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const ORDER_A: &str = "113-1000001-2000001";
const ORDER_B: &str = "113-1000002-2000002";
const PENDING: &str = "113-1000003-2000003";

fn t0() -> TestResult<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")?.with_timezone(&Utc))
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

struct Harness {
    sandbox: Sandbox,
    clock: ManualClock,
    http: Client,
    url: String,
    creds: LwaCredentials,
}

async fn start(scenario: Scenario) -> TestResult<Harness> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let clock = ManualClock::new(t0()?);
    let creds = scenario.amazon.credentials.clone();
    let sandbox = Sandbox::start(
        listener,
        SandboxOptions::new(scenario, Arc::new(clock.clone())),
    )
    .await?;
    let url = sandbox.base_url();
    Ok(Harness {
        sandbox,
        clock,
        http: Client::new(),
        url,
        creds,
    })
}

impl Harness {
    async fn lwa(&self) -> TestResult<Response> {
        Ok(self
            .http
            .post(format!("{}/auth/o2/token", self.url))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", self.creds.refresh_token.as_str()),
                ("client_id", self.creds.client_id.as_str()),
                ("client_secret", self.creds.client_secret.as_str()),
            ])
            .send()
            .await?)
    }

    async fn token(&self) -> TestResult<String> {
        let response = self.lwa().await?;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await?;
        Ok(body["access_token"]
            .as_str()
            .ok_or("no access_token in the LWA answer")?
            .to_owned())
    }

    async fn get(&self, path: &str, token: &str, query: &[(&str, &str)]) -> TestResult<Response> {
        Ok(self
            .http
            .get(format!("{}{path}", self.url))
            .header("x-amz-access-token", token)
            .query(query)
            .send()
            .await?)
    }

    async fn get_json(
        &self,
        path: &str,
        token: &str,
        query: &[(&str, &str)],
    ) -> TestResult<(StatusCode, Value)> {
        let response = self.get(path, token, query).await?;
        let status = response.status();
        Ok((status, response.json().await?))
    }

    /// createRestrictedDataToken with these resources: (status, body).
    async fn rdt(&self, token: &str, resources: Value) -> TestResult<(StatusCode, Value)> {
        let response = self
            .http
            .post(format!(
                "{}/tokens/2021-03-01/restrictedDataToken",
                self.url
            ))
            .header("x-amz-access-token", token)
            .json(&json!({ "restrictedResources": resources }))
            .send()
            .await?;
        let status = response.status();
        Ok((status, response.json().await?))
    }

    async fn issue_rdt(&self, token: &str, resources: Value) -> TestResult<String> {
        let (status, body) = self.rdt(token, resources).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["expiresIn"], 3600);
        let rdt = body["restrictedDataToken"]
            .as_str()
            .ok_or("no restrictedDataToken")?;
        assert!(rdt.starts_with("Atz.sprdt|"), "{rdt}");
        Ok(rdt.to_owned())
    }
}

fn error_code(body: &Value) -> &str {
    body["errors"][0]["code"].as_str().unwrap_or("")
}

fn order(
    id: &str,
    status: OrderStatus,
    channel: FulfillmentChannel,
    hours_ago: i64,
) -> ScenarioOrder {
    let mut order = ScenarioOrder::new(id, status, channel, When::hours_ago(hours_ago));
    order.items = vec![ScenarioItem::new(
        format!("1{}", &id[4..11]),
        "SKU-1",
        "B0TEST0001",
        "Test item",
        1,
        Amount::from_cents(1999),
    )];
    order
}

fn orders_scenario() -> Scenario {
    let mut a = order(ORDER_A, OrderStatus::Unshipped, FulfillmentChannel::Mfn, 5);
    a.buyer = Some(ScenarioBuyer {
        name: Some("Jane Roe".to_owned()),
        email: Some("k2x9q7v1m3zt5wd@marketplace.amazon.com".to_owned()),
        purchase_order_number: Some("PO-7731".to_owned()),
    });
    a.shipping_address = Some(ScenarioAddress {
        name: "Jane Roe".to_owned(),
        address_line1: "12 Harbor Street".to_owned(),
        city: "Seattle".to_owned(),
        state_or_region: "WA".to_owned(),
        postal_code: "98109".to_owned(),
        country_code: "US".to_owned(),
        phone: Some("+1 206-555-0142".to_owned()),
        ..ScenarioAddress::default()
    });
    let b = order(ORDER_B, OrderStatus::Shipped, FulfillmentChannel::Afn, 6);
    let pending = order(PENDING, OrderStatus::Pending, FulfillmentChannel::Mfn, 7);
    Scenario::with_orders(vec![a, b, pending])
}

fn orders_query(after: &str) -> [(&'static str, String); 2] {
    [
        ("MarketplaceIds", MARKETPLACE_US.to_owned()),
        ("LastUpdatedAfter", after.to_owned()),
    ]
}

async fn list_orders(h: &Harness, token: &str) -> TestResult<Value> {
    let after = iso(t0()? - TimeDelta::days(1));
    let query = orders_query(&after);
    let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = h.get_json("/orders/v0/orders", token, &pairs).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(body)
}

fn listed(body: &Value, id: &str) -> Option<Value> {
    body["payload"]["Orders"]
        .as_array()?
        .iter()
        .find(|o| o["AmazonOrderId"] == id)
        .cloned()
}

// ---------------------------------------------------------------------------------------
// Usage plans

#[tokio::test]
async fn a_plan_override_changes_the_bucket_and_the_header() -> TestResult {
    let h = start(orders_scenario()).await?;
    let token = h.token().await?;
    let path = format!("/orders/v0/orders/{ORDER_A}");

    let response = h.get(&path, &token, &[]).await?;
    assert_eq!(response.headers()["x-amzn-ratelimit-limit"], "0.5");

    // A lower plan: burst 3 caps the 29 tokens left.
    h.sandbox.set_usage_plan("getOrder", 0.0167, 3.0);
    for _ in 0..3 {
        let response = h.get(&path, &token, &[]).await?;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-amzn-ratelimit-limit"], "0.0167");
    }
    let response = h.get(&path, &token, &[]).await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!response.headers().contains_key("x-amzn-ratelimit-limit"));
    let body: Value = response.json().await?;
    assert_eq!(error_code(&body), "QuotaExceeded");

    // A higher plan refills at its own rate; the header follows.
    h.sandbox.set_usage_plan("getOrder", 250.0, 500.0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let response = h.get(&path, &token, &[]).await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-amzn-ratelimit-limit"], "250");
    h.sandbox.set_usage_plan("getOrder", 2.0, 30.0);
    let response = h.get(&path, &token, &[]).await?;
    assert_eq!(response.headers()["x-amzn-ratelimit-limit"], "2");

    // Nonsense plans are ignored.
    h.sandbox.set_usage_plan("getOrder", 0.0, 5.0);
    h.sandbox.set_usage_plan("getOrder", f64::NAN, 5.0);
    let response = h.get(&path, &token, &[]).await?;
    assert_eq!(response.headers()["x-amzn-ratelimit-limit"], "2");
    Ok(())
}

#[tokio::test]
async fn usage_counts_answers_and_throttles_but_not_fault_429s() -> TestResult {
    let h = start(orders_scenario()).await?;
    let token = h.token().await?;
    let path = format!("/orders/v0/orders/{ORDER_A}");
    h.sandbox.set_usage_plan("getOrder", 0.001, 2.0);

    let before = std::time::Instant::now();
    for expected in [200, 200, 429, 429] {
        let response = h.get(&path, &token, &[]).await?;
        assert_eq!(response.status().as_u16(), expected);
    }
    h.sandbox.inject(Fault::status("getOrderItems", 429));
    let response = h.get(&format!("{path}/orderItems"), &token, &[]).await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // A 404 is an answer too.
    let response = h
        .get("/orders/v0/orders/113-9999999-9999999", &token, &[])
        .await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    let usage = h.sandbox.usage("getOrder");
    assert_eq!((usage.answered, usage.throttled), (2, 3));
    let (Some(first), Some(last)) = (usage.first, usage.last) else {
        panic!("answered calls without times: {usage:?}");
    };
    assert!(before <= first && first <= last, "{usage:?}");
    assert_eq!(h.sandbox.usage("getOrderItems"), OperationUsage::default());

    h.sandbox.set_usage_plan("getOrder", 100.0, 100.0);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let response = h
        .get("/orders/v0/orders/113-9999999-9999999", &token, &[])
        .await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(h.sandbox.usage("getOrder").answered, 3);

    h.sandbox.reset_usage();
    assert_eq!(h.sandbox.usage("getOrder"), OperationUsage::default());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Late-visible orders

#[tokio::test]
async fn a_late_order_appears_only_after_its_delay() -> TestResult {
    let h = start(orders_scenario()).await?;
    let token = h.token().await?;
    let late = "113-1000004-2000004";
    let mut order = order(late, OrderStatus::Unshipped, FulfillmentChannel::Mfn, 1);
    order.last_updated = Some(When::minutes_ago(10));
    // Updated 10 minutes ago, visible 15 minutes after that.
    h.sandbox.add_late_order(order, 900)?;

    let body = list_orders(&h, &token).await?;
    assert!(listed(&body, late).is_none(), "{body}");
    assert!(listed(&body, ORDER_A).is_some());
    let (status, _) = h
        .get_json(&format!("/orders/v0/orders/{late}"), &token, &[])
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .get_json(&format!("/orders/v0/orders/{late}/orderItems"), &token, &[])
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    h.clock.advance(TimeDelta::seconds(4 * 60 + 59));
    let (status, _) = h
        .get_json(&format!("/orders/v0/orders/{late}"), &token, &[])
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    h.clock.advance(TimeDelta::seconds(1));
    let body = list_orders(&h, &token).await?;
    let Some(shown) = listed(&body, late) else {
        panic!("the late order is still missing: {body}");
    };
    // It carries its own LastUpdateDate: a poller whose window already passed it never
    // sees it unless its windows overlap.
    assert_eq!(shown["LastUpdateDate"], iso(t0()? - TimeDelta::minutes(10)));
    let (status, _) = h
        .get_json(&format!("/orders/v0/orders/{late}"), &token, &[])
        .await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn get_orders_keeps_paging_right_when_orders_change() -> TestResult {
    let orders: Vec<ScenarioOrder> = (0..9).map(ScenarioOrder::generated).collect();
    let h = start(Scenario::with_orders(orders)).await?;
    let token = h.token().await?;
    let after = iso(t0()? - TimeDelta::days(30));
    let base = [
        ("MarketplaceIds", MARKETPLACE_US),
        ("CreatedAfter", after.as_str()),
        ("MaxResultsPerPage", "4"),
    ];
    let ids = |body: &Value| -> Vec<String> {
        body["payload"]["Orders"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o["AmazonOrderId"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (_, first) = h.get_json("/orders/v0/orders", &token, &base).await?;
    let Some(next) = first["payload"]["NextToken"].as_str() else {
        panic!("no NextToken on page 1: {first}");
    };
    // Oldest first: generated(8) is the oldest purchase.
    let page1 = ids(&first);
    assert_eq!(page1.len(), 4);
    assert_eq!(page1[0], ScenarioOrder::generated(8).id);

    // A new order purchased now sorts last; the listing continues where it was.
    let mut fresh = ScenarioOrder::generated(20);
    fresh.purchased = When::minutes_ago(30);
    fresh.last_updated = Some(When::minutes_ago(30));
    h.sandbox.add_order(fresh.clone())?;
    let mut seen = page1.clone();
    let mut token_text = next.to_owned();
    loop {
        let (status, body) = h
            .get_json(
                "/orders/v0/orders",
                &token,
                &[
                    ("MarketplaceIds", MARKETPLACE_US),
                    ("NextToken", &token_text),
                ],
            )
            .await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        seen.extend(ids(&body));
        match body["payload"]["NextToken"].as_str() {
            Some(next) => token_text = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 10, "{seen:?}");
    assert_eq!(seen.last(), Some(&fresh.id));
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 10);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Restricted Data Tokens

#[tokio::test]
async fn an_rdt_grants_its_resource_only_until_it_expires() -> TestResult {
    let h = start(orders_scenario()).await?;
    let token = h.token().await?;
    let address = format!("/orders/v0/orders/{ORDER_A}/address");

    // A plain access token is refused the restricted operations.
    for path in [
        address.clone(),
        format!("/orders/v0/orders/{ORDER_A}/buyerInfo"),
    ] {
        let (status, body) = h.get_json(&path, &token, &[]).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(error_code(&body), "Unauthorized");
        assert_eq!(
            body["errors"][0]["message"],
            "Access to requested resource is denied."
        );
    }

    let rdt = h
        .issue_rdt(&token, json!([{"method": "GET", "path": address}]))
        .await?;
    assert_eq!(h.sandbox.restricted_tokens_issued(), 1);
    let (status, body) = h.get_json(&address, &rdt, &[]).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let shipping = &body["payload"]["ShippingAddress"];
    assert_eq!(body["payload"]["AmazonOrderId"], ORDER_A);
    assert_eq!(shipping["Name"], "Jane Roe");
    assert_eq!(shipping["AddressLine1"], "12 Harbor Street");
    assert_eq!(shipping["Phone"], "+1 206-555-0142");
    assert_eq!(shipping["AddressType"], "Residential");

    // Another order, another operation, a non-restricted operation: all refused.
    for path in [
        format!("/orders/v0/orders/{ORDER_B}/address"),
        format!("/orders/v0/orders/{ORDER_A}/buyerInfo"),
        format!("/orders/v0/orders/{ORDER_A}"),
    ] {
        let (status, body) = h.get_json(&path, &rdt, &[]).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let (status, _) = h
        .get_json(
            &format!("/messaging/v1/orders/{ORDER_A}"),
            &rdt,
            &[("marketplaceIds", MARKETPLACE_US)],
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An RDT cannot mint RDTs.
    let (status, _) = h
        .rdt(
            &rdt,
            json!([{"method": "GET", "path": "/orders/v0/orders/{orderId}/address"}]),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Expiry by the sandbox clock.
    h.clock.advance(TimeDelta::seconds(3599));
    let (status, _) = h.get_json(&address, &rdt, &[]).await?;
    assert_eq!(status, StatusCode::OK);
    h.clock.advance(TimeDelta::seconds(1));
    let (status, body) = h.get_json(&address, &rdt, &[]).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Tokens never reach the journal.
    let journal = serde_json::to_string(&h.sandbox.journal())?;
    assert!(!journal.contains(&rdt) && !journal.contains(&token));
    assert!(journal.contains("getOrderAddress") && journal.contains("createRestrictedDataToken"));
    Ok(())
}

#[tokio::test]
async fn generic_rdts_and_data_elements_disclose_buyer_data() -> TestResult {
    let h = start(orders_scenario()).await?;
    let token = h.token().await?;

    // With a plain token getOrders never shows restricted data.
    let body = list_orders(&h, &token).await?;
    for order in body["payload"]["Orders"].as_array().ok_or("no Orders")? {
        assert!(order.get("BuyerInfo").is_none() && order.get("ShippingAddress").is_none());
    }

    let rdt = h
        .issue_rdt(
            &token,
            json!([
                {"method": "GET", "path": "/orders/v0/orders", "dataElements": ["buyerInfo", "shippingAddress"]},
                {"method": "GET", "path": "/orders/v0/orders/{orderId}", "dataElements": ["buyerInfo"]},
                {"method": "GET", "path": "/orders/v0/orders/{orderId}/buyerInfo"},
            ]),
        )
        .await?;
    let body = list_orders(&h, &rdt).await?;
    let Some(a) = listed(&body, ORDER_A) else {
        panic!("{ORDER_A} missing: {body}");
    };
    assert_eq!(a["BuyerInfo"]["BuyerName"], "Jane Roe");
    assert_eq!(a["BuyerInfo"]["PurchaseOrderNumber"], "PO-7731");
    assert_eq!(a["ShippingAddress"]["City"], "Seattle");
    // AFN: no phone. Generated buyers have an anonymised address.
    let Some(b) = listed(&body, ORDER_B) else {
        panic!("{ORDER_B} missing: {body}");
    };
    assert!(b["ShippingAddress"].get("Phone").is_none(), "{b}");
    let email = b["BuyerInfo"]["BuyerEmail"].as_str().unwrap_or("");
    assert!(email.ends_with("@marketplace.amazon.com"), "{email}");
    // Pending: no address, as the contract says.
    let Some(pending) = listed(&body, PENDING) else {
        panic!("{PENDING} missing: {body}");
    };
    assert!(pending.get("ShippingAddress").is_none() && pending.get("BuyerInfo").is_some());

    let (status, body) = h
        .get_json(&format!("/orders/v0/orders/{ORDER_B}"), &rdt, &[])
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["payload"].get("BuyerInfo").is_some()
            && body["payload"].get("ShippingAddress").is_none()
    );
    let (status, body) = h
        .get_json(&format!("/orders/v0/orders/{ORDER_B}/buyerInfo"), &rdt, &[])
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["payload"]["AmazonOrderId"], ORDER_B);
    assert_eq!(body["payload"]["BuyerEmail"], email);
    // Items were not granted.
    let (status, _) = h
        .get_json(
            &format!("/orders/v0/orders/{ORDER_B}/orderItems"),
            &rdt,
            &[],
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A pending order's address answer has no address.
    let rdt = h
        .issue_rdt(
            &token,
            json!([{"method": "GET", "path": "/orders/v0/orders/{orderId}/address"}]),
        )
        .await?;
    let (status, body) = h
        .get_json(&format!("/orders/v0/orders/{PENDING}/address"), &rdt, &[])
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["payload"], json!({"AmazonOrderId": PENDING}));
    assert_eq!(h.sandbox.restricted_tokens_issued(), 2);
    Ok(())
}

#[tokio::test]
async fn create_rdt_refuses_what_the_contract_does_not_allow() -> TestResult {
    let h = start(orders_scenario()).await?;
    let token = h.token().await?;
    // The contract's own sandbox case: an empty method.
    let (status, body) = h
        .rdt(
            &token,
            json!([{"method": "", "path": "/orders/v1/orders/902-1845936-5435065/address"}]),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "InvalidRequest");
    for resources in [
        json!([]),
        json!([{"method": "GET", "path": "/orders/v0/orders"}]),
        json!([{"method": "GET", "path": "/orders/v0/orders/{orderId}/address", "dataElements": ["buyerInfo"]}]),
        json!([{"method": "GET", "path": "/feeds/2021-06-30/feeds"}]),
    ] {
        let (status, body) = h.rdt(&token, resources.clone()).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{resources}");
        assert_eq!(error_code(&body), "InvalidRequest", "{body}");
    }
    let response = h
        .http
        .post(format!("{}/tokens/2021-03-01/restrictedDataToken", h.url))
        .header("x-amz-access-token", &token)
        .body("not json")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    assert_eq!(error_code(&body), "InvalidInput");
    assert_eq!(h.sandbox.restricted_tokens_issued(), 0);

    let response = h
        .http
        .post(format!("{}/tokens/2021-03-01/restrictedDataToken", h.url))
        .json(&json!({"restrictedResources": []}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// FBA Multi-Channel Fulfillment

fn package(number: u32, status: &str, events: &[(i64, &str)]) -> ScenarioPackage {
    ScenarioPackage {
        number,
        carrier: "UPS".to_owned(),
        tracking_number: format!("1Z999AA1{number:010}"),
        estimated_arrival: Some(When::from_now(TimeDelta::days(2))),
        status: status.to_owned(),
        events: events
            .iter()
            .map(|&(hours, code)| ScenarioTrackingEvent {
                at: When::hours_ago(hours),
                code: code.to_owned(),
                description: None,
                city: "Phoenix".to_owned(),
                state: "AZ".to_owned(),
                country: "US".to_owned(),
            })
            .collect(),
    }
}

fn fulfillment_order(id: &str, displayable: &str, updated_hours: i64) -> ScenarioFulfillmentOrder {
    ScenarioFulfillmentOrder {
        id: id.to_owned(),
        displayable_order_id: displayable.to_owned(),
        marketplace: MARKETPLACE_US.to_owned(),
        status: FulfillmentOrderStatus::Complete,
        received: When::hours_ago(updated_hours + 5),
        status_updated: Some(When::hours_ago(updated_hours)),
        shipping_speed: ShippingSpeed::Standard,
        comment: None,
        destination: None,
        items: Vec::new(),
        shipments: Vec::new(),
    }
}

fn fba_scenario() -> Scenario {
    let mut scenario = orders_scenario();
    let mut fos = vec![
        fulfillment_order(ORDER_B, ORDER_B, 50),
        fulfillment_order("MCF-2", ORDER_A, 40),
        fulfillment_order("MCF-3", ORDER_A, 30),
        fulfillment_order("MCF-4", ORDER_A, 20),
        fulfillment_order("SHOP-5", "#1005", 10),
    ];
    fos[0].shipments = vec![ScenarioShipment {
        id: "DqZ4xLRvT".to_owned(),
        fulfillment_center: "PHX7".to_owned(),
        status: ShipmentStatus::Shipped,
        shipped: Some(When::hours_ago(48)),
        estimated_arrival: Some(When::from_now(TimeDelta::days(1))),
        items: Vec::new(),
        packages: vec![package(
            777001,
            "IN_TRANSIT",
            &[(48, "EVENT_101"), (30, "EVENT_201")],
        )],
    }];
    fos[4].items = vec![ScenarioFulfillmentItem {
        id: "shop-1005-1".to_owned(),
        sku: "RC-KETTLE-BLK".to_owned(),
        quantity: 2,
        cancelled: 0,
        unfulfillable: 0,
    }];
    scenario.amazon.fulfillment_orders = fos;
    scenario.amazon.fulfillment_page_size = 2;
    scenario
}

#[tokio::test]
async fn fulfillment_orders_page_by_status_date() -> TestResult {
    let h = start(fba_scenario()).await?;
    let token = h.token().await?;
    let path = "/fba/outbound/2020-07-01/fulfillmentOrders";
    let start_date = iso(t0()? - TimeDelta::hours(45));
    let (status, page1) = h
        .get_json(path, &token, &[("queryStartDate", &start_date)])
        .await?;
    assert_eq!(status, StatusCode::OK, "{page1}");
    let ids = |body: &Value| -> Vec<String> {
        body["payload"]["fulfillmentOrders"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o["sellerFulfillmentOrderId"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(ids(&page1), ["MCF-2", "MCF-3"]);
    let Some(next) = page1["payload"]["nextToken"].as_str() else {
        panic!("no nextToken: {page1}");
    };
    // A fault can target page 2; the retry gets it.
    h.sandbox
        .inject(Fault::status("listAllFulfillmentOrders", 503).on_page(2));
    let (status, _) = h.get_json(path, &token, &[("nextToken", next)]).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (_, page2) = h.get_json(path, &token, &[("nextToken", next)]).await?;
    assert_eq!(ids(&page2), ["MCF-4", "SHOP-5"]);
    assert!(page2["payload"].get("nextToken").is_none(), "{page2}");

    let first = &page1["payload"]["fulfillmentOrders"][0];
    assert_eq!(first["displayableOrderId"], ORDER_A);
    assert_eq!(first["fulfillmentOrderStatus"], "Complete");
    assert_eq!(
        first["statusUpdatedDate"],
        iso(t0()? - TimeDelta::hours(40))
    );
    // The destination defaults to the named order's shipping address.
    assert_eq!(
        first["destinationAddress"]["addressLine1"],
        "12 Harbor Street"
    );

    // Without queryStartDate: the last 36 hours.
    let (_, recent) = h.get_json(path, &token, &[]).await?;
    assert_eq!(ids(&recent), ["MCF-3", "MCF-4"]);
    for (query, code) in [("queryStartDate", "yesterday"), ("nextToken", "garbled")] {
        let (status, body) = h.get_json(path, &token, &[(query, code)]).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&body), "InvalidInput");
    }
    Ok(())
}

#[tokio::test]
async fn a_fulfillment_order_and_its_package_tracking() -> TestResult {
    let h = start(fba_scenario()).await?;
    let token = h.token().await?;
    let (status, body) = h
        .get_json(
            &format!("/fba/outbound/2020-07-01/fulfillmentOrders/{ORDER_B}"),
            &token,
            &[],
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let payload = &body["payload"];
    assert_eq!(
        payload["fulfillmentOrder"]["sellerFulfillmentOrderId"],
        ORDER_B
    );
    // Items from the Amazon order it names.
    assert_eq!(payload["fulfillmentOrderItems"][0]["sellerSku"], "SKU-1");
    assert_eq!(payload["fulfillmentOrderItems"][0]["quantity"], 1);
    let shipment = &payload["fulfillmentShipments"][0];
    assert_eq!(shipment["fulfillmentShipmentStatus"], "SHIPPED");
    assert_eq!(
        shipment["fulfillmentShipmentItem"][0]["packageNumber"],
        777001
    );
    let package = &shipment["fulfillmentShipmentPackage"][0];
    assert_eq!(package["packageNumber"], 777001);
    assert_eq!(package["carrierCode"], "UPS");
    assert_eq!(payload["returnItems"], json!([]));

    let tracking = "/fba/outbound/2020-07-01/tracking";
    let (status, body) = h
        .get_json(tracking, &token, &[("packageNumber", "777001")])
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["payload"]["currentStatus"], "IN_TRANSIT");
    assert_eq!(
        body["payload"]["trackingEvents"][0]["eventCode"],
        "EVENT_201"
    );
    assert_eq!(
        body["payload"]["trackingEvents"][1]["eventDescription"],
        "Carrier notified to pick up package."
    );

    // A test moves the package.
    h.clock.advance(TimeDelta::seconds(1800));
    h.sandbox
        .set_package_status(777001, "UNDELIVERABLE", "EVENT_409")?;
    let (_, body) = h
        .get_json(tracking, &token, &[("packageNumber", "777001")])
        .await?;
    assert_eq!(body["payload"]["currentStatus"], "UNDELIVERABLE");
    assert_eq!(
        body["payload"]["currentStatusDescription"],
        "Undeliverable because package was lost or destroyed."
    );
    let newest = &body["payload"]["trackingEvents"][0];
    assert_eq!(newest["eventCode"], "EVENT_409");
    assert_eq!(newest["eventDescription"], "Lost by carrier.");
    assert_eq!(newest["eventDate"], iso(t0()? + TimeDelta::minutes(30)));
    assert_eq!(newest["eventAddress"]["city"], "Phoenix");
    assert!(
        h.sandbox
            .set_package_status(777001, "LOST", "EVENT_409")
            .is_err()
    );
    assert!(
        h.sandbox
            .set_package_status(999, "DELIVERED", "EVENT_301")
            .is_err()
    );

    for (query, status) in [
        (vec![("packageNumber", "123")], StatusCode::NOT_FOUND),
        (vec![("packageNumber", "abc")], StatusCode::BAD_REQUEST),
        (vec![], StatusCode::BAD_REQUEST),
    ] {
        let (got, body) = h.get_json(tracking, &token, &query).await?;
        assert_eq!(got, status, "{query:?}: {body}");
    }
    let (status, _) = h
        .get_json(
            "/fba/outbound/2020-07-01/fulfillmentOrders/NOPE",
            &token,
            &[],
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let long = "X".repeat(41);
    let (status, _) = h
        .get_json(
            &format!("/fba/outbound/2020-07-01/fulfillmentOrders/{long}"),
            &token,
            &[],
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let response = h
        .get(tracking, &token, &[("packageNumber", "777001")])
        .await?;
    assert_eq!(response.headers()["x-amzn-ratelimit-limit"], "2");
    let operations: Vec<String> = h
        .sandbox
        .journal()
        .into_iter()
        .map(|e| e.operation)
        .collect();
    for name in ["getFulfillmentOrder", "getPackageTrackingDetails"] {
        assert!(operations.iter().any(|o| o == name), "{operations:?}");
    }
    Ok(())
}

#[tokio::test]
async fn fulfillment_orders_are_validated() -> TestResult {
    let h = start(fba_scenario()).await?;
    let mut duplicate = fulfillment_order("MCF-2", ORDER_A, 1);
    assert!(h.sandbox.add_fulfillment_order(duplicate.clone()).is_err());
    duplicate.id = "MCF-9".to_owned();
    duplicate.displayable_order_id = "#no-such-order".to_owned();
    // An item the order does not have.
    duplicate.items = vec![ScenarioFulfillmentItem {
        id: "i1".to_owned(),
        sku: "SKU-1".to_owned(),
        quantity: 1,
        cancelled: 1,
        unfulfillable: 1,
    }];
    assert!(h.sandbox.add_fulfillment_order(duplicate.clone()).is_err());
    duplicate.items.clear();
    duplicate.displayable_order_id = ORDER_A.to_owned();
    duplicate.shipments = vec![ScenarioShipment {
        id: "S1".to_owned(),
        fulfillment_center: "PHX7".to_owned(),
        status: ShipmentStatus::Pending,
        shipped: None,
        estimated_arrival: None,
        items: Vec::new(),
        // Already used by another order.
        packages: vec![package(777001, "IN_TRANSIT", &[])],
    }];
    assert!(h.sandbox.add_fulfillment_order(duplicate.clone()).is_err());
    duplicate.shipments.clear();
    h.sandbox.add_fulfillment_order(duplicate)?;
    h.sandbox.update_fulfillment_order("MCF-9", |f| {
        f.status = FulfillmentOrderStatus::Cancelled;
        f.status_updated = Some(When::now());
    })?;
    let Some(cancelled) = h
        .sandbox
        .fulfillment_orders()
        .into_iter()
        .find(|f| f.id == "MCF-9")
    else {
        panic!("MCF-9 missing");
    };
    assert_eq!(cancelled.status, FulfillmentOrderStatus::Cancelled);
    assert_eq!(cancelled.status_updated, Some(When::At(t0()?)));
    assert!(cancelled.destination.is_some() && !cancelled.items.is_empty());
    assert!(h.sandbox.update_fulfillment_order("nope", |_| {}).is_err());

    let yaml = "amazon:\n  fulfillment_orders:\n    - id: X\n      displayable_order_id: '#1'\n      status: Shipped\n      received: 1d\n";
    assert!(Scenario::from_yaml_str(yaml).is_err());
    Ok(())
}

#[tokio::test]
async fn the_default_scenario_has_fulfillment_in_transit_delivered_and_lost() -> TestResult {
    let h = start(default_scenario()?).await?;
    let token = h.token().await?;
    let tracking = "/fba/outbound/2020-07-01/tracking";
    let mut statuses = Vec::new();
    for fulfillment in h.sandbox.fulfillment_orders() {
        for (_, package) in fulfillment.packages() {
            let number = package.number.to_string();
            let (status, body) = h
                .get_json(tracking, &token, &[("packageNumber", &number)])
                .await?;
            assert_eq!(status, StatusCode::OK, "{body}");
            statuses.push(
                body["payload"]["currentStatus"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            );
        }
    }
    for expected in ["IN_TRANSIT", "DELIVERED", "UNDELIVERABLE", "DELAYED"] {
        assert!(statuses.iter().any(|s| s == expected), "{statuses:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// LWA

#[tokio::test]
async fn a_revoked_refresh_token_gets_invalid_grant_until_restored() -> TestResult {
    let h = start(orders_scenario()).await?;
    let token = h.token().await?;
    let path = format!("/orders/v0/orders/{ORDER_A}");
    let rdt = h
        .issue_rdt(
            &token,
            json!([{"method": "GET", "path": "/orders/v0/orders/{orderId}/address"}]),
        )
        .await?;

    h.sandbox.revoke_refresh_token();
    let response = h.lwa().await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    let (status, _) = h.get_json(&path, &token, &[]).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h.get_json(&format!("{path}/address"), &rdt, &[]).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    h.sandbox.restore_refresh_token();
    let fresh = h.token().await?;
    let (status, _) = h.get_json(&path, &fresh, &[]).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Speed

/// Lists 100,000 generated orders (`SANDBOX_BENCH_ORDERS` to change, a multiple of
/// 100) 100 per page and prints how long the pages took: the time per page should not
/// grow with the backlog. Not a timed assertion: run it by hand, in release mode, e.g.
/// `cargo test --release --lib sandbox::tests_sp_api::listing_100k -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, run by hand in release mode"]
async fn listing_100k_orders_in_pages_of_100() -> TestResult {
    let count: u32 = std::env::var("SANDBOX_BENCH_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let orders: Vec<ScenarioOrder> = (0..count).map(ScenarioOrder::generated).collect();
    let mut scenario = Scenario::with_orders(orders);
    scenario.amazon.rate_limits = false;
    let built = std::time::Instant::now();
    let h = start(scenario).await?;
    let token = h.token().await?;
    eprintln!(
        "sandbox with {count} orders started in {:?}",
        built.elapsed()
    );
    let after = iso(t0()? - TimeDelta::days(365 * 80));
    let began = std::time::Instant::now();
    let (status, mut body) = h
        .get_json(
            "/orders/v0/orders",
            &token,
            &[
                ("MarketplaceIds", MARKETPLACE_US),
                ("CreatedAfter", &after),
                ("MaxResultsPerPage", "100"),
            ],
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let mut pages = 1;
    let mut seen = body["payload"]["Orders"].as_array().map_or(0, Vec::len);
    while let Some(next) = body["payload"]["NextToken"].as_str().map(str::to_owned) {
        let (status, page) = h
            .get_json(
                "/orders/v0/orders",
                &token,
                &[("MarketplaceIds", MARKETPLACE_US), ("NextToken", &next)],
            )
            .await?;
        assert_eq!(status, StatusCode::OK);
        body = page;
        pages += 1;
        seen += body["payload"]["Orders"].as_array().map_or(0, Vec::len);
    }
    let took = began.elapsed();
    eprintln!(
        "listed {seen} orders in {pages} pages in {took:?} ({:?} per page)",
        took / pages
    );
    let count = usize::try_from(count)?;
    assert_eq!((seen, pages), (count, u32::try_from(count.div_ceil(100))?));
    Ok(())
}
