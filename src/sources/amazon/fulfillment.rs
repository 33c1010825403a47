//! FBA Multi-Channel Fulfillment tracking through SP-API Fulfillment Outbound 2020-07-01
//! (`specs/amazon/fulfillmentOutbound_2020-07-01.json`): listAllFulfillmentOrders,
//! getFulfillmentOrder and getPackageTrackingDetails, their wire types, the mapping of a
//! package's tracking into a [`Shipment`], and [`poll_fulfillment`], which records the
//! parcels in the store (the store turns status changes into events for the rules).
//!
//! It only reads: it never creates, changes or cancels a fulfillment order, and never
//! decides anything. Personal data it has no use for is never parsed: the destination
//! address, notification e-mails, who signed, locker access codes and delivery photos.
//!
//! Why it re-reads more than what changed: listAllFulfillmentOrders reports an order when
//! *its* status changes (received, processing, complete), not when a parcel moves. A
//! complete order's parcel goes on to be delivered, delayed or lost without the order
//! changing again. So each poll lists a tracking horizon (14 days by default) and reads
//! again every order that changed since the checkpoint, and every shipped order whose
//! parcels are not yet all delivered, returned or cancelled.
//!
//! A fulfillment order or a package whose data breaks the contract, or that Amazon refuses
//! (a 4xx other than 401/403/429), is logged and skipped; the rest of the poll goes on.
//! A transient failure (throttling after retries, 5xx, the network) or refused
//! credentials fails the poll and leaves the checkpoint where it was.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use url::Url;

use crate::http::UpstreamError;
use crate::model::{SalesChannel, Shipment, Subject, TrackingStatus};
use crate::sources::SourceError;
use crate::sources::amazon::UsagePlan;
use crate::sources::amazon::api::{Operation, Retries, SpApi};
use crate::sources::amazon::orders::{ApiError, describe, parse_time};
use crate::store::{ShipmentReport, Store};

/// Every Fulfillment Outbound operation used here: 2 a second, burst 30.
const OUTBOUND_PLAN: UsagePlan = UsagePlan {
    rate: 2.0,
    burst: 30,
};

pub const LIST_ALL_FULFILLMENT_ORDERS: Operation = Operation {
    name: "listAllFulfillmentOrders",
    plan: Some(OUTBOUND_PLAN),
    retries: Retries::InCall,
};

pub const GET_FULFILLMENT_ORDER: Operation = Operation {
    name: "getFulfillmentOrder",
    plan: Some(OUTBOUND_PLAN),
    retries: Retries::InCall,
};

pub const GET_PACKAGE_TRACKING_DETAILS: Operation = Operation {
    name: "getPackageTrackingDetails",
    plan: Some(OUTBOUND_PLAN),
    retries: Retries::InCall,
};

const API: [&str; 3] = ["fba", "outbound", "2020-07-01"];

// ---------------------------------------------------------------------------------------
// Wire types. What nightdesk needs is required; the rest is optional, because Amazon's
// own examples leave out fields the contract calls required (`marketplaceId`) and send
// `null` for arrays.

/// An element parsed on its own: one that breaks the contract is kept raw with why, so
/// the caller skips it alone instead of losing the whole answer.
#[derive(Debug, Clone)]
pub enum Lenient<T> {
    Parsed(T),
    Broken {
        raw: serde_json::Value,
        reason: String,
    },
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(deserializer)?;
        Ok(match T::deserialize(&raw) {
            Ok(parsed) => Lenient::Parsed(parsed),
            Err(e) => Lenient::Broken {
                reason: e.to_string(),
                raw,
            },
        })
    }
}

/// `null` read as the empty value.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `ListAllFulfillmentOrdersResponse`.
#[derive(Debug, Deserialize)]
pub struct ListAllFulfillmentOrdersResponse {
    pub payload: Option<ListAllFulfillmentOrdersResult>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub errors: Vec<ApiError>,
}

/// `ListAllFulfillmentOrdersResult`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAllFulfillmentOrdersResult {
    pub next_token: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub fulfillment_orders: Vec<Lenient<WireFulfillmentOrder>>,
}

/// `FulfillmentOrder`, without `destinationAddress`, `notificationEmails`,
/// `displayableOrderComment` and `codSettings`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireFulfillmentOrder {
    pub seller_fulfillment_order_id: String,
    pub marketplace_id: Option<String>,
    pub displayable_order_id: Option<String>,
    pub displayable_order_date: Option<String>,
    pub shipping_speed_category: Option<String>,
    pub delivery_window: Option<WireDeliveryWindow>,
    pub fulfillment_action: Option<String>,
    pub fulfillment_policy: Option<String>,
    pub received_date: Option<String>,
    /// `FulfillmentOrderStatus` as sent (see [`FulfillmentOrderStatus::parse`]).
    pub fulfillment_order_status: Option<String>,
    pub status_updated_date: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub feature_constraints: Vec<WireFeatureSettings>,
}

/// `DeliveryWindow` (Scheduled Delivery, JP only).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireDeliveryWindow {
    pub start_date: Option<String>,
    pub end_date: Option<String>,
}

/// `FeatureSettings`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireFeatureSettings {
    pub feature_name: Option<String>,
    pub feature_fulfillment_policy: Option<String>,
}

/// `GetFulfillmentOrderResponse`.
#[derive(Debug, Deserialize)]
pub struct GetFulfillmentOrderResponse {
    pub payload: Option<GetFulfillmentOrderResult>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub errors: Vec<ApiError>,
}

/// `GetFulfillmentOrderResult`, without `returnAuthorizations` (addresses) and
/// `paymentInformation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetFulfillmentOrderResult {
    pub fulfillment_order: WireFulfillmentOrder,
    #[serde(default, deserialize_with = "null_as_default")]
    pub fulfillment_order_items: Vec<WireFulfillmentOrderItem>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub fulfillment_shipments: Vec<WireFulfillmentShipment>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub return_items: Vec<WireReturnItem>,
}

/// `FulfillmentOrderItem`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireFulfillmentOrderItem {
    pub seller_sku: Option<String>,
    pub seller_fulfillment_order_item_id: Option<String>,
    pub quantity: Option<i64>,
    pub cancelled_quantity: Option<i64>,
    pub unfulfillable_quantity: Option<i64>,
    pub fulfillment_network_sku: Option<String>,
    pub order_item_disposition: Option<String>,
    pub estimated_ship_date: Option<String>,
    pub estimated_arrival_date: Option<String>,
    pub per_unit_declared_value: Option<WireMoney>,
}

/// `Money`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireMoney {
    pub currency_code: Option<String>,
    pub value: Option<String>,
}

/// `FulfillmentShipment`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireFulfillmentShipment {
    pub amazon_shipment_id: Option<String>,
    pub fulfillment_center_id: Option<String>,
    /// PENDING, SHIPPED, CANCELLED_BY_FULFILLER, CANCELLED_BY_SELLER, as sent.
    pub fulfillment_shipment_status: Option<String>,
    pub shipping_date: Option<String>,
    pub estimated_arrival_date: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub shipping_notes: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub fulfillment_shipment_item: Vec<WireShipmentItem>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub fulfillment_shipment_package: Vec<Lenient<WirePackage>>,
}

impl WireFulfillmentShipment {
    /// Its packages will never leave: the fulfiller or the seller cancelled it.
    fn is_cancelled(&self) -> bool {
        self.fulfillment_shipment_status
            .as_deref()
            .is_some_and(|s| s.trim().to_ascii_uppercase().starts_with("CANCELLED"))
    }
}

/// `FulfillmentShipmentItem`, without serial numbers and lot codes.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireShipmentItem {
    pub seller_sku: Option<String>,
    pub seller_fulfillment_order_item_id: Option<String>,
    pub quantity: Option<i64>,
    pub package_number: Option<i64>,
}

/// `FulfillmentShipmentPackage`, without `lockerDetails` (an access code) and
/// `deliveryInformation` (short-lived document links, where it was left).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WirePackage {
    pub package_number: i64,
    pub carrier_code: String,
    pub tracking_number: Option<String>,
    pub amazon_fulfillment_tracking_number: Option<String>,
    pub estimated_arrival_date: Option<String>,
}

/// `ReturnItem`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireReturnItem {
    pub seller_return_item_id: Option<String>,
    pub seller_fulfillment_order_item_id: Option<String>,
    pub amazon_shipment_id: Option<String>,
    pub seller_return_reason_code: Option<String>,
    pub amazon_return_reason_code: Option<String>,
    pub status: Option<String>,
    pub status_changed_date: Option<String>,
    pub return_received_condition: Option<String>,
}

/// `GetPackageTrackingDetailsResponse`.
#[derive(Debug, Deserialize)]
pub struct GetPackageTrackingDetailsResponse {
    pub payload: Option<PackageTrackingDetails>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub errors: Vec<ApiError>,
}

/// `PackageTrackingDetails`, without `shipToAddress`, `signedForBy` and
/// `carrierPhoneNumber`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageTrackingDetails {
    pub package_number: i64,
    pub tracking_number: Option<String>,
    pub customer_tracking_link: Option<String>,
    pub carrier_code: Option<String>,
    #[serde(rename = "carrierURL")]
    pub carrier_url: Option<String>,
    pub ship_date: Option<String>,
    pub estimated_arrival_date: Option<String>,
    /// `CurrentStatus` as sent; an unknown value is kept and maps to `Unknown`.
    pub current_status: Option<String>,
    pub current_status_description: Option<String>,
    pub delivery_window: Option<WireDateRange>,
    pub additional_location_info: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tracking_events: Vec<WireTrackingEvent>,
}

