//! The single access point between the REST handlers and the store.
//!
//! **Every read path** — `read`, `vread`, search (matches and `_include`/`_revinclude`), history, the
//! lookups of conditional create/update/delete/patch, and the reads performed inside batch/transaction
//! Bundles — goes through [`read_resources`]; every write goes through [`write`]. A later issue adds
//! SMART-on-FHIR authentication as a tower layer that puts a principal into [`RequestContext`], and then
//! the consent decision (filter or deny) and the AuditEvent (`rest` / `read` / `search-type` …) are
//! implemented once, here, and hold for all interactions by construction.

use axum::http::HeaderMap;

use super::outcome::{ApiError, ApiResult};
use super::AppState;
use crate::search::SearchQuery;
use crate::store::{ResourceStore, SearchPage, StoredResource, TxEntry, TxResult, WriteOutcome};

/// Who is asking and why; passed to every access decision. Today it carries the request id; the
/// security issue adds the authenticated principal, granted scopes and purpose of use.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The `X-Request-Id` of the HTTP request (for audit correlation).
    pub request_id: Option<String>,
    /// The authenticated caller (`None` only when authentication is disabled, `TOBIUME_AUTH=none`).
    pub principal: Option<std::sync::Arc<crate::auth::Principal>>,
}

impl RequestContext {
    /// Build from request headers (after the request-id layer ran).
    pub fn from_headers(headers: &HeaderMap) -> RequestContext {
        RequestContext {
            request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string),
            principal: None,
        }
    }
}

