// Security additions of the store (audit chain, security generation, suspensions, consent facts),
// compiled once per dialect: `include!`d by `sqlite.rs` and `postgres.rs` after `backend_impl.rs`
// (uses its `Tx`, `apply_ops`, `MAX_BINDS`). Types and docs: `store/audit.rs`.

use crate::store::audit::{
    key_column, AppendOutcome, AuditFilter, AuditHead, AuditRecord, AuditRow, AuditedTxError, ConsentFacts,
};

/// The head row, locked `FOR UPDATE` on PostgreSQL (until commit); SQLite's `BEGIN IMMEDIATE` already
/// serialises writers.
fn sql_lock_head() -> &'static str {
    if <Db as sqlx::Database>::NAME == "PostgreSQL" {
        "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT seq, hash FROM audit_head WHERE id = 1"
    }
}

/// The head row (locked as in [`sql_lock_head`]) and the security generation in one statement (one
/// round trip per appended batch).
fn sql_lock_head_and_generation() -> &'static str {
    if <Db as sqlx::Database>::NAME == "PostgreSQL" {
        "SELECT h.seq, h.hash, s.generation FROM audit_head h CROSS JOIN security_state s \
         WHERE h.id = 1 AND s.id = 1 FOR UPDATE OF h"
    } else {
        "SELECT h.seq, h.hash, s.generation FROM audit_head h CROSS JOIN security_state s WHERE h.id = 1 AND s.id = 1"
    }
}

const AUDIT_COLS: &str =
    "seq, recorded, type_code, subtype, action, outcome, patients, agents, prev_hash, entry_hash, json";

fn audit_row(r: &<Db as sqlx::Database>::Row) -> Result<AuditRow, StoreError> {
    Ok(AuditRow {
        seq: r.try_get(0)?,
        recorded_ms: r.try_get(1)?,
        type_code: r.try_get(2)?,
        subtype: r.try_get(3)?,
        action: r.try_get(4)?,
        outcome: r.try_get(5)?,
        patients: r.try_get(6)?,
        agents: r.try_get(7)?,
        prev_hash: r.try_get(8)?,
        entry_hash: r.try_get(9)?,
        json: r.try_get(10)?,
    })
}

/// Locks the head (PostgreSQL) and returns it.
async fn lock_head(tx: &mut Tx) -> Result<(i64, String), StoreError> {
    let row = sqlx::query(sql_lock_head())
        .fetch_one(&mut **tx)
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Appends `records` after the locked head `(seq, hash)`; returns their seqs and updates the head.
async fn append_locked(
    tx: &mut Tx,
    head: (i64, String),
    records: &[&AuditRecord],
) -> Result<Vec<i64>, StoreError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let (mut seq, mut hash) = head;
    // (seq, record, prev, entry, json)
    let mut rows: Vec<(i64, &AuditRecord, String, String, String)> = Vec::with_capacity(records.len());
    for r in records {
        seq += 1;
        let json = r.finish(seq);
        let entry = crate::store::audit::chain_hash(&hash, &json);
        rows.push((seq, r, std::mem::replace(&mut hash, entry.clone()), entry, json));
    }
    for chunk in rows.chunks(MAX_BINDS / 11) {
        let mut qb = QueryBuilder::<Db>::new(format!("INSERT INTO audit_event ({AUDIT_COLS}) "));
        qb.push_values(chunk, |mut b, (seq, r, prev, entry, json)| {
            b.push_bind(*seq)
                .push_bind(r.recorded_ms)
                .push_bind(r.type_code.clone())
                .push_bind(r.subtype.clone())
                .push_bind(r.action.clone())
                .push_bind(r.outcome.clone())
                .push_bind(key_column(&r.patients))
                .push_bind(key_column(&r.agents))
                .push_bind(prev.clone())
                .push_bind(entry.clone())
                .push_bind(json.clone());
        });
        qb.build().execute(&mut **tx).await?;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(&hash)
        .execute(&mut **tx)
        .await?;
    Ok(rows.iter().map(|r| r.0).collect())
}

fn tx_entries_to_ops(registry: &crate::search::Registry, entries: Vec<TxEntry>) -> Result<Vec<Op>, TxError> {
    let mut ops = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let err = |error| TxError { entry: Some(i), error };
        let op = match e {
            TxEntry::Create { resource_type, id, body } => {
                let id = id.unwrap_or_else(shared::new_id);
                let prep = shared::prepare(registry, &resource_type, &id, body, false).map_err(err)?;
                Op::Put { rtype: resource_type, id, prep, if_match: None, mode: PutMode::Create }
            }
            TxEntry::Update { resource_type, id, body, if_match } => {
                let prep = shared::prepare(registry, &resource_type, &id, body, true).map_err(err)?;
                Op::Put { rtype: resource_type, id, prep, if_match, mode: PutMode::Upsert }
            }
            TxEntry::Delete { resource_type, id } => {
                shared::check_type(&resource_type).map_err(err)?;
                Op::Delete { rtype: resource_type, id }
            }
        };
        ops.push(op);
    }
    Ok(ops)
}

