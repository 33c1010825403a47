//! FedEx, faked from `specs/carriers/fedex/APIAuthorization-Resource.json` and
//! `TrackingNumbers-Resource.json`: `POST /fedex/oauth/token` (form `grant_type`,
//! `client_id` [`CLIENT_ID`], `client_secret` [`CLIENT_SECRET`]; `expires_in` an integer)
//! and `POST /fedex/track/v1/trackingnumbers` (Bearer token, JSON body with
//! `includeDetailedScans` and up to 30 `trackingInfo`).
//!
//! Each asked number answers one `completeTrackResults` entry; a reused number (several
//! scenario parcels) answers one `trackResult` per shipment, each with its own
//! `trackingNumberUniqueId` and `SHIP` date, narrowed by `shipDateBegin`/`shipDateEnd`
//! when asked. A number FedEx does not show yet answers the per-number error
//! `TRACKING.TRACKINGNUMBER.NOTFOUND` inside the 200. Scans are rendered newest first with
//! the local time and offset of their place — except pickup (`PU`) scans, which come
//! without an offset as FedEx sends some (research/carriers.md §3) — and with the derived
//! codes live answers show (an `OD` scan derives `IT`, an `RS` scan `DL`). A scan's
//! `reason` becomes the scan's `exceptionCode` and, on the latest scan, the
//! `ancillaryDetails` reason. Error codes FedEx does not publish (too many numbers, a
//! 429) are this sandbox's own.
//!
//! Written from the contract alone: it must never import from `crate::sources` or
//! `crate::model`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::super::Shared;
use super::{
    ScenarioParcel, ScenarioPlace, ScenarioScan, bearer_token, content_type_is, form_field,
    header_text, respond,
};

/// The API key the sandbox's FedEx accepts (`client_id` on the token call).
pub(super) const CLIENT_ID: &str = "nightdesk-sandbox-fedex-api-key";
/// The secret key the sandbox's FedEx accepts (`client_secret` on the token call).
pub(super) const CLIENT_SECRET: &str = "nightdesk-sandbox-fedex-secret-key";

/// Seconds a token lives unless the scenario says otherwise (FedEx issues an hour).
const TOKEN_LIFETIME: i64 = 3599;
/// Numbers one tracking request may carry.
const BATCH_LIMIT: usize = 30;

const TOKEN: &str = "fedex.token";
const TRACK: &str = "fedex.track";

const NOT_FOUND_MESSAGE: &str =
    "Tracking number cannot be found. Please correct the tracking number and try again.";

/// One event type as this sandbox renders it.
struct EventEntry {
    event_type: &'static str,
    description: &'static str,
    /// `derivedStatusCode` and `derivedStatus` as live answers pair them.
    derived_code: &'static str,
    derived: &'static str,
    /// `ScanEvent.locationType` (a contract enum).
    location_type: &'static str,
}

const fn entry(
    event_type: &'static str,
    description: &'static str,
    derived_code: &'static str,
    derived: &'static str,
    location_type: &'static str,
) -> EventEntry {
    EventEntry {
        event_type,
        description,
        derived_code,
        derived,
        location_type,
    }
}

/// The event types a scenario may use; one not listed renders as an in-transit scan
/// described by its own code.
const EVENTS: [EventEntry; 19] = [
    entry(
        "OC",
        "Shipment information sent to FedEx",
        "IN",
        "Initiated",
        "CUSTOMER",
    ),
    entry("PU", "Picked up", "PU", "Picked up", "PICKUP_LOCATION"),
    entry(
        "AR",
        "Arrived at FedEx location",
        "IT",
        "In transit",
        "FEDEX_FACILITY",
    ),
    entry(
        "DP",
        "Departed FedEx location",
        "IT",
        "In transit",
        "FEDEX_FACILITY",
    ),
    entry("IT", "In transit", "IT", "In transit", "FEDEX_FACILITY"),
    entry(
        "AF",
        "At local FedEx facility",
        "IT",
        "In transit",
        "DESTINATION_FEDEX_FACILITY",
    ),
    entry(
        "CC",
        "International shipment release - Import",
        "IT",
        "In transit",
        "PORT_OF_ENTRY",
    ),
    entry(
        "OD",
        "On FedEx vehicle for delivery",
        "IT",
        "In transit",
        "VEHICLE",
    ),
    entry("DL", "Delivered", "DL", "Delivered", "DELIVERY_LOCATION"),
    entry(
        "DE",
        "Delivery exception",
        "DE",
        "Delivery exception",
        "DESTINATION_FEDEX_FACILITY",
    ),
    entry(
        "HL",
        "Ready for pickup",
        "HL",
        "Ready for pickup",
        "DESTINATION_FEDEX_FACILITY",
    ),
    entry(
        "HP",
        "Ready for recipient pickup",
        "IT",
        "In transit",
        "DESTINATION_FEDEX_FACILITY",
    ),
    entry(
        "RS",
        "Returning package to shipper",
        "DL",
        "Delivered",
        "DESTINATION_FEDEX_FACILITY",
    ),
    entry(
        "SE",
        "Shipment exception",
        "SE",
        "Shipment exception",
        "FEDEX_FACILITY",
    ),
    entry(
        "CD",
        "Clearance delay",
        "CD",
        "Clearance delay",
        "PORT_OF_ENTRY",
    ),
    entry("DY", "Delay", "DY", "Delay", "FEDEX_FACILITY"),
    entry("DD", "Delivery delay", "DD", "Delay", "FEDEX_FACILITY"),
    entry(
        "CA",
        "Shipment cancelled by sender",
        "CA",
        "Cancelled",
        "CUSTOMER",
    ),
    entry("ED", "Enroute to delivery", "IT", "In transit", "VEHICLE"),
];

