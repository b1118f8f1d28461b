//! The SQLite store's resource cache: current rows of `resources`, served to point reads (`read`) without
//! the b-tree walk, validated against the database on every use.
//!
//! Why: every read by id commits an audit record, and in WAL mode each commit makes every reader
//! connection drop its whole page cache on its next statement (`pager_reset`), so a point read walks the
//! `resources_type_id` index and the table from the OS page cache again (`pread` per level): ~30 % of a
//! read's server CPU at 5,000 patients (bench/results/read-cache-2026-11-22.md). The cache keeps the row.
//!
//! **Validity.** Migration `0008_resource_cache.sql` keeps a data generation (`data_generation.n`) that
//! triggers bump in the same transaction as every `UPDATE` or `DELETE` of a `resources` row, whichever
//! connection or process commits it. An entry records the generation of the snapshot it was read in; a hit
//! first reads the committed generation (one row on one page: the page the commit reset, and nothing
//! else) and serves the entry only when the two are equal — then no current row has changed since, and the
//! answer is exactly what reading the row in that snapshot would return. Otherwise (and on a miss) the row
//! and the generation come from ONE statement, so an entry never mixes two snapshots. New rows need no
//! bump: an entry exists only for a row that existed. Any update anywhere thus retires every entry (they
//! are refreshed one by one on their next read); the cache pays off for read-mostly stores, and a miss
//! costs one joined one-row read more than no cache.
//!
//! **Checks without a statement.** The generation check is a read transaction of its own (shared-memory
//! locks, `fcntl`s, the page the last audit commit reset): ~5 µs, 10–15 % of a cached read. A hit skips it
//! when the generation last read is known to be still current ([`Freshness`]): no write of THIS process
//! has started since that read (every write transaction of the store and every import batch holds a
//! [`WriteGuard`] from before `BEGIN` until after `COMMIT`), and the read is younger than
//! [`CROSS_PROCESS_WINDOW`]. So this process's own writes are seen at once — a response to a write is
//! sent after its commit, and any read after that checks the database — while a commit by ANOTHER process
//! on the same file (`import` while `serve` runs, a second `serve`) reaches the cached point reads of this
//! one within 1 ms, like a replica's lag; searches, history and the consent checks always read the
//! database. A path that forgets its guard therefore degrades to that 1 ms window, never to more.
//!
//! **Size.** Bounded by weight — the bytes of the JSON and the key plus a fixed overhead —
//! to `TOBIUME_RESOURCE_CACHE_MIB` (default [`DEFAULT_MIB`]; `0` = no cache), with quick_cache's eviction
//! (CLOCK-Pro). Rows larger than [`MAX_ENTRY_BYTES`] are never cached. History (`vread`) and searches are
//! not cached. PostgreSQL has no such cache: its shared buffers survive commits, and a hit's generation
//! check would be a round trip to the server like the read it replaces.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};
use rusqlite::Connection;

use super::sqlite_read::CurrentRow;

/// Default cache size in MiB (`TOBIUME_RESOURCE_CACHE_MIB`).
pub(crate) const DEFAULT_MIB: u64 = 16;
/// Largest accepted setting in MiB.
const MAX_MIB: u64 = 4096;
/// Rows whose JSON is longer (bytes) are read from the database every time.
const MAX_ENTRY_BYTES: usize = 256 * 1024;
/// Weight of an entry beyond its key and JSON bytes (entry, `Arc`, map slot).
const ENTRY_OVERHEAD: u64 = 96;

/// How long a generation read from the database is trusted without a write of this process (module
/// docs, "Checks without a statement"): the longest a commit by another process stays unseen by the
/// cached point reads.
pub(crate) const CROSS_PROCESS_WINDOW: Duration = Duration::from_millis(1);

/// The committed data generation (one row; see the module docs).
const GENERATION: &str = "SELECT n FROM data_generation WHERE id = 1";
/// The data generation and the current row of `?1/?2` (columns 1–4 NULL when absent) from one snapshot.
const ROW_AND_GENERATION: &str =
    "SELECT g.n, r.version, r.last_updated, r.deleted, r.json FROM data_generation AS g \
     LEFT JOIN resources AS r ON r.rtype = ?1 AND r.id = ?2 WHERE g.id = 1";

/// The cache size in bytes from a `TOBIUME_RESOURCE_CACHE_MIB` setting: unset or not a whole number →
/// [`DEFAULT_MIB`], capped at 4096 MiB; `0` → no cache.
pub(crate) fn capacity_bytes(setting: Option<&str>) -> u64 {
    let mib = setting
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_MIB)
        .min(MAX_MIB);
    mib * 1024 * 1024
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    rtype: Box<str>,
    id: Box<str>,
}

