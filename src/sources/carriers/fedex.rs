//! FedEx: Track API v1 `POST /track/v1/trackingnumbers`
//! (`specs/carriers/fedex/TrackingNumbers-Resource.json`) behind OAuth client credentials
//! (`APIAuthorization-Resource.json`), up to 30 numbers per call, read into
//! [`TrackOutcome`]s. A reused number answers several `trackResults`: each becomes its own
//! `Found`, told apart by `trackingNumberUniqueId` and its ship date; a query with a ship
//! date asks only for shipments around it (`shipDateBegin`/`shipDateEnd`).
//!
//! Statuses are normalised on FedEx's event codes (research/carriers.md §2.2): the scan's
//! `eventType` and the latest status's `code` first, the derived codes only as a
//! fallback, because live answers derive "IT" for out-for-delivery scans and "DL" for
//! returning-to-shipper ones. Scan dates normally carry an offset; those that do not
//! are resolved by the scan's place or left unresolved, never taken as UTC.
//! This module never logs or puts into an error a token, the client secret or a URL
//! carrying them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::call;
use super::time::EventTime;
use super::token::{FetchedToken, TokenCache};
use super::{
    Carrier, CarrierClient, CarrierError, CarrierEvent, CarrierParcel, EventLocation,
    ExceptionReason, ParcelQuery, TrackOutcome,
};
use crate::clock::SharedClock;
use crate::http::{self, Reply, RetryPolicy, UpstreamError};
use crate::model::TrackingStatus;

/// FedEx production; the test environment is `https://apis-sandbox.fedex.com`. The OAuth
/// path (`/oauth/token`) and the Track path (`/track/v1/trackingnumbers`) hang off this.
pub const DEFAULT_BASE_URL: &str = "https://apis.fedex.com";

/// Numbers one tracking call may carry (the Track API's limit).
pub const BATCH_LIMIT: usize = 30;

/// A query's ship date asks for shipments from this many days before it: labels are
/// often printed a day or two before the marketplace says "shipped"…
const SHIP_DATE_BEFORE: i64 = 7;
/// …to this many days after it (pickup may lag the label). A reused number comes back
/// months or years later, far outside this window.
const SHIP_DATE_AFTER: i64 = 14;

/// The per-number error FedEx answers for a number it does not know (yet).
const NOT_FOUND_ERROR: &str = "TRACKING.TRACKINGNUMBER.NOTFOUND";

/// `ancillaryDetails.reason` / scan `exceptionCode` values FedEx uses for "customer not
/// available or business closed": `15` in the contract's example, `007` in live answers.
const RECIPIENT_UNAVAILABLE_REASONS: [&str; 2] = ["15", "007"];

/// Words that, in a 400 from the token endpoint, say the credentials were refused.
const CREDENTIAL_WORDS: [&str; 5] = [
    "invalid_client",
    "invalid_grant",
    "unauthorized",
    "not.authorized",
    "client",
];

/// How to reach FedEx. `Debug` is written by hand: the credentials never reach a log.
#[derive(Clone)]
pub struct FedexSettings {
    /// Scheme, host and any path prefix the FedEx paths hang off ([`DEFAULT_BASE_URL`]).
    pub base_url: String,
    /// The project's API key (`client_id` on the token call).
    pub client_id: SecretString,
    /// The project's secret key (`client_secret` on the token call).
    pub client_secret: SecretString,
}

impl FedexSettings {
    /// Production FedEx with these credentials.
    pub fn new(client_id: SecretString, client_secret: SecretString) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            client_id,
            client_secret,
        }
    }
}

impl fmt::Debug for FedexSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FedexSettings")
            .field("base_url", &call::without_userinfo(&self.base_url, "***"))
            .field("client_id", &"***")
            .field("client_secret", &"***")
            .finish()
    }
}

/// FedEx tracking, with its access token cached until shortly before it expires.
pub struct FedexClient {
    http: reqwest::Client,
    base: Url,
    client_id: SecretString,
    client_secret: SecretString,
    clock: SharedClock,
    retry: RetryPolicy,
    tokens: TokenCache,
    /// Makes every `x-customer-transaction-id` unique, even within one clock tick.
    requests: AtomicU64,
}

impl fmt::Debug for FedexClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FedexClient")
            .field("base", &call::without_userinfo(self.base.as_str(), "***"))
            .finish_non_exhaustive()
    }
}

impl FedexClient {
    pub fn new(
        settings: FedexSettings,
        clock: SharedClock,
        retry: RetryPolicy,
    ) -> Result<Self, CarrierError> {
        let base = call::parse_base_url(&settings.base_url, Carrier::Fedex)
            .map_err(CarrierError::upstream(Carrier::Fedex, "settings"))?;
        let http = call::http_client(Carrier::Fedex, "settings")?;
        Ok(Self {
            http,
            base,
            client_id: settings.client_id,
            client_secret: settings.client_secret,
            tokens: TokenCache::new(clock.clone()),
            clock,
            retry,
            requests: AtomicU64::new(0),
        })
    }

    fn transaction_id(&self) -> String {
        let sequence = self.requests.fetch_add(1, Ordering::Relaxed);
        format!(
            "nightdesk-{:x}-{:x}-{:08x}",
            self.clock.now().timestamp_millis(),
            sequence,
            rand::random::<u32>()
        )
    }

