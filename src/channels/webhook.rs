//! A generic signed webhook: nightdesk POSTs the alert as JSON to a URL of your own.
//!
//! # The request
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! X-Nightdesk-Timestamp: 1793491200
//! X-Nightdesk-Signature: sha256=<64 lowercase hex digits>
//! Idempotency-Key: <the alert's key>
//!
//! {"rule":"late","key":"…","total":40,
//!  "alerts":[{"subject":"order:amazon/1","text":"…"}, …],
//!  "more":37,"sent_at":"2026-11-01T00:00:00Z"}
//! ```
//!
//! `alerts` holds at most three examples, oldest first; `total` counts every alert the
//! message stands for and `more` those not shown (`total - alerts.len()`). Any 2xx
//! answer is success; 429 and 5xx are retried (a `Retry-After` in seconds is honoured),
//! other statuses are not.
//!
//! # Verifying a delivery (for receiver authors)
//!
//! 1. Read the body as raw bytes, before any JSON parsing or re-encoding.
//! 2. Read `X-Nightdesk-Timestamp` (Unix seconds) and reject the request when it is more
//!    than five minutes from your clock (a replayed capture).
//! 3. Compute `HMAC-SHA256(signing_secret, "<timestamp>" + "." + <body bytes>)`, hex
//!    encode it in lowercase, prefix `sha256=`, and compare it with
//!    `X-Nightdesk-Signature` in constant time (`hmac.compare_digest`,
//!    `crypto.timingSafeEqual`, `Mac::verify_slice`). Reject on mismatch.
//! 4. Deduplicate on `Idempotency-Key`: a retried delivery carries the same key (its
//!    timestamp, `sent_at` and so its signature are new). Answer 2xx to a duplicate.
//!    The key is the body's `key`, byte for byte, when that is visible ASCII without
//!    `%` (as nightdesk's keys are); other bytes are percent-encoded in the header.
//!
//! In Python:
//!
//! ```text
//! import hmac, hashlib, time
//! def verify(secret: bytes, headers, body: bytes) -> bool:
//!     ts = headers["X-Nightdesk-Timestamp"]
//!     if abs(time.time() - int(ts)) > 300:
//!         return False
//!     mac = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
//!     return hmac.compare_digest("sha256=" + mac, headers["X-Nightdesk-Signature"])
//! ```
//!
//! The URL and the signing secret are secrets: neither is logged nor put in an error.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;
use sha2::Sha256;

use super::{Alert, Channel};
use crate::clock::SharedClock;
use crate::http::{self, Delivery, UpstreamError};

pub const TIMESTAMP_HEADER: &str = "X-Nightdesk-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Nightdesk-Signature";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

pub struct WebhookChannel {
    http: reqwest::Client,
    url: SecretString,
    signing_secret: SecretString,
    clock: SharedClock,
}

impl std::fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookChannel")
            .field("url", &"[redacted]")
            .field("signing_secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// One delivery as it goes on the wire: what is signed and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBody {
    /// Unix seconds, the `X-Nightdesk-Timestamp` header.
    pub timestamp: i64,
    /// The exact body bytes sent.
    pub body: Vec<u8>,
    /// The `X-Nightdesk-Signature` header: `sha256=<lowercase hex>`.
    pub signature: String,
}

#[derive(Serialize)]
struct Body<'a> {
    rule: &'a str,
    key: &'a str,
    total: usize,
    alerts: Vec<Line<'a>>,
    more: usize,
    sent_at: String,
}

#[derive(Serialize)]
struct Line<'a> {
    subject: &'a str,
    text: &'a str,
}

impl WebhookChannel {
    pub fn new(
        http: reqwest::Client,
        url: SecretString,
        signing_secret: SecretString,
        clock: SharedClock,
    ) -> Self {
        Self {
            http,
            url,
            signing_secret,
            clock,
        }
    }

