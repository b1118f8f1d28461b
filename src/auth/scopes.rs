//! SMART on FHIR scopes: parsing (SMART App Launch 2.0 §3 "Scopes and Launch Context") and the scope
//! check of every read and write at the access decision point (`api::access`).
//!
//! # Parsing ([`parse_scopes`])
//!
//! * v2: `(patient|user|system)/(Type|*).[c][r][u][d][s]` — the permission letters must be a non-empty
//!   subsequence of `cruds` in that order (`rs`, `cud`, `cruds`).
//! * v1: `.read` → `rs`, `.write` → `cud`, `.*` → `cruds`.
//! * Query-constrained v2 scopes (`user/Observation.rs?category=…`) are **ignored** (fail closed): the
//!   gateway does not evaluate their search filters, and granting them unconstrained would widen access.
//! * Non-resource scopes (`openid`, `fhirUser`, `launch`, `launch/patient`, `offline_access`, IUA
//!   transaction scopes such as `ITI-78` …) are ignored.
//!
//! # Enforcement
//!
//! | interaction | permission |
//! |---|---|
//! | read, vread | `r` |
//! | search (GET/POST), conditional lookups, history (system, type, instance) | `s` |
//! | create | `c` |
//! | update, patch (patch also reads the current version: `r`) | `u` |
//! | delete | `d` |
//! | transaction | every entry as above |
//!
//! A `user/` or `system/` scope grants the type (or `*`) outright — still subject to facility and
//! consent rules applied after this check. A `patient/` scope grants only the **patient compartment** of
//! the token's `patient` claim: the Patient itself and resources whose `subject` or `patient` reference
//! is `Patient/<patient>`:
//!
//! * read/vread/instance history: the returned resource (every version) must be in the compartment;
//! * search (and conditional lookups): **narrowed** — unless the query is already restricted to the
//!   patient (`Patient?_id=<patient>`, `<Type>?patient=<patient>` / `subject=Patient/<patient>`), the
//!   gateway ANDs `_id=<patient>` (Patient) or `patient=Patient/<patient>` (else `subject=…`) to it before
//!   the store runs it, so results, `total` and paging are exactly those of the compartment (nothing of
//!   other patients leaks through counts); a type with neither parameter has nothing in the compartment
//!   (e.g. `Linkage`): empty result;
//! * system/type history: rejected (cannot be restricted);
//! * writes: the new content and the current version (update, delete) must be in the compartment.
//!
//! `_include`/`_revinclude` results of any search are filtered to what the scopes allow to read
//! (types without `r`/`s`, resources outside the patient compartment are left out).
//!
//! Refusals are 403 `forbidden` OperationOutcomes naming the missing scope; each is also recorded as a
//! [`Denial`](super::Denial) in the request's [`DenialSlot`](super::DenialSlot).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::Value;

use super::{Denial, Principal, Scope, ScopeContext};
use crate::api::access::{ReadRequest, ReadResult, RequestContext, WriteRequest};
use crate::api::outcome::{ApiError, ApiResult};
use crate::api::AppState;
use crate::search::{SearchQuery, SearchValue};
use crate::store::{ResourceBody, ResourceStore, StoreError, StoredResource, TxEntry};

/// Parse a space-separated `scope` claim into resource scopes (see the module doc for the grammar;
/// unknown or constrained scopes are skipped). Never fails.
pub fn parse_scopes(scope: &str) -> Vec<Scope> {
    scope.split_ascii_whitespace().filter_map(parse_scope).collect()
}

/// Parse one scope token; `None` for non-resource, malformed or query-constrained scopes.
pub fn parse_scope(s: &str) -> Option<Scope> {
    if s.contains('?') {
        return None;
    }
    let (ctx, rest) = s.split_once('/')?;
    let context = match ctx {
        "patient" => ScopeContext::Patient,
        "user" => ScopeContext::User,
        "system" => ScopeContext::System,
        _ => return None,
    };
    let (rtype, perms) = rest.split_once('.')?;
    if rtype != "*" && !is_resource_type_name(rtype) {
        return None;
    }
    let permissions: BTreeSet<char> = match perms {
        "read" => ['r', 's'].into(),
        "write" => ['c', 'u', 'd'].into(),
        "*" => ['c', 'r', 'u', 'd', 's'].into(),
        p => {
            // v2: a non-empty subsequence of "cruds", in order.
            let mut order = "cruds".chars();
            if p.is_empty() || !p.chars().all(|c| order.by_ref().any(|o| o == c)) {
                return None;
            }
            p.chars().collect()
        }
    };
    Some(Scope { context, resource_type: rtype.to_string(), permissions })
}

