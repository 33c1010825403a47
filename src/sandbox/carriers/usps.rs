//! USPS, faked from `specs/carriers/usps/oauth2_3_update.yaml` (OAuth 2 v3 client
//! credentials) and `tracking-v3r2_4.yaml` (Package Tracking v3r2), under `/usps`:
//!
//! - `POST /usps/oauth2/v3/token`: JSON (or form) `grant_type=client_credentials` with
//!   [`CLIENT_ID`] / [`CLIENT_SECRET`]; wrong credentials get USPS's 401
//!   `invalid_client`. The token carries the scopes asked for (all of the app's when
//!   none is named); one without `tracking` is refused by the tracking API (401), as USPS
//!   does.
//! - `POST /usps/tracking/v3r2/tracking`: a Bearer token and 1–35
//!   `{trackingNumber, mailingDate?, destinationZIPCode?}`. Every number found → 200
//!   `TrackingDetail[]`; a lone number USPS has no data for → 404; otherwise 207 with a
//!   `FailureResponse` (404, "Tracking is not available…") for each number not found.
//!   `mailingDate` and `destinationZIPCode` pick among reused numbers.
//!
//! Events are newest first. `eventTimestamp` is the local wall time *without* offset, as
//! USPS really sends it (research §3), with `GMTTimestamp` and `GMTOffset` beside it. A
//! parcel without scans shows USPS's `GX` "Shipping Label Created" at its label time.
//! Like every sandbox module it is written from the contract alone and must never use
//! the connector's types or parsing (`crate::sources`, `crate::model`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use super::super::Shared;
use super::{
    ScenarioParcel, ScenarioPlace, ScenarioScan, content_type_is, header_text, respond, utc_text,
};

/// The Consumer Key the sandbox's USPS app has.
pub(super) const CLIENT_ID: &str = "sandbox-usps-client-id";
/// The Consumer Secret the sandbox's USPS app has.
pub(super) const CLIENT_SECRET: &str = "sandbox-usps-client-secret";

/// Access tokens live eight hours, less a second (`expires_in: 28799`).
const TOKEN_LIFETIME: i64 = 28_799;
/// Tokens issued without the `tracking` scope are kept under this name, so the
/// tracking API (which checks for `usps`) refuses them.
const WITHOUT_TRACKING: &str = "usps-without-tracking-scope";
/// The scopes of the sandbox's app (those of the contract's example token).
const APP_SCOPES: [&str; 15] = [
    "addresses",
    "international-prices",
    "subscriptions",
    "payments",
    "pickup",
    "tracking",
    "labels",
    "scan-form",
    "companies",
    "service-delivery-standards",
    "locations",
    "international-labels",
    "prices",
    "shipments",
    "adjustments",
];
/// The contract's `State` pattern.
const STATES: [&str; 61] = [
    "AA", "AE", "AL", "AK", "AP", "AS", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FM", "FL", "GA",
    "GU", "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "ME", "MH", "MD", "MA", "MI", "MN", "MS",
    "MO", "MP", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PW", "PA",
    "PR", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VI", "VA", "WA", "WV", "WI",
];
const BATCH_LIMIT: usize = 35;
const NOT_AVAILABLE: &str =
    "Tracking is not available for this item at this time. Please check back later.";