/// `DateRange`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireDateRange {
    pub earliest: Option<String>,
    pub latest: Option<String>,
}

/// `TrackingEvent`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireTrackingEvent {
    pub event_date: String,
    pub event_address: Option<WireTrackingAddress>,
    /// `EventCode` as sent; an unknown code is kept and says nothing.
    pub event_code: String,
    pub event_description: Option<String>,
}

/// `TrackingAddress`: a city, not an address.
#[derive(Debug, Clone, Deserialize)]
pub struct WireTrackingAddress {
    pub city: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
}

/// `FulfillmentOrderStatus`. Amazon's examples send it in capitals (`COMPLETE`), the
/// enum in CamelCase (`Complete`): both are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FulfillmentOrderStatus {
    New,
    Received,
    Planning,
    Processing,
    Cancelled,
    Complete,
    CompletePartialled,
    Unfulfillable,
    Invalid,
}

impl FulfillmentOrderStatus {
    const ALL: [FulfillmentOrderStatus; 9] = [
        FulfillmentOrderStatus::New,
        FulfillmentOrderStatus::Received,
        FulfillmentOrderStatus::Planning,
        FulfillmentOrderStatus::Processing,
        FulfillmentOrderStatus::Cancelled,
        FulfillmentOrderStatus::Complete,
        FulfillmentOrderStatus::CompletePartialled,
        FulfillmentOrderStatus::Unfulfillable,
        FulfillmentOrderStatus::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FulfillmentOrderStatus::New => "New",
            FulfillmentOrderStatus::Received => "Received",
            FulfillmentOrderStatus::Planning => "Planning",
            FulfillmentOrderStatus::Processing => "Processing",
            FulfillmentOrderStatus::Cancelled => "Cancelled",
            FulfillmentOrderStatus::Complete => "Complete",
            FulfillmentOrderStatus::CompletePartialled => "CompletePartialled",
            FulfillmentOrderStatus::Unfulfillable => "Unfulfillable",
            FulfillmentOrderStatus::Invalid => "Invalid",
        }
    }

    /// The status, whatever its case and underscores; `None` for a value outside the enum.
    pub fn parse(text: &str) -> Option<Self> {
        let wanted: String = text
            .chars()
            .filter(|c| *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().to_ascii_lowercase() == wanted.trim())
    }

    /// Whether a package can exist: picking has begun. Before that (New, Received,
    /// Planning) and on the ways an order ends unshipped there is no parcel to track.
    pub fn may_have_packages(self) -> bool {
        matches!(
            self,
            FulfillmentOrderStatus::Processing
                | FulfillmentOrderStatus::Complete
                | FulfillmentOrderStatus::CompletePartialled
        )
    }
}

// ---------------------------------------------------------------------------------------
// Normalisation (research/marketplaces.md §9, research/carriers.md §2.1).

/// The closed set of exception reasons (`model::Shipment::exception_reason`).
pub const EXCEPTION_REASONS: [&str; 9] = [
    "delay",
    "customs",
    "address",
    "damaged",
    "lost",
    "refused",
    "held",
    "payment_due",
    "other",
];

/// What a tracking event code says about where a parcel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventMeaning {
    LabelCreated,
    InTransit,
    OutForDelivery,
    AvailableForPickup,
    Attempted,
    Delivered,
    Returning,
    /// A problem, with its reason when the code names one.
    Problem(Option<&'static str>),
    /// Nothing about where it is (an appointment, a call), or a code we do not know.
    Neutral,
}

fn event_meaning(code: &str) -> EventMeaning {
    use EventMeaning::*;
    match code.trim().to_ascii_uppercase().as_str() {
        // Carrier notified to pick up: a label, no scan yet.
        "EVENT_101" => LabelCreated,
        // Picked up, arrival/departure scans, customs started/cleared, received from a
        // prior carrier, address corrected and rescheduled: moving again.
        "EVENT_102" | "EVENT_201" | "EVENT_202" | "EVENT_203" | "EVENT_204" | "EVENT_205"
        | "EVENT_206" | "EVENT_415" | "EVENT_419" => InTransit,
        "EVENT_302" => OutForDelivery,
        // Available for pickup; delivered to a locker (the buyer still has to collect it).
        "EVENT_308" | "EVENT_801" => AvailableForPickup,
        "EVENT_304" => Attempted,
        // Delivered; picked up from the locker.
        "EVENT_301" | "EVENT_804" => Delivered,
        // Returned to seller; returning to seller.
        "EVENT_309" | "EVENT_408" => Returning,
        // Held for an incorrect address; customer moved.
        "EVENT_401" | "EVENT_403" => Problem(Some("address")),
        "EVENT_402" => Problem(Some("customs")),
        // External delay; missorted (twice); delayed.
        "EVENT_404" | "EVENT_414" | "EVENT_417" | "EVENT_418" => Problem(Some("delay")),
        "EVENT_405" => Problem(Some("damaged")),
        "EVENT_406" => Problem(Some("held")),
        // Refused; refused because of customs charges.
        "EVENT_407" | "EVENT_413" => Problem(Some("refused")),
        "EVENT_409" => Problem(Some("lost")),
        // Paperwork without the parcel, or the parcel without its paperwork.
        "EVENT_411" | "EVENT_412" => Problem(Some("other")),
        // Undeliverable, without saying why: the status may (UNDELIVERABLE is a loss).
        "EVENT_416" => Problem(None),
        // Customer contacted; appointment scheduled.
        _ => Neutral,
    }
}

/// What `currentStatus` says, before the latest event refines it.
fn status_meaning(current: &str) -> (TrackingStatus, Option<&'static str>) {
    match current.trim().to_ascii_uppercase().as_str() {
        "IN_TRANSIT" => (TrackingStatus::InTransit, None),
        "OUT_FOR_DELIVERY" => (TrackingStatus::OutForDelivery, None),
        "DELIVERED" => (TrackingStatus::Delivered, None),
        "AVAILABLE_FOR_PICKUP" => (TrackingStatus::AvailableForPickup, None),
        "DELIVERY_ATTEMPTED" => (TrackingStatus::DeliveryAttempted, None),
        "DELAYED" => (TrackingStatus::Exception, Some("delay")),
        "CUSTOMER_ACTION" => (TrackingStatus::Exception, Some("other")),
        // "Undeliverable because package was lost or destroyed."
        "UNDELIVERABLE" => (TrackingStatus::Exception, Some("lost")),
        "RETURNING" | "RETURNED" => (TrackingStatus::ReturnToSender, None),
        // The buyer's return of a delivered parcel (request, pickup, receipt, refund):
        // the parcel itself reached the buyer; the return is not a delivery problem.
        "RETURN_REQUEST_ACCEPTED"
        | "PICKUP_SCHEDULED"
        | "PICKUP_ATTEMPTED"
        | "PICKUP_SUCCESSFUL"
        | "PICKUP_CANCELLED"
        | "RETURN_RECEIVED_IN_FC"
        | "REFUND_ISSUED" => (TrackingStatus::Delivered, None),
        _ => (TrackingStatus::Unknown, None),
    }
}

/// The normalised status and exception reason of a package from its `currentStatus` and
/// the code of its latest tracking event.
///
/// Amazon's status is the base. Delivered, returned and cancelled are final: a later code
/// does not reopen them. An exception status stays an exception (normal scans do not
/// clear it; Amazon's status does) and a problem code only sharpens its reason, except
/// that a delivery or a return to the seller ends it. Otherwise the latest code, being
/// the newer and more specific word, decides: a problem code makes it an exception, an
/// attempt a `DeliveryAttempted`, "carrier notified to pick up" a `LabelCreated`, and
/// so on. A package with neither a status nor a scan has a label and nothing more.
pub fn normalise(
    current_status: Option<&str>,
    latest_event: Option<&str>,
) -> (TrackingStatus, Option<&'static str>) {
    let (status, reason) = match (current_status, latest_event) {
        (None, None) => return (TrackingStatus::LabelCreated, None),
        (Some(current), _) => status_meaning(current),
        (None, Some(_)) => (TrackingStatus::Unknown, None),
    };
    let Some(code) = latest_event else {
        return (status, reason);
    };
    let meaning = event_meaning(code);
    match (status, meaning) {
        (
            TrackingStatus::Delivered | TrackingStatus::ReturnToSender | TrackingStatus::Cancelled,
            _,
        ) => (status, reason),
        (_, EventMeaning::Delivered) => (TrackingStatus::Delivered, None),
        (_, EventMeaning::Returning) => (TrackingStatus::ReturnToSender, None),
        (TrackingStatus::Exception, EventMeaning::Problem(Some(sharper))) => {
            (TrackingStatus::Exception, Some(sharper))
        }
        (TrackingStatus::Exception, _) => (status, reason),
        (_, EventMeaning::Problem(named)) => (TrackingStatus::Exception, named.or(Some("other"))),
        (_, EventMeaning::LabelCreated) => (TrackingStatus::LabelCreated, None),
        (_, EventMeaning::InTransit) => (TrackingStatus::InTransit, None),
        (_, EventMeaning::OutForDelivery) => (TrackingStatus::OutForDelivery, None),
        (_, EventMeaning::AvailableForPickup) => (TrackingStatus::AvailableForPickup, None),
        (_, EventMeaning::Attempted) => (TrackingStatus::DeliveryAttempted, None),
        (_, EventMeaning::Neutral) => (status, reason),
    }
}

