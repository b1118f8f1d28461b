//! `POST /fhir/Patient/$register` — registering a patient's basic information (患者基本情報) from the
//! **simple registration JSON** (`conformance/registration.schema.json`; the serde form of
//! [`Registration`]) for systems without FHIR, and the same core for the CLI
//! (`tobiume-gateway register json FILE`, `register receipt-csv FILE`).
//!
//! # What happens ([`register`])
//!
//! 1. The JSON is checked against the JSON Schema, deserialized and [`Registration::validate`]d
//!    ([`parse_registration`]).
//! 2. **De-duplication** (`docs/domain.md` §1.2 — the secretariat checks name, address, birth date and
//!    sex; a consent form sent twice must not register the patient twice):
//!    * a Patient with the same card id (`Patient/tobiume-<cardId>`) → that registration is
//!      **updated**;
//!    * else a `$match` **certain** match on name + birth date + sex + address
//!      ([`super::match_::score`]) among registered patients (those whose logical id is
//!      `tobiume-<their cardId>`) → the registration is **attached to that patient**: it is written
//!      under the existing card id (the card id of the form is reported in the response's outcome);
//!      several certain matches → 412 `multiple-matches` (the secretariat must resolve them);
//!    * else a new registration is created.
//! 3. The registration is mapped with [`to_fhir`] (every resource checked against the R4 schema) and
//!    written in **one store transaction** through [`access::write`]: resources whose content is
//!    unchanged are skipped, changed ones are updated with `If-Match` on the version read (optimistic
//!    concurrency), and the resources the previous registration had but the new one no longer
//!    produces ([`Ids::owns`]) are deleted. A version conflict (another writer in between) re-runs
//!    steps 2–3 (up to 3 times).
//!
//! Registrations are serialised within one gateway process (an async mutex), so the same form posted
//! twice — also concurrently — gives one patient; across several processes on one database the
//! card-id path is still safe (same logical ids, `If-Match`), the demographic path is not (a known
//! gap: it needs a database-level lock, e.g. a PostgreSQL advisory lock, in the store).
//!
//! # HTTP
//!
//! Request: `Content-Type: application/json` (or `application/fhir+json`), the simple registration
//! JSON. Response: **201** (a new patient) or **200** (an existing one updated, or unchanged), with
//! `Location: <base>/Patient/<id>/_history/<v>` and `ETag` of the Patient; the body is a
//! `transaction-response` Bundle (one entry per written, unchanged or deleted resource; the Patient's
//! entry carries `response.outcome` on de-duplication), or with `Prefer: return=representation` the
//! Patient, `return=minimal` nothing, `return=OperationOutcome` an OperationOutcome.
//!
//! Errors (OperationOutcome; `expression` = the JSON path in the registration JSON, e.g.
//! `demographics.nameKana.value.family`, `mainDiagnoses[5]`): 400 malformed JSON; 415 content type;
//! 413 too large; 422 schema violation (`structure`) or model rule (`invalid`); 412 several certain
//! matches; 500 store failure. Messages never contain the submitted values.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::match_::{self, Demographics, MatchGrade};
use crate::api::access::{self, RequestContext, WriteRequest, WriteResult};
use crate::api::body;
use crate::api::bundle::{BundleWriter, Entry};
use crate::api::interaction::query_pairs;
use crate::api::outcome::{operation_outcome, ApiError, ApiResult, Issue};
use crate::api::response::{self, fhir_bytes, fhir_json};
use crate::api::AppState;
use crate::mapping::registration::receipt::{self, Merged, ReceiptRow, RowError};
use crate::mapping::registration::{
    from_fhir, to_fhir, CardId, DateTime, Ids, Registration, CARD_ID_SYSTEM,
};
use crate::search::normalize::fold_ja;
use crate::store::{StoredResource, TxEntry, TxResult, WriteOutcome};
use crate::validation::schema;

/// The JSON Schema of the simple registration JSON (draft 2020-12), compiled once.
static REGISTRATION_SCHEMA: LazyLock<Result<jsonschema::Validator, String>> = LazyLock::new(|| {
    let v: Value = serde_json::from_str(include_str!(
        "../../../conformance/registration.schema.json"
    ))
    .map_err(|e| format!("registration.schema.json does not parse: {e}"))?;
    jsonschema::validator_for(&v)
        .map_err(|e| format!("registration.schema.json does not compile: {e}"))
});

