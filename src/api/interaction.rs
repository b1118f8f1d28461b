//! Handlers for the instance- and type-level interactions (FHIR R4 §3.1.0.2–§3.1.0.9).

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::access::{self, RequestContext, WriteRequest, WriteResult};
use super::body::{self, parse_form, ResourceText};
use super::bundle::{BundleWriter, Entry};
use super::outcome::{operation_outcome, ApiError, ApiResult, Issue};
use super::rawjson;
use super::response::{self, etag, fhir_bytes, prefer_return, write_response, PreferReturn};
use super::summary::is_summary_element;
use super::AppState;
use crate::search::{self, Handling, SearchQuery, SummaryMode, TotalMode};
use crate::store::{StoredResource, WriteOutcome};
use crate::validation::schema;

/// 404 unless `t` is an R4 resource type.
pub(crate) fn check_type(t: &str) -> ApiResult<()> {
    if schema::is_resource_type(t) {
        Ok(())
    } else {
        Err(ApiError::unknown_type(t))
    }
}

/// `true` for a valid logical id (`[A-Za-z0-9\-\.]{1,64}`, FHIR R4 §2.24.0.1 `id`).
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Parse `If-Match: W/"n"` (also `"n"`, `n`). Errors: 400 for a malformed value.
pub(crate) fn parse_etag(v: &str) -> Option<i64> {
    let v = v.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.trim_matches('"').parse().ok()
}

pub(crate) fn if_match(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(parse_etag)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("malformed If-Match header; expected W/\"<versionId>\"")),
    }
}

/// Query pairs from the raw query string.
pub(crate) fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    q.as_deref().map(parse_form).unwrap_or_default()
}

/// Structural check (422 with one issue per problem).
pub(crate) fn schema_check(v: &Value) -> ApiResult<()> {
    schema::check(v).map_err(ApiError::schema)
}

/// Profile validation of a resource being written, per [`crate::api::WritePolicy`] (only resources that
/// declare `meta.profile` — "validate against declared profiles"; the base definition is covered by the
/// schema check). Runs on the blocking pool.
///
/// Output: the issues to report with the accepted write (empty for `Off` or no profile). Errors: 422 with
/// the OperationOutcome under `Reject` when an issue is `error`/`fatal`.
pub(crate) async fn profile_check(state: &AppState, v: &Value) -> ApiResult<Vec<crate::validation::ValidationIssue>> {
    use crate::api::WritePolicy;
    let policy = state.config.validate_on_write;
    let declares = v.pointer("/meta/profile").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    if policy == WritePolicy::Off || !declares {
        return Ok(Vec::new());
    }
    let owned = v.clone();
    let issues = tokio::task::spawn_blocking(move || crate::validation::validate(&owned, &[]))
        .await
        .map_err(|_| ApiError::internal())?;
    if policy == WritePolicy::Reject && !crate::validation::is_valid(&issues) {
        let list = issues
            .iter()
            .map(|i| Issue {
                severity: i.severity.as_str(),
                code: i.code,
                diagnostics: match &i.profile {
                    Some(p) => format!("{} [profile {p}]", i.diagnostics),
                    None => i.diagnostics.clone(),
                },
                expression: Some(i.expression.clone()),
            })
            .collect();
        return Err(ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, issues: list });
    }
    Ok(issues)
}

/// Attach accepted-write validation issues to the response: header `X-Validation-Issues: errors=N,
/// warnings=M`, and with `Prefer: return=OperationOutcome` the issues appended to the OperationOutcome body.
pub(crate) fn attach_validation(mut resp: Response, issues: &[crate::validation::ValidationIssue], prefer: PreferReturn) -> Response {
    if issues.is_empty() {
        return resp;
    }
    let errors = issues.iter().filter(|i| i.is_error()).count();
    let summary = format!("errors={errors}, warnings={}", issues.len() - errors);
    if let Ok(h) = axum::http::HeaderValue::from_str(&summary) {
        resp.headers_mut().insert("x-validation-issues", h);
    }
    if prefer == PreferReturn::OperationOutcome {
        let mut oo = crate::validation::operation_outcome(issues);
        if let Some(Value::Array(list)) = oo.get_mut("issue") {
            list.insert(0, serde_json::json!({"severity": "information", "code": "informational",
                "diagnostics": "resource written; profile validation findings follow"}));
        }
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, Body::from(serde_json::to_vec(&oo).unwrap_or_default()));
    }
    resp
}

