//! FedEx end to end: the FedEx connector (`sources::carriers::fedex`) against the
//! sandbox's FedEx (`sandbox::carriers::fedex`), each written from the contract on its
//! own. Every body the sandbox answers is checked against
//! `specs/carriers/fedex/*-Resource.json`, and every scenario parcel must come back
//! through the connector with the status, reason and raw code FedEx's codes mean —
//! several numbers per call, reused numbers as several shipments, zone-less scan times
//! resolved by place or left unresolved.

#[path = "common/carriers.rs"]
mod carriers_common;

use carriers_common::openapi::OpenApi;
use carriers_common::{
    ParcelParts, Run, ScanParts, assert_credentials_error, current_status, found_one, json_answer,
    newest_reads, start, track, us_place, utc,
};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use nightdesk::http::RetryPolicy;
use nightdesk::model::TrackingStatus;
use nightdesk::sandbox::{Fault, ScenarioParcel, ScenarioPlace, ScenarioScan, When};
use nightdesk::sources::carriers::fedex::{FedexClient, FedexSettings};
use nightdesk::sources::carriers::{
    CarrierClient, ExceptionReason, ParcelQuery, TrackOutcome, ZoneSource,
};
use secrecy::SecretString;
use serde_json::{Value, json};

/// The sandbox's FedEx credentials (`sandbox::carriers::fedex::CLIENT_ID`/`CLIENT_SECRET`).
const CLIENT_ID: &str = "nightdesk-sandbox-fedex-api-key";
const CLIENT_SECRET: &str = "nightdesk-sandbox-fedex-secret-key";

const LABEL_ONLY: &str = "794600000001";
const IN_TRANSIT: &str = "794600000002";
const OUT_FOR_DELIVERY: &str = "794600000003";
const IN_CUSTOMS: &str = "794600000004";
const DELIVERED: &str = "794600000005";
const ATTEMPTED: &str = "794600000006";
const REDIRECTED: &str = "794600000007";
const READY_FOR_PICKUP: &str = "794600000008";
const RETURNING: &str = "794600000009";
const REUSED: &str = "794600000010";
const NOT_YET_VISIBLE: &str = "794600000011";
const PICKED_UP_NOWHERE: &str = "794600000012";

fn t0() -> DateTime<Utc> {
    utc("2026-11-22T17:00:00Z")
}

fn memphis() -> ScenarioPlace {
    us_place("MEMPHIS", "TN", "38118", "America/Chicago")
}

fn scan(hours_ago: i64, code: &str) -> ScenarioScan {
    carriers_common::scan(When::hours_ago(hours_ago), code)
}

fn at_memphis(hours_ago: i64, code: &str) -> ScenarioScan {
    scan(hours_ago, code).place(memphis())
}

/// Label, pickup in Memphis, hub arrival, then `last`.
fn journey(last: Vec<ScenarioScan>) -> Vec<ScenarioScan> {
    let mut scans = vec![
        at_memphis(60, "OC"),
        at_memphis(50, "PU"),
        at_memphis(30, "AR"),
        at_memphis(28, "DP"),
    ];
    scans.extend(last);
    scans
}

fn parcel(number: &str, scans: Vec<ScenarioScan>) -> ScenarioParcel {
    carriers_common::parcel("fedex", number, When::days_ago(3), scans)
        .service("FedEx Ground")
        .origin(memphis())
        .destination(us_place("SEATTLE", "WA", "98101", "America/Los_Angeles"))
}

