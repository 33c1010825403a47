//! UPS, faked from `specs/carriers/ups/OAuthClientCredentials.yaml` and `Tracking.yaml`:
//! `POST /ups/security/v1/oauth/token` (HTTP Basic [`CLIENT_ID`]:[`CLIENT_SECRET`], form
//! `grant_type=client_credentials`; every answer field a string) and
//! `GET /ups/api/track/v1/details/{inquiryNumber}` (Bearer token, `transId` and
//! `transactionSrc` headers required).
//!
//! Scenario parcels are rendered in UPS's shape: activities newest first with the local
//! `date`+`time` of their place and UPS's `gmtDate`/`gmtTime`/`gmtOffset`, the 3-digit
//! scan code as `statusCode` with the `type` and 2-character `code` from this module's
//! table, `currentStatus` as live answers carry it (the 3-digit code in `code`). A scan's
//! `reason` is rendered as the 2-character `code` (where UPS puts its exception codes).
//! UPS shows the latest shipment under a reused number only. A number UPS does not show
//! yet answers 200 with the warning `TW0001`, as UPS does; a malformed one 400 `TV1002`.
//! Error codes UPS does not publish (missing headers, 5xx) are this sandbox's own.
//!
//! Written from the contract alone: it must never import from `crate::sources` or
//! `crate::model`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::super::Shared;
use super::{
    ScenarioParcel, ScenarioPlace, ScenarioScan, bearer_token, content_type_is, form_field,
    header_text, respond,
};

/// The Client ID the sandbox's UPS accepts (HTTP Basic user on the token call).
pub(super) const CLIENT_ID: &str = "nightdesk-sandbox-ups-client-id";
/// The Client Secret the sandbox's UPS accepts (HTTP Basic password).
pub(super) const CLIENT_SECRET: &str = "nightdesk-sandbox-ups-client-secret";

/// Seconds a token lives unless the scenario says otherwise (UPS issues ~4 hours).
const TOKEN_LIFETIME: i64 = 14399;

const TOKEN: &str = "ups.token";
const TRACK: &str = "ups.track";

/// One 3-digit code as this sandbox renders it.
struct CodeEntry {
    status_code: &'static str,
    /// The status `type`: M manifest, I in progress, D delivery, X exception.
    kind: &'static str,
    /// The 2-character `code`, where one is known.
    code: Option<&'static str>,
    description: &'static str,
    simplified: &'static str,
}

const fn entry(
    status_code: &'static str,
    kind: &'static str,
    code: Option<&'static str>,
    description: &'static str,
    simplified: &'static str,
) -> CodeEntry {
    CodeEntry {
        status_code,
        kind,
        code,
        description,
        simplified,
    }
}

/// The codes a scenario may use, with UPS's words where known (research/carriers.md
/// §2.2); a code not listed renders as type `I` with its own number as description.
const CODES: [CodeEntry; 22] = [
    entry(
        "003",
        "M",
        Some("MP"),
        "Shipper created a label, UPS has not received the package yet.",
        "Label Created",
    ),
    entry(
        "004",
        "I",
        Some("IT"),
        "Package is in transit",
        "On the Way",
    ),
    entry(
        "005",
        "I",
        Some("DP"),
        "Departed from Facility",
        "On the Way",
    ),
    entry("011", "D", Some("FS"), "DELIVERED", "Delivered"),
    entry("012", "I", None, "Clearance in Progress", "On the Way"),
    entry(
        "013",
        "X",
        None,
        "An exception occurred. UPS is working to resolve it.",
        "Exception",
    ),
    entry(
        "017",
        "I",
        Some("ZQ"),
        "Held for Customer Pickup",
        "Ready for Pickup",
    ),
    entry("019", "X", None, "Delivery Rescheduled", "On the Way"),
    entry(
        "021",
        "I",
        Some("OT"),
        "Out For Delivery Today",
        "Out for Delivery",
    ),
    entry(
        "022",
        "X",
        None,
        "The receiver was not available for delivery. We'll make a second attempt the next business day.",
        "Delivery Attempted",
    ),
    entry(
        "025",
        "I",
        None,
        "Transferred to Local Post Office for Delivery",
        "On the Way",
    ),
    entry(
        "027",
        "X",
        None,
        "Delivery Address Change Requested",
        "Exception",
    ),
    entry("028", "I", None, "Delivery Address Changed", "On the Way"),
    entry(
        "029",
        "X",
        Some("AA"),
        "Exception: Action Required. Address Information Required.",
        "Exception",
    ),
    entry(
        "040",
        "D",
        Some("ZP"),
        "Delivered to UPS Access Point™. Awaiting customer pickup.",
        "Ready for Pickup",
    ),
    entry("044", "I", None, "On its way to UPS", "Label Created"),
    entry("048", "X", None, "Delay", "Delayed"),
    entry("051", "X", None, "Weather Delay", "Delayed"),
    entry("052", "X", None, "Emergency Delay", "Delayed"),
    entry("053", "X", None, "Delay: Emergency Conditions", "Delayed"),
    entry("054", "X", None, "Delivery Change Requested", "Exception"),
    entry(
        "071",
        "I",
        Some("YP"),
        "Preparing for Delivery Today",
        "On the Way",
    ),
];