/// Event codes (Pub 199 App. G) with USPS's words and the `statusCategory` they put a
/// parcel in.
const EVENT_CODES: [(&str, &str, &str); 40] = [
    (
        "GX",
        "Shipping Label Created, USPS Awaiting Item",
        "Pre-Shipment",
    ),
    (
        "MA",
        "Pre-Shipment Info Sent to USPS, USPS Awaiting Item",
        "Pre-Shipment",
    ),
    (
        "80",
        "Picked Up by Shipping Partner, USPS Awaiting Item",
        "Pre-Shipment",
    ),
    ("03", "USPS in possession of item", "Accepted"),
    ("43", "Picked Up", "Accepted"),
    (
        "TM",
        "Shipment Received, Package Acceptance Pending",
        "Accepted",
    ),
    (
        "10",
        "Arrived at USPS Regional Origin Facility",
        "In Transit",
    ),
    ("SF", "Departed Post Office", "In Transit"),
    ("EF", "Departed USPS Facility", "In Transit"),
    ("A1", "Arrived at USPS Regional Facility", "In Transit"),
    ("T1", "Departed USPS Regional Facility", "In Transit"),
    ("TL", "In Transit to Next Facility", "In Transit"),
    ("07", "Arrived at Post Office", "In Transit"),
    ("06", "Forwarded", "In Transit"),
    ("08", "Missent", "In Transit"),
    ("15", "Mis-shipped", "In Transit"),
    ("71", "Rescheduled to Next Delivery Day", "In Transit"),
    ("OF", "Out for Delivery", "Out for Delivery"),
    ("01", "Delivered", "Delivered"),
    ("17", "Picked Up by Agent", "Delivered"),
    ("14", "Arrival at Pickup Point", "Available for Pickup"),
    ("16", "Available for Pickup", "Available for Pickup"),
    (
        "02",
        "Notice Left (No Authorized Recipient Available)",
        "Delivery Attempt",
    ),
    ("51", "Business Closed", "Delivery Attempt"),
    ("52", "Notice Left", "Delivery Attempt"),
    ("53", "Receptacle Blocked", "Delivery Attempt"),
    ("54", "Receptacle Full / Item Oversized", "Delivery Attempt"),
    ("55", "No Secure Location Available", "Delivery Attempt"),
    (
        "56",
        "No Authorized Recipient Available",
        "Delivery Attempt",
    ),
    ("30", "No Access to Delivery Location", "Delivery Attempt"),
    ("04", "Refused", "Return to Sender"),
    ("05", "Undeliverable as Addressed", "Return to Sender"),
    ("09", "Return to Sender", "Return to Sender"),
    ("21", "No Such Number", "Return to Sender"),
    ("22", "Insufficient Address", "Return to Sender"),
    ("23", "Moved, Left No Address", "Return to Sender"),
    ("27", "Unclaimed", "Return to Sender"),
    ("31", "Return to Sender / Not Picked Up", "Return to Sender"),
    ("11", "Dead Letter", "Alert"),
    ("DX", "Delivery Status Not Updated", "Alert"),
];

pub(super) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    router
        .route("/usps/oauth2/v3/token", post(token))
        .route("/usps/tracking/v3r2/tracking", post(track))
}

pub(super) fn classify(method: &str, rest: &[&str]) -> Option<&'static str> {
    match (method, rest) {
        ("POST", ["oauth2", "v3", "token"]) => Some("usps.token"),
        ("POST", ["tracking", "v3r2", "tracking"]) => Some("usps.track"),
        _ => None,
    }
}

/// A fault's answer: the OAuth error shape on the token call, `ErrorMessage` on tracking.
pub(super) fn fault_response(
    operation: &str,
    status: StatusCode,
    _retry_after: Option<u64>,
) -> Response {
    if operation == "usps.token" {
        return match status.as_u16() {
            401 => oauth_error(
                status,
                Some("invalid_client"),
                "Client authentication failed.",
            ),
            400 => oauth_error(status, Some("invalid_request"), "The request is invalid."),
            // The contract's error codes have none for throttling or outages.
            429 => oauth_error(
                status,
                None,
                "Too many requests have been received from the client.",
            ),
            _ => oauth_error(status, None, "The service is unavailable. Try again later."),
        };
    }
    let message = match status.as_u16() {
        401 => "Unauthorized request.",
        403 => "Access to the requested resource is forbidden.",
        404 => "The requested resource was not found.",
        429 => "Too many requests have been received from client in a short amount of time.",
        503 => "Service unavailable.",
        500..=599 => "An unknown error has occurred.",
        _ => "Bad request.",
    };
    error_message(status, message)
}

