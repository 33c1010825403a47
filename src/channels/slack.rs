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
        let mut blocks = Vec::new();
        if alert.is_group() {
            blocks.push(json!({ "type": "header", "text": { "type": "plain_text", "text": alert.headline() } }));
        }
        for line in &alert.lines {
            let text = if alert.is_group() {
                format!("*{}*\n{}", escape(&line.subject), escape(&line.text))
            } else {
                escape(&line.text)
            };
            blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } }));
        }
        let mut context = format!("nightdesk · rule `{}`", escape(&alert.rule));
        match (alert.is_group(), alert.lines.first()) {
            (true, _) if alert.not_shown() > 0 => {
                context.push_str(&format!(" · {} more not shown", alert.not_shown()));
            }
            (false, Some(line)) => context.push_str(&format!(" · {}", escape(&line.subject))),
            _ => {}
        }
        blocks.push(
            json!({ "type": "context", "elements": [ { "type": "mrkdwn", "text": context } ] }),
        );
        let mut body = json!({ "text": alert.headline(), "blocks": blocks });
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
        let alert = Alert::single("r", "order:amazon/1", "a < b & c", "k");
        let body = channel.payload(&alert);
        assert_eq!(body["text"], "a < b & c");
        assert_eq!(body["blocks"][0]["text"]["text"], "a &lt; b &amp; c");
        assert_eq!(body["username"], "nightdesk");
    }

    #[test]
    fn a_group_has_a_count_header_examples_and_the_rest_counted() {
        let channel =
            SlackChannel::new(reqwest::Client::new(), SecretString::from("http://x"), None);
        let mut alert = Alert::single("late", "order:amazon/1", "one", "k");
        alert.total = 40;
        for i in 2..=3 {
            alert.lines.push(crate::channels::AlertLine {
                subject: format!("order:amazon/{i}"),
                text: format!("text {i}"),
            });
        }
        let body = channel.payload(&alert);
        assert_eq!(body["text"], "40 alerts from rule late");
        let blocks = body["blocks"].as_array().map(Vec::len);
        assert_eq!(blocks, Some(5), "{body}");
        let context = body["blocks"][4]["elements"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(context.contains("37 more not shown"), "{context}");
    }
}
