//! DPD's SOAP 1.1 web services, faked from `specs/carriers/dpd/LoginServiceV21.xsd`,
//! `Authentication20.xsd` and `ParcelLifecycleServiceV20.xsd` under `/dpd`:
//!
//! - `POST /dpd/services/LoginService/V2_1/` `getAuth(delisId, password,
//!   messageLanguage)` with [`DELIS_ID`] / [`PASSWORD`] → `getAuthResponse/return` with a
//!   token living a day and `authTokenExpires` in UTC without a zone (as DPD writes it).
//!   Wrong credentials: a SOAP fault with `authenticationFault`
//!   `DELICOM_ERR_AUTHENTICATION`.
//! - `POST /dpd/services/ParcelLifeCycleService/V2_0/` `getTrackingData(parcelLabelNumber)`
//!   with the `authentication` SOAP header. A token the sandbox issued but no longer
//!   accepts (expired, `Sandbox::expire_carrier_tokens`) gets `ERR_DELICOM_TOKEN_EXPIRED`,
//!   any other `ERR_DELICOM_TOKEN_INCORRECT`. An unknown parcel gets an empty
//!   `trackingresult`.
//!
//! The life cycle lists every step reached (scans carry DPD's status as their code:
//! `SHIPMENT`, `PickedUp`, `BetweenDepots`, `Depot`, `Courier`, `DeliveryFailure`,
//! `ReturningFromDelivery`, `ParcelShop`, `Delivered`), the last one `isCurrentStatus`,
//! then the standard steps still ahead with `statusHasBeenReached=false`, as DPD does. A
//! `SHIPMENT` step at the label time leads when no scan gives one. Dates are the place's
//! wall time without a zone (`8/17/2021 7:11:26 PM`), places `City (CC)`. Faults are
//! HTTP 500, as SOAP 1.1 has it. Like every sandbox module it is written from the
//! contract alone and must never use the connector's types or parsing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use chrono::{DateTime, Duration, Utc};

use super::super::Shared;
use super::{ScenarioParcel, ScenarioScan, respond};

/// The DELIS user id of the sandbox's DPD account.
pub(super) const DELIS_ID: &str = "sandboxdelis";
/// Its password.
pub(super) const PASSWORD: &str = "sandbox-dpd-password";

/// DPD auth tokens live a day.
const TOKEN_LIFETIME: i64 = 86_400;
const CUSTOMER_UID: &str = "sandboxdelis";
const DEPOT: &str = "0530";
const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const LOGIN_NS: &str = "http://dpd.com/common/service/types/LoginService/2.1";
const AUTHENTICATION_NS: &str = "http://dpd.com/common/service/types/Authentication/2.0";
const LIFECYCLE_NS: &str = "http://dpd.com/common/service/types/ParcelLifeCycleService/2.0";
/// What every token the sandbox issues for DPD starts with (`Shared::issue_carrier_token`).
const ISSUED_PREFIX: &str = "sandbox-dpd-token-";

/// The steps a parcel normally goes through, in order.
const STANDARD_PATH: [&str; 6] = [
    "SHIPMENT",
    "PickedUp",
    "BetweenDepots",
    "Depot",
    "Courier",
    "Delivered",
];

/// Each status with DPD's label and description.
const STATUSES: [(&str, &str, &str); 9] = [
    (
        "SHIPMENT",
        "Order information has been transmitted to DPD.",
        "The order information has been transmitted to DPD.",
    ),
    (
        "PickedUp",
        "Parcel handed to DPD",
        "DPD has received your parcel.",
    ),
    (
        "BetweenDepots",
        "In transit",
        "The parcel is at the parcel dispatch centre.",
    ),
    (
        "Depot",
        "At parcel delivery centre",
        "At parcel delivery centre.",
    ),
    (
        "Courier",
        "Parcel out for delivery",
        "The parcel has left the parcel delivery centre and is on its way to the consignee.",
    ),
    (
        "DeliveryFailure",
        "Unsuccessful delivery",
        "Unfortunately we have not been able to deliver your parcel.",
    ),
    (
        "ReturningFromDelivery",
        "Back at the depot",
        "After an unsuccessful delivery attempt the parcel is back at the recipient depot.",
    ),
    (
        "ParcelShop",
        "Delivered to a Pickup parcelshop",
        "Delivered by driver to Pickup parcelshop",
    ),
    ("Delivered", "Delivered", "Your parcel has been delivered."),
];

