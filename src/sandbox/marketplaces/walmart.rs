//! The sandbox's Walmart Marketplace (US), under `/walmart` (standing in for
//! `https://marketplace.walmartapis.com`), written from
//! `specs/walmart/walmart-marketplace-orders-openapi-original.yml` and Walmart's Token
//! API documentation (the token call is not in that contract):
//! - `POST /walmart/v3/token` (`walmart.token`): HTTP Basic [`CLIENT_ID`]:[`CLIENT_SECRET`]
//!   (or the scenario's), form `grant_type=client_credentials`, `WM_SVC.NAME` and
//!   `WM_QOS.CORRELATION_ID` required; answers `{access_token, token_type, expires_in}`
//!   (900 s unless the scenario says otherwise). Tests can expire every token.
//! - `GET /walmart/v3/orders` (`walmart.getAllOrders`): `createdStartDate` (default
//!   now − 7 days, as Walmart's), `createdEndDate`, `lastModifiedStartDate`/`EndDate`,
//!   `status`, `purchaseOrderId`, `customerOrderId`, `sku`, `limit` (1–200, default
//!   100); newest orders first; `list.meta.nextCursor` is the query string of the next
//!   page (the filters travel in it, with `hasMoreElements=true&soIndex=N`).
//! - `GET /walmart/v3/orders/{purchaseOrderId}` (`walmart.getAnOrder`):
//!   `GetOrderResponse` (`{"order": …}`).
//! - `POST /walmart/v3/orders/{purchaseOrderId}/cancel` (`walmart.cancelOrderLines`):
//!   `orderCancellation` of open (Created or Acknowledged) units, with one of the five
//!   `cancellationReason`s; the units show as `Cancelled` on later reads. A shipped line
//!   or more units than are open is a 400.
//! - `POST /walmart/v3/orders/{purchaseOrderId}/refund` (`walmart.refundOrderLines`):
//!   `orderRefund` of shipped lines, charges as negative amounts with a `refundReason`
//!   of the contract's list; more than a charge's price (with what was refunded before)
//!   is a 400. Later reads show the line's `refund`. Both answer the order as it is now.
//!
//! Both actions take effect before the answer is sent, so a fault with `after_effect`
//! is "Walmart acted but the answer was lost"; [`Sandbox::walmart_refunds`] and
//! [`Sandbox::walmart_cancellations`] list every effect, once each.
//!
//! `WM_SEC.ACCESS_TOKEN`, `WM_QOS.CORRELATION_ID` and `WM_SVC.NAME` are required on the
//! order calls: a missing one is a 400, an unknown or expired token a 401. Errors are
//! `{"errors": {"error": [GatewayError…]}}`. Never shares types or parsing with
//! `crate::sources`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::super::scenario::{Amount, When};
use super::super::{Sandbox, SandboxError, Shared, lock};

/// The client id the sandbox's Walmart accepts unless the scenario sets another.
pub const CLIENT_ID: &str = "sandbox-walmart-client-id";
/// The client secret the sandbox's Walmart accepts unless the scenario sets another.
pub const CLIENT_SECRET: &str = "sandbox-walmart-client-secret";
/// Walmart's access tokens live 15 minutes.
pub const TOKEN_LIFETIME: i64 = 900;

const TOKEN: &str = "walmart.token";
const GET_ALL_ORDERS: &str = "walmart.getAllOrders";
const GET_AN_ORDER: &str = "walmart.getAnOrder";
const CANCEL_ORDER_LINES: &str = "walmart.cancelOrderLines";
const REFUND_ORDER_LINES: &str = "walmart.refundOrderLines";

/// Line statuses of the contract (`orderLineStatus.status`).
pub const LINE_STATUSES: [&str; 6] = [
    "Created",
    "Acknowledged",
    "Shipped",
    "Delivered",
    "Cancelled",
    "Refund",
];

/// `shippingInfo.methodCode` values.
const METHOD_CODES: [&str; 6] = [
    "Standard",
    "Express",
    "OneDay",
    "Freight",
    "WhiteGlove",
    "Value",
];

/// Carriers the contract names in `carrierName.carrier` (the common ones); any other is
/// sent as `otherCarrier`.
const KNOWN_CARRIERS: [&str; 12] = [
    "UPS",
    "USPS",
    "FedEx",
    "OnTrac",
    "DHL Ecommerce - US",
    "DHL",
    "LS",
    "LSO",
    "FDX",
    "GLS",
    "Canada Post",
    "Royal Mail",
];

/// The scenario's Walmart data (`walmart:` in a scenario file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalmartScenario {
    pub client_id: String,
    pub client_secret: String,
    /// Seconds an access token lives.
    pub token_lifetime: i64,
    /// The most orders one page holds, whatever `limit` asks (Walmart's is 200).
    pub page_size: u32,
    pub orders: Vec<WalmartScenarioOrder>,
}

impl Default for WalmartScenario {
    fn default() -> Self {
        Self {
            client_id: CLIENT_ID.to_owned(),
            client_secret: CLIENT_SECRET.to_owned(),
            token_lifetime: TOKEN_LIFETIME,
            page_size: 200,
            orders: Vec::new(),
        }
    }
}

/// A purchase order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalmartScenarioOrder {
    pub purchase_order_id: String,
    pub customer_order_id: String,
    pub order_date: When,
    /// When it last changed (the listing's `lastModified` filter); the order date when
    /// not given. Each line's `statusDate` defaults to it.
    #[serde(default)]
    pub last_modified: Option<When>,
    /// `customerEmailId`; a relay address made from the customer order id when not given.
    #[serde(default)]
    pub customer_email: Option<String>,
    pub ship_to: WalmartScenarioAddress,
    /// `shippingInfo.methodCode`: Standard (default), Express, OneDay, Freight,
    /// WhiteGlove, Value.
    #[serde(default = "standard")]
    pub method: String,
    /// Order date + 1 day when not given.
    #[serde(default)]
    pub estimated_ship: Option<When>,
    /// Order date + 5 days when not given.
    #[serde(default)]
    pub estimated_delivery: Option<When>,
    /// `shipNode.type`: SellerFulfilled (default), WFSFulfilled, 3PLFulfilled.
    #[serde(default)]
    pub ship_node: Option<String>,
    pub lines: Vec<WalmartScenarioLine>,
    /// Test knob: the order is served breaking the contract (`orderDate` as text).
    #[serde(default)]
    pub malformed: bool,
}

fn standard() -> String {
    "Standard".to_owned()
}

fn one() -> u32 {
    1
}

fn created() -> String {
    "Created".to_owned()
}

