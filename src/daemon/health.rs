//! Alerts about nightdesk itself, to the ops channel (`rules.alert_channel`), grouped
//! like every alert there: a source that stopped polling, an outbox backlog that keeps
//! growing, actions left `unknown` without a decision, the SQLite file's disk nearly
//! full (checked every minute by [`Daemon::check_health`] under the `health` lease), and
//! a rule suddenly asking for far more actions than usual (checked as its actions enter
//! the outbox, next to the daily caps; see [`Daemon::runaway`]).
//!
//! Each condition is alerted once per occurrence: its topic (and so the outbox's
//! idempotency key) names the occurrence, e.g. a stalled source's last good poll, so a
//! condition that continues does not alert again and a new one after recovery does.
//! What a check remembers between runs (the backlog's trend, an alerted stall waiting
//! for its recovery note) lives in this instance's memory: after a restart or a lease
//! takeover the trend starts afresh, while stalls, unknown actions and runaways are
//! keyed by what the store holds and are not alerted twice.
//!
//! This module never acts upstream and never holds an alert: it only plans alerts and,
//! for a runaway rule, holds that rule's further non-alert actions of the day.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use tokio_util::sync::CancellationToken;

use super::Daemon;
use crate::config::StoreTarget;
use crate::model::PlannedAction;
use crate::schedule::Schedule;
use crate::store::StoreError;
use crate::telemetry;

/// The lease the health checks run under (one instance checks).
pub(super) const HEALTH_LEASE: &str = "health";

/// How often the health checks run.
const HEALTH_SCHEDULE: &str = "* * * * *";

/// How far back the backlog check reads the outbox (rows changed since, plus every
/// held or unknown row): an overdue action untouched for longer was counted, and
/// alerted about, while it was younger.
const BACKLOG_HORIZON: Duration = Duration::days(7);

/// How many past days a rule's usual daily count is the median of.
const USUAL_DAYS: i64 = 7;

/// Free and total bytes of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes available to nightdesk (not counting the blocks reserved for root).
    pub available: u64,
    pub total: u64,
}

impl DiskSpace {
    pub fn free_percent(&self) -> f64 {
        if self.total == 0 {
            return 100.0;
        }
        // Precision loss past 2^53 bytes is far below a percent.
        self.available as f64 * 100.0 / self.total as f64
    }
}

/// Reads the free space of the filesystem holding a path (tests give a fake one).
pub type DiskProbe = Arc<dyn Fn(&Path) -> std::io::Result<DiskSpace> + Send + Sync>;

/// The real probe: `statvfs` (or the Windows equivalent) through `fs4`.
pub fn filesystem_space(path: &Path) -> std::io::Result<DiskSpace> {
    let stats = fs4::statvfs(path)?;
    Ok(DiskSpace {
        available: stats.available_space(),
        total: stats.total_space(),
    })
}

/// What the health checks keep between runs, and how the disk is read.
pub(super) struct HealthState {
    memory: std::sync::Mutex<Memory>,
    disk: DiskProbe,
}

impl Default for HealthState {
    fn default() -> Self {
        Self {
            memory: std::sync::Mutex::default(),
            disk: Arc::new(filesystem_space),
        }
    }
}

