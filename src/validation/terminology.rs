//! Local terminology for binding checks (FHIR R4 §4.9 ValueSet `compose`, §4.8 CodeSystem).
//!
//! A ValueSet is expanded once from its `compose` (or its stored `expansion`) using only the CodeSystems
//! loaded from `profiles/`: `include.concept` lists, whole code systems (`include.system` alone, nested
//! `concept` hierarchies included), `is-a` / `descendent-of` filters, `include.valueSet` and `exclude.concept`.
//! Anything that cannot be computed locally (a code system that is not loaded, is `not-present`/`example`,
//! or another filter) is recorded per system, so that a check answers [`Membership::Unknown`] — a
//! warning, never an error (the validator has no terminology server).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::package::Packages;

/// The locally computable content of one ValueSet.
#[derive(Debug, Default)]
pub struct Expansion {
    /// system → codes (looked up without allocating).
    codes: HashMap<String, HashSet<String>>,
    bare: HashSet<String>,
    /// Systems whose membership is exactly known (every code of the VS from that system is in `codes`).
    known_systems: HashSet<String>,
    /// Systems included but not (fully) computable locally.
    unknown_systems: HashSet<String>,
}

/// Result of a membership test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// The code is in the value set.
    In,
    /// The code is not in the value set.
    NotIn,
    /// Cannot be decided locally; the string says why (e.g. the code system is not loaded).
    Unknown(String),
}

impl Expansion {
    /// Is `(system, code)` in the value set? `system = None` for a bare `code` element.
    pub fn check(&self, system: Option<&str>, code: &str) -> Membership {
        match system {
            Some(s) => {
                if self.codes.get(s).is_some_and(|c| c.contains(code)) {
                    Membership::In
                } else if self.unknown_systems.contains(s) {
                    Membership::Unknown(format!("code system {s} is not available locally"))
                } else if self.known_systems.contains(s) || self.unknown_systems.is_empty() {
                    Membership::NotIn
                } else {
                    Membership::Unknown(format!("value set includes code systems that are not available locally ({})", self.unknown_list()))
                }
            }
            None => {
                if self.bare.contains(code) {
                    Membership::In
                } else if self.unknown_systems.is_empty() {
                    Membership::NotIn
                } else {
                    Membership::Unknown(format!("code systems not available locally: {}", self.unknown_list()))
                }
            }
        }
    }

    fn unknown_list(&self) -> String {
        let mut v: Vec<&str> = self.unknown_systems.iter().map(String::as_str).collect();
        v.sort();
        v.join(", ")
    }

    fn add(&mut self, system: &str, code: &str) {
        match self.codes.get_mut(system) {
            Some(c) => {
                c.insert(code.to_string());
            }
            None => {
                self.codes.insert(system.to_string(), HashSet::from([code.to_string()]));
            }
        }
        self.bare.insert(code.to_string());
    }

    fn merge(&mut self, o: &Expansion) {
        for (s, cs) in &o.codes {
            self.codes.entry(s.clone()).or_default().extend(cs.iter().cloned());
        }
        self.bare.extend(o.bare.iter().cloned());
        self.known_systems.extend(o.known_systems.iter().cloned());
        self.unknown_systems.extend(o.unknown_systems.iter().cloned());
    }
}

/// Expand ValueSet `url` (version suffix `|x` ignored). `None` if the ValueSet is not loaded.
///
/// `depth` guards against `include.valueSet` cycles.
pub fn expand(pk: &Packages, url: &str, depth: usize) -> Option<Expansion> {
    let url = url.split('|').next().unwrap_or(url);
    let def = pk.get(url).filter(|d| d.resource_type == "ValueSet")?;
    let vs = &def.json()?;
    let mut ex = Expansion::default();
    if depth > 8 {
        return Some(ex);
    }
    let compose = vs.get("compose");
    if compose.is_none() {
        if let Some(Value::Array(contains)) = vs.pointer("/expansion/contains") {
            add_contains(&mut ex, contains);
            return Some(ex);
        }
    }
    let Some(compose) = compose else { return Some(ex) };
    for inc in arr(compose.get("include")) {
        include(pk, &mut ex, inc, depth);
    }
    for exc in arr(compose.get("exclude")) {
        let sys = exc.get("system").and_then(Value::as_str).unwrap_or("");
        for c in arr(exc.get("concept")) {
            if let Some(code) = c.get("code").and_then(Value::as_str) {
                if let Some(cs) = ex.codes.get_mut(sys) {
                    cs.remove(code);
                }
                if !ex.codes.values().any(|cs| cs.contains(code)) {
                    ex.bare.remove(code);
                }
            }
        }
    }
    Some(ex)
}