fn is_resource_type_name(t: &str) -> bool {
    let mut c = t.chars();
    c.next().is_some_and(|f| f.is_ascii_uppercase()) && c.all(|c| c.is_ascii_alphanumeric()) && t.len() <= 64
}

/// Render a scope back in v2 syntax (`user/Observation.rs`).
pub fn scope_string(s: &Scope) -> String {
    let ctx = match s.context {
        ScopeContext::Patient => "patient",
        ScopeContext::User => "user",
        ScopeContext::System => "system",
    };
    let perms: String = "cruds".chars().filter(|c| s.permissions.contains(c)).collect();
    format!("{ctx}/{}.{perms}", s.resource_type)
}

/// What the principal's scopes grant for one resource type and permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grant {
    /// Nothing.
    None,
    /// Only the compartment of this patient (a `patient/` scope).
    Compartment,
    /// The whole type (a `user/` or `system/` scope).
    Full,
}

impl Principal {
    /// The best grant of `permission` (`c r u d s`) on `resource_type` by the principal's scopes.
    /// `patient/` scopes count only when the token has a `patient` context.
    pub fn grant(&self, resource_type: &str, permission: char) -> Grant {
        let mut best = Grant::None;
        for s in &self.scopes {
            if (s.resource_type == "*" || s.resource_type == resource_type) && s.permissions.contains(&permission) {
                let g = match s.context {
                    ScopeContext::Patient if self.patient.is_some() => Grant::Compartment,
                    ScopeContext::Patient => Grant::None,
                    ScopeContext::User | ScopeContext::System => Grant::Full,
                };
                best = best.max(g);
                if best == Grant::Full {
                    break;
                }
            }
        }
        best
    }

    /// The scope context named in refusals: that of the token's first resource scope (`user` when none).
    fn context_name(&self) -> &'static str {
        match self.scopes.first().map(|s| s.context) {
            Some(ScopeContext::Patient) => "patient",
            Some(ScopeContext::System) => "system",
            _ => "user",
        }
    }
}

/// The principal a check applies to: `Ok(None)` when authentication is disabled (or for the trusted
/// local CLI), `Err` 403 when the context has neither a principal nor that permission (fail closed).
fn principal(ctx: &RequestContext) -> ApiResult<Option<&Arc<Principal>>> {
    match &ctx.principal {
        Some(p) => Ok(Some(p)),
        None if ctx.unrestricted => Ok(None),
        None => Err(deny(ctx, None, "no authenticated principal for this request".into())),
    }
}

/// Record a denial in the request's slot and build the 403 `forbidden` OperationOutcome.
pub fn deny(ctx: &RequestContext, principal: Option<&Arc<Principal>>, reason: String) -> ApiError {
    ctx.record_denial(Denial { status: StatusCode::FORBIDDEN, reason: reason.clone(), principal: principal.cloned() });
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", reason)
}

fn missing(ctx: &RequestContext, p: &Arc<Principal>, resource_type: &str, permission: char) -> ApiError {
    deny(ctx, Some(p), format!("insufficient scope: this request needs {}/{resource_type}.{permission}", p.context_name()))
}

/// Require `permission` on `resource_type` with any grant; returns the grant.
fn need(ctx: &RequestContext, p: &Arc<Principal>, resource_type: &str, permission: char) -> ApiResult<Grant> {
    match p.grant(resource_type, permission) {
        Grant::None => Err(missing(ctx, p, resource_type, permission)),
        g => Ok(g),
    }
}

fn compartment_refusal(ctx: &RequestContext, p: &Arc<Principal>, what: &str) -> ApiError {
    deny(ctx, Some(p), format!("patient/ scopes allow only the patient in context: {what}"))
}

/// How a `patient/` grant narrows a search to the patient compartment.
#[derive(Debug)]
pub enum Narrowed {
    /// Run this query instead (the original AND the compartment restriction), see
    /// [`ReadRequest::with_query`].
    Query(SearchQuery),
    /// The type has no resources in the compartment: answer with an empty result
    /// ([`ReadRequest::empty_result`]) without asking the store.
    Empty,
}

