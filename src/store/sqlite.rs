//! SQLite: the default store, one file, one instance. The instance lock is an exclusive
//! lock on `<file>.lock`, released by the OS when the process dies, so a crash never
//! leaves a stale lock and a second live instance is refused at once.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::StoreError;
use super::sql::sql_store;

pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
    /// Held for the store's lifetime; dropping it releases the instance lock.
    _lock: File,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Open (creating on first run) the database file, take the instance lock and
    /// apply the migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| open_error(e.to_string()))?;
        }
        let lock = lock_file(path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(path.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(open_error(e.to_string())),
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(StoreError::Database)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed outbox state survives a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self {
            pool,
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// Open an existing database read-only, without the instance lock: for `replay`
    /// and reports beside a running daemon. Every write fails.
    pub async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let options = existing(path)?.read_only(true);
        Self::beside_daemon(path, options, 2).await
    }

    /// A pool on an existing database, without taking the instance lock (the lock file
    /// is opened, not locked: the daemon keeps it).
    async fn beside_daemon(
        path: &Path,
        options: SqliteConnectOptions,
        connections: u32,
    ) -> Result<Self, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .connect_with(options)
            .await?;
        let lock = lock_file(path)?;
        Ok(Self {
            pool,
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// Open an existing database for a person's decisions (approve, reject) beside a
    /// running daemon: read-write, without the instance lock and without migrations.
    /// SQLite serialises the writes; the daemon picks the decision up at its next pass.
    pub async fn open_shared(path: &Path) -> Result<Self, StoreError> {
        let options = existing(path)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true);
        Self::beside_daemon(path, options, 1).await
    }

    /// Write transactions take the write lock up front, so two writers queue on
    /// `busy_timeout` instead of failing when a read lock cannot be upgraded.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Options for a database that must already exist (nothing is created beside a daemon).
fn existing(path: &Path) -> Result<SqliteConnectOptions, StoreError> {
    if !path.exists() {
        return Err(StoreError::Open {
            path: path.display().to_string(),
            reason: "no such database".into(),
        });
    }
    Ok(SqliteConnectOptions::from_str("sqlite://")
        .map_err(StoreError::Database)?
        .filename(path)
        .busy_timeout(Duration::from_secs(10)))
}

/// `<db>.lock`, beside the database, opened (created if missing) but not yet locked.
fn lock_file(db: &Path) -> Result<File, StoreError> {
    let lock_path = PathBuf::from(format!("{}.lock", db.display()));
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Open {
            path: lock_path.display().to_string(),
            reason: e.to_string(),
        })
}

super::mail::sql_mail_store!(SqliteStore);
super::leases::sql_lease_store!(SqliteStore);
super::health::sql_health_store!(SqliteStore);

sql_store!(
    SqliteStore,
    backend = "sqlite",
    claim_sql = "UPDATE outbox SET state = 'claimed', lease_owner = $1, lease_expires_at = $2, fence = fence + 1, attempts = attempts + 1, updated_at = $3
        WHERE id IN (
            SELECT id FROM outbox
            WHERE ((state IN ('planned', 'retry') AND next_attempt_at <= $3) OR (state = 'claimed' AND lease_expires_at < $3))
              AND ($5 IS NULL OR group_key = $5)
            ORDER BY id LIMIT $4)
        RETURNING id, idempotency_key, rule, rule_version, subject, kind, payload, attempts, fence, progress, group_key"
);
