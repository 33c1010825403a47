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
    Shopify,
    Ebay,
    Walmart,
}

impl SalesChannel {
    pub const ALL: [SalesChannel; 4] = [
        SalesChannel::Amazon,
        SalesChannel::Shopify,
        SalesChannel::Ebay,
        SalesChannel::Walmart,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SalesChannel::Amazon => "amazon",
            SalesChannel::Shopify => "shopify",
            SalesChannel::Ebay => "ebay",
            SalesChannel::Walmart => "walmart",
        }
    }

    /// The channel whose order numbers look like `id`: Amazon `123-1234567-1234567`,
    /// eBay `12-12345-12345`, Walmart 13 or 15 digits, Shopify `#1001`.
    pub fn of_order_number(id: &str) -> Option<SalesChannel> {
        let id = id.trim();
        let groups: Vec<&str> = id.split('-').collect();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if groups.iter().all(|g| digits(g)) {
            match lens.as_slice() {
                [3, 7, 7] => return Some(SalesChannel::Amazon),
                [2, 5, 5] => return Some(SalesChannel::Ebay),
                [13] | [15] => return Some(SalesChannel::Walmart),
                _ => {}
            }
        }
        let shopify = id
            .strip_prefix('#')
            .is_some_and(|n| digits(n) && n.len() <= 12);
        shopify.then_some(SalesChannel::Shopify)
    }
}

impl FromStr for SalesChannel {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SalesChannel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownValue::new("sales channel", s))
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
    /// Everything else the marketplace says about the item.
    #[serde(default)]
    pub details: ItemDetails,
}

/// The marketplace's further facts about an order item (Amazon `OrderItem` fields
/// beyond the ones every channel has). Amazon leaves prices, taxes, discounts and the
/// gift flag out while an order is Pending, so every field may be absent. Values of
/// closed sets that nightdesk only shows (conditions, categories) are kept as sent, so
/// a value Amazon adds later is shown rather than refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ItemDetails {
    pub shipping_price: Option<Money>,
    pub shipping_tax: Option<Money>,
    pub shipping_discount: Option<Money>,
    pub shipping_discount_tax: Option<Money>,
    pub promotion_discount: Option<Money>,
    pub promotion_discount_tax: Option<Money>,
    /// Cash on delivery (Japan): the fee and its discount.
    pub cod_fee: Option<Money>,
    pub cod_fee_discount: Option<Money>,
    /// The seller's promotion ids that applied.
    pub promotion_ids: Vec<String>,
    pub is_gift: Option<bool>,
    /// `New`, `Used`, `Collectible`, `Refurbished`, `Preorder`, `Club`.
    pub condition_id: Option<String>,
    /// `Mint`, `Good`, `Acceptable`, …
    pub condition_subtype_id: Option<String>,
    pub condition_note: Option<String>,
    /// The delivery window the buyer booked (scheduled delivery, seller-fulfilled).
    pub scheduled_delivery_start: Option<DateTime<Utc>>,
    pub scheduled_delivery_end: Option<DateTime<Utc>>,
    /// `BusinessPrice` when the item sold at an Amazon Business price.
    pub price_designation: Option<String>,
    pub serial_number_required: Option<bool>,
    /// Serial numbers Amazon recorded for the item (FBA).
    pub serial_numbers: Vec<String>,
    /// The item needs a Transparency code when shipped.
    pub is_transparency: Option<bool>,
    /// The Import One-Stop Shop number Amazon collected EU VAT under.
    pub ioss_number: Option<String>,
    pub store_chain_store_id: Option<String>,
    /// `IOSS` or `UOSS`: Amazon is the deemed reseller for VAT.
    pub deemed_reseller_category: Option<String>,
    /// Units in one ordered item (a six-pack is 6), `ProductInfo.NumberOfItems`.
    pub number_of_items: Option<i64>,
    /// Amazon Points granted with the item (Japan).
    pub points_granted: Option<PointsGranted>,
    /// Who collected the tax (marketplace facilitator rules).
    pub tax_collection: Option<TaxCollection>,
    /// `SUBSCRIBE_AND_SAVE`, `FBM_SHIP_PLUS`, …
    pub amazon_programs: Vec<String>,
    pub shipping_constraints: ShippingConstraints,
    /// `CUSTOMER_PREFERENCE`, `AMAZON_RECOMMENDED`, `DO_NOT_SUBSTITUTE` (grocery).
    pub substitution_type: Option<String>,
    pub substitution_options: Vec<SubstitutionOption>,
}

/// Amazon Points granted with an item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PointsGranted {
    pub points: Option<i64>,
    pub value: Option<Money>,
}

/// Who collected an item's tax, and under which model (`MarketplaceFacilitator`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaxCollection {
    pub model: Option<String>,
    pub responsible_party: Option<String>,
}

/// What the carrier must do on delivery; each is `MANDATORY` when it applies and absent
/// otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShippingConstraints {
    pub pallet_delivery: Option<String>,
    pub signature_confirmation: Option<String>,
    pub recipient_identity_verification: Option<String>,
    pub recipient_age_verification: Option<String>,
}

