//! Validation of FHIR R4 resources (FHIR R4 §2.26 "Validating resources", §3.1.0.4, OperationOutcome §2.36).
//!
//! Two layers, run in this order by [`validate`]:
//!
//! * [`schema`]: structural check against the official R4 JSON schema (patched at load for Japanese text,
//!   canonical primitive extensions and precise `resourceType` dispatch) — the fast first pass. When it
//!   fails, its issues are returned and the profile layer is skipped (the walk assumes well-formed JSON
//!   types).
//! * [`validator`]: StructureDefinition-driven validation against the base definition and every profile in
//!   `meta.profile` (or the ones asked for): cardinality, types and choice types, fixed and pattern values,
//!   slicing (value / pattern / type / profile / exists discriminators), extension URLs and contexts,
//!   required bindings to the ValueSets/CodeSystems loaded locally (unknown code systems are warnings),
//!   invariants (FHIRPath, via [`crate::fhirpath`]) of the profile and the base, references inside
//!   Bundles. Definitions come from the packages in `profiles/` ([`package`]): the official R4 core
//!   definitions, JP Core 1.1.2 (URL variant), JP-CLINS 1.5.2 and the gateway's own profiles.
//!
//! The output is a list of [`ValidationIssue`]s (severity, `issue-type` code, diagnostics, FHIRPath
//! `expression`), turned into an `OperationOutcome` by [`operation_outcome`].
//!
//! Where the profiles are: [`profiles_dir`] (`TOBIUME_PROFILES`, else `./profiles`, else the crate's own
//! `profiles/` at build time). The packages are loaded once per process ([`global`]) and each
//! StructureDefinition is compiled on first use ([`Validator::profile`]).

pub mod clins;
pub mod package;
pub mod profile;
pub mod schema;
pub mod terminology;
pub mod validator;

use std::path::PathBuf;
use std::sync::LazyLock;

use serde_json::{json, Value};

pub use schema::{check, SchemaIssue};
pub use validator::{Severity, ValidationIssue, Validator};

/// Where the conformance packages are read from: `$TOBIUME_PROFILES` if set, else `./profiles` if it
/// holds `fhir-r4/`, else `<crate>/profiles` (the source tree this binary was built from).
pub fn profiles_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TOBIUME_PROFILES") {
        return PathBuf::from(d);
    }
    let local = PathBuf::from("profiles");
    if local.join("fhir-r4").is_dir() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("profiles")
}

static GLOBAL: LazyLock<Result<Validator, String>> = LazyLock::new(|| Validator::load(&profiles_dir()));

/// The process-wide validator over [`profiles_dir`], loaded on first call (≈1 s in release: decompress and
/// index ≈50 MB of definitions; StructureDefinitions are compiled lazily).
///
/// Errors: the directory is missing or holds no FHIR R4 core definitions (a deployment defect).
pub fn global() -> Result<&'static Validator, String> {
    GLOBAL.as_ref().map_err(Clone::clone)
}

/// Load the process-wide validator and compile the definitions requests use most, on a background
/// thread, once per process (later calls return at once). Called by the server at start
/// (`AppState::new`), so that neither the ≈0.3 s package load nor the first compilations fall on a
/// request; a request that arrives earlier waits for the load ([`global`]) and compiles what it needs.
///
/// Errors are logged (the validator then reports a `fatal` issue per request, see [`validate`]).
pub fn warm_up_in_background() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new().name("validator-warm-up".into()).spawn(|| {
            let start = std::time::Instant::now();
            match global() {
                Ok(v) => {
                    let n = v.warm_up();
                    tracing::info!(definitions = v.packages().len(), compiled = n, ms = start.elapsed().as_millis() as u64, "profile validator ready");
                }
                Err(e) => tracing::error!(error = %e, "profile validator unavailable"),
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the validator warm-up thread; loading on first use");
        }
    });
}

/// Full validation of one resource (any type, Bundles included): the JSON-schema pass, then — if it
/// passed — the profile validator with `meta.profile` plus `profiles`.
///
/// Output: every issue found; the resource is valid when none is `error`/`fatal` ([`is_valid`]). Errors
/// of the setup (profiles not loadable) are one `fatal` issue. Never panics on input.
pub fn validate(resource: &Value, profiles: &[String]) -> Vec<ValidationIssue> {
    if let Err(issues) = schema::check(resource) {
        return issues
            .into_iter()
            .map(|i| ValidationIssue {
                severity: Severity::Error,
                code: "structure",
                diagnostics: i.message,
                expression: i.expression,
                profile: None,
            })
            .collect();
    }
    match global() {
        Ok(v) => v.validate(resource, profiles),
        Err(e) => vec![ValidationIssue {
            severity: Severity::Fatal,
            code: "exception",
            diagnostics: format!("profile validator unavailable: {e}"),
            expression: resource.get("resourceType").and_then(Value::as_str).unwrap_or("Resource").to_string(),
            profile: None,
        }],
    }
}

/// `true` if no issue is `error` or `fatal`.
pub fn is_valid(issues: &[ValidationIssue]) -> bool {
    !issues.iter().any(ValidationIssue::is_error)
}

/// The `OperationOutcome` for `issues` (FHIR R4 §2.36 / `$validate` §3.1.0.4.1 "the outcome"): one
/// `issue` per finding with `severity`, `code`, `diagnostics` (the profile URL appended when the rule came
/// from a profile), `expression` and `location`; an empty list becomes one `information` issue
/// "No issues detected during validation".
pub fn operation_outcome(issues: &[ValidationIssue]) -> Value {
    if issues.is_empty() {
        return json!({"resourceType": "OperationOutcome", "issue": [
            {"severity": "information", "code": "informational", "diagnostics": "No issues detected during validation"}
        ]});
    }
    let list: Vec<Value> = issues
        .iter()
        .map(|i| {
            let diag = match &i.profile {
                Some(p) => format!("{} [profile {p}]", i.diagnostics),
                None => i.diagnostics.clone(),
            };
            json!({"severity": i.severity.as_str(), "code": i.code, "diagnostics": diag,
                   "expression": [i.expression], "location": [i.expression]})
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": list})
}
