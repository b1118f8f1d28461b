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
use crate::store::shared::{self, IndexRows, Op, OpResult, PutMode, Prepared};
use crate::store::{
    rawjson, ImportFile, ImportSummary, ImportWrite, LedgerEntry, LedgerStatus, ResourceBody, ResourceStore,
    SearchPage, StoreError, StoredResource, TxEntry, TxError, TxResult, WriteOutcome,
};
use serde_json::Value;
use sqlx::{QueryBuilder, Row};
use std::collections::{HashMap, HashSet};

type Tx = sqlx::Transaction<'static, Db>;

/// Max bind parameters per multi-row statement (SQLite allows 32766, PostgreSQL 65535).
const MAX_BINDS: usize = 3000;
/// Max resources returned by `_include`/`_revinclude` per search (protects the server).
const MAX_INCLUDED: usize = 5000;

const SQL_INSERT_RESOURCE: &str = "INSERT INTO resources (rtype, id, version, last_updated, deleted, content_hash, json) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (rtype, id) DO NOTHING RETURNING rid";
const SQL_UPDATE_RESOURCE: &str =
    "UPDATE resources SET version = $1, last_updated = $2, deleted = $3, content_hash = $4, json = $5 WHERE rid = $6";
const SQL_READ: &str = "SELECT version, last_updated, deleted, json FROM resources WHERE rtype = $1 AND id = $2";
const SQL_VREAD: &str =
    "SELECT last_updated, deleted, json FROM resource_history WHERE rtype = $1 AND id = $2 AND version = $3";
const SQL_EXISTS: &str = "SELECT 1 FROM resources WHERE rtype = $1 AND id = $2";
const SQL_LEDGER_GET: &str =
    "SELECT path, content_sha256, status, error, imported_at FROM import_files WHERE path = $1";
const LEDGER_UPSERT_TAIL: &str = " ON CONFLICT (path) DO UPDATE SET content_sha256 = excluded.content_sha256, \
     status = excluded.status, error = excluded.error, imported_at = excluded.imported_at";
const RES_COLS: &str = "r.rid, r.rtype, r.id, r.version, r.last_updated, r.deleted, r.json";

const INDEX_TABLES: [&str; 7] =
    ["idx_token", "idx_string", "idx_date", "idx_reference", "idx_quantity", "idx_number", "idx_uri"];

struct Current {
    rid: i64,
    version: i64,
    deleted: bool,
    last_updated: i64,
    content_hash: Option<String>,
}

fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

async fn select_current(tx: &mut Tx, rtype: &str, id: &str) -> Result<Option<Current>, StoreError> {
    let row = sqlx::query(SQL_SELECT_FOR_WRITE).bind(rtype).bind(id).fetch_optional(&mut **tx).await?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some(Current {
            rid: r.try_get(0)?,
            version: r.try_get(1)?,
            deleted: r.try_get(2)?,
            last_updated: r.try_get(3)?,
            content_hash: r.try_get(4)?,
        })),
    }
}

/// Prefetches the current rows of every distinct `(rtype, id)` written by a multi-op batch with one
/// statement per chunk (PostgreSQL: row-locked like [`select_current`]). Keys absent from the database map
/// to `None`.
async fn prefetch_current(
    tx: &mut Tx,
    ops: &[Op],
    cache: &mut HashMap<(String, String), Option<Current>>,
) -> Result<(), StoreError> {
    let mut keys: Vec<(&str, &str)> = Vec::with_capacity(ops.len());
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(ops.len());
    for op in ops {
        let k = match op {
            Op::Put { rtype, id, .. } | Op::Delete { rtype, id } => (rtype.as_str(), id.as_str()),
        };
        if seen.insert(k) {
            keys.push(k);
        }
    }
    for chunk in keys.chunks(MAX_BINDS / 2) {
        let mut qb = QueryBuilder::<Db>::new(
            "SELECT r.rid, r.version, r.deleted, r.last_updated, r.content_hash, r.rtype, r.id FROM (",
        );
        qb.push_values(chunk, |mut b, (t, i)| {
            b.push_bind(t.to_string()).push_bind(i.to_string());
        });
        qb.push(") k JOIN resources r ON r.rtype = k.column1 AND r.id = k.column2").push(SQL_LOCK_SUFFIX);
        for (t, i) in chunk {
            cache.insert((t.to_string(), i.to_string()), None);
        }
        for r in qb.build().fetch_all(&mut **tx).await? {
            let key: (String, String) = (r.try_get(5)?, r.try_get(6)?);
            cache.insert(
                key,
                Some(Current {
                    rid: r.try_get(0)?,
                    version: r.try_get(1)?,
                    deleted: r.try_get(2)?,
                    last_updated: r.try_get(3)?,
                    content_hash: r.try_get(4)?,
                }),
            );
        }
    }
    Ok(())
}

