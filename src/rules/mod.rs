//! Rules: the Rhai files in `rules/` that ops teams edit. A rule defines hooks, which see
//! an event and the current state of its subject and *ask* for actions; the engine turns
//! those requests into planned actions with idempotency keys. A rule performs no I/O.
//!
//! Hooks a rule may define (the maps are documented in [`view`]):
//! - `fn on_order_status_changed(order, event)`: a new order, or a status change;
//! - `fn on_order_sweep(order)`: every open order at each sweep (time-based rules);
//! - `fn on_buyer_message(msg)`: a buyer wrote (`msg.order` is the order, if found);
//! - `fn on_unanswered_message(msg)`: after `on_buyer_message`, only when no rule asked
//!   to reply to it (the substantive acknowledgement lives here);
//! - `fn on_sla_at_risk(msg, event)`: a message still has no substantive reply;
//! - `fn on_tracking_updated(shipment, event)`, `fn on_shipment_exception(shipment, event)`,
//!   `fn on_tracking_condition(shipment, event)` (`event.condition`: `not_scanned`,
//!   `stalled`, `late`, derived by nightdesk);
//! - `fn on_schedule(name)`: a named schedule fired.
//!
//! Actions (each returns a handle for `hold(action[, reason])`; each takes an optional
//! last `#{ key: "…", once_per: "day" | "week" }`): `alert(channel, text)`,
//! `reply(msg, template)`, `notify_buyer(order, message_type, template)`,
//! `refund(order, #{ reason, items?, amount? })`, `cancel(order, reason)`,
//! `tag(order_or_msg, name)`.
//!
//! Only hooks run: statements at the top level of a file are never executed (helper
//! functions are fine), and `import`, `eval` and every kind of I/O are unavailable.
//!
//! A rule that errs [`QUARANTINE_AFTER`] times in a row, or runs past its limits, is
//! quarantined (skipped) until its file changes; the other rules keep running.

pub mod check;
pub mod compliance;
mod engine;
pub mod fixtures;
pub mod outgoing;
pub mod reasons;
pub mod templates;
pub mod view;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rhai::{AST, CallFnOptions, Dynamic, Engine, EvalAltResult, Scope};
use sha2::{Digest, Sha256};

use crate::config::RuleLimits;
use chrono::{DateTime, Datelike, Utc};

use crate::model::{ActionRequest, PlannedAction, Subject};
use engine::{Collector, DeadlineGuard, TIMEOUT_MARKER};
pub use engine::{KeyOption, Period, RequestedAction};

/// Consecutive failures after which a rule is quarantined.
pub const QUARANTINE_AFTER: u32 = 3;

/// The hooks a rule may define, with their parameter counts.
pub const HOOKS: &[(&str, usize)] = &[
    (HOOK_ORDER_STATUS_CHANGED, 2),
    (HOOK_ORDER_SWEEP, 1),
    (HOOK_BUYER_MESSAGE, 1),
    (HOOK_UNANSWERED_MESSAGE, 1),
    (HOOK_SLA_AT_RISK, 2),
    (HOOK_TRACKING_UPDATED, 2),
    (HOOK_SHIPMENT_EXCEPTION, 2),
    (HOOK_TRACKING_CONDITION, 2),
    (HOOK_SCHEDULE, 1),
];
pub const HOOK_ORDER_STATUS_CHANGED: &str = "on_order_status_changed";
pub const HOOK_ORDER_SWEEP: &str = "on_order_sweep";
pub const HOOK_BUYER_MESSAGE: &str = "on_buyer_message";
pub const HOOK_UNANSWERED_MESSAGE: &str = "on_unanswered_message";
pub const HOOK_SLA_AT_RISK: &str = "on_sla_at_risk";
pub const HOOK_TRACKING_UPDATED: &str = "on_tracking_updated";
pub const HOOK_SHIPMENT_EXCEPTION: &str = "on_shipment_exception";
pub const HOOK_TRACKING_CONDITION: &str = "on_tracking_condition";
pub const HOOK_SCHEDULE: &str = "on_schedule";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}:{}: {message}", line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
    Compile {
        path: String,
        line: Option<usize>,
        message: String,
    },
    #[error("rule {rule} ({path}:{}): {message}", line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
    Runtime {
        rule: String,
        path: String,
        line: Option<usize>,
        message: String,
    },
    #[error("rule {rule} ({path}) ran past its limits: {message}")]
    Limit {
        rule: String,
        path: String,
        message: String,
    },
}

