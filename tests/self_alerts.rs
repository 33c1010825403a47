//! Alerts about nightdesk itself (issue 9), the whole daemon against the sandbox on a
//! hand-moved clock, on every store backend: a stalled source, refused credentials, a
//! runaway rule, a growing backlog, an action left unknown and a nearly full disk each
//! reach the ops channel once per occurrence.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};
use common::{Harness, count, harnesses, t0};
use nightdesk::clock::Clock;
use nightdesk::daemon::{Daemon, DaemonOptions, DiskSpace};
use nightdesk::http::RetryPolicy;
use nightdesk::model::{ActionRequest, PlannedAction, Subject};
use nightdesk::sandbox::{Fault, FulfillmentChannel, OrderStatus, Scenario, ScenarioOrder, When};
use nightdesk::store::Outcome;

const STALLED: &str = "has not polled successfully";
const RECOVERED: &str = "polls again (last good poll";

fn scenario() -> Scenario {
    Scenario::with_orders(vec![ScenarioOrder {
        last_updated: Some(When::minutes_ago(30)),
        ..ScenarioOrder::new(
            "113-0000001-0000001",
            OrderStatus::Unshipped,
            FulfillmentChannel::Mfn,
            When::minutes_ago(90),
        )
    }])
}

/// One daemon cycle (poll, rules, actions); the polls' results.
async fn cycle(h: &Harness, daemon: &Daemon) -> Vec<Result<(), String>> {
    match daemon.run_cycle().await {
        Ok(report) => report
            .polls
            .into_iter()
            .map(|(_, p)| p.map(|_| ()))
            .collect(),
        Err(e) => panic!("{}: cycle: {e}", h.label()),
    }
}

/// The health check; the topics it raised.
async fn check(h: &Harness, daemon: &Daemon) -> Vec<String> {
    match daemon.check_health().await {
        Ok(report) => report.raised,
        Err(e) => panic!("{}: health check: {e}", h.label()),
    }
}

async fn deliver(h: &Harness, daemon: &Daemon) {
    if let Err(e) = daemon.execute_due(&|| false).await {
        panic!("{}: executor: {e}", h.label());
    }
}

/// A daemon whose calls are not retried within a poll: each failing poll is one
/// getOrders call, so the polls of the test stay within its usage plan's burst (the
/// client paces on real time, not the test clock).
fn without_retries(h: &Harness) -> Daemon {
    let built = Daemon::build(DaemonOptions {
        config: h.config(),
        store: h.store.store.clone(),
        clock: Arc::new(h.clock.clone()),
        secrets: h.secrets(),
        endpoints: h.endpoints(),
        retry: RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::fast()
        },
        instance: "test".into(),
    });
    match built {
        Ok(daemon) => daemon,
        Err(e) => panic!("{}: build: {e}", h.label()),
    }
}

/// A tag action of `rule`, keyed by `name`.
fn tag(rule: &str, name: &str) -> PlannedAction {
    PlannedAction {
        rule: rule.to_owned(),
        rule_version: "v1".to_owned(),
        subject: Subject::named("test", name),
        request: ActionRequest::Tag {
            name: name.to_owned(),
        },
        idempotency_key: format!("{rule}|{name}"),
        hold: None,
        dry_run: false,
    }
}

async fn plan(h: &Harness, actions: &[PlannedAction], at: DateTime<Utc>) {
    if let Err(e) = h.store.store.plan(None, actions, at).await {
        panic!("{}: plan: {e}", h.label());
    }
}

fn with_health(h: &mut Harness, section: &str) {
    h.config_text.push_str("health:\n");
    h.config_text.push_str(section);
}

