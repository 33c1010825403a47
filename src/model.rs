//! The domain every stage speaks: orders and their items, the events an upsert emits,
//! and the actions a rule requests. Sources map upstream payloads *into* these types;
//! nothing here knows an upstream's wire format.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where an order was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SalesChannel {
    Amazon,
}

impl SalesChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            SalesChannel::Amazon => "amazon",
        }
    }
}

impl FromStr for SalesChannel {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "amazon" => Ok(SalesChannel::Amazon),
            other => Err(UnknownValue::new("sales channel", other)),
        }
    }
}

/// Order status, in the Amazon Orders API's names (other marketplaces map into these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    Pending,
    Unshipped,
    PartiallyShipped,
    Shipped,
    Canceled,
    Unfulfillable,
    InvoiceUnconfirmed,
    PendingAvailability,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::Pending,
        OrderStatus::Unshipped,
        OrderStatus::PartiallyShipped,
        OrderStatus::Shipped,
        OrderStatus::Canceled,
        OrderStatus::Unfulfillable,
        OrderStatus::InvoiceUnconfirmed,
        OrderStatus::PendingAvailability,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "Pending",
            OrderStatus::Unshipped => "Unshipped",
            OrderStatus::PartiallyShipped => "PartiallyShipped",
            OrderStatus::Shipped => "Shipped",
            OrderStatus::Canceled => "Canceled",
            OrderStatus::Unfulfillable => "Unfulfillable",
            OrderStatus::InvoiceUnconfirmed => "InvoiceUnconfirmed",
            OrderStatus::PendingAvailability => "PendingAvailability",
        }
    }

    /// Closed orders need no more attention from time-based rules.
    pub fn is_closed(self) -> bool {
        matches!(self, OrderStatus::Canceled | OrderStatus::Unfulfillable)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownValue::new("order status", s))
    }
}

/// Who ships: Amazon (AFN, "FBA") or the merchant (MFN, "FBM").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fulfillment {
    #[serde(rename = "AFN")]
    Afn,
    #[serde(rename = "MFN")]
    Mfn,
}

impl Fulfillment {
    pub fn as_str(self) -> &'static str {
        match self {
            Fulfillment::Afn => "AFN",
            Fulfillment::Mfn => "MFN",
        }
    }
}

impl FromStr for Fulfillment {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "AFN" => Ok(Fulfillment::Afn),
            "MFN" => Ok(Fulfillment::Mfn),
            other => Err(UnknownValue::new("fulfillment channel", other)),
        }
    }
}

/// A value outside a closed set.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

impl UnknownValue {
    fn new(what: &'static str, value: &str) -> Self {
        Self {
            what,
            value: value.to_owned(),
        }
    }
}

/// An amount of money as the marketplace states it (a decimal string, never a float).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub currency: String,
    pub amount: String,
}

/// An amount as marketplaces write it (`"12.34"`, at most two decimals, not negative)
/// in cents; `None` for anything else.
pub fn parse_cents(amount: &str) -> Option<i64> {
    let amount = amount.trim();
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    if fraction.len() > 2
        || whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let fraction = format!("{fraction:0<2}");
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(fraction.parse::<i64>().ok()?)
}

/// Cents as a decimal amount (`1205` → `"12.05"`).
pub fn format_cents(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub id: String,
    pub asin: Option<String>,
    pub sku: Option<String>,
    pub title: Option<String>,
    pub quantity_ordered: i64,
    pub quantity_shipped: i64,
    pub price: Option<Money>,
    pub tax: Option<Money>,
    /// The buyer used the marketplace's official "request cancellation" path.
    pub buyer_requested_cancel: bool,
    pub buyer_cancel_reason: Option<String>,
}

/// An order as the marketplace last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub channel: SalesChannel,
    /// The configured account (seller) the order was read through.
    pub account: String,
    pub id: String,
    pub marketplace_id: Option<String>,
    pub status: OrderStatus,
    pub fulfillment: Option<Fulfillment>,
    pub purchase_date: DateTime<Utc>,
    pub last_update: DateTime<Utc>,
    pub earliest_ship_date: Option<DateTime<Utc>>,
    pub latest_ship_date: Option<DateTime<Utc>>,
    pub earliest_delivery_date: Option<DateTime<Utc>>,
    pub latest_delivery_date: Option<DateTime<Utc>>,
    pub total: Option<Money>,
    pub order_type: Option<String>,
    pub is_prime: bool,
    pub is_business: bool,
    pub items: Vec<OrderItem>,
}

