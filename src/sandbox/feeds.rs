//! SP-API Feeds 2021-06-30 (`specs/amazon/feeds_2021-06-30.json`, research notes §7)
//! with the two order feeds nightdesk sends, and the presigned document URLs that stand
//! in for Amazon S3.
//!
//! The flow: `createFeedDocument` hands out `/_sandbox/uploads/{id}?X-Amz-Expires=300&
//! X-Amz-Signature=…`; a `PUT` there with the same `Content-Type`, the right signature
//! and within five minutes (sandbox clock) stores the bytes, anything else is a 403 in
//! S3's XML error shape. `createFeed` snapshots an uploaded document into an `IN_QUEUE`
//! feed. Once the sandbox clock reaches `createdTime` + the processing delay (30 s unless
//! [`super::Sandbox::set_feed_processing_delay`]), the feed is processed exactly once, by
//! the first request or accessor that could observe it (`getFeed`, `getFeeds`,
//! `cancelFeed`, the Orders and Messaging operations, `Sandbox::orders`/`feeds`/
//! `refunds`): it is applied and becomes `DONE` with a processing report
//! (`resultFeedDocumentId`), which `getFeedDocument` points at
//! (`/_sandbox/documents/{id}`, GZIP when [`super::Sandbox::compress_reports`] was on).
//!
//! Applying, message by message (a failed message changes nothing and gets one
//! `<Result>` with `ResultMessageCode` 18028 in the report):
//! - `POST_ORDER_ACKNOWLEDGEMENT_DATA`: `StatusCode` `Success` acknowledges an Unshipped
//!   or PartiallyShipped order (no change). `Failure` needs `Item`s, each with a
//!   `CancelReason` from the XSD enum, on an Unshipped order; the listed items are
//!   canceled and, once every item of the order is, the order becomes `Canceled` with
//!   `LastUpdateDate` = now. (A partial cancel only bumps `LastUpdateDate`; the item
//!   lists do not show it.) Errors: unknown order, order in another marketplace than
//!   the feed's, Pending, Shipped, Canceled, unknown item, missing or unknown reason.
//! - `POST_PAYMENT_ADJUSTMENT_DATA`: each `AdjustedItem` becomes a [`SandboxRefund`].
//!   Amounts are positive, in the order's currency. Errors: unknown order, Pending order,
//!   unknown item, reason outside the `AdjustmentReason` enum, component type outside
//!   its enum, `Principal` above the item price (unit price × quantity) minus what was
//!   already refunded, `Tax` above the item tax minus what was already refunded.
//!
//! Any other feed type, a document that is not UTF-8 XML in the `AmazonEnvelope` shape,
//! or a `MessageType` that does not match the feed type ends the feed `FATAL` with no
//! report: nothing is applied.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::amazon::{self, Params, iso};
use super::plans::Plan;
use super::scenario::{Amount, OrderStatus, ScenarioOrder, When};
use super::{Shared, lock, token};

pub(super) const CREATE_FEED_DOCUMENT: &str = "createFeedDocument";
pub(super) const GET_FEED_DOCUMENT: &str = "getFeedDocument";
pub(super) const CREATE_FEED: &str = "createFeed";
pub(super) const GET_FEED: &str = "getFeed";
pub(super) const GET_FEEDS: &str = "getFeeds";
pub(super) const CANCEL_FEED: &str = "cancelFeed";
/// `PUT` to the presigned upload URL (S3, not SP-API).
pub(super) const UPLOAD_FEED_DOCUMENT: &str = "uploadFeedDocument";
/// `GET` of a document URL from `getFeedDocument` (S3, not SP-API).
pub(super) const DOWNLOAD_FEED_DOCUMENT: &str = "downloadFeedDocument";

/// Usage plans from each operation's description.
pub(super) const USAGE_PLANS: &[Plan] = &[
    (GET_FEEDS, 0.0222, 10.0),
    (CREATE_FEED, 0.0083, 15.0),
    (GET_FEED, 2.0, 15.0),
    (CANCEL_FEED, 2.0, 15.0),
    (CREATE_FEED_DOCUMENT, 0.5, 15.0),
    (GET_FEED_DOCUMENT, 0.0222, 10.0),
];

pub(super) const ORDER_ACKNOWLEDGEMENT: &str = "POST_ORDER_ACKNOWLEDGEMENT_DATA";
pub(super) const PAYMENT_ADJUSTMENT: &str = "POST_PAYMENT_ADJUSTMENT_DATA";

/// How long a presigned upload URL stays valid (contract: five minutes).
const UPLOAD_URL_LIFETIME: TimeDelta = TimeDelta::minutes(5);
const DEFAULT_DELAY: Duration = Duration::from_secs(30);
/// `createdSince` default for `getFeeds`; also how long Amazon keeps feeds.
const RETENTION: TimeDelta = TimeDelta::days(90);
const REPORT_CONTENT_TYPE: &str = "text/xml; charset=UTF-8";
/// The `ResultMessageCode` of every failed message in a processing report.
const RESULT_MESSAGE_CODE: u32 = 18028;

/// `OrderAcknowledgement.xsd` `CancelReason`.
const CANCEL_REASONS: [&str; 10] = [
    "NoInventory",
    "ShippingAddressUndeliverable",
    "CustomerExchange",
    "BuyerCanceled",
    "GeneralAdjustment",
    "CarrierCreditDecision",
    "RiskAssessmentInformationNotValid",
    "CarrierCoverageFailure",
    "CustomerReturn",
    "MerchandiseNotReceived",
];

/// `OrderAdjustment.xsd` `AdjustmentReason`.
const ADJUSTMENT_REASONS: [&str; 18] = [
    "NoInventory",
    "CustomerReturn",
    "GeneralAdjustment",
    "CouldNotShip",
    "DifferentItem",
    "Abandoned",
    "CustomerCancel",
    "PriceError",
    "ProductOutofStock",
    "CustomerAddressIncorrect",
    "Exchange",
    "Other",
    "CarrierCreditDecision",
    "RiskAssessmentInformationNotValid",
    "CarrierCoverageFailure",
    "TransactionRecord",
    "Undeliverable",
    "RefusedDelivery",
];

/// `OrderAdjustment.xsd` component `Type`.
const COMPONENT_TYPES: [&str; 16] = [
    "Principal",
    "Shipping",
    "Tax",
    "ShippingTax",
    "RestockingFee",
    "RestockingFeeTax",
    "GiftWrap",
    "GiftWrapTax",
    "Surcharge",
    "ReturnShipping",
    "Goodwill",
    "ExportCharge",
    "COD",
    "CODTax",
    "Other",
    "FreeReplacementReturnShipping",
];