#[tokio::test]
async fn a_stalled_source_is_alerted_once_per_stall_and_its_recovery_noted() {
    for h in harnesses(&scenario()).await {
        let daemon = without_retries(&h);
        assert!(
            cycle(&h, &daemon).await.iter().all(Result::is_ok),
            "{}",
            h.label()
        );
        assert!(check(&h, &daemon).await.is_empty(), "{}", h.label());

        // Every listing answers 500 from now on (more than the in-call retries).
        h.sandbox
            .inject(Fault::status("getOrders", 500).times(10_000));
        let mut raised = Vec::new();
        for _ in 0..6 {
            h.clock.advance(Duration::minutes(1));
            assert!(
                cycle(&h, &daemon).await.iter().all(Result::is_err),
                "{}",
                h.label()
            );
            raised.extend(check(&h, &daemon).await);
        }
        // Polls at :01, :02 and :03 failed; at :04 the fourth is due: stalled, once.
        assert_eq!(
            raised,
            vec![format!("stalled/amazon/test/{}", t0().timestamp())],
            "{}",
            h.label()
        );
        deliver(&h, &daemon).await;
        let texts = h.slack_texts();
        assert_eq!(count(&texts, STALLED), 1, "{}: {texts:?}", h.label());
        assert!(
            count(&texts, "amazon/test") >= 1,
            "{}: names the source",
            h.label()
        );

        // It polls again: noted once.
        h.sandbox.clear_faults();
        h.clock.advance(Duration::minutes(1));
        assert!(
            cycle(&h, &daemon).await.iter().all(Result::is_ok),
            "{}",
            h.label()
        );
        let recovered_at = h.clock.now();
        check(&h, &daemon).await;
        check(&h, &daemon).await;
        deliver(&h, &daemon).await;
        assert_eq!(count(&h.slack_texts(), RECOVERED), 1, "{}", h.label());

        // A new stall after the recovery is a new occurrence: a second alert.
        h.sandbox
            .inject(Fault::status("getOrders", 500).times(10_000));
        let mut raised = Vec::new();
        for _ in 0..5 {
            h.clock.advance(Duration::minutes(1));
            let _ = cycle(&h, &daemon).await;
            raised.extend(check(&h, &daemon).await);
        }
        assert_eq!(
            raised,
            vec![format!("stalled/amazon/test/{}", recovered_at.timestamp())],
            "{}",
            h.label()
        );
        deliver(&h, &daemon).await;
        let texts = h.slack_texts();
        assert_eq!(count(&texts, STALLED), 2, "{}: {texts:?}", h.label());
        assert_eq!(count(&texts, RECOVERED), 1, "{}", h.label());
    }
}

#[tokio::test]
async fn refused_credentials_are_alerted_once_over_many_polls() {
    for h in harnesses(&scenario()).await {
        let daemon = h.daemon();
        assert!(
            cycle(&h, &daemon).await.iter().all(Result::is_ok),
            "{}",
            h.label()
        );
        h.sandbox.revoke_refresh_token();
        for _ in 0..8 {
            h.clock.advance(Duration::minutes(1));
            assert!(
                cycle(&h, &daemon).await.iter().all(Result::is_err),
                "{}",
                h.label()
            );
            check(&h, &daemon).await;
        }
        deliver(&h, &daemon).await;
        let texts = h.slack_texts();
        assert_eq!(
            count(&texts, "Credentials failing"),
            1,
            "{}: {texts:?}",
            h.label()
        );
        // The stopped source has its own alert: no second one saying it stalled.
        assert_eq!(count(&texts, STALLED), 0, "{}: {texts:?}", h.label());
    }
}

