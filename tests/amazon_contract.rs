//! The sandbox against Amazon's published contracts (`specs/amazon/`): every
//! SP-API operation it serves is called, successes and errors alike, and every JSON
//! body is validated against the response schema the model declares for that
//! operation and status, with the `jsonschema` crate (draft 4, the dialect of Swagger
//! 2.0 schemas, formats checked), and then strictly: every property the sandbox emits
//! must be declared at its place in that schema, because the models rarely forbid
//! extra properties. The validator itself is tested on wrong bodies first.

#[path = "common/swagger.rs"]
mod swagger;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use nightdesk::clock::ManualClock;
use nightdesk::sandbox::{Fault, Sandbox, SandboxOptions, Scenario, default_scenario};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use swagger::Spec;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const US: &str = "ATVPDKIKX0DER";
/// Unshipped MFN, the buyer asked to cancel (default scenario).
const UNSHIPPED: &str = "113-9051847-2268310";
/// Shipped MFN (default scenario).
const SHIPPED: &str = "112-5502938-1174650";
/// Shipped AFN with three items (default scenario).
const THREE_ITEMS: &str = "111-9364072-5580231";

/// Every SP-API operation the sandbox serves.
const OPERATIONS: [&str; 26] = [
    "getOrders",
    "getOrder",
    "getOrderItems",
    "getOrderBuyerInfo",
    "getOrderAddress",
    "createRestrictedDataToken",
    "listAllFulfillmentOrders",
    "getFulfillmentOrder",
    "getPackageTrackingDetails",
    "getMessagingActionsForOrder",
    "GetAttributes",
    "confirmCustomizationDetails",
    "createConfirmDeliveryDetails",
    "createLegalDisclosure",
    "createConfirmOrderDetails",
    "createConfirmServiceDetails",
    "CreateWarranty",
    "createDigitalAccessKey",
    "createUnexpectedProblem",
    "sendInvoice",
    "createFeedDocument",
    "getFeedDocument",
    "createFeed",
    "getFeed",
    "getFeeds",
    "cancelFeed",
];

/// Operations whose model describes no usage plan.
const NO_USAGE_PLAN: [&str; 1] = ["sendInvoice"];

// ---------------------------------------------------------------------------------------
// The validator

/// The five models.
struct Specs {
    orders: Spec,
    tokens: Spec,
    fulfillment: Spec,
    messaging: Spec,
    feeds: Spec,
}

impl Specs {
    fn load() -> Specs {
        Specs {
            orders: Spec::load("ordersV0.json"),
            tokens: Spec::load("tokens_2021-03-01.json"),
            fulfillment: Spec::load("fulfillmentOutbound_2020-07-01.json"),
            messaging: Spec::load("messaging.json"),
            feeds: Spec::load("feeds_2021-06-30.json"),
        }
    }

    fn for_operation(&self, operation_id: &str) -> &Spec {
        [
            &self.orders,
            &self.tokens,
            &self.fulfillment,
            &self.messaging,
            &self.feeds,
        ]
        .into_iter()
        .find(|spec| spec.responses(operation_id).is_some())
        .unwrap_or(&self.orders)
    }
}