/// `shippingInfo.postalAddress` (and the phone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalmartScenarioAddress {
    pub name: String,
    pub address1: String,
    #[serde(default)]
    pub address2: Option<String>,
    pub city: String,
    pub state: String,
    pub postal_code: String,
    /// As Walmart writes it: `USA`.
    #[serde(default = "usa")]
    pub country: String,
    #[serde(default = "phone")]
    pub phone: String,
}

fn usa() -> String {
    "USA".to_owned()
}

fn phone() -> String {
    "5555550100".to_owned()
}

/// An order line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalmartScenarioLine {
    pub sku: String,
    pub product_name: String,
    #[serde(default = "one")]
    pub quantity: u32,
    /// The `PRODUCT` charge (`ItemPrice`) for the line.
    pub price: Amount,
    #[serde(default)]
    pub tax: Amount,
    /// A `SHIPPING` charge when not zero.
    #[serde(default)]
    pub shipping: Amount,
    /// Created (default), Acknowledged, Shipped, Delivered, Cancelled, Refund.
    #[serde(default = "created")]
    pub status: String,
    /// Units of the line cancelled apart from `status` (a partial cancellation).
    #[serde(default)]
    pub cancelled_quantity: u32,
    #[serde(default)]
    pub cancellation_reason: Option<String>,
    #[serde(default)]
    pub tracking: Option<WalmartScenarioTracking>,
    /// The line's `statusDate`; the order's last modification when not given.
    #[serde(default)]
    pub status_date: Option<When>,
    /// The buyer asked to cancel (`intentToCancel`).
    #[serde(default)]
    pub intent_to_cancel: bool,
}

/// A line's parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalmartScenarioTracking {
    pub carrier: String,
    pub number: String,
    #[serde(default)]
    pub url: Option<String>,
    pub shipped: When,
}

impl WalmartScenario {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.token_lifetime <= 0 {
            return Err("token_lifetime must be positive".to_owned());
        }
        if !(1..=200).contains(&self.page_size) {
            return Err("page_size must be 1 to 200".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        for (index, order) in self.orders.iter().enumerate() {
            order
                .validate()
                .map_err(|m| format!("orders[{index}] ({}): {m}", order.purchase_order_id))?;
            if !seen.insert(order.purchase_order_id.clone()) {
                return Err(format!(
                    "orders[{index}]: purchase_order_id {} appears twice",
                    order.purchase_order_id
                ));
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

impl WalmartScenarioOrder {
    fn validate(&self) -> Result<(), String> {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(&self.purchase_order_id) || !digits(&self.customer_order_id) {
            return Err("purchase_order_id and customer_order_id are digits".to_owned());
        }
        if !METHOD_CODES.contains(&self.method.as_str()) {
            return Err(format!(
                "method {:?} is not one of {METHOD_CODES:?}",
                self.method
            ));
        }
        if self.lines.is_empty() {
            return Err("an order has at least one line".to_owned());
        }
        for line in &self.lines {
            if !LINE_STATUSES.contains(&line.status.as_str()) {
                return Err(format!(
                    "line {}: status {:?} is not one of {LINE_STATUSES:?}",
                    line.sku, line.status
                ));
            }
            if line.quantity == 0 || line.cancelled_quantity > line.quantity {
                return Err(format!(
                    "line {}: quantity must be ≥ 1 and ≥ cancelled_quantity",
                    line.sku
                ));
            }
            if line.price.cents() < 0 || line.tax.cents() < 0 || line.shipping.cents() < 0 {
                return Err(format!("line {}: negative amount", line.sku));
            }
        }
        Ok(())
    }

    fn pin_times(&mut self, now: DateTime<Utc>) {
        let pin = |w: When| When::At(w.resolve(now));
        self.order_date = pin(self.order_date);
        self.last_modified = self.last_modified.map(pin);
        self.estimated_ship = self.estimated_ship.map(pin);
        self.estimated_delivery = self.estimated_delivery.map(pin);
        for line in &mut self.lines {
            line.status_date = line.status_date.map(pin);
            if let Some(t) = &mut line.tracking {
                t.shipped = pin(t.shipped);
            }
        }
    }

    fn ordered(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.order_date.resolve(now)
    }

    fn modified(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let lines = self
            .lines
            .iter()
            .filter_map(|l| l.status_date.map(|w| w.resolve(now)));
        self.last_modified
            .map_or(self.ordered(now), |w| w.resolve(now))
            .max(lines.max().unwrap_or(DateTime::<Utc>::MIN_UTC))
    }
}

/// One refunded charge (`refundOrderLines`), as the sandbox applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalmartRefund {
    pub purchase_order_id: String,
    pub line_number: String,
    /// The same for every charge of one refund request's line.
    pub refund_id: String,
    pub reason: String,
    /// `PRODUCT` or `SHIPPING`.
    pub charge_type: String,
    pub charge_name: String,
    /// What was refunded, as a positive amount (the wire writes it negative).
    pub amount: Amount,
    pub tax: Amount,
    pub comments: Option<String>,
    pub at: DateTime<Utc>,
}

/// Units of one line cancelled by one `cancelOrderLines` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalmartCancellation {
    pub purchase_order_id: String,
    pub line_number: String,
    pub quantity: u32,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// What the fake holds while it runs. `Debug` leaves the live tokens out.
#[derive(Default)]
pub(crate) struct WalmartState {
    pub(crate) scenario: WalmartScenario,
    /// Issued access tokens and when they expire.
    tokens: HashMap<String, DateTime<Utc>>,
    issued: u64,
    refunds: Vec<WalmartRefund>,
    cancellations: Vec<WalmartCancellation>,
    refund_requests: u64,
}

impl std::fmt::Debug for WalmartState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalmartState")
            .field("scenario", &self.scenario)
            .field("issued", &self.issued)
            .field("refunds", &self.refunds)
            .field("cancellations", &self.cancellations)
            .finish_non_exhaustive()
    }
}

impl WalmartState {
    pub(crate) fn new(scenario: WalmartScenario) -> Self {
        Self {
            scenario,
            ..Self::default()
        }
    }
}

/// The operation a request under `/walmart` is (for the journal and faults), if known.
pub(crate) fn classify(method: &str, rest: &[&str]) -> Option<&'static str> {
    match (method, rest) {
        ("POST", ["v3", "token"]) => Some(TOKEN),
        ("GET", ["v3", "orders"]) => Some(GET_ALL_ORDERS),
        ("GET", ["v3", "orders", id]) if !id.is_empty() => Some(GET_AN_ORDER),
        ("POST", ["v3", "orders", id, "cancel"]) if !id.is_empty() => Some(CANCEL_ORDER_LINES),
        ("POST", ["v3", "orders", id, "refund"]) if !id.is_empty() => Some(REFUND_ORDER_LINES),
        _ => None,
    }
}

pub(in crate::sandbox) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    router
        .route("/walmart/v3/token", post(token))
        .route("/walmart/v3/orders", get(get_all_orders))
        .route("/walmart/v3/orders/{purchase_order_id}", get(get_an_order))
        .route(
            "/walmart/v3/orders/{purchase_order_id}/cancel",
            post(cancel_order_lines),
        )
        .route(
            "/walmart/v3/orders/{purchase_order_id}/refund",
            post(refund_order_lines),
        )
}

