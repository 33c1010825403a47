//! UPS: the Track API v1 (`specs/carriers/ups/Tracking.yaml`) behind OAuth client
//! credentials (`OAuthClientCredentials.yaml`), one inquiry number per call, read into
//! [`TrackOutcome`]s. Statuses are normalised on UPS's own codes, the 3-digit
//! `statusCode` first, then the 2-character `code`, then `type` (research/carriers.md
//! §2.2), so "out for delivery" (type `I`, code `OT`, `021`) is never read as in transit.
//!
//! Activity `date`+`time` are local wall times: they are resolved with UPS's
//! `gmtDate`/`gmtTime` or `gmtOffset`, else by the activity's place, else left
//! unresolved. This module never takes a zone-less time as UTC, and never logs or puts
//! into an error a token, the client id or secret, or a URL carrying them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::call;
use super::time::{EventTime, ZoneSource, zone_of};
use super::token::{FetchedToken, TokenCache};
use super::{
    Carrier, CarrierClient, CarrierError, CarrierEvent, CarrierParcel, EventLocation,
    ExceptionReason, ParcelQuery, TrackOutcome,
};
use crate::clock::SharedClock;
use crate::http::{self, Reply, RetryPolicy, UpstreamError};
use crate::model::TrackingStatus;

/// UPS production; the Customer Integration Environment (test) is
/// `https://wwwcie.ups.com`. The OAuth path (`/security/v1/oauth/token`) and the Track
/// path (`/api/track/v1/details/{inquiryNumber}`) hang off this.
pub const DEFAULT_BASE_URL: &str = "https://onlinetools.ups.com";

/// The `transactionSrc` header unless configured: names the calling application.
pub const DEFAULT_TRANSACTION_SOURCE: &str = "nightdesk";

/// UPS warning on a 200: the number is not (yet) in UPS's systems.
const NOT_FOUND_WARNING: &str = "TW0001";
/// UPS error: the inquiry number is not a valid number.
const INVALID_NUMBER_ERROR: &str = "TV1002";

/// Words that, in a 400 from the token endpoint, say the credentials were refused.
const CREDENTIAL_WORDS: [&str; 4] = [
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "client",
];

/// How to reach UPS. `Debug` is written by hand: the credentials never reach a log.
#[derive(Clone)]
pub struct UpsSettings {
    /// Scheme, host and any path prefix the UPS paths hang off ([`DEFAULT_BASE_URL`]).
    pub base_url: String,
    /// The app's Client ID (HTTP Basic user on the token call).
    pub client_id: SecretString,
    /// The app's Client Secret (HTTP Basic password on the token call).
    pub client_secret: SecretString,
    /// The `transactionSrc` header UPS requires on every tracking call.
    pub transaction_source: String,
    /// The optional `x-merchant-id` (6-digit UPS account number) on the token call.
    pub merchant_id: Option<String>,
}

impl UpsSettings {
    /// Production UPS with these credentials.
    pub fn new(client_id: SecretString, client_secret: SecretString) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            client_id,
            client_secret,
            transaction_source: DEFAULT_TRANSACTION_SOURCE.to_owned(),
            merchant_id: None,
        }
    }
}

impl fmt::Debug for UpsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpsSettings")
            .field("base_url", &call::without_userinfo(&self.base_url, "***"))
            .field("client_id", &"***")
            .field("client_secret", &"***")
            .field("transaction_source", &self.transaction_source)
            .field("merchant_id", &self.merchant_id)
            .finish()
    }
}

/// UPS tracking, with its access token cached until shortly before it expires.
pub struct UpsClient {
    http: reqwest::Client,
    base: Url,
    client_id: SecretString,
    client_secret: SecretString,
    transaction_source: String,
    merchant_id: Option<String>,
    clock: SharedClock,
    retry: RetryPolicy,
    tokens: TokenCache,
    /// Makes every `transId` unique, even within one clock tick.
    requests: AtomicU64,
}

impl fmt::Debug for UpsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpsClient")
            .field("base", &call::without_userinfo(self.base.as_str(), "***"))
            .finish_non_exhaustive()
    }
}

impl UpsClient {
    pub fn new(
        settings: UpsSettings,
        clock: SharedClock,
        retry: RetryPolicy,
    ) -> Result<Self, CarrierError> {
        let base = call::parse_base_url(&settings.base_url, Carrier::Ups)
            .map_err(CarrierError::upstream(Carrier::Ups, "settings"))?;
        let http = call::http_client(Carrier::Ups, "settings")?;
        Ok(Self {
            http,
            base,
            client_id: settings.client_id,
            client_secret: settings.client_secret,
            transaction_source: settings.transaction_source,
            merchant_id: settings.merchant_id,
            tokens: TokenCache::new(clock.clone()),
            clock,
            retry,
            requests: AtomicU64::new(0),
        })
    }

    /// A `transId` for one request (UPS allows up to 32 characters).
    fn transaction_id(&self) -> String {
        let sequence = self.requests.fetch_add(1, Ordering::Relaxed);
        format!(
            "nd{:x}{:04x}{:08x}",
            self.clock.now().timestamp_millis(),
            sequence & 0xffff,
            rand::random::<u32>()
        )
    }

    async fn fetch_token(&self) -> Result<FetchedToken, UpstreamError> {
        let mut request = self
            .http
            .post(call::join(
                &self.base,
                &["security", "v1", "oauth", "token"],
            ))
            .basic_auth(
                self.client_id.expose_secret(),
                Some(self.client_secret.expose_secret()),
            )
            .header(ACCEPT, "application/json")
            .form(&[("grant_type", "client_credentials")]);
        if let Some(merchant) = &self.merchant_id {
            request = request.header("x-merchant-id", merchant);
        }
        call::fetch_token(
            request,
            |reply| read_token(&reply.body),
            |reply| {
                // Only UPS's error codes and words are kept: the body is not echoed whole.
                let detail = describe_errors(&error_messages(&reply.body));
                let refused = call::token_refused(reply.status, &detail, &CREDENTIAL_WORDS);
                (detail, refused)
            },
        )
        .await
    }