    async fn fetch_token(&self) -> Result<FetchedToken, UpstreamError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.expose_secret()),
            ("client_secret", self.client_secret.expose_secret()),
        ];
        let request = self
            .http
            .post(call::join(&self.base, &["oauth", "token"]))
            .header(ACCEPT, "application/json")
            .form(&form);
        call::fetch_token(
            request,
            |reply| read_token(&reply.body),
            |reply| {
                // Only FedEx's error codes and words are kept: the body is not echoed whole.
                let detail = describe_errors(&error_messages(&reply.body));
                let refused = call::token_refused(reply.status, &detail, &CREDENTIAL_WORDS);
                (detail, refused)
            },
        )
        .await
    }

    /// One POST; 429 and 5xx come back as errors so `with_retry` retries them.
    async fn send_track(
        &self,
        token: &SecretString,
        body: &TrackRequest<'_>,
    ) -> Result<Reply, UpstreamError> {
        let request = self
            .http
            .post(call::join(&self.base, &["track", "v1", "trackingnumbers"]))
            .bearer_auth(token.expose_secret())
            .header(ACCEPT, "application/json")
            .header("x-locale", "en_US")
            .header("x-customer-transaction-id", self.transaction_id())
            .json(body);
        call::keep_or_error(
            http::send(request).await?,
            |status| !call::is_retryable_status(status),
            |body| describe_errors(&error_messages(body)),
        )
    }

    /// The tracking call with the cached token; a 401 drops the token and the call is
    /// made once more with a fresh one (FedEx: "cache the token until a 401").
    async fn call_track(&self, body: &TrackRequest<'_>) -> Result<Reply, CarrierError> {
        call::with_token(
            &self.tokens,
            || {
                self.tokens
                    .get_for(Carrier::Fedex, "token", self.retry, || self.fetch_token())
            },
            |token| async move {
                http::with_retry(self.retry, "fedex.track", || self.send_track(&token, body))
                    .await
                    .map_err(CarrierError::upstream(Carrier::Fedex, "track"))
            },
            |reply: &Reply| reply.status == StatusCode::UNAUTHORIZED,
        )
        .await
    }

    async fn track_chunk(&self, chunk: &[ParcelQuery]) -> Result<Vec<TrackOutcome>, CarrierError> {
        let body = track_request(chunk);
        let reply = self.call_track(&body).await?;
        let failed = CarrierError::upstream(Carrier::Fedex, "track");
        if reply.status.is_success() {
            return parse_track_response(&reply.body).map_err(failed);
        }
        let detail = describe_errors(&error_messages(&reply.body));
        // FORBIDDEN.ERROR: the project may not use tracking; a person must fix it.
        let forbidden = reply.status == StatusCode::FORBIDDEN;
        Err(failed(call::status_error(&reply, detail, forbidden)))
    }
}

#[async_trait]
impl CarrierClient for FedexClient {
    fn carrier(&self) -> Carrier {
        Carrier::Fedex
    }

    fn batch_limit(&self) -> usize {
        BATCH_LIMIT
    }

    async fn track(&self, batch: &[ParcelQuery]) -> Result<Vec<TrackOutcome>, CarrierError> {
        let mut outcomes = Vec::new();
        for chunk in batch.chunks(BATCH_LIMIT) {
            outcomes.extend(self.track_chunk(chunk).await?);
        }
        Ok(outcomes)
    }
}

/// The request body for `batch` (at most [`BATCH_LIMIT`] queries).
fn track_request(batch: &[ParcelQuery]) -> TrackRequest<'_> {
    TrackRequest {
        include_detailed_scans: true,
        tracking_info: batch
            .iter()
            .map(|query| TrackingInfo {
                ship_date_begin: query.ship_date.map(|d| {
                    (d - Duration::days(SHIP_DATE_BEFORE))
                        .format("%Y-%m-%d")
                        .to_string()
                }),
                ship_date_end: query.ship_date.map(|d| {
                    (d + Duration::days(SHIP_DATE_AFTER))
                        .format("%Y-%m-%d")
                        .to_string()
                }),
                tracking_number_info: RequestedNumber {
                    tracking_number: query.tracking_number.trim(),
                },
            })
            .collect(),
    }
}

/// Reads a 200 of `POST /track/v1/trackingnumbers`: one outcome per `trackResult`.
/// `TRACKING.TRACKINGNUMBER.NOTFOUND` is `NotFound`; another per-number error without
/// tracking data is `Rejected`.
pub fn parse_track_response(body: &str) -> Result<Vec<TrackOutcome>, UpstreamError> {
    let answer: TrackReply = serde_json::from_str(body).map_err(|e| malformed(e.to_string()))?;
    let Some(output) = answer.output else {
        return Err(malformed("no output".to_owned()));
    };
    let mut outcomes = Vec::new();
    for complete in output.complete_track_results.unwrap_or_default() {
        for result in complete.track_results.as_deref().unwrap_or_default() {
            let number = non_empty(&complete.tracking_number)
                .or_else(|| {
                    result
                        .tracking_number_info
                        .as_ref()
                        .and_then(|i| non_empty(&i.tracking_number))
                })
                .ok_or_else(|| malformed("a trackResult without a tracking number".to_owned()))?;
            outcomes.push(read_result(number, result)?);
        }
    }
    Ok(outcomes)
}

