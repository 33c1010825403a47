//! Microsoft Teams through a Workflows webhook ("Post to a channel when a webhook request
//! is received"): a `message` with one Adaptive Card attachment. The workflow answers
//! `202 Accepted` (older connector URLs `200`); errors come as a status with a short
//! text, and `429` with `Retry-After` when the flow is throttled.
//!
//! The card's `body` holds, for one alert, its text and a small subtle line naming
//! nightdesk, the rule and the subject; for a group, a bold header with the count, one
//! `TextBlock` per example, and "… and N more".

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::discord::truncate;
use super::{Alert, Channel};
use crate::http::{self, UpstreamError};

/// A card is limited to about 28 KB: long texts are cut to this many characters.
const TEXT_LIMIT: usize = 4000;
const EXAMPLE_LIMIT: usize = 1000;

pub struct TeamsChannel {
    http: reqwest::Client,
    webhook_url: SecretString,
}

impl std::fmt::Debug for TeamsChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamsChannel")
            .field("webhook_url", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl TeamsChannel {
    pub fn new(http: reqwest::Client, webhook_url: SecretString) -> Self {
        Self { http, webhook_url }
    }

    /// The message body; public so its shape can be checked without a network.
    pub fn payload(&self, alert: &Alert) -> serde_json::Value {
        let mut body = Vec::new();
        if alert.is_group() {
            body.push(json!({
                "type": "TextBlock",
                "text": unlink(&alert.headline()),
                "weight": "Bolder",
                "size": "Medium",
                "wrap": true,
            }));
            for line in &alert.lines {
                body.push(json!({
                    "type": "TextBlock",
                    "text": format!(
                        "**{}**: {}",
                        unlink(&line.subject),
                        unlink(&truncate(&line.text, EXAMPLE_LIMIT, |_| 1))
                    ),
                    "wrap": true,
                }));
            }
            if alert.not_shown() > 0 {
                body.push(json!({
                    "type": "TextBlock",
                    "text": format!("… and {} more", alert.not_shown()),
                    "isSubtle": true,
                    "wrap": true,
                }));
            }
        } else {
            let line = alert.lines.first();
            let text = line.map_or("", |l| l.text.as_str());
            body.push(json!({
                "type": "TextBlock",
                "text": unlink(&truncate(text, TEXT_LIMIT, |_| 1)),
                "wrap": true,
            }));
            body.push(json!({
                "type": "TextBlock",
                "text": format!(
                    "nightdesk · rule {} · {}",
                    unlink(&alert.rule),
                    unlink(line.map_or("", |l| l.subject.as_str()))
                ),
                "size": "Small",
                "isSubtle": true,
                "wrap": true,
            }));
        }
        json!({
            "type": "message",
            "attachments": [ {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                },
            } ],
        })
    }
}

/// Break the markdown link syntax `[label](url)` so text from a buyer cannot show a
/// link under a misleading label; a zero-width space keeps it readable.
fn unlink(text: &str) -> String {
    text.replace("](", "]\u{200B}(")
}

#[async_trait]
impl Channel for TeamsChannel {
    fn kind(&self) -> &'static str {
        "teams"
    }

    async fn send(&self, alert: &Alert) -> Result<serde_json::Value, UpstreamError> {
        let reply = http::send(
            self.http
                .post(self.webhook_url.expose_secret())
                .json(&self.payload(alert)),
        )
        .await?;
        if matches!(reply.status.as_u16(), 200 | 202) {
            return Ok(
                json!({ "status": reply.status.as_u16(), "response": http::summarize(&reply.body) }),
            );
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

    fn channel(url: &str) -> TeamsChannel {
        TeamsChannel::new(reqwest::Client::new(), SecretString::from(url.to_owned()))
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
    fn the_envelope_is_a_message_with_one_adaptive_card() {
        let body = channel("http://x").payload(&Alert::single("r", "s", "t", "k"));
        assert_eq!(body["type"], "message");
        let attachments = body["attachments"].as_array().map(Vec::len);
        assert_eq!(attachments, Some(1));
        let attachment = &body["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert!(attachment["contentUrl"].is_null());
        assert!(
            attachment
                .as_object()
                .is_some_and(|a| a.contains_key("contentUrl"))
        );
        let card = &attachment["content"];
        assert_eq!(
            card["$schema"],
            "http://adaptivecards.io/schemas/adaptive-card.json"
        );
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
    }

    #[test]
    fn a_single_alert_shows_its_text_and_a_subtle_footer() {
        let alert = Alert::single("r", "order:amazon/1", "hello", "k");
        let body = channel("http://x").payload(&alert);
        let blocks = &body["attachments"][0]["content"]["body"];
        assert_eq!(blocks.as_array().map(Vec::len), Some(2), "{body}");
        assert_eq!(
            blocks[0],
            json!({ "type": "TextBlock", "text": "hello", "wrap": true })
        );
        assert_eq!(blocks[1]["text"], "nightdesk · rule r · order:amazon/1");
        assert_eq!(blocks[1]["size"], "Small");
        assert_eq!(blocks[1]["isSubtle"], true);
    }

    #[test]
    fn a_group_has_a_bold_count_one_block_per_example_and_the_rest_counted() {
        let body = channel("http://x").payload(&group());
        let blocks = &body["attachments"][0]["content"]["body"];
        assert_eq!(blocks.as_array().map(Vec::len), Some(5), "{body}");
        assert_eq!(blocks[0]["text"], "40 alerts from rule late");
        assert_eq!(blocks[0]["weight"], "Bolder");
        for (i, block) in blocks.as_array().into_iter().flatten().enumerate() {
            assert_eq!(block["type"], "TextBlock", "{i}");
            assert_eq!(block["wrap"], true, "{i}");
        }
        assert_eq!(blocks[1]["text"], "**order:amazon/1**: one");
        assert_eq!(blocks[3]["text"], "**order:amazon/3**: text 3");
        assert_eq!(blocks[4]["text"], "… and 37 more");
    }

    #[test]
    fn debug_does_not_show_the_url() {
        let debug = format!(
            "{:?}",
            channel("https://prod.logic.azure.com/workflows/canary?sig=canary-sig")
        );
        assert!(!debug.contains("canary"), "{debug}");
    }

    #[tokio::test]
    async fn posts_the_card_and_reads_202() {
        let server = Server::start(Respond::status(202)).await;
        let receipt =
            channel(&server.url("/workflows/1/triggers/manual/paths/invoke?sig=canary-sig"))
                .send(&group())
                .await;
        assert_eq!(receipt, Ok(json!({ "status": 202, "response": "" })));
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
                .header("retry-after", "12")
                .body("throttled"),
        )
        .await;
        let error = channel(&server.url("/workflows/1/invoke?sig=canary-sig"))
            .send(&group())
            .await
            .err();
        assert_throttled(&error, Duration::from_secs(12));

        let error = channel(&closed_url("/workflows/1/invoke?sig=canary-sig"))
            .send(&group())
            .await
            .err();
        assert_unreachable(&error);
    }
}
