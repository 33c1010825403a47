//! E-mail over SMTP (lettre). The SMTP URL is a secret and takes the forms
//! `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465`
//! (TLS from the start) and `smtp://host:port` (plain, for a local relay or tests);
//! percent-encode `@`, `:` and `/` in the user name and password.
//!
//! Each alert is one `text/plain; charset=utf-8` message: Subject `[nightdesk] ` and the
//! headline, `Auto-Submitted: auto-generated` (RFC 3834: auto-responders do not answer
//! it) with `X-Auto-Response-Suppress: All` (its Exchange counterpart), `X-Nightdesk-Key`
//! with the alert's key and a Message-ID derived from the key, so that a duplicate
//! delivery is recognisable (and threads with the first).
//!
//! The URL, the connection and the classification of failures are shared with the
//! buyer-reply sender: see `crate::smtp` (src/smtp.rs). In short: any SMTP reply (4xx
//! retried, 5xx not, an authentication refusal `Credentials`) and any failure before the
//! server's `354` to DATA happened before the message was taken; a broken connection or a
//! timeout while the message or the answer to its final `.` is in flight is
//! `Delivery::Maybe`. One send may take 60 s, connecting included.

use async_trait::async_trait;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use secrecy::SecretString;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::discord::truncate;
use super::{Alert, Channel};
use crate::http::UpstreamError;
use crate::smtp::{self, SmtpServer};

/// Longest Subject, prefix included.
pub const SUBJECT_LIMIT: usize = 120;

const AUTO_SUBMITTED: HeaderName = HeaderName::new_from_ascii_str("Auto-Submitted");
const AUTO_RESPONSE_SUPPRESS: HeaderName =
    HeaderName::new_from_ascii_str("X-Auto-Response-Suppress");
const KEY_HEADER: HeaderName = HeaderName::new_from_ascii_str("X-Nightdesk-Key");

