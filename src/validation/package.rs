//! Loading FHIR conformance packages (FHIR R4 §2.13 "Packages", NPM package format) from `profiles/`.
//!
//! Accepted inputs, read once at start-up:
//!
//! * `*.tgz` — an NPM FHIR package (`package/<Type>-<id>.json`; `package/example/**`, `package.json`
//!   and `.index.json` are skipped), e.g. `jp-core.r4-1.1.2-url.tgz`, `jp-clins.r4-1.5.2-snap.tgz`;
//! * `*.json.gz` / `*.json` — a FHIR `Bundle` of definitions (the official R4 `profiles-resources.json`,
//!   `profiles-types.json`, `valuesets.json`, `extension-definitions.json`) or one conformance resource
//!   (`profiles/tobiume/StructureDefinition-*.json`).
//!
//! Only `StructureDefinition`, `ValueSet` and `CodeSystem` are kept, indexed by canonical `url` (and by
//! `url|version`). Each resource is kept as raw JSON text and parsed when it is compiled (then the tree is
//! dropped), so loading the 35 MB of R4 definitions costs one scan, not one `serde_json::Value` tree per
//! resource.
//!
//! Precedence when two packages define the same canonical URL: the first loaded wins. Directory order is
//! `fhir-r4/`, `jp-core/`, `jp-clins/`, then the others alphabetically (so the official core definitions
//! can never be shadowed).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// One conformance resource of a package, parsed lazily.
#[derive(Debug)]
pub struct Definition {
    /// `resourceType` (`StructureDefinition`, `ValueSet`, `CodeSystem`).
    pub resource_type: String,
    /// Canonical `url`.
    pub url: String,
    /// File or package it came from (for diagnostics).
    pub source: String,
    raw: Box<RawValue>,
}

impl Definition {
    /// The resource as JSON, parsed anew on each call (`None` if the text is not valid JSON). Callers
    /// compile what they need and drop the tree: keeping the parsed trees of the ≈350 definitions the
    /// warm-up compiles would cost ≈190 MB.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(self.raw.get()).ok()
    }
}

/// Every loaded definition, indexed by canonical URL.
#[derive(Debug, Default)]
pub struct Packages {
    by_url: HashMap<String, usize>,
    defs: Vec<Definition>,
    /// Files that could not be read (path, reason); loading goes on without them.
    pub errors: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    url: Option<String>,
    version: Option<String>,
}

#[derive(Deserialize)]
struct RawBundle {
    #[serde(default)]
    entry: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    resource: Option<Box<RawValue>>,
}

const KEPT: [&str; 3] = ["StructureDefinition", "ValueSet", "CodeSystem"];

/// Resource-level elements validation never reads (FHIR R4 §2.4 metadata and narrative).
const DROP_RESOURCE: [&str; 12] = [
    "text", "description", "purpose", "copyright", "contact", "jurisdiction", "mapping", "publisher", "keyword",
    "useContext", "identifier", "meta",
];
/// ElementDefinition documentation (FHIR R4 §2.27.0.1) the compiled profile does not use.
const DROP_ELEMENT: [&str; 11] = [
    "short", "definition", "comment", "requirements", "alias", "mapping", "meaningWhenMissing", "isModifierReason",
    "example", "orderMeaning", "base",
];

/// The definition without what validation never reads, as compact JSON text: narrative and metadata
/// ([`DROP_RESOURCE`]); in a StructureDefinition with a snapshot, the differential; in every element,
/// the documentation ([`DROP_ELEMENT`]), `constraint.xpath` / `.requirements` and `binding.description`;
/// in a CodeSystem, concept `definition` and `designation`. Values (`fixed[x]`, `pattern[x]`, codes,
/// displays, properties) are kept verbatim. Input that does not parse is kept as it is.
pub fn compact(resource_type: &str, raw: Box<RawValue>) -> Box<RawValue> {
    let Ok(Value::Object(mut o)) = serde_json::from_str::<Value>(raw.get()) else { return raw };
    for k in DROP_RESOURCE {
        o.remove(k);
    }
    match resource_type {
        "StructureDefinition" => {
            let has_snapshot = o
                .get("snapshot")
                .and_then(|s| s.get("element"))
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if has_snapshot {
                o.remove("differential");
            }
            for part in ["snapshot", "differential"] {
                let Some(Value::Array(elements)) = o.get_mut(part).and_then(|s| s.get_mut("element")) else { continue };
                for e in elements.iter_mut().filter_map(Value::as_object_mut) {
                    for k in DROP_ELEMENT {
                        e.remove(k);
                    }
                    if let Some(Value::Array(cs)) = e.get_mut("constraint") {
                        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                            c.remove("xpath");
                            c.remove("requirements");
                        }
                    }
                    if let Some(Value::Object(b)) = e.get_mut("binding") {
                        b.remove("description");
                    }
                }
            }
        }
        "CodeSystem" => {
            fn concepts(v: &mut Value) {
                let Some(Value::Array(cs)) = v.get_mut("concept") else { return };
                for c in cs.iter_mut() {
                    if let Some(o) = c.as_object_mut() {
                        o.remove("definition");
                        o.remove("designation");
                    }
                    concepts(c);
                }
            }
            let mut v = Value::Object(o);
            concepts(&mut v);
            let Value::Object(back) = v else { return raw };
            o = back;
        }
        _ => {}
    }
    serde_json::to_string(&Value::Object(o)).ok().and_then(|t| RawValue::from_string(t).ok()).unwrap_or(raw)
}

