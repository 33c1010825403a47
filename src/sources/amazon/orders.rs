//! Orders v0 as published (`specs/amazon/ordersV0.json`): the wire types of getOrders,
//! getOrder and getOrderItems, and their mapping into the domain model.
//!
//! Fields are read as sent and checked while mapping, so a bad value names its order
//! (and item) and field instead of failing a whole page: it skips that order, or fails
//! that order's getOrderItems call. A missing required field or an unknown status is
//! such an error too, never a panic. Unknown fields are ignored (Amazon adds fields),
//! and values of closed sets that nightdesk only shows are kept as sent. Booleans are
//! taken as JSON booleans or as "true"/"false" strings, which is how the contract types
//! `IsGift` and `IsBuyerRequestedCancel`.
//!
//! Polling must never hold personal data: the wire `Order` has no field for `BuyerInfo`,
//! and of a `ShippingAddress` only city, region, postal code and country survive
//! parsing, whatever the response carries. Personal data is [`super::restricted`]'s.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::http::UpstreamError;
use crate::model::{
    ItemDetails, Money, Order, OrderDetails, OrderItem, PointsGranted, SalesChannel, ShippingArea,
    ShippingConstraints, SubstitutionOption, TaxCollection, UnknownValue,
};

/// A field as sent; checked when mapped.
pub type Field = Option<Value>;

/// `GetOrdersResponse`.
#[derive(Debug, Deserialize)]
pub struct GetOrdersResponse {
    pub payload: Option<OrdersList>,
    #[serde(default)]
    pub errors: Vec<ApiError>,
}

/// `GetOrderResponse`.
#[derive(Debug, Deserialize)]
pub struct GetOrderResponse {
    pub payload: Option<WireOrder>,
    #[serde(default)]
    pub errors: Vec<ApiError>,
}

/// `OrdersList`.
#[derive(Debug, Deserialize)]
pub struct OrdersList {
    #[serde(rename = "Orders")]
    pub orders: Vec<WireOrder>,
    #[serde(rename = "NextToken")]
    pub next_token: Option<String>,
}

/// `Order`: the fields nightdesk keeps, as sent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireOrder {
    pub amazon_order_id: String,
    pub purchase_date: Field,
    pub last_update_date: Field,
    pub order_status: Field,
    pub fulfillment_channel: Field,
    pub marketplace_id: Field,
    pub order_total: Field,
    pub order_type: Field,
    pub earliest_ship_date: Field,
    pub latest_ship_date: Field,
    pub earliest_delivery_date: Field,
    pub latest_delivery_date: Field,
    pub is_prime: Field,
    pub is_business_order: Field,
    pub seller_order_id: Field,
    pub sales_channel: Field,
    pub order_channel: Field,
    pub ship_service_level: Field,
    pub shipment_service_level_category: Field,
    pub payment_method: Field,
    pub payment_method_details: Field,
    pub number_of_items_shipped: Field,
    pub number_of_items_unshipped: Field,
    pub is_premium_order: Field,
    pub is_replacement_order: Field,
    pub replaced_order_id: Field,
    pub is_global_express_enabled: Field,
    #[serde(rename = "IsSoldByAB")]
    pub is_sold_by_ab: Field,
    #[serde(rename = "IsIBA")]
    pub is_iba: Field,
    #[serde(rename = "IsISPU")]
    pub is_ispu: Field,
    pub is_access_point_order: Field,
    pub has_regulated_items: Field,
    pub is_estimated_ship_date_set: Field,
    pub easy_ship_shipment_status: Field,
    pub electronic_invoice_status: Field,
    pub promise_response_due_date: Field,
    pub fulfillment_instruction: Field,
    pub buyer_invoice_preference: Field,
    /// Only [`AREA_KEYS`] are kept: the personal keys are dropped while parsing.
    #[serde(default, deserialize_with = "non_personal_area")]
    pub shipping_address: Field,
}

/// The keys of an `Address` that getOrders returns without a Restricted Data Token.
pub const AREA_KEYS: [&str; 4] = ["City", "StateOrRegion", "PostalCode", "CountryCode"];

/// Drops every personal key of an address while it is parsed, so the name, street and
/// phone never reach a `WireOrder` (its `Debug`, an error) even when Amazon sends them.
fn non_personal_area<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Field, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    Ok(value.map(|value| match value {
        Value::Object(mut map) => {
            map.retain(|key, _| AREA_KEYS.contains(&key.as_str()));
            Value::Object(map)
        }
        // Kept only to be refused as "not an object"; its text is never quoted.
        other => other,
    }))
}

/// `GetOrderItemsResponse`.
#[derive(Debug, Deserialize)]
pub struct GetOrderItemsResponse {
    pub payload: Option<OrderItemsList>,
    #[serde(default)]
    pub errors: Vec<ApiError>,
}

/// `OrderItemsList`, its items checked while it is parsed: a bad value fails the
/// getOrderItems call with an error naming the order, the item and the field.
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawOrderItemsList")]
pub struct OrderItemsList {
    pub order_items: Vec<WireOrderItem>,
    pub next_token: Option<String>,
    pub amazon_order_id: Option<String>,
}

/// `OrderItemsList` as sent.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawOrderItemsList {
    order_items: Vec<RawOrderItem>,
    next_token: Option<String>,
    amazon_order_id: Option<String>,
}

impl TryFrom<RawOrderItemsList> for OrderItemsList {
    type Error = String;

    fn try_from(raw: RawOrderItemsList) -> Result<Self, Self::Error> {
        let order = raw.amazon_order_id.as_deref().unwrap_or("(not named)");
        let order_items = raw
            .order_items
            .into_iter()
            .map(|item| item.into_item(order).map(|item| WireOrderItem { item }))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| match error {
                UpstreamError::Malformed { what, reason } => format!("{what}: {reason}"),
                other => other.to_string(),
            })?;
        Ok(OrderItemsList {
            order_items,
            next_token: raw.next_token,
            amazon_order_id: raw.amazon_order_id,
        })
    }
}

/// An `OrderItem` of a getOrderItems page, already checked (see [`OrderItemsList`]).
#[derive(Debug)]
pub struct WireOrderItem {
    item: OrderItem,
}

impl WireOrderItem {
    pub fn into_item(self) -> OrderItem {
        self.item
    }
}

