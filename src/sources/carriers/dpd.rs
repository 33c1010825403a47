//! DPD's SOAP 1.1 web services (`specs/carriers/dpd/*.xsd`): `LoginService 2.1 getAuth`
//! trades the DELIS id and password for an auth token (cached until shortly before its
//! `authTokenExpires`, which DPD states in UTC; DPD allows only a few logins a day), and
//! `ParcelLifeCycleService 2.0 getTrackingData` answers one parcel per call with the
//! token in the `authentication` SOAP header. A token DPD no longer accepts
//! (`ERR_DELICOM_TOKEN_EXPIRED`, `…_INCORRECT`) costs one new login, then the call again.
//!
//! The answer lists the parcel's life-cycle steps, future ones included: only steps with
//! `statusHasBeenReached=true` are events, and only the `isCurrentStatus=true` one is
//! where the parcel is now. Step dates are local wall times without a zone (`8/17/2021
//! 7:11:26 PM`), resolved by the step's country (`Puurs (BE)`), else left unresolved.
//! An empty result (or DPD's service fault) is a parcel DPD does not know yet.
//!
//! It must never log or return the password or an auth token.

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::call;
use super::token::{FetchedToken, TokenCache};
use super::{
    Carrier, CarrierClient, CarrierError, CarrierEvent, CarrierParcel, EventLocation, EventTime,
    ExceptionReason, ParcelQuery, TrackOutcome,
};
use crate::clock::SharedClock;
use crate::http::{self, Reply, RetryPolicy, UpstreamError};
use crate::model::TrackingStatus;

const LOGIN_PATH: &str = "services/LoginService/V2_1/";
const TRACKING_PATH: &str = "services/ParcelLifeCycleService/V2_0/";
const SOAP_ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const LOGIN_NS: &str = "http://dpd.com/common/service/types/LoginService/2.1";
const AUTHENTICATION_NS: &str = "http://dpd.com/common/service/types/Authentication/2.0";
const LIFECYCLE_NS: &str = "http://dpd.com/common/service/types/ParcelLifeCycleService/2.0";
const LOGIN_ACTION: &str = "http://dpd.com/common/service/types/LoginService/2.1/getAuth";
const TRACKING_ACTION: &str =
    "http://dpd.com/common/service/types/ParcelLifeCycleService/2.0/getTrackingData";

/// A token is kept at least this long, whatever `authTokenExpires` says: a clock that
/// disagrees with DPD's must not turn every call into one of the day's few logins.
const SHORTEST_TOKEN_LIFE: Duration = Duration::minutes(10);

/// DPD Germany's web services (stage: `https://public-ws-stage.dpd.com`; Benelux:
/// `https://wsshipper.dpd.be/soap`, `https://wsshipper.dpd.nl/soap`).
pub const DEFAULT_BASE_URL: &str = "https://public-ws.dpd.com";

/// How to reach DPD. `Debug` masks the password.
#[derive(Clone)]
pub struct DpdSettings {
    /// Login is `{base_url}/services/LoginService/V2_1/`, tracking
    /// `{base_url}/services/ParcelLifeCycleService/V2_0/` ([`DEFAULT_BASE_URL`]).
    pub base_url: String,
    /// The DELIS user id.
    pub delis_id: String,
    pub password: SecretString,
    /// `en_EN` unless set (empty): the step dates are read in its format.
    pub message_language: String,
}

impl DpdSettings {
    /// DPD Germany with this login, in English.
    pub fn new(delis_id: impl Into<String>, password: SecretString) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            delis_id: delis_id.into(),
            password,
            message_language: "en_EN".to_owned(),
        }
    }
}

impl std::fmt::Debug for DpdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdSettings")
            .field("base_url", &call::without_userinfo(&self.base_url, ""))
            .field("delis_id", &self.delis_id)
            .field("password", &"***")
            .field("message_language", &self.message_language)
            .finish()
    }
}

pub struct DpdClient {
    http: reqwest::Client,
    login_url: Url,
    tracking_url: Url,
    delis_id: String,
    password: SecretString,
    message_language: String,
    clock: SharedClock,
    tokens: TokenCache,
    retry: RetryPolicy,
}

