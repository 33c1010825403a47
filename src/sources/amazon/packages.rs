//! The parcels of a merchant-fulfilled (MFN/FBM) Amazon order, each with its carrier and
//! tracking number, so nightdesk can ask the carrier itself where a parcel is. Orders v0
//! has no tracking; Orders API 2026-01-01 getOrder with `includedData=PACKAGES`
//! (`specs/amazon/orders_2026-01-01.json`) returns `order.packages[]` as the seller's
//! ship confirmation described them. An FBA (AFN) order has no packages there: its
//! parcels are read through Fulfillment Outbound ([`super::fulfillment`]).
//!
//! It only reads, one order at a time, and never asks for more than `PACKAGES`: no
//! buyer, recipient or price is requested, parsed or logged. A body that breaks the
//! contract is `Malformed`, never a panic; every error names the order it was about.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Deserializer};

use crate::http::UpstreamError;
use crate::sources::SourceError;
use crate::sources::amazon::UsagePlan;
use crate::sources::amazon::api::{Operation, Retries, SpApi, refused};
use crate::sources::amazon::orders::parse_time;

/// getOrder of Orders 2026-01-01: 0.5 a second, burst 30 (orders_2026-01-01.json).
///
/// The contract's operationId is `getOrder`, the same as Orders v0's: this one is named
/// `getOrder2026` for its token bucket, the logs and the sandbox (which tells the two
/// apart by path), so the two operations never share a usage plan.
pub const GET_ORDER_2026: Operation = Operation {
    name: "getOrder2026",
    plan: Some(UsagePlan {
        rate: 0.5,
        burst: 30,
    }),
    retries: Retries::InCall,
};

const API: [&str; 3] = ["orders", "2026-01-01", "orders"];

/// The `includedData` this module asks for, and nothing else.
const INCLUDED_DATA: &str = "PACKAGES";

/// A parcel of an FBM order as Amazon's ship confirmation describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPackage {
    /// `packageReferenceId`: unique within the order.
    pub reference: String,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub shipping_service: Option<String>,
    /// `shipTime`: handed over to the carrier.
    pub ship_time: Option<DateTime<Utc>>,
    /// `createdTime`: the package was created for shipment.
    pub created_time: Option<DateTime<Utc>>,
    /// `packageStatus.status` as sent (`PENDING`, `IN_TRANSIT`, `SHIPPED`, `DELIVERED`,
    /// `CANCELLED`, `UNDELIVERABLE` today).
    pub status: Option<String>,
    /// `packageStatus.detailedStatus` as sent (`PICKED_UP`, `OUT_FOR_DELIVERY`, `LOST`, …).
    pub detailed_status: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Wire types, field by field from the contract. Unknown fields are ignored; what nightdesk
// needs to tell packages apart is required; everything else is optional. Left out on
// purpose: the Order fields other than `orderId` and `packages` (buyer, recipient,
// proceeds, … are not requested), and a package's `shipFromAddress` and `packageItems`.

/// `GetOrderResponse`.
#[derive(Debug, Deserialize)]
struct GetOrderResponse {
    order: WireOrder,
}

/// `Order`, only `orderId` and `packages`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOrder {
    order_id: String,
    /// Absent (or `null`) for an FBA order, and for an FBM order not yet shipped.
    #[serde(default, deserialize_with = "null_as_default")]
    packages: Vec<WireOrderPackage>,
}

/// `OrderPackage`, without `shipFromAddress` and `packageItems`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOrderPackage {
    package_reference_id: String,
    created_time: Option<String>,
    package_status: Option<WirePackageStatus>,
    carrier: Option<String>,
    ship_time: Option<String>,
    shipping_service: Option<String>,
    tracking_number: Option<String>,
}

/// `PackageStatus`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePackageStatus {
    status: String,
    detailed_status: Option<String>,
}

