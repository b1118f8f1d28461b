//! An OpenAPI 3.0 description of the FHIR REST API, generated from the same sources as the
//! CapabilityStatement (the router's interactions, [`super::capability::OPERATIONS`] and the search
//! parameters of the registry), for API tooling and for the bad-input run (`tests/bad_input.rs`,
//! schemathesis). Printed by `tobiume-gateway openapi`.
//!
//! Shape: one generic set of paths with a `{type}` path parameter (an enum of every R4 resource type),
//! and typed paths with their search parameters as query parameters for the resource types an EHR
//! queries most ([`TYPED`]). Request bodies are FHIR JSON (`application/fhir+json`): an object with a
//! string `resourceType`; the server's own validation decides the rest. Every operation declares the
//! status codes the server answers with (FHIR R4 §3.1.0 and the security layer), all errors being
//! `OperationOutcome`s.

use serde_json::{json, Map, Value};

use super::capability::search_params;
use crate::search::Registry;
use crate::validation::schema;

/// Resource types described with their own paths and search parameters.
pub const TYPED: &[&str] =
    &["Patient", "Observation", "Condition", "AllergyIntolerance", "MedicationRequest", "Encounter", "Consent"];

/// Result parameters of search (FHIR R4 §3.1.1.5 / search.html#return) accepted on every type.
const RESULT_PARAMS: &[(&str, &str)] = &[
    ("_count", "integer"),
    ("_sort", "string"),
    ("_include", "string"),
    ("_revinclude", "string"),
    ("_summary", "string"),
    ("_elements", "string"),
    ("_total", "string"),
];

fn fhir_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/fhir+json": {"schema": schema}}})
}

fn resource_schema() -> Value {
    json!({"type": "object", "required": ["resourceType"], "properties": {
        "resourceType": {"type": "string"}, "id": {"type": "string"}, "meta": {"type": "object"}}})
}

fn responses(codes: &[u16]) -> Value {
    let mut m = Map::new();
    for c in codes {
        let desc = match c {
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            400 => "Bad Request (OperationOutcome)",
            401 => "Unauthorized: missing or invalid access token (OperationOutcome)",
            403 => "Forbidden: scope, consent or facility (OperationOutcome)",
            404 => "Not Found (OperationOutcome)",
            405 => "Method Not Allowed (OperationOutcome)",
            409 => "Conflict (OperationOutcome)",
            410 => "Gone: deleted (OperationOutcome)",
            412 => "Precondition Failed: version conflict or multiple matches (OperationOutcome)",
            413 => "Payload Too Large (OperationOutcome)",
            415 => "Unsupported Media Type (OperationOutcome)",
            422 => "Unprocessable Entity: invalid resource (OperationOutcome)",
            _ => "response",
        };
        m.insert(c.to_string(), json!({"description": desc, "content": {"application/fhir+json": {"schema": {"type": "object"}}}}));
    }
    Value::Object(m)
}