/// `OrderItem`: the fields nightdesk keeps, as sent. Its `BuyerInfo` (gift messages,
/// customisations) is restricted data and is not read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RawOrderItem {
    #[serde(rename = "ASIN")]
    pub asin: Field,
    #[serde(rename = "SellerSKU")]
    pub seller_sku: Field,
    pub order_item_id: Field,
    pub title: Field,
    pub quantity_ordered: Field,
    pub quantity_shipped: Field,
    pub product_info: Field,
    pub points_granted: Field,
    pub item_price: Field,
    pub shipping_price: Field,
    pub item_tax: Field,
    pub shipping_tax: Field,
    pub shipping_discount: Field,
    pub shipping_discount_tax: Field,
    pub promotion_discount: Field,
    pub promotion_discount_tax: Field,
    pub promotion_ids: Field,
    #[serde(rename = "CODFee")]
    pub cod_fee: Field,
    #[serde(rename = "CODFeeDiscount")]
    pub cod_fee_discount: Field,
    pub is_gift: Field,
    pub condition_note: Field,
    pub condition_id: Field,
    pub condition_subtype_id: Field,
    pub scheduled_delivery_start_date: Field,
    pub scheduled_delivery_end_date: Field,
    pub price_designation: Field,
    pub tax_collection: Field,
    pub serial_number_required: Field,
    pub is_transparency: Field,
    pub ioss_number: Field,
    pub store_chain_store_id: Field,
    pub deemed_reseller_category: Field,
    pub buyer_requested_cancel: Field,
    pub serial_numbers: Field,
    pub substitution_preferences: Field,
    pub shipping_constraints: Field,
    pub amazon_programs: Field,
}

/// `Error`.
#[derive(Debug, Deserialize)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: Option<String>,
}

/// `ErrorList` as sent with an error status (`{"errors": [...]}`).
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub errors: Vec<ApiError>,
}

/// `code: message (details)` for each error, for logs and the audit.
pub fn describe(errors: &[ApiError]) -> String {
    errors
        .iter()
        .map(|e| match &e.details {
            Some(d) if !d.is_empty() => format!("{}: {} ({})", e.code, e.message, d),
            _ => format!("{}: {}", e.code, e.message),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn malformed(what: impl Into<String>, reason: impl Into<String>) -> UpstreamError {
    UpstreamError::Malformed {
        what: what.into(),
        reason: reason.into(),
    }
}

/// ISO 8601 as Amazon writes it; epoch seconds (the static sandbox's quirk) accepted too.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let seconds: f64 = text.parse().ok().filter(|s: &f64| s.is_finite())?;
    Utc.timestamp_millis_opt((seconds * 1000.0) as i64).single()
}

/// A value for an error message, shortened (order and item fields hold nothing
/// personal; addresses are never quoted).
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the fields of one order or item; every error names it (`what`) and the field.
/// JSON `null` counts as absent, as does an empty string.
struct Check {
    what: String,
}

type Checked<T> = Result<T, UpstreamError>;

impl Check {
    fn bad(&self, field: &str, value: &Value, why: &str) -> UpstreamError {
        malformed(&self.what, format!("{field} {} {why}", shown(value)))
    }

    fn required<T>(&self, field: &str, value: Option<T>) -> Checked<T> {
        value.ok_or_else(|| malformed(&self.what, format!("{field} is missing")))
    }

    fn text(&self, field: &str, value: Option<&Value>) -> Checked<Option<String>> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.bad(field, other, "is not a string")),
        }
    }

    fn texts(&self, field: &str, value: Option<&Value>) -> Checked<Vec<String>> {
        match value {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(values)) => values
                .iter()
                .filter_map(|v| self.text(field, Some(v)).transpose())
                .collect(),
            Some(other) => Err(self.bad(field, other, "is not a list of strings")),
        }
    }

    /// An integer, also as a string (`ProductInfo.NumberOfItems` is one).
    fn int(&self, field: &str, value: Option<&Value>) -> Checked<Option<i64>> {
        let value = match value {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) if s.is_empty() => return Ok(None),
            Some(value) => value,
        };
        let parsed = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| self.bad(field, value, "is not an integer"))
    }

    fn flag(&self, field: &str, value: Option<&Value>) -> Checked<Option<bool>> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(self.bad(field, other, "is not true or false")),
        }
    }

    fn time(&self, field: &str, value: Option<&Value>) -> Checked<Option<DateTime<Utc>>> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(v @ Value::String(s)) => parse_time(s)
                .map(Some)
                .ok_or_else(|| self.bad(field, v, "is not an ISO 8601 time")),
            Some(other) => Err(self.bad(field, other, "is not an ISO 8601 time")),
        }
    }

    /// An object, or `None`; anything else is refused without quoting it.
    fn object<'v>(
        &self,
        field: &str,
        value: Option<&'v Value>,
    ) -> Checked<Option<&'v Map<String, Value>>> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => Err(malformed(
                &self.what,
                format!("{field} is {}, not an object", kind(other)),
            )),
        }
    }

    /// `Money`; without both a currency and an amount there is no amount to show.
    fn money(&self, field: &str, value: Option<&Value>) -> Checked<Option<Money>> {
        let Some(m) = self.object(field, value)? else {
            return Ok(None);
        };
        let currency = self.text(&format!("{field}.CurrencyCode"), m.get("CurrencyCode"))?;
        let amount = self.text(&format!("{field}.Amount"), m.get("Amount"))?;
        Ok(currency
            .zip(amount)
            .map(|(currency, amount)| Money { currency, amount }))
    }
}

