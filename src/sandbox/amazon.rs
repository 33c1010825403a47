//! SP-API Orders v0 (`getOrders`, `getOrder`, `getOrderItems`, and the restricted
//! `getOrderBuyerInfo` and `getOrderAddress`), answered from the scenario and built
//! field by field from `specs/amazon/ordersV0.json` (Swagger 2.0), with the usage plans
//! from each operation's description. Restricted data (`BuyerInfo`, `ShippingAddress`)
//! is shown only to a Restricted Data Token that covers the call (`tokens.rs`).
//!
//! getOrders pages through an index sorted by date and id, so a page costs a binary
//! search and the orders it scans, not the whole backlog; `NextToken` carries the last
//! answered order and the listing's filters. An order with `visible_after_seconds` is
//! missing from every Orders operation until the clock reaches its LastUpdateDate plus
//! that delay.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeDelta, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::plans::{self, Plan};
use super::scenario::{
    AmazonScenario, Amount, FulfillmentChannel, MARKETPLACE_CA, OrderStatus, ScenarioAddress,
    ScenarioItem, ScenarioOrder, is_amazon_order_id,
};
use super::tokens::{self, Disclosure};
use super::{Operation, Shared, feeds, fulfillment, lock, lwa, messaging, token};

pub(super) const GET_ORDERS: &str = "getOrders";
pub(super) const GET_ORDER: &str = "getOrder";
pub(super) const GET_ORDER_ITEMS: &str = "getOrderItems";
pub(super) const GET_ORDER_BUYER_INFO: &str = "getOrderBuyerInfo";
pub(super) const GET_ORDER_ADDRESS: &str = "getOrderAddress";

/// Upper bound on `CreatedBefore`/`LastUpdatedBefore` relative to now (contract: "at
/// least two minutes before current time"); also the default bound when none is sent.
const SETTLE_TIME: TimeDelta = TimeDelta::minutes(2);

/// Orders v0 usage plans, from each operation's description.
const USAGE_PLANS: [Plan; 5] = [
    (GET_ORDERS, 0.0167, 20.0),
    (GET_ORDER, 0.5, 30.0),
    (GET_ORDER_ITEMS, 0.5, 30.0),
    (GET_ORDER_BUYER_INFO, 0.5, 30.0),
    (GET_ORDER_ADDRESS, 0.5, 30.0),
];

/// Every default usage plan the sandbox enforces: Orders, Messaging, Feeds, Tokens and
/// Fulfillment Outbound.
pub(super) fn usage_plans() -> impl Iterator<Item = &'static Plan> {
    USAGE_PLANS
        .iter()
        .chain(messaging::USAGE_PLANS)
        .chain(feeds::USAGE_PLANS)
        .chain(tokens::USAGE_PLANS)
        .chain(fulfillment::USAGE_PLANS)
        .chain(super::amazon_packages::USAGE_PLANS)
}

const FULFILLMENT_CHANNELS: [&str; 2] = ["AFN", "MFN"];

// ---------------------------------------------------------------------------------------
// Handlers

pub(super) async fn get_orders(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    let disclosure = match authorize(&state, &headers, GET_ORDERS, uri.path()) {
        Ok(disclosure) => disclosure,
        Err(refused) => return *refused,
    };
    // A feed that is due changes orders: apply it before answering.
    feeds::settle(&state);
    let params = Params::parse(query.as_deref());
    let now = state.now();
    let amazon = lock(&state.amazon);
    let (filter, page, after) = match OrdersFilter::from_params(&params, now, amazon.page_size) {
        Ok(found) => found,
        Err(message) => return invalid_input(&message),
    };
    let mut index = lock(&state.order_index);
    index.refresh(state.orders_generation.load(Ordering::Acquire), &amazon);
    let (shown, more) = index.page(&amazon.orders, &filter, after.as_ref(), now);

    let mut payload = Map::new();
    payload.insert(
        "Orders".into(),
        Value::Array(
            shown
                .iter()
                .map(|order| order_json(order, now, disclosure))
                .collect(),
        ),
    );
    if more && let Some(last) = shown.last() {
        let next = OrdersToken {
            op: GET_ORDERS.to_owned(),
            page: page + 1,
            last_at: filter.date_of(last, now),
            last_id: last.id.clone(),
            filter: filter.clone(),
        };
        payload.insert("NextToken".into(), Value::String(token::encode(&next)));
    }
    let bound_name = if filter.by_created {
        "CreatedBefore"
    } else {
        "LastUpdatedBefore"
    };
    payload.insert(bound_name.into(), Value::String(iso(filter.before)));
    Json(json!({ "payload": payload })).into_response()
}