impl HealthState {
    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Memory {
    /// When a source without a checkpoint (never polled well) was first looked at.
    first_seen: HashMap<String, DateTime<Utc>>,
    /// Sources alerted as stalled, with the last good poll the alert named.
    stalled: HashMap<String, DateTime<Utc>>,
    /// The current backlog episode (some action overdue), if any.
    backlog: Option<Backlog>,
    /// Since when the disk has been nearly full, if it is.
    disk_low_since: Option<DateTime<Utc>>,
    /// A rule's usual daily count of a kind, for the day it was computed on, and
    /// whether that day's runaway was logged.
    usual: HashMap<(String, &'static str), Usual>,
}

#[derive(Debug, Clone, Copy)]
struct Backlog {
    since: DateTime<Utc>,
    last_count: usize,
    /// Consecutive checks at which the overdue count grew.
    rises: u32,
    alerted: bool,
}

#[derive(Debug, Clone, Copy)]
struct Usual {
    day: NaiveDate,
    per_day: f64,
    logged: bool,
}

/// An alert a check wants raised, with what to log once it is new.
struct Raised {
    topic: String,
    text: String,
    note: Note,
}

enum Note {
    Stalled {
        source: String,
        last_good: DateTime<Utc>,
        missed: u32,
    },
    Recovered {
        source: String,
        stalled_since: DateTime<Utc>,
    },
    Backlog {
        overdue: usize,
        checks: u32,
    },
    BacklogCleared,
    Unknown {
        id: i64,
        kind: String,
        hours: i64,
    },
    Disk {
        space: DiskSpace,
    },
}

impl Note {
    fn emit(&self) {
        match self {
            Note::Stalled {
                source,
                last_good,
                missed,
            } => telemetry::source_stalled(source, *last_good, *missed),
            Note::Recovered {
                source,
                stalled_since,
            } => telemetry::source_recovered(source, *stalled_since),
            Note::Backlog { overdue, checks } => telemetry::backlog_growing(*overdue, *checks),
            Note::BacklogCleared => tracing::info!("Outbox backlog cleared."),
            Note::Unknown { id, kind, hours } => telemetry::action_stuck_unknown(*id, kind, *hours),
            Note::Disk { space } => {
                telemetry::disk_nearly_full(space.free_percent(), space.available);
            }
        }
    }
}

/// What one health check raised: the topics of the alerts that were new.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthReport {
    pub raised: Vec<String>,
}

/// The `n`-th time `schedule` fires after `after`.
fn nth_fire(schedule: &Schedule, after: DateTime<Utc>, n: u32) -> Option<DateTime<Utc>> {
    let mut at = after;
    for _ in 0..n {
        at = schedule.next_after(at)?;
    }
    Some(at)
}

fn when(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Daemon {
    /// Read free space with `probe` instead of the filesystem (tests fake a full disk).
    pub fn with_disk_probe(mut self, probe: DiskProbe) -> Self {
        self.health.disk = probe;
        self
    }

    /// Run the health checks on their schedule while this instance holds the lease.
    pub(super) async fn health_loop(&self, shutdown: &CancellationToken) {
        let schedule = match Schedule::parse(HEALTH_SCHEDULE) {
            Ok(schedule) => schedule,
            Err(e) => {
                tracing::error!(error = %e, "Health checks cannot be scheduled; none will run.");
                return;
            }
        };
        self.every(&schedule, shutdown, false, HEALTH_LEASE, || async {
            if let Err(e) = self.check_health().await {
                tracing::error!(error = %e, "Health check failed.");
            }
        })
        .await;
    }

    /// Look at the sources, the outbox and the disk, and alert ops about what is wrong
    /// (once per occurrence; see the module docs).
    pub async fn check_health(&self) -> Result<HealthReport, StoreError> {
        let now = self.clock.now();
        let mut raised = Vec::new();
        self.check_sources(now, &mut raised).await?;
        self.check_outbox(now, &mut raised).await?;
        self.check_disk(now, &mut raised);
        let mut report = HealthReport::default();
        if raised.is_empty() {
            return Ok(report);
        }
        let planned: Vec<(Raised, Option<PlannedAction>)> = raised
            .into_iter()
            .map(|r| {
                let alert = self.system_alert(&r.topic, r.text.clone());
                (r, alert)
            })
            .collect();
        let keys: Vec<String> = planned
            .iter()
            .filter_map(|(_, a)| a.as_ref().map(|a| a.idempotency_key.clone()))
            .collect();
        let known = self.store.existing_keys(&keys).await?;
        let mut alerts = Vec::new();
        for (raised, alert) in planned {
            if alert
                .as_ref()
                .is_some_and(|a| known.contains(&a.idempotency_key))
            {
                continue;
            }
            raised.note.emit();
            report.raised.push(raised.topic);
            alerts.extend(alert);
        }
        if !alerts.is_empty() {
            self.record(None, alerts, now).await?;
        }
        Ok(report)
    }

    /// A source is stalled when the `stalled_after_intervals` polls its schedule set
    /// after its last good poll have all come and gone (the next one is due) without
    /// a good one. The last good poll is when its checkpoint last moved (every good
    /// poll moves it); a source never polled well counts from when it was first
    /// looked at. A source stopped for refused credentials has its own alert.
    async fn check_sources(
        &self,
        now: DateTime<Utc>,
        raised: &mut Vec<Raised>,
    ) -> Result<(), StoreError> {
        // The last good poll as the poll health record has it; else when the source's
        // checkpoint last moved (every good poll moves it).
        let mut moved: HashMap<String, DateTime<Utc>> = self
            .store
            .checkpoints()
            .await?
            .into_iter()
            .map(|(source, _, moved)| (source, moved))
            .collect();
        for health in self.store.source_health().await? {
            if let Some(good) = health.last_good_at {
                moved.insert(health.source, good);
            }
        }
        let missed = self.config.health.stalled_after_intervals;
        let mut memory = self.health.memory();
        for source in &self.sources {
            let key = source.key();
            let last_good = match moved.get(key) {
                Some(at) => *at,
                None => *memory.first_seen.entry(key.to_owned()).or_insert(now),
            };
            if self.is_halted(key) {
                continue;
            }
            let stalled =
                nth_fire(source.schedule(), last_good, missed + 1).is_some_and(|due| due <= now);
            let alerted = memory.stalled.get(key).copied();
            if stalled {
                if alerted == Some(last_good) {
                    continue;
                }
                memory.stalled.insert(key.to_owned(), last_good);
                let text = format!(
                    "nightdesk: source {key} has not polled successfully for {missed} of its \
                     scheduled polls (schedule `{}`; last good poll {}). New orders and changes \
                     from it are not read, so rules do not see them. The failed polls are in \
                     the audit trail under source:{key}. nightdesk keeps trying and says so \
                     once a poll succeeds.",
                    source.schedule().as_str(),
                    when(last_good),
                );
                raised.push(Raised {
                    topic: format!("stalled/{key}/{}", last_good.timestamp()),
                    text,
                    note: Note::Stalled {
                        source: key.to_owned(),
                        last_good,
                        missed,
                    },
                });
            } else if let Some(was) = alerted
                && last_good > was
            {
                memory.stalled.remove(key);
                raised.push(Raised {
                    topic: format!("stalled/{key}/{}/ok", was.timestamp()),
                    text: format!(
                        "nightdesk: source {key} polls again (last good poll {}; stalled since {}).",
                        when(last_good),
                        when(was)
                    ),
                    note: Note::Recovered {
                        source: key.to_owned(),
                        stalled_since: was,
                    },
                });
            }
        }
        Ok(())
    }

    /// The backlog: planned or retry actions due for more than `backlog_due_minutes`
    /// are overdue. An episode starts when the overdue count leaves zero and ends when
    /// it is back at zero. Within it, a check whose count is above the previous check's
    /// is a rise (the first overdue action appearing is one), any other check resets
    /// the run; ops are alerted once per episode, when `backlog_growth_checks` checks
    /// in a row rose, and told when it clears.
    ///
    /// Unknown: each action in `unknown` whose state last changed more than
    /// `unknown_after_hours` ago is alerted once (again only if it becomes unknown anew).
    async fn check_outbox(
        &self,
        now: DateTime<Utc>,
        raised: &mut Vec<Raised>,
    ) -> Result<(), StoreError> {
        let health = self.config.health;
        let rows = self
            .store
            .outbox_changed_since(now - BACKLOG_HORIZON)
            .await?;
        let stuck_before = now - Duration::hours(health.unknown_after_hours);
        for row in rows
            .iter()
            .filter(|r| r.state == "unknown" && r.updated_at <= stuck_before)
        {
            let hours = (now - row.updated_at).num_hours();
            let error = row.last_error.as_deref().unwrap_or("no detail");
            raised.push(Raised {
                topic: format!("unknown/{}/{}", row.id, row.updated_at.timestamp_millis()),
                text: format!(
                    "nightdesk: {} action #{} (rule {}, {}) is still unknown after {hours} hours: \
                     it may or may not have happened ({error}). Check upstream, then \
                     `nightdesk approve {id}` if it did not happen (it is performed) or \
                     `nightdesk reject {id}` to leave it.",
                    row.kind,
                    row.id,
                    row.rule,
                    row.subject,
                    id = row.id
                ),
                note: Note::Unknown {
                    id: row.id,
                    kind: row.kind.clone(),
                    hours,
                },
            });
        }

        let overdue_before = now - Duration::minutes(health.backlog_due_minutes);
        let overdue: Vec<&crate::store::OutboxRow> = rows
            .iter()
            .filter(|r| {
                matches!(r.state.as_str(), "planned" | "retry")
                    && r.next_attempt_at <= overdue_before
            })
            .collect();
        let mut memory = self.health.memory();
        if overdue.is_empty() {
            if let Some(episode) = memory.backlog.take()
                && episode.alerted
            {
                raised.push(Raised {
                    topic: format!("backlog/{}/ok", episode.since.timestamp()),
                    text: "nightdesk: the outbox backlog has cleared; no action is overdue."
                        .to_owned(),
                    note: Note::BacklogCleared,
                });
            }
            return Ok(());
        }
        let episode = memory.backlog.get_or_insert(Backlog {
            since: now,
            last_count: 0,
            rises: 0,
            alerted: false,
        });
        if overdue.len() > episode.last_count {
            episode.rises += 1;
        } else {
            episode.rises = 0;
        }
        episode.last_count = overdue.len();
        if episode.alerted || episode.rises < health.backlog_growth_checks {
            return Ok(());
        }
        episode.alerted = true;
        let oldest = overdue
            .iter()
            .map(|r| r.next_attempt_at)
            .min()
            .unwrap_or(now);
        let mut kinds: Vec<&str> = overdue.iter().map(|r| r.kind.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        raised.push(Raised {
            topic: format!("backlog/{}", episode.since.timestamp()),
            text: format!(
                "nightdesk: the outbox backlog is growing: {} action(s) ({}) are overdue by more \
                 than {} minutes, the oldest due since {}, and the count rose at {} checks in a \
                 row. Actions are not being performed as fast as they are asked for: look for \
                 an upstream or channel refusing them, or an executor that stopped.",
                overdue.len(),
                kinds.join(", "),
                health.backlog_due_minutes,
                when(oldest),
                episode.rises,
            ),
            note: Note::Backlog {
                overdue: overdue.len(),
                checks: episode.rises,
            },
        });
        Ok(())
    }

    /// SQLite only: the filesystem holding the database file has less than
    /// `disk_free_percent` free. Alerted once per episode (until the space is back).
    /// PostgreSQL's disk is its server's, watched where the server runs: skipped.
    fn check_disk(&self, now: DateTime<Utc>, raised: &mut Vec<Raised>) {
        let threshold = self.config.health.disk_free_percent;
        if threshold <= 0.0 || self.store.backend() != "sqlite" {
            return;
        }
        let StoreTarget::Sqlite(file) = &self.config.store else {
            return;
        };
        // The file's folder: it exists whenever the file does, and before.
        let folder = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let space = match (self.health.disk)(folder) {
            Ok(space) => space,
            Err(e) => {
                tracing::warn!(path = %folder.display(), error = %e, "Cannot read the store's free disk space.");
                return;
            }
        };
        let mut memory = self.health.memory();
        if space.free_percent() >= threshold {
            memory.disk_low_since = None;
            return;
        }
        if memory.disk_low_since.is_some() {
            return;
        }
        memory.disk_low_since = Some(now);
        raised.push(Raised {
            topic: format!("disk/{}", now.timestamp()),
            text: format!(
                "nightdesk: the disk holding the database {} is nearly full: {:.1} % free \
                 ({} MiB of {} MiB), below the {threshold} % set in health.disk_free_percent. \
                 When it is full, nothing more can be stored: polls and actions stop. Free \
                 space or move the database.",
                file.display(),
                space.free_percent(),
                space.available / (1024 * 1024),
                space.total / (1024 * 1024),
            ),
            note: Note::Disk { space },
        });
    }

    /// Whether this action makes its rule a runaway: counting it, the rule has asked
    /// today (UTC) for at least `max(runaway_min_actions, runaway_factor × usual)`
    /// actions of its kind, the usual being the median of its daily counts over the
    /// previous 7 days. Then it is held, with the reason, and ops get one alert per rule
    /// and day. Alerts are never held for this (nor are nightdesk's own).
    pub(super) async fn runaway(
        &self,
        action: &PlannedAction,
        batch: &HashMap<(String, &'static str), i64>,
        stored: &mut super::StoredToday,
    ) -> Result<Option<(String, Option<PlannedAction>)>, StoreError> {
        let day_start = stored.day_start;
        let kind = action.request.kind();
        if kind == "alert" {
            return Ok(None);
        }
        let health = self.config.health;
        let rule = action.rule.as_str();
        let today = stored.count(self.store.as_ref(), Some(rule), kind).await?
            + batch.get(&(rule.to_owned(), kind)).copied().unwrap_or(0);
        // Below the floor there is nothing to compare: spare the history queries.
        if today < health.runaway_min_actions {
            return Ok(None);
        }
        let usual = self.usual_per_day(rule, kind, day_start).await?;
        // Rounded up: "5 × 2.5 a day" allows 13, not 12.
        let scaled = (health.runaway_factor * usual).ceil();
        let limit = if scaled >= i64::MAX as f64 {
            i64::MAX
        } else {
            (scaled as i64).max(health.runaway_min_actions)
        };
        if today < limit {
            return Ok(None);
        }
        let first_today = {
            let mut memory = self.health.memory();
            match memory.usual.get_mut(&(rule.to_owned(), kind)) {
                Some(entry) if !entry.logged => {
                    entry.logged = true;
                    true
                }
                _ => false,
            }
        };
        if first_today {
            telemetry::rule_runaway(rule, kind, today, usual);
        }
        let reason = format!(
            "possible runaway: rule {rule} asked for {today} {kind} actions today, its usual is \
             {usual} a day (held from {limit} on)"
        );
        let text = format!(
            "nightdesk: rule {rule} suddenly asks for far more {kind} actions than usual: {today} \
             today against a usual {usual} a day (the median of the last {USUAL_DAYS} days; the \
             limit is {limit}: {factor} times that, at least {min}). Its further {kind} actions \
             today are held, each announced with its id: `nightdesk approve <id>` performs one, \
             `nightdesk reject <id>` drops it. If the rule is wrong, fix its file (the reload \
             applies at once) and reject what it asked.",
            factor = health.runaway_factor,
            min = health.runaway_min_actions,
        );
        let topic = format!("runaway/{rule}/{}", day_start.format("%Y-%m-%d"));
        Ok(Some((reason, self.system_alert(&topic, text))))
    }

    /// The median of the rule's daily counts of `kind` over the previous days, read once
    /// a day per rule and kind (past days do not change).
    async fn usual_per_day(
        &self,
        rule: &str,
        kind: &'static str,
        day_start: DateTime<Utc>,
    ) -> Result<f64, StoreError> {
        let day = day_start.date_naive();
        if let Some(usual) = self.health.memory().usual.get(&(rule.to_owned(), kind))
            && usual.day == day
        {
            return Ok(usual.per_day);
        }
        // Counts since each of the last midnights; consecutive differences are days.
        let mut since = Vec::new();
        for days_back in 0..=USUAL_DAYS {
            since.push(
                self.store
                    .count_actions(kind, Some(rule), day_start - Duration::days(days_back))
                    .await?,
            );
        }
        let mut daily: Vec<i64> = since.windows(2).map(|w| w[1] - w[0]).collect();
        daily.sort_unstable();
        let per_day = match daily.len() {
            0 => 0.0,
            n if n % 2 == 1 => daily[n / 2] as f64,
            n => (daily[n / 2 - 1] + daily[n / 2]) as f64 / 2.0,
        };
        self.health.memory().usual.insert(
            (rule.to_owned(), kind),
            Usual {
                day,
                per_day,
                logged: false,
            },
        );
        Ok(per_day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_percent_of_an_empty_filesystem_is_not_a_division_by_zero() {
        let space = DiskSpace {
            available: 0,
            total: 0,
        };
        assert_eq!(space.free_percent(), 100.0);
        let space = DiskSpace {
            available: 2,
            total: 100,
        };
        assert!((space.free_percent() - 2.0).abs() < 1e-9);
    }

    #[test]
    fn the_nth_fire_follows_the_schedule() {
        let schedule = match Schedule::parse("*/5 * * * *") {
            Ok(s) => s,
            Err(e) => panic!("schedule: {e}"),
        };
        let start = match DateTime::parse_from_rfc3339("2026-11-22T12:01:00Z") {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => panic!("time: {e}"),
        };
        let fourth = nth_fire(&schedule, start, 4).map(|t| t.to_rfc3339());
        assert_eq!(fourth.as_deref(), Some("2026-11-22T12:20:00+00:00"));
    }
}