fn parcels() -> Vec<ScenarioParcel> {
    let reused_old = ScenarioParcel {
        label_created: When::days_ago(401),
        ..parcel(REUSED, vec![at_memphis(9605, "PU"), scan(9590, "DL")])
    };
    let not_yet_visible = ScenarioParcel {
        label_created: When::hours_ago(1),
        ..parcel(NOT_YET_VISIBLE, vec![at_memphis(1, "OC")])
    }
    .visible_from(When::from_now(Duration::hours(1)));
    // A pickup scan with no state: FedEx's zone-less date cannot be placed in a zone.
    let nowhere = scan(10, "PU").place(ScenarioPlace {
        state: None,
        ..carriers_common::place("SOMEWHERE", "", "US", "America/Chicago")
    });
    let delivery_exception =
        |reason: &str| journey(vec![scan(8, "OD"), scan(4, "DE").reason(reason)]);
    vec![
        parcel(LABEL_ONLY, vec![at_memphis(20, "OC")]),
        parcel(IN_TRANSIT, journey(vec![])).estimated_delivery(When::from_now(Duration::days(2))),
        parcel(OUT_FOR_DELIVERY, journey(vec![scan(3, "OD")])),
        parcel(IN_CUSTOMS, journey(vec![scan(5, "CD")])),
        parcel(DELIVERED, journey(vec![scan(8, "OD"), scan(2, "DL")])),
        parcel(ATTEMPTED, delivery_exception("15")),
        parcel(REDIRECTED, delivery_exception("A13")),
        parcel(READY_FOR_PICKUP, journey(vec![scan(6, "HP")])),
        parcel(RETURNING, journey(vec![scan(8, "OD"), scan(2, "RS")])),
        reused_old,
        parcel(REUSED, journey(vec![])),
        not_yet_visible,
        parcel(PICKED_UP_NOWHERE, vec![at_memphis(20, "OC"), nowhere]),
    ]
}

async fn setup() -> Run {
    start("fedex", parcels(), t0()).await
}

impl Run {
    fn client_with(&self, client_id: &str, client_secret: &str) -> FedexClient {
        let settings = FedexSettings {
            base_url: self.base.clone(),
            ..FedexSettings::new(
                SecretString::from(client_id.to_owned()),
                SecretString::from(client_secret.to_owned()),
            )
        };
        match FedexClient::new(settings, self.shared_clock(), RetryPolicy::fast()) {
            Ok(client) => client,
            Err(e) => panic!("FedEx client: {e}"),
        }
    }

    fn client(&self) -> FedexClient {
        self.client_with(CLIENT_ID, CLIENT_SECRET)
    }
}

/// `body` follows the contract's answer to `POST path` with `status`.
fn check(api: &OpenApi, path: &str, status: u16, body: &Value) {
    carriers_common::check(api, "post", path, status, body);
}

const ALL: [&str; 12] = [
    LABEL_ONLY,
    IN_TRANSIT,
    OUT_FOR_DELIVERY,
    IN_CUSTOMS,
    DELIVERED,
    ATTEMPTED,
    REDIRECTED,
    READY_FOR_PICKUP,
    RETURNING,
    REUSED,
    NOT_YET_VISIBLE,
    PICKED_UP_NOWHERE,
];

