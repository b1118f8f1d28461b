//! Converting an SS-MIX2 storage patient by patient: read → decode ([`crate::hl7v2`]) → version
//! resolution ([`crate::ssmix2`]) → map ([`map_message`]). Shared by the `convert` and `import` commands.
//!
//! Bad input never stops the run: each file ends as [`FileStatus::Converted`], [`FileStatus::Superseded`],
//! [`FileStatus::Deleted`] or [`FileStatus::Failed`] with a [`FileError`] saying what and where.

use super::{identity_of, map_message, Identity, Options, Source};
use crate::hl7v2::{Charset, DecodeOptions, Message};
use crate::mapping::WarningKind;
use crate::ssmix2::{PatientFiles, StorageFile, VersionStatus};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What to do when a file's PID disagrees with the storage (`--identity`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdentityMode {
    /// The directory's patient id wins; disagreements are warnings (default, for trusted sources).
    #[default]
    Lenient,
    /// Files whose PID-3, name, birth date or sex disagree are failed and quarantined.
    Strict,
}

/// Options of a conversion run.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Charset override for sources that mislabel MSH-18.
    pub charset: Charset,
    /// Identity handling.
    pub identity: IdentityMode,
    /// 10-digit 医療機関コード of the source facility (see [`Options::facility_code`]).
    pub facility_code: Option<String>,
    /// Compute each file's sha256 ([`FileReport::sha256`]), for an importer's ledger.
    pub hash_content: bool,
}

/// Why a file could not be converted (one JSON object per failed file on the CLI's stderr).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub file: PathBuf,
    /// Its SS-MIX2 data type, when the name could be parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// What is wrong (no patient names, birth dates or insurance numbers).
    pub error: String,
    /// Where: a segment/field (`PID-3`), `file name`, `placement` or `content`.
    pub location: String,
}

/// Outcome of one file.
#[derive(Debug, Clone, PartialEq)]
pub enum FileStatus {
    /// Current version, converted into `resources`.
    Converted,
    /// An older version of data that a newer file replaces (nothing emitted).
    Superseded,
    /// The newest file of a group without any valid (flag 1) file: the data were deleted. `resources`
    /// holds what the file maps to, so an importer knows which resource ids to delete.
    Deleted,
    /// Skipped: the caller's `unchanged` check (an import ledger) says this exact content is already done.
    Unchanged,
    /// Failed; see the error.
    Failed(FileError),
}

/// The report for one file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Its data type.
    pub data_type: String,
    /// Outcome.
    pub status: FileStatus,
    /// Resources produced (for `Converted`) or to be deleted (for `Deleted`).
    pub resources: Vec<Value>,
    /// Warnings (decode + mapping), rendered; no PHI.
    pub warnings: Vec<String>,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// sha256 hex of the file's bytes (when [`ConvertOptions::hash_content`] is set and the file was read).
    pub sha256: Option<String>,
    /// The identity the message's PID asserts (filled for converted files), used to check the other
    /// files of the patient against its ADT-00.
    pub identity: Option<Identity>,
}

/// Converts all files of one patient directory.
///
/// Input: the patient's files from [`crate::ssmix2::walk_patients`]. Output: one [`FileReport`] per
/// file plus one failed report per walk error inside the patient directory. ADT-00 is mapped first so
/// its identity can be checked against the other files. Never panics on file content.
pub fn convert_patient(p: &PatientFiles, opts: &ConvertOptions) -> Vec<FileReport> {
    convert_patient_with(p, opts, &|_, _| false)
}

