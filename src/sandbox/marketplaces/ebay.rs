//! The sandbox's eBay, under `/ebay` (standing in for `https://api.ebay.com`), written
//! from `specs/ebay/sell_fulfillment_v1_oas3.yaml` (v1.20.7) and research notes §10:
//! - `POST /ebay/identity/v1/oauth2/token`: HTTP Basic [`CLIENT_ID`]:[`CLIENT_SECRET`],
//!   form `grant_type=refresh_token`, `refresh_token` = [`REFRESH_TOKEN`], `scope` a
//!   subset of the sell scopes; answers `{access_token, expires_in, token_type}` or
//!   OAuth's `{error, error_description}` (`invalid_client` 401, `invalid_grant` 400);
//! - `GET /ebay/sell/fulfillment/v1/order` getOrders (`filter` with `creationdate`,
//!   `lastmodifieddate` ranges and `orderfulfillmentstatus`, `limit` ≤ 200, `offset`,
//!   `orderIds` ≤ 50), `GET …/order/{orderId}` getOrder,
//!   `GET …/order/{orderId}/shipping_fulfillment` getShippingFulfillments and
//!   `GET …/order/{orderId}/shipping_fulfillment/{fulfillmentId}` getShippingFulfillment,
//!   each with a Bearer token, answering the contract's schemas and its
//!   `{"errors":[{errorId, domain, category, message, …}]}` with the documented ids.
//!
//! - `POST /ebay/sell/fulfillment/v1/order/{orderId}/issue_refund` issueRefund, with a
//!   token granted `sell.finances` (else 403): the `IssueRefundRequest` is checked as the
//!   contract's error list says (34903 reason, 34905 neither amount, 34907 amount, 34909
//!   currency, 34914 unknown line, 34915/34924 too much, 34922 a refund still pending)
//!   and answered `{refundId, refundStatus: PENDING}`. The refund shows on getOrder as
//!   `PENDING`, then `REFUNDED` (or `FAILED`, when set so) once the refund delay
//!   (sandbox clock, 60 s unless set) has passed: order-level refunds in
//!   `paymentSummary.refunds`, line-level ones in `lineItems[].refunds` (a `refundDate`
//!   once issued); `orderPaymentStatus` becomes `PARTIALLY_REFUNDED`/`FULLY_REFUNDED`.
//!
//! Journal and fault names: `ebay.token`, `ebay.getOrders`, `ebay.getOrder`,
//! `ebay.getShippingFulfillments`, `ebay.getShippingFulfillment`, `ebay.issueRefund`.
//!
//! Like the rest of the sandbox it must never share types or parsing with
//! `crate::sources` or `crate::model`: every body is built here field by field.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::super::scenario::{Amount, When};
use super::super::{Sandbox, Shared, lock};

/// The client id the sandbox's eBay accepts (HTTP Basic user of the token call).
pub const CLIENT_ID: &str = "sandbox-ebay-client-id";
/// The client secret it accepts (HTTP Basic password).
pub const CLIENT_SECRET: &str = "sandbox-ebay-client-secret";
/// The seller's refresh token it accepts.
pub const REFRESH_TOKEN: &str = "sandbox-ebay-refresh-token";

/// Scopes a refresh token may be exchanged for.
const SCOPES: [&str; 4] = [
    "https://api.ebay.com/oauth/api_scope/sell.fulfillment",
    "https://api.ebay.com/oauth/api_scope/sell.fulfillment.readonly",
    "https://api.ebay.com/oauth/api_scope/sell.finances",
    "https://api.ebay.com/oauth/api_scope/sell.payment.dispute",
];

const TOKEN: &str = "ebay.token";
const GET_ORDERS: &str = "ebay.getOrders";
const GET_ORDER: &str = "ebay.getOrder";
const GET_FULFILLMENTS: &str = "ebay.getShippingFulfillments";
const GET_FULFILLMENT: &str = "ebay.getShippingFulfillment";
const ISSUE_REFUND: &str = "ebay.issueRefund";

/// The scope issueRefund needs.
const SCOPE_FINANCES: &str = "https://api.ebay.com/oauth/api_scope/sell.finances";

/// `ReasonForRefundEnum`.
const REFUND_REASONS: [&str; 7] = [
    "BUYER_CANCEL",
    "SELLER_CANCEL",
    "ITEM_NOT_RECEIVED",
    "BUYER_RETURN",
    "ITEM_NOT_AS_DESCRIBED",
    "OTHER_ADJUSTMENT",
    "SHIPPING_DISCOUNT",
];

const API: &str = "/ebay/sell/fulfillment/v1";

/// The scenario's eBay data (`ebay:` in a scenario file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EbayScenario {
    pub credentials: EbayCredentials,
    /// getOrders `limit` when the caller sends none (eBay's default is 50).
    pub page_size: u32,
    pub orders: Vec<EbayOrder>,
}

impl Default for EbayScenario {
    fn default() -> Self {
        Self {
            credentials: EbayCredentials::default(),
            page_size: 50,
            orders: Vec::new(),
        }
    }
}

/// What the token endpoint accepts. Obviously fake values by default.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EbayCredentials {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// Lifetime of issued access tokens in seconds (eBay: 7200).
    pub expires_in: i64,
}

impl Default for EbayCredentials {
    fn default() -> Self {
        Self {
            client_id: CLIENT_ID.to_owned(),
            client_secret: CLIENT_SECRET.to_owned(),
            refresh_token: REFRESH_TOKEN.to_owned(),
            expires_in: 7200,
        }
    }
}

// By hand: even fake secrets stay out of logs.
impl fmt::Debug for EbayCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EbayCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("refresh_token", &"***")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// `orderFulfillmentStatus`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FulfillmentStatus {
    #[default]
    NotStarted,
    InProgress,
    Fulfilled,
}

impl FulfillmentStatus {
    fn as_str(self) -> &'static str {
        match self {
            FulfillmentStatus::NotStarted => "NOT_STARTED",
            FulfillmentStatus::InProgress => "IN_PROGRESS",
            FulfillmentStatus::Fulfilled => "FULFILLED",
        }
    }
}

