//! `import ssmix2`: streams an SS-MIX2 storage tree through the conversion core into the store.
//!
//! * idempotent: each file's sha256 is recorded in the store's import ledger in the SAME transaction as
//!   its resources; a file whose ledger hash matches is skipped, and unchanged resources get no new
//!   version (the store compares content hashes);
//! * crash-safe: killed at any point (SIGKILL), a rerun resumes — batches commit atomically with their
//!   ledger rows, so no resource is duplicated or lost;
//! * condition flags: superseded files write nothing; a deleted group (no flag-1 file) deletes the
//!   resources its newest file maps to;
//! * failed files are copied to the quarantine directory with a JSON report line each
//!   (`quarantine/report.ndjson`), and recorded in the ledger as failed; the rest of the import goes on.

use crate::mapping::ssmix2::convert::{convert_patient_with, ConvertOptions, FileStatus, Summary};
use crate::ssmix2::{walk_patients, PatientFiles, WalkError};
use crate::search::Registry;
use crate::store::{
    ImportFile, ImportSummary, ImportWrite, LedgerStatus, PreparedImport, ResourceBody, ResourceStore, Store, StoreError,
};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Options of an import run.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Conversion options (charset, identity mode, facility code).
    pub convert: ConvertOptions,
    /// Where failed files are copied, with `report.ndjson`; `None` = no copies (report only in the summary).
    pub quarantine: Option<PathBuf>,
    /// Files per database transaction (throughput vs. work lost on a crash; default 256).
    pub batch_files: usize,
    /// Conversion worker threads (`--jobs`); 0 = [`default_jobs`]. The store contents do not depend on it.
    pub jobs: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { convert: ConvertOptions::default(), quarantine: None, batch_files: 256, jobs: 0 }
    }
}

/// Number of conversion workers when [`ImportOptions::jobs`] is 0: `TOBIUME_IMPORT_JOBS` when set to a
/// positive integer, else the available cores (`std::thread::available_parallelism`), at least 1.
pub fn default_jobs() -> usize {
    if let Some(n) = std::env::var("TOBIUME_IMPORT_JOBS").ok().and_then(|v| v.trim().parse::<usize>().ok()) {
        if n > 0 {
            return n;
        }
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Conversion totals (files, converted, superseded, deleted, failed, warnings, resources, bytes).
    pub conversion: Summary,
    /// Files skipped because the ledger already holds them with the same content.
    pub unchanged_files: u64,
    /// Store totals (created, updated, unchanged, deleted resources).
    pub store: ImportSummary,
    /// Wall time of the rebuild of the deferred search indexes at the end of a bulk load
    /// ([`Store::finish_bulk_load`]); `None` when this import was not a bulk load or left it open
    /// (`TOBIUME_IMPORT_CONTINUE_BULK_LOAD=1`).
    pub index_build: Option<std::time::Duration>,
}

/// Errors that stop an import (per-file problems never do).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The storage root cannot be read.
    #[error("cannot read {0}: {1}")]
    Root(PathBuf, String),
    /// The store failed (database down, disk full).
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// The quarantine directory cannot be written.
    #[error("quarantine: {0}")]
    Quarantine(std::io::Error),
}

