//! Shared pieces of the carrier end-to-end tests (`tests/carrier_*.rs`): the sandbox
//! started on a scenario with a manual clock, its journal by operation, scenario parcels
//! written a line each (times spelled as in scenario YAML), raw JSON answers checked
//! against the carriers' OpenAPI contracts, and the checks every carrier's outcomes go
//! through.
//!
//! Use from a test file with `#[path = "common/carriers.rs"] mod carriers_common;`; the
//! contracts' validator comes with it as `carriers_common::openapi`. A test file adds
//! its carrier's client to [`Run`] in an `impl carriers_common::Run` block of its own.
#![allow(dead_code)]

#[path = "openapi.rs"]
pub mod openapi;

use std::fmt::Debug;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use nightdesk::clock::{ManualClock, SharedClock};
use nightdesk::model::TrackingStatus;
use nightdesk::sandbox::{
    CarrierScenario, JournalEntry, Sandbox, SandboxOptions, Scenario, ScenarioParcel,
    ScenarioPlace, ScenarioScan, When,
};
use nightdesk::sources::carriers::{
    CarrierClient, CarrierError, CarrierEvent, CarrierParcel, ExceptionReason, ParcelQuery,
    TrackOutcome,
};
use openapi::OpenApi;
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Scenario parcels

/// An RFC 3339 time (`2026-11-22T12:00:00Z`).
pub fn utc(text: &str) -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339(text) {
        Ok(at) => at.with_timezone(&Utc),
        Err(e) => panic!("{text} is not an RFC 3339 time: {e}"),
    }
}

/// A scenario time: a [`When`], or its scenario-YAML spelling (`2d ago`, `in 1d`,
/// `2026-11-22T10:30:00Z`).
pub trait AsWhen {
    fn when(self) -> When;
}

impl AsWhen for When {
    fn when(self) -> When {
        self
    }
}

impl AsWhen for &str {
    fn when(self) -> When {
        match self.parse() {
            Ok(when) => when,
            Err(e) => panic!("{self:?} is not a scenario time: {e}"),
        }
    }
}

/// A place as scenario YAML writes it without a state: the state is
/// `ScenarioPlace::default()`'s, as it is for a YAML place that leaves it out.
pub fn place(city: &str, postcode: &str, country: &str, tz: &str) -> ScenarioPlace {
    ScenarioPlace {
        city: city.to_owned(),
        postcode: postcode.to_owned(),
        country: country.to_owned(),
        tz: tz.to_owned(),
        ..ScenarioPlace::default()
    }
}

/// A US place, with its state.
pub fn us_place(city: &str, state: &str, postcode: &str, tz: &str) -> ScenarioPlace {
    ScenarioPlace {
        state: Some(state.to_owned()),
        ..place(city, postcode, "US", tz)
    }
}

/// A scan at the destination with the carrier's default words.
pub fn scan(at: impl AsWhen, code: &str) -> ScenarioScan {
    ScenarioScan {
        at: at.when(),
        code: code.to_owned(),
        description: None,
        place: None,
        reason: None,
    }
}

/// The optional parts of a scan, as scenario YAML's keys.
pub trait ScanParts {
    fn place(self, place: ScenarioPlace) -> Self;
    fn description(self, words: &str) -> Self;
    fn reason(self, reason: &str) -> Self;
}

impl ScanParts for ScenarioScan {
    fn place(self, place: ScenarioPlace) -> Self {
        ScenarioScan {
            place: Some(place),
            ..self
        }
    }

    fn description(self, words: &str) -> Self {
        ScenarioScan {
            description: Some(words.to_owned()),
            ..self
        }
    }

    fn reason(self, reason: &str) -> Self {
        ScenarioScan {
            reason: Some(reason.to_owned()),
            ..self
        }
    }
}

/// A parcel of `carrier` with the default places, no service, no estimate, visible
/// from the start.
pub fn parcel(
    carrier: &str,
    number: &str,
    label_created: impl AsWhen,
    scans: Vec<ScenarioScan>,
) -> ScenarioParcel {
    ScenarioParcel {
        carrier: carrier.to_owned(),
        tracking_number: number.to_owned(),
        label_created: label_created.when(),
        visible_from: None,
        service: None,
        origin: ScenarioPlace::default(),
        destination: ScenarioPlace::default(),
        estimated_delivery: None,
        scans,
    }
}