/// One registration at a time per process (see the module docs).
static REGISTER_LOCK: LazyLock<tokio::sync::Mutex<()>> =
    LazyLock::new(|| tokio::sync::Mutex::new(()));

/// How many times a registration is re-run after a version conflict.
const ATTEMPTS: usize = 3;

/// Types that refer to the patient and may hold resources of a registration, with the reference
/// search parameter.
const PATIENT_COMPARTMENT: &[(&str, &str)] = &[
    ("CareTeam", "patient"),
    ("Coverage", "beneficiary"),
    ("Condition", "patient"),
    ("MedicationStatement", "patient"),
    ("AllergyIntolerance", "patient"),
    ("Device", "patient"),
    ("DeviceUseStatement", "patient"),
    ("Procedure", "patient"),
    ("Observation", "patient"),
    ("Consent", "patient"),
];

/// A JSON pointer (`/mainDiagnoses/5/value`) as the model's JSON path (`mainDiagnoses[5].value`);
/// the root is `$`.
pub fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    if out.is_empty() {
        "$".into()
    } else {
        out
    }
}

/// Checks and reads the simple registration JSON.
///
/// Input: the request body bytes. Output: a valid [`Registration`]. Errors: 400 (not UTF-8, malformed
/// JSON; `expression` where the parser stopped), 422 `structure` (one issue per JSON Schema violation,
/// `expression` = the JSON path, e.g. `demographics.birthDate.value`; a missing member is reported at
/// its would-be path), 422 `invalid` (one issue per [`Registration::validate`] problem). Never echoes
/// values.
pub fn parse_registration(bytes: &[u8]) -> ApiResult<Registration> {
    let (value, _) = body::parse_json(bytes)?;
    let validator = REGISTRATION_SCHEMA.as_ref().map_err(|e| {
        tracing::error!(error = %e, "registration schema unavailable");
        ApiError::internal()
    })?;
    if !validator.is_valid(&value) {
        let mut issues: Vec<Issue> = Vec::new();
        for err in validator.iter_errors(&value) {
            let mut path = pointer_to_path(err.instance_path().as_str());
            if let jsonschema::error::ValidationErrorKind::Required { property } = err.kind() {
                if let Some(p) = property.as_str() {
                    path = if path == "$" {
                        p.to_string()
                    } else {
                        format!("{path}.{p}")
                    };
                }
            }
            let issue = Issue::error("structure", err.masked().to_string()).at(path);
            if !issues.contains(&issue) {
                issues.push(issue);
            }
            if issues.len() >= 100 {
                break;
            }
        }
        if issues.is_empty() {
            issues.push(
                Issue::error("structure", "does not follow registration.schema.json").at("$"),
            );
        }
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            issues,
        });
    }
    let reg: Registration = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." || path.is_empty() {
            "$".to_string()
        } else {
            path
        };
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "structure",
            strip_values(&e.inner().to_string()),
        )
        .with_expression(&path)
    })?;
    reg.validate().map_err(|errs| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        issues: errs
            .into_iter()
            .map(|e| match &e {
                crate::mapping::registration::RegistrationError::InvalidModel { path, message } => {
                    Issue::error("invalid", message.clone()).at(path.clone())
                }
                other => Issue::error("invalid", other.to_string()),
            })
            .collect(),
    })?;
    Ok(reg)
}

