//! The `health:` section: when nightdesk alerts the ops channel about itself (a stalled
//! source, a growing outbox backlog, actions stuck in `unknown`, a nearly full disk, a
//! rule asking for far more actions than usual). Every key is optional; the defaults
//! suit a seller polling every few minutes.
//!
//! ```yaml
//! health:
//!   stalled_after_intervals: 3   # alert when this many scheduled polls in a row brought no good one
//!   backlog_due_minutes: 15      # an action due longer than this is overdue
//!   backlog_growth_checks: 3     # alert when the overdue count grew at this many checks in a row
//!   unknown_after_hours: 4       # alert about an action left `unknown` this long without a decision
//!   disk_free_percent: 5         # alert when the SQLite file's disk has less free space than this
//!   runaway_factor: 5            # hold a rule's actions past this many times its usual daily count…
//!   runaway_min_actions: 20      # …but never below this many a day
//! ```
//!
//! Validation only: it reads no disk and no store.

use serde::Deserialize;

use super::Validator;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    #[serde(default)]
    stalled_after_intervals: Option<i64>,
    #[serde(default)]
    backlog_due_minutes: Option<i64>,
    #[serde(default)]
    backlog_growth_checks: Option<i64>,
    #[serde(default)]
    unknown_after_hours: Option<i64>,
    #[serde(default)]
    disk_free_percent: Option<f64>,
    #[serde(default)]
    runaway_factor: Option<f64>,
    #[serde(default)]
    runaway_min_actions: Option<i64>,
}

/// The health section, validated (defaults filled in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthConfig {
    /// A source is stalled when this many of its scheduled polls in a row passed
    /// without a good one.
    pub stalled_after_intervals: u32,
    /// An action (planned or retry) due longer than this counts as overdue.
    pub backlog_due_minutes: i64,
    /// Ops hear about the backlog when the overdue count grew at this many health
    /// checks in a row (one check a minute).
    pub backlog_growth_checks: u32,
    /// An action `unknown` longer than this without a person's decision is alerted.
    pub unknown_after_hours: i64,
    /// Below this share of free space on the SQLite file's filesystem, ops are alerted.
    pub disk_free_percent: f64,
    /// A rule asking for more than this many times its usual daily count of a kind of
    /// action has the rest of the day's actions of that kind held.
    pub runaway_factor: f64,
    /// The runaway limit is never below this many actions a day (a quiet rule's first
    /// busy day is not a runaway).
    pub runaway_min_actions: i64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            stalled_after_intervals: 3,
            backlog_due_minutes: 15,
            backlog_growth_checks: 3,
            unknown_after_hours: 4,
            disk_free_percent: 5.0,
            runaway_factor: 5.0,
            runaway_min_actions: 20,
        }
    }
}

impl Validator {
    pub(super) fn health(&mut self, raw: Option<RawHealth>) -> HealthConfig {
        let mut health = HealthConfig::default();
        let Some(raw) = raw else {
            return health;
        };
        if let Some(n) = raw.stalled_after_intervals {
            let n = self.range("health.stalled_after_intervals", n, 1, 1000);
            health.stalled_after_intervals =
                u32::try_from(n).unwrap_or(health.stalled_after_intervals);
        }
        if let Some(minutes) = raw.backlog_due_minutes {
            health.backlog_due_minutes =
                self.range("health.backlog_due_minutes", minutes, 1, 24 * 60);
        }
        if let Some(n) = raw.backlog_growth_checks {
            let n = self.range("health.backlog_growth_checks", n, 1, 1000);
            health.backlog_growth_checks = u32::try_from(n).unwrap_or(health.backlog_growth_checks);
        }
        if let Some(hours) = raw.unknown_after_hours {
            health.unknown_after_hours =
                self.range("health.unknown_after_hours", hours, 1, 24 * 30);
        }
        if let Some(percent) = raw.disk_free_percent {
            if !percent.is_finite() || !(0.0..100.0).contains(&percent) {
                self.error(
                    "health.disk_free_percent",
                    format!("{percent} is not a percentage from 0 (off) to below 100"),
                );
            }
            health.disk_free_percent = percent;
        }
        if let Some(factor) = raw.runaway_factor {
            if !factor.is_finite() || factor < 1.0 {
                self.error(
                    "health.runaway_factor",
                    format!("{factor} must be at least 1 (times the usual daily count)"),
                );
            }
            health.runaway_factor = factor;
        }
        if let Some(n) = raw.runaway_min_actions {
            health.runaway_min_actions = self.range("health.runaway_min_actions", n, 1, 1_000_000);
        }
        health
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::HealthConfig;
    use crate::config::{Config, ConfigErrors};

    const MINIMAL: &str = "store:\n  url: sqlite://x.db\nrules:\n  dir: rules\n";

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_str(text, Path::new("config/test.yaml"))
    }

    #[test]
    fn without_the_section_the_defaults_apply() {
        match parse(MINIMAL) {
            Ok(config) => assert_eq!(config.health, HealthConfig::default()),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn given_keys_replace_their_defaults_only() {
        let text =
            format!("{MINIMAL}health:\n  stalled_after_intervals: 5\n  runaway_factor: 2.5\n");
        match parse(&text) {
            Ok(config) => {
                assert_eq!(config.health.stalled_after_intervals, 5);
                assert_eq!(config.health.runaway_factor, 2.5);
                assert_eq!(config.health.runaway_min_actions, 20);
                assert_eq!(config.health.backlog_growth_checks, 3);
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn every_bad_value_is_reported_with_its_line_and_key() {
        let text = format!(
            "{MINIMAL}health:\n  stalled_after_intervals: 0\n  disk_free_percent: 120\n  runaway_factor: 0.5\n"
        );
        let errors = parse(&text).err().map(|e| e.0).unwrap_or_default();
        let found: Vec<(Option<usize>, &str)> =
            errors.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (Some(6), "health.stalled_after_intervals"),
                (Some(7), "health.disk_free_percent"),
                (Some(8), "health.runaway_factor"),
            ],
            "{errors:?}"
        );
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let text = format!("{MINIMAL}health:\n  stall_after: 3\n");
        let errors = parse(&text).err().map(|e| e.0).unwrap_or_default();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].message.contains("unknown field `stall_after`"),
            "{errors:?}"
        );
    }
}
