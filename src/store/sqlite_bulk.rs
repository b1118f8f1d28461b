//! The SQLite import writer: commits [`PreparedImport`] batches on one [`rusqlite`] connection with
//! cached prepared statements, one row per statement execution.
//!
//! The general write path (`backend_impl.rs`, sqlx) builds multi-row statements per batch: every
//! execution is a new SQL text (different row counts), prepared again, with each bind value boxed into
//! sqlx's argument buffer and the statement run on sqlx's worker thread. For an import that moves tens
//! of thousands of index rows per second, a cached `INSERT … VALUES (?, …)` per row is cheaper: the
//! statement is compiled once per connection and a row costs one bind + one `step`.
//!
//! The batch is planned by the same pure planner as the sqlx path ([`plan::plan`]): the same versions,
//! the same row order (new `resources` rows in the order their key first appears, so the same `rid`s),
//! the same history and index rows; this module only executes the plan, with the ledger rows in the
//! SAME transaction. The store it writes is identical to the sqlx path's (`tests/import_parallel.rs`
//! compares the two).
//!
//! SQLite allows one writer at a time: each batch is one `BEGIN IMMEDIATE` transaction, so the server,
//! the sqlx writer (failed-file ledger rows) and other processes wait on `busy_timeout` as with sqlx.

use foldhash::{HashMap, HashMapExt};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::plan;
use super::shared::{self, Op};
use super::{ImportSummary, LedgerStatus, PreparedImport, StoreError};

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

const INDEX_TABLES: [&str; 7] =
    ["idx_token", "idx_string", "idx_date", "idx_reference", "idx_quantity", "idx_number", "idx_uri"];

/// One rusqlite read-write connection that commits import batches (see the module docs).
pub(crate) struct BulkWriter {
    conn: Connection,
    /// Committed `search_param.pid` per (resource type, parameter).
    params: HashMap<String, HashMap<String, i64>>,
    /// Committed `token_system.sid` per system.
    systems: HashMap<String, i64>,
}

impl BulkWriter {
    /// Opens a read-write connection to the store file at `path` (created and migrated by the store).
    /// `bulk`: an initial load ([`super::Store::begin_bulk_load`] returned `true`) — a 256 MiB page cache
    /// and a WAL checkpoint every 64 MiB, as the sqlx writer uses during a bulk load. Errors: `Database`.
    pub(crate) fn open(path: &Path, bulk: bool) -> Result<BulkWriter, StoreError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(db)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
        let cache = if bulk { "PRAGMA cache_size = -262144; PRAGMA wal_autocheckpoint = 16384;" } else { "PRAGMA cache_size = -8192;" };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF; \
             PRAGMA mmap_size = 0; PRAGMA temp_store = memory; {cache}"
        ))
        .map_err(db)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(BulkWriter { conn, params: HashMap::new(), systems: HashMap::new() })
    }

    /// Writes `prepared` — every resource write and the files' ledger rows — in ONE transaction and
    /// returns what it did. Errors: `Invalid` (a body that cannot be stamped), `Database`; on error
    /// nothing of the batch is committed.
    pub(crate) fn apply(&mut self, prepared: PreparedImport) -> Result<ImportSummary, StoreError> {
        let PreparedImport { ops, ledger } = prepared;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
        let (new_params, new_systems) = resolve_ids(&tx, &self.params, &self.systems, &ops)?;
        let summary = {
            let pid = |rtype: &str, param: &str| -> i64 {
                self.params
                    .get(rtype)
                    .and_then(|m| m.get(param))
                    .or_else(|| new_params.get(rtype).and_then(|m| m.get(param)))
                    .copied()
                    .unwrap_or(-1)
            };
            let sid = |system: Option<&str>| -> Option<i64> {
                system.map(|s| self.systems.get(s).or_else(|| new_systems.get(s)).copied().unwrap_or(-1))
            };
            write_ops(&tx, &ops, &pid, &sid)?
        };
        let now = shared::now_ms();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO import_files (path, content_sha256, status, error, imported_at) VALUES (?1, ?2, ?3, NULL, ?4) \
                     ON CONFLICT (path) DO UPDATE SET content_sha256 = excluded.content_sha256, \
                     status = excluded.status, error = excluded.error, imported_at = excluded.imported_at",
                )
                .map_err(db)?;
            for (path, hash) in &ledger {
                st.execute((path, hash, LedgerStatus::Done.as_str(), now)).map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
        for (t, m) in new_params {
            self.params.entry(t).or_default().extend(m);
        }
        self.systems.extend(new_systems);
        Ok(summary)
    }
}

