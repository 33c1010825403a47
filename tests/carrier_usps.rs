//! USPS end to end: the sandbox's USPS (written from the contract) against the USPS
//! connector (written from the contract too, separately). Every sandbox answer is checked
//! against `specs/carriers/usps/*.yaml`; the connector must read each scenario parcel as
//! the status its USPS event code means.

#[path = "common/carriers.rs"]
mod carriers_common;

use std::collections::BTreeSet;

use carriers_common::openapi::OpenApi;
use carriers_common::{
    ParcelParts, Run, ScanParts, assert_credentials_error, check, current_status, found, newest,
    parcel, scan, start, the_one, track_numbers as track, us_place, utc, valid,
};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use nightdesk::http::RetryPolicy;
use nightdesk::model::TrackingStatus;
use nightdesk::sandbox::{Fault, ScenarioParcel, ScenarioPlace, ScenarioScan};
use nightdesk::sources::carriers::usps::{UspsClient, UspsSettings};
use nightdesk::sources::carriers::{
    CarrierClient, ExceptionReason, ParcelQuery, TrackOutcome, ZoneSource,
};
use secrecy::SecretString;
use serde_json::{Value, json};

/// The sandbox's USPS app (`src/sandbox/carriers/usps.rs`, `CLIENT_ID`/`CLIENT_SECRET`).
const CLIENT_ID: &str = "sandbox-usps-client-id";
const CLIENT_SECRET: &str = "sandbox-usps-client-secret";

const LABEL_ONLY: &str = "9400100000000000000011";
const IN_TRANSIT: &str = "9400100000000000000028";
const OUT_FOR_DELIVERY: &str = "9400100000000000000035";
const EXCEPTION: &str = "9400100000000000000042";
const DELIVERED: &str = "9400100000000000000059";
const ATTEMPTED: &str = "9400100000000000000066";
const PICKUP: &str = "9400100000000000000073";
const RETURNED: &str = "9400100000000000000080";
const NEW_LABEL: &str = "9400100000000000000097";
const REUSED: &str = "9400100000000000000103";

fn t0() -> DateTime<Utc> {
    utc("2026-11-22T12:00:00Z")
}

fn jamaica() -> ScenarioPlace {
    us_place("JAMAICA", "NY", "11430", "America/New_York")
}

fn usps(number: &str, label_created: &str, scans: Vec<ScenarioScan>) -> ScenarioParcel {
    parcel("usps", number, label_created, scans)
}

fn parcels() -> Vec<ScenarioParcel> {
    let queens = ScenarioPlace {
        city: "QUEENS NY DISTRIBUTION CENTER".to_owned(),
        ..ScenarioPlace::default()
    };
    let mut parcels = vec![
        usps(LABEL_ONLY, "6h ago", vec![]).origin(jamaica()),
        usps(
            IN_TRANSIT,
            "3d ago",
            vec![
                scan("3d ago", "GX"),
                scan("2d ago", "03").place(jamaica()),
                scan("1d ago", "T1").place(queens),
            ],
        )
        .origin(jamaica())
        .estimated_delivery("in 2d"),
        usps(
            OUT_FOR_DELIVERY,
            "3d ago",
            vec![
                scan("2d ago", "03"),
                scan("3h ago", "07"),
                scan("2h ago", "OF"),
            ],
        ),
        usps(
            DELIVERED,
            "4d ago",
            vec![
                scan("3d ago", "03"),
                scan("2026-11-22T10:30:00Z", "01").description("Delivered, Front Door/Porch"),
            ],
        )
        .destination(us_place(
            "LOS ANGELES",
            "CA",
            "90001",
            "America/Los_Angeles",
        )),
        usps(NEW_LABEL, "1h ago", vec![]).visible_from("in 1d"),
        usps(
            REUSED,
            "2026-10-01T15:00:00Z",
            vec![scan("2026-10-03T15:00:00Z", "01")],
        ),
        usps(
            REUSED,
            "2026-11-20T15:00:00Z",
            vec![scan("2026-11-21T15:00:00Z", "03")],
        ),
    ];
    // Accepted ("03"), then one more scan.
    for (number, label_created, accepted, last) in [
        (EXCEPTION, "9d ago", "8d ago", scan("1d ago", "DX")),
        (
            ATTEMPTED,
            "4d ago",
            "3d ago",
            scan("5h ago", "02").reason("56"),
        ),
        (PICKUP, "4d ago", "3d ago", scan("5h ago", "16")),
        (RETURNED, "6d ago", "5d ago", scan("1d ago", "04")),
    ] {
        parcels.push(usps(
            number,
            label_created,
            vec![scan(accepted, "03"), last],
        ));
    }
    parcels
}