/// One error in the contract's `GatewayError` shape.
fn gateway_error(code: &str, field: &str, description: &str, category: &str) -> Value {
    json!({
        "code": code,
        "field": field,
        "description": description,
        "info": description,
        "severity": "ERROR",
        "category": category,
        "causes": [],
        "errorIdentifiers": {}
    })
}

/// An error answer as Walmart's JSON writes it: `{"errors":{"error":[…]}}`.
fn errors(status: StatusCode, code: &str, field: &str, description: &str) -> Response {
    let category = if status.is_server_error() {
        "SYSTEM"
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::NOT_FOUND {
        "DATA"
    } else {
        "REQUEST"
    };
    (
        status,
        Json(json!({"errors": {"error": [gateway_error(code, field, description, category)]}})),
    )
        .into_response()
}

/// A fault's status in Walmart's error shape (for the fault queue to use), with the
/// throttling headers Walmart sends on a 429.
pub(crate) fn fault_response(
    _operation: &str,
    status: StatusCode,
    _retry_after: Option<u64>,
) -> Response {
    let (code, description) = match status.as_u16() {
        429 => (
            "REQUEST_THRESHOLD_VIOLATED.GMP_GATEWAY_API",
            "Too Many Requests",
        ),
        401 => ("UNAUTHORIZED.GMP_GATEWAY_API", "Unauthorized"),
        404 => (
            "CONTENT_NOT_FOUND.GMP_ORDER_API",
            "Requested content could not be found.",
        ),
        500..=599 => (
            "SYSTEM_ERROR.GMP_ORDER_API",
            "System encountered some internal error.",
        ),
        _ => ("INVALID_REQUEST.GMP_ORDER_API", "Invalid request."),
    };
    let mut response = errors(status, code, "request", description);
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(
            "x-current-token-count",
            header::HeaderValue::from_static("0"),
        );
    }
    response
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A 400 naming the first required header missing, if one is.
fn missing_header(headers: &HeaderMap, required: &[&str]) -> Option<Response> {
    let missing = required
        .iter()
        .find(|h| header_text(headers, h).is_none())?;
    Some(errors(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST_HEADER.GMP_GATEWAY_API",
        missing,
        &format!("Invalid or missing header {missing}"),
    ))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let triple = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for sextet in 0..4 {
            if sextet <= chunk.len() {
                let index = (triple >> (18 - 6 * sextet)) & 63;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `POST /walmart/v3/token`.
async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = missing_header(&headers, &["WM_SVC.NAME", "WM_QOS.CORRELATION_ID"]) {
        return refused;
    }
    let (expected, lifetime) = {
        let state = lock(&shared.walmart);
        (
            base64(
                format!(
                    "{}:{}",
                    state.scenario.client_id, state.scenario.client_secret
                )
                .as_bytes(),
            ),
            state.scenario.token_lifetime,
        )
    };
    let basic_ok = header_text(&headers, header::AUTHORIZATION.as_str())
        .and_then(|value| value.split_once(' '))
        .is_some_and(|(scheme, credentials)| {
            scheme.eq_ignore_ascii_case("basic") && credentials.trim() == expected
        });
    if !basic_ok {
        return errors(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED.GMP_GATEWAY_API",
            "UNAUTHORIZED",
            "Unauthorized",
        );
    }
    let form_ok = header_text(&headers, header::CONTENT_TYPE.as_str()).is_some_and(|ct| {
        ct.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    let grant = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.into_owned());
    if !form_ok || grant.as_deref() != Some("client_credentials") {
        return errors(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST.GMP_GATEWAY_API",
            "grant_type",
            "grant_type must be client_credentials, form-encoded",
        );
    }
    let now = shared.now();
    let access_token = {
        let mut state = lock(&shared.walmart);
        state.issued += 1;
        let token = format!("sandbox-walmart-token-{}-{}", state.issued, now.timestamp());
        state
            .tokens
            .insert(token.clone(), now + Duration::seconds(lifetime));
        token
    };
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
    }))
    .into_response()
}

/// The order calls' header checks: `None` when the request may go on.
fn refuse(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    if let Some(refused) = missing_header(
        headers,
        &[
            "WM_SEC.ACCESS_TOKEN",
            "WM_QOS.CORRELATION_ID",
            "WM_SVC.NAME",
        ],
    ) {
        return Some(refused);
    }
    let now = shared.now();
    let valid = header_text(headers, "WM_SEC.ACCESS_TOKEN").is_some_and(|token| {
        lock(&shared.walmart)
            .tokens
            .get(token)
            .is_some_and(|expires| now < *expires)
    });
    (!valid).then(|| {
        errors(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED.GMP_GATEWAY_API",
            "UNAUTHORIZED",
            "Unauthorized token or invalid token",
        )
    })
}

/// `yyyy-MM-dd` (the day's start, UTC) or an ISO 8601 time.
fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Some(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

fn millis(at: DateTime<Utc>) -> Value {
    json!(at.timestamp_millis())
}

fn money(amount: Amount) -> Value {
    serde_json::Number::from_f64(amount.cents() as f64 / 100.0).map_or(json!(0), Value::Number)
}

fn quantity(n: u32) -> Value {
    json!({"unitOfMeasurement": "EACH", "amount": n.to_string()})
}

/// A purchase order in the contract's shape (`PurchaseOrderTypeV3`).
fn order_json(
    order: &WalmartScenarioOrder,
    refunds: &[WalmartRefund],
    now: DateTime<Utc>,
) -> Value {
    let ordered = order.ordered(now);
    let modified = order.modified(now);
    let address = &order.ship_to;
    let mut postal = Map::new();
    postal.insert("name".into(), json!(address.name));
    postal.insert("address1".into(), json!(address.address1));
    if let Some(line2) = &address.address2 {
        postal.insert("address2".into(), json!(line2));
    }
    postal.insert("city".into(), json!(address.city));
    postal.insert("state".into(), json!(address.state));
    postal.insert("postalCode".into(), json!(address.postal_code));
    postal.insert("country".into(), json!(address.country));
    postal.insert("addressType".into(), json!("RESIDENTIAL"));
    let mut total_cents = 0;
    let lines: Vec<Value> = order
        .lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            total_cents += line.price.cents() + line.tax.cents() + line.shipping.cents();
            let number = (index + 1).to_string();
            let of_line: Vec<&WalmartRefund> = refunds
                .iter()
                .filter(|r| {
                    r.purchase_order_id == order.purchase_order_id && r.line_number == number
                })
                .collect();
            line_json(order, line, index + 1, &of_line, modified, now)
        })
        .collect();
    let email = order.customer_email.clone().unwrap_or_else(|| {
        format!(
            "{:0>32}@relay.walmart.com",
            order.customer_order_id.to_ascii_uppercase()
        )
    });
    json!({
        "purchaseOrderId": order.purchase_order_id,
        "customerOrderId": order.customer_order_id,
        "customerEmailId": email,
        "orderDate": if order.malformed { json!("yesterday") } else { millis(ordered) },
        "shippingInfo": {
            "phone": address.phone,
            "estimatedDeliveryDate": millis(order.estimated_delivery.map_or(ordered + Duration::days(5), |w| w.resolve(now))),
            "estimatedShipDate": millis(order.estimated_ship.map_or(ordered + Duration::days(1), |w| w.resolve(now))),
            "methodCode": order.method,
            "postalAddress": postal,
        },
        "orderLines": {"orderLine": lines},
        "orderSummary": {
            "totalAmount": {"currencyAmount": money(Amount::from_cents(total_cents)), "currencyUnit": "USD"}
        },
        "shipNode": {"type": order.ship_node.clone().unwrap_or_else(|| "SellerFulfilled".to_owned())},
    })
}

