//! Channels: where alerts go. A channel turns an alert into its service's payload and
//! delivers it; it classifies failures (retryable or not, with `Retry-After`) and
//! leaves retry scheduling to the outbox. Webhook URLs are secrets: never log them.

pub mod slack;

use async_trait::async_trait;

use crate::http::UpstreamError;

/// What to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The rule that asked for it.
    pub rule: String,
    /// What it is about, e.g. `order:amazon/113-…`.
    pub subject: String,
    pub text: String,
}

/// A chat destination.
#[async_trait]
pub trait Channel: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Deliver; the returned value is a short, secret-free receipt for the audit log.
    async fn send(&self, alert: &Alert) -> Result<serde_json::Value, UpstreamError>;
}
