//! The config file: parse (typed, unknown keys rejected) → validate (every error at once,
//! each with file, line and key) → a [`Config`] the daemon builds from.
//!
//! Validation is pure: it reads no environment, file or network. Secrets stay references
//! here and are resolved by the daemon's build step (see [`secret`]).

mod locate;
pub mod secret;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::schedule::Schedule;
pub use secret::{SecretRef, SecretResolver};

/// `live` performs actions; `dry-run` plans and records them but sends nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Live,
    DryRun,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::DryRun => "dry-run",
        }
    }
}

// ---------------------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: Mode,
    store: RawStore,
    rules: RawRules,
    #[serde(default)]
    server: Option<RawServer>,
    #[serde(default)]
    sweep: Option<RawSweep>,
    #[serde(default)]
    executor: Option<RawExecutor>,
    #[serde(default)]
    amazon: Option<RawAmazon>,
    #[serde(default)]
    channels: BTreeMap<String, RawChannel>,
    /// Most actions of each kind per UTC day, all rules together.
    #[serde(default)]
    caps: BTreeMap<String, u32>,
    /// Named schedules that call the rules' `on_schedule(name)` hook.
    #[serde(default)]
    schedules: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    /// `sqlite://PATH` (relative to the config file) or `postgres://…`.
    url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    dir: PathBuf,
    #[serde(default)]
    limits: Option<RawRuleLimits>,
    /// Where problems with rules are alerted (a channel name).
    #[serde(default)]
    alert_channel: Option<String>,
    /// Watch the folder and reload on change (default true).
    #[serde(default)]
    reload: Option<bool>,
    /// Per rule (by file name): mode and caps.
    #[serde(default)]
    overrides: BTreeMap<String, RawRuleOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleOverride {
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    caps: BTreeMap<String, u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleLimits {
    max_operations: Option<u64>,
    timeout_ms: Option<u64>,
    max_string_size: Option<usize>,
    max_array_size: Option<usize>,
    max_map_size: Option<usize>,
    max_call_levels: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    schedule: String,
    #[serde(default)]
    max_age_days: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecutor {
    max_attempts: Option<u32>,
    lease_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmazon {
    /// Name in the User-Agent Amazon asks for (`AppName/Version (Language=…)`).
    #[serde(default)]
    app_name: Option<String>,
    accounts: Vec<RawAmazonAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmazonAccount {
    name: String,
    region: String,
    marketplaces: Vec<String>,
    client_id: String,
    client_secret: String,
    refresh_token: String,
    schedule: String,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    lwa_endpoint: Option<String>,
    #[serde(default)]
    overlap_minutes: Option<i64>,
    #[serde(default)]
    initial_lookback_days: Option<i64>,
    #[serde(default)]
    page_size: Option<u32>,
}

/// A channel is a flat map (not a tagged enum) so serde keeps exact error lines.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    #[serde(rename = "type")]
    kind: ChannelKind,
    #[serde(default)]
    webhook_url: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ChannelKind {
    Slack,
}

// ---------------------------------------------------------------------------------------
// The validated config.

/// A config that passed validation. Secrets are still references.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub mode: Mode,
    pub store: StoreTarget,
    pub rules: RulesConfig,
    pub server_listen: Option<SocketAddr>,
    pub sweep: SweepConfig,
    pub executor: ExecutorConfig,
    pub amazon_app_name: String,
    pub amazon: Vec<AmazonAccount>,
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Most actions of each kind per UTC day, all rules together.
    pub caps: BTreeMap<String, u32>,
    /// Named schedules: each fire calls `on_schedule(name)`.
    pub schedules: Vec<(String, Schedule)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    Sqlite(PathBuf),
    /// The URL may carry a password, so it is kept as a reference-free string but never
    /// printed: see the `Debug` impl.
    Postgres(PostgresUrl),
}

/// A PostgreSQL URL whose `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Url::parse(&self.0) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("REDACTED"));
                }
                f.write_str(url.as_str())
            }
            Err(_) => f.write_str("postgres://[unparsable url]"),
        }
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesConfig {
    pub dir: PathBuf,
    pub limits: RuleLimits,
    /// Channel for alerts about rules themselves (reload failures, quarantines, caps).
    pub alert_channel: Option<String>,
    pub reload: bool,
    pub overrides: BTreeMap<String, RuleOverride>,
}