/// Reason codes with FedEx's words (`15` from the contract's example, `007` as live
/// answers spell the same reason).
const REASONS: [(&str, &str); 3] = [
    ("15", "Customer not available or business closed"),
    ("007", "Customer not available or business closed"),
    ("A13", "Redirecting to FedEx Office"),
];

/// Event types whose `date` FedEx sends without an offset.
const ZONELESS_EVENTS: [&str; 1] = ["PU"];

const DELAY_EVENTS: [&str; 3] = ["DY", "DD", "CD"];

pub(super) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    router
        .route("/fedex/oauth/token", post(token))
        .route("/fedex/track/v1/trackingnumbers", post(track))
}

pub(super) fn classify(method: &str, rest: &[&str]) -> Option<&'static str> {
    match (method, rest) {
        ("POST", ["oauth", "token"]) => Some(TOKEN),
        ("POST", ["track", "v1", "trackingnumbers"]) => Some(TRACK),
        _ => None,
    }
}

/// A fault's status in FedEx's error shape (`{"transactionId","errors":[…]}`).
pub(super) fn fault_response(
    _operation: &str,
    status: StatusCode,
    _retry_after: Option<u64>,
) -> Response {
    let (code, message) = match status.as_u16() {
        401 => (
            "NOT.AUTHORIZED.ERROR",
            "Access token expired. Please modify your request and try again.",
        ),
        403 => (
            "FORBIDDEN.ERROR",
            "We could not authorize your credentials. Please check your permissions and try again.",
        ),
        404 => (
            "NOT.FOUND.ERROR",
            "The resource you requested is no longer available. Please modify your request and try again.",
        ),
        429 => (
            "TOO.MANY.REQUESTS.ERROR",
            "We have received too many requests in a short duration. Please wait a while to try again.",
        ),
        503 => (
            "SERVICE.UNAVAILABLE.ERROR",
            "The service is currently unavailable and we are working to resolve the issue. We apologize for any inconvenience. Please check back at a later time.",
        ),
        500..=599 => (
            "INTERNAL.SERVER.ERROR",
            "We encountered an unexpected error and are working to resolve the issue. We apologize for any inconvenience. Please check back at a later time.",
        ),
        _ => (
            "BAD.REQUEST.ERROR",
            "The given JSON request is invalid. Please modify your request and try again.",
        ),
    };
    errors(status, code, message)
}

/// `POST /fedex/oauth/token`.
async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !content_type_is(&headers, "application/x-www-form-urlencoded") {
        return errors(
            StatusCode::BAD_REQUEST,
            "BAD.REQUEST.ERROR",
            "The content-type must be application/x-www-form-urlencoded.",
        );
    }
    let field = |name: &str| form_field(&body, name);
    let accepted = field("grant_type").as_deref() == Some("client_credentials")
        && field("client_id").as_deref() == Some(CLIENT_ID)
        && field("client_secret").as_deref() == Some(CLIENT_SECRET);
    if !accepted {
        return errors(
            StatusCode::UNAUTHORIZED,
            "NOT.AUTHORIZED.ERROR",
            "The given client credentials were not valid. Please modify your request and try again.",
        );
    }
    let (access_token, lifetime) = shared.issue_carrier_token("fedex", TOKEN_LIFETIME);
    Json(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": lifetime,
        "scope": "CXS",
    }))
    .into_response()
}

