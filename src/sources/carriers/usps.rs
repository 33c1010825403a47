//! USPS Package Tracking v3r2 (`specs/carriers/usps/tracking-v3r2_4.yaml`) with OAuth 2
//! v3 client credentials (`oauth2_3_update.yaml`): up to 35 numbers per `POST
//! /tracking/v3r2/tracking`, answered 200 (every item found) or 207 (a mix of details
//! and per-item failures, a 404 item being a label USPS has not seen yet).
//!
//! Statuses come from `trackingEvents[].eventCode` (Pub 199 App. G, research §2.2);
//! `statusCategory` is only read when the newest code is not one nightdesk knows.
//! `eventTimestamp` is the local wall time (USPS omits the offset, or even writes a
//! `Z` on it): the instant comes from `GMTTimestamp`/`GMTOffset`, else the event's
//! state, else it stays unresolved — never UTC by assumption.
//!
//! It must never log or return the client secret or an access token.

use async_trait::async_trait;
use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::call;
use super::time::zone_of;
use super::token::{FetchedToken, TokenCache};
use super::{
    Carrier, CarrierClient, CarrierError, CarrierEvent, CarrierParcel, EventLocation, EventTime,
    ExceptionReason, ParcelQuery, TrackOutcome, ZoneSource,
};
use crate::clock::SharedClock;
use crate::http::{self, Reply, RetryPolicy, UpstreamError};
use crate::model::TrackingStatus;

/// Numbers per tracking request (the contract's `maxItems`).
pub const BATCH_LIMIT: usize = 35;

/// The scope the tracking API demands; a token without it is refused with 401.
const TRACKING_SCOPE: &str = "tracking";

/// OAuth error codes no retry will fix.
const CREDENTIAL_ERRORS: [&str; 4] = [
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "invalid_scope",
];

/// Production USPS (`https://apis-tem.usps.com` is the testing environment).
pub const DEFAULT_BASE_URL: &str = "https://apis.usps.com";

/// How to reach USPS. `Debug` masks the credentials.
#[derive(Clone)]
pub struct UspsSettings {
    /// Tokens come from `{base_url}/oauth2/v3/token`, tracking from
    /// `{base_url}/tracking/v3r2/tracking` ([`DEFAULT_BASE_URL`]).
    pub base_url: String,
    /// The app's Consumer Key.
    pub client_id: SecretString,
    /// The app's Consumer Secret.
    pub client_secret: SecretString,
}

impl UspsSettings {
    /// Production USPS with these credentials.
    pub fn new(client_id: SecretString, client_secret: SecretString) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            client_id,
            client_secret,
        }
    }
}

impl std::fmt::Debug for UspsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UspsSettings")
            .field("base_url", &call::without_userinfo(&self.base_url, ""))
            .field("client_id", &"***")
            .field("client_secret", &"***")
            .finish()
    }
}

pub struct UspsClient {
    http: reqwest::Client,
    token_url: Url,
    tracking_url: Url,
    client_id: SecretString,
    client_secret: SecretString,
    tokens: TokenCache,
    retry: RetryPolicy,
}

impl std::fmt::Debug for UspsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UspsClient")
            .field(
                "tracking_url",
                &call::without_userinfo(self.tracking_url.as_str(), ""),
            )
            .finish_non_exhaustive()
    }
}

impl UspsClient {
    pub fn new(
        settings: UspsSettings,
        clock: SharedClock,
        retry: RetryPolicy,
    ) -> Result<Self, CarrierError> {
        let endpoint = |path: &str| {
            call::endpoint(&settings.base_url, path, Carrier::Usps)
                .map_err(CarrierError::upstream(Carrier::Usps, "configure"))
        };
        let token_url = endpoint("oauth2/v3/token")?;
        let tracking_url = endpoint("tracking/v3r2/tracking")?;
        let http = call::http_client(Carrier::Usps, "configure")?;
        Ok(Self {
            http,
            token_url,
            tracking_url,
            client_id: settings.client_id,
            client_secret: settings.client_secret,
            tokens: TokenCache::new(clock),
            retry,
        })
    }

    async fn fetch_token(&self) -> Result<FetchedToken, UpstreamError> {
        let body = json!({
            "grant_type": "client_credentials",
            "client_id": self.client_id.expose_secret(),
            "client_secret": self.client_secret.expose_secret(),
            "scope": TRACKING_SCOPE,
        });
        call::fetch_token(
            self.http.post(self.token_url.clone()).json(&body),
            read_token,
            |reply| {
                let (code, text) = oauth_error(&reply.body);
                // A 401 is the client refused; a 400 only when its code says the credentials.
                let refused = reply.status == StatusCode::UNAUTHORIZED
                    || (reply.status == StatusCode::BAD_REQUEST
                        && CREDENTIAL_ERRORS.contains(&code.as_str()));
                (text, refused)
            },
        )
        .await
    }

