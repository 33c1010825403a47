//! The Admin GraphQL client one shop's source and executor share: `POST
//! {base}/admin/api/{version}/graphql.json` with `X-Shopify-Access-Token`, the
//! calculated-cost pacer, and the mapping of Shopify's answers onto [`UpstreamError`].
//!
//! Shopify limits GraphQL by query cost, per app and shop: a leaky bucket of
//! `maximumAvailable` points refilled at `restoreRate` points a second. Each answer states
//! the bucket in `extensions.cost.throttleStatus` and the query's `requestedQueryCost`.
//! The [`Pacer`] keeps the last figures and, before a call, waits until the bucket holds
//! the query's last requested cost, so polling does not run into throttling by design.
//! A `THROTTLED` error (an HTTP 200 with `errors[].extensions.code`) is waited out by the
//! time the restore rate needs and tried again; HTTP 429, 5xx and transport failures go
//! through [`with_retry`].
//!
//! It never puts the access token in a log line, an error or `Debug`, never sleeps
//! holding the pacer's lock, and never turns an unexpected answer into a panic.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use crate::http::{
    MAX_IN_CALL_WAIT, Reply, RetryPolicy, UpstreamError, send, summarize, with_retry,
};

/// How many `THROTTLED` answers one call waits out before giving up (the caller's
/// schedule takes over then).
pub const MAX_THROTTLED: u32 = 5;

/// The cost assumed for a query before Shopify has stated one.
const DEFAULT_COST: f64 = 50.0;

/// `extensions.cost` of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryCost {
    pub requested_query_cost: f64,
    /// `null` on a throttled answer.
    #[serde(default)]
    pub actual_query_cost: Option<f64>,
    pub throttle_status: ThrottleStatus,
}

/// `extensions.cost.throttleStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleStatus {
    pub maximum_available: f64,
    pub currently_available: f64,
    pub restore_rate: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    maximum: f64,
    available: f64,
    restore_rate: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.available = (self.available + elapsed * self.restore_rate).min(self.maximum);
        self.at = now;
    }
}

#[derive(Debug, Default)]
struct PacerState {
    /// Unknown until the first answer states it.
    bucket: Option<Bucket>,
    /// The last `requestedQueryCost` per operation.
    costs: HashMap<&'static str, f64>,
}

/// The client side of Shopify's cost bucket (see the module docs).
#[derive(Debug, Default)]
pub struct Pacer {
    state: Mutex<PacerState>,
}

impl Pacer {
    /// How long to wait before `operation` may be sent at `now`; zero means go, and the
    /// cost is then taken from the local bucket so concurrent callers queue up.
    pub fn reserve(&self, operation: &'static str, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let cost = state.costs.get(operation).copied().unwrap_or(DEFAULT_COST);
        let Some(bucket) = state.bucket.as_mut() else {
            return Duration::ZERO;
        };
        bucket.refill(now);
        // A query dearer than the whole bucket can never wait long enough: send it and
        // let Shopify say so.
        let cost = cost.min(bucket.maximum);
        if bucket.available >= cost {
            bucket.available -= cost;
            return Duration::ZERO;
        }
        wait_for(cost - bucket.available, bucket.restore_rate)
    }

