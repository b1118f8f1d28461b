//! Read side of the SQLite store on [`rusqlite`] connections.
//!
//! sqlx runs every SQLite statement on a per-connection worker thread and ships each result row back
//! over a channel: for a ~20 µs primary-key read that hand-off (two context switches plus a pool
//! acquire) cost more than the query itself (40 % of the read profile at 28 % of the `/health` ceiling).
//! Here the statements run on the calling thread against a small pool of read-only connections with
//! cached prepared statements:
//!
//! point reads ([`Readers::read`], [`Readers::vread`]) and the search statements
//! ([`Readers::resources`], [`Readers::count`], [`Readers::ids`]: a search page, its `_include` /
//! `_revinclude` fetches, `total`) run **inline** on the async task. A search statement is bounded by
//! the planner's index choice and `LIMIT`, not by the size of a network exchange; a page of 20 costs
//! 0.1–0.3 ms at 2,000 patients, where sqlx's hand-off to its worker thread (and one channel message per
//! row) cost more than the statement. A count (`_summary=count`, `_total=accurate`) visits every match
//! and is the one statement whose cost grows with the store; it runs inline too and blocks one runtime
//! worker for its duration (the other workers keep serving). History stays on sqlx's reader pool.
//!
//! Every connection enables the query planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`).
//! Without it, SQLite marks a prepared statement as expired whenever a new value is bound to a parameter
//! the planner looked at — `LIMIT ?`, and with the `sqlite_stat4` samples that `ANALYZE` writes in
//! libsqlite3-sys's bundled build (`SQLITE_ENABLE_STAT4`) every `=`/range parameter on an indexed column —
//! and the next `step` re-prepares it (`sqlite3Reprepare`: 12 % of the `$summary` profile). With QPSG the
//! plan is made once per cached statement from `sqlite_stat1` alone, as PostgreSQL's generic plans are;
//! the plans of the benchmark searches are unchanged (the probes are pinned by `INDEXED BY`, see
//! `probe_hint`).
//!
//! Both libraries link the same `libsqlite3-sys` (one bundled SQLite). Connections are opened
//! `SQLITE_OPEN_READ_ONLY` in WAL mode, so they never block the writer and always see the last
//! committed transaction.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::sql::Sql;
#[cfg(test)]
use super::sqlite_cache::CacheStats;
use super::sqlite_cache::ResourceCache;
use super::{shared, StoreError, StoredResource};

/// Idle connections kept for reuse; more are opened on demand under load and closed when returned to a
/// full pool (each holds its own page cache, see [`CACHE_KIB`]).
const MAX_IDLE: usize = 4;
/// Page cache per read connection in KiB (negative `cache_size`). Small on purpose: in WAL mode a
/// connection drops its whole page cache at the start of its next statement whenever any other
/// connection committed meanwhile (`pager_reset` on a changed WAL header), and every read commits an
/// audit record — under read load a cache lives for about one statement, whose working set (a point
/// read: ~10 b-tree pages; a search page with `_include`: a few hundred) fits in 2 MiB. A larger cache
/// only added RSS (8 MiB × [`MAX_IDLE`]) against the 200 MB budget.
const CACHE_KIB: i64 = 2048;
/// Prepared statements cached per connection (search SQL varies with the query shape).
const STATEMENT_CACHE: usize = 64;

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// A pool of read-only rusqlite connections to one database file. Cheap to clone (shared).
#[derive(Clone)]
pub(crate) struct Readers {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Current rows for [`Readers::read`] (`None`: `TOBIUME_RESOURCE_CACHE_MIB=0`).
    cache: Option<ResourceCache>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").field("path", &self.inner.path).finish()
    }
}

/// `(version, last_updated epoch ms, deleted, json)` of a current `resources` row.
pub(crate) type CurrentRow = (i64, i64, bool, String);