fn handling(headers: &HeaderMap) -> Handling {
    let strict = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|s| s.split([',', ';']).any(|p| p.trim() == "handling=strict"));
    if strict {
        Handling::Strict
    } else {
        Handling::Lenient
    }
}

/// Parameters that only shape the HTTP response and are not search criteria.
fn is_format_param(k: &str) -> bool {
    matches!(k, "_format" | "_pretty")
}

/// Parse search parameters for `t` (after `_format` handling). Errors: 400/404 from [`search::query`].
pub(crate) fn parse_query(
    state: &AppState,
    t: &str,
    params: &[(String, String)],
    handling: Handling,
) -> ApiResult<SearchQuery> {
    body::check_format(params)?;
    let crit: Vec<(String, String)> = params.iter().filter(|(k, _)| !is_format_param(k)).cloned().collect();
    Ok(search::query::parse_with_handling(&state.registry, t, &crit, handling)?)
}

/// Resolve a conditional operation's criteria (FHIR R4 §3.1.0.4.3, §3.1.0.6.1, §3.1.0.7.1): the ids of up
/// to two matches (enough to tell 0 / 1 / many). Errors: 400 when there are no criteria or they are invalid.
pub(crate) async fn conditional_matches(
    state: &AppState,
    ctx: &RequestContext,
    t: &str,
    criteria: &[(String, String)],
) -> ApiResult<Vec<String>> {
    if criteria.iter().all(|(k, _)| is_format_param(k)) {
        return Err(ApiError::bad_request("conditional operation without search criteria"));
    }
    let mut q = parse_query(state, t, criteria, Handling::Strict)?;
    q.count = 2;
    q.offset = 0;
    q.includes.clear();
    q.revincludes.clear();
    access::search_ids(state, ctx, &q, 2).await
}

/// Apply `_summary` / `_elements` to one resource text (FHIR R4 `search.html#summary`, `#elements`):
/// the subset text, or `text` itself (borrowed, no copy) when neither asks for a subset (`_summary`
/// absent, `false` or `count`, no `_elements`).
pub(crate) fn shape<'a>(
    resource_type: &str,
    text: &'a str,
    summary: Option<SummaryMode>,
    elements: &[String],
) -> Cow<'a, str> {
    Cow::Owned(match summary {
        Some(SummaryMode::True) => rawjson::filter_top_level(text, |k| is_summary_element(resource_type, k), true),
        Some(SummaryMode::Text) => {
            rawjson::filter_top_level(text, |k| matches!(k, "id" | "meta" | "text" | "implicitRules"), true)
        }
        Some(SummaryMode::Data) => rawjson::filter_top_level(text, |k| k != "text", true),
        _ if !elements.is_empty() => rawjson::filter_top_level(
            text,
            |k| {
                let k = k.strip_prefix('_').unwrap_or(k);
                k == "id" || elements.iter().any(|e| e == k)
            },
            true,
        ),
        _ => return Cow::Borrowed(text),
    })
}

fn summary_of(params: &[(String, String)]) -> (Option<SummaryMode>, Vec<String>) {
    let mut s = None;
    let mut el = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "_summary" => {
                s = match v.as_str() {
                    "true" => Some(SummaryMode::True),
                    "text" => Some(SummaryMode::Text),
                    "data" => Some(SummaryMode::Data),
                    "count" => Some(SummaryMode::Count),
                    "false" => Some(SummaryMode::False),
                    _ => None,
                }
            }
            "_elements" => el.extend(v.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty())),
            _ => {}
        }
    }
    (s, el)
}

// ---------------------------------------------------------------------------------------------------
// read / vread

/// `GET /fhir/{type}/{id}` — FHIR R4 §3.1.0.2 read. 200 with the stored text, `ETag`, `Last-Modified`;
/// 304 for a matching `If-None-Match` / not newer than `If-Modified-Since`; 404 unknown; 410 deleted.
pub async fn read(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ctx: RequestContext,
) -> ApiResult<Response> {
    check_type(&t)?;
    let params = query_pairs(&q);
    body::check_format(&params)?;
    if !valid_id(&id) {
        return Err(ApiError::not_found(format!("{t}/<invalid id> not found")));
    }
    let sr = access::read(&state, &ctx, &t, &id).await?;
    if let Some(r) = not_modified(&headers, &sr) {
        return Ok(r);
    }
    Ok(resource_ok(&state, sr, &params))
}

