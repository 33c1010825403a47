//! Seeing nightdesk run: `/metrics` after a real cycle against the sandbox (checked by
//! `promtool check metrics` and asserted on by name), `/readyz` ready and not, and
//! `nightdesk status` on a store a daemon filled; on every store backend available.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use chrono::{Duration, Utc};
use common::{Harness, harnesses, t0};
use nightdesk::clock::Clock;
use nightdesk::daemon::{Daemon, DaemonOptions};
use nightdesk::http::RetryPolicy;
use nightdesk::model::{
    ActionRequest, BuyerMessage, MailHeaders, PlannedAction, SalesChannel, Subject,
};
use nightdesk::sandbox::{Fault, Scenario};
use nightdesk::server::{self, Served};
use nightdesk::store::{SqliteStore, Store};
use tokio_util::sync::CancellationToken;

/// A rule that never finishes: stopped at its limit and quarantined at once.
const RUNAWAY: &str = "fn on_order_sweep(order) { loop {} }";

fn scenario() -> Scenario {
    match nightdesk::sandbox::default_scenario() {
        Ok(s) => s,
        Err(e) => panic!("default scenario: {e}"),
    }
}

/// The endpoint of `served` on loopback; cancel the token to stop it.
async fn start_server(served: impl Into<Served>) -> (String, CancellationToken) {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => panic!("local addr: {e}"),
    };
    let stop = CancellationToken::new();
    tokio::spawn(server::serve(listener, served.into(), stop.clone()));
    (format!("http://{addr}"), stop)
}

async fn get(url: &str) -> (u16, String) {
    let response = match reqwest::get(url).await {
        Ok(r) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = response.status().as_u16();
    match response.text().await {
        Ok(body) => (status, body),
        Err(e) => panic!("GET {url} body: {e}"),
    }
}

async fn cycle(daemon: &Daemon, label: &str) {
    if let Err(e) = daemon.run_cycle().await {
        panic!("{label}: cycle failed: {e}");
    }
}

/// An unanswered buyer message that may be answered: its 24-hour clock runs.
fn buyer_message(id: &str) -> BuyerMessage {
    BuyerMessage {
        id: id.into(),
        channel: SalesChannel::Amazon,
        account: "test".into(),
        marketplace_id: Some("ATVPDKIKX0DER".into()),
        from: "buyer@marketplace.amazon.com".into(),
        subject: "Where is my order?".into(),
        body: "It has not arrived.".into(),
        received_at: t0() - Duration::hours(3),
        order_id: None,
        tracking_number: None,
        language: Some("en".into()),
        intent: None,
        answered: false,
        mail: MailHeaders {
            mailbox: "maildir:/mail".into(),
            from_name: None,
            message_id: Some(format!("{id}@mail.example")),
            references: Vec::new(),
            reply_to: None,
            do_not_answer: None,
            attachments: Vec::new(),
        },
    }
}

/// A refund waiting for a person's approval.
fn held_refund() -> PlannedAction {
    PlannedAction {
        rule: "refunds".into(),
        rule_version: "v1".into(),
        subject: Subject::named("order", "amazon:113-0000000-0000001"),
        request: ActionRequest::Alert {
            channel: "ops".into(),
            text: "refund waiting".into(),
        },
        idempotency_key: "held-refund".into(),
        hold: Some("above the approval limit".into()),
        dry_run: false,
    }
}

/// `promtool check metrics` on `body`: `Some(problems)` when it objects, `None` when it
/// passes. Missing promtool skips (with a note) unless NIGHTDESK_REQUIRE_PROMTOOL is set.
fn promtool_check(body: &str) -> Option<String> {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var_os("NIGHTDESK_REQUIRE_PROMTOOL").is_some() {
                panic!("promtool is required (NIGHTDESK_REQUIRE_PROMTOOL) but not installed");
            }
            eprintln!("note: promtool not installed; the /metrics format check is skipped");
            return None;
        }
        Err(e) => panic!("promtool: {e}"),
    };
    if let Some(mut stdin) = child.stdin.take()
        && let Err(e) = stdin.write_all(body.as_bytes())
    {
        panic!("promtool stdin: {e}");
    }
    let output = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => panic!("promtool: {e}"),
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && said.trim().is_empty() {
        None
    } else {
        Some(said)
    }
}

/// The value of the sample whose line starts with `series` (name and labels as
/// rendered), if there is one.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The names of the metrics a scrape describes (`# TYPE <name> <type>`).
fn described(body: &str) -> Vec<&str> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect()
}