#[test]
fn the_validator_refuses_wrong_bodies() {
    let specs = Specs::load();
    let orders = &specs.orders;
    let Ok(Some(schema)) = orders.response_schema("getOrders", 200) else {
        panic!("no getOrders 200 schema");
    };
    let order = json!({
        "AmazonOrderId": "113-4829301-5520617",
        "PurchaseDate": "2026-11-20T10:15:00Z",
        "LastUpdateDate": "2026-11-20T10:15:00Z",
        "OrderStatus": "Unshipped",
        "NumberOfItemsShipped": 0,
        "ShippingAddress": {"Name": "Jane", "City": "Seattle", "AddressType": "Residential"},
    });
    let good = json!({"payload": {"Orders": [order], "NextToken": "abc"}});
    assert_eq!(orders.check_body(&schema, &good), Ok(()));

    let with = |pointer: &str, value: Value| {
        let mut body = good.clone();
        if let Some(slot) = body.pointer_mut(pointer) {
            *slot = value;
        }
        body
    };
    let mut extra = good.clone();
    if let Some(Value::Object(o)) = extra.pointer_mut("/payload/Orders/0") {
        o.insert("Surprise".into(), json!(true));
    }
    if let Some(Value::Object(o)) = extra.pointer_mut("/payload/Orders/0/ShippingAddress") {
        o.insert("Street".into(), json!("1 Main St"));
    }
    let Err(problems) = orders.check_body(&schema, &extra) else {
        panic!("undeclared properties passed");
    };
    assert!(
        problems.contains("/payload/Orders/0/Surprise is not declared"),
        "{problems}"
    );
    assert!(
        problems.contains("/payload/Orders/0/ShippingAddress/Street is not declared"),
        "{problems}"
    );

    for (pointer, value, what) in [
        (
            "/payload/Orders/0/NumberOfItemsShipped",
            json!("0"),
            "a number as a string",
        ),
        (
            "/payload/Orders/0/OrderStatus",
            json!("Lost"),
            "a status outside the enum",
        ),
        (
            "/payload/Orders/0/OrderStatus",
            json!(null),
            "a null required field",
        ),
        (
            "/payload/Orders/0/ShippingAddress/AddressType",
            json!("Home"),
            "a bad enum",
        ),
        ("/payload/Orders", json!({}), "an object for an array"),
    ] {
        assert!(
            orders.check_body(&schema, &with(pointer, value)).is_err(),
            "{what} passed"
        );
    }
    let mut missing = good.clone();
    if let Some(Value::Object(o)) = missing.pointer_mut("/payload/Orders/0") {
        o.remove("AmazonOrderId");
    }
    assert!(
        orders.check_body(&schema, &missing).is_err(),
        "a missing required field passed"
    );

    // An error body where a payload belongs, and the other way round, in another model.
    let fba = &specs.fulfillment;
    let Ok(Some(tracking)) = fba.response_schema("getPackageTrackingDetails", 200) else {
        panic!("no tracking schema");
    };
    let event = json!({
        "eventDate": "2026-11-20T10:15:00Z",
        "eventAddress": {"city": "Phoenix", "state": "AZ", "country": "US", "zip": "85001"},
        "eventCode": "EVENT_301",
        "eventDescription": "Delivered.",
    });
    let body = json!({"payload": {"packageNumber": 1, "trackingEvents": [event]}});
    let Err(problems) = fba.check_body(&tracking, &body) else {
        panic!("an undeclared tracking field passed");
    };
    assert!(
        problems.contains("/payload/trackingEvents/0/eventAddress/zip"),
        "{problems}"
    );
    assert!(
        fba.check_body(&tracking, &json!({"payload": {"packageNumber": "1"}}))
            .is_err()
    );
    // `Timestamp` is `format: date-time` in this model (Orders v0 dates are plain
    // strings): formats are checked.
    assert!(
        fba.check_body(
            &tracking,
            &json!({"payload": {"packageNumber": 1, "shipDate": "2026-11-20T10:15:00Z"}})
        )
        .is_ok()
    );
    assert!(
        fba.check_body(
            &tracking,
            &json!({"payload": {"packageNumber": 1, "shipDate": "yesterday"}})
        )
        .is_err(),
        "a bad date-time passed"
    );
    let Ok(Some(feed_error)) = specs.feeds.response_schema("getFeed", 404) else {
        panic!("no getFeed 404 schema");
    };
    assert!(
        specs
            .feeds
            .check_body(&feed_error, &json!({"errors": []}))
            .is_ok()
    );
    assert!(
        specs
            .feeds
            .check_body(&feed_error, &json!({"payload": {}}))
            .is_err()
    );
    assert!(
        specs
            .feeds
            .check_body(&feed_error, &json!({"errors": [{"code": "NotFound"}]}))
            .is_err()
    );
    // A status the model does not declare is refused too.
    assert!(
        specs
            .feeds
            .response_schema("createFeedDocument", 401)
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------
// The sandbox under contract

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A sandbox on loopback, a client, and what was checked so far.
struct Contract {
    specs: Specs,
    sandbox: Sandbox,
    clock: ManualClock,
    http: Client,
    url: String,
    /// (operation, status) pairs validated.
    checked: Mutex<BTreeSet<(String, u16)>>,
}

/// One answer.
struct Answer {
    status: u16,
    body: Value,
}

impl Contract {
    async fn start(scenario: Scenario) -> TestResult<Contract> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let clock = ManualClock::new(t0());
        let sandbox = Sandbox::start(
            listener,
            SandboxOptions::new(scenario, Arc::new(clock.clone())),
        )
        .await?;
        let url = sandbox.base_url();
        Ok(Contract {
            specs: Specs::load(),
            sandbox,
            clock,
            http: Client::new(),
            url,
            checked: Mutex::new(BTreeSet::new()),
        })
    }

    /// Calls `operation` and validates the answer against its model: the status must be
    /// one the model declares, the body must match that status's schema (or be empty
    /// when it has none), every answer carries `x-amzn-RequestId` and every 2xx
    /// `x-amzn-RateLimit-Limit`. Fails the test otherwise.
    async fn call(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> TestResult<Answer> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .query(query);
        if let Some(token) = token {
            request = request.header("x-amz-access-token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        // "when available": sendInvoice has no usage plan in its model, so no rate.
        let stated_rate = !NO_USAGE_PLAN.contains(&operation);
        let (status, body) = self
            .specs
            .for_operation(operation)
            .read_answer(operation, operation, response, stated_rate)
            .await?;
        if let Ok(mut checked) = self.checked.lock() {
            checked.insert((operation.to_owned(), status));
        }
        Ok(Answer { status, body })
    }

    async fn get(
        &self,
        operation: &str,
        path: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
    ) -> TestResult<Answer> {
        self.call(operation, Method::GET, path, token, query, None)
            .await
    }

    async fn access_token(&self, scenario: &Scenario) -> TestResult<String> {
        let creds = &scenario.amazon.credentials;
        let response = self
            .http
            .post(format!("{}/auth/o2/token", self.url))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", creds.refresh_token.as_str()),
                ("client_id", creds.client_id.as_str()),
                ("client_secret", creds.client_secret.as_str()),
            ])
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await?;
        Ok(body["access_token"]
            .as_str()
            .ok_or("no access_token")?
            .to_owned())
    }

    fn checked(&self) -> BTreeSet<(String, u16)> {
        self.checked.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

fn expect(answer: &Answer, status: u16, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
}

fn text<'a>(value: &'a Value, pointer: &str) -> TestResult<&'a str> {
    Ok(value
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no string at {pointer} in {value}"))?)
}

#[tokio::test]
async fn every_sp_api_operation_answers_as_its_model_says() -> TestResult {
    let mut scenario = default_scenario()?;
    scenario.amazon.items_page_size = 2;
    scenario.amazon.fulfillment_page_size = 2;
    let c = Contract::start(scenario.clone()).await?;
    let token = c.access_token(&scenario).await?;
    let token = Some(token.as_str());
    let after = iso(t0() - TimeDelta::days(30));

    // ---- Orders v0
    let page1 = c
        .get(
            "getOrders",
            "/orders/v0/orders",
            token,
            &[("MarketplaceIds", US), ("CreatedAfter", &after)],
        )
        .await?;
    expect(&page1, 200, "getOrders page 1");
    let next = text(&page1.body, "/payload/NextToken")?;
    let page2 = c
        .get(
            "getOrders",
            "/orders/v0/orders",
            token,
            &[("MarketplaceIds", US), ("NextToken", next)],
        )
        .await?;
    expect(&page2, 200, "getOrders page 2");
    let bad = c
        .get(
            "getOrders",
            "/orders/v0/orders",
            token,
            &[("CreatedAfter", &after)],
        )
        .await?;
    expect(&bad, 400, "getOrders without MarketplaceIds");
    let denied = c
        .get(
            "getOrders",
            "/orders/v0/orders",
            None,
            &[("MarketplaceIds", US), ("CreatedAfter", &after)],
        )
        .await?;
    expect(&denied, 403, "getOrders without a token");

    for id in [UNSHIPPED, SHIPPED, THREE_ITEMS, "113-4829301-5520617"] {
        let order = c
            .get("getOrder", &format!("/orders/v0/orders/{id}"), token, &[])
            .await?;
        expect(&order, 200, id);
    }
    let missing = c
        .get(
            "getOrder",
            "/orders/v0/orders/113-0000000-0000000",
            token,
            &[],
        )
        .await?;
    expect(&missing, 404, "getOrder of an unknown order");
    let malformed = c
        .get("getOrder", "/orders/v0/orders/TEST_CASE_200", token, &[])
        .await?;
    expect(&malformed, 400, "getOrder of a malformed id");

    let items_path = format!("/orders/v0/orders/{THREE_ITEMS}/orderItems");
    let items1 = c.get("getOrderItems", &items_path, token, &[]).await?;
    expect(&items1, 200, "getOrderItems page 1");
    let next = text(&items1.body, "/payload/NextToken")?;
    let items2 = c
        .get("getOrderItems", &items_path, token, &[("NextToken", next)])
        .await?;
    expect(&items2, 200, "getOrderItems page 2");
    assert!(items2.body["payload"].get("NextToken").is_none());
    let bad = c
        .get(
            "getOrderItems",
            &items_path,
            token,
            &[("NextToken", "garbled")],
        )
        .await?;
    expect(&bad, 400, "getOrderItems with a garbled NextToken");

    // ---- Tokens and restricted data
    let rdt_path = "/tokens/2021-03-01/restrictedDataToken";
    let issued = c
        .call(
            "createRestrictedDataToken",
            Method::POST,
            rdt_path,
            token,
            &[],
            Some(json!({
                "targetApplication": "amzn1.sellerapps.app.target-application",
                "restrictedResources": [
                    {"method": "GET", "path": "/orders/v0/orders", "dataElements": ["buyerInfo", "shippingAddress"]},
                    {"method": "GET", "path": "/orders/v0/orders/{orderId}", "dataElements": ["buyerInfo", "shippingAddress"]},
                    {"method": "GET", "path": "/orders/v0/orders/{orderId}/buyerInfo"},
                    {"method": "GET", "path": "/orders/v0/orders/{orderId}/address"},
                ],
            })),
        )
        .await?;
    expect(&issued, 200, "createRestrictedDataToken");
    let rdt = text(&issued.body, "/restrictedDataToken")?.to_owned();
    let rdt = Some(rdt.as_str());
    let refused = c
        .call(
            "createRestrictedDataToken",
            Method::POST,
            rdt_path,
            token,
            &[],
            Some(json!({"restrictedResources": [{"method": "", "path": "/orders/v1/orders/902-1845936-5435065/address"}]})),
        )
        .await?;
    expect(
        &refused,
        400,
        "createRestrictedDataToken with an empty method",
    );
    let refused = c
        .call(
            "createRestrictedDataToken",
            Method::POST,
            rdt_path,
            None,
            &[],
            Some(json!({"restrictedResources": []})),
        )
        .await?;
    expect(&refused, 403, "createRestrictedDataToken without a token");

    let restricted = c
        .get(
            "getOrders",
            "/orders/v0/orders",
            rdt,
            &[("MarketplaceIds", US), ("CreatedAfter", &after)],
        )
        .await?;
    expect(&restricted, 200, "getOrders with an RDT");
    let orders = restricted.body["payload"]["Orders"]
        .as_array()
        .ok_or("no Orders")?;
    assert!(orders.iter().all(|o| o.get("BuyerInfo").is_some()));
    assert!(orders.iter().any(|o| o.get("ShippingAddress").is_some()));
    for id in [UNSHIPPED, SHIPPED] {
        let order = c
            .get("getOrder", &format!("/orders/v0/orders/{id}"), rdt, &[])
            .await?;
        expect(&order, 200, "getOrder with an RDT");
        assert!(order.body["payload"].get("ShippingAddress").is_some());
        let buyer = c
            .get(
                "getOrderBuyerInfo",
                &format!("/orders/v0/orders/{id}/buyerInfo"),
                rdt,
                &[],
            )
            .await?;
        expect(&buyer, 200, "getOrderBuyerInfo");
        let address = c
            .get(
                "getOrderAddress",
                &format!("/orders/v0/orders/{id}/address"),
                rdt,
                &[],
            )
            .await?;
        expect(&address, 200, "getOrderAddress");
        assert!(address.body["payload"].get("ShippingAddress").is_some());
    }
    let denied = c
        .get(
            "getOrderAddress",
            &format!("/orders/v0/orders/{SHIPPED}/address"),
            token,
            &[],
        )
        .await?;
    expect(&denied, 403, "getOrderAddress with an LWA token");
    let denied = c
        .get(
            "getOrderBuyerInfo",
            &format!("/orders/v0/orders/{SHIPPED}/buyerInfo"),
            token,
            &[],
        )
        .await?;
    expect(&denied, 403, "getOrderBuyerInfo with an LWA token");
    let missing = c
        .get(
            "getOrderAddress",
            "/orders/v0/orders/113-0000000-0000000/address",
            rdt,
            &[],
        )
        .await?;
    expect(&missing, 404, "getOrderAddress of an unknown order");
    let malformed = c
        .get(
            "getOrderBuyerInfo",
            "/orders/v0/orders/TEST_CASE_400/buyerInfo",
            rdt,
            &[],
        )
        .await?;
    expect(&malformed, 400, "getOrderBuyerInfo of a malformed id");

    // ---- Fulfillment Outbound
    let fba = "/fba/outbound/2020-07-01";
    let start = iso(t0() - TimeDelta::days(30));
    let list = c
        .get(
            "listAllFulfillmentOrders",
            &format!("{fba}/fulfillmentOrders"),
            token,
            &[("queryStartDate", &start)],
        )
        .await?;
    expect(&list, 200, "listAllFulfillmentOrders");
    let mut ids: Vec<String> = Vec::new();
    let mut listing = list.body;
    loop {
        for order in listing["payload"]["fulfillmentOrders"]
            .as_array()
            .ok_or("no fulfillmentOrders")?
        {
            ids.push(text(order, "/sellerFulfillmentOrderId")?.to_owned());
        }
        let Some(next) = listing["payload"]["nextToken"].as_str() else {
            break;
        };
        let page = c
            .get(
                "listAllFulfillmentOrders",
                &format!("{fba}/fulfillmentOrders"),
                token,
                &[("nextToken", next)],
            )
            .await?;
        expect(&page, 200, "listAllFulfillmentOrders next page");
        listing = page.body;
    }
    assert!(ids.len() >= 3, "{ids:?}");
    let bad = c
        .get(
            "listAllFulfillmentOrders",
            &format!("{fba}/fulfillmentOrders"),
            token,
            &[("queryStartDate", "last tuesday")],
        )
        .await?;
    expect(&bad, 400, "listAllFulfillmentOrders with a bad date");

    let mut packages = Vec::new();
    for id in &ids {
        let order = c
            .get(
                "getFulfillmentOrder",
                &format!("{fba}/fulfillmentOrders/{id}"),
                token,
                &[],
            )
            .await?;
        expect(&order, 200, id);
        for shipment in order.body["payload"]["fulfillmentShipments"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for package in shipment["fulfillmentShipmentPackage"]
                .as_array()
                .into_iter()
                .flatten()
            {
                packages.push(package["packageNumber"].to_string());
            }
        }
    }
    assert!(packages.len() >= 3, "{packages:?}");
    let missing = c
        .get(
            "getFulfillmentOrder",
            &format!("{fba}/fulfillmentOrders/NO-SUCH-ORDER"),
            token,
            &[],
        )
        .await?;
    expect(&missing, 404, "getFulfillmentOrder of an unknown order");
    let long = "X".repeat(41);
    let bad = c
        .get(
            "getFulfillmentOrder",
            &format!("{fba}/fulfillmentOrders/{long}"),
            token,
            &[],
        )
        .await?;
    expect(&bad, 400, "getFulfillmentOrder with a long id");
    for number in &packages {
        let tracking = c
            .get(
                "getPackageTrackingDetails",
                &format!("{fba}/tracking"),
                token,
                &[("packageNumber", number)],
            )
            .await?;
        expect(&tracking, 200, number);
    }
    for (number, status) in [("999", 404), ("abc", 400)] {
        let tracking = c
            .get(
                "getPackageTrackingDetails",
                &format!("{fba}/tracking"),
                token,
                &[("packageNumber", number)],
            )
            .await?;
        expect(&tracking, status, number);
    }

    // ---- Messaging
    let on = |id: &str| format!("/messaging/v1/orders/{id}");
    let market = [("marketplaceIds", US)];
    for id in [UNSHIPPED, SHIPPED] {
        let actions = c
            .get("getMessagingActionsForOrder", &on(id), token, &market)
            .await?;
        expect(&actions, 200, "getMessagingActionsForOrder");
        let attributes = c
            .get(
                "GetAttributes",
                &format!("{}/attributes", on(id)),
                token,
                &market,
            )
            .await?;
        expect(&attributes, 200, "GetAttributes");
    }
    let bad = c
        .get("getMessagingActionsForOrder", &on(UNSHIPPED), token, &[])
        .await?;
    expect(
        &bad,
        400,
        "getMessagingActionsForOrder without marketplaceIds",
    );
    let missing = c
        .get(
            "getMessagingActionsForOrder",
            &on("113-0000000-0000000"),
            token,
            &market,
        )
        .await?;
    expect(
        &missing,
        404,
        "getMessagingActionsForOrder of an unknown order",
    );
    let missing = c
        .get(
            "GetAttributes",
            &format!("{}/attributes", on("113-0000000-0000000")),
            token,
            &market,
        )
        .await?;
    expect(&missing, 404, "GetAttributes of an unknown order");

    let text_body = json!({"text": "Your order is being prepared and will ship soon."});
    let files = json!({"attachments": [{"uploadDestinationId": "d1", "fileName": "invoice.pdf"}]});
    for (operation, kind, order, body, status) in [
        (
            "createConfirmOrderDetails",
            "confirmOrderDetails",
            UNSHIPPED,
            &text_body,
            201,
        ),
        (
            "confirmCustomizationDetails",
            "confirmCustomizationDetails",
            UNSHIPPED,
            &text_body,
            201,
        ),
        (
            "createUnexpectedProblem",
            "unexpectedProblem",
            UNSHIPPED,
            &text_body,
            201,
        ),
        (
            "createConfirmDeliveryDetails",
            "confirmDeliveryDetails",
            SHIPPED,
            &text_body,
            201,
        ),
        (
            "createLegalDisclosure",
            "legalDisclosure",
            SHIPPED,
            &files,
            201,
        ),
        ("sendInvoice", "invoice", SHIPPED, &files, 201),
        // Home Services, digital goods and warranties: no scenario order allows them.
        (
            "createConfirmServiceDetails",
            "confirmServiceDetails",
            SHIPPED,
            &text_body,
            400,
        ),
        (
            "createDigitalAccessKey",
            "digitalAccessKey",
            SHIPPED,
            &text_body,
            400,
        ),
        ("CreateWarranty", "warranty", SHIPPED, &files, 400),
        // Not allowed for an unshipped order.
        (
            "createConfirmDeliveryDetails",
            "confirmDeliveryDetails",
            UNSHIPPED,
            &text_body,
            400,
        ),
    ] {
        let sent = c
            .call(
                operation,
                Method::POST,
                &format!("{}/messages/{kind}", on(order)),
                token,
                &market,
                Some(body.clone()),
            )
            .await?;
        expect(&sent, status, operation);
    }
    let denied = c
        .call(
            "createUnexpectedProblem",
            Method::POST,
            &format!("{}/messages/unexpectedProblem", on(UNSHIPPED)),
            None,
            &market,
            Some(text_body.clone()),
        )
        .await?;
    expect(&denied, 403, "a message without a token");

    // ---- Feeds
    let feeds = "/feeds/2021-06-30";
    let content_type = "text/xml; charset=UTF-8";
    let mut feed_ids = Vec::new();
    for _ in 0..2 {
        let document = c
            .call(
                "createFeedDocument",
                Method::POST,
                &format!("{feeds}/documents"),
                token,
                &[],
                Some(json!({"contentType": content_type})),
            )
            .await?;
        expect(&document, 201, "createFeedDocument");
        let upload = c
            .http
            .put(text(&document.body, "/url")?)
            .header("content-type", content_type)
            .body(ack_feed(UNSHIPPED))
            .send()
            .await?;
        assert_eq!(upload.status(), StatusCode::OK);
        let created = c
            .call(
                "createFeed",
                Method::POST,
                &format!("{feeds}/feeds"),
                token,
                &[],
                Some(json!({
                    "feedType": "POST_ORDER_ACKNOWLEDGEMENT_DATA",
                    "marketplaceIds": [US],
                    "inputFeedDocumentId": text(&document.body, "/feedDocumentId")?,
                })),
            )
            .await?;
        expect(&created, 202, "createFeed");
        feed_ids.push(text(&created.body, "/feedId")?.to_owned());
    }
    let bad = c
        .call(
            "createFeedDocument",
            Method::POST,
            &format!("{feeds}/documents"),
            token,
            &[],
            Some(json!({})),
        )
        .await?;
    expect(&bad, 400, "createFeedDocument without contentType");
    let bad = c
        .call(
            "createFeed",
            Method::POST,
            &format!("{feeds}/feeds"),
            token,
            &[],
            Some(json!({})),
        )
        .await?;
    expect(&bad, 400, "createFeed without a specification");
    let [kept, cancelled] = feed_ids.as_slice() else {
        panic!("two feeds expected: {feed_ids:?}");
    };
    let queued = c
        .get("getFeed", &format!("{feeds}/feeds/{kept}"), token, &[])
        .await?;
    expect(&queued, 200, "getFeed");
    let gone = c
        .call(
            "cancelFeed",
            Method::DELETE,
            &format!("{feeds}/feeds/{cancelled}"),
            token,
            &[],
            None,
        )
        .await?;
    expect(&gone, 200, "cancelFeed");
    let again = c
        .call(
            "cancelFeed",
            Method::DELETE,
            &format!("{feeds}/feeds/{cancelled}"),
            token,
            &[],
            None,
        )
        .await?;
    expect(&again, 400, "cancelFeed of a cancelled feed");
    c.clock.advance(TimeDelta::seconds(31));
    let done = c
        .get("getFeed", &format!("{feeds}/feeds/{kept}"), token, &[])
        .await?;
    expect(&done, 200, "getFeed once processed");
    assert_eq!(done.body["processingStatus"], "DONE");
    let report = text(&done.body, "/resultFeedDocumentId")?;
    let document = c
        .get(
            "getFeedDocument",
            &format!("{feeds}/documents/{report}"),
            token,
            &[],
        )
        .await?;
    expect(&document, 200, "getFeedDocument");
    let missing = c
        .get(
            "getFeedDocument",
            &format!("{feeds}/documents/no-such-document"),
            token,
            &[],
        )
        .await?;
    expect(&missing, 404, "getFeedDocument of an unknown document");
    let missing = c
        .get("getFeed", &format!("{feeds}/feeds/999999"), token, &[])
        .await?;
    expect(&missing, 404, "getFeed of an unknown feed");
    let listed = c
        .get(
            "getFeeds",
            &format!("{feeds}/feeds"),
            token,
            &[("feedTypes", "POST_ORDER_ACKNOWLEDGEMENT_DATA")],
        )
        .await?;
    expect(&listed, 200, "getFeeds");
    let bad = c
        .get("getFeeds", &format!("{feeds}/feeds"), token, &[])
        .await?;
    expect(&bad, 400, "getFeeds without feedTypes");

    // ---- Throttling: an exhausted plan, and injected faults in every model's shape.
    c.sandbox.set_usage_plan("getOrder", 0.001, 1.0);
    let order_path = format!("/orders/v0/orders/{SHIPPED}");
    expect(
        &c.get("getOrder", &order_path, token, &[]).await?,
        200,
        "getOrder",
    );
    let throttled = c.get("getOrder", &order_path, token, &[]).await?;
    expect(&throttled, 429, "getOrder past its plan");
    assert_eq!(c.sandbox.usage("getOrder").throttled, 1);
    for (operation, method, path, query, status) in [
        (
            "getOrders",
            Method::GET,
            "/orders/v0/orders".to_owned(),
            vec![("MarketplaceIds", US), ("CreatedAfter", after.as_str())],
            429,
        ),
        (
            "createRestrictedDataToken",
            Method::POST,
            rdt_path.to_owned(),
            vec![],
            429,
        ),
        (
            "listAllFulfillmentOrders",
            Method::GET,
            format!("{fba}/fulfillmentOrders"),
            vec![],
            429,
        ),
        (
            "getPackageTrackingDetails",
            Method::GET,
            format!("{fba}/tracking"),
            vec![("packageNumber", "1840273")],
            503,
        ),
        (
            "getFeeds",
            Method::GET,
            format!("{feeds}/feeds"),
            vec![("feedTypes", "POST_ORDER_ACKNOWLEDGEMENT_DATA")],
            429,
        ),
        (
            "GetAttributes",
            Method::GET,
            format!("{}/attributes", on(SHIPPED)),
            vec![("marketplaceIds", US)],
            500,
        ),
    ] {
        c.sandbox.inject(Fault::status(operation, status));
        let answer = c
            .call(operation, method, &path, token, &query, None)
            .await?;
        expect(&answer, status, operation);
    }

    // Every operation the sandbox serves was validated, with successes and each kind
    // of error.
    let checked = c.checked();
    let operations: BTreeSet<&str> = checked.iter().map(|(op, _)| op.as_str()).collect();
    for operation in OPERATIONS {
        assert!(
            operations.contains(operation),
            "{operation} was never validated"
        );
    }
    let journaled: BTreeSet<String> = c
        .sandbox
        .journal()
        .into_iter()
        .map(|e| e.operation)
        .filter(|op| op != "lwa.token" && op != "uploadFeedDocument")
        .collect();
    for operation in &journaled {
        assert!(
            operations.contains(operation.as_str()),
            "the sandbox served {operation}, which this test does not know"
        );
    }
    let statuses: BTreeSet<u16> = checked.iter().map(|(_, status)| *status).collect();
    for status in [200, 201, 202, 400, 403, 404, 429, 500, 503] {
        assert!(
            statuses.contains(&status),
            "no {status} answer was validated"
        );
    }
    eprintln!(
        "validated {} (operation, status) pairs over {} operations",
        checked.len(),
        operations.len()
    );
    Ok(())
}

/// An order acknowledgement feed for `order`.
fn ack_feed(order: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<AmazonEnvelope \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:noNamespaceSchemaLocation=\"amzn-envelope.xsd\"><Header>\
         <DocumentVersion>1.01</DocumentVersion><MerchantIdentifier>M_SANDBOX</MerchantIdentifier>\
         </Header><MessageType>OrderAcknowledgement</MessageType><Message><MessageID>1</MessageID>\
         <OrderAcknowledgement><AmazonOrderID>{order}</AmazonOrderID><StatusCode>Success</StatusCode>\
         </OrderAcknowledgement></Message></AmazonEnvelope>"
    )
}
