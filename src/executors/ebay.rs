//! eBay refunds of one seller account, performed for the outbox through the Sell
//! Fulfillment API (`specs/ebay/sell_fulfillment_v1_oas3.yaml`): issueRefund,
//! `POST /sell/fulfillment/v1/order/{orderId}/issue_refund`, with a token that carries
//! `sell.finances` (the account's actions client, [`EbaySource::actions_api`]).
//!
//! issueRefund is asynchronous and has no idempotency key ([`Safety::VerifyThenRetry`]):
//!
//! ```text
//! getOrder ─► record {refunds_before, refund_requested} ─► issueRefund (once)
//!   ─► {refundId, PENDING} ─► record {refund_id} ─► getOrder … REFUNDED ─► done
//!                                                          └─ FAILED ─► failed
//! ```
//! After an unclear answer the next attempt reads the order: a refund that was not
//! there before is adopted (no second call); none means it did not happen, and the
//! refund is asked for again; two or more are handed to a person.
//!
//! Cancellations are not in the Sell Fulfillment API (they belong to the Post-Order
//! API): a cancel action is held with what the operator does in Seller Hub.
//!
//! Reasons: eBay's own codes are taken as they are and Amazon's mapped to the nearest
//! ([`REFUND_REASON_MAP`], [`CANCEL_REASON_MAP`]); an unknown one is refused before any
//! call. It never calls issueRefund twice for one unclear answer, never logs a token,
//! and its receipts hold the refund id, amount and status only.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::executors::{ActionError, ActionExecutor, Attempt, Performed, Safety};
use crate::http::UpstreamError;
use crate::model::{
    ActionRequest, OrderStatus, RefundLine, StoredOrder, format_cents, parse_cents,
};
use crate::rules::reasons::native_reason;
use crate::sources::ebay::orders::WireOrder;
use crate::sources::ebay::{EbayApi, EbaySource, wire_order};

/// `ReasonForRefundEnum` (research/marketplaces.md §10).
pub const REFUND_REASONS: &[&str] = &[
    "BUYER_CANCEL",
    "SELLER_CANCEL",
    "ITEM_NOT_RECEIVED",
    "BUYER_RETURN",
    "ITEM_NOT_AS_DESCRIBED",
    "OTHER_ADJUSTMENT",
    "SHIPPING_DISCOUNT",
];

/// The seller's cancellation reasons of the Post-Order API (for the operator's hand).
pub const CANCEL_REASONS: &[&str] = &["ADDRESS_ISSUES", "BUYER_ASKED_CANCEL", "OUT_OF_STOCK"];

/// Amazon `AdjustmentReason` → `ReasonForRefundEnum`.
pub const REFUND_REASON_MAP: &[(&str, &str)] = &[
    ("CustomerCancel", "BUYER_CANCEL"),
    // The seller cannot deliver what was bought.
    ("NoInventory", "SELLER_CANCEL"),
    ("ProductOutofStock", "SELLER_CANCEL"),
    ("CouldNotShip", "SELLER_CANCEL"),
    ("CustomerAddressIncorrect", "SELLER_CANCEL"),
    ("CustomerReturn", "BUYER_RETURN"),
    ("Exchange", "BUYER_RETURN"),
    // The parcel came back to the seller: refused or left uncollected.
    ("RefusedDelivery", "BUYER_RETURN"),
    ("Abandoned", "BUYER_RETURN"),
    // Lost by the carrier or never delivered.
    ("Undeliverable", "ITEM_NOT_RECEIVED"),
    ("CarrierCreditDecision", "ITEM_NOT_RECEIVED"),
    ("CarrierCoverageFailure", "ITEM_NOT_RECEIVED"),
    ("DifferentItem", "ITEM_NOT_AS_DESCRIBED"),
    ("PriceError", "OTHER_ADJUSTMENT"),
    ("GeneralAdjustment", "OTHER_ADJUSTMENT"),
    ("TransactionRecord", "OTHER_ADJUSTMENT"),
    ("RiskAssessmentInformationNotValid", "OTHER_ADJUSTMENT"),
    ("Other", "OTHER_ADJUSTMENT"),
];

