//! Bundles: a text-preserving [`BundleWriter`] (stored resource text is spliced in verbatim) and the
//! `batch` / `transaction` interaction (FHIR R4 §3.1.0.11, `http.html#transaction`).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::access::{self, RequestContext, WriteRequest, WriteResult};
use super::body::{self, parse_form, ResourceText};
use super::interaction::{check_type, conditional_matches, parse_etag, search_bundle, valid_id, with_id};
use super::outcome::{operation_outcome, ApiError, ApiResult};
use super::rawjson;
use super::response::{etag, fhir_bytes};
use super::AppState;
use crate::store::{ResourceBody, StoredResource, TxEntry, TxResult, WriteOutcome};
use crate::validation::schema;

/// One Bundle entry to write; `resource` is JSON text inserted verbatim.
#[derive(Debug, Default)]
pub(crate) struct Entry<'a> {
    pub full_url: Option<String>,
    pub resource: Option<&'a str>,
    /// `entry.search.mode` (`match`, `include`, `outcome`); written as `{"mode":…}`, the same text as
    /// `search: Some(json!({"mode": …}))` without building a JSON value per entry. Ignored when `search`
    /// is set.
    pub search_mode: Option<&'static str>,
    pub search: Option<Value>,
    pub request: Option<Value>,
    pub response: Option<Value>,
}

/// Builds a Bundle's JSON text without re-serialising the contained resources.
///
/// The text is written into one buffer as it goes (no JSON value for the Bundle head, one per entry
/// only for `search`/`request`/`response` values the caller built): byte for byte what serde_json
/// writes for the same members in the same order (`resourceType`, `id`, `meta`, `type`, `total`,
/// `link`, `entry`; compact, strings escaped by serde_json).
pub(crate) struct BundleWriter {
    out: String,
    entries: usize,
}

/// Appends `s` as a JSON string literal, escaped by serde_json.
fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

impl BundleWriter {
    /// Start a Bundle of `bundle_type` (`searchset`, `history`, `batch-response`, `transaction-response`).
    pub fn new(bundle_type: &str, total: Option<usize>, links: &[(String, String)]) -> BundleWriter {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let link_len: usize = links.iter().map(|(r, u)| r.len() + u.len() + 32).sum();
        let mut out = String::with_capacity(160 + link_len);
        out.push_str("{\"resourceType\":\"Bundle\",\"id\":\"");
        out.push_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()));
        out.push_str("\",\"meta\":{\"lastUpdated\":");
        push_json_str(&mut out, &now);
        out.push_str("},\"type\":");
        push_json_str(&mut out, bundle_type);
        if let Some(t) = total {
            out.push_str(",\"total\":");
            out.push_str(&t.to_string());
        }
        if !links.is_empty() {
            out.push_str(",\"link\":[");
            for (i, (r, u)) in links.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"relation\":");
                push_json_str(&mut out, r);
                out.push_str(",\"url\":");
                push_json_str(&mut out, u);
                out.push('}');
            }
            out.push(']');
        }
        BundleWriter { out, entries: 0 }
    }

    /// Append one entry (members in FHIR order: fullUrl, resource, search, request, response).
    pub fn entry(&mut self, e: Entry<'_>) {
        let out = &mut self.out;
        out.reserve(e.resource.map_or(0, str::len) + e.full_url.as_ref().map_or(0, String::len) + 48);
        out.push_str(if self.entries == 0 { ",\"entry\":[" } else { "," });
        self.entries += 1;
        out.push('{');
        let mut first = true;
        let mut member = |out: &mut String, k: &str| {
            if !first {
                out.push(',');
            }
            first = false;
            out.push('"');
            out.push_str(k);
            out.push_str("\":");
        };
        if let Some(u) = &e.full_url {
            member(out, "fullUrl");
            push_json_str(out, u);
        }
        if let Some(r) = e.resource {
            member(out, "resource");
            out.push_str(r);
        }
        match (&e.search, e.search_mode) {
            (Some(v), _) => {
                member(out, "search");
                out.push_str(&v.to_string());
            }
            (None, Some(mode)) => {
                member(out, "search");
                out.push_str("{\"mode\":");
                push_json_str(out, mode);
                out.push('}');
            }
            (None, None) => {}
        }
        for (k, v) in [("request", &e.request), ("response", &e.response)] {
            if let Some(v) = v {
                member(out, k);
                out.push_str(&v.to_string());
            }
        }
        out.push('}');
    }

    /// The Bundle JSON text.
    pub fn finish(self) -> String {
        let mut s = self.out;
        if self.entries > 0 {
            s.push(']');
        }
        s.push('}');
        s
    }
}