const DELIVERED: &str = "011";

pub(super) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    router
        .route("/ups/security/v1/oauth/token", post(token))
        .route("/ups/api/track/v1/details/{inquiry_number}", get(track))
}

pub(super) fn classify(method: &str, rest: &[&str]) -> Option<&'static str> {
    match (method, rest) {
        ("POST", ["security", "v1", "oauth", "token"]) => Some(TOKEN),
        ("GET", ["api", "track", "v1", "details", number]) if !number.is_empty() => Some(TRACK),
        _ => None,
    }
}

/// A fault's status in UPS's error shape (`{"response":{"errors":[…]}}`, the same for
/// the token and the tracking calls).
pub(super) fn fault_response(
    operation: &str,
    status: StatusCode,
    _retry_after: Option<u64>,
) -> Response {
    let (code, message) = match status.as_u16() {
        429 => ("10429", "Too Many Requests"),
        401 if operation == TOKEN => ("10401", "ClientId is Invalid"),
        401 => ("250002", "Invalid Authentication Information."),
        403 => ("10403", "Blocked Merchant"),
        404 => ("TW0001", "Tracking Information Not Found"),
        503 => ("10503", "Resource is not available"),
        500..=599 => ("10500", "Internal server error"),
        _ => ("10400", "Invalid request"),
    };
    errors(status, code, message)
}

/// `POST /ups/security/v1/oauth/token`.
async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !content_type_is(&headers, "application/x-www-form-urlencoded") {
        return errors(
            StatusCode::BAD_REQUEST,
            "10400",
            "Invalid request: the body must be application/x-www-form-urlencoded",
        );
    }
    let expected = base64(format!("{CLIENT_ID}:{CLIENT_SECRET}").as_bytes());
    let basic_ok = header_text(&headers, header::AUTHORIZATION.as_str())
        .and_then(|value| value.split_once(' '))
        .is_some_and(|(scheme, credentials)| {
            scheme.eq_ignore_ascii_case("basic") && credentials.trim() == expected
        });
    if !basic_ok {
        return errors(StatusCode::UNAUTHORIZED, "10401", "ClientId is Invalid");
    }
    if form_field(&body, "grant_type").as_deref() != Some("client_credentials") {
        return errors(
            StatusCode::BAD_REQUEST,
            "10400",
            "Invalid/Unsupported grant_type",
        );
    }
    let (access_token, lifetime) = shared.issue_carrier_token("ups", TOKEN_LIFETIME);
    Json(json!({
        "token_type": "Bearer",
        "issued_at": shared.now().timestamp_millis().to_string(),
        "client_id": CLIENT_ID,
        "access_token": access_token,
        "scope": "",
        "expires_in": lifetime.to_string(),
        "refresh_count": "0",
        "status": "approved",
    }))
    .into_response()
}

/// `GET /ups/api/track/v1/details/{inquiryNumber}`.
async fn track(
    State(shared): State<Arc<Shared>>,
    Path(inquiry_number): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !bearer_token(&headers).is_some_and(|token| shared.carrier_token_valid("ups", token)) {
        return errors(
            StatusCode::UNAUTHORIZED,
            "250002",
            "Invalid Authentication Information.",
        );
    }
    for required in ["transid", "transactionsrc"] {
        if header_text(&headers, required).is_none_or(|v| v.trim().is_empty()) {
            let name = if required == "transid" {
                "transId"
            } else {
                "transactionSrc"
            };
            return errors(
                StatusCode::BAD_REQUEST,
                "10400",
                &format!("Missing or invalid header {name}"),
            );
        }
    }
    let number = inquiry_number.trim();
    // "Each inquiry number must be between 7 and 34 characters in length."
    if !(7..=34).contains(&number.chars().count()) {
        return errors(StatusCode::BAD_REQUEST, "TV1002", "Invalid inquiry number");
    }
    let now = shared.now();
    // UPS keeps one shipment per number: the latest label under a reused one.
    let Some(parcel) = shared.carrier_parcels("ups", number).pop() else {
        return Json(json!({
            "trackResponse": {"shipment": [{
                "warnings": [{"code": "TW0001", "message": "Tracking Information Not Found"}]
            }]}
        }))
        .into_response();
    };
    Json(json!({
        "trackResponse": {"shipment": [{
            "inquiryNumber": number,
            "package": [package(&parcel, number, now)]
        }]}
    }))
    .into_response()
}

