//! The profile validator: one walk over the resource JSON per applicable StructureDefinition.
//!
//! For a resource of type `T` the walk applies (FHIR R4 §2.26 "Validating resources"):
//!
//! 1. the **base definition** `http://hl7.org/fhir/StructureDefinition/T` ("core" walk): every element
//!    known, cardinality, choice types, descent into data types (`HumanName`, `Coding` …), required
//!    bindings, invariants (`dom-*`, `bdl-*`, …; `ele-1` and `ext-1` natively), extensions looked up by URL
//!    (definition, context, value), contained resources and Bundle entries recursively, references
//!    (target types, `#id` in `contained`, `urn:uuid:` and relative references inside Bundles);
//! 2. every profile in `meta.profile` plus the ones asked for ("profile" walks): only what the profile
//!    states on top of the base — its cardinalities, type restrictions, fixed and pattern values, slicing
//!    (value / pattern / type / profile / exists discriminators, closed rules, per-slice cardinality),
//!    bindings, its own invariants (constraints whose `source` is a core definition are skipped: the core
//!    walk checked them), type profiles (`name only JP_HumanName`, `entry:patient.resource` →
//!    JP_Patient_eCS) and reference target profiles. A differential-only profile also applies its
//!    `baseDefinition` chain.
//!
//! Issues are de-duplicated on (severity, expression, message), so a base rule repeated in a profile's
//! snapshot is reported once.
//!
//! Cost model (what keeps a 20-entry JP-CLINS Bundle near a millisecond): every definition is compiled
//! once ([`profile::compile`]: children indexed by JSON property name, type suffixes, FHIRPath parsed); an
//! object is walked by its own properties plus the few children that must be checked when absent
//! (`min > 0`, sliced), not by every child of the definition; the FHIRPath location of a node is a chain
//! of borrowed segments, rendered to text only when an issue is reported; core definitions are looked up
//! by type name without formatting URLs; references inside a Bundle resolve through an index built once
//! per Bundle.

use std::borrow::Cow;
use std::hash::BuildHasher as _;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, RwLock};

use foldhash::HashMap;
use serde_json::Value;

use super::package::Packages;
use super::profile::{self, eq_upper_first, Profile, CORE};
use super::terminology::{self, Expansion, Membership};
use crate::fhirpath::{self, json_get, obj_get, obj_get_key_value, obj_get_underscore, Env, Item};

/// `OperationOutcome.issue.severity` (FHIR R4 ValueSet `issue-severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The validation could not run.
    Fatal,
    /// The resource does not conform.
    Error,
    /// Possible problem (unknown code system, unknown extension, warning-level invariant).
    Warning,
    /// Informational.
    Information,
}

impl Severity {
    /// The FHIR code.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// One validation finding (one `OperationOutcome.issue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationIssue {
    /// Severity.
    pub severity: Severity,
    /// `issue.code` (ValueSet `issue-type`): `structure`, `required`, `value`, `code-invalid`,
    /// `invariant`, `extension`, `not-found`, `invalid`, `not-supported`, `processing`.
    pub code: &'static str,
    /// Human-readable text (rule and profile; instance values of people are never echoed).
    pub diagnostics: String,
    /// FHIRPath location, e.g. `Bundle.entry[2].resource.code.coding[0]`.
    pub expression: String,
    /// The StructureDefinition (name) whose rule failed, if any.
    pub profile: Option<String>,
}

impl ValidationIssue {
    /// `true` for `error` and `fatal`.
    pub fn is_error(&self) -> bool {
        matches!(self.severity, Severity::Error | Severity::Fatal)
    }
}

/// The loaded packages plus caches of compiled profiles and value-set expansions (thread-safe; build
/// once, share by reference).
pub struct Validator {
    packages: Packages,
    /// Compiled definitions by the URL they were asked for (only URLs of loaded definitions: unknown
    /// URLs from `meta.profile` are not remembered, so input cannot grow the cache).
    profiles: RwLock<HashMap<String, Option<Arc<Profile>>>>,
    /// Core definitions by type name (`Observation`, `CodeableConcept`): the walk's most frequent lookup.
    core: RwLock<HashMap<String, Arc<Profile>>>,
    expansions: RwLock<HashMap<String, Option<Arc<Expansion>>>>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator").field("definitions", &self.packages.len()).finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Core,
    Profile,
}

const MAX_DEPTH: u32 = 24;

impl Validator {
    /// Load the packages under `dir` (see [`super::package`]). Errors: `dir` unreadable or no core
    /// definitions in it (`http://hl7.org/fhir/StructureDefinition/Patient` missing).
    pub fn load(dir: &Path) -> Result<Validator, String> {
        let packages = Packages::load_dir(dir)?;
        if packages.get(&format!("{CORE}Patient")).is_none() {
            return Err(format!("no FHIR R4 core definitions found under {}", dir.display()));
        }
        Ok(Validator { packages, profiles: RwLock::default(), core: RwLock::default(), expansions: RwLock::default() })
    }

    /// The loaded packages.
    pub fn packages(&self) -> &Packages {
        &self.packages
    }

    /// The compiled StructureDefinition `url` (`url|version` accepted), compiled on first use.
    pub fn profile(&self, url: &str) -> Option<Arc<Profile>> {
        if let Ok(m) = self.profiles.read() {
            if let Some(p) = m.get(url) {
                return p.clone();
            }
        }
        let def = self.packages.get(url)?;
        let compiled = Some(def)
            .filter(|d| d.resource_type == "StructureDefinition")
            .and_then(|d| d.json())
            .and_then(|j| profile::compile(&j))
            .map(|mut p| {
                if !p.core {
                    self.mark_core_constraints(&mut p);
                }
                Arc::new(p)
            });
        if let Ok(mut m) = self.profiles.write() {
            // two threads may compile the same definition: keep the first, so every caller shares it
            return m.entry(url.to_string()).or_insert(compiled).clone();
        }
        compiled
    }

    /// A resource profile's snapshot repeats the invariants of the base definition, and some packages drop
    /// their `source` (JP-CLINS' `JP_Bundle_CLINS` lists `bdl-1` … `bdl-12` without one): mark every
    /// constraint that the core definition states on the same element path with the same key and the
    /// same expression as `from_core`, so the profile walk does not evaluate it a second time (the core
    /// walk reports it).
    fn mark_core_constraints(&self, p: &mut Profile) {
        // only resource profiles: the core walk evaluates the invariants of every element of a
        // resource, but not those on the root of a data type
        let Some(core) = self.core_type(&p.type_name).filter(|c| c.kind == "resource") else { return };
        for el in &mut p.elems {
            if el.constraints.iter().all(|c| c.from_core || c.native) {
                continue;
            }
            let Some(ce) = core.elems.iter().find(|e| e.path == el.path && e.slice_name.is_none()) else { continue };
            for c in &mut el.constraints {
                if !c.from_core && ce.constraints.iter().any(|k| k.key == c.key && k.expr.is_some() && k.expr == c.expr) {
                    c.from_core = true;
                }
            }
        }
    }

