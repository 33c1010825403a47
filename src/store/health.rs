//! What an operator (`nightdesk status`), `/readyz` and `/metrics` read about a running
//! daemon, kept in the store so another process sees it: each poller's health, the
//! rules an instance quarantined, and cheap counts (outbox rows by state, open buyer
//! mail clocks).
//!
//! It must never hold a secret: error texts are the `SourceError`/`RuleError` Display,
//! which are built secret-free. Nothing here decides anything; readers judge.
//!
//! Invariants it keeps:
//! - a source's `last_good_at` only moves forward with a good poll, and a good poll
//!   resets its consecutive failures;
//! - an instance's quarantine rows are exactly the set it last synced; a rule that stays
//!   quarantined keeps the time and error of when it was first quarantined.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreError;

/// A poller's health as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceHealth {
    pub source: String,
    pub last_attempt_at: DateTime<Utc>,
    pub last_good_at: Option<DateTime<Utc>>,
    /// The last failure (kept after a good poll, with its time, as history).
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Failures since the last good poll.
    pub consecutive_failures: i64,
}

/// A rule an instance's engine skips until its file changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleQuarantine {
    pub instance: String,
    pub rule: String,
    pub version: String,
    pub error: String,
    pub since: DateTime<Utc>,
}

/// How many outbox rows are in one state, and the oldest change among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateCount {
    pub state: String,
    pub count: i64,
    /// The earliest `updated_at` of those rows (for `held`: the longest wait).
    pub oldest: DateTime<Utc>,
}

/// Buyer messages of one marketplace that may be answered and have no substantive
/// reply yet: their 24-hour clocks run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailClocks {
    pub channel: String,
    pub open: i64,
    pub oldest_received: DateTime<Utc>,
}

/// The health part of the store (every [`super::Store`] is one).
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// A cheap query: whether the database answers at all.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Record one poll of `source`: `Ok(())` when it stored its window, else the error
    /// text (secret-free).
    async fn record_poll(
        &self,
        source: &str,
        result: Result<(), &str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Every poller's health, by source.
    async fn source_health(&self) -> Result<Vec<SourceHealth>, StoreError>;

    /// Make `instance`'s quarantine rows exactly `current` (by rule). A rule already
    /// stored at the same version keeps its first `since` and error.
    async fn sync_quarantines(
        &self,
        instance: &str,
        current: &[RuleQuarantine],
    ) -> Result<(), StoreError>;

    /// Every instance's quarantined rules, by rule then instance.
    async fn quarantines(&self) -> Result<Vec<RuleQuarantine>, StoreError>;

    /// Outbox rows by state (states without rows left out), by state.
    async fn outbox_states(&self) -> Result<Vec<StateCount>, StoreError>;

    /// The running 24-hour clocks, by marketplace.
    async fn open_mail_clocks(&self) -> Result<Vec<MailClocks>, StoreError>;
}

type HealthRow = (String, i64, Option<i64>, Option<String>, Option<i64>, i64);

pub(super) fn health_of(
    (source, last_attempt_at, last_good_at, last_error, last_error_at, consecutive_failures): HealthRow,
) -> SourceHealth {
    use super::from_ms;
    SourceHealth {
        source,
        last_attempt_at: from_ms(last_attempt_at),
        last_good_at: last_good_at.map(from_ms),
        last_error,
        last_error_at: last_error_at.map(from_ms),
        consecutive_failures,
    }
}