#[derive(Deserialize)]
struct RawBundle<'a> {
    #[serde(borrow, default)]
    entry: Vec<RawEntry<'a>>,
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(borrow, default)]
    resource: Option<&'a RawValue>,
}

/// A parsed `Bundle.entry` of a batch/transaction.
struct Req {
    full_url: Option<String>,
    method: String,
    url: String,
    if_match: Option<i64>,
    if_none_exist: Option<String>,
    resource: Option<ResourceText>,
}

/// What one entry resolved to.
enum Planned {
    /// Write `Type/id` (create or update).
    Put { resource_type: String, id: String, resource: ResourceText, if_match: Option<i64>, created: bool },
    /// Conditional create that matched an existing resource: nothing written.
    Existing(StoredResource),
    /// Delete `Type/id` (`None` id = conditional delete matched nothing).
    Delete { resource_type: String, id: Option<String> },
    /// GET: read / vread / search, performed after the writes.
    Get { url: String },
}

/// `POST /fhir` with a `Bundle` of type `batch` or `transaction` — FHIR R4 §3.1.0.11.
///
/// * transaction: all entries succeed atomically (store transaction) or the whole request fails with the
///   first error's status and OperationOutcome; processing order DELETE, POST, PUT, GET; `urn:uuid:` (and
///   other `urn:`) `fullUrl`s of created/updated entries are replaced by `Type/id` in every resource of the
///   Bundle; conditional create (`ifNoneExist`), conditional update/delete (`Type?criteria`) and `ifMatch`
///   are honoured; the whole Bundle is schema-checked first (422 naming `Bundle.entry[i].resource.x`).
/// * batch: entries are independent; each gets its own `response.status` and, on failure, an
///   OperationOutcome in `response.outcome`.
///
/// Response: Bundle `transaction-response` / `batch-response`, one entry per request entry, in order, with
/// `response.status`, `location` (`Type/id/_history/n`), `etag`, `lastModified` and the resource.
/// Errors: 400 (not a Bundle, wrong type, malformed entry), 413, 415, 422, 404/409/412 from entries.
pub async fn batch_or_transaction(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ctx: RequestContext,
    req_body: Body,
) -> ApiResult<Response> {
    body::check_format(&q.as_deref().map(parse_form).unwrap_or_default())?;
    body::require_json(&headers)?;
    let bytes = body::read_body(req_body, state.config.max_body_bytes).await?;
    let (bundle, text) = body::parse_json(&bytes)?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ApiError::bad_request("POST to the base URL requires a Bundle (batch or transaction)")
            .with_expression("Resource.resourceType"));
    }
    let btype = bundle.get("type").and_then(Value::as_str).unwrap_or("");
    let transaction = match btype {
        "transaction" => true,
        "batch" => false,
        _ => {
            return Err(ApiError::bad_request("Bundle.type must be 'batch' or 'transaction'").with_expression("Bundle.type"))
        }
    };
    let raw: RawBundle = serde_json::from_str(&text).map_err(|_| ApiError::bad_request("malformed Bundle.entry"))?;
    let entries = bundle.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
    if transaction {
        if let Err(issues) = schema::check(&bundle) {
            return Err(ApiError::schema(issues));
        }
    }
    let mut reqs: Vec<ApiResult<Req>> = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let raw_res = raw.entry.get(i).and_then(|r| r.resource).map(|r| r.get().to_string());
        reqs.push(parse_entry(i, e, raw_res));
    }
    let out = if transaction {
        let reqs: Vec<Req> = reqs.into_iter().collect::<ApiResult<_>>()?;
        run_transaction(&state, &ctx, reqs).await?
    } else {
        run_batch(&state, &ctx, &headers, reqs).await
    };
    Ok(fhir_bytes(StatusCode::OK, out.into_bytes()))
}

