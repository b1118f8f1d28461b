//! The batch planner: ONE pure function that decides what a batch of writes does to the store, for both
//! batch executors — the sqlx one (`backend_impl.rs`: SQLite and PostgreSQL, API writes, transactions,
//! the PostgreSQL import) and the rusqlite SQLite import writer (`sqlite_bulk.rs`).
//!
//! Input: the [`Op`]s in order, the current row of every distinct `(type, id)` they touch before the
//! batch ([`Current`], aligned with [`keys`]) and the batch's `now` (epoch ms). Output: a [`Plan`] — the
//! per-op results (FHIR R4 §3.1.0: versions, `Created`/`Updated`, conditional outcomes, tombstones) and
//! the rows to write, in the order the executors must write them so that both give the same store (the
//! same `rid`s, history rows and index rows):
//!
//! 1. [`Plan::insert`]: new `resources` rows, in order of first appearance of their key (this order
//!    fixes their `rid`s); the executor reports each returned rid with [`Plan::set_rid`]. A new key that
//!    got no rid (another connection created it meanwhile: PostgreSQL only) is in [`Plan::raced`]: the
//!    executor re-reads those keys and plans again;
//! 2. [`Plan::update`]: rows of existing resources that get a new current version, by `rid`: the
//!    replaced current row moves to `resource_history` first, then the row is updated (migration 0006);
//! 3. [`Plan::clear_index`]: `rid`s whose search-index rows describe a replaced live version;
//! 4. [`Plan::history`]: versions of this batch that a later op of the same batch replaced;
//! 5. [`Plan::index_rows`]: the search-index rows of the new current versions, in slot order.
//!
//! A resource written several times in one batch gets every version in its history but only its last
//! version in `resources` and the search index. Planning needs no database, so it is unit-tested here.

use super::shared::{self, IndexRows, Op, OpResult, PutMode};
use super::{rawjson, ImportSummary, StoreError, StoredResource, WriteOutcome};

/// The current `resources` row of one logical resource before the batch (what the executors read,
/// row-locked on PostgreSQL).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Current {
    pub rid: i64,
    pub version: i64,
    pub deleted: bool,
    /// Epoch ms.
    pub last_updated: i64,
    /// The import content hash (or sha256 of the body text) of the current version; `None` for a tombstone.
    pub content_hash: Option<String>,
}

/// `(resource type, id)` an op writes.
pub(crate) fn op_key(op: &Op) -> (&str, &str) {
    match op {
        Op::Put { rtype, id, .. } | Op::Delete { rtype, id } => (rtype.as_str(), id.as_str()),
    }
}

/// The distinct `(resource type, id)` keys of `ops` in order of first appearance: the slot numbers of
/// the plan. [`plan`] expects the current rows in this order.
pub(crate) fn keys(ops: &[Op]) -> Vec<(&str, &str)> {
    let mut seen: foldhash::HashSet<(&str, &str)> = Default::default();
    ops.iter().map(op_key).filter(|k| seen.insert(*k)).collect()
}

/// Per-batch state of one logical resource while the batch is planned.
struct Slot<'a> {
    rtype: &'a str,
    id: &'a str,
    /// `resources.rid` when the row exists in the database (set for new rows by [`Plan::set_rid`]).
    rid: Option<i64>,
    /// The row existed before this batch.
    existed: bool,
    /// The row existed and was live before this batch (its index rows must be cleared when it changes).
    was_indexed: bool,
    /// A current version exists (in the database or written earlier in this batch).
    exists: bool,
    version: i64,
    deleted: bool,
    last_updated: i64,
    content_hash: Option<&'a str>,
    /// Index into `versions` of the current version when this batch wrote one.
    written: Option<usize>,
    /// The op whose index rows describe the current version (live and written only).
    index_op: Option<usize>,
}

/// One version a batch writes (before it is sorted into `resources` or `resource_history`).
struct Version {
    slot: usize,
    version: i64,
    last_updated: i64,
    deleted: bool,
    json: String,
}

/// One row for `resources` (insert or update) or `resource_history`.
#[derive(Debug, PartialEq)]
pub(crate) struct Row<'a> {
    /// Slot (index into [`keys`]) of the logical resource.
    pub slot: usize,
    pub rtype: &'a str,
    pub id: &'a str,
    pub version: i64,
    /// Epoch ms.
    pub last_updated: i64,
    pub deleted: bool,
    /// `None` for tombstones and history rows.
    pub content_hash: Option<&'a str>,
    /// The stamped body (`id`, `meta.versionId`, `meta.lastUpdated`); empty for a tombstone.
    pub json: String,
}

