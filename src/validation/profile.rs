//! Compiling a StructureDefinition (FHIR R4 §2.26 / ElementDefinition §2.27) into an element tree.
//!
//! A profile with a `snapshot` is compiled from it (complete: every element of the base is present). A
//! profile with only a `differential` (the gateway's own `profiles/tobiume/`) is compiled *sparse*: the
//! tree holds only the stated elements (missing parents are synthesised without constraints) and the
//! validator also applies the profile's `baseDefinition` (FHIR R4 §2.26.0.3 "differential … relative to
//! the base"). Element ids (`Bundle.entry:patient.resource`, `Observation.value[x]:valueQuantity`) give the
//! tree: `a.b` is a child of `a`, `a.b:s` a slice of `a.b`, `a.b:s/t` a re-slice of `a.b:s`.
//!
//! Everything the walk needs is precomputed here: cardinalities as numbers, types with profiles and
//! target profiles (and their JSON suffixes), slicing discriminators (with FHIRPath paths parsed),
//! fixed/pattern values, bindings, invariants with their FHIRPath expressions parsed once, and per
//! element with children a [`ChildIndex`] from JSON property names to child elements, so that the walk
//! visits the properties an object has instead of scanning every child element of the definition.

use std::collections::HashMap;

use serde_json::Value;

use crate::fhirpath::{self, Expr};

/// `http://hl7.org/fhir/StructureDefinition/` — the base of every core definition.
pub const CORE: &str = "http://hl7.org/fhir/StructureDefinition/";

/// A compiled StructureDefinition.
#[derive(Debug)]
pub struct Profile {
    /// Canonical URL.
    pub url: String,
    /// `name` (or the id) for messages.
    pub name: String,
    /// `type` (e.g. `Patient`, `Extension`, `HumanName`).
    pub type_name: String,
    /// `kind` (`resource`, `complex-type`, `primitive-type`, `logical`).
    pub kind: String,
    /// `true` for a definition of FHIR R4 itself (`http://hl7.org/fhir/StructureDefinition/<type>`,
    /// derivation specialization or a core type).
    pub core: bool,
    /// Compiled from the differential only (see module docs).
    pub sparse: bool,
    /// `baseDefinition`.
    pub base: Option<String>,
    /// Elements; index 0 is the root.
    pub elems: Vec<Elem>,
    /// Extension contexts (`context.type`, `context.expression`).
    pub contexts: Vec<(String, String)>,
}

/// One compiled ElementDefinition.
#[derive(Debug, Default)]
pub struct Elem {
    /// `path` (e.g. `Observation.value[x]`).
    pub path: String,
    /// `id`.
    pub id: String,
    /// Last path segment (e.g. `value[x]`).
    pub name: String,
    /// `sliceName` of a slice.
    pub slice_name: Option<String>,
    /// `min` (0 when not stated).
    pub min: u32,
    /// `max` (`None` = `*` or not stated).
    pub max: Option<u32>,
    /// `type`.
    pub types: Vec<TypeRef>,
    /// Child elements (not slices).
    pub children: Vec<usize>,
    /// Slicing of this element.
    pub slicing: Option<Slicing>,
    /// Slices of this element.
    pub slices: Vec<usize>,
    /// `fixed[x]`.
    pub fixed: Option<Value>,
    /// `pattern[x]`.
    pub pattern: Option<Value>,
    /// `binding` (strength, value set URL).
    pub binding: Option<(String, String)>,
    /// `constraint` with parsed expressions.
    pub constraints: Vec<Constraint>,
    /// `contentReference` resolved to an element index.
    pub content_ref: Option<usize>,
    /// The pattern implied by this element's own fixed/pattern value or, failing that, by the fixed and
    /// pattern values of its descendants (e.g. a `category` slice whose `coding.system` and `coding.code`
    /// are fixed) — what a `value`/`pattern` discriminator on `$this` compares against.
    pub implied: Option<Value>,
    /// Lookup of [`Elem::children`] by JSON property name (empty for an element without children).
    pub index: ChildIndex,
}

/// Which children of an element a JSON object's properties belong to (positions in
/// [`Elem::children`]).
#[derive(Debug, Default)]
pub struct ChildIndex {
    /// Property name (also the name of its `_name` sibling without the `_`) → child positions.
    by_name: foldhash::HashMap<Box<str>, Vec<usize>>,
    /// Choice children (`value[x]`): (position, name without `[x]`); `valueQuantity` belongs to it.
    choices: Vec<(usize, Box<str>)>,
    /// Children that are checked even when absent: `min > 0`, or sliced (slice minimums).
    pub always: Vec<usize>,
}