/// The contract's `processingStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FeedStatus {
    InQueue,
    InProgress,
    Done,
    Fatal,
    Cancelled,
}

impl FeedStatus {
    pub const ALL: [FeedStatus; 5] = [
        FeedStatus::InQueue,
        FeedStatus::InProgress,
        FeedStatus::Done,
        FeedStatus::Fatal,
        FeedStatus::Cancelled,
    ];

    /// The contract's spelling: `IN_QUEUE`, `DONE`, …
    pub fn as_str(self) -> &'static str {
        match self {
            FeedStatus::InQueue => "IN_QUEUE",
            FeedStatus::InProgress => "IN_PROGRESS",
            FeedStatus::Done => "DONE",
            FeedStatus::Fatal => "FATAL",
            FeedStatus::Cancelled => "CANCELLED",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A feed as the sandbox holds it, for tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxFeed {
    pub feed_id: String,
    pub feed_type: String,
    pub marketplace_ids: Vec<String>,
    /// `inputFeedDocumentId`.
    pub document_id: String,
    pub status: FeedStatus,
    /// `createdTime`, by the sandbox clock.
    pub created: DateTime<Utc>,
    /// The uploaded document as text (lossy UTF-8).
    pub input: String,
    /// `resultFeedDocumentId`, once `DONE`.
    pub result_document_id: Option<String>,
    /// The processing report XML, once `DONE`.
    pub report: Option<String>,
}

/// One refund applied by a `POST_PAYMENT_ADJUSTMENT_DATA` feed (one `AdjustedItem`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxRefund {
    pub order_id: String,
    /// `AmazonOrderItemCode` (the Orders API `OrderItemId`).
    pub item_code: String,
    /// `AdjustmentReason`.
    pub reason: String,
    /// Sum of the `Principal` components, e.g. `"19.99"`; `"0.00"` when none.
    pub principal: String,
    /// Sum of the `Tax` components, when there are any.
    pub tax: Option<String>,
    /// ISO 4217, the order's currency.
    pub currency: String,
    /// `MerchantAdjustmentItemID`, when sent.
    pub merchant_adjustment_item_id: Option<String>,
    /// The feed that applied it.
    pub feed_id: String,
    /// When the feed was processed, by the sandbox clock.
    pub at: DateTime<Utc>,
}

/// Feed documents, feeds and what processing them did.
#[derive(Debug)]
pub(super) struct FeedStore {
    delay: Duration,
    compress: bool,
    next_feed: u64,
    documents: HashMap<String, Document>,
    /// In creation order.
    feeds: Vec<Feed>,
    refunds: Vec<SandboxRefund>,
    /// (order id, item code) canceled by acknowledgement feeds.
    canceled_items: HashSet<(String, String)>,
}

impl Default for FeedStore {
    fn default() -> Self {
        Self {
            delay: DEFAULT_DELAY,
            compress: false,
            next_feed: 60_001_000_001,
            documents: HashMap::new(),
            feeds: Vec::new(),
            refunds: Vec::new(),
            canceled_items: HashSet::new(),
        }
    }
}

#[derive(Debug)]
struct Document {
    content_type: String,
    /// Input documents: the upload URL's signature and expiry. `None` for reports.
    upload: Option<(String, DateTime<Utc>)>,
    content: Option<Vec<u8>>,
    gzip: bool,
}

#[derive(Debug)]
struct Feed {
    id: String,
    feed_type: String,
    marketplaces: Vec<String>,
    document_id: String,
    /// The document's bytes when the feed was created.
    input: Vec<u8>,
    created: DateTime<Utc>,
    status: FeedStatus,
    started: Option<DateTime<Utc>>,
    ended: Option<DateTime<Utc>>,
    result: Option<String>,
    report: Option<String>,
}

impl FeedStore {
    pub(super) fn set_delay(&mut self, delay: Duration) {
        self.delay = delay;
    }

    pub(super) fn set_compress(&mut self, compress: bool) {
        self.compress = compress;
    }

    pub(super) fn list(&self) -> Vec<SandboxFeed> {
        self.feeds
            .iter()
            .map(|f| SandboxFeed {
                feed_id: f.id.clone(),
                feed_type: f.feed_type.clone(),
                marketplace_ids: f.marketplaces.clone(),
                document_id: f.document_id.clone(),
                status: f.status,
                created: f.created,
                input: String::from_utf8_lossy(&f.input).into_owned(),
                result_document_id: f.result.clone(),
                report: f.report.clone(),
            })
            .collect()
    }

    pub(super) fn refunds(&self, order_id: Option<&str>) -> Vec<SandboxRefund> {
        self.refunds
            .iter()
            .filter(|r| order_id.is_none_or(|id| r.order_id == id))
            .cloned()
            .collect()
    }

    /// Whether `feed` is due by `now`.
    fn is_due(&self, feed: &Feed, now: DateTime<Utc>) -> bool {
        feed.status == FeedStatus::InQueue
            && TimeDelta::from_std(self.delay)
                .ok()
                .and_then(|delay| feed.created.checked_add_signed(delay))
                .is_some_and(|ready| ready <= now)
    }

