//! Walmart's refunds and cancellations, performed for the outbox through the
//! Marketplace Orders API (`specs/walmart/walmart-marketplace-orders-openapi-original.yml`):
//! `cancelOrderLines` (`POST /v3/orders/{purchaseOrderId}/cancel`) cancels every open unit
//! of the order's lines, `refundOrderLines` (`POST /v3/orders/{purchaseOrderId}/refund`)
//! refunds the `PRODUCT` charge (and its tax) of shipped lines. Both are
//! verify-then-retry:
//!
//! ```text
//! checks on the stored order ─► getAnOrder (fresh state, the "before")
//!   ─► record {submitted: lines before/after} ─► POST once ─► done
//!                                                 └─ unclear ─► getAnOrder ─► effect there: done
//!                                                                          └─ not there: retry later,
//!                                                                             read back again, resubmit
//! ```
//! An attempt that finds `submitted` recorded reads the order back first: it adopts the
//! effect when the lines show it (units `Cancelled`, the line's `refund` grown by the
//! amount), resubmits only when no line moved, and hands it to a person when only some
//! did.
//!
//! Rules speak Amazon's reason codes; [`cancel_reason`] and [`refund_reason`] take
//! Walmart's own ([`CANCEL_REASONS`], [`REFUND_REASONS`]) or map Amazon's to the nearest
//! one. An unknown reason, a shipped line to cancel or an unshipped one to refund is
//! refused before any call. Must never send an effect twice without having read back
//! that the first did not land, and never put a token or the buyer's data in a receipt,
//! an error or a log line.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use crate::executors::{ActionError, ActionExecutor, Attempt, Performed, Safety};
use crate::http::UpstreamError;
use crate::model::{
    ActionRequest, Fulfillment, OrderStatus, RefundLine, StoredOrder, format_cents, parse_cents,
};
use crate::sources::OrderSource;
use crate::sources::walmart::api::WalmartApi;
use crate::sources::walmart::{GET_AN_ORDER, LineStatus, WalmartOrder, WalmartSource, read_order};

/// `cancelOrderLines`, as logs and the sandbox's journal name it.
pub const CANCEL_ORDER_LINES: &str = "walmart.cancelOrderLines";
/// `refundOrderLines`.
pub const REFUND_ORDER_LINES: &str = "walmart.refundOrderLines";

/// Progress key: what the latest submission asked for, recorded before it was sent.
const SUBMITTED: &str = "submitted";

/// Walmart's `cancellationReason`s (the contract's enum).
pub const CANCEL_REASONS: &[&str] = &[
    "CUSTOMER_REQUESTED_SELLER_TO_CANCEL",
    "SELLER_CANCEL_PRICING_ERROR",
    "SELLER_CANCEL_OUT_OF_STOCK",
    "SELLER_CANCEL_FRAUD_STOP_SHIPMENT",
    "SELLER_CANCEL_ADDRESS_NOT_SERVICEABLE",
];

/// Walmart's `refundReason`s (the contract's enum, spelled as Walmart spells them).
pub const REFUND_REASONS: &[&str] = &[
    "BillingError",
    "TaxExemptCustomer",
    "ItemNotAsAdvertised",
    "IncorrectItemReceived",
    "CancelledYetShipped",
    "ItemNotReceivedByCustomer",
    "IncorrectShippingPrice",
    "DamagedItem",
    "DefectiveItem",
    "CustomerChangedMind",
    "CustomerReceivedItemLate",
    "Missing Parts / Instructions",
    "Finance -> Goodwill",
    "Finance -> Rollback",
    "Buyer canceled",
    "Customer returned item",
    "General adjustment",
    "Merchandise not received",
    "Quality -> Missing Parts / Instructions",
    "Shipping & Delivery -> Damaged",
    "Shipping & Delivery -> Shipping Price Discrepancy",
    "Others",
];

/// Amazon's `CancelReason`s (what rules name) and the nearest Walmart reason. Amazon's
/// GeneralAdjustment, CarrierCreditDecision, CustomerReturn and MerchandiseNotReceived
/// have no Walmart counterpart for an unshipped order and are refused.
const CANCEL_FROM_AMAZON: &[(&str, &str)] = &[
    ("BuyerCanceled", "CUSTOMER_REQUESTED_SELLER_TO_CANCEL"),
    // The buyer wants something else instead: still the buyer's request.
    ("CustomerExchange", "CUSTOMER_REQUESTED_SELLER_TO_CANCEL"),
    ("NoInventory", "SELLER_CANCEL_OUT_OF_STOCK"),
    (
        "ShippingAddressUndeliverable",
        "SELLER_CANCEL_ADDRESS_NOT_SERVICEABLE",
    ),
    // No carrier serves the address: the address cannot be served.
    (
        "CarrierCoverageFailure",
        "SELLER_CANCEL_ADDRESS_NOT_SERVICEABLE",
    ),
    // The buyer's details failed the seller's risk check: Walmart's fraud stop.
    (
        "RiskAssessmentInformationNotValid",
        "SELLER_CANCEL_FRAUD_STOP_SHIPMENT",
    ),
];