impl std::fmt::Debug for DpdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdClient")
            .field("delis_id", &self.delis_id)
            .field(
                "tracking_url",
                &call::without_userinfo(self.tracking_url.as_str(), ""),
            )
            .finish_non_exhaustive()
    }
}

/// What a tracking call came back with.
enum Tracked {
    Outcome(Box<TrackOutcome>),
    /// DPD refused the auth token (expired, unknown): worth one new login.
    TokenRefused(String),
}

impl DpdClient {
    pub fn new(
        settings: DpdSettings,
        clock: SharedClock,
        retry: RetryPolicy,
    ) -> Result<Self, CarrierError> {
        let endpoint = |path: &str| {
            call::endpoint(&settings.base_url, path, Carrier::Dpd)
                .map_err(CarrierError::upstream(Carrier::Dpd, "configure"))
        };
        let login_url = endpoint(LOGIN_PATH)?;
        let tracking_url = endpoint(TRACKING_PATH)?;
        let http = call::http_client(Carrier::Dpd, "configure")?;
        let message_language = match settings.message_language.trim() {
            "" => "en_EN".to_owned(),
            language => language.to_owned(),
        };
        Ok(Self {
            http,
            login_url,
            tracking_url,
            delis_id: settings.delis_id,
            password: settings.password,
            message_language,
            tokens: TokenCache::new(clock.clone()),
            clock,
            retry,
        })
    }

    async fn login(&self) -> Result<FetchedToken, UpstreamError> {
        let envelope = format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<soapenv:Envelope xmlns:soapenv="{soap}" xmlns:ns="{login}">"#,
                "<soapenv:Header/><soapenv:Body><ns:getAuth>",
                "<delisId>{delis}</delisId><password>{password}</password>",
                "<messageLanguage>{language}</messageLanguage>",
                "</ns:getAuth></soapenv:Body></soapenv:Envelope>"
            ),
            soap = SOAP_ENVELOPE_NS,
            login = LOGIN_NS,
            delis = escape(&self.delis_id),
            password = escape(self.password.expose_secret()),
            language = escape(&self.message_language),
        );
        let reply = http::send(self.soap_post(&self.login_url, LOGIN_ACTION, envelope)).await?;
        let answer = read_soap(&reply, "DPD login response")?;
        let body = match answer {
            Soap::Body(body) => body,
            Soap::Fault(fault) if fault.authentication => {
                return Err(UpstreamError::Credentials(format!(
                    "DPD refused the login: {}",
                    fault.describe()
                )));
            }
            Soap::Fault(fault) => return Err(fault.into_error(&reply)),
        };
        read_login(&body, self.clock.now())
    }

    fn soap_post(&self, url: &Url, action: &str, envelope: String) -> reqwest::RequestBuilder {
        self.http
            .post(url.clone())
            .header(CONTENT_TYPE, "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{action}\""))
            .body(envelope)
    }

    async fn tracking_call(
        &self,
        token: &SecretString,
        number: &str,
    ) -> Result<Tracked, UpstreamError> {
        let envelope = format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<soapenv:Envelope xmlns:soapenv="{soap}" xmlns:ns="{auth}" xmlns:ns1="{lifecycle}">"#,
                "<soapenv:Header><ns:authentication>",
                "<delisId>{delis}</delisId><authToken>{token}</authToken>",
                "<messageLanguage>{language}</messageLanguage>",
                "</ns:authentication></soapenv:Header>",
                "<soapenv:Body><ns1:getTrackingData><parcelLabelNumber>{number}</parcelLabelNumber>",
                "</ns1:getTrackingData></soapenv:Body></soapenv:Envelope>"
            ),
            soap = SOAP_ENVELOPE_NS,
            auth = AUTHENTICATION_NS,
            lifecycle = LIFECYCLE_NS,
            delis = escape(&self.delis_id),
            token = escape(token.expose_secret()),
            language = escape(&self.message_language),
            number = escape(number),
        );
        let reply =
            http::send(self.soap_post(&self.tracking_url, TRACKING_ACTION, envelope)).await?;
        // A SOAP fault arrives as HTTP 500: read it before judging the status.
        match read_soap(&reply, "DPD tracking response")? {
            Soap::Fault(fault) if !fault.authentication && fault.service_code.is_none() => {
                Err(fault.into_error(&reply))
            }
            _ => classify_tracking(&reply.body, number),
        }
    }

    async fn track_one(&self, query: &ParcelQuery) -> Result<TrackOutcome, CarrierError> {
        let track_failed = || CarrierError::upstream(Carrier::Dpd, "track");
        let Some(number) = sendable_number(&query.tracking_number) else {
            return Ok(TrackOutcome::Rejected {
                tracking_number: query.tracking_number.clone(),
                detail: "not a DPD parcel number (8 to 35 letters and digits)".to_owned(),
            });
        };
        let number = number.as_str();
        // A token expired or forgotten before the time DPD gave costs one new login, once.
        let tracked = call::with_token(
            &self.tokens,
            || {
                self.tokens
                    .get_for(Carrier::Dpd, "login", self.retry, || self.login())
            },
            |token| async move {
                http::with_retry(self.retry, "dpd.track", || {
                    self.tracking_call(&token, number)
                })
                .await
                .map_err(track_failed())
            },
            |tracked: &Tracked| matches!(tracked, Tracked::TokenRefused(_)),
        )
        .await?;
        match tracked {
            Tracked::Outcome(outcome) => Ok(relabel(*outcome, &query.tracking_number)),
            Tracked::TokenRefused(detail) => Err(track_failed()(UpstreamError::Credentials(
                format!("DPD refused a freshly issued auth token: {detail}"),
            ))),
        }
    }
}

