//! Buyer mail in the store: messages read from the mailboxes, the replies sent, each
//! mailbox's checkpoint, and the 24-hour clock's state (answered, SLA alerted).
//!
//! Invariants it keeps:
//! - a mailbox checkpoint moves only in the transaction that stores the mails it covers;
//! - a mail already stored (same id) is never stored or announced again;
//! - `BuyerMessageReceived` is emitted only for a mail that may be answered, and
//!   `SlaAtRisk` at most once per message;
//! - only a substantive reply stops the clock; the first one's time is kept.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::model::BuyerMessage;

/// What storing one read of a mailbox did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailReport {
    /// Mails not stored before.
    pub new: usize,
    /// Mails already stored (read again after a restart or a reset).
    pub duplicates: usize,
    /// `BuyerMessageReceived` events emitted (new mails that may be answered).
    pub events: usize,
}

/// A reply as sent: the copy nightdesk keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentReply {
    /// The reply's own Message-ID.
    pub message_id: String,
    /// The buyer message it answers.
    pub buyer_message: String,
    pub outbox_id: Option<i64>,
    pub template: String,
    /// Stops the 24-hour clock (an acknowledgement does not).
    pub substantive: bool,
    pub sent_at: DateTime<Utc>,
    /// The mail as sent (RFC 5322 text).
    pub body: String,
}

/// The buyer-mail part of the store (every [`super::Store`] is one).
#[async_trait]
pub trait MailStore: Send + Sync {
    /// Where `mailbox` was read up to (the mailbox's checkpoint as JSON).
    async fn mail_checkpoint(&self, mailbox: &str) -> Result<Option<String>, StoreError>;

    /// In one transaction: store the mails not stored yet, emit `BuyerMessageReceived`
    /// for each new one that may be answered, and move the mailbox's checkpoint.
    async fn store_mail(
        &self,
        mailbox: &str,
        messages: &[BuyerMessage],
        checkpoint: &str,
        now: DateTime<Utc>,
    ) -> Result<MailReport, StoreError>;

    /// One stored message, `answered` as the clock stands.
    async fn buyer_message(&self, id: &str) -> Result<Option<BuyerMessage>, StoreError>;

    /// The messages of one thread ([`BuyerMessage::thread_key`]), oldest first.
    async fn thread(&self, thread_key: &str) -> Result<Vec<BuyerMessage>, StoreError>;

    /// Stored messages, oldest first: those that name `order_id`, or all.
    async fn buyer_messages(&self, order_id: Option<&str>)
    -> Result<Vec<BuyerMessage>, StoreError>;