fn line_json(
    order: &WalmartScenarioOrder,
    line: &WalmartScenarioLine,
    number: usize,
    refunds: &[&WalmartRefund],
    modified: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Value {
    let mut charges = vec![json!({
        "chargeType": "PRODUCT",
        "chargeName": "ItemPrice",
        "chargeAmount": {"currency": "USD", "amount": money(line.price)},
        "tax": {"taxName": "Tax1", "taxAmount": {"currency": "USD", "amount": money(line.tax)}},
    })];
    if line.shipping.cents() != 0 {
        charges.push(json!({
            "chargeType": "SHIPPING",
            "chargeName": "Shipping",
            "chargeAmount": {"currency": "USD", "amount": money(line.shipping)},
        }));
    }
    let mut statuses = Vec::new();
    let main_quantity = line.quantity - line.cancelled_quantity;
    if main_quantity > 0 {
        let mut status = Map::new();
        status.insert("status".into(), json!(line.status));
        status.insert("statusQuantity".into(), quantity(main_quantity));
        if line.status == "Cancelled"
            && let Some(reason) = &line.cancellation_reason
        {
            status.insert("cancellationReason".into(), json!(reason));
        }
        if let Some(tracking) = &line.tracking {
            let carrier = if KNOWN_CARRIERS.contains(&tracking.carrier.as_str()) {
                json!({"carrier": tracking.carrier})
            } else {
                json!({"otherCarrier": tracking.carrier})
            };
            let url = tracking.url.clone().unwrap_or_else(|| {
                format!(
                    "https://www.walmart.com/tracking?tracking_id={}&order_id={}",
                    tracking.number, order.purchase_order_id
                )
            });
            status.insert(
                "trackingInfo".into(),
                json!({
                    "shipDateTime": millis(tracking.shipped.resolve(now)),
                    "carrierName": carrier,
                    "methodCode": order.method,
                    "trackingNumber": tracking.number,
                    "trackingURL": url,
                }),
            );
        }
        statuses.push(Value::Object(status));
    }
    if line.cancelled_quantity > 0 {
        let mut status = Map::new();
        status.insert("status".into(), json!("Cancelled"));
        status.insert("statusQuantity".into(), quantity(line.cancelled_quantity));
        if let Some(reason) = &line.cancellation_reason {
            status.insert("cancellationReason".into(), json!(reason));
        }
        statuses.push(Value::Object(status));
    }
    let mut value = json!({
        "lineNumber": number.to_string(),
        "item": {"productName": line.product_name, "sku": line.sku},
        "charges": {"charge": charges},
        "orderLineQuantity": quantity(line.quantity),
        "statusDate": millis(line.status_date.map_or(modified, |w| w.resolve(now))),
        "orderLineStatuses": {"orderLineStatus": statuses},
        "fulfillment": {"fulfillmentOption": "S2H", "shipMethod": order.method.to_ascii_uppercase()},
    });
    if line.intent_to_cancel
        && let Some(map) = value.as_object_mut()
    {
        map.insert("intentToCancel".into(), json!("true"));
    }
    if let (Some(last), Some(map)) = (refunds.last(), value.as_object_mut()) {
        map.insert("refund".into(), refund_json(last, refunds));
    }
    value
}

/// A line's `refund` (`RefundType`): every refunded charge so far, the latest refund's
/// id and comments.
fn refund_json(last: &WalmartRefund, refunds: &[&WalmartRefund]) -> Value {
    let charges: Vec<Value> = refunds
        .iter()
        .map(|r| {
            let mut charge = json!({
                "chargeType": r.charge_type,
                "chargeName": r.charge_name,
                "chargeAmount": {"currency": "USD", "amount": money(Amount::from_cents(-r.amount.cents()))},
            });
            if r.tax.cents() != 0
                && let Some(map) = charge.as_object_mut()
            {
                map.insert(
                    "tax".into(),
                    json!({"taxName": "Tax1", "taxAmount": {"currency": "USD", "amount": money(Amount::from_cents(-r.tax.cents()))}}),
                );
            }
            json!({"refundReason": r.reason, "charge": charge})
        })
        .collect();
    let mut refund = Map::new();
    refund.insert("refundId".into(), json!(last.refund_id));
    if let Some(comments) = &last.comments {
        refund.insert("refundComments".into(), json!(comments));
    }
    refund.insert("refundCharges".into(), json!({"refundCharge": charges}));
    Value::Object(refund)
}

/// The listing's filters, read from the query (a first call's or a cursor's).
struct Filters {
    created_from: DateTime<Utc>,
    created_to: DateTime<Utc>,
    modified_from: Option<DateTime<Utc>>,
    modified_to: Option<DateTime<Utc>>,
    status: Option<String>,
    purchase_order_id: Option<String>,
    customer_order_id: Option<String>,
    sku: Option<String>,
    limit: u32,
    offset: usize,
}

/// A query parameter the listing refuses: (parameter, why).
type BadParam = (String, String);

fn bad_param(response_field: &str, description: &str) -> BadParam {
    (response_field.to_owned(), description.to_owned())
}

fn filters(query: &str, now: DateTime<Utc>) -> Result<Filters, BadParam> {
    let pairs: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let date = |name: &str| -> Result<Option<DateTime<Utc>>, BadParam> {
        match pairs.get(name) {
            None => Ok(None),
            Some(text) => parse_date(text).map(Some).ok_or_else(|| {
                bad_param(
                    name,
                    &format!("{name} must be yyyy-MM-dd or yyyy-MM-ddTHH:mm:ssZ"),
                )
            }),
        }
    };
    let limit = match pairs.get("limit") {
        None => 100,
        Some(text) => match text.trim().parse::<u32>() {
            Ok(n) if (1..=200).contains(&n) => n,
            _ => return Err(bad_param("limit", "limit must be 1 to 200")),
        },
    };
    let offset = match pairs.get("soIndex") {
        None => 0,
        Some(text) => text
            .trim()
            .parse::<usize>()
            .map_err(|_| bad_param("nextCursor", "the cursor is not one this API issued"))?,
    };
    Ok(Filters {
        created_from: date("createdStartDate")?.unwrap_or(now - Duration::days(7)),
        created_to: date("createdEndDate")?.unwrap_or(now),
        modified_from: date("lastModifiedStartDate")?,
        modified_to: date("lastModifiedEndDate")?,
        status: pairs.get("status").cloned(),
        purchase_order_id: pairs.get("purchaseOrderId").cloned(),
        customer_order_id: pairs.get("customerOrderId").cloned(),
        sku: pairs.get("sku").cloned(),
        limit,
        offset,
    })
}

impl Filters {
    fn keeps(&self, order: &WalmartScenarioOrder, now: DateTime<Utc>) -> bool {
        let ordered = order.ordered(now);
        let modified = order.modified(now);
        ordered <= now
            && ordered >= now - Duration::days(180)
            && ordered >= self.created_from
            && ordered <= self.created_to
            && self.modified_from.is_none_or(|from| modified >= from)
            && self.modified_to.is_none_or(|to| modified <= to)
            && self
                .status
                .as_ref()
                .is_none_or(|s| order.lines.iter().any(|l| &l.status == s))
            && self
                .purchase_order_id
                .as_ref()
                .is_none_or(|id| *id == order.purchase_order_id)
            && self
                .customer_order_id
                .as_ref()
                .is_none_or(|id| *id == order.customer_order_id)
            && self
                .sku
                .as_ref()
                .is_none_or(|sku| order.lines.iter().any(|l| &l.sku == sku))
    }

    /// The next page's query string, filters included.
    fn cursor(&self, next_offset: usize) -> String {
        let iso = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        out.append_pair("limit", &self.limit.to_string());
        out.append_pair("hasMoreElements", "true");
        out.append_pair("soIndex", &next_offset.to_string());
        out.append_pair("poIndex", &next_offset.to_string());
        out.append_pair("createdStartDate", &iso(self.created_from));
        out.append_pair("createdEndDate", &iso(self.created_to));
        if let Some(t) = self.modified_from {
            out.append_pair("lastModifiedStartDate", &iso(t));
        }
        if let Some(t) = self.modified_to {
            out.append_pair("lastModifiedEndDate", &iso(t));
        }
        for (name, value) in [
            ("status", &self.status),
            ("purchaseOrderId", &self.purchase_order_id),
            ("customerOrderId", &self.customer_order_id),
            ("sku", &self.sku),
        ] {
            if let Some(v) = value {
                out.append_pair(name, v);
            }
        }
        format!("?{}", out.finish())
    }
}

/// `GET /walmart/v3/orders`.
async fn get_all_orders(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(refused) = refuse(&shared, &headers) {
        return refused;
    }
    let now = shared.now();
    let filters = match filters(query.as_deref().unwrap_or(""), now) {
        Ok(f) => f,
        Err((field, description)) => {
            return errors(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST_PARAM.GMP_ORDER_API",
                &field,
                &description,
            );
        }
    };
    let state = lock(&shared.walmart);
    let mut matching: Vec<&WalmartScenarioOrder> = state
        .scenario
        .orders
        .iter()
        .filter(|o| filters.keeps(o, now))
        .collect();
    // Newest first, as Walmart lists them.
    matching.sort_by(|a, b| {
        b.ordered(now)
            .cmp(&a.ordered(now))
            .then_with(|| a.purchase_order_id.cmp(&b.purchase_order_id))
    });
    let per_page = filters.limit.min(state.scenario.page_size) as usize;
    let total = matching.len();
    let page: Vec<Value> = matching
        .iter()
        .skip(filters.offset)
        .take(per_page)
        .map(|o| order_json(o, &state.refunds, now))
        .collect();
    let next = filters.offset + per_page;
    let mut meta = json!({"totalCount": total, "limit": per_page});
    if next < total
        && let Some(map) = meta.as_object_mut()
    {
        map.insert("nextCursor".into(), json!(filters.cursor(next)));
    }
    Json(json!({"list": {"meta": meta, "elements": {"order": page}}})).into_response()
}

/// `GET /walmart/v3/orders/{purchaseOrderId}`.
async fn get_an_order(
    State(shared): State<Arc<Shared>>,
    Path(purchase_order_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refuse(&shared, &headers) {
        return refused;
    }
    let now = shared.now();
    let state = lock(&shared.walmart);
    match state
        .scenario
        .orders
        .iter()
        .find(|o| o.purchase_order_id == purchase_order_id && o.ordered(now) <= now)
    {
        Some(order) => {
            Json(json!({"order": order_json(order, &state.refunds, now)})).into_response()
        }
        None => errors(
            StatusCode::NOT_FOUND,
            "CONTENT_NOT_FOUND.GMP_ORDER_API",
            "purchaseOrderId",
            "Requested content could not be found.",
        ),
    }
}

/// `cancellationReason`s the contract lists.
pub const CANCELLATION_REASONS: [&str; 5] = [
    "CUSTOMER_REQUESTED_SELLER_TO_CANCEL",
    "SELLER_CANCEL_PRICING_ERROR",
    "SELLER_CANCEL_OUT_OF_STOCK",
    "SELLER_CANCEL_FRAUD_STOP_SHIPMENT",
    "SELLER_CANCEL_ADDRESS_NOT_SERVICEABLE",
];

/// `refundReason`s the contract lists.
pub const REFUND_REASONS: [&str; 22] = [
    "BillingError",
    "TaxExemptCustomer",
    "ItemNotAsAdvertised",
    "IncorrectItemReceived",
    "CancelledYetShipped",
    "ItemNotReceivedByCustomer",
    "IncorrectShippingPrice",
    "DamagedItem",
    "DefectiveItem",
    "CustomerChangedMind",
    "CustomerReceivedItemLate",
    "Missing Parts / Instructions",
    "Finance -> Goodwill",
    "Finance -> Rollback",
    "Buyer canceled",
    "Customer returned item",
    "General adjustment",
    "Merchandise not received",
    "Quality -> Missing Parts / Instructions",
    "Shipping & Delivery -> Damaged",
    "Shipping & Delivery -> Shipping Price Discrepancy",
    "Others",
];

/// A request body the order actions refuse: (field, why).
type BadBody = (String, String);

fn bad_body(field: &str, why: impl Into<String>) -> BadBody {
    (field.to_owned(), why.into())
}

fn invalid_content((field, why): BadBody) -> Response {
    errors(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST_CONTENT.GMP_ORDER_API",
        &field,
        &why,
    )
}

fn no_such_order() -> Response {
    errors(
        StatusCode::NOT_FOUND,
        "CONTENT_NOT_FOUND.GMP_ORDER_API",
        "purchaseOrderId",
        "Requested content could not be found.",
    )
}

/// The array at `pointer`, refused when it is missing or empty.
fn non_empty_array<'a>(
    value: &'a Value,
    pointer: &str,
    field: &str,
) -> Result<&'a Vec<Value>, BadBody> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .filter(|items| !items.is_empty())
        .ok_or_else(|| bad_body(field, format!("{field} must be a non-empty array")))
}