/// The optional parts of a parcel, as scenario YAML's keys.
pub trait ParcelParts {
    fn service(self, service: &str) -> Self;
    fn origin(self, place: ScenarioPlace) -> Self;
    fn destination(self, place: ScenarioPlace) -> Self;
    fn estimated_delivery(self, at: impl AsWhen) -> Self;
    fn visible_from(self, at: impl AsWhen) -> Self;
}

impl ParcelParts for ScenarioParcel {
    fn service(self, service: &str) -> Self {
        ScenarioParcel {
            service: Some(service.to_owned()),
            ..self
        }
    }

    fn origin(self, place: ScenarioPlace) -> Self {
        ScenarioParcel {
            origin: place,
            ..self
        }
    }

    fn destination(self, place: ScenarioPlace) -> Self {
        ScenarioParcel {
            destination: place,
            ..self
        }
    }

    fn estimated_delivery(self, at: impl AsWhen) -> Self {
        ScenarioParcel {
            estimated_delivery: Some(at.when()),
            ..self
        }
    }

    fn visible_from(self, at: impl AsWhen) -> Self {
        ScenarioParcel {
            visible_from: Some(at.when()),
            ..self
        }
    }
}

// ---------------------------------------------------------------------------------------
// The sandbox

/// A sandbox on loopback serving `parcels`, its clock, and the carrier's base URL.
pub struct Run {
    pub sandbox: Sandbox,
    pub clock: ManualClock,
    /// `<sandbox>/<carrier>`.
    pub base: String,
    pub http: reqwest::Client,
}

/// Starts the sandbox on `parcels` with a manual clock at `now`.
pub async fn start(carrier: &str, parcels: Vec<ScenarioParcel>, now: DateTime<Utc>) -> Run {
    let scenario = Scenario {
        carriers: CarrierScenario {
            parcels,
            ..CarrierScenario::default()
        },
        ..Scenario::default()
    };
    let clock = ManualClock::new(now);
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => panic!("bind: {e}"),
    };
    let shared: SharedClock = Arc::new(clock.clone());
    let sandbox = match Sandbox::start(listener, SandboxOptions::new(scenario, shared)).await {
        Ok(sandbox) => sandbox,
        Err(e) => panic!("the sandbox does not start: {e}"),
    };
    let base = format!("{}/{carrier}", sandbox.base_url());
    Run {
        sandbox,
        clock,
        base,
        http: reqwest::Client::new(),
    }
}

impl Run {
    /// The sandbox's clock, for a connector.
    pub fn shared_clock(&self) -> SharedClock {
        Arc::new(self.clock.clone())
    }

    /// The journaled requests for `operation`, in order.
    pub fn journal(&self, operation: &str) -> Vec<JournalEntry> {
        self.sandbox
            .journal()
            .into_iter()
            .filter(|e| e.operation == operation)
            .collect()
    }

    /// (status, fault) of each journaled request for `operation`, in order.
    pub fn calls(&self, operation: &str) -> Vec<(u16, bool)> {
        self.journal(operation)
            .iter()
            .map(|e| (e.status, e.fault))
            .collect()
    }

