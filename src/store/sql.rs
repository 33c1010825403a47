//! The store's SQL, written once for both backends. `sql_store!` expands to the `Store`
//! impl of a backend type that has a `pool` field and a `write_tx()` method; the only
//! SQL that differs between backends (claiming due work) is passed in.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::model::{
    EventKind, Money, Order, OrderItem, ParcelRef, Shipment, StoredOrder, Subject, TrackingStatus,
};

use super::{StoreError, from_ms};

/// Content hash of an order version: equal hashes mean nothing changed. The items are
/// part of the order's JSON, details and all, so a change inside an item counts.
pub(super) fn content_hash(order: &Order) -> Result<String, StoreError> {
    let json = serde_json::to_vec(order).map_err(|e| corrupt("order", e))?;
    Ok(hex::encode(Sha256::digest(&json)))
}

/// The order as stored in `orders.body`: everything but the items.
pub(super) fn order_body(order: &Order) -> Result<String, StoreError> {
    let mut without_items = order.clone();
    without_items.items.clear();
    serde_json::to_string(&without_items).map_err(|e| corrupt("order", e))
}

/// An item as stored in `order_items.body`.
pub(super) fn item_body(order: &Order, item: &OrderItem) -> Result<String, StoreError> {
    serde_json::to_string(item)
        .map_err(|e| corrupt(&format!("item {} of order {}", item.id, order.id), e))
}

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

/// Ids per `IN (...)` query: far below both backends' bind-parameter limits.
pub(super) const ID_CHUNK: usize = 500;

/// `PREFIX ($first, $first+1, ...)` with `count` placeholders.
pub(super) fn in_list(prefix: &str, first: usize, count: usize) -> String {
    let placeholders: Vec<String> = (first..first + count).map(|n| format!("${n}")).collect();
    format!("{prefix} ({})", placeholders.join(", "))
}

/// An `orders` row as read back.
pub(super) type OrderRow = (String, String, i64, i64, String);
/// An `order_items` row as read back, keyed by its order.
pub(super) type ItemRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
);

pub(super) const ORDER_COLUMNS: &str =
    "o.channel, o.order_id, o.status_since, o.first_seen, o.body";
pub(super) const ITEM_COLUMNS: &str = "i.channel, i.order_id, i.item_id, i.asin, i.sku, i.title, i.quantity_ordered, i.quantity_shipped, i.price_amount, i.price_currency, i.tax_amount, i.tax_currency, i.buyer_requested_cancel, i.buyer_cancel_reason, i.body";

fn money(amount: Option<String>, currency: Option<String>) -> Option<Money> {
    Some(Money {
        amount: amount?,
        currency: currency?,
    })
}

/// Join orders with their items (rows ordered by position).
pub(super) fn assemble(
    orders: Vec<OrderRow>,
    items: Vec<ItemRow>,
) -> Result<Vec<StoredOrder>, StoreError> {
    let mut by_order: std::collections::HashMap<(String, String), Vec<OrderItem>> =
        Default::default();
    for (
        channel,
        order_id,
        item_id,
        asin,
        sku,
        title,
        qo,
        qs,
        pa,
        pc,
        ta,
        tc,
        cancel,
        reason,
        body,
    ) in items
    {
        let item = match body {
            // The whole item, as ingested.
            Some(body) => serde_json::from_str(&body)
                .map_err(|e| corrupt(&format!("item {item_id} of order {order_id}"), e))?,
            // Written before items were stored whole: what the columns hold.
            None => OrderItem {
                id: item_id,
                asin,
                sku,
                title,
                quantity_ordered: qo,
                quantity_shipped: qs,
                price: money(pa, pc),
                tax: money(ta, tc),
                buyer_requested_cancel: cancel != 0,
                buyer_cancel_reason: reason,
                details: Default::default(),
            },
        };
        by_order.entry((channel, order_id)).or_default().push(item);
    }
    orders
        .into_iter()
        .map(|(channel, order_id, status_since, first_seen, body)| {
            let mut order: Order = serde_json::from_str(&body)
                .map_err(|e| corrupt(&format!("order {order_id}"), e))?;
            order.items = by_order.remove(&(channel, order_id)).unwrap_or_default();
            Ok(StoredOrder {
                order,
                status_since: from_ms(status_since),
                first_seen: from_ms(first_seen),
            })
        })
        .collect()
}

pub(super) const OUTBOX_COLUMNS: &str = "id, idempotency_key, rule, rule_version, subject, kind, payload, state, attempts, last_error, created_at, updated_at, next_attempt_at, progress, decided_by";

pub(super) type OutboxTuple = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
);

/// Alerts of one channel and rule share a group: they are folded into one message.
pub(super) fn group_key(action: &crate::model::PlannedAction) -> Option<String> {
    match &action.request {
        crate::model::ActionRequest::Alert { channel, .. } => {
            Some(format!("{channel}|{}", action.rule))
        }
        _ => None,
    }
}

/// What a claim returns (`RETURNING … progress, group_key` in both backends).
pub(super) type ClaimTuple = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
);

pub(super) fn claimed(rows: Vec<ClaimTuple>) -> Vec<super::ClaimedAction> {
    let mut claimed: Vec<_> = rows
        .into_iter()
        .map(
            |(
                id,
                key,
                rule,
                rule_version,
                subject,
                kind,
                payload,
                attempt,
                fence,
                progress,
                group_key,
            )| {
                super::ClaimedAction {
                    id,
                    idempotency_key: key,
                    rule,
                    rule_version,
                    subject: crate::model::Subject::from_stored(subject),
                    kind,
                    payload,
                    attempt,
                    fence,
                    progress: progress.and_then(|p| serde_json::from_str(&p).ok()),
                    group_key,
                }
            },
        )
        .collect();
    claimed.sort_by_key(|c| c.id);
    claimed
}

