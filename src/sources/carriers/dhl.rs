//! DHL Shipment Tracking - Unified 1.4 (`specs/carriers/dhl/utapi-traking-api-1.4.1.yaml`):
//! `GET /track/shipments?trackingNumber=…` with the `DHL-API-Key` header, one number per
//! call. A number may name shipments of several DHL divisions: each is its own
//! [`TrackOutcome::Found`], told apart by `service:id`. A 404 problem is a number DHL
//! does not know (yet): [`TrackOutcome::NotFound`].
//!
//! DHL's `statusCode` has five values. `pre-transit` is a label, not a parcel moving.
//! Out for delivery, ready for pickup, a failed attempt and the exception's reason have
//! no code at all: [`map_status`] reads them from DHL's English `status`/`description`
//! words — the only place nightdesk maps DHL on text, and only within what the code
//! already says.
//!
//! The starter plan allows 250 calls a day: this module makes exactly one call per number
//! (no paging, no following `possibleAdditionalShipmentsUrl`). It must never log or
//! return the API key.

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::call;
use super::{
    Carrier, CarrierClient, CarrierError, CarrierEvent, CarrierParcel, EventLocation, EventTime,
    ExceptionReason, ParcelQuery, TrackOutcome,
};
use crate::http::{self, Reply, RetryPolicy, UpstreamError};
use crate::model::TrackingStatus;

/// The language asked for: [`map_status`] reads DHL's English words.
const LANGUAGE: &str = "en";

/// The `service` values the contract accepts as a query hint.
const SERVICES: [&str; 12] = [
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

/// Production DHL (the spec's test server is not open to customers).
pub const DEFAULT_BASE_URL: &str = "https://api-eu.dhl.com";

/// How to reach DHL. `Debug` masks the key.
#[derive(Clone)]
pub struct DhlSettings {
    /// Tracking is `{base_url}/track/shipments` ([`DEFAULT_BASE_URL`]).
    pub base_url: String,
    /// The app's consumer key, sent as `DHL-API-Key`.
    pub api_key: SecretString,
}

impl DhlSettings {
    /// Production DHL with this key.
    pub fn new(api_key: SecretString) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key,
        }
    }
}

impl std::fmt::Debug for DhlSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhlSettings")
            .field("base_url", &call::without_userinfo(&self.base_url, ""))
            .field("api_key", &"***")
            .finish()
    }
}

pub struct DhlClient {
    http: reqwest::Client,
    shipments_url: Url,
    api_key: SecretString,
    retry: RetryPolicy,
}

impl std::fmt::Debug for DhlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhlClient").finish_non_exhaustive()
    }
}

impl DhlClient {
    /// `clock` is unused: DHL has no token to expire. Taken for the same constructor as
    /// the other carriers.
    pub fn new(
        settings: DhlSettings,
        _clock: crate::clock::SharedClock,
        retry: RetryPolicy,
    ) -> Result<Self, CarrierError> {
        let shipments_url = call::endpoint(&settings.base_url, "track/shipments", Carrier::Dhl)
            .map_err(CarrierError::upstream(Carrier::Dhl, "configure"))?;
        let http = call::http_client(Carrier::Dhl, "configure")?;
        Ok(Self {
            http,
            shipments_url,
            api_key: settings.api_key,
            retry,
        })
    }

    /// One GET; the answers [`parse_reply`] reads (200, 401, 404) come back as replies.
    async fn get(&self, query: &ParcelQuery) -> Result<Reply, UpstreamError> {
        let mut params = vec![
            ("trackingNumber", query.tracking_number.trim().to_owned()),
            ("language", LANGUAGE.to_owned()),
        ];
        if let Some(service) = service_hint(query.service.as_deref()) {
            params.push(("service", service.to_owned()));
        }
        if let Some(postcode) = query
            .destination_postcode
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            params.push(("recipientPostalCode", postcode.to_owned()));
        }
        let request = self
            .http
            .get(self.shipments_url.clone())
            .query(&params)
            .header("DHL-API-Key", self.api_key.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json");
        call::keep_or_error(
            http::send(request).await?,
            |status| {
                matches!(
                    status,
                    StatusCode::OK | StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND
                )
            },
            problem_summary,
        )
    }
}