/// 200 with the stored text served as-is (no re-serialisation; `_summary`/`_elements` edit the top level
/// only), plus `ETag`/`Last-Modified`.
fn resource_ok(state: &AppState, mut sr: StoredResource, params: &[(String, String)]) -> Response {
    let (summary, elements) = if params.is_empty() { (None, Vec::new()) } else { summary_of(params) };
    let text = std::mem::take(&mut sr.json);
    let body = match shape(&sr.resource_type, &text, summary, &elements) {
        Cow::Owned(subset) => subset.into_bytes(),
        Cow::Borrowed(_) => text.into_bytes(),
    };
    let mut r = fhir_bytes(StatusCode::OK, body);
    response::version_headers(&mut r, &state.config.base_url, &sr, false);
    r
}

fn not_modified(headers: &HeaderMap, sr: &StoredResource) -> Option<Response> {
    let tag = etag(sr.version_id);
    let inm = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    let hit = match inm {
        Some(v) => v.split(',').any(|x| {
            let x = x.trim();
            x == "*" || parse_etag(x) == Some(sr.version_id)
        }),
        None => {
            let ims = headers.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()).and_then(response::parse_http_date);
            let lu = time::OffsetDateTime::parse(&sr.last_updated, &time::format_description::well_known::Rfc3339).ok();
            matches!((ims, lu), (Some(ims), Some(lu)) if lu.unix_timestamp() <= ims.unix_timestamp())
        }
    };
    if !hit {
        return None;
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    if let Ok(v) = HeaderValue::from_str(&tag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Some(r)
}

/// `GET /fhir/{type}/{id}/_history/{vid}` — FHIR R4 §3.1.0.3 vread. 200; 404 unknown id/version;
/// 410 when that version is a delete.
pub async fn vread(
    State(state): State<AppState>,
    Path((t, id, vid)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    ctx: RequestContext,
) -> ApiResult<Response> {
    check_type(&t)?;
    let params = query_pairs(&q);
    body::check_format(&params)?;
    let Some(v) = vid.parse::<i64>().ok().filter(|v| *v > 0 && valid_id(&id)) else {
        return Err(ApiError::not_found(format!("{t} version not found")));
    };
    let sr = access::vread(&state, &ctx, &t, &id, v).await?;
    if sr.deleted {
        let mut r = ApiError::new(StatusCode::GONE, "deleted", format!("{t}/{id} version {v} is a deletion"))
            .into_response();
        response::version_headers(&mut r, &state.config.base_url, &sr, false);
        return Ok(r);
    }
    Ok(resource_ok(&state, sr, &params))
}

// ---------------------------------------------------------------------------------------------------
// create / update / patch / delete

/// `POST /fhir/{type}` — FHIR R4 §3.1.0.6 create (+ §3.1.0.6.1 conditional create with `If-None-Exist`).
/// 201 + `Location`/`ETag`; 200 with the existing resource when the condition matches one; 412 when it
/// matches several; 400 malformed; 415 content type; 413 too large; 422 structural check failed.
pub async fn create(
    State(state): State<AppState>,
    Path(t): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ctx: RequestContext,
    req_body: Body,
) -> ApiResult<Response> {
    check_type(&t)?;
    body::check_format(&query_pairs(&q))?;
    body::require_json(&headers)?;
    let bytes = body::read_body(req_body, state.config.max_body_bytes).await?;
    let res = body::parse_resource(&bytes, &t)?;
    schema_check(&res.value)?;
    let findings = profile_check(&state, &res.value).await?;
    let prefer = prefer_return(&headers);
    if let Some(cond) = headers.get("if-none-exist") {
        let cond = cond.to_str().map_err(|_| ApiError::bad_request("If-None-Exist is not ASCII"))?;
        let cond = cond.split_once('?').map(|(_, q)| q).unwrap_or(cond);
        let matches = conditional_matches(&state, &ctx, &t, &parse_form(cond)).await?;
        match matches.len() {
            0 => {}
            1 => {
                let existing = access::read(&state, &ctx, &t, &matches[0]).await?;
                return Ok(write_response(StatusCode::OK, &state.config.base_url, &existing, prefer));
            }
            n => {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "multiple-matches",
                    format!("If-None-Exist matched {n} or more resources"),
                ))
            }
        }
    }
    match access::write(&state, &ctx, WriteRequest::Create { resource_type: &t, body: &res.text }).await? {
        WriteResult::Written(sr, _) => {
            Ok(attach_validation(write_response(StatusCode::CREATED, &state.config.base_url, &sr, prefer), &findings, prefer))
        }
        _ => Err(ApiError::internal()),
    }
}