/// One compiled rule file.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub path: PathBuf,
    /// First 12 hex digits of the SHA-256 of the file: recorded with every action.
    pub version: String,
    hooks: BTreeSet<String>,
    ast: AST,
}

impl Rule {
    pub fn has_hook(&self, hook: &str) -> bool {
        self.hooks.contains(hook)
    }
}

/// Every rule of a folder, compiled.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

/// The result of one rule for one hook call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOutcome {
    /// The rule ran; it asked for these actions (possibly none).
    Ran {
        rule: String,
        version: String,
        requests: Vec<RequestedAction>,
    },
    Failed {
        rule: String,
        error: RuleError,
        quarantined_now: bool,
    },
    /// Skipped: quarantined earlier.
    Quarantined { rule: String },
}

#[derive(Debug, Default)]
struct Health {
    version: String,
    consecutive_failures: u32,
    quarantined: bool,
}

/// The hardened engine plus the health of each rule.
pub struct RuleEngine {
    engine: Engine,
    limits: RuleLimits,
    health: Mutex<HashMap<String, Health>>,
}

impl std::fmt::Debug for RuleEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl RuleEngine {
    pub fn new(limits: RuleLimits) -> Self {
        Self {
            engine: engine::harden(&limits),
            limits,
            health: Mutex::new(HashMap::new()),
        }
    }

    /// Compile one rule; the name is the file name without `.rhai`.
    pub fn compile(&self, path: &Path, source: &str) -> Result<Rule, RuleError> {
        let shown = path.display().to_string();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ast = self
            .engine
            .compile(source)
            .map_err(|e| RuleError::Compile {
                path: shown.clone(),
                line: e.position().line(),
                message: e.to_string(),
            })?;
        let mut hooks = BTreeSet::new();
        for f in ast.iter_functions() {
            if !f.name.starts_with("on_") {
                continue;
            }
            match HOOKS.iter().find(|(hook, _)| *hook == f.name) {
                Some((_, arity)) if *arity == f.params.len() => {
                    hooks.insert(f.name.to_owned());
                }
                Some((hook, arity)) => {
                    return Err(RuleError::Compile {
                        path: shown,
                        line: None,
                        message: format!(
                            "{hook} takes {arity} parameter(s), not {}",
                            f.params.len()
                        ),
                    });
                }
                None => {
                    let known: Vec<&str> = HOOKS.iter().map(|(h, _)| *h).collect();
                    return Err(RuleError::Compile {
                        path: shown,
                        line: None,
                        message: format!("unknown hook {}; hooks are {}", f.name, known.join(", ")),
                    });
                }
            }
        }
        if hooks.is_empty() {
            let known: Vec<&str> = HOOKS.iter().map(|(h, _)| *h).collect();
            return Err(RuleError::Compile {
                path: shown,
                line: None,
                message: format!(
                    "the rule defines no hook; define one of {}",
                    known.join(", ")
                ),
            });
        }
        if let Some((line, message)) = reasons::check_literals(source).into_iter().next() {
            return Err(RuleError::Compile {
                path: shown,
                line: Some(line),
                message,
            });
        }
        let version = hex::encode(&Sha256::digest(source.as_bytes())[..6]);
        Ok(Rule {
            name,
            path: path.to_owned(),
            version,
            hooks,
            ast,
        })
    }

