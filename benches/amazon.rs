//! Amazon polling against the sandbox, end to end (list, items, parse, store, events).
//! Run with `cargo bench --bench amazon` (both parts) or `cargo bench --bench amazon --
//! budget` / `-- ingest`. Prints its figures; asserts nothing about time.
//!
//! - `budget`: a backlog of orders against the rate-enforcing sandbox. The usage plans
//!   are Amazon's, time-compressed ×120 on the sandbox side (getOrders 2/s burst 20,
//!   getOrderItems 60/s burst 30; the real ratio of the two kept), and pages of 25
//!   orders so that listing and item calls take about as long as each other and both
//!   plans are the limit at once (with 100 a page, items are the only limit). nightdesk starts from
//!   the published plans and learns the faster ones from `x-amzn-RateLimit-Limit`, as
//!   with a seller's dynamic usage plan. Budget use of an operation is its answered
//!   calls over what its plan allowed while it had work (burst + rate × span from its
//!   first to its last call); 429 answers are counted separately.
//! - `ingest`: 100,000 orders with usage plans so large they never bind (10,000/s,
//!   stated in the header as above): orders per second end to end, and
//!   the process's peak resident memory (the in-process sandbox's own copy of the
//!   orders included; the figure before polling is printed beside it).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use nightdesk::clock::{ManualClock, SharedClock};
use nightdesk::config::Config;
use nightdesk::http::RetryPolicy;
use nightdesk::sandbox::{Sandbox, SandboxOptions, Scenario, ScenarioOrder, When};
use nightdesk::sources;
use nightdesk::sources::amazon::lwa::LwaCredentials;
use nightdesk::sources::amazon::{AmazonSource, AmazonSourceSettings};
use nightdesk::store;
use secrecy::SecretString;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// `n` distinct one-item orders, all updated within the last `span_hours`.
fn backlog(n: u32, span_hours: i64) -> Scenario {
    let span_seconds = span_hours * 3600;
    let orders = (0..n)
        .map(|i| {
            let age =
                Duration::seconds(600 + i64::from(i) * (span_seconds - 1200) / i64::from(n.max(1)));
            ScenarioOrder {
                purchased: When::ago(age + Duration::hours(1)),
                last_updated: Some(When::ago(age)),
                ..ScenarioOrder::generated(i)
            }
        })
        .collect();
    Scenario::with_orders(orders)
}