pub(super) async fn get_order(
    State(state): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let disclosure = match authorize(&state, &headers, GET_ORDER, uri.path()) {
        Ok(disclosure) => disclosure,
        Err(refused) => return *refused,
    };
    with_order(&state, &order_id, |order, now| {
        Json(json!({ "payload": order_json(order, now, disclosure) })).into_response()
    })
}

pub(super) async fn get_order_items(
    State(state): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(refused) = authorize(&state, &headers, GET_ORDER_ITEMS, uri.path()) {
        return *refused;
    }
    let params = Params::parse(query.as_deref());
    let page_size = usize::try_from(lock(&state.amazon).items_page_size).unwrap_or(usize::MAX);
    with_order(&state, &order_id, |order, _| {
        let (page, offset) = match params.one("NextToken") {
            None => (1, 0),
            Some(text) => match token::decode::<ItemsToken>(text) {
                Some(t) if t.op == GET_ORDER_ITEMS && t.order == order.id => (t.page, t.offset),
                _ => return invalid_input("Invalid NextToken: it was not issued for this order."),
            },
        };
        let start = offset.min(order.items.len());
        let end = start.saturating_add(page_size).min(order.items.len());
        let items: Vec<Value> = order.items[start..end]
            .iter()
            .map(|item| item_json(order, item))
            .collect();

        let mut payload = Map::new();
        payload.insert("AmazonOrderId".into(), Value::String(order.id.clone()));
        payload.insert("OrderItems".into(), Value::Array(items));
        if end < order.items.len() {
            let next = ItemsToken {
                op: GET_ORDER_ITEMS.to_owned(),
                order: order.id.clone(),
                page: page + 1,
                offset: end,
            };
            payload.insert("NextToken".into(), Value::String(token::encode(&next)));
        }
        Json(json!({ "payload": payload })).into_response()
    })
}

/// `GET /orders/v0/orders/{orderId}/buyerInfo` (restricted) → contract `OrderBuyerInfo`.
pub(super) async fn get_order_buyer_info(
    State(state): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(refused) = authorize(&state, &headers, GET_ORDER_BUYER_INFO, uri.path()) {
        return *refused;
    }
    with_order(&state, &order_id, |order, _| {
        let mut payload = Map::new();
        payload.insert("AmazonOrderId".into(), json!(order.id));
        insert_buyer_info(&mut payload, order);
        Json(json!({ "payload": payload })).into_response()
    })
}

/// `GET /orders/v0/orders/{orderId}/address` (restricted) → contract `OrderAddress`.
pub(super) async fn get_order_address(
    State(state): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(refused) = authorize(&state, &headers, GET_ORDER_ADDRESS, uri.path()) {
        return *refused;
    }
    with_order(&state, &order_id, |order, now| {
        let mut payload = Map::new();
        payload.insert("AmazonOrderId".into(), json!(order.id));
        if shows_address(order.status) {
            payload.insert("ShippingAddress".into(), address_json(order, now));
        }
        Json(json!({ "payload": payload })).into_response()
    })
}

/// Settles due feeds, checks the id, and answers with `answer` for the order if it is
/// there and visible now, else 400/404.
fn with_order(
    state: &Shared,
    order_id: &str,
    answer: impl FnOnce(&ScenarioOrder, DateTime<Utc>) -> Response,
) -> Response {
    // A feed that is due changes orders: apply it before answering.
    feeds::settle(state);
    if let Some(bad) = bad_order_id(order_id) {
        return bad;
    }
    let now = state.now();
    let amazon = lock(&state.amazon);
    let mut index = lock(&state.order_index);
    index.refresh(state.orders_generation.load(Ordering::Acquire), &amazon);
    match index.find(&amazon.orders, order_id) {
        Some(order) if order.is_visible(now) => answer(order, now),
        _ => order_not_found(order_id),
    }
}

