//! nightdesk as a service: the real binary under signals (SIGTERM with an action in
//! flight, SIGHUP with a broken and then a good config), its systemd notifications, and
//! the reload driven through the library's `Supervisor` without signals. Against an
//! in-test sandbox, on SQLite and on PostgreSQL when `TEST_DATABASE_URL` is set.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightdesk::clock::{SharedClock, SystemClock};
use nightdesk::config::{Config, SecretResolver, StoreTarget};
use nightdesk::daemon::Endpoints;
use nightdesk::http::RetryPolicy;
use nightdesk::sandbox::{Fault, Sandbox, SandboxOptions, Scenario, ScenarioOrder, When};
use nightdesk::service::{Notifier, ReloadError, Supervisor, SupervisorOptions};
use nightdesk::store::{self, Store, testing};

/// Alerts every new order or status change, naming the rule in the text.
fn alert_rule(word: &str) -> String {
    format!(
        "fn on_order_status_changed(order, event) {{ alert(\"ops\", `{word} ${{order.id}}`); }}\n"
    )
}

/// The credential file the Slack webhook URL is read from (`credential:slack-webhook`).
const SLACK_CREDENTIAL: &str = "slack-webhook";

/// Where a test's store lives: a SQLite file that only the child opens while it runs (one
/// process per SQLite file), or a fresh PostgreSQL database.
enum Backend {
    Sqlite(PathBuf),
    Postgres(testing::TestStore),
}

impl Backend {
    fn label(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    fn url(&self) -> String {
        match self {
            Backend::Sqlite(path) => format!("sqlite://{}", path.display()),
            Backend::Postgres(pg) => pg.postgres_url.clone().unwrap_or_default(),
        }
    }

    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(path) => match store::open(&StoreTarget::Sqlite(path.clone())).await {
                Ok(s) => s,
                Err(e) => panic!("open {}: {e}", path.display()),
            },
            Backend::Postgres(pg) => pg.store.clone(),
        }
    }
}

/// One test's world: a sandbox on the system clock (the child runs on it too), a folder
/// with the config, the rules and the credentials, and one backend.
struct World {
    sandbox: Sandbox,
    scenario: Scenario,
    dir: tempfile::TempDir,
    backend: Backend,
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    }
}

fn write(path: &Path, text: &str) {
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(path, text));
    if let Err(e) = written {
        panic!("write {}: {e}", path.display());
    }
}

/// An order last updated three minutes ago: inside the next poll's window (which ends
/// two minutes before now, as Amazon's does).
fn fresh_order(n: u32) -> ScenarioOrder {
    ScenarioOrder {
        purchased: When::minutes_ago(30),
        last_updated: Some(When::minutes_ago(3)),
        ..ScenarioOrder::generated(n)
    }
}

/// Every backend, each in a world of its own serving one order: SQLite, and PostgreSQL
/// when `TEST_DATABASE_URL` is set.
async fn worlds() -> Vec<World> {
    let dir = tempdir();
    let sqlite = Backend::Sqlite(dir.path().join("nightdesk.db"));
    let mut out = vec![World::start(dir, sqlite).await];
    match testing::postgres().await {
        Ok(Some(pg)) => out.push(World::start(tempdir(), Backend::Postgres(pg)).await),
        Ok(None) => {}
        Err(e) => panic!("cannot create the PostgreSQL test database: {e}"),
    }
    out
}

impl World {
    async fn start(dir: tempfile::TempDir, backend: Backend) -> World {
        let scenario = Scenario::with_orders(vec![fresh_order(0)]);
        let clock: SharedClock = Arc::new(SystemClock);
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let sandbox =
            match Sandbox::start(listener, SandboxOptions::new(scenario.clone(), clock)).await {
                Ok(s) => s,
                Err(e) => panic!("sandbox: {e}"),
            };
        // The child polls every 2 s; the usage plans would throttle that (on purpose).
        sandbox.set_rate_limits(false);
        let world = World {
            sandbox,
            scenario,
            dir,
            backend,
        };
        world.write_rule("first", &alert_rule("first"));
        write(
            &world.credentials_dir().join(SLACK_CREDENTIAL),
            &format!("{}\n", world.slack_url()),
        );
        world.write_config(&world.config_text());
        world
    }