    /// The core definition of FHIR type `t` (`http://hl7.org/fhir/StructureDefinition/<t>`), cached by
    /// type name. `None` for an unknown type.
    pub fn core_type(&self, t: &str) -> Option<Arc<Profile>> {
        if let Ok(m) = self.core.read() {
            if let Some(p) = m.get(t) {
                return Some(p.clone());
            }
        }
        let p = self.profile(&format!("{CORE}{t}"))?;
        if let Ok(mut m) = self.core.write() {
            m.insert(t.to_string(), p.clone());
        }
        Some(p)
    }

    /// Compile every StructureDefinition now (start-up warm-up; returns how many compiled).
    pub fn precompile_all(&self) -> usize {
        let urls: Vec<String> = self.packages.structure_definition_urls().map(str::to_string).collect();
        urls.iter().filter(|u| self.profile(u).is_some()).count()
    }

    /// Compile what validation needs first: the core definitions of every resource and complex data
    /// type, and every definition of the non-core packages (JP Core, JP-CLINS, the gateway's own), with
    /// the local expansions of the ValueSets their required bindings name. Core extension definitions
    /// (≈600) stay lazy. Returns how many StructureDefinitions are compiled.
    pub fn warm_up(&self) -> usize {
        let mut n = 0;
        let urls: Vec<&str> = self.packages.structure_definition_urls().collect();
        for url in urls {
            let Some(def) = self.packages.get(url) else { continue };
            let core_type = url.strip_prefix(CORE).filter(|t| !t.contains('-') && t.starts_with(|c: char| c.is_ascii_uppercase()));
            let non_core = !def.source.starts_with("fhir-r4");
            if core_type.is_none() && !non_core {
                continue;
            }
            let Some(p) = (match core_type {
                Some(t) => self.core_type(t),
                None => self.profile(url),
            }) else {
                continue;
            };
            n += 1;
            if non_core {
                for el in &p.elems {
                    if let Some((strength, vs)) = &el.binding {
                        if strength == "required" {
                            self.expansion(vs);
                        }
                    }
                }
            }
        }
        n
    }

    /// Local expansion of ValueSet `url` (cached). `None` if the ValueSet is not loaded.
    pub fn expansion(&self, url: &str) -> Option<Arc<Expansion>> {
        let key = url.split('|').next().unwrap_or(url);
        if let Ok(m) = self.expansions.read() {
            if let Some(e) = m.get(key) {
                return e.clone();
            }
        }
        let e = terminology::expand(&self.packages, key, 0).map(Arc::new);
        if let Ok(mut m) = self.expansions.write() {
            m.insert(key.to_string(), e.clone());
        }
        e
    }

    /// The profile and, for a differential-only profile, its base chain up to (excluding) the core
    /// definition. Empty if `url` is unknown.
    fn chain(&self, url: &str) -> Vec<Arc<Profile>> {
        let mut out = Vec::new();
        let Some(p) = self.profile(url) else { return out };
        out.push(p);
        while out.len() < 12 {
            let last = &out[out.len() - 1];
            if !last.sparse {
                break;
            }
            let Some(b) = last.base.clone() else { break };
            match self.profile(&b) {
                Some(bp) if !bp.core => out.push(bp),
                _ => break,
            }
        }
        out
    }

    /// Validate `resource` against its base definition, every profile in its `meta.profile` and the
    /// `extra_profiles` (canonical URLs, `|version` allowed).
    ///
    /// Output: the issues found (empty = conformant, not even a warning). Never panics on input; a
    /// missing or unknown `resourceType` is one `error`.
    pub fn validate(&self, resource: &Value, extra_profiles: &[String]) -> Vec<ValidationIssue> {
        let mut run = Run::new(self, resource, 0, false);
        let rt = json_get(resource, "resourceType").and_then(Value::as_str).unwrap_or("Resource");
        run.walk_resource(resource, &Loc::root(rt), extra_profiles);
        run.issues
    }

    /// Does `resource` conform to `profile` (no error-level issue)? Used for `profile` discriminators.
    fn conforms(&self, resource: &Value, profile_url: &str, depth: u32) -> bool {
        let mut run = Run::new(self, resource, depth, true);
        let ty = json_get(resource, "resourceType").and_then(Value::as_str).unwrap_or("Resource");
        run.apply_profile(profile_url, resource, ty, &Loc::root(ty));
        !run.issues.iter().any(ValidationIssue::is_error)
    }
}

/// One segment of a FHIRPath location.
#[derive(Clone, Copy)]
enum Seg<'p> {
    /// The start: a resource or type name (`Bundle`, `Extension`).
    Text(&'p str),
    /// `.name`
    Key(&'p str),
    /// `.name[i]` (`i` = `None`: `.name`, a property holding one value)
    Item(&'p str, Option<usize>),
}

/// The FHIRPath location of the node being checked (`Bundle.entry[2].resource.code.coding[0]`), as a
/// chain of borrowed segments on the walk's stack: rendered to text only when an issue is reported.
#[derive(Clone, Copy)]
struct Loc<'p> {
    parent: Option<&'p Loc<'p>>,
    seg: Seg<'p>,
}

impl<'p> Loc<'p> {
    fn root(t: &'p str) -> Loc<'p> {
        Loc { parent: None, seg: Seg::Text(t) }
    }

    fn key<'q>(&'q self, k: &'q str) -> Loc<'q> {
        Loc { parent: Some(self), seg: Seg::Key(k) }
    }

    fn item<'q>(&'q self, k: &'q str, i: Option<usize>) -> Loc<'q> {
        Loc { parent: Some(self), seg: Seg::Item(k, i) }
    }

    fn write(&self, out: &mut String) {
        if let Some(p) = self.parent {
            p.write(out);
        }
        match self.seg {
            Seg::Text(t) => out.push_str(t),
            Seg::Key(k) | Seg::Item(k, None) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Item(k, Some(i)) => {
                let _ = write!(out, ".{k}[{i}]");
            }
        }
    }

    fn render(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }

    /// An item of a `contained` list (`….contained[2]`): the location of a contained resource.
    fn is_contained_item(&self) -> bool {
        if !matches!(self.seg, Seg::Item(_, Some(_))) {
            return false;
        }
        let mut cur = Some(self);
        while let Some(l) = cur {
            if matches!(l.seg, Seg::Item("contained", Some(_))) {
                return true;
            }
            cur = l.parent;
        }
        false
    }
}

/// One entry of a Bundle, for reference resolution: (`fullUrl`, `resource.resourceType`,
/// `resource.id`, `resource`).
type BundleEntry<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a Value);

struct Run<'v, 'a> {
    v: &'v Validator,
    issues: Vec<ValidationIssue>,
    /// hashes of (severity, expression, diagnostics) of `issues`
    seen: foldhash::HashSet<u64>,
    depth: u32,
    bundle: Option<&'a Value>,
    /// the entries of `bundle` (keyed by its address), built on the first reference resolved in it
    bundle_index: Option<(*const Value, Vec<BundleEntry<'a>>)>,
    resource: &'a Value,
    /// the resource containing the current one (references `#id` from a contained resource)
    container: Option<&'a Value>,
    /// stop at the first error (conformance probing)
    quiet: bool,
    /// (value address, compiled profile address) of every profile applied in this run: a Bundle
    /// entry's resource gets its `meta.profile` and the entry slice's type profile, usually the same
    /// one; applying it again to the same value (same location) could only repeat its issues
    applied: foldhash::HashSet<(usize, usize)>,
    /// spare buffers for the child positions `walk_children` visits (one per nesting level in use)
    usize_bufs: Vec<Vec<usize>>,
}

/// A list that is almost always empty or of one item (the JSON properties of one element): the
/// first item inline, further ones on the heap.
struct Few<T> {
    first: Option<T>,
    more: Vec<T>,
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few { first: None, more: Vec::new() }
    }
}

impl<T> Few<T> {
    fn push(&mut self, x: T) {
        if self.first.is_none() {
            self.first = Some(x);
        } else {
            self.more.push(x);
        }
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.first.iter().chain(self.more.iter())
    }
}

impl<T> IntoIterator for Few<T> {
    type Item = T;
    type IntoIter = std::iter::Chain<std::option::IntoIter<T>, std::vec::IntoIter<T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.more)
    }
}