/// The index of line `lineNumber` of `order`.
fn line_index(order: &WalmartScenarioOrder, line: &Value) -> Result<usize, BadBody> {
    let number = line
        .get("lineNumber")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_body("lineNumber", "every orderLine needs its lineNumber as text"))?;
    number
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=order.lines.len()).contains(n))
        .map(|n| n - 1)
        .ok_or_else(|| {
            bad_body(
                "lineNumber",
                format!(
                    "purchase order {} has no line {number}",
                    order.purchase_order_id
                ),
            )
        })
}

/// Units of a line still open (Created or Acknowledged).
fn open_units(line: &WalmartScenarioLine) -> u32 {
    if matches!(line.status.as_str(), "Created" | "Acknowledged") {
        line.quantity - line.cancelled_quantity
    } else {
        0
    }
}

/// Units of a line that left the seller.
fn shipped_units(line: &WalmartScenarioLine) -> u32 {
    if matches!(line.status.as_str(), "Shipped" | "Delivered" | "Refund") {
        line.quantity - line.cancelled_quantity
    } else {
        0
    }
}

/// What a cancellation asks: (line index, units, reason), checked against the order.
fn cancellation(
    request: &Value,
    order: &WalmartScenarioOrder,
) -> Result<Vec<(usize, u32, String)>, BadBody> {
    let lines = non_empty_array(
        request,
        "/orderCancellation/orderLines/orderLine",
        "orderCancellation.orderLines.orderLine",
    )?;
    let mut asked: Vec<(usize, u32, String)> = Vec::new();
    for line in lines {
        let index = line_index(order, line)?;
        let statuses = non_empty_array(
            line,
            "/orderLineStatuses/orderLineStatus",
            "orderLineStatuses.orderLineStatus",
        )?;
        for status in statuses {
            if status.get("status").and_then(Value::as_str) != Some("Cancelled") {
                return Err(bad_body("status", "status must be Cancelled"));
            }
            let reason = status
                .get("cancellationReason")
                .and_then(Value::as_str)
                .filter(|r| CANCELLATION_REASONS.contains(r))
                .ok_or_else(|| {
                    bad_body(
                        "cancellationReason",
                        format!("cancellationReason must be one of {CANCELLATION_REASONS:?}"),
                    )
                })?;
            let unit = status
                .pointer("/statusQuantity/unitOfMeasurement")
                .and_then(Value::as_str);
            if !matches!(unit, Some("EACH" | "EA")) {
                return Err(bad_body(
                    "statusQuantity.unitOfMeasurement",
                    "unitOfMeasurement must be EACH or EA",
                ));
            }
            let units = status
                .pointer("/statusQuantity/amount")
                .and_then(Value::as_str)
                .and_then(|a| a.trim().parse::<u32>().ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    bad_body(
                        "statusQuantity.amount",
                        "statusQuantity.amount must be a whole number of units, at least 1",
                    )
                })?;
            asked.push((index, units, reason.to_owned()));
        }
    }
    for (index, line) in order.lines.iter().enumerate() {
        let units: u32 = asked
            .iter()
            .filter(|(i, ..)| *i == index)
            .map(|(_, n, _)| n)
            .sum();
        if units == 0 {
            continue;
        }
        if shipped_units(line) > 0 {
            return Err(bad_body(
                "lineNumber",
                format!(
                    "line {} is {}: it cannot be cancelled",
                    index + 1,
                    line.status
                ),
            ));
        }
        let open = open_units(line);
        if units > open {
            return Err(bad_body(
                "statusQuantity.amount",
                format!(
                    "line {} has {open} unit(s) open to cancel, not {units}",
                    index + 1
                ),
            ));
        }
    }
    Ok(asked)
}

