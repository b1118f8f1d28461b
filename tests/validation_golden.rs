//! Regression guard for the validator's exact output: every issue (severity, code, expression,
//! diagnostics, profile) for the JP-CLINS examples, the SS-MIX2 and registration mapper outputs and the
//! official R4 examples, compared with `tests/validation_golden.issues.txt`.
//!
//! The recorded file was produced by the validator *before* its performance rework (indexed element
//! children, cached invariant results, structural `ele-1`, …), so this test proves that the faster
//! validator reports exactly the same findings in the same order. JP-CLINS and mapper issues are
//! recorded in full; the 2,903 R4 examples as one line each (issue count and a SHA-256 prefix of the
//! issue list) to keep the file small.
//!
//! A deliberate change of the validator's findings regenerates the file with
//! `TOBIUME_UPDATE_GOLDEN=1 cargo test --test validation_golden` (review the diff before committing).
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tobiume_gateway::mapping::registration::{to_fhir, Ids, Registration};
use tobiume_gateway::mapping::ssmix2::convert::{convert_patient, ConvertOptions, FileStatus};
use tobiume_gateway::ssmix2::walk_patients;
use tobiume_gateway::validation::{self, ValidationIssue};

fn shared(p: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")).join(p)
}

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validation_golden.issues.txt")
}

fn line(i: &ValidationIssue) -> String {
    format!("{}\t{}\t{:?}\t{:?}\t{:?}", i.severity.as_str(), i.code, i.expression, i.diagnostics, i.profile)
}

fn json_files(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|f| {
            let v = serde_json::from_str::<Value>(&std::fs::read_to_string(&f).ok()?).ok()?;
            Some((f.file_name().unwrap().to_string_lossy().to_string(), v))
        })
        .collect()
}

fn mapper_resources() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for p in walk_patients(&shared("fixtures/ssmix2-real/999/901/9999013")) {
        for f in convert_patient(&p.expect("patient folder"), &ConvertOptions::default()) {
            if let FileStatus::Converted = f.status {
                out.extend(f.resources.into_iter().map(|r| ("ssmix2".to_string(), r)));
            }
        }
    }
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/registration.example.json")).unwrap();
    let reg: Registration = serde_json::from_str(&text).unwrap();
    out.extend(to_fhir(&reg, &Ids::default()).into_iter().map(|r| ("registration".to_string(), r)));
    out
}

/// The current validator's output in the golden file's format.
fn render() -> String {
    let v = validation::global().expect("profiles");
    let mut s = String::new();
    for (name, r) in json_files(&shared("standards/jp-clins/ExampleJson")) {
        // the full validation (schema pass first), as `$validate` runs it
        let _ = writeln!(s, "## jp-clins {name}");
        for i in validation::validate(&r, &[]) {
            let _ = writeln!(s, "{}", line(&i));
        }
    }
    for (src, r) in mapper_resources() {
        let _ = writeln!(s, "## {src} {}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""));
        for i in validation::validate(&r, &[]) {
            let _ = writeln!(s, "{}", line(&i));
        }
    }
    for (name, r) in json_files(&shared("standards/fhir-r4/examples")) {
        // profile validator only, like tests/validation_r4_examples.rs
        let issues = v.validate(&r, &[]);
        let mut h = Sha256::new();
        for i in &issues {
            h.update(line(i).as_bytes());
            h.update(b"\n");
        }
        let _ = writeln!(s, "## r4 {name} {} {}", issues.len(), &hex::encode(h.finalize())[..16]);
    }
    s
}

#[test]
fn validator_output_matches_the_recorded_issue_lists() {
    let now = render();
    if std::env::var_os("TOBIUME_UPDATE_GOLDEN").is_some() {
        std::fs::write(golden_path(), &now).unwrap();
        eprintln!("wrote {}", golden_path().display());
        return;
    }
    let want = std::fs::read_to_string(golden_path()).expect("golden file (TOBIUME_UPDATE_GOLDEN=1 creates it)");
    let (w, n): (Vec<&str>, Vec<&str>) = (want.lines().collect(), now.lines().collect());
    let mut diffs = Vec::new();
    // report the first differing lines with the section they belong to
    let mut section = "";
    for k in 0..w.len().max(n.len()) {
        let (a, b) = (w.get(k).copied().unwrap_or("<end>"), n.get(k).copied().unwrap_or("<end>"));
        if a.starts_with("## ") {
            section = a;
        }
        if a != b {
            diffs.push(format!("{section}\n  line {}:\n  - {a}\n  + {b}", k + 1));
            if diffs.len() >= 10 {
                break;
            }
        }
    }
    assert!(diffs.is_empty(), "validator output differs from the recorded one ({} vs {} lines):\n{}", w.len(), n.len(), diffs.join("\n"));
    assert!(w.len() > 3000, "the golden file covers every corpus");
}