/// `PUT /fhir/{type}/{id}` — FHIR R4 §3.1.0.4 update, incl. update-as-create with a client id (201).
/// The body's `id` must equal the URL id (400). `If-Match: W/"n"` → 412 when stale. 422 structural.
pub async fn update(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ctx: RequestContext,
    req_body: Body,
) -> ApiResult<Response> {
    check_type(&t)?;
    body::check_format(&query_pairs(&q))?;
    if !valid_id(&id) {
        return Err(ApiError::bad_request("invalid logical id in URL (FHIR id: [A-Za-z0-9-.]{1,64})"));
    }
    body::require_json(&headers)?;
    let bytes = body::read_body(req_body, state.config.max_body_bytes).await?;
    let res = body::parse_resource(&bytes, &t)?;
    match res.value.get("id").and_then(Value::as_str) {
        Some(bid) if bid == id => {}
        Some(_) => {
            return Err(ApiError::bad_request("resource id in the body does not match the id in the URL")
                .with_expression(&format!("{t}.id")))
        }
        None => return Err(ApiError::bad_request("resource in an update must have an id").with_expression(&format!("{t}.id"))),
    }
    schema_check(&res.value)?;
    let findings = profile_check(&state, &res.value).await?;
    let if_match = if_match(&headers)?;
    let prefer = prefer_return(&headers);
    do_update(&state, &ctx, &t, &id, res, if_match, prefer).await.map(|r| attach_validation(r, &findings, prefer))
}

async fn do_update(
    state: &AppState,
    ctx: &RequestContext,
    t: &str,
    id: &str,
    res: ResourceText,
    if_match: Option<i64>,
    prefer: PreferReturn,
) -> ApiResult<Response> {
    match access::write(state, ctx, WriteRequest::Update { resource_type: t, id, body: &res.text, if_match }).await? {
        WriteResult::Written(sr, outcome) => {
            let status = if outcome == WriteOutcome::Created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(write_response(status, &state.config.base_url, &sr, prefer))
        }
        _ => Err(ApiError::internal()),
    }
}

/// `PUT /fhir/{type}?criteria` — FHIR R4 §3.1.0.4.3 conditional update: no match → create (server id, or
/// the body's id), one match → update it (body id, if any, must be that id: 400), several → 412.
pub async fn conditional_update(
    State(state): State<AppState>,
    Path(t): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ctx: RequestContext,
    req_body: Body,
) -> ApiResult<Response> {
    check_type(&t)?;
    let criteria = query_pairs(&q);
    body::require_json(&headers)?;
    let bytes = body::read_body(req_body, state.config.max_body_bytes).await?;
    let res = body::parse_resource(&bytes, &t)?;
    schema_check(&res.value)?;
    let findings = profile_check(&state, &res.value).await?;
    let prefer = prefer_return(&headers);
    let matches = conditional_matches(&state, &ctx, &t, &criteria).await?;
    let body_id = res.value.get("id").and_then(Value::as_str).map(str::to_string);
    let written = match matches.len() {
        0 => match body_id {
            Some(bid) if valid_id(&bid) => do_update(&state, &ctx, &t, &bid, res, None, prefer).await,
            Some(_) => Err(ApiError::bad_request("invalid resource id").with_expression(&format!("{t}.id"))),
            None => match access::write(&state, &ctx, WriteRequest::Create { resource_type: &t, body: &res.text }).await? {
                WriteResult::Written(sr, _) => Ok(write_response(StatusCode::CREATED, &state.config.base_url, &sr, prefer)),
                _ => Err(ApiError::internal()),
            },
        },
        1 => {
            let id = matches[0].clone();
            if body_id.as_deref().is_some_and(|b| b != id) {
                return Err(ApiError::bad_request("resource id does not match the resource found by the criteria")
                    .with_expression(&format!("{t}.id")));
            }
            let res = if body_id.is_none() { with_id(res, &id) } else { res };
            do_update(&state, &ctx, &t, &id, res, if_match(&headers)?, prefer).await
        }
        n => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "multiple-matches",
            format!("conditional update criteria matched {n} or more resources"),
        )),
    };
    written.map(|r| attach_validation(r, &findings, prefer))
}

