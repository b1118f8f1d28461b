//! The single access point between the REST handlers and the store.
//!
//! **Every read path** — `read`, `vread`, search (matches and `_include`/`_revinclude`), history, the
//! lookups of conditional create/update/delete/patch, and the reads performed inside batch/transaction
//! Bundles — goes through [`read_resources`]; every write goes through [`write`]. The authentication
//! layer (`auth::layer`) puts the verified principal into the request, [`RequestContext`] carries it here,
//! and the SMART scope check (`auth::scopes`), the consent decision (`consent::Pdp`) and the AuditEvent
//! (`audit`) are applied once, here, for all interactions by construction.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::outcome::{ApiError, ApiResult};
use super::AppState;
use crate::audit::{Ack, AuditConfig, Auditor, Interaction};
use crate::auth::{Principal, Role};
use crate::consent::{patients_of, Basis, ConsentConfig, Decision, DenyReason, Pdp, EMERGENCY_PURPOSES};
use crate::search::SearchQuery;
use crate::store::audit::{AuditFilter, AuditedTxError};
use crate::store::{ResourceStore, SearchPage, Store, StoredResource, TxEntry, TxResult, WriteOutcome};

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
    /// Set only by the emergency `$summary` of Patient `<id>`: the one read for which a break-the-glass
    /// caller may override a missing consent ([`crate::consent::Pdp::break_the_glass`]). Never set from
    /// request input.
    pub emergency_summary: Option<String>,
}

