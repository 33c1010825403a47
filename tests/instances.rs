//! Several `nightdesk run` processes on one PostgreSQL database against the sandbox:
//! one is killed with SIGKILL in the middle of its work, and the others take over its
//! polls within the lease time and rescue its claimed actions, with every action's
//! effect in the sandbox exactly once and no order missed.
//!
//! Needs `TEST_DATABASE_URL` (as `.ci/run` sets it); without it the tests say so and
//! pass, since SQLite is single-instance by design.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightdesk::clock::{SharedClock, SystemClock};
use nightdesk::sandbox::{DEFAULT_WEBHOOK_SECRET, Fault, Sandbox, SandboxOptions, ScenarioOrder};
use nightdesk::store::testing::{self, TestStore};
use nightdesk::store::{Lease, Store};
use tokio::net::TcpListener;

const ORDERS: u32 = 20;
const ACCOUNT_LEASE: &str = "poll/amazon/test";
/// The daemon's lease time, plus one renewal period and some slack for a loaded machine.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(15 + 5 + 5);

/// One rule: every new order is announced once on the signed webhook, whose receiver
/// deduplicates on the Idempotency-Key, so its effects count each action once.
const RULE: &str = "fn on_order_status_changed(order, event) {\n    if event.from == () {\n        alert(\"ops\", `new order ${order.id}`);\n    }\n}\n";

struct Fleet {
    sandbox: Sandbox,
    store: TestStore,
    dir: tempfile::TempDir,
    config: PathBuf,
    env: Vec<(String, String)>,
    children: Vec<Child>,
}

impl Fleet {
    /// The sandbox with `ORDERS` plain orders and a fresh PostgreSQL database, or `None`
    /// without `TEST_DATABASE_URL`.
    async fn new(faults: Vec<Fault>) -> Option<Fleet> {
        let store = match testing::postgres().await {
            Ok(Some(store)) => store,
            Ok(None) => {
                eprintln!("TEST_DATABASE_URL is not set: the multi-instance tests need PostgreSQL");
                return None;
            }
            Err(e) => panic!("test database: {e}"),
        };
        let Some(url) = store.postgres_url.clone() else {
            panic!("the PostgreSQL test store has no URL")
        };
        let mut scenario = match nightdesk::sandbox::default_scenario() {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        scenario.amazon.orders = (0..ORDERS).map(ScenarioOrder::generated).collect();
        scenario.amazon.fulfillment_orders.clear();
        let creds = scenario.amazon.credentials.clone();
        let clock: SharedClock = Arc::new(SystemClock);
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let sandbox = match Sandbox::start(listener, SandboxOptions::new(scenario, clock)).await {
            Ok(s) => s,
            Err(e) => panic!("sandbox: {e}"),
        };
        sandbox.set_rate_limits(false);
        for fault in faults {
            sandbox.inject(fault);
        }
        let base = sandbox.base_url();
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("temp dir: {e}"),
        };
        let rules = dir.path().join("rules");
        let written = std::fs::create_dir_all(&rules)
            .and_then(|_| std::fs::write(rules.join("announce.rhai"), RULE));
        if let Err(e) = written {
            panic!("rules: {e}");
        }
        let config = dir.path().join("nightdesk.yaml");
        let text = format!(
            "store:\n  url: {url}\nrules:\n  dir: rules\nexecutor:\n  lease_seconds: 5\n\
             amazon:\n  accounts:\n    - name: test\n      region: na\n      marketplaces: [ATVPDKIKX0DER]\n\
             \x20     client_id: {client_id}\n      client_secret: env:T_LWA_SECRET\n\
             \x20     refresh_token: env:T_LWA_REFRESH\n      endpoint: {base}/\n\
             \x20     lwa_endpoint: {base}/auth/o2/token\n      schedule: \"* * * * *\"\n\
             \x20     initial_lookback_days: 30\n      page_size: 10\n\
             channels:\n  ops:\n    type: webhook\n    url: env:T_HOOK\n    signing_secret: env:T_HOOK_SECRET\n\
             \x20   group_window_seconds: 0\n",
            client_id = creds.client_id,
        );
        if let Err(e) = std::fs::write(&config, text) {
            panic!("config: {e}");
        }
        let env = vec![
            ("T_LWA_SECRET".to_owned(), creds.client_secret.clone()),
            ("T_LWA_REFRESH".to_owned(), creds.refresh_token.clone()),
            (
                "T_HOOK".to_owned(),
                format!("{base}/hooks/webhook/nightdesk"),
            ),
            (
                "T_HOOK_SECRET".to_owned(),
                DEFAULT_WEBHOOK_SECRET.to_owned(),
            ),
        ];
        Some(Fleet {
            sandbox,
            store,
            dir,
            config,
            env,
            children: Vec::new(),
        })
    }

