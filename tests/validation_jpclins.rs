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

#[test]
fn dump_all() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let t = std::time::Instant::now();
    validation::global().unwrap();
    eprintln!("load {:?}", t.elapsed());
    for f in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let t = std::time::Instant::now();
        let issues = validation::validate(&v, &[]);
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let errs = errors(&issues);
        let warns = issues.len() - errs.len();
        eprintln!("== {name}: {} errors {} warnings ({:?})", errs.len(), warns, t.elapsed());
        for e in issues.iter().filter(|i| !i.is_error()).take(if name.contains("Error") || name.contains("K.json") {10} else {0}) { eprintln!("   W {} @ {}", e.diagnostics, e.expression); }
        for e in errs.iter().take(12) {
            eprintln!("   E {e}");
        }
    }
}