    /// Applies feed `index` to `orders` and files its report (or marks it FATAL).
    fn process(&mut self, index: usize, now: DateTime<Utc>, orders: &mut [ScenarioOrder]) {
        let Some(feed) = self.feeds.get(index) else {
            return;
        };
        let mut ledger = Ledger {
            feed_id: &feed.id,
            marketplaces: &feed.marketplaces,
            now,
            refunds: &mut self.refunds,
            canceled_items: &mut self.canceled_items,
        };
        let outcome = apply_feed(&feed.feed_type, &feed.input, orders, &mut ledger);
        let (status, result, report) = match outcome {
            Ok(report) => {
                let id = new_document_id();
                let (content, gzip) = if self.compress {
                    match gzip(report.as_bytes()) {
                        Some(bytes) => (bytes, true),
                        None => (report.clone().into_bytes(), false),
                    }
                } else {
                    (report.clone().into_bytes(), false)
                };
                self.documents.insert(
                    id.clone(),
                    Document {
                        content_type: REPORT_CONTENT_TYPE.to_owned(),
                        upload: None,
                        content: Some(content),
                        gzip,
                    },
                );
                (FeedStatus::Done, Some(id), Some(report))
            }
            Err(reason) => {
                tracing::info!(feed_id = %feed.id, %reason, "sandbox feed FATAL");
                (FeedStatus::Fatal, None, None)
            }
        };
        if let Some(feed) = self.feeds.get_mut(index) {
            feed.status = status;
            feed.started = Some(now);
            feed.ended = Some(now);
            feed.result = result;
            feed.report = report;
        }
    }
}

/// Processes every feed whose delay has passed, oldest first. Locks `feeds`, then
/// `amazon` (the documented order).
pub(super) fn settle(state: &Shared) {
    let now = state.now();
    let mut store = lock(&state.feeds);
    let due: Vec<usize> = (0..store.feeds.len())
        .filter(|&i| store.is_due(&store.feeds[i], now))
        .collect();
    if due.is_empty() {
        return;
    }
    let mut amazon = lock(&state.amazon);
    for index in due {
        store.process(index, now, &mut amazon.orders);
    }
    // Processing may have moved LastUpdateDates: getOrders' index must be rebuilt.
    state.orders_changed();
}

/// The operation for `rest`, the path after `/feeds/2021-06-30`.
pub(super) fn classify(method: &str, rest: &[&str]) -> Option<&'static str> {
    match (method, rest) {
        ("POST", ["documents"]) => Some(CREATE_FEED_DOCUMENT),
        ("GET", ["documents", id]) if !id.is_empty() => Some(GET_FEED_DOCUMENT),
        ("POST", ["feeds"]) => Some(CREATE_FEED),
        ("GET", ["feeds"]) => Some(GET_FEEDS),
        ("GET", ["feeds", id]) if !id.is_empty() => Some(GET_FEED),
        ("DELETE", ["feeds", id]) if !id.is_empty() => Some(CANCEL_FEED),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// SP-API handlers

/// `POST /feeds/2021-06-30/documents` `{"contentType"}` → 201 `{feedDocumentId, url}`.
pub(super) async fn create_feed_document(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = amazon::refusal(&state, &headers, CREATE_FEED_DOCUMENT) {
        return refused;
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return amazon::invalid_input("The request body must be a JSON object.");
    };
    let Some(content_type) = fields
        .get("contentType")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|ct| !ct.is_empty())
    else {
        return amazon::invalid_input("Missing required field: contentType.");
    };
    let id = new_document_id();
    let signature = random_hex(32);
    let expires = state.now() + UPLOAD_URL_LIFETIME;
    lock(&state.feeds).documents.insert(
        id.clone(),
        Document {
            content_type: content_type.to_owned(),
            upload: Some((signature.clone(), expires)),
            content: None,
            gzip: false,
        },
    );
    let url = format!(
        "{}/_sandbox/uploads/{id}?X-Amz-Expires={}&X-Amz-Signature={signature}",
        state.base_url,
        UPLOAD_URL_LIFETIME.num_seconds()
    );
    (
        StatusCode::CREATED,
        Json(json!({"feedDocumentId": id, "url": url})),
    )
        .into_response()
}

/// `GET /feeds/2021-06-30/documents/{feedDocumentId}` → `{feedDocumentId, url,
/// compressionAlgorithm?}`.
pub(super) async fn get_feed_document(
    State(state): State<Arc<Shared>>,
    Path(document_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(refused) = amazon::refusal(&state, &headers, GET_FEED_DOCUMENT) {
        return refused;
    }
    let gzip = match lock(&state.feeds).documents.get(&document_id) {
        Some(document) => document.gzip,
        None => {
            return amazon::error_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("Feed document {document_id} was not found."),
                None,
            );
        }
    };
    let encoding_header = Params::parse(query.as_deref())
        .one("enableContentEncodingUrlHeader")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut url = format!("{}/_sandbox/documents/{document_id}", state.base_url);
    if gzip && encoding_header {
        url.push_str("?response-content-encoding=gzip");
    }
    let mut body = Map::new();
    body.insert("feedDocumentId".into(), Value::String(document_id));
    body.insert("url".into(), Value::String(url));
    if gzip {
        body.insert("compressionAlgorithm".into(), json!("GZIP"));
    }
    Json(Value::Object(body)).into_response()
}

/// `POST /feeds/2021-06-30/feeds` → 202 `{feedId}`.
pub(super) async fn create_feed(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = amazon::refusal(&state, &headers, CREATE_FEED) {
        return refused;
    }
    let spec = match FeedSpecification::parse(&body) {
        Ok(spec) => spec,
        Err(message) => return amazon::invalid_input(&message),
    };
    let now = state.now();
    let mut store = lock(&state.feeds);
    let input = match store.documents.get(&spec.document_id) {
        Some(Document {
            upload: Some(_),
            content: Some(content),
            ..
        }) => content.clone(),
        Some(Document { upload: None, .. }) => {
            return amazon::invalid_input(&format!(
                "inputFeedDocumentId {} is a processing report, not an input document.",
                spec.document_id
            ));
        }
        Some(_) => {
            return amazon::invalid_input(&format!(
                "The feed document {} has not been uploaded. Upload its contents before \
                 calling createFeed.",
                spec.document_id
            ));
        }
        None => {
            return amazon::invalid_input(&format!(
                "Invalid inputFeedDocumentId: {} does not exist.",
                spec.document_id
            ));
        }
    };
    let id = store.next_feed.to_string();
    store.next_feed += 1;
    store.feeds.push(Feed {
        id: id.clone(),
        feed_type: spec.feed_type,
        marketplaces: spec.marketplaces,
        document_id: spec.document_id,
        input,
        created: now,
        status: FeedStatus::InQueue,
        started: None,
        ended: None,
        result: None,
        report: None,
    });
    (StatusCode::ACCEPTED, Json(json!({"feedId": id}))).into_response()
}

/// `GET /feeds/2021-06-30/feeds/{feedId}` → the `Feed`.
pub(super) async fn get_feed(
    State(state): State<Arc<Shared>>,
    Path(feed_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = amazon::refusal(&state, &headers, GET_FEED) {
        return refused;
    }
    settle(&state);
    let store = lock(&state.feeds);
    match store.feeds.iter().find(|f| f.id == feed_id) {
        Some(feed) => Json(feed_json(feed)).into_response(),
        None => feed_not_found(&feed_id),
    }
}

/// `DELETE /feeds/2021-06-30/feeds/{feedId}`: only an `IN_QUEUE` feed can be cancelled.
pub(super) async fn cancel_feed(
    State(state): State<Arc<Shared>>,
    Path(feed_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = amazon::refusal(&state, &headers, CANCEL_FEED) {
        return refused;
    }
    settle(&state);
    let now = state.now();
    let mut store = lock(&state.feeds);
    let Some(feed) = store.feeds.iter_mut().find(|f| f.id == feed_id) else {
        return feed_not_found(&feed_id);
    };
    if feed.status != FeedStatus::InQueue {
        return amazon::invalid_input(&format!(
            "Feed {feed_id} is {}; only IN_QUEUE feeds can be cancelled.",
            feed.status.as_str()
        ));
    }
    feed.status = FeedStatus::Cancelled;
    feed.ended = Some(now);
    StatusCode::OK.into_response()
}

/// `GET /feeds/2021-06-30/feeds` → `{feeds, nextToken?}`, newest first.
pub(super) async fn get_feeds(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(refused) = amazon::refusal(&state, &headers, GET_FEEDS) {
        return refused;
    }
    let now = state.now();
    let (filter, page, offset) = match FeedsFilter::from_query(query.as_deref(), now) {
        Ok(found) => found,
        Err(message) => return amazon::invalid_input(&message),
    };
    settle(&state);
    let store = lock(&state.feeds);
    let mut hits: Vec<(usize, &Feed)> = store
        .feeds
        .iter()
        .enumerate()
        .filter(|(_, f)| filter.admits(f))
        .collect();
    hits.sort_by(|(ia, a), (ib, b)| (b.created, ib).cmp(&(a.created, ia)));
    let start = offset.min(hits.len());
    let end = start.saturating_add(filter.page_size).min(hits.len());
    let feeds: Vec<Value> = hits[start..end].iter().map(|(_, f)| feed_json(f)).collect();
    let mut body = Map::new();
    body.insert("feeds".into(), Value::Array(feeds));
    if end < hits.len() {
        let next = FeedsToken {
            op: GET_FEEDS.to_owned(),
            page: page + 1,
            offset: end,
            filter,
        };
        body.insert("nextToken".into(), Value::String(token::encode(&next)));
    }
    Json(Value::Object(body)).into_response()
}

fn feed_not_found(feed_id: &str) -> Response {
    amazon::error_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("Feed {feed_id} was not found."),
        None,
    )
}

/// Contract `Feed`.
fn feed_json(feed: &Feed) -> Value {
    let mut o = Map::new();
    o.insert("feedId".into(), json!(feed.id));
    o.insert("feedType".into(), json!(feed.feed_type));
    o.insert("marketplaceIds".into(), json!(feed.marketplaces));
    o.insert("createdTime".into(), json!(iso(feed.created)));
    o.insert("processingStatus".into(), json!(feed.status.as_str()));
    if let Some(at) = feed.started {
        o.insert("processingStartTime".into(), json!(iso(at)));
    }
    if let Some(at) = feed.ended {
        o.insert("processingEndTime".into(), json!(iso(at)));
    }
    if let Some(id) = &feed.result {
        o.insert("resultFeedDocumentId".into(), json!(id));
    }
    Value::Object(o)
}

/// Contract `CreateFeedSpecification`, checked.
struct FeedSpecification {
    feed_type: String,
    marketplaces: Vec<String>,
    document_id: String,
}

impl FeedSpecification {
    fn parse(body: &[u8]) -> Result<Self, String> {
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
            return Err("The request body must be a JSON object.".to_owned());
        };
        let text = |name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("Missing required field: {name}."))
        };
        let feed_type = text("feedType")?;
        let document_id = text("inputFeedDocumentId")?;
        let marketplaces: Vec<String> = match fields.get("marketplaceIds") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned)
                })
                .collect::<Option<_>>()
                .ok_or("marketplaceIds must hold non-empty strings.")?,
            _ => return Err("Missing required field: marketplaceIds.".to_owned()),
        };
        if marketplaces.is_empty() || marketplaces.len() > 25 {
            return Err("marketplaceIds must hold 1 to 25 marketplaces.".to_owned());
        }
        match fields.get("feedOptions") {
            None | Some(Value::Null) => {}
            Some(Value::Object(options)) if options.values().all(Value::is_string) => {}
            Some(_) => {
                return Err("feedOptions must be an object of string values.".to_owned());
            }
        }
        Ok(Self {
            feed_type,
            marketplaces,
            document_id,
        })
    }
}

