//! Read side of the SQLite store on [`rusqlite`] connections.
//!
//! sqlx runs every SQLite statement on a per-connection worker thread and ships each result row back
//! over a channel: for a ~20 µs primary-key read that hand-off (two context switches plus a pool
//! acquire) cost more than the query itself (40 % of the read profile at 28 % of the `/health` ceiling).
//! Here the statements run on the calling thread against a small pool of read-only connections with
//! cached prepared statements:
//!
//! point reads ([`Readers::read`], [`Readers::vread`]) run **inline** on the async task — a bounded
//! lookup through a unique index, like any other short CPU step of a handler. Searches and history (of
//! unbounded cost) stay on sqlx's reader pool, off the runtime's worker threads.
//!
//! Both libraries link the same `libsqlite3-sys` (one bundled SQLite). Connections are opened
//! `SQLITE_OPEN_READ_ONLY` in WAL mode, so they never block the writer and always see the last
//! committed transaction.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::StoreError;

/// Idle connections kept for reuse; more are opened on demand under load and closed when returned to a
/// full pool (each holds its own page cache, see [`CACHE_KIB`]).
const MAX_IDLE: usize = 4;
/// Page cache per read connection in KiB (negative `cache_size`): 8 MiB × [`MAX_IDLE`] stays within the
/// 200 MB RSS budget next to the writer and sqlx's readers.
const CACHE_KIB: i64 = 8192;
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
    /// migrated it). Errors: `Database`.
    pub(crate) fn open(path: &Path) -> Result<Readers, StoreError> {
        let r = Readers { inner: Arc::new(Inner { path: path.to_path_buf(), idle: Mutex::new(Vec::new()) }) };
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

    /// The current row of `rtype/id` (`None` when absent), inline. Errors: `Database`.
    pub(crate) fn read(&self, rtype: &str, id: &str) -> Result<Option<CurrentRow>, StoreError> {
        self.with(|c| {
            c.prepare_cached("SELECT version, last_updated, deleted, json FROM resources WHERE rtype = ?1 AND id = ?2")?
                .query_row((rtype, id), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()
        })
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
}
