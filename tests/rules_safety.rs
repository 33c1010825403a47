//! What keeps an unattended night safe: hot reload that keeps the last good rules,
//! quarantine, per-rule dry-run and daily caps, each alerted once.

mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use common::{Harness, harnesses};
use nightdesk::sandbox::{FulfillmentChannel, OrderStatus, Scenario, ScenarioOrder, When};
use tokio_util::sync::CancellationToken;

/// Three orders Pending for more than 7 days, nothing else.
fn three_long_pending() -> Scenario {
    let mut scenario = match nightdesk::sandbox::default_scenario() {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    scenario.amazon.orders = [
        "113-0000001-0000001",
        "113-0000002-0000002",
        "113-0000003-0000003",
    ]
    .iter()
    .map(|id| {
        ScenarioOrder::new(
            *id,
            OrderStatus::Pending,
            FulfillmentChannel::Mfn,
            When::days_ago(9),
        )
    })
    .collect();
    scenario
}

fn states(rows: &[nightdesk::store::OutboxRow]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.rule.clone(), r.state.clone()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_broken_reload_keeps_the_last_good_rules_and_alerts_once() {
    for h in harnesses(&three_long_pending()).await {
        let daemon = h.daemon();
        let before = daemon.loaded_rules();
        h.write_rule(
            "pending_over_7_days",
            "fn on_order_sweep(order) {\n    alert(\"ops\", ;\n}\n",
        );
        let errors = daemon.reload_rules().await.err().unwrap_or_default();
        assert_eq!(errors.len(), 1, "{}", h.label());
        assert!(
            errors[0].to_string().contains("pending_over_7_days.rhai:2"),
            "{}: {}",
            h.label(),
            errors[0]
        );
        assert_eq!(daemon.loaded_rules(), before, "{}", h.label());
        // The same broken file again: no second alert.
        assert!(daemon.reload_rules().await.is_err());

        // The old rule still acts; the reload failure reached ops once.
        assert!(daemon.run_cycle().await.is_ok(), "{}", h.label());
        let texts = h.slack_texts();
        assert_eq!(
            common::count(&texts, "has been Pending"),
            3,
            "{}: {texts:?}",
            h.label()
        );
        let reload: Vec<&String> = texts
            .iter()
            .filter(|t| t.contains("rule reload failed"))
            .collect();
        assert_eq!(reload.len(), 1, "{}: {texts:?}", h.label());
        assert!(
            reload[0].contains("pending_over_7_days.rhai:2"),
            "{}",
            h.label()
        );

        // Fixed: the new version is swapped in.
        h.write_rule("pending_over_7_days", "fn on_order_sweep(order) { }\n");
        assert_eq!(daemon.reload_rules().await.ok(), Some(1), "{}", h.label());
        assert_ne!(daemon.loaded_rules(), before, "{}", h.label());
    }
}

#[tokio::test]
async fn the_running_daemon_reloads_rules_when_a_file_changes() {
    let Some(h) = harnesses(&three_long_pending()).await.into_iter().next() else {
        panic!("no store")
    };
    let daemon = Arc::new(h.daemon());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(daemon.clone().run(shutdown.clone()));
    let before = daemon.loaded_rules();
    // Give the watcher a moment to start, then save a new version of the rule.
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    h.write_rule(
        "pending_over_7_days",
        "// edited\nfn on_order_sweep(order) { }\n",
    );
    let mut reloaded = false;
    for _ in 0..50 {
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        if daemon.loaded_rules() != before {
            reloaded = true;
            break;
        }
    }
    shutdown.cancel();
    let stopped = tokio::time::timeout(StdDuration::from_secs(35), running).await;
    assert!(reloaded, "the rule change was not picked up within 5 s");
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
}

#[tokio::test]
async fn a_quarantined_rule_is_alerted_once_and_the_others_keep_acting() {
    for h in harnesses(&three_long_pending()).await {
        h.write_rule("runaway", "fn on_order_sweep(order) { loop { } }");
        let daemon = h.daemon();
        for _ in 0..2 {
            assert!(daemon.run_cycle().await.is_ok(), "{}", h.label());
        }
        assert_eq!(
            daemon.quarantined_rules(),
            vec!["runaway".to_owned()],
            "{}",
            h.label()
        );
        let texts = h.slack_texts();
        let quarantine: Vec<&String> = texts.iter().filter(|t| t.contains("quarantined")).collect();
        assert_eq!(quarantine.len(), 1, "{}: {texts:?}", h.label());
        assert!(quarantine[0].contains("rule runaway"), "{}", h.label());
        assert_eq!(
            common::count(&texts, "has been Pending"),
            3,
            "{}",
            h.label()
        );
    }
}

fn with_config(h: &mut Harness, prefix: &str, rules_extra: &str) {
    h.config_text = h.config_text.replace(
        "rules:\n  dir: rules\n",
        &format!("rules:\n  dir: rules\n{rules_extra}"),
    );
    h.config_text = format!("{prefix}{}", h.config_text);
}

#[tokio::test]
async fn past_a_daily_cap_actions_are_held_and_the_cap_is_alerted_once() {
    for mut h in harnesses(&three_long_pending()).await {
        with_config(&mut h, "caps:\n  alert: 2\n", "");
        let report = h.daemon().run_cycle().await.map_err(|e| e.to_string());
        assert!(report.is_ok(), "{}: {report:?}", h.label());
        let rows = h.store.store.outbox().await.unwrap_or_default();
        let held: Vec<_> = rows.iter().filter(|r| r.state == "held").collect();
        assert_eq!(held.len(), 1, "{}: {:?}", h.label(), states(&rows));
        assert!(
            held[0]
                .last_error
                .as_deref()
                .unwrap_or_default()
                .contains("daily cap of 2 alert actions"),
            "{}",
            h.label()
        );
        let texts = h.slack_texts();
        assert_eq!(
            common::count(&texts, "has been Pending"),
            2,
            "{}: {texts:?}",
            h.label()
        );
        assert_eq!(
            common::count(&texts, "daily cap"),
            1,
            "{}: {texts:?}",
            h.label()
        );
        // Sweeping again the same day changes nothing: the held action stays held.
        assert!(h.daemon().run_cycle().await.is_ok());
        assert_eq!(h.slack_texts().len(), texts.len(), "{}", h.label());
    }
}

#[tokio::test]
async fn a_rule_in_dry_run_records_while_the_others_act() {
    for mut h in harnesses(&three_long_pending()).await {
        h.write_rule(
            "shadow",
            "fn on_order_sweep(order) { alert(\"ops\", `shadow ${order.id}`); }",
        );
        with_config(
            &mut h,
            "",
            "  overrides:\n    shadow:\n      mode: dry-run\n",
        );
        assert!(h.daemon().run_cycle().await.is_ok(), "{}", h.label());
        let rows = h.store.store.outbox().await.unwrap_or_default();
        let shadow: Vec<_> = rows.iter().filter(|r| r.rule == "shadow").collect();
        assert_eq!(shadow.len(), 3, "{}", h.label());
        assert!(
            shadow.iter().all(|r| r.state == "dry_run"),
            "{}: {:?}",
            h.label(),
            states(&rows)
        );
        assert!(
            h.slack_texts().iter().all(|t| !t.starts_with("shadow")),
            "{}",
            h.label()
        );
        assert_eq!(h.slack_texts().len(), 3, "{}", h.label());
    }
}

#[tokio::test]
async fn explain_traces_each_decision_and_what_became_of_it() {
    for mut h in harnesses(&three_long_pending()).await {
        with_config(&mut h, "caps:\n  alert: 2\n", "");
        assert!(h.daemon().run_cycle().await.is_ok(), "{}", h.label());
        h.clock.advance(chrono::Duration::hours(1));
        assert!(h.daemon().run_cycle().await.is_ok(), "{}", h.label());
        let store = h.store.store.as_ref();
        let first = nightdesk::daemon::explain(
            store,
            nightdesk::model::SalesChannel::Amazon,
            "113-0000001-0000001",
        )
        .await;
        let Ok(first) = first else {
            panic!("{first:?}")
        };
        let text = first.render();
        assert!(
            text.contains(
                "OrderStatusChanged   (no rule): no rule defines on_order_status_changed"
            ),
            "{}: {text}",
            h.label()
        );
        assert!(text.contains("-> new: planned"), "{}: {text}", h.label());
        assert!(
            text.contains("-> already in the outbox"),
            "{}: {text}",
            h.label()
        );
        assert!(
            text.contains("alert by pending_over_7_days"),
            "{}: {text}",
            h.label()
        );
        // The third order met the cap: its trace says so.
        let third = nightdesk::daemon::explain(
            store,
            nightdesk::model::SalesChannel::Amazon,
            "113-0000003-0000003",
        )
        .await;
        let text = third.map(|t| t.render()).unwrap_or_default();
        assert!(
            text.contains("-> held: daily cap of 2 alert actions reached (all rules together)"),
            "{}: {text}",
            h.label()
        );
        assert!(
            text.contains(": held after 0 attempt(s)"),
            "{}: {text}",
            h.label()
        );
    }
}

#[tokio::test]
async fn a_named_schedule_calls_on_schedule_and_its_actions_follow_the_usual_keys() {
    for mut h in harnesses(&three_long_pending()).await {
        h.config_text = format!("schedules:\n  morning: \"0 8 * * *\"\n{}", h.config_text);
        h.write_rule("morning_note", "fn on_schedule(name) { if name == \"morning\" { alert(\"ops\", \"Good morning: nightdesk is running.\", #{ once_per: \"day\" }); } }");
        let daemon = h.daemon();
        assert_eq!(daemon.config().schedules.len(), 1, "{}", h.label());
        assert_eq!(
            daemon.fire_schedule("morning").await.ok(),
            Some(1),
            "{}",
            h.label()
        );
        assert_eq!(
            daemon.fire_schedule("morning").await.ok(),
            Some(0),
            "{}: once per day",
            h.label()
        );
        h.clock.advance(chrono::Duration::days(1));
        assert_eq!(
            daemon.fire_schedule("morning").await.ok(),
            Some(1),
            "{}: again the next day",
            h.label()
        );
        assert_eq!(
            daemon.fire_schedule("evening").await.ok(),
            Some(0),
            "{}",
            h.label()
        );
        assert!(daemon.execute_due(&|| false).await.is_ok());
        let texts = h.slack_texts();
        assert_eq!(
            texts
                .iter()
                .filter(|t| t.starts_with("Good morning"))
                .count(),
            2,
            "{}: {texts:?}",
            h.label()
        );
    }
}

#[tokio::test]
async fn a_template_that_breaks_the_policy_is_not_swapped_in() {
    for h in harnesses(&three_long_pending()).await {
        let templates = h.rules_dir().join("templates");
        assert!(std::fs::create_dir_all(&templates).is_ok());
        assert!(
            std::fs::write(
                templates.join("note.en.txt"),
                "Order {{ order.id }} is on its way.\n"
            )
            .is_ok()
        );
        let daemon = h.daemon();
        assert_eq!(daemon.templates().names(), vec!["note"], "{}", h.label());
        assert!(
            std::fs::write(
                templates.join("note.en.txt"),
                "Order {{ order.id }}: 20% off your next order with code SAVE20!\n"
            )
            .is_ok()
        );
        let problems = daemon.reload_rules().await.err().unwrap_or_default();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("note.en.txt:1") && p.contains("(marketing)")),
            "{}: {problems:?}",
            h.label()
        );
        // The last good template stays in force.
        let kept = daemon.templates().render(
            "note",
            "en",
            &serde_json::json!({ "order": { "id": "113-0000001-0000001" } }),
        );
        assert_eq!(
            kept.map(|r| r.text).ok().as_deref(),
            Some("Order 113-0000001-0000001 is on its way."),
            "{}",
            h.label()
        );
    }
}