/// A borrowed [`Key`] for lookups without allocating (hashes exactly as `Key`: same field order, `str`).
#[derive(Hash)]
struct KeyRef<'a> {
    rtype: &'a str,
    id: &'a str,
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self.rtype == *key.rtype && *self.id == *key.id
    }
}

struct Entry {
    /// `data_generation.n` of the snapshot the row was read in.
    generation: i64,
    version: i64,
    last_updated_ms: i64,
    deleted: bool,
    json: Box<str>,
}

#[derive(Clone)]
struct Weigh;

impl Weighter<Key, Arc<Entry>> for Weigh {
    fn weight(&self, key: &Key, val: &Arc<Entry>) -> u64 {
        (key.rtype.len() + key.id.len() + val.json.len()) as u64 + ENTRY_OVERHEAD
    }
}

/// Hits and misses since the cache was made (a stale entry counts as a miss); counted in test builds only.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

/// What this process knows about the committed data generation (module docs, "Checks without a
/// statement"). Protocol: a write bumps `writing` then `epoch` before it begins and `epoch` then
/// `writing` after it ends; a generation read is trusted only if `writing` was 0 and `epoch` did not move
/// across the read, and a hit uses it only while `epoch` still has that value. (SeqCst throughout: a hit
/// that sees the old epoch is ordered before the write began.)
#[derive(Default)]
pub(crate) struct Freshness {
    epoch: AtomicU64,
    writing: AtomicUsize,
    known: Mutex<Option<Known>>,
}

#[derive(Clone, Copy)]
struct Known {
    generation: i64,
    /// When the read that returned `generation` began.
    at: Instant,
    epoch: u64,
}

/// A write of this process in progress on the store's file (see [`Freshness`]); ends when dropped —
/// drop it after the commit or the rollback.
pub(crate) struct WriteGuard(Arc<Freshness>);

impl Drop for WriteGuard {
    fn drop(&mut self) {
        self.0.epoch.fetch_add(1, Ordering::SeqCst);
        self.0.writing.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Freshness {
    /// Marks a write as begun until the guard is dropped.
    pub(crate) fn write(self: &Arc<Self>) -> WriteGuard {
        self.writing.fetch_add(1, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        WriteGuard(self.clone())
    }

    /// The committed generation when it is known without asking the database.
    fn current(&self) -> Option<i64> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let known = (*self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner))?;
        (known.epoch == epoch && known.at.elapsed() < CROSS_PROCESS_WINDOW).then_some(known.generation)
    }

    /// Call before reading the generation from the database; pass the result to [`Freshness::observed`].
    fn before_read(&self) -> Option<(u64, Instant)> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        (self.writing.load(Ordering::SeqCst) == 0).then(|| (epoch, Instant::now()))
    }

    /// Records `generation`, read after [`Freshness::before_read`] returned `before`, when no write of
    /// this process overlapped the read.
    fn observed(&self, before: Option<(u64, Instant)>, generation: i64) {
        if let Some((epoch, at)) = before {
            if self.epoch.load(Ordering::SeqCst) == epoch {
                *self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(Known { generation, at, epoch });
            }
        }
    }
}

/// The resource cache of one SQLite database file (module docs). Shared by all reader connections.
pub(crate) struct ResourceCache {
    map: Cache<Key, Arc<Entry>, Weigh>,
    /// The generation as far as this process knows it (module docs).
    freshness: Arc<Freshness>,
    /// Hits and misses for the tests ([`ResourceCache::stats`]); a build counts nothing on the read path.
    #[cfg(test)]
    counts: [std::sync::atomic::AtomicU64; 2],
}

impl ResourceCache {
    /// A cache of at most `bytes` (weight, module docs); `None` for 0.
    pub(crate) fn new(bytes: u64) -> Option<ResourceCache> {
        if bytes == 0 {
            return None;
        }
        let items = (bytes / 1500).max(16) as usize;
        Some(ResourceCache {
            map: Cache::with_weighter(items, bytes, Weigh),
            freshness: Arc::default(),
            #[cfg(test)]
            counts: Default::default(),
        })
    }

    /// The writes of this process must hold a guard from here (module docs).
    pub(crate) fn freshness(&self) -> &Arc<Freshness> {
        &self.freshness
    }

    /// The cached current row of `rtype/id` when the committed generation is known without a statement
    /// and the entry is of that generation (module docs); `None`: ask [`ResourceCache::read`].
    pub(crate) fn hit(&self, rtype: &str, id: &str) -> Option<CurrentRow> {
        let committed = self.freshness.current()?;
        let e = self.map.get(&KeyRef { rtype, id })?;
        if e.generation != committed {
            return None;
        }
        self.count(true);
        Some((e.version, e.last_updated_ms, e.deleted, e.json.to_string()))
    }

