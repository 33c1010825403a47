//! DPD end to end: the sandbox's DPD SOAP services (written from the XSDs) against the
//! DPD connector (written from the XSDs too, separately). Every SOAP payload either side
//! sends is validated against `specs/carriers/dpd/*.xsd` with `xmllint` (Debian
//! `libxml2-utils`; the test fails when it is missing). The connector must count only
//! the life-cycle steps reached, take the `isCurrentStatus` one as where the parcel is,
//! and log in again once when DPD refuses an expired token.

#[path = "common/carriers.rs"]
mod carriers_common;

use std::path::PathBuf;
use std::process::Command;

use carriers_common::{
    ParcelParts, Run, ScanParts, assert_credentials_error, current_status, found_one, newest,
    parcel, place, scan, start, track_numbers, utc,
};
use chrono::{DateTime, TimeZone, Utc};
use nightdesk::http::RetryPolicy;
use nightdesk::model::TrackingStatus;
use nightdesk::sandbox::{Fault, ScenarioParcel, ScenarioPlace};
use nightdesk::sources::carriers::dpd::{DpdClient, DpdSettings};
use nightdesk::sources::carriers::{CarrierClient, ParcelQuery, TrackOutcome, ZoneSource};
use quick_xml::events::Event;
use quick_xml::name::QName;
use secrecy::SecretString;

/// The sandbox's DPD account (`src/sandbox/carriers/dpd.rs`, `DELIS_ID`/`PASSWORD`).
const DELIS_ID: &str = "sandboxdelis";
const PASSWORD: &str = "sandbox-dpd-password";

const LABEL_ONLY: &str = "01234567890001";
const IN_TRANSIT: &str = "01234567890002";
const OUT_FOR_DELIVERY: &str = "01234567890003";
const DELIVERED: &str = "01234567890004";
const ATTEMPTED: &str = "01234567890005";
const RETURNING: &str = "01234567890006";
const PICKUP: &str = "01234567890007";
const NEW_LABEL: &str = "01234567890008";

fn t0() -> DateTime<Utc> {
    utc("2026-11-22T12:00:00Z")
}

fn aschaffenburg() -> ScenarioPlace {
    place("Aschaffenburg", "63741", "DE", "Europe/Berlin")
}

fn mechelen() -> ScenarioPlace {
    place("Mechelen", "2800", "BE", "Europe/Brussels")
}

fn parcels() -> Vec<ScenarioParcel> {
    let mut parcels = vec![
        parcel("dpd", LABEL_ONLY, "6h ago", vec![])
            .service("DPD Classic")
            .origin(aschaffenburg())
            .destination(mechelen()),
        parcel(
            "dpd",
            IN_TRANSIT,
            "3d ago",
            vec![
                scan("2d ago", "PickedUp").place(aschaffenburg()),
                scan("1d ago", "BetweenDepots").place(place(
                    "Puurs",
                    "2870",
                    "BE",
                    "Europe/Brussels",
                )),
                scan("2026-11-22T09:00:00Z", "Depot"),
            ],
        )
        .origin(aschaffenburg())
        .destination(mechelen()),
        parcel(
            "dpd",
            PICKUP,
            "4d ago",
            vec![
                scan("3d ago", "Courier"),
                scan("2d ago", "ParcelShop")
                    .description("Delivered by driver to Pickup parcelshop"),
            ],
        )
        .destination(mechelen()),
        parcel("dpd", NEW_LABEL, "1h ago", vec![]).visible_from("in 1d"),
    ];
    // Three life-cycle steps on the way to Mechelen.
    for (number, label_created, steps) in [
        (
            OUT_FOR_DELIVERY,
            "3d ago",
            [
                ("2d ago", "PickedUp"),
                ("5h ago", "Depot"),
                ("2h ago", "Courier"),
            ],
        ),
        (
            DELIVERED,
            "4d ago",
            [
                ("3d ago", "PickedUp"),
                ("4h ago", "Courier"),
                ("1h ago", "Delivered"),
            ],
        ),
        (
            ATTEMPTED,
            "4d ago",
            [
                ("3d ago", "PickedUp"),
                ("5h ago", "Courier"),
                ("3h ago", "DeliveryFailure"),
            ],
        ),
        (
            RETURNING,
            "4d ago",
            [
                ("3d ago", "Courier"),
                ("2d ago", "DeliveryFailure"),
                ("1d ago", "ReturningFromDelivery"),
            ],
        ),
    ] {
        let scans = steps.iter().map(|(at, code)| scan(*at, code)).collect();
        parcels.push(parcel("dpd", number, label_created, scans).destination(mechelen()));
    }
    parcels
}

async fn setup() -> Run {
    start("dpd", parcels(), t0()).await
}