/// A product the buyer accepts instead of an item that is out of stock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubstitutionOption {
    pub asin: Option<String>,
    pub sku: Option<String>,
    pub title: Option<String>,
    pub quantity_ordered: Option<i64>,
}

/// The marketplace's further facts about an order (Amazon `Order` fields beyond the
/// ones every channel has). Never holds restricted (personal) data: that is
/// [`BuyerDetails`], read on demand and never stored. Values of closed sets that
/// nightdesk only shows are kept as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderDetails {
    /// The seller's own order id, when the seller set one.
    pub seller_order_id: Option<String>,
    /// The storefront, e.g. `Amazon.com`, `Amazon.de`.
    pub sales_channel: Option<String>,
    pub order_channel: Option<String>,
    /// The shipping speed as the buyer chose it (free text, e.g. `Std US D2D Dom`).
    pub ship_service_level: Option<String>,
    /// `Expedited`, `FreeEconomy`, `NextDay`, `Priority`, `SameDay`, `SecondDay`,
    /// `Scheduled`, `Standard`.
    pub shipment_service_level_category: Option<String>,
    /// `COD`, `CVS` or `Other`.
    pub payment_method: Option<String>,
    /// `CreditCard`, `GiftCertificate`, `Invoice`, `Standard`, …
    pub payment_method_details: Vec<String>,
    pub number_of_items_shipped: Option<i64>,
    pub number_of_items_unshipped: Option<i64>,
    pub is_premium: Option<bool>,
    /// A replacement the seller sent for `replaced_order_id`.
    pub is_replacement: Option<bool>,
    pub replaced_order_id: Option<String>,
    pub is_global_express: Option<bool>,
    /// Sold by Amazon Business (AB).
    pub is_sold_by_ab: Option<bool>,
    /// Sold by Amazon on the seller's behalf ("Invoicing by Amazon", IBA).
    pub is_iba: Option<bool>,
    /// In-store pickup.
    pub is_ispu: Option<bool>,
    /// Delivered to an Amazon Hub or another access point.
    pub is_access_point: Option<bool>,
    pub has_regulated_items: Option<bool>,
    /// The seller set the estimated ship date (long-lead-time orders).
    pub is_estimated_ship_date_set: Option<bool>,
    /// Easy Ship only: `PendingSchedule`, `PendingPickUp`, `PickedUp`, `Delivered`, …
    pub easy_ship_shipment_status: Option<String>,
    /// `NotRequired`, `NotFound`, `Processing`, `Errored`, `Accepted`.
    pub electronic_invoice_status: Option<String>,
    /// When the seller must answer a `SourcingOnDemandOrder`.
    pub promise_response_due_date: Option<DateTime<Utc>>,
    /// The seller's supply source (warehouse) the order ships from.
    pub fulfillment_supply_source_id: Option<String>,
    /// `INDIVIDUAL` or `BUSINESS`: which invoice the buyer asked for.
    pub buyer_invoice_preference: Option<String>,
    /// Where the order goes, as far as Amazon tells without a Restricted Data Token.
    pub ship_to: Option<ShippingArea>,
}

/// The non-personal part of a shipping address: enough to match one customer across
/// channels, never enough to reach them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShippingArea {
    pub city: Option<String>,
    pub state_or_region: Option<String>,
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country_code: Option<String>,
}

/// An order's buyer: restricted (personal) data, read on demand with a Restricted Data
/// Token and never stored. It is not `Serialize`, so it cannot end up in the store, a
/// log line or the audit by accident, and its `Debug` only says which fields are there.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BuyerDetails {
    pub name: Option<String>,
    /// The marketplace's anonymised relay address, not the buyer's own.
    pub email: Option<String>,
    pub company: Option<String>,
    /// A business buyer's purchase order number.
    pub purchase_order_number: Option<String>,
    /// Absent while the order is Pending or Canceled.
    pub shipping_address: Option<BuyerAddress>,
}

/// A buyer's shipping address (restricted data, see [`BuyerDetails`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BuyerAddress {
    pub name: Option<String>,
    pub company: Option<String>,
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub line3: Option<String>,
    pub city: Option<String>,
    pub county: Option<String>,
    pub district: Option<String>,
    pub municipality: Option<String>,
    pub state_or_region: Option<String>,
    pub postal_code: Option<String>,
    pub country_code: Option<String>,
    /// Amazon withholds it for FBA orders and after the delivery window.
    pub phone: Option<String>,
    /// `Residential` or `Commercial`.
    pub address_type: Option<String>,
}

/// `Some(..)` or `None`: whether a personal field is there, never its value.
struct Presence(bool);

impl fmt::Debug for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "Some(..)" } else { "None" })
    }
}

fn present(value: &Option<String>) -> Presence {
    Presence(value.is_some())
}

impl fmt::Debug for BuyerDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuyerDetails")
            .field("name", &present(&self.name))
            .field("email", &present(&self.email))
            .field("company", &present(&self.company))
            .field(
                "purchase_order_number",
                &present(&self.purchase_order_number),
            )
            .field("shipping_address", &self.shipping_address)
            .finish()
    }
}