    /// Compile every `*.rhai` file of `dir` (sorted by name); all errors at once.
    pub fn load_dir(&self, dir: &Path) -> Result<RuleSet, Vec<RuleError>> {
        let read_error = |reason: String| {
            vec![RuleError::Read {
                path: dir.display().to_string(),
                reason,
            }]
        };
        let entries = std::fs::read_dir(dir).map_err(|e| read_error(e.to_string()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rhai") && p.is_file())
            .collect();
        paths.sort();
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            match std::fs::read_to_string(&path) {
                Ok(source) => match self.compile(&path, &source) {
                    Ok(rule) => rules.push(rule),
                    Err(e) => errors.push(e),
                },
                Err(e) => errors.push(RuleError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }),
            }
        }
        if errors.is_empty() {
            Ok(RuleSet { rules })
        } else {
            Err(errors)
        }
    }

    /// Call `hook` with `args` on every rule that defines it.
    pub fn run(&self, rules: &RuleSet, hook: &str, args: &[Dynamic]) -> Vec<RuleOutcome> {
        rules
            .rules
            .iter()
            .filter(|r| r.has_hook(hook))
            .map(|rule| self.run_one(rule, hook, args))
            .collect()
    }

    fn run_one(&self, rule: &Rule, hook: &str, args: &[Dynamic]) -> RuleOutcome {
        if self.is_quarantined(rule) {
            return RuleOutcome::Quarantined {
                rule: rule.name.clone(),
            };
        }
        let collector = Collector::default();
        let result = {
            let _deadline = DeadlineGuard::set(Duration::from_millis(self.limits.timeout_ms));
            let options = CallFnOptions::new()
                .eval_ast(false)
                .rewind_scope(true)
                .with_tag(collector.clone());
            self.engine.call_fn_with_options::<Dynamic>(
                options,
                &mut Scope::new(),
                &rule.ast,
                hook,
                args.to_vec(),
            )
        };
        match result {
            Ok(_) => {
                self.record_success(rule);
                RuleOutcome::Ran {
                    rule: rule.name.clone(),
                    version: rule.version.clone(),
                    requests: collector.take(),
                }
            }
            Err(e) => {
                let error = self.describe(rule, &e);
                let limit = matches!(error, RuleError::Limit { .. });
                let quarantined_now = self.record_failure(rule, limit);
                if quarantined_now {
                    tracing::error!(rule = %rule.name, error = %error, "Rule quarantined; the other rules keep running.");
                } else {
                    tracing::warn!(rule = %rule.name, error = %error, "Rule failed.");
                }
                RuleOutcome::Failed {
                    rule: rule.name.clone(),
                    error,
                    quarantined_now,
                }
            }
        }
    }

