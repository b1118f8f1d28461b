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

/// Builds the [`AuditRecord`] of one interaction by `principal` (`None`: authentication disabled) at
/// `recorded_ms` (epoch ms).
pub fn record(principal: Option<&Principal>, i: &Interaction, recorded_ms: i64) -> AuditRecord {
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
    let (type_code, subtype) = if i.emergency_override {
        ev.insert("type".into(), coding(DCM, TYPE_SECURITY_ALERT));
        (TYPE_SECURITY_ALERT, SUBTYPE_EMERGENCY_OVERRIDE.to_string())
    } else if i.authentication_failure {
        ev.insert("type".into(), coding(DCM, TYPE_USER_AUTHENTICATION));
        (TYPE_USER_AUTHENTICATION, SUBTYPE_LOGIN.to_string())
    } else {
        ev.insert("type".into(), coding(AUDIT_EVENT_TYPE, TYPE_REST));
        (TYPE_REST, i.code.clone())
    };
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
    let mut keys: Vec<String> = Vec::new();
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
            keys.push(p.subject.clone());
            if let Some(c) = &p.client_id {
                agents.push(json!({
                    "type": {"coding": [coding(DCM, "110153")]},
                    "who": {"identifier": {"value": c}},
                    "requestor": false
                }));
                keys.push(c.clone());
            }
            if let Some(f) = &p.facility {
                agents.push(json!({
                    "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PROV")]},
                    "who": {"reference": format!("Organization/{f}")},
                    "requestor": false
                }));
                keys.push(format!("Organization/{f}"));
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
    AuditRecord {
        json: canonical_json(&Value::Object(ev)),
        recorded_ms,
        type_code: type_code.to_string(),
        subtype: Some(subtype).filter(|s| !s.is_empty()),
        action: i.action.to_string(),
        outcome: outcome_of(i.status).to_string(),
        patients: i.patients.clone(),
        agents: keys,
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
        let v: &Value = &serde_json::from_str(&r.json).unwrap();
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
