//! SP-API Orders 2026-01-01 `getOrder` (`specs/amazon/orders_2026-01-01.json`, research
//! notes §2.3): `GET /orders/2026-01-01/orders/{orderId}` answers `{"order": {…}}` from
//! the scenario's orders, built field by field from the contract's `Order`: its
//! required fields always, `fulfillment` (and the items' `fulfillment`) with
//! `includedData=FULFILLMENT`, and the parcels of an MFN order's ship confirmation
//! ([`ScenarioOrderPackage`]) as `packages` with `includedData=PACKAGES`. The other
//! datasets (BUYER, RECIPIENT, PROCEEDS, …) are accepted and not answered: nightdesk
//! does not read them from this API.
//!
//! The contract's operationId is `getOrder`, as in Orders v0; the sandbox names this one
//! `getOrder2026` (journal, faults, usage plans), telling the two apart by path.
//! It must never invent a package the scenario does not hold, nor show one for an AFN
//! order (the contract: packages are "only available for merchant-fulfilled orders").

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::amazon::{self, Params, iso};
use super::plans::Plan;
use super::scenario::{
    FulfillmentChannel, MARKETPLACE_CA, MARKETPLACE_US, OrderStatus, OrderType, ScenarioItem,
    ScenarioOrder, When,
};
use super::{Shared, feeds, lock};

/// getOrder of Orders 2026-01-01 (contract operationId `getOrder`).
pub(super) const GET_ORDER_2026: &str = "getOrder2026";

/// From the operation's description: 0.5 requests per second, burst 30.
pub(super) const USAGE_PLANS: &[Plan] = &[(GET_ORDER_2026, 0.5, 30.0)];

/// The `includedData` enum.
const INCLUDED_DATA: [&str; 11] = [
    "BUYER",
    "RECIPIENT",
    "PROCEEDS",
    "EXPENSE",
    "PROMOTION",
    "CANCELLATION",
    "FULFILLMENT",
    "PACKAGES",
    "TAX",
    "PAYMENT",
    "FULFILLMENT_ORDERS",
];

/// `PackageStatus.status`, the contract's enum.
const PACKAGE_STATUSES: [&str; 6] = [
    "PENDING",
    "IN_TRANSIT",
    "SHIPPED",
    "DELIVERED",
    "CANCELLED",
    "UNDELIVERABLE",
];

/// `PackageStatus.detailedStatus`: the contract's "possible values".
const DETAILED_STATUSES: [&str; 16] = [
    "PENDING_SCHEDULE",
    "PENDING_PICK_UP",
    "PENDING_DROP_OFF",
    "LABEL_CANCELLED",
    "PICKED_UP",
    "DROPPED_OFF",
    "AT_ORIGIN_FC",
    "AT_DESTINATION_FC",
    "DELIVERED",
    "REJECTED_BY_BUYER",
    "UNDELIVERABLE",
    "RETURNING_TO_SELLER",
    "RETURNED_TO_SELLER",
    "LOST",
    "OUT_FOR_DELIVERY",
    "DAMAGED",
];

// ---------------------------------------------------------------------------------------
// Scenario

/// A parcel of an MFN order as the seller's ship confirmation describes it (Orders
/// 2026-01-01 `OrderPackage`). An AFN order has none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioOrderPackage {
    /// `packageReferenceId`; defaults to the package's position: "1", "2", …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// `carrier`, as the seller named it (`UPS`, `USPS`, `Royal Mail`, …).
    pub carrier: String,
    /// `trackingNumber`.
    pub tracking_number: String,
    /// `shippingService`, e.g. `UPS Ground`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_service: Option<String>,
    /// `shipTime`, also shown as the package's `createdTime`.
    pub shipped: When,
    /// `packageStatus.status`; default `SHIPPED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `packageStatus.detailedStatus`, e.g. `PICKED_UP`, `OUT_FOR_DELIVERY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed_status: Option<String>,
}

impl ScenarioOrderPackage {
    /// A package shipped with `carrier` under `tracking_number` at `shipped`, status
    /// `SHIPPED`, its reference its position.
    pub fn new(
        carrier: impl Into<String>,
        tracking_number: impl Into<String>,
        shipped: When,
    ) -> Self {
        Self {
            reference: None,
            carrier: carrier.into(),
            tracking_number: tracking_number.into(),
            shipping_service: None,
            shipped,
            status: None,
            detailed_status: None,
        }
    }