/// Amazon's `AdjustmentReason`s and the nearest Walmart refund reason. The reasons for
/// an order that never shipped (NoInventory, CouldNotShip, ProductOutofStock, …) and
/// Amazon's own bookkeeping ones (TransactionRecord, CarrierCreditDecision, …) have no
/// counterpart: Walmart refunds shipped lines only, and they are refused.
const REFUND_FROM_AMAZON: &[(&str, &str)] = &[
    ("CustomerReturn", "Customer returned item"),
    ("GeneralAdjustment", "General adjustment"),
    ("Other", "Others"),
    // The buyer was charged the wrong price.
    ("PriceError", "BillingError"),
    ("DifferentItem", "IncorrectItemReceived"),
    ("CustomerCancel", "Buyer canceled"),
    // The parcel never reached the buyer.
    ("Undeliverable", "Merchandise not received"),
    // A refused parcel goes back to the seller: a return.
    ("RefusedDelivery", "Customer returned item"),
];

/// Walmart's cancellation reason for `reason`: Walmart's own code as it is, or the
/// nearest one to an Amazon `CancelReason`.
pub fn cancel_reason(reason: &str) -> Option<&'static str> {
    crate::rules::reasons::native_reason(reason, CANCEL_REASONS, CANCEL_FROM_AMAZON)
}

/// Walmart's refund reason for `reason`: Walmart's own as it is, or the nearest one to
/// an Amazon `AdjustmentReason`.
pub fn refund_reason(reason: &str) -> Option<&'static str> {
    crate::rules::reasons::native_reason(reason, REFUND_REASONS, REFUND_FROM_AMAZON)
}

/// Which of the two calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Cancel,
    Refund,
}

impl Call {
    fn operation(self) -> &'static str {
        match self {
            Call::Cancel => CANCEL_ORDER_LINES,
            Call::Refund => REFUND_ORDER_LINES,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Call::Cancel => "cancel",
            Call::Refund => "refund",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Call::Cancel => "cancellation",
            Call::Refund => "refund",
        }
    }

    fn parse(operation: &str) -> Option<Call> {
        [Call::Cancel, Call::Refund]
            .into_iter()
            .find(|c| c.operation() == operation)
    }

    /// How far the effect has gone on one line: units cancelled, or cents of the
    /// `PRODUCT` charge refunded.
    fn measure(self, order: &WalmartOrder, line: &str) -> i64 {
        match self {
            Call::Cancel => units(order, line, |s| s == LineStatus::Cancelled),
            Call::Refund => order.refunded.get(line).copied().unwrap_or(0),
        }
    }
}

/// A line's units in the statuses `keep` accepts.
fn units(order: &WalmartOrder, line: &str, keep: fn(LineStatus) -> bool) -> i64 {
    order
        .line_statuses
        .get(line)
        .map(|statuses| {
            statuses
                .iter()
                .filter(|(s, _)| keep(*s))
                .map(|(_, n)| (*n).max(0))
                .sum()
        })
        .unwrap_or(0)
}

fn is_open(status: LineStatus) -> bool {
    matches!(status, LineStatus::Created | LineStatus::Acknowledged)
}

fn is_shipped(status: LineStatus) -> bool {
    matches!(
        status,
        LineStatus::Shipped | LineStatus::Delivered | LineStatus::Refund
    )
}

/// Where one line stood before the submission and where it stands once it took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    before: i64,
    after: i64,
}

/// What the read-back shows of a submission.
#[derive(Debug, PartialEq, Eq)]
enum Effect {
    /// Every line reached its target.
    Landed,
    /// No line moved.
    Absent,
    /// Some did, some did not (or moved part of the way): a person must look.
    Partial(String),
}

/// One request to Walmart, built and checked, with what it must change.
#[derive(Debug, Clone)]
struct Submission {
    call: Call,
    body: Value,
    targets: BTreeMap<String, Target>,
    /// The receipt once done (short, no personal data).
    receipt: Value,
}

impl Submission {
    /// What is recorded before the call.
    fn progress(&self, attempt: i64) -> Value {
        let lines: serde_json::Map<String, Value> = self
            .targets
            .iter()
            .map(|(line, t)| (line.clone(), json!({"before": t.before, "after": t.after})))
            .collect();
        json!({
            "call": self.call.operation(),
            "attempt": attempt,
            "lines": lines,
            "receipt": self.receipt,
        })
    }

    /// A submission recorded by an earlier attempt (the body is not needed again).
    fn recorded(progress: &Value) -> Option<Submission> {
        let call = Call::parse(progress.get("call")?.as_str()?)?;
        let mut targets = BTreeMap::new();
        for (line, t) in progress.get("lines")?.as_object()? {
            targets.insert(
                line.clone(),
                Target {
                    before: t.get("before")?.as_i64()?,
                    after: t.get("after")?.as_i64()?,
                },
            );
        }
        Some(Submission {
            call,
            body: Value::Null,
            targets,
            receipt: progress.get("receipt").cloned().unwrap_or(Value::Null),
        })
    }