impl WireOrder {
    pub fn into_order(self, account: &str) -> Result<Order, UpstreamError> {
        let id = self.amazon_order_id;
        let c = Check {
            what: format!("order {id}"),
        };
        let status_text = c.required(
            "OrderStatus",
            c.text("OrderStatus", self.order_status.as_ref())?,
        )?;
        let status = status_text
            .parse()
            .map_err(|e: UnknownValue| malformed(&c.what, format!("OrderStatus: {e}")))?;
        let fulfillment = c
            .text("FulfillmentChannel", self.fulfillment_channel.as_ref())?
            .map(|text| text.parse())
            .transpose()
            .map_err(|e: UnknownValue| malformed(&c.what, format!("FulfillmentChannel: {e}")))?;
        let purchase_date = c.time("PurchaseDate", self.purchase_date.as_ref())?;
        let last_update = c.time("LastUpdateDate", self.last_update_date.as_ref())?;
        let instruction = c.object(
            "FulfillmentInstruction",
            self.fulfillment_instruction.as_ref(),
        )?;
        let details = OrderDetails {
            seller_order_id: c.text("SellerOrderId", self.seller_order_id.as_ref())?,
            sales_channel: c.text("SalesChannel", self.sales_channel.as_ref())?,
            order_channel: c.text("OrderChannel", self.order_channel.as_ref())?,
            ship_service_level: c.text("ShipServiceLevel", self.ship_service_level.as_ref())?,
            shipment_service_level_category: c.text(
                "ShipmentServiceLevelCategory",
                self.shipment_service_level_category.as_ref(),
            )?,
            payment_method: c.text("PaymentMethod", self.payment_method.as_ref())?,
            payment_method_details: c
                .texts("PaymentMethodDetails", self.payment_method_details.as_ref())?,
            number_of_items_shipped: c.int(
                "NumberOfItemsShipped",
                self.number_of_items_shipped.as_ref(),
            )?,
            number_of_items_unshipped: c.int(
                "NumberOfItemsUnshipped",
                self.number_of_items_unshipped.as_ref(),
            )?,
            is_premium: c.flag("IsPremiumOrder", self.is_premium_order.as_ref())?,
            is_replacement: c.flag("IsReplacementOrder", self.is_replacement_order.as_ref())?,
            replaced_order_id: c.text("ReplacedOrderId", self.replaced_order_id.as_ref())?,
            is_global_express: c.flag(
                "IsGlobalExpressEnabled",
                self.is_global_express_enabled.as_ref(),
            )?,
            is_sold_by_ab: c.flag("IsSoldByAB", self.is_sold_by_ab.as_ref())?,
            is_iba: c.flag("IsIBA", self.is_iba.as_ref())?,
            is_ispu: c.flag("IsISPU", self.is_ispu.as_ref())?,
            is_access_point: c.flag("IsAccessPointOrder", self.is_access_point_order.as_ref())?,
            has_regulated_items: c.flag("HasRegulatedItems", self.has_regulated_items.as_ref())?,
            is_estimated_ship_date_set: c.flag(
                "IsEstimatedShipDateSet",
                self.is_estimated_ship_date_set.as_ref(),
            )?,
            easy_ship_shipment_status: c.text(
                "EasyShipShipmentStatus",
                self.easy_ship_shipment_status.as_ref(),
            )?,
            electronic_invoice_status: c.text(
                "ElectronicInvoiceStatus",
                self.electronic_invoice_status.as_ref(),
            )?,
            promise_response_due_date: c.time(
                "PromiseResponseDueDate",
                self.promise_response_due_date.as_ref(),
            )?,
            fulfillment_supply_source_id: match instruction {
                Some(i) => c.text(
                    "FulfillmentInstruction.FulfillmentSupplySourceId",
                    i.get("FulfillmentSupplySourceId"),
                )?,
                None => None,
            },
            buyer_invoice_preference: c.text(
                "BuyerInvoicePreference",
                self.buyer_invoice_preference.as_ref(),
            )?,
            ship_to: ship_to(&c, self.shipping_address.as_ref())?,
        };
        // Amazon shows no buyer without a Restricted Data Token: the customer index
        // gets the ship-to area only.
        let customer = details
            .ship_to
            .as_ref()
            .map(|area| crate::model::Customer {
                email: None,
                name: None,
                postcode: area.postal_code.clone(),
                city: area.city.clone(),
                country: area.country_code.clone(),
            })
            .unwrap_or_default();
        Ok(Order {
            channel: SalesChannel::Amazon,
            customer,
            account: account.to_owned(),
            purchase_date: c.required("PurchaseDate", purchase_date)?,
            last_update: c.required("LastUpdateDate", last_update)?,
            earliest_ship_date: c.time("EarliestShipDate", self.earliest_ship_date.as_ref())?,
            latest_ship_date: c.time("LatestShipDate", self.latest_ship_date.as_ref())?,
            earliest_delivery_date: c
                .time("EarliestDeliveryDate", self.earliest_delivery_date.as_ref())?,
            latest_delivery_date: c
                .time("LatestDeliveryDate", self.latest_delivery_date.as_ref())?,
            marketplace_id: c.text("MarketplaceId", self.marketplace_id.as_ref())?,
            status,
            fulfillment,
            total: c.money("OrderTotal", self.order_total.as_ref())?,
            order_type: c.text("OrderType", self.order_type.as_ref())?,
            is_prime: c.flag("IsPrime", self.is_prime.as_ref())?.unwrap_or(false),
            is_business: c
                .flag("IsBusinessOrder", self.is_business_order.as_ref())?
                .unwrap_or(false),
            items: Vec::new(),
            id,
            details,
        })
    }
}

/// The non-personal part of `ShippingAddress` (already reduced to [`AREA_KEYS`]).
fn ship_to(c: &Check, value: Option<&Value>) -> Checked<Option<ShippingArea>> {
    let Some(address) = c.object("ShippingAddress", value)? else {
        return Ok(None);
    };
    let field = |key: &str| c.text(&format!("ShippingAddress.{key}"), address.get(key));
    let area = ShippingArea {
        city: field("City")?,
        state_or_region: field("StateOrRegion")?,
        postal_code: field("PostalCode")?,
        country_code: field("CountryCode")?,
    };
    Ok((area != ShippingArea::default()).then_some(area))
}