#[async_trait]
impl CarrierClient for DpdClient {
    fn carrier(&self) -> Carrier {
        Carrier::Dpd
    }

    fn batch_limit(&self) -> usize {
        1
    }

    async fn track(&self, batch: &[ParcelQuery]) -> Result<Vec<TrackOutcome>, CarrierError> {
        let mut outcomes = Vec::new();
        for query in batch {
            outcomes.push(self.track_one(query).await?);
        }
        Ok(outcomes)
    }
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// The number without spaces; `None` when it cannot be a DPD parcel label number.
fn sendable_number(number: &str) -> Option<String> {
    let number: String = number.chars().filter(|c| !c.is_whitespace()).collect();
    let fits =
        (8..=35).contains(&number.len()) && number.chars().all(|c| c.is_ascii_alphanumeric());
    fits.then_some(number)
}

/// The outcome under the number as the caller spelled it.
fn relabel(outcome: TrackOutcome, asked: &str) -> TrackOutcome {
    match outcome {
        TrackOutcome::Found(mut parcel) => {
            parcel.tracking_number = asked.to_owned();
            TrackOutcome::Found(parcel)
        }
        TrackOutcome::NotFound { detail, .. } => TrackOutcome::NotFound {
            tracking_number: asked.to_owned(),
            detail,
        },
        TrackOutcome::Rejected { detail, .. } => TrackOutcome::Rejected {
            tracking_number: asked.to_owned(),
            detail,
        },
    }
}

/// `getAuthResponse/return`: the token and how long it lives from `now`.
fn read_login(body: &Node, now: DateTime<Utc>) -> Result<FetchedToken, UpstreamError> {
    let malformed = |reason: &str| UpstreamError::Malformed {
        what: "DPD login response".into(),
        reason: reason.to_owned(),
    };
    let login = body
        .child("getAuthResponse")
        .and_then(|r| r.child("return"))
        .ok_or_else(|| malformed("no getAuthResponse/return"))?;
    let token = login
        .child_text("authToken")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| malformed("no authToken"))?;
    let expires_text = login
        .child_text("authTokenExpires")
        .ok_or_else(|| malformed("no authTokenExpires"))?;
    let expires = parse_expiry(&expires_text)
        .ok_or_else(|| malformed("authTokenExpires is no xs:dateTime"))?;
    Ok(FetchedToken {
        token: SecretString::from(token),
        expires_in: (expires - now).max(SHORTEST_TOKEN_LIFE),
    })
}