/// serde messages quote the offending value (`invalid value: string "…"`): keep the text before it.
fn strip_values(msg: &str) -> String {
    match msg.find(": string \"").or_else(|| msg.find(" `")) {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// How the registration found its patient.
#[derive(Debug, Clone, PartialEq)]
pub enum MatchedBy {
    /// No existing patient: a new registration.
    New,
    /// The Patient of the form's card id exists: updated.
    CardId,
    /// A certain `$match` on name + birth date + sex + address: the registration was attached to the
    /// existing patient of `card_id`; the form's own card id was `form_card_id`.
    Demographics {
        /// The existing registration's card id (now used).
        card_id: CardId,
        /// The card id written on the form.
        form_card_id: CardId,
    },
}

/// What happened to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A new resource.
    Created,
    /// A new version.
    Updated,
    /// Identical content: not written.
    Unchanged,
    /// No longer produced by the registration: deleted.
    Deleted,
}

/// One resource of a registration after [`register`].
#[derive(Debug, Clone)]
pub struct RegisteredEntry {
    /// Resource type.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// What happened.
    pub change: Change,
    /// The current version (the tombstone's for a delete; `None` when nothing was there).
    pub version_id: Option<i64>,
    /// `meta.lastUpdated` of that version (not for deletes).
    pub last_updated: Option<String>,
}

/// The result of [`register`].
#[derive(Debug, Clone)]
pub struct RegisterOutcome {
    /// The Patient as now stored.
    pub patient: StoredResource,
    /// `true` when the Patient was created (HTTP 201).
    pub created: bool,
    /// How the patient was found.
    pub matched: MatchedBy,
    /// Every resource of the registration, plus the deleted ones (deletes first).
    pub entries: Vec<RegisteredEntry>,
}

impl RegisterOutcome {
    /// Counts of (created, updated, unchanged, deleted).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let n = |c: Change| self.entries.iter().filter(|e| e.change == c).count();
        (
            n(Change::Created),
            n(Change::Updated),
            n(Change::Unchanged),
            n(Change::Deleted),
        )
    }
}

/// Registers `reg` (see the module docs): de-duplicates, maps, and writes everything in one
/// transaction through [`access::write`]. Serialised within the process.
///
/// Errors: 412 `multiple-matches` (several registered patients are certain matches), 422 (a produced
/// resource fails the R4 schema — a mapping defect), 412 `conflict` when version conflicts persist
/// after 3 attempts, 500 store failure.
pub async fn register(
    state: &AppState,
    ctx: &RequestContext,
    reg: Registration,
) -> ApiResult<RegisterOutcome> {
    let _guard = REGISTER_LOCK.lock().await;
    register_locked(state, ctx, reg).await
}

async fn register_locked(
    state: &AppState,
    ctx: &RequestContext,
    reg: Registration,
) -> ApiResult<RegisterOutcome> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match attempt(state, ctx, reg.clone()).await {
            Err(e)
                if e.status == StatusCode::PRECONDITION_FAILED
                    && e.issues.iter().any(|i| i.code == "conflict") =>
            {
                last = Some(e);
            }
            other => return other,
        }
    }
    Err(last.unwrap_or_else(ApiError::internal))
}

/// Reads `Type/id`; `None` when absent or deleted.
async fn read_opt(
    state: &AppState,
    ctx: &RequestContext,
    t: &str,
    id: &str,
) -> ApiResult<Option<StoredResource>> {
    match access::read(state, ctx, t, id).await {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::GONE => Ok(None),
        Err(e) => Err(e),
    }
}

/// The card id of a registration-managed Patient (logical id `tobiume-<cardId>` and that card id in
/// `identifier`), else `None`.
fn managed_card(ids: &Ids, id: &str, patient: &Value) -> Option<CardId> {
    patient
        .get("identifier")
        .and_then(Value::as_array)?
        .iter()
        .filter(|i| i.get("system").and_then(Value::as_str) == Some(CARD_ID_SYSTEM))
        .filter_map(|i| CardId::new(i.get("value")?.as_str()?))
        .find(|c| ids.patient(c) == id)
}

/// Step 2: which card id the registration is written under.
async fn deduplicate(
    state: &AppState,
    ctx: &RequestContext,
    ids: &Ids,
    reg: &mut Registration,
    new_patient: &Value,
) -> ApiResult<MatchedBy> {
    if read_opt(state, ctx, "Patient", &ids.patient(&reg.card_id))
        .await?
        .is_some()
    {
        return Ok(MatchedBy::CardId);
    }
    let demo = Demographics::of(new_patient);
    let found = match_::find_matches(state, ctx, &demo).await?;
    let certain: Vec<CardId> = found
        .iter()
        .filter(|c| {
            c.score.grade == MatchGrade::Certain
                && c.score.name
                && c.score.birth_date
                && c.score.address
        })
        .filter_map(|c| managed_card(ids, &c.resource.id, &c.value))
        .collect();
    match certain.len() {
        0 => Ok(MatchedBy::New),
        1 => {
            let card = certain.into_iter().next().ok_or_else(ApiError::internal)?;
            let form_card_id = std::mem::replace(&mut reg.card_id, card.clone());
            Ok(MatchedBy::Demographics { card_id: card, form_card_id })
        }
        n => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "multiple-matches",
            format!("the registration is a certain match (name, birth date, sex, address) for {n} registered patients; resolve the duplicates first"),
        )),
    }
}

