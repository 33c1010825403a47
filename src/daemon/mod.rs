//! The daemon: builds every stage from a validated config and wires them in the one
//! direction data flows (sources → store → rules → outbox → channels). Clock, store,
//! base URLs, secrets and shutdown are passed in, so tests run the whole daemon on
//! loopback against the sandbox.
//!
//! [`Daemon::run_cycle`] does one pass of everything (for `--once` and tests);
//! [`Daemon::run`] runs each stage on its schedule until shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Duration, Utc};
use sha2::Digest;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::channels::Channel;
use crate::clock::SharedClock;
use crate::config::{Config, Mode, SecretResolver};
use crate::http::{self, RetryPolicy, UpstreamError};
use crate::model::{ActionRequest, Event, EventKind, PlannedAction, Subject};
use crate::outbox::{Executor, ExecutorError, ExecutorReport, Route};
use crate::rules::templates::Templates;
use crate::rules::{self, RuleEngine, RuleError, RuleOutcome, RuleSet, view};
use crate::schedule::Schedule;
use crate::sources::amazon::api::SpApi;
use crate::sources::amazon::fulfillment::{self, FulfillmentClient};
use crate::sources::amazon::lwa::LwaCredentials;
use crate::sources::amazon::{AmazonSource, AmazonSourceSettings, packages};
use crate::sources::carriers::history::ConditionLimits;
use crate::sources::carriers::tracker::{PollPlan, TrackReport, Tracker};
use crate::sources::carriers::{self, Carrier, CarrierSecrets};
use crate::sources::{self, OrderSource, PollReport};
use crate::store::{Decision, Store, StoreError};
use crate::telemetry;

mod health;
mod leases;
mod mail;

pub use health::{DiskProbe, DiskSpace, HealthReport};
pub use leases::LEASE_TTL;

/// A carrier's base URL under the sandbox (or any single host serving all carriers).
fn carrier_base(url: &Url, carrier: Carrier) -> Url {
    let text = format!(
        "{}/{}",
        url.as_str().trim_end_matches('/'),
        carrier.as_str()
    );
    Url::parse(&text).unwrap_or_else(|_| url.clone())
}

/// The rules and templates of `dir`, if everything passes `check`; else every problem.
fn checked_rules(
    engine: &RuleEngine,
    dir: &std::path::Path,
) -> Result<(RuleSet, Templates), Vec<String>> {
    match rules::check::check_dir(engine, dir) {
        (report, Some(rules), Some(templates)) if report.problems.is_empty() => {
            Ok((rules, templates))
        }
        (report, ..) => Err(report.problems),
    }
}

/// Base URLs that replace the configured ones (the demo and tests point every
/// upstream at the sandbox).
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub amazon: Option<Url>,
    pub lwa: Option<Url>,
    /// Where every carrier lives, each under its own path (`<url>/ups`, `<url>/fedex`…):
    /// the sandbox. Overrides the carriers' `base_url`s.
    pub carriers: Option<Url>,
    /// Where Shopify, eBay and Walmart live, each under its own path (`<url>/shopify`,
    /// `<url>/ebay`, `<url>/walmart`): the sandbox. Overrides their `base_url`s.
    pub marketplaces: Option<Url>,
}

