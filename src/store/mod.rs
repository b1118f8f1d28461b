//! Versioned FHIR resource store (FHIR R4 §3.1.0 RESTful API persistence semantics).
//!
//! CONTRACT (shared by `api`, `import` and the store backends; change only together with them):
//! * Resources are kept as the exact JSON text accepted (decimal text preserved), with `meta.versionId`
//!   and `meta.lastUpdated` set by the store on every write.
//! * Every write (create / update / delete / transaction / import upsert) updates the search index in the
//!   same database transaction.
//! * Two backends implement [`ResourceStore`]: `sqlite::SqliteStore` (embedded default) and
//!   `postgres::PgStore`; [`Store`] dispatches between them by URL (`sqlite://…` / `postgres://…`).
//! * Reads pass through one place ([`Store`]), so consent filtering and audit can be layered on every
//!   read path later (issue: security).

use serde_json::Value;
use std::sync::Arc;

use crate::search::{Registry, SearchQuery};

pub mod audit;
mod rawjson;
mod plan;
mod shared;
pub mod postgres;
pub mod sqlite;
mod sql;
mod sqlite_bulk;
mod sqlite_read;
mod sqlite_cache;
mod sqlite_append;
#[cfg(test)]
mod tests;

pub use postgres::PgStore;
pub use sqlite_append::AuditIntent;
pub use sqlite::SqliteStore;

/// One stored version of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    /// FHIR resource type, e.g. `Patient`.
    pub resource_type: String,
    /// Logical id (`[A-Za-z0-9\-\.]{1,64}`).
    pub id: String,
    /// Version id, 1-based, increasing by one per write of this logical id.
    pub version_id: i64,
    /// `meta.lastUpdated` as an RFC 3339 instant with milliseconds and `Z`, e.g. `2026-11-21T07:00:00.123Z`.
    pub last_updated: String,
    /// `true` for a delete tombstone (then `json` is empty).
    pub deleted: bool,
    /// The resource JSON text exactly as stored (with `meta.versionId`/`meta.lastUpdated` filled in).
    pub json: String,
}

/// Errors from the store. The API maps them to HTTP statuses (in brackets).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No resource with that type and id [404].
    #[error("resource {0}/{1} not found")]
    NotFound(String, String),
    /// The resource was deleted [410].
    #[error("resource {0}/{1} has been deleted")]
    Gone(String, String),
    /// `If-Match` version does not match the current version [412].
    #[error("version conflict: expected version {expected}, current is {current}")]
    VersionConflict { expected: i64, current: i64 },
    /// Conditional create/update matched more than one resource [412].
    #[error("conditional request matched {0} resources")]
    MultipleMatches(usize),
    /// The request is not acceptable (bad search parameter, bad id, …) [400].
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Database failure [500].
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// How a write was performed, for the API's status code (201 vs 200) and `Location`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new logical resource was created (HTTP 201).
    Created,
    /// A new version of an existing resource was written (HTTP 200).
    Updated,
    /// Nothing changed (conditional create matched, or an import upsert with identical content) (HTTP 200).
    Unchanged,
}