    fn effect(&self, order: &WalmartOrder) -> Effect {
        let mut landed = Vec::new();
        let mut moved = Vec::new();
        let mut still = Vec::new();
        for (line, target) in &self.targets {
            let now = self.call.measure(order, line);
            if now >= target.after {
                landed.push(line.as_str());
            } else if now > target.before {
                moved.push(line.as_str());
            } else {
                still.push(line.as_str());
            }
        }
        if moved.is_empty() && still.is_empty() {
            Effect::Landed
        } else if moved.is_empty() && landed.is_empty() {
            Effect::Absent
        } else {
            Effect::Partial(format!(
                "lines done: [{}], part-way: [{}], untouched: [{}]",
                landed.join(", "),
                moved.join(", "),
                still.join(", ")
            ))
        }
    }

    fn done(&self, read_back: bool) -> Performed {
        let mut receipt = self.receipt.clone();
        if let Some(map) = receipt.as_object_mut() {
            map.insert("read_back".into(), json!(read_back));
        }
        Performed::Done(receipt)
    }
}

/// A line of a refund as asked, resolved to the order's line number.
#[derive(Debug, Clone)]
struct AskedLine {
    line: String,
    quantity: Option<i64>,
    amount: Option<i64>,
}

/// What the action asks, checked against the stored order (no call made yet).
#[derive(Debug, Clone)]
enum Intent {
    Cancel {
        reason: &'static str,
    },
    Refund {
        reason: &'static str,
        lines: Vec<AskedLine>,
        /// The most to refund over all lines, in cents.
        total: Option<i64>,
    },
}

/// What the fresh order allows.
enum Built {
    Ready(Submission),
    /// Nothing left to do: the order already shows it.
    AlreadyDone(Value),
}

fn refused(order: &str, why: impl std::fmt::Display) -> ActionError {
    ActionError::Permanent(format!("purchase order {order}: {why}; nothing was sent"))
}

impl Intent {
    fn new(request: &ActionRequest, stored: &StoredOrder) -> Result<Intent, ActionError> {
        let o = &stored.order;
        let id = o.id.as_str();
        if o.fulfillment == Some(Fulfillment::Afn) {
            return Err(refused(
                id,
                "Walmart Fulfillment Services ships it: its cancellations and refunds are Walmart's to make",
            ));
        }
        match request {
            ActionRequest::Cancel { reason, .. } => {
                let Some(code) = cancel_reason(reason) else {
                    return Err(refused(
                        id,
                        format!(
                            "{reason:?} is no Walmart cancellation reason nor an Amazon one with a Walmart counterpart (Walmart's: {})",
                            CANCEL_REASONS.join(", ")
                        ),
                    ));
                };
                let shipped = o.items.iter().any(|i| i.quantity_shipped > 0)
                    || matches!(
                        o.status,
                        OrderStatus::Shipped | OrderStatus::PartiallyShipped
                    );
                if shipped {
                    return Err(refused(
                        id,
                        format!(
                            "it is {} (a line has shipped units): shipped lines cannot be cancelled, refund them instead",
                            o.status
                        ),
                    ));
                }
                Ok(Intent::Cancel { reason: code })
            }
            ActionRequest::Refund {
                reason,
                items,
                amount,
                ..
            } => {
                let Some(code) = refund_reason(reason) else {
                    return Err(refused(
                        id,
                        format!(
                            "{reason:?} is no Walmart refund reason nor an Amazon one with a Walmart counterpart (Walmart's: {})",
                            REFUND_REASONS.join(", ")
                        ),
                    ));
                };
                if o.status == OrderStatus::Canceled {
                    return Err(refused(id, "it is cancelled: there is nothing to refund"));
                }
                let lines = asked_lines(stored, items)?;
                let total = match amount {
                    Some(text) => Some(
                        parse_cents(text)
                            .ok_or_else(|| refused(id, format!("{text:?} is not an amount")))?,
                    ),
                    None => None,
                };
                Ok(Intent::Refund {
                    reason: code,
                    lines,
                    total,
                })
            }
            other => Err(ActionError::Held(format!(
                "no Walmart executor for {} actions",
                other.kind()
            ))),
        }
    }

    fn call(&self) -> Call {
        match self {
            Intent::Cancel { .. } => Call::Cancel,
            Intent::Refund { .. } => Call::Refund,
        }
    }

    /// The request, from the order as Walmart has it now.
    fn build(&self, current: &WalmartOrder, comment: &str) -> Result<Built, ActionError> {
        match self {
            Intent::Cancel { reason } => build_cancel(current, reason),
            Intent::Refund {
                reason,
                lines,
                total,
            } => build_refund(current, reason, lines, *total, comment),
        }
    }
}