/// The live resources that belong to the registration of `card`: the Patient, every resource of the
/// patient compartment types whose id [`Ids::owns`], and the Organizations / Practitioners those
/// refer to (also owned).
async fn owned_resources(
    state: &AppState,
    ctx: &RequestContext,
    ids: &Ids,
    card: &CardId,
) -> ApiResult<Vec<StoredResource>> {
    let pid = ids.patient(card);
    let Some(patient) = read_opt(state, ctx, "Patient", &pid).await? else {
        return Ok(Vec::new());
    };
    let mut out = vec![patient];
    for (t, param) in PATIENT_COMPARTMENT {
        let params = vec![
            ((*param).to_string(), format!("Patient/{pid}")),
            ("_count".into(), "1000".into()),
        ];
        let q = crate::search::query::parse(&state.registry, t, &params)?;
        let page = access::search(state, ctx, &q).await?;
        out.extend(
            page.matches
                .into_iter()
                .filter(|r| !r.deleted && ids.owns(card, &r.id)),
        );
    }
    let mut referenced: HashMap<&str, Vec<String>> = HashMap::new();
    for r in &out {
        if let Ok(v) = serde_json::from_str::<Value>(&r.json) {
            collect_refs(&v, &mut |s| {
                for t in ["Organization", "Practitioner"] {
                    if let Some(id) = s.strip_prefix(t).and_then(|x| x.strip_prefix('/')) {
                        if ids.owns(card, id)
                            && !referenced.get(t).is_some_and(|v| v.iter().any(|x| x == id))
                        {
                            referenced.entry(t).or_default().push(id.to_string());
                        }
                    }
                }
            });
        }
    }
    for (t, list) in referenced {
        let params = vec![
            ("_id".to_string(), list.join(",")),
            ("_count".into(), "1000".into()),
        ];
        let q = crate::search::query::parse(&state.registry, t, &params)?;
        out.extend(
            access::search(state, ctx, &q)
                .await?
                .matches
                .into_iter()
                .filter(|r| !r.deleted),
        );
    }
    Ok(out)
}

fn collect_refs(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if k == "reference" {
                    if let Some(s) = x.as_str() {
                        f(s);
                    }
                } else {
                    collect_refs(x, f);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, f)),
        _ => {}
    }
}

/// Stored JSON without the store's `meta.versionId` / `meta.lastUpdated`, for comparison.
fn content(json: &str) -> Option<Value> {
    let mut v: Value = serde_json::from_str(json).ok()?;
    if let Some(m) = v.get_mut("meta").and_then(Value::as_object_mut) {
        m.remove("versionId");
        m.remove("lastUpdated");
    }
    Some(v)
}

