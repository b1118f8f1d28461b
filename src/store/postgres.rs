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

/// A write transaction ([`PgStore::begin_write`]).
type Tx = sqlx::Transaction<'static, Db>;

include!("backend_impl.rs");
include!("security_impl.rs");

/// The PostgreSQL executor of a batch plan ([`super::plan::Plan`]): the same statements as the generic
/// sqlx executor (`write_plan` in `backend_impl.rs`, the order of the `plan` module docs), but each table
/// gets ONE statement per batch with one array bind per column (`INSERT … SELECT * FROM UNNEST($1::…[],
/// …)`, `WHERE rid = ANY($1)`). Multi-row `VALUES` lists have a new SQL text for every row count, so
/// PostgreSQL parses and plans each of them again, with up to 3,000 bind values; an `UNNEST` statement
/// has a constant text (prepared once per connection by sqlx) and a handful of binds whatever the batch
/// size. The rows, their order (new rows in slot order: the same rids) and the results are the same.
pub(super) mod unnest {
    use sqlx::PgConnection;

    use crate::store::plan::{Current, Plan};
    use crate::store::shared::Ids;
    use crate::store::StoreError;

    /// The current rows of `keys` (distinct) aligned with them, row-locked (`FOR UPDATE`) until commit:
    /// one statement with two array binds. Errors: `Database`.
    pub(crate) async fn prefetch_current(
        conn: &mut PgConnection,
        keys: &[(&str, &str)],
    ) -> Result<Vec<Option<Current>>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.rid, r.version, r.deleted, r.last_updated, r.content_hash, r.rtype, r.id \
             FROM UNNEST($1::text[], $2::text[]) AS k (rtype, id) JOIN resources r ON r.rtype = k.rtype AND r.id = k.id \
             FOR UPDATE OF r",
        )
        .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        super::align_current(keys, &rows)
    }

    /// Upserts the import ledger rows `(path, content sha256)` as done at `now` (epoch ms): one statement.
    /// Errors: `Database`.
    pub(crate) async fn ledger_done(conn: &mut PgConnection, ledger: &[(String, String)], now: i64) -> Result<(), StoreError> {
        if ledger.is_empty() {
            return Ok(());
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO import_files (path, content_sha256, status, error, imported_at) \
             SELECT k.path, k.hash, $3, NULL, $4 FROM UNNEST($1::text[], $2::text[]) AS k (path, hash){}",
            super::LEDGER_UPSERT_TAIL
        )))
        .bind(ledger.iter().map(|l| l.0.as_str()).collect::<Vec<_>>())
        .bind(ledger.iter().map(|l| l.1.as_str()).collect::<Vec<_>>())
        .bind(crate::store::LedgerStatus::Done.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Writes `p` inside the caller's (sub)transaction. `Ok(false)`: some new rows were created
    /// concurrently by another connection ([`Plan::raced`]); the caller rolls back and plans again.
    /// Errors: `Database`.
    pub(crate) async fn write_plan(conn: &mut PgConnection, ids: &Ids, p: &mut Plan<'_>) -> Result<bool, StoreError> {
        // 1. new resources rows (`RETURNING` gives their rids)
        if !p.insert.is_empty() {
            let rows = &p.insert;
            let returned = sqlx::query(
                "INSERT INTO resources (rtype, id, version, last_updated, deleted, content_hash, json) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::bool[], $6::text[], $7::text[]) \
                 ON CONFLICT (rtype, id) DO NOTHING RETURNING rid, rtype, id",
            )
            .bind(rows.iter().map(|r| r.rtype).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.last_updated).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.deleted).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.content_hash).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.json.as_str()).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await?;
            super::set_inserted_rids(p, &returned)?;
            if !p.raced().is_empty() {
                return Ok(false);
            }
        }
        // 2. changed existing rows: the replaced current version moves to the history first
        if !p.update.is_empty() {
            let rids: Vec<i64> = p.update.iter().map(|(rid, _)| *rid).collect();
            sqlx::query(
                "INSERT INTO resource_history (rtype, id, version, last_updated, deleted, json) \
                 SELECT rtype, id, version, last_updated, deleted, json FROM resources WHERE rid = ANY($1::int8[]) \
                 ORDER BY rid",
            )
            .bind(&rids)
            .execute(&mut *conn)
            .await?;
            let rows = &p.update;
            sqlx::query(
                "UPDATE resources AS r SET version = v.version, last_updated = v.last_updated, deleted = v.deleted, \
                 content_hash = v.content_hash, json = v.json \
                 FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::bool[], $5::text[], $6::text[]) \
                 AS v (rid, version, last_updated, deleted, content_hash, json) WHERE r.rid = v.rid",
            )
            .bind(&rids)
            .bind(rows.iter().map(|(_, r)| r.version).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.last_updated).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.deleted).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.content_hash).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.json.as_str()).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        // 3. index rows of the replaced versions
        if !p.clear_index.is_empty() {
            for table in super::INDEX_TABLES {
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE rid = ANY($1::int8[])")))
                    .bind(&p.clear_index)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        // 4. history rows: versions of this batch that a later op of the same batch replaced
        if !p.history.is_empty() {
            let rows = &p.history;
            sqlx::query(
                "INSERT INTO resource_history (rtype, id, version, last_updated, deleted, json) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::bool[], $6::text[])",
            )
            .bind(rows.iter().map(|r| r.rtype).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.last_updated).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.deleted).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.json.as_str()).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        // 5. index rows of the current versions, one statement per table
        let index = p.index_rows();
        let mut rid = Vec::new();
        let mut pid = Vec::new();
        macro_rules! columns {
            ($field:ident, |$r:ident| ($($col:ident: $ty:ty = $val:expr),*)) => {{
                rid.clear();
                pid.clear();
                $(let mut $col: Vec<$ty> = Vec::new();)*
                for &(x, rtype, rows) in &index {
                    for $r in &rows.$field {
                        rid.push(x);
                        pid.push(ids.pid(rtype, &$r.0));
                        $($col.push($val);)*
                    }
                }
                ($($col),*)
            }};
        }
        let (sid, code, display) = columns!(token, |r| (sid: Option<i64> = ids.sid(r.1.as_deref()),
            code: &str = r.2.as_str(), display: Option<&str> = r.3.as_deref()));
        if !rid.is_empty() {
            sqlx::query(
                "INSERT INTO idx_token (rid, pid, sid, code, display) \
                 SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::text[])",
            )
            .bind(&rid).bind(&pid).bind(sid).bind(code).bind(display)
            .execute(&mut *conn)
            .await?;
        }
        let (exact, normalized) = columns!(string, |r| (exact: &str = r.1.as_str(), normalized: &str = r.2.as_str()));
        if !rid.is_empty() {
            sqlx::query(
                "INSERT INTO idx_string (rid, pid, exact, normalized) \
                 SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[])",
            )
            .bind(&rid).bind(&pid).bind(exact).bind(normalized)
            .execute(&mut *conn)
            .await?;
        }
        let (lo, hi) = columns!(date, |r| (lo: i64 = r.1, hi: i64 = r.2));
        if !rid.is_empty() {
            sqlx::query(
                "INSERT INTO idx_date (rid, pid, lo, hi) SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[])",
            )
            .bind(&rid).bind(&pid).bind(lo).bind(hi)
            .execute(&mut *conn)
            .await?;
        }
        let (target_type, target_id, url) = columns!(reference, |r| (target_type: Option<&str> = r.1.as_deref(),
            target_id: &str = r.2.as_str(), url: &str = r.3.as_str()));
        if !rid.is_empty() {
            sqlx::query(
                "INSERT INTO idx_reference (rid, pid, target_type, target_id, url) \
                 SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[])",
            )
            .bind(&rid).bind(&pid).bind(target_type).bind(target_id).bind(url)
            .execute(&mut *conn)
            .await?;
        }
        let (value, lo, hi, system, code, unit) = columns!(quantity, |r| (value: f64 = r.1, lo: f64 = r.2, hi: f64 = r.3,
            system: Option<&str> = r.4.as_deref(), code: Option<&str> = r.5.as_deref(), unit: Option<&str> = r.6.as_deref()));
        if !rid.is_empty() {
            sqlx::query(
                "INSERT INTO idx_quantity (rid, pid, value, lo, hi, system, code, unit) \
                 SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::float8[], $4::float8[], $5::float8[], $6::text[], $7::text[], $8::text[])",
            )
            .bind(&rid).bind(&pid).bind(value).bind(lo).bind(hi).bind(system).bind(code).bind(unit)
            .execute(&mut *conn)
            .await?;
        }
        let (value, lo, hi) = columns!(number, |r| (value: f64 = r.1, lo: f64 = r.2, hi: f64 = r.3));
        if !rid.is_empty() {
            sqlx::query(
                "INSERT INTO idx_number (rid, pid, value, lo, hi) \
                 SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::float8[], $4::float8[], $5::float8[])",
            )
            .bind(&rid).bind(&pid).bind(value).bind(lo).bind(hi)
            .execute(&mut *conn)
            .await?;
        }
        let uri = columns!(uri, |r| (uri: &str = r.1.as_str()));
        if !rid.is_empty() {
            sqlx::query("INSERT INTO idx_uri (rid, pid, uri) SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[])")
                .bind(&rid).bind(&pid).bind(uri)
                .execute(&mut *conn)
                .await?;
        }
        Ok(true)
    }
}