/// `orderPaymentStatus`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Pending,
    Failed,
    #[default]
    Paid,
    PartiallyRefunded,
    FullyRefunded,
}

impl PaymentStatus {
    fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "PENDING",
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Paid => "PAID",
            PaymentStatus::PartiallyRefunded => "PARTIALLY_REFUNDED",
            PaymentStatus::FullyRefunded => "FULLY_REFUNDED",
        }
    }
}

/// `cancelStatus.cancelState`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CancelState {
    #[default]
    NoneRequested,
    InProgress,
    Canceled,
}

impl CancelState {
    fn as_str(self) -> &'static str {
        match self {
            CancelState::NoneRequested => "NONE_REQUESTED",
            CancelState::InProgress => "IN_PROGRESS",
            CancelState::Canceled => "CANCELED",
        }
    }
}

/// One eBay order, in the sandbox's words (amounts per unit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EbayOrder {
    /// `12-12345-12345`.
    pub id: String,
    pub created: When,
    /// When eBay last changed it; `created` when not given.
    #[serde(default)]
    pub last_modified: Option<When>,
    #[serde(default)]
    pub fulfillment_status: FulfillmentStatus,
    #[serde(default)]
    pub payment_status: PaymentStatus,
    #[serde(default)]
    pub cancel_state: CancelState,
    #[serde(default = "usd")]
    pub currency: String,
    /// `EBAY_US`, `EBAY_DE`, …
    #[serde(default = "ebay_us")]
    pub marketplace: String,
    #[serde(default)]
    pub buyer: EbayBuyer,
    #[serde(default)]
    pub ship_to: EbayAddress,
    pub items: Vec<EbayItem>,
    /// Shipping for the whole order (charged on the first line item).
    #[serde(default)]
    pub shipping: Option<Amount>,
    /// Parcels shipped (shipping fulfillments).
    #[serde(default)]
    pub shipments: Vec<EbayShipment>,
    /// Top-level fields of the rendered `Order` replaced as given: data that breaks
    /// the contract, for tests of a client's defences. Never in a shipped scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_overrides: Option<Map<String, Value>>,
}

fn usd() -> String {
    "USD".to_owned()
}

fn ebay_us() -> String {
    "EBAY_US".to_owned()
}

/// The buyer's account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EbayBuyer {
    /// eBay user id.
    pub username: String,
    pub name: Option<String>,
    /// Returned for 14 days after the order; may be a `…@members.ebay.com` relay.
    pub email: Option<String>,
}

/// A ship-to address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EbayAddress {
    pub name: Option<String>,
    pub line1: String,
    pub city: String,
    pub state: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country_code: String,
    pub phone: Option<String>,
}

impl Default for EbayAddress {
    fn default() -> Self {
        Self {
            name: None,
            line1: "1 Main St".to_owned(),
            city: "San Jose".to_owned(),
            state: Some("CA".to_owned()),
            postal_code: "95125".to_owned(),
            country_code: "US".to_owned(),
            phone: None,
        }
    }
}

/// A line item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EbayItem {
    pub id: String,
    #[serde(default)]
    pub sku: Option<String>,
    pub title: String,
    #[serde(default = "one")]
    pub quantity: u32,
    /// Per unit.
    pub price: Amount,
}

fn one() -> u32 {
    1
}

/// A parcel: a shipping fulfillment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EbayShipment {
    pub tracking_number: String,
    /// eBay's carrier code: `USPS`, `UPS`, `FEDEX`, …
    pub carrier: String,
    pub shipped: When,
    /// Line item ids in the parcel; every line item when empty.
    #[serde(default)]
    pub items: Vec<String>,
}

impl EbayScenario {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(1..=200).contains(&self.page_size) {
            return Err(format!(
                "page_size must be 1-200 (getOrders limit), got {}",
                self.page_size
            ));
        }
        if self.credentials.expires_in <= 0 {
            return Err("credentials.expires_in must be positive".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        for (index, order) in self.orders.iter().enumerate() {
            let at = |m: String| format!("orders[{index}] ({}): {m}", order.id);
            order.validate().map_err(at)?;
            if !seen.insert(order.id.as_str()) {
                return Err(at("duplicate order id".to_owned()));
            }
        }
        Ok(())
    }

    pub(crate) fn pin_times(&mut self, now: DateTime<Utc>) {
        for order in &mut self.orders {
            order.pin_times(now);
        }
    }
}

impl EbayOrder {
    /// An order of `items`, created `created`, unshipped and paid.
    pub fn new(id: &str, created: When, items: Vec<EbayItem>) -> Self {
        Self {
            id: id.to_owned(),
            created,
            last_modified: None,
            fulfillment_status: FulfillmentStatus::default(),
            payment_status: PaymentStatus::default(),
            cancel_state: CancelState::default(),
            currency: usd(),
            marketplace: ebay_us(),
            buyer: EbayBuyer::default(),
            ship_to: EbayAddress::default(),
            items,
            shipping: None,
            shipments: Vec::new(),
            raw_overrides: None,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let groups: Vec<&str> = self.id.split('-').collect();
        let shape = groups.len() == 3
            && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()))
            && groups.iter().map(|g| g.len()).eq([2, 5, 5]);
        if !shape {
            return Err("id must look like 12-12345-12345".to_owned());
        }
        if self.items.is_empty() {
            return Err("an order needs at least one item".to_owned());
        }
        if self.currency.len() != 3 {
            return Err(format!("currency {:?} is not ISO 4217", self.currency));
        }
        for item in &self.items {
            if item.id.trim().is_empty() || item.quantity == 0 || item.price.cents() < 0 {
                return Err(format!(
                    "item {:?} needs an id, a quantity and a price",
                    item.id
                ));
            }
        }
        for shipment in &self.shipments {
            if let Some(unknown) = shipment
                .items
                .iter()
                .find(|id| !self.items.iter().any(|i| &i.id == *id))
            {
                return Err(format!("a shipment names unknown item {unknown:?}"));
            }
        }
        Ok(())
    }

    fn pin_times(&mut self, now: DateTime<Utc>) {
        self.created = When::At(self.created.resolve(now));
        self.last_modified = self.last_modified.map(|w| When::At(w.resolve(now)));
        for shipment in &mut self.shipments {
            shipment.shipped = When::At(shipment.shipped.resolve(now));
        }
    }