#[async_trait]
impl CarrierClient for DhlClient {
    fn carrier(&self) -> Carrier {
        Carrier::Dhl
    }

    fn batch_limit(&self) -> usize {
        1
    }

    async fn track(&self, batch: &[ParcelQuery]) -> Result<Vec<TrackOutcome>, CarrierError> {
        let mut outcomes = Vec::new();
        for query in batch {
            let reply = http::with_retry(self.retry, "dhl.track", || self.get(query))
                .await
                .map_err(CarrierError::upstream(Carrier::Dhl, "track"))?;
            let read = parse_reply(reply.status.as_u16(), &reply.body, query)
                .map_err(CarrierError::upstream(Carrier::Dhl, "track"))?;
            outcomes.extend(read);
        }
        Ok(outcomes)
    }
}

/// The query's service when DHL accepts it as a hint (`express`, `parcel-de`, …).
fn service_hint(service: Option<&str>) -> Option<&'static str> {
    let wanted = service?.trim().to_ascii_lowercase();
    SERVICES.into_iter().find(|s| *s == wanted)
}

/// What one answer says about `query`'s number: 200 → one `Found` per shipment, 404
/// problem → `NotFound`, 401 → the key was refused. Anything else is an error status.
pub fn parse_reply(
    status: u16,
    body: &str,
    query: &ParcelQuery,
) -> Result<Vec<TrackOutcome>, UpstreamError> {
    match status {
        200 => parse_shipments(body, query),
        404 => {
            let problem: WireProblem =
                serde_json::from_str(body).map_err(|e| UpstreamError::Status {
                    status: 404,
                    retry_after: None,
                    summary: format!("404 without a DHL problem body: {e}"),
                })?;
            Ok(vec![TrackOutcome::NotFound {
                tracking_number: query.tracking_number.clone(),
                detail: problem.describe(),
            }])
        }
        401 => Err(UpstreamError::Credentials(format!(
            "DHL refused the API key: {}",
            problem_summary(body)
        ))),
        _ => Err(UpstreamError::Status {
            status,
            retry_after: None,
            summary: problem_summary(body),
        }),
    }
}

fn parse_shipments(body: &str, query: &ParcelQuery) -> Result<Vec<TrackOutcome>, UpstreamError> {
    let malformed = |reason: String| UpstreamError::Malformed {
        what: "DHL shipments response".into(),
        reason,
    };
    // Through `Value`: serde would also read a struct from a JSON array.
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| malformed(e.to_string()))?;
    if !value.is_object() {
        return Err(malformed("the body is not a JSON object".into()));
    }
    let wire: WireShipments =
        serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
    if wire.shipments.is_empty() {
        return Ok(vec![TrackOutcome::NotFound {
            tracking_number: query.tracking_number.clone(),
            detail: "200 without shipments".to_owned(),
        }]);
    }
    Ok(wire
        .shipments
        .into_iter()
        .map(|shipment| TrackOutcome::Found(read_shipment(shipment, query)))
        .collect())
}

fn read_shipment(shipment: WireShipment, query: &ParcelQuery) -> CarrierParcel {
    let id = shipment
        .id
        .map(WireId::into_text)
        .filter(|id| !id.is_empty());
    let carrier_shipment_id = match (&shipment.service, &id) {
        (Some(service), Some(id)) => Some(format!("{service}:{id}")),
        (None, Some(id)) => Some(id.clone()),
        (_, None) => None,
    };
    let destination = shipment
        .destination
        .map(WirePlace::into_location)
        .unwrap_or_default();
    let events = shipment.events.into_iter().filter_map(read_event).collect();
    let current = shipment.status.and_then(read_event);
    let estimated = shipment
        .estimated_time_of_delivery
        .or(shipment
            .estimated_delivery_time_frame
            .and_then(|f| f.estimated_through))
        .and_then(|text| EventTime::parse_iso(&text, &destination))
        .and_then(|at| at.utc);
    let service = shipment
        .details
        .and_then(|d| d.product)
        .and_then(|p| p.product_name)
        .filter(|p| !p.trim().is_empty())
        .or(shipment.service);
    CarrierParcel {
        tracking_number: query.tracking_number.clone(),
        carrier_shipment_id,
        ship_date: None,
        service,
        events,
        current,
        estimated_delivery: estimated,
    }
}

