//! Fault injection: a queue of planned misbehaviours (throttling, server errors, slow or
//! truncated answers) that matching requests receive instead of the normal answer.
//!
//! Faults match by operation name: the SP-API `operationId`s (`getOrders`,
//! `getOrderBuyerInfo`, `getOrderAddress`, `createRestrictedDataToken`,
//! `listAllFulfillmentOrders`, `getFulfillmentOrder`, `getPackageTrackingDetails`,
//! `getMessagingActionsForOrder`, `createConfirmOrderDetails`, `createFeedDocument`,
//! `createFeed`, `getFeed`, `getFeeds`, `getFeedDocument`, …), `uploadFeedDocument` and
//! `downloadFeedDocument` (the presigned document URLs), `lwa.token`, and `chat.<kind>`
//! for the chat receivers (`chat.slack`, `chat.teams`, `chat.discord`,
//! `chat.google_chat`, `chat.webhook`).
//!
//! A fault with a status normally answers *instead of* the operation: nothing happens
//! upstream. With [`Fault::after_effect`] the operation runs first — the message is
//! recorded, the feed created, the chat post counted — and then the fault's answer
//! replaces the real one (after the fault's delay, if any): "the upstream acted but the
//! answer was lost", the case that makes a client retry something already done.
//!
//! Error bodies take the faulted upstream's shape: SP-API `{"errors":[…]}`, LWA
//! `{"error",…}`, S3 `<Error>` XML for the document URLs, and each chat service's own
//! (Slack plain text, Discord `{"message","retry_after","global"}` on 429, Google's
//! `{"error":{"code","message","status"}}`, …).

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Operation, carriers, chat, feeds};

/// One planned fault. Matching requests consume `times`; the fault leaves the queue
/// when it reaches zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fault {
    /// An operation name (see the module docs: `getOrders`, `createFeed`, `lwa.token`,
    /// `chat.discord`, …), or `*` for any operation.
    pub operation: String,
    /// Only this page: 1 = the request without `NextToken`, 2 = the request carrying the
    /// token from page 1, and so on (retries of a page are the same page).
    /// Operations without paging are always page 1.
    pub page: Option<u32>,
    /// How many matching requests get the fault.
    pub times: u32,
    /// Status to answer with, in the upstream's error shape (429: `QuotaExceeded`,
    /// 5xx: `InternalFailure` for SP-API).
    pub status: Option<u16>,
    /// Adds `Retry-After: <seconds>`.
    pub retry_after: Option<u64>,
    /// Answer 200 with the normal body cut in half (invalid JSON).
    pub malformed: bool,
    /// Wait this long before answering (alone: a slow but otherwise normal answer).
    pub delay_ms: Option<u64>,
    /// Perform the operation, then answer with `status` anyway (needs a `status`).
    pub after_effect: bool,
}

impl Default for Fault {
    fn default() -> Self {
        Self {
            operation: "*".to_owned(),
            page: None,
            times: 1,
            status: None,
            retry_after: None,
            malformed: false,
            delay_ms: None,
            after_effect: false,
        }
    }
}

impl Fault {
    /// Answer `status` once for `operation`.
    pub fn status(operation: impl Into<String>, status: u16) -> Self {
        Self {
            operation: operation.into(),
            status: Some(status),
            ..Self::default()
        }
    }

    /// A 200 with a truncated body, once, for `operation`.
    pub fn malformed(operation: impl Into<String>) -> Self {
        Self {
            operation: operation.into(),
            malformed: true,
            ..Self::default()
        }
    }

    /// A normal answer delayed by `ms`, once, for `operation`.
    pub fn delay(operation: impl Into<String>, ms: u64) -> Self {
        Self {
            operation: operation.into(),
            delay_ms: Some(ms),
            ..Self::default()
        }
    }

    pub fn on_page(mut self, page: u32) -> Self {
        self.page = Some(page);
        self
    }

    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay_ms = Some(ms);
        self
    }

    /// The operation takes effect, then the fault's status is answered anyway: the
    /// upstream acted but the answer was lost. E.g.
    /// `Fault::status("createFeed", 500).after_effect()` creates the feed and answers 500.
    pub fn after_effect(mut self) -> Self {
        self.after_effect = true;
        self
    }

    /// Refuses what cannot be answered: unknown status codes, an after-effect fault
    /// without a status to answer.
    pub(super) fn check(&self) -> Result<(), String> {
        if let Some(status) = self.status
            && !(100..=599).contains(&status)
        {
            return Err(format!("fault status {status} is not an HTTP status"));
        }
        if self.after_effect && self.status.is_none_or(|s| s == 200) {
            return Err("an after_effect fault needs a status other than 200".to_owned());
        }
        Ok(())
    }

    fn matches(&self, operation: &str, page: Option<u32>) -> bool {
        self.times > 0
            && (self.operation == "*" || self.operation == operation)
            && self.page.is_none_or(|p| Some(p) == page)
    }
}

/// The pending faults, first match wins.
#[derive(Debug, Default)]
pub(super) struct FaultQueue {
    faults: Vec<Fault>,
}

impl FaultQueue {
    pub(super) fn push(&mut self, fault: Fault) {
        if fault.times > 0 {
            self.faults.push(fault);
        }
    }

