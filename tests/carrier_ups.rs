//! UPS end to end: the UPS connector (`sources::carriers::ups`) against the sandbox's UPS
//! (`sandbox::carriers::ups`), each written from the contract on its own. Every body the
//! sandbox answers is checked against `specs/carriers/ups/*.yaml`, and every scenario
//! parcel must come back through the connector with the status, reason and raw code
//! UPS's codes mean.

#[path = "common/carriers.rs"]
mod carriers_common;

use carriers_common::openapi::OpenApi;
use carriers_common::{
    ParcelParts, Run, ScanParts, assert_credentials_error, check, current_status, found_one,
    json_answer, newest_reads, start, us_place, utc,
};
use chrono::{DateTime, Duration, Utc};
use nightdesk::http::RetryPolicy;
use nightdesk::model::TrackingStatus;
use nightdesk::sandbox::{Fault, ScenarioParcel, ScenarioPlace, ScenarioScan, When};
use nightdesk::sources::carriers::ups::{UpsClient, UpsSettings};
use nightdesk::sources::carriers::{
    CarrierClient, CarrierError, ExceptionReason, ParcelQuery, TrackOutcome, ZoneSource,
};
use secrecy::SecretString;
use serde_json::Value;

/// The sandbox's UPS credentials (`sandbox::carriers::ups::CLIENT_ID`/`CLIENT_SECRET`).
const CLIENT_ID: &str = "nightdesk-sandbox-ups-client-id";
const CLIENT_SECRET: &str = "nightdesk-sandbox-ups-client-secret";

const LABEL_ONLY: &str = "1ZLABEL0000000001A";
const IN_TRANSIT: &str = "1ZTRANSIT00000002B";
const OUT_FOR_DELIVERY: &str = "1ZOUTFORDELIVERY3";
const DELAYED: &str = "1ZDELAYED00000004D";
const ADDRESS_PROBLEM: &str = "1ZADDRESS00000005E";
const DELIVERED: &str = "1ZDELIVERED000006F";
const ATTEMPTED: &str = "1ZATTEMPTED000007G";
const AT_ACCESS_POINT: &str = "1ZACCESSPOINT0008H";
const NOT_YET_VISIBLE: &str = "1ZNEWLABEL0000009J";

fn t0() -> DateTime<Utc> {
    utc("2026-11-22T17:00:00Z")
}

fn scan(hours_ago: i64, code: &str) -> ScenarioScan {
    carriers_common::scan(When::hours_ago(hours_ago), code)
}

/// A scan at the Louisville origin.
fn at_origin(hours_ago: i64, code: &str) -> ScenarioScan {
    scan(hours_ago, code).place(louisville())
}

fn louisville() -> ScenarioPlace {
    us_place("LOUISVILLE", "KY", "40209", "America/New_York")
}

fn parcel(number: &str, scans: Vec<ScenarioScan>) -> ScenarioParcel {
    carriers_common::parcel("ups", number, When::days_ago(3), scans)
        .service("UPS Ground")
        .origin(louisville())
        .destination(us_place("DENVER", "CO", "80202", "America/Denver"))
}

fn parcels() -> Vec<ScenarioParcel> {
    let not_yet_visible = ScenarioParcel {
        label_created: When::hours_ago(1),
        ..parcel(NOT_YET_VISIBLE, vec![at_origin(1, "003")])
    }
    .visible_from(When::from_now(Duration::hours(1)));
    vec![
        parcel(LABEL_ONLY, vec![at_origin(20, "003")]),
        parcel(IN_TRANSIT, vec![at_origin(60, "003"), at_origin(30, "005")])
            .estimated_delivery(When::from_now(Duration::days(2))),
        parcel(
            OUT_FOR_DELIVERY,
            vec![at_origin(60, "003"), at_origin(30, "005"), scan(3, "021")],
        ),
        parcel(DELAYED, vec![at_origin(60, "003"), scan(5, "048")]),
        parcel(
            ADDRESS_PROBLEM,
            vec![at_origin(60, "003"), scan(2, "013").reason("AD")],
        ),
        parcel(
            DELIVERED,
            vec![at_origin(60, "003"), scan(8, "021"), scan(2, "011")],
        ),
        parcel(ATTEMPTED, vec![at_origin(60, "003"), scan(4, "022")]),
        parcel(AT_ACCESS_POINT, vec![at_origin(60, "003"), scan(6, "040")]),
        not_yet_visible,
    ]
}

async fn setup() -> Run {
    start("ups", parcels(), t0()).await
}