/// The subject a fulfillment order's parcels belong to: the Amazon order when its
/// displayable id is one (`3-7-7` digits), else the fulfillment order itself (an MCF order
/// of another channel).
pub fn subject_for(order: &WireFulfillmentOrder) -> Subject {
    match order.displayable_order_id.as_deref().map(str::trim) {
        Some(id) if is_amazon_order_id(id) => Subject::order(SalesChannel::Amazon, id),
        _ => Subject::named("fulfillment", &order.seller_fulfillment_order_id),
    }
}

fn is_amazon_order_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .zip([3, 7, 7])
            .all(|(part, len)| part.len() == len && part.bytes().all(|b| b.is_ascii_digit()))
}

/// The buyer's tracking link, if it is a web link. Amazon's example sends it
/// percent-encoded whole (`https%3A%2F%2F…%0A`); that form is decoded.
pub fn tracking_link(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let lower = raw.to_ascii_lowercase();
    let text = if lower.starts_with("https%3a%2f%2f") || lower.starts_with("http%3a%2f%2f") {
        percent_decode(raw)?
    } else {
        raw.to_owned()
    };
    let url = Url::parse(text.trim()).ok()?;
    matches!(url.scheme(), "https" | "http").then(|| url.to_string())
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn non_empty(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

fn time(field: &str, text: &str) -> Result<DateTime<Utc>, String> {
    parse_time(text).ok_or_else(|| format!("{field} {text:?} is not an ISO 8601 time"))
}

/// The first of these times that is given, parsed; a given one that does not parse
/// breaks the contract.
fn first_time(candidates: &[(&str, Option<&str>)]) -> Result<Option<DateTime<Utc>>, String> {
    for (field, text) in candidates {
        if let Some(text) = non_empty(*text) {
            return time(field, text).map(Some);
        }
    }
    Ok(None)
}

/// A package as a parcel: `Ok(None)` while it has no tracking number yet (nothing to key
/// it by), `Err` with why when its data breaks the contract.
pub fn parcel(
    shipment: &WireFulfillmentShipment,
    package: &WirePackage,
    tracking: &PackageTrackingDetails,
) -> Result<Option<Shipment>, String> {
    if tracking.package_number != package.package_number {
        return Err(format!(
            "tracking details are for package {}, not {}",
            tracking.package_number, package.package_number
        ));
    }
    // The fulfillment order's own fields first: they key the parcel, and must not move
    // when the tracking answer leaves one out.
    let Some(tracking_number) = non_empty(package.tracking_number.as_deref())
        .or(non_empty(tracking.tracking_number.as_deref()))
        .or(non_empty(
            package.amazon_fulfillment_tracking_number.as_deref(),
        ))
    else {
        return Ok(None);
    };
    let carrier = non_empty(Some(package.carrier_code.as_str()))
        .or(non_empty(tracking.carrier_code.as_deref()))
        .ok_or("no carrierCode")?;
    let mut latest: Option<(DateTime<Utc>, &WireTrackingEvent)> = None;
    for event in &tracking.tracking_events {
        let at = time(
            &format!("{} eventDate", event.event_code),
            &event.event_date,
        )?;
        // Ties keep the first: Amazon lists the newest first.
        if latest.is_none_or(|(newest, _)| at > newest) {
            latest = Some((at, event));
        }
    }
    let current = non_empty(tracking.current_status.as_deref());
    let code = latest.map(|(_, e)| e.event_code.trim());
    let (status, reason) = normalise(current, code);
    let raw_code = match (current, code) {
        (Some(current), Some(code)) => Some(format!("{current}/{code}")),
        (Some(only), None) | (None, Some(only)) => Some(only.to_owned()),
        (None, None) => None,
    };
    let status_description = non_empty(tracking.current_status_description.as_deref());
    let event_description = latest.and_then(|(_, e)| non_empty(e.event_description.as_deref()));
    let status_text = match (status_description, event_description) {
        (Some(s), Some(e)) if s != e => Some(format!("{s} — {e}")),
        (Some(text), _) | (None, Some(text)) => Some(text.to_owned()),
        (None, None) => None,
    };
    let location = latest
        .and_then(|(_, e)| e.event_address.as_ref())
        .map(|a| {
            [&a.city, &a.state, &a.country]
                .into_iter()
                .filter_map(|part| non_empty(part.as_deref()))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|l| !l.is_empty());
    let estimated_delivery = first_time(&[
        (
            "estimatedArrivalDate",
            tracking.estimated_arrival_date.as_deref(),
        ),
        (
            "deliveryWindow.latest",
            tracking
                .delivery_window
                .as_ref()
                .and_then(|w| w.latest.as_deref()),
        ),
        (
            "package estimatedArrivalDate",
            package.estimated_arrival_date.as_deref(),
        ),
        (
            "shipment estimatedArrivalDate",
            shipment.estimated_arrival_date.as_deref(),
        ),
    ])?;
    Ok(Some(Shipment {
        carrier: carrier.to_owned(),
        tracking_number: tracking_number.to_owned(),
        tracking_url: tracking
            .customer_tracking_link
            .as_deref()
            .and_then(tracking_link),
        status,
        exception_reason: reason.map(str::to_owned),
        raw_code,
        status_text,
        last_event_at: latest.map(|(at, _)| at),
        last_event_location: location,
        estimated_delivery,
        conditions: Vec::new(),
    }))
}

/// A package of a cancelled shipment: it will never leave, so it is not tracked.
fn cancelled_parcel(shipment: &WireFulfillmentShipment, package: &WirePackage) -> Option<Shipment> {
    let tracking_number = non_empty(package.tracking_number.as_deref()).or(non_empty(
        package.amazon_fulfillment_tracking_number.as_deref(),
    ))?;
    Some(Shipment {
        carrier: non_empty(Some(package.carrier_code.as_str()))?.to_owned(),
        tracking_number: tracking_number.to_owned(),
        tracking_url: None,
        status: TrackingStatus::Cancelled,
        exception_reason: None,
        raw_code: shipment.fulfillment_shipment_status.clone(),
        status_text: None,
        last_event_at: None,
        conditions: Vec::new(),
        last_event_location: None,
        estimated_delivery: None,
    })
}

// ---------------------------------------------------------------------------------------
// The client.

/// How far [`poll_fulfillment`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FulfillmentPolicy {
    /// Where the first poll starts.
    pub initial_lookback: Duration,
    /// Each poll re-reads this much before the checkpoint.
    pub overlap: Duration,
    /// The checkpoint stays this far behind now (Amazon's listing shows changes late).
    pub lag: Duration,
    /// Orders listed this far back have their moving parcels tracked again.
    pub tracking_horizon: Duration,
    /// The most pages one listing reads: Amazon has been seen handing out next tokens
    /// with empty pages (selling-partner-api-models#2104); a listing that never ends
    /// fails the poll instead of running for ever.
    pub max_pages: usize,
}

impl Default for FulfillmentPolicy {
    fn default() -> Self {
        Self {
            initial_lookback: Duration::days(7),
            overlap: Duration::minutes(10),
            lag: Duration::minutes(1),
            tracking_horizon: Duration::days(14),
            max_pages: 500,
        }
    }
}

/// One page of listAllFulfillmentOrders.
#[derive(Debug, Default)]
pub struct FulfillmentOrdersPage {
    pub orders: Vec<WireFulfillmentOrder>,
    /// Orders on the page that break the contract: (id, why).
    pub skipped: Vec<(String, String)>,
    pub next_token: Option<String>,
}

/// The Fulfillment Outbound API of one seller account, on the account's shared client
/// (its token and usage-plan buckets).
pub struct FulfillmentClient {
    api: Arc<SpApi>,
    policy: FulfillmentPolicy,
}

impl FulfillmentClient {
    pub fn new(api: Arc<SpApi>) -> Self {
        Self {
            api,
            policy: FulfillmentPolicy::default(),
        }
    }

    pub fn with_policy(mut self, policy: FulfillmentPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn policy(&self) -> FulfillmentPolicy {
        self.policy
    }

    /// listAllFulfillmentOrders: the first page from `query_start`, or the page of
    /// `next_token`. The token is sent alone, as MWS's ByNextToken took it: it carries
    /// the query it continues.
    pub async fn list_page(
        &self,
        query_start: DateTime<Utc>,
        next_token: Option<&str>,
    ) -> Result<FulfillmentOrdersPage, UpstreamError> {
        let url = self
            .api
            .url(&[API[0], API[1], API[2], "fulfillmentOrders"])?;
        let query = match next_token {
            Some(token) => vec![("nextToken", token.to_owned())],
            None => vec![(
                "queryStartDate",
                query_start.to_rfc3339_opts(SecondsFormat::Secs, true),
            )],
        };
        let page: ListAllFulfillmentOrdersResponse = self
            .api
            .get_json(&LIST_ALL_FULFILLMENT_ORDERS, &url, &query)
            .await?;
        let Some(payload) = page.payload else {
            return Err(no_payload(
                "listAllFulfillmentOrders response",
                &page.errors,
            ));
        };
        let mut out = FulfillmentOrdersPage {
            next_token: payload.next_token.filter(|t| !t.trim().is_empty()),
            ..FulfillmentOrdersPage::default()
        };
        for order in payload.fulfillment_orders {
            match order {
                Lenient::Parsed(order) => out.orders.push(order),
                Lenient::Broken { raw, reason } => {
                    let id = raw["sellerFulfillmentOrderId"]
                        .as_str()
                        .unwrap_or("(no sellerFulfillmentOrderId)");
                    out.skipped.push((id.to_owned(), reason));
                }
            }
        }
        Ok(out)
    }

    /// getFulfillmentOrder.
    pub async fn fulfillment_order(
        &self,
        seller_fulfillment_order_id: &str,
    ) -> Result<GetFulfillmentOrderResult, UpstreamError> {
        let url = self.api.url(&[
            API[0],
            API[1],
            API[2],
            "fulfillmentOrders",
            seller_fulfillment_order_id,
        ])?;
        let answer: GetFulfillmentOrderResponse =
            self.api.get_json(&GET_FULFILLMENT_ORDER, &url, &[]).await?;
        answer.payload.ok_or_else(|| {
            no_payload(
                &format!("getFulfillmentOrder response for {seller_fulfillment_order_id}"),
                &answer.errors,
            )
        })
    }

    /// getPackageTrackingDetails.
    pub async fn package_tracking(
        &self,
        package_number: i64,
    ) -> Result<PackageTrackingDetails, UpstreamError> {
        let url = self.api.url(&[API[0], API[1], API[2], "tracking"])?;
        let query = [("packageNumber", package_number.to_string())];
        let answer: GetPackageTrackingDetailsResponse = self
            .api
            .get_json(&GET_PACKAGE_TRACKING_DETAILS, &url, &query)
            .await?;
        answer.payload.ok_or_else(|| {
            no_payload(
                &format!("getPackageTrackingDetails response for package {package_number}"),
                &answer.errors,
            )
        })
    }
}

/// A 2xx answer without `payload`: the contract's `errors` (if any) say why.
fn no_payload(what: &str, errors: &[ApiError]) -> UpstreamError {
    UpstreamError::Malformed {
        what: what.to_owned(),
        reason: if errors.is_empty() {
            "no payload".to_owned()
        } else {
            describe(errors)
        },
    }
}

/// An error about one order or package that no retry will fix and that says nothing
/// about the account: the data breaks the contract, or Amazon refuses that one id. Such
/// an item is skipped; anything else (throttling, 5xx, the network, 401/403) fails the
/// poll.
fn only_this_item(error: &UpstreamError) -> bool {
    match error {
        UpstreamError::Malformed { .. } => true,
        UpstreamError::Status { status, .. } => {
            (400..500).contains(status) && !matches!(status, 401 | 403 | 429)
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// The poller.

/// What one [`poll_fulfillment`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FulfillmentReport {
    /// Where the listing started.
    pub query_start: Option<DateTime<Utc>>,
    pub pages: usize,
    /// Fulfillment orders listed (each once).
    pub listed: usize,
    /// Orders whose details were read: changed since the checkpoint, or with parcels
    /// still on their way.
    pub fetched: usize,
    /// Orders in a status that has no package (not yet picked, or ended unshipped).
    pub without_packages: usize,
    /// Orders unchanged whose parcels are all delivered, returned or cancelled.
    pub settled: usize,
    /// Packages turned into parcels.
    pub parcels: usize,
    /// Packages without a tracking number yet.
    pub waiting: usize,
    /// Orders and packages that broke the contract or were refused: (id, why).
    pub skipped: Vec<(String, String)>,
    pub shipments: ShipmentReport,
    /// Where the checkpoint now stands.
    pub watermark: Option<DateTime<Utc>>,
}

/// Whether a parcel can still change in a way rules care about.
fn still_moving(status: TrackingStatus) -> bool {
    !matches!(
        status,
        TrackingStatus::Delivered | TrackingStatus::ReturnToSender | TrackingStatus::Cancelled
    )
}

/// Poll FBA/MCF tracking of one account: list the fulfillment orders of the tracking
/// horizon (or since the checkpoint, after a longer gap), read the details and package
/// tracking of those that changed since the checkpoint (less the overlap) or still have
/// parcels moving, record the parcels per subject, and move the checkpoint `key` to now
/// less the lag.
pub async fn poll_fulfillment(
    client: &FulfillmentClient,
    store: &dyn Store,
    key: &str,
    now: DateTime<Utc>,
) -> Result<FulfillmentReport, SourceError> {
    let policy = client.policy;
    let changed_since = match store.checkpoint(key).await? {
        Some(watermark) => watermark - policy.overlap,
        None => now - policy.initial_lookback,
    };
    let query_start = changed_since.min(now - policy.tracking_horizon);
    let mut report = FulfillmentReport {
        query_start: Some(query_start),
        ..FulfillmentReport::default()
    };

    let mut orders = Vec::new();
    let mut seen = HashSet::new();
    let mut next_token: Option<String> = None;
    loop {
        if report.pages == policy.max_pages {
            return Err(SourceError::Upstream {
                operation: LIST_ALL_FULFILLMENT_ORDERS.name,
                error: UpstreamError::Malformed {
                    what: "listAllFulfillmentOrders paging".into(),
                    reason: format!("still handing out next tokens after {} pages", report.pages),
                },
            });
        }
        let page = client
            .list_page(query_start, next_token.as_deref())
            .await
            .map_err(SourceError::upstream(LIST_ALL_FULFILLMENT_ORDERS.name))?;
        report.pages += 1;
        for (id, reason) in page.skipped {
            tracing::warn!(
                source = key,
                fulfillment_order = %id,
                reason = %reason,
                "Fulfillment order skipped: its data breaks the contract."
            );
            report.skipped.push((id, reason));
        }
        for order in page.orders {
            // Pages may overlap; each order is read once.
            if seen.insert(order.seller_fulfillment_order_id.clone()) {
                orders.push(order);
            }
        }
        match page.next_token {
            Some(token) if next_token.as_ref() != Some(&token) => next_token = Some(token),
            Some(_) => {
                tracing::warn!(
                    source = key,
                    "listAllFulfillmentOrders repeated its next token; the listing ends there."
                );
                break;
            }
            None => break,
        }
    }
    report.listed = orders.len();

    for order in &orders {
        let id = order.seller_fulfillment_order_id.as_str();
        let status = order
            .fulfillment_order_status
            .as_deref()
            .and_then(FulfillmentOrderStatus::parse);
        // An unknown status is read anyway: packages may exist.
        if status.is_some_and(|s| !s.may_have_packages()) {
            report.without_packages += 1;
            continue;
        }
        let changed = match non_empty(order.status_updated_date.as_deref()) {
            Some(text) => match time("statusUpdatedDate", text) {
                Ok(at) => at >= changed_since,
                Err(reason) => {
                    skip(&mut report, key, id, Item::Order, reason);
                    continue;
                }
            },
            None => true,
        };
        if !changed {
            let stored = store.shipments(&subject_for(order)).await?;
            let moving = stored.is_empty() || stored.iter().any(|s| still_moving(s.status));
            if !moving {
                report.settled += 1;
                continue;
            }
        }
        let details = match client.fulfillment_order(id).await {
            Ok(details) => details,
            Err(error) if only_this_item(&error) => {
                skip(&mut report, key, id, Item::Order, error.to_string());
                continue;
            }
            Err(error) => {
                return Err(SourceError::upstream(GET_FULFILLMENT_ORDER.name)(error));
            }
        };
        report.fetched += 1;
        let mut parcels = Vec::new();
        for shipment in &details.fulfillment_shipments {
            for package in &shipment.fulfillment_shipment_package {
                let package = match package {
                    Lenient::Parsed(package) => package,
                    Lenient::Broken { raw, reason } => {
                        let number = raw["packageNumber"].as_i64();
                        skip(&mut report, key, id, Item::Package(number), reason.clone());
                        continue;
                    }
                };
                let number = Item::Package(Some(package.package_number));
                if shipment.is_cancelled() {
                    match cancelled_parcel(shipment, package) {
                        Some(parcel) => parcels.push(parcel),
                        None => report.waiting += 1,
                    }
                    continue;
                }
                let tracking = match client.package_tracking(package.package_number).await {
                    Ok(tracking) => tracking,
                    Err(error) if only_this_item(&error) => {
                        skip(&mut report, key, id, number, error.to_string());
                        continue;
                    }
                    Err(error) => {
                        return Err(SourceError::upstream(GET_PACKAGE_TRACKING_DETAILS.name)(
                            error,
                        ));
                    }
                };
                match parcel(shipment, package, &tracking) {
                    Ok(Some(parcel)) => parcels.push(parcel),
                    Ok(None) => report.waiting += 1,
                    Err(reason) => skip(&mut report, key, id, number, reason),
                }
            }
        }
        if !parcels.is_empty() {
            let subject = subject_for(&details.fulfillment_order);
            let recorded = store.record_shipments(&subject, &parcels, now).await?;
            report.parcels += parcels.len();
            report.shipments.add(&recorded);
        }
    }

    let watermark = now - policy.lag;
    store.ingest(key, &[], Some(watermark), now).await?;
    report.watermark = Some(watermark);
    Ok(report)
}

/// What is skipped: a fulfillment order, or one of its packages (its number, if known).
#[derive(Debug, Clone, Copy)]
enum Item {
    Order,
    Package(Option<i64>),
}

fn skip(report: &mut FulfillmentReport, key: &str, order: &str, item: Item, reason: String) {
    match item {
        Item::Package(package) => {
            let package =
                package.map_or_else(|| "(no packageNumber)".to_owned(), |n| n.to_string());
            tracing::warn!(
                source = key,
                fulfillment_order = order,
                package_number = %package,
                reason = %reason,
                "Package skipped: its data breaks the contract or Amazon refused it."
            );
            report
                .skipped
                .push((format!("{order} package {package}"), reason));
        }
        Item::Order => {
            tracing::warn!(
                source = key,
                fulfillment_order = order,
                reason = %reason,
                "Fulfillment order skipped: its data breaks the contract or Amazon refused it."
            );
            report.skipped.push((order.to_owned(), reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::{Value, json};

    use super::*;
    use crate::model::{EventKind, ParcelRef};
    use crate::sources::amazon::api::fake::{Answer, Fake};
    use crate::store::testing;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const LIST: &str = "/fba/outbound/2020-07-01/fulfillmentOrders";
    const TRACKING: &str = "/fba/outbound/2020-07-01/tracking";
    const KEY: &str = "amazon/us-main/fba";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn iso(t: DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn details_path(id: &str) -> String {
        format!("{LIST}/{id}")
    }

    fn order(id: &str, displayable: &str, status: &str, updated: DateTime<Utc>) -> Value {
        json!({
            "sellerFulfillmentOrderId": id,
            "marketplaceId": "ATVPDKIKX0DER",
            "displayableOrderId": displayable,
            "displayableOrderDate": iso(updated - Duration::days(1)),
            "displayableOrderComment": "Thank you for your order",
            "shippingSpeedCategory": "Standard",
            "destinationAddress": {"name": "Jane Doe", "addressLine1": "1 Main St",
                                   "countryCode": "US", "postalCode": "48084"},
            "receivedDate": iso(updated - Duration::days(1)),
            "fulfillmentOrderStatus": status,
            "statusUpdatedDate": iso(updated),
        })
    }

    fn page(orders: Vec<Value>, next_token: Option<&str>) -> Answer {
        let mut payload = json!({ "fulfillmentOrders": orders });
        if let Some(token) = next_token {
            payload["nextToken"] = json!(token);
        }
        Answer::json(200, json!({ "payload": payload }))
    }

    fn details(order: Value, shipments: Vec<Value>) -> Answer {
        Answer::json(
            200,
            json!({"payload": {
                "fulfillmentOrder": order,
                "fulfillmentOrderItems": [{"sellerSku": "SKU-1", "sellerFulfillmentOrderItemId": "i1",
                    "quantity": 1, "cancelledQuantity": 0, "unfulfillableQuantity": 0}],
                "fulfillmentShipments": shipments,
                "returnItems": [],
                "returnAuthorizations": [],
            }}),
        )
    }

    fn shipment(status: &str, packages: Vec<Value>) -> Value {
        json!({
            "amazonShipmentId": "DchKfcZ9N",
            "fulfillmentCenterId": "RNO1",
            "fulfillmentShipmentStatus": status,
            "shippingDate": iso(now() - Duration::days(1)),
            "estimatedArrivalDate": iso(now() + Duration::days(5)),
            "fulfillmentShipmentItem": [{"sellerSku": "SKU-1", "sellerFulfillmentOrderItemId": "i1",
                                         "quantity": 1, "packageNumber": 1}],
            "fulfillmentShipmentPackage": packages,
        })
    }

    fn package(number: i64, tracking_number: &str) -> Value {
        json!({"packageNumber": number, "carrierCode": "UPS", "trackingNumber": tracking_number,
               "estimatedArrivalDate": iso(now() + Duration::days(4))})
    }

    fn tracking(number: i64, tracking_number: &str, status: &str, events: &[(&str, i64)]) -> Value {
        let events: Vec<Value> = events
            .iter()
            .map(|(code, hours_ago)| {
                json!({"eventDate": iso(now() - Duration::hours(*hours_ago)),
                       "eventAddress": {"city": "Phoenix", "state": "AZ", "country": "US"},
                       "eventCode": code, "eventDescription": format!("{code} happened")})
            })
            .collect();
        json!({"payload": {
            "packageNumber": number,
            "trackingNumber": tracking_number,
            "customerTrackingLink": format!("https://www.swiship.com/track?id={tracking_number}"),
            "carrierCode": "UPS",
            "estimatedArrivalDate": iso(now() + Duration::days(3)),
            "shipToAddress": {"city": "Troy", "state": "MI", "country": "US"},
            "signedForBy": "J. DOE",
            "currentStatus": status,
            "currentStatusDescription": format!("{status} now"),
            "trackingEvents": events,
        }})
    }

    // --- the published examples -------------------------------------------------------

    fn spec() -> Option<Value> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/specs/amazon/fulfillmentOutbound_2020-07-01.json"
        ))
        .ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The 200 example of `path`: the body itself (this model does not key it by type).
    fn example(spec: &Value, path: &str) -> Option<Value> {
        let examples = &spec["paths"][path]["get"]["responses"]["200"]["examples"];
        let body = examples.get("application/json").unwrap_or(examples);
        (!body.is_null()).then(|| body.clone())
    }

    #[test]
    fn parses_the_published_examples() -> TestResult {
        let Some(spec) = spec() else {
            eprintln!("specs not found; skipping");
            return Ok(());
        };
        let mut parsed = 0;

        let Some(list) = example(&spec, LIST) else {
            panic!("no listAllFulfillmentOrders example")
        };
        let list: ListAllFulfillmentOrdersResponse = serde_json::from_value(list)?;
        parsed += 1;
        let Some(list) = list.payload else {
            panic!("listAllFulfillmentOrders example without payload")
        };
        assert!(list.next_token.is_none());
        let orders: Vec<WireFulfillmentOrder> = list
            .fulfillment_orders
            .into_iter()
            .map(|o| match o {
                Lenient::Parsed(o) => o,
                Lenient::Broken { reason, .. } => panic!("example order broken: {reason}"),
            })
            .collect();
        assert_eq!(orders.len(), 2);
        assert_eq!(orders[0].seller_fulfillment_order_id, "902-6018020-0202003");
        // The example leaves out marketplaceId (required) and sends featureConstraints null.
        assert_eq!(orders[0].marketplace_id, None);
        assert_eq!(orders[0].feature_constraints.len(), 2);
        assert!(orders[1].feature_constraints.is_empty());
        // Statuses in capitals, unlike the enum.
        assert_eq!(
            orders[0]
                .fulfillment_order_status
                .as_deref()
                .and_then(FulfillmentOrderStatus::parse),
            Some(FulfillmentOrderStatus::Received)
        );
        assert_eq!(
            orders[1]
                .fulfillment_order_status
                .as_deref()
                .and_then(FulfillmentOrderStatus::parse),
            Some(FulfillmentOrderStatus::Complete)
        );
        // Its id looks like an Amazon order's, but the displayable id decides.
        assert_eq!(
            subject_for(&orders[0]).as_str(),
            "fulfillment:902-6018020-0202003"
        );

        let Some(one) = example(
            &spec,
            "/fba/outbound/2020-07-01/fulfillmentOrders/{sellerFulfillmentOrderId}",
        ) else {
            panic!("no getFulfillmentOrder example")
        };
        let one: GetFulfillmentOrderResponse = serde_json::from_value(one)?;
        parsed += 1;
        let Some(one) = one.payload else {
            panic!("getFulfillmentOrder example without payload")
        };
        assert_eq!(
            one.fulfillment_order.seller_fulfillment_order_id,
            "FBATestOrder-1"
        );
        assert_eq!(
            one.fulfillment_order
                .fulfillment_order_status
                .as_deref()
                .and_then(FulfillmentOrderStatus::parse),
            Some(FulfillmentOrderStatus::Processing)
        );
        assert_eq!(one.fulfillment_order_items.len(), 2);
        assert_eq!(one.fulfillment_order_items[1].quantity, Some(3));
        assert_eq!(one.fulfillment_shipments.len(), 1);
        let pending = &one.fulfillment_shipments[0];
        assert_eq!(
            pending.fulfillment_shipment_status.as_deref(),
            Some("PENDING")
        );
        assert!(!pending.is_cancelled());
        // Picking has begun, no package yet: nothing to track.
        assert!(pending.fulfillment_shipment_package.is_empty());
        assert_eq!(pending.fulfillment_shipment_item[0].package_number, Some(0));

        let Some(tracked) = example(&spec, TRACKING) else {
            panic!("no getPackageTrackingDetails example")
        };
        let tracked: GetPackageTrackingDetailsResponse = serde_json::from_value(tracked)?;
        parsed += 1;
        let Some(tracked) = tracked.payload else {
            panic!("getPackageTrackingDetails example without payload")
        };
        assert_eq!(tracked.package_number, 212794778);
        assert_eq!(tracked.tracking_events.len(), 2);
        let package = WirePackage {
            package_number: 212794778,
            carrier_code: "UPS".into(),
            tracking_number: None,
            amazon_fulfillment_tracking_number: None,
            estimated_arrival_date: None,
        };
        let Some(parcel) = parcel(pending, &package, &tracked)? else {
            panic!("the example package has a tracking number")
        };
        assert_eq!(
            parcel,
            Shipment {
                carrier: "UPS".into(),
                tracking_number: "1Z50V7420354708051".into(),
                // Sent percent-encoded, with an encoded newline at the end.
                tracking_url: Some("https://www.swiship.com/track?id=1Z50V7420354708051".into()),
                status: TrackingStatus::Delivered,
                exception_reason: None,
                raw_code: Some("DELIVERED/EVENT_301".into()),
                status_text: Some("Delivered to the destination address — Delivered.".into()),
                last_event_at: parse_time("2020-01-22T00:15:55Z"),
                last_event_location: Some("Troy, MI, US".into()),
                conditions: Vec::new(),
                // The tracking answer has no ETA; the shipment's is used.
                estimated_delivery: parse_time("2020-02-07T02:33:23Z"),
            }
        );
        assert_eq!(parsed, 3);
        Ok(())
    }

    // --- the mapping ------------------------------------------------------------------

    fn check(
        current: Option<&str>,
        event: Option<&str>,
        status: TrackingStatus,
        reason: Option<&str>,
    ) {
        assert_eq!(
            normalise(current, event),
            (status, reason),
            "{current:?} + {event:?}"
        );
    }

    #[test]
    fn current_statuses_map_to_normalised_ones() {
        use TrackingStatus::*;
        for (current, status, reason) in [
            ("IN_TRANSIT", InTransit, None),
            ("OUT_FOR_DELIVERY", OutForDelivery, None),
            ("DELIVERED", Delivered, None),
            ("AVAILABLE_FOR_PICKUP", AvailableForPickup, None),
            ("DELIVERY_ATTEMPTED", DeliveryAttempted, None),
            ("DELAYED", Exception, Some("delay")),
            ("CUSTOMER_ACTION", Exception, Some("other")),
            ("UNDELIVERABLE", Exception, Some("lost")),
            ("RETURNING", ReturnToSender, None),
            ("RETURNED", ReturnToSender, None),
            ("RETURN_REQUEST_ACCEPTED", Delivered, None),
            ("PICKUP_SCHEDULED", Delivered, None),
            ("PICKUP_ATTEMPTED", Delivered, None),
            ("PICKUP_SUCCESSFUL", Delivered, None),
            ("PICKUP_CANCELLED", Delivered, None),
            ("RETURN_RECEIVED_IN_FC", Delivered, None),
            ("REFUND_ISSUED", Delivered, None),
            ("UNKNOWN", Unknown, None),
            ("in_transit", InTransit, None),
        ] {
            check(Some(current), None, status, reason);
        }
        // A package with neither a status nor a scan has a label and nothing more.
        check(None, None, LabelCreated, None);
    }

    #[test]
    fn event_101_is_a_label_without_a_scan() {
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_101"),
            TrackingStatus::LabelCreated,
            None,
        );
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_102"),
            TrackingStatus::InTransit,
            None,
        );
    }

    #[test]
    fn event_302_is_out_for_delivery_and_a_locker_is_a_pickup() {
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_302"),
            TrackingStatus::OutForDelivery,
            None,
        );
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_801"),
            TrackingStatus::AvailableForPickup,
            None,
        );
        check(
            Some("AVAILABLE_FOR_PICKUP"),
            Some("EVENT_804"),
            TrackingStatus::Delivered,
            None,
        );
    }

    #[test]
    fn event_304_is_a_delivery_attempt() {
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_304"),
            TrackingStatus::DeliveryAttempted,
            None,
        );
        check(
            Some("OUT_FOR_DELIVERY"),
            Some("EVENT_304"),
            TrackingStatus::DeliveryAttempted,
            None,
        );
    }

    #[test]
    fn events_401_and_403_are_address_problems() {
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_401"),
            TrackingStatus::Exception,
            Some("address"),
        );
        check(
            Some("CUSTOMER_ACTION"),
            Some("EVENT_403"),
            TrackingStatus::Exception,
            Some("address"),
        );
    }

    #[test]
    fn event_402_is_customs_even_under_a_plain_delay() {
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_402"),
            TrackingStatus::Exception,
            Some("customs"),
        );
        check(
            Some("DELAYED"),
            Some("EVENT_402"),
            TrackingStatus::Exception,
            Some("customs"),
        );
    }

    #[test]
    fn events_404_414_417_418_are_delays() {
        for code in ["EVENT_404", "EVENT_414", "EVENT_417", "EVENT_418"] {
            check(
                Some("IN_TRANSIT"),
                Some(code),
                TrackingStatus::Exception,
                Some("delay"),
            );
        }
    }

    #[test]
    fn event_405_is_damage_and_406_a_hold() {
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_405"),
            TrackingStatus::Exception,
            Some("damaged"),
        );
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_406"),
            TrackingStatus::Exception,
            Some("held"),
        );
    }

    #[test]
    fn events_407_and_413_are_refusals() {
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_407"),
            TrackingStatus::Exception,
            Some("refused"),
        );
        check(
            Some("CUSTOMER_ACTION"),
            Some("EVENT_413"),
            TrackingStatus::Exception,
            Some("refused"),
        );
    }

    #[test]
    fn events_408_and_309_go_back_to_the_seller_even_from_an_exception() {
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_408"),
            TrackingStatus::ReturnToSender,
            None,
        );
        check(
            Some("UNDELIVERABLE"),
            Some("EVENT_408"),
            TrackingStatus::ReturnToSender,
            None,
        );
        check(
            Some("RETURNING"),
            Some("EVENT_309"),
            TrackingStatus::ReturnToSender,
            None,
        );
    }

    #[test]
    fn event_409_is_a_loss() {
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_409"),
            TrackingStatus::Exception,
            Some("lost"),
        );
        check(
            Some("DELAYED"),
            Some("EVENT_409"),
            TrackingStatus::Exception,
            Some("lost"),
        );
    }

    #[test]
    fn event_416_keeps_the_reason_its_status_gives() {
        check(
            Some("UNDELIVERABLE"),
            Some("EVENT_416"),
            TrackingStatus::Exception,
            Some("lost"),
        );
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_416"),
            TrackingStatus::Exception,
            Some("other"),
        );
    }

    #[test]
    fn event_419_is_moving_again_but_does_not_clear_amazons_exception() {
        check(
            Some("IN_TRANSIT"),
            Some("EVENT_419"),
            TrackingStatus::InTransit,
            None,
        );
        check(
            Some("CUSTOMER_ACTION"),
            Some("EVENT_419"),
            TrackingStatus::Exception,
            Some("other"),
        );
    }

    #[test]
    fn final_statuses_are_not_reopened_by_an_event() {
        check(
            Some("DELIVERED"),
            Some("EVENT_405"),
            TrackingStatus::Delivered,
            None,
        );
        check(
            Some("RETURNED"),
            Some("EVENT_302"),
            TrackingStatus::ReturnToSender,
            None,
        );
        check(
            Some("DELAYED"),
            Some("EVENT_301"),
            TrackingStatus::Delivered,
            None,
        );
    }

    #[test]
    fn unknown_values_are_kept_and_map_to_unknown() -> TestResult {
        check(Some("TELEPORTED"), None, TrackingStatus::Unknown, None);
        check(
            Some("TELEPORTED"),
            Some("EVENT_999"),
            TrackingStatus::Unknown,
            None,
        );
        check(None, Some("EVENT_306"), TrackingStatus::Unknown, None);
        let shipment: WireFulfillmentShipment =
            serde_json::from_value(shipment("SHIPPED", vec![]))?;
        let package: WirePackage = serde_json::from_value(package(7, "1ZUNKNOWN"))?;
        let answer: GetPackageTrackingDetailsResponse =
            serde_json::from_value(tracking(7, "1ZUNKNOWN", "TELEPORTED", &[("EVENT_999", 1)]))?;
        let Some(details) = answer.payload else {
            panic!("no payload")
        };
        let Some(parcel) = parcel(&shipment, &package, &details)? else {
            panic!("no parcel")
        };
        assert_eq!(parcel.status, TrackingStatus::Unknown);
        assert_eq!(parcel.raw_code.as_deref(), Some("TELEPORTED/EVENT_999"));
        assert_eq!(
            parcel.status_text.as_deref(),
            Some("TELEPORTED now — EVENT_999 happened")
        );
        Ok(())
    }

    #[test]
    fn exception_reasons_come_from_the_closed_set() {
        let statuses = [
            None,
            Some("IN_TRANSIT"),
            Some("DELIVERED"),
            Some("RETURNING"),
            Some("RETURNED"),
            Some("UNDELIVERABLE"),
            Some("DELAYED"),
            Some("AVAILABLE_FOR_PICKUP"),
            Some("CUSTOMER_ACTION"),
            Some("UNKNOWN"),
            Some("OUT_FOR_DELIVERY"),
            Some("DELIVERY_ATTEMPTED"),
            Some("PICKUP_SUCCESSFUL"),
            Some("REFUND_ISSUED"),
            Some("SOMETHING_NEW"),
        ];
        let mut events: Vec<Option<String>> =
            (100..900).map(|n| Some(format!("EVENT_{n}"))).collect();
        events.push(None);
        for current in statuses {
            for event in &events {
                let (status, reason) = normalise(current, event.as_deref());
                assert_eq!(
                    status == TrackingStatus::Exception,
                    reason.is_some(),
                    "{current:?} + {event:?}"
                );
                assert!(
                    reason.is_none_or(|r| EXCEPTION_REASONS.contains(&r)),
                    "{current:?} + {event:?}: {reason:?}"
                );
            }
        }
    }

    #[test]
    fn the_latest_event_decides_whatever_the_order_sent() -> TestResult {
        let shipment: WireFulfillmentShipment =
            serde_json::from_value(shipment("SHIPPED", vec![]))?;
        let package: WirePackage = serde_json::from_value(package(8, "1ZORDER"))?;
        // Oldest first this time: the 402 two hours ago is the latest.
        let answer: GetPackageTrackingDetailsResponse = serde_json::from_value(tracking(
            8,
            "1ZORDER",
            "IN_TRANSIT",
            &[("EVENT_201", 30), ("EVENT_402", 2), ("EVENT_202", 20)],
        ))?;
        let Some(details) = answer.payload else {
            panic!("no payload")
        };
        let Some(parcel) = parcel(&shipment, &package, &details)? else {
            panic!("no parcel")
        };
        assert_eq!(parcel.status, TrackingStatus::Exception);
        assert_eq!(parcel.exception_reason.as_deref(), Some("customs"));
        assert_eq!(parcel.last_event_at, Some(now() - Duration::hours(2)));
        assert_eq!(
            parcel.last_event_location.as_deref(),
            Some("Phoenix, AZ, US")
        );
        assert_eq!(parcel.estimated_delivery, Some(now() + Duration::days(3)));

        // A garbled event time breaks the contract; answering for another package too.
        let mut broken = details.clone();
        broken.tracking_events[1].event_date = "yesterday".into();
        assert!(super::parcel(&shipment, &package, &broken).is_err());
        let mut other = details;
        other.package_number = 9;
        assert!(super::parcel(&shipment, &package, &other).is_err());
        Ok(())
    }

    #[test]
    fn subjects_name_the_amazon_order_or_the_fulfillment_order() -> TestResult {
        let amazon: WireFulfillmentOrder =
            serde_json::from_value(order("MCF-1", "113-1234567-1234567", "Complete", now()))?;
        assert_eq!(
            subject_for(&amazon).as_str(),
            "order:amazon/113-1234567-1234567"
        );
        for other in [
            "SHOPIFY-1001",
            "113-1234567-123456",
            "113-12a4567-1234567",
            "",
        ] {
            let order: WireFulfillmentOrder =
                serde_json::from_value(order("MCF-2", other, "Complete", now()))?;
            assert_eq!(
                subject_for(&order).as_str(),
                "fulfillment:MCF-2",
                "{other:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn tracking_links_are_decoded_and_must_be_web_links() {
        assert_eq!(
            tracking_link("https%3A%2F%2Fwww.swiship.com%2Ftrack%3Fid%3DTBA1%0A").as_deref(),
            Some("https://www.swiship.com/track?id=TBA1")
        );
        assert_eq!(
            tracking_link(" https://www.swiship.com/track?id=TBA1 ").as_deref(),
            Some("https://www.swiship.com/track?id=TBA1")
        );
        assert_eq!(tracking_link("javascript:alert(1)"), None);
        assert_eq!(tracking_link("not a link"), None);
        assert_eq!(tracking_link("https%3A%2F%2F%FF%FE"), None);
    }

    #[test]
    fn fulfillment_order_statuses_parse_in_either_case() {
        for status in FulfillmentOrderStatus::ALL {
            assert_eq!(FulfillmentOrderStatus::parse(status.as_str()), Some(status));
            let upper = status.as_str().to_ascii_uppercase();
            assert_eq!(FulfillmentOrderStatus::parse(&upper), Some(status));
        }
        assert_eq!(
            FulfillmentOrderStatus::parse("COMPLETE_PARTIALLED"),
            Some(FulfillmentOrderStatus::CompletePartialled)
        );
        assert_eq!(FulfillmentOrderStatus::parse("Shipped"), None);
    }

    // --- the poller against a fake SP-API ---------------------------------------------

    #[tokio::test]
    async fn listing_follows_next_tokens_sent_alone() -> TestResult {
        let fake = Fake::start().await;
        let updated = now() - Duration::hours(1);
        fake.script(
            "GET",
            LIST,
            vec![
                page(
                    vec![order("MCF-1", "W-1", "Received", updated)],
                    Some("page-2"),
                ),
                page(
                    vec![
                        order("MCF-2", "W-2", "PLANNING", updated),
                        order("MCF-1", "W-1", "Received", updated),
                    ],
                    Some("page-3"),
                ),
                page(
                    vec![
                        order("MCF-3", "W-3", "New", updated),
                        order("MCF-4", "W-4", "Processing", updated),
                    ],
                    None,
                ),
            ],
        );
        let processing = order("MCF-4", "W-4", "Processing", updated);
        fake.script(
            "GET",
            &details_path("MCF-4"),
            vec![details(processing, vec![shipment("PENDING", vec![])])],
        );
        let t = testing::sqlite().await?;
        let client = FulfillmentClient::new(fake.api());
        let report = poll_fulfillment(&client, t.store.as_ref(), KEY, now()).await?;

        assert_eq!(report.pages, 3);
        assert_eq!(report.listed, 4, "MCF-1 is listed twice but read once");
        assert_eq!(report.without_packages, 3);
        assert_eq!((report.fetched, report.parcels), (1, 0));
        // The first poll reads the tracking horizon (changes: the last 7 days).
        assert_eq!(report.query_start, Some(now() - Duration::days(14)));
        let seen = fake.seen(LIST);
        assert_eq!(seen.len(), 3);
        assert_eq!(
            seen[0].query_pairs(),
            vec![("queryStartDate".to_owned(), iso(now() - Duration::days(14)))]
        );
        assert_eq!(
            seen[1].query_pairs(),
            vec![("nextToken".to_owned(), "page-2".to_owned())]
        );
        assert_eq!(
            seen[2].query_pairs(),
            vec![("nextToken".to_owned(), "page-3".to_owned())]
        );
        assert!(fake.seen(TRACKING).is_empty());
        assert_eq!(
            t.store.checkpoint(KEY).await?,
            Some(now() - Duration::minutes(1))
        );
        assert_eq!(report.watermark, Some(now() - Duration::minutes(1)));
        assert!(t.store.pending_events(10).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn after_a_long_gap_the_listing_starts_at_the_checkpoint() -> TestResult {
        let fake = Fake::start().await;
        fake.script("GET", LIST, vec![page(vec![], None)]);
        let t = testing::sqlite().await?;
        let watermark = now() - Duration::days(30);
        t.store.ingest(KEY, &[], Some(watermark), watermark).await?;
        let client = FulfillmentClient::new(fake.api());
        let report = poll_fulfillment(&client, t.store.as_ref(), KEY, now()).await?;
        let start = watermark - Duration::minutes(10);
        assert_eq!(report.query_start, Some(start));
        assert_eq!(
            fake.seen(LIST)[0].query_pairs(),
            vec![("queryStartDate".to_owned(), iso(start))]
        );
        Ok(())
    }

    #[tokio::test]
    async fn parcels_are_recorded_per_subject_and_tracked_until_settled() -> TestResult {
        let fake = Fake::start().await;
        let amazon = order(
            "MCF-1",
            "113-1234567-1234567",
            "Complete",
            now() - Duration::hours(1),
        );
        let shopify = order(
            "MCF-2",
            "SHOPIFY-1001",
            "COMPLETE",
            now() - Duration::hours(2),
        );
        fake.script(
            "GET",
            LIST,
            vec![page(vec![amazon.clone(), shopify.clone()], None)],
        );
        fake.script(
            "GET",
            &details_path("MCF-1"),
            vec![details(
                amazon,
                vec![shipment("SHIPPED", vec![package(101, "1ZAAA")])],
            )],
        );
        fake.script(
            "GET",
            &details_path("MCF-2"),
            vec![details(
                shopify,
                vec![shipment("SHIPPED", vec![package(201, "TBA222")])],
            )],
        );
        let delayed = tracking(
            201,
            "TBA222",
            "DELAYED",
            &[("EVENT_202", 30), ("EVENT_402", 3)],
        );
        fake.script(
            "GET",
            TRACKING,
            vec![
                Answer::json(
                    200,
                    tracking(101, "1ZAAA", "IN_TRANSIT", &[("EVENT_202", 5)]),
                ),
                Answer::json(200, delayed.clone()),
                Answer::json(
                    200,
                    tracking(101, "1ZAAA", "DELIVERED", &[("EVENT_301", 1)]),
                ),
                Answer::json(200, delayed),
            ],
        );
        let t = testing::sqlite().await?;
        let store = t.store.as_ref();
        let client = FulfillmentClient::new(fake.api());

        let first = poll_fulfillment(&client, store, KEY, now()).await?;
        assert_eq!(
            (first.fetched, first.parcels, first.shipments.new),
            (2, 2, 2)
        );
        assert_eq!(first.shipments.events, 3);
        assert!(first.skipped.is_empty(), "{:?}", first.skipped);
        let amazon_subject = Subject::order(SalesChannel::Amazon, "113-1234567-1234567");
        let mcf_subject = Subject::named("fulfillment", "MCF-2");
        assert_eq!(
            store.shipments(&amazon_subject).await?,
            vec![Shipment {
                carrier: "UPS".into(),
                tracking_number: "1ZAAA".into(),
                tracking_url: Some("https://www.swiship.com/track?id=1ZAAA".into()),
                status: TrackingStatus::InTransit,
                exception_reason: None,
                raw_code: Some("IN_TRANSIT/EVENT_202".into()),
                status_text: Some("IN_TRANSIT now — EVENT_202 happened".into()),
                last_event_at: Some(now() - Duration::hours(5)),
                last_event_location: Some("Phoenix, AZ, US".into()),
                conditions: Vec::new(),
                estimated_delivery: Some(now() + Duration::days(3)),
            }]
        );
        let events = store.events_for(mcf_subject.as_str()).await?;
        let kinds: Vec<EventKind> = events.into_iter().map(|e| e.kind).collect();
        let mcf_parcel = store
            .shipments(&mcf_subject)
            .await?
            .first()
            .map(ParcelRef::of)
            .unwrap_or_default();
        assert!(!mcf_parcel.tracking_number.is_empty());
        assert_eq!(
            kinds,
            vec![
                EventKind::TrackingUpdated {
                    from: None,
                    to: TrackingStatus::Exception,
                    parcel: mcf_parcel.clone(),
                },
                EventKind::ShipmentException {
                    reason: "customs".into(),
                    parcel: mcf_parcel,
                },
            ]
        );
        let seen = fake.seen(TRACKING);
        assert_eq!(
            seen[0].query_pairs(),
            vec![("packageNumber".to_owned(), "101".to_owned())]
        );

        // Two hours on, neither order changed; both parcels are still moving, so both are
        // read again. The Amazon order's parcel was delivered.
        let later = now() + Duration::hours(2);
        let second = poll_fulfillment(&client, store, KEY, later).await?;
        assert_eq!(second.fetched, 2);
        assert_eq!(
            (
                second.shipments.updated,
                second.shipments.unchanged,
                second.shipments.events
            ),
            (1, 1, 1)
        );
        let events = store.events_for(amazon_subject.as_str()).await?;
        assert_eq!(
            events.last().map(|e| &e.kind),
            Some(&EventKind::TrackingUpdated {
                from: Some(TrackingStatus::InTransit),
                to: TrackingStatus::Delivered,
                parcel: ParcelRef {
                    carrier: "UPS".into(),
                    tracking_number: "1ZAAA".into(),
                },
            })
        );

        // Then only the delayed one is read again: the delivered order is settled.
        let third = poll_fulfillment(&client, store, KEY, later + Duration::hours(2)).await?;
        assert_eq!((third.fetched, third.settled), (1, 1));
        assert_eq!(fake.seen(&details_path("MCF-1")).len(), 2);
        assert_eq!(fake.seen(&details_path("MCF-2")).len(), 3);
        assert_eq!(third.shipments.events, 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_malformed_order_or_package_is_skipped_and_the_rest_recorded() -> TestResult {
        let fake = Fake::start().await;
        let updated = now() - Duration::hours(1);
        let good = order("MCF-1", "113-7654321-7654321", "Complete", updated);
        let mut bad_listing = order("MCF-BAD", "W-0", "Complete", updated);
        bad_listing["fulfillmentOrderStatus"] = json!(7);
        let mut no_id = order("MCF-3", "W-3", "Complete", updated);
        fake.script(
            "GET",
            LIST,
            vec![page(
                vec![
                    bad_listing,
                    good.clone(),
                    order("MCF-404", "W-404", "Complete", updated),
                    no_id.clone(),
                ],
                None,
            )],
        );
        fake.script(
            "GET",
            &details_path("MCF-1"),
            vec![details(
                good,
                vec![shipment(
                    "SHIPPED",
                    vec![
                        package(1, "1ZGOOD"),
                        json!({"carrierCode": "UPS", "trackingNumber": "1ZNONUMBER"}),
                        package(2, "1ZBADDATE"),
                        package(3, "1ZREFUSED"),
                        json!({"packageNumber": 4, "carrierCode": "UPS"}),
                    ],
                )],
            )],
        );
        // MCF-404 is not scripted: the fake answers 404.
        if let Some(map) = no_id.as_object_mut() {
            map.remove("sellerFulfillmentOrderId");
        }
        fake.script("GET", &details_path("MCF-3"), vec![details(no_id, vec![])]);
        let mut bad_date = tracking(2, "1ZBADDATE", "IN_TRANSIT", &[("EVENT_202", 1)]);
        bad_date["payload"]["trackingEvents"][0]["eventDate"] = json!("yesterday");
        let mut untracked = tracking(4, "", "IN_TRANSIT", &[]);
        if let Some(map) = untracked["payload"].as_object_mut() {
            map.remove("trackingNumber");
        }
        fake.script(
            "GET",
            TRACKING,
            vec![
                Answer::json(200, tracking(1, "1ZGOOD", "IN_TRANSIT", &[("EVENT_202", 1)])),
                Answer::json(200, bad_date),
                Answer::json(
                    400,
                    json!({"errors": [{"code": "InvalidInput", "message": "Invalid packageNumber"}]}),
                ),
                Answer::json(200, untracked),
            ],
        );
        let t = testing::sqlite().await?;
        let client = FulfillmentClient::new(fake.api());
        let report = poll_fulfillment(&client, t.store.as_ref(), KEY, now()).await?;

        let skipped: Vec<&str> = report.skipped.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            skipped,
            vec![
                "MCF-BAD",
                "MCF-1 package (no packageNumber)",
                "MCF-1 package 2",
                "MCF-1 package 3",
                "MCF-404",
                "MCF-3",
            ],
            "{:?}",
            report.skipped
        );
        assert!(
            report.skipped[2].1.contains("yesterday"),
            "{:?}",
            report.skipped
        );
        assert!(
            report.skipped[3].1.contains("InvalidInput"),
            "{:?}",
            report.skipped
        );
        assert_eq!((report.parcels, report.waiting), (1, 1));
        let subject = Subject::order(SalesChannel::Amazon, "113-7654321-7654321");
        let stored = t.store.shipments(&subject).await?;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].tracking_number, "1ZGOOD");
        // A refused package is asked once: a 400 is not retried.
        assert_eq!(fake.seen(TRACKING).len(), 4);
        assert_eq!(
            t.store.checkpoint(KEY).await?,
            Some(now() - Duration::minutes(1))
        );
        Ok(())
    }

    #[tokio::test]
    async fn cancelled_shipments_are_cancelled_parcels_without_tracking() -> TestResult {
        let fake = Fake::start().await;
        let o = order(
            "MCF-9",
            "W-9",
            "CompletePartialled",
            now() - Duration::hours(1),
        );
        fake.script("GET", LIST, vec![page(vec![o.clone()], None)]);
        fake.script(
            "GET",
            &details_path("MCF-9"),
            vec![details(
                o,
                vec![shipment(
                    "CANCELLED_BY_FULFILLER",
                    vec![package(5, "1ZVOID")],
                )],
            )],
        );
        let t = testing::sqlite().await?;
        let client = FulfillmentClient::new(fake.api());
        poll_fulfillment(&client, t.store.as_ref(), KEY, now()).await?;
        let stored = t
            .store
            .shipments(&Subject::named("fulfillment", "MCF-9"))
            .await?;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].status, TrackingStatus::Cancelled);
        assert_eq!(
            stored[0].raw_code.as_deref(),
            Some("CANCELLED_BY_FULFILLER")
        );
        assert!(fake.seen(TRACKING).is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn transient_failures_fail_the_poll_and_keep_the_checkpoint() -> TestResult {
        let fake = Fake::start().await;
        fake.script(
            "GET",
            LIST,
            vec![Answer::json(
                503,
                json!({"errors": [{"code": "ServiceUnavailable", "message": "later"}]}),
            )],
        );
        let t = testing::sqlite().await?;
        let client = FulfillmentClient::new(fake.api());
        let result = poll_fulfillment(&client, t.store.as_ref(), KEY, now()).await;
        assert!(
            matches!(
                result,
                Err(SourceError::Upstream {
                    operation: "listAllFulfillmentOrders",
                    ..
                })
            ),
            "{result:?}"
        );
        assert_eq!(t.store.checkpoint(KEY).await?, None);

        // Tracking down for one package: the whole poll is read again next time.
        let o = order("MCF-1", "W-1", "Complete", now() - Duration::hours(1));
        fake.script("GET", LIST, vec![page(vec![o.clone()], None)]);
        fake.script(
            "GET",
            &details_path("MCF-1"),
            vec![details(
                o,
                vec![shipment("SHIPPED", vec![package(1, "1Z1")])],
            )],
        );
        fake.script("GET", TRACKING, vec![Answer::json(500, json!({}))]);
        let result = poll_fulfillment(&client, t.store.as_ref(), KEY, now()).await;
        assert!(
            matches!(
                result,
                Err(SourceError::Upstream {
                    operation: "getPackageTrackingDetails",
                    ..
                })
            ),
            "{result:?}"
        );
        assert_eq!(t.store.checkpoint(KEY).await?, None);
        Ok(())
    }

    #[tokio::test]
    async fn endless_paging_fails_instead_of_running_for_ever() -> TestResult {
        let fake = Fake::start().await;
        let mut pages: Vec<Answer> = (0..5)
            .map(|n| page(vec![], Some(&format!("token-{n}"))))
            .collect();
        pages.push(page(vec![], Some("token-last")));
        fake.script("GET", LIST, pages);
        let t = testing::sqlite().await?;
        let client = FulfillmentClient::new(fake.api()).with_policy(FulfillmentPolicy {
            max_pages: 4,
            ..FulfillmentPolicy::default()
        });
        let result = poll_fulfillment(&client, t.store.as_ref(), KEY, now()).await;
        assert!(result.is_err(), "{result:?}");
        assert_eq!(fake.seen(LIST).len(), 4);
        assert_eq!(t.store.checkpoint(KEY).await?, None);

        // A token handed out twice in a row ends the listing.
        let fake = Fake::start().await;
        fake.script(
            "GET",
            LIST,
            vec![page(vec![], Some("same")), page(vec![], Some("same"))],
        );
        let client = FulfillmentClient::new(fake.api());
        let report = poll_fulfillment(&client, t.store.as_ref(), KEY, now()).await?;
        assert_eq!(report.pages, 2);
        Ok(())
    }
}
