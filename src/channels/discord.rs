//! Discord "execute webhook": a JSON body with `content` (Discord markdown, at most
//! 2000 characters), an optional `username`, and `allowed_mentions: {parse: []}` so an
//! alert never pings anyone, whatever `@everyone`, `@here` or `<@id>` its text holds.
//! Discord answers `204 No Content` (or `200` with the message when `?wait=true` is in
//! the URL), an error status with `{"message", "code"}`, and `429` with a `Retry-After`
//! header and `{"retry_after": <seconds>, "global": bool}`.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{Alert, Channel};
use crate::http::{self, UpstreamError};

/// Discord's limit on `content`. Discord's own count is not documented as code points
/// or UTF-16 units; we count UTF-16 units, which is never less than either.
pub const CONTENT_LIMIT: usize = 2000;
/// Discord's limit on a webhook's `username`.
const USERNAME_LIMIT: usize = 80;

pub struct DiscordChannel {
    http: reqwest::Client,
    webhook_url: SecretString,
    username: Option<String>,
}

impl std::fmt::Debug for DiscordChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordChannel")
            .field("webhook_url", &"[redacted]")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl DiscordChannel {
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
            "content": content(alert),
            "allowed_mentions": { "parse": [] },
        });
        if let (Some(name), Some(map)) = (&self.username, body.as_object_mut()) {
            map.insert(
                "username".into(),
                json!(truncate(name, USERNAME_LIMIT, |_| 1)),
            );
        }
        body
    }
}

/// The message text: the alert (or the group's count and examples), then a `-#`
/// subtext line naming nightdesk and the rule. Cut to [`CONTENT_LIMIT`], keeping the
/// footer when it is short.
fn content(alert: &Alert) -> String {
    let (main, footer) = if alert.is_group() {
        let mut main = format!("**{}**", unlink(&alert.headline()));
        for line in &alert.lines {
            main.push_str(&format!(
                "\n• **{}**: {}",
                unlink(&line.subject),
                unlink(&line.text)
            ));
        }
        if alert.not_shown() > 0 {
            main.push_str(&format!("\n… and {} more", alert.not_shown()));
        }
        (
            main,
            format!("\n-# nightdesk · rule {}", unlink(&alert.rule)),
        )
    } else {
        let line = alert.lines.first();
        (
            unlink(line.map_or("", |l| l.text.as_str())),
            format!(
                "\n-# nightdesk · rule {} · {}",
                unlink(&alert.rule),
                unlink(line.map_or("", |l| l.subject.as_str()))
            ),
        )
    };
    let footer_units = utf16_len(&footer);
    if footer_units <= CONTENT_LIMIT / 4 {
        let mut text = truncate(&main, CONTENT_LIMIT - footer_units, char::len_utf16);
        text.push_str(&footer);
        text
    } else {
        truncate(&format!("{main}{footer}"), CONTENT_LIMIT, char::len_utf16)
    }
}

/// Break Discord's masked-link syntax `[label](url)` so text from a buyer cannot
/// show a link under a misleading label; a zero-width space keeps it readable.
fn unlink(text: &str) -> String {
    text.replace("](", "]\u{200B}(")
}

fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// `text` cut to at most `max` units (as `width` counts each char), on a char boundary,
/// ending in `…` when cut. Shared by the channels that have a length limit.
pub(crate) fn truncate(text: &str, max: usize, width: fn(char) -> usize) -> String {
    let total: usize = text.chars().map(width).sum();
    if total <= max {
        return text.to_owned();
    }
    let ellipsis = width('…');
    let mut used = 0;
    let mut out = String::new();
    for c in text.chars() {
        let w = width(c);
        if used + w + ellipsis > max {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// `retry_after` (seconds) from a Discord 429 body, for when the header is missing.
fn body_retry_after(body: &str) -> Option<std::time::Duration> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value["retry_after"]
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(std::time::Duration::from_secs_f64)
}

#[async_trait]
impl Channel for DiscordChannel {
    fn kind(&self) -> &'static str {
        "discord"
    }

    async fn send(&self, alert: &Alert) -> Result<serde_json::Value, UpstreamError> {
        let reply = http::send(
            self.http
                .post(self.webhook_url.expose_secret())
                .json(&self.payload(alert)),
        )
        .await?;
        match reply.status.as_u16() {
            204 => return Ok(json!({ "status": 204 })),
            200 => {
                // `?wait=true`: the body is the message; keep its id, not its text.
                let id = serde_json::from_str::<serde_json::Value>(&reply.body)
                    .ok()
                    .and_then(|m| m["id"].as_str().map(str::to_owned));
                return Ok(json!({ "status": 200, "message_id": id }));
            }
            _ => {}
        }
        let mut error = reply.error(&reply.body);
        if let UpstreamError::Status {
            status: 429,
            retry_after: retry_after @ None,
            ..
        } = &mut error
        {
            *retry_after = body_retry_after(&reply.body);
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::channels::AlertLine;
    use crate::channels::webhook::loopback::{
        Respond, Server, assert_throttled, assert_unreachable,
    };

    fn channel(url: &str, username: Option<&str>) -> DiscordChannel {
        DiscordChannel::new(
            reqwest::Client::new(),
            SecretString::from(url.to_owned()),
            username.map(str::to_owned),
        )
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
    fn a_single_alert_has_its_text_a_footer_and_no_mentions() {
        let alert = Alert::single("r", "order:amazon/1", "hello @everyone", "k");
        let body = channel("http://x", Some("nightdesk")).payload(&alert);
        assert_eq!(
            body["content"],
            "hello @everyone\n-# nightdesk · rule r · order:amazon/1"
        );
        assert_eq!(body["allowed_mentions"], json!({ "parse": [] }));
        assert_eq!(body["username"], "nightdesk");
        let without = channel("http://x", None).payload(&alert);
        assert!(without.get("username").is_none(), "{without}");
    }

    #[test]
    fn a_group_has_a_count_examples_and_the_rest_counted() {
        let body = channel("http://x", None).payload(&group());
        let content = body["content"].as_str().unwrap_or_default();
        assert!(
            content.starts_with("**40 alerts from rule late**\n"),
            "{content}"
        );
        assert!(content.contains("• **order:amazon/1**: one\n"), "{content}");
        assert!(
            content.contains("• **order:amazon/3**: text 3\n"),
            "{content}"
        );
        assert!(
            content.contains("… and 37 more\n-# nightdesk · rule late"),
            "{content}"
        );
        assert_eq!(body["allowed_mentions"], json!({ "parse": [] }));
    }

    #[test]
    fn long_text_is_cut_to_2000_on_a_char_boundary_keeping_the_footer() {
        // 'é' is two bytes, '😀' is four bytes and two UTF-16 units.
        for unit in ["é", "😀", "aé😀"] {
            let alert = Alert::single("r", "s", unit.repeat(3000), "k");
            let body = channel("http://x", None).payload(&alert);
            let content = body["content"].as_str().unwrap_or_default();
            assert!(
                utf16_len(content) <= CONTENT_LIMIT,
                "{unit}: {}",
                utf16_len(content)
            );
            assert!(content.chars().count() <= CONTENT_LIMIT);
            assert!(
                utf16_len(content) >= CONTENT_LIMIT - 2,
                "{unit}: cut too short"
            );
            assert!(content.contains("…\n-# nightdesk · rule r · s"), "{unit}");
        }
        let short = truncate("ab😀cd", 4, char::len_utf16);
        assert_eq!(short, "ab…");
        assert_eq!(truncate("abc", 3, |_| 1), "abc");
    }

    #[test]
    fn masked_links_are_broken() {
        let alert = Alert::single("r", "s", "[Seller Central](https://evil.example)", "k");
        let body = channel("http://x", None).payload(&alert);
        let content = body["content"].as_str().unwrap_or_default();
        assert!(!content.contains("]("), "{content}");
    }

    #[test]
    fn debug_does_not_show_the_url() {
        let debug = format!(
            "{:?}",
            channel("https://discord.test/api/webhooks/1/canary-token", None)
        );
        assert!(!debug.contains("canary"), "{debug}");
    }

    #[tokio::test]
    async fn posts_the_payload_and_reads_204() {
        let server = Server::start(Respond::status(204)).await;
        let hook = channel(&server.url("/api/webhooks/1/canary-token"), Some("nd"));
        let receipt = hook.send(&group()).await;
        assert_eq!(receipt, Ok(json!({ "status": 204 })));
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/api/webhooks/1/canary-token");
        assert_eq!(request.header("content-type"), Some("application/json"));
        let body = request.json();
        assert_eq!(body["allowed_mentions"], json!({ "parse": [] }));
        assert_eq!(body["username"], "nd");
    }

    #[tokio::test]
    async fn a_429_carries_retry_after_from_the_header_or_the_body() {
        let server =
            Server::start(Respond::status(429).header("retry-after", "3").body(
                r#"{"message":"You are being rate limited.","retry_after":2.5,"global":false}"#,
            ))
            .await;
        let hook = channel(&server.url("/api/webhooks/1/canary-token"), None);
        let error = hook.send(&group()).await.err();
        assert_throttled(&error, Duration::from_secs(3));

        let server =
            Server::start(Respond::status(429).body(
                r#"{"message":"You are being rate limited.","retry_after":2.5,"global":true}"#,
            ))
            .await;
        let hook = channel(&server.url("/api/webhooks/1/canary-token"), None);
        let error = hook.send(&group()).await.err();
        assert_eq!(
            error.as_ref().and_then(UpstreamError::retry_after),
            Some(Duration::from_millis(2500)),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_host_gives_a_retryable_error_without_the_url() {
        let url = crate::channels::webhook::loopback::closed_url("/api/webhooks/1/canary-token");
        let error = channel(&url, None).send(&group()).await.err();
        assert_unreachable(&error);
    }
}