impl Run {
    fn client_with(&self, client_id: &str, client_secret: &str) -> UpsClient {
        let settings = UpsSettings {
            base_url: self.base.clone(),
            ..UpsSettings::new(
                SecretString::from(client_id.to_owned()),
                SecretString::from(client_secret.to_owned()),
            )
        };
        match UpsClient::new(settings, self.shared_clock(), RetryPolicy::fast()) {
            Ok(client) => client,
            Err(e) => panic!("UPS client: {e}"),
        }
    }

    fn client(&self) -> UpsClient {
        self.client_with(CLIENT_ID, CLIENT_SECRET)
    }
}

async fn track(client: &UpsClient, number: &str) -> Result<Vec<TrackOutcome>, CarrierError> {
    client.track(&[ParcelQuery::number(number)]).await
}

#[tokio::test]
async fn every_sandbox_answer_follows_the_ups_contracts() {
    let setup = setup().await;
    let oauth = OpenApi::load("ups/OAuthClientCredentials.yaml");
    let tracking = OpenApi::load("ups/Tracking.yaml");
    let http = &setup.http;
    let token_url = format!("{}/security/v1/oauth/token", setup.base);
    let token_path = "/security/v1/oauth/token";

    let (status, token) = json_answer(
        http.post(&token_url)
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(status, 200, "{token}");
    check(&oauth, "post", token_path, 200, &token);
    // The validator does catch a break: expires_in must be a string.
    let mut numeric = token.clone();
    numeric["expires_in"] = Value::from(14399);
    let schema = oauth.response_schema("post", token_path, 200, "application/json");
    assert!(schema.is_ok_and(|s| oauth.check(&s, &numeric).is_err()));

    let (status, refused) = json_answer(
        http.post(&token_url)
            .basic_auth(CLIENT_ID, Some("wrong"))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(status, 401);
    check(&oauth, "post", token_path, 401, &refused);

    let access_token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let details = "/track/v1/details/{inquiryNumber}";
    let get = |number: &str| {
        http.get(format!("{}/api/track/v1/details/{number}", setup.base))
            .query(&[("locale", "en_US"), ("returnSignature", "false")])
            .bearer_auth(&access_token)
            .header("transId", "contract-test-1")
            .header("transactionSrc", "nightdesk-tests")
    };
    for number in [
        LABEL_ONLY,
        IN_TRANSIT,
        OUT_FOR_DELIVERY,
        DELAYED,
        ADDRESS_PROBLEM,
        DELIVERED,
        ATTEMPTED,
        AT_ACCESS_POINT,
        NOT_YET_VISIBLE,
    ] {
        let (status, body) = json_answer(get(number)).await;
        assert_eq!(status, 200, "{number}: {body}");
        check(&tracking, "get", details, 200, &body);
    }
    let (status, body) = json_answer(get("1Z12")).await;
    assert_eq!(
        (status, body["response"]["errors"][0]["code"].as_str()),
        (400, Some("TV1002"))
    );
    check(&tracking, "get", details, 400, &body);
    let (status, body) = json_answer(
        http.get(format!("{}/api/track/v1/details/{LABEL_ONLY}", setup.base))
            .bearer_auth(&access_token)
            .header("transactionSrc", "nightdesk-tests"),
    )
    .await;
    assert_eq!(status, 400, "transId is required: {body}");
    check(&tracking, "get", details, 400, &body);
}

#[tokio::test]
async fn each_parcel_reads_as_its_ups_codes_mean() {
    let setup = setup().await;
    let client = setup.client();
    use ExceptionReason as R;
    use TrackingStatus as S;
    let expected: [(&str, S, Option<R>, &str); 8] = [
        (LABEL_ONLY, S::LabelCreated, None, "M/MP/003"),
        (IN_TRANSIT, S::InTransit, None, "I/DP/005"),
        (OUT_FOR_DELIVERY, S::OutForDelivery, None, "I/OT/021"),
        (DELAYED, S::Exception, Some(R::Delay), "X/048"),
        (ADDRESS_PROBLEM, S::Exception, Some(R::Address), "X/AD/013"),
        (DELIVERED, S::Delivered, None, "D/FS/011"),
        (ATTEMPTED, S::DeliveryAttempted, None, "X/022"),
        (AT_ACCESS_POINT, S::AvailableForPickup, None, "D/ZP/040"),
    ];
    for (number, status, reason, raw) in expected {
        let parcel = found_one(&client, number).await;
        assert_eq!(parcel.tracking_number, number);
        assert_eq!(
            newest_reads(&parcel),
            Some((status, reason, raw)),
            "{number}"
        );
        // currentStatus carries the 3-digit code only; it must agree on the status.
        assert_eq!(current_status(&parcel), Some(status), "{number} current");
        assert_eq!(parcel.service.as_deref(), Some("UPS Ground"));
    }

    // Times: UPS's GMT fields give the instant, the place's wall time stays local.
    let parcel = found_one(&client, OUT_FOR_DELIVERY).await;
    let out = parcel.events.iter().find(|e| e.raw_code == "I/OT/021");
    let out = out.map(|e| (e.at.utc, e.at.zone, e.at.local));
    let at = t0() - Duration::hours(3);
    let denver_wall = at.with_timezone(&chrono_tz::America::Denver).naive_local();
    assert_eq!(out, Some((Some(at), ZoneSource::Carrier, denver_wall)));
    assert_eq!(parcel.events.len(), 3);

    // The committed date and time at the destination give the exact instant back.
    let parcel = found_one(&client, IN_TRANSIT).await;
    assert_eq!(parcel.estimated_delivery, Some(t0() + Duration::days(2)));
    let parcel = found_one(&client, DELIVERED).await;
    assert_eq!(parcel.estimated_delivery, Some(t0() - Duration::hours(2)));
    // The manifest scan dates the label, in Louisville.
    assert_eq!(
        parcel.ship_date,
        Some(
            (t0() - Duration::hours(60))
                .with_timezone(&chrono_tz::America::New_York)
                .date_naive()
        )
    );
}

#[tokio::test]
async fn a_new_label_is_not_found_until_ups_shows_it_and_a_bad_number_is_rejected() {
    let setup = setup().await;
    let client = setup.client();
    match track(&client, NOT_YET_VISIBLE).await {
        Ok(outcomes) => assert_eq!(
            outcomes,
            vec![TrackOutcome::NotFound {
                tracking_number: NOT_YET_VISIBLE.to_owned(),
                detail: "TW0001: Tracking Information Not Found".to_owned(),
            }]
        ),
        Err(e) => panic!("not-found is no error: {e}"),
    }
    setup.clock.advance(Duration::hours(2));
    let parcel = found_one(&client, NOT_YET_VISIBLE).await;
    assert_eq!(current_status(&parcel), Some(TrackingStatus::LabelCreated));
    match track(&client, "1Z12").await {
        Ok(outcomes) => assert!(
            matches!(outcomes.as_slice(), [TrackOutcome::Rejected { detail, .. }] if detail.starts_with("TV1002")),
            "{outcomes:?}"
        ),
        Err(e) => panic!("an invalid number is no failure: {e}"),
    }
    assert_eq!(setup.calls("ups.token").len(), 1);
}

#[tokio::test]
async fn a_token_expiring_mid_run_is_fetched_again_once() {
    let setup = setup().await;
    let client = setup.client();
    found_one(&client, IN_TRANSIT).await;
    setup.sandbox.expire_carrier_tokens("ups");
    let parcel = found_one(&client, DELIVERED).await;
    assert_eq!(current_status(&parcel), Some(TrackingStatus::Delivered));
    assert_eq!(setup.calls("ups.token"), vec![(200, false), (200, false)]);
    assert_eq!(
        setup.calls("ups.track"),
        vec![(200, false), (401, false), (200, false)]
    );
    // Every request carried its own transId.
    let ids: Vec<String> = setup
        .journal("ups.track")
        .iter()
        .filter_map(|e| e.headers.get("transid").cloned())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
}

#[tokio::test]
async fn a_429_without_retry_after_is_retried_and_succeeds() {
    let setup = setup().await;
    let client = setup.client();
    setup.sandbox.inject(Fault::status("ups.track", 429));
    let parcel = found_one(&client, OUT_FOR_DELIVERY).await;
    assert_eq!(
        current_status(&parcel),
        Some(TrackingStatus::OutForDelivery)
    );
    assert_eq!(setup.calls("ups.track"), vec![(429, true), (200, false)]);
}

#[tokio::test]
async fn refused_credentials_are_a_credentials_error_without_the_secret() {
    let setup = setup().await;
    let client = setup.client_with(CLIENT_ID, "not-the-secret-value");
    assert_credentials_error(
        track(&client, IN_TRANSIT).await,
        "10401",
        "not-the-secret-value",
    );
    // Refused credentials are not retried, and no tracking call is made.
    assert_eq!(setup.calls("ups.token"), vec![(401, false)]);
    assert!(setup.calls("ups.track").is_empty());
}

#[tokio::test]
async fn a_truncated_answer_is_malformed() {
    let setup = setup().await;
    let client = setup.client();
    setup.sandbox.inject(Fault::malformed("ups.track"));
    match track(&client, IN_TRANSIT).await {
        Err(CarrierError::Upstream {
            operation: "track",
            error: nightdesk::http::UpstreamError::Malformed { .. },
            ..
        }) => {}
        other => panic!("expected a malformed answer, got {other:?}"),
    }
}
