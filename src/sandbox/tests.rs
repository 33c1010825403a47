//! End-to-end tests of the sandbox over HTTP, with reqwest as the client and a manual
//! clock fixed at 2026-11-20T12:00:00Z.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::*;
use crate::clock::ManualClock;

const US: &str = MARKETPLACE_US;
const CA: &str = MARKETPLACE_CA;
/// Not the default, so the tests show the option is used.
const WEBHOOK_SECRET: &str = "test-webhook-secret";

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn t0() -> TestResult<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")?.with_timezone(&Utc))
}

struct Harness {
    sandbox: Sandbox,
    clock: ManualClock,
    http: Client,
    url: String,
    creds: LwaCredentials,
}

async fn start(scenario: Scenario) -> TestResult<Harness> {
    start_with(scenario, None).await
}

async fn start_with(scenario: Scenario, journal_path: Option<PathBuf>) -> TestResult<Harness> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let clock = ManualClock::new(t0()?);
    let creds = scenario.amazon.credentials.clone();
    let sandbox = Sandbox::start(
        listener,
        SandboxOptions {
            scenario,
            journal_path,
            clock: Arc::new(clock.clone()),
            webhook_secret: WEBHOOK_SECRET.to_owned(),
        },
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
    async fn lwa_form(&self, fields: &[(&str, &str)]) -> TestResult<Response> {
        Ok(self
            .http
            .post(format!("{}/auth/o2/token", self.url))
            .form(fields)
            .send()
            .await?)
    }

    async fn token(&self) -> TestResult<String> {
        let response = self
            .lwa_form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &self.creds.refresh_token),
                ("client_id", &self.creds.client_id),
                ("client_secret", &self.creds.client_secret),
            ])
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await?;
        Ok(body["access_token"]
            .as_str()
            .ok_or("no access_token in the LWA response")?
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

    /// A getOrders page as (status, body).
    async fn orders(&self, token: &str, query: &[(&str, &str)]) -> TestResult<(StatusCode, Value)> {
        let response = self.get("/orders/v0/orders", token, query).await?;
        let status = response.status();
        Ok((status, response.json().await?))
    }
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn days_ago(days: i64) -> TestResult<String> {
    Ok(iso(t0()? - TimeDelta::days(days)))
}

fn error_code(body: &Value) -> &str {
    body["errors"][0]["code"].as_str().unwrap_or("")
}

fn order_ids(body: &Value) -> TestResult<Vec<String>> {
    let ids = body["payload"]["Orders"]
        .as_array()
        .ok_or("no payload.Orders array")?
        .iter()
        .map(|o| o["AmazonOrderId"].as_str().map(str::to_owned))
        .collect::<Option<Vec<String>>>()
        .ok_or("an order without AmazonOrderId")?;
    Ok(ids)
}

fn item(id: &str, cents: i64, tax_cents: i64) -> ScenarioItem {
    ScenarioItem {
        tax: Amount::from_cents(tax_cents),
        ..ScenarioItem::new(
            id,
            format!("SKU-{id}"),
            format!("B0{id:0>8}"),
            format!("Item {id}"),
            1,
            Amount::from_cents(cents),
        )
    }
}

/// 25 generated US orders (Shipped/Unshipped), 3 Pending US orders, 2 CA orders.
fn paging_scenario() -> Scenario {
    let mut orders: Vec<ScenarioOrder> = (0..25).map(ScenarioOrder::generated).collect();
    for (n, id) in [
        "119-0000001-0000001",
        "119-0000002-0000002",
        "119-0000003-0000003",
    ]
    .into_iter()
    .enumerate()
    {
        let mut o = ScenarioOrder::new(
            id,
            OrderStatus::Pending,
            FulfillmentChannel::Mfn,
            When::days_ago(n as i64 + 1),
        );
        o.items.push(item(&format!("9{n}"), 1000, 80));
        orders.push(o);
    }
    for id in ["701-0000001-0000001", "702-0000002-0000002"] {
        let mut o = ScenarioOrder::new(
            id,
            OrderStatus::Shipped,
            FulfillmentChannel::Afn,
            When::days_ago(2),
        );
        o.marketplace = CA.to_owned();
        o.items.push(item("77", 2000, 260));
        orders.push(o);
    }
    let mut scenario = Scenario::with_orders(orders);
    scenario.amazon.rate_limits = false;
    scenario
}

/// One Pending order with three items, one Shipped order with a buyer cancel request.
fn items_scenario() -> Scenario {
    let mut pending = ScenarioOrder::new(
        "113-0000001-0000001",
        OrderStatus::Pending,
        FulfillmentChannel::Mfn,
        When::days_ago(9),
    );
    pending.items = vec![item("1", 1999, 165), item("2", 500, 41), item("3", 750, 62)];
    let mut unshipped = ScenarioOrder::new(
        "113-0000002-0000002",
        OrderStatus::Unshipped,
        FulfillmentChannel::Mfn,
        When::days_ago(1),
    );
    let mut first = item("10", 1999, 165);
    first.quantity = 2;
    first.buyer_cancel_reason = Some("Found cheaper somewhere else.".to_owned());
    unshipped.items = vec![first, item("11", 500, 41)];
    unshipped.latest_ship = Some(When::from_now(TimeDelta::days(1)));
    let mut scenario = Scenario::with_orders(vec![pending, unshipped]);
    scenario.amazon.items_page_size = 2;
    scenario.amazon.rate_limits = false;
    scenario
}

// ---------------------------------------------------------------------------------------
// Login with Amazon

#[tokio::test]
async fn lwa_issues_tokens_from_form_and_json_bodies() -> TestResult {
    let h = start(Scenario::default()).await?;
    let response = h
        .lwa_form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &h.creds.refresh_token),
            ("client_id", &h.creds.client_id),
            ("client_secret", &h.creds.client_secret),
        ])
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await?;
    assert!(
        body["access_token"]
            .as_str()
            .ok_or("no access_token")?
            .starts_with("Atza|")
    );
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["refresh_token"], h.creds.refresh_token.as_str());

    let response = h
        .http
        .post(format!("{}/auth/o2/token", h.url))
        .json(&json!({
            "grant_type": "refresh_token",
            "refresh_token": h.creds.refresh_token,
            "client_id": h.creds.client_id,
            "client_secret": h.creds.client_secret,
        }))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let second: Value = response.json().await?;
    assert_ne!(second["access_token"], body["access_token"]);

    // Both tokens work.
    for token in [&body["access_token"], &second["access_token"]] {
        let (status, _) = h
            .orders(
                token.as_str().ok_or("no access_token")?,
                &[("MarketplaceIds", US), ("CreatedAfter", &days_ago(1)?)],
            )
            .await?;
        assert_eq!(status, StatusCode::OK);
    }
    h.sandbox.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn lwa_errors_look_like_lwa() -> TestResult {
    let h = start(Scenario::default()).await?;
    let c = h.creds.clone();
    // (form fields, expected status, expected `error`)
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", "Atzr|wrong"),
                ("client_id", &c.client_id),
                ("client_secret", &c.client_secret),
            ],
            400,
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", &c.refresh_token),
                ("client_id", &c.client_id),
                ("client_secret", "wrong"),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", &c.refresh_token),
                ("client_id", "amzn1.application-oa2-client.other"),
                ("client_secret", &c.client_secret),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("refresh_token", &c.refresh_token),
                ("client_id", &c.client_id),
                ("client_secret", &c.client_secret),
            ],
            400,
            "unsupported_grant_type",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", &c.client_id),
                ("client_secret", &c.client_secret),
            ],
            400,
            "invalid_request",
        ),
        (vec![], 400, "invalid_request"),
    ];
    for (fields, status, error) in cases {
        let response = h.lwa_form(&fields).await?;
        assert_eq!(response.status().as_u16(), status, "{fields:?}");
        let body: Value = response.json().await?;
        assert_eq!(body["error"], error, "{fields:?}");
        assert!(body["error_description"].as_str().is_some());
    }

    let response = h
        .http
        .post(format!("{}/auth/o2/token", h.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "invalid_request");
    Ok(())
}

#[tokio::test]
async fn access_tokens_expire_by_the_clock_and_can_be_revoked() -> TestResult {
    let h = start(Scenario::default()).await?;
    let query = [
        ("MarketplaceIds", US),
        ("CreatedAfter", "2026-11-01T00:00:00Z"),
    ];
    let token = h.token().await?;
    assert_eq!(h.orders(&token, &query).await?.0, StatusCode::OK);
    h.clock.advance(TimeDelta::seconds(3599));
    assert_eq!(h.orders(&token, &query).await?.0, StatusCode::OK);
    h.clock.advance(TimeDelta::seconds(2));
    assert_eq!(h.orders(&token, &query).await?.0, StatusCode::FORBIDDEN);

    let fresh = h.token().await?;
    assert_eq!(h.orders(&fresh, &query).await?.0, StatusCode::OK);
    h.sandbox.revoke_access_tokens();
    assert_eq!(h.orders(&fresh, &query).await?.0, StatusCode::FORBIDDEN);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Orders v0

#[tokio::test]
async fn orders_need_a_live_access_token() -> TestResult {
    let h = start(paging_scenario()).await?;
    let expected = json!({"errors":[{
        "code": "Unauthorized",
        "message": "Access to requested resource is denied.",
        "details": "The access token you provided is revoked, malformed or invalid."
    }]});

    let response = h
        .http
        .get(format!("{}/orders/v0/orders", h.url))
        .query(&[("MarketplaceIds", US), ("CreatedAfter", &days_ago(30)?)])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().contains_key("x-amzn-requestid"));
    assert!(!response.headers().contains_key("x-amzn-ratelimit-limit"));
    assert_eq!(response.json::<Value>().await?, expected);

    let (status, body) = h
        .orders(
            "Atza|forged",
            &[("MarketplaceIds", US), ("CreatedAfter", &days_ago(30)?)],
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, expected);

    for path in [
        "/orders/v0/orders/113-0000001-0000001",
        "/orders/v0/orders/113-0000001-0000001/orderItems",
    ] {
        assert_eq!(
            h.get(path, "Atza|forged", &[]).await?.status(),
            StatusCode::FORBIDDEN
        );
    }
    Ok(())
}

