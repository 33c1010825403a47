//! DHL end to end: the sandbox's DHL (written from the contract) against the DHL
//! connector (written from the contract too, separately). Every sandbox answer is checked
//! against `specs/carriers/dhl/utapi-traking-api-1.4.1.yaml`; the connector must read each
//! parcel as DHL's `statusCode` (and, within it, DHL's words) says, with one call per
//! number. DHL has no token: a refused key is the credentials case here.

#[path = "common/carriers.rs"]
mod carriers_common;

use carriers_common::openapi::OpenApi;
use carriers_common::{
    ParcelParts, Run, ScanParts, assert_credentials_error, current_status, found_for, found_one,
    newest, parcel, place, scan, start, track_numbers, utc, valid,
};
use chrono::{DateTime, TimeZone, Utc};
use nightdesk::http::RetryPolicy;
use nightdesk::model::TrackingStatus;
use nightdesk::sandbox::{Fault, ScenarioParcel, ScenarioPlace, ScenarioScan};
use nightdesk::sources::carriers::dhl::{DhlClient, DhlSettings};
use nightdesk::sources::carriers::{
    CarrierClient, ExceptionReason, ParcelQuery, TrackOutcome, ZoneSource,
};
use secrecy::SecretString;
use serde_json::Value;

/// The sandbox's DHL key (`src/sandbox/carriers/dhl.rs`, `API_KEY`).
const API_KEY: &str = "sandbox-dhl-api-key";
/// The one operation DHL has.
const TRACK: &str = "dhl.track";

const LABEL_ONLY: &str = "00340434161094000001";
const IN_TRANSIT: &str = "00340434161094000002";
const OUT_FOR_DELIVERY: &str = "00340434161094000003";
const EXCEPTION: &str = "00340434161094000004";
const DELIVERED: &str = "3318810025";
const ATTEMPTED: &str = "00340434161094000005";
const PICKUP: &str = "00340434161094000006";
const RETURNED: &str = "00340434161094000007";
const NEW_LABEL: &str = "00340434161094000008";
const TWO_DIVISIONS: &str = "00340434161094000009";

fn t0() -> DateTime<Utc> {
    utc("2026-11-22T12:00:00Z")
}

fn bonn() -> ScenarioPlace {
    place("Bonn", "53113", "DE", "Europe/Berlin")
}

fn london() -> ScenarioPlace {
    place("London", "EC1A 1BB", "GB", "Europe/London")
}

/// A parcel-de parcel to Leipzig.
fn parcel_de(number: &str, label_created: &str, scans: Vec<ScenarioScan>) -> ScenarioParcel {
    parcel("dhl", number, label_created, scans)
        .service("parcel-de")
        .destination(place("Leipzig", "04109", "DE", "Europe/Berlin"))
}

