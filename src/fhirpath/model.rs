//! The FHIR R4 element-type table (`fhir_types.txt`, generated from the R4 StructureDefinitions by
//! `tests/fhirpath_typetable.rs`): which type each element has, choice elements (`value[x]`),
//! inline backbone elements and the base-type chain (`code` → `string`, `Age` → `Quantity`,
//! `Patient` → `DomainResource` → `Resource`). Parsed once, on first use.

use foldhash::HashMap;
use foldhash::HashMapExt;
use std::sync::OnceLock;

static TABLE: &str = include_str!("fhir_types.txt");

/// Kind of a FHIR type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Primitive,
    Complex,
    Resource,
}

/// How an element is typed.
#[derive(Debug, Clone)]
pub(crate) enum ElemType {
    /// One or more type codes (several only for a choice element).
    Types(Vec<&'static str>),
    /// Inline backbone element: children under the given context path; base type given.
    Backbone(&'static str, #[allow(dead_code)] &'static str),
}

#[derive(Debug, Clone)]
pub(crate) struct Elem {
    pub ty: ElemType,
    pub choice: bool,
}

pub(crate) struct Model {
    /// type name → (parent, kind)
    pub types: HashMap<&'static str, (Option<&'static str>, Kind)>,
    /// context (type name or backbone path) → element name (without `[x]`) → element
    pub elems: HashMap<&'static str, HashMap<&'static str, Elem>>,
    /// backbone path → its base type (`BackboneElement` / `Element`)
    pub backbone_parent: HashMap<&'static str, &'static str>,
}

pub(crate) fn model() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| {
        let mut m = Model {
            types: HashMap::new(),
            elems: HashMap::new(),
            backbone_parent: HashMap::new(),
        };
        // backbone paths must be 'static: they are substrings of the table ("E <ctx> ...")
        let mut ctx_paths: HashMap<String, &'static str> = HashMap::new();
        for line in TABLE.lines() {
            if let Some(rest) = line.strip_prefix("E ") {
                let ctx = rest.split(' ').next().unwrap_or("");
                ctx_paths.insert(ctx.to_string(), ctx);
            }
        }
        for line in TABLE.lines() {
            if let Some(rest) = line.strip_prefix("T ") {
                let mut it = rest.split(' ');
                let (Some(n), Some(p), Some(k)) = (it.next(), it.next(), it.next()) else {
                    continue;
                };
                let kind = match k {
                    "p" => Kind::Primitive,
                    "r" => Kind::Resource,
                    _ => Kind::Complex,
                };
                m.types.insert(n, ((p != "-").then_some(p), kind));
            } else if let Some(rest) = line.strip_prefix("E ") {
                let mut it = rest.split(' ');
                let Some(ctx) = it.next() else { continue };
                let mut map = HashMap::new();
                for e in it {
                    let Some((name, spec)) = e.split_once(':') else {
                        continue;
                    };
                    let (name, choice) = match name.strip_suffix("[x]") {
                        Some(n) => (n, true),
                        None => (name, false),
                    };
                    let ty = if let Some(parent) = spec.strip_prefix('=') {
                        let path = format!("{ctx}.{name}");
                        match ctx_paths.get(&path) {
                            Some(p) => {
                                m.backbone_parent.insert(p, parent);
                                ElemType::Backbone(p, parent)
                            }
                            // a backbone without own elements behaves as its base type
                            None => ElemType::Types(vec![parent]),
                        }
                    } else if let Some(r) = spec.strip_prefix('#') {
                        match ctx_paths.get(r) {
                            Some(p) => ElemType::Backbone(
                                p,
                                m.backbone_parent
                                    .get(p)
                                    .copied()
                                    .unwrap_or("BackboneElement"),
                            ),
                            None => ElemType::Types(vec!["BackboneElement"]),
                        }
                    } else {
                        ElemType::Types(spec.split(',').filter(|s| !s.is_empty()).collect())
                    };
                    map.insert(name, Elem { ty, choice });
                }
                m.elems.insert(ctx, map);
            }
        }
        // content references may point to backbones declared later: fix their parents
        let fix: Vec<(&'static str, &'static str, &'static str)> = m
            .elems
            .iter()
            .flat_map(|(c, es)| {
                es.iter().filter_map(move |(n, e)| match e.ty {
                    ElemType::Backbone(p, _) => Some((*c, *n, p)),
                    _ => None,
                })
            })
            .collect();
        for (c, n, p) in fix {
            let parent = m
                .backbone_parent
                .get(p)
                .copied()
                .unwrap_or("BackboneElement");
            if let Some(e) = m.elems.get_mut(c).and_then(|es| es.get_mut(n)) {
                e.ty = ElemType::Backbone(p, parent);
            }
        }
        // flatten: every context's map also holds the elements of its ancestors (the nearest
        // definition wins), so `element` is one lookup per navigation step instead of a walk up
        // the base-type chain (`Observation.id` → DomainResource → Resource)
        let ctxs: Vec<&'static str> = m.elems.keys().copied().collect();
        for ctx in ctxs {
            let mut inherited: Vec<(&'static str, Elem)> = Vec::new();
            let mut c = m.parent(ctx);
            let mut guard = 0;
            while let Some(cur) = c {
                if let Some(es) = m.elems.get(cur) {
                    for (n, e) in es {
                        if !inherited.iter().any(|(x, _)| x == n) {
                            inherited.push((n, e.clone()));
                        }
                    }
                }
                c = m.parent(cur);
                guard += 1;
                if guard > 16 {
                    break;
                }
            }
            if let Some(es) = m.elems.get_mut(ctx) {
                for (n, e) in inherited {
                    es.entry(n).or_insert(e);
                }
            }
        }
        m
    })
}

