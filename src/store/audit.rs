//! Store side of the security layer: the tamper-evident audit chain (tables `audit_event`, `audit_head`),
//! the security generation (`security_state`), facility suspensions and the batched lookup of the facts a
//! consent decision needs. The SQL lives in `security_impl.rs` (compiled once per dialect, like
//! `backend_impl.rs`); this file holds the backend-independent types, the chain primitives and the
//! [`Store`] dispatch.
//!
//! # Chain (federation-security.md §4.4)
//!
//! Each `audit_event` row has `seq` (1, 2, 3, … without gaps), `prev_hash` (the previous row's
//! `entry_hash`; 64 zeros before the first row) and `entry_hash = sha256_hex(prev_hash ‖ json)`, where
//! `json` is the record's text with `"id"` = the decimal `seq` put first: since format 2 a compact entry
//! (`{"id":"<seq>","v":2,…}`, ~200–400 bytes, written directly in its canonical form by
//! `audit::event::record`, from which the BALP AuditEvent is rendered on read); rows written before (and
//! retention checkpoints) hold format 1, the full AuditEvent in [`canonical_json`] form. No migration:
//! the format is recognised per row, and both verify in one chain. Appends lock the
//! one-row `audit_head` (PostgreSQL `SELECT … FOR UPDATE`; SQLite: the `BEGIN IMMEDIATE` write
//! transaction), so the chain stays linear across processes sharing one database.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{AuditIntent, Store, StoreError, TxEntry, TxError, TxResult};

/// `prev_hash` of the first record of a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One AuditEvent to append, before the chain position is known.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// The hashed text without `id` (the chain position is put in front when appended, see
    /// [`AuditRecord::finish`]): the format-2 compact entry (`audit::event::record`) or a format-1
    /// AuditEvent in [`canonical_json`] form (retention checkpoints). Built by the caller, outside the
    /// appender's transaction.
    pub json: String,
    /// `AuditEvent.recorded`, epoch ms.
    pub recorded_ms: i64,
    /// `AuditEvent.type.code` (e.g. `rest`, DICOM `110113`).
    pub type_code: String,
    /// First `AuditEvent.subtype.code` (e.g. `read`, `search-type`, DICOM `110127`).
    pub subtype: Option<String>,
    /// `AuditEvent.action` (`C` `R` `U` `D` `E`).
    pub action: String,
    /// `AuditEvent.outcome` (`0` success, `4` minor failure, `8` serious failure, `12` major failure).
    pub outcome: String,
    /// Logical ids of the patients the event is about (`entity.what` = `Patient/…`).
    pub patients: Vec<String>,
    /// Agent keys for `AuditEvent?agent=` (`Organization/<id>`, token subject, client id).
    pub agents: Vec<String>,
}

/// One stored audit row.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Chain position (1-based).
    pub seq: i64,
    /// `recorded`, epoch ms.
    pub recorded_ms: i64,
    /// Indexed columns as stored (re-derived from `json` by verification).
    pub type_code: String,
    /// Indexed subtype.
    pub subtype: Option<String>,
    /// Indexed action.
    pub action: String,
    /// Indexed outcome.
    pub outcome: String,
    /// Space-delimited patient ids (`" a b "`).
    pub patients: String,
    /// Space-delimited agent keys.
    pub agents: String,
    /// Hash of the previous row.
    pub prev_hash: String,
    /// sha256_hex(prev_hash ‖ json).
    pub entry_hash: String,
    /// The hashed text: a format-2 compact entry (`{"id":"<seq>","v":2,…}`, see `audit::event::record`)
    /// or, for rows written before it and for retention checkpoints, the format-1 canonical AuditEvent
    /// JSON. [`AuditRow::event_json`] gives the AuditEvent for both.
    pub json: String,
}

impl AuditRow {
    /// The IHE BALP AuditEvent JSON of this row (`id` = seq): a format-1 row as stored, a format-2
    /// compact entry rendered (`audit::event::render`).
    pub fn event_json(&self) -> String {
        crate::audit::event::render(&self.json)
    }
}

/// The chain head: the last `seq` and its `entry_hash` (`0` and [`GENESIS_HASH`] when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// Last appended seq.
    pub seq: i64,
    /// Its entry hash.
    pub hash: String,
}

/// Result of [`Store::audit_append`].
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    /// The security generation read inside the append transaction.
    pub generation: i64,
    /// Per record: its seq, or `None` when it was not written because its decision generation was stale.
    pub seqs: Vec<Option<i64>>,
}

/// Filter of [`Store::audit_search`] (all conditions AND-ed).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// `seq` equals (`_id`).
    pub seq: Option<i64>,
    /// One of these patient ids is in `patients`.
    pub patients: Vec<String>,
    /// One of these keys is in `agents`.
    pub agents: Vec<String>,
    /// `subtype` is one of these.
    pub subtypes: Vec<String>,
    /// `type_code` is one of these.
    pub types: Vec<String>,
    /// `action` is one of these.
    pub actions: Vec<String>,
    /// `outcome` is one of these.
    pub outcomes: Vec<String>,
    /// `recorded >= lo` for each entry.
    pub recorded_ge: Vec<i64>,
    /// `recorded <= hi` for each entry.
    pub recorded_le: Vec<i64>,
    /// Page size.
    pub limit: usize,
    /// Rows to skip.
    pub offset: usize,
    /// Oldest first instead of newest first.
    pub ascending: bool,
}