    /// One GET; 429 and 5xx come back as errors so `with_retry` retries them.
    async fn send_track(&self, token: &SecretString, number: &str) -> Result<Reply, UpstreamError> {
        let request = self
            .http
            .get(call::join(
                &self.base,
                &["api", "track", "v1", "details", number],
            ))
            .query(&[
                ("locale", "en_US"),
                ("returnSignature", "false"),
                ("returnMilestones", "false"),
                ("returnPOD", "false"),
            ])
            .bearer_auth(token.expose_secret())
            .header("transId", self.transaction_id())
            .header("transactionSrc", self.transaction_source.as_str())
            .header(ACCEPT, "application/json");
        call::keep_or_error(
            http::send(request).await?,
            |status| !call::is_retryable_status(status),
            |body| describe_errors(&error_messages(body)),
        )
    }

    /// The tracking call with the cached token; a 401 drops the token and the call is
    /// made once more with a fresh one (UPS may end a token before its `expires_in`).
    async fn call_track(&self, number: &str) -> Result<Reply, CarrierError> {
        call::with_token(
            &self.tokens,
            || {
                self.tokens
                    .get_for(Carrier::Ups, "token", self.retry, || self.fetch_token())
            },
            |token| async move {
                http::with_retry(self.retry, "ups.track", || self.send_track(&token, number))
                    .await
                    .map_err(CarrierError::upstream(Carrier::Ups, "track"))
            },
            |reply: &Reply| reply.status == StatusCode::UNAUTHORIZED,
        )
        .await
    }

    async fn track_one(&self, query: &ParcelQuery) -> Result<Vec<TrackOutcome>, CarrierError> {
        let number = query.tracking_number.trim();
        let reply = self.call_track(number).await?;
        let failed = CarrierError::upstream(Carrier::Ups, "track");
        if reply.status.is_success() {
            return parse_track_response(&reply.body, number).map_err(failed);
        }
        if let Some(outcome) = parse_error_response(&reply.body, number) {
            return Ok(vec![outcome]);
        }
        let detail = describe_errors(&error_messages(&reply.body));
        // "Blocked Merchant": no retry helps until a person sorts it out with UPS.
        let blocked = reply.status == StatusCode::FORBIDDEN;
        Err(failed(call::status_error(&reply, detail, blocked)))
    }
}

#[async_trait]
impl CarrierClient for UpsClient {
    fn carrier(&self) -> Carrier {
        Carrier::Ups
    }

    /// The Track API answers one inquiry number per call.
    fn batch_limit(&self) -> usize {
        1
    }

    async fn track(&self, batch: &[ParcelQuery]) -> Result<Vec<TrackOutcome>, CarrierError> {
        let mut outcomes = Vec::new();
        for query in batch {
            outcomes.extend(self.track_one(query).await?);
        }
        Ok(outcomes)
    }
}

/// Reads a 200 of `GET /track/v1/details/{inquiryNumber}` asked for `inquiry_number`.
/// A shipment with packages gives one `Found` per package; one with only the
/// `TW0001` warning is `NotFound` (UPS's not-found is a 200, research §3).
pub fn parse_track_response(
    body: &str,
    inquiry_number: &str,
) -> Result<Vec<TrackOutcome>, UpstreamError> {
    let answer: TrackApiResponse =
        serde_json::from_str(body).map_err(|e| malformed(e.to_string()))?;
    let shipments = answer
        .track_response
        .and_then(|t| t.shipment)
        .unwrap_or_default();
    if shipments.is_empty() {
        return Err(malformed("no trackResponse.shipment".to_owned()));
    }
    let mut outcomes = Vec::new();
    for shipment in &shipments {
        let packages = shipment.package.as_deref().unwrap_or_default();
        if packages.is_empty() {
            outcomes.push(outcome_without_package(
                inquiry_number,
                shipment.warnings.as_deref().unwrap_or_default(),
            ));
            continue;
        }
        for package in packages {
            outcomes.push(TrackOutcome::Found(read_package(
                package,
                shipment,
                inquiry_number,
            )?));
        }
    }
    Ok(outcomes)
}

/// What an error answer (`{"response":{"errors":[…]}}`) says about the number, when it
/// is about the number: `TW0001` not found, `TV1002` an invalid inquiry number.
pub fn parse_error_response(body: &str, inquiry_number: &str) -> Option<TrackOutcome> {
    let messages = error_messages(body);
    let code_is = |wanted: &str| {
        messages
            .iter()
            .any(|m| m.code.as_deref().is_some_and(|c| c.trim() == wanted))
    };
    let detail = describe_errors(&messages);
    if code_is(NOT_FOUND_WARNING) {
        Some(TrackOutcome::NotFound {
            tracking_number: inquiry_number.to_owned(),
            detail,
        })
    } else if code_is(INVALID_NUMBER_ERROR) {
        Some(TrackOutcome::Rejected {
            tracking_number: inquiry_number.to_owned(),
            detail,
        })
    } else {
        None
    }
}