impl ChildIndex {
    /// Add to `out` the positions of the children property `key` (`name`, `_name`, `valueX`) belongs to.
    pub fn lookup(&self, key: &str, out: &mut Vec<usize>) -> bool {
        let kk = key.strip_prefix('_').unwrap_or(key);
        let mut hit = false;
        if let Some(ps) = self.by_name.get(kk) {
            out.extend_from_slice(ps);
            hit = true;
        }
        for (pos, base) in &self.choices {
            if kk.len() > base.len() && (base.is_empty() || kk.as_bytes()[0] == base.as_bytes()[0]) && kk.starts_with(&**base) && kk[base.len()..].starts_with(|c: char| c.is_ascii_uppercase()) {
                out.push(*pos);
                hit = true;
            }
        }
        hit
    }
}

/// `ElementDefinition.type`.
#[derive(Debug, Clone)]
pub struct TypeRef {
    /// `code` (`string`, `HumanName`, `Reference`, `Resource`, `http://hl7.org/fhirpath/System.String` …).
    pub code: String,
    /// [`type_suffix`] of `code`: the JSON suffix of a choice element of this type (`DateTime`).
    pub suffix: String,
    /// `profile` (type must conform to one of them).
    pub profiles: Vec<String>,
    /// `targetProfile` (Reference / canonical targets).
    pub targets: Vec<String>,
}

/// `ElementDefinition.slicing`.
#[derive(Debug)]
pub struct Slicing {
    /// Discriminators.
    pub discriminators: Vec<Discriminator>,
    /// `rules = closed`.
    pub closed: bool,
}

/// One discriminator.
#[derive(Debug)]
pub struct Discriminator {
    /// `value`, `pattern`, `type`, `profile`, `exists`.
    pub kind: String,
    /// `path` as written.
    pub path: String,
    /// `path` parsed as FHIRPath (`None` for `$this` or when it does not parse).
    pub expr: Option<Expr>,
}

/// `ElementDefinition.constraint`.
#[derive(Debug)]
pub struct Constraint {
    /// `key` (e.g. `dom-3`, `R1113`).
    pub key: String,
    /// `severity = error` (else warning).
    pub error: bool,
    /// Parsed `expression` (`None`: absent or not supported by the engine — skipped).
    pub expr: Option<Expr>,
    /// The constraint's `source` is a core definition (already checked by the base walk).
    pub from_core: bool,
    /// `ele-1` or `ext-1`: checked natively by the walk, never evaluated (the compiler does not keep
    /// them, see [`Constraint::is_native`]; `true` only for one built directly with [`Constraint::new`]).
    pub native: bool,
    /// The element names the expression reads on its focus ([`Expr::focus_roots`]); `None` when it
    /// reads more (`$this`, `%resource`, …). When the focus is an object with none of them, the
    /// outcome is [`Constraint::fails_when_absent`] without evaluating.
    pub roots: Option<Box<[Box<str>]>>,
    /// The expression's outcome on an object without any of [`Constraint::roots`]: `true` if it is
    /// `false` there (the invariant fails), precomputed once.
    pub fails_when_absent: bool,
    /// The issue text when the invariant fails: `"<key>: <human>"` (built once, cloned per issue; the
    /// only copy of `human`, see [`Constraint::human`], so a definition's constraints are not held twice).
    pub message: String,
}

impl Constraint {
    /// `ele-1` and `ext-1`, the invariants the validator's walk checks natively (without FHIRPath) on
    /// every element / extension.
    pub fn is_native(key: &str) -> bool {
        key == "ele-1" || key == "ext-1"
    }

    /// The parsed constraint `key` / `expression` (with its precomputed absent-focus outcome).
    pub fn new(key: String, error: bool, human: String, expr: Option<Expr>, from_core: bool) -> Constraint {
        let native = Constraint::is_native(&key);
        let roots: Option<Box<[Box<str>]>> =
            expr.as_ref().and_then(|e| e.focus_roots()).map(|r| r.into_iter().map(Box::from).collect());
        let fails_when_absent = match (&roots, &expr) {
            (Some(_), Some(e)) => {
                let empty = Value::Object(serde_json::Map::new());
                let focus = [fhirpath::Item { value: std::borrow::Cow::Borrowed(&empty), type_name: None, fhir_type: None }];
                let r = fhirpath::evaluate_on(e, &focus, &empty);
                r.len() == 1 && r[0].value.as_ref() == &Value::Bool(false)
            }
            _ => false,
        };
        let message = format!("{key}: {human}");
        Constraint { key, error, expr, from_core, native, roots, fails_when_absent, message }
    }

