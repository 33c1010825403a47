//! Amazon Selling Partner API: orders of one seller account on one region, read with
//! getOrders (`LastUpdatedAfter`/`LastUpdatedBefore` windows, `NextToken` paging) and
//! getOrderItems, authorised by an LWA access token in `x-amz-access-token`.
//!
//! Each operation is paced by a client-side token bucket at its published usage plan
//! (getOrders 1/min burst 20, getOrderItems 0.5/s burst 30), so polling never runs into
//! Amazon's throttling by design; a 429 that still comes is retried with backoff.

pub mod lwa;
pub mod orders;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use url::Url;

use crate::clock::SharedClock;
use crate::config::AmazonAccount;
use crate::http::{self, RetryPolicy, UpstreamError};
use crate::model::{Order, OrderItem, SalesChannel};
use crate::schedule::Schedule;
use crate::sources::{OrderSource, PollWindow, SourceError, WindowPolicy};
use lwa::{LwaClient, LwaCredentials};
use orders::{ErrorBody, GetOrderItemsResponse, GetOrdersResponse};

/// Amazon shows order updates about two minutes late, and rejects a
/// `LastUpdatedBefore` later than two minutes before the request.
const VISIBILITY_LAG: Duration = Duration::minutes(3);

/// A usage plan: requests per second and burst.
#[derive(Debug, Clone, Copy)]
pub struct UsagePlan {
    pub period: StdDuration,
    pub burst: u32,
}

pub const GET_ORDERS_PLAN: UsagePlan = UsagePlan {
    period: StdDuration::from_secs(60),
    burst: 20,
};
pub const GET_ORDER_ITEMS_PLAN: UsagePlan = UsagePlan {
    period: StdDuration::from_secs(2),
    burst: 30,
};

