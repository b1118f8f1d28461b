//! The SQLite audit appender: one dedicated OS thread with its own read-write [`rusqlite`] connection
//! that group-commits the audit chain (federation-security.md §4.4; `store::audit`).
//!
//! Requests hand their record to the thread over a channel and await a oneshot reply. The thread takes
//! the first queued job, then every job queued behind it (up to [`MAX_BATCH`] records: the requests that
//! arrived while the previous batch was committing), and writes them in ONE transaction:
//! `BEGIN IMMEDIATE` → read the chain head and the security generation → skip the records whose consent
//! decisions were made under another generation (their requests decide again) → insert the others with
//! one cached prepared statement → move the head → `COMMIT` → wake the waiters. A response is sent only
//! after that commit, as before.
//!
//! **Commit delay under load** (`TOBIUME_AUDIT_COMMIT_DELAY_US`, default [`DEFAULT_DELAY_US`]): when the
//! previous batch carried more than one record or more than one is queued now — requests are arriving
//! concurrently — the thread sleeps that long before it closes the batch, so one commit carries the
//! records of more requests (PostgreSQL's `commit_delay` with `commit_siblings` = 1). A lone request
//! (previous batch 1 and nothing else queued) commits at once: no latency is added when idle. Each commit
//! costs more than its inserts: WAL frames of the table and index tail pages and the head row, and — in
//! WAL mode — every reader connection drops its whole page cache on its next statement after any commit
//! (`pager_reset` when the WAL header changed), so the commit rate is also the rate at which the point
//! reads lose their cached b-tree pages. The delay changes when a record is committed, never what is
//! committed: a response is still sent only after its record's commit.
//!
//! Why not sqlx: its SQLite driver runs every statement on a per-connection worker thread and ships each
//! result back over a channel, and the group-commit task was a second hop — together ~15 % of the CPU of
//! a read by id. Here one thread owns the connection; the only hand-off is the job channel and the reply.
//!
//! **WAL checkpoints off the response path.** SQLite runs its automatic checkpoint inside the commit that
//! pushes the WAL past 1,000 pages, and that commit then waits on two `fsync`s (the WAL, then the
//! database file; 8–20 ms measured). On the appender that stalled every request of the batch — about one
//! commit in 150 at one connection, the p99 region. The appender connection therefore has
//! `wal_autocheckpoint = 0`; after each commit it nudges a checkpointer thread with its own connection,
//! which waits [`CHECKPOINT_PERIOD`] (commits in between coalesce into one checkpoint) and runs
//! `PRAGMA wal_checkpoint(PASSIVE)`: it copies what it can without blocking readers or writers, and
//! commits go on appending to the WAL meanwhile. The sqlx data writer keeps the automatic checkpoint as a
//! backstop (it skips a checkpoint while the thread holds the checkpoint lock).
//!
//! The data writes keep their sqlx writer (`transaction_audited` appends inside the data transaction on
//! that connection); both serialise on SQLite's database write lock (`BEGIN IMMEDIATE`, 10 s busy
//! timeout), so the chain stays linear across connections and processes.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::audit::{chain_hash, key_column, AppendOutcome, AuditRecord};
use super::StoreError;

/// Largest number of records written in one transaction.
const MAX_BATCH: usize = 2048;
/// Page cache of the appender connection in KiB (it touches the chain's tail pages only).
const CACHE_KIB: i64 = 2048;
/// Default commit delay under load in µs (`TOBIUME_AUDIT_COMMIT_DELAY_US`; 0 = off; see the module docs).
pub(crate) const DEFAULT_DELAY_US: u64 = 500;
/// Largest accepted commit delay in µs (it adds to the latency of every read under load).
const MAX_DELAY_US: u64 = 10_000;
/// Wait between the first commit after a checkpoint and the next background checkpoint (module docs):
/// at most ten checkpoints a second, each covering every commit of its period.
const CHECKPOINT_PERIOD: Duration = Duration::from_millis(100);

/// The commit delay from `TOBIUME_AUDIT_COMMIT_DELAY_US` ([`parse_delay`]).
fn delay_from_env() -> Duration {
    parse_delay(std::env::var("TOBIUME_AUDIT_COMMIT_DELAY_US").ok().as_deref())
}