    /// `packageReferenceId` of the package at `index` (0-based) of its order.
    pub fn reference_at(&self, index: usize) -> String {
        self.reference
            .clone()
            .unwrap_or_else(|| (index + 1).to_string())
    }

    /// `packageStatus.status`.
    pub fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("SHIPPED")
    }
}

/// Checks an order's packages: MFN only, references unique, carrier and tracking number
/// given, statuses from the contract.
pub(super) fn validate_packages(
    channel: FulfillmentChannel,
    packages: &[ScenarioOrderPackage],
) -> Result<(), String> {
    if channel == FulfillmentChannel::Afn && !packages.is_empty() {
        return Err(
            "packages are for MFN orders only (Amazon lists an AFN order's parcels in \
             fulfillment_orders, not in Orders 2026-01-01 packages)"
                .to_owned(),
        );
    }
    let mut seen = HashSet::new();
    for (index, package) in packages.iter().enumerate() {
        let reference = package.reference_at(index);
        let at = format!("packages[{index}]");
        if reference.trim().is_empty() {
            return Err(format!("{at}: reference is empty"));
        }
        if !seen.insert(reference.clone()) {
            return Err(format!("{at}: reference {reference:?} is repeated"));
        }
        if package.carrier.trim().is_empty() {
            return Err(format!("{at}: carrier is empty"));
        }
        if package.tracking_number.trim().is_empty() {
            return Err(format!("{at}: tracking_number is empty"));
        }
        if !PACKAGE_STATUSES.contains(&package.status()) {
            return Err(format!(
                "{at}: status {:?} is not one of {}",
                package.status(),
                PACKAGE_STATUSES.join(", ")
            ));
        }
        if let Some(detailed) = &package.detailed_status
            && !DETAILED_STATUSES.contains(&detailed.as_str())
        {
            return Err(format!(
                "{at}: detailed_status {detailed:?} is not one of {}",
                DETAILED_STATUSES.join(", ")
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Handler

/// `GET /orders/2026-01-01/orders/{orderId}[?includedData=…]`.
pub(super) async fn get_order(
    State(state): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(refused) = amazon::refusal(&state, &headers, GET_ORDER_2026) {
        return refused;
    }
    let included = Params::parse(query.as_deref()).list("includedData");
    if let Some(bad) = included
        .iter()
        .find(|v| !INCLUDED_DATA.contains(&v.as_str()))
    {
        return amazon::invalid_input(&format!(
            "includedData value {bad:?} is not one of {}.",
            INCLUDED_DATA.join(", ")
        ));
    }
    let wants = |dataset: &str| included.iter().any(|v| v == dataset);
    // A feed that is due changes orders: apply it before answering.
    feeds::settle(&state);
    if let Some(bad) = amazon::bad_order_id(&order_id) {
        return bad;
    }
    let now = state.now();
    let amazon_state = lock(&state.amazon);
    let Some(order) = amazon_state
        .orders
        .iter()
        .find(|o| o.id == order_id && o.is_visible(now))
    else {
        return amazon::error_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("Order {order_id} was not found."),
            None,
        );
    };
    let body = order_json(order, now, wants("FULFILLMENT"), wants("PACKAGES"));
    drop(amazon_state);
    Json(json!({ "order": body })).into_response()
}

// ---------------------------------------------------------------------------------------
// JSON, field by field from the contract

/// Contract `Order`.
fn order_json(
    order: &ScenarioOrder,
    now: DateTime<Utc>,
    with_fulfillment: bool,
    with_packages: bool,
) -> Value {
    let mut o = Map::new();
    o.insert("orderId".into(), json!(order.id));
    if let Some(seller_order_id) = &order.seller_order_id {
        o.insert(
            "orderAliases".into(),
            json!([{ "aliasId": seller_order_id, "aliasType": "SELLER_ORDER_ID" }]),
        );
    }
    o.insert("createdTime".into(), json!(iso(order.purchase_date(now))));
    o.insert(
        "lastUpdatedTime".into(),
        json!(iso(order.last_update_date(now))),
    );
    let programs = programs(order);
    if !programs.is_empty() {
        o.insert("programs".into(), json!(programs));
    }
    o.insert("salesChannel".into(), sales_channel_json(order));
    if with_fulfillment {
        o.insert("fulfillment".into(), fulfillment_json(order, now));
    }
    o.insert(
        "orderItems".into(),
        Value::Array(
            order
                .items
                .iter()
                .map(|item| item_json(order, item, with_fulfillment))
                .collect(),
        ),
    );
    if with_packages && order.channel == FulfillmentChannel::Mfn && !order.packages.is_empty() {
        o.insert(
            "packages".into(),
            Value::Array(
                order
                    .packages
                    .iter()
                    .enumerate()
                    .map(|(index, package)| package_json(package, index, now))
                    .collect(),
            ),
        );
    }
    Value::Object(o)
}

/// `programs`: the ones the scenario models.
fn programs(order: &ScenarioOrder) -> Vec<&'static str> {
    let mut programs = Vec::new();
    if order.prime {
        programs.push("PRIME");
    }
    if order.business {
        programs.push("AMAZON_BUSINESS");
    }
    if order.order_type == OrderType::Preorder {
        programs.push("PREORDER");
    }
    programs
}

/// Contract `SalesChannel`.
fn sales_channel_json(order: &ScenarioOrder) -> Value {
    let mut o = Map::new();
    o.insert("channelName".into(), json!("AMAZON"));
    o.insert("marketplaceId".into(), json!(order.marketplace));
    let name = order
        .sales_channel
        .clone()
        .or_else(|| marketplace_name(&order.marketplace).map(str::to_owned));
    if let Some(name) = name {
        o.insert("marketplaceName".into(), json!(name));
    }
    Value::Object(o)
}

fn marketplace_name(marketplace: &str) -> Option<&'static str> {
    match marketplace {
        MARKETPLACE_US => Some("Amazon.com"),
        MARKETPLACE_CA => Some("Amazon.ca"),
        "A1AM78C64UM0Y8" => Some("Amazon.com.mx"),
        "A2Q3Y263D00KWC" => Some("Amazon.com.br"),
        _ => None,
    }
}

/// Contract `FulfillmentStatus` for an Orders v0 status.
fn fulfillment_status(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::PendingAvailability => "PENDING_AVAILABILITY",
        OrderStatus::Pending => "PENDING",
        OrderStatus::Unshipped => "UNSHIPPED",
        OrderStatus::PartiallyShipped => "PARTIALLY_SHIPPED",
        OrderStatus::Shipped | OrderStatus::InvoiceUnconfirmed => "SHIPPED",
        OrderStatus::Canceled => "CANCELLED",
        OrderStatus::Unfulfillable => "UNFULFILLABLE",
    }
}

/// `fulfillmentServiceLevel` for an Orders v0 `ShipmentServiceLevelCategory`.
fn service_level(category: &str) -> Option<&'static str> {
    match category {
        "Expedited" => Some("EXPEDITED"),
        "FreeEconomy" => Some("FREE_ECONOMY"),
        "NextDay" => Some("NEXT_DAY"),
        "Priority" => Some("PRIORITY"),
        "SameDay" => Some("SAME_DAY"),
        "SecondDay" => Some("SECOND_DAY"),
        "Scheduled" => Some("SCHEDULED"),
        "Standard" => Some("STANDARD"),
        _ => None,
    }
}