async fn setup() -> Run {
    start("usps", parcels(), t0()).await
}

impl Run {
    fn client_with(&self, secret: &str) -> UspsClient {
        let mut settings =
            UspsSettings::new(SecretString::from(CLIENT_ID), SecretString::from(secret));
        settings.base_url = self.base.clone();
        match UspsClient::new(settings, self.shared_clock(), RetryPolicy::fast()) {
            Ok(client) => client,
            Err(e) => panic!("the client does not build: {e}"),
        }
    }

    fn client(&self) -> UspsClient {
        self.client_with(CLIENT_SECRET)
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self.http.post(format!("{}/{path}", self.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        carriers_common::json_answer(request).await
    }

    async fn token(&self, scope: Option<&str>) -> (u16, Value) {
        let mut body = json!({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET});
        if let Some(scope) = scope {
            body["scope"] = json!(scope);
        }
        self.post("oauth2/v3/token", None, &body).await
    }

    async fn access_token(&self) -> String {
        match self.token(Some("tracking")).await {
            (200, body) => body["access_token"].as_str().unwrap_or_default().to_owned(),
            (status, body) => panic!("token: {status} {body}"),
        }
    }

    async fn track_raw(&self, token: &str, items: Value) -> (u16, Value) {
        self.post("tracking/v3r2/tracking", Some(token), &items)
            .await
    }
}

/// The tracking contract, repaired where it contradicts itself or USPS:
/// - `SharedTrackingDetail` (and so `TrackingDetail`, `SuccessResponse`) says
///   `additionalProperties: false` inside an `allOf`: under JSON Schema no detail with
///   `trackingEvents` (declared by a sibling `allOf` part) could ever pass. It is opened,
///   and [`only_declared_fields`] checks the closed set the authors meant instead.
/// - `AllEventDate` allows a date or an RFC 3339 date-time; USPS sends `eventTimestamp` as
///   local wall time without an offset (research §3, karrio's recorded answer), which the
///   sandbox does on purpose: that spelling is added as a third choice.
fn tracking_contract() -> OpenApi {
    let mut api = OpenApi::load("usps/tracking-v3r2_4.yaml");
    let schemas = &mut api.doc["components"]["schemas"];
    schemas["SharedTrackingDetail"]["additionalProperties"] = json!(true);
    match schemas["AllEventDate"]["oneOf"].as_array_mut() {
        Some(choices) => choices.push(
            json!({"type": "string", "pattern": "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}$"}),
        ),
        None => panic!("AllEventDate has no oneOf any more: revisit this repair"),
    }
    api
}

/// The OAuth contract, repaired: `ProviderAccessTokenResponse` closes itself and one of
/// its `allOf` parts with `additionalProperties: false`, so no token answer could pass;
/// opened, with [`only_declared_fields`] checking the closed set instead.
fn oauth_contract() -> OpenApi {
    let mut api = OpenApi::load("usps/oauth2_3_update.yaml");
    let provider = &mut api.doc["components"]["schemas"]["ProviderAccessTokenResponse"];
    provider["additionalProperties"] = json!(true);
    provider["allOf"][1]["additionalProperties"] = json!(true);
    api
}

/// Every property a schema declares, through `$ref` and `allOf`.
fn declared(api: &OpenApi, schema: &Value, into: &mut BTreeSet<String>) {
    if let Some(pointer) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
    {
        let target = api.doc.pointer(pointer).cloned().unwrap_or(Value::Null);
        declared(api, &target, into);
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        into.extend(properties.keys().cloned());
    }
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        declared(api, part, into);
    }
}

/// `body` (an object) has no field `schema` does not declare.
fn only_declared_fields(api: &OpenApi, schema: &str, body: &Value) {
    let mut names = BTreeSet::new();
    declared(api, &api.schema(schema), &mut names);
    let Some(object) = body.as_object() else {
        panic!("{schema}: not an object: {body}");
    };
    let extra: Vec<&String> = object.keys().filter(|k| !names.contains(*k)).collect();
    assert!(
        extra.is_empty(),
        "{schema} does not declare {extra:?}: {body}"
    );
}

/// A 200 `TrackingDetails` answer, checked.
fn valid_details(api: &OpenApi, body: &Value) {
    check(api, "post", "/tracking", 200, body);
    for detail in body.as_array().into_iter().flatten() {
        only_declared_fields(api, "TrackingDetail", detail);
        for event in detail["trackingEvents"].as_array().into_iter().flatten() {
            only_declared_fields(api, "TrackingEvent", event);
        }
    }
}

/// A 207 answer, each item checked against the branch it is: the contract's `oneOf`
/// cannot tell them apart (`FailureResponse` accepts any object).
fn valid_multi_status(api: &OpenApi, body: &Value) {
    valid(
        api,
        &json!({"type": "array", "minItems": 1, "maxItems": 35}),
        body,
        "207 array",
    );
    for item in body.as_array().into_iter().flatten() {
        if item.get("error").is_some() {
            valid(
                api,
                &api.schema("FailureResponse"),
                item,
                "207 FailureResponse",
            );
            assert_eq!(item["statusCode"], "404", "{item}");
        } else {
            valid(
                api,
                &api.schema("SuccessResponse"),
                item,
                "207 SuccessResponse",
            );
            let mut detail = item.clone();
            if let Some(object) = detail.as_object_mut() {
                object.remove("statusCode");
            }
            only_declared_fields(api, "TrackingDetail", &detail);
        }
    }
}

#[tokio::test]
async fn every_sandbox_answer_follows_the_contract() {
    let run = setup().await;
    let tracking = tracking_contract();
    let oauth = oauth_contract();

    let (status, token_body) = run.token(None).await;
    assert_eq!(status, 200);
    check(&oauth, "post", "/token", 200, &token_body);
    only_declared_fields(&oauth, "ProviderAccessTokenResponse", &token_body);
    let token = run.access_token().await;

    let every_found = [
        LABEL_ONLY,
        IN_TRANSIT,
        OUT_FOR_DELIVERY,
        EXCEPTION,
        DELIVERED,
        ATTEMPTED,
        PICKUP,
        RETURNED,
        REUSED,
    ];
    for number in every_found {
        let (status, body) = run
            .track_raw(&token, json!([{"trackingNumber": number}]))
            .await;
        assert_eq!(status, 200, "{number}: {body}");
        valid_details(&tracking, &body);
    }
    let (status, body) = run
        .track_raw(
            &token,
            json!(
                every_found
                    .iter()
                    .map(|n| json!({"trackingNumber": n}))
                    .collect::<Vec<_>>()
            ),
        )
        .await;
    assert_eq!(status, 200);
    valid_details(&tracking, &body);

    let (status, body) = run
        .track_raw(
            &token,
            json!([{"trackingNumber": IN_TRANSIT}, {"trackingNumber": NEW_LABEL}]),
        )
        .await;
    assert_eq!(status, 207, "{body}");
    valid_multi_status(&tracking, &body);

    // A new label, a malformed number, a token the sandbox never issued.
    for (token, number, expected) in [
        (token.as_str(), NEW_LABEL, 404),
        (token.as_str(), "x", 400),
        ("not-a-token", IN_TRANSIT, 401),
    ] {
        let (status, body) = run
            .track_raw(token, json!([{"trackingNumber": number}]))
            .await;
        assert_eq!(status, expected, "{number}: {body}");
        check(&tracking, "post", "/tracking", expected, &body);
    }

    let wrong = json!({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "wrong"});
    let (status, body) = run.post("oauth2/v3/token", None, &wrong).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    check(&oauth, "post", "/token", 401, &body);

    run.sandbox.inject(Fault::status("usps.track", 429));
    let (status, body) = run
        .track_raw(&token, json!([{"trackingNumber": IN_TRANSIT}]))
        .await;
    assert_eq!(status, 429);
    check(&tracking, "post", "/tracking", 429, &body);
    run.sandbox.inject(Fault::status("usps.token", 503));
    let (status, body) = run.token(None).await;
    assert_eq!(status, 503);
    check(&oauth, "post", "/token", 503, &body);
}

#[tokio::test]
async fn one_request_reads_every_parcel_as_its_event_code_says() {
    let run = setup().await;
    let client = run.client();
    let numbers = [
        LABEL_ONLY,
        IN_TRANSIT,
        OUT_FOR_DELIVERY,
        EXCEPTION,
        DELIVERED,
        ATTEMPTED,
        PICKUP,
        RETURNED,
        NEW_LABEL,
    ];
    let outcomes = track(&client, &numbers).await;
    // One batch, one tracking call.
    assert_eq!(run.answers("usps.track"), [207]);
    assert_eq!(run.answers("usps.token"), [200]);
    let expected: [(&str, TrackingStatus, Option<ExceptionReason>, &str); 8] = [
        (LABEL_ONLY, TrackingStatus::LabelCreated, None, "GX"),
        (IN_TRANSIT, TrackingStatus::InTransit, None, "T1"),
        (OUT_FOR_DELIVERY, TrackingStatus::OutForDelivery, None, "OF"),
        (
            EXCEPTION,
            TrackingStatus::Exception,
            Some(ExceptionReason::Other),
            "DX",
        ),
        (DELIVERED, TrackingStatus::Delivered, None, "01"),
        (ATTEMPTED, TrackingStatus::DeliveryAttempted, None, "02"),
        (PICKUP, TrackingStatus::AvailableForPickup, None, "16"),
        (
            RETURNED,
            TrackingStatus::ReturnToSender,
            Some(ExceptionReason::Refused),
            "04",
        ),
    ];
    for (number, status, reason, code) in expected {
        let parcel = the_one(&outcomes, number);
        let Some(newest) = newest(parcel) else {
            panic!("{number}: no events");
        };
        assert_eq!(
            (newest.status, newest.reason, newest.raw_code.as_str()),
            (status, reason, code),
            "{number}"
        );
        assert!(!newest.text.is_empty(), "{number}: no words");
        let current = parcel.current.as_ref().map(|c| (c.status, c.reason));
        assert_eq!(current, Some((status, reason)), "{number}: current");
        assert!(
            parcel.carrier_shipment_id.is_some(),
            "{number}: no uniqueTrackingID"
        );
    }
    let in_transit = the_one(&outcomes, IN_TRANSIT);
    assert_eq!(in_transit.events.len(), 3);
    assert!(in_transit.estimated_delivery.is_some_and(|eta| eta > t0()));
    assert!(matches!(
        outcomes.iter().find(|o| o.tracking_number() == NEW_LABEL),
        Some(TrackOutcome::NotFound { detail, .. }) if detail.contains("not available")
    ));
}

#[tokio::test]
async fn a_new_label_alone_is_not_found_not_an_error() {
    let run = setup().await;
    let outcomes = track(&run.client(), &[NEW_LABEL]).await;
    assert_eq!(run.answers("usps.track"), [404]);
    assert!(
        matches!(outcomes.as_slice(), [TrackOutcome::NotFound { tracking_number, .. }] if tracking_number == NEW_LABEL)
    );
}

#[tokio::test]
async fn multi_status_mixes_found_and_not_found() {
    let run = setup().await;
    let outcomes = track(&run.client(), &[DELIVERED, NEW_LABEL, OUT_FOR_DELIVERY]).await;
    assert_eq!(run.answers("usps.track"), [207]);
    assert_eq!(outcomes.len(), 3);
    assert_eq!(
        current_status(the_one(&outcomes, DELIVERED)),
        Some(TrackingStatus::Delivered)
    );
    assert_eq!(
        current_status(the_one(&outcomes, OUT_FOR_DELIVERY)),
        Some(TrackingStatus::OutForDelivery)
    );
    assert!(matches!(
        outcomes.iter().find(|o| o.tracking_number() == NEW_LABEL),
        Some(TrackOutcome::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_local_time_without_zone_keeps_its_wall_time_and_gets_its_instant() {
    let run = setup().await;
    let token = run.access_token().await;
    let (_, body) = run
        .track_raw(&token, json!([{"trackingNumber": DELIVERED}]))
        .await;
    // 10:30 UTC is 02:30 in Los Angeles: USPS writes the wall time, no offset.
    assert_eq!(
        body[0]["trackingEvents"][0]["eventTimestamp"],
        "2026-11-22T02:30:00"
    );
    assert_eq!(body[0]["trackingEvents"][0]["GMTOffset"], "-08:00");

    let outcomes = track(&run.client(), &[DELIVERED]).await;
    let parcel = the_one(&outcomes, DELIVERED);
    let Some(delivered) = parcel.events.iter().find(|e| e.raw_code == "01") else {
        panic!("no delivery event: {parcel:?}");
    };
    assert_eq!(delivered.at.local.to_string(), "2026-11-22 02:30:00");
    assert_eq!(
        delivered.at.utc,
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 30, 0).single()
    );
    assert_eq!(delivered.at.zone, ZoneSource::Carrier);
    assert_eq!(delivered.text, "Delivered, Front Door/Porch");
    assert_eq!(delivered.location.city.as_deref(), Some("LOS ANGELES"));
}

#[tokio::test]
async fn a_token_expiring_mid_run_is_fetched_again_once() {
    let run = setup().await;
    let client = run.client();
    track(&client, &[IN_TRANSIT]).await;
    run.sandbox.expire_carrier_tokens("usps");
    let outcomes = track(&client, &[IN_TRANSIT]).await;
    assert_eq!(the_one(&outcomes, IN_TRANSIT).events.len(), 3);
    assert_eq!(run.answers("usps.token"), [200, 200]);
    assert_eq!(run.answers("usps.track"), [200, 401, 200]);
    // The fresh token is cached again.
    track(&client, &[IN_TRANSIT]).await;
    assert_eq!(run.answers("usps.token").len(), 2);
}

#[tokio::test]
async fn a_429_without_retry_after_is_retried() {
    let run = setup().await;
    run.sandbox.inject(Fault::status("usps.track", 429));
    let outcomes = track(&run.client(), &[OUT_FOR_DELIVERY]).await;
    assert_eq!(
        current_status(the_one(&outcomes, OUT_FOR_DELIVERY)),
        Some(TrackingStatus::OutForDelivery)
    );
    assert_eq!(run.answers("usps.track"), [429, 200]);
}

#[tokio::test]
async fn refused_credentials_and_a_token_without_tracking_scope_are_credentials_errors() {
    let run = setup().await;
    assert_credentials_error(
        run.client_with("wrong-secret")
            .track(&[ParcelQuery::number(IN_TRANSIT)])
            .await,
        "invalid_client",
        "wrong-secret",
    );
    // Not retried: no retry fixes credentials.
    assert_eq!(run.answers("usps.token"), [401]);

    let (status, body) = run.token(Some("labels prices")).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap_or_default().to_owned();
    let (status, _) = run
        .track_raw(&token, json!([{"trackingNumber": IN_TRANSIT}]))
        .await;
    assert_eq!(
        status, 401,
        "a token without the tracking scope must be refused"
    );
}

#[tokio::test]
async fn the_mailing_date_tells_a_reused_number_apart() {
    let run = setup().await;
    let client = run.client();
    let all = track(&client, &[REUSED]).await;
    let both = found(&all, REUSED);
    assert_eq!(both.len(), 2);
    let ids: BTreeSet<Option<&str>> = both
        .iter()
        .map(|p| p.carrier_shipment_id.as_deref())
        .collect();
    assert_eq!(ids.len(), 2, "each shipment has its own uniqueTrackingID");

    let query = ParcelQuery {
        ship_date: NaiveDate::from_ymd_opt(2026, 10, 1),
        ..ParcelQuery::number(REUSED)
    };
    let old = match client.track(&[query]).await {
        Ok(outcomes) => outcomes,
        Err(e) => panic!("{e}"),
    };
    let parcel = the_one(&old, REUSED);
    assert_eq!(parcel.ship_date, NaiveDate::from_ymd_opt(2026, 10, 1));
    assert_eq!(current_status(parcel), Some(TrackingStatus::Delivered));
    let sent = run.journal("usps.track").pop().map(|e| e.body);
    assert_eq!(
        sent,
        Some(json!([{"trackingNumber": REUSED, "mailingDate": "2026-10-01"}]))
    );
}