/// UPS's status on one activity (or the package's current status), normalised.
/// `status_code` is the 3-digit `statusCode`, `code` the 2-character `code` (some
/// answers put the 3-digit code there, e.g. `currentStatus`), `kind` the `type`.
pub fn map_status(
    status_code: Option<&str>,
    code: Option<&str>,
    kind: Option<&str>,
) -> (TrackingStatus, Option<ExceptionReason>) {
    let (status_code, code, kind) = (clean(status_code), clean(code), clean(kind));
    let is_three_digit = |s: &&str| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit());
    let three_digit = status_code
        .filter(is_three_digit)
        .or_else(|| code.filter(is_three_digit));
    let two_char = code.filter(|c| !is_three_digit(c));
    let by_code = two_char.and_then(by_two_char_code);
    if let Some((status, reason)) = three_digit.and_then(by_status_code) {
        // The 2-character code may name the exception more precisely (AA–AG: address).
        let reason = match (reason, by_code) {
            (Some(ExceptionReason::Other), Some((TrackingStatus::Exception, Some(finer)))) => {
                Some(finer)
            }
            (reason, _) => reason,
        };
        return (status, reason);
    }
    if let Some(mapped) = by_code {
        return mapped;
    }
    by_type(kind)
}

/// The 3-digit status codes (research §2.2, from the table users posted in
/// UPS-API/api-documentation#7; UPS publishes none in the contract).
fn by_status_code(code: &str) -> Option<(TrackingStatus, Option<ExceptionReason>)> {
    use ExceptionReason as R;
    use TrackingStatus as S;
    Some(match code {
        // "Shipper created a label, UPS has not received the package yet" (type M).
        "003" => (S::LabelCreated, None),
        // "Package is in transit" in live answers, next to 005.
        "004" | "005" | "012" | "019" | "025" | "028" | "071" => (S::InTransit, None),
        // "On its way to UPS": UPS does not have the parcel yet.
        "044" => (S::LabelCreated, None),
        "011" => (S::Delivered, None),
        "013" | "054" => (S::Exception, Some(R::Other)),
        "027" | "029" => (S::Exception, Some(R::Address)),
        "017" | "040" => (S::AvailableForPickup, None),
        "021" => (S::OutForDelivery, None),
        "022" => (S::DeliveryAttempted, None),
        "048" | "051" | "052" | "053" => (S::Exception, Some(R::Delay)),
        _ => return None,
    })
}

/// The 2-character codes seen in UPS answers (research §2.2; `OR` and `IT` from live
/// answers, where they come with in-transit descriptions).
fn by_two_char_code(code: &str) -> Option<(TrackingStatus, Option<ExceptionReason>)> {
    use ExceptionReason as R;
    use TrackingStatus as S;
    Some(match code.to_ascii_uppercase().as_str() {
        "OT" => (S::OutForDelivery, None),
        "MP" => (S::LabelCreated, None),
        "DP" | "AR" | "AF" | "DS" | "OR" | "IT" | "SR" | "YP" => (S::InTransit, None),
        "FS" | "KB" | "9E" | "AI" => (S::Delivered, None),
        "ZP" | "ZQ" => (S::AvailableForPickup, None),
        // AF is also "arrival" above; 029 answers carry their 3-digit code anyway.
        "AA" | "AB" | "AC" | "AD" | "AE" | "AG" => (S::Exception, Some(R::Address)),
        _ => return None,
    })
}

/// The status `type` alone: the last resort, as it lumps states together.
fn by_type(kind: Option<&str>) -> (TrackingStatus, Option<ExceptionReason>) {
    use TrackingStatus as S;
    match kind.map(str::to_ascii_uppercase).as_deref() {
        Some("M") => (S::LabelCreated, None),
        Some("MV") => (S::Cancelled, None),
        Some("P" | "I") => (S::InTransit, None),
        // "Delivery information": loaded on the vehicle, out for delivery or delivered.
        // Delivered scans carry a code the tables above know; anything else under D is
        // not claimed as a delivery, which could never be taken back.
        Some("D") => (S::OutForDelivery, None),
        Some("X") => (S::Exception, Some(ExceptionReason::Other)),
        Some("RS") => (S::ReturnToSender, None),
        // U (updated delivery date) and anything unknown say nothing about where the
        // parcel is.
        _ => (S::Unknown, None),
    }
}

fn outcome_without_package(inquiry_number: &str, warnings: &[Message]) -> TrackOutcome {
    let detail = describe_errors(warnings);
    let not_found = warnings.is_empty()
        || warnings.iter().any(|w| {
            w.code
                .as_deref()
                .is_some_and(|c| c.trim() == NOT_FOUND_WARNING)
        });
    if not_found {
        TrackOutcome::NotFound {
            tracking_number: inquiry_number.to_owned(),
            detail: if detail.is_empty() {
                "UPS answered without a package".to_owned()
            } else {
                detail
            },
        }
    } else {
        TrackOutcome::Rejected {
            tracking_number: inquiry_number.to_owned(),
            detail,
        }
    }
}

fn read_package(
    package: &Package,
    shipment: &Shipment,
    inquiry_number: &str,
) -> Result<CarrierParcel, UpstreamError> {
    let mut events = Vec::new();
    for activity in package.activity.as_deref().unwrap_or_default() {
        if let Some(event) = read_activity(activity)? {
            events.push(event);
        }
    }
    let current = package
        .current_status
        .as_ref()
        .zip(events.iter().max_by_key(|e| e.at.sort_key()))
        .map(|(status, newest)| {
            let (mapped, reason) = map_status(
                status.status_code.as_deref(),
                status.code.as_deref(),
                status.kind.as_deref(),
            );
            // The current status has no time of its own: it holds since the newest scan.
            CarrierEvent {
                at: newest.at,
                status: mapped,
                reason,
                raw_code: raw_code(status),
                text: status_text(status),
                location: newest.location.clone(),
                correction: false,
            }
        });
    // The query names the parcel; a package under another number is told apart.
    let package_number = package
        .tracking_number
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty() && !same_number(n, inquiry_number));
    Ok(CarrierParcel {
        tracking_number: inquiry_number.to_owned(),
        carrier_shipment_id: package_number.map(str::to_owned),
        ship_date: ship_date(shipment, package),
        service: package
            .service
            .as_ref()
            .and_then(|s| s.description.as_deref())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        estimated_delivery: estimated_delivery(package),
        events,
        current,
    })
}

