//! What a rule sees: read-only Rhai maps built from the store's state, with every field
//! always present (`()` when unknown) so that a misspelt field is an error.
//!
//! Every map names what it stands for in `subject` (`order:amazon/113-…`), which the
//! action functions use. Order fields: `id`, `language` and `timezone` (the
//! marketplace's), `channel`, `account`, `marketplace`, `status`, `fulfillment`
//! ("AFN"/"MFN"), `purchase_date`, `last_update`, `status_since`, `earliest_ship_date`,
//! `latest_ship_date`, `latest_delivery_date` (ISO 8601 strings or `()`), `age_days`,
//! `days_in_status`, `pending_days` (whole days; `pending_days` is 0 unless Pending),
//! `buyer_requested_cancel`, `is_prime`, `is_business`, `order_type`, `total`
//! (`#{amount, currency}` or `()`), `items` (array of `#{id, asin, sku, title, quantity,
//! quantity_shipped, price, buyer_requested_cancel, cancel_reason}`).

use chrono::{DateTime, SecondsFormat, Utc};
use rhai::{Array, Dynamic, Map};

use crate::model::{
    BuyerMessage, EventKind, Money, OrderStatus, Shipment, StoredOrder, TrackingStatus,
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
        "latest_delivery_date".into(),
        opt_time(o.latest_delivery_date),
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
    let items: Array = o
        .items
        .iter()
        .map(|item| {
            let mut i = Map::new();
            i.insert("id".into(), item.id.clone().into());
            i.insert("asin".into(), opt_str(item.asin.as_deref()));
            i.insert("sku".into(), opt_str(item.sku.as_deref()));
            i.insert("title".into(), opt_str(item.title.as_deref()));
            i.insert("quantity".into(), item.quantity_ordered.into());
            i.insert("quantity_shipped".into(), item.quantity_shipped.into());
            i.insert("price".into(), money(item.price.as_ref()));
            i.insert(
                "buyer_requested_cancel".into(),
                item.buyer_requested_cancel.into(),
            );
            i.insert(
                "cancel_reason".into(),
                opt_str(item.buyer_cancel_reason.as_deref()),
            );
            i.into()
        })
        .collect();
    m.insert("items".into(), items.into());
    m.into()
}

/// An event as a rule sees it: `#{type, at, …}` with the fields of its kind.
pub fn event(kind: &EventKind, at: DateTime<Utc>) -> Dynamic {
    let mut m = Map::new();
    m.insert("type".into(), kind.name().into());
    match kind {
        EventKind::OrderStatusChanged { from, to } => {
            m.insert("from".into(), opt_str(from.map(|s| s.as_str())));
            m.insert("to".into(), to.as_str().into());
        }
        EventKind::TrackingUpdated { from, to } => {
            m.insert("from".into(), opt_str(from.map(|s| s.as_str())));
            m.insert("to".into(), to.as_str().into());
        }
        EventKind::SlaAtRisk { hours } => {
            m.insert("hours".into(), (*hours).into());
        }
        EventKind::ShipmentException { reason } => {
            m.insert("reason".into(), reason.clone().into());
        }
        EventKind::Schedule { name } => {
            m.insert("name".into(), name.clone().into());
        }
        EventKind::BuyerMessageReceived => {}
    }
    m.insert("at".into(), time(at));
    m.into()
}

/// A buyer message as a rule sees it. Fields: `subject` (what it stands for), `id`,
/// `channel`, `account`, `marketplace`, `from`, `title` (the mail's subject line),
/// `body`, `received_at`, `hours_open` (whole hours since it arrived), `answered`,
/// `order_id_found`, `tracking_number_found`, `language`, `intent`, `order` (the order
/// it is about, or `()`), `customer_orders` (the same customer's orders on every
/// connected channel; empty until the customer index exists).
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
    m.into()
}

/// A parcel as a rule sees it. Fields: `subject` (its order's), `carrier`,
/// `tracking_number`, `tracking_url`, `status` (normalised), `exception_reason`,
/// `raw_code`, `status_text`, `last_event_at`, `last_event_location`,
/// `estimated_delivery`, `days_since_last_event`, `late` (past the estimated delivery
/// and not delivered), `order` (or `()`).
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
    m.insert(
        "order".into(),
        order.map_or(Dynamic::UNIT, |o| self::order(o, now)),
    );
    m.into()
}
