//! The Amazon connector against the sandbox: item paging, several marketplaces and
//! regions, usage plans stated by Amazon, refused credentials, late-visible orders, and
//! the reconciliation sweep. Each runs on every store backend.

mod common;

use std::sync::Arc;

use chrono::Duration;
use common::{Harness, count, harnesses, t0};
use nightdesk::clock::Clock;
use nightdesk::model::{SalesChannel, Subject, TrackingStatus};
use nightdesk::sandbox::{
    FulfillmentChannel, OrderStatus, Scenario, ScenarioItem, ScenarioOrder, When,
};
use nightdesk::sources::amazon::AmazonSource;
use nightdesk::sources::{self, OrderSource};

fn order(id: &str, marketplace: &str, updated_minutes_ago: i64) -> ScenarioOrder {
    ScenarioOrder {
        marketplace: marketplace.to_owned(),
        last_updated: Some(When::minutes_ago(updated_minutes_ago)),
        ..ScenarioOrder::new(
            id,
            OrderStatus::Unshipped,
            FulfillmentChannel::Mfn,
            When::minutes_ago(updated_minutes_ago + 60),
        )
    }
}

fn item(n: u32) -> ScenarioItem {
    ScenarioItem::new(
        format!("{:014}", 50_000_000_000_000_u64 + u64::from(n)),
        format!("SKU-{n}"),
        format!("B0TEST{n:04}"),
        format!("Item {n}"),
        1,
        nightdesk::sandbox::Amount::from_cents(1999),
    )
}

/// The harness's account as a bare source (no daemon), on its own SP-API client.
fn source(h: &Harness) -> Arc<AmazonSource> {
    let (account, api) = h.sp_api();
    AmazonSource::new(account, api)
}

async fn cycle(h: &Harness, daemon: &nightdesk::daemon::Daemon) -> Vec<Result<(), String>> {
    match daemon.run_cycle().await {
        Ok(report) => report
            .polls
            .into_iter()
            .map(|(_, p)| p.map(|_| ()))
            .collect(),
        Err(e) => panic!("{}: cycle: {e}", h.label()),
    }
}

async fn stored(h: &Harness, id: &str) -> Option<nightdesk::model::StoredOrder> {
    match h.store.store.order(SalesChannel::Amazon, id).await {
        Ok(found) => found,
        Err(e) => panic!("{}: store: {e}", h.label()),
    }
}