fn parse_entry(i: usize, e: &Value, raw_resource: Option<String>) -> ApiResult<Req> {
    let at = |m: &str| format!("Bundle.entry[{i}].{m}");
    let req = e.get("request").ok_or_else(|| ApiError::bad_request("entry has no request").with_expression(&at("request")))?;
    let method = req.get("method").and_then(Value::as_str).unwrap_or("").to_string();
    let url = req.get("url").and_then(Value::as_str).unwrap_or("").trim_start_matches('/').to_string();
    if url.is_empty() {
        return Err(ApiError::bad_request("entry.request.url is required").with_expression(&at("request.url")));
    }
    let if_match = match req.get("ifMatch").and_then(Value::as_str) {
        Some(v) => Some(parse_etag(v).ok_or_else(|| ApiError::bad_request("malformed ifMatch").with_expression(&at("request.ifMatch")))?),
        None => None,
    };
    let resource = match (e.get("resource"), raw_resource) {
        (Some(v), Some(text)) => Some(ResourceText { value: v.clone(), text }),
        _ => None,
    };
    Ok(Req {
        full_url: e.get("fullUrl").and_then(Value::as_str).map(str::to_string),
        method,
        url,
        if_match,
        if_none_exist: req.get("ifNoneExist").and_then(Value::as_str).map(str::to_string),
        resource,
    })
}

/// Split `Type/id`, `Type?query`, `Type`.
fn split_url(url: &str) -> (String, Option<String>, Option<String>) {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (url, None),
    };
    let mut segs = path.split('/');
    let t = segs.next().unwrap_or("").to_string();
    let id = segs.next().map(str::to_string);
    (t, id, query)
}

fn entry_resource(r: &Req, t: &str) -> ApiResult<ResourceText> {
    let res = r.resource.clone().ok_or_else(|| ApiError::bad_request(format!("{} entry without resource", r.method)))?;
    if res.value.get("resourceType").and_then(Value::as_str) != Some(t) {
        return Err(ApiError::bad_request("entry resourceType does not match request.url"));
    }
    Ok(res)
}

/// Resolve one entry into a [`Planned`] write/read (conditional lookups go through the access layer).
async fn plan(state: &AppState, ctx: &RequestContext, r: &Req) -> ApiResult<Planned> {
    let (t, id, query) = split_url(&r.url);
    match r.method.as_str() {
        "GET" => {
            check_type(&t)?;
            Ok(Planned::Get { url: r.url.clone() })
        }
        "POST" => {
            check_type(&t)?;
            let res = entry_resource(r, &t)?;
            if let Some(cond) = &r.if_none_exist {
                let cond = cond.split_once('?').map(|(_, q)| q).unwrap_or(cond);
                let m = conditional_matches(state, ctx, &t, &parse_form(cond)).await?;
                match m.len() {
                    0 => {}
                    1 => return Ok(Planned::Existing(access::read(state, ctx, &t, &m[0]).await?)),
                    n => return Err(multiple(n)),
                }
            }
            let new_id = uuid::Uuid::new_v4().to_string();
            Ok(Planned::Put { resource_type: t, id: new_id.clone(), resource: with_id(res, &new_id), if_match: None, created: true })
        }
        "PUT" => {
            check_type(&t)?;
            let res = entry_resource(r, &t)?;
            let body_id = res.value.get("id").and_then(Value::as_str).map(str::to_string);
            if let Some(q) = query {
                let m = conditional_matches(state, ctx, &t, &parse_form(&q)).await?;
                return match m.len() {
                    0 => {
                        let id = body_id.filter(|b| valid_id(b)).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                        Ok(Planned::Put { resource_type: t, resource: with_id(res, &id), id, if_match: None, created: true })
                    }
                    1 => {
                        let id = m[0].clone();
                        if body_id.as_deref().is_some_and(|b| b != id) {
                            return Err(ApiError::bad_request("resource id does not match the conditional update match"));
                        }
                        Ok(Planned::Put { resource_type: t, resource: with_id(res, &id), id, if_match: r.if_match, created: false })
                    }
                    n => Err(multiple(n)),
                };
            }
            let id = id.filter(|i| valid_id(i)).ok_or_else(|| ApiError::bad_request("PUT entry needs Type/id"))?;
            if body_id.as_deref() != Some(id.as_str()) {
                return Err(ApiError::bad_request("resource id does not match request.url"));
            }
            Ok(Planned::Put { resource_type: t, id, resource: res, if_match: r.if_match, created: false })
        }
        "DELETE" => {
            check_type(&t)?;
            if let Some(q) = query {
                let m = conditional_matches(state, ctx, &t, &parse_form(&q)).await?;
                return match m.len() {
                    0 => Ok(Planned::Delete { resource_type: t, id: None }),
                    1 => Ok(Planned::Delete { resource_type: t, id: Some(m[0].clone()) }),
                    n => Err(multiple(n)),
                };
            }
            let id = id.filter(|i| valid_id(i)).ok_or_else(|| ApiError::bad_request("DELETE entry needs Type/id"))?;
            Ok(Planned::Delete { resource_type: t, id: Some(id) })
        }
        "PATCH" => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not-supported",
            "PATCH inside batch/transaction is not supported; use PATCH on the resource URL",
        )),
        "HEAD" => Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "not-supported", "HEAD entries are not supported")),
        _ => Err(ApiError::bad_request("entry.request.method must be GET, POST, PUT or DELETE")),
    }
}

