//! Actions against the sandbox: order feeds, buyer messages, approvals, failures that
//! are alerted, alert grouping and quiet hours, the morning summary, the chat kinds, and
//! two executors over one PostgreSQL outbox. Each runs on every store backend.

mod common;

use nightdesk::clock::Clock;

use chrono::Duration;
use common::{Harness, harnesses};
use nightdesk::daemon::Daemon;
use nightdesk::model::{ActionRequest, PlannedAction, SalesChannel, Subject};
use nightdesk::sandbox::{DEFAULT_WEBHOOK_SECRET, Fault, default_scenario};
use nightdesk::store::OutboxRow;

/// The harness config plus what actions need: the merchant token, a refund limit, an
/// approval token, fast feed polling, and one channel of every HTTP kind.
fn config(extra_ops: &str, extra: &str) -> String {
    common::CONFIG
        .replace(
            "      page_size: 10\n",
            "      page_size: 10\n      seller_id: A2TESTSELLER\n",
        )
        .replace(
            "    group_window_seconds: 0\n",
            &format!("    group_window_seconds: 0\n{extra_ops}"),
        )
        + "  teams:\n    type: teams\n    webhook_url: env:T_TEAMS\n    group_window_seconds: 0\n"
        + "  discord:\n    type: discord\n    webhook_url: env:T_DISCORD\n    group_window_seconds: 0\n"
        + "  gchat:\n    type: google_chat\n    webhook_url: env:T_GCHAT\n    group_window_seconds: 0\n"
        + "  hook:\n    type: webhook\n    url: env:T_HOOK\n    signing_secret: env:T_HOOK_SECRET\n    group_window_seconds: 0\n"
        + "approvals:\n  refund_above: 15\n  token: env:T_APPROVAL\n"
        + "executor:\n  feed_poll_seconds: 1\n"
        + extra
}

const APPROVAL_TOKEN: &str = "approve-me-canary-7731";

