//! Shopify orders on the wire and in the domain: the `orders` listing query and the
//! one-order query, the wire types field by field (Admin GraphQL `Order`, `LineItem`,
//! `Fulfillment`, `TrackingInfo`, `MoneyBag`), and their mapping into [`Order`].
//!
//! Status mapping (Shopify has no single order status; nightdesk's is Amazon's):
//!
//! | `cancelledAt` | `displayFulfillmentStatus` | `displayFinancialStatus` | [`OrderStatus`] |
//! |---|---|---|---|
//! | set | any | any | `Canceled` |
//! | — | `FULFILLED` | any | `Shipped` |
//! | — | `PARTIALLY_FULFILLED` | any | `PartiallyShipped` |
//! | — | `RESTOCKED` (every item taken back) | any | `Canceled` |
//! | — | anything else (`UNFULFILLED`, `OPEN`, `IN_PROGRESS`, `ON_HOLD`, `SCHEDULED`, `PENDING_FULFILLMENT`, `REQUEST_DECLINED`, later values) | `PAID`, `PARTIALLY_PAID`, `PARTIALLY_REFUNDED`, `REFUNDED`, `AUTHORIZED` | `Unshipped` |
//! | — | same | `PENDING`, `EXPIRED`, `VOIDED`, absent, later values | `Pending` |
//!
//! Every Shopify order is merchant-fulfilled here ([`Fulfillment::Mfn`]). A node that
//! breaks the contract is skipped with its reason, never a panic; personal data is read
//! into [`Customer`] only and never logged.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::model::{
    Customer, Fulfillment, Money, Order, OrderDetails, OrderItem, OrderStatus, SalesChannel,
    ShippingArea, parse_cents,
};
use crate::sources::PollWindow;

/// Line items read with each order; an order with more is completed by
/// [`ORDER_ITEMS_QUERY`].
pub const LINE_ITEMS_FIRST: u32 = 50;

/// The fields of an order nightdesk reads (shared by both queries).
macro_rules! order_fields {
    () => {
        "id name createdAt updatedAt cancelledAt cancelReason \
         displayFinancialStatus displayFulfillmentStatus email \
         totalPriceSet { shopMoney { amount currencyCode } } \
         customer { email firstName lastName } \
         shippingAddress { name zip city countryCodeV2 } \
         lineItems(first: 50) { pageInfo { hasNextPage endCursor } \
           nodes { id sku title quantity unfulfilledQuantity \
             originalUnitPriceSet { shopMoney { amount currencyCode } } } } \
         fulfillments(first: 20) { status trackingInfo(first: 10) { company number url } }"
    };
}

/// The listing: orders updated within a window, oldest update first, cursor paged.
pub const ORDERS_QUERY: &str = concat!(
    "query NightdeskOrders($first: Int!, $after: String, $query: String) { \
     orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) { \
     pageInfo { hasNextPage endCursor } nodes { ",
    order_fields!(),
    " } } }"
);

/// One order by its gid (cancellation checks, tracking on demand).
pub const ORDER_QUERY: &str = concat!(
    "query NightdeskOrder($id: ID!) { order(id: $id) { ",
    order_fields!(),
    " } }"
);

/// The line items of one order after the first page.
pub const ORDER_ITEMS_QUERY: &str = "query NightdeskOrderItems($id: ID!, $itemsAfter: String) { \
     order(id: $id) { id lineItems(first: 50, after: $itemsAfter) { \
     pageInfo { hasNextPage endCursor } \
     nodes { id sku title quantity unfulfilledQuantity \
     originalUnitPriceSet { shopMoney { amount currencyCode } } } } } }";

/// The `query` filter of a window (both bounds inclusive, as [`PollWindow`]).
pub fn window_filter(window: PollWindow) -> String {
    let iso = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    format!(
        "updated_at:>='{}' AND updated_at:<='{}'",
        iso(window.from),
        iso(window.to)
    )
}