    /// The constraint's `human` text (the part of [`Constraint::message`] after `"<key>: "`).
    pub fn human(&self) -> &str {
        &self.message[self.key.len() + 2..]
    }

    /// `Some(failed)` when the outcome on `value` is known without evaluating: `value` is an object
    /// holding none of the element names the expression reads (a `_name` sibling or a choice
    /// `nameX` counts as present).
    pub fn outcome_without_evaluation(&self, value: &Value) -> Option<bool> {
        let (Some(roots), Value::Object(o)) = (&self.roots, value) else { return None };
        let present = o.keys().any(|k| {
            let k = k.strip_prefix('_').unwrap_or(k);
            roots.iter().any(|r| {
                k.as_bytes().first() == r.as_bytes().first()
                    && k.starts_with(&**r)
                    && (k.len() == r.len() || k[r.len()..].starts_with(|c: char| c.is_ascii_uppercase()))
            })
        });
        (!present).then_some(self.fails_when_absent)
    }
}

/// Capitalise the first letter (`dateTime` → `DateTime`): the JSON suffix of a choice element.
pub fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// The JSON type suffix of a type code (`http://hl7.org/fhirpath/System.String` → `String`).
pub fn type_suffix(code: &str) -> String {
    upper_first(code.rsplit(['/', '.']).next().unwrap_or(code))
}

/// `upper == upper_first(s)`, without allocating.
pub fn eq_upper_first(upper: &str, s: &str) -> bool {
    let mut c = s.chars();
    match c.next() {
        None => upper.is_empty(),
        Some(f) => {
            let mut u = upper.chars();
            u.next() == Some(f.to_ascii_uppercase()) && u.as_str() == c.as_str()
        }
    }
}

/// Split an element id into (name, slice) segments that align with the path's segments.
fn id_segments(id: &str, path: &str) -> Vec<(String, Option<String>)> {
    let n = path.split('.').count();
    let toks: Vec<&str> = id.split('.').collect();
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        let remaining_path = n.saturating_sub(out.len());
        let remaining_toks = toks.len() - i;
        if let Some((name, slice)) = t.split_once(':') {
            let mut slice = slice.to_string();
            // a slice name containing dots: merge tokens while there are more tokens than path segments
            let mut extra = remaining_toks.saturating_sub(remaining_path);
            while extra > 0 && i + 1 < toks.len() {
                i += 1;
                slice.push('.');
                slice.push_str(toks[i]);
                extra -= 1;
            }
            out.push((name.to_string(), Some(slice)));
        } else {
            out.push((t.to_string(), None));
        }
        i += 1;
    }
    out
}

