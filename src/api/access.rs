//! The single access point between the REST handlers and the store.
//!
//! **Every read path** — `read`, `vread`, search (matches and `_include`/`_revinclude`), history, the
//! lookups of conditional create/update/delete/patch, and the reads performed inside batch/transaction
//! Bundles — goes through [`read_resources`]; every write goes through [`write`]. The authentication
//! layer (`auth::layer`) puts the verified principal into the request, [`RequestContext`] carries it here,
//! and the SMART scope check (`auth::scopes`) runs once, here, for all interactions by construction; the
//! consent decision and the AuditEvent follow the same pattern.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::outcome::{ApiError, ApiResult};
use super::AppState;
use crate::search::SearchQuery;
use crate::store::{ResourceStore, SearchPage, StoredResource, TxEntry, TxResult, WriteOutcome};

/// Who is asking and why; passed to every access decision. Handlers get it as an axum extractor
/// (`ctx: RequestContext`), which reads what the authentication layer (`auth::layer`) put into the
/// request extensions.
///
/// **Fail closed:** a context with neither `principal` nor `unrestricted` (e.g. `RequestContext::default()`)
/// is refused by the scope check.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The `X-Request-Id` of the HTTP request (for audit correlation).
    pub request_id: Option<String>,
    /// The authenticated caller (`None` only when authentication is disabled, `TOBIUME_AUTH=none`).
    pub principal: Option<std::sync::Arc<crate::auth::Principal>>,
    /// `true` when no principal is required: authentication is disabled (`TOBIUME_AUTH=none`) or the
    /// caller is the trusted local command line ([`RequestContext::local`]).
    pub unrestricted: bool,
    /// Where refusals are recorded for the audit of the response (see [`crate::auth::Denial`]).
    pub denials: Option<std::sync::Arc<crate::auth::DenialSlot>>,
}

impl RequestContext {
    /// Build from the parts of an HTTP request (after the request-id and authentication layers ran).
    pub fn from_parts(parts: &Parts) -> RequestContext {
        RequestContext {
            request_id: parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string),
            principal: parts.extensions.get::<std::sync::Arc<crate::auth::Principal>>().cloned(),
            unrestricted: parts.extensions.get::<crate::auth::AuthenticationDisabled>().is_some(),
            denials: parts.extensions.get::<std::sync::Arc<crate::auth::DenialSlot>>().cloned(),
        }
    }

    /// The context of the local command line (`register json` …): a trusted operator with direct
    /// database access, so no principal and no scope restriction.
    pub fn local(request_id: Option<String>) -> RequestContext {
        RequestContext { request_id, principal: None, unrestricted: true, denials: None }
    }

    /// Record a refusal for the response's audit (no-op outside an HTTP request).
    pub fn record_denial(&self, denial: crate::auth::Denial) {
        if let Some(slot) = &self.denials {
            slot.record(denial);
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestContext::from_parts(parts))
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
/// Errors: as the store (`NotFound` 404, `Gone` 410, `Invalid` 400, `Database` 500); 403 `forbidden`
/// from the scope check (`auth::scopes::check_read` / `check_read_result`).
pub async fn read_resources(state: &AppState, ctx: &RequestContext, req: ReadRequest<'_>) -> ApiResult<ReadResult> {
    // SMART scopes (auth::scopes): before the store is asked (a `patient/` search comes back narrowed to
    // the patient compartment), then on what the store returned.
    let narrowed = crate::auth::scopes::check_read(state, ctx, &req)?;
    let mut result = match &narrowed {
        Some(crate::auth::scopes::Narrowed::Query(q)) => read_store(state, req.with_query(q)).await?,
        Some(crate::auth::scopes::Narrowed::Empty) => req.empty_result(),
        None => read_store(state, req).await?,
    };
    crate::auth::scopes::check_read_result(ctx, &req, &mut result)?;
    Ok(result)
}

async fn read_store(state: &AppState, req: ReadRequest<'_>) -> ApiResult<ReadResult> {
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

/// THE write decision point: SMART scope check (`auth::scopes::check_write`), then the store.
///
/// Errors: 403 `forbidden` from the scope check; as the store; a failed transaction names the failing
/// entry index in `diagnostics`.
pub async fn write(state: &AppState, ctx: &RequestContext, req: WriteRequest<'_>) -> ApiResult<WriteResult> {
    // SMART scopes (auth::scopes).
    crate::auth::scopes::check_write(state, ctx, &req).await?;
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
