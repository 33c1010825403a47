//! Google Chat incoming webhooks: a JSON body with `text` in Google Chat's formatting
//! (`*bold*`, one line per bullet). Google answers `200` with the created Message, whose
//! `name` (`spaces/…/messages/…`) is the receipt; errors come as a status with a JSON
//! `error` object, `429` (`RESOURCE_EXHAUSTED`) when the space's quota is spent.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::discord::truncate;
use super::{Alert, Channel};
use crate::http::{self, UpstreamError};

/// Google Chat's limit on a message's `text`, in characters.
pub const TEXT_LIMIT: usize = 4096;

pub struct GoogleChatChannel {
    http: reqwest::Client,
    webhook_url: SecretString,
}

impl std::fmt::Debug for GoogleChatChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleChatChannel")
            .field("webhook_url", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl GoogleChatChannel {
    pub fn new(http: reqwest::Client, webhook_url: SecretString) -> Self {
        Self { http, webhook_url }
    }

    /// The message body; public so its shape can be checked without a network.
    pub fn payload(&self, alert: &Alert) -> serde_json::Value {
        json!({ "text": truncate(&text(alert), TEXT_LIMIT, |_| 1) })
    }
}

fn text(alert: &Alert) -> String {
    if !alert.is_group() {
        let line = alert.lines.first();
        return format!(
            "{}\n— nightdesk · rule {} · {}",
            defuse(line.map_or("", |l| l.text.as_str())),
            defuse(&alert.rule),
            defuse(line.map_or("", |l| l.subject.as_str()))
        );
    }
    let mut text = format!("*{}*\n", defuse(&alert.headline()));
    for line in &alert.lines {
        text.push_str(&format!(
            "• *{}*: {}\n",
            defuse(&line.subject),
            defuse(&line.text)
        ));
    }
    if alert.not_shown() > 0 {
        text.push_str(&format!("… and {} more\n", alert.not_shown()));
    }
    text.push_str("— nightdesk");
    text
}

/// Google Chat reads `<users/all>` as a mention of everyone and `<url|label>` as a link
/// under a label: a zero-width space after each `<` keeps the text and drops both.
fn defuse(text: &str) -> String {
    text.replace('<', "<\u{200B}")
}

#[async_trait]
impl Channel for GoogleChatChannel {
    fn kind(&self) -> &'static str {
        "google_chat"
    }

    async fn send(&self, alert: &Alert) -> Result<serde_json::Value, UpstreamError> {
        let reply = http::send(
            self.http
                .post(self.webhook_url.expose_secret())
                .json(&self.payload(alert)),
        )
        .await?;
        if reply.status.is_success() {
            // The message is posted: an unreadable body must not turn into a retry.
            let name = serde_json::from_str::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|m| m["name"].as_str().map(str::to_owned));
            return Ok(json!({ "status": reply.status.as_u16(), "name": name }));
        }
        Err(reply.error(&reply.body))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::channels::AlertLine;
    use crate::channels::webhook::loopback::{
        Respond, Server, assert_throttled, assert_unreachable, closed_url,
    };

    fn channel(url: &str) -> GoogleChatChannel {
        GoogleChatChannel::new(reqwest::Client::new(), SecretString::from(url.to_owned()))
    }

    fn group() -> Alert {
        let mut alert = Alert::single("late", "order:amazon/1", "one", "k");
        alert.total = 40;
        for i in 2..=3 {
            alert.lines.push(AlertLine {
                subject: format!("order:amazon/{i}"),
                text: format!("text {i}"),
            });
        }
        alert
    }

    #[test]
    fn a_single_alert_is_its_text_and_a_footer() {
        let body = channel("http://x").payload(&Alert::single("r", "order:amazon/1", "hello", "k"));
        assert_eq!(
            body,
            json!({ "text": "hello\n— nightdesk · rule r · order:amazon/1" })
        );
    }

    #[test]
    fn a_group_is_a_bold_count_bullets_and_the_rest_counted() {
        let body = channel("http://x").payload(&group());
        assert_eq!(
            body["text"],
            "*40 alerts from rule late*\n\
             • *order:amazon/1*: one\n\
             • *order:amazon/2*: text 2\n\
             • *order:amazon/3*: text 3\n\
             … and 37 more\n\
             — nightdesk"
        );
        assert_eq!(body.as_object().map(|m| m.len()), Some(1));
    }

    #[test]
    fn mentions_and_labelled_links_are_defused_and_long_text_is_cut() {
        let alert = Alert::single(
            "r",
            "s",
            "hi <users/all> see <https://evil.example|Seller Central>",
            "k",
        );
        let text = channel("http://x").payload(&alert)["text"].to_string();
        assert!(
            !text.contains("<users/") && !text.contains("<https"),
            "{text}"
        );
        let long = Alert::single("r", "s", "ü".repeat(5000), "k");
        let text = channel("http://x").payload(&long)["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(text.chars().count(), TEXT_LIMIT);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn debug_does_not_show_the_url() {
        let debug = format!(
            "{:?}",
            channel("https://chat.googleapis.com/v1/spaces/X/messages?key=canary-key")
        );
        assert!(!debug.contains("canary"), "{debug}");
    }

    #[tokio::test]
    async fn posts_text_and_keeps_the_message_name() {
        let server = Server::start(
            Respond::status(200)
                .header("content-type", "application/json")
                .body(r#"{"name":"spaces/AAA/messages/BBB.BBB","text":"…","thread":{"name":"spaces/AAA/threads/BBB"}}"#),
        )
        .await;
        let receipt =
            channel(&server.url("/v1/spaces/AAA/messages?key=canary-key&token=canary-token"))
                .send(&group())
                .await;
        assert_eq!(
            receipt,
            Ok(json!({ "status": 200, "name": "spaces/AAA/messages/BBB.BBB" }))
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].header("content-type"), Some("application/json"));
        assert_eq!(requests[0].json(), channel("http://x").payload(&group()));
    }

    #[tokio::test]
    async fn a_429_carries_retry_after_and_errors_hide_the_url() {
        let server = Server::start(
            Respond::status(429)
                .header("retry-after", "30")
                .body(r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}"#),
        )
        .await;
        let error = channel(&server.url("/v1/spaces/AAA/messages?key=canary-key"))
            .send(&group())
            .await
            .err();
        assert_throttled(&error, Duration::from_secs(30));

        let error = channel(&closed_url("/v1/spaces/AAA/messages?key=canary-key"))
            .send(&group())
            .await
            .err();
        assert_unreachable(&error);
    }
}