#[tokio::test]
async fn get_orders_pages_through_three_pages_keeping_the_filters() -> TestResult {
    let h = start(paging_scenario()).await?;
    let token = h.token().await?;
    let after = days_ago(30)?;
    let (status, first) = h
        .orders(
            &token,
            &[
                ("MarketplaceIds", US),
                ("LastUpdatedAfter", &after),
                ("OrderStatuses", "Shipped,Unshipped"),
                ("MaxResultsPerPage", "10"),
            ],
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        first["payload"]["LastUpdatedBefore"],
        iso(t0()? - TimeDelta::minutes(2))
    );
    assert!(first["payload"].get("CreatedBefore").is_none());

    let mut pages = vec![first];
    while let Some(next) = pages.last().ok_or("no pages")?["payload"]["NextToken"].as_str() {
        let next = next.to_owned();
        // Only MarketplaceIds is resent, and a different status: the token's filters rule.
        let (status, page) = h
            .orders(
                &token,
                &[
                    ("MarketplaceIds", US),
                    ("NextToken", &next),
                    ("OrderStatuses", "Pending"),
                ],
            )
            .await?;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages.push(page);
        assert!(pages.len() <= 3, "too many pages");
    }
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| order_ids(p).map(|ids| ids.len()))
        .collect::<TestResult<_>>()?;
    assert_eq!(sizes, vec![10, 10, 5]);

    let mut orders: Vec<&Value> = Vec::new();
    for page in &pages {
        orders.extend(
            page["payload"]["Orders"]
                .as_array()
                .ok_or("a page without Orders")?,
        );
    }
    let mut ids: Vec<&str> = orders
        .iter()
        .map(|o| o["AmazonOrderId"].as_str())
        .collect::<Option<_>>()
        .ok_or("an order without AmazonOrderId")?;
    for o in &orders {
        assert_eq!(o["MarketplaceId"], US);
        assert!(o["OrderStatus"] == "Shipped" || o["OrderStatus"] == "Unshipped");
    }
    let updated: Vec<&str> = orders
        .iter()
        .map(|o| o["LastUpdateDate"].as_str())
        .collect::<Option<_>>()
        .ok_or("an order without LastUpdateDate")?;
    let mut sorted = updated.clone();
    sorted.sort();
    assert_eq!(updated, sorted, "sorted by LastUpdateDate");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 25);

    // Marketplace filtering: CA alone, and both.
    let (_, ca) = h
        .orders(
            &token,
            &[("MarketplaceIds", CA), ("LastUpdatedAfter", &after)],
        )
        .await?;
    assert_eq!(order_ids(&ca)?.len(), 2);
    let (_, both) = h
        .orders(
            &token,
            &[
                ("MarketplaceIds", US),
                ("MarketplaceIds", CA),
                ("LastUpdatedAfter", &after),
                ("FulfillmentChannels", "AFN"),
            ],
        )
        .await?;
    // 13 generated AFN orders (even n) + 2 CA AFN orders.
    assert_eq!(order_ids(&both)?.len(), 15);

    // CreatedAfter windows use PurchaseDate and echo CreatedBefore.
    let (_, created) = h
        .orders(
            &token,
            &[
                ("MarketplaceIds", US),
                ("CreatedAfter", &days_ago(2)?),
                ("CreatedBefore", &days_ago(1)?),
            ],
        )
        .await?;
    assert_eq!(created["payload"]["CreatedBefore"], days_ago(1)?);
    for o in created["payload"]["Orders"]
        .as_array()
        .ok_or("no payload.Orders array")?
    {
        let purchased = o["PurchaseDate"]
            .as_str()
            .ok_or("an order without PurchaseDate")?;
        assert!(purchased >= days_ago(2)?.as_str() && purchased <= days_ago(1)?.as_str());
    }
    assert!(!order_ids(&created)?.is_empty());
    Ok(())
}

#[tokio::test]
async fn get_orders_validates_its_query() -> TestResult {
    let h = start(paging_scenario()).await?;
    let token = h.token().await?;
    let one_minute_ago = iso(t0()? - TimeDelta::minutes(1));
    let three_minutes_ago = iso(t0()? - TimeDelta::minutes(3));
    let after = days_ago(3)?;
    let bad: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("CreatedAfter", &after)], "MarketplaceIds"),
        (vec![("MarketplaceIds", US)], "CreatedAfter"),
        (
            vec![
                ("MarketplaceIds", US),
                ("CreatedAfter", &after),
                ("LastUpdatedAfter", &after),
            ],
            "not both",
        ),
        (
            vec![
                ("MarketplaceIds", US),
                ("LastUpdatedAfter", &after),
                ("LastUpdatedBefore", &one_minute_ago),
            ],
            "two minutes",
        ),
        (
            vec![
                ("MarketplaceIds", US),
                ("LastUpdatedAfter", &after),
                ("LastUpdatedBefore", "2026-11-01T00:00:00Z"),
            ],
            "equal to or after",
        ),
        (
            vec![
                ("MarketplaceIds", US),
                ("LastUpdatedAfter", &after),
                ("CreatedBefore", &three_minutes_ago),
            ],
            "CreatedBefore cannot",
        ),
        (
            vec![("MarketplaceIds", US), ("LastUpdatedAfter", "last tuesday")],
            "ISO 8601",
        ),
        (
            vec![
                ("MarketplaceIds", US),
                ("LastUpdatedAfter", &after),
                ("MaxResultsPerPage", "101"),
            ],
            "MaxResultsPerPage",
        ),
        (
            vec![
                ("MarketplaceIds", US),
                ("LastUpdatedAfter", &after),
                ("OrderStatuses", "Lost"),
            ],
            "OrderStatuses",
        ),
        (
            vec![("MarketplaceIds", US), ("NextToken", "not-a-token")],
            "NextToken",
        ),
        (
            vec![
                ("MarketplaceIds", US),
                ("NextToken", "eyJvcCI6ImdldE9yZGVyIn0="),
            ],
            "NextToken",
        ),
    ];
    for (query, needle) in bad {
        let (status, body) = h.orders(&token, &query).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}");
        assert_eq!(error_code(&body), "InvalidInput", "{query:?}");
        let message = body["errors"][0]["message"]
            .as_str()
            .ok_or("no error message")?;
        assert!(message.contains(needle), "{query:?}: {message}");
    }

    let (status, body) = h
        .orders(
            &token,
            &[
                ("MarketplaceIds", US),
                ("LastUpdatedAfter", &after),
                ("LastUpdatedBefore", &three_minutes_ago),
            ],
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["payload"]["LastUpdatedBefore"], three_minutes_ago);
    Ok(())
}

#[tokio::test]
async fn usage_plan_throttles_after_the_burst() -> TestResult {
    let mut scenario = paging_scenario();
    scenario.amazon.rate_limits = true;
    let h = start(scenario).await?;
    let token = h.token().await?;
    let query = [
        ("MarketplaceIds", US),
        ("CreatedAfter", "2026-11-01T00:00:00Z"),
    ];
    for n in 0..20 {
        let response = h.get("/orders/v0/orders", &token, &query).await?;
        assert_eq!(response.status(), StatusCode::OK, "call {n}");
        assert_eq!(response.headers()["x-amzn-ratelimit-limit"], "0.0167");
        assert!(response.headers().contains_key("x-amzn-requestid"));
    }
    let response = h.get("/orders/v0/orders", &token, &query).await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("x-amzn-requestid"));
    assert_eq!(
        response.json::<Value>().await?,
        json!({"errors":[{"code":"QuotaExceeded","message":"You exceeded your quota for the requested resource."}]})
    );

    // Other operations have their own bucket; switching enforcement off lets calls through.
    let id = h.sandbox.orders()[0].id.clone();
    let response = h
        .get(&format!("/orders/v0/orders/{id}"), &token, &[])
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-amzn-ratelimit-limit"], "0.5");
    h.sandbox.set_rate_limits(false);
    assert_eq!(
        h.get("/orders/v0/orders", &token, &query).await?.status(),
        StatusCode::OK
    );
    Ok(())
}

