//! Running nightdesk as a long-lived service: the [`Supervisor`] that owns the running
//! [`Daemon`] and replaces it on reload, and the systemd notifications ([`Notifier`]):
//! `READY=1`, `WATCHDOG=1` while the daemon's heartbeat moves, `RELOADING=1`,
//! `STOPPING=1` and one-line `STATUS=` texts. Every notification is a no-op when
//! `NOTIFY_SOCKET` is unset (not under systemd).
//!
//! It must never ping the watchdog for a daemon whose scheduler stopped coming round (the
//! pings stop, so systemd restarts the process), never swap in a config that fails to
//! load or build or that names another store (the last good daemon keeps running), and
//! never drop an action in flight: a replaced daemon is stopped gracefully, finishing
//! what it claimed and releasing its leases.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Duration, Utc};
use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::SharedClock;
use crate::config::{Config, ConfigErrors, SecretResolver};
use crate::daemon::{BuildError, Daemon, DaemonError, DaemonOptions, Endpoints};
use crate::http::RetryPolicy;
use crate::store::Store;

/// How long a stopping daemon may take in all: the daemon's own 30 s for its tasks, its
/// lease release, and a margin. Past it the process exits anyway: the leases then expire
/// on their own and unfinished actions are recovered at the next start. The unit's
/// `TimeoutStopSec=35` is above it.
pub const STOP_BOUND: StdDuration = StdDuration::from_secs(33);

/// The least age at which a heartbeat counts as stuck, whatever `WATCHDOG_USEC` says: the
/// executor beats before each pass, and one pass over many slow upstream calls may
/// legitimately take a while.
pub const MIN_STALE_AFTER: Duration = Duration::seconds(60);

/// systemd notifications. Failures to notify are logged, never fatal: the daemon's work
/// does not depend on systemd hearing about it.
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    /// Notifies only when systemd gave a socket (`NOTIFY_SOCKET`).
    pub fn from_env() -> Self {
        Self {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty()),
        }
    }

    /// A notifier that never sends (the `--once` run, tests).
    pub fn disabled() -> Self {
        Self { enabled: false }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "Cannot notify systemd.");
        }
    }

    /// `READY=1` with a status line: startup (or a reload) is complete.
    pub fn ready(&self, status: &str) {
        let status = one_line(status);
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (which systemd ≥ 253 requires for
    /// `Type=notify-reload` and ignores otherwise); `READY=1` follows when done.
    pub fn reloading(&self) {
        let status = NotifyState::Status("Reloading the config and rules");
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now, status]),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the monotonic clock for systemd.");
                self.send(&[NotifyState::Reloading, status]);
            }
        }
    }

    /// `STOPPING=1`: shutdown started.
    pub fn stopping(&self, status: &str) {
        let status = one_line(status);
        self.send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
    }

    /// `STATUS=`: what `systemctl status` shows.
    pub fn status(&self, status: &str) {
        let status = one_line(status);
        self.send(&[NotifyState::Status(&status)]);
    }

    /// `WATCHDOG=1`: the service is alive.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

/// `STATUS=` is one line of the notification datagram.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a heartbeat taken at `heartbeat` still counts as alive at `now`.
pub fn heartbeat_is_recent(
    heartbeat: DateTime<Utc>,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> bool {
    now - heartbeat <= stale_after
}

/// How stale a heartbeat may get for a watchdog of `timeout`: the timeout itself, but
/// never less than [`MIN_STALE_AFTER`].
pub fn stale_after(timeout: StdDuration) -> Duration {
    Duration::from_std(timeout)
        .unwrap_or(MIN_STALE_AFTER)
        .max(MIN_STALE_AFTER)
}

/// Everything a daemon is built from except the config, which is read again at each
/// reload.
pub struct SupervisorOptions {
    pub config_path: PathBuf,
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    /// Resolved anew at each build, so a rotated secret file is picked up by a reload.
    pub secrets: SecretResolver,
    pub endpoints: Endpoints,
    pub retry: RetryPolicy,
    /// The instance name of the first daemon; each reload's daemon gets a suffix.
    pub instance: String,
    pub notifier: Notifier,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not load: permanent until someone fixes it.
    #[error("{0}")]
    Config(ConfigErrors),
    /// The store cannot change under a running process.
    #[error(
        "store.url changed in {0}: a reload keeps the store it started with; restart nightdesk to switch stores"
    )]
    StoreChanged(PathBuf),
    /// Secrets, rules, clients: what `Daemon::build` refused.
    #[error("{0}")]
    Build(#[from] BuildError),
}

