//! The carriers' tracking APIs, faked from their published contracts
//! (`specs/carriers/`): UPS Track v1 and OAuth, FedEx Track v1 and OAuth, USPS
//! Tracking v3r2 and OAuth v3, DHL Shipment Tracking - Unified, DPD's SOAP Login and
//! ParcelLifeCycle services. Each carrier lives under its own path prefix (`/ups`,
//! `/fedex`, `/usps`, `/dhl`, `/dpd`), so a connector's base URL is the sandbox's plus
//! that prefix.
//!
//! Scenario parcels are carrier-neutral here (number, places, scans with the carrier's
//! own event code); each carrier's module renders them in its own response shape, with
//! local times where the carrier sends local times. Like the rest of the sandbox, this
//! never shares types or parsing with the connectors in `crate::sources::carriers`.

pub(super) mod dhl;
pub(super) mod dpd;
pub(super) mod fedex;
pub(super) mod ups;
pub(super) mod usps;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Offset, Utc};
use serde::{Deserialize, Serialize};

use super::scenario::When;
use super::{Shared, lock};

/// The carriers the sandbox fakes, by path prefix and scenario name.
pub(super) const CARRIERS: [&str; 5] = ["ups", "fedex", "usps", "dhl", "dpd"];

/// Scenario parcels, for every carrier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CarrierScenario {
    pub parcels: Vec<ScenarioParcel>,
    /// Access tokens' lifetime in seconds, per carrier (`ups`: 14399, `fedex`: 3599,
    /// `usps`: 28799 unless set; DPD auth tokens live a day).
    pub token_lifetime: HashMap<String, i64>,
}

/// A parcel as a carrier knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioParcel {
    /// `ups`, `fedex`, `usps`, `dhl` or `dpd`.
    pub carrier: String,
    pub tracking_number: String,
    /// When the label was created (the ship date carriers show).
    pub label_created: When,
    /// The carrier answers "not found" until then (a label not yet in its systems).
    #[serde(default)]
    pub visible_from: Option<When>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub origin: ScenarioPlace,
    #[serde(default)]
    pub destination: ScenarioPlace,
    /// The promised or estimated delivery the carrier states.
    #[serde(default)]
    pub estimated_delivery: Option<When>,
    /// Scans, in any order; only those at or before now are shown.
    #[serde(default)]
    pub scans: Vec<ScenarioScan>,
}

/// One scan, with the carrier's own event code: UPS the 3-digit status code (`021` out
/// for delivery), FedEx the event type (`OD`), USPS the event code (`OF`), DHL the
/// status code (`transit`), DPD the life-cycle status (`Courier`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioScan {
    pub at: When,
    pub code: String,
    /// The carrier's words; each carrier module has a default per code.
    #[serde(default)]
    pub description: Option<String>,
    /// Where the scan happened; the destination when not given.
    #[serde(default)]
    pub place: Option<ScenarioPlace>,
    /// A reason code for exceptions and failed attempts (FedEx ancillary reason `15`,
    /// USPS reason code, UPS exception code).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A place, with the IANA zone its local times are written in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScenarioPlace {
    pub city: String,
    pub state: Option<String>,
    pub postcode: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// IANA time zone of the place (`America/New_York`).
    pub tz: String,
}

impl Default for ScenarioPlace {
    fn default() -> Self {
        Self {
            city: "ATLANTA".to_owned(),
            state: Some("GA".to_owned()),
            postcode: "30301".to_owned(),
            country: "US".to_owned(),
            tz: "America/New_York".to_owned(),
        }
    }
}

impl ScenarioPlace {
    /// `at` as wall time in this place, with the place's offset then.
    pub(super) fn local(&self, at: DateTime<Utc>) -> DateTime<FixedOffset> {
        match self.tz.parse::<chrono_tz::Tz>() {
            Ok(tz) => {
                let local = at.with_timezone(&tz);
                local.with_timezone(&local.offset().fix())
            }
            Err(_) => at.fixed_offset(),
        }
    }
}

