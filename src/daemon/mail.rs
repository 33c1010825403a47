//! Buyer mail in the daemon: reading each mailbox into the store, the 24-hour clock,
//! and what the message hooks are called with.
//!
//! A mailbox is read in batches; each batch is stored with its checkpoint in one
//! transaction and only then committed to the mailbox (Maildir: moved to `cur/`), so a
//! crash re-reads and the store dedupes. A mail that cannot be parsed is logged by
//! position and skipped (the checkpoint moves past it), never a reason to stall.
//! Nothing here logs a mail's content or addresses.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::Daemon;
use crate::config::{Config, MailSource};
use crate::customers;
use crate::executors::mail::SmtpReplySender;
use crate::executors::reply::{Replier, ReplyExecutor};
use crate::model::{BuyerMessage, Event, EventKind, SalesChannel};
use crate::rules::templates::Templates;
use crate::rules::view;
use crate::sources::mail::{
    ImapMailbox, ImapSecurity, ImapSettings, MailCheckpoint, Mailbox, MailboxContext, MailboxError,
    MaildirMailbox, buyer_message,
};
use crate::store::{MailReport, StoreError};
use crate::telemetry;

/// The mailboxes of the config with their repliers. `secrets` holds, per mailbox in
/// order, its resolved SMTP URL and IMAP password (missing ones were reported already).
pub(super) fn inboxes(
    config: &Config,
    secrets: Vec<(Option<SecretString>, Option<SecretString>)>,
    templates: Arc<ArcSwap<Templates>>,
) -> Result<(Vec<Inbox>, Option<Arc<ReplyExecutor>>), String> {
    let Some(section) = &config.mail else {
        return Ok((Vec::new(), None));
    };
    let mut inboxes = Vec::new();
    let mut repliers = HashMap::new();
    for (i, (mailbox, (smtp, password))) in section.mailboxes.iter().zip(secrets).enumerate() {
        let key = format!("mail.mailboxes[{i}]");
        let opened: Arc<dyn Mailbox> = match &mailbox.source {
            MailSource::Maildir(path) => {
                Arc::new(MaildirMailbox::open(path).map_err(|e| format!("{key}.maildir: {e}"))?)
            }
            MailSource::Imap {
                host,
                port,
                security,
                user,
                folder,
                ca_file,
                ..
            } => {
                let Some(password) = password else {
                    return Err(format!("{key}.imap.password is missing"));
                };
                let security = match security.as_str() {
                    "plain" => ImapSecurity::Plain,
                    "starttls" => ImapSecurity::StartTls,
                    _ => ImapSecurity::Tls,
                };
                Arc::new(
                    ImapMailbox::new(ImapSettings {
                        host: host.clone(),
                        port: *port,
                        security,
                        user: user.clone(),
                        password,
                        folder: folder.clone(),
                        ca_file: ca_file.clone(),
                    })
                    .map_err(|e| format!("{key}.imap: {e}"))?,
                )
            }
        };
        let sender = match smtp {
            Some(url) => Some(SmtpReplySender::new(&url).map_err(|e| format!("{key}.smtp: {e}"))?),
            None => None,
        };
        repliers.insert(
            opened.name().to_owned(),
            Replier {
                address: mailbox.address.clone(),
                display_name: mailbox.display_name.clone(),
                sender,
            },
        );
        inboxes.push(Inbox {
            pushes: matches!(mailbox.source, MailSource::Imap { .. }),
            mailbox: opened,
            channel: SalesChannel::Amazon,
            account: mailbox.account.clone(),
            own_addresses: vec![mailbox.address.clone()],
        });
    }
    let replies = ReplyExecutor::new(
        repliers,
        templates,
        section.acknowledgement_templates.clone(),
    );
    Ok((inboxes, Some(Arc::new(replies))))
}

/// Mails read per batch: each batch is one store transaction.
const BATCH: usize = 100;

/// How long one IDLE lasts before it is renewed (servers drop idle clients after 30
/// minutes; RFC 2177).
const IDLE_WAIT: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// A mailbox the daemon reads, with whose it is.
pub(super) struct Inbox {
    pub mailbox: Arc<dyn Mailbox>,
    pub channel: SalesChannel,
    /// The marketplace account (by name) whose buyers write here.
    pub account: String,
    /// The seller's own addresses: mail from them is never answered.
    pub own_addresses: Vec<String>,
    /// The server can say when mail arrives (IMAP IDLE): read at once, not only on
    /// the schedule.
    pub pushes: bool,
}

impl Daemon {
    /// Read every mailbox into the store. A mailbox that cannot be read is logged (and,
    /// for refused credentials or a broken setup, alerted once a day); the others go on.
    pub async fn read_mail(&self) -> Result<MailReport, StoreError> {
        let mut total = MailReport::default();
        for inbox in &self.inboxes {
            let report = self.read_mailbox(inbox).await?;
            total.new += report.new;
            total.duplicates += report.duplicates;
            total.events += report.events;
        }
        Ok(total)
    }

    /// Wait on each mailbox that can tell when mail arrives (IMAP IDLE) and read it at
    /// once, between the scheduled reads. A failed wait backs off a minute.
    pub(super) async fn watch_mailbox(&self, index: usize, shutdown: &CancellationToken) {
        let Some(inbox) = self.inboxes.get(index) else {
            return;
        };
        loop {
            let waited = tokio::select! {
                _ = shutdown.cancelled() => return,
                waited = inbox.mailbox.wait_for_mail(IDLE_WAIT) => waited,
            };
            if let Err(error) = waited {
                tracing::debug!(mailbox = %inbox.mailbox.name(), error = %error,
                    "Waiting for mail failed; the scheduled reads go on.");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => continue,
                }
            }
            // Mail is read by the instance that holds the mail lease; the others only wait.
            if !self.leases.ensure(super::MAIL_LEASE).await {
                continue;
            }
            let read = tokio::select! {
                _ = shutdown.cancelled() => return,
                read = self.read_mailbox(inbox) => read,
            };
            match read {
                Ok(report) if report.events > 0 => {
                    if let Err(e) = self.process_events().await {
                        tracing::error!(error = %e, "Rules pass failed.");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "Reading mail failed."),
            }
        }
    }