impl Packages {
    /// Load every package under `dir` (recursively; see the module docs for formats and precedence).
    ///
    /// Errors: only if `dir` itself cannot be read; unreadable files are recorded in [`Packages::errors`].
    pub fn load_dir(dir: &Path) -> Result<Packages, String> {
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .collect();
        if !dir.is_dir() {
            return Err(format!("profile directory {} does not exist", dir.display()));
        }
        let rank = |p: &Path| -> (u8, PathBuf) {
            let rel = p.strip_prefix(dir).unwrap_or(p).to_path_buf();
            let top = rel.components().next().map(|c| c.as_os_str().to_string_lossy().to_string()).unwrap_or_default();
            let r = match top.as_str() {
                "fhir-r4" => 0,
                "jp-core" => 1,
                "jp-clins" => 2,
                _ => 3,
            };
            (r, rel)
        };
        files.sort_by_key(|p| rank(p));
        let mut pk = Packages::default();
        for f in files {
            let name = f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let shown = f.strip_prefix(dir).unwrap_or(&f).display().to_string();
            let res = if name.ends_with(".tgz") || name.ends_with(".tar.gz") {
                pk.load_tgz(&f, &shown)
            } else if name.ends_with(".json.gz") {
                std::fs::File::open(&f).map_err(|e| e.to_string()).and_then(|file| {
                    let mut s = String::new();
                    flate2::read::GzDecoder::new(file).read_to_string(&mut s).map_err(|e| e.to_string())?;
                    pk.add_text(s, &shown);
                    Ok(())
                })
            } else if name.ends_with(".json") && !name.ends_with("schema.json") && name != "package.json" {
                std::fs::read_to_string(&f).map_err(|e| e.to_string()).map(|s| pk.add_text(s, &shown))
            } else {
                Ok(())
            };
            if let Err(e) = res {
                pk.errors.push((shown, e));
            }
        }
        Ok(pk)
    }

    fn load_tgz(&mut self, path: &Path, shown: &str) -> Result<(), String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in ar.entries().map_err(|e| e.to_string())? {
            let mut entry = entry.map_err(|e| e.to_string())?;
            let p = entry.path().map_err(|e| e.to_string())?.to_string_lossy().to_string();
            let Some(rel) = p.strip_prefix("package/") else { continue };
            if rel.contains('/') || !rel.ends_with(".json") || rel == "package.json" || rel.starts_with('.') {
                continue;
            }
            let mut s = String::new();
            if entry.read_to_string(&mut s).is_err() {
                continue;
            }
            self.add_text(s, &format!("{shown}:{rel}"));
        }
        Ok(())
    }

    /// Add one JSON text: a Bundle of definitions or one definition. Other resources are ignored.
    fn add_text(&mut self, text: String, shown: &str) {
        let Ok(head) = serde_json::from_str::<Head>(&text) else { return };
        match head.resource_type.as_deref() {
            Some("Bundle") => {
                if let Ok(b) = serde_json::from_str::<RawBundle>(&text) {
                    for e in b.entry {
                        if let Some(r) = e.resource {
                            if let Ok(h) = serde_json::from_str::<Head>(r.get()) {
                                self.add(h, r, shown);
                            }
                        }
                    }
                }
            }
            Some(_) => {
                if let Ok(raw) = RawValue::from_string(text) {
                    self.add(head, raw, shown);
                }
            }
            None => {}
        }
    }

    fn add(&mut self, head: Head, raw: Box<RawValue>, shown: &str) {
        let (Some(rt), Some(url)) = (head.resource_type, head.url) else { return };
        if !KEPT.contains(&rt.as_str()) || self.by_url.contains_key(&url) {
            return;
        }
        let raw = compact(&rt, raw);
        let idx = self.defs.len();
        self.by_url.insert(url.clone(), idx);
        if let Some(v) = head.version {
            self.by_url.entry(format!("{url}|{v}")).or_insert(idx);
        }
        self.defs.push(Definition { resource_type: rt, url, source: shown.to_string(), raw });
    }

    /// The definition with canonical `url` (`url|version` accepted; an unknown version falls back to the
    /// unversioned URL, as FHIR R4 §2.11.0.3 allows when only one version is loaded).
    pub fn get(&self, url: &str) -> Option<&Definition> {
        if let Some(&i) = self.by_url.get(url) {
            return self.defs.get(i);
        }
        let bare = url.split('|').next().unwrap_or(url);
        self.by_url.get(bare).and_then(|&i| self.defs.get(i))
    }

    /// Number of definitions loaded.
    pub fn len(&self) -> usize {
        self.defs.len()
    }

    /// `true` if nothing was loaded.
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// Number of definitions per `resourceType` (for the start-up log and tests).
    pub fn counts(&self) -> HashMap<&str, usize> {
        let mut m = HashMap::new();
        for d in &self.defs {
            *m.entry(d.resource_type.as_str()).or_insert(0) += 1;
        }
        m
    }

    /// All StructureDefinition URLs (for tests and listing).
    pub fn structure_definition_urls(&self) -> impl Iterator<Item = &str> {
        self.defs.iter().filter(|d| d.resource_type == "StructureDefinition").map(|d| d.url.as_str())
    }
}