impl Readers {
    /// Opens one connection to `path` to check it (the file must exist: the writer created and
    /// migrated it), with a resource cache of `TOBIUME_RESOURCE_CACHE_MIB` (`sqlite_cache`). Errors:
    /// `Database`.
    pub(crate) fn open(path: &Path) -> Result<Readers, StoreError> {
        let bytes = super::sqlite_cache::capacity_bytes(std::env::var("TOBIUME_RESOURCE_CACHE_MIB").ok().as_deref());
        let inner = Inner { path: path.to_path_buf(), idle: Mutex::new(Vec::new()), cache: ResourceCache::new(bytes) };
        let r = Readers { inner: Arc::new(inner) };
        let c = r.connect()?;
        r.give_back(c);
        Ok(r)
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let c = Connection::open_with_flags(
            &self.inner.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db)?;
        c.busy_timeout(Duration::from_secs(10)).map_err(db)?;
        // No mmap: each connection would map the file separately and its pages count in RSS per mapping.
        // (`execute_batch` tolerates the rows some pragmas answer with.)
        c.execute_batch(&format!("PRAGMA cache_size = -{CACHE_KIB}; PRAGMA mmap_size = 0; PRAGMA temp_store = memory;"))
            .map_err(db)?;
        c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // plans independent of bound values: no re-prepare per execution (module docs)
        c.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(db)?;
        Ok(c)
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(c) => Ok(c),
            None => self.connect(),
        }
    }

    fn give_back(&self, c: Connection) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    /// Runs `f` on a pooled connection on the current thread. A connection whose statement failed is
    /// dropped rather than reused. Errors: `Database`.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let c = self.take()?;
        match f(&c) {
            Ok(v) => {
                self.give_back(c);
                Ok(v)
            }
            Err(e) => Err(db(e)),
        }
    }

    /// The current row of `rtype/id` (`None` when absent), inline, through the resource cache when there
    /// is one. Errors: `Database`.
    pub(crate) fn read(&self, rtype: &str, id: &str) -> Result<Option<CurrentRow>, StoreError> {
        if let Some(cache) = &self.inner.cache {
            if let Some(row) = cache.hit(rtype, id) {
                return Ok(Some(row));
            }
            return self.with(|c| cache.read(c, rtype, id));
        }
        self.with(|c| {
            c.prepare_cached("SELECT version, last_updated, deleted, json FROM resources WHERE rtype = ?1 AND id = ?2")?
                .query_row((rtype, id), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()
        })
    }

    /// Marks a write of this process to the file as begun until the guard is dropped (after its commit
    /// or rollback; `sqlite_cache`, "Checks without a statement"); `None` without a cache.
    pub(crate) fn write_guard(&self) -> Option<super::sqlite_cache::WriteGuard> {
        self.inner.cache.as_ref().map(|c| c.freshness().write())
    }

    /// Hits and misses of the resource cache (`None` without one).
    #[cfg(test)]
    pub(crate) fn cache_stats(&self) -> Option<CacheStats> {
        self.inner.cache.as_ref().map(ResourceCache::stats)
    }

    /// `(last_updated, deleted, json)` of version `version` of `rtype/id` from the history, inline.
    /// Errors: `Database`.
    pub(crate) fn vread(&self, rtype: &str, id: &str, version: i64) -> Result<Option<(i64, bool, String)>, StoreError> {
        self.with(|c| {
            // the current version is in `resources`, older ones in the history (migration 0006)
            c.prepare_cached(
                "SELECT last_updated, deleted, json FROM resources WHERE rtype = ?1 AND id = ?2 AND version = ?3 \
                 UNION ALL \
                 SELECT last_updated, deleted, json FROM resource_history WHERE rtype = ?1 AND id = ?2 AND version = ?3",
            )?
            .query_row((rtype, id, version), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
        })
    }

    /// Runs a search statement whose columns are `rid, rtype, id, version, last_updated, deleted, json`
    /// (`RES_COLS` of the shared builder) with its binds, inline, through the connection's statement cache.
    /// Returns `(rid, resource)` in row order. Errors: `Database`.
    pub(crate) fn resources(&self, sql: &Sql) -> Result<Vec<(i64, StoredResource)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(sql.text())?;
            let rows = st.query_map(rusqlite::params_from_iter(sql.args()), |r| {
                let lu: i64 = r.get(4)?;
                Ok((
                    r.get(0)?,
                    StoredResource {
                        resource_type: r.get(1)?,
                        id: r.get(2)?,
                        version_id: r.get(3)?,
                        last_updated: shared::format_ms(lu),
                        deleted: r.get(5)?,
                        json: r.get(6)?,
                    },
                ))
            })?;
            rows.collect()
        })
    }

    /// The single integer a `SELECT COUNT(*) …` statement returns, inline. Errors: `Database`.
    pub(crate) fn count(&self, sql: &Sql) -> Result<i64, StoreError> {
        self.with(|c| c.prepare_cached(sql.text())?.query_row(rusqlite::params_from_iter(sql.args()), |r| r.get(0)))
    }

    /// The first column (text) of every row, inline (`search_ids`). Errors: `Database`.
    pub(crate) fn ids(&self, sql: &Sql) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(sql.text())?;
            let rows = st.query_map(rusqlite::params_from_iter(sql.args()), |r| r.get(0))?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::{Placeholders, Sql};
    use rusqlite::StatementStatus;

    /// A file with skewed values in an indexed column and `sqlite_stat4` samples (bundled SQLite is
    /// built with `SQLITE_ENABLE_STAT4`), like a store after the importer's ANALYZE.
    fn analyzed_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = wal; CREATE TABLE t (a TEXT, b INTEGER); CREATE INDEX t_a ON t (a);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO t SELECT CASE WHEN i % 10 = 0 THEN 'rare' || i ELSE 'common' END, i FROM n;
             ANALYZE;",
        )
        .unwrap();
        let samples: i64 = c.query_row("SELECT count(*) FROM sqlite_stat4", [], |r| r.get(0)).unwrap();
        assert!(samples > 0, "the bundled SQLite writes stat4 samples");
        (dir, path)
    }

    fn query(a: &str, limit: i64) -> Sql {
        let mut q = Sql::new(Placeholders::Question, "SELECT count(*) FROM (SELECT b FROM t WHERE a = ");
        q.push_bind(a.to_string()).push(" ORDER BY b LIMIT ").push_bind(limit).push(")");
        q
    }

    #[test]
    fn cached_search_statements_are_not_reprepared_when_binds_change() {
        let (_dir, path) = analyzed_file();
        let binds = [("common", 5), ("rare10", 5), ("common", 3), ("rare20", 1)];
        let sql = query("common", 5);
        // Control: without QPSG the same statement re-prepares on new binds (stat4 samples, `LIMIT ?`).
        let plain = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        for (v, n) in binds {
            let _: i64 = plain.prepare_cached(sql.text()).unwrap().query_row((v, n), |r| r.get(0)).unwrap();
        }
        let control = plain.prepare_cached(sql.text()).unwrap().get_status(StatementStatus::RePrepare);
        assert!(control > 0, "control connection never re-prepared: the test would prove nothing");

        let readers = Readers::open(&path).unwrap();
        let got: Vec<i64> = binds.iter().map(|(v, n)| readers.count(&query(v, *n)).unwrap()).collect();
        assert_eq!(got, vec![5, 1, 3, 1]);
        let reprepared = readers
            .with(|c| Ok(c.prepare_cached(sql.text())?.get_status(StatementStatus::RePrepare)))
            .unwrap();
        assert_eq!(reprepared, 0);
    }
}