/// The lines a refund names (by line number or SKU), each shipped; all shipped lines
/// when it names none.
fn asked_lines(stored: &StoredOrder, items: &[RefundLine]) -> Result<Vec<AskedLine>, ActionError> {
    let o = &stored.order;
    let not_shipped = |line: &str| {
        refused(
            &o.id,
            format!(
                "line {line} has not shipped: Walmart refunds shipped lines only, cancel it instead"
            ),
        )
    };
    if items.is_empty() {
        let lines: Vec<AskedLine> = o
            .items
            .iter()
            .filter(|i| i.quantity_shipped > 0)
            .map(|i| AskedLine {
                line: i.id.clone(),
                quantity: None,
                amount: None,
            })
            .collect();
        if lines.is_empty() {
            return Err(not_shipped("(none of them)"));
        }
        return Ok(lines);
    }
    let mut lines = Vec::new();
    for asked in items {
        let Some(item) = o
            .items
            .iter()
            .find(|i| i.id == asked.item || i.sku.as_deref() == Some(asked.item.as_str()))
        else {
            return Err(refused(&o.id, format!("it has no line {}", asked.item)));
        };
        if item.quantity_shipped <= 0 {
            return Err(not_shipped(&item.id));
        }
        if lines.iter().any(|l: &AskedLine| l.line == item.id) {
            return Err(refused(&o.id, format!("line {} is named twice", item.id)));
        }
        let amount = match &asked.amount {
            Some(text) => Some(
                parse_cents(text)
                    .ok_or_else(|| refused(&o.id, format!("{text:?} is not an amount")))?,
            ),
            None => None,
        };
        lines.push(AskedLine {
            line: item.id.clone(),
            quantity: asked.quantity,
            amount,
        });
    }
    Ok(lines)
}

/// Every open unit of every line, cancelled.
fn build_cancel(current: &WalmartOrder, reason: &'static str) -> Result<Built, ActionError> {
    let id = current.order.id.as_str();
    let mut lines = Vec::new();
    let mut targets = BTreeMap::new();
    let mut receipt_lines = Vec::new();
    let mut fully_cancelled = true;
    for item in &current.order.items {
        let line = item.id.as_str();
        let shipped = units(current, line, is_shipped);
        if shipped > 0 {
            return Err(refused(
                id,
                format!("line {line} has shipped meanwhile ({shipped} unit(s)): refund it instead"),
            ));
        }
        let open = units(current, line, is_open);
        let cancelled = units(current, line, |s| s == LineStatus::Cancelled);
        if open == 0 {
            fully_cancelled &= cancelled > 0;
            continue;
        }
        lines.push(json!({
            "lineNumber": line,
            "orderLineStatuses": {"orderLineStatus": [{
                "status": "Cancelled",
                "cancellationReason": reason,
                "statusQuantity": {"unitOfMeasurement": "EACH", "amount": open.to_string()},
            }]},
        }));
        targets.insert(
            line.to_owned(),
            Target {
                before: cancelled,
                after: cancelled + open,
            },
        );
        receipt_lines.push(json!({"line": line, "units": open}));
    }
    if lines.is_empty() {
        if fully_cancelled && !current.order.items.is_empty() {
            return Ok(Built::AlreadyDone(json!({
                "call": CANCEL_ORDER_LINES,
                "purchase_order_id": id,
                "already_cancelled": true,
            })));
        }
        return Err(refused(id, "no line has units open to cancel"));
    }
    Ok(Built::Ready(Submission {
        call: Call::Cancel,
        body: json!({"orderCancellation": {"orderLines": {"orderLine": lines}}}),
        targets,
        receipt: json!({
            "call": CANCEL_ORDER_LINES,
            "purchase_order_id": id,
            "reason": reason,
            "lines": receipt_lines,
        }),
    }))
}

/// A refund amount as Walmart writes it: negative, two decimals.
fn refund_number(cents: i64) -> Value {
    serde_json::Number::from_f64(-(cents as f64) / 100.0).map_or(json!(0), Value::Number)
}