/// Amazon `CancelReason` → the Post-Order seller reason. Amazon codes without an eBay
/// equivalent (carrier and risk decisions, general adjustments) are left for the
/// operator to choose.
pub const CANCEL_REASON_MAP: &[(&str, &str)] = &[
    ("NoInventory", "OUT_OF_STOCK"),
    ("ShippingAddressUndeliverable", "ADDRESS_ISSUES"),
    ("BuyerCanceled", "BUYER_ASKED_CANCEL"),
    ("CustomerExchange", "BUYER_ASKED_CANCEL"),
    ("CustomerReturn", "BUYER_ASKED_CANCEL"),
];

/// How often a pending refund is looked at.
const REFUND_POLL: Duration = Duration::minutes(5);
/// A refund still not settled after this long is handed to a person.
const REFUND_PATIENCE: Duration = Duration::days(3);
/// issueRefund's `comment` is at most 100 characters.
const COMMENT_MAX: usize = 100;

/// Acts on one eBay seller account.
pub struct EbayExecutor {
    account: String,
    api: Arc<EbayApi>,
}

impl std::fmt::Debug for EbayExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbayExecutor")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// issueRefund's answer (the contract's `Refund`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefundAnswer {
    #[serde(default)]
    refund_id: Option<String>,
    #[serde(default)]
    refund_status: Option<String>,
}

/// A refund as getOrder shows it, order-level or line-level.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenRefund {
    id: String,
    /// `REFUNDED`, `PENDING`, `FAILED` for order-level refunds; line-level ones have no
    /// status, only a `refundDate` once issued (read as `REFUNDED`).
    status: String,
    amount: Option<(String, String)>,
}

fn refunds_on(order: &WireOrder) -> Vec<SeenRefund> {
    let amount = |a: &Option<crate::sources::ebay::orders::WireAmount>| {
        a.as_ref()
            .and_then(|a| Some((a.value.clone()?, a.currency.clone()?)))
    };
    let mut seen = Vec::new();
    for refund in order
        .payment_summary
        .as_ref()
        .map(|p| p.refunds.as_slice())
        .unwrap_or_default()
    {
        if let Some(id) = refund.refund_id.clone().filter(|i| !i.is_empty()) {
            seen.push(SeenRefund {
                id,
                status: refund
                    .refund_status
                    .clone()
                    .unwrap_or_else(|| "PENDING".to_owned()),
                amount: amount(&refund.amount),
            });
        }
    }
    for line in &order.line_items {
        for refund in &line.refunds {
            let Some(id) = refund.refund_id.clone().filter(|i| !i.is_empty()) else {
                continue;
            };
            if seen.iter().any(|s| s.id == id) {
                continue;
            }
            let issued = refund.refund_date.as_deref().is_some_and(|d| !d.is_empty());
            seen.push(SeenRefund {
                id,
                status: if issued { "REFUNDED" } else { "PENDING" }.to_owned(),
                amount: amount(&refund.amount),
            });
        }
    }
    seen
}

/// The issueRefund body: the whole order at the order level, else by line.
fn refund_body(
    order: &StoredOrder,
    reason: &'static str,
    requested: &[RefundLine],
    total: Option<&str>,
    comment: &str,
) -> Result<Value, ActionError> {
    let o = &order.order;
    let refused = |why: String| ActionError::Permanent(format!("refund of order {}: {why}", o.id));
    let comment: String = comment.chars().take(COMMENT_MAX).collect();
    let asked = match total {
        Some(t) => Some(parse_cents(t).ok_or_else(|| refused(format!("{t:?} is not an amount")))?),
        None => None,
    };
    if requested.is_empty() {
        let Some(order_total) = &o.total else {
            return Err(refused("the order's total is not stored".into()));
        };
        let full = parse_cents(&order_total.amount)
            .ok_or_else(|| refused(format!("total {:?} is not an amount", order_total.amount)))?;
        let cents = asked.unwrap_or(full);
        if cents > full {
            return Err(refused(format!(
                "{} is more than the order's total {}",
                format_cents(cents),
                order_total.amount
            )));
        }
        if cents <= 0 {
            return Err(refused("nothing to pay back (amount 0)".into()));
        }
        return Ok(json!({
            "reasonForRefund": reason,
            "comment": comment,
            "orderLevelRefundAmount": { "value": format_cents(cents), "currency": order_total.currency },
        }));
    }
    let mut remaining = asked;
    let mut items = Vec::new();
    for line in requested {
        let item = o
            .items
            .iter()
            .find(|i| i.id == line.item || i.sku.as_deref() == Some(&line.item))
            .ok_or_else(|| refused(format!("the order has no item {}", line.item)))?;
        let Some(price) = &item.price else {
            return Err(refused(format!("item {} has no price stored", item.id)));
        };
        // `lineItemCost` is the whole line's price: a quantity takes its share.
        let full = parse_cents(&price.amount)
            .ok_or_else(|| refused(format!("item {} has price {:?}", item.id, price.amount)))?;
        let share = match line.quantity {
            Some(q) if q < 1 || q > item.quantity_ordered => {
                return Err(refused(format!(
                    "quantity {q} of item {} is not between 1 and the {} ordered",
                    item.id, item.quantity_ordered
                )));
            }
            Some(q) if item.quantity_ordered > 0 => full * q / item.quantity_ordered,
            _ => full,
        };
        let mut cents = match line.amount.as_deref() {
            Some(a) => parse_cents(a).ok_or_else(|| refused(format!("{a:?} is not an amount")))?,
            None => share,
        };
        if cents > full {
            return Err(refused(format!(
                "{} is more than item {}'s price {}",
                format_cents(cents),
                item.id,
                price.amount
            )));
        }
        if let Some(left) = remaining.as_mut() {
            cents = cents.min(*left);
            *left -= cents;
        }
        if cents > 0 {
            items.push(json!({
                "lineItemId": item.id,
                "refundAmount": { "value": format_cents(cents), "currency": price.currency },
            }));
        }
    }
    if items.is_empty() {
        return Err(refused("nothing to pay back (amount 0)".into()));
    }
    Ok(json!({ "reasonForRefund": reason, "comment": comment, "refundItems": items }))
}