impl ReloadError {
    /// One line per problem, for the log (config errors keep their file:line:key).
    pub fn problems(&self) -> Vec<String> {
        match self {
            ReloadError::Config(errors) => errors.0.iter().map(ToString::to_string).collect(),
            other => other
                .to_string()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The new daemon's instance name (in leases and logs).
    pub instance: String,
    pub rules: usize,
    /// Settings that were read but only take effect at the next restart.
    pub restart_needed_for: Vec<String>,
}

/// A daemon that runs, and how to stop it.
struct Running {
    daemon: Arc<Daemon>,
    stop: CancellationToken,
    /// `None` once it has been awaited (it ended on its own).
    task: Option<JoinHandle<Result<(), DaemonError>>>,
}

impl Running {
    fn start(daemon: Arc<Daemon>) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(daemon.clone().run(stop.clone()));
        Self {
            daemon,
            stop,
            task: Some(task),
        }
    }

    /// Stop claiming, finish what is in flight, release the leases.
    async fn finish(mut self) -> Result<(), DaemonError> {
        self.stop.cancel();
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(instance = %self.daemon.instance(), error = %e, "The daemon's task failed.");
                Ok(())
            }
        }
    }
}

/// Owns the running daemon: starts it, replaces it on reload (the new one starts before
/// the old one stops, on the same store), and stops everything at shutdown.
pub struct Supervisor {
    options: SupervisorOptions,
    /// The daemon in force, for the watchdog (which outlives reloads).
    current: Arc<ArcSwap<Daemon>>,
    running: Running,
    /// Replaced daemons still finishing their actions.
    retiring: TaskTracker,
    generation: u32,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("config", &self.options.config_path)
            .field("instance", &self.running.daemon.instance())
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Build the daemon from `config` (already loaded from `options.config_path`) and
    /// start its tasks. Sends nothing to systemd yet: call [`Supervisor::ready`] once the
    /// rest of the process (the HTTP server) is up too.
    pub fn start(options: SupervisorOptions, config: Config) -> Result<Self, BuildError> {
        let daemon = Arc::new(Self::build(&options, config, options.instance.clone())?);
        let running = Running::start(daemon.clone());
        Ok(Self {
            options,
            current: Arc::new(ArcSwap::new(daemon)),
            running,
            retiring: TaskTracker::new(),
            generation: 0,
        })
    }

    fn build(
        options: &SupervisorOptions,
        config: Config,
        instance: String,
    ) -> Result<Daemon, BuildError> {
        Daemon::build(DaemonOptions {
            config,
            store: options.store.clone(),
            clock: options.clock.clone(),
            secrets: options.secrets.clone(),
            endpoints: options.endpoints.clone(),
            retry: options.retry,
            instance,
        })
    }

    /// The daemon in force now.
    pub fn daemon(&self) -> Arc<Daemon> {
        self.running.daemon.clone()
    }

    /// The daemon in force, as reloads swap it (for the HTTP server).
    pub fn current(&self) -> Arc<ArcSwap<Daemon>> {
        self.current.clone()
    }