    /// Start `n` more daemon processes.
    fn start(&mut self, n: usize) {
        for _ in 0..n {
            let index = self.children.len();
            let log = |suffix: &str| -> Stdio {
                match std::fs::File::create(self.log_path(index, suffix)) {
                    Ok(f) => Stdio::from(f),
                    Err(e) => panic!("log file: {e}"),
                }
            };
            let child = Command::new(env!("CARGO_BIN_EXE_nightdesk"))
                .arg("run")
                .arg("--config")
                .arg(&self.config)
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("RUST_LOG", "info")
                .stdout(log("out"))
                .stderr(log("err"))
                .spawn();
            match child {
                Ok(c) => self.children.push(c),
                Err(e) => panic!("starting nightdesk: {e}"),
            }
        }
    }

    fn log_path(&self, index: usize, suffix: &str) -> PathBuf {
        self.dir.path().join(format!("instance-{index}.{suffix}"))
    }

    /// The children's logs, for a failure message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..self.children.len() {
            for suffix in ["out", "err"] {
                let text = std::fs::read_to_string(self.log_path(i, suffix)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                out.push_str(&format!(
                    "--- instance {i} {suffix} (last lines, newest first)\n"
                ));
                out.push_str(&tail.join("\n"));
                out.push('\n');
            }
        }
        out
    }

    fn store(&self) -> &dyn Store {
        self.store.store.as_ref()
    }

    async fn lease(&self, name: &str) -> Option<Lease> {
        match self.store().leases().await {
            Ok(leases) => leases.into_iter().find(|l| l.name == name),
            Err(e) => panic!("leases: {e}"),
        }
    }

    /// The index of the child whose instance name (`host-pid`) is `holder`.
    fn child_named(&self, holder: &str) -> Option<usize> {
        self.children
            .iter()
            .position(|c| holder.ends_with(&format!("-{}", c.id())))
    }

    fn kill(&mut self, index: usize) {
        let child = &mut self.children[index];
        if let Err(e) = child.kill() {
            panic!("SIGKILL: {e}");
        }
        let _ = child.wait();
    }

    /// Webhook effects (unique Idempotency-Keys) naming each order, by order id.
    fn effects_per_order(&self) -> Vec<(String, usize)> {
        let effects = self.sandbox.webhook_effects();
        self.sandbox
            .orders()
            .into_iter()
            .map(|order| {
                let n = effects
                    .iter()
                    .filter(|(_, body)| body.to_string().contains(&order.id))
                    .count();
                (order.id, n)
            })
            .collect()
    }

    async fn orders_stored(&self) -> usize {
        let mut stored = 0;
        for order in self.sandbox.orders() {
            match self
                .store()
                .order(nightdesk::model::SalesChannel::Amazon, &order.id)
                .await
            {
                Ok(Some(_)) => stored += 1,
                Ok(None) => {}
                Err(e) => panic!("reading order {}: {e}", order.id),
            }
        }
        stored
    }

    /// Wait until `done` or `limit`; false on timeout.
    async fn wait_for<F, Fut>(&self, limit: Duration, mut done: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let start = Instant::now();
        while start.elapsed() < limit {
            if done().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// Every order stored, each announced exactly once, and no action left claimed,
    /// retrying or unknown.
    async fn all_done_exactly_once(&self) -> bool {
        if self.orders_stored().await != ORDERS as usize {
            return false;
        }
        if self.effects_per_order().iter().any(|(_, n)| *n != 1) {
            return false;
        }
        match self.store().outbox().await {
            Ok(rows) => rows.len() == ORDERS as usize && rows.iter().all(|r| r.state == "done"),
            Err(e) => panic!("outbox: {e}"),
        }
    }

    /// SIGTERM the survivors; each exits 0 and gives up its leases.
    async fn stop(&mut self) {
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(Some(_))) {
                continue;
            }
            let pid = child.id().to_string();
            let sent = Command::new("kill").args(["-TERM", &pid]).status();
            assert!(matches!(sent, Ok(s) if s.success()), "kill -TERM {pid}");
        }
        let logs = self.logs();
        for (i, child) in self.children.iter_mut().enumerate() {
            let start = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if start.elapsed() < Duration::from_secs(30) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => {
                        let _ = child.kill();
                        panic!("instance {i} did not stop within 30 s of SIGTERM\n{logs}");
                    }
                }
            }
        }
        let now = chrono::Utc::now();
        match self.store().leases().await {
            Ok(leases) => assert!(
                leases.iter().all(|l| !l.is_live(now)),
                "leases still held after every instance stopped: {leases:?}"
            ),
            Err(e) => panic!("leases: {e}"),
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Two instances; the one polling is killed while its getOrders call hangs. The other
/// takes the poll lease over within the lease time, polls at once, and every order is
/// stored and announced exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poller_killed_mid_poll_is_replaced_within_the_lease_time() {
    // The first getOrders hangs long enough to be killed in the middle of it.
    let Some(mut fleet) = Fleet::new(vec![Fault::delay("getOrders", 60_000)]).await else {
        return;
    };
    fleet.start(2);
    let polling = fleet
        .wait_for(Duration::from_secs(30), || async {
            // The delay fault is taken by the first getOrders: that poll now hangs.
            fleet.sandbox.pending_faults().is_empty()
        })
        .await;
    assert!(polling, "no instance started polling\n{}", fleet.logs());
    let Some(lease) = fleet.lease(ACCOUNT_LEASE).await else {
        panic!("nobody holds {ACCOUNT_LEASE}\n{}", fleet.logs())
    };
    let Some(victim) = fleet.child_named(&lease.holder) else {
        panic!("lease holder {} is not one of ours", lease.holder)
    };
    assert_eq!(
        fleet.orders_stored().await,
        0,
        "the hanging poll stored nothing yet"
    );
    let killed_at = Instant::now();
    fleet.kill(victim);

    let taken_over = fleet
        .wait_for(TAKEOVER_LIMIT, || async {
            fleet
                .lease(ACCOUNT_LEASE)
                .await
                .is_some_and(|l| l.holder != lease.holder && l.fence > lease.fence)
        })
        .await;
    let takeover = killed_at.elapsed();
    assert!(
        taken_over,
        "the poll lease was not taken over within {TAKEOVER_LIMIT:?}\n{}",
        fleet.logs()
    );
    eprintln!("poll lease taken over {takeover:?} after SIGKILL");
    let done = fleet
        .wait_for(Duration::from_secs(30), || fleet.all_done_exactly_once())
        .await;
    assert!(
        done,
        "after the takeover: {} of {ORDERS} orders stored, effects {:?}\n{}",
        fleet.orders_stored().await,
        fleet.effects_per_order(),
        fleet.logs()
    );
    fleet.stop().await;
}