    /// Statuses the sandbox answered `operation` with, in order.
    pub fn answers(&self, operation: &str) -> Vec<u16> {
        self.journal(operation).iter().map(|e| e.status).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Raw answers and the contracts

/// A raw HTTP answer: its status and JSON body.
pub async fn json_answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status().as_u16();
    match response.json::<Value>().await {
        Ok(body) => (status, body),
        Err(e) => panic!("answer {status} is not JSON: {e}"),
    }
}

/// The schema `api` declares for `method path` answering `status` as `media`.
pub fn response_schema(api: &OpenApi, method: &str, path: &str, status: u16, media: &str) -> Value {
    match api.response_schema(method, path, status, media) {
        Ok(schema) => schema,
        Err(e) => panic!("no schema: {e}"),
    }
}

/// Fails the test, naming `what`, when `body` breaks `schema`.
pub fn valid(api: &OpenApi, schema: &Value, body: &Value, what: &str) {
    if let Err(problems) = api.check(schema, body) {
        panic!("{what} breaks the contract: {problems}\n{body:#}");
    }
}

/// `body` follows the JSON answer `api` declares for `method path` and `status`.
pub fn check(api: &OpenApi, method: &str, path: &str, status: u16, body: &Value) {
    let schema = response_schema(api, method, path, status, "application/json");
    valid(api, &schema, body, &format!("{method} {path} {status}"));
}

// ---------------------------------------------------------------------------------------
// Outcomes

/// Tracks `queries` in one call; a failed call fails the test.
pub async fn track(client: &impl CarrierClient, queries: &[ParcelQuery]) -> Vec<TrackOutcome> {
    match client.track(queries).await {
        Ok(outcomes) => outcomes,
        Err(e) => panic!("track {queries:?}: {e}"),
    }
}

/// Tracks `numbers`, without hints, in one call.
pub async fn track_numbers(client: &impl CarrierClient, numbers: &[&str]) -> Vec<TrackOutcome> {
    let queries: Vec<ParcelQuery> = numbers.iter().map(|n| ParcelQuery::number(*n)).collect();
    track(client, &queries).await
}

/// Tracks `query` alone, which must come back as exactly one parcel.
pub async fn found_for(client: &impl CarrierClient, query: ParcelQuery) -> CarrierParcel {
    match track(client, std::slice::from_ref(&query)).await.as_slice() {
        [TrackOutcome::Found(parcel)] => parcel.clone(),
        other => panic!(
            "{}: expected one Found, got {other:?}",
            query.tracking_number
        ),
    }
}

/// Tracks `number` alone, which must come back as exactly one parcel.
pub async fn found_one(client: &impl CarrierClient, number: &str) -> CarrierParcel {
    found_for(client, ParcelQuery::number(number)).await
}

/// Every parcel found under `number`.
pub fn found<'a>(outcomes: &'a [TrackOutcome], number: &str) -> Vec<&'a CarrierParcel> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            TrackOutcome::Found(parcel) if parcel.tracking_number == number => Some(parcel),
            _ => None,
        })
        .collect()
}

/// The one parcel found under `number`.
pub fn the_one<'a>(outcomes: &'a [TrackOutcome], number: &str) -> &'a CarrierParcel {
    match found(outcomes, number).as_slice() {
        [parcel] => parcel,
        other => panic!(
            "{number}: expected one Found, got {}: {outcomes:?}",
            other.len()
        ),
    }
}

/// The parcel's newest event.
pub fn newest(parcel: &CarrierParcel) -> Option<&CarrierEvent> {
    parcel.events.iter().max_by_key(|e| e.at.sort_key())
}

/// What the parcel's newest event reads: status, reason, the carrier's code.
pub fn newest_reads(
    parcel: &CarrierParcel,
) -> Option<(TrackingStatus, Option<ExceptionReason>, &str)> {
    newest(parcel).map(|e| (e.status, e.reason, e.raw_code.as_str()))
}

/// The status of the carrier's own summary.
pub fn current_status(parcel: &CarrierParcel) -> Option<TrackingStatus> {
    parcel.current.as_ref().map(|c| c.status)
}

/// `result` is a credentials error whose detail names `names` and that never shows
/// `secret`, neither displayed nor debug-printed.
pub fn assert_credentials_error<T: Debug>(
    result: Result<T, CarrierError>,
    names: &str,
    secret: &str,
) {
    match result {
        Err(error @ CarrierError::Credentials { .. }) => {
            let text = format!("{error} {error:?}");
            assert!(!text.contains(secret), "{text}");
            if let CarrierError::Credentials { detail, .. } = &error {
                assert!(detail.contains(names), "{text}");
            }
        }
        other => panic!("expected a credentials error, got {other:?}"),
    }
}