/// The store interface. Both backends implement it; `api` and `import` use it through [`Store`].
///
/// All methods are atomic: either the whole write (resource row, history row, search index rows) commits,
/// or nothing does.
#[allow(async_fn_in_trait)]
pub trait ResourceStore: Send + Sync {
    /// FHIR `read` (§3.1.0.2). Errors: `NotFound`, `Gone`, `Database`.
    async fn read(&self, resource_type: &str, id: &str) -> Result<StoredResource, StoreError>;
    /// FHIR `vread` (§3.1.0.3). Errors: `NotFound` (unknown id or version), `Database`.
    /// A deleted version is returned with `deleted = true`.
    async fn vread(&self, resource_type: &str, id: &str, version_id: i64) -> Result<StoredResource, StoreError>;
    /// FHIR `create` (§3.1.0.6): the store assigns a new id (UUID v4, lower-case) and version 1, ignoring
    /// any `id` in `resource`. Errors: `Invalid` (not a JSON object / wrong resourceType), `Database`.
    async fn create(&self, resource_type: &str, resource: Value) -> Result<StoredResource, StoreError>;
    /// FHIR `update` (§3.1.0.4) incl. update-as-create with a client id. `if_match` = the version the
    /// client read (`If-Match: W/"n"`). Errors: `VersionConflict`, `Invalid`, `Database`.
    async fn update(
        &self,
        resource_type: &str,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
    ) -> Result<(StoredResource, WriteOutcome), StoreError>;
    /// FHIR `delete` (§3.1.0.7): writes a tombstone version. Returns the tombstone's version, or `None`
    /// when the resource did not exist or was already deleted (both are HTTP 200/204 in R4).
    async fn delete(&self, resource_type: &str, id: &str) -> Result<Option<i64>, StoreError>;
    /// Instance / type / system history (§3.1.0.9), newest first by `meta.lastUpdated` (millisecond
    /// precision; entries written within the same millisecond come higher version first, which is not
    /// necessarily write order across resources). `resource_type`/`id` narrow the scope; `since` is an
    /// RFC 3339 instant; `count` caps the number of entries.
    async fn history(
        &self,
        resource_type: Option<&str>,
        id: Option<&str>,
        since: Option<&str>,
        count: usize,
    ) -> Result<Vec<StoredResource>, StoreError>;

    // ---- Additions (default bodies return `Invalid("not supported")`; both backends override all). ----

