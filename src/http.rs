//! The HTTP layer every connector and channel shares: one client builder (rustls,
//! timeouts, a User-Agent), one error type that says whether a failure is worth retrying,
//! and one retry helper (backon, honouring `Retry-After`).
//!
//! Errors built here never carry a URL or a request body: webhook URLs and tokens are
//! secrets, and reqwest errors are stripped of their URL before they are kept.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// How long one request may take, connecting included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A `Retry-After` longer than this is not waited for in-call; the caller's schedule
/// (the next poll, the outbox's backoff) takes over.
pub const MAX_IN_CALL_WAIT: Duration = Duration::from_secs(60);

/// Build a client for one upstream.
pub fn client(user_agent: &str) -> Result<reqwest::Client, UpstreamError> {
    reqwest::Client::builder()
        .user_agent(user_agent)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| UpstreamError::Transport {
            retryable: false,
            delivered: Delivery::NotSent,
            message: e.without_url().to_string(),
        })
}

/// An upstream's answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// Parse a 2xx body; a body that breaks the contract is `Malformed`, named by `what`.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, UpstreamError> {
        serde_json::from_str(&self.body).map_err(|e| UpstreamError::Malformed {
            what: what.to_owned(),
            reason: e.to_string(),
        })
    }

    /// This answer as an error status with `summary` (secret-free) as its text.
    pub fn error(&self, summary: &str) -> UpstreamError {
        UpstreamError::status(self.status, &self.headers, summary)
    }
}

/// Send a request and read the whole answer, whatever its status.
pub async fn send(request: reqwest::RequestBuilder) -> Result<Reply, UpstreamError> {
    let response = request.send().await.map_err(UpstreamError::from_reqwest)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.map_err(UpstreamError::from_reqwest)?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Whether a failed request may have been delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// It never left (connect refused, request not built).
    NotSent,
    /// It may have arrived (timeout, reset, body error).
    Maybe,
}

/// A failed call to an upstream, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No usable answer: connect failure, timeout, reset.
    #[error("transport error: {message}")]
    Transport {
        retryable: bool,
        /// Whether the request may have reached the upstream before the failure.
        delivered: Delivery,
        message: String,
    },
    /// The upstream answered with an error status.
    #[error("HTTP {status}{}: {summary}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        summary: String,
    },
    /// The upstream answered 2xx with a body that does not follow its contract.
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    /// Credentials were refused (LWA invalid_grant, invalid_client, …): no retry helps.
    #[error("credentials refused: {0}")]
    Credentials(String),
}

impl UpstreamError {
    /// 429, 5xx, timeouts and connection failures may pass; anything else will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Transport { retryable, .. } => *retryable,
            UpstreamError::Status { status, .. } => *status == 429 || *status >= 500,
            UpstreamError::Malformed { .. } | UpstreamError::Credentials(_) => false,
        }
    }

    /// Whether the upstream may have acted on the request despite the error: what
    /// decides between a retry and `unknown` for an at-most-once action. Connect
    /// failures, 429 and 503 (shed before processing) and 4xx did not act; a timeout or
    /// reset after sending, another 5xx, or a 2xx with an unreadable body may have.
    pub fn may_have_acted(&self) -> bool {
        match self {
            UpstreamError::Transport { delivered, .. } => *delivered == Delivery::Maybe,
            UpstreamError::Status { status, .. } => *status >= 500 && *status != 503,
            UpstreamError::Malformed { .. } => true,
            UpstreamError::Credentials(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn from_reqwest(e: reqwest::Error) -> Self {
        let retryable = e.is_timeout() || e.is_connect() || e.is_request() || e.is_body();
        let delivered = if e.is_connect() || e.is_builder() {
            Delivery::NotSent
        } else {
            Delivery::Maybe
        };
        UpstreamError::Transport {
            retryable,
            delivered,
            message: e.without_url().to_string(),
        }
    }

    /// An error status with a short, secret-free summary of the body.
    pub fn status(status: StatusCode, headers: &HeaderMap, body: &str) -> Self {
        UpstreamError::Status {
            status: status.as_u16(),
            retry_after: retry_after(headers),
            summary: summarize(body),
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare on these APIs and is ignored).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// At most 300 characters of a body, on one line.
pub fn summarize(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// In-call retries: a few quick attempts for what is retryable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retries: 4,
        }
    }
}

impl RetryPolicy {
    /// Fast retries for tests against local fakes.
    pub fn fast() -> Self {
        Self {
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            max_retries: 3,
        }
    }
}

/// Run `call`, retrying what is retryable with exponential backoff and jitter; a
/// `Retry-After` from the upstream replaces the computed delay.
pub async fn with_retry<T, F, Fut>(
    policy: RetryPolicy,
    operation: &str,
    call: F,
) -> Result<T, UpstreamError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.max_retries)
        .with_jitter();
    call.retry(backoff)
        .when(|e: &UpstreamError| e.is_retryable() && e.retry_after().is_none_or(|d| d <= MAX_IN_CALL_WAIT))
        .adjust(|e: &UpstreamError, delay| delay.map(|d| e.retry_after().unwrap_or(d)))
        .notify(|e: &UpstreamError, delay| {
            tracing::warn!(operation, error = %e, delay_ms = delay.as_millis() as u64, "Upstream call failed; retrying.");
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn classification() {
        let s = |status| UpstreamError::Status {
            status,
            retry_after: None,
            summary: String::new(),
        };
        assert!(s(429).is_retryable());
        assert!(s(503).is_retryable());
        assert!(!s(400).is_retryable());
        assert!(!s(403).is_retryable());
        assert!(!UpstreamError::Credentials("invalid_grant".into()).is_retryable());
    }

    #[test]
    fn summaries_are_short_and_single_line() {
        let long = "x\n".repeat(400);
        let s = summarize(&long);
        assert!(!s.contains('\n'));
        assert!(s.chars().count() <= 301);
    }

    #[tokio::test]
    async fn retries_until_success_and_stops_on_permanent_errors() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let result = with_retry(RetryPolicy::fast(), "test", move || {
            let c = c.clone();
            async move {
                match c.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(UpstreamError::Status {
                        status: 429,
                        retry_after: Some(Duration::from_millis(1)),
                        summary: String::new(),
                    }),
                    _ => Ok(7),
                }
            }
        })
        .await;
        assert_eq!(result, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let result: Result<(), _> = with_retry(RetryPolicy::fast(), "test", move || {
            c.fetch_add(1, Ordering::SeqCst);
            async {
                Err(UpstreamError::Status {
                    status: 400,
                    retry_after: None,
                    summary: String::new(),
                })
            }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