impl<'v, 'a> Run<'v, 'a> {
    fn new(v: &'v Validator, resource: &'a Value, depth: u32, quiet: bool) -> Self {
        Run {
            v,
            issues: Vec::new(),
            seen: foldhash::HashSet::default(),
            depth,
            bundle: None,
            bundle_index: None,
            resource,
            container: None,
            quiet,
            applied: foldhash::HashSet::default(),
            usize_bufs: Vec::new(),
        }
    }

    fn contained_has(&self, local: &str, container: Option<&'a Value>) -> Option<&'a str> {
        [Some(self.resource), container].into_iter().flatten().find_map(|r| {
            json_get(r, "contained")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|c| json_get(c, "id").and_then(Value::as_str) == Some(local)))
                .map(|c| json_get(c, "resourceType").and_then(Value::as_str).unwrap_or(""))
        })
    }

    /// [`resolve_in_bundle`] through an index of the Bundle's entries (same result, same order of
    /// precedence), built once per Bundle.
    fn resolve(&mut self, bundle: &'a Value, reference: &str) -> Option<&'a Value> {
        let key = bundle as *const Value;
        if self.bundle_index.as_ref().is_none_or(|(k, _)| *k != key) {
            let entries = bundle
                .get("entry")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|e| {
                            let res = json_get(e, "resource")?;
                            Some((
                                json_get(e, "fullUrl").and_then(Value::as_str),
                                json_get(res, "resourceType").and_then(Value::as_str),
                                json_get(res, "id").and_then(Value::as_str),
                                res,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            self.bundle_index = Some((key, entries));
        }
        let entries = self.bundle_index.as_ref().map(|(_, e)| e.as_slice()).unwrap_or(&[]);
        let r = reference.find("/_history/").map_or(reference, |p| &reference[..p]);
        entries.iter().find(|(full, t, id, _)| *full == Some(r) || type_id_matches(r, *t, *id)).map(|e| e.3)
    }
}

fn is_resource_type(t: &str) -> bool {
    t == "Resource" || t == "DomainResource" || super::schema::is_resource_type(t)
}

fn is_primitive(t: &str) -> bool {
    t.starts_with(|c: char| c.is_ascii_lowercase()) || t.starts_with("http://hl7.org/fhirpath/")
}

/// Sufficient condition for R4 `dom-3` on a resource: it has contained resources, each with an `id`,
/// and for each some object in the resource (contained ones included, as `%resource.descendants()`)
/// has `reference` = `#<id>`.
fn every_contained_referenced(resource: &Value) -> bool {
    fn collect<'x>(v: &'x Value, out: &mut Vec<&'x str>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    match x {
                        Value::String(s) if k == "reference" && s.starts_with('#') => out.push(&s[1..]),
                        Value::Object(_) | Value::Array(_) => collect(x, out),
                        _ => {}
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    let Some(Value::Array(contained)) = json_get(resource, "contained") else { return false };
    let mut refs = Vec::new();
    collect(resource, &mut refs);
    !contained.is_empty()
        && contained.iter().all(|c| json_get(c, "id").and_then(Value::as_str).is_some_and(|id| refs.contains(&id)))
}

/// `true` if every property of `pattern` is present with the same value in `v` (arrays: every pattern
/// item matches some item) — FHIR R4 §2.27.0.1 `pattern[x]`.
pub fn contains_pattern(v: &Value, pattern: &Value) -> bool {
    match (v, pattern) {
        (Value::Object(a), Value::Object(b)) => {
            b.iter().all(|(k, pv)| a.get(k).is_some_and(|av| contains_pattern(av, pv)))
        }
        (Value::Array(a), Value::Array(b)) => b.iter().all(|pv| a.iter().any(|av| contains_pattern(av, pv))),
        (Value::Array(a), pv) => a.iter().any(|av| contains_pattern(av, pv)),
        (Value::Number(a), Value::Number(b)) => a.to_string() == b.to_string() || a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// Exact equality for `fixed[x]` (FHIR R4 §2.27.0.1): same properties, same values.
fn fixed_equals(v: &Value, f: &Value) -> bool {
    match (v, f) {
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && b.iter().all(|(k, fv)| a.get(k).is_some_and(|av| fixed_equals(av, fv)))
        }
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fixed_equals(x, y)),
        (Value::Number(a), Value::Number(b)) => a.to_string() == b.to_string() || a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        s.chars().take(117).collect::<String>() + "..."
    } else {
        s
    }
}

/// Items of a JSON property: an array's elements with their index, or the single value.
fn items(v: &Value) -> impl Iterator<Item = (Option<usize>, &Value)> {
    let (list, one): (&[Value], Option<&Value>) = match v {
        Value::Array(a) => (a, None),
        x => (&[], Some(x)),
    };
    list.iter().enumerate().map(|(i, x)| (Some(i), x)).chain(one.map(|x| (None, x)))
}

/// Number of non-null values of a JSON property (cardinality).
fn value_count(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.iter().filter(|x| !x.is_null()).count(),
        Value::Null => 0,
        _ => 1,
    }
}

/// JSON navigation of a simple dotted path (`coding.system`), flattening arrays.
fn navigate<'x>(v: &'x Value, path: &str) -> Vec<&'x Value> {
    let mut cur: Vec<&Value> = vec![v];
    for seg in path.split('.') {
        let mut next = Vec::new();
        for c in cur {
            if let Some(x) = json_get(c, seg) {
                match x {
                    Value::Array(a) => next.extend(a.iter()),
                    x => next.push(x),
                }
            }
        }
        cur = next;
    }
    cur
}

