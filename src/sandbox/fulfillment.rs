//! SP-API Fulfillment Outbound 2020-07-01 (`specs/amazon/fulfillmentOutbound_2020-07-01.json`,
//! research notes §9), the reads a support daemon needs to follow FBA Multi-Channel
//! Fulfillment orders: `listAllFulfillmentOrders`, `getFulfillmentOrder` and
//! `getPackageTrackingDetails`, answered from the scenario's fulfillment orders and
//! built field by field from the contract, each wrapped in `{"payload": …}` as the
//! contract's response objects are.
//!
//! listAllFulfillmentOrders lists the orders whose `statusUpdatedDate` is at or after
//! `queryStartDate` (36 hours ago when absent: the contract gives no default), oldest
//! first, `fulfillment_page_size` per page; `nextToken` alone continues a listing.
//! It must never invent data the scenario does not hold, nor change it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::amazon::{self, Params, iso};
use super::plans::Plan;
use super::scenario::ScenarioAddress;
use super::scenario_fba::{ScenarioFulfillmentOrder, ScenarioPackage, ScenarioShipment};
use super::{Shared, lock, token};

pub(super) const LIST_ALL_FULFILLMENT_ORDERS: &str = "listAllFulfillmentOrders";
pub(super) const GET_FULFILLMENT_ORDER: &str = "getFulfillmentOrder";
pub(super) const GET_PACKAGE_TRACKING_DETAILS: &str = "getPackageTrackingDetails";

/// From each operation's description: 2 requests per second, burst 30.
pub(super) const USAGE_PLANS: &[Plan] = &[
    (LIST_ALL_FULFILLMENT_ORDERS, 2.0, 30.0),
    (GET_FULFILLMENT_ORDER, 2.0, 30.0),
    (GET_PACKAGE_TRACKING_DETAILS, 2.0, 30.0),
];

/// The window listAllFulfillmentOrders uses without `queryStartDate`.
const DEFAULT_LOOKBACK: TimeDelta = TimeDelta::hours(36);

/// Contract `EventCode` with the contract's descriptions.
pub(super) const EVENT_CODES: [(&str, &str); 35] = [
    ("EVENT_101", "Carrier notified to pick up package."),
    ("EVENT_102", "Shipment picked up from seller's facility."),
    ("EVENT_201", "Arrival scan."),
    ("EVENT_202", "Departure scan."),
    ("EVENT_203", "Arrived at destination country."),
    ("EVENT_204", "Initiated customs clearance process."),
    ("EVENT_205", "Completed customs clearance process."),
    ("EVENT_206", "In transit to pickup location."),
    ("EVENT_301", "Delivered."),
    ("EVENT_302", "Out for delivery."),
    ("EVENT_304", "Delivery attempted."),
    ("EVENT_306", "Customer contacted to arrange delivery."),
    ("EVENT_307", "Delivery appointment scheduled."),
    ("EVENT_308", "Available for pickup."),
    ("EVENT_309", "Returned to seller."),
    ("EVENT_401", "Held by carrier - incorrect address."),
    ("EVENT_402", "Customs clearance delay."),
    ("EVENT_403", "Customer moved."),
    ("EVENT_404", "Delay in delivery due to external factors."),
    ("EVENT_405", "Shipment damaged."),
    ("EVENT_406", "Held by carrier."),
    ("EVENT_407", "Customer refused delivery."),
    ("EVENT_408", "Returning to seller."),
    ("EVENT_409", "Lost by carrier."),
    (
        "EVENT_411",
        "Paperwork received - did not receive shipment.",
    ),
    (
        "EVENT_412",
        "Shipment received - did not receive paperwork.",
    ),
    (
        "EVENT_413",
        "Held by carrier - customer refused shipment due to customs charges.",
    ),
    ("EVENT_414", "Missorted by carrier."),
    ("EVENT_415", "Received from prior carrier."),
    ("EVENT_416", "Undeliverable."),
    ("EVENT_417", "Shipment missorted."),
    ("EVENT_418", "Shipment delayed."),
    ("EVENT_419", "Address corrected - delivery rescheduled."),
    ("EVENT_801", "Package delivered to locker."),
    ("EVENT_804", "Package picked up from locker."),
];

