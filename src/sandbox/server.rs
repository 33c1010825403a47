//! The router, the front door every request passes (journal, faults, SP-API headers)
//! and the `/_sandbox/*` control endpoints. `/_sandbox/uploads/*` and
//! `/_sandbox/documents/*` are not control endpoints: they stand in for the presigned
//! S3 URLs of feed documents and are journaled like any upstream call.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::journal::{self, JournalEntry, PendingEntry};
use super::{
    Fault, Operation, Shared, amazon, carriers, chat, faults, feeds, fulfillment, is_sp_api_path,
    lock, lwa, messaging, tokens,
};

/// Bodies above this are refused (413); nothing the sandbox fakes sends more.
const MAX_BODY: usize = 1 << 20;

pub(super) fn router(state: Arc<Shared>) -> Router {
    super::marketplaces::routes(carriers::routes(Router::new()))
        .route("/auth/o2/token", post(lwa::token))
        // The official Java samples spell it with a capital O.
        .route("/auth/O2/token", post(lwa::token))
        .route("/orders/v0/orders", get(amazon::get_orders))
        .route("/orders/v0/orders/{order_id}", get(amazon::get_order))
        .route(
            "/orders/v0/orders/{order_id}/orderItems",
            get(amazon::get_order_items),
        )
        .route(
            "/orders/v0/orders/{order_id}/buyerInfo",
            get(amazon::get_order_buyer_info),
        )
        .route(
            "/orders/v0/orders/{order_id}/address",
            get(amazon::get_order_address),
        )
        .route(
            "/orders/2026-01-01/orders/{order_id}",
            get(super::amazon_packages::get_order),
        )
        .route(
            "/tokens/2021-03-01/restrictedDataToken",
            post(tokens::create_restricted_data_token),
        )
        .route(
            "/fba/outbound/2020-07-01/fulfillmentOrders",
            get(fulfillment::list_all_fulfillment_orders),
        )
        .route(
            "/fba/outbound/2020-07-01/fulfillmentOrders/{seller_fulfillment_order_id}",
            get(fulfillment::get_fulfillment_order),
        )
        .route(
            "/fba/outbound/2020-07-01/tracking",
            get(fulfillment::get_package_tracking_details),
        )
        .route(
            "/messaging/v1/orders/{order_id}",
            get(messaging::get_actions),
        )
        .route(
            "/messaging/v1/orders/{order_id}/attributes",
            get(messaging::get_attributes),
        )
        .route(
            "/messaging/v1/orders/{order_id}/messages/{message_type}",
            post(messaging::create_message),
        )
        .route(
            "/feeds/2021-06-30/documents",
            post(feeds::create_feed_document),
        )
        .route(
            "/feeds/2021-06-30/documents/{document_id}",
            get(feeds::get_feed_document),
        )
        .route(
            "/feeds/2021-06-30/feeds",
            get(feeds::get_feeds).post(feeds::create_feed),
        )
        .route(
            "/feeds/2021-06-30/feeds/{feed_id}",
            get(feeds::get_feed).delete(feeds::cancel_feed),
        )
        .route("/_sandbox/uploads/{document_id}", put(feeds::upload))
        .route("/_sandbox/documents/{document_id}", get(feeds::download))
        .route("/hooks/slack/{*path}", post(chat::slack))
        .route("/hooks/teams/{*path}", post(chat::teams))
        .route("/hooks/discord/{*path}", post(chat::discord))
        .route("/hooks/google_chat/{*path}", post(chat::google_chat))
        .route("/hooks/webhook/{*path}", post(chat::webhook))
        .route("/hooks/{kind}/{*path}", post(chat::generic))
        .route("/_sandbox/journal", get(journal_lines))
        .route("/_sandbox/parcels", get(list_parcels))
        .route(
            "/_sandbox/faults",
            get(list_faults).post(add_faults).delete(clear_faults),
        )
        .route("/_sandbox/orders", get(list_orders))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), front_door))
        .with_state(state)
}