/// The `PRODUCT` charge of each line (its shipped units' share of the price unless an
/// amount is given), at most `total` over all lines, and the tax in proportion; never
/// more than what is left unrefunded on the line.
fn build_refund(
    current: &WalmartOrder,
    reason: &'static str,
    asked: &[AskedLine],
    total: Option<i64>,
    comment: &str,
) -> Result<Built, ActionError> {
    let id = current.order.id.as_str();
    let mut remaining = total;
    let mut lines = Vec::new();
    let mut targets = BTreeMap::new();
    let mut receipt_lines = Vec::new();
    let mut currency: Option<String> = None;
    let mut sum = 0;
    for wanted in asked {
        let line = wanted.line.as_str();
        let Some(item) = current.order.items.iter().find(|i| i.id == line) else {
            return Err(refused(id, format!("Walmart shows no line {line}")));
        };
        let shipped = units(current, line, is_shipped);
        if shipped == 0 {
            return Err(refused(
                id,
                format!("line {line} shows no shipped units at Walmart: cancel it instead"),
            ));
        }
        let Some(price) = &item.price else {
            return Err(refused(id, format!("line {line} has no PRODUCT charge")));
        };
        let full = parse_cents(&price.amount)
            .ok_or_else(|| refused(id, format!("line {line} has price {:?}", price.amount)))?;
        let quantity = wanted.quantity.unwrap_or(shipped);
        if quantity < 1 || quantity > shipped {
            return Err(refused(
                id,
                format!(
                    "quantity {quantity} of line {line} is not between 1 and the {shipped} shipped"
                ),
            ));
        }
        let share = if item.quantity_ordered > 0 {
            full * quantity / item.quantity_ordered
        } else {
            full
        };
        let mut principal = wanted.amount.unwrap_or(share);
        if let Some(left) = remaining.as_mut() {
            principal = principal.min(*left);
            *left -= principal;
        }
        let already = current.refunded.get(line).copied().unwrap_or(0);
        if principal > full - already {
            return Err(refused(
                id,
                format!(
                    "{} is more than the {} left to refund on line {line} (price {}, refunded {})",
                    format_cents(principal),
                    format_cents((full - already).max(0)),
                    price.amount,
                    format_cents(already)
                ),
            ));
        }
        if principal == 0 {
            continue;
        }
        match &currency {
            Some(c) if *c != price.currency => {
                return Err(refused(id, "its lines are in different currencies"));
            }
            Some(_) => {}
            None => currency = Some(price.currency.clone()),
        }
        let tax = item
            .tax
            .as_ref()
            .and_then(|t| parse_cents(&t.amount))
            .filter(|_| full > 0)
            .map_or(0, |tax| (tax * principal + full / 2) / full);
        let mut charge = json!({
            "chargeType": "PRODUCT",
            "chargeName": "ItemPrice",
            "chargeAmount": {"currency": price.currency, "amount": refund_number(principal)},
        });
        if tax > 0
            && let Some(map) = charge.as_object_mut()
        {
            map.insert(
                "tax".into(),
                json!({"taxName": "Tax1", "taxAmount": {"currency": price.currency, "amount": refund_number(tax)}}),
            );
        }
        lines.push(json!({
            "lineNumber": line,
            // Partial refunds only: a full one would also return shipping, which no
            // rule asked for.
            "isFullRefund": false,
            "refunds": {"refund": [{
                "refundComments": comment,
                "refundCharges": {"refundCharge": [{"refundReason": reason, "charge": charge}]},
            }]},
        }));
        targets.insert(
            line.to_owned(),
            Target {
                before: already,
                after: already + principal,
            },
        );
        sum += principal + tax;
        receipt_lines.push(json!({
            "line": line,
            "amount": format_cents(principal),
            "tax": format_cents(tax),
        }));
    }
    if let Some(left) = remaining
        && left > 0
    {
        return Err(refused(
            id,
            format!(
                "the amount is {} more than the lines' prices",
                format_cents(left)
            ),
        ));
    }
    if lines.is_empty() {
        return Err(refused(id, "nothing to refund (amount 0)"));
    }
    Ok(Built::Ready(Submission {
        call: Call::Refund,
        body: json!({"orderRefund": {
            "purchaseOrderId": id,
            "orderLines": {"orderLine": lines},
        }}),
        targets,
        receipt: json!({
            "call": REFUND_ORDER_LINES,
            "purchase_order_id": id,
            "reason": reason,
            "currency": currency,
            "total": format_cents(sum),
            "lines": receipt_lines,
        }),
    }))
}

/// A 2xx that is not the order the contract promises is as unclear as no answer.
fn answered_order(reply: &crate::http::Reply, call: Call) -> Result<(), UpstreamError> {
    let body: Value = reply.json(&format!("Walmart {} response", call.operation()))?;
    if body.get("order").is_some_and(Value::is_object) {
        Ok(())
    } else {
        Err(UpstreamError::Malformed {
            what: format!("Walmart {} response", call.operation()),
            reason: "no order in it".to_owned(),
        })
    }
}

/// A refusal that will not change (4xx but 429) is permanent, with Walmart's errors;
/// anything else goes to the outbox to retry.
fn not_done(call: Call, order: &str, error: UpstreamError) -> ActionError {
    match &error {
        UpstreamError::Status { status, .. } if (400..500).contains(status) && *status != 429 => {
            ActionError::Permanent(format!(
                "Walmart refused the {} of purchase order {order}: {error}",
                call.noun()
            ))
        }
        _ => ActionError::Upstream {
            during: call.operation(),
            error,
        },
    }
}

/// Acts on one Walmart account.
pub struct WalmartExecutor {
    /// `walmart/<account>`.
    key: String,
    account: String,
    api: Arc<WalmartApi>,
}