fn daemon(h: &Harness, text: &str) -> Daemon {
    let path = h.dir.path().join("nightdesk.yaml");
    let h_config = match nightdesk::config::Config::from_str(text, &path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let base = h.sandbox.base_url();
    let secrets = h
        .secrets()
        .with_override("T_TEAMS", format!("{base}/hooks/teams/workflows/abc"))
        .with_override(
            "T_DISCORD",
            format!("{base}/hooks/discord/api/webhooks/1/x"),
        )
        .with_override(
            "T_GCHAT",
            format!("{base}/hooks/google_chat/v1/spaces/A/messages"),
        )
        .with_override("T_HOOK", format!("{base}/hooks/webhook/nightdesk"))
        .with_override("T_HOOK_SECRET", DEFAULT_WEBHOOK_SECRET.to_owned())
        .with_override("T_APPROVAL", APPROVAL_TOKEN.to_owned());
    h.daemon_with(h_config, secrets)
}

fn action(rule: &str, order: &str, request: ActionRequest, key: &str) -> PlannedAction {
    PlannedAction {
        rule: rule.into(),
        rule_version: "test".into(),
        subject: Subject::order(SalesChannel::Amazon, order),
        request,
        idempotency_key: key.into(),
        hold: None,
        dry_run: false,
    }
}

fn alert(rule: &str, channel: &str, subject: &str, text: &str) -> PlannedAction {
    PlannedAction {
        rule: rule.into(),
        rule_version: "test".into(),
        subject: Subject::named("test", subject),
        request: ActionRequest::Alert {
            channel: channel.into(),
            text: text.into(),
        },
        idempotency_key: format!("{rule}|{subject}"),
        hold: None,
        dry_run: false,
    }
}

async fn plan(h: &Harness, actions: &[PlannedAction]) {
    if let Err(e) = h.store.store.plan(None, actions, h.clock.now()).await {
        panic!("{}: plan: {e}", h.label());
    }
}

async fn execute(h: &Harness, d: &Daemon) -> nightdesk::outbox::ExecutorReport {
    match d.execute_due(&|| false).await {
        Ok(r) => r,
        Err(e) => panic!("{}: execute: {e}", h.label()),
    }
}

async fn row(h: &Harness, key: &str) -> OutboxRow {
    let rows = match h.store.store.outbox().await {
        Ok(rows) => rows,
        Err(e) => panic!("{e}"),
    };
    match rows.into_iter().find(|r| r.idempotency_key == key) {
        Some(r) => r,
        None => panic!("{}: no outbox row {key}", h.label()),
    }
}

/// Poll the sandbox once so the orders are in the store.
async fn poll(h: &Harness, d: &Daemon) {
    if let Err(e) = d.run_cycle().await {
        panic!("{}: cycle: {e}", h.label());
    }
}

fn cancel(order: &str) -> ActionRequest {
    ActionRequest::Cancel {
        order: order.into(),
        reason: "BuyerCanceled".into(),
    }
}

const UNSHIPPED_BUYER_CANCEL: &str = "113-9051847-2268310";
const UNSHIPPED: &str = "114-6620917-4471508";
const PARTLY_SHIPPED: &str = "113-2748105-0936714";
const PENDING: &str = "113-4829301-5520617";

#[tokio::test]
async fn a_cancellation_goes_out_as_one_feed_and_the_order_is_cancelled() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        let d = daemon(&h, &config("", ""));
        poll(&h, &d).await;
        plan(
            &h,
            &[action(
                "t",
                UNSHIPPED_BUYER_CANCEL,
                cancel(UNSHIPPED_BUYER_CANCEL),
                "t|cancel",
            )],
        )
        .await;
        execute(&h, &d).await;
        assert_eq!(
            row(&h, "t|cancel").await.state,
            "planned",
            "{}: waits for the feed",
            h.label()
        );
        assert_eq!(h.sandbox.feeds().len(), 1, "{}", h.label());
        h.clock.advance(Duration::seconds(31));
        execute(&h, &d).await;
        let done = row(&h, "t|cancel").await;
        assert_eq!(done.state, "done", "{}: {done:?}", h.label());
        assert_eq!(h.sandbox.feeds().len(), 1, "{}: one feed only", h.label());
        let order = h
            .sandbox
            .orders()
            .into_iter()
            .find(|o| o.id == UNSHIPPED_BUYER_CANCEL);
        assert_eq!(
            order.map(|o| format!("{:?}", o.status)),
            Some("Canceled".to_owned()),
            "{}",
            h.label()
        );
        let timeline = nightdesk::audit::timeline(
            h.store.store.as_ref(),
            SalesChannel::Amazon,
            UNSHIPPED_BUYER_CANCEL,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let text = timeline.render_text();
        assert!(
            text.contains("cancellation, reason BuyerCanceled"),
            "{text}"
        );
        assert!(text.contains("[done]"), "{text}");
        let html = timeline.render_html().unwrap_or_default();
        assert!(
            html.contains("<table>") && html.contains("BuyerCanceled"),
            "{html}"
        );
    }
}

