//! The store: orders and their items, parcels, buyer mail ([`mail`]), the events an
//! upsert emits, poll checkpoints, the outbox and the audit log. SQLite (one instance, default) or
//! PostgreSQL (several).
//!
//! Both backends run the same SQL, written once in [`sql`]; times are stored as epoch
//! milliseconds so the schema is portable. A store never decides anything: it records
//! what sources read and what rules asked, and hands out work to executors.
//!
//! Invariants it keeps:
//! - a poll checkpoint moves only in the transaction that stores the orders it covers;
//! - an order version (or a parcel's description) already stored produces no second event;
//! - an idempotency key enters the outbox once;
//! - a completion whose lease was taken over (stale fence) is rejected.

pub mod health;
pub mod leases;
pub mod mail;
mod postgres;
mod sql;
mod sqlite;
pub mod testing;

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;

use crate::config::StoreTarget;
use crate::model::{Event, Order, PlannedAction, SalesChannel, Shipment, StoredOrder, Subject};
pub use health::{HealthStore, MailClocks, RuleQuarantine, SourceHealth, StateCount};
pub use leases::{Lease, LeaseStore};
pub use mail::{MailReport, MailStore, SentReply};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "another nightdesk instance is using {0}; SQLite allows one instance (use PostgreSQL to run several)"
    )]
    Locked(String),
    #[error("cannot open {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("stored data is corrupt ({what}): {reason}")]
    Corrupt { what: String, reason: String },
    #[error("action {0} was taken over by another worker (stale lease); its result is discarded")]
    StaleLease(i64),
    #[error("there is no action {0} in the outbox")]
    NoSuchAction(i64),
    #[error("action {id} is {state}; only held or unknown actions wait for a decision")]
    NotDecidable { id: i64, state: String },
}

/// A person's decision about a held (or unknown) action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decide {
    /// Perform it (for `unknown`: it was checked and had not happened).
    Approve,
    /// Never perform it.
    Reject,
}

/// What one ingest stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Orders new or changed.
    pub stored: usize,
    /// Orders skipped as already known (the overlap of windows) or older than stored.
    pub unchanged: usize,
    pub events: usize,
}

/// What one `record_shipments` stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipmentReport {
    /// Parcels seen for the first time.
    pub new: usize,
    /// Known parcels now described differently (with or without an event).
    pub updated: usize,
    /// Re-reports identical to what is stored, or older than it.
    pub unchanged: usize,
    pub events: usize,
}

impl ShipmentReport {
    pub fn add(&mut self, other: &ShipmentReport) {
        self.new += other.new;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.events += other.events;
    }
}

/// A parcel nightdesk asks a carrier about (`parcel_watch`). The JSON columns are
/// kept as text: the tracker (`sources::carriers::tracker`) owns their meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParcelWatch {
    /// Whose parcel it is (an order, usually).
    pub subject: Subject,
    pub carrier: String,
    pub tracking_number: String,
    /// What to send the carrier (`ParcelQuery` as JSON).
    pub query: String,
    pub shipped_at: Option<DateTime<Utc>>,
    /// The marketplace's latest promised delivery.
    pub promised_by: Option<DateTime<Utc>>,
    /// What the carrier said so far (`ParcelHistory` as JSON); `None` before the first poll.
    pub history: Option<String>,
    pub next_poll_at: DateTime<Utc>,
    /// Set once the parcel settled and its grace period passed: no more polls.
    pub stopped_at: Option<DateTime<Utc>>,
}

/// An action an executor holds under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedAction {
    pub id: i64,
    pub idempotency_key: String,
    pub rule: String,
    pub rule_version: String,
    pub subject: Subject,
    pub kind: String,
    /// The `ActionRequest` as JSON; parsed by the executor (a corrupt row fails, not panics).
    pub payload: String,
    /// This attempt's number, from 1.
    pub attempt: i64,
    /// Fencing token: the completion must present it.
    pub fence: i64,
    /// What earlier attempts recorded (feed ids, a send in flight), if anything.
    pub progress: Option<serde_json::Value>,
    /// Alerts of one channel and rule share a group.
    pub group_key: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done {
        detail: serde_json::Value,
    },
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    Failed {
        error: String,
    },
    /// The upstream may or may not have acted; never retried automatically.
    Unknown {
        error: String,
    },
    /// Waits for a person (approval, a cap, a missing executor).
    Held {
        reason: String,
    },
    /// Not attempted now (quiet hours, an alert group's window, a feed still being
    /// processed): due again at `at`, the attempt not counted.
    Deferred {
        at: DateTime<Utc>,
        reason: String,
    },
}

