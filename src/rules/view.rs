//! What a rule sees: read-only Rhai maps built from the store's state, with every field
//! always present (`()` when unknown) so that a misspelt field is an error.
//!
//! Every map names what it stands for in `subject` (`order:amazon/113-…`), which the
//! action functions use. Text is as the marketplace sent it, also for values of closed
//! sets (compare with the names listed). Money is `#{amount, currency}` (the amount a
//! decimal string) or `()`. Times are ISO 8601 strings or `()`. Flags (`is_…`, `has_…`)
//! are always `true` or `false`: `false` when the marketplace does not say.
//!
//! Order fields:
//! - `id`, `seller_order_id`, `language` and `timezone` (the marketplace's), `channel`,
//!   `account`, `marketplace`, `sales_channel` (the storefront, "Amazon.com"),
//!   `order_channel`, `status`, `fulfillment` ("AFN"/"MFN"), `order_type`
//!   ("StandardOrder", "LongLeadTimeOrder", "Preorder", "BackOrder",
//!   "SourcingOnDemandOrder").
//! - Times: `purchase_date`, `last_update`, `status_since`, `earliest_ship_date`,
//!   `latest_ship_date`, `earliest_delivery_date`, `latest_delivery_date`,
//!   `promise_response_due_date` (SourcingOnDemand orders). Whole days: `age_days`,
//!   `days_in_status`, `pending_days` (0 unless Pending).
//! - Shipping: `ship_service_level` (free text), `ship_service_category` ("Expedited",
//!   "FreeEconomy", "NextDay", "Priority", "SameDay", "SecondDay", "Scheduled",
//!   "Standard"), `easy_ship_status` ("PendingPickUp", "Delivered", "Lost", … or `()`),
//!   `fulfillment_supply_source_id`, and where it goes, without anything personal:
//!   `ship_city`, `ship_state`, `ship_postal_code`, `ship_country` (ISO 3166 alpha-2).
//! - Payment and invoicing: `total`, `payment_method` ("COD", "CVS", "Other"),
//!   `payment_method_details` (array, e.g. `["CreditCard", "GiftCertificate"]`),
//!   `electronic_invoice_status` ("NotRequired", "NotFound", "Processing", "Errored",
//!   "Accepted"), `buyer_invoice_preference` ("INDIVIDUAL", "BUSINESS").
//! - Counts: `items_shipped`, `items_unshipped` (`()` when not stated).
//! - Flags: `buyer_requested_cancel` (on any item), `is_prime`, `is_business`,
//!   `is_premium`, `is_replacement` (with `replaced_order_id`), `is_global_express`,
//!   `is_sold_by_ab` (Amazon Business), `is_iba` (invoiced by Amazon), `is_ispu` (store
//!   pickup), `is_access_point` (Amazon Hub), `has_regulated_items`.
//! - `items`: an array of maps with `id`, `asin`, `sku`, `title`, `quantity`,
//!   `quantity_shipped`, `units_per_item` (a six-pack is 6), `price`, `tax`,
//!   `shipping_price`, `shipping_tax`, `shipping_discount`, `shipping_discount_tax`,
//!   `promotion_discount`, `promotion_discount_tax`, `cod_fee`, `cod_fee_discount`
//!   (money; prices are `()` while the order is Pending), `promotion_ids` (array),
//!   `buyer_requested_cancel`, `cancel_reason`, `is_gift`, `condition` ("New", "Used",
//!   "Collectible", "Refurbished", "Preorder", "Club"), `condition_subtype`,
//!   `condition_note`, `scheduled_delivery_start`, `scheduled_delivery_end`,
//!   `price_designation` ("BusinessPrice"), `serial_number_required`, `serial_numbers`
//!   (array), `is_transparency`, `ioss_number`, `store_chain_store_id`,
//!   `deemed_reseller_category` ("IOSS", "UOSS"), `points` and `points_value` (Amazon
//!   Points, Japan), `tax_model` and `tax_responsible_party` (who collected the tax),
//!   `amazon_programs` (array, e.g. "SUBSCRIBE_AND_SAVE", "FBM_SHIP_PLUS"),
//!   `shipping_constraints` (`#{pallet_delivery, signature_confirmation,
//!   recipient_identity_verification, recipient_age_verification}`, each "MANDATORY" or
//!   `()`), `substitution_type` ("CUSTOMER_PREFERENCE", "AMAZON_RECOMMENDED",
//!   "DO_NOT_SUBSTITUTE") and `substitutions` (array of `#{asin, sku, title, quantity}`).
//!
//! Nothing personal (the buyer's name, e-mail or street address) is ever in a map.