fn simple_path(p: &str) -> bool {
    p.split('.').all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

impl<'v, 'a> Run<'v, 'a> {
    fn issue(&mut self, severity: Severity, code: &'static str, loc: &Loc<'_>, msg: String, profile: Option<&Profile>) {
        if self.quiet && severity != Severity::Error {
            return;
        }
        let expression = loc.render();
        // de-duplicate on (severity, expression, message) by hash; a repeated hash (a duplicate, or
        // rarely a collision) is confirmed against the issues themselves
        let key = self.seen.hasher().hash_one((severity, expression.as_str(), msg.as_str()));
        if !self.seen.insert(key)
            && self.issues.iter().any(|i| i.severity == severity && i.expression == expression && i.diagnostics == msg)
        {
            return;
        }
        self.issues.push(ValidationIssue {
            severity,
            code,
            diagnostics: msg,
            expression,
            profile: profile.filter(|p| !p.core).map(|p| p.url.clone()),
        });
    }

    fn stop(&self) -> bool {
        self.quiet && self.issues.iter().any(ValidationIssue::is_error)
    }

    /// A resource (top level, contained, Bundle entry, Parameters): base + declared + extra profiles.
    fn walk_resource(&mut self, res: &'a Value, loc: &Loc<'_>, extra: &[String]) {
        if self.depth > MAX_DEPTH || self.stop() {
            return;
        }
        let Some(rt) = json_get(res, "resourceType").and_then(Value::as_str) else {
            self.issue(Severity::Error, "structure", loc, "resource has no resourceType".into(), None);
            return;
        };
        let Some(core) = self.v.core_type(rt).filter(|p| p.kind == "resource") else {
            self.issue(Severity::Error, "structure", loc, format!("unknown resource type '{}'", rt.chars().take(64).collect::<String>()), None);
            return;
        };
        self.depth += 1;
        let saved = (self.resource, self.bundle, self.container);
        if loc.is_contained_item() {
            self.container = Some(self.resource);
        }
        self.resource = res;
        if rt == "Bundle" {
            self.bundle = Some(res);
        }
        self.check_element(&core, 0, res, loc, Mode::Core, rt, rt);
        let mut urls: Vec<&str> = json_get(res, "meta")
            .and_then(|m| json_get(m, "profile"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for e in extra {
            if !urls.contains(&e.as_str()) {
                urls.push(e);
            }
        }
        for u in urls {
            self.apply_profile(u, res, rt, loc);
        }
        (self.resource, self.bundle, self.container) = saved;
        self.depth -= 1;
    }

    /// Apply profile `url` (and its base chain when differential-only) to `value` of type `ty`.
    fn apply_profile(&mut self, url: &str, value: &'a Value, ty: &str, loc: &Loc<'_>) {
        if self.depth > MAX_DEPTH || self.stop() {
            return;
        }
        let chain = self.v.chain(url);
        if chain.is_empty() {
            self.issue(
                Severity::Warning,
                "not-supported",
                loc,
                format!("profile {url} is not available locally; not checked against it"),
                None,
            );
            return;
        }
        let p0 = &chain[0];
        if !self.applied.insert((value as *const Value as usize, Arc::as_ptr(p0) as usize)) {
            return;
        }
        if p0.type_name != ty && !(p0.type_name == "Resource" || p0.type_name == "DomainResource") {
            // a data type profile on a derived type (SimpleQuantity on Age …) is fine
            if is_resource_type(ty) || is_resource_type(&p0.type_name) {
                self.issue(
                    Severity::Error,
                    "invalid",
                    loc,
                    format!("profile {} is for {}, not {ty}", p0.url, p0.type_name),
                    None,
                );
                return;
            }
        }
        self.depth += 1;
        let saved = self.resource;
        if json_get(value, "resourceType").is_some() {
            self.resource = value;
        }
        for p in &chain {
            if p.core {
                continue;
            }
            self.check_element(p, 0, value, loc, Mode::Profile, ty, &p.type_name);
            for rule in super::clins::rules_for(&p.url) {
                let ok = fhirpath::try_evaluate(&rule.expr, value)
                    .map(|r| !(r.len() == 1 && r[0].value.as_ref() == &Value::Bool(false)))
                    .unwrap_or(true);
                if !ok {
                    self.issue(Severity::Error, "invariant", loc, format!("{}: {}", rule.key, rule.human), Some(p));
                }
            }
        }
        self.resource = saved;
        self.depth -= 1;
    }

    /// Check one value against element `ei` of `p`: fixed / pattern, binding, invariants, type rules,
    /// then the children. `host_path` is the element path used for extension contexts.
    #[allow(clippy::too_many_arguments)]
    fn check_element(&mut self, p: &Arc<Profile>, ei: usize, value: &'a Value, loc: &Loc<'_>, mode: Mode, ty: &str, host_path: &str) {
        if self.stop() {
            return;
        }
        let el = &p.elems[ei];
        if let Some(f) = &el.fixed {
            if !fixed_equals(value, f) {
                self.issue(Severity::Error, "value", loc, format!("value must be exactly {} (fixed value of {})", short(f), el.id), Some(p));
            }
        }
        if let Some(pat) = &el.pattern {
            if !contains_pattern(value, pat) {
                self.issue(Severity::Error, "value", loc, format!("value does not match the pattern {} of {}", short(pat), el.id), Some(p));
            }
        }
        if let Some((strength, vs)) = &el.binding {
            if strength == "required" {
                self.check_binding(p, vs, value, ty, loc);
            }
        }
        if mode == Mode::Core {
            if let Value::Object(o) = value {
                if o.keys().all(|k| k == "id") {
                    self.issue(Severity::Error, "invariant", loc, "ele-1: All FHIR elements must have a @value or children".into(), None);
                }
                if ty == "Extension" && o.contains_key("extension") && o.keys().any(|k| k.starts_with("value")) {
                    self.issue(Severity::Error, "invariant", loc, "ext-1: Must have either extensions or value[x], not both".into(), None);
                }
            }
        }
        self.check_constraints(p, ei, value, loc, mode, ty);

        // type-specific rules
        if ei != 0 && is_resource_type(ty) {
            // an embedded resource (contained, Bundle.entry.resource, Parameters.parameter.resource)
            let rt = json_get(value, "resourceType").and_then(Value::as_str).unwrap_or(ty);
            match mode {
                Mode::Core => {
                    let profiles: Vec<String> = el.types.iter().flat_map(|t| t.profiles.iter().cloned()).collect();
                    self.walk_resource(value, loc, &profiles)
                }
                Mode::Profile => {
                    if !el.types.is_empty() && !el.types.iter().any(|t| t.code == rt || t.code == "Resource" || t.code == "DomainResource") {
                        let allowed: Vec<&str> = el.types.iter().map(|t| t.code.as_str()).collect();
                        self.issue(Severity::Error, "structure", loc, format!("resource type {rt} is not allowed here (allowed: {})", allowed.join(", ")), Some(p));
                    }
                    self.apply_type_profiles(p, ei, value, loc, rt);
                }
            }
            // profile-mode children of an embedded resource element (rare: snapshot-level constraints on it)
            if mode == Mode::Profile && !el.children.is_empty() {
                self.walk_children(p, ei, value, loc, mode, rt, host_path);
            }
            return;
        }
        if ty == "Reference" {
            self.check_reference(p, ei, value, loc);
        }
        if mode == Mode::Profile || !p.core || ei != 0 {
            self.apply_type_profiles(p, ei, value, loc, ty);
        }
        if !is_primitive(ty) {
            self.walk_children(p, ei, value, loc, mode, ty, host_path);
        }
    }

    /// `ElementDefinition.type.profile`: the value must conform to (one of) the listed profiles.
    fn apply_type_profiles(&mut self, p: &Arc<Profile>, ei: usize, value: &'a Value, loc: &Loc<'_>, ty: &str) {
        let el = &p.elems[ei];
        if el.types.iter().all(|t| t.profiles.is_empty()) {
            return; // whichever type the value has, it names no profile
        }
        let Some(t) = el.types.iter().find(|t| el.types.len() == 1 || eq_upper_first(&t.suffix, ty) || t.code == ty) else { return };
        if t.profiles.is_empty() {
            return;
        }
        let url_of_ext = json_get(value, "url").and_then(Value::as_str);
        let profiles = &t.profiles;
        if ty == "Extension" {
            // the core walk validates every extension against the definition named by its url
            if profiles.iter().any(|u| Some(u.split('|').next().unwrap_or(u)) == url_of_ext) {
                return;
            }
        }
        if profiles.len() == 1 {
            self.apply_profile(&profiles[0], value, ty, loc);
        } else if !profiles.iter().any(|u| self.v.conforms_value(value, u, ty, self.depth + 1)) {
            let names = profiles.join(", ");
            self.issue(Severity::Error, "structure", loc, format!("value does not conform to any of the profiles {names}"), Some(p));
        }
    }

    fn check_constraints(&mut self, p: &Arc<Profile>, ei: usize, value: &'a Value, loc: &Loc<'_>, mode: Mode, ty: &str) {
        let el = &p.elems[ei];
        for c in &el.constraints {
            if c.native || (mode == Mode::Profile && c.from_core) {
                continue;
            }
            let Some(expr) = &c.expr else { continue };
            if let Some(failed) = c.outcome_without_evaluation(value) {
                // none of the elements the invariant reads is present: its outcome is known
                if failed {
                    let sev = if c.error { Severity::Error } else { Severity::Warning };
                    self.issue(sev, "invariant", loc, c.message.clone(), Some(p));
                }
                continue;
            }
            if c.key == "dom-3" && p.core && every_contained_referenced(value) {
                // dom-3 ("every contained resource is referenced from the rest of the resource") holds
                // when each contained id is the target of some `reference` `#id` in the resource: a
                // sufficient condition that a JSON scan decides; otherwise the expression decides
                continue;
            }
            let focus = [Item { value: Cow::Borrowed(value), type_name: Some(ty), fhir_type: None }];
            // lenient evaluation (FHIRPath §"singleton evaluation" errors → empty → not a failure): the
            // R4 invariants use `as` on collections (dom-3), which strict mode rejects
            let items = fhirpath::evaluate_on(expr, &focus, self.resource);
            let failed = items.len() == 1 && items[0].value.as_ref() == &Value::Bool(false);
            if failed {
                let sev = if c.error { Severity::Error } else { Severity::Warning };
                self.issue(sev, "invariant", loc, c.message.clone(), Some(p));
            }
        }
    }

    fn check_binding(&mut self, p: &Arc<Profile>, vs: &str, value: &Value, ty: &str, loc: &Loc<'_>) {
        let codes: Vec<(Option<&str>, &str)> = match ty {
            "code" | "string" | "uri" => value.as_str().map(|c| vec![(None, c)]).unwrap_or_default(),
            "Coding" | "Quantity" => match json_get(value, "code").and_then(Value::as_str) {
                Some(c) => vec![(json_get(value, "system").and_then(Value::as_str), c)],
                None => return,
            },
            "CodeableConcept" => {
                let cs: Vec<(Option<&str>, &str)> = value
                    .get("coding")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| Some((json_get(c, "system").and_then(Value::as_str), json_get(c, "code").and_then(Value::as_str)?)))
                            .collect()
                    })
                    .unwrap_or_default();
                if cs.is_empty() {
                    if self.v.expansion(vs).is_some() {
                        self.issue(Severity::Error, "code-invalid", loc, format!("no code provided, and a code is required from the value set {vs}"), Some(p));
                    }
                    return;
                }
                cs
            }
            _ => return,
        };
        let Some(exp) = self.v.expansion(vs) else {
            self.issue(
                Severity::Warning,
                "not-supported",
                loc,
                format!("required binding to value set {vs} not checked: the value set is not available locally"),
                Some(p),
            );
            return;
        };
        let mut unknown: Option<Membership> = None;
        for (s, c) in &codes {
            match exp.check(*s, c) {
                Membership::In => return,
                m @ Membership::Unknown(_) if unknown.is_none() => unknown = Some(m),
                _ => {}
            }
        }
        if let Some(Membership::Unknown(why)) = unknown {
            self.issue(Severity::Warning, "code-invalid", loc, format!("code not checked against required value set {vs}: {why}"), Some(p));
            return;
        }
        let shown: Vec<String> = codes
            .iter()
            .map(|(s, c)| match s {
                Some(s) => format!("{s}#{c}"),
                None => format!("'{c}'"),
            })
            .collect();
        self.issue(
            Severity::Error,
            "code-invalid",
            loc,
            format!("{} is not in the required value set {vs}", shown.join(", ")),
            Some(p),
        );
    }

    fn check_reference(&mut self, p: &Arc<Profile>, ei: usize, value: &'a Value, loc: &Loc<'_>) {
        let Some(r) = json_get(value, "reference").and_then(Value::as_str) else { return };
        let mut target_type: Option<&str> = None;
        if let Some(local) = r.strip_prefix('#') {
            if !local.is_empty() {
                match self.contained_has(local, self.container) {
                    Some(c) => target_type = Some(c),
                    None => self.issue(Severity::Error, "not-found", loc, format!("contained resource '{r}' not found"), None),
                }
            }
        } else if let Some(b) = self.bundle {
            match self.resolve(b, r) {
                Some(res) => target_type = json_get(res, "resourceType").and_then(Value::as_str),
                None if r.starts_with("urn:") => {
                    self.issue(Severity::Error, "not-found", loc, format!("reference {r} does not resolve to an entry of the Bundle"), None)
                }
                None => {
                    if json_get(b, "type").and_then(Value::as_str) == Some("document") && !r.contains("://") {
                        self.issue(Severity::Warning, "not-found", loc, format!("reference {r} does not resolve inside the document Bundle"), None);
                    }
                }
            }
        }
        if target_type.is_none() {
            target_type = reference_type_str(r);
        }
        let Some(tt) = target_type else { return };
        let el = &p.elems[ei];
        let targets = || el.types.iter().filter(|t| t.code == "Reference").flat_map(|t| t.targets.iter());
        if targets().next().is_none() {
            return;
        }
        let v = self.v;
        fn type_of<'t>(v: &Validator, t: &'t String) -> Cow<'t, str> {
            match v.profile(t) {
                Some(pp) => Cow::Owned(pp.type_name.clone()),
                None => Cow::Borrowed(t.rsplit('/').next().unwrap_or(t)),
            }
        }
        let allowed_one = |a: &str| a == tt || a == "Resource" || a == "DomainResource";
        if !targets().any(|t| match v.profile(t) {
            Some(pp) => allowed_one(&pp.type_name),
            None => allowed_one(t.rsplit('/').next().unwrap_or(t)),
        }) {
            let allowed: Vec<Cow<'_, str>> = targets().map(|t| type_of(v, t)).collect();
            self.issue(
                Severity::Error,
                "structure",
                loc,
                format!("reference to a {tt} is not allowed here (allowed: {})", allowed.join(", ")),
                Some(p),
            );
        }
    }

    /// Walk the properties of the object `value` against the children of element `ei`.
    #[allow(clippy::too_many_arguments)]
    fn walk_children(&mut self, p: &Arc<Profile>, ei: usize, value: &'a Value, loc: &Loc<'_>, mode: Mode, ty: &str, host_path: &str) {
        let Value::Object(obj) = value else { return };
        let el = &p.elems[ei];
        let (cp, parent): (Arc<Profile>, usize) = if !el.children.is_empty() {
            (p.clone(), ei)
        } else if let Some(cr) = el.content_ref {
            (p.clone(), cr)
        } else if mode == Mode::Core {
            let t = if ty == "BackboneElement" || ty.is_empty() { return } else { ty };
            match self.v.core_type(t) {
                Some(tp) if tp.kind == "complex-type" || tp.kind == "resource" => (tp, 0),
                _ => return,
            }
        } else {
            return;
        };
        let pel = &cp.elems[parent];
        // the children to visit: those the object's properties belong to, plus those checked even when
        // absent; in the definition's order (the order issues are reported in)
        let mut active: Vec<usize> = self.usize_bufs.pop().unwrap_or_default();
        active.clear();
        active.extend_from_slice(&pel.index.always);
        let mut matched_small = [false; 32];
        let mut matched_large = Vec::new();
        let matched: &mut [bool] = if obj.len() <= matched_small.len() {
            &mut matched_small[..obj.len()]
        } else {
            matched_large.resize(obj.len(), false);
            &mut matched_large
        };
        for (i, key) in obj.keys().enumerate() {
            if pel.index.lookup(key, &mut active) {
                matched[i] = true;
            }
        }
        active.sort_unstable();
        active.dedup();
        let has_underscore = obj.keys().any(|k| k.starts_with('_'));
        for &pos in &active {
            if self.stop() {
                return;
            }
            let k = pel.children[pos];
            let kel = &cp.elems[k];
            let name = kel.name.as_str();
            // (json key, type code, value) present for this element
            let mut present: Few<(&'a str, &str, Option<&'a Value>)> = Few::default();
            let choice_base = name.strip_suffix("[x]");
            if let Some(base) = choice_base {
                for (key, v) in obj {
                    let kk = key.strip_prefix('_').unwrap_or(key);
                    if kk.len() > base.len() && kk.starts_with(base) && kk[base.len()..].starts_with(|c: char| c.is_ascii_uppercase()) {
                        if key.starts_with('_') {
                            continue;
                        }
                        let suffix = &kk[base.len()..];
                        match kel.types.iter().find(|t| t.suffix == suffix) {
                            Some(t) => present.push((key.as_str(), t.code.as_str(), Some(v))),
                            None => {
                                let allowed: Vec<&str> = kel.types.iter().map(|t| t.code.as_str()).collect();
                                self.issue(
                                    Severity::Error,
                                    "structure",
                                    &loc.key(kk),
                                    format!("type {suffix} is not allowed for {} (allowed: {})", kel.path, allowed.join(", ")),
                                    Some(&cp),
                                );
                            }
                        }
                    }
                }
                if present.len() > 1 {
                    self.issue(Severity::Error, "structure", &loc.key(name), format!("only one of the choice types of {} may be present", kel.path), None);
                }
            } else if let Some((key, v)) = obj_get_key_value(obj, name) {
                let code = if kel.types.is_empty() { "BackboneElement" } else { kel.types[0].code.as_str() };
                present.push((key.as_str(), code, Some(v)));
            } else if has_underscore && obj_get_underscore(obj, name).is_some() {
                present.push(("", kel.types.first().map(|t| t.code.as_str()).unwrap_or(""), obj_get(obj, "")));
            }
            // cardinality
            let mut count = 0usize;
            for (key, _, v) in present.iter() {
                let n = v.map(value_count);
                let ext_n = if has_underscore {
                    obj_get_underscore(obj, if key.is_empty() { name } else { key }).map(value_count)
                } else {
                    None
                };
                count += n.unwrap_or(0).max(ext_n.unwrap_or(0));
            }
            if (count as u64) < kel.min as u64 {
                self.issue(
                    Severity::Error,
                    "required",
                    &loc.key(name.trim_end_matches("[x]")),
                    format!("{}: minimum required = {}, but only found {count}", kel.path, kel.min),
                    Some(&cp),
                );
            }
            if let Some(max) = kel.max {
                if count as u64 > max as u64 {
                    let msg = if max == 0 {
                        format!("{} is not allowed (max = 0)", kel.path)
                    } else {
                        format!("{}: maximum allowed = {max}, but found {count}", kel.path)
                    };
                    self.issue(Severity::Error, "structure", &loc.key(name.trim_end_matches("[x]")), msg, Some(&cp));
                }
            }
            // values
            let is_ext = name == "extension" || name == "modifierExtension";
            let sliced = kel.slicing.is_some() && !kel.slices.is_empty() && choice_base.is_none();
            for (key, code, v) in present {
                if key.is_empty() {
                    continue;
                }
                let Some(v) = v else { continue };
                let mut walked: Vec<(&'a Value, Option<usize>, &str)> = Vec::new();
                for (i, item) in items(v) {
                    if item.is_null() {
                        continue;
                    }
                    let iloc = loc.item(key, i);
                    let ity: &str = if is_resource_type(code) { json_get(item, "resourceType").and_then(Value::as_str).unwrap_or(code) } else { code };
                    self.check_element(&cp, k, item, &iloc, mode, ity, &kel.path);
                    // a type slice of a choice element (`value[x]:valueQuantity`)
                    if choice_base.is_some() {
                        if let Some(&s) = kel.slices.iter().find(|&&s| cp.elems[s].slice_name.as_deref() == Some(key)) {
                            self.check_element(&cp, s, item, &iloc, mode, ity, &kel.path);
                        }
                    }
                    if is_ext && mode == Mode::Core {
                        self.check_extension(item, &iloc, ty, host_path, name == "modifierExtension");
                    }
                    if sliced {
                        walked.push((item, i, ity));
                    }
                }
                // primitive extensions `_key`
                if mode == Mode::Core && has_underscore {
                    if let Some(pe) = obj_get_underscore(obj, key) {
                        for (i, item) in items(pe) {
                            if let Some(exts) = json_get(item, "extension").and_then(Value::as_array) {
                                let iloc = loc.item(key, i);
                                for (j, x) in exts.iter().enumerate() {
                                    self.check_extension(x, &iloc.item("extension", Some(j)), code, &kel.path, false);
                                }
                            }
                        }
                    }
                }
                if sliced {
                    self.check_slices(&cp, k, &walked, loc, key, mode);
                }
            }
            if sliced && count == 0 {
                self.check_slices(&cp, k, &[], loc, name, mode);
            }
        }
        self.usize_bufs.push(active);
        if mode == Mode::Core {
            for (i, key) in obj.keys().enumerate() {
                if matched[i] || (ei == 0 && key.as_str() == "resourceType") || key.as_str() == "fhir_comments" {
                    continue;
                }
                self.issue(Severity::Error, "structure", &loc.key(key), format!("unknown element '{key}' in {ty}"), None);
            }
        }
    }

    /// Extension by URL (core walk): definition known, allowed in this context, value conforms.
    fn check_extension(&mut self, ext: &'a Value, loc: &Loc<'_>, host_type: &str, host_path: &str, modifier: bool) {
        let Some(url) = json_get(ext, "url").and_then(Value::as_str) else { return };
        if !url.contains(':') {
            return; // a sub-extension of a complex extension (relative url), checked by its parent's definition
        }
        let Some(def) = self.v.profile(url) else {
            let (sev, what) = if modifier { (Severity::Error, "modifier extension") } else { (Severity::Warning, "extension") };
            self.issue(sev, "extension", loc, format!("unknown {what} {url} (definition not available locally)"), None);
            return;
        };
        if def.type_name != "Extension" {
            self.issue(Severity::Error, "extension", loc, format!("{url} is not an extension definition"), None);
            return;
        }
        if !def.contexts.is_empty() && !context_ok(&def.contexts, host_type, host_path) {
            let ctx: Vec<&str> = def.contexts.iter().map(|(_, e)| e.as_str()).collect();
            // the R4 publication itself uses several core extensions outside their declared context
            // (structuredefinition-fhir-type on ElementDefinition.type, normative-version on ValueSet …):
            // a warning for core extensions, an error for every other one
            let sev = if url.starts_with(CORE) { Severity::Warning } else { Severity::Error };
            self.issue(
                sev,
                "extension",
                loc,
                format!("extension {url} is not allowed on {host_path} (allowed contexts: {})", ctx.join(", ")),
                Some(&def),
            );
        }
        self.apply_profile(url, ext, "Extension", loc);
    }

    /// Slicing (FHIR R4 §2.27.0.3 / profiling §5.1.0.14): assign every item to the first matching slice,
    /// validate it against that slice, then check each slice's cardinality and closed rules. `walked`
    /// holds the items of property `key` of the object at `parent`: (value, index, type).
    fn check_slices(&mut self, p: &Arc<Profile>, k: usize, walked: &[(&'a Value, Option<usize>, &str)], parent: &Loc<'_>, key: &str, mode: Mode) {
        let el = &p.elems[k];
        let Some(slicing) = &el.slicing else { return };
        let mut counts = vec![0u32; el.slices.len()];
        for &(item, i, ity) in walked {
            let iloc = parent.item(key, i);
            let mut hit = None;
            for (si, &s) in el.slices.iter().enumerate() {
                if self.slice_matches(p, k, s, item) {
                    hit = Some((si, s));
                    break;
                }
            }
            match hit {
                Some((si, s)) => {
                    counts[si] += 1;
                    self.check_element(p, s, item, &iloc, mode, ity, &el.path);
                }
                None if slicing.closed => self.issue(
                    Severity::Error,
                    "structure",
                    &iloc,
                    format!("does not match any slice of the closed slicing of {}", el.id),
                    Some(p),
                ),
                None => {}
            }
        }
        for (si, &s) in el.slices.iter().enumerate() {
            let sl = &p.elems[s];
            let n = counts[si];
            let sname = || sl.slice_name.clone().unwrap_or_default();
            if n < sl.min {
                self.issue(
                    Severity::Error,
                    "required",
                    &parent.key(&el.name),
                    format!("slice '{}' of {}: minimum required = {}, but only found {n}", sname(), el.path, sl.min),
                    Some(p),
                );
            }
            if let Some(max) = sl.max {
                if n > max {
                    self.issue(
                        Severity::Error,
                        "structure",
                        &parent.key(&el.name),
                        format!("slice '{}' of {}: maximum allowed = {max}, but found {n}", sname(), el.path),
                        Some(p),
                    );
                }
            }
        }
    }

    fn slice_matches(&mut self, p: &Arc<Profile>, k: usize, s: usize, item: &'a Value) -> bool {
        let Some(slicing) = &p.elems[k].slicing else { return false };
        for d in &slicing.discriminators {
            let ok = match d.kind.as_str() {
                "value" | "pattern" => self.disc_value(p, s, &d.path, d.expr.as_ref(), item),
                "type" => {
                    let actual: Option<&str> = if d.path == "$this" {
                        json_get(item, "resourceType").and_then(Value::as_str)
                    } else if d.path == "resolve()" {
                        match (self.bundle, json_get(item, "reference").and_then(Value::as_str)) {
                            (Some(b), Some(r)) => self.resolve(b, r).and_then(|r| json_get(r, "resourceType").and_then(Value::as_str)),
                            _ => None,
                        }
                    } else {
                        navigate(item, &d.path).first().and_then(|v| json_get(v, "resourceType")).and_then(Value::as_str)
                    };
                    let target = if d.path == "$this" || d.path == "resolve()" { Some(s) } else { p.find(s, &d.path) };
                    match (actual, target) {
                        (Some(a), Some(t)) => p.elems[t].types.iter().any(|tt| tt.code == a),
                        _ => false,
                    }
                }
                "profile" => {
                    let (targets, path_elem): (Vec<&'a Value>, Option<usize>) = if d.path == "$this" {
                        (vec![item], Some(s))
                    } else if d.path == "resolve()" {
                        let r = match (self.bundle, json_get(item, "reference").and_then(Value::as_str)) {
                            (Some(b), Some(r)) => self.resolve(b, r),
                            _ => None,
                        };
                        (r.into_iter().collect(), Some(s))
                    } else {
                        (navigate(item, &d.path), p.find(s, &d.path))
                    };
                    let Some(te) = path_elem else { return false };
                    let urls: Vec<&str> = p.elems[te]
                        .types
                        .iter()
                        .flat_map(|t| if d.path == "resolve()" { t.targets.iter() } else { t.profiles.iter() })
                        .map(String::as_str)
                        .collect();
                    if urls.is_empty() || targets.is_empty() {
                        false
                    } else {
                        targets.iter().any(|t| urls.iter().any(|u| self.declares_or_conforms(t, u)))
                    }
                }
                "exists" => {
                    let present = !navigate(item, &d.path).is_empty();
                    match p.find(s, &d.path) {
                        Some(t) if p.elems[t].min >= 1 => present,
                        Some(t) if p.elems[t].max == Some(0) => !present,
                        _ => true,
                    }
                }
                _ => true,
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// `profile` discriminator test: the resource declares the profile in `meta.profile`, or conforms.
    fn declares_or_conforms(&self, v: &Value, url: &str) -> bool {
        let bare = url.split('|').next().unwrap_or(url);
        let declared = json_get(v, "meta")
            .and_then(|m| json_get(m, "profile"))
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().filter_map(Value::as_str).any(|x| x.split('|').next() == Some(bare)));
        declared || (json_get(v, "resourceType").is_some() && self.v.conforms(v, url, self.depth + 1))
    }

    /// `value` / `pattern` discriminator: the item's value at `path` equals the slice's fixed value (or
    /// contains its pattern, or is in its required value set).
    fn disc_value(&mut self, p: &Arc<Profile>, s: usize, path: &str, expr: Option<&fhirpath::Expr>, item: &'a Value) -> bool {
        let sl = &p.elems[s];
        let target = if path == "$this" { Some(s) } else { p.find(s, path) };
        if path == "url" && target.and_then(|t| p.elems[t].implied.as_ref()).is_none() {
            // an extension slice (discriminator `url` = the slice's extension profile): the general
            // path below builds the expected value and navigates; same outcome, without allocating
            if let Some(u) = sl.types.iter().find(|t| t.code == "Extension").and_then(|t| t.profiles.first()) {
                let want = u.split('|').next().unwrap_or(u);
                fn str_in(v: &Value, want: &str) -> bool {
                    match v {
                        Value::String(x) => x == want,
                        Value::Array(a) => a.iter().any(|x| str_in(x, want)),
                        _ => false,
                    }
                }
                return json_get(item, "url").is_some_and(|x| str_in(x, want));
            }
        }
        let expected: Option<Cow<'_, Value>> = match target.and_then(|t| p.elems[t].implied.as_ref()) {
            Some(e) => Some(Cow::Borrowed(e)),
            None if path == "url" => sl.types.iter().find(|t| t.code == "Extension").and_then(|t| t.profiles.first()).map(|u| Cow::Owned(Value::String(u.split('|').next().unwrap_or(u).to_string()))),
            None => None,
        };
        let actual: Vec<Cow<'a, Value>> = if path == "$this" {
            vec![Cow::Borrowed(item)]
        } else if simple_path(path) {
            navigate(item, path).into_iter().map(Cow::Borrowed).collect()
        } else if let Some(e) = expr {
            let focus = [Item { value: Cow::Borrowed(item), type_name: None, fhir_type: None }];
            fhirpath::try_evaluate_with(e, self.resource, Some(&focus), &Env::default())
                .map(|v| v.into_iter().map(|i| Cow::Owned(i.value.into_owned())).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        match expected {
            Some(exp) => actual.iter().any(|a| contains_pattern(a, &exp)),
            None => {
                // a required binding can discriminate too
                match target.and_then(|t| p.elems[t].binding.as_ref()) {
                    Some((strength, vs)) if strength == "required" => match self.v.expansion(vs) {
                        Some(exp) => actual.iter().any(|a| {
                            let codings: Vec<&Value> = match json_get(a, "coding") {
                                Some(Value::Array(cs)) => cs.iter().collect(),
                                _ => vec![a.as_ref()],
                            };
                            codings.iter().any(|o| {
                                let (sys, code) = match o {
                                    Value::String(c) => (None, Some(c.as_str())),
                                    o => (json_get(o, "system").and_then(Value::as_str), json_get(o, "code").and_then(Value::as_str)),
                                };
                                code.is_some_and(|c| exp.check(sys, c) != Membership::NotIn)
                            })
                        }),
                        None => true,
                    },
                    _ => true,
                }
            }
        }
    }
}

impl Validator {
    /// Conformance of a data-type value to a profile (for elements allowing several type profiles).
    fn conforms_value(&self, value: &Value, profile_url: &str, ty: &str, depth: u32) -> bool {
        let mut run = Run::new(self, value, depth, true);
        run.apply_profile(profile_url, value, ty, &Loc::root(ty));
        !run.issues.iter().any(ValidationIssue::is_error)
    }
}

/// Is an extension with these contexts allowed on an element of type `host_type` at `host_path`?
/// (FHIR R4 §2.26.0.5 extension context; lenient for derived types.)
fn context_ok(contexts: &[(String, String)], host_type: &str, host_path: &str) -> bool {
    const QUANTITY: [&str; 6] = ["Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"];
    contexts.iter().any(|(t, e)| match t.as_str() {
        "element" => {
            let e = e.as_str();
            e == "Element"
                || e == host_type
                || e == host_path
                || (e.ends_with("[x]") && host_path.starts_with(e.trim_end_matches("[x]")))
                || ((e == "Resource" || e == "DomainResource") && !host_path.contains('.'))
                || (e == "Quantity" && QUANTITY.contains(&host_type))
                || (e == "BackboneElement" && host_type == "BackboneElement")
                || (host_path.len() > e.len() && host_path.ends_with(e) && host_path.as_bytes()[host_path.len() - e.len() - 1] == b'.')
        }
        _ => true,
    })
}

/// Resolve a reference inside a Bundle (FHIR R4 §2.36.4 "Resolving references in Bundles"): by `fullUrl`,
/// or `Type/id` against the entries' resources / the tail of their `fullUrl`.
pub fn resolve_in_bundle<'b>(bundle: &'b Value, reference: &str) -> Option<&'b Value> {
    let r = reference.find("/_history/").map_or(reference, |p| &reference[..p]);
    let entries = json_get(bundle, "entry")?.as_array()?;
    for e in entries {
        let Some(res) = json_get(e, "resource") else { continue };
        let full = json_get(e, "fullUrl").and_then(Value::as_str);
        if full == Some(r) {
            return Some(res);
        }
        if type_id_matches(r, json_get(res, "resourceType").and_then(Value::as_str), json_get(res, "id").and_then(Value::as_str)) {
            return Some(res);
        }
    }
    None
}

/// Does reference `r` (without `/_history/…`) name resource `t`/`id`: `T/id` or `…/T/id`?
fn type_id_matches(r: &str, t: Option<&str>, id: Option<&str>) -> bool {
    let (Some(t), Some(id)) = (t, id) else { return false };
    let tid_len = t.len() + 1 + id.len();
    if r.len() < tid_len || !r.ends_with(id) {
        return false;
    }
    let head = &r[..r.len() - id.len()];
    head.ends_with('/') && head[..head.len() - 1].ends_with(t) && (r.len() == tid_len || r.as_bytes()[r.len() - tid_len - 1] == b'/')
}

/// Target type of a literal reference `Patient/1`, `https://x/fhir/Patient/1/_history/2` (FHIR R4
/// §2.3.0.1 reference URL form); `None` for `urn:`/`#` references or other shapes.
pub fn reference_type(r: &str) -> Option<String> {
    reference_type_str(r).map(str::to_string)
}

fn reference_type_str(r: &str) -> Option<&str> {
    if r.starts_with('#') || r.starts_with("urn:") {
        return None;
    }
    let r = r.find("/_history/").map_or(r, |p| &r[..p]);
    let mut it = r.rsplit('/');
    let _id = it.next()?;
    let ty = it.next()?;
    (ty.starts_with(|c: char| c.is_ascii_uppercase()) && ty.chars().all(|c| c.is_ascii_alphanumeric())).then_some(ty)
}