async fn attempt(
    state: &AppState,
    ctx: &RequestContext,
    mut reg: Registration,
) -> ApiResult<RegisterOutcome> {
    let ids = Ids::default();
    let first = to_fhir(&reg, &ids);
    let new_patient = first
        .iter()
        .find(|r| r.get("resourceType").and_then(Value::as_str) == Some("Patient"))
        .cloned()
        .ok_or_else(ApiError::internal)?;
    let matched = deduplicate(state, ctx, &ids, &mut reg, &new_patient).await?;
    let resources = if matches!(matched, MatchedBy::Demographics { .. }) {
        to_fhir(&reg, &ids)
    } else {
        first
    };
    for r in &resources {
        schema::check(r).map_err(|issues| {
            let t = r
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("Resource");
            tracing::error!(
                resource_type = t,
                issues = issues.len(),
                "registration mapping produced an invalid resource"
            );
            ApiError::schema(issues)
        })?;
    }
    let pid = ids.patient(&reg.card_id);
    let old = owned_resources(state, ctx, &ids, &reg.card_id).await?;
    let old_by_key: HashMap<(String, String), &StoredResource> = old
        .iter()
        .map(|r| ((r.resource_type.clone(), r.id.clone()), r))
        .collect();

    let new_keys: HashSet<(String, String)> = resources
        .iter()
        .filter_map(|r| {
            Some((
                r.get("resourceType")?.as_str()?.to_string(),
                r.get("id")?.as_str()?.to_string(),
            ))
        })
        .collect();
    // (index into entries or None for unchanged) per planned resource, in output order
    let mut tx: Vec<TxEntry> = Vec::new();
    let mut plan: Vec<(String, String, Option<usize>, Option<&StoredResource>)> = Vec::new();
    for r in &old {
        let key = (r.resource_type.clone(), r.id.clone());
        if !new_keys.contains(&key) {
            plan.push((key.0.clone(), key.1.clone(), Some(tx.len()), Some(r)));
            tx.push(TxEntry::Delete {
                resource_type: key.0,
                id: key.1,
            });
        }
    }
    for r in resources {
        let (Some(t), Some(id)) = (
            r.get("resourceType")
                .and_then(Value::as_str)
                .map(str::to_string),
            r.get("id").and_then(Value::as_str).map(str::to_string),
        ) else {
            return Err(ApiError::internal());
        };
        let prev = old_by_key.get(&(t.clone(), id.clone())).copied();
        if prev.is_some_and(|p| content(&p.json).as_ref() == Some(&r)) {
            plan.push((t, id, None, prev));
            continue;
        }
        plan.push((t.clone(), id.clone(), Some(tx.len()), prev));
        tx.push(TxEntry::Update {
            resource_type: t,
            id,
            body: r.into(),
            if_match: prev.map(|p| p.version_id),
        });
    }

    let results = if tx.is_empty() {
        Vec::new()
    } else {
        match access::write(state, ctx, WriteRequest::Transaction(tx)).await? {
            WriteResult::Transaction(r) => r,
            _ => return Err(ApiError::internal()),
        }
    };

    let mut entries = Vec::with_capacity(plan.len());
    let mut patient: Option<StoredResource> = None;
    let mut created = false;
    for (t, id, idx, prev) in plan {
        let e = match idx.and_then(|i| results.get(i)) {
            Some(TxResult::Written { resource, outcome }) => {
                if t == "Patient" && id == pid {
                    created = *outcome == WriteOutcome::Created;
                    patient = Some(resource.clone());
                }
                RegisteredEntry {
                    resource_type: t,
                    id,
                    change: if *outcome == WriteOutcome::Created {
                        Change::Created
                    } else {
                        Change::Updated
                    },
                    version_id: Some(resource.version_id),
                    last_updated: Some(resource.last_updated.clone()),
                }
            }
            Some(TxResult::Deleted { version_id }) => RegisteredEntry {
                resource_type: t,
                id,
                change: Change::Deleted,
                version_id: *version_id,
                last_updated: None,
            },
            None => {
                let p = prev.ok_or_else(ApiError::internal)?;
                if t == "Patient" && id == pid {
                    patient = Some(p.clone());
                }
                RegisteredEntry {
                    resource_type: t,
                    id,
                    change: Change::Unchanged,
                    version_id: Some(p.version_id),
                    last_updated: Some(p.last_updated.clone()),
                }
            }
        };
        entries.push(e);
    }
    let patient = patient.ok_or_else(ApiError::internal)?;
    tracing::info!(
        patient = %patient.id,
        created,
        written = results.len(),
        "registration written"
    );
    Ok(RegisterOutcome {
        patient,
        created,
        matched,
        entries,
    })
}

/// The current registration of `card` read back from the store ([`from_fhir`] over its resources),
/// or `None` when there is no Patient for it. Errors: 422 when the stored resources no longer form a
/// registration (edited outside the registration API), 500 store failure.
pub async fn load_registration(
    state: &AppState,
    ctx: &RequestContext,
    card: &CardId,
) -> ApiResult<Option<Registration>> {
    let ids = Ids::default();
    let res = owned_resources(state, ctx, &ids, card).await?;
    if res.is_empty() {
        return Ok(None);
    }
    let values: Vec<Value> = res
        .iter()
        .filter_map(|r| serde_json::from_str(&r.json).ok())
        .collect();
    from_fhir(&values).map(Some).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("stored registration: {e}"),
        )
    })
}

