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
use crate::ssmix2::walk_patients;
use crate::store::{
    ImportFile, ImportSummary, ImportWrite, LedgerStatus, PreparedImport, ResourceBody, ResourceStore, Store, StoreError,
};
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
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { convert: ConvertOptions::default(), quarantine: None, batch_files: 256 }
    }
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
/// Two stages run concurrently (one core each on a 2-core machine): a worker thread walks the storage
/// patient by patient, skips files the ledger already holds with the same sha256 (one ledger query per
/// patient), converts the rest and prepares the store writes (JSON + search-index extraction,
/// [`PreparedImport::prepare`]); the calling task commits the prepared batches
/// ([`Store::apply_import`]). A bounded channel (2 batches) keeps memory flat in corpus size.
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
                    match store.apply_import(prepared).await {
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
    let _ = tokio::task::spawn_blocking(move || producer.join()).await;
    result?;
    // Benchmark knob (bench/server.sh imports a large corpus in chunks, deleting each after its import):
    // leave the bulk load open so the next import resumes it and the indexes are built once at the end.
    let keep_open = std::env::var("TOBIUME_IMPORT_CONTINUE_BULK_LOAD").is_ok_and(|v| v == "1");
    if bulk && !keep_open {
        store.finish_bulk_load().await?;
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

/// The worker-thread stage of [`import_ssmix2`]: walk, ledger check, convert, prepare, send.
fn produce(
    store: &Store,
    root: &Path,
    opts: &ImportOptions,
    mut quarantine: Option<(PathBuf, std::fs::File)>,
    handle: &tokio::runtime::Handle,
    tx: &Sender,
) {
    let mut convert = opts.convert.clone();
    convert.hash_content = true;
    let registry = store.registry().clone();
    let mut summary = Summary::default();
    let mut batch: Vec<ImportFile> = Vec::with_capacity(opts.batch_files);
    let send_batch = |batch: &mut Vec<ImportFile>, summary: &Summary| -> bool {
        let files = std::mem::take(batch);
        let msg = PreparedImport::prepare(&registry, files).map(|p| (p, summary.clone())).map_err(ImportError::Store);
        tx.blocking_send(msg).is_ok()
    };
    for patient in walk_patients(root) {
        let patient = match patient {
            Ok(p) => p,
            Err(e) => {
                summary.files += 1;
                summary.failed += 1;
                let err = serde_json::json!({"file": e.path(), "error": e.to_string(), "location": "file name"});
                if let Err(e) = quarantine_file(&mut quarantine, e.path(), &err) {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
                continue;
            }
        };
        let keys: Vec<String> = patient.files.iter().map(|f| ledger_key(root, &f.path)).collect();
        let ledger = match handle.block_on(store.ledger_get_many(&keys)) {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.blocking_send(Err(ImportError::Store(e)));
                return;
            }
        };
        let unchanged = |path: &Path, sha: &str| {
            ledger
                .get(&ledger_key(root, path))
                .is_some_and(|e| e.content_sha256 == sha && e.status == LedgerStatus::Done)
        };
        for r in convert_patient_with(&patient, &convert, &unchanged) {
            summary.add(&r);
            let key = ledger_key(root, &r.path);
            let hash = r.sha256.clone().unwrap_or_default();
            let writes: Vec<ImportWrite> = match &r.status {
                FileStatus::Unchanged => continue,
                FileStatus::Converted => r.resources.into_iter().filter_map(|v| write_of(v, true)).collect(),
                FileStatus::Deleted => r.resources.into_iter().filter_map(|v| write_of(v, false)).collect(),
                FileStatus::Superseded => Vec::new(),
                FileStatus::Failed(err) => {
                    let msg = format!("{} ({})", err.error, err.location);
                    if let Err(e) = handle.block_on(store.ledger_put(&key, &hash, LedgerStatus::Failed, Some(&msg))) {
                        let _ = tx.blocking_send(Err(ImportError::Store(e)));
                        return;
                    }
                    let err_json = serde_json::to_value(err).unwrap_or(Value::Null);
                    if let Err(e) = quarantine_file(&mut quarantine, &r.path, &err_json) {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                    continue;
                }
            };
            batch.push(ImportFile { path: key, content_sha256: hash, writes });
            if batch.len() >= opts.batch_files && !send_batch(&mut batch, &summary) {
                return;
            }
        }
    }
    let _ = send_batch(&mut batch, &summary);
}

fn write_of(v: Value, keep: bool) -> Option<ImportWrite> {
    let rt = v.get("resourceType")?.as_str()?.to_string();
    let id = v.get("id")?.as_str()?.to_string();
    let body = if keep { Some(ResourceBody::Json(v)) } else { None };
    Some(ImportWrite { resource_type: rt, id, body })
}

/// Ledger key: the path relative to the storage root (stable when the root is moved).
fn ledger_key(root: &Path, path: &Path) -> String {
    let base = if root.is_file() { root.parent().unwrap_or(root) } else { root };
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