/// Set `id` in a resource (value and text, text edited at the top level only).
pub(crate) fn with_id(mut res: ResourceText, id: &str) -> ResourceText {
    if let Some(o) = res.value.as_object_mut() {
        o.insert("id".into(), Value::String(id.to_string()));
    }
    if let Ok(obj) = rawjson::object_entries(&res.text) {
        let id_json = serde_json::to_string(id).unwrap_or_default();
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &obj.0 {
            if k == "id" {
                continue;
            }
            out.push((k.clone(), v.get().to_string()));
            if k == "resourceType" {
                out.push(("id".into(), id_json.clone()));
            }
        }
        res.text = rawjson::write_object(out.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    res
}

/// `PATCH /fhir/{type}/{id}` with `application/json-patch+json` (RFC 6902) — FHIR R4 §3.1.0.5 patch.
/// The patched resource is checked like an update (resourceType/id unchanged: 422, schema: 422).
/// 415 for other content types, 400 for a malformed patch, 422 when an operation fails (e.g. `test`),
/// 412 on stale `If-Match`. Note: the patched resource is re-serialised (decimal text is normalised).
pub async fn patch(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    headers: HeaderMap,
    ctx: RequestContext,
    req_body: Body,
) -> ApiResult<Response> {
    check_type(&t)?;
    body::require_media(&headers, &["application/json-patch+json"])?;
    let bytes = body::read_body(req_body, state.config.max_body_bytes).await?;
    let (pv, _) = body::parse_json(&bytes)?;
    let ops: json_patch::Patch = serde_json::from_value(pv)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON Patch document: {e}")))?;
    let current = access::read(&state, &ctx, &t, &id).await?;
    let expected = if_match(&headers)?;
    if let Some(e) = expected {
        if e != current.version_id {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "conflict",
                format!("version conflict: expected version {e}, current is {}", current.version_id),
            ));
        }
    }
    let mut doc: Value = serde_json::from_str(&current.json).map_err(|_| ApiError::internal())?;
    json_patch::patch(&mut doc, &ops).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "processing", format!("JSON Patch failed: {e}"))
    })?;
    if doc.get("resourceType").and_then(Value::as_str) != Some(t.as_str())
        || doc.get("id").and_then(Value::as_str) != Some(id.as_str())
    {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invariant", "a patch may not change resourceType or id"));
    }
    schema_check(&doc)?;
    let findings = profile_check(&state, &doc).await?;
    let res = ResourceText::from_value(doc);
    let prefer = prefer_return(&headers);
    do_update(&state, &ctx, &t, &id, res, Some(current.version_id), prefer).await.map(|r| attach_validation(r, &findings, prefer))
}

/// `DELETE /fhir/{type}/{id}` — FHIR R4 §3.1.0.7 delete. 204 (with `ETag` of the tombstone when one was
/// written); deleting a missing or already-deleted resource is also 204. `Prefer: return=OperationOutcome` → 200.
pub async fn delete(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    headers: HeaderMap,
    ctx: RequestContext,
) -> ApiResult<Response> {
    check_type(&t)?;
    if !valid_id(&id) {
        return Err(ApiError::not_found(format!("{t}/<invalid id> not found")));
    }
    let version = match access::write(&state, &ctx, WriteRequest::Delete { resource_type: &t, id: &id }).await? {
        WriteResult::Deleted(v) => v,
        _ => return Err(ApiError::internal()),
    };
    Ok(delete_response(&headers, &t, &id, version))
}

