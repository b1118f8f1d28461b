//! Embedded SQLite backend (the default store).
//!
//! One database file in WAL mode. Writes are serialised through a single writer connection and every write
//! transaction starts with `BEGIN IMMEDIATE`, so optimistic `If-Match` checks are race-free even with
//! several processes on one file (the others wait on `busy_timeout`). Reads use a small pool of read-only
//! connections (WAL readers never block the writer).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::search::Registry;

type Db = sqlx::Sqlite;
/// Appended to the batched current-row prefetch (see `prefetch_current`).
const SQL_LOCK_SUFFIX: &str = "";

type Me = SqliteStore;

/// SQLite has database-level write locking (`BEGIN IMMEDIATE`), so no row lock is needed.
const SQL_SELECT_FOR_WRITE: &str =
    "SELECT rid, version, deleted, last_updated, content_hash FROM resources WHERE rtype = $1 AND id = $2";

/// Placeholder style of the shared search builder (`store::sql`).
const PLACEHOLDERS: super::sql::Placeholders = super::sql::Placeholders::Question;

/// Number of read connections: enough to keep 2 cores busy while one connection waits on I/O.
const READERS: u32 = 4;

/// The SQLite store. Cheap to clone (pools are reference-counted).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// rusqlite read connections for the hot read paths (see `sqlite_read`).
    readers: super::sqlite_read::Readers,
    /// The audit chain's group-commit appender (rusqlite connection on its own thread, see `sqlite_append`).
    audit_writer: super::sqlite_append::AuditWriter,
    registry: Arc<Registry>,
    /// Committed `search_param` / `token_system` ids (migration 0006).
    interned: Arc<super::shared::Interned>,
    /// The database file (for the import writer, `store::sqlite_bulk`).
    path: Arc<std::path::Path>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `url` (`sqlite://path/file.db[?mode=rwc]`), applies
    /// pragmas (WAL, `synchronous=NORMAL`, 10 s busy timeout, 8 MiB page cache per connection, no mmap) and runs the
    /// embedded `migrations/sqlite`. Errors: `Invalid` (bad URL), `Database` (cannot open / migrate).
    /// In-memory databases (`sqlite::memory:`, `mode=memory`) are rejected with `Invalid`: the reader and
    /// writer pools would each see a different empty database — use a temp file instead.
    pub async fn connect(url: &str, registry: Arc<Registry>) -> Result<SqliteStore, StoreError> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::Invalid("in-memory SQLite is not supported by the store; use a file".into()));
        }
        let base = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("bad sqlite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(false)
            .statement_cache_capacity(512)
            // Memory budget (issue target: RSS ≤ 200 MB under load): 8 MiB page cache per connection
            // (1 writer + sqlx readers + rusqlite readers) and no mmap — every connection maps the file
            // on its own, and the mapped pages count in the server's RSS once per connection (347 MB
            // measured with a 64 MiB window). Reads go through the OS page cache instead.
            // 8 KiB pages for new files: resource rows (~1.3 kB of JSON) pack with less slack than on 4 KiB.
            .page_size(8192)
            .pragma("cache_size", "-8192")
            .pragma("mmap_size", "0")
            .pragma("temp_store", "memory");
        // No ping before each acquire (`test_before_acquire`): a local file connection does not go stale,
        // and the ping is a round trip to sqlx's worker thread (2.4 % of the `$summary` profile).
        let writer = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(120))
            .connect_with(base.clone())
            .await?;
        // sqlx's SQLite migrator takes no cross-process lock: two processes opening a fresh file at once
        // can both try migration 1. The loser's statements fail; on retry the applied migrations are
        // skipped. Retry a few times before giving up.
        let mut attempt = 0;
        loop {
            match sqlx::migrate!("migrations/sqlite").run(&writer).await {
                Ok(()) => break,
                Err(e) if attempt < 10 => {
                    attempt += 1;
                    tracing::debug!(attempt, "sqlite migration raced with another process, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(StoreError::Database(format!("migration failed: {e}"))),
            }
        }
        let readers = super::sqlite_read::Readers::open(base.get_filename())?;
        let audit_writer = super::sqlite_append::AuditWriter::open(base.get_filename())?;
        let path: Arc<std::path::Path> = Arc::from(base.get_filename());
        let reader = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(30))
            // history only (point reads and searches use `sqlite_read`); small cache, see `sqlite_read::CACHE_KIB`
            .connect_with(base.read_only(true).pragma("cache_size", "-2048"))
            .await?;
        Ok(SqliteStore { writer, reader, readers, audit_writer, registry, interned: Arc::default(), path })
    }

    /// Closes both pools (checkpoints the WAL on the last connection).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Refreshes the query planner's statistics (`ANALYZE`, then `PRAGMA optimize`). Call after a bulk
    /// import; cheap to repeat. Errors: `Database`.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        // Bounded sampling keeps ANALYZE to seconds on multi-GB stores; the planner needs the
        // statistics to pick e.g. the patient reference index over a common JLAC10 code.
        sqlx::query("PRAGMA analysis_limit = 2000").execute(&self.writer).await?;
        sqlx::query("ANALYZE").execute(&self.writer).await?;
        sqlx::query("PRAGMA optimize").execute(&self.writer).await?;
        Ok(())
    }

    /// The value of `PRAGMA name` on the writer connection (tests: connection settings a bulk load
    /// changes must be restored). `name` is a PRAGMA name, e.g. `threads`.
    #[cfg(test)]
    pub(crate) async fn test_writer_pragma(&self, name: &'static str) -> i64 {
        use sqlx::Row;
        let sql = sqlx::AssertSqlSafe(format!("PRAGMA {name}"));
        sqlx::query(sql).fetch_one(&self.writer).await.unwrap().get(0)
    }

    /// `PRAGMA temp_store` of the writer connection (`file` / `memory`; not allowed inside a transaction).
    async fn set_temp_store(&self, mode: &'static str) -> Result<(), StoreError> {
        let sql = if mode == "file" { "PRAGMA temp_store = file" } else { "PRAGMA temp_store = memory" };
        sqlx::query(sql).execute(&self.writer).await?;
        Ok(())
    }

    /// Appends audit records through the rusqlite appender thread (group commit; see `sqlite_append`).
    pub(crate) async fn audit_append_owned(
        &self,
        records: Vec<crate::store::audit::AuditRecord>,
        expected: Vec<Option<i64>>,
    ) -> Result<crate::store::audit::AppendOutcome, StoreError> {
        self.audit_writer.append(records, expected).await
    }

    /// Registers a request that will append (see [`crate::store::Store::audit_intent`]).
    pub(crate) fn audit_intent(&self) -> super::AuditIntent {
        self.audit_writer.intent()
    }

    /// Hits and misses of the resource cache of point reads (`None`: `TOBIUME_RESOURCE_CACHE_MIB=0`).
    #[cfg(test)]
    pub(crate) fn resource_cache_stats(&self) -> Option<super::sqlite_cache::CacheStats> {
        self.readers.cache_stats()
    }

    /// The database file.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn read_pool(&self) -> &SqlitePool {
        &self.reader
    }

    /// A write transaction (`BEGIN IMMEDIATE` on the writer) that holds the resource cache's write guard
    /// from before it begins until after it ends (`sqlite_cache`, "Checks without a statement").
    /// Errors: `Database`.
    async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let guard = self.readers.write_guard();
        Ok(WriteTx { tx: self.writer.begin_with("BEGIN IMMEDIATE").await?, _guard: guard })
    }

    /// The resource cache's write guard for a write that does not go through [`SqliteStore::begin_write`]
    /// (the import writer's own connection, `store::sqlite_bulk`); `None` without a cache.
    pub(crate) fn write_guard(&self) -> Option<super::sqlite_cache::WriteGuard> {
        self.readers.write_guard()
    }

    /// `(version, last_updated ms, deleted, json)` of the current row of `rtype/id` (rusqlite, inline).
    async fn current_row(&self, rtype: &str, id: &str) -> Result<Option<super::sqlite_read::CurrentRow>, StoreError> {
        self.readers.read(rtype, id)
    }

    /// Rows `(rid, resource)` of a search statement (rusqlite reader, inline, cached statement).
    async fn query_resources(&self, sql: &Sql) -> Result<Vec<(i64, StoredResource)>, StoreError> {
        self.readers.resources(sql)
    }

    /// The value of a `COUNT(*)` search statement (rusqlite reader, inline).
    async fn query_count(&self, sql: &Sql) -> Result<i64, StoreError> {
        self.readers.count(sql)
    }

    /// The ids a `SELECT r.id …` search statement returns (rusqlite reader, inline).
    async fn query_ids(&self, sql: &Sql) -> Result<Vec<String>, StoreError> {
        self.readers.ids(sql)
    }

    /// `(last_updated ms, deleted, json)` of one version from the history (rusqlite, inline).
    async fn version_row(&self, rtype: &str, id: &str, version: i64) -> Result<Option<(i64, bool, String)>, StoreError> {
        self.readers.vread(rtype, id, version)
    }
}

/// A write transaction of the SQLite store ([`SqliteStore::begin_write`]): the sqlx transaction (its
/// connection through `Deref`, as `sqlx::Transaction` itself) and the resource cache's write guard,
/// released only after `commit` or `rollback` returns (or, for a transaction dropped unfinished, after
/// its rollback is queued).
type Tx = WriteTx;

struct WriteTx {
    tx: sqlx::Transaction<'static, Db>,
    _guard: Option<super::sqlite_cache::WriteGuard>,
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl WriteTx {
    /// `COMMIT`; the guard ends after it. Errors: sqlx's.
    async fn commit(self) -> Result<(), sqlx::Error> {
        let WriteTx { tx, _guard } = self;
        tx.commit().await
    }

    /// `ROLLBACK`; the guard ends after it. Errors: sqlx's.
    async fn rollback(self) -> Result<(), sqlx::Error> {
        let WriteTx { tx, _guard } = self;
        tx.rollback().await
    }
}

include!("backend_impl.rs");
include!("security_impl.rs");
