//! The config file: parse (typed, unknown keys rejected) → validate (every error at once,
//! each with file, line and key) → a [`Config`] the daemon builds from.
//!
//! Validation is pure: it reads no environment, file or network. Secrets stay references
//! here and are resolved by the daemon's build step (see [`secret`]).

mod carriers;
mod health;
mod locate;
mod mail;
mod marketplaces;
pub mod secret;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use url::Url;

use crate::schedule::Schedule;
pub use carriers::{CarrierAccount, CarrierCredentials, CarriersConfig};
pub use health::HealthConfig;
pub use mail::{MailConfig, MailSource, MailboxConfig};
pub use marketplaces::{
    Marketplace, MarketplaceAccount, MarketplaceCredentials, SHOPIFY_API_VERSION,
};
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
    carriers: Option<carriers::RawCarriers>,
    #[serde(default)]
    mail: Option<mail::RawMail>,
    #[serde(default)]
    shopify: Option<marketplaces::RawMarketplace>,
    #[serde(default)]
    ebay: Option<marketplaces::RawMarketplace>,
    #[serde(default)]
    walmart: Option<marketplaces::RawMarketplace>,
    #[serde(default)]
    channels: BTreeMap<String, RawChannel>,
    /// Most actions of each kind per UTC day, all rules together.
    #[serde(default)]
    caps: BTreeMap<String, u32>,
    /// Named schedules that call the rules' `on_schedule(name)` hook.
    #[serde(default)]
    schedules: BTreeMap<String, String>,
    #[serde(default)]
    approvals: Option<RawApprovals>,
    #[serde(default)]
    summary: Option<RawSummary>,
    #[serde(default)]
    health: Option<health::RawHealth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    /// Refunds above this amount (in the order's currency) wait for a person.
    #[serde(default)]
    refund_above: Option<f64>,
    /// Bearer token for `POST /actions/{id}/approve|reject`; without it the endpoint is off.
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSummary {
    schedule: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    channel: Option<String>,
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
    /// How often a submitted Amazon feed is looked at while it is processed.
    #[serde(default)]
    feed_poll_seconds: Option<i64>,
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
    /// The seller's merchant token, the `MerchantIdentifier` of order feeds (refunds and
    /// cancellations); without it those actions fail with a clear reason.
    #[serde(default)]
    seller_id: Option<String>,
    /// Poll Multi-Channel Fulfillment tracking (Fulfillment Outbound) after each orders
    /// poll; on unless turned off.
    #[serde(default)]
    fba_tracking: Option<bool>,
}

/// A channel is a flat map (not a tagged enum) so serde keeps exact error lines.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    #[serde(rename = "type")]
    kind: ChannelKind,
    /// slack, teams, discord, google_chat: the incoming-webhook URL (a secret).
    #[serde(default)]
    webhook_url: Option<String>,
    /// webhook: the receiver's URL (a secret).
    #[serde(default)]
    url: Option<String>,
    /// webhook: the HMAC-SHA256 key (a secret).
    #[serde(default)]
    signing_secret: Option<String>,
    #[serde(default)]
    username: Option<String>,
    /// email: `smtp://user:pass@host:587?tls=required` or `smtps://…:465` (a secret).
    #[serde(default)]
    smtp_url: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    quiet_hours: Option<RawQuietHours>,
    /// Alerts of one rule within this many seconds go out as one message (default 120).
    #[serde(default)]
    group_window_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuietHours {
    from: String,
    to: String,
    #[serde(default)]
    timezone: Option<String>,
}

fn kind_name(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Slack => "slack",
        ChannelKind::Teams => "teams",
        ChannelKind::Discord => "discord",
        ChannelKind::GoogleChat => "google_chat",
        ChannelKind::Webhook => "webhook",
        ChannelKind::Email => "email",
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChannelKind {
    Slack,
    Teams,
    Discord,
    GoogleChat,
    Webhook,
    Email,
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
    /// The carriers nightdesk asks itself; `None` when the section is absent.
    pub carriers: Option<CarriersConfig>,
    /// The seller mailboxes buyer mail is read from; `None` when the section is absent.
    pub mail: Option<MailConfig>,
    /// The seller's accounts on Shopify, eBay and Walmart.
    pub marketplaces: Vec<MarketplaceAccount>,
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Most actions of each kind per UTC day, all rules together.
    pub caps: BTreeMap<String, u32>,
    /// Named schedules: each fire calls `on_schedule(name)`.
    pub schedules: Vec<(String, Schedule)>,
    pub approvals: ApprovalConfig,
    /// The morning summary, if configured.
    pub summary: Option<SummaryConfig>,
    /// When nightdesk alerts ops about itself.
    pub health: HealthConfig,
}

#[derive(Debug, Clone, Default)]
pub struct ApprovalConfig {
    /// Refunds above this amount (order currency) are held for a person.
    pub refund_above: Option<f64>,
    /// Bearer token of the HTTP approval endpoint.
    pub token: Option<SecretRef>,
}

#[derive(Debug, Clone)]
pub struct SummaryConfig {
    pub schedule: Schedule,
    /// A channel name; defaults to `rules.alert_channel`.
    pub channel: Option<String>,
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
    pub feed_poll_seconds: i64,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            lease_seconds: 300,
            feed_poll_seconds: 60,
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
    pub seller_id: Option<String>,
    /// Poll FBA Multi-Channel Fulfillment tracking after each orders poll.
    pub fba_tracking: bool,
}

/// One configured chat destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    pub target: ChannelTarget,
    pub quiet_hours: Option<QuietHours>,
    /// Alerts of one rule within this window go out as one message.
    pub group_window: chrono::Duration,
}

