//! Replies to buyer mail: render the rule's template in the buyer's language with the
//! order's real status, lint it for the marketplace, and send it over SMTP (through
//! [`super::mail`]) from the seller's registered address to the relay address, in the
//! message's thread. The copy sent is stored; a substantive reply stops the message's
//! 24-hour clock, an acknowledgement (`mail.acknowledgement_templates`) does not.
//!
//! A reply is at-most-once: a send that may have happened is never repeated (the action
//! becomes `unknown` for a person to check), and a send interrupted by a crash is
//! treated the same way. It must never answer a mail marked do-not-answer (auto-replies,
//! notifications, our own mail) and never log a body or an address.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::mail::{OutgoingReply, SmtpReplySender};
use super::{ActionError, Attempt, Performed, SENDING};
use crate::model::{ActionRequest, BuyerMessage, SalesChannel, StoredOrder};
use crate::rules::compliance::{MessageKind, Policy};
use crate::rules::outgoing::{Composed, compose};
use crate::rules::templates::{Templates, language_for_marketplace};
use crate::store::SentReply;
use crate::telemetry;

/// How one mailbox's replies go out.
pub struct Replier {
    /// The seller's registered address (lower case): replies come from it.
    pub address: String,
    pub display_name: Option<String>,
    /// `None` when no SMTP server is configured: replies wait for a person.
    pub sender: Option<SmtpReplySender>,
}

/// Sends the replies the rules ask for, per mailbox.
pub struct ReplyExecutor {
    /// By mailbox name (`Mailbox::name`).
    repliers: HashMap<String, Replier>,
    templates: Arc<ArcSwap<Templates>>,
    acknowledgements: Vec<String>,
}

impl ReplyExecutor {
    pub fn new(
        repliers: HashMap<String, Replier>,
        templates: Arc<ArcSwap<Templates>>,
        acknowledgements: Vec<String>,
    ) -> Self {
        Self {
            repliers,
            templates,
            acknowledgements,
        }
    }

    /// Whether replies with `template` stop the clock.
    pub fn is_substantive(&self, template: &str) -> bool {
        !self.acknowledgements.iter().any(|t| t == template)
    }