use chrono::{DateTime, SecondsFormat, Utc};
use rhai::{Array, Dynamic, Map};

use crate::model::{
    BuyerMessage, EventKind, Money, OrderItem, OrderStatus, ParcelRef, Shipment, StoredOrder,
    TrackingStatus,
};

fn time(t: DateTime<Utc>) -> Dynamic {
    t.to_rfc3339_opts(SecondsFormat::Secs, true).into()
}

fn opt_time(t: Option<DateTime<Utc>>) -> Dynamic {
    t.map_or(Dynamic::UNIT, time)
}

fn opt_str(s: Option<&str>) -> Dynamic {
    s.map_or(Dynamic::UNIT, |s| s.into())
}

fn money(m: Option<&Money>) -> Dynamic {
    match m {
        Some(m) => {
            let mut map = Map::new();
            map.insert("amount".into(), m.amount.clone().into());
            map.insert("currency".into(), m.currency.clone().into());
            map.into()
        }
        None => Dynamic::UNIT,
    }
}

fn opt_int(n: Option<i64>) -> Dynamic {
    n.map_or(Dynamic::UNIT, Dynamic::from)
}

/// A flag the marketplace may leave out: unsaid is `false`, so `if order.is_iba` works.
fn flag(b: Option<bool>) -> Dynamic {
    b.unwrap_or(false).into()
}

fn texts(values: &[String]) -> Dynamic {
    let array: Array = values.iter().map(|v| v.clone().into()).collect();
    array.into()
}

fn whole_days(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_days().max(0)
}

