//! eBay REST plumbing one seller account shares between the order source and the refund
//! executor: the OAuth user access token (minted from the seller's refresh token at
//! `POST {base}/identity/v1/oauth2/token`, cached until shortly before it expires),
//! authorised calls with one fresh-token retry on a 401, and readable error summaries
//! from eBay's `{"errors":[{errorId, domain, category, message, …}]}` bodies.
//!
//! Neither the client secret, the refresh token nor an access token ever reaches an
//! error, a log line or `Debug` output: token errors keep only OAuth's `error` code and
//! description, API errors only the parsed error list.

use std::sync::Arc;

use chrono::Duration;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::clock::SharedClock;
use crate::http::{self, Reply, RetryPolicy, UpstreamError};
use crate::sources::carriers::token::{FetchedToken, TokenCache};

/// The scope the order source needs (getOrders, getOrder, getShippingFulfillments).
pub const SCOPE_FULFILLMENT: &str = "https://api.ebay.com/oauth/api_scope/sell.fulfillment";
/// The scope issueRefund needs (the contract's `security` of that operation).
pub const SCOPE_FINANCES: &str = "https://api.ebay.com/oauth/api_scope/sell.finances";

/// OAuth error codes no retry will fix.
const CREDENTIAL_ERRORS: &[&str] = &[
    "invalid_grant",
    "invalid_client",
    "unauthorized_client",
    "invalid_scope",
    "access_denied",
];

/// What eBay issued the application for the seller. `Debug` is by hand: secrets masked.
#[derive(Clone)]
pub struct EbayCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
}

impl std::fmt::Debug for EbayCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbayCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("refresh_token", &"***")
            .finish()
    }
}

/// One seller account's client: base URL, token cache, retry policy.
pub struct EbayApi {
    http: reqwest::Client,
    base: Url,
    credentials: EbayCredentials,
    scopes: Vec<String>,
    tokens: TokenCache,
    retry: RetryPolicy,
}

impl std::fmt::Debug for EbayApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbayApi")
            .field("base", &self.base.as_str())
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: i64,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// eBay's error container (`errors`, or `warnings` on a 2xx).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default)]
    pub errors: Vec<ApiError>,
}

/// One entry of the contract's `Error` schema; every field optional, so a body that only
/// half follows it still gives a summary.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    #[serde(default)]
    pub error_id: Option<i64>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub long_message: Option<String>,
}

