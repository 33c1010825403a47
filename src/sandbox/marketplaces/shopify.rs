//! Shopify's Admin GraphQL API, faked under `/shopify` (standing in for
//! `https://{shop}.myshopify.com`): `POST /shopify/admin/api/{version}/graphql.json`,
//! journaled as `shopify.graphql` (the name faults target).
//!
//! It is a fake, not a GraphQL server: it recognises the operations nightdesk sends by
//! their root field — `orders(…)` (variables `first`, `after`, `query` with
//! `updated_at:>=`/`<=` bounds), `order(id:)` (variables `id`, `itemsAfter`),
//! `refundCreate` (variable `input`, `@idempotent(key:)` as a literal or a variable) and
//! `orderCancel` (variables `orderId`, `reason`, `refund`, `restock`) — and answers in
//! the documented shape (`data`, `errors`, `extensions.cost`). Each call is charged to
//! a leaky bucket ([`ShopifyThrottle`]); a call whose requested cost exceeds what the
//! bucket holds gets Shopify's HTTP 200 `THROTTLED` error. A wrong
//! `X-Shopify-Access-Token` gets HTTP 401.
//!
//! Orders carry their payment as one `transactions` entry (`SALE`, `SUCCESS`,
//! `shopify_payments`) while paid, for refunds to name as `parentId`. `refundCreate`
//! checks the line items and the amount against what is left to refund and moves
//! `displayFinancialStatus` to `PARTIALLY_REFUNDED`/`REFUNDED`. `orderCancel` answers a
//! job (`done: false`) whose cancellation shows on the order once the cancel delay
//! ([`crate::sandbox::Sandbox::shopify_set_cancel_delay`], none by default) has passed
//! by the sandbox clock.
//!
//! Every request is journaled as `shopify.graphql`; faults may also target one root
//! field, `shopify.orders`, `shopify.order`, `shopify.refundCreate` or
//! `shopify.orderCancel` (with `after_effect`, the mutation happens and its answer is
//! lost), answered in Shopify's `INTERNAL_SERVER_ERROR` shape.
//!
//! Written from Shopify's documentation alone: it never uses the connector's types or
//! parsing, and takes "now" only from the sandbox clock (the bucket refills on tokio's).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::super::scenario::When;
use super::super::{Shared, lock};

/// The access token the sandbox shop accepts unless the scenario sets another.
pub const SANDBOX_ACCESS_TOKEN: &str = "shpat_sandbox_token";
/// The shop handle unless the scenario sets another.
pub const SANDBOX_SHOP: &str = "ridgeline-coffee";

/// The scenario's Shopify data (`shopify:` in a scenario file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShopifyScenario {
    /// The Admin API access token the shop accepts.
    pub access_token: String,
    pub shop: String,
    /// The shop's currency (`shopMoney.currencyCode`).
    pub currency: String,
    pub throttle: ShopifyThrottle,
    pub orders: Vec<ShopifyScenarioOrder>,
}

impl Default for ShopifyScenario {
    fn default() -> Self {
        Self {
            access_token: SANDBOX_ACCESS_TOKEN.to_owned(),
            shop: SANDBOX_SHOP.to_owned(),
            currency: "USD".to_owned(),
            throttle: ShopifyThrottle::default(),
            orders: Vec::new(),
        }
    }
}

/// The calculated-cost bucket (Standard plan: 1000 points, 100 a second).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShopifyThrottle {
    pub maximum_available: f64,
    pub restore_rate: f64,
}

impl Default for ShopifyThrottle {
    fn default() -> Self {
        Self {
            maximum_available: 1000.0,
            restore_rate: 100.0,
        }
    }
}

/// An order as the shop holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyScenarioOrder {
    /// The numeric part of `gid://shopify/Order/{id}`.
    pub id: u64,
    /// `#1001`.
    pub name: String,
    pub created: When,
    /// `updatedAt`; `created` when not set.
    #[serde(default)]
    pub updated: Option<When>,
    #[serde(default)]
    pub cancelled: Option<When>,
    /// `CUSTOMER`, `DECLINED`, `FRAUD`, `INVENTORY`, `OTHER`, `STAFF`.
    #[serde(default)]
    pub cancel_reason: Option<String>,
    /// `displayFinancialStatus`.
    #[serde(default = "paid")]
    pub financial_status: String,
    /// `displayFulfillmentStatus`.
    #[serde(default = "unfulfilled")]
    pub fulfillment_status: String,
    /// The order's contact e-mail (`Order.email`).
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub customer: Option<ShopifyScenarioCustomer>,
    #[serde(default)]
    pub shipping_address: Option<ShopifyScenarioAddress>,
    #[serde(default)]
    pub line_items: Vec<ShopifyScenarioLineItem>,
    #[serde(default)]
    pub fulfillments: Vec<ShopifyScenarioFulfillment>,
    /// Fields of the order node replaced as given (to serve data that breaks the
    /// contract, e.g. `{"createdAt": "yesterday"}`).
    #[serde(default)]
    pub raw_overrides: Map<String, Value>,
}

