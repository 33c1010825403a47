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
            "/orders/v0/orders/113-0000002-0000002/buyerInfo",
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