impl CarrierScenario {
    pub(super) fn validate(&self) -> Result<(), String> {
        for (index, parcel) in self.parcels.iter().enumerate() {
            let at = |m: String| {
                format!(
                    "carriers.parcels[{index}] ({}): {m}",
                    parcel.tracking_number
                )
            };
            if !CARRIERS.contains(&parcel.carrier.as_str()) {
                return Err(at(format!(
                    "carrier {:?} is not one of {}",
                    parcel.carrier,
                    CARRIERS.join(", ")
                )));
            }
            if parcel.tracking_number.trim().is_empty() {
                return Err(at("tracking_number is empty".to_owned()));
            }
            let places = std::iter::once(&parcel.origin)
                .chain(std::iter::once(&parcel.destination))
                .chain(parcel.scans.iter().filter_map(|s| s.place.as_ref()));
            for place in places {
                if place.tz.parse::<chrono_tz::Tz>().is_err() {
                    return Err(at(format!("{:?} is not an IANA time zone", place.tz)));
                }
            }
            if parcel.scans.iter().any(|s| s.code.trim().is_empty()) {
                return Err(at("a scan has an empty code".to_owned()));
            }
        }
        for carrier in self.token_lifetime.keys() {
            if !CARRIERS.contains(&carrier.as_str()) {
                return Err(format!(
                    "carriers.token_lifetime: unknown carrier {carrier:?}"
                ));
            }
        }
        Ok(())
    }

    pub(super) fn pin_times(&mut self, now: DateTime<Utc>) {
        for parcel in &mut self.parcels {
            parcel.pin_times(now);
        }
    }
}

impl ScenarioParcel {
    pub(super) fn pin_times(&mut self, now: DateTime<Utc>) {
        self.label_created = When::At(self.label_created.resolve(now));
        self.visible_from = self.visible_from.map(|w| When::At(w.resolve(now)));
        self.estimated_delivery = self.estimated_delivery.map(|w| When::At(w.resolve(now)));
        for scan in &mut self.scans {
            scan.at = When::At(scan.at.resolve(now));
        }
    }

    /// The label date as the carrier shows it: the date where the parcel starts.
    pub(super) fn ship_date(&self, now: DateTime<Utc>) -> NaiveDate {
        self.origin
            .local(self.label_created.resolve(now))
            .date_naive()
    }

    /// Scans that happened by `now`, oldest first.
    pub(super) fn scans_by(&self, now: DateTime<Utc>) -> Vec<&ScenarioScan> {
        let mut scans: Vec<&ScenarioScan> = self
            .scans
            .iter()
            .filter(|s| s.at.resolve(now) <= now)
            .collect();
        scans.sort_by_key(|s| s.at.resolve(now));
        scans
    }

    /// The scan a carrier shows for the label alone: `code` at the label time, at the
    /// origin.
    pub(super) fn label_scan(&self, code: &str) -> ScenarioScan {
        ScenarioScan {
            at: self.label_created,
            code: code.to_owned(),
            description: None,
            place: Some(self.origin.clone()),
            reason: None,
        }
    }

    /// [`ScenarioParcel::scans_by`], or `label` (from [`ScenarioParcel::label_scan`])
    /// alone when no scan happened yet.
    pub(super) fn scans_or<'a>(
        &'a self,
        now: DateTime<Utc>,
        label: &'a ScenarioScan,
    ) -> Vec<&'a ScenarioScan> {
        let mut scans = self.scans_by(now);
        if scans.is_empty() {
            scans.push(label);
        }
        scans
    }

    /// Where `scan` happened.
    pub(super) fn place_of<'a>(&'a self, scan: &'a ScenarioScan) -> &'a ScenarioPlace {
        scan.place.as_ref().unwrap_or(&self.destination)
    }
}

/// Tokens issued by the carriers' OAuth endpoints (and DPD's login).
#[derive(Debug, Default)]
pub(super) struct CarrierState {
    pub(super) scenario: CarrierScenario,
    /// token → (carrier, expiry).
    tokens: HashMap<String, (&'static str, DateTime<Utc>)>,
    issued: u64,
}

impl CarrierState {
    pub(super) fn new(scenario: CarrierScenario) -> Self {
        Self {
            scenario,
            ..Self::default()
        }
    }