    /// FHIR `create` (§3.1.0.6) from the **raw request body text**: like [`ResourceStore::create`] but
    /// byte-exact — decimal text (`1.50`, `1e3`), key order and unknown members are stored as received;
    /// only `id` and `meta.versionId`/`meta.lastUpdated` are spliced in. Use this from the REST API.
    /// Errors: `Invalid` (malformed JSON, not an object, `resourceType` ≠ `resource_type`), `Database`.
    async fn create_raw(&self, resource_type: &str, body: &str) -> Result<StoredResource, StoreError> {
        let _ = (resource_type, body);
        Err(unsupported())
    }
    /// FHIR `update` (§3.1.0.4, incl. update-as-create) from the **raw request body text** (byte-exact,
    /// see [`ResourceStore::create_raw`]). A body `id` different from `id` → `Invalid` (HTTP 400).
    /// Errors: `VersionConflict` (`if_match` ≠ current version, or `if_match` on a non-existent resource,
    /// `current = 0`), `Invalid`, `Database`. Outcome `Created` when the resource did not exist or was deleted.
    async fn update_raw(
        &self,
        resource_type: &str,
        id: &str,
        body: &str,
        if_match: Option<i64>,
    ) -> Result<(StoredResource, WriteOutcome), StoreError> {
        let _ = (resource_type, id, body, if_match);
        Err(unsupported())
    }
    /// FHIR `search` (§3.1.0.8, search.html): the page of matches in order (`_sort`, then insertion order),
    /// `total` (exact count when `_total=accurate|estimate` or `_summary=count`, or when the page is the last
    /// one; else `None`), and `_include`/`_revinclude` resources (deduplicated, never repeating a match).
    /// Errors: `Invalid` (a parameter the store cannot plan), `Database`.
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, StoreError> {
        let _ = query;
        Err(unsupported())
    }
    /// Logical ids of up to `limit` live resources matching `query` (ignoring `_sort`/`_count`/`_offset`/
    /// includes) — for conditional create (`If-None-Exist`, §3.1.0.6.1), conditional update (§3.1.0.4.3) and
    /// conditional delete: ask with `limit = 2` and treat 2 results as `MultipleMatches`.
    /// Errors: `Invalid`, `Database`.
    async fn search_ids(&self, query: &SearchQuery, limit: usize) -> Result<Vec<String>, StoreError> {
        let _ = (query, limit);
        Err(unsupported())
    }
    /// FHIR `transaction` (§3.1.0.11 / http.html#transaction): all entries in ONE database transaction —
    /// all commit or none. Entries are applied in the given order; the caller (API) orders them per the
    /// spec (DELETE, POST, PUT, GET) and rewrites `urn:uuid` references beforehand, pre-assigning ids for
    /// creates via [`TxEntry::Create::id`]. Returns one [`TxResult`] per entry, in order.
    /// Errors: [`TxError`] naming the failing entry (its `error` is the per-entry `StoreError`:
    /// `VersionConflict`, `Invalid`, …), or `entry: None` for a failure at begin/commit.
    async fn transaction(&self, entries: Vec<TxEntry>) -> Result<Vec<TxResult>, TxError> {
        let _ = entries;
        Err(TxError { entry: None, error: unsupported() })
    }
    /// Import upsert (SS-MIX2 / bulk import): writes a new version of `resource_type/id` only when
    /// `content_hash` (any stable digest of the resource content, e.g. sha256 hex of its JSON text) differs
    /// from the hash stored with the current version, or the resource is absent/deleted. Returns `Created`,
    /// `Updated` or `Unchanged`. Errors: `Invalid`, `Database`.
    async fn import_upsert(
        &self,
        resource_type: &str,
        id: &str,
        resource: Value,
        content_hash: &str,
    ) -> Result<WriteOutcome, StoreError> {
        let _ = (resource_type, id, resource, content_hash);
        Err(unsupported())
    }
    /// Imports one source file atomically: every write (`(type, id, Some(resource))` = import upsert with
    /// the hash of the resource's JSON text, `(type, id, None)` = delete) AND the ledger row
    /// (`path`, `content_sha256`, status [`LedgerStatus::Done`]) commit in ONE transaction, so an import
    /// killed at any point resumes correctly by skipping files whose ledger hash matches.
    /// Errors: `Invalid` (a bad resource: nothing is written, not even the ledger row), `Database`.
    async fn import_file_atomic(
        &self,
        path: &str,
        content_sha256: &str,
        writes: Vec<(String, String, Option<Value>)>,
    ) -> Result<ImportSummary, StoreError> {
        let _ = (path, content_sha256, writes);
        Err(unsupported())
    }
    /// Like [`ResourceStore::import_file_atomic`] for many files in ONE transaction (throughput: one commit
    /// per batch; a crash loses the whole batch, and the ledger still tells which files are done).
    /// Bodies may be raw text ([`ResourceBody::Text`], byte-exact) or values.
    /// Errors: `Invalid` (names the file's path index; nothing of the batch is written), `Database`.
    async fn import_files_batch(&self, files: Vec<ImportFile>) -> Result<ImportSummary, StoreError> {
        let _ = files;
        Err(unsupported())
    }
    /// Reads the import ledger row of `path` (`None` when the file was never recorded). Errors: `Database`.
    async fn ledger_get(&self, path: &str) -> Result<Option<LedgerEntry>, StoreError> {
        let _ = path;
        Err(unsupported())
    }
    /// Inserts or replaces the ledger row of `path` (e.g. to record a failed file with its error message —
    /// never PHI). `imported_at` is set to now. Errors: `Database`.
    async fn ledger_put(
        &self,
        path: &str,
        content_sha256: &str,
        status: LedgerStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let _ = (path, content_sha256, status, error);
        Err(unsupported())
    }
}

fn unsupported() -> StoreError {
    StoreError::Invalid("operation not supported by this store".into())
}

/// A resource body handed to a write: raw JSON text (byte-exact, preferred) or a parsed value (numbers
/// already passed through `f64`: `1.50` is stored as `1.5`).
#[derive(Debug, Clone)]
pub enum ResourceBody {
    /// The JSON text exactly as received.
    Text(String),
    /// A parsed JSON value (serialised with `serde_json`, key order preserved).
    Json(Value),
}

impl From<Value> for ResourceBody {
    fn from(v: Value) -> Self {
        ResourceBody::Json(v)
    }
}
impl From<String> for ResourceBody {
    fn from(s: String) -> Self {
        ResourceBody::Text(s)
    }
}
impl From<&str> for ResourceBody {
    fn from(s: &str) -> Self {
        ResourceBody::Text(s.to_string())
    }
}

