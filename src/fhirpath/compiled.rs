//! Search-parameter expressions compiled to a direct navigation plan.
//!
//! Most FHIR R4 `SearchParameter.expression`s are plain paths: `Patient.name`,
//! `Observation.code`, `(Observation.value as Quantity)`, `Observation.subject.where(resolve() is
//! Patient)`, or a `|` union of such paths. The general evaluator walks the syntax tree for them on
//! every resource (recursion, a memo check per node, a collection per sub-expression). A
//! [`Compiled`] expression keeps a flat list of steps for those shapes and runs them with the
//! evaluator's own navigation, type test and `resolve()` — the same functions, in the same order —
//! so its result is the evaluator's result (item for item, in document order); every other shape
//! runs through the general evaluator.
//!
//! Shapes with a plan (FHIRPath N1 §"Path selection", §5.2 `where`, §6.3 `as`/`ofType`, FHIR R4
//! §"FHIRPath in FHIR" `resolve()`):
//! * a path of member names, starting with a type name (`Observation.code`) or a member;
//! * `expr as T`, `expr.as(T)`, `expr.ofType(T)` anywhere on such a path;
//! * `expr.where(resolve() is T)`;
//! * `a | b` of shapes with a plan (duplicates removed as by `|`).
//!
//! Evaluation contract: that of [`super::evaluate_root`] (never fails; an evaluation error gives the
//! empty collection).

use super::eval::{self, Root, Step};
use super::{BinOp, Expr, Item};

/// A FHIRPath expression with, when its shape allows, a direct navigation plan (see the module docs).
/// Build with [`Compiled::new`], evaluate with [`Compiled::evaluate_root`].
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    expr: Expr,
    plan: Option<Plan>,
}

/// The steps of one path, or a union of two plans.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Plan {
    Path(Vec<Step>),
    Union(Box<Plan>, Box<Plan>),
}

impl Compiled {
    /// Compiles `expr` (a parsed expression): a plan when its shape is one of the module docs', the
    /// general evaluator otherwise. Never fails.
    pub fn new(expr: Expr) -> Compiled {
        let plan = plan(&expr);
        Compiled { expr, plan }
    }

    /// The parsed expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether the expression runs as a direct navigation plan (not the general evaluator).
    pub fn has_plan(&self) -> bool {
        self.plan.is_some()
    }

    /// Evaluates the expression on a prepared root: the same collection as
    /// `evaluate_root(self.expr(), root)` (document order, borrowing from the resource; errors give the
    /// empty collection). Spec: as [`super::evaluate`].
    pub fn evaluate_root<'a>(&self, root: &Root<'a>) -> Vec<Item<'a>> {
        match &self.plan {
            Some(p) => eval::run_plan(p, root),
            None => eval::evaluate_root(&self.expr, root),
        }
    }

    /// The general evaluator's result, also for expressions with a plan (tests compare the two).
    pub fn evaluate_root_general<'a>(&self, root: &Root<'a>) -> Vec<Item<'a>> {
        eval::evaluate_root(&self.expr, root)
    }
}

/// The plan of `e`, if its shape has one.
fn plan(e: &Expr) -> Option<Plan> {
    match e {
        Expr::Binary(BinOp::Union, l, r) => Some(Plan::Union(Box::new(plan(l)?), Box::new(plan(r)?))),
        _ => {
            let mut steps = Vec::new();
            path(e, &mut steps)?;
            Some(Plan::Path(steps))
        }
    }
}

