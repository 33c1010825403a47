//! The Walmart Marketplace API client both the order source and the actions use: OAuth
//! client-credentials tokens from `POST /v3/token` (HTTP Basic client id and secret,
//! `grant_type=client_credentials`), cached until shortly before `expires_in` and
//! fetched again once when a call answers 401; Walmart's required headers on every call
//! (`WM_SEC.ACCESS_TOKEN`, `WM_QOS.CORRELATION_ID` — a fresh GUID per request —,
//! `WM_SVC.NAME`, `Accept: application/json`); 429 and 5xx retried with backoff, 400 and
//! 404 not, and calls with an effect ([`WalmartApi::call_once`]) never retried here.
//!
//! Error answers keep Walmart's `errors[{code, field, description, info, severity,
//! category, causes}]` in the error's summary. Never in an error, a log line or `Debug`:
//! the client secret, a token, or a URL.

use std::fmt;
use std::time::Duration as StdDuration;

use chrono::Duration;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::clock::SharedClock;
use crate::http::{self, Reply, RetryPolicy, UpstreamError};
use crate::sources::carriers::token::{FetchedToken, TokenCache};

/// Walmart's production host; its sandbox is `https://sandbox.walmartapis.com`.
pub const DEFAULT_BASE_URL: &str = "https://marketplace.walmartapis.com";

/// The journal/log name of the token call.
pub const TOKEN: &str = "walmart.token";

pub const HEADER_ACCESS_TOKEN: &str = "WM_SEC.ACCESS_TOKEN";
pub const HEADER_CORRELATION_ID: &str = "WM_QOS.CORRELATION_ID";
pub const HEADER_SERVICE_NAME: &str = "WM_SVC.NAME";

/// Walmart's throttling headers on a 429.
const HEADER_TOKEN_COUNT: &str = "x-current-token-count";
const HEADER_NEXT_REPLENISHMENT: &str = "x-next-replenishment-time";

/// A fresh GUID (version 4) for `WM_QOS.CORRELATION_ID`.
pub fn correlation_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// One of Walmart's `errors[]` (the contract's `GatewayError`, fields nightdesk shows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WalmartError {
    pub code: String,
    pub field: Option<String>,
    pub description: Option<String>,
    pub info: Option<String>,
    pub severity: Option<String>,
    pub category: Option<String>,
    pub causes: Vec<WalmartCause>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WalmartCause {
    pub code: Option<String>,
    pub field: Option<String>,
    pub description: Option<String>,
}

impl fmt::Display for WalmartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        let extra: Vec<String> = [
            self.field.as_ref().map(|v| format!("field={v}")),
            self.info.as_ref().map(|v| format!("info={v}")),
            self.severity.as_ref().map(|v| format!("severity={v}")),
            self.category.as_ref().map(|v| format!("category={v}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !extra.is_empty() {
            write!(f, " ({})", extra.join(", "))?;
        }
        for cause in &self.causes {
            let parts: Vec<&str> = [&cause.code, &cause.field, &cause.description]
                .into_iter()
                .filter_map(|p| p.as_deref())
                .collect();
            if !parts.is_empty() {
                write!(f, "; cause {}", parts.join(" "))?;
            }
        }
        Ok(())
    }
}

/// Walmart's errors in any of the shapes its JSON takes: `{"errors": [...]}` (the
/// contract's arrays), `{"errors": {"error": [...]}}` (the XML shape in JSON) and
/// `{"error": [...]}` (the gateway's). Empty when the body is none of these.
pub fn parse_errors(body: &str) -> Vec<WalmartError> {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    let list = match (value.get("errors"), value.get("error")) {
        (Some(Value::Array(items)), _) => items.clone(),
        (Some(Value::Object(map)), _) => match map.get("error") {
            Some(Value::Array(items)) => items.clone(),
            Some(one @ Value::Object(_)) => vec![one.clone()],
            _ => Vec::new(),
        },
        (_, Some(Value::Array(items))) => items.clone(),
        _ => Vec::new(),
    };
    list.into_iter()
        .filter_map(|item| serde_json::from_value::<WalmartError>(item).ok())
        .filter(|e| !e.code.is_empty())
        .collect()
}