impl Order {
    /// The key that names this order across the store, events and idempotency keys.
    pub fn subject(&self) -> Subject {
        Subject::order(self.channel, &self.id)
    }

    pub fn buyer_requested_cancel(&self) -> bool {
        self.items.iter().any(|item| item.buyer_requested_cancel)
    }
}

/// An order together with what the store knows about its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOrder {
    pub order: Order,
    /// When the order entered its current status (as far as nightdesk can tell).
    pub status_since: DateTime<Utc>,
    pub first_seen: DateTime<Utc>,
}

/// A buyer's message, as the mail source understands it (filled by the mail source;
/// fixtures and tests build them directly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerMessage {
    pub id: String,
    pub channel: SalesChannel,
    pub account: String,
    pub marketplace_id: Option<String>,
    /// The marketplace's relay address the buyer wrote from.
    pub from: String,
    pub subject: String,
    pub body: String,
    pub received_at: DateTime<Utc>,
    /// An order id found in the subject or body.
    pub order_id: Option<String>,
    /// A tracking number given instead of (or with) an order id.
    pub tracking_number: Option<String>,
    /// ISO 639-1, when detected.
    pub language: Option<String>,
    /// where_is_my_order, cancel, refund, return, address_change, other.
    pub intent: Option<String>,
    /// A substantive reply has gone out (stops the 24-hour clock).
    pub answered: bool,
}

impl BuyerMessage {
    pub fn subject_key(&self) -> Subject {
        Subject::named("message", &self.id)
    }
}

/// Normalised tracking status (research/carriers.md §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TrackingStatus {
    Unknown,
    LabelCreated,
    InTransit,
    OutForDelivery,
    AvailableForPickup,
    DeliveryAttempted,
    Delivered,
    Exception,
    ReturnToSender,
    Cancelled,
}

impl TrackingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackingStatus::Unknown => "Unknown",
            TrackingStatus::LabelCreated => "LabelCreated",
            TrackingStatus::InTransit => "InTransit",
            TrackingStatus::OutForDelivery => "OutForDelivery",
            TrackingStatus::AvailableForPickup => "AvailableForPickup",
            TrackingStatus::DeliveryAttempted => "DeliveryAttempted",
            TrackingStatus::Delivered => "Delivered",
            TrackingStatus::Exception => "Exception",
            TrackingStatus::ReturnToSender => "ReturnToSender",
            TrackingStatus::Cancelled => "Cancelled",
        }
    }
}

/// A parcel of an order, as the carrier last described it (filled by the carrier
/// sources; fixtures and tests build them directly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
    pub tracking_url: Option<String>,
    pub status: TrackingStatus,
    /// delay, customs, address, damaged, lost, refused, held, payment_due, other.
    pub exception_reason: Option<String>,
    /// The carrier's own code and words, always kept.
    pub raw_code: Option<String>,
    pub status_text: Option<String>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub last_event_location: Option<String>,
    pub estimated_delivery: Option<DateTime<Utc>>,
}

/// What an event or an action is about, e.g. `order:amazon/113-4829301-5520617`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Subject(String);

impl Subject {
    pub fn order(channel: SalesChannel, id: &str) -> Self {
        Subject(format!("order:{}/{}", channel.as_str(), id))
    }