#[tokio::test]
async fn get_order_and_items_follow_the_contract() -> TestResult {
    let h = start(items_scenario()).await?;
    let token = h.token().await?;

    // Pending: no OrderTotal, no prices on items, two item pages of 2 + 1.
    let response = h
        .get("/orders/v0/orders/113-0000001-0000001", &token, &[])
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let order: Value = response.json().await?;
    let order = &order["payload"];
    assert_eq!(order["OrderStatus"], "Pending");
    assert_eq!(order["PurchaseDate"], days_ago(9)?);
    assert!(order.get("OrderTotal").is_none());
    assert_eq!(order["NumberOfItemsUnshipped"], 3);

    let path = "/orders/v0/orders/113-0000001-0000001/orderItems";
    let first: Value = h.get(path, &token, &[]).await?.json().await?;
    let items = first["payload"]["OrderItems"]
        .as_array()
        .ok_or("no payload.OrderItems array")?;
    assert_eq!(first["payload"]["AmazonOrderId"], "113-0000001-0000001");
    assert_eq!(items.len(), 2);
    for item in items {
        for hidden in ["ItemPrice", "ItemTax", "ShippingPrice", "IsGift"] {
            assert!(item.get(hidden).is_none(), "{hidden} shown while Pending");
        }
        assert!(item["ASIN"].is_string() && item["SellerSKU"].is_string());
    }
    let next = first["payload"]["NextToken"]
        .as_str()
        .ok_or("no NextToken")?;
    let second: Value = h
        .get(path, &token, &[("NextToken", next)])
        .await?
        .json()
        .await?;
    assert_eq!(
        second["payload"]["OrderItems"]
            .as_array()
            .ok_or("no payload.OrderItems array")?
            .len(),
        1
    );
    assert_eq!(second["payload"]["OrderItems"][0]["OrderItemId"], "3");
    assert!(second["payload"].get("NextToken").is_none());

    // A token for another order is refused.
    let other = h
        .get(
            "/orders/v0/orders/113-0000002-0000002/orderItems",
            &token,
            &[("NextToken", next)],
        )
        .await?;
    assert_eq!(other.status(), StatusCode::BAD_REQUEST);

    // Unshipped: prices, totals, and the buyer's cancel request as strings.
    let order: Value = h
        .get("/orders/v0/orders/113-0000002-0000002", &token, &[])
        .await?
        .json()
        .await?;
    // 2 x 19.99 + 1.65 + 5.00 + 0.41
    assert_eq!(
        order["payload"]["OrderTotal"],
        json!({"CurrencyCode": "USD", "Amount": "47.04"})
    );
    assert_eq!(
        order["payload"]["LatestShipDate"],
        iso(t0()? + TimeDelta::days(1))
    );
    assert_eq!(order["payload"]["NumberOfItemsUnshipped"], 3);
    let items: Value = h
        .get(
            "/orders/v0/orders/113-0000002-0000002/orderItems",
            &token,
            &[],
        )
        .await?
        .json()
        .await?;
    let first = &items["payload"]["OrderItems"][0];
    assert_eq!(
        first["ItemPrice"],
        json!({"CurrencyCode": "USD", "Amount": "39.98"})
    );
    assert_eq!(first["ItemTax"]["Amount"], "1.65");
    assert_eq!(
        first["BuyerRequestedCancel"],
        json!({"IsBuyerRequestedCancel": "true", "BuyerCancelReason": "Found cheaper somewhere else."})
    );
    assert_eq!(
        items["payload"]["OrderItems"][1]["BuyerRequestedCancel"]["IsBuyerRequestedCancel"],
        "false"
    );

    // Unknown and malformed ids.
    let missing = h
        .get("/orders/v0/orders/999-9999999-9999999", &token, &[])
        .await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&missing.json().await?), "NotFound");
    let missing = h
        .get(
            "/orders/v0/orders/999-9999999-9999999/orderItems",
            &token,
            &[],
        )
        .await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let malformed = h
        .get("/orders/v0/orders/TEST_CASE_200", &token, &[])
        .await?;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let unimplemented = h
        .get(
            "/orders/v0/orders/113-0000002-0000002/regulatedInfo",
            &token,
            &[],
        )
        .await?;
    assert_eq!(unimplemented.status(), StatusCode::NOT_FOUND);
    assert!(unimplemented.headers().contains_key("x-amzn-requestid"));

    // getOrders hides OrderTotal for the Pending order only.
    let (_, list) = h
        .orders(
            &token,
            &[("MarketplaceIds", US), ("CreatedAfter", &days_ago(30)?)],
        )
        .await?;
    for o in list["payload"]["Orders"]
        .as_array()
        .ok_or("no payload.Orders array")?
    {
        assert_eq!(o.get("OrderTotal").is_none(), o["OrderStatus"] == "Pending");
    }
    Ok(())
}

#[tokio::test]
async fn orders_can_change_while_running() -> TestResult {
    let h = start(items_scenario()).await?;
    let token = h.token().await?;
    h.clock.advance(TimeDelta::minutes(30));
    h.sandbox
        .set_order_status("113-0000001-0000001", OrderStatus::Canceled)?;
    h.clock.advance(TimeDelta::minutes(5));
    let since = iso(t0()? + TimeDelta::minutes(29));
    let (_, body) = h
        .orders(
            &token,
            &[("MarketplaceIds", US), ("LastUpdatedAfter", &since)],
        )
        .await?;
    let orders = body["payload"]["Orders"]
        .as_array()
        .ok_or("no payload.Orders array")?;
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["OrderStatus"], "Canceled");
    assert_eq!(
        orders[0]["LastUpdateDate"],
        iso(t0()? + TimeDelta::minutes(30))
    );

    h.sandbox.update_order("113-0000002-0000002", |o| {
        o.items[0].buyer_cancel_reason = None;
    })?;
    assert!(h.sandbox.orders()[1].items[0].buyer_cancel_reason.is_none());
    assert!(matches!(
        h.sandbox.update_order("113-9999999-9999999", |_| {}),
        Err(SandboxError::UnknownOrder(_))
    ));
    let mut added = ScenarioOrder::generated(7);
    added.id = "113-0000003-0000003".to_owned();
    h.sandbox.add_order(added.clone())?;
    assert!(h.sandbox.add_order(added).is_err());
    assert_eq!(h.sandbox.orders().len(), 3);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn fault_429_with_retry_after_then_normal() -> TestResult {
    let h = start(paging_scenario()).await?;
    let token = h.token().await?;
    h.sandbox
        .inject(Fault::status("getOrders", 429).retry_after(7));
    let query = [
        ("MarketplaceIds", US),
        ("CreatedAfter", "2026-11-01T00:00:00Z"),
    ];
    let response = h.get("/orders/v0/orders", &token, &query).await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");
    assert!(response.headers().contains_key("x-amzn-requestid"));
    assert_eq!(error_code(&response.json().await?), "QuotaExceeded");
    assert_eq!(
        h.get("/orders/v0/orders", &token, &query).await?.status(),
        StatusCode::OK
    );
    let journal = h.sandbox.journal();
    let faulted: Vec<_> = journal.iter().filter(|e| e.fault).collect();
    assert_eq!(faulted.len(), 1);
    assert_eq!(faulted[0].status, 429);
    assert_eq!(faulted[0].operation, "getOrders");
    Ok(())
}

#[tokio::test]
async fn fault_500_on_page_two_only() -> TestResult {
    let h = start(paging_scenario()).await?;
    let token = h.token().await?;
    h.sandbox.inject(Fault::status("getOrders", 500).on_page(2));
    let after = days_ago(30)?;
    let (status, first) = h
        .orders(
            &token,
            &[
                ("MarketplaceIds", US),
                ("LastUpdatedAfter", &after),
                ("MaxResultsPerPage", "10"),
            ],
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let next = first["payload"]["NextToken"]
        .as_str()
        .ok_or("no NextToken")?
        .to_owned();
    let page2 = [("MarketplaceIds", US), ("NextToken", next.as_str())];
    let (status, body) = h.orders(&token, &page2).await?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(&body), "InternalFailure");
    // The retry of page 2 succeeds and paging continues.
    let (status, second) = h.orders(&token, &page2).await?;
    assert_eq!(status, StatusCode::OK);
    let next = second["payload"]["NextToken"]
        .as_str()
        .ok_or("no NextToken")?
        .to_owned();
    let (status, _) = h
        .orders(&token, &[("MarketplaceIds", US), ("NextToken", &next)])
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(h.sandbox.pending_faults().is_empty());
    Ok(())
}

#[tokio::test]
async fn fault_malformed_body_and_times() -> TestResult {
    let h = start(items_scenario()).await?;
    let token = h.token().await?;
    let path = "/orders/v0/orders/113-0000002-0000002";
    h.sandbox.inject(Fault::malformed("getOrder"));
    let response = h.get(path, &token, &[]).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await?;
    assert!(!text.is_empty());
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    h.sandbox.inject(Fault::status("getOrder", 503).times(2));
    assert_eq!(
        h.get(path, &token, &[]).await?.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        h.get(path, &token, &[]).await?.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(h.get(path, &token, &[]).await?.status(), StatusCode::OK);

    // A delay alone gives a slow but normal answer.
    h.sandbox.inject(Fault::delay("getOrder", 300));
    let started = std::time::Instant::now();
    assert_eq!(h.get(path, &token, &[]).await?.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Faults on another operation or page do not fire; clear_faults empties the queue.
    h.sandbox
        .inject(Fault::status("getOrderItems", 500).on_page(2));
    assert_eq!(
        h.get(&format!("{path}/orderItems"), &token, &[])
            .await?
            .status(),
        StatusCode::OK
    );
    h.sandbox.clear_faults();
    assert!(h.sandbox.pending_faults().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_client_that_gives_up_during_a_delay_is_still_journaled() -> TestResult {
    let h = start(items_scenario()).await?;
    let token = h.token().await?;
    h.sandbox.inject(Fault::delay("getOrder", 400));
    let impatient = Client::builder()
        .timeout(Duration::from_millis(100))
        .build()?;
    let gave_up = impatient
        .get(format!("{}/orders/v0/orders/113-0000002-0000002", h.url))
        .header("x-amz-access-token", &token)
        .send()
        .await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_millis(700)).await;
    let journal = h.sandbox.journal();
    let entry = journal
        .iter()
        .find(|e| e.operation == "getOrder")
        .ok_or("no getOrder entry in the journal")?;
    assert!(entry.fault);
    // 499 if the server noticed the hang-up, else the 200 it finished writing.
    assert!(entry.status == 499 || entry.status == 200, "{entry:?}");
    Ok(())
}

#[tokio::test]
async fn faults_can_be_set_over_http() -> TestResult {
    let h = start(Scenario::default()).await?;
    let response = h
        .http
        .post(format!("{}/_sandbox/faults", h.url))
        .json(&json!([{"operation": "lwa.token", "status": 500}, {"operation": "chat.slack", "status": 429, "retry_after": 30}]))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.sandbox.pending_faults().len(), 2);

    let response = h.lwa_form(&[("grant_type", "refresh_token")]).await?;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.json::<Value>().await?["error"], "server_error");
    let response = h
        .http
        .post(format!("{}/hooks/slack/T000/B000/XXXX", h.url))
        .json(&json!({"text": "hello"}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "30");
    assert_eq!(response.text().await?, "rate_limited");

    let bad = h
        .http
        .post(format!("{}/_sandbox/faults", h.url))
        .json(&json!({"operation": "getOrders", "colour": "red"}))
        .send()
        .await?;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    h.http
        .post(format!("{}/_sandbox/faults", h.url))
        .json(&json!({"operation": "getOrders", "status": 500, "times": 5}))
        .send()
        .await?;
    let cleared = h
        .http
        .delete(format!("{}/_sandbox/faults", h.url))
        .send()
        .await?;
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert!(h.sandbox.pending_faults().is_empty());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Chat receivers and the journal

#[tokio::test]
async fn chat_receivers_and_journal_mask_secrets() -> TestResult {
    let h = start(items_scenario()).await?;
    let token = h.token().await?;
    h.get("/orders/v0/orders/113-0000002-0000002", &token, &[])
        .await?;

    let slack = format!("{}/hooks/slack/T000/B000/XXXX", h.url);
    let response = h
        .http
        .post(&slack)
        .json(&json!({"text": "Order 113-0000001-0000001 pending 9 days"}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.text().await?, "ok");
    let blocks =
        json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]});
    assert_eq!(
        h.http.post(&slack).json(&blocks).send().await?.status(),
        StatusCode::OK
    );
    for bad in [json!({}), json!({"text": ""}), json!(["text"])] {
        let response = h.http.post(&slack).json(&bad).send().await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.text().await?, "invalid_payload");
    }
    let response = h.http.post(&slack).body("text=hi").send().await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let teams = h
        .http
        .post(format!("{}/hooks/teams/workflows/abc", h.url))
        .json(&json!({"type": "message", "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {"type": "AdaptiveCard", "version": "1.4", "body": []}
        }]}))
        .send()
        .await?;
    assert_eq!(teams.status(), StatusCode::ACCEPTED);

    assert_eq!(h.sandbox.chat_posts("slack").len(), 2);
    assert_eq!(h.sandbox.chat_posts("teams").len(), 1);

    let journal = h.sandbox.journal();
    let operations: Vec<&str> = journal.iter().map(|e| e.operation.as_str()).collect();
    assert_eq!(
        operations,
        vec![
            "lwa.token",
            "getOrder",
            "chat.slack",
            "chat.slack",
            "chat.slack",
            "chat.slack",
            "chat.slack",
            "chat.slack",
            "chat.teams"
        ]
    );
    let seqs: Vec<u64> = journal.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<u64>>());
    let lwa = &journal[0];
    assert_eq!(lwa.method, "POST");
    assert_eq!(lwa.path, "/auth/o2/token");
    assert_eq!(lwa.status, 200);
    assert_eq!(lwa.at, t0()?);
    assert_eq!(lwa.body["client_secret"], MASK);
    assert_eq!(lwa.body["refresh_token"], MASK);
    assert_eq!(lwa.body["client_id"], h.creds.client_id.as_str());
    assert_eq!(journal[1].headers["x-amz-access-token"], MASK);
    assert_eq!(journal[1].path, "/orders/v0/orders/113-0000002-0000002");
    assert_eq!(
        journal[2].body["text"],
        "Order 113-0000001-0000001 pending 9 days"
    );
    assert_eq!(journal[6].status, 400);
    assert_eq!(journal[7].body, "text=hi");

    let everything = serde_json::to_string(&journal)?;
    for secret in [&h.creds.client_secret, &h.creds.refresh_token, &token] {
        assert!(!everything.contains(secret.as_str()), "leaked {secret}");
    }

    // The HTTP view of the journal, which does not journal itself.
    let lines = h
        .http
        .get(format!("{}/_sandbox/journal", h.url))
        .send()
        .await?
        .text()
        .await?;
    let parsed: Vec<JournalEntry> = lines
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(parsed, journal);
    assert_eq!(h.sandbox.journal().len(), 9);
    Ok(())
}