/// The scope check **before** a read runs (see the module doc). Returns `Some(_)` when a `patient/`
/// grant narrows a search to the patient compartment. Errors: 403 `forbidden`.
pub fn check_read(state: &AppState, ctx: &RequestContext, req: &ReadRequest<'_>) -> ApiResult<Option<Narrowed>> {
    let Some(p) = principal(ctx)? else { return Ok(None) };
    match *req {
        ReadRequest::Read { resource_type, id } | ReadRequest::VRead { resource_type, id, .. } => {
            if need(ctx, p, resource_type, 'r')? == Grant::Compartment
                && resource_type == "Patient"
                && Some(id) != p.patient.as_deref()
            {
                return Err(compartment_refusal(ctx, p, "read of another Patient"));
            }
        }
        ReadRequest::Search { query } | ReadRequest::SearchIds { query, .. } => {
            if need(ctx, p, &query.resource_type, 's')? == Grant::Compartment {
                let patient = p.patient.as_deref().unwrap_or_default();
                if !restricted_to_patient(query, patient) {
                    return Ok(Some(narrowed(state, query, patient).map_or(Narrowed::Empty, Narrowed::Query)));
                }
            }
        }
        ReadRequest::History { resource_type, id, .. } => match (resource_type, id) {
            (None, _) => {
                if p.grant("*", 's') != Grant::Full {
                    return Err(missing(ctx, p, "*", 's'));
                }
            }
            (Some(t), None) => {
                if need(ctx, p, t, 's')? == Grant::Compartment {
                    return Err(compartment_refusal(ctx, p, "type-level history cannot be restricted to a patient"));
                }
            }
            (Some(t), Some(id)) => {
                if need(ctx, p, t, 's')? == Grant::Compartment && t == "Patient" && Some(id) != p.patient.as_deref() {
                    return Err(compartment_refusal(ctx, p, "history of another Patient"));
                }
            }
        },
    }
    Ok(None)
}

/// `query` AND-ed with the patient compartment: `_id=<p>` on Patient, else `patient=Patient/<p>` (or
/// `subject=Patient/<p>` when the type has no `patient` parameter); `None` when the type has neither
/// (nothing of it is in the compartment).
fn narrowed(state: &AppState, query: &SearchQuery, patient: &str) -> Option<SearchQuery> {
    if patient.is_empty() {
        return None;
    }
    let t = query.resource_type.as_str();
    let (code, value) = if t == "Patient" {
        ("_id", patient.to_string())
    } else if state.registry.get(t, "patient").is_some() {
        ("patient", format!("Patient/{patient}"))
    } else if state.registry.get(t, "subject").is_some() {
        ("subject", format!("Patient/{patient}"))
    } else {
        return None;
    };
    let extra = crate::search::query::parse(&state.registry, t, &[(code.to_string(), value)]).ok()?;
    let mut q = query.clone();
    q.params.extend(extra.params);
    Some(q)
}

