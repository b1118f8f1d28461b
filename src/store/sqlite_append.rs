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
//! **Closing the batch before the delay ends.** Waiting only pays while other requests are still being
//! answered and will join the batch. The HTTP audit layer registers every request that will append for
//! as long as it runs ([`AuditWriter::intent`], an [`AuditIntent`] guard). When every registered request
//! has queued its record and the batch is at least as large as the previous one, nobody else can join:
//! the batch closes at once instead of sleeping out the delay with the CPU idle. (Short reads at 32
//! connections: every request was waiting on the sleep, 24 % of the CPU idle, and the batch carried ~28
//! of the 32.) The previous batch's size is the floor so that the lull right after a commit — the
//! answered requests gone, their clients' next requests not yet arrived — does not close a batch of a
//! few records: that would raise the commit rate, which costs CPU per record and the readers' page
//! caches. The requester whose record completes the set wakes the thread (one wake-up per batch; the
//! others only queue). Appends made outside an HTTP request (none registered) keep the plain delay.
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
//! **WAL restart.** A passive checkpoint copies frames back but never lets the log start over: SQLite
//! reuses the WAL from its beginning only when a write transaction starts while every frame is
//! checkpointed and no reader uses the log. Under sustained reads the appender commits every few hundred
//! µs, so that moment never comes and the WAL grew without bound — 14 GB after ~10 minutes of benchmark
//! reads at 5,000 patients, with a bigger `-shm` index that every read transaction consults. When a
//! passive checkpoint leaves more than [`RESTART_FRAMES`] frames in the log, the checkpointer runs
//! `PRAGMA wal_checkpoint(RESTART)`: it holds the write lock (commits wait on their busy timeout for a few
//! ms), copies the frames written since the passive pass, waits for the readers still on the log (point
//! reads: µs) and restarts it, so the file stays near that size.
//!
//! The data writes keep their sqlx writer (`transaction_audited` appends inside the data transaction on
//! that connection); both serialise on SQLite's database write lock (`BEGIN IMMEDIATE`, 10 s busy
//! timeout), so the chain stays linear across connections and processes.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
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
/// WAL length in frames (pages: 256 MiB at 8 KiB) above which the checkpointer restarts the log after its
/// passive checkpoint (module docs, "WAL restart").
const RESTART_FRAMES: i64 = 32_768;

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
    gauge: Arc<Gauge>,
}

/// Who could still join the open batch (module docs, "Closing the batch before the delay ends").
#[derive(Default)]
struct Gauge {
    /// Registered requests that have not finished ([`AuditIntent`]s alive).
    in_flight: AtomicUsize,
    /// Jobs sent and not yet answered.
    waiting: AtomicUsize,
    /// Jobs of the previous batch: the smallest batch that may close early.
    last_jobs: AtomicUsize,
    /// The appender thread, woken by the requester that completes the set.
    appender: OnceLock<std::thread::Thread>,
}

impl Gauge {
    /// `true` when a batch of `jobs` jobs holds every registered request's record and is not smaller
    /// than the previous batch (none registered: `false`, the delay applies).
    fn complete(&self, jobs: usize) -> bool {
        let in_flight = self.in_flight.load(Ordering::Acquire);
        in_flight > 0 && jobs >= in_flight && jobs >= self.last_jobs.load(Ordering::Relaxed)
    }

    /// Wakes the appender when [`Gauge::complete`] holds for the jobs waiting now.
    fn wake_if_complete(&self) {
        if self.complete(self.waiting.load(Ordering::Acquire)) {
            if let Some(t) = self.appender.get() {
                t.unpark();
            }
        }
    }
}

/// A request that will append to the audit trail, registered for as long as it lives (module docs of
/// `store::sqlite_append`, "Closing the batch before the delay ends"): create it when the request starts
/// and drop it after the request's append has returned. Only timing depends on it — a record is
/// committed before its response either way. From [`crate::store::Store::audit_intent`]; a no-op on
/// PostgreSQL.
pub struct AuditIntent(Option<Arc<Gauge>>);

impl AuditIntent {
    /// A guard that registers nothing (stores without an appender thread).
    pub(crate) fn none() -> AuditIntent {
        AuditIntent(None)
    }
}

