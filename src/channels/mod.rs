//! Channels: where alerts go. A channel turns an alert into its service's payload and
//! delivers it; it classifies failures (retryable or not, with `Retry-After`) and
//! leaves retry scheduling, grouping and quiet hours to the outbox. Webhook URLs and
//! SMTP credentials are secrets: never log them, never put them in an error.

pub mod discord;
pub mod email;
pub mod google_chat;
pub mod slack;
pub mod teams;
pub mod webhook;

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::clock::SharedClock;
use crate::config::{ChannelTarget, SecretRef};
use crate::http::UpstreamError;

/// How many of a group's alerts a message shows; the rest are counted.
pub const EXAMPLES: usize = 3;

/// One alert of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertLine {
    /// What it is about, e.g. `order:amazon/113-…`.
    pub subject: String,
    pub text: String,
}

/// What to post: one alert, or a group of alerts of one rule folded into one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The rule that asked for it.
    pub rule: String,
    /// A deterministic key of this delivery (the lead action's idempotency key):
    /// receivers that dedupe (the signed webhook) get it as `Idempotency-Key`.
    pub key: String,
    /// How many alerts this message stands for (1 when not grouped).
    pub total: usize,
    /// The alerts shown, oldest first: the first is the lead, at most [`EXAMPLES`].
    pub lines: Vec<AlertLine>,
}

impl Alert {
    pub fn single(
        rule: impl Into<String>,
        subject: impl Into<String>,
        text: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Self {
            rule: rule.into(),
            key: key.into(),
            total: 1,
            lines: vec![AlertLine {
                subject: subject.into(),
                text: text.into(),
            }],
        }
    }

    pub fn is_group(&self) -> bool {
        self.total > 1
    }

    /// The lead alert's text (or a count for a group): notification previews.
    pub fn headline(&self) -> String {
        if self.is_group() {
            format!("{} alerts from rule {}", self.total, self.rule)
        } else {
            self.lines
                .first()
                .map(|line| line.text.clone())
                .unwrap_or_default()
        }
    }

    /// How many alerts are counted but not shown.
    pub fn not_shown(&self) -> usize {
        self.total.saturating_sub(self.lines.len())
    }

    /// The whole message as plain text, for channels without rich formatting.
    pub fn plain_text(&self) -> String {
        if !self.is_group() {
            let line = self.lines.first();
            return format!(
                "{}\n— nightdesk · rule {} · {}",
                line.map_or("", |l| l.text.as_str()),
                self.rule,
                line.map_or("", |l| l.subject.as_str())
            );
        }
        let mut text = format!("{} (grouped)\n", self.headline());
        for line in &self.lines {
            text.push_str(&format!("• {}: {}\n", line.subject, line.text));
        }
        if self.not_shown() > 0 {
            text.push_str(&format!("… and {} more\n", self.not_shown()));
        }
        text.push_str("— nightdesk");
        text
    }
}

/// A chat destination.
#[async_trait]
pub trait Channel: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Deliver; the returned value is a short, secret-free receipt for the audit log.
    async fn send(&self, alert: &Alert) -> Result<serde_json::Value, UpstreamError>;
}

/// Build the channel a config names. `resolve` turns a secret reference into its value
/// (and records what is missing); `None` when a secret or the SMTP URL is unusable.
pub fn build(
    name: &str,
    target: &ChannelTarget,
    http: &reqwest::Client,
    clock: &SharedClock,
    resolve: &mut dyn FnMut(String, &SecretRef) -> Option<SecretString>,
) -> Result<Option<Arc<dyn Channel>>, String> {
    let key = |field: &str| format!("channels.{name}.{field}");
    let channel: Arc<dyn Channel> = match target {
        ChannelTarget::Slack {
            webhook_url,
            username,
        } => {
            let Some(url) = resolve(key("webhook_url"), webhook_url) else {
                return Ok(None);
            };
            Arc::new(slack::SlackChannel::new(
                http.clone(),
                url,
                username.clone(),
            ))
        }
        ChannelTarget::Teams { webhook_url } => {
            let Some(url) = resolve(key("webhook_url"), webhook_url) else {
                return Ok(None);
            };
            Arc::new(teams::TeamsChannel::new(http.clone(), url))
        }
        ChannelTarget::Discord {
            webhook_url,
            username,
        } => {
            let Some(url) = resolve(key("webhook_url"), webhook_url) else {
                return Ok(None);
            };
            Arc::new(discord::DiscordChannel::new(
                http.clone(),
                url,
                username.clone(),
            ))
        }
        ChannelTarget::GoogleChat { webhook_url } => {
            let Some(url) = resolve(key("webhook_url"), webhook_url) else {
                return Ok(None);
            };
            Arc::new(google_chat::GoogleChatChannel::new(http.clone(), url))
        }
        ChannelTarget::Webhook {
            url,
            signing_secret,
        } => {
            let url = resolve(key("url"), url);
            let secret = resolve(key("signing_secret"), signing_secret);
            let (Some(url), Some(secret)) = (url, secret) else {
                return Ok(None);
            };
            Arc::new(webhook::WebhookChannel::new(
                http.clone(),
                url,
                secret,
                clock.clone(),
            ))
        }
        ChannelTarget::Email { smtp_url, from, to } => {
            let Some(url) = resolve(key("smtp_url"), smtp_url) else {
                return Ok(None);
            };
            let channel = email::EmailChannel::new(&url, from, to)
                .map_err(|e| format!("{}: {e}", key("smtp_url")))?;
            Arc::new(channel)
        }
    };
    Ok(Some(channel))
}