impl std::fmt::Debug for WalmartExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalmartExecutor")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl WalmartExecutor {
    /// Acts with the source's own client: one token, one set of headers.
    pub fn new(source: &WalmartSource) -> Self {
        Self {
            key: source.key().to_owned(),
            account: source.account().to_owned(),
            api: source.api().clone(),
        }
    }

    async fn read(
        &self,
        purchase_order_id: &str,
        during: &'static str,
    ) -> Result<Option<WalmartOrder>, ActionError> {
        read_order(&self.api, &self.account, purchase_order_id)
            .await
            .map_err(ActionError::upstream(during))
    }

    /// After an answer that leaves it open whether Walmart acted: read the order back.
    async fn after_unclear(
        &self,
        submission: &Submission,
        order: &str,
        error: UpstreamError,
    ) -> Result<Performed, ActionError> {
        let call = submission.call;
        let current = self.read(order, "getAnOrder (read-back)").await?;
        let Some(current) = current else {
            return Err(ActionError::Unknown(format!(
                "the {} of purchase order {order} ended unclearly ({error}) and Walmart no longer shows the order; \
                 check it in Seller Center, then approve to send it again or reject",
                call.noun()
            )));
        };
        match submission.effect(&current) {
            Effect::Landed => {
                tracing::info!(operation = call.operation(), %error, "unclear answer; the read-back shows the effect, adopted");
                Ok(submission.done(true))
            }
            Effect::Absent if error.is_retryable() => {
                // Kept as submitted: the next attempt reads back again (Walmart may
                // still be at it) and resubmits only if nothing shows then.
                Err(ActionError::Upstream {
                    during: call.operation(),
                    error,
                })
            }
            Effect::Absent => Err(ActionError::Unknown(format!(
                "Walmart's answer to the {} of purchase order {order} was unreadable ({error}) and the order does not show it; \
                 check it in Seller Center, then approve to send it again or reject",
                call.noun()
            ))),
            Effect::Partial(detail) => Err(ActionError::Unknown(format!(
                "the {} of purchase order {order} ended unclearly ({error}) and took effect on part of it only ({detail}); \
                 check it in Seller Center",
                call.noun()
            ))),
        }
    }
}

#[async_trait]
impl ActionExecutor for WalmartExecutor {
    fn safety(&self, request: &ActionRequest) -> Safety {
        match request {
            ActionRequest::Refund { .. } | ActionRequest::Cancel { .. } => Safety::VerifyThenRetry,
            _ => Safety::AtMostOnce,
        }
    }