    async fn read_mailbox(&self, inbox: &Inbox) -> Result<MailReport, StoreError> {
        let name = inbox.mailbox.name().to_owned();
        let mut total = MailReport::default();
        loop {
            let checkpoint = match self.store.mail_checkpoint(&name).await? {
                Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                    tracing::warn!(mailbox = %name, error = %e,
                        "Stored mail checkpoint unreadable; reading the mailbox from the start (the store dedupes).");
                    MailCheckpoint::default()
                }),
                None => MailCheckpoint::default(),
            };
            let batch = match inbox.mailbox.fetch(&checkpoint, BATCH).await {
                Ok(batch) => batch,
                Err(error) => {
                    self.mailbox_failed(&name, &error).await?;
                    return Ok(total);
                }
            };
            let now = self.clock.now();
            if let Some(why) = &batch.restarted {
                telemetry::mailbox_restarted(&name, why);
                let topic = format!("mailbox/{name}/restarted/{}", now.timestamp());
                let text = format!(
                    "Mailbox {name}: {why}. Every mail in it was read again; those already \
                     stored were recognised and not answered twice."
                );
                if let Some(alert) = self.system_alert(&topic, text) {
                    self.record(None, vec![alert], now).await?;
                }
            }
            let context = MailboxContext {
                mailbox: &name,
                channel: inbox.channel,
                account: &inbox.account,
                own_addresses: &inbox.own_addresses,
            };
            let mut messages = Vec::with_capacity(batch.mails.len());
            for mail in &batch.mails {
                match buyer_message(&mail.raw, &context, now) {
                    Ok(message) => messages.push(message),
                    Err(error) => telemetry::mail_unreadable(&name, &mail.position, &error),
                }
            }
            let checkpoint =
                serde_json::to_string(&batch.checkpoint).map_err(|e| StoreError::Corrupt {
                    what: format!("mail checkpoint of {name}"),
                    reason: e.to_string(),
                })?;
            let report = self
                .store
                .store_mail(&name, &messages, &checkpoint, now)
                .await?;
            telemetry::mail_read(&name, &report);
            let positions: Vec<String> = batch.mails.iter().map(|m| m.position.clone()).collect();
            if let Err(error) = inbox.mailbox.commit(&positions).await {
                // Stored already: the next read hands them out again and the store
                // recognises them.
                tracing::warn!(mailbox = %name, error = %error, "Could not mark mail as read.");
            }
            total.new += report.new;
            total.duplicates += report.duplicates;
            total.events += report.events;
            if !batch.more {
                return Ok(total);
            }
        }
    }

    async fn mailbox_failed(&self, name: &str, error: &MailboxError) -> Result<(), StoreError> {
        telemetry::mailbox_failed(name, error);
        if error.is_retryable() {
            return Ok(());
        }
        let now = self.clock.now();
        let what = match error {
            MailboxError::Credentials { .. } => "credentials",
            _ => "setup",
        };
        let topic = format!("mailbox/{name}/{what}/{}", now.format("%Y-%m-%d"));
        let text = format!(
            "Mailbox {name} cannot be read: {error}. Buyer mail waits there unread (and \
             unanswered) until this is fixed in the config."
        );
        if let Some(alert) = self.system_alert(&topic, text) {
            self.record(None, vec![alert], now).await?;
        }
        Ok(())
    }

    /// Raise `SlaAtRisk` for every message still without a substantive reply at the
    /// configured hour. Returns how many were raised.
    pub async fn check_sla(&self) -> Result<usize, StoreError> {
        let Some(mail) = &self.config.mail else {
            return Ok(0);
        };
        let hours = mail.sla_alert_after_hours;
        let now = self.clock.now();
        let raised = self
            .store
            .raise_sla_at_risk(now - Duration::hours(hours), hours, now)
            .await?;
        for id in &raised {
            let marketplace = self
                .store
                .buyer_message(id)
                .await?
                .and_then(|m| m.marketplace_id)
                .unwrap_or_default();
            telemetry::message_handed_to_people(&marketplace, hours);
        }
        Ok(raised.len())
    }

    /// What a message event's hook is called with: `(msg)` for a new message,
    /// `(msg, event)` for the clock. `None` when the message is not stored.
    pub(super) async fn message_arguments(
        &self,
        event: &Event,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<rhai::Dynamic>>, StoreError> {
        let Some(message) = self.store.buyer_message(id).await? else {
            return Ok(None);
        };
        let order = customers::order_of_message(self.store.as_ref(), &message).await?;
        let matches = customers::matches(self.store.as_ref(), &message, order.as_ref()).await?;
        let others: Vec<BuyerMessage> = self
            .store
            .thread(&message.thread_key())
            .await?
            .into_iter()
            .filter(|m| m.id != message.id)
            .collect();
        let msg = view::with_customer_matches(
            view::with_thread(view::message(&message, order.as_ref(), &[], now), &others),
            &matches,
            now,
        );
        Ok(Some(match event.kind {
            EventKind::SlaAtRisk { .. } => vec![msg, view::event(&event.kind, event.at)],
            _ => vec![msg],
        }))
    }
}