fn paid() -> String {
    "PAID".to_owned()
}

fn unfulfilled() -> String {
    "UNFULFILLED".to_owned()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShopifyScenarioCustomer {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShopifyScenarioAddress {
    pub name: Option<String>,
    pub zip: Option<String>,
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2 (`countryCodeV2`).
    pub country_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyScenarioLineItem {
    #[serde(default)]
    pub sku: Option<String>,
    pub title: String,
    pub quantity: i64,
    /// Units already fulfilled.
    #[serde(default)]
    pub fulfilled: i64,
    /// Unit price, e.g. `"21.25"`.
    pub price: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyScenarioFulfillment {
    /// `FulfillmentStatus`: `SUCCESS`, `CANCELLED`, `ERROR`, `FAILURE`.
    #[serde(default = "success")]
    pub status: String,
    #[serde(default)]
    pub company: Option<String>,
    pub number: String,
    #[serde(default)]
    pub url: Option<String>,
}

fn success() -> String {
    "SUCCESS".to_owned()
}

impl ShopifyScenario {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.access_token.trim().is_empty() {
            return Err("access_token is empty".to_owned());
        }
        let t = self.throttle;
        if !(t.maximum_available.is_finite()
            && t.maximum_available >= 1.0
            && t.restore_rate.is_finite()
            && t.restore_rate > 0.0)
        {
            return Err("throttle needs maximum_available >= 1 and restore_rate > 0".to_owned());
        }
        let mut ids = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for (index, order) in self.orders.iter().enumerate() {
            let at = |m: String| format!("orders[{index}] ({}): {m}", order.name);
            if !ids.insert(order.id) {
                return Err(at(format!("duplicate id {}", order.id)));
            }
            if !names.insert(order.name.as_str()) || order.name.trim().is_empty() {
                return Err(at("empty or duplicate name".to_owned()));
            }
            for item in &order.line_items {
                if item.quantity < 0 || !(0..=item.quantity).contains(&item.fulfilled) {
                    return Err(at(format!("line item {:?}: bad quantities", item.title)));
                }
                if cents(&item.price).is_none() {
                    return Err(at(format!("line item {:?}: bad price", item.title)));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn pin_times(&mut self, now: DateTime<Utc>) {
        let pin = |w: &mut When| *w = When::At(w.resolve(now));
        for order in &mut self.orders {
            pin(&mut order.created);
            order.updated.get_or_insert(order.created);
            if let Some(w) = order.updated.as_mut() {
                pin(w);
            }
            if let Some(w) = order.cancelled.as_mut() {
                pin(w);
            }
        }
    }
}

/// A refund `refundCreate` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShopifySandboxRefund {
    /// `gid://shopify/Refund/…`.
    pub id: String,
    pub order_id: String,
    /// The `@idempotent` key it was made with.
    pub idempotency_key: Option<String>,
    /// The `input` as received.
    pub input: Value,
    /// The transactions' sum, in cents.
    pub amount_cents: i64,
}

/// An `orderCancel` job: the order shows cancelled once `due` has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CancelJob {
    order_id: String,
    reason: String,
    due: DateTime<Utc>,
}

/// What the fake holds while it runs.
#[derive(Debug)]
pub(crate) struct ShopifyState {
    pub(crate) scenario: ShopifyScenario,
    /// Points in the bucket at `refilled`.
    available: f64,
    refilled: Instant,
    throttled: u32,
    refunds: Vec<ShopifySandboxRefund>,
    /// Idempotency key → the refund's index.
    keys: HashMap<String, usize>,
    next_id: u64,
    /// How long an `orderCancel` job runs (sandbox clock).
    cancel_delay: chrono::Duration,
    /// Jobs whose cancellation is not on the order yet.
    jobs: Vec<CancelJob>,
    /// Cancellations `orderCancel` accepted.
    cancellations: usize,
}

impl Default for ShopifyState {
    fn default() -> Self {
        Self::new(ShopifyScenario::default())
    }
}

impl ShopifyState {
    pub(crate) fn new(scenario: ShopifyScenario) -> Self {
        Self {
            available: scenario.throttle.maximum_available,
            refilled: Instant::now(),
            scenario,
            throttled: 0,
            refunds: Vec::new(),
            keys: HashMap::new(),
            next_id: 9_000_000,
            cancel_delay: chrono::Duration::zero(),
            jobs: Vec::new(),
            cancellations: 0,
        }
    }

    /// Applies the cancellations whose job has finished by `now`.
    fn settle_jobs(&mut self, now: DateTime<Utc>) {
        let (due, pending): (Vec<CancelJob>, Vec<CancelJob>) =
            self.jobs.drain(..).partition(|j| j.due <= now);
        self.jobs = pending;
        for job in due {
            if let Some(order) = self
                .scenario
                .orders
                .iter_mut()
                .find(|o| gid("Order", o.id) == job.order_id)
            {
                order.cancelled = Some(When::At(job.due));
                order.cancel_reason = Some(job.reason);
                order.updated = Some(When::At(job.due));
            }
        }
    }

    fn refill(&mut self, now: Instant) {
        let t = self.scenario.throttle;
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.available = (self.available + elapsed * t.restore_rate).min(t.maximum_available);
        self.refilled = now;
    }

    fn cost(&self, requested: f64, actual: Option<f64>) -> Value {
        let t = self.scenario.throttle;
        json!({
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": t.maximum_available,
                "currentlyAvailable": self.available.floor(),
                "restoreRate": t.restore_rate,
            }
        })
    }
}

/// The operation a request under `/shopify` is (for the journal and faults), if known.
pub(crate) fn classify(method: &str, rest: &[&str]) -> Option<&'static str> {
    match (method, rest) {
        ("POST", ["admin", "api", version, "graphql.json"]) if !version.is_empty() => {
            Some("shopify.graphql")
        }
        _ => None,
    }
}

pub(in crate::sandbox) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    router.route("/shopify/admin/api/{version}/graphql.json", post(graphql))
}

impl crate::sandbox::Sandbox {
    /// How many calls the Shopify fake answered `THROTTLED`.
    pub fn shopify_throttled(&self) -> u32 {
        lock(&self.shared.shopify).throttled
    }

    /// Empties the Shopify cost bucket (another app of the same shop spent it).
    pub fn shopify_drain_bucket(&self) {
        let mut state = lock(&self.shared.shopify);
        state.available = 0.0;
        state.refilled = Instant::now();
    }

    /// The Shopify orders as the fake holds them now (times absolute).
    pub fn shopify_orders(&self) -> Vec<ShopifyScenarioOrder> {
        lock(&self.shared.shopify).scenario.orders.clone()
    }

    /// Refunds made by `refundCreate`, oldest first (a repeated idempotency key counts
    /// once).
    pub fn shopify_refunds(&self) -> Vec<ShopifySandboxRefund> {
        lock(&self.shared.shopify).refunds.clone()
    }

    /// How many cancellations `orderCancel` accepted (the effects, not the calls).
    pub fn shopify_cancellations(&self) -> usize {
        lock(&self.shared.shopify).cancellations
    }

    /// How long an `orderCancel` job runs before the order shows cancelled (sandbox
    /// clock; none by default). Applies to jobs started from now on.
    pub fn shopify_set_cancel_delay(&self, delay: chrono::Duration) {
        lock(&self.shared.shopify).cancel_delay = delay.max(chrono::Duration::zero());
    }

    /// Changes a Shopify order in place; relative times are measured from now and
    /// `updatedAt` becomes now.
    pub fn update_shopify_order(
        &self,
        name: &str,
        change: impl FnOnce(&mut ShopifyScenarioOrder),
    ) -> Result<(), crate::sandbox::SandboxError> {
        let now = self.shared.now();
        let mut state = lock(&self.shared.shopify);
        let Some(order) = state.scenario.orders.iter_mut().find(|o| o.name == name) else {
            return Err(crate::sandbox::SandboxError::UnknownOrder(name.to_owned()));
        };
        change(order);
        order.updated = Some(When::At(now));
        let mut one = ShopifyScenario {
            orders: vec![order.clone()],
            ..ShopifyScenario::default()
        };
        one.pin_times(now);
        if let Some(pinned) = one.orders.pop() {
            *order = pinned;
        }
        Ok(())
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `"12.34"` in cents; the sandbox's own reading, not the connector's.
fn cents(amount: &str) -> Option<i64> {
    let (whole, frac) = amount.trim().split_once('.').unwrap_or((amount.trim(), ""));
    if whole.is_empty() || frac.len() > 2 {
        return None;
    }
    let whole: i64 = whole.parse().ok().filter(|w: &i64| *w >= 0)?;
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().ok()?
    };
    whole.checked_mul(100)?.checked_add(frac)
}

fn amount(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn gid(kind: &str, id: u64) -> String {
    format!("gid://shopify/{kind}/{id}")
}

fn money(cents: i64, currency: &str) -> Value {
    json!({ "shopMoney": { "amount": amount(cents), "currencyCode": currency } })
}

/// The `N` of `field(first: N` in the query text, if any.
fn first_of(query: &str, field: &str) -> Option<i64> {
    let at = query.find(&format!("{field}(first:"))? + field.len() + "(first:".len();
    let digits: String = query[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Whether the query's root selection is `field(` (`orders(`, `order(`, …).
fn has_field(query: &str, field: &str) -> bool {
    let mut rest = query;
    while let Some(at) = rest.find(field) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + field.len()..].trim_start().chars().next();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && after == Some('(') {
            return true;
        }
        rest = &rest[at + field.len()..];
    }
    false
}

fn line_items_json(
    order: &ShopifyScenarioOrder,
    currency: &str,
    first: usize,
    after: usize,
) -> Value {
    let nodes: Vec<Value> = order
        .line_items
        .iter()
        .enumerate()
        .skip(after)
        .take(first)
        .map(|(index, item)| {
            json!({
                "id": gid("LineItem", order.id * 1000 + index as u64 + 1),
                "sku": item.sku,
                "title": item.title,
                "quantity": item.quantity,
                "unfulfilledQuantity": item.quantity - item.fulfilled,
                "originalUnitPriceSet": money(cents(&item.price).unwrap_or(0), currency),
            })
        })
        .collect();
    let end = after + nodes.len();
    json!({
        "pageInfo": {
            "hasNextPage": end < order.line_items.len(),
            "endCursor": (!nodes.is_empty()).then(|| format!("li:{end}")),
        },
        "nodes": nodes,
    })
}

fn order_json(
    order: &ShopifyScenarioOrder,
    currency: &str,
    now: DateTime<Utc>,
    items_first: usize,
) -> Value {
    let total: i64 = order
        .line_items
        .iter()
        .map(|i| cents(&i.price).unwrap_or(0) * i.quantity)
        .sum();
    let mut node = json!({
        "id": gid("Order", order.id),
        "name": order.name,
        "createdAt": iso(order.created.resolve(now)),
        "updatedAt": iso(order.updated.unwrap_or(order.created).resolve(now)),
        "cancelledAt": order.cancelled.map(|c| iso(c.resolve(now))),
        "cancelReason": order.cancel_reason,
        "displayFinancialStatus": order.financial_status,
        "displayFulfillmentStatus": order.fulfillment_status,
        "email": order.email,
        "totalPriceSet": money(total, currency),
        "customer": order.customer.as_ref().map(|c| json!({
            "email": c.email, "firstName": c.first_name, "lastName": c.last_name,
        })),
        "shippingAddress": order.shipping_address.as_ref().map(|a| json!({
            "name": a.name, "zip": a.zip, "city": a.city, "countryCodeV2": a.country_code,
        })),
        "lineItems": line_items_json(order, currency, items_first, 0),
        "fulfillments": order.fulfillments.iter().map(|f| json!({
            "status": f.status,
            "trackingInfo": [{ "company": f.company, "number": f.number, "url": f.url }],
        })).collect::<Vec<_>>(),
        "transactions": sale_transaction(order, total, currency).into_iter().collect::<Vec<_>>(),
    });
    if let Some(fields) = node.as_object_mut() {
        for (key, value) in &order.raw_overrides {
            fields.insert(key.clone(), value.clone());
        }
    }
    node
}

/// The order's payment, while it was taken: what a refund names as its parent.
fn sale_transaction(order: &ShopifyScenarioOrder, total: i64, currency: &str) -> Option<Value> {
    let taken = matches!(
        order.financial_status.as_str(),
        "PAID" | "PARTIALLY_PAID" | "PARTIALLY_REFUNDED" | "REFUNDED"
    );
    taken.then(|| {
        json!({
            "id": sale_id(order.id),
            "kind": "SALE",
            "status": "SUCCESS",
            "gateway": "shopify_payments",
            "amountSet": money(total, currency),
        })
    })
}

fn sale_id(order_id: u64) -> String {
    gid("OrderTransaction", order_id * 10 + 1)
}

fn error_body(message: &str, code: &str) -> Value {
    json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })
}

/// `updated_at` bounds of a search string: (`>=` or `>`, `<=` or `<`).
type Bound = Option<(DateTime<Utc>, bool)>;

fn bounds(search: &str) -> Result<(Bound, Bound), String> {
    let mut lower = None;
    let mut upper = None;
    for term in search.split_whitespace() {
        let Some(rest) = term.strip_prefix("updated_at:") else {
            continue;
        };
        let (op, value) = ["<=", ">=", "<", ">"]
            .iter()
            .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v)))
            .ok_or_else(|| format!("unsupported updated_at filter {term:?}"))?;
        let value = value.trim_matches(|c| c == '\'' || c == '"');
        let at = DateTime::parse_from_rfc3339(value)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| format!("invalid date in {term:?}"))?;
        match op {
            ">=" => lower = Some((at, true)),
            ">" => lower = Some((at, false)),
            "<=" => upper = Some((at, true)),
            _ => upper = Some((at, false)),
        }
    }
    Ok((lower, upper))
}