    /// The current row of `rtype/id` as the database holds it now (`None` when absent): from the cache
    /// when its entry is still valid, else from `c` (and then cached). Reads the committed generation
    /// from `c` every time (and remembers it, module docs). Errors: the statements' errors.
    pub(crate) fn read(
        &self,
        c: &Connection,
        rtype: &str,
        id: &str,
    ) -> rusqlite::Result<Option<CurrentRow>> {
        if let Some(e) = self.map.get(&KeyRef { rtype, id }) {
            let before = self.freshness.before_read();
            let committed: i64 = c.prepare_cached(GENERATION)?.query_row([], |r| r.get(0))?;
            self.freshness.observed(before, committed);
            if committed == e.generation {
                self.count(true);
                return Ok(Some((
                    e.version,
                    e.last_updated_ms,
                    e.deleted,
                    e.json.to_string(),
                )));
            }
        }
        self.count(false);
        let before = self.freshness.before_read();
        let (generation, row): (i64, Option<CurrentRow>) = c
            .prepare_cached(ROW_AND_GENERATION)?
            .query_row((rtype, id), |r| {
                let generation = r.get(0)?;
                Ok(match r.get::<_, Option<i64>>(1)? {
                    Some(version) => (generation, Some((version, r.get(2)?, r.get(3)?, r.get(4)?))),
                    None => (generation, None),
                })
            })?;
        self.freshness.observed(before, generation);
        if let Some((version, last_updated_ms, deleted, json)) = &row {
            if json.len() <= MAX_ENTRY_BYTES {
                let entry = Entry {
                    generation,
                    version: *version,
                    last_updated_ms: *last_updated_ms,
                    deleted: *deleted,
                    json: json.as_str().into(),
                };
                self.map.insert(
                    Key {
                        rtype: rtype.into(),
                        id: id.into(),
                    },
                    Arc::new(entry),
                );
            }
        }
        Ok(row)
    }

    /// Counts a hit or a miss (test builds only).
    fn count(&self, _hit: bool) {
        #[cfg(test)]
        self.counts[usize::from(!_hit)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Hits and misses so far.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> CacheStats {
        let n = |i: usize| self.counts[i].load(std::sync::atomic::Ordering::Relaxed);
        CacheStats { hits: n(0), misses: n(1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_size_setting() {
        assert_eq!(capacity_bytes(None), DEFAULT_MIB << 20);
        assert_eq!(capacity_bytes(Some(" 0 ")), 0);
        assert_eq!(capacity_bytes(Some("64")), 64 << 20);
        assert_eq!(capacity_bytes(Some("lots")), DEFAULT_MIB << 20);
        assert_eq!(capacity_bytes(Some("99999999")), MAX_MIB << 20);
        assert!(ResourceCache::new(0).is_none());
    }

    /// A migrated-enough file: `resources` with its unique key and the 0008 generation and triggers.
    fn file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = wal;
             CREATE TABLE resources (rid INTEGER PRIMARY KEY, rtype TEXT NOT NULL, id TEXT NOT NULL,
               version INTEGER NOT NULL, last_updated INTEGER NOT NULL, deleted BOOLEAN NOT NULL, json TEXT NOT NULL);
             CREATE UNIQUE INDEX resources_type_id ON resources (rtype, id);",
        )
        .unwrap();
        c.execute_batch(include_str!(
            "../../migrations/sqlite/0008_resource_cache.sql"
        ))
        .unwrap();
        c.execute("INSERT INTO resources (rtype, id, version, last_updated, deleted, json) VALUES ('Patient', 'p1', 1, 10, 0, '{\"v\":1}')", [])
            .unwrap();
        (dir, path)
    }

    #[test]
    fn serves_hits_and_sees_every_other_connections_change() {
        let (_dir, path) = file();
        let reader = Connection::open(&path).unwrap();
        // another connection (as another process would) writes the same file
        let other = Connection::open(&path).unwrap();
        let cache = ResourceCache::new(1 << 20).unwrap();
        let read = |id: &str| cache.read(&reader, "Patient", id).unwrap();

        assert_eq!(read("p1"), Some((1, 10, false, "{\"v\":1}".to_string())));
        assert_eq!(read("p1"), Some((1, 10, false, "{\"v\":1}".to_string())));
        assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 1 });
        assert_eq!(read("nope"), None);
        assert_eq!(read("nope"), None, "absent rows are not cached");
        assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 3 });

