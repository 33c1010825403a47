//! One fetched mail → the [`BuyerMessage`] the store keeps and the rules see: parsed,
//! understood, and given a stable id (a hash of its Message-ID, else of its bytes), so
//! the same mail read twice is the same message.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{MailError, parse, understand};
use crate::model::{BuyerMessage, MailHeaders, SalesChannel};

/// Where a mail was read and whose mailbox it is.
#[derive(Debug, Clone)]
pub struct MailboxContext<'a> {
    pub mailbox: &'a str,
    /// The marketplace account the mailbox belongs to (`amazon/<account>`).
    pub channel: SalesChannel,
    pub account: &'a str,
    /// The seller's own addresses: mail from them is our own and never answered.
    pub own_addresses: &'a [String],
}

/// The stable id of a mail: the same Message-ID (or, without one, the same bytes) gives
/// the same id, in any mailbox.
pub fn message_key(message_id: Option<&str>, raw: &[u8]) -> String {
    let digest = match message_id {
        Some(id) => Sha256::digest(format!("mid:{}", id.trim().to_ascii_lowercase())),
        None => Sha256::digest(raw),
    };
    hex::encode(&digest[..10])
}

/// Parse and understand `raw`. `now` stands in for a missing or absurd Date header.
pub fn buyer_message(
    raw: &[u8],
    context: &MailboxContext<'_>,
    now: DateTime<Utc>,
) -> Result<BuyerMessage, MailError> {
    let mail = parse(raw)?;
    let understood = understand(&mail, context.own_addresses);
    // A Date in the future (a wrong clock) would stop the 24-hour clock from starting.
    let received_at = mail.date.filter(|d| *d <= now).unwrap_or(now);
    let mut references = mail.references.clone();
    if let Some(parent) = &mail.in_reply_to
        && !references.contains(parent)
    {
        references.push(parent.clone());
    }
    let attachments = understood
        .attachments
        .iter()
        .map(|a| match &a.name {
            Some(name) => format!("{name} ({}, {} bytes)", a.content_type, a.size),
            None => format!("({}, {} bytes)", a.content_type, a.size),
        })
        .collect();
    let do_not_answer = understood.do_not_answer.clone().or_else(|| {
        understood
            .relay_address
            .is_none()
            .then(|| "no address to answer".to_owned())
    });
    Ok(BuyerMessage {
        id: message_key(mail.message_id.as_deref(), raw),
        channel: context.channel,
        account: context.account.to_owned(),
        marketplace_id: understood.marketplace_id.clone(),
        from: mail.from_address.clone(),
        subject: mail.subject.clone(),
        body: understood.new_text.clone(),
        received_at,
        order_id: understood.order_id.clone(),
        tracking_number: understood.tracking_number.clone(),
        language: understood.language.clone(),
        intent: Some(understood.intent.clone()),
        answered: false,
        mail: MailHeaders {
            mailbox: context.mailbox.to_owned(),
            from_name: mail.from_name.clone(),
            message_id: mail.message_id.clone(),
            references,
            reply_to: understood.relay_address.clone(),
            do_not_answer,
            attachments,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0)
            .single()
            .unwrap_or_default()
    }

    const RELAY: &str = "From: \"Jane\" <x7k2p9q4r1@marketplace.amazon.com>\r\n\
To: shop@example.com\r\n\
Subject: Where is my order 114-1234567-1234567?\r\n\
Message-ID: <Abc.1@amazon.com>\r\n\
In-Reply-To: <older@amazon.com>\r\n\
Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n\
\r\n\
Hello, my order has not arrived yet. Where is it? Thank you, Jane\r\n";

    fn context() -> MailboxContext<'static> {
        MailboxContext {
            mailbox: "maildir:/mail",
            channel: SalesChannel::Amazon,
            account: "eu",
            own_addresses: &[],
        }
    }

    #[test]
    fn a_relay_mail_becomes_a_message_to_answer_in_its_thread() {
        let made = buyer_message(RELAY.as_bytes(), &context(), now());
        let Ok(m) = made else { panic!("{made:?}") };
        assert_eq!(m.order_id.as_deref(), Some("114-1234567-1234567"));
        assert_eq!(
            m.mail.reply_to.as_deref(),
            Some("x7k2p9q4r1@marketplace.amazon.com")
        );
        assert_eq!(m.mail.message_id.as_deref(), Some("Abc.1@amazon.com"));
        assert_eq!(m.mail.references, ["older@amazon.com"]);
        assert_eq!(m.mail.do_not_answer, None);
        assert_eq!(m.intent.as_deref(), Some("where_is_my_order"));
        assert_eq!(
            m.received_at,
            Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0)
                .single()
                .unwrap_or_default()
        );
        assert_eq!(m.account, "eu");
    }

    #[test]
    fn the_id_follows_the_message_id_whatever_the_bytes() {
        let one = buyer_message(RELAY.as_bytes(), &context(), now());
        let other = RELAY
            .replace(
                "Message-ID: <Abc.1@amazon.com>",
                "Message-ID: <abc.1@AMAZON.com>",
            )
            .replace("Hello", "Hi");
        let two = buyer_message(other.as_bytes(), &context(), now());
        let (Ok(one), Ok(two)) = (one, two) else {
            panic!("parse failed")
        };
        assert_eq!(one.id, two.id);
        assert_ne!(message_key(None, b"a"), message_key(None, b"b"));
    }

    #[test]
    fn a_date_in_the_future_starts_the_clock_now() {
        let future = RELAY.replace("Mon, 30 Nov 2026", "Mon, 30 Nov 2099");
        let made = buyer_message(future.as_bytes(), &context(), now());
        let Ok(m) = made else { panic!("{made:?}") };
        assert_eq!(m.received_at, now());
    }
}
