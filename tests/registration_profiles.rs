//! The Tobiume-net conformance resources in `profiles/tobiume/`: every CodeSystem / ValueSet equals what
//! the Rust choice lists produce (`TOBIUME_BLESS=1 cargo test --test registration_profiles` rewrites
//! them), every profile and extension the mapping uses has its StructureDefinition, and every file is
//! structurally valid FHIR R4.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tobiume_gateway::mapping::registration::{ext, profile, terminology, CANONICAL_BASE};
use tobiume_gateway::validation::schema;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/tobiume")
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn all_json() -> Vec<(PathBuf, Value)> {
    let mut v: Vec<_> = std::fs::read_dir(dir())
        .expect("profiles/tobiume exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let j = read(&p);
            (p, j)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn code_systems_and_value_sets_match_the_choice_lists() {
    let bless = std::env::var("TOBIUME_BLESS").is_ok_and(|v| v == "1");
    let mut expected: Vec<(String, Value)> = Vec::new();
    for cs in terminology::code_systems() {
        expected.push((
            format!("CodeSystem-{}.json", cs["id"].as_str().unwrap()),
            cs,
        ));
    }
    for vs in terminology::value_sets() {
        expected.push((format!("ValueSet-{}.json", vs["id"].as_str().unwrap()), vs));
    }
    for (name, want) in &expected {
        let path = dir().join(name);
        if bless {
            std::fs::create_dir_all(dir()).unwrap();
            std::fs::write(&path, serde_json::to_string_pretty(want).unwrap() + "\n").unwrap();
        }
        assert_eq!(
            &read(&path),
            want,
            "{name} differs from the Rust choice list (TOBIUME_BLESS=1 to rewrite)"
        );
    }
    // No stale CodeSystem / ValueSet files.
    for (path, j) in all_json() {
        let t = j["resourceType"].as_str().unwrap_or("");
        if t == "CodeSystem" || t == "ValueSet" {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            assert!(
                expected.iter().any(|(n, _)| *n == name),
                "stale file {name}"
            );
        }
    }
}

#[test]
fn every_profile_and_extension_has_a_structure_definition() {
    let sds: Vec<Value> = all_json()
        .into_iter()
        .map(|(_, j)| j)
        .filter(|j| j["resourceType"] == "StructureDefinition")
        .collect();
    for url in profile::ALL.iter().chain(ext::ALL) {
        let sd = sds
            .iter()
            .find(|s| s["url"] == *url)
            .unwrap_or_else(|| panic!("no StructureDefinition for {url}"));
        assert_eq!(sd["fhirVersion"], "4.0.1", "{url}");
        assert_eq!(sd["status"], "active", "{url}");
        assert_eq!(sd["derivation"], "constraint", "{url}");
        assert!(
            sd["baseDefinition"]
                .as_str()
                .is_some_and(|b| b.starts_with("http://")),
            "{url}"
        );
        assert!(
            sd["differential"]["element"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "{url}"
        );
        let kind = if ext::ALL.contains(url) {
            "complex-type"
        } else {
            "resource"
        };
        assert_eq!(sd["kind"], kind, "{url}");
    }
    for sd in &sds {
        let url = sd["url"].as_str().unwrap();
        assert!(
            url.starts_with(CANONICAL_BASE),
            "{url} is under the canonical base"
        );
        assert!(
            profile::ALL.contains(&url) || ext::ALL.contains(&url),
            "{url} is not used by the mapping"
        );
    }
}

#[test]
fn every_conformance_resource_is_valid_r4() {
    let files = all_json();
    assert!(
        files.len() >= 60,
        "expected all profiles, extensions, CodeSystems and ValueSets, found {}",
        files.len()
    );
    for (path, j) in files {
        if let Err(issues) = schema::check(&j) {
            panic!("{}: {issues:#?}", path.display());
        }
        let id = j["id"].as_str().unwrap();
        let t = j["resourceType"].as_str().unwrap();
        assert_eq!(
            path.file_name().unwrap().to_string_lossy(),
            format!("{t}-{id}.json")
        );
        assert!(
            j["url"].as_str().unwrap().ends_with(&format!("/{id}")),
            "{}",
            path.display()
        );
    }
}