/// Settings of one rule that differ from the global ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleOverride {
    pub mode: Option<Mode>,
    /// Most actions of each kind per UTC day for this rule.
    pub caps: BTreeMap<String, u32>,
}

/// Sandbox limits for every rule evaluation (research/reliability.md §6 defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleLimits {
    pub max_operations: u64,
    pub timeout_ms: u64,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub max_call_levels: usize,
}

impl Default for RuleLimits {
    fn default() -> Self {
        Self {
            max_operations: 200_000,
            timeout_ms: 250,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
            max_call_levels: 32,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub schedule: Schedule,
    /// Orders purchased longer ago than this are no longer swept.
    pub max_age_days: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorConfig {
    pub max_attempts: u32,
    pub lease_seconds: i64,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            lease_seconds: 300,
        }
    }
}

/// SP-API regions and their production endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmazonRegion {
    NorthAmerica,
    Europe,
    FarEast,
}

impl AmazonRegion {
    fn parse(code: &str) -> Option<Self> {
        match code {
            "na" => Some(Self::NorthAmerica),
            "eu" => Some(Self::Europe),
            "fe" => Some(Self::FarEast),
            _ => None,
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            Self::NorthAmerica => "https://sellingpartnerapi-na.amazon.com",
            Self::Europe => "https://sellingpartnerapi-eu.amazon.com",
            Self::FarEast => "https://sellingpartnerapi-fe.amazon.com",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::NorthAmerica => "na",
            Self::Europe => "eu",
            Self::FarEast => "fe",
        }
    }
}

pub const DEFAULT_LWA_ENDPOINT: &str = "https://api.amazon.com/auth/o2/token";

/// Amazon marketplace ids by region (research/marketplaces.md §1.3).
const MARKETPLACES: &[(&str, &str, AmazonRegion)] = &[
    ("A2EUQ1WTGCTBG2", "CA", AmazonRegion::NorthAmerica),
    ("ATVPDKIKX0DER", "US", AmazonRegion::NorthAmerica),
    ("A1AM78C64UM0Y8", "MX", AmazonRegion::NorthAmerica),
    ("A2Q3Y263D00KWC", "BR", AmazonRegion::NorthAmerica),
    ("A28R8C7NBKEWEA", "IE", AmazonRegion::Europe),
    ("A1RKKUPIHCS9HS", "ES", AmazonRegion::Europe),
    ("A1F83G8C2ARO7P", "UK", AmazonRegion::Europe),
    ("A13V1IB3VIYZZH", "FR", AmazonRegion::Europe),
    ("AMEN7PMS3EDWL", "BE", AmazonRegion::Europe),
    ("A1805IZSGTT6HS", "NL", AmazonRegion::Europe),
    ("A1PA6795UKMFR9", "DE", AmazonRegion::Europe),
    ("APJ6JRA9NG5V4", "IT", AmazonRegion::Europe),
    ("A2NODRKZP88ZB9", "SE", AmazonRegion::Europe),
    ("AE08WJ6YKNBMC", "ZA", AmazonRegion::Europe),
    ("A1C3SOZRARQ6R3", "PL", AmazonRegion::Europe),
    ("ARBP9OOSHTCHU", "EG", AmazonRegion::Europe),
    ("A33AVAJ2PDY3EV", "TR", AmazonRegion::Europe),
    ("A17E79C6D8DWNP", "SA", AmazonRegion::Europe),
    ("A2VIGQ35RCS4UG", "AE", AmazonRegion::Europe),
    ("A21TJRUUN4KGV", "IN", AmazonRegion::Europe),
    ("A19VAU5U5O7RUS", "SG", AmazonRegion::FarEast),
    ("A39IBJ37TRP1C6", "AU", AmazonRegion::FarEast),
    ("A1VC38T7YXB528", "JP", AmazonRegion::FarEast),
];