/// [`tokens::authorize`], then the usage plan.
fn authorize(
    state: &Shared,
    headers: &HeaderMap,
    operation: &'static str,
    path: &str,
) -> Result<Disclosure, Box<Response>> {
    let disclosure = tokens::authorize(state, headers, operation, "GET", path)?;
    match throttle(state, operation) {
        Some(refused) => Err(Box::new(refused)),
        None => Ok(disclosure),
    }
}

/// The answer refusing this call, if any. Authorization comes first, then the usage
/// plan: limits are per selling partner and application, so the caller must be known
/// before its bucket can be charged.
/// Only an LWA access token passes here: a Restricted Data Token is valid on the
/// restricted resources it names, never on these operations.
pub(super) fn refusal(
    state: &Shared,
    headers: &HeaderMap,
    operation: &'static str,
) -> Option<Response> {
    if !lwa::token_is_live(state, headers.get("x-amz-access-token")) {
        return Some(invalid_token());
    }
    throttle(state, operation)
}

/// The 429 when `operation`'s bucket is empty.
fn throttle(state: &Shared, operation: &'static str) -> Option<Response> {
    (!lock(&state.plans).try_take(operation)).then(|| {
        error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "QuotaExceeded",
            "You exceeded your quota for the requested resource.",
            None,
        )
    })
}

/// The 403 for a token that is unknown, expired, revoked or missing.
pub(super) fn invalid_token() -> Response {
    error_response(
        StatusCode::FORBIDDEN,
        "Unauthorized",
        "Access to requested resource is denied.",
        Some("The access token you provided is revoked, malformed or invalid."),
    )
}

/// A 400 for an id that is not in the contract's 3-7-7 form.
pub(super) fn bad_order_id(order_id: &str) -> Option<Response> {
    (!is_amazon_order_id(order_id)).then(|| {
        invalid_input(&format!(
            "OrderId: {order_id} is invalid, should be in 3-7-7 format."
        ))
    })
}

fn order_not_found(order_id: &str) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("Order {order_id} was not found."),
        None,
    )
}

// ---------------------------------------------------------------------------------------
// Errors and headers

/// The SP-API error body: `{"errors":[{"code","message","details"?}]}`.
pub(super) fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    details: Option<&str>,
) -> Response {
    let mut error = Map::new();
    error.insert("code".into(), Value::String(code.to_owned()));
    error.insert("message".into(), Value::String(message.to_owned()));
    if let Some(details) = details {
        error.insert("details".into(), Value::String(details.to_owned()));
    }
    let mut response = (status, Json(json!({ "errors": [error] }))).into_response();
    if status == StatusCode::FORBIDDEN {
        // API Gateway labels its denials so; clients sometimes key on it.
        response.headers_mut().insert(
            HeaderName::from_static("x-amzn-errortype"),
            HeaderValue::from_static("AccessDeniedException"),
        );
    }
    response
}

pub(super) fn invalid_input(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "InvalidInput", message, None)
}

/// Adds the headers every SP-API answer carries: a request id always, and the
/// operation's current rate on successes (the models list it for 2xx everywhere, for
/// some errors only in some models: 2xx is what every model agrees on).
pub(super) fn decorate(state: &Shared, operation: &Operation, response: &mut Response) {
    let headers = response.headers_mut();
    if !headers.contains_key("x-amzn-requestid")
        && let Ok(id) = HeaderValue::from_str(&request_id())
    {
        headers.insert(HeaderName::from_static("x-amzn-requestid"), id);
    }
    if response.status().is_success()
        && let Some(name) = operation.sp_api_name()
        && let Some(rate) = lock(&state.plans).rate(name)
        && let Ok(value) = HeaderValue::from_str(&plans::rate_text(rate))
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-amzn-ratelimit-limit"), value);
    }
}

/// A UUID-shaped random id, like API Gateway's.
pub(super) fn request_id() -> String {
    let mut rng = rand::rng();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        rng.random::<u32>(),
        rng.random::<u16>(),
        rng.random::<u16>() & 0x0fff,
        (rng.random::<u16>() & 0x3fff) | 0x8000,
        rng.random::<u64>() & 0xffff_ffff_ffff
    )
}

