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
//! Why not sqlx: its SQLite driver runs every statement on a per-connection worker thread and ships each
//! result back over a channel, and the group-commit task was a second hop — together ~15 % of the CPU of
//! a read by id. Here one thread owns the connection; the only hand-off is the job channel and the reply.
//!
//! The data writes keep their sqlx writer (`transaction_audited` appends inside the data transaction on
//! that connection); both serialise on SQLite's database write lock (`BEGIN IMMEDIATE`, 10 s busy
//! timeout), so the chain stays linear across connections and processes.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::audit::{chain_hash, key_column, AppendOutcome, AuditRecord};
use super::StoreError;

/// Largest number of records written in one transaction.
const MAX_BATCH: usize = 2048;
/// Page cache of the appender connection in KiB (it touches the chain's tail pages only).
const CACHE_KIB: i64 = 2048;

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
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
        conn.execute_batch(&format!(
            "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -{CACHE_KIB}; PRAGMA mmap_size = 0; PRAGMA foreign_keys = OFF;"
        ))
        .map_err(db)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tobiume-audit-append".into())
            .spawn(move || run(conn, rx))
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

fn run(conn: Connection, rx: mpsc::Receiver<Job>) {
    conn.set_prepared_statement_cache_capacity(8);
    let mut jobs: Vec<Job> = Vec::with_capacity(64);
    while let Ok(first) = rx.recv() {
        let mut n = first.records.len();
        jobs.push(first);
        // Collect what is queued; when the queue is empty, give the CPU away once so the requests running
        // right now can enqueue too (on 2 cores the runtime's workers are usually runnable): bigger
        // batches, fewer commits (each commit writes WAL frames and takes the shm locks), and no added
        // latency when the server is idle (the yield returns at once).
        let mut yielded = false;
        while n < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.records.len();
                    jobs.push(j);
                }
                Err(_) if !yielded => {
                    yielded = true;
                    std::thread::yield_now();
                }
                Err(_) => break,
            }
        }
        match write_batch(&conn, &jobs) {
            Ok(outcomes) => {
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

/// One transaction for all `jobs`; per job its [`AppendOutcome`].
fn write_batch(conn: &Connection, jobs: &[Job]) -> rusqlite::Result<Vec<AppendOutcome>> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
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
    conn.execute_batch("COMMIT")?;
    Ok(outcomes)
}
