//! The SQLite import writer: commits [`PreparedImport`] batches on one [`rusqlite`] connection with
//! cached prepared statements, one row per statement execution.
//!
//! The general write path (`backend_impl.rs`, sqlx) builds multi-row statements per batch: every
//! execution is a new SQL text (different row counts), prepared again, with each bind value boxed into
//! sqlx's argument buffer and the statement run on sqlx's worker thread. For an import that moves tens
//! of thousands of index rows per second, a cached `INSERT … VALUES (?, …)` per row is cheaper: the
//! statement is compiled once per connection and a row costs one bind + one `step`.
//!
//! The writer plans a batch exactly as `plan_and_write` does for import ops (`PutMode::IfChanged` puts
//! and deletes, no `If-Match`): the same versions, the same row order (new `resources` rows in the
//! order their key first appears, so the same `rid`s), the same history and index rows, and the ledger
//! rows in the SAME transaction. The store it writes is identical to the sqlx path's
//! (`tests/import_parallel.rs` compares the two).
//!
//! SQLite allows one writer at a time: each batch is one `BEGIN IMMEDIATE` transaction, so the server,
//! the sqlx writer (failed-file ledger rows) and other processes wait on `busy_timeout` as with sqlx.

use foldhash::{HashMap, HashMapExt};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::shared::{self, HistRow, Op, Slot};
use super::{rawjson, ImportSummary, LedgerStatus, PreparedImport, StoreError};

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

fn op_key(op: &Op) -> (&str, &str) {
    match op {
        Op::Put { rtype, id, .. } | Op::Delete { rtype, id } => (rtype.as_str(), id.as_str()),
    }
}

