//! Walmart purchase orders as the Orders API sends them (`specs/walmart/
//! walmart-marketplace-orders-openapi-original.yml`: `getAllOrders`' `list.elements.order[]`
//! and `getAnOrder`'s `GetOrderResponse.order`), read field by field into the domain
//! [`Order`], its items and the tracking of each line.
//!
//! What this module decides (and the report documents):
//! - the order's id is `purchaseOrderId`, the number every Walmart action (cancel,
//!   refund, ship, getAnOrder) takes; the buyer's number, `customerOrderId` (what
//!   walmart.com and Walmart's mails show the buyer, so what they quote), is kept in
//!   `details.seller_order_id`, the order's second number;
//! - the status comes from the lines' status quantities ([`order_status`]);
//! - `customerEmailId` is a relay address (`…@relay.walmart.com`) and never becomes
//!   [`Customer::email`].
//!
//! It never panics on what Walmart sends: a field that breaks the contract makes the
//! whole order `Malformed`, and the caller skips it. No personal data beyond the
//! customer index's name, city, postcode and country leaves this module, and none is
//! logged.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::http::UpstreamError;
use crate::model::{
    Customer, Fulfillment, ItemDetails, Money, Order, OrderDetails, OrderItem, OrderStatus,
    SalesChannel, ShippingArea, format_cents,
};

/// The domain that marks Walmart's relay addresses.
pub const RELAY_DOMAIN: &str = "relay.walmart.com";

// ---------------------------------------------------------------------------------------
// Wire types, from the contract. What nightdesk uses of a required field is required
// here too; optional fields are `Option`; unknown fields are ignored.