/// Imports the storage at `root` into `store`. `progress` is called after every committed batch with
/// the running conversion summary (for a progress bar). Errors: see [`ImportError`].
///
/// Pipeline (see `docs/architecture.md`, `import`):
/// * a walker thread lists the storage patient by patient and deals the patients round-robin to
///   `jobs` conversion workers ([`ImportOptions::jobs`]);
/// * each worker, per patient: one ledger query, skips files the ledger holds with the same sha256,
///   converts the rest (read, decode, map) and prepares their store writes (JSON text, content hash,
///   search-index rows: [`PreparedImport::prepare`]);
/// * a sequencer thread takes the workers' results back in the walk order (round-robin again, so the
///   order never depends on thread scheduling), records failed files (ledger + quarantine) and cuts
///   batches of `batch_files` files;
/// * the calling task commits each batch with its ledger rows in one transaction
///   ([`Store::import_writer`]: on SQLite a rusqlite connection with cached statements).
///
/// The store receives exactly the writes, in exactly the batches, of a single-worker run. All channels
/// are bounded, so memory stays flat in corpus size.
///
/// An import into an empty store is a bulk load ([`Store::begin_bulk_load`]): the secondary search
/// indexes are built once at the end. If the import fails or is killed, they stay missing until the
/// next import (which resumes the bulk load) or `serve` start ([`Store::repair_bulk_load`]).
pub async fn import_ssmix2(
    store: &Store,
    root: &Path,
    opts: &ImportOptions,
    mut progress: impl FnMut(&Summary),
) -> Result<ImportReport, ImportError> {
    if !root.exists() {
        return Err(ImportError::Root(root.to_path_buf(), "no such file or directory".into()));
    }
    let quarantine = match &opts.quarantine {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(ImportError::Quarantine)?;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("report.ndjson"))
                .map_err(ImportError::Quarantine)?;
            Some((dir.clone(), f))
        }
        None => None,
    };
    // An initial load (empty store, or a resumed interrupted one) defers the secondary search indexes.
    let bulk = store.begin_bulk_load().await?;
    let mut writer = store.import_writer(bulk)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(PreparedImport, Summary), ImportError>>(2);
    let producer = {
        let store = store.clone();
        let root = root.to_path_buf();
        let opts = opts.clone();
        let handle = tokio::runtime::Handle::current();
        std::thread::spawn(move || produce(&store, &root, &opts, quarantine, &handle, &tx))
    };
    let mut report = ImportReport::default();
    let mut result = Ok(());
    while let Some(msg) = rx.recv().await {
        match msg {
            Ok((prepared, summary)) => {
                if prepared.files() > 0 {
                    match writer.apply(prepared).await {
                        Ok(s) => {
                            report.store.created += s.created;
                            report.store.updated += s.updated;
                            report.store.unchanged += s.unchanged;
                            report.store.deleted += s.deleted;
                        }
                        Err(e) => {
                            result = Err(ImportError::Store(e));
                            break;
                        }
                    }
                }
                report.conversion = summary;
                progress(&report.conversion);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    drop(rx);
    drop(writer);
    let _ = tokio::task::spawn_blocking(move || producer.join()).await;
    result?;
    // Benchmark knob (bench/server.sh imports a large corpus in chunks, deleting each after its import):
    // leave the bulk load open so the next import resumes it and the indexes are built once at the end.
    let keep_open = std::env::var("TOBIUME_IMPORT_CONTINUE_BULK_LOAD").is_ok_and(|v| v == "1");
    if bulk && !keep_open {
        let started = std::time::Instant::now();
        store.finish_bulk_load().await?;
        report.index_build = Some(started.elapsed());
    }
    report.unchanged_files = report.conversion.unchanged;
    if !keep_open && report.store.created + report.store.updated + report.store.deleted > 0 {
        // Refresh planner statistics: without them SQLite picks poor indexes after a bulk load
        // (Observation?patient=&code=&_sort=-date went from ~1 ms to ~800 ms at 20,000 patients).
        store.analyze().await?;
    }
    Ok(report)
}

type Sender = tokio::sync::mpsc::Sender<Result<(PreparedImport, Summary), ImportError>>;

/// One file of a patient as a worker hands it to the sequencer (storage order kept).
struct FileItem {
    /// This file's contribution to the conversion totals.
    summary: Summary,
    action: FileAction,
}

enum FileAction {
    /// Nothing to write (unchanged by ledger hash).
    Skip,
    /// Prepared writes (possibly none, e.g. a superseded file) + the ledger row.
    Write(PreparedImport),
    /// A failed file: ledger row (key, sha256, message) and quarantine copy + report line.
    Failed { key: String, hash: String, message: String, path: PathBuf, report: Value },
    /// A walk error (bad name, unreadable directory): quarantine report only.
    Unreadable { path: PathBuf, report: Value },
}

type PatientItems = Result<Vec<FileItem>, ImportError>;

/// The producer side of [`import_ssmix2`]: walker + `jobs` workers + the sequencer (this thread), which
/// sends finished batches to the committing task through `tx`.
fn produce(
    store: &Store,
    root: &Path,
    opts: &ImportOptions,
    mut quarantine: Option<(PathBuf, std::fs::File)>,
    handle: &tokio::runtime::Handle,
    tx: &Sender,
) {
    let jobs = if opts.jobs == 0 { default_jobs() } else { opts.jobs };
    let mut convert = opts.convert.clone();
    convert.hash_content = true;
    let registry = store.registry().clone();
    let base = ledger_base(root);
    std::thread::scope(|scope| {
        let mut to_workers: Vec<SyncSender<Result<PatientFiles, WalkError>>> = Vec::with_capacity(jobs);
        let mut from_workers: Vec<Receiver<PatientItems>> = Vec::with_capacity(jobs);
        for _ in 0..jobs {
            let (in_tx, in_rx) = sync_channel::<Result<PatientFiles, WalkError>>(4);
            let (out_tx, out_rx) = sync_channel::<PatientItems>(4);
            to_workers.push(in_tx);
            from_workers.push(out_rx);
            let (convert, registry) = (&convert, &registry);
            scope.spawn(move || {
                for patient in in_rx {
                    let items = convert_patient_items(store, base, convert, registry, handle, patient);
                    let failed = items.is_err();
                    if out_tx.send(items).is_err() || failed {
                        return;
                    }
                }
            });
        }
        // Walker: deals patients round-robin; stops when a worker is gone (the import is ending).
        scope.spawn(move || {
            for (i, patient) in walk_patients(root).enumerate() {
                if to_workers[i % to_workers.len()].send(patient).is_err() {
                    return;
                }
            }
        });
        // Sequencer: results back in walk order.
        let mut summary = Summary::default();
        let mut batch = PreparedImport::default();
        let send_batch = |batch: &mut PreparedImport, summary: &Summary| -> bool {
            tx.blocking_send(Ok((std::mem::take(batch), summary.clone()))).is_ok()
        };
        let mut i = 0usize;
        loop {
            let items = match from_workers[i % jobs].recv() {
                Ok(Ok(items)) => items,
                Ok(Err(e)) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
                Err(_) => break, // the walk ended before patient `i`
            };
            i += 1;
            for item in items {
                summary.merge(&item.summary);
                match item.action {
                    FileAction::Skip => {}
                    FileAction::Write(p) => {
                        batch.append(p);
                        if batch.files() >= opts.batch_files && !send_batch(&mut batch, &summary) {
                            return;
                        }
                    }
                    FileAction::Failed { key, hash, message, path, report } => {
                        if let Err(e) = handle.block_on(store.ledger_put(&key, &hash, LedgerStatus::Failed, Some(&message))) {
                            let _ = tx.blocking_send(Err(ImportError::Store(e)));
                            return;
                        }
                        if let Err(e) = quarantine_file(&mut quarantine, &path, &report) {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                    FileAction::Unreadable { path, report } => {
                        if let Err(e) = quarantine_file(&mut quarantine, &path, &report) {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                }
            }
        }
        let _ = send_batch(&mut batch, &summary);
        // Dropping `from_workers` here (early return or end) stops the workers and the walker.
    });
}

/// Worker stage of [`import_ssmix2`] for one patient: ledger check, convert, prepare each file's writes.
fn convert_patient_items(
    store: &Store,
    base: &Path,
    convert: &ConvertOptions,
    registry: &Registry,
    handle: &tokio::runtime::Handle,
    patient: Result<PatientFiles, WalkError>,
) -> PatientItems {
    let patient = match patient {
        Ok(p) => p,
        Err(e) => {
            let report = serde_json::json!({"file": e.path(), "error": e.to_string(), "location": "file name"});
            let summary = Summary { files: 1, failed: 1, ..Summary::default() };
            return Ok(vec![FileItem { summary, action: FileAction::Unreadable { path: e.path().to_path_buf(), report } }]);
        }
    };
    let keys: Vec<String> = patient.files.iter().map(|f| ledger_key(base, &f.path)).collect();
    let ledger = handle.block_on(store.ledger_get_many(&keys))?;
    let unchanged = |path: &Path, sha: &str| {
        ledger
            .get(&ledger_key(base, path))
            .is_some_and(|e| e.content_sha256 == sha && e.status == LedgerStatus::Done)
    };
    let reports = convert_patient_with(&patient, convert, &unchanged);
    let mut items = Vec::with_capacity(reports.len());
    for r in reports {
        let mut summary = Summary::default();
        summary.add(&r);
        let key = ledger_key(base, &r.path);
        let hash = r.sha256.clone().unwrap_or_default();
        let writes: Vec<ImportWrite> = match r.status {
            FileStatus::Unchanged => {
                items.push(FileItem { summary, action: FileAction::Skip });
                continue;
            }
            FileStatus::Converted => r.resources.into_iter().filter_map(|v| write_of(v, true)).collect(),
            FileStatus::Deleted => r.resources.into_iter().filter_map(|v| write_of(v, false)).collect(),
            FileStatus::Superseded => Vec::new(),
            FileStatus::Failed(err) => {
                let message = format!("{} ({})", err.error, err.location);
                let report = serde_json::to_value(&err).unwrap_or(Value::Null);
                items.push(FileItem { summary, action: FileAction::Failed { key, hash, message, path: r.path, report } });
                continue;
            }
        };
        let prepared = PreparedImport::prepare(registry, vec![ImportFile { path: key, content_sha256: hash, writes }])?;
        items.push(FileItem { summary, action: FileAction::Write(prepared) });
    }
    Ok(items)
}

fn write_of(v: Value, keep: bool) -> Option<ImportWrite> {
    let rt = v.get("resourceType")?.as_str()?.to_string();
    let id = v.get("id")?.as_str()?.to_string();
    let body = if keep { Some(ResourceBody::Json(v)) } else { None };
    Some(ImportWrite { resource_type: rt, id, body })
}

/// The directory ledger keys are relative to: the storage root, or a single file's directory.
fn ledger_base(root: &Path) -> &Path {
    if root.is_file() {
        root.parent().unwrap_or(root)
    } else {
        root
    }
}

/// Ledger key: the path relative to [`ledger_base`] (stable when the root is moved).
fn ledger_key(base: &Path, path: &Path) -> String {
    path.strip_prefix(base).unwrap_or(path).to_string_lossy().into_owned()
}

fn quarantine_file(q: &mut Option<(PathBuf, std::fs::File)>, path: &Path, err: &Value) -> Result<(), ImportError> {
    let Some((dir, report)) = q else { return Ok(()) };
    if path.is_file() {
        let name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        let _ = std::fs::copy(path, dir.join(name));
    }
    writeln!(report, "{err}").map_err(ImportError::Quarantine)?;
    Ok(())
}
