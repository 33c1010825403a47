//! Amazon actions of one seller account: buyer messages through the Messaging API
//! (at most once), refunds and cancellations of merchant-fulfilled orders through order
//! feeds (verify, then retry). Pending orders are never refunded or cancelled, and
//! nothing leaves without passing the compliance linter. Never logs message text.
//!
//! The feed flow keeps its place in the outbox row, so a crash anywhere resumes
//! instead of submitting a second feed:
//!
//! ```text
//! build XML ─► createFeedDocument ─► upload ─► record {document, feed_requested}
//!   ─► createFeed ─► record {feed_id} ─► getFeed … DONE ─► processing report ─► done/failed
//! ```
//! If an attempt stopped after `feed_requested` without a feed id, the next one lists
//! the account's feeds of that type created since the document and adopts the one it
//! finds, submits again only when there is none, and calls it `unknown` when it cannot
//! tell which is its own.

pub mod feed_xml;
pub mod feeds;
pub mod messaging;

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use chrono::Duration;

use super::{ActionError, ActionExecutor, Attempt, Performed, SENDING, Safety};
use crate::model::{ActionRequest, Fulfillment, OrderStatus, RefundLine, StoredOrder};
use crate::rules::compliance::{MessageKind, Policy};
use crate::rules::outgoing::{Composed, compose};
use crate::rules::templates::{Templates, language_for_marketplace};
use crate::sources::amazon::restricted::RestrictedData;
use feed_xml::{AdjustmentLine, Amount, CancelLine};
use feeds::{FeedsClient, ProcessingStatus};
use messaging::MessagingClient;

/// A feed still not processed after this long is handed to a person.
const FEED_PATIENCE: Duration = Duration::hours(24);

pub struct AmazonExecutor {
    account: String,
    seller_id: Option<String>,
    messaging: MessagingClient,
    feeds: FeedsClient,
    /// Buyer name and address, only for templates that read `buyer.*`.
    restricted: RestrictedData,
    templates: Arc<ArcSwap<Templates>>,
    /// How often a submitted feed is looked at while Amazon processes it.
    feed_poll: Duration,
}

impl AmazonExecutor {
    pub fn new(
        account: &str,
        seller_id: Option<String>,
        api: Arc<crate::sources::amazon::api::SpApi>,
        templates: Arc<ArcSwap<Templates>>,
        feed_poll: Duration,
    ) -> Self {
        Self {
            account: account.to_owned(),
            seller_id,
            messaging: MessagingClient::new(api.clone()),
            restricted: RestrictedData::new(api.clone()),
            feeds: FeedsClient::new(api),
            templates,
            feed_poll,
        }
    }