impl Outcome {
    pub fn state(&self) -> &'static str {
        match self {
            Outcome::Done { .. } => "done",
            Outcome::Retry { .. } => "retry",
            Outcome::Failed { .. } => "failed",
            Outcome::Unknown { .. } => "unknown",
            Outcome::Held { .. } => "held",
            Outcome::Deferred { .. } => "planned",
        }
    }
}

/// A row of the outbox, for reports and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub idempotency_key: String,
    pub rule: String,
    pub rule_version: String,
    pub subject: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    /// The executor's checkpoint (feed ids, a send in flight).
    pub progress: Option<serde_json::Value>,
    /// Who approved or rejected it.
    pub decided_by: Option<String>,
}

/// What one rule decided about one subject at one trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub at: DateTime<Utc>,
    pub subject: String,
    /// The event's name, or `sweep`.
    pub trigger: String,
    pub event_id: Option<i64>,
    pub rule: String,
    pub rule_version: String,
    /// `asked`, `nothing`, `failed` or `quarantined`.
    pub outcome: String,
    /// The actions and what became of each (`new`, `already in the outbox`, `held: …`,
    /// `dry-run`), or the error.
    pub detail: serde_json::Value,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub outbox_id: Option<i64>,
    pub subject: String,
    pub kind: String,
    pub detail: serde_json::Value,
}

/// The seam between the pipeline and its database (buyer mail: [`MailStore`]; leases on
/// scheduled work: [`LeaseStore`]; what status and readiness read: [`HealthStore`]).
#[async_trait]
pub trait Store: MailStore + LeaseStore + HealthStore + Send + Sync {
    fn backend(&self) -> &'static str;