impl EbayExecutor {
    pub fn new(source: &EbaySource) -> Self {
        Self {
            account: source.account().to_owned(),
            api: source.actions_api().clone(),
        }
    }

    async fn read_order(
        &self,
        order_id: &str,
        during: &'static str,
    ) -> Result<WireOrder, ActionError> {
        wire_order(&self.api, order_id)
            .await
            .map_err(ActionError::upstream(during))
    }

    async fn refund(
        &self,
        attempt: &mut Attempt<'_>,
        order: &StoredOrder,
        reason: &str,
        items: &[RefundLine],
        amount: Option<&str>,
    ) -> Result<Performed, ActionError> {
        let native = native_reason(reason, REFUND_REASONS, REFUND_REASON_MAP).ok_or_else(|| {
            ActionError::Permanent(format!(
                "unknown refund reason {reason:?} for eBay (its own: {}; or an Amazon AdjustmentReason); nothing was sent",
                REFUND_REASONS.join(", ")
            ))
        })?;
        let o = &order.order;
        let order_id = o.id.clone();
        if let Some(refund_id) = attempt.progress("refund_id").and_then(Value::as_str) {
            let refund_id = refund_id.to_owned();
            let wire = self.read_order(&order_id, "getOrder").await?;
            return self.settle(attempt, &wire, &refund_id, native);
        }
        let before = self.read_order(&order_id, "getOrder (read-back)").await?;
        let seen = refunds_on(&before);
        if attempt.progress("refund_requested").is_some() {
            // An earlier attempt asked and never heard the answer: look first.
            let known: Vec<String> = attempt
                .progress("refunds_before")
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let new: Vec<&SeenRefund> = seen.iter().filter(|r| !known.contains(&r.id)).collect();
            match new.as_slice() {
                [] => tracing::info!(
                    action = attempt.claim.id,
                    "read-back found no new eBay refund; asking again"
                ),
                [one] => {
                    let refund_id = one.id.clone();
                    attempt
                        .record_all(&[("refund_id", json!(refund_id)), ("read_back", json!(true))])
                        .await?;
                    return self.settle(attempt, &before, &refund_id, native);
                }
                several => {
                    let ids: Vec<&str> = several.iter().map(|r| r.id.as_str()).collect();
                    return Err(ActionError::Unknown(format!(
                        "an earlier attempt asked eBay to refund order {order_id} without hearing back, and {} new refunds exist ({}); \
                         check them in Seller Hub, then approve to refund again or reject",
                        ids.len(),
                        ids.join(", ")
                    )));
                }
            }
        }
        match o.status {
            OrderStatus::Pending => {
                return Err(ActionError::Permanent(format!(
                    "order {order_id} is not paid yet: there is nothing to refund; nothing was sent"
                )));
            }
            OrderStatus::Canceled => {
                return Err(ActionError::Permanent(format!(
                    "order {order_id} is cancelled: eBay refunds a cancelled order itself; nothing was sent"
                )));
            }
            _ => {}
        }
        let comment = format!("nightdesk: {reason}");
        let body = refund_body(order, native, items, amount, &comment)?;
        let url = self
            .api
            .url(&[
                "sell",
                "fulfillment",
                "v1",
                "order",
                &order_id,
                "issue_refund",
            ])
            .map_err(ActionError::upstream("issueRefund"))?;
        let ids: Vec<&str> = seen.iter().map(|r| r.id.as_str()).collect();
        attempt
            .record_all(&[
                ("refunds_before", json!(ids)),
                ("refund_requested", json!(attempt.now.to_rfc3339())),
            ])
            .await?;
        // Sent once: a resend is only safe after reading the order back.
        let answer = self
            .api
            .call_once(Method::POST, &url, &[], Some(&body))
            .await
            .and_then(|reply| reply.json::<RefundAnswer>("issueRefund response"));
        let parsed = match answer {
            Ok(parsed) => parsed,
            Err(error) if !error.may_have_acted() => {
                // Refused before anything happened: a later attempt may ask afresh.
                attempt.record("refund_requested", Value::Null).await?;
                return Err(ActionError::Upstream {
                    during: "issueRefund",
                    error,
                });
            }
            Err(error) if error.is_retryable() => {
                return Err(ActionError::Upstream {
                    during: "issueRefund",
                    error,
                });
            }
            Err(error) => return Ok(read_back_later(attempt.now, &error)),
        };
        if parsed.refund_status.as_deref() == Some("FAILED") {
            attempt.record("refund_requested", Value::Null).await?;
            return Err(ActionError::Permanent(format!(
                "eBay answered FAILED to the refund of order {order_id}; nothing was refunded"
            )));
        }
        let Some(refund_id) = parsed.refund_id.filter(|id| !id.is_empty()) else {
            return Ok(read_back_later(
                attempt.now,
                &UpstreamError::Malformed {
                    what: "issueRefund response".into(),
                    reason: "no refundId".into(),
                },
            ));
        };
        attempt.record("refund_id", json!(refund_id)).await?;
        Ok(Performed::Wait {
            at: attempt.now + REFUND_POLL,
            note: format!(
                "eBay refund {refund_id} is {}; confirming through getOrder",
                parsed.refund_status.as_deref().unwrap_or("PENDING")
            ),
        })
    }