    /// One tracking POST; 2xx, 401 and 404 come back as replies for the caller to read.
    async fn post_tracking(
        &self,
        token: &SecretString,
        body: &Value,
    ) -> Result<Reply, UpstreamError> {
        let request = self
            .http
            .post(self.tracking_url.clone())
            .bearer_auth(token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .json(body);
        call::keep_or_error(
            http::send(request).await?,
            |status| {
                status.is_success()
                    || status == StatusCode::UNAUTHORIZED
                    || status == StatusCode::NOT_FOUND
            },
            error_summary,
        )
    }

    /// The tracking answer, with one fresh token when USPS refuses the cached one.
    async fn tracking_reply(&self, body: &Value) -> Result<Reply, CarrierError> {
        let track_failed = || CarrierError::upstream(Carrier::Usps, "track");
        // A token refused before the expiry USPS gave (revoked or expired early) costs
        // one new token; a second refusal is no longer about the token.
        let reply = call::with_token(
            &self.tokens,
            || {
                self.tokens
                    .get_for(Carrier::Usps, "token", self.retry, || self.fetch_token())
            },
            |token| async move {
                http::with_retry(self.retry, "usps.track", || {
                    self.post_tracking(&token, body)
                })
                .await
                .map_err(track_failed())
            },
            |reply: &Reply| reply.status == StatusCode::UNAUTHORIZED,
        )
        .await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            return Err(track_failed()(UpstreamError::Credentials(format!(
                "the tracking API refused a freshly issued token (does the app have the `{TRACKING_SCOPE}` scope?): {}",
                error_summary(&reply.body)
            ))));
        }
        Ok(reply)
    }

    async fn track_chunk(&self, chunk: &[Wanted<'_>]) -> Result<Vec<TrackOutcome>, CarrierError> {
        let body = Value::Array(chunk.iter().map(request_item).collect());
        let reply = self.tracking_reply(&body).await?;
        read_reply(&reply, chunk).map_err(CarrierError::upstream(Carrier::Usps, "track"))
    }
}

#[async_trait]
impl CarrierClient for UspsClient {
    fn carrier(&self) -> Carrier {
        Carrier::Usps
    }

    fn batch_limit(&self) -> usize {
        BATCH_LIMIT
    }

    async fn track(&self, batch: &[ParcelQuery]) -> Result<Vec<TrackOutcome>, CarrierError> {
        let mut outcomes = Vec::new();
        let mut wanted = Vec::new();
        for query in batch {
            match sendable_number(&query.tracking_number) {
                Some(number) => wanted.push(Wanted { query, number }),
                // One bad number would make USPS refuse the whole request.
                None => outcomes.push(TrackOutcome::Rejected {
                    tracking_number: query.tracking_number.clone(),
                    detail: "not a USPS tracking number (4 to 34 letters and digits)".to_owned(),
                }),
            }
        }
        for chunk in wanted.chunks(BATCH_LIMIT) {
            outcomes.extend(self.track_chunk(chunk).await?);
        }
        Ok(outcomes)
    }
}

/// A number as sent, with the query it answers.
struct Wanted<'a> {
    query: &'a ParcelQuery,
    number: String,
}

/// The number without spaces, upper case; `None` when USPS would refuse it.
fn sendable_number(number: &str) -> Option<String> {
    let number: String = number
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    let fits =
        (4..=34).contains(&number.len()) && number.chars().all(|c| c.is_ascii_alphanumeric());
    fits.then_some(number)
}

/// One `TrackingRequestBody`: the number, and what tells a reused number apart.
fn request_item(wanted: &Wanted<'_>) -> Value {
    let mut item = serde_json::Map::new();
    item.insert(
        "trackingNumber".into(),
        Value::String(wanted.number.clone()),
    );
    if let Some(date) = wanted.query.ship_date {
        item.insert(
            "mailingDate".into(),
            Value::String(date.format("%Y-%m-%d").to_string()),
        );
    }
    let domestic = wanted
        .query
        .destination_country
        .as_deref()
        .is_none_or(|c| c.eq_ignore_ascii_case("US"));
    if domestic && let Some(zip) = wanted.query.destination_postcode.as_deref().and_then(zip5) {
        item.insert("destinationZIPCode".into(), Value::String(zip));
    }
    Value::Object(item)
}

/// The 5-digit ZIP of `12345` or `12345-6789`.
fn zip5(postcode: &str) -> Option<String> {
    let digits: String = postcode.trim().chars().take(5).collect();
    (digits.len() == 5 && digits.chars().all(|c| c.is_ascii_digit())).then_some(digits)
}