fn path_param(name: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

fn query_param(name: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": {"type": ty}})
}

fn header_param(name: &str) -> Value {
    json!({"name": name, "in": "header", "required": false, "schema": {"type": "string"}})
}

const READ: &[u16] = &[200, 400, 401, 403, 404, 410];
const WRITE: &[u16] = &[200, 201, 400, 401, 403, 404, 405, 409, 412, 413, 415, 422];

/// The OpenAPI 3.0.3 document (JSON) for a server whose FHIR base URL is `base_url`.
pub fn openapi(registry: &Registry, base_url: &str) -> Value {
    let id = json!({"type": "string", "pattern": "^[A-Za-z0-9\\-\\.]{1,64}$"});
    let types: Vec<&str> = schema::resource_types().iter().map(|s| s.as_ref()).collect();
    let type_schema = json!({"type": "string", "enum": types});
    let mut paths = Map::new();

    // Instance / type / system interactions, generic over the resource type (and typed copies).
    let mut add_type_paths = |prefix: String, type_param: Option<Value>, search: Vec<Value>| {
        let tp: Vec<Value> = type_param.iter().cloned().collect();
        let with = |extra: Vec<Value>| -> Value { Value::Array(tp.iter().cloned().chain(extra).collect()) };
        paths.insert(
            prefix.clone(),
            json!({
                "get": {"summary": "search-type", "parameters": with(search.clone()), "responses": responses(READ)},
                "post": {"summary": "create (If-None-Exist: conditional create)",
                         "parameters": with(vec![header_param("If-None-Exist"), header_param("Prefer")]),
                         "requestBody": fhir_body(resource_schema()), "responses": responses(WRITE)},
                "put": {"summary": "conditional update", "parameters": with(search.clone()),
                        "requestBody": fhir_body(resource_schema()), "responses": responses(WRITE)},
                "delete": {"summary": "conditional delete", "parameters": with(search.clone()), "responses": responses(WRITE)},
            }),
        );
        paths.insert(
            format!("{prefix}/_search"),
            json!({"post": {"summary": "search-type (form body)", "parameters": with(vec![]),
                "requestBody": {"required": false, "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object",
                    "additionalProperties": {"type": "string"}}}}},
                "responses": responses(READ)}}),
        );
        paths.insert(
            format!("{prefix}/_history"),
            json!({"get": {"summary": "history-type", "parameters": with(vec![query_param("_count", "integer"), query_param("_since", "string")]),
                "responses": responses(READ)}}),
        );
        paths.insert(
            format!("{prefix}/{{id}}"),
            json!({
                "get": {"summary": "read", "parameters": with(vec![path_param("id", id.clone())]), "responses": responses(READ)},
                "put": {"summary": "update", "parameters": with(vec![path_param("id", id.clone()), header_param("If-Match"), header_param("Prefer")]),
                        "requestBody": fhir_body(resource_schema()), "responses": responses(WRITE)},
                "patch": {"summary": "patch (JSON Patch)", "parameters": with(vec![path_param("id", id.clone()), header_param("If-Match")]),
                          "requestBody": {"required": true, "content": {"application/json-patch+json": {"schema": {"type": "array",
                              "items": {"type": "object", "required": ["op", "path"], "properties": {"op": {"type": "string"},
                              "path": {"type": "string"}, "value": {}, "from": {"type": "string"}}}}}}},
                          "responses": responses(WRITE)},
                "delete": {"summary": "delete", "parameters": with(vec![path_param("id", id.clone())]), "responses": responses(WRITE)},
            }),
        );
        paths.insert(
            format!("{prefix}/{{id}}/_history"),
            json!({"get": {"summary": "history-instance", "parameters": with(vec![path_param("id", id.clone()), query_param("_count", "integer")]),
                "responses": responses(READ)}}),
        );
        paths.insert(
            format!("{prefix}/{{id}}/_history/{{vid}}"),
            json!({"get": {"summary": "vread", "parameters": with(vec![path_param("id", id.clone()),
                path_param("vid", json!({"type": "string"}))]), "responses": responses(READ)}}),
        );
        paths.insert(
            format!("{prefix}/$validate"),
            json!({"post": {"summary": "$validate (type level)", "parameters": with(vec![query_param("profile", "string")]),
                "requestBody": fhir_body(resource_schema()), "responses": responses(&[200, 400, 401, 403, 413, 415, 422])}}),
        );
    };
    let result: Vec<Value> = RESULT_PARAMS.iter().map(|(n, t)| query_param(n, t)).collect();
    add_type_paths(
        "/{type}".into(),
        Some(json!({"name": "type", "in": "path", "required": true, "schema": type_schema})),
        result.iter().cloned().chain([query_param("_id", "string"), query_param("_lastUpdated", "string")]).collect(),
    );
    for t in TYPED {
        let params: Vec<Value> = search_params(registry, t)
            .into_iter()
            .map(|(code, ty, _)| query_param(&code, if ty == "number" { "number" } else { "string" }))
            .chain(result.iter().cloned())
            .collect();
        add_type_paths(format!("/{t}"), None, params);
    }

    paths.insert(
        "/metadata".into(),
        json!({"get": {"summary": "capabilities", "security": [], "responses": responses(&[200])}}),
    );
    paths.insert(
        "/".into(),
        json!({"post": {"summary": "batch / transaction", "requestBody": fhir_body(json!({"type": "object",
            "required": ["resourceType", "type"], "properties": {"resourceType": {"type": "string", "enum": ["Bundle"]},
            "type": {"type": "string", "enum": ["batch", "transaction"]}, "entry": {"type": "array", "items": {"type": "object"}}}})),
            "responses": responses(WRITE)}}),
    );
    paths.insert(
        "/_history".into(),
        json!({"get": {"summary": "history-system", "parameters": [query_param("_count", "integer"), query_param("_since", "string")],
            "responses": responses(READ)}}),
    );
    paths.insert(
        "/$validate".into(),
        json!({"post": {"summary": "$validate (system level)", "requestBody": fhir_body(resource_schema()),
            "responses": responses(&[200, 400, 401, 403, 413, 415, 422])}}),
    );
    paths.insert(
        "/Patient/$register".into(),
        json!({"post": {"summary": "register a Tobiume-net patient from the registration JSON (conformance/registration.schema.json)",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": responses(&[200, 201, 400, 401, 403, 409, 413, 415, 422])}}),
    );
    paths.insert(
        "/Patient/$match".into(),
        json!({"post": {"summary": "$match (IHE PDQm ITI-119)", "requestBody": fhir_body(json!({"type": "object",
            "required": ["resourceType"], "properties": {"resourceType": {"type": "string", "enum": ["Parameters", "Patient"]},
            "parameter": {"type": "array", "items": {"type": "object"}}}})),
            "responses": responses(&[200, 400, 401, 403, 413, 415, 422])}}),
    );
    let mode = json!({"name": "mode", "in": "query", "required": false,
        "schema": {"type": "string", "enum": ["emergency", "multidisciplinary"]}});
    paths.insert(
        "/Patient/$summary".into(),
        json!({"get": {"summary": "patient summary by identifier", "parameters": [mode.clone(), query_param("identifier", "string")],
            "responses": responses(READ)}}),
    );
    paths.insert(
        "/Patient/{id}/$summary".into(),
        json!({"get": {"summary": "patient summary (emergency / multi-disciplinary document Bundle)",
            "parameters": [path_param("id", id.clone()), mode], "responses": responses(READ)}}),
    );

    json!({
        "openapi": "3.0.3",
        "info": {"title": "tobiume-gateway FHIR R4 API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "FHIR R4 (4.0.1) RESTful API with JP Core 1.1.2 profiles; generated from the router. \
                                 All errors are OperationOutcome resources. See GET /metadata for the CapabilityStatement."},
        "servers": [{"url": base_url}],
        "components": {"securitySchemes": {"smart": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "SMART on FHIR access token (see /.well-known/smart-configuration)"}}},
        "security": [{"smart": []}],
        "paths": Value::Object(paths),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_every_route_family_and_search_parameters() {
        let doc = openapi(&Registry::standard(), "http://localhost:8080/fhir");
        let paths = doc["paths"].as_object().unwrap();
        for p in ["/{type}", "/{type}/{id}", "/{type}/{id}/_history/{vid}", "/Patient/{id}/$summary", "/", "/metadata"] {
            assert!(paths.contains_key(p), "{p}");
        }
        let names: Vec<&str> = paths["/Patient"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"birthdate") && names.contains(&"name") && names.contains(&"identifier"), "{names:?}");
        let types = paths["/{type}"]["get"]["parameters"][0]["schema"]["enum"].as_array().unwrap();
        assert!(types.len() > 140 && types.iter().any(|t| t == "Observation"));
    }
}