/// `getAllOrders`' answer: `{"list": {"meta", "elements": {"order": [...]}}}`. Orders stay
/// raw JSON here so one malformed order is skipped without losing the page.
#[derive(Debug, Deserialize)]
pub(crate) struct OrdersList {
    pub(crate) list: ListBody,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListBody {
    pub(crate) meta: Meta,
    pub(crate) elements: Elements,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Meta {
    /// A query string (`?limit=…&hasMoreElements=true&…`) to call `/v3/orders` with
    /// for the next page; absent or empty on the last page.
    #[serde(default)]
    pub(crate) next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Elements {
    #[serde(default)]
    pub(crate) order: Vec<Value>,
}

/// `getAnOrder`'s answer (`components/schemas/GetOrderResponse`).
#[derive(Debug, Deserialize)]
pub(crate) struct OrderResponse {
    pub(crate) order: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOrder {
    purchase_order_id: String,
    customer_order_id: String,
    customer_email_id: String,
    #[serde(default)]
    order_type: Option<String>,
    #[serde(default, rename = "originalCustomerOrderID")]
    original_customer_order_id: Option<String>,
    /// Epoch milliseconds.
    order_date: i64,
    shipping_info: WireShippingInfo,
    order_lines: WireOrderLines,
    #[serde(default)]
    payment_types: Vec<String>,
    #[serde(default)]
    order_summary: Option<WireOrderSummary>,
    #[serde(default)]
    ship_node: Option<WireShipNode>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireShippingInfo {
    estimated_delivery_date: i64,
    estimated_ship_date: i64,
    method_code: String,
    postal_address: WirePostalAddress,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePostalAddress {
    name: String,
    city: String,
    state: String,
    postal_code: String,
    country: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOrderLines {
    #[serde(default)]
    order_line: Vec<WireOrderLine>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOrderLine {
    line_number: String,
    item: WireItem,
    charges: WireCharges,
    order_line_quantity: WireQuantity,
    /// Epoch milliseconds of the line's latest status.
    status_date: i64,
    order_line_statuses: WireLineStatuses,
    #[serde(default)]
    intent_to_cancel: Option<String>,
    #[serde(default)]
    seller_order_id: Option<String>,
    #[serde(default)]
    fulfillment: Option<WireFulfillment>,
    /// What was refunded on the line so far (`RefundType`).
    #[serde(default)]
    refund: Option<WireRefund>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRefund {
    #[serde(default)]
    refund_charges: Option<WireRefundCharges>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRefundCharges {
    #[serde(default)]
    refund_charge: Vec<WireRefundCharge>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRefundCharge {
    charge: WireCharge,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireItem {
    product_name: String,
    sku: String,
    #[serde(default)]
    condition: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireCharges {
    #[serde(default)]
    charge: Vec<WireCharge>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCharge {
    charge_type: String,
    charge_amount: WireMoney,
    #[serde(default)]
    tax: Option<WireTax>,
}

#[derive(Debug, Deserialize)]
struct WireMoney {
    currency: String,
    amount: serde_json::Number,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTax {
    tax_amount: WireMoney,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireQuantity {
    amount: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLineStatuses {
    #[serde(default)]
    order_line_status: Vec<WireLineStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLineStatus {
    status: String,
    status_quantity: WireQuantity,
    #[serde(default)]
    cancellation_reason: Option<String>,
    #[serde(default)]
    tracking_info: Option<WireTrackingInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTrackingInfo {
    ship_date_time: i64,
    carrier_name: WireCarrierName,
    method_code: String,
    tracking_number: String,
    #[serde(default, rename = "trackingURL")]
    tracking_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCarrierName {
    #[serde(default)]
    other_carrier: Option<String>,
    #[serde(default)]
    carrier: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireFulfillment {
    #[serde(default)]
    shipping_program_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOrderSummary {
    #[serde(default)]
    total_amount: Option<WireCurrencyAmount>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCurrencyAmount {
    currency_amount: serde_json::Number,
    currency_unit: String,
}

#[derive(Debug, Deserialize)]
struct WireShipNode {
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

// ---------------------------------------------------------------------------------------
// What the connector hands on.

/// A line's status as Walmart names it (`orderLineStatus.status`: a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineStatus {
    Created,
    Acknowledged,
    Shipped,
    Delivered,
    Cancelled,
    /// Refunded after shipping.
    Refund,
}

impl LineStatus {
    pub fn parse(text: &str) -> Option<LineStatus> {
        Some(match text {
            "Created" => LineStatus::Created,
            "Acknowledged" => LineStatus::Acknowledged,
            "Shipped" => LineStatus::Shipped,
            "Delivered" => LineStatus::Delivered,
            "Cancelled" => LineStatus::Cancelled,
            "Refund" => LineStatus::Refund,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LineStatus::Created => "Created",
            LineStatus::Acknowledged => "Acknowledged",
            LineStatus::Shipped => "Shipped",
            LineStatus::Delivered => "Delivered",
            LineStatus::Cancelled => "Cancelled",
            LineStatus::Refund => "Refund",
        }
    }

    /// The units left the seller (Refund comes after a shipment).
    fn is_shipped(self) -> bool {
        matches!(
            self,
            LineStatus::Shipped | LineStatus::Delivered | LineStatus::Refund
        )
    }

    fn is_open(self) -> bool {
        matches!(self, LineStatus::Created | LineStatus::Acknowledged)
    }
}

/// The order's status from its lines' status quantities (units, not lines):
///
/// | units in                                   | order status       |
/// |--------------------------------------------|--------------------|
/// | none (no line, or every quantity 0)        | `Unshipped`        |
/// | only Cancelled                             | `Canceled`         |
/// | Created/Acknowledged (± Cancelled), none shipped | `Unshipped`   |
/// | Shipped/Delivered/Refund and Created/Acknowledged | `PartiallyShipped` |
/// | Shipped/Delivered/Refund (± Cancelled), none open | `Shipped`     |
///
/// Walmart releases an order to the seller once it is paid, so there is no `Pending`.
pub fn order_status(units: &[(LineStatus, i64)]) -> OrderStatus {
    let sum = |keep: fn(LineStatus) -> bool| -> i64 {
        units
            .iter()
            .filter(|(s, _)| keep(*s))
            .map(|(_, n)| (*n).max(0))
            .sum()
    };
    let open = sum(LineStatus::is_open);
    let shipped = sum(LineStatus::is_shipped);
    let cancelled = sum(|s| s == LineStatus::Cancelled);
    match (open > 0, shipped > 0, cancelled > 0) {
        (false, false, true) => OrderStatus::Canceled,
        (true, true, _) => OrderStatus::PartiallyShipped,
        (false, true, _) => OrderStatus::Shipped,
        _ => OrderStatus::Unshipped,
    }
}

/// A line's parcel as the seller's ship confirmation described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTracking {
    pub line_number: String,
    /// `carrierName.carrier` (`UPS`, `USPS`, `FedEx`, …) or, for others,
    /// `carrierName.otherCarrier`.
    pub carrier: Option<String>,
    pub tracking_number: String,
    pub tracking_url: Option<String>,
    pub ship_time: Option<DateTime<Utc>>,
    /// `Standard`, `Express`, `OneDay`, `Freight`, `WhiteGlove`, `Value`.
    pub method_code: String,
}

/// One purchase order, mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalmartOrder {
    pub order: Order,
    /// The buyer's order number (`customerOrderId`), also in `details.seller_order_id`.
    pub customer_order_id: String,
    /// Each line's parcels, in line order.
    pub tracking: Vec<LineTracking>,
    /// Each line's units per status, by line number.
    pub line_statuses: BTreeMap<String, Vec<(LineStatus, i64)>>,
    /// The `PRODUCT` charges refunded so far on each line that has a refund, in cents
    /// (Walmart writes refunds as negative amounts; these are their sizes).
    pub refunded: BTreeMap<String, i64>,
}

fn malformed(what: &str, reason: impl Into<String>) -> UpstreamError {
    UpstreamError::Malformed {
        what: what.to_owned(),
        reason: reason.into(),
    }
}

fn millis(what: &str, ms: i64) -> Result<DateTime<Utc>, UpstreamError> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .ok_or_else(|| malformed(what, format!("{ms} is not a time in epoch milliseconds")))
}

fn quantity(what: &str, q: &WireQuantity) -> Result<i64, UpstreamError> {
    q.amount
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| malformed(what, format!("quantity {:?} is not a count", q.amount)))
}

/// A JSON number as cents: decimal text, rounded half away from zero past two decimals.
/// Exponent forms and anything larger than an `i64` of cents are refused.
pub fn number_cents(number: &serde_json::Number) -> Option<i64> {
    let text = number.to_string();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut cents = whole.parse::<i64>().ok()?.checked_mul(100)?;
    let mut places = fraction.bytes().map(|b| i64::from(b - b'0'));
    let tenths = places.next().unwrap_or(0);
    let hundredths = places.next().unwrap_or(0);
    let round_up = places.next().is_some_and(|d| d >= 5);
    cents = cents.checked_add(tenths * 10 + hundredths + i64::from(round_up))?;
    Some(if negative { -cents } else { cents })
}

/// Signed cents as Money's amount text.
fn signed_text(cents: i64) -> String {
    if cents < 0 {
        format!("-{}", format_cents(cents.saturating_abs()))
    } else {
        format_cents(cents)
    }
}

/// Sums of one currency.
#[derive(Debug, Default)]
struct Sum {
    currency: Option<String>,
    cents: i64,
    any: bool,
}

impl Sum {
    fn add(&mut self, what: &str, money: &WireMoney) -> Result<(), UpstreamError> {
        let cents = number_cents(&money.amount)
            .ok_or_else(|| malformed(what, format!("amount {} is not money", money.amount)))?;
        let currency = money.currency.trim();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(malformed(what, format!("currency {currency:?}")));
        }
        match &self.currency {
            Some(known) if known != currency => {
                return Err(malformed(
                    what,
                    format!("amounts in {known} and {currency} in one order"),
                ));
            }
            Some(_) => {}
            None => self.currency = Some(currency.to_owned()),
        }
        self.cents = self
            .cents
            .checked_add(cents)
            .ok_or_else(|| malformed(what, "amounts overflow"))?;
        self.any = true;
        Ok(())
    }

    fn money(&self) -> Option<Money> {
        match (&self.currency, self.any) {
            (Some(currency), true) => Some(Money {
                currency: currency.clone(),
                amount: signed_text(self.cents),
            }),
            _ => None,
        }
    }
}

/// ISO 3166-1 alpha-2 of the country as Walmart writes it (`USA` in its examples).
fn country_code(country: &str) -> Option<String> {
    let c = country.trim().to_ascii_uppercase();
    let alpha2 = match c.as_str() {
        "USA" | "US" | "UNITED STATES" => "US",
        "PRI" | "PR" => "PR",
        "CAN" | "CA" => "CA",
        "MEX" | "MX" => "MX",
        other if other.len() == 2 && other.bytes().all(|b| b.is_ascii_uppercase()) => other,
        _ => return None,
    };
    Some(alpha2.to_owned())
}

fn non_empty(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// Whether `address` is one of Walmart's relay addresses.
pub fn is_relay_address(address: &str) -> bool {
    address
        .trim()
        .rsplit_once('@')
        .is_some_and(|(_, domain)| domain.eq_ignore_ascii_case(RELAY_DOMAIN))
}

/// The purchase order's id in a raw order, when it has one (for naming a skipped order).
pub(crate) fn raw_id(raw: &Value) -> String {
    raw.get("purchaseOrderId")
        .and_then(Value::as_str)
        .map_or_else(|| "<no purchaseOrderId>".to_owned(), str::to_owned)
}

/// Maps one raw purchase order of `account`.
pub fn parse_order(raw: Value, account: &str) -> Result<WalmartOrder, UpstreamError> {
    let id = raw_id(&raw);
    let what = format!("Walmart order {id}");
    let wire: WireOrder =
        serde_json::from_value(raw).map_err(|e| malformed(&what, e.to_string()))?;
    map_order(wire, account, &what)
}

fn map_order(wire: WireOrder, account: &str, what: &str) -> Result<WalmartOrder, UpstreamError> {
    if wire.purchase_order_id.trim().is_empty() {
        return Err(malformed(what, "empty purchaseOrderId"));
    }
    if wire.customer_order_id.trim().is_empty() {
        return Err(malformed(what, "empty customerOrderId"));
    }
    let purchase_date = millis(what, wire.order_date)?;
    let mut last_update = purchase_date;
    let mut items = Vec::new();
    let mut tracking = Vec::new();
    let mut line_statuses = BTreeMap::new();
    let mut refunded = BTreeMap::new();
    let mut all_units = Vec::new();
    let mut total = Sum::default();
    let mut seller_order_ids = Vec::new();
    let mut programs = Vec::new();
    for line in wire.order_lines.order_line {
        let line_what = format!("{what} line {}", line.line_number);
        if line.line_number.trim().is_empty() {
            return Err(malformed(what, "a line without lineNumber"));
        }
        last_update = last_update.max(millis(&line_what, line.status_date)?);
        let ordered = quantity(&line_what, &line.order_line_quantity)?;
        let mut units = Vec::new();
        for status in line.order_line_statuses.order_line_status {
            let kind = LineStatus::parse(&status.status).ok_or_else(|| {
                malformed(&line_what, format!("unknown status {:?}", status.status))
            })?;
            let n = quantity(&line_what, &status.status_quantity)?;
            units.push((kind, n));
            if let Some(info) = status.tracking_info {
                let number = info.tracking_number.trim();
                if number.is_empty() {
                    return Err(malformed(&line_what, "empty trackingNumber"));
                }
                let carrier = info
                    .carrier_name
                    .carrier
                    .as_deref()
                    .and_then(non_empty)
                    .or_else(|| {
                        info.carrier_name
                            .other_carrier
                            .as_deref()
                            .and_then(non_empty)
                    });
                tracking.push(LineTracking {
                    line_number: line.line_number.clone(),
                    carrier,
                    tracking_number: number.to_owned(),
                    tracking_url: info.tracking_url.as_deref().and_then(non_empty),
                    ship_time: Some(millis(&line_what, info.ship_date_time)?),
                    method_code: info.method_code,
                });
            }
            // The reason is Walmart's own code; it is kept on the item below.
            let _ = status.cancellation_reason;
        }
        let shipped: i64 = units
            .iter()
            .filter(|(s, _)| s.is_shipped())
            .map(|(_, n)| n)
            .sum();
        let (mut price, mut tax, mut shipping, mut shipping_tax) = (
            Sum::default(),
            Sum::default(),
            Sum::default(),
            Sum::default(),
        );
        for charge in &line.charges.charge {
            let (amount, its_tax) = match charge.charge_type.trim() {
                "PRODUCT" => (&mut price, &mut tax),
                "SHIPPING" => (&mut shipping, &mut shipping_tax),
                other => {
                    return Err(malformed(
                        &line_what,
                        format!("unknown chargeType {other:?}"),
                    ));
                }
            };
            amount.add(&line_what, &charge.charge_amount)?;
            total.add(&line_what, &charge.charge_amount)?;
            if let Some(t) = &charge.tax {
                its_tax.add(&line_what, &t.tax_amount)?;
                total.add(&line_what, &t.tax_amount)?;
            }
        }
        if let Some(refund) = &line.refund {
            let mut product = Sum::default();
            for refund_charge in refund
                .refund_charges
                .iter()
                .flat_map(|c| c.refund_charge.iter())
                .filter(|c| c.charge.charge_type.trim() == "PRODUCT")
            {
                product.add(&line_what, &refund_charge.charge.charge_amount)?;
            }
            refunded.insert(line.line_number.clone(), product.cents.saturating_abs());
        }
        let intent_to_cancel = line
            .intent_to_cancel
            .as_deref()
            .map(str::trim)
            .is_some_and(|v| {
                !v.is_empty() && !v.eq_ignore_ascii_case("false") && !v.eq_ignore_ascii_case("n")
            });
        if let Some(id) = line.seller_order_id.as_deref().and_then(non_empty)
            && !seller_order_ids.contains(&id)
        {
            seller_order_ids.push(id);
        }
        if let Some(program) = line
            .fulfillment
            .as_ref()
            .and_then(|f| f.shipping_program_type.as_deref())
            .and_then(non_empty)
            && !programs.contains(&program)
        {
            programs.push(program);
        }
        items.push(OrderItem {
            id: line.line_number.clone(),
            asin: None,
            sku: non_empty(&line.item.sku),
            title: non_empty(&line.item.product_name),
            quantity_ordered: ordered,
            quantity_shipped: shipped.min(ordered),
            price: price.money(),
            tax: tax.money(),
            buyer_requested_cancel: intent_to_cancel,
            buyer_cancel_reason: None,
            details: ItemDetails {
                shipping_price: shipping.money(),
                shipping_tax: shipping_tax.money(),
                condition_id: line.item.condition.as_deref().and_then(non_empty),
                ..ItemDetails::default()
            },
        });
        all_units.extend(units.iter().copied());
        line_statuses.insert(line.line_number, units);
    }
    // Walmart's own total when it states one; else the lines' charges and taxes.
    let total = match wire.order_summary.and_then(|s| s.total_amount) {
        Some(stated) => {
            let mut sum = Sum::default();
            sum.add(
                what,
                &WireMoney {
                    currency: stated.currency_unit,
                    amount: stated.currency_amount,
                },
            )?;
            sum.money()
        }
        None => total.money(),
    };
    let info = wire.shipping_info;
    let address = info.postal_address;
    let country = country_code(&address.country);
    let email = wire.customer_email_id.trim();
    let customer = Customer {
        email: (!email.is_empty() && !is_relay_address(email) && email.contains('@'))
            .then(|| email.to_ascii_lowercase()),
        name: non_empty(&address.name),
        postcode: non_empty(&address.postal_code),
        city: non_empty(&address.city),
        country: country.clone(),
    };
    let fulfillment = match wire
        .ship_node
        .and_then(|n| n.kind)
        .as_deref()
        .map(str::trim)
    {
        // Walmart Fulfillment Services ships from Walmart's warehouses.
        Some("WFSFulfilled") => Some(Fulfillment::Afn),
        _ => Some(Fulfillment::Mfn),
    };
    let shipped_units: i64 = all_units
        .iter()
        .filter(|(s, _)| s.is_shipped())
        .map(|(_, n)| n)
        .sum();
    let open_units: i64 = all_units
        .iter()
        .filter(|(s, _)| s.is_open())
        .map(|(_, n)| n)
        .sum();
    let status = order_status(&all_units);
    let order_type = wire.order_type.as_deref().and_then(non_empty);
    let is_replacement = order_type.as_deref().map(|t| t == "REPLACEMENT");
    let order = Order {
        channel: SalesChannel::Walmart,
        account: account.to_owned(),
        id: wire.purchase_order_id.trim().to_owned(),
        marketplace_id: None,
        status,
        fulfillment,
        purchase_date,
        last_update,
        earliest_ship_date: None,
        latest_ship_date: Some(millis(what, info.estimated_ship_date)?),
        earliest_delivery_date: None,
        latest_delivery_date: Some(millis(what, info.estimated_delivery_date)?),
        total,
        order_type,
        is_prime: false,
        is_business: false,
        items,
        details: OrderDetails {
            seller_order_id: Some(wire.customer_order_id.trim().to_owned()),
            sales_channel: Some("Walmart.com".to_owned()),
            ship_service_level: non_empty(&info.method_code),
            shipment_service_level_category: programs.first().cloned(),
            payment_method_details: wire.payment_types,
            number_of_items_shipped: Some(shipped_units),
            number_of_items_unshipped: Some(open_units),
            is_replacement,
            replaced_order_id: wire
                .original_customer_order_id
                .as_deref()
                .and_then(non_empty),
            ship_to: Some(ShippingArea {
                city: non_empty(&address.city),
                state_or_region: non_empty(&address.state),
                postal_code: non_empty(&address.postal_code),
                country_code: country,
            }),
            ..OrderDetails::default()
        },
        customer,
    };
    Ok(WalmartOrder {
        order,
        customer_order_id: wire.customer_order_id.trim().to_owned(),
        tracking,
        line_statuses,
        refunded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The contract's `getAnOrder` example `ORDER`, one line shipped by USPS.
    fn example() -> Value {
        json!({
            "purchaseOrderId": "1815367951431",
            "customerOrderId": "4372135469400",
            "customerEmailId": "7D9F02968955480499C84C5871AD1401@relay.walmart.com",
            "orderDate": 1623796407000_i64,
            "shippingInfo": {
                "phone": "3143450432",
                "estimatedDeliveryDate": 1624647600000_i64,
                "estimatedShipDate": 1623906000000_i64,
                "methodCode": "Value",
                "postalAddress": {
                    "name": "Donald Ashley", "address1": "6600 gazebo drive",
                    "city": "Cedar hill", "state": "MO", "postalCode": "63016",
                    "country": "USA", "addressType": "RESIDENTIAL"
                }
            },
            "orderLines": {"orderLine": [{
                "lineNumber": "1",
                "item": {"productName": "Yard Cart Wagon, Purple", "sku": "YHY-FN25200B2"},
                "charges": {"charge": [{
                    "chargeType": "PRODUCT", "chargeName": "ItemPrice",
                    "chargeAmount": {"currency": "USD", "amount": 5},
                    "tax": {"taxName": "Tax1", "taxAmount": {"currency": "USD", "amount": 0.34}}
                }]},
                "orderLineQuantity": {"unitOfMeasurement": "EACH", "amount": "1"},
                "statusDate": 1623835855623_i64,
                "orderLineStatuses": {"orderLineStatus": [{
                    "status": "Shipped",
                    "statusQuantity": {"unitOfMeasurement": "EACH", "amount": "1"},
                    "trackingInfo": {
                        "shipDateTime": 1623835855000_i64,
                        "carrierName": {"carrier": "USPS"},
                        "methodCode": "Value",
                        "trackingNumber": "435678956435467",
                        "trackingURL": "https://www.walmart.com/tracking?tracking_id=435678956435467&order_id=1815367951431"
                    }
                }]},
                "fulfillment": {"fulfillmentOption": "S2H", "shipMethod": "VALUE"}
            }]},
            "shipNode": {"type": "SellerFulfilled"}
        })
    }

    #[test]
    fn the_contract_example_maps_field_by_field() -> Result<(), UpstreamError> {
        let mapped = parse_order(example(), "us")?;
        let order = &mapped.order;
        assert_eq!(order.id, "1815367951431");
        assert_eq!(mapped.customer_order_id, "4372135469400");
        assert_eq!(
            order.details.seller_order_id.as_deref(),
            Some("4372135469400")
        );
        assert_eq!(order.status, OrderStatus::Shipped);
        assert_eq!(order.fulfillment, Some(Fulfillment::Mfn));
        assert_eq!(order.purchase_date.timestamp_millis(), 1623796407000);
        assert_eq!(order.last_update.timestamp_millis(), 1623835855623);
        assert_eq!(
            order.total,
            Some(Money {
                currency: "USD".into(),
                amount: "5.34".into()
            })
        );
        let item = &order.items[0];
        assert_eq!(item.price.as_ref().map(|m| m.amount.as_str()), Some("5.00"));
        assert_eq!(item.tax.as_ref().map(|m| m.amount.as_str()), Some("0.34"));
        assert_eq!((item.quantity_ordered, item.quantity_shipped), (1, 1));
        assert_eq!(
            order.customer,
            Customer {
                email: None,
                name: Some("Donald Ashley".into()),
                postcode: Some("63016".into()),
                city: Some("Cedar hill".into()),
                country: Some("US".into()),
            }
        );
        assert_eq!(mapped.tracking.len(), 1);
        assert_eq!(mapped.tracking[0].carrier.as_deref(), Some("USPS"));
        assert_eq!(mapped.tracking[0].tracking_number, "435678956435467");
        Ok(())
    }

    #[test]
    fn the_status_table() {
        use LineStatus::*;
        let cases: [(&[(LineStatus, i64)], OrderStatus); 9] = [
            (&[(Created, 1)], OrderStatus::Unshipped),
            (&[(Acknowledged, 2)], OrderStatus::Unshipped),
            (&[(Acknowledged, 1), (Cancelled, 1)], OrderStatus::Unshipped),
            (
                &[(Shipped, 1), (Acknowledged, 1)],
                OrderStatus::PartiallyShipped,
            ),
            (
                &[(Delivered, 1), (Created, 1)],
                OrderStatus::PartiallyShipped,
            ),
            (&[(Shipped, 1), (Delivered, 1)], OrderStatus::Shipped),
            (&[(Shipped, 1), (Cancelled, 1)], OrderStatus::Shipped),
            (&[(Cancelled, 3)], OrderStatus::Canceled),
            (&[(Refund, 1)], OrderStatus::Shipped),
        ];
        for (units, want) in cases {
            assert_eq!(order_status(units), want, "{units:?}");
        }
    }

    #[test]
    fn money_is_read_as_decimal_text() {
        let n = |v: Value| match v {
            Value::Number(n) => number_cents(&n),
            _ => None,
        };
        assert_eq!(n(json!(19.99)), Some(1999));
        assert_eq!(n(json!(5)), Some(500));
        assert_eq!(n(json!(0.345)), Some(35));
        assert_eq!(n(json!(-2.5)), Some(-250));
    }

    #[test]
    fn broken_orders_are_malformed_not_panics() {
        let mut bad = example();
        bad["orderDate"] = json!("yesterday");
        assert!(matches!(
            parse_order(bad, "us"),
            Err(UpstreamError::Malformed { .. })
        ));
        let mut bad = example();
        bad["orderLines"]["orderLine"][0]["orderLineStatuses"]["orderLineStatus"][0]["status"] =
            json!("Teleported");
        assert!(matches!(
            parse_order(bad, "us"),
            Err(UpstreamError::Malformed { .. })
        ));
        let mut bad = example();
        bad["orderLines"]["orderLine"][0]["charges"]["charge"][0]["chargeAmount"]["currency"] =
            json!("usd");
        assert!(parse_order(bad, "us").is_err());
    }

    #[test]
    fn refunds_on_a_line_are_summed_as_positive_product_cents() -> Result<(), UpstreamError> {
        assert!(parse_order(example(), "us")?.refunded.is_empty());
        let mut refunded = example();
        // The contract's refundOrderLines example answer: product and shipping refunded.
        refunded["orderLines"]["orderLine"][0]["refund"] = json!({"refundCharges": {"refundCharge": [
            {"refundReason": "BillingError", "charge": {"chargeType": "PRODUCT", "chargeName": "Billing Error",
             "chargeAmount": {"currency": "USD", "amount": -4.99}}},
            {"refundReason": "BillingError", "charge": {"chargeType": "SHIPPING", "chargeName": "Billing Error",
             "chargeAmount": {"currency": "USD", "amount": -2}}},
            {"refundReason": "Others", "charge": {"chargeType": "PRODUCT", "chargeName": "ItemPrice",
             "chargeAmount": {"currency": "USD", "amount": -0.01},
             "tax": {"taxName": "Tax1", "taxAmount": {"currency": "USD", "amount": -0.34}}}}
        ]}});
        let mapped = parse_order(refunded, "us")?;
        assert_eq!(mapped.refunded.get("1"), Some(&500));
        let mut broken = example();
        broken["orderLines"]["orderLine"][0]["refund"] =
            json!({"refundCharges": {"refundCharge": [{"refundReason": "Others"}]}});
        assert!(parse_order(broken, "us").is_err());
        Ok(())
    }

    #[test]
    fn a_real_address_is_kept_and_a_relay_one_never() -> Result<(), UpstreamError> {
        let mut real = example();
        real["customerEmailId"] = json!("Buyer@Example.org");
        assert_eq!(
            parse_order(real, "us")?.order.customer.email.as_deref(),
            Some("buyer@example.org")
        );
        assert!(is_relay_address("X@RELAY.walmart.com"));
        assert!(!is_relay_address("x@walmart.com"));
        Ok(())
    }
}