/// Contract `CurrentStatus` with the contract's descriptions.
pub(super) const CURRENT_STATUSES: [(&str, &str); 18] = [
    ("IN_TRANSIT", "In transit to the destination address."),
    ("DELIVERED", "Delivered to the destination address."),
    (
        "RETURNING",
        "In the process of being returned to Amazon's fulfillment network.",
    ),
    ("RETURNED", "Returned to Amazon's fulfillment network."),
    (
        "UNDELIVERABLE",
        "Undeliverable because package was lost or destroyed.",
    ),
    ("DELAYED", "Delayed."),
    ("AVAILABLE_FOR_PICKUP", "Available for pickup."),
    ("CUSTOMER_ACTION", "Requires customer action."),
    ("UNKNOWN", "Unknown Status Code was returned."),
    ("OUT_FOR_DELIVERY", "Out for Delivery."),
    ("DELIVERY_ATTEMPTED", "Delivery Attempted."),
    ("PICKUP_SUCCESSFUL", "Pickup Successful."),
    ("PICKUP_CANCELLED", "Pickup Cancelled."),
    ("PICKUP_ATTEMPTED", "Pickup Attempted."),
    ("PICKUP_SCHEDULED", "Pickup Scheduled."),
    ("RETURN_REQUEST_ACCEPTED", "Return Request Accepted."),
    ("REFUND_ISSUED", "Refund Issued."),
    ("RETURN_RECEIVED_IN_FC", "Return Received In FC."),
];

pub(super) fn event_description(code: &str) -> &'static str {
    EVENT_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("", |(_, d)| d)
}

fn status_description(status: &str) -> &'static str {
    CURRENT_STATUSES
        .iter()
        .find(|(s, _)| *s == status)
        .map_or("", |(_, d)| d)
}

/// The operation for `rest`, the path after `/fba/outbound/2020-07-01`.
pub(super) fn classify(method: &str, rest: &[&str]) -> Option<&'static str> {
    match (method, rest) {
        ("GET", ["fulfillmentOrders"]) => Some(LIST_ALL_FULFILLMENT_ORDERS),
        ("GET", ["fulfillmentOrders", id]) if !id.is_empty() => Some(GET_FULFILLMENT_ORDER),
        ("GET", ["tracking"]) => Some(GET_PACKAGE_TRACKING_DETAILS),
        _ => None,
    }
}

/// Where a listing continues: the listing's start, and the last order it answered.
#[derive(Debug, Serialize, Deserialize)]
struct ListToken {
    op: String,
    page: u32,
    start: DateTime<Utc>,
    last_updated: DateTime<Utc>,
    last_id: String,
}

// ---------------------------------------------------------------------------------------
// Handlers