fn delete_response(headers: &HeaderMap, t: &str, id: &str, version: Option<i64>) -> Response {
    let mut r = if prefer_return(headers) == PreferReturn::OperationOutcome {
        let msg = match version {
            Some(_) => format!("{t}/{id} deleted"),
            None => format!("{t}/{id} did not exist or was already deleted"),
        };
        let issue = Issue { severity: "information", code: "informational", diagnostics: msg, expression: None };
        response::fhir_json(StatusCode::OK, &operation_outcome(&[issue]))
    } else {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r
    };
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&etag(v)).ok()) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// `DELETE /fhir/{type}?criteria` — FHIR R4 §3.1.0.7.1 conditional delete (single): 0 matches → 204,
/// 1 → deleted (204), several → 412.
pub async fn conditional_delete(
    State(state): State<AppState>,
    Path(t): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ctx: RequestContext,
) -> ApiResult<Response> {
    check_type(&t)?;
    let matches = conditional_matches(&state, &ctx, &t, &query_pairs(&q)).await?;
    match matches.len() {
        0 => Ok(delete_response(&headers, &t, "?", None)),
        1 => {
            let id = matches[0].clone();
            let v = match access::write(&state, &ctx, WriteRequest::Delete { resource_type: &t, id: &id }).await? {
                WriteResult::Deleted(v) => v,
                _ => return Err(ApiError::internal()),
            };
            Ok(delete_response(&headers, &t, &id, v))
        }
        n => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "multiple-matches",
            format!("conditional delete criteria matched {n} or more resources"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------------
// search

/// `GET /fhir/{type}?…` — FHIR R4 §3.1.0.8 search-type. 200 Bundle `searchset`.
pub async fn search_get(
    State(state): State<AppState>,
    Path(t): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ctx: RequestContext,
) -> ApiResult<Response> {
    check_type(&t)?;
    let params = query_pairs(&q);
    run_search(&state, &ctx, &headers, &t, params).await
}

/// `POST /fhir/{type}/_search` with `application/x-www-form-urlencoded` body (parameters from the URL are
/// added) — FHIR R4 §3.1.0.8. 415 for other content types.
pub async fn search_post(
    State(state): State<AppState>,
    Path(t): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ctx: RequestContext,
    req_body: Body,
) -> ApiResult<Response> {
    check_type(&t)?;
    body::require_media(&headers, &["application/x-www-form-urlencoded"])?;
    let bytes = body::read_body(req_body, state.config.max_body_bytes).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_request("form body is not UTF-8"))?;
    let mut params = query_pairs(&q);
    params.extend(parse_form(text));
    run_search(&state, &ctx, &headers, &t, params).await
}

async fn run_search(
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    t: &str,
    params: Vec<(String, String)>,
) -> ApiResult<Response> {
    Ok(fhir_bytes(StatusCode::OK, search_bundle(state, ctx, headers, t, params).await?.into_bytes()))
}

/// Run a search and return the `searchset` Bundle text (FHIR R4 §3.1.0.8, `search.html#paging`).
pub(crate) async fn search_bundle(
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    t: &str,
    params: Vec<(String, String)>,
) -> ApiResult<String> {
    let mut q = parse_query(state, t, &params, handling(headers))?;
    let count_only = q.summary == Some(SummaryMode::Count);
    if count_only {
        q.count = 0;
        q.total = Some(TotalMode::Accurate);
    }
    let page = access::search(state, &ctx, &q).await?;
    let base = &state.config.base_url;

    // links: criteria minus paging, then our own _count/_offset
    let crit: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "_offset" | "_count" | "_format" | "_pretty") && !q.ignored.contains(k))
        .cloned()
        .collect();
    let link = |offset: usize| {
        let mut p = crit.clone();
        p.push(("_count".into(), q.count.to_string()));
        p.push(("_offset".into(), offset.to_string()));
        format!("{base}/{t}?{}", body::encode_query(&p))
    };
    let mut links = vec![("self".to_string(), link(q.offset))];
    let has_more = match page.total {
        Some(t) => (q.offset + page.matches.len()) < t as usize,
        None => page.matches.len() >= q.count,
    };
    if has_more && !count_only && q.count > 0 {
        links.push(("next".into(), link(q.offset + q.count)));
    }
    if q.offset > 0 && q.count > 0 {
        links.push(("previous".into(), link(q.offset.saturating_sub(q.count))));
    }
    let total = if q.total == Some(TotalMode::None) { None } else { page.total.map(|t| t as usize) };
    let mut w = BundleWriter::new("searchset", total, &links);
    if !count_only {
        // The stored text is spliced in as it is unless `_summary`/`_elements` subset it.
        for (list, mode) in [(&page.matches, "match"), (&page.included, "include")] {
            for r in list {
                let text = shape(&r.resource_type, &r.json, q.summary, &q.elements);
                w.entry(Entry {
                    full_url: Some(format!("{base}/{}/{}", r.resource_type, r.id)),
                    resource: Some(&text),
                    search_mode: Some(mode),
                    ..Entry::default()
                });
            }
        }
    }
    if !q.ignored.is_empty() {
        let issues: Vec<Issue> = q
            .ignored
            .iter()
            .map(|p| Issue {
                severity: "warning",
                code: "not-supported",
                diagnostics: format!("search parameter '{p}' is not supported and was ignored"),
                expression: None,
            })
            .collect();
        let oo = operation_outcome(&issues).to_string();
        w.entry(Entry { resource: Some(&oo), search_mode: Some("outcome"), ..Entry::default() });
    }
    Ok(w.finish())
}

