//! OAuth client-credentials access tokens (UPS, FedEx, USPS), cached until shortly
//! before they expire: the carriers throttle or block clients that ask for a token per
//! call. One fetch at a time; callers waiting meanwhile get its token. A token refused
//! mid-run (401) is dropped with [`TokenCache::invalidate`] and fetched again once.
//!
//! Tokens never reach a log line, an error or `Debug` output.

use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use tokio::sync::Mutex;

use super::{Carrier, CarrierError};
use crate::clock::SharedClock;
use crate::http::{self, RetryPolicy, UpstreamError};

/// A token is renewed this long before the carrier says it expires.
const RENEW_EARLY: Duration = Duration::seconds(60);

/// A fetched token and how long the carrier says it lives.
pub struct FetchedToken {
    pub token: SecretString,
    pub expires_in: Duration,
}

pub struct TokenCache {
    clock: SharedClock,
    current: Mutex<Option<(SecretString, DateTime<Utc>)>>,
}

impl TokenCache {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            current: Mutex::new(None),
        }
    }

    /// The cached token, or a new one from `fetch` when there is none or it is about to
    /// expire.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<SecretString, UpstreamError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<FetchedToken, UpstreamError>>,
    {
        let mut current = self.current.lock().await;
        if let Some((token, expires)) = current.as_ref()
            && self.clock.now() + RENEW_EARLY < *expires
        {
            return Ok(token.clone());
        }
        let fetched = fetch().await?;
        let expires = self.clock.now() + fetched.expires_in;
        *current = Some((fetched.token.clone(), expires));
        Ok(fetched.token)
    }

    /// `carrier`'s token: [`TokenCache::get`] with `fetch` retried per `retry`; a failure
    /// is `carrier`'s `operation` (`token`, DPD's `login`), logged as `<carrier>.<operation>`.
    pub async fn get_for<F, Fut>(
        &self,
        carrier: Carrier,
        operation: &'static str,
        retry: RetryPolicy,
        fetch: F,
    ) -> Result<SecretString, CarrierError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<FetchedToken, UpstreamError>>,
    {
        let logged_as = format!("{carrier}.{operation}");
        self.get(|| http::with_retry(retry, &logged_as, fetch))
            .await
            .map_err(CarrierError::upstream(carrier, operation))
    }

    /// Forgets the token (the carrier answered 401 with it).
    pub async fn invalidate(&self) {
        *self.current.lock().await = None;
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use secrecy::ExposeSecret;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_token_is_reused_until_shortly_before_it_expires() {
        let clock = ManualClock::new(DateTime::<Utc>::UNIX_EPOCH);
        let cache = TokenCache::new(Arc::new(clock.clone()));
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            Ok(FetchedToken {
                token: SecretString::from(format!("token-{n}")),
                expires_in: Duration::seconds(3600),
            })
        };
        let first = cache.get(fetch).await.map(|t| t.expose_secret().to_owned());
        clock.advance(Duration::seconds(3000));
        let second = cache.get(fetch).await.map(|t| t.expose_secret().to_owned());
        assert_eq!(
            (first.clone(), second),
            (Ok("token-0".into()), Ok("token-0".into()))
        );
        clock.advance(Duration::seconds(541));
        let third = cache.get(fetch).await.map(|t| t.expose_secret().to_owned());
        assert_eq!(third, Ok("token-1".into()));
        cache.invalidate().await;
        let fourth = cache.get(fetch).await.map(|t| t.expose_secret().to_owned());
        assert_eq!(fourth, Ok("token-2".into()));
        assert!(!format!("{cache:?}").contains("token-"));
    }
}