fn parcels() -> Vec<ScenarioParcel> {
    let mut parcels = vec![
        parcel_de(LABEL_ONLY, "5h ago", vec![]).origin(bonn()),
        parcel_de(
            IN_TRANSIT,
            "2d ago",
            vec![
                scan("2d ago", "pre-transit"),
                scan("2026-11-22T07:15:00Z", "transit")
                    .description("The shipment has been processed in the parcel center of origin"),
            ],
        )
        .origin(bonn())
        .estimated_delivery("in 1d"),
        parcel(
            "dhl",
            DELIVERED,
            "3d ago",
            vec![
                scan("2d ago", "transit").place(london()),
                scan("2026-11-22T09:45:00Z", "delivered")
                    .description("Delivered - Signed for by: JESSICA"),
            ],
        )
        .service("express")
        .origin(london())
        .destination(place("Amsterdam", "1043 AG", "NL", "Europe/Amsterdam")),
        parcel("dhl", NEW_LABEL, "10m ago", vec![])
            .service("parcel-de")
            .visible_from("in 20m"),
        parcel_de(TWO_DIVISIONS, "2d ago", vec![scan("1d ago", "delivered")]),
        parcel(
            "dhl",
            TWO_DIVISIONS,
            "1d ago",
            vec![scan("20h ago", "transit")],
        )
        .service("express")
        .destination(place("Paris", "75001", "FR", "Europe/Paris")),
    ];
    // In transit since `since`, then one scan in DHL's words.
    for (number, label_created, since, at, code, words) in [
        (
            OUT_FOR_DELIVERY,
            "2d ago",
            "1d ago",
            "2h ago",
            "transit",
            "The shipment has been loaded onto the delivery vehicle",
        ),
        (
            EXCEPTION,
            "6d ago",
            "5d ago",
            "1d ago",
            "failure",
            "The shipment is being held by customs",
        ),
        (
            ATTEMPTED,
            "3d ago",
            "2d ago",
            "4h ago",
            "failure",
            "A delivery attempt was made. The recipient was not present.",
        ),
        (
            PICKUP,
            "3d ago",
            "2d ago",
            "3h ago",
            "transit",
            "The shipment is ready for pick-up at the PACKSTATION 123",
        ),
        (
            RETURNED,
            "9d ago",
            "8d ago",
            "1d ago",
            "failure",
            "The shipment is being returned to sender",
        ),
    ] {
        let scans = vec![scan(since, "transit"), scan(at, code).description(words)];
        parcels.push(parcel_de(number, label_created, scans));
    }
    parcels
}

async fn setup() -> Run {
    start("dhl", parcels(), t0()).await
}

impl Run {
    fn client_with(&self, key: &str) -> DhlClient {
        let mut settings = DhlSettings::new(SecretString::from(key));
        settings.base_url = self.base.clone();
        match DhlClient::new(settings, self.shared_clock(), RetryPolicy::fast()) {
            Ok(client) => client,
            Err(e) => panic!("the client does not build: {e}"),
        }
    }

    fn client(&self) -> DhlClient {
        self.client_with(API_KEY)
    }

    /// A raw GET: status, content type and JSON body.
    async fn get(&self, key: &str, query: &[(&str, &str)]) -> (u16, String, Value) {
        let request = self
            .http
            .get(format!("{}/track/shipments", self.base))
            .query(query)
            .header("DHL-API-Key", key);
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => panic!("GET {query:?}: {e}"),
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        match response.json::<Value>().await {
            Ok(body) => (status, content_type, body),
            Err(e) => panic!("GET {query:?} answered {status} without JSON: {e}"),
        }
    }
}

fn response_schema(api: &OpenApi, status: u16, media: &str) -> Value {
    carriers_common::response_schema(api, "get", "/shipments", status, media)
}