type ParamIds = HashMap<String, HashMap<String, i64>>;

/// The ids of the (rtype, param) keys and token systems `ops` use that are not in the committed caches:
/// read, else interned (in order of first use, as the sqlx path does, so the ids are the same).
fn resolve_ids(
    tx: &Connection,
    params: &ParamIds,
    systems: &HashMap<String, i64>,
    ops: &[Op],
) -> Result<(ParamIds, HashMap<String, i64>), StoreError> {
    let (mut want_p, mut want_s) = shared::index_keys(ops);
    want_p.retain(|&(t, p)| !params.get(t).is_some_and(|m| m.contains_key(p)));
    want_s.retain(|s| !systems.contains_key(*s));
    let mut new_p: ParamIds = HashMap::new();
    let mut new_s: HashMap<String, i64> = HashMap::new();
    if !want_p.is_empty() {
        let mut sel = tx.prepare_cached("SELECT pid FROM search_param WHERE rtype = ?1 AND param = ?2").map_err(db)?;
        let mut missing = Vec::new();
        for &(t, p) in &want_p {
            match sel.query_row((t, p), |r| r.get::<_, i64>(0)).optional().map_err(db)? {
                Some(pid) => {
                    new_p.entry(t.to_string()).or_default().insert(p.to_string(), pid);
                }
                None => missing.push((t, p)),
            }
        }
        let mut ins = tx
            .prepare_cached("INSERT INTO search_param (rtype, param) VALUES (?1, ?2) ON CONFLICT (rtype, param) DO NOTHING")
            .map_err(db)?;
        for &(t, p) in &missing {
            ins.execute((t, p)).map_err(db)?;
        }
        for (t, p) in missing {
            let pid = sel.query_row((t, p), |r| r.get::<_, i64>(0)).map_err(db)?;
            new_p.entry(t.to_string()).or_default().insert(p.to_string(), pid);
        }
    }
    if !want_s.is_empty() {
        let mut sel = tx.prepare_cached("SELECT sid FROM token_system WHERE system = ?1").map_err(db)?;
        let mut missing = Vec::new();
        for &s in &want_s {
            match sel.query_row([s], |r| r.get::<_, i64>(0)).optional().map_err(db)? {
                Some(sid) => {
                    new_s.insert(s.to_string(), sid);
                }
                None => missing.push(s),
            }
        }
        let mut ins =
            tx.prepare_cached("INSERT INTO token_system (system) VALUES (?1) ON CONFLICT (system) DO NOTHING").map_err(db)?;
        for &s in &missing {
            ins.execute([s]).map_err(db)?;
        }
        for s in missing {
            let sid = sel.query_row([s], |r| r.get::<_, i64>(0)).map_err(db)?;
            new_s.insert(s.to_string(), sid);
        }
    }
    Ok((new_p, new_s))
}

