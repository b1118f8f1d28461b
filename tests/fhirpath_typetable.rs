//! Keeps `src/fhirpath/fhir_types.txt` (the compact FHIR R4 element-type table embedded in the
//! FHIRPath engine) in sync with the R4 definitions in `../shared/standards/fhir-r4/`.
//!
//! `cargo test --test fhirpath_typetable` checks the embedded table equals what the generator
//! derives from `profiles-types.json` + `profiles-resources.json`; with
//! `FHIRPATH_REGEN_TYPES=1` it rewrites the file instead. Without the shared standards directory
//! the test is a no-op (prints why).
//!
//! Format (one line per type, then one line per type / backbone element that has own elements):
//! * `T <name> <parent|-> <p|c|r>` — a type with its base type and kind (primitive, complex,
//!   resource);
//! * `E <ctx> <elem>:<types> …` — the own elements of a type or backbone path. `<types>` is a
//!   comma list of type codes (several for a choice `value[x]`, written `value[x]`), `=<parent>`
//!   for an inline backbone element (its children are under `<ctx>.<elem>`, its own base type is
//!   `<parent>`), or `#<path>` for a content reference.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn type_code(t: &Value, base_path: &str) -> String {
    let code = t["code"].as_str().unwrap_or("");
    if let Some(sys) = code.strip_prefix("http://hl7.org/fhirpath/System.") {
        if base_path == "Resource.id" {
            return "id".into();
        }
        let fhir = t["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e["url"] == "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
            })
            .and_then(|e| e["valueUrl"].as_str().or(e["valueUri"].as_str()));
        return fhir
            .map(str::to_string)
            .unwrap_or_else(|| sys.to_lowercase());
    }
    code.to_string()
}

fn generate(dir: &std::path::Path) -> String {
    let mut types: BTreeMap<String, (String, char)> = BTreeMap::new();
    let mut elems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in ["profiles-types.json", "profiles-resources.json"] {
        let b: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        for e in b["entry"].as_array().unwrap() {
            let r = &e["resource"];
            if r["resourceType"] != "StructureDefinition" {
                continue;
            }
            let kind = match r["kind"].as_str() {
                Some("primitive-type") => 'p',
                Some("complex-type") => 'c',
                Some("resource") => 'r',
                _ => continue,
            };
            let name = r["id"].as_str().unwrap().to_string();
            let ty = r["type"].as_str().unwrap_or("");
            if r["derivation"] == "constraint" {
                // SimpleQuantity, MoneyQuantity: a named restriction of their base type
                if kind == 'c' && ty != name {
                    types.insert(name, (ty.to_string(), kind));
                }
                continue;
            }
            let parent = r["baseDefinition"]
                .as_str()
                .and_then(|u| u.rsplit('/').next())
                .unwrap_or("-")
                .to_string();
            types.insert(name.clone(), (parent, kind));
            for el in r["snapshot"]["element"].as_array().unwrap() {
                let path = el["path"].as_str().unwrap();
                let base = el["base"]["path"].as_str().unwrap_or(path);
                let Some((ctx, elem)) = path.rsplit_once('.') else {
                    continue;
                };
                // own elements only: inherited ones are found through the parent chain
                if base.split('.').next() != Some(name.as_str()) {
                    continue;
                }
                if kind == 'p' && elem == "value" {
                    continue;
                }
                let spec = if let Some(cr) = el["contentReference"].as_str() {
                    format!("#{}", cr.trim_start_matches('#'))
                } else {
                    let ts: Vec<String> = el["type"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|t| type_code(t, base))
                        .collect();
                    let has_children =
                        r["snapshot"]["element"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|c| {
                                c["path"]
                                    .as_str()
                                    .is_some_and(|p| p.starts_with(&format!("{path}.")))
                            });
                    if has_children
                        && ts.len() == 1
                        && (ts[0] == "BackboneElement" || ts[0] == "Element")
                    {
                        format!("={}", ts[0])
                    } else {
                        ts.join(",")
                    }
                };
                elems
                    .entry(ctx.to_string())
                    .or_default()
                    .push(format!("{elem}:{spec}"));
            }
        }
    }
    let mut out = String::new();
    for (n, (p, k)) in &types {
        writeln!(out, "T {n} {p} {k}").unwrap();
    }
    for (ctx, es) in &elems {
        writeln!(out, "E {ctx} {}", es.join(" ")).unwrap();
    }
    out
}

#[test]
fn embedded_type_table_matches_r4_definitions() {
    let dir = root().join("../shared/standards/fhir-r4");
    if !dir.join("profiles-resources.json").exists() {
        eprintln!("skipped: {} not found", dir.display());
        return;
    }
    let generated = generate(&dir);
    let target = root().join("src/fhirpath/fhir_types.txt");
    if std::env::var_os("FHIRPATH_REGEN_TYPES").is_some() {
        std::fs::write(&target, &generated).unwrap();
        return;
    }
    let embedded = std::fs::read_to_string(&target).unwrap_or_default();
    assert!(
        embedded == generated,
        "src/fhirpath/fhir_types.txt is stale: run FHIRPATH_REGEN_TYPES=1 cargo test --test fhirpath_typetable"
    );
}