/// Appends the steps of a path expression to `out`; `None` for any other shape.
fn path(e: &Expr, out: &mut Vec<Step>) -> Option<()> {
    match e {
        // a type name at the head filters the root by type, a member name navigates (as the evaluator)
        Expr::Member(None, name) => out.push(Step::Head(name.clone())),
        Expr::Member(Some(b), name) => {
            path(b, out)?;
            out.push(Step::Member(name.clone()));
        }
        Expr::As(b, t) => {
            path(b, out)?;
            out.push(Step::As(t.clone()));
        }
        Expr::Call(Some(b), f, args) if (f == "as" || f == "ofType") && args.len() == 1 => {
            let t = eval::type_arg_name(&args[0])?;
            path(b, out)?;
            out.push(Step::As(t));
        }
        Expr::Call(Some(b), f, args) if f == "where" && args.len() == 1 => {
            let Expr::Is(inner, t) = &args[0] else { return None };
            let Expr::Call(None, r, ra) = &**inner else { return None };
            if r != "resolve" || !ra.is_empty() {
                return None;
            }
            path(b, out)?;
            out.push(Step::WhereResolveIs(t.clone()));
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhirpath::parse;

    fn compiled(src: &str) -> Compiled {
        Compiled::new(parse(src).unwrap())
    }

    #[test]
    fn shapes_with_and_without_plan() {
        for src in [
            "Patient.name",
            "Observation.code",
            "(Observation.value as Quantity)",
            "Observation.value.as(Quantity)",
            "Observation.value.ofType(Period)",
            "Observation.subject.where(resolve() is Patient)",
            "Patient.name.family | Patient.name.given",
            "(Observation.value as Quantity) | (Observation.value as SampledData)",
            "name",
        ] {
            assert!(compiled(src).has_plan(), "{src}");
        }
        for src in [
            "Patient.name.where(use = 'official')",
            "Bundle.entry[0].resource",
            "Patient.extension('http://x').value",
            "Observation.subject.where(resolve().first() is Patient)",
            "Patient.deceased.exists() and Patient.deceased != false",
            "%resource.id",
            "Patient.name.first()",
        ] {
            assert!(!compiled(src).has_plan(), "{src}");
        }
    }

    fn same(a: &[Item<'_>], b: &[Item<'_>]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.value == y.value
                    && x.type_name == y.type_name
                    && x.fhir_type == y.fhir_type
                    && match (&x.value, &y.value) {
                        (std::borrow::Cow::Borrowed(p), std::borrow::Cow::Borrowed(q)) => std::ptr::eq(*p, *q),
                        (std::borrow::Cow::Owned(_), std::borrow::Cow::Owned(_)) => true,
                        _ => false,
                    }
            })
    }

    /// Plan and general evaluator agree on hand-made edge cases: choice types, primitive
    /// extensions (`_birthDate`), arrays, resolve() of contained, relative, absolute and typed
    /// references, a type name that does not match the root, duplicates in a union.
    #[test]
    fn plan_equals_general_on_edge_cases() {
        let cases: &[(&str, &str)] = &[
            (r##"{"resourceType":"Patient","id":"p","birthDate":"1948-04-05","_birthDate":{"extension":[{"url":"x","valueString":"y"}]},"name":[{"family":"山田","given":["太郎","次郎"]},{"text":"やまだ"}]}"##, "Patient.birthDate"),
            (r##"{"resourceType":"Patient","_birthDate":{"extension":[{"url":"x","valueString":"y"}]}}"##, "Patient.birthDate"),
            (r##"{"resourceType":"Patient","name":[{"family":"A","given":["B","B"]}]}"##, "Patient.name.given | Patient.name.given"),
            (r##"{"resourceType":"Patient","name":[{"family":"A"}]}"##, "Observation.code"),
            (r##"{"resourceType":"Observation","valueQuantity":{"value":1.50,"unit":"mg"}}"##, "(Observation.value as Quantity)"),
            (r##"{"resourceType":"Observation","valueString":"x"}"##, "(Observation.value as Quantity) | (Observation.value as string)"),
            (r##"{"resourceType":"Observation","effectivePeriod":{"start":"2020"}}"##, "Observation.effective.ofType(Period)"),
            (r##"{"resourceType":"Observation","subject":{"reference":"Patient/1"}}"##, "Observation.subject.where(resolve() is Patient)"),
            (r##"{"resourceType":"Observation","subject":{"reference":"Group/1"}}"##, "Observation.subject.where(resolve() is Patient)"),
            (r##"{"resourceType":"Observation","subject":{"reference":"http://x/fhir/Patient/1/_history/2"}}"##, "Observation.subject.where(resolve() is Patient)"),
            (r##"{"resourceType":"Observation","subject":{"reference":"#c"},"contained":[{"resourceType":"Patient","id":"c"}]}"##, "Observation.subject.where(resolve() is Patient)"),
            (r##"{"resourceType":"Observation","subject":{"type":"Patient","identifier":{"value":"1"}}}"##, "Observation.subject.where(resolve() is Patient)"),
            (r##"{"resourceType":"Observation","subject":{"reference":"urn:uuid:1"}}"##, "Observation.subject.where(resolve() is Patient)"),
            (r##"{"resourceType":"Observation","subject":{"reference":"Patient/1"}}"##, "Observation.subject.where(resolve() is NoSuchType)"),
            (r##"{"resourceType":"Observation","code":{"coding":[{"code":"a"},{"code":"b"}]}}"##, "code.coding.code"),
        ];
        for (json, src) in cases {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            let c = compiled(src);
            assert!(c.has_plan(), "{src}");
            let root = Root::new(&v);
            let (p, g) = (c.evaluate_root(&root), c.evaluate_root_general(&root));
            assert!(same(&p, &g), "{src} on {json}:\nplan {p:?}\ngeneral {g:?}");
        }
    }

    /// Every expression of every R4 (and gateway) SearchParameter that has a plan gives the general
    /// evaluator's result on every official R4 example of its resource type.
    #[test]
    fn plan_equals_general_on_r4_examples() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/standards/fhir-r4/examples");
        let dir = if dir.is_dir() { dir } else { std::path::PathBuf::from("/work/shared/standards/fhir-r4/examples") };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            assert!(std::env::var_os("CI").is_none(), "R4 examples missing at {}", dir.display());
            return;
        };
        let registry = crate::search::Registry::standard();
        let (mut examples, mut compared, mut planned_items) = (0usize, 0usize, 0usize);
        for f in rd.filter_map(Result::ok).map(|e| e.path()) {
            let Ok(text) = std::fs::read_to_string(&f) else { continue };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            let Some(rt) = v.get("resourceType").and_then(|t| t.as_str()) else { continue };
            examples += 1;
            let root = Root::new(&v);
            for p in registry.params_sorted(rt).iter() {
                let Some(c) = p.compiled else { continue };
                if !c.has_plan() {
                    continue;
                }
                let (a, b) = (c.evaluate_root(&root), c.evaluate_root_general(&root));
                assert!(same(&a, &b), "{} {rt}.{}: {:?}\nplan {a:?}\ngeneral {b:?}", f.display(), p.def.code, c.expr());
                compared += 1;
                planned_items += a.len();
            }
        }
        eprintln!("examples {examples}, (param, example) pairs compared {compared}, items {planned_items}");
        assert!(examples > 2000 && compared > 20_000 && planned_items > 10_000, "{examples} {compared} {planned_items}");
    }
}