    pub(super) fn clear(&mut self) {
        self.faults.clear();
    }

    pub(super) fn pending(&self) -> Vec<Fault> {
        self.faults.clone()
    }

    /// Consumes one use of the first fault matching this request.
    pub(super) fn take(&mut self, operation: &str, page: Option<u32>) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|f| f.matches(operation, page))?;
        let fault = &mut self.faults[index];
        fault.times -= 1;
        let taken = fault.clone();
        if fault.times == 0 {
            self.faults.remove(index);
        }
        Some(taken)
    }
}

/// Answers `req` as `fault` says, running the normal handler only when the fault needs
/// its answer (delay alone, malformed) or its effect (after-effect).
pub(super) async fn apply(
    fault: &Fault,
    operation: &Operation,
    req: Request,
    next: Next,
) -> Response {
    let status = fault
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .filter(|s| *s != StatusCode::OK);
    if fault.after_effect
        && let Some(status) = status
    {
        // The operation happens; its answer is lost.
        drop(next.run(req).await);
        if let Some(ms) = fault.delay_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        return with_retry_after(fault, error_response(operation, status, fault));
    }
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let response = if fault.malformed {
        truncate(next.run(req).await).await
    } else {
        match status {
            Some(status) => error_response(operation, status, fault),
            None => next.run(req).await,
        }
    };
    with_retry_after(fault, response)
}

fn with_retry_after(fault: &Fault, mut response: Response) -> Response {
    if let Some(seconds) = fault.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A 200 whose body stops halfway: what a cut connection or a broken proxy delivers.
async fn truncate(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let cut = if bytes.len() >= 4 {
        bytes.slice(..bytes.len() / 2).to_vec()
    } else {
        br#"{"payload":{"Orders":[{"AmazonOrderId":"11"#.to_vec()
    };
    parts.status = StatusCode::OK;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(cut))
}

/// An error in the shape the faulted upstream uses.
fn error_response(operation: &Operation, status: StatusCode, fault: &Fault) -> Response {
    let code = status.as_u16();
    match operation {
        Operation::LwaToken => {
            let (error, description) = match code {
                429 | 503 => (
                    "temporarily_unavailable",
                    "The server is temporarily unavailable. Try again later.",
                ),
                500..=599 => ("server_error", "The server encountered an internal error."),
                401 => ("invalid_client", "Client authentication failed"),
                _ => ("invalid_request", "The request could not be processed."),
            };
            (
                status,
                axum::Json(json!({"error": error, "error_description": description})),
            )
                .into_response()
        }
        Operation::Chat(kind) => chat::fault_response(kind, status, fault.retry_after),
        Operation::Carrier(name) => carriers::fault_response(name, status, fault.retry_after),
        Operation::Marketplace(name) if name.starts_with("walmart.") => {
            super::marketplaces::walmart::fault_response(name, status, fault.retry_after)
        }
        Operation::Marketplace(name) if name.starts_with("ebay.") => {
            super::marketplaces::ebay::fault_response(status)
        }
        Operation::Storage(_) => feeds::storage_fault(status),
        // SP-API operations, and anything unknown under its paths.
        _ => {
            let (code, message) = match code {
                429 => (
                    "QuotaExceeded",
                    "You exceeded your quota for the requested resource.",
                ),
                500..=599 => (
                    "InternalFailure",
                    "We encountered an internal error. Please try again.",
                ),
                400 => ("InvalidInput", "Invalid Input"),
                403 => ("Unauthorized", "Access to requested resource is denied."),
                404 => ("NotFound", "The requested resource was not found."),
                _ => ("InvalidInput", "The request could not be processed."),
            };
            super::amazon::error_response(status, code, message, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_match_operation_and_page_and_run_out() {
        let mut queue = FaultQueue::default();
        queue.push(Fault::status("getOrders", 500).on_page(2).times(2));
        queue.push(Fault::status("getOrder", 429));
        queue.push(Fault::status("getOrder", 500).times(0));
        assert_eq!(queue.take("getOrders", Some(1)), None);
        assert!(queue.take("getOrders", Some(2)).is_some());
        assert!(queue.take("getOrders", Some(2)).is_some());
        assert_eq!(queue.take("getOrders", Some(2)), None);
        assert_eq!(
            queue.take("getOrder", Some(1)).and_then(|f| f.status),
            Some(429)
        );
        assert_eq!(queue.take("getOrder", Some(1)), None);
        assert!(queue.pending().is_empty());
    }

    #[test]
    fn faults_parse_from_json_with_defaults() -> Result<(), serde_json::Error> {
        let fault: Fault =
            serde_json::from_str(r#"{"operation":"getOrders","status":429,"retry_after":2}"#)?;
        assert_eq!(fault.times, 1);
        assert_eq!(fault.page, None);
        assert!(!fault.malformed);
        assert!(Fault::status("x", 1000).check().is_err());
        assert!(
            Fault::status("createFeed", 500)
                .after_effect()
                .check()
                .is_ok()
        );
        assert!(
            Fault::delay("createFeed", 5)
                .after_effect()
                .check()
                .is_err()
        );
        let fault: Fault =
            serde_json::from_str(r#"{"operation":"createFeed","status":503,"after_effect":true}"#)?;
        assert!(fault.after_effect);
        Ok(())
    }
}
