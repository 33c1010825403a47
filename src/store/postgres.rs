//! PostgreSQL: the store for several instances. Executors on every instance claim due
//! outbox rows with `FOR UPDATE SKIP LOCKED`, so no row is claimed twice, and each claim
//! bumps a fencing token so a worker whose lease expired cannot complete it.

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use super::StoreError;
use super::sql::sql_store;

pub struct PostgresStore {
    pool: PgPool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connect and apply the migrations (serialised by sqlx's advisory lock, so several
    /// instances may start at once).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Connect for reading only: every session is read-only, so a replay or report can
    /// never write, whatever it runs.
    pub async fn connect_read_only(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    async fn write_tx(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

super::mail::sql_mail_store!(PostgresStore);
super::leases::sql_lease_store!(PostgresStore);
super::health::sql_health_store!(PostgresStore);

sql_store!(
    PostgresStore,
    backend = "postgres",
    claim_sql = "UPDATE outbox SET state = 'claimed', lease_owner = $1, lease_expires_at = $2, fence = fence + 1, attempts = attempts + 1, updated_at = $3
        WHERE id IN (
            SELECT id FROM outbox
            WHERE ((state IN ('planned', 'retry') AND next_attempt_at <= $3) OR (state = 'claimed' AND lease_expires_at < $3))
              AND ($5 IS NULL OR group_key = $5)
            ORDER BY id LIMIT $4
            FOR UPDATE SKIP LOCKED)
        RETURNING id, idempotency_key, rule, rule_version, subject, kind, payload, attempts, fence, progress, group_key"
);