    fn created_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.created.resolve(now)
    }

    fn modified_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.last_modified.unwrap_or(self.created).resolve(now)
    }

    /// The shipping fulfillment id of the `index`th shipment.
    fn fulfillment_id(&self, index: usize) -> String {
        let digits: String = self.id.chars().filter(char::is_ascii_digit).collect();
        format!("{digits}{index:03}")
    }
}

/// How a refund ends once the refund delay has passed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EbayRefundOutcome {
    #[default]
    Refunded,
    Failed,
}

/// A refund issueRefund accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EbaySandboxRefund {
    pub refund_id: String,
    pub order_id: String,
    pub reason: String,
    /// `(lineItemId, cents)` for a line-level refund; empty for an order-level one.
    pub lines: Vec<(String, i64)>,
    pub cents: i64,
    pub currency: String,
    pub issued: DateTime<Utc>,
    /// When it leaves `PENDING`.
    pub settles: DateTime<Utc>,
    pub outcome: EbayRefundOutcome,
}

impl EbaySandboxRefund {
    /// `PENDING`, `REFUNDED` or `FAILED` at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        match (now >= self.settles, self.outcome) {
            (false, _) => "PENDING",
            (true, EbayRefundOutcome::Refunded) => "REFUNDED",
            (true, EbayRefundOutcome::Failed) => "FAILED",
        }
    }
}

/// What the fake holds while it runs.
#[derive(Debug)]
pub(crate) struct EbayState {
    pub(crate) scenario: EbayScenario,
    /// Issued access token → expiry and the scopes granted.
    tokens: HashMap<String, (DateTime<Utc>, Vec<String>)>,
    issued: u64,
    /// The seller revoked the application: the refresh token is `invalid_grant`.
    refresh_revoked: bool,
    refunds: Vec<EbaySandboxRefund>,
    refund_delay: Duration,
    refund_outcome: EbayRefundOutcome,
}

impl Default for EbayState {
    fn default() -> Self {
        Self::new(EbayScenario::default())
    }
}

impl EbayState {
    pub(crate) fn new(scenario: EbayScenario) -> Self {
        Self {
            scenario,
            tokens: HashMap::new(),
            issued: 0,
            refresh_revoked: false,
            refunds: Vec::new(),
            refund_delay: Duration::seconds(60),
            refund_outcome: EbayRefundOutcome::Refunded,
        }
    }
}

impl Sandbox {
    /// The eBay orders as the sandbox holds them now (times absolute).
    pub fn ebay_orders(&self) -> Vec<EbayOrder> {
        lock(&self.shared.ebay).scenario.orders.clone()
    }

    /// Adds an eBay order (relative times from the clock's now), or replaces the one
    /// with its id: what eBay shows after the order changed.
    pub fn ebay_put_order(&self, mut order: EbayOrder) -> Result<(), String> {
        order.validate()?;
        order.pin_times(self.shared.now());
        let mut state = lock(&self.shared.ebay);
        match state.scenario.orders.iter_mut().find(|o| o.id == order.id) {
            Some(slot) => *slot = order,
            None => state.scenario.orders.push(order),
        }
        Ok(())
    }

    /// Every eBay access token issued so far stops working (as if it had expired).
    pub fn ebay_expire_tokens(&self) {
        lock(&self.shared.ebay).tokens.clear();
    }

    /// The seller revokes the application: the refresh token gets `invalid_grant` and
    /// issued access tokens stop working. `false` restores it.
    pub fn ebay_revoke_refresh_token(&self, revoked: bool) {
        let mut state = lock(&self.shared.ebay);
        state.refresh_revoked = revoked;
        if revoked {
            state.tokens.clear();
        }
    }

    /// How many access tokens the token endpoint issued.
    pub fn ebay_tokens_issued(&self) -> u64 {
        lock(&self.shared.ebay).issued
    }

    /// Refunds issueRefund accepted, oldest first (every effect, however answered).
    pub fn ebay_refunds(&self) -> Vec<EbaySandboxRefund> {
        lock(&self.shared.ebay).refunds.clone()
    }

    /// How long a refund stays `PENDING` (sandbox clock), for refunds issued from now.
    pub fn ebay_set_refund_delay(&self, delay: Duration) {
        lock(&self.shared.ebay).refund_delay = delay.max(Duration::zero());
    }

    /// How refunds issued from now end once settled.
    pub fn ebay_set_refund_outcome(&self, outcome: EbayRefundOutcome) {
        lock(&self.shared.ebay).refund_outcome = outcome;
    }
}

/// The operation a request under `/ebay` is (for the journal and faults), if known.
pub(crate) fn classify(method: &str, rest: &[&str]) -> Option<&'static str> {
    match (method, rest) {
        ("POST", ["identity", "v1", "oauth2", "token"]) => Some(TOKEN),
        ("GET", ["sell", "fulfillment", "v1", "order"]) => Some(GET_ORDERS),
        ("GET", ["sell", "fulfillment", "v1", "order", id]) if !id.is_empty() => Some(GET_ORDER),
        ("POST", ["sell", "fulfillment", "v1", "order", id, "issue_refund"]) if !id.is_empty() => {
            Some(ISSUE_REFUND)
        }
        (
            "GET",
            [
                "sell",
                "fulfillment",
                "v1",
                "order",
                id,
                "shipping_fulfillment",
            ],
        ) if !id.is_empty() => Some(GET_FULFILLMENTS),
        (
            "GET",
            [
                "sell",
                "fulfillment",
                "v1",
                "order",
                id,
                "shipping_fulfillment",
                f,
            ],
        ) if !id.is_empty() && !f.is_empty() => Some(GET_FULFILLMENT),
        _ => None,
    }
}