fn multiple(n: usize) -> ApiError {
    ApiError::new(StatusCode::PRECONDITION_FAILED, "multiple-matches", format!("conditional criteria matched {n} or more resources"))
}

fn order(method: &str) -> u8 {
    match method {
        "DELETE" => 0,
        "POST" => 1,
        "PUT" | "PATCH" => 2,
        _ => 3,
    }
}

fn written_response(sr: &StoredResource, created: bool) -> Value {
    json!({
        "status": if created { "201 Created" } else { "200 OK" },
        "location": format!("{}/{}/_history/{}", sr.resource_type, sr.id, sr.version_id),
        "etag": etag(sr.version_id),
        "lastModified": sr.last_updated,
    })
}

async fn run_transaction(state: &AppState, ctx: &RequestContext, reqs: Vec<Req>) -> ApiResult<String> {
    let mut idx: Vec<usize> = (0..reqs.len()).collect();
    idx.sort_by_key(|&i| order(&reqs[i].method));
    let mut planned: Vec<Option<Planned>> = (0..reqs.len()).map(|_| None).collect();
    for &i in &idx {
        let p = plan(state, ctx, &reqs[i]).await.map_err(|e| prefix_entry(e, i))?;
        planned[i] = Some(p);
    }
    // fullUrl → Type/id for every entry that has a target
    let mut map: HashMap<String, String> = HashMap::new();
    for (i, p) in planned.iter().enumerate() {
        let Some(full) = reqs[i].full_url.as_deref() else { continue };
        let target = match p {
            Some(Planned::Put { resource_type, id, .. }) => format!("{resource_type}/{id}"),
            Some(Planned::Existing(sr)) => format!("{}/{}", sr.resource_type, sr.id),
            _ => continue,
        };
        if full.starts_with("urn:") {
            map.insert(full.to_string(), target);
        }
    }
    let mut ops: Vec<TxEntry> = Vec::new();
    let mut op_of: Vec<Option<usize>> = vec![None; reqs.len()];
    for &i in &idx {
        match planned[i].take() {
            Some(Planned::Put { resource_type, id, resource, if_match, created }) => {
                let resource = if map.is_empty() {
                    resource
                } else {
                    let text = rawjson::replace_string_literals(&resource.text, &map);
                    let value = serde_json::from_str(&text).map_err(|_| ApiError::internal())?;
                    ResourceText { value, text }
                };
                op_of[i] = Some(ops.len());
                ops.push(if created {
                    TxEntry::Create { resource_type: resource_type.clone(), id: Some(id.clone()), body: ResourceBody::Text(resource.text) }
                } else {
                    TxEntry::Update { resource_type: resource_type.clone(), id: id.clone(), body: ResourceBody::Text(resource.text), if_match }
                });
                planned[i] = Some(Planned::Put {
                    resource_type,
                    id,
                    resource: ResourceText::from_value(Value::Null),
                    if_match,
                    created,
                });
            }
            Some(Planned::Delete { resource_type, id: Some(id) }) => {
                op_of[i] = Some(ops.len());
                ops.push(TxEntry::Delete { resource_type: resource_type.clone(), id: id.clone() });
                planned[i] = Some(Planned::Delete { resource_type, id: Some(id) });
            }
            other => planned[i] = other,
        }
    }
    let results = match access::write(state, ctx, WriteRequest::Transaction(ops)).await? {
        WriteResult::Transaction(r) => r,
        _ => return Err(ApiError::internal()),
    };
    let mut w = BundleWriter::new("transaction-response", None, &[]);
    let base = &state.config.base_url;
    let mut get_bodies: Vec<Option<String>> = vec![None; reqs.len()];
    for i in 0..reqs.len() {
        if let Some(Planned::Get { url }) = &planned[i] {
            get_bodies[i] = Some(get_entry(state, ctx, url).await.map_err(|e| prefix_entry(e, i))?.1);
        }
    }
    for i in 0..reqs.len() {
        match (&planned[i], op_of[i].and_then(|o| results.get(o))) {
            (Some(Planned::Put { .. }), Some(TxResult::Written { resource: sr, outcome })) => {
                let created = *outcome == WriteOutcome::Created;
                w.entry(Entry {
                    full_url: Some(format!("{base}/{}/{}", sr.resource_type, sr.id)),
                    resource: Some(&sr.json),
                    response: Some(written_response(sr, created)),
                    ..Entry::default()
                });
            }
            (Some(Planned::Existing(sr)), _) => w.entry(Entry {
                full_url: Some(format!("{base}/{}/{}", sr.resource_type, sr.id)),
                resource: Some(&sr.json),
                response: Some(written_response(sr, false)),
                ..Entry::default()
            }),
            (Some(Planned::Delete { .. }), r) => {
                let mut resp = json!({"status": "204 No Content"});
                if let Some(TxResult::Deleted { version_id: Some(v) }) = r {
                    resp["etag"] = json!(etag(*v));
                }
                w.entry(Entry { response: Some(resp), ..Entry::default() });
            }
            (Some(Planned::Get { .. }), _) => {
                let body = get_bodies[i].take().unwrap_or_default();
                w.entry(Entry { resource: Some(&body), response: Some(json!({"status": "200 OK"})), ..Entry::default() });
            }
            _ => return Err(ApiError::internal()),
        }
    }
    Ok(w.finish())
}