        // a new row elsewhere keeps the entry valid
        other.execute("INSERT INTO resources (rtype, id, version, last_updated, deleted, json) VALUES ('Patient', 'p2', 1, 11, 0, '{}')", []).unwrap();
        assert_eq!(read("p1").unwrap().0, 1);
        assert_eq!(cache.stats().hits, 2);

        // an update by the other connection: the next read sees version 2, not the cached 1
        other.execute("UPDATE resources SET version = 2, last_updated = 20, json = '{\"v\":2}' WHERE id = 'p1'", []).unwrap();
        assert_eq!(read("p1"), Some((2, 20, false, "{\"v\":2}".to_string())));
        assert_eq!(cache.stats().hits, 2, "the stale entry was not served");
        assert_eq!(read("p1").unwrap().0, 2);
        assert_eq!(cache.stats().hits, 3, "the refreshed entry is served again");

        // a delete flag, and the removal of the row
        other
            .execute(
                "UPDATE resources SET version = 3, deleted = 1 WHERE id = 'p1'",
                [],
            )
            .unwrap();
        assert_eq!(read("p1").map(|r| (r.0, r.2)), Some((3, true)));
        other
            .execute("DELETE FROM resources WHERE id = 'p1'", [])
            .unwrap();
        assert_eq!(read("p1"), None);

        // a rolled-back update changes nothing and retires nothing
        assert_eq!(read("p2").unwrap().0, 1);
        other
            .execute_batch("BEGIN; UPDATE resources SET version = 9 WHERE id = 'p2'; ROLLBACK;")
            .unwrap();
        let before = cache.stats().hits;
        assert_eq!(read("p2").unwrap().0, 1);
        assert_eq!(cache.stats().hits, before + 1);
    }

    /// Hits without a statement (module docs, "Checks without a statement"): served while the generation
    /// read last is younger than the window and no write of this process has begun since; a write in
    /// progress, or one that overlapped the read, leaves nothing to trust.
    #[test]
    fn hits_without_a_statement_only_while_nothing_can_have_changed() {
        let (_dir, path) = file();
        let reader = Connection::open(&path).unwrap();
        let other = Connection::open(&path).unwrap();
        let cache = ResourceCache::new(1 << 20).unwrap();
        let v1 = Some((1, 10, false, "{\"v\":1}".to_string()));
        assert_eq!(cache.hit("Patient", "p1"), None, "nothing read yet");
        assert_eq!(cache.read(&reader, "Patient", "p1").unwrap(), v1);
        assert_eq!(cache.hit("Patient", "p1"), v1);
        assert_eq!(cache.hit("Patient", "p2"), None, "not cached");

        // a write of this process: no hit from its start, nor after its end until the database is read
        let guard = cache.freshness().write();
        assert_eq!(cache.hit("Patient", "p1"), None);
        // a read while the write runs is not trusted either
        assert_eq!(cache.read(&reader, "Patient", "p1").unwrap(), v1);
        assert_eq!(cache.hit("Patient", "p1"), None);
        other.execute("UPDATE resources SET version = 2, json = '{}' WHERE id = 'p1'", []).unwrap();
        drop(guard);
        assert_eq!(cache.hit("Patient", "p1"), None);
        assert_eq!(cache.read(&reader, "Patient", "p1").unwrap().unwrap().0, 2);
        assert_eq!(cache.hit("Patient", "p1").unwrap().0, 2);

        // another process's commit: unseen by hits for at most the window
        other.execute("UPDATE resources SET version = 3, json = '{}' WHERE id = 'p1'", []).unwrap();
        std::thread::sleep(CROSS_PROCESS_WINDOW);
        assert_eq!(cache.hit("Patient", "p1"), None);
        assert_eq!(cache.read(&reader, "Patient", "p1").unwrap().unwrap().0, 3);
    }

    #[test]
    fn stays_within_its_size() {
        let (_dir, path) = file();
        let c = Connection::open(&path).unwrap();
        let big = "x".repeat(10_000);
        for i in 0..200 {
            c.execute(
                "INSERT INTO resources (rtype, id, version, last_updated, deleted, json) VALUES ('Observation', ?1, 1, 1, 0, ?2)",
                (format!("o{i}"), &big),
            )
            .unwrap();
        }
        let cache = ResourceCache::new(256 * 1024).unwrap();
        for i in 0..200 {
            assert_eq!(
                cache
                    .read(&c, "Observation", &format!("o{i}"))
                    .unwrap()
                    .unwrap()
                    .3
                    .len(),
                10_000
            );
        }
        assert!(
            cache.map.weight() <= 256 * 1024,
            "weight {}",
            cache.map.weight()
        );
        assert!(cache.map.len() >= 10, "kept {} entries", cache.map.len());
    }
}