/// FedEx's event code, normalised. `reason` and `reason_text` are the ancillary reason
/// (or the scan's exception code and words) that tell a failed attempt from another
/// delivery exception.
pub fn map_status(
    code: &str,
    reason: Option<&str>,
    reason_text: Option<&str>,
) -> (TrackingStatus, Option<ExceptionReason>) {
    use ExceptionReason as R;
    use TrackingStatus as S;
    match code.trim().to_ascii_uppercase().as_str() {
        // IN ("Initiated") is the derived code FedEx gives OC.
        "OC" | "OX" | "EP" | "IN" => (S::LabelCreated, None),
        "PU" | "PX" | "AP" => (S::InTransit, None),
        "IT" | "IX" | "IP" | "AR" | "AF" | "AA" | "AC" | "AX" | "DP" | "EA" | "EO" | "FD"
        | "LO" | "OF" | "PF" | "PL" | "PM" | "SF" | "TR" | "TP" | "CH" | "CC" | "CP" | "DS"
        | "DR" | "SP" | "HA" | "RR" | "RM" | "RC" | "AS" => (S::InTransit, None),
        "OD" | "ED" | "AD" => (S::OutForDelivery, None),
        "DL" | "DO" => (S::Delivered, None),
        "HL" | "HP" => (S::AvailableForPickup, None),
        "DE" if recipient_unavailable(reason, reason_text) => (S::DeliveryAttempted, None),
        "DE" | "SE" => (S::Exception, Some(R::Other)),
        "CD" => (S::Exception, Some(R::Customs)),
        "DD" | "DY" | "PD" => (S::Exception, Some(R::Delay)),
        "RS" => (S::ReturnToSender, None),
        "CA" => (S::Cancelled, None),
        // Return-label e-mails (RP, LP, RG, RD), arriving early or on time (AE, AO) and
        // codes not listed say nothing about where the parcel is.
        _ => (S::Unknown, None),
    }
}

/// Whether a delivery exception is "nobody there": by FedEx's reason code, or, as its
/// reason codes are not published and differ between the contract and live answers, by
/// the reason's own words.
fn recipient_unavailable(reason: Option<&str>, reason_text: Option<&str>) -> bool {
    let by_code = clean(reason).is_some_and(|r| RECIPIENT_UNAVAILABLE_REASONS.contains(&r));
    let by_words = clean(reason_text).is_some_and(|text| {
        let lower = text.to_ascii_lowercase();
        lower.contains("not available") || lower.contains("business closed")
    });
    by_code || by_words
}

/// A code's mapping, falling back to the derived code when the first says nothing.
fn map_with_fallback(
    code: Option<&str>,
    derived: Option<&str>,
    reason: Option<&str>,
    reason_text: Option<&str>,
) -> (TrackingStatus, Option<ExceptionReason>) {
    let first = clean(code).map(|c| map_status(c, reason, reason_text));
    match first {
        Some(mapped) if mapped.0 != TrackingStatus::Unknown => mapped,
        _ => clean(derived)
            .map(|d| map_status(d, reason, reason_text))
            .unwrap_or((TrackingStatus::Unknown, None)),
    }
}

fn read_result(number: &str, result: &TrackResult) -> Result<TrackOutcome, UpstreamError> {
    let has_data = result.latest_status_detail.is_some()
        || result.scan_events.as_deref().is_some_and(|s| !s.is_empty());
    if let Some(error) = &result.error {
        let code = non_empty(&error.code).unwrap_or_default();
        let detail = describe_errors(std::slice::from_ref(error));
        if code == NOT_FOUND_ERROR {
            return Ok(TrackOutcome::NotFound {
                tracking_number: number.to_owned(),
                detail,
            });
        }
        // An error beside tracking data (the contract's full example has one) does not
        // hide the data.
        if !has_data {
            return Ok(TrackOutcome::Rejected {
                tracking_number: number.to_owned(),
                detail,
            });
        }
    }
    let mut events = Vec::new();
    for scan in result.scan_events.as_deref().unwrap_or_default() {
        if let Some(event) = read_scan(scan)? {
            events.push(event);
        }
    }
    let current = result
        .latest_status_detail
        .as_ref()
        .zip(events.iter().max_by_key(|e| e.at.sort_key()))
        .map(|(latest, newest)| read_latest(latest, newest));
    let info = result.tracking_number_info.as_ref();
    Ok(TrackOutcome::Found(CarrierParcel {
        tracking_number: number.to_owned(),
        carrier_shipment_id: info
            .and_then(|i| non_empty(&i.tracking_number_unique_id))
            .map(str::to_owned),
        ship_date: ship_date(result),
        service: result
            .service_detail
            .as_ref()
            .and_then(|s| non_empty(&s.description))
            .map(str::to_owned),
        estimated_delivery: estimated_delivery(result),
        events,
        current,
    }))
}