/// Everything the daemon is built from.
pub struct DaemonOptions {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub secrets: SecretResolver,
    pub endpoints: Endpoints,
    pub retry: RetryPolicy,
    /// Names this instance in leases and logs.
    pub instance: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{}", .0.join("\n"))]
    Secrets(Vec<String>),
    #[error("the rules folder does not pass check:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<String>),
    #[error("cannot build an HTTP client: {0}")]
    Http(#[from] UpstreamError),
    #[error("cannot set up a carrier: {0}")]
    Carrier(String),
    #[error("cannot set up a mailbox: {0}")]
    Mailbox(String),
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Executor(#[from] ExecutorError),
}

/// What one cycle did.
#[derive(Debug, Default)]
pub struct CycleReport {
    pub polls: Vec<(String, Result<PollReport, String>)>,
    /// The carriers' tracking poll, when carriers are configured.
    pub tracking: Option<TrackReport>,
    /// What reading the mailboxes stored.
    pub mail: crate::store::MailReport,
    /// Messages that reached the SLA-at-risk hour in this cycle.
    pub sla_at_risk: usize,
    pub events_seen: usize,
    pub rule_failures: usize,
    pub actions_planned: usize,
    pub executed: ExecutorReport,
}

pub struct Daemon {
    config: Config,
    store: Arc<dyn Store>,
    clock: SharedClock,
    sources: Vec<Arc<dyn OrderSource>>,
    /// FBA Multi-Channel Fulfillment tracking, by the key of the orders source whose
    /// successful polls it follows.
    fulfillment: HashMap<String, FulfillmentClient>,
    /// FBM ship confirmations (Orders 2026-01-01 packages), by orders source key: the
    /// parcels the tracker then asks the carriers about.
    packages: HashMap<String, Arc<SpApi>>,
    /// The carriers nightdesk asks itself, if any are configured.
    tracker: Option<Tracker>,
    /// The seller mailboxes buyer mail is read from.
    inboxes: Vec<mail::Inbox>,
    engine: RuleEngine,
    rules: ArcSwap<RuleSet>,
    /// The last good templates, swapped with the rules (for the message executors).
    templates: Arc<ArcSwap<Templates>>,
    executor: Executor,
    /// One rules pass at a time: two pollers finishing together would evaluate the
    /// same events twice (harmless thanks to the keys, but wasted).
    rules_pass: Mutex<()>,
    /// Wakes the executor when actions were planned.
    planned: Notify,
    /// Bearer token of the HTTP approval API, if configured.
    approval_token: Option<secrecy::SecretString>,
    /// Sources whose credentials were refused, and when they were last tried.
    halted: std::sync::Mutex<HashMap<String, Halted>>,
    /// This instance's leases on scheduled work (several instances on one database).
    leases: leases::LeaseKeeper,
    /// When the scheduler or the executor last came round (epoch ms): the service
    /// watchdog pings only while this moves.
    heartbeat: std::sync::atomic::AtomicI64,
    /// When this daemon was built: a source not polled since counts as ready during
    /// its first interval only.
    started_at: DateTime<Utc>,
    /// The quarantined rules last written to the store (`None`: not written yet).
    quarantines_stored: std::sync::Mutex<Option<Vec<String>>>,
    /// What the alerts about nightdesk itself remember, and how the disk is read.
    health: health::HealthState,
}

/// A source stopped because its credentials were refused.
#[derive(Debug, Clone)]
struct Halted {
    since: DateTime<Utc>,
    last_try: DateTime<Utc>,
}

/// How often a source with refused credentials is quietly tried again (one LWA call):
/// a person fixing the grant should not need a restart.
const CREDENTIAL_RETRY: Duration = Duration::hours(1);

/// Actions already in the outbox today, per (rule or "" for all, kind), read from the
/// store once per planning pass: the daily caps and the runaway check count against the
/// same figures, and a sweep planning hundreds of actions asks the store once per rule
/// and kind, not once per action.
struct StoredToday {
    day_start: DateTime<Utc>,
    counts: HashMap<(String, &'static str), i64>,
}

impl StoredToday {
    fn new(day_start: DateTime<Utc>) -> Self {
        Self {
            day_start,
            counts: HashMap::new(),
        }
    }

    async fn count(
        &mut self,
        store: &dyn Store,
        rule: Option<&str>,
        kind: &'static str,
    ) -> Result<i64, StoreError> {
        let slot = (rule.unwrap_or_default().to_owned(), kind);
        if let Some(count) = self.counts.get(&slot) {
            return Ok(*count);
        }
        let count = store.count_actions(kind, rule, self.day_start).await?;
        self.counts.insert(slot, count);
        Ok(count)
    }
}

/// Leases of the scheduled tasks other than the polls (`poll/<source key>`) and the
/// named schedules (`schedule/<name>`).
const SWEEP_LEASE: &str = "sweep";
const TRACK_LEASE: &str = "track";
const MAIL_LEASE: &str = "mail";
const SUMMARY_LEASE: &str = "summary";

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("config", &self.config.path)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Resolve secrets, compile the rules, build sources and channels. Reports every
    /// missing secret at once, with the config key that names it.
    pub fn build(options: DaemonOptions) -> Result<Daemon, BuildError> {
        let DaemonOptions {
            config,
            store,
            clock,
            secrets,
            endpoints,
            retry,
            instance,
        } = options;
        let mut missing = Vec::new();
        let mut resolve =
            |key: String, reference: &crate::config::SecretRef| match secrets.resolve(reference) {
                Ok(secret) => Some(secret),
                Err(e) => {
                    missing.push(format!("{}: {key}: {e}", config.path.display()));
                    None
                }
            };

        let mut sources: Vec<Arc<dyn OrderSource>> = Vec::new();
        let mut pending_sources = Vec::new();
        for (i, account) in config.amazon.iter().enumerate() {
            let secret = resolve(
                format!("amazon.accounts[{i}].client_secret"),
                &account.client_secret,
            );
            let refresh = resolve(
                format!("amazon.accounts[{i}].refresh_token"),
                &account.refresh_token,
            );
            if let (Some(client_secret), Some(refresh_token)) = (secret, refresh) {
                let mut account = account.clone();
                if let Some(url) = &endpoints.amazon {
                    account.endpoint = url.clone();
                }
                if let Some(url) = &endpoints.lwa {
                    account.lwa_endpoint = url.clone();
                }
                let credentials = LwaCredentials {
                    client_id: account.client_id.clone(),
                    client_secret,
                    refresh_token,
                };
                pending_sources.push(AmazonSourceSettings {
                    account,
                    credentials,
                    user_agent: AmazonSource::user_agent(&config.amazon_app_name),
                    retry,
                });
            }
        }

        let mut carrier_accounts = Vec::new();
        for account in config.carriers.iter().flat_map(|c| c.accounts.iter()) {
            let key = format!("carriers.{}", account.carrier);
            let secrets = CarrierSecrets::resolve(&account.credentials, &key, &mut resolve);
            if let Some(secrets) = secrets {
                let base_url = match &endpoints.carriers {
                    Some(url) => carrier_base(url, account.carrier),
                    None => account.base_url.clone(),
                };
                carrier_accounts.push((account.clone(), secrets, base_url));
            }
        }

        let mut marketplace_sources: Vec<Arc<dyn OrderSource>> = Vec::new();
        let mut actions: HashMap<String, Arc<dyn crate::executors::ActionExecutor>> =
            HashMap::new();
        for account in &config.marketplaces {
            let base_url = match &endpoints.marketplaces {
                Some(url) => url
                    .join(&format!("{}/", account.marketplace.as_str()))
                    .unwrap_or_else(|_| url.clone()),
                None => account.base_url.clone(),
            };
            let key = format!("{}.accounts", account.marketplace.as_str());
            match &account.credentials {
                crate::config::MarketplaceCredentials::Shopify {
                    shop,
                    api_version,
                    access_token,
                } => {
                    let Some(token) = resolve(format!("{key}.access_token"), access_token) else {
                        continue;
                    };
                    let mut settings = crate::sources::shopify::ShopifySettings::new(
                        shop,
                        base_url,
                        token,
                        &account.name,
                        account.schedule.clone(),
                    );
                    settings.api_version.clone_from(api_version);
                    settings.page_size = account.page_size;
                    let source = crate::sources::shopify::ShopifySource::new(
                        settings,
                        clock.clone(),
                        retry,
                    )?;
                    actions.insert(
                        source.key().to_owned(),
                        Arc::new(crate::executors::shopify::ShopifyExecutor::new(&source)),
                    );
                    marketplace_sources.push(Arc::new(source));
                }
                crate::config::MarketplaceCredentials::Ebay {
                    client_id,
                    client_secret,
                    refresh_token,
                } => {
                    let secret = resolve(format!("{key}.client_secret"), client_secret);
                    let refresh = resolve(format!("{key}.refresh_token"), refresh_token);
                    let (Some(client_secret), Some(refresh_token)) = (secret, refresh) else {
                        continue;
                    };
                    let settings = crate::sources::ebay::EbaySettings {
                        base_url,
                        client_id: client_id.clone(),
                        client_secret,
                        refresh_token,
                        account: account.name.clone(),
                        schedule: account.schedule.clone(),
                        page_size: account.page_size,
                        window: sources::WindowPolicy::default(),
                    };
                    let source =
                        crate::sources::ebay::EbaySource::new(settings, clock.clone(), retry)?;
                    actions.insert(
                        source.key().to_owned(),
                        Arc::new(crate::executors::ebay::EbayExecutor::new(&source)),
                    );
                    marketplace_sources.push(Arc::new(source));
                }
                crate::config::MarketplaceCredentials::Walmart {
                    client_id,
                    client_secret,
                } => {
                    let Some(client_secret) =
                        resolve(format!("{key}.client_secret"), client_secret)
                    else {
                        continue;
                    };
                    let settings = crate::sources::walmart::WalmartSettings {
                        base_url,
                        client_id: client_id.clone(),
                        client_secret,
                        account: account.name.clone(),
                        schedule: account.schedule.clone(),
                        page_size: account.page_size,
                        service_name: "nightdesk".to_owned(),
                    };
                    let source = crate::sources::walmart::WalmartSource::new(
                        settings,
                        clock.clone(),
                        retry,
                    )?;
                    actions.insert(
                        source.key().to_owned(),
                        Arc::new(crate::executors::walmart::WalmartExecutor::new(&source)),
                    );
                    marketplace_sources.push(Arc::new(source));
                }
            }
        }

        let mut mail_secrets = Vec::new();
        for (i, mailbox) in config
            .mail
            .iter()
            .flat_map(|m| m.mailboxes.iter())
            .enumerate()
        {
            let key = format!("mail.mailboxes[{i}]");
            let smtp = mailbox
                .smtp
                .as_ref()
                .map(|s| resolve(format!("{key}.smtp"), s));
            let imap = match &mailbox.source {
                crate::config::MailSource::Imap { password, .. } => {
                    Some(resolve(format!("{key}.imap.password"), password))
                }
                crate::config::MailSource::Maildir(_) => None,
            };
            mail_secrets.push((smtp.flatten(), imap.flatten()));
        }

        let approval_token = config
            .approvals
            .token
            .as_ref()
            .and_then(|token| resolve("approvals.token".to_owned(), token));
        let chat_http = http::client(&format!("nightdesk/{}", env!("CARGO_PKG_VERSION")))?;
        let mut channels: HashMap<String, Arc<dyn Channel>> = HashMap::new();
        let mut unusable = Vec::new();
        for (name, channel) in &config.channels {
            match crate::channels::build(name, &channel.target, &chat_http, &clock, &mut resolve) {
                Ok(Some(built)) => {
                    channels.insert(name.clone(), built);
                }
                Ok(None) => {}
                Err(problem) => unusable.push(format!("{}: {problem}", config.path.display())),
            }
        }
        missing.extend(unusable);
        if !missing.is_empty() {
            return Err(BuildError::Secrets(missing));
        }
        let engine = RuleEngine::new(config.rules.limits);
        let (rule_set, templates) =
            checked_rules(&engine, &config.rules.dir).map_err(BuildError::Rules)?;
        let templates = Arc::new(ArcSwap::from_pointee(templates));
        let mut fulfillment = HashMap::new();
        let mut packages = HashMap::new();
        for settings in pending_sources {
            // One client per account: the poller and the executors share its token
            // cache and usage-plan buckets, as Amazon counts them together.
            let api = settings.client(clock.clone())?;
            actions.insert(
                format!("amazon/{}", settings.account.name),
                Arc::new(crate::executors::amazon::AmazonExecutor::new(
                    &settings.account.name,
                    settings.account.seller_id.clone(),
                    api.clone(),
                    templates.clone(),
                    Duration::seconds(config.executor.feed_poll_seconds),
                )),
            );
            let fba_tracking = settings.account.fba_tracking;
            let source = AmazonSource::new(settings.account, api.clone());
            if fba_tracking {
                fulfillment.insert(source.key().to_owned(), FulfillmentClient::new(api.clone()));
            }
            if config.carriers.is_some() {
                packages.insert(source.key().to_owned(), api);
            }
            sources.push(source);
        }
        let tracker = match &config.carriers {
            Some(section) => {
                let mut connections = Vec::new();
                for (account, secrets, base_url) in carrier_accounts {
                    connections.push(
                        carriers::connect(&account, secrets, base_url, clock.clone(), retry)
                            .map_err(|e| BuildError::Carrier(e.to_string()))?,
                    );
                }
                Some(Tracker::new(
                    connections,
                    ConditionLimits {
                        not_scanned_business_days: section.not_scanned_business_days,
                        stalled_days: section.stalled_days,
                    },
                    PollPlan::default(),
                    clock.clone(),
                ))
            }
            None => None,
        };

        sources.extend(marketplace_sources);
        let (inboxes, replies) =
            mail::inboxes(&config, mail_secrets, templates.clone()).map_err(BuildError::Mailbox)?;

        telemetry::rules_loaded(rule_set.rules.len());
        let routes = channels
            .into_iter()
            .filter_map(|(name, channel)| {
                let settings = config.channels.get(&name)?;
                Some((
                    name,
                    Route {
                        channel,
                        quiet_hours: settings.quiet_hours,
                        group_window: settings.group_window,
                    },
                ))
            })
            .collect();
        let executor = Executor::new(
            store.clone(),
            routes,
            clock.clone(),
            config.executor,
            instance.clone(),
        )
        .with_ops_channel(config.rules.alert_channel.clone())
        .with_actions(actions)
        .with_replies(replies);
        let mut lease_names: Vec<String> = sources
            .iter()
            .map(|s| format!("poll/{}", s.key()))
            .collect();
        lease_names.push(SWEEP_LEASE.to_owned());
        lease_names.push(health::HEALTH_LEASE.to_owned());
        if config.carriers.is_some() {
            lease_names.push(TRACK_LEASE.to_owned());
        }
        if config.mail.is_some() {
            lease_names.push(MAIL_LEASE.to_owned());
        }
        if config.summary.is_some() {
            lease_names.push(SUMMARY_LEASE.to_owned());
        }
        lease_names.extend(
            config
                .schedules
                .iter()
                .map(|(name, _)| format!("schedule/{name}")),
        );
        let leases = leases::LeaseKeeper::new(
            store.clone(),
            clock.clone(),
            &instance,
            leases::LEASE_TTL,
            lease_names,
        );
        Ok(Daemon {
            leases,
            heartbeat: std::sync::atomic::AtomicI64::new(0),
            started_at: clock.now(),
            quarantines_stored: std::sync::Mutex::new(None),
            config,
            store,
            clock,
            sources,
            fulfillment,
            packages,
            tracker,
            inboxes,
            engine,
            rules: ArcSwap::from_pointee(rule_set),
            templates,
            executor,
            rules_pass: Mutex::new(()),
            planned: Notify::new(),
            approval_token,
            halted: std::sync::Mutex::new(HashMap::new()),
            health: health::HealthState::default(),
        })
    }

    /// Poll one source and store what it read; then its FBA tracking, and once a day the
    /// reconciliation sweep. A source whose credentials are refused stops: ops are alerted once, and it
    /// is tried again quietly every hour until the grant works.
    pub async fn poll(&self, source: &dyn OrderSource) -> Result<PollReport, sources::SourceError> {
        let now = self.clock.now();
        if let Some(halted) = self.halted(source.key())
            && now - halted.last_try < CREDENTIAL_RETRY
        {
            return Err(sources::SourceError::Halted {
                since: halted.since,
            });
        }
        let result = sources::poll_once(source, self.store.as_ref(), now).await;
        let error_text = result.as_ref().err().map(ToString::to_string);
        self.store
            .record_poll(source.key(), error_text.as_deref().map_or(Ok(()), Err), now)
            .await?;
        match &result {
            Ok(report) => {
                telemetry::poll_succeeded(source.key(), report);
                self.credentials_work(source.key(), now).await?;
                self.track_fulfillment(source.key(), now).await?;
                // After the sweep: orders it stores carry this poll's time, which the
                // packages checkpoint then moves past.
                self.reconcile(source, now).await?;
                self.watch_packages(source, now).await?;
            }
            Err(error) if error.is_credentials() => {
                self.record_poll_failure(source.key(), error, now).await?;
                self.credentials_refused(source.key(), error, now).await?;
            }
            Err(error) => {
                telemetry::poll_failed(source.key(), error);
                self.record_poll_failure(source.key(), error, now).await?;
            }
        }
        result
    }

    /// A failed poll in the audit trail (subject `source:<key>`), with the upstream's
    /// error as it answered (`code: message (details)` of SP-API's `errors[]`).
    async fn record_poll_failure(
        &self,
        key: &str,
        error: &sources::SourceError,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let operation = match error {
            sources::SourceError::Upstream { operation, .. } => Some(*operation),
            _ => None,
        };
        self.store
            .record_decisions(&[Decision {
                at: now,
                subject: Subject::named("source", key).to_string(),
                trigger: "poll".to_owned(),
                event_id: None,
                rule: "(poll)".to_owned(),
                rule_version: String::new(),
                outcome: "failed".to_owned(),
                detail: serde_json::json!({ "operation": operation, "error": error.to_string() }),
            }])
            .await
    }

    fn halted(&self, key: &str) -> Option<Halted> {
        self.halted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Whether a source is stopped for refused credentials.
    pub fn is_halted(&self, key: &str) -> bool {
        self.halted(key).is_some()
    }

    async fn credentials_refused(
        &self,
        key: &str,
        error: &sources::SourceError,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let first = {
            let mut halted = self
                .halted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = halted.entry(key.to_owned()).or_insert(Halted {
                since: now,
                last_try: now,
            });
            entry.last_try = now;
            entry.since == now
        };
        if !first {
            return Ok(());
        }
        telemetry::credentials_failing(key, error);
        telemetry::credentials_alerted(key);
        let text = format!(
            "Credentials failing for {key}: {error}. Polling of this account has stopped and \
             its actions will fail; renew the authorisation (refresh token) in the config. \
             nightdesk tries again every hour and says so when it works."
        );
        let topic = format!("credentials/{key}/{}", now.timestamp());
        if let Some(alert) = self.system_alert(&topic, text) {
            self.record(None, vec![alert], now).await?;
        }
        Ok(())
    }

    async fn credentials_work(&self, key: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let was = self
            .halted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
        let Some(was) = was else {
            return Ok(());
        };
        tracing::info!(source = key, "Credentials accepted again; polling resumes.");
        let text = format!(
            "Credentials for {key} work again; polling resumed (stopped since {}).",
            was.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let topic = format!("credentials/{key}/{}/ok", was.since.timestamp());
        if let Some(alert) = self.system_alert(&topic, text) {
            self.record(None, vec![alert], now).await?;
        }
        Ok(())
    }

    /// Read the FBA Multi-Channel Fulfillment tracking of the account behind `key`
    /// (checkpoint `<key>/fba`). A failure is logged and audited like a failed poll and
    /// does not undo the orders poll; the next poll reads the same span again.
    async fn track_fulfillment(&self, key: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(client) = self.fulfillment.get(key) else {
            return Ok(());
        };
        let fba_key = format!("{key}/fba");
        match fulfillment::poll_fulfillment(client, self.store.as_ref(), &fba_key, now).await {
            Ok(report) => telemetry::fulfillment_polled(&fba_key, &report),
            Err(sources::SourceError::Store(error)) => return Err(error),
            Err(error) => {
                telemetry::poll_failed(&fba_key, &error);
                self.record_poll_failure(&fba_key, &error, now).await?;
            }
        }
        Ok(())
    }

    /// Start tracking the parcels of this account's FBM orders that shipped since the
    /// last look (checkpoint `<key>/packages`): their ship confirmations name carrier and
    /// number. A read that may pass later (throttled, down, credentials) keeps the
    /// checkpoint and is tried at the next poll; one that never will (the order is gone,
    /// the answer breaks the contract) is logged and that order skipped.
    async fn watch_packages(
        &self,
        source: &dyn OrderSource,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let key = source.key();
        let amazon_packages = self.packages.get(key);
        // Parcels are watched only for the carriers to be asked: without a tracker, or
        // for an Amazon account without packages, there is nothing to do.
        if self.tracker.is_none()
            || (source.channel() == crate::model::SalesChannel::Amazon && amazon_packages.is_none())
        {
            return Ok(());
        }
        let checkpoint = format!("{key}/packages");
        let since = self.store.checkpoint(&checkpoint).await?;
        // Events at the checkpoint itself were read last time (`events_since` includes them).
        let events = match since {
            Some(since) => self
                .store
                .events_since(since)
                .await?
                .into_iter()
                .filter(|e| e.at > since)
                .collect(),
            // First run: what the first poll stored.
            None => self.store.events_since(now - Duration::days(30)).await?,
        };
        let mut shipped: Vec<(crate::model::SalesChannel, String)> = Vec::new();
        for event in events {
            let EventKind::OrderStatusChanged { to, .. } = event.kind else {
                continue;
            };
            if !matches!(
                to,
                crate::model::OrderStatus::Shipped | crate::model::OrderStatus::PartiallyShipped
            ) {
                continue;
            }
            if let Some((channel, id)) = event.subject.as_order()
                && channel == source.channel()
                && !shipped.iter().any(|(_, known)| known == id)
            {
                shipped.push((channel, id.to_owned()));
            }
        }
        let mut watches = Vec::new();
        for (channel, id) in shipped {
            let Some(stored) = self.store.order(channel, &id).await? else {
                continue;
            };
            // Events are the store's, not the account's: another account's orders are
            // read with that account's credentials.
            let mine = key.strip_prefix(&format!("{}/", channel.as_str()))
                == Some(stored.order.account.as_str());
            // Amazon ships FBA orders itself (tracked through FBA); the seller ships MFN.
            let seller_ships = match channel {
                crate::model::SalesChannel::Amazon => {
                    stored.order.fulfillment == Some(crate::model::Fulfillment::Mfn)
                }
                _ => stored.order.fulfillment != Some(crate::model::Fulfillment::Afn),
            };
            if !mine || !seller_ships {
                continue;
            }
            let found = match amazon_packages {
                Some(api) => packages::order_packages(api, &id).await.map(|found| {
                    found
                        .into_iter()
                        .filter_map(|package| {
                            Some(sources::ShippedParcel {
                                carrier: package.carrier?,
                                tracking_number: package.tracking_number?,
                                shipped_at: package.ship_time.or(package.created_time),
                            })
                        })
                        .collect()
                }),
                None => source
                    .shipped_parcels(&stored.order)
                    .await
                    .map(Option::unwrap_or_default),
            };
            let found: Vec<sources::ShippedParcel> = match found {
                Ok(found) => found,
                Err(sources::SourceError::Store(error)) => return Err(error),
                Err(sources::SourceError::Upstream { error, .. })
                    if !error.is_retryable() && !matches!(error, UpstreamError::Credentials(_)) =>
                {
                    crate::telemetry::order_skipped(&checkpoint, &id, &error.to_string());
                    continue;
                }
                Err(error) => {
                    telemetry::poll_failed(&checkpoint, &error);
                    self.store.watch_parcels(&watches, now).await?;
                    return Ok(());
                }
            };
            let promised_by = stored.order.latest_delivery_date;
            for parcel in found {
                let Some(carrier) = Carrier::from_marketplace_name(&parcel.carrier) else {
                    tracing::info!(order = %id, carrier = %parcel.carrier, "Parcel of a carrier nightdesk does not ask; not tracked.");
                    continue;
                };
                let query = carriers::ParcelQuery {
                    tracking_number: parcel.tracking_number,
                    ship_date: parcel.shipped_at.map(|at| at.date_naive()),
                    destination_postcode: None,
                    destination_country: None,
                    service: None,
                };
                watches.push(carriers::tracker::watch(
                    stored.order.subject(),
                    carrier,
                    query,
                    parcel.shipped_at,
                    promised_by,
                    now,
                ));
            }
        }
        let added = self.store.watch_parcels(&watches, now).await?;
        telemetry::parcels_watched(key, added);
        self.store.ingest(&checkpoint, &[], Some(now), now).await?;
        Ok(())
    }

    /// Ask the carriers about every due parcel and store what changed; a carrier whose
    /// credentials are refused is alerted once a day.
    pub async fn track_parcels(&self) -> Result<Option<TrackReport>, StoreError> {
        let Some(tracker) = &self.tracker else {
            return Ok(None);
        };
        let now = self.clock.now();
        let report = tracker.poll(self.store.as_ref()).await?;
        telemetry::tracking_polled(&report);
        for (carrier, detail) in &report.credentials_failing {
            let key = format!("carrier/{carrier}");
            telemetry::carrier_credentials_failing(carrier.as_str(), detail);
            let text = format!(
                "Credentials failing for {carrier}: {detail}. Its parcels are not tracked until \
                 the credentials in the config are fixed; nightdesk keeps trying."
            );
            let topic = format!("credentials/{key}/{}", now.date_naive());
            if let Some(alert) = self.system_alert(&topic, text) {
                self.record(None, vec![alert], now).await?;
            }
        }
        Ok(Some(report))
    }

    /// The tracker, for `nightdesk track`.
    pub fn tracker(&self) -> Option<&Tracker> {
        self.tracker.as_ref()
    }

    /// The daily reconciliation sweep of a source, when due; alerts when the regular
    /// polls had missed anything. A failed sweep is logged and tried at the next poll.
    async fn reconcile(
        &self,
        source: &dyn OrderSource,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if !sources::sweep_due(source, self.store.as_ref(), now).await? {
            return Ok(());
        }
        let report = match sources::sweep(source, self.store.as_ref(), now).await {
            Ok(report) => report,
            Err(error) => {
                telemetry::poll_failed(&sources::sweep_key(source), &error);
                return Ok(());
            }
        };
        telemetry::sweep_finished(source.key(), &report);
        if report.missed.is_empty() {
            return Ok(());
        }
        const SHOWN: usize = 10;
        let mut ids = report
            .missed
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if report.missed.len() > SHOWN {
            ids.push_str(&format!(" and {} more", report.missed.len() - SHOWN));
        }
        let text = format!(
            "Reconciliation of {}: {} order(s) updated in the last {} hours had been missed by \
             the regular polls and are stored now: {ids}. Frequent misses mean the poll \
             overlap is too short for how late Amazon shows updates.",
            source.key(),
            report.missed.len(),
            source.window_policy().sweep_span.num_hours(),
        );
        let topic = format!("sweep/{}/{}", source.key(), now.timestamp());
        if let Some(alert) = self.system_alert(&topic, text) {
            self.record(None, vec![alert], now).await?;
        }
        Ok(())
    }

    /// Give every unseen event to the rules and put what they ask for in the outbox.
    pub async fn process_events(&self) -> Result<(usize, usize, usize), StoreError> {
        let _one_pass = self.rules_pass.lock().await;
        let rules = self.rules.load_full();
        let (mut seen, mut planned, mut failures) = (0, 0, 0);
        loop {
            let events = self.store.pending_events(100).await?;
            if events.is_empty() {
                break;
            }
            for event in events {
                seen += 1;
                let now = self.clock.now();
                let arguments = self.hook_arguments(&event, now).await?;
                let (outcomes, actions) = match &arguments {
                    Some(args) => {
                        let mut outcomes = self.engine.run(&rules, event.kind.hook(), args);
                        if event.kind == EventKind::BuyerMessageReceived
                            && !rules::asked_for_reply(&outcomes)
                        {
                            // No rule answered: the substantive acknowledgement's turn.
                            outcomes.extend(self.engine.run(
                                &rules,
                                rules::HOOK_UNANSWERED_MESSAGE,
                                args,
                            ));
                        }
                        let (failed, notices) = self.failures(&outcomes);
                        failures += failed;
                        self.store_quarantines(&outcomes, now).await?;
                        let mut actions = rules::plan(&outcomes, &event.subject, now);
                        actions.extend(notices);
                        (outcomes, actions)
                    }
                    None => (Vec::new(), Vec::new()),
                };
                let (new, became) = self.record(Some(event.id), actions, now).await?;
                planned += new;
                let mut decisions = Self::decisions(
                    event.kind.name(),
                    Some(event.id),
                    &event.subject,
                    &outcomes,
                    &became,
                    now,
                    true,
                );
                if outcomes.is_empty() {
                    let outcome = match arguments {
                        Some(_) => format!("no rule defines {}", event.kind.hook()),
                        None => "not given to the rules: what it is about is not stored".to_owned(),
                    };
                    decisions.push(Decision {
                        at: now,
                        subject: event.subject.to_string(),
                        trigger: event.kind.name().to_owned(),
                        event_id: Some(event.id),
                        rule: "(no rule)".to_owned(),
                        rule_version: String::new(),
                        outcome,
                        detail: serde_json::json!({}),
                    });
                }
                self.store.record_decisions(&decisions).await?;
            }
        }
        Ok((seen, planned, failures))
    }

    /// What the event's hook is called with: `(order, event)` for an order's status
    /// change, `(shipment, event)` for a parcel's (with the order, if stored, on the
    /// shipment). `None` when what the event is about is not stored (nothing to say).
    async fn hook_arguments(
        &self,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<rhai::Dynamic>>, StoreError> {
        if let Some(id) = event.subject.as_str().strip_prefix("message:") {
            return self.message_arguments(event, id, now).await;
        }
        let order = match event.subject.as_order() {
            Some((channel, id)) => self.store.order(channel, id).await?,
            None => None,
        };
        let parcel = match &event.kind {
            EventKind::TrackingUpdated { parcel, .. }
            | EventKind::ShipmentException { parcel, .. }
            | EventKind::TrackingCondition { parcel, .. } => parcel,
            _ => {
                return Ok(order.map(|order| {
                    vec![view::order(&order, now), view::event(&event.kind, event.at)]
                }));
            }
        };
        let shipments = self.store.shipments(&event.subject).await?;
        Ok(shipments.iter().find(|s| parcel.is(s)).map(|shipment| {
            vec![
                view::shipment(shipment, order.as_ref(), now),
                view::event(&event.kind, event.at),
            ]
        }))
    }

    /// A named schedule fired: call every rule's `on_schedule(name)`.
    /// Plan the morning summary (once per day and channel). Returns whether it was new.
    pub async fn send_summary(&self) -> Result<bool, StoreError> {
        let Some(summary) = &self.config.summary else {
            return Ok(false);
        };
        let Some(channel) = summary.channel.as_deref().or(self
            .config
            .rules
            .alert_channel
            .as_deref())
        else {
            return Ok(false);
        };
        let now = self.clock.now();
        let sources: Vec<crate::outbox::summary::SourceSchedule<'_>> = self
            .sources
            .iter()
            .map(|s| crate::outbox::summary::SourceSchedule {
                key: s.key(),
                schedule: s.schedule(),
            })
            .collect();
        let text =
            crate::outbox::summary::morning_summary(self.store.as_ref(), &sources, now).await?;
        let mut alert = crate::outbox::system_alert(
            channel,
            &format!("summary/{}", now.format("%Y-%m-%d")),
            text,
            self.config.mode == Mode::DryRun,
        );
        alert.rule = crate::outbox::summary::RULE.to_owned();
        let new = self.store.plan(None, &[alert], now).await? > 0;
        if new {
            self.planned.notify_one();
        }
        Ok(new)
    }

    /// The HTTP approval API, when `approvals.token` is configured.
    pub fn approval_api(&self) -> Option<crate::server::ApprovalApi> {
        Some(crate::server::ApprovalApi {
            store: self.store.clone(),
            clock: self.clock.clone(),
            token: self.approval_token.clone()?,
        })
    }

    pub async fn fire_schedule(&self, name: &str) -> Result<usize, StoreError> {
        let _one_pass = self.rules_pass.lock().await;
        let rules = self.rules.load_full();
        let now = self.clock.now();
        let subject = Subject::named("schedule", name);
        let outcomes = self
            .engine
            .run(&rules, rules::HOOK_SCHEDULE, &[name.into()]);
        let (_, notices) = self.failures(&outcomes);
        self.store_quarantines(&outcomes, now).await?;
        let mut actions = rules::plan(&outcomes, &subject, now);
        actions.extend(notices);
        let (new, became) = self.record(None, actions, now).await?;
        let decisions = Self::decisions("Schedule", None, &subject, &outcomes, &became, now, true);
        self.store.record_decisions(&decisions).await?;
        Ok(new)
    }

    /// Run the time-based hooks over every open order.
    pub async fn sweep(&self) -> Result<(usize, usize), StoreError> {
        let _one_pass = self.rules_pass.lock().await;
        let rules = self.rules.load_full();
        let now = self.clock.now();
        let orders = self
            .store
            .open_orders(now - Duration::days(self.config.sweep.max_age_days))
            .await?;
        let (mut planned, mut failures) = (0, 0);
        for order in &orders {
            let outcomes =
                self.engine
                    .run(&rules, rules::HOOK_ORDER_SWEEP, &[view::order(order, now)]);
            let (failed, notices) = self.failures(&outcomes);
            failures += failed;
            self.store_quarantines(&outcomes, now).await?;
            let subject = order.order.subject();
            let mut actions = rules::plan(&outcomes, &subject, now);
            actions.extend(notices);
            let (new, became) = self.record(None, actions, now).await?;
            planned += new;
            let decisions =
                Self::decisions("sweep", None, &subject, &outcomes, &became, now, false);
            self.store.record_decisions(&decisions).await?;
        }
        tracing::info!(orders = orders.len(), planned, failures, "Sweep done.");
        Ok((planned, failures))
    }

    /// Put what the rules asked for in the outbox: dry-run rules' actions recorded
    /// only, actions past a daily cap held (and the cap alerted once a day), and so are
    /// a runaway rule's (see `health`).
    async fn record(
        &self,
        event: Option<i64>,
        mut actions: Vec<PlannedAction>,
        now: DateTime<Utc>,
    ) -> Result<(usize, HashMap<String, String>), StoreError> {
        // What became of each action, by the key the rule's request gave it.
        let mut became: HashMap<String, String> = HashMap::new();
        let requested: Vec<String> = actions.iter().map(|a| a.idempotency_key.clone()).collect();
        for action in &mut actions {
            let rule_override = self.config.rules.overrides.get(&action.rule);
            if rule_override
                .and_then(|o| o.mode)
                .unwrap_or(self.config.mode)
                == Mode::DryRun
            {
                // Dry-run rows get keys of their own, so going live later still acts.
                action.dry_run = true;
                action.idempotency_key = format!("dry-run/{}", action.idempotency_key);
            }
        }
        let keys: Vec<String> = actions.iter().map(|a| a.idempotency_key.clone()).collect();
        let known = self.store.existing_keys(&keys).await?;
        let day_start = now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
        // Actions of this batch count against the caps too; (rule or "", kind) -> count.
        let mut batch: HashMap<(String, &'static str), i64> = HashMap::new();
        let mut stored = StoredToday::new(day_start);
        let mut notices = Vec::new();
        for (action, requested) in actions.iter_mut().zip(requested) {
            let kind = action.request.kind();
            let disposition = if known.contains(&action.idempotency_key) {
                "already in the outbox".to_owned()
            } else if action.dry_run {
                "dry-run: recorded, not performed".to_owned()
            } else if let Some(reason) = &action.hold {
                format!("held: {reason}")
            } else if let Some(reason) = self.refund_hold(action).await? {
                action.hold = Some(reason.clone());
                format!("held: {reason}")
            } else if let Some((reason, notice)) =
                self.cap_reached(action, &batch, &mut stored, now).await?
            {
                notices.extend(notice);
                action.hold = Some(reason.clone());
                format!("held: {reason}")
            } else if let Some((reason, notice)) = self.runaway(action, &batch, &mut stored).await?
            {
                notices.extend(notice);
                action.hold = Some(reason.clone());
                format!("held: {reason}")
            } else {
                *batch.entry((action.rule.clone(), kind)).or_default() += 1;
                *batch.entry((String::new(), kind)).or_default() += 1;
                "new: planned".to_owned()
            };
            if !known.contains(&action.idempotency_key) {
                telemetry::action_planned(&action.rule, kind);
            }
            became.insert(requested, disposition);
        }
        actions.extend(notices);
        let new = self.store.plan(event, &actions, now).await?;
        if new > 0 {
            self.announce_held(&actions, &known, now).await?;
            self.planned.notify_one();
        }
        Ok((new, became))
    }

    /// Whether a refund must wait for a person (above `approvals.refund_above`).
    async fn refund_hold(&self, action: &PlannedAction) -> Result<Option<String>, StoreError> {
        let Some(limit) = self.config.approvals.refund_above else {
            return Ok(None);
        };
        if !matches!(action.request, ActionRequest::Refund { .. }) {
            return Ok(None);
        }
        let order = match action.subject.as_order() {
            Some((channel, id)) => self.store.order(channel, id).await?,
            None => None,
        };
        Ok(crate::outbox::approvals::refund_hold(
            &action.request,
            order.as_ref(),
            Some(limit),
        ))
    }

    /// Tell the ops channel about each action that entered the outbox held, with how to
    /// approve it (grouped with the other alerts of its kind, like any alert).
    async fn announce_held(
        &self,
        actions: &[PlannedAction],
        known: &std::collections::HashSet<String>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(channel) = self.config.rules.alert_channel.as_deref() else {
            return Ok(());
        };
        let held: Vec<&PlannedAction> = actions
            .iter()
            // Held alerts (past an alert cap) are not announced one by one: the cap's
            // own notice says so, and announcing them would be the flood the cap stops.
            .filter(|a| {
                a.hold.is_some()
                    && !a.dry_run
                    && a.request.kind() != "alert"
                    && !known.contains(&a.idempotency_key)
            })
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = held.iter().map(|a| a.idempotency_key.clone()).collect();
        let ids = self.store.outbox_ids(&keys).await?;
        let notices: Vec<PlannedAction> = held
            .iter()
            .filter_map(|action| {
                let id = *ids.get(&action.idempotency_key)?;
                let reason = action.hold.as_deref().unwrap_or("held");
                Some(crate::outbox::approvals::held_notice(
                    channel, id, action, reason,
                ))
            })
            .collect();
        self.store.plan(None, &notices, now).await?;
        Ok(())
    }

    /// The daily cap (the rule's, then the global one) this action would exceed, with
    /// the hold reason and the once-a-day alert about it.
    async fn cap_reached(
        &self,
        action: &PlannedAction,
        batch: &HashMap<(String, &'static str), i64>,
        stored: &mut StoredToday,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, Option<PlannedAction>)>, StoreError> {
        let kind = action.request.kind();
        let rule_cap = self
            .config
            .rules
            .overrides
            .get(&action.rule)
            .and_then(|o| o.caps.get(kind))
            .copied();
        let caps = [
            (Some(action.rule.as_str()), rule_cap),
            (None, self.config.caps.get(kind).copied()),
        ];
        for (rule, cap) in caps {
            let Some(cap) = cap else { continue };
            let slot = (rule.unwrap_or_default().to_owned(), kind);
            let used = stored.count(self.store.as_ref(), rule, kind).await?
                + batch.get(&slot).copied().unwrap_or(0);
            if used < i64::from(cap) {
                continue;
            }
            let scope =
                rule.map_or_else(|| "all rules together".to_owned(), |r| format!("rule {r}"));
            let reason = format!("daily cap of {cap} {kind} actions reached ({scope})");
            let topic = format!("cap/{}/{kind}/{}", slot.0, now.format("%Y-%m-%d"));
            let text = format!(
                "nightdesk: {reason}. Further {kind} actions today are held for approval, starting with one from rule {} on {}.",
                action.rule, action.subject
            );
            return Ok(Some((reason, self.system_alert(&topic, text))));
        }
        Ok(None)
    }

    /// What each rule decided, with what became of each action it asked for. With
    /// `all`, rules that asked nothing are kept too (events); sweeps keep only rules
    /// that asked or failed.
    fn decisions(
        trigger: &str,
        event_id: Option<i64>,
        subject: &Subject,
        outcomes: &[RuleOutcome],
        became: &HashMap<String, String>,
        now: DateTime<Utc>,
        all: bool,
    ) -> Vec<Decision> {
        let mut out = Vec::new();
        for outcome in outcomes {
            let (rule, version, result, detail) = match outcome {
                RuleOutcome::Ran {
                    rule,
                    version,
                    requests,
                } if requests.is_empty() => {
                    if !all {
                        continue;
                    }
                    (rule, version.clone(), "nothing", serde_json::json!({}))
                }
                RuleOutcome::Ran { rule, version, .. } => {
                    let actions: Vec<serde_json::Value> = rules::plan(
                        std::slice::from_ref(outcome),
                        subject,
                        now,
                    )
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "action": rules::describe_action(&a.request, a.hold.as_deref()),
                            "key": a.idempotency_key,
                            "became": became.get(&a.idempotency_key).cloned().unwrap_or_default(),
                        })
                    })
                    .collect();
                    (
                        rule,
                        version.clone(),
                        "asked",
                        serde_json::json!({ "actions": actions }),
                    )
                }
                RuleOutcome::Failed {
                    rule,
                    error,
                    quarantined_now,
                } => (
                    rule,
                    String::new(),
                    "failed",
                    serde_json::json!({ "error": error.to_string(), "quarantined_now": quarantined_now }),
                ),
                RuleOutcome::Quarantined { rule } => {
                    if !all {
                        continue;
                    }
                    (rule, String::new(), "quarantined", serde_json::json!({}))
                }
            };
            out.push(Decision {
                at: now,
                subject: subject.to_string(),
                trigger: trigger.to_owned(),
                event_id,
                rule: rule.clone(),
                rule_version: version,
                outcome: result.to_owned(),
                detail,
            });
        }
        out
    }

    /// An alert about nightdesk itself to the rules' alert channel, once per `topic`.
    fn system_alert(&self, topic: &str, text: String) -> Option<PlannedAction> {
        let channel = self.config.rules.alert_channel.as_deref()?;
        Some(crate::outbox::system_alert(
            channel,
            topic,
            text,
            self.config.mode == Mode::DryRun,
        ))
    }

    /// Alerts for the rules these outcomes quarantined.
    fn failures(&self, outcomes: &[RuleOutcome]) -> (usize, Vec<PlannedAction>) {
        let mut failures = 0;
        let mut notices = Vec::new();
        for outcome in outcomes {
            if let RuleOutcome::Failed {
                rule,
                error,
                quarantined_now,
            } = outcome
            {
                telemetry::rule_failed(rule, error, *quarantined_now);
                failures += 1;
                if *quarantined_now {
                    let version = self
                        .rules
                        .load()
                        .rules
                        .iter()
                        .find(|r| &r.name == rule)
                        .map(|r| r.version.clone());
                    let topic = format!("quarantine/{rule}/{}", version.unwrap_or_default());
                    let text = format!(
                        "nightdesk: rule {rule} is quarantined and skipped until its file changes; the other rules keep running. Last error: {error}"
                    );
                    notices.extend(self.system_alert(&topic, text));
                }
            }
        }
        (failures, notices)
    }

    /// Check the rules folder again (rules, templates, the linter, as `nightdesk check`
    /// does); swap the new rules and templates in only if all of it passes, else keep
    /// the last good ones running and alert once per distinct set of problems.
    pub async fn reload_rules(&self) -> Result<usize, Vec<String>> {
        match checked_rules(&self.engine, &self.config.rules.dir) {
            Ok((set, templates)) => {
                let count = set.rules.len();
                self.rules.store(Arc::new(set));
                self.templates.store(Arc::new(templates));
                telemetry::rules_loaded(count);
                Ok(count)
            }
            Err(problems) => {
                telemetry::rules_reload_failed(&problems);
                let digest =
                    hex::encode(&sha2::Sha256::digest(problems.join("\n").as_bytes())[..6]);
                let text = format!(
                    "nightdesk: rule reload failed; the last good rules keep running.\n{}",
                    problems.join("\n")
                );
                if let Some(alert) = self.system_alert(&format!("reload/{digest}"), text) {
                    if let Err(e) = self.store.plan(None, &[alert], self.clock.now()).await {
                        tracing::error!(error = %e, "Cannot record the reload alert.");
                    }
                    self.planned.notify_one();
                }
                Err(problems)
            }
        }
    }

    /// The templates in force now.
    pub fn templates(&self) -> Arc<Templates> {
        self.templates.load_full()
    }

    /// The rule names loaded now, with their versions.
    pub fn loaded_rules(&self) -> Vec<(String, String)> {
        self.rules
            .load()
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect()
    }

    /// Perform every due action.
    pub async fn execute_due(
        &self,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<ExecutorReport, ExecutorError> {
        self.executor.run_due(stop).await
    }

    /// One pass of everything: poll each source, run the rules on new events, sweep,
    /// and perform what is due.
    pub async fn run_cycle(&self) -> Result<CycleReport, DaemonError> {
        let mut report = CycleReport::default();
        for source in &self.sources {
            let result = self.poll(source.as_ref()).await.map_err(|e| e.to_string());
            report.polls.push((source.key().to_owned(), result));
        }
        report.tracking = self.track_parcels().await?;
        report.mail = self.read_mail().await?;
        report.sla_at_risk = self.check_sla().await?;
        let (seen, planned, failures) = self.process_events().await?;
        let (swept, sweep_failures) = self.sweep().await?;
        report.events_seen = seen;
        report.actions_planned = planned + swept;
        report.rule_failures = failures + sweep_failures;
        report.executed = self.execute_due(&|| false).await?;
        Ok(report)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn quarantined_rules(&self) -> Vec<String> {
        self.engine.quarantined()
    }

    /// Copy the engine's quarantined rules to the store when they changed, so
    /// `nightdesk status` (another process) sees them; the error is the failure in
    /// `outcomes` that quarantined the rule.
    async fn store_quarantines(
        &self,
        outcomes: &[RuleOutcome],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let names = self.engine.quarantined();
        let changed = {
            let stored = self
                .quarantines_stored
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            stored.as_ref() != Some(&names)
        };
        if !changed {
            return Ok(());
        }
        let rules = self.rules.load();
        let current: Vec<crate::store::RuleQuarantine> = names
            .iter()
            .map(|name| crate::store::RuleQuarantine {
                instance: self.instance().to_owned(),
                rule: name.clone(),
                version: rules
                    .rules
                    .iter()
                    .find(|r| &r.name == name)
                    .map(|r| r.version.clone())
                    .unwrap_or_default(),
                error: outcomes
                    .iter()
                    .find_map(|o| match o {
                        RuleOutcome::Failed { rule, error, .. } if rule == name => {
                            Some(error.to_string())
                        }
                        _ => None,
                    })
                    .unwrap_or_default(),
                since: now,
            })
            .collect();
        self.store
            .sync_quarantines(self.instance(), &current)
            .await?;
        *self
            .quarantines_stored
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(names);
        Ok(())
    }

    /// When this daemon was built.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    /// Each source's key and schedule, for readiness.
    pub fn source_schedules(&self) -> Vec<(String, crate::schedule::Schedule)> {
        self.sources
            .iter()
            .map(|s| (s.key().to_owned(), s.schedule().clone()))
            .collect()
    }

    /// The clock the daemon runs on.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Run every stage on its schedule until `shutdown`; then stop polling, finish the
    /// action in flight, and return.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), DaemonError> {
        let tasks = TaskTracker::new();
        // Take the free leases before the tasks start, so each runs at once where it may.
        self.leases.renew_all(false).await;
        {
            let daemon = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { daemon.leases.keep(&shutdown).await });
        }
        for source in self.sources.clone() {
            let daemon = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let schedule = source.schedule().clone();
                let lease = format!("poll/{}", source.key());
                daemon
                    .every(&schedule, &shutdown, true, &lease, || async {
                        // An interrupted poll commits nothing; the window is read again.
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            result = daemon.poll(source.as_ref()) => {
                                if result.is_ok()
                                    && let Err(e) = daemon.process_events().await {
                                        tracing::error!(error = %e, "Rules pass failed.");
                                    }
                            }
                        }
                    })
                    .await;
            });
        }
        {
            let daemon = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let schedule = daemon.config.sweep.schedule.clone();
                daemon
                    .every(&schedule, &shutdown, true, SWEEP_LEASE, || async {
                        if let Err(e) = daemon.sweep().await {
                            tracing::error!(error = %e, "Sweep failed.");
                        }
                    })
                    .await;
            });
        }
        if let Some(section) = self.config.carriers.clone() {
            let daemon = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                daemon
                    .every(&section.schedule, &shutdown, true, TRACK_LEASE, || async {
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            result = daemon.track_parcels() => match result {
                                Ok(_) => {
                                    if let Err(e) = daemon.process_events().await {
                                        tracing::error!(error = %e, "Rules pass failed.");
                                    }
                                }
                                Err(e) => tracing::error!(error = %e, "Tracking poll failed."),
                            }
                        }
                    })
                    .await;
            });
        }
        for index in (0..self.inboxes.len()).filter(|i| self.inboxes[*i].pushes) {
            let daemon = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { daemon.watch_mailbox(index, &shutdown).await });
        }
        if let Some(section) = self.config.mail.clone() {
            let daemon = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                daemon
                    .every(&section.schedule, &shutdown, true, MAIL_LEASE, || async {
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            result = daemon.read_mail() => {
                                if let Err(e) = result {
                                    tracing::error!(error = %e, "Reading mail failed.");
                                }
                                if let Err(e) = daemon.check_sla().await {
                                    tracing::error!(error = %e, "SLA check failed.");
                                }
                                if let Err(e) = daemon.process_events().await {
                                    tracing::error!(error = %e, "Rules pass failed.");
                                }
                            }
                        }
                    })
                    .await;
            });
        }
        {
            let daemon = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { daemon.executor_loop(shutdown).await });
        }
        {
            let daemon = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { daemon.health_loop(&shutdown).await });
        }
        if let Some(summary) = self.config.summary.clone() {
            let daemon = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                daemon
                    .every(
                        &summary.schedule,
                        &shutdown,
                        false,
                        SUMMARY_LEASE,
                        || async {
                            if let Err(e) = daemon.send_summary().await {
                                tracing::error!(error = %e, "Morning summary failed.");
                            }
                        },
                    )
                    .await;
            });
        }
        for (name, schedule) in self.config.schedules.clone() {
            let daemon = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                // A named schedule fires on its times only, not at start.
                let lease = format!("schedule/{name}");
                daemon
                    .every(&schedule, &shutdown, false, &lease, || async {
                        if let Err(e) = daemon.fire_schedule(&name).await {
                            tracing::error!(schedule = %name, error = %e, "Schedule failed.");
                        }
                    })
                    .await;
            });
        }
        if self.config.rules.reload {
            match self.clone().watch_rules(shutdown.clone()) {
                Ok(watching) => {
                    tasks.spawn(watching);
                }
                Err(e) => {
                    tracing::error!(error = %e, "Cannot watch the rules folder; rules reload on restart only.")
                }
            }
        }
        tasks.close();
        shutdown.cancelled().await;
        tracing::info!("Shutting down: polling stopped, finishing actions in flight.");
        if tokio::time::timeout(StdDuration::from_secs(30), tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "Shutdown took longer than 30 s; unfinished work is recovered at the next start."
            );
        }
        self.leases.release().await;
        Ok(())
    }

    /// Reload the rules whenever a file under the rules folder changes (debounced:
    /// editors save in several steps). Watching the folder, not the files, follows
    /// editors that replace a file instead of writing it.
    fn watch_rules(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> notify::Result<impl Future<Output = ()> + use<>> {
        use notify_debouncer_full::{DebounceEventResult, new_debouncer, notify::RecursiveMode};
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut debouncer = new_debouncer(
            StdDuration::from_millis(500),
            None,
            move |result: DebounceEventResult| {
                let relevant = result.is_ok_and(|events| {
                    events
                        .iter()
                        .flat_map(|e| e.paths.iter())
                        .any(|p| p.extension().is_some_and(|x| x == "rhai" || x == "txt"))
                });
                if relevant {
                    // A reload is already queued if this fails: nothing is lost.
                    let _ = tx.try_send(());
                }
            },
        )?;
        debouncer.watch(&self.config.rules.dir, RecursiveMode::Recursive)?;
        Ok(async move {
            let _watching = debouncer;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = rx.recv() => {
                        if changed.is_none() {
                            return;
                        }
                        let _ = self.reload_rules().await;
                    }
                }
            }
        })
    }

    /// Run `work` (now, if `at_start`, and) at every fire of `schedule`, until shutdown,
    /// whenever this instance holds `lease`. A task that runs at start (a poll) also
    /// runs as soon as its lease is taken over from an instance that died.
    async fn every<F, Fut>(
        &self,
        schedule: &Schedule,
        shutdown: &CancellationToken,
        at_start: bool,
        lease: &str,
        mut work: F,
    ) where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let taken_over = self.leases.taken_over(lease);
        let mut due = at_start;
        loop {
            if due && self.leases.ensure(lease).await {
                work().await;
            }
            self.beat();
            let now = self.clock.now();
            let Some(next) = schedule.next_after(now) else {
                return;
            };
            let wait = (next - now).to_std().unwrap_or(StdDuration::ZERO);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => due = true,
                _ = taken_over.notified() => due = at_start,
            }
        }
    }

    /// Note that the scheduler came round.
    fn beat(&self) {
        self.heartbeat.store(
            self.clock.now().timestamp_millis(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// When the scheduler or the executor last came round: a service watchdog pings
    /// only while this keeps moving.
    pub fn heartbeat(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.heartbeat.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or_default()
    }

    /// The leases this instance holds now (for status and tests).
    pub fn leases_held(&self) -> Vec<String> {
        self.leases.held_now()
    }

    /// This instance's name in leases and logs.
    pub fn instance(&self) -> &str {
        self.leases.instance()
    }

    async fn executor_loop(&self, shutdown: CancellationToken) {
        let stop = || shutdown.is_cancelled();
        while !shutdown.is_cancelled() {
            self.beat();
            if let Err(e) = self.execute_due(&stop).await {
                tracing::error!(error = %e, "Executor pass failed.");
            }
            // Wake for new actions at once, for retries when due, and at least every 5 s
            // (another instance's expired lease, a clock that moved).
            let wait = match self.executor.next_due().await {
                Ok(Some(at)) => (at - self.clock.now())
                    .to_std()
                    .unwrap_or(StdDuration::ZERO),
                _ => StdDuration::from_secs(5),
            }
            .min(StdDuration::from_secs(5));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.planned.notified() => {}
                _ = tokio::time::sleep(wait.max(StdDuration::from_millis(50))) => {}
            }
        }
    }
}

/// One action today's rules would ask for over stored history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayLine {
    pub at: DateTime<Utc>,
    /// What triggered it: an event's name, or `sweep`.
    pub trigger: String,
    pub subject: String,
    pub rule: String,
    pub action: String,
    /// The outbox already holds this key: it was (or is being) done.
    pub already_planned: bool,
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub events: usize,
    pub orders_swept: usize,
    pub lines: Vec<ReplayLine>,
    pub failures: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{} rule file(s) do not compile:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<RuleError>),
}