pub(super) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    router
        .route("/dpd/services/LoginService/V2_1/", post(login))
        .route("/dpd/services/LoginService/V2_1", post(login))
        .route("/dpd/services/ParcelLifeCycleService/V2_0/", post(tracking))
        .route("/dpd/services/ParcelLifeCycleService/V2_0", post(tracking))
}

pub(super) fn classify(method: &str, rest: &[&str]) -> Option<&'static str> {
    match (method, rest) {
        (
            "POST",
            ["services", "LoginService", "V2_1"] | ["services", "LoginService", "V2_1", ""],
        ) => Some("dpd.login"),
        (
            "POST",
            ["services", "ParcelLifeCycleService", "V2_0"]
            | ["services", "ParcelLifeCycleService", "V2_0", ""],
        ) => Some("dpd.track"),
        _ => None,
    }
}

/// A fault's answer: a SOAP server fault at the fault's status.
pub(super) fn fault_response(
    _operation: &str,
    status: StatusCode,
    _retry_after: Option<u64>,
) -> Response {
    soap_fault(
        status,
        "soap:Server",
        status.canonical_reason().unwrap_or("Fault occured"),
        None,
    )
}

/// `POST /dpd/services/LoginService/V2_1/`.
async fn login(State(state): State<Arc<Shared>>, body: Bytes) -> Response {
    let envelope = match read_envelope(&body) {
        Ok(envelope) => envelope,
        Err(problem) => return client_fault(&problem),
    };
    let Some(get_auth) = envelope.body_child(LOGIN_NS, "getAuth") else {
        return client_fault("The SOAP Body holds no LoginService 2.1 getAuth.");
    };
    let (Some(delis_id), Some(password), Some(_language)) = (
        get_auth.unqualified_text("delisId"),
        get_auth.unqualified_text("password"),
        get_auth.unqualified_text("messageLanguage"),
    ) else {
        return client_fault("getAuth needs delisId, password and messageLanguage.");
    };
    if delis_id != DELIS_ID || password != PASSWORD {
        return authentication_fault(
            "DELICOM_ERR_AUTHENTICATION",
            "Authentication failure, check delisId and password.",
        );
    }
    let (token, lifetime) = state.issue_carrier_token("dpd", TOKEN_LIFETIME);
    let expires = state.now() + Duration::seconds(lifetime);
    let answer = format!(
        concat!(
            r#"<getAuthResponse xmlns="{ns}"><return>"#,
            "<delisId>{delis}</delisId><customerUid>{uid}</customerUid><authToken>{token}</authToken>",
            "<depot>{depot}</depot><authTokenExpires>{expires}</authTokenExpires>",
            "</return></getAuthResponse>"
        ),
        ns = LOGIN_NS,
        delis = escape(DELIS_ID),
        uid = escape(CUSTOMER_UID),
        token = escape(&token),
        depot = DEPOT,
        expires = expires.format("%Y-%m-%dT%H:%M:%S%.3f"),
    );
    soap_answer(StatusCode::OK, &answer)
}

/// `POST /dpd/services/ParcelLifeCycleService/V2_0/`.
async fn tracking(State(state): State<Arc<Shared>>, body: Bytes) -> Response {
    let envelope = match read_envelope(&body) {
        Ok(envelope) => envelope,
        Err(problem) => return client_fault(&problem),
    };
    let authentication = envelope
        .child(SOAP_NS, "Header")
        .and_then(|h| h.child(AUTHENTICATION_NS, "authentication"));
    let Some(authentication) = authentication else {
        return authentication_fault(
            "DELICOM_ERR_AUTHENTICATION",
            "Authentication failure: the authentication header is missing.",
        );
    };
    let (Some(delis_id), Some(token), Some(_language)) = (
        authentication.unqualified_text("delisId"),
        authentication.unqualified_text("authToken"),
        authentication.unqualified_text("messageLanguage"),
    ) else {
        return authentication_fault(
            "DELICOM_ERR_AUTHENTICATION",
            "Authentication failure: delisId, authToken and messageLanguage are required.",
        );
    };
    if delis_id != DELIS_ID {
        return authentication_fault(
            "DELICOM_ERR_AUTHENTICATION",
            "Authentication failure, check delisId and password.",
        );
    }
    if !state.carrier_token_valid("dpd", &token) {
        return if token.starts_with(ISSUED_PREFIX) {
            authentication_fault(
                "ERR_DELICOM_TOKEN_EXPIRED",
                "The authToken has expired; request a new one with getAuth.",
            )
        } else {
            authentication_fault(
                "ERR_DELICOM_TOKEN_INCORRECT",
                "The authToken is not recognised.",
            )
        };
    }
    let Some(number) = envelope
        .body_child(LIFECYCLE_NS, "getTrackingData")
        .and_then(|request| request.unqualified_text("parcelLabelNumber"))
        .filter(|n| !n.is_empty())
    else {
        return client_fault("The SOAP Body holds no getTrackingData with a parcelLabelNumber.");
    };
    let now = state.now();
    // A reused number: DPD shows its latest parcel.
    let result = match state.carrier_parcels("dpd", &number).last() {
        Some(parcel) => tracking_result(parcel, now),
        None => "<trackingresult/>".to_owned(),
    };
    soap_answer(
        StatusCode::OK,
        &format!(
            r#"<getTrackingDataResponse xmlns="{LIFECYCLE_NS}">{result}</getTrackingDataResponse>"#
        ),
    )
}

