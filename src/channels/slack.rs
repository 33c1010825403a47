//! Slack incoming webhooks: a JSON body with `text` (the notification fallback) and
//! Block Kit `blocks`. Slack answers `200 ok`, or an error status with a short code
//! (`invalid_payload`, `no_service`, `channel_is_archived`, …) and 429 with Retry-After.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{Alert, Channel};
use crate::http::{self, UpstreamError};

pub struct SlackChannel {
    http: reqwest::Client,
    webhook_url: SecretString,
    username: Option<String>,
}

impl SlackChannel {
    pub fn new(http: reqwest::Client, webhook_url: SecretString, username: Option<String>) -> Self {
        Self {
            http,
            webhook_url,
            username,
        }
    }

    /// The message body; public so its shape can be checked without a network.
    pub fn payload(&self, alert: &Alert) -> serde_json::Value {
        let mut body = json!({
            "text": alert.text,
            "blocks": [
                { "type": "section", "text": { "type": "mrkdwn", "text": escape(&alert.text) } },
                { "type": "context", "elements": [
                    { "type": "mrkdwn", "text": format!("nightdesk · rule `{}` · {}", escape(&alert.rule), escape(&alert.subject)) }
                ] }
            ]
        });
        if let (Some(name), Some(map)) = (&self.username, body.as_object_mut()) {
            map.insert("username".into(), json!(name));
        }
        body
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as markup.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[async_trait]
impl Channel for SlackChannel {
    fn kind(&self) -> &'static str {
        "slack"
    }

    async fn send(&self, alert: &Alert) -> Result<serde_json::Value, UpstreamError> {
        let reply = http::send(
            self.http
                .post(self.webhook_url.expose_secret())
                .json(&self.payload(alert)),
        )
        .await?;
        if reply.status.is_success() {
            return Ok(
                json!({ "status": reply.status.as_u16(), "response": http::summarize(&reply.body) }),
            );
        }
        Err(reply.error(&reply.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_fallback_text_and_escaped_blocks() {
        let channel = SlackChannel::new(
            reqwest::Client::new(),
            SecretString::from("http://x"),
            Some("nightdesk".into()),
        );
        let alert = Alert {
            rule: "r".into(),
            subject: "order:amazon/1".into(),
            text: "a < b & c".into(),
        };
        let body = channel.payload(&alert);
        assert_eq!(body["text"], "a < b & c");
        assert_eq!(body["blocks"][0]["text"]["text"], "a &lt; b &amp; c");
        assert_eq!(body["username"], "nightdesk");
    }
}