// ---------------------------------------------------------------------------------------------------
// history

/// `GET /fhir/_history` — FHIR R4 §3.1.0.9 system history. Bundle `history`.
pub async fn history_system(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    ctx: RequestContext,
) -> ApiResult<Response> {
    run_history(&state, &ctx, None, None, query_pairs(&q)).await
}

/// `GET /fhir/{type}/_history` — FHIR R4 §3.1.0.9 type history.
pub async fn history_type(
    State(state): State<AppState>,
    Path(t): Path<String>,
    RawQuery(q): RawQuery,
    ctx: RequestContext,
) -> ApiResult<Response> {
    check_type(&t)?;
    run_history(&state, &ctx, Some(&t), None, query_pairs(&q)).await
}

/// `GET /fhir/{type}/{id}/_history` — FHIR R4 §3.1.0.9 instance history (404 when the id never existed).
pub async fn history_instance(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    ctx: RequestContext,
) -> ApiResult<Response> {
    check_type(&t)?;
    if !valid_id(&id) {
        return Err(ApiError::not_found(format!("{t}/<invalid id> not found")));
    }
    run_history(&state, &ctx, Some(&t), Some(&id), query_pairs(&q)).await
}

async fn run_history(
    state: &AppState,
    ctx: &RequestContext,
    t: Option<&str>,
    id: Option<&str>,
    params: Vec<(String, String)>,
) -> ApiResult<Response> {
    body::check_format(&params)?;
    let mut count = state.config.default_history_count;
    let mut since: Option<String> = None;
    for (k, v) in &params {
        match k.as_str() {
            "_count" => {
                count = v.parse::<usize>().map_err(|_| ApiError::bad_request("_count must be a non-negative integer"))?
            }
            "_since" => {
                time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| ApiError::bad_request("_since must be an instant (e.g. 2026-01-01T00:00:00Z)"))?;
                since = Some(v.clone());
            }
            _ => {}
        }
    }
    let count = count.min(state.config.max_history);
    let versions = access::history(state, ctx, t, id, since.as_deref(), count).await?;
    if id.is_some() && versions.is_empty() {
        return Err(ApiError::not_found(format!("{}/{} not found", t.unwrap_or(""), id.unwrap_or(""))));
    }
    let base = &state.config.base_url;
    let self_url = match (t, id) {
        (Some(t), Some(id)) => format!("{base}/{t}/{id}/_history"),
        (Some(t), None) => format!("{base}/{t}/_history"),
        _ => format!("{base}/_history"),
    };
    let self_url = if params.is_empty() { self_url } else { format!("{self_url}?{}", body::encode_query(&params)) };
    let mut w = BundleWriter::new("history", Some(versions.len()), &[("self".into(), self_url)]);
    for v in &versions {
        let (method, url, status) = if v.deleted {
            ("DELETE", format!("{}/{}", v.resource_type, v.id), "204")
        } else if v.version_id == 1 {
            ("POST", v.resource_type.clone(), "201 Created")
        } else {
            ("PUT", format!("{}/{}", v.resource_type, v.id), "200 OK")
        };
        let resp = json!({"status": status, "etag": etag(v.version_id), "lastModified": v.last_updated});
        w.entry(Entry {
            full_url: Some(format!("{base}/{}/{}", v.resource_type, v.id)),
            resource: if v.deleted { None } else { Some(&v.json) },
            request: Some(json!({"method": method, "url": url})),
            response: Some(resp),
            ..Entry::default()
        });
    }
    Ok(fhir_bytes(StatusCode::OK, w.finish().into_bytes()))
}