/// Journals the request, applies a matching fault, and adds the SP-API headers.
async fn front_door(State(state): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let operation = Operation::classify(req.method().as_str(), &path);
    // Control calls are not traffic under test: reading the journal must not change it.
    if path.starts_with("/_sandbox/") && operation == Operation::Unknown {
        return next.run(req).await;
    }
    // Usage counts when a call arrived, on tokio's clock like the buckets.
    let arrived = tokio::time::Instant::now();
    let query = req.uri().query().map(str::to_owned);
    let (parts, body) = req.into_parts();
    // In the journal from here on, even if the client hangs up mid-way.
    let mut pending = PendingEntry::new(
        state.journal.clone(),
        JournalEntry {
            seq: 0,
            at: state.clock.now(),
            method: parts.method.to_string(),
            path: path.clone(),
            query: journal::query_text(query.as_deref()),
            operation: operation.name(),
            status: 0,
            fault: false,
            headers: journal::headers_json(&parts.headers),
            body: Value::Null,
        },
    );
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            pending.update(|e| {
                e.body = Value::String("<unreadable or larger than 1 MiB>".to_owned());
            });
            pending.finish(413);
            return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
        }
    };

    let page = match operation.paging_parameter() {
        Some(parameter) => amazon::page_of(query.as_deref(), parameter),
        None => Some(1),
    };
    let fault = lock(&state.faults).take(&operation.name(), page);
    pending.update(|e| {
        e.body = journal::body_json(&parts.headers, &bytes);
        e.fault = fault.is_some();
    });
    let req = Request::from_parts(parts, Body::from(bytes));
    let mut response = match &fault {
        Some(fault) => faults::apply(fault, &operation, req, next).await,
        None => next.run(req).await,
    };
    if operation.sp_api_name().is_some() || is_sp_api_path(&path) {
        amazon::decorate(&state, &operation, &mut response);
    }
    let status = response.status().as_u16();
    // Throttles are counted where the usage plan refuses; everything else not 429 here.
    if let Some(name) = operation.sp_api_name()
        && status != 429
    {
        lock(&state.plans).record_answer(name, arrived);
    }
    tracing::debug!(
        operation = %operation.name(),
        %path,
        status,
        fault = fault.is_some(),
        "sandbox request"
    );
    pending.finish(status);
    response
}

async fn not_found(req: Request) -> Response {
    let what = format!("{} {}", req.method(), req.uri().path());
    if is_sp_api_path(req.uri().path()) {
        return amazon::error_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The requested resource was not found.",
            Some(&format!("The nightdesk sandbox does not implement {what}.")),
        );
    }
    (
        StatusCode::NOT_FOUND,
        format!("the nightdesk sandbox does not serve {what}\n"),
    )
        .into_response()
}

/// `GET /_sandbox/journal`: the journal as JSON lines.
async fn journal_lines(State(state): State<Arc<Shared>>) -> Response {
    let mut text = String::new();
    for entry in state.journal.snapshot() {
        text.push_str(&serde_json::to_string(&entry).unwrap_or_default());
        text.push('\n');
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response()
}

async fn list_faults(State(state): State<Arc<Shared>>) -> Response {
    Json(lock(&state.faults).pending()).into_response()
}

/// `POST /_sandbox/faults`: one fault object or an array of them.
async fn add_faults(State(state): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let parsed: Result<Vec<Fault>, String> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
            .collect(),
        Ok(value) => serde_json::from_value(value)
            .map(|f| vec![f])
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let checked =
        parsed.and_then(|faults| faults.iter().try_for_each(Fault::check).map(|()| faults));
    match checked {
        Ok(faults) => {
            let queued = faults.len();
            let mut queue = lock(&state.faults);
            faults.into_iter().for_each(|f| queue.push(f));
            Json(json!({ "queued": queued })).into_response()
        }
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": format!("invalid fault: {error}") })),
        )
            .into_response(),
    }
}

async fn clear_faults(State(state): State<Arc<Shared>>) -> StatusCode {
    lock(&state.faults).clear();
    StatusCode::NO_CONTENT
}

/// `GET /_sandbox/orders`: the orders as the sandbox holds them (its own format).
async fn list_orders(State(state): State<Arc<Shared>>) -> Response {
    Json(lock(&state.amazon).orders.clone()).into_response()
}

/// `GET /_sandbox/parcels`: the carriers' parcels as the sandbox holds them.
async fn list_parcels(State(state): State<Arc<Shared>>) -> Response {
    Json(lock(&state.carriers).scenario.parcels.clone()).into_response()
}