/// The effective filters of a getFeeds call, carried in `nextToken`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FeedsFilter {
    feed_types: Vec<String>,
    marketplaces: Vec<String>,
    statuses: Vec<FeedStatus>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    page_size: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct FeedsToken {
    op: String,
    page: u32,
    offset: usize,
    filter: FeedsFilter,
}

impl FeedsFilter {
    /// Validates the query; returns the filter, the page number and the offset.
    fn from_query(query: Option<&str>, now: DateTime<Utc>) -> Result<(Self, u32, usize), String> {
        let params = Params::parse(query);
        if let Some(text) = params.one("nextToken") {
            if params.has_other_than("nextToken") {
                return Err("nextToken must be the only parameter when it is specified.".to_owned());
            }
            return match token::decode::<FeedsToken>(text) {
                Some(t) if t.op == GET_FEEDS => Ok((t.filter, t.page, t.offset)),
                _ => Err("Invalid nextToken.".to_owned()),
            };
        }
        let feed_types = params.list("feedTypes");
        if feed_types.is_empty() {
            return Err("Either feedTypes or nextToken is required.".to_owned());
        }
        if feed_types.len() > 10 {
            return Err("feedTypes accepts 1 to 10 values.".to_owned());
        }
        let marketplaces = params.list("marketplaceIds");
        if marketplaces.len() > 10 {
            return Err("marketplaceIds accepts 1 to 10 values.".to_owned());
        }
        let statuses = params
            .list("processingStatuses")
            .iter()
            .map(|s| {
                FeedStatus::parse(s).ok_or_else(|| {
                    format!(
                        "Invalid processingStatuses value: {s}. Possible values: CANCELLED, \
                         DONE, FATAL, IN_PROGRESS, IN_QUEUE."
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let page_size = match params.one("pageSize") {
            None => 10,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => return Err(format!("pageSize must be from 1 to 100, got {text:?}.")),
            },
        };
        let since = params.date("createdSince")?.unwrap_or(now - RETENTION);
        let until = params.date("createdUntil")?.unwrap_or(now);
        if since > until {
            return Err("createdSince must be before createdUntil.".to_owned());
        }
        let filter = FeedsFilter {
            feed_types,
            marketplaces,
            statuses,
            since,
            until,
            page_size,
        };
        Ok((filter, 1, 0))
    }

    fn admits(&self, feed: &Feed) -> bool {
        self.feed_types.contains(&feed.feed_type)
            && (self.marketplaces.is_empty()
                || feed
                    .marketplaces
                    .iter()
                    .any(|m| self.marketplaces.contains(m)))
            && (self.statuses.is_empty() || self.statuses.contains(&feed.status))
            && feed.created >= self.since
            && feed.created <= self.until
    }
}

// ---------------------------------------------------------------------------------------
// The presigned document URLs (S3)

/// `PUT /_sandbox/uploads/{id}?…&X-Amz-Signature=…`: stores the document's bytes.
pub(super) async fn upload(
    State(state): State<Arc<Shared>>,
    Path(document_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = Params::parse(query.as_deref());
    let signature = params.one("X-Amz-Signature");
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let now = state.now();
    let mut store = lock(&state.feeds);
    let Some(document) = store.documents.get_mut(&document_id) else {
        return storage_error(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied");
    };
    let Some((expected, expires)) = &document.upload else {
        return storage_error(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied");
    };
    if signature != Some(expected.as_str()) {
        return signature_mismatch();
    }
    if now > *expires {
        return storage_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
    }
    // The content type is part of what the URL signs.
    if content_type != Some(document.content_type.as_str()) {
        return signature_mismatch();
    }
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
    document.content = Some(body.to_vec());
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// `GET /_sandbox/documents/{id}`: the document's bytes, as stored (GZIP for compressed
/// reports; with `response-content-encoding=gzip` also the `Content-Encoding` header).
pub(super) async fn download(
    State(state): State<Arc<Shared>>,
    Path(document_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let store = lock(&state.feeds);
    let Some((document, content)) = store
        .documents
        .get(&document_id)
        .and_then(|d| d.content.as_ref().map(|c| (d, c)))
    else {
        return storage_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        );
    };
    let encoded = document.gzip
        && Params::parse(query.as_deref())
            .one("response-content-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let content_type = if document.gzip && !encoded {
        "application/octet-stream"
    } else {
        document.content_type.as_str()
    };
    let mut response = (StatusCode::OK, content.clone()).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if encoded {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

fn signature_mismatch() -> Response {
    storage_error(
        StatusCode::FORBIDDEN,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. \
         Check your key and signing method.",
    )
}

/// S3's error body: `<Error><Code/><Message/><RequestId/></Error>`.
fn storage_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{}</Message><RequestId>{}</RequestId></Error>",
        xml_escape(message),
        random_hex(8).to_ascii_uppercase()
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// An injected fault on a document URL, in S3's shape.
pub(super) fn storage_fault(status: StatusCode) -> Response {
    let (code, message) = match status.as_u16() {
        429 | 503 => ("SlowDown", "Please reduce your request rate."),
        500..=599 => (
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        403 => ("AccessDenied", "Access Denied"),
        404 => ("NoSuchKey", "The specified key does not exist."),
        _ => ("InvalidRequest", "The request could not be processed."),
    };
    storage_error(status, code, message)
}

// ---------------------------------------------------------------------------------------
// Applying feeds

/// What processing needs besides the orders; refunds and cancels accumulate here.
struct Ledger<'a> {
    feed_id: &'a str,
    marketplaces: &'a [String],
    now: DateTime<Utc>,
    refunds: &'a mut Vec<SandboxRefund>,
    canceled_items: &'a mut HashSet<(String, String)>,
}

/// Why one message failed, for its `<Result>`.
#[derive(Debug)]
struct MessageError {
    description: String,
    order_id: Option<String>,
}

impl MessageError {
    fn new(order_id: Option<&str>, description: impl Into<String>) -> Self {
        Self {
            description: description.into(),
            order_id: order_id.map(str::to_owned),
        }
    }
}

/// Applies a feed; returns its processing report, or why it is FATAL.
fn apply_feed(
    feed_type: &str,
    input: &[u8],
    orders: &mut [ScenarioOrder],
    ledger: &mut Ledger<'_>,
) -> Result<String, String> {
    let expected = match feed_type {
        ORDER_ACKNOWLEDGEMENT => "OrderAcknowledgement",
        PAYMENT_ADJUSTMENT => "OrderAdjustment",
        other => return Err(format!("the sandbox does not process {other} feeds")),
    };
    let text = std::str::from_utf8(input).map_err(|_| "the document is not UTF-8".to_owned())?;
    if !text.contains("<AmazonEnvelope") {
        return Err("the document has no AmazonEnvelope".to_owned());
    }
    let envelope: Envelope =
        quick_xml::de::from_str(text).map_err(|e| format!("the document is not valid: {e}"))?;
    let message_type = envelope.message_type.as_deref().map(str::trim);
    if message_type != Some(expected) {
        return Err(format!(
            "MessageType is {message_type:?}, a {feed_type} feed needs {expected}"
        ));
    }
    let mut results = Vec::with_capacity(envelope.messages.len());
    for message in &envelope.messages {
        let id = trimmed(&message.message_id).unwrap_or("0").to_owned();
        let outcome = match feed_type {
            ORDER_ACKNOWLEDGEMENT => acknowledge(message.acknowledgement.as_ref(), orders, ledger),
            _ => adjust(message.adjustment.as_ref(), orders, ledger),
        };
        results.push((id, outcome.err()));
    }
    let merchant = envelope
        .header
        .as_ref()
        .and_then(|h| trimmed(&h.merchant_identifier))
        .unwrap_or("UNKNOWN");
    Ok(report_xml(merchant, ledger.feed_id, &results))
}

/// One `OrderAcknowledgement` message.
fn acknowledge(
    message: Option<&Acknowledgement>,
    orders: &mut [ScenarioOrder],
    ledger: &mut Ledger<'_>,
) -> Result<(), MessageError> {
    let Some(ack) = message else {
        return Err(MessageError::new(
            None,
            "The message has no OrderAcknowledgement.",
        ));
    };
    let Some(order_id) = trimmed(&ack.amazon_order_id) else {
        return Err(MessageError::new(None, "AmazonOrderID is required."));
    };
    let fail = |text: String| MessageError::new(Some(order_id), text);
    let order = find_order(orders, order_id, ledger.marketplaces).map_err(&fail)?;
    let cancel = match trimmed(&ack.status_code) {
        Some("Success") => false,
        Some("Failure") => true,
        other => {
            return Err(fail(format!(
                "StatusCode must be Success or Failure, not {other:?}."
            )));
        }
    };
    match order.status {
        OrderStatus::Pending | OrderStatus::PendingAvailability => {
            return Err(fail(format!(
                "Order {order_id} is {}: it cannot be acknowledged or canceled before \
                 payment is authorized.",
                order.status.as_str()
            )));
        }
        OrderStatus::Canceled => {
            return Err(fail(format!("Order {order_id} is already canceled.")));
        }
        OrderStatus::Shipped | OrderStatus::InvoiceUnconfirmed => {
            return Err(fail(format!(
                "Order {order_id} has already shipped; refund it instead."
            )));
        }
        OrderStatus::Unfulfillable => {
            return Err(fail(format!("Order {order_id} is Unfulfillable.")));
        }
        OrderStatus::PartiallyShipped if cancel => {
            return Err(fail(format!(
                "Order {order_id} has shipped items: it cannot be canceled; refund it instead."
            )));
        }
        OrderStatus::Unshipped | OrderStatus::PartiallyShipped => {}
    }
    let mut codes = Vec::with_capacity(ack.items.len());
    for item in &ack.items {
        let Some(code) = trimmed(&item.amazon_order_item_code) else {
            return Err(fail("Every Item needs an AmazonOrderItemCode.".to_owned()));
        };
        if !order.items.iter().any(|i| i.id == code) {
            return Err(fail(format!(
                "AmazonOrderItemCode {code} is not an item of order {order_id}."
            )));
        }
        if cancel {
            match trimmed(&item.cancel_reason) {
                None => {
                    return Err(fail(format!(
                        "Item {code}: StatusCode Failure needs a CancelReason."
                    )));
                }
                Some(reason) if !CANCEL_REASONS.contains(&reason) => {
                    return Err(fail(format!(
                        "Item {code}: CancelReason {reason} is not valid."
                    )));
                }
                Some(_) => {}
            }
        }
        codes.push(code.to_owned());
    }
    if !cancel {
        return Ok(());
    }
    if codes.is_empty() {
        return Err(fail(
            "StatusCode Failure needs Item elements with a CancelReason.".to_owned(),
        ));
    }
    for code in codes {
        ledger.canceled_items.insert((order_id.to_owned(), code));
    }
    let all_canceled = order.items.iter().all(|i| {
        ledger
            .canceled_items
            .contains(&(order_id.to_owned(), i.id.clone()))
    });
    if all_canceled {
        order.status = OrderStatus::Canceled;
    }
    order.last_updated = Some(When::At(ledger.now));
    Ok(())
}

/// One `OrderAdjustment` message: every `AdjustedItem` is checked before any is kept.
fn adjust(
    message: Option<&Adjustment>,
    orders: &mut [ScenarioOrder],
    ledger: &mut Ledger<'_>,
) -> Result<(), MessageError> {
    let Some(adjustment) = message else {
        return Err(MessageError::new(
            None,
            "The message has no OrderAdjustment.",
        ));
    };
    let order_id = match (
        trimmed(&adjustment.amazon_order_id),
        trimmed(&adjustment.merchant_order_id),
    ) {
        (Some(id), _) => id.to_owned(),
        (None, Some(merchant)) => orders
            .iter()
            .find(|o| o.seller_order_id.as_deref() == Some(merchant))
            .map(|o| o.id.clone())
            .ok_or_else(|| {
                MessageError::new(None, format!("MerchantOrderID {merchant} was not found."))
            })?,
        (None, None) => {
            return Err(MessageError::new(
                None,
                "AmazonOrderID or MerchantOrderID is required.",
            ));
        }
    };
    let fail = |text: String| MessageError::new(Some(&order_id), text);
    let order = find_order(orders, &order_id, ledger.marketplaces).map_err(&fail)?;
    if order.status.hides_pricing() {
        return Err(fail(format!(
            "Order {order_id} is {}: there is no payment to adjust yet.",
            order.status.as_str()
        )));
    }
    if let Some(action) = trimmed(&adjustment.action_type)
        && action != "Refund"
        && action != "Cancel"
    {
        return Err(fail(format!(
            "ActionType must be Refund or Cancel, not {action}."
        )));
    }
    if adjustment.items.is_empty() {
        return Err(fail(
            "An OrderAdjustment needs AdjustedItem elements.".to_owned(),
        ));
    }
    let currency = order.currency_code();
    let mut accepted: Vec<SandboxRefund> = Vec::with_capacity(adjustment.items.len());
    for adjusted in &adjustment.items {
        let Some(code) = trimmed(&adjusted.amazon_order_item_code) else {
            return Err(fail(
                "Every AdjustedItem needs an AmazonOrderItemCode.".to_owned(),
            ));
        };
        let Some(item) = order.items.iter().find(|i| i.id == code) else {
            return Err(fail(format!(
                "AmazonOrderItemCode {code} is not an item of order {order_id}."
            )));
        };
        let reason = match trimmed(&adjusted.adjustment_reason) {
            Some(reason) if ADJUSTMENT_REASONS.contains(&reason) => reason,
            Some(reason) => {
                return Err(fail(format!(
                    "Item {code}: AdjustmentReason {reason} is not valid."
                )));
            }
            None => {
                return Err(fail(format!("Item {code}: AdjustmentReason is required.")));
            }
        };
        if let Some(quantity) = trimmed(&adjusted.quantity) {
            match quantity.parse::<u32>() {
                Ok(n) if n >= 1 && n <= item.quantity => {}
                _ => {
                    return Err(fail(format!(
                        "Item {code}: Quantity {quantity} must be from 1 to {}.",
                        item.quantity
                    )));
                }
            }
        }
        let mut principal = 0_i64;
        let mut tax: Option<i64> = None;
        let components = adjusted
            .price_adjustments
            .as_ref()
            .map_or(&[][..], |p| p.components.as_slice());
        for component in components {
            let kind = trimmed(&component.kind).unwrap_or("");
            if !COMPONENT_TYPES.contains(&kind) {
                return Err(fail(format!(
                    "Item {code}: component Type {kind:?} is not valid."
                )));
            }
            let cents = component_cents(component, &currency)
                .map_err(|e| fail(format!("Item {code}: {kind}: {e}")))?;
            match kind {
                "Principal" => principal += cents,
                "Tax" => *tax.get_or_insert(0) += cents,
                _ => {}
            }
        }
        let refunded = |pick: fn(&SandboxRefund) -> Option<&str>| -> i64 {
            ledger
                .refunds
                .iter()
                .chain(&accepted)
                .filter(|r| r.order_id == order_id && r.item_code == code)
                .filter_map(|r| pick(r).and_then(|a| Amount::parse(a).ok()))
                .map(Amount::cents)
                .sum()
        };
        let principal_left = item.item_price().cents() - refunded(|r| Some(&r.principal));
        if principal > principal_left {
            return Err(fail(format!(
                "Item {code}: Principal {} is more than the {} {currency} left to refund.",
                Amount::from_cents(principal),
                Amount::from_cents(principal_left.max(0))
            )));
        }
        if let Some(tax) = tax {
            let tax_left = item.tax.cents() - refunded(|r| r.tax.as_deref());
            if tax > tax_left {
                return Err(fail(format!(
                    "Item {code}: Tax {} is more than the {} {currency} left to refund.",
                    Amount::from_cents(tax),
                    Amount::from_cents(tax_left.max(0))
                )));
            }
        }
        accepted.push(SandboxRefund {
            order_id: order_id.clone(),
            item_code: code.to_owned(),
            reason: reason.to_owned(),
            principal: Amount::from_cents(principal).to_string(),
            tax: tax.map(|t| Amount::from_cents(t).to_string()),
            currency: currency.clone(),
            merchant_adjustment_item_id: trimmed(&adjusted.merchant_adjustment_item_id)
                .map(str::to_owned),
            feed_id: ledger.feed_id.to_owned(),
            at: ledger.now,
        });
    }
    ledger.refunds.extend(accepted);
    Ok(())
}

/// A component's amount in cents: positive, at most two decimals, in `currency`.
fn component_cents(component: &Component, currency: &str) -> Result<i64, String> {
    let Some(amount) = &component.amount else {
        return Err("Amount is required.".to_owned());
    };
    match amount.currency.as_deref().map(str::trim) {
        Some(c) if c == currency => {}
        Some(c) => return Err(format!("currency {c} is not the order's {currency}.")),
        None => return Err("Amount needs a currency attribute.".to_owned()),
    }
    let cents = Amount::parse(amount.value.trim())?.cents();
    if cents <= 0 {
        return Err(format!("Amount {} must be positive.", amount.value.trim()));
    }
    Ok(cents)
}

/// The order `order_id`, if it exists in one of the feed's marketplaces.
fn find_order<'o>(
    orders: &'o mut [ScenarioOrder],
    order_id: &str,
    marketplaces: &[String],
) -> Result<&'o mut ScenarioOrder, String> {
    let order = orders
        .iter_mut()
        .find(|o| o.id == order_id)
        .ok_or_else(|| format!("Order {order_id} was not found."))?;
    if !marketplaces.contains(&order.marketplace) {
        return Err(format!(
            "Order {order_id} belongs to marketplace {}, which this feed does not list.",
            order.marketplace
        ));
    }
    Ok(order)
}

/// The processing report: a summary, and one `<Result>` per failed message.
fn report_xml(merchant: &str, feed_id: &str, results: &[(String, Option<MessageError>)]) -> String {
    let failed = results.iter().filter(|(_, e)| e.is_some()).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str("<AmazonEnvelope>");
    xml.push_str(&format!(
        "<Header><DocumentVersion>1.02</DocumentVersion>\
         <MerchantIdentifier>{}</MerchantIdentifier></Header>",
        xml_escape(merchant)
    ));
    xml.push_str("<MessageType>ProcessingReport</MessageType>");
    xml.push_str("<Message><MessageID>1</MessageID><ProcessingReport>");
    xml.push_str(&format!(
        "<DocumentTransactionID>{}</DocumentTransactionID><StatusCode>Complete</StatusCode>",
        xml_escape(feed_id)
    ));
    xml.push_str(&format!(
        "<ProcessingSummary><MessagesProcessed>{}</MessagesProcessed>\
         <MessagesSuccessful>{}</MessagesSuccessful>\
         <MessagesWithError>{failed}</MessagesWithError>\
         <MessagesWithWarning>0</MessagesWithWarning></ProcessingSummary>",
        results.len(),
        results.len() - failed
    ));
    for (message_id, error) in results {
        let Some(error) = error else {
            continue;
        };
        xml.push_str(&format!(
            "<Result><MessageID>{}</MessageID><ResultCode>Error</ResultCode>\
             <ResultMessageCode>{RESULT_MESSAGE_CODE}</ResultMessageCode>\
             <ResultDescription>{}</ResultDescription>",
            xml_escape(message_id),
            xml_escape(&error.description)
        ));
        if let Some(order_id) = &error.order_id {
            xml.push_str(&format!(
                "<AdditionalInfo><AmazonOrderID>{}</AmazonOrderID></AdditionalInfo>",
                xml_escape(order_id)
            ));
        }
        xml.push_str("</Result>");
    }
    xml.push_str("</ProcessingReport></Message></AmazonEnvelope>\n");
    xml
}

// ---------------------------------------------------------------------------------------
// The feed XML, leniently: every field optional, so a message missing one gets its own
// error in the report instead of failing the whole document.

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Envelope {
    #[serde(rename = "Header")]
    header: Option<Header>,
    #[serde(rename = "MessageType")]
    message_type: Option<String>,
    #[serde(rename = "Message")]
    messages: Vec<Message>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Header {
    #[serde(rename = "MerchantIdentifier")]
    merchant_identifier: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Message {
    #[serde(rename = "MessageID")]
    message_id: Option<String>,
    #[serde(rename = "OrderAcknowledgement")]
    acknowledgement: Option<Acknowledgement>,
    #[serde(rename = "OrderAdjustment")]
    adjustment: Option<Adjustment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Acknowledgement {
    #[serde(rename = "AmazonOrderID")]
    amazon_order_id: Option<String>,
    #[serde(rename = "StatusCode")]
    status_code: Option<String>,
    #[serde(rename = "Item")]
    items: Vec<AcknowledgedItem>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AcknowledgedItem {
    #[serde(rename = "AmazonOrderItemCode")]
    amazon_order_item_code: Option<String>,
    #[serde(rename = "CancelReason")]
    cancel_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Adjustment {
    #[serde(rename = "AmazonOrderID")]
    amazon_order_id: Option<String>,
    #[serde(rename = "MerchantOrderID")]
    merchant_order_id: Option<String>,
    #[serde(rename = "ActionType")]
    action_type: Option<String>,
    #[serde(rename = "AdjustedItem")]
    items: Vec<AdjustedItem>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AdjustedItem {
    #[serde(rename = "AmazonOrderItemCode")]
    amazon_order_item_code: Option<String>,
    #[serde(rename = "MerchantAdjustmentItemID")]
    merchant_adjustment_item_id: Option<String>,
    #[serde(rename = "AdjustmentReason")]
    adjustment_reason: Option<String>,
    #[serde(rename = "ItemPriceAdjustments")]
    price_adjustments: Option<PriceAdjustments>,
    #[serde(rename = "Quantity")]
    quantity: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PriceAdjustments {
    #[serde(rename = "Component")]
    components: Vec<Component>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Component {
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Amount")]
    amount: Option<XmlAmount>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct XmlAmount {
    #[serde(rename = "@currency")]
    currency: Option<String>,
    #[serde(rename = "$text")]
    value: String,
}

fn trimmed(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

// ---------------------------------------------------------------------------------------
// Small helpers

/// `amzn1.tortuga.4.na.<uuid>`, shaped like Amazon's feed document ids.
fn new_document_id() -> String {
    format!("amzn1.tortuga.4.na.{}", amazon::request_id())
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    let raw: Vec<u8> = (0..bytes).map(|_| rng.random::<u8>()).collect();
    hex::encode(raw)
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok()
}

fn xml_escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::scenario::{FulfillmentChannel, ScenarioItem};

    fn order(id: &str, status: OrderStatus) -> ScenarioOrder {
        let mut order = ScenarioOrder::new(id, status, FulfillmentChannel::Mfn, When::now());
        let mut item = ScenarioItem::new("11", "SKU", "B0", "Item", 2, Amount::from_cents(1000));
        item.tax = Amount::from_cents(160);
        order.items.push(item);
        order
    }

    fn apply(
        feed_type: &str,
        xml: &str,
        orders: &mut [ScenarioOrder],
        refunds: &mut Vec<SandboxRefund>,
    ) -> Result<String, String> {
        let mut canceled = HashSet::new();
        let marketplaces = vec!["ATVPDKIKX0DER".to_owned()];
        let mut ledger = Ledger {
            feed_id: "1",
            marketplaces: &marketplaces,
            now: DateTime::<Utc>::UNIX_EPOCH,
            refunds,
            canceled_items: &mut canceled,
        };
        apply_feed(feed_type, xml.as_bytes(), orders, &mut ledger)
    }

    #[test]
    fn adjustment_xml_parses_with_attributes_and_lists() -> Result<(), String> {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<AmazonEnvelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="amzn-envelope.xsd">
  <Header><DocumentVersion>1.01</DocumentVersion><MerchantIdentifier>M1</MerchantIdentifier></Header>
  <MessageType>OrderAdjustment</MessageType>
  <Message>
    <MessageID>1</MessageID>
    <OrderAdjustment>
      <AmazonOrderID>113-0000001-0000001</AmazonOrderID>
      <AdjustedItem>
        <AmazonOrderItemCode>11</AmazonOrderItemCode>
        <MerchantAdjustmentItemID>adj-1</MerchantAdjustmentItemID>
        <AdjustmentReason>CustomerReturn</AdjustmentReason>
        <ItemPriceAdjustments>
          <Component><Type>Principal</Type><Amount currency="USD">12.50</Amount></Component>
          <Component><Type>Tax</Type><Amount currency="USD">1.00</Amount></Component>
        </ItemPriceAdjustments>
      </AdjustedItem>
    </OrderAdjustment>
  </Message>
  <Message>
    <MessageID>2</MessageID>
    <OrderAdjustment>
      <AmazonOrderID>113-0000001-0000001</AmazonOrderID>
      <AdjustedItem>
        <AmazonOrderItemCode>11</AmazonOrderItemCode>
        <AdjustmentReason>CustomerReturn</AdjustmentReason>
        <ItemPriceAdjustments>
          <Component><Type>Principal</Type><Amount currency="USD">7.51</Amount></Component>
        </ItemPriceAdjustments>
      </AdjustedItem>
    </OrderAdjustment>
  </Message>
</AmazonEnvelope>"#;
        let mut orders = vec![order("113-0000001-0000001", OrderStatus::Shipped)];
        let mut refunds = Vec::new();
        let report = apply(PAYMENT_ADJUSTMENT, xml, &mut orders, &mut refunds)?;
        assert_eq!(refunds.len(), 1, "{report}");
        assert_eq!(refunds[0].principal, "12.50");
        assert_eq!(refunds[0].tax.as_deref(), Some("1.00"));
        assert_eq!(
            refunds[0].merchant_adjustment_item_id.as_deref(),
            Some("adj-1")
        );
        // 20.00 - 12.50 = 7.50 left: 7.51 is too much.
        assert!(
            report.contains("<MessagesWithError>1</MessagesWithError>"),
            "{report}"
        );
        assert!(
            report.contains("<Result><MessageID>2</MessageID>"),
            "{report}"
        );
        assert!(report.contains("<MerchantIdentifier>M1</MerchantIdentifier>"));
        Ok(())
    }

    #[test]
    fn unsupported_or_broken_feeds_are_fatal() {
        let mut orders = vec![order("113-0000001-0000001", OrderStatus::Unshipped)];
        let mut refunds = Vec::new();
        for (feed_type, xml) in [
            ("POST_PRODUCT_DATA", "<AmazonEnvelope/>"),
            (ORDER_ACKNOWLEDGEMENT, "<AmazonEnvelope><Message>"),
            (ORDER_ACKNOWLEDGEMENT, "not xml"),
            (
                ORDER_ACKNOWLEDGEMENT,
                "<AmazonEnvelope><MessageType>OrderAdjustment</MessageType></AmazonEnvelope>",
            ),
        ] {
            assert!(
                apply(feed_type, xml, &mut orders, &mut refunds).is_err(),
                "{feed_type} {xml}"
            );
        }
        assert_eq!(orders[0].status, OrderStatus::Unshipped);
    }

    #[test]
    fn report_escapes_text() {
        let results = vec![(
            "3".to_owned(),
            Some(MessageError::new(Some("1"), "a < b & c")),
        )];
        let xml = report_xml("M&M", "9", &results);
        assert!(xml.contains("a &lt; b &amp; c"));
        assert!(xml.contains("<MerchantIdentifier>M&amp;M</MerchantIdentifier>"));
        assert!(xml.contains("<MessagesProcessed>1</MessagesProcessed>"));
    }
}
