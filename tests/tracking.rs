//! The whole daemon tracking parcels against the sandbox, on every store backend: FBM
//! ship confirmations start watches, the carriers are asked, tracking events reach the
//! rules only on real changes, and the out-for-delivery notice and the exception alert
//! go out once.

mod common;

use chrono::Duration;
use common::{Harness, harnesses};
use nightdesk::config::SecretResolver;
use nightdesk::daemon::Daemon;
use nightdesk::model::{EventKind, SalesChannel, Subject, TrackingStatus};
use nightdesk::sandbox::{
    Fault, FulfillmentChannel, OrderStatus, Scenario, ScenarioOrder, ScenarioScan, When,
};

const UPS: &str = "1Z5R89390357567127";
const USPS: &str = "9400111206206406260787";
const ORDER_UPS: &str = "112-5502938-1174650";
const ORDER_USPS: &str = "111-2205936-7748102";

/// Two shipped FBM orders: a UPS parcel moving, a USPS parcel with only a label.
fn scenario() -> Scenario {
    let yaml = format!(
        "
amazon:
  orders:
    - {{id: {ORDER_UPS}, status: Shipped, channel: MFN, purchased: 5d, last_updated: 4d,
       latest_delivery: in 3d,
       packages: [{{carrier: UPS, tracking_number: {UPS}, shipped: 4d}}],
       items: [{{id: '1', asin: B0CK7PQ2ZL, sku: K, title: Kettle, unit_price: '44.99'}}]}}
    - {{id: {ORDER_USPS}, status: Shipped, channel: MFN, purchased: 3d, last_updated: 2d,
       packages: [{{carrier: USPS, tracking_number: '{USPS}', shipped: 2d}}],
       items: [{{id: '2', asin: B09XJ6T3RQ, sku: F, title: Filters, unit_price: '8.49'}}]}}
carriers:
  parcels:
    - carrier: ups
      tracking_number: {UPS}
      label_created: 4d
      scans:
        - {{at: 4d, code: '003'}}
        - {{at: 3d, code: '005'}}
    - carrier: usps
      tracking_number: '{USPS}'
      label_created: 2d
      scans:
        - {{at: 2d, code: GX}}
"
    );
    match Scenario::from_yaml_str(&yaml) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn config(h: &Harness) -> String {
    format!(
        // USPS allows about one call a minute; the sandbox does not need the wait.
        "{}carriers:\n  schedule: \"* * * * *\"\n  ups:\n    client_id: nightdesk-sandbox-ups-client-id\n    client_secret: env:T_UPS\n  usps:\n    client_id: sandbox-usps-client-id\n    client_secret: env:T_USPS\n    calls_per_second: 100\n",
        h.config_text
    )
}

/// The carriers' config, the two tracking rules and the shipped templates.
fn prepare(h: &mut Harness) {
    h.config_text = config(h);
    for rule in ["shipping_exception", "out_for_delivery"] {
        let source = match std::fs::read_to_string(format!("rules/{rule}.rhai")) {
            Ok(source) => source,
            Err(e) => panic!("rules/{rule}.rhai: {e}"),
        };
        h.write_rule(rule, &source);
    }
    h.shipped_templates();
}

fn daemon(h: &mut Harness) -> Daemon {
    prepare(h);
    let secrets: SecretResolver = h
        .secrets()
        .with_override("T_UPS", "nightdesk-sandbox-ups-client-secret")
        .with_override("T_USPS", "sandbox-usps-client-secret");
    h.daemon_with(h.config(), secrets)
}

async fn tracking_events(h: &Harness, order: &str) -> Vec<EventKind> {
    let subject = Subject::order(SalesChannel::Amazon, order);
    match h.store.store.events_for(subject.as_str()).await {
        Ok(events) => events
            .into_iter()
            .map(|e| e.kind)
            .filter(|k| {
                matches!(
                    k,
                    EventKind::TrackingUpdated { .. }
                        | EventKind::ShipmentException { .. }
                        | EventKind::TrackingCondition { .. }
                )
            })
            .collect(),
        Err(e) => panic!("events: {e}"),
    }
}

fn status_of(events: &[EventKind]) -> Vec<(Option<TrackingStatus>, TrackingStatus)> {
    events
        .iter()
        .filter_map(|k| match k {
            EventKind::TrackingUpdated { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

async fn cycle(daemon: &Daemon) {
    if let Err(e) = daemon.run_cycle().await {
        panic!("cycle: {e}");
    }
}

#[tokio::test]
async fn parcels_are_watched_from_ship_confirmations_and_events_fire_only_on_change() {
    for mut h in harnesses(&scenario()).await {
        let daemon = daemon(&mut h);
        cycle(&daemon).await;
        let label = h.label();
        assert_eq!(h.journal("getOrder2026").len(), 2, "{label}");
        assert_eq!(
            status_of(&tracking_events(&h, ORDER_UPS).await),
            vec![(None, TrackingStatus::InTransit)],
            "{label}"
        );
        assert_eq!(
            status_of(&tracking_events(&h, ORDER_USPS).await),
            vec![(None, TrackingStatus::LabelCreated)],
            "{label}"
        );

        // A quiet parcel (last scan days ago) is asked about every 8 hours; nothing new
        // at the carrier: no event.
        h.clock.advance(Duration::hours(4));
        cycle(&daemon).await;
        assert_eq!(h.journal("ups.track").len(), 1, "{label}");
        h.clock.advance(Duration::hours(5));
        cycle(&daemon).await;
        assert_eq!(h.journal("ups.track").len(), 2, "{label}");
        assert_eq!(tracking_events(&h, ORDER_UPS).await.len(), 1, "{label}");
        // Ship confirmations are read once per order.
        assert_eq!(h.journal("getOrder2026").len(), 2, "{label}");

        // USPS puts the parcel on the van: one TrackingUpdated, one delivery notice.
        let scan = ScenarioScan {
            at: When::now(),
            code: "OF".into(),
            description: None,
            place: None,
            reason: None,
        };
        if let Err(e) = h.sandbox.add_carrier_scan("usps", USPS, scan) {
            panic!("{e}");
        }
        // The label, two days old, is asked about every 6 hours.
        h.clock.advance(Duration::hours(6));
        cycle(&daemon).await;
        assert_eq!(
            status_of(&tracking_events(&h, ORDER_USPS).await),
            vec![
                (None, TrackingStatus::LabelCreated),
                (
                    Some(TrackingStatus::LabelCreated),
                    TrackingStatus::OutForDelivery
                )
            ],
            "{label}"
        );
        let notices = h.sandbox.messages(Some(ORDER_USPS));
        assert_eq!(notices.len(), 1, "{label}");
        assert_eq!(notices[0].message_type, "confirmDeliveryDetails", "{label}");
        assert!(
            notices[0].text.contains(USPS),
            "{label}: {}",
            notices[0].text
        );

        // UPS reports a delay; then, late, an older scan turns up: still one exception.
        for (ago, code) in [(0, "048"), (30, "005")] {
            let scan = ScenarioScan {
                at: When::ago(Duration::hours(ago)),
                code: code.into(),
                description: None,
                place: None,
                reason: None,
            };
            if let Err(e) = h.sandbox.add_carrier_scan("ups", UPS, scan) {
                panic!("{e}");
            }
        }
        h.clock.advance(Duration::hours(3));
        cycle(&daemon).await;
        h.clock.advance(Duration::hours(3));
        cycle(&daemon).await;
        let ups_events = tracking_events(&h, ORDER_UPS).await;
        let exceptions = ups_events
            .iter()
            .filter(
                |k| matches!(k, EventKind::ShipmentException { reason, .. } if reason == "delay"),
            )
            .count();
        assert_eq!(exceptions, 1, "{label}: {ups_events:?}");
        assert_eq!(
            status_of(&ups_events).last(),
            Some(&(Some(TrackingStatus::InTransit), TrackingStatus::Exception)),
            "{label}"
        );
        assert_eq!(h.sandbox.messages(Some(ORDER_UPS)).len(), 1, "{label}");
        assert_eq!(h.sandbox.messages(Some(ORDER_USPS)).len(), 1, "{label}");
        assert_eq!(
            common::count(&h.slack_texts(), &format!("{UPS} has an exception (delay)")),
            1,
            "{label}: {:?}",
            h.slack_texts()
        );
    }
}

#[tokio::test]
async fn a_label_the_carrier_does_not_know_yet_is_unknown_then_found() {
    let mut scenario = scenario();
    for parcel in &mut scenario.carriers.parcels {
        if parcel.carrier == "usps" {
            parcel.visible_from = Some(When::from_now(Duration::hours(3)));
        }
    }
    for mut h in harnesses(&scenario).await {
        let daemon = daemon(&mut h);
        cycle(&daemon).await;
        let label = h.label();
        assert_eq!(
            status_of(&tracking_events(&h, ORDER_USPS).await),
            vec![(None, TrackingStatus::Unknown)],
            "{label}"
        );
        // A label two days old that the carrier does not know is asked about every six
        // hours (a fresh one every two).
        h.clock.advance(Duration::hours(5));
        cycle(&daemon).await;
        assert_eq!(h.journal("usps.track").len(), 1, "{label}");
        h.clock.advance(Duration::hours(2));
        cycle(&daemon).await;
        assert_eq!(
            status_of(&tracking_events(&h, ORDER_USPS).await).last(),
            Some(&(Some(TrackingStatus::Unknown), TrackingStatus::LabelCreated)),
            "{label}"
        );
    }
}

/// Amazon ships FBA orders itself: there is no ship confirmation to read.
#[tokio::test]
async fn fba_orders_start_no_carrier_watch() {
    let mut scenario = scenario();
    scenario.amazon.orders.push(ScenarioOrder::new(
        "113-0000000-0000001",
        OrderStatus::Shipped,
        FulfillmentChannel::Afn,
        When::days_ago(2),
    ));
    for mut h in harnesses(&scenario).await {
        let daemon = daemon(&mut h);
        cycle(&daemon).await;
        let asked: Vec<String> = h
            .journal("getOrder2026")
            .iter()
            .map(|e| e.path.clone())
            .collect();
        assert_eq!(asked.len(), 2, "{}: {asked:?}", h.label());
        assert!(
            asked.iter().all(|p| !p.contains("113-0000000-0000001")),
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn refused_carrier_credentials_are_alerted_once_and_other_carriers_go_on() {
    for mut h in harnesses(&scenario()).await {
        prepare(&mut h);
        let secrets = h
            .secrets()
            .with_override("T_UPS", "not-the-secret")
            .with_override("T_USPS", "sandbox-usps-client-secret");
        let daemon = h.daemon_with(h.config(), secrets);
        let label = h.label();
        for _ in 0..3 {
            cycle(&daemon).await;
            h.clock.advance(Duration::minutes(20));
        }
        let texts = h.slack_texts();
        assert_eq!(
            common::count(&texts, "Credentials failing for ups"),
            1,
            "{label}: {texts:?}"
        );
        assert!(
            !texts.iter().any(|t| t.contains("not-the-secret")),
            "{label}"
        );
        // USPS was asked and its parcel tracked all the same.
        assert_eq!(
            status_of(&tracking_events(&h, ORDER_USPS).await),
            vec![(None, TrackingStatus::LabelCreated)],
            "{label}"
        );
        assert!(tracking_events(&h, ORDER_UPS).await.is_empty(), "{label}");
    }
}

#[tokio::test]
async fn a_ship_confirmation_that_cannot_be_read_skips_its_order_only() {
    for mut h in harnesses(&scenario()).await {
        let daemon = daemon(&mut h);
        // The first order's confirmation answers 404 (never better); the second's 503s
        // past the in-call retries (better later).
        h.sandbox.inject(Fault::status("getOrder2026", 404));
        cycle(&daemon).await;
        let label = h.label();
        let watched = |h: &Harness| {
            let store = h.store.store.clone();
            async move {
                match store.parcel_watches(None).await {
                    Ok(w) => w.len(),
                    Err(e) => panic!("watches: {e}"),
                }
            }
        };
        assert_eq!(
            watched(&h).await,
            1,
            "{label}: one order skipped, one watched"
        );
        // The skipped order is not asked again; nothing is pending.
        h.clock.advance(Duration::minutes(5));
        cycle(&daemon).await;
        assert_eq!(h.journal("getOrder2026").len(), 2, "{label}");

        h.sandbox
            .inject(Fault::status("getOrder2026", 503).times(20));
        let order = ScenarioOrder::new(
            "114-0000000-0000009",
            OrderStatus::Shipped,
            FulfillmentChannel::Mfn,
            When::days_ago(1),
        );
        let order = ScenarioOrder {
            packages: vec![nightdesk::sandbox::ScenarioOrderPackage::new(
                "UPS",
                "1Z879E930346834440",
                When::hours_ago(20),
            )],
            last_updated: Some(When::now()),
            ..order
        };
        if let Err(e) = h.sandbox.add_order(order) {
            panic!("{e}");
        }
        h.clock.advance(Duration::minutes(5));
        cycle(&daemon).await;
        assert_eq!(watched(&h).await, 1, "{label}: the unavailable read waits");
        h.sandbox.clear_faults();
        h.clock.advance(Duration::minutes(5));
        cycle(&daemon).await;
        assert_eq!(watched(&h).await, 2, "{label}: read at the next poll");
    }
}

/// Orders shipped on Shopify, eBay and Walmart have their parcels watched from what each
/// marketplace says (fulfilments, shipping fulfillments, line tracking), and the
/// carriers are asked about them as about Amazon's.
#[tokio::test]
async fn parcels_shipped_on_the_other_marketplaces_are_tracked() {
    let scenario = match nightdesk::sandbox::default_scenario() {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    for mut h in harnesses(&scenario).await {
        let label = h.label();
        h.config_text = format!(
            "{}shopify:\n  accounts:\n    - name: shop\n      shop: ridgeline-coffee\n      access_token: env:T_SHOPIFY\n      schedule: \"* * * * *\"\n\
             ebay:\n  accounts:\n    - name: ebay-us\n      client_id: sandbox-ebay-client-id\n      client_secret: env:T_EBAY_SECRET\n      refresh_token: env:T_EBAY_REFRESH\n\
             walmart:\n  accounts:\n    - name: walmart-us\n      client_id: sandbox-walmart-client-id\n      client_secret: env:T_WALMART\n\
             carriers:\n  schedule: \"* * * * *\"\n  usps:\n    client_id: sandbox-usps-client-id\n    client_secret: env:T_USPS\n    calls_per_second: 100\n  dhl:\n    api_key: env:T_DHL\n",
            h.config_text
        );
        let secrets = h
            .secrets()
            .with_override("T_SHOPIFY", "shpat_sandbox_token")
            .with_override("T_EBAY_SECRET", "sandbox-ebay-client-secret")
            .with_override("T_EBAY_REFRESH", "sandbox-ebay-refresh-token")
            .with_override("T_WALMART", "sandbox-walmart-client-secret")
            .with_override("T_USPS", "sandbox-usps-client-secret")
            .with_override("T_DHL", "sandbox-dhl-api-key");
        let daemon = h.daemon_with(h.config(), secrets);
        cycle(&daemon).await;
        let expected = [
            ("4711234566", "dhl", SalesChannel::Shopify, "#10482"),
            (
                "9400111899223197428490",
                "usps",
                SalesChannel::Ebay,
                "12-34567-89012",
            ),
            (
                "9400111899223197428491",
                "usps",
                SalesChannel::Walmart,
                "1815367951431",
            ),
        ];
        for (number, carrier, channel, order) in expected {
            let watches = match h.store.store.parcel_watches(Some(number)).await {
                Ok(w) => w,
                Err(e) => panic!("{label}: watches: {e}"),
            };
            let found: Vec<(String, &str)> = watches
                .iter()
                .map(|w| (w.subject.to_string(), w.carrier.as_str()))
                .collect();
            assert_eq!(
                found,
                vec![(Subject::order(channel, order).to_string(), carrier)],
                "{label}: {number}"
            );
            let subject = Subject::order(channel, order);
            let events = match h.store.store.events_for(subject.as_str()).await {
                Ok(events) => events,
                Err(e) => panic!("{label}: events: {e}"),
            };
            let moving = events.iter().any(|e| {
                matches!(
                    e.kind,
                    EventKind::TrackingUpdated {
                        to: TrackingStatus::InTransit,
                        ..
                    }
                )
            });
            assert!(moving, "{label}: {number} was not tracked: {events:?}");
        }
    }
}