fn within(at: DateTime<Utc>, lower: Bound, upper: Bound) -> bool {
    let above = lower.is_none_or(|(l, inclusive)| if inclusive { at >= l } else { at > l });
    let below = upper.is_none_or(|(u, inclusive)| if inclusive { at <= u } else { at < u });
    above && below
}

/// `POST /shopify/admin/api/{version}/graphql.json`.
async fn graphql(
    State(state): State<Arc<Shared>>,
    Path(_version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.now();
    let mut shop = lock(&state.shopify);
    shop.settle_jobs(now);
    let token = headers
        .get("X-Shopify-Access-Token")
        .and_then(|v| v.to_str().ok());
    if token != Some(shop.scenario.access_token.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({
                "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
            })),
        )
            .into_response();
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(
                    json!({ "errors": { "query": "Required parameter missing or invalid" } }),
                ),
            )
                .into_response();
        }
    };
    let query = request
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let variables = request
        .get("variables")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let var = |name: &str| variables.get(name).filter(|v| !v.is_null());
    let items_first = first_of(&query, "lineItems").unwrap_or(10).clamp(1, 250) as usize;

    // What the query may cost: 2 per connection plus its nodes' fields.
    let node_cost = 4.0 + items_first as f64;
    let (requested, kind) = if has_field(&query, "refundCreate") {
        (10.0, "refundCreate")
    } else if has_field(&query, "orderCancel") {
        (10.0, "orderCancel")
    } else if has_field(&query, "orders") {
        let first = var("first").and_then(Value::as_i64).unwrap_or(0) as f64;
        (2.0 + first * node_cost, "orders")
    } else if has_field(&query, "order") {
        (1.0 + node_cost, "order")
    } else {
        return axum::Json(error_body(
            "The sandbox does not serve this query (orders, order, refundCreate, orderCancel only)",
            "undefinedField",
        ))
        .into_response();
    };
    // A fault aimed at this root field (the journal names every call shopify.graphql).
    let fault = lock(&state.faults).take(&format!("shopify.{kind}"), Some(1));
    let fault_status = fault
        .as_ref()
        .and_then(|f| f.status)
        .and_then(|s| StatusCode::from_u16(s).ok())
        .filter(|s| *s != StatusCode::OK);
    let after_effect = fault.as_ref().is_some_and(|f| f.after_effect);
    if let Some(status) = fault_status
        && !after_effect
    {
        return internal_error(status);
    }
    shop.refill(Instant::now());
    if requested > shop.available {
        shop.throttled += 1;
        let mut body = error_body("Throttled", "THROTTLED");
        body["extensions"] = json!({ "cost": shop.cost(requested, None) });
        return axum::Json(body).into_response();
    }

    let currency = shop.scenario.currency.clone();
    let (data, actual) = match kind {
        "orders" => {
            let first = var("first").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=250).contains(&first) {
                return axum::Json(error_body(
                    "you must provide one of first or last (1-250)",
                    "BAD_REQUEST",
                ))
                .into_response();
            }
            let search = var("query").and_then(Value::as_str).unwrap_or_default();
            let (lower, upper) = match bounds(search) {
                Ok(b) => b,
                Err(message) => {
                    return axum::Json(error_body(&message, "BAD_REQUEST")).into_response();
                }
            };
            let mut matching: Vec<&ShopifyScenarioOrder> = shop
                .scenario
                .orders
                .iter()
                .filter(|o| o.created.resolve(now) <= now)
                .filter(|o| within(o.updated.unwrap_or(o.created).resolve(now), lower, upper))
                .collect();
            let key =
                |o: &ShopifyScenarioOrder| (o.updated.unwrap_or(o.created).resolve(now), o.id);
            matching.sort_by_key(|o| key(o));
            let start = match var("after").and_then(Value::as_str) {
                None => 0,
                Some(cursor) => {
                    let parsed = cursor.strip_prefix("o:").and_then(|rest| {
                        let (ts, id) = rest.split_once(':')?;
                        Some((ts.parse::<i64>().ok()?, id.parse::<u64>().ok()?))
                    });
                    let Some((ts, id)) = parsed else {
                        return axum::Json(error_body("Invalid cursor", "BAD_REQUEST"))
                            .into_response();
                    };
                    matching
                        .iter()
                        .position(|o| {
                            let (at, oid) = key(o);
                            (at.timestamp(), oid) > (ts, id)
                        })
                        .unwrap_or(matching.len())
                }
            };
            let page: Vec<&ShopifyScenarioOrder> = matching
                .iter()
                .skip(start)
                .take(first as usize)
                .copied()
                .collect();
            let end_cursor = page.last().map(|o| {
                let (at, id) = key(o);
                format!("o:{}:{id}", at.timestamp())
            });
            let has_next = start + page.len() < matching.len();
            let nodes: Vec<Value> = page
                .iter()
                .map(|o| order_json(o, &currency, now, items_first))
                .collect();
            let actual = 2.0 + nodes.len() as f64 * node_cost;
            (
                json!({ "orders": {
                    "pageInfo": { "hasNextPage": has_next, "endCursor": end_cursor },
                    "nodes": nodes,
                } }),
                actual,
            )
        }
        "order" => {
            let id = var("id").and_then(Value::as_str).unwrap_or_default();
            let found = shop
                .scenario
                .orders
                .iter()
                .find(|o| gid("Order", o.id) == id && o.created.resolve(now) <= now);
            let node = match (found, var("itemsAfter").and_then(Value::as_str)) {
                (None, _) => Value::Null,
                (Some(o), None) => order_json(o, &currency, now, items_first),
                (Some(o), Some(cursor)) => {
                    let Some(after) = cursor
                        .strip_prefix("li:")
                        .and_then(|n| n.parse::<usize>().ok())
                    else {
                        return axum::Json(error_body("Invalid cursor", "BAD_REQUEST"))
                            .into_response();
                    };
                    json!({ "id": gid("Order", o.id),
                            "lineItems": line_items_json(o, &currency, items_first, after) })
                }
            };
            (json!({ "order": node }), requested)
        }
        "refundCreate" => (refund_create(&mut shop, &query, &variables), requested),
        _ => (order_cancel(&mut shop, &variables, now), requested),
    };
    shop.available = (shop.available - actual).max(0.0);
    if let Some(status) = fault_status {
        // It happened; the answer is lost.
        return internal_error(status);
    }
    let cost = shop.cost(requested, Some(actual));
    axum::Json(json!({ "data": data, "extensions": { "cost": cost } })).into_response()
}