    /// What getOrder says of refund `refund_id`.
    fn settle(
        &self,
        attempt: &Attempt<'_>,
        order: &WireOrder,
        refund_id: &str,
        reason: &str,
    ) -> Result<Performed, ActionError> {
        let order_id = order.order_id.as_deref().unwrap_or("?");
        let found = refunds_on(order).into_iter().find(|r| r.id == refund_id);
        let status = found.as_ref().map(|r| r.status.as_str());
        match status {
            Some("REFUNDED") => {
                let (value, currency) = found
                    .and_then(|r| r.amount)
                    .map_or((None, None), |(v, c)| (Some(v), Some(c)));
                Ok(Performed::Done(json!({
                    "refund_id": refund_id,
                    "status": "REFUNDED",
                    "amount": value,
                    "currency": currency,
                    "reason": reason,
                    "read_back": attempt.progress("read_back").is_some(),
                })))
            }
            Some("FAILED") => Err(ActionError::Permanent(format!(
                "eBay refund {refund_id} of order {order_id} FAILED; nothing was refunded"
            ))),
            _ => {
                let since = attempt
                    .progress("refund_requested")
                    .and_then(Value::as_str)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.to_utc());
                if since.is_some_and(|s| attempt.now - s > REFUND_PATIENCE) {
                    return Err(ActionError::Unknown(format!(
                        "eBay refund {refund_id} of order {order_id} is still {} after three days; check it in Seller Hub",
                        status.unwrap_or("not shown")
                    )));
                }
                Ok(Performed::Wait {
                    at: attempt.now + REFUND_POLL,
                    note: format!(
                        "eBay refund {refund_id} is {}",
                        status.unwrap_or("not shown on the order yet")
                    ),
                })
            }
        }
    }
}

