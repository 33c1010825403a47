//! eBay Sell Fulfillment API v1: the orders of one seller account, read with getOrders
//! (`filter=lastmodifieddate:[FROM..TO]`, `limit`/`offset` paging) with their line items
//! inline, written from the published contract (`specs/ebay/sell_fulfillment_v1_oas3.yaml`).
//! The mapping into the domain is in [`orders`], the OAuth token and error plumbing in
//! [`api`]. Tracking numbers of shipped orders are read on demand with
//! [`EbaySource::shipping_fulfillments`] (getShippingFulfillments).
//!
//! It never writes to the store itself, never panics on what eBay sends (a broken order
//! is skipped with its reason, a broken page is `Malformed`), and never lets the client
//! secret, the refresh token or an access token reach a log line, an error or `Debug`.

pub mod api;
pub mod orders;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::clock::SharedClock;
use crate::http::{RetryPolicy, UpstreamError};
use crate::model::{Order, OrderItem, SalesChannel};
use crate::schedule::Schedule;
use crate::sources::{OrderSource, OrdersPage, PollWindow, SourceError, WindowPolicy};
pub use api::{EbayApi, EbayCredentials};

/// getOrders' largest `limit` (v1.20.x).
pub const MAX_PAGE_SIZE: u32 = 200;

const GET_ORDERS: &str = "ebay.getOrders";
const GET_ORDER: &str = "ebay.getOrder";
const GET_SHIPPING_FULFILLMENTS: &str = "ebay.getShippingFulfillments";

/// What the daemon resolves from config (secrets included) to build an account's source.
pub struct EbaySettings {
    /// `https://api.ebay.com`; the sandbox serves `{sandbox}/ebay`.
    pub base_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
    /// The configured account name; the source's key is `ebay/<account>`.
    pub account: String,
    pub schedule: Schedule,
    /// getOrders `limit`, 1 to [`MAX_PAGE_SIZE`].
    pub page_size: u32,
    /// How windows are cut (overlap, lag, first lookback, longest window).
    pub window: WindowPolicy,
}