/// One entry of a [`ResourceStore::transaction`] (FHIR R4 §3.1.0.11, Bundle.type = transaction).
#[derive(Debug, Clone)]
pub enum TxEntry {
    /// `POST [type]`: create. `id` = an id pre-assigned by the caller (so `urn:uuid` references can be
    /// rewritten before the write; must be new — an existing id fails with `Invalid`), or `None` for a
    /// store-assigned UUID.
    Create { resource_type: String, id: Option<String>, body: ResourceBody },
    /// `PUT [type]/[id]`: update or update-as-create, optional `If-Match` version.
    Update { resource_type: String, id: String, body: ResourceBody, if_match: Option<i64> },
    /// `DELETE [type]/[id]`.
    Delete { resource_type: String, id: String },
}

/// The result of one [`TxEntry`].
#[derive(Debug, Clone)]
pub enum TxResult {
    /// Create / update: the stored version and whether it was created (201) or updated (200).
    Written { resource: StoredResource, outcome: WriteOutcome },
    /// Delete: the tombstone version, `None` if there was nothing to delete.
    Deleted { version_id: Option<i64> },
}

/// A failed [`ResourceStore::transaction`]: nothing was written.
#[derive(Debug, thiserror::Error)]
#[error("transaction failed at entry {entry:?}: {error}")]
pub struct TxError {
    /// 0-based index of the failing entry; `None` for a failure not tied to an entry (begin/commit).
    pub entry: Option<usize>,
    /// The cause (map to HTTP status as for single interactions).
    #[source]
    pub error: StoreError,
}

impl From<TxError> for StoreError {
    fn from(e: TxError) -> Self {
        e.error
    }
}

/// One page of search results (FHIR R4 search.html; the API turns it into a `searchset` Bundle).
#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    /// Matched resources (search mode `match`), in result order.
    pub matches: Vec<StoredResource>,
    /// `Bundle.total` when known (see [`ResourceStore::search`]).
    pub total: Option<u64>,
    /// `_include` / `_revinclude` resources (search mode `include`).
    pub included: Vec<StoredResource>,
}

/// Status of a file in the import ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerStatus {
    /// All of the file's resources are committed.
    Done,
    /// The file failed (see [`LedgerEntry::error`]); retried when its content changes or on demand.
    Failed,
}

impl LedgerStatus {
    /// The text stored in `import_files.status` (`done` / `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerStatus::Done => "done",
            LedgerStatus::Failed => "failed",
        }
    }
    /// Parses [`LedgerStatus::as_str`] text; unknown text → `Failed`.
    pub fn parse(s: &str) -> LedgerStatus {
        if s == "done" {
            LedgerStatus::Done
        } else {
            LedgerStatus::Failed
        }
    }
}

/// One row of the import ledger (`import_files`).
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    /// Source path as given by the importer (relative to the SS-MIX2 root, recommended).
    pub path: String,
    /// sha256 hex of the file bytes.
    pub content_sha256: String,
    /// Done / failed.
    pub status: LedgerStatus,
    /// Error message for failed files (no PHI).
    pub error: Option<String>,
    /// When the row was written, RFC 3339 with milliseconds and `Z`.
    pub imported_at: String,
}

/// One resource write of an imported file: `body = None` deletes `resource_type/id`.
#[derive(Debug, Clone)]
pub struct ImportWrite {
    /// FHIR resource type.
    pub resource_type: String,
    /// Logical id (stable id from the mapping).
    pub id: String,
    /// New content, or `None` to delete.
    pub body: Option<ResourceBody>,
}

/// One source file for [`ResourceStore::import_files_batch`].
#[derive(Debug, Clone)]
pub struct ImportFile {
    /// Ledger key (path).
    pub path: String,
    /// sha256 hex of the file bytes.
    pub content_sha256: String,
    /// The file's resource writes.
    pub writes: Vec<ImportWrite>,
}

/// Counts of what an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// New logical resources.
    pub created: usize,
    /// New versions of existing resources.
    pub updated: usize,
    /// Resources whose content was identical (no new version).
    pub unchanged: usize,
    /// Tombstones written.
    pub deleted: usize,
}