/// What a batch writes (see the module docs for the order).
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    /// One result per op, in op order.
    pub results: Vec<OpResult>,
    /// New `resources` rows in slot order.
    pub insert: Vec<Row<'a>>,
    /// New current versions of existing rows, as `(rid, row)` in `rid` order.
    pub update: Vec<(i64, Row<'a>)>,
    /// `rid`s whose search-index rows are cleared (replaced live versions), in `rid` order.
    pub clear_index: Vec<i64>,
    /// Versions of this batch superseded within it, in the order they were written.
    pub history: Vec<Row<'a>>,
    /// `(slot, rtype, rows)` of the new live current versions, in slot order.
    index: Vec<(usize, &'a str, &'a IndexRows)>,
    /// `rid` per slot (existing rows, and new rows once the executor reported them).
    rids: Vec<Option<i64>>,
}

impl<'a> Plan<'a> {
    /// Records the `rid` the database assigned to the new row of `slot`.
    pub(crate) fn set_rid(&mut self, slot: usize, rid: i64) {
        if let Some(r) = self.rids.get_mut(slot) {
            *r = Some(rid);
        }
    }

    /// Slots of [`Plan::insert`] rows that got no `rid` (created concurrently by another connection).
    pub(crate) fn raced(&self) -> Vec<usize> {
        self.insert.iter().map(|r| r.slot).filter(|&s| self.rids[s].is_none()).collect()
    }

    /// The search-index rows to insert as `(rid, rtype, rows)`, in slot order. Call after every new row's
    /// rid was reported ([`Plan::raced`] empty); a slot without rid is skipped.
    pub(crate) fn index_rows(&self) -> Vec<(i64, &'a str, &'a IndexRows)> {
        self.index.iter().filter_map(|&(s, t, rows)| self.rids[s].map(|rid| (rid, t, rows))).collect()
    }

    /// The import counts of the results: `Created`/`Updated` versions, tombstones, and everything that
    /// wrote nothing (identical content, delete of an absent or deleted resource) as `unchanged`.
    pub(crate) fn summary(&self) -> ImportSummary {
        summarize(&self.results)
    }
}

/// Counts `results` as [`Plan::summary`] does.
pub(crate) fn summarize(results: &[OpResult]) -> ImportSummary {
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
    s
}