impl std::fmt::Debug for EbaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbaySettings")
            .field("base_url", &self.base_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("refresh_token", &"***")
            .field("account", &self.account)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl EbaySettings {
    pub fn credentials(&self) -> EbayCredentials {
        EbayCredentials {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            refresh_token: self.refresh_token.clone(),
        }
    }
}

/// One eBay seller account as an [`OrderSource`].
#[derive(Debug)]
pub struct EbaySource {
    key: String,
    account: String,
    schedule: Schedule,
    page_size: u32,
    window: WindowPolicy,
    api: Arc<EbayApi>,
    /// The refund executor's client: the same account with `sell.finances` added, its
    /// own token, so polling keeps working for a seller who never granted refunds.
    actions_api: Arc<EbayApi>,
}

/// A shipping fulfillment of an order (getShippingFulfillments): a parcel and its
/// tracking number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbayShipment {
    pub fulfillment_id: String,
    pub tracking_number: Option<String>,
    /// eBay's carrier code (`USPS`, `UPS`, `FEDEX`, …), as sent.
    pub carrier_code: Option<String>,
    pub shipped_at: Option<DateTime<Utc>>,
    /// `(lineItemId, quantity)` the parcel holds.
    pub line_items: Vec<(String, i64)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireFulfillments {
    #[serde(default)]
    fulfillments: Vec<WireFulfillment>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireFulfillment {
    #[serde(default)]
    fulfillment_id: Option<String>,
    #[serde(default)]
    shipment_tracking_number: Option<String>,
    #[serde(default)]
    shipping_carrier_code: Option<String>,
    #[serde(default)]
    shipped_date: Option<String>,
    #[serde(default)]
    line_items: Vec<WireLineItemReference>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLineItemReference {
    #[serde(default)]
    line_item_id: Option<String>,
    #[serde(default)]
    quantity: Option<i64>,
}

impl EbaySource {
    /// The source, with its own client (token cache) for the account.
    pub fn new(
        settings: EbaySettings,
        clock: SharedClock,
        retry: RetryPolicy,
    ) -> Result<Self, UpstreamError> {
        if !(1..=MAX_PAGE_SIZE).contains(&settings.page_size) {
            return Err(UpstreamError::Malformed {
                what: "eBay settings".into(),
                reason: format!(
                    "page_size must be 1-{MAX_PAGE_SIZE}, got {}",
                    settings.page_size
                ),
            });
        }
        let api = EbayApi::new(
            settings.base_url.clone(),
            settings.credentials(),
            vec![api::SCOPE_FULFILLMENT.to_owned()],
            clock.clone(),
            retry,
        )?;
        let actions_api = EbayApi::new(
            settings.base_url.clone(),
            settings.credentials(),
            vec![
                api::SCOPE_FULFILLMENT.to_owned(),
                api::SCOPE_FINANCES.to_owned(),
            ],
            clock,
            retry,
        )?;
        Ok(Self {
            key: format!("ebay/{}", settings.account),
            account: settings.account,
            schedule: settings.schedule,
            page_size: settings.page_size,
            window: settings.window,
            api,
            actions_api,
        })
    }

    pub fn api(&self) -> &Arc<EbayApi> {
        &self.api
    }

    /// The account's client whose token also carries `sell.finances` (issueRefund).
    pub fn actions_api(&self) -> &Arc<EbayApi> {
        &self.actions_api
    }

    /// The account name (`ebay/<account>` without the prefix).
    pub fn account(&self) -> &str {
        &self.account
    }

    /// getOrder: one order, mapped (items included).
    pub async fn order(&self, order_id: &str) -> Result<Order, SourceError> {
        let url = self
            .api
            .url(&["sell", "fulfillment", "v1", "order", order_id])
            .map_err(SourceError::upstream(GET_ORDER))?;
        let reply = self
            .api
            .get(GET_ORDER, &url, &[])
            .await
            .map_err(SourceError::upstream(GET_ORDER))?;
        let wire: orders::WireOrder = reply
            .json("getOrder response")
            .map_err(SourceError::upstream(GET_ORDER))?;
        wire.into_order(&self.account)
            .map_err(|reason| SourceError::Upstream {
                operation: GET_ORDER,
                error: UpstreamError::Malformed {
                    what: format!("eBay order {order_id}"),
                    reason,
                },
            })
    }

    /// getShippingFulfillments: the parcels of a shipped (or partly shipped) order.
    pub async fn shipping_fulfillments(
        &self,
        order_id: &str,
    ) -> Result<Vec<EbayShipment>, SourceError> {
        let op = GET_SHIPPING_FULFILLMENTS;
        let url = self
            .api
            .url(&[
                "sell",
                "fulfillment",
                "v1",
                "order",
                order_id,
                "shipping_fulfillment",
            ])
            .map_err(SourceError::upstream(op))?;
        let reply = self
            .api
            .get(op, &url, &[])
            .await
            .map_err(SourceError::upstream(op))?;
        let wire: WireFulfillments = reply
            .json("getShippingFulfillments response")
            .map_err(SourceError::upstream(op))?;
        let malformed = |reason: String| SourceError::Upstream {
            operation: op,
            error: UpstreamError::Malformed {
                what: format!("shipping fulfillments of eBay order {order_id}"),
                reason,
            },
        };
        let mut shipments = Vec::with_capacity(wire.fulfillments.len());
        for (index, f) in wire.fulfillments.into_iter().enumerate() {
            let Some(fulfillment_id) = f.fulfillment_id.filter(|id| !id.trim().is_empty()) else {
                return Err(malformed(format!(
                    "fulfillments[{index}].fulfillmentId is missing"
                )));
            };
            let shipped_at = match f.shipped_date.as_deref() {
                None => None,
                Some(t) => Some(
                    DateTime::parse_from_rfc3339(t)
                        .map_err(|e| malformed(format!("shippedDate {t:?}: {e}")))?
                        .with_timezone(&Utc),
                ),
            };
            let line_items = f
                .line_items
                .into_iter()
                .filter_map(|l| Some((l.line_item_id?, l.quantity.unwrap_or(0))))
                .collect();
            shipments.push(EbayShipment {
                fulfillment_id,
                tracking_number: f.shipment_tracking_number.filter(|t| !t.trim().is_empty()),
                carrier_code: f.shipping_carrier_code.filter(|c| !c.trim().is_empty()),
                shipped_at,
                line_items,
            });
        }
        Ok(shipments)
    }
}

/// getOrder through `api`, as eBay sent it (refunds included): what the refund
/// executor reads back.
pub async fn wire_order(api: &EbayApi, order_id: &str) -> Result<orders::WireOrder, UpstreamError> {
    let url = api.url(&["sell", "fulfillment", "v1", "order", order_id])?;
    let reply = api.get(GET_ORDER, &url, &[]).await?;
    reply.json("getOrder response")
}

/// eBay's timestamp form, `2026-11-22T10:15:00.000Z`.
fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The next page's offset: the `offset` of the `next` URI, else this offset plus what
/// the page held; `None` on the last page. An offset that does not move on is malformed
/// (it would read the same page forever).
fn next_offset(
    page: &orders::OrderSearchPagedCollection,
    offset: u64,
) -> Result<Option<u64>, String> {
    let Some(next) = page.next.as_deref().filter(|n| !n.trim().is_empty()) else {
        return Ok(None);
    };
    let from_uri = Url::parse(next)
        .or_else(|_| Url::parse("https://api.ebay.com/").and_then(|b| b.join(next)))
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "offset")
                .and_then(|(_, v)| v.parse::<u64>().ok())
        });
    let step = page
        .limit
        .and_then(|l| u64::try_from(l).ok())
        .filter(|l| *l > 0)
        .unwrap_or(page.orders.len() as u64);
    let next = from_uri.unwrap_or(offset + step);
    if next <= offset {
        return Err(format!(
            "next page offset {next} does not move past {offset}"
        ));
    }
    Ok(Some(next))
}