impl Run {
    fn client_with(&self, password: &str) -> DpdClient {
        let mut settings = DpdSettings::new(DELIS_ID, SecretString::from(password));
        settings.base_url = self.base.clone();
        match DpdClient::new(settings, self.shared_clock(), RetryPolicy::fast()) {
            Ok(client) => client,
            Err(e) => panic!("the client does not build: {e}"),
        }
    }

    fn client(&self) -> DpdClient {
        self.client_with(PASSWORD)
    }

    /// A raw SOAP POST: status and body.
    async fn soap(&self, service: &str, envelope: String) -> (u16, String) {
        let request = self
            .http
            .post(format!("{}/services/{service}/", self.base))
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(envelope);
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => panic!("POST {service}: {e}"),
        };
        let status = response.status().as_u16();
        match response.text().await {
            Ok(body) => (status, body),
            Err(e) => panic!("POST {service}: {e}"),
        }
    }

    async fn login(&self, password: &str) -> (u16, String) {
        self.soap(
            "LoginService/V2_1",
            format!(
                r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns="http://dpd.com/common/service/types/LoginService/2.1"><soapenv:Header/><soapenv:Body><ns:getAuth><delisId>{DELIS_ID}</delisId><password>{password}</password><messageLanguage>en_EN</messageLanguage></ns:getAuth></soapenv:Body></soapenv:Envelope>"#
            ),
        )
        .await
    }

    async fn auth_token(&self) -> String {
        let (status, body) = self.login(PASSWORD).await;
        assert_eq!(status, 200, "{body}");
        let start = body.find("<authToken>").map(|i| i + "<authToken>".len());
        let end = body.find("</authToken>");
        match (start, end) {
            (Some(start), Some(end)) => body[start..end].to_owned(),
            _ => panic!("no authToken in {body}"),
        }
    }

    async fn tracking(&self, token: &str, number: &str) -> (u16, String) {
        self.soap(
            "ParcelLifeCycleService/V2_0",
            format!(
                r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns="http://dpd.com/common/service/types/Authentication/2.0" xmlns:ns1="http://dpd.com/common/service/types/ParcelLifeCycleService/2.0"><soapenv:Header><ns:authentication><delisId>{DELIS_ID}</delisId><authToken>{token}</authToken><messageLanguage>en_EN</messageLanguage></ns:authentication></soapenv:Header><soapenv:Body><ns1:getTrackingData><parcelLabelNumber>{number}</parcelLabelNumber></ns1:getTrackingData></soapenv:Body></soapenv:Envelope>"#
            ),
        )
        .await
    }
}

/// The element at `path` (local names, `*` for any) with the namespace declarations of
/// its ancestors copied onto it, so it stands alone as a document.
fn extract(xml: &str, path: &[&str]) -> String {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut open: Vec<(String, Vec<(String, String)>)> = Vec::new();
    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => panic!("not XML ({e}): {xml}"),
        };
        let (start, empty) = match event {
            Event::Start(start) => (start, false),
            Event::Empty(start) => (start, true),
            Event::End(_) => {
                open.pop();
                continue;
            }
            Event::Eof => panic!("no {path:?} in {xml}"),
            _ => continue,
        };
        let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
        let declarations: Vec<(String, String)> = start
            .attributes()
            .filter_map(Result::ok)
            .filter(|a| a.key.as_ref().starts_with(b"xmlns"))
            .map(|a| {
                (
                    String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                    String::from_utf8_lossy(&a.value).into_owned(),
                )
            })
            .collect();
        let depth = open.len();
        let on_path = depth < path.len()
            && open.iter().zip(path).all(|((n, _), p)| *p == "*" || n == p)
            && (path[depth] == "*" || path[depth] == name);
        if on_path && depth + 1 == path.len() {
            let qualified = start.name().as_ref().to_vec();
            if !empty && let Err(e) = reader.read_to_end(QName(&qualified)) {
                panic!("unclosed {name}: {e}");
            }
            let end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
            let mut element = xml[before..end].to_owned();
            let own: Vec<&String> = declarations.iter().map(|(k, _)| k).collect();
            let inherited: String = open
                .iter()
                .flat_map(|(_, d)| d)
                .filter(|(k, _)| !own.contains(&k))
                .map(|(k, v)| format!(" {k}=\"{v}\""))
                .collect();
            element.insert_str(1 + qualified.len(), &inherited);
            return element;
        }
        if !empty {
            open.push((name, declarations));
        }
    }
}