impl RawOrderItem {
    /// The item of order `order_id` in the domain model.
    pub fn into_item(self, order_id: &str) -> Result<OrderItem, UpstreamError> {
        let order = Check {
            what: format!("order {order_id}"),
        };
        let id = order.required(
            "OrderItemId",
            order.text("OrderItemId", self.order_item_id.as_ref())?,
        )?;
        let c = Check {
            what: format!("order {order_id}, item {id}"),
        };
        let asin = c.required("ASIN", c.text("ASIN", self.asin.as_ref())?)?;
        let quantity_ordered = c.required(
            "QuantityOrdered",
            c.int("QuantityOrdered", self.quantity_ordered.as_ref())?,
        )?;
        let cancel = c.object("BuyerRequestedCancel", self.buyer_requested_cancel.as_ref())?;
        let (buyer_requested_cancel, buyer_cancel_reason) = match cancel {
            Some(cancel) => (
                c.flag(
                    "BuyerRequestedCancel.IsBuyerRequestedCancel",
                    cancel.get("IsBuyerRequestedCancel"),
                )?
                .unwrap_or(false),
                c.text(
                    "BuyerRequestedCancel.BuyerCancelReason",
                    cancel.get("BuyerCancelReason"),
                )?,
            ),
            None => (false, None),
        };
        let (substitution_type, substitution_options) =
            substitution(&c, self.substitution_preferences.as_ref())?;
        let details = ItemDetails {
            shipping_price: c.money("ShippingPrice", self.shipping_price.as_ref())?,
            shipping_tax: c.money("ShippingTax", self.shipping_tax.as_ref())?,
            shipping_discount: c.money("ShippingDiscount", self.shipping_discount.as_ref())?,
            shipping_discount_tax: c
                .money("ShippingDiscountTax", self.shipping_discount_tax.as_ref())?,
            promotion_discount: c.money("PromotionDiscount", self.promotion_discount.as_ref())?,
            promotion_discount_tax: c
                .money("PromotionDiscountTax", self.promotion_discount_tax.as_ref())?,
            cod_fee: c.money("CODFee", self.cod_fee.as_ref())?,
            cod_fee_discount: c.money("CODFeeDiscount", self.cod_fee_discount.as_ref())?,
            promotion_ids: c.texts("PromotionIds", self.promotion_ids.as_ref())?,
            is_gift: c.flag("IsGift", self.is_gift.as_ref())?,
            condition_id: c.text("ConditionId", self.condition_id.as_ref())?,
            condition_subtype_id: c
                .text("ConditionSubtypeId", self.condition_subtype_id.as_ref())?,
            condition_note: c.text("ConditionNote", self.condition_note.as_ref())?,
            scheduled_delivery_start: c.time(
                "ScheduledDeliveryStartDate",
                self.scheduled_delivery_start_date.as_ref(),
            )?,
            scheduled_delivery_end: c.time(
                "ScheduledDeliveryEndDate",
                self.scheduled_delivery_end_date.as_ref(),
            )?,
            price_designation: c.text("PriceDesignation", self.price_designation.as_ref())?,
            serial_number_required: c
                .flag("SerialNumberRequired", self.serial_number_required.as_ref())?,
            serial_numbers: c.texts("SerialNumbers", self.serial_numbers.as_ref())?,
            is_transparency: c.flag("IsTransparency", self.is_transparency.as_ref())?,
            ioss_number: c.text("IossNumber", self.ioss_number.as_ref())?,
            store_chain_store_id: c
                .text("StoreChainStoreId", self.store_chain_store_id.as_ref())?,
            deemed_reseller_category: c.text(
                "DeemedResellerCategory",
                self.deemed_reseller_category.as_ref(),
            )?,
            number_of_items: match c.object("ProductInfo", self.product_info.as_ref())? {
                Some(info) => c.int("ProductInfo.NumberOfItems", info.get("NumberOfItems"))?,
                None => None,
            },
            points_granted: points_granted(&c, self.points_granted.as_ref())?,
            tax_collection: match c.object("TaxCollection", self.tax_collection.as_ref())? {
                Some(t) => Some(TaxCollection {
                    model: c.text("TaxCollection.Model", t.get("Model"))?,
                    responsible_party: c
                        .text("TaxCollection.ResponsibleParty", t.get("ResponsibleParty"))?,
                })
                .filter(|t| *t != TaxCollection::default()),
                None => None,
            },
            amazon_programs: match c.object("AmazonPrograms", self.amazon_programs.as_ref())? {
                Some(p) => c.texts("AmazonPrograms.Programs", p.get("Programs"))?,
                None => Vec::new(),
            },
            shipping_constraints: shipping_constraints(&c, self.shipping_constraints.as_ref())?,
            substitution_type,
            substitution_options,
        };
        Ok(OrderItem {
            asin: Some(asin),
            sku: c.text("SellerSKU", self.seller_sku.as_ref())?,
            title: c.text("Title", self.title.as_ref())?,
            quantity_ordered,
            quantity_shipped: c
                .int("QuantityShipped", self.quantity_shipped.as_ref())?
                .unwrap_or(0),
            price: c.money("ItemPrice", self.item_price.as_ref())?,
            tax: c.money("ItemTax", self.item_tax.as_ref())?,
            buyer_requested_cancel,
            buyer_cancel_reason,
            id,
            details,
        })
    }
}

fn points_granted(c: &Check, value: Option<&Value>) -> Checked<Option<PointsGranted>> {
    let Some(p) = c.object("PointsGranted", value)? else {
        return Ok(None);
    };
    let points = PointsGranted {
        points: c.int("PointsGranted.PointsNumber", p.get("PointsNumber"))?,
        value: c.money(
            "PointsGranted.PointsMonetaryValue",
            p.get("PointsMonetaryValue"),
        )?,
    };
    Ok((points != PointsGranted::default()).then_some(points))
}

fn shipping_constraints(c: &Check, value: Option<&Value>) -> Checked<ShippingConstraints> {
    let Some(s) = c.object("ShippingConstraints", value)? else {
        return Ok(ShippingConstraints::default());
    };
    let field = |key: &str| c.text(&format!("ShippingConstraints.{key}"), s.get(key));
    Ok(ShippingConstraints {
        pallet_delivery: field("PalletDelivery")?,
        signature_confirmation: field("SignatureConfirmation")?,
        recipient_identity_verification: field("RecipientIdentityVerification")?,
        recipient_age_verification: field("RecipientAgeVerification")?,
    })
}

/// `SubstitutionPreferences`: its type and options.
fn substitution(
    c: &Check,
    value: Option<&Value>,
) -> Checked<(Option<String>, Vec<SubstitutionOption>)> {
    let Some(s) = c.object("SubstitutionPreferences", value)? else {
        return Ok((None, Vec::new()));
    };
    let kind = c.text(
        "SubstitutionPreferences.SubstitutionType",
        s.get("SubstitutionType"),
    )?;
    let options = match s.get("SubstitutionOptions") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(options)) => options.as_slice(),
        Some(other) => {
            return Err(c.bad(
                "SubstitutionPreferences.SubstitutionOptions",
                other,
                "is not a list",
            ));
        }
    };
    let mut found = Vec::with_capacity(options.len());
    for option in options {
        let field = "SubstitutionPreferences.SubstitutionOptions";
        let Some(o) = c.object(field, Some(option))? else {
            continue;
        };
        found.push(SubstitutionOption {
            asin: c.text(&format!("{field}.ASIN"), o.get("ASIN"))?,
            sku: c.text(&format!("{field}.SellerSKU"), o.get("SellerSKU"))?,
            title: c.text(&format!("{field}.Title"), o.get("Title"))?,
            quantity_ordered: c.int(
                &format!("{field}.QuantityOrdered"),
                o.get("QuantityOrdered"),
            )?,
        });
    }
    Ok((kind, found))
}

/// The `x-amzn-api-sandbox` static cases of the shared contracts, for the tests of every
/// Amazon client that maps them.
#[cfg(test)]
pub(crate) mod spec_examples {
    use serde_json::Value;

    /// One static case: the response status it is listed under, its request parameters
    /// and its response body.
    pub struct Case {
        pub status: u16,
        pub request: Value,
        pub response: Value,
    }

