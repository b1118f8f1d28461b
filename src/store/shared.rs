//! Backend-independent parts of the store: time formatting, id rules, write preparation (parse, validate,
//! index extraction — done *outside* the write lock) and the typed index rows both backends persist.

use super::{ResourceBody, StoreError};
use crate::search::{IndexEntry, IndexValue, Registry};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The registry used by [`super::Store::connect`]: official R4 parameters plus the gateway's own.
pub(crate) fn default_registry() -> Registry {
    Registry::standard()
}

/// Now as epoch milliseconds (UTC).
pub(crate) fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Epoch ms → `YYYY-MM-DDTHH:MM:SS.mmmZ` (FHIR `instant`).
pub(crate) fn format_ms(ms: i64) -> String {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// Parses an RFC 3339 instant (`_since`, FHIR R4 §3.1.0.9) to epoch ms. A bare date (`2024-01-02`) is
/// accepted as its UTC midnight. Errors: `Invalid`.
pub(crate) fn parse_instant(s: &str) -> Result<i64, StoreError> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(dt) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok((dt.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &fmt) {
        return Ok(d.midnight().assume_utc().unix_timestamp() * 1000);
    }
    Err(StoreError::Invalid("_since must be an instant (RFC 3339)".into()))
}

/// FHIR R4 id rule: `[A-Za-z0-9\-\.]{1,64}`.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// FHIR resource type names: an ASCII letter followed by letters/digits.
pub(crate) fn valid_type(t: &str) -> bool {
    let mut b = t.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_uppercase()) && b.all(|c| c.is_ascii_alphanumeric()) && t.len() <= 64
}

pub(crate) fn check_type(t: &str) -> Result<(), StoreError> {
    if valid_type(t) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("invalid resource type '{}'", t.chars().take(64).collect::<String>())))
    }
}

pub(crate) fn check_id(id: &str) -> Result<(), StoreError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(StoreError::Invalid("invalid resource id (FHIR id: [A-Za-z0-9-.]{1,64})".into()))
    }
}

/// sha256 hex.
pub(crate) fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Search index rows of one resource, split by table.
#[derive(Debug, Default, Clone)]
pub(crate) struct IndexRows {
    /// (param, system, code, display)
    pub token: Vec<(String, Option<String>, String, Option<String>)>,
    /// (param, exact, normalized)
    pub string: Vec<(String, String, String)>,
    /// (param, lo, hi)
    pub date: Vec<(String, i64, i64)>,
    /// (param, target_type, target_id, url)
    pub reference: Vec<(String, Option<String>, String, String)>,
    /// (param, value, lo, hi, system, code, unit)
    #[allow(clippy::type_complexity)]
    pub quantity: Vec<(String, f64, f64, f64, Option<String>, Option<String>, Option<String>)>,
    /// (param, value, lo, hi)
    pub number: Vec<(String, f64, f64, f64)>,
    /// (param, uri)
    pub uri: Vec<(String, String)>,
}

impl IndexRows {
    pub(crate) fn from_entries(entries: Vec<IndexEntry>) -> IndexRows {
        let mut r = IndexRows::default();
        for e in entries {
            // `_id` and `_lastUpdated` are answered from the `resources` table.
            if e.param == "_id" || e.param == "_lastUpdated" {
                continue;
            }
            match e.value {
                IndexValue::Token { system, code, display } => r.token.push((e.param, system, code, display)),
                IndexValue::String { exact, normalized } => r.string.push((e.param, exact, normalized)),
                IndexValue::Date { lo_ms, hi_ms } => r.date.push((e.param, lo_ms, hi_ms)),
                IndexValue::Reference { target_type, target_id, url } => {
                    r.reference.push((e.param, target_type, target_id, url))
                }
                IndexValue::Quantity { value, lo, hi, system, code, unit } => {
                    if value.is_finite() {
                        r.quantity.push((e.param, value, lo, hi, system, code, unit))
                    }
                }
                IndexValue::Number { value, lo, hi } => {
                    if value.is_finite() {
                        r.number.push((e.param, value, lo, hi))
                    }
                }
                IndexValue::Uri(u) => r.uri.push((e.param, u)),
            }
        }
        r
    }
}