/// `POST /walmart/v3/orders/{purchaseOrderId}/cancel`.
async fn cancel_order_lines(
    State(shared): State<Arc<Shared>>,
    Path(purchase_order_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = refuse(&shared, &headers) {
        return refused;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return invalid_content(bad_body("orderCancellation", "the body is not JSON"));
    };
    let now = shared.now();
    let mut state = lock(&shared.walmart);
    let Some(index) = state
        .scenario
        .orders
        .iter()
        .position(|o| o.purchase_order_id == purchase_order_id && o.ordered(now) <= now)
    else {
        return no_such_order();
    };
    let asked = match cancellation(&request, &state.scenario.orders[index]) {
        Ok(asked) => asked,
        Err(bad) => return invalid_content(bad),
    };
    let mut done = Vec::new();
    let order = &mut state.scenario.orders[index];
    for (line_index, units, reason) in asked {
        if let Some(line) = order.lines.get_mut(line_index) {
            line.cancelled_quantity += units;
            line.cancellation_reason = Some(reason.clone());
            if line.cancelled_quantity >= line.quantity {
                line.status = "Cancelled".to_owned();
            }
            line.status_date = Some(When::At(now));
        }
        done.push(WalmartCancellation {
            purchase_order_id: purchase_order_id.clone(),
            line_number: (line_index + 1).to_string(),
            quantity: units,
            reason,
            at: now,
        });
    }
    order.last_modified = Some(When::At(now));
    state.cancellations.extend(done);
    let state = &*state;
    let answer = order_json(&state.scenario.orders[index], &state.refunds, now);
    Json(json!({"order": answer})).into_response()
}

/// A refund charge's amount: a JSON number, negative, at most two decimals; its size.
fn refund_amount(value: Option<&Value>, field: &str) -> Result<Amount, BadBody> {
    let amount = match value {
        Some(Value::Number(number)) => Amount::parse(&number.to_string()).ok(),
        _ => None,
    }
    .ok_or_else(|| bad_body(field, format!("{field} must be an amount like -9.99")))?;
    if amount.cents() > 0 {
        return Err(bad_body(field, format!("{field} of a refund is negative")));
    }
    Ok(Amount::from_cents(-amount.cents()))
}

fn usd(value: Option<&Value>, field: &str) -> Result<(), BadBody> {
    match value.and_then(Value::as_str) {
        Some("USD") => Ok(()),
        _ => Err(bad_body(field, "this seller's charges are in USD")),
    }
}

/// One charge a refund asks for, before it is applied.
struct AskedCharge {
    line: usize,
    reason: String,
    charge_type: String,
    charge_name: String,
    amount: Amount,
    tax: Amount,
    comments: Option<String>,
}

/// What a refund asks, checked against the order and what was refunded before.
fn refund_request(
    request: &Value,
    order: &WalmartScenarioOrder,
    before: &[WalmartRefund],
) -> Result<Vec<AskedCharge>, BadBody> {
    let named = request
        .pointer("/orderRefund/purchaseOrderId")
        .and_then(Value::as_str);
    if named != Some(order.purchase_order_id.as_str()) {
        return Err(bad_body(
            "purchaseOrderId",
            "orderRefund.purchaseOrderId must be the purchase order of the path",
        ));
    }
    let lines = non_empty_array(
        request,
        "/orderRefund/orderLines/orderLine",
        "orderRefund.orderLines.orderLine",
    )?;
    let mut asked = Vec::new();
    for line in lines {
        let index = line_index(order, line)?;
        let Some(scenario_line) = order.lines.get(index) else {
            return Err(bad_body("lineNumber", "no such line"));
        };
        if shipped_units(scenario_line) == 0 {
            return Err(bad_body(
                "lineNumber",
                format!(
                    "line {} is {}: only shipped lines are refunded (cancel it instead)",
                    index + 1,
                    scenario_line.status
                ),
            ));
        }
        match line.get("isFullRefund") {
            None | Some(Value::Bool(_)) => {}
            Some(_) => return Err(bad_body("isFullRefund", "isFullRefund is true or false")),
        }
        for refund in non_empty_array(line, "/refunds/refund", "refunds.refund")? {
            let comments = match refund.get("refundComments") {
                None => None,
                Some(Value::String(text)) => Some(text.clone()),
                Some(_) => return Err(bad_body("refundComments", "refundComments is text")),
            };
            for charge in non_empty_array(
                refund,
                "/refundCharges/refundCharge",
                "refundCharges.refundCharge",
            )? {
                let reason = charge
                    .get("refundReason")
                    .and_then(Value::as_str)
                    .filter(|r| REFUND_REASONS.contains(r))
                    .ok_or_else(|| {
                        bad_body(
                            "refundReason",
                            format!("refundReason must be one of {REFUND_REASONS:?}"),
                        )
                    })?;
                let charge_type = charge
                    .pointer("/charge/chargeType")
                    .and_then(Value::as_str)
                    .filter(|t| matches!(*t, "PRODUCT" | "SHIPPING"))
                    .ok_or_else(|| bad_body("chargeType", "chargeType is PRODUCT or SHIPPING"))?;
                let charge_name = charge
                    .pointer("/charge/chargeName")
                    .and_then(Value::as_str)
                    .filter(|n| !n.trim().is_empty())
                    .ok_or_else(|| bad_body("chargeName", "every charge needs its chargeName"))?;
                usd(
                    charge.pointer("/charge/chargeAmount/currency"),
                    "chargeAmount.currency",
                )?;
                let amount = refund_amount(
                    charge.pointer("/charge/chargeAmount/amount"),
                    "chargeAmount.amount",
                )?;
                let tax = match charge.pointer("/charge/tax") {
                    None => Amount::default(),
                    Some(tax) => {
                        if tax.get("taxName").and_then(Value::as_str).is_none() {
                            return Err(bad_body("taxName", "a tax needs its taxName"));
                        }
                        usd(tax.pointer("/taxAmount/currency"), "taxAmount.currency")?;
                        refund_amount(tax.pointer("/taxAmount/amount"), "taxAmount.amount")?
                    }
                };
                asked.push(AskedCharge {
                    line: index,
                    reason: reason.to_owned(),
                    charge_type: charge_type.to_owned(),
                    charge_name: charge_name.to_owned(),
                    amount,
                    tax,
                    comments: comments.clone(),
                });
            }
        }
    }
    // No charge is refunded beyond what was paid for it.
    for (index, line) in order.lines.iter().enumerate() {
        let number = (index + 1).to_string();
        for (charge_type, paid, paid_tax) in [
            ("PRODUCT", line.price, line.tax),
            ("SHIPPING", line.shipping, Amount::default()),
        ] {
            let earlier = before.iter().filter(|r| {
                r.purchase_order_id == order.purchase_order_id
                    && r.line_number == number
                    && r.charge_type == charge_type
            });
            let now = asked
                .iter()
                .filter(|a| a.line == index && a.charge_type == charge_type);
            let amount: i64 = earlier.clone().map(|r| r.amount.cents()).sum::<i64>()
                + now.clone().map(|a| a.amount.cents()).sum::<i64>();
            let tax: i64 = earlier.map(|r| r.tax.cents()).sum::<i64>()
                + now.map(|a| a.tax.cents()).sum::<i64>();
            if amount > paid.cents() || tax > paid_tax.cents() {
                return Err(bad_body(
                    "chargeAmount.amount",
                    format!(
                        "line {number}: refunds of {charge_type} would come to {} (tax {}), more than the {paid} (tax {paid_tax}) charged",
                        Amount::from_cents(amount),
                        Amount::from_cents(tax)
                    ),
                ));
            }
        }
    }
    Ok(asked)
}

/// `POST /walmart/v3/orders/{purchaseOrderId}/refund`.
async fn refund_order_lines(
    State(shared): State<Arc<Shared>>,
    Path(purchase_order_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = refuse(&shared, &headers) {
        return refused;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return invalid_content(bad_body("orderRefund", "the body is not JSON"));
    };
    let now = shared.now();
    let mut state = lock(&shared.walmart);
    let Some(index) = state
        .scenario
        .orders
        .iter()
        .position(|o| o.purchase_order_id == purchase_order_id && o.ordered(now) <= now)
    else {
        return no_such_order();
    };
    let asked = match refund_request(&request, &state.scenario.orders[index], &state.refunds) {
        Ok(asked) => asked,
        Err(bad) => return invalid_content(bad),
    };
    state.refund_requests += 1;
    let request_number = state.refund_requests;
    for charge in asked {
        let line_number = (charge.line + 1).to_string();
        state.refunds.push(WalmartRefund {
            purchase_order_id: purchase_order_id.clone(),
            refund_id: format!("{purchase_order_id}-{line_number}-{request_number}"),
            line_number,
            reason: charge.reason,
            charge_type: charge.charge_type,
            charge_name: charge.charge_name,
            amount: charge.amount,
            tax: charge.tax,
            comments: charge.comments,
            at: now,
        });
    }
    if let Some(order) = state.scenario.orders.get_mut(index) {
        order.last_modified = Some(When::At(now));
    }
    let state = &*state;
    let answer = order_json(&state.scenario.orders[index], &state.refunds, now);
    Json(json!({"order": answer})).into_response()
}

impl Sandbox {
    /// Walmart's purchase orders as the sandbox holds them now (times absolute).
    pub fn walmart_orders(&self) -> Vec<WalmartScenarioOrder> {
        lock(&self.shared.walmart).scenario.orders.clone()
    }

    /// Refunded charges (`refundOrderLines`), oldest first; all orders or one.
    pub fn walmart_refunds(&self, purchase_order_id: Option<&str>) -> Vec<WalmartRefund> {
        lock(&self.shared.walmart)
            .refunds
            .iter()
            .filter(|r| purchase_order_id.is_none_or(|id| r.purchase_order_id == id))
            .cloned()
            .collect()
    }

    /// Lines cancelled (`cancelOrderLines`), oldest first; all orders or one.
    pub fn walmart_cancellations(
        &self,
        purchase_order_id: Option<&str>,
    ) -> Vec<WalmartCancellation> {
        lock(&self.shared.walmart)
            .cancellations
            .iter()
            .filter(|c| purchase_order_id.is_none_or(|id| c.purchase_order_id == id))
            .cloned()
            .collect()
    }

    /// Forgets every Walmart access token issued so far, as if they had expired.
    pub fn expire_walmart_tokens(&self) {
        lock(&self.shared.walmart).tokens.clear();
    }

    /// How many Walmart access tokens were issued so far.
    pub fn walmart_tokens_issued(&self) -> u64 {
        lock(&self.shared.walmart).issued
    }

    /// Adds a purchase order; relative times are measured from the clock's now.
    pub fn add_walmart_order(&self, mut order: WalmartScenarioOrder) -> Result<(), SandboxError> {
        order
            .validate()
            .map_err(|message| SandboxError::InvalidOrder {
                id: order.purchase_order_id.clone(),
                message,
            })?;
        order.pin_times(self.shared.now());
        let mut state = lock(&self.shared.walmart);
        if state
            .scenario
            .orders
            .iter()
            .any(|o| o.purchase_order_id == order.purchase_order_id)
        {
            return Err(SandboxError::InvalidOrder {
                id: order.purchase_order_id,
                message: "an order with this id already exists".to_owned(),
            });
        }
        state.scenario.orders.push(order);
        Ok(())
    }

    /// Changes a purchase order in place; relative times set by `change` are measured
    /// from the clock's now (e.g. `o.last_modified = Some(When::now())`).
    pub fn update_walmart_order(
        &self,
        purchase_order_id: &str,
        change: impl FnOnce(&mut WalmartScenarioOrder),
    ) -> Result<(), SandboxError> {
        let now = self.shared.now();
        let mut state = lock(&self.shared.walmart);
        let slot = state
            .scenario
            .orders
            .iter_mut()
            .find(|o| o.purchase_order_id == purchase_order_id)
            .ok_or_else(|| SandboxError::UnknownOrder(purchase_order_id.to_owned()))?;
        let mut changed = slot.clone();
        change(&mut changed);
        changed.pin_times(now);
        changed
            .validate()
            .map_err(|message| SandboxError::InvalidOrder {
                id: purchase_order_id.to_owned(),
                message,
            })?;
        *slot = changed;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_for_the_journal_and_faults() {
        assert_eq!(classify("POST", &["v3", "token"]), Some(TOKEN));
        assert_eq!(classify("GET", &["v3", "orders"]), Some(GET_ALL_ORDERS));
        assert_eq!(
            classify("GET", &["v3", "orders", "123"]),
            Some(GET_AN_ORDER)
        );
        assert_eq!(classify("GET", &["v3", "orders", ""]), None);
        assert_eq!(classify("DELETE", &["v3", "orders"]), None);
    }

    #[test]
    fn a_scenario_parses_from_yaml_with_defaults() -> Result<(), String> {
        let yaml = r#"
orders:
  - purchase_order_id: "1815367951431"
    customer_order_id: "4372135469400"
    order_date: 2d
    ship_to: {name: Ann Lee, address1: 1 Main St, city: Bentonville, state: AR, postal_code: "72712"}
    lines:
      - {sku: SKU-1, product_name: Mug, price: 12.50, tax: 1.00, status: Shipped,
         tracking: {carrier: UPS, number: 1Z999AA10123456784, shipped: 1d}}
"#;
        let scenario: WalmartScenario = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        scenario.validate()?;
        assert_eq!(scenario.client_id, CLIENT_ID);
        assert_eq!(scenario.token_lifetime, TOKEN_LIFETIME);
        assert_eq!(scenario.orders[0].ship_to.country, "USA");
        assert_eq!(scenario.orders[0].lines[0].quantity, 1);
        let mut bad = scenario.clone();
        bad.orders[0].lines[0].status = "Lost".into();
        assert!(bad.validate().is_err());
        Ok(())
    }

    #[test]
    fn cursors_carry_the_filters() -> Result<(), String> {
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let f = filters("lastModifiedStartDate=2027-01-01T00:00:00Z&limit=2", now)
            .map_err(|_| "filters refused".to_owned())?;
        let cursor = f.cursor(2);
        assert!(
            cursor.starts_with("?limit=2&hasMoreElements=true&soIndex=2"),
            "{cursor}"
        );
        let again = filters(cursor.trim_start_matches('?'), now)
            .map_err(|_| "cursor refused".to_owned())?;
        assert_eq!((again.offset, again.limit), (2, 2));
        assert_eq!(again.modified_from, f.modified_from);
        assert!(filters("limit=201", now).is_err());
        Ok(())
    }
}