/// The request body (`Full_Schema_Tracking_Numbers`), read leniently so that what is
/// missing gets FedEx's answer rather than a generic one.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrackBody {
    include_detailed_scans: Option<bool>,
    tracking_info: Option<Vec<TrackingInfoBody>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrackingInfoBody {
    ship_date_begin: Option<String>,
    ship_date_end: Option<String>,
    tracking_number_info: Option<NumberBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NumberBody {
    tracking_number: Option<String>,
    tracking_number_unique_id: Option<String>,
}

/// `POST /fedex/track/v1/trackingnumbers`.
async fn track(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !bearer_token(&headers).is_some_and(|token| shared.carrier_token_valid("fedex", token)) {
        return errors(
            StatusCode::UNAUTHORIZED,
            "NOT.AUTHORIZED.ERROR",
            "Access token expired. Please modify your request and try again.",
        );
    }
    let json_sent = content_type_is(&headers, "application/json");
    let parsed = serde_json::from_slice::<TrackBody>(&body);
    let (true, Ok(request)) = (json_sent, parsed) else {
        return errors(
            StatusCode::BAD_REQUEST,
            "BAD.REQUEST.ERROR",
            "The given JSON request is invalid. Please modify your request and try again.",
        );
    };
    let Some(detailed) = request.include_detailed_scans else {
        return errors(
            StatusCode::BAD_REQUEST,
            "BAD.REQUEST.ERROR",
            "includeDetailedScans is required.",
        );
    };
    let infos = request.tracking_info.unwrap_or_default();
    let numbers: Option<Vec<String>> = infos
        .iter()
        .map(|info| {
            info.tracking_number_info
                .as_ref()
                .and_then(|n| n.tracking_number.as_deref())
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
        })
        .collect();
    let numbers = match numbers {
        Some(numbers) if !numbers.is_empty() => numbers,
        _ => {
            return errors(
                StatusCode::BAD_REQUEST,
                "TRACKING.TRACKINGNUMBER.EMPTY",
                "Please provide tracking number.",
            );
        }
    };
    if numbers.len() > BATCH_LIMIT {
        return errors(
            StatusCode::BAD_REQUEST,
            "TRACKING.TRACKINGNUMBER.LIMIT.EXCEEDED",
            "Please limit the request to 30 tracking numbers.",
        );
    }
    let now = shared.now();
    let mut complete = Vec::new();
    for (info, number) in infos.iter().zip(&numbers) {
        let window = match ship_window(info) {
            Ok(window) => window,
            Err(message) => {
                return errors(StatusCode::BAD_REQUEST, "BAD.REQUEST.ERROR", &message);
            }
        };
        let unique_id = info
            .tracking_number_info
            .as_ref()
            .and_then(|n| n.tracking_number_unique_id.as_deref())
            .map(str::trim)
            .filter(|id| !id.is_empty());
        let results: Vec<Value> = shared
            .carrier_parcels("fedex", number)
            .iter()
            .filter(|p| window.contains(p.ship_date(now)))
            .filter(|p| unique_id.is_none_or(|id| id == unique_id_of(p, number, now)))
            .map(|p| track_result(p, number, now, detailed))
            .collect();
        let results = if results.is_empty() {
            vec![json!({
                "trackingNumberInfo": {"trackingNumber": number, "trackingNumberUniqueId": ""},
                "error": {"code": "TRACKING.TRACKINGNUMBER.NOTFOUND", "message": NOT_FOUND_MESSAGE},
            })]
        } else {
            results
        };
        complete.push(json!({"trackingNumber": number, "trackResults": results}));
    }
    let mut answer = Map::new();
    answer.insert("transactionId".into(), json!(transaction_id()));
    if let Some(customer) = header_text(&headers, "x-customer-transaction-id") {
        answer.insert("customerTransactionId".into(), json!(customer));
    }
    answer.insert("output".into(), json!({"completeTrackResults": complete}));
    Json(Value::Object(answer)).into_response()
}

/// The ship dates a request asked for, bounds included.
#[derive(Default)]
struct ShipWindow {
    begin: Option<NaiveDate>,
    end: Option<NaiveDate>,
}

impl ShipWindow {
    fn contains(&self, date: NaiveDate) -> bool {
        self.begin.is_none_or(|b| b <= date) && self.end.is_none_or(|e| date <= e)
    }
}

fn ship_window(info: &TrackingInfoBody) -> Result<ShipWindow, String> {
    let parse = |text: &Option<String>, name: &str| match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| format!("{name} must be a date as YYYY-MM-DD.")),
    };
    Ok(ShipWindow {
        begin: parse(&info.ship_date_begin, "shipDateBegin")?,
        end: parse(&info.ship_date_end, "shipDateEnd")?,
    })
}

