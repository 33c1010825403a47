//! The sandbox's Walmart answers checked against Walmart's contract
//! (`specs/walmart/walmart-marketplace-orders-openapi-original.yml`), and read by the
//! connector's parser. The contract is 2.8 MB: it is loaded once for the binary.
//!
//! `getAnOrder` is checked against `components/schemas/GetOrderResponse`
//! (`{"order": {…}}`, `orderDate` in epoch milliseconds), which is what the contract's
//! own examples for that path show; the path's inline 200 schema describes the bare
//! order with `orderDate` as a date-time string (the XML `<order>` element) and
//! contradicts those examples.

#[path = "common/openapi.rs"]
mod openapi;

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeZone, Utc};
use nightdesk::clock::{ManualClock, SharedClock};
use nightdesk::sandbox::marketplaces::walmart::{
    WalmartScenario, WalmartScenarioAddress, WalmartScenarioLine, WalmartScenarioOrder,
    WalmartScenarioTracking,
};
use nightdesk::sandbox::{Amount, Sandbox, SandboxOptions, Scenario, When};
use nightdesk::sources::walmart::api::parse_errors;
use nightdesk::sources::walmart::orders::parse_order;
use openapi::OpenApi;
use serde_json::{Value, json};

const CLIENT_ID: &str = "sandbox-walmart-client-id";
const CLIENT_SECRET: &str = "sandbox-walmart-client-secret";

fn contract() -> &'static OpenApi {
    static CONTRACT: OnceLock<OpenApi> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        OpenApi::load_spec("walmart/walmart-marketplace-orders-openapi-original.yml")
    })
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn line(sku: &str, status: &str, tracking: Option<(&str, &str)>) -> WalmartScenarioLine {
    WalmartScenarioLine {
        sku: sku.to_owned(),
        product_name: format!("Product {sku}"),
        quantity: 2,
        price: Amount::from_cents(2450),
        tax: Amount::from_cents(196),
        shipping: Amount::from_cents(if sku.ends_with('2') { 599 } else { 0 }),
        status: status.to_owned(),
        cancelled_quantity: u32::from(status == "Shipped"),
        cancellation_reason: Some("SELLER_CANCEL_OUT_OF_STOCK".to_owned()),
        tracking: tracking.map(|(carrier, number)| WalmartScenarioTracking {
            carrier: carrier.to_owned(),
            number: number.to_owned(),
            url: None,
            shipped: When::hours_ago(3),
        }),
        status_date: None,
        intent_to_cancel: sku.ends_with('3'),
    }
}

fn scenario() -> Scenario {
    let order = |po: &str, lines: Vec<WalmartScenarioLine>| WalmartScenarioOrder {
        purchase_order_id: po.to_owned(),
        customer_order_id: format!("20{po}"),
        order_date: When::days_ago(1),
        last_modified: Some(When::hours_ago(2)),
        customer_email: None,
        ship_to: WalmartScenarioAddress {
            name: "Ann Lee".to_owned(),
            address1: "1 Main St".to_owned(),
            address2: Some("Apt 2".to_owned()),
            city: "Bentonville".to_owned(),
            state: "AR".to_owned(),
            postal_code: "72712".to_owned(),
            country: "USA".to_owned(),
            phone: "5555550100".to_owned(),
        },
        method: "Value".to_owned(),
        estimated_ship: None,
        estimated_delivery: None,
        ship_node: None,
        lines,
        malformed: false,
    };
    Scenario {
        walmart: WalmartScenario {
            page_size: 2,
            orders: vec![
                order("1000000000001", vec![line("SKU-1", "Created", None)]),
                order(
                    "1000000000002",
                    vec![
                        line("SKU-2", "Shipped", Some(("UPS", "1Z999AA10123456784"))),
                        line("SKU-3", "Acknowledged", None),
                    ],
                ),
                order(
                    "1000000000003",
                    vec![line(
                        "SKU-4",
                        "Delivered",
                        Some(("Pitney Bowes", "PB123456789")),
                    )],
                ),
                order("1000000000004", vec![line("SKU-5", "Cancelled", None)]),
            ],
            ..WalmartScenario::default()
        },
        ..Scenario::default()
    }
}

struct Raw {
    http: reqwest::Client,
    base: String,
    token: String,
}