impl RequestContext {
    /// Build from the parts of an HTTP request (after the request-id and authentication layers ran).
    pub fn from_parts(parts: &Parts) -> RequestContext {
        RequestContext {
            request_id: parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string),
            principal: parts.extensions.get::<std::sync::Arc<crate::auth::Principal>>().cloned(),
            unrestricted: parts.extensions.get::<crate::auth::AuthenticationDisabled>().is_some(),
            denials: parts.extensions.get::<std::sync::Arc<crate::auth::DenialSlot>>().cloned(),
            emergency_summary: None,
        }
    }

    /// The context of the local command line (`register json` …): a trusted operator with direct
    /// database access, so no principal and no scope restriction.
    pub fn local(request_id: Option<String>) -> RequestContext {
        RequestContext { request_id, principal: None, unrestricted: true, denials: None, emergency_summary: None }
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

/// The security services every request passes through: the consent decision point and the audit
/// appender (one of each per process).
#[derive(Debug)]
pub struct Security {
    /// Consent decisions (with their cache).
    pub pdp: Pdp,
    /// The group-commit audit appender.
    pub auditor: Auditor,
}

impl Security {
    /// Both over `store`, configured from the environment (see README "Configuration").
    pub fn new(store: Arc<Store>) -> Security {
        Security {
            pdp: Pdp::new(store.clone(), ConsentConfig::default()),
            auditor: Auditor::new(store, AuditConfig::default()),
        }
    }
}

impl crate::audit::AuditState for AppState {
    fn auditor(&self) -> &Auditor {
        &self.security.auditor
    }
    fn observe_generation(&self, generation: i64) {
        self.security.pdp.observe_generation(generation)
    }
    fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
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

impl ReadRequest<'_> {
    fn interaction(&self) -> (&'static str, &'static str) {
        match self {
            ReadRequest::Read { .. } => ("read", "R"),
            ReadRequest::VRead { .. } => ("vread", "R"),
            ReadRequest::Search { .. } | ReadRequest::SearchIds { .. } => ("search-type", "E"),
            ReadRequest::History { id: Some(_), .. } => ("history-instance", "R"),
            ReadRequest::History { resource_type: Some(_), .. } => ("history-type", "R"),
            ReadRequest::History { .. } => ("history-system", "R"),
        }
    }

    fn resource_type(&self) -> Option<&str> {
        match self {
            ReadRequest::Read { resource_type, .. } | ReadRequest::VRead { resource_type, .. } => Some(resource_type),
            ReadRequest::Search { query } | ReadRequest::SearchIds { query, .. } => Some(&query.resource_type),
            ReadRequest::History { resource_type, .. } => *resource_type,
        }
    }
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

/// Resource types that never hold patient data: their delete tombstones (which have no content to
/// decide on) stay visible in histories.
const NON_PATIENT_TYPES: &[&str] = &[
    "Organization", "Practitioner", "PractitionerRole", "Location", "Endpoint", "HealthcareService",
    "CodeSystem", "ValueSet", "ConceptMap", "NamingSystem", "StructureDefinition", "SearchParameter",
    "OperationDefinition", "CapabilityStatement", "Medication", "Substance", "Questionnaire", "Library",
    "ActivityDefinition", "PlanDefinition",
];

/// Largest number of matches examined to recompute `_summary=count` under consent filtering (above it
/// the total is omitted rather than leaked).
const COUNT_RECOMPUTE_LIMIT: usize = 10_000;

/// 403 with an OperationOutcome (`forbidden`) naming the reason (never PHI).
fn forbidden(reason: &DenyReason) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", reason.text())
}

/// THE read decision point: run `req` against the store on behalf of `ctx`.
///
/// In order: the caller's facility must not be suspended (403); `AuditEvent` is served from the audit
/// trail to the secretariat role only (403 for others); the store answers; then every resource is
/// filtered by the consent decision for the patients it refers to ([`crate::consent`]): a `read`/`vread`
/// of a non-permitted patient's resource is 403, a search drops such matches and `_include`s and keeps
/// `total` only when it can be recomputed exactly (else omits it), a history drops them. The disclosed
/// patients and resources, denials and break-the-glass use go to the request's audit scope (one
/// AuditEvent per HTTP request, [`crate::audit::http_layer`]); outside an HTTP request each call is
/// audited on its own before it returns.
///
/// Errors: as the store (`NotFound` 404, `Gone` 410, `Invalid` 400, `Database` 500), 403 from the
/// consent decision, 500 when the audit record cannot be written.
pub async fn read_resources(state: &AppState, ctx: &RequestContext, req: ReadRequest<'_>) -> ApiResult<ReadResult> {
    if crate::audit::current().is_some() {
        return read_scoped(state, ctx, req).await;
    }
    // Outside an HTTP request (in-process callers): audit this call by itself, re-deciding when the
    // consent state changed meanwhile.
    for _ in 0..3 {
        let scope = Arc::new(crate::audit::RequestScope::default());
        let out = crate::audit::scoped(scope.clone(), read_scoped(state, ctx, req)).await;
        let c = scope.take();
        let (code, action) = req.interaction();
        let interaction = Interaction {
            code: code.into(),
            action,
            status: match &out {
                Ok(_) => 200,
                Err(e) => e.status.as_u16(),
            },
            outcome_desc: c.denied.clone(),
            patients: c.patients.iter().cloned().collect(),
            resources: c.resources.clone(),
            request_id: ctx.request_id.clone(),
            emergency_override: c.emergency_override,
            ..Default::default()
        };
        let principal = ctx.principal.clone().or(c.principal.clone());
        let record = crate::audit::event::record(principal.as_deref(), &interaction, crate::audit::now_ms());
        let expected = c.generations.map(|(lo, _)| lo);
        match state.security.auditor.append(record, expected).await {
            Ok(Ack::Stale { generation }) => {
                state.security.pdp.observe_generation(generation);
                continue;
            }
            Ok(Ack::Written { generation, .. }) => {
                state.security.pdp.observe_generation(generation);
                return out;
            }
            Ok(Ack::Disabled) => return out,
            Err(e) => {
                tracing::error!("read withheld: {e}");
                return Err(ApiError::internal());
            }
        }
    }
    Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "transient", "access rules changed while answering; retry"))
}