pub(in crate::sandbox) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    router
        .route("/ebay/identity/v1/oauth2/token", post(token))
        .route("/ebay/sell/fulfillment/v1/order", get(get_orders))
        .route("/ebay/sell/fulfillment/v1/order/{order_id}", get(get_order))
        .route(
            "/ebay/sell/fulfillment/v1/order/{order_id}/issue_refund",
            post(issue_refund),
        )
        .route(
            "/ebay/sell/fulfillment/v1/order/{order_id}/shipping_fulfillment",
            get(get_fulfillments),
        )
        .route(
            "/ebay/sell/fulfillment/v1/order/{order_id}/shipping_fulfillment/{fulfillment_id}",
            get(get_fulfillment),
        )
}

/// An answer in eBay's error shape (the contract's `Error` list).
pub fn error_response(
    status: StatusCode,
    error_id: i64,
    domain: &str,
    category: &str,
    message: &str,
    parameters: &[(&str, &str)],
) -> Response {
    let mut error = json!({
        "errorId": error_id,
        "domain": domain,
        "category": category,
        "message": message,
    });
    if !parameters.is_empty() {
        error["parameters"] = Value::Array(
            parameters
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        );
    }
    (status, Json(json!({ "errors": [error] }))).into_response()
}

/// A refusal, boxed (a `Response` is large for an `Err`).
type Refused = Box<Response>;

fn refuse(error_id: i64, message: &str, parameters: &[(&str, &str)]) -> Refused {
    Box::new(request_error(error_id, message, parameters))
}

fn request_error(error_id: i64, message: &str, parameters: &[(&str, &str)]) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        error_id,
        "API_FULFILLMENT",
        "REQUEST",
        message,
        parameters,
    )
}