#[tokio::test]
async fn every_sandbox_answer_follows_the_fedex_contracts() {
    let setup = setup().await;
    let auth = OpenApi::load("fedex/APIAuthorization-Resource.json");
    let tracking = OpenApi::load("fedex/TrackingNumbers-Resource.json");
    let http = &setup.http;
    let token_url = format!("{}/oauth/token", setup.base);

    let (status, token) = json_answer(http.post(&token_url).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ]))
    .await;
    assert_eq!(status, 200, "{token}");
    check(&auth, "/oauth/token", 200, &token);
    // The validator does catch a break: expires_in must be an integer.
    let mut text_lifetime = token.clone();
    text_lifetime["expires_in"] = Value::from("3599");
    let schema = auth.response_schema("post", "/oauth/token", 200, "application/json");
    assert!(schema.is_ok_and(|s| auth.check(&s, &text_lifetime).is_err()));

    // The contract's enums are enforced: the full-schema example sends carrierCode ""
    // (not in the enum) and alerts as a string (an array in the schema).
    let example: Value = match serde_json::from_str(include_str!(
        "../specs/carriers/fedex/examples/karrio-fedex-tracking_response.json"
    )) {
        Ok(example) => example,
        Err(e) => panic!("example is not JSON: {e}"),
    };
    let schema =
        tracking.response_schema("post", "/track/v1/trackingnumbers", 200, "application/json");
    let problems = schema.map(|s| tracking.check(&s, &example));
    assert!(
        matches!(&problems, Ok(Err(p)) if p.contains("carrierCode") && p.contains("alerts")),
        "{problems:?}"
    );

    let (status, refused) = json_answer(http.post(&token_url).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", "wrong"),
    ]))
    .await;
    assert_eq!(status, 401);
    check(&auth, "/oauth/token", 401, &refused);

    let access_token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let path = "/track/v1/trackingnumbers";
    let track_url = format!("{}{path}", setup.base);
    let infos: Vec<Value> = ALL
        .iter()
        .map(|n| json!({"trackingNumberInfo": {"trackingNumber": n}}))
        .collect();
    let (status, body) = json_answer(
        http.post(&track_url)
            .bearer_auth(&access_token)
            .header("x-customer-transaction-id", "contract-test")
            .json(&json!({"includeDetailedScans": true, "trackingInfo": infos})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    check(&tracking, path, 200, &body);
    let results = body["output"]["completeTrackResults"]
        .as_array()
        .map(Vec::len);
    assert_eq!(results, Some(ALL.len()));
    assert_eq!(body["customerTransactionId"], "contract-test");

    let (status, body) = json_answer(
        http.post(&track_url)
            .bearer_auth(&access_token)
            .json(&json!({"includeDetailedScans": true, "trackingInfo": []})),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["code"].as_str()),
        (400, Some("TRACKING.TRACKINGNUMBER.EMPTY"))
    );
    check(&tracking, path, 400, &body);

    let (status, body) = json_answer(
        http.post(&track_url)
            .bearer_auth("not-a-token")
            .json(&json!({"includeDetailedScans": true, "trackingInfo": [infos[0].clone()]})),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["code"].as_str()),
        (401, Some("NOT.AUTHORIZED.ERROR"))
    );
    check(&tracking, path, 401, &body);
}

#[tokio::test]
async fn a_batch_is_one_call_and_each_parcel_reads_as_its_fedex_codes_mean() {
    let setup = setup().await;
    let client = setup.client();
    use ExceptionReason as R;
    use TrackingStatus as S;
    let expected: [(&str, S, Option<R>, &str); 9] = [
        (LABEL_ONLY, S::LabelCreated, None, "OC"),
        (IN_TRANSIT, S::InTransit, None, "DP"),
        (OUT_FOR_DELIVERY, S::OutForDelivery, None, "OD"),
        (IN_CUSTOMS, S::Exception, Some(R::Customs), "CD"),
        (DELIVERED, S::Delivered, None, "DL"),
        (ATTEMPTED, S::DeliveryAttempted, None, "DE/15"),
        (REDIRECTED, S::Exception, Some(R::Other), "DE/A13"),
        (READY_FOR_PICKUP, S::AvailableForPickup, None, "HP"),
        (RETURNING, S::ReturnToSender, None, "RS"),
    ];
    let queries: Vec<ParcelQuery> = expected
        .iter()
        .map(|(number, ..)| ParcelQuery::number(*number))
        .collect();
    let outcomes = track(&client, &queries).await;
    assert_eq!(outcomes.len(), expected.len(), "{outcomes:?}");
    for (number, status, reason, raw) in expected {
        let parcel = outcomes.iter().find_map(|o| match o {
            TrackOutcome::Found(p) if p.tracking_number == number => Some(p),
            _ => None,
        });
        let Some(parcel) = parcel else {
            panic!("{number} missing from {outcomes:?}")
        };
        assert_eq!(
            newest_reads(parcel),
            Some((status, reason, raw)),
            "{number}"
        );
        let current = parcel.current.as_ref().map(|c| (c.status, c.reason));
        assert_eq!(
            current,
            Some((status, reason)),
            "{number} latestStatusDetail"
        );
        assert_eq!(parcel.service.as_deref(), Some("FedEx Ground"));
        assert!(parcel.carrier_shipment_id.is_some(), "{number}");
    }
    // One token, one tracking request carrying every number.
    assert_eq!(setup.calls("fedex.token"), vec![(200, false)]);
    let tracks: Vec<Value> = setup
        .journal("fedex.track")
        .into_iter()
        .map(|e| e.body)
        .collect();
    let [sent] = tracks.as_slice() else {
        panic!("expected one track request, got {}", tracks.len())
    };
    assert_eq!(sent["includeDetailedScans"], true);
    assert_eq!(
        sent["trackingInfo"].as_array().map(Vec::len),
        Some(expected.len())
    );

    let in_transit = found_one(&client, IN_TRANSIT).await;
    assert_eq!(
        in_transit.estimated_delivery,
        Some(t0() + Duration::days(2))
    );
    let delivered = found_one(&client, DELIVERED).await;
    assert_eq!(
        delivered.estimated_delivery,
        Some(t0() - Duration::hours(2))
    );
    let memphis_date = |hours_ago: i64| {
        (t0() - Duration::hours(hours_ago))
            .with_timezone(&chrono_tz::America::Chicago)
            .date_naive()
    };
    assert_eq!(delivered.ship_date, Some(memphis_date(72)));
}