/// `GET /fba/outbound/2020-07-01/fulfillmentOrders[?queryStartDate][&nextToken]`.
pub(super) async fn list_all_fulfillment_orders(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(refused) = amazon::refusal(&state, &headers, LIST_ALL_FULFILLMENT_ORDERS) {
        return refused;
    }
    let params = Params::parse(query.as_deref());
    let now = state.now();
    let (start, after, page) = match params.one("nextToken") {
        Some(text) => match token::decode::<ListToken>(text) {
            Some(t) if t.op == LIST_ALL_FULFILLMENT_ORDERS => {
                (t.start, Some((t.last_updated, t.last_id)), t.page)
            }
            _ => {
                return amazon::invalid_input(
                    "Invalid nextToken: it is malformed or was not issued by \
                     listAllFulfillmentOrders.",
                );
            }
        },
        None => match params.date("queryStartDate") {
            Ok(start) => (start.unwrap_or(now - DEFAULT_LOOKBACK), None, 1),
            Err(message) => return amazon::invalid_input(&message),
        },
    };

    let amazon_state = lock(&state.amazon);
    let page_size = usize::try_from(amazon_state.fulfillment_page_size).unwrap_or(50);
    let mut hits: Vec<&ScenarioFulfillmentOrder> = amazon_state
        .fulfillment_orders
        .iter()
        .filter(|f| {
            let updated = f.status_updated_date(now);
            updated >= start
                && after
                    .as_ref()
                    .is_none_or(|(at, id)| (updated, f.id.as_str()) > (*at, id.as_str()))
        })
        .collect();
    hits.sort_by(|a, b| {
        (a.status_updated_date(now), &a.id).cmp(&(b.status_updated_date(now), &b.id))
    });

    let shown = &hits[..hits.len().min(page_size)];
    let mut payload = Map::new();
    if hits.len() > shown.len()
        && let Some(last) = shown.last()
    {
        let next = ListToken {
            op: LIST_ALL_FULFILLMENT_ORDERS.to_owned(),
            page: page + 1,
            start,
            last_updated: last.status_updated_date(now),
            last_id: last.id.clone(),
        };
        payload.insert("nextToken".into(), Value::String(token::encode(&next)));
    }
    payload.insert(
        "fulfillmentOrders".into(),
        Value::Array(shown.iter().map(|f| order_json(f, now)).collect()),
    );
    Json(json!({ "payload": payload })).into_response()
}

/// `GET /fba/outbound/2020-07-01/fulfillmentOrders/{sellerFulfillmentOrderId}`.
pub(super) async fn get_fulfillment_order(
    State(state): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = amazon::refusal(&state, &headers, GET_FULFILLMENT_ORDER) {
        return refused;
    }
    // Contract: `maxLength: 40`.
    if id.chars().count() > 40 {
        return amazon::invalid_input(&format!(
            "sellerFulfillmentOrderId {id:?} is longer than 40 characters."
        ));
    }
    let now = state.now();
    let amazon_state = lock(&state.amazon);
    let Some(order) = amazon_state.fulfillment_orders.iter().find(|f| f.id == id) else {
        return amazon::error_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("Fulfillment order {id} was not found."),
            None,
        );
    };

    let mut payload = Map::new();
    payload.insert("fulfillmentOrder".into(), order_json(order, now));
    payload.insert(
        "fulfillmentOrderItems".into(),
        Value::Array(
            order
                .items
                .iter()
                .map(|item| {
                    let mut o = Map::new();
                    o.insert("sellerSku".into(), json!(item.sku));
                    o.insert("sellerFulfillmentOrderItemId".into(), json!(item.id));
                    o.insert("quantity".into(), json!(item.quantity));
                    o.insert("cancelledQuantity".into(), json!(item.cancelled));
                    o.insert("unfulfillableQuantity".into(), json!(item.unfulfillable));
                    Value::Object(o)
                })
                .collect(),
        ),
    );
    if !order.shipments.is_empty() {
        payload.insert(
            "fulfillmentShipments".into(),
            Value::Array(
                order
                    .shipments
                    .iter()
                    .map(|s| shipment_json(order, s, now))
                    .collect(),
            ),
        );
    }
    // Returns are not modelled: the contract requires both lists, empty here.
    payload.insert("returnItems".into(), json!([]));
    payload.insert("returnAuthorizations".into(), json!([]));
    Json(json!({ "payload": payload })).into_response()
}

/// `GET /fba/outbound/2020-07-01/tracking?packageNumber=N`.
pub(super) async fn get_package_tracking_details(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(refused) = amazon::refusal(&state, &headers, GET_PACKAGE_TRACKING_DETAILS) {
        return refused;
    }
    let params = Params::parse(query.as_deref());
    let Some(text) = params.one("packageNumber") else {
        return amazon::invalid_input("Missing required parameter: packageNumber.");
    };
    // Contract: an int32.
    let Ok(number) = text.parse::<i32>() else {
        return amazon::invalid_input(&format!(
            "packageNumber must be an integer (int32), got {text:?}."
        ));
    };
    let now = state.now();
    let amazon_state = lock(&state.amazon);
    let found = amazon_state.fulfillment_orders.iter().find_map(|order| {
        order
            .packages()
            .find(|(_, p)| i64::from(p.number) == i64::from(number))
            .map(|(shipment, package)| (order, shipment, package))
    });
    let Some((order, shipment, package)) = found else {
        return amazon::error_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("Package {number} was not found."),
            None,
        );
    };
    Json(json!({ "payload": tracking_json(order, shipment, package, now) })).into_response()
}