#[tokio::test]
async fn every_sandbox_answer_follows_the_contract() {
    let run = setup().await;
    let api = OpenApi::load("dhl/utapi-traking-api-1.4.1.yaml");
    let ok = response_schema(&api, 200, "application/json");
    for number in [
        LABEL_ONLY,
        IN_TRANSIT,
        OUT_FOR_DELIVERY,
        EXCEPTION,
        DELIVERED,
        ATTEMPTED,
        PICKUP,
        RETURNED,
        TWO_DIVISIONS,
    ] {
        let (status, content_type, body) = run
            .get(API_KEY, &[("trackingNumber", number), ("language", "en")])
            .await;
        assert_eq!(status, 200, "{number}: {body}");
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        valid(&api, &ok, &body, number);
        let shipments = body["shipments"].as_array().map_or(0, Vec::len);
        assert!(shipments >= 1, "{number}: {body}");
    }
    let (status, _, body) = run
        .get(
            API_KEY,
            &[("trackingNumber", TWO_DIVISIONS), ("service", "express")],
        )
        .await;
    assert_eq!(status, 200);
    valid(&api, &ok, &body, "one division");

    let (status, content_type, body) = run.get(API_KEY, &[("trackingNumber", NEW_LABEL)]).await;
    assert_eq!(
        (status, content_type.as_str()),
        (404, "application/problem+json")
    );
    valid(
        &api,
        &response_schema(&api, 404, "application/problem+json"),
        &body,
        "404",
    );
    assert_eq!(body["title"], "No result found");

    // The path declares only 200 and 404; the others use the contract's problem detail.
    let problem = api.schema("supermodelIoLogisticsApiProblemDetail");
    let (status, content_type, body) = run
        .get("wrong-key", &[("trackingNumber", IN_TRANSIT)])
        .await;
    assert_eq!(
        (status, content_type.as_str()),
        (401, "application/problem+json")
    );
    valid(&api, &problem, &body, "401");
    let (status, _, body) = run.get(API_KEY, &[("service", "express")]).await;
    assert_eq!(status, 400);
    valid(&api, &problem, &body, "400");
    run.sandbox.inject(Fault::status("dhl.track", 429));
    let (status, content_type, body) = run.get(API_KEY, &[("trackingNumber", IN_TRANSIT)]).await;
    assert_eq!(
        (status, content_type.as_str()),
        (429, "application/problem+json")
    );
    valid(&api, &problem, &body, "429");
}

#[tokio::test]
async fn each_parcel_reads_as_its_status_code_says_one_call_each() {
    let run = setup().await;
    let client = run.client();
    let expected: [(&str, TrackingStatus, Option<ExceptionReason>, &str); 8] = [
        (
            LABEL_ONLY,
            TrackingStatus::LabelCreated,
            None,
            "pre-transit",
        ),
        (IN_TRANSIT, TrackingStatus::InTransit, None, "transit"),
        (
            OUT_FOR_DELIVERY,
            TrackingStatus::OutForDelivery,
            None,
            "transit",
        ),
        (
            EXCEPTION,
            TrackingStatus::Exception,
            Some(ExceptionReason::Customs),
            "failure",
        ),
        (DELIVERED, TrackingStatus::Delivered, None, "delivered"),
        (
            ATTEMPTED,
            TrackingStatus::DeliveryAttempted,
            None,
            "failure",
        ),
        (PICKUP, TrackingStatus::AvailableForPickup, None, "transit"),
        (RETURNED, TrackingStatus::ReturnToSender, None, "failure"),
    ];
    for (number, status, reason, code) in expected {
        let parcel = found_one(&client, number).await;
        let Some(newest) = newest(&parcel) else {
            panic!("{number}: no events");
        };
        assert_eq!(
            (newest.status, newest.reason, newest.raw_code.as_str()),
            (status, reason, code),
            "{number}"
        );
        assert!(!newest.text.is_empty(), "{number}: no words");
        let current = parcel
            .current
            .as_ref()
            .map(|c| (c.status, c.reason, c.raw_code.as_str()));
        assert_eq!(current, Some((status, reason, code)), "{number}: current");
        assert_eq!(parcel.tracking_number, number);
    }
    // The 250-a-day plan: exactly one call per number, nothing more.
    assert_eq!(run.answers(TRACK), vec![200; expected.len()]);
}

#[tokio::test]
async fn pre_transit_is_a_label_not_a_parcel_in_transit() {
    let run = setup().await;
    let parcel = found_one(&run.client(), LABEL_ONLY).await;
    assert_eq!(parcel.events.len(), 1);
    assert_eq!(parcel.events[0].status, TrackingStatus::LabelCreated);
    assert_eq!(parcel.events[0].raw_code, "pre-transit");
    assert_eq!(
        parcel.carrier_shipment_id.as_deref(),
        Some("parcel-de:00340434161094000001")
    );
}