#[tokio::test]
async fn zone_less_pickup_times_resolve_by_place_or_stay_unresolved() {
    let setup = setup().await;
    let client = setup.client();
    // Memphis, TN: the offset-less pickup date is Central time.
    let parcel = found_one(&client, IN_TRANSIT).await;
    let pickup = parcel.events.iter().find(|e| e.raw_code == "PU");
    let at = t0() - Duration::hours(50);
    let wall = at.with_timezone(&chrono_tz::America::Chicago).naive_local();
    assert_eq!(
        pickup.map(|e| (e.at.zone, e.at.utc, e.at.local)),
        Some((ZoneSource::Location, Some(at), wall))
    );
    // Other scans carry their offset.
    let arrival = parcel.events.iter().find(|e| e.raw_code == "AR");
    assert_eq!(arrival.map(|e| e.at.zone), Some(ZoneSource::Carrier));
    // A US place without a state names no zone: the wall time only, never UTC.
    let parcel = found_one(&client, PICKED_UP_NOWHERE).await;
    let pickup = parcel.events.iter().find(|e| e.raw_code == "PU");
    let wall = (t0() - Duration::hours(10))
        .with_timezone(&chrono_tz::America::Chicago)
        .naive_local();
    assert_eq!(
        pickup.map(|e| (e.at.zone, e.at.utc, e.at.local)),
        Some((ZoneSource::Unresolved, None, wall))
    );
}

#[tokio::test]
async fn a_reused_number_answers_each_shipment_and_a_ship_date_picks_one() {
    let setup = setup().await;
    let client = setup.client();
    let outcomes = track(&client, &[ParcelQuery::number(REUSED)]).await;
    let shipments: Vec<(Option<String>, Option<NaiveDate>, Option<TrackingStatus>)> = outcomes
        .iter()
        .map(|o| match o {
            TrackOutcome::Found(p) => (
                p.carrier_shipment_id.clone(),
                p.ship_date,
                current_status(p),
            ),
            other => panic!("expected Found, got {other:?}"),
        })
        .collect();
    let label_date = |days_ago: i64| {
        (t0() - Duration::days(days_ago))
            .with_timezone(&chrono_tz::America::Chicago)
            .date_naive()
    };
    let [
        (old_id, old_date, old_status),
        (new_id, new_date, new_status),
    ] = shipments.as_slice()
    else {
        panic!("expected two shipments, got {shipments:?}")
    };
    assert!(
        old_id.is_some() && new_id.is_some() && old_id != new_id,
        "{shipments:?}"
    );
    assert_eq!(
        (*old_date, *old_status),
        (Some(label_date(401)), Some(TrackingStatus::Delivered))
    );
    assert_eq!(
        (*new_date, *new_status),
        (Some(label_date(3)), Some(TrackingStatus::InTransit))
    );
    assert!(outcomes.iter().all(|o| o.tracking_number() == REUSED));

    // The marketplace's ship date narrows the answer to the shipment around it.
    let query = ParcelQuery {
        ship_date: Some(label_date(2)),
        ..ParcelQuery::number(REUSED)
    };
    let outcomes = track(&client, &[query]).await;
    let ids: Vec<Option<String>> = outcomes
        .iter()
        .map(|o| match o {
            TrackOutcome::Found(p) => p.carrier_shipment_id.clone(),
            other => panic!("expected Found, got {other:?}"),
        })
        .collect();
    assert_eq!(ids, vec![new_id.clone()]);
}