/// One seller account on one SP-API region.
#[derive(Debug, Clone)]
pub struct AmazonAccount {
    pub name: String,
    pub region: AmazonRegion,
    pub marketplaces: Vec<String>,
    pub client_id: String,
    pub client_secret: SecretRef,
    pub refresh_token: SecretRef,
    pub schedule: Schedule,
    pub endpoint: Url,
    pub lwa_endpoint: Url,
    pub overlap_minutes: i64,
    pub initial_lookback_days: i64,
    pub page_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelConfig {
    Slack {
        webhook_url: SecretRef,
        username: Option<String>,
    },
}

// ---------------------------------------------------------------------------------------
// Errors.

/// One problem in the config, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the config:",
            if n == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Loading.

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line: None,
                key: String::new(),
                message: format!("cannot read the file: {e}"),
            }])
        })?;
        Self::from_str(&text, path)
    }

    /// Parse and validate config text; `path` names it in errors and anchors relative paths.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            // serde_norway prefixes the key path ("amazon.accounts[0]: …"); keep its text
            // but drop the trailing position, which we print in front instead.
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(at) => message[..at].to_owned(),
                None => message,
            };
            let (key, message) = match message.split_once(": ") {
                Some((key, rest)) if !key.contains(' ') => (key.to_owned(), rest.to_owned()),
                _ => (String::new(), message),
            };
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line,
                key,
                message,
            }])
        })?;
        let lines = locate::LineIndex::build(text);
        let mut v = Validator {
            file: path.to_owned(),
            lines,
            errors: Vec::new(),
        };
        let config = v.validate(raw, path);
        match config {
            Some(config) if v.errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors(v.errors)),
        }
    }
}

struct Validator {
    file: PathBuf,
    lines: locate::LineIndex,
    errors: Vec<ConfigError>,
}