impl Model {
    /// The parent of a type or backbone context.
    pub fn parent(&self, ctx: &str) -> Option<&'static str> {
        if let Some((p, _)) = self.types.get(ctx) {
            return *p;
        }
        self.backbone_parent.get(ctx).copied()
    }

    /// Finds element `name` in context `ctx` or its ancestors (the maps are flattened at load:
    /// the first context on the chain that has a map decides).
    pub fn element(&self, ctx: &str, name: &str) -> Option<&Elem> {
        let mut c = Some(ctx);
        let mut guard = 0;
        while let Some(cur) = c {
            if let Some(m) = self.elems.get(cur) {
                return m.get(name);
            }
            c = self.parent(cur);
            guard += 1;
            if guard > 16 {
                break;
            }
        }
        None
    }

    /// The static copy of a type name (`"Patient"` → the table's `&'static str`).
    pub fn type_name(&self, name: &str) -> Option<&'static str> {
        self.types.get_key_value(name).map(|(k, _)| *k)
    }

    pub fn kind(&self, name: &str) -> Option<Kind> {
        self.types.get(name).map(|(_, k)| *k)
    }

    /// `sub` is `sup` or derives from it (`code` ⊂ `string`, `Age` ⊂ `Quantity`,
    /// `Patient` ⊂ `Resource`).
    pub fn is_subtype(&self, sub: &str, sup: &str) -> bool {
        let mut c = Some(sub);
        let mut guard = 0;
        while let Some(cur) = c {
            if cur == sup {
                return true;
            }
            c = self.parent(cur);
            guard += 1;
            if guard > 16 {
                break;
            }
        }
        false
    }

    /// The type whose JSON suffix is `suffix` among a choice element's types
    /// (`Quantity` → `Quantity`, `DateTime` → `dateTime`).
    pub fn choice_type(types: &[&'static str], suffix: &str) -> Option<&'static str> {
        types.iter().copied().find(|t| {
            let mut a = t.chars();
            let mut b = suffix.chars();
            match (a.next(), b.next()) {
                (Some(x), Some(y)) => x.to_ascii_uppercase() == y && a.as_str() == b.as_str(),
                _ => false,
            }
        })
    }
}
