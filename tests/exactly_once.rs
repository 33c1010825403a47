//! Crash points (the `fail` crate; `cargo test --features failpoints`): a crash before
//! the send, after the upstream accepted but before the result was recorded, and a
//! lease that expires under a live worker. Each checks the effects the sandbox saw.
#![cfg(feature = "failpoints")]

mod common;

use chrono::Duration;
use common::{Harness, harnesses};
use nightdesk::clock::Clock;
use nightdesk::daemon::Daemon;
use nightdesk::model::{ActionRequest, PlannedAction, SalesChannel, Subject};
use nightdesk::outbox::ExecutorError;
use nightdesk::sandbox::{DEFAULT_WEBHOOK_SECRET, default_scenario};
use nightdesk::store::{Outcome, StoreError};

/// Past the default five-minute lease.
const AFTER_LEASE: i64 = 301;

fn daemon(h: &Harness) -> Daemon {
    let text = common::CONFIG.replace(
        "      page_size: 10\n",
        "      page_size: 10\n      seller_id: A2TESTSELLER\n",
    ) + "  hook:\n    type: webhook\n    url: env:T_HOOK\n    signing_secret: env:T_HOOK_SECRET\n    group_window_seconds: 0\n"
        + "executor:\n  feed_poll_seconds: 1\n";
    let path = h.dir.path().join("nightdesk.yaml");
    let config = match nightdesk::config::Config::from_str(&text, &path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let base = h.sandbox.base_url();
    let secrets = h
        .secrets()
        .with_override("T_HOOK", format!("{base}/hooks/webhook/nightdesk"))
        .with_override("T_HOOK_SECRET", DEFAULT_WEBHOOK_SECRET.to_owned());
    h.daemon_with(config, secrets)
}

fn planned(rule: &str, subject: Subject, request: ActionRequest, key: &str) -> PlannedAction {
    PlannedAction {
        rule: rule.into(),
        rule_version: "test".into(),
        subject,
        request,
        idempotency_key: key.into(),
        hold: None,
        dry_run: false,
    }
}

async fn plan(h: &Harness, action: PlannedAction) {
    if let Err(e) = h.store.store.plan(None, &[action], h.clock.now()).await {
        panic!("{e}");
    }
}

async fn state(h: &Harness, key: &str) -> String {
    let rows = h.store.store.outbox().await.unwrap_or_default();
    rows.into_iter()
        .find(|r| r.idempotency_key == key)
        .map(|r| r.state)
        .unwrap_or_default()
}

fn crashed(result: Result<nightdesk::outbox::ExecutorReport, ExecutorError>) -> bool {
    matches!(result, Err(ExecutorError::Crashed(_)))
}

fn set(name: &str, action: &str) {
    if let Err(e) = fail::cfg(name, action) {
        panic!("failpoint {name}: {e}");
    }
}

#[tokio::test]
async fn a_crash_before_the_send_sends_exactly_once_after_the_restart() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        let fp = fail::FailScenario::setup();
        let alert = ActionRequest::Alert {
            channel: "ops".into(),
            text: "once only".into(),
        };
        plan(&h, planned("r", Subject::named("t", "a"), alert, "r|a")).await;
        set("outbox.before_send", "return");
        assert!(
            crashed(daemon(&h).execute_due(&|| false).await),
            "{}",
            h.label()
        );
        fail::remove("outbox.before_send");
        // The restarted daemon waits for the dead worker's lease, then sends.
        let restarted = daemon(&h);
        assert!(restarted.execute_due(&|| false).await.is_ok());
        assert!(
            h.slack_texts().is_empty(),
            "{}: lease still held",
            h.label()
        );
        h.clock.advance(Duration::seconds(AFTER_LEASE));
        assert!(restarted.execute_due(&|| false).await.is_ok());
        assert_eq!(
            common::count(&h.slack_texts(), "once only"),
            1,
            "{}",
            h.label()
        );
        assert_eq!(state(&h, "r|a").await, "done");
        fp.teardown();
    }
}

#[tokio::test]
async fn a_crash_after_an_idempotent_send_repeats_the_request_but_not_the_effect() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        let fp = fail::FailScenario::setup();
        let alert = ActionRequest::Alert {
            channel: "hook".into(),
            text: "signed".into(),
        };
        plan(&h, planned("r", Subject::named("t", "w"), alert, "r|w")).await;
        set("outbox.after_send", "return");
        assert!(
            crashed(daemon(&h).execute_due(&|| false).await),
            "{}",
            h.label()
        );
        fail::remove("outbox.after_send");
        h.clock.advance(Duration::seconds(AFTER_LEASE));
        assert!(daemon(&h).execute_due(&|| false).await.is_ok());
        assert_eq!(
            h.journal("chat.webhook").len(),
            2,
            "{}: sent again with the same key",
            h.label()
        );
        assert_eq!(
            h.sandbox.webhook_effects().len(),
            1,
            "{}: one effect",
            h.label()
        );
        assert_eq!(state(&h, "r|w").await, "done");
        fp.teardown();
    }
}