/// The order as a rule sees it at `now`.
pub fn order(stored: &StoredOrder, now: DateTime<Utc>) -> Dynamic {
    let o = &stored.order;
    let mut m = Map::new();
    m.insert("subject".into(), o.subject().to_string().into());
    m.insert("id".into(), o.id.clone().into());
    m.insert("channel".into(), o.channel.as_str().into());
    m.insert("account".into(), o.account.clone().into());
    m.insert("marketplace".into(), opt_str(o.marketplace_id.as_deref()));
    let d = &o.details;
    m.insert(
        "seller_order_id".into(),
        opt_str(d.seller_order_id.as_deref()),
    );
    m.insert("sales_channel".into(), opt_str(d.sales_channel.as_deref()));
    m.insert("order_channel".into(), opt_str(d.order_channel.as_deref()));
    // The marketplace decides the buyer's language and the time zone of dates shown.
    let marketplace = o.marketplace_id.as_deref().unwrap_or_default();
    m.insert(
        "language".into(),
        super::templates::language_for_marketplace(marketplace).into(),
    );
    m.insert(
        "timezone".into(),
        super::templates::timezone_for_marketplace(marketplace)
            .name()
            .into(),
    );
    m.insert("status".into(), o.status.as_str().into());
    m.insert(
        "fulfillment".into(),
        opt_str(o.fulfillment.map(|f| f.as_str())),
    );
    m.insert("purchase_date".into(), time(o.purchase_date));
    m.insert("last_update".into(), time(o.last_update));
    m.insert("status_since".into(), time(stored.status_since));
    m.insert("earliest_ship_date".into(), opt_time(o.earliest_ship_date));
    m.insert("latest_ship_date".into(), opt_time(o.latest_ship_date));
    m.insert(
        "earliest_delivery_date".into(),
        opt_time(o.earliest_delivery_date),
    );
    m.insert(
        "latest_delivery_date".into(),
        opt_time(o.latest_delivery_date),
    );
    m.insert(
        "promise_response_due_date".into(),
        opt_time(d.promise_response_due_date),
    );
    m.insert("age_days".into(), whole_days(o.purchase_date, now).into());
    m.insert(
        "days_in_status".into(),
        whole_days(stored.status_since, now).into(),
    );
    let pending_days = if o.status == OrderStatus::Pending {
        whole_days(o.purchase_date, now)
    } else {
        0
    };
    m.insert("pending_days".into(), pending_days.into());
    m.insert(
        "buyer_requested_cancel".into(),
        o.buyer_requested_cancel().into(),
    );
    m.insert("is_prime".into(), o.is_prime.into());
    m.insert("is_business".into(), o.is_business.into());
    m.insert("order_type".into(), opt_str(o.order_type.as_deref()));
    m.insert("total".into(), money(o.total.as_ref()));
    m.insert(
        "ship_service_level".into(),
        opt_str(d.ship_service_level.as_deref()),
    );
    m.insert(
        "ship_service_category".into(),
        opt_str(d.shipment_service_level_category.as_deref()),
    );
    m.insert(
        "easy_ship_status".into(),
        opt_str(d.easy_ship_shipment_status.as_deref()),
    );
    m.insert(
        "fulfillment_supply_source_id".into(),
        opt_str(d.fulfillment_supply_source_id.as_deref()),
    );
    let area = d.ship_to.as_ref();
    m.insert(
        "ship_city".into(),
        opt_str(area.and_then(|a| a.city.as_deref())),
    );
    m.insert(
        "ship_state".into(),
        opt_str(area.and_then(|a| a.state_or_region.as_deref())),
    );
    m.insert(
        "ship_postal_code".into(),
        opt_str(area.and_then(|a| a.postal_code.as_deref())),
    );
    m.insert(
        "ship_country".into(),
        opt_str(area.and_then(|a| a.country_code.as_deref())),
    );
    m.insert(
        "payment_method".into(),
        opt_str(d.payment_method.as_deref()),
    );
    m.insert(
        "payment_method_details".into(),
        texts(&d.payment_method_details),
    );
    m.insert(
        "electronic_invoice_status".into(),
        opt_str(d.electronic_invoice_status.as_deref()),
    );
    m.insert(
        "buyer_invoice_preference".into(),
        opt_str(d.buyer_invoice_preference.as_deref()),
    );
    m.insert("items_shipped".into(), opt_int(d.number_of_items_shipped));
    m.insert(
        "items_unshipped".into(),
        opt_int(d.number_of_items_unshipped),
    );
    m.insert("is_premium".into(), flag(d.is_premium));
    m.insert("is_replacement".into(), flag(d.is_replacement));
    m.insert(
        "replaced_order_id".into(),
        opt_str(d.replaced_order_id.as_deref()),
    );
    m.insert("is_global_express".into(), flag(d.is_global_express));
    m.insert("is_sold_by_ab".into(), flag(d.is_sold_by_ab));
    m.insert("is_iba".into(), flag(d.is_iba));
    m.insert("is_ispu".into(), flag(d.is_ispu));
    m.insert("is_access_point".into(), flag(d.is_access_point));
    m.insert("has_regulated_items".into(), flag(d.has_regulated_items));
    let items: Array = o.items.iter().map(item).collect();
    m.insert("items".into(), items.into());
    m.into()
}

