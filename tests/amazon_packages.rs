//! FBM parcels through Orders API 2026-01-01 getOrder (`includedData=PACKAGES`): the
//! connector's `order_packages` against the sandbox, on the SP-API client the daemon
//! builds; and every answer the sandbox gives for the operation (successes, each kind
//! of error) validated against `specs/amazon/orders_2026-01-01.json`, strictly: the
//! model's constraints with `jsonschema` (draft 4, formats checked), and no property
//! that its schema does not declare.

mod common;
#[path = "common/swagger.rs"]
mod swagger;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use common::{Harness, harnesses, t0};
use nightdesk::sandbox::{
    Amount, Fault, FulfillmentChannel, OrderStatus, Scenario, ScenarioItem, ScenarioOrder,
    ScenarioOrderPackage, When,
};
use nightdesk::sources::amazon::api::SpApi;
use nightdesk::sources::amazon::packages::{GET_ORDER_2026, OrderPackage, order_packages};
use reqwest::Client;
use serde_json::{Map, Value, json};
use swagger::Spec;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Shipped MFN, two parcels: UPS and USPS.
const FBM: &str = "113-7000001-0000001";
/// Unshipped MFN: no parcel yet.
const FBM_UNSHIPPED: &str = "113-7000002-0000002";
/// Shipped AFN: its parcels are Fulfillment Outbound's, never here.
const FBA: &str = "113-7000003-0000003";
/// Pending MFN: prices hidden.
const PENDING: &str = "113-7000004-0000004";
const UNKNOWN: &str = "113-7999999-9999999";

const UPS: &str = "1Z999AA10123456784";
const USPS: &str = "9400111899223100012345";

const PATH: &str = "/orders/2026-01-01/orders/{orderId}";
/// The model's `operationId` for [`PATH`] (Amazon calls it getOrder2026).
const GET_ORDER: &str = "getOrder";

fn item(n: u32) -> ScenarioItem {
    ScenarioItem::new(
        format!("{:014}", 70_000_000_000_000_u64 + u64::from(n)),
        format!("SKU-{n}"),
        format!("B0PKG{n:05}"),
        format!("Item {n}"),
        n,
        Amount::from_cents(1250),
    )
}

fn scenario() -> Scenario {
    let mut usps = ScenarioOrderPackage::new("USPS", USPS, When::hours_ago(5));
    usps.reference = Some("PKG-2".into());
    usps.shipping_service = Some("USPS Ground Advantage".into());
    usps.status = Some("IN_TRANSIT".into());
    usps.detailed_status = Some("PICKED_UP".into());
    let mut ups = ScenarioOrderPackage::new("UPS", UPS, When::days_ago(1));
    ups.shipping_service = Some("UPS Ground".into());
    let order = |id: &str, status, channel| ScenarioOrder {
        items: vec![item(1), item(2)],
        last_updated: Some(When::hours_ago(4)),
        earliest_ship: Some(When::days_ago(2)),
        latest_ship: Some(When::from_now(TimeDelta::days(1))),
        latest_delivery: Some(When::from_now(TimeDelta::days(5))),
        seller_order_id: Some(format!("RC-{id}")),
        prime: true,
        ..ScenarioOrder::new(id, status, channel, When::days_ago(3))
    };
    Scenario::with_orders(vec![
        ScenarioOrder {
            packages: vec![ups, usps],
            ship_category: Some("Expedited".into()),
            ..order(FBM, OrderStatus::Shipped, FulfillmentChannel::Mfn)
        },
        order(
            FBM_UNSHIPPED,
            OrderStatus::Unshipped,
            FulfillmentChannel::Mfn,
        ),
        order(FBA, OrderStatus::Shipped, FulfillmentChannel::Afn),
        ScenarioOrder {
            business: true,
            ..order(PENDING, OrderStatus::Pending, FulfillmentChannel::Mfn)
        },
    ])
}

/// The harness's account's SP-API client, built as the daemon builds it.
fn client(h: &Harness) -> Arc<SpApi> {
    h.sp_api().1
}