#[tokio::test]
async fn a_new_label_is_not_found_until_fedex_shows_it() {
    let setup = setup().await;
    let client = setup.client();
    let outcomes = track(
        &client,
        &[
            ParcelQuery::number(NOT_YET_VISIBLE),
            ParcelQuery::number(LABEL_ONLY),
        ],
    )
    .await;
    match outcomes.as_slice() {
        [
            TrackOutcome::NotFound {
                tracking_number,
                detail,
            },
            TrackOutcome::Found(_),
        ] => {
            assert_eq!(tracking_number, NOT_YET_VISIBLE);
            assert!(
                detail.starts_with("TRACKING.TRACKINGNUMBER.NOTFOUND"),
                "{detail}"
            );
        }
        other => panic!("expected NotFound then Found, got {other:?}"),
    }
    setup.clock.advance(Duration::hours(2));
    let parcel = found_one(&client, NOT_YET_VISIBLE).await;
    assert_eq!(
        newest_reads(&parcel),
        Some((TrackingStatus::LabelCreated, None, "OC"))
    );
}

#[tokio::test]
async fn a_token_expiring_mid_run_is_fetched_again_once() {
    let setup = setup().await;
    let client = setup.client();
    found_one(&client, IN_TRANSIT).await;
    setup.sandbox.expire_carrier_tokens("fedex");
    let parcel = found_one(&client, DELIVERED).await;
    assert_eq!(
        newest_reads(&parcel).map(|n| n.0),
        Some(TrackingStatus::Delivered)
    );
    assert_eq!(setup.calls("fedex.token"), vec![(200, false), (200, false)]);
    assert_eq!(
        setup.calls("fedex.track"),
        vec![(200, false), (401, false), (200, false)]
    );
}

#[tokio::test]
async fn a_429_without_retry_after_is_retried_and_succeeds() {
    let setup = setup().await;
    let client = setup.client();
    setup.sandbox.inject(Fault::status("fedex.track", 429));
    let parcel = found_one(&client, OUT_FOR_DELIVERY).await;
    assert_eq!(
        newest_reads(&parcel),
        Some((TrackingStatus::OutForDelivery, None, "OD"))
    );
    assert_eq!(setup.calls("fedex.track"), vec![(429, true), (200, false)]);
}

#[tokio::test]
async fn refused_credentials_are_a_credentials_error_without_the_secret() {
    let setup = setup().await;
    let client = setup.client_with(CLIENT_ID, "not-the-secret-value");
    assert_credentials_error(
        client.track(&[ParcelQuery::number(IN_TRANSIT)]).await,
        "NOT.AUTHORIZED.ERROR",
        "not-the-secret-value",
    );
    assert_eq!(setup.calls("fedex.token"), vec![(401, false)]);
    assert!(setup.calls("fedex.track").is_empty());
}

#[tokio::test]
async fn more_than_thirty_numbers_go_in_several_calls() {
    let setup = setup().await;
    let client = setup.client();
    let queries: Vec<ParcelQuery> = (0..31)
        .map(|i| ParcelQuery::number(format!("79469999{i:04}")))
        .collect();
    let outcomes = track(&client, &queries).await;
    assert_eq!(outcomes.len(), 31);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, TrackOutcome::NotFound { .. }))
    );
    let sizes: Vec<Option<usize>> = setup
        .journal("fedex.track")
        .into_iter()
        .map(|e| e.body["trackingInfo"].as_array().map(Vec::len))
        .collect();
    assert_eq!(sizes, vec![Some(30), Some(1)]);
}