#[tokio::test]
async fn a_refund_above_the_limit_waits_for_approval_over_http_then_executes() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        h.shipped_templates();
        h.write_rule("cancellation", include_str!("../rules/cancellation.rhai"));
        let d = daemon(&h, &config("", ""));
        poll(&h, &d).await;
        let rows = h.store.store.outbox().await.unwrap_or_default();
        let Some(refund) = rows.iter().find(|r| r.kind == "refund") else {
            panic!("{}: no refund planned: {rows:?}", h.label());
        };
        assert_eq!(refund.state, "held", "{}", h.label());
        assert!(
            refund
                .last_error
                .as_deref()
                .unwrap_or_default()
                .contains("18.99"),
            "{refund:?}"
        );
        let notice = format!("nightdesk approve {}", refund.id);
        assert_eq!(
            common::count(&h.slack_texts(), &notice),
            1,
            "{}: {:?}",
            h.label(),
            h.slack_texts()
        );
        assert!(h.sandbox.refunds(None).is_empty());

        let Some(api) = d.approval_api() else {
            panic!("approval API not configured");
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(nightdesk::server::serve(listener, Some(api), stop.clone()));
        let http = reqwest::Client::new();
        let url = format!("http://{addr}/actions/{}/approve", refund.id);
        let status = |r: Result<reqwest::Response, reqwest::Error>| {
            r.map(|r| r.status().as_u16()).unwrap_or(0)
        };
        assert_eq!(status(http.post(&url).send().await), 401, "no token");
        assert_eq!(
            status(http.post(&url).bearer_auth("wrong").send().await),
            401,
            "wrong token"
        );
        let ok = http
            .post(&url)
            .bearer_auth(APPROVAL_TOKEN)
            .header("x-nightdesk-user", "alice")
            .send()
            .await;
        assert_eq!(status(ok), 200, "{}", h.label());
        assert_eq!(
            status(http.post(&url).bearer_auth(APPROVAL_TOKEN).send().await),
            409,
            "already decided"
        );
        stop.cancel();
        let _ = server.await;

        execute(&h, &d).await;
        h.clock.advance(Duration::seconds(31));
        execute(&h, &d).await;
        let refunds = h.sandbox.refunds(Some(PARTLY_SHIPPED));
        assert_eq!(refunds.len(), 1, "{}", h.label());
        assert_eq!(refunds[0].principal, "18.99");
        assert_eq!(
            refunds[0].tax.as_deref(),
            Some("1.57"),
            "tax refunded with the principal"
        );
        assert_eq!(refunds[0].reason, "CustomerCancel");
        let after = h.store.store.outbox_row(refund.id).await.ok().flatten();
        assert_eq!(
            after.as_ref().map(|r| r.state.as_str()),
            Some("done"),
            "{after:?}"
        );
        assert_eq!(
            after.and_then(|r| r.decided_by),
            Some("alice (http)".to_owned())
        );
        let log = h
            .store
            .store
            .audit_log(Some(refund.subject.as_str()))
            .await
            .unwrap_or_default();
        assert!(
            log.iter()
                .any(|a| a.kind == "approved" && a.detail["by"] == "alice (http)"),
            "{log:?}"
        );
    }
}

#[tokio::test]
async fn a_pending_order_is_never_refunded_and_the_failure_is_alerted() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        let d = daemon(&h, &config("", ""));
        poll(&h, &d).await;
        let refund = ActionRequest::Refund {
            order: PENDING.into(),
            reason: "CustomerCancel".into(),
            items: vec![],
            amount: Some("5.00".into()),
        };
        plan(&h, &[action("t", PENDING, refund, "t|refund")]).await;
        execute(&h, &d).await;
        let failed = row(&h, "t|refund").await;
        assert_eq!(failed.state, "failed", "{}", h.label());
        assert!(
            failed
                .last_error
                .as_deref()
                .unwrap_or_default()
                .contains("Pending"),
            "{failed:?}"
        );
        assert!(h.journal("createFeedDocument").is_empty(), "no call at all");
        execute(&h, &d).await;
        let texts = h.slack_texts();
        assert_eq!(
            common::count(&texts, "failed for good"),
            1,
            "{}: {texts:?}",
            h.label()
        );
    }
}

fn templates(h: &Harness) {
    let dir = h.rules_dir().join("templates");
    let written = std::fs::create_dir_all(&dir).and_then(|_| {
        std::fs::write(
            dir.join("order_check.en.txt"),
            "Hello, we are checking the details of your order {{ order.id }} before it ships.\n",
        )
    });
    if let Err(e) = written {
        panic!("{e}");
    }
}