/// Error of [`Store::transaction_audited`].
#[derive(Debug, thiserror::Error)]
pub enum AuditedTxError {
    /// The write failed; nothing (data or audit) was written.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// The writing facility is suspended; nothing was written.
    #[error("the facility is suspended")]
    Suspended,
}

/// Facts about patients that consent decisions need ([`Store::consent_facts`]): the Patient rows with
/// the asked ids and every live Consent / RelatedPerson / CareTeam referring to them via `patient` or
/// `subject`, as `(resource type, id, JSON text)`.
#[derive(Debug, Clone, Default)]
pub struct ConsentFacts {
    /// `(type, id, json)` rows.
    pub resources: Vec<(String, String, String)>,
}

/// Canonical JSON (federation-security.md §4.4): object members sorted by key (Rust `str` order =
/// Unicode code point order), no insignificant whitespace, strings escaped as `serde_json` does, numbers
/// as their stored text.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::with_capacity(512);
    canon(v, &mut out);
    out
}

fn canon(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut members: Vec<(&String, &Value)> = m.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                canon(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canon(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap_or_default()),
    }
}

/// `entry_hash = sha256_hex(prev_hash ‖ json)` (lower-case hex, 64 characters).
pub fn chain_hash(prev_hash: &str, json: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(json.as_bytes());
    hex::encode(h.finalize())
}

/// Space-delimited search key column (`" a b "`; `" "` when empty). Keys never contain spaces (ids,
/// references, token subjects with spaces replaced by `_`).
pub fn key_column(keys: &[String]) -> String {
    let mut s = String::from(" ");
    for k in keys {
        s.push_str(&k.replace(' ', "_"));
        s.push(' ');
    }
    s
}

/// Epoch ms → FHIR `instant` (`YYYY-MM-DDTHH:MM:SS.mmmZ`).
pub fn format_instant_ms(ms: i64) -> String {
    super::shared::format_ms(ms)
}

impl AuditRecord {
    /// The stored JSON of this record at chain position `seq`: `{"id":"<seq>",` + the canonical members
    /// (a cheap concatenation: the canonical form is computed once, by the caller).
    pub fn finish(&self, seq: i64) -> String {
        let rest = self.json.strip_prefix('{').unwrap_or(&self.json);
        let sep = if rest.starts_with('}') { "" } else { "," };
        format!("{{\"id\":\"{seq}\"{sep}{rest}")
    }
}