fn package(parcel: &ScenarioParcel, number: &str, now: DateTime<Utc>) -> Value {
    let scans = parcel.scans_by(now);
    let mut package = Map::new();
    package.insert("trackingNumber".into(), json!(number));
    if let Some(latest) = scans.last() {
        let known = code_entry(&latest.code);
        package.insert(
            "currentStatus".into(),
            json!({
                "description": known.map_or("On the Way", |e| e.simplified),
                "code": latest.code,
                "simplifiedTextDescription": known.map_or("On the Way", |e| e.simplified),
            }),
        );
    }
    package.insert(
        "activity".into(),
        Value::Array(
            scans
                .iter()
                .rev()
                .map(|scan| activity(parcel, scan, now))
                .collect(),
        ),
    );
    // Dates and times at the destination, where the buyer reads them.
    let delivered = scans.iter().rev().find(|s| s.code.trim() == DELIVERED);
    let dated = match delivered {
        Some(scan) => Some(("DEL", "DEL", scan.at.resolve(now))),
        None => parcel
            .estimated_delivery
            .map(|eta| ("SDD", "CMT", eta.resolve(now))),
    };
    if let Some((date_type, time_type, at)) = dated {
        let local = parcel.destination.local(at);
        package.insert(
            "deliveryDate".into(),
            json!([{"type": date_type, "date": local.format("%Y%m%d").to_string()}]),
        );
        package.insert(
            "deliveryTime".into(),
            json!({"type": time_type, "endTime": local.format("%H%M%S").to_string()}),
        );
    }
    package.insert(
        "packageAddress".into(),
        json!([
            {"type": "ORIGIN", "address": address(&parcel.origin)},
            {"type": "DESTINATION", "address": address(&parcel.destination)},
        ]),
    );
    package.insert(
        "service".into(),
        json!({"description": parcel.service.as_deref().unwrap_or("UPS Ground")}),
    );
    package.insert("packageCount".into(), json!(1));
    Value::Object(package)
}

fn activity(parcel: &ScenarioParcel, scan: &ScenarioScan, now: DateTime<Utc>) -> Value {
    let at = scan.at.resolve(now);
    let place = parcel.place_of(scan);
    let local = place.local(at);
    let known = code_entry(&scan.code);
    let mut status = Map::new();
    status.insert("type".into(), json!(known.map_or("I", |e| e.kind)));
    if let Some(code) = scan.reason.as_deref().or(known.and_then(|e| e.code)) {
        status.insert("code".into(), json!(code));
    }
    status.insert("statusCode".into(), json!(scan.code.trim()));
    let description = scan
        .description
        .clone()
        .unwrap_or_else(|| known.map_or_else(|| scan.code.clone(), |e| e.description.to_owned()));
    status.insert("description".into(), json!(description));
    status.insert(
        "simplifiedTextDescription".into(),
        json!(known.map_or("On the Way", |e| e.simplified)),
    );
    json!({
        "date": local.format("%Y%m%d").to_string(),
        "time": local.format("%H%M%S").to_string(),
        "gmtDate": at.format("%Y%m%d").to_string(),
        "gmtTime": at.format("%H:%M:%S").to_string(),
        "gmtOffset": local.format("%:z").to_string(),
        "location": {"address": address(place)},
        "status": Value::Object(status),
        "logicalScan": false,
    })
}

fn address(place: &ScenarioPlace) -> Value {
    let mut address = Map::new();
    let mut put = |key: &str, value: &str| {
        if !value.trim().is_empty() {
            address.insert(key.to_owned(), json!(value));
        }
    };
    put("city", &place.city);
    put("stateProvince", place.state.as_deref().unwrap_or_default());
    put("postalCode", &place.postcode);
    put("countryCode", &place.country);
    put("country", &place.country);
    Value::Object(address)
}

fn code_entry(code: &str) -> Option<&'static CodeEntry> {
    CODES.iter().find(|e| e.status_code == code.trim())
}

/// UPS's error body, for the token and the tracking calls alike.
fn errors(status: StatusCode, code: &str, message: &str) -> Response {
    respond(
        status,
        Json(json!({"response": {"errors": [{"code": code, "message": message}]}})),
        &[],
    )
}

/// Standard base64 with padding (RFC 4648), for the HTTP Basic credentials.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_encode_as_rfc_4648_says() {
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn requests_classify_by_method_and_path() {
        assert_eq!(
            classify("POST", &["security", "v1", "oauth", "token"]),
            Some(TOKEN)
        );
        assert_eq!(
            classify(
                "GET",
                &["api", "track", "v1", "details", "1Z999AA10123456784"]
            ),
            Some(TRACK)
        );
        assert_eq!(classify("GET", &["security", "v1", "oauth", "token"]), None);
        assert_eq!(
            classify("GET", &["api", "track", "v1", "details", ""]),
            None
        );
    }

    #[test]
    fn every_listed_code_has_a_type_and_words() {
        for entry in &CODES {
            assert_eq!(entry.status_code.len(), 3);
            assert!(
                ["M", "I", "D", "X"].contains(&entry.kind),
                "{}",
                entry.status_code
            );
            assert!(!entry.description.is_empty() && !entry.simplified.is_empty());
        }
    }
}