/// After an answer that cannot be read, read the order back soon instead of failing or
/// asking again: the refund may have been made.
fn read_back_later(now: DateTime<Utc>, error: &UpstreamError) -> Performed {
    Performed::Wait {
        at: now + REFUND_POLL,
        note: format!("unclear issueRefund answer ({error}); reading the order back"),
    }
}

#[async_trait]
impl ActionExecutor for EbayExecutor {
    fn safety(&self, request: &ActionRequest) -> Safety {
        match request {
            ActionRequest::Refund { .. } => Safety::VerifyThenRetry,
            _ => Safety::AtMostOnce,
        }
    }

    async fn perform(&self, attempt: &mut Attempt<'_>) -> Result<Performed, ActionError> {
        let Some(order) = attempt.order.cloned() else {
            return Err(ActionError::Permanent(format!(
                "{} is not a stored eBay order",
                attempt.claim.subject
            )));
        };
        match attempt.request.clone() {
            ActionRequest::Refund {
                reason,
                items,
                amount,
                ..
            } => {
                self.refund(attempt, &order, &reason, &items, amount.as_deref())
                    .await
            }
            ActionRequest::Cancel { reason, .. } => {
                let in_list = CANCEL_REASONS.contains(&reason.as_str())
                    || crate::rules::reasons::AMAZON_CANCEL_REASONS.contains(&reason.as_str());
                if !in_list {
                    return Err(ActionError::Permanent(format!(
                        "unknown cancel reason {reason:?} for eBay (its own: {}; or an Amazon CancelReason); nothing was sent",
                        CANCEL_REASONS.join(", ")
                    )));
                }
                let why = match native_reason(&reason, CANCEL_REASONS, CANCEL_REASON_MAP) {
                    Some(native) => format!("reason {native}"),
                    None => format!("{reason} has no eBay equivalent: choose the nearest reason"),
                };
                Err(ActionError::Held(format!(
                    "eBay cancellations go through the Post-Order API, which nightdesk does not call: \
                     cancel order {} in Seller Hub (Orders, then Cancel order; {why}), then reject this action to close it",
                    order.order.id
                )))
            }
            other => Err(ActionError::Held(format!(
                "no eBay executor for {} actions on {}; do it in Seller Hub, then reject this action",
                other.kind(),
                self.account
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_native_or_mapped() {
        assert_eq!(
            native_reason("BUYER_RETURN", REFUND_REASONS, REFUND_REASON_MAP),
            Some("BUYER_RETURN")
        );
        assert_eq!(
            native_reason("CustomerReturn", REFUND_REASONS, REFUND_REASON_MAP),
            Some("BUYER_RETURN")
        );
        assert_eq!(
            native_reason("Whatever", REFUND_REASONS, REFUND_REASON_MAP),
            None
        );
        use crate::rules::reasons::{
            AMAZON_CANCEL_REASONS, AMAZON_REFUND_REASONS, assert_reason_table,
        };
        // Every Amazon refund code has an eBay equivalent.
        assert_reason_table(
            REFUND_REASONS,
            REFUND_REASON_MAP,
            AMAZON_REFUND_REASONS,
            true,
        );
        assert_reason_table(
            CANCEL_REASONS,
            CANCEL_REASON_MAP,
            AMAZON_CANCEL_REASONS,
            false,
        );
    }

    #[test]
    fn refunds_are_read_from_the_order_and_its_lines() -> Result<(), serde_json::Error> {
        let wire: WireOrder = serde_json::from_value(json!({
            "orderId": "12-12345-12345",
            "paymentSummary": {"refunds": [
                {"refundId": "R1", "refundStatus": "REFUNDED", "amount": {"value": "5.00", "currency": "USD"}},
                {"refundId": "R2", "refundStatus": "PENDING"}
            ]},
            "lineItems": [{"lineItemId": "1", "refunds": [
                {"refundId": "L1", "amount": {"value": "2.00", "currency": "USD"}, "refundDate": "2026-11-22T10:00:00.000Z"},
                {"refundId": "L2"}
            ]}]
        }))?;
        let seen = refunds_on(&wire);
        let pairs: Vec<(&str, &str)> = seen
            .iter()
            .map(|r| (r.id.as_str(), r.status.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("R1", "REFUNDED"),
                ("R2", "PENDING"),
                ("L1", "REFUNDED"),
                ("L2", "PENDING")
            ]
        );
        assert_eq!(seen[0].amount, Some(("5.00".into(), "USD".into())));
        Ok(())
    }
}
