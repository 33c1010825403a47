//! Shopify refunds and cancellations of one shop, performed for the outbox through the
//! Admin GraphQL API the shop's source already uses (one cost bucket per app and shop).
//!
//! - Refund: `refundCreate` with `@idempotent(key:)`, the key derived from the action's
//!   idempotency key, so every attempt of one action sends the same key and Shopify
//!   makes at most one refund of it ([`Safety::Retry`]). The money moves through one
//!   `REFUND` transaction against the order's successful sale or capture; the lines are
//!   listed with `NO_RESTOCK` (stock is the seller's call, not a rule's).
//! - Cancel: `orderCancel` (restock, notify the customer, refund to the original payment
//!   methods) starts a job and has no idempotency key ([`Safety::VerifyThenRetry`]):
//!   `cancel_requested` is recorded before the call; after an unclear answer the next
//!   attempt reads the order and adopts a cancellation it finds instead of sending a
//!   second one; while the job runs the action waits and looks at the order again.
//!
//! Reasons: rules speak Amazon's codes; Shopify's own (`OrderCancelReason`) are taken as
//! they are and Amazon's mapped to the nearest ([`CANCEL_REASON_MAP`],
//! [`REFUND_REASON_MAP`]). `refundCreate` has no reason field: the reason goes into the
//! refund's staff note. An unknown reason is refused before any call.
//!
//! It never sends a second `orderCancel` while one may be running, never logs the access
//! token or buyer data, and its receipts hold ids, amounts and statuses only.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::executors::{ActionError, ActionExecutor, Attempt, Performed, Safety};
use crate::http::UpstreamError;
use crate::model::{
    ActionRequest, OrderItem, OrderStatus, RefundLine, StoredOrder, format_cents, parse_cents,
};
use crate::rules::reasons::native_reason;
use crate::sources::SourceError;
use crate::sources::shopify::{ShopifyApi, ShopifySource, order_snapshot};

/// Shopify's `OrderCancelReason` values.
pub const CANCEL_REASONS: &[&str] = &[
    "CUSTOMER",
    "DECLINED",
    "FRAUD",
    "INVENTORY",
    "OTHER",
    "STAFF",
];

/// The reasons a refund's note may carry: the same vocabulary as cancellations, since
/// `RefundInput` has no reason enum of its own.
pub const REFUND_REASONS: &[&str] = CANCEL_REASONS;

/// Amazon `CancelReason` → `OrderCancelReason`.
pub const CANCEL_REASON_MAP: &[(&str, &str)] = &[
    ("NoInventory", "INVENTORY"),
    ("BuyerCanceled", "CUSTOMER"),
    ("CustomerExchange", "CUSTOMER"),
    ("CustomerReturn", "CUSTOMER"),
    // A failed risk check is Shopify's fraud cancellation.
    ("RiskAssessmentInformationNotValid", "FRAUD"),
    // Address and carrier problems have no Shopify reason of their own.
    ("ShippingAddressUndeliverable", "OTHER"),
    ("CarrierCreditDecision", "OTHER"),
    ("CarrierCoverageFailure", "OTHER"),
    ("MerchandiseNotReceived", "OTHER"),
    ("GeneralAdjustment", "OTHER"),
];

/// Amazon `AdjustmentReason` → the reason written into the refund's note.
pub const REFUND_REASON_MAP: &[(&str, &str)] = &[
    ("NoInventory", "INVENTORY"),
    ("ProductOutofStock", "INVENTORY"),
    ("CustomerReturn", "CUSTOMER"),
    ("CustomerCancel", "CUSTOMER"),
    ("Exchange", "CUSTOMER"),
    // The buyer left the parcel uncollected or refused it: the buyer's doing.
    ("Abandoned", "CUSTOMER"),
    ("RefusedDelivery", "CUSTOMER"),
    // A wrong item or a wrong price is the shop's own mistake.
    ("DifferentItem", "STAFF"),
    ("PriceError", "STAFF"),
    ("RiskAssessmentInformationNotValid", "FRAUD"),
    ("CouldNotShip", "OTHER"),
    ("CustomerAddressIncorrect", "OTHER"),
    ("Undeliverable", "OTHER"),
    ("CarrierCreditDecision", "OTHER"),
    ("CarrierCoverageFailure", "OTHER"),
    ("GeneralAdjustment", "OTHER"),
    ("TransactionRecord", "OTHER"),
    ("Other", "OTHER"),
];