/// FedEx's id of one shipment under a number: `<label time>~<number>~FDEG`.
fn unique_id_of(parcel: &ScenarioParcel, number: &str, now: DateTime<Utc>) -> String {
    format!(
        "{}~{number}~FDEG",
        parcel.label_created.resolve(now).format("%Y%m%d%H%M%S")
    )
}

fn track_result(
    parcel: &ScenarioParcel,
    number: &str,
    now: DateTime<Utc>,
    detailed: bool,
) -> Value {
    let scans = parcel.scans_by(now);
    let mut result = Map::new();
    result.insert(
        "trackingNumberInfo".into(),
        json!({
            "trackingNumber": number,
            "trackingNumberUniqueId": unique_id_of(parcel, number, now),
            "carrierCode": "FDXG",
        }),
    );
    result.insert(
        "additionalTrackingInfo".into(),
        json!({"hasAssociatedShipments": false}),
    );
    result.insert(
        "shipperInformation".into(),
        json!({"address": address(&parcel.origin)}),
    );
    result.insert(
        "recipientInformation".into(),
        json!({"address": address(&parcel.destination)}),
    );
    if let Some(latest) = scans.last() {
        result.insert("latestStatusDetail".into(), latest_status(parcel, latest));
    } else {
        result.insert(
            "serviceCommitMessage".into(),
            json!({
                "message": "The delivery date may be updated when FedEx receives the package.",
                "type": "SHIPMENT_LABEL_CREATED",
            }),
        );
    }
    result.insert("dateAndTimes".into(), date_and_times(parcel, &scans, now));
    if detailed {
        result.insert(
            "scanEvents".into(),
            Value::Array(
                scans
                    .iter()
                    .rev()
                    .map(|scan| scan_event(parcel, scan, now))
                    .collect(),
            ),
        );
    }
    let service = parcel.service.as_deref().unwrap_or("FedEx Ground");
    result.insert(
        "serviceDetail".into(),
        json!({
            "type": service.to_ascii_uppercase().replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            "description": service,
        }),
    );
    result.insert(
        "originLocation".into(),
        json!({"locationContactAndAddress": {"address": address(&parcel.origin)}}),
    );
    result.insert(
        "lastUpdatedDestinationAddress".into(),
        address(&parcel.destination),
    );
    let attempts = scans.iter().filter(|s| s.code.trim() == "DE").count();
    result.insert(
        "deliveryDetails".into(),
        json!({"deliveryAttempts": attempts.to_string()}),
    );
    Value::Object(result)
}

fn latest_status(parcel: &ScenarioParcel, scan: &ScenarioScan) -> Value {
    let known = event_entry(&scan.code);
    let mut latest = Map::new();
    latest.insert("scanLocation".into(), address(parcel.place_of(scan)));
    latest.insert("code".into(), json!(scan.code.trim()));
    latest.insert(
        "derivedCode".into(),
        json!(known.map_or("IT", |e| e.derived_code)),
    );
    latest.insert(
        "statusByLocale".into(),
        json!(known.map_or("In transit", |e| e.derived)),
    );
    latest.insert("description".into(), json!(description_of(scan)));
    if let Some(reason) = scan.reason.as_deref() {
        latest.insert(
            "ancillaryDetails".into(),
            json!([{
                "reason": reason,
                "reasonDescription": reason_description(reason),
                "action": "",
                "actionDescription": reason_description(reason),
            }]),
        );
    }
    if DELAY_EVENTS.contains(&scan.code.trim()) {
        latest.insert("delayDetail".into(), json!({"status": "DELAYED"}));
    }
    Value::Object(latest)
}

fn scan_event(parcel: &ScenarioParcel, scan: &ScenarioScan, now: DateTime<Utc>) -> Value {
    let place = parcel.place_of(scan);
    let local = place.local(scan.at.resolve(now));
    let code = scan.code.trim();
    let date = if ZONELESS_EVENTS.contains(&code) {
        local.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        local.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    };
    let known = event_entry(code);
    json!({
        "date": date,
        "eventType": code,
        "eventDescription": description_of(scan),
        "exceptionCode": scan.reason.as_deref().unwrap_or_default(),
        "exceptionDescription": scan.reason.as_deref().map(reason_description).unwrap_or_default(),
        "scanLocation": address(place),
        "locationType": known.map_or("FEDEX_FACILITY", |e| e.location_type),
        "derivedStatusCode": known.map_or("IT", |e| e.derived_code),
        "derivedStatus": known.map_or("In transit", |e| e.derived),
    })
}