/// Contract `DateTimeRange`, when either end is known.
fn window(earliest: Option<When>, latest: Option<When>, now: DateTime<Utc>) -> Option<Value> {
    let mut o = Map::new();
    if let Some(at) = earliest {
        o.insert("earliestDateTime".into(), json!(iso(at.resolve(now))));
    }
    if let Some(at) = latest {
        o.insert("latestDateTime".into(), json!(iso(at.resolve(now))));
    }
    (!o.is_empty()).then_some(Value::Object(o))
}

/// Contract `OrderFulfillment`. The ship-by and deliver-by windows are the seller's
/// promise: MFN orders only.
fn fulfillment_json(order: &ScenarioOrder, now: DateTime<Utc>) -> Value {
    let mut o = Map::new();
    o.insert(
        "fulfillmentStatus".into(),
        json!(fulfillment_status(order.status)),
    );
    let merchant = order.channel == FulfillmentChannel::Mfn;
    o.insert(
        "fulfilledBy".into(),
        json!(if merchant { "MERCHANT" } else { "AMAZON" }),
    );
    let level = service_level(order.ship_category.as_deref().unwrap_or("Standard"));
    if let Some(level) = level {
        o.insert("fulfillmentServiceLevel".into(), json!(level));
    }
    if merchant {
        if let Some(ship_by) = window(order.earliest_ship, order.latest_ship, now) {
            o.insert("shipByWindow".into(), ship_by);
        }
        if let Some(deliver_by) = window(order.earliest_delivery, order.latest_delivery, now) {
            o.insert("deliverByWindow".into(), deliver_by);
        }
    }
    Value::Object(o)
}

