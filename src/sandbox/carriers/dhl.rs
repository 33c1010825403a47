//! DHL Shipment Tracking - Unified, faked from
//! `specs/carriers/dhl/utapi-traking-api-1.4.1.yaml` under `/dhl`:
//! `GET /dhl/track/shipments?trackingNumber=…[&service=…]` with the `DHL-API-Key`
//! header ([`API_KEY`]; another key gets DHL's 401 problem). Parcels sharing a number
//! are shipments of different DHL divisions (their scenario `service`); `service`
//! narrows the answer to one. A number with nothing to show gets DHL's 404
//! `application/problem+json` "No result found".
//!
//! Scans carry DHL's `statusCode` (`pre-transit`, `transit`, `delivered`, `failure`,
//! `unknown`) as their code and DHL's words as their description; a parcel without
//! scans shows a `pre-transit` event at its label time. `express` shipments give times
//! with the local offset, the other divisions local wall time without one (the spec's
//! own examples carry both). Like every sandbox module it is written from the contract
//! alone and must never use the connector's types or parsing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::super::Shared;
use super::{ScenarioParcel, ScenarioPlace, ScenarioScan, header_text, respond};

/// The consumer key of the sandbox's DHL app.
pub(super) const API_KEY: &str = "sandbox-dhl-api-key";

/// The `service` query values the contract accepts.
const QUERY_SERVICES: [&str; 12] = [
    "express",
    "parcel-de",
    "ecommerce",
    "dgf",
    "parcel-uk",
    "post-de",
    "sameday",
    "freight",
    "parcel-nl",
    "parcel-pl",
    "dsc",
    "ecommerce-europe",
];
/// The `service` values a shipment may carry (the contract's list is shorter).
const SHIPMENT_SERVICES: [&str; 10] = [
    "freight",
    "express",
    "post-de",
    "parcel-de",
    "parcel-nl",
    "parcel-pl",
    "dsc",
    "dgf",
    "ecommerce",
    "ecommerce-europe",
];
/// `statusCode` values, with DHL's usual `status` words for each.
const STATUS_CODES: [(&str, &str, &str); 5] = [
    (
        "pre-transit",
        "The instruction data for this shipment have been provided by the sender to DHL electronically",
        "The shipment has been pre-advised electronically.",
    ),
    (
        "transit",
        "The shipment has been processed in the parcel center",
        "The shipment is on its way.",
    ),
    (
        "delivered",
        "The shipment has been successfully delivered",
        "The shipment has been delivered.",
    ),
    (
        "failure",
        "The shipment could not be delivered",
        "There is a problem with the shipment.",
    ),
    (
        "unknown",
        "Status unknown",
        "No further information is available.",
    ),
];

pub(super) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    router.route("/dhl/track/shipments", get(shipments))
}

pub(super) fn classify(method: &str, rest: &[&str]) -> Option<&'static str> {
    match (method, rest) {
        ("GET", ["track", "shipments"]) => Some("dhl.track"),
        _ => None,
    }
}

/// A fault's answer as DHL's `application/problem+json`.
pub(super) fn fault_response(
    _operation: &str,
    status: StatusCode,
    _retry_after: Option<u64>,
) -> Response {
    let detail = match status.as_u16() {
        401 => "Unauthorized for given resource.",
        404 => "No shipment with given tracking number found.",
        429 => "Too many requests. Daily or per-second limit exceeded.",
        500..=599 => "The service is temporarily unavailable.",
        _ => "The request could not be processed.",
    };
    problem(
        status,
        status.canonical_reason().unwrap_or("Error"),
        detail,
        None,
    )
}

/// `GET /dhl/track/shipments`.
async fn shipments(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if header_text(&headers, "DHL-API-Key") != Some(API_KEY) {
        return problem(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized for given resource.",
            None,
        );
    }
    let Some(number) = params
        .get("trackingNumber")
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "The query parameter trackingNumber is required.",
            None,
        );
    };
    let service = params.get("service").map(String::as_str);
    if let Some(service) = service
        && !QUERY_SERVICES.contains(&service)
    {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            &format!("Invalid value for the query parameter service: {service}."),
            None,
        );
    }
    for numeric in ["offset", "limit"] {
        if params
            .get(numeric)
            .is_some_and(|v| v.parse::<f64>().is_err())
        {
            return problem(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                &format!("The query parameter {numeric} must be a number."),
                None,
            );
        }
    }
    let now = state.now();
    let found: Vec<ScenarioParcel> = state
        .carrier_parcels("dhl", number)
        .into_iter()
        .filter(|p| service.is_none_or(|s| shipment_service(p) == s))
        .collect();
    if found.is_empty() {
        return problem(
            StatusCode::NOT_FOUND,
            "No result found",
            "No shipment with given tracking number found.",
            Some(&format!("/shipment/{number}")),
        );
    }
    let url = format!("/shipments?trackingNumber={number}");
    let body = json!({
        "url": url,
        "firstUrl": url,
        "lastUrl": url,
        "shipments": found.iter().map(|p| shipment(p, now)).collect::<Vec<_>>(),
    });
    respond(
        StatusCode::OK,
        axum::Json(body),
        &[(header::CONTENT_LANGUAGE, "en")],
    )
}