/// The page a request asks for, for fault matching: 1 without the paging token
/// (`parameter`), the token's page otherwise, `None` for a garbled token.
pub(super) fn page_of(query: Option<&str>, parameter: &str) -> Option<u32> {
    #[derive(Deserialize)]
    struct PageOnly {
        page: u32,
    }
    match Params::parse(query).one(parameter) {
        None => Some(1),
        Some(text) => token::decode::<PageOnly>(text).map(|t| t.page),
    }
}

// ---------------------------------------------------------------------------------------
// getOrders filters and paging

/// The effective filters of a getOrders call. Carried inside `NextToken` so every page
/// of a listing answers the same question, whatever the caller resends.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrdersFilter {
    marketplaces: Vec<String>,
    /// `CreatedAfter`/`CreatedBefore` (purchase date) instead of `LastUpdated*`.
    by_created: bool,
    after: DateTime<Utc>,
    before: DateTime<Utc>,
    statuses: Vec<String>,
    channels: Vec<String>,
    ids: Vec<String>,
    page_size: usize,
}

/// Where a listing continues: after the last order answered (its date in the
/// filter's sense and its id), with the listing's filters.
#[derive(Debug, Serialize, Deserialize)]
struct OrdersToken {
    op: String,
    page: u32,
    last_at: DateTime<Utc>,
    last_id: String,
    filter: OrdersFilter,
}

/// The key after which a page starts.
type After = (DateTime<Utc>, String);

#[derive(Debug, Serialize, Deserialize)]
struct ItemsToken {
    op: String,
    order: String,
    page: u32,
    offset: usize,
}

impl OrdersFilter {
    /// Validates the query as the contract describes it; returns the filter, the page
    /// number and, past the first page, the key to continue after.
    fn from_params(
        params: &Params,
        now: DateTime<Utc>,
        default_page_size: u32,
    ) -> Result<(Self, u32, Option<After>), String> {
        // Required by the contract on every call, NextToken or not.
        let marketplaces = params.list("MarketplaceIds");
        if marketplaces.is_empty() {
            return Err("Missing required parameter: MarketplaceIds.".to_owned());
        }
        if marketplaces.len() > 50 {
            return Err("MarketplaceIds accepts at most 50 values.".to_owned());
        }

        if let Some(text) = params.one("NextToken") {
            return match token::decode::<OrdersToken>(text) {
                Some(t) if t.op == GET_ORDERS => {
                    Ok((t.filter, t.page, Some((t.last_at, t.last_id))))
                }
                _ => Err(
                    "Invalid NextToken: it is malformed or was not issued by getOrders.".to_owned(),
                ),
            };
        }

        let created_after = params.date("CreatedAfter")?;
        let created_before = params.date("CreatedBefore")?;
        let updated_after = params.date("LastUpdatedAfter")?;
        let updated_before = params.date("LastUpdatedBefore")?;
        let (by_created, after, before, after_name, before_name) =
            match (created_after, updated_after) {
                (Some(_), Some(_)) => {
                    return Err(
                        "Specify exactly one of CreatedAfter or LastUpdatedAfter, not both."
                            .to_owned(),
                    );
                }
                (None, None) => {
                    return Err(
                        "Either CreatedAfter or LastUpdatedAfter must be specified.".to_owned()
                    );
                }
                (Some(after), None) => {
                    if updated_before.is_some() {
                        return Err(
                            "LastUpdatedBefore cannot be set when CreatedAfter is set.".to_owned()
                        );
                    }
                    (true, after, created_before, "CreatedAfter", "CreatedBefore")
                }
                (None, Some(after)) => {
                    if created_before.is_some() {
                        return Err(
                            "CreatedBefore cannot be set when LastUpdatedAfter is set.".to_owned()
                        );
                    }
                    (
                        false,
                        after,
                        updated_before,
                        "LastUpdatedAfter",
                        "LastUpdatedBefore",
                    )
                }
            };

        let latest = now - SETTLE_TIME;
        let before = match before {
            Some(before) if before < after => {
                return Err(format!(
                    "{before_name} ({}) must be equal to or after {after_name} ({}).",
                    iso(before),
                    iso(after)
                ));
            }
            Some(before) if before > latest => {
                return Err(format!(
                    "{before_name} ({}) must be at least two minutes before the current time; \
                     the latest allowed now is {}.",
                    iso(before),
                    iso(latest)
                ));
            }
            Some(before) => before,
            None => latest,
        };

        let page_size = match params.one("MaxResultsPerPage") {
            None => default_page_size,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "MaxResultsPerPage must be an integer from 1 to 100, got {text:?}."
                    ));
                }
            },
        };

        let statuses = params.list("OrderStatuses");
        if let Some(bad) = statuses
            .iter()
            .find(|s| !OrderStatus::ALL.iter().any(|k| k.as_str() == s.as_str()))
        {
            return Err(format!("Invalid OrderStatuses value: {bad}."));
        }
        let channels = params.list("FulfillmentChannels");
        if let Some(bad) = channels
            .iter()
            .find(|c| !FULFILLMENT_CHANNELS.contains(&c.as_str()))
        {
            return Err(format!(
                "Invalid FulfillmentChannels value: {bad}. Possible values: AFN, MFN."
            ));
        }
        let ids = params.list("AmazonOrderIds");
        if ids.len() > 50 {
            return Err("AmazonOrderIds accepts at most 50 values.".to_owned());
        }

        let filter = OrdersFilter {
            marketplaces,
            by_created,
            after,
            before,
            statuses,
            channels,
            ids,
            page_size: usize::try_from(page_size).unwrap_or(100),
        };
        Ok((filter, 1, None))
    }

    /// The date this listing sorts and bounds `order` by.
    fn date_of(&self, order: &ScenarioOrder, now: DateTime<Utc>) -> DateTime<Utc> {
        if self.by_created {
            order.purchase_date(now)
        } else {
            order.last_update_date(now)
        }
    }

    /// Every filter but the date window, which the index walk applies.
    fn admits(&self, order: &ScenarioOrder, now: DateTime<Utc>) -> bool {
        self.marketplaces.contains(&order.marketplace)
            && order.is_visible(now)
            && (self.statuses.is_empty()
                || self.statuses.iter().any(|s| s == order.status.as_str()))
            && (self.channels.is_empty()
                || self.channels.iter().any(|c| c == order.channel.as_str()))
            && (self.ids.is_empty() || self.ids.contains(&order.id))
    }
}