/// Outcomes of one tracking reply, numbers spelled as the caller asked.
fn read_reply(reply: &Reply, chunk: &[Wanted<'_>]) -> Result<Vec<TrackOutcome>, UpstreamError> {
    let asked_as = |number: &str| {
        let wanted = sendable_number(number).unwrap_or_else(|| number.to_owned());
        chunk
            .iter()
            .find(|w| w.number == wanted)
            .map_or_else(|| number.to_owned(), |w| w.query.tracking_number.clone())
    };
    if reply.status == StatusCode::NOT_FOUND {
        // The whole request found nothing (USPS answers a lone unknown number so).
        let error: WireErrorMessage =
            serde_json::from_str(&reply.body).map_err(|e| UpstreamError::Status {
                status: 404,
                retry_after: None,
                summary: format!("404 without a USPS error body: {e}"),
            })?;
        let detail = error
            .error
            .map_or_else(|| "404".to_owned(), |e| e.describe("404"));
        return Ok(chunk
            .iter()
            .map(|w| TrackOutcome::NotFound {
                tracking_number: w.query.tracking_number.clone(),
                detail: detail.clone(),
            })
            .collect());
    }
    let mut outcomes = parse_tracking_response(&reply.body)?;
    for outcome in &mut outcomes {
        let slot = match outcome {
            TrackOutcome::Found(parcel) => &mut parcel.tracking_number,
            TrackOutcome::NotFound {
                tracking_number, ..
            }
            | TrackOutcome::Rejected {
                tracking_number, ..
            } => tracking_number,
        };
        *slot = asked_as(slot);
    }
    Ok(outcomes)
}

/// A 2xx of the token endpoint.
fn read_token(reply: &Reply) -> Result<FetchedToken, UpstreamError> {
    let token: WireToken = reply.json("USPS token response")?;
    let expires_in = token.expires_in.seconds().filter(|s| *s > 0);
    let (Some(seconds), false) = (expires_in, token.access_token.is_empty()) else {
        return Err(UpstreamError::Malformed {
            what: "USPS token response".into(),
            reason: "empty access_token or no positive expires_in".into(),
        });
    };
    Ok(FetchedToken {
        token: SecretString::from(token.access_token),
        expires_in: Duration::seconds(seconds),
    })
}

/// The OAuth error code of a token endpoint's error body, and a text of it. Only the code
/// and description are kept: nothing else of the body (it could echo what was sent).
fn oauth_error(body: &str) -> (String, String) {
    let error = serde_json::from_str::<WireOAuthError>(body).ok();
    let code = error
        .as_ref()
        .and_then(|e| e.error.clone())
        .unwrap_or_default();
    let text = match error.and_then(|e| e.error_description) {
        Some(description) if !code.is_empty() => {
            format!("{code}: {}", http::summarize(&description))
        }
        Some(description) => http::summarize(&description),
        None if !code.is_empty() => code.clone(),
        None => "USPS token endpoint error without a readable body".to_owned(),
    };
    (code, text)
}

/// A short, secret-free text of a USPS error body.
fn error_summary(body: &str) -> String {
    serde_json::from_str::<WireErrorMessage>(body)
        .ok()
        .and_then(|e| e.error)
        .map_or_else(|| http::summarize(body), |e| e.describe(""))
}

/// Reads a 200 (`TrackingDetail[]`) or 207 (`SuccessResponse`/`FailureResponse` mix)
/// body: one outcome per item. A failure item with status 404 is [`TrackOutcome::NotFound`]
/// (USPS has no data yet), any other failure [`TrackOutcome::Rejected`].
pub fn parse_tracking_response(body: &str) -> Result<Vec<TrackOutcome>, UpstreamError> {
    let malformed = |reason: String| UpstreamError::Malformed {
        what: "USPS tracking response".into(),
        reason,
    };
    let items: Vec<Value> = serde_json::from_str(body).map_err(|e| malformed(e.to_string()))?;
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            // Through `Value`: serde would also read a struct from a JSON array.
            if !item.is_object() {
                return Err(malformed(format!("item {index} is not an object")));
            }
            let item: WireItem = serde_json::from_value(item)
                .map_err(|e| malformed(format!("item {index}: {e}")))?;
            read_item(item).map_err(|reason| malformed(format!("item {index}: {reason}")))
        })
        .collect()
}