/// How often a running `orderCancel` job is looked at.
const JOB_POLL: Duration = Duration::seconds(30);
/// A cancellation not visible on the order after this long is handed to a person.
const JOB_PATIENCE: Duration = Duration::hours(1);
/// After an unclear `orderCancel` answer, how long the order is only read back before
/// asking again: the job the lost answer named may still be running, and a second
/// request while it runs is refused, which would fail a cancellation that succeeds.
const UNCLEAR_GRACE: Duration = Duration::minutes(5);

const OP_REFUND: &str = "refundCreate";
const OP_CANCEL: &str = "orderCancel";
const OP_TRANSACTIONS: &str = "orderTransactions";

const REFUND_MUTATION: &str = "mutation NightdeskRefund($input: RefundInput!, $key: String!) { \
     refundCreate(input: $input) @idempotent(key: $key) { \
     refund { id totalRefundedSet { shopMoney { amount currencyCode } } } \
     userErrors { field message } } }";

const CANCEL_MUTATION: &str = "mutation NightdeskCancel($orderId: ID!, $reason: OrderCancelReason!, \
     $restock: Boolean!, $notifyCustomer: Boolean, $refundMethod: OrderCancelRefundMethodInput!, \
     $staffNote: String) { orderCancel(orderId: $orderId, reason: $reason, restock: $restock, \
     notifyCustomer: $notifyCustomer, refundMethod: $refundMethod, staffNote: $staffNote) { \
     job { id done } orderCancelUserErrors { field message code } } }";

const TRANSACTIONS_QUERY: &str = "query NightdeskOrderTransactions($id: ID!) { order(id: $id) { \
     id transactions(first: 20) { id kind status gateway } } }";

/// Acts on one Shopify shop.
pub struct ShopifyExecutor {
    account: String,
    shop: String,
    api: Arc<ShopifyApi>,
}

impl std::fmt::Debug for ShopifyExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopifyExecutor")
            .field("account", &self.account)
            .field("shop", &self.shop)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------
// Wire types of the answers read here.

#[derive(Debug, Deserialize)]
struct Money {
    amount: String,
    #[serde(rename = "currencyCode")]
    currency_code: String,
}

#[derive(Debug, Deserialize)]
struct MoneyBag {
    #[serde(rename = "shopMoney")]
    shop_money: Money,
}

#[derive(Debug, Deserialize)]
struct UserError {
    #[serde(default)]
    field: Option<Vec<String>>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Option<String>,
}