/// The orders sorted for getOrders (by LastUpdateDate and by PurchaseDate, ties by
/// id) and by id, rebuilt only when `Shared::orders_generation` moved. Holds positions
/// in `AmazonScenario::orders`, which only ever grows or changes in place.
#[derive(Debug, Default)]
pub(super) struct OrderIndex {
    generation: Option<u64>,
    count: usize,
    by_updated: Vec<(DateTime<Utc>, usize)>,
    by_created: Vec<(DateTime<Utc>, usize)>,
    by_id: HashMap<String, usize>,
}

impl OrderIndex {
    /// Rebuilds unless built for this generation of these orders. Order times are
    /// pinned (absolute), so the sort keys do not move with the clock.
    fn refresh(&mut self, generation: u64, amazon: &AmazonScenario) {
        let orders = &amazon.orders;
        if self.generation == Some(generation) && self.count == orders.len() {
            return;
        }
        // Any instant: pinned times ignore it.
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let sorted = |date: &dyn Fn(&ScenarioOrder) -> DateTime<Utc>| {
            let mut keys: Vec<(DateTime<Utc>, usize)> = orders
                .iter()
                .enumerate()
                .map(|(i, o)| (date(o), i))
                .collect();
            keys.sort_by(|(da, ia), (db, ib)| {
                let id = |i: &usize| orders.get(*i).map(|o| o.id.as_str());
                (da, id(ia)).cmp(&(db, id(ib)))
            });
            keys
        };
        self.by_updated = sorted(&|o| o.last_update_date(now));
        self.by_created = sorted(&|o| o.purchase_date(now));
        self.by_id = orders
            .iter()
            .enumerate()
            .map(|(i, o)| (o.id.clone(), i))
            .collect();
        self.generation = Some(generation);
        self.count = orders.len();
    }