    /// Waits until `operation` may be sent.
    pub async fn acquire(&self, operation: &'static str) {
        loop {
            let wait = self.reserve(operation, Instant::now());
            if wait.is_zero() {
                return;
            }
            tracing::debug!(
                operation,
                wait_ms = wait.as_millis() as u64,
                "Shopify cost bucket low; waiting."
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes in what an answer stated about the bucket and the query's cost.
    pub fn observe(&self, operation: &'static str, cost: &QueryCost, now: Instant) {
        let status = cost.throttle_status;
        let sane = |v: f64| v.is_finite() && v >= 0.0;
        if !(sane(status.maximum_available)
            && sane(status.currently_available)
            && status.restore_rate.is_finite()
            && status.restore_rate > 0.0
            && sane(cost.requested_query_cost))
        {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.costs.insert(operation, cost.requested_query_cost);
        state.bucket = Some(Bucket {
            maximum: status.maximum_available,
            available: status.currently_available.min(status.maximum_available),
            restore_rate: status.restore_rate,
            at: now,
        });
    }
}

/// The time `points` take to restore at `rate` points a second (at least 10 ms, at most
/// [`MAX_IN_CALL_WAIT`]).
fn wait_for(points: f64, rate: f64) -> Duration {
    let seconds = if rate > 0.0 { points / rate } else { 1.0 };
    Duration::from_secs_f64(seconds.clamp(0.01, MAX_IN_CALL_WAIT.as_secs_f64()))
}

/// One GraphQL error of `errors[]`.
#[derive(Debug, Clone, Deserialize)]
struct GraphqlError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    extensions: Option<ErrorExtensions>,
}

#[derive(Debug, Clone, Deserialize)]
struct ErrorExtensions {
    #[serde(default)]
    code: Option<String>,
}

impl GraphqlError {
    fn code(&self) -> Option<&str> {
        self.extensions.as_ref()?.code.as_deref()
    }
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    errors: Option<Vec<GraphqlError>>,
    #[serde(default)]
    extensions: Option<Extensions>,
}

#[derive(Debug, Deserialize)]
struct Extensions {
    #[serde(default)]
    cost: Option<QueryCost>,
}

/// The Admin GraphQL API of one shop.
pub struct ShopifyApi {
    http: reqwest::Client,
    endpoint: Url,
    token: SecretString,
    retry: RetryPolicy,
    pacer: Pacer,
}

// By hand: the access token has no place in logs.
impl std::fmt::Debug for ShopifyApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopifyApi")
            .field("endpoint", &self.endpoint.as_str())
            .field("token", &"***")
            .finish()
    }
}

impl ShopifyApi {
    /// A client for `{base_url}/admin/api/{api_version}/graphql.json`.
    pub fn new(
        base_url: &Url,
        api_version: &str,
        token: SecretString,
        retry: RetryPolicy,
    ) -> Result<Self, UpstreamError> {
        let bad = |reason: String| UpstreamError::Transport {
            retryable: false,
            delivered: crate::http::Delivery::NotSent,
            message: reason,
        };
        let version_ok = !api_version.is_empty()
            && api_version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !version_ok {
            return Err(bad(format!("invalid Shopify API version {api_version:?}")));
        }
        let mut endpoint = base_url.clone();
        endpoint
            .path_segments_mut()
            .map_err(|()| bad("the Shopify base URL cannot take a path".to_owned()))?
            .pop_if_empty()
            .extend(["admin", "api", api_version, "graphql.json"]);
        Ok(Self {
            http: crate::http::client(concat!("nightdesk/", env!("CARGO_PKG_VERSION")))?,
            endpoint,
            token,
            retry,
            pacer: Pacer::default(),
        })
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// Runs `query` with `variables` and returns `data` read as `T`. `operation` names
    /// the query for the pacer and the logs.
    pub async fn execute<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        query: &str,
        variables: Value,
    ) -> Result<T, UpstreamError> {
        self.run(operation, query, variables, self.retry).await
    }

    /// Like [`Self::execute`], but an answer that is not clear (HTTP 5xx, a timeout, a
    /// reset) is returned at once instead of sending the request again: for a mutation
    /// without an idempotency key, whose effect must be read back before any resend.
    /// `THROTTLED` is still waited out (Shopify ran nothing then).
    pub async fn execute_once<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        query: &str,
        variables: Value,
    ) -> Result<T, UpstreamError> {
        let once = RetryPolicy {
            max_retries: 0,
            ..self.retry
        };
        self.run(operation, query, variables, once).await
    }

    async fn run<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        query: &str,
        variables: Value,
        retry: RetryPolicy,
    ) -> Result<T, UpstreamError> {
        let body = serde_json::json!({ "query": query, "variables": variables });
        let mut throttled = 0;
        loop {
            self.pacer.acquire(operation).await;
            let reply = with_retry(retry, operation, || async {
                let request = self
                    .http
                    .post(self.endpoint.clone())
                    .header("X-Shopify-Access-Token", self.token.expose_secret())
                    .json(&body);
                let reply = send(request).await?;
                check_status(&reply)?;
                Ok(reply)
            })
            .await?;
            let envelope: Envelope = reply.json(&format!("Shopify {operation} answer"))?;
            let cost = envelope.extensions.as_ref().and_then(|e| e.cost);
            if let Some(cost) = &cost {
                self.pacer.observe(operation, cost, Instant::now());
            }
            let errors = envelope.errors.unwrap_or_default();
            if errors.iter().any(|e| e.code() == Some("THROTTLED")) {
                throttled += 1;
                let wait = cost.map_or(Duration::from_secs(1), |c| {
                    wait_for(
                        c.requested_query_cost - c.throttle_status.currently_available,
                        c.throttle_status.restore_rate,
                    )
                });
                if throttled > MAX_THROTTLED {
                    return Err(UpstreamError::Status {
                        status: 429,
                        retry_after: Some(wait),
                        summary: format!("{operation}: THROTTLED {throttled} times running"),
                    });
                }
                tracing::warn!(
                    operation,
                    wait_ms = wait.as_millis() as u64,
                    "Shopify answered THROTTLED; waiting for the bucket."
                );
                // The pacer now knows the bucket is low and waits the restore time.
                if cost.is_none() {
                    tokio::time::sleep(wait).await;
                }
                continue;
            }
            if !errors.is_empty() {
                return Err(graphql_error(operation, &errors));
            }
            let Some(data) = envelope.data.filter(|d| !d.is_null()) else {
                return Err(UpstreamError::Malformed {
                    what: format!("Shopify {operation} answer"),
                    reason: "neither data nor errors".to_owned(),
                });
            };
            return serde_json::from_value(data).map_err(|e| UpstreamError::Malformed {
                what: format!("Shopify {operation} data"),
                reason: e.to_string(),
            });
        }
    }
}