/// `authTokenExpires`: DPD states it in UTC, with or without the `Z`.
fn parse_expiry(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// The tracking answer read whole: an outcome, or a refused token.
fn classify_tracking(body: &str, number: &str) -> Result<Tracked, UpstreamError> {
    let malformed = |reason: String| UpstreamError::Malformed {
        what: "DPD tracking response".into(),
        reason,
    };
    let envelope = parse_xml(body).map_err(malformed)?;
    let soap_body = soap_body(&envelope).map_err(|e| malformed(e.to_owned()))?;
    if let Some(fault) = soap_body.child("Fault") {
        let fault = SoapFault::read(fault);
        if fault.authentication {
            return Ok(Tracked::TokenRefused(fault.describe()));
        }
        // DPD's own fault for this parcel: it has nothing to show for the number.
        return Ok(Tracked::Outcome(Box::new(TrackOutcome::NotFound {
            tracking_number: number.to_owned(),
            detail: fault.describe(),
        })));
    }
    let result = soap_body
        .child("getTrackingDataResponse")
        .and_then(|r| r.child("trackingresult"))
        .ok_or_else(|| malformed("no getTrackingDataResponse/trackingresult".into()))?;
    read_tracking_result(result, number)
        .map(|outcome| Tracked::Outcome(Box::new(outcome)))
        .map_err(malformed)
}

/// Reads a `getTrackingData` SOAP answer (or its fault) about `tracking_number`. A
/// refused auth token is a credentials error here; the client logs in again instead.
pub fn parse_tracking_response(
    body: &str,
    tracking_number: &str,
) -> Result<Vec<TrackOutcome>, UpstreamError> {
    match classify_tracking(body, tracking_number)? {
        Tracked::Outcome(outcome) => Ok(vec![*outcome]),
        Tracked::TokenRefused(detail) => Err(UpstreamError::Credentials(detail)),
    }
}

fn read_tracking_result(result: &Node, number: &str) -> Result<TrackOutcome, String> {
    let mut events = Vec::new();
    let mut current = None;
    for (index, step) in result.children_named("statusInfo").enumerate() {
        let reached =
            flag(step, "statusHasBeenReached").map_err(|e| format!("statusInfo[{index}]: {e}"))?;
        let is_current =
            flag(step, "isCurrentStatus").map_err(|e| format!("statusInfo[{index}]: {e}"))?;
        // Steps still ahead are DPD's plan for the parcel, not something that happened.
        if !reached {
            continue;
        }
        let Some(event) = read_step(step).map_err(|e| format!("statusInfo[{index}]: {e}"))? else {
            continue;
        };
        if is_current {
            current = Some(event.clone());
        }
        events.push(event);
    }
    if events.is_empty() {
        return Ok(TrackOutcome::NotFound {
            tracking_number: number.to_owned(),
            detail: "DPD lists no step reached for this parcel".to_owned(),
        });
    }
    let ship_date = events
        .iter()
        .find(|e| e.raw_code.eq_ignore_ascii_case("SHIPMENT"))
        .map(|e| e.at.local.date());
    let service = result
        .child("shipmentInfo")
        .and_then(|info| info.child("serviceDescription"))
        .map(content_item_text)
        .filter(|s| !s.is_empty());
    Ok(TrackOutcome::Found(CarrierParcel {
        tracking_number: number.to_owned(),
        carrier_shipment_id: None,
        ship_date,
        service,
        events,
        current,
        estimated_delivery: None,
    }))
}

/// A required `xs:boolean` child.
fn flag(step: &Node, name: &str) -> Result<bool, String> {
    match step.child_text(name).as_deref().map(str::trim) {
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(format!("{name} is {other:?}, no xs:boolean")),
        None => Err(format!("no {name}")),
    }
}

/// A reached step as an event; `None` (with a warning) when DPD gave it no date.
fn read_step(step: &Node) -> Result<Option<CarrierEvent>, String> {
    let raw_code = step
        .child_text("status")
        .unwrap_or_default()
        .trim()
        .to_owned();
    if raw_code.is_empty() {
        return Err("a step without a status".into());
    }
    let location = step
        .child("location")
        .and_then(|l| l.child_text("content"))
        .map(|text| read_location(&text))
        .unwrap_or_default();
    let Some(date_text) = step
        .child("date")
        .and_then(|d| d.child_text("content"))
        .filter(|d| !d.trim().is_empty())
    else {
        tracing::warn!(status = %raw_code, "DPD step without a date skipped");
        return Ok(None);
    };
    let local = parse_step_date(&date_text)
        .ok_or_else(|| format!("date {date_text:?} is in no known DPD format"))?;
    let description = step
        .child("description")
        .map(content_item_text)
        .unwrap_or_default();
    let label = step
        .child("label")
        .and_then(|l| l.child_text("content"))
        .unwrap_or_default();
    let text = if description.is_empty() {
        label.trim().to_owned()
    } else {
        description
    };
    let (status, reason) = map_status(&raw_code);
    Ok(Some(CarrierEvent {
        at: EventTime::at_location(local, &location),
        status,
        reason,
        raw_code,
        text,
        location,
        correction: false,
    }))
}

/// The lines of a `ContentItem`, joined.
fn content_item_text(item: &Node) -> String {
    item.children_named("content")
        .filter_map(|line| line.child_text("content"))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `Puurs (BE)` → city Puurs, country BE; anything else is the city.
fn read_location(text: &str) -> EventLocation {
    let text = text.trim();
    let parsed = text
        .strip_suffix(')')
        .and_then(|rest| rest.rsplit_once('('))
        .map(|(city, country)| (city.trim(), country.trim()))
        .filter(|(_, country)| {
            country.len() == 2 && country.chars().all(|c| c.is_ascii_alphabetic())
        });
    match parsed {
        Some((city, country)) => EventLocation {
            city: (!city.is_empty()).then(|| city.to_owned()),
            country: Some(country.to_ascii_uppercase()),
            ..EventLocation::default()
        },
        None => EventLocation {
            city: (!text.is_empty()).then(|| text.to_owned()),
            ..EventLocation::default()
        },
    }
}

/// A step's local wall time: `8/17/2021 7:11:26 PM` (English), `17.08.2021 19:11:26`
/// (German) or ISO.
fn parse_step_date(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    [
        "%m/%d/%Y %I:%M:%S %p",
        "%m/%d/%Y %I:%M %p",
        "%d.%m.%Y %H:%M:%S",
        "%d.%m.%Y %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
    ]
    .into_iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
}

/// A DPD life-cycle status (`statusInfo.status`) in nightdesk's terms.
pub fn map_status(status: &str) -> (TrackingStatus, Option<ExceptionReason>) {
    use TrackingStatus as S;
    match status.trim().to_ascii_lowercase().as_str() {
        "shipment" => (S::LabelCreated, None),
        "pickedup" | "betweendepots" | "depot" => (S::InTransit, None),
        "courier" => (S::OutForDelivery, None),
        // Back at the depot after a failed attempt: another attempt follows.
        "deliveryfailure" | "returningfromdelivery" => (S::DeliveryAttempted, None),
        "parcelshop" => (S::AvailableForPickup, None),
        "delivered" => (S::Delivered, None),
        _ => (S::Unknown, None),
    }
}

/// A SOAP answer: its Body, or its Fault.
enum Soap {
    Body(Node),
    Fault(SoapFault),
}

/// Reads a SOAP reply. A non-SOAP answer is an error status (or `Malformed` on a 2xx).
fn read_soap(reply: &Reply, what: &str) -> Result<Soap, UpstreamError> {
    let parsed = parse_xml(&reply.body).and_then(|envelope| {
        let body = soap_body(&envelope)?.clone();
        Ok(body)
    });
    match parsed {
        Ok(body) => match body.child("Fault") {
            Some(fault) => Ok(Soap::Fault(SoapFault::read(fault))),
            None if reply.status.is_success() => Ok(Soap::Body(body)),
            None => Err(reply.error("a SOAP answer without a fault")),
        },
        Err(reason) if reply.status.is_success() => Err(UpstreamError::Malformed {
            what: what.to_owned(),
            reason,
        }),
        Err(_) => Err(reply.error(&http::summarize(&reply.body))),
    }
}

fn soap_body(envelope: &Node) -> Result<&Node, String> {
    if envelope.name != "Envelope" {
        return Err(format!("the root is {}, no SOAP Envelope", envelope.name));
    }
    envelope
        .child("Body")
        .ok_or_else(|| "no SOAP Body".to_owned())
}

/// A SOAP 1.1 fault and DPD's detail: `authenticationFault` (the login or the token)
/// or the service's `faults`.
struct SoapFault {
    fault_code: String,
    fault_string: String,
    authentication: bool,
    service_code: Option<String>,
    detail_code: Option<String>,
    detail_message: Option<String>,
}

impl SoapFault {
    fn read(fault: &Node) -> Self {
        let detail = fault.child("detail");
        let authentication = detail.and_then(|d| d.child("authenticationFault"));
        let service = detail.and_then(|d| d.child("faults"));
        let (detail_code, detail_message) = match (authentication, service) {
            (Some(a), _) => (a.child_text("errorCode"), a.child_text("errorMessage")),
            (None, Some(s)) => (s.child_text("faultCode"), s.child_text("message")),
            (None, None) => (None, None),
        };
        Self {
            fault_code: fault.child_text("faultcode").unwrap_or_default(),
            fault_string: fault.child_text("faultstring").unwrap_or_default(),
            authentication: authentication.is_some(),
            service_code: service.map(|_| detail_code.clone().unwrap_or_default()),
            detail_code,
            detail_message,
        }
    }

    /// `code: message`, DPD's detail when there is one.
    fn describe(&self) -> String {
        let code = self
            .detail_code
            .as_deref()
            .unwrap_or(&self.fault_code)
            .trim();
        let message = self
            .detail_message
            .as_deref()
            .unwrap_or(&self.fault_string)
            .trim();
        http::summarize(&format!("{code}: {message}"))
    }

    /// A fault that is no DPD verdict: the server failed (retryable at its status) or
    /// refused the request as malformed (no retry helps).
    fn into_error(self, reply: &Reply) -> UpstreamError {
        let client_fault = self
            .fault_code
            .rsplit(':')
            .next()
            .is_some_and(|c| c.eq_ignore_ascii_case("Client"));
        let status = if client_fault && reply.status == StatusCode::INTERNAL_SERVER_ERROR {
            // SOAP 1.1 sends every fault as 500; a Client fault is a 400 in all but name.
            StatusCode::BAD_REQUEST
        } else {
            reply.status
        };
        UpstreamError::status(
            status,
            &reply.headers,
            &format!("SOAP fault {}", self.describe()),
        )
    }
}

/// An XML element by local name (namespaces dropped: DPD qualifies some elements and not
/// others, and prefixes vary), with its text.
#[derive(Debug, Clone, Default)]
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.trim().to_owned())
    }
}

