//! Sell Fulfillment `Order` (contract v1.20.7, `specs/ebay/sell_fulfillment_v1_oas3.yaml`)
//! as read from getOrders/getOrder, and its mapping into the domain [`Order`]. Every
//! field is optional on the wire; what the domain needs is checked here, and an order
//! that breaks the contract is an error for that order alone (the page skips it).
//!
//! Status (first match wins):
//!
//! | `cancelStatus.cancelState` | `orderPaymentStatus` | `orderFulfillmentStatus` | `OrderStatus` |
//! |---|---|---|---|
//! | `CANCELED` | any | any | `Canceled` |
//! | `NONE_REQUESTED`, `IN_PROGRESS`, absent | `PENDING`, `FAILED` | any | `Pending` |
//! | 〃 | `PAID`, `PARTIALLY_REFUNDED`, `FULLY_REFUNDED` | `NOT_STARTED` | `Unshipped` |
//! | 〃 | 〃 | `IN_PROGRESS` | `PartiallyShipped` |
//! | 〃 | 〃 | `FULFILLED` | `Shipped` |
//!
//! Any other value of the three is malformed. The seller ships every eBay order
//! (eBay's own programmes route the seller's parcel), so `fulfillment` is `Mfn`.
//!
//! The customer: name from `shipTo.fullName`, else `buyerRegistrationAddress.fullName`;
//! postcode, city and country from `shipTo.contactAddress`, else the registration
//! address; e-mail from `buyerRegistrationAddress.email` (else `shipTo.email`) only when
//! it is a plausible address outside eBay's own domains ([`real_email`]): eBay hides
//! buyers behind `…@members.ebay.com` relays, and answers `Invalid Request` where it
//! withholds one. This module never logs anything, and never keeps the full street address.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::model::{
    Customer, Fulfillment, ItemDetails, Money, Order, OrderDetails, OrderItem, OrderStatus,
    SalesChannel, ShippingArea, parse_cents,
};

