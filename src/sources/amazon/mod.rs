//! Amazon Selling Partner API: orders of one seller account on one region, read with
//! getOrders (`LastUpdatedAfter`/`LastUpdatedBefore` windows, `NextToken` paging) and
//! getOrderItems (`NextToken` paging), through the account's [`api::SpApi`].
//!
//! Each operation is paced by the account's token bucket ([`pacing`]) at its usage
//! plan, following the rate Amazon states in `x-amzn-RateLimit-Limit`, so polling does
//! not run into throttling by design; a 429 that still comes is retried with backoff.
//! Polling never asks for restricted (personal) data: [`restricted`] does, on demand.

pub mod api;
pub mod fulfillment;
pub mod lwa;
pub mod orders;
pub mod pacing;
pub mod packages;
pub mod restricted;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, SecondsFormat, Utc};

use crate::config::AmazonAccount;
use crate::http::{RetryPolicy, UpstreamError};
use crate::model::{Order, OrderItem, SalesChannel};
use crate::schedule::Schedule;
use crate::sources::{OrderSource, OrdersPage, PollWindow, SourceError, WindowPolicy};
use api::{Operation, Retries, SpApi};
use lwa::LwaCredentials;
use orders::{GetOrderItemsResponse, GetOrdersResponse};
pub use pacing::UsagePlan;

/// Amazon shows order updates about two minutes late, and rejects a
/// `LastUpdatedBefore` later than two minutes before the request.
const VISIBILITY_LAG: Duration = Duration::minutes(3);

/// getOrders: one a minute, burst 20 (ordersV0.json).
pub const GET_ORDERS: Operation = Operation {
    name: "getOrders",
    plan: Some(UsagePlan::one_per(60, 20)),
    retries: Retries::InCall,
};

/// getOrderItems: 0.5 a second, burst 30 (ordersV0.json).
pub const GET_ORDER_ITEMS: Operation = Operation {
    name: "getOrderItems",
    plan: Some(UsagePlan {
        rate: 0.5,
        burst: 30,
    }),
    retries: Retries::InCall,
};

/// What the daemon resolves from config (secrets included) to build an account's client.
pub struct AmazonSourceSettings {
    pub account: AmazonAccount,
    pub credentials: LwaCredentials,
    pub user_agent: String,
    pub retry: RetryPolicy,
}

impl AmazonSourceSettings {
    /// The account's one SP-API client: its LWA token cache and its usage-plan buckets
    /// are shared by the poller and the executors (Amazon counts them together).
    pub fn client(&self, clock: crate::clock::SharedClock) -> Result<Arc<SpApi>, UpstreamError> {
        let http = crate::http::client(&self.user_agent)?;
        let lwa = lwa::LwaClient::new(
            http.clone(),
            self.account.lwa_endpoint.clone(),
            self.credentials.clone(),
            clock,
            self.retry,
        );
        Ok(Arc::new(SpApi::new(
            http,
            self.account.endpoint.clone(),
            lwa,
            self.retry,
        )))
    }
}

pub struct AmazonSource {
    key: String,
    account: AmazonAccount,
    api: Arc<SpApi>,
}

impl AmazonSource {
    pub fn new(account: AmazonAccount, api: Arc<SpApi>) -> Arc<Self> {
        Arc::new(Self {
            key: format!("amazon/{}", account.name),
            account,
            api,
        })
    }

    /// The User-Agent Amazon asks for: `AppName/Version (Language=…; Platform=…)`.
    pub fn user_agent(app_name: &str) -> String {
        format!(
            "{app_name}/{} (Language=Rust; Platform={}; nightdesk)",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS
        )
    }

    pub fn api(&self) -> &Arc<SpApi> {
        &self.api
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
            ..WindowPolicy::default()
        }
    }

    async fn orders_page(
        &self,
        window: PollWindow,
        next_token: Option<String>,
    ) -> Result<OrdersPage, SourceError> {
        let url = self
            .api
            .url(&["orders", "v0", "orders"])
            .map_err(SourceError::upstream(GET_ORDERS.name))?;
        // The API pages with NextToken; the same filters are sent with it.
        let mut query = vec![
            ("MarketplaceIds", self.account.marketplaces.join(",")),
            ("LastUpdatedAfter", iso(window.from)),
            ("LastUpdatedBefore", iso(window.to)),
            ("MaxResultsPerPage", self.account.page_size.to_string()),
        ];
        if let Some(token) = next_token {
            query.push(("NextToken", token));
        }
        let page: GetOrdersResponse = self
            .api
            .get_json(&GET_ORDERS, &url, &query)
            .await
            .map_err(SourceError::upstream(GET_ORDERS.name))?;
        let Some(payload) = page.payload else {
            return Err(no_payload(
                GET_ORDERS.name,
                "getOrders response".into(),
                &page.errors,
            ));
        };
        let mut orders = Vec::with_capacity(payload.orders.len());
        let mut skipped = Vec::new();
        for wire in payload.orders {
            let id = wire.amazon_order_id.clone();
            match wire.into_order(&self.account.name) {
                Ok(order) => orders.push(order),
                Err(error) => skipped.push((id, error.to_string())),
            }
        }
        Ok(OrdersPage {
            orders,
            skipped,
            next_token: payload.next_token.filter(|t| !t.is_empty()),
        })
    }

    async fn order_items(&self, order: &Order) -> Result<Vec<OrderItem>, SourceError> {
        let url = self
            .api
            .url(&["orders", "v0", "orders", &order.id, "orderItems"])
            .map_err(SourceError::upstream(GET_ORDER_ITEMS.name))?;
        let mut items = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let query: Vec<(&str, String)> = next_token
                .iter()
                .map(|t| ("NextToken", t.clone()))
                .collect();
            let page: GetOrderItemsResponse = self
                .api
                .get_json(&GET_ORDER_ITEMS, &url, &query)
                .await
                .map_err(SourceError::upstream(GET_ORDER_ITEMS.name))?;
            let Some(payload) = page.payload else {
                let what = format!("getOrderItems response for {}", order.id);
                return Err(no_payload(GET_ORDER_ITEMS.name, what, &page.errors));
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