/// `30830 API_FULFILLMENT/REQUEST: message; …`, at most 300 characters.
pub fn describe(errors: &[ApiError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| {
            let id = e.error_id.map(|i| i.to_string()).unwrap_or_default();
            let place = [e.domain.as_deref(), e.category.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("/");
            let message = e
                .message
                .as_deref()
                .or(e.long_message.as_deref())
                .unwrap_or("");
            let head = format!("{id} {place}").trim().to_owned();
            if head.is_empty() {
                message.to_owned()
            } else {
                format!("{head}: {message}")
            }
        })
        .collect();
    http::summarize(&parts.join("; "))
}

impl EbayApi {
    pub fn new(
        base: Url,
        credentials: EbayCredentials,
        scopes: Vec<String>,
        clock: SharedClock,
        retry: RetryPolicy,
    ) -> Result<Arc<Self>, UpstreamError> {
        let http = http::client(concat!("nightdesk/", env!("CARGO_PKG_VERSION")))?;
        Ok(Arc::new(Self {
            http,
            base,
            credentials,
            scopes,
            tokens: TokenCache::new(clock),
            retry,
        }))
    }

    /// `{base}/<segments…>`; each segment percent-encoded, so an id cannot change the path.
    pub fn url(&self, segments: &[&str]) -> Result<Url, UpstreamError> {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| UpstreamError::Malformed {
                    what: "eBay base URL".into(),
                    reason: "not a base URL".into(),
                })?;
            path.pop_if_empty();
            path.extend(segments);
        }
        Ok(url)
    }

    /// A valid access token, cached or freshly minted (retried as `ebay.token`).
    pub async fn access_token(&self) -> Result<SecretString, UpstreamError> {
        self.tokens
            .get(|| http::with_retry(self.retry, "ebay.token", || self.mint()))
            .await
    }

    async fn mint(&self) -> Result<FetchedToken, UpstreamError> {
        let url = self.url(&["identity", "v1", "oauth2", "token"])?;
        let scope = self.scopes.join(" ");
        let form = [
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                self.credentials.refresh_token.expose_secret(),
            ),
            ("scope", scope.as_str()),
        ];
        let request = self
            .http
            .post(url)
            .basic_auth(
                &self.credentials.client_id,
                Some(self.credentials.client_secret.expose_secret()),
            )
            .form(&form);
        let reply = http::send(request).await?;
        if reply.status.is_success() {
            let parsed: TokenResponse = reply.json("eBay token response")?;
            if parsed.access_token.is_empty() || parsed.expires_in <= 0 {
                return Err(UpstreamError::Malformed {
                    what: "eBay token response".into(),
                    reason: "empty access_token or non-positive expires_in".into(),
                });
            }
            return Ok(FetchedToken {
                token: SecretString::from(parsed.access_token),
                expires_in: Duration::seconds(parsed.expires_in),
            });
        }
        // Only the OAuth code and description are kept: the body could echo a secret.
        let Ok(error) = serde_json::from_str::<TokenError>(&reply.body) else {
            return Err(reply.error("eBay OAuth error without a readable body"));
        };
        let text = match &error.error_description {
            Some(description) => format!("{}: {}", error.error, http::summarize(description)),
            None => error.error.clone(),
        };
        if CREDENTIAL_ERRORS.contains(&error.error.as_str()) {
            return Err(UpstreamError::Credentials(text));
        }
        Err(reply.error(&text))
    }

    /// One authorised call, sent once: the 2xx reply, or the error status with eBay's
    /// error list as its text. A 401 drops the cached token and sends once more with a
    /// fresh one (a 401 is a refusal before any effect, so even a write may be resent).
    pub async fn call_once(
        &self,
        method: Method,
        url: &Url,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, UpstreamError> {
        let mut refreshed = false;
        loop {
            let token = self.access_token().await?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose_secret())
                .header(reqwest::header::ACCEPT, "application/json");
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let reply = http::send(request).await?;
            if reply.status.is_success() {
                return Ok(reply);
            }
            if reply.status == StatusCode::UNAUTHORIZED && !refreshed {
                refreshed = true;
                self.tokens.invalidate().await;
                continue;
            }
            return Err(api_error(reply.status, &reply.headers, &reply.body));
        }
    }

    /// A read: [`Self::call_once`] retried (429, 5xx, transport) per the retry policy.
    pub async fn get(
        &self,
        operation: &str,
        url: &Url,
        query: &[(&str, String)],
    ) -> Result<Reply, UpstreamError> {
        http::with_retry(self.retry, operation, || {
            self.call_once(Method::GET, url, query, None)
        })
        .await
    }
}

/// An error status with the parsed error list as its (secret-free) text.
pub fn api_error(status: StatusCode, headers: &HeaderMap, body: &str) -> UpstreamError {
    let summary = match serde_json::from_str::<ErrorBody>(body) {
        Ok(parsed) if !parsed.errors.is_empty() => describe(&parsed.errors),
        _ => "eBay error without a readable error list".to_owned(),
    };
    UpstreamError::status(status, headers, &summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lists_are_summarised_by_id_domain_category_and_message() {
        let body = r#"{"errors":[{"errorId":30830,"domain":"API_FULFILLMENT","category":"REQUEST","message":"Time range too long","parameters":[{"name":"x","value":"y"}]}]}"#;
        let error = api_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), body);
        assert_eq!(
            error.to_string(),
            "HTTP 400: 30830 API_FULFILLMENT/REQUEST: Time range too long"
        );
        assert!(!error.is_retryable());
        let opaque = api_error(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            "<html>Bearer v^1.1#secret</html>",
        );
        assert!(opaque.is_retryable());
        assert!(!opaque.to_string().contains("secret"));
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let credentials = EbayCredentials {
            client_id: "id".into(),
            client_secret: SecretString::from("client-secret-value".to_owned()),
            refresh_token: SecretString::from("refresh-token-value".to_owned()),
        };
        let text = format!("{credentials:?}");
        assert!(!text.contains("client-secret-value") && !text.contains("refresh-token-value"));
    }

    #[test]
    fn urls_append_encoded_segments_to_the_base_path() -> Result<(), Box<dyn std::error::Error>> {
        let credentials = EbayCredentials {
            client_id: "id".into(),
            client_secret: SecretString::from(String::new()),
            refresh_token: SecretString::from(String::new()),
        };
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let api = EbayApi::new(
            Url::parse("http://127.0.0.1:9/ebay/")?,
            credentials,
            vec![],
            clock,
            RetryPolicy::fast(),
        )?;
        let url = api.url(&["sell", "fulfillment", "v1", "order", "12-3/../x"])?;
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/ebay/sell/fulfillment/v1/order/12-3%2F..%2Fx"
        );
        Ok(())
    }
}