    fn find<'a>(&self, orders: &'a [ScenarioOrder], id: &str) -> Option<&'a ScenarioOrder> {
        self.by_id.get(id).and_then(|&i| orders.get(i))
    }

    /// One page: the orders `filter` admits in its date window, after `after`, at most
    /// a page size of them; and whether more follow. Walks from a binary search and
    /// stops at the window's end or one hit past the page.
    fn page<'a>(
        &self,
        orders: &'a [ScenarioOrder],
        filter: &OrdersFilter,
        after: Option<&After>,
        now: DateTime<Utc>,
    ) -> (Vec<&'a ScenarioOrder>, bool) {
        let keys = if filter.by_created {
            &self.by_created
        } else {
            &self.by_updated
        };
        let id_of = |i: usize| orders.get(i).map_or("", |o| o.id.as_str());
        let start = match after {
            Some((at, id)) => {
                keys.partition_point(|&(date, i)| (date, id_of(i)) <= (*at, id.as_str()))
            }
            None => keys.partition_point(|&(date, _)| date < filter.after),
        };
        let mut shown = Vec::new();
        for &(date, i) in keys.iter().skip(start) {
            if date > filter.before {
                break;
            }
            let Some(order) = orders.get(i) else { continue };
            if date < filter.after || !filter.admits(order, now) {
                continue;
            }
            if shown.len() == filter.page_size {
                return (shown, true);
            }
            shown.push(order);
        }
        (shown, false)
    }
}

/// Query parameters, keeping repeats (`MarketplaceIds=A&MarketplaceIds=B`).
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn parse(query: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first non-empty value of `name`.
    pub(super) fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Whether any parameter other than `name` is present (even empty).
    pub(super) fn has_other_than(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k != name)
    }

    /// All values of `name`, repeated keys and comma-separated lists alike.
    pub(super) fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub(super) fn date(&self, name: &str) -> Result<Option<DateTime<Utc>>, String> {
        self.one(name)
            .map(|text| {
                parse_iso8601(text).ok_or_else(|| {
                    format!(
                        "{name} must be an ISO 8601 date, e.g. 2026-11-20T10:15:00Z; got {text:?}."
                    )
                })
            })
            .transpose()
    }
}

/// ISO 8601 as clients send it: full RFC 3339, a date-time without zone (UTC), or a date.
fn parse_iso8601(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    if let Ok(at) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(at.and_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
}

/// ISO 8601 UTC as Amazon writes it: `2026-11-20T10:15:00Z`.
pub(super) fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

// ---------------------------------------------------------------------------------------
// JSON, field by field from the contract

fn money(currency: &str, amount: Amount) -> Value {
    json!({ "CurrencyCode": currency, "Amount": amount.to_string() })
}

/// Whether the contract shows a shipping address for this status: "only available for
/// orders with the following status values: Unshipped, PartiallyShipped, Shipped and
/// InvoiceUnconfirmed".
fn shows_address(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Unshipped
            | OrderStatus::PartiallyShipped
            | OrderStatus::Shipped
            | OrderStatus::InvoiceUnconfirmed
    )
}

/// `BuyerEmail`, `BuyerName`, `PurchaseOrderNumber` (contract `OrderBuyerInfo` /
/// `BuyerInfo` share these names).
fn insert_buyer_info(target: &mut Map<String, Value>, order: &ScenarioOrder) {
    target.insert("BuyerEmail".into(), json!(order.buyer_email()));
    target.insert("BuyerName".into(), json!(order.buyer_name()));
    if let Some(number) = order.purchase_order_number() {
        target.insert("PurchaseOrderNumber".into(), json!(number));
    }
}