fn read_item(item: WireItem) -> Result<TrackOutcome, String> {
    let tracking_number = item.tracking_number.clone().unwrap_or_default();
    let status_code = item.status_code.as_deref().map(str::trim).unwrap_or("");
    let failed = item.error.is_some() || !(status_code.is_empty() || status_code.starts_with('2'));
    if failed {
        if tracking_number.is_empty() {
            return Err("a failure without a trackingNumber".into());
        }
        let code = if status_code.is_empty() {
            "error"
        } else {
            status_code
        };
        let detail = item
            .error
            .as_ref()
            .map_or_else(|| code.to_owned(), |e| e.describe(code));
        let not_found = status_code == "404"
            || item.error.as_ref().and_then(|e| e.code.as_deref()) == Some("404");
        return Ok(if not_found {
            TrackOutcome::NotFound {
                tracking_number,
                detail,
            }
        } else {
            TrackOutcome::Rejected {
                tracking_number,
                detail,
            }
        });
    }
    if tracking_number.is_empty() {
        return Err("a tracking detail without a trackingNumber".into());
    }
    let ship_date = match item.mailing_date.as_deref() {
        Some(text) => Some(
            NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .map_err(|e| format!("mailingDate {text:?}: {e}"))?,
        ),
        None => None,
    };
    let mut events = Vec::new();
    for (index, wire) in item
        .tracking_events
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if let Some(event) =
            read_event(wire).map_err(|e| format!("trackingEvents[{index}]: {e}"))?
        {
            events.push(event);
        }
    }
    let current = summary_event(
        &events,
        item.status_category.as_deref(),
        item.status.as_deref(),
    );
    let destination = EventLocation {
        city: item.destination_city,
        state: item.destination_state,
        postcode: item.destination_zip_code,
        country: item.destination_country,
    };
    let estimated_delivery = item
        .delivery_date_expectation
        .and_then(|e| e.predicted_delivery_date.or(e.expected_delivery_date))
        .and_then(|d| NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").ok())
        .and_then(|d| end_of_day_at(d, &domestic_default(&destination)));
    Ok(TrackOutcome::Found(CarrierParcel {
        tracking_number,
        carrier_shipment_id: item.unique_tracking_id.filter(|s| !s.trim().is_empty()),
        ship_date,
        service: item
            .mail_class
            .map(|c| plain_text(&c))
            .filter(|c| !c.is_empty()),
        events,
        current,
        estimated_delivery,
    }))
}

/// USPS's own summary: the newest event's place and time with its code's meaning, or
/// `statusCategory`'s when the code is one nightdesk does not know.
fn summary_event(
    events: &[CarrierEvent],
    category: Option<&str>,
    status: Option<&str>,
) -> Option<CarrierEvent> {
    // USPS lists events newest first; order by time anyway.
    let newest = events.iter().max_by_key(|e| e.at.sort_key())?;
    let category = category.map(str::trim).filter(|c| !c.is_empty());
    let (status_now, reason, raw_code) = match (newest.status, category) {
        (TrackingStatus::Unknown, Some(category)) => {
            let (s, r) = map_status_category(category);
            (s, r, category.to_owned())
        }
        _ => (newest.status, newest.reason, newest.raw_code.clone()),
    };
    Some(CarrierEvent {
        status: status_now,
        reason,
        raw_code,
        text: status
            .map(plain_text)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| newest.text.clone()),
        ..newest.clone()
    })
}

/// One event, or `None` when it carries no time at all.
fn read_event(wire: WireEvent) -> Result<Option<CarrierEvent>, String> {
    let location = EventLocation {
        city: non_empty(wire.event_city),
        state: non_empty(wire.event_state),
        postcode: non_empty(wire.event_zip_code),
        country: non_empty(wire.event_country),
    };
    let Some(at) = event_time(
        wire.event_timestamp.as_deref(),
        wire.gmt_timestamp.as_deref(),
        wire.gmt_offset.as_deref(),
        &location,
    )?
    else {
        tracing::warn!(code = ?wire.event_code, "USPS event without any timestamp skipped");
        return Ok(None);
    };
    let raw_code = wire.event_code.unwrap_or_default().trim().to_owned();
    let (status, reason) = map_event_code(&raw_code);
    Ok(Some(CarrierEvent {
        at,
        status,
        reason,
        raw_code,
        text: wire.event_type.map(|t| plain_text(&t)).unwrap_or_default(),
        location,
        correction: false,
    }))
}

/// When an event happened: `eventTimestamp` is local wall time; the instant comes from
/// `GMTTimestamp`, a real offset on `eventTimestamp`, `GMTOffset`, or the place.
fn event_time(
    local_text: Option<&str>,
    gmt_text: Option<&str>,
    offset_text: Option<&str>,
    location: &EventLocation,
) -> Result<Option<EventTime>, String> {
    let local = match local_text.map(str::trim).filter(|t| !t.is_empty()) {
        Some(text) => Some(
            parse_local(text).ok_or_else(|| format!("eventTimestamp {text:?} is no date-time"))?,
        ),
        None => None,
    };
    let gmt = match gmt_text.map(str::trim).filter(|t| !t.is_empty()) {
        Some(text) => {
            Some(parse_gmt(text).ok_or_else(|| format!("GMTTimestamp {text:?} is no date-time"))?)
        }
        None => None,
    };
    let offset = offset_text.and_then(parse_gmt_offset);
    let place = domestic_default(location);
    Ok(match (local, gmt) {
        (Some((local, _)), Some(utc)) => Some(EventTime {
            local,
            utc: Some(utc),
            zone: ZoneSource::Carrier,
        }),
        (Some((local, Some(stated))), None) => stated
            .from_local_datetime(&local)
            .single()
            .map(EventTime::with_offset)
            .or(Some(EventTime::at_location(local, &place))),
        (Some((local, None)), None) => {
            match offset.and_then(|o| o.from_local_datetime(&local).single()) {
                Some(at) => Some(EventTime::with_offset(at)),
                None => Some(EventTime::at_location(local, &place)),
            }
        }
        (None, Some(utc)) => {
            let local = match (offset, zone_of(&place)) {
                (Some(offset), _) => utc.with_timezone(&offset).naive_local(),
                (None, Some(zone)) => utc.with_timezone(&zone).naive_local(),
                (None, None) => utc.naive_utc(),
            };
            Some(EventTime {
                local,
                utc: Some(utc),
                zone: ZoneSource::Carrier,
            })
        }
        (None, None) => None,
    })
}