/// The configured store: one of the two backends, chosen by URL. All API/import code goes through this
/// type (the single place where consent filtering / audit can later wrap every read and write).
#[derive(Debug, Clone)]
pub enum Store {
    /// Embedded SQLite (default; `sqlite://path/to/file.db?mode=rwc`).
    Sqlite(SqliteStore),
    /// PostgreSQL (`postgres://user@host:port/db`).
    Postgres(PgStore),
}

impl Store {
    /// Opens the store at `url` and runs the embedded migrations (`migrations/sqlite` or
    /// `migrations/postgres`). `sqlite://PATH[?mode=rwc]` (the file is created when missing),
    /// `postgres://…` / `postgresql://…`. Uses the R4 search-parameter registry for indexing.
    /// Errors: `Invalid` (unknown scheme), `Database` (cannot open / migrate).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with_registry(url, Arc::new(shared::default_registry())).await
    }

    /// Like [`Store::connect`] with an explicit search-parameter registry (e.g. incl. JP Core parameters).
    /// Errors: as [`Store::connect`].
    pub async fn connect_with_registry(url: &str, registry: Arc<Registry>) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::connect(url, registry).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::connect(url, registry).await?))
        } else {
            Err(StoreError::Invalid("store URL must start with sqlite: or postgres://".into()))
        }
    }

    /// The registry used to index writes.
    pub fn registry(&self) -> &Arc<Registry> {
        match self {
            Store::Sqlite(s) => s.registry(),
            Store::Postgres(s) => s.registry(),
        }
    }

    /// Refreshes the query planner's statistics; call after a bulk import (SS-MIX2 initial load).
    /// Errors: `Database`.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.analyze().await,
            Store::Postgres(s) => s.analyze().await,
        }
    }

    /// Closes all pooled connections (graceful shutdown).
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }
}

/// An import batch whose CPU work — JSON handling and search-index extraction — is done
/// ([`PreparedImport::prepare`], synchronous, run it on a worker thread) and that only needs writing
/// ([`Store::apply_import`]). This lets an importer use one core for conversion + indexing and the
/// other for the database.
#[derive(Debug, Default)]
pub struct PreparedImport {
    pub(crate) ops: Vec<shared::Op>,
    pub(crate) ledger: Vec<(String, String)>,
}

impl PreparedImport {
    /// Prepares `files` (each resource parsed/serialised once and its index rows extracted with
    /// `registry`). Errors: `Invalid` naming the file index and resource (nothing is prepared).
    pub fn prepare(registry: &Registry, files: Vec<ImportFile>) -> Result<PreparedImport, StoreError> {
        let mut ops = Vec::new();
        let mut ledger = Vec::with_capacity(files.len());
        for (fi, f) in files.into_iter().enumerate() {
            for w in f.writes {
                match w.body {
                    Some(body) => {
                        let prep = shared::prepare(registry, &w.resource_type, &w.id, body, false).map_err(|e| {
                            StoreError::Invalid(format!("import file #{fi}, {}/{}: {e}", w.resource_type, w.id))
                        })?;
                        ops.push(shared::Op::Put {
                            rtype: w.resource_type,
                            id: w.id,
                            prep,
                            if_match: None,
                            mode: shared::PutMode::IfChanged,
                        });
                    }
                    None => {
                        shared::check_type(&w.resource_type)?;
                        ops.push(shared::Op::Delete { rtype: w.resource_type, id: w.id });
                    }
                }
            }
            ledger.push((f.path, f.content_sha256));
        }
        Ok(PreparedImport { ops, ledger })
    }

    /// Number of source files in the batch.
    pub fn files(&self) -> usize {
        self.ledger.len()
    }

    /// Appends `other`'s writes and ledger rows after this batch's (the order of writes is kept: an
    /// importer that prepares file by file on worker threads joins them into one commit batch).
    pub fn append(&mut self, mut other: PreparedImport) {
        self.ops.append(&mut other.ops);
        self.ledger.append(&mut other.ledger);
    }
}

/// The committing side of an import ([`Store::import_writer`]): writes [`PreparedImport`] batches in
/// order, each in ONE transaction with its ledger rows.
///
/// SQLite: a dedicated rusqlite connection with cached prepared statements (`store::sqlite_bulk`), each
/// batch run on tokio's blocking pool. PostgreSQL (or `TOBIUME_IMPORT_WRITER=sqlx`, a diagnostic knob
/// for A/B runs): the general sqlx write path ([`Store::apply_import`]). Both write the same rows.
pub struct ImportWriter {
    kind: WriterKind,
}