// ---------------------------------------------------------------------------------------------------
// HTTP

/// What the client asked for with `Prefer: return=…` (absent → the transaction-response Bundle).
fn prefer(headers: &HeaderMap) -> Option<response::PreferReturn> {
    let asked = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|s| s.split([',', ';']).any(|p| p.trim().starts_with("return=")));
    asked.then(|| response::prefer_return(headers))
}

/// The OperationOutcome on the Patient's entry describing the de-duplication, if any.
fn dedup_outcome(m: &MatchedBy) -> Option<Value> {
    let issue = match m {
        MatchedBy::New => return None,
        MatchedBy::CardId => Issue {
            severity: "information",
            code: "informational",
            diagnostics: "the card id is already registered: its registration was updated".into(),
            expression: Some("cardId".into()),
        },
        MatchedBy::Demographics { card_id, .. } => Issue {
            severity: "warning",
            code: "duplicate",
            diagnostics: format!(
                "the patient is already registered under card id {} (certain match on name, birth date, sex and address): the registration was attached to it instead of creating a duplicate",
                card_id.as_str()
            ),
            expression: Some("cardId".into()),
        },
    };
    Some(operation_outcome(&[issue]))
}

/// The `transaction-response` Bundle of a registration.
fn response_bundle(base: &str, out: &RegisterOutcome) -> String {
    let mut w = BundleWriter::new("transaction-response", None, &[]);
    for e in &out.entries {
        let mut resp = match e.change {
            Change::Created => json!({"status": "201 Created"}),
            Change::Updated | Change::Unchanged => json!({"status": "200 OK"}),
            Change::Deleted => json!({"status": "204 No Content"}),
        };
        if e.change != Change::Deleted {
            if let Some(v) = e.version_id {
                resp["location"] = json!(format!("{}/{}/_history/{v}", e.resource_type, e.id));
                resp["etag"] = json!(response::etag(v));
            }
            if let Some(lu) = &e.last_updated {
                resp["lastModified"] = json!(lu);
            }
        }
        if e.resource_type == "Patient" && e.id == out.patient.id {
            if let Some(o) = dedup_outcome(&out.matched) {
                resp["outcome"] = o;
            }
        }
        w.entry(Entry {
            full_url: Some(format!("{base}/{}/{}", e.resource_type, e.id)),
            response: Some(resp),
            ..Entry::default()
        });
    }
    w.finish()
}

/// `POST /fhir/Patient/$register` — see the module docs for request, response and errors.
pub async fn register_http(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ctx: RequestContext,
    req_body: Body,
) -> ApiResult<Response> {
    body::check_format(&query_pairs(&q))?;
    body::require_json(&headers)?;
    let bytes = body::read_body(req_body, state.config.max_body_bytes).await?;
    let reg = parse_registration(&bytes)?;
    let out = register(&state, &ctx, reg).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let base = &state.config.base_url;
    let mut r = match prefer(&headers) {
        None => fhir_bytes(status, response_bundle(base, &out).into_bytes()),
        Some(response::PreferReturn::Representation) => {
            fhir_bytes(status, out.patient.json.clone().into_bytes())
        }
        Some(response::PreferReturn::Minimal) => {
            let mut r = ().into_response();
            *r.status_mut() = status;
            r
        }
        Some(response::PreferReturn::OperationOutcome) => {
            let (c, u, n, d) = out.counts();
            let mut issues = vec![Issue {
                severity: "information",
                code: "informational",
                diagnostics: format!(
                    "Patient/{}: {c} created, {u} updated, {n} unchanged, {d} deleted",
                    out.patient.id
                ),
                expression: None,
            }];
            if let Some(o) = dedup_outcome(&out.matched) {
                if let Some(i) = o["issue"].get(0) {
                    issues.push(Issue {
                        severity: if i["severity"] == "warning" {
                            "warning"
                        } else {
                            "information"
                        },
                        code: if i["code"] == "duplicate" {
                            "duplicate"
                        } else {
                            "informational"
                        },
                        diagnostics: i["diagnostics"].as_str().unwrap_or_default().to_string(),
                        expression: Some("cardId".into()),
                    });
                }
            }
            fhir_json(status, &operation_outcome(&issues))
        }
    };
    response::version_headers(&mut r, base, &out.patient, true);
    Ok(r)
}