/// Contract `Address` (Orders v0, PascalCase). The phone is suppressed as the contract
/// says: for every AFN order, and for a shipped MFN order past its LatestDeliveryDate.
fn address_json(order: &ScenarioOrder, now: DateTime<Utc>) -> Value {
    let address: ScenarioAddress = order.ship_to();
    let past_delivery = order
        .latest_delivery
        .is_some_and(|when| when.resolve(now) < now);
    let phone_suppressed = order.channel == FulfillmentChannel::Afn
        || (order.status == OrderStatus::Shipped && past_delivery);
    let mut o = Map::new();
    o.insert("Name".into(), json!(address.name));
    if let Some(company) = &address.company {
        o.insert("CompanyName".into(), json!(company));
    }
    o.insert("AddressLine1".into(), json!(address.address_line1));
    if let Some(line) = &address.address_line2 {
        o.insert("AddressLine2".into(), json!(line));
    }
    o.insert("City".into(), json!(address.city));
    o.insert("StateOrRegion".into(), json!(address.state_or_region));
    o.insert("PostalCode".into(), json!(address.postal_code));
    o.insert("CountryCode".into(), json!(address.country_code));
    if let Some(phone) = address.phone.as_ref().filter(|_| !phone_suppressed) {
        o.insert("Phone".into(), json!(phone));
    }
    o.insert("AddressType".into(), json!(address.address_type.as_str()));
    Value::Object(o)
}

/// Contract `Order`; `BuyerInfo` and `ShippingAddress` only as `disclosure` allows.
fn order_json(order: &ScenarioOrder, now: DateTime<Utc>, disclosure: Disclosure) -> Value {
    let currency = order.currency_code();
    let canceled = order.status == OrderStatus::Canceled;
    let shipped: u32 = order.items.iter().map(|i| order.quantity_shipped(i)).sum();
    let ordered: u32 = order.items.iter().map(|i| i.quantity).sum();
    let unshipped = if canceled {
        0
    } else {
        ordered.saturating_sub(shipped)
    };

    let mut o = Map::new();
    let mut put = |key: &str, value: Value| {
        o.insert(key.to_owned(), value);
    };
    put("AmazonOrderId", json!(order.id));
    if let Some(seller_order_id) = &order.seller_order_id {
        put("SellerOrderId", json!(seller_order_id));
    }
    put("PurchaseDate", json!(iso(order.purchase_date(now))));
    put("LastUpdateDate", json!(iso(order.last_update_date(now))));
    put("OrderStatus", json!(order.status.as_str()));
    put("FulfillmentChannel", json!(order.channel.as_str()));
    put("SalesChannel", json!(sales_channel(order)));
    put("ShipServiceLevel", json!(ship_service_level(order)));
    // No payment authorized yet: the contract has no total to give.
    if !order.status.hides_pricing() {
        put("OrderTotal", money(&currency, order.total()));
    }
    put("NumberOfItemsShipped", json!(shipped));
    put("NumberOfItemsUnshipped", json!(unshipped));
    put("PaymentMethod", json!("Other"));
    put("PaymentMethodDetails", json!(["Standard"]));
    put("MarketplaceId", json!(order.marketplace));
    put(
        "ShipmentServiceLevelCategory",
        json!(order.ship_category.as_deref().unwrap_or("Standard")),
    );
    put("OrderType", json!(order.order_type.as_str()));
    // Contract: these dates are "only returned for seller-fulfilled orders", and
    // LatestDeliveryDate not while PendingAvailability, Pending or Canceled.
    let seller_fulfilled = order.channel == FulfillmentChannel::Mfn;
    let latest_delivery_shown = !order.status.hides_pricing() && !canceled;
    for (key, when, shown) in [
        ("EarliestShipDate", order.earliest_ship, seller_fulfilled),
        ("LatestShipDate", order.latest_ship, seller_fulfilled),
        (
            "EarliestDeliveryDate",
            order.earliest_delivery,
            seller_fulfilled,
        ),
        (
            "LatestDeliveryDate",
            order.latest_delivery,
            seller_fulfilled && latest_delivery_shown,
        ),
    ] {
        if let Some(when) = when.filter(|_| shown) {
            put(key, json!(iso(when.resolve(now))));
        }
    }
    put("IsBusinessOrder", json!(order.business));
    put("IsPrime", json!(order.prime));
    put("IsPremiumOrder", json!(false));
    put("IsGlobalExpressEnabled", json!(false));
    put("IsReplacementOrder", json!(false));
    put("IsSoldByAB", json!(false));
    put("IsIBA", json!(false));
    put("IsISPU", json!(false));
    put("IsAccessPointOrder", json!(false));
    put("HasRegulatedItems", json!(false));
    if disclosure.shipping_address && shows_address(order.status) {
        put("ShippingAddress", address_json(order, now));
    }
    if disclosure.buyer_info {
        let mut buyer = Map::new();
        insert_buyer_info(&mut buyer, order);
        put("BuyerInfo", Value::Object(buyer));
    }
    merge_extra(&mut o, &order.extra);
    Value::Object(o)
}