/// One DHL event; `None` (and a warning) when its time cannot be read: the contract
/// gives `timestamp` no format to hold DHL to.
fn read_event(event: WireEvent) -> Option<CarrierEvent> {
    let location = event
        .location
        .map(WirePlace::into_location)
        .unwrap_or_default();
    let raw_code = event.status_code.unwrap_or_default().trim().to_owned();
    let Some(at) = event
        .timestamp
        .as_deref()
        .and_then(|t| EventTime::parse_iso(t, &location))
    else {
        tracing::warn!(code = %raw_code, "DHL event without a readable timestamp skipped");
        return None;
    };
    let status_words = event.status.unwrap_or_default().trim().to_owned();
    let description = event.description.unwrap_or_default().trim().to_owned();
    let (status, reason) = map_status(&raw_code, &status_words, &description);
    let text = match (status_words.is_empty(), description.is_empty()) {
        (false, false) if !status_words.eq_ignore_ascii_case(&description) => {
            format!("{status_words}: {description}")
        }
        (false, _) => status_words,
        (true, _) => description,
    };
    Some(CarrierEvent {
        at,
        status,
        reason,
        raw_code,
        text,
        location,
        correction: false,
    })
}

/// A DHL `statusCode` in nightdesk's terms, refined by DHL's words (`status`,
/// `description`) only where the code has no finer value: out for delivery and ready
/// for pickup within `transit`, an attempt, a return or the reason within `failure`.
pub fn map_status(
    status_code: &str,
    status: &str,
    description: &str,
) -> (TrackingStatus, Option<ExceptionReason>) {
    use ExceptionReason as R;
    use TrackingStatus as S;
    let words = format!("{status} {description}").to_ascii_lowercase();
    let says = |phrases: &[&str]| phrases.iter().any(|p| words.contains(p));
    match status_code.trim().to_ascii_lowercase().as_str() {
        "pre-transit" => (S::LabelCreated, None),
        "transit" if says(OUT_FOR_DELIVERY_WORDS) => (S::OutForDelivery, None),
        "transit" if says(PICKUP_WORDS) => (S::AvailableForPickup, None),
        "transit" => (S::InTransit, None),
        "delivered" => (S::Delivered, None),
        "failure" if says(ATTEMPT_WORDS) => (S::DeliveryAttempted, None),
        "failure"
            if says(&[
                "returned to sender",
                "return to sender",
                "returning to sender",
                "returned to shipper",
                "return to shipper",
            ]) =>
        {
            (S::ReturnToSender, None)
        }
        "failure" => {
            let reason = if says(&["customs"]) {
                R::Customs
            } else if says(&["address"]) {
                R::Address
            } else if says(&["damage"]) {
                R::Damaged
            } else if says(&["refused", "refusal"]) {
                R::Refused
            } else if says(&["lost"]) {
                R::Lost
            } else if says(&["payment", "duties", "charges due"]) {
                R::PaymentDue
            } else if says(&["delay"]) {
                R::Delay
            } else {
                R::Other
            };
            (S::Exception, Some(reason))
        }
        // "unknown", and values beyond the contract's five.
        _ => (S::Unknown, None),
    }
}

const OUT_FOR_DELIVERY_WORDS: &[&str] = &[
    "out for delivery",
    "with delivery courier",
    "with courier for delivery",
    "loaded onto the delivery vehicle",
    "on its way to the recipient",
];

const PICKUP_WORDS: &[&str] = &[
    "ready for pickup",
    "ready for pick-up",
    "ready for collection",
    "available for pickup",
    "available for pick-up",
    "available for collection",
    "awaiting collection",
];

const ATTEMPT_WORDS: &[&str] = &[
    "attempt",
    "recipient was not present",
    "recipient not at home",
    "not at home",
];