    pub(super) fn expire_tokens(&mut self, carrier: &str) {
        self.tokens.retain(|_, (c, _)| *c != carrier);
    }
}

impl Shared {
    /// Issues a token for `carrier` and returns it with its lifetime in seconds.
    pub(super) fn issue_carrier_token(
        &self,
        carrier: &'static str,
        default_lifetime: i64,
    ) -> (String, i64) {
        let now = self.now();
        let mut state = lock(&self.carriers);
        let lifetime = state
            .scenario
            .token_lifetime
            .get(carrier)
            .copied()
            .unwrap_or(default_lifetime);
        state.issued += 1;
        let token = format!(
            "sandbox-{carrier}-token-{}-{}",
            state.issued,
            now.timestamp()
        );
        state
            .tokens
            .insert(token.clone(), (carrier, now + Duration::seconds(lifetime)));
        (token, lifetime)
    }

    /// Whether `token` was issued for `carrier` and has not expired.
    pub(super) fn carrier_token_valid(&self, carrier: &str, token: &str) -> bool {
        let now = self.now();
        lock(&self.carriers)
            .tokens
            .get(token)
            .is_some_and(|(c, expires)| *c == carrier && now < *expires)
    }

    /// The parcels of `carrier` under `number` that the carrier shows now (a reused
    /// number gives several), label date ascending.
    pub(super) fn carrier_parcels(&self, carrier: &str, number: &str) -> Vec<ScenarioParcel> {
        let now = self.now();
        let wanted = normalise_number(number);
        let mut found: Vec<ScenarioParcel> = lock(&self.carriers)
            .scenario
            .parcels
            .iter()
            .filter(|p| p.carrier == carrier && normalise_number(&p.tracking_number) == wanted)
            .filter(|p| p.label_created.resolve(now) <= now)
            .filter(|p| p.visible_from.is_none_or(|w| w.resolve(now) <= now))
            .cloned()
            .collect();
        found.sort_by_key(|p| p.label_created.resolve(now));
        found
    }
}

fn normalise_number(number: &str) -> String {
    number
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// The carriers' routes, each under its prefix.
pub(super) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    let router = ups::routes(router);
    let router = fedex::routes(router);
    let router = usps::routes(router);
    let router = dhl::routes(router);
    dpd::routes(router)
}

/// The operation a request under a carrier prefix is (`ups.token`, `ups.track`,
/// `fedex.token`, `fedex.track`, `usps.token`, `usps.track`, `dhl.track`, `dpd.login`,
/// `dpd.track`), for the journal and faults.
pub(super) fn classify(method: &str, carrier: &str, rest: &[&str]) -> Option<&'static str> {
    match carrier {
        "ups" => ups::classify(method, rest),
        "fedex" => fedex::classify(method, rest),
        "usps" => usps::classify(method, rest),
        "dhl" => dhl::classify(method, rest),
        "dpd" => dpd::classify(method, rest),
        _ => None,
    }
}

/// A fault's answer in the faulted carrier's error shape.
pub(super) fn fault_response(
    operation: &str,
    status: StatusCode,
    retry_after: Option<u64>,
) -> Response {
    match operation.split('.').next().unwrap_or_default() {
        "ups" => ups::fault_response(operation, status, retry_after),
        "fedex" => fedex::fault_response(operation, status, retry_after),
        "usps" => usps::fault_response(operation, status, retry_after),
        "dhl" => dhl::fault_response(operation, status, retry_after),
        _ => dpd::fault_response(operation, status, retry_after),
    }
}

/// `at` in UTC as `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn utc_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A request header's value, when it is text.
pub(super) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request's `Content-Type` is `mime` (any case, parameters allowed).
pub(super) fn content_type_is(headers: &HeaderMap, mime: &str) -> bool {
    header_text(headers, header::CONTENT_TYPE.as_str())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with(mime))
}

/// The first value of the field `name` in a form (`application/x-www-form-urlencoded`)
/// body.
pub(super) fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    header_text(headers, header::AUTHORIZATION.as_str())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// An answer with `status`, `body` and `headers` (which replace what `body` set, e.g.
/// its `Content-Type`): how every carrier's answers, errors included, are built.
pub(super) fn respond(
    status: StatusCode,
    body: impl IntoResponse,
    headers: &[(HeaderName, &'static str)],
) -> Response {
    let mut response = (status, body).into_response();
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_static(value));
    }
    response
}