/// Contract `OrderItem`; prices, taxes and gift status withheld while payment is pending.
fn item_json(order: &ScenarioOrder, item: &ScenarioItem) -> Value {
    let currency = order.currency_code();
    let mut o = Map::new();
    let mut put = |key: &str, value: Value| {
        o.insert(key.to_owned(), value);
    };
    put("ASIN", json!(item.asin));
    put("OrderItemId", json!(item.id));
    put("SellerSKU", json!(item.sku));
    put("Title", json!(item.title));
    put("QuantityOrdered", json!(item.quantity));
    put("QuantityShipped", json!(order.quantity_shipped(item)));
    put("ProductInfo", json!({ "NumberOfItems": "1" }));
    if !order.status.hides_pricing() {
        put("ItemPrice", money(&currency, item.item_price()));
        put("ItemTax", money(&currency, item.tax));
        put("ShippingPrice", money(&currency, item.shipping));
        put("ShippingTax", money(&currency, item.shipping_tax));
        put("PromotionDiscount", money(&currency, Amount::default()));
        put("PromotionDiscountTax", money(&currency, Amount::default()));
        put("IsGift", json!("false"));
    }
    put("ConditionId", json!("New"));
    put("ConditionSubtypeId", json!("New"));
    put("IsTransparency", json!(false));
    put("SerialNumberRequired", json!(false));
    // The contract spells these booleans as strings.
    put(
        "BuyerRequestedCancel",
        match &item.buyer_cancel_reason {
            Some(reason) => json!({
                "IsBuyerRequestedCancel": "true",
                "BuyerCancelReason": reason,
            }),
            None => json!({ "IsBuyerRequestedCancel": "false", "BuyerCancelReason": "" }),
        },
    );
    merge_extra(&mut o, &item.extra);
    Value::Object(o)
}

fn merge_extra(target: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (key, value) in extra {
        if value.is_null() {
            target.remove(key);
        } else {
            target.insert(key.clone(), value.clone());
        }
    }
}

fn sales_channel(order: &ScenarioOrder) -> String {
    if let Some(channel) = &order.sales_channel {
        return channel.clone();
    }
    match order.marketplace.as_str() {
        MARKETPLACE_CA => "Amazon.ca",
        "A1AM78C64UM0Y8" => "Amazon.com.mx",
        "A2Q3Y263D00KWC" => "Amazon.com.br",
        _ => "Amazon.com",
    }
    .to_owned()
}

fn ship_service_level(order: &ScenarioOrder) -> String {
    if let Some(level) = &order.ship_service_level {
        return level.clone();
    }
    match (order.channel, order.marketplace.as_str()) {
        (FulfillmentChannel::Mfn, MARKETPLACE_CA) => "Std CA D2D Dom",
        (FulfillmentChannel::Mfn, _) => "Std US D2D Dom",
        (FulfillmentChannel::Afn, _) => "Standard",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_accept_lists_and_repeats() {
        let p = Params::parse(Some("MarketplaceIds=A,B&MarketplaceIds=C&OrderStatuses="));
        assert_eq!(p.list("MarketplaceIds"), vec!["A", "B", "C"]);
        assert!(p.list("OrderStatuses").is_empty());
        assert_eq!(p.one("OrderStatuses"), None);
    }

    #[test]
    fn iso_dates_parse_leniently() {
        let z = parse_iso8601("2026-11-20T10:15:00Z");
        assert_eq!(z, parse_iso8601("2026-11-20T10:15:00"));
        assert_eq!(z, parse_iso8601("2026-11-20T11:15:00+01:00"));
        assert_eq!(z, parse_iso8601("2026-11-20T10:15:00.000Z"));
        assert!(parse_iso8601("2026-11-20").is_some());
        assert!(parse_iso8601("yesterday").is_none());
        assert_eq!(z.map(iso).as_deref(), Some("2026-11-20T10:15:00Z"));
    }
}