    fn label(&self) -> &'static str {
        self.backend.label()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("nightdesk.yaml")
    }

    fn credentials_dir(&self) -> PathBuf {
        self.dir.path().join("credentials")
    }

    fn write_rule(&self, name: &str, source: &str) {
        write(
            &self.dir.path().join("rules").join(format!("{name}.rhai")),
            source,
        );
    }

    fn write_config(&self, text: &str) {
        write(&self.config_path(), text);
    }

    fn slack_url(&self) -> String {
        format!(
            "{}/hooks/slack/services/T0TEST/B0TEST/test-hook",
            self.sandbox.base_url()
        )
    }

    /// Polls every 2 s; rules are reloaded by SIGHUP only, so a test sees which did it.
    fn config_text(&self) -> String {
        let base = self.sandbox.base_url();
        format!(
            "\
store:
  url: {store}
rules:
  dir: rules
  reload: false
amazon:
  accounts:
    - name: test
      region: na
      marketplaces: [ATVPDKIKX0DER]
      client_id: {client_id}
      client_secret: env:T_LWA_SECRET
      refresh_token: env:T_LWA_REFRESH
      schedule: \"*/2 * * * * *\"
      endpoint: {base}/
      lwa_endpoint: {base}/auth/o2/token
      initial_lookback_days: 30
      page_size: 10
      fba_tracking: false
channels:
  ops:
    type: slack
    webhook_url: credential:{SLACK_CREDENTIAL}
    group_window_seconds: 0
",
            store = self.backend.url(),
            client_id = self.scenario.amazon.credentials.client_id,
        )
    }

    fn secrets(&self) -> SecretResolver {
        let creds = &self.scenario.amazon.credentials;
        SecretResolver::default()
            .with_override("T_LWA_SECRET", creds.client_secret.clone())
            .with_override("T_LWA_REFRESH", creds.refresh_token.clone())
            .with_credentials_directory(self.credentials_dir())
    }

    /// `nightdesk run` on this world's config, logging to a file, with `extra` env.
    fn spawn(&self, extra: &[(&str, String)]) -> Daemon {
        let log = self.dir.path().join("nightdesk.log");
        let open = |path: &Path| match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => f,
            Err(e) => panic!("log file: {e}"),
        };
        let creds = &self.scenario.amazon.credentials;
        let mut command = Command::new(env!("CARGO_BIN_EXE_nightdesk"));
        command
            .args(["run", "--config"])
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .env("T_LWA_SECRET", &creds.client_secret)
            .env("T_LWA_REFRESH", &creds.refresh_token)
            .env("CREDENTIALS_DIRECTORY", self.credentials_dir())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(open(&log))
            .stderr(open(&log));
        for (name, value) in extra {
            command.env(name, value);
        }
        match command.spawn() {
            Ok(child) => Daemon {
                child,
                log,
                label: self.label(),
            },
            Err(e) => panic!("cannot start nightdesk: {e}"),
        }
    }

    fn slack_texts(&self) -> Vec<String> {
        self.sandbox
            .chat_posts("slack")
            .into_iter()
            .map(|p| p["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn posts_of(&self, text: &str) -> usize {
        self.slack_texts()
            .iter()
            .filter(|t| t.contains(text))
            .count()
    }

    fn order_id(&self, n: u32) -> String {
        fresh_order(n).id
    }
}

/// The `nightdesk run` child.
struct Daemon {
    child: Child,
    log: PathBuf,
    label: &'static str,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "{}: kill -{name} failed",
            self.label
        );
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the exit, at most `limit`.
    async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(None) => panic!(
                    "{}: nightdesk still running after {limit:?}\n{}",
                    self.label,
                    self.log()
                ),
                Err(e) => panic!("{}: wait: {e}", self.label),
            }
        }
    }

    /// Waits until `condition` holds, at most `limit`; fails naming `what`.
    async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        mut condition: impl FnMut(&str) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            if condition(&self.log()) {
                return;
            }
            if !self.running() {
                panic!(
                    "{}: nightdesk exited while waiting for {what}\n{}",
                    self.label,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!("{}: no {what} within {limit:?}\n{}", self.label, self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Only a test that failed midway leaves the child running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every lease this process held is released (expires_at = 0), and there was one.
async fn assert_leases_released(store: &dyn Store, pid: u32, label: &str) {
    let leases = match store.leases().await {
        Ok(l) => l,
        Err(e) => panic!("{label}: leases: {e}"),
    };
    let ours: Vec<_> = leases
        .iter()
        .filter(|l| l.holder.contains(&format!("-{pid}")))
        .collect();
    assert!(
        !ours.is_empty(),
        "{label}: no lease was ever taken: {leases:?}"
    );
    for lease in ours {
        assert_eq!(
            lease.expires_at.timestamp_millis(),
            0,
            "{label}: lease {} of {} not released",
            lease.name,
            lease.holder
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_action_in_flight_once_releases_the_leases_and_exits_0() {
    for world in worlds().await {
        let label = world.label();
        // The Slack post takes 3 s: long enough to stop in the middle of it.
        world.sandbox.inject(Fault::delay("chat.slack", 3000));
        let mut daemon = world.spawn(&[]);
        let posting = Instant::now() + Duration::from_secs(30);
        // The fault is taken when the post arrives: the action is in flight.
        while !world.sandbox.pending_faults().is_empty() {
            assert!(
                daemon.running() && Instant::now() < posting,
                "{label}: the Slack post never started\n{}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            world.posts_of("first"),
            0,
            "{label}: the post is still delayed"
        );
        let stop = Instant::now();
        daemon.signal("TERM");
        // A second SIGTERM neither kills it nor cuts the action short.
        tokio::time::sleep(Duration::from_millis(300)).await;
        daemon.signal("TERM");
        let status = daemon.exit_within(Duration::from_secs(30)).await;
        let took = stop.elapsed();
        let log = daemon.log();
        assert!(status.success(), "{label}: exit {status}\n{log}");
        assert!(took < Duration::from_secs(30), "{label}: took {took:?}");
        assert!(
            log.contains("Already stopping"),
            "{label}: the second SIGTERM was not noticed\n{log}"
        );

        // Done exactly once: one post upstream, one row done in the outbox.
        let order = world.order_id(0);
        assert_eq!(
            world.posts_of(&format!("first {order}")),
            1,
            "{label}: {:?}",
            world.slack_texts()
        );
        let store = world.backend.open().await;
        let alerts: Vec<_> = match store.outbox().await {
            Ok(rows) => rows.into_iter().filter(|r| r.kind == "alert").collect(),
            Err(e) => panic!("{label}: outbox: {e}"),
        };
        assert_eq!(alerts.len(), 1, "{label}: {alerts:?}");
        assert_eq!(alerts[0].state, "done", "{label}: {alerts:?}");
        assert_leases_released(store.as_ref(), daemon.pid(), label).await;
    }
}

/// The line of `needle` in `text`, 1-based.
fn line_of(text: &str, needle: &str) -> usize {
    match text.lines().position(|l| l.contains(needle)) {
        Some(i) => i + 1,
        None => panic!("{needle:?} not in the config"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_the_last_good_config_on_errors_and_swaps_in_a_good_one() {
    for world in worlds().await {
        let label = world.label();
        let good = world.config_text();
        let mut daemon = world.spawn(&[]);
        let first = |n: u32| format!("first {}", world.order_id(n));
        let limit = Duration::from_secs(30);
        let deadline = Instant::now() + limit;
        while world.posts_of(&first(0)) == 0 {
            assert!(
                daemon.running() && Instant::now() < deadline,
                "{label}: no first alert\n{}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // A broken config: the error is logged with file, line and key; it keeps running.
        let broken = good.replace("*/2 * * * * *", "every two seconds");
        let line = line_of(&broken, "every two seconds");
        world.write_config(&broken);
        daemon.signal("HUP");
        let located = format!("nightdesk.yaml:{line}: amazon.accounts[0].schedule");
        daemon
            .until("the located config error", limit, |log| {
                log.contains(&located)
            })
            .await;
        daemon
            .until("the refusal", limit, |log| {
                log.contains("the last good config and rules keep running")
            })
            .await;

        // Another store: refused, a restart is needed.
        world.write_config(&good.replace(&world.backend.url(), "sqlite://elsewhere.db"));
        daemon.signal("HUP");
        daemon
            .until("the store refusal", limit, |log| {
                log.contains("restart nightdesk to switch stores")
            })
            .await;
        assert!(
            !world.dir.path().join("elsewhere.db").exists(),
            "{label}: the other store was opened"
        );

        // The old rules still act on a new order.
        if let Err(e) = world.sandbox.add_order(fresh_order(1)) {
            panic!("{label}: {e}");
        }
        let deadline = Instant::now() + limit;
        while world.posts_of(&first(1)) == 0 {
            assert!(
                daemon.running() && Instant::now() < deadline,
                "{label}: the old rules did not act after the refused reload\n{}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // A good config and a new rule file: after SIGHUP the new rule acts.
        world.write_config(&good);
        world.write_rule("second", &alert_rule("second"));
        daemon.signal("HUP");
        daemon
            .until("the reload", limit, |log| {
                log.contains("Reloaded: the new daemon runs")
            })
            .await;
        if let Err(e) = world.sandbox.add_order(fresh_order(2)) {
            panic!("{label}: {e}");
        }
        let second = format!("second {}", world.order_id(2));
        let deadline = Instant::now() + limit;
        while world.posts_of(&second) == 0 {
            assert!(
                daemon.running() && Instant::now() < deadline,
                "{label}: the new rule did not act after the reload\n{}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And the rule that was there before still does.
        let deadline = Instant::now() + limit;
        while world.posts_of(&first(2)) == 0 {
            assert!(
                Instant::now() < deadline,
                "{label}: {:?}",
                world.slack_texts()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        daemon.signal("TERM");
        let status = daemon.exit_within(limit).await;
        assert!(status.success(), "{label}: exit {status}\n{}", daemon.log());
        // Two daemons overlapped during the reload: still every alert exactly once.
        for text in [first(0), first(1), first(2), second] {
            assert_eq!(
                world.posts_of(&text),
                1,
                "{label}: {text}: {:?}",
                world.slack_texts()
            );
        }
        let store = world.backend.open().await;
        assert_leases_released(store.as_ref(), daemon.pid(), label).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_then_watchdog_then_stopping() {
    for world in worlds().await {
        let label = world.label();
        let socket_path = world.dir.path().join("notify.sock");
        let socket = match tokio::net::UnixDatagram::bind(&socket_path) {
            Ok(s) => s,
            Err(e) => panic!("{label}: bind the notify socket: {e}"),
        };
        let mut daemon = world.spawn(&[
            ("NOTIFY_SOCKET", socket_path.display().to_string()),
            // A ping every 0.5 s.
            ("WATCHDOG_USEC", "1000000".to_owned()),
        ]);
        let mut heard: Vec<String> = Vec::new();
        let mut buffer = vec![0u8; 4096];
        let mut receive = async |heard: &mut Vec<String>, want: &str| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !heard.iter().any(|m| m.lines().any(|l| l == want)) {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, socket.recv(&mut buffer)).await {
                    Ok(Ok(n)) => heard.push(String::from_utf8_lossy(&buffer[..n]).into_owned()),
                    Ok(Err(e)) => panic!("{label}: recv: {e}"),
                    Err(_) => panic!("{label}: no {want} within 30 s; heard {heard:?}"),
                }
            }
        };
        receive(&mut heard, "READY=1").await;
        receive(&mut heard, "WATCHDOG=1").await;
        daemon.signal("TERM");
        receive(&mut heard, "STOPPING=1").await;
        let status = daemon.exit_within(Duration::from_secs(30)).await;
        assert!(status.success(), "{label}: exit {status}\n{}", daemon.log());

        let first = |state: &str| heard.iter().position(|m| m.lines().any(|l| l == state));
        let (ready, watchdog, stopping) =
            (first("READY=1"), first("WATCHDOG=1"), first("STOPPING=1"));
        assert!(
            ready < watchdog && watchdog < stopping,
            "{label}: out of order: {heard:?}"
        );
        // The status line says what runs.
        assert!(
            heard[ready.unwrap_or_default()].contains("STATUS=Running"),
            "{label}: {heard:?}"
        );
    }
}

/// The reload as a library call: what the SIGHUP handler does, without a process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_refuses_bad_reloads_and_hands_over_on_a_good_one() {
    for world in worlds().await {
        let label = world.label();
        let store = world.backend.open().await;
        let config = match Config::load(&world.config_path()) {
            Ok(c) => c,
            Err(e) => panic!("{label}: {e}"),
        };
        let mut supervisor = match Supervisor::start(
            SupervisorOptions {
                config_path: world.config_path(),
                store: store.clone(),
                clock: Arc::new(SystemClock),
                secrets: world.secrets(),
                endpoints: Endpoints::default(),
                retry: RetryPolicy::fast(),
                instance: format!("svc-test-{}", std::process::id()),
                notifier: Notifier::disabled(),
            },
            config,
        ) {
            Ok(s) => s,
            Err(e) => panic!("{label}: {e}"),
        };
        let first = supervisor.daemon();
        assert_eq!(supervisor.generation(), 0, "{label}");

        // A broken file: every problem located, the same daemon runs on.
        let good = world.config_text();
        let broken = good.replace("reload: false", "reload: maybe");
        let line = line_of(&broken, "reload: maybe");
        world.write_config(&broken);
        match supervisor.reload().await {
            Err(ReloadError::Config(errors)) => {
                let text = errors.to_string();
                assert!(
                    text.contains(&format!("nightdesk.yaml:{line}")),
                    "{label}: {text}"
                );
            }
            other => panic!("{label}: expected a config error, got {other:?}"),
        }
        // A rule that does not compile: refused by the build, the same daemon runs on.
        world.write_config(&good);
        world.write_rule(
            "broken",
            "fn on_order_status_changed(order, event) { let x = ; }\n",
        );
        match supervisor.reload().await {
            Err(ReloadError::Build(e)) => {
                assert!(e.to_string().contains("broken"), "{label}: {e}")
            }
            other => panic!("{label}: expected a build error, got {other:?}"),
        }
        // A missing credential names itself.
        let Ok(()) = std::fs::remove_file(world.dir.path().join("rules/broken.rhai")) else {
            panic!("{label}: remove the broken rule")
        };
        world.write_config(&good.replace(
            &format!("credential:{SLACK_CREDENTIAL}"),
            "credential:not-loaded",
        ));
        match supervisor.reload().await {
            Err(ReloadError::Build(e)) => {
                let text = e.to_string();
                assert!(
                    text.contains("channels.ops") && text.contains("credential:not-loaded"),
                    "{label}: {text}"
                );
            }
            other => panic!("{label}: expected a secrets error, got {other:?}"),
        }
        assert!(
            Arc::ptr_eq(&first, &supervisor.daemon()),
            "{label}: replaced anyway"
        );
        assert_eq!(supervisor.generation(), 0, "{label}");

        // A good one: a new daemon under a name of its own; the old one stops and
        // releases its leases, which the new one takes over.
        world.write_config(&good);
        world.write_rule("second", &alert_rule("second"));
        let reloaded = match supervisor.reload().await {
            Ok(r) => r,
            Err(e) => panic!("{label}: {e}"),
        };
        assert_eq!(reloaded.rules, 2, "{label}");
        assert!(reloaded.restart_needed_for.is_empty(), "{label}");
        assert_eq!(supervisor.generation(), 1, "{label}");
        assert_ne!(first.instance(), supervisor.daemon().instance(), "{label}");
        supervisor.retired().await;
        let leases = match store.leases().await {
            Ok(l) => l,
            Err(e) => panic!("{label}: {e}"),
        };
        assert!(
            leases
                .iter()
                .filter(|l| l.holder == first.instance())
                .all(|l| l.expires_at.timestamp_millis() == 0),
            "{label}: the old daemon kept leases: {leases:?}"
        );
        let next = supervisor.daemon();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !next.leases_held().iter().any(|l| l.starts_with("poll/")) {
            assert!(
                Instant::now() < deadline,
                "{label}: the new daemon never took the poll lease"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let instance = next.instance().to_owned();
        drop((first, next));
        if let Err(e) = supervisor.shutdown().await {
            panic!("{label}: {e}");
        }
        let leases = match store.leases().await {
            Ok(l) => l,
            Err(e) => panic!("{label}: {e}"),
        };
        assert!(
            leases
                .iter()
                .filter(|l| l.holder == instance)
                .all(|l| l.expires_at.timestamp_millis() == 0),
            "{label}: leases kept after shutdown: {leases:?}"
        );
    }
}