/// Perform a GET entry: `Type/id`, `Type/id/_history/n`, or `Type?query`. Returns (status, body text).
async fn get_entry(state: &AppState, ctx: &RequestContext, url: &str) -> ApiResult<(u16, String)> {
    let (t, id, query) = split_url(url);
    check_type(&t)?;
    let path: Vec<&str> = url.split('?').next().unwrap_or("").split('/').collect();
    match (id, path.len()) {
        (None, _) => {
            let params = query.as_deref().map(parse_form).unwrap_or_default();
            Ok((200, search_bundle(state, ctx, &HeaderMap::new(), &t, params).await?))
        }
        (Some(id), 2) => Ok((200, access::read(state, ctx, &t, &id).await?.json)),
        (Some(id), 4) if path[2] == "_history" => {
            let v = path[3].parse::<i64>().map_err(|_| ApiError::not_found("version not found"))?;
            let sr = access::vread(state, ctx, &t, &id, v).await?;
            if sr.deleted {
                return Err(ApiError::new(StatusCode::GONE, "deleted", "that version is a deletion"));
            }
            Ok((200, sr.json))
        }
        _ => Err(ApiError::bad_request("unsupported GET entry url")),
    }
}

fn prefix_entry(mut e: ApiError, i: usize) -> ApiError {
    for issue in &mut e.issues {
        issue.diagnostics = format!("Bundle.entry[{i}]: {}", issue.diagnostics);
    }
    e
}

fn status_line(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
}

