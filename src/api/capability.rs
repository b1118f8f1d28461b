//! The CapabilityStatement (`GET /fhir/metadata`, FHIR R4 §3.1.0.5 capabilities), generated from what the
//! router implements: every R4 resource type with the same interactions, the search parameters the
//! registry knows for each type, and the system-level interactions. Built once at start-up.

use serde_json::{json, Value};

use super::ApiConfig;
use crate::search::Registry;
use crate::validation::schema;

/// Instance/type interactions implemented for every resource type (`TypeRestfulInteraction`).
pub const TYPE_INTERACTIONS: &[&str] =
    &["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"];

/// System interactions implemented (`SystemRestfulInteraction`).
pub const SYSTEM_INTERACTIONS: &[&str] = &["transaction", "batch", "history-system"];

/// Search parameters served for every type (FHIR R4 `search.html#all`), with their definitions.
const COMMON_PARAMS: &[(&str, &str, &str)] = &[
    ("_id", "token", "http://hl7.org/fhir/SearchParameter/Resource-id"),
    ("_lastUpdated", "date", "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"),
];

/// `(code, type, definition)` of the search parameters available on `resource_type`: `_id`,
/// `_lastUpdated`, and every registry parameter applicable to the type.
pub fn search_params(registry: &Registry, resource_type: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> =
        COMMON_PARAMS.iter().map(|(c, t, d)| (c.to_string(), t.to_string(), d.to_string())).collect();
    for def in registry_params(registry, resource_type) {
        if !out.iter().any(|(c, _, _)| *c == def.0) {
            out.push(def);
        }
    }
    out
}

/// Registry parameters of one type (own, `DomainResource`, `Resource`), sorted by code.
fn registry_params(registry: &Registry, resource_type: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = registry
        .params_for(resource_type)
        .into_iter()
        .map(|p| (p.def.code.clone(), p.def.param_type.as_str().to_string(), p.def.url.clone()))
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// Operations the router implements (`src/api/mod.rs` routes): (resource type or `None` for system
/// level, operation name, canonical of its OperationDefinition). Kept next to the routes' handlers in
/// `api::operation`; `tests/api_rest.rs` checks that every listed operation answers.
pub const OPERATIONS: &[(Option<&str>, &str, &str)] = &[
    (None, "validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate"),
    (Some("Patient"), "match", "http://hl7.org/fhir/OperationDefinition/Patient-match"),
    (Some("Patient"), "register", "http://tobiume-gateway.local/fhir/OperationDefinition/Patient-register"),
    (Some("Patient"), "summary", "http://tobiume-gateway.local/fhir/OperationDefinition/Patient-summary"),
];

fn operations_for(scope: Option<&str>) -> Vec<Value> {
    OPERATIONS
        .iter()
        .filter(|(t, _, _)| *t == scope)
        .map(|(_, name, def)| json!({"name": name, "definition": def}))
        .collect()
}

/// The CapabilityStatement resource (R4 4.0.1, `kind = instance`, `format = json`), with the
/// operations of [`OPERATIONS`].
pub fn capability_statement(registry: &Registry, config: &ApiConfig) -> Value {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "2026-01-01T00:00:00Z".into());
    let resources: Vec<Value> = schema::resource_types()
        .iter()
        .map(|t| {
            let params: Vec<Value> = search_params(registry, t)
                .into_iter()
                .map(|(code, ty, def)| json!({"name": code, "definition": def, "type": ty}))
                .collect();
            json!({
                "type": t,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{t}"),
                "interaction": TYPE_INTERACTIONS.iter().map(|c| json!({"code": c})).collect::<Vec<_>>(),
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchInclude": ["*"],
                "searchRevInclude": ["*"],
                "searchParam": params,
                // `$validate` is implemented at type and instance level for every type.
                "operation": std::iter::once(json!({"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}))
                    .chain(operations_for(Some(t.as_str())))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut cs = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now,
        "publisher": "Tobiume-net",
        "kind": "instance",
        "software": {"name": config.software_name, "version": config.software_version},
        "implementation": {"description": "tobiume-gateway FHIR R4 (JP Core) endpoint", "url": config.base_url},
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Search result parameters: _count, _offset, _sort, _total, _summary (true|text|data|count|false), _elements, _include, _revinclude. Prefer: return=minimal|representation|OperationOutcome, handling=strict|lenient.",
            "resource": resources,
            "interaction": SYSTEM_INTERACTIONS.iter().map(|c| json!({"code": c})).collect::<Vec<_>>(),
            "searchParam": COMMON_PARAMS.iter().map(|(c, t, d)| json!({"name": c, "definition": d, "type": t})).collect::<Vec<_>>(),
            "operation": operations_for(None),
        }],
    });
    if let Some(security) = crate::auth::layer::capability_security(&config.auth) {
        cs["rest"][0]["security"] = security;
    }
    cs
}
