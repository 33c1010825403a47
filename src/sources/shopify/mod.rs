//! Shopify: the orders of one shop, read through the Admin GraphQL API, version
//! [`API_VERSION`] (2026-01) unless the settings say otherwise.
//!
//! What was taken from Shopify's documentation (shopify.dev, Admin GraphQL 2026-01):
//! - `POST https://{shop}.myshopify.com/admin/api/{version}/graphql.json` with the
//!   `X-Shopify-Access-Token` header; a refused token is HTTP 401 (a missing scope 403,
//!   or an `ACCESS_DENIED` GraphQL error), both [`UpstreamError::Credentials`].
//! - `orders(first:, after:, query:, sortKey: UPDATED_AT)` with the search syntax
//!   `updated_at:>='…' AND updated_at:<='…'`, paged by `pageInfo { hasNextPage endCursor }`.
//! - `Order.name` (`#1001`) is the number buyers quote: it is [`Order::id`]. The gid
//!   (`gid://shopify/Order/…`) is kept in `details.seller_order_id` for actions;
//!   `details.sales_channel` is `{shop}.myshopify.com`.
//! - Calculated query cost: `extensions.cost { requestedQueryCost actualQueryCost
//!   throttleStatus { maximumAvailable currentlyAvailable restoreRate } }`; a throttled
//!   request is an HTTP 200 with `errors[].extensions.code == "THROTTLED"` ([`api`]).
//! - Line items and fulfillments' `trackingInfo { company number url }` come with each
//!   order ([`orders`] has the status table), so [`OrderSource::order_items`] costs no
//!   call unless an order has more than 50 lines.
//!
//! Tracking: `Order` has no field for parcels (Amazon's FBM packages are read on demand
//! in the daemon), so the parcels of the orders listed are kept here, by order name
//! ([`ShopifySource::parcels`]), and can be read on demand with
//! [`ShopifySource::order_snapshot`].
//!
//! It only reads, never logs personal data or the access token, and never panics on
//! what Shopify sends: an order node that breaks the contract is skipped with its reason.

pub mod api;
pub mod orders;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::Duration;
use secrecy::SecretString;
use serde_json::json;
use url::Url;

use crate::clock::SharedClock;
use crate::http::{RetryPolicy, UpstreamError};
use crate::model::{Order, OrderItem, SalesChannel};
use crate::schedule::Schedule;
use crate::sources::{OrderSource, OrdersPage, PollWindow, SourceError, WindowPolicy};
pub use api::ShopifyApi;
pub use orders::{ParsedOrder, ShopifyParcel};

/// The Admin API version followed.
pub const API_VERSION: &str = "2026-01";

/// Shopify's largest page (`first` at most 250).
pub const MAX_PAGE_SIZE: u32 = 250;

/// Operation names (pacer, logs, errors).
pub const OP_ORDERS: &str = "orders";
pub const OP_ORDER: &str = "order";
pub const OP_ORDER_ITEMS: &str = "orderItems";

/// Shopify's search index trails writes by a little; a minute is ample.
const VISIBILITY_LAG: Duration = Duration::minutes(1);

/// What the daemon resolves from config (the token included) to poll one shop.
#[derive(Clone)]
pub struct ShopifySettings {
    /// The shop's handle, e.g. `ridgeline-coffee`.
    pub shop: String,
    /// `https://{shop}.myshopify.com`; the sandbox gives `{sandbox}/shopify`.
    pub base_url: Url,
    /// E.g. [`API_VERSION`].
    pub api_version: String,
    pub access_token: SecretString,
    /// The config's account name: the source's key is `shopify/<account>`.
    pub account: String,
    pub schedule: Schedule,
    /// Orders per page, 1-250.
    pub page_size: u32,
    /// How far back the first poll reads.
    pub initial_lookback_days: i64,
    pub overlap_minutes: i64,
}

// By hand: the access token has no place in logs.
impl std::fmt::Debug for ShopifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopifySettings")
            .field("shop", &self.shop)
            .field("base_url", &self.base_url.as_str())
            .field("api_version", &self.api_version)
            .field("access_token", &"***")
            .field("account", &self.account)
            .field("schedule", &self.schedule.as_str())
            .field("page_size", &self.page_size)
            .field("initial_lookback_days", &self.initial_lookback_days)
            .field("overlap_minutes", &self.overlap_minutes)
            .finish()
    }
}