/// The document's root element.
fn parse_xml(text: &str) -> Result<Node, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let broken = |e: &dyn std::fmt::Display| format!("not well-formed XML: {e}");
    loop {
        let event = reader.read_event().map_err(|e| broken(&e))?;
        match event {
            Event::Start(start) => stack.push(Node {
                name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                ..Node::default()
            }),
            Event::Empty(start) => {
                let node = Node {
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..Node::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err("more than one root element".into()),
                }
            }
            Event::Text(t) => {
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&t.decode().map_err(|e| broken(&e))?);
                }
            }
            Event::CData(c) => {
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&c.decode().map_err(|e| broken(&e))?);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| broken(&e))? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| broken(&e))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_owned()
                    }
                };
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&resolved);
                }
            }
            Event::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| "an end tag without a start".to_owned())?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err("more than one root element".into()),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    root.ok_or_else(|| "no root element".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::carriers::ZoneSource;

    fn utc(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    fn envelope(body: &str) -> String {
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{body}</soap:Body></soap:Envelope>"#
        )
    }

    fn step(
        status: &str,
        reached: bool,
        current: bool,
        place: Option<&str>,
        date: Option<&str>,
    ) -> String {
        let line = |name: &str, text: &str| {
            format!(
                "<{name}><content>{text}</content><bold>true</bold><paragraph>false</paragraph></{name}>"
            )
        };
        format!(
            "<statusInfo><status>{status}</status>{label}<description>{description}</description>\
             <statusHasBeenReached>{reached}</statusHasBeenReached><isCurrentStatus>{current}</isCurrentStatus>\
             <showContactInfo>true</showContactInfo>{location}{date}</statusInfo>",
            label = line("label", "Label"),
            description = line("content", &format!("{status} &amp; more")),
            location = place.map(|p| line("location", p)).unwrap_or_default(),
            date = date.map(|d| line("date", d)).unwrap_or_default(),
        )
    }

    fn tracking(steps: &[String]) -> String {
        envelope(&format!(
            r#"<getTrackingDataResponse xmlns="http://dpd.com/common/service/types/ParcelLifeCycleService/2.0"><trackingresult>{}</trackingresult></getTrackingDataResponse>"#,
            steps.concat()
        ))
    }

    fn found(outcomes: &[TrackOutcome]) -> &CarrierParcel {
        match outcomes {
            [TrackOutcome::Found(parcel)] => parcel,
            other => panic!("expected one Found, got {other:?}"),
        }
    }

    #[test]
    fn every_life_cycle_status_maps() {
        use TrackingStatus as S;
        let table = [
            ("SHIPMENT", S::LabelCreated),
            ("PickedUp", S::InTransit),
            ("BetweenDepots", S::InTransit),
            ("Depot", S::InTransit),
            ("Courier", S::OutForDelivery),
            ("DeliveryFailure", S::DeliveryAttempted),
            ("ReturningFromDelivery", S::DeliveryAttempted),
            ("ParcelShop", S::AvailableForPickup),
            ("Delivered", S::Delivered),
            ("SomethingNew", S::Unknown),
        ];
        for (status, expected) in table {
            assert_eq!(map_status(status), (expected, None), "{status}");
        }
    }

    #[test]
    fn only_reached_steps_count_and_the_current_one_is_where_the_parcel_is() {
        let body = tracking(&[
            step(
                "SHIPMENT",
                true,
                false,
                Some("Aschaffenburg (DE)"),
                Some("8/16/2021 9:00:00 AM"),
            ),
            step(
                "PickedUp",
                true,
                false,
                Some("Aschaffenburg (DE)"),
                Some("8/17/2021 7:11:26 PM"),
            ),
            step(
                "BetweenDepots",
                true,
                true,
                Some("Puurs (BE)"),
                Some("8/18/2021 4:09:55 AM"),
            ),
            step("Courier", false, false, None, None),
            step("Delivered", false, false, None, None),
        ]);
        let outcomes = match parse_tracking_response(&body, "05308801410058") {
            Ok(outcomes) => outcomes,
            Err(e) => panic!("{e}"),
        };
        let parcel = found(&outcomes);
        let codes: Vec<&str> = parcel.events.iter().map(|e| e.raw_code.as_str()).collect();
        // Delivered is listed, but not reached: it must not count.
        assert_eq!(codes, ["SHIPMENT", "PickedUp", "BetweenDepots"]);
        let current = parcel
            .current
            .as_ref()
            .map(|c| (c.status, c.raw_code.as_str()));
        assert_eq!(current, Some((TrackingStatus::InTransit, "BetweenDepots")));
        assert_eq!(parcel.events[1].text, "PickedUp & more");
        assert_eq!(
            parcel.ship_date,
            chrono::NaiveDate::from_ymd_opt(2021, 8, 16)
        );
        // 7:11:26 PM in Germany in August is 17:11:26 UTC.
        assert_eq!(parcel.events[1].at.utc, utc("2021-08-17T17:11:26Z"));
        assert_eq!(parcel.events[1].at.zone, ZoneSource::Location);
        assert_eq!(parcel.events[2].location.city.as_deref(), Some("Puurs"));
        assert_eq!(parcel.events[2].location.country.as_deref(), Some("BE"));
    }

    #[test]
    fn a_step_without_a_known_country_keeps_its_wall_time_unresolved() {
        let body = tracking(&[step(
            "Depot",
            true,
            true,
            Some("Depot 0530"),
            Some("17.08.2021 19:11:26"),
        )]);
        let outcomes = match parse_tracking_response(&body, "05308801410058") {
            Ok(outcomes) => outcomes,
            Err(e) => panic!("{e}"),
        };
        let event = &found(&outcomes).events[0];
        assert_eq!(
            (event.at.zone, event.at.utc),
            (ZoneSource::Unresolved, None)
        );
        assert_eq!(event.at.local.to_string(), "2021-08-17 19:11:26");
    }

    #[test]
    fn an_unknown_parcel_is_not_found() {
        for body in [
            tracking(&[]),
            tracking(&[step("SHIPMENT", false, false, None, None)]),
            envelope(
                "<soap:Fault><faultcode>soap:Server</faultcode><faultstring>Fault occured</faultstring>\
                 <detail><ns:faults xmlns:ns=\"http://dpd.com/common/service/types/ParcelLifeCycleService/2.0\">\
                 <faultCode>NOT_FOUND</faultCode><message>Parcel not found</message></ns:faults></detail></soap:Fault>",
            ),
        ] {
            match parse_tracking_response(&body, "01234567890123") {
                Ok(outcomes) => assert!(
                    matches!(outcomes.as_slice(), [TrackOutcome::NotFound { .. }]),
                    "{outcomes:?}"
                ),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn an_authentication_fault_is_a_refused_token() {
        let body = envelope(
            "<soap:Fault><faultcode>soap:Server</faultcode><faultstring>Fault occured</faultstring>\
             <detail><ns:authenticationFault xmlns:ns=\"http://dpd.com/common/service/types/Authentication/2.0\">\
             <errorCode>ERR_DELICOM_TOKEN_EXPIRED</errorCode><errorMessage>Token expired</errorMessage>\
             </ns:authenticationFault></detail></soap:Fault>",
        );
        assert!(
            matches!(classify_tracking(&body, "x"), Ok(Tracked::TokenRefused(d)) if d.contains("ERR_DELICOM_TOKEN_EXPIRED"))
        );
        assert!(matches!(
            parse_tracking_response(&body, "x"),
            Err(UpstreamError::Credentials(_))
        ));
    }

    #[test]
    fn the_login_answer_gives_the_token_and_its_life() {
        // karrio's recorded answer: qualified elements, an expiry without a zone (UTC).
        let body = envelope(
            r#"<getAuthResponse xmlns="http://dpd.com/common/service/types/LoginService/2.1"><return>
            <delisId>KD*****</delisId><customerUid>*******</customerUid>
            <authToken>GFadfGob14GWWgQcIldI6zYtuR7cyEHe2z6eWzb7BpFmcFvrzclRljlcV1OF</authToken>
            <depot>0530</depot><authTokenExpires>2020-05-08T13:02:56.06</authTokenExpires>
            </return></getAuthResponse>"#,
        );
        let Ok(envelope) = parse_xml(&body) else {
            panic!("not XML")
        };
        let Ok(soap) = soap_body(&envelope) else {
            panic!("no body")
        };
        let now = utc("2020-05-07T13:02:56Z").unwrap_or_default();
        match read_login(soap, now) {
            Ok(token) => {
                assert_eq!(
                    token.token.expose_secret(),
                    "GFadfGob14GWWgQcIldI6zYtuR7cyEHe2z6eWzb7BpFmcFvrzclRljlcV1OF"
                );
                assert_eq!(token.expires_in, Duration::milliseconds(86_400_060));
            }
            Err(e) => panic!("{e}"),
        }
        // An expiry in the past still leaves the shortest life, not a login per call.
        let later = utc("2020-06-01T00:00:00Z").unwrap_or_default();
        assert!(matches!(read_login(soap, later), Ok(t) if t.expires_in == SHORTEST_TOKEN_LIFE));
    }

    #[test]
    fn bodies_that_break_the_contract_are_malformed() {
        for body in [
            "".to_owned(),
            "not xml at all".to_owned(),
            "<a><b></a>".to_owned(),
            envelope("<somethingElse/>"),
            tracking(&[step("Courier", true, true, Some("Mechelen (BE)"), Some("yesterday"))]),
            tracking(&["<statusInfo><status>Courier</status><statusHasBeenReached>maybe</statusHasBeenReached></statusInfo>".to_owned()]),
        ] {
            assert!(
                matches!(parse_tracking_response(&body, "x"), Err(UpstreamError::Malformed { .. })),
                "{body}"
            );
        }
    }

    #[test]
    fn settings_debug_masks_the_password() {
        let settings = DpdSettings::new("KD1", SecretString::from("hunter2"));
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