enum WriterKind {
    /// The writer, and the store whose resource cache must know of its writes (`sqlite_cache`).
    Bulk(Option<sqlite_bulk::BulkWriter>, SqliteStore),
    Store(Store),
}

impl std::fmt::Debug for ImportWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            WriterKind::Bulk(..) => "sqlite-bulk",
            WriterKind::Store(_) => "store",
        };
        f.debug_struct("ImportWriter").field("kind", &kind).finish()
    }
}

impl ImportWriter {
    /// Writes one batch (see [`ImportWriter`]) and returns what it did. Errors: `Invalid`, `Database`;
    /// nothing of a failed batch is committed.
    pub async fn apply(&mut self, prepared: PreparedImport) -> Result<ImportSummary, StoreError> {
        match &mut self.kind {
            WriterKind::Store(s) => s.apply_import(prepared).await,
            WriterKind::Bulk(slot, store) => {
                // held until the batch is committed (or failed): cached reads check the database meanwhile
                let _guard = store.write_guard();
                let mut w = slot.take().ok_or_else(|| StoreError::Database("import writer failed earlier".into()))?;
                let (w, r) = tokio::task::spawn_blocking(move || {
                    let r = w.apply(prepared);
                    (w, r)
                })
                .await
                .map_err(|e| StoreError::Database(format!("import writer thread: {e}")))?;
                if r.is_ok() {
                    *slot = Some(w);
                }
                r
            }
        }
    }
}

impl Store {
    /// The writer an importer commits its batches with (see [`ImportWriter`]); `bulk` = the import is a
    /// bulk load ([`Store::begin_bulk_load`] returned `true`: larger page cache, rarer WAL checkpoints).
    /// Errors: `Database` (cannot open the SQLite file read-write).
    pub fn import_writer(&self, bulk: bool) -> Result<ImportWriter, StoreError> {
        let sqlx = std::env::var("TOBIUME_IMPORT_WRITER").is_ok_and(|v| v == "sqlx");
        let kind = match self {
            Store::Sqlite(s) if !sqlx => WriterKind::Bulk(Some(sqlite_bulk::BulkWriter::open(s.path(), bulk)?), s.clone()),
            _ => WriterKind::Store(self.clone()),
        };
        Ok(ImportWriter { kind })
    }

    /// Writes a prepared import batch — every resource and the files' ledger rows — in ONE
    /// transaction (see [`ResourceStore::import_files_batch`]). Errors: `Invalid`, `Database`.
    pub async fn apply_import(&self, prepared: PreparedImport) -> Result<ImportSummary, StoreError> {
        match self {
            Store::Sqlite(s) => s.apply_import(prepared).await,
            Store::Postgres(s) => s.apply_import(prepared).await,
        }
    }

    /// Starts or resumes a bulk load (an import into an empty store, or one whose earlier bulk load was
    /// interrupted): the secondary search indexes are dropped and rebuilt by [`Store::finish_bulk_load`],
    /// one sorted build each instead of a random B-tree insert per index row. Returns `false` (nothing
    /// changed) for a store that already holds resources. Searches during the load are correct but slow.
    /// Errors: `Database`.
    pub async fn begin_bulk_load(&self) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.begin_bulk_load().await,
            Store::Postgres(s) => s.begin_bulk_load().await,
        }
    }

    /// Rebuilds the indexes dropped by [`Store::begin_bulk_load`] and clears the bulk-load mark.
    /// Idempotent. Errors: `Database`.
    pub async fn finish_bulk_load(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.finish_bulk_load().await,
            Store::Postgres(s) => s.finish_bulk_load().await,
        }
    }

    /// For `serve` start-up: when an import's bulk load was interrupted (killed), rebuilds the missing
    /// search indexes (see [`Store::begin_bulk_load`]); returns whether it had to. Errors: `Database`.
    pub async fn repair_bulk_load(&self) -> Result<bool, StoreError> {
        let pending = match self {
            Store::Sqlite(s) => s.bulk_load_pending().await?,
            Store::Postgres(s) => s.bulk_load_pending().await?,
        };
        if pending {
            self.finish_bulk_load().await?;
        }
        Ok(pending)
    }

    /// Import-ledger rows for many paths at once (paths never recorded are absent from the map).
    /// Errors: `Database`.
    pub async fn ledger_get_many(
        &self,
        paths: &[String],
    ) -> Result<std::collections::HashMap<String, LedgerEntry>, StoreError> {
        match self {
            Store::Sqlite(s) => s.ledger_get_many(paths).await,
            Store::Postgres(s) => s.ledger_get_many(paths).await,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            Store::Postgres($s) => $e,
        }
    };
}