impl ShopifySettings {
    /// Settings with the defaults for everything but what names the shop.
    pub fn new(
        shop: &str,
        base_url: Url,
        access_token: SecretString,
        account: &str,
        schedule: Schedule,
    ) -> Self {
        Self {
            shop: shop.to_owned(),
            base_url,
            api_version: API_VERSION.to_owned(),
            access_token,
            account: account.to_owned(),
            schedule,
            page_size: 50,
            initial_lookback_days: 7,
            overlap_minutes: 10,
        }
    }
}

/// The poller of one shop.
pub struct ShopifySource {
    key: String,
    settings: ShopifySettings,
    api: Arc<ShopifyApi>,
    /// Parcels of the orders listed, by order name.
    parcels: Mutex<HashMap<String, Vec<ShopifyParcel>>>,
    /// Orders whose line items continue: name → (gid, cursor).
    more_items: Mutex<HashMap<String, (String, String)>>,
}

impl std::fmt::Debug for ShopifySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopifySource")
            .field("key", &self.key)
            .field("settings", &self.settings)
            .finish()
    }
}

fn invalid(reason: String) -> UpstreamError {
    UpstreamError::Transport {
        retryable: false,
        delivered: crate::http::Delivery::NotSent,
        message: reason,
    }
}

impl ShopifySource {
    /// The clock is taken for the signature every source shares; Shopify's windows
    /// come from the poller and its pacing runs on tokio's clock.
    pub fn new(
        settings: ShopifySettings,
        _clock: SharedClock,
        retry: RetryPolicy,
    ) -> Result<Self, UpstreamError> {
        if !(1..=MAX_PAGE_SIZE).contains(&settings.page_size) {
            return Err(invalid(format!(
                "Shopify page_size must be 1-{MAX_PAGE_SIZE}, got {}",
                settings.page_size
            )));
        }
        if settings.shop.trim().is_empty() || settings.account.trim().is_empty() {
            return Err(invalid("Shopify shop and account must be set".to_owned()));
        }
        let api = ShopifyApi::new(
            &settings.base_url,
            &settings.api_version,
            settings.access_token.clone(),
            retry,
        )?;
        Ok(Self {
            key: format!("shopify/{}", settings.account),
            settings,
            api: Arc::new(api),
            parcels: Mutex::new(HashMap::new()),
            more_items: Mutex::new(HashMap::new()),
        })
    }

    /// The shop's client, shared with the executor (one cost bucket per app and shop).
    pub fn api(&self) -> &Arc<ShopifyApi> {
        &self.api
    }

    /// The shop's handle (`ridgeline-coffee`).
    pub fn shop(&self) -> &str {
        &self.settings.shop
    }

    /// The config's account name (the key without `shopify/`).
    pub fn account(&self) -> &str {
        &self.settings.account
    }

    /// The parcels (fulfillments' tracking numbers) of `order_id` (`#1001`) as last
    /// listed; empty for an order not listed since the start.
    pub fn parcels(&self, order_id: &str) -> Vec<ShopifyParcel> {
        self.parcels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(order_id)
            .cloned()
            .unwrap_or_default()
    }

    /// One order as Shopify shows it now, by gid (`details.seller_order_id`); `None`
    /// when the shop has no such order.
    pub async fn order_snapshot(&self, gid: &str) -> Result<Option<ParsedOrder>, SourceError> {
        order_snapshot(&self.api, gid, &self.settings.account, &self.settings.shop).await
    }
}

/// One order by gid through `api` (the executor's cancellation check uses it too).
pub async fn order_snapshot(
    api: &ShopifyApi,
    gid: &str,
    account: &str,
    shop: &str,
) -> Result<Option<ParsedOrder>, SourceError> {
    let data: orders::OrderData = api
        .execute(OP_ORDER, orders::ORDER_QUERY, json!({ "id": gid }))
        .await
        .map_err(SourceError::upstream(OP_ORDER))?;
    let Some(node) = data.order.filter(|n| !n.is_null()) else {
        return Ok(None);
    };
    orders::parse_order(node, account, shop)
        .map(Some)
        .map_err(|reason| SourceError::Upstream {
            operation: OP_ORDER,
            error: UpstreamError::Malformed {
                what: format!("Shopify order {gid}"),
                reason,
            },
        })
}