impl<'a> ReadRequest<'a> {
    /// The same request with another query (search and conditional lookups; other requests unchanged).
    pub fn with_query(self, q: &'a SearchQuery) -> ReadRequest<'a> {
        match self {
            ReadRequest::Search { .. } => ReadRequest::Search { query: q },
            ReadRequest::SearchIds { limit, .. } => ReadRequest::SearchIds { query: q, limit },
            other => other,
        }
    }

    /// The result of a search that matches nothing (`total` 0); for other requests an empty history.
    pub fn empty_result(&self) -> ReadResult {
        match self {
            ReadRequest::SearchIds { .. } => ReadResult::Ids(vec![]),
            ReadRequest::History { .. } => ReadResult::Versions(vec![]),
            _ => ReadResult::Page(crate::store::SearchPage { matches: vec![], total: Some(0), included: vec![] }),
        }
    }
}

/// The scope check **after** a read ran: patient-compartment membership of what a `patient/` scope
/// returned, and the filtering of `_include`/`_revinclude` resources to readable ones.
/// Errors: 403 `forbidden`.
pub fn check_read_result(ctx: &RequestContext, req: &ReadRequest<'_>, result: &mut ReadResult) -> ApiResult<()> {
    let Some(p) = principal(ctx)? else { return Ok(()) };
    match (req, result) {
        (ReadRequest::Read { resource_type, .. } | ReadRequest::VRead { resource_type, .. }, ReadResult::One(r)) => {
            if p.grant(resource_type, 'r') == Grant::Compartment && !r.deleted && !in_compartment(p, r) {
                return Err(compartment_refusal(ctx, p, "the resource is outside the patient compartment"));
            }
        }
        (ReadRequest::History { resource_type: Some(t), id: Some(_), .. }, ReadResult::Versions(vs)) => {
            if p.grant(t, 's') == Grant::Compartment && vs.iter().any(|v| !v.deleted && !in_compartment(p, v)) {
                return Err(compartment_refusal(ctx, p, "the resource is outside the patient compartment"));
            }
        }
        (ReadRequest::Search { .. }, ReadResult::Page(page)) => {
            page.included.retain(|r| readable(p, r));
        }
        _ => {}
    }
    Ok(())
}

/// Whether an included resource may be returned: `r` or `s` on its type, and in the compartment for a
/// `patient/` grant.
fn readable(p: &Principal, r: &StoredResource) -> bool {
    match p.grant(&r.resource_type, 'r').max(p.grant(&r.resource_type, 's')) {
        Grant::Full => true,
        Grant::Compartment => in_compartment(p, r),
        Grant::None => false,
    }
}

/// The scope check of a write (before it runs). For `patient/` grants it reads the current version of
/// updated/deleted resources (directly from the store: an internal check, nothing is returned).
/// Errors: 403 `forbidden`; store failures as usual.
pub async fn check_write(state: &AppState, ctx: &RequestContext, req: &WriteRequest<'_>) -> ApiResult<()> {
    let Some(p) = principal(ctx)? else { return Ok(()) };
    match req {
        WriteRequest::Create { resource_type, body } => check_entry(state, ctx, p, resource_type, None, Some(Body::Text(body)), 'c').await,
        WriteRequest::Update { resource_type, id, body, .. } => {
            check_entry(state, ctx, p, resource_type, Some(id), Some(Body::Text(body)), 'u').await
        }
        WriteRequest::Delete { resource_type, id } => check_entry(state, ctx, p, resource_type, Some(id), None, 'd').await,
        WriteRequest::Transaction(entries) => {
            for e in entries {
                match e {
                    TxEntry::Create { resource_type, id, body } => {
                        check_entry(state, ctx, p, resource_type, id.as_deref(), Some(Body::of(body)), 'c').await?
                    }
                    TxEntry::Update { resource_type, id, body, .. } => {
                        check_entry(state, ctx, p, resource_type, Some(id), Some(Body::of(body)), 'u').await?
                    }
                    TxEntry::Delete { resource_type, id } => check_entry(state, ctx, p, resource_type, Some(id), None, 'd').await?,
                }
            }
            Ok(())
        }
    }
}

enum Body<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl<'a> Body<'a> {
    fn of(b: &'a ResourceBody) -> Body<'a> {
        match b {
            ResourceBody::Text(t) => Body::Text(t),
            ResourceBody::Json(v) => Body::Json(v),
        }
    }
}

async fn check_entry(
    state: &AppState,
    ctx: &RequestContext,
    p: &Arc<Principal>,
    resource_type: &str,
    id: Option<&str>,
    body: Option<Body<'_>>,
    permission: char,
) -> ApiResult<()> {
    if need(ctx, p, resource_type, permission)? == Grant::Full {
        return Ok(());
    }
    let patient = p.patient.as_deref().unwrap_or_default();
    if resource_type == "Patient" {
        return if id == Some(patient) { Ok(()) } else { Err(compartment_refusal(ctx, p, "write of another Patient")) };
    }
    if let Some(b) = body {
        let member = match b {
            Body::Text(t) => serde_json::from_str::<Value>(t).ok().is_some_and(|v| json_in_compartment(&v, patient)),
            Body::Json(v) => json_in_compartment(v, patient),
        };
        if !member {
            return Err(compartment_refusal(ctx, p, "the written resource's subject/patient must be the patient in context"));
        }
    }
    if permission != 'c' {
        if let Some(id) = id {
            match state.store.read(resource_type, id).await {
                Ok(cur) if !cur.deleted && !in_compartment(p, &cur) => {
                    return Err(compartment_refusal(ctx, p, "the current version is outside the patient compartment"))
                }
                Ok(_) | Err(StoreError::NotFound(..)) | Err(StoreError::Gone(..)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Whether `r` is in the patient compartment of `p.patient`: the Patient itself, or a resource whose
/// `subject` or `patient` reference is `Patient/<id>`.
pub fn in_compartment(p: &Principal, r: &StoredResource) -> bool {
    let Some(patient) = p.patient.as_deref() else { return false };
    if r.resource_type == "Patient" {
        return r.id == patient;
    }
    serde_json::from_str::<Value>(&r.json).ok().is_some_and(|v| json_in_compartment(&v, patient))
}

fn json_in_compartment(v: &Value, patient: &str) -> bool {
    if v.get("resourceType").and_then(Value::as_str) == Some("Patient") {
        return v.get("id").and_then(Value::as_str) == Some(patient);
    }
    ["subject", "patient"].iter().any(|k| {
        v.get(*k).and_then(|r| r.get("reference")).and_then(Value::as_str).is_some_and(|r| reference_is_patient(r, patient))
    })
}

/// `Patient/<id>`, possibly absolute (`…/Patient/<id>`) or versioned (`…/_history/n`).
fn reference_is_patient(reference: &str, patient: &str) -> bool {
    let r = reference.split("/_history/").next().unwrap_or_default();
    r.strip_suffix(patient).and_then(|head| head.strip_suffix('/')).is_some_and(|head| head == "Patient" || head.ends_with("/Patient"))
}

/// Whether a search is restricted to one patient: `Patient?_id=<p>` or `?patient=<p>` / `subject=Patient/<p>`
/// with every OR-value naming that patient.
fn restricted_to_patient(q: &SearchQuery, patient: &str) -> bool {
    if patient.is_empty() {
        return false;
    }
    let codes: &[&str] = if q.resource_type == "Patient" { &["_id"] } else { &["patient", "subject"] };
    q.params.iter().any(|sp| {
        codes.contains(&sp.code.as_str())
            && sp.chain.is_none()
            && sp.modifier.is_none()
            && !sp.values.is_empty()
            && sp.values.iter().all(|v| match v {
                SearchValue::Reference { target_type, id, .. } => {
                    id == patient && target_type.as_deref().is_none_or(|t| t == "Patient")
                }
                SearchValue::Token { code: Some(c), .. } => sp.code == "_id" && c == patient,
                SearchValue::String { exact, .. } => sp.code == "_id" && exact == patient,
                _ => false,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scope: &str, patient: Option<&str>) -> Principal {
        Principal {
            issuer: "i".into(),
            subject: "s".into(),
            client_id: None,
            token_id: None,
            facility: None,
            scopes: parse_scopes(scope),
            patient: patient.map(str::to_string),
            roles: Default::default(),
            purpose_of_use: None,
            reason: None,
        }
    }

    #[test]
    fn parses_v2_v1_and_ignores_others() {
        let s = parse_scopes("openid fhirUser launch/patient user/Observation.rs patient/*.read system/Patient.cud user/Encounter.sr user/Condition.rs?category=x ITI-78 user/bad.r user/Patient.");
        let rendered: Vec<String> = s.iter().map(scope_string).collect();
        assert_eq!(rendered, ["user/Observation.rs", "patient/*.rs", "system/Patient.cud"]);
        assert_eq!(scope_string(&parse_scope("user/*.*").unwrap()), "user/*.cruds");
        assert_eq!(scope_string(&parse_scope("user/*.write").unwrap()), "user/*.cud");
    }

    #[test]
    fn grants() {
        let p = principal("user/Observation.r patient/*.rs", Some("p1"));
        assert_eq!(p.grant("Observation", 'r'), Grant::Full);
        assert_eq!(p.grant("Observation", 's'), Grant::Compartment);
        assert_eq!(p.grant("Condition", 'c'), Grant::None);
        let no_ctx = principal("patient/*.rs", None);
        assert_eq!(no_ctx.grant("Observation", 'r'), Grant::None);
    }

    #[test]
    fn compartment_membership() {
        assert!(reference_is_patient("Patient/p1", "p1"));
        assert!(reference_is_patient("http://x/fhir/Patient/p1/_history/2", "p1"));
        assert!(!reference_is_patient("Patient/p10", "p1"));
        assert!(!reference_is_patient("Group/p1", "p1"));
        assert!(!reference_is_patient("XPatient/p1", "p1"));
        let obs = serde_json::json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}});
        assert!(json_in_compartment(&obs, "p1"));
        assert!(!json_in_compartment(&obs, "p2"));
        let pat = serde_json::json!({"resourceType": "Patient", "id": "p1"});
        assert!(json_in_compartment(&pat, "p1"));
    }
}