impl Drop for AuditIntent {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.in_flight.fetch_sub(1, Ordering::AcqRel);
            // a request that ends without appending may leave only waiting ones behind
            g.wake_if_complete();
        }
    }
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
        Self::open_with(path, delay_from_env(), RESTART_FRAMES)
    }

    /// [`AuditWriter::open`] with an explicit commit delay under load and WAL length (frames) that
    /// triggers a restart (module docs). Errors: `Database`.
    fn open_with(path: &Path, delay: Duration, restart_frames: i64) -> Result<AuditWriter, StoreError> {
        let conn = open_connection(path)?;
        // checkpoints run on their own thread (module docs), never inside an appender commit
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;").map_err(db)?;
        let checkpoint_conn = open_connection(path)?;
        let (nudge, nudged) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("tobiume-wal-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpoint_conn, &nudged, restart_frames))
            .map_err(|e| StoreError::Database(format!("cannot start the WAL checkpointer: {e}")))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let gauge = Arc::new(Gauge::default());
        let thread_gauge = gauge.clone();
        let handle = std::thread::Builder::new()
            .name("tobiume-audit-append".into())
            .spawn(move || run(conn, rx, delay, nudge, &thread_gauge))
            .map_err(|e| StoreError::Database(format!("cannot start the audit appender: {e}")))?;
        let _ = gauge.appender.set(handle.thread().clone());
        Ok(AuditWriter { tx, gauge })
    }

    /// Registers a request that will append (see [`AuditIntent`]).
    pub(crate) fn intent(&self) -> AuditIntent {
        self.gauge.in_flight.fetch_add(1, Ordering::AcqRel);
        AuditIntent(Some(self.gauge.clone()))
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
        // counted before the send, so that the thread's decrement after the commit never comes first
        self.gauge.waiting.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Job { records, expected, reply }).is_err() {
            self.gauge.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Database("audit appender stopped".into()));
        }
        self.gauge.wake_if_complete();
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
/// [`CHECKPOINT_PERIOD`], then runs one passive checkpoint, and a restarting one when the log is longer
/// than `restart_frames`. Ends when the appender thread ends.
fn checkpoint_loop(conn: &Connection, nudged: &mpsc::Receiver<()>, restart_frames: i64) {
    while nudged.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_PERIOD);
        // a nudge sent during the wait is covered by this checkpoint
        let _ = nudged.try_recv();
        // (busy, frames in the WAL, frames checkpointed); a busy or partial checkpoint is retried after
        // the next commit
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
            Ok(frames) if frames > restart_frames => {
                if let Err(e) =
                    conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0))
                {
                    tracing::warn!("WAL restart failed: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("background WAL checkpoint failed: {e}"),
        }
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>, delay: Duration, checkpoint: mpsc::SyncSender<()>, gauge: &Gauge) {
    conn.set_prepared_statement_cache_capacity(8);
    let mut jobs: Vec<Job> = Vec::with_capacity(64);
    let mut stats = Stats::default();
    let mut last_batch = 0usize;
    while let Ok(first) = rx.recv() {
        let mut n = first.records.len();
        jobs.push(first);
        n += drain(&rx, &mut jobs, MAX_BATCH.saturating_sub(n));
        // Concurrent requests (this batch or the last one had company): let more of them join this
        // commit, until the delay ends or every registered request is in (module docs). A lone
        // request commits at once.
        if !delay.is_zero() && (n > 1 || last_batch > 1) && n < MAX_BATCH {
            let deadline = Instant::now() + delay;
            loop {
                if gauge.complete(jobs.len()) {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                // woken early by the requester that completes the set (or spuriously: check again)
                std::thread::park_timeout(deadline - now);
                n += drain(&rx, &mut jobs, MAX_BATCH.saturating_sub(n));
                if n >= MAX_BATCH {
                    break;
                }
            }
        } else if n < MAX_BATCH {
            // give the CPU away once so that requests running right now can enqueue too (the yield
            // returns at once when nothing else is runnable)
            std::thread::yield_now();
            n += drain(&rx, &mut jobs, MAX_BATCH.saturating_sub(n));
        }
        last_batch = n;
        stats.batch(n);
        let result = write_batch(&conn, &jobs);
        gauge.last_jobs.store(jobs.len(), Ordering::Relaxed);
        gauge.waiting.fetch_sub(jobs.len(), Ordering::AcqRel);
        match result {
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

    /// Largest WAL file size (bytes) seen while one appender with `restart_frames` commits single 2 kB
    /// records back to back for 3 s, with two threads running short reads all the time; and the commits.
    /// (3 s, not less: the file keeps the largest size it reached, so on a busy machine, where the
    /// checkpointer thread gets its first turn late, a short run measures mostly that start.)
    async fn largest_wal(restart_frames: i64) -> (u64, usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        // migrated file (audit tables, WAL mode); the store's own appender stays idle
        let _store = crate::store::Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        let writer = AuditWriter::open_with(&path, Duration::ZERO, restart_frames).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (path, stop) = (path.clone(), stop.clone());
                std::thread::spawn(move || {
                    let c = Connection::open_with_flags(
                        &path,
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                    )
                    .unwrap();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let _: i64 = c
                            .query_row("SELECT seq FROM audit_head", [], |r| r.get(0))
                            .unwrap();
                    }
                })
            })
            .collect();
        let wal = path.with_extension("db-wal");
        let (mut largest, mut commits) = (0, 0);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(3000) {
            writer.append(vec![record(commits, 2000)], vec![None]).await.unwrap();
            commits += 1;
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        readers.into_iter().for_each(|r| r.join().unwrap());
        (largest, commits)
    }

    /// Under a steady stream of reads and commits the WAL is restarted once it passes the threshold
    /// (module docs, "WAL restart"); without restarts (the control) it grows with every commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_under_reads() {
        let (unbounded, n0) = largest_wal(i64::MAX).await;
        let (bounded, n1) = largest_wal(64).await;
        // the control must show the growth, else this test would prove nothing
        assert!(
            unbounded > 2000 * n0 as u64,
            "control WAL {unbounded} bytes after {n0} commits"
        );
        // 30 checkpoint periods in 3 s: a restarted log holds about one period's commits (measured:
        // 1/8 of the control per commit)
        let (per_commit, control) = (bounded as f64 / n1 as f64, unbounded as f64 / n0 as f64);
        assert!(
            per_commit * 3.0 < control,
            "WAL reached {bounded} bytes after {n1} commits (control: {unbounded} after {n0})"
        );
    }

    /// A read record numbered `n` whose JSON carries `pad` bytes of padding.
    fn record(n: usize, pad: usize) -> AuditRecord {
        AuditRecord {
            json: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(pad)),
            recorded_ms: n as i64,
            type_code: "rest".into(),
            subtype: Some("read".into()),
            action: "R".into(),
            outcome: "0".into(),
            patients: vec![format!("p{n}")],
            agents: vec![],
        }
    }

    /// Time until both appends of this scenario are committed, with a 2 s commit delay: request A appends
    /// two records (a batch with company: the delay applies), request B one record 50 ms later; `intents`
    /// requests are registered, and the ones beyond A and B end without appending after 150 ms.
    async fn two_appends(intents: usize) -> Duration {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        let _store = crate::store::Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        let writer = AuditWriter::open_with(&path, Duration::from_secs(2), RESTART_FRAMES).unwrap();
        let mut guards: Vec<AuditIntent> = (0..intents).map(|_| writer.intent()).collect();
        let (b_guard, a_guard) = (guards.pop(), guards.pop());
        let start = Instant::now();
        let a = {
            let w = writer.clone();
            tokio::spawn(async move {
                let out = w.append(vec![record(1, 0), record(2, 0)], vec![None, None]).await.unwrap();
                drop(a_guard);
                out
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let b = {
            let w = writer.clone();
            tokio::spawn(async move {
                let out = w.append(vec![record(3, 0)], vec![None]).await.unwrap();
                drop(b_guard);
                out
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(guards);
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        // one batch: consecutive seqs
        assert_eq!((a.seqs, b.seqs), (vec![Some(1), Some(2)], vec![Some(3)]));
        start.elapsed()
    }

    /// The batch closes as soon as every registered request has queued its record (module docs,
    /// "Closing the batch before the delay ends"); with nobody registered the delay is slept out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_closes_when_every_registered_request_is_in() {
        // control: no request registered, the 2 s delay applies
        assert!(two_appends(0).await >= Duration::from_secs(2));
        // A and B registered: closed when B's record arrives (~50 ms)
        assert!(two_appends(2).await < Duration::from_millis(1000));
        // a third registered request ends at ~150 ms without appending: its end closes the batch
        let t = two_appends(3).await;
        assert!(t >= Duration::from_millis(150) && t < Duration::from_millis(1000), "{t:?}");
    }

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