fn read_activity(activity: &Activity) -> Result<Option<CarrierEvent>, UpstreamError> {
    let location = activity
        .location
        .as_ref()
        .and_then(|l| l.address.as_ref())
        .map(location_of)
        .unwrap_or_default();
    // An activity without a date (seen on label-created scans) cannot be placed in time.
    let Some(at) = activity_time(activity, &location)? else {
        return Ok(None);
    };
    let status = activity.status.clone().unwrap_or_default();
    let (mapped, reason) = map_status(
        status.status_code.as_deref(),
        status.code.as_deref(),
        status.kind.as_deref(),
    );
    Ok(Some(CarrierEvent {
        at,
        status: mapped,
        reason,
        raw_code: raw_code(&status),
        text: status_text(&status),
        location,
        correction: false,
    }))
}

/// `date`+`time` as local wall time; the instant from `gmtDate`+`gmtTime` when UPS
/// sends them, else from `gmtOffset`, else from the place.
fn activity_time(
    activity: &Activity,
    location: &EventLocation,
) -> Result<Option<EventTime>, UpstreamError> {
    let Some(date) = non_empty(&activity.date) else {
        return Ok(None);
    };
    let date = parse_date(date).ok_or_else(|| malformed(format!("activity date {date:?}")))?;
    let time = match non_empty(&activity.time) {
        Some(time) => {
            parse_time(time).ok_or_else(|| malformed(format!("activity time {time:?}")))?
        }
        // No time: the start of the day, so the scan still sorts by its date.
        None => NaiveTime::MIN,
    };
    let local = date.and_time(time);
    if let (Some(gmt_date), Some(gmt_time)) =
        (non_empty(&activity.gmt_date), non_empty(&activity.gmt_time))
    {
        let gmt_date = parse_date(gmt_date)
            .ok_or_else(|| malformed(format!("activity gmtDate {gmt_date:?}")))?;
        let gmt_time = parse_time(gmt_time)
            .ok_or_else(|| malformed(format!("activity gmtTime {gmt_time:?}")))?;
        return Ok(Some(EventTime {
            local,
            utc: Some(gmt_date.and_time(gmt_time).and_utc()),
            zone: ZoneSource::Carrier,
        }));
    }
    Ok(Some(EventTime::local_with_offset(
        local,
        non_empty(&activity.gmt_offset),
        location,
    )))
}

/// The pickup date when UPS gives one (`pickupDate`, seen in live answers though not in
/// the contract), else the date of the manifest (type `M`: label created) activity.
fn ship_date(shipment: &Shipment, package: &Package) -> Option<NaiveDate> {
    if let Some(date) = non_empty(&shipment.pickup_date).and_then(parse_date) {
        return Some(date);
    }
    package
        .activity
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|a| {
            a.status
                .as_ref()
                .and_then(|s| s.kind.as_deref())
                .is_some_and(|k| k.trim().eq_ignore_ascii_case("M"))
        })
        .filter_map(|a| non_empty(&a.date).and_then(parse_date))
        .min()
}

/// The delivered date (`DEL`), else the rescheduled (`RDD`), else the scheduled (`SDD`),
/// at `deliveryTime.endTime` or else the end of that day, in the destination's zone.
/// Unknown when the destination names no zone: a date is not an instant.
fn estimated_delivery(package: &Package) -> Option<DateTime<Utc>> {
    let dates = package.delivery_date.as_deref().unwrap_or_default();
    let date = ["DEL", "RDD", "SDD"].iter().find_map(|wanted| {
        dates
            .iter()
            .filter(|d| {
                d.kind
                    .as_deref()
                    .is_some_and(|k| k.trim().eq_ignore_ascii_case(wanted))
            })
            .find_map(|d| non_empty(&d.date).and_then(parse_date))
    })?;
    let end_of_day = NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN);
    let time = package
        .delivery_time
        .as_ref()
        .filter(|t| {
            t.kind.as_deref().is_some_and(|k| {
                ["CMT", "EDW", "CDW", "IDW", "DEL"]
                    .contains(&k.trim().to_ascii_uppercase().as_str())
            })
        })
        .and_then(|t| non_empty(&t.end_time).and_then(parse_time))
        .unwrap_or(end_of_day);
    let destination = package
        .package_address
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|a| {
            a.kind
                .as_deref()
                .is_some_and(|k| k.trim().eq_ignore_ascii_case("DESTINATION"))
        })
        .and_then(|a| a.address.as_ref())
        .map(location_of)?;
    let zone = zone_of(&destination)?;
    zone.from_local_datetime(&date.and_time(time))
        .earliest()
        .map(|at| at.with_timezone(&Utc))
}

fn read_token(body: &str) -> Result<FetchedToken, UpstreamError> {
    let token: TokenReply = serde_json::from_str(body).map_err(|e| UpstreamError::Malformed {
        what: "UPS token response".to_owned(),
        reason: e.to_string(),
    })?;
    // `expires_in` is a string of seconds in UPS's contract.
    let seconds = token
        .expires_in
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|s| *s > 0);
    match seconds {
        Some(seconds) if !token.access_token.is_empty() => Ok(FetchedToken {
            token: SecretString::from(token.access_token),
            expires_in: Duration::seconds(seconds),
        }),
        _ => Err(UpstreamError::Malformed {
            what: "UPS token response".to_owned(),
            reason: "empty access_token or expires_in not a positive number of seconds".to_owned(),
        }),
    }
}