/// An order line as a rule sees it (fields in the module doc).
fn item(item: &OrderItem) -> Dynamic {
    let d = &item.details;
    let mut i = Map::new();
    i.insert("id".into(), item.id.clone().into());
    i.insert("asin".into(), opt_str(item.asin.as_deref()));
    i.insert("sku".into(), opt_str(item.sku.as_deref()));
    i.insert("title".into(), opt_str(item.title.as_deref()));
    i.insert("quantity".into(), item.quantity_ordered.into());
    i.insert("quantity_shipped".into(), item.quantity_shipped.into());
    i.insert("units_per_item".into(), opt_int(d.number_of_items));
    i.insert("price".into(), money(item.price.as_ref()));
    i.insert("tax".into(), money(item.tax.as_ref()));
    for (name, value) in [
        ("shipping_price", &d.shipping_price),
        ("shipping_tax", &d.shipping_tax),
        ("shipping_discount", &d.shipping_discount),
        ("shipping_discount_tax", &d.shipping_discount_tax),
        ("promotion_discount", &d.promotion_discount),
        ("promotion_discount_tax", &d.promotion_discount_tax),
        ("cod_fee", &d.cod_fee),
        ("cod_fee_discount", &d.cod_fee_discount),
    ] {
        i.insert(name.into(), money(value.as_ref()));
    }
    i.insert("promotion_ids".into(), texts(&d.promotion_ids));
    i.insert(
        "buyer_requested_cancel".into(),
        item.buyer_requested_cancel.into(),
    );
    i.insert(
        "cancel_reason".into(),
        opt_str(item.buyer_cancel_reason.as_deref()),
    );
    i.insert("is_gift".into(), flag(d.is_gift));
    i.insert("condition".into(), opt_str(d.condition_id.as_deref()));
    i.insert(
        "condition_subtype".into(),
        opt_str(d.condition_subtype_id.as_deref()),
    );
    i.insert(
        "condition_note".into(),
        opt_str(d.condition_note.as_deref()),
    );
    i.insert(
        "scheduled_delivery_start".into(),
        opt_time(d.scheduled_delivery_start),
    );
    i.insert(
        "scheduled_delivery_end".into(),
        opt_time(d.scheduled_delivery_end),
    );
    i.insert(
        "price_designation".into(),
        opt_str(d.price_designation.as_deref()),
    );
    i.insert(
        "serial_number_required".into(),
        flag(d.serial_number_required),
    );
    i.insert("serial_numbers".into(), texts(&d.serial_numbers));
    i.insert("is_transparency".into(), flag(d.is_transparency));
    i.insert("ioss_number".into(), opt_str(d.ioss_number.as_deref()));
    i.insert(
        "store_chain_store_id".into(),
        opt_str(d.store_chain_store_id.as_deref()),
    );
    i.insert(
        "deemed_reseller_category".into(),
        opt_str(d.deemed_reseller_category.as_deref()),
    );
    let points = d.points_granted.as_ref();
    i.insert("points".into(), opt_int(points.and_then(|p| p.points)));
    i.insert(
        "points_value".into(),
        money(points.and_then(|p| p.value.as_ref())),
    );
    let tax = d.tax_collection.as_ref();
    i.insert(
        "tax_model".into(),
        opt_str(tax.and_then(|t| t.model.as_deref())),
    );
    i.insert(
        "tax_responsible_party".into(),
        opt_str(tax.and_then(|t| t.responsible_party.as_deref())),
    );
    i.insert("amazon_programs".into(), texts(&d.amazon_programs));
    let c = &d.shipping_constraints;
    let mut constraints = Map::new();
    for (name, value) in [
        ("pallet_delivery", &c.pallet_delivery),
        ("signature_confirmation", &c.signature_confirmation),
        (
            "recipient_identity_verification",
            &c.recipient_identity_verification,
        ),
        ("recipient_age_verification", &c.recipient_age_verification),
    ] {
        constraints.insert(name.into(), opt_str(value.as_deref()));
    }
    i.insert("shipping_constraints".into(), constraints.into());
    i.insert(
        "substitution_type".into(),
        opt_str(d.substitution_type.as_deref()),
    );
    let substitutions: Array = d
        .substitution_options
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("asin".into(), opt_str(s.asin.as_deref()));
            m.insert("sku".into(), opt_str(s.sku.as_deref()));
            m.insert("title".into(), opt_str(s.title.as_deref()));
            m.insert("quantity".into(), opt_int(s.quantity_ordered));
            m.into()
        })
        .collect();
    i.insert("substitutions".into(), substitutions.into());
    i.into()
}