/// A parcel of a Shopify order, from its fulfillments' tracking info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopifyParcel {
    /// `TrackingInfo.company` as the merchant typed or picked it (`UPS`, `DHL Express`).
    pub carrier: Option<String>,
    pub tracking_number: String,
    pub url: Option<String>,
    /// The fulfillment's `status` (`SUCCESS`, `CANCELLED`, `ERROR`, `FAILURE`, …).
    pub fulfillment_status: Option<String>,
}

/// What one order node gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedOrder {
    pub order: Order,
    pub parcels: Vec<ShopifyParcel>,
    /// The line items continue after this cursor.
    pub more_items_after: Option<String>,
    /// `cancelledAt` and `cancelReason` (`CUSTOMER`, `DECLINED`, `FRAUD`, `INVENTORY`,
    /// `OTHER`, `STAFF`), for the cancel action's check.
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Wire types.

#[derive(Debug, Deserialize)]
pub struct OrdersData {
    pub orders: Connection<Value>,
}

#[derive(Debug, Deserialize)]
pub struct OrderData {
    pub order: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct OrderItemsData {
    pub order: Option<OrderItemsNode>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemsNode {
    pub line_items: Connection<WireLineItem>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection<T> {
    pub page_info: PageInfo,
    pub nodes: Vec<T>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    pub has_next_page: bool,
    #[serde(default)]
    pub end_cursor: Option<String>,
}

impl PageInfo {
    /// The cursor of the next page; a next page without a cursor breaks the contract.
    pub fn next(&self) -> Result<Option<String>, String> {
        if !self.has_next_page {
            return Ok(None);
        }
        match self.end_cursor.as_deref().map(str::trim) {
            Some(c) if !c.is_empty() => Ok(Some(c.to_owned())),
            _ => Err("pageInfo.hasNextPage without an endCursor".to_owned()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOrder {
    id: String,
    name: String,
    created_at: String,
    updated_at: String,
    #[serde(default)]
    cancelled_at: Option<String>,
    #[serde(default)]
    cancel_reason: Option<String>,
    #[serde(default)]
    display_financial_status: Option<String>,
    display_fulfillment_status: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    total_price_set: Option<MoneyBag>,
    #[serde(default)]
    customer: Option<WireCustomer>,
    #[serde(default)]
    shipping_address: Option<WireAddress>,
    line_items: Connection<WireLineItem>,
    #[serde(default)]
    fulfillments: Option<Vec<WireFulfillment>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MoneyBag {
    shop_money: WireMoney,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMoney {
    amount: String,
    currency_code: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCustomer {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAddress {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    zip: Option<String>,
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    country_code_v2: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireLineItem {
    id: String,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    title: Option<String>,
    quantity: i64,
    #[serde(default)]
    unfulfilled_quantity: Option<i64>,
    #[serde(default)]
    original_unit_price_set: Option<MoneyBag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireFulfillment {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    tracking_info: Vec<WireTracking>,
}

#[derive(Debug, Deserialize)]
struct WireTracking {
    #[serde(default)]
    company: Option<String>,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Mapping.

/// The status table of the module docs.
pub fn map_status(cancelled: bool, financial: Option<&str>, fulfillment: &str) -> OrderStatus {
    if cancelled {
        return OrderStatus::Canceled;
    }
    match fulfillment {
        "FULFILLED" => OrderStatus::Shipped,
        "PARTIALLY_FULFILLED" => OrderStatus::PartiallyShipped,
        "RESTOCKED" => OrderStatus::Canceled,
        _ => match financial {
            Some("PAID" | "PARTIALLY_PAID" | "PARTIALLY_REFUNDED" | "REFUNDED" | "AUTHORIZED") => {
                OrderStatus::Unshipped
            }
            _ => OrderStatus::Pending,
        },
    }
}

fn text(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn time(field: &str, value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{field} {value:?} is not a date-time"))
}

fn money(field: &str, bag: MoneyBag) -> Result<Money, String> {
    let WireMoney {
        amount,
        currency_code,
    } = bag.shop_money;
    let amount = amount.trim().to_owned();
    if parse_cents(&amount).is_none() {
        return Err(format!("{field}.amount {amount:?} is not an amount"));
    }
    let currency_ok =
        currency_code.len() == 3 && currency_code.bytes().all(|b| b.is_ascii_uppercase());
    if !currency_ok {
        return Err(format!(
            "{field}.currencyCode {currency_code:?} is not a currency"
        ));
    }
    Ok(Money {
        currency: currency_code,
        amount,
    })
}

/// `gid://shopify/Order/123`: the kind and a numeric id.
fn check_gid(kind: &str, gid: &str) -> Result<(), String> {
    let ok = gid
        .strip_prefix("gid://shopify/")
        .and_then(|rest| rest.strip_prefix(kind))
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!("id {gid:?} is not a Shopify {kind} gid"))
    }
}

/// The order's name (`#1001`), or its gid, or `?`, for naming a node that breaks the
/// contract.
pub fn node_label(node: &Value) -> String {
    node.get("name")
        .and_then(Value::as_str)
        .or_else(|| node.get("id").and_then(Value::as_str))
        .unwrap_or("?")
        .to_owned()
}

/// Line items into order items.
pub fn into_items(items: Vec<WireLineItem>) -> Result<Vec<OrderItem>, String> {
    items.into_iter().map(into_item).collect()
}

fn into_item(item: WireLineItem) -> Result<OrderItem, String> {
    check_gid("LineItem", &item.id)?;
    let id = item.id;
    if item.quantity < 0 {
        return Err(format!(
            "line item {id}: quantity {} is negative",
            item.quantity
        ));
    }
    let unfulfilled = item.unfulfilled_quantity.unwrap_or(item.quantity);
    if !(0..=item.quantity).contains(&unfulfilled) {
        return Err(format!(
            "line item {id}: unfulfilledQuantity {unfulfilled} outside 0..={}",
            item.quantity
        ));
    }
    let price = item
        .original_unit_price_set
        .map(|bag| money("originalUnitPriceSet", bag))
        .transpose()
        .map_err(|e| format!("line item {id}: {e}"))?;
    Ok(OrderItem {
        asin: None,
        sku: text(item.sku),
        title: text(item.title),
        quantity_ordered: item.quantity,
        quantity_shipped: item.quantity - unfulfilled,
        price,
        tax: None,
        buyer_requested_cancel: false,
        buyer_cancel_reason: None,
        details: Default::default(),
        id,
    })
}

/// One order node into the domain; `Err` names what breaks the contract.
pub fn parse_order(node: Value, account: &str, shop: &str) -> Result<ParsedOrder, String> {
    let wire: WireOrder = serde_json::from_value(node).map_err(|e| e.to_string())?;
    check_gid("Order", &wire.id)?;
    let name = text(Some(wire.name)).ok_or_else(|| "name is empty".to_owned())?;
    let purchase_date = time("createdAt", &wire.created_at)?;
    let last_update = time("updatedAt", &wire.updated_at)?;
    let cancelled_at = text(wire.cancelled_at)
        .map(|t| time("cancelledAt", &t))
        .transpose()?;
    let total = wire
        .total_price_set
        .map(|bag| money("totalPriceSet", bag))
        .transpose()?;
    let more_items_after = wire.line_items.page_info.next()?;
    let items = into_items(wire.line_items.nodes)?;
    let status = map_status(
        cancelled_at.is_some(),
        wire.display_financial_status.as_deref(),
        wire.display_fulfillment_status.trim(),
    );

    let address = wire.shipping_address;
    let (ship_name, zip, city, country) = match address {
        Some(a) => (
            text(a.name),
            text(a.zip),
            text(a.city),
            text(a.country_code_v2).map(|c| c.to_ascii_uppercase()),
        ),
        None => (None, None, None, None),
    };
    let (customer_email, customer_name) = match wire.customer {
        Some(c) => {
            let name = [text(c.first_name), text(c.last_name)]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            (text(c.email), Some(name).filter(|n| !n.is_empty()))
        }
        None => (None, None),
    };
    let email = customer_email
        .or(text(wire.email))
        .filter(|e| e.contains('@'));
    let customer = Customer {
        email,
        name: customer_name.or(ship_name),
        postcode: zip.clone(),
        city: city.clone(),
        country: country.clone(),
    };

    let mut parcels = Vec::new();
    for fulfillment in wire.fulfillments.unwrap_or_default() {
        let status = text(fulfillment.status);
        for info in fulfillment.tracking_info {
            let Some(number) = text(info.number) else {
                continue;
            };
            parcels.push(ShopifyParcel {
                carrier: text(info.company),
                tracking_number: number,
                url: text(info.url),
                fulfillment_status: status.clone(),
            });
        }
    }

    let shipped: i64 = items.iter().map(|i| i.quantity_shipped).sum();
    let ordered: i64 = items.iter().map(|i| i.quantity_ordered).sum();
    let details = OrderDetails {
        seller_order_id: Some(wire.id),
        sales_channel: Some(format!("{shop}.myshopify.com")),
        number_of_items_shipped: Some(shipped),
        number_of_items_unshipped: Some(ordered - shipped),
        ship_to: (zip.is_some() || city.is_some() || country.is_some()).then_some(ShippingArea {
            city,
            state_or_region: None,
            postal_code: zip,
            country_code: country,
        }),
        ..OrderDetails::default()
    };
    Ok(ParsedOrder {
        order: Order {
            channel: SalesChannel::Shopify,
            account: account.to_owned(),
            id: name,
            marketplace_id: None,
            status,
            fulfillment: Some(Fulfillment::Mfn),
            purchase_date,
            last_update,
            earliest_ship_date: None,
            latest_ship_date: None,
            earliest_delivery_date: None,
            latest_delivery_date: None,
            total,
            order_type: None,
            is_prime: false,
            is_business: false,
            items,
            details,
            customer,
        },
        parcels,
        more_items_after,
        cancelled_at,
        cancel_reason: text(wire.cancel_reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Value {
        json!({
            "id": "gid://shopify/Order/5001",
            "name": "#10482",
            "createdAt": "2026-11-18T09:00:00Z",
            "updatedAt": "2026-11-19T10:30:00Z",
            "cancelledAt": null,
            "cancelReason": null,
            "displayFinancialStatus": "PAID",
            "displayFulfillmentStatus": "FULFILLED",
            "email": "elodie.fournier@example.fr",
            "totalPriceSet": {"shopMoney": {"amount": "42.50", "currencyCode": "EUR"}},
            "customer": {"email": "elodie.fournier@example.fr", "firstName": "Élodie", "lastName": "Fournier"},
            "shippingAddress": {"name": "Élodie Fournier", "zip": "69002", "city": "Lyon", "countryCodeV2": "FR"},
            "lineItems": {"pageInfo": {"hasNextPage": false, "endCursor": null}, "nodes": [
                {"id": "gid://shopify/LineItem/77", "sku": "RC-ESP-1KG", "title": "Espresso 1 kg",
                 "quantity": 2, "unfulfilledQuantity": 0,
                 "originalUnitPriceSet": {"shopMoney": {"amount": "21.25", "currencyCode": "EUR"}}}
            ]},
            "fulfillments": [{"status": "SUCCESS", "trackingInfo": [
                {"company": "DHL Express", "number": "1234567890", "url": "https://www.dhl.com/track?n=1234567890"}
            ]}]
        })
    }

    #[test]
    fn status_table() {
        use OrderStatus::*;
        let cases = [
            (true, Some("PAID"), "FULFILLED", Canceled),
            (true, Some("PENDING"), "UNFULFILLED", Canceled),
            (false, Some("PAID"), "FULFILLED", Shipped),
            (
                false,
                Some("PARTIALLY_REFUNDED"),
                "PARTIALLY_FULFILLED",
                PartiallyShipped,
            ),
            (false, Some("PAID"), "RESTOCKED", Canceled),
            (false, Some("PAID"), "UNFULFILLED", Unshipped),
            (false, Some("AUTHORIZED"), "UNFULFILLED", Unshipped),
            (false, Some("PARTIALLY_PAID"), "ON_HOLD", Unshipped),
            (false, Some("REFUNDED"), "UNFULFILLED", Unshipped),
            (false, Some("PENDING"), "UNFULFILLED", Pending),
            (false, Some("EXPIRED"), "UNFULFILLED", Pending),
            (false, Some("VOIDED"), "UNFULFILLED", Pending),
            (false, None, "UNFULFILLED", Pending),
            (false, Some("SOMETHING_NEW"), "SOMETHING_NEW", Pending),
        ];
        for (cancelled, financial, fulfillment, want) in cases {
            assert_eq!(
                map_status(cancelled, financial, fulfillment),
                want,
                "{cancelled} {financial:?} {fulfillment}"
            );
        }
    }

    #[test]
    fn an_order_maps_with_customer_gid_and_parcels() -> Result<(), String> {
        let parsed = parse_order(node(), "ridgeline", "ridgeline-coffee")?;
        let order = &parsed.order;
        assert_eq!(order.id, "#10482");
        assert_eq!(order.channel, SalesChannel::Shopify);
        assert_eq!(order.status, OrderStatus::Shipped);
        assert_eq!(order.fulfillment, Some(Fulfillment::Mfn));
        assert_eq!(
            order.details.seller_order_id.as_deref(),
            Some("gid://shopify/Order/5001")
        );
        assert_eq!(
            order.total.as_ref().map(|m| m.amount.as_str()),
            Some("42.50")
        );
        assert_eq!(order.items.len(), 1);
        assert_eq!(order.items[0].quantity_shipped, 2);
        assert_eq!(
            order.customer,
            Customer {
                email: Some("elodie.fournier@example.fr".into()),
                name: Some("Élodie Fournier".into()),
                postcode: Some("69002".into()),
                city: Some("Lyon".into()),
                country: Some("FR".into()),
            }
        );
        assert_eq!(parsed.parcels.len(), 1);
        assert_eq!(parsed.parcels[0].tracking_number, "1234567890");
        assert_eq!(parsed.parcels[0].carrier.as_deref(), Some("DHL Express"));
        assert_eq!(parsed.more_items_after, None);
        Ok(())
    }

    #[test]
    fn contract_breaks_are_errors_not_panics() {
        let broken = |field: &str, value: Value| {
            let mut n = node();
            n[field] = value;
            parse_order(n, "a", "s")
        };
        assert!(broken("createdAt", json!("yesterday")).is_err());
        assert!(broken("id", json!("5001")).is_err());
        assert!(broken("name", json!("  ")).is_err());
        assert!(
            broken(
                "totalPriceSet",
                json!({"shopMoney": {"amount": "-1", "currencyCode": "EUR"}})
            )
            .is_err()
        );
        assert!(
            broken(
                "lineItems",
                json!({"pageInfo": {"hasNextPage": true}, "nodes": []})
            )
            .is_err()
        );
        assert!(broken("displayFulfillmentStatus", json!(null)).is_err());
        let mut n = node();
        n["lineItems"]["nodes"][0]["unfulfilledQuantity"] = json!(5);
        assert!(parse_order(n, "a", "s").is_err());
    }

    #[test]
    fn the_order_email_stands_in_for_a_missing_customer() -> Result<(), String> {
        let mut n = node();
        n["customer"] = Value::Null;
        let parsed = parse_order(n, "a", "s")?;
        assert_eq!(
            parsed.order.customer.email.as_deref(),
            Some("elodie.fournier@example.fr")
        );
        assert_eq!(
            parsed.order.customer.name.as_deref(),
            Some("Élodie Fournier")
        );
        Ok(())
    }

    #[test]
    fn the_window_filter_names_both_bounds() {
        let from = DateTime::parse_from_rfc3339("2026-11-15T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let to = from + chrono::Duration::hours(1);
        assert_eq!(
            window_filter(PollWindow { from, to }),
            "updated_at:>='2026-11-15T12:00:00Z' AND updated_at:<='2026-11-15T13:00:00Z'"
        );
    }
}
