//! The whole daemon against the sandbox: Amazon polling (LWA, paging, overlap, faults),
//! rules, outbox and Slack, on every store backend available.

mod common;

use chrono::Duration;
use common::{Harness, harnesses, t0};
use nightdesk::daemon::Daemon;
use nightdesk::model::SalesChannel;
use nightdesk::sandbox::{Fault, FulfillmentChannel, OrderStatus, Scenario, ScenarioOrder, When};
use nightdesk::sources::PollReport;

/// 25 plain orders: three pages of 10 at the test config's page size.
fn scenario_of(n: u32) -> Scenario {
    let mut scenario = match nightdesk::sandbox::default_scenario() {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    scenario.amazon.orders = (0..n).map(ScenarioOrder::generated).collect();
    // These tests count order events; FBA parcels would add theirs.
    scenario.amazon.fulfillment_orders.clear();
    scenario
}

/// One cycle; the first source's poll, or why the cycle or the poll failed.
async fn first_poll(daemon: &Daemon) -> Result<PollReport, String> {
    let report = daemon.run_cycle().await.map_err(|e| e.to_string())?;
    match report.polls.into_iter().next() {
        Some((_, poll)) => poll,
        None => Err("no source was polled".into()),
    }
}

/// A Pending order bought `days` ago.
fn pending(id: &str, channel: FulfillmentChannel, days: i64) -> ScenarioOrder {
    ScenarioOrder::new(id, OrderStatus::Pending, channel, When::days_ago(days))
}

fn page_tokens(h: &Harness) -> Vec<bool> {
    h.journal("getOrders")
        .iter()
        .map(|e| e.query.contains("NextToken="))
        .collect()
}

#[tokio::test]
async fn lwa_token_is_requested_once_and_reused_until_it_expires() {
    for h in harnesses(&scenario_of(3)).await {
        let daemon = h.daemon();
        for _ in 0..2 {
            let report = daemon.run_cycle().await.map_err(|e| e.to_string());
            assert!(
                report.is_ok_and(|r| r.polls.iter().all(|(_, p)| p.is_ok())),
                "{}",
                h.label()
            );
            h.clock.advance(Duration::minutes(5));
        }
        let tokens = h.journal("lwa.token");
        assert_eq!(tokens.len(), 1, "{}: one token for two polls", h.label());
        assert_eq!(
            tokens[0].body["grant_type"],
            "refresh_token",
            "{}",
            h.label()
        );
        assert_eq!(
            tokens[0].body["client_id"],
            common::CLIENT_ID,
            "{}",
            h.label()
        );
        // Every SP-API call carried the token (the sandbox answers 403 otherwise).
        assert!(
            h.journal("getOrders").iter().all(|e| e.status == 200),
            "{}",
            h.label()
        );

        // Past expires_in (3600 s, refreshed 60 s early) a new token is fetched.
        h.clock.advance(Duration::minutes(55));
        assert!(daemon.run_cycle().await.is_ok(), "{}", h.label());
        assert_eq!(h.journal("lwa.token").len(), 2, "{}", h.label());
    }
}

#[tokio::test]
async fn wrong_credentials_fail_the_poll_without_retrying_or_leaking() {
    for h in harnesses(&scenario_of(3)).await {
        let secrets = h
            .secrets()
            .with_override("T_LWA_REFRESH", "Atzr|wrong-refresh-token");
        let daemon = h.daemon_with(h.config(), secrets);
        let poll_error = first_poll(&daemon).await.err().unwrap_or_default();
        assert!(
            poll_error.contains("invalid_grant"),
            "{}: {poll_error}",
            h.label()
        );
        assert!(
            !poll_error.contains("wrong-refresh-token"),
            "{}: {poll_error}",
            h.label()
        );
        assert_eq!(
            h.journal("lwa.token").len(),
            1,
            "{}: credential errors are not retried",
            h.label()
        );
        assert_eq!(
            h.store.store.checkpoint("amazon/test").await.ok().flatten(),
            None,
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn get_orders_pages_across_three_pages_with_the_same_filters() {
    for h in harnesses(&scenario_of(25)).await {
        let report = h.daemon().run_cycle().await.map_err(|e| e.to_string());
        let Ok(report) = report else {
            panic!("{}: {report:?}", h.label())
        };
        let poll = report.polls[0]
            .1
            .clone()
            .map_err(|e| format!("{}: {e}", h.label()));
        assert_eq!(
            poll.map(|p| (p.fetched, p.ingest.stored, p.ingest.events)),
            Ok((25, 25, 25))
        );
        assert_eq!(page_tokens(&h), vec![false, true, true], "{}", h.label());
        for call in h.journal("getOrders") {
            assert!(
                call.query.contains("MarketplaceIds=ATVPDKIKX0DER"),
                "{}: {}",
                h.label(),
                call.query
            );
            assert!(
                call.query.contains("LastUpdatedAfter="),
                "{}: {}",
                h.label(),
                call.query
            );
            assert!(
                call.query.contains("LastUpdatedBefore="),
                "{}: {}",
                h.label(),
                call.query
            );
        }
        // Items were fetched once per order, and stored.
        assert_eq!(h.journal("getOrderItems").len(), 25, "{}", h.label());
        let first = ScenarioOrder::generated(0).id;
        let stored = h
            .store
            .store
            .order(SalesChannel::Amazon, &first)
            .await
            .ok()
            .flatten();
        assert_eq!(
            stored.map(|o| o.order.items.len()),
            Some(1),
            "{}",
            h.label()
        );
        // The watermark is the window's end: now minus the visibility lag.
        let watermark = h.store.store.checkpoint("amazon/test").await.ok().flatten();
        assert_eq!(
            watermark,
            Some(t0() - Duration::minutes(3)),
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn overlapping_windows_produce_no_duplicate_events() {
    for h in harnesses(&scenario_of(4)).await {
        let daemon = h.daemon();
        assert!(daemon.run_cycle().await.is_ok());
        let seen_first = h
            .store
            .store
            .pending_events(100)
            .await
            .map(|e| e.len())
            .unwrap_or(99);
        assert_eq!(
            seen_first,
            0,
            "{}: the cycle's rules pass saw every event",
            h.label()
        );

        // One order changes; another was last updated inside the overlap of the next window.
        let changed = ScenarioOrder::generated(1).id;
        let recent = ScenarioOrder::generated(3).id;
        h.clock.advance(Duration::minutes(1));
        let _ = h
            .sandbox
            .update_order(&recent, |o| o.last_updated = Some(When::minutes_ago(5)));
        let _ = h.sandbox.set_order_status(&changed, OrderStatus::Canceled);
        h.clock.advance(Duration::minutes(4));
        // The `recent` version changed (new LastUpdateDate) but its status did not.
        let report = daemon.run_cycle().await.map_err(|e| e.to_string());
        let poll = report.as_ref().ok().and_then(|r| r.polls[0].1.clone().ok());
        assert_eq!(
            poll.as_ref().map(|p| p.ingest.events),
            Some(1),
            "{}: {report:?}",
            h.label()
        );
        assert_eq!(report.map(|r| r.events_seen).ok(), Some(1), "{}", h.label());

        // The same window read again: the store dedupes everything.
        h.clock.advance(Duration::minutes(1));
        let again = daemon.run_cycle().await.map_err(|e| e.to_string());
        let poll = again.ok().and_then(|r| r.polls[0].1.clone().ok());
        assert!(
            poll.as_ref().is_some_and(|p| p.fetched >= 2),
            "{}: {poll:?}",
            h.label()
        );
        assert_eq!(
            poll.map(|p| (p.ingest.stored, p.ingest.events)),
            Some((0, 0)),
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn a_malformed_get_orders_body_is_logged_and_skipped_and_the_watermark_stays() {
    for h in harnesses(&scenario_of(3)).await {
        h.sandbox.inject(Fault::malformed("getOrders"));
        let daemon = h.daemon();
        let error = first_poll(&daemon).await.err().unwrap_or_default();
        assert!(
            error.contains("malformed getOrders response"),
            "{}: {error}",
            h.label()
        );
        assert_eq!(
            h.store.store.checkpoint("amazon/test").await.ok().flatten(),
            None,
            "{}",
            h.label()
        );
        assert_eq!(
            h.journal("getOrders").len(),
            1,
            "{}: malformed is not retried in-call",
            h.label()
        );
        // The next cycle reads the same window and succeeds.
        h.clock.advance(Duration::minutes(1));
        let poll = first_poll(&daemon).await.ok();
        assert_eq!(poll.map(|p| p.ingest.stored), Some(3), "{}", h.label());
    }
}

#[tokio::test]
async fn a_429_is_retried_after_backoff_and_then_succeeds() {
    for h in harnesses(&scenario_of(3)).await {
        // On getOrderItems: a 429 empties nightdesk's bucket too, and getOrders refills
        // one token a minute (see sources::amazon::pacing).
        h.sandbox
            .inject(Fault::status("getOrderItems", 429).retry_after(0));
        let poll = first_poll(&h.daemon()).await.ok();
        assert_eq!(poll.map(|p| p.ingest.stored), Some(3), "{}", h.label());
        let statuses: Vec<u16> = h
            .journal("getOrderItems")
            .iter()
            .map(|e| e.status)
            .collect();
        assert_eq!(statuses, vec![429, 200, 200, 200], "{}", h.label());
    }
}

#[tokio::test]
async fn a_500_on_page_two_keeps_the_watermark_and_the_window_is_read_again() {
    for h in harnesses(&scenario_of(25)).await {
        // More 500s than the in-call retries: the poll fails.
        h.sandbox
            .inject(Fault::status("getOrders", 500).on_page(2).times(10));
        let daemon = h.daemon();
        let error = first_poll(&daemon).await.err().unwrap_or_default();
        assert!(error.contains("HTTP 500"), "{}: {error}", h.label());
        assert_eq!(
            h.store.store.checkpoint("amazon/test").await.ok().flatten(),
            None,
            "{}",
            h.label()
        );
        // Page 1 was stored as soon as its items were in; the window is still unread.
        let orders = h
            .store
            .store
            .open_orders(t0() - Duration::days(60))
            .await
            .map(|o| o.len())
            .unwrap_or(99);
        assert_eq!(orders, 10, "{}: the first page is kept", h.label());

        h.sandbox.clear_faults();
        h.clock.advance(Duration::minutes(1));
        let poll = first_poll(&daemon).await.ok();
        // The re-read stores the other 15 and fetches no item twice; no event repeats.
        assert_eq!(
            poll.as_ref().map(|p| (p.fetched, p.ingest.stored)),
            Some((25, 15)),
            "{}",
            h.label()
        );
        assert_eq!(h.journal("getOrderItems").len(), 25, "{}", h.label());
        let events = h
            .store
            .store
            .events_since(t0() - Duration::days(60))
            .await
            .map(|e| e.len())
            .unwrap_or(0);
        assert_eq!(events, 25, "{}", h.label());
        // The retried window starts where the failed one did (no watermark existed).
        let first_calls: Vec<String> = h
            .journal("getOrders")
            .into_iter()
            .filter(|e| !e.query.contains("NextToken="))
            .map(|e| {
                e.query
                    .split('&')
                    .find(|p| p.starts_with("LastUpdatedAfter="))
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(first_calls.len(), 2, "{}", h.label());
        assert_ne!(first_calls[0], "", "{}", h.label());
    }
}

#[tokio::test]
async fn the_pending_alert_reaches_slack_once_across_cycles_and_restarts() {
    let mut scenario = scenario_of(2);
    scenario
        .amazon
        .orders
        .push(pending("113-4829301-5520617", FulfillmentChannel::Mfn, 9));
    scenario
        .amazon
        .orders
        .push(pending("113-1111111-2222222", FulfillmentChannel::Mfn, 2));
    for h in harnesses(&scenario).await {
        let first = h.daemon().run_cycle().await.map_err(|e| e.to_string());
        assert_eq!(
            first.map(|r| r.executed.done).ok(),
            Some(1),
            "{}",
            h.label()
        );
        assert_eq!(h.slack_texts().len(), 1, "{}", h.label());
        assert!(
            h.slack_texts()[0].contains("113-4829301-5520617"),
            "{}",
            h.label()
        );

        // The condition stays true for days, and the daemon restarts: still one alert.
        for _ in 0..3 {
            h.clock.advance(Duration::days(1));
            let restarted = h.daemon();
            assert!(restarted.run_cycle().await.is_ok(), "{}", h.label());
        }
        assert_eq!(h.slack_texts().len(), 1, "{}", h.label());
        // By now the 2-day-old order is 5 days old: still under 7, no alert.
        let rows = h.store.store.outbox().await.unwrap_or_default();
        assert_eq!(rows.len(), 1, "{}", h.label());
        assert_eq!(rows[0].state, "done", "{}", h.label());
        let audit = h
            .store
            .store
            .audit_log(Some("order:amazon/113-4829301-5520617"))
            .await
            .unwrap_or_default();
        let kinds: Vec<&str> = audit.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, vec!["planned", "attempt"], "{}", h.label());
    }
}

#[tokio::test]
async fn a_slack_429_is_retried_later_and_delivered_once() {
    let mut scenario = scenario_of(0);
    scenario
        .amazon
        .orders
        .push(pending("113-4829301-5520617", FulfillmentChannel::Afn, 10));
    for h in harnesses(&scenario).await {
        // Channels retry at one layer only: the outbox, on its backoff schedule.
        h.sandbox
            .inject(Fault::status("chat.slack", 429).retry_after(0).times(1));
        let daemon = h.daemon();
        let first = daemon.run_cycle().await.map_err(|e| e.to_string());
        assert_eq!(
            first.map(|r| (r.executed.done, r.executed.retry)).ok(),
            Some((0, 1)),
            "{}",
            h.label()
        );
        assert!(h.slack_texts().is_empty(), "{}", h.label());
        // Not due yet: nothing is sent.
        assert_eq!(
            daemon
                .execute_due(&|| false)
                .await
                .map(|r| r.attempted())
                .ok(),
            Some(0),
            "{}",
            h.label()
        );
        h.clock.advance(Duration::seconds(2));
        assert_eq!(
            daemon.execute_due(&|| false).await.map(|r| r.done).ok(),
            Some(1),
            "{}",
            h.label()
        );
        assert_eq!(h.slack_texts().len(), 1, "{}", h.label());
        let rows = h.store.store.outbox().await.unwrap_or_default();
        assert_eq!(
            (rows[0].state.as_str(), rows[0].attempts),
            ("done", 2),
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn dry_run_plans_and_records_but_sends_nothing() {
    let mut scenario = scenario_of(0);
    scenario
        .amazon
        .orders
        .push(pending("113-4829301-5520617", FulfillmentChannel::Mfn, 9));
    for mut h in harnesses(&scenario).await {
        h.config_text = format!("mode: dry-run\n{}", h.config_text);
        let report = h.daemon().run_cycle().await.map_err(|e| e.to_string());
        assert_eq!(
            report
                .map(|r| (r.actions_planned, r.executed.attempted()))
                .ok(),
            Some((1, 0)),
            "{}",
            h.label()
        );
        assert!(h.slack_texts().is_empty(), "{}", h.label());
        let rows = h.store.store.outbox().await.unwrap_or_default();
        assert_eq!(rows[0].state, "dry_run", "{}", h.label());
        assert!(
            rows[0].idempotency_key.starts_with("dry-run/"),
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn a_failing_rule_does_not_stop_the_others() {
    let mut scenario = scenario_of(0);
    scenario
        .amazon
        .orders
        .push(pending("113-4829301-5520617", FulfillmentChannel::Mfn, 9));
    for h in harnesses(&scenario).await {
        h.write_rule("a_runaway", "fn on_order_sweep(order) { loop {} }");
        h.write_rule("b_on_change", "fn on_order_status_changed(order, event) { if event.from == () { alert(\"ops\", `new order ${order.id} (${event.to})`); } }");
        let report = h.daemon().run_cycle().await.map_err(|e| e.to_string());
        let Ok(report) = report else {
            panic!("{report:?}")
        };
        assert_eq!(report.rule_failures, 1, "{}", h.label());
        let mut texts = h.slack_texts();
        texts.sort();
        // The pending alert, the new-order alert, and ops told of the quarantine.
        assert_eq!(texts.len(), 3, "{}: {texts:?}", h.label());
        assert!(texts[0].contains("has been Pending"), "{}", h.label());
        assert!(
            texts[1].starts_with("new order 113-4829301-5520617 (Pending)"),
            "{}",
            h.label()
        );
        assert!(
            texts[2].starts_with("nightdesk: rule a_runaway is quarantined"),
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn a_malformed_items_body_once_is_read_again_at_once() {
    for h in harnesses(&scenario_of(3)).await {
        h.sandbox.inject(Fault::malformed("getOrderItems").times(1));
        let poll = first_poll(&h.daemon()).await;
        assert_eq!(
            poll.as_ref().map(|p| (p.ingest.stored, p.skipped.len())),
            Ok((3, 0)),
            "{}: {poll:?}",
            h.label()
        );
        assert_eq!(h.journal("getOrderItems").len(), 4, "{}", h.label());
    }
}

#[tokio::test]
async fn an_order_whose_items_stay_malformed_is_skipped_and_the_rest_are_stored() {
    for h in harnesses(&scenario_of(3)).await {
        // The first order's items break the contract on the first try and the retry.
        h.sandbox.inject(Fault::malformed("getOrderItems").times(2));
        let poll = first_poll(&h.daemon()).await;
        let skipped: Vec<String> = poll
            .as_ref()
            .map(|p| p.skipped.iter().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default();
        assert_eq!(skipped.len(), 1, "{}: {poll:?}", h.label());
        assert_eq!(
            poll.as_ref().map(|p| p.ingest.stored),
            Ok(2),
            "{}",
            h.label()
        );
        let stored = h
            .store
            .store
            .order(SalesChannel::Amazon, &skipped[0])
            .await
            .ok()
            .flatten();
        assert!(stored.is_none(), "{}: skipped order stored", h.label());
        // One bad order does not hold the account back: the watermark moves.
        assert!(
            h.store
                .store
                .checkpoint("amazon/test")
                .await
                .ok()
                .flatten()
                .is_some(),
            "{}",
            h.label()
        );
    }
}