fn notify(order: &str, message_type: &str) -> ActionRequest {
    ActionRequest::NotifyBuyer {
        order: order.into(),
        message_type: message_type.into(),
        template: "order_check".into(),
    }
}

#[tokio::test]
async fn a_buyer_message_goes_out_once_and_only_as_a_type_amazon_allows() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        templates(&h);
        let d = daemon(&h, &config("", ""));
        poll(&h, &d).await;
        plan(
            &h,
            &[
                action(
                    "t",
                    UNSHIPPED,
                    notify(UNSHIPPED, "confirmOrderDetails"),
                    "t|ok",
                ),
                action(
                    "t",
                    UNSHIPPED,
                    notify(UNSHIPPED, "confirmDeliveryDetails"),
                    "t|no",
                ),
            ],
        )
        .await;
        execute(&h, &d).await;
        assert_eq!(row(&h, "t|ok").await.state, "done", "{}", h.label());
        let refused = row(&h, "t|no").await;
        assert_eq!(refused.state, "failed", "{}", h.label());
        assert!(
            refused
                .last_error
                .unwrap_or_default()
                .contains("does not allow")
        );
        let sent = h.sandbox.messages(Some(UNSHIPPED));
        assert_eq!(sent.len(), 1, "{}", h.label());
        assert_eq!(sent[0].message_type, "confirmOrderDetails");
        assert!(sent[0].text.contains(UNSHIPPED), "{}", sent[0].text);
        assert_eq!(h.journal("getMessagingActionsForOrder").len(), 2);
    }
}

#[tokio::test]
async fn an_unclear_send_becomes_unknown_is_alerted_and_is_never_resent() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        templates(&h);
        let d = daemon(&h, &config("", ""));
        poll(&h, &d).await;
        // Amazon sends the message, then the answer is a 500.
        h.sandbox.inject(
            Fault::status("createConfirmOrderDetails", 500)
                .after_effect()
                .times(1),
        );
        plan(
            &h,
            &[action(
                "t",
                UNSHIPPED,
                notify(UNSHIPPED, "confirmOrderDetails"),
                "t|msg",
            )],
        )
        .await;
        execute(&h, &d).await;
        let unknown = row(&h, "t|msg").await;
        assert_eq!(unknown.state, "unknown", "{}: {unknown:?}", h.label());
        h.clock.advance(Duration::hours(2));
        execute(&h, &d).await;
        assert_eq!(
            h.sandbox.messages(Some(UNSHIPPED)).len(),
            1,
            "{}",
            h.label()
        );
        assert_eq!(
            h.journal("createConfirmOrderDetails").len(),
            1,
            "never resent"
        );
        let texts = h.slack_texts();
        let alerted = common::count(&texts, "may or may not have happened");
        assert_eq!(alerted, 1, "{}: {texts:?}", h.label());
        assert!(
            texts
                .iter()
                .any(|t| t.contains(&format!("nightdesk approve {}", unknown.id)))
        );
    }
}