async fn start() -> (Sandbox, Raw) {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let clock: SharedClock = Arc::new(ManualClock::new(t0()));
    let sandbox = match Sandbox::start(listener, SandboxOptions::new(scenario(), clock)).await {
        Ok(s) => s,
        Err(e) => panic!("sandbox: {e}"),
    };
    let http = reqwest::Client::new();
    let base = format!("{}/walmart", sandbox.base_url());
    let answer = match http
        .post(format!("{base}/v3/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("WM_SVC.NAME", "Walmart Marketplace")
        .header(
            "WM_QOS.CORRELATION_ID",
            "b3261d2d-028a-4ef7-8602-633c23200af6",
        )
        .header("Accept", "application/json")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => panic!("token: {e}"),
    };
    assert_eq!(answer.status().as_u16(), 200);
    let token: Value = answer.json().await.unwrap_or_default();
    // Walmart's Token API (not in this contract): access_token, token_type, expires_in.
    assert_eq!(token["token_type"], "Bearer", "{token}");
    assert_eq!(token["expires_in"], 900, "{token}");
    let token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!token.is_empty());
    (sandbox, Raw { http, base, token })
}

impl Raw {
    async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let answer = match self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .header("WM_SEC.ACCESS_TOKEN", &self.token)
            .header("WM_SVC.NAME", "Walmart Marketplace")
            .header(
                "WM_QOS.CORRELATION_ID",
                "b3261d2d-028a-4ef7-8602-633c23200af6",
            )
            .header("Accept", "application/json")
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => panic!("GET {path_and_query}: {e}"),
        };
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or_default())
    }
}

fn check(schema: &Value, body: &Value) {
    if let Err(problems) = contract().check(schema, body) {
        panic!("{problems}\nbody: {body}");
    }
}

fn check_errors(body: &Value) {
    let items = body["errors"]["error"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!items.is_empty(), "no errors in {body}");
    for item in &items {
        check(&contract().schema("GatewayError"), item);
    }
    assert_eq!(parse_errors(&body.to_string()).len(), items.len());
}

#[tokio::test]
async fn every_listing_page_follows_the_contract_and_parses() {
    let (_sandbox, raw) = start().await;
    let schema = match contract().response_schema("get", "/v3/orders", 200, "application/json") {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let mut path = "/v3/orders?lastModifiedStartDate=2026-11-21&limit=2".to_owned();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (status, body) = raw.get(&path).await;
        assert_eq!(status, 200, "{body}");
        check(&schema, &body);
        for order in body["list"]["elements"]["order"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            match parse_order(order, "us") {
                Ok(mapped) => seen.push(mapped),
                Err(e) => panic!("the connector cannot read the sandbox's order: {e}"),
            }
        }
        match body["list"]["meta"]["nextCursor"].as_str() {
            Some(cursor) => path = format!("/v3/orders{cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    let shipped = seen.iter().find(|o| o.order.id == "1000000000002");
    assert!(shipped.is_some_and(|o| o.tracking.len() == 1 && o.order.items.len() == 2));
    let other_carrier = seen.iter().find(|o| o.order.id == "1000000000003");
    assert_eq!(
        other_carrier
            .and_then(|o| o.tracking.first())
            .and_then(|t| t.carrier.clone()),
        Some("Pitney Bowes".to_owned())
    );
}

#[tokio::test]
async fn get_an_order_follows_the_contract_and_parses() {
    let (_sandbox, raw) = start().await;
    let schema = contract().schema("GetOrderResponse");
    for id in [
        "1000000000001",
        "1000000000002",
        "1000000000003",
        "1000000000004",
    ] {
        let (status, body) = raw.get(&format!("/v3/orders/{id}")).await;
        assert_eq!(status, 200, "{body}");
        check(&schema, &body);
        match parse_order(body["order"].clone(), "us") {
            Ok(mapped) => assert_eq!(mapped.order.id, id),
            Err(e) => panic!("{id}: {e}"),
        }
    }
}

#[tokio::test]
async fn error_answers_are_gateway_errors() {
    let (sandbox, raw) = start().await;
    let (status, body) = raw.get("/v3/orders/1999999999999").await;
    assert_eq!(status, 404);
    check_errors(&body);
    let (status, body) = raw.get("/v3/orders?limit=500").await;
    assert_eq!(status, 400);
    check_errors(&body);
    let (status, body) = raw.get("/v3/orders?createdStartDate=last-week").await;
    assert_eq!(status, 400);
    check_errors(&body);
    sandbox.expire_walmart_tokens();
    let (status, body) = raw.get("/v3/orders").await;
    assert_eq!(status, 401);
    check_errors(&body);
    let refused = match raw
        .http
        .post(format!("{}/v3/token", raw.base))
        .basic_auth(CLIENT_ID, Some("wrong"))
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
        Ok(r) => r,
        Err(e) => panic!("token: {e}"),
    };
    assert_eq!(refused.status().as_u16(), 401);
    check_errors(&refused.json().await.unwrap_or(json!({})));
}
