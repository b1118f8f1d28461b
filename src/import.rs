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

use crate::mapping::ssmix2::convert::{convert_patient, ConvertOptions, FileStatus, Summary};
use crate::ssmix2::walk_patients;
use crate::store::{ImportFile, ImportSummary, ImportWrite, LedgerStatus, ResourceBody, ResourceStore, Store, StoreError};
use serde_json::Value;
use sha2::{Digest, Sha256};
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

/// Imports the storage at `root` into `store`. `progress` is called after every file with the running
/// conversion summary (for a progress bar). Errors: see [`ImportError`].
pub async fn import_ssmix2(
    store: &Store,
    root: &Path,
    opts: &ImportOptions,
    mut progress: impl FnMut(&Summary),
) -> Result<ImportReport, ImportError> {
    if !root.exists() {
        return Err(ImportError::Root(root.to_path_buf(), "no such file or directory".into()));
    }
    let mut report = ImportReport::default();
    let mut batch: Vec<ImportFile> = Vec::with_capacity(opts.batch_files);
    let mut quarantine = match &opts.quarantine {
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
    for patient in walk_patients(root) {
        let patient = match patient {
            Ok(p) => p,
            Err(e) => {
                report.conversion.files += 1;
                report.conversion.failed += 1;
                let key = e.path().to_string_lossy().into_owned();
                let err = serde_json::json!({"file": key, "error": e.to_string(), "location": "file name"});
                quarantine_file(&mut quarantine, e.path(), &err)?;
                continue;
            }
        };
        let reports = convert_patient(&patient, &opts.convert);
        for r in reports {
            report.conversion.add(&r);
            let key = ledger_key(root, &r.path);
            let bytes = std::fs::read(&r.path).unwrap_or_default();
            let hash = hex::encode(Sha256::digest(&bytes));
            if let Some(entry) = store.ledger_get(&key).await? {
                if entry.content_sha256 == hash && entry.status == LedgerStatus::Done {
                    report.unchanged_files += 1;
                    progress(&report.conversion);
                    continue;
                }
            }
            let writes: Vec<ImportWrite> = match &r.status {
                FileStatus::Converted => r.resources.into_iter().filter_map(|v| write_of(v, true)).collect(),
                FileStatus::Deleted => r.resources.into_iter().filter_map(|v| write_of(v, false)).collect(),
                FileStatus::Superseded => Vec::new(),
                FileStatus::Failed(err) => {
                    let msg = format!("{} ({})", err.error, err.location);
                    store.ledger_put(&key, &hash, LedgerStatus::Failed, Some(&msg)).await?;
                    let err_json = serde_json::to_value(err).unwrap_or(Value::Null);
                    quarantine_file(&mut quarantine, &r.path, &err_json)?;
                    progress(&report.conversion);
                    continue;
                }
            };
            batch.push(ImportFile { path: key, content_sha256: hash, writes });
            if batch.len() >= opts.batch_files {
                flush(store, &mut batch, &mut report).await?;
            }
            progress(&report.conversion);
        }
    }
    flush(store, &mut batch, &mut report).await?;
    Ok(report)
}

fn write_of(v: Value, keep: bool) -> Option<ImportWrite> {
    let rt = v.get("resourceType")?.as_str()?.to_string();
    let id = v.get("id")?.as_str()?.to_string();
    let body = if keep { Some(ResourceBody::Text(serde_json::to_string(&v).ok()?)) } else { None };
    Some(ImportWrite { resource_type: rt, id, body })
}

async fn flush(store: &Store, batch: &mut Vec<ImportFile>, report: &mut ImportReport) -> Result<(), ImportError> {
    if batch.is_empty() {
        return Ok(());
    }
    let files = std::mem::take(batch);
    let s = store.import_files_batch(files).await?;
    report.store.created += s.created;
    report.store.updated += s.updated;
    report.store.unchanged += s.unchanged;
    report.store.deleted += s.deleted;
    Ok(())
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