/// Validates the element at `path` of `xml` against `specs/carriers/dpd/<xsd>`.
fn valid(xml: &str, path: &[&str], xsd: &str) {
    let element = extract(xml, path);
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("tempdir: {e}"),
    };
    let file = dir.path().join("payload.xml");
    if let Err(e) = std::fs::write(&file, &element) {
        panic!("write {}: {e}", file.display());
    }
    let schema: PathBuf = [env!("CARGO_MANIFEST_DIR"), "specs", "carriers", "dpd", xsd]
        .iter()
        .collect();
    let output = match Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(&file)
        .output()
    {
        Ok(output) => output,
        Err(e) => panic!(
            "xmllint is needed to check DPD payloads against the XSDs and could not run ({e}): \
             install it (Debian/Ubuntu: apt-get install -y libxml2-utils)"
        ),
    };
    assert!(
        output.status.success(),
        "{path:?} breaks {xsd}: {}\n{element}",
        String::from_utf8_lossy(&output.stderr)
    );
}

const BODY_CHILD: &[&str] = &["Envelope", "Body", "*"];
const FAULT_DETAIL: &[&str] = &["Envelope", "Body", "Fault", "detail", "*"];
const AUTH_HEADER: &[&str] = &["Envelope", "Header", "*"];

#[tokio::test]
async fn every_payload_follows_the_xsds() {
    let run = setup().await;
    let (status, login) = run.login(PASSWORD).await;
    assert_eq!(status, 200);
    valid(&login, BODY_CHILD, "LoginServiceV21.xsd");
    let token = run.auth_token().await;
    for number in [
        LABEL_ONLY,
        IN_TRANSIT,
        OUT_FOR_DELIVERY,
        DELIVERED,
        ATTEMPTED,
        RETURNING,
        PICKUP,
        NEW_LABEL,
    ] {
        let (status, body) = run.tracking(&token, number).await;
        assert_eq!(status, 200, "{number}: {body}");
        valid(&body, BODY_CHILD, "ParcelLifecycleServiceV20.xsd");
    }
    let (status, refused) = run.login("wrong").await;
    assert_eq!(status, 500);
    assert!(refused.contains("DELICOM_ERR_AUTHENTICATION"), "{refused}");
    valid(&refused, FAULT_DETAIL, "Authentication20.xsd");
    let (status, unknown_token) = run.tracking("not-a-token", IN_TRANSIT).await;
    assert_eq!(status, 500);
    assert!(
        unknown_token.contains("ERR_DELICOM_TOKEN_INCORRECT"),
        "{unknown_token}"
    );
    valid(&unknown_token, FAULT_DETAIL, "Authentication20.xsd");
    run.sandbox.expire_carrier_tokens("dpd");
    let (status, expired) = run.tracking(&token, IN_TRANSIT).await;
    assert_eq!(status, 500);
    assert!(expired.contains("ERR_DELICOM_TOKEN_EXPIRED"), "{expired}");
    valid(&expired, FAULT_DETAIL, "Authentication20.xsd");

    // And what the connector sends.
    found_one(&run.client(), IN_TRANSIT).await;
    let sent: Vec<(String, String)> = run
        .sandbox
        .journal()
        .into_iter()
        .filter(|e| {
            e.operation.starts_with("dpd.")
                && e.headers
                    .get("user-agent")
                    .is_some_and(|ua| ua.starts_with("nightdesk/"))
        })
        .map(|e| (e.operation, e.body.as_str().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(
        sent.iter().map(|(op, _)| op.as_str()).collect::<Vec<_>>(),
        ["dpd.login", "dpd.track"]
    );
    valid(&sent[0].1, BODY_CHILD, "LoginServiceV21.xsd");
    valid(&sent[1].1, AUTH_HEADER, "Authentication20.xsd");
    valid(&sent[1].1, BODY_CHILD, "ParcelLifecycleServiceV20.xsd");
}

#[tokio::test]
async fn each_parcel_reads_as_its_current_step_says() {
    let run = setup().await;
    let client = run.client();
    let expected = [
        (LABEL_ONLY, TrackingStatus::LabelCreated, "SHIPMENT"),
        (IN_TRANSIT, TrackingStatus::InTransit, "Depot"),
        (OUT_FOR_DELIVERY, TrackingStatus::OutForDelivery, "Courier"),
        (DELIVERED, TrackingStatus::Delivered, "Delivered"),
        (
            ATTEMPTED,
            TrackingStatus::DeliveryAttempted,
            "DeliveryFailure",
        ),
        (
            RETURNING,
            TrackingStatus::DeliveryAttempted,
            "ReturningFromDelivery",
        ),
        (PICKUP, TrackingStatus::AvailableForPickup, "ParcelShop"),
    ];
    for (number, status, code) in expected {
        let parcel = found_one(&client, number).await;
        assert_eq!(parcel.tracking_number, number);
        let current = parcel
            .current
            .as_ref()
            .map(|c| (c.status, c.reason, c.raw_code.as_str()));
        assert_eq!(current, Some((status, None, code)), "{number}");
        let Some(newest) = newest(&parcel) else {
            panic!("{number}: no events");
        };
        assert_eq!(
            (newest.status, newest.raw_code.as_str()),
            (status, code),
            "{number}"
        );
        assert!(!newest.text.is_empty(), "{number}: no words");
    }
    let label = found_one(&client, LABEL_ONLY).await;
    assert_eq!(label.service.as_deref(), Some("DPD Classic"));
    assert_eq!(label.ship_date, Some(t0().date_naive()));
    // One login for the whole run.
    assert_eq!(run.answers("dpd.login"), [200]);
}

#[tokio::test]
async fn only_the_current_step_counts_not_the_steps_still_ahead() {
    let run = setup().await;
    let token = run.auth_token().await;
    let (_, raw) = run.tracking(&token, IN_TRANSIT).await;
    // DPD lists the way ahead: Courier and Delivered, not reached.
    let delivered_step = raw.find("<status>Delivered</status>").map(|at| &raw[at..]);
    assert!(
        delivered_step.is_some_and(|step| step.contains("<statusHasBeenReached>false</statusHasBeenReached>")),
        "{raw}"
    );
    let parcel = found_one(&run.client(), IN_TRANSIT).await;
    let codes: Vec<&str> = parcel.events.iter().map(|e| e.raw_code.as_str()).collect();
    assert_eq!(codes, ["SHIPMENT", "PickedUp", "BetweenDepots", "Depot"]);
    assert!(
        parcel
            .events
            .iter()
            .all(|e| e.status != TrackingStatus::Delivered)
    );
    assert_eq!(
        parcel.current.as_ref().map(|c| c.raw_code.as_str()),
        Some("Depot")
    );
    // 09:00 UTC at the Mechelen depot is 10:00 there; DPD writes it without a zone.
    assert!(
        raw.contains("<content>11/22/2026 10:00:00 AM</content>"),
        "{raw}"
    );
    let depot = &parcel.events[3];
    assert_eq!(depot.at.local.to_string(), "2026-11-22 10:00:00");
    assert_eq!(depot.at.zone, ZoneSource::Location);
    assert_eq!(
        depot.at.utc,
        Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).single()
    );
    assert_eq!(depot.location.city.as_deref(), Some("Mechelen"));
    assert_eq!(depot.location.country.as_deref(), Some("BE"));
}

#[tokio::test]
async fn an_expired_token_costs_one_new_login() {
    let run = setup().await;
    let client = run.client();
    found_one(&client, OUT_FOR_DELIVERY).await;
    run.sandbox.expire_carrier_tokens("dpd");
    let parcel = found_one(&client, OUT_FOR_DELIVERY).await;
    assert_eq!(
        current_status(&parcel),
        Some(TrackingStatus::OutForDelivery)
    );
    assert_eq!(run.answers("dpd.login"), [200, 200]);
    assert_eq!(run.answers("dpd.track"), [200, 500, 200]);
    found_one(&client, OUT_FOR_DELIVERY).await;
    assert_eq!(run.answers("dpd.login").len(), 2, "the new token is kept");
}

#[tokio::test]
async fn a_new_label_is_not_found_not_an_error() {
    let run = setup().await;
    let outcomes = track_numbers(&run.client(), &[NEW_LABEL]).await;
    assert!(
        matches!(outcomes.as_slice(), [TrackOutcome::NotFound { tracking_number, .. }] if tracking_number == NEW_LABEL)
    );
    assert_eq!(run.answers("dpd.track"), [200]);
}

#[tokio::test]
async fn a_429_without_retry_after_is_retried() {
    let run = setup().await;
    run.sandbox.inject(Fault::status("dpd.track", 429));
    let parcel = found_one(&run.client(), PICKUP).await;
    assert_eq!(
        current_status(&parcel),
        Some(TrackingStatus::AvailableForPickup)
    );
    assert_eq!(run.answers("dpd.track"), [429, 200]);
}

#[tokio::test]
async fn a_refused_login_is_a_credentials_error_and_is_not_retried() {
    let run = setup().await;
    assert_credentials_error(
        run.client_with("not-the-password")
            .track(&[ParcelQuery::number(IN_TRANSIT)])
            .await,
        "DELICOM_ERR_AUTHENTICATION",
        "not-the-password",
    );
    // DPD allows a handful of logins a day: a refused one is not tried again.
    assert_eq!(run.answers("dpd.login"), [500]);
    assert!(run.answers("dpd.track").is_empty());
}