fn read_scan(scan: &ScanEvent) -> Result<Option<CarrierEvent>, UpstreamError> {
    let location = scan
        .scan_location
        .as_ref()
        .map(location_of)
        .unwrap_or_default();
    let Some(date) = non_empty(&scan.date) else {
        return Ok(None);
    };
    // With an offset as FedEx normally sends it; without one (seen on pickup scans,
    // research §3) local time at the scan's place, or unresolved.
    let at = EventTime::parse_iso(date, &location)
        .ok_or_else(|| malformed(format!("scan date {date:?}")))?;
    let reason = non_empty(&scan.exception_code);
    let reason_text = non_empty(&scan.exception_description);
    let (status, exception) = map_with_fallback(
        scan.event_type.as_deref(),
        scan.derived_status_code.as_deref(),
        reason,
        reason_text,
    );
    Ok(Some(CarrierEvent {
        at,
        status,
        reason: exception,
        raw_code: joined(non_empty(&scan.event_type), reason, "/"),
        text: joined(non_empty(&scan.event_description), reason_text, ": "),
        location,
        correction: false,
    }))
}

/// `latestStatusDetail`, which holds since the newest scan.
fn read_latest(latest: &StatusDetail, newest: &CarrierEvent) -> CarrierEvent {
    let ancillary = latest
        .ancillary_details
        .as_deref()
        .unwrap_or_default()
        .first();
    let reason = ancillary.and_then(|a| non_empty(&a.reason));
    let reason_text = ancillary.and_then(|a| non_empty(&a.reason_description));
    let (status, exception) = map_with_fallback(
        latest.code.as_deref(),
        latest.derived_code.as_deref(),
        reason,
        reason_text,
    );
    let location = latest
        .scan_location
        .as_ref()
        .map(location_of)
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| newest.location.clone());
    CarrierEvent {
        at: newest.at,
        status,
        reason: exception,
        raw_code: joined(non_empty(&latest.code), reason, "/"),
        text: joined(
            non_empty(&latest.description).or_else(|| non_empty(&latest.status_by_locale)),
            reason_text,
            ": ",
        ),
        location,
        correction: false,
    }
}

/// The `SHIP` date, else the `ACTUAL_PICKUP` date: the date as written, wherever it was.
fn ship_date(result: &TrackResult) -> Option<NaiveDate> {
    let dates = result.date_and_times.as_deref().unwrap_or_default();
    ["SHIP", "ACTUAL_PICKUP"].iter().find_map(|wanted| {
        dates
            .iter()
            .filter(|d| non_empty(&d.kind) == Some(*wanted))
            .find_map(|d| {
                non_empty(&d.date_time)
                    .and_then(|t| t.get(..10))
                    .and_then(|t| NaiveDate::parse_from_str(t, "%Y-%m-%d").ok())
            })
    })
}

/// The actual delivery, else the estimate (`dateAndTimes`, then the estimated window's
/// end), read in the destination's zone when FedEx gives no offset.
fn estimated_delivery(result: &TrackResult) -> Option<DateTime<Utc>> {
    let destination = result
        .recipient_information
        .as_ref()
        .and_then(|r| r.address.as_ref())
        .or(result.last_updated_destination_address.as_ref())
        .or_else(|| {
            result
                .destination_location
                .as_ref()
                .and_then(|d| d.location_contact_and_address.as_ref())
                .and_then(|c| c.address.as_ref())
        })
        .map(location_of)
        .unwrap_or_default();
    let instant = |text: &str| EventTime::parse_iso(text, &destination).and_then(|t| t.utc);
    let dates = result.date_and_times.as_deref().unwrap_or_default();
    let by_type = |wanted: &str| {
        dates
            .iter()
            .filter(|d| non_empty(&d.kind) == Some(wanted))
            .find_map(|d| non_empty(&d.date_time).and_then(instant))
    };
    by_type("ACTUAL_DELIVERY")
        .or_else(|| by_type("ESTIMATED_DELIVERY"))
        .or_else(|| {
            result
                .estimated_delivery_time_window
                .as_ref()
                .and_then(|w| w.window.as_ref())
                .and_then(|w| non_empty(&w.ends))
                .and_then(instant)
        })
}

fn read_token(body: &str) -> Result<FetchedToken, UpstreamError> {
    let token: TokenReply = serde_json::from_str(body).map_err(|e| UpstreamError::Malformed {
        what: "FedEx token response".to_owned(),
        reason: e.to_string(),
    })?;
    if token.access_token.is_empty() || token.expires_in <= 0 {
        return Err(UpstreamError::Malformed {
            what: "FedEx token response".to_owned(),
            reason: "empty access_token or non-positive expires_in".to_owned(),
        });
    }
    Ok(FetchedToken {
        token: SecretString::from(token.access_token),
        expires_in: Duration::seconds(token.expires_in),
    })
}

/// The `errors` list of an error body (`ErrorResponseVO`); empty when unreadable.
fn error_messages(body: &str) -> Vec<CxsError> {
    serde_json::from_str::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.errors)
        .unwrap_or_default()
}

/// `CODE: message; …`, short; never the body itself.
fn describe_errors(errors: &[CxsError]) -> String {
    let text = errors
        .iter()
        .map(|e| joined(non_empty(&e.code), non_empty(&e.message), ": "))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    http::summarize(&text)
}

fn location_of(address: &Address) -> EventLocation {
    let owned = |s: &Option<String>| non_empty(s).map(str::to_owned);
    EventLocation {
        city: owned(&address.city),
        state: owned(&address.state_or_province_code),
        postcode: owned(&address.postal_code),
        country: owned(&address.country_code),
    }
}

/// `first<separator>second`, either alone when the other is missing.
fn joined(first: Option<&str>, second: Option<&str>, separator: &str) -> String {
    match (first, second) {
        (Some(a), Some(b)) => format!("{a}{separator}{b}"),
        (Some(a), None) | (None, Some(a)) => a.to_owned(),
        (None, None) => String::new(),
    }
}