fn limiter(plan: UsagePlan) -> DefaultDirectRateLimiter {
    let burst = NonZeroU32::new(plan.burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(plan.period)
        .map_or_else(|| Quota::per_second(burst), |q| q.allow_burst(burst));
    RateLimiter::direct(quota)
}

/// What the daemon resolves from config (secrets included) to build a source.
pub struct AmazonSourceSettings {
    pub account: AmazonAccount,
    pub credentials: LwaCredentials,
    pub user_agent: String,
    pub retry: RetryPolicy,
}

pub struct AmazonSource {
    key: String,
    account: AmazonAccount,
    http: reqwest::Client,
    lwa: LwaClient,
    retry: RetryPolicy,
    get_orders_limit: DefaultDirectRateLimiter,
    get_order_items_limit: DefaultDirectRateLimiter,
}

impl AmazonSource {
    pub fn new(
        settings: AmazonSourceSettings,
        clock: SharedClock,
    ) -> Result<Arc<Self>, UpstreamError> {
        let http = http::client(&settings.user_agent)?;
        let lwa = LwaClient::new(
            http.clone(),
            settings.account.lwa_endpoint.clone(),
            settings.credentials,
            clock,
            settings.retry,
        );
        Ok(Arc::new(Self {
            key: format!("amazon/{}", settings.account.name),
            account: settings.account,
            http,
            lwa,
            retry: settings.retry,
            get_orders_limit: limiter(GET_ORDERS_PLAN),
            get_order_items_limit: limiter(GET_ORDER_ITEMS_PLAN),
        }))
    }

    /// The User-Agent Amazon asks for: `AppName/Version (Language=…; Platform=…)`.
    pub fn user_agent(app_name: &str) -> String {
        format!(
            "{app_name}/{} (Language=Rust; Platform={}; nightdesk)",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS
        )
    }

    fn url(&self, path: &str) -> Result<Url, UpstreamError> {
        self.account
            .endpoint
            .join(path)
            .map_err(|e| UpstreamError::Malformed {
                what: "endpoint".into(),
                reason: e.to_string(),
            })
    }

    /// One SP-API GET with the access token, retried if retryable; a refused token is
    /// dropped so the next call asks LWA for a new one.
    async fn get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        url: &Url,
        query: &[(&str, String)],
    ) -> Result<T, SourceError> {
        let call = || async {
            let token = self.lwa.access_token().await?;
            let request = self
                .http
                .get(url.clone())
                .query(query)
                .header("x-amz-access-token", token.expose_secret());
            let reply = http::send(request).await?;
            if reply.status.is_success() {
                return reply.json::<T>(&format!("{operation} response"));
            }
            if reply.status == StatusCode::FORBIDDEN {
                self.lwa.invalidate().await;
            }
            let summary = match serde_json::from_str::<ErrorBody>(&reply.body) {
                Ok(errors) if !errors.errors.is_empty() => orders::describe(&errors.errors),
                _ => http::summarize(&reply.body),
            };
            tracing::warn!(operation, status = reply.status.as_u16(), error = %summary, "SP-API answered with an error.");
            Err(reply.error(&summary))
        };
        http::with_retry(self.retry, operation, call)
            .await
            .map_err(SourceError::upstream(operation))
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[async_trait]
impl OrderSource for AmazonSource {
    fn key(&self) -> &str {
        &self.key
    }

    fn channel(&self) -> SalesChannel {
        SalesChannel::Amazon
    }

    fn schedule(&self) -> &Schedule {
        &self.account.schedule
    }

    fn window_policy(&self) -> WindowPolicy {
        WindowPolicy {
            overlap: Duration::minutes(self.account.overlap_minutes),
            lag: VISIBILITY_LAG,
            initial_lookback: Duration::days(self.account.initial_lookback_days),
        }
    }

    async fn orders_updated(&self, window: PollWindow) -> Result<Vec<Order>, SourceError> {
        let url = self
            .url("/orders/v0/orders")
            .map_err(SourceError::upstream("getOrders"))?;
        let filters = vec![
            ("MarketplaceIds", self.account.marketplaces.join(",")),
            ("LastUpdatedAfter", iso(window.from)),
            ("LastUpdatedBefore", iso(window.to)),
            ("MaxResultsPerPage", self.account.page_size.to_string()),
        ];
        let mut orders = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            // The API pages with NextToken; the same filters are sent with it.
            let mut query = filters.clone();
            if let Some(token) = &next_token {
                query.push(("NextToken", token.clone()));
            }
            self.get_orders_limit.until_ready().await;
            let page: GetOrdersResponse = self.get("getOrders", &url, &query).await?;
            let Some(payload) = page.payload else {
                return Err(no_payload(
                    "getOrders",
                    "getOrders response".into(),
                    &page.errors,
                ));
            };
            for wire in payload.orders {
                orders.push(
                    wire.into_order(&self.account.name)
                        .map_err(SourceError::upstream("getOrders"))?,
                );
            }
            match payload.next_token.filter(|t| !t.is_empty()) {
                Some(token) => next_token = Some(token),
                None => break,
            }
        }
        Ok(orders)
    }

    async fn order_items(&self, order: &Order) -> Result<Vec<OrderItem>, SourceError> {
        let path = format!("/orders/v0/orders/{}/orderItems", urlencode(&order.id));
        let url = self
            .url(&path)
            .map_err(SourceError::upstream("getOrderItems"))?;
        let mut items = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let query: Vec<(&str, String)> = next_token
                .iter()
                .map(|t| ("NextToken", t.clone()))
                .collect();
            self.get_order_items_limit.until_ready().await;
            let page: GetOrderItemsResponse = self.get("getOrderItems", &url, &query).await?;
            let Some(payload) = page.payload else {
                let what = format!("getOrderItems response for {}", order.id);
                return Err(no_payload("getOrderItems", what, &page.errors));
            };
            items.extend(
                payload
                    .order_items
                    .into_iter()
                    .map(orders::WireOrderItem::into_item),
            );
            match payload.next_token.filter(|t| !t.is_empty()) {
                Some(token) => next_token = Some(token),
                None => break,
            }
        }
        Ok(items)
    }
}

/// A 2xx answer without `payload`: the contract's `errors` (if any) say why.
fn no_payload(operation: &'static str, what: String, errors: &[orders::ApiError]) -> SourceError {
    let reason = if errors.is_empty() {
        "no payload".to_owned()
    } else {
        orders::describe(errors)
    };
    SourceError::Upstream {
        operation,
        error: UpstreamError::Malformed { what, reason },
    }
}

/// Percent-encode one path segment (order ids are `\d{3}-\d{7}-\d{7}`, but be safe).
fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}