/// Expands to the [`HealthStore`] impl of a backend type with a `pool` field and a
/// `write_tx()` method (the same SQL runs on both backends).
macro_rules! sql_health_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::health::HealthStore for $store {
            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                let _: (i64,) = sqlx::query_as("SELECT CAST(1 AS BIGINT)")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(())
            }

            async fn record_poll(
                &self,
                source: &str,
                result: Result<(), &str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::to_ms;
                let query = match result {
                    Ok(()) => sqlx::query(
                        "INSERT INTO source_health (source, last_attempt_at, last_good_at, consecutive_failures)
                         VALUES ($1, $2, $2, 0)
                         ON CONFLICT (source) DO UPDATE SET
                           last_attempt_at = excluded.last_attempt_at,
                           last_good_at = excluded.last_good_at,
                           consecutive_failures = 0",
                    )
                    .bind(source)
                    .bind(to_ms(now)),
                    Err(error) => sqlx::query(
                        "INSERT INTO source_health (source, last_attempt_at, last_error, last_error_at, consecutive_failures)
                         VALUES ($1, $2, $3, $2, 1)
                         ON CONFLICT (source) DO UPDATE SET
                           last_attempt_at = excluded.last_attempt_at,
                           last_error = excluded.last_error,
                           last_error_at = excluded.last_error_at,
                           consecutive_failures = source_health.consecutive_failures + 1",
                    )
                    .bind(source)
                    .bind(to_ms(now))
                    .bind(error),
                };
                query.execute(&self.pool).await?;
                Ok(())
            }

            async fn source_health(
                &self,
            ) -> Result<Vec<$crate::store::health::SourceHealth>, $crate::store::StoreError> {
                let rows = sqlx::query_as(
                    "SELECT source, last_attempt_at, last_good_at, last_error, last_error_at, consecutive_failures
                     FROM source_health ORDER BY source",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map($crate::store::health::health_of).collect())
            }

            async fn sync_quarantines(
                &self,
                instance: &str,
                current: &[$crate::store::health::RuleQuarantine],
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::to_ms;
                let mut tx = self.write_tx().await?;
                let stored: Vec<(String,)> =
                    sqlx::query_as("SELECT rule FROM rule_quarantines WHERE instance = $1")
                        .bind(instance)
                        .fetch_all(&mut *tx)
                        .await?;
                for (rule,) in stored {
                    if !current.iter().any(|q| q.rule == rule) {
                        sqlx::query("DELETE FROM rule_quarantines WHERE instance = $1 AND rule = $2")
                            .bind(instance)
                            .bind(&rule)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                for q in current {
                    sqlx::query(
                        "INSERT INTO rule_quarantines (instance, rule, version, error, since)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (instance, rule) DO UPDATE SET
                           version = excluded.version, error = excluded.error, since = excluded.since
                         WHERE rule_quarantines.version <> excluded.version",
                    )
                    .bind(instance)
                    .bind(&q.rule)
                    .bind(&q.version)
                    .bind(&q.error)
                    .bind(to_ms(q.since))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn quarantines(
                &self,
            ) -> Result<Vec<$crate::store::health::RuleQuarantine>, $crate::store::StoreError> {
                use $crate::store::from_ms;
                let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
                    "SELECT instance, rule, version, error, since FROM rule_quarantines
                     ORDER BY rule, instance",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(instance, rule, version, error, since)| {
                        $crate::store::health::RuleQuarantine {
                            instance,
                            rule,
                            version,
                            error,
                            since: from_ms(since),
                        }
                    })
                    .collect())
            }

            async fn outbox_states(
                &self,
            ) -> Result<Vec<$crate::store::health::StateCount>, $crate::store::StoreError> {
                use $crate::store::from_ms;
                let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                    "SELECT state, COUNT(*), MIN(updated_at) FROM outbox GROUP BY state ORDER BY state",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(state, count, oldest)| $crate::store::health::StateCount {
                        state,
                        count,
                        oldest: from_ms(oldest),
                    })
                    .collect())
            }

            async fn open_mail_clocks(
                &self,
            ) -> Result<Vec<$crate::store::health::MailClocks>, $crate::store::StoreError> {
                use $crate::store::from_ms;
                let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                    "SELECT channel, COUNT(*), MIN(received_at) FROM buyer_messages
                     WHERE answered_at IS NULL AND do_not_answer IS NULL
                     GROUP BY channel ORDER BY channel",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(channel, open, oldest)| $crate::store::health::MailClocks {
                        channel,
                        open,
                        oldest_received: from_ms(oldest),
                    })
                    .collect())
            }
        }
    };
}
pub(super) use sql_health_store;