/// Committed ids of the interned search-index keys (migration 0006): `search_param.pid` per
/// (resource type, parameter code) and `token_system.sid` per code system URI. Ids never change meaning
/// once committed, so entries are never invalidated; only ids read back as committed are cached (an id
/// interned by a transaction that later rolls back could be reused for another key).
#[derive(Debug, Default)]
pub(crate) struct Interned {
    params: std::sync::RwLock<ParamIds>,
    systems: std::sync::RwLock<std::collections::HashMap<String, i64>>,
}

/// resource type → parameter code → `pid` (nested so lookups borrow `&str`).
pub(crate) type ParamIds = std::collections::HashMap<String, std::collections::HashMap<String, i64>>;

impl Interned {
    pub(crate) fn param(&self, rtype: &str, param: &str) -> Option<i64> {
        let m = self.params.read().unwrap_or_else(|p| p.into_inner());
        m.get(rtype).and_then(|t| t.get(param)).copied()
    }
    pub(crate) fn system(&self, system: &str) -> Option<i64> {
        self.systems.read().unwrap_or_else(|p| p.into_inner()).get(system).copied()
    }
    pub(crate) fn put_param(&self, rtype: String, param: String, pid: i64) {
        self.params.write().unwrap_or_else(|p| p.into_inner()).entry(rtype).or_default().insert(param, pid);
    }
    pub(crate) fn put_system(&self, system: String, sid: i64) {
        self.systems.write().unwrap_or_else(|p| p.into_inner()).insert(system, sid);
    }
}

/// The ids one write batch uses: (resource type, parameter) → `pid`, system → `sid`.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    pub params: ParamIds,
    pub systems: std::collections::HashMap<String, i64>,
}

impl Ids {
    /// The `pid` of `(rtype, param)`; `-1` (matches nothing) if it was not resolved.
    pub(crate) fn pid(&self, rtype: &str, param: &str) -> i64 {
        self.params.get(rtype).and_then(|t| t.get(param)).copied().unwrap_or(-1)
    }
    pub(crate) fn sid(&self, system: Option<&str>) -> Option<i64> {
        system.map(|s| self.systems.get(s).copied().unwrap_or(-1))
    }
}

/// A write prepared outside the database transaction.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// Body text as received (not yet stamped).
    pub text: String,
    /// sha256 hex of `text` (or the caller's content hash for import upserts).
    pub hash: String,
    /// Index rows extracted from the body.
    pub index: IndexRows,
}

/// Parses/validates `body` for `resource_type/id` and extracts its index rows.
/// `check_body_id`: a body `id` that differs from `id` is `Invalid` (update); otherwise it is replaced
/// (create). Errors: `Invalid`.
pub(crate) fn prepare(
    registry: &Registry,
    resource_type: &str,
    id: &str,
    body: ResourceBody,
    check_body_id: bool,
) -> Result<Prepared, StoreError> {
    check_type(resource_type)?;
    check_id(id)?;
    let (text, mut value) = match body {
        ResourceBody::Text(t) => {
            let v: Value =
                serde_json::from_str(&t).map_err(|e| StoreError::Invalid(format!("malformed JSON: {e}")))?;
            (t, v)
        }
        ResourceBody::Json(v) => {
            let t = serde_json::to_string(&v).map_err(|e| StoreError::Invalid(format!("unserialisable JSON: {e}")))?;
            (t, v)
        }
    };
    let obj = value
        .as_object_mut()
        .ok_or_else(|| StoreError::Invalid("resource is not a JSON object".into()))?;
    match obj.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == resource_type => {}
        Some(_) => {
            return Err(StoreError::Invalid(format!(
                "resourceType of the body does not match the endpoint type '{resource_type}'"
            )))
        }
        None => return Err(StoreError::Invalid("resourceType is missing".into())),
    }
    if check_body_id {
        match obj.get("id") {
            None => {}
            Some(Value::String(b)) if b == id => {}
            Some(_) => {
                return Err(StoreError::Invalid("resource id in the body does not match the id in the URL".into()))
            }
        }
    }
    if let Some(m) = obj.get("meta") {
        if !m.is_object() {
            return Err(StoreError::Invalid("meta must be a JSON object".into()));
        }
    }
    obj.insert("id".into(), Value::String(id.to_string()));
    let hash = sha256_hex(&text);
    let index = IndexRows::from_entries(crate::search::index::extract(registry, resource_type, &value));
    Ok(Prepared { text, hash, index })
}