/// An event as a rule sees it: `#{type, at, …}` with the fields of its kind:
/// `from`/`to` for status changes, `reason` for a shipment exception, `hours` for an SLA
/// warning, `name` for a schedule; tracking events also name their parcel (`carrier`,
/// `tracking_number`), the one given as `shipment`.
pub fn event(kind: &EventKind, at: DateTime<Utc>) -> Dynamic {
    let mut m = Map::new();
    m.insert("type".into(), kind.name().into());
    match kind {
        EventKind::OrderStatusChanged { from, to } => {
            m.insert("from".into(), opt_str(from.map(|s| s.as_str())));
            m.insert("to".into(), to.as_str().into());
        }
        EventKind::TrackingUpdated { from, to, parcel } => {
            m.insert("from".into(), opt_str(from.map(|s| s.as_str())));
            m.insert("to".into(), to.as_str().into());
            insert_parcel(&mut m, parcel);
        }
        EventKind::SlaAtRisk { hours } => {
            m.insert("hours".into(), (*hours).into());
        }
        EventKind::ShipmentException { reason, parcel } => {
            m.insert("reason".into(), reason.clone().into());
            insert_parcel(&mut m, parcel);
        }
        EventKind::TrackingCondition { condition, parcel } => {
            m.insert("condition".into(), condition.clone().into());
            insert_parcel(&mut m, parcel);
        }
        EventKind::Schedule { name } => {
            m.insert("name".into(), name.clone().into());
        }
        EventKind::BuyerMessageReceived => {}
    }
    m.insert("at".into(), time(at));
    m.into()
}

fn insert_parcel(m: &mut Map, parcel: &ParcelRef) {
    m.insert("carrier".into(), parcel.carrier.clone().into());
    m.insert(
        "tracking_number".into(),
        parcel.tracking_number.clone().into(),
    );
}

/// A buyer message as a rule sees it. Fields: `subject` (what it stands for), `id`,
/// `channel`, `account`, `marketplace`, `from`, `title` (the mail's subject line),
/// `body`, `received_at`, `hours_open` (whole hours since it arrived), `answered`,
/// `order_id_found`, `tracking_number_found`, `language`, `intent`, `order` (the order
/// it is about, or `()`), `customer_orders` (the same customer's orders on every
/// connected channel; empty until the customer index exists), `thread` (the same
/// buyer's other messages about the same order, see [`with_thread`]).
pub fn message(
    msg: &BuyerMessage,
    order: Option<&StoredOrder>,
    customer_orders: &[StoredOrder],
    now: DateTime<Utc>,
) -> Dynamic {
    let mut m = Map::new();
    m.insert("subject".into(), msg.subject_key().to_string().into());
    m.insert("id".into(), msg.id.clone().into());
    m.insert("channel".into(), msg.channel.as_str().into());
    m.insert("account".into(), msg.account.clone().into());
    m.insert("marketplace".into(), opt_str(msg.marketplace_id.as_deref()));
    m.insert("from".into(), msg.from.clone().into());
    m.insert("title".into(), msg.subject.clone().into());
    m.insert("body".into(), msg.body.clone().into());
    m.insert("received_at".into(), time(msg.received_at));
    m.insert(
        "hours_open".into(),
        (now - msg.received_at).num_hours().max(0).into(),
    );
    m.insert("answered".into(), msg.answered.into());
    m.insert("order_id_found".into(), opt_str(msg.order_id.as_deref()));
    m.insert(
        "tracking_number_found".into(),
        opt_str(msg.tracking_number.as_deref()),
    );
    m.insert("language".into(), opt_str(msg.language.as_deref()));
    m.insert("intent".into(), opt_str(msg.intent.as_deref()));
    m.insert(
        "order".into(),
        order.map_or(Dynamic::UNIT, |o| self::order(o, now)),
    );
    let others: Array = customer_orders
        .iter()
        .map(|o| self::order(o, now))
        .collect();
    m.insert("customer_orders".into(), others.into());
    m.insert("thread".into(), Array::new().into());
    m.into()
}