pub(super) fn outbox_row(
    (
        id,
        key,
        rule,
        rule_version,
        subject,
        kind,
        payload,
        state,
        attempts,
        last_error,
        created,
        updated,
        next_attempt,
        progress,
        decided_by,
    ): OutboxTuple,
) -> super::OutboxRow {
    super::OutboxRow {
        id,
        idempotency_key: key,
        rule,
        rule_version,
        subject,
        kind,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
        state,
        attempts,
        last_error,
        created_at: from_ms(created),
        updated_at: from_ms(updated),
        next_attempt_at: from_ms(next_attempt),
        progress: progress.and_then(|p| serde_json::from_str(&p).ok()),
        decided_by,
    }
}

/// Events as read back; a row that does not parse is corrupt data, named by its id.
pub(super) fn events(
    rows: Vec<(i64, String, String, i64)>,
) -> Result<Vec<crate::model::Event>, StoreError> {
    rows.into_iter()
        .map(|(id, subject, payload, at)| {
            let kind =
                serde_json::from_str(&payload).map_err(|e| corrupt(&format!("event {id}"), e))?;
            Ok(crate::model::Event {
                id,
                subject: crate::model::Subject::from_stored(subject),
                kind,
                at: from_ms(at),
            })
        })
        .collect()
}

/// When an order entered its status: a new Pending order has been pending since it was
/// bought; otherwise the status is as old as the update that brought it.
pub(super) fn status_since(order: &Order, previous: Option<(&str, i64)>) -> DateTime<Utc> {
    match previous {
        Some((status, since)) if status == order.status.as_str() => from_ms(since),
        Some(_) => order.last_update,
        None if order.status == crate::model::OrderStatus::Pending => order.purchase_date,
        None => order.last_update,
    }
}

/// A parcel as stored in `shipments.body`.
pub(super) fn shipment_body(subject: &Subject, shipment: &Shipment) -> Result<String, StoreError> {
    serde_json::to_string(shipment).map_err(|e| corrupt(&shipment_name(subject, shipment), e))
}

/// A stored parcel, read back; a body that does not parse is corrupt data, named.
pub(super) fn parse_shipment(subject: &str, body: &str) -> Result<Shipment, StoreError> {
    serde_json::from_str(body).map_err(|e| corrupt(&format!("shipment of {subject}"), e))
}

fn shipment_name(subject: &Subject, shipment: &Shipment) -> String {
    format!(
        "shipment {} {} of {subject}",
        shipment.carrier, shipment.tracking_number
    )
}

/// A `parcel_watch` row as read.
pub(super) type WatchTuple = (
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
);

pub(super) fn watch_of(row: WatchTuple) -> super::ParcelWatch {
    let (subject, carrier, tracking_number, query, shipped, promised, history, next, stopped) = row;
    super::ParcelWatch {
        subject: Subject::from_stored(subject),
        carrier,
        tracking_number,
        query,
        shipped_at: shipped.map(from_ms),
        promised_by: promised.map(from_ms),
        history,
        next_poll_at: from_ms(next),
        stopped_at: stopped.map(from_ms),
    }
}

/// What a report of a parcel changes against what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ShipmentChange {
    /// Identical to what is stored, or older than it: nothing to write.
    Unchanged,
    /// Not stored yet.
    New(Vec<EventKind>),
    /// Stored, and now described differently; events only when that matters to rules.
    Updated(Vec<EventKind>),
}

/// Compare a parcel's report with the stored description and say which events it makes:
/// `TrackingUpdated` when the normalised status changes (or the parcel is new), and
/// `ShipmentException` when it enters `Exception` or, already there, its reason changes
/// (a delay that becomes a loss is a new problem). Anything else (a newer scan, an ETA)
/// is written without an event.
pub(super) fn shipment_change(previous: Option<&Shipment>, next: &Shipment) -> ShipmentChange {
    let parcel = ParcelRef::of(next);
    let exception = || EventKind::ShipmentException {
        reason: next
            .exception_reason
            .clone()
            .unwrap_or_else(|| "other".to_owned()),
        parcel: parcel.clone(),
    };
    let Some(previous) = previous else {
        let mut events = vec![EventKind::TrackingUpdated {
            from: None,
            to: next.status,
            parcel: parcel.clone(),
        }];
        if next.status == TrackingStatus::Exception {
            events.push(exception());
        }
        events.extend(new_conditions(&[], next, &parcel));
        return ShipmentChange::New(events);
    };
    // Reports arrive from more than one source and out of order; one whose last scan is
    // older than the stored one would move the parcel backwards.
    let older = matches!(
        (previous.last_event_at, next.last_event_at),
        (Some(stored), Some(reported)) if reported < stored
    );
    if previous == next || older {
        return ShipmentChange::Unchanged;
    }
    let mut events = Vec::new();
    if previous.status != next.status {
        events.push(EventKind::TrackingUpdated {
            from: Some(previous.status),
            to: next.status,
            parcel: parcel.clone(),
        });
    }
    let new_problem = previous.status != TrackingStatus::Exception
        || previous.exception_reason != next.exception_reason;
    if next.status == TrackingStatus::Exception && new_problem {
        events.push(exception());
    }
    events.extend(new_conditions(&previous.conditions, next, &parcel));
    ShipmentChange::Updated(events)
}