fn clean(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|s| !s.is_empty())
}

fn non_empty(text: &Option<String>) -> Option<&str> {
    clean(text.as_deref())
}

fn malformed(reason: String) -> UpstreamError {
    UpstreamError::Malformed {
        what: "FedEx tracking response".to_owned(),
        reason,
    }
}

// Wire types, field by field from TrackingNumbers-Resource.json and
// APIAuthorization-Resource.json. Fields nightdesk does not read are left out; unknown
// fields are ignored; arrays may also come as null.

/// `Full_Schema_Tracking_Numbers`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TrackRequest<'a> {
    include_detailed_scans: bool,
    tracking_info: Vec<TrackingInfo<'a>>,
}

/// `TrackingInfo`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TrackingInfo<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ship_date_begin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ship_date_end: Option<String>,
    tracking_number_info: RequestedNumber<'a>,
}

/// `TrackingNumberInfo` as asked: the number alone.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestedNumber<'a> {
    tracking_number: &'a str,
}

/// `TrkcResponseVO_TrackingNumber`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TrackReply {
    output: Option<TrackOutput>,
}

/// `TrackingNumbersResponse` (`alerts` is not read: the contract's full example sends
/// it as a string where the schema says array).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TrackOutput {
    complete_track_results: Option<Vec<CompleteTrackResult>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct CompleteTrackResult {
    tracking_number: Option<String>,
    track_results: Option<Vec<TrackResult>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TrackResult {
    tracking_number_info: Option<NumberInfo>,
    service_detail: Option<ServiceDetail>,
    destination_location: Option<LocationDetail>,
    latest_status_detail: Option<StatusDetail>,
    error: Option<CxsError>,
    scan_events: Option<Vec<ScanEvent>>,
    date_and_times: Option<Vec<DateAndTime>>,
    estimated_delivery_time_window: Option<TimeWindow>,
    recipient_information: Option<ContactAndAddress>,
    last_updated_destination_address: Option<Address>,
}

/// `TrackingNumberInfo_1`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct NumberInfo {
    tracking_number: Option<String>,
    tracking_number_unique_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ServiceDetail {
    description: Option<String>,
}

/// `LocationDetail1`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct LocationDetail {
    location_contact_and_address: Option<ContactAndAddress>,
}

/// `ContactAndAddress1`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ContactAndAddress {
    address: Option<Address>,
}

/// `AddressVO1`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Address {
    city: Option<String>,
    state_or_province_code: Option<String>,
    postal_code: Option<String>,
    country_code: Option<String>,
}

/// `StatusDetail`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct StatusDetail {
    scan_location: Option<Address>,
    code: Option<String>,
    derived_code: Option<String>,
    ancillary_details: Option<Vec<AncillaryDetail>>,
    status_by_locale: Option<String>,
    description: Option<String>,
}

/// `StatusAncillaryDetail`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct AncillaryDetail {
    reason: Option<String>,
    reason_description: Option<String>,
}

/// `ScanEvent`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ScanEvent {
    date: Option<String>,
    scan_location: Option<Address>,
    exception_description: Option<String>,
    event_description: Option<String>,
    event_type: Option<String>,
    derived_status_code: Option<String>,
    exception_code: Option<String>,
}

/// `TrackingDateAndTime`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DateAndTime {
    date_time: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// `TimeWindow`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TimeWindow {
    window: Option<TimeRange>,
}

/// `TimeRange`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TimeRange {
    ends: Option<String>,
}

/// `CXSError`: per number inside a 200, and in every error body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct CxsError {
    code: Option<String>,
    message: Option<String>,
}

/// `ErrorResponseVO` (and its 401/403/404/500/503 twins).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorBody {
    errors: Option<Vec<CxsError>>,
}