/// Plans `ops` (see the module docs). `current[s]`: the row of `keys(ops)[s]` before the batch (`None`:
/// absent); `now`: epoch ms of the batch (a version's `lastUpdated` is `max(now, previous lastUpdated)`);
/// `bodies = false` leaves `StoredResource::json`, `resource_type` and `id` of the results empty (the
/// importer only counts them).
///
/// Per op: `If-Match` ≠ current version (0 when absent) → `VersionConflict` (HTTP 412); `PutMode::Create`
/// on an existing id (even deleted) → `Invalid`; `PutMode::IfChanged` with the live version's content
/// hash → `Unchanged`; a put on a tombstone is `Created` with the next version; a delete of an absent or
/// deleted resource → `Deleted(None)`. Errors: `(op index, error)` — the above, or `Invalid` for a body
/// that cannot be stamped; nothing of the batch may then be written.
pub(crate) fn plan<'a>(
    ops: &'a [Op],
    current: &'a [Option<Current>],
    now: i64,
    bodies: bool,
) -> Result<Plan<'a>, (usize, StoreError)> {
    let keys = keys(ops);
    let slot_of: foldhash::HashMap<(&str, &str), usize> = keys.iter().enumerate().map(|(s, &k)| (k, s)).collect();
    let mut slots: Vec<Slot> = keys
        .iter()
        .enumerate()
        .map(|(s, &(rtype, id))| match current.get(s).and_then(Option::as_ref) {
            Some(c) => Slot {
                rtype,
                id,
                rid: Some(c.rid),
                existed: true,
                was_indexed: !c.deleted,
                exists: true,
                version: c.version,
                deleted: c.deleted,
                last_updated: c.last_updated,
                content_hash: c.content_hash.as_deref(),
                written: None,
                index_op: None,
            },
            None => Slot {
                rtype,
                id,
                rid: None,
                existed: false,
                was_indexed: false,
                exists: false,
                version: 0,
                deleted: false,
                last_updated: 0,
                content_hash: None,
                written: None,
                index_op: None,
            },
        })
        .collect();
    let mut versions: Vec<Version> = Vec::with_capacity(ops.len());
    let mut results = Vec::with_capacity(ops.len());

    for (i, op) in ops.iter().enumerate() {
        let s = slot_of[&op_key(op)];
        let slot = &mut slots[s];
        match op {
            Op::Put { rtype, id, prep, if_match, mode } => {
                if let Some(expected) = *if_match {
                    let current = if slot.exists { slot.version } else { 0 };
                    if current != expected {
                        return Err((i, StoreError::VersionConflict { expected, current }));
                    }
                }
                let outcome = if slot.exists {
                    if *mode == PutMode::Create {
                        return Err((i, StoreError::Invalid(format!("resource {rtype}/{id} already exists"))));
                    }
                    if *mode == PutMode::IfChanged && !slot.deleted && slot.content_hash == Some(prep.hash.as_str()) {
                        results.push(OpResult::Unchanged);
                        continue;
                    }
                    if slot.deleted {
                        WriteOutcome::Created
                    } else {
                        WriteOutcome::Updated
                    }
                } else {
                    WriteOutcome::Created
                };
                let version = slot.version + 1;
                let lu = if slot.exists { now.max(slot.last_updated) } else { now };
                let lu_s = shared::format_ms(lu);
                let json = rawjson::stamp_text(&prep.text, &rawjson::Stamp { id, version_id: version, last_updated: &lu_s })
                    .map_err(|e| (i, e))?;
                // `bodies = false` (the importer only counts the results): no copies of the body, type or id
                let (body, rt, lid) = if bodies {
                    (json.clone(), rtype.clone(), id.clone())
                } else {
                    (String::new(), String::new(), String::new())
                };
                slot.exists = true;
                slot.version = version;
                slot.deleted = false;
                slot.last_updated = lu;
                slot.content_hash = Some(prep.hash.as_str());
                slot.written = Some(versions.len());
                slot.index_op = Some(i);
                versions.push(Version { slot: s, version, last_updated: lu, deleted: false, json });
                results.push(OpResult::Written(
                    StoredResource {
                        resource_type: rt,
                        id: lid,
                        version_id: version,
                        last_updated: lu_s,
                        deleted: false,
                        json: body,
                    },
                    outcome,
                ));
            }
            Op::Delete { .. } => {
                if !slot.exists || slot.deleted {
                    results.push(OpResult::Deleted(None));
                    continue;
                }
                let version = slot.version + 1;
                let lu = now.max(slot.last_updated);
                slot.version = version;
                slot.deleted = true;
                slot.last_updated = lu;
                slot.content_hash = None;
                slot.written = Some(versions.len());
                slot.index_op = None;
                versions.push(Version { slot: s, version, last_updated: lu, deleted: true, json: String::new() });
                results.push(OpResult::Deleted(Some(version)));
            }
        }
    }

    // Sort the versions: the current one of each written slot goes to `resources`, the others to history.
    let mut current_json: Vec<Option<String>> = (0..slots.len()).map(|_| None).collect();
    let mut history = Vec::new();
    for (v, ver) in versions.into_iter().enumerate() {
        let sl = &slots[ver.slot];
        if sl.written == Some(v) {
            current_json[ver.slot] = Some(ver.json);
        } else {
            history.push(Row {
                slot: ver.slot,
                rtype: sl.rtype,
                id: sl.id,
                version: ver.version,
                last_updated: ver.last_updated,
                deleted: ver.deleted,
                content_hash: None,
                json: ver.json,
            });
        }
    }
    let mut insert = Vec::new();
    let mut update = Vec::new();
    let mut index = Vec::new();
    for (s, sl) in slots.iter().enumerate() {
        let Some(json) = current_json[s].take() else { continue };
        let row = Row {
            slot: s,
            rtype: sl.rtype,
            id: sl.id,
            version: sl.version,
            last_updated: sl.last_updated,
            deleted: sl.deleted,
            content_hash: sl.content_hash,
            json,
        };
        match (sl.existed, sl.rid) {
            (true, Some(rid)) => update.push((rid, row)),
            _ => insert.push(row),
        }
        if let Some(Op::Put { prep, .. }) = sl.index_op.map(|op| &ops[op]) {
            index.push((s, sl.rtype, &prep.index));
        }
    }
    update.sort_by_key(|(rid, _)| *rid);
    let clear_index: Vec<i64> =
        update.iter().filter(|(_, row)| slots[row.slot].was_indexed).map(|(rid, _)| *rid).collect();
    let rids = slots.iter().map(|sl| sl.rid).collect();
    Ok(Plan { results, insert, update, clear_index, history, index, rids })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::shared::Prepared;

    const NOW: i64 = 1_795_000_000_000;

    fn put(id: &str, text_tag: &str, if_match: Option<i64>, mode: PutMode) -> Op {
        let text = format!(r#"{{"resourceType":"Patient","id":"{id}","gender":"{text_tag}"}}"#);
        let mut index = IndexRows::default();
        index.token.push(("gender".into(), None, text_tag.into(), None));
        Op::Put {
            rtype: "Patient".into(),
            id: id.into(),
            prep: Prepared { hash: shared::sha256_hex(&text), text, index },
            if_match,
            mode,
        }
    }
    fn upsert(id: &str, tag: &str) -> Op {
        put(id, tag, None, PutMode::Upsert)
    }
    fn delete(id: &str) -> Op {
        Op::Delete { rtype: "Patient".into(), id: id.into() }
    }
    fn live(rid: i64, version: i64, hash: &str) -> Option<Current> {
        Some(Current { rid, version, deleted: false, last_updated: NOW - 1000, content_hash: Some(hash.into()) })
    }
    fn written(r: &OpResult) -> (i64, &WriteOutcome) {
        match r {
            OpResult::Written(s, o) => (s.version_id, o),
            other => panic!("not written: {other:?}"),
        }
    }

    #[test]
    fn keys_are_distinct_in_first_use_order() {
        let ops = [upsert("b", "male"), upsert("a", "male"), delete("b"), upsert("c", "male")];
        assert_eq!(keys(&ops), vec![("Patient", "b"), ("Patient", "a"), ("Patient", "c")]);
    }

    #[test]
    fn create_and_update_give_versions_rows_and_index() {
        let ops = [upsert("new", "male"), upsert("old", "female")];
        let current = [None, live(7, 3, "x")];
        let mut p = plan(&ops, &current, NOW, true).unwrap();
        assert_eq!(written(&p.results[0]), (1, &WriteOutcome::Created));
        assert_eq!(written(&p.results[1]), (4, &WriteOutcome::Updated));
        let OpResult::Written(s, _) = &p.results[1] else { unreachable!() };
        assert!(s.json.contains(r#""versionId":"4""#), "{}", s.json);
        assert_eq!(s.last_updated, shared::format_ms(NOW));
        assert_eq!(p.insert.len(), 1);
        assert_eq!((p.insert[0].slot, p.insert[0].id, p.insert[0].version), (0, "new", 1));
        assert_eq!(p.update.len(), 1);
        assert_eq!((p.update[0].0, p.update[0].1.version, p.update[0].1.deleted), (7, 4, false));
        assert_eq!(p.clear_index, vec![7]);
        assert!(p.history.is_empty());
        // the new row's index rows wait for its rid
        assert_eq!(p.raced(), vec![0]);
        assert_eq!(p.index_rows().iter().map(|r| r.0).collect::<Vec<_>>(), vec![7]);
        p.set_rid(0, 8);
        assert!(p.raced().is_empty());
        assert_eq!(p.index_rows().iter().map(|r| (r.0, r.2.token[0].2.as_str())).collect::<Vec<_>>(), vec![(8, "male"), (7, "female")]);
    }

    #[test]
    fn several_versions_in_one_batch_keep_all_but_the_last_in_history() {
        let ops = [upsert("a", "male"), upsert("a", "female"), delete("a"), upsert("a", "other")];
        let current = [live(5, 2, "x")];
        let p = plan(&ops, &current, NOW, false).unwrap();
        assert_eq!(written(&p.results[0]), (3, &WriteOutcome::Updated));
        assert_eq!(written(&p.results[1]), (4, &WriteOutcome::Updated));
        assert!(matches!(p.results[2], OpResult::Deleted(Some(5))));
        assert_eq!(written(&p.results[3]), (6, &WriteOutcome::Created));
        let OpResult::Written(s, _) = &p.results[3] else { unreachable!() };
        assert!(s.json.is_empty(), "bodies = false leaves the result body empty");
        assert_eq!(p.history.iter().map(|h| (h.version, h.deleted)).collect::<Vec<_>>(), vec![(3, false), (4, false), (5, true)]);
        assert!(p.history[2].json.is_empty());
        assert!(p.history[1].json.contains("female"));
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].1.version, 6);
        assert!(p.update[0].1.json.contains("other"));
        assert_eq!(p.clear_index, vec![5]);
        assert_eq!(p.index_rows().len(), 1);
        assert_eq!(p.index_rows()[0].2.token[0].2, "other");
    }

    #[test]
    fn if_match_conflicts_name_the_op_and_the_current_version() {
        let ops = [upsert("a", "male"), put("a", "female", Some(3), PutMode::Upsert)];
        let current = [live(1, 3, "x")];
        match plan(&ops, &current, NOW, true) {
            Err((1, StoreError::VersionConflict { expected: 3, current: 4 })) => {}
            other => panic!("{:?}", other.map(|p| p.results)),
        }
        // If-Match on an absent resource: current version 0
        let ops = [put("b", "male", Some(1), PutMode::Upsert)];
        assert!(matches!(plan(&ops, &[None], NOW, true), Err((0, StoreError::VersionConflict { expected: 1, current: 0 }))));
        let ops = [put("b", "male", Some(3), PutMode::Upsert)];
        let p = plan(&ops, &current, NOW, true).unwrap();
        assert_eq!(written(&p.results[0]), (4, &WriteOutcome::Updated));
    }

    #[test]
    fn create_mode_refuses_an_existing_id_even_deleted() {
        let ops = [put("a", "male", None, PutMode::Create)];
        let tomb = [Some(Current { rid: 1, version: 2, deleted: true, last_updated: NOW, content_hash: None })];
        assert!(matches!(plan(&ops, &tomb, NOW, true), Err((0, StoreError::Invalid(_)))));
        let ops = [put("a", "male", None, PutMode::Create), put("a", "male", None, PutMode::Create)];
        assert!(matches!(plan(&ops, &[None], NOW, true), Err((1, StoreError::Invalid(_)))));
    }

    #[test]
    fn import_skips_identical_content_and_resurrects_tombstones() {
        let same = put("a", "male", None, PutMode::IfChanged);
        let Op::Put { prep, .. } = &same else { unreachable!() };
        let hash = prep.hash.clone();
        let ops = [same, put("b", "male", None, PutMode::IfChanged), delete("c"), delete("d")];
        let current = [
            live(1, 1, &hash),
            Some(Current { rid: 2, version: 2, deleted: true, last_updated: NOW + 5000, content_hash: None }),
            None,
            live(4, 1, "y"),
        ];
        let p = plan(&ops, &current, NOW, false).unwrap();
        assert!(matches!(p.results[0], OpResult::Unchanged));
        assert_eq!(written(&p.results[1]), (3, &WriteOutcome::Created));
        assert!(matches!(p.results[2], OpResult::Deleted(None)));
        assert!(matches!(p.results[3], OpResult::Deleted(Some(2))));
        assert_eq!(p.summary(), ImportSummary { created: 1, updated: 0, unchanged: 2, deleted: 1 });
        // the tombstone had no index rows; lastUpdated never goes back
        assert_eq!(p.clear_index, vec![4]);
        assert_eq!(p.update.iter().map(|(rid, r)| (*rid, r.last_updated)).collect::<Vec<_>>(), vec![(2, NOW + 5000), (4, NOW)]);
        assert!(p.update[1].1.deleted && p.update[1].1.content_hash.is_none());
        assert!(p.insert.is_empty() && p.history.is_empty());
        assert_eq!(p.index_rows().iter().map(|r| r.0).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn updates_are_ordered_by_rid_and_inserts_by_first_use() {
        let ops = [upsert("z", "male"), upsert("y", "male"), upsert("n2", "male"), upsert("n1", "male")];
        let current = [live(9, 1, "h"), live(3, 1, "h"), None, None];
        let mut p = plan(&ops, &current, NOW, false).unwrap();
        assert_eq!(p.update.iter().map(|u| u.0).collect::<Vec<_>>(), vec![3, 9]);
        assert_eq!(p.insert.iter().map(|r| r.id).collect::<Vec<_>>(), vec!["n2", "n1"]);
        p.set_rid(3, 20);
        assert_eq!(p.raced(), vec![2], "the row another writer created got no rid");
        assert_eq!(p.index_rows().iter().map(|r| r.0).collect::<Vec<_>>(), vec![9, 3, 20]);
    }

    #[test]
    fn an_unstampable_body_fails_its_op() {
        let mut op = upsert("a", "male");
        if let Op::Put { prep, .. } = &mut op {
            prep.text = "[1]".into();
        }
        let ops = [upsert("b", "male"), op];
        assert!(matches!(plan(&ops, &[None, None], NOW, true), Err((1, StoreError::Invalid(_)))));
    }
}