/// `TrackingCondition` for each derived condition `next` has that `before` had not.
fn new_conditions(before: &[String], next: &Shipment, parcel: &ParcelRef) -> Vec<EventKind> {
    next.conditions
        .iter()
        .filter(|c| !before.contains(c))
        .map(|condition| EventKind::TrackingCondition {
            condition: condition.clone(),
            parcel: parcel.clone(),
        })
        .collect()
}

/// Upsert `$shipments` of `$subject` within the open transaction `$tx`, emitting their
/// events and counting into `$report` (shared by `record_shipments` and
/// `save_parcel_poll`, which must write in one transaction with the watch row).
macro_rules! write_shipments {
    ($tx:ident, $subject:expr, $shipments:expr, $now:expr, $report:ident) => {
        let subject: &$crate::model::Subject = $subject;
        let now: chrono::DateTime<chrono::Utc> = $now;
        for shipment in $shipments {
            let stored: Option<(String,)> = sqlx::query_as(
                "SELECT body FROM shipments WHERE subject = $1 AND carrier = $2 AND tracking_number = $3",
            )
            .bind(subject.as_str())
            .bind(&shipment.carrier)
            .bind(&shipment.tracking_number)
            .fetch_optional(&mut *$tx)
            .await?;
            let previous = stored
                .map(|(body,)| $crate::store::sql::parse_shipment(subject.as_str(), &body))
                .transpose()?;
            let events = match $crate::store::sql::shipment_change(previous.as_ref(), shipment) {
                $crate::store::sql::ShipmentChange::Unchanged => {
                    $report.unchanged += 1;
                    continue;
                }
                $crate::store::sql::ShipmentChange::New(events) => {
                    $report.new += 1;
                    events
                }
                $crate::store::sql::ShipmentChange::Updated(events) => {
                    $report.updated += 1;
                    events
                }
            };
            sqlx::query(
                "INSERT INTO shipments (subject, carrier, tracking_number, status, body, first_seen, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)
                 ON CONFLICT (subject, carrier, tracking_number) DO UPDATE SET
                   status = excluded.status, body = excluded.body, updated_at = excluded.updated_at",
            )
            .bind(subject.as_str())
            .bind(&shipment.carrier)
            .bind(&shipment.tracking_number)
            .bind(shipment.status.as_str())
            .bind($crate::store::sql::shipment_body(subject, shipment)?)
            .bind($crate::store::to_ms(now))
            .execute(&mut *$tx)
            .await?;
            for kind in events {
                let payload = serde_json::to_string(&kind).map_err(|e| $crate::store::sql::corrupt("event", e))?;
                sqlx::query("INSERT INTO events (subject, kind, payload, at) VALUES ($1, $2, $3, $4)")
                    .bind(subject.as_str())
                    .bind(kind.name())
                    .bind(payload)
                    .bind($crate::store::to_ms(now))
                    .execute(&mut *$tx)
                    .await?;
                $report.events += 1;
            }
        }
    };
}
pub(super) use write_shipments;

