//! Leases on scheduled work, so that several instances on one PostgreSQL database share
//! it: each poller, the sweep, the tracking poll, the mail read and the summaries run on
//! exactly one instance at a time. A lease is held for a short time and renewed while
//! its holder lives; when the holder dies it expires and another instance takes it,
//! with a fence one higher.
//!
//! Invariants it keeps:
//! - at any stored time at most one holder has an unexpired lease of a name;
//! - the fence of a name never decreases, and grows exactly when the holder changes;
//! - releasing only ever gives up the caller's own leases.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::StoreError;

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub expires_at: DateTime<Utc>,
    pub fence: i64,
    pub acquired_at: DateTime<Utc>,
}

impl Lease {
    /// Whether the lease still binds at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at > now
    }
}

/// The lease part of the store (every [`super::Store`] is one).
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Take or renew `name` for `holder` until `now + ttl`. Returns the fence when the
    /// caller holds it afterwards; `None` when another holder's lease is still live.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError>;

    /// Give up every lease `holder` has (at shutdown), so others take them at once.
    async fn release_leases(&self, holder: &str) -> Result<usize, StoreError>;

    /// Every lease, live or not, by name.
    async fn leases(&self) -> Result<Vec<Lease>, StoreError>;
}

/// Expands to the [`LeaseStore`] impl of a backend type with a `pool` field (the same
/// SQL runs on both backends: an upsert that only overwrites the caller's own or an
/// expired lease).
macro_rules! sql_lease_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::leases::LeaseStore for $store {
            async fn acquire_lease(
                &self,
                name: &str,
                holder: &str,
                ttl: chrono::Duration,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Option<i64>, $crate::store::StoreError> {
                use $crate::store::to_ms;
                let row: Option<(i64,)> = sqlx::query_as(
                    "INSERT INTO leases (name, holder, expires_at, fence, acquired_at)
                     VALUES ($1, $2, $3, 1, $4)
                     ON CONFLICT (name) DO UPDATE SET
                       holder = excluded.holder,
                       expires_at = excluded.expires_at,
                       fence = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > $4
                                    THEN leases.fence ELSE leases.fence + 1 END,
                       acquired_at = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > $4
                                    THEN leases.acquired_at ELSE excluded.acquired_at END
                     WHERE leases.holder = excluded.holder OR leases.expires_at <= $4
                     RETURNING fence",
                )
                .bind(name)
                .bind(holder)
                .bind(to_ms(now + ttl))
                .bind(to_ms(now))
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(fence,)| fence))
            }

            async fn release_leases(&self, holder: &str) -> Result<usize, $crate::store::StoreError> {
                let done = sqlx::query("UPDATE leases SET expires_at = 0 WHERE holder = $1 AND expires_at > 0")
                    .bind(holder)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() as usize)
            }

            async fn leases(
                &self,
            ) -> Result<Vec<$crate::store::leases::Lease>, $crate::store::StoreError> {
                use $crate::store::from_ms;
                let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT name, holder, expires_at, fence, acquired_at FROM leases ORDER BY name",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(name, holder, expires_at, fence, acquired_at)| {
                        $crate::store::leases::Lease {
                            name,
                            holder,
                            expires_at: from_ms(expires_at),
                            fence,
                            acquired_at: from_ms(acquired_at),
                        }
                    })
                    .collect())
            }
        }
    };
}
pub(super) use sql_lease_store;