#[tokio::test]
async fn journal_file_gets_json_lines() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("journal.jsonl");
    let h = start_with(items_scenario(), Some(path.clone())).await?;
    let token = h.token().await?;
    h.get("/orders/v0/orders/113-0000001-0000001", &token, &[])
        .await?;
    h.get("/orders/v0/nothing", &token, &[("a", "b")]).await?;
    let text = std::fs::read_to_string(&path)?;
    let lines: Vec<JournalEntry> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines, h.sandbox.journal());
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2].operation, "unknown");
    assert_eq!(lines[2].status, 404);
    assert_eq!(lines[2].query, "a=b");
    assert!(!text.contains(&token));
    h.sandbox.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The shipped scenario

#[tokio::test]
async fn default_scenario_loads_and_polls_in_three_pages() -> TestResult {
    let scenario = default_scenario()?;
    let pending = scenario
        .amazon
        .orders
        .iter()
        .find(|o| o.id == "113-4829301-5520617")
        .ok_or("113-4829301-5520617 missing from the default scenario")?;
    assert_eq!(pending.status, OrderStatus::Pending);
    assert_eq!(pending.channel, FulfillmentChannel::Mfn);
    assert_eq!(pending.purchased, When::days_ago(9));
    assert_eq!(pending.last_updated, Some(When::days_ago(9)));
    assert_eq!(scenario.amazon.page_size, 10);
    let us = scenario
        .amazon
        .orders
        .iter()
        .filter(|o| o.marketplace == US)
        .count();
    assert_eq!(us, 25);

    // The file on disk is the one embedded.
    let on_disk = Scenario::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/default.yaml"
    ));
    assert_eq!(on_disk?, scenario);

    // Rate limits on, as shipped: a 30-day poll is 3 getOrders calls.
    let h = start(scenario).await?;
    let token = h.token().await?;
    let after = days_ago(30)?;
    let mut query = vec![
        ("MarketplaceIds".to_owned(), US.to_owned()),
        ("LastUpdatedAfter".to_owned(), after),
    ];
    let mut pages = Vec::new();
    loop {
        let pairs: Vec<(&str, &str)> = query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, page) = h.orders(&token, &pairs).await?;
        assert_eq!(status, StatusCode::OK, "{page}");
        let next = page["payload"]["NextToken"].as_str().map(str::to_owned);
        pages.push(page);
        match next {
            Some(next) => {
                query = vec![
                    ("MarketplaceIds".to_owned(), US.to_owned()),
                    ("NextToken".to_owned(), next),
                ];
            }
            None => break,
        }
    }
    let mut ids: Vec<String> = Vec::new();
    for page in &pages {
        ids.extend(order_ids(page)?);
    }
    assert_eq!(pages.len(), 3);
    assert_eq!(ids.len(), 24);
    assert!(ids.contains(&"113-4829301-5520617".to_owned()));
    assert!(!ids.iter().any(|id| id.starts_with("70")), "no CA orders");
    assert!(
        !ids.contains(&"113-8801264-3357019".to_owned()),
        "45-day-old order"
    );

    let pending: Value = h
        .get("/orders/v0/orders/113-4829301-5520617", &token, &[])
        .await?
        .json()
        .await?;
    assert_eq!(pending["payload"]["PurchaseDate"], days_ago(9)?);
    assert!(pending["payload"].get("OrderTotal").is_none());

    // Every order total equals the sum of its items, seen through the API.
    for id in &ids {
        let order: Value = h
            .get(&format!("/orders/v0/orders/{id}"), &token, &[])
            .await?
            .json()
            .await?;
        let Some(total) = order["payload"]["OrderTotal"]["Amount"].as_str() else {
            continue;
        };
        let items: Value = h
            .get(&format!("/orders/v0/orders/{id}/orderItems"), &token, &[])
            .await?
            .json()
            .await?;
        let sum: i64 = items["payload"]["OrderItems"]
            .as_array()
            .ok_or("no payload.OrderItems array")?
            .iter()
            .flat_map(|i| {
                ["ItemPrice", "ItemTax", "ShippingPrice", "ShippingTax"]
                    .map(|k| i[k]["Amount"].clone())
            })
            .map(|a| Amount::parse(a.as_str().unwrap_or("0")).map(Amount::cents))
            .sum::<Result<i64, _>>()?;
        assert_eq!(Amount::parse(total)?.cents(), sum, "{id}");
    }
    h.sandbox.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_stops_serving() -> TestResult {
    let h = start(Scenario::default()).await?;
    let url = h.url.clone();
    h.sandbox.shutdown().await;
    let refused = Client::new()
        .post(format!("{url}/auth/o2/token"))
        .send()
        .await;
    assert!(refused.is_err());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Messaging and Feeds

const PENDING: &str = "113-0000001-0000001";
const UNSHIPPED: &str = "113-0000002-0000002";
const SHIPPED: &str = "113-0000003-0000003";
const CANCELED: &str = "113-0000004-0000004";
const PARTLY: &str = "113-0000005-0000005";
const CA_SHIPPED: &str = "701-0000006-0000006";
const ACK: &str = "POST_ORDER_ACKNOWLEDGEMENT_DATA";
const ADJUST: &str = "POST_PAYMENT_ADJUSTMENT_DATA";
const XML: &str = "text/xml; charset=UTF-8";

/// One order per status that matters to Messaging and the order feeds.
/// Unshipped: items 10 (2 x 19.99, tax 1.65) and 11 (5.00). Shipped: item 20 (30.00,
/// tax 2.40).
fn actions_scenario() -> Scenario {
    let order = |id: &str, status: OrderStatus, items: Vec<ScenarioItem>| {
        let mut o = ScenarioOrder::new(id, status, FulfillmentChannel::Mfn, When::days_ago(2));
        o.items = items;
        o
    };
    let mut pair = item("10", 1999, 165);
    pair.quantity = 2;
    let mut ca = order(CA_SHIPPED, OrderStatus::Shipped, vec![item("60", 1000, 0)]);
    ca.marketplace = CA.to_owned();
    let mut scenario = Scenario::with_orders(vec![
        order(PENDING, OrderStatus::Pending, vec![item("1", 1000, 80)]),
        order(
            UNSHIPPED,
            OrderStatus::Unshipped,
            vec![pair, item("11", 500, 41)],
        ),
        order(SHIPPED, OrderStatus::Shipped, vec![item("20", 3000, 240)]),
        order(CANCELED, OrderStatus::Canceled, vec![item("40", 1000, 0)]),
        order(
            PARTLY,
            OrderStatus::PartiallyShipped,
            vec![item("50", 1000, 0)],
        ),
        ca,
    ]);
    scenario.amazon.rate_limits = false;
    scenario
}

impl Harness {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> TestResult<Response> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("x-amz-access-token", token)
            .query(query);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Ok(request.send().await?)
    }

    /// A message send as (status, body).
    async fn message(
        &self,
        token: &str,
        order: &str,
        kind: &str,
        body: Value,
    ) -> TestResult<(StatusCode, Value)> {
        let response = self
            .send(
                reqwest::Method::POST,
                &format!("/messaging/v1/orders/{order}/messages/{kind}"),
                token,
                &[("marketplaceIds", US)],
                Some(body),
            )
            .await?;
        let status = response.status();
        Ok((status, response.json().await?))
    }

    /// createFeedDocument, upload, createFeed; returns the feed id.
    async fn submit_feed(&self, token: &str, feed_type: &str, xml: &str) -> TestResult<String> {
        let document: Value = self
            .send(
                reqwest::Method::POST,
                "/feeds/2021-06-30/documents",
                token,
                &[],
                Some(json!({"contentType": XML})),
            )
            .await?
            .json()
            .await?;
        let url = document["url"].as_str().ok_or("no url")?;
        let uploaded = self
            .http
            .put(url)
            .header("content-type", XML)
            .body(xml.to_owned())
            .send()
            .await?;
        assert_eq!(uploaded.status(), StatusCode::OK);
        let created = self
            .send(
                reqwest::Method::POST,
                "/feeds/2021-06-30/feeds",
                token,
                &[],
                Some(json!({
                    "feedType": feed_type,
                    "marketplaceIds": [US],
                    "inputFeedDocumentId": document["feedDocumentId"],
                })),
            )
            .await?;
        assert_eq!(created.status(), StatusCode::ACCEPTED);
        let body: Value = created.json().await?;
        Ok(body["feedId"].as_str().ok_or("no feedId")?.to_owned())
    }

    /// A getFeeds page as (status, body).
    async fn list_feeds(
        &self,
        token: &str,
        query: Vec<(&'static str, String)>,
    ) -> TestResult<(StatusCode, Value)> {
        let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = self.get("/feeds/2021-06-30/feeds", token, &pairs).await?;
        let status = response.status();
        Ok((status, response.json().await?))
    }

    async fn feed(&self, token: &str, feed_id: &str) -> TestResult<Value> {
        let response = self
            .get(&format!("/feeds/2021-06-30/feeds/{feed_id}"), token, &[])
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        Ok(response.json().await?)
    }

    /// The processing report of a DONE feed, as text.
    async fn report(&self, token: &str, feed: &Value) -> TestResult<String> {
        let id = feed["resultFeedDocumentId"]
            .as_str()
            .ok_or("no resultFeedDocumentId")?;
        let document: Value = self
            .get(&format!("/feeds/2021-06-30/documents/{id}"), token, &[])
            .await?
            .json()
            .await?;
        let url = document["url"].as_str().ok_or("no url")?;
        let response = self.http.get(url).send().await?;
        assert_eq!(response.status(), StatusCode::OK);
        Ok(response.text().await?)
    }
}

fn envelope(message_type: &str, messages: &[String]) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<AmazonEnvelope \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:noNamespaceSchemaLocation=\"amzn-envelope.xsd\"><Header>\
         <DocumentVersion>1.01</DocumentVersion><MerchantIdentifier>M_SANDBOX</MerchantIdentifier>\
         </Header><MessageType>{message_type}</MessageType>{}</AmazonEnvelope>",
        messages.concat()
    )
}