/// `trackingresult`: shipment info, the steps reached, then those still ahead.
fn tracking_result(parcel: &ScenarioParcel, now: DateTime<Utc>) -> String {
    let label_scan = parcel.label_scan("SHIPMENT");
    let scans = parcel.scans_by(now);
    let mut reached: Vec<&ScenarioScan> = Vec::new();
    if !scans
        .iter()
        .any(|s| s.code.eq_ignore_ascii_case("SHIPMENT"))
    {
        reached.push(&label_scan);
    }
    reached.extend(scans);
    let furthest = reached
        .iter()
        .filter_map(|s| {
            STANDARD_PATH
                .iter()
                .position(|p| p.eq_ignore_ascii_case(&s.code))
        })
        .max()
        .unwrap_or(0);
    let mut out = String::from("<trackingresult>");
    out.push_str(&shipment_info(parcel));
    let last = reached.len().saturating_sub(1);
    for (index, scan) in reached.iter().enumerate() {
        let place = parcel.place_of(scan);
        let local = place.local(scan.at.resolve(now));
        let location = if place.city.is_empty() {
            format!("({})", place.country)
        } else {
            format!("{} ({})", place.city, place.country)
        };
        out.push_str(&status_info(
            &scan.code,
            scan.description.as_deref(),
            true,
            index == last,
            Some((
                &location,
                &local.format("%-m/%-d/%Y %-I:%M:%S %p").to_string(),
            )),
        ));
    }
    for ahead in STANDARD_PATH.iter().skip(furthest + 1) {
        out.push_str(&status_info(ahead, None, false, false, None));
    }
    out.push_str("</trackingresult>");
    out
}

/// `shipmentInfo`, with the service when the scenario names one.
fn shipment_info(parcel: &ScenarioParcel) -> String {
    let service = parcel
        .service
        .as_deref()
        .map(|s| {
            format!(
                "<serviceDescription>{}{}</serviceDescription>",
                content_line("label", "Your DPD service:", false),
                content_line("content", s, false)
            )
        })
        .unwrap_or_default();
    let (_, label, description) = status_words("SHIPMENT");
    format!(
        concat!(
            "<shipmentInfo>{service}<status>SHIPMENT</status>{label}",
            "<description>{description}</description>",
            "<statusHasBeenReached>true</statusHasBeenReached><isCurrentStatus>false</isCurrentStatus>",
            "<showContactInfo>false</showContactInfo></shipmentInfo>"
        ),
        service = service,
        label = content_line("label", label, true),
        description = content_line("content", description, false),
    )
}

/// One `StatusInfo`, elements in the XSD's order.
fn status_info(
    status: &str,
    description: Option<&str>,
    reached: bool,
    current: bool,
    where_when: Option<(&str, &str)>,
) -> String {
    let (_, label, default_description) = status_words(status);
    let mut out = format!(
        concat!(
            "<statusInfo><status>{status}</status>{label}<description>{description}</description>",
            "<statusHasBeenReached>{reached}</statusHasBeenReached>",
            "<isCurrentStatus>{current}</isCurrentStatus><showContactInfo>{contact}</showContactInfo>"
        ),
        status = escape(status),
        label = content_line("label", label, true),
        description = content_line("content", description.unwrap_or(default_description), false),
        reached = reached,
        current = current,
        contact = reached,
    );
    if let Some((location, date)) = where_when {
        out.push_str(&content_line("location", location, true));
        out.push_str(&content_line("date", date, true));
    }
    out.push_str("</statusInfo>");
    out
}

/// A `ContentLine` element named `name`.
fn content_line(name: &str, text: &str, bold: bool) -> String {
    format!(
        "<{name}><content>{}</content><bold>{bold}</bold><paragraph>false</paragraph></{name}>",
        escape(text)
    )
}