/// A commit delay setting in µs, capped at [`MAX_DELAY_US`]; unset or not a whole number:
/// [`DEFAULT_DELAY_US`].
fn parse_delay(setting: Option<&str>) -> Duration {
    let us = setting.and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(DEFAULT_DELAY_US).min(MAX_DELAY_US);
    Duration::from_micros(us)
}

struct Job {
    records: Vec<AuditRecord>,
    expected: Vec<Option<i64>>,
    reply: oneshot::Sender<Result<AppendOutcome, String>>,
}

/// Handle of the appender thread. Cheap to clone; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct AuditWriter {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter").finish_non_exhaustive()
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl AuditWriter {
    /// Opens the appender connection to the (existing, migrated) database file `path` and starts its
    /// thread. Errors: `Database` (cannot open, or cannot start the thread).
    pub(crate) fn open(path: &Path) -> Result<AuditWriter, StoreError> {
        Self::open_with_delay(path, delay_from_env())
    }

    /// [`AuditWriter::open`] with an explicit commit delay under load (module docs). Errors: `Database`.
    pub(crate) fn open_with_delay(path: &Path, delay: Duration) -> Result<AuditWriter, StoreError> {
        let conn = open_connection(path)?;
        // checkpoints run on their own thread (module docs), never inside an appender commit
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;").map_err(db)?;
        let checkpoint_conn = open_connection(path)?;
        let (nudge, nudged) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("tobiume-wal-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpoint_conn, &nudged))
            .map_err(|e| StoreError::Database(format!("cannot start the WAL checkpointer: {e}")))?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tobiume-audit-append".into())
            .spawn(move || run(conn, rx, delay, nudge))
            .map_err(|e| StoreError::Database(format!("cannot start the audit appender: {e}")))?;
        Ok(AuditWriter { tx })
    }

    /// Appends `records` (with the security generation each one's decisions were made under, `None`: no
    /// decision) in the appender's next transaction and waits for its commit. Returns per record its
    /// seq, or `None` when its generation was stale. Errors: `Database` (nothing of the batch written).
    pub(crate) async fn append(
        &self,
        records: Vec<AuditRecord>,
        expected: Vec<Option<i64>>,
    ) -> Result<AppendOutcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { records, expected, reply })
            .map_err(|_| StoreError::Database("audit appender stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Database("audit appender stopped".into()))?
            .map_err(StoreError::Database)
    }
}

/// A read-write connection to `path` with the appender's pragmas (10 s busy timeout). Errors: `Database`.
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(db)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -{CACHE_KIB}; PRAGMA mmap_size = 0; PRAGMA foreign_keys = OFF;"
    ))
    .map_err(db)?;
    Ok(conn)
}