/// An OrderAcknowledgement message; items are (code, cancel reason).
fn ack(id: u32, order: &str, status: &str, items: &[(&str, &str)]) -> String {
    let items: String = items
        .iter()
        .map(|(code, reason)| {
            format!(
                "<Item><AmazonOrderItemCode>{code}</AmazonOrderItemCode>\
                 <CancelReason>{reason}</CancelReason></Item>"
            )
        })
        .collect();
    format!(
        "<Message><MessageID>{id}</MessageID><OrderAcknowledgement>\
         <AmazonOrderID>{order}</AmazonOrderID><StatusCode>{status}</StatusCode>{items}\
         </OrderAcknowledgement></Message>"
    )
}

/// An OrderAdjustment message refunding one item.
fn refund(id: u32, order: &str, item: &str, reason: &str, principal: &str, tax: &str) -> String {
    format!(
        "<Message><MessageID>{id}</MessageID><OrderAdjustment><AmazonOrderID>{order}</AmazonOrderID>\
         <AdjustedItem><AmazonOrderItemCode>{item}</AmazonOrderItemCode>\
         <MerchantAdjustmentItemID>adj-{id}</MerchantAdjustmentItemID>\
         <AdjustmentReason>{reason}</AdjustmentReason><ItemPriceAdjustments>\
         <Component><Type>Principal</Type><Amount currency=\"USD\">{principal}</Amount></Component>\
         <Component><Type>Tax</Type><Amount currency=\"USD\">{tax}</Amount></Component>\
         </ItemPriceAdjustments></AdjustedItem></OrderAdjustment></Message>"
    )
}

fn action_names(body: &Value) -> TestResult<Vec<String>> {
    Ok(body["_links"]["actions"]
        .as_array()
        .ok_or("no _links.actions")?
        .iter()
        .map(|a| a["name"].as_str().unwrap_or("").to_owned())
        .collect())
}

#[tokio::test]
async fn messaging_actions_follow_the_order_status() -> TestResult {
    let h = start(actions_scenario()).await?;
    let token = h.token().await?;
    let cases: [(&str, &[&str]); 5] = [
        (PENDING, &[]),
        (CANCELED, &[]),
        (
            UNSHIPPED,
            &[
                "confirmOrderDetails",
                "confirmCustomizationDetails",
                "unexpectedProblem",
            ],
        ),
        (
            PARTLY,
            &[
                "confirmOrderDetails",
                "confirmCustomizationDetails",
                "unexpectedProblem",
            ],
        ),
        (
            SHIPPED,
            &[
                "confirmDeliveryDetails",
                "unexpectedProblem",
                "legalDisclosure",
                "invoice",
            ],
        ),
    ];
    for (order, expected) in cases {
        let path = format!("/messaging/v1/orders/{order}");
        let response = h.get(&path, &token, &[("marketplaceIds", US)]).await?;
        assert_eq!(response.status(), StatusCode::OK, "{order}");
        assert_eq!(response.headers()["content-type"], "application/hal+json");
        assert!(response.headers().contains_key("x-amzn-requestid"));
        let body: Value = response.json().await?;
        assert_eq!(action_names(&body)?, expected, "{order}");
        assert_eq!(
            body["_links"]["self"]["href"],
            format!("{path}?marketplaceIds={US}")
        );
        let embedded = body["_embedded"]["actions"]
            .as_array()
            .ok_or("no _embedded.actions")?;
        assert_eq!(embedded.len(), expected.len());
        for (action, name) in embedded.iter().zip(expected) {
            assert_eq!(action["_links"]["self"]["name"], *name);
            assert_eq!(
                action["_links"]["self"]["href"],
                format!("{path}/messages/{name}?marketplaceIds={US}")
            );
            assert!(action["_links"]["schema"]["href"].is_string());
            assert_eq!(action["payload"]["name"], *name);
        }
    }

    // marketplaceIds: required, exactly one, the order's own.
    let path = format!("/messaging/v1/orders/{UNSHIPPED}");
    for query in [
        vec![],
        vec![("marketplaceIds", "ATVPDKIKX0DER,A2EUQ1WTGCTBG2")],
    ] {
        let response = h.get(&path, &token, &query).await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query:?}");
        assert_eq!(error_code(&response.json().await?), "InvalidInput");
    }
    let other = h.get(&path, &token, &[("marketplaceIds", CA)]).await?;
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    let unknown = h
        .get(
            "/messaging/v1/orders/999-9999999-9999999",
            &token,
            &[("marketplaceIds", US)],
        )
        .await?;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&unknown.json().await?), "NotFound");
    let forged = h
        .get(&path, "Atza|forged", &[("marketplaceIds", US)])
        .await?;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // The buyer's locale follows the marketplace.
    for (order, marketplace, locale) in [(UNSHIPPED, US, "en-US"), (CA_SHIPPED, CA, "en-CA")] {
        let response = h
            .get(
                &format!("/messaging/v1/orders/{order}/attributes"),
                &token,
                &[("marketplaceIds", marketplace)],
            )
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.json::<Value>().await?,
            json!({"buyer": {"locale": locale}})
        );
    }
    let operations: Vec<String> = h
        .sandbox
        .journal()
        .into_iter()
        .map(|e| e.operation)
        .collect();
    assert!(operations.contains(&"getMessagingActionsForOrder".to_owned()));
    assert!(operations.contains(&"GetAttributes".to_owned()));
    Ok(())
}

#[tokio::test]
async fn messaging_sends_are_checked_then_recorded() -> TestResult {
    let h = start(actions_scenario()).await?;
    let token = h.token().await?;
    let text = "Your order is confirmed; it ships tomorrow.";
    let (status, body) = h
        .message(
            &token,
            UNSHIPPED,
            "confirmOrderDetails",
            json!({"text": text}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body, json!({}));

    // (order, type, body, what the message must mention)
    let long = |n: usize| "a".repeat(n);
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (UNSHIPPED, "confirmOrderDetails", json!({}), "text"),
        (
            UNSHIPPED,
            "confirmOrderDetails",
            json!({"text": ""}),
            "empty",
        ),
        (
            UNSHIPPED,
            "confirmOrderDetails",
            json!({"text": "  "}),
            "empty",
        ),
        (
            UNSHIPPED,
            "confirmOrderDetails",
            json!({"text": 5}),
            "string",
        ),
        (
            UNSHIPPED,
            "confirmOrderDetails",
            json!({"text": long(2001)}),
            "2000",
        ),
        (
            UNSHIPPED,
            "confirmCustomizationDetails",
            json!({"text": long(801)}),
            "800",
        ),
        (
            SHIPPED,
            "digitalAccessKey",
            json!({"text": long(401)}),
            "400",
        ),
        (
            UNSHIPPED,
            "unexpectedProblem",
            json!({"text": "Sorry, <b>delayed</b>"}),
            "HTML",
        ),
        (
            UNSHIPPED,
            "unexpectedProblem",
            json!({"text": "Write to help@ridgeline.example.com"}),
            "e-mail",
        ),
        (
            UNSHIPPED,
            "confirmDeliveryDetails",
            json!({"text": "It arrives Monday."}),
            "not available",
        ),
        (
            PENDING,
            "unexpectedProblem",
            json!({"text": "A problem."}),
            "not available",
        ),
        (
            CANCELED,
            "unexpectedProblem",
            json!({"text": "A problem."}),
            "not available",
        ),
        (
            SHIPPED,
            "invoice",
            json!({"attachments": []}),
            "attachments",
        ),
    ];
    for (order, kind, body, needle) in cases {
        let (status, answer) = h.message(&token, order, kind, body.clone()).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind} {body}");
        assert_eq!(error_code(&answer), "InvalidInput", "{kind} {body}");
        let message = answer["errors"][0]["message"].as_str().unwrap_or("");
        assert!(message.contains(needle), "{kind} {body}: {message}");
    }
    let (status, _) = h
        .message(&token, UNSHIPPED, "noSuchType", json!({"text": "x"}))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A full-length message, a comparison that is not HTML, an invoice on a shipped order.
    let (status, _) = h
        .message(
            &token,
            UNSHIPPED,
            "unexpectedProblem",
            json!({"text": format!("2 < 3 and 5 > 4 {}", long(1980))}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = h
        .message(
            &token,
            SHIPPED,
            "invoice",
            json!({"attachments": [{"uploadDestinationId": "u-1", "fileName": "invoice.pdf"}]}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);

    let sent = h.sandbox.messages(Some(UNSHIPPED));
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].order_id, UNSHIPPED);
    assert_eq!(sent[0].marketplace_id, US);
    assert_eq!(sent[0].message_type, "confirmOrderDetails");
    assert_eq!(sent[0].text, text);
    assert_eq!(sent[0].at, t0()?);
    assert_eq!(sent[1].message_type, "unexpectedProblem");
    let invoices = h.sandbox.messages(Some(SHIPPED));
    assert_eq!(invoices[0].attachments, vec!["invoice.pdf".to_owned()]);
    assert_eq!(h.sandbox.messages(None).len(), 3);

    let journal = h.sandbox.journal();
    let created: Vec<(&str, u16)> = journal
        .iter()
        .filter(|e| e.status == 201)
        .map(|e| (e.operation.as_str(), e.status))
        .collect();
    assert_eq!(
        created,
        vec![
            ("createConfirmOrderDetails", 201),
            ("createUnexpectedProblem", 201),
            ("sendInvoice", 201)
        ]
    );
    assert!(
        journal
            .iter()
            .any(|e| e.operation == "createDigitalAccessKey" && e.status == 400)
    );
    Ok(())
}

