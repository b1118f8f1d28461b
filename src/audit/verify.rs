//! `tobiume-gateway audit verify`: checks the hash chain of the audit trail (federation-security.md
//! §4.4) and names the first broken record.
//!
//! Checked, in chain order: consecutive `seq`; `prev_hash` = the previous record's `entry_hash` (64 zeros
//! for seq 1); `entry_hash = sha256(prev_hash ‖ json)`; the JSON's `id` = the seq; the indexed columns
//! (`recorded`, type, subtype, action, outcome, patients, agents) = what the record says — a format-2
//! compact entry (`"v":2`, see `event::record`) or a format-1 full AuditEvent (rows written before the
//! compact entry, and retention checkpoints); both formats verify in one chain; the head row =
//! the last record. A chain whose first records were removed by the retention purge starts after a gap
//! that a later checkpoint record (DICOM 110101, details `purgedThroughSeq` / `purgedThroughHash`)
//! vouches for. So changing, deleting or reordering any row is found; rewriting the whole chain is not
//! (anchor the head hash externally for that).

use serde_json::Value;

use super::event::{decode, derive_index, is_compact, DETAIL_PURGED_HASH, DETAIL_PURGED_THROUGH, TYPE_AUDIT_LOG_USED};
use crate::store::audit::{chain_hash, key_column, AuditRow, GENESIS_HASH};
use crate::store::{Store, StoreError};

/// The first broken record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// Its chain position (= `AuditEvent.id`).
    pub seq: i64,
    /// What is wrong.
    pub reason: String,
}

/// Result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// First and last seq present (`None` when empty).
    pub range: Option<(i64, i64)>,
    /// The first broken record, `None` when the chain verifies.
    pub broken: Option<Broken>,
}

fn broken(seq: i64, reason: impl Into<String>) -> Option<Broken> {
    Some(Broken { seq, reason: reason.into() })
}

fn check_row(r: &AuditRow, prev: &str) -> Option<Broken> {
    if r.prev_hash != prev {
        return broken(r.seq, "prev_hash does not match the previous record (record removed, inserted or reordered)");
    }
    if chain_hash(&r.prev_hash, &r.json) != r.entry_hash {
        return broken(r.seq, "content changed: entry_hash does not match prev_hash ‖ json");
    }
    let (id, index) = if is_compact(&r.json) {
        // Format 2: the compact entry; its index columns are re-derived from what it was built from.
        match decode(&r.json) {
            Ok(d) => (Some(d.id.clone()), Some(d.index())),
            Err(e) => return broken(r.seq, e),
        }
    } else {
        // Format 1: the full canonical AuditEvent (rows written before format 2, retention checkpoints).
        let Ok(v) = serde_json::from_str::<Value>(&r.json) else {
            return broken(r.seq, "record JSON unreadable");
        };
        (v.get("id").and_then(Value::as_str).map(str::to_string), derive_index(&v))
    };
    if id.as_deref() != Some(r.seq.to_string().as_str()) {
        return broken(r.seq, "record id differs from its chain position (reordered)");
    }
    let Some((recorded, t, st, action, outcome, patients, agents)) = index else {
        return broken(r.seq, "record lacks recorded/type/action/outcome");
    };
    if recorded != r.recorded_ms
        || t != r.type_code
        || st != r.subtype
        || action != r.action
        || outcome != r.outcome
        || key_column(&patients) != r.patients
        || key_column(&agents) != r.agents
    {
        return broken(r.seq, "indexed columns differ from the hashed record");
    }
    None
}

/// The (purged-through seq, hash) a checkpoint record vouches for.
fn checkpoint(r: &AuditRow) -> Option<(i64, String)> {
    if r.type_code != TYPE_AUDIT_LOG_USED {
        return None;
    }
    let v: Value = serde_json::from_str(&r.json).ok()?;
    let details = v.pointer("/entity/0/detail")?.as_array()?;
    let get = |t: &str| {
        details
            .iter()
            .find(|d| d.get("type").and_then(Value::as_str) == Some(t))
            .and_then(|d| d.get("valueString"))
            .and_then(Value::as_str)
    };
    Some((get(DETAIL_PURGED_THROUGH)?.parse().ok()?, get(DETAIL_PURGED_HASH)?.to_string()))
}

/// Verifies the whole chain in `store`, reading 5,000 rows at a time. Errors: `Database` (then nothing
/// is known about the chain).
pub async fn verify(store: &Store) -> Result<VerifyReport, StoreError> {
    let head = store.audit_head().await?;
    let mut records = 0u64;
    let mut first: Option<AuditRow> = None;
    let mut prev_seq: Option<i64> = None;
    let mut prev_hash = String::new();
    let mut checkpoints: Vec<(i64, String)> = Vec::new();
    let mut after = 0;
    let mut found: Option<Broken> = None;
    'outer: loop {
        let rows = store.audit_rows(after, 5000).await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            after = r.seq;
            records += 1;
            match prev_seq {
                None => {
                    // The first record: genesis, or a purged prefix checked below.
                    if r.seq == 1 && r.prev_hash != GENESIS_HASH {
                        found = broken(1, "first record does not start from the genesis hash");
                        break 'outer;
                    }
                    prev_hash = r.prev_hash.clone();
                    first = Some(r.clone());
                }
                Some(p) if r.seq != p + 1 => {
                    found = broken(p + 1, format!("record missing (next present is {})", r.seq));
                    break 'outer;
                }
                _ => {}
            }
            if let Some(b) = check_row(&r, &prev_hash) {
                found = Some(b);
                break 'outer;
            }
            if let Some(c) = checkpoint(&r) {
                checkpoints.push(c);
            }
            prev_hash = r.entry_hash.clone();
            prev_seq = Some(r.seq);
        }
    }
    if found.is_none() {
        if let Some(f) = &first {
            if f.seq > 1 && !checkpoints.iter().any(|(through, hash)| *through == f.seq - 1 && *hash == f.prev_hash) {
                found = broken(f.seq - 1, format!("records 1..{} missing without a retention checkpoint", f.seq - 1));
            }
        }
    }
    if found.is_none() {
        let last = prev_seq.unwrap_or(0);
        if head.seq > last {
            found = broken(last + 1, format!("records {}..{} missing (the head says {})", last + 1, head.seq, head.seq));
        } else if head.seq < last {
            found = broken(head.seq + 1, "records beyond the chain head (appended outside the chain)");
        } else if last > 0 && head.hash != prev_hash {
            found = broken(last, "the chain head's hash differs from the last record");
        }
    }
    Ok(VerifyReport { records, range: first.map(|f| (f.seq, prev_seq.unwrap_or(f.seq))), broken: found })
}