async fn read_scoped(state: &AppState, ctx: &RequestContext, req: ReadRequest<'_>) -> ApiResult<ReadResult> {
    let sec = &state.security;
    let scope = crate::audit::current();
    let principal = ctx.principal.clone();
    if let (Some(s), Some(p)) = (&scope, &principal) {
        s.with(|c| {
            if c.principal.is_none() {
                c.principal = Some(p.clone())
            }
        });
    }
    if let Some(p) = principal.as_deref() {
        if p.facility.is_some() {
            let (g, suspended) = sec.pdp.facility_suspended(Some(p)).await?;
            if let Some(s) = &scope {
                s.with(|c| c.decided_under(g));
            }
            if suspended {
                return Err(deny(ctx, scope.as_deref(), &DenyReason::Suspended));
            }
        }
    }
    // SMART scopes (auth::scopes): before the store is asked (a `patient/` search comes back narrowed to
    // the patient compartment), then on what the store returned.
    let narrowed = crate::auth::scopes::check_read(state, ctx, &req)?;
    let effective = match &narrowed {
        Some(crate::auth::scopes::Narrowed::Query(q)) => req.with_query(q),
        Some(crate::auth::scopes::Narrowed::Empty) => return Ok(req.empty_result()),
        None => req,
    };
    let mut result = if effective.resource_type() == Some("AuditEvent") {
        audit_trail_read(state, principal.as_deref(), effective).await?
    } else {
        consented_read(state, ctx, principal.as_deref(), scope.as_deref(), effective).await?
    };
    crate::auth::scopes::check_read_result(ctx, &req, &mut result)?;
    Ok(result)
}

/// 403 for `reason`, recorded for the audit (request scope) and the authentication layer's `Denial`.
fn deny(ctx: &RequestContext, scope: Option<&crate::audit::RequestScope>, reason: &DenyReason) -> ApiError {
    if let Some(s) = scope {
        s.with(|c| {
            if c.denied.is_none() {
                c.denied = Some(reason.text())
            }
        });
    }
    ctx.record_denial(crate::auth::Denial {
        status: StatusCode::FORBIDDEN,
        reason: reason.text(),
        principal: ctx.principal.clone(),
    });
    forbidden(reason)
}

/// The store read of `req`, filtered by consent for `principal`.
async fn consented_read(
    state: &AppState,
    ctx: &RequestContext,
    principal: Option<&Principal>,
    scope: Option<&crate::audit::RequestScope>,
    req: ReadRequest<'_>,
) -> ApiResult<ReadResult> {
    let store = &state.store;
    let filter = Filter { state, ctx, principal, scope };
    match req {
        ReadRequest::Read { resource_type, id } => {
            let sr = store.read(resource_type, id).await?;
            filter.one(sr).await.map(ReadResult::One)
        }
        ReadRequest::VRead { resource_type, id, version_id } => {
            let sr = store.vread(resource_type, id, version_id).await?;
            filter.one(sr).await.map(ReadResult::One)
        }
        ReadRequest::Search { query } => filter.search(query).await.map(ReadResult::Page),
        ReadRequest::SearchIds { query, limit } => {
            if Pdp::sees_everything(principal) {
                return Ok(ReadResult::Ids(store.search_ids(query, limit).await?));
            }
            let mut q = query.clone();
            q.count = limit.min(crate::search::MAX_COUNT);
            q.offset = 0;
            q.summary = None;
            q.total = Some(crate::search::TotalMode::None);
            q.includes.clear();
            q.revincludes.clear();
            let page = store.search(&q).await?;
            let (kept, _) = filter.many(page.matches).await?;
            Ok(ReadResult::Ids(kept.into_iter().map(|r| r.id).collect()))
        }
        ReadRequest::History { resource_type, id, since, count } => {
            let versions = store.history(resource_type, id, since, count).await?;
            let (kept, _) = filter.many(versions).await?;
            Ok(ReadResult::Versions(kept))
        }
    }
}