pub struct EmailChannel {
    server: SmtpServer,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("smtp_url", &"[redacted]")
            .field("from", &self.from.to_string())
            .field(
                "to",
                &self.to.iter().map(ToString::to_string).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl EmailChannel {
    /// Check the URL and the addresses and build the transport (nothing is connected
    /// yet). The error text never shows the URL or any part of it.
    pub fn new(smtp_url: &SecretString, from: &str, to: &[String]) -> Result<Self, String> {
        let server = SmtpServer::from_url(smtp_url)?;

        let from = from
            .trim()
            .parse::<Mailbox>()
            .map_err(|e| format!("from {from:?} is not an e-mail address: {e}"))?;
        if to.is_empty() {
            return Err("to names no recipient".into());
        }
        let to = to
            .iter()
            .map(|addr| {
                addr.trim()
                    .parse::<Mailbox>()
                    .map_err(|e| format!("to {addr:?} is not an e-mail address: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { server, from, to })
    }

    /// The message for `alert`; public so its headers and body can be checked without
    /// a server.
    pub fn message(&self, alert: &Alert) -> Result<Message, UpstreamError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject(alert))
            .message_id(Some(message_id(&alert.key)))
            .raw_header(HeaderValue::new(
                AUTO_SUBMITTED,
                "auto-generated".to_owned(),
            ))
            .raw_header(HeaderValue::new(AUTO_RESPONSE_SUPPRESS, "All".to_owned()))
            .raw_header(HeaderValue::new(KEY_HEADER, one_line(&alert.key)));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .header(ContentType::TEXT_PLAIN)
            .body(alert.plain_text())
            .map_err(smtp::not_built)
    }

    /// `text` with every secret this channel holds blanked out.
    #[cfg(test)]
    fn scrub(&self, text: &str) -> String {
        self.server.scrub(text)
    }
}

/// `[nightdesk] ` and the headline on one line, at most [`SUBJECT_LIMIT`] characters.
pub fn subject(alert: &Alert) -> String {
    const PREFIX: &str = "[nightdesk] ";
    let headline = one_line(&alert.headline());
    let room = SUBJECT_LIMIT - PREFIX.chars().count();
    format!("{PREFIX}{}", truncate(&headline, room, |_| 1))
}

/// `<first 16 bytes of SHA-256(key), in hex>@nightdesk>`: one key, one Message-ID.
pub fn message_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("<{}@nightdesk>", hex::encode(&digest[..16]))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[async_trait]
impl Channel for EmailChannel {
    fn kind(&self) -> &'static str {
        "email"
    }

    async fn send(&self, alert: &Alert) -> Result<serde_json::Value, UpstreamError> {
        let message = self.message(alert)?;
        let response = self.server.send(&message).await?;
        Ok(json!({
            "smtp": smtp::reply_summary(&self.server, &response),
            "message_id": message_id(&alert.key),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::AlertLine;
    use crate::http::Delivery;

    fn secret(url: &str) -> SecretString {
        SecretString::from(url.to_owned())
    }

    fn channel() -> EmailChannel {
        EmailChannel::new(
            &secret("smtp://127.0.0.1:2525"),
            "nightdesk <alerts@shop.example>",
            &[
                "ops@shop.example".into(),
                "Owner <owner@shop.example>".into(),
            ],
        )
        .unwrap_or_else(|e| panic!("a channel: {e:?}"))
    }

    fn group() -> Alert {
        let mut alert = Alert::single(
            "late",
            "order:amazon/1",
            "one",
            "late|order:amazon/1|alert|ab12",
        );
        alert.total = 40;
        for i in 2..=3 {
            alert.lines.push(AlertLine {
                subject: format!("order:amazon/{i}"),
                text: format!("text {i}"),
            });
        }
        alert
    }

    fn formatted(alert: &Alert) -> String {
        let message = channel()
            .message(alert)
            .unwrap_or_else(|e| panic!("a message: {e:?}"));
        String::from_utf8_lossy(&message.formatted()).into_owned()
    }

    #[test]
    fn a_single_alert_has_its_text_as_subject_and_the_headers() {
        let alert = Alert::single(
            "r",
            "order:amazon/1",
            "Order late",
            "r|order:amazon/1|alert|00",
        );
        let text = formatted(&alert);
        assert!(
            text.contains("From: nightdesk <alerts@shop.example>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("To: ops@shop.example, Owner <owner@shop.example>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Subject: [nightdesk] Order late\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Auto-Submitted: auto-generated\r\n"),
            "{text}"
        );
        assert!(
            text.contains("X-Nightdesk-Key: r|order:amazon/1|alert|00\r\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("Message-ID: {}\r\n", message_id(&alert.key))),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8\r\n"),
            "{text}"
        );
    }

    #[test]
    fn a_group_subject_counts_and_the_message_id_follows_the_key() {
        let alert = group();
        assert_eq!(subject(&alert), "[nightdesk] 40 alerts from rule late");
        let id = message_id(&alert.key);
        assert_eq!(id, message_id(&alert.key));
        assert_ne!(id, message_id("another key"));
        assert!(
            id.starts_with('<') && id.ends_with("@nightdesk>") && id.len() == 32 + 12,
            "{id}"
        );
        let message = channel()
            .message(&alert)
            .unwrap_or_else(|e| panic!("a message: {e:?}"));
        assert_eq!(message.envelope().to().len(), 2);
    }

    #[test]
    fn long_subjects_are_cut_to_120_on_one_line() {
        let alert = Alert::single(
            "r",
            "s",
            format!("line one\nline two {}", "é".repeat(300)),
            "k",
        );
        let subject = subject(&alert);
        assert_eq!(subject.chars().count(), SUBJECT_LIMIT);
        assert!(
            subject.starts_with("[nightdesk] line one line two é"),
            "{subject}"
        );
        assert!(subject.ends_with('…'));
    }

    #[test]
    fn bad_settings_are_refused_without_the_url() {
        let to = ["ops@shop.example".to_owned()];
        for url in [
            "canary-pass-123",
            "http://user:canary-pass-123@host",
            "smtp://user:canary-pass-123@host?tls=sometimes",
            "smtp://user:canary-pass-123@:25",
            "smtp://user:canary-pass-123@host:99999",
        ] {
            let error = EmailChannel::new(&secret(url), "a@b.example", &to).err();
            let error = error.unwrap_or_else(|| panic!("{url} accepted"));
            assert!(!error.contains("canary"), "{error}");
        }
        let url = secret("smtps://user:canary-pass-123@smtp.example:465");
        assert!(EmailChannel::new(&url, "a@b.example", &to).is_ok());
        assert!(EmailChannel::new(&url, "not an address", &to).is_err());
        assert!(EmailChannel::new(&url, "a@b.example", &[]).is_err());
        let url = secret("smtp://user:canary%40pass@smtp.example:587?tls=required");
        let channel = EmailChannel::new(&url, "a@b.example", &to)
            .unwrap_or_else(|e| panic!("a channel: {e:?}"));
        assert_eq!(
            channel.scrub("x canary@pass y canary%40pass"),
            "x [redacted] y [redacted]"
        );
    }

    #[test]
    fn debug_does_not_show_the_url() {
        let url = secret("smtps://user:canary-pass-123@smtp.example:465");
        let channel = EmailChannel::new(&url, "a@b.example", &["c@d.example".into()])
            .unwrap_or_else(|e| panic!("a channel: {e:?}"));
        let debug = format!("{channel:?}");
        assert!(
            !debug.contains("canary") && !debug.contains("smtp.example"),
            "{debug}"
        );
        assert!(debug.contains("c@d.example"), "{debug}");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_retryable_error_before_sending() {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e:?}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e:?}"))
            .port();
        drop(listener);
        let url = secret(&format!(
            "smtp://nightdesk:canary-pass-123@127.0.0.1:{port}"
        ));
        let channel = EmailChannel::new(&url, "a@b.example", &["c@d.example".into()])
            .unwrap_or_else(|e| panic!("a channel: {e:?}"));
        let error = channel.send(&group()).await.err();
        let text = format!(
            "{} {error:?}",
            error.as_ref().map(ToString::to_string).unwrap_or_default()
        );
        assert!(
            matches!(
                error,
                Some(UpstreamError::Transport {
                    retryable: true,
                    delivered: Delivery::NotSent,
                    ..
                })
            ),
            "{text}"
        );
        assert!(!text.contains("canary"), "{text}");
    }
}