// ---------------------------------------------------------------------------------------------------
// Receipt CSV

/// Counts and per-row problems of [`apply_receipt`].
#[derive(Debug, Clone, Default)]
pub struct ReceiptReport {
    /// Data rows read (valid or not).
    pub rows: usize,
    /// Rows added as main diagnoses.
    pub main_diagnoses: usize,
    /// Rows appended to the history text.
    pub history: usize,
    /// Rows added as prescriptions.
    pub prescriptions: usize,
    /// Rows already registered.
    pub duplicates: usize,
    /// Registrations written (patients whose registration changed).
    pub patients_updated: usize,
    /// Rejected rows (not applied), by row number.
    pub errors: Vec<RowError>,
    /// Applied rows with a remark (e.g. a drug code kept by name only).
    pub warnings: Vec<RowError>,
}

/// Finds the registered patient a row belongs to: by card id, else by kana name + birth date (exact
/// after [`fold_ja`], among registered patients). Errors (no values): no match, several matches.
async fn find_card(
    state: &AppState,
    ctx: &RequestContext,
    ids: &Ids,
    row: &ReceiptRow,
) -> Result<CardId, String> {
    if let Some(card) = &row.card_id {
        match read_opt(state, ctx, "Patient", &ids.patient(card)).await {
            Ok(Some(_)) => return Ok(card.clone()),
            Ok(None) if row.name_kana.is_none() || row.birth_date.is_none() => {
                return Err("no registered patient has this card_id (nothing created)".into())
            }
            Ok(None) => {}
            Err(_) => return Err("store failure while looking up the patient".into()),
        }
    }
    let (Some(kana), Some(birth)) = (&row.name_kana, &row.birth_date) else {
        return Err("needs card_id, or name_kana and birth_date".into());
    };
    let key = fold_ja(kana);
    let params = vec![
        ("birthdate".to_string(), birth.as_str().to_string()),
        ("identifier".to_string(), format!("{CARD_ID_SYSTEM}|")),
        ("_count".to_string(), "1000".to_string()),
    ];
    let q = crate::search::query::parse(&state.registry, "Patient", &params)
        .map_err(|_| "internal search error".to_string())?;
    let page = access::search(state, ctx, &q)
        .await
        .map_err(|_| "store failure while looking up the patient".to_string())?;
    let cards: Vec<CardId> = page
        .matches
        .iter()
        .filter_map(|r| {
            let v: Value = serde_json::from_str(&r.json).ok()?;
            Demographics::of(&v)
                .full_names
                .contains(&key)
                .then(|| managed_card(ids, &r.id, &v))
                .flatten()
        })
        .collect();
    let n = cards.len();
    match (n, cards.into_iter().next()) {
        (1, Some(card)) => Ok(card),
        (0, _) | (_, None) => {
            Err("no registered patient matches name_kana and birth_date (nothing created)".into())
        }
        (n, _) => Err(format!(
            "{n} registered patients match name_kana and birth_date; give card_id"
        )),
    }
}