macro_rules! sql_store {
    ($store:ty, backend = $backend:literal, claim_sql = $claim_sql:expr) => {
        impl $store {
            /// Claim due rows (of one alert group, if given) under a new lease and fence.
            async fn claim(
                &self,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease: chrono::Duration,
                limit: i64,
                group_key: Option<&str>,
            ) -> Result<Vec<$crate::store::ClaimedAction>, $crate::store::StoreError> {
                use $crate::store::to_ms;
                let mut tx = self.write_tx().await?;
                let rows: Vec<$crate::store::sql::ClaimTuple> = sqlx::query_as($claim_sql)
                    .bind(owner)
                    .bind(to_ms(now + lease))
                    .bind(to_ms(now))
                    .bind(limit)
                    .bind(group_key)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok($crate::store::sql::claimed(rows))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn checkpoint(&self, source: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, $crate::store::StoreError> {
                let row: Option<(i64,)> = sqlx::query_as("SELECT watermark FROM checkpoints WHERE source = $1")
                    .bind(source)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|(ms,)| $crate::store::from_ms(ms)))
            }

            async fn known_versions(
                &self,
                channel: $crate::model::SalesChannel,
                ids: &[String],
            ) -> Result<std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>, $crate::store::StoreError> {
                let mut known = std::collections::HashMap::new();
                for chunk in ids.chunks($crate::store::sql::ID_CHUNK) {
                    let sql = $crate::store::sql::in_list(
                        "SELECT order_id, last_update FROM orders WHERE channel = $1 AND order_id IN",
                        2,
                        chunk.len(),
                    );
                    let mut query = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql)).bind(channel.as_str());
                    for id in chunk {
                        query = query.bind(id);
                    }
                    for (id, ms) in query.fetch_all(&self.pool).await? {
                        known.insert(id, $crate::store::from_ms(ms));
                    }
                }
                Ok(known)
            }

            async fn ingest(
                &self,
                source: &str,
                orders: &[$crate::model::Order],
                watermark: Option<chrono::DateTime<chrono::Utc>>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::IngestReport, $crate::store::StoreError> {
                use $crate::store::{sql, to_ms};
                let mut report = $crate::store::IngestReport::default();
                let mut tx = self.write_tx().await?;
                for order in orders {
                    let hash = sql::content_hash(order)?;
                    let previous: Option<(String, i64, String, i64)> = sqlx::query_as(
                        "SELECT status, last_update, content_hash, status_since FROM orders WHERE channel = $1 AND order_id = $2",
                    )
                    .bind(order.channel.as_str())
                    .bind(&order.id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some((_, last_update, stored_hash, _)) = &previous {
                        // The overlap of windows re-reads orders; an older or identical
                        // version changes nothing.
                        if *stored_hash == hash || to_ms(order.last_update) < *last_update {
                            report.unchanged += 1;
                            continue;
                        }
                    }
                    let since = sql::status_since(order, previous.as_ref().map(|(s, _, _, since)| (s.as_str(), *since)));
                    sqlx::query(
                        "INSERT INTO orders (channel, order_id, account, marketplace_id, status, fulfillment, purchase_date, last_update, status_since, first_seen, content_hash, body)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                         ON CONFLICT (channel, order_id) DO UPDATE SET
                           account = excluded.account, marketplace_id = excluded.marketplace_id, status = excluded.status,
                           fulfillment = excluded.fulfillment, purchase_date = excluded.purchase_date,
                           last_update = excluded.last_update, status_since = excluded.status_since,
                           content_hash = excluded.content_hash, body = excluded.body",
                    )
                    .bind(order.channel.as_str())
                    .bind(&order.id)
                    .bind(&order.account)
                    .bind(order.marketplace_id.as_deref())
                    .bind(order.status.as_str())
                    .bind(order.fulfillment.map(|f| f.as_str()))
                    .bind(to_ms(order.purchase_date))
                    .bind(to_ms(order.last_update))
                    .bind(to_ms(since))
                    .bind(to_ms(now))
                    .bind(&hash)
                    .bind(sql::order_body(order)?)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM customer_keys WHERE channel = $1 AND order_id = $2")
                        .bind(order.channel.as_str())
                        .bind(&order.id)
                        .execute(&mut *tx)
                        .await?;
                    for key in $crate::customers::index_keys(&order.customer) {
                        sqlx::query(
                            "INSERT INTO customer_keys (key, channel, order_id) VALUES ($1, $2, $3)
                             ON CONFLICT (key, channel, order_id) DO NOTHING",
                        )
                        .bind(key)
                        .bind(order.channel.as_str())
                        .bind(&order.id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    sqlx::query("DELETE FROM order_items WHERE channel = $1 AND order_id = $2")
                        .bind(order.channel.as_str())
                        .bind(&order.id)
                        .execute(&mut *tx)
                        .await?;
                    for (position, item) in order.items.iter().enumerate() {
                        sqlx::query(
                            "INSERT INTO order_items (channel, order_id, item_id, position, asin, sku, title, quantity_ordered, quantity_shipped, price_amount, price_currency, tax_amount, tax_currency, buyer_requested_cancel, buyer_cancel_reason, body)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                             ON CONFLICT (channel, order_id, item_id) DO NOTHING",
                        )
                        .bind(order.channel.as_str())
                        .bind(&order.id)
                        .bind(&item.id)
                        .bind(position as i64)
                        .bind(item.asin.as_deref())
                        .bind(item.sku.as_deref())
                        .bind(item.title.as_deref())
                        .bind(item.quantity_ordered)
                        .bind(item.quantity_shipped)
                        .bind(item.price.as_ref().map(|m| m.amount.as_str()))
                        .bind(item.price.as_ref().map(|m| m.currency.as_str()))
                        .bind(item.tax.as_ref().map(|m| m.amount.as_str()))
                        .bind(item.tax.as_ref().map(|m| m.currency.as_str()))
                        .bind(i64::from(item.buyer_requested_cancel))
                        .bind(item.buyer_cancel_reason.as_deref())
                        .bind(sql::item_body(order, item)?)
                        .execute(&mut *tx)
                        .await?;
                    }
                    report.stored += 1;
                    let from = previous.as_ref().and_then(|(s, ..)| s.parse::<$crate::model::OrderStatus>().ok());
                    if from != Some(order.status) {
                        let kind = $crate::model::EventKind::OrderStatusChanged { from, to: order.status };
                        let payload = serde_json::to_string(&kind).map_err(|e| sql::corrupt("event", e))?;
                        sqlx::query("INSERT INTO events (subject, kind, payload, at) VALUES ($1, $2, $3, $4)")
                            .bind(order.subject().as_str())
                            .bind(kind.name())
                            .bind(payload)
                            .bind(to_ms(now))
                            .execute(&mut *tx)
                            .await?;
                        report.events += 1;
                    }
                }
                if let Some(watermark) = watermark {
                    sqlx::query(
                        "INSERT INTO checkpoints (source, watermark, updated_at) VALUES ($1, $2, $3)
                         ON CONFLICT (source) DO UPDATE SET
                           watermark = CASE WHEN excluded.watermark > checkpoints.watermark THEN excluded.watermark ELSE checkpoints.watermark END,
                           updated_at = excluded.updated_at",
                    )
                    .bind(source)
                    .bind(to_ms(watermark))
                    .bind(to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(report)
            }

            async fn record_shipments(
                &self,
                subject: &$crate::model::Subject,
                shipments: &[$crate::model::Shipment],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::ShipmentReport, $crate::store::StoreError> {
                let mut report = $crate::store::ShipmentReport::default();
                if shipments.is_empty() {
                    return Ok(report);
                }
                let mut tx = self.write_tx().await?;
                $crate::store::sql::write_shipments!(tx, subject, shipments, now, report);
                tx.commit().await?;
                Ok(report)
            }

            async fn watch_parcels(
                &self,
                watches: &[$crate::store::ParcelWatch],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<usize, $crate::store::StoreError> {
                use $crate::store::to_ms;
                let mut added = 0;
                let mut tx = self.write_tx().await?;
                for watch in watches {
                    let done = sqlx::query(
                        "INSERT INTO parcel_watch (subject, carrier, tracking_number, query, shipped_at,
                           promised_by, history, next_poll_at, stopped_at, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (subject, carrier, tracking_number) DO NOTHING",
                    )
                    .bind(watch.subject.as_str())
                    .bind(&watch.carrier)
                    .bind(&watch.tracking_number)
                    .bind(&watch.query)
                    .bind(watch.shipped_at.map(to_ms))
                    .bind(watch.promised_by.map(to_ms))
                    .bind(&watch.history)
                    .bind(to_ms(watch.next_poll_at))
                    .bind(watch.stopped_at.map(to_ms))
                    .bind(to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                    added += done.rows_affected() as usize;
                }
                tx.commit().await?;
                Ok(added)
            }

            async fn due_parcels(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> Result<Vec<$crate::store::ParcelWatch>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::sql::WatchTuple> = sqlx::query_as(
                    "SELECT subject, carrier, tracking_number, query, shipped_at, promised_by, history,
                            next_poll_at, stopped_at
                     FROM parcel_watch WHERE stopped_at IS NULL AND next_poll_at <= $1
                     ORDER BY next_poll_at, subject, carrier, tracking_number LIMIT $2",
                )
                .bind($crate::store::to_ms(now))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map($crate::store::sql::watch_of).collect())
            }

            async fn parcel_watches(
                &self,
                tracking_number: Option<&str>,
            ) -> Result<Vec<$crate::store::ParcelWatch>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::sql::WatchTuple> = sqlx::query_as(
                    "SELECT subject, carrier, tracking_number, query, shipped_at, promised_by, history,
                            next_poll_at, stopped_at
                     FROM parcel_watch WHERE $1 IS NULL OR tracking_number = $1
                     ORDER BY created_at, subject, carrier, tracking_number",
                )
                .bind(tracking_number)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map($crate::store::sql::watch_of).collect())
            }

            async fn save_parcel_poll(
                &self,
                watch: &$crate::store::ParcelWatch,
                shipment: Option<&$crate::model::Shipment>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::ShipmentReport, $crate::store::StoreError> {
                use $crate::store::to_ms;
                let mut report = $crate::store::ShipmentReport::default();
                let mut tx = self.write_tx().await?;
                sqlx::query(
                    "UPDATE parcel_watch SET query = $4, history = $5, next_poll_at = $6, stopped_at = $7
                     WHERE subject = $1 AND carrier = $2 AND tracking_number = $3",
                )
                .bind(watch.subject.as_str())
                .bind(&watch.carrier)
                .bind(&watch.tracking_number)
                .bind(&watch.query)
                .bind(&watch.history)
                .bind(to_ms(watch.next_poll_at))
                .bind(watch.stopped_at.map(to_ms))
                .execute(&mut *tx)
                .await?;
                if let Some(shipment) = shipment {
                    let shipments = std::slice::from_ref(shipment);
                    $crate::store::sql::write_shipments!(tx, &watch.subject, shipments, now, report);
                }
                tx.commit().await?;
                Ok(report)
            }

            async fn shipments(
                &self,
                subject: &$crate::model::Subject,
            ) -> Result<Vec<$crate::model::Shipment>, $crate::store::StoreError> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT body FROM shipments WHERE subject = $1 ORDER BY first_seen, carrier, tracking_number",
                )
                .bind(subject.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(body,)| $crate::store::sql::parse_shipment(subject.as_str(), &body))
                    .collect()
            }

            async fn events_since(&self, since: chrono::DateTime<chrono::Utc>) -> Result<Vec<$crate::model::Event>, $crate::store::StoreError> {
                let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
                    "SELECT id, subject, payload, at FROM events WHERE at >= $1 ORDER BY id",
                )
                .bind($crate::store::to_ms(since))
                .fetch_all(&self.pool)
                .await?;
                $crate::store::sql::events(rows)
            }

            async fn pending_events(&self, limit: i64) -> Result<Vec<$crate::model::Event>, $crate::store::StoreError> {
                let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
                    "SELECT id, subject, payload, at FROM events WHERE processed_at IS NULL ORDER BY id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                $crate::store::sql::events(rows)
            }

            async fn order(
                &self,
                channel: $crate::model::SalesChannel,
                id: &str,
            ) -> Result<Option<$crate::model::StoredOrder>, $crate::store::StoreError> {
                use $crate::store::sql;
                let orders: Vec<sql::OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM orders o WHERE o.channel = $1 AND o.order_id = $2",
                    sql::ORDER_COLUMNS
                )))
                .bind(channel.as_str())
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                let items: Vec<sql::ItemRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM order_items i WHERE i.channel = $1 AND i.order_id = $2 ORDER BY i.position",
                    sql::ITEM_COLUMNS
                )))
                .bind(channel.as_str())
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                Ok(sql::assemble(orders, items)?.into_iter().next())
            }

            async fn open_orders(
                &self,
                purchased_after: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<$crate::model::StoredOrder>, $crate::store::StoreError> {
                use $crate::store::{sql, to_ms};
                const OPEN: &str = "o.status NOT IN ('Canceled', 'Unfulfillable') AND o.purchase_date > $1";
                let orders: Vec<sql::OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM orders o WHERE {OPEN} ORDER BY o.purchase_date, o.order_id",
                    sql::ORDER_COLUMNS
                )))
                .bind(to_ms(purchased_after))
                .fetch_all(&self.pool)
                .await?;
                let items: Vec<sql::ItemRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM order_items i JOIN orders o ON o.channel = i.channel AND o.order_id = i.order_id WHERE {OPEN} ORDER BY i.position",
                    sql::ITEM_COLUMNS
                )))
                .bind(to_ms(purchased_after))
                .fetch_all(&self.pool)
                .await?;
                sql::assemble(orders, items)
            }

            async fn plan(
                &self,
                event: Option<i64>,
                actions: &[$crate::model::PlannedAction],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<usize, $crate::store::StoreError> {
                use $crate::store::{sql, to_ms};
                // The sweep asks about every open order; most ask for nothing. No write
                // transaction (and no fsync) for those.
                if actions.is_empty() && event.is_none() {
                    return Ok(0);
                }
                let mut tx = self.write_tx().await?;
                let mut inserted = 0;
                for action in actions {
                    let state = match (action.dry_run, &action.hold) {
                        (true, _) => "dry_run",
                        (false, Some(_)) => "held",
                        (false, None) => "planned",
                    };
                    let payload = serde_json::to_string(&action.request).map_err(|e| sql::corrupt("action", e))?;
                    let row: Option<(i64,)> = sqlx::query_as(
                        "INSERT INTO outbox (idempotency_key, rule, rule_version, subject, kind, payload, state, next_attempt_at, created_at, updated_at, last_error, group_key)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8, $9, $10)
                         ON CONFLICT (idempotency_key) DO NOTHING
                         RETURNING id",
                    )
                    .bind(&action.idempotency_key)
                    .bind(&action.rule)
                    .bind(&action.rule_version)
                    .bind(action.subject.as_str())
                    .bind(action.request.kind())
                    .bind(&payload)
                    .bind(state)
                    .bind(to_ms(now))
                    .bind(action.hold.as_deref())
                    .bind(sql::group_key(action))
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some((id,)) = row {
                        inserted += 1;
                        let detail = serde_json::json!({
                            "rule": action.rule, "rule_version": action.rule_version,
                            "key": action.idempotency_key, "state": state, "hold": action.hold,
                        });
                        sqlx::query("INSERT INTO audit (at, outbox_id, subject, kind, detail) VALUES ($1, $2, $3, $4, $5)")
                            .bind(to_ms(now))
                            .bind(id)
                            .bind(action.subject.as_str())
                            .bind("planned")
                            .bind(detail.to_string())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                if let Some(event) = event {
                    sqlx::query("UPDATE events SET processed_at = $1 WHERE id = $2")
                        .bind(to_ms(now))
                        .bind(event)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(inserted)
            }

            async fn existing_keys(&self, keys: &[String]) -> Result<std::collections::HashSet<String>, $crate::store::StoreError> {
                let mut found = std::collections::HashSet::new();
                for chunk in keys.chunks($crate::store::sql::ID_CHUNK) {
                    let sql = $crate::store::sql::in_list("SELECT idempotency_key FROM outbox WHERE idempotency_key IN", 1, chunk.len());
                    let mut query = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql));
                    for key in chunk {
                        query = query.bind(key);
                    }
                    found.extend(query.fetch_all(&self.pool).await?.into_iter().map(|(k,)| k));
                }
                Ok(found)
            }

            async fn count_actions(
                &self,
                kind: &str,
                rule: Option<&str>,
                since: chrono::DateTime<chrono::Utc>,
            ) -> Result<i64, $crate::store::StoreError> {
                let row: (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM outbox WHERE kind = $1 AND ($2 IS NULL OR rule = $2) AND created_at >= $3 AND state <> 'dry_run'",
                )
                .bind(kind)
                .bind(rule)
                .bind($crate::store::to_ms(since))
                .fetch_one(&self.pool)
                .await?;
                Ok(row.0)
            }

            async fn claim_due(
                &self,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease: chrono::Duration,
                limit: i64,
            ) -> Result<Vec<$crate::store::ClaimedAction>, $crate::store::StoreError> {
                self.claim(owner, now, lease, limit, None).await
            }

            async fn claim_group(
                &self,
                owner: &str,
                group_key: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease: chrono::Duration,
                limit: i64,
            ) -> Result<Vec<$crate::store::ClaimedAction>, $crate::store::StoreError> {
                self.claim(owner, now, lease, limit, Some(group_key)).await
            }

            async fn save_progress(
                &self,
                claim: &$crate::store::ClaimedAction,
                progress: &serde_json::Value,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::to_ms;
                let mut tx = self.write_tx().await?;
                let updated = sqlx::query(
                    "UPDATE outbox SET progress = $1, updated_at = $2 WHERE id = $3 AND fence = $4 AND state = 'claimed'",
                )
                .bind(progress.to_string())
                .bind(to_ms(now))
                .bind(claim.id)
                .bind(claim.fence)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Err($crate::store::StoreError::StaleLease(claim.id));
                }
                let detail = serde_json::json!({ "attempt": claim.attempt, "progress": progress });
                sqlx::query("INSERT INTO audit (at, outbox_id, subject, kind, detail) VALUES ($1, $2, $3, $4, $5)")
                    .bind(to_ms(now))
                    .bind(claim.id)
                    .bind(claim.subject.as_str())
                    .bind("progress")
                    .bind(detail.to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn channel_retry_until(&self, channel: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, $crate::store::StoreError> {
                let row: (Option<i64>,) = sqlx::query_as(
                    "SELECT MAX(next_attempt_at) FROM outbox WHERE state = 'retry' AND kind = 'alert' AND substr(group_key, 1, length($1)) = $1",
                )
                .bind(format!("{channel}|"))
                .fetch_one(&self.pool)
                .await?;
                Ok(row.0.map($crate::store::from_ms))
            }

            async fn last_delivery(&self, group_key: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, $crate::store::StoreError> {
                let row: (Option<i64>,) = sqlx::query_as(
                    "SELECT MAX(updated_at) FROM outbox WHERE group_key = $1 AND state = 'done'",
                )
                .bind(group_key)
                .fetch_one(&self.pool)
                .await?;
                Ok(row.0.map($crate::store::from_ms))
            }

            async fn decide(
                &self,
                id: i64,
                decision: $crate::store::Decide,
                who: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::OutboxRow, $crate::store::StoreError> {
                use $crate::store::{Decide, to_ms};
                let mut tx = self.write_tx().await?;
                let current: Option<(String, String)> = sqlx::query_as("SELECT state, subject FROM outbox WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some((state, subject)) = current else {
                    tx.rollback().await?;
                    return Err($crate::store::StoreError::NoSuchAction(id));
                };
                if state != "held" && state != "unknown" {
                    tx.rollback().await?;
                    return Err($crate::store::StoreError::NotDecidable { id, state });
                }
                let (new_state, kind) = match decision {
                    Decide::Approve => ("planned", "approved"),
                    Decide::Reject => ("rejected", "rejected"),
                };
                // An approved `unknown` was checked by a person and found not done: its
                // send marker is cleared so it is performed again.
                sqlx::query(
                    "UPDATE outbox SET state = $1, decided_by = $2, next_attempt_at = $3, updated_at = $3,
                        progress = CASE WHEN $4 THEN NULL ELSE progress END
                     WHERE id = $5",
                )
                .bind(new_state)
                .bind(who)
                .bind(to_ms(now))
                .bind(state == "unknown" && matches!(decision, Decide::Approve))
                .bind(id)
                .execute(&mut *tx)
                .await?;
                let detail = serde_json::json!({ "by": who, "was": state, "now": new_state });
                sqlx::query("INSERT INTO audit (at, outbox_id, subject, kind, detail) VALUES ($1, $2, $3, $4, $5)")
                    .bind(to_ms(now))
                    .bind(id)
                    .bind(&subject)
                    .bind(kind)
                    .bind(detail.to_string())
                    .execute(&mut *tx)
                    .await?;
                let row: $crate::store::sql::OutboxTuple = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM outbox WHERE id = $1",
                    $crate::store::sql::OUTBOX_COLUMNS
                )))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok($crate::store::sql::outbox_row(row))
            }

            async fn outbox_ids(&self, keys: &[String]) -> Result<std::collections::HashMap<String, i64>, $crate::store::StoreError> {
                let mut found = std::collections::HashMap::new();
                for chunk in keys.chunks($crate::store::sql::ID_CHUNK) {
                    let sql = $crate::store::sql::in_list("SELECT idempotency_key, id FROM outbox WHERE idempotency_key IN", 1, chunk.len());
                    let mut query = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql));
                    for key in chunk {
                        query = query.bind(key);
                    }
                    found.extend(query.fetch_all(&self.pool).await?);
                }
                Ok(found)
            }

            async fn outbox_row(&self, id: i64) -> Result<Option<$crate::store::OutboxRow>, $crate::store::StoreError> {
                let row: Option<$crate::store::sql::OutboxTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM outbox WHERE id = $1",
                    $crate::store::sql::OUTBOX_COLUMNS
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map($crate::store::sql::outbox_row))
            }

            async fn outbox_changed_since(&self, since: chrono::DateTime<chrono::Utc>) -> Result<Vec<$crate::store::OutboxRow>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::sql::OutboxTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM outbox WHERE updated_at >= $1 OR state IN ('held', 'unknown') ORDER BY id",
                    $crate::store::sql::OUTBOX_COLUMNS
                )))
                .bind($crate::store::to_ms(since))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map($crate::store::sql::outbox_row).collect())
            }

            async fn checkpoints(&self) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>, $crate::store::StoreError> {
                let rows: Vec<(String, i64, i64)> =
                    sqlx::query_as("SELECT source, watermark, updated_at FROM checkpoints ORDER BY source")
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|(source, watermark, updated)| (source, $crate::store::from_ms(watermark), $crate::store::from_ms(updated)))
                    .collect())
            }

            async fn events_for(&self, subject: &str) -> Result<Vec<$crate::model::Event>, $crate::store::StoreError> {
                let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
                    "SELECT id, subject, payload, at FROM events WHERE subject = $1 ORDER BY id",
                )
                .bind(subject)
                .fetch_all(&self.pool)
                .await?;
                $crate::store::sql::events(rows)
            }

            async fn finish(
                &self,
                claim: &$crate::store::ClaimedAction,
                outcome: &$crate::store::Outcome,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::{Outcome, to_ms};
                if let Outcome::Deferred { at, .. } = outcome {
                    // Not an attempt: back to `planned` for later, the attempt uncounted, no
                    // audit line (a flood of grouped alerts would drown the log).
                    let updated = sqlx::query(
                        "UPDATE outbox SET state = 'planned', next_attempt_at = $1, attempts = attempts - 1, lease_owner = NULL, lease_expires_at = NULL, updated_at = $2
                         WHERE id = $3 AND fence = $4 AND state = 'claimed'",
                    )
                    .bind(to_ms(*at))
                    .bind(to_ms(now))
                    .bind(claim.id)
                    .bind(claim.fence)
                    .execute(&self.pool)
                    .await?;
                    if updated.rows_affected() == 0 {
                        return Err($crate::store::StoreError::StaleLease(claim.id));
                    }
                    return Ok(());
                }
                let (next_attempt, error, detail) = match outcome {
                    Outcome::Deferred { .. } => return Ok(()),
                    Outcome::Done { detail } => (now, None, detail.clone()),
                    Outcome::Retry { at, error } => (*at, Some(error.as_str()), serde_json::json!({ "error": error, "next_attempt_at": at })),
                    Outcome::Failed { error } | Outcome::Unknown { error } | Outcome::Held { reason: error } => (now, Some(error.as_str()), serde_json::json!({ "error": error })),
                };
                let mut tx = self.write_tx().await?;
                let updated = sqlx::query(
                    "UPDATE outbox SET state = $1, next_attempt_at = $2, last_error = $3, lease_owner = NULL, lease_expires_at = NULL, updated_at = $4
                     WHERE id = $5 AND fence = $6 AND state = 'claimed'",
                )
                .bind(outcome.state())
                .bind(to_ms(next_attempt))
                .bind(error)
                .bind(to_ms(now))
                .bind(claim.id)
                .bind(claim.fence)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Err($crate::store::StoreError::StaleLease(claim.id));
                }
                let detail = serde_json::json!({ "attempt": claim.attempt, "outcome": outcome.state(), "detail": detail });
                sqlx::query("INSERT INTO audit (at, outbox_id, subject, kind, detail) VALUES ($1, $2, $3, $4, $5)")
                    .bind(to_ms(now))
                    .bind(claim.id)
                    .bind(claim.subject.as_str())
                    .bind("attempt")
                    .bind(detail.to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn next_due(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, $crate::store::StoreError> {
                let row: (Option<i64>,) = sqlx::query_as(
                    "SELECT MIN(CASE WHEN state = 'claimed' THEN lease_expires_at ELSE next_attempt_at END) FROM outbox WHERE state IN ('planned', 'retry', 'claimed')",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(row.0.map($crate::store::from_ms))
            }

            async fn outbox(&self) -> Result<Vec<$crate::store::OutboxRow>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::sql::OutboxTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM outbox ORDER BY id",
                    $crate::store::sql::OUTBOX_COLUMNS
                )))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map($crate::store::sql::outbox_row).collect())
            }

            async fn outbox_for(&self, subject: &str) -> Result<Vec<$crate::store::OutboxRow>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::sql::OutboxTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM outbox WHERE subject = $1 ORDER BY id",
                    $crate::store::sql::OUTBOX_COLUMNS
                )))
                .bind(subject)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map($crate::store::sql::outbox_row).collect())
            }

            async fn record_decisions(&self, decisions: &[$crate::store::Decision]) -> Result<(), $crate::store::StoreError> {
                if decisions.is_empty() {
                    return Ok(());
                }
                let mut tx = self.write_tx().await?;
                for d in decisions {
                    sqlx::query(
                        "INSERT INTO decisions (at, subject, trigger_name, event_id, rule, rule_version, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind($crate::store::to_ms(d.at))
                    .bind(&d.subject)
                    .bind(&d.trigger)
                    .bind(d.event_id)
                    .bind(&d.rule)
                    .bind(&d.rule_version)
                    .bind(&d.outcome)
                    .bind(d.detail.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn decisions(&self, subject: &str) -> Result<Vec<$crate::store::Decision>, $crate::store::StoreError> {
                let rows: Vec<(i64, String, String, Option<i64>, String, String, String, String)> = sqlx::query_as(
                    "SELECT at, subject, trigger_name, event_id, rule, rule_version, outcome, detail FROM decisions WHERE subject = $1 ORDER BY id",
                )
                .bind(subject)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(at, subject, trigger, event_id, rule, rule_version, outcome, detail)| $crate::store::Decision {
                        at: $crate::store::from_ms(at),
                        subject,
                        trigger,
                        event_id,
                        rule,
                        rule_version,
                        outcome,
                        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
                    })
                    .collect())
            }

            async fn customer_orders(
                &self,
                keys: &[String],
            ) -> Result<Vec<(String, String)>, $crate::store::StoreError> {
                let mut found: Vec<(String, String)> = Vec::new();
                for key in keys {
                    let rows: Vec<(String, String)> = sqlx::query_as(
                        "SELECT channel, order_id FROM customer_keys WHERE key = $1
                         ORDER BY channel, order_id LIMIT 50",
                    )
                    .bind(key)
                    .fetch_all(&self.pool)
                    .await?;
                    for row in rows {
                        if !found.contains(&row) {
                            found.push(row);
                        }
                    }
                }
                Ok(found)
            }

            async fn audit_log(&self, subject: Option<&str>) -> Result<Vec<$crate::store::AuditEntry>, $crate::store::StoreError> {
                let rows: Vec<(i64, Option<i64>, String, String, String)> = sqlx::query_as(
                    "SELECT at, outbox_id, subject, kind, detail FROM audit WHERE $1 IS NULL OR subject = $1 ORDER BY id",
                )
                .bind(subject)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(at, outbox_id, subject, kind, detail)| $crate::store::AuditEntry {
                        at: $crate::store::from_ms(at),
                        outbox_id,
                        subject,
                        kind,
                        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
                    })
                    .collect())
            }
        }
    };
}

pub(super) use sql_store;