/// `SHIP` as a zone-less midnight (as the contract's own example writes dates), the
/// pickup and the delivery at their place with its offset, the estimate at the
/// destination until delivered.
fn date_and_times(parcel: &ScenarioParcel, scans: &[&ScenarioScan], now: DateTime<Utc>) -> Value {
    let mut dates = vec![json!({
        "type": "SHIP",
        "dateTime": format!("{}T00:00:00", parcel.ship_date(now).format("%Y-%m-%d")),
    })];
    let with_offset = |place: &ScenarioPlace, at: DateTime<Utc>| {
        place.local(at).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    };
    if let Some(pickup) = scans.iter().find(|s| s.code.trim() == "PU") {
        dates.push(json!({
            "type": "ACTUAL_PICKUP",
            "dateTime": with_offset(parcel.place_of(pickup), pickup.at.resolve(now)),
        }));
    }
    match scans.iter().rev().find(|s| s.code.trim() == "DL") {
        Some(delivery) => dates.push(json!({
            "type": "ACTUAL_DELIVERY",
            "dateTime": with_offset(parcel.place_of(delivery), delivery.at.resolve(now)),
        })),
        None => {
            if let Some(eta) = parcel.estimated_delivery {
                dates.push(json!({
                    "type": "ESTIMATED_DELIVERY",
                    "dateTime": with_offset(&parcel.destination, eta.resolve(now)),
                }));
            }
        }
    }
    Value::Array(dates)
}

/// `AddressVO1`.
fn address(place: &ScenarioPlace) -> Value {
    let mut address = Map::new();
    let mut put = |key: &str, value: &str| {
        if !value.trim().is_empty() {
            address.insert(key.to_owned(), json!(value));
        }
    };
    put("city", &place.city);
    put(
        "stateOrProvinceCode",
        place.state.as_deref().unwrap_or_default(),
    );
    put("postalCode", &place.postcode);
    put("countryCode", &place.country);
    address.insert("residential".into(), json!(false));
    Value::Object(address)
}

fn description_of(scan: &ScenarioScan) -> String {
    scan.description.clone().unwrap_or_else(|| {
        event_entry(&scan.code)
            .map_or_else(|| scan.code.trim().to_owned(), |e| e.description.to_owned())
    })
}

fn reason_description(reason: &str) -> &'static str {
    REASONS
        .iter()
        .find(|(code, _)| *code == reason.trim())
        .map_or("Delivery exception", |(_, words)| words)
}

fn event_entry(code: &str) -> Option<&'static EventEntry> {
    EVENTS.iter().find(|e| e.event_type == code.trim())
}

/// A fresh `transactionId` in FedEx's UUID form.
fn transaction_id() -> String {
    let bits: u128 = rand::random();
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// FedEx's error body (`ErrorResponseVO`).
fn errors(status: StatusCode, code: &str, message: &str) -> Response {
    respond(
        status,
        Json(json!({
            "transactionId": transaction_id(),
            "errors": [{"code": code, "message": message}],
        })),
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_classify_by_method_and_path() {
        assert_eq!(classify("POST", &["oauth", "token"]), Some(TOKEN));
        assert_eq!(
            classify("POST", &["track", "v1", "trackingnumbers"]),
            Some(TRACK)
        );
        assert_eq!(classify("GET", &["track", "v1", "trackingnumbers"]), None);
    }

    #[test]
    fn ship_windows_include_their_bounds_and_refuse_bad_dates() {
        let info = |begin: &str, end: &str| TrackingInfoBody {
            ship_date_begin: Some(begin.to_owned()),
            ship_date_end: Some(end.to_owned()),
            tracking_number_info: None,
        };
        let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap_or_default();
        match ship_window(&info("2026-11-10", "2026-11-20")) {
            Ok(window) => {
                assert!(window.contains(day(10)) && window.contains(day(20)));
                assert!(!window.contains(day(9)) && !window.contains(day(21)));
            }
            Err(e) => panic!("valid window refused: {e}"),
        }
        assert!(ship_window(&info("11/10/2026", "")).is_err());
        assert!(ShipWindow::default().contains(day(1)));
    }

    #[test]
    fn transaction_ids_look_like_uuids() {
        let id = transaction_id();
        let parts: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
    }
}