/// `POST /usps/oauth2/v3/token`.
async fn token(State(state): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(fields) = request_fields(&headers, &body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
            "The request body is neither JSON nor application/x-www-form-urlencoded.",
        );
    };
    let field = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    match field("grant_type") {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                Some("unsupported_grant_type"),
                "The grant type is not supported.",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                Some("invalid_request"),
                "grant_type is required.",
            );
        }
    }
    if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            Some("invalid_client"),
            "Client authentication failed: check the client_id and client_secret.",
        );
    }
    let requested: Vec<&str> = field("scope")
        .map(|s| s.split_whitespace().collect())
        .unwrap_or_else(|| APP_SCOPES.to_vec());
    if let Some(unknown) = requested.iter().find(|s| !APP_SCOPES.contains(s)) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            Some("invalid_scope"),
            &format!("The scope {unknown} is not granted to this application."),
        );
    }
    let name = if requested.contains(&"tracking") {
        "usps"
    } else {
        WITHOUT_TRACKING
    };
    let (access_token, lifetime) = state.issue_carrier_token(name, TOKEN_LIFETIME);
    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "issued_at": state.now().timestamp_millis(),
        "expires_in": lifetime,
        "status": "approved",
        "scope": requested.join(" "),
        "issuer": "api.usps.com",
        "client_id": CLIENT_ID,
        "application_name": "nightdesk sandbox",
        "api_products": "[Shipping-Silver]",
    });
    respond(
        StatusCode::OK,
        axum::Json(body),
        &[(header::CACHE_CONTROL, "no-store")],
    )
}