/// The token `Response`: `expires_in` is an integer here, unlike UPS's string.
#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    expires_in: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::carriers::ZoneSource;
    use chrono::NaiveDateTime;
    use serde_json::Value;

    const EXAMPLE_RESPONSE: &str =
        include_str!("../../../specs/carriers/fedex/examples/karrio-fedex-tracking_response.json");
    const EXAMPLE_REQUEST: &str =
        include_str!("../../../specs/carriers/fedex/examples/karrio-fedex-tracking_request.json");
    const CONTRACT: &str =
        include_str!("../../../specs/carriers/fedex/TrackingNumbers-Resource.json");

    fn utc(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap_or_default()
    }

    fn parse(body: &str) -> Vec<TrackOutcome> {
        match parse_track_response(body) {
            Ok(outcomes) => outcomes,
            Err(e) => panic!("the body should parse: {e}"),
        }
    }

    fn only_found(outcomes: &[TrackOutcome]) -> &CarrierParcel {
        match outcomes {
            [TrackOutcome::Found(parcel)] => parcel,
            other => panic!("expected one Found, got {other:?}"),
        }
    }

    /// One trackResult with `scans` (JSON array text) and extra fields.
    fn body_with(number: &str, result_fields: &str) -> String {
        format!(
            r#"{{"transactionId":"t","output":{{"completeTrackResults":[{{"trackingNumber":"{number}",
            "trackResults":[{{"trackingNumberInfo":{{"trackingNumber":"{number}",
            "trackingNumberUniqueId":"12013~{number}~FDEG","carrierCode":"FDXG"}},{result_fields}}}]}}]}}}}"#
        )
    }

    #[test]
    fn every_code_in_the_research_maps_as_the_table_says() {
        use ExceptionReason as R;
        use TrackingStatus as S;
        let table: &[(&[&str], S, Option<R>)] = &[
            (&["OC", "OX", "EP", "IN"], S::LabelCreated, None),
            (&["PU", "PX", "AP"], S::InTransit, None),
            (
                &[
                    "IT", "IX", "IP", "AR", "AF", "AA", "AC", "AX", "DP", "EA", "EO", "FD", "LO",
                    "OF", "PF", "PL", "PM", "SF", "TR", "TP", "CH", "CC", "CP", "DS", "DR", "SP",
                    "HA", "RR", "RM", "RC", "AS",
                ],
                S::InTransit,
                None,
            ),
            (&["OD", "ED", "AD"], S::OutForDelivery, None),
            (&["DL", "DO"], S::Delivered, None),
            (&["HL", "HP"], S::AvailableForPickup, None),
            (&["DE", "SE"], S::Exception, Some(R::Other)),
            (&["CD"], S::Exception, Some(R::Customs)),
            (&["DD", "DY", "PD"], S::Exception, Some(R::Delay)),
            (&["RS"], S::ReturnToSender, None),
            (&["CA"], S::Cancelled, None),
            (
                &["RP", "LP", "RG", "RD", "AE", "AO", "ZZ", ""],
                S::Unknown,
                None,
            ),
        ];
        for (codes, status, reason) in table {
            for code in *codes {
                assert_eq!(map_status(code, None, None), (*status, *reason), "{code}");
            }
        }
        // DE: an attempt when nobody was there, by code (contract "15", live "007") or
        // by the reason's words; any other delivery exception stays an exception.
        let attempted = (S::DeliveryAttempted, None);
        assert_eq!(map_status("DE", Some("15"), None), attempted);
        assert_eq!(map_status("DE", Some("007"), None), attempted);
        assert_eq!(
            map_status(
                "DE",
                Some("099"),
                Some("Customer not available or business closed")
            ),
            attempted
        );
        assert_eq!(
            map_status("DE", Some("A13"), Some("Redirecting to FedEx Office")),
            (S::Exception, Some(R::Other))
        );
        // The reason does not turn other codes into attempts.
        assert_eq!(
            map_status("SE", Some("15"), None),
            (S::Exception, Some(R::Other))
        );
    }

    #[test]
    fn the_example_payload_gives_a_found_and_a_not_found() {
        let outcomes = parse(EXAMPLE_RESPONSE);
        let [
            TrackOutcome::Found(parcel),
            TrackOutcome::NotFound {
                tracking_number,
                detail,
            },
        ] = outcomes.as_slice()
        else {
            panic!("expected Found then NotFound, got {outcomes:?}")
        };
        // The number asked (completeTrackResults) names the outcome.
        assert_eq!(parcel.tracking_number, "123456789012");
        assert_eq!(
            parcel.carrier_shipment_id.as_deref(),
            Some("245822~123456789012~FDEG")
        );
        assert_eq!(parcel.service.as_deref(), Some("FedEx Freight Economy."));
        let [scan] = parcel.events.as_slice() else {
            panic!("one scan, got {:?}", parcel.events)
        };
        assert_eq!(
            (scan.status, scan.reason),
            (TrackingStatus::InTransit, None)
        );
        assert_eq!(scan.raw_code, "PU/A25");
        assert_eq!(scan.text, "Picked Up: Package available for clearance");
        assert_eq!(scan.at.utc, utc("2018-02-02T19:01:00Z"));
        assert_eq!(scan.location.state.as_deref(), Some("WA"));
        let current = parcel
            .current
            .as_ref()
            .map(|c| (c.status, c.raw_code.as_str()));
        assert_eq!(current, Some((TrackingStatus::InTransit, "PU/15")));
        // ACTUAL_DELIVERY "2007-09-27T00:00:00" has no offset: Seattle's (PDT, -7).
        assert_eq!(parcel.estimated_delivery, utc("2007-09-27T07:00:00Z"));
        assert_eq!(parcel.ship_date, None);
        assert_eq!(tracking_number, "39936862321");
        assert!(
            detail.starts_with("TRACKING.TRACKINGNUMBER.NOTFOUND"),
            "{detail}"
        );
    }

    #[test]
    fn the_example_request_is_what_a_query_with_a_ship_date_sends() {
        let query = ParcelQuery {
            tracking_number: " 128667043726 ".to_owned(),
            ship_date: NaiveDate::from_ymd_opt(2020, 3, 30),
            ..ParcelQuery::default()
        };
        let sent = serde_json::to_value(track_request(std::slice::from_ref(&query)));
        let example: Result<Value, _> = serde_json::from_str(EXAMPLE_REQUEST);
        let (Ok(sent), Ok(example)) = (sent, example) else {
            panic!("request or example is not JSON")
        };
        assert_eq!(
            sent["includeDetailedScans"],
            example["includeDetailedScans"]
        );
        assert_eq!(
            sent["trackingInfo"][0]["trackingNumberInfo"]["trackingNumber"],
            example["trackingInfo"][0]["trackingNumberInfo"]["trackingNumber"]
        );
        assert_eq!(sent["trackingInfo"][0]["shipDateBegin"], "2020-03-23");
        assert_eq!(sent["trackingInfo"][0]["shipDateEnd"], "2020-04-13");
        // Without a ship date, no window at all.
        let bare = serde_json::to_value(track_request(&[ParcelQuery::number("1")]));
        let Ok(bare) = bare else {
            panic!("request is not JSON")
        };
        assert_eq!(bare["trackingInfo"][0].get("shipDateBegin"), None);
    }

    #[test]
    fn the_contracts_error_examples_are_read_by_code() {
        let contract: Value = match serde_json::from_str(CONTRACT) {
            Ok(v) => v,
            Err(e) => panic!("contract is not JSON: {e}"),
        };
        let responses = &contract["paths"]["/track/v1/trackingnumbers"]["post"]["responses"];
        for (status, code) in [
            ("400", "TRACKING.TRACKINGNUMBER.EMPTY"),
            ("401", "NOT.AUTHORIZED.ERROR"),
            ("403", "FORBIDDEN.ERROR"),
            ("500", "INTERNAL.SERVER.ERROR"),
        ] {
            let example = responses[status]["content"]["application/json"]["example"].to_string();
            let messages = error_messages(&example);
            assert_eq!(
                messages.first().and_then(|m| m.code.as_deref()),
                Some(code),
                "{status}"
            );
            assert!(describe_errors(&messages).starts_with(code));
        }
    }

    #[test]
    fn a_reused_number_gives_one_found_per_shipment() {
        let body = r#"{"output":{"completeTrackResults":[{"trackingNumber":"794843185271","trackResults":[
          {"trackingNumberInfo":{"trackingNumber":"794843185271","trackingNumberUniqueId":"12012~794843185271~FDEG","carrierCode":"FDXG"},
           "latestStatusDetail":{"code":"DL","derivedCode":"DL","description":"Delivered"},
           "dateAndTimes":[{"type":"SHIP","dateTime":"2024-01-10T00:00:00"}],
           "scanEvents":[{"date":"2024-01-12T10:00:00-05:00","eventType":"DL","eventDescription":"Delivered",
             "derivedStatusCode":"DL","scanLocation":{"city":"ATLANTA","stateOrProvinceCode":"GA","countryCode":"US"}}]},
          {"trackingNumberInfo":{"trackingNumber":"794843185271","trackingNumberUniqueId":"12024~794843185271~FDEG","carrierCode":"FDXG"},
           "latestStatusDetail":{"code":"OD","derivedCode":"IT","description":"On FedEx vehicle for delivery"},
           "dateAndTimes":[{"type":"SHIP","dateTime":"2026-11-20T00:00:00-05:00"}],
           "scanEvents":[{"date":"2026-11-22T08:00:00-05:00","eventType":"OD","eventDescription":"On FedEx vehicle for delivery",
             "derivedStatusCode":"IT","scanLocation":{"city":"ATLANTA","stateOrProvinceCode":"GA","countryCode":"US"}}]}
        ]}]}}"#;
        let outcomes = parse(body);
        let parcels: Vec<(Option<&str>, Option<NaiveDate>, Option<TrackingStatus>)> = outcomes
            .iter()
            .map(|o| match o {
                TrackOutcome::Found(p) => (
                    p.carrier_shipment_id.as_deref(),
                    p.ship_date,
                    p.current.as_ref().map(|c| c.status),
                ),
                other => panic!("expected Found, got {other:?}"),
            })
            .collect();
        assert_eq!(
            parcels,
            vec![
                (
                    Some("12012~794843185271~FDEG"),
                    NaiveDate::from_ymd_opt(2024, 1, 10),
                    Some(TrackingStatus::Delivered)
                ),
                // OD derived as IT: the code wins, out for delivery is not lost.
                (
                    Some("12024~794843185271~FDEG"),
                    NaiveDate::from_ymd_opt(2026, 11, 20),
                    Some(TrackingStatus::OutForDelivery)
                ),
            ]
        );
        assert!(
            outcomes
                .iter()
                .all(|o| o.tracking_number() == "794843185271")
        );
    }

    #[test]
    fn event_types_win_over_derived_codes_that_flatten_them() {
        let body = body_with(
            "076288115212522",
            r#""latestStatusDetail":{"code":"DE","derivedCode":"DE","description":"Delivery exception",
              "ancillaryDetails":[{"reason":"007","reasonDescription":"Customer not available or business closed"}]},
            "scanEvents":[
              {"date":"2014-01-15T08:32:31-06:00","eventType":"RS","eventDescription":"Returning package to shipper",
               "derivedStatusCode":"DL","exceptionCode":"060G","exceptionDescription":"Returning to shipper"},
              {"date":"2014-01-14T08:32:31-06:00","eventType":"HP","eventDescription":"Ready for recipient pickup",
               "derivedStatusCode":"IT","exceptionCode":"","exceptionDescription":""},
              {"date":"2014-01-13T08:32:31-06:00","eventType":"ZZ","eventDescription":"Something new",
               "derivedStatusCode":"IT"}
            ]"#,
        );
        let outcomes = parse(&body);
        let parcel = only_found(&outcomes);
        let read: Vec<(TrackingStatus, &str)> = parcel
            .events
            .iter()
            .map(|e| (e.status, e.raw_code.as_str()))
            .collect();
        assert_eq!(
            read,
            vec![
                (TrackingStatus::ReturnToSender, "RS/060G"),
                (TrackingStatus::AvailableForPickup, "HP"),
                // An unknown event type falls back to its derived code.
                (TrackingStatus::InTransit, "ZZ"),
            ]
        );
        let current = parcel
            .current
            .as_ref()
            .map(|c| (c.status, c.raw_code.as_str()));
        assert_eq!(current, Some((TrackingStatus::DeliveryAttempted, "DE/007")));
    }

    #[test]
    fn zone_less_scan_times_resolve_by_place_or_stay_unresolved() {
        let body = body_with(
            "449044304137821",
            r#""scanEvents":[
              {"date":"2024-08-15T00:00:00","eventType":"PU","eventDescription":"Picked up",
               "scanLocation":{"city":"MEMPHIS","stateOrProvinceCode":"TN","countryCode":"US"}},
              {"date":"2024-08-15T00:00:00","eventType":"PU","eventDescription":"Picked up",
               "scanLocation":{"postalCode":"38118","countryCode":"US"}},
              {"date":"2024-08-15T09:30:00-05:00","eventType":"AR","eventDescription":"Arrived at FedEx location",
               "scanLocation":{"countryCode":"US"}}
            ]"#,
        );
        let outcomes = parse(&body);
        let parcel = only_found(&outcomes);
        let times: Vec<(ZoneSource, Option<DateTime<Utc>>, NaiveDateTime)> = parcel
            .events
            .iter()
            .map(|e| (e.at.zone, e.at.utc, e.at.local))
            .collect();
        assert_eq!(
            times,
            vec![
                // Memphis, TN in August: CDT, -5.
                (
                    ZoneSource::Location,
                    utc("2024-08-15T05:00:00Z"),
                    local("2024-08-15 00:00:00")
                ),
                // A US place without a state: the wall time only, not UTC.
                (ZoneSource::Unresolved, None, local("2024-08-15 00:00:00")),
                (
                    ZoneSource::Carrier,
                    utc("2024-08-15T14:30:00Z"),
                    local("2024-08-15 09:30:00")
                ),
            ]
        );
    }

    #[test]
    fn per_number_errors_are_not_found_or_rejected_not_failures() {
        let body = r#"{"output":{"completeTrackResults":[
          {"trackingNumber":"111111111111","trackResults":[{"trackingNumberInfo":{"trackingNumber":"111111111111"},
            "error":{"code":"TRACKING.TRACKINGNUMBER.NOTFOUND","message":"Tracking number cannot be found. Please correct the tracking number and try again."}}]},
          {"trackingNumber":"ABC","trackResults":[{"error":{"code":"TRACKING.TRACKINGNUMBER.INVALID","message":"Invalid tracking number."}}]}
        ]}}"#;
        assert_eq!(
            parse(body),
            vec![
                TrackOutcome::NotFound {
                    tracking_number: "111111111111".to_owned(),
                    detail: "TRACKING.TRACKINGNUMBER.NOTFOUND: Tracking number cannot be found. \
                             Please correct the tracking number and try again."
                        .to_owned(),
                },
                TrackOutcome::Rejected {
                    tracking_number: "ABC".to_owned(),
                    detail: "TRACKING.TRACKINGNUMBER.INVALID: Invalid tracking number.".to_owned(),
                },
            ]
        );
    }

    #[test]
    fn bodies_that_break_the_contract_are_malformed_not_panics() {
        let cases = [
            String::new(),
            "{\"output\":{".to_owned(),
            "{}".to_owned(),
            r#"{"output":{"completeTrackResults":{"trackingNumber":"1"}}}"#.to_owned(),
            r#"{"output":{"completeTrackResults":[{"trackResults":[{"scanEvents":[]}]}]}}"#
                .to_owned(),
            body_with(
                "1",
                r#""scanEvents":[{"date":"yesterday","eventType":"PU"}]"#,
            ),
            body_with("1", r#""scanEvents":[{"date":20240815,"eventType":"PU"}]"#),
            body_with("1", r#""latestStatusDetail":{"code":["DL"]}"#),
        ];
        for body in &cases {
            match parse_track_response(body) {
                Err(UpstreamError::Malformed { .. }) => {}
                other => panic!("{body:?} should be malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn tokens_follow_the_contract_integer_lifetime() {
        match read_token(
            r#"{"access_token":"abc","token_type":"bearer","expires_in":3599,"scope":"CXS"}"#,
        ) {
            Ok(token) => {
                assert_eq!(token.token.expose_secret(), "abc");
                assert_eq!(token.expires_in, Duration::seconds(3599));
            }
            Err(e) => panic!("token should parse: {e}"),
        }
        assert!(matches!(
            read_token(r#"{"access_token":"abc","expires_in":"3599"}"#),
            Err(UpstreamError::Malformed { .. })
        ));
    }

    #[test]
    fn settings_debug_masks_the_credentials() {
        let settings = FedexSettings::new(
            SecretString::from("api-key-value"),
            SecretString::from("secret-key-value"),
        );
        let text = format!("{settings:?}");
        assert!(
            !text.contains("api-key-value") && !text.contains("secret-key-value"),
            "{text}"
        );
        assert!(text.contains("apis.fedex.com"), "{text}");
    }
}