#[tokio::test]
async fn a_crash_after_amazon_accepted_a_feed_reads_it_back_instead_of_sending_another() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        let fp = fail::FailScenario::setup();
        let d = daemon(&h);
        assert!(d.run_cycle().await.is_ok());
        let order = "113-9051847-2268310";
        let cancel = ActionRequest::Cancel {
            order: order.into(),
            reason: "BuyerCanceled".into(),
        };
        plan(
            &h,
            planned(
                "r",
                Subject::order(SalesChannel::Amazon, order),
                cancel,
                "r|c",
            ),
        )
        .await;
        set("feeds.after_create_feed", "return");
        assert!(crashed(d.execute_due(&|| false).await), "{}", h.label());
        fail::remove("feeds.after_create_feed");
        assert_eq!(h.sandbox.feeds().len(), 1);
        h.clock.advance(Duration::seconds(AFTER_LEASE));
        let restarted = daemon(&h);
        for _ in 0..3 {
            assert!(restarted.execute_due(&|| false).await.is_ok());
            h.clock.advance(Duration::seconds(2));
        }
        assert_eq!(state(&h, "r|c").await, "done", "{}", h.label());
        assert_eq!(h.sandbox.feeds().len(), 1, "{}: no second feed", h.label());
        assert_eq!(h.journal("createFeed").len(), 1, "{}", h.label());
        assert_eq!(
            h.journal("getFeeds").len(),
            1,
            "{}: read back once",
            h.label()
        );
        fp.teardown();
    }
}

#[tokio::test]
async fn a_crash_after_a_buyer_message_was_sent_makes_it_unknown_and_alerted_never_resent() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        let fp = fail::FailScenario::setup();
        let dir = h.rules_dir().join("templates");
        let written = std::fs::create_dir_all(&dir).and_then(|_| {
            std::fs::write(
                dir.join("check.en.txt"),
                "We are checking order {{ order.id }} before it ships.\n",
            )
        });
        assert!(written.is_ok());
        let d = daemon(&h);
        assert!(d.run_cycle().await.is_ok());
        let order = "114-6620917-4471508";
        let message = ActionRequest::NotifyBuyer {
            order: order.into(),
            message_type: "confirmOrderDetails".into(),
            template: "check".into(),
        };
        plan(
            &h,
            planned(
                "r",
                Subject::order(SalesChannel::Amazon, order),
                message,
                "r|m",
            ),
        )
        .await;
        set("outbox.after_send", "return");
        assert!(crashed(d.execute_due(&|| false).await), "{}", h.label());
        fail::remove("outbox.after_send");
        h.clock.advance(Duration::seconds(AFTER_LEASE));
        let restarted = daemon(&h);
        assert!(restarted.execute_due(&|| false).await.is_ok());
        assert_eq!(state(&h, "r|m").await, "unknown", "{}", h.label());
        assert!(restarted.execute_due(&|| false).await.is_ok());
        assert_eq!(
            h.sandbox.messages(Some(order)).len(),
            1,
            "{}: never resent",
            h.label()
        );
        assert_eq!(
            common::count(&h.slack_texts(), "may or may not have happened"),
            1,
            "{}",
            h.label()
        );
        fp.teardown();
    }
}

#[tokio::test]
async fn a_lease_that_expires_under_a_live_worker_gives_one_effect_and_rejects_its_completion() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        // No failpoint here, but the scenario lock keeps the other tests' failpoints
        // (process-wide under `cargo test`) away from this one.
        let fp = fail::FailScenario::setup();
        let alert = ActionRequest::Alert {
            channel: "ops".into(),
            text: "slow worker".into(),
        };
        plan(&h, planned("r", Subject::named("t", "s"), alert, "r|s")).await;
        let store = &h.store.store;
        let slow = store
            .claim_due("slow-worker", h.clock.now(), Duration::seconds(300), 16)
            .await
            .unwrap_or_default();
        assert_eq!(slow.len(), 1);
        h.clock.advance(Duration::seconds(AFTER_LEASE));
        assert!(daemon(&h).execute_due(&|| false).await.is_ok());
        let late = store
            .finish(
                &slow[0],
                &Outcome::Done {
                    detail: serde_json::json!({}),
                },
                h.clock.now(),
            )
            .await;
        assert!(
            matches!(late, Err(StoreError::StaleLease(_))),
            "{}: {late:?}",
            h.label()
        );
        assert_eq!(
            common::count(&h.slack_texts(), "slow worker"),
            1,
            "{}",
            h.label()
        );
        assert_eq!(state(&h, "r|s").await, "done");
        fp.teardown();
    }
}