#[tokio::test]
async fn order_items_are_read_page_by_page() {
    let mut big = order("113-0000001-0000001", "ATVPDKIKX0DER", 30);
    big.items = (1..=5).map(item).collect();
    let mut scenario = Scenario::with_orders(vec![big]);
    scenario.amazon.items_page_size = 2;
    for h in harnesses(&scenario).await {
        let daemon = h.daemon();
        assert!(cycle(&h, &daemon).await.iter().all(Result::is_ok));
        let Some(order) = stored(&h, "113-0000001-0000001").await else {
            panic!("{}: order not stored", h.label())
        };
        let ids: Vec<&str> = order.order.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids.len(), 5, "{}: {ids:?}", h.label());
        assert_eq!(ids[4], "50000000000005", "{}", h.label());
        let calls = h.journal("getOrderItems");
        assert_eq!(calls.len(), 3, "{}: three pages of two", h.label());
        assert!(
            calls[1].query.contains("NextToken") && calls[2].query.contains("NextToken"),
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn every_marketplace_of_every_account_and_region_is_polled() {
    let scenario = Scenario::with_orders(vec![
        order("111-0000001-0000001", "ATVPDKIKX0DER", 30),
        order("702-0000002-0000002", "A2EUQ1WTGCTBG2", 30),
        order("302-0000003-0000003", "A1PA6795UKMFR9", 30),
        order("203-0000004-0000004", "A1F83G8C2ARO7P", 30),
    ]);
    for mut h in harnesses(&scenario).await {
        h.config_text = h.config_text.replace(
            "      marketplaces: [ATVPDKIKX0DER]\n",
            "      marketplaces: [ATVPDKIKX0DER, A2EUQ1WTGCTBG2]\n",
        );
        h.config_text = h.config_text.replace(
            "channels:\n",
            "    - name: eu\n      region: eu\n      marketplaces: [A1PA6795UKMFR9]\n      client_id: amzn1.application-oa2-client.sandbox\n      client_secret: env:T_LWA_SECRET\n      refresh_token: env:T_LWA_REFRESH\n      schedule: \"* * * * *\"\n      initial_lookback_days: 30\nchannels:\n",
        );
        let daemon = h.daemon();
        let polls = cycle(&h, &daemon).await;
        assert_eq!(polls.len(), 2, "{}: two accounts", h.label());
        assert!(polls.iter().all(Result::is_ok), "{}: {polls:?}", h.label());
        for (id, account, marketplace) in [
            ("111-0000001-0000001", "test", "ATVPDKIKX0DER"),
            ("702-0000002-0000002", "test", "A2EUQ1WTGCTBG2"),
            ("302-0000003-0000003", "eu", "A1PA6795UKMFR9"),
        ] {
            let Some(found) = stored(&h, id).await else {
                panic!("{}: {id} not stored", h.label())
            };
            assert_eq!(found.order.account, account, "{}: {id}", h.label());
            assert_eq!(
                found.order.marketplace_id.as_deref(),
                Some(marketplace),
                "{}",
                h.label()
            );
        }
        // The UK is in no account's marketplaces.
        assert!(stored(&h, "203-0000004-0000004").await.is_none());
        let queries: Vec<String> = h
            .journal("getOrders")
            .into_iter()
            .map(|e| e.query)
            .collect();
        assert!(
            queries
                .iter()
                .any(|q| q.contains("ATVPDKIKX0DER") && q.contains("A2EUQ1WTGCTBG2")),
            "{}: one call for both NA marketplaces: {queries:?}",
            h.label()
        );
        assert!(
            queries.iter().any(|q| q.contains("A1PA6795UKMFR9")),
            "{}",
            h.label()
        );
    }
}

/// Amazon states a lower getOrderItems rate than the published plan: nightdesk paces to
/// it and is never throttled. 31 calls: the burst of 30, then one paced at the stated
/// rate (at the published 0.5/s the 31st would come too early for a 0.25/s bucket).
#[tokio::test]
async fn a_lower_stated_rate_is_followed_without_a_429() {
    let orders: Vec<ScenarioOrder> = (0..31)
        .map(|n| {
            let mut o = order(
                &format!("113-{:07}-0000001", n + 1),
                "ATVPDKIKX0DER",
                30 + n,
            );
            o.items = vec![item(n as u32)];
            o
        })
        .collect();
    let scenario = Scenario::with_orders(orders);
    let Some(h) = harnesses(&scenario).await.into_iter().next() else {
        panic!("no harness")
    };
    h.sandbox.set_usage_plan("getOrderItems", 0.25, 30.0);
    h.sandbox.reset_usage();
    let source = source(&h);
    let report = sources::poll_once(source.as_ref(), h.store.store.as_ref(), h.clock.now()).await;
    let Ok(report) = report else {
        panic!("{report:?}")
    };
    assert_eq!(report.ingest.stored, 31);
    let usage = h.sandbox.usage("getOrderItems");
    assert_eq!((usage.answered, usage.throttled), (31, 0));
    let pace = source
        .api()
        .current_pace("getOrderItems")
        .map(|p| p.granted);
    assert_eq!(pace, Some(0.25));
}

#[tokio::test]
async fn refused_credentials_stop_polling_and_alert_once() {
    let scenario = Scenario::with_orders(vec![order("113-0000001-0000001", "ATVPDKIKX0DER", 30)]);
    for h in harnesses(&scenario).await {
        let daemon = h.daemon();
        assert!(cycle(&h, &daemon).await.iter().all(Result::is_ok));
        h.sandbox.revoke_refresh_token();
        // The cached access token is refused (403), a fresh one is asked for, and LWA
        // says invalid_grant.
        h.clock.advance(Duration::minutes(1));
        let polls = cycle(&h, &daemon).await;
        assert!(
            polls[0]
                .as_ref()
                .is_err_and(|e| e.contains("invalid_grant")),
            "{polls:?}"
        );
        let lwa_calls = h.journal("lwa.token").len();
        for _ in 0..5 {
            h.clock.advance(Duration::minutes(1));
            let polls = cycle(&h, &daemon).await;
            assert!(
                polls[0]
                    .as_ref()
                    .is_err_and(|e| e.contains("credentials refused"))
            );
        }
        assert_eq!(
            h.journal("lwa.token").len(),
            lwa_calls,
            "{}: no LWA call while stopped",
            h.label()
        );
        let alerts = h.slack_texts();
        assert_eq!(
            count(&alerts, "Credentials failing"),
            1,
            "{}: {alerts:?}",
            h.label()
        );
        // The refusal is in the audit trail, as LWA worded it.
        let audit = match h.store.store.decisions("source:amazon/test").await {
            Ok(found) => found,
            Err(e) => panic!("decisions: {e}"),
        };
        assert!(
            audit
                .iter()
                .any(|d| d.trigger == "poll" && d.detail.to_string().contains("invalid_grant")),
            "{}: {audit:?}",
            h.label()
        );
        assert!(
            alerts
                .iter()
                .all(|t| !t.contains(&h.scenario.amazon.credentials.refresh_token)),
            "{}: the refresh token never reaches an alert",
            h.label()
        );
        // An hour later it tries once, quietly; once fixed it resumes and says so.
        h.clock.advance(Duration::minutes(61));
        let _ = cycle(&h, &daemon).await;
        assert_eq!(h.journal("lwa.token").len(), lwa_calls + 1, "{}", h.label());
        assert_eq!(count(&h.slack_texts(), "Credentials failing"), 1);
        h.sandbox.restore_refresh_token();
        h.clock.advance(Duration::minutes(61));
        assert!(cycle(&h, &daemon).await.iter().all(Result::is_ok));
        assert_eq!(count(&h.slack_texts(), "work again"), 1, "{}", h.label());
    }
}

/// Amazon shows an update later than its LastUpdateDate. Within the visibility lag the
/// first poll sees it; later than that, the next window's overlap does.
#[tokio::test]
async fn a_late_visible_order_is_caught_by_the_overlap() {
    let mut late = order("113-0000009-0000009", "ATVPDKIKX0DER", 4);
    late.visible_after_seconds = Some(6 * 60);
    let mut slightly_late = order("113-0000008-0000008", "ATVPDKIKX0DER", 5);
    slightly_late.visible_after_seconds = Some(90);
    let scenario = Scenario::with_orders(vec![late, slightly_late]);
    for h in harnesses(&scenario).await {
        let daemon = h.daemon();
        assert!(cycle(&h, &daemon).await.iter().all(Result::is_ok));
        assert!(
            stored(&h, "113-0000008-0000008").await.is_some(),
            "{}",
            h.label()
        );
        assert!(
            stored(&h, "113-0000009-0000009").await.is_none(),
            "{}: not visible yet",
            h.label()
        );
        h.clock.advance(Duration::minutes(5));
        assert!(cycle(&h, &daemon).await.iter().all(Result::is_ok));
        assert!(
            stored(&h, "113-0000009-0000009").await.is_some(),
            "{}: caught by the overlap",
            h.label()
        );
    }
}

/// An order visible only 40 minutes after its LastUpdateDate escapes the overlapping
/// windows; the daily sweep finds it, stores it and says so.
#[tokio::test]
async fn the_daily_sweep_finds_what_the_windows_missed() {
    let mut very_late = order("113-0000007-0000007", "ATVPDKIKX0DER", 4);
    very_late.visible_after_seconds = Some(40 * 60);
    let scenario = Scenario::with_orders(vec![
        very_late,
        order("113-0000006-0000006", "ATVPDKIKX0DER", 30),
    ]);
    for h in harnesses(&scenario).await {
        let daemon = h.daemon();
        for _ in 0..10 {
            assert!(cycle(&h, &daemon).await.iter().all(Result::is_ok));
            h.clock.advance(Duration::minutes(10));
        }
        assert!(
            stored(&h, "113-0000007-0000007").await.is_none(),
            "{}: missed",
            h.label()
        );
        assert_eq!(count(&h.slack_texts(), "Reconciliation"), 0);
        h.clock.set(t0() + Duration::hours(25));
        assert!(cycle(&h, &daemon).await.iter().all(Result::is_ok));
        assert!(
            stored(&h, "113-0000007-0000007").await.is_some(),
            "{}: found by the sweep",
            h.label()
        );
        let alerts = h.slack_texts();
        let sweep: Vec<&String> = alerts
            .iter()
            .filter(|t| t.contains("Reconciliation"))
            .collect();
        assert_eq!(sweep.len(), 1, "{}: {alerts:?}", h.label());
        assert!(
            sweep[0].contains("113-0000007-0000007") && sweep[0].contains("1 order"),
            "{}",
            sweep[0]
        );
        assert!(!sweep[0].contains("113-0000006-0000006"), "{}", sweep[0]);
        // The next day's sweep finds nothing new and stays quiet.
        h.clock.set(t0() + Duration::hours(50));
        assert!(cycle(&h, &daemon).await.iter().all(Result::is_ok));
        assert_eq!(
            count(&h.slack_texts(), "Reconciliation"),
            1,
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn polling_never_asks_for_restricted_data() {
    let scenario = Scenario::with_orders(vec![order("113-0000001-0000001", "ATVPDKIKX0DER", 30)]);
    for h in harnesses(&scenario).await {
        let daemon = h.daemon();
        assert!(cycle(&h, &daemon).await.iter().all(Result::is_ok));
        assert_eq!(h.sandbox.restricted_tokens_issued(), 0, "{}", h.label());
        let source = source(&h);
        assert_eq!(source.key(), "amazon/test");
    }
}

/// `needle` is in exactly one of the alerts.
fn once(h: &Harness, alerts: &[String], needle: &str) {
    assert_eq!(
        count(alerts, needle),
        1,
        "{}: {needle} in {alerts:?}",
        h.label()
    );
}

/// FBA Multi-Channel Fulfillment tracking follows each orders poll: every parcel of the
/// default scenario is stored, the lost and the held-in-customs ones reach the shipping
/// exception rule as `(shipment, event)` of that very parcel, and a parcel that later
/// gets stuck raises one new alert, naming it.
#[tokio::test]
async fn fba_parcels_reach_the_rules_one_parcel_per_event() {
    let scenario = match Scenario::from_yaml_str(include_str!("../scenarios/default.yaml")) {
        Ok(s) => s,
        Err(e) => panic!("default scenario: {e}"),
    };
    for h in harnesses(&scenario).await {
        h.shipped_templates();
        h.write_rule(
            "shipping_exception",
            include_str!("../rules/shipping_exception.rhai"),
        );
        h.write_rule(
            "moves",
            r#"fn on_tracking_updated(shipment, event) {
                   if shipment.tracking_number != event.tracking_number { throw "wrong parcel"; }
                   alert("ops", `moved ${event.carrier} ${event.tracking_number}: ${event.from} -> ${event.to}`);
               }"#,
        );
        let daemon = h.daemon();
        assert!(cycle(&h, &daemon).await.iter().all(Result::is_ok));
        let in_transit = Subject::order(SalesChannel::Amazon, "114-3391806-2257740");
        let parcels = match h.store.store.shipments(&in_transit).await {
            Ok(found) => found,
            Err(e) => panic!("shipments: {e}"),
        };
        assert_eq!(
            parcels
                .iter()
                .map(|p| (p.tracking_number.as_str(), p.status))
                .collect::<Vec<_>>(),
            vec![("1Z999AA10123456784", TrackingStatus::InTransit)],
            "{}",
            h.label()
        );
        let alerts = h.slack_texts();
        once(
            &h,
            &alerts,
            "USPS parcel 9400111899223344556677 has an exception (lost) for order 113-6679340-1195528",
        );
        // The web-shop order's parcel belongs to no Amazon order: ops only.
        once(
            &h,
            &alerts,
            "UPS parcel 1Z999AA10198765431 has an exception (customs).",
        );
        assert_eq!(count(&alerts, "moved "), 4, "{}: {alerts:?}", h.label());
        once(&h, &alerts, "moved UPS 1Z999AA10123456784:  -> InTransit");
        assert_eq!(h.journal("getPackageTrackingDetails").len(), 4);

        // The in-transit parcel is held in customs: one new exception, about it alone.
        h.clock.advance(Duration::hours(1));
        if let Err(e) = h
            .sandbox
            .set_package_status(1840273, "DELAYED", "EVENT_402")
        {
            panic!("set_package_status: {e}");
        }
        assert!(cycle(&h, &daemon).await.iter().all(Result::is_ok));
        let alerts = h.slack_texts();
        assert_eq!(
            count(&alerts, "has an exception"),
            3,
            "{}: {alerts:?}",
            h.label()
        );
        once(
            &h,
            &alerts,
            "UPS parcel 1Z999AA10123456784 has an exception (customs) for order 114-3391806-2257740",
        );
        once(
            &h,
            &alerts,
            "moved UPS 1Z999AA10123456784: InTransit -> Exception",
        );
        // The delivered parcel is settled and not asked about again.
        assert_eq!(h.journal("getPackageTrackingDetails").len(), 7);

        // Nothing changed: nothing new.
        h.clock.advance(Duration::hours(1));
        assert!(cycle(&h, &daemon).await.iter().all(Result::is_ok));
        assert_eq!(h.slack_texts().len(), alerts.len(), "{}", h.label());
    }
}
