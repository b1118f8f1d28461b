// Shared backend implementation, compiled once per dialect: `include!`d by `sqlite.rs` and `postgres.rs`,
// which define before the include:
//   type Db;                         // sqlx::Sqlite / sqlx::Postgres
//   type Me;                         // the store struct (fields `registry`, and methods `read_pool`, `begin_write`)
//   const SQL_SELECT_FOR_WRITE: &str // current-row lookup that also locks the row (PG: FOR UPDATE)
// SQL below uses `$n` placeholders, which both SQLite and PostgreSQL accept.

use crate::search::{
    Include, Modifier, ParamType, Prefix, SearchParam, SearchQuery, SearchValue, SummaryMode, TokenSystem,
    TotalMode,
};
use crate::store::plan;
use crate::store::shared::{self, IndexRows, Op, OpResult, PutMode};
use crate::store::sql::Sql;
use crate::store::{
    ImportFile, ImportSummary, ImportWrite, LedgerEntry, LedgerStatus, ResourceBody, ResourceStore,
    SearchPage, StoreError, StoredResource, TxEntry, TxError, TxResult, WriteOutcome,
};
use serde_json::Value;
use sqlx::{QueryBuilder, Row};
use std::collections::{HashMap, HashSet};

// `Tx`: the dialect's write transaction (defined by the including file), dereferencing to its connection.

/// Max bind parameters per multi-row statement (SQLite allows 32766, PostgreSQL 65535).
const MAX_BINDS: usize = 3000;
/// Max resources returned by `_include`/`_revinclude` per search (protects the server).
const MAX_INCLUDED: usize = 5000;

const SQL_EXISTS: &str = "SELECT 1 FROM resources WHERE rtype = $1 AND id = $2";
const SQL_LEDGER_GET: &str =
    "SELECT path, content_sha256, status, error, imported_at FROM import_files WHERE path = $1";
const LEDGER_UPSERT_TAIL: &str = " ON CONFLICT (path) DO UPDATE SET content_sha256 = excluded.content_sha256, \
     status = excluded.status, error = excluded.error, imported_at = excluded.imported_at";
const RES_COLS: &str = "r.rid, r.rtype, r.id, r.version, r.last_updated, r.deleted, r.json";

const INDEX_TABLES: [&str; 7] =
    ["idx_token", "idx_string", "idx_date", "idx_reference", "idx_quantity", "idx_number", "idx_uri"];

fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

async fn select_current(tx: &mut Tx, rtype: &str, id: &str) -> Result<Option<plan::Current>, StoreError> {
    let row = sqlx::query(SQL_SELECT_FOR_WRITE).bind(rtype).bind(id).fetch_optional(&mut **tx).await?;
    row.as_ref().map(current_of).transpose()
}

/// [`plan::Current`] from the first five columns of a row: `rid, version, deleted, last_updated,
/// content_hash` (the column order of `SQL_SELECT_FOR_WRITE` and of the batched prefetches). Errors:
/// `Database` (a column of another type).
fn current_of(r: &<Db as sqlx::Database>::Row) -> Result<plan::Current, StoreError> {
    Ok(plan::Current {
        rid: r.try_get(0)?,
        version: r.try_get(1)?,
        deleted: r.try_get(2)?,
        last_updated: r.try_get(3)?,
        content_hash: r.try_get(4)?,
    })
}

/// The current rows of a batched prefetch — rows of `rid, version, deleted, last_updated, content_hash,
/// rtype, id` — aligned with `keys` (`None`: no such resource). Errors: `Database`.
fn align_current(
    keys: &[(&str, &str)],
    rows: &[<Db as sqlx::Database>::Row],
) -> Result<Vec<Option<plan::Current>>, StoreError> {
    let at: HashMap<(&str, &str), usize> = keys.iter().enumerate().map(|(s, &k)| (k, s)).collect();
    let mut current: Vec<Option<plan::Current>> = vec![None; keys.len()];
    for r in rows {
        let (t, i): (String, String) = (r.try_get(5)?, r.try_get(6)?);
        if let Some(&s) = at.get(&(t.as_str(), i.as_str())) {
            current[s] = Some(current_of(r)?);
        }
    }
    Ok(current)
}