/// Row → StoredResource for `RES_COLS` order (rid first, skipped).
fn stored_from_row(r: &<Db as sqlx::Database>::Row) -> Result<(i64, StoredResource), StoreError> {
    let rid: i64 = r.try_get(0)?;
    let lu: i64 = r.try_get(4)?;
    Ok((
        rid,
        StoredResource {
            resource_type: r.try_get(1)?,
            id: r.try_get(2)?,
            version_id: r.try_get(3)?,
            last_updated: shared::format_ms(lu),
            deleted: r.try_get(5)?,
            json: r.try_get(6)?,
        },
    ))
}

/// Applies `ops` in order inside `tx` (the caller commits). Index maintenance and history rows are
/// batched into multi-row statements at the end. Errors carry the index of the failing op.
async fn apply_ops(tx: &mut Tx, ops: Vec<Op>) -> Result<Vec<OpResult>, (Option<usize>, StoreError)> {
    let now = shared::now_ms();
    let mut results = Vec::with_capacity(ops.len());
    // (rtype, id, version, last_updated, deleted, json)
    let mut hist: Vec<(String, String, i64, i64, bool, String)> = Vec::new();
    let mut clear: Vec<i64> = Vec::new();
    let mut clear_set: HashSet<i64> = HashSet::new();
    let mut new_rids: HashSet<i64> = HashSet::new();
    let mut index: HashMap<i64, (String, IndexRows)> = HashMap::new();
    // Current rows known before each op; an entry is consumed by its first op, later ops on the same
    // key (and retries) re-read inside the transaction.
    let mut cache: HashMap<(String, String), Option<Current>> = HashMap::new();
    if ops.len() > 1 {
        prefetch_current(tx, &ops, &mut cache).await.map_err(|e| (None, e))?;
    }

    for (i, op) in ops.into_iter().enumerate() {
        let fail = |e: StoreError| (Some(i), e);
        match op {
            Op::Put { rtype, id, prep, if_match, mode } => {
                let Prepared { text, hash, index: rows } = prep;
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let cur = match cache.remove(&(rtype.clone(), id.clone())) {
                        Some(c) => c,
                        None => select_current(tx, &rtype, &id).await.map_err(fail)?,
                    };
                    if let Some(expected) = if_match {
                        let current = cur.as_ref().map(|c| c.version).unwrap_or(0);
                        if current != expected {
                            return Err(fail(StoreError::VersionConflict { expected, current }));
                        }
                    }
                    match cur {
                        Some(c) => {
                            if mode == PutMode::Create {
                                return Err(fail(StoreError::Invalid(format!("resource {rtype}/{id} already exists"))));
                            }
                            if mode == PutMode::IfChanged && !c.deleted && c.content_hash.as_deref() == Some(hash.as_str())
                            {
                                results.push(OpResult::Unchanged);
                                break;
                            }
                            let version = c.version + 1;
                            let lu = now.max(c.last_updated);
                            let lu_s = shared::format_ms(lu);
                            let json = rawjson::stamp_text(&text, &rawjson::Stamp { id: &id, version_id: version, last_updated: &lu_s })
                                .map_err(fail)?;
                            sqlx::query(SQL_UPDATE_RESOURCE)
                                .bind(version)
                                .bind(lu)
                                .bind(false)
                                .bind(&hash)
                                .bind(&json)
                                .bind(c.rid)
                                .execute(&mut **tx)
                                .await
                                .map_err(|e| fail(db_err(e)))?;
                            if !new_rids.contains(&c.rid) && clear_set.insert(c.rid) {
                                clear.push(c.rid);
                            }
                            index.insert(c.rid, (rtype.clone(), rows));
                            hist.push((rtype.clone(), id.clone(), version, lu, false, json.clone()));
                            let outcome = if c.deleted { WriteOutcome::Created } else { WriteOutcome::Updated };
                            results.push(OpResult::Written(
                                StoredResource { resource_type: rtype, id, version_id: version, last_updated: lu_s, deleted: false, json },
                                outcome,
                            ));
                            break;
                        }
                        None => {
                            let lu_s = shared::format_ms(now);
                            let json = rawjson::stamp_text(&text, &rawjson::Stamp { id: &id, version_id: 1, last_updated: &lu_s })
                                .map_err(fail)?;
                            let rid: Option<i64> = sqlx::query_scalar(SQL_INSERT_RESOURCE)
                                .bind(&rtype)
                                .bind(&id)
                                .bind(1i64)
                                .bind(now)
                                .bind(false)
                                .bind(&hash)
                                .bind(&json)
                                .fetch_optional(&mut **tx)
                                .await
                                .map_err(|e| fail(db_err(e)))?;
                            let Some(rid) = rid else {
                                // Created concurrently by another connection/process: re-read under lock.
                                if attempts >= 3 {
                                    return Err(fail(StoreError::Database("concurrent create did not settle".into())));
                                }
                                continue;
                            };
                            new_rids.insert(rid);
                            index.insert(rid, (rtype.clone(), rows));
                            hist.push((rtype.clone(), id.clone(), 1, now, false, json.clone()));
                            results.push(OpResult::Written(
                                StoredResource { resource_type: rtype, id, version_id: 1, last_updated: lu_s, deleted: false, json },
                                WriteOutcome::Created,
                            ));
                            break;
                        }
                    }
                }
            }
            Op::Delete { rtype, id } => {
                let cur = match cache.remove(&(rtype.clone(), id.clone())) {
                    Some(c) => c,
                    None => select_current(tx, &rtype, &id).await.map_err(fail)?,
                };
                match cur {
                    Some(c) if !c.deleted => {
                        let version = c.version + 1;
                        let lu = now.max(c.last_updated);
                        sqlx::query(SQL_UPDATE_RESOURCE)
                            .bind(version)
                            .bind(lu)
                            .bind(true)
                            .bind(None::<String>)
                            .bind("")
                            .bind(c.rid)
                            .execute(&mut **tx)
                            .await
                            .map_err(|e| fail(db_err(e)))?;
                        index.remove(&c.rid);
                        if !new_rids.contains(&c.rid) && clear_set.insert(c.rid) {
                            clear.push(c.rid);
                        }
                        hist.push((rtype, id, version, lu, true, String::new()));
                        results.push(OpResult::Deleted(Some(version)));
                    }
                    _ => results.push(OpResult::Deleted(None)),
                }
            }
        }
    }

    let bulk = |e: StoreError| (None, e);
    // 1. clear index rows of resources that existed before this batch
    for chunk in clear.chunks(MAX_BINDS) {
        for table in INDEX_TABLES {
            let mut qb = QueryBuilder::<Db>::new(format!("DELETE FROM {table} WHERE rid IN ("));
            let mut sep = qb.separated(", ");
            for rid in chunk {
                sep.push_bind(*rid);
            }
            qb.push(")");
            qb.build().execute(&mut **tx).await.map_err(|e| bulk(db_err(e)))?;
        }
    }
    // 2. history rows
    for chunk in hist.chunks(MAX_BINDS / 6) {
        let mut qb =
            QueryBuilder::<Db>::new("INSERT INTO resource_history (rtype, id, version, last_updated, deleted, json) ");
        qb.push_values(chunk, |mut b, h| {
            b.push_bind(h.0.clone())
                .push_bind(h.1.clone())
                .push_bind(h.2)
                .push_bind(h.3)
                .push_bind(h.4)
                .push_bind(h.5.clone());
        });
        qb.build().execute(&mut **tx).await.map_err(|e| bulk(db_err(e)))?;
    }
    // 3. index rows
    write_index(tx, index).await.map_err(bulk)?;
    Ok(results)
}

