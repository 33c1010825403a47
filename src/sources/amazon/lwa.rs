//! Login with Amazon: trade the seller's refresh token for an access token
//! (`grant_type=refresh_token`), and reuse it until shortly before it expires.
//! Tokens and client secrets are `SecretString`s; nothing here logs them.

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use crate::clock::SharedClock;
use crate::http::{self, RetryPolicy, UpstreamError};

/// Refresh this long before `expires_in` runs out, so a token never expires mid-poll.
const EXPIRY_MARGIN: Duration = Duration::seconds(60);

/// LWA error codes that no retry will fix.
const CREDENTIAL_ERRORS: &[&str] = &[
    "invalid_grant",
    "invalid_client",
    "unauthorized_client",
    "access_denied",
    "invalid_scope",
];

/// `Debug` is not derived: the secrets stay out of every log line.
#[derive(Clone)]
pub struct LwaCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
}

struct CachedToken {
    token: SecretString,
    expires_at: DateTime<Utc>,
}

pub struct LwaClient {
    http: reqwest::Client,
    endpoint: Url,
    credentials: LwaCredentials,
    clock: SharedClock,
    retry: RetryPolicy,
    cached: Mutex<Option<CachedToken>>,
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

impl LwaClient {
    pub fn new(
        http: reqwest::Client,
        endpoint: Url,
        credentials: LwaCredentials,
        clock: SharedClock,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            http,
            endpoint,
            credentials,
            clock,
            retry,
            cached: Mutex::new(None),
        }
    }

    /// A valid access token, from the cache or freshly requested.
    pub async fn access_token(&self) -> Result<SecretString, UpstreamError> {
        // Holding the lock across the request makes concurrent callers wait for one
        // refresh instead of each asking LWA.
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && self.clock.now() < token.expires_at
        {
            return Ok(token.token.clone());
        }
        let fresh = http::with_retry(self.retry, "lwa.token", || self.request()).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Forget the cached token (the API refused it before its expiry).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn request(&self) -> Result<CachedToken, UpstreamError> {
        let form = [
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                self.credentials.refresh_token.expose_secret(),
            ),
            ("client_id", self.credentials.client_id.as_str()),
            (
                "client_secret",
                self.credentials.client_secret.expose_secret(),
            ),
        ];
        let requested_at = self.clock.now();
        let reply = http::send(self.http.post(self.endpoint.clone()).form(&form)).await?;
        if reply.status.is_success() {
            let parsed: TokenResponse = reply.json("LWA token response")?;
            if parsed.access_token.is_empty() || parsed.expires_in <= 0 {
                return Err(UpstreamError::Malformed {
                    what: "LWA token response".into(),
                    reason: "empty access_token or non-positive expires_in".into(),
                });
            }
            let lifetime = Duration::seconds(parsed.expires_in);
            return Ok(CachedToken {
                token: SecretString::from(parsed.access_token),
                expires_at: requested_at + lifetime - EXPIRY_MARGIN.min(lifetime / 2),
            });
        }
        // Only the error code and description are kept: the body could echo a token.
        let Ok(error) = serde_json::from_str::<TokenError>(&reply.body) else {
            return Err(reply.error("LWA error without a readable body"));
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
}