/// `null` read as the empty value.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A text field, `None` when empty or blank.
fn text(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A `date-time` field; one that does not parse breaks the contract.
fn time(field: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, String> {
    match text(value) {
        None => Ok(None),
        Some(t) => parse_time(&t)
            .map(Some)
            .ok_or_else(|| format!("{field} {t:?} is not a date-time")),
    }
}

impl WireOrderPackage {
    fn into_package(self) -> Result<OrderPackage, String> {
        let reference = text(Some(self.package_reference_id))
            .ok_or_else(|| "a package has an empty packageReferenceId".to_owned())?;
        let in_package = |e: String| format!("package {reference}: {e}");
        let ship_time = time("shipTime", self.ship_time).map_err(in_package)?;
        let created_time = time("createdTime", self.created_time).map_err(in_package)?;
        let (status, detailed_status) = match self.package_status {
            Some(s) => {
                let status = text(Some(s.status))
                    .ok_or_else(|| format!("package {reference}: packageStatus.status is empty"))?;
                (Some(status), text(s.detailed_status))
            }
            None => (None, None),
        };
        Ok(OrderPackage {
            carrier: text(self.carrier),
            tracking_number: text(self.tracking_number),
            shipping_service: text(self.shipping_service),
            ship_time,
            created_time,
            status,
            detailed_status,
            reference,
        })
    }
}

/// The packages in a getOrder (2026-01-01) 2xx body about `order_id`. A body that is
/// not the contract's `GetOrderResponse`, is about another order, repeats a
/// `packageReferenceId` or holds a date that is not one is `Malformed`.
pub fn parse_get_order(body: &str, order_id: &str) -> Result<Vec<OrderPackage>, UpstreamError> {
    let malformed = |reason: String| UpstreamError::Malformed {
        what: format!("{} response for order {order_id}", GET_ORDER_2026.name),
        reason,
    };
    let response: GetOrderResponse =
        serde_json::from_str(body).map_err(|e| malformed(e.to_string()))?;
    let order = response.order;
    if order.order_id != order_id {
        return Err(malformed(format!("it is about order {:?}", order.order_id)));
    }
    let mut seen = HashSet::new();
    let mut packages = Vec::with_capacity(order.packages.len());
    for wire in order.packages {
        let package = wire.into_package().map_err(malformed)?;
        if !seen.insert(package.reference.clone()) {
            return Err(malformed(format!(
                "packageReferenceId {:?} appears twice",
                package.reference
            )));
        }
        packages.push(package);
    }
    Ok(packages)
}

/// The packages of one order (getOrder 2026-01-01, `includedData=PACKAGES`), in the
/// order Amazon lists them; empty for an FBA order or one not yet shipped.
pub async fn order_packages(api: &SpApi, order_id: &str) -> Result<Vec<OrderPackage>, SourceError> {
    let name = GET_ORDER_2026.name;
    if order_id.trim().is_empty() {
        return Err(SourceError::Upstream {
            operation: name,
            error: refused("the order id is empty"),
        });
    }
    let url = api
        .url(&[API[0], API[1], API[2], order_id])
        .map_err(SourceError::upstream(name))?;
    let query = [("includedData", INCLUDED_DATA.to_owned())];
    let reply = api
        .call::<()>(&GET_ORDER_2026, Method::GET, &url, &query, None)
        .await
        .map_err(|error| SourceError::Upstream {
            operation: name,
            error: about_order(order_id, error),
        })?;
    parse_get_order(&reply.body, order_id).map_err(SourceError::upstream(name))
}

/// `error`, its text naming `order_id`; its kind (and so retries and alerts) unchanged.
/// Refused credentials are about the account, not the order: left as they are.
fn about_order(order_id: &str, error: UpstreamError) -> UpstreamError {
    match error {
        UpstreamError::Transport {
            retryable,
            delivered,
            message,
        } => UpstreamError::Transport {
            retryable,
            delivered,
            message: format!("order {order_id}: {message}"),
        },
        UpstreamError::Status {
            status,
            retry_after,
            summary,
        } => UpstreamError::Status {
            status,
            retry_after,
            summary: format!("order {order_id}: {summary}"),
        },
        UpstreamError::Malformed { what, reason } => UpstreamError::Malformed {
            what: format!("{what} for order {order_id}"),
            reason,
        },
        credentials @ UpstreamError::Credentials(_) => credentials,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::{Value, json};

    use super::*;
    use crate::sources::amazon::api::fake::{Answer, Fake};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const PATH: &str = "/orders/2026-01-01/orders/{orderId}";

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Option<DateTime<Utc>> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single()
    }

    /// The contract; vendored in the repository, so a missing one fails the test.
    fn spec() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/specs/amazon/orders_2026-01-01.json"
        );
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => panic!("cannot read {path}: {e}"),
        };
        match serde_json::from_str(&text) {
            Ok(spec) => spec,
            Err(e) => panic!("{path} is not JSON: {e}"),
        }
    }

    fn parsed(body: &Value, order_id: &str) -> Vec<OrderPackage> {
        match parse_get_order(&body.to_string(), order_id) {
            Ok(packages) => packages,
            Err(e) => panic!("{order_id}: {e}"),
        }
    }

    fn malformed(body: &str, order_id: &str) -> String {
        match parse_get_order(body, order_id) {
            Err(e @ UpstreamError::Malformed { .. }) => e.to_string(),
            other => panic!("expected Malformed for {body}, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_published_example() {
        let spec = spec();
        let example =
            &spec["paths"][PATH]["get"]["responses"]["200"]["examples"]["application/json"];
        assert!(example.is_object(), "no getOrder example in the contract");
        let packages = parsed(example, "202-1234567-8901234");
        assert_eq!(
            packages,
            vec![OrderPackage {
                reference: "UK-PKG-2024-001".into(),
                carrier: Some("Royal Mail".into()),
                tracking_number: Some("RR123456789GB".into()),
                shipping_service: Some("Royal Mail Tracked 48".into()),
                ship_time: at(2024, 12, 26, 14, 0),
                created_time: at(2024, 12, 25, 16, 45),
                status: Some("IN_TRANSIT".into()),
                detailed_status: Some("OUT_FOR_DELIVERY".into()),
            }]
        );
    }

    #[test]
    fn parses_every_static_sandbox_answer() {
        let spec = spec();
        let responses = &spec["paths"][PATH]["get"]["responses"];
        let Some(cases) = responses["200"]["x-amzn-api-sandbox"]["static"].as_array() else {
            panic!("no static sandbox cases for getOrder")
        };
        assert_eq!(cases.len(), 3);
        for case in cases {
            let Some(id) = case["request"]["parameters"]["orderId"]["value"].as_str() else {
                panic!("a static case without orderId: {case}")
            };
            let packages = parsed(&case["response"], id);
            // The BR order is unshipped, the TR one was asked without PACKAGES, the US
            // one is an in-store pick-up: none lists packages.
            assert!(packages.is_empty(), "{id}: {packages:?}");
        }
        // The 400 case is an ErrorList, not a GetOrderResponse.
        let error = &responses["400"]["x-amzn-api-sandbox"]["static"][0]["response"];
        assert!(error["errors"].is_array());
        let text = malformed(&error.to_string(), "TEST_CASE_400");
        assert!(text.contains("TEST_CASE_400"), "{text}");
    }

    #[test]
    fn an_fba_order_has_no_packages() {
        let afn = json!({"order": {
            "orderId": "113-1111111-1111111",
            "createdTime": "2026-11-20T10:00:00Z",
            "lastUpdatedTime": "2026-11-21T10:00:00Z",
            "salesChannel": {"channelName": "AMAZON", "marketplaceId": "ATVPDKIKX0DER"},
            "fulfillment": {"fulfillmentStatus": "SHIPPED", "fulfilledBy": "AMAZON"},
            "orderItems": [],
        }});
        assert!(parsed(&afn, "113-1111111-1111111").is_empty());
        let mut null = afn.clone();
        null["order"]["packages"] = Value::Null;
        assert!(parsed(&null, "113-1111111-1111111").is_empty());
    }

    #[test]
    fn packages_keep_their_order_and_optional_fields() {
        let body = json!({"order": {
            "orderId": "113-2222222-2222222",
            "createdTime": "2026-11-20T10:00:00Z",
            "lastUpdatedTime": "2026-11-21T10:00:00Z",
            "salesChannel": {"channelName": "AMAZON"},
            "orderItems": [],
            "futureField": {"anything": true},
            "packages": [
                {"packageReferenceId": "1", "carrier": "UPS", "trackingNumber": "1Z999AA10123456784",
                 "shipTime": "2026-11-21T09:30:00Z", "createdTime": "2026-11-21T08:00:00Z",
                 "shippingService": "UPS Ground",
                 "packageStatus": {"status": "IN_TRANSIT", "detailedStatus": "PICKED_UP"},
                 "packageItems": [{"orderItemId": "1", "quantity": 1}], "newThing": 1},
                {"packageReferenceId": "2", "carrier": "  ", "trackingNumber": null,
                 "packageStatus": {"status": "PENDING"}},
            ],
        }});
        let packages = parsed(&body, "113-2222222-2222222");
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].carrier.as_deref(), Some("UPS"));
        assert_eq!(
            packages[0].tracking_number.as_deref(),
            Some("1Z999AA10123456784")
        );
        assert_eq!(packages[0].ship_time, at(2026, 11, 21, 9, 30));
        assert_eq!(packages[0].detailed_status.as_deref(), Some("PICKED_UP"));
        assert_eq!(packages[1].reference, "2");
        assert_eq!(packages[1].carrier, None, "a blank carrier is none");
        assert_eq!(packages[1].tracking_number, None);
        assert_eq!(packages[1].ship_time, None);
        assert_eq!(packages[1].status.as_deref(), Some("PENDING"));
        assert_eq!(packages[1].detailed_status, None);
    }

    #[test]
    fn bodies_that_break_the_contract_are_malformed() {
        let id = "113-3333333-3333333";
        let order =
            |packages: Value| json!({"order": {"orderId": id, "packages": packages}}).to_string();
        for (body, why) in [
            ("not json".to_owned(), "expected"),
            ("{}".to_owned(), "missing field `order`"),
            (json!({"order": {}}).to_string(), "orderId"),
            (json!({"order": {"orderId": 7}}).to_string(), "invalid type"),
            (
                json!({"order": {"orderId": "113-0000000-0000000"}}).to_string(),
                "about order \"113-0000000-0000000\"",
            ),
            (order(json!({})), "invalid type"),
            (order(json!([{"carrier": "UPS"}])), "packageReferenceId"),
            (
                order(json!([{"packageReferenceId": " "}])),
                "empty packageReferenceId",
            ),
            (
                order(json!([{"packageReferenceId": "1", "carrier": 5}])),
                "invalid type",
            ),
            (
                order(json!([{"packageReferenceId": "1", "shipTime": "yesterday"}])),
                "package 1: shipTime \"yesterday\" is not a date-time",
            ),
            (
                order(json!([{"packageReferenceId": "1", "packageStatus": {}}])),
                "status",
            ),
            (
                order(json!([{"packageReferenceId": "1", "packageStatus": {"status": ""}}])),
                "packageStatus.status is empty",
            ),
            (
                order(json!([{"packageReferenceId": "1"}, {"packageReferenceId": "1"}])),
                "appears twice",
            ),
        ] {
            let text = malformed(&body, id);
            assert!(text.contains(why), "{body}: {text}");
            assert!(text.contains(id), "the error names the order: {text}");
        }
    }

    #[tokio::test]
    async fn asks_for_packages_only_and_names_the_order_in_errors() -> TestResult {
        let fake = Fake::start().await;
        let id = "113-4444444-4444444";
        let path = format!("/orders/2026-01-01/orders/{id}");
        fake.script(
            "GET",
            &path,
            vec![Answer::json(
                200,
                json!({"order": {"orderId": id, "packages": [
                    {"packageReferenceId": "1", "carrier": "USPS",
                     "trackingNumber": "9400111899223100012345"}]}}),
            )],
        );
        let api = fake.api();
        let packages = order_packages(&api, id).await?;
        assert_eq!(packages.len(), 1);
        assert_eq!(packages[0].carrier.as_deref(), Some("USPS"));
        let seen = fake.seen(&path);
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].query_pairs(),
            vec![("includedData".to_owned(), "PACKAGES".to_owned())]
        );
        // Its own bucket, at its own plan (Orders v0 getOrder's is another).
        let pace = api.current_pace(GET_ORDER_2026.name);
        assert_eq!(pace.map(|p| (p.granted, p.burst)), Some((0.5, 30.0)));

        // Unknown order: a 404, not retried, naming the order even when Amazon does not.
        let missing = "113-0000000-0000000";
        fake.script(
            "GET",
            &format!("/orders/2026-01-01/orders/{missing}"),
            vec![Answer::json(
                404,
                json!({"errors": [{"code": "NotFound", "message": "The resource was not found."}]}),
            )],
        );
        let Err(error) = order_packages(&api, missing).await else {
            panic!("an unknown order answered")
        };
        let text = error.to_string();
        assert!(text.starts_with("getOrder2026: HTTP 404"), "{text}");
        assert!(text.contains(missing), "{text}");
        assert_eq!(
            fake.seen(&format!("/orders/2026-01-01/orders/{missing}"))
                .len(),
            1
        );

        // A 2xx that breaks the contract.
        fake.script(
            "GET",
            &path,
            vec![Answer::json(200, json!({"payload": {}}))],
        );
        let Err(error) = order_packages(&api, id).await else {
            panic!("a malformed answer parsed")
        };
        assert!(error.is_malformed(), "{error}");
        assert!(error.to_string().contains(id), "{error}");

        // Nothing is sent for an empty id.
        let before = fake.all_seen().len();
        assert!(order_packages(&api, " ").await.is_err());
        assert_eq!(fake.all_seen().len(), before);
        Ok(())
    }
}