    async fn notify_buyer(
        &self,
        attempt: &mut Attempt<'_>,
        order: &StoredOrder,
        message_type: &str,
        template: &str,
    ) -> Result<Performed, ActionError> {
        let order_id = order.order.id.as_str();
        if attempt.progress(SENDING).is_some() {
            return Err(ActionError::Unknown(format!(
                "an earlier attempt was sending the {message_type} message for order {order_id} when it stopped; \
                 look in Seller Central (Buyer-Seller Messages) whether it arrived, then approve the action to send it again or reject it"
            )));
        }
        let marketplace = marketplace(order)?;
        let Some(kind) = MessageKind::from_api_name(message_type) else {
            return Err(ActionError::Permanent(format!(
                "{message_type:?} is not a Messaging API text message type"
            )));
        };
        let language = language_for_marketplace(marketplace);
        let mut context = template_context(order, attempt.now)?;
        let shipments = attempt.shipments().await.map_err(ActionError::Store)?;
        context["shipment"] = shipment_context(&shipments);
        let templates = self.templates.load();
        if templates.reads(template, "buyer") {
            // Restricted data: fetched for this message only, never stored or logged.
            let buyer = self
                .restricted
                .buyer(order_id)
                .await
                .map_err(ActionError::upstream("getOrderBuyerInfo"))?;
            context["buyer"] = buyer_context(&buyer);
        }
        let text = match compose(
            &templates,
            template,
            language,
            &context,
            Policy::Amazon,
            kind,
        ) {
            Ok(Composed::Ready(rendered)) => rendered.text,
            Ok(Composed::Refused { violations, .. }) => {
                let why: Vec<String> = violations.iter().map(ToString::to_string).collect();
                return Err(ActionError::Permanent(format!(
                    "the rendered {template} message breaks Amazon's messaging policy: {}",
                    why.join("; ")
                )));
            }
            Err(e) => {
                return Err(ActionError::Permanent(format!(
                    "template {template} did not render: {e}"
                )));
            }
        };
        let allowed = self
            .messaging
            .allowed_actions(order_id, marketplace)
            .await
            .map_err(ActionError::upstream("getMessagingActionsForOrder"))?;
        if !allowed.iter().any(|a| a == message_type) {
            return Err(ActionError::Permanent(format!(
                "Amazon does not allow a {message_type} message for order {order_id} now (allowed: {})",
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        attempt
            .record(SENDING, serde_json::json!(attempt.claim.attempt))
            .await?;
        match self
            .messaging
            .send(order_id, marketplace, message_type, &text)
            .await
        {
            Ok(receipt) => Ok(Performed::Done(serde_json::json!({
                "message_type": message_type,
                "language": language,
                "characters": text.chars().count(),
                "receipt": receipt,
            }))),
            Err(error) if error.may_have_acted() => Err(ActionError::Unknown(format!(
                "sending the {message_type} message for order {order_id} ended unclearly ({error}); \
                 look in Seller Central (Buyer-Seller Messages) whether it arrived, then approve to send again or reject"
            ))),
            Err(error) => {
                // Certainly not sent: clear the marker so a retry may send.
                attempt.record(SENDING, serde_json::Value::Null).await?;
                Err(ActionError::Upstream {
                    during: "create message",
                    error,
                })
            }
        }
    }

    /// Build the feed for a refund or cancellation, after the checks no call may skip.
    fn feed_for(
        &self,
        request: &ActionRequest,
        order: &StoredOrder,
    ) -> Result<(&'static str, String), ActionError> {
        let Some(seller_id) = &self.seller_id else {
            return Err(ActionError::Held(format!(
                "order feeds need the seller's merchant token: set amazon.accounts[{}].seller_id",
                self.account
            )));
        };
        let o = &order.order;
        let what = request.kind();
        if o.status == OrderStatus::Pending {
            return Err(ActionError::Permanent(format!(
                "order {} is Pending (payment not authorised): it cannot be {}; nothing was sent",
                o.id,
                if what == "refund" {
                    "refunded"
                } else {
                    "cancelled"
                }
            )));
        }
        if o.fulfillment == Some(Fulfillment::Afn) {
            return Err(ActionError::Permanent(format!(
                "order {} is fulfilled by Amazon: its {what} is Amazon's to make, not a seller feed's",
                o.id
            )));
        }
        let built = match request {
            ActionRequest::Cancel { reason, .. } => {
                if matches!(o.status, OrderStatus::Shipped | OrderStatus::Canceled)
                    || o.items.iter().any(|i| i.quantity_shipped > 0)
                {
                    return Err(ActionError::Permanent(format!(
                        "order {} is {} (or partly shipped): cancelling it would refund shipped items; refund instead",
                        o.id,
                        o.status.as_str()
                    )));
                }
                let lines: Vec<CancelLine> = o
                    .items
                    .iter()
                    .map(|item| CancelLine {
                        item_code: item.id.clone(),
                        reason: reason.clone(),
                    })
                    .collect();
                let xml = feed_xml::cancellation_feed(seller_id, &o.id, &lines)
                    .map_err(|e| ActionError::Permanent(format!("cancellation feed: {e}")))?;
                (feed_xml::ORDER_ACKNOWLEDGEMENT, xml)
            }
            ActionRequest::Refund {
                reason,
                items,
                amount,
                ..
            } => {
                if o.status == OrderStatus::Canceled {
                    return Err(ActionError::Permanent(format!(
                        "order {} is cancelled: there is nothing to refund",
                        o.id
                    )));
                }
                let lines = refund_lines(order, reason, items, amount.as_deref())?;
                let xml = feed_xml::adjustment_feed(seller_id, &o.id, &lines)
                    .map_err(|e| ActionError::Permanent(format!("refund feed: {e}")))?;
                (feed_xml::PAYMENT_ADJUSTMENT, xml)
            }
            other => {
                return Err(ActionError::Permanent(format!(
                    "{} is not an order feed action",
                    other.kind()
                )));
            }
        };
        Ok(built)
    }

    async fn order_feed(
        &self,
        attempt: &mut Attempt<'_>,
        order: &StoredOrder,
    ) -> Result<Performed, ActionError> {
        let marketplaces: Vec<String> = vec![marketplace(order)?.to_owned()];
        let order_id = order.order.id.clone();
        if let Some(feed_id) = attempt.progress("feed_id").and_then(|v| v.as_str()) {
            let feed_id = feed_id.to_owned();
            return self.follow_feed(attempt, &feed_id, &order_id).await;
        }
        let (feed_type, xml) = self.feed_for(attempt.request, order)?;
        if attempt.progress("feed_requested").is_some() {
            // An earlier attempt asked for a feed and never heard which: read back.
            let since = attempt
                .progress("document_at")
                .and_then(|v| v.as_str())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc() - Duration::minutes(1))
                .unwrap_or(attempt.now - Duration::days(1));
            let found = self
                .feeds
                .feeds_since(feed_type, &marketplaces, since)
                .await
                .map_err(ActionError::upstream("getFeeds (read-back)"))?;
            match found.as_slice() {
                [] => {
                    tracing::info!(
                        action = attempt.claim.id,
                        "read-back found no feed; submitting again"
                    );
                }
                [feed] => {
                    let feed_id = feed.id.clone();
                    attempt
                        .record_all(&[
                            ("feed_id", serde_json::json!(feed_id)),
                            ("read_back", serde_json::json!(true)),
                        ])
                        .await?;
                    return self.follow_feed(attempt, &feed_id, &order_id).await;
                }
                several => {
                    let ids: Vec<&str> = several.iter().map(|f| f.id.as_str()).collect();
                    return Err(ActionError::Unknown(format!(
                        "an earlier attempt submitted a {feed_type} feed for order {order_id} without learning its id, \
                         and {} such feeds exist since ({}); check them in Seller Central, then approve to submit again or reject",
                        ids.len(),
                        ids.join(", ")
                    )));
                }
            }
        }
        let document = self
            .feeds
            .create_document(feed_xml::CONTENT_TYPE)
            .await
            .map_err(ActionError::upstream("createFeedDocument"))?;
        self.feeds
            .upload(&document, feed_xml::CONTENT_TYPE, xml.as_bytes())
            .await
            .map_err(ActionError::upstream("upload feed document"))?;
        let document_at = attempt.now.to_rfc3339();
        attempt
            .record_all(&[
                ("document_id", serde_json::json!(document.id)),
                ("document_at", serde_json::json!(document_at)),
                ("feed_requested", serde_json::json!(feed_type)),
            ])
            .await?;
        let feed_id = match self
            .feeds
            .create_feed(feed_type, &marketplaces, &document.id)
            .await
        {
            Ok(feed_id) => feed_id,
            Err(error) => {
                if !error.may_have_acted() {
                    attempt
                        .record("feed_requested", serde_json::Value::Null)
                        .await?;
                }
                return Err(ActionError::Upstream {
                    during: "createFeed",
                    error,
                });
            }
        };
        fail::fail_point!("feeds.after_create_feed", |_| Err(ActionError::Crashed(
            "feeds.after_create_feed"
        )));
        attempt
            .record("feed_id", serde_json::json!(feed_id))
            .await?;
        Ok(Performed::Wait {
            at: attempt.now + self.feed_poll,
            note: format!("feed {feed_id} submitted; waiting for Amazon to process it"),
        })
    }

    async fn follow_feed(
        &self,
        attempt: &mut Attempt<'_>,
        feed_id: &str,
        order_id: &str,
    ) -> Result<Performed, ActionError> {
        let feed = self
            .feeds
            .get_feed(feed_id)
            .await
            .map_err(ActionError::upstream("getFeed"))?;
        match feed.status {
            ProcessingStatus::Done => {}
            ProcessingStatus::Fatal | ProcessingStatus::Cancelled => {
                return Err(ActionError::Permanent(format!(
                    "feed {feed_id} ended {:?} at Amazon; the order was not changed by it",
                    feed.status
                )));
            }
            ProcessingStatus::InQueue | ProcessingStatus::InProgress => {
                if attempt.now - feed.created > FEED_PATIENCE {
                    return Err(ActionError::Unknown(format!(
                        "feed {feed_id} is still {:?} after a day; check it in Seller Central",
                        feed.status
                    )));
                }
                return Ok(Performed::Wait {
                    at: attempt.now + self.feed_poll,
                    note: format!("feed {feed_id} is {:?}", feed.status),
                });
            }
        }
        let Some(document_id) = feed.result_document_id else {
            return Err(ActionError::Unknown(format!(
                "feed {feed_id} is done but has no processing report; check it in Seller Central"
            )));
        };
        let text = self
            .feeds
            .result_document(&document_id)
            .await
            .map_err(ActionError::upstream("getFeedDocument"))?;
        let report = feed_xml::parse_processing_report(&text).map_err(|e| {
            ActionError::Unknown(format!(
                "the processing report of feed {feed_id} does not parse ({e}); check the order in Seller Central"
            ))
        })?;
        let errors: Vec<String> = report
            .results
            .iter()
            .filter(|r| r.code.eq_ignore_ascii_case("error"))
            .filter(|r| r.order_id.as_deref().is_none_or(|id| id == order_id))
            .map(|r| format!("{} {}", r.message_code, r.description))
            .collect();
        if !errors.is_empty() || report.successful == 0 {
            return Err(ActionError::Permanent(format!(
                "Amazon refused it (feed {feed_id}): {}",
                if errors.is_empty() {
                    "no message succeeded".to_owned()
                } else {
                    errors.join("; ")
                }
            )));
        }
        Ok(Performed::Done(serde_json::json!({
            "feed_id": feed_id,
            "processed": report.processed,
            "successful": report.successful,
            "warnings": report.with_warning,
            "read_back": attempt.progress("read_back").is_some(),
        })))
    }
}

#[async_trait]
impl ActionExecutor for AmazonExecutor {
    fn safety(&self, request: &ActionRequest) -> Safety {
        match request {
            ActionRequest::Refund { .. } | ActionRequest::Cancel { .. } => Safety::VerifyThenRetry,
            _ => Safety::AtMostOnce,
        }
    }

    async fn perform(&self, attempt: &mut Attempt<'_>) -> Result<Performed, ActionError> {
        let Some(order) = attempt.order.cloned() else {
            return Err(ActionError::Permanent(format!(
                "{} is not a stored Amazon order",
                attempt.claim.subject
            )));
        };
        match attempt.request.clone() {
            ActionRequest::NotifyBuyer {
                message_type,
                template,
                ..
            } => {
                self.notify_buyer(attempt, &order, &message_type, &template)
                    .await
            }
            ActionRequest::Refund { .. } | ActionRequest::Cancel { .. } => {
                self.order_feed(attempt, &order).await
            }
            other => Err(ActionError::Held(format!(
                "no Amazon executor for {} actions",
                other.kind()
            ))),
        }
    }
}

fn marketplace(order: &StoredOrder) -> Result<&str, ActionError> {
    order.order.marketplace_id.as_deref().ok_or_else(|| {
        ActionError::Permanent(format!(
            "order {} has no marketplace id; Amazon needs one",
            order.order.id
        ))
    })
}

/// What templates see of the buyer: the name, and its first word for a greeting.
fn buyer_context(buyer: &crate::model::BuyerDetails) -> serde_json::Value {
    let name = buyer
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    match name {
        Some(name) => serde_json::json!({
            "name": name,
            "first_name": name.split_whitespace().next().unwrap_or(name),
        }),
        None => serde_json::Value::Null,
    }
}

/// The context templates see: the same order view the rules get; `buyer` is none
/// unless the template reads it (see `notify_buyer`).
pub(crate) fn template_context(
    order: &StoredOrder,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<serde_json::Value, ActionError> {
    let view = crate::rules::view::order(order, now);
    let order_json: serde_json::Value = rhai::serde::from_dynamic(&view)
        .map_err(|e| ActionError::Permanent(format!("order view: {e}")))?;
    Ok(serde_json::json!({ "order": order_json, "buyer": null }))
}

/// The parcel a message talks about: the one with the latest carrier scan (an order
/// usually has one; with several, the one that just moved is what the message is about).
pub(crate) fn shipment_context(shipments: &[crate::model::Shipment]) -> serde_json::Value {
    shipments
        .iter()
        .max_by_key(|s| s.last_event_at)
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(serde_json::Value::Null)
}

use crate::model::{format_cents as decimal, parse_cents as cents};

/// The feed lines of a refund: each line's principal (its full price unless an amount
/// is given) and the tax in proportion, so the buyer is not short-paid.
fn refund_lines(
    order: &StoredOrder,
    reason: &str,
    requested: &[RefundLine],
    total: Option<&str>,
) -> Result<Vec<AdjustmentLine>, ActionError> {
    let o = &order.order;
    let refused = |why: String| ActionError::Permanent(format!("refund of order {}: {why}", o.id));
    let chosen: Vec<(&crate::model::OrderItem, Option<&RefundLine>)> = if requested.is_empty() {
        o.items.iter().map(|item| (item, None)).collect()
    } else {
        requested
            .iter()
            .map(|line| {
                o.items
                    .iter()
                    .find(|item| item.id == line.item || item.sku.as_deref() == Some(&line.item))
                    .map(|item| (item, Some(line)))
                    .ok_or_else(|| refused(format!("the order has no item {}", line.item)))
            })
            .collect::<Result<_, _>>()?
    };
    if chosen.is_empty() {
        return Err(refused("the order has no items stored".into()));
    }
    let mut remaining = match total {
        Some(t) => Some(cents(t).ok_or_else(|| refused(format!("{t:?} is not an amount")))?),
        None => None,
    };
    let mut lines = Vec::new();
    for (item, line) in chosen {
        let Some(price) = &item.price else {
            return Err(refused(format!("item {} has no price stored", item.id)));
        };
        let full = cents(&price.amount)
            .ok_or_else(|| refused(format!("item {} has price {:?}", item.id, price.amount)))?;
        let quantity = line.and_then(|l| l.quantity);
        if let Some(q) = quantity
            && (q < 1 || q > item.quantity_ordered)
        {
            return Err(refused(format!(
                "quantity {q} of item {} is not between 1 and the {} ordered",
                item.id, item.quantity_ordered
            )));
        }
        // `ItemPrice` is the whole line's price: a quantity takes its share.
        let share = match quantity {
            Some(q) if item.quantity_ordered > 0 => (full * q) / item.quantity_ordered,
            _ => full,
        };
        let mut principal = match line.and_then(|l| l.amount.as_deref()) {
            Some(a) => cents(a).ok_or_else(|| refused(format!("{a:?} is not an amount")))?,
            None => share,
        };
        if let Some(left) = remaining.as_mut() {
            principal = principal.min(*left);
            *left -= principal;
        }
        if principal > full {
            return Err(refused(format!(
                "{} is more than item {}'s price {}",
                decimal(principal),
                item.id,
                price.amount
            )));
        }
        if principal == 0 {
            continue;
        }
        let tax = item.tax.as_ref().and_then(|tax| {
            let tax_cents = cents(&tax.amount)?;
            let share = if full == 0 {
                0
            } else {
                (tax_cents * principal + full / 2) / full
            };
            (share > 0).then(|| Amount {
                value: decimal(share),
                currency: tax.currency.clone(),
            })
        });
        lines.push(AdjustmentLine {
            item_code: item.id.clone(),
            reason: reason.to_owned(),
            principal: Amount {
                value: decimal(principal),
                currency: price.currency.clone(),
            },
            tax,
            quantity,
        });
    }
    if let Some(left) = remaining
        && left > 0
    {
        return Err(refused(format!(
            "the amount is {} more than the items' prices",
            decimal(left)
        )));
    }
    if lines.is_empty() {
        return Err(refused("nothing to refund (amount 0)".into()));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_parse_amazon_amounts_and_refuse_the_rest() {
        assert_eq!(cents("12.34"), Some(1234));
        assert_eq!(cents("12.3"), Some(1230));
        assert_eq!(cents("12"), Some(1200));
        assert_eq!(cents("0.05"), Some(5));
        assert_eq!(cents("1.234"), None);
        assert_eq!(cents("-1.00"), None);
        assert_eq!(cents("1.-5"), None);
        assert_eq!(cents("abc"), None);
        assert_eq!(decimal(1205), "12.05");
    }
}
