//! Walmart Marketplace (US): the purchase orders of one seller account, listed with
//! `GET /v3/orders` (`getAllOrders`) by last modification and paged with the
//! `nextCursor` query string Walmart hands back, through [`api::WalmartApi`] (tokens,
//! required headers, retries). Orders arrive with their lines, so an order's items
//! come from the listing; `getAnOrder` (`GET /v3/orders/{purchaseOrderId}`) is asked
//! only when they are not at hand, and for an order's tracking on demand.
//!
//! How orders map (ids, statuses, money, customer) is [`orders`]' to say. This module
//! never logs personal data, a token or the client secret, and never panics on what
//! Walmart sends: a malformed order is skipped with its reason, the page goes on.

pub mod api;
pub mod orders;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use reqwest::Method;
use secrecy::SecretString;
use url::Url;

use crate::clock::SharedClock;
use crate::http::{RetryPolicy, UpstreamError};
use crate::model::{Order, OrderItem, SalesChannel};
use crate::schedule::Schedule;
use crate::sources::{OrderSource, OrdersPage, PollWindow, SourceError, WindowPolicy};
use api::WalmartApi;
pub use orders::{LineStatus, LineTracking, WalmartOrder};

/// `getAllOrders`, as logs and the sandbox's journal name it.
pub const GET_ALL_ORDERS: &str = "walmart.getAllOrders";
/// `getAnOrder`.
pub const GET_AN_ORDER: &str = "walmart.getAnOrder";

/// Walmart's largest page.
pub const MAX_PAGE_SIZE: u32 = 200;

/// Walmart lists orders created in the last 180 days only; `createdStartDate` is sent
/// this far back, because it otherwise defaults to seven days and an older order
/// modified now would never be listed.
const CREATED_LOOKBACK: Duration = Duration::days(179);

/// How late an update may show in the listing.
const VISIBILITY_LAG: Duration = Duration::minutes(2);

/// What the daemon resolves from config (the secret included) for one account.
#[derive(Clone)]
pub struct WalmartSettings {
    /// `https://marketplace.walmartapis.com` ([`api::DEFAULT_BASE_URL`]); the sandbox's
    /// is `{sandbox}/walmart`.
    pub base_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The configured account's name: the source is `walmart/<account>`.
    pub account: String,
    pub schedule: Schedule,
    /// Orders per page, 1 to 200 (values outside are brought inside).
    pub page_size: u32,
    /// `WM_SVC.NAME`, e.g. `Walmart Marketplace`.
    pub service_name: String,
}

impl std::fmt::Debug for WalmartSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalmartSettings")
            .field("base_url", &self.base_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("account", &self.account)
            .field("schedule", &self.schedule)
            .field("page_size", &self.page_size)
            .field("service_name", &self.service_name)
            .finish()
    }
}

/// Lines and parcels read with the listing, until the poller or the daemon asks.
#[derive(Default)]
struct Seen {
    items: HashMap<String, Vec<OrderItem>>,
    tracking: HashMap<String, Vec<LineTracking>>,
}

/// One Walmart seller account's orders.
pub struct WalmartSource {
    key: String,
    account: String,
    schedule: Schedule,
    page_size: u32,
    clock: SharedClock,
    /// Shared with the account's executor (one token cache for both).
    api: Arc<WalmartApi>,
    seen: Mutex<Seen>,
}

impl std::fmt::Debug for WalmartSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalmartSource")
            .field("key", &self.key)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// One purchase order of `account`, read now (`getAnOrder`, retried like every read);