/// The JSON object's fields, or the form's as strings.
fn request_fields(headers: &HeaderMap, body: &[u8]) -> Option<Map<String, Value>> {
    if content_type_is(headers, "application/x-www-form-urlencoded") {
        std::str::from_utf8(body).ok()?;
        return Some(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        );
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// `POST /usps/tracking/v3r2/tracking`.
async fn track(State(state): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    // The scheme exactly as USPS writes it.
    let token = header_text(&headers, header::AUTHORIZATION.as_str())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if !token.is_some_and(|t| state.carrier_token_valid("usps", t)) {
        return error_message(
            StatusCode::UNAUTHORIZED,
            "Unauthorized request: the access token is missing, invalid, expired or lacks the tracking scope.",
        );
    }
    let wanted = match read_request(&body) {
        Ok(wanted) => wanted,
        Err(problem) => return error_message(StatusCode::BAD_REQUEST, &problem),
    };
    let now = state.now();
    let answers: Vec<(&Wanted, Vec<ScenarioParcel>)> = wanted
        .iter()
        .map(|w| {
            let parcels = state
                .carrier_parcels("usps", &w.number)
                .into_iter()
                .filter(|p| w.mailing_date.is_none_or(|d| p.ship_date(now) == d))
                .filter(|p| {
                    w.zip
                        .as_deref()
                        .is_none_or(|z| p.destination.postcode.starts_with(z))
                })
                .collect();
            (w, parcels)
        })
        .collect();
    let all_found = answers.iter().all(|(_, parcels)| !parcels.is_empty());
    if all_found {
        let details: Vec<Value> = answers
            .iter()
            .flat_map(|(_, parcels)| parcels.iter().map(|p| Value::Object(detail(p, now))))
            .collect();
        return (StatusCode::OK, axum::Json(Value::Array(details))).into_response();
    }
    if answers.len() == 1 {
        return error_message(StatusCode::NOT_FOUND, NOT_AVAILABLE);
    }
    let mut items = Vec::new();
    for (wanted, parcels) in &answers {
        if parcels.is_empty() {
            items.push(json!({
                "statusCode": "404",
                "trackingNumber": wanted.number,
                "apiVersion": "v3r2",
                "error": {
                    "code": "404",
                    "message": NOT_AVAILABLE,
                    "errors": [{
                        "status": "404",
                        "code": "1001",
                        "title": "Tracking is not available",
                        "detail": NOT_AVAILABLE,
                    }],
                },
            }));
        }
        for parcel in parcels {
            let mut item = detail(parcel, now);
            item.insert("statusCode".into(), json!("200"));
            items.push(Value::Object(item));
        }
    }
    (StatusCode::MULTI_STATUS, axum::Json(Value::Array(items))).into_response()
}

/// One `TrackingRequestBody`.
struct Wanted {
    number: String,
    mailing_date: Option<NaiveDate>,
    zip: Option<String>,
}

/// The request, checked as the contract says (`TrackingRequest`, `additionalProperties:
/// false`); the first problem otherwise.
fn read_request(body: &[u8]) -> Result<Vec<Wanted>, String> {
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(body) else {
        return Err("The request body must be a JSON array of tracking requests.".into());
    };
    if items.is_empty() || items.len() > BATCH_LIMIT {
        return Err(format!(
            "Between 1 and {BATCH_LIMIT} tracking requests are allowed, got {}.",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let Value::Object(fields) = item else {
                return Err(format!("[{index}] is not an object."));
            };
            if let Some(extra) = fields.keys().find(|k| {
                !["trackingNumber", "mailingDate", "destinationZIPCode"].contains(&k.as_str())
            }) {
                return Err(format!(
                    "[{index}].{extra} is not a tracking request field."
                ));
            }
            let number = fields
                .get("trackingNumber")
                .and_then(Value::as_str)
                .filter(|n| {
                    (4..=34).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric())
                })
                .ok_or_else(|| {
                    format!("[{index}].trackingNumber must be 4 to 34 letters and digits.")
                })?;
            let mailing_date = match fields.get("mailingDate") {
                None => None,
                Some(date) => Some(
                    date.as_str()
                        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                        .ok_or_else(|| {
                            format!("[{index}].mailingDate must be a date (YYYY-MM-DD).")
                        })?,
                ),
            };
            let zip = match fields.get("destinationZIPCode") {
                None => None,
                Some(zip) => Some(
                    zip.as_str()
                        .filter(|z| is_zip5(z))
                        .map(str::to_owned)
                        .ok_or_else(|| format!("[{index}].destinationZIPCode must be 5 digits."))?,
                ),
            };
            Ok(Wanted {
                number: number.to_owned(),
                mailing_date,
                zip,
            })
        })
        .collect()
}

fn is_zip5(text: &str) -> bool {
    text.len() == 5 && text.chars().all(|c| c.is_ascii_digit())
}

/// A `TrackingDetail`, events newest first.
fn detail(parcel: &ScenarioParcel, now: DateTime<Utc>) -> Map<String, Value> {
    let label_scan = parcel.label_scan("GX");
    let scans = parcel.scans_or(now, &label_scan);
    let newest = scans.last().copied().unwrap_or(&label_scan);
    let (words, category) = code_words(&newest.code);
    let status = newest
        .description
        .clone()
        .unwrap_or_else(|| words.to_owned());
    let newest_place = parcel.place_of(newest);
    let mut out = Map::new();
    out.insert("trackingNumber".into(), json!(parcel.tracking_number));
    out.insert(
        "uniqueTrackingID".into(),
        json!(format!(
            "{}{}",
            parcel.label_created.resolve(now).timestamp(),
            digits_tail(&parcel.tracking_number)
        )),
    );
    out.insert(
        "mailClass".into(),
        json!(
            parcel
                .service
                .clone()
                .unwrap_or_else(|| "USPS Ground Advantage".to_owned())
        ),
    );
    let domestic = parcel.destination.country.eq_ignore_ascii_case("US");
    out.insert(
        "mailType".into(),
        json!(if domestic {
            "Domestic"
        } else {
            "International Outbound"
        }),
    );
    out.insert(
        "mailingDate".into(),
        json!(parcel.ship_date(now).format("%Y-%m-%d").to_string()),
    );
    place_fields(&mut out, "origin", &parcel.origin);
    place_fields(&mut out, "destination", &parcel.destination);
    out.insert("services".into(), json!(["USPS Tracking"]));
    out.insert("status".into(), json!(status));
    out.insert("statusCategory".into(), json!(category));
    let local = newest_place.local(newest.at.resolve(now));
    out.insert(
        "statusSummary".into(),
        json!(format!(
            "{status}: {} in {}, {}.",
            local.format("%-I:%M %P on %B %-d, %Y"),
            newest_place.city,
            newest_place
                .state
                .as_deref()
                .unwrap_or(&newest_place.country)
        )),
    );
    let delivered = category == "Delivered";
    if let Some(estimate) = parcel.estimated_delivery.filter(|_| !delivered) {
        let date = parcel.destination.local(estimate.resolve(now)).date_naive();
        out.insert(
            "deliveryDateExpectation".into(),
            json!({ "expectedDeliveryDate": date.format("%Y-%m-%d").to_string() }),
        );
    }
    out.insert(
        "servicesEligibility".into(),
        json!({"proofOfDeliveryEnabled": false, "RREEnabled": false, "trackingProofOfDeliveryEnabled": false}),
    );
    let events: Vec<Value> = scans
        .iter()
        .rev()
        .map(|scan| event(parcel, scan, now))
        .collect();
    out.insert("trackingEvents".into(), Value::Array(events));
    out
}

/// One `TrackingEvent`: local wall time without offset, and the GMT fields.
fn event(parcel: &ScenarioParcel, scan: &ScenarioScan, now: DateTime<Utc>) -> Value {
    let place = parcel.place_of(scan);
    let at = scan.at.resolve(now);
    let local = place.local(at);
    let mut out = Map::new();
    let (words, _) = code_words(&scan.code);
    out.insert(
        "eventType".into(),
        json!(scan.description.clone().unwrap_or_else(|| words.to_owned())),
    );
    out.insert("eventCode".into(), json!(scan.code));
    out.insert(
        "eventTimestamp".into(),
        json!(local.format("%Y-%m-%dT%H:%M:%S").to_string()),
    );
    out.insert("GMTTimestamp".into(), json!(utc_text(at)));
    out.insert("GMTOffset".into(), json!(local.offset().to_string()));
    if !place.city.is_empty() {
        out.insert("eventCity".into(), json!(place.city));
    }
    if let Some(state) = place.state.as_deref().filter(|s| !s.is_empty()) {
        out.insert("eventState".into(), json!(state));
    }
    if is_zip5(&place.postcode) {
        out.insert("eventZIPCode".into(), json!(place.postcode));
    }
    // USPS leaves the country out at home.
    if !place.country.eq_ignore_ascii_case("US") {
        out.insert("eventCountry".into(), json!(place.country));
    }
    if let Some(reason) = &scan.reason {
        out.insert("reasonCode".into(), json!(reason));
    }
    Value::Object(out)
}

/// `originCity`, `originState`, … as far as the contract's patterns allow.
fn place_fields(out: &mut Map<String, Value>, prefix: &str, place: &ScenarioPlace) {
    if !place.city.is_empty() {
        out.insert(format!("{prefix}City"), json!(place.city));
    }
    if let Some(state) = place.state.as_deref().filter(|s| STATES.contains(s)) {
        out.insert(format!("{prefix}State"), json!(state));
    }
    if is_zip5(&place.postcode) {
        out.insert(format!("{prefix}ZIPCode"), json!(place.postcode));
    }
    if place.country.len() == 2 {
        out.insert(format!("{prefix}Country"), json!(place.country));
    }
}

/// USPS's words and status category for a code.
fn code_words(code: &str) -> (&'static str, &'static str) {
    EVENT_CODES
        .iter()
        .find(|(c, _, _)| c.eq_ignore_ascii_case(code))
        .map_or(("Tracking Event", "In Transit"), |(_, words, category)| {
            (*words, *category)
        })
}

/// The last six digits of a number, for a stable `uniqueTrackingID`.
fn digits_tail(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(6)..].iter().collect()
}

/// The contract's `ErrorMessage`.
fn error_message(status: StatusCode, message: &str) -> Response {
    let code = status.as_u16().to_string();
    let body = json!({
        "apiVersion": "v3r2",
        "error": {
            "code": code,
            "message": message,
            "errors": [{
                "status": code,
                "code": code,
                "title": status.canonical_reason().unwrap_or("Error"),
                "detail": message,
            }],
        },
    });
    challenged(status, body, "Bearer realm=\"https://api.usps.com\"")
}

/// The OAuth contract's `StandardErrorResponse` (no other field is allowed).
fn oauth_error(status: StatusCode, error: Option<&str>, description: &str) -> Response {
    let mut body = Map::new();
    if let Some(error) = error {
        body.insert("error".into(), json!(error));
    }
    body.insert("error_description".into(), json!(description));
    challenged(
        status,
        Value::Object(body),
        "Basic realm=\"https://apis.usps.com\"",
    )
}

/// A JSON error answer; a 401 carries `challenge` as its `WWW-Authenticate`.
fn challenged(status: StatusCode, body: Value, challenge: &'static str) -> Response {
    let challenge = [(header::WWW_AUTHENTICATE, challenge)];
    let headers: &[_] = if status == StatusCode::UNAUTHORIZED {
        &challenge
    } else {
        &[]
    };
    respond(status, axum::Json(body), headers)
}