#[tokio::test]
async fn a_permanent_4xx_is_not_retried_and_is_alerted() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        templates(&h);
        let d = daemon(&h, &config("", ""));
        poll(&h, &d).await;
        h.sandbox
            .inject(Fault::status("createConfirmOrderDetails", 400).times(1));
        plan(
            &h,
            &[action(
                "t",
                UNSHIPPED,
                notify(UNSHIPPED, "confirmOrderDetails"),
                "t|msg",
            )],
        )
        .await;
        execute(&h, &d).await;
        h.clock.advance(Duration::hours(2));
        execute(&h, &d).await;
        assert_eq!(row(&h, "t|msg").await.state, "failed", "{}", h.label());
        assert_eq!(
            h.journal("createConfirmOrderDetails").len(),
            1,
            "{}",
            h.label()
        );
        assert_eq!(
            common::count(&h.slack_texts(), "failed for good"),
            1,
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn a_long_outage_follows_the_retry_schedule_then_fails_and_alerts() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        let d = daemon(&h, &config("", ""));
        // Teams is down all day; the failure is reported on the ops channel (Slack).
        h.sandbox
            .inject(Fault::status("chat.teams", 503).times(10_000));
        plan(&h, &[alert("t", "teams", "down", "teams is down")]).await;
        let start = h.clock.now();
        let mut attempts_at = Vec::new();
        for _ in 0..30 {
            let report = execute(&h, &d).await;
            if report.retry + report.failed > 0 {
                attempts_at.push(h.clock.now());
            }
            if report.failed > 0 {
                break;
            }
            match h.store.store.next_due().await {
                Ok(Some(at)) if at > h.clock.now() => h.clock.set(at),
                _ => h.clock.advance(Duration::seconds(1)),
            }
        }
        let failed = row(&h, "t|down").await;
        assert_eq!(failed.state, "failed", "{}: {failed:?}", h.label());
        assert_eq!(failed.attempts, 10, "{}", h.label());
        assert_eq!(h.journal("chat.teams").len(), 10, "one request per attempt");
        assert_eq!(attempts_at.len(), 10, "{}", h.label());
        let gaps: Vec<i64> = attempts_at
            .windows(2)
            .map(|w| (w[1] - w[0]).num_seconds())
            .collect();
        // attempt⁴ s ±10 %, capped at an hour.
        let below_cap: Vec<i64> = gaps.iter().copied().filter(|g| *g < 3000).collect();
        assert!(
            below_cap.windows(2).all(|g| g[1] > g[0]),
            "backoff grows: {gaps:?}"
        );
        assert!(
            gaps.iter().all(|g| *g <= 3961),
            "capped at an hour: {gaps:?}"
        );
        assert!(
            h.clock.now() - start < Duration::hours(24),
            "whole schedule inside a day"
        );
        execute(&h, &d).await;
        assert_eq!(
            common::count(&h.slack_texts(), "gave up after 10 attempts"),
            1,
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn five_hundred_alerts_against_a_throttling_slack_become_a_few_grouped_messages() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        let text = config("", "").replace(
            "    group_window_seconds: 0\n  teams:",
            "    group_window_seconds: 60\n  teams:",
        );
        let d = daemon(&h, &text);
        h.sandbox
            .inject(Fault::status("chat.slack", 429).retry_after(20).times(2));
        for i in 0..500 {
            plan(
                &h,
                &[alert(
                    "flood",
                    "ops",
                    &format!("s{i}"),
                    &format!("problem {i}"),
                )],
            )
            .await;
            if i % 25 == 24 {
                execute(&h, &d).await;
                h.clock.advance(Duration::seconds(3));
            }
        }
        for _ in 0..40 {
            execute(&h, &d).await;
            h.clock.advance(Duration::seconds(10));
        }
        let rows = h.store.store.outbox().await.unwrap_or_default();
        let done = rows
            .iter()
            .filter(|r| r.rule == "flood" && r.state == "done")
            .count();
        assert_eq!(done, 500, "{}", h.label());
        let requests = h.journal("chat.slack");
        assert!(
            requests.len() <= 8,
            "{}: {} Slack requests",
            h.label(),
            requests.len()
        );
        // After each 429, the next request waited its Retry-After.
        for pair in requests.windows(2) {
            if pair[0].status == 429 {
                assert!(
                    pair[1].at - pair[0].at >= Duration::seconds(20),
                    "{:?}",
                    (pair[0].at, pair[1].at)
                );
            }
        }
        let counted: usize = h
            .sandbox
            .chat_posts("slack")
            .iter()
            .map(|p| {
                let text = p["text"].as_str().unwrap_or_default();
                text.split(" alerts from rule flood")
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1)
            })
            .sum();
        assert_eq!(
            counted,
            500,
            "{}: every alert is counted in a message",
            h.label()
        );
    }
}