    fn describe(&self, rule: &Rule, e: &EvalAltResult) -> RuleError {
        let path = rule.path.display().to_string();
        let inner = e.unwrap_inner();
        match inner {
            EvalAltResult::ErrorTerminated(..) => RuleError::Limit {
                rule: rule.name.clone(),
                path,
                message: format!("{TIMEOUT_MARKER} ({} ms)", self.limits.timeout_ms),
            },
            EvalAltResult::ErrorTooManyOperations(..)
            | EvalAltResult::ErrorStackOverflow(..)
            | EvalAltResult::ErrorDataTooLarge(..)
            | EvalAltResult::ErrorTooManyVariables(..) => RuleError::Limit {
                rule: rule.name.clone(),
                path,
                message: inner.to_string(),
            },
            _ => RuleError::Runtime {
                rule: rule.name.clone(),
                path,
                line: e.position().line(),
                message: e.to_string(),
            },
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_quarantined(&self, rule: &Rule) -> bool {
        self.health()
            .get(&rule.name)
            .is_some_and(|h| h.quarantined && h.version == rule.version)
    }

    fn record_success(&self, rule: &Rule) {
        let mut health = self.health();
        let h = health.entry(rule.name.clone()).or_default();
        *h = Health {
            version: rule.version.clone(),
            consecutive_failures: 0,
            quarantined: false,
        };
    }

    /// Returns true when this failure quarantines the rule.
    fn record_failure(&self, rule: &Rule, limit: bool) -> bool {
        let mut health = self.health();
        let h = health.entry(rule.name.clone()).or_default();
        if h.version != rule.version {
            *h = Health {
                version: rule.version.clone(),
                ..Health::default()
            };
        }
        h.consecutive_failures += 1;
        if !h.quarantined && (limit || h.consecutive_failures >= QUARANTINE_AFTER) {
            h.quarantined = true;
            return true;
        }
        false
    }

    /// Names of the rules quarantined now.
    pub fn quarantined(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .health()
            .iter()
            .filter(|(_, h)| h.quarantined)
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }
}

/// The idempotency key of an action: by default once per rule, subject, action kind
/// and content; `once_per` adds the UTC day or ISO week; an explicit key replaces the
/// subject and content.
pub fn idempotency_key(
    rule: &str,
    subject: &Subject,
    request: &ActionRequest,
    option: &KeyOption,
    now: DateTime<Utc>,
) -> String {
    let content = serde_json::to_vec(request).unwrap_or_default();
    let digest = hex::encode(&Sha256::digest(&content)[..8]);
    let kind = request.kind();
    match option {
        KeyOption::Content => format!("{rule}|{subject}|{kind}|{digest}"),
        KeyOption::OncePer(Period::Day) => format!(
            "{rule}|{subject}|{kind}|{digest}|{}",
            now.format("%Y-%m-%d")
        ),
        KeyOption::OncePer(Period::Week) => {
            let week = now.iso_week();
            format!(
                "{rule}|{subject}|{kind}|{digest}|{}-W{:02}",
                week.year(),
                week.week()
            )
        }
        KeyOption::Explicit(key) => format!("{rule}|key:{key}"),
    }
}

/// One line saying what an action does, for people (`test`, `replay`, `explain`).
pub fn describe_action(request: &ActionRequest, hold: Option<&str>) -> String {
    let held = hold.map(|r| format!(" [held: {r}]")).unwrap_or_default();
    let what = match request {
        ActionRequest::Alert { channel, text } => format!("alert {channel}: {text:?}"),
        ActionRequest::Reply { template, .. } => format!("reply with template {template}"),
        ActionRequest::NotifyBuyer {
            message_type,
            template,
            ..
        } => {
            format!("notify_buyer {message_type} with template {template}")
        }
        ActionRequest::Refund {
            reason,
            amount,
            items,
            ..
        } => {
            format!(
                "refund ({reason}) amount {} items {}",
                amount.as_deref().unwrap_or("full"),
                items.len()
            )
        }
        ActionRequest::Cancel { reason, .. } => format!("cancel ({reason})"),
        ActionRequest::Tag { name } => format!("tag {name}"),
    };
    format!("{what}{held}")
}

/// Turn what the rules asked for into planned actions; `subject` is the hook's own.
pub fn plan(outcomes: &[RuleOutcome], subject: &Subject, now: DateTime<Utc>) -> Vec<PlannedAction> {
    let mut planned = Vec::new();
    for outcome in outcomes {
        if let RuleOutcome::Ran {
            rule,
            version,
            requests,
        } = outcome
        {
            for requested in requests {
                let subject = requested.subject.clone().unwrap_or_else(|| subject.clone());
                planned.push(PlannedAction {
                    rule: rule.clone(),
                    rule_version: version.clone(),
                    idempotency_key: idempotency_key(
                        rule,
                        &subject,
                        &requested.request,
                        &requested.key,
                        now,
                    ),
                    request: requested.request.clone(),
                    hold: requested.hold.clone(),
                    dry_run: false,
                    subject,
                });
            }
        }
    }
    planned
}

#[cfg(test)]
mod tests;

/// Whether these outcomes include a reply to a buyer message: if not, the daemon calls
/// the `on_unanswered_message` hooks.
pub fn asked_for_reply(outcomes: &[RuleOutcome]) -> bool {
    outcomes.iter().any(|o| match o {
        RuleOutcome::Ran { requests, .. } => requests
            .iter()
            .any(|r| matches!(r.request, ActionRequest::Reply { .. })),
        _ => false,
    })
}