/// Consent filtering of store results for one caller.
struct Filter<'a> {
    state: &'a AppState,
    ctx: &'a RequestContext,
    principal: Option<&'a Principal>,
    scope: Option<&'a crate::audit::RequestScope>,
}

impl Filter<'_> {
    fn note(&self, f: impl FnOnce(&mut crate::audit::Collected)) {
        if let Some(s) = self.scope {
            s.with(f)
        }
    }

    /// Decisions for every patient of `items`; `Ok(per item: None = permitted, Some(reason) = denied)`.
    async fn decide(&self, items: &[StoredResource]) -> ApiResult<Vec<Option<DenyReason>>> {
        let per_item: Vec<Vec<String>> = items
            .iter()
            .map(|r| if r.deleted { Vec::new() } else { patients_of(&r.resource_type, &r.id, &r.json) })
            .collect();
        let Some(principal) = self.principal.filter(|p| !Pdp::sees_everything(Some(p))) else {
            // Authentication disabled or a network-level service: everything is permitted (tombstones
            // included); the audit still lists the patients.
            self.note(|c| {
                for (r, ps) in items.iter().zip(&per_item) {
                    c.patients.extend(ps.iter().cloned());
                    c.resource(format!("{}/{}", r.resource_type, r.id));
                }
            });
            return Ok(vec![None; items.len()]);
        };
        let mut all: Vec<String> = per_item.iter().flatten().cloned().collect();
        all.sort();
        all.dedup();
        let pdp = &self.state.security.pdp;
        let mut verdicts: HashMap<String, Decision> = HashMap::with_capacity(all.len());
        if !all.is_empty() {
            let (g, facts) = pdp.facts(&all).await?;
            self.note(|c| c.decided_under(g));
            for p in &all {
                let f = facts.get(p).cloned().unwrap_or_default();
                let mut d = pdp.decide(Some(principal), p, &f);
                if let Decision::Deny(reason) = &d {
                    if self.ctx.emergency_summary.as_deref() == Some(p.as_str()) && f.exists {
                        d = match Pdp::break_the_glass(Some(principal)) {
                            Ok(()) => Decision::Permit(Basis::BreakTheGlass),
                            Err(why) if principal.purpose_of_use.as_deref().is_some_and(|u| EMERGENCY_PURPOSES.contains(&u)) => {
                                Decision::Deny(why)
                            }
                            Err(_) => Decision::Deny(reason.clone()),
                        };
                    }
                }
                verdicts.insert(p.clone(), d);
            }
        }
        let mut out = Vec::with_capacity(items.len());
        self.note(|c| {
            for (r, ps) in items.iter().zip(&per_item) {
                let denial = if r.deleted && !NON_PATIENT_TYPES.contains(&r.resource_type.as_str()) {
                    // A tombstone has no content to decide on: shown only where nothing can be hidden.
                    Some(DenyReason::NoConsent)
                } else {
                    ps.iter().find_map(|p| match verdicts.get(p) {
                        Some(Decision::Deny(why)) => Some(why.clone()),
                        _ => None,
                    })
                };
                match &denial {
                    None => {
                        for p in ps {
                            if matches!(verdicts.get(p), Some(Decision::Permit(Basis::BreakTheGlass))) {
                                c.emergency_override = true;
                            }
                        }
                        c.patients.extend(ps.iter().cloned());
                        c.resource(format!("{}/{}", r.resource_type, r.id));
                    }
                    Some(why) => {
                        if c.denied.is_none() {
                            c.denied = Some(why.text());
                        }
                    }
                }
                out.push(denial);
            }
        });
        Ok(out)
    }

    /// One resource (read / vread): 403 when not permitted. Tombstones (vread of a deleted version)
    /// carry no data and pass.
    async fn one(&self, sr: StoredResource) -> ApiResult<StoredResource> {
        if sr.deleted {
            return Ok(sr);
        }
        let d = self.decide(std::slice::from_ref(&sr)).await?;
        match d.into_iter().next().flatten() {
            None => Ok(sr),
            Some(why) => {
                // The refused request names the patient it asked for.
                self.note(|c| c.patients.extend(patients_of(&sr.resource_type, &sr.id, &sr.json)));
                Err(deny(self.ctx, self.scope, &why))
            }
        }
    }

    /// Keeps the permitted resources; returns them and how many were removed.
    async fn many(&self, items: Vec<StoredResource>) -> ApiResult<(Vec<StoredResource>, usize)> {
        if items.is_empty() {
            return Ok((items, 0));
        }
        let d = self.decide(&items).await?;
        let before = items.len();
        let kept: Vec<StoredResource> = items.into_iter().zip(d).filter(|(_, d)| d.is_none()).map(|(r, _)| r).collect();
        let removed = before - kept.len();
        Ok((kept, removed))
    }

    /// A search page with matches and includes filtered and `total` kept only when exact.
    async fn search(&self, q: &SearchQuery) -> ApiResult<SearchPage> {
        let store = &self.state.store;
        let page = store.search(q).await?;
        if Pdp::sees_everything(self.principal) {
            self.decide(&page.matches).await?;
            self.decide(&page.included).await?;
            return Ok(page);
        }
        let SearchPage { matches, total, included } = page;
        let fetched = matches.len();
        let (matches, removed) = self.many(matches).await?;
        let (included, _) = self.many(included).await?;
        let total = if q.summary == Some(crate::search::SummaryMode::Count) {
            self.count_permitted(q).await?
        } else if q.offset == 0 && total == Some(fetched as u64) {
            // Every match is on this page: the filtered count is exact.
            Some((fetched - removed) as u64)
        } else if removed == 0 && q.offset == 0 && total.is_some_and(|t| t as usize == fetched) {
            total
        } else {
            None
        };
        Ok(SearchPage { matches, total, included })
    }

    /// `_summary=count` under consent: the number of permitted matches, when at most
    /// [`COUNT_RECOMPUTE_LIMIT`] matches exist; else `None` (omitted, never leaked).
    async fn count_permitted(&self, q: &SearchQuery) -> ApiResult<Option<u64>> {
        let mut all = q.clone();
        all.summary = None;
        all.count = COUNT_RECOMPUTE_LIMIT;
        all.offset = 0;
        all.total = Some(crate::search::TotalMode::None);
        all.includes.clear();
        all.revincludes.clear();
        all.elements.clear();
        let page = self.state.store.search(&all).await?;
        if page.matches.len() >= COUNT_RECOMPUTE_LIMIT {
            return Ok(None);
        }
        let (kept, _) = self.many(page.matches).await?;
        Ok(Some(kept.len() as u64))
    }
}