#[tokio::test]
async fn metrics_after_a_cycle_pass_promtool_and_name_what_they_measure() {
    for h in harnesses(&scenario()).await {
        let label = h.label();
        h.write_rule("a_runaway", RUNAWAY);
        // One throttled listAllFulfillmentOrders (called once a poll, paced at 2/s, so
        // the wait after the 429 is short): the quota metrics see it.
        h.sandbox
            .inject(Fault::status("listAllFulfillmentOrders", 429).retry_after(0));
        let daemon = Arc::new(h.daemon());
        let (base, stop) = start_server(daemon.clone()).await;
        cycle(&daemon, label).await;
        let report = h
            .store
            .store
            .store_mail("maildir:/mail", &[buyer_message("m1")], "{}", t0())
            .await;
        if let Err(e) = report {
            panic!("{label}: storing mail: {e}");
        }

        let (status, body) = get(&format!("{base}/metrics")).await;
        stop.cancel();
        assert_eq!(status, 200, "{label}: {body}");
        if let Some(problems) = promtool_check(&body) {
            panic!("{label}: promtool check metrics objects:\n{problems}\n---\n{body}");
        }
        let names = described(&body);
        for name in [
            "nightdesk_polls_total",
            "nightdesk_orders_stored_total",
            "nightdesk_outbox_actions",
            "nightdesk_outbox_oldest_age_seconds",
            "nightdesk_source_last_success_timestamp_seconds",
            "nightdesk_source_last_success_age_seconds",
            "nightdesk_source_watermark_lag_seconds",
            "nightdesk_source_ready",
            "nightdesk_leases_held",
            "nightdesk_upstream_calls_total",
            "nightdesk_upstream_throttled_total",
            "nightdesk_upstream_quota_rate_per_second",
            "nightdesk_actions_planned_total",
            "nightdesk_action_attempts_total",
            "nightdesk_rule_errors_total",
            "nightdesk_rule_quarantines_total",
            "nightdesk_rules_quarantined",
            "nightdesk_mail_open_clocks",
            "nightdesk_mail_oldest_open_age_seconds",
            "nightdesk_store_up",
        ] {
            assert!(
                names.contains(&name),
                "{label}: {name} not described in:\n{body}"
            );
        }
        assert_eq!(
            sample(&body, r#"nightdesk_source_ready{source="amazon/test"}"#),
            Some(1.0),
            "{label}: {body}"
        );
        assert_eq!(
            sample(
                &body,
                r#"nightdesk_source_last_success_age_seconds{source="amazon/test"}"#
            ),
            Some(0.0),
            "{label}: polled at the clock's now"
        );
        assert_eq!(
            sample(&body, r#"nightdesk_rule_quarantined{rule="a_runaway"}"#),
            Some(1.0),
            "{label}: {body}"
        );
        assert_eq!(
            sample(&body, r#"nightdesk_mail_open_clocks{marketplace="amazon"}"#),
            Some(1.0),
            "{label}: {body}"
        );
        assert_eq!(
            sample(
                &body,
                r#"nightdesk_mail_oldest_open_age_seconds{marketplace="amazon"}"#
            ),
            Some(3.0 * 3600.0),
            "{label}: {body}"
        );
        assert_eq!(sample(&body, "nightdesk_store_up"), Some(1.0), "{label}");
        // What the store holds, by state: the cycle's alerts went out.
        let done = h
            .store
            .store
            .outbox()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.state == "done")
            .count();
        assert!(done > 0, "{label}: the cycle delivered nothing");
        assert_eq!(
            sample(&body, r#"nightdesk_outbox_actions{state="done"}"#),
            Some(done as f64),
            "{label}: {body}"
        );
        assert!(
            body.lines()
                .any(|l| l.starts_with("nightdesk_upstream_throttled_total{")
                    && l.contains(r#"operation="listAllFulfillmentOrders""#)),
            "{label}: {body}"
        );
        assert!(
            body.lines()
                .any(|l| l.starts_with("nightdesk_action_attempts_total{")
                    && l.contains(r#"outcome="done""#)
                    && l.contains(r#"kind="alert""#)),
            "{label}: {body}"
        );
    }
}

#[tokio::test]
async fn readyz_is_ready_after_a_good_cycle_and_names_a_source_polled_too_long_ago() {
    for h in harnesses(&scenario()).await {
        let label = h.label();
        let daemon = Arc::new(h.daemon());
        let (base, stop) = start_server(daemon.clone()).await;
        // Just started, not polled yet: ready during the first interval.
        let (status, body) = get(&format!("{base}/readyz")).await;
        assert_eq!(status, 200, "{label}: {body}");
        assert!(body.contains("starting"), "{label}: {body}");

        cycle(&daemon, label).await;
        let (status, body) = get(&format!("{base}/readyz")).await;
        assert_eq!(status, 200, "{label}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(json["ready"], true, "{label}: {body}");
        let names: Vec<&str> = json["checks"]
            .as_array()
            .map(|checks| checks.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            names,
            vec!["store", "rules", "source:amazon/test"],
            "{label}"
        );

        // Polled every minute: two missed fires and the grace later, it is not ready.
        h.clock
            .advance(Duration::minutes(3) + Duration::seconds(30));
        let (status, body) = get(&format!("{base}/readyz")).await;
        assert_eq!(status, 503, "{label}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(
            json["failing"],
            serde_json::json!(["source:amazon/test"]),
            "{label}: {body}"
        );

        // A failed poll does not make it ready; its error is named.
        h.sandbox.inject(Fault::status("getOrders", 500).times(20));
        cycle(&daemon, label).await;
        let (status, body) = get(&format!("{base}/readyz")).await;
        assert_eq!(status, 503, "{label}: {body}");
        assert!(
            body.contains("consecutive failures: 1; last error: getOrders")
                && body.contains("getOrders"),
            "{label}: {body}"
        );

        // A good poll again: ready.
        h.sandbox.clear_faults();
        cycle(&daemon, label).await;
        let (status, body) = get(&format!("{base}/readyz")).await;
        assert_eq!(status, 200, "{label}: {body}");
        stop.cancel();
    }
}

#[tokio::test]
async fn readyz_names_the_store_when_it_does_not_answer() {
    let h = Harness::start(
        match nightdesk::store::testing::sqlite().await {
            Ok(s) => s,
            Err(e) => panic!("sqlite: {e}"),
        },
        scenario(),
    )
    .await;
    // A store of our own, so the test can close it under the daemon.
    let path = h.dir.path().join("closed.db");
    let store = match SqliteStore::open(&path).await {
        Ok(s) => Arc::new(s),
        Err(e) => panic!("open: {e}"),
    };
    let shared: Arc<dyn Store> = store.clone();
    let built = Daemon::build(DaemonOptions {
        config: h.config(),
        store: shared,
        clock: Arc::new(h.clock.clone()),
        secrets: h.secrets(),
        endpoints: h.endpoints(),
        retry: RetryPolicy::fast(),
        instance: "test".into(),
    });
    let daemon = match built {
        Ok(d) => Arc::new(d),
        Err(e) => panic!("build: {e}"),
    };
    let (base, stop) = start_server(daemon.clone()).await;
    cycle(&daemon, "sqlite").await;
    assert_eq!(get(&format!("{base}/readyz")).await.0, 200);

    store.close().await;
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(
        json["failing"],
        serde_json::json!(["store", "source:amazon/test"]),
        "{body}"
    );
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(
        sample(&metrics, "nightdesk_store_up"),
        Some(0.0),
        "{metrics}"
    );
    stop.cancel();
}

/// Run `nightdesk status` on the SQLite file at `db`; its stdout.
fn run_status(db: &std::path::Path, format: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_nightdesk"))
        .args(["status", "--format", format, "--db"])
        .arg(db)
        .output();
    match output {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => panic!(
            "nightdesk status failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("nightdesk status: {e}"),
    }
}

#[tokio::test]
async fn status_shows_sources_backlog_approvals_quarantines_and_leases() {
    let store = match nightdesk::store::testing::sqlite().await {
        Ok(s) => s,
        Err(e) => panic!("sqlite: {e}"),
    };
    let h = Harness::start(store, scenario()).await;
    let Some(db) = h.store.sqlite_path.clone() else {
        panic!("the SQLite test store has no path")
    };
    h.write_rule("a_runaway", RUNAWAY);
    let daemon = h.daemon();
    cycle(&daemon, "sqlite").await;
    // A second poll fails: the source shows its error and the failure count.
    h.clock.advance(Duration::minutes(1));
    h.sandbox.inject(Fault::status("getOrders", 500).times(20));
    cycle(&daemon, "sqlite").await;
    let s = &h.store.store;
    let setup = async {
        s.plan(None, &[held_refund()], h.clock.now()).await?;
        // Status reads the wall clock: one lease live now, one long expired.
        s.acquire_lease(
            "poll/amazon/test",
            "host-a-42",
            Duration::minutes(10),
            Utc::now(),
        )
        .await?;
        s.acquire_lease("sweep", "host-b-7", Duration::seconds(15), t0())
            .await?;
        Ok::<(), nightdesk::store::StoreError>(())
    };
    if let Err(e) = setup.await {
        panic!("setup: {e}");
    }

    let text = run_status(&db, "text");
    let line = |start: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(start))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let source = line("amazon/test");
    assert!(
        source.starts_with("amazon/test 2026-11-22T12:00:00Z"),
        "the last good poll: {text}"
    );
    assert!(
        source.contains(" 1 2026-11-22T12:01:00Z (getOrders"),
        "one failure, with its time and error: {text}"
    );
    assert!(line("done ").starts_with("done "), "{text}");
    assert!(line("held ").starts_with("held 1 "), "{text}");
    assert!(
        text.contains("Held for approval: 1 (oldest since 2026-11-22T12:01:00Z"),
        "{text}"
    );
    let quarantine = line("a_runaway");
    assert!(
        quarantine.contains(" test 2026-11-22T12:00:00Z "),
        "quarantined on instance `test` at the first cycle: {text}"
    );
    assert!(
        line("poll/amazon/test").starts_with("poll/amazon/test host-a-42 live 9m"),
        "{text}"
    );
    assert_eq!(line("sweep"), "sweep host-b-7 expired -", "{text}");

    let json: serde_json::Value =
        serde_json::from_str(&run_status(&db, "json")).unwrap_or_default();
    assert_eq!(json["held"], 1, "{json}");
    assert_eq!(json["sources"][0]["source"], "amazon/test", "{json}");
    assert_eq!(json["sources"][0]["consecutive_failures"], 1, "{json}");
    assert_eq!(json["quarantined"][0]["rule"], "a_runaway", "{json}");
    assert_eq!(json["leases"][0]["live"], true, "{json}");
}