/// Contract `OrderItem`; the unit price withheld while payment is pending, as Orders
/// v0 does.
fn item_json(order: &ScenarioOrder, item: &ScenarioItem, with_fulfillment: bool) -> Value {
    let mut product = Map::new();
    product.insert("asin".into(), json!(item.asin));
    product.insert("title".into(), json!(item.title));
    product.insert("sellerSku".into(), json!(item.sku));
    if !order.status.hides_pricing() {
        product.insert(
            "price".into(),
            json!({ "unitPrice": {
                "amount": item.unit_price.to_string(),
                "currencyCode": order.currency_code(),
            }}),
        );
    }
    let mut o = Map::new();
    o.insert("orderItemId".into(), json!(item.id));
    o.insert("quantityOrdered".into(), json!(item.quantity));
    o.insert("product".into(), Value::Object(product));
    if with_fulfillment {
        let fulfilled = order.quantity_shipped(item);
        let unfulfilled = if order.status == OrderStatus::Canceled {
            0
        } else {
            item.quantity.saturating_sub(fulfilled)
        };
        o.insert(
            "fulfillment".into(),
            json!({ "quantityFulfilled": fulfilled, "quantityUnfulfilled": unfulfilled }),
        );
    }
    Value::Object(o)
}

/// Contract `OrderPackage`, without `shipFromAddress` and `packageItems` (the scenario
/// does not model them).
fn package_json(package: &ScenarioOrderPackage, index: usize, now: DateTime<Utc>) -> Value {
    let shipped = iso(package.shipped.resolve(now));
    let mut status = Map::new();
    status.insert("status".into(), json!(package.status()));
    if let Some(detailed) = &package.detailed_status {
        status.insert("detailedStatus".into(), json!(detailed));
    }
    let mut o = Map::new();
    o.insert(
        "packageReferenceId".into(),
        json!(package.reference_at(index)),
    );
    o.insert("createdTime".into(), json!(shipped));
    o.insert("packageStatus".into(), Value::Object(status));
    o.insert("carrier".into(), json!(package.carrier));
    o.insert("shipTime".into(), json!(shipped));
    if let Some(service) = &package.shipping_service {
        o.insert("shippingService".into(), json!(service));
    }
    o.insert("trackingNumber".into(), json!(package.tracking_number));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::sandbox::scenario::{Amount, Scenario};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn mfn(packages: Vec<ScenarioOrderPackage>) -> ScenarioOrder {
        ScenarioOrder {
            packages,
            items: vec![ScenarioItem::new(
                "50000000000001",
                "SKU-1",
                "B0TEST0001",
                "Item 1",
                2,
                Amount::from_cents(1999),
            )],
            ..ScenarioOrder::new(
                "113-5555555-5555555",
                OrderStatus::Shipped,
                FulfillmentChannel::Mfn,
                When::days_ago(2),
            )
        }
    }

    #[test]
    fn packages_follow_the_scenario_field_by_field() {
        let mut second =
            ScenarioOrderPackage::new("USPS", "9400111899223100012345", When::hours_ago(3));
        second.reference = Some("B".into());
        second.status = Some("DELIVERED".into());
        second.detailed_status = Some("DELIVERED".into());
        second.shipping_service = Some("USPS Ground Advantage".into());
        let order = mfn(vec![
            ScenarioOrderPackage::new("UPS", "1Z999AA10123456784", When::days_ago(1)),
            second,
        ]);
        let body = order_json(&order, now(), false, true);
        assert_eq!(
            body["packages"],
            json!([
                {"packageReferenceId": "1", "createdTime": "2026-11-21T12:00:00Z",
                 "packageStatus": {"status": "SHIPPED"}, "carrier": "UPS",
                 "shipTime": "2026-11-21T12:00:00Z", "trackingNumber": "1Z999AA10123456784"},
                {"packageReferenceId": "B", "createdTime": "2026-11-22T09:00:00Z",
                 "packageStatus": {"status": "DELIVERED", "detailedStatus": "DELIVERED"},
                 "carrier": "USPS", "shipTime": "2026-11-22T09:00:00Z",
                 "shippingService": "USPS Ground Advantage",
                 "trackingNumber": "9400111899223100012345"},
            ])
        );
        // Required fields of Order and OrderItem, always.
        for field in [
            "orderId",
            "createdTime",
            "lastUpdatedTime",
            "salesChannel",
            "orderItems",
        ] {
            assert!(body.get(field).is_some(), "{field} missing: {body}");
        }
        assert_eq!(body["salesChannel"]["channelName"], "AMAZON");
        assert_eq!(body["orderItems"][0]["quantityOrdered"], 2);
        assert!(body.get("fulfillment").is_none());
        // Without PACKAGES, no packages.
        assert!(
            order_json(&order, now(), false, false)
                .get("packages")
                .is_none()
        );
        // With FULFILLMENT, the order's and the items'.
        let full = order_json(&order, now(), true, false);
        assert_eq!(full["fulfillment"]["fulfillmentStatus"], "SHIPPED");
        assert_eq!(full["fulfillment"]["fulfilledBy"], "MERCHANT");
        assert_eq!(full["orderItems"][0]["fulfillment"]["quantityFulfilled"], 2);
    }

    /// A change to a valid package that makes it invalid.
    type Change = fn(&mut ScenarioOrderPackage);

    #[test]
    fn packages_are_checked_with_the_order() {
        let ok = mfn(vec![ScenarioOrderPackage::new("UPS", "1Z1", When::now())]);
        assert_eq!(Scenario::with_orders(vec![ok.clone()]).validate(), Ok(()));
        let afn = ScenarioOrder {
            channel: FulfillmentChannel::Afn,
            ..ok.clone()
        };
        let Err(error) = Scenario::with_orders(vec![afn]).validate() else {
            panic!("packages on an AFN order were accepted")
        };
        assert!(error.contains("MFN orders only"), "{error}");

        let broken = |change: &Change| {
            let mut order = ok.clone();
            let mut extra = ScenarioOrderPackage::new("USPS", "94001", When::now());
            change(&mut extra);
            order.packages.push(extra);
            Scenario::with_orders(vec![order]).validate()
        };
        let cases: [(Change, &str); 5] = [
            (|p| p.reference = Some("1".into()), "repeated"),
            (|p| p.carrier = " ".into(), "carrier is empty"),
            (
                |p| p.tracking_number = String::new(),
                "tracking_number is empty",
            ),
            (|p| p.status = Some("LOST".into()), "status \"LOST\""),
            (
                |p| p.detailed_status = Some("ON_A_BOAT".into()),
                "detailed_status",
            ),
        ];
        for (change, why) in cases {
            let Err(error) = broken(&change) else {
                panic!("{why}: accepted")
            };
            assert!(error.contains(why), "{error}");
            assert!(error.contains("packages[1]"), "{error}");
        }
    }

    #[test]
    fn packages_read_from_yaml_and_pin_their_times() {
        let yaml = "amazon:\n  orders:\n    - id: 113-6666666-6666666\n      status: Shipped\n      channel: MFN\n      purchased: 3d\n      packages:\n        - carrier: UPS\n          tracking_number: 1Z999AA10123456784\n          shipped: 1d\n          detailed_status: PICKED_UP\n";
        let mut scenario = match Scenario::from_yaml_str(yaml) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        scenario.pin_times(now());
        let Some(order) = scenario.amazon.orders.first() else {
            panic!("no order")
        };
        assert_eq!(order.packages.len(), 1);
        assert_eq!(
            order.packages[0].shipped,
            When::At(now() - chrono::TimeDelta::days(1))
        );
        assert_eq!(order.packages[0].status(), "SHIPPED");
        let typo = yaml.replace("tracking_number", "tracking");
        assert!(Scenario::from_yaml_str(&typo).is_err());
    }
}