/// Like [`convert_patient`], reading each file once and asking `unchanged(path, sha256)` (only when
/// [`ConvertOptions::hash_content`] is set) whether its exact content was already imported: such files
/// are reported [`FileStatus::Unchanged`] without being mapped (an unchanged ADT-00 is still parsed for
/// its identity).
pub fn convert_patient_with(
    p: &PatientFiles,
    opts: &ConvertOptions,
    unchanged: &dyn Fn(&Path, &str) -> bool,
) -> Vec<FileReport> {
    let decisions = p.resolve();
    let mut reports = Vec::with_capacity(p.files.len() + p.errors.len());
    for e in &p.errors {
        reports.push(failed(e.path(), None, e.to_string(), "file name"));
    }
    // Order: ADT-00 first, then storage order.
    let mut order: Vec<usize> = (0..p.files.len()).collect();
    order.sort_by_key(|&i| if p.files[i].name.data_type.as_str() == "ADT-00" { 0 } else { 1 });
    let mut reference: Option<Identity> = None;
    for i in order {
        let f = &p.files[i];
        let status = &decisions[i].status;
        let report = match status {
            VersionStatus::Misplaced => {
                let problems: Vec<String> = f.placement.iter().map(|x| x.to_string()).collect();
                let mut r = failed(&f.path, Some(f.name.data_type.as_str()), problems.join("; "), "placement");
                if let Ok(b) = std::fs::read(&f.path) {
                    r.bytes = b.len() as u64;
                    r.sha256 = opts.hash_content.then(|| sha256_hex(&b));
                }
                r
            }
            VersionStatus::Superseded { .. } => {
                let (bytes, sha256) = if opts.hash_content {
                    match std::fs::read(&f.path) {
                        Ok(b) => (b.len() as u64, Some(sha256_hex(&b))),
                        Err(_) => (0, None),
                    }
                } else {
                    (file_len(&f.path), None)
                };
                FileReport {
                    path: f.path.clone(),
                    data_type: f.name.data_type.as_str().to_string(),
                    status: FileStatus::Superseded,
                    resources: Vec::new(),
                    warnings: Vec::new(),
                    bytes,
                    sha256,
                    identity: None,
                }
            }
            VersionStatus::Current { .. } | VersionStatus::Deleted => {
                let bytes = match std::fs::read(&f.path) {
                    Ok(b) => b,
                    Err(e) => {
                        let msg = format!("cannot read file: {e}");
                        reports.push(failed(&f.path, Some(f.name.data_type.as_str()), msg, "file"));
                        continue;
                    }
                };
                let sha256 = opts.hash_content.then(|| sha256_hex(&bytes));
                if let Some(h) = &sha256 {
                    if unchanged(&f.path, h) {
                        let identity = if f.name.data_type.as_str() == "ADT-00" {
                            Message::parse(&bytes, &DecodeOptions { charset: opts.charset }).ok().and_then(|m| identity_of(&m))
                        } else {
                            None
                        };
                        if identity.is_some() {
                            reference = identity.clone();
                        }
                        reports.push(FileReport {
                            path: f.path.clone(),
                            data_type: f.name.data_type.as_str().to_string(),
                            status: FileStatus::Unchanged,
                            resources: Vec::new(),
                            warnings: Vec::new(),
                            bytes: bytes.len() as u64,
                            sha256,
                            identity,
                        });
                        continue;
                    }
                }
                let mut r = convert_bytes(f, &bytes, opts, reference.as_ref());
                r.sha256 = sha256;
                if let VersionStatus::Current { newer_invalid: true } = status {
                    r.warnings.push("a newer file of this order has condition flag 0/2; the newest valid file is used".into());
                }
                if matches!(status, VersionStatus::Deleted) && matches!(r.status, FileStatus::Converted) {
                    r.status = FileStatus::Deleted;
                }
                if f.name.data_type.as_str() == "ADT-00" && matches!(r.status, FileStatus::Converted) {
                    reference = r.identity.clone();
                }
                r
            }
        };
        reports.push(report);
    }
    reports
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn failed(path: &Path, data_type: Option<&str>, error: String, location: &str) -> FileReport {
    FileReport {
        path: path.to_path_buf(),
        data_type: data_type.unwrap_or("").to_string(),
        status: FileStatus::Failed(FileError {
            file: path.to_path_buf(),
            data_type: data_type.map(str::to_string),
            error,
            location: location.to_string(),
        }),
        resources: Vec::new(),
        warnings: Vec::new(),
        bytes: 0,
        sha256: None,
        identity: None,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Reads, decodes and maps one file (no version resolution). See [`convert_bytes`].
pub fn convert_file(f: &StorageFile, opts: &ConvertOptions, reference: Option<&Identity>) -> FileReport {
    match std::fs::read(&f.path) {
        Ok(bytes) => convert_bytes(f, &bytes, opts, reference),
        Err(e) => failed(&f.path, Some(f.name.data_type.as_str()), format!("cannot read file: {e}"), "file"),
    }
}

/// Decodes and maps the bytes of one storage file.
///
/// Output: a report with status `Converted` (resources + warnings) or `Failed` (decode error,
/// unsupported data type, missing segment, or — in strict identity mode — an identity disagreement).
pub fn convert_bytes(f: &StorageFile, bytes: &[u8], opts: &ConvertOptions, reference: Option<&Identity>) -> FileReport {
    let dt = f.name.data_type.as_str();
    let mut report = FileReport {
        path: f.path.clone(),
        data_type: dt.to_string(),
        status: FileStatus::Converted,
        resources: Vec::new(),
        warnings: Vec::new(),
        bytes: bytes.len() as u64,
        sha256: None,
        identity: None,
    };
    let msg = match Message::parse(bytes, &DecodeOptions { charset: opts.charset }) {
        Ok(m) => m,
        Err(e) => {
            report.status = FileStatus::Failed(FileError {
                file: f.path.clone(),
                data_type: Some(dt.to_string()),
                error: e.to_string(),
                location: "content".into(),
            });
            return report;
        }
    };
    report.warnings.extend(msg.warnings().iter().map(|w| w.to_string()));
    if dt == "ADT-00" {
        report.identity = identity_of(&msg);
    }
    let src = Source {
        patient_id: &f.dir_patient_id_or_name(),
        date: f.name.care_date.as_deref(),
        data_type: dt,
        order_no: &f.name.order_number,
        timestamp: &f.name.timestamp,
        department: f.name.department.as_deref(),
    };
    let mopts = Options { facility_code: opts.facility_code.as_deref(), reference_identity: reference };
    match map_message(&src, &msg, &mopts) {
        Ok(mapped) => {
            if opts.identity == IdentityMode::Strict {
                if let Some(w) = mapped.warnings.iter().find(|w| w.kind == WarningKind::Identity) {
                    report.status = FileStatus::Failed(FileError {
                        file: f.path.clone(),
                        data_type: Some(dt.to_string()),
                        error: format!("identity mismatch (strict identity mode): {}", w.message),
                        location: w.location.clone(),
                    });
                    return report;
                }
            }
            report.warnings.extend(mapped.warnings.iter().map(|w| w.to_string()));
            report.resources = mapped.resources;
        }
        Err(e) => {
            let location = match &e {
                crate::mapping::MappingError::MissingSegment(s) => s.to_string(),
                crate::mapping::MappingError::Invalid { location, .. } => location.clone(),
                crate::mapping::MappingError::UnsupportedDataType(_) => "file name".into(),
            };
            report.status = FileStatus::Failed(FileError {
                file: f.path.clone(),
                data_type: Some(dt.to_string()),
                error: e.to_string(),
                location,
            });
        }
    }
    report
}

/// The patient id of a storage file: the directory's (authoritative), or the file name's when the file
/// was given on its own outside a storage tree.
trait PatientIdOf {
    fn dir_patient_id_or_name(&self) -> String;
}

impl PatientIdOf for StorageFile {
    fn dir_patient_id_or_name(&self) -> String {
        if self.dir_patient_id.is_empty() {
            self.name.patient_id.clone()
        } else {
            self.dir_patient_id.clone()
        }
    }
}

/// Totals of a run (the CLI's summary line).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Files seen (SS-MIX2 names plus unreadable ones).
    pub files: u64,
    /// Files converted.
    pub converted: u64,
    /// Older versions skipped.
    pub superseded: u64,
    /// Deleted data (no valid version left).
    pub deleted: u64,
    /// Files that failed.
    pub failed: u64,
    /// Files skipped as already imported with the same content.
    pub unchanged: u64,
    /// Warnings over all files.
    pub warnings: u64,
    /// Resources emitted.
    pub resources: u64,
    /// Bytes read.
    pub bytes: u64,
}

impl Summary {
    /// Adds the totals of `other` (e.g. per-file summaries computed on worker threads).
    pub fn merge(&mut self, other: &Summary) {
        self.files += other.files;
        self.converted += other.converted;
        self.superseded += other.superseded;
        self.deleted += other.deleted;
        self.failed += other.failed;
        self.unchanged += other.unchanged;
        self.warnings += other.warnings;
        self.resources += other.resources;
        self.bytes += other.bytes;
    }

    /// Adds one file's report.
    pub fn add(&mut self, r: &FileReport) {
        self.files += 1;
        self.bytes += r.bytes;
        self.warnings += r.warnings.len() as u64;
        match &r.status {
            FileStatus::Converted => {
                self.converted += 1;
                self.resources += r.resources.len() as u64;
            }
            FileStatus::Superseded => self.superseded += 1,
            FileStatus::Deleted => self.deleted += 1,
            FileStatus::Unchanged => self.unchanged += 1,
            FileStatus::Failed(_) => self.failed += 1,
        }
    }
}