/// Run the rules of `config` over the events stored since `since`, and a sweep at
/// `now`, and say what they would do. Nothing is written (give it a read-only store):
/// no outbox row, no audit line, no event marked seen. Each event is judged against
/// the order as it is now: the store keeps events, not every past version of an order.
pub async fn replay(
    config: &Config,
    store: &dyn Store,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
) -> Result<ReplayReport, ReplayError> {
    let engine = RuleEngine::new(config.rules.limits);
    let rules = engine
        .load_dir(&config.rules.dir)
        .map_err(ReplayError::Rules)?;
    let mut report = ReplayReport::default();
    let mut planned: Vec<(DateTime<Utc>, String, PlannedAction)> = Vec::new();
    let mut judge = |outcomes: Vec<RuleOutcome>,
                     subject: &Subject,
                     at: DateTime<Utc>,
                     trigger: &str,
                     report: &mut ReplayReport| {
        for outcome in &outcomes {
            if let RuleOutcome::Failed { rule, error, .. } = outcome {
                report
                    .failures
                    .push(format!("{at} {subject} {rule}: {error}"));
            }
        }
        for action in rules::plan(&outcomes, subject, at) {
            planned.push((at, trigger.to_owned(), action));
        }
    };
    for event in store.events_since(since).await? {
        report.events += 1;
        let Some((channel, id)) = event.subject.as_order() else {
            continue;
        };
        let Some(order) = store.order(channel, id).await? else {
            continue;
        };
        let args = [
            view::order(&order, event.at),
            view::event(&event.kind, event.at),
        ];
        let outcomes = engine.run(&rules, event.kind.hook(), &args);
        judge(
            outcomes,
            &event.subject,
            event.at,
            event.kind.name(),
            &mut report,
        );
    }
    let open = store
        .open_orders(now - Duration::days(config.sweep.max_age_days))
        .await?;
    report.orders_swept = open.len();
    for order in &open {
        let outcomes = engine.run(&rules, rules::HOOK_ORDER_SWEEP, &[view::order(order, now)]);
        judge(outcomes, &order.order.subject(), now, "sweep", &mut report);
    }
    let keys: Vec<String> = planned
        .iter()
        .map(|(_, _, a)| a.idempotency_key.clone())
        .collect();
    let known = store.existing_keys(&keys).await?;
    report.lines = planned
        .into_iter()
        .map(|(at, trigger, action)| ReplayLine {
            at,
            trigger,
            subject: action.subject.to_string(),
            already_planned: known.contains(&action.idempotency_key),
            action: rules::describe_action(&action.request, action.hold.as_deref()),
            rule: action.rule,
        })
        .collect();
    Ok(report)
}