    impl Case {
        /// Whether the request names `value` (an id, a test case name) anywhere.
        pub fn asks_for(&self, value: &str) -> bool {
            self.request.to_string().contains(&format!("\"{value}\""))
        }
    }

    /// Every static case of `method path` in `specs/amazon/<file>`.
    pub fn cases(file: &str, path: &str, method: &str) -> Result<Vec<Case>, String> {
        let location = format!("{}/specs/amazon/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&location).map_err(|e| format!("{location}: {e}"))?;
        let spec: Value = serde_json::from_str(&text).map_err(|e| format!("{location}: {e}"))?;
        let responses = spec["paths"][path][method]["responses"]
            .as_object()
            .ok_or_else(|| format!("{location}: no responses for {method} {path}"))?;
        let mut found = Vec::new();
        for (status, response) in responses {
            let Some(cases) = response["x-amzn-api-sandbox"]["static"].as_array() else {
                continue;
            };
            let status: u16 = status
                .parse()
                .map_err(|e| format!("{method} {path}: status {status}: {e}"))?;
            found.extend(cases.iter().map(|case| Case {
                status,
                request: case["request"]["parameters"].clone(),
                response: case["response"].clone(),
            }));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::spec_examples::{Case, cases};
    use super::*;
    use crate::model::{Fulfillment, OrderStatus};
    use serde_json::json;

    fn usd(amount: &str) -> Option<Money> {
        Some(Money {
            currency: "USD".into(),
            amount: amount.into(),
        })
    }

    fn time(text: &str) -> Option<DateTime<Utc>> {
        parse_time(text)
    }

    /// A 400 case: the contract's error list, with code and message.
    fn assert_error_case(label: &str, case: &Case) {
        let body: Result<ErrorBody, _> = serde_json::from_value(case.response.clone());
        let Ok(body) = body else {
            panic!("{label}: the 400 example does not parse: {body:?}")
        };
        assert!(!body.errors.is_empty(), "{label}: no errors");
        assert_eq!(body.errors[0].code, "InvalidInput", "{label}");
        assert_eq!(body.errors[0].message, "Invalid Input", "{label}");
        assert_eq!(describe(&body.errors), "InvalidInput: Invalid Input");
    }

    fn orders_of(label: &str, case: &Case) -> (Vec<Order>, Option<String>) {
        let response: Result<GetOrdersResponse, _> = serde_json::from_value(case.response.clone());
        let Ok(response) = response else {
            panic!("{label}: does not parse: {response:?}")
        };
        let Some(payload) = response.payload else {
            panic!("{label}: no payload")
        };
        let orders = payload
            .orders
            .into_iter()
            .map(|o| o.into_order("us"))
            .collect::<Result<Vec<_>, _>>();
        let Ok(orders) = orders else {
            panic!("{label}: an order does not map: {orders:?}")
        };
        (orders, payload.next_token)
    }

    #[test]
    fn every_getorders_sandbox_example_maps() {
        let all = cases("ordersV0.json", "/orders/v0/orders", "get");
        let Ok(all) = all else {
            panic!("reading the getOrders examples: {:?}", all.err())
        };
        let mut parsed = 0;
        let mut recognised = 0;
        for case in &all {
            let label = format!("getOrders {} {}", case.status, case.request);
            if case.status == 400 {
                assert_error_case(&label, case);
                parsed += 1;
                continue;
            }
            assert_eq!(case.status, 200, "{label}");
            let (orders, next_token) = orders_of(&label, case);
            assert!(!orders.is_empty(), "{label}");
            if case.asks_for("TEST_CASE_200") {
                recognised += 1;
                assert_eq!(orders.len(), 2, "{label}");
                assert_eq!(orders[0].id, "902-1845936-5435065");
                assert_eq!(orders[1].id, "902-8745147-1934268");
                let o = &orders[0];
                assert_eq!(o.status, OrderStatus::Unshipped);
                assert_eq!(o.fulfillment, Some(Fulfillment::Mfn));
                assert_eq!(o.total, usd("11.01"));
                assert_eq!(o.marketplace_id.as_deref(), Some("ATVPDKIKX0DER"));
                assert_eq!(o.order_type.as_deref(), Some("StandardOrder"));
                assert_eq!(o.latest_ship_date, time("1970-01-19T04:05:13Z"));
                assert_eq!(o.earliest_delivery_date, time("1970-01-19T04:06:39Z"));
                let d = &o.details;
                assert_eq!(d.sales_channel.as_deref(), Some("Amazon.com"));
                assert_eq!(d.ship_service_level.as_deref(), Some("Std US D2D Dom"));
                assert_eq!(
                    d.shipment_service_level_category.as_deref(),
                    Some("Standard")
                );
                assert_eq!(d.payment_method.as_deref(), Some("Other"));
                assert_eq!(d.payment_method_details, vec!["Standard".to_owned()]);
                assert_eq!(d.number_of_items_shipped, Some(0));
                assert_eq!(d.number_of_items_unshipped, Some(1));
                assert_eq!(d.is_replacement, Some(false));
                assert_eq!(d.is_iba, Some(false));
                assert_eq!(d.is_ispu, Some(false));
                assert_eq!(
                    d.easy_ship_shipment_status.as_deref(),
                    Some("PendingPickUp")
                );
                assert_eq!(d.electronic_invoice_status.as_deref(), Some("NotRequired"));
                assert_eq!(
                    d.fulfillment_supply_source_id.as_deref(),
                    Some("sampleSupplySourceId")
                );
                // The seller's DefaultShipFromLocationAddress is not where the order goes.
                assert_eq!(d.ship_to, None);
                assert_eq!(orders[1].details.fulfillment_supply_source_id, None);
                assert_eq!(next_token, None);
            } else if case.asks_for("TEST_CASE_200_NEXT_TOKEN") {
                recognised += 1;
                assert_eq!(orders.len(), 1, "{label}");
                let o = &orders[0];
                assert_eq!(o.id, "902-3159896-1390916");
                assert_eq!(o.status, OrderStatus::Pending);
                assert_eq!(o.total, None);
                assert_eq!(
                    o.details.payment_method_details,
                    vec!["CreditCard".to_owned(), "GiftCertificate".to_owned()]
                );
                assert_eq!(o.details.number_of_items_unshipped, Some(0));
                // The first page hands out a token; the page read with it ends the list.
                let with_token = case.asks_for("2YgYW55IGNhcm5hbCBwbGVhc3VyZS4");
                let expected = (!with_token).then(|| "2YgYW55IGNhcm5hbCBwbGVhc3VyZS4".to_owned());
                assert_eq!(next_token, expected, "{label}");
            }
            parsed += 1;
        }
        assert_eq!(parsed, all.len());
        assert!(recognised >= 3, "the known cases were not found");
        assert!(parsed >= 4, "only {parsed} getOrders examples");
    }

    #[test]
    fn every_getorder_sandbox_example_maps() {
        let all = cases("ordersV0.json", "/orders/v0/orders/{orderId}", "get");
        let Ok(all) = all else {
            panic!("reading the getOrder examples: {:?}", all.err())
        };
        let mut parsed = 0;
        let mut recognised = 0;
        for case in &all {
            let label = format!("getOrder {} {}", case.status, case.request);
            if case.status == 400 {
                assert_error_case(&label, case);
                parsed += 1;
                continue;
            }
            assert_eq!(case.status, 200, "{label}");
            let response: Result<GetOrderResponse, _> =
                serde_json::from_value(case.response.clone());
            let Ok(GetOrderResponse {
                payload: Some(wire),
                ..
            }) = response
            else {
                panic!("{label}: does not parse: {response:?}")
            };
            let order = wire.into_order("eu");
            let Ok(order) = order else {
                panic!("{label}: does not map: {order:?}")
            };
            if case.asks_for("TEST_CASE_IBA_200") {
                recognised += 1;
                assert_eq!(order.id, "921-3175655-0452641");
                assert_eq!(order.status, OrderStatus::Shipped);
                assert_eq!(order.fulfillment, Some(Fulfillment::Afn));
                assert_eq!(order.marketplace_id.as_deref(), Some("A1PA6795UKMFR9"));
                assert_eq!(
                    order.total,
                    Some(Money {
                        currency: "EUR".into(),
                        amount: "100.00".into()
                    })
                );
                assert!(order.is_business);
                assert_eq!(Some(order.purchase_date), time("2019-05-07T15:42:57.058Z"));
                assert_eq!(order.details.sales_channel.as_deref(), Some("Amazon.de"));
                assert_eq!(order.details.is_iba, Some(true));
                assert_eq!(order.details.is_sold_by_ab, Some(true));
                assert_eq!(order.details.number_of_items_shipped, Some(1));
                assert_eq!(
                    order.details.payment_method_details,
                    vec!["Invoice".to_owned()]
                );
            } else if case.asks_for("TEST_CASE_200") {
                recognised += 1;
                assert_eq!(order.id, "902-1845936-5435065");
                assert_eq!(order.status, OrderStatus::Unshipped);
                assert_eq!(order.fulfillment, Some(Fulfillment::Mfn));
                assert_eq!(order.total, usd("11.01"));
                assert_eq!(order.details.is_iba, Some(false));
                assert_eq!(order.details.is_access_point, Some(false));
            }
            parsed += 1;
        }
        assert_eq!(parsed, all.len());
        assert!(recognised >= 2, "the known cases were not found");
        assert!(parsed >= 3, "only {parsed} getOrder examples");
    }

    #[test]
    fn every_getorderitems_sandbox_example_maps() {
        let all = cases(
            "ordersV0.json",
            "/orders/v0/orders/{orderId}/orderItems",
            "get",
        );
        let Ok(all) = all else {
            panic!("reading the getOrderItems examples: {:?}", all.err())
        };
        let mut parsed = 0;
        let mut recognised = 0;
        for case in &all {
            let label = format!("getOrderItems {} {}", case.status, case.request);
            if case.status == 400 {
                assert_error_case(&label, case);
                parsed += 1;
                continue;
            }
            assert_eq!(case.status, 200, "{label}");
            let response: Result<GetOrderItemsResponse, _> =
                serde_json::from_value(case.response.clone());
            let Ok(GetOrderItemsResponse {
                payload: Some(list),
                ..
            }) = response
            else {
                panic!("{label}: does not parse: {response:?}")
            };
            let items: Vec<OrderItem> = list
                .order_items
                .into_iter()
                .map(WireOrderItem::into_item)
                .collect();
            assert!(!items.is_empty(), "{label}");
            if case.asks_for("TEST_CASE_200") {
                recognised += 1;
                assert_eq!(list.amazon_order_id.as_deref(), Some("902-1845936-5435065"));
                assert_eq!(items.len(), 1);
                let item = &items[0];
                assert_eq!(item.id, "05015851154158");
                assert_eq!(item.asin.as_deref(), Some("B00551Q3CS"));
                assert_eq!(item.sku.as_deref(), Some("NABetaASINB00551Q3CS"));
                assert_eq!(item.title.as_deref(), Some("B00551Q3CS [Card Book]"));
                assert_eq!((item.quantity_ordered, item.quantity_shipped), (1, 0));
                assert_eq!(item.price, usd("10.00"));
                assert_eq!(item.tax, usd("1.01"));
                assert!(item.buyer_requested_cancel);
                assert_eq!(
                    item.buyer_cancel_reason.as_deref(),
                    Some("Found cheaper somewhere else.")
                );
                let d = &item.details;
                assert_eq!(d.promotion_discount, usd("0.00"));
                assert_eq!(d.number_of_items, Some(1));
                assert_eq!(d.is_gift, Some(false));
                assert_eq!(d.condition_id.as_deref(), Some("New"));
                assert_eq!(d.condition_subtype_id.as_deref(), Some("New"));
                assert_eq!(d.is_transparency, Some(false));
                assert_eq!(d.serial_number_required, Some(false));
                // "IossNumber": "" is no number.
                assert_eq!(d.ioss_number, None);
                assert_eq!(d.deemed_reseller_category.as_deref(), Some("IOSS"));
                assert_eq!(d.store_chain_store_id.as_deref(), Some("ISPU_StoreId"));
                assert_eq!(d.shipping_price, None);
            }
            parsed += 1;
        }
        assert_eq!(parsed, all.len());
        assert!(recognised >= 1, "the known cases were not found");
        assert!(parsed >= 2, "only {parsed} getOrderItems examples");
    }

    fn order_with(extra: Value) -> Result<Order, String> {
        let mut wire = json!({
            "AmazonOrderId": "111-2222222-3333333", "PurchaseDate": "2026-11-01T00:00:00Z",
            "LastUpdateDate": "2026-11-01T00:00:00Z", "OrderStatus": "Unshipped"
        });
        if let (Some(wire), Value::Object(extra)) = (wire.as_object_mut(), extra) {
            wire.extend(extra);
        }
        let wire: WireOrder = serde_json::from_value(wire).map_err(|e| e.to_string())?;
        wire.into_order("us").map_err(|e| e.to_string())
    }

    #[test]
    fn an_unknown_status_is_an_error_naming_the_order() {
        let message = order_with(json!({"OrderStatus": "Teleported"}))
            .err()
            .unwrap_or_default();
        assert!(
            message.contains("111-2222222-3333333") && message.contains("Teleported"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_order_and_the_field() {
        for (extra, field) in [
            (
                json!({"NumberOfItemsShipped": "many"}),
                "NumberOfItemsShipped",
            ),
            (
                json!({"PromiseResponseDueDate": "soon"}),
                "PromiseResponseDueDate",
            ),
            (json!({"IsIBA": "perhaps"}), "IsIBA"),
            (
                json!({"OrderTotal": {"CurrencyCode": "USD", "Amount": 11.01}}),
                "OrderTotal.Amount",
            ),
            (
                json!({"PaymentMethodDetails": "Standard"}),
                "PaymentMethodDetails",
            ),
            (json!({"FulfillmentChannel": "Drone"}), "FulfillmentChannel"),
            (json!({"PurchaseDate": null}), "PurchaseDate is missing"),
            (
                json!({"ShippingAddress": "1 Secret Lane"}),
                "ShippingAddress is a string",
            ),
        ] {
            let result = order_with(extra.clone());
            let Err(message) = result else {
                panic!("{extra} was accepted: {result:?}")
            };
            assert!(
                message.contains("order 111-2222222-3333333") && message.contains(field),
                "{extra}: {message}"
            );
            assert!(!message.contains("Secret"), "{message}");
        }
    }

    #[test]
    fn unknown_display_values_and_fields_are_kept_or_ignored_and_flags_may_be_strings() {
        let order = order_with(json!({
            "EasyShipShipmentStatus": "HoveringOverTheDepot",
            "ShipmentServiceLevelCategory": "Teleport",
            "BuyerInvoicePreference": "COOPERATIVE",
            "SomethingAmazonAddsLater": {"deep": [1, 2, 3]},
            "IsPrime": "true",
            "IsReplacementOrder": "TRUE",
            "ReplacedOrderId": "111-0000000-0000000",
            "IsPremiumOrder": false,
            "PromiseResponseDueDate": "2026-11-03T10:00:00Z",
            "SellerOrderId": "SO-1",
            "OrderChannel": "Web",
            "HasRegulatedItems": true,
        }));
        let Ok(order) = order else {
            panic!("{order:?}")
        };
        let d = &order.details;
        assert_eq!(
            d.easy_ship_shipment_status.as_deref(),
            Some("HoveringOverTheDepot")
        );
        assert_eq!(
            d.shipment_service_level_category.as_deref(),
            Some("Teleport")
        );
        assert_eq!(d.buyer_invoice_preference.as_deref(), Some("COOPERATIVE"));
        assert!(order.is_prime);
        assert_eq!(d.is_replacement, Some(true));
        assert_eq!(d.replaced_order_id.as_deref(), Some("111-0000000-0000000"));
        assert_eq!(d.is_premium, Some(false));
        assert_eq!(d.promise_response_due_date, time("2026-11-03T10:00:00Z"));
        assert_eq!(d.seller_order_id.as_deref(), Some("SO-1"));
        assert_eq!(d.order_channel.as_deref(), Some("Web"));
        assert_eq!(d.has_regulated_items, Some(true));
        assert_eq!(d.is_global_express, None);
    }

    #[test]
    fn only_the_non_personal_part_of_the_shipping_address_is_kept() {
        let json = json!({
            "AmazonOrderId": "111-2222222-3333333", "PurchaseDate": "2026-11-01T00:00:00Z",
            "LastUpdateDate": "2026-11-01T00:00:00Z", "OrderStatus": "Shipped",
            "ShippingAddress": {
                "Name": "Jane Private", "AddressLine1": "1 Secret Lane", "Phone": "+1 555 0100",
                "CompanyName": "Private Corp", "City": "SEATTLE", "StateOrRegion": "WA",
                "PostalCode": "98121-2778", "CountryCode": "US", "AddressType": "Residential"
            },
            "BuyerInfo": {"BuyerEmail": "jane@example.com", "BuyerName": "Jane Private"}
        });
        let wire: Result<WireOrder, _> = serde_json::from_value(json);
        let Ok(wire) = wire else { panic!("{wire:?}") };
        let wire_debug = format!("{wire:?}");
        let order = wire.into_order("us");
        let Ok(order) = order else {
            panic!("{order:?}")
        };
        assert_eq!(
            order.details.ship_to,
            Some(ShippingArea {
                city: Some("SEATTLE".into()),
                state_or_region: Some("WA".into()),
                postal_code: Some("98121-2778".into()),
                country_code: Some("US".into()),
            })
        );
        let stored = serde_json::to_string(&order).unwrap_or_default();
        assert!(stored.contains("98121-2778"), "{stored}");
        for personal in ["Jane", "Secret", "555", "Private Corp", "jane@"] {
            assert!(!stored.contains(personal), "{personal} stored: {stored}");
            assert!(!wire_debug.contains(personal), "{personal} in {wire_debug}");
        }
    }

    fn items_of(list: Value) -> Result<Vec<OrderItem>, String> {
        let response: GetOrderItemsResponse =
            serde_json::from_value(json!({ "payload": list })).map_err(|e| e.to_string())?;
        let payload = response.payload.ok_or("no payload")?;
        Ok(payload
            .order_items
            .into_iter()
            .map(WireOrderItem::into_item)
            .collect())
    }

    #[test]
    fn every_item_field_maps() {
        let money = |amount: &str| json!({"CurrencyCode": "JPY", "Amount": amount});
        let mut item = json!({
            "ASIN": "B0TEST0001", "OrderItemId": "11111111111111", "SellerSKU": "SKU-1",
            "Title": "Green tea", "QuantityOrdered": 2, "QuantityShipped": 1,
            "ProductInfo": {"NumberOfItems": "6"},
            "PointsGranted": {"PointsNumber": 10, "PointsMonetaryValue": money("10")},
            "ItemPrice": money("2000"), "ItemTax": money("200"),
            "ShippingPrice": money("500"), "ShippingTax": money("50"),
            "ShippingDiscount": money("100"), "ShippingDiscountTax": money("10"),
            "PromotionDiscount": money("300"), "PromotionDiscountTax": money("30"),
            "PromotionIds": ["PROMO-1", "PROMO-2"],
            "CODFee": money("330"), "CODFeeDiscount": money("0"),
            "IsGift": "true", "ConditionNote": "Sealed", "ConditionId": "Used",
            "ConditionSubtypeId": "Mint",
            "ScheduledDeliveryStartDate": "2026-11-05T09:00:00Z",
            "ScheduledDeliveryEndDate": "2026-11-05T12:00:00Z",
        });
        let more = json!({
            "PriceDesignation": "BusinessPrice",
            "TaxCollection": {"Model": "MarketplaceFacilitator", "ResponsibleParty": "Amazon Services, Inc."},
            "SerialNumberRequired": true, "IsTransparency": true,
            "IossNumber": "IM1234567890", "StoreChainStoreId": "STORE-9",
            "DeemedResellerCategory": "UOSS",
            "BuyerInfo": {"GiftMessageText": "Happy birthday, Jane"},
            "BuyerRequestedCancel": {"IsBuyerRequestedCancel": "false", "BuyerCancelReason": ""},
            "SerialNumbers": ["SN1"],
            "SubstitutionPreferences": {
                "SubstitutionType": "CUSTOMER_PREFERENCE",
                "SubstitutionOptions": [{"ASIN": "B0TEST0002", "QuantityOrdered": 1, "SellerSKU": "SKU-2",
                    "Title": "Black tea", "Measurement": {"Unit": "GRAMS", "Value": 250.5}}]
            },
            "ShippingConstraints": {"SignatureConfirmation": "MANDATORY", "RecipientAgeVerification": "MANDATORY"},
            "AmazonPrograms": {"Programs": ["SUBSCRIBE_AND_SAVE"]},
            "AssociatedItems": [{"OrderId": "503-1234567-1234567", "OrderItemId": "2",
                "AssociationType": "VALUE_ADD_SERVICE"}]
        });
        if let (Some(item), Value::Object(more)) = (item.as_object_mut(), more) {
            item.extend(more);
        }
        let items = items_of(json!({"AmazonOrderId": "503-1234567-1234567", "OrderItems": [item]}));
        let Ok(items) = items else {
            panic!("{items:?}")
        };
        let jpy = |amount: &str| {
            Some(Money {
                currency: "JPY".into(),
                amount: amount.into(),
            })
        };
        let item = &items[0];
        assert_eq!(item.sku.as_deref(), Some("SKU-1"));
        assert_eq!((item.quantity_ordered, item.quantity_shipped), (2, 1));
        assert!(!item.buyer_requested_cancel);
        assert_eq!(item.buyer_cancel_reason, None);
        let expected = ItemDetails {
            shipping_price: jpy("500"),
            shipping_tax: jpy("50"),
            shipping_discount: jpy("100"),
            shipping_discount_tax: jpy("10"),
            promotion_discount: jpy("300"),
            promotion_discount_tax: jpy("30"),
            cod_fee: jpy("330"),
            cod_fee_discount: jpy("0"),
            promotion_ids: vec!["PROMO-1".into(), "PROMO-2".into()],
            is_gift: Some(true),
            condition_id: Some("Used".into()),
            condition_subtype_id: Some("Mint".into()),
            condition_note: Some("Sealed".into()),
            scheduled_delivery_start: time("2026-11-05T09:00:00Z"),
            scheduled_delivery_end: time("2026-11-05T12:00:00Z"),
            price_designation: Some("BusinessPrice".into()),
            serial_number_required: Some(true),
            serial_numbers: vec!["SN1".into()],
            is_transparency: Some(true),
            ioss_number: Some("IM1234567890".into()),
            store_chain_store_id: Some("STORE-9".into()),
            deemed_reseller_category: Some("UOSS".into()),
            number_of_items: Some(6),
            points_granted: Some(PointsGranted {
                points: Some(10),
                value: jpy("10"),
            }),
            tax_collection: Some(TaxCollection {
                model: Some("MarketplaceFacilitator".into()),
                responsible_party: Some("Amazon Services, Inc.".into()),
            }),
            amazon_programs: vec!["SUBSCRIBE_AND_SAVE".into()],
            shipping_constraints: ShippingConstraints {
                pallet_delivery: None,
                signature_confirmation: Some("MANDATORY".into()),
                recipient_identity_verification: None,
                recipient_age_verification: Some("MANDATORY".into()),
            },
            substitution_type: Some("CUSTOMER_PREFERENCE".into()),
            substitution_options: vec![SubstitutionOption {
                asin: Some("B0TEST0002".into()),
                sku: Some("SKU-2".into()),
                title: Some("Black tea".into()),
                quantity_ordered: Some(1),
            }],
        };
        assert_eq!(item.details, expected);
        // The gift message is restricted data and is not read.
        let stored = serde_json::to_string(item).unwrap_or_default();
        assert!(!stored.contains("Happy birthday"), "{stored}");
    }

    #[test]
    fn a_bad_item_value_fails_the_page_naming_order_item_and_field() {
        for (extra, field) in [
            (json!({"IsGift": "maybe"}), "IsGift"),
            (
                json!({"ProductInfo": {"NumberOfItems": "six"}}),
                "ProductInfo.NumberOfItems",
            ),
            (
                json!({"ScheduledDeliveryEndDate": "tomorrow"}),
                "ScheduledDeliveryEndDate",
            ),
            (
                json!({"ShippingPrice": "5.00"}),
                "ShippingPrice is a string",
            ),
            (
                json!({"QuantityOrdered": null}),
                "QuantityOrdered is missing",
            ),
            (
                json!({"BuyerRequestedCancel": {"IsBuyerRequestedCancel": "yes"}}),
                "BuyerRequestedCancel.IsBuyerRequestedCancel",
            ),
        ] {
            let mut item = json!({"ASIN": "B0TEST0001", "OrderItemId": "11111111111111", "QuantityOrdered": 1});
            if let (Some(item), Value::Object(extra)) = (item.as_object_mut(), extra.clone()) {
                item.extend(extra);
            }
            let result =
                items_of(json!({"AmazonOrderId": "503-1234567-1234567", "OrderItems": [item]}));
            let Err(message) = result else {
                panic!("{extra} was accepted: {result:?}")
            };
            assert!(
                message.contains("order 503-1234567-1234567, item 11111111111111")
                    && message.contains(field),
                "{extra}: {message}"
            );
        }
    }

    #[test]
    fn times_parse_leniently() {
        assert!(parse_time("2026-11-01T10:00:00Z").is_some());
        assert!(parse_time("2026-11-01T10:00:00.123+01:00").is_some());
        assert_eq!(
            parse_time("1.569521782042E9").map(|t| t.timestamp()),
            Some(1_569_521_782)
        );
        assert!(parse_time("yesterday").is_none());
    }
}