/// Merges checked receipt rows into the existing registrations (see
/// [`crate::mapping::registration::receipt`]): rows are grouped by patient (found by card id, or by
/// kana name + birth date; none is ever created), merged into the stored registration, and each
/// changed registration is written with [`register`]'s core (one transaction per patient).
/// `import_date` is the item date of the new items. A row that cannot be applied is reported with its
/// row number and the rest goes on.
///
/// Errors: only a store failure that stops everything (500); per-row and per-patient problems are in
/// the report.
pub async fn apply_receipt(
    state: &AppState,
    ctx: &RequestContext,
    rows: Vec<ReceiptRow>,
    import_date: &DateTime,
) -> ApiResult<ReceiptReport> {
    let _guard = REGISTER_LOCK.lock().await;
    let ids = Ids::default();
    let mut report = ReceiptReport {
        rows: rows.len(),
        ..ReceiptReport::default()
    };
    let mut groups: Vec<(CardId, Vec<ReceiptRow>)> = Vec::new();
    for row in rows {
        match find_card(state, ctx, &ids, &row).await {
            Ok(card) => match groups.iter_mut().find(|(c, _)| *c == card) {
                Some((_, v)) => v.push(row),
                None => groups.push((card, vec![row])),
            },
            Err(message) => report.errors.push(RowError {
                row: row.row,
                message,
            }),
        }
    }
    for (card, rows) in groups {
        let row_numbers: Vec<usize> = rows.iter().map(|r| r.row).collect();
        let fail = |report: &mut ReceiptReport, msg: String| {
            for r in &row_numbers {
                report.errors.push(RowError {
                    row: *r,
                    message: msg.clone(),
                });
            }
        };
        let mut reg = match load_registration(state, ctx, &card).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                fail(&mut report, "the patient's registration disappeared".into());
                continue;
            }
            Err(e) => {
                fail(
                    &mut report,
                    format!("cannot read the stored registration: {}", first_diag(&e)),
                );
                continue;
            }
        };
        let mut counts = [0usize; 4];
        let mut warnings = Vec::new();
        for row in &rows {
            let m = receipt::merge(&mut reg, row, import_date);
            counts[m as usize] += 1;
            if m != Merged::Duplicate && matches!(row.code, Some(receipt::RowCode::ReceiptDrug(_)))
            {
                warnings.push(RowError {
                    row: row.row,
                    message: "レセ電 医薬品コード has no code system in the registration: the drug was kept by name".into(),
                });
            }
        }
        if counts[Merged::Duplicate as usize] == rows.len() {
            report.duplicates += rows.len();
            continue;
        }
        if let Err(errs) = reg.validate() {
            fail(
                &mut report,
                format!(
                    "the merged registration is invalid: {}",
                    errs.first().map(|e| e.to_string()).unwrap_or_default()
                ),
            );
            continue;
        }
        match register_locked(state, ctx, reg).await {
            Ok(_) => {
                report.main_diagnoses += counts[Merged::MainDiagnosis as usize];
                report.history += counts[Merged::History as usize];
                report.prescriptions += counts[Merged::Prescription as usize];
                report.duplicates += counts[Merged::Duplicate as usize];
                report.patients_updated += 1;
                report.warnings.extend(warnings);
            }
            Err(e) if e.status.is_server_error() => return Err(e),
            Err(e) => fail(
                &mut report,
                format!("the registration could not be written: {}", first_diag(&e)),
            ),
        }
    }
    report.errors.sort_by_key(|e| e.row);
    report.warnings.sort_by_key(|e| e.row);
    Ok(report)
}

fn first_diag(e: &ApiError) -> String {
    e.issues
        .first()
        .map(|i| i.diagnostics.clone())
        .unwrap_or_default()
}

/// Today's date in Japan (`YYYY-MM-DD`), the default item date of receipt imports (`None` only if the
/// clock is out of the FHIR date range).
pub fn today_jst() -> Option<DateTime> {
    let offset = time::UtcOffset::from_hms(9, 0, 0).ok()?;
    let now = time::OffsetDateTime::now_utc().to_offset(offset);
    DateTime::new(format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_paths() {
        assert_eq!(pointer_to_path(""), "$");
        assert_eq!(
            pointer_to_path("/mainDiagnoses/5/value"),
            "mainDiagnoses[5].value"
        );
        assert_eq!(
            pointer_to_path("/demographics/nameKana/value/family"),
            "demographics.nameKana.value.family"
        );
    }

    #[test]
    fn example_parses_and_errors_have_paths() {
        let ok = include_bytes!("../../../conformance/registration.example.json");
        assert!(parse_registration(ok).is_ok());
        let mut v: Value = serde_json::from_slice(ok).unwrap();
        v["demographics"]["birthDate"]["value"] = json!("1938/03/14");
        v["demographics"]["sex"]
            .as_object_mut()
            .unwrap()
            .remove("value");
        let e = parse_registration(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let paths: Vec<_> = e
            .issues
            .iter()
            .filter_map(|i| i.expression.clone())
            .collect();
        assert!(
            paths.iter().any(|p| p == "demographics.birthDate.value"),
            "{paths:?}"
        );
        assert!(
            paths.iter().any(|p| p == "demographics.sex.value"),
            "{paths:?}"
        );
        assert!(
            e.issues.iter().all(|i| !i.diagnostics.contains("1938")),
            "{:?}",
            e.issues
        );
    }
}
