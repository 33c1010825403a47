//! What a rule sees: read-only Rhai maps built from the store's state, with every field
//! always present (`()` when unknown) so that a misspelt field is an error.
//!
//! Every map names what it stands for in `subject` (`order:amazon/113-…`), which the
//! action functions use. Order fields: `id`, `channel`, `account`, `marketplace`, `status`, `fulfillment`
//! ("AFN"/"MFN"), `purchase_date`, `last_update`, `status_since`, `earliest_ship_date`,
//! `latest_ship_date`, `latest_delivery_date` (ISO 8601 strings or `()`), `age_days`,
//! `days_in_status`, `pending_days` (whole days; `pending_days` is 0 unless Pending),
//! `buyer_requested_cancel`, `is_prime`, `is_business`, `order_type`, `total`
//! (`#{amount, currency}` or `()`), `items` (array of `#{id, asin, sku, title, quantity,
//! quantity_shipped, price, buyer_requested_cancel, cancel_reason}`).

use chrono::{DateTime, SecondsFormat, Utc};
use rhai::{Array, Dynamic, Map};

use crate::model::{EventKind, Money, OrderStatus, StoredOrder};

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

/// An event as a rule sees it: `#{type, from, to, at}`.
pub fn event(kind: &EventKind, at: DateTime<Utc>) -> Dynamic {
    let mut m = Map::new();
    m.insert("type".into(), kind.name().into());
    match kind {
        EventKind::OrderStatusChanged { from, to } => {
            m.insert("from".into(), opt_str(from.map(|s| s.as_str())));
            m.insert("to".into(), to.as_str().into());
        }
    }
    m.insert("at".into(), time(at));
    m.into()
}