#[tokio::test]
async fn quiet_hours_hold_alerts_until_they_end() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        let quiet = "    quiet_hours: { from: \"11:00\", to: \"13:30\", timezone: UTC }\n";
        let d = daemon(&h, &config(quiet, ""));
        plan(&h, &[alert("r", "ops", "a", "at noon")]).await;
        execute(&h, &d).await;
        assert!(h.slack_texts().is_empty(), "{}: quiet at 12:00", h.label());
        h.clock.advance(Duration::minutes(89));
        execute(&h, &d).await;
        assert!(
            h.slack_texts().is_empty(),
            "{}: still quiet at 13:29",
            h.label()
        );
        h.clock.advance(Duration::minutes(2));
        execute(&h, &d).await;
        assert_eq!(
            common::count(&h.slack_texts(), "at noon"),
            1,
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn the_morning_summary_lists_held_actions_and_sources_that_stopped() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        h.shipped_templates();
        h.write_rule("cancellation", include_str!("../rules/cancellation.rhai"));
        let d = daemon(&h, &config("", "summary:\n  schedule: \"0 7 * * *\"\n"));
        poll(&h, &d).await;
        h.clock.advance(Duration::hours(3));
        assert_eq!(d.send_summary().await.ok(), Some(true), "{}", h.label());
        assert_eq!(d.send_summary().await.ok(), Some(false), "once a day");
        execute(&h, &d).await;
        let texts = h.slack_texts();
        let Some(summary) = texts.iter().find(|t| t.contains("morning summary")) else {
            panic!("{}: no summary in {texts:?}", h.label());
        };
        assert!(summary.contains("Waiting for approval (1)"), "{summary}");
        assert!(summary.contains("nightdesk approve"), "{summary}");
        assert!(summary.contains("cancellation refund: 1 held"), "{summary}");
        assert!(
            summary.contains("amazon/test: last successful poll"),
            "{summary}"
        );
    }
}

#[tokio::test]
async fn every_chat_kind_receives_its_alerts() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        let d = daemon(&h, &config("", ""));
        for channel in ["teams", "discord", "gchat", "hook"] {
            plan(
                &h,
                &[alert("r", channel, channel, &format!("hello {channel}"))],
            )
            .await;
        }
        let report = execute(&h, &d).await;
        assert_eq!(report.done, 4, "{}: {report:?}", h.label());
        for kind in ["teams", "discord", "google_chat", "webhook"] {
            assert_eq!(h.sandbox.chat_posts(kind).len(), 1, "{}: {kind}", h.label());
        }
        let effects = h.sandbox.webhook_effects();
        assert_eq!(effects.len(), 1, "{}", h.label());
        assert_eq!(effects[0].0, "r|hook", "the idempotency key travels");
    }
}

#[tokio::test]
async fn two_executors_on_postgres_perform_every_action_exactly_once() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        if h.label() != "postgres" {
            continue;
        }
        let (a, b) = (daemon(&h, &config("", "")), daemon(&h, &config("", "")));
        let actions: Vec<PlannedAction> = (0..60)
            .map(|i| alert("many", "hook", &format!("n{i}"), &format!("n{i}")))
            .collect();
        plan(&h, &actions).await;
        let (ra, rb) = tokio::join!(a.execute_due(&|| false), b.execute_due(&|| false));
        let (ra, rb) = (ra.unwrap_or_default(), rb.unwrap_or_default());
        assert_eq!(ra.done + rb.done, 60, "{ra:?} {rb:?}");
        let requests = h.journal("chat.webhook");
        assert_eq!(
            requests.len(),
            60,
            "every action performed once, none twice"
        );
        assert_eq!(h.sandbox.webhook_effects().len(), 60);
    }
}