fn seg_string(segs: &[(String, Option<String>)]) -> String {
    segs.iter()
        .map(|(n, s)| match s {
            Some(s) => format!("{n}:{s}"),
            None => n.clone(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn parse_max(v: Option<&Value>) -> Option<u32> {
    match v.and_then(Value::as_str) {
        Some("*") | None => None,
        Some(s) => s.parse().ok(),
    }
}

fn prefixed_value(e: &serde_json::Map<String, Value>, prefix: &str) -> Option<Value> {
    e.iter().find(|(k, _)| k.starts_with(prefix) && k.len() > prefix.len()).map(|(_, v)| v.clone())
}

/// Compile a StructureDefinition JSON. `None` if it has neither snapshot nor differential elements.
pub fn compile(sd: &Value) -> Option<Profile> {
    let url = sd.get("url")?.as_str()?.to_string();
    let type_name = sd.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    let (elements, sparse) = match sd.pointer("/snapshot/element").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => (a, false),
        _ => (sd.pointer("/differential/element").and_then(Value::as_array)?, true),
    };
    let derivation = sd.get("derivation").and_then(Value::as_str).unwrap_or("specialization");
    let core = url.starts_with(CORE) && (derivation == "specialization" || url == format!("{CORE}{type_name}"));
    let mut p = Profile {
        name: sd.get("name").and_then(Value::as_str).or_else(|| sd.get("id").and_then(Value::as_str)).unwrap_or("").to_string(),
        url,
        type_name,
        kind: sd.get("kind").and_then(Value::as_str).unwrap_or("").to_string(),
        core,
        sparse,
        base: sd.get("baseDefinition").and_then(Value::as_str).map(str::to_string),
        elems: Vec::with_capacity(elements.len()),
        contexts: Vec::new(),
    };
    for c in sd.get("context").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        if let (Some(t), Some(e)) = (c.get("type").and_then(Value::as_str), c.get("expression").and_then(Value::as_str)) {
            p.contexts.push((t.to_string(), e.to_string()));
        }
    }
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut content_refs: Vec<(usize, String)> = Vec::new();
    for e in elements {
        let Some(eo) = e.as_object() else { continue };
        let path = eo.get("path").and_then(Value::as_str).unwrap_or("").to_string();
        let id = eo.get("id").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| path.clone());
        let segs = id_segments(&id, &path);
        if segs.is_empty() {
            continue;
        }
        let idx = ensure(&mut p, &mut by_id, &segs);
        let el = &mut p.elems[idx];
        el.path = path.clone();
        el.slice_name = eo.get("sliceName").and_then(Value::as_str).map(str::to_string).or(el.slice_name.take());
        el.min = eo.get("min").and_then(Value::as_u64).map(|m| m as u32).unwrap_or(0);
        el.max = parse_max(eo.get("max"));
        for t in eo.get("type").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            let strs = |k: &str| -> Vec<String> {
                t.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
            };
            let mut code = t.get("code").and_then(Value::as_str).unwrap_or("").to_string();
            // FHIR R4 snapshot quirk: primitive `value` elements carry an extension with the FHIR type
            if code.starts_with("http://hl7.org/fhirpath/System.") {
                if let Some(ft) = t.pointer("/extension/0/valueUrl").and_then(Value::as_str) {
                    code = ft.to_string();
                }
            }
            el.types.push(TypeRef { suffix: type_suffix(&code), code, profiles: strs("profile"), targets: strs("targetProfile") });
        }
        if let Some(s) = eo.get("slicing") {
            let discriminators = s
                .get("discriminator")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|d| {
                            let path = d.get("path").and_then(Value::as_str).unwrap_or("$this").to_string();
                            Discriminator {
                                kind: d.get("type").and_then(Value::as_str).unwrap_or("value").to_string(),
                                expr: if path == "$this" { None } else { fhirpath::parse(&path).ok() },
                                path,
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            el.slicing = Some(Slicing {
                discriminators,
                closed: s.get("rules").and_then(Value::as_str) == Some("closed"),
            });
        }
        el.fixed = prefixed_value(eo, "fixed");
        el.pattern = prefixed_value(eo, "pattern");
        if let Some(b) = eo.get("binding") {
            if let (Some(s), Some(vs)) = (b.get("strength").and_then(Value::as_str), b.get("valueSet").and_then(Value::as_str)) {
                el.binding = Some((s.to_string(), vs.to_string()));
            }
        }
        for c in eo.get("constraint").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            let key = c.get("key").and_then(Value::as_str).unwrap_or("").to_string();
            if Constraint::is_native(&key) {
                // `ele-1` (on every element of every snapshot) and `ext-1`: the walk checks them itself
                // and never evaluates them; their parsed expressions and messages were most of the memory
                // of the compiled definitions
                continue;
            }
            let expr = c.get("expression").and_then(Value::as_str).and_then(|x| fhirpath::parse(x).ok());
            let source = c.get("source").and_then(Value::as_str).unwrap_or("");
            el.constraints.push(Constraint::new(
                key,
                c.get("severity").and_then(Value::as_str) != Some("warning"),
                c.get("human").and_then(Value::as_str).unwrap_or("").to_string(),
                expr,
                source.starts_with(CORE) && !core,
            ));
        }
        if let Some(cr) = eo.get("contentReference").and_then(Value::as_str) {
            content_refs.push((idx, cr.trim_start_matches('#').to_string()));
        }
    }
    for (idx, target) in content_refs {
        // `#Questionnaire.item` names an element id (or path) of the same definition
        let t = by_id.get(&target).copied().or_else(|| p.elems.iter().position(|e| e.path == target && e.slice_name.is_none()));
        p.elems[idx].content_ref = t;
    }
    for i in 0..p.elems.len() {
        let v = implied(&p, i, 0);
        p.elems[i].implied = v;
    }
    // implicit slicing: extensions sliced by url (FHIR R4 §2.27.0.3 — the standard discriminator)
    for i in 0..p.elems.len() {
        if p.elems[i].slicing.is_none() && !p.elems[i].slices.is_empty() {
            let name = p.elems[i].name.as_str();
            let (kind, path) = if name == "extension" || name == "modifierExtension" {
                ("value", "url")
            } else if name.ends_with("[x]") {
                ("type", "$this")
            } else {
                ("value", "$this")
            };
            p.elems[i].slicing = Some(Slicing {
                discriminators: vec![Discriminator {
                    kind: kind.into(),
                    expr: if path == "$this" { None } else { fhirpath::parse(path).ok() },
                    path: path.into(),
                }],
                closed: false,
            });
        }
    }
    for i in 0..p.elems.len() {
        if p.elems[i].children.is_empty() {
            continue;
        }
        let mut index = ChildIndex::default();
        for (pos, &c) in p.elems[i].children.iter().enumerate() {
            let ce = &p.elems[c];
            match ce.name.strip_suffix("[x]") {
                Some(base) => index.choices.push((pos, base.into())),
                None => index.by_name.entry(ce.name.as_str().into()).or_default().push(pos),
            }
            if ce.min > 0 || (ce.slicing.is_some() && !ce.slices.is_empty() && !ce.name.ends_with("[x]")) {
                index.always.push(pos);
            }
        }
        p.elems[i].index = index;
    }
    Some(p)
}

fn implied(p: &Profile, i: usize, depth: usize) -> Option<Value> {
    let el = &p.elems[i];
    if let Some(v) = el.fixed.as_ref().or(el.pattern.as_ref()) {
        return Some(v.clone());
    }
    if depth > 6 {
        return None;
    }
    let mut m = serde_json::Map::new();
    for &c in &el.children {
        let ce = &p.elems[c];
        if ce.name.ends_with("[x]") || ce.name == "extension" || ce.name == "modifierExtension" {
            continue;
        }
        if let Some(v) = implied(p, c, depth + 1) {
            m.insert(ce.name.clone(), v);
        }
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// Find or create the element for `segs` (creating missing parents/slices without constraints).
fn ensure(p: &mut Profile, by_id: &mut HashMap<String, usize>, segs: &[(String, Option<String>)]) -> usize {
    let id = seg_string(segs);
    if let Some(&i) = by_id.get(&id) {
        return i;
    }
    let (name, slice) = segs[segs.len() - 1].clone();
    let parent: Option<(usize, bool)> = if let Some(s) = &slice {
        // slice of the same element without the (last part of the) slice name
        let mut base: Vec<(String, Option<String>)> = segs.to_vec();
        let last = base.len() - 1;
        base[last].1 = s.rsplit_once('/').map(|(a, _)| a.to_string());
        Some((ensure(p, by_id, &base), true))
    } else if segs.len() > 1 {
        Some((ensure(p, by_id, &segs[..segs.len() - 1]), false))
    } else {
        None
    };
    let idx = p.elems.len();
    let path = segs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(".");
    p.elems.push(Elem {
        path,
        id: id.clone(),
        name,
        slice_name: slice.map(|s| s.rsplit('/').next().unwrap_or(&s).to_string()),
        ..Elem::default()
    });
    match parent {
        Some((pi, true)) => p.elems[pi].slices.push(idx),
        Some((pi, false)) => p.elems[pi].children.push(idx),
        None => {}
    }
    by_id.insert(id, idx);
    idx
}

impl Profile {
    /// Element of this profile reached from `start` by a dotted `path` of element names (choice names
    /// match `value[x]`, e.g. `valueCoding` or `value`); follows slices only when named (`a:s`).
    pub fn find(&self, start: usize, path: &str) -> Option<usize> {
        let mut cur = start;
        for seg in path.split('.') {
            let el = self.elems.get(cur)?;
            let kids = if el.children.is_empty() { el.content_ref.map(|c| &self.elems[c].children) } else { Some(&el.children) }?;
            cur = *kids.iter().find(|&&k| {
                let n = &self.elems[k].name;
                n == seg || n.strip_suffix("[x]").is_some_and(|b| seg == b || (seg.starts_with(b) && seg[b.len()..].starts_with(|c: char| c.is_ascii_uppercase())))
            })?;
        }
        Some(cur)
    }
}