/// `AuditEvent` read / search from the audit trail (secretariat role only; everyone when authentication
/// is disabled). Search parameters: `_id`, `patient`, `agent`, `date`, `subtype`, `type`, `action`,
/// `outcome`, `_count`, `_offset`, `_sort=date|-date` (default newest first). Errors: 403 for other
/// callers, 400 for other parameters.
async fn audit_trail_read(state: &AppState, principal: Option<&Principal>, req: ReadRequest<'_>) -> ApiResult<ReadResult> {
    if let Some(p) = principal {
        if !p.roles.contains(&Role::Secretariat) {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "AuditEvent is available to the secretariat role only"));
        }
    }
    let to_resource = |r: crate::store::audit::AuditRow| StoredResource {
        resource_type: "AuditEvent".into(),
        id: r.seq.to_string(),
        version_id: 1,
        last_updated: crate::store::audit::format_instant_ms(r.recorded_ms),
        deleted: false,
        json: r.event_json(),
    };
    let store = &state.store;
    match req {
        ReadRequest::Read { id, .. } | ReadRequest::VRead { id, .. } => {
            let seq: i64 = id.parse().map_err(|_| ApiError::not_found(format!("AuditEvent/{id} not found")))?;
            let f = AuditFilter { seq: Some(seq), limit: 1, ..Default::default() };
            let (rows, _) = store.audit_search(&f).await?;
            rows.into_iter()
                .next()
                .map(|r| ReadResult::One(to_resource(r)))
                .ok_or_else(|| ApiError::not_found(format!("AuditEvent/{id} not found")))
        }
        ReadRequest::Search { query } | ReadRequest::SearchIds { query, .. } => {
            let mut f = AuditFilter {
                limit: query.count,
                offset: query.offset,
                ascending: query.sort.first().is_some_and(|k| !k.descending),
                ..Default::default()
            };
            for p in &query.params {
                audit_param(&mut f, p)?;
            }
            let (rows, total) = store.audit_search(&f).await?;
            let ids_only = matches!(req, ReadRequest::SearchIds { .. });
            if ids_only {
                return Ok(ReadResult::Ids(rows.into_iter().map(|r| r.seq.to_string()).collect()));
            }
            let count_only = query.summary == Some(crate::search::SummaryMode::Count);
            Ok(ReadResult::Page(SearchPage {
                matches: if count_only { Vec::new() } else { rows.into_iter().map(to_resource).collect() },
                total: Some(total),
                included: Vec::new(),
            }))
        }
        ReadRequest::History { .. } => Ok(ReadResult::Versions(Vec::new())),
    }
}