    async fn perform(&self, attempt: &mut Attempt<'_>) -> Result<Performed, ActionError> {
        let Some(stored) = attempt.order.cloned() else {
            return Err(ActionError::Permanent(format!(
                "{} is not a stored Walmart order",
                attempt.claim.subject
            )));
        };
        let order = stored.order.id.clone();
        let mut fresh = None;
        // An earlier submission is settled first: the stored order may already show its
        // effect, which must not make the checks below refuse what is done.
        if let Some(recorded) = attempt.progress(SUBMITTED).cloned() {
            let Some(earlier) = Submission::recorded(&recorded) else {
                return Err(ActionError::Unknown(format!(
                    "an earlier attempt's record of the {} of purchase order {order} is unreadable; check it in Seller Center",
                    attempt.request.kind()
                )));
            };
            let noun = earlier.call.noun();
            let Some(current) = self.read(&order, "getAnOrder (read-back)").await? else {
                return Err(ActionError::Unknown(format!(
                    "an earlier attempt sent the {noun} of purchase order {order} without a clear answer, and Walmart no longer shows the order; \
                     check it in Seller Center"
                )));
            };
            match earlier.effect(&current) {
                Effect::Landed => return Ok(earlier.done(true)),
                Effect::Partial(detail) => {
                    return Err(ActionError::Unknown(format!(
                        "an earlier attempt's {noun} of purchase order {order} took effect on part of it only ({detail}); \
                         check it in Seller Center"
                    )));
                }
                Effect::Absent => {
                    tracing::info!(
                        action = attempt.claim.id,
                        operation = earlier.call.operation(),
                        "read-back shows no effect of the earlier submission; submitting again"
                    );
                    attempt.record(SUBMITTED, Value::Null).await?;
                    fresh = Some(current);
                }
            }
        }
        let intent = Intent::new(attempt.request, &stored)?;
        let call = intent.call();
        let current = match fresh {
            Some(current) => current,
            None => self
                .read(&order, GET_AN_ORDER)
                .await?
                .ok_or_else(|| refused(&order, "Walmart has no such purchase order"))?,
        };
        let comment = format!("nightdesk action #{}", attempt.claim.id);
        let submission = match intent.build(&current, &comment)? {
            Built::Ready(submission) => submission,
            Built::AlreadyDone(receipt) => return Ok(Performed::Done(receipt)),
        };
        let url = self
            .api
            .url(&["v3", "orders", &order, call.path()])
            .map_err(ActionError::upstream(call.operation()))?;
        attempt
            .record(SUBMITTED, submission.progress(attempt.claim.attempt))
            .await?;
        fail::fail_point!("walmart.after_record", |_| Err(ActionError::Crashed(
            "walmart.after_record"
        )));
        let sent = self
            .api
            .call_once(Method::POST, &url, Some(&submission.body))
            .await
            .and_then(|reply| answered_order(&reply, call));
        match sent {
            Ok(()) => Ok(submission.done(false)),
            Err(error) if !error.may_have_acted() => {
                // Certainly not done: nothing to read back next time.
                attempt.record(SUBMITTED, Value::Null).await?;
                Err(not_done(call, &order, error))
            }
            Err(error) => self.after_unclear(&submission, &order, error).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::reasons::{AMAZON_CANCEL_REASONS, AMAZON_REFUND_REASONS};
    use crate::sources::walmart::orders::parse_order;

    #[test]
    fn every_mapping_is_from_an_amazon_code_to_a_walmart_one() {
        use crate::rules::reasons::assert_reason_table;
        assert_reason_table(
            CANCEL_REASONS,
            CANCEL_FROM_AMAZON,
            AMAZON_CANCEL_REASONS,
            false,
        );
        assert_reason_table(
            REFUND_REASONS,
            REFUND_FROM_AMAZON,
            AMAZON_REFUND_REASONS,
            false,
        );
    }

    #[test]
    fn native_codes_pass_amazon_codes_map_and_the_rest_is_refused() {
        assert_eq!(
            cancel_reason("SELLER_CANCEL_PRICING_ERROR"),
            Some("SELLER_CANCEL_PRICING_ERROR")
        );
        assert_eq!(
            cancel_reason("BuyerCanceled"),
            Some("CUSTOMER_REQUESTED_SELLER_TO_CANCEL")
        );
        assert_eq!(
            cancel_reason("NoInventory"),
            Some("SELLER_CANCEL_OUT_OF_STOCK")
        );
        assert_eq!(cancel_reason("GeneralAdjustment"), None);
        assert_eq!(cancel_reason("BecauseISaidSo"), None);
        assert_eq!(
            refund_reason("Finance -> Goodwill"),
            Some("Finance -> Goodwill")
        );
        assert_eq!(
            refund_reason("CustomerReturn"),
            Some("Customer returned item")
        );
        assert_eq!(refund_reason("PriceError"), Some("BillingError"));
        assert_eq!(refund_reason("NoInventory"), None);
        assert_eq!(refund_reason(""), None);
    }

    /// A purchase order with two lines: line 1 two units at 10.00 (tax 0.80), line 2 one
    /// at 5.00 (no tax); `statuses` per line, `refunded` PRODUCT amounts per line.
    fn order(statuses: [&str; 2], refunded: [Option<f64>; 2]) -> WalmartOrder {
        let line = |n: usize, price: f64, tax: f64, quantity: u32| {
            let mut line = json!({
                "lineNumber": n.to_string(),
                "item": {"productName": "Mug", "sku": format!("SKU-{n}")},
                "charges": {"charge": [{
                    "chargeType": "PRODUCT", "chargeName": "ItemPrice",
                    "chargeAmount": {"currency": "USD", "amount": price},
                    "tax": {"taxName": "Tax1", "taxAmount": {"currency": "USD", "amount": tax}},
                }]},
                "orderLineQuantity": {"unitOfMeasurement": "EACH", "amount": quantity.to_string()},
                "statusDate": 1_700_000_000_000_i64,
                "orderLineStatuses": {"orderLineStatus": [{
                    "status": statuses[n - 1],
                    "statusQuantity": {"unitOfMeasurement": "EACH", "amount": quantity.to_string()},
                }]},
            });
            if let Some(amount) = refunded[n - 1] {
                line["refund"] = json!({"refundCharges": {"refundCharge": [{
                    "refundReason": "Others",
                    "charge": {"chargeType": "PRODUCT", "chargeName": "ItemPrice",
                               "chargeAmount": {"currency": "USD", "amount": -amount}},
                }]}});
            }
            line
        };
        let raw = json!({
            "purchaseOrderId": "1000000000001",
            "customerOrderId": "2000000000001",
            "customerEmailId": "X@relay.walmart.com",
            "orderDate": 1_700_000_000_000_i64,
            "shippingInfo": {
                "estimatedDeliveryDate": 1_700_000_000_000_i64,
                "estimatedShipDate": 1_700_000_000_000_i64,
                "methodCode": "Standard",
                "postalAddress": {"name": "A B", "city": "C", "state": "AR",
                                  "postalCode": "72712", "country": "USA"},
            },
            "orderLines": {"orderLine": [line(1, 20.0, 1.6, 2), line(2, 5.0, 0.0, 1)]},
        });
        match parse_order(raw, "us") {
            Ok(order) => order,
            Err(e) => panic!("test order: {e}"),
        }
    }

    fn ready(built: Result<Built, ActionError>) -> Submission {
        match built {
            Ok(Built::Ready(s)) => s,
            Ok(Built::AlreadyDone(r)) => panic!("already done: {r}"),
            Err(e) => panic!("refused: {e}"),
        }
    }

    fn all_lines() -> Vec<AskedLine> {
        ["1", "2"]
            .into_iter()
            .map(|line| AskedLine {
                line: line.into(),
                quantity: None,
                amount: None,
            })
            .collect()
    }

    #[test]
    fn a_cancellation_cancels_every_open_unit_and_knows_when_it_landed() {
        let before = order(["Created", "Acknowledged"], [None, None]);
        let s = ready(build_cancel(&before, "SELLER_CANCEL_OUT_OF_STOCK"));
        let lines = &s.body["orderCancellation"]["orderLines"]["orderLine"];
        assert_eq!(lines[0]["lineNumber"], "1");
        assert_eq!(
            lines[0]["orderLineStatuses"]["orderLineStatus"][0]["statusQuantity"]["amount"],
            "2"
        );
        assert_eq!(s.effect(&before), Effect::Absent);
        let after = order(["Cancelled", "Cancelled"], [None, None]);
        assert_eq!(s.effect(&after), Effect::Landed);
        let half = order(["Cancelled", "Acknowledged"], [None, None]);
        assert!(matches!(s.effect(&half), Effect::Partial(_)));
        assert!(matches!(
            build_cancel(&after, "SELLER_CANCEL_OUT_OF_STOCK"),
            Ok(Built::AlreadyDone(_))
        ));
        assert!(matches!(
            build_cancel(
                &order(["Shipped", "Created"], [None, None]),
                "SELLER_CANCEL_OUT_OF_STOCK"
            ),
            Err(ActionError::Permanent(_))
        ));
    }

    #[test]
    fn a_refund_takes_the_price_and_its_tax_and_never_more_than_is_left() {
        let shipped = order(["Shipped", "Delivered"], [None, None]);
        let s = ready(build_refund(&shipped, "Others", &all_lines(), None, "c"));
        let lines = &s.body["orderRefund"]["orderLines"]["orderLine"];
        let charge =
            &lines[0]["refunds"]["refund"][0]["refundCharges"]["refundCharge"][0]["charge"];
        assert_eq!(charge["chargeAmount"]["amount"], json!(-20.0));
        assert_eq!(charge["tax"]["taxAmount"]["amount"], json!(-1.6));
        assert_eq!(s.receipt["total"], "26.60");
        assert_eq!(
            s.targets.get("1"),
            Some(&Target {
                before: 0,
                after: 2000
            })
        );
        // One of the two units: half the price and half the tax.
        let one = [AskedLine {
            line: "1".into(),
            quantity: Some(1),
            amount: None,
        }];
        let s = ready(build_refund(&shipped, "Others", &one, None, "c"));
        assert_eq!(s.receipt["lines"][0]["amount"], "10.00");
        assert_eq!(s.receipt["lines"][0]["tax"], "0.80");
        // An amount over several lines fills them in order.
        let s = ready(build_refund(
            &shipped,
            "Others",
            &all_lines(),
            Some(2200),
            "c",
        ));
        assert_eq!(s.receipt["lines"][1]["amount"], "2.00");
        assert!(build_refund(&shipped, "Others", &all_lines(), Some(9999), "c").is_err());
        // 15.00 of line 1 refunded already: 5.00 is left, 20.00 is refused.
        let partly = order(["Shipped", "Delivered"], [Some(15.0), None]);
        assert!(matches!(
            build_refund(&partly, "Others", &all_lines(), None, "c"),
            Err(ActionError::Permanent(_))
        ));
        let landed = order(["Shipped", "Delivered"], [Some(20.0), Some(5.0)]);
        let s = ready(build_refund(&shipped, "Others", &all_lines(), None, "c"));
        assert_eq!(s.effect(&landed), Effect::Landed);
        assert_eq!(s.effect(&shipped), Effect::Absent);
        // An unshipped line is cancelled, not refunded.
        let open = order(["Acknowledged", "Shipped"], [None, None]);
        assert!(build_refund(&open, "Others", &all_lines(), None, "c").is_err());
    }

    #[test]
    fn a_recorded_submission_reads_back_as_it_was() {
        let shipped = order(["Shipped", "Delivered"], [None, None]);
        let s = ready(build_refund(&shipped, "Others", &all_lines(), None, "c"));
        let again = Submission::recorded(&s.progress(3));
        assert_eq!(again.as_ref().map(|a| a.call), Some(Call::Refund));
        assert_eq!(again.map(|a| a.targets), Some(s.targets.clone()));
        assert!(Submission::recorded(&json!({"call": "walmart.other", "lines": {}})).is_none());
    }
}