async fn write_index(tx: &mut Tx, index: HashMap<i64, (String, IndexRows)>) -> Result<(), StoreError> {
    let mut token = Vec::new();
    let mut string = Vec::new();
    let mut date = Vec::new();
    let mut reference = Vec::new();
    let mut quantity = Vec::new();
    let mut number = Vec::new();
    let mut uri = Vec::new();
    for (rid, (rtype, rows)) in index {
        token.extend(rows.token.into_iter().map(|r| (rid, rtype.clone(), r)));
        string.extend(rows.string.into_iter().map(|r| (rid, rtype.clone(), r)));
        date.extend(rows.date.into_iter().map(|r| (rid, rtype.clone(), r)));
        reference.extend(rows.reference.into_iter().map(|r| (rid, rtype.clone(), r)));
        quantity.extend(rows.quantity.into_iter().map(|r| (rid, rtype.clone(), r)));
        number.extend(rows.number.into_iter().map(|r| (rid, rtype.clone(), r)));
        uri.extend(rows.uri.into_iter().map(|r| (rid, rtype.clone(), r)));
    }
    for chunk in token.chunks(MAX_BINDS / 6) {
        let mut qb = QueryBuilder::<Db>::new("INSERT INTO idx_token (rid, rtype, param, system, code, display) ");
        qb.push_values(chunk, |mut b, (rid, t, r)| {
            b.push_bind(*rid).push_bind(t.clone()).push_bind(r.0.clone()).push_bind(r.1.clone()).push_bind(r.2.clone()).push_bind(r.3.clone());
        });
        qb.build().execute(&mut **tx).await?;
    }
    for chunk in string.chunks(MAX_BINDS / 5) {
        let mut qb = QueryBuilder::<Db>::new("INSERT INTO idx_string (rid, rtype, param, exact, normalized) ");
        qb.push_values(chunk, |mut b, (rid, t, r)| {
            b.push_bind(*rid).push_bind(t.clone()).push_bind(r.0.clone()).push_bind(r.1.clone()).push_bind(r.2.clone());
        });
        qb.build().execute(&mut **tx).await?;
    }
    for chunk in date.chunks(MAX_BINDS / 5) {
        let mut qb = QueryBuilder::<Db>::new("INSERT INTO idx_date (rid, rtype, param, lo, hi) ");
        qb.push_values(chunk, |mut b, (rid, t, r)| {
            b.push_bind(*rid).push_bind(t.clone()).push_bind(r.0.clone()).push_bind(r.1).push_bind(r.2);
        });
        qb.build().execute(&mut **tx).await?;
    }
    for chunk in reference.chunks(MAX_BINDS / 6) {
        let mut qb = QueryBuilder::<Db>::new("INSERT INTO idx_reference (rid, rtype, param, target_type, target_id, url) ");
        qb.push_values(chunk, |mut b, (rid, t, r)| {
            b.push_bind(*rid).push_bind(t.clone()).push_bind(r.0.clone()).push_bind(r.1.clone()).push_bind(r.2.clone()).push_bind(r.3.clone());
        });
        qb.build().execute(&mut **tx).await?;
    }
    for chunk in quantity.chunks(MAX_BINDS / 9) {
        let mut qb =
            QueryBuilder::<Db>::new("INSERT INTO idx_quantity (rid, rtype, param, value, lo, hi, system, code, unit) ");
        qb.push_values(chunk, |mut b, (rid, t, r)| {
            b.push_bind(*rid)
                .push_bind(t.clone())
                .push_bind(r.0.clone())
                .push_bind(r.1)
                .push_bind(r.2)
                .push_bind(r.3)
                .push_bind(r.4.clone())
                .push_bind(r.5.clone())
                .push_bind(r.6.clone());
        });
        qb.build().execute(&mut **tx).await?;
    }
    for chunk in number.chunks(MAX_BINDS / 6) {
        let mut qb = QueryBuilder::<Db>::new("INSERT INTO idx_number (rid, rtype, param, value, lo, hi) ");
        qb.push_values(chunk, |mut b, (rid, t, r)| {
            b.push_bind(*rid).push_bind(t.clone()).push_bind(r.0.clone()).push_bind(r.1).push_bind(r.2).push_bind(r.3);
        });
        qb.build().execute(&mut **tx).await?;
    }
    for chunk in uri.chunks(MAX_BINDS / 4) {
        let mut qb = QueryBuilder::<Db>::new("INSERT INTO idx_uri (rid, rtype, param, uri) ");
        qb.push_values(chunk, |mut b, (rid, t, r)| {
            b.push_bind(*rid).push_bind(t.clone()).push_bind(r.0.clone()).push_bind(r.1.clone());
        });
        qb.build().execute(&mut **tx).await?;
    }
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
fn push_date_cond(qb: &mut QueryBuilder<Db>, lo: &str, hi: &str, prefix: Prefix, qlo: i64, qhi: i64) {
    let contained = |qb: &mut QueryBuilder<Db>| {
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
fn push_number_cond(qb: &mut QueryBuilder<Db>, col: &str, prefix: Prefix, value: f64, lo: f64, hi: f64) {
    let in_range = |qb: &mut QueryBuilder<Db>| {
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
fn push_value_cond(qb: &mut QueryBuilder<Db>, p: &SearchParam, v: &SearchValue) -> Result<(), StoreError> {
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
                    qb.push("x.system IS NULL");
                    any = true;
                }
                TokenSystem::Is(s) => {
                    if any {
                        qb.push(" AND ");
                    }
                    qb.push("x.system = ").push_bind(s.clone());
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

fn push_or_values(qb: &mut QueryBuilder<Db>, p: &SearchParam) -> Result<(), StoreError> {
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
fn push_resource_column_cond(qb: &mut QueryBuilder<Db>, alias: &'static str, p: &SearchParam) -> Result<(), StoreError> {
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
    qb: &mut QueryBuilder<Db>,
    alias: &'static str,
    rtype: &str,
    p: &SearchParam,
) -> Result<(), StoreError> {
    push_param_cond_as(qb, alias, rtype, p, true)
}

fn push_param_cond_as(
    qb: &mut QueryBuilder<Db>,
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
            .push(".rid IN (SELECT ref.rid FROM idx_reference ref JOIN resources t ON t.rtype = ref.target_type AND t.id = ref.target_id WHERE ref.rtype = ")
            .push_bind(rtype.to_string())
            .push(" AND ref.param = ")
            .push_bind(p.code.clone())
            .push(" AND ref.target_type = ")
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
            .push(".rid AND x.param = ")
            .push_bind(p.code.clone())
            .push(")");
        return Ok(());
    }
    if p.modifier == Some(Modifier::Not) {
        qb.push("NOT EXISTS (SELECT 1 FROM ")
            .push(table)
            .push(" x WHERE x.rid = ")
            .push(alias)
            .push(".rid AND x.param = ")
            .push_bind(p.code.clone())
            .push(" AND ");
        push_or_values(qb, p)?;
        qb.push(")");
        return Ok(());
    }
    if !driver {
        qb.push("EXISTS (SELECT 1 FROM ")
            .push(table)
            .push(" x WHERE x.rid = ")
            .push(alias)
            .push(".rid AND x.param = ")
            .push_bind(p.code.clone())
            .push(" AND ");
        push_or_values(qb, p)?;
        qb.push(")");
        return Ok(());
    }
    qb.push(alias)
        .push(".rid IN (SELECT x.rid FROM ")
        .push(table)
        .push(" x WHERE x.rtype = ")
        .push_bind(rtype.to_string())
        .push(" AND x.param = ")
        .push_bind(p.code.clone())
        .push(" AND ");
    push_or_values(qb, p)?;
    qb.push(")");
    Ok(())
}

/// ` WHERE …` for the searched type.
fn push_where(qb: &mut QueryBuilder<Db>, q: &SearchQuery) -> Result<(), StoreError> {
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

fn push_order(qb: &mut QueryBuilder<Db>, q: &SearchQuery) -> Result<(), StoreError> {
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
            .push(" x WHERE x.rid = r.rid AND x.param = ")
            .push_bind(k.code.clone())
            .push(")")
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
        let res = apply_ops(&mut tx, ops).await?;
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
        let mut qb = QueryBuilder::<Db>::new(format!("SELECT {RES_COLS} FROM resources r"));
        push_where(&mut qb, q)?;
        push_order(&mut qb, q)?;
        qb.push(" LIMIT ").push_bind(q.count as i64).push(" OFFSET ").push_bind(q.offset as i64);
        let rows = qb.build().fetch_all(self.read_pool()).await?;
        rows.iter().map(stored_from_row).collect()
    }

    async fn search_count(&self, q: &SearchQuery) -> Result<u64, StoreError> {
        let mut qb = QueryBuilder::<Db>::new("SELECT COUNT(*) FROM resources r");
        push_where(&mut qb, q)?;
        let n: i64 = qb.build_query_scalar().fetch_one(self.read_pool()).await?;
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
            let mut qb = QueryBuilder::<Db>::new(format!(
                "SELECT {RES_COLS} FROM idx_reference x JOIN resources r ON r.rtype = x.target_type AND r.id = x.target_id WHERE x.rid IN ("
            ));
            let mut sep = qb.separated(", ");
            for rid in chunk {
                sep.push_bind(*rid);
            }
            qb.push(")");
            if inc.param != "*" {
                qb.push(" AND x.param = ").push_bind(inc.param.clone());
            }
            if let Some(tt) = &inc.target_type {
                qb.push(" AND x.target_type = ").push_bind(tt.clone());
            }
            qb.push(" AND r.deleted = ").push_bind(false).push(" LIMIT ").push_bind(MAX_INCLUDED as i64);
            for row in qb.build().fetch_all(self.read_pool()).await? {
                let (rid, s) = stored_from_row(&row)?;
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
                let mut qb = QueryBuilder::<Db>::new(format!(
                    "SELECT {RES_COLS} FROM idx_reference x JOIN resources r ON r.rid = x.rid WHERE x.rtype = "
                ));
                qb.push_bind(inc.source_type.clone());
                if inc.param != "*" {
                    qb.push(" AND x.param = ").push_bind(inc.param.clone());
                }
                qb.push(" AND x.target_type = ").push_bind(ttype.to_string()).push(" AND x.target_id IN (");
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(id.to_string());
                }
                qb.push(") AND r.deleted = ").push_bind(false).push(" LIMIT ").push_bind(MAX_INCLUDED as i64);
                for row in qb.build().fetch_all(self.read_pool()).await? {
                    let (rid, s) = stored_from_row(&row)?;
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
        let row = sqlx::query(SQL_READ).bind(resource_type).bind(id).fetch_optional(self.read_pool()).await?;
        let Some(r) = row else {
            return Err(StoreError::NotFound(resource_type.to_string(), id.to_string()));
        };
        let deleted: bool = r.try_get(2)?;
        if deleted {
            return Err(StoreError::Gone(resource_type.to_string(), id.to_string()));
        }
        let lu: i64 = r.try_get(1)?;
        Ok(StoredResource {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version_id: r.try_get(0)?,
            last_updated: shared::format_ms(lu),
            deleted,
            json: r.try_get(3)?,
        })
    }

    async fn vread(&self, resource_type: &str, id: &str, version_id: i64) -> Result<StoredResource, StoreError> {
        let row = sqlx::query(SQL_VREAD)
            .bind(resource_type)
            .bind(id)
            .bind(version_id)
            .fetch_optional(self.read_pool())
            .await?;
        let Some(r) = row else {
            return Err(StoreError::NotFound(resource_type.to_string(), id.to_string()));
        };
        let lu: i64 = r.try_get(0)?;
        Ok(StoredResource {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version_id,
            last_updated: shared::format_ms(lu),
            deleted: r.try_get(1)?,
            json: r.try_get(2)?,
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
        let mut qb = QueryBuilder::<Db>::new(
            "SELECT rtype, id, version, last_updated, deleted, json FROM resource_history WHERE 1 = 1",
        );
        if let Some(t) = resource_type {
            qb.push(" AND rtype = ").push_bind(t.to_string());
        }
        if let Some(i) = id {
            qb.push(" AND id = ").push_bind(i.to_string());
        }
        if let Some(s) = since {
            qb.push(" AND last_updated >= ").push_bind(shared::parse_instant(s)?);
        }
        qb.push(" ORDER BY last_updated DESC, hid DESC LIMIT ").push_bind(count.min(i64::MAX as usize) as i64);
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
        let mut qb = QueryBuilder::<Db>::new("SELECT r.id FROM resources r");
        push_where(&mut qb, q)?;
        qb.push(" ORDER BY r.rid LIMIT ").push_bind(limit.min(i64::MAX as usize) as i64);
        let ids: Vec<String> = qb.build_query_scalar().fetch_all(self.read_pool()).await?;
        Ok(ids)
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
        let results = apply_ops(&mut tx, ops).await.map_err(|(_, e)| e)?;
        let now = shared::now_ms();
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
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let mut s = ImportSummary::default();
        for r in results {
            match r {
                OpResult::Written(_, WriteOutcome::Created) => s.created += 1,
                OpResult::Written(_, WriteOutcome::Updated) => s.updated += 1,
                OpResult::Written(_, WriteOutcome::Unchanged) | OpResult::Unchanged => s.unchanged += 1,
                OpResult::Deleted(Some(_)) => s.deleted += 1,
                OpResult::Deleted(None) => s.unchanged += 1,
            }
        }
        Ok(s)
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