fn status_words(status: &str) -> (&'static str, &'static str, &'static str) {
    STATUSES
        .iter()
        .find(|(s, _, _)| s.eq_ignore_ascii_case(status))
        .copied()
        .unwrap_or(("", "Parcel status", "The parcel status has changed."))
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// A SOAP envelope around `body` (which declares its own namespace).
fn soap_answer(status: StatusCode, body: &str) -> Response {
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body>{body}</soap:Body></soap:Envelope>"#
    );
    respond(
        status,
        xml,
        &[(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
    )
}

/// A SOAP 1.1 fault; `detail` is already XML.
fn soap_fault(status: StatusCode, code: &str, text: &str, detail: Option<&str>) -> Response {
    let detail = detail
        .map(|d| format!("<detail>{d}</detail>"))
        .unwrap_or_default();
    soap_answer(
        status,
        &format!(
            "<soap:Fault><faultcode>{code}</faultcode><faultstring>{}</faultstring>{detail}</soap:Fault>",
            escape(text)
        ),
    )
}

/// DPD's `authenticationFault` (the login or the token), as an HTTP 500 SOAP fault.
fn authentication_fault(code: &str, message: &str) -> Response {
    let detail = format!(
        r#"<ns:authenticationFault xmlns:ns="{AUTHENTICATION_NS}"><errorCode>{}</errorCode><errorMessage>{}</errorMessage></ns:authenticationFault>"#,
        escape(code),
        escape(message)
    );
    soap_fault(
        StatusCode::INTERNAL_SERVER_ERROR,
        "soap:Server",
        "Fault occured",
        Some(&detail),
    )
}

/// The request itself is wrong.
fn client_fault(problem: &str) -> Response {
    soap_fault(
        StatusCode::INTERNAL_SERVER_ERROR,
        "soap:Client",
        problem,
        None,
    )
}

/// An element with its namespace (`None`: unqualified) and text.
#[derive(Debug, Default)]
struct Element {
    namespace: Option<String>,
    name: String,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, namespace: &str, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name == name && c.namespace.as_deref() == Some(namespace))
    }

    /// A child without a namespace, as the XSDs' `form="unqualified"` elements are.
    fn unqualified_text(&self, name: &str) -> Option<String> {
        self.children
            .iter()
            .find(|c| c.name == name && c.namespace.is_none())
            .map(|c| c.text.trim().to_owned())
    }

    /// The SOAP Body's `namespace:name` child.
    fn body_child(&self, namespace: &str, name: &str) -> Option<&Element> {
        self.child(SOAP_NS, "Body")?.child(namespace, name)
    }
}

/// The SOAP 1.1 envelope of a request.
fn read_envelope(body: &[u8]) -> Result<Element, String> {
    let text = std::str::from_utf8(body).map_err(|_| "The request is not UTF-8.".to_owned())?;
    let root = parse(text)?;
    if root.name != "Envelope" || root.namespace.as_deref() != Some(SOAP_NS) {
        return Err("The request is not a SOAP 1.1 Envelope.".into());
    }
    Ok(root)
}

fn parse(text: &str) -> Result<Element, String> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    let mut reader = quick_xml::reader::NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    let broken = |e: &dyn std::fmt::Display| format!("The request is not well-formed XML: {e}");
    loop {
        let (namespace, event) = reader.read_resolved_event().map_err(|e| broken(&e))?;
        let namespace = match namespace {
            ResolveResult::Bound(ns) => Some(String::from_utf8_lossy(ns.as_ref()).into_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => {
                return Err(format!(
                    "Unknown namespace prefix {}.",
                    String::from_utf8_lossy(&prefix)
                ));
            }
        };
        let element = |start: &quick_xml::events::BytesStart<'_>| Element {
            namespace: namespace.clone(),
            name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
            ..Element::default()
        };
        match event {
            Event::Start(start) => stack.push(element(&start)),
            Event::Empty(start) => {
                let done = element(&start);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&t.decode().map_err(|e| broken(&e))?);
                }
            }
            Event::CData(c) => {
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&c.decode().map_err(|e| broken(&e))?);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| broken(&e))? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| broken(&e))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("Unknown entity &{name};."))?
                            .to_owned()
                    }
                };
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&resolved);
                }
            }
            Event::End(_) => {
                let done = stack
                    .pop()
                    .ok_or_else(|| broken(&"an end tag without a start"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    root.ok_or_else(|| "The request holds no XML element.".to_owned())
}