    /// In one transaction: every message that may be answered, still has no substantive
    /// reply, arrived at or before `cutoff` and was not flagged yet gets
    /// `SlaAtRisk { hours }`. Returns their ids.
    async fn raise_sla_at_risk(
        &self,
        cutoff: DateTime<Utc>,
        hours: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError>;

    /// Keep the copy of a sent reply; a substantive one stops its message's clock (the
    /// first such reply's time is kept). Repeating it changes nothing.
    async fn record_reply(&self, reply: &SentReply) -> Result<(), StoreError>;

    /// The replies sent to `buyer_message`, or all, oldest first.
    async fn sent_replies(&self, buyer_message: Option<&str>)
    -> Result<Vec<SentReply>, StoreError>;
}

pub(super) fn message_body(message: &BuyerMessage) -> Result<String, StoreError> {
    serde_json::to_string(message).map_err(|e| super::sql::corrupt("buyer message", e))
}

/// A stored row back into a message: its JSON, with the clock's state from the columns.
pub(super) fn message_of(
    (id, body, answered_at): (String, String, Option<i64>),
) -> Result<BuyerMessage, StoreError> {
    let mut message: BuyerMessage = serde_json::from_str(&body)
        .map_err(|e| super::sql::corrupt(&format!("buyer message {id}"), e))?;
    message.answered = answered_at.is_some();
    Ok(message)
}

pub(super) type ReplyTuple = (String, String, Option<i64>, String, i64, i64, String);

pub(super) fn reply_of(
    (message_id, buyer_message, outbox_id, template, substantive, sent_at, body): ReplyTuple,
) -> SentReply {
    SentReply {
        message_id,
        buyer_message,
        outbox_id,
        template,
        substantive: substantive != 0,
        sent_at: super::from_ms(sent_at),
        body,
    }
}

/// Expands to the [`MailStore`] impl of a backend type with a `pool` field and a
/// `write_tx()` method (the same SQL runs on both backends).
macro_rules! sql_mail_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::mail::MailStore for $store {
            async fn mail_checkpoint(
                &self,
                mailbox: &str,
            ) -> Result<Option<String>, $crate::store::StoreError> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT checkpoint FROM mail_checkpoints WHERE mailbox = $1")
                        .bind(mailbox)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(c,)| c))
            }

            async fn store_mail(
                &self,
                mailbox: &str,
                messages: &[$crate::model::BuyerMessage],
                checkpoint: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::mail::MailReport, $crate::store::StoreError> {
                use $crate::store::to_ms;
                let mut report = $crate::store::mail::MailReport::default();
                let mut tx = self.write_tx().await?;
                for message in messages {
                    let done = sqlx::query(
                        "INSERT INTO buyer_messages (id, mailbox, channel, account, order_id, thread,
                           received_at, do_not_answer, body, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(&message.id)
                    .bind(mailbox)
                    .bind(message.channel.as_str())
                    .bind(&message.account)
                    .bind(message.order_id.as_deref())
                    .bind(message.thread_key())
                    .bind(to_ms(message.received_at))
                    .bind(message.mail.do_not_answer.as_deref())
                    .bind($crate::store::mail::message_body(message)?)
                    .bind(to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        report.duplicates += 1;
                        continue;
                    }
                    report.new += 1;
                    if message.mail.do_not_answer.is_some() {
                        continue;
                    }
                    let kind = $crate::model::EventKind::BuyerMessageReceived;
                    let payload = serde_json::to_string(&kind)
                        .map_err(|e| $crate::store::sql::corrupt("event", e))?;
                    sqlx::query(
                        "INSERT INTO events (subject, kind, payload, at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(message.subject_key().as_str())
                    .bind(kind.name())
                    .bind(payload)
                    .bind(to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                    report.events += 1;
                }
                sqlx::query(
                    "INSERT INTO mail_checkpoints (mailbox, checkpoint, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (mailbox) DO UPDATE SET
                       checkpoint = excluded.checkpoint, updated_at = excluded.updated_at",
                )
                .bind(mailbox)
                .bind(checkpoint)
                .bind(to_ms(now))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(report)
            }

            async fn buyer_message(
                &self,
                id: &str,
            ) -> Result<Option<$crate::model::BuyerMessage>, $crate::store::StoreError> {
                let row: Option<(String, String, Option<i64>)> = sqlx::query_as(
                    "SELECT id, body, answered_at FROM buyer_messages WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map($crate::store::mail::message_of).transpose()
            }

            async fn thread(
                &self,
                thread_key: &str,
            ) -> Result<Vec<$crate::model::BuyerMessage>, $crate::store::StoreError> {
                let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
                    "SELECT id, body, answered_at FROM buyer_messages
                     WHERE thread = $1 ORDER BY received_at, id",
                )
                .bind(thread_key)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map($crate::store::mail::message_of).collect()
            }

            async fn buyer_messages(
                &self,
                order_id: Option<&str>,
            ) -> Result<Vec<$crate::model::BuyerMessage>, $crate::store::StoreError> {
                let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
                    "SELECT id, body, answered_at FROM buyer_messages
                     WHERE $1 IS NULL OR order_id = $1 ORDER BY received_at, id",
                )
                .bind(order_id)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map($crate::store::mail::message_of).collect()
            }

            async fn raise_sla_at_risk(
                &self,
                cutoff: chrono::DateTime<chrono::Utc>,
                hours: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<String>, $crate::store::StoreError> {
                use $crate::store::to_ms;
                let mut tx = self.write_tx().await?;
                let rows: Vec<(String,)> = sqlx::query_as(
                    "UPDATE buyer_messages SET sla_alerted_at = $2
                     WHERE answered_at IS NULL AND do_not_answer IS NULL AND sla_alerted_at IS NULL
                       AND received_at <= $1
                     RETURNING id",
                )
                .bind(to_ms(cutoff))
                .bind(to_ms(now))
                .fetch_all(&mut *tx)
                .await?;
                let mut ids: Vec<String> = rows.into_iter().map(|(id,)| id).collect();
                ids.sort();
                let kind = $crate::model::EventKind::SlaAtRisk { hours };
                let payload = serde_json::to_string(&kind)
                    .map_err(|e| $crate::store::sql::corrupt("event", e))?;
                for id in &ids {
                    sqlx::query(
                        "INSERT INTO events (subject, kind, payload, at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind($crate::model::Subject::named("message", id).as_str())
                    .bind(kind.name())
                    .bind(&payload)
                    .bind(to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(ids)
            }

            async fn record_reply(
                &self,
                reply: &$crate::store::mail::SentReply,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::to_ms;
                let mut tx = self.write_tx().await?;
                sqlx::query(
                    "INSERT INTO sent_replies (message_id, buyer_message, outbox_id, template, substantive, sent_at, body)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (message_id) DO NOTHING",
                )
                .bind(&reply.message_id)
                .bind(&reply.buyer_message)
                .bind(reply.outbox_id)
                .bind(&reply.template)
                .bind(i64::from(reply.substantive))
                .bind(to_ms(reply.sent_at))
                .bind(&reply.body)
                .execute(&mut *tx)
                .await?;
                if reply.substantive {
                    sqlx::query(
                        "UPDATE buyer_messages SET answered_at = $2 WHERE id = $1 AND answered_at IS NULL",
                    )
                    .bind(&reply.buyer_message)
                    .bind(to_ms(reply.sent_at))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn sent_replies(
                &self,
                buyer_message: Option<&str>,
            ) -> Result<Vec<$crate::store::mail::SentReply>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::mail::ReplyTuple> = sqlx::query_as(
                    "SELECT message_id, buyer_message, outbox_id, template, substantive, sent_at, body
                     FROM sent_replies WHERE $1 IS NULL OR buyer_message = $1 ORDER BY sent_at, message_id",
                )
                .bind(buyer_message)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map($crate::store::mail::reply_of).collect())
            }
        }
    };
}

pub(super) use sql_mail_store;