fn audit_param(f: &mut AuditFilter, p: &crate::search::SearchParam) -> ApiResult<()> {
    use crate::search::{Prefix, SearchValue};
    let unsupported = || ApiError::bad_request(format!("AuditEvent search parameter `{}` is not supported here", p.code));
    if p.modifier.is_some() || p.chain.is_some() {
        return Err(unsupported());
    }
    for v in &p.values {
        match (p.code.as_str(), v) {
            ("_id", SearchValue::Token { code: Some(c), .. }) | ("_id", SearchValue::String { exact: c, .. }) | ("_id", SearchValue::Uri(c)) => {
                f.seq = Some(c.parse().map_err(|_| ApiError::bad_request("AuditEvent _id is a number"))?);
            }
            ("patient", SearchValue::Reference { id, .. }) if !id.is_empty() => f.patients.push(id.clone()),
            ("agent", SearchValue::Reference { target_type, id, .. }) if !id.is_empty() => match target_type {
                Some(t) => f.agents.push(format!("{t}/{id}")),
                None => {
                    f.agents.push(id.clone());
                    f.agents.push(format!("Organization/{id}"));
                }
            },
            // The code alone selects (each is unique across the systems the gateway records).
            ("subtype" | "type" | "action" | "outcome", SearchValue::Token { code: Some(c), .. }) => {
                match p.code.as_str() {
                    "subtype" => f.subtypes.push(c.clone()),
                    "type" => f.types.push(c.clone()),
                    "action" => f.actions.push(c.clone()),
                    _ => f.outcomes.push(c.clone()),
                }
            }
            ("date", SearchValue::Date { prefix, lo_ms, hi_ms }) => match prefix {
                Prefix::Ge | Prefix::Sa | Prefix::Gt => f.recorded_ge.push(if *prefix == Prefix::Ge { *lo_ms } else { hi_ms + 1 }),
                Prefix::Le | Prefix::Eb | Prefix::Lt => f.recorded_le.push(if *prefix == Prefix::Le { *hi_ms } else { lo_ms - 1 }),
                Prefix::Eq | Prefix::Ap => {
                    f.recorded_ge.push(*lo_ms);
                    f.recorded_le.push(*hi_ms);
                }
                Prefix::Ne => return Err(unsupported()),
            },
            _ => return Err(unsupported()),
        }
    }
    Ok(())
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

/// THE write decision point: the SMART scope check (`auth::scopes::check_write`); the caller's facility
/// must not be suspended (checked inside the write
/// transaction, so a suspension takes effect on the very next write), `AuditEvent` cannot be written by
/// clients (403), and the write's AuditEvent (BALP Create/Update/Delete, patients of the written
/// resources) is appended to the audit chain **in the same database transaction** as the data.
///
/// Errors: as the store; a failed transaction names the failing entry index in `diagnostics`; 403 for a
/// suspended facility or an `AuditEvent` write.
pub async fn write(state: &AppState, ctx: &RequestContext, req: WriteRequest<'_>) -> ApiResult<WriteResult> {
    // SMART scopes (auth::scopes).
    crate::auth::scopes::check_write(state, ctx, &req).await?;
    let principal = ctx.principal.clone();
    let scope = crate::audit::current();
    if let (Some(s), Some(p)) = (&scope, &principal) {
        s.with(|c| {
            if c.principal.is_none() {
                c.principal = Some(p.clone())
            }
        });
    }
    let (code, action, status, entries): (&str, &'static str, u16, Vec<TxEntry>) = match req {
        WriteRequest::Create { resource_type, body } => (
            "create",
            "C",
            201,
            vec![TxEntry::Create { resource_type: resource_type.to_string(), id: None, body: body.into() }],
        ),
        WriteRequest::Update { resource_type, id, body, if_match } => (
            "update",
            "U",
            200,
            vec![TxEntry::Update { resource_type: resource_type.to_string(), id: id.to_string(), body: body.into(), if_match }],
        ),
        WriteRequest::Delete { resource_type, id } => {
            ("delete", "D", 200, vec![TxEntry::Delete { resource_type: resource_type.to_string(), id: id.to_string() }])
        }
        WriteRequest::Transaction(entries) => ("transaction", "E", 200, entries),
    };
    if entries.iter().any(|e| match e {
        TxEntry::Create { resource_type, .. } | TxEntry::Update { resource_type, .. } | TxEntry::Delete { resource_type, .. } => {
            resource_type == "AuditEvent"
        }
    }) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "AuditEvents are recorded by the gateway only"));
    }
    let single = !matches!(code, "transaction");
    let facility = principal.as_ref().and_then(|p| p.facility.clone());
    let request_id = ctx.request_id.clone();
    let p_for_audit = principal.clone();
    let audited = state.security.auditor.config().enabled;
    let make_audit = move |results: &[TxResult]| {
        if !audited {
            return Vec::new();
        }
        let mut i = Interaction { code: code.into(), action, status, request_id, ..Default::default() };
        for r in results {
            if let TxResult::Written { resource, .. } = r {
                for p in patients_of(&resource.resource_type, &resource.id, &resource.json) {
                    if !i.patients.contains(&p) {
                        i.patients.push(p);
                    }
                }
                if i.resources.len() < crate::audit::MAX_RESOURCES {
                    i.resources.push(format!("{}/{}", resource.resource_type, resource.id));
                }
            }
        }
        vec![crate::audit::event::record(p_for_audit.as_deref(), &i, crate::audit::now_ms())]
    };
    let results = match state.store.transaction_audited(entries, facility, make_audit).await {
        Ok(r) => r,
        Err(AuditedTxError::Suspended) => return Err(deny(ctx, scope.as_deref(), &DenyReason::Suspended)),
        Err(AuditedTxError::Tx(e)) => {
            let mut err = ApiError::from(e.error);
            if let (Some(i), false) = (e.entry, single) {
                for issue in &mut err.issues {
                    issue.diagnostics = format!("transaction entry {i}: {}", issue.diagnostics);
                }
            }
            return Err(err);
        }
    };
    if let Some(s) = &scope {
        s.with(|c| c.audited_in_tx = true);
    }
    if !single {
        return Ok(WriteResult::Transaction(results));
    }
    Ok(match results.into_iter().next() {
        Some(TxResult::Written { resource, outcome }) => WriteResult::Written(resource, outcome),
        Some(TxResult::Deleted { version_id }) => WriteResult::Deleted(version_id),
        None => return Err(ApiError::internal()),
    })
}