    /// How many reloads succeeded.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn config_path(&self) -> &Path {
        &self.options.config_path
    }

    /// A one-line summary for `STATUS=`.
    pub fn status_line(&self) -> String {
        let daemon = &self.running.daemon;
        format!(
            "Running {} ({} mode): {} rule(s) loaded",
            daemon.instance(),
            daemon.config().mode.as_str(),
            daemon.loaded_rules().len(),
        )
    }

    /// `READY=1`: the daemon is built, its tasks started.
    pub fn ready(&self) {
        let status = self.status_line();
        tracing::info!(instance = %self.running.daemon.instance(), "{status}");
        self.options.notifier.ready(&status);
    }

    /// Read the config file again and replace the daemon with one built from it. On any
    /// error the running daemon is left alone and every problem is logged.
    pub async fn reload(&mut self) -> Result<Reloaded, ReloadError> {
        let notifier = self.options.notifier;
        notifier.reloading();
        tracing::info!(config = %self.options.config_path.display(), "Reloading the config and rules.");
        let result = self.replace();
        match &result {
            Ok(reloaded) => {
                tracing::info!(
                    instance = %reloaded.instance,
                    rules = reloaded.rules,
                    "Reloaded: the new daemon runs; the previous one finishes its actions in flight and stops."
                );
                for setting in &reloaded.restart_needed_for {
                    tracing::warn!(
                        setting = %setting,
                        "{setting} changed: it takes effect at the next restart, not at a reload."
                    );
                }
                notifier.ready(&self.status_line());
            }
            Err(error) => {
                let problems = error.problems();
                for problem in &problems {
                    tracing::error!(problem = %problem, "Reload refused: {problem}");
                }
                tracing::error!(
                    problems = problems.len(),
                    "Reload refused; the last good config and rules keep running."
                );
                notifier.ready(&format!(
                    "{}; last reload refused ({} problem(s), see the log)",
                    self.status_line(),
                    problems.len()
                ));
            }
        }
        result
    }

    fn replace(&mut self) -> Result<Reloaded, ReloadError> {
        let config = Config::load(&self.options.config_path).map_err(ReloadError::Config)?;
        let old = self.running.daemon.config();
        if config.store != old.store {
            return Err(ReloadError::StoreChanged(config.path));
        }
        let mut restart_needed_for = Vec::new();
        if config.server_listen != old.server_listen {
            restart_needed_for.push("server.listen".to_owned());
        }
        if config.approvals.token != old.approvals.token {
            restart_needed_for.push("approvals.token".to_owned());
        }
        let generation = self.generation + 1;
        // A name of its own: the new daemon takes the scheduled work over only once the old
        // one released it, so no poll ever runs twice at once.
        let instance = format!("{}-reload{generation}", self.options.instance);
        let daemon = Arc::new(Self::build(&self.options, config, instance.clone())?);
        let rules = daemon.loaded_rules().len();
        let previous = std::mem::replace(&mut self.running, Running::start(daemon.clone()));
        self.current.store(daemon);
        self.generation = generation;
        previous.stop.cancel();
        self.retiring.spawn(async move {
            let instance = previous.daemon.instance().to_owned();
            if let Err(e) = previous.finish().await {
                tracing::error!(instance = %instance, error = %e, "The replaced daemon stopped with an error.");
            }
        });
        Ok(Reloaded {
            instance,
            rules,
            restart_needed_for,
        })
    }

    /// Wait until every replaced daemon has stopped (tests; shutdown does it too).
    pub async fn retired(&self) {
        self.retiring.close();
        self.retiring.wait().await;
        self.retiring.reopen();
    }

    /// Resolves if the running daemon's task ended by itself (it only should at
    /// shutdown): the process then exits instead of idling without a daemon.
    pub async fn ended(&mut self) -> Result<(), DaemonError> {
        let Some(task) = self.running.task.as_mut() else {
            return std::future::pending().await;
        };
        let result = task.await;
        self.running.task = None;
        match result {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "The daemon's task failed.");
                Ok(())
            }
        }
    }

    /// Ping the systemd watchdog at half its timeout while the daemon's heartbeat is
    /// recent; withhold the ping while it is stale, so systemd restarts a stuck process.
    /// Returns `None` when systemd asked for no watchdog.
    pub fn spawn_watchdog(&self, stop: CancellationToken) -> Option<JoinHandle<()>> {
        let notifier = self.options.notifier;
        if !notifier.is_enabled() {
            return None;
        }
        let timeout = sd_notify::watchdog_enabled()?;
        let period = (timeout / 2).max(StdDuration::from_millis(10));
        let stale = stale_after(timeout);
        let current = self.current.clone();
        let clock = self.options.clock.clone();
        tracing::info!(
            timeout_ms = timeout.as_millis() as u64,
            "systemd watchdog on: pinging while the scheduler keeps coming round."
        );
        Some(tokio::spawn(async move {
            let mut withheld = false;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(period) => {}
                }
                let heartbeat = current.load().heartbeat();
                if heartbeat_is_recent(heartbeat, clock.now(), stale) {
                    if withheld {
                        tracing::info!("The scheduler came round again; watchdog pings resume.");
                        withheld = false;
                    }
                    notifier.watchdog();
                } else if !withheld {
                    withheld = true;
                    tracing::error!(
                        %heartbeat,
                        "The scheduler has not come round for too long; withholding the watchdog ping so systemd restarts nightdesk."
                    );
                }
            }
        }))
    }

    /// Stop everything: `STOPPING=1`, no new claims, actions in flight finished, leases
    /// released; replaced daemons still finishing are awaited too. Bounded by
    /// [`STOP_BOUND`].
    pub async fn shutdown(self) -> Result<(), DaemonError> {
        self.options
            .notifier
            .stopping("Stopping: finishing actions in flight, then releasing leases");
        tracing::info!("Stopping: no new claims; finishing actions in flight.");
        let Supervisor {
            running, retiring, ..
        } = self;
        let stopping = async move {
            let result = running.finish().await;
            retiring.close();
            retiring.wait().await;
            result
        };
        match tokio::time::timeout(STOP_BOUND, stopping).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    "Stopping took longer than {} s; exiting anyway: leases expire on their own and unfinished actions are recovered at the next start.",
                    STOP_BOUND.as_secs()
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 2, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn a_stale_heartbeat_withholds_the_ping() {
        let stale = stale_after(StdDuration::from_secs(30));
        assert_eq!(stale, MIN_STALE_AFTER);
        assert!(heartbeat_is_recent(
            t0(),
            t0() + Duration::seconds(5),
            stale
        ));
        assert!(heartbeat_is_recent(t0(), t0() + stale, stale));
        assert!(!heartbeat_is_recent(
            t0(),
            t0() + stale + Duration::seconds(1),
            stale
        ));
        // A daemon that never beat (epoch) is stale.
        assert!(!heartbeat_is_recent(DateTime::default(), t0(), stale));
    }

    #[test]
    fn a_long_watchdog_timeout_is_the_stale_bound() {
        assert_eq!(
            stale_after(StdDuration::from_secs(300)),
            Duration::seconds(300)
        );
    }

    #[test]
    fn status_text_is_one_line() {
        assert_eq!(one_line("a\nb  c\r\n"), "a b c");
    }
}