    /// The watermark of a poller: everything last updated before it has been stored.
    async fn checkpoint(&self, source: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// The stored `last_update` of each of `ids` that the store knows.
    async fn known_versions(
        &self,
        channel: SalesChannel,
        ids: &[String],
    ) -> Result<HashMap<String, DateTime<Utc>>, StoreError>;

    /// In one transaction: upsert `orders`, emit events for changes, and move the
    /// source's watermark forward to `watermark`.
    async fn ingest(
        &self,
        source: &str,
        orders: &[Order],
        watermark: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<IngestReport, StoreError>;

    /// In one transaction: upsert the parcels of `subject` and emit events for the
    /// rules. A parcel new or with a changed normalised status emits `TrackingUpdated`
    /// (`from` is `None` when new); one entering `Exception` (or changing its reason
    /// there) also emits `ShipmentException`. An identical re-report, or one whose last
    /// scan is older than the stored one, changes nothing; other changes (a newer scan,
    /// an ETA) are stored without an event.
    async fn record_shipments(
        &self,
        subject: &Subject,
        shipments: &[Shipment],
        now: DateTime<Utc>,
    ) -> Result<ShipmentReport, StoreError>;

    /// Start watching parcels; one already watched (same subject, carrier and number)
    /// is left as it is. Returns how many were new.
    async fn watch_parcels(
        &self,
        watches: &[ParcelWatch],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError>;

    /// Watched parcels due for a poll at `now`, most overdue first.
    async fn due_parcels(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ParcelWatch>, StoreError>;

    /// Every watched parcel, or those with one tracking number (stopped ones included).
    async fn parcel_watches(
        &self,
        tracking_number: Option<&str>,
    ) -> Result<Vec<ParcelWatch>, StoreError>;

    /// In one transaction: store what a poll learnt about a watched parcel (its history,
    /// next poll, stop) and, when given, its description with the events it makes, as
    /// [`Store::record_shipments`] does.
    async fn save_parcel_poll(
        &self,
        watch: &ParcelWatch,
        shipment: Option<&Shipment>,
        now: DateTime<Utc>,
    ) -> Result<ShipmentReport, StoreError>;

    /// The parcels of `subject`, in the order they were first seen.
    async fn shipments(&self, subject: &Subject) -> Result<Vec<Shipment>, StoreError>;

    /// Events recorded at or after `since`, oldest first (seen by the rules or not).
    async fn events_since(&self, since: DateTime<Utc>) -> Result<Vec<Event>, StoreError>;

    /// Events the rules have not seen yet, oldest first.
    async fn pending_events(&self, limit: i64) -> Result<Vec<Event>, StoreError>;

    async fn order(
        &self,
        channel: SalesChannel,
        id: &str,
    ) -> Result<Option<StoredOrder>, StoreError>;

    /// Orders not closed and purchased after `purchased_after`, for time-based rules.
    async fn open_orders(
        &self,
        purchased_after: DateTime<Utc>,
    ) -> Result<Vec<StoredOrder>, StoreError>;

    /// In one transaction: add `actions` to the outbox (a known idempotency key is
    /// skipped) and mark `event` as seen by the rules. Returns how many were new.
    /// Each starts `dry_run`, `held` or `planned`, as the action says.
    async fn plan(
        &self,
        event: Option<i64>,
        actions: &[PlannedAction],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError>;

    /// Which of `keys` the outbox already holds.
    async fn existing_keys(
        &self,
        keys: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError>;

    /// How many actions of `kind` (of `rule`, or of every rule) entered the outbox
    /// since `since`, dry-run ones left out: for daily caps.
    async fn count_actions(
        &self,
        kind: &str,
        rule: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<i64, StoreError>;

    /// Claim up to `limit` due actions (or ones whose lease expired) for `owner`.
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<ClaimedAction>, StoreError>;

    /// Claim the due actions of one alert group (to fold them into one message).
    async fn claim_group(
        &self,
        owner: &str,
        group_key: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<ClaimedAction>, StoreError>;

    /// Durably record an executor's checkpoint before or after an effect; rejected if
    /// the fence is stale (the lease was taken over).
    async fn save_progress(
        &self,
        claim: &ClaimedAction,
        progress: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The latest time a throttled alert of `channel` waits for (rows in `retry`): the
    /// channel's Retry-After, which every alert to it honours.
    async fn channel_retry_until(&self, channel: &str)
    -> Result<Option<DateTime<Utc>>, StoreError>;

    /// When an alert of this group was last delivered.
    async fn last_delivery(&self, group_key: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Approve or reject a held or unknown action, with an audit line naming `who`.
    async fn decide(
        &self,
        id: i64,
        decision: Decide,
        who: &str,
        now: DateTime<Utc>,
    ) -> Result<OutboxRow, StoreError>;

    /// The outbox ids of `keys` that the outbox holds.
    async fn outbox_ids(&self, keys: &[String]) -> Result<HashMap<String, i64>, StoreError>;

    async fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>, StoreError>;

    /// Rows changed since `since`, and every row still held or unknown.
    async fn outbox_changed_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<OutboxRow>, StoreError>;

    /// Every poller's checkpoint: (source, watermark, when it last moved).
    async fn checkpoints(&self) -> Result<Vec<(String, DateTime<Utc>, DateTime<Utc>)>, StoreError>;

    /// Events about `subject`, oldest first.
    async fn events_for(&self, subject: &str) -> Result<Vec<Event>, StoreError>;

    /// Record how an attempt ended, with its audit line; rejected if the fence is stale.
    async fn finish(
        &self,
        claim: &ClaimedAction,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The next time a `retry` row becomes due, if any.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    async fn outbox(&self) -> Result<Vec<OutboxRow>, StoreError>;

    /// The orders (channel, id) indexed under any of `keys` (`customers::index_keys`),
    /// at most 50 per key.
    async fn customer_orders(&self, keys: &[String]) -> Result<Vec<(String, String)>, StoreError>;

    async fn audit_log(&self, subject: Option<&str>) -> Result<Vec<AuditEntry>, StoreError>;

    async fn record_decisions(&self, decisions: &[Decision]) -> Result<(), StoreError>;

    /// Decisions about `subject`, oldest first.
    async fn decisions(&self, subject: &str) -> Result<Vec<Decision>, StoreError>;

    /// Outbox rows about `subject`, oldest first.
    async fn outbox_for(&self, subject: &str) -> Result<Vec<OutboxRow>, StoreError>;
}

/// Open the configured store for reading only: no migrations, no instance lock.
pub async fn open_read_only(target: &StoreTarget) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    Ok(match target {
        StoreTarget::Sqlite(path) => std::sync::Arc::new(SqliteStore::open_read_only(path).await?),
        StoreTarget::Postgres(url) => {
            std::sync::Arc::new(PostgresStore::connect_read_only(url.expose()).await?)
        }
    })
}

/// Open the configured store for a person's decisions beside a running daemon: writes
/// allowed, no instance lock, no migrations.
pub async fn open_shared(target: &StoreTarget) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    Ok(match target {
        StoreTarget::Sqlite(path) => std::sync::Arc::new(SqliteStore::open_shared(path).await?),
        StoreTarget::Postgres(url) => {
            std::sync::Arc::new(PostgresStore::connect(url.expose()).await?)
        }
    })
}

/// Open the configured store, apply its migrations, and (SQLite) take the instance lock.
pub async fn open(target: &StoreTarget) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    Ok(match target {
        StoreTarget::Sqlite(path) => std::sync::Arc::new(SqliteStore::open(path).await?),
        StoreTarget::Postgres(url) => {
            std::sync::Arc::new(PostgresStore::connect(url.expose()).await?)
        }
    })
}

pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests;