fn describe(errors: &[UserError]) -> String {
    errors
        .iter()
        .map(|e| {
            let field = e.field.as_ref().map(|f| f.join(".")).unwrap_or_default();
            let code = e
                .code
                .as_deref()
                .map(|c| format!(" [{c}]"))
                .unwrap_or_default();
            if field.is_empty() {
                format!("{}{code}", e.message)
            } else {
                format!("{field}: {}{code}", e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, Deserialize)]
struct RefundData {
    #[serde(rename = "refundCreate")]
    refund_create: Option<RefundPayload>,
}

#[derive(Debug, Deserialize)]
struct RefundPayload {
    #[serde(default)]
    refund: Option<RefundNode>,
    #[serde(rename = "userErrors", default)]
    user_errors: Vec<UserError>,
}

#[derive(Debug, Deserialize)]
struct RefundNode {
    id: String,
    #[serde(rename = "totalRefundedSet", default)]
    total_refunded: Option<MoneyBag>,
}

#[derive(Debug, Deserialize)]
struct CancelData {
    #[serde(rename = "orderCancel")]
    order_cancel: Option<CancelPayload>,
}

#[derive(Debug, Deserialize)]
struct CancelPayload {
    #[serde(default)]
    job: Option<Job>,
    #[serde(rename = "orderCancelUserErrors", default)]
    user_errors: Vec<UserError>,
}

#[derive(Debug, Deserialize)]
struct Job {
    id: String,
    #[serde(default)]
    done: bool,
}

#[derive(Debug, Deserialize)]
struct TransactionsData {
    order: Option<TransactionsNode>,
}

#[derive(Debug, Deserialize)]
struct TransactionsNode {
    #[serde(default)]
    transactions: Vec<Transaction>,
}

#[derive(Debug, Deserialize)]
struct Transaction {
    id: String,
    kind: String,
    status: String,
    gateway: String,
}

/// What one refund sends: the lines, and the money.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RefundPlan {
    /// `(line item gid, quantity)`.
    lines: Vec<(String, i64)>,
    cents: i64,
    currency: String,
    /// The whole order (shipping included).
    whole: bool,
}

/// The unit price of a stored Shopify line, in cents (the source stores
/// `originalUnitPriceSet`).
fn unit_cents(item: &OrderItem) -> Option<(i64, String)> {
    let price = item.price.as_ref()?;
    Some((parse_cents(&price.amount)?, price.currency.clone()))
}

/// The refund's lines and amount.
///
/// The whole order (`items` empty): every line at its quantity and the order's total
/// (shipping and taxes included). By line: each named line (by line item gid or SKU) at
/// the quantity asked (all of it when not said), valued at its own `amount` or unit
/// price × quantity. `amount`, when given, is what is paid back and may not exceed
/// what the lines are worth.
fn refund_plan(
    order: &StoredOrder,
    requested: &[RefundLine],
    amount: Option<&str>,
) -> Result<RefundPlan, ActionError> {
    let o = &order.order;
    let refused = |why: String| ActionError::Permanent(format!("refund of order {}: {why}", o.id));
    if o.items.is_empty() {
        return Err(refused("the order has no items stored".into()));
    }
    let mut lines = Vec::new();
    let mut value = 0i64;
    let mut currency = o.total.as_ref().map(|t| t.currency.clone());
    let whole = requested.is_empty();
    if whole {
        for item in &o.items {
            if item.quantity_ordered > 0 {
                lines.push((item.id.clone(), item.quantity_ordered));
            }
            if let Some((unit, cur)) = unit_cents(item) {
                value += unit * item.quantity_ordered;
                currency.get_or_insert(cur);
            }
        }
        if let Some(total) = &o.total {
            value = parse_cents(&total.amount)
                .ok_or_else(|| refused(format!("total {:?} is not an amount", total.amount)))?;
        }
    } else {
        for line in requested {
            let item = o
                .items
                .iter()
                .find(|i| i.id == line.item || i.sku.as_deref() == Some(&line.item))
                .ok_or_else(|| refused(format!("the order has no item {}", line.item)))?;
            let quantity = line.quantity.unwrap_or(item.quantity_ordered);
            if quantity < 1 || quantity > item.quantity_ordered {
                return Err(refused(format!(
                    "quantity {quantity} of item {} is not between 1 and the {} ordered",
                    item.id, item.quantity_ordered
                )));
            }
            let (unit, cur) = unit_cents(item)
                .ok_or_else(|| refused(format!("item {} has no price stored", item.id)))?;
            currency.get_or_insert(cur);
            let worth = unit * quantity;
            let line_value = match line.amount.as_deref() {
                Some(a) => {
                    parse_cents(a).ok_or_else(|| refused(format!("{a:?} is not an amount")))?
                }
                None => worth,
            };
            if line_value > worth {
                return Err(refused(format!(
                    "{} is more than item {}'s {} × {quantity}",
                    format_cents(line_value),
                    item.id,
                    format_cents(unit)
                )));
            }
            value += line_value;
            lines.push((item.id.clone(), quantity));
        }
    }
    let cents = match amount {
        Some(a) => {
            let asked = parse_cents(a).ok_or_else(|| refused(format!("{a:?} is not an amount")))?;
            if asked > value {
                return Err(refused(format!(
                    "{} is more than the {} the refunded lines are worth",
                    format_cents(asked),
                    format_cents(value)
                )));
            }
            asked
        }
        None => value,
    };
    if cents <= 0 {
        return Err(refused("nothing to pay back (amount 0)".into()));
    }
    let currency = currency.ok_or_else(|| refused("no currency stored".into()))?;
    Ok(RefundPlan {
        lines,
        cents,
        currency,
        whole: whole && amount.is_none(),
    })
}

/// The `@idempotent` key of an action: stable across its attempts, never reused by
/// another action, and free of whatever characters the rule's key holds.
pub fn refund_key(idempotency_key: &str) -> String {
    let digest = Sha256::digest(format!("shopify-refund|{idempotency_key}").as_bytes());
    format!("nightdesk-{}", &hex::encode(digest)[..32])
}

fn order_gid(order: &StoredOrder) -> Result<String, ActionError> {
    order
        .order
        .details
        .seller_order_id
        .clone()
        .filter(|g| g.starts_with("gid://shopify/Order/"))
        .ok_or_else(|| {
            ActionError::Permanent(format!(
                "order {} has no Shopify order gid stored; nothing was sent",
                order.order.id
            ))
        })
}

fn snapshot_error(error: SourceError) -> ActionError {
    match error {
        SourceError::Upstream { error, .. } => ActionError::Upstream {
            during: "order (read-back)",
            error,
        },
        SourceError::Store(e) => ActionError::Store(e),
        other => ActionError::Permanent(other.to_string()),
    }
}

impl ShopifyExecutor {
    pub fn new(source: &ShopifySource) -> Self {
        Self {
            account: source.account().to_owned(),
            shop: source.shop().to_owned(),
            api: source.api().clone(),
        }
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
                "unknown refund reason {reason:?} for Shopify (its own: {}; or an Amazon AdjustmentReason); nothing was sent",
                REFUND_REASONS.join(", ")
            ))
        })?;
        let gid = order_gid(order)?;
        let o = &order.order;
        match o.status {
            OrderStatus::Pending => {
                return Err(ActionError::Permanent(format!(
                    "order {} is not paid yet: there is nothing to refund; nothing was sent",
                    o.id
                )));
            }
            OrderStatus::Canceled => {
                return Err(ActionError::Permanent(format!(
                    "order {} is cancelled: its refund belongs to the cancellation; nothing was sent",
                    o.id
                )));
            }
            _ => {}
        }
        let plan = refund_plan(order, items, amount)?;
        let data: TransactionsData = self
            .api
            .execute(OP_TRANSACTIONS, TRANSACTIONS_QUERY, json!({ "id": gid }))
            .await
            .map_err(ActionError::upstream("order transactions"))?;
        let Some(node) = data.order else {
            return Err(ActionError::Permanent(format!(
                "Shopify has no order {gid} ({}) any more",
                o.id
            )));
        };
        let Some(parent) = node.transactions.iter().find(|t| {
            matches!(t.kind.as_str(), "SALE" | "CAPTURE")
                && t.status.eq_ignore_ascii_case("SUCCESS")
        }) else {
            return Err(ActionError::Permanent(format!(
                "order {} has no successful sale or capture to refund against",
                o.id
            )));
        };
        let key = refund_key(&attempt.claim.idempotency_key);
        let mut input = json!({
            "orderId": gid,
            "notify": true,
            "note": format!("nightdesk: {native} (rule {})", attempt.claim.rule),
            "refundLineItems": plan.lines.iter().map(|(line, quantity)| json!({
                "lineItemId": line, "quantity": quantity, "restockType": "NO_RESTOCK",
            })).collect::<Vec<_>>(),
            "transactions": [{
                "orderId": gid,
                "parentId": parent.id,
                "gateway": parent.gateway,
                "kind": "REFUND",
                "amount": format_cents(plan.cents),
            }],
        });
        if plan.whole {
            input["shipping"] = json!({ "fullRefund": true });
        }
        // The same key on every attempt: a repeated request answers the first refund.
        let answer: Result<RefundData, UpstreamError> = self
            .api
            .execute(
                OP_REFUND,
                REFUND_MUTATION,
                json!({ "input": input, "key": key }),
            )
            .await;
        let payload = match answer {
            Ok(RefundData {
                refund_create: Some(payload),
            }) => payload,
            Ok(RefundData {
                refund_create: None,
            }) => {
                return Err(unclear_refund(UpstreamError::Malformed {
                    what: "refundCreate answer".into(),
                    reason: "no refundCreate payload".into(),
                }));
            }
            Err(error) => return Err(unclear_refund(error)),
        };
        if !payload.user_errors.is_empty() {
            return Err(ActionError::Permanent(format!(
                "Shopify refused the refund of order {}: {}",
                o.id,
                describe(&payload.user_errors)
            )));
        }
        let Some(refund) = payload.refund else {
            return Err(unclear_refund(UpstreamError::Malformed {
                what: "refundCreate answer".into(),
                reason: "neither a refund nor userErrors".into(),
            }));
        };
        let (amount, currency) = match refund.total_refunded {
            Some(bag) => (bag.shop_money.amount, bag.shop_money.currency_code),
            None => (format_cents(plan.cents), plan.currency.clone()),
        };
        Ok(Performed::Done(json!({
            "refund_id": refund.id,
            "amount": amount,
            "currency": currency,
            "reason": native,
            "lines": plan.lines.len(),
            "idempotency_key": key,
        })))
    }

    async fn cancel(
        &self,
        attempt: &mut Attempt<'_>,
        order: &StoredOrder,
        reason: &str,
    ) -> Result<Performed, ActionError> {
        let native = native_reason(reason, CANCEL_REASONS, CANCEL_REASON_MAP).ok_or_else(|| {
            ActionError::Permanent(format!(
                "unknown cancel reason {reason:?} for Shopify (its own: {}; or an Amazon CancelReason); nothing was sent",
                CANCEL_REASONS.join(", ")
            ))
        })?;
        let gid = order_gid(order)?;
        let o = &order.order;
        if let Some(requested) = attempt
            .progress("cancel_requested")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.to_utc())
        {
            // An earlier attempt asked: look before asking again.
            let snapshot = order_snapshot(&self.api, &gid, &self.account, &self.shop)
                .await
                .map_err(snapshot_error)?;
            let Some(snapshot) = snapshot else {
                return Err(ActionError::Permanent(format!(
                    "Shopify has no order {gid} ({}) any more",
                    o.id
                )));
            };
            let job = attempt
                .progress("job_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(at) = snapshot.cancelled_at {
                return Ok(Performed::Done(json!({
                    "cancelled_at": at.to_rfc3339(),
                    "reason": snapshot.cancel_reason.unwrap_or_else(|| native.to_owned()),
                    "job_id": job,
                    "read_back": job.is_none(),
                })));
            }
            if let Some(job) = job {
                if attempt.now - requested > JOB_PATIENCE {
                    return Err(ActionError::Unknown(format!(
                        "Shopify accepted the cancellation of order {} (job {job}) but the order is still not cancelled after an hour; \
                         look at it in the Shopify admin, then approve to ask again or reject",
                        o.id
                    )));
                }
                return Ok(Performed::Wait {
                    at: attempt.now + JOB_POLL,
                    note: format!("orderCancel job {job} is still running"),
                });
            }
            if attempt.now - requested < UNCLEAR_GRACE {
                return Ok(Performed::Wait {
                    at: (attempt.now + JOB_POLL).min(requested + UNCLEAR_GRACE),
                    note: "an unclear orderCancel may still be running; reading the order back before asking again".to_owned(),
                });
            }
            tracing::info!(
                action = attempt.claim.id,
                "read-back: order not cancelled; asking again"
            );
        } else if o.status == OrderStatus::Canceled {
            return Err(ActionError::Permanent(format!(
                "order {} is already cancelled; nothing was sent",
                o.id
            )));
        }
        if matches!(
            o.status,
            OrderStatus::Shipped | OrderStatus::PartiallyShipped
        ) || o.items.iter().any(|i| i.quantity_shipped > 0)
        {
            return Err(ActionError::Permanent(format!(
                "order {} is {} (or partly shipped): cancelling it would refund shipped items; refund instead",
                o.id,
                o.status.as_str()
            )));
        }
        attempt
            .record_all(&[
                ("cancel_requested", json!(attempt.now.to_rfc3339())),
                ("job_id", Value::Null),
            ])
            .await?;
        let variables = json!({
            "orderId": gid,
            "reason": native,
            "restock": true,
            "notifyCustomer": true,
            "refundMethod": { "originalPaymentMethodsRefund": true },
            "staffNote": format!("nightdesk: {reason} (rule {})", attempt.claim.rule),
        });
        // Sent once: without a key, a resend is only safe after reading the order back.
        let answer: Result<CancelData, UpstreamError> = self
            .api
            .execute_once(OP_CANCEL, CANCEL_MUTATION, variables)
            .await;
        let payload = match answer {
            Ok(CancelData {
                order_cancel: Some(payload),
            }) => payload,
            Ok(CancelData { order_cancel: None }) => {
                return Ok(read_back_later(
                    attempt.now,
                    "orderCancel answer had no payload",
                ));
            }
            Err(error) if !error.may_have_acted() => {
                attempt.record("cancel_requested", Value::Null).await?;
                return Err(ActionError::Upstream {
                    during: "orderCancel",
                    error,
                });
            }
            Err(error) if error.is_retryable() => {
                return Err(ActionError::Upstream {
                    during: "orderCancel",
                    error,
                });
            }
            Err(error) => return Ok(read_back_later(attempt.now, &error.to_string())),
        };
        if !payload.user_errors.is_empty() {
            attempt.record("cancel_requested", Value::Null).await?;
            return Err(ActionError::Permanent(format!(
                "Shopify refused to cancel order {}: {}",
                o.id,
                describe(&payload.user_errors)
            )));
        }
        let Some(job) = payload.job else {
            return Ok(read_back_later(
                attempt.now,
                "orderCancel answered neither a job nor errors",
            ));
        };
        attempt.record("job_id", json!(job.id)).await?;
        if job.done {
            return Ok(Performed::Done(json!({
                "job_id": job.id,
                "reason": native,
                "read_back": false,
            })));
        }
        Ok(Performed::Wait {
            at: attempt.now + JOB_POLL,
            note: format!(
                "orderCancel job {} started; waiting for the order to show it",
                job.id
            ),
        })
    }
}