/// The shipment's division: its scenario service when DHL uses that name, else express.
fn shipment_service(parcel: &ScenarioParcel) -> &'static str {
    let wanted = parcel
        .service
        .as_deref()
        .unwrap_or("express")
        .trim()
        .to_ascii_lowercase();
    SHIPMENT_SERVICES
        .into_iter()
        .find(|s| *s == wanted)
        .unwrap_or("express")
}

/// One `supermodelIoLogisticsTrackingShipment`, events newest first.
fn shipment(parcel: &ScenarioParcel, now: DateTime<Utc>) -> Value {
    let service = shipment_service(parcel);
    let label_scan = parcel.label_scan("pre-transit");
    let scans = parcel.scans_or(now, &label_scan);
    let events: Vec<Value> = scans
        .iter()
        .rev()
        .map(|scan| event(parcel, scan, service, now))
        .collect();
    let mut out = Map::new();
    out.insert("id".into(), json!(parcel.tracking_number));
    out.insert("service".into(), json!(service));
    out.insert("origin".into(), place(&parcel.origin));
    out.insert("destination".into(), place(&parcel.destination));
    if let Some(status) = events.first() {
        out.insert("status".into(), status.clone());
    }
    if let Some(estimate) = parcel.estimated_delivery {
        out.insert(
            "estimatedTimeOfDelivery".into(),
            json!(timestamp(&parcel.destination, estimate.resolve(now), true)),
        );
    }
    out.insert(
        "details".into(),
        json!({
            "product": {"productName": parcel.service.clone().unwrap_or_else(|| "DHL PAKET".to_owned())},
            "totalNumberOfPieces": 1,
        }),
    );
    out.insert("events".into(), Value::Array(events));
    Value::Object(out)
}

/// One `supermodelIoLogisticsTrackingShipmentEvent`.
fn event(parcel: &ScenarioParcel, scan: &ScenarioScan, service: &str, now: DateTime<Utc>) -> Value {
    let code = STATUS_CODES
        .iter()
        .find(|(c, _, _)| c.eq_ignore_ascii_case(&scan.code))
        .unwrap_or(&STATUS_CODES[4]);
    let (status_code, words, default_description) = *code;
    let place_of_scan = parcel.place_of(scan);
    json!({
        "timestamp": timestamp(place_of_scan, scan.at.resolve(now), service == "express"),
        "location": place(place_of_scan),
        "statusCode": status_code,
        "status": words,
        "description": scan.description.clone().unwrap_or_else(|| default_description.to_owned()),
    })
}

/// Local time at `place`, with its offset or (most divisions) without.
fn timestamp(place: &ScenarioPlace, at: DateTime<Utc>, with_offset: bool) -> String {
    let local = place.local(at);
    if with_offset {
        local.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    } else {
        local.format("%Y-%m-%dT%H:%M:%S").to_string()
    }
}

/// A `supermodelIoLogisticsSupportingPlace`.
fn place(place: &ScenarioPlace) -> Value {
    let mut address = Map::new();
    address.insert("countryCode".into(), json!(place.country));
    if !place.postcode.is_empty() {
        address.insert("postalCode".into(), json!(place.postcode));
    }
    if !place.city.is_empty() {
        address.insert("addressLocality".into(), json!(place.city));
    }
    json!({ "address": address })
}

/// DHL's `application/problem+json`.
fn problem(status: StatusCode, title: &str, detail: &str, instance: Option<&str>) -> Response {
    let mut body = Map::new();
    body.insert("title".into(), json!(title));
    body.insert("status".into(), json!(status.as_u16()));
    body.insert("detail".into(), json!(detail));
    if let Some(instance) = instance {
        body.insert("instance".into(), json!(instance));
    }
    respond(
        status,
        Value::Object(body).to_string(),
        &[
            (header::CONTENT_TYPE, "application/problem+json"),
            (header::CONTENT_LANGUAGE, "en"),
        ],
    )
}