/// One page of getOrders. Orders stay raw JSON until mapped one by one, so one broken
/// order does not lose the page.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSearchPagedCollection {
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub offset: Option<i64>,
    #[serde(default)]
    pub orders: Vec<serde_json::Value>,
    #[serde(default)]
    pub total: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAmount {
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireOrder {
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub creation_date: Option<String>,
    #[serde(default)]
    pub last_modified_date: Option<String>,
    #[serde(default)]
    pub order_fulfillment_status: Option<String>,
    #[serde(default)]
    pub order_payment_status: Option<String>,
    #[serde(default)]
    pub cancel_status: Option<WireCancelStatus>,
    #[serde(default)]
    pub pricing_summary: Option<WirePricingSummary>,
    #[serde(default)]
    pub buyer: Option<WireBuyer>,
    #[serde(default)]
    pub fulfillment_start_instructions: Vec<WireFulfillmentStart>,
    #[serde(default)]
    pub line_items: Vec<WireLineItem>,
    #[serde(default)]
    pub fulfillment_hrefs: Vec<String>,
    #[serde(default)]
    pub sales_record_reference: Option<String>,
    #[serde(default)]
    pub payment_summary: Option<WirePaymentSummary>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireCancelStatus {
    #[serde(default)]
    pub cancel_state: Option<String>,
    #[serde(default)]
    pub cancel_requests: Vec<WireCancelRequest>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireCancelRequest {
    #[serde(default)]
    pub cancel_initiator: Option<String>,
    #[serde(default)]
    pub cancel_reason: Option<String>,
    #[serde(default)]
    pub cancel_request_state: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WirePricingSummary {
    #[serde(default)]
    pub total: Option<WireAmount>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireBuyer {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub buyer_registration_address: Option<WireContact>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireContact {
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub contact_address: Option<WireAddress>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAddress {
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub state_or_province: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
    #[serde(default)]
    pub country_code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireFulfillmentStart {
    #[serde(default)]
    pub fulfillment_instructions_type: Option<String>,
    #[serde(default)]
    pub min_estimated_delivery_date: Option<String>,
    #[serde(default)]
    pub max_estimated_delivery_date: Option<String>,
    #[serde(default)]
    pub shipping_step: Option<WireShippingStep>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireShippingStep {
    #[serde(default)]
    pub shipping_service_code: Option<String>,
    #[serde(default)]
    pub ship_to: Option<WireContact>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireLineItem {
    #[serde(default)]
    pub line_item_id: Option<String>,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub quantity: Option<i64>,
    #[serde(default)]
    pub line_item_cost: Option<WireAmount>,
    #[serde(default)]
    pub line_item_fulfillment_status: Option<String>,
    #[serde(default)]
    pub line_item_fulfillment_instructions: Option<WireLineItemInstructions>,
    #[serde(default)]
    pub delivery_cost: Option<WireDeliveryCost>,
    #[serde(default)]
    pub taxes: Vec<WireTax>,
    #[serde(default)]
    pub purchase_marketplace_id: Option<String>,
    #[serde(default)]
    pub listing_marketplace_id: Option<String>,
    /// Refunds issued for this line alone (issueRefund with `refundItems`).
    #[serde(default)]
    pub refunds: Vec<WireLineItemRefund>,
}

/// `lineItems[].refunds[]` (the contract's `LineItemRefund`): no status; `refundDate`
/// appears once the refund was issued.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireLineItemRefund {
    #[serde(default)]
    pub refund_id: Option<String>,
    #[serde(default)]
    pub amount: Option<WireAmount>,
    #[serde(default)]
    pub refund_date: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireLineItemInstructions {
    #[serde(default)]
    pub ship_by_date: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireDeliveryCost {
    #[serde(default)]
    pub shipping_cost: Option<WireAmount>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireTax {
    #[serde(default)]
    pub amount: Option<WireAmount>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WirePaymentSummary {
    #[serde(default)]
    pub payments: Vec<WirePayment>,
    #[serde(default)]
    pub refunds: Vec<WireRefund>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WirePayment {
    #[serde(default)]
    pub payment_method: Option<String>,
}

/// `paymentSummary.refunds[]` (the contract's `OrderRefund`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireRefund {
    #[serde(default)]
    pub refund_id: Option<String>,
    #[serde(default)]
    pub refund_status: Option<String>,
    #[serde(default)]
    pub amount: Option<WireAmount>,
    #[serde(default)]
    pub refund_date: Option<String>,
}

/// The order id of a raw order, for naming one that cannot be read.
pub fn id_of(raw: &serde_json::Value) -> String {
    raw.get("orderId")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("(no orderId)")
        .to_owned()
}

/// The domain status for the three eBay states (the table in the module docs).
pub fn status_of(
    fulfillment: &str,
    payment: &str,
    cancel_state: Option<&str>,
) -> Result<OrderStatus, String> {
    match cancel_state {
        Some("CANCELED") => return Ok(OrderStatus::Canceled),
        None | Some("NONE_REQUESTED" | "IN_PROGRESS") => {}
        Some(other) => return Err(format!("unknown cancelState {other:?}")),
    }
    let shipping = match fulfillment {
        "NOT_STARTED" => OrderStatus::Unshipped,
        "IN_PROGRESS" => OrderStatus::PartiallyShipped,
        "FULFILLED" => OrderStatus::Shipped,
        other => return Err(format!("unknown orderFulfillmentStatus {other:?}")),
    };
    match payment {
        "PENDING" | "FAILED" => Ok(OrderStatus::Pending),
        "PAID" | "PARTIALLY_REFUNDED" | "FULLY_REFUNDED" => Ok(shipping),
        other => Err(format!("unknown orderPaymentStatus {other:?}")),
    }
}

/// `text` when it is a plausible mailbox outside eBay's own domains (eBay's relay and
/// masked addresses, `Invalid Request` placeholders are not).
pub fn real_email(text: &str) -> Option<String> {
    let text = text.trim();
    let (local, domain) = text.rsplit_once('@')?;
    let domain = domain.to_ascii_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    let plausible = !local.is_empty()
        && !local.contains('@')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        && labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let relay = labels.contains(&"ebay");
    (plausible && !relay).then(|| format!("{local}@{domain}"))
}

fn text(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn time(value: &Option<String>, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    match value.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|at| Some(at.with_timezone(&Utc)))
            .map_err(|e| format!("{field} {t:?} is not an ISO 8601 time: {e}")),
    }
}

fn required_time(value: &Option<String>, field: &str) -> Result<DateTime<Utc>, String> {
    time(value, field)?.ok_or_else(|| format!("{field} is missing"))
}

/// An amount as eBay states it: a 3-letter currency and a decimal value, not negative.
pub fn money(amount: &WireAmount, field: &str) -> Result<Money, String> {
    let currency = text(&amount.currency).unwrap_or_default();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "{field}.currency {currency:?} is not an ISO 4217 code"
        ));
    }
    let value = text(&amount.value).unwrap_or_default();
    if parse_cents(&value).is_none() {
        return Err(format!("{field}.value {value:?} is not an amount"));
    }
    Ok(Money {
        currency,
        amount: value,
    })
}

fn optional_money(amount: &Option<WireAmount>, field: &str) -> Result<Option<Money>, String> {
    amount.as_ref().map(|a| money(a, field)).transpose()
}

impl WireOrder {
    /// The order as the domain knows it, items included (getOrders returns them inline).
    pub fn into_order(self, account: &str) -> Result<Order, String> {
        let id = text(&self.order_id).ok_or("orderId is missing")?;
        let purchase_date = required_time(&self.creation_date, "creationDate")?;
        let last_update = required_time(&self.last_modified_date, "lastModifiedDate")?;
        let fulfillment =
            text(&self.order_fulfillment_status).ok_or("orderFulfillmentStatus is missing")?;
        let payment = text(&self.order_payment_status).ok_or("orderPaymentStatus is missing")?;
        let cancel_state = self
            .cancel_status
            .as_ref()
            .and_then(|c| text(&c.cancel_state));
        let status = status_of(&fulfillment, &payment, cancel_state.as_deref())?;
        let total = optional_money(
            &self.pricing_summary.as_ref().and_then(|p| p.total.clone()),
            "pricingSummary.total",
        )?;

        // A buyer's cancellation request (getOrder lists them; getOrders never does).
        let buyer_cancel = match (&cancel_state, &self.cancel_status) {
            (Some(state), Some(cancel)) if state == "IN_PROGRESS" => cancel
                .cancel_requests
                .iter()
                .find(|r| {
                    r.cancel_initiator
                        .as_deref()
                        .is_some_and(|i| i.eq_ignore_ascii_case("buyer"))
                })
                .map(|r| text(&r.cancel_reason)),
            _ => None,
        };

        if self.line_items.is_empty() {
            return Err("lineItems is empty".to_owned());
        }
        let mut items = Vec::with_capacity(self.line_items.len());
        let mut latest_ship: Option<DateTime<Utc>> = None;
        for (index, line) in self.line_items.iter().enumerate() {
            let field = |name: &str| format!("lineItems[{index}].{name}");
            let item_id = text(&line.line_item_id)
                .ok_or_else(|| format!("{} is missing", field("lineItemId")))?;
            let quantity = line
                .quantity
                .filter(|q| *q >= 0)
                .ok_or_else(|| format!("{} is missing or negative", field("quantity")))?;
            let price = optional_money(&line.line_item_cost, &field("lineItemCost"))?;
            let tax = sum(&line.taxes, &field("taxes"))?;
            let shipping_price = optional_money(
                &line
                    .delivery_cost
                    .as_ref()
                    .and_then(|d| d.shipping_cost.clone()),
                &field("deliveryCost.shippingCost"),
            )?;
            let ship_by = time(
                &line
                    .line_item_fulfillment_instructions
                    .as_ref()
                    .and_then(|i| i.ship_by_date.clone()),
                &field("lineItemFulfillmentInstructions.shipByDate"),
            )?;
            latest_ship = match (latest_ship, ship_by) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let shipped = match line.line_item_fulfillment_status.as_deref() {
                Some("FULFILLED") => quantity,
                _ => 0,
            };
            items.push(OrderItem {
                id: item_id,
                asin: None,
                sku: text(&line.sku),
                title: text(&line.title),
                quantity_ordered: quantity,
                quantity_shipped: shipped,
                price,
                tax,
                buyer_requested_cancel: buyer_cancel.is_some(),
                buyer_cancel_reason: buyer_cancel.clone().flatten(),
                details: ItemDetails {
                    shipping_price,
                    ..ItemDetails::default()
                },
            });
        }
        let marketplace_id = self.line_items.first().and_then(|l| {
            text(&l.purchase_marketplace_id).or_else(|| text(&l.listing_marketplace_id))
        });

        let start = self.fulfillment_start_instructions.first();
        let earliest_delivery = time(
            &start.and_then(|s| s.min_estimated_delivery_date.clone()),
            "fulfillmentStartInstructions[0].minEstimatedDeliveryDate",
        )?;
        let latest_delivery = time(
            &start.and_then(|s| s.max_estimated_delivery_date.clone()),
            "fulfillmentStartInstructions[0].maxEstimatedDeliveryDate",
        )?;
        let shipping_step = start.and_then(|s| s.shipping_step.as_ref());
        let ship_to = shipping_step.and_then(|s| s.ship_to.as_ref());
        let registration = self
            .buyer
            .as_ref()
            .and_then(|b| b.buyer_registration_address.as_ref());
        let address = ship_to
            .and_then(|c| c.contact_address.as_ref())
            .or_else(|| registration.and_then(|c| c.contact_address.as_ref()));
        let customer = Customer {
            email: registration
                .and_then(|c| c.email.as_deref())
                .and_then(real_email)
                .or_else(|| {
                    ship_to
                        .and_then(|c| c.email.as_deref())
                        .and_then(real_email)
                }),
            name: ship_to
                .and_then(|c| text(&c.full_name))
                .or_else(|| registration.and_then(|c| text(&c.full_name))),
            postcode: address.and_then(|a| text(&a.postal_code)),
            city: address.and_then(|a| text(&a.city)),
            country: address
                .and_then(|a| text(&a.country_code))
                .map(|c| c.to_ascii_uppercase()),
        };
        let shipped: i64 = items.iter().map(|i| i.quantity_shipped).sum();
        let ordered: i64 = items.iter().map(|i| i.quantity_ordered).sum();
        let details = OrderDetails {
            seller_order_id: text(&self.sales_record_reference),
            sales_channel: marketplace_id.clone(),
            ship_service_level: shipping_step.and_then(|s| text(&s.shipping_service_code)),
            payment_method: self
                .payment_summary
                .as_ref()
                .and_then(|p| p.payments.first())
                .and_then(|p| text(&p.payment_method)),
            number_of_items_shipped: Some(shipped),
            number_of_items_unshipped: Some((ordered - shipped).max(0)),
            ship_to: address.map(|a| ShippingArea {
                city: text(&a.city),
                state_or_region: text(&a.state_or_province),
                postal_code: text(&a.postal_code),
                country_code: text(&a.country_code),
            }),
            ..OrderDetails::default()
        };
        Ok(Order {
            channel: SalesChannel::Ebay,
            account: account.to_owned(),
            id,
            marketplace_id,
            status,
            fulfillment: Some(Fulfillment::Mfn),
            purchase_date,
            last_update,
            earliest_ship_date: None,
            latest_ship_date: latest_ship,
            earliest_delivery_date: earliest_delivery,
            latest_delivery_date: latest_delivery,
            total,
            order_type: start.and_then(|s| text(&s.fulfillment_instructions_type)),
            is_prime: false,
            is_business: false,
            items,
            details,
            customer,
        })
    }
}

/// The sum of a line item's taxes (`None` when there are none).
fn sum(taxes: &[WireTax], field: &str) -> Result<Option<Money>, String> {
    let mut total: Option<(String, i64)> = None;
    for (index, tax) in taxes.iter().enumerate() {
        let Some(amount) = &tax.amount else {
            continue;
        };
        let m = money(amount, &format!("{field}[{index}].amount"))?;
        let cents = parse_cents(&m.amount).unwrap_or_default();
        total = match total {
            None => Some((m.currency, cents)),
            Some((currency, sum)) if currency == m.currency => Some((currency, sum + cents)),
            Some(_) => return Err(format!("{field} mixes currencies")),
        };
    }
    Ok(total.map(|(currency, cents)| Money {
        currency,
        amount: crate::model::format_cents(cents),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_status_table() {
        let cases = [
            (
                "NOT_STARTED",
                "PAID",
                Some("NONE_REQUESTED"),
                OrderStatus::Unshipped,
            ),
            ("IN_PROGRESS", "PAID", None, OrderStatus::PartiallyShipped),
            (
                "FULFILLED",
                "PAID",
                Some("NONE_REQUESTED"),
                OrderStatus::Shipped,
            ),
            (
                "FULFILLED",
                "PARTIALLY_REFUNDED",
                None,
                OrderStatus::Shipped,
            ),
            (
                "NOT_STARTED",
                "FULLY_REFUNDED",
                None,
                OrderStatus::Unshipped,
            ),
            ("NOT_STARTED", "PENDING", None, OrderStatus::Pending),
            (
                "NOT_STARTED",
                "FAILED",
                Some("IN_PROGRESS"),
                OrderStatus::Pending,
            ),
            (
                "NOT_STARTED",
                "PAID",
                Some("IN_PROGRESS"),
                OrderStatus::Unshipped,
            ),
            (
                "NOT_STARTED",
                "PAID",
                Some("CANCELED"),
                OrderStatus::Canceled,
            ),
            (
                "NOT_STARTED",
                "PENDING",
                Some("CANCELED"),
                OrderStatus::Canceled,
            ),
        ];
        for (fulfillment, payment, cancel, expected) in cases {
            assert_eq!(
                status_of(fulfillment, payment, cancel),
                Ok(expected),
                "{fulfillment} {payment} {cancel:?}"
            );
        }
        assert!(status_of("SHIPPED", "PAID", None).is_err());
        assert!(status_of("FULFILLED", "UNPAID", None).is_err());
        assert!(status_of("FULFILLED", "PAID", Some("MAYBE")).is_err());
    }

    #[test]
    fn only_real_looking_addresses_are_kept() {
        assert_eq!(
            real_email(" karen.miller@Example.COM "),
            Some("karen.miller@example.com".to_owned())
        );
        assert_eq!(real_email("1a2b3c4d5e@members.ebay.com"), None);
        assert_eq!(real_email("buyer@ebay.de"), None);
        assert_eq!(real_email("Invalid Request"), None);
        assert_eq!(real_email("a@b"), None);
        assert_eq!(real_email("a b@example.com"), None);
        assert_eq!(real_email("@example.com"), None);
    }

    fn order(extra: serde_json::Value) -> serde_json::Value {
        let mut base = json!({
            "orderId": "12-12345-12345",
            "creationDate": "2026-11-20T10:00:00.000Z",
            "lastModifiedDate": "2026-11-21T10:00:00.000Z",
            "orderFulfillmentStatus": "NOT_STARTED",
            "orderPaymentStatus": "PAID",
            "cancelStatus": {"cancelState": "NONE_REQUESTED", "cancelRequests": []},
            "pricingSummary": {"total": {"value": "25.98", "currency": "USD"}},
            "buyer": {"username": "karen_m", "buyerRegistrationAddress": {
                "fullName": "Karen Miller", "email": "karen@example.com"}},
            "fulfillmentStartInstructions": [{"shippingStep": {"shipTo": {
                "fullName": "Karen Miller",
                "contactAddress": {"city": "Portland", "postalCode": "97209", "countryCode": "us"}}}}],
            "lineItems": [{"lineItemId": "10001", "sku": "MUG-1", "title": "Mug", "quantity": 2,
                "lineItemCost": {"value": "25.98", "currency": "USD"},
                "lineItemFulfillmentStatus": "NOT_STARTED",
                "taxes": [{"amount": {"value": "1.00", "currency": "USD"}},
                          {"amount": {"value": "0.50", "currency": "USD"}}]}]
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        base
    }

    fn map(raw: serde_json::Value) -> Result<Order, String> {
        serde_json::from_value::<WireOrder>(raw)
            .map_err(|e| e.to_string())?
            .into_order("main")
    }

    #[test]
    fn an_order_maps_field_by_field() {
        let mapped = map(order(json!({})));
        let Ok(o) = mapped else {
            panic!("map: {mapped:?}")
        };
        assert_eq!(o.id, "12-12345-12345");
        assert_eq!(o.status, OrderStatus::Unshipped);
        assert_eq!(o.total.as_ref().map(|m| m.amount.as_str()), Some("25.98"));
        assert_eq!(o.items.len(), 1);
        assert_eq!(o.items[0].quantity_ordered, 2);
        assert_eq!(
            o.items[0].tax.as_ref().map(|m| m.amount.as_str()),
            Some("1.50")
        );
        assert_eq!(o.customer.email.as_deref(), Some("karen@example.com"));
        assert_eq!(o.customer.name.as_deref(), Some("Karen Miller"));
        assert_eq!(o.customer.postcode.as_deref(), Some("97209"));
        assert_eq!(o.customer.country.as_deref(), Some("US"));
        assert_eq!(o.channel, SalesChannel::Ebay);
    }

    #[test]
    fn broken_orders_are_refused_with_a_reason() {
        for (extra, needle) in [
            (json!({"orderId": ""}), "orderId"),
            (json!({"creationDate": "yesterday"}), "creationDate"),
            (json!({"orderFulfillmentStatus": "SHIPPED"}), "SHIPPED"),
            (json!({"lineItems": []}), "lineItems"),
            (json!({"lineItems": [{"lineItemId": "1"}]}), "quantity"),
            (
                json!({"pricingSummary": {"total": {"value": "12,00", "currency": "USD"}}}),
                "pricingSummary.total",
            ),
        ] {
            let mapped = map(order(extra));
            assert!(
                mapped.as_ref().is_err_and(|e| e.contains(needle)),
                "{needle}: {mapped:?}"
            );
        }
    }
}
