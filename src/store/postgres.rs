//! PostgreSQL backend.
//!
//! Resources are stored as TEXT (not JSONB) so the exact text — decimal scale, key order, duplicates —
//! survives. Optimistic `If-Match` concurrency is enforced by the database, not the process: every write
//! locks the current row with `SELECT … FOR UPDATE` inside its transaction, and concurrent creates of
//! one id are settled by the `(rtype, id)` unique index (`ON CONFLICT DO NOTHING` + re-read under lock).
//! So any number of gateway processes may share one database.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::search::Registry;

type Db = sqlx::Postgres;
/// Appended to the batched current-row prefetch (see `prefetch_current`).
const SQL_LOCK_SUFFIX: &str = " FOR UPDATE OF r";

type Me = PgStore;

/// Row lock held until commit: serialises writers of one resource across connections and processes.
const SQL_SELECT_FOR_WRITE: &str =
    "SELECT rid, version, deleted, last_updated, content_hash FROM resources WHERE rtype = $1 AND id = $2 FOR UPDATE";

/// The PostgreSQL store. Cheap to clone (the pool is reference-counted).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    registry: Arc<Registry>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:pw]@host:port/db`), pool of 16 connections, and runs the
    /// embedded `migrations/postgres` (serialised across processes by sqlx's advisory lock).
    /// Errors: `Database` (cannot connect / migrate).
    pub async fn connect(url: &str, registry: Arc<Registry>) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(120))
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        Ok(PgStore { pool, registry })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Refreshes the planner's statistics (`ANALYZE`). Call after a bulk import. Errors: `Database`.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        sqlx::query("ANALYZE").execute(&self.pool).await?;
        Ok(())
    }

    fn read_pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        Ok(self.pool.begin().await?)
    }
}

include!("backend_impl.rs");