/// `eventTimestamp`'s wall time, and its offset when it states a real one. A trailing
/// `Z` is not believed: USPS writes it on local times.
fn parse_local(text: &str) -> Option<(NaiveDateTime, Option<FixedOffset>)> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        let says_utc = text.ends_with(['Z', 'z']);
        return Some((at.naive_local(), (!says_utc).then(|| *at.offset())));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(local) = NaiveDateTime::parse_from_str(text, format) {
            return Some((local, None));
        }
    }
    // The contract also allows a bare date.
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(|d| (d.and_time(NaiveTime::MIN), None))
}

/// `GMTTimestamp`: GMT by definition, with or without its `Z`.
fn parse_gmt(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .into_iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|naive| naive.and_utc())
}

/// `-05:00`, and the contract example's `-7:00`.
fn parse_gmt_offset(text: &str) -> Option<FixedOffset> {
    let text = text.trim();
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':').unwrap_or((rest, "0"));
    let hours: i32 = hours.parse().ok().filter(|h| (0..=14).contains(h))?;
    let minutes: i32 = minutes.parse().ok().filter(|m| (0..60).contains(m))?;
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// USPS leaves `eventCountry` empty at home: a state without a country is a US one.
fn domestic_default(location: &EventLocation) -> EventLocation {
    let mut place = location.clone();
    if place.country.is_none() && place.state.is_some() {
        place.country = Some("US".to_owned());
    }
    place
}