// ---------------------------------------------------------------------------------------
// JSON, field by field from the contract

/// Contract `FulfillmentOrder`.
fn order_json(order: &ScenarioFulfillmentOrder, now: DateTime<Utc>) -> Value {
    let received = iso(order.received.resolve(now));
    let mut o = Map::new();
    o.insert("sellerFulfillmentOrderId".into(), json!(order.id));
    o.insert("marketplaceId".into(), json!(order.marketplace));
    o.insert(
        "displayableOrderId".into(),
        json!(order.displayable_order_id),
    );
    o.insert("displayableOrderDate".into(), json!(received));
    o.insert(
        "displayableOrderComment".into(),
        json!(
            order
                .comment
                .as_deref()
                .unwrap_or("Thank you for your order.")
        ),
    );
    o.insert(
        "shippingSpeedCategory".into(),
        json!(order.shipping_speed.as_str()),
    );
    if let Some(destination) = &order.destination {
        o.insert("destinationAddress".into(), address_json(destination));
    }
    o.insert("fulfillmentAction".into(), json!("Ship"));
    o.insert("fulfillmentPolicy".into(), json!("FillOrKill"));
    o.insert("receivedDate".into(), json!(received));
    o.insert(
        "fulfillmentOrderStatus".into(),
        json!(order.status.as_str()),
    );
    o.insert(
        "statusUpdatedDate".into(),
        json!(iso(order.status_updated_date(now))),
    );
    Value::Object(o)
}

/// Contract `Address` of this API (camelCase, unlike Orders v0).
fn address_json(address: &ScenarioAddress) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(address.name));
    o.insert("addressLine1".into(), json!(address.address_line1));
    if let Some(line) = &address.address_line2 {
        o.insert("addressLine2".into(), json!(line));
    }
    o.insert("city".into(), json!(address.city));
    o.insert("stateOrRegion".into(), json!(address.state_or_region));
    o.insert("postalCode".into(), json!(address.postal_code));
    o.insert("countryCode".into(), json!(address.country_code));
    if let Some(phone) = &address.phone {
        o.insert("phone".into(), json!(phone));
    }
    Value::Object(o)
}

/// Contract `FulfillmentShipment`.
fn shipment_json(
    order: &ScenarioFulfillmentOrder,
    shipment: &ScenarioShipment,
    now: DateTime<Utc>,
) -> Value {
    let first_package = shipment.packages.first().map(|p| p.number);
    let items: Vec<Value> = order
        .items
        .iter()
        .filter(|item| shipment.items.is_empty() || shipment.items.contains(&item.id))
        .map(|item| {
            let mut o = Map::new();
            o.insert("sellerSku".into(), json!(item.sku));
            o.insert("sellerFulfillmentOrderItemId".into(), json!(item.id));
            o.insert(
                "quantity".into(),
                json!(
                    item.quantity
                        .saturating_sub(item.cancelled + item.unfulfillable)
                ),
            );
            if let Some(number) = first_package {
                o.insert("packageNumber".into(), json!(number));
            }
            Value::Object(o)
        })
        .collect();
    let mut o = Map::new();
    o.insert("amazonShipmentId".into(), json!(shipment.id));
    o.insert(
        "fulfillmentCenterId".into(),
        json!(shipment.fulfillment_center),
    );
    o.insert(
        "fulfillmentShipmentStatus".into(),
        json!(shipment.status.as_str()),
    );
    if let Some(at) = shipment.shipped {
        o.insert("shippingDate".into(), json!(iso(at.resolve(now))));
    }
    if let Some(at) = shipment.estimated_arrival {
        o.insert("estimatedArrivalDate".into(), json!(iso(at.resolve(now))));
    }
    o.insert("fulfillmentShipmentItem".into(), Value::Array(items));
    if !shipment.packages.is_empty() {
        o.insert(
            "fulfillmentShipmentPackage".into(),
            Value::Array(
                shipment
                    .packages
                    .iter()
                    .map(|p| {
                        let mut package = Map::new();
                        package.insert("packageNumber".into(), json!(p.number));
                        package.insert("carrierCode".into(), json!(p.carrier));
                        package.insert("trackingNumber".into(), json!(p.tracking_number));
                        if let Some(at) = p.estimated_arrival.or(shipment.estimated_arrival) {
                            package
                                .insert("estimatedArrivalDate".into(), json!(iso(at.resolve(now))));
                        }
                        Value::Object(package)
                    })
                    .collect(),
            ),
        );
    }
    Value::Object(o)
}