/// A fault's status in eBay's error shape, for the fault queue.
pub fn fault_response(status: StatusCode) -> Response {
    match status.as_u16() {
        401 => error_response(
            status,
            1001,
            "OAuth",
            "REQUEST",
            "Invalid access token",
            &[],
        ),
        429 => error_response(
            status,
            2001,
            "ACCESS",
            "REQUEST",
            "Too many requests. The request limit has been reached for the resource.",
            &[],
        ),
        500..=599 => error_response(
            status,
            30500,
            "API_FULFILLMENT",
            "APPLICATION",
            "System error",
            &[],
        ),
        _ => request_error(30800, "Invalid request", &[]),
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /ebay/identity/v1/oauth2/token`.
async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form_ok = header_text(&headers, header::CONTENT_TYPE).is_some_and(|ct| {
        ct.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if !form_ok {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "request body must be application/x-www-form-urlencoded",
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let now = shared.now();
    let mut state = lock(&shared.ebay);
    let credentials = state.scenario.credentials.clone();
    let expected =
        base64(format!("{}:{}", credentials.client_id, credentials.client_secret).as_bytes());
    let basic_ok = header_text(&headers, header::AUTHORIZATION)
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, value)| {
            scheme.eq_ignore_ascii_case("basic") && value.trim() == expected
        });
    if !basic_ok {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant type in request is not supported by the authorization server",
        );
    }
    if state.refresh_revoked
        || form.get("refresh_token").map(String::as_str) != Some(credentials.refresh_token.as_str())
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the provided authorization refresh token is invalid or was issued to another client",
        );
    }
    if let Some(scope) = form.get("scope")
        && scope.split_whitespace().any(|s| !SCOPES.contains(&s))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "the requested scope is invalid, unknown, malformed, or exceeds the scope granted to the client",
        );
    }
    state.issued += 1;
    let access_token = format!(
        "v^1.1#i^1#sandbox-ebay-token-{}-{}",
        state.issued,
        now.timestamp()
    );
    // No scope asked: every scope the seller granted.
    let granted: Vec<String> = match form.get("scope") {
        Some(scope) => scope.split_whitespace().map(str::to_owned).collect(),
        None => SCOPES.iter().map(|s| (*s).to_owned()).collect(),
    };
    state.tokens.insert(
        access_token.clone(),
        (now + Duration::seconds(credentials.expires_in), granted),
    );
    Json(json!({
        "access_token": access_token,
        "expires_in": credentials.expires_in,
        "token_type": "User Access Token",
    }))
    .into_response()
}

/// `Err(401)` unless the request carries a live access token.
fn authorise(shared: &Shared, headers: &HeaderMap) -> Result<(), Refused> {
    authorise_for(shared, headers, None)
}

/// `Err(401)` unless the request carries a live access token; `Err(403)` when it was
/// not granted `scope`.
fn authorise_for(shared: &Shared, headers: &HeaderMap, scope: Option<&str>) -> Result<(), Refused> {
    let now = shared.now();
    let token = header_text(headers, header::AUTHORIZATION)
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let state = lock(&shared.ebay);
    let Some((_, granted)) = token
        .and_then(|t| state.tokens.get(&t))
        .filter(|(expires, _)| now < *expires)
    else {
        return Err(Box::new(fault_response(StatusCode::UNAUTHORIZED)));
    };
    if let Some(scope) = scope
        && !granted.iter().any(|g| g == scope)
    {
        return Err(Box::new(error_response(
            StatusCode::FORBIDDEN,
            1100,
            "ACCESS",
            "REQUEST",
            "Access denied",
            &[("scope", scope)],
        )));
    }
    Ok(())
}

/// Standard base64 with padding (HTTP Basic credentials).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn amount(value: Amount, currency: &str) -> Value {
    json!({"value": value.to_string(), "currency": currency})
}

fn address(a: &EbayAddress) -> Value {
    let mut out = json!({
        "addressLine1": a.line1,
        "city": a.city,
        "postalCode": a.postal_code,
        "countryCode": a.country_code,
    });
    if let Some(state) = &a.state {
        out["stateOrProvince"] = json!(state);
    }
    out
}

/// The order as the contract's `Order`.
fn render_order(
    order: &EbayOrder,
    refunds: &[EbaySandboxRefund],
    now: DateTime<Utc>,
    base: &str,
) -> Value {
    let refunds: Vec<&EbaySandboxRefund> =
        refunds.iter().filter(|r| r.order_id == order.id).collect();
    let currency = order.currency.as_str();
    let created = order.created_at(now);
    let line_cost = |i: &EbayItem| Amount::from_cents(i.price.cents() * i64::from(i.quantity));
    let subtotal: i64 = order.items.iter().map(|i| line_cost(i).cents()).sum();
    let shipping = order.shipping.map_or(0, Amount::cents);
    let total = Amount::from_cents(subtotal + shipping);
    let refunded: i64 = refunds
        .iter()
        .filter(|r| r.status(now) == "REFUNDED")
        .map(|r| r.cents)
        .sum();
    let shipped_items: Vec<&str> = order
        .shipments
        .iter()
        .flat_map(|s| {
            if s.items.is_empty() {
                order
                    .items
                    .iter()
                    .map(|i| i.id.as_str())
                    .collect::<Vec<_>>()
            } else {
                s.items.iter().map(String::as_str).collect()
            }
        })
        .collect();
    let min_delivery = created + Duration::days(3);
    let max_delivery = created + Duration::days(7);
    let ship_by = created + Duration::days(2);
    let line_items: Vec<Value> = order
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let item_status = match order.fulfillment_status {
                FulfillmentStatus::Fulfilled => "FULFILLED",
                FulfillmentStatus::InProgress if shipped_items.contains(&item.id.as_str()) => {
                    "FULFILLED"
                }
                _ => "NOT_STARTED",
            };
            let item_shipping = if index == 0 { shipping } else { 0 };
            let mut line = json!({
                "lineItemId": item.id,
                "legacyItemId": format!("1100{:08}", index + 1),
                "title": item.title,
                "lineItemCost": amount(line_cost(item), currency),
                "quantity": item.quantity,
                "soldFormat": "FIXED_PRICE",
                "listingMarketplaceId": order.marketplace,
                "purchaseMarketplaceId": order.marketplace,
                "lineItemFulfillmentStatus": item_status,
                "total": amount(Amount::from_cents(line_cost(item).cents() + item_shipping), currency),
                "deliveryCost": {"shippingCost": amount(Amount::from_cents(item_shipping), currency)},
                "appliedPromotions": [],
                "taxes": [],
                "properties": {"buyerProtection": true},
                "lineItemFulfillmentInstructions": {
                    "minEstimatedDeliveryDate": iso(min_delivery),
                    "maxEstimatedDeliveryDate": iso(max_delivery),
                    "shipByDate": iso(ship_by),
                    "guaranteedDelivery": false,
                },
                "refunds": refunds
                    .iter()
                    .filter_map(|r| {
                        let (_, cents) = r.lines.iter().find(|(id, _)| *id == item.id)?;
                        let mut out = json!({
                            "refundId": r.refund_id,
                            "amount": amount(Amount::from_cents(*cents), &r.currency),
                        });
                        if r.status(now) == "REFUNDED" {
                            out["refundDate"] = json!(iso(r.settles));
                        }
                        Some(out)
                    })
                    .collect::<Vec<_>>(),
            });
            if let Some(sku) = &item.sku {
                line["sku"] = json!(sku);
            }
            line
        })
        .collect();
    let ship_name = order
        .ship_to
        .name
        .clone()
        .or_else(|| order.buyer.name.clone())
        .unwrap_or_else(|| order.buyer.username.clone());
    let mut ship_to = json!({
        "fullName": ship_name,
        "contactAddress": address(&order.ship_to),
    });
    if let Some(phone) = &order.ship_to.phone {
        ship_to["primaryPhone"] = json!({"phoneNumber": phone});
    }
    let mut registration = json!({
        "contactAddress": address(&order.ship_to),
    });
    if let Some(name) = order
        .buyer
        .name
        .clone()
        .or_else(|| order.ship_to.name.clone())
    {
        registration["fullName"] = json!(name);
    }
    // eBay returns the buyer's e-mail for 14 days after the order.
    if let Some(email) = &order.buyer.email
        && now - created <= Duration::days(14)
    {
        registration["email"] = json!(email);
        ship_to["email"] = json!(email);
    }
    let fulfillment_hrefs: Vec<String> = (0..order.shipments.len())
        .map(|i| {
            format!(
                "{base}{API}/order/{}/shipping_fulfillment/{}",
                order.id,
                order.fulfillment_id(i)
            )
        })
        .collect();
    let mut out = json!({
        "orderId": order.id,
        "creationDate": iso(created),
        "lastModifiedDate": iso(order.modified_at(now)),
        "orderFulfillmentStatus": order.fulfillment_status.as_str(),
        "orderPaymentStatus": match refunded {
            0 => order.payment_status.as_str(),
            r if r >= total.cents() => "FULLY_REFUNDED",
            _ => "PARTIALLY_REFUNDED",
        },
        "sellerId": "nightdesk_sandbox_seller",
        "buyer": {
            "username": order.buyer.username,
            "buyerRegistrationAddress": registration,
        },
        "pricingSummary": {
            "priceSubtotal": amount(Amount::from_cents(subtotal), currency),
            "deliveryCost": amount(Amount::from_cents(shipping), currency),
            "total": amount(total, currency),
        },
        "cancelStatus": {
            "cancelState": order.cancel_state.as_str(),
            "cancelRequests": [],
        },
        "paymentSummary": {
            "totalDueSeller": amount(total, currency),
            "refunds": refunds
                .iter()
                .filter(|r| r.lines.is_empty())
                .map(|r| {
                    let status = r.status(now);
                    let mut out = json!({
                        "refundId": r.refund_id,
                        "refundStatus": status,
                        "amount": amount(Amount::from_cents(r.cents), &r.currency),
                    });
                    if status == "REFUNDED" {
                        out["refundDate"] = json!(iso(r.settles));
                        out["refundReferenceId"] = json!(format!("REF-{}", r.refund_id));
                    }
                    out
                })
                .collect::<Vec<_>>(),
            "payments": [{
                "paymentMethod": "EBAY",
                "paymentReferenceId": format!("SANDBOX-PAY-{}", order.id),
                "paymentStatus": match order.payment_status {
                    PaymentStatus::Pending => "PENDING",
                    PaymentStatus::Failed => "FAILED",
                    _ => "PAID",
                },
                "amount": amount(total, currency),
            }],
        },
        "fulfillmentStartInstructions": [{
            "fulfillmentInstructionsType": "SHIP_TO",
            "minEstimatedDeliveryDate": iso(min_delivery),
            "maxEstimatedDeliveryDate": iso(max_delivery),
            "ebaySupportedFulfillment": false,
            "shippingStep": {
                "shipTo": ship_to,
                "shippingCarrierCode": "USPS",
                "shippingServiceCode": "USPSPriority",
            },
        }],
        "fulfillmentHrefs": fulfillment_hrefs,
        "salesRecordReference": order.id.rsplit('-').next().unwrap_or_default(),
        "lineItems": line_items,
    });
    if let (Some(object), Some(overrides)) = (out.as_object_mut(), &order.raw_overrides) {
        for (key, value) in overrides {
            object.insert(key.clone(), value.clone());
        }
    }
    out
}

/// The order's parcels as the contract's `ShippingFulfillment`s.
fn render_fulfillments(order: &EbayOrder, now: DateTime<Utc>) -> Vec<Value> {
    order
        .shipments
        .iter()
        .enumerate()
        .map(|(index, shipment)| {
            let items: Vec<Value> = order
                .items
                .iter()
                .filter(|i| shipment.items.is_empty() || shipment.items.contains(&i.id))
                .map(|i| json!({"lineItemId": i.id, "quantity": i.quantity}))
                .collect();
            json!({
                "fulfillmentId": order.fulfillment_id(index),
                "shipmentTrackingNumber": shipment.tracking_number,
                "shippingCarrierCode": shipment.carrier,
                "shippedDate": iso(shipment.shipped.resolve(now)),
                "lineItems": items,
            })
        })
        .collect()
}

/// A `[start..end]` or `[start..]` range of a date filter.
fn date_range(
    name: &str,
    value: &str,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Refused> {
    let invalid = || refuse(30810, "Invalid date format", &[("filter", name)]);
    let inner = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(|| {
            refuse(
                30800,
                "Invalid filter value",
                &[("fieldName", name), ("fieldValue", value)],
            )
        })?;
    let (start, end) = inner.split_once("..").ok_or_else(invalid)?;
    if start.trim().is_empty() {
        return Err(refuse(30820, "Start date is missing", &[("filter", name)]));
    }
    let parse = |t: &str| {
        DateTime::parse_from_rfc3339(t.trim())
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| invalid())
    };
    let start = parse(start)?;
    let end = if end.trim().is_empty() {
        now
    } else {
        parse(end)?
    };
    if start > now || end > now {
        return Err(refuse(
            30850,
            "Start and end dates can't be in the future",
            &[("filter", name)],
        ));
    }
    if start > end {
        return Err(refuse(
            30840,
            "Start date should be before end date",
            &[("filter", name)],
        ));
    }
    if end - start > Duration::days(365 * 2) {
        return Err(refuse(
            30830,
            "Time range between start date and end date must be within '2' years.",
            &[("filter", name)],
        ));
    }
    Ok((start, end))
}

/// What getOrders' `filter` asks for.
#[derive(Default)]
struct Filter {
    created: Option<(DateTime<Utc>, DateTime<Utc>)>,
    modified: Option<(DateTime<Utc>, DateTime<Utc>)>,
    statuses: Option<Vec<FulfillmentStatus>>,
}

fn parse_filter(text: &str, now: DateTime<Utc>) -> Result<Filter, Refused> {
    let mut filter = Filter::default();
    for criterion in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (name, value) = criterion
            .split_once(':')
            .ok_or_else(|| refuse(30700, "Invalid filter name", &[("fieldName", criterion)]))?;
        match name.trim().to_ascii_lowercase().as_str() {
            "creationdate" => filter.created = Some(date_range(name, value, now)?),
            "lastmodifieddate" => filter.modified = Some(date_range(name, value, now)?),
            "orderfulfillmentstatus" => {
                let statuses: Option<Vec<FulfillmentStatus>> = value
                    .strip_prefix('{')
                    .and_then(|v| v.strip_suffix('}'))
                    .map(|v| {
                        v.split('|')
                            .filter_map(|s| match s.trim() {
                                "NOT_STARTED" => Some(FulfillmentStatus::NotStarted),
                                "IN_PROGRESS" => Some(FulfillmentStatus::InProgress),
                                "FULFILLED" => Some(FulfillmentStatus::Fulfilled),
                                _ => None,
                            })
                            .collect()
                    });
                match statuses {
                    Some(s) if !s.is_empty() => filter.statuses = Some(s),
                    _ => {
                        return Err(refuse(
                            30800,
                            "Invalid filter value",
                            &[("fieldName", name), ("fieldValue", value)],
                        ));
                    }
                }
            }
            _ => {
                return Err(refuse(30700, "Invalid filter name", &[("fieldName", name)]));
            }
        }
    }
    Ok(filter)
}

/// `GET /ebay/sell/fulfillment/v1/order`.
async fn get_orders(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(refused) = authorise(&shared, &headers) {
        return *refused;
    }
    let now = shared.now();
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let state = lock(&shared.ebay);
    let refunds = state.refunds.clone();
    let default_limit = state.scenario.page_size;
    let limit = match params.get("limit") {
        None => default_limit,
        Some(l) => match l.parse::<u32>() {
            Ok(l) if (1..=200).contains(&l) => l,
            _ => return request_error(31100, "Invalid limit", &[("limit", l)]),
        },
    };
    let offset = match params.get("offset") {
        None => 0,
        Some(o) => match o.parse::<usize>() {
            Ok(o) => o,
            Err(_) => return request_error(31000, "Invalid offset", &[("offset", o)]),
        },
    };
    let visible = state
        .scenario
        .orders
        .iter()
        .filter(|o| o.created_at(now) <= now);
    let mut selected: Vec<&EbayOrder> = match params.get("orderIds") {
        Some(ids) => {
            let ids: Vec<&str> = ids
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .collect();
            if ids.len() > 50 {
                return request_error(30900, "Exceeded maximum number of order IDs", &[]);
            }
            visible.filter(|o| ids.contains(&o.id.as_str())).collect()
        }
        None => {
            let filter = match parse_filter(params.get("filter").map_or("", String::as_str), now) {
                Ok(filter) => filter,
                Err(refused) => return *refused,
            };
            visible
                .filter(|o| match (filter.created, filter.modified) {
                    // creationdate wins when both are given.
                    (Some((from, to)), _) => (from..=to).contains(&o.created_at(now)),
                    (None, Some((from, to))) => (from..=to).contains(&o.modified_at(now)),
                    (None, None) => true,
                })
                .filter(|o| {
                    filter
                        .statuses
                        .as_ref()
                        .is_none_or(|s| s.contains(&o.fulfillment_status))
                })
                .collect()
        }
    };
    // Newest first, as eBay lists them.
    selected.sort_by(|a, b| {
        b.created_at(now)
            .cmp(&a.created_at(now))
            .then_with(|| a.id.cmp(&b.id))
    });
    let total = selected.len();
    let page: Vec<Value> = selected
        .iter()
        .skip(offset)
        .take(limit as usize)
        .map(|o| render_order(o, &refunds, now, &shared.base_url))
        .collect();
    drop(state);
    let link = |offset: usize| {
        let mut url = format!("{}{API}/order?", shared.base_url);
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        for key in ["filter", "orderIds"] {
            if let Some(value) = params.get(key) {
                pairs.append_pair(key, value);
            }
        }
        pairs.append_pair("limit", &limit.to_string());
        pairs.append_pair("offset", &offset.to_string());
        url.push_str(&pairs.finish());
        url
    };
    let mut body = json!({
        "href": link(offset),
        "total": total,
        "limit": limit,
        "offset": offset,
        "orders": page,
    });
    if offset + (limit as usize) < total {
        body["next"] = json!(link(offset + limit as usize));
    }
    if offset > 0 {
        body["prev"] = json!(link(offset.saturating_sub(limit as usize)));
    }
    Json(body).into_response()
}

fn unknown_order(order_id: &str) -> Response {
    // eBay answers an unknown id with 404 and error 32100.
    error_response(
        StatusCode::NOT_FOUND,
        32100,
        "API_FULFILLMENT",
        "REQUEST",
        "Invalid order ID",
        &[("orderId", order_id)],
    )
}

fn find_order(shared: &Shared, order_id: &str, now: DateTime<Utc>) -> Option<EbayOrder> {
    lock(&shared.ebay)
        .scenario
        .orders
        .iter()
        .find(|o| o.id == order_id && o.created_at(now) <= now)
        .cloned()
}

/// `GET /ebay/sell/fulfillment/v1/order/{orderId}`.
async fn get_order(
    State(shared): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorise(&shared, &headers) {
        return *refused;
    }
    let now = shared.now();
    match find_order(&shared, &order_id, now) {
        Some(order) => {
            let refunds = lock(&shared.ebay).refunds.clone();
            Json(render_order(&order, &refunds, now, &shared.base_url)).into_response()
        }
        None => unknown_order(&order_id),
    }
}

/// A positive amount with at most two decimals, in cents.
fn positive_cents(value: &str) -> Option<i64> {
    Amount::parse(value)
        .ok()
        .map(Amount::cents)
        .filter(|c| *c > 0)
}

/// An amount of the request (`SimpleAmount`) in the order's currency, or the error.
fn requested_amount(amount: &Value, currency: &str) -> Result<i64, Refused> {
    let value = amount.get("value").and_then(Value::as_str);
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Err(refuse(34906, "The amount value must be specified.", &[]));
    };
    let Some(cents) = positive_cents(value) else {
        return Err(refuse(
            34907,
            "The amount value must be positive and within two decimals.",
            &[("value", value)],
        ));
    };
    match amount.get("currency").and_then(Value::as_str) {
        None | Some("") => Err(refuse(34908, "The amount currency must be specified.", &[])),
        Some(c) if c != currency => Err(refuse(
            34909,
            "The amount currency isn't correct.",
            &[("currency", c)],
        )),
        Some(_) => Ok(cents),
    }
}

/// `POST /ebay/sell/fulfillment/v1/order/{orderId}/issue_refund`.
async fn issue_refund(
    State(shared): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorise_for(&shared, &headers, Some(SCOPE_FINANCES)) {
        return *refused;
    }
    let now = shared.now();
    let Some(order) = find_order(&shared, &order_id, now) else {
        return error_response(
            StatusCode::NOT_FOUND,
            34913,
            "API_FULFILLMENT",
            "REQUEST",
            "Can not find the order.",
            &[("orderId", &order_id)],
        );
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return request_error(34902, "Request can't be empty.", &[]),
    };
    let reason = request
        .get("reasonForRefund")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !REFUND_REASONS.contains(&reason) {
        return request_error(
            34903,
            "The refund reason must be specified.",
            &[("reasonForRefund", reason)],
        );
    }
    if request
        .get("comment")
        .and_then(Value::as_str)
        .is_some_and(|c| c.chars().count() > 1000)
    {
        return request_error(
            34921,
            "The comment exceeds the length limit, please make sure it doesn't exceed 1000 characters.",
            &[],
        );
    }
    if matches!(
        order.payment_status,
        PaymentStatus::Pending | PaymentStatus::Failed
    ) {
        return error_response(
            StatusCode::CONFLICT,
            34929,
            "API_FULFILLMENT",
            "REQUEST",
            "You cannot refund this order yet since the buyer payment has not been processed. Please try again later.",
            &[],
        );
    }
    let currency = order.currency.clone();
    let line_cost = |i: &EbayItem| i.price.cents() * i64::from(i.quantity);
    let total: i64 =
        order.items.iter().map(line_cost).sum::<i64>() + order.shipping.map_or(0, Amount::cents);
    let mut state = lock(&shared.ebay);
    let mine: Vec<&EbaySandboxRefund> = state
        .refunds
        .iter()
        .filter(|r| r.order_id == order.id && r.status(now) != "FAILED")
        .collect();
    if mine.iter().any(|r| r.status(now) == "PENDING") {
        return request_error(
            34922,
            "Refund can't be issued while previous refund is processing.",
            &[],
        );
    }
    let refunded: i64 = mine.iter().map(|r| r.cents).sum();
    let mut lines = Vec::new();
    let cents = match (
        request
            .get("orderLevelRefundAmount")
            .filter(|v| !v.is_null()),
        request
            .get("refundItems")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty()),
    ) {
        (Some(amount), None) => match requested_amount(amount, &currency) {
            Ok(c) => c,
            Err(refused) => return *refused,
        },
        (None, Some(items)) => {
            for entry in items {
                let Some(id) = entry.get("lineItemId").and_then(Value::as_str) else {
                    return request_error(
                        34910,
                        "Either legacyReference or lineItemId must be specified for item level refund.",
                        &[],
                    );
                };
                let Some(item) = order.items.iter().find(|i| i.id == id) else {
                    return request_error(
                        34914,
                        "Can't find the item in the order.",
                        &[("lineItemId", id)],
                    );
                };
                let amount = entry.get("refundAmount").cloned().unwrap_or(Value::Null);
                let cents = match requested_amount(&amount, &currency) {
                    Ok(c) => c,
                    Err(refused) => return *refused,
                };
                let line_refunded: i64 = mine
                    .iter()
                    .flat_map(|r| r.lines.iter())
                    .filter(|(l, _)| l == id)
                    .map(|(_, c)| c)
                    .sum();
                if line_refunded + cents > line_cost(item) {
                    return error_response(
                        StatusCode::CONFLICT,
                        34924,
                        "API_FULFILLMENT",
                        "BUSINESS",
                        "The item refund amount exceeds the item remaining amount.",
                        &[("lineItemId", id)],
                    );
                }
                lines.push((id.to_owned(), cents));
            }
            lines.iter().map(|(_, c)| c).sum()
        }
        _ => {
            return request_error(
                34905,
                "Either orderLevelRefundAmount or refundItems must be specified.",
                &[],
            );
        }
    };
    if refunded + cents > total {
        return request_error(34915, "The refund amount exceeds order amount.", &[]);
    }
    let refund_id = format!("5{:09}", state.refunds.len() + 1);
    let refund = EbaySandboxRefund {
        refund_id: refund_id.clone(),
        order_id: order.id.clone(),
        reason: reason.to_owned(),
        lines,
        cents,
        currency,
        issued: now,
        settles: now + state.refund_delay,
        outcome: state.refund_outcome,
    };
    state.refunds.push(refund);
    Json(json!({ "refundId": refund_id, "refundStatus": "PENDING" })).into_response()
}

/// `GET /ebay/sell/fulfillment/v1/order/{orderId}/shipping_fulfillment`.
async fn get_fulfillments(
    State(shared): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorise(&shared, &headers) {
        return *refused;
    }
    let now = shared.now();
    let Some(order) = find_order(&shared, &order_id, now) else {
        return request_error(32100, "Invalid order ID", &[("orderId", &order_id)]);
    };
    let fulfillments = render_fulfillments(&order, now);
    Json(json!({"total": fulfillments.len(), "fulfillments": fulfillments})).into_response()
}

/// `GET /ebay/sell/fulfillment/v1/order/{orderId}/shipping_fulfillment/{fulfillmentId}`.
async fn get_fulfillment(
    State(shared): State<Arc<Shared>>,
    Path((order_id, fulfillment_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorise(&shared, &headers) {
        return *refused;
    }
    let now = shared.now();
    let Some(order) = find_order(&shared, &order_id, now) else {
        return unknown_order(&order_id);
    };
    render_fulfillments(&order, now)
        .into_iter()
        .find(|f| f["fulfillmentId"] == json!(fulfillment_id))
        .map_or_else(
            || {
                error_response(
                    StatusCode::NOT_FOUND,
                    32200,
                    "API_FULFILLMENT",
                    "REQUEST",
                    "Invalid shipping fulfillment ID",
                    &[("fulfillmentId", &fulfillment_id)],
                )
            },
            |f| Json(f).into_response(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn basic_credentials_are_base64() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
    }

    #[test]
    fn operations_are_classified_by_path() {
        assert_eq!(
            classify("POST", &["identity", "v1", "oauth2", "token"]),
            Some(TOKEN)
        );
        assert_eq!(
            classify("GET", &["sell", "fulfillment", "v1", "order"]),
            Some(GET_ORDERS)
        );
        assert_eq!(
            classify(
                "GET",
                &["sell", "fulfillment", "v1", "order", "12-12345-12345"]
            ),
            Some(GET_ORDER)
        );
        assert_eq!(
            classify(
                "GET",
                &[
                    "sell",
                    "fulfillment",
                    "v1",
                    "order",
                    "1",
                    "shipping_fulfillment"
                ]
            ),
            Some(GET_FULFILLMENTS)
        );
        assert_eq!(
            classify("DELETE", &["sell", "fulfillment", "v1", "order"]),
            None
        );
    }

    #[test]
    fn date_ranges_are_checked() {
        let ok = date_range(
            "lastmodifieddate",
            "[2026-11-20T00:00:00.000Z..2026-11-21T00:00:00.000Z]",
            now(),
        );
        assert!(ok.is_ok());
        let open = date_range("lastmodifieddate", "[2026-11-20T00:00:00.000Z..]", now());
        assert_eq!(open.ok().map(|(_, end)| end), Some(now()));
        for bad in [
            "[..2026-11-21T00:00:00Z]",
            "[yesterday..]",
            "[2026-11-21T00:00:00Z..2026-11-20T00:00:00Z]",
            "[2020-01-01T00:00:00Z..2026-11-20T00:00:00Z]",
            "[2026-11-20T00:00:00Z..2026-12-20T00:00:00Z]",
            "2026-11-20T00:00:00Z",
        ] {
            assert!(date_range("lastmodifieddate", bad, now()).is_err(), "{bad}");
        }
    }

    #[test]
    fn scenario_orders_are_validated() {
        let item = EbayItem {
            id: "10001".into(),
            sku: None,
            title: "Mug".into(),
            quantity: 1,
            price: Amount::from_cents(1299),
        };
        let good = EbayOrder::new("12-12345-12345", When::days_ago(1), vec![item.clone()]);
        assert!(good.validate().is_ok());
        assert!(
            EbayOrder::new("113-1234567-1234567", When::now(), vec![item])
                .validate()
                .is_err()
        );
        assert!(
            EbayOrder::new("12-12345-12345", When::now(), vec![])
                .validate()
                .is_err()
        );
    }
}