#[tokio::test]
async fn a_cancel_feed_cancels_the_order_once_processed() -> TestResult {
    let h = start(actions_scenario()).await?;
    let token = h.token().await?;
    let xml = envelope(
        "OrderAcknowledgement",
        &[ack(
            1,
            UNSHIPPED,
            "Failure",
            &[("10", "NoInventory"), ("11", "NoInventory")],
        )],
    );
    let feed_id = h.submit_feed(&token, ACK, &xml).await?;

    let queued = h.feed(&token, &feed_id).await?;
    assert_eq!(queued["feedId"], feed_id.as_str());
    assert_eq!(queued["feedType"], ACK);
    assert_eq!(queued["marketplaceIds"], json!([US]));
    assert_eq!(queued["createdTime"], iso(t0()?));
    assert_eq!(queued["processingStatus"], "IN_QUEUE");
    assert!(queued.get("resultFeedDocumentId").is_none());
    h.clock.advance(TimeDelta::seconds(29));
    assert_eq!(
        h.feed(&token, &feed_id).await?["processingStatus"],
        "IN_QUEUE"
    );
    assert_eq!(h.sandbox.orders()[1].status, OrderStatus::Unshipped);

    h.clock.advance(TimeDelta::seconds(2));
    let done = h.feed(&token, &feed_id).await?;
    let now = iso(t0()? + TimeDelta::seconds(31));
    assert_eq!(done["processingStatus"], "DONE");
    assert_eq!(done["processingStartTime"], now.as_str());
    assert_eq!(done["processingEndTime"], now.as_str());
    let report = h.report(&token, &done).await?;
    assert!(report.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    for part in [
        "<MessageType>ProcessingReport</MessageType>",
        "<MerchantIdentifier>M_SANDBOX</MerchantIdentifier>",
        &format!("<DocumentTransactionID>{feed_id}</DocumentTransactionID>"),
        "<StatusCode>Complete</StatusCode>",
        "<MessagesProcessed>1</MessagesProcessed>",
        "<MessagesSuccessful>1</MessagesSuccessful>",
        "<MessagesWithError>0</MessagesWithError>",
    ] {
        assert!(report.contains(part), "{part} missing from {report}");
    }
    assert!(!report.contains("<Result>"));

    // The poller sees the change: Canceled, updated when the feed was processed.
    let order: Value = h
        .get(&format!("/orders/v0/orders/{UNSHIPPED}"), &token, &[])
        .await?
        .json()
        .await?;
    assert_eq!(order["payload"]["OrderStatus"], "Canceled");
    assert_eq!(order["payload"]["LastUpdateDate"], now.as_str());

    // Processed exactly once.
    h.clock.advance(TimeDelta::minutes(5));
    let again = h.feed(&token, &feed_id).await?;
    assert_eq!(again["resultFeedDocumentId"], done["resultFeedDocumentId"]);
    assert_eq!(again["processingEndTime"], now.as_str());
    let feeds = h.sandbox.feeds();
    assert_eq!(feeds.len(), 1);
    assert_eq!(feeds[0].status, FeedStatus::Done);
    assert_eq!(feeds[0].feed_type, ACK);
    assert_eq!(feeds[0].input, xml);
    assert_eq!(feeds[0].report.as_deref(), Some(report.as_str()));
    assert_eq!(
        h.sandbox.orders()[1].last_updated,
        Some(When::At(t0()? + TimeDelta::seconds(31)))
    );
    Ok(())
}

#[tokio::test]
async fn feed_reports_list_each_failed_message() -> TestResult {
    let h = start(actions_scenario()).await?;
    let token = h.token().await?;
    h.sandbox.set_feed_processing_delay(Duration::from_secs(60));
    // Refunds: one good, one on a Pending order, one above what is left.
    let refunds = envelope(
        "OrderAdjustment",
        &[
            refund(1, SHIPPED, "20", "CustomerReturn", "20.00", "1.00"),
            refund(2, PENDING, "1", "CustomerReturn", "1.00", "0.08"),
            refund(3, SHIPPED, "20", "CustomerReturn", "10.01", "0.10"),
            refund(4, SHIPPED, "20", "Whim", "1.00", "0.10"),
            refund(5, SHIPPED, "20", "CustomerReturn", "10.00", "1.41"),
        ],
    );
    let refund_feed = h.submit_feed(&token, ADJUST, &refunds).await?;
    // Cancels: Pending, Shipped, Canceled, unknown item, bad reason, unknown order.
    let cancels = envelope(
        "OrderAcknowledgement",
        &[
            ack(1, PENDING, "Failure", &[("1", "NoInventory")]),
            ack(2, SHIPPED, "Failure", &[("20", "NoInventory")]),
            ack(3, CANCELED, "Failure", &[("40", "NoInventory")]),
            ack(4, UNSHIPPED, "Failure", &[("99", "NoInventory")]),
            ack(5, UNSHIPPED, "Failure", &[("10", "BecauseISaidSo")]),
            ack(6, "999-9999999-9999999", "Failure", &[("1", "NoInventory")]),
            ack(7, UNSHIPPED, "Success", &[]),
        ],
    );
    let cancel_feed = h.submit_feed(&token, ACK, &cancels).await?;
    h.clock.advance(TimeDelta::seconds(59));
    assert!(h.sandbox.refunds(None).is_empty());
    h.clock.advance(TimeDelta::seconds(1));

    let done = h.feed(&token, &refund_feed).await?;
    assert_eq!(done["processingStatus"], "DONE");
    let report = h.report(&token, &done).await?;
    for part in [
        "<MessagesProcessed>5</MessagesProcessed>",
        "<MessagesSuccessful>1</MessagesSuccessful>",
        "<MessagesWithError>4</MessagesWithError>",
        "<MessagesWithWarning>0</MessagesWithWarning>",
        "<Result><MessageID>2</MessageID><ResultCode>Error</ResultCode>\
         <ResultMessageCode>18028</ResultMessageCode>",
        &format!("<AdditionalInfo><AmazonOrderID>{PENDING}</AmazonOrderID></AdditionalInfo>"),
        "<Result><MessageID>3</MessageID>",
        "10.00 USD left",
        "<Result><MessageID>4</MessageID>",
        "Whim",
        "<Result><MessageID>5</MessageID>",
    ] {
        assert!(report.contains(part), "{part} missing from {report}");
    }
    assert!(!report.contains("<MessageID>1</MessageID><ResultCode>"));
    let applied = h.sandbox.refunds(Some(SHIPPED));
    assert_eq!(applied.len(), 1);
    let r = &applied[0];
    assert_eq!(
        (
            r.order_id.as_str(),
            r.item_code.as_str(),
            r.reason.as_str(),
            r.principal.as_str(),
            r.tax.as_deref(),
            r.currency.as_str()
        ),
        (
            SHIPPED,
            "20",
            "CustomerReturn",
            "20.00",
            Some("1.00"),
            "USD"
        )
    );
    assert_eq!(r.merchant_adjustment_item_id.as_deref(), Some("adj-1"));
    assert_eq!(r.feed_id, refund_feed);
    assert_eq!(r.at, t0()? + TimeDelta::seconds(60));
    assert!(h.sandbox.refunds(Some(PENDING)).is_empty());

    let done = h.feed(&token, &cancel_feed).await?;
    let report = h.report(&token, &done).await?;
    assert!(
        report.contains("<MessagesWithError>6</MessagesWithError>"),
        "{report}"
    );
    assert!(report.contains("<MessagesSuccessful>1</MessagesSuccessful>"));
    for (id, needle) in [
        (1, "Pending"),
        (2, "shipped"),
        (3, "already canceled"),
        (4, "99"),
        (5, "BecauseISaidSo"),
        (6, "not found"),
    ] {
        let start = report
            .find(&format!("<Result><MessageID>{id}</MessageID>"))
            .ok_or(format!("no Result for message {id}: {report}"))?;
        let result = &report[start..];
        let result = &result[..result.find("</Result>").unwrap_or(result.len())];
        assert!(result.contains(needle), "{id}: {result}");
    }
    let statuses: Vec<OrderStatus> = h.sandbox.orders().iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        actions_scenario()
            .amazon
            .orders
            .iter()
            .map(|o| o.status)
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test]
async fn feed_documents_need_the_signed_upload() -> TestResult {
    let h = start(actions_scenario()).await?;
    let token = h.token().await?;
    let create = |body: Value| {
        h.send(
            reqwest::Method::POST,
            "/feeds/2021-06-30/documents",
            &token,
            &[],
            Some(body),
        )
    };
    let bad = create(json!({})).await?;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&bad.json().await?), "InvalidInput");
    let response = create(json!({"contentType": XML})).await?;
    assert_eq!(response.status(), StatusCode::CREATED);
    let document: Value = response.json().await?;
    let id = document["feedDocumentId"].as_str().ok_or("no id")?;
    let url = document["url"].as_str().ok_or("no url")?;
    assert!(
        url.starts_with(&format!("{}/_sandbox/uploads/{id}?", h.url)),
        "{url}"
    );
    let signature = url::Url::parse(url)?
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-Signature")
        .map(|(_, v)| v.into_owned())
        .ok_or("no X-Amz-Signature")?;

    // createFeed before the upload is refused.
    let feed = |doc: &str| {
        h.send(
            reqwest::Method::POST,
            "/feeds/2021-06-30/feeds",
            &token,
            &[],
            Some(json!({"feedType": ACK, "marketplaceIds": [US], "inputFeedDocumentId": doc})),
        )
    };
    for doc in [id, "amzn1.tortuga.4.na.nope"] {
        let refused = feed(doc).await?;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{doc}");
    }

    let forged = url.replace(&signature, "00");
    let put = |to: String, content_type: &'static str| {
        h.http
            .put(to)
            .header("content-type", content_type)
            .body("<AmazonEnvelope/>")
            .send()
    };
    let refused = put(forged, XML).await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        refused
            .text()
            .await?
            .contains("<Code>SignatureDoesNotMatch</Code>")
    );
    let refused = put(url.to_owned(), "application/xml").await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let stored = put(url.to_owned(), XML).await?;
    assert_eq!(stored.status(), StatusCode::OK);
    assert!(stored.headers().contains_key("etag"));
    assert_eq!(feed(id).await?.status(), StatusCode::ACCEPTED);

    // The upload URL lasts five minutes.
    let late: Value = create(json!({"contentType": XML})).await?.json().await?;
    h.clock
        .advance(TimeDelta::minutes(5) + TimeDelta::seconds(1));
    let expired = put(late["url"].as_str().ok_or("no url")?.to_owned(), XML).await?;
    assert_eq!(expired.status(), StatusCode::FORBIDDEN);
    assert!(expired.text().await?.contains("expired"));

    // The journal names the upload and hides the signature.
    let journal = h.sandbox.journal();
    let uploads: Vec<&JournalEntry> = journal
        .iter()
        .filter(|e| e.operation == "uploadFeedDocument")
        .collect();
    assert_eq!(uploads.len(), 4);
    assert!(
        uploads
            .iter()
            .all(|e| e.query.contains("X-Amz-Signature=***"))
    );
    assert_eq!(uploads[2].body, "<AmazonEnvelope/>");
    let everything = serde_json::to_string(&journal)?;
    assert!(!everything.contains(&signature));
    Ok(())
}

