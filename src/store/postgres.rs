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
/// Placeholder style of the shared search builder (`store::sql`).
const PLACEHOLDERS: super::sql::Placeholders = super::sql::Placeholders::Numbered;

/// A search statement of the shared builder as an sqlx query (binds of the same Rust types
/// `sqlx::QueryBuilder::push_bind` was given before, so PostgreSQL infers the same parameter types).
fn sqlx_query(sql: &Sql) -> sqlx::query::Query<'_, Db, <Db as sqlx::Database>::Arguments> {
    use super::sql::Arg;
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.text().to_string()));
    for a in sql.args() {
        q = match a {
            Arg::Text(s) => q.bind(s.as_str()),
            Arg::Int(i) => q.bind(*i),
            Arg::Real(f) => q.bind(*f),
            Arg::Bool(b) => q.bind(*b),
        };
    }
    q
}

/// Row → (rid, StoredResource) for `RES_COLS` order.
fn stored_from_row(r: &<Db as sqlx::Database>::Row) -> Result<(i64, StoredResource), StoreError> {
    use sqlx::Row;
    let rid: i64 = r.try_get(0)?;
    let lu: i64 = r.try_get(4)?;
    Ok((
        rid,
        StoredResource {
            resource_type: r.try_get(1)?,
            id: r.try_get(2)?,
            version_id: r.try_get(3)?,
            last_updated: super::shared::format_ms(lu),
            deleted: r.try_get(5)?,
            json: r.try_get(6)?,
        },
    ))
}

/// Row lock held until commit: serialises writers of one resource across connections and processes.
const SQL_SELECT_FOR_WRITE: &str =
    "SELECT rid, version, deleted, last_updated, content_hash FROM resources WHERE rtype = $1 AND id = $2 FOR UPDATE";

/// The PostgreSQL store. Cheap to clone (the pool is reference-counted).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    registry: Arc<Registry>,
    /// Committed `search_param` / `token_system` ids (migration 0006).
    interned: Arc<super::shared::Interned>,
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
        Ok(PgStore { pool, registry, interned: Arc::default() })
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

    /// SQLite-only setting (see `SqliteStore`); PostgreSQL sorts index builds within `maintenance_work_mem`.
    async fn set_temp_store(&self, _mode: &'static str) -> Result<(), StoreError> {
        Ok(())
    }

    fn read_pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// `(version, last_updated ms, deleted, json)` of the current row of `rtype/id`.
    async fn current_row(&self, rtype: &str, id: &str) -> Result<Option<(i64, i64, bool, String)>, StoreError> {
        use sqlx::Row;
        let row = sqlx::query("SELECT version, last_updated, deleted, json FROM resources WHERE rtype = $1 AND id = $2")
            .bind(rtype)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))),
        }
    }

    /// `(last_updated ms, deleted, json)` of one version from the history.
    /// Rows `(rid, resource)` of a search statement.
    async fn query_resources(&self, sql: &Sql) -> Result<Vec<(i64, StoredResource)>, StoreError> {
        sqlx_query(sql).fetch_all(&self.pool).await?.iter().map(stored_from_row).collect()
    }

    /// The value of a `COUNT(*)` search statement.
    async fn query_count(&self, sql: &Sql) -> Result<i64, StoreError> {
        use sqlx::Row;
        Ok(sqlx_query(sql).fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// The ids a `SELECT r.id …` search statement returns.
    async fn query_ids(&self, sql: &Sql) -> Result<Vec<String>, StoreError> {
        use sqlx::Row;
        sqlx_query(sql).fetch_all(&self.pool).await?.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn version_row(&self, rtype: &str, id: &str, version: i64) -> Result<Option<(i64, bool, String)>, StoreError> {
        use sqlx::Row;
        // the current version is in `resources`, older ones in the history (migration 0006)
        let row = sqlx::query(
            "SELECT last_updated, deleted, json FROM resources WHERE rtype = $1 AND id = $2 AND version = $3 \
             UNION ALL \
             SELECT last_updated, deleted, json FROM resource_history WHERE rtype = $1 AND id = $2 AND version = $3",
        )
        .bind(rtype)
        .bind(id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))),
        }
    }
}

include!("backend_impl.rs");
include!("security_impl.rs");
