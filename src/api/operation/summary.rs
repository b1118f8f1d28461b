//! `GET /fhir/Patient/{id}/$summary?mode=emergency|multidisciplinary` and
//! `GET /fhir/Patient/$summary?identifier=system|value&mode=…` — the Tobiume-net emergency and
//! multi-disciplinary patient summaries as a FHIR R4 **document** Bundle shaped after the IPS
//! `$summary` operation (`http://hl7.org/fhir/uv/ips/OperationDefinition/summary`; FHIR R4
//! `documents.html`). The content rules (sections per mode, section codes, last-updated dates, merged
//! SS-MIX2 data) are in [`crate::summary`]; this module gathers the resources — **every read through
//! [`access::read_resources`]** (via `access::read` / `access::search`), so consent and audit hold here
//! as for any other read — and answers.
//!
//! # Parameters
//!
//! * `mode` — `emergency` (default when absent; the IPS-style minimal set) or `multidisciplinary`;
//!   anything else is **400** (`invalid`, expression `mode`).
//! * `identifier` (type level only) — `system|value` of the Patient, e.g. the Tobiume card id
//!   `http://tobiume-gateway.local/fhir/sid/card-id|TB-40-0012345`; no match **404**, several **412**
//!   (`multiple-matches`).
//! * `profile`, `_format=json` are accepted and ignored (the gateway returns one document shape).
//!
//! Unknown patient (or an invalid id) **404**, a deleted one **410**, all as OperationOutcome. Logs hold
//! no ids of people, no names.
//!
//! # Consent and break-the-glass
//!
//! Every read is decided by `crate::consent` (403 when the caller's facility may not see the patient).
//! The instance-level **emergency** summary is the one read a break-the-glass caller (purpose of use
//! `ETREAT`/`BTG`, a stated reason, the emergency role, a facility) may make without a covering consent:
//! it then sees this patient's registration data (linked SS-MIX2 patients still need their own consent),
//! and the access is audited as an emergency override (DICOM 110113 / 110127). The type-level form
//! (`?identifier=`) and `mode=multidisciplinary` never override.
//!
//! # Linking SS-MIX2 data to a registration
//!
//! A Tobiume registration Patient (`tobiume-<card>`, identified by its card-id identifier
//! [`CARD_ID_SYSTEM`]) and an SS-MIX2 Patient (`[facility.]<pid>.ADT-00`) are different resources.
//! Two Patients are **linked** when any of these holds (demographics alone never link — a kana name and
//! birth date match is a `$match` candidate for a human to confirm, not a link):
//!
//! 1. one has a `Patient.link` of type `seealso` or `refer` to the other (either direction);
//! 2. they share an identifier **with a system** (`system|value`), other than the card id — e.g. the
//!    registration carries the hospital's patient id `urn:oid:1.2.392.100495.20.3.51.1<医療機関コード>|<pid>`,
//!    which is what an import with `--facility <code>` puts on the SS-MIX2 Patient;
//! 3. a `Linkage` resource lists both (`Linkage.item.resource`) — durable across re-registration and
//!    re-import, which both rewrite their Patient.
//!
//! `$summary` works on either id: on an SS-MIX2 Patient, the registration linked to it (the first by id
//! when several claim it) becomes the subject; without one, the summary holds the SS-MIX2 data alone.
//! The merged data of every SS-MIX2 Patient linked to the registration is labelled with its source:
//! the `display` of the link reference, else the SS-MIX2 Patient's `managingOrganization.display`, else
//! its 医療機関コード (identifier system or id prefix), else 送信施設不明.
//!
//! # "Now"
//!
//! The prescription window ends at "now": the system clock, or `TOBIUME_SUMMARY_NOW` (RFC 3339; read
//! once per process, for demos and end-to-end tests), or a [`SummaryClock`] request extension (for
//! in-process tests), in increasing priority.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use futures::future::try_join_all;
use serde_json::Value;
use time::OffsetDateTime;

use crate::api::access::{self, RequestContext};
use crate::api::body;
use crate::api::interaction::{query_pairs, valid_id};
use crate::api::outcome::{ApiError, ApiResult, Issue};
use crate::api::response::fhir_bytes;
use crate::api::AppState;
use crate::mapping::registration::{section_of, CARD_ID_SYSTEM};
use crate::search::MAX_COUNT;
use crate::store::StoreError;
use crate::summary::{self, LinkedSource, Mode, Options, Sources, Summary, SSMIX2_SOURCE};

/// A fixed "now" for the summary, put into the request extensions by tests
/// (`router.layer(Extension(SummaryClock(t)))`).
#[derive(Debug, Clone, Copy)]
pub struct SummaryClock(pub OffsetDateTime);

