//! People in the loop: which actions wait for a person (refunds above the configured
//! amount; anything past a cap or held by its rule), the alert that says how to
//! approve, and the decision itself (`nightdesk approve|reject ID`, or the HTTP
//! endpoint). A decision is recorded with who made it; it never performs the action
//! itself: an approved action goes back to `planned` and the executor does the rest.

use chrono::{DateTime, Utc};

use crate::model::{ActionRequest, PlannedAction, StoredOrder, format_cents, parse_cents};
use crate::store::{Decide, OutboxRow, Store, StoreError};

/// The amount a refund request asks for, in cents, from the stored order: the request's
/// amount, else its lines' share of their items' prices, else the whole order.
pub fn refund_cents(request: &ActionRequest, order: Option<&StoredOrder>) -> Option<i64> {
    let ActionRequest::Refund { items, amount, .. } = request else {
        return None;
    };
    if let Some(amount) = amount {
        return parse_cents(amount);
    }
    let order = &order?.order;
    if items.is_empty() {
        if let Some(total) = &order.total {
            return parse_cents(&total.amount);
        }
        return order
            .items
            .iter()
            .map(|item| parse_cents(&item.price.as_ref()?.amount))
            .sum();
    }
    items
        .iter()
        .map(|line| {
            if let Some(amount) = &line.amount {
                return parse_cents(amount);
            }
            let item = order
                .items
                .iter()
                .find(|i| i.id == line.item || i.sku.as_deref() == Some(&line.item))?;
            let full = parse_cents(&item.price.as_ref()?.amount)?;
            Some(match line.quantity {
                Some(q) if item.quantity_ordered > 0 => full * q / item.quantity_ordered,
                _ => full,
            })
        })
        .sum()
}

/// Why a refund must wait for a person, if it must.
pub fn refund_hold(
    request: &ActionRequest,
    order: Option<&StoredOrder>,
    limit: Option<f64>,
) -> Option<String> {
    let limit = limit?;
    if !matches!(request, ActionRequest::Refund { .. }) {
        return None;
    }
    let limit_cents = (limit * 100.0).round() as i64;
    let currency = order
        .and_then(|o| o.order.total.as_ref().map(|t| t.currency.clone()))
        .unwrap_or_default();
    match refund_cents(request, order) {
        Some(cents) if cents <= limit_cents => None,
        Some(cents) => Some(format!(
            "refund of {} {currency} is above the approval limit of {}",
            format_cents(cents),
            format_cents(limit_cents)
        )),
        None => Some("the refund's amount cannot be worked out; a person must check it".into()),
    }
}

/// How a person approves or rejects action `id`.
pub fn how_to_decide(id: i64) -> String {
    format!(
        "Approve: `nightdesk approve {id}` · reject: `nightdesk reject {id}` (or POST /actions/{id}/approve or /reject with the approval token)"
    )
}

/// The alert about a held action, to the ops channel.
pub fn held_notice(channel: &str, id: i64, action: &PlannedAction, reason: &str) -> PlannedAction {
    let text = format!(
        "Held for approval: {} #{id} by rule {} on {}: {reason}. {}",
        crate::rules::describe_action(&action.request, None),
        action.rule,
        action.subject,
        how_to_decide(id)
    );
    super::system_alert(channel, &format!("held/{id}"), text, false)
}

/// Record a person's decision. Only held and unknown actions take one.
pub async fn decide(
    store: &dyn Store,
    id: i64,
    decision: Decide,
    who: &str,
    now: DateTime<Utc>,
) -> Result<OutboxRow, StoreError> {
    let row = store.decide(id, decision, who, now).await?;
    tracing::info!(
        action = id,
        decision = ?decision,
        by = who,
        state = row.state.as_str(),
        "Decision recorded."
    );
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Money, Order, OrderItem, OrderStatus, RefundLine, SalesChannel};

    fn order() -> StoredOrder {
        let item = |id: &str, qty: i64, price: &str| OrderItem {
            id: id.into(),
            asin: None,
            sku: Some(format!("SKU-{id}")),
            title: None,
            quantity_ordered: qty,
            quantity_shipped: 0,
            price: Some(Money {
                currency: "USD".into(),
                amount: price.into(),
            }),
            tax: None,
            buyer_requested_cancel: false,
            buyer_cancel_reason: None,
            details: Default::default(),
        };
        let t = chrono::DateTime::<Utc>::MIN_UTC;
        StoredOrder {
            order: Order {
                customer: Default::default(),
                channel: SalesChannel::Amazon,
                account: "us".into(),
                id: "113-0000000-0000001".into(),
                marketplace_id: None,
                status: OrderStatus::Unshipped,
                fulfillment: None,
                purchase_date: t,
                last_update: t,
                earliest_ship_date: None,
                latest_ship_date: None,
                earliest_delivery_date: None,
                latest_delivery_date: None,
                total: Some(Money {
                    currency: "USD".into(),
                    amount: "99.00".into(),
                }),
                order_type: None,
                is_prime: false,
                is_business: false,
                items: vec![item("1", 2, "40.00"), item("2", 1, "59.00")],
                details: Default::default(),
            },
            status_since: t,
            first_seen: t,
        }
    }

    fn refund(items: Vec<RefundLine>, amount: Option<&str>) -> ActionRequest {
        ActionRequest::Refund {
            order: "113-0000000-0000001".into(),
            reason: "CustomerCancel".into(),
            items,
            amount: amount.map(str::to_owned),
        }
    }

    fn line(item: &str, quantity: Option<i64>) -> RefundLine {
        RefundLine {
            item: item.into(),
            quantity,
            amount: None,
        }
    }

    #[test]
    fn the_amount_comes_from_the_request_the_lines_or_the_order() {
        let o = order();
        assert_eq!(
            refund_cents(&refund(vec![], Some("12.50")), Some(&o)),
            Some(1250)
        );
        assert_eq!(refund_cents(&refund(vec![], None), Some(&o)), Some(9900));
        assert_eq!(
            refund_cents(&refund(vec![line("1", Some(1))], None), Some(&o)),
            Some(2000),
            "one of two units"
        );
        assert_eq!(
            refund_cents(&refund(vec![line("SKU-2", None)], None), Some(&o)),
            Some(5900),
            "by SKU"
        );
        assert_eq!(
            refund_cents(&refund(vec![line("9", None)], None), Some(&o)),
            None
        );
    }

    #[test]
    fn refunds_above_the_limit_or_of_unknown_size_wait() {
        let o = order();
        let small = refund(vec![line("1", Some(1))], None);
        let large = refund(vec![], None);
        assert_eq!(refund_hold(&small, Some(&o), Some(50.0)), None);
        let held = refund_hold(&large, Some(&o), Some(50.0)).unwrap_or_default();
        assert!(
            held.contains("99.00 USD") && held.contains("50.00"),
            "{held}"
        );
        assert!(
            refund_hold(&large, None, Some(50.0)).is_some(),
            "no order, no guess"
        );
        assert_eq!(
            refund_hold(&large, Some(&o), None),
            None,
            "no limit configured"
        );
        let cancel = ActionRequest::Cancel {
            order: "x".into(),
            reason: "NoInventory".into(),
        };
        assert_eq!(refund_hold(&cancel, Some(&o), Some(1.0)), None);
    }
}