fn add_contains(ex: &mut Expansion, contains: &[Value]) {
    for c in contains {
        if let (Some(s), Some(code)) = (c.get("system").and_then(Value::as_str), c.get("code").and_then(Value::as_str)) {
            ex.add(s, code);
            ex.known_systems.insert(s.to_string());
        }
        add_contains(ex, arr(c.get("contains")));
    }
}

fn arr(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn include(pk: &Packages, ex: &mut Expansion, inc: &Value, depth: usize) {
    let mut sub: Option<Expansion> = None;
    for vs in arr(inc.get("valueSet")) {
        if let Some(u) = vs.as_str() {
            match expand(pk, u, depth + 1) {
                Some(e) => match &mut sub {
                    Some(s) => s.merge(&e),
                    None => sub = Some(e),
                },
                None => {
                    ex.unknown_systems.insert(format!("ValueSet {u}"));
                }
            }
        }
    }
    let Some(system) = inc.get("system").and_then(Value::as_str) else {
        if let Some(s) = sub {
            ex.merge(&s);
        }
        return;
    };
    let concepts = arr(inc.get("concept"));
    let filters = arr(inc.get("filter"));
    if !concepts.is_empty() {
        for c in concepts {
            if let Some(code) = c.get("code").and_then(Value::as_str) {
                ex.add(system, code);
            }
        }
        ex.known_systems.insert(system.to_string());
        return;
    }
    // whole code system, possibly filtered
    let cs = pk.get(system).filter(|d| d.resource_type == "CodeSystem").and_then(|d| d.json());
    let cs = cs.as_ref();
    let Some(cs) = cs else {
        ex.unknown_systems.insert(system.to_string());
        return;
    };
    let content = cs.get("content").and_then(Value::as_str).unwrap_or("complete");
    if matches!(content, "not-present" | "example") {
        ex.unknown_systems.insert(system.to_string());
        return;
    }
    let mut tree: Vec<(String, Option<usize>)> = Vec::new();
    flatten(arr(cs.get("concept")), None, &mut tree);
    let mut selected: Vec<&str> = tree.iter().map(|(c, _)| c.as_str()).collect();
    for f in filters {
        let op = f.get("op").and_then(Value::as_str).unwrap_or("");
        let value = f.get("value").and_then(Value::as_str).unwrap_or("");
        let prop = f.get("property").and_then(Value::as_str).unwrap_or("");
        match (op, prop) {
            ("is-a" | "descendent-of", "concept" | "code" | "") => {
                let keep: HashSet<usize> = descendants(&tree, value, op == "is-a");
                selected.retain(|c| tree.iter().position(|(t, _)| t == c).is_some_and(|i| keep.contains(&i)));
            }
            _ => {
                ex.unknown_systems.insert(system.to_string());
                return;
            }
        }
    }
    for c in selected {
        ex.add(system, c);
    }
    if content == "fragment" {
        ex.unknown_systems.insert(system.to_string());
    } else {
        ex.known_systems.insert(system.to_string());
    }
}

fn flatten(concepts: &[Value], parent: Option<usize>, out: &mut Vec<(String, Option<usize>)>) {
    for c in concepts {
        let Some(code) = c.get("code").and_then(Value::as_str) else { continue };
        let idx = out.len();
        out.push((code.to_string(), parent));
        flatten(arr(c.get("concept")), Some(idx), out);
    }
}

fn descendants(tree: &[(String, Option<usize>)], root: &str, include_self: bool) -> HashSet<usize> {
    let mut keep = HashSet::new();
    let Some(r) = tree.iter().position(|(c, _)| c == root) else { return keep };
    if include_self {
        keep.insert(r);
    }
    // children come after parents in `tree`
    let mut inside: HashMap<usize, bool> = HashMap::new();
    inside.insert(r, true);
    for (i, (_, p)) in tree.iter().enumerate().skip(r + 1) {
        if let Some(p) = p {
            if inside.get(p).copied().unwrap_or(false) {
                inside.insert(i, true);
                keep.insert(i);
            }
        }
    }
    keep
}