/// `TOBIUME_SUMMARY_NOW`, parsed once (invalid → ignored).
static ENV_NOW: LazyLock<Option<OffsetDateTime>> = LazyLock::new(|| {
    let v = std::env::var("TOBIUME_SUMMARY_NOW").ok()?;
    OffsetDateTime::parse(v.trim(), &time::format_description::well_known::Rfc3339).ok()
});

/// "Now" for a request: the extension, else `TOBIUME_SUMMARY_NOW`, else the system clock.
pub fn now(clock: Option<&SummaryClock>) -> OffsetDateTime {
    clock
        .map(|c| c.0)
        .or(*ENV_NOW)
        .unwrap_or_else(OffsetDateTime::now_utc)
}

/// JP Core patient-id identifier system prefix (`…51.1` + 10-digit 医療機関コード).
const JP_PATIENT_ID_SYSTEM_PREFIX: &str = "urn:oid:1.2.392.100495.20.3.51.1";

/// The `mode` parameter (absent → emergency). Errors: 400 for any other value.
pub fn mode_param(params: &[(String, String)]) -> ApiResult<Mode> {
    match params.iter().rev().find(|(k, _)| k == "mode") {
        None => Ok(Mode::Emergency),
        Some((_, v)) => Mode::parse(v.trim()).ok_or_else(|| ApiError {
            status: StatusCode::BAD_REQUEST,
            issues: vec![Issue::error(
                "invalid",
                "mode must be 'emergency' or 'multidisciplinary'",
            )
            .at("mode")],
        }),
    }
}

/// `GET /fhir/Patient/{id}/$summary`. Output: 200 document Bundle; errors: see the module docs.
pub async fn instance_summary(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    mut ctx: RequestContext,
    clock: Option<Extension<SummaryClock>>,
) -> ApiResult<Response> {
    let params = query_pairs(&q);
    body::check_format(&params)?;
    let mode = mode_param(&params)?;
    if mode == Mode::Emergency {
        // Break-the-glass may cover exactly this: the emergency summary of this patient (consent).
        ctx.emergency_summary = Some(id.clone());
    }
    let s = summarize(&state, &ctx, &id, mode, now(clock.as_deref())).await?;
    Ok(fhir_bytes(StatusCode::OK, s.bundle))
}

/// `GET /fhir/Patient/$summary?identifier=system|value`. Output: 200 document Bundle; errors: 400
/// without `identifier`, 404 no Patient with it, 412 several, else as [`instance_summary`].
pub async fn type_summary(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    ctx: RequestContext,
    clock: Option<Extension<SummaryClock>>,
) -> ApiResult<Response> {
    let params = query_pairs(&q);
    body::check_format(&params)?;
    let mode = mode_param(&params)?;
    let Some((_, ident)) = params
        .iter()
        .find(|(k, v)| k == "identifier" && !v.trim().is_empty())
    else {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            issues: vec![Issue::error(
                "required",
                "identifier (system|value) or a Patient id in the URL is required",
            )
            .at("identifier")],
        });
    };
    let ids = search_ids(
        &state,
        &ctx,
        "Patient",
        vec![("identifier".into(), ident.clone())],
        2,
    )
    .await?;
    let id = match ids.as_slice() {
        [] => return Err(ApiError::not_found("no Patient with that identifier")),
        [one] => one.clone(),
        _ => {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "multiple-matches",
                "several Patients have that identifier",
            ))
        }
    };
    let s = summarize(&state, &ctx, &id, mode, now(clock.as_deref())).await?;
    Ok(fhir_bytes(StatusCode::OK, s.bundle))
}

/// Gathers ([`gather`]) and builds ([`summary::build`]) the summary of Patient `id` — the one path
/// both `$summary` and the HTML viewer use. Errors: 404 unknown/invalid id, 410 deleted, 500 store.
pub async fn summarize(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    mode: Mode,
    now: OffsetDateTime,
) -> ApiResult<Summary> {
    let opts = Options::new(now, state.config.base_url.clone());
    let src = gather(state, ctx, id, &opts).await?;
    Ok(summary::build(&src, mode, &opts))
}

fn is_registration(p: &Value) -> bool {
    identifiers(p).iter().any(|(s, _)| s == CARD_ID_SYSTEM)
}

/// `(system, value)` of every identifier that has both.
fn identifiers(p: &Value) -> Vec<(String, String)> {
    p.get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let s = i.get("system")?.as_str()?;
            let v = i.get("value")?.as_str()?;
            (!s.is_empty() && !v.is_empty()).then(|| (s.to_string(), v.to_string()))
        })
        .collect()
}