#[tokio::test]
async fn a_runaway_rule_is_held_past_its_usual_rate_and_alerted_once() {
    for mut h in harnesses(&scenario()).await {
        with_health(&mut h, "  runaway_factor: 5\n  runaway_min_actions: 20\n");
        // Its usual: 3 tags a day over the last week (median 3, so the limit is 20).
        for day in 1..=7 {
            let actions: Vec<PlannedAction> = (0..3)
                .map(|i| tag("chatty", &format!("day{day}-{i}")))
                .collect();
            plan(&h, &actions, t0() - Duration::days(day)).await;
        }
        // Today it asks for 30 at once: ten times its usual.
        h.write_rule(
            "chatty",
            "fn on_schedule(name) { if name == \"burst\" { for i in 0..30 { tag(#{ subject: `test:burst-${i}` }, `burst-${i}`); } } }",
        );
        let daemon = h.daemon();
        deliver(&h, &daemon).await;
        let planned = match daemon.fire_schedule("burst").await {
            Ok(n) => n,
            Err(e) => panic!("{}: schedule: {e}", h.label()),
        };
        assert!(planned >= 30, "{}: {planned}", h.label());
        deliver(&h, &daemon).await;
        // Asked again later today: still held, still one alert.
        h.clock.advance(Duration::minutes(5));
        let _ = daemon.fire_schedule("burst").await;
        deliver(&h, &daemon).await;

        let rows = match h.store.store.outbox().await {
            Ok(rows) => rows,
            Err(e) => panic!("{}: outbox: {e}", h.label()),
        };
        let today: Vec<_> = rows
            .iter()
            .filter(|r| r.rule == "chatty" && r.created_at >= t0())
            .collect();
        assert_eq!(today.len(), 30, "{}", h.label());
        let held: Vec<_> = today.iter().filter(|r| r.state == "held").collect();
        let done = today.iter().filter(|r| r.state == "done").count();
        assert_eq!((done, held.len()), (20, 10), "{}: {today:?}", h.label());
        assert!(
            held.iter().all(|r| r
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("possible runaway") && e.contains("chatty"))),
            "{}: {held:?}",
            h.label()
        );
        let texts = h.slack_texts();
        let alerts: Vec<&String> = texts
            .iter()
            .filter(|t| t.contains("suddenly asks for far more"))
            .collect();
        assert_eq!(alerts.len(), 1, "{}: {texts:?}", h.label());
        assert!(
            alerts[0].contains("rule chatty")
                && alerts[0].contains("20 today")
                && alerts[0].contains("usual 3 a day")
                && alerts[0].contains("nightdesk approve"),
            "{}: {}",
            h.label(),
            alerts[0]
        );
        // Each held action is announced with its id, for approval.
        assert_eq!(count(&texts, "Held for approval"), 10, "{}", h.label());
    }
}

#[tokio::test]
async fn a_quiet_rule_is_not_a_runaway_below_the_floor() {
    for h in harnesses(&scenario()).await {
        h.write_rule(
            "chatty",
            "fn on_schedule(name) { for i in 0..15 { tag(#{ subject: `test:q-${i}` }, `q-${i}`); } }",
        );
        let daemon = h.daemon();
        if let Err(e) = daemon.fire_schedule("burst").await {
            panic!("{}: schedule: {e}", h.label());
        }
        let rows = match h.store.store.outbox().await {
            Ok(rows) => rows,
            Err(e) => panic!("{}: outbox: {e}", h.label()),
        };
        let held = rows.iter().filter(|r| r.state == "held").count();
        let chatty = rows.iter().filter(|r| r.rule == "chatty").count();
        assert_eq!((chatty, held), (15, 0), "{}", h.label());
    }
}