async fn run_batch(state: &AppState, ctx: &RequestContext, _headers: &HeaderMap, reqs: Vec<ApiResult<Req>>) -> String {
    let mut w = BundleWriter::new("batch-response", None, &[]);
    let base = &state.config.base_url;
    for req in reqs {
        let result: ApiResult<(Value, Option<String>, Option<String>)> = async {
            let r = req?;
            // batch: each resource is checked on its own
            if let Some(res) = &r.resource {
                if r.method == "POST" || r.method == "PUT" {
                    schema::check(&res.value).map_err(ApiError::schema)?;
                }
            }
            match plan(state, ctx, &r).await? {
                Planned::Put { resource_type, id, resource, if_match, created } => {
                    let wr = if created && r.method == "POST" {
                        WriteRequest::Create { resource_type: &resource_type, body: &resource.text }
                    } else {
                        WriteRequest::Update { resource_type: &resource_type, id: &id, body: &resource.text, if_match }
                    };
                    match access::write(state, ctx, wr).await? {
                        WriteResult::Written(sr, o) => Ok((
                            written_response(&sr, o == WriteOutcome::Created),
                            Some(format!("{base}/{}/{}", sr.resource_type, sr.id)),
                            Some(sr.json),
                        )),
                        _ => Err(ApiError::internal()),
                    }
                }
                Planned::Existing(sr) => Ok((
                    written_response(&sr, false),
                    Some(format!("{base}/{}/{}", sr.resource_type, sr.id)),
                    Some(sr.json),
                )),
                Planned::Delete { resource_type, id } => {
                    let mut resp = json!({"status": "204 No Content"});
                    if let Some(id) = id {
                        if let WriteResult::Deleted(Some(v)) =
                            access::write(state, ctx, WriteRequest::Delete { resource_type: &resource_type, id: &id }).await?
                        {
                            resp["etag"] = json!(etag(v));
                        }
                    }
                    Ok((resp, None, None))
                }
                Planned::Get { url } => {
                    let (_, body) = get_entry(state, ctx, &url).await?;
                    Ok((json!({"status": "200 OK"}), None, Some(body)))
                }
            }
        }
        .await;
        match result {
            Ok((resp, full_url, body)) => w.entry(Entry { full_url, resource: body.as_deref(), response: Some(resp), ..Entry::default() }),
            Err(e) => {
                let resp = json!({"status": status_line(e.status), "outcome": operation_outcome(&e.issues)});
                w.entry(Entry { response: Some(resp), ..Entry::default() });
            }
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's text is what serde_json writes for the same Bundle built as a JSON value (the
    /// representation before the writer wrote text directly), escapes included.
    #[test]
    fn writer_text_equals_serde_json_of_the_same_bundle() {
        let odd = "a\"b\\c\nd\re\tf\u{8}g\u{c}h\u{1}i\u{1f}j/k\u{7f}l カンジャ 😀";
        let links = vec![("self".to_string(), format!("http://h/fhir/Patient?name={odd}")), ("next".to_string(), "u2".to_string())];
        let resource = r#"{"resourceType":"Patient","id":"p1","x":1.50}"#;
        for (total, links) in [(Some(7usize), &links[..]), (None, &[][..])] {
            let mut w = BundleWriter::new("searchset", total, links);
            w.entry(Entry {
                full_url: Some(format!("http://h/fhir/Patient/{odd}")),
                resource: Some(resource),
                search_mode: Some("match"),
                ..Entry::default()
            });
            w.entry(Entry { resource: Some(resource), search: Some(json!({"mode": "include", "score": 0.5})), ..Entry::default() });
            w.entry(Entry {
                request: Some(json!({"method": "GET", "url": odd})),
                response: Some(json!({"status": "200 OK"})),
                ..Entry::default()
            });
            let text = w.finish();
            let got: Value = serde_json::from_str(&text).unwrap();
            let mut expected = json!({
                "resourceType": "Bundle",
                "id": got["id"].clone(),
                "meta": {"lastUpdated": got["meta"]["lastUpdated"].clone()},
                "type": "searchset",
            });
            if let Some(t) = total {
                expected["total"] = json!(t);
            }
            if !links.is_empty() {
                expected["link"] = Value::Array(links.iter().map(|(r, u)| json!({"relation": r, "url": u})).collect());
            }
            let res: Value = serde_json::from_str(resource).unwrap();
            expected["entry"] = json!([
                {"fullUrl": format!("http://h/fhir/Patient/{odd}"), "resource": res, "search": {"mode": "match"}},
                {"resource": res, "search": {"mode": "include", "score": 0.5}},
                {"request": {"method": "GET", "url": odd}, "response": {"status": "200 OK"}},
            ]);
            assert_eq!(text, expected.to_string());
            assert!(text.contains("1.50"), "stored decimal text kept");
            assert_eq!(got["id"].as_str().map(str::len), Some(36));
        }
        let empty = BundleWriter::new("history", Some(0), &[]).finish();
        let v: Value = serde_json::from_str(&empty).unwrap();
        assert_eq!(empty, json!({"resourceType": "Bundle", "id": v["id"], "meta": v["meta"], "type": "history", "total": 0}).to_string());
    }
}
