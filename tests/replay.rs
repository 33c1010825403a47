//! `replay`: today's rules over stored history, with no side effect.

mod common;

use chrono::Duration;
use common::harnesses;
use nightdesk::clock::Clock;
use nightdesk::sandbox::{FulfillmentChannel, OrderStatus, ScenarioOrder, When};
use nightdesk::store::{SqliteStore, Store};

#[tokio::test]
async fn replay_shows_what_todays_rules_would_do_and_writes_nothing() {
    let mut scenario = match nightdesk::sandbox::default_scenario() {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    scenario.amazon.orders = vec![
        ScenarioOrder::new(
            "113-0000001-0000001",
            OrderStatus::Pending,
            FulfillmentChannel::Mfn,
            When::days_ago(9),
        ),
        ScenarioOrder::new(
            "113-0000002-0000002",
            OrderStatus::Unshipped,
            FulfillmentChannel::Mfn,
            When::days_ago(1),
        ),
    ];
    scenario.amazon.fulfillment_orders.clear();
    for h in harnesses(&scenario).await {
        let daemon = h.daemon();
        assert!(daemon.run_cycle().await.is_ok(), "{}", h.label());
        let before = (
            h.store.store.outbox().await.unwrap_or_default(),
            h.store.store.audit_log(None).await.unwrap_or_default(),
        );
        let posts = h.slack_texts().len();

        // Today a new rule exists that would greet every new order.
        h.write_rule("greet", "fn on_order_status_changed(order, event) { if event.from == () { alert(\"ops\", `new ${order.id}`); } }");
        let config = h.config();
        // Beside the live daemon: on SQLite the instance lock is held, so read-only.
        let read_only: Box<dyn Store> = match &h.store.sqlite_path {
            Some(path) => match SqliteStore::open_read_only(path).await {
                Ok(s) => Box::new(s),
                Err(e) => panic!("{e}"),
            },
            None => match nightdesk::store::PostgresStore::connect_read_only(
                h.store.postgres_url.as_deref().unwrap_or_default(),
            )
            .await
            {
                Ok(s) => Box::new(s),
                Err(e) => panic!("{e}"),
            },
        };
        let now = h.clock.now();
        let report =
            nightdesk::daemon::replay(&config, read_only.as_ref(), now, now - Duration::days(7))
                .await;
        let Ok(report) = report else {
            panic!("{}: {report:?}", h.label())
        };
        assert_eq!(report.events, 2, "{}", h.label());
        let mut lines: Vec<(String, bool)> = report
            .lines
            .iter()
            .map(|l| (format!("{} {}", l.rule, l.action), l.already_planned))
            .collect();
        lines.sort();
        assert_eq!(lines.len(), 3, "{}: {lines:?}", h.label());
        assert!(
            lines[0]
                .0
                .starts_with("greet alert ops: \"new 113-0000001-0000001\"")
                && !lines[0].1,
            "{}: {lines:?}",
            h.label()
        );
        assert!(
            lines[1]
                .0
                .starts_with("greet alert ops: \"new 113-0000002-0000002\"")
                && !lines[1].1,
            "{}: {lines:?}",
            h.label()
        );
        assert!(
            lines[2].0.starts_with("pending_over_7_days alert ops") && lines[2].1,
            "{}: {lines:?}",
            h.label()
        );

        // Nothing was written or sent.
        let after = (
            h.store.store.outbox().await.unwrap_or_default(),
            h.store.store.audit_log(None).await.unwrap_or_default(),
        );
        assert_eq!(before, after, "{}", h.label());
        assert_eq!(h.slack_texts().len(), posts, "{}", h.label());
    }
}