    /// The JSON body for `alert` sent at `sent_at`; public so its shape can be checked
    /// without a network.
    pub fn body(alert: &Alert, sent_at: DateTime<Utc>) -> Vec<u8> {
        let body = Body {
            rule: &alert.rule,
            key: &alert.key,
            total: alert.total,
            alerts: alert
                .lines
                .iter()
                .map(|l| Line {
                    subject: &l.subject,
                    text: &l.text,
                })
                .collect(),
            more: alert.not_shown(),
            sent_at: sent_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        // Serializing strings and integers cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The body and signature of a delivery of `alert` now (by the injected clock):
    /// exactly what [`Channel::send`] puts on the wire.
    pub fn signed(&self, alert: &Alert) -> SignedBody {
        let now = self.clock.now();
        let timestamp = now.timestamp();
        let body = Self::body(alert, now);
        let signature = signature(
            self.signing_secret.expose_secret().as_bytes(),
            timestamp,
            &body,
        );
        SignedBody {
            timestamp,
            body,
            signature,
        }
    }
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The key as a header value: as is when it is visible ASCII without `%` (every key
/// nightdesk makes), else with the other bytes percent-encoded, so a receiver always
/// gets the same value for one key.
fn idempotency_value(key: &str) -> HeaderValue {
    let mut encoded = String::with_capacity(key.len());
    for b in key.bytes() {
        if (0x21..0x7f).contains(&b) && b != b'%' {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    // Only visible ASCII is left, which is always a valid header value.
    HeaderValue::from_str(&encoded).unwrap_or(HeaderValue::from_static("invalid-key"))
}

#[async_trait]
impl Channel for WebhookChannel {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, alert: &Alert) -> Result<serde_json::Value, UpstreamError> {
        let signed = self.signed(alert);
        let signature =
            HeaderValue::from_str(&signed.signature).map_err(|_| UpstreamError::Transport {
                retryable: false,
                delivered: Delivery::NotSent,
                message: "could not sign the webhook body".into(),
            })?;
        let reply = http::send(
            self.http
                .post(self.url.expose_secret())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header(TIMESTAMP_HEADER, signed.timestamp.to_string())
                .header(SIGNATURE_HEADER, signature)
                .header(IDEMPOTENCY_HEADER, idempotency_value(&alert.key))
                .body(signed.body),
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

/// A loopback HTTP server for the channels' tests: records every request and answers
/// each with one scripted reply.
#[cfg(test)]
pub(crate) mod loopback {
    use std::sync::{Arc, Mutex, PoisonError};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};

    /// What the server answers.
    #[derive(Clone)]
    pub struct Respond {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    }

    impl Respond {
        pub fn status(status: u16) -> Self {
            Self {
                status,
                headers: Vec::new(),
                body: String::new(),
            }
        }

        pub fn header(mut self, name: &'static str, value: &str) -> Self {
            self.headers.push((name, value.to_owned()));
            self
        }

        pub fn body(mut self, body: &str) -> Self {
            self.body = body.to_owned();
            self
        }
    }

    /// A request as the server saw it.
    #[derive(Debug, Clone)]
    pub struct Recorded {
        pub method: String,
        /// Path and query.
        pub path: String,
        pub headers: HeaderMap,
        pub body: Vec<u8>,
    }

    impl Recorded {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }

        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("a JSON body: {e:?}"))
        }
    }

    #[derive(Clone)]
    struct Shared {
        respond: Respond,
        seen: Arc<Mutex<Vec<Recorded>>>,
    }

    pub struct Server {
        addr: std::net::SocketAddr,
        seen: Arc<Mutex<Vec<Recorded>>>,
    }

    impl Server {
        /// Serve on 127.0.0.1:0 until the test's runtime ends.
        pub async fn start(respond: Respond) -> Self {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let app = Router::new().fallback(handle).with_state(Shared {
                respond,
                seen: seen.clone(),
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("bind loopback: {e:?}"));
            let addr = listener
                .local_addr()
                .unwrap_or_else(|e| panic!("local addr: {e:?}"));
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Self { addr, seen }
        }

        pub fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        pub fn requests(&self) -> Vec<Recorded> {
            self.seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }

    /// Display and Debug of an error, for looking for leaked secrets.
    pub fn error_text(error: &Option<crate::http::UpstreamError>) -> String {
        format!(
            "{} {error:?}",
            error.as_ref().map(ToString::to_string).unwrap_or_default()
        )
    }

    /// `error` is a 429 that carries `wait`, and neither a canary nor the address shows.
    pub fn assert_throttled(error: &Option<crate::http::UpstreamError>, wait: std::time::Duration) {
        let Some(crate::http::UpstreamError::Status {
            status: 429,
            retry_after: Some(got),
            ..
        }) = error
        else {
            panic!("expected a 429 with Retry-After, got {error:?}");
        };
        assert_eq!(*got, wait);
        let text = error_text(error);
        assert!(
            !text.contains("canary") && !text.contains("127.0.0.1"),
            "{text}"
        );
    }

    /// `error` (from a closed port) is retryable and shows no canary.
    pub fn assert_unreachable(error: &Option<crate::http::UpstreamError>) {
        let text = error_text(error);
        assert!(
            error
                .as_ref()
                .is_some_and(crate::http::UpstreamError::is_retryable),
            "{text}"
        );
        assert!(!text.contains("canary"), "{text}");
    }

    /// A URL on a loopback port nothing listens on.
    pub fn closed_url(path: &str) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("bind loopback: {e:?}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local addr: {e:?}"));
        drop(listener);
        format!("http://{addr}{path}")
    }

    async fn handle(
        State(shared): State<Shared>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Recorded {
                method: method.to_string(),
                path: uri
                    .path_and_query()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                headers,
                body: body.to_vec(),
            });
        let respond = shared.respond;
        let status =
            StatusCode::from_u16(respond.status).unwrap_or_else(|e| panic!("a status: {e:?}"));
        let mut response = (status, respond.body).into_response();
        for (name, value) in respond.headers {
            response.headers_mut().insert(
                name,
                value
                    .parse()
                    .unwrap_or_else(|e| panic!("a header value: {e:?}")),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::loopback::{Respond, Server, assert_throttled, assert_unreachable, closed_url};
    use super::*;
    use crate::channels::AlertLine;
    use crate::clock::ManualClock;

    const SECRET: &str = "canary-signing-secret-4e1f";

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn channel(url: &str) -> WebhookChannel {
        WebhookChannel::new(
            reqwest::Client::new(),
            SecretString::from(url.to_owned()),
            SecretString::from(SECRET),
            Arc::new(ManualClock::new(at())),
        )
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

    fn verify(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
        let Some(hex_mac) = signature.strip_prefix("sha256=") else {
            return false;
        };
        let Ok(expected) = hex::decode(hex_mac) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .unwrap_or_else(|e| panic!("hmac key: {e:?}"));
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    }

    #[test]
    fn a_single_alert_body() {
        let alert = Alert::single("r", "order:amazon/1", "hello", "k1");
        let body: serde_json::Value = serde_json::from_slice(&WebhookChannel::body(&alert, at()))
            .unwrap_or_else(|e| panic!("json: {e:?}"));
        assert_eq!(
            body,
            json!({
                "rule": "r", "key": "k1", "total": 1,
                "alerts": [ { "subject": "order:amazon/1", "text": "hello" } ],
                "more": 0, "sent_at": "2026-11-01T00:00:00Z",
            })
        );
    }

    #[test]
    fn a_group_body_has_the_examples_and_counts_the_rest() {
        let bytes = WebhookChannel::body(&group(), at());
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with(r#"{"rule":"late","key":"#), "{text}");
        let body: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("json: {e:?}"));
        assert_eq!(body["total"], 40);
        assert_eq!(body["more"], 37);
        assert_eq!(body["alerts"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            body["alerts"][2],
            json!({ "subject": "order:amazon/3", "text": "text 3" })
        );
    }

    #[test]
    fn the_signature_verifies_over_the_exact_bytes() {
        let signed = channel("http://x").signed(&group());
        assert_eq!(signed.timestamp, at().timestamp());
        assert_eq!(signed.signature.len(), "sha256=".len() + 64);
        assert_eq!(signed.signature, signed.signature.to_lowercase());
        let ts = signed.timestamp.to_string();
        assert!(verify(SECRET, &ts, &signed.body, &signed.signature));
        assert!(!verify(
            "another secret",
            &ts,
            &signed.body,
            &signed.signature
        ));
        let mut tampered = signed.body.clone();
        tampered.push(b' ');
        assert!(!verify(SECRET, &ts, &tampered, &signed.signature));
        assert!(!verify(SECRET, "1", &signed.body, &signed.signature));
    }

    #[test]
    fn odd_keys_become_stable_header_values() {
        assert_eq!(
            idempotency_value("r|order:amazon/1|alert|ab"),
            "r|order:amazon/1|alert|ab"
        );
        assert_eq!(idempotency_value("a b%é\n"), "a%20b%25%C3%A9%0A");
    }

    #[test]
    fn debug_shows_neither_url_nor_secret() {
        let debug = format!("{:?}", channel("https://hooks.example/canary-url"));
        assert!(!debug.contains("canary"), "{debug}");
    }

    #[tokio::test]
    async fn posts_signed_json_with_the_idempotency_key() {
        let server = Server::start(Respond::status(202).body("queued")).await;
        let hook = channel(&server.url("/in/canary-url?token=canary-token"));
        let alert = group();
        let receipt = hook.send(&alert).await;
        assert_eq!(receipt, Ok(json!({ "status": 202, "response": "queued" })));
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/in/canary-url?token=canary-token");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("idempotency-key"), Some(alert.key.as_str()));
        let ts = request.header("x-nightdesk-timestamp").unwrap_or_default();
        assert_eq!(ts, at().timestamp().to_string());
        let signature = request.header("x-nightdesk-signature").unwrap_or_default();
        assert!(verify(SECRET, ts, &request.body, signature), "{signature}");
        assert_eq!(request.body, WebhookChannel::body(&alert, at()));
        assert_eq!(request.json()["more"], 37);
    }

    #[tokio::test]
    async fn a_429_keeps_retry_after_and_no_error_shows_a_secret() {
        let server = Server::start(
            Respond::status(429)
                .header("retry-after", "7")
                .body("slow down"),
        )
        .await;
        let hook = channel(&server.url("/in/canary-url"));
        let error = hook.send(&group()).await.err();
        assert_throttled(&error, Duration::from_secs(7));

        let server = Server::start(Respond::status(400).body("bad signature")).await;
        let error = channel(&server.url("/in/canary-url"))
            .send(&group())
            .await
            .err();
        assert!(
            error.as_ref().is_some_and(|e| !e.is_retryable()),
            "{error:?}"
        );

        let error = channel(&closed_url("/in/canary-url"))
            .send(&group())
            .await
            .err();
        assert_unreachable(&error);
    }
}