/// The `{code, message}` list of an error or warning body; empty when unreadable.
fn error_messages(body: &str) -> Vec<Message> {
    serde_json::from_str::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.response)
        .and_then(|r| r.errors)
        .unwrap_or_default()
}

/// `CODE: message; …`, short; never the body itself.
fn describe_errors(messages: &[Message]) -> String {
    let text = messages
        .iter()
        .map(|m| {
            let code = m.code.as_deref().unwrap_or_default().trim();
            let message = m.message.as_deref().unwrap_or_default().trim();
            match (code.is_empty(), message.is_empty()) {
                (false, false) => format!("{code}: {message}"),
                (false, true) => code.to_owned(),
                _ => message.to_owned(),
            }
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    http::summarize(&text)
}

/// `type/code/statusCode` as UPS sent them (`I/OT/021`), skipping what is missing.
fn raw_code(status: &Status) -> String {
    [&status.kind, &status.code, &status.status_code]
        .into_iter()
        .filter_map(|part| non_empty(part))
        .collect::<Vec<_>>()
        .join("/")
}

fn status_text(status: &Status) -> String {
    non_empty(&status.description)
        .or_else(|| non_empty(&status.simplified_text_description))
        .unwrap_or_default()
        .to_owned()
}

fn location_of(address: &Address) -> EventLocation {
    let owned = |s: &Option<String>| non_empty(s).map(str::to_owned);
    EventLocation {
        city: owned(&address.city),
        state: owned(&address.state_province),
        postcode: owned(&address.postal_code),
        country: owned(&address.country_code).or_else(|| owned(&address.country)),
    }
}

/// `YYYYMMDD`.
fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y%m%d").ok()
}

/// `HHMMSS`, also `HH:MM:SS` and with the leading zero dropped (`74700`, the contract's
/// own `gmtTime` example).
fn parse_time(text: &str) -> Option<NaiveTime> {
    let digits: String = text.trim().chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let padded = format!("{digits:0>6}");
    let part =
        |range: std::ops::Range<usize>| padded.get(range).and_then(|p| p.parse::<u32>().ok());
    NaiveTime::from_hms_opt(part(0..2)?, part(2..4)?, part(4..6)?)
}

fn same_number(a: &str, b: &str) -> bool {
    let normal = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase()
    };
    normal(a) == normal(b)
}

fn clean(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|s| !s.is_empty())
}

