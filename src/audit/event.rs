//! AuditEvent construction per IHE Basic Audit Log Patterns (BALP 1.1, federation-security.md §4.3) with
//! the OAuth mapping of the token claims: `iss`/`sub` → `agent[user].who.identifier`, `jti` →
//! `agent[user].policy`, `client_id` → `agent[client]`, `purpose_of_use` → `agent[user].purposeOfUse`,
//! the caller's facility → `agent[facility].who` (`Organization/<id>`), the patients → `entity` (type 1
//! Person, role 1 Patient), the request id → `entity` of BALP type `XrequestId`, a search → `entity.query`
//! (base64 of the query string).

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::auth::{Principal, Role};
use crate::store::audit::{canonical_json, AuditRecord};

/// `AuditEvent.type` of RESTful interactions.
pub const TYPE_REST: &str = "rest";
/// DICOM 110113 Security Alert (`AuditEvent.type` of a break-the-glass access).
pub const TYPE_SECURITY_ALERT: &str = "110113";
/// DICOM 110114 User Authentication (failed authentication).
pub const TYPE_USER_AUTHENTICATION: &str = "110114";
/// DICOM 110101 Audit Log Used (retention purge checkpoint).
pub const TYPE_AUDIT_LOG_USED: &str = "110101";
/// DICOM 110127 Emergency Override Started (subtype of a break-the-glass access).
pub const SUBTYPE_EMERGENCY_OVERRIDE: &str = "110127";
/// DICOM 110122 Login (subtype of a failed authentication).
pub const SUBTYPE_LOGIN: &str = "110122";

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const BALP: &str = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.";
/// `policy.uri`-like text marking a purge checkpoint (`entity.detail` types).
pub const DETAIL_PURGED_THROUGH: &str = "purgedThroughSeq";
/// Detail type holding the entry hash of the last purged record.
pub const DETAIL_PURGED_HASH: &str = "purgedThroughHash";

/// `AuditEvent.outcome` from an HTTP status: `0` success (< 400), `4` minor failure (4xx), `8` serious
/// failure (5xx).
pub fn outcome_of(status: u16) -> &'static str {
    match status {
        0..=399 => "0",
        400..=499 => "4",
        _ => "8",
    }
}

/// What happened, independent of who asked.
#[derive(Debug, Clone, Default)]
pub struct Interaction {
    /// FHIR restful-interaction code: `read`, `vread`, `search-type`, `search-system`, `history-instance`,
    /// `history-type`, `history-system`, `create`, `update`, `patch`, `delete`, `batch`, `transaction`,
    /// `operation`, `capabilities`.
    pub code: String,
    /// `C` `R` `U` `D` `E` (BALP: Query and operations are `E`).
    pub action: &'static str,
    /// HTTP status of the answer.
    pub status: u16,
    /// Why it failed (denials: the consent reason; failed authentication: the auth layer's reason).
    pub outcome_desc: Option<String>,
    /// Logical ids of the patients concerned.
    pub patients: Vec<String>,
    /// `Type/id` of the resources concerned (reads and writes; capped by the caller).
    pub resources: Vec<String>,
    /// The query string of a search or operation (recorded base64 as BALP asks).
    pub query: Option<String>,
    /// `X-Request-Id`.
    pub request_id: Option<String>,
    /// The break-the-glass override was used (type 110113, subtype 110127).
    pub emergency_override: bool,
    /// Failed authentication (type 110114, subtype 110122).
    pub authentication_failure: bool,
    /// The operation name for `operation` (e.g. `$summary`), kept in `entity.detail`.
    pub operation: Option<String>,
}

/// A Coding (system and code; displays are left out to keep every stored event small — the codes are
/// standard and `display` is optional).
fn coding(system: &str, code: &str) -> Value {
    json!({"system": system, "code": code})
}

fn role_text(r: Role) -> &'static str {
    match r {
        Role::Emergency => "emergency",
        Role::Secretariat => "secretariat",
    }
}