/// Plans the resource ops of one batch with [`plan::plan`] from the current rows read inside `tx` and
/// writes the plan (see the module docs).
fn write_ops(
    tx: &Connection,
    ops: &[Op],
    pid: &dyn Fn(&str, &str) -> i64,
    sid: &dyn Fn(Option<&str>) -> Option<i64>,
) -> Result<ImportSummary, StoreError> {
    let keys = plan::keys(ops);
    let mut current: Vec<Option<plan::Current>> = Vec::with_capacity(keys.len());
    {
        let mut cur = tx
            .prepare_cached(
                "SELECT rid, version, deleted, last_updated, content_hash FROM resources WHERE rtype = ?1 AND id = ?2",
            )
            .map_err(db)?;
        for &key in &keys {
            let row = cur
                .query_row(key, |r| {
                    Ok(plan::Current {
                        rid: r.get(0)?,
                        version: r.get(1)?,
                        deleted: r.get(2)?,
                        last_updated: r.get(3)?,
                        content_hash: r.get(4)?,
                    })
                })
                .optional()
                .map_err(db)?;
            current.push(row);
        }
    }
    let mut p = plan::plan(ops, &current, shared::now_ms(), false).map_err(|(_, e)| e)?;
    // 1. new resources rows, in slot order (the same rids as the multi-row insert of the sqlx path)
    {
        // No `RETURNING rid`: SQLite runs a RETURNING statement through an ephemeral table it opens and
        // fills on every execution (`sqlite3BtreeOpen`/`CreateTable` per row in the import profile). A row
        // that was inserted (`changes() == 1`; 0 = the key exists, `DO NOTHING`) has `rid` = the
        // connection's last insert rowid (`rid` is the INTEGER PRIMARY KEY; the security-generation
        // trigger only UPDATEs, and SQLite restores the rowid after a trigger anyway).
        // `OR IGNORE` rather than `ON CONFLICT (rtype, id) DO NOTHING`: the same for these rows (the only
        // other constraints are NOT NULLs of values that are always bound), but no statement that can
        // abort half-way, so SQLite opens no statement journal per row — with the security trigger, the
        // upsert form copied every modified page into an in-memory sub-journal (2.9 % of the import's
        // CPU; −17 % CPU for this insert in a sqlite3 micro-benchmark).
        let mut ins = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO resources (rtype, id, version, last_updated, deleted, content_hash, json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(db)?;
        let mut rids = Vec::with_capacity(p.insert.len());
        for r in &p.insert {
            let n = ins
                .execute((r.rtype, r.id, r.version, r.last_updated, r.deleted, r.content_hash, r.json.as_str()))
                .map_err(db)?;
            if n == 1 {
                rids.push((r.slot, tx.last_insert_rowid()));
            }
        }
        for (s, rid) in rids {
            p.set_rid(s, rid);
        }
    }
    if !p.raced().is_empty() {
        return Err(StoreError::Database("resource created by another writer".into()));
    }
    // 2. changed existing rows: the replaced current version moves to the history first
    {
        let mut to_hist = tx
            .prepare_cached(
                "INSERT INTO resource_history (rtype, id, version, last_updated, deleted, json) \
                 SELECT rtype, id, version, last_updated, deleted, json FROM resources WHERE rid = ?1",
            )
            .map_err(db)?;
        for (rid, _) in &p.update {
            to_hist.execute([rid]).map_err(db)?;
        }
        let mut upd = tx
            .prepare_cached(
                "UPDATE resources SET version = ?2, last_updated = ?3, deleted = ?4, content_hash = ?5, json = ?6 \
                 WHERE rid = ?1",
            )
            .map_err(db)?;
        for (rid, r) in &p.update {
            upd.execute((rid, r.version, r.last_updated, r.deleted, r.content_hash, r.json.as_str())).map_err(db)?;
        }
    }
    // 3. index rows of the replaced versions
    if !p.clear_index.is_empty() {
        for table in INDEX_TABLES {
            let mut del = tx.prepare_cached(&format!("DELETE FROM {table} WHERE rid = ?1")).map_err(db)?;
            for rid in &p.clear_index {
                del.execute([rid]).map_err(db)?;
            }
        }
    }
    // 4. history rows: versions of this batch that a later op of the same batch replaced
    if !p.history.is_empty() {
        let mut ins = tx
            .prepare_cached(
                "INSERT INTO resource_history (rtype, id, version, last_updated, deleted, json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(db)?;
        for h in &p.history {
            ins.execute((h.rtype, h.id, h.version, h.last_updated, h.deleted, h.json.as_str())).map_err(db)?;
        }
    }
    // 5. index rows of the current versions, table by table in slot order
    write_index(tx, &p.index_rows(), pid, sid)?;
    Ok(p.summary())
}

/// Rows per execution of the multi-row index inserts ([`insert_rows`]).
const ROWS_PER_INSERT: usize = 16;

/// `{head} VALUES (?, …), …` with `rows` tuples of `cols` parameters.
fn values_sql(head: &str, cols: usize, rows: usize) -> String {
    let one = format!("({})", vec!["?"; cols].join(", "));
    format!("{head} VALUES {}", vec![one; rows].join(", "))
}

/// Inserts `rows` in order with `INSERT … VALUES` statements of [`ROWS_PER_INSERT`] rows (cached), the
/// remainder one row per execution: one `sqlite3_step` (program start, transaction check, reset) per 16
/// rows instead of per row; the rows — and so their rowids — come in the same order as one by one.
/// `bind(statement, first parameter index (1-based), row)` binds the `cols` values of one row.
fn insert_rows<R>(
    tx: &Connection,
    head: &str,
    cols: usize,
    rows: &[R],
    bind: impl Fn(&mut rusqlite::Statement<'_>, usize, &R) -> rusqlite::Result<()>,
) -> Result<(), StoreError> {
    let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
    if rows.len() >= ROWS_PER_INSERT {
        let mut st = tx.prepare_cached(&values_sql(head, cols, ROWS_PER_INSERT)).map_err(db)?;
        for chunk in &mut chunks {
            for (i, r) in chunk.iter().enumerate() {
                bind(&mut st, i * cols + 1, r).map_err(db)?;
            }
            st.raw_execute().map_err(db)?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut st = tx.prepare_cached(&values_sql(head, cols, 1)).map_err(db)?;
        for r in rest {
            bind(&mut st, 1, r).map_err(db)?;
            st.raw_execute().map_err(db)?;
        }
    }
    Ok(())
}

/// Inserts the search-index rows of `(rid, rtype, rows)`, table by table in the order given (multi-row
/// statements, [`insert_rows`]).
fn write_index(
    tx: &Connection,
    index: &[(i64, &str, &shared::IndexRows)],
    pid: &dyn Fn(&str, &str) -> i64,
    sid: &dyn Fn(Option<&str>) -> Option<i64>,
) -> Result<(), StoreError> {
    /// `(rid, pid, row)` of one table, in order.
    fn flat<'r, R>(
        index: &[(i64, &str, &'r shared::IndexRows)],
        pid: &dyn Fn(&str, &str) -> i64,
        rows: impl Fn(&'r shared::IndexRows) -> &'r [R],
        param: impl Fn(&R) -> &str,
    ) -> Vec<(i64, i64, &'r R)> {
        let mut out = Vec::new();
        for &(rid, t, all) in index {
            out.extend(rows(all).iter().map(|r| (rid, pid(t, param(r)), r)));
        }
        out
    }
    let rows = flat(index, pid, |a| &a.token, |r| &r.0);
    insert_rows(tx, "INSERT INTO idx_token (rid, pid, sid, code, display)", 5, &rows, |st, i, &(rid, pid, r)| {
        st.raw_bind_parameter(i, rid)?;
        st.raw_bind_parameter(i + 1, pid)?;
        st.raw_bind_parameter(i + 2, sid(r.1.as_deref()))?;
        st.raw_bind_parameter(i + 3, r.2.as_str())?;
        st.raw_bind_parameter(i + 4, r.3.as_deref())
    })?;
    let rows = flat(index, pid, |a| &a.string, |r| &r.0);
    insert_rows(tx, "INSERT INTO idx_string (rid, pid, exact, normalized)", 4, &rows, |st, i, &(rid, pid, r)| {
        st.raw_bind_parameter(i, rid)?;
        st.raw_bind_parameter(i + 1, pid)?;
        st.raw_bind_parameter(i + 2, r.1.as_str())?;
        st.raw_bind_parameter(i + 3, r.2.as_str())
    })?;
    let rows = flat(index, pid, |a| &a.date, |r| &r.0);
    insert_rows(tx, "INSERT INTO idx_date (rid, pid, lo, hi)", 4, &rows, |st, i, &(rid, pid, r)| {
        st.raw_bind_parameter(i, rid)?;
        st.raw_bind_parameter(i + 1, pid)?;
        st.raw_bind_parameter(i + 2, r.1)?;
        st.raw_bind_parameter(i + 3, r.2)
    })?;
    let rows = flat(index, pid, |a| &a.reference, |r| &r.0);
    insert_rows(tx, "INSERT INTO idx_reference (rid, pid, target_type, target_id, url)", 5, &rows, |st, i, &(rid, pid, r)| {
        st.raw_bind_parameter(i, rid)?;
        st.raw_bind_parameter(i + 1, pid)?;
        st.raw_bind_parameter(i + 2, r.1.as_deref())?;
        st.raw_bind_parameter(i + 3, r.2.as_str())?;
        st.raw_bind_parameter(i + 4, r.3.as_str())
    })?;
    let rows = flat(index, pid, |a| &a.quantity, |r| &r.0);
    insert_rows(
        tx,
        "INSERT INTO idx_quantity (rid, pid, value, lo, hi, system, code, unit)",
        8,
        &rows,
        |st, i, &(rid, pid, r)| {
            st.raw_bind_parameter(i, rid)?;
            st.raw_bind_parameter(i + 1, pid)?;
            st.raw_bind_parameter(i + 2, r.1)?;
            st.raw_bind_parameter(i + 3, r.2)?;
            st.raw_bind_parameter(i + 4, r.3)?;
            st.raw_bind_parameter(i + 5, r.4.as_deref())?;
            st.raw_bind_parameter(i + 6, r.5.as_deref())?;
            st.raw_bind_parameter(i + 7, r.6.as_deref())
        },
    )?;
    let rows = flat(index, pid, |a| &a.number, |r| &r.0);
    insert_rows(tx, "INSERT INTO idx_number (rid, pid, value, lo, hi)", 5, &rows, |st, i, &(rid, pid, r)| {
        st.raw_bind_parameter(i, rid)?;
        st.raw_bind_parameter(i + 1, pid)?;
        st.raw_bind_parameter(i + 2, r.1)?;
        st.raw_bind_parameter(i + 3, r.2)?;
        st.raw_bind_parameter(i + 4, r.3)
    })?;
    let rows = flat(index, pid, |a| &a.uri, |r| &r.0);
    insert_rows(tx, "INSERT INTO idx_uri (rid, pid, uri)", 3, &rows, |st, i, &(rid, pid, r)| {
        st.raw_bind_parameter(i, rid)?;
        st.raw_bind_parameter(i + 1, pid)?;
        st.raw_bind_parameter(i + 2, r.1.as_str())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The multi-row inserts write every row once, in the given order (rowid = position), around the
    /// 16-row boundary and with NULLs.
    #[test]
    fn insert_rows_keeps_order_and_rowids() {
        for n in [0usize, 1, 15, 16, 17, 33, 40] {
            let c = Connection::open_in_memory().unwrap();
            c.execute_batch("CREATE TABLE t (a INTEGER NOT NULL, b TEXT)").unwrap();
            let rows: Vec<(i64, Option<String>)> =
                (0..n as i64).map(|i| (i * 10, (i % 3 != 0).then(|| format!("v{i}")))).collect();
            insert_rows(&c, "INSERT INTO t (a, b)", 2, &rows, |st, i, r| {
                st.raw_bind_parameter(i, r.0)?;
                st.raw_bind_parameter(i + 1, r.1.as_deref())
            })
            .unwrap();
            let got: Vec<(i64, i64, Option<String>)> = c
                .prepare("SELECT rowid, a, b FROM t ORDER BY rowid")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let want: Vec<(i64, i64, Option<String>)> =
                rows.iter().enumerate().map(|(i, r)| (i as i64 + 1, r.0, r.1.clone())).collect();
            assert_eq!(got, want, "{n} rows");
        }
    }
}