/// Shopify's answer when something broke on its side.
fn internal_error(status: StatusCode) -> Response {
    (
        status,
        axum::Json(json!({ "errors": [{
            "message": "Internal error. Looks like something went wrong on our end.",
            "extensions": { "code": "INTERNAL_SERVER_ERROR" },
        }] })),
    )
        .into_response()
}

/// The `@idempotent(key: …)` of a mutation: a string literal or a variable.
fn idempotency_key(query: &str, variables: &Map<String, Value>) -> Option<String> {
    let at = query.find("@idempotent")?;
    let rest = query[at..].split_once("key:")?.1.trim_start();
    if let Some(literal) = rest.strip_prefix('"') {
        return literal.split_once('"').map(|(k, _)| k.to_owned());
    }
    let name: String = rest
        .strip_prefix('$')?
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    variables.get(&name)?.as_str().map(str::to_owned)
}

fn user_error(field: &str, message: &str) -> Value {
    json!([{ "field": [field], "message": message }])
}

fn refund_create(shop: &mut ShopifyState, query: &str, variables: &Map<String, Value>) -> Value {
    let key = idempotency_key(query, variables);
    let currency = shop.scenario.currency.clone();
    let answer = |refund: &ShopifySandboxRefund| {
        json!({ "refundCreate": {
            "refund": { "id": refund.id, "totalRefundedSet": money(refund.amount_cents, &currency) },
            "order": { "id": refund.order_id },
            "userErrors": [],
        } })
    };
    if let Some(index) = key.as_ref().and_then(|k| shop.keys.get(k))
        && let Some(refund) = shop.refunds.get(*index)
    {
        return answer(refund);
    }
    let input = variables.get("input").cloned().unwrap_or(Value::Null);
    let order_id = input
        .get("orderId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(order) = shop
        .scenario
        .orders
        .iter()
        .find(|o| gid("Order", o.id) == order_id)
    else {
        return json!({ "refundCreate": { "refund": null, "order": null,
            "userErrors": user_error("orderId", "Order does not exist") } });
    };
    let total: i64 = order
        .line_items
        .iter()
        .map(|i| cents(&i.price).unwrap_or(0) * i.quantity)
        .sum();
    let refund_error = |field: &str, message: &str| {
        json!({ "refundCreate": { "refund": null, "order": null,
            "userErrors": user_error(field, message) } })
    };
    for line in input
        .get("refundLineItems")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = line
            .get("lineItemId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let quantity = line.get("quantity").and_then(Value::as_i64).unwrap_or(0);
        let found = order
            .line_items
            .iter()
            .enumerate()
            .find(|(index, _)| gid("LineItem", order.id * 1000 + *index as u64 + 1) == id);
        match found {
            None => return refund_error("refundLineItems", "Line item does not exist"),
            Some((_, item)) if !(1..=item.quantity).contains(&quantity) => {
                return refund_error("refundLineItems", "Quantity is invalid");
            }
            Some(_) => {}
        }
    }
    let mut amount_cents = 0;
    for transaction in input
        .get("transactions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let amount = transaction
            .get("amount")
            .and_then(|a| {
                a.as_str()
                    .map(str::to_owned)
                    .or_else(|| a.as_f64().map(|f| format!("{f:.2}")))
            })
            .and_then(|a| cents(&a));
        let Some(amount) = amount else {
            return json!({ "refundCreate": { "refund": null, "order": null,
                "userErrors": user_error("transactions", "Amount is invalid") } });
        };
        if let Some(parent) = transaction.get("parentId").and_then(Value::as_str)
            && parent != sale_id(order.id)
        {
            return refund_error("transactions", "Parent transaction does not exist");
        }
        amount_cents += amount;
    }
    let refunded: i64 = shop
        .refunds
        .iter()
        .filter(|r| r.order_id == order_id)
        .map(|r| r.amount_cents)
        .sum();
    if refunded + amount_cents > total {
        return json!({ "refundCreate": { "refund": null, "order": null,
            "userErrors": user_error("transactions", "Refund amount exceeds the refundable amount") } });
    }
    shop.next_id += 1;
    let refund = ShopifySandboxRefund {
        id: gid("Refund", shop.next_id),
        order_id,
        idempotency_key: key.clone(),
        input,
        amount_cents,
    };
    let body = answer(&refund);
    let refunded_now = refunded + refund.amount_cents;
    if refund.amount_cents > 0
        && let Some(order) = shop
            .scenario
            .orders
            .iter_mut()
            .find(|o| gid("Order", o.id) == refund.order_id)
    {
        order.financial_status = if refunded_now >= total {
            "REFUNDED"
        } else {
            "PARTIALLY_REFUNDED"
        }
        .to_owned();
    }
    shop.refunds.push(refund);
    if let Some(key) = key {
        shop.keys.insert(key, shop.refunds.len() - 1);
    }
    body
}

const CANCEL_REASONS: [&str; 6] = [
    "CUSTOMER",
    "DECLINED",
    "FRAUD",
    "INVENTORY",
    "OTHER",
    "STAFF",
];

fn order_cancel(
    shop: &mut ShopifyState,
    variables: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Value {
    let errors = |field: &str, message: &str, code: &str| {
        json!({ "orderCancel": { "job": null, "userErrors": [],
            "orderCancelUserErrors": [{ "field": [field], "message": message, "code": code }] } })
    };
    let reason = variables
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !CANCEL_REASONS.contains(&reason) {
        return errors("reason", "Reason is invalid", "INVALID");
    }
    if variables.get("restock").and_then(Value::as_bool).is_none() {
        return errors("restock", "Restock is required", "INVALID");
    }
    // `refund` (older versions) or `refundMethod` (2025-07 on) says where the money goes.
    let refund_method = variables.get("refundMethod").filter(|m| m.is_object());
    if refund_method.is_none() && variables.get("refund").and_then(Value::as_bool).is_none() {
        return errors("refundMethod", "Refund method is required", "INVALID");
    }
    let order_id = variables
        .get("orderId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    shop.next_id += 1;
    let job = gid("Job", shop.next_id);
    let Some(order) = shop
        .scenario
        .orders
        .iter_mut()
        .find(|o| gid("Order", o.id) == order_id)
    else {
        return errors("orderId", "Order does not exist", "NOT_FOUND");
    };
    if order.cancelled.is_some() {
        return errors("orderId", "Order has already been cancelled", "INVALID");
    }
    let order_gid = gid("Order", order.id);
    if shop.jobs.iter().any(|j| j.order_id == order_gid) {
        return errors("orderId", "Order is already being cancelled", "INVALID");
    }
    shop.cancellations += 1;
    shop.jobs.push(CancelJob {
        order_id: order_gid,
        reason: reason.to_owned(),
        due: now + shop.cancel_delay,
    });
    shop.settle_jobs(now);
    json!({ "orderCancel": { "job": { "id": job, "done": false },
        "orderCancelUserErrors": [], "userErrors": [] } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_classifies_the_graphql_endpoint_only() {
        assert_eq!(
            classify("POST", &["admin", "api", "2026-01", "graphql.json"]),
            Some("shopify.graphql")
        );
        assert_eq!(
            classify("GET", &["admin", "api", "2026-01", "graphql.json"]),
            None
        );
        assert_eq!(classify("POST", &["admin", "orders.json"]), None);
    }

    #[test]
    fn it_reads_fields_bounds_and_keys_from_the_query_text() -> Result<(), String> {
        let q = "query Q($first: Int!) { orders(first: $first) { nodes { lineItems(first: 50) { nodes { id } } } } }";
        assert!(has_field(q, "orders"));
        assert!(!has_field(q, "order"));
        assert_eq!(first_of(q, "lineItems"), Some(50));
        let (lower, upper) =
            bounds("updated_at:>='2026-11-15T12:00:00Z' AND updated_at:<='2026-11-15T13:00:00Z'")?;
        assert!(lower.is_some_and(|(_, inclusive)| inclusive));
        assert!(upper.is_some());
        assert!(bounds("updated_at:~x").is_err());
        let mut vars = Map::new();
        vars.insert("key".into(), json!("abc"));
        assert_eq!(
            idempotency_key(
                "mutation M($key: String!) { refundCreate(input: $i) @idempotent(key: $key) { refund { id } } }",
                &vars
            ),
            Some("abc".to_owned())
        );
        assert_eq!(
            idempotency_key(
                r#"mutation { refundCreate(input: {}) @idempotent(key: "k-1") { refund { id } } }"#,
                &vars
            ),
            Some("k-1".to_owned())
        );
        Ok(())
    }

    #[test]
    fn scenarios_are_checked_and_pinned() -> Result<(), String> {
        let yaml = r##"
orders:
  - id: 5001
    name: "#10482"
    created: 3d
    line_items: [{title: Espresso, quantity: 2, fulfilled: 2, price: "21.25"}]
"##;
        let mut scenario: ShopifyScenario =
            serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        scenario.validate()?;
        assert_eq!(scenario.access_token, SANDBOX_ACCESS_TOKEN);
        scenario.pin_times(Utc::now());
        assert!(matches!(scenario.orders[0].updated, Some(When::At(_))));
        scenario.orders[0].line_items[0].fulfilled = 3;
        assert!(scenario.validate().is_err());
        Ok(())
    }
}