macro_rules! sec_delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            Store::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// The current security generation (`security_state.generation`). Errors: `Database`.
    pub async fn security_generation(&self) -> Result<i64, StoreError> {
        sec_delegate!(self, s => s.security_generation().await)
    }

    /// Appends `records` to the audit chain in ONE transaction. `expected[i]` is the security generation
    /// record `i`'s access decision was made under (`None`: no consent decision involved); a record whose
    /// generation differs from the database's is not written (its seq is `None`) so that its request can
    /// decide again. Errors: `Database` (nothing written; the caller must not serve the responses).
    pub async fn audit_append(
        &self,
        records: &[AuditRecord],
        expected: &[Option<i64>],
    ) -> Result<AppendOutcome, StoreError> {
        match self {
            Store::Sqlite(s) => s.audit_append_owned(records.to_vec(), expected.to_vec()).await,
            Store::Postgres(s) => s.audit_append(records, expected).await,
        }
    }

    /// [`Store::audit_append`] taking the records by value. On SQLite the records go straight to the
    /// appender thread, which group-commits everything queued (see `store::sqlite_append`); returns
    /// `true` in [`Store::groups_audit_appends`]. Errors: `Database`.
    pub async fn audit_append_owned(
        &self,
        records: Vec<AuditRecord>,
        expected: Vec<Option<i64>>,
    ) -> Result<AppendOutcome, StoreError> {
        match self {
            Store::Sqlite(s) => s.audit_append_owned(records, expected).await,
            Store::Postgres(s) => s.audit_append(&records, &expected).await,
        }
    }

    /// Registers a request that will append to the trail, until the returned guard is dropped: lets
    /// SQLite's appender close a group commit as soon as every registered request's record is in,
    /// instead of sleeping out its commit delay (`store::sqlite_append`, "Closing the batch before the
    /// delay ends"). Only timing depends on it. PostgreSQL: a guard that does nothing.
    pub fn audit_intent(&self) -> AuditIntent {
        match self {
            Store::Sqlite(s) => s.audit_intent(),
            Store::Postgres(_) => AuditIntent::none(),
        }
    }

    /// Whether concurrent [`Store::audit_append_owned`] calls are group-committed by the store itself
    /// (SQLite's appender thread); otherwise the caller batches (`audit::Auditor`'s task, PostgreSQL).
    pub fn groups_audit_appends(&self) -> bool {
        matches!(self, Store::Sqlite(_))
    }

    /// A FHIR transaction ([`super::ResourceStore::transaction`]; single creates, updates and deletes are
    /// one-entry transactions) whose audit records — built by `audit` from the results — are appended to
    /// the chain in the SAME database transaction. With `facility`, the transaction first checks (inside
    /// it) that the facility is not suspended ([`AuditedTxError::Suspended`], nothing written).
    /// Errors: [`AuditedTxError`].
    pub async fn transaction_audited<F>(
        &self,
        entries: Vec<TxEntry>,
        facility: Option<String>,
        audit: F,
    ) -> Result<Vec<TxResult>, AuditedTxError>
    where
        F: FnOnce(&[TxResult]) -> Vec<AuditRecord> + Send,
    {
        sec_delegate!(self, s => s.transaction_audited(entries, facility, audit).await)
    }

    /// The chain head. Errors: `Database`.
    pub async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        sec_delegate!(self, s => s.audit_head().await)
    }

    /// Up to `limit` rows with `seq > after`, by seq (for verification). Errors: `Database`.
    pub async fn audit_rows(&self, after: i64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        sec_delegate!(self, s => s.audit_rows(after, limit).await)
    }

    /// Rows matching `filter`, newest first (or oldest first), plus the total count of matches.
    /// Errors: `Database`.
    pub async fn audit_search(&self, filter: &AuditFilter) -> Result<(Vec<AuditRow>, u64), StoreError> {
        sec_delegate!(self, s => s.audit_search(filter).await)
    }

    /// Retention purge: deletes every row recorded before `cutoff_ms` that precedes the first row
    /// recorded at or after it, and appends — in the same transaction — the checkpoint record built by
    /// `checkpoint(purged_through_seq, entry_hash_of_that_row, purged_count)`, so the remaining chain
    /// still verifies. Returns the number of rows deleted (0: nothing to purge, no checkpoint written).
    /// Errors: `Database`.
    pub async fn audit_purge<F>(&self, cutoff_ms: i64, checkpoint: F) -> Result<u64, StoreError>
    where
        F: FnOnce(i64, &str, u64) -> AuditRecord + Send,
    {
        sec_delegate!(self, s => s.audit_purge(cutoff_ms, checkpoint).await)
    }

    /// Suspends (`suspend = true`, with `reason`) or resumes the facility `org_id`, appending `audit` in
    /// the same transaction; bumps the security generation. Returns whether the state changed.
    /// Errors: `Database`.
    pub async fn set_suspension(
        &self,
        org_id: &str,
        suspend: bool,
        reason: Option<&str>,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        sec_delegate!(self, s => s.set_suspension(org_id, suspend, reason, audit).await)
    }

    /// Ids of the suspended facilities. Errors: `Database`.
    pub async fn suspended_facilities(&self) -> Result<Vec<String>, StoreError> {
        sec_delegate!(self, s => s.suspended_facilities().await)
    }

    /// The consent facts of `patients` (see [`ConsentFacts`]), in two statements per 500 patients.
    /// Errors: `Database`.
    pub async fn consent_facts(&self, patients: &[String]) -> Result<ConsentFacts, StoreError> {
        sec_delegate!(self, s => s.consent_facts(patients).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys_recursively_and_is_compact() {
        let v = json!({"b": 1, "a": {"z": [true, null, "x y"], "c": "日本"}});
        assert_eq!(canonical_json(&v), r#"{"a":{"c":"日本","z":[true,null,"x y"]},"b":1}"#);
    }

    #[test]
    fn chain_hash_covers_prev_and_text() {
        let a = chain_hash(GENESIS_HASH, "{}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, chain_hash(GENESIS_HASH, "{ }"));
        assert_ne!(a, chain_hash(&a, "{}"));
        // sha256("0"*64 + "{}") — independent of this code: `printf '%064d{}' 0 | sha256sum`
        assert_eq!(a, "5508d2b710e64bc470079e1b211d9c58e21011e59d0559e422345dc19d659a75");
    }

    #[test]
    fn finish_puts_the_id_first() {
        let mut r = AuditRecord {
            json: canonical_json(&json!({"b": 1, "a": "x"})),
            recorded_ms: 0,
            type_code: "rest".into(),
            subtype: None,
            action: "R".into(),
            outcome: "0".into(),
            patients: vec![],
            agents: vec![],
        };
        assert_eq!(r.finish(12), r#"{"id":"12","a":"x","b":1}"#);
        r.json = "{}".into();
        assert_eq!(r.finish(1), r#"{"id":"1"}"#);
    }

    #[test]
    fn key_column_is_space_delimited() {
        assert_eq!(key_column(&["a".into(), "Organization/b c".into()]), " a Organization/b_c ");
        assert_eq!(key_column(&[]), " ");
    }
}