impl Validator {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: self.lines.line_of(key),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn schedule(&mut self, key: &str, expr: &str) -> Option<Schedule> {
        match Schedule::parse(expr) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(key, e.to_string());
                None
            }
        }
    }

    fn secret(&mut self, key: &str, text: &str, base: &Path) -> Option<SecretRef> {
        match SecretRef::parse(text) {
            Ok(secret) => Some(secret.relative_to(base)),
            Err(message) => {
                self.error(key, message);
                None
            }
        }
    }

    fn url(&mut self, key: &str, text: &str) -> Option<Url> {
        match Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            Ok(_) => {
                self.error(key, format!("{text:?} is not an http(s) URL"));
                None
            }
            Err(e) => {
                self.error(key, format!("{text:?} is not a URL: {e}"));
                None
            }
        }
    }

    fn caps(&mut self, key: &str, caps: &BTreeMap<String, u32>) {
        for kind in caps.keys() {
            if !crate::model::ActionRequest::KINDS.contains(&kind.as_str()) {
                let kinds = crate::model::ActionRequest::KINDS.join(", ");
                self.error(
                    &format!("{key}.{kind}"),
                    format!("unknown action kind; kinds are {kinds}"),
                );
            }
        }
    }

    fn range(&mut self, key: &str, value: i64, min: i64, max: i64) -> i64 {
        if value < min || value > max {
            self.error(key, format!("{value} is out of range {min}..={max}"));
        }
        value
    }

    fn validate(&mut self, raw: RawConfig, path: &Path) -> Option<Config> {
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();

        let store = self.store(&raw.store.url, &base);

        let mut limits = RuleLimits::default();
        if let Some(l) = &raw.rules.limits {
            limits.max_operations = l.max_operations.unwrap_or(limits.max_operations);
            limits.timeout_ms = l.timeout_ms.unwrap_or(limits.timeout_ms);
            limits.max_string_size = l.max_string_size.unwrap_or(limits.max_string_size);
            limits.max_array_size = l.max_array_size.unwrap_or(limits.max_array_size);
            limits.max_map_size = l.max_map_size.unwrap_or(limits.max_map_size);
            limits.max_call_levels = l.max_call_levels.unwrap_or(limits.max_call_levels);
            if limits.max_operations == 0 {
                self.error(
                    "rules.limits.max_operations",
                    "0 would mean unlimited; give a limit",
                );
            }
            if limits.timeout_ms == 0 || limits.timeout_ms > 10_000 {
                self.error("rules.limits.timeout_ms", "must be between 1 and 10000 ms");
            }
        }
        let mut overrides = BTreeMap::new();
        for (name, o) in raw.rules.overrides {
            let key = format!("rules.overrides.{name}");
            self.caps(&format!("{key}.caps"), &o.caps);
            overrides.insert(
                name,
                RuleOverride {
                    mode: o.mode,
                    caps: o.caps,
                },
            );
        }
        self.caps("caps", &raw.caps);
        let alert_channel = match raw.rules.alert_channel {
            Some(name) if !raw.channels.contains_key(&name) => {
                self.error(
                    "rules.alert_channel",
                    format!("no channel named {name:?} under channels"),
                );
                None
            }
            Some(name) => Some(name),
            // By convention the ops channel hears about rule problems.
            None => raw.channels.contains_key("ops").then(|| "ops".to_owned()),
        };
        let rules = RulesConfig {
            dir: base.join(&raw.rules.dir),
            limits,
            alert_channel,
            reload: raw.rules.reload.unwrap_or(true),
            overrides,
        };
        let caps = raw.caps;
        let mut schedules = Vec::new();
        for (name, expr) in &raw.schedules {
            let key = format!("schedules.{name}");
            if !valid_name(name) {
                self.error(&key, "schedule names use letters, digits, '-' and '_'");
            }
            if let Some(schedule) = self.schedule(&key, expr) {
                schedules.push((name.clone(), schedule));
            }
        }

        let server_listen =
            raw.server
                .as_ref()
                .and_then(|s| match s.listen.parse::<SocketAddr>() {
                    Ok(addr) => Some(addr),
                    Err(_) => {
                        self.error(
                            "server.listen",
                            format!("{:?} is not an address such as 127.0.0.1:9464", s.listen),
                        );
                        None
                    }
                });

        let sweep_expr = raw
            .sweep
            .as_ref()
            .map_or("*/15 * * * *", |s| s.schedule.as_str());
        let sweep_schedule = self.schedule("sweep.schedule", sweep_expr);
        let max_age_days = raw
            .sweep
            .as_ref()
            .and_then(|s| s.max_age_days)
            .unwrap_or(90);
        let max_age_days = self.range("sweep.max_age_days", max_age_days, 1, 730);

        let mut executor = ExecutorConfig::default();
        if let Some(e) = &raw.executor {
            executor.max_attempts = e.max_attempts.unwrap_or(executor.max_attempts);
            executor.lease_seconds = e.lease_seconds.unwrap_or(executor.lease_seconds);
            self.range(
                "executor.max_attempts",
                i64::from(executor.max_attempts),
                1,
                30,
            );
            self.range("executor.lease_seconds", executor.lease_seconds, 5, 3600);
        }

        let mut channels = BTreeMap::new();
        for (name, channel) in raw.channels {
            let key = format!("channels.{name}");
            if !valid_name(&name) {
                self.error(&key, "channel names use letters, digits, '-' and '_'");
            }
            match channel.kind {
                ChannelKind::Slack => match channel.webhook_url {
                    Some(url) => {
                        if let Some(webhook_url) =
                            self.secret(&format!("{key}.webhook_url"), &url, &base)
                        {
                            channels.insert(
                                name,
                                ChannelConfig::Slack {
                                    webhook_url,
                                    username: channel.username,
                                },
                            );
                        }
                    }
                    None => self.error(&key, "a slack channel needs webhook_url"),
                },
            }
        }

        let amazon_app_name = raw
            .amazon
            .as_ref()
            .and_then(|a| a.app_name.clone())
            .unwrap_or_else(|| "nightdesk".to_owned());
        let mut amazon = Vec::new();
        let mut names = BTreeSet::new();
        for (i, account) in raw
            .amazon
            .map(|a| a.accounts)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let key = format!("amazon.accounts[{i}]");
            if !valid_name(&account.name) {
                self.error(
                    &format!("{key}.name"),
                    "account names use letters, digits, '-' and '_'",
                );
            }
            if !names.insert(account.name.clone()) {
                self.error(
                    &format!("{key}.name"),
                    format!("account {:?} is named twice", account.name),
                );
            }
            if let Some(account) = self.amazon_account(&key, account, &base) {
                amazon.push(account);
            }
        }

        let config = Config {
            path: path.to_owned(),
            mode: raw.mode,
            store: store?,
            rules,
            server_listen,
            sweep: SweepConfig {
                schedule: sweep_schedule?,
                max_age_days,
            },
            executor,
            amazon_app_name,
            amazon,
            channels,
            caps,
            schedules,
        };
        Some(config)
    }

    fn store(&mut self, url: &str, base: &Path) -> Option<StoreTarget> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                self.error("store.url", "sqlite:// needs a file path");
                return None;
            }
            return Some(StoreTarget::Sqlite(base.join(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if Url::parse(url).is_err() {
                self.error("store.url", "the postgres URL does not parse");
                return None;
            }
            return Some(StoreTarget::Postgres(PostgresUrl::new(url)));
        }
        self.error("store.url", "use sqlite://PATH or postgres://USER@HOST/DB");
        None
    }

    fn amazon_account(
        &mut self,
        key: &str,
        raw: RawAmazonAccount,
        base: &Path,
    ) -> Option<AmazonAccount> {
        let region = AmazonRegion::parse(&raw.region);
        if region.is_none() {
            self.error(
                &format!("{key}.region"),
                format!("{:?} is not one of na, eu, fe", raw.region),
            );
        }
        if raw.marketplaces.is_empty() {
            self.error(
                &format!("{key}.marketplaces"),
                "name at least one marketplace id",
            );
        }
        if raw.marketplaces.len() > 50 {
            self.error(
                &format!("{key}.marketplaces"),
                "getOrders takes at most 50 marketplace ids",
            );
        }
        for (j, id) in raw.marketplaces.iter().enumerate() {
            let mkey = format!("{key}.marketplaces[{j}]");
            match MARKETPLACES.iter().find(|(known, _, _)| known == id) {
                None => self.error(&mkey, format!("{id:?} is not an Amazon marketplace id")),
                Some((_, country, r)) if Some(*r) != region && region.is_some() => self.error(
                    &mkey,
                    format!(
                        "{id} ({country}) is served by the {} region, not {}",
                        r.code(),
                        raw.region
                    ),
                ),
                Some(_) => {}
            }
        }
        if raw.client_id.trim().is_empty() {
            self.error(&format!("{key}.client_id"), "must not be empty");
        }
        let schedule = self.schedule(&format!("{key}.schedule"), &raw.schedule);
        let endpoint = match (&raw.endpoint, region) {
            (Some(text), _) => self.url(&format!("{key}.endpoint"), text),
            (None, Some(region)) => Url::parse(region.endpoint()).ok(),
            (None, None) => None,
        };
        let lwa_endpoint = self.url(
            &format!("{key}.lwa_endpoint"),
            raw.lwa_endpoint.as_deref().unwrap_or(DEFAULT_LWA_ENDPOINT),
        );
        let overlap_minutes = self.range(
            &format!("{key}.overlap_minutes"),
            raw.overlap_minutes.unwrap_or(10),
            0,
            1440,
        );
        let initial_lookback_days = self.range(
            &format!("{key}.initial_lookback_days"),
            raw.initial_lookback_days.unwrap_or(7),
            1,
            730,
        );
        let client_secret = self.secret(&format!("{key}.client_secret"), &raw.client_secret, base);
        let refresh_token = self.secret(&format!("{key}.refresh_token"), &raw.refresh_token, base);
        let page_size = raw.page_size.unwrap_or(100);
        self.range(&format!("{key}.page_size"), i64::from(page_size), 1, 100);
        Some(AmazonAccount {
            name: raw.name,
            region: region?,
            marketplaces: raw.marketplaces,
            client_id: raw.client_id,
            client_secret: client_secret?,
            refresh_token: refresh_token?,
            schedule: schedule?,
            endpoint: endpoint?,
            lwa_endpoint: lwa_endpoint?,
            overlap_minutes,
            initial_lookback_days,
            page_size,
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests;