#[tokio::test]
async fn get_feeds_lists_newest_first_in_pages() -> TestResult {
    let h = start(actions_scenario()).await?;
    let token = h.token().await?;
    let acknowledge = envelope("OrderAcknowledgement", &[ack(1, UNSHIPPED, "Success", &[])]);
    let adjust = envelope(
        "OrderAdjustment",
        &[refund(1, SHIPPED, "20", "CustomerReturn", "1.00", "0.08")],
    );
    let mut ids = Vec::new();
    for (feed_type, xml) in [
        (ACK, &acknowledge),
        (ADJUST, &adjust),
        (ACK, &acknowledge),
        (ACK, &acknowledge),
    ] {
        ids.push(h.submit_feed(&token, feed_type, xml).await?);
        h.clock.advance(TimeDelta::seconds(10));
    }
    let list = |query: Vec<(&'static str, String)>| h.list_feeds(&token, query);
    let feed_ids = |body: &Value| -> Vec<String> {
        body["feeds"]
            .as_array()
            .map(|feeds| {
                feeds
                    .iter()
                    .map(|f| f["feedId"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };

    let (status, first) = list(vec![
        ("feedTypes", ACK.to_owned()),
        ("pageSize", "2".to_owned()),
    ])
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(feed_ids(&first), vec![ids[3].clone(), ids[2].clone()]);
    let next = first["nextToken"]
        .as_str()
        .ok_or("no nextToken")?
        .to_owned();
    let (status, second) = list(vec![("nextToken", next.clone())]).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(feed_ids(&second), vec![ids[0].clone()]);
    assert!(second.get("nextToken").is_none());

    // Both types; statuses (the first two are DONE by now: 40 s, 30 s old).
    let (_, both) = list(vec![("feedTypes", format!("{ACK},{ADJUST}"))]).await?;
    assert_eq!(feed_ids(&both).len(), 4);
    let (_, done) = list(vec![
        ("feedTypes", format!("{ACK},{ADJUST}")),
        ("processingStatuses", "DONE".to_owned()),
    ])
    .await?;
    assert_eq!(feed_ids(&done), vec![ids[1].clone(), ids[0].clone()]);
    assert_eq!(done["feeds"][0]["processingStatus"], "DONE");
    let (_, recent) = list(vec![
        ("feedTypes", ACK.to_owned()),
        ("createdSince", iso(t0()? + TimeDelta::seconds(15))),
        ("marketplaceIds", US.to_owned()),
    ])
    .await?;
    assert_eq!(feed_ids(&recent), vec![ids[3].clone(), ids[2].clone()]);
    let (_, elsewhere) = list(vec![
        ("feedTypes", ACK.to_owned()),
        ("marketplaceIds", CA.to_owned()),
    ])
    .await?;
    assert!(feed_ids(&elsewhere).is_empty());

    for query in [
        vec![],
        vec![("nextToken", next), ("feedTypes", ACK.to_owned())],
        vec![("nextToken", "garbage".to_owned())],
        vec![("feedTypes", ACK.to_owned()), ("pageSize", "0".to_owned())],
        vec![
            ("feedTypes", ACK.to_owned()),
            ("processingStatuses", "BAD_VALUE".to_owned()),
        ],
    ] {
        let (status, body) = list(query.clone()).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}");
        assert_eq!(error_code(&body), "InvalidInput", "{query:?}");
    }

    // cancelFeed: only while IN_QUEUE.
    for (id, expected) in [
        (ids[3].as_str(), StatusCode::OK),
        (ids[0].as_str(), StatusCode::BAD_REQUEST),
        ("123", StatusCode::NOT_FOUND),
    ] {
        let path = format!("/feeds/2021-06-30/feeds/{id}");
        let response = h
            .send(reqwest::Method::DELETE, &path, &token, &[], None)
            .await?;
        assert_eq!(response.status(), expected, "{id}");
    }
    assert_eq!(
        h.feed(&token, &ids[3]).await?["processingStatus"],
        "CANCELLED"
    );
    Ok(())
}

#[tokio::test]
async fn reports_can_be_gzipped_and_bad_feeds_are_fatal() -> TestResult {
    let h = start(actions_scenario()).await?;
    let token = h.token().await?;
    h.sandbox.compress_reports(true);
    h.sandbox.set_feed_processing_delay(Duration::ZERO);
    let xml = envelope("OrderAcknowledgement", &[ack(1, UNSHIPPED, "Success", &[])]);
    let feed_id = h.submit_feed(&token, ACK, &xml).await?;
    let feed = h.feed(&token, &feed_id).await?;
    assert_eq!(feed["processingStatus"], "DONE");
    let id = feed["resultFeedDocumentId"].as_str().ok_or("no report")?;

    let document: Value = h
        .get(&format!("/feeds/2021-06-30/documents/{id}"), &token, &[])
        .await?
        .json()
        .await?;
    assert_eq!(document["compressionAlgorithm"], "GZIP");
    assert_eq!(
        document["url"],
        format!("{}/_sandbox/documents/{id}", h.url)
    );
    let bytes = h
        .http
        .get(document["url"].as_str().ok_or("no url")?)
        .send()
        .await?
        .bytes()
        .await?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)?;
    assert!(
        text.contains("<MessagesSuccessful>1</MessagesSuccessful>"),
        "{text}"
    );

    let encoded: Value = h
        .get(
            &format!("/feeds/2021-06-30/documents/{id}"),
            &token,
            &[("enableContentEncodingUrlHeader", "true")],
        )
        .await?
        .json()
        .await?;
    let response = h
        .http
        .get(encoded["url"].as_str().ok_or("no url")?)
        .send()
        .await?;
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let missing = h
        .get("/feeds/2021-06-30/documents/nope", &token, &[])
        .await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Another feed type, broken XML, the wrong MessageType: FATAL, no report.
    for (feed_type, xml) in [
        ("POST_ORDER_FULFILLMENT_DATA", xml.clone()),
        (ACK, "<AmazonEnvelope><Message>".to_owned()),
        (ACK, envelope("OrderAdjustment", &[])),
    ] {
        let feed_id = h.submit_feed(&token, feed_type, &xml).await?;
        let feed = h.feed(&token, &feed_id).await?;
        assert_eq!(feed["processingStatus"], "FATAL", "{feed_type} {xml}");
        assert!(feed.get("resultFeedDocumentId").is_none());
    }
    Ok(())
}

#[tokio::test]
async fn after_effect_faults_act_then_lose_the_answer() -> TestResult {
    let h = start(actions_scenario()).await?;
    let token = h.token().await?;
    h.sandbox
        .inject(Fault::status("createConfirmOrderDetails", 500).after_effect());
    let body = json!({"text": "Confirmed."});
    let (status, answer) = h
        .message(&token, UNSHIPPED, "confirmOrderDetails", body.clone())
        .await?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(&answer), "InternalFailure");
    assert_eq!(h.sandbox.messages(Some(UNSHIPPED)).len(), 1);
    // A plain fault does nothing upstream.
    h.sandbox
        .inject(Fault::status("createConfirmOrderDetails", 503));
    let (status, _) = h
        .message(&token, UNSHIPPED, "confirmOrderDetails", body.clone())
        .await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.sandbox.messages(Some(UNSHIPPED)).len(), 1);

    h.sandbox
        .inject(Fault::status("createFeed", 503).after_effect());
    let xml = envelope("OrderAcknowledgement", &[ack(1, UNSHIPPED, "Success", &[])]);
    let document: Value = h
        .send(
            reqwest::Method::POST,
            "/feeds/2021-06-30/documents",
            &token,
            &[],
            Some(json!({"contentType": XML})),
        )
        .await?
        .json()
        .await?;
    h.http
        .put(document["url"].as_str().ok_or("no url")?)
        .header("content-type", XML)
        .body(xml)
        .send()
        .await?;
    let lost = h
        .send(
            reqwest::Method::POST,
            "/feeds/2021-06-30/feeds",
            &token,
            &[],
            Some(json!({
                "feedType": ACK,
                "marketplaceIds": [US],
                "inputFeedDocumentId": document["feedDocumentId"],
            })),
        )
        .await?;
    assert_eq!(lost.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.sandbox.feeds().len(), 1);

    h.sandbox
        .inject(Fault::status("chat.slack", 500).after_effect());
    let response = h
        .http
        .post(format!("{}/hooks/slack/T/B/X", h.url))
        .json(&json!({"text": "hello"}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(h.sandbox.chat_posts("slack").len(), 1);
    let faulted: Vec<(String, u16)> = h
        .sandbox
        .journal()
        .into_iter()
        .filter(|e| e.fault)
        .map(|e| (e.operation, e.status))
        .collect();
    assert_eq!(
        faulted,
        vec![
            ("createConfirmOrderDetails".to_owned(), 500),
            ("createConfirmOrderDetails".to_owned(), 503),
            ("createFeed".to_owned(), 503),
            ("chat.slack".to_owned(), 500),
        ]
    );
    assert!(h.sandbox.pending_faults().is_empty());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Chat kinds

fn adaptive_card() -> Value {
    json!({"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "content": {
            "type": "AdaptiveCard",
            "version": "1.5",
            "body": [{"type": "TextBlock", "text": "Order pending 9 days"}]
        }
    }]})
}

#[tokio::test]
async fn every_chat_kind_checks_its_body() -> TestResult {
    let h = start(Scenario::default()).await?;
    let post = |kind: &str, body: Value| {
        h.http
            .post(format!("{}/hooks/{kind}/some/path", h.url))
            .json(&body)
            .send()
    };

    let teams = post("teams", adaptive_card()).await?;
    assert_eq!(teams.status(), StatusCode::ACCEPTED);
    assert!(teams.bytes().await?.is_empty());
    for bad in [
        json!({"type": "message", "attachments": []}),
        json!({"text": "hi"}),
        json!({"type": "message", "attachments": [{"contentType": "text/plain", "content": "x"}]}),
    ] {
        let response = post("teams", bad.clone()).await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    let discord = post("discord", json!({"content": "Order pending"})).await?;
    assert_eq!(discord.status(), StatusCode::NO_CONTENT);
    let embeds = post("discord", json!({"embeds": [{"title": "Pending"}]})).await?;
    assert_eq!(embeds.status(), StatusCode::NO_CONTENT);
    let waited = h
        .http
        .post(format!("{}/hooks/discord/1/abc?wait=true", h.url))
        .json(&json!({"content": "with wait"}))
        .send()
        .await?;
    assert_eq!(waited.status(), StatusCode::OK);
    assert_eq!(waited.json::<Value>().await?["content"], "with wait");
    let empty = post("discord", json!({"content": ""})).await?;
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        empty.json::<Value>().await?,
        json!({"message": "Cannot send an empty message", "code": 50006})
    );
    let long = post("discord", json!({"content": "x".repeat(2001)})).await?;
    assert_eq!(long.status(), StatusCode::BAD_REQUEST);
    assert_eq!(long.json::<Value>().await?["code"], 50035);
    let many = post(
        "discord",
        json!({"embeds": vec![json!({"title": "t"}); 11]}),
    )
    .await?;
    assert_eq!(many.status(), StatusCode::BAD_REQUEST);

    let google = h
        .http
        .post(format!(
            "{}/hooks/google_chat/v1/spaces/SPACE1/messages?key=K&token=T",
            h.url
        ))
        .json(&json!({"text": "Order pending"}))
        .send()
        .await?;
    assert_eq!(google.status(), StatusCode::OK);
    let message: Value = google.json().await?;
    assert!(
        message["name"]
            .as_str()
            .ok_or("no name")?
            .starts_with("spaces/SPACE1/messages/")
    );
    assert_eq!(message["text"], "Order pending");
    assert!(
        message["createTime"]
            .as_str()
            .ok_or("no createTime")?
            .starts_with("2026-11-20T12:00:00")
    );
    let cards = post(
        "google_chat",
        json!({"cardsV2": [{"cardId": "c", "card": {"header": {"title": "t"}}}]}),
    )
    .await?;
    assert_eq!(cards.status(), StatusCode::OK);
    for bad in [
        json!({}),
        json!({"text": " "}),
        json!({"cardsV2": [{"x": 1}]}),
    ] {
        let response = post("google_chat", bad.clone()).await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = response.json().await?;
        assert_eq!(body["error"]["code"], 400);
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    }

    assert_eq!(h.sandbox.chat_posts("teams"), vec![adaptive_card()]);
    assert_eq!(h.sandbox.chat_posts("discord").len(), 3);
    assert_eq!(h.sandbox.chat_posts("google_chat").len(), 2);
    let journal = h.sandbox.journal();
    let google = journal
        .iter()
        .find(|e| e.operation == "chat.google_chat")
        .ok_or("no chat.google_chat entry")?;
    assert_eq!(google.query, "key=***&token=***");
    Ok(())
}

fn sign(secret: &str, timestamp: &str, body: &str) -> TestResult<String> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(format!("{timestamp}.{body}").as_bytes());
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

#[tokio::test]
async fn the_signed_webhook_checks_and_deduplicates() -> TestResult {
    let h = start(Scenario::default()).await?;
    let now = t0()?.timestamp().to_string();
    let deliver = |timestamp: String, signature: Option<String>, key: &str, body: &str| {
        let mut request = h
            .http
            .post(format!("{}/hooks/webhook/nightdesk", h.url))
            .header("content-type", "application/json")
            .header("X-Nightdesk-Timestamp", timestamp)
            .header("Idempotency-Key", key)
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("X-Nightdesk-Signature", signature);
        }
        request.send()
    };
    let body = r#"{"event":"alert","order":"113-4829301-5520617"}"#;
    let good = sign(WEBHOOK_SECRET, &now, body)?;

    let first = deliver(now.clone(), Some(good.clone()), "key-1", body).await?;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.json::<Value>().await?["duplicate"], false);
    let again = deliver(now.clone(), Some(good.clone()), "key-1", body).await?;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await?, json!({"duplicate": true}));

    // Refused: no signature, the default secret, a tampered body, a stale or future time.
    let stale = (t0()?.timestamp() - 301).to_string();
    let future = (t0()?.timestamp() + 301).to_string();
    let cases = [
        (now.clone(), None, body),
        (
            now.clone(),
            Some(sign(DEFAULT_WEBHOOK_SECRET, &now, body)?),
            body,
        ),
        (now.clone(), Some(good.clone()), r#"{"event":"other"}"#),
        (now.clone(), Some("sha256=zz".to_owned()), body),
        (
            stale.clone(),
            Some(sign(WEBHOOK_SECRET, &stale, body)?),
            body,
        ),
        (
            future.clone(),
            Some(sign(WEBHOOK_SECRET, &future, body)?),
            body,
        ),
    ];
    for (timestamp, signature, body) in cases {
        let response = deliver(timestamp.clone(), signature.clone(), "key-2", body).await?;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{timestamp} {signature:?} {body}"
        );
    }
    // 300 s off is still fine.
    let edge = (t0()?.timestamp() - 300).to_string();
    let response = deliver(
        edge.clone(),
        Some(sign(WEBHOOK_SECRET, &edge, body)?),
        "key-3",
        body,
    )
    .await?;
    assert_eq!(response.status(), StatusCode::OK);

    assert_eq!(
        h.sandbox.webhook_effects(),
        vec![
            ("key-1".to_owned(), serde_json::from_str::<Value>(body)?),
            ("key-3".to_owned(), serde_json::from_str::<Value>(body)?),
        ]
    );
    assert_eq!(h.sandbox.chat_posts("webhook").len(), 2);
    let journal = h.sandbox.journal();
    assert_eq!(journal.len(), 9);
    assert!(journal.iter().all(|e| e.operation == "chat.webhook"));
    assert_eq!(journal[1].status, 200);
    assert_eq!(journal[0].headers["x-nightdesk-signature"], MASK);
    assert!(!serde_json::to_string(&journal)?.contains(&good));
    Ok(())
}