fn non_empty(text: &Option<String>) -> Option<&str> {
    text.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn malformed(reason: String) -> UpstreamError {
    UpstreamError::Malformed {
        what: "UPS tracking response".to_owned(),
        reason,
    }
}

// Wire types, field by field from Tracking.yaml and OAuthClientCredentials.yaml. Every
// field is optional in the contract; unknown fields are ignored.

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TrackApiResponse {
    track_response: Option<TrackResponse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TrackResponse {
    shipment: Option<Vec<Shipment>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Shipment {
    package: Option<Vec<Package>>,
    warnings: Option<Vec<Message>>,
    /// Not in the contract; live answers carry it (`YYYYMMDD`).
    pickup_date: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Package {
    tracking_number: Option<String>,
    current_status: Option<Status>,
    activity: Option<Vec<Activity>>,
    delivery_date: Option<Vec<DeliveryDate>>,
    delivery_time: Option<DeliveryTime>,
    package_address: Option<Vec<PackageAddress>>,
    service: Option<Service>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Status {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    status_code: Option<String>,
    description: Option<String>,
    simplified_text_description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Activity {
    date: Option<String>,
    time: Option<String>,
    gmt_date: Option<String>,
    gmt_time: Option<String>,
    gmt_offset: Option<String>,
    location: Option<Location>,
    status: Option<Status>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Location {
    address: Option<Address>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Address {
    city: Option<String>,
    state_province: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
    country_code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DeliveryDate {
    date: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DeliveryTime {
    end_time: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PackageAddress {
    address: Option<Address>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Service {
    description: Option<String>,
}

/// A warning (`Warning`) or an error (`Error`): both are `{code, message}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Message {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorBody {
    response: Option<ErrorList>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorList {
    errors: Option<Vec<Message>>,
}

/// `tokenSuccessResponse`: every field a string, `expires_in` included.
#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    expires_in: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap_or_default()
    }

    fn utc(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    fn found(outcomes: &[TrackOutcome]) -> Vec<&CarrierParcel> {
        outcomes
            .iter()
            .filter_map(|o| match o {
                TrackOutcome::Found(parcel) => Some(parcel),
                _ => None,
            })
            .collect()
    }

    fn parse_one(body: &str) -> CarrierParcel {
        match parse_track_response(body, "1Z023E2X0214323462") {
            Ok(outcomes) => match found(&outcomes).as_slice() {
                [parcel] => (*parcel).clone(),
                other => panic!("expected one parcel, got {other:?}"),
            },
            Err(e) => panic!("the body should parse: {e}"),
        }
    }

    /// (statusCode, code, type) and what they must map to.
    type Row = (
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        TrackingStatus,
        Option<ExceptionReason>,
    );

    #[test]
    fn every_code_in_the_research_maps_as_the_table_says() {
        use ExceptionReason as R;
        use TrackingStatus as S;
        let table: &[Row] = &[
            (Some("003"), Some("MP"), Some("M"), S::LabelCreated, None),
            (Some("004"), Some("IT"), Some("I"), S::InTransit, None),
            (Some("005"), Some("DP"), Some("I"), S::InTransit, None),
            (Some("011"), Some("FS"), Some("D"), S::Delivered, None),
            (Some("012"), None, Some("I"), S::InTransit, None),
            (Some("013"), None, Some("X"), S::Exception, Some(R::Other)),
            (
                Some("017"),
                Some("ZQ"),
                Some("I"),
                S::AvailableForPickup,
                None,
            ),
            (Some("019"), None, Some("X"), S::InTransit, None),
            (Some("021"), Some("OT"), Some("I"), S::OutForDelivery, None),
            (Some("022"), None, Some("X"), S::DeliveryAttempted, None),
            (Some("025"), None, Some("I"), S::InTransit, None),
            (Some("027"), None, Some("X"), S::Exception, Some(R::Address)),
            (Some("028"), None, Some("I"), S::InTransit, None),
            (
                Some("029"),
                Some("AA"),
                Some("X"),
                S::Exception,
                Some(R::Address),
            ),
            (
                Some("040"),
                Some("ZP"),
                Some("D"),
                S::AvailableForPickup,
                None,
            ),
            (Some("044"), None, Some("I"), S::LabelCreated, None),
            (Some("048"), None, Some("X"), S::Exception, Some(R::Delay)),
            (Some("051"), None, Some("X"), S::Exception, Some(R::Delay)),
            (Some("052"), None, Some("X"), S::Exception, Some(R::Delay)),
            (Some("053"), None, Some("X"), S::Exception, Some(R::Delay)),
            (Some("054"), None, Some("X"), S::Exception, Some(R::Other)),
            (Some("071"), Some("YP"), Some("I"), S::InTransit, None),
            // 013 with an address code: the finer reason wins.
            (
                Some("013"),
                Some("AD"),
                Some("X"),
                S::Exception,
                Some(R::Address),
            ),
            // No 3-digit code: the 2-character code.
            (None, Some("OT"), Some("I"), S::OutForDelivery, None),
            (None, Some("MP"), Some("M"), S::LabelCreated, None),
            (None, Some("AR"), None, S::InTransit, None),
            (None, Some("AF"), None, S::InTransit, None),
            (None, Some("DS"), None, S::InTransit, None),
            (None, Some("SR"), Some("X"), S::InTransit, None),
            (None, Some("FS"), Some("D"), S::Delivered, None),
            (None, Some("KB"), Some("D"), S::Delivered, None),
            (None, Some("9E"), Some("D"), S::Delivered, None),
            (None, Some("AI"), None, S::Delivered, None),
            (None, Some("ZP"), None, S::AvailableForPickup, None),
            (None, Some("AG"), None, S::Exception, Some(R::Address)),
            // An unknown 3-digit code falls through to the code, then the type.
            (Some("160"), Some("OR"), Some("I"), S::InTransit, None),
            (
                Some("999"),
                Some("ZZ"),
                Some("X"),
                S::Exception,
                Some(R::Other),
            ),
            // The type alone.
            (None, None, Some("M"), S::LabelCreated, None),
            (None, None, Some("MV"), S::Cancelled, None),
            (None, None, Some("P"), S::InTransit, None),
            (None, None, Some("I"), S::InTransit, None),
            (None, None, Some("D"), S::OutForDelivery, None),
            (None, None, Some("X"), S::Exception, Some(R::Other)),
            (None, None, Some("RS"), S::ReturnToSender, None),
            (None, None, Some("U"), S::Unknown, None),
            (None, None, None, S::Unknown, None),
            // currentStatus puts the 3-digit code in `code`.
            (None, Some("005"), None, S::InTransit, None),
            (None, Some("011"), Some("D"), S::Delivered, None),
        ];
        for (status_code, code, kind, status, reason) in table {
            assert_eq!(
                map_status(*status_code, *code, *kind),
                (*status, *reason),
                "{kind:?}/{code:?}/{status_code:?}"
            );
        }
    }

    /// The contract has no whole example body; this one is assembled from its
    /// property examples (Shipment, Activity, Status, Address, Location, Service…).
    const CONTRACT_EXAMPLES: &str = r#"{
      "trackResponse": {"shipment": [{
        "inquiryNumber": "1Z023E2X0214323462",
        "userRelation": ["MYCHOICE_HOME"],
        "package": [{
          "activity": [{
            "date": "20210210", "time": "071356",
            "gmtDate": "20210210", "gmtTime": "74700", "gmtOffset": "-05:00",
            "location": {"address": {"addressLine1": "100 Main St", "addressLine2": "Warehouse",
              "addressLine3": "Building 1", "city": "Wayne", "country": "US",
              "countryCode": "US", "postalCode": "07470", "stateProvince": "NJ"},
              "slic": "8566"},
            "status": {"code": "SR", "description": "Your package was released by the customs agency.",
              "simplifiedTextDescription": "Delivered", "statusCode": "003", "type": "X"},
            "logicalScan": false
          }],
          "additionalAttributes": ["SENSOR_EVENT"],
          "alternateTrackingNumber": [{"number": "92419900000033499522966220", "type": "USPS_PIC"}],
          "currentStatus": {"code": "SR", "description": "Your package was released by the customs agency.",
            "simplifiedTextDescription": "Delivered", "statusCode": "003", "type": "X"},
          "packageAddress": [{"address": {"city": "Wayne", "countryCode": "US", "postalCode": "07470",
            "stateProvince": "NJ"}, "name": "Sears", "type": "ORIGIN/DESTINATION"}],
          "packageCount": 2,
          "referenceNumber": [{"number": "ShipRef123", "type": "SHIPMENT"}],
          "service": {"code": "518", "description": "UPS Ground", "levelCode": "011"},
          "suppressionIndicators": ["DETAIL"],
          "trackingNumber": "1Z023E2X0214323462"
        }]
      }]}
    }"#;

    #[test]
    fn the_contracts_own_examples_parse_and_the_status_code_leads() {
        let parcel = parse_one(CONTRACT_EXAMPLES);
        assert_eq!(parcel.tracking_number, "1Z023E2X0214323462");
        assert_eq!(parcel.carrier_shipment_id, None);
        assert_eq!(parcel.service.as_deref(), Some("UPS Ground"));
        let [event] = parcel.events.as_slice() else {
            panic!("one activity, got {:?}", parcel.events)
        };
        // statusCode 003 wins over type X and code SR.
        assert_eq!(
            (event.status, event.reason),
            (TrackingStatus::LabelCreated, None)
        );
        assert_eq!(event.raw_code, "X/SR/003");
        assert_eq!(
            event.text,
            "Your package was released by the customs agency."
        );
        assert_eq!(event.location.city.as_deref(), Some("Wayne"));
        assert_eq!(event.location.state.as_deref(), Some("NJ"));
        // gmtDate+gmtTime is the instant, "74700" being 07:47:00 with its zero dropped.
        assert_eq!(event.at.local, local("2021-02-10 07:13:56"));
        assert_eq!(event.at.utc, utc("2021-02-10T07:47:00Z"));
        assert_eq!(event.at.zone, ZoneSource::Carrier);
        let current = parcel
            .current
            .as_ref()
            .map(|c| (c.status, c.raw_code.as_str()));
        assert_eq!(current, Some((TrackingStatus::LabelCreated, "X/SR/003")));
        // "ORIGIN/DESTINATION" is no DESTINATION, and there is no delivery date anyway.
        assert_eq!(parcel.estimated_delivery, None);
    }

    /// The shape of a live answer: newest activity first, GMT time with colons,
    /// `currentStatus` carrying the 3-digit code in `code`.
    const OUT_FOR_DELIVERY: &str = r#"{
      "trackResponse": {"shipment": [{
        "inquiryNumber": "1Z023E2X0214323462", "pickupDate": "20251208",
        "package": [{
          "trackingNumber": "1Z023E2X0214323462",
          "deliveryDate": [{"type": "SDD", "date": "20251211"}, {"type": "RDD", "date": "20251212"}],
          "deliveryTime": {"type": "EOD"},
          "currentStatus": {"description": "Out for Delivery", "code": "021"},
          "packageAddress": [
            {"type": "ORIGIN", "address": {"city": "ATLANTA", "stateProvince": "GA", "countryCode": "US"}},
            {"type": "DESTINATION", "address": {"city": "DENVER", "stateProvince": "CO", "countryCode": "US"}}
          ],
          "service": {"code": "003", "description": "UPS Ground"},
          "activity": [
            {"location": {"address": {"city": "DENVER", "stateProvince": "CO", "countryCode": "US"}},
             "status": {"type": "I", "description": "Out For Delivery Today", "code": "OT", "statusCode": "021"},
             "date": "20251212", "time": "071500", "gmtDate": "20251212", "gmtOffset": "-07:00", "gmtTime": "14:15:00"},
            {"location": {"address": {"city": "DENVER", "stateProvince": "CO", "countryCode": "US"}},
             "status": {"type": "I", "description": "Arrived at Facility", "code": "AR", "statusCode": "005"},
             "date": "20251211", "time": "223000", "gmtDate": "20251212", "gmtOffset": "-07:00", "gmtTime": "05:30:00"},
            {"location": {"address": {"countryCode": "US", "country": "US"}},
             "status": {"type": "M", "description": "Shipper created a label, UPS has not received the package yet. ",
                        "code": "MP", "statusCode": "003"},
             "date": "20251207", "time": "114024", "gmtDate": "20251207", "gmtOffset": "-05:00", "gmtTime": "16:40:24"}
          ]
        }]
      }]}
    }"#;

    #[test]
    fn out_for_delivery_is_read_from_i_ot_021_not_as_in_transit() {
        let parcel = parse_one(OUT_FOR_DELIVERY);
        let statuses: Vec<(TrackingStatus, &str)> = parcel
            .events
            .iter()
            .map(|e| (e.status, e.raw_code.as_str()))
            .collect();
        assert_eq!(
            statuses,
            vec![
                (TrackingStatus::OutForDelivery, "I/OT/021"),
                (TrackingStatus::InTransit, "I/AR/005"),
                (TrackingStatus::LabelCreated, "M/MP/003"),
            ]
        );
        let current = parcel
            .current
            .as_ref()
            .map(|c| (c.status, c.raw_code.as_str(), c.at));
        assert_eq!(
            current,
            Some((TrackingStatus::OutForDelivery, "021", parcel.events[0].at))
        );
        // The activity crossing midnight UTC keeps its local date and GMT instant.
        assert_eq!(parcel.events[1].at.local, local("2025-12-11 22:30:00"));
        assert_eq!(parcel.events[1].at.utc, utc("2025-12-12T05:30:00Z"));
        assert_eq!(
            parcel.events[2].text,
            "Shipper created a label, UPS has not received the package yet."
        );
        // pickupDate first; RDD over SDD, end of day in Denver (MST, -7).
        assert_eq!(parcel.ship_date, NaiveDate::from_ymd_opt(2025, 12, 8));
        assert_eq!(parcel.estimated_delivery, utc("2025-12-13T06:59:59Z"));
    }

    #[test]
    fn local_times_resolve_by_offset_or_place_and_otherwise_stay_unresolved() {
        let body = |activity: &str| {
            format!(
                r#"{{"trackResponse":{{"shipment":[{{"package":[{{"trackingNumber":"1Z023E2X0214323462",
                "activity":[{activity}]}}]}}]}}}}"#
            )
        };
        let at = |activity: &str| {
            let parcel = parse_one(&body(activity));
            match parcel.events.as_slice() {
                [event] => event.at,
                other => panic!("one event expected, got {other:?}"),
            }
        };
        // gmtOffset alone.
        let by_offset = at(r#"{"date":"20241122","time":"135800","gmtOffset":"-05:00",
            "location":{"address":{"countryCode":"DE"}},"status":{"type":"I","code":"AR"}}"#);
        assert_eq!(by_offset.zone, ZoneSource::Carrier);
        assert_eq!(by_offset.utc, utc("2024-11-22T18:58:00Z"));
        // No GMT field: Atlanta, GA is Eastern (-5 in November).
        let by_place = at(r#"{"date":"20241122","time":"135800",
            "location":{"address":{"city":"ATLANTA","stateProvince":"GA","countryCode":"US"}},
            "status":{"type":"I","code":"AR"}}"#);
        assert_eq!(by_place.zone, ZoneSource::Location);
        assert_eq!(by_place.utc, utc("2024-11-22T18:58:00Z"));
        // A US place without a state names no zone: local time only, never UTC.
        let unresolved = at(r#"{"date":"20241122","time":"135800",
            "location":{"address":{"countryCode":"US"}},"status":{"type":"I","code":"AR"}}"#);
        assert_eq!(unresolved.zone, ZoneSource::Unresolved);
        assert_eq!(unresolved.utc, None);
        assert_eq!(unresolved.local, local("2024-11-22 13:58:00"));
    }

    #[test]
    fn a_new_label_is_not_found_and_an_invalid_number_is_rejected() {
        let not_found = r#"{"trackResponse":{"shipment":[{"warnings":[
            {"code":"TW0001","message":"Tracking Information Not Found"}]}]}}"#;
        assert_eq!(
            parse_track_response(not_found, "1Z999AA10123456784"),
            Ok(vec![TrackOutcome::NotFound {
                tracking_number: "1Z999AA10123456784".to_owned(),
                detail: "TW0001: Tracking Information Not Found".to_owned(),
            }])
        );
        let invalid =
            r#"{"response":{"errors":[{"code":"TV1002","message":"Invalid inquiry number"}]}}"#;
        assert_eq!(
            parse_error_response(invalid, "1Z"),
            Some(TrackOutcome::Rejected {
                tracking_number: "1Z".to_owned(),
                detail: "TV1002: Invalid inquiry number".to_owned(),
            })
        );
        // A 404 carrying TW0001 is the same not-found.
        let as_error = r#"{"response":{"errors":[{"code":"TW0001","message":"Tracking Information Not Found"}]}}"#;
        assert!(matches!(
            parse_error_response(as_error, "1Z999AA10123456784"),
            Some(TrackOutcome::NotFound { .. })
        ));
        let other = r#"{"response":{"errors":[{"code":"250002","message":"Invalid Authentication Information."}]}}"#;
        assert_eq!(parse_error_response(other, "1Z999AA10123456784"), None);
    }

    #[test]
    fn bodies_that_break_the_contract_are_malformed_not_panics() {
        let cases = [
            "",
            "{\"trackResponse\":",
            "{}",
            r#"{"trackResponse":{"shipment":"1Z"}}"#,
            r#"{"trackResponse":{"shipment":[]}}"#,
            r#"{"trackResponse":{"shipment":[{"package":[{"activity":{"date":"20240101"}}]}]}}"#,
            r#"{"trackResponse":{"shipment":[{"package":[{"activity":[{"date":"2024-01-01","time":"101010"}]}]}]}}"#,
            r#"{"trackResponse":{"shipment":[{"package":[{"activity":[{"date":"20240101","time":"25:99"}]}]}]}}"#,
            r#"{"trackResponse":{"shipment":[{"package":[{"activity":[{"date":"20240101","status":{"code":21}}]}]}]}}"#,
        ];
        for body in cases {
            match parse_track_response(body, "1Z023E2X0214323462") {
                Err(UpstreamError::Malformed { .. }) => {}
                other => panic!("{body:?} should be malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn tokens_follow_the_contract_strings() {
        let token = read_token(
            r#"{"token_type":"Bearer","issued_at":"1700000000000","client_id":"x",
            "access_token":"abc","scope":"","expires_in":"14399","refresh_count":"0","status":"approved"}"#,
        );
        match token {
            Ok(token) => {
                assert_eq!(token.token.expose_secret(), "abc");
                assert_eq!(token.expires_in, Duration::seconds(14399));
            }
            Err(e) => panic!("token should parse: {e}"),
        }
        // A number where the contract says string breaks it.
        assert!(matches!(
            read_token(r#"{"access_token":"abc","expires_in":14399}"#),
            Err(UpstreamError::Malformed { .. })
        ));
        assert!(matches!(
            read_token(r#"{"access_token":"","expires_in":"14399"}"#),
            Err(UpstreamError::Malformed { .. })
        ));
    }

    #[test]
    fn times_take_every_spelling_ups_uses() {
        let hms = |h, m, s| NaiveTime::from_hms_opt(h, m, s);
        assert_eq!(parse_time("071356"), hms(7, 13, 56));
        assert_eq!(parse_time("74700"), hms(7, 47, 0));
        assert_eq!(parse_time("09:41:00"), hms(9, 41, 0));
        assert_eq!(parse_time("240000"), None);
        assert_eq!(parse_time("10:53 P.M."), None);
    }

    #[test]
    fn settings_debug_masks_the_credentials() {
        let settings = UpsSettings {
            base_url: "https://user:pass@onlinetools.ups.com".to_owned(),
            ..UpsSettings::new(
                SecretString::from("client-id-value"),
                SecretString::from("client-secret-value"),
            )
        };
        let text = format!("{settings:?}");
        for secret in ["client-id-value", "client-secret-value", "pass"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("onlinetools.ups.com"), "{text}");
    }
}