/// After an answer that cannot be read, look at the order again soon instead of failing
/// or resending: the cancellation may have been made.
fn read_back_later(now: DateTime<Utc>, what: &str) -> Performed {
    Performed::Wait {
        at: now + JOB_POLL,
        note: format!("unclear orderCancel answer ({what}); reading the order back"),
    }
}

/// An unclear refundCreate answer. Retryable errors go back to the outbox, which sends
/// the same key again; an unreadable 2xx would only fail there, so it is handed to a
/// person with the assurance that approving cannot refund twice.
fn unclear_refund(error: UpstreamError) -> ActionError {
    if error.is_retryable() || !error.may_have_acted() {
        return ActionError::Upstream {
            during: "refundCreate",
            error,
        };
    }
    ActionError::Unknown(format!(
        "refundCreate answered unclearly ({error}); check the order's refunds in the Shopify admin. \
         Approving sends it again with the same idempotency key, which cannot refund twice"
    ))
}

#[async_trait]
impl ActionExecutor for ShopifyExecutor {
    fn safety(&self, request: &ActionRequest) -> Safety {
        match request {
            // refundCreate is idempotent by its key.
            ActionRequest::Refund { .. } => Safety::Retry,
            ActionRequest::Cancel { .. } => Safety::VerifyThenRetry,
            _ => Safety::AtMostOnce,
        }
    }