/// What to do when the target exists.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PutMode {
    /// Create with a new id: the id must not exist.
    Create,
    /// Update / update-as-create.
    Upsert,
    /// Import: write only if the stored content hash differs.
    IfChanged,
}

/// One write of a batch applied in one transaction.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // short-lived, built once per write
pub(crate) enum Op {
    Put { rtype: String, id: String, prep: Prepared, if_match: Option<i64>, mode: PutMode },
    Delete { rtype: String, id: String },
}

/// The interning keys the search-index rows of `ops` use, each once, in order of first use:
/// (resource type, search parameter code) pairs (`search_param`) and token systems (`token_system`,
/// migration 0006). Writers intern the missing ones in this order, so the sqlx path and the SQLite bulk
/// writer assign the same ids to the same ops.
pub(crate) fn index_keys(ops: &[Op]) -> (Vec<(&str, &str)>, Vec<&str>) {
    let mut params: Vec<(&str, &str)> = Vec::new();
    let mut systems: Vec<&str> = Vec::new();
    let mut seen_p: foldhash::HashSet<(&str, &str)> = Default::default();
    let mut seen_s: foldhash::HashSet<&str> = Default::default();
    for op in ops {
        let Op::Put { rtype, prep, .. } = op else { continue };
        let r = &prep.index;
        let codes = r.token.iter().map(|x| x.0.as_str())
            .chain(r.string.iter().map(|x| x.0.as_str()))
            .chain(r.date.iter().map(|x| x.0.as_str()))
            .chain(r.reference.iter().map(|x| x.0.as_str()))
            .chain(r.quantity.iter().map(|x| x.0.as_str()))
            .chain(r.number.iter().map(|x| x.0.as_str()))
            .chain(r.uri.iter().map(|x| x.0.as_str()));
        for code in codes {
            if seen_p.insert((rtype.as_str(), code)) {
                params.push((rtype.as_str(), code));
            }
        }
        for sys in r.token.iter().filter_map(|t| t.1.as_deref()) {
            if seen_s.insert(sys) {
                systems.push(sys);
            }
        }
    }
    (params, systems)
}

/// Result of one [`Op`].
#[derive(Debug)]
pub(crate) enum OpResult {
    Written(super::StoredResource, super::WriteOutcome),
    Unchanged,
    Deleted(Option<i64>),
}

/// New server-assigned logical id (FHIR R4 §3.1.0.6: UUID v4, lower-case).
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Escapes `%`, `_` and `\` for `LIKE … ESCAPE '\'`.
pub(crate) fn like_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// Upper bound for a prefix range: every string starting with `p` is `>= p` and `< p + U+10FFFF`.
pub(crate) fn prefix_upper(p: &str) -> String {
    let mut s = String::with_capacity(p.len() + 4);
    s.push_str(p);
    s.push('\u{10FFFF}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_roundtrip() {
        let ms = 1_795_000_000_123;
        let s = format_ms(ms);
        assert_eq!(s.len(), 24);
        assert!(s.ends_with(".123Z"));
        assert_eq!(parse_instant(&s).unwrap(), ms);
        assert_eq!(parse_instant("1970-01-02").unwrap(), 86_400_000);
        assert!(parse_instant("yesterday").is_err());
    }

    #[test]
    fn ids() {
        assert!(valid_id("abc-1.2"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"a".repeat(65)));
        assert!(valid_type("Patient"));
        assert!(!valid_type("patient"));
        assert!(!valid_type("Pat;ient"));
    }
}