    /// A subject for actions that concern no single order (a schedule, the daemon itself).
    pub fn named(kind: &str, name: &str) -> Self {
        Subject(format!("{kind}:{name}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The (channel, order id) this subject names, if it is an order.
    pub fn as_order(&self) -> Option<(SalesChannel, &str)> {
        let rest = self.0.strip_prefix("order:")?;
        let (channel, id) = rest.split_once('/')?;
        Some((channel.parse().ok()?, id))
    }

    pub fn from_stored(text: String) -> Self {
        Subject(text)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A change the store noticed while upserting what a source read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventKind {
    /// A new order (`from` is `None`) or a status change.
    OrderStatusChanged {
        from: Option<OrderStatus>,
        to: OrderStatus,
    },
    /// A buyer wrote.
    BuyerMessageReceived,
    /// A buyer message has had no substantive reply for `hours` hours.
    SlaAtRisk { hours: i64 },
    /// A parcel's normalised status changed.
    TrackingUpdated {
        from: Option<TrackingStatus>,
        to: TrackingStatus,
    },
    /// The carrier reports a problem with a parcel.
    ShipmentException { reason: String },
    /// A named schedule of the config fired.
    Schedule { name: String },
}

impl EventKind {
    /// The rule hook this event calls (`fn on_order_status_changed(order, event)`).
    pub fn hook(&self) -> &'static str {
        match self {
            EventKind::OrderStatusChanged { .. } => "on_order_status_changed",
            EventKind::BuyerMessageReceived => "on_buyer_message",
            EventKind::SlaAtRisk { .. } => "on_sla_at_risk",
            EventKind::TrackingUpdated { .. } => "on_tracking_updated",
            EventKind::ShipmentException { .. } => "on_shipment_exception",
            EventKind::Schedule { .. } => "on_schedule",
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            EventKind::OrderStatusChanged { .. } => "OrderStatusChanged",
            EventKind::BuyerMessageReceived => "BuyerMessageReceived",
            EventKind::SlaAtRisk { .. } => "SlaAtRisk",
            EventKind::TrackingUpdated { .. } => "TrackingUpdated",
            EventKind::ShipmentException { .. } => "ShipmentException",
            EventKind::Schedule { .. } => "Schedule",
        }
    }
}

/// An event as stored, waiting for (or already seen by) the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub subject: Subject,
    pub kind: EventKind,
    pub at: DateTime<Utc>,
}

/// What a rule asks for. Executed later by the outbox; a rule never performs I/O.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionRequest {
    /// A chat alert to a configured channel.
    Alert { channel: String, text: String },
    /// A reply to a buyer message, rendered from a template in the buyer's language.
    Reply { message: String, template: String },
    /// A proactive, order-scoped marketplace message of a fixed type (Amazon Messaging API).
    NotifyBuyer {
        order: String,
        message_type: String,
        template: String,
    },
    /// A full or partial refund with the marketplace's reason code.
    Refund {
        order: String,
        reason: String,
        /// Lines to refund; empty means the whole order.
        items: Vec<RefundLine>,
        /// The amount to refund, when not the lines' full value.
        amount: Option<String>,
    },
    /// An official cancellation with the marketplace's reason code.
    Cancel { order: String, reason: String },
    /// A label on a subject, for people and later rules.
    Tag { name: String },
}

/// One refunded line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLine {
    pub item: String,
    pub quantity: Option<i64>,
    pub amount: Option<String>,
}

impl ActionRequest {
    pub const KINDS: [&'static str; 6] =
        ["alert", "reply", "notify_buyer", "refund", "cancel", "tag"];

    pub fn kind(&self) -> &'static str {
        match self {
            ActionRequest::Alert { .. } => "alert",
            ActionRequest::Reply { .. } => "reply",
            ActionRequest::NotifyBuyer { .. } => "notify_buyer",
            ActionRequest::Refund { .. } => "refund",
            ActionRequest::Cancel { .. } => "cancel",
            ActionRequest::Tag { .. } => "tag",
        }
    }
}

/// An action request with its provenance, ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAction {
    pub rule: String,
    /// Content hash of the rule file that asked for it.
    pub rule_version: String,
    pub subject: Subject,
    pub request: ActionRequest,
    /// Unique per effect: the outbox performs each key at most once.
    pub idempotency_key: String,
    /// Set when the action must wait for a person's approval, with why.
    pub hold: Option<String>,
    /// Recorded only, never performed (the rule or the daemon runs in dry-run).
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>().ok(), Some(status));
        }
        assert!("Lost".parse::<OrderStatus>().is_err());
    }

    #[test]
    fn order_subject_names_channel_and_id() {
        let subject = Subject::order(SalesChannel::Amazon, "113-4829301-5520617");
        assert_eq!(subject.as_str(), "order:amazon/113-4829301-5520617");
        assert_eq!(
            subject.as_order(),
            Some((SalesChannel::Amazon, "113-4829301-5520617"))
        );
        assert_eq!(Subject::named("schedule", "nightly").as_order(), None);
    }

    #[test]
    fn action_requests_serialise_with_their_kind() {
        let alert = ActionRequest::Alert {
            channel: "ops".into(),
            text: "hi".into(),
        };
        let json = serde_json::to_value(&alert).unwrap_or_default();
        assert_eq!(json["kind"], "alert");
        assert_eq!(json["channel"], "ops");
    }
}