/// Gives the new rows of `p` the rids that `INSERT INTO resources … RETURNING rid, rtype, id` returned in
/// `returned`. A row the insert skipped (`ON CONFLICT DO NOTHING`: created concurrently by another
/// connection) gets none and shows in [`plan::Plan::raced`]. Errors: `Database`.
fn set_inserted_rids(p: &mut plan::Plan<'_>, returned: &[<Db as sqlx::Database>::Row]) -> Result<(), StoreError> {
    let slot_of: HashMap<(&str, &str), usize> = p.insert.iter().map(|r| ((r.rtype, r.id), r.slot)).collect();
    let mut rids = Vec::with_capacity(returned.len());
    for r in returned {
        let (rid, t, i): (i64, String, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        if let Some(&s) = slot_of.get(&(t.as_str(), i.as_str())) {
            rids.push((s, rid));
        }
    }
    for (s, rid) in rids {
        p.set_rid(s, rid);
    }
    Ok(())
}

/// The current rows of `keys` (distinct), aligned with them (`None`: absent), with one statement per
/// chunk (PostgreSQL: row-locked like [`select_current`]).
async fn prefetch_current(tx: &mut Tx, keys: &[(&str, &str)]) -> Result<Vec<Option<plan::Current>>, StoreError> {
    if let Some(pg) = (&mut **tx as &mut dyn std::any::Any).downcast_mut::<sqlx::PgConnection>() {
        return super::postgres::unnest::prefetch_current(pg, keys).await;
    }
    let mut rows = Vec::new();
    for chunk in keys.chunks(MAX_BINDS / 2) {
        let mut qb = QueryBuilder::<Db>::new(
            "SELECT r.rid, r.version, r.deleted, r.last_updated, r.content_hash, r.rtype, r.id FROM (",
        );
        qb.push_values(chunk, |mut b, (t, i)| {
            b.push_bind(t.to_string()).push_bind(i.to_string());
        });
        qb.push(") k JOIN resources r ON r.rtype = k.column1 AND r.id = k.column2").push(SQL_LOCK_SUFFIX);
        rows.extend(qb.build().fetch_all(&mut **tx).await?);
    }
    align_current(keys, &rows)
}

/// The interned ids (`search_param.pid`, `token_system.sid`, migration 0006) of every key the index rows
/// of `ops` use: from the cache, else read inside `tx` (rows visible before this call are committed —
/// cached), else interned inside `tx` (`ON CONFLICT DO NOTHING`, then read back; used by this
/// transaction only, cached once a later call reads them as committed). Call once per transaction.
async fn resolve_ids(tx: &mut Tx, interned: &shared::Interned, ops: &[Op]) -> Result<shared::Ids, StoreError> {
    let mut ids = shared::Ids::default();
    let (keys_p, keys_s) = shared::index_keys(ops);
    let mut want_p: Vec<(&str, &str)> = Vec::new();
    let mut want_s: Vec<&str> = Vec::new();
    for (rtype, p) in keys_p {
        match interned.param(rtype, p) {
            Some(pid) => {
                ids.params.entry(rtype.to_string()).or_default().insert(p.to_string(), pid);
            }
            None => want_p.push((rtype, p)),
        }
    }
    for sys in keys_s {
        match interned.system(sys) {
            Some(sid) => {
                ids.systems.insert(sys.to_string(), sid);
            }
            None => want_s.push(sys),
        }
    }
    // (rtype, param) → pid
    for round in 0..2 {
        if want_p.is_empty() {
            break;
        }
        if round == 1 {
            for chunk in want_p.chunks(MAX_BINDS / 2) {
                let mut qb = QueryBuilder::<Db>::new("INSERT INTO search_param (rtype, param) ");
                qb.push_values(chunk, |mut b, (t, p)| {
                    b.push_bind(t.to_string()).push_bind(p.to_string());
                });
                qb.push(" ON CONFLICT (rtype, param) DO NOTHING");
                qb.build().execute(&mut **tx).await?;
            }
        }
        let mut found: HashSet<(String, String)> = HashSet::new();
        for chunk in want_p.chunks(MAX_BINDS / 2) {
            let mut qb = QueryBuilder::<Db>::new("SELECT CAST(p.pid AS BIGINT), p.rtype, p.param FROM (");
            qb.push_values(chunk, |mut b, (t, p)| {
                b.push_bind(t.to_string()).push_bind(p.to_string());
            });
            qb.push(") k JOIN search_param p ON p.rtype = k.column1 AND p.param = k.column2");
            for r in qb.build().fetch_all(&mut **tx).await? {
                let (pid, t, p): (i64, String, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                if round == 0 {
                    interned.put_param(t.clone(), p.clone(), pid);
                }
                ids.params.entry(t.clone()).or_default().insert(p.clone(), pid);
                found.insert((t, p));
            }
        }
        want_p.retain(|(t, p)| !found.contains(&(t.to_string(), p.to_string())));
    }
    // system → sid
    for round in 0..2 {
        if want_s.is_empty() {
            break;
        }
        if round == 1 {
            for chunk in want_s.chunks(MAX_BINDS) {
                let mut qb = QueryBuilder::<Db>::new("INSERT INTO token_system (system) ");
                qb.push_values(chunk, |mut b, s| {
                    b.push_bind(s.to_string());
                });
                qb.push(" ON CONFLICT (system) DO NOTHING");
                qb.build().execute(&mut **tx).await?;
            }
        }
        let mut found: HashSet<String> = HashSet::new();
        for chunk in want_s.chunks(MAX_BINDS) {
            let mut qb = QueryBuilder::<Db>::new("SELECT CAST(sid AS BIGINT), system FROM token_system WHERE system IN (");
            let mut sep = qb.separated(", ");
            for s in chunk {
                sep.push_bind(s.to_string());
            }
            qb.push(")");
            for r in qb.build().fetch_all(&mut **tx).await? {
                let (sid, sys): (i64, String) = (r.try_get(0)?, r.try_get(1)?);
                if round == 0 {
                    interned.put_system(sys.clone(), sid);
                }
                ids.systems.insert(sys.clone(), sid);
                found.insert(sys);
            }
        }
        want_s.retain(|s| !found.contains(*s));
    }
    if !want_p.is_empty() || !want_s.is_empty() {
        return Err(StoreError::Database("search index keys could not be interned".into()));
    }
    Ok(ids)
}


/// Applies `ops` in order inside `tx` (the caller commits). Errors carry the index of the failing op.
///
/// The batch is planned by the pure [`plan::plan`] from one prefetch of the current rows, then
/// [`write_plan`] writes it with a constant number of multi-row statements per table.
async fn apply_ops(
    tx: &mut Tx,
    interned: &shared::Interned,
    ops: Vec<Op>,
) -> Result<Vec<OpResult>, (Option<usize>, StoreError)> {
    apply_ops_with(tx, interned, &ops, true).await
}

/// [`apply_ops`] over borrowed ops; `bodies = false` leaves `StoredResource::json` of the results empty
/// (the importer only counts outcomes).
async fn apply_ops_with(
    tx: &mut Tx,
    interned: &shared::Interned,
    ops: &[Op],
    bodies: bool,
) -> Result<Vec<OpResult>, (Option<usize>, StoreError)> {
    let ids = resolve_ids(tx, interned, ops).await.map_err(|e| (None, e))?;
    let keys = plan::keys(ops);
    let mut current: Vec<Option<plan::Current>> = if let [(rtype, id)] = keys[..] {
        vec![select_current(tx, rtype, id).await.map_err(|e| (None, e))?]
    } else {
        prefetch_current(tx, &keys).await.map_err(|e| (None, e))?
    };
    let now = shared::now_ms();
    for _attempt in 0..4 {
        let mut planned = plan::plan(ops, &current, now, bodies).map_err(|(i, e)| (Some(i), e))?;
        // PostgreSQL: a savepoint lets a batch that raced with a concurrent create be re-planned.
        let written = if use_savepoint() {
            let mut sp = sqlx::Connection::begin(&mut **tx).await.map_err(|e| (None, db_err(e)))?;
            let r = write_plan(&mut sp, &ids, &mut planned).await;
            if matches!(r, Ok(true)) {
                sp.commit().await.map_err(|e| (None, db_err(e)))?;
            }
            r // otherwise `sp` is dropped: ROLLBACK TO SAVEPOINT
        } else {
            write_plan(tx, &ids, &mut planned).await
        };
        if written.map_err(|e| (None, e))? {
            return Ok(planned.results);
        }
        if !use_savepoint() {
            return Err((None, StoreError::Database("resource created by another writer".into())));
        }
        // Re-read the concurrently created rows (row-locked) and plan again.
        for s in planned.raced() {
            let (rtype, id) = keys[s];
            current[s] = select_current(tx, rtype, id).await.map_err(|e| (None, e))?;
        }
    }
    Err((None, StoreError::Database("concurrent creates did not settle".into())))
}

/// PostgreSQL allows concurrent writers of one table, so a batch's new ids can race with another
/// connection's (settled with a savepoint and a re-plan). SQLite writes are serialised (`BEGIN IMMEDIATE`).
fn use_savepoint() -> bool {
    <Db as sqlx::Database>::NAME == "PostgreSQL"
}

/// Writes `p` (the order of [`plan`]'s module docs) with multi-row statements. `Ok(false)`: some new
/// rows were created concurrently by another connection ([`plan::Plan::raced`]); the caller rolls back
/// what was written and plans again.
async fn write_plan(
    conn: &mut <Db as sqlx::Database>::Connection,
    ids: &shared::Ids,
    p: &mut plan::Plan<'_>,
) -> Result<bool, StoreError> {
    // PostgreSQL: one statement per table with array binds (`postgres::unnest`)
    if let Some(pg) = (conn as &mut dyn std::any::Any).downcast_mut::<sqlx::PgConnection>() {
        return super::postgres::unnest::write_plan(pg, ids, p).await;
    }
    // 1. new resources rows (one statement per chunk; `RETURNING` gives their rids)
    let mut returned = Vec::with_capacity(p.insert.len());
    for chunk in p.insert.chunks(MAX_BINDS / 7) {
        let mut qb = QueryBuilder::<Db>::new(
            "INSERT INTO resources (rtype, id, version, last_updated, deleted, content_hash, json) ",
        );
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(r.rtype)
                .push_bind(r.id)
                .push_bind(r.version)
                .push_bind(r.last_updated)
                .push_bind(r.deleted)
                .push_bind(r.content_hash)
                .push_bind(r.json.as_str());
        });
        qb.push(" ON CONFLICT (rtype, id) DO NOTHING RETURNING rid, rtype, id");
        returned.extend(qb.build().fetch_all(&mut *conn).await?);
    }
    set_inserted_rids(p, &returned)?;
    if !p.raced().is_empty() {
        return Ok(false);
    }
    // 2. changed existing rows: their replaced current version moves to the history first (the history
    //    holds exactly the versions that are no longer current, migration 0006)
    for chunk in p.update.chunks(MAX_BINDS) {
        let mut qb = QueryBuilder::<Db>::new(
            "INSERT INTO resource_history (rtype, id, version, last_updated, deleted, json) \
             SELECT rtype, id, version, last_updated, deleted, json FROM resources WHERE rid IN (",
        );
        let mut sep = qb.separated(", ");
        for (rid, _) in chunk {
            sep.push_bind(*rid);
        }
        qb.push(") ORDER BY rid");
        qb.build().execute(&mut *conn).await?;
    }
    for chunk in p.update.chunks(MAX_BINDS / 6) {
        let mut qb = QueryBuilder::<Db>::new(
            "UPDATE resources AS r SET version = v.column2, last_updated = v.column3, deleted = v.column4, \
             content_hash = v.column5, json = v.column6 FROM (",
        );
        qb.push_values(chunk, |mut b, (rid, r)| {
            b.push_bind(*rid)
                .push_bind(r.version)
                .push_bind(r.last_updated)
                .push_bind(r.deleted)
                .push_bind(r.content_hash)
                .push_bind(r.json.as_str());
        });
        qb.push(") AS v WHERE r.rid = v.column1");
        qb.build().execute(&mut *conn).await?;
    }
    // 3. index rows of the replaced versions
    for chunk in p.clear_index.chunks(MAX_BINDS) {
        for table in INDEX_TABLES {
            let mut qb = QueryBuilder::<Db>::new(format!("DELETE FROM {table} WHERE rid IN ("));
            let mut sep = qb.separated(", ");
            for rid in chunk {
                sep.push_bind(*rid);
            }
            qb.push(")");
            qb.build().execute(&mut *conn).await?;
        }
    }
    // 4. history rows: the versions of this batch that a later op of the same batch replaced
    for chunk in p.history.chunks(MAX_BINDS / 6) {
        let mut qb =
            QueryBuilder::<Db>::new("INSERT INTO resource_history (rtype, id, version, last_updated, deleted, json) ");
        qb.push_values(chunk, |mut b, h| {
            b.push_bind(h.rtype)
                .push_bind(h.id)
                .push_bind(h.version)
                .push_bind(h.last_updated)
                .push_bind(h.deleted)
                .push_bind(h.json.as_str());
        });
        qb.build().execute(&mut *conn).await?;
    }
    // 5. index rows of the current versions
    write_index(conn, ids, &p.index_rows()).await?;
    Ok(true)
}