impl ResourceStore for Store {
    async fn read(&self, resource_type: &str, id: &str) -> Result<StoredResource, StoreError> {
        delegate!(self, s => s.read(resource_type, id).await)
    }
    async fn vread(&self, resource_type: &str, id: &str, version_id: i64) -> Result<StoredResource, StoreError> {
        delegate!(self, s => s.vread(resource_type, id, version_id).await)
    }
    async fn create(&self, resource_type: &str, resource: Value) -> Result<StoredResource, StoreError> {
        delegate!(self, s => s.create(resource_type, resource).await)
    }
    async fn update(
        &self,
        resource_type: &str,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
    ) -> Result<(StoredResource, WriteOutcome), StoreError> {
        delegate!(self, s => s.update(resource_type, id, resource, if_match).await)
    }
    async fn delete(&self, resource_type: &str, id: &str) -> Result<Option<i64>, StoreError> {
        delegate!(self, s => s.delete(resource_type, id).await)
    }
    async fn history(
        &self,
        resource_type: Option<&str>,
        id: Option<&str>,
        since: Option<&str>,
        count: usize,
    ) -> Result<Vec<StoredResource>, StoreError> {
        delegate!(self, s => s.history(resource_type, id, since, count).await)
    }
    async fn create_raw(&self, resource_type: &str, body: &str) -> Result<StoredResource, StoreError> {
        delegate!(self, s => s.create_raw(resource_type, body).await)
    }
    async fn update_raw(
        &self,
        resource_type: &str,
        id: &str,
        body: &str,
        if_match: Option<i64>,
    ) -> Result<(StoredResource, WriteOutcome), StoreError> {
        delegate!(self, s => s.update_raw(resource_type, id, body, if_match).await)
    }
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, StoreError> {
        delegate!(self, s => s.search(query).await)
    }
    async fn search_ids(&self, query: &SearchQuery, limit: usize) -> Result<Vec<String>, StoreError> {
        delegate!(self, s => s.search_ids(query, limit).await)
    }
    async fn transaction(&self, entries: Vec<TxEntry>) -> Result<Vec<TxResult>, TxError> {
        delegate!(self, s => s.transaction(entries).await)
    }
    async fn import_upsert(
        &self,
        resource_type: &str,
        id: &str,
        resource: Value,
        content_hash: &str,
    ) -> Result<WriteOutcome, StoreError> {
        delegate!(self, s => s.import_upsert(resource_type, id, resource, content_hash).await)
    }
    async fn import_file_atomic(
        &self,
        path: &str,
        content_sha256: &str,
        writes: Vec<(String, String, Option<Value>)>,
    ) -> Result<ImportSummary, StoreError> {
        delegate!(self, s => s.import_file_atomic(path, content_sha256, writes).await)
    }
    async fn import_files_batch(&self, files: Vec<ImportFile>) -> Result<ImportSummary, StoreError> {
        delegate!(self, s => s.import_files_batch(files).await)
    }
    async fn ledger_get(&self, path: &str) -> Result<Option<LedgerEntry>, StoreError> {
        delegate!(self, s => s.ledger_get(path).await)
    }
    async fn ledger_put(
        &self,
        path: &str,
        content_sha256: &str,
        status: LedgerStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.ledger_put(path, content_sha256, status, error).await)
    }
}