/// A short text of a problem+json body (title and detail), else of the body.
fn problem_summary(body: &str) -> String {
    serde_json::from_str::<WireProblem>(body)
        .map(|p| p.describe())
        .unwrap_or_else(|_| http::summarize(body))
}

#[derive(Deserialize)]
struct WireProblem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

impl WireProblem {
    fn describe(&self) -> String {
        let parts: Vec<&str> = [self.title.as_deref(), self.detail.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        http::summarize(&parts.join(": "))
    }
}

#[derive(Deserialize)]
struct WireShipments {
    #[serde(default)]
    shipments: Vec<WireShipment>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireShipment {
    #[serde(default)]
    id: Option<WireId>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    destination: Option<WirePlace>,
    #[serde(default)]
    status: Option<WireEvent>,
    #[serde(default)]
    estimated_time_of_delivery: Option<String>,
    #[serde(default)]
    estimated_delivery_time_frame: Option<WireTimeFrame>,
    #[serde(default)]
    details: Option<WireDetails>,
    #[serde(default)]
    events: Vec<WireEvent>,
}

/// The contract says string; its own example (and DHL Express) sends a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum WireId {
    Text(String),
    Number(serde_json::Number),
}

impl WireId {
    fn into_text(self) -> String {
        match self {
            WireId::Text(text) => text.trim().to_owned(),
            WireId::Number(number) => number.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTimeFrame {
    #[serde(default)]
    estimated_through: Option<String>,
}

#[derive(Deserialize)]
struct WireDetails {
    #[serde(default)]
    product: Option<WireProduct>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireProduct {
    #[serde(default)]
    product_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEvent {
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    location: Option<WirePlace>,
    #[serde(default)]
    status_code: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
struct WirePlace {
    #[serde(default)]
    address: Option<WireAddress>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAddress {
    #[serde(default)]
    country_code: Option<String>,
    #[serde(default)]
    postal_code: Option<String>,
    #[serde(default)]
    address_locality: Option<String>,
}

impl WirePlace {
    fn into_location(self) -> EventLocation {
        let address = self.address;
        let clean =
            |text: Option<String>| text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        match address {
            Some(a) => EventLocation {
                city: clean(a.address_locality),
                state: None,
                postcode: clean(a.postal_code),
                country: clean(a.country_code).map(|c| c.to_ascii_uppercase()),
            },
            None => EventLocation::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use serde_json::Value;

    use crate::sources::carriers::ZoneSource;

    const KARRIO_EXAMPLE: &str =
        include_str!("../../../specs/carriers/dhl/examples/karrio-dhl_universal-tracking.json");
    const CONTRACT: &str = include_str!("../../../specs/carriers/dhl/utapi-traking-api-1.4.1.yaml");

    fn utc(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    fn example_part(name: &str) -> String {
        match serde_json::from_str::<Value>(KARRIO_EXAMPLE) {
            Ok(example) => example[name].to_string(),
            Err(e) => panic!("the example is not JSON: {e}"),
        }
    }

    #[test]
    fn every_status_code_maps_and_words_refine_only_within_it() {
        use ExceptionReason as R;
        use TrackingStatus as S;
        let table: &[(&str, &str, &str, S, Option<R>)] = &[
            (
                "pre-transit",
                "",
                "The instruction data for this shipment have been provided",
                S::LabelCreated,
                None,
            ),
            // The code wins over words that say otherwise.
            ("pre-transit", "DELIVERED", "", S::LabelCreated, None),
            (
                "transit",
                "",
                "The shipment has been processed in the parcel center",
                S::InTransit,
                None,
            ),
            (
                "transit",
                "",
                "The shipment has been loaded onto the delivery vehicle",
                S::OutForDelivery,
                None,
            ),
            ("transit", "Out for delivery", "", S::OutForDelivery, None),
            (
                "transit",
                "",
                "WITH DELIVERY COURIER",
                S::OutForDelivery,
                None,
            ),
            (
                "transit",
                "",
                "The shipment is ready for pick-up at the PACKSTATION",
                S::AvailableForPickup,
                None,
            ),
            (
                "transit",
                "",
                "Available for collection at the retail outlet",
                S::AvailableForPickup,
                None,
            ),
            (
                "delivered",
                "",
                "The shipment has been delivered",
                S::Delivered,
                None,
            ),
            (
                "delivered",
                "",
                "out for delivery earlier",
                S::Delivered,
                None,
            ),
            (
                "failure",
                "",
                "A delivery attempt was made; the recipient was not present",
                S::DeliveryAttempted,
                None,
            ),
            (
                "failure",
                "",
                "The shipment is being returned to sender",
                S::ReturnToSender,
                None,
            ),
            (
                "failure",
                "",
                "Held by customs",
                S::Exception,
                Some(R::Customs),
            ),
            (
                "failure",
                "",
                "Incorrect address",
                S::Exception,
                Some(R::Address),
            ),
            (
                "failure",
                "",
                "The shipment was damaged",
                S::Exception,
                Some(R::Damaged),
            ),
            (
                "failure",
                "",
                "Delivery refused by recipient",
                S::Exception,
                Some(R::Refused),
            ),
            (
                "failure",
                "",
                "The shipment could not be delivered",
                S::Exception,
                Some(R::Other),
            ),
            ("unknown", "", "out for delivery", S::Unknown, None),
            ("something-new", "", "", S::Unknown, None),
        ];
        for (code, status, description, expected, reason) in table {
            assert_eq!(
                map_status(code, status, description),
                (*expected, *reason),
                "{code} / {status} / {description}"
            );
        }
    }

    #[test]
    fn the_karrio_example_reads_pre_transit_as_label_created() {
        let query = ParcelQuery::number("7777777770");
        let outcomes = match parse_reply(200, &example_part("trackingResponse"), &query) {
            Ok(outcomes) => outcomes,
            Err(e) => panic!("the example does not parse: {e}"),
        };
        let parcel = match outcomes.as_slice() {
            [TrackOutcome::Found(parcel)] => parcel,
            other => panic!("expected one Found, got {other:?}"),
        };
        assert_eq!(
            parcel.carrier_shipment_id.as_deref(),
            Some("express:7777777770")
        );
        assert_eq!(parcel.service.as_deref(), Some("UNKNOWN - Product unknown"));
        assert_eq!(parcel.estimated_delivery, utc("2018-08-03T00:00:00Z"));
        let event = &parcel.events[0];
        // statusCode pre-transit, even though its words say "DELIVERED".
        assert_eq!(
            (event.status, event.raw_code.as_str()),
            (TrackingStatus::LabelCreated, "pre-transit")
        );
        assert_eq!(event.text, "DELIVERED: JESSICA");
        // "2018-03-02T07:53:47" has no offset: Amsterdam's (+1 in March).
        assert_eq!(event.at.zone, ZoneSource::Location);
        assert_eq!(event.at.utc, utc("2018-03-02T06:53:47Z"));
        assert_eq!(event.location.country.as_deref(), Some("NL"));
        let current = parcel
            .current
            .as_ref()
            .map(|c| (c.status, c.at.zone, c.at.utc));
        assert_eq!(
            current,
            Some((
                TrackingStatus::LabelCreated,
                ZoneSource::Carrier,
                utc("2018-03-02T07:53:47Z")
            ))
        );
    }

    #[test]
    fn the_example_404_problem_is_not_found() {
        let query = ParcelQuery::number("8264715546");
        match parse_reply(404, &example_part("error"), &query) {
            Ok(outcomes) => assert!(matches!(
                outcomes.as_slice(),
                [TrackOutcome::NotFound { tracking_number, detail }]
                    if tracking_number == "8264715546" && detail.starts_with("No result found")
            )),
            Err(e) => panic!("{e}"),
        }
        // A 404 that is not DHL's problem (a wrong base URL) is no "not found".
        assert!(matches!(
            parse_reply(404, "<html>404</html>", &query),
            Err(UpstreamError::Status { status: 404, .. })
        ));
        assert!(matches!(
            parse_reply(401, r#"{"title":"Unauthorized","status":401}"#, &query),
            Err(UpstreamError::Credentials(_))
        ));
    }

    #[test]
    fn the_contracts_own_examples_read() {
        // The spec's example shipment (`id: 7777777770`, statusCode example `transit`).
        let doc: Value = match serde_yaml::from_str(CONTRACT) {
            Ok(doc) => doc,
            Err(e) => panic!("{e}"),
        };
        let schemas = &doc["components"]["schemas"];
        let event = serde_json::json!({
            "timestamp": schemas["supermodelIoLogisticsTrackingShipmentEvent"]["properties"]["timestamp"]["example"],
            "statusCode": schemas["supermodelIoLogisticsTrackingShipmentEvent"]["properties"]["statusCode"]["example"],
            "status": schemas["supermodelIoLogisticsTrackingShipmentEvent"]["properties"]["status"]["example"],
            "location": schemas["supermodelIoLogisticsSupportingPlace"]["example"],
        });
        let body = serde_json::json!({"shipments": [{
            "id": schemas["supermodelIoLogisticsTrackingShipment"]["properties"]["id"]["example"],
            "service": "express",
            "events": [event],
        }]});
        let query = ParcelQuery::number("7777777770");
        match parse_reply(200, &body.to_string(), &query) {
            Ok(outcomes) => match outcomes.as_slice() {
                [TrackOutcome::Found(parcel)] => {
                    assert_eq!(parcel.events[0].status, TrackingStatus::InTransit);
                    assert_eq!(parcel.events[0].text, "customs inspection");
                    assert_eq!(parcel.events[0].at.utc, utc("2018-03-02T07:53:47Z"));
                }
                other => panic!("{other:?}"),
            },
            Err(e) => panic!("{e}"),
        }
        let not_found = &doc["components"]["responses"]["shipmentNotFound"]["content"]["application/problem+json"]
            ["schema"]["example"];
        assert!(matches!(
            parse_reply(404, &not_found.to_string(), &query).as_deref(),
            Ok([TrackOutcome::NotFound { .. }])
        ));
    }

    #[test]
    fn other_divisions_are_separate_shipments_and_zoneless_times_stay_unresolved() {
        let body = r#"{"shipments":[
            {"id":"00340434292135100186","service":"parcel-de","events":[
                {"timestamp":"2026-11-20T10:00:00","statusCode":"transit","status":"In transit"}]},
            {"id":"00340434292135100186","service":"express","events":[]}]}"#;
        let query = ParcelQuery::number("00340434292135100186");
        let outcomes = match parse_reply(200, body, &query) {
            Ok(outcomes) => outcomes,
            Err(e) => panic!("{e}"),
        };
        let ids: Vec<Option<&str>> = outcomes
            .iter()
            .map(|o| match o {
                TrackOutcome::Found(p) => p.carrier_shipment_id.as_deref(),
                _ => None,
            })
            .collect();
        assert_eq!(
            ids,
            [
                Some("parcel-de:00340434292135100186"),
                Some("express:00340434292135100186")
            ]
        );
        if let TrackOutcome::Found(parcel) = &outcomes[0] {
            // No place, no offset: local wall time only, never UTC.
            assert_eq!(
                (parcel.events[0].at.zone, parcel.events[0].at.utc),
                (ZoneSource::Unresolved, None)
            );
        }
    }

    #[test]
    fn bodies_that_break_the_contract_are_malformed() {
        let query = ParcelQuery::number("1");
        for body in [
            "",
            "[]",
            r#"{"shipments":{}}"#,
            r#"{"shipments":[{"events":{}}]}"#,
            r#"{"shipments":[{"events":[{"statusCode":5}]}]}"#,
            r#"{"shipments":[{"id":["x"]}]}"#,
        ] {
            assert!(
                matches!(
                    parse_reply(200, body, &query),
                    Err(UpstreamError::Malformed { .. })
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn only_contract_services_are_sent_as_hints() {
        assert_eq!(service_hint(Some(" Express ")), Some("express"));
        assert_eq!(service_hint(Some("DHL Paket")), None);
        assert_eq!(service_hint(None), None);
        let settings = DhlSettings::new(SecretString::from("key-123"));
        assert!(!format!("{settings:?}").contains("key-123"));
    }
}