/// The writer's orders on other channels, as `msg.customer_orders`: each an order (see
/// [`order`]) with `match_confidence` (0.5 a name only, 0.75 name and city, 0.9 name
/// and postcode, 1.0 the same e-mail address or the order number the buyer gave) and
/// `match_reason`, best first.
pub fn with_customer_matches(
    msg: Dynamic,
    matches: &[crate::customers::CustomerMatch],
    now: DateTime<Utc>,
) -> Dynamic {
    let Some(mut m) = msg.try_cast::<Map>() else {
        return Dynamic::UNIT;
    };
    let orders: Array = matches
        .iter()
        .map(|found| {
            let view = order(&found.order, now);
            match view.try_cast::<Map>() {
                Some(mut o) => {
                    o.insert("match_confidence".into(), found.confidence.into());
                    o.insert("match_reason".into(), found.reason.into());
                    Dynamic::from(o)
                }
                None => Dynamic::UNIT,
            }
        })
        .collect();
    m.insert("customer_orders".into(), orders.into());
    m.into()
}

/// The other messages of a message's thread (the same buyer about the same order), as
/// `msg.thread`: each with `id`, `title`, `received_at`, `intent` and `answered`,
/// oldest first.
pub fn with_thread(msg: Dynamic, others: &[BuyerMessage]) -> Dynamic {
    let Some(mut m) = msg.try_cast::<Map>() else {
        return Dynamic::UNIT;
    };
    let thread: Array = others
        .iter()
        .map(|o| {
            let mut t = Map::new();
            t.insert("id".into(), o.id.clone().into());
            t.insert("title".into(), o.subject.clone().into());
            t.insert("received_at".into(), time(o.received_at));
            t.insert("intent".into(), opt_str(o.intent.as_deref()));
            t.insert("answered".into(), o.answered.into());
            Dynamic::from(t)
        })
        .collect();
    m.insert("thread".into(), thread.into());
    m.into()
}