#[tokio::test]
async fn a_new_label_is_not_found_not_an_error() {
    let run = setup().await;
    let outcomes = track_numbers(&run.client(), &[NEW_LABEL]).await;
    assert!(matches!(
        outcomes.as_slice(),
        [TrackOutcome::NotFound { tracking_number, detail }] if tracking_number == NEW_LABEL && detail.contains("No result found")
    ));
    assert_eq!(run.answers(TRACK), [404]);
}

#[tokio::test]
async fn other_divisions_are_separate_shipments_and_the_service_hint_narrows() {
    let run = setup().await;
    let client = run.client();
    let outcomes = track_numbers(&client, &[TWO_DIVISIONS]).await;
    let ids: Vec<Option<&str>> = outcomes
        .iter()
        .map(|o| match o {
            TrackOutcome::Found(parcel) => parcel.carrier_shipment_id.as_deref(),
            _ => None,
        })
        .collect();
    assert_eq!(
        ids,
        [
            Some("parcel-de:00340434161094000009"),
            Some("express:00340434161094000009")
        ]
    );
    let query = ParcelQuery {
        service: Some("express".into()),
        ..ParcelQuery::number(TWO_DIVISIONS)
    };
    let parcel = found_for(&client, query).await;
    assert_eq!(
        parcel.carrier_shipment_id.as_deref(),
        Some("express:00340434161094000009")
    );
    assert_eq!(current_status(&parcel), Some(TrackingStatus::InTransit));
    let sent = run
        .journal(TRACK)
        .into_iter()
        .map(|e| e.query)
        .collect::<Vec<_>>();
    assert_eq!(sent.len(), 2);
    assert!(sent[1].contains("service=express"), "{}", sent[1]);
    assert!(!sent[0].contains("service="), "{}", sent[0]);
}

#[tokio::test]
async fn times_resolve_by_offset_or_by_place_never_as_utc() {
    let run = setup().await;
    let client = run.client();
    // parcel-de sends the Berlin wall time without offset: 07:15 UTC is 08:15 there.
    let parcel = found_one(&client, IN_TRANSIT).await;
    let Some(processed) = parcel.events.iter().find(|e| e.raw_code == "transit") else {
        panic!("{parcel:?}");
    };
    assert_eq!(processed.at.local.to_string(), "2026-11-22 08:15:00");
    assert_eq!(processed.at.zone, ZoneSource::Location);
    assert_eq!(
        processed.at.utc,
        Utc.with_ymd_and_hms(2026, 11, 22, 7, 15, 0).single()
    );
    assert!(parcel.estimated_delivery.is_some_and(|eta| eta > t0()));
    // Express sends the offset.
    let parcel = found_one(&client, DELIVERED).await;
    let Some(delivered) = parcel.events.iter().find(|e| e.raw_code == "delivered") else {
        panic!("{parcel:?}");
    };
    assert_eq!(delivered.at.zone, ZoneSource::Carrier);
    assert_eq!(delivered.at.local.to_string(), "2026-11-22 10:45:00");
    assert_eq!(
        delivered.at.utc,
        Utc.with_ymd_and_hms(2026, 11, 22, 9, 45, 0).single()
    );
    assert_eq!(delivered.location.country.as_deref(), Some("NL"));
}

#[tokio::test]
async fn a_429_without_retry_after_is_retried() {
    let run = setup().await;
    run.sandbox.inject(Fault::status("dhl.track", 429));
    let parcel = found_one(&run.client(), PICKUP).await;
    assert_eq!(
        current_status(&parcel),
        Some(TrackingStatus::AvailableForPickup)
    );
    assert_eq!(run.answers(TRACK), [429, 200]);
}

#[tokio::test]
async fn a_refused_key_is_a_credentials_error_and_is_not_retried() {
    let run = setup().await;
    assert_credentials_error(
        run.client_with("not-the-key")
            .track(&[ParcelQuery::number(IN_TRANSIT)])
            .await,
        "Unauthorized",
        "not-the-key",
    );
    assert_eq!(run.answers(TRACK), [401]);
}