impl Me {
    pub(crate) async fn security_generation(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT generation FROM security_state WHERE id = 1").fetch_one(self.read_pool()).await?)
    }

    // Used by PostgreSQL; SQLite appends on its rusqlite appender thread (`sqlite_append.rs`).
    #[allow(dead_code)]
    pub(crate) async fn audit_append(
        &self,
        records: &[AuditRecord],
        expected: &[Option<i64>],
    ) -> Result<AppendOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        // Head first, then the generation: a consent write holds the head lock until it commits (its own
        // audit record), so the generation read here includes it.
        let row = sqlx::query(sql_lock_head_and_generation()).fetch_one(&mut *tx).await?;
        let head: (i64, String) = (row.try_get(0)?, row.try_get(1)?);
        let generation: i64 = row.try_get(2)?;
        let mut take = Vec::with_capacity(records.len());
        let mut pos = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let ok = expected.get(i).copied().flatten().is_none_or(|g| g == generation);
            pos.push(ok.then_some(take.len()));
            if ok {
                take.push(r);
            }
        }
        let seqs = append_locked(&mut tx, head, &take).await?;
        tx.commit().await?;
        Ok(AppendOutcome { generation, seqs: pos.into_iter().map(|p| p.map(|i| seqs[i])).collect() })
    }

    pub(crate) async fn transaction_audited<F>(
        &self,
        entries: Vec<TxEntry>,
        facility: Option<String>,
        audit: F,
    ) -> Result<Vec<TxResult>, AuditedTxError>
    where
        F: FnOnce(&[TxResult]) -> Vec<AuditRecord> + Send,
    {
        let ops = tx_entries_to_ops(&self.registry, entries)?;
        let begin_err = |error: StoreError| AuditedTxError::Tx(TxError { entry: None, error });
        let mut tx = self.begin_write().await.map_err(begin_err)?;
        // Lock order head → generation row (the trigger of apply_ops), as every audited writer takes them.
        let head = lock_head(&mut tx).await.map_err(begin_err)?;
        if let Some(f) = facility {
            let suspended = sqlx::query("SELECT 1 FROM facility_suspension WHERE org_id = $1")
                .bind(f)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| begin_err(e.into()))?
                .is_some();
            if suspended {
                let _ = tx.rollback().await;
                return Err(AuditedTxError::Suspended);
            }
        }
        let results = apply_ops(&mut tx, &self.interned, ops).await.map_err(|(entry, error)| TxError { entry, error })?;
        let results: Vec<TxResult> = results
            .into_iter()
            .map(|r| match r {
                OpResult::Written(resource, outcome) => TxResult::Written { resource, outcome },
                OpResult::Deleted(v) => TxResult::Deleted { version_id: v },
                OpResult::Unchanged => TxResult::Deleted { version_id: None },
            })
            .collect();
        let records = audit(&results);
        let refs: Vec<&AuditRecord> = records.iter().collect();
        append_locked(&mut tx, head, &refs).await.map_err(begin_err)?;
        tx.commit().await.map_err(|e| begin_err(e.into()))?;
        Ok(results)
    }

    pub(crate) async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(self.read_pool()).await?;
        Ok(AuditHead { seq: row.try_get(0)?, hash: row.try_get(1)? })
    }

    pub(crate) async fn audit_rows(&self, after: i64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, recorded, type_code, subtype, action, outcome, patients, agents, prev_hash, entry_hash, json \
             FROM audit_event WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
            .bind(after)
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_all(self.read_pool())
            .await?;
        rows.iter().map(audit_row).collect()
    }

    pub(crate) async fn audit_search(&self, f: &AuditFilter) -> Result<(Vec<AuditRow>, u64), StoreError> {
        fn push_filter(qb: &mut QueryBuilder<Db>, f: &AuditFilter) {
            qb.push(" WHERE 1 = 1");
            if let Some(s) = f.seq {
                qb.push(" AND seq = ").push_bind(s);
            }
            for (col, keys) in [("patients", &f.patients), ("agents", &f.agents)] {
                if keys.is_empty() {
                    continue;
                }
                qb.push(" AND (");
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        qb.push(" OR ");
                    }
                    qb.push(col)
                        .push(" LIKE ")
                        .push_bind(format!("% {} %", shared::like_escape(&k.replace(' ', "_"))))
                        .push(" ESCAPE '\\'");
                }
                qb.push(")");
            }
            for (col, vals) in
                [("subtype", &f.subtypes), ("type_code", &f.types), ("action", &f.actions), ("outcome", &f.outcomes)]
            {
                if vals.is_empty() {
                    continue;
                }
                qb.push(" AND ").push(col).push(" IN (");
                let mut sep = qb.separated(", ");
                for v in vals {
                    sep.push_bind(v.clone());
                }
                qb.push(")");
            }
            for lo in &f.recorded_ge {
                qb.push(" AND recorded >= ").push_bind(*lo);
            }
            for hi in &f.recorded_le {
                qb.push(" AND recorded <= ").push_bind(*hi);
            }
        }
        let mut qb = QueryBuilder::<Db>::new(format!("SELECT {AUDIT_COLS} FROM audit_event"));
        push_filter(&mut qb, f);
        qb.push(if f.ascending { " ORDER BY seq ASC" } else { " ORDER BY seq DESC" });
        qb.push(" LIMIT ").push_bind(f.limit.min(i64::MAX as usize) as i64);
        qb.push(" OFFSET ").push_bind(f.offset.min(i64::MAX as usize) as i64);
        let rows = qb.build().fetch_all(self.read_pool()).await?;
        let rows = rows.iter().map(audit_row).collect::<Result<Vec<_>, _>>()?;
        let mut qc = QueryBuilder::<Db>::new("SELECT COUNT(*) FROM audit_event");
        push_filter(&mut qc, f);
        let n: i64 = qc.build_query_scalar().fetch_one(self.read_pool()).await?;
        Ok((rows, n.max(0) as u64))
    }

    pub(crate) async fn audit_purge<F>(&self, cutoff_ms: i64, checkpoint: F) -> Result<u64, StoreError>
    where
        F: FnOnce(i64, &str, u64) -> AuditRecord + Send,
    {
        let mut tx = self.begin_write().await?;
        let head = lock_head(&mut tx).await?;
        // The purged prefix ends before the first row that is still within retention (rows are in seq
        // order and `recorded` never goes far backwards, but the prefix rule keeps the rest contiguous).
        let keep_from: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM audit_event WHERE recorded >= $1")
            .bind(cutoff_ms)
            .fetch_one(&mut *tx)
            .await?;
        let through = match keep_from {
            Some(k) => k - 1,
            None => head.0,
        };
        let first: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM audit_event").fetch_one(&mut *tx).await?;
        let Some(first) = first.filter(|f| *f <= through) else {
            tx.rollback().await?;
            return Ok(0);
        };
        let hash: String = sqlx::query_scalar("SELECT entry_hash FROM audit_event WHERE seq = $1")
            .bind(through)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("UPDATE audit_head SET purging = $1 WHERE id = 1").bind(true).execute(&mut *tx).await?;
        let n = sqlx::query("DELETE FROM audit_event WHERE seq <= $1").bind(through).execute(&mut *tx).await?;
        sqlx::query("UPDATE audit_head SET purging = $1 WHERE id = 1").bind(false).execute(&mut *tx).await?;
        let deleted = n.rows_affected();
        debug_assert!(deleted as i64 <= through - first + 1);
        let rec = checkpoint(through, &hash, deleted);
        append_locked(&mut tx, head, &[&rec]).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    pub(crate) async fn set_suspension(
        &self,
        org_id: &str,
        suspend: bool,
        reason: Option<&str>,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let head = lock_head(&mut tx).await?;
        let changed = if suspend {
            sqlx::query(
                "INSERT INTO facility_suspension (org_id, suspended_at, reason) VALUES ($1, $2, $3) ON CONFLICT (org_id) DO NOTHING",
            )
            .bind(org_id)
            .bind(shared::now_ms())
            .bind(reason)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0
        } else {
            sqlx::query("DELETE FROM facility_suspension WHERE org_id = $1")
                .bind(org_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0
        };
        append_locked(&mut tx, head, &[&audit]).await?;
        tx.commit().await?;
        Ok(changed)
    }

    pub(crate) async fn suspended_facilities(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT org_id FROM facility_suspension ORDER BY org_id")
            .fetch_all(self.read_pool())
            .await?)
    }

    pub(crate) async fn consent_facts(&self, patients: &[String]) -> Result<ConsentFacts, StoreError> {
        let mut out = ConsentFacts::default();
        for chunk in patients.chunks(500) {
            let mut qb = QueryBuilder::<Db>::new(
                "SELECT r.rtype, r.id, r.json FROM resources r WHERE r.rtype = 'Patient' AND r.deleted = ",
            );
            qb.push_bind(false).push(" AND r.id IN (");
            let mut sep = qb.separated(", ");
            for p in chunk {
                sep.push_bind(p.clone());
            }
            qb.push(")");
            for row in qb.build().fetch_all(self.read_pool()).await? {
                out.resources.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
            }
            let mut qb = QueryBuilder::<Db>::new(
                "SELECT DISTINCT r.rtype, r.id, r.json FROM idx_reference x JOIN resources r ON r.rid = x.rid \
                 WHERE x.target_type = 'Patient' AND x.pid IN (SELECT pid FROM search_param \
                 WHERE rtype IN ('Consent', 'RelatedPerson', 'CareTeam') AND param IN ('patient', 'subject')) \
                 AND r.deleted = ",
            );
            qb.push_bind(false).push(" AND x.target_id IN (");
            let mut sep = qb.separated(", ");
            for p in chunk {
                sep.push_bind(p.clone());
            }
            qb.push(")");
            for row in qb.build().fetch_all(self.read_pool()).await? {
                out.resources.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
            }
        }
        Ok(out)
    }
}