/// `Patient/<id>` targets of `Patient.link` (types seealso/refer), with the link's display.
fn link_targets(p: &Value) -> Vec<(String, Option<String>)> {
    p.get("link")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|l| {
            matches!(
                l.get("type").and_then(Value::as_str),
                Some("seealso") | Some("refer")
            )
        })
        .filter_map(|l| {
            let other = l.get("other")?;
            let id = other.get("reference")?.as_str()?.strip_prefix("Patient/")?;
            valid_id(id).then(|| {
                (
                    id.to_string(),
                    other
                        .get("display")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                )
            })
        })
        .collect()
}

fn parse_json(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

/// All current matches of a search (paged through `access::search`, at most 10 000), parsed, with
/// their stored JSON text.
async fn search_all_raw(
    state: &AppState,
    ctx: &RequestContext,
    rtype: &str,
    mut params: Vec<(String, String)>,
) -> ApiResult<Vec<(Value, String)>> {
    params.push(("_count".into(), MAX_COUNT.to_string()));
    let mut out = Vec::new();
    for page_no in 0..10 {
        let mut p = params.clone();
        if page_no > 0 {
            p.push(("_offset".into(), (page_no * MAX_COUNT).to_string()));
        }
        let q = crate::search::query::parse(&state.registry, rtype, &p)?;
        let page = access::search(state, ctx, &q).await?;
        let n = page.matches.len();
        out.extend(
            page.matches
                .into_iter()
                .filter(|r| !r.deleted)
                .filter_map(|r| Some((parse_json(&r.json)?, r.json))),
        );
        if n < MAX_COUNT {
            break;
        }
    }
    Ok(out)
}

/// All current matches of a search, parsed ([`search_all_raw`] without the texts).
async fn search_all(
    state: &AppState,
    ctx: &RequestContext,
    rtype: &str,
    params: Vec<(String, String)>,
) -> ApiResult<Vec<Value>> {
    Ok(search_all_raw(state, ctx, rtype, params)
        .await?
        .into_iter()
        .map(|(v, _)| v)
        .collect())
}

async fn search_ids(
    state: &AppState,
    ctx: &RequestContext,
    rtype: &str,
    params: Vec<(String, String)>,
    limit: usize,
) -> ApiResult<Vec<String>> {
    let q = crate::search::query::parse(&state.registry, rtype, &params)?;
    access::search_ids(state, ctx, &q, limit).await
}

/// Reads a Patient; `None` when it does not exist or was deleted.
async fn read_patient(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
) -> ApiResult<Option<Value>> {
    if !valid_id(id) {
        return Ok(None);
    }
    match access::read(state, ctx, "Patient", id).await {
        Ok(sr) if !sr.deleted => Ok(parse_json(&sr.json)),
        Ok(_) => Ok(None),
        Err(e) if matches!(e.status, StatusCode::NOT_FOUND | StatusCode::GONE) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Patients linked to `p` by a reverse `Patient.link`, a shared identifier or a `Linkage` (rules 1–3
/// of the module docs, except `p`'s own links), as ids.
async fn linked_ids(
    state: &AppState,
    ctx: &RequestContext,
    p: &Value,
    id: &str,
) -> ApiResult<Vec<String>> {
    let reference = format!("Patient/{id}");
    let mut searches: Vec<(&str, Vec<(String, String)>)> = vec![
        ("Patient", vec![("link".into(), reference.clone())]),
        ("Linkage", vec![("item".into(), reference.clone())]),
    ];
    for (s, v) in identifiers(p) {
        if s != CARD_ID_SYSTEM {
            let esc = |x: &str| {
                x.replace('\\', "\\\\")
                    .replace('|', "\\|")
                    .replace(',', "\\,")
                    .replace('$', "\\$")
            };
            searches.push((
                "Patient",
                vec![("identifier".into(), format!("{}|{}", esc(&s), esc(&v)))],
            ));
        }
    }
    let results = try_join_all(
        searches
            .into_iter()
            .map(|(t, params)| search_all(state, ctx, t, params)),
    )
    .await?;
    let mut out = Vec::new();
    for r in results.into_iter().flatten() {
        match r.get("resourceType").and_then(Value::as_str) {
            Some("Patient") => {
                if let Some(x) = r.get("id").and_then(Value::as_str) {
                    out.push(x.to_string());
                }
            }
            Some("Linkage") => {
                for item in r
                    .get("item")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(x) = item
                        .pointer("/resource/reference")
                        .and_then(Value::as_str)
                        .and_then(|s| s.strip_prefix("Patient/"))
                    {
                        out.push(x.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out.retain(|x| x != id);
    Ok(out)
}

/// The source label of a linked Patient: (facility name, `meta.source` URI).
fn source_of(p: &Value, link_display: Option<&str>) -> (String, String) {
    let code = identifiers(p)
        .into_iter()
        .find_map(|(s, _)| {
            s.strip_prefix(JP_PATIENT_ID_SYSTEM_PREFIX)
                .map(str::to_string)
        })
        .filter(|c| c.len() == 10 && c.bytes().all(|b| b.is_ascii_digit()))
        .or_else(|| {
            // `<facility>.<pid>.ADT-00` (import --facility)
            let id = p.get("id").and_then(Value::as_str)?;
            let parts: Vec<&str> = id.split('.').collect();
            (parts.len() == 3
                && parts[0].len() == 10
                && parts[0].bytes().all(|b| b.is_ascii_digit()))
            .then(|| parts[0].to_string())
        });
    let name = link_display
        .map(str::to_string)
        .or_else(|| {
            p.pointer("/managingOrganization/display")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .or_else(|| code.as_ref().map(|c| format!("医療機関コード {c}")))
        .unwrap_or_else(|| "送信施設不明".to_string());
    let uri = match &code {
        Some(c) => format!("{SSMIX2_SOURCE}:{c}"),
        None => SSMIX2_SOURCE.to_string(),
    };
    (name, uri)
}

/// The registration resources of registration Patient `reg` (everything [`section_of`] recognises),
/// the Patient first, then the referenced Organizations and Practitioners; with the stored JSON text of
/// each found one by `Type/id` (the Patient's own text is the caller's).
async fn registration_resources(
    state: &AppState,
    ctx: &RequestContext,
    reg: &Value,
    reg_id: &str,
) -> ApiResult<(Vec<Value>, HashMap<String, String>)> {
    let r = format!("Patient/{reg_id}");
    let searches = [
        ("CareTeam", "subject"),
        ("Coverage", "beneficiary"),
        ("Condition", "subject"),
        ("Observation", "subject"),
        ("MedicationStatement", "subject"),
        ("AllergyIntolerance", "patient"),
        ("Device", "patient"),
        ("DeviceUseStatement", "subject"),
        ("Procedure", "subject"),
        ("Consent", "patient"),
    ];
    let found = try_join_all(
        searches
            .iter()
            .map(|(t, p)| search_all_raw(state, ctx, t, vec![(p.to_string(), r.clone())])),
    )
    .await?;
    let mut raw: HashMap<String, String> = HashMap::new();
    let mut keep = |(v, text): (Value, String)| {
        section_of(&v)?;
        raw.insert(summary::raw_key(&v)?, text);
        Some(v)
    };
    let mut out = vec![reg.clone()];
    out.extend(found.into_iter().flatten().filter_map(&mut keep));
    // Organizations / Practitioners referenced by the registration.
    let mut orgs: Vec<String> = Vec::new();
    let mut practs: Vec<String> = Vec::new();
    for res in &out {
        collect_refs(res, &mut |reference| {
            if let Some(id) = reference.strip_prefix("Organization/") {
                if valid_id(id) && !orgs.iter().any(|x| x == id) {
                    orgs.push(id.to_string());
                }
            } else if let Some(id) = reference.strip_prefix("Practitioner/") {
                if valid_id(id) && !practs.iter().any(|x| x == id) {
                    practs.push(id.to_string());
                }
            }
        });
    }
    let mut lookups = Vec::new();
    if !orgs.is_empty() {
        lookups.push(("Organization", orgs.join(",")));
    }
    if !practs.is_empty() {
        lookups.push(("Practitioner", practs.join(",")));
    }
    let found = try_join_all(
        lookups
            .into_iter()
            .map(|(t, ids)| search_all_raw(state, ctx, t, vec![("_id".into(), ids)])),
    )
    .await?;
    out.extend(found.into_iter().flatten().filter_map(&mut keep));
    Ok((out, raw))
}

fn collect_refs(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("reference") {
                f(r);
            }
            for (k, x) in m {
                if k != "contained" {
                    collect_refs(x, f);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, f)),
        _ => {}
    }
}

/// The data of one linked SS-MIX2 Patient: all Conditions and AllergyIntolerances, MedicationRequests
/// authored since the window start (by date; [`summary::build`] applies the exact instant).
async fn linked_source(
    state: &AppState,
    ctx: &RequestContext,
    patient: Value,
    link_display: Option<&str>,
    opts: &Options,
) -> ApiResult<LinkedSource> {
    let id = patient
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let r = format!("Patient/{id}");
    let jst = time::UtcOffset::from_hms(9, 0, 0).unwrap_or(time::UtcOffset::UTC);
    let start = opts.window_start().to_offset(jst).date();
    let since = format!(
        "ge{:04}-{:02}-{:02}",
        start.year(),
        u8::from(start.month()),
        start.day()
    );
    let (conditions, allergies, meds) = futures::try_join!(
        search_all(state, ctx, "Condition", vec![("subject".into(), r.clone())]),
        search_all(
            state,
            ctx,
            "AllergyIntolerance",
            vec![("patient".into(), r.clone())]
        ),
        search_all(
            state,
            ctx,
            "MedicationRequest",
            vec![("subject".into(), r.clone()), ("authoredon".into(), since)]
        ),
    )?;
    let (facility, source_uri) = source_of(&patient, link_display);
    let kind = if id.ends_with(".ADT-00") {
        "SS-MIX2"
    } else {
        "連携データ"
    };
    let mut resources = conditions;
    resources.extend(allergies);
    resources.extend(meds);
    Ok(LinkedSource {
        label: format!("{kind} ({facility})"),
        facility,
        source_uri,
        patient,
        resources,
    })
}

/// Reads everything the summary of Patient `id` needs (linking rule: module docs).
///
/// Errors: 404 (`not-found`) for an unknown or invalid id, 410 for a deleted Patient, 500 on a store
/// failure.
pub async fn gather(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    opts: &Options,
) -> ApiResult<Sources> {
    if !valid_id(id) {
        return Err(ApiError::not_found("Patient/<invalid id> not found"));
    }
    let requested_text;
    let requested = match access::read(state, ctx, "Patient", id).await {
        Ok(sr) if !sr.deleted => {
            let v = parse_json(&sr.json).ok_or_else(ApiError::internal)?;
            requested_text = sr.json;
            v
        }
        Ok(_) => return Err(StoreError::Gone("Patient".into(), id.into()).into()),
        Err(e) => return Err(e),
    };

    // The registration (subject) and the linked Patients' ids (with link displays).
    let mut links: Vec<(String, Option<String>)> = Vec::new();
    let reg: Option<(Value, String)> = if is_registration(&requested) {
        Some((requested.clone(), id.to_string()))
    } else {
        links.push((id.to_string(), None));
        let mut cands: Vec<String> = link_targets(&requested)
            .into_iter()
            .map(|(x, _)| x)
            .collect();
        cands.extend(linked_ids(state, ctx, &requested, id).await?);
        cands.sort();
        cands.dedup();
        let mut found = None;
        for c in cands {
            if let Some(p) = read_patient(state, ctx, &c).await? {
                if is_registration(&p) {
                    found = Some((p, c));
                    break;
                }
            }
        }
        found
    };

    let mut src = Sources {
        subject: requested.clone(),
        ..Default::default()
    };
    if let Some((reg, reg_id)) = &reg {
        links.extend(link_targets(reg));
        let ((resources, raw), more) = futures::try_join!(
            registration_resources(state, ctx, reg, reg_id),
            linked_ids(state, ctx, reg, reg_id)
        )?;
        links.extend(more.into_iter().map(|x| (x, None)));
        src.subject = reg.clone();
        src.registration = resources;
        src.raw = raw;
    }
    if reg.as_ref().is_none_or(|(_, r)| r == id) {
        // The subject is the resource read above: pass its stored text through.
        if let Some(k) = summary::raw_key(&requested) {
            src.raw.insert(k, requested_text);
        }
    }

    // Linked (SS-MIX2) Patients: dedupe, keep the first display, drop registrations.
    let mut seen: HashSet<String> = HashSet::new();
    let mut wanted: Vec<(String, Option<String>)> = Vec::new();
    for (x, d) in links {
        if reg.as_ref().is_some_and(|(_, r)| *r == x) {
            continue;
        }
        if seen.insert(x.clone()) {
            wanted.push((x, d));
        } else if let Some(w) = wanted.iter_mut().find(|(y, dd)| *y == x && dd.is_none()) {
            w.1 = d;
        }
    }
    let requested = &requested;
    let patients = try_join_all(wanted.iter().map(|(x, _)| async move {
        if *x == id {
            Ok(Some(requested.clone()))
        } else {
            read_patient(state, ctx, x).await
        }
    }))
    .await?;
    let sources = try_join_all(
        wanted
            .iter()
            .zip(patients)
            .filter_map(|((_, d), p)| p.filter(|p| !is_registration(p)).map(|p| (p, d.clone())))
            .map(|(p, d)| async move { linked_source(state, ctx, p, d.as_deref(), opts).await }),
    )
    .await?;
    src.linked = sources;
    Ok(src)
}