/// Three instances; one is killed while it is sending an action (the webhook answers
/// slowly). Its claim expires, another instance performs the action again with the
/// same Idempotency-Key, and the receiver counts one effect per order; no order is
/// missed and nothing is left claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_mid_send_has_its_actions_rescued_exactly_once() {
    let slow_sends = Fault {
        times: 3,
        ..Fault::delay("chat.webhook", 20_000)
    };
    let Some(mut fleet) = Fleet::new(vec![slow_sends]).await else {
        return;
    };
    fleet.start(3);
    let Some(url) = fleet.store.postgres_url.clone() else {
        panic!("no URL")
    };
    let pool = match sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
    {
        Ok(p) => p,
        Err(e) => panic!("connect: {e}"),
    };
    // Wait for a send in flight: a claimed row and its request at the receiver.
    let mut sender: Option<String> = None;
    let started = Instant::now();
    while sender.is_none() && started.elapsed() < Duration::from_secs(60) {
        // A slow-send fault taken: that post now hangs at the receiver.
        let sending = fleet
            .sandbox
            .pending_faults()
            .first()
            .is_none_or(|f| f.times < 3);
        if sending {
            let claimed: Vec<(Option<String>,)> =
                match sqlx::query_as("SELECT lease_owner FROM outbox WHERE state = 'claimed'")
                    .fetch_all(&pool)
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => panic!("outbox: {e}"),
                };
            sender = claimed.into_iter().find_map(|(owner,)| owner);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(sender) = sender else {
        panic!("no action was in flight\n{}", fleet.logs())
    };
    let Some(victim) = fleet.child_named(&sender) else {
        panic!("claim owner {sender} is not one of ours")
    };
    let held_poll = fleet
        .lease(ACCOUNT_LEASE)
        .await
        .is_some_and(|l| l.holder == sender);
    fleet.kill(victim);

    let done = fleet
        .wait_for(Duration::from_secs(90), || fleet.all_done_exactly_once())
        .await;
    assert!(
        done,
        "after the kill: {} of {ORDERS} orders stored, effects {:?}\n{}",
        fleet.orders_stored().await,
        fleet.effects_per_order(),
        fleet.logs()
    );
    // The victim's claims were performed again by a survivor.
    let rescued: Vec<(i64,)> =
        match sqlx::query_as("SELECT attempts FROM outbox WHERE attempts > 1")
            .fetch_all(&pool)
            .await
        {
            Ok(rows) => rows,
            Err(e) => panic!("outbox: {e}"),
        };
    assert!(
        !rescued.is_empty(),
        "no action was attempted twice: nothing was rescued"
    );
    let requests = fleet
        .sandbox
        .journal()
        .iter()
        .filter(|e| e.operation == "chat.webhook")
        .count();
    assert!(
        requests > ORDERS as usize,
        "the rescue should have re-sent at least one request ({requests} for {ORDERS} orders)"
    );
    if held_poll {
        let moved = fleet
            .lease(ACCOUNT_LEASE)
            .await
            .is_some_and(|l| l.holder != sender);
        assert!(moved, "the victim's poll lease did not move");
    }
    pool.close().await;
    fleet.stop().await;
}