/// Where a channel delivers. Every URL is a secret (webhook URLs carry their token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelTarget {
    Slack {
        webhook_url: SecretRef,
        username: Option<String>,
    },
    /// A Microsoft Teams Workflows webhook (Adaptive Card).
    Teams {
        webhook_url: SecretRef,
    },
    Discord {
        webhook_url: SecretRef,
        username: Option<String>,
    },
    GoogleChat {
        webhook_url: SecretRef,
    },
    /// Any HTTP receiver; the body is signed with HMAC-SHA256 over timestamp and body.
    Webhook {
        url: SecretRef,
        signing_secret: SecretRef,
    },
    /// E-mail over SMTP (lettre, rustls).
    Email {
        smtp_url: SecretRef,
        from: String,
        to: Vec<String>,
    },
}

impl ChannelTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelTarget::Slack { .. } => "slack",
            ChannelTarget::Teams { .. } => "teams",
            ChannelTarget::Discord { .. } => "discord",
            ChannelTarget::GoogleChat { .. } => "google_chat",
            ChannelTarget::Webhook { .. } => "webhook",
            ChannelTarget::Email { .. } => "email",
        }
    }
}

/// A daily window in which a channel is not posted to; alerts wait for its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub from: chrono::NaiveTime,
    pub to: chrono::NaiveTime,
    pub timezone: chrono_tz::Tz,
}