    async fn perform(&self, attempt: &mut Attempt<'_>) -> Result<Performed, ActionError> {
        let Some(order) = attempt.order.cloned() else {
            return Err(ActionError::Permanent(format!(
                "{} is not a stored Shopify order",
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
            ActionRequest::Cancel { reason, .. } => self.cancel(attempt, &order, &reason).await,
            other => Err(ActionError::Held(format!(
                "no Shopify executor for {} actions on {}; do it in the Shopify admin, then reject this action",
                other.kind(),
                self.account
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Money, Order, SalesChannel};

    fn item(id: &str, sku: &str, quantity: i64, unit: &str) -> OrderItem {
        OrderItem {
            id: id.into(),
            asin: None,
            sku: Some(sku.into()),
            title: None,
            quantity_ordered: quantity,
            quantity_shipped: 0,
            price: Some(Money {
                currency: "USD".into(),
                amount: unit.into(),
            }),
            tax: None,
            buyer_requested_cancel: false,
            buyer_cancel_reason: None,
            details: Default::default(),
        }
    }

    fn stored() -> Result<StoredOrder, String> {
        let at = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
            .map_err(|e| e.to_string())?
            .to_utc();
        Ok(StoredOrder {
            order: Order {
                customer: Default::default(),
                channel: SalesChannel::Shopify,
                account: "a".into(),
                id: "#1001".into(),
                marketplace_id: None,
                status: OrderStatus::Unshipped,
                fulfillment: None,
                purchase_date: at,
                last_update: at,
                earliest_ship_date: None,
                latest_ship_date: None,
                earliest_delivery_date: None,
                latest_delivery_date: None,
                total: Some(Money {
                    currency: "USD".into(),
                    amount: "30.50".into(),
                }),
                order_type: None,
                is_prime: false,
                is_business: false,
                items: vec![
                    item("gid://shopify/LineItem/1", "A", 2, "10.00"),
                    item("gid://shopify/LineItem/2", "B", 1, "5.50"),
                ],
                details: Default::default(),
            },
            status_since: at,
            first_seen: at,
        })
    }

    #[test]
    fn reasons_are_native_or_mapped_and_unknown_ones_refused() {
        assert_eq!(
            native_reason("FRAUD", CANCEL_REASONS, CANCEL_REASON_MAP),
            Some("FRAUD")
        );
        assert_eq!(
            native_reason("BuyerCanceled", CANCEL_REASONS, CANCEL_REASON_MAP),
            Some("CUSTOMER")
        );
        assert_eq!(
            native_reason("BecauseISaidSo", CANCEL_REASONS, CANCEL_REASON_MAP),
            None
        );
        use crate::rules::reasons::{
            AMAZON_CANCEL_REASONS, AMAZON_REFUND_REASONS, assert_reason_table,
        };
        // Every Amazon code has a Shopify equivalent.
        assert_reason_table(
            CANCEL_REASONS,
            CANCEL_REASON_MAP,
            AMAZON_CANCEL_REASONS,
            true,
        );
        assert_reason_table(
            REFUND_REASONS,
            REFUND_REASON_MAP,
            AMAZON_REFUND_REASONS,
            true,
        );
    }

    #[test]
    fn refund_keys_are_stable_and_distinct() {
        assert_eq!(refund_key("rule|order|1"), refund_key("rule|order|1"));
        assert_ne!(refund_key("rule|order|1"), refund_key("rule|order|2"));
        assert!(refund_key("x").starts_with("nightdesk-"));
        assert_eq!(refund_key("x").len(), "nightdesk-".len() + 32);
    }

    #[test]
    fn refund_plans_cover_whole_orders_lines_and_amounts() -> Result<(), String> {
        let order = stored()?;
        let whole = refund_plan(&order, &[], None).map_err(|e| e.to_string())?;
        assert_eq!(whole.cents, 3050);
        assert!(whole.whole);
        assert_eq!(whole.lines.len(), 2);
        let line = |item: &str, quantity: Option<i64>, amount: Option<&str>| RefundLine {
            item: item.into(),
            quantity,
            amount: amount.map(str::to_owned),
        };
        let by_sku =
            refund_plan(&order, &[line("A", Some(1), None)], None).map_err(|e| e.to_string())?;
        assert_eq!(by_sku.cents, 1000);
        assert_eq!(
            by_sku.lines,
            vec![("gid://shopify/LineItem/1".to_owned(), 1)]
        );
        assert!(!by_sku.whole);
        let capped = refund_plan(&order, &[line("B", None, None)], Some("2.00"))
            .map_err(|e| e.to_string())?;
        assert_eq!(capped.cents, 200);
        assert!(refund_plan(&order, &[line("B", None, None)], Some("9.00")).is_err());
        assert!(refund_plan(&order, &[line("A", Some(3), None)], None).is_err());
        assert!(refund_plan(&order, &[line("Z", None, None)], None).is_err());
        assert!(refund_plan(&order, &[line("A", None, Some("25.00"))], None).is_err());
        Ok(())
    }
}