/// A parcel as a rule sees it. Fields: `subject` (its order's), `carrier`,
/// `tracking_number`, `tracking_url`, `status` (normalised), `exception_reason`,
/// `raw_code`, `status_text`, `last_event_at`, `last_event_location`,
/// `estimated_delivery`, `days_since_last_event`, `late` (past the estimated delivery
/// and not delivered), `conditions` (what nightdesk derived: `not_scanned`, `stalled`,
/// `late`), `order` (or `()`).
pub fn shipment(parcel: &Shipment, order: Option<&StoredOrder>, now: DateTime<Utc>) -> Dynamic {
    let mut m = Map::new();
    let subject = order
        .map(|o| o.order.subject().to_string())
        .unwrap_or_else(|| format!("parcel:{}", parcel.tracking_number));
    m.insert("subject".into(), subject.into());
    m.insert("carrier".into(), parcel.carrier.clone().into());
    m.insert(
        "tracking_number".into(),
        parcel.tracking_number.clone().into(),
    );
    m.insert(
        "tracking_url".into(),
        opt_str(parcel.tracking_url.as_deref()),
    );
    m.insert("status".into(), parcel.status.as_str().into());
    m.insert(
        "exception_reason".into(),
        opt_str(parcel.exception_reason.as_deref()),
    );
    m.insert("raw_code".into(), opt_str(parcel.raw_code.as_deref()));
    m.insert("status_text".into(), opt_str(parcel.status_text.as_deref()));
    m.insert("last_event_at".into(), opt_time(parcel.last_event_at));
    m.insert(
        "last_event_location".into(),
        opt_str(parcel.last_event_location.as_deref()),
    );
    m.insert(
        "estimated_delivery".into(),
        opt_time(parcel.estimated_delivery),
    );
    let quiet = parcel
        .last_event_at
        .map_or(Dynamic::UNIT, |t| whole_days(t, now).into());
    m.insert("days_since_last_event".into(), quiet);
    let late = parcel.estimated_delivery.is_some_and(|due| now > due)
        && parcel.status != TrackingStatus::Delivered;
    m.insert("late".into(), late.into());
    let conditions: rhai::Array = parcel
        .conditions
        .iter()
        .map(|c| Dynamic::from(c.clone()))
        .collect();
    m.insert("conditions".into(), conditions.into());
    m.insert(
        "order".into(),
        order.map_or(Dynamic::UNIT, |o| self::order(o, now)),
    );
    m.into()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use rhai::{Engine, Scope};

    use super::*;
    use crate::model::{
        Fulfillment, ItemDetails, Order, OrderDetails, SalesChannel, ShippingArea,
        ShippingConstraints, SubstitutionOption,
    };

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn usd(amount: &str) -> Option<Money> {
        Some(Money {
            currency: "USD".into(),
            amount: amount.into(),
        })
    }

    fn stored(details: OrderDetails, items: Vec<OrderItem>) -> StoredOrder {
        let purchase = now() - chrono::Duration::days(2);
        StoredOrder {
            order: Order {
                customer: Default::default(),
                channel: SalesChannel::Amazon,
                account: "us".into(),
                id: "113-4829301-5520617".into(),
                marketplace_id: Some("ATVPDKIKX0DER".into()),
                status: OrderStatus::Unshipped,
                fulfillment: Some(Fulfillment::Mfn),
                purchase_date: purchase,
                last_update: purchase,
                earliest_ship_date: None,
                latest_ship_date: None,
                earliest_delivery_date: Some(now()),
                latest_delivery_date: None,
                total: usd("24.99"),
                order_type: Some("StandardOrder".into()),
                is_prime: false,
                is_business: false,
                items,
                details,
            },
            status_since: purchase,
            first_seen: purchase,
        }
    }

    fn line(details: ItemDetails) -> OrderItem {
        OrderItem {
            id: "05015851154158".into(),
            asin: Some("B00551Q3CS".into()),
            sku: Some("SKU-1".into()),
            title: Some("Card Book".into()),
            quantity_ordered: 2,
            quantity_shipped: 0,
            price: usd("10.00"),
            tax: usd("1.01"),
            buyer_requested_cancel: false,
            buyer_cancel_reason: None,
            details,
        }
    }

    /// Each expression, run by Rhai with `order` in scope, must be `true`.
    fn holds(stored: &StoredOrder, expressions: &[&str]) {
        let engine = Engine::new();
        for expression in expressions {
            let mut scope = Scope::new();
            scope.push_dynamic("order", super::order(stored, now()));
            match engine.eval_with_scope::<bool>(&mut scope, expression) {
                Ok(true) => {}
                Ok(false) => panic!("false: {expression}"),
                Err(e) => panic!("{expression}: {e}"),
            }
        }
    }

    #[test]
    fn order_details_are_exposed_under_their_names() {
        let details = OrderDetails {
            seller_order_id: Some("SO-1".into()),
            sales_channel: Some("Amazon.com".into()),
            shipment_service_level_category: Some("NextDay".into()),
            easy_ship_shipment_status: Some("PendingPickUp".into()),
            payment_method: Some("Other".into()),
            payment_method_details: vec!["CreditCard".into(), "GiftCertificate".into()],
            number_of_items_unshipped: Some(1),
            is_iba: Some(true),
            is_replacement: Some(true),
            replaced_order_id: Some("113-0000000-0000000".into()),
            promise_response_due_date: Some(now()),
            ship_to: Some(ShippingArea {
                city: Some("SEATTLE".into()),
                state_or_region: Some("WA".into()),
                postal_code: Some("98121".into()),
                country_code: Some("US".into()),
            }),
            ..OrderDetails::default()
        };
        holds(
            &stored(details, vec![]),
            &[
                r#"order.seller_order_id == "SO-1""#,
                r#"order.sales_channel == "Amazon.com""#,
                r#"order.ship_service_category == "NextDay""#,
                r#"order.easy_ship_status == "PendingPickUp""#,
                r#"order.payment_method_details[1] == "GiftCertificate""#,
                r#""CreditCard" in order.payment_method_details"#,
                "order.items_unshipped == 1",
                "order.is_iba && order.is_replacement && !order.is_ispu",
                r#"order.replaced_order_id == "113-0000000-0000000""#,
                r#"order.promise_response_due_date == "2026-11-22T12:00:00Z""#,
                r#"order.earliest_delivery_date == "2026-11-22T12:00:00Z""#,
                r#"order.ship_country == "US" && order.ship_postal_code == "98121""#,
                r#"order.ship_city == "SEATTLE" && order.ship_state == "WA""#,
            ],
        );
    }

    #[test]
    fn unstated_details_are_unit_and_unstated_flags_false() {
        holds(
            &stored(OrderDetails::default(), vec![line(ItemDetails::default())]),
            &[
                "order.seller_order_id == () && order.sales_channel == ()",
                "order.ship_country == () && order.items_shipped == ()",
                "order.payment_method_details.len() == 0",
                "order.promise_response_due_date == ()",
                // A flag is usable in `if` even when Amazon did not send it.
                "if order.is_premium || order.is_access_point { false } else { true }",
                "!order.items[0].is_gift && order.items[0].shipping_price == ()",
                "order.items[0].shipping_constraints.signature_confirmation == ()",
                "order.items[0].substitutions.len() == 0",
                "order.items[0].units_per_item == ()",
            ],
        );
    }

    #[test]
    fn item_details_are_exposed_under_their_names() {
        let details = ItemDetails {
            shipping_price: usd("4.99"),
            promotion_discount: usd("1.00"),
            promotion_ids: vec!["PROMO-1".into()],
            is_gift: Some(true),
            condition_id: Some("Used".into()),
            condition_subtype_id: Some("Mint".into()),
            scheduled_delivery_end: Some(now()),
            number_of_items: Some(6),
            amazon_programs: vec!["SUBSCRIBE_AND_SAVE".into()],
            shipping_constraints: ShippingConstraints {
                signature_confirmation: Some("MANDATORY".into()),
                ..ShippingConstraints::default()
            },
            substitution_type: Some("CUSTOMER_PREFERENCE".into()),
            substitution_options: vec![SubstitutionOption {
                asin: Some("B0TEST0002".into()),
                quantity_ordered: Some(1),
                ..SubstitutionOption::default()
            }],
            ..ItemDetails::default()
        };
        holds(
            &stored(OrderDetails::default(), vec![line(details)]),
            &[
                r#"order.items[0].tax.amount == "1.01""#,
                r#"order.items[0].shipping_price.amount == "4.99""#,
                r#"order.items[0].promotion_discount.currency == "USD""#,
                r#"order.items[0].promotion_ids == ["PROMO-1"]"#,
                "order.items[0].is_gift",
                r#"order.items[0].condition == "Used" && order.items[0].condition_subtype == "Mint""#,
                r#"order.items[0].scheduled_delivery_end == "2026-11-22T12:00:00Z""#,
                "order.items[0].units_per_item == 6",
                r#""SUBSCRIBE_AND_SAVE" in order.items[0].amazon_programs"#,
                r#"order.items[0].shipping_constraints.signature_confirmation == "MANDATORY""#,
                "order.items[0].shipping_constraints.pallet_delivery == ()",
                r#"order.items[0].substitution_type == "CUSTOMER_PREFERENCE""#,
                r#"order.items[0].substitutions[0].asin == "B0TEST0002""#,
                "order.items[0].substitutions[0].quantity == 1",
            ],
        );
    }
}