/// Plans and writes the resource ops of one batch inside `tx` (see the module docs).
fn write_ops(
    tx: &Connection,
    ops: &[Op],
    pid: &dyn Fn(&str, &str) -> i64,
    sid: &dyn Fn(Option<&str>) -> Option<i64>,
) -> Result<ImportSummary, StoreError> {
    // Current rows of every distinct key, in order of first appearance.
    let mut slot_of: HashMap<(&str, &str), usize> = HashMap::with_capacity(ops.len());
    let mut keys: Vec<(&str, &str)> = Vec::with_capacity(ops.len());
    for op in ops {
        let key = op_key(op);
        if !slot_of.contains_key(&key) {
            slot_of.insert(key, keys.len());
            keys.push(key);
        }
    }
    let mut initial: Vec<Option<(i64, i64, bool, i64, Option<String>)>> = Vec::with_capacity(keys.len());
    {
        let mut cur = tx
            .prepare_cached(
                "SELECT rid, version, deleted, last_updated, content_hash FROM resources WHERE rtype = ?1 AND id = ?2",
            )
            .map_err(db)?;
        for &key in &keys {
            let row = cur
                .query_row(key, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .optional()
                .map_err(db)?;
            initial.push(row);
        }
    }
    let mut slots: Vec<Slot> = keys
        .iter()
        .zip(&initial)
        .map(|(&(rtype, id), row)| match row {
            Some((rid, version, deleted, last_updated, hash)) => Slot {
                rtype,
                id,
                rid: Some(*rid),
                was_indexed: !*deleted,
                exists: true,
                version: *version,
                deleted: *deleted,
                last_updated: *last_updated,
                content_hash: hash.as_deref(),
                dirty: false,
                hist_at: 0,
                index_op: None,
            },
            None => Slot {
                rtype,
                id,
                rid: None,
                was_indexed: false,
                exists: false,
                version: 0,
                deleted: false,
                last_updated: 0,
                content_hash: None,
                dirty: false,
                hist_at: 0,
                index_op: None,
            },
        })
        .collect();
    let mut summary = ImportSummary::default();
    let mut hist: Vec<HistRow> = Vec::with_capacity(ops.len());
    let now = shared::now_ms();
    for (i, op) in ops.iter().enumerate() {
        let s = slot_of[&op_key(op)];
        let slot = &mut slots[s];
        match op {
            Op::Put { id, prep, .. } => {
                if slot.exists && !slot.deleted && slot.content_hash == Some(prep.hash.as_str()) {
                    summary.unchanged += 1;
                    continue;
                }
                if slot.exists && !slot.deleted {
                    summary.updated += 1;
                } else {
                    summary.created += 1;
                }
                let version = slot.version + 1;
                let lu = if slot.exists { now.max(slot.last_updated) } else { now };
                let lu_s = shared::format_ms(lu);
                let json =
                    rawjson::stamp_text(&prep.text, &rawjson::Stamp { id, version_id: version, last_updated: &lu_s })?;
                slot.exists = true;
                slot.version = version;
                slot.deleted = false;
                slot.last_updated = lu;
                slot.content_hash = Some(prep.hash.as_str());
                slot.dirty = true;
                slot.hist_at = hist.len();
                slot.index_op = Some(i);
                hist.push(HistRow { slot: s, version, last_updated: lu, deleted: false, json });
            }
            Op::Delete { .. } => {
                if !slot.exists || slot.deleted {
                    summary.unchanged += 1;
                    continue;
                }
                summary.deleted += 1;
                let version = slot.version + 1;
                let lu = now.max(slot.last_updated);
                slot.version = version;
                slot.deleted = true;
                slot.last_updated = lu;
                slot.content_hash = None;
                slot.dirty = true;
                slot.hist_at = hist.len();
                slot.index_op = None;
                hist.push(HistRow { slot: s, version, last_updated: lu, deleted: true, json: String::new() });
            }
        }
    }
    let mut changed: Vec<usize> = (0..slots.len()).filter(|&s| slots[s].dirty && slots[s].rid.is_some()).collect();
    changed.sort_by_key(|&s| slots[s].rid);
    // 1. new resources rows, in slot order (the same rids as the multi-row insert of the sqlx path)
    {
        let mut ins = tx
            .prepare_cached(
                "INSERT INTO resources (rtype, id, version, last_updated, deleted, content_hash, json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (rtype, id) DO NOTHING RETURNING rid",
            )
            .map_err(db)?;
        for sl in slots.iter_mut().filter(|s| s.dirty && s.rid.is_none()) {
            let rid = ins
                .query_row(
                    (sl.rtype, sl.id, sl.version, sl.last_updated, sl.deleted, sl.content_hash, hist[sl.hist_at].json.as_str()),
                    |r| r.get::<_, i64>(0),
                )
                .optional()
                .map_err(db)?;
            match rid {
                Some(rid) => sl.rid = Some(rid),
                None => return Err(StoreError::Database("resource created by another writer".into())),
            }
        }
    }
    // 2. changed existing rows: the replaced current version moves to the history first
    {
        let mut to_hist = tx
            .prepare_cached(
                "INSERT INTO resource_history (rtype, id, version, last_updated, deleted, json) \
                 SELECT rtype, id, version, last_updated, deleted, json FROM resources WHERE rid = ?1",
            )
            .map_err(db)?;
        for &s in &changed {
            to_hist.execute([slots[s].rid]).map_err(db)?;
        }
        let mut upd = tx
            .prepare_cached(
                "UPDATE resources SET version = ?2, last_updated = ?3, deleted = ?4, content_hash = ?5, json = ?6 \
                 WHERE rid = ?1",
            )
            .map_err(db)?;
        for &s in &changed {
            let sl = &slots[s];
            upd.execute((sl.rid, sl.version, sl.last_updated, sl.deleted, sl.content_hash, hist[sl.hist_at].json.as_str()))
                .map_err(db)?;
        }
    }
    // 3. index rows of the replaced versions
    if changed.iter().any(|&s| slots[s].was_indexed) {
        for table in INDEX_TABLES {
            let mut del = tx.prepare_cached(&format!("DELETE FROM {table} WHERE rid = ?1")).map_err(db)?;
            for &s in changed.iter().filter(|&&s| slots[s].was_indexed) {
                del.execute([slots[s].rid]).map_err(db)?;
            }
        }
    }
    // 4. history rows: versions of this batch that a later op of the same batch replaced
    if hist.len() > slots.iter().filter(|s| s.dirty).count() {
        let mut ins = tx
            .prepare_cached(
                "INSERT INTO resource_history (rtype, id, version, last_updated, deleted, json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(db)?;
        for (i, h) in hist.iter().enumerate() {
            let sl = &slots[h.slot];
            if sl.hist_at != i {
                ins.execute((sl.rtype, sl.id, h.version, h.last_updated, h.deleted, h.json.as_str())).map_err(db)?;
            }
        }
    }
    // 5. index rows of the current versions, table by table in slot order
    let index: Vec<(i64, &str, &shared::IndexRows)> = slots
        .iter()
        .filter_map(|sl| match (sl.dirty, sl.index_op, sl.rid) {
            (true, Some(op), Some(rid)) => match &ops[op] {
                Op::Put { prep, .. } => Some((rid, sl.rtype, &prep.index)),
                Op::Delete { .. } => None,
            },
            _ => None,
        })
        .collect();
    write_index(tx, &index, pid, sid)?;
    Ok(summary)
}

/// Inserts the search-index rows of `(rid, rtype, rows)`, one cached statement per table.
fn write_index(
    tx: &Connection,
    index: &[(i64, &str, &shared::IndexRows)],
    pid: &dyn Fn(&str, &str) -> i64,
    sid: &dyn Fn(Option<&str>) -> Option<i64>,
) -> Result<(), StoreError> {
    let mut st = tx.prepare_cached("INSERT INTO idx_token (rid, pid, sid, code, display) VALUES (?1, ?2, ?3, ?4, ?5)").map_err(db)?;
    for &(rid, t, rows) in index {
        for r in &rows.token {
            st.execute((rid, pid(t, &r.0), sid(r.1.as_deref()), r.2.as_str(), r.3.as_deref())).map_err(db)?;
        }
    }
    let mut st = tx.prepare_cached("INSERT INTO idx_string (rid, pid, exact, normalized) VALUES (?1, ?2, ?3, ?4)").map_err(db)?;
    for &(rid, t, rows) in index {
        for r in &rows.string {
            st.execute((rid, pid(t, &r.0), r.1.as_str(), r.2.as_str())).map_err(db)?;
        }
    }
    let mut st = tx.prepare_cached("INSERT INTO idx_date (rid, pid, lo, hi) VALUES (?1, ?2, ?3, ?4)").map_err(db)?;
    for &(rid, t, rows) in index {
        for r in &rows.date {
            st.execute((rid, pid(t, &r.0), r.1, r.2)).map_err(db)?;
        }
    }
    let mut st = tx
        .prepare_cached("INSERT INTO idx_reference (rid, pid, target_type, target_id, url) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(db)?;
    for &(rid, t, rows) in index {
        for r in &rows.reference {
            st.execute((rid, pid(t, &r.0), r.1.as_deref(), r.2.as_str(), r.3.as_str())).map_err(db)?;
        }
    }
    let mut st = tx
        .prepare_cached(
            "INSERT INTO idx_quantity (rid, pid, value, lo, hi, system, code, unit) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(db)?;
    for &(rid, t, rows) in index {
        for r in &rows.quantity {
            st.execute((rid, pid(t, &r.0), r.1, r.2, r.3, r.4.as_deref(), r.5.as_deref(), r.6.as_deref())).map_err(db)?;
        }
    }
    let mut st = tx.prepare_cached("INSERT INTO idx_number (rid, pid, value, lo, hi) VALUES (?1, ?2, ?3, ?4, ?5)").map_err(db)?;
    for &(rid, t, rows) in index {
        for r in &rows.number {
            st.execute((rid, pid(t, &r.0), r.1, r.2, r.3)).map_err(db)?;
        }
    }
    let mut st = tx.prepare_cached("INSERT INTO idx_uri (rid, pid, uri) VALUES (?1, ?2, ?3)").map_err(db)?;
    for &(rid, t, rows) in index {
        for r in &rows.uri {
            st.execute((rid, pid(t, &r.0), r.1.as_str())).map_err(db)?;
        }
    }
    Ok(())
}