/// `None` when Walmart has no such order. The order source and the executor both read
/// with it.
pub async fn read_order(
    api: &WalmartApi,
    account: &str,
    purchase_order_id: &str,
) -> Result<Option<WalmartOrder>, UpstreamError> {
    let url = api.url(&["v3", "orders", purchase_order_id])?;
    let Some(reply) = api.call_found(GET_AN_ORDER, Method::GET, &url).await? else {
        return Ok(None);
    };
    let body: orders::OrderResponse = reply.json("Walmart getAnOrder response")?;
    orders::parse_order(body.order, account).map(Some)
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl WalmartSource {
    pub fn new(
        settings: WalmartSettings,
        clock: SharedClock,
        retry: RetryPolicy,
    ) -> Result<Self, UpstreamError> {
        let api = WalmartApi::new(
            settings.base_url,
            settings.client_id,
            settings.client_secret,
            settings.service_name,
            clock.clone(),
            retry,
        )?;
        Ok(Self {
            key: format!("walmart/{}", settings.account),
            account: settings.account,
            schedule: settings.schedule,
            page_size: settings.page_size.clamp(1, MAX_PAGE_SIZE),
            clock,
            api: Arc::new(api),
            seen: Mutex::new(Seen::default()),
        })
    }

    /// The account's API client, shared with whoever acts on the account.
    pub fn api(&self) -> &Arc<WalmartApi> {
        &self.api
    }

    /// The configured account's name (`<account>` of `walmart/<account>`).
    pub fn account(&self) -> &str {
        &self.account
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One purchase order, read now (`getAnOrder`); `None` when Walmart has no such order.
    pub async fn order(
        &self,
        purchase_order_id: &str,
    ) -> Result<Option<WalmartOrder>, SourceError> {
        read_order(&self.api, &self.account, purchase_order_id)
            .await
            .map_err(SourceError::upstream(GET_AN_ORDER))
    }

    /// The parcels of an order's lines as Walmart has them now (`getAnOrder`).
    pub async fn order_parcels(
        &self,
        purchase_order_id: &str,
    ) -> Result<Vec<LineTracking>, SourceError> {
        Ok(self
            .order(purchase_order_id)
            .await?
            .map(|o| o.tracking)
            .unwrap_or_default())
    }

    /// The parcels the latest listing showed for an order (empty when it showed none
    /// or did not list the order); kept until the next poll's first page.
    pub fn listed_parcels(&self, purchase_order_id: &str) -> Vec<LineTracking> {
        self.seen()
            .tracking
            .get(purchase_order_id)
            .cloned()
            .unwrap_or_default()
    }

    fn first_page_url(&self, window: PollWindow) -> Result<Url, UpstreamError> {
        let mut url = self.api.url(&["v3", "orders"])?;
        let created_from = self.clock.now() - CREATED_LOOKBACK;
        url.query_pairs_mut()
            .append_pair("createdStartDate", &iso(created_from.min(window.from)))
            .append_pair("lastModifiedStartDate", &iso(window.from))
            .append_pair("lastModifiedEndDate", &iso(window.to))
            .append_pair("limit", &self.page_size.to_string());
        Ok(url)
    }

    /// The next page: Walmart's `nextCursor` is the query string to call `/v3/orders`
    /// with, as it is (the filters travel inside it).
    fn cursor_url(&self, cursor: &str) -> Result<Url, UpstreamError> {
        let mut url = self.api.url(&["v3", "orders"])?;
        let query = cursor.trim().trim_start_matches('?');
        if query.is_empty() || query.contains('#') || query.chars().any(char::is_whitespace) {
            return Err(UpstreamError::Malformed {
                what: "Walmart nextCursor".to_owned(),
                reason: "not a query string".to_owned(),
            });
        }
        url.set_query(Some(query));
        Ok(url)
    }
}

#[async_trait]
impl OrderSource for WalmartSource {
    /// The lines' tracking as the last listing showed it, else as getAnOrder has it now.
    async fn shipped_parcels(
        &self,
        order: &Order,
    ) -> Result<Option<Vec<crate::sources::ShippedParcel>>, SourceError> {
        let mut lines = self.listed_parcels(&order.id);
        if lines.is_empty() {
            lines = self.order_parcels(&order.id).await?;
        }
        let mut parcels: Vec<crate::sources::ShippedParcel> = Vec::new();
        for line in lines {
            let Some(carrier) = line.carrier else {
                continue;
            };
            // Several lines often share one parcel.
            if parcels
                .iter()
                .any(|p| p.tracking_number == line.tracking_number)
            {
                continue;
            }
            parcels.push(crate::sources::ShippedParcel {
                carrier,
                tracking_number: line.tracking_number,
                shipped_at: line.ship_time,
            });
        }
        Ok(Some(parcels))
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn channel(&self) -> SalesChannel {
        SalesChannel::Walmart
    }

    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn window_policy(&self) -> WindowPolicy {
        WindowPolicy {
            lag: VISIBILITY_LAG,
            ..WindowPolicy::default()
        }
    }

    async fn orders_page(
        &self,
        window: PollWindow,
        next_token: Option<String>,
    ) -> Result<OrdersPage, SourceError> {
        let first = next_token.is_none();
        let url = match &next_token {
            None => self.first_page_url(window),
            Some(cursor) => self.cursor_url(cursor),
        }
        .map_err(SourceError::upstream(GET_ALL_ORDERS))?;
        if first {
            // The previous window's lines were all handed on before this one starts.
            *self.seen() = Seen::default();
        }
        let Some(reply) = self
            .api
            .call_found(GET_ALL_ORDERS, Method::GET, &url)
            .await
            .map_err(SourceError::upstream(GET_ALL_ORDERS))?
        else {
            // Walmart answers an empty result with 404 CONTENT_NOT_FOUND.
            return Ok(OrdersPage::default());
        };
        let body: orders::OrdersList = reply
            .json("Walmart getAllOrders response")
            .map_err(SourceError::upstream(GET_ALL_ORDERS))?;
        let mut page = OrdersPage::default();
        let mut seen = Vec::new();
        for raw in body.list.elements.order {
            let id = orders::raw_id(&raw);
            match orders::parse_order(raw, &self.account) {
                Ok(mapped) => {
                    seen.push((
                        mapped.order.id.clone(),
                        mapped.order.items.clone(),
                        mapped.tracking,
                    ));
                    page.orders.push(mapped.order);
                }
                Err(error) => page.skipped.push((id, error.to_string())),
            }
        }
        {
            let mut cache = self.seen();
            for (id, items, tracking) in seen {
                cache.items.insert(id.clone(), items);
                cache.tracking.insert(id, tracking);
            }
        }
        page.next_token = body
            .list
            .meta
            .next_cursor
            .filter(|c| !c.trim().trim_start_matches('?').is_empty());
        Ok(page)
    }

    async fn order_items(&self, order: &Order) -> Result<Vec<OrderItem>, SourceError> {
        if let Some(items) = self.seen().items.remove(&order.id) {
            return Ok(items);
        }
        match self.order(&order.id).await? {
            Some(found) => Ok(found.order.items),
            None => Err(SourceError::Upstream {
                operation: GET_AN_ORDER,
                error: UpstreamError::Malformed {
                    what: format!("Walmart order {}", order.id),
                    reason: "listed, but getAnOrder does not find it".to_owned(),
                },
            }),
        }
    }
}