#[async_trait]
impl OrderSource for EbaySource {
    /// getShippingFulfillments: one call per shipped order.
    async fn shipped_parcels(
        &self,
        order: &Order,
    ) -> Result<Option<Vec<crate::sources::ShippedParcel>>, SourceError> {
        let parcels = self
            .shipping_fulfillments(&order.id)
            .await?
            .into_iter()
            .filter_map(|f| {
                Some(crate::sources::ShippedParcel {
                    carrier: f.carrier_code?,
                    tracking_number: f.tracking_number?,
                    shipped_at: f.shipped_at,
                })
            })
            .collect();
        Ok(Some(parcels))
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn channel(&self) -> SalesChannel {
        SalesChannel::Ebay
    }

    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn window_policy(&self) -> WindowPolicy {
        self.window
    }

    async fn orders_page(
        &self,
        window: PollWindow,
        next_token: Option<String>,
    ) -> Result<OrdersPage, SourceError> {
        let upstream = SourceError::upstream(GET_ORDERS);
        let malformed = |reason: String| SourceError::Upstream {
            operation: GET_ORDERS,
            error: UpstreamError::Malformed {
                what: "getOrders response".into(),
                reason,
            },
        };
        let offset: u64 = match next_token.as_deref() {
            None => 0,
            Some(token) => token
                .parse()
                .map_err(|_| malformed(format!("paging token {token:?} is not an offset")))?,
        };
        let url = self
            .api
            .url(&["sell", "fulfillment", "v1", "order"])
            .map_err(SourceError::upstream(GET_ORDERS))?;
        // reqwest form-encodes the query, so `[`, `]`, `:` and `,` go percent-encoded as
        // eBay asks.
        let query = [
            (
                "filter",
                format!(
                    "lastmodifieddate:[{}..{}]",
                    iso(window.from),
                    iso(window.to)
                ),
            ),
            ("limit", self.page_size.to_string()),
            ("offset", offset.to_string()),
        ];
        let reply = self
            .api
            .get(GET_ORDERS, &url, &query)
            .await
            .map_err(upstream)?;
        let page: orders::OrderSearchPagedCollection = reply
            .json("getOrders response")
            .map_err(SourceError::upstream(GET_ORDERS))?;
        let next = next_offset(&page, offset).map_err(malformed)?;
        let mut found = Vec::with_capacity(page.orders.len());
        let mut skipped = Vec::new();
        for raw in page.orders {
            let id = orders::id_of(&raw);
            let mapped = serde_json::from_value::<orders::WireOrder>(raw)
                .map_err(|e| e.to_string())
                .and_then(|wire| wire.into_order(&self.account));
            match mapped {
                Ok(order) => found.push(order),
                Err(reason) => skipped.push((id, reason)),
            }
        }
        Ok(OrdersPage {
            orders: found,
            skipped,
            next_token: next.map(|n| n.to_string()),
        })
    }

    /// getOrders returns the line items inline: these are the ones read with the page.
    async fn order_items(&self, order: &Order) -> Result<Vec<OrderItem>, SourceError> {
        Ok(order.items.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(next: Option<&str>, limit: i64, count: usize) -> orders::OrderSearchPagedCollection {
        orders::OrderSearchPagedCollection {
            limit: Some(limit),
            next: next.map(str::to_owned),
            offset: None,
            orders: vec![serde_json::Value::Null; count],
            total: None,
        }
    }

    #[test]
    fn paging_follows_next_and_stops_without_it() {
        let next = "https://api.ebay.com/sell/fulfillment/v1/order?filter=x&limit=2&offset=4";
        assert_eq!(next_offset(&page(Some(next), 2, 2), 2), Ok(Some(4)));
        assert_eq!(
            next_offset(&page(Some("/order?limit=2"), 2, 2), 2),
            Ok(Some(4))
        );
        assert_eq!(next_offset(&page(None, 2, 2), 2), Ok(None));
        assert!(next_offset(&page(Some("/order?offset=2"), 2, 2), 2).is_err());
    }

    #[test]
    fn timestamps_are_written_the_way_ebay_writes_them() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T10:15:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(iso(at), "2026-11-22T10:15:00.000Z");
    }
}