/// The checkpointer thread (module docs): per nudge — coalesced by the one-slot channel — waits
/// [`CHECKPOINT_PERIOD`], then runs one passive checkpoint. Ends when the appender thread ends.
fn checkpoint_loop(conn: &Connection, nudged: &mpsc::Receiver<()>) {
    while nudged.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_PERIOD);
        // a nudge sent during the wait is covered by this checkpoint
        let _ = nudged.try_recv();
        // (busy, frames in the WAL, frames checkpointed); a busy or partial checkpoint is retried after
        // the next commit
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
            tracing::warn!("background WAL checkpoint failed: {e}");
        }
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>, delay: Duration, checkpoint: mpsc::SyncSender<()>) {
    conn.set_prepared_statement_cache_capacity(8);
    let mut jobs: Vec<Job> = Vec::with_capacity(64);
    let mut stats = Stats::default();
    let mut last_batch = 0usize;
    while let Ok(first) = rx.recv() {
        let mut n = first.records.len();
        jobs.push(first);
        n += drain(&rx, &mut jobs, MAX_BATCH.saturating_sub(n));
        // Concurrent requests (this batch or the last one had company): let more of them join this
        // commit. A lone request commits at once.
        if !delay.is_zero() && (n > 1 || last_batch > 1) && n < MAX_BATCH {
            std::thread::sleep(delay);
            n += drain(&rx, &mut jobs, MAX_BATCH.saturating_sub(n));
        } else if n < MAX_BATCH {
            // give the CPU away once so that requests running right now can enqueue too (the yield
            // returns at once when nothing else is runnable)
            std::thread::yield_now();
            n += drain(&rx, &mut jobs, MAX_BATCH.saturating_sub(n));
        }
        last_batch = n;
        stats.batch(n);
        match write_batch(&conn, &jobs) {
            Ok(outcomes) => {
                // full slot: a checkpoint is already due and will cover this commit
                let _ = checkpoint.try_send(());
                for (j, out) in jobs.drain(..).zip(outcomes) {
                    let _ = j.reply.send(Ok(out));
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                // No PHI: a database error message names tables and constraints only.
                tracing::error!(records = n, "audit append failed: {e}");
                let msg = e.to_string();
                for j in jobs.drain(..) {
                    let _ = j.reply.send(Err(msg.clone()));
                }
            }
        }
    }
}

/// Moves up to `room` records' worth of queued jobs into `jobs` without waiting; returns their records.
fn drain(rx: &mpsc::Receiver<Job>, jobs: &mut Vec<Job>, room: usize) -> usize {
    let mut n = 0;
    while n < room {
        match rx.try_recv() {
            Ok(j) => {
                n += j.records.len();
                jobs.push(j);
            }
            Err(_) => break,
        }
    }
    n
}

/// Commits and records per 10 s, logged at debug level (`TOBIUME_LOG=tobiume_gateway::store::sqlite_append=debug`):
/// the mean batch size shows whether group commit works under the current load.
#[derive(Default)]
struct Stats {
    since: Option<Instant>,
    commits: u64,
    records: u64,
}

impl Stats {
    fn batch(&mut self, records: usize) {
        self.commits += 1;
        self.records += records as u64;
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() >= Duration::from_secs(10) {
            tracing::debug!(
                commits = self.commits,
                records = self.records,
                mean_batch = self.records as f64 / self.commits as f64,
                "audit appender"
            );
            *self = Stats { since: Some(Instant::now()), ..Stats::default() };
        }
    }
}

/// One transaction for all `jobs`; per job its [`AppendOutcome`].
fn write_batch(conn: &Connection, jobs: &[Job]) -> rusqlite::Result<Vec<AppendOutcome>> {
    // cached statements: `execute_batch` would parse and plan BEGIN and COMMIT again for every batch
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let (mut seq, mut hash, generation): (i64, String, i64) = conn
        .prepare_cached(
            "SELECT h.seq, h.hash, s.generation FROM audit_head h CROSS JOIN security_state s \
             WHERE h.id = 1 AND s.id = 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit_event (seq, recorded, type_code, subtype, action, outcome, patients, agents, \
         prev_hash, entry_hash, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut wrote = false;
    for j in jobs {
        let mut seqs = Vec::with_capacity(j.records.len());
        for (i, r) in j.records.iter().enumerate() {
            let fresh = j.expected.get(i).copied().flatten().is_none_or(|g| g == generation);
            if !fresh {
                seqs.push(None);
                continue;
            }
            seq += 1;
            let json = r.finish(seq);
            let entry = chain_hash(&hash, &json);
            insert.execute(rusqlite::params![
                seq,
                r.recorded_ms,
                r.type_code,
                r.subtype,
                r.action,
                r.outcome,
                key_column(&r.patients),
                key_column(&r.agents),
                hash,
                entry,
                json,
            ])?;
            hash = entry;
            wrote = true;
            seqs.push(Some(seq));
        }
        outcomes.push(AppendOutcome { generation, seqs });
    }
    if wrote {
        conn.prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")?.execute((seq, &hash))?;
    }
    conn.prepare_cached("COMMIT")?.execute([])?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_delay_setting() {
        assert_eq!(parse_delay(None), Duration::from_micros(DEFAULT_DELAY_US));
        assert_eq!(parse_delay(Some(" 0 ")), Duration::ZERO);
        assert_eq!(parse_delay(Some("400")), Duration::from_micros(400));
        assert_eq!(parse_delay(Some("1e9")), Duration::from_micros(DEFAULT_DELAY_US));
        assert_eq!(parse_delay(Some("-5")), Duration::from_micros(DEFAULT_DELAY_US));
        assert_eq!(parse_delay(Some("99999999")), Duration::from_micros(MAX_DELAY_US));
    }
}