/// Non-2xx answers as errors: 401/403 refuse the token, the rest keep their status
/// (429 and 5xx are retried by [`with_retry`]).
fn check_status(reply: &Reply) -> Result<(), UpstreamError> {
    let status = reply.status;
    if status.is_success() {
        return Ok(());
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(UpstreamError::Credentials(format!(
            "Shopify HTTP {}: {}",
            status.as_u16(),
            summarize(&reply.body)
        )));
    }
    Err(reply.error(&reply.body))
}

/// A GraphQL `errors[]` answered with HTTP 200 (other than `THROTTLED`): `ACCESS_DENIED`
/// refuses the token's scopes, `INTERNAL_SERVER_ERROR` is a 500 (retryable, and a
/// mutation may have acted), anything else is a refused request, reported as 400.
fn graphql_error(operation: &str, errors: &[GraphqlError]) -> UpstreamError {
    let text = errors
        .iter()
        .map(|e| match e.code() {
            Some(code) => format!("{code}: {}", e.message),
            None => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let summary = summarize(&format!("{operation}: GraphQL errors (HTTP 200): {text}"));
    if errors.iter().any(|e| e.code() == Some("ACCESS_DENIED")) {
        return UpstreamError::Credentials(summary);
    }
    let status = if errors
        .iter()
        .any(|e| e.code() == Some("INTERNAL_SERVER_ERROR"))
    {
        500
    } else {
        400
    };
    UpstreamError::Status {
        status,
        retry_after: None,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(requested: f64, available: f64) -> QueryCost {
        QueryCost {
            requested_query_cost: requested,
            actual_query_cost: Some(requested),
            throttle_status: ThrottleStatus {
                maximum_available: 1000.0,
                currently_available: available,
                restore_rate: 50.0,
            },
        }
    }

    #[test]
    fn the_pacer_goes_until_it_knows_the_bucket() {
        let pacer = Pacer::default();
        assert_eq!(pacer.reserve("orders", Instant::now()), Duration::ZERO);
    }

    #[test]
    fn the_pacer_waits_for_the_restore_rate_when_the_bucket_is_low() {
        let pacer = Pacer::default();
        let now = Instant::now();
        pacer.observe("orders", &cost(300.0, 100.0), now);
        // 200 points missing at 50 a second: four seconds.
        let wait = pacer.reserve("orders", now);
        assert!((wait.as_secs_f64() - 4.0).abs() < 0.01, "waited {wait:?}");
        // Four seconds later the bucket holds 300 and the call goes, taking them.
        let later = now + Duration::from_secs(4);
        assert_eq!(pacer.reserve("orders", later), Duration::ZERO);
        assert!(pacer.reserve("orders", later) > Duration::from_secs(5));
    }

    #[test]
    fn nonsense_figures_are_ignored() {
        let pacer = Pacer::default();
        let mut bad = cost(10.0, 0.0);
        bad.throttle_status.restore_rate = 0.0;
        pacer.observe("orders", &bad, Instant::now());
        assert_eq!(pacer.reserve("orders", Instant::now()), Duration::ZERO);
    }

    #[test]
    fn graphql_errors_are_classified() {
        let e = |code: &str| GraphqlError {
            message: "m".into(),
            extensions: Some(ErrorExtensions {
                code: Some(code.into()),
            }),
        };
        assert!(matches!(
            graphql_error("orders", &[e("ACCESS_DENIED")]),
            UpstreamError::Credentials(_)
        ));
        assert!(graphql_error("orders", &[e("INTERNAL_SERVER_ERROR")]).is_retryable());
        let refused = graphql_error("orders", &[e("undefinedField")]);
        assert!(!refused.is_retryable());
        assert!(refused.to_string().contains("undefinedField"));
    }

    #[test]
    fn the_endpoint_follows_base_and_version_and_debug_hides_the_token()
    -> Result<(), Box<dyn std::error::Error>> {
        let base = Url::parse("http://127.0.0.1:9/shopify")?;
        let api = ShopifyApi::new(
            &base,
            "2026-01",
            SecretString::from("shpat_secret_value"),
            RetryPolicy::fast(),
        )?;
        assert_eq!(
            api.endpoint().as_str(),
            "http://127.0.0.1:9/shopify/admin/api/2026-01/graphql.json"
        );
        assert!(!format!("{api:?}").contains("shpat_secret_value"));
        assert!(
            ShopifyApi::new(&base, "../x", SecretString::from("t"), RetryPolicy::fast()).is_err()
        );
        Ok(())
    }
}