/// Everything nightdesk decided and did about one order, for `nightdesk explain`.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub subject: Subject,
    pub order: Option<crate::model::StoredOrder>,
    pub decisions: Vec<Decision>,
    pub outbox: Vec<crate::store::OutboxRow>,
    pub audit: Vec<crate::store::AuditEntry>,
}

/// Read an order's decision trace from the store.
pub async fn explain(
    store: &dyn Store,
    channel: crate::model::SalesChannel,
    order_id: &str,
) -> Result<Explanation, StoreError> {
    let subject = Subject::order(channel, order_id);
    Ok(Explanation {
        order: store.order(channel, order_id).await?,
        decisions: store.decisions(subject.as_str()).await?,
        outbox: store.outbox_for(subject.as_str()).await?,
        audit: store.audit_log(Some(subject.as_str())).await?,
        subject,
    })
}

impl Explanation {
    /// The trace as text: the order, each decision with what became of each action,
    /// then each action's life in the outbox.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let when = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
        match &self.order {
            Some(o) => {
                let _ = writeln!(
                    out,
                    "{}: {} since {}, {}, bought {}, last updated {}",
                    self.subject,
                    o.order.status,
                    when(o.status_since),
                    o.order
                        .fulfillment
                        .map_or("fulfilment unknown", |f| f.as_str()),
                    when(o.order.purchase_date),
                    when(o.order.last_update)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{}: not in the store (never polled, or outside the lookback)",
                    self.subject
                );
            }
        }
        let _ = writeln!(out, "\nDecisions ({}):", self.decisions.len());
        if self.decisions.is_empty() {
            let _ = writeln!(
                out,
                "  none recorded (sweeps record only rules that asked for something or failed)"
            );
        }
        for d in &self.decisions {
            let version = if d.rule_version.is_empty() {
                String::new()
            } else {
                format!(" {}", d.rule_version)
            };
            let _ = writeln!(
                out,
                "  {}  {:<20} {}{}: {}",
                when(d.at),
                d.trigger,
                d.rule,
                version,
                d.outcome
            );
            if let Some(actions) = d.detail["actions"].as_array() {
                for a in actions {
                    let _ = writeln!(
                        out,
                        "      {} -> {}",
                        a["action"].as_str().unwrap_or(""),
                        a["became"].as_str().unwrap_or("")
                    );
                }
            }
            if let Some(error) = d.detail["error"].as_str() {
                let _ = writeln!(out, "      error: {error}");
            }
        }
        let _ = writeln!(out, "\nActions ({}):", self.outbox.len());
        for row in &self.outbox {
            let error = row
                .last_error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  #{} {} by {} {}: {} after {} attempt(s){error}",
                row.id, row.kind, row.rule, row.rule_version, row.state, row.attempts
            );
            for entry in self.audit.iter().filter(|a| a.outbox_id == Some(row.id)) {
                let _ = writeln!(
                    out,
                    "      {}  {}  {}",
                    when(entry.at),
                    entry.kind,
                    entry.detail
                );
            }
        }
        out
    }
}
