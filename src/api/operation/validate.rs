//! `$validate` (FHIR R4 §3.1.0.14, OperationDefinition `Resource-validate`, <http://hl7.org/fhir/R4/resource-operation-validate.html>).
//!
//! | route | what is validated |
//! |---|---|
//! | `POST /fhir/$validate` | the body resource (any type) |
//! | `POST /fhir/{type}/$validate[?profile=URL]` | the body resource, which must be a `{type}` |
//! | `POST /fhir/{type}/{id}/$validate[?profile=URL]` | the body resource (its `id`, if any, must be `{id}`), or — with an empty body — the stored current version of `{type}/{id}` |
//!
//! The body is the resource itself or a `Parameters` with `resource` (and optionally `profile`, `mode`).
//! `profile` may also be given as a query parameter (repeatable). The answer is always **200** with an
//! `OperationOutcome` (valid or not: `$validate` reports, it does not fail) — one issue per finding with
//! `severity`, `code`, `diagnostics` and `expression`, or a single `information` issue when there is nothing
//! to say. Request errors are the usual 4xx OperationOutcomes: 400 unreadable JSON / wrong type / id
//! mismatch, 404 unknown type or instance, 413 too large, 415 content type.
//!
//! Validation = JSON schema first pass + profile validator (`crate::validation::validate`); it runs on the
//! blocking pool (the first call of the process loads the packages from `profiles/`).

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::api::access::{self, RequestContext};
use crate::api::body;
use crate::api::interaction::check_type;
use crate::api::outcome::{ApiError, ApiResult};
use crate::api::response::fhir_json;
use crate::api::AppState;
use crate::validation;

/// The resource to validate and the profiles asked for, from a `$validate` body and query.
///
/// Input: the parsed body (a resource or a `Parameters`), query pairs. Errors: 400 when a `Parameters`
/// body has no `resource` parameter.
pub fn unwrap_parameters(body: Value, query: &[(String, String)]) -> ApiResult<(Value, Vec<String>)> {
    let mut profiles: Vec<String> = query.iter().filter(|(k, _)| k == "profile").map(|(_, v)| v.clone()).collect();
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Ok((body, profiles));
    }
    let mut resource = None;
    let Value::Object(mut o) = body else { return Err(ApiError::bad_request("Parameters body must be an object")) };
    if let Some(Value::Array(params)) = o.remove("parameter") {
        for mut p in params {
            match p.get("name").and_then(Value::as_str) {
                Some("resource") => resource = p.get_mut("resource").map(Value::take),
                Some("profile") => {
                    if let Some(u) = ["valueUri", "valueCanonical", "valueString"].iter().find_map(|k| p.get(*k).and_then(Value::as_str)) {
                        profiles.push(u.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    match resource {
        Some(r) => Ok((r, profiles)),
        // a Parameters resource itself may be what the client wants validated
        None => Ok((Value::Object(o), profiles)),
    }
}

async fn run(resource: Value, profiles: Vec<String>) -> ApiResult<Response> {
    let outcome = tokio::task::spawn_blocking(move || {
        let issues = validation::validate(&resource, &profiles);
        validation::operation_outcome(&issues)
    })
    .await
    .map_err(|_| ApiError::internal())?;
    Ok(fhir_json(StatusCode::OK, &outcome))
}

async fn read_json(headers: &HeaderMap, req_body: Body, limit: usize) -> ApiResult<Option<Value>> {
    let bytes = body::read_body(req_body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    body::require_json(headers)?;
    Ok(Some(body::parse_json(&bytes)?.0))
}

/// `POST /fhir/$validate` — validate any resource (see module docs).
pub async fn validate_system(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    req_body: Body,
) -> ApiResult<Response> {
    let query = body::parse_form(q.as_deref().unwrap_or(""));
    let Some(v) = read_json(&headers, req_body, state.config.max_body_bytes).await? else {
        return Err(ApiError::bad_request("$validate needs a resource in the body"));
    };
    let (resource, profiles) = unwrap_parameters(v, &query)?;
    run(resource, profiles).await
}

/// `POST /fhir/{type}/$validate` — validate a resource of `{type}` (see module docs).
pub async fn validate_type(
    State(state): State<AppState>,
    Path(t): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    req_body: Body,
) -> ApiResult<Response> {
    check_type(&t)?;
    let query = body::parse_form(q.as_deref().unwrap_or(""));
    let Some(v) = read_json(&headers, req_body, state.config.max_body_bytes).await? else {
        return Err(ApiError::bad_request("$validate needs a resource in the body"));
    };
    let (resource, profiles) = unwrap_parameters(v, &query)?;
    let rt = resource.get("resourceType").and_then(Value::as_str).unwrap_or("");
    if rt != t {
        return Err(ApiError::bad_request(format!("resource type '{}' does not match the URL type '{t}'", rt.chars().take(64).collect::<String>())));
    }
    run(resource, profiles).await
}

/// `POST /fhir/{type}/{id}/$validate` — validate the body as `{type}/{id}`, or the stored resource when the
/// body is empty (see module docs).
pub async fn validate_instance(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ctx: RequestContext,
    req_body: Body,
) -> ApiResult<Response> {
    check_type(&t)?;
    let query = body::parse_form(q.as_deref().unwrap_or(""));
    let (resource, profiles) = match read_json(&headers, req_body, state.config.max_body_bytes).await? {
        Some(v) => {
            let (r, p) = unwrap_parameters(v, &query)?;
            let rt = r.get("resourceType").and_then(Value::as_str).unwrap_or("");
            if rt != t {
                return Err(ApiError::bad_request(format!("resource type '{}' does not match the URL type '{t}'", rt.chars().take(64).collect::<String>())));
            }
            if let Some(bid) = r.get("id").and_then(Value::as_str) {
                if bid != id {
                    return Err(ApiError::bad_request("resource id in the body does not match the id in the URL"));
                }
            }
            (r, p)
        }
        None => {
            let stored = access::read(&state, &ctx, &t, &id).await?;
            let v: Value = serde_json::from_str(&stored.json).map_err(|_| ApiError::internal())?;
            let profiles = query.iter().filter(|(k, _)| k == "profile").map(|(_, v)| v.clone()).collect();
            (v, profiles)
        }
    };
    run(resource, profiles).await
}
