//! JP-CLINS 1.5.2 examples (`../shared/standards/jp-clins/ExampleJson/`) against their declared profiles.
use std::path::PathBuf;

use serde_json::Value;
use tobiume_gateway::validation::{self, ValidationIssue};

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/standards/jp-clins/ExampleJson")
}

fn errors(issues: &[ValidationIssue]) -> Vec<String> {
    issues.iter().filter(|i| i.is_error()).map(|i| format!("{} @ {}", i.diagnostics, i.expression)).collect()
}

/// The deliberately invalid examples and the issue that makes each invalid (JP-CLINS
/// `input/fsh/instances-error/*.fsh` descriptions).
///
/// `MedicationRequest-ErrorExample-JP-MedReq-PO-SID-28days`: the 一般名処方マスタ code `2124030F2ZZZ` does not
/// exist (correct `1124030F2ZZZ`). Detecting it needs the code system `MedicationGeneralOrderCode` (part of
/// jpfhir-terminology, not in the shared folder and not redistributable here), so locally it can only be
/// *flagged*: a warning that the required binding to `JP_MedicationCodeCommon_VS` was not checked, at the
/// exact element. It is the one ErrorExample this validator does not reject.
const ERROR_EXAMPLES: &[(&str, Option<(&str, &str)>)] = &[
    ("MedicationRequest-ErrorExample-JP-MedReq-ExtEye-Total1.json", Some(("needs-anyOfStandardCode-medication", "MedicationRequest"))),
    ("Observation-ErrorExample-ObsLabo-eGFR.json", Some(("needs-localCode-observation-laboresult", "Observation"))),
    ("MedicationRequest-ErrorExample-JP-MedReq-PO-SID-28days.json", None),
];

#[test]
fn examples_validate_against_declared_profiles_and_error_examples_are_rejected() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let (mut valid, mut rejected) = (0, 0);
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let issues = validation::validate(&v, &[]);
        let errs = errors(&issues);
        match ERROR_EXAMPLES.iter().find(|(n, _)| *n == name) {
            None => {
                assert!(errs.is_empty(), "{name} must be valid: {errs:#?}");
                valid += 1;
            }
            Some((_, Some((rule, at)))) => {
                assert!(issues.iter().any(|i| i.is_error() && i.diagnostics.starts_with(rule) && i.expression == *at), "{name}: expected {rule} @ {at}, got {errs:#?}");
                rejected += 1;
            }
            Some((_, None)) => {
                assert!(issues.iter().any(|i| !i.is_error()
                    && i.diagnostics.contains("JP_MedicationCodeCommon_VS")
                    && i.expression == "MedicationRequest.medicationCodeableConcept.coding[0].code"), "{name}: {issues:#?}");
            }
        }
    }
    eprintln!("JP-CLINS examples: {valid} valid, {rejected} error examples rejected, 1 flagged");
    assert_eq!(valid, 58);
    assert_eq!(rejected, 2);
}

#[test]
fn declared_profile_is_applied_and_errors_carry_expressions() {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(shared().join("Patient-Example-JP-Patient-eCS-MAKINO.json")).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("birthDate");
    v["gender"] = Value::String("male".into());
    let issues = validation::validate(&v, &[]);
    assert!(issues.iter().any(|i| i.is_error() && i.expression == "Patient.birthDate" && i.profile.as_deref().is_some_and(|p| p.ends_with("JP_Patient_eCS"))), "{issues:#?}");
    let oo = validation::operation_outcome(&issues);
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert!(oo["issue"].as_array().unwrap().iter().all(|i| i["expression"].is_array() && i["severity"].is_string() && i["code"].is_string()));
}