/// The full IHE BALP AuditEvent (without `id`) of one interaction by `principal` (`None`:
/// authentication disabled) at `recorded_ms` (epoch ms), and its index columns. This is the renderer of
/// the compact chain entries ([`render`]) and the builder of format-1 records ([`legacy_record`]).
fn balp_event(principal: Option<&Principal>, i: &Interaction, recorded_ms: i64) -> Value {
    let mut ev = Map::new();
    ev.insert("resourceType".into(), json!("AuditEvent"));
    let patient_centric = !i.patients.is_empty();
    let profile = match (i.action, patient_centric) {
        ("C", true) => "PatientCreate",
        ("C", false) => "Create",
        ("R", true) => "PatientRead",
        ("R", false) => "Read",
        ("U", true) => "PatientUpdate",
        ("U", false) => "Update",
        ("D", true) => "PatientDelete",
        ("D", false) => "Delete",
        (_, true) => "PatientQuery",
        (_, false) => "Query",
    };
    ev.insert("meta".into(), json!({"profile": [format!("{BALP}{profile}")]}));
    if i.emergency_override {
        ev.insert("type".into(), coding(DCM, TYPE_SECURITY_ALERT));
    } else if i.authentication_failure {
        ev.insert("type".into(), coding(DCM, TYPE_USER_AUTHENTICATION));
    } else {
        ev.insert("type".into(), coding(AUDIT_EVENT_TYPE, TYPE_REST));
    }
    let mut subtypes = Vec::new();
    if i.emergency_override {
        subtypes.push(coding(DCM, SUBTYPE_EMERGENCY_OVERRIDE));
    }
    if i.authentication_failure {
        subtypes.push(coding(DCM, SUBTYPE_LOGIN));
    }
    if !i.code.is_empty() {
        subtypes.push(json!({"system": RESTFUL_INTERACTION, "code": i.code}));
    }
    ev.insert("subtype".into(), Value::Array(subtypes));
    ev.insert("action".into(), json!(i.action));
    ev.insert("recorded".into(), json!(crate::store::audit::format_instant_ms(recorded_ms)));
    ev.insert("outcome".into(), json!(outcome_of(i.status)));
    let mut desc = format!("HTTP {}", i.status);
    if let Some(d) = &i.outcome_desc {
        desc.push_str(": ");
        desc.push_str(d);
    }
    ev.insert("outcomeDesc".into(), json!(desc));
    let purpose = principal.and_then(|p| p.purpose_of_use.clone());
    if let Some(p) = &purpose {
        ev.insert("purposeOfEvent".into(), json!([{"coding": [{"system": ACT_REASON, "code": p}]}]));
    }

    // agents
    let mut agents = Vec::new();
    match principal {
        Some(p) => {
            let mut user = Map::new();
            user.insert(
                "type".into(),
                json!({"coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP")]}),
            );
            if !p.roles.is_empty() {
                user.insert(
                    "role".into(),
                    Value::Array(p.roles.iter().map(|r| json!({"text": role_text(*r)})).collect()),
                );
            }
            user.insert("who".into(), json!({"identifier": {"system": p.issuer, "value": p.subject}}));
            user.insert("requestor".into(), json!(true));
            if let Some(j) = &p.token_id {
                user.insert("policy".into(), json!([j]));
            }
            if let Some(u) = &purpose {
                let mut pou = json!({"coding": [{"system": ACT_REASON, "code": u}]});
                if let Some(r) = p.reason.as_deref().filter(|r| !r.trim().is_empty()) {
                    pou["text"] = json!(r);
                }
                user.insert("purposeOfUse".into(), json!([pou]));
            }
            agents.push(Value::Object(user));
            if let Some(c) = &p.client_id {
                agents.push(json!({
                    "type": {"coding": [coding(DCM, "110153")]},
                    "who": {"identifier": {"value": c}},
                    "requestor": false
                }));
            }
            if let Some(f) = &p.facility {
                agents.push(json!({
                    "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PROV")]},
                    "who": {"reference": format!("Organization/{f}")},
                    "requestor": false
                }));
            }
        }
        None => agents.push(json!({
            "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP")]},
            "who": {"display": "unauthenticated (authentication disabled or failed)"},
            "requestor": true
        })),
    }
    agents.push(json!({
        "type": {"coding": [coding(DCM, "110152")]},
        "who": {"display": "tobiume-gateway"},
        "requestor": false
    }));
    ev.insert("agent".into(), Value::Array(agents));
    ev.insert(
        "source".into(),
        json!({"observer": {"display": "tobiume-gateway"},
               "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}]}),
    );

    // entities
    let mut entities = Vec::new();
    for p in &i.patients {
        entities.push(json!({
            "what": {"reference": format!("Patient/{p}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}
        }));
    }
    for r in &i.resources {
        if r.starts_with("Patient/") && i.patients.iter().any(|p| r[8..] == **p) {
            continue;
        }
        entities.push(json!({
            "what": {"reference": r},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4"}
        }));
    }
    if i.query.is_some() || i.operation.is_some() {
        let mut q = Map::new();
        q.insert(
            "type".into(),
            json!({"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"}),
        );
        q.insert("role".into(), json!({"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24"}));
        if let Some(qs) = &i.query {
            q.insert("query".into(), json!(base64::engine::general_purpose::STANDARD.encode(qs.as_bytes())));
        }
        if let Some(op) = &i.operation {
            q.insert("detail".into(), json!([{"type": "operation", "valueString": op}]));
        }
        entities.push(Value::Object(q));
    }
    if let Some(rid) = &i.request_id {
        entities.push(json!({
            "what": {"identifier": {"value": rid}},
            "type": {"system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType", "code": "XrequestId"}
        }));
    }
    if !entities.is_empty() {
        ev.insert("entity".into(), Value::Array(entities));
    }
    Value::Object(ev)
}

/// The format-1 record of an interaction: the full BALP AuditEvent in [`canonical_json`] form is what
/// the chain hashes (the format of every row written before migration-free format 2, and of retention
/// checkpoints). Kept so that tests can write old-format rows and compare the renderer against it;
/// the server appends [`record`]s.
pub fn legacy_record(principal: Option<&Principal>, i: &Interaction, recorded_ms: i64) -> AuditRecord {
    let ev = balp_event(principal, i, recorded_ms);
    let (type_code, subtype, agents) = index_of(principal, i);
    AuditRecord {
        json: canonical_json(&ev),
        recorded_ms,
        type_code: type_code.to_string(),
        subtype,
        action: i.action.to_string(),
        outcome: outcome_of(i.status).to_string(),
        patients: i.patients.clone(),
        agents,
    }
}

/// The indexed `(type, first subtype, agent keys)` of an interaction — the same values
/// [`derive_index`] reads back from the rendered BALP event.
fn index_of(principal: Option<&Principal>, i: &Interaction) -> (&'static str, Option<String>, Vec<String>) {
    let (type_code, subtype) = if i.emergency_override {
        (TYPE_SECURITY_ALERT, Some(SUBTYPE_EMERGENCY_OVERRIDE.to_string()))
    } else if i.authentication_failure {
        (TYPE_USER_AUTHENTICATION, Some(SUBTYPE_LOGIN.to_string()))
    } else {
        (TYPE_REST, Some(i.code.clone()).filter(|c| !c.is_empty()))
    };
    let mut keys = Vec::new();
    if let Some(p) = principal {
        keys.push(p.subject.clone());
        if let Some(c) = &p.client_id {
            keys.push(c.clone());
        }
        if let Some(f) = &p.facility {
            keys.push(format!("Organization/{f}"));
        }
    }
    (type_code, subtype, keys)
}

// ------------------------------------------------------------------------------------------------
// Format 2: the compact chain entry

/// Version of the compact chain entry (member `"v"`). Rows without it are format 1 (full BALP JSON).
pub const ENTRY_VERSION: u32 = 2;

/// Appends `s` as a JSON string literal (RFC 8259: `"` `\` and control characters escaped; everything
/// else, including non-ASCII, verbatim — the same text `serde_json` writes).
fn push_str_lit(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn push_key(out: &mut String, key: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
}

fn push_opt(out: &mut String, key: &str, v: Option<&str>) {
    if let Some(v) = v {
        push_key(out, key);
        push_str_lit(out, v);
    }
}

fn push_list(out: &mut String, key: &str, v: &[String]) {
    if v.is_empty() {
        return;
    }
    push_key(out, key);
    out.push('[');
    for (n, x) in v.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        push_str_lit(out, x);
    }
    out.push(']');
}

/// The compact chain entry (format 2) of one interaction: a JSON object written directly in its one
/// canonical form — members in this fixed order, absent when empty/false, strings escaped as
/// [`push_str_lit`], no whitespace:
///
/// `{"v":2,"t":<recorded epoch ms>,"code":<interaction>,"act":<C|R|U|D|E>,"st":<HTTP status>,`
/// `"desc":<denial reason>,"pat":[<patient ids>],"res":[<Type/id>],"q":<query string>,"rid":<X-Request-Id>,`
/// `"btg":true,"authfail":true,"op":<$operation>,`
/// `"who":{"iss":…,"sub":…,"client":…,"jti":…,"fac":<Organization id>,"roles":[…],"pou":<ActReason>,"reason":…}}`
///
/// (`who` absent: no authenticated caller). About 150–400 bytes; the chain hashes it with `"id"` put in
/// front ([`AuditRecord::finish`]); [`render`] turns it into the full BALP AuditEvent.
fn entry_text(principal: Option<&Principal>, i: &Interaction, recorded_ms: i64) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(192);
    let _ = write!(s, "{{\"v\":{ENTRY_VERSION},\"t\":{recorded_ms}");
    push_key(&mut s, "code");
    push_str_lit(&mut s, &i.code);
    push_key(&mut s, "act");
    push_str_lit(&mut s, i.action);
    let _ = write!(s, ",\"st\":{}", i.status);
    push_opt(&mut s, "desc", i.outcome_desc.as_deref());
    push_list(&mut s, "pat", &i.patients);
    push_list(&mut s, "res", &i.resources);
    push_opt(&mut s, "q", i.query.as_deref());
    push_opt(&mut s, "rid", i.request_id.as_deref());
    if i.emergency_override {
        s.push_str(",\"btg\":true");
    }
    if i.authentication_failure {
        s.push_str(",\"authfail\":true");
    }
    push_opt(&mut s, "op", i.operation.as_deref());
    if let Some(p) = principal {
        s.push_str(",\"who\":{\"iss\":");
        push_str_lit(&mut s, &p.issuer);
        push_key(&mut s, "sub");
        push_str_lit(&mut s, &p.subject);
        push_opt(&mut s, "client", p.client_id.as_deref());
        push_opt(&mut s, "jti", p.token_id.as_deref());
        push_opt(&mut s, "fac", p.facility.as_deref());
        if !p.roles.is_empty() {
            let roles: Vec<String> = p.roles.iter().map(|r| role_text(*r).to_string()).collect();
            push_list(&mut s, "roles", &roles);
        }
        push_opt(&mut s, "pou", p.purpose_of_use.as_deref());
        push_opt(&mut s, "reason", p.reason.as_deref());
        s.push('}');
    }
    s.push('}');
    s
}

/// Builds the [`AuditRecord`] of one interaction by `principal` (`None`: authentication disabled) at
/// `recorded_ms` (epoch ms): the compact format-2 entry ([`entry_text`]) and its index columns. No
/// JSON tree and no canonicalisation pass: the ~1.7 kB BALP event is rendered only when the trail is
/// read ([`render`]).
pub fn record(principal: Option<&Principal>, i: &Interaction, recorded_ms: i64) -> AuditRecord {
    let (type_code, subtype, agents) = index_of(principal, i);
    AuditRecord {
        json: entry_text(principal, i, recorded_ms),
        recorded_ms,
        type_code: type_code.to_string(),
        subtype,
        action: i.action.to_string(),
        outcome: outcome_of(i.status).to_string(),
        patients: i.patients.clone(),
        agents,
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    v: u32,
    t: i64,
    code: String,
    act: String,
    st: u16,
    #[serde(default)]
    desc: Option<String>,
    #[serde(default)]
    pat: Vec<String>,
    #[serde(default)]
    res: Vec<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    rid: Option<String>,
    #[serde(default)]
    btg: bool,
    #[serde(default)]
    authfail: bool,
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    who: Option<Who>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Who {
    iss: String,
    sub: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    fac: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    pou: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// A stored format-2 entry decoded back into what it was built from.
#[derive(Debug, Clone)]
pub struct DecodedEntry {
    /// The `id` member (the chain position as text).
    pub id: String,
    /// `recorded`, epoch ms.
    pub recorded_ms: i64,
    /// The caller (`None`: unauthenticated).
    pub principal: Option<Principal>,
    /// What happened.
    pub interaction: Interaction,
}

/// Whether a stored chain text is a format-2 compact entry (`{"id":"<seq>","v":…`); format-1 texts are
/// canonical AuditEvents, whose member after `id` is never `v`.
pub fn is_compact(stored: &str) -> bool {
    stored
        .strip_prefix("{\"id\":\"")
        .and_then(|rest| rest.find('"').map(|e| rest[e..].starts_with("\",\"v\":")))
        .unwrap_or(false)
}

/// Decodes a stored format-2 entry. Errors: a description of what is malformed (unknown version,
/// member, action or role; not JSON).
pub fn decode(stored: &str) -> Result<DecodedEntry, String> {
    let e: Entry = serde_json::from_str(stored).map_err(|e| format!("compact entry unreadable: {e}"))?;
    if e.v != ENTRY_VERSION {
        return Err(format!("unknown entry format version {}", e.v));
    }
    let action = match e.act.as_str() {
        "C" => "C",
        "R" => "R",
        "U" => "U",
        "D" => "D",
        "E" => "E",
        other => return Err(format!("unknown action {other:?}")),
    };
    let principal = match e.who {
        None => None,
        Some(w) => {
            let mut roles = std::collections::BTreeSet::new();
            for r in &w.roles {
                roles.insert(match r.as_str() {
                    "emergency" => Role::Emergency,
                    "secretariat" => Role::Secretariat,
                    other => return Err(format!("unknown role {other:?}")),
                });
            }
            Some(Principal {
                issuer: w.iss,
                subject: w.sub,
                client_id: w.client,
                token_id: w.jti,
                facility: w.fac,
                scopes: Vec::new(),
                patient: None,
                roles,
                purpose_of_use: w.pou,
                reason: w.reason,
            })
        }
    };
    Ok(DecodedEntry {
        id: e.id,
        recorded_ms: e.t,
        principal,
        interaction: Interaction {
            code: e.code,
            action,
            status: e.st,
            outcome_desc: e.desc,
            patients: e.pat,
            resources: e.res,
            query: e.q,
            request_id: e.rid,
            emergency_override: e.btg,
            authentication_failure: e.authfail,
            operation: e.op,
        },
    })
}

impl DecodedEntry {
    /// The index columns `(recorded_ms, type, subtype, action, outcome, patients, agents)` this entry
    /// was stored with (what `audit verify` compares with the row).
    pub fn index(&self) -> IndexColumns {
        let (t, st, agents) = index_of(self.principal.as_ref(), &self.interaction);
        (
            self.recorded_ms,
            t.to_string(),
            st,
            self.interaction.action.to_string(),
            outcome_of(self.interaction.status).to_string(),
            self.interaction.patients.clone(),
            agents,
        )
    }

    /// The full IHE BALP AuditEvent, `id` first then the canonical members — byte for byte what format 1
    /// stored for the same interaction.
    pub fn render(&self) -> String {
        let ev = balp_event(self.principal.as_ref(), &self.interaction, self.recorded_ms);
        let body = canonical_json(&ev);
        let rest = body.strip_prefix('{').unwrap_or(&body);
        let sep = if rest.starts_with('}') { "" } else { "," };
        let mut out = String::with_capacity(body.len() + self.id.len() + 10);
        out.push_str("{\"id\":");
        push_str_lit(&mut out, &self.id);
        out.push_str(sep);
        out.push_str(rest);
        out
    }
}

/// The AuditEvent JSON of a stored chain text: format 1 as stored, format 2 rendered ([`DecodedEntry::render`]).
/// A malformed compact entry (only by tampering, which `audit verify` names) is returned as stored.
pub fn render(stored: &str) -> String {
    if !is_compact(stored) {
        return stored.to_string();
    }
    match decode(stored) {
        Ok(d) => d.render(),
        Err(_) => stored.to_string(),
    }
}

/// The checkpoint record of a retention purge: rows `..= through` (last entry hash `hash`, `count` rows)
/// were deleted under the retention policy of `retention_days`.
pub fn purge_checkpoint(through: i64, hash: &str, count: u64, retention_days: u32, recorded_ms: i64) -> AuditRecord {
    let ev = json!({
        "resourceType": "AuditEvent",
        "type": coding(DCM, TYPE_AUDIT_LOG_USED),
        "subtype": [{"system": RESTFUL_INTERACTION, "code": "delete"}],
        "action": "D",
        "recorded": crate::store::audit::format_instant_ms(recorded_ms),
        "outcome": "0",
        "outcomeDesc": format!("retention purge: {count} audit records older than {retention_days} days deleted"),
        "agent": [{
            "type": {"coding": [coding(DCM, "110150")]},
            "who": {"display": "tobiume-gateway audit retention"},
            "requestor": true
        }],
        "source": {"observer": {"display": "tobiume-gateway"}},
        "entity": [{
            "what": {"display": "audit trail"},
            "detail": [
                {"type": DETAIL_PURGED_THROUGH, "valueString": through.to_string()},
                {"type": DETAIL_PURGED_HASH, "valueString": hash}
            ]
        }]
    });
    AuditRecord {
        json: canonical_json(&ev),
        recorded_ms,
        type_code: TYPE_AUDIT_LOG_USED.into(),
        subtype: Some("delete".into()),
        action: "D".into(),
        outcome: "0".into(),
        patients: Vec::new(),
        agents: Vec::new(),
    }
}

/// The indexed columns of a stored AuditEvent: `(recorded_ms, type, subtype, action, outcome, patients,
/// agents)`.
pub type IndexColumns = (i64, String, Option<String>, String, String, Vec<String>, Vec<String>);

/// The indexed columns of a stored AuditEvent, re-derived from its JSON (what `audit verify` compares
/// with the row).
pub fn derive_index(v: &Value) -> Option<IndexColumns> {
    let recorded = v.get("recorded").and_then(Value::as_str)?;
    let recorded = time::OffsetDateTime::parse(recorded, &time::format_description::well_known::Rfc3339).ok()?;
    let recorded_ms = (recorded.unix_timestamp_nanos() / 1_000_000) as i64;
    let type_code = v.pointer("/type/code").and_then(Value::as_str)?.to_string();
    let subtypes = v.get("subtype").and_then(Value::as_array);
    let subtype = subtypes.and_then(|a| a.first()).and_then(|c| c.get("code")).and_then(Value::as_str).map(str::to_string);
    let action = v.get("action").and_then(Value::as_str)?.to_string();
    let outcome = v.get("outcome").and_then(Value::as_str)?.to_string();
    let mut patients = Vec::new();
    for e in v.get("entity").and_then(Value::as_array).into_iter().flatten() {
        let is_patient = e.pointer("/role/code").and_then(Value::as_str) == Some("1");
        if let (true, Some(r)) = (is_patient, e.pointer("/what/reference").and_then(Value::as_str)) {
            if let Some(id) = r.strip_prefix("Patient/") {
                patients.push(id.to_string());
            }
        }
    }
    let mut agents = Vec::new();
    for a in v.get("agent").and_then(Value::as_array).into_iter().flatten() {
        if a.pointer("/type/coding/0/code").and_then(Value::as_str) == Some("110152") {
            continue;
        }
        if let Some(r) = a.pointer("/who/reference").and_then(Value::as_str) {
            agents.push(r.to_string());
        } else if let Some(id) = a.pointer("/who/identifier/value").and_then(Value::as_str) {
            agents.push(id.to_string());
        }
    }
    Some((recorded_ms, type_code, subtype, action, outcome, patients, agents))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn principal() -> Principal {
        Principal {
            issuer: "https://idp.example".into(),
            subject: "dr-a".into(),
            client_id: Some("viewer-app".into()),
            token_id: Some("jti-1".into()),
            facility: Some("clinic-1".into()),
            scopes: vec![],
            patient: None,
            roles: BTreeSet::from([Role::Emergency]),
            purpose_of_use: Some("ETREAT".into()),
            reason: Some("unconscious on arrival".into()),
        }
    }

    /// Request shapes that exercise every branch of the BALP builder.
    fn shapes() -> Vec<(Option<Principal>, Interaction)> {
        let full = principal();
        let mut bare = principal();
        bare.client_id = None;
        bare.token_id = None;
        bare.facility = None;
        bare.roles = BTreeSet::new();
        bare.purpose_of_use = None;
        bare.reason = None;
        let mut secretariat = principal();
        secretariat.roles = BTreeSet::from([Role::Secretariat, Role::Emergency]);
        secretariat.reason = Some("  ".into());
        secretariat.subject = "user with space \"quoted\" \\ 日本\u{1}\n".into();
        let read = Interaction {
            code: "read".into(),
            action: "R",
            status: 200,
            patients: vec!["p1".into()],
            resources: vec!["Patient/p1".into(), "Observation/o1".into()],
            request_id: Some("0b5f1c1e-rid".into()),
            ..Default::default()
        };
        let search = Interaction {
            code: "search-type".into(),
            action: "E",
            status: 200,
            patients: vec!["p1".into(), "p2".into()],
            query: Some("name=カンジャ&birthdate=1948-04-05".into()),
            request_id: Some("r2".into()),
            ..Default::default()
        };
        let denied = Interaction {
            code: "read".into(),
            action: "R",
            status: 403,
            outcome_desc: Some("no consent for Organization/x \"quoted\"".into()),
            patients: vec!["p2".into()],
            resources: vec!["Patient/p2".into()],
            ..Default::default()
        };
        let auth_failed = Interaction {
            code: "read".into(),
            action: "R",
            status: 401,
            outcome_desc: Some("token expired".into()),
            authentication_failure: true,
            ..Default::default()
        };
        let btg = Interaction {
            code: "operation".into(),
            action: "E",
            status: 200,
            patients: vec!["p1".into()],
            query: Some("mode=emergency".into()),
            request_id: Some("req-9".into()),
            emergency_override: true,
            operation: Some("$summary".into()),
            ..Default::default()
        };
        let create = Interaction { code: "create".into(), action: "C", status: 201, resources: vec!["Organization/o".into()], ..Default::default() };
        let update = Interaction { code: "update".into(), action: "U", status: 200, patients: vec!["p1".into()], resources: vec!["Patient/p1".into()], ..Default::default() };
        let delete = Interaction { code: "delete".into(), action: "D", status: 500, ..Default::default() };
        let unmatched = Interaction { code: String::new(), action: "E", status: 404, ..Default::default() };
        let both = Interaction { authentication_failure: true, ..btg.clone() };
        let mut out = Vec::new();
        for p in [None, Some(full), Some(bare), Some(secretariat)] {
            for i in [&read, &search, &denied, &auth_failed, &btg, &create, &update, &delete, &unmatched, &both] {
                out.push((p.clone(), i.clone()));
            }
        }
        out
    }

    #[test]
    fn compact_entry_renders_exactly_the_format_1_event() {
        for (n, (p, i)) in shapes().into_iter().enumerate() {
            let seq = 1000 + n as i64;
            let ms = 1_700_000_000_123 + n as i64;
            let new = record(p.as_ref(), &i, ms);
            let old = legacy_record(p.as_ref(), &i, ms);
            let stored = new.finish(seq);
            assert!(is_compact(&stored), "{stored}");
            assert!(!is_compact(&old.finish(seq)));
            // the compact text is valid JSON and much smaller than the event
            let _: Value = serde_json::from_str(&stored).unwrap();
            assert!(stored.len() * 2 < old.json.len(), "{} vs {}", stored.len(), old.json.len());
            // rendering gives the format-1 text byte for byte: every BALP element, same order
            assert_eq!(render(&stored), old.finish(seq), "shape {n}");
            // format-1 text renders as itself
            assert_eq!(render(&old.finish(seq)), old.finish(seq));
            // the index columns of both formats agree with each other and with the record
            let d = decode(&stored).unwrap();
            let ix = d.index();
            let v: Value = serde_json::from_str(&old.finish(seq)).unwrap();
            assert_eq!(Some(ix.clone()), derive_index(&v), "shape {n}");
            assert_eq!(
                ix,
                (ms, new.type_code.clone(), new.subtype.clone(), new.action.clone(), new.outcome.clone(), new.patients.clone(), new.agents.clone())
            );
            assert_eq!(
                (old.type_code, old.subtype, old.action, old.outcome, old.patients, old.agents),
                (new.type_code, new.subtype, new.action, new.outcome, new.patients, new.agents)
            );
        }
    }

    #[test]
    fn malformed_compact_entries_are_refused_by_decode() {
        let r = record(Some(&principal()), &shapes()[10].1, 5).finish(3);
        assert!(decode(&r).is_ok());
        for bad in [
            r.replace("\"v\":2", "\"v\":9"),
            r.replace("\"act\":\"R\"", "\"act\":\"X\""),
            r.replace("\"roles\":[\"emergency\"]", "\"roles\":[\"root\"]"),
            r.replace("\"st\":200", "\"st\":200,\"extra\":1"),
            r.replace("\"t\":5", "\"t\":\"5\""),
            r[..r.len() - 1].to_string(),
        ] {
            assert_ne!(bad, r);
            assert!(decode(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn balp_mapping_of_the_token_and_derivation_roundtrip() {
        let i = Interaction {
            code: "operation".into(),
            action: "E",
            status: 200,
            patients: vec!["p1".into()],
            query: Some("mode=emergency".into()),
            request_id: Some("req-9".into()),
            emergency_override: true,
            operation: Some("$summary".into()),
            ..Default::default()
        };
        let r = record(Some(&principal()), &i, 1_700_000_000_000);
        let v: &Value = &serde_json::from_str(&render(&r.finish(7))).unwrap();
        assert_eq!(v["id"], "7");
        assert_eq!(v["type"]["code"], "110113");
        assert_eq!(v["subtype"][0]["code"], "110127");
        assert_eq!(v["agent"][0]["who"]["identifier"]["value"], "dr-a");
        assert_eq!(v["agent"][0]["policy"][0], "jti-1");
        assert_eq!(v["agent"][0]["purposeOfUse"][0]["coding"][0]["code"], "ETREAT");
        assert_eq!(v["agent"][0]["purposeOfUse"][0]["text"], "unconscious on arrival");
        assert_eq!(v["agent"][1]["who"]["identifier"]["value"], "viewer-app");
        assert_eq!(v["agent"][2]["who"]["reference"], "Organization/clinic-1");
        assert_eq!(v["entity"][0]["what"]["reference"], "Patient/p1");
        assert_eq!(v["entity"][1]["query"], "bW9kZT1lbWVyZ2VuY3k=");
        assert_eq!(v["entity"][2]["what"]["identifier"]["value"], "req-9");
        let d = derive_index(v).unwrap();
        assert_eq!(d.0, r.recorded_ms);
        assert_eq!((d.1.as_str(), d.2.as_deref(), d.3.as_str(), d.4.as_str()), ("110113", Some("110127"), "E", "0"));
        assert_eq!(d.5, r.patients);
        assert_eq!(d.6, r.agents);
        assert_eq!(r.agents, vec!["dr-a", "viewer-app", "Organization/clinic-1"]);
    }
}