/// Contract `PackageTrackingDetails`; events newest first, as the contract's example.
fn tracking_json(
    order: &ScenarioFulfillmentOrder,
    shipment: &ScenarioShipment,
    package: &ScenarioPackage,
    now: DateTime<Utc>,
) -> Value {
    let mut events: Vec<_> = package.events.iter().collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.at.resolve(now)));
    let mut o = Map::new();
    o.insert("packageNumber".into(), json!(package.number));
    o.insert("trackingNumber".into(), json!(package.tracking_number));
    o.insert(
        "customerTrackingLink".into(),
        json!(format!(
            "https://www.swiship.com/track?id={}",
            package.tracking_number
        )),
    );
    o.insert("carrierCode".into(), json!(package.carrier));
    if let Some(at) = shipment.shipped {
        o.insert("shipDate".into(), json!(iso(at.resolve(now))));
    }
    if let Some(at) = package.estimated_arrival.or(shipment.estimated_arrival) {
        o.insert("estimatedArrivalDate".into(), json!(iso(at.resolve(now))));
    }
    if let Some(destination) = &order.destination {
        // Contract `TrackingAddress`: city, state, country only.
        o.insert(
            "shipToAddress".into(),
            json!({
                "city": destination.city,
                "state": destination.state_or_region,
                "country": destination.country_code,
            }),
        );
    }
    o.insert("currentStatus".into(), json!(package.status));
    o.insert(
        "currentStatusDescription".into(),
        json!(status_description(&package.status)),
    );
    if package.status == "DELIVERED" {
        o.insert("additionalLocationInfo".into(), json!("FRONT_DOOR"));
    }
    o.insert(
        "trackingEvents".into(),
        Value::Array(
            events
                .iter()
                .map(|event| {
                    let description = event
                        .description
                        .clone()
                        .unwrap_or_else(|| event_description(&event.code).to_owned());
                    json!({
                        "eventDate": iso(event.at.resolve(now)),
                        "eventAddress": {
                            "city": event.city,
                            "state": event.state,
                            "country": event.country,
                        },
                        "eventCode": event.code,
                        "eventDescription": description,
                    })
                })
                .collect(),
        ),
    );
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_has_its_operation() {
        assert_eq!(
            classify("GET", &["fulfillmentOrders"]),
            Some(LIST_ALL_FULFILLMENT_ORDERS)
        );
        assert_eq!(
            classify("GET", &["fulfillmentOrders", "MCF-1"]),
            Some(GET_FULFILLMENT_ORDER)
        );
        assert_eq!(
            classify("GET", &["tracking"]),
            Some(GET_PACKAGE_TRACKING_DETAILS)
        );
        assert_eq!(classify("PUT", &["fulfillmentOrders", "MCF-1"]), None);
        assert_eq!(event_description("EVENT_409"), "Lost by carrier.");
        assert_eq!(status_description("DELAYED"), "Delayed.");
    }
}
