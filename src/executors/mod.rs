//! Executors: perform the actions the outbox hands out, one module per upstream. An
//! executor gets one claimed action at a time with what earlier attempts recorded, acts,
//! and says how it went; the outbox owns leases, retries, grouping and the audit log.
//!
//! Every action kind has a safety class ([`Safety`]) that decides what the outbox may do
//! when an attempt ends without a clear answer. An executor must never resubmit an
//! effect whose first submission may have landed unless it has read back that it did
//! not (verify-then-retry), and must never resubmit an at-most-once effect at all.

pub mod amazon;
pub mod ebay;
pub mod mail;
pub mod reply;
pub mod shopify;
pub mod walmart;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::http::UpstreamError;
use crate::model::{ActionRequest, StoredOrder};
use crate::store::{ClaimedAction, Store, StoreError};

/// What may be done when an attempt's outcome is unclear (research/reliability.md §1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Safety {
    /// Low harm or idempotent upstream: retry with the same key (chat alerts, tags).
    Retry,
    /// Read back before resubmitting (Amazon feeds keep their feedId and are checked).
    VerifyThenRetry,
    /// Never resubmitted once it may have been sent: an unclear send becomes `unknown`
    /// (Amazon buyer messages).
    AtMostOnce,
}

impl Safety {
    pub fn as_str(self) -> &'static str {
        match self {
            Safety::Retry => "retry",
            Safety::VerifyThenRetry => "verify-then-retry",
            Safety::AtMostOnce => "at-most-once",
        }
    }
}

/// Progress key set just before an at-most-once effect is requested.
pub const SENDING: &str = "sending";

/// One attempt at one action.
pub struct Attempt<'a> {
    pub claim: &'a ClaimedAction,
    pub request: &'a ActionRequest,
    /// The order the action is about, as last stored, if it is about one.
    pub order: Option<&'a StoredOrder>,
    pub now: DateTime<Utc>,
    store: &'a dyn Store,
    /// What earlier attempts and this one recorded.
    progress: serde_json::Value,
}

impl<'a> Attempt<'a> {
    pub fn new(
        claim: &'a ClaimedAction,
        request: &'a ActionRequest,
        order: Option<&'a StoredOrder>,
        now: DateTime<Utc>,
        store: &'a dyn Store,
    ) -> Self {
        Self {
            claim,
            request,
            order,
            now,
            store,
            progress: claim
                .progress
                .clone()
                .filter(serde_json::Value::is_object)
                .unwrap_or_else(|| serde_json::json!({})),
        }
    }

    /// The store, for what an executor reads or records beyond its progress.
    pub fn store(&self) -> &'a dyn Store {
        self.store
    }

    /// The parcels of the order the action is about, as last stored.
    pub async fn shipments(&self) -> Result<Vec<crate::model::Shipment>, crate::store::StoreError> {
        match self.order {
            Some(order) => self.store.shipments(&order.order.subject()).await,
            None => Ok(Vec::new()),
        }
    }

    /// A value earlier attempts recorded under `key`.
    pub fn progress(&self, key: &str) -> Option<&serde_json::Value> {
        self.progress.get(key).filter(|v| !v.is_null())
    }

    /// Durably record `key = value` (merged into what earlier attempts recorded) before
    /// going on. Fails if the lease was taken over, so a stale worker stops here.
    pub async fn record(&mut self, key: &str, value: serde_json::Value) -> Result<(), ActionError> {
        self.record_all(&[(key, value)]).await
    }

    /// Several keys in one durable write (`null` removes a key).
    pub async fn record_all(
        &mut self,
        entries: &[(&str, serde_json::Value)],
    ) -> Result<(), ActionError> {
        let mut progress = self.progress.clone();
        if let Some(map) = progress.as_object_mut() {
            for (key, value) in entries {
                if value.is_null() {
                    map.remove(*key);
                } else {
                    map.insert((*key).to_owned(), value.clone());
                }
            }
        }
        self.store
            .save_progress(self.claim, &progress, self.now)
            .await
            .map_err(ActionError::Store)?;
        self.progress = progress;
        Ok(())
    }
}

/// How an attempt went, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Performed {
    /// Done; a short, secret-free receipt for the audit log.
    Done(serde_json::Value),
    /// Accepted upstream and still being processed (a feed): look again at `at`.
    Wait { at: DateTime<Utc>, note: String },
}

/// Why an attempt did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A call failed; the outbox decides from the error and the safety class whether
    /// to retry, fail or call it unknown.
    #[error("{during}: {error}")]
    Upstream {
        during: &'static str,
        error: UpstreamError,
    },
    /// Refused before any call, or refused by the upstream for good.
    #[error("{0}")]
    Permanent(String),
    /// The effect may have happened and cannot be checked: a person must look.
    #[error("{0}")]
    Unknown(String),
    /// Waits for a person (no executor for this kind yet, a missing setting).
    #[error("{0}")]
    Held(String),
    #[error("store: {0}")]
    Store(StoreError),
    /// A failpoint stopped the attempt here, as a crash would (tests only).
    #[error("simulated crash at {0}")]
    Crashed(&'static str),
}

impl ActionError {
    pub fn upstream(during: &'static str) -> impl FnOnce(UpstreamError) -> ActionError {
        move |error| ActionError::Upstream { during, error }
    }
}

/// Performs the actions of one upstream account.
#[async_trait]
pub trait ActionExecutor: Send + Sync {
    /// The safety class of `request` on this upstream.
    fn safety(&self, request: &ActionRequest) -> Safety;

    async fn perform(&self, attempt: &mut Attempt<'_>) -> Result<Performed, ActionError>;
}