#[async_trait]
impl OrderSource for ShopifySource {
    fn key(&self) -> &str {
        &self.key
    }

    /// The fulfilments' tracking numbers as the last listing showed them (no call);
    /// cancelled or failed fulfilments are left out.
    async fn shipped_parcels(
        &self,
        order: &Order,
    ) -> Result<Option<Vec<crate::sources::ShippedParcel>>, SourceError> {
        let parcels = self
            .parcels(&order.id)
            .into_iter()
            .filter(|p| {
                !matches!(
                    p.fulfillment_status.as_deref(),
                    Some("CANCELLED" | "ERROR" | "FAILURE")
                )
            })
            .filter_map(|p| {
                Some(crate::sources::ShippedParcel {
                    carrier: p.carrier?,
                    tracking_number: p.tracking_number,
                    shipped_at: None,
                })
            })
            .collect();
        Ok(Some(parcels))
    }

    fn channel(&self) -> SalesChannel {
        SalesChannel::Shopify
    }

    fn schedule(&self) -> &Schedule {
        &self.settings.schedule
    }

    fn window_policy(&self) -> WindowPolicy {
        WindowPolicy {
            overlap: Duration::minutes(self.settings.overlap_minutes),
            lag: VISIBILITY_LAG,
            initial_lookback: Duration::days(self.settings.initial_lookback_days),
            ..WindowPolicy::default()
        }
    }

    async fn orders_page(
        &self,
        window: PollWindow,
        next_token: Option<String>,
    ) -> Result<OrdersPage, SourceError> {
        let variables = json!({
            "first": self.settings.page_size,
            "after": next_token,
            "query": orders::window_filter(window),
        });
        let data: orders::OrdersData = self
            .api
            .execute(OP_ORDERS, orders::ORDERS_QUERY, variables)
            .await
            .map_err(SourceError::upstream(OP_ORDERS))?;
        let next_token = data
            .orders
            .page_info
            .next()
            .map_err(|reason| SourceError::Upstream {
                operation: OP_ORDERS,
                error: UpstreamError::Malformed {
                    what: "Shopify orders page".to_owned(),
                    reason,
                },
            })?;
        let mut page = OrdersPage {
            next_token,
            ..OrdersPage::default()
        };
        for node in data.orders.nodes {
            let label = orders::node_label(&node);
            match orders::parse_order(node, &self.settings.account, &self.settings.shop) {
                Ok(parsed) => {
                    let id = parsed.order.id.clone();
                    if let (Some(cursor), Some(gid)) = (
                        parsed.more_items_after,
                        parsed.order.details.seller_order_id.clone(),
                    ) {
                        self.more_items
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(id.clone(), (gid, cursor));
                    }
                    self.parcels
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(id, parsed.parcels);
                    page.orders.push(parsed.order);
                }
                Err(reason) => page.skipped.push((label, reason)),
            }
        }
        Ok(page)
    }

    /// The items listed with the order, completed by `order(id:)` when it has more than
    /// one page of line items.
    async fn order_items(&self, order: &Order) -> Result<Vec<OrderItem>, SourceError> {
        let more = self
            .more_items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&order.id)
            .cloned();
        let Some((gid, mut cursor)) = more else {
            return Ok(order.items.clone());
        };
        let mut items = order.items.clone();
        let malformed = |reason: String| SourceError::Upstream {
            operation: OP_ORDER_ITEMS,
            error: UpstreamError::Malformed {
                what: format!("Shopify line items of {}", order.id),
                reason,
            },
        };
        loop {
            let data: orders::OrderItemsData = self
                .api
                .execute(
                    OP_ORDER_ITEMS,
                    orders::ORDER_ITEMS_QUERY,
                    json!({ "id": gid, "itemsAfter": cursor }),
                )
                .await
                .map_err(SourceError::upstream(OP_ORDER_ITEMS))?;
            let Some(node) = data.order else {
                return Err(malformed("the order is gone".to_owned()));
            };
            let next = node.line_items.page_info.next().map_err(malformed)?;
            items.extend(orders::into_items(node.line_items.nodes).map_err(malformed)?);
            match next {
                Some(c) => cursor = c,
                None => break,
            }
        }
        self.more_items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&order.id);
        Ok(items)
    }
}