impl fmt::Debug for BuyerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuyerAddress")
            .field("name", &present(&self.name))
            .field("company", &present(&self.company))
            .field("line1", &present(&self.line1))
            .field("line2", &present(&self.line2))
            .field("line3", &present(&self.line3))
            .field("city", &present(&self.city))
            .field("county", &present(&self.county))
            .field("district", &present(&self.district))
            .field("municipality", &present(&self.municipality))
            .field("state_or_region", &present(&self.state_or_region))
            .field("postal_code", &present(&self.postal_code))
            .field("country_code", &present(&self.country_code))
            .field("phone", &present(&self.phone))
            .field("address_type", &present(&self.address_type))
            .finish()
    }
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
    #[serde(default)]
    pub details: OrderDetails,
    /// Who bought, as far as the channel shows it (for the customer index).
    #[serde(default, skip_serializing_if = "Customer::is_empty")]
    pub customer: Customer,
}

/// The buyer as a channel shows them, for finding one customer across channels.
/// Amazon hides the buyer behind a relay address, so its orders carry only the ship-to
/// city, postcode and country (never restricted data); Shopify, eBay and Walmart give
/// a name and often a real e-mail address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Customer {
    /// A real address (never a marketplace relay address).
    pub email: Option<String>,
    pub name: Option<String>,
    pub postcode: Option<String>,
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
}

impl Customer {
    pub fn is_empty(&self) -> bool {
        *self == Customer::default()
    }
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
    /// Where it came from and how to answer it in its thread.
    #[serde(default)]
    pub mail: MailHeaders,
}

/// The mail facts a reply needs: where the message came from and its place in the thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailHeaders {
    /// The mailbox it was read from (`Mailbox::name`).
    pub mailbox: String,
    /// The sender's display name (for the customer index; relays keep the buyer's name).
    #[serde(default)]
    pub from_name: Option<String>,
    /// Its Message-ID, without angle brackets.
    pub message_id: Option<String>,
    /// Its References, oldest first (the reply's References are these plus its id).
    #[serde(default)]
    pub references: Vec<String>,
    /// The address a reply goes to (the marketplace's relay address), when one may.
    pub reply_to: Option<String>,
    /// Why it must not be answered (an auto-reply, a notification, our own reply).
    pub do_not_answer: Option<String>,
    /// Attachments by name and type only, never content.
    #[serde(default)]
    pub attachments: Vec<String>,
}

impl BuyerMessage {
    pub fn subject_key(&self) -> Subject {
        Subject::named("message", &self.id)
    }

    /// Messages of one buyer about one order form a thread: the relay address (or the
    /// sender) and the order id, or `-` when the buyer named none.
    pub fn thread_key(&self) -> String {
        let buyer = self.mail.reply_to.as_deref().unwrap_or(&self.from);
        format!(
            "{}|{}",
            buyer.to_ascii_lowercase(),
            self.order_id.as_deref().unwrap_or("-")
        )
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
    /// What nightdesk derives itself (`not_scanned`, `stalled`, `late`); see
    /// `sources::carriers::history::Condition`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<String>,
}

/// Which parcel a tracking event is about: a tracking number is only unique per carrier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParcelRef {
    pub carrier: String,
    pub tracking_number: String,
}

impl ParcelRef {
    pub fn of(shipment: &Shipment) -> Self {
        ParcelRef {
            carrier: shipment.carrier.clone(),
            tracking_number: shipment.tracking_number.clone(),
        }
    }

    pub fn is(&self, shipment: &Shipment) -> bool {
        self.carrier == shipment.carrier && self.tracking_number == shipment.tracking_number
    }
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
        /// Which of the subject's parcels (events stored before it was kept read as empty).
        #[serde(default)]
        parcel: ParcelRef,
    },
    /// The carrier reports a problem with a parcel.
    ShipmentException {
        reason: String,
        #[serde(default)]
        parcel: ParcelRef,
    },
    /// nightdesk noticed a condition of a parcel the carrier does not report:
    /// `not_scanned` (label made, no scan after N business days), `stalled` (no new
    /// scan for N days), `late` (past the promised delivery, not delivered).
    TrackingCondition {
        condition: String,
        parcel: ParcelRef,
    },
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
            EventKind::TrackingCondition { .. } => "on_tracking_condition",
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
            EventKind::TrackingCondition { .. } => "TrackingCondition",
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
    fn order_numbers_name_their_channel() {
        for (id, channel) in [
            ("113-4829301-5520617", Some(SalesChannel::Amazon)),
            ("12-10234-56789", Some(SalesChannel::Ebay)),
            ("1796277083022", Some(SalesChannel::Walmart)),
            ("108812345678901", Some(SalesChannel::Walmart)),
            ("#10482", Some(SalesChannel::Shopify)),
            ("10482", None),
            ("1Z5R89390357567127", None),
            ("113-482930-5520617", None),
            ("#", None),
        ] {
            assert_eq!(SalesChannel::of_order_number(id), channel, "{id}");
        }
        for channel in SalesChannel::ALL {
            assert_eq!(channel.as_str().parse::<SalesChannel>().ok(), Some(channel));
        }
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