#[tokio::test]
async fn chat_faults_answer_in_each_service_shape() -> TestResult {
    let h = start(Scenario::default()).await?;
    h.sandbox
        .inject(Fault::status("chat.discord", 429).retry_after(3));
    h.sandbox
        .inject(Fault::status("chat.google_chat", 429).retry_after(5));
    h.sandbox.inject(Fault::status("chat.teams", 503));

    let discord = h
        .http
        .post(format!("{}/hooks/discord/1/abc", h.url))
        .json(&json!({"content": "hi"}))
        .send()
        .await?;
    assert_eq!(discord.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(discord.headers()["retry-after"], "3");
    assert_eq!(
        discord.json::<Value>().await?,
        json!({"message": "You are being rate limited.", "retry_after": 3.0, "global": false})
    );
    let google = h
        .http
        .post(format!("{}/hooks/google_chat/v1/spaces/S/messages", h.url))
        .json(&json!({"text": "hi"}))
        .send()
        .await?;
    assert_eq!(google.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(google.headers()["retry-after"], "5");
    assert_eq!(
        google.json::<Value>().await?["error"]["status"],
        "RESOURCE_EXHAUSTED"
    );
    let teams = h
        .http
        .post(format!("{}/hooks/teams/x", h.url))
        .json(&adaptive_card())
        .send()
        .await?;
    assert_eq!(teams.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(teams.json::<Value>().await?["error"]["code"].is_string());

    // Nothing was posted; the next post goes through.
    assert!(h.sandbox.chat_posts("discord").is_empty());
    let discord = h
        .http
        .post(format!("{}/hooks/discord/1/abc", h.url))
        .json(&json!({"content": "hi"}))
        .send()
        .await?;
    assert_eq!(discord.status(), StatusCode::NO_CONTENT);
    assert_eq!(h.sandbox.chat_posts("discord").len(), 1);
    Ok(())
}