impl QuietHours {
    /// If `now` falls in the quiet window, when it ends.
    pub fn end_if_quiet(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        use chrono::TimeZone;
        let local = now.with_timezone(&self.timezone);
        let time = local.time();
        let quiet = if self.from <= self.to {
            time >= self.from && time < self.to
        } else {
            time >= self.from || time < self.to
        };
        if !quiet {
            return None;
        }
        let mut day = local.date_naive();
        if time >= self.to {
            day = day.succ_opt()?;
        }
        let end = day.and_time(self.to);
        // A DST gap at the end time: take the first valid instant after it.
        let resolved = self
            .timezone
            .from_local_datetime(&end)
            .earliest()
            .or_else(|| {
                self.timezone
                    .from_local_datetime(&(end + chrono::Duration::hours(1)))
                    .earliest()
            })?;
        Some(resolved.with_timezone(&Utc))
    }
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
            executor.feed_poll_seconds = e.feed_poll_seconds.unwrap_or(executor.feed_poll_seconds);
            self.range(
                "executor.feed_poll_seconds",
                executor.feed_poll_seconds,
                1,
                3600,
            );
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
            if let Some(config) = self.channel(&key, channel, &base) {
                channels.insert(name, config);
            }
        }

        let approvals = match &raw.approvals {
            None => ApprovalConfig::default(),
            Some(a) => {
                if a.refund_above.is_some_and(|v| !v.is_finite() || v < 0.0) {
                    self.error("approvals.refund_above", "give a positive amount");
                }
                ApprovalConfig {
                    refund_above: a.refund_above,
                    token: a
                        .token
                        .as_ref()
                        .and_then(|t| self.secret("approvals.token", t, &base)),
                }
            }
        };
        let summary = raw.summary.as_ref().and_then(|s| {
            let timezone = s.timezone.as_deref().unwrap_or("UTC");
            if let Some(name) = &s.channel
                && !channels.contains_key(name)
            {
                self.error(
                    "summary.channel",
                    format!("no channel named {name:?} under channels"),
                );
            }
            if s.channel.is_none() && rules.alert_channel.is_none() {
                self.error(
                    "summary.channel",
                    "name a channel (there is no rules.alert_channel to default to)",
                );
            }
            let schedule = match Schedule::parse_in(&s.schedule, timezone) {
                Ok(schedule) => Some(schedule),
                Err(e) => {
                    self.error("summary.schedule", e.to_string());
                    None
                }
            }?;
            Some(SummaryConfig {
                schedule,
                channel: s.channel.clone(),
            })
        });

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

        let carriers = match raw.carriers {
            Some(section) => Some(self.carriers(section, &base)?),
            None => None,
        };

        let mut marketplace_names = BTreeSet::new();
        let mut marketplaces = Vec::new();
        for (marketplace, section) in [
            (Marketplace::Shopify, raw.shopify),
            (Marketplace::Ebay, raw.ebay),
            (Marketplace::Walmart, raw.walmart),
        ] {
            if let Some(section) = section {
                marketplaces.extend(self.marketplace(
                    marketplace,
                    section,
                    &base,
                    &mut marketplace_names,
                ));
            }
        }
        let account_names: Vec<String> = amazon.iter().map(|a| a.name.clone()).collect();
        let mail = match raw.mail {
            Some(section) => Some(self.mail(section, &base, &account_names)?),
            None => None,
        };

        let health = self.health(raw.health);

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
            carriers,
            mail,
            marketplaces,
            channels,
            caps,
            schedules,
            approvals,
            summary,
            health,
        };
        Some(config)
    }

    fn timezone(&mut self, key: &str, name: Option<&str>) -> chrono_tz::Tz {
        let Some(name) = name else {
            return chrono_tz::UTC;
        };
        match name.parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                self.error(key, format!("{name:?} is not an IANA time zone"));
                chrono_tz::UTC
            }
        }
    }

    fn channel(&mut self, key: &str, raw: RawChannel, base: &Path) -> Option<ChannelConfig> {
        let kind = raw.kind;
        let required = |this: &mut Self, field: &str, value: &Option<String>| {
            let found = value
                .as_ref()
                .and_then(|v| this.secret(&format!("{key}.{field}"), v, base));
            if value.is_none() {
                this.error(key, format!("a {} channel needs {field}", kind_name(kind)));
            }
            found
        };
        let target = match kind {
            ChannelKind::Slack => ChannelTarget::Slack {
                webhook_url: required(self, "webhook_url", &raw.webhook_url)?,
                username: raw.username.clone(),
            },
            ChannelKind::Teams => ChannelTarget::Teams {
                webhook_url: required(self, "webhook_url", &raw.webhook_url)?,
            },
            ChannelKind::Discord => ChannelTarget::Discord {
                webhook_url: required(self, "webhook_url", &raw.webhook_url)?,
                username: raw.username.clone(),
            },
            ChannelKind::GoogleChat => ChannelTarget::GoogleChat {
                webhook_url: required(self, "webhook_url", &raw.webhook_url)?,
            },
            ChannelKind::Webhook => {
                let url = required(self, "url", &raw.url);
                let signing_secret = required(self, "signing_secret", &raw.signing_secret);
                ChannelTarget::Webhook {
                    url: url?,
                    signing_secret: signing_secret?,
                }
            }
            ChannelKind::Email => {
                let smtp_url = required(self, "smtp_url", &raw.smtp_url);
                let from = raw.from.clone();
                if from.as_deref().is_none_or(|f| !f.contains('@')) {
                    self.error(
                        &format!("{key}.from"),
                        "an email channel needs a from address",
                    );
                }
                if raw.to.is_empty() || raw.to.iter().any(|t| !t.contains('@')) {
                    self.error(
                        &format!("{key}.to"),
                        "an email channel needs to: [addresses]",
                    );
                }
                ChannelTarget::Email {
                    smtp_url: smtp_url?,
                    from: from?,
                    to: raw.to.clone(),
                }
            }
        };
        let quiet_hours = raw.quiet_hours.as_ref().and_then(|q| {
            let qkey = format!("{key}.quiet_hours");
            let timezone = self.timezone(&format!("{qkey}.timezone"), q.timezone.as_deref());
            let time =
                |this: &mut Self, field: &str, text: &str| match chrono::NaiveTime::parse_from_str(
                    text, "%H:%M",
                ) {
                    Ok(t) => Some(t),
                    Err(_) => {
                        this.error(&format!("{qkey}.{field}"), format!("{text:?} is not HH:MM"));
                        None
                    }
                };
            let from = time(self, "from", &q.from);
            let to = time(self, "to", &q.to);
            Some(QuietHours {
                from: from?,
                to: to?,
                timezone,
            })
        });
        let window = raw.group_window_seconds.unwrap_or(120);
        let window = self.range(&format!("{key}.group_window_seconds"), window, 0, 86_400);
        Some(ChannelConfig {
            target,
            quiet_hours,
            group_window: chrono::Duration::seconds(window),
        })
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
            seller_id: raw.seller_id,
            client_id: raw.client_id,
            client_secret: client_secret?,
            refresh_token: refresh_token?,
            schedule: schedule?,
            endpoint: endpoint?,
            lwa_endpoint: lwa_endpoint?,
            overlap_minutes,
            initial_lookback_days,
            page_size,
            fba_tracking: raw.fba_tracking.unwrap_or(true),
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