/// Inserts the search-index rows of `(rid, rtype, rows)` with multi-row statements (one per table and
/// chunk of at most [`MAX_BINDS`] bind values); (rtype, param) and token systems as their `ids`.
async fn write_index(
    conn: &mut <Db as sqlx::Database>::Connection,
    ids: &shared::Ids,
    index: &[(i64, &str, &IndexRows)],
) -> Result<(), StoreError> {
    async fn insert<'r, T: 'r>(
        conn: &mut <Db as sqlx::Database>::Connection,
        head: &str,
        cols: usize,
        rows: &[(i64, i64, &'r T)],
        bind: impl Fn(&mut sqlx::query_builder::Separated<'_, Db, &'static str>, &'r T),
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(MAX_BINDS / cols) {
            let mut qb = QueryBuilder::<Db>::new(head);
            qb.push_values(chunk, |mut b, (rid, pid, r)| {
                b.push_bind(*rid).push_bind(*pid);
                bind(&mut b, r);
            });
            qb.build().execute(&mut *conn).await?;
        }
        Ok(())
    }
    let mut token = Vec::new();
    let mut string = Vec::new();
    let mut date = Vec::new();
    let mut reference = Vec::new();
    let mut quantity = Vec::new();
    let mut number = Vec::new();
    let mut uri = Vec::new();
    for &(rid, rtype, rows) in index {
        token.extend(rows.token.iter().map(|r| (rid, ids.pid(rtype, &r.0), r)));
        string.extend(rows.string.iter().map(|r| (rid, ids.pid(rtype, &r.0), r)));
        date.extend(rows.date.iter().map(|r| (rid, ids.pid(rtype, &r.0), r)));
        reference.extend(rows.reference.iter().map(|r| (rid, ids.pid(rtype, &r.0), r)));
        quantity.extend(rows.quantity.iter().map(|r| (rid, ids.pid(rtype, &r.0), r)));
        number.extend(rows.number.iter().map(|r| (rid, ids.pid(rtype, &r.0), r)));
        uri.extend(rows.uri.iter().map(|r| (rid, ids.pid(rtype, &r.0), r)));
    }
    insert(conn, "INSERT INTO idx_token (rid, pid, sid, code, display) ", 5, &token, |b, r| {
        b.push_bind(ids.sid(r.1.as_deref())).push_bind(r.2.as_str()).push_bind(r.3.as_deref());
    })
    .await?;
    insert(conn, "INSERT INTO idx_string (rid, pid, exact, normalized) ", 4, &string, |b, r| {
        b.push_bind(r.1.as_str()).push_bind(r.2.as_str());
    })
    .await?;
    insert(conn, "INSERT INTO idx_date (rid, pid, lo, hi) ", 4, &date, |b, r| {
        b.push_bind(r.1).push_bind(r.2);
    })
    .await?;
    insert(conn, "INSERT INTO idx_reference (rid, pid, target_type, target_id, url) ", 5, &reference, |b, r| {
        b.push_bind(r.1.as_deref()).push_bind(r.2.as_str()).push_bind(r.3.as_str());
    })
    .await?;
    insert(
        conn,
        "INSERT INTO idx_quantity (rid, pid, value, lo, hi, system, code, unit) ",
        8,
        &quantity,
        |b, r| {
            b.push_bind(r.1)
                .push_bind(r.2)
                .push_bind(r.3)
                .push_bind(r.4.as_deref())
                .push_bind(r.5.as_deref())
                .push_bind(r.6.as_deref());
        },
    )
    .await?;
    insert(conn, "INSERT INTO idx_number (rid, pid, value, lo, hi) ", 5, &number, |b, r| {
        b.push_bind(r.1).push_bind(r.2).push_bind(r.3);
    })
    .await?;
    insert(conn, "INSERT INTO idx_uri (rid, pid, uri) ", 3, &uri, |b, r| {
        b.push_bind(r.1.as_str());
    })
    .await?;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Search SQL planning (FHIR R4 search.html). Every condition is a boolean SQL expression about the
// resource row `alias` (`r` for the searched type, `t` for a chained target).
// ------------------------------------------------------------------------------------------------

fn index_table(pt: ParamType, code: &str) -> Result<&'static str, StoreError> {
    Ok(match pt {
        ParamType::Token => "idx_token",
        ParamType::String => "idx_string",
        ParamType::Date => "idx_date",
        ParamType::Reference => "idx_reference",
        ParamType::Quantity => "idx_quantity",
        ParamType::Number => "idx_number",
        ParamType::Uri => "idx_uri",
        ParamType::Composite | ParamType::Special => {
            return Err(StoreError::Invalid(format!("search parameter `{code}` ({}) is not supported", pt.as_str())))
        }
    })
}

fn mismatch(code: &str) -> StoreError {
    StoreError::Invalid(format!("value of search parameter `{code}` does not fit its type"))
}

/// Date range semantics (search.html#prefix); target `[lo, hi]` inclusive columns, search `[qlo, qhi]`.
fn push_date_cond(qb: &mut Sql, lo: &str, hi: &str, prefix: Prefix, qlo: i64, qhi: i64) {
    let contained = |qb: &mut Sql| {
        qb.push("(").push(lo).push(" >= ").push_bind(qlo).push(" AND ").push(hi).push(" <= ").push_bind(qhi).push(")");
    };
    match prefix {
        // `lo <= qhi` is implied (lo <= hi <= qhi) but bounds the index range scan on `lo`.
        Prefix::Eq => {
            qb.push("(").push(lo).push(" <= ").push_bind(qhi).push(" AND ");
            contained(qb);
            qb.push(")");
        }
        Prefix::Ne => {
            qb.push("NOT ");
            contained(qb);
        }
        Prefix::Gt => {
            qb.push(hi).push(" > ").push_bind(qhi);
        }
        Prefix::Lt => {
            qb.push(lo).push(" < ").push_bind(qlo);
        }
        Prefix::Ge => {
            qb.push("(").push(hi).push(" > ").push_bind(qhi).push(" OR ");
            contained(qb);
            qb.push(")");
        }
        Prefix::Le => {
            qb.push("(").push(lo).push(" < ").push_bind(qlo).push(" OR ");
            contained(qb);
            qb.push(")");
        }
        Prefix::Sa => {
            qb.push(lo).push(" > ").push_bind(qhi);
        }
        Prefix::Eb => {
            qb.push(hi).push(" < ").push_bind(qlo);
        }
        Prefix::Ap => {
            qb.push("(").push(lo).push(" <= ").push_bind(qhi).push(" AND ").push(hi).push(" >= ").push_bind(qlo).push(")");
        }
    }
}

/// Number/quantity semantics (search.html#number): the search range `[lo, hi)` implied by precision.
fn push_number_cond(qb: &mut Sql, col: &str, prefix: Prefix, value: f64, lo: f64, hi: f64) {
    let in_range = |qb: &mut Sql| {
        qb.push("(").push(col).push(" >= ").push_bind(lo).push(" AND ").push(col).push(" < ").push_bind(hi).push(")");
    };
    match prefix {
        Prefix::Eq | Prefix::Ap => in_range(qb),
        Prefix::Ne => {
            qb.push("NOT ");
            in_range(qb);
        }
        Prefix::Gt | Prefix::Sa => {
            qb.push(col).push(" > ").push_bind(value);
        }
        Prefix::Lt | Prefix::Eb => {
            qb.push(col).push(" < ").push_bind(value);
        }
        Prefix::Ge => {
            qb.push(col).push(" >= ").push_bind(value);
        }
        Prefix::Le => {
            qb.push(col).push(" <= ").push_bind(value);
        }
    }
}

/// One OR-list value as a condition on index row alias `x`.
fn push_value_cond(qb: &mut Sql, p: &SearchParam, v: &SearchValue) -> Result<(), StoreError> {
    match (p.param_type, v) {
        (ParamType::String, SearchValue::String { exact, normalized }) => match p.modifier {
            Some(Modifier::Exact) => {
                qb.push("x.exact = ").push_bind(exact.clone());
            }
            Some(Modifier::Contains) => {
                qb.push("x.normalized LIKE ")
                    .push_bind(format!("%{}%", shared::like_escape(normalized)))
                    .push(" ESCAPE '\\'");
            }
            _ => {
                qb.push("(x.normalized >= ")
                    .push_bind(normalized.clone())
                    .push(" AND x.normalized < ")
                    .push_bind(shared::prefix_upper(normalized))
                    .push(")");
            }
        },
        (ParamType::Token, SearchValue::Token { system, code }) => {
            if p.modifier == Some(Modifier::Text) {
                let t = code.clone().unwrap_or_default();
                qb.push("(x.display >= ")
                    .push_bind(t.clone())
                    .push(" AND x.display < ")
                    .push_bind(shared::prefix_upper(&t))
                    .push(")");
                return Ok(());
            }
            qb.push("(");
            let mut any = false;
            if let Some(c) = code {
                qb.push("x.code = ").push_bind(c.clone());
                any = true;
            }
            match system {
                TokenSystem::Any => {}
                TokenSystem::NoSystem => {
                    if any {
                        qb.push(" AND ");
                    }
                    qb.push("x.sid IS NULL");
                    any = true;
                }
                TokenSystem::Is(s) => {
                    if any {
                        qb.push(" AND ");
                    }
                    qb.push("x.sid = (SELECT sid FROM token_system WHERE system = ").push_bind(s.clone()).push(")");
                    any = true;
                }
            }
            if !any {
                qb.push("1 = 1");
            }
            qb.push(")");
        }
        (ParamType::Date, SearchValue::Date { prefix, lo_ms, hi_ms }) => {
            push_date_cond(qb, "x.lo", "x.hi", *prefix, *lo_ms, *hi_ms);
        }
        (ParamType::Reference, SearchValue::Reference { target_type, id, url }) => {
            let tt = target_type.clone().or_else(|| match &p.modifier {
                Some(Modifier::Type(t)) => Some(t.clone()),
                _ => None,
            });
            if !id.is_empty() {
                qb.push("(x.target_id = ").push_bind(id.clone());
                if let Some(tt) = tt {
                    qb.push(" AND x.target_type = ").push_bind(tt);
                }
                qb.push(")");
            } else {
                qb.push("x.url = ").push_bind(url.clone());
            }
        }
        (ParamType::Quantity, SearchValue::Quantity { prefix, value, lo, hi, system, code }) => {
            qb.push("(");
            push_number_cond(qb, "x.value", *prefix, *value, *lo, *hi);
            match (system, code) {
                (Some(s), Some(c)) => {
                    qb.push(" AND x.system = ").push_bind(s.clone()).push(" AND x.code = ").push_bind(c.clone());
                }
                (Some(s), None) => {
                    qb.push(" AND x.system = ").push_bind(s.clone());
                }
                (None, Some(c)) => {
                    qb.push(" AND (x.code = ").push_bind(c.clone()).push(" OR x.unit = ").push_bind(c.clone()).push(")");
                }
                (None, None) => {}
            }
            qb.push(")");
        }
        (ParamType::Number, SearchValue::Number { prefix, value, lo, hi }) => {
            push_number_cond(qb, "x.value", *prefix, *value, *lo, *hi);
        }
        (ParamType::Uri, SearchValue::Uri(u)) => {
            if p.modifier == Some(Modifier::Contains) {
                qb.push("x.uri LIKE ").push_bind(format!("%{}%", shared::like_escape(u))).push(" ESCAPE '\\'");
            } else {
                qb.push("x.uri = ").push_bind(u.clone());
            }
        }
        _ => return Err(mismatch(&p.code)),
    }
    Ok(())
}

fn push_or_values(qb: &mut Sql, p: &SearchParam) -> Result<(), StoreError> {
    qb.push("(");
    for (i, v) in p.values.iter().enumerate() {
        if i > 0 {
            qb.push(" OR ");
        }
        push_value_cond(qb, p, v)?;
    }
    qb.push(")");
    Ok(())
}

/// Condition for `_id` / `_lastUpdated` (answered from the `resources` row).
fn push_resource_column_cond(qb: &mut Sql, alias: &'static str, p: &SearchParam) -> Result<(), StoreError> {
    if let Some(SearchValue::Missing(m)) = p.values.first() {
        // every resource has an id and lastUpdated
        qb.push(if *m { "1 = 0" } else { "1 = 1" });
        return Ok(());
    }
    let negate = p.modifier == Some(Modifier::Not);
    if negate {
        qb.push("NOT ");
    }
    qb.push("(");
    for (i, v) in p.values.iter().enumerate() {
        if i > 0 {
            qb.push(" OR ");
        }
        match (p.code.as_str(), v) {
            ("_id", SearchValue::Token { code: Some(c), .. }) => {
                qb.push(alias).push(".id = ").push_bind(c.clone());
            }
            ("_id", SearchValue::String { exact, .. }) => {
                qb.push(alias).push(".id = ").push_bind(exact.clone());
            }
            ("_id", SearchValue::Uri(u)) => {
                qb.push(alias).push(".id = ").push_bind(u.clone());
            }
            ("_lastUpdated", SearchValue::Date { prefix, lo_ms, hi_ms }) => {
                let col = format!("{alias}.last_updated");
                push_date_cond(qb, &col, &col, *prefix, *lo_ms, *hi_ms);
            }
            _ => return Err(mismatch(&p.code)),
        }
    }
    qb.push(")");
    Ok(())
}

/// `{col} = <pid of (rtype, param)>` (migration 0006) as an uncorrelated scalar subquery: evaluated once
/// per statement, NULL (matching no row) for a parameter that was never indexed.
fn push_pid(qb: &mut Sql, col: &str, rtype: &str, param: &str) {
    qb.push(col)
        .push(" = (SELECT pid FROM search_param WHERE rtype = ")
        .push_bind(rtype.to_string())
        .push(" AND param = ")
        .push_bind(param.to_string())
        .push(")");
}

/// SQLite: a per-row probe (`EXISTS … WHERE x.rid = r.rid AND …`) must go through the table's
/// `(rid, pid)` index. With the statistics of a bulk-loaded store the planner otherwise prefers the
/// `(pid, code, …)` lookup index and scans every row of a common code once per candidate
/// (`Observation?patient=&code=&_sort=-date`: 6× slower at 2,000 patients). The `_rid` indexes are never
/// dropped (not in `BULK_INDEXES`), so the hint always resolves. PostgreSQL plans these itself.
fn probe_hint(table: &str) -> &'static str {
    if use_savepoint() {
        return "";
    }
    match table {
        "idx_token" => " INDEXED BY idx_token_rid",
        "idx_string" => " INDEXED BY idx_string_rid",
        "idx_date" => " INDEXED BY idx_date_rid",
        "idx_reference" => " INDEXED BY idx_reference_rid",
        "idx_quantity" => " INDEXED BY idx_quantity_rid",
        "idx_number" => " INDEXED BY idx_number_rid",
        "idx_uri" => " INDEXED BY idx_uri_rid",
        _ => "",
    }
}

/// Token parameters with few distinct values: poor drivers for a search.
const LOW_CARDINALITY_TOKENS: [&str; 14] = [
    "gender", "status", "active", "deceased", "intent", "category", "priority", "clinical-status",
    "verification-status", "_tag", "_security", "language", "type", "class",
];

/// Heuristic selectivity rank of a parameter (lower = fewer matching rows), used to pick the condition
/// that drives the search (`rid IN (…)`); all other conditions become per-row `EXISTS` probes on the
/// `(rid, param)` indexes. `None` = never a driver (chains, `:missing`, `:not`, result-less).
fn driver_rank(p: &SearchParam) -> Option<u8> {
    if p.chain.is_some() || matches!(p.modifier, Some(Modifier::Missing) | Some(Modifier::Not)) {
        return None;
    }
    if matches!(p.values.first(), None | Some(SearchValue::Missing(_))) {
        return None;
    }
    if p.code == "_id" {
        return Some(0);
    }
    if p.code == "_lastUpdated" {
        return None;
    }
    let worst = p.values.iter().map(|v| match v {
        SearchValue::Reference { id, .. } if !id.is_empty() => 1,
        SearchValue::Uri(_) if p.modifier.is_none() => 1,
        SearchValue::Token { code: Some(_), .. }
            if p.modifier.is_none() && !LOW_CARDINALITY_TOKENS.contains(&p.code.as_str()) => 2,
        SearchValue::String { .. } if p.modifier == Some(Modifier::Exact) => 2,
        SearchValue::Date { prefix: Prefix::Eq, .. } => 3,
        SearchValue::String { .. } if p.modifier.is_none() => 4,
        SearchValue::Number { prefix: Prefix::Eq, .. } | SearchValue::Quantity { prefix: Prefix::Eq, .. } => 5,
        _ => 6,
    });
    worst.max()
}

/// Pushes the condition of one AND-ed parameter on resource alias `alias` of type `rtype`
/// (`driver`: as an uncorrelated `rid IN (…)` set; otherwise as a correlated `EXISTS` probe).
fn push_param_cond(
    qb: &mut Sql,
    alias: &'static str,
    rtype: &str,
    p: &SearchParam,
) -> Result<(), StoreError> {
    push_param_cond_as(qb, alias, rtype, p, true)
}

fn push_param_cond_as(
    qb: &mut Sql,
    alias: &'static str,
    rtype: &str,
    p: &SearchParam,
    driver: bool,
) -> Result<(), StoreError> {
    if let Some(chain) = &p.chain {
        if alias == "t" || chain.param.chain.is_some() {
            return Err(StoreError::Invalid(format!("chained search `{}` deeper than one level", p.code)));
        }
        qb.push(alias)
            .push(".rid IN (SELECT ref.rid FROM idx_reference ref JOIN resources t ON t.rtype = ref.target_type AND t.id = ref.target_id WHERE ");
        push_pid(qb, "ref.pid", rtype, &p.code);
        qb.push(" AND ref.target_type = ")
            .push_bind(chain.target_type.clone())
            .push(" AND t.deleted = ")
            .push_bind(false)
            .push(" AND ");
        push_param_cond(qb, "t", &chain.target_type, &chain.param)?;
        qb.push(")");
        return Ok(());
    }
    if p.code == "_id" || p.code == "_lastUpdated" {
        return push_resource_column_cond(qb, alias, p);
    }
    let table = index_table(p.param_type, &p.code)?;
    if p.values.is_empty() {
        return Err(StoreError::Invalid(format!("search parameter `{}` has no value", p.code)));
    }
    if let Some(SearchValue::Missing(missing)) = p.values.first() {
        qb.push(if *missing { "NOT EXISTS (SELECT 1 FROM " } else { "EXISTS (SELECT 1 FROM " })
            .push(table)
            .push(" x WHERE x.rid = ")
            .push(alias)
            .push(".rid AND ");
        push_pid(qb, "x.pid", rtype, &p.code);
        qb.push(")");
        return Ok(());
    }
    if p.modifier == Some(Modifier::Not) {
        qb.push("NOT EXISTS (SELECT 1 FROM ")
            .push(table)
            .push(" x")
            .push(probe_hint(table))
            .push(" WHERE x.rid = ")
            .push(alias)
            .push(".rid AND ");
        push_pid(qb, "x.pid", rtype, &p.code);
        qb.push(" AND ");
        push_or_values(qb, p)?;
        qb.push(")");
        return Ok(());
    }
    if !driver {
        qb.push("EXISTS (SELECT 1 FROM ")
            .push(table)
            .push(" x")
            .push(probe_hint(table))
            .push(" WHERE x.rid = ")
            .push(alias)
            .push(".rid AND ");
        push_pid(qb, "x.pid", rtype, &p.code);
        qb.push(" AND ");
        push_or_values(qb, p)?;
        qb.push(")");
        return Ok(());
    }
    qb.push(alias)
        .push(".rid IN (SELECT x.rid FROM ")
        .push(table)
        .push(" x WHERE ");
    push_pid(qb, "x.pid", rtype, &p.code);
    qb.push(" AND ");
    push_or_values(qb, p)?;
    qb.push(")");
    Ok(())
}

/// ` WHERE …` for the searched type.
fn push_where(qb: &mut Sql, q: &SearchQuery) -> Result<(), StoreError> {
    qb.push(" WHERE r.rtype = ").push_bind(q.resource_type.clone()).push(" AND r.deleted = ").push_bind(false);
    // The most selective indexable condition drives (first, as `rid IN`); the rest probe per row.
    let driver = q
        .params
        .iter()
        .enumerate()
        .filter_map(|(i, p)| driver_rank(p).map(|r| (r, i)))
        .min()
        .map(|(_, i)| i);
    if let Some(d) = driver {
        qb.push(" AND ");
        push_param_cond_as(qb, "r", &q.resource_type, &q.params[d], true)?;
    }
    for (i, p) in q.params.iter().enumerate() {
        if Some(i) == driver {
            continue;
        }
        qb.push(" AND ");
        // chains stay set-based (they join through the reference index)
        push_param_cond_as(qb, "r", &q.resource_type, p, p.chain.is_some())?;
    }
    Ok(())
}

fn push_order(qb: &mut Sql, q: &SearchQuery) -> Result<(), StoreError> {
    qb.push(" ORDER BY ");
    for k in &q.sort {
        let dir = if k.descending { " DESC" } else { " ASC" };
        match k.code.as_str() {
            "_id" => {
                qb.push("r.id").push(dir).push(", ");
                continue;
            }
            "_lastUpdated" => {
                qb.push("r.last_updated").push(dir).push(", ");
                continue;
            }
            _ => {}
        }
        let table = index_table(k.param_type, &k.code)?;
        let col = match k.param_type {
            ParamType::Date => {
                if k.descending {
                    "hi"
                } else {
                    "lo"
                }
            }
            ParamType::String => "normalized",
            ParamType::Token => "code",
            ParamType::Number | ParamType::Quantity => "value",
            ParamType::Reference => "target_id",
            ParamType::Uri => "uri",
            _ => return Err(StoreError::Invalid(format!("cannot sort by `{}`", k.code))),
        };
        let agg = if k.descending { "MAX" } else { "MIN" };
        qb.push("(SELECT ")
            .push(agg)
            .push("(x.")
            .push(col)
            .push(") FROM ")
            .push(table)
            .push(" x WHERE x.rid = r.rid AND ");
        push_pid(qb, "x.pid", &q.resource_type, &k.code);
        qb.push(")")
            .push(dir)
            .push(" NULLS LAST, ");
    }
    qb.push("r.rid ASC");
    Ok(())
}

impl Me {
    /// The registry used to index writes.
    pub fn registry(&self) -> &std::sync::Arc<crate::search::Registry> {
        &self.registry
    }

    async fn run_ops(&self, ops: Vec<Op>) -> Result<Vec<OpResult>, (Option<usize>, StoreError)> {
        let mut tx = self.begin_write().await.map_err(|e| (None, e))?;
        let res = apply_ops(&mut tx, &self.interned, ops).await?;
        tx.commit().await.map_err(|e| (None, db_err(e)))?;
        Ok(res)
    }

    async fn run_one(&self, op: Op) -> Result<OpResult, StoreError> {
        let mut r = self.run_ops(vec![op]).await.map_err(|(_, e)| e)?;
        r.pop().ok_or_else(|| StoreError::Database("no result".into()))
    }

    async fn create_body(&self, resource_type: &str, body: ResourceBody) -> Result<StoredResource, StoreError> {
        let id = shared::new_id();
        let prep = shared::prepare(&self.registry, resource_type, &id, body, false)?;
        match self
            .run_one(Op::Put { rtype: resource_type.to_string(), id, prep, if_match: None, mode: PutMode::Create })
            .await?
        {
            OpResult::Written(s, _) => Ok(s),
            _ => Err(StoreError::Database("unexpected write result".into())),
        }
    }

    async fn update_body(
        &self,
        resource_type: &str,
        id: &str,
        body: ResourceBody,
        if_match: Option<i64>,
    ) -> Result<(StoredResource, WriteOutcome), StoreError> {
        let prep = shared::prepare(&self.registry, resource_type, id, body, true)?;
        match self
            .run_one(Op::Put { rtype: resource_type.to_string(), id: id.to_string(), prep, if_match, mode: PutMode::Upsert })
            .await?
        {
            OpResult::Written(s, o) => Ok((s, o)),
            _ => Err(StoreError::Database("unexpected write result".into())),
        }
    }

    /// Executes the search and returns (rid, resource) of the page.
    async fn search_page(&self, q: &SearchQuery) -> Result<Vec<(i64, StoredResource)>, StoreError> {
        let mut qb = Sql::new(PLACEHOLDERS, format!("SELECT {RES_COLS} FROM resources r"));
        push_where(&mut qb, q)?;
        push_order(&mut qb, q)?;
        qb.push(" LIMIT ").push_bind(q.count as i64).push(" OFFSET ").push_bind(q.offset as i64);
        self.query_resources(&qb).await
    }

    async fn search_count(&self, q: &SearchQuery) -> Result<u64, StoreError> {
        let mut qb = Sql::new(PLACEHOLDERS, "SELECT COUNT(*) FROM resources r");
        push_where(&mut qb, q)?;
        let n = self.query_count(&qb).await?;
        Ok(n.max(0) as u64)
    }

    async fn fetch_includes(
        &self,
        inc: &Include,
        sources: &[(i64, StoredResource)],
        seen: &mut HashSet<i64>,
        out: &mut Vec<(i64, StoredResource)>,
    ) -> Result<(), StoreError> {
        let rids: Vec<i64> =
            sources.iter().filter(|(_, s)| s.resource_type == inc.source_type).map(|(rid, _)| *rid).collect();
        for chunk in rids.chunks(MAX_BINDS) {
            if out.len() >= MAX_INCLUDED {
                return Ok(());
            }
            let mut qb = Sql::new(
                PLACEHOLDERS,
                format!(
                    "SELECT {RES_COLS} FROM idx_reference x JOIN resources r ON r.rtype = x.target_type AND r.id = x.target_id WHERE x.rid IN ("
                ),
            );
            qb.push_bind_list(chunk.iter().copied()).push(")");
            if inc.param != "*" {
                qb.push(" AND ");
                push_pid(&mut qb, "x.pid", &inc.source_type, &inc.param);
            }
            if let Some(tt) = &inc.target_type {
                qb.push(" AND x.target_type = ").push_bind(tt.clone());
            }
            qb.push(" AND r.deleted = ").push_bind(false).push(" LIMIT ").push_bind(MAX_INCLUDED as i64);
            for (rid, s) in self.query_resources(&qb).await? {
                if seen.insert(rid) {
                    out.push((rid, s));
                }
            }
        }
        Ok(())
    }

    async fn fetch_revincludes(
        &self,
        inc: &Include,
        targets: &[(i64, StoredResource)],
        seen: &mut HashSet<i64>,
        out: &mut Vec<(i64, StoredResource)>,
    ) -> Result<(), StoreError> {
        let mut by_type: HashMap<&str, Vec<&str>> = HashMap::new();
        for (_, s) in targets {
            if inc.target_type.as_deref().is_none_or(|t| t == s.resource_type) {
                by_type.entry(s.resource_type.as_str()).or_default().push(s.id.as_str());
            }
        }
        for (ttype, ids) in by_type {
            for chunk in ids.chunks(MAX_BINDS) {
                if out.len() >= MAX_INCLUDED {
                    return Ok(());
                }
                let mut qb = Sql::new(
                    PLACEHOLDERS,
                    format!("SELECT {RES_COLS} FROM idx_reference x JOIN resources r ON r.rid = x.rid WHERE "),
                );
                if inc.param != "*" {
                    push_pid(&mut qb, "x.pid", &inc.source_type, &inc.param);
                } else {
                    qb.push("x.pid IN (SELECT pid FROM search_param WHERE rtype = ")
                        .push_bind(inc.source_type.clone())
                        .push(")");
                }
                qb.push(" AND x.target_type = ").push_bind(ttype.to_string()).push(" AND x.target_id IN (");
                qb.push_bind_list(chunk.iter().map(|id| id.to_string())).push(") AND r.deleted = ").push_bind(false).push(" LIMIT ").push_bind(MAX_INCLUDED as i64);
                for (rid, s) in self.query_resources(&qb).await? {
                    if seen.insert(rid) {
                        out.push((rid, s));
                    }
                }
            }
        }
        Ok(())
    }
}

impl ResourceStore for Me {
    async fn read(&self, resource_type: &str, id: &str) -> Result<StoredResource, StoreError> {
        let Some((version_id, lu, deleted, json)) = self.current_row(resource_type, id).await? else {
            return Err(StoreError::NotFound(resource_type.to_string(), id.to_string()));
        };
        if deleted {
            return Err(StoreError::Gone(resource_type.to_string(), id.to_string()));
        }
        Ok(StoredResource {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version_id,
            last_updated: shared::format_ms(lu),
            deleted,
            json,
        })
    }

    async fn vread(&self, resource_type: &str, id: &str, version_id: i64) -> Result<StoredResource, StoreError> {
        let Some((lu, deleted, json)) = self.version_row(resource_type, id, version_id).await? else {
            return Err(StoreError::NotFound(resource_type.to_string(), id.to_string()));
        };
        Ok(StoredResource {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version_id,
            last_updated: shared::format_ms(lu),
            deleted,
            json,
        })
    }

    async fn create(&self, resource_type: &str, resource: Value) -> Result<StoredResource, StoreError> {
        self.create_body(resource_type, ResourceBody::Json(resource)).await
    }

    async fn update(
        &self,
        resource_type: &str,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
    ) -> Result<(StoredResource, WriteOutcome), StoreError> {
        self.update_body(resource_type, id, ResourceBody::Json(resource), if_match).await
    }

    async fn delete(&self, resource_type: &str, id: &str) -> Result<Option<i64>, StoreError> {
        shared::check_type(resource_type)?;
        match self.run_one(Op::Delete { rtype: resource_type.to_string(), id: id.to_string() }).await? {
            OpResult::Deleted(v) => Ok(v),
            _ => Err(StoreError::Database("unexpected delete result".into())),
        }
    }

    async fn history(
        &self,
        resource_type: Option<&str>,
        id: Option<&str>,
        since: Option<&str>,
        count: usize,
    ) -> Result<Vec<StoredResource>, StoreError> {
        if id.is_some() && resource_type.is_none() {
            return Err(StoreError::Invalid("instance history needs a resource type".into()));
        }
        // The history table holds the versions that are no longer current, `resources` the current ones
        // (migration 0006): newest first from each (each through its own index), then merged.
        let since_ms = since.map(shared::parse_instant).transpose()?;
        let limit = count.min(i64::MAX as usize) as i64;
        let mut qb = QueryBuilder::<Db>::new("SELECT rtype, id, version, last_updated, deleted, json FROM (");
        for (i, (table, key)) in [("resource_history", "hid"), ("resources", "rid")].into_iter().enumerate() {
            if i > 0 {
                qb.push(" UNION ALL ");
            }
            qb.push("SELECT * FROM (SELECT rtype, id, version, last_updated, deleted, json FROM ")
                .push(table)
                .push(" WHERE 1 = 1");
            if let Some(t) = resource_type {
                qb.push(" AND rtype = ").push_bind(t.to_string());
            }
            if let Some(i) = id {
                qb.push(" AND id = ").push_bind(i.to_string());
            }
            if let Some(s) = since_ms {
                qb.push(" AND last_updated >= ").push_bind(s);
            }
            qb.push(" ORDER BY last_updated DESC, ")
                .push(key)
                .push(" DESC LIMIT ")
                .push_bind(limit)
                .push(") ")
                .push(if i == 0 { "h" } else { "c" });
        }
        qb.push(") u ORDER BY last_updated DESC, version DESC LIMIT ").push_bind(limit);
        let rows = qb.build().fetch_all(self.read_pool()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let lu: i64 = r.try_get(3)?;
            out.push(StoredResource {
                resource_type: r.try_get(0)?,
                id: r.try_get(1)?,
                version_id: r.try_get(2)?,
                last_updated: shared::format_ms(lu),
                deleted: r.try_get(4)?,
                json: r.try_get(5)?,
            });
        }
        if out.is_empty() {
            if let (Some(t), Some(i)) = (resource_type, id) {
                let exists =
                    sqlx::query(SQL_EXISTS).bind(t).bind(i).fetch_optional(self.read_pool()).await?.is_some();
                if !exists {
                    return Err(StoreError::NotFound(t.to_string(), i.to_string()));
                }
            }
        }
        Ok(out)
    }

    async fn create_raw(&self, resource_type: &str, body: &str) -> Result<StoredResource, StoreError> {
        self.create_body(resource_type, ResourceBody::Text(body.to_string())).await
    }

    async fn update_raw(
        &self,
        resource_type: &str,
        id: &str,
        body: &str,
        if_match: Option<i64>,
    ) -> Result<(StoredResource, WriteOutcome), StoreError> {
        self.update_body(resource_type, id, ResourceBody::Text(body.to_string()), if_match).await
    }

    async fn search(&self, q: &SearchQuery) -> Result<SearchPage, StoreError> {
        shared::check_type(&q.resource_type)?;
        let count_only = q.summary == Some(SummaryMode::Count);
        let page = if count_only || q.count == 0 { Vec::new() } else { self.search_page(q).await? };
        let want_exact = count_only || matches!(q.total, Some(TotalMode::Accurate) | Some(TotalMode::Estimate));
        let total = if want_exact {
            Some(self.search_count(q).await?)
        } else if q.total == Some(TotalMode::None) {
            None
        } else if q.count > 0 && page.len() < q.count && (q.offset == 0 || !page.is_empty()) {
            Some((q.offset + page.len()) as u64)
        } else {
            None
        };
        let mut seen: HashSet<i64> = page.iter().map(|(rid, _)| *rid).collect();
        let mut included: Vec<(i64, StoredResource)> = Vec::new();
        if !page.is_empty() {
            for inc in &q.includes {
                let before = included.len();
                self.fetch_includes(inc, &page, &mut seen, &mut included).await?;
                if inc.iterate {
                    let mut frontier: Vec<(i64, StoredResource)> = included[before..].to_vec();
                    let mut rounds = 0;
                    while !frontier.is_empty() && rounds < 4 && included.len() < MAX_INCLUDED {
                        let b = included.len();
                        self.fetch_includes(inc, &frontier, &mut seen, &mut included).await?;
                        frontier = included[b..].to_vec();
                        rounds += 1;
                    }
                }
            }
            for inc in &q.revincludes {
                let before = included.len();
                self.fetch_revincludes(inc, &page, &mut seen, &mut included).await?;
                if inc.iterate {
                    let mut frontier: Vec<(i64, StoredResource)> = included[before..].to_vec();
                    let mut rounds = 0;
                    while !frontier.is_empty() && rounds < 4 && included.len() < MAX_INCLUDED {
                        let b = included.len();
                        self.fetch_revincludes(inc, &frontier, &mut seen, &mut included).await?;
                        frontier = included[b..].to_vec();
                        rounds += 1;
                    }
                }
            }
        }
        Ok(SearchPage {
            matches: page.into_iter().map(|(_, s)| s).collect(),
            total,
            included: included.into_iter().map(|(_, s)| s).collect(),
        })
    }

    async fn search_ids(&self, q: &SearchQuery, limit: usize) -> Result<Vec<String>, StoreError> {
        shared::check_type(&q.resource_type)?;
        let mut qb = Sql::new(PLACEHOLDERS, "SELECT r.id FROM resources r");
        push_where(&mut qb, q)?;
        qb.push(" ORDER BY r.rid LIMIT ").push_bind(limit.min(i64::MAX as usize) as i64);
        self.query_ids(&qb).await
    }

    async fn transaction(&self, entries: Vec<TxEntry>) -> Result<Vec<TxResult>, TxError> {
        let mut ops = Vec::with_capacity(entries.len());
        for (i, e) in entries.into_iter().enumerate() {
            let err = |error| TxError { entry: Some(i), error };
            let op = match e {
                TxEntry::Create { resource_type, id, body } => {
                    let id = id.unwrap_or_else(shared::new_id);
                    let prep = shared::prepare(&self.registry, &resource_type, &id, body, false).map_err(err)?;
                    Op::Put { rtype: resource_type, id, prep, if_match: None, mode: PutMode::Create }
                }
                TxEntry::Update { resource_type, id, body, if_match } => {
                    let prep = shared::prepare(&self.registry, &resource_type, &id, body, true).map_err(err)?;
                    Op::Put { rtype: resource_type, id, prep, if_match, mode: PutMode::Upsert }
                }
                TxEntry::Delete { resource_type, id } => {
                    shared::check_type(&resource_type).map_err(err)?;
                    Op::Delete { rtype: resource_type, id }
                }
            };
            ops.push(op);
        }
        let results = self.run_ops(ops).await.map_err(|(entry, error)| TxError { entry, error })?;
        Ok(results
            .into_iter()
            .map(|r| match r {
                OpResult::Written(resource, outcome) => TxResult::Written { resource, outcome },
                OpResult::Deleted(v) => TxResult::Deleted { version_id: v },
                OpResult::Unchanged => TxResult::Deleted { version_id: None },
            })
            .collect())
    }

    async fn import_upsert(
        &self,
        resource_type: &str,
        id: &str,
        resource: Value,
        content_hash: &str,
    ) -> Result<WriteOutcome, StoreError> {
        let mut prep = shared::prepare(&self.registry, resource_type, id, ResourceBody::Json(resource), false)?;
        prep.hash = content_hash.to_string();
        match self
            .run_one(Op::Put {
                rtype: resource_type.to_string(),
                id: id.to_string(),
                prep,
                if_match: None,
                mode: PutMode::IfChanged,
            })
            .await?
        {
            OpResult::Written(_, o) => Ok(o),
            _ => Ok(WriteOutcome::Unchanged),
        }
    }

    async fn import_file_atomic(
        &self,
        path: &str,
        content_sha256: &str,
        writes: Vec<(String, String, Option<Value>)>,
    ) -> Result<ImportSummary, StoreError> {
        let file = ImportFile {
            path: path.to_string(),
            content_sha256: content_sha256.to_string(),
            writes: writes
                .into_iter()
                .map(|(resource_type, id, v)| ImportWrite { resource_type, id, body: v.map(ResourceBody::Json) })
                .collect(),
        };
        self.import_files_batch(vec![file]).await
    }

    async fn import_files_batch(&self, files: Vec<ImportFile>) -> Result<ImportSummary, StoreError> {
        let prepared = crate::store::PreparedImport::prepare(&self.registry, files)?;
        self.apply_import(prepared).await
    }

    async fn ledger_get(&self, path: &str) -> Result<Option<LedgerEntry>, StoreError> {
        let row = sqlx::query(SQL_LEDGER_GET).bind(path).fetch_optional(self.read_pool()).await?;
        let Some(r) = row else { return Ok(None) };
        let status: String = r.try_get(2)?;
        let at: i64 = r.try_get(4)?;
        Ok(Some(LedgerEntry {
            path: r.try_get(0)?,
            content_sha256: r.try_get(1)?,
            status: LedgerStatus::parse(&status),
            error: r.try_get(3)?,
            imported_at: shared::format_ms(at),
        }))
    }

    async fn ledger_put(
        &self,
        path: &str,
        content_sha256: &str,
        status: LedgerStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let mut qb = QueryBuilder::<Db>::new("INSERT INTO import_files (path, content_sha256, status, error, imported_at) VALUES (");
        qb.push_bind(path.to_string())
            .push(", ")
            .push_bind(content_sha256.to_string())
            .push(", ")
            .push_bind(status.as_str())
            .push(", ")
            .push_bind(error.map(str::to_string))
            .push(", ")
            .push_bind(shared::now_ms())
            .push(")")
            .push(LEDGER_UPSERT_TAIL);
        qb.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
impl Me {
    /// Test hook: writes `body` as `rtype/id` with hand-made index rows (independent of the extractor).
    pub(crate) async fn test_put_indexed(
        &self,
        rtype: &str,
        id: &str,
        body: &str,
        rows: IndexRows,
    ) -> Result<StoredResource, StoreError> {
        let mut prep = shared::prepare(&self.registry, rtype, id, ResourceBody::Text(body.to_string()), true)?;
        prep.index = rows;
        match self
            .run_one(Op::Put { rtype: rtype.to_string(), id: id.to_string(), prep, if_match: None, mode: PutMode::Upsert })
            .await?
        {
            OpResult::Written(s, _) => Ok(s),
            _ => Err(StoreError::Database("unexpected".into())),
        }
    }
}

#[cfg(test)]
impl Me {
    /// Test hook: bulk upsert with hand-made index rows in one transaction.
    pub(crate) async fn test_bulk_indexed(&self, items: Vec<(String, String, String, IndexRows)>) -> Result<(), StoreError> {
        let mut ops = Vec::with_capacity(items.len());
        for (rtype, id, body, rows) in items {
            let mut prep = shared::prepare(&self.registry, &rtype, &id, ResourceBody::Text(body), true)?;
            prep.index = rows;
            ops.push(Op::Put { rtype, id, prep, if_match: None, mode: PutMode::Upsert });
        }
        self.run_ops(ops).await.map_err(|(_, e)| e)?;
        Ok(())
    }
}

impl Me {
    /// Writes a [`crate::store::PreparedImport`] (resources + ledger rows) in ONE transaction.
    /// Errors: `Invalid`, `Database`.
    pub(crate) async fn apply_import(&self, prepared: crate::store::PreparedImport) -> Result<ImportSummary, StoreError> {
        let crate::store::PreparedImport { ops, ledger } = prepared;
        let mut tx = self.begin_write().await?;
        let results = apply_ops_with(&mut tx, &self.interned, &ops, false).await.map_err(|(_, e)| e)?;
        let now = shared::now_ms();
        if let Some(pg) = (&mut *tx as &mut dyn std::any::Any).downcast_mut::<sqlx::PgConnection>() {
            super::postgres::unnest::ledger_done(pg, &ledger, now).await?;
        } else {
            self.ledger_done_values(&mut tx, &ledger, now).await?;
        }
        tx.commit().await?;
        Ok(plan::summarize(&results))
    }

    /// Upserts the import ledger rows as done at `now` with multi-row `VALUES` (SQLite; PostgreSQL:
    /// `postgres::unnest::ledger_done`). Errors: `Database`.
    async fn ledger_done_values(&self, tx: &mut Tx, ledger: &[(String, String)], now: i64) -> Result<(), StoreError> {
        for chunk in ledger.chunks(MAX_BINDS / 5) {
            let mut qb =
                QueryBuilder::<Db>::new("INSERT INTO import_files (path, content_sha256, status, error, imported_at) ");
            qb.push_values(chunk, |mut b, (p, h)| {
                b.push_bind(p.clone())
                    .push_bind(h.clone())
                    .push_bind(LedgerStatus::Done.as_str())
                    .push_bind(None::<String>)
                    .push_bind(now);
            });
            qb.push(LEDGER_UPSERT_TAIL);
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Ledger rows of many paths in one query per 1,000 paths (absent paths are missing from the map).
    /// Errors: `Database`.
    pub(crate) async fn ledger_get_many(&self, paths: &[String]) -> Result<HashMap<String, LedgerEntry>, StoreError> {
        let mut out = HashMap::with_capacity(paths.len());
        for chunk in paths.chunks(1000) {
            let mut qb = QueryBuilder::<Db>::new(
                "SELECT path, content_sha256, status, error, imported_at FROM import_files WHERE path IN (",
            );
            let mut sep = qb.separated(", ");
            for p in chunk {
                sep.push_bind(p.clone());
            }
            qb.push(")");
            for r in qb.build().fetch_all(self.read_pool()).await? {
                let status: String = r.try_get(2)?;
                let at: i64 = r.try_get(4)?;
                let e = LedgerEntry {
                    path: r.try_get(0)?,
                    content_sha256: r.try_get(1)?,
                    status: LedgerStatus::parse(&status),
                    error: r.try_get(3)?,
                    imported_at: shared::format_ms(at),
                };
                out.insert(e.path.clone(), e);
            }
        }
        Ok(out)
    }
}

/// Secondary indexes a bulk load drops and rebuilds at its end: `(name, "table (columns)")`, exactly as
/// created by `migrations/*/0001_store.sql` and `0006_store_once.sql` (keep in step with the migrations). Kept during a bulk load:
/// the unique indexes (`resources (rtype, id)`, `resource_history (rtype, id, version)`), which the writes
/// themselves use and which guard against duplicates, and the `(rid, param)` indexes, which clear the
/// index rows of updated resources and are appended to in `rid` order anyway.
const BULK_INDEXES: [(&str, &str); 11] = [
    ("resources_type_lu", "resources (rtype, last_updated)"),
    ("resources_lu", "resources (last_updated)"),
    ("history_type_lu", "resource_history (rtype, last_updated)"),
    ("idx_token_lookup", "idx_token (pid, code, sid, rid)"),
    ("idx_string_lookup", "idx_string (pid, normalized, rid)"),
    ("idx_date_lo", "idx_date (pid, lo, hi, rid)"),
    ("idx_date_hi", "idx_date (pid, hi, rid)"),
    ("idx_reference_lookup", "idx_reference (pid, target_id, target_type, rid)"),
    ("idx_quantity_lookup", "idx_quantity (pid, value, rid)"),
    ("idx_number_lookup", "idx_number (pid, value, rid)"),
    ("idx_uri_lookup", "idx_uri (pid, uri, rid)"),
];

/// Helper threads of SQLite's sorter during the index builds of [`Me::finish_bulk_load`]:
/// `TOBIUME_IMPORT_SORT_THREADS` (0-8) when set, else one per further core (`available_parallelism() - 1`,
/// at most 3; 0 on one core). On a loaded machine (no idle core) the helper threads cost CPU and wall time
/// (bench/results/import-2026-11-21-s7.md); `0` switches them off.
fn bulk_sort_threads() -> usize {
    match std::env::var("TOBIUME_IMPORT_SORT_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) => n.min(8),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1).min(3),
    }
}

impl Me {
    /// Starts or resumes a bulk load: when the store holds no resource yet, or an earlier bulk load did not
    /// finish (a `bulk_load` row exists), records the load and drops the [`BULK_INDEXES`] (searches stay
    /// correct without them, only slower) and returns `true`; otherwise changes nothing and returns `false`.
    /// Call [`Me::finish_bulk_load`] after the last batch. Errors: `Database`.
    pub(crate) async fn begin_bulk_load(&self) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let marked = sqlx::query("SELECT 1 FROM bulk_load").fetch_optional(&mut *tx).await?.is_some();
        let empty = sqlx::query("SELECT 1 FROM resources LIMIT 1").fetch_optional(&mut *tx).await?.is_none();
        if !marked && !empty {
            tx.rollback().await?;
            return Ok(false);
        }
        if !marked {
            sqlx::query("INSERT INTO bulk_load (id, started_at) VALUES (1, $1)")
                .bind(shared::now_ms())
                .execute(&mut *tx)
                .await?;
        }
        for (name, _) in BULK_INDEXES {
            QueryBuilder::<Db>::new(format!("DROP INDEX IF EXISTS {name}")).build().execute(&mut *tx).await?;
        }
        if !use_savepoint() {
            // SQLite: checkpoint the WAL every 64 MiB instead of every 4 MiB — pages rewritten by many
            // batches (index leaves, the history tail) reach the database file once per checkpoint.
            sqlx::query("PRAGMA wal_autocheckpoint = 16384").execute(&mut *tx).await?;
            // …and give the importer's writer a 256 MiB page cache: the hot B-tree pages of a growing
            // store stay in memory (the importer is not the server; its RSS is not the 200 MB budget).
            sqlx::query("PRAGMA cache_size = -262144").execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Ends a bulk load (or repairs an interrupted one): creates the missing [`BULK_INDEXES`] (each one
    /// sorted build) and removes the `bulk_load` row. Idempotent; a no-op when no bulk load is recorded
    /// and all indexes exist. Errors: `Database`.
    pub(crate) async fn finish_bulk_load(&self) -> Result<(), StoreError> {
        if !use_savepoint() {
            // SQLite: the index builds sort through temporary files, not memory — with `temp_store =
            // memory` a build's sorter spill lived on the heap (importer peak RSS 1.37 GB at 20,000 patients).
            self.set_temp_store("file").await?;
            // The page-cache size is also the size of each in-memory run (PMA) of the external sorter that
            // CREATE INDEX uses. The 256 MiB of the bulk load made every run a large, cache-unfriendly
            // in-memory sort; 16 MiB runs (more of them, merged 16 at a time) cut the index build by ~25 %
            // in CPU and wall time at 10,000 patients (bench/results/import-index-build-2026-11-21.md) and
            // the importer's RSS during the build from ~480 MB to ~40 MB of page cache.
            let mut tx = self.begin_write().await?;
            sqlx::query("PRAGMA cache_size = -16384").execute(&mut *tx).await?;
            // SQLite's multi-threaded sorter: helper threads sort and merge the runs of each CREATE INDEX
            // while the main thread scans the table (the conversion workers are done by now, so the other
            // cores are free). Reset to 0 at the end: the server's writer never sorts in the background.
            QueryBuilder::<Db>::new(format!("PRAGMA threads = {}", bulk_sort_threads())).build().execute(&mut *tx).await?;
            tx.commit().await?;
        }
        for (name, def) in BULK_INDEXES {
            let mut tx = self.begin_write().await?;
            QueryBuilder::<Db>::new(format!("CREATE INDEX IF NOT EXISTS {name} ON {def}"))
                .build()
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM bulk_load").execute(&mut *tx).await?;
        if !use_savepoint() {
            sqlx::query("PRAGMA wal_autocheckpoint = 1000").execute(&mut *tx).await?;
            sqlx::query("PRAGMA cache_size = -8192").execute(&mut *tx).await?;
            sqlx::query("PRAGMA threads = 0").execute(&mut *tx).await?;
        }
        tx.commit().await?;
        if !use_savepoint() {
            self.set_temp_store("memory").await?;
        }
        Ok(())
    }

    /// `true` when a bulk load is recorded as unfinished (its indexes may be missing). Errors: `Database`.
    pub(crate) async fn bulk_load_pending(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM bulk_load").fetch_optional(self.read_pool()).await?.is_some())
    }
}