#[tokio::test]
async fn a_growing_backlog_and_an_action_left_unknown_are_alerted_once_each() {
    for mut h in harnesses(&scenario()).await {
        with_health(
            &mut h,
            "  backlog_due_minutes: 5\n  backlog_growth_checks: 3\n  unknown_after_hours: 4\n",
        );
        let daemon = h.daemon();

        // An action that may have happened: unknown, waiting for a person.
        plan(&h, &[tag("seed", "maybe")], t0()).await;
        let claimed = match h
            .store
            .store
            .claim_due("test", t0(), Duration::seconds(300), 10)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => panic!("{}: claim: {e}", h.label()),
        };
        assert_eq!(claimed.len(), 1, "{}", h.label());
        for claim in &claimed {
            let outcome = Outcome::Unknown {
                error: "timeout after sending".to_owned(),
            };
            if let Err(e) = h.store.store.finish(claim, &outcome, t0()).await {
                panic!("{}: finish: {e}", h.label());
            }
        }

        // Overdue actions pile up, one more at each check (nobody performs them).
        let mut raised = Vec::new();
        for i in 0..6 {
            plan(&h, &[tag("seed", &format!("late-{i}"))], t0()).await;
            h.clock.advance(Duration::minutes(10));
            raised.extend(check(&h, &daemon).await);
        }
        let backlog: Vec<&String> = raised
            .iter()
            .filter(|t| t.starts_with("backlog/"))
            .collect();
        assert_eq!(backlog.len(), 1, "{}: {raised:?}", h.label());

        // Four hours after it became unknown, still undecided: once.
        h.clock
            .set(t0() + Duration::hours(4) + Duration::minutes(1));
        for _ in 0..3 {
            raised.extend(check(&h, &daemon).await);
            h.clock.advance(Duration::minutes(1));
        }
        let unknown = raised.iter().filter(|t| t.starts_with("unknown/")).count();
        assert_eq!(unknown, 1, "{}: {raised:?}", h.label());

        deliver(&h, &daemon).await;
        let texts = h.slack_texts();
        assert_eq!(
            count(&texts, "backlog is growing"),
            1,
            "{}: {texts:?}",
            h.label()
        );
        assert_eq!(
            count(&texts, "is still unknown after 4 hours"),
            1,
            "{}: {texts:?}",
            h.label()
        );
        // Performed now: the backlog has cleared, and says so once.
        check(&h, &daemon).await;
        check(&h, &daemon).await;
        deliver(&h, &daemon).await;
        assert_eq!(
            count(&h.slack_texts(), "backlog has cleared"),
            1,
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn a_nearly_full_disk_is_alerted_once_per_episode_on_sqlite() {
    for h in harnesses(&scenario()).await {
        let free = Arc::new(AtomicU64::new(2));
        let probe_free = free.clone();
        let daemon = h.daemon().with_disk_probe(Arc::new(move |_path| {
            Ok(DiskSpace {
                available: probe_free.load(Ordering::Relaxed),
                total: 100,
            })
        }));
        let mut raised = Vec::new();
        for _ in 0..3 {
            raised.extend(check(&h, &daemon).await);
        }
        free.store(50, Ordering::Relaxed);
        raised.extend(check(&h, &daemon).await);
        h.clock.advance(Duration::minutes(1));
        free.store(1, Ordering::Relaxed);
        raised.extend(check(&h, &daemon).await);
        raised.extend(check(&h, &daemon).await);
        deliver(&h, &daemon).await;
        let disk = raised.iter().filter(|t| t.starts_with("disk/")).count();
        let texts = h.slack_texts();
        if h.store.store.backend() == "sqlite" {
            // 2 % free: once; back to 50 %; 1 % free: a new episode.
            assert_eq!(disk, 2, "{}: {raised:?}", h.label());
            assert_eq!(count(&texts, "nearly full"), 2, "{}: {texts:?}", h.label());
            assert!(count(&texts, "2.0 % free") == 1, "{}: {texts:?}", h.label());
        } else {
            // PostgreSQL's disk is its server's: not checked here.
            assert_eq!(disk, 0, "{}: {raised:?}", h.label());
            assert_eq!(count(&texts, "nearly full"), 0, "{}", h.label());
        }
    }
}

#[tokio::test]
async fn the_running_daemon_checks_health_under_its_own_lease() {
    for h in harnesses(&scenario()).await {
        let daemon = Arc::new(h.daemon());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(daemon.clone().run(shutdown.clone()));
        let mut held = false;
        for _ in 0..100 {
            if daemon.leases_held().iter().any(|l| l == "health") {
                held = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        match running.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{}: run: {e}", h.label()),
            Err(e) => panic!("{}: run task: {e}", h.label()),
        }
        assert!(held, "{}: {:?}", h.label(), daemon.leases_held());
    }
}