struct Rig {
    sandbox: Sandbox,
    source: Arc<AmazonSource>,
    store: Arc<dyn store::Store>,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

async fn rig(scenario: Scenario, lookback_days: u32, page_size: u32) -> Result<Rig, String> {
    let clock = ManualClock::new(now());
    let shared: SharedClock = Arc::new(clock.clone());
    let credentials = scenario.amazon.credentials.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let sandbox = Sandbox::start(listener, SandboxOptions::new(scenario, shared.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let yaml = format!(
        "store:\n  url: sqlite://{db}\nrules:\n  dir: rules\namazon:\n  accounts:\n    - name: bench\n      region: na\n      marketplaces: [ATVPDKIKX0DER]\n      client_id: {id}\n      client_secret: env:UNUSED\n      refresh_token: env:UNUSED\n      schedule: \"* * * * *\"\n      initial_lookback_days: {lookback_days}\n      page_size: {page_size}\n      endpoint: {base}/\n      lwa_endpoint: {base}/auth/o2/token\n",
        db = dir.path().join("bench.db").display(),
        id = credentials.client_id,
        base = sandbox.base_url(),
    );
    let config =
        Config::from_str(&yaml, &dir.path().join("nightdesk.yaml")).map_err(|e| e.to_string())?;
    let account = config.amazon.first().cloned().ok_or("no account")?;
    let settings = AmazonSourceSettings {
        account: account.clone(),
        credentials: LwaCredentials {
            client_id: credentials.client_id.clone(),
            client_secret: SecretString::from(credentials.client_secret.clone()),
            refresh_token: SecretString::from(credentials.refresh_token.clone()),
        },
        user_agent: AmazonSource::user_agent("nightdesk-bench"),
        retry: RetryPolicy::default(),
    };
    let api = settings.client(shared).map_err(|e| e.to_string())?;
    let store = store::open(&config.store)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Rig {
        sandbox,
        source: AmazonSource::new(account, api),
        store,
        clock,
        _dir: dir,
    })
}

/// `VmHWM` / `VmRSS` of this process in MiB (Linux).
fn memory_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn budget() -> Result<(), String> {
    const ORDERS: u32 = 2_000;
    let rig = rig(backlog(ORDERS, 48), 3, 25).await?;
    let plans = [("getOrders", 2.0, 20.0), ("getOrderItems", 60.0, 30.0)];
    for (operation, rate, burst) in plans {
        rig.sandbox.set_usage_plan(operation, rate, burst);
    }
    rig.sandbox.reset_usage();
    let started = Instant::now();
    let report = sources::poll_once(rig.source.as_ref(), rig.store.as_ref(), rig.clock.now_utc())
        .await
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    println!(
        "budget: {} orders listed, {} stored, {} events in {:.1} s",
        report.fetched,
        report.ingest.stored,
        report.ingest.events,
        elapsed.as_secs_f64()
    );
    for (operation, rate, burst) in plans {
        let usage = rig.sandbox.usage(operation);
        let span = match (usage.first, usage.last) {
            (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
            _ => 0.0,
        };
        let allowed = burst + rate * span;
        println!(
            "budget: {operation}: {} answered, {} throttled (429), span {span:.1} s, plan allowed {allowed:.0} → {:.1} % of the budget used",
            usage.answered,
            usage.throttled,
            100.0 * usage.answered as f64 / allowed
        );
    }
    rig.sandbox.shutdown().await;
    Ok(())
}

async fn ingest() -> Result<(), String> {
    const ORDERS: u32 = 100_000;
    let rig = rig(backlog(ORDERS, 24 * 6), 7, 100).await?;
    // "Rate limits off": plans so large they never bind. The sandbox states them in
    // x-amzn-RateLimit-Limit and nightdesk's buckets follow, as they would Amazon's.
    for operation in ["getOrders", "getOrderItems"] {
        rig.sandbox.set_usage_plan(operation, 10_000.0, 10_000.0);
    }
    let before = memory_mib("VmRSS:").unwrap_or(0.0);
    let started = Instant::now();
    let report = sources::poll_once(rig.source.as_ref(), rig.store.as_ref(), rig.clock.now_utc())
        .await
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed().as_secs_f64();
    let events = rig
        .store
        .events_since(now() - Duration::days(365))
        .await
        .map_err(|e| e.to_string())?
        .len();
    println!(
        "ingest: {} orders listed, {} stored, {} events (store holds {events}) in {elapsed:.1} s: {:.0} orders/s end to end",
        report.fetched,
        report.ingest.stored,
        report.ingest.events,
        f64::from(ORDERS) / elapsed
    );
    println!(
        "ingest: resident memory {before:.0} MiB before polling (sandbox with {ORDERS} orders loaded), peak {:.0} MiB",
        memory_mib("VmHWM:").unwrap_or(0.0)
    );
    rig.sandbox.shutdown().await;
    Ok(())
}

trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl NowUtc for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        nightdesk::clock::Clock::now(self)
    }
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async {
        for (name, result) in [
            (
                "budget",
                if wanted("budget") {
                    Some(budget().await)
                } else {
                    None
                },
            ),
            (
                "ingest",
                if wanted("ingest") {
                    Some(ingest().await)
                } else {
                    None
                },
            ),
        ] {
            if let Some(Err(e)) = result {
                eprintln!("{name}: {e}");
                std::process::exit(1);
            }
        }
    });
}