/// A short, secret-free summary of an error answer: Walmart's errors when it sent
/// them, else the body cut short.
fn summary(reply: &Reply) -> String {
    let errors = parse_errors(&reply.body);
    let mut text = if errors.is_empty() {
        http::summarize(&reply.body)
    } else {
        http::summarize(
            &errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | "),
        )
    };
    if let Some(count) = header(reply, HEADER_TOKEN_COUNT) {
        text.push_str(&format!(" [{HEADER_TOKEN_COUNT}: {count}]"));
    }
    text
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the error answer carries Walmart's `CONTENT_NOT_FOUND` code.
pub fn is_content_not_found(reply: &Reply) -> bool {
    reply.status == StatusCode::NOT_FOUND
        && parse_errors(&reply.body)
            .iter()
            .any(|e| e.code.starts_with("CONTENT_NOT_FOUND"))
}

/// How a client reaches Walmart. `Debug` never shows the secret.
pub struct WalmartApi {
    http: reqwest::Client,
    base: Url,
    client_id: String,
    client_secret: SecretString,
    service_name: String,
    clock: SharedClock,
    retry: RetryPolicy,
    tokens: TokenCache,
}

impl fmt::Debug for WalmartApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalmartApi")
            .field("base", &self.base.as_str())
            .field("service_name", &self.service_name)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: i64,
}

impl WalmartApi {
    pub fn new(
        base: Url,
        client_id: String,
        client_secret: SecretString,
        service_name: String,
        clock: SharedClock,
        retry: RetryPolicy,
    ) -> Result<Self, UpstreamError> {
        let http = http::client(&format!("nightdesk/{}", env!("CARGO_PKG_VERSION")))?;
        Ok(Self {
            http,
            base,
            client_id,
            client_secret,
            service_name,
            tokens: TokenCache::new(clock.clone()),
            clock,
            retry,
        })
    }