/// Shutting down between actions: the one started is finished, the rest of the claimed
/// batch goes back to `planned` at once (not counted as an attempt) instead of waiting
/// out its lease, and the next pass performs it.
#[tokio::test]
async fn a_stop_between_actions_gives_the_unstarted_claims_back() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        let d = daemon(&h, &config("", ""));
        let actions: Vec<PlannedAction> = (0..5)
            .map(|i| {
                let tag = ActionRequest::Tag {
                    name: format!("s{i}"),
                };
                action("many", "113-4829301-5520617", tag, &format!("s{i}"))
            })
            .collect();
        plan(&h, &actions).await;
        // Asked once before claiming and once before each action: stop after the first.
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let stop = || asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 2;
        let report = match d.execute_due(&stop).await {
            Ok(r) => r,
            Err(e) => panic!("{}: {e}", h.label()),
        };
        assert_eq!(report.done, 1, "{}: {report:?}", h.label());
        let rows = match h.store.store.outbox().await {
            Ok(rows) => rows,
            Err(e) => panic!("{e}"),
        };
        let planned: Vec<i64> = rows
            .iter()
            .filter(|r| r.state == "planned")
            .map(|r| r.attempts)
            .collect();
        assert_eq!(planned, vec![0, 0, 0, 0], "{}: {rows:?}", h.label());
        let report = execute(&h, &d).await;
        assert_eq!(report.done, 4, "{}: {report:?}", h.label());
    }
}

/// A template that greets the buyer by name gets it through a Restricted Data Token,
/// for that message only; one that does not never asks for one.
#[tokio::test]
async fn a_template_that_reads_the_buyer_fetches_it_with_a_restricted_data_token() {
    let scenario = default_scenario().unwrap_or_else(|e| panic!("{e}"));
    for h in harnesses(&scenario).await {
        templates(&h);
        let written = std::fs::write(
            h.rules_dir().join("templates").join("greeting.en.txt"),
            "{% if buyer %}Hello {{ buyer.first_name }}, w{% else %}W{% endif %}e are checking your order {{ order.id }}.\n",
        );
        if let Err(e) = written {
            panic!("{e}");
        }
        let d = daemon(&h, &config("", ""));
        poll(&h, &d).await;
        let greeting = ActionRequest::NotifyBuyer {
            order: UNSHIPPED.into(),
            message_type: "confirmOrderDetails".into(),
            template: "greeting".into(),
        };
        plan(
            &h,
            &[action(
                "t",
                UNSHIPPED,
                notify(UNSHIPPED, "confirmOrderDetails"),
                "t|plain",
            )],
        )
        .await;
        execute(&h, &d).await;
        assert_eq!(
            h.sandbox.restricted_tokens_issued(),
            0,
            "{}: not for a plain template",
            h.label()
        );
        plan(&h, &[action("t", UNSHIPPED, greeting, "t|greeting")]).await;
        execute(&h, &d).await;
        assert_eq!(row(&h, "t|greeting").await.state, "done", "{}", h.label());
        assert_eq!(h.sandbox.restricted_tokens_issued(), 1, "{}", h.label());
        let Some(buyer) = h
            .sandbox
            .orders()
            .into_iter()
            .find(|o| o.id == UNSHIPPED)
            .map(|o| o.buyer_name())
        else {
            panic!("no order {UNSHIPPED}")
        };
        let first = buyer
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let sent = h.sandbox.messages(Some(UNSHIPPED));
        assert_eq!(sent.len(), 2, "{}", h.label());
        assert!(
            sent[1].text.starts_with(&format!("Hello {first}, we")),
            "{}",
            sent[1].text
        );
        // The name reaches the buyer's message and nothing of nightdesk's own records.
        let audit = h.store.store.audit_log(None).await.unwrap_or_default();
        assert!(
            audit.iter().all(|e| !format!("{e:?}").contains(&buyer)),
            "{}",
            h.label()
        );
        let row = row(&h, "t|greeting").await;
        assert!(!format!("{row:?}").contains(&buyer), "{}", h.label());
    }
}