/// A read request (FHIR R4 §3.1.0.2 read, §3.1.0.3 vread, §3.1.0.8 search, §3.1.0.9 history).
#[derive(Debug, Clone, Copy)]
pub enum ReadRequest<'a> {
    /// `read` of the current version.
    Read { resource_type: &'a str, id: &'a str },
    /// `vread` of one version.
    VRead { resource_type: &'a str, id: &'a str, version_id: i64 },
    /// One page of a search (incl. includes).
    Search { query: &'a SearchQuery },
    /// Logical ids of up to `limit` matches (conditional create/update/delete lookups).
    SearchIds { query: &'a SearchQuery, limit: usize },
    /// History at system (`None`, `None`), type (`Some`, `None`) or instance level.
    History { resource_type: Option<&'a str>, id: Option<&'a str>, since: Option<&'a str>, count: usize },
}

/// What a [`ReadRequest`] returns.
#[derive(Debug)]
pub enum ReadResult {
    /// `read`/`vread`: one version.
    One(StoredResource),
    /// `search`: one page.
    Page(SearchPage),
    /// `search` for ids only.
    Ids(Vec<String>),
    /// `history`: versions, newest first.
    Versions(Vec<StoredResource>),
}

/// THE read decision point: run `req` against the store on behalf of `ctx`.
///
/// Errors: as the store (`NotFound` 404, `Gone` 410, `Invalid` 400, `Database` 500), later also 401/403
/// from the consent decision.
pub async fn read_resources(state: &AppState, ctx: &RequestContext, req: ReadRequest<'_>) -> ApiResult<ReadResult> {
    // Consent decision and audit go here (security issue). `ctx` is already threaded through.
    let _ = ctx;
    let store = &state.store;
    Ok(match req {
        ReadRequest::Read { resource_type, id } => ReadResult::One(store.read(resource_type, id).await?),
        ReadRequest::VRead { resource_type, id, version_id } => {
            ReadResult::One(store.vread(resource_type, id, version_id).await?)
        }
        ReadRequest::Search { query } => ReadResult::Page(store.search(query).await?),
        ReadRequest::SearchIds { query, limit } => ReadResult::Ids(store.search_ids(query, limit).await?),
        ReadRequest::History { resource_type, id, since, count } => {
            ReadResult::Versions(store.history(resource_type, id, since, count).await?)
        }
    })
}

/// `read` through [`read_resources`].
pub async fn read(state: &AppState, ctx: &RequestContext, resource_type: &str, id: &str) -> ApiResult<StoredResource> {
    match read_resources(state, ctx, ReadRequest::Read { resource_type, id }).await? {
        ReadResult::One(r) => Ok(r),
        _ => Err(super::ApiError::internal()),
    }
}

/// `vread` through [`read_resources`].
pub async fn vread(
    state: &AppState,
    ctx: &RequestContext,
    resource_type: &str,
    id: &str,
    version_id: i64,
) -> ApiResult<StoredResource> {
    match read_resources(state, ctx, ReadRequest::VRead { resource_type, id, version_id }).await? {
        ReadResult::One(r) => Ok(r),
        _ => Err(super::ApiError::internal()),
    }
}

/// Search through [`read_resources`].
pub async fn search(state: &AppState, ctx: &RequestContext, query: &SearchQuery) -> ApiResult<SearchPage> {
    match read_resources(state, ctx, ReadRequest::Search { query }).await? {
        ReadResult::Page(p) => Ok(p),
        _ => Err(super::ApiError::internal()),
    }
}

/// Matching ids (at most `limit`) through [`read_resources`].
pub async fn search_ids(state: &AppState, ctx: &RequestContext, query: &SearchQuery, limit: usize) -> ApiResult<Vec<String>> {
    match read_resources(state, ctx, ReadRequest::SearchIds { query, limit }).await? {
        ReadResult::Ids(v) => Ok(v),
        _ => Err(super::ApiError::internal()),
    }
}

/// History through [`read_resources`].
pub async fn history(
    state: &AppState,
    ctx: &RequestContext,
    resource_type: Option<&str>,
    id: Option<&str>,
    since: Option<&str>,
    count: usize,
) -> ApiResult<Vec<StoredResource>> {
    match read_resources(state, ctx, ReadRequest::History { resource_type, id, since, count }).await? {
        ReadResult::Versions(v) => Ok(v),
        _ => Err(super::ApiError::internal()),
    }
}

/// A write request (FHIR R4 §3.1.0.4 update, §3.1.0.6 create, §3.1.0.7 delete, §3.1.0.11 transaction).
#[derive(Debug)]
pub enum WriteRequest<'a> {
    /// Create with a server-assigned id; `body` is the raw request JSON text (stored byte-exact).
    Create { resource_type: &'a str, body: &'a str },
    /// Update (or update-as-create) `resource_type/id` from raw JSON text.
    Update { resource_type: &'a str, id: &'a str, body: &'a str, if_match: Option<i64> },
    /// Delete `resource_type/id`.
    Delete { resource_type: &'a str, id: &'a str },
    /// Atomic transaction (entries already ordered and `urn:uuid` references rewritten).
    Transaction(Vec<TxEntry>),
}

/// What a [`WriteRequest`] returns.
#[derive(Debug)]
pub enum WriteResult {
    /// The written version and how it was written.
    Written(StoredResource, WriteOutcome),
    /// Tombstone version, `None` if nothing was deleted.
    Deleted(Option<i64>),
    /// Per-op results of a transaction.
    Transaction(Vec<TxResult>),
}

/// THE write decision point (authorization and audit of writes go here later).
///
/// Errors: as the store; a failed transaction names the failing entry index in `diagnostics`.
pub async fn write(state: &AppState, ctx: &RequestContext, req: WriteRequest<'_>) -> ApiResult<WriteResult> {
    let _ = ctx;
    let store = &state.store;
    Ok(match req {
        WriteRequest::Create { resource_type, body } => {
            WriteResult::Written(store.create_raw(resource_type, body).await?, WriteOutcome::Created)
        }
        WriteRequest::Update { resource_type, id, body, if_match } => {
            let (sr, o) = store.update_raw(resource_type, id, body, if_match).await?;
            WriteResult::Written(sr, o)
        }
        WriteRequest::Delete { resource_type, id } => WriteResult::Deleted(store.delete(resource_type, id).await?),
        WriteRequest::Transaction(entries) => match store.transaction(entries).await {
            Ok(r) => WriteResult::Transaction(r),
            Err(e) => {
                let mut err = ApiError::from(e.error);
                if let Some(i) = e.entry {
                    for issue in &mut err.issues {
                        issue.diagnostics = format!("transaction entry {i}: {}", issue.diagnostics);
                    }
                }
                return Err(err);
            }
        },
    })
}