fn hours_before_t0(hours: i64) -> Option<DateTime<Utc>> {
    Some(t0() - TimeDelta::hours(hours))
}

#[tokio::test]
async fn fbm_parcels_come_with_carrier_tracking_number_and_ship_time() -> TestResult {
    for h in harnesses(&scenario()).await {
        let label = h.label();
        let api = client(&h);
        let packages = order_packages(&api, FBM).await?;
        assert_eq!(
            packages,
            vec![
                OrderPackage {
                    reference: "1".into(),
                    carrier: Some("UPS".into()),
                    tracking_number: Some(UPS.into()),
                    shipping_service: Some("UPS Ground".into()),
                    ship_time: hours_before_t0(24),
                    created_time: hours_before_t0(24),
                    status: Some("SHIPPED".into()),
                    detailed_status: None,
                },
                OrderPackage {
                    reference: "PKG-2".into(),
                    carrier: Some("USPS".into()),
                    tracking_number: Some(USPS.into()),
                    shipping_service: Some("USPS Ground Advantage".into()),
                    ship_time: hours_before_t0(5),
                    created_time: hours_before_t0(5),
                    status: Some("IN_TRANSIT".into()),
                    detailed_status: Some("PICKED_UP".into()),
                },
            ],
            "{label}"
        );
        // Not shipped yet, and fulfilled by Amazon: no packages, no error.
        assert!(
            order_packages(&api, FBM_UNSHIPPED).await?.is_empty(),
            "{label}"
        );
        assert!(order_packages(&api, FBA).await?.is_empty(), "{label}");

        // One call each, as getOrder2026 (not Orders v0 getOrder), asking for packages.
        let calls = h.journal(GET_ORDER_2026.name);
        assert_eq!(calls.len(), 3, "{label}");
        assert!(calls.iter().all(|c| c.status == 200), "{label}");
        assert!(
            calls
                .iter()
                .all(|c| c.query.contains("includedData=PACKAGES")),
            "{label}: {:?}",
            calls.iter().map(|c| &c.query).collect::<Vec<_>>()
        );
        assert!(h.journal("getOrder").is_empty(), "{label}");
        assert_eq!(h.sandbox.usage(GET_ORDER_2026.name).answered, 3, "{label}");
        // Amazon's stated rate is the plan's: the client paces to 0.5/s, burst 30.
        let pace = api.current_pace(GET_ORDER_2026.name);
        assert_eq!(
            pace.map(|p| (p.granted, p.burst)),
            Some((0.5, 30.0)),
            "{label}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_unknown_order_is_an_error_naming_it() -> TestResult {
    for h in harnesses(&scenario()).await {
        let label = h.label();
        let api = client(&h);
        let Err(error) = order_packages(&api, UNKNOWN).await else {
            panic!("{label}: an unknown order has packages")
        };
        let text = error.to_string();
        assert!(
            text.starts_with("getOrder2026: HTTP 404"),
            "{label}: {text}"
        );
        assert!(text.contains(UNKNOWN), "{label}: {text}");
        assert!(!error.is_malformed() && !error.is_credentials(), "{label}");
        // A 404 is not retried.
        assert_eq!(h.journal(GET_ORDER_2026.name).len(), 1, "{label}");

        // A 2xx body cut in half breaks the contract: malformed, naming the order.
        h.sandbox.inject(Fault::malformed(GET_ORDER_2026.name));
        let Err(error) = order_packages(&api, FBM).await else {
            panic!("{label}: a truncated body parsed")
        };
        assert!(error.is_malformed(), "{label}: {error}");
        assert!(error.to_string().contains(FBM), "{label}: {error}");
        // A 503 once is retried, then the packages come.
        h.sandbox.inject(Fault::status(GET_ORDER_2026.name, 503));
        assert_eq!(order_packages(&api, FBM).await?.len(), 2, "{label}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The contract

/// `orders_2026-01-01.json`, strictly checked (`common/swagger.rs`).
fn contract() -> Spec {
    let contract = Spec::load("orders_2026-01-01.json");
    assert_eq!(contract.doc["paths"][PATH]["get"]["operationId"], GET_ORDER);
    contract
}

#[test]
fn the_checker_refuses_wrong_bodies() -> TestResult {
    let contract = contract();
    let schema = contract.body_schema(GET_ORDER, 200)?;
    let good = json!({"order": {
        "orderId": FBM, "createdTime": "2026-11-20T10:00:00Z",
        "lastUpdatedTime": "2026-11-20T10:00:00Z",
        "salesChannel": {"channelName": "AMAZON"}, "orderItems": [],
        "packages": [{"packageReferenceId": "1", "packageStatus": {"status": "SHIPPED"}}],
    }});
    assert_eq!(contract.check_body(&schema, &good), Ok(()));
    for (pointer, value, what) in [
        (
            "/order/packages/0/surprise",
            json!(1),
            "an undeclared property",
        ),
        (
            "/order/packages/0/packageStatus/status",
            json!("LOST"),
            "a bad enum",
        ),
        (
            "/order/packages/0/shipTime",
            json!("yesterday"),
            "a bad date-time",
        ),
        ("/order/orderItems", json!({}), "an object for an array"),
    ] {
        let mut body = good.clone();
        let (parent, key) = pointer.rsplit_once('/').ok_or("pointer")?;
        if let Some(Value::Object(o)) = body.pointer_mut(parent) {
            o.insert(key.to_owned(), value);
        }
        assert!(
            contract.check_body(&schema, &body).is_err(),
            "{what} passed"
        );
    }
    let mut missing = good.clone();
    if let Some(Value::Object(o)) = missing.pointer_mut("/order") {
        o.remove("orderItems");
    }
    assert!(
        contract.check_body(&schema, &missing).is_err(),
        "a missing required field passed"
    );
    assert!(contract.body_schema(GET_ORDER, 401).is_err());
    Ok(())
}

/// One getOrder2026 call, its answer validated against the contract (status declared,
/// body per schema, `x-amzn-RequestId` always, a usable `x-amzn-RateLimit-Limit` on
/// 2xx).
async fn call(
    contract: &Spec,
    http: &Client,
    base: &str,
    token: Option<&str>,
    order_id: &str,
    included: Option<&str>,
) -> TestResult<(u16, Value)> {
    let mut request = http.get(format!("{base}/orders/2026-01-01/orders/{order_id}"));
    if let Some(included) = included {
        request = request.query(&[("includedData", included)]);
    }
    if let Some(token) = token {
        request = request.header("x-amz-access-token", token);
    }
    let response = request.send().await?;
    Ok(contract
        .read_answer(GET_ORDER, order_id, response, true)
        .await?)
}

#[tokio::test]
async fn every_answer_follows_the_contract() -> TestResult {
    let contract = contract();
    let Some(h) = harnesses(&scenario()).await.into_iter().next() else {
        panic!("no harness")
    };
    let base = h.sandbox.base_url();
    let http = Client::new();
    let creds = &h.scenario.amazon.credentials;
    let issued: Value = http
        .post(format!("{base}/auth/o2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", creds.refresh_token.as_str()),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.as_str()),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = issued["access_token"].as_str().ok_or("no access_token")?;
    let token = Some(token);
    let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
    let mut count = |status: u16| *seen.entry(status).or_default() += 1;

    // Every order with every includedData the sandbox answers, and without any.
    let all = "BUYER,RECIPIENT,PROCEEDS,EXPENSE,PROMOTION,CANCELLATION,FULFILLMENT,PACKAGES,TAX,PAYMENT,FULFILLMENT_ORDERS";
    for id in [FBM, FBM_UNSHIPPED, FBA, PENDING] {
        for included in [
            None,
            Some("PACKAGES"),
            Some("FULFILLMENT,PACKAGES"),
            Some(all),
        ] {
            let (status, body) = call(&contract, &http, &base, token, id, included).await?;
            assert_eq!(status, 200, "{id} {included:?}: {body}");
            count(status);
            let order = &body["order"];
            assert_eq!(order["orderId"], id);
            let wants = |d: &str| included.is_some_and(|i| i.split(',').any(|v| v == d));
            assert_eq!(
                order.get("fulfillment").is_some(),
                wants("FULFILLMENT"),
                "{id}: {body}"
            );
            let packages = order
                .get("packages")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let expected = if id == FBM && wants("PACKAGES") { 2 } else { 0 };
            assert_eq!(packages, expected, "{id} {included:?}: {body}");
        }
    }
    // The same dataset repeated as a parameter, not comma-joined.
    let repeated = http
        .get(format!(
            "{base}/orders/2026-01-01/orders/{FBM}?includedData=BUYER&includedData=PACKAGES"
        ))
        .header(
            "x-amz-access-token",
            issued["access_token"].as_str().unwrap_or_default(),
        )
        .send()
        .await?;
    // The plan's rate, as Amazon states it.
    let stated = repeated
        .headers()
        .get("x-amzn-ratelimit-limit")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(stated.as_deref(), Some("0.5"));
    let repeated: Value = repeated.json().await?;
    assert_eq!(
        contract.check_body(&contract.body_schema(GET_ORDER, 200)?, &repeated),
        Ok(())
    );
    assert_eq!(
        repeated["order"]["packages"].as_array().map(Vec::len),
        Some(2)
    );

    // The FBM order, in detail.
    let (_, body) = call(
        &contract,
        &http,
        &base,
        token,
        FBM,
        Some("FULFILLMENT,PACKAGES"),
    )
    .await?;
    let order: &Map<String, Value> = body["order"].as_object().ok_or("order")?;
    assert_eq!(order["fulfillment"]["fulfilledBy"], "MERCHANT");
    assert_eq!(order["fulfillment"]["fulfillmentServiceLevel"], "EXPEDITED");
    assert_eq!(order["orderAliases"][0]["aliasId"], format!("RC-{FBM}"));
    assert_eq!(order["programs"], json!(["PRIME"]));
    assert_eq!(order["packages"][0]["carrier"], "UPS");
    assert_eq!(order["packages"][1]["trackingNumber"], USPS);

    // Errors: a malformed id, a dataset outside the enum, no token, an unknown order.
    for (id, included, auth, status) in [
        ("TEST_CASE_400", Some("PACKAGES"), token, 400),
        (FBM, Some("PACKAGES,PARCELS"), token, 400),
        (FBM, Some("PACKAGES"), None, 403),
        (UNKNOWN, Some("PACKAGES"), token, 404),
    ] {
        let (answered, body) = call(&contract, &http, &base, auth, id, included).await?;
        assert_eq!(answered, status, "{id} {included:?}: {body}");
        count(answered);
    }
    let (_, body) = call(&contract, &http, &base, token, UNKNOWN, None).await?;
    assert!(body.to_string().contains(UNKNOWN), "{body}");

    // Faults in the SP-API error shape.
    for status in [429, 500, 503] {
        h.sandbox.inject(Fault::status(GET_ORDER_2026.name, status));
        let (answered, _) = call(&contract, &http, &base, token, FBM, Some("PACKAGES")).await?;
        assert_eq!(answered, status);
        count(answered);
    }
    // The usage plan: its own bucket, enforced.
    h.sandbox.set_usage_plan(GET_ORDER_2026.name, 0.001, 1.0);
    let (first, _) = call(&contract, &http, &base, token, FBM, Some("PACKAGES")).await?;
    let (second, _) = call(&contract, &http, &base, token, FBM, Some("PACKAGES")).await?;
    assert_eq!((first, second), (200, 429));
    assert_eq!(h.sandbox.usage(GET_ORDER_2026.name).throttled, 1);
    assert_eq!(
        h.sandbox.usage("getOrder").answered,
        0,
        "Orders v0 getOrder untouched"
    );

    // Every answer of the operation in the journal was one of the validated calls.
    let journaled = h.journal(GET_ORDER_2026.name).len();
    let validated: usize = seen.values().sum::<usize>() + 1 + 1 + 1 + 2;
    assert_eq!(journaled, validated, "{seen:?}");
    for status in [200, 400, 403, 404, 429, 500, 503] {
        assert!(
            seen.contains_key(&status),
            "no {status} validated: {seen:?}"
        );
    }
    Ok(())
}
