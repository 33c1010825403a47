//! Test support: every store test runs on SQLite, and on PostgreSQL too when
//! `TEST_DATABASE_URL` is set. Each test gets a database of its own so tests can run in
//! parallel. Public because the integration tests in `tests/` use it as well.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{PostgresStore, SqliteStore, Store, StoreError};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A store under test, and what to clean up after it.
pub struct TestStore {
    pub label: &'static str,
    pub store: Arc<dyn Store>,
    /// For SQLite, the database file (the test may open it again).
    pub sqlite_path: Option<PathBuf>,
    /// For PostgreSQL, the test database's URL.
    pub postgres_url: Option<String>,
    dir: Option<PathBuf>,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh SQLite store in its own temporary folder.
pub async fn sqlite() -> Result<TestStore, StoreError> {
    let dir = std::env::temp_dir().join(unique("nightdesk_test"));
    let path = dir.join("nightdesk.db");
    let store = SqliteStore::open(&path).await?;
    Ok(TestStore {
        label: "sqlite",
        store: Arc::new(store),
        sqlite_path: Some(path),
        postgres_url: None,
        dir: Some(dir),
    })
}

/// A fresh PostgreSQL database on the server named by `TEST_DATABASE_URL`, if set.
pub async fn postgres() -> Result<Option<TestStore>, StoreError> {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        return Ok(None);
    };
    let name = unique("nightdesk_test");
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&base)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    admin.close().await;
    let url = match url::Url::parse(&base) {
        Ok(mut url) => {
            url.set_path(&name);
            url.to_string()
        }
        Err(e) => {
            return Err(StoreError::Open {
                path: "TEST_DATABASE_URL".into(),
                reason: e.to_string(),
            });
        }
    };
    let store = PostgresStore::connect(&url).await?;
    let postgres_url = Some(url);
    Ok(Some(TestStore {
        label: "postgres",
        store: Arc::new(store),
        sqlite_path: None,
        postgres_url,
        dir: None,
    }))
}

/// SQLite, plus PostgreSQL when `TEST_DATABASE_URL` is set.
pub async fn all() -> Result<Vec<TestStore>, StoreError> {
    let mut stores = vec![sqlite().await?];
    stores.extend(postgres().await?);
    Ok(stores)
}