    /// Send the reply `attempt` asks for to `message` (about `order`, if found).
    pub async fn perform(
        &self,
        attempt: &mut Attempt<'_>,
        message: &BuyerMessage,
        order: Option<&StoredOrder>,
    ) -> Result<Performed, ActionError> {
        let ActionRequest::Reply { template, .. } = attempt.request else {
            return Err(ActionError::Permanent(format!(
                "{} is not a reply",
                attempt.request.kind()
            )));
        };
        let template = template.clone();
        if attempt.progress(SENDING).is_some() {
            return Err(ActionError::Unknown(format!(
                "an earlier attempt was sending the {template} reply to message {} when it stopped; \
                 look in the mailbox's sent folder or Seller Central whether it went out, then approve \
                 the action to send it again or reject it",
                message.id
            )));
        }
        if let Some(why) = &message.mail.do_not_answer {
            return Err(ActionError::Permanent(format!(
                "message {} is not answered: {why}",
                message.id
            )));
        }
        let Some(to) = message.mail.reply_to.clone() else {
            return Err(ActionError::Permanent(format!(
                "message {} has no address to answer",
                message.id
            )));
        };
        let Some(replier) = self.repliers.get(&message.mail.mailbox) else {
            return Err(ActionError::Held(format!(
                "mailbox {} is not configured for replies (mail.mailboxes); answer message {} yourself, then reject this action",
                message.mail.mailbox, message.id
            )));
        };
        let substantive = self.is_substantive(&template);
        if !substantive && message.answered {
            return Ok(Performed::Done(serde_json::json!({
                "skipped": "the message already has a substantive answer",
                "template": template,
            })));
        }
        let Some(sender) = &replier.sender else {
            return Err(ActionError::Held(format!(
                "no SMTP server for mailbox {} (mail.mailboxes[].smtp); answer message {} yourself, then reject this action",
                message.mail.mailbox, message.id
            )));
        };
        let language = message
            .language
            .clone()
            .or_else(|| {
                message
                    .marketplace_id
                    .as_deref()
                    .map(|m| language_for_marketplace(m).to_owned())
            })
            .unwrap_or_else(|| "en".to_owned());
        let context = self.context(attempt, message, order).await?;
        let policy = match message.channel {
            SalesChannel::Amazon => Policy::Amazon,
            // Their own policies are not written out yet: what every marketplace forbids.
            SalesChannel::Shopify | SalesChannel::Ebay | SalesChannel::Walmart => Policy::Baseline,
        };
        let templates = self.templates.load();
        let body = match compose(
            &templates,
            &template,
            &language,
            &context,
            policy,
            MessageKind::BuyerReply,
        ) {
            Ok(Composed::Ready(rendered)) => rendered.text,
            Ok(Composed::Refused { violations, .. }) => {
                let why: Vec<String> = violations.iter().map(ToString::to_string).collect();
                return Err(ActionError::Permanent(format!(
                    "the rendered {template} reply breaks the marketplace's messaging policy: {}",
                    why.join("; ")
                )));
            }
            Err(e) => {
                return Err(ActionError::Permanent(format!(
                    "template {template} did not render: {e}"
                )));
            }
        };
        let reply = OutgoingReply {
            from: replier.address.clone(),
            from_name: replier.display_name.clone(),
            to,
            subject: message.subject.clone(),
            body,
            in_reply_to: message.mail.message_id.clone(),
            references: message.mail.references.clone(),
            message_id: reply_message_id(&attempt.claim.idempotency_key, &replier.address),
            language: Some(language.clone()),
        };
        // Built once: the copy kept is the mail sent, Date header and all.
        let mail = sender
            .message(&reply)
            .map_err(ActionError::upstream("build reply"))?;
        let copy = mail.formatted();
        attempt
            .record(SENDING, serde_json::json!(attempt.claim.attempt))
            .await?;
        match sender.send_message(&reply, &mail).await {
            Ok(receipt) => {
                let sent_at = attempt.now;
                attempt
                    .store()
                    .record_reply(&SentReply {
                        message_id: reply.message_id.clone(),
                        buyer_message: message.id.clone(),
                        outbox_id: Some(attempt.claim.id),
                        template: template.clone(),
                        substantive,
                        sent_at,
                        body: String::from_utf8_lossy(&copy).into_owned(),
                    })
                    .await
                    .map_err(ActionError::Store)?;
                let marketplace = message.marketplace_id.clone().unwrap_or_default();
                if substantive && !message.answered {
                    let waited = (sent_at - message.received_at).num_seconds().max(0);
                    telemetry::message_answered(&marketplace, waited);
                }
                telemetry::reply_sent(&marketplace, &template, substantive);
                Ok(Performed::Done(serde_json::json!({
                    "template": template,
                    "language": language,
                    "substantive": substantive,
                    "message_id": reply.message_id,
                    "receipt": receipt,
                })))
            }
            Err(error) if error.may_have_acted() => Err(ActionError::Unknown(format!(
                "sending the {template} reply to message {} ended unclearly ({error}); look in the \
                 mailbox's sent folder whether it went out, then approve to send again or reject",
                message.id
            ))),
            Err(error) => {
                // Certainly not sent: clear the marker so a retry may send.
                attempt.record(SENDING, serde_json::Value::Null).await?;
                Err(ActionError::Upstream {
                    during: "smtp send",
                    error,
                })
            }
        }
    }

    /// The template's context: the order as the rules see it, its latest parcel, and
    /// what the buyer gave.
    async fn context(
        &self,
        attempt: &Attempt<'_>,
        message: &BuyerMessage,
        order: Option<&StoredOrder>,
    ) -> Result<serde_json::Value, ActionError> {
        let mut context = match order {
            Some(order) => super::amazon::template_context(order, attempt.now)?,
            None => serde_json::json!({ "order": null, "buyer": null }),
        };
        let shipments = match order {
            Some(order) => attempt
                .store()
                .shipments(&order.order.subject())
                .await
                .map_err(ActionError::Store)?,
            None => Vec::new(),
        };
        context["shipment"] = super::amazon::shipment_context(&shipments);
        context["message"] = serde_json::json!({
            "subject": message.subject,
            "order_id_found": message.order_id,
            "tracking_number_found": message.tracking_number,
        });
        Ok(context)
    }
}

/// The reply's Message-ID: derived from the action's idempotency key, so every attempt
/// of one action carries the same id (a receiving server can recognise a repeat).
pub fn reply_message_id(idempotency_key: &str, from: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    let domain = from
        .rsplit_once('@')
        .map_or("nightdesk.invalid", |(_, d)| d);
    format!("reply.{}@{domain}", hex::encode(&digest[..12]))
}