/// The end of `date` where `place` is, when its zone is known.
fn end_of_day_at(date: NaiveDate, place: &EventLocation) -> Option<DateTime<Utc>> {
    let zone = zone_of(place)?;
    let last = date.and_hms_opt(23, 59, 59)?;
    zone.from_local_datetime(&last)
        .earliest()
        .map(|at| at.with_timezone(&Utc))
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

/// USPS marks up its words (`Ground Advantage<SUP>&#153;</SUP>`): tags and character
/// references dropped.
fn plain_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(['<', '&']) {
        out.push_str(&rest[..start]);
        let closing = if rest[start..].starts_with('<') {
            '>'
        } else {
            ';'
        };
        match rest[start..].find(closing) {
            Some(end) if closing == '>' || end <= 8 => rest = &rest[start + end + 1..],
            _ => {
                out.push_str(&rest[start..=start]);
                rest = &rest[start + 1..];
            }
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}

/// A USPS event code (Pub 199 App. G, research §2.2) in nightdesk's terms.
pub fn map_event_code(code: &str) -> (TrackingStatus, Option<ExceptionReason>) {
    use ExceptionReason as R;
    use TrackingStatus as S;
    match code.trim().to_ascii_uppercase().as_str() {
        // Shipping label created, USPS awaiting item; manifest acknowledged.
        "GX" | "MA" => (S::LabelCreated, None),
        // Accepted: USPS (or a shipping partner) has the item.
        "03" | "43" | "TM" | "PA" | "41" | "19" | "80" | "81" | "82" => (S::InTransit, None),
        // Moving through the network; 71 is "rescheduled to next delivery day".
        "10" | "SF" | "EF" | "PC" | "A1" | "T1" | "TL" | "07" | "06" | "08" | "15" | "42"
        | "71" => (S::InTransit, None),
        "OF" => (S::OutForDelivery, None),
        "01" | "17" => (S::Delivered, None),
        "14" | "16" => (S::AvailableForPickup, None),
        "02" | "52" | "53" | "54" | "55" | "56" | "51" | "30" => (S::DeliveryAttempted, None),
        "04" => (S::ReturnToSender, Some(R::Refused)),
        "05" | "21" | "22" | "23" | "24" | "25" | "26" => (S::ReturnToSender, Some(R::Address)),
        "28" | "29" => (S::ReturnToSender, Some(R::Other)),
        "09" | "27" | "31" | "44" => (S::ReturnToSender, None),
        "11" => (S::Exception, Some(R::Lost)),
        // "Delivery status not updated": the classic missing-parcel signal.
        "DX" => (S::Exception, Some(R::Other)),
        _ => (S::Unknown, None),
    }
}

/// `statusCategory`, for when the newest event code is unknown. USPS publishes no closed
/// list (Pub 199 App. G-4/G-5), so the known categories are matched by their words.
pub fn map_status_category(category: &str) -> (TrackingStatus, Option<ExceptionReason>) {
    use TrackingStatus as S;
    let words = category
        .trim()
        .to_ascii_lowercase()
        .replace(['-', '_'], " ");
    match words.as_str() {
        "pre shipment" | "label created" | "shipping label created" => (S::LabelCreated, None),
        "accepted" | "in transit" | "moving through network" => (S::InTransit, None),
        "out for delivery" => (S::OutForDelivery, None),
        "delivered" => (S::Delivered, None),
        "available for pickup" => (S::AvailableForPickup, None),
        "delivery attempt" | "notice left" => (S::DeliveryAttempted, None),
        "alert" => (S::Exception, Some(ExceptionReason::Other)),
        "return to sender" | "returned" => (S::ReturnToSender, None),
        _ => (S::Unknown, None),
    }
}

#[derive(Deserialize)]
struct WireToken {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Seconds,
}

/// `expires_in`: the contract says integer; some OAuth servers send it as a string.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Seconds {
    Number(i64),
    Text(String),
    #[default]
    Missing,
}

impl Seconds {
    fn seconds(&self) -> Option<i64> {
        match self {
            Seconds::Number(n) => Some(*n),
            Seconds::Text(t) => t.trim().parse().ok(),
            Seconds::Missing => None,
        }
    }
}

#[derive(Deserialize)]
struct WireOAuthError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The contract's `ErrorMessage`.
#[derive(Deserialize)]
struct WireErrorMessage {
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl WireError {
    /// `code: message`, `fallback` standing in for a missing code.
    fn describe(&self, fallback: &str) -> String {
        let code = self.code.as_deref().unwrap_or(fallback);
        match self.message.as_deref() {
            Some(message) if code.is_empty() => http::summarize(message),
            Some(message) => format!("{code}: {}", http::summarize(message)),
            None => code.to_owned(),
        }
    }
}

/// A `TrackingDetail`, or a 207 `SuccessResponse`/`FailureResponse`: only the fields
/// nightdesk reads; others are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireItem {
    #[serde(default)]
    status_code: Option<String>,
    #[serde(default)]
    error: Option<WireError>,
    #[serde(default)]
    tracking_number: Option<String>,
    #[serde(default, rename = "uniqueTrackingID", alias = "uniqueTrackingId")]
    unique_tracking_id: Option<String>,
    #[serde(default)]
    mail_class: Option<String>,
    #[serde(default)]
    mailing_date: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    status_category: Option<String>,
    #[serde(default)]
    destination_city: Option<String>,
    #[serde(default)]
    destination_state: Option<String>,
    #[serde(default, rename = "destinationZIPCode", alias = "destinationZIP")]
    destination_zip_code: Option<String>,
    #[serde(default)]
    destination_country: Option<String>,
    #[serde(default)]
    delivery_date_expectation: Option<WireExpectation>,
    #[serde(default)]
    tracking_events: Option<Vec<WireEvent>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireExpectation {
    #[serde(default)]
    expected_delivery_date: Option<String>,
    #[serde(default)]
    predicted_delivery_date: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEvent {
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    event_code: Option<String>,
    #[serde(default)]
    event_timestamp: Option<String>,
    #[serde(default, rename = "GMTTimestamp")]
    gmt_timestamp: Option<String>,
    #[serde(default, rename = "GMTOffset")]
    gmt_offset: Option<String>,
    #[serde(default)]
    event_city: Option<String>,
    #[serde(default)]
    event_state: Option<String>,
    #[serde(default, rename = "eventZIPCode", alias = "eventZIP")]
    event_zip_code: Option<String>,
    #[serde(default)]
    event_country: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const KARRIO_EXAMPLE: &str =
        include_str!("../../../specs/carriers/usps/examples/karrio-usps-tracking_responses.json");

    fn found(outcome: &TrackOutcome) -> &CarrierParcel {
        match outcome {
            TrackOutcome::Found(parcel) => parcel,
            other => panic!("expected Found, got {other:?}"),
        }
    }

    fn utc(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    #[test]
    fn every_researched_event_code_maps() {
        use ExceptionReason as R;
        use TrackingStatus as S;
        let table: &[(&[&str], S, Option<R>)] = &[
            (&["GX", "MA"], S::LabelCreated, None),
            (&["80", "81", "82"], S::InTransit, None),
            (&["03", "43", "TM", "PA", "41", "19"], S::InTransit, None),
            (
                &[
                    "10", "SF", "EF", "PC", "A1", "T1", "TL", "07", "06", "08", "15", "42", "71",
                ],
                S::InTransit,
                None,
            ),
            (&["OF"], S::OutForDelivery, None),
            (&["01", "17"], S::Delivered, None),
            (&["14", "16"], S::AvailableForPickup, None),
            (
                &["02", "52", "53", "54", "55", "56", "51", "30"],
                S::DeliveryAttempted,
                None,
            ),
            (&["04"], S::ReturnToSender, Some(R::Refused)),
            (
                &["05", "21", "22", "23", "24", "25", "26"],
                S::ReturnToSender,
                Some(R::Address),
            ),
            (&["28", "29"], S::ReturnToSender, Some(R::Other)),
            (&["09", "27", "31", "44"], S::ReturnToSender, None),
            (&["11"], S::Exception, Some(R::Lost)),
            (&["DX"], S::Exception, Some(R::Other)),
            (&["ZZ", "", "string"], S::Unknown, None),
        ];
        for (codes, status, reason) in table {
            for code in *codes {
                assert_eq!(map_event_code(code), (*status, *reason), "code {code:?}");
            }
        }
        assert_eq!(map_event_code(" of "), (S::OutForDelivery, None));
        assert_eq!(map_status_category("Delivered"), (S::Delivered, None));
        assert_eq!(map_status_category("Pre-Shipment"), (S::LabelCreated, None));
        assert_eq!(map_status_category("Alert"), (S::Exception, Some(R::Other)));
        assert_eq!(map_status_category("whatever"), (S::Unknown, None));
    }

    #[test]
    fn the_karrio_example_reads_with_gmt_instants_and_local_wall_times() {
        let outcomes = match parse_tracking_response(KARRIO_EXAMPLE) {
            Ok(outcomes) => outcomes,
            Err(e) => panic!("the example does not parse: {e}"),
        };
        assert_eq!(outcomes.len(), 2);
        let parcel = found(&outcomes[0]);
        assert_eq!(parcel.tracking_number, "9400109104250532908587");
        assert_eq!(parcel.service.as_deref(), Some("USPS Ground Advantage"));
        assert_eq!(parcel.events.len(), 12);
        let delivered = &parcel.events[0];
        assert_eq!(
            (delivered.status, delivered.raw_code.as_str()),
            (TrackingStatus::Delivered, "01")
        );
        assert_eq!(delivered.text, "Delivered, Parcel Locker");
        assert_eq!(delivered.location.city.as_deref(), Some("HERNANDO"));
        // 13:58 local, the instant from GMTTimestamp.
        assert_eq!(delivered.at.local.to_string(), "2024-11-22 13:58:00");
        assert_eq!(delivered.at.utc, utc("2024-11-22T18:58:40Z"));
        assert_eq!(delivered.at.zone, ZoneSource::Carrier);
        let codes: Vec<&str> = parcel.events.iter().map(|e| e.raw_code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "01", "OF", "07", "A1", "TL", "TL", "TL", "T1", "10", "SF", "03", "GX"
            ]
        );
        assert_eq!(parcel.events[1].status, TrackingStatus::OutForDelivery);
        assert_eq!(parcel.events[11].status, TrackingStatus::LabelCreated);
        let current = parcel.current.as_ref().map(|c| (c.status, c.text.as_str()));
        assert_eq!(
            current,
            Some((TrackingStatus::Delivered, "Delivered, Parcel Locker"))
        );

        // The schema sample: "Z" on a local time is not believed, GMTTimestamp wins,
        // and an unknown code falls back on statusCategory ("string": Unknown).
        let sample = found(&outcomes[1]);
        assert_eq!(sample.carrier_shipment_id.as_deref(), Some("string"));
        assert_eq!(sample.events.len(), 1);
        assert_eq!(sample.events[0].status, TrackingStatus::Unknown);
        assert_eq!(sample.events[0].at.local.to_string(), "2019-08-24 14:15:22");
        assert_eq!(sample.events[0].at.utc, utc("2024-04-04T14:03:12.041Z"));
    }

    #[test]
    fn a_zoneless_local_time_is_resolved_by_offset_or_state_never_as_utc() {
        let body = r#"[{"trackingNumber":"9400100000000000000001","trackingEvents":[
            {"eventCode":"OF","eventTimestamp":"2024-11-22T09:10:00","GMTOffset":"-7:00","eventState":"FL"},
            {"eventCode":"07","eventTimestamp":"2024-11-22T08:59:00","eventCity":"LECANTO","eventState":"FL"},
            {"eventCode":"A1","eventTimestamp":"2024-11-20T01:13:00","eventCity":"JACKSONVILLE FL DISTRIBUTION CENTER"},
            {"eventCode":"T1","eventTimestamp":"2024-11-19T06:16:00-05:00"}
        ]}]"#;
        let outcomes = match parse_tracking_response(body) {
            Ok(outcomes) => outcomes,
            Err(e) => panic!("{e}"),
        };
        let events = &found(&outcomes[0]).events;
        // GMTOffset, even in the contract example's one-digit spelling.
        assert_eq!(events[0].at.utc, utc("2024-11-22T16:10:00Z"));
        assert_eq!(events[0].at.zone, ZoneSource::Carrier);
        // No GMT fields: Florida is Eastern time.
        assert_eq!(events[1].at.utc, utc("2024-11-22T13:59:00Z"));
        assert_eq!(events[1].at.zone, ZoneSource::Location);
        // Nothing tells the zone: the wall time stays, unresolved.
        assert_eq!(
            (events[2].at.utc, events[2].at.zone),
            (None, ZoneSource::Unresolved)
        );
        assert_eq!(events[2].at.local.to_string(), "2024-11-20 01:13:00");
        // A real offset on eventTimestamp is believed.
        assert_eq!(events[3].at.utc, utc("2024-11-19T11:16:00Z"));
    }

    #[test]
    fn multi_status_items_are_found_not_found_or_rejected() {
        let body = r#"[
            {"statusCode":"200","trackingNumber":"9400100000000000000001","uniqueTrackingID":"u-1",
             "mailingDate":"2024-11-15","trackingEvents":[]},
            {"statusCode":"404","trackingNumber":"9400100000000000000002",
             "error":{"code":"404","message":"Tracking is not available for this item at this time."}},
            {"statusCode":"400","trackingNumber":"ABC",
             "error":{"code":"400","message":"Invalid tracking number."}}
        ]"#;
        let outcomes = match parse_tracking_response(body) {
            Ok(outcomes) => outcomes,
            Err(e) => panic!("{e}"),
        };
        let parcel = found(&outcomes[0]);
        assert_eq!(parcel.carrier_shipment_id.as_deref(), Some("u-1"));
        assert_eq!(parcel.ship_date, NaiveDate::from_ymd_opt(2024, 11, 15));
        assert!(matches!(
            &outcomes[1],
            TrackOutcome::NotFound { tracking_number, detail }
                if tracking_number == "9400100000000000000002" && detail.contains("not available")
        ));
        assert!(
            matches!(&outcomes[2], TrackOutcome::Rejected { tracking_number, .. } if tracking_number == "ABC")
        );
    }

    #[test]
    fn a_lone_unknown_number_answered_404_is_not_found() {
        let reply = Reply {
            status: StatusCode::NOT_FOUND,
            headers: reqwest::header::HeaderMap::new(),
            body: r#"{"apiVersion":"v3","error":{"code":"404","message":"Tracking is not available for this item at this time."}}"#.into(),
        };
        let query = ParcelQuery::number("9400 1000 0000 0000 0000 01");
        let wanted = [Wanted {
            query: &query,
            number: "9400100000000000000001".into(),
        }];
        match read_reply(&reply, &wanted) {
            Ok(outcomes) => assert!(matches!(
                outcomes.as_slice(),
                [TrackOutcome::NotFound { tracking_number, .. }] if tracking_number == "9400 1000 0000 0000 0000 01"
            )),
            Err(e) => panic!("{e}"),
        }
        let not_usps = Reply {
            body: "<html>not here</html>".into(),
            ..reply
        };
        assert!(matches!(
            read_reply(&not_usps, &wanted),
            Err(UpstreamError::Status { status: 404, .. })
        ));
    }

    #[test]
    fn bodies_that_break_the_contract_are_malformed() {
        for body in [
            "",
            "{\"trackingNumber\":\"x\"}",
            "[{\"trackingNumber\":\"x\",\"trackingEvents\":[{\"eventTimestamp\":\"yesterday\"}]}]",
            "[{\"trackingNumber\":\"x\",\"trackingEvents\":[{\"GMTTimestamp\":\"soon\"}]}]",
            "[{\"trackingNumber\":\"x\",\"mailingDate\":\"15/11/2024\"}]",
            "[{\"trackingNumber\":7}]",
            "[{\"trackingEvents\":[]}]",
            "[{\"trackingNumber\":\"x\",\"trackingEvents\":[{\"eventCode\":1}]}]",
            "[[\"x\"]]",
        ] {
            assert!(
                matches!(
                    parse_tracking_response(body),
                    Err(UpstreamError::Malformed { .. })
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn requests_carry_what_tells_reused_numbers_apart() {
        let query = ParcelQuery {
            tracking_number: "9400 1000 0000 0000 0000 01".into(),
            ship_date: NaiveDate::from_ymd_opt(2024, 11, 15),
            destination_postcode: Some("34442-1234".into()),
            destination_country: Some("US".into()),
            service: None,
        };
        let number = sendable_number(&query.tracking_number).unwrap_or_default();
        let item = request_item(&Wanted {
            query: &query,
            number,
        });
        assert_eq!(
            item,
            json!({"trackingNumber":"9400100000000000000001","mailingDate":"2024-11-15","destinationZIPCode":"34442"})
        );
        assert_eq!(sendable_number("12"), None);
        assert_eq!(sendable_number("9400-1000"), None);
    }

    #[test]
    fn settings_debug_masks_the_secret() {
        let mut settings = UspsSettings::new(
            SecretString::from("the-id"),
            SecretString::from("very-secret"),
        );
        settings.base_url = "https://user:pass@apis.usps.com".into();
        let shown = format!("{settings:?}");
        for secret in ["the-id", "very-secret", "pass"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