    /// `{base}/{segments…}`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Result<Url, UpstreamError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| UpstreamError::Transport {
                retryable: false,
                delivered: http::Delivery::NotSent,
                message: "the Walmart base URL cannot take a path".to_owned(),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn fetch_token(&self) -> Result<FetchedToken, UpstreamError> {
        let url = self.url(&["v3", "token"])?;
        let request = self
            .http
            .post(url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .header(HEADER_SERVICE_NAME, &self.service_name)
            .header(HEADER_CORRELATION_ID, correlation_id())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials");
        let reply = http::send(request).await?;
        if matches!(
            reply.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(UpstreamError::Credentials(format!(
                "Walmart refused the client id and secret: {}",
                summary(&reply)
            )));
        }
        if !reply.status.is_success() {
            return Err(self.error(&reply));
        }
        let token: TokenResponse = reply.json("Walmart token response")?;
        if token.access_token.trim().is_empty() || token.expires_in <= 0 {
            return Err(UpstreamError::Malformed {
                what: "Walmart token response".to_owned(),
                reason: "empty access_token or expires_in not positive".to_owned(),
            });
        }
        Ok(FetchedToken {
            token: SecretString::from(token.access_token),
            expires_in: Duration::seconds(token.expires_in),
        })
    }

    async fn token(&self) -> Result<SecretString, UpstreamError> {
        self.tokens
            .get(|| http::with_retry(self.retry, TOKEN, || self.fetch_token()))
            .await
    }

    /// Forgets the cached token.
    pub async fn invalidate_token(&self) {
        self.tokens.invalidate().await;
    }

    /// An error answer as an [`UpstreamError::Status`]: Walmart's errors as its summary;
    /// on a 429 the wait from `Retry-After`, else from `X-Next-Replenishment-Time`.
    fn error(&self, reply: &Reply) -> UpstreamError {
        let mut retry_after = http::retry_after(&reply.headers);
        if retry_after.is_none()
            && reply.status == StatusCode::TOO_MANY_REQUESTS
            && let Some(at) =
                header(reply, HEADER_NEXT_REPLENISHMENT).and_then(|v| v.trim().parse::<i64>().ok())
        {
            let wait = at - self.clock.now().timestamp_millis();
            retry_after = u64::try_from(wait).ok().map(StdDuration::from_millis);
        }
        UpstreamError::Status {
            status: reply.status.as_u16(),
            retry_after,
            summary: summary(reply),
        }
    }

    /// One request with the current token; a 401 drops the token and tries once more
    /// with a new one. Any answer is returned, error statuses included.
    async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<Reply, UpstreamError> {
        let mut refreshed = false;
        loop {
            let token = self.token().await?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(HEADER_ACCESS_TOKEN, token.expose_secret())
                .header(HEADER_CORRELATION_ID, correlation_id())
                .header(HEADER_SERVICE_NAME, &self.service_name)
                .header(ACCEPT, "application/json");
            if let Some(body) = body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            let reply = http::send(request).await?;
            if reply.status == StatusCode::UNAUTHORIZED && !refreshed {
                refreshed = true;
                self.tokens.invalidate().await;
                continue;
            }
            return Ok(reply);
        }
    }

    /// `method url` (with `body` as JSON), 429 and 5xx retried; the 2xx answer, or the
    /// error. `operation` names the call in logs (`walmart.getAllOrders`).
    pub async fn call(
        &self,
        operation: &'static str,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<Reply, UpstreamError> {
        http::with_retry(self.retry, operation, || async {
            let reply = self.send_once(&method, url, body).await?;
            if reply.status.is_success() {
                Ok(reply)
            } else {
                Err(self.error(&reply))
            }
        })
        .await
    }

    /// `method url` with `body` as JSON, sent once: for calls with an effect (cancel,
    /// refund), which must never be repeated in the call, since a 5xx or a timeout may
    /// come after Walmart acted. Only a 401 is sent again, with a new token (a refused
    /// token means nothing was done). The 2xx answer, or the error.
    pub async fn call_once(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<Reply, UpstreamError> {
        let reply = self.send_once(&method, url, body).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(self.error(&reply))
        }
    }

    /// Like [`WalmartApi::call`], but a 404 with Walmart's `CONTENT_NOT_FOUND` is
    /// `Ok(None)`.
    pub async fn call_found(
        &self,
        operation: &'static str,
        method: Method,
        url: &Url,
    ) -> Result<Option<Reply>, UpstreamError> {
        http::with_retry(self.retry, operation, || async {
            let reply = self.send_once(&method, url, None).await?;
            if reply.status.is_success() {
                Ok(Some(reply))
            } else if is_content_not_found(&reply) {
                Ok(None)
            } else {
                Err(self.error(&reply))
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_are_fresh_version_4_guids() {
        let a = correlation_id();
        let b = correlation_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn errors_are_read_in_each_shape_walmart_uses() {
        let item = r#"{"code":"CONTENT_NOT_FOUND.GMP_ORDER_API","field":"data","description":"No order","info":"Requested content could not be found.","severity":"INFO","category":"REQUEST","causes":[{"code":"X","description":"why"}]}"#;
        for body in [
            format!(r#"{{"errors":[{item}]}}"#),
            format!(r#"{{"errors":{{"error":[{item}]}}}}"#),
            format!(r#"{{"error":[{item}]}}"#),
        ] {
            let errors = parse_errors(&body);
            assert_eq!(errors.len(), 1, "{body}");
            let text = errors[0].to_string();
            assert!(
                text.starts_with("CONTENT_NOT_FOUND.GMP_ORDER_API: No order"),
                "{text}"
            );
            assert!(
                text.contains("severity=INFO") && text.contains("cause X why"),
                "{text}"
            );
        }
        assert!(parse_errors("<html>").is_empty());
        assert!(parse_errors(r#"{"errors":[{"message":"no code"}]}"#).is_empty());
    }

    #[test]
    fn debug_shows_no_secret() -> Result<(), UpstreamError> {
        let clock: SharedClock = std::sync::Arc::new(crate::clock::SystemClock);
        let base = Url::parse(DEFAULT_BASE_URL).map_err(|e| UpstreamError::Malformed {
            what: "url".into(),
            reason: e.to_string(),
        })?;
        let api = WalmartApi::new(
            base,
            "id".into(),
            SecretString::from("very-secret-value".to_owned()),
            "svc".into(),
            clock,
            RetryPolicy::fast(),
        )?;
        assert!(!format!("{api:?}").contains("very-secret-value"));
        assert_eq!(
            api.url(&["v3", "orders", "12 3"]).map(|u| u.to_string()),
            Ok("https://marketplace.walmartapis.com/v3/orders/12%203".to_owned())
        );
        Ok(())
    }
}
