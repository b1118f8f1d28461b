//! Evaluator: walks the AST over borrowed JSON (no copies of the resource).

use super::model::{model, ElemType, Kind, Model};
use super::value::{self, Dt, Qty};
use super::{json_get, obj_get, obj_get_underscore, BinOp, Expr, FhirPathError, Literal};
use rust_decimal::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::rc::Rc;

/// One item of a FHIRPath collection: a JSON value (borrowed from the resource, or owned for
/// computed results such as booleans and literals) and, when known, a type hint.
///
/// `type_name` is set for choice elements (`valueQuantity` → `"Quantity"`, `valueDateTime` →
/// `"DateTime"`: the JSON suffix) and by `resolve()` (the reference's target type, e.g.
/// `"Patient"`). Resources carry their type in `resourceType`. Computed system values are JSON:
/// integers and decimals as numbers (decimal text kept), dates/times as strings, quantities as
/// `{"value", "unit", "system", "code"}`.
#[derive(Debug, Clone)]
pub struct Item<'a> {
    /// The value.
    pub value: Cow<'a, Value>,
    /// Type hint when known (see type docs).
    pub type_name: Option<&'a str>,
    /// The FHIRPath type of the item when known: a FHIR type name for resource elements
    /// (`"code"`, `"HumanName"`, `"Patient"`, `"BackboneElement"`), `"System.Integer"`,
    /// `"System.Decimal"`, `"System.String"`, `"System.Boolean"`, `"System.Date"`,
    /// `"System.DateTime"`, `"System.Time"`, `"System.Quantity"` for computed values.
    pub fhir_type: Option<&'static str>,
}

/// Caller-supplied environment for [`try_evaluate_with`]: extra `%variables` and the
/// `%context` focus (defaults to the resource).
#[derive(Debug, Clone, Default)]
pub struct Env<'a> {
    /// `%name` → collection.
    pub variables: HashMap<String, Vec<Item<'a>>>,
    /// Unknown element names on typed nodes are errors (FHIRPath "strict" / semantic mode);
    /// a leading type name that does not match the focus is an error too, and so is
    /// `(x as T).name` when `T` has no element `name`.
    pub strict: bool,
    /// `skip` / `take` / `first` / `last` / `tail` directly on `children()` / `descendants()`
    /// (whose order is undefined) are errors.
    pub check_ordered_functions: bool,
}

type Res<T> = Result<T, FhirPathError>;

fn err<T>(msg: impl Into<String>) -> Res<T> {
    Err(FhirPathError::Evaluation(msg.into()))
}

// ---------------------------------------------------------------------------------------------
// Internal values

#[derive(Debug, Clone)]
enum J<'a> {
    B(&'a Value),
    O(Rc<Value>),
}

impl J<'_> {
    fn get(&self) -> &Value {
        match self {
            J::B(v) => v,
            J::O(v) => v,
        }
    }
}

/// A FHIR element of the resource (or owned JSON).
#[derive(Debug, Clone)]
struct Node<'a> {
    /// The value; `None` for a primitive that only has its `_name` sibling (extensions / id).
    val: Option<J<'a>>,
    /// The `_name` sibling of a primitive.
    ext: Option<&'a Value>,
    /// FHIR type name or backbone path (`Patient.contact`), when known.
    ty: Option<&'static str>,
    /// Exported type hint (choice suffix / resolved reference type).
    hint: Option<&'a str>,
    /// The enclosing resource (for contained references).
    res: Option<&'a Value>,
}

#[derive(Debug, Clone)]
enum V<'a> {
    Node(Node<'a>),
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(String),
    Date(Dt),
    DateTime(Dt),
    Time(Dt),
    Qty(Qty),
}

/// A system-level view of an item (FHIR primitives converted).
#[derive(Debug, Clone)]
enum P<'x> {
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(Cow<'x, str>),
    Date(Dt),
    DateTime(Dt),
    Time(Dt),
    Qty(Qty),
}

const UCUM: &str = "http://unitsofmeasure.org";

fn node_json<'x>(n: &'x Node<'_>) -> Option<&'x Value> {
    n.val.as_ref().map(J::get)
}

fn num_prim(n: &serde_json::Number, ty: Option<&str>) -> P<'static> {
    let text = n.to_string();
    let as_dec = || {
        Decimal::from_str_exact(&text)
            .or_else(|_| Decimal::from_scientific(&text))
            .ok()
    };
    let integer_type = matches!(
        ty,
        Some("integer" | "positiveInt" | "unsignedInt" | "integer64")
    );
    if ty != Some("decimal") && !text.contains(['.', 'e', 'E']) {
        if let Ok(i) = text.parse::<i64>() {
            return P::Int(i);
        }
    }
    match as_dec() {
        Some(d) if integer_type && d.fract().is_zero() => {
            d.to_i64().map(P::Int).unwrap_or(P::Dec(d))
        }
        Some(d) => P::Dec(d),
        None => P::Str(Cow::Owned(text)),
    }
}

fn quantity_of(o: &Map<String, Value>) -> Option<Qty> {
    let v = match o.get("value")? {
        Value::Number(n) => match num_prim(n, Some("decimal")) {
            P::Dec(d) => d,
            P::Int(i) => Decimal::from(i),
            _ => return None,
        },
        _ => return None,
    };
    let code = o.get("code").and_then(Value::as_str);
    let ucum = o.get("system").and_then(Value::as_str) == Some(UCUM);
    let unit = match (code, ucum) {
        (Some(c), true) => c.to_string(),
        (Some(c), false) if o.get("system").is_none() => c.to_string(),
        _ => o
            .get("unit")
            .and_then(Value::as_str)
            .or(code)
            .unwrap_or("1")
            .to_string(),
    };
    // calendar words in unit text (`4 days`) stay calendar units
    Some(Qty { value: v, unit })
}

impl<'a> V<'a> {
    fn prim(&self) -> Option<P<'_>> {
        Some(match self {
            V::Bool(b) => P::Bool(*b),
            V::Int(i) => P::Int(*i),
            V::Dec(d) => P::Dec(*d),
            V::Str(s) => P::Str(Cow::Borrowed(s)),
            V::Date(d) => P::Date(*d),
            V::DateTime(d) => P::DateTime(*d),
            V::Time(d) => P::Time(*d),
            V::Qty(q) => P::Qty(q.clone()),
            V::Node(n) => match node_json(n)? {
                Value::Bool(b) => P::Bool(*b),
                Value::Number(x) => num_prim(x, n.ty),
                Value::String(s) => match n.ty {
                    Some("date") => value::parse_date(s)
                        .map(P::Date)
                        .unwrap_or(P::Str(Cow::Borrowed(s))),
                    Some("dateTime" | "instant") => value::parse_datetime(s)
                        .map(P::DateTime)
                        .unwrap_or(P::Str(Cow::Borrowed(s))),
                    Some("time") => value::parse_time(s)
                        .map(P::Time)
                        .unwrap_or(P::Str(Cow::Borrowed(s))),
                    _ => P::Str(Cow::Borrowed(s)),
                },
                Value::Object(o) => {
                    let quantity_like = match n.ty {
                        Some(t) => model().is_subtype(t, "Quantity"),
                        None => {
                            o.get("value").is_some_and(Value::is_number)
                                && !o.contains_key("resourceType")
                        }
                    };
                    if !quantity_like {
                        return None;
                    }
                    P::Qty(quantity_of(o)?)
                }
                _ => return None,
            },
        })
    }

    fn node(v: &'a Value, ty: Option<&'static str>, res: Option<&'a Value>) -> Self {
        V::Node(Node {
            val: Some(J::B(v)),
            ext: None,
            ty,
            hint: None,
            res,
        })
    }

    fn is_untyped_node(&self) -> bool {
        matches!(self, V::Node(n) if n.ty.is_none())
    }
}

fn resource_type_of(v: &Value) -> Option<&'static str> {
    json_get(v, "resourceType")
        .and_then(Value::as_str)
        .and_then(|rt| model().type_name(rt))
}

fn root_node(resource: &Value) -> V<'_> {
    V::node(resource, resource_type_of(resource), Some(resource))
}

/// Converts an internal value to the public item.
fn to_item<'a>(v: V<'a>) -> Option<Item<'a>> {
    let sys = match &v {
        V::Node(_) => None,
        V::Bool(_) => Some("System.Boolean"),
        V::Int(_) => Some("System.Integer"),
        V::Dec(_) => Some("System.Decimal"),
        V::Str(_) => Some("System.String"),
        V::Date(_) => Some("System.Date"),
        V::DateTime(_) => Some("System.DateTime"),
        V::Time(_) => Some("System.Time"),
        V::Qty(_) => Some("System.Quantity"),
    };
    let owned = |v: Value| {
        Some(Item {
            value: Cow::Owned(v),
            type_name: None,
            fhir_type: sys,
        })
    };
    match v {
        V::Node(n) => {
            let hint = n.hint;
            let fhir_type = n.ty.map(|t| {
                if t.contains('.') {
                    model().parent(t).unwrap_or("BackboneElement")
                } else {
                    t
                }
            });
            match n.val? {
                J::B(v) => Some(Item {
                    value: Cow::Borrowed(v),
                    type_name: hint,
                    fhir_type,
                }),
                J::O(v) => Some(Item {
                    value: Cow::Owned((*v).clone()),
                    type_name: n.ty,
                    fhir_type,
                }),
            }
        }
        V::Bool(b) => owned(Value::Bool(b)),
        V::Int(i) => owned(Value::from(i)),
        V::Dec(d) => owned(serde_json::from_str(&d.to_string()).unwrap_or(Value::Null)),
        V::Str(s) => owned(Value::String(s)),
        V::Date(d) => owned(Value::String(value::fmt_date(&d))),
        V::DateTime(d) => owned(Value::String(value::fmt_datetime(&d))),
        V::Time(d) => owned(Value::String(value::fmt_time(&d))),
        V::Qty(q) => {
            let mut m = Map::new();
            m.insert(
                "value".into(),
                serde_json::from_str(&q.value.to_string()).unwrap_or(Value::Null),
            );
            m.insert("unit".into(), Value::String(q.unit.clone()));
            if value::calendar_unit(&q.unit).is_none() {
                m.insert("system".into(), Value::String(UCUM.into()));
                m.insert("code".into(), Value::String(q.unit));
            }
            owned(Value::Object(m))
        }
    }
}

/// Converts a public item to an internal value.
fn from_item<'a>(i: &Item<'a>, resource: &'a Value) -> V<'a> {
    let ty = match &*i.value {
        Value::Object(o) if obj_get(o, "resourceType").is_some() => resource_type_of(&i.value),
        _ => i.type_name.and_then(|t| {
            let m = model();
            m.type_name(t).or_else(|| {
                // choice suffix `DateTime` → `dateTime`
                let mut c = t.chars();
                let first = c.next()?.to_ascii_lowercase();
                m.type_name(&format!("{first}{}", c.as_str()))
            })
        }),
    };
    let val = match &i.value {
        Cow::Borrowed(v) => J::B(v),
        Cow::Owned(v) => J::O(Rc::new(v.clone())),
    };
    V::Node(Node {
        val: Some(val),
        ext: None,
        ty,
        hint: i.type_name,
        res: Some(resource),
    })
}

// ---------------------------------------------------------------------------------------------
// Public entry points

struct Ctx<'a, 'e> {
    resource: &'a Value,
    context: &'e [V<'a>],
    env: Option<&'e Env<'a>>,
    lenient: bool,
    strict: bool,
    check_ordered: bool,
    /// `now()` of this evaluation: read from the clock on first use, then the same for the whole
    /// expression (FHIRPath N1 §"now": the same value within one evaluation).
    now: std::cell::Cell<Option<Dt>>,
    /// Results of focus-independent sub-expressions inside `where` / `select` / `all` / `exists`
    /// … criteria (e.g. `%resource.descendants().reference | …` in R4 `dom-3`), computed once per
    /// evaluation instead of once per item. Keyed by the sub-expression's address: the parsed
    /// expression outlives the evaluation, so addresses are stable and unique meanwhile.
    memo: std::cell::RefCell<Vec<(*const Expr, Option<Vec<V<'a>>>)>>,
    /// `descendants()` of one borrowed node, by the node's JSON address and FHIR type, reused
    /// when an expression walks the same tree several times (`dom-3` does it four times).
    #[allow(clippy::type_complexity)]
    descendants: std::cell::RefCell<
        Vec<((*const Value, Option<*const Value>), Option<&'static str>, Rc<Vec<V<'a>>>)>,
    >,
}

impl Ctx<'_, '_> {
    fn now(&self) -> Dt {
        match self.now.get() {
            Some(d) => d,
            None => {
                let d = now_dt();
                self.now.set(Some(d));
                d
            }
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Scope<'s, 'a> {
    this: Option<&'s V<'a>>,
    index: Option<i64>,
    total: Option<&'s [V<'a>]>,
}

fn now_dt() -> Dt {
    let t = time::OffsetDateTime::now_utc();
    Dt {
        y: t.year(),
        mo: u8::from(t.month()) as u32,
        d: t.day() as u32,
        h: t.hour() as u32,
        mi: t.minute() as u32,
        s: t.second() as u32,
        ms: t.millisecond() as u32,
        prec: 7,
        tz: Some(0),
    }
}

fn run<'a>(
    expr: &Expr,
    focus: Vec<V<'a>>,
    resource: &'a Value,
    env: Option<&Env<'a>>,
    lenient: bool,
) -> Res<Vec<Item<'a>>> {
    let ctx = Ctx {
        resource,
        context: &focus,
        env,
        lenient,
        strict: env.is_some_and(|e| e.strict),
        check_ordered: env.is_some_and(|e| e.check_ordered_functions),
        now: std::cell::Cell::new(None),
        memo: std::cell::RefCell::new(Vec::new()),
        descendants: std::cell::RefCell::new(Vec::new()),
    };
    let out = eval(expr, &focus, Scope::default(), &ctx)?;
    Ok(out.into_iter().filter_map(to_item).collect())
}

/// Evaluates `expr` with the resource as root and focus.
///
/// Input: a parsed expression and a FHIR resource in JSON. Output: the resulting collection in
/// document order (borrowing from `resource` where possible). Never fails: evaluation errors give
/// the empty collection, and `as` on several items filters like `ofType` (R4 search parameters
/// such as `dosageInstruction.extension(…).value.as(Period)` rely on it). Use
/// [`try_evaluate`] for spec-exact errors.
/// Spec: FHIRPath N1 §"Path selection", FHIR R4 §"FHIRPath in FHIR" (choice types, `resolve()`).
pub fn evaluate<'a>(expr: &Expr, resource: &'a Value) -> Vec<Item<'a>> {
    run(expr, vec![root_node(resource)], resource, None, true).unwrap_or_default()
}

/// A resource prepared as the root of many evaluations: its FHIR type is looked up once (search-index
/// extraction evaluates every search parameter of the type on the same resource). See [`evaluate_root`].
pub struct Root<'a> {
    resource: &'a Value,
    node: V<'a>,
}

impl<'a> Root<'a> {
    /// Prepares `resource` (a FHIR resource in JSON) as an evaluation root.
    pub fn new(resource: &'a Value) -> Root<'a> {
        Root { resource, node: root_node(resource) }
    }
}

/// One step of a [`super::compiled::Plan`] path (see `compiled.rs`): the evaluator's own operation for
/// that syntax, without the tree walk.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    /// The first name of a path, navigated in root position: a type name (`Observation` in
    /// `Observation.code`) keeps the focus items of that type, a member name navigates.
    Head(String),
    /// `.name`: the children named `name` (choice types and primitive extensions as `navigate_node`).
    Member(String),
    /// `as T` / `.as(T)` / `.ofType(T)`: the items of type `T` (lenient `as`: filters like `ofType`).
    As(String),
    /// `.where(resolve() is T)`: the items whose `resolve()` is one item of type `T`.
    WhereResolveIs(String),
}

/// The type name of a one-argument `as(…)` / `ofType(…)` call (`Quantity`, `FHIR.string`), as the
/// evaluator reads it; `None` when the argument is not a type name.
pub(super) fn type_arg_name(e: &Expr) -> Option<String> {
    type_arg(Some(e)).ok().map(Cow::into_owned)
}

/// Runs a compiled plan on a prepared root: the result of the general evaluator on the expression the
/// plan was compiled from (same steps, same functions; an error gives the empty collection).
pub(super) fn run_plan<'a>(plan: &super::compiled::Plan, root: &Root<'a>) -> Vec<Item<'a>> {
    let focus = [root.node.clone()];
    let ctx = Ctx {
        resource: root.resource,
        context: &focus,
        env: None,
        lenient: true,
        strict: false,
        check_ordered: false,
        now: std::cell::Cell::new(None),
        memo: std::cell::RefCell::new(Vec::new()),
        descendants: std::cell::RefCell::new(Vec::new()),
    };
    match plan_values(plan, &focus, &ctx) {
        Ok(out) => out.into_iter().filter_map(to_item).collect(),
        Err(_) => Vec::new(),
    }
}

fn plan_values<'a>(plan: &super::compiled::Plan, focus: &[V<'a>], ctx: &Ctx<'a, '_>) -> Res<Vec<V<'a>>> {
    use super::compiled::Plan;
    match plan {
        Plan::Union(l, r) => {
            let a = plan_values(l, focus, ctx)?;
            let b = plan_values(r, focus, ctx)?;
            Ok(distinct(a.into_iter().chain(b)))
        }
        Plan::Path(steps) => {
            // The first step reads the focus in place (no copy of it per evaluation: one allocation less
            // for each search parameter of each resource); then two buffers alternate.
            let Some((first, rest)) = steps.split_first() else { return Ok(focus.to_vec()) };
            let mut cur: Vec<V<'a>> = Vec::new();
            plan_step(first, focus, ctx, &mut cur)?;
            let mut next: Vec<V<'a>> = Vec::new();
            for step in rest {
                if cur.is_empty() {
                    break;
                }
                next.clear();
                plan_step(step, &cur, ctx, &mut next)?;
                std::mem::swap(&mut cur, &mut next);
            }
            Ok(cur)
        }
    }
}

/// One [`Step`] of a plan path on `src`, appending its result to `out`.
fn plan_step<'a>(step: &Step, src: &[V<'a>], ctx: &Ctx<'a, '_>, out: &mut Vec<V<'a>>) -> Res<()> {
    match step {
        Step::Head(name) => navigate(src, name, true, ctx, out),
        Step::Member(name) => navigate(src, name, false, ctx, out),
        Step::As(t) => {
            for i in src {
                if type_matches(i, t, true)? {
                    out.push(i.clone());
                }
            }
            Ok(())
        }
        Step::WhereResolveIs(t) => {
            let mut r = Vec::new();
            for i in src {
                r.clear();
                resolve(i, ctx, &mut r);
                if let Some(v) = single(&r, "is")? {
                    if type_matches(v, t, false)? {
                        out.push(i.clone());
                    }
                }
            }
            Ok(())
        }
    }
}

/// [`evaluate`] on a prepared root: the same collection as `evaluate(expr, resource)` for the resource the
/// root was made from (document order, borrowing from it; never fails — errors give the empty
/// collection). Spec: as [`evaluate`].
pub fn evaluate_root<'a>(expr: &Expr, root: &Root<'a>) -> Vec<Item<'a>> {
    run(expr, vec![root.node.clone()], root.resource, None, true).unwrap_or_default()
}

/// Evaluates `expr` on a given focus collection (e.g. a SearchParameter component expression on
/// a `useContext` element), with `resource` as `%resource`.
/// Input/output as [`evaluate`].
pub fn evaluate_on<'a>(expr: &Expr, focus: &[Item<'a>], resource: &'a Value) -> Vec<Item<'a>> {
    let f = focus.iter().map(|i| from_item(i, resource)).collect();
    run(expr, f, resource, None, true).unwrap_or_default()
}

/// Like [`evaluate`], but evaluation errors (type errors, several items where one is expected,
/// unknown type names, …) are returned as [`FhirPathError::Evaluation`].
pub fn try_evaluate<'a>(expr: &Expr, resource: &'a Value) -> Result<Vec<Item<'a>>, FhirPathError> {
    run(expr, vec![root_node(resource)], resource, None, false)
}

/// Like [`evaluate_on`], with errors (see [`try_evaluate`]).
pub fn try_evaluate_on<'a>(
    expr: &Expr,
    focus: &[Item<'a>],
    resource: &'a Value,
) -> Result<Vec<Item<'a>>, FhirPathError> {
    let f = focus.iter().map(|i| from_item(i, resource)).collect();
    run(expr, f, resource, None, false)
}

/// Like [`try_evaluate`] with an environment: extra `%variables` and strict mode (see [`Env`]).
/// `focus` is `%context` and the initial focus (`None`: the resource).
pub fn try_evaluate_with<'a>(
    expr: &Expr,
    resource: &'a Value,
    focus: Option<&[Item<'a>]>,
    env: &Env<'a>,
) -> Result<Vec<Item<'a>>, FhirPathError> {
    let f = match focus {
        Some(f) => f.iter().map(|i| from_item(i, resource)).collect(),
        None => vec![root_node(resource)],
    };
    run(expr, f, resource, Some(env), false)
}

// ---------------------------------------------------------------------------------------------
// Navigation

const CHOICE_SUFFIXES: &[&str] = &[
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "CodeableConcept",
    "Coding",
    "ContactDetail",
    "ContactPoint",
    "Contributor",
    "Count",
    "DataRequirement",
    "Distance",
    "Dosage",
    "Duration",
    "Expression",
    "HumanName",
    "Identifier",
    "Meta",
    "Money",
    "ParameterDefinition",
    "Period",
    "Quantity",
    "Range",
    "Ratio",
    "Reference",
    "RelatedArtifact",
    "SampledData",
    "Signature",
    "Timing",
    "TriggerDefinition",
    "UsageContext",
    "Base64Binary",
    "Boolean",
    "Canonical",
    "Code",
    "Date",
    "DateTime",
    "Decimal",
    "Id",
    "Instant",
    "Integer",
    "Markdown",
    "Oid",
    "PositiveInt",
    "String",
    "Time",
    "UnsignedInt",
    "Uri",
    "Url",
    "Uuid",
];

fn lower_first_static(m: &Model, s: &str) -> Option<&'static str> {
    if let Some(t) = m.type_name(s) {
        return Some(t);
    }
    let mut c = s.chars();
    let f = c.next()?.to_ascii_lowercase();
    m.type_name(&format!("{f}{}", c.as_str()))
}

/// Pushes the elements of `c` (value) / `e` (the `_name` sibling), arrays aligned.
fn push_elems<'a>(
    c: Option<&'a Value>,
    e: Option<&'a Value>,
    ty: Option<&'static str>,
    hint: Option<&'a str>,
    res: Option<&'a Value>,
    out: &mut Vec<V<'a>>,
) {
    let m = model();
    let mk = |v: Option<&'a Value>, x: Option<&'a Value>| {
        let v = v.filter(|v| !v.is_null());
        let x = x.filter(|x| !x.is_null());
        if v.is_none() && x.is_none() {
            return None;
        }
        // a resource inside (contained, Bundle.entry.resource, Parameters.parameter.resource)
        let (ty, res) = match v.and_then(resource_type_of) {
            Some(rt) => (Some(rt), v),
            None => (ty, res),
        };
        let _ = m;
        Some(V::Node(Node {
            val: v.map(J::B),
            ext: x,
            ty,
            hint,
            res,
        }))
    };
    match (c, e) {
        (Some(Value::Array(a)), ex) => {
            let ea = ex.and_then(Value::as_array);
            for (i, v) in a.iter().enumerate() {
                if let Some(n) = mk(Some(v), ea.and_then(|ea| ea.get(i))) {
                    out.push(n);
                }
            }
        }
        (None, Some(Value::Array(ea))) => {
            for x in ea {
                if let Some(n) = mk(None, Some(x)) {
                    out.push(n);
                }
            }
        }
        (v, x) => {
            if let Some(n) = mk(v, x) {
                out.push(n);
            }
        }
    }
}

fn child_ty(_m: &Model, ty: &ElemType, idx: usize) -> Option<&'static str> {
    match ty {
        ElemType::Types(ts) => ts.get(idx).copied(),
        ElemType::Backbone(p, _) => Some(p),
    }
}

/// Children named `name` of a node.
fn navigate_node<'a>(
    n: &Node<'a>,
    name: &str,
    strict: bool,
    spec_mode: bool,
    out: &mut Vec<V<'a>>,
) -> Res<()> {
    let m = model();
    let v = match &n.val {
        Some(J::B(v)) => Some(*v),
        Some(J::O(rc)) => {
            // owned JSON: navigate a copy, children owned
            let mut tmp = Vec::new();
            let o = rc.as_ref();
            let shadow: &Value = o;
            // SAFETY-free approach: clone the children into new Rcs
            if let Value::Object(obj) = shadow {
                let untyped_prim = |c: &Value| match c {
                    Value::String(_) => m.type_name("string"),
                    Value::Bool(_) => m.type_name("boolean"),
                    Value::Number(x) => m.type_name(if matches!(num_prim(x, None), P::Int(_)) {
                        "integer"
                    } else {
                        "decimal"
                    }),
                    _ => None,
                };
                let push = |c: &Value, ty: Option<&'static str>, tmp: &mut Vec<V<'a>>| match c {
                    Value::Array(a) => {
                        for x in a.iter().filter(|x| !x.is_null()) {
                            tmp.push(V::Node(Node {
                                val: Some(J::O(Rc::new(x.clone()))),
                                ext: None,
                                ty,
                                hint: None,
                                res: n.res,
                            }));
                        }
                    }
                    Value::Null => {}
                    x => tmp.push(V::Node(Node {
                        val: Some(J::O(Rc::new(x.clone()))),
                        ext: None,
                        ty,
                        hint: None,
                        res: n.res,
                    })),
                };
                let elem = n.ty.and_then(|t| m.element(t, name));
                match elem {
                    Some(e) if e.choice => {
                        if let ElemType::Types(ts) = &e.ty {
                            for (k, c) in obj {
                                if let Some(suf) = k.strip_prefix(name) {
                                    if let Some(t) = Model::choice_type(ts, suf) {
                                        push(c, Some(t), &mut tmp);
                                    }
                                }
                            }
                        }
                    }
                    Some(e) => {
                        if let Some(c) = obj_get(obj, name) {
                            push(c, child_ty(m, &e.ty, 0), &mut tmp);
                        }
                    }
                    None => {
                        if let Some(c) = obj_get(obj, name) {
                            let ty = if n.ty.is_none() {
                                untyped_prim(c)
                            } else {
                                None
                            };
                            push(c, ty, &mut tmp);
                        }
                    }
                }
            } else if name == "value" {
                tmp.push(V::Node(n.clone()));
            }
            out.extend(tmp);
            return Ok(());
        }
        None => None,
    };
    let obj = match v {
        Some(Value::Object(o)) => Some(o),
        Some(_) | None => {
            // a primitive: `value` is itself, `id` / `extension` come from the `_name` sibling
            if name == "value" && v.is_some() {
                out.push(V::Node(Node {
                    ext: None,
                    ..n.clone()
                }));
                return Ok(());
            }
            if let Some(Value::Object(x)) = n.ext {
                let ty = match name {
                    "extension" => m.type_name("Extension"),
                    "id" => m.type_name("string"),
                    _ => None,
                };
                push_elems(obj_get(x, name), None, ty, None, n.res, out);
            }
            return Ok(());
        }
    };
    let Some(o) = obj else { return Ok(()) };
    if let Some(t) = n.ty {
        if let Some(e) = m.element(t, name) {
            if e.choice {
                if let ElemType::Types(ts) = &e.ty {
                    for (k, c) in o {
                        let Some(suf) = k.strip_prefix(name) else {
                            continue;
                        };
                        if let Some(t) = Model::choice_type(ts, suf) {
                            let ext = obj_get_underscore(o, k);
                            push_elems(Some(c), ext, Some(t), Some(suf), n.res, out);
                        }
                    }
                    // primitive choice with only `_valueString`
                    for (k, x) in o {
                        let Some(suf) = k.strip_prefix('_').and_then(|k| k.strip_prefix(name))
                        else {
                            continue;
                        };
                        if let Some(t) = Model::choice_type(ts, suf) {
                            if obj_get(o, &k[1..]).is_none() {
                                push_elems(None, Some(x), Some(t), Some(suf), n.res, out);
                            }
                        }
                    }
                }
                return Ok(());
            }
            let c = obj_get(o, name);
            let x = if c.is_none_or(|c| {
                !c.is_object() && !c.is_array()
                    || c.as_array()
                        .is_some_and(|a| a.iter().any(|i| !i.is_object()))
            }) {
                obj_get_underscore(o, name)
            } else {
                None
            };
            push_elems(c, x, child_ty(m, &e.ty, 0), None, n.res, out);
            return Ok(());
        }
        // `valueQuantity` names a choice element by its JSON key: not a FHIRPath element name
        if spec_mode {
            for (i, _) in name.char_indices().skip(1) {
                let (base, suf) = name.split_at(i);
                if suf.starts_with(|c: char| c.is_ascii_uppercase())
                    && m.element(t, base).is_some_and(|e| e.choice)
                {
                    return err(format!(
                        "`{name}` is not an element of {t}: use `{base}` (choice element)"
                    ));
                }
            }
        }
        if strict && !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            return err(format!("unknown element `{name}` on type {t}"));
        }
    }
    // untyped (or unknown element): plain JSON lookup, choice elements by suffix
    if let Some(c) = obj_get(o, name) {
        push_elems(Some(c), obj_get_underscore(o, name), None, None, n.res, out);
        return Ok(());
    }
    for (k, c) in o {
        if let Some(suffix) = k.strip_prefix(name) {
            if suffix.starts_with(|ch: char| ch.is_ascii_uppercase())
                && CHOICE_SUFFIXES.contains(&suffix)
            {
                push_elems(
                    Some(c),
                    None,
                    lower_first_static(m, suffix),
                    Some(suffix),
                    n.res,
                    out,
                );
            }
        }
    }
    if let Some(x) = obj_get_underscore(o, name) {
        push_elems(None, Some(x), None, None, n.res, out);
    }
    Ok(())
}

fn navigate<'a>(
    focus: &[V<'a>],
    name: &str,
    root_position: bool,
    ctx: &Ctx<'a, '_>,
    out: &mut Vec<V<'a>>,
) -> Res<()> {
    if root_position && name.starts_with(|c: char| c.is_ascii_uppercase()) {
        // a type name at the start of a path filters the focus by type
        let before = out.len();
        for i in focus {
            // Fast path, same answer as `type_matches`: a node typed exactly `name` (the resource root
            // of every search-parameter expression, `Observation.code` on an Observation) — a known
            // model type, so no type-table lookups and no `type_of` are needed.
            if matches!(i, V::Node(n) if n.ty == Some(name) && !name.contains('.')) || type_matches(i, name, false)? {
                out.push(i.clone());
            }
        }
        if ctx.strict && out.len() == before && !focus.is_empty() {
            return err(format!("the focus is not a {name}"));
        }
        return Ok(());
    }
    for item in focus {
        if let V::Node(n) = item {
            navigate_node(n, name, ctx.strict, !ctx.lenient, out)?;
        }
    }
    Ok(())
}

/// Direct children of a node (for `children()` / `descendants()`).
fn children_of<'a>(item: &V<'a>, out: &mut Vec<V<'a>>) {
    let V::Node(n) = item else { return };
    let Some(J::B(Value::Object(o))) = n.val.clone() else {
        if let Some(J::O(rc)) = &n.val {
            if let Value::Object(o) = rc.as_ref() {
                for (k, c) in o {
                    if k == "resourceType" {
                        continue;
                    }
                    let vs: Vec<&Value> = match c {
                        Value::Array(a) => a.iter().collect(),
                        x => vec![x],
                    };
                    for x in vs.into_iter().filter(|x| !x.is_null()) {
                        out.push(V::Node(Node {
                            val: Some(J::O(Rc::new(x.clone()))),
                            ext: None,
                            ty: None,
                            hint: None,
                            res: n.res,
                        }));
                    }
                }
            }
        } else if let Some(Value::Object(x)) = n.ext {
            push_elems(
                x.get("extension"),
                None,
                model().type_name("Extension"),
                None,
                n.res,
                out,
            );
        }
        return;
    };
    let m = model();
    // `_name` siblings (primitive extensions) are rare: only look them up when there are any
    let has_underscore = o.keys().any(|k| k.starts_with('_'));
    for (k, c) in o {
        if k == "resourceType" {
            continue;
        }
        if let Some(base) = k.strip_prefix('_') {
            if obj_get(o, base).is_none() {
                // primitive with only extensions
                let ty =
                    n.ty.and_then(|t| m.element(t, base))
                        .and_then(|e| child_ty(m, &e.ty, 0));
                push_elems(None, Some(c), ty, None, n.res, out);
            }
            continue;
        }
        let mut ty = None;
        let mut hint = None;
        if let Some(t) = n.ty {
            match m.element(t, k) {
                Some(e) if !e.choice => ty = child_ty(m, &e.ty, 0),
                _ => {
                    // choice: find the element whose name prefixes k
                    for (i, _) in k.char_indices().skip(1) {
                        let (base, suf) = k.split_at(i);
                        if !suf.starts_with(|c: char| c.is_ascii_uppercase()) {
                            continue;
                        }
                        if let Some(e) = m.element(t, base) {
                            if let (true, ElemType::Types(ts)) = (e.choice, &e.ty) {
                                ty = Model::choice_type(ts, suf);
                                hint = Some(suf);
                                break;
                            }
                        }
                    }
                }
            }
        }
        let ext = if has_underscore {
            obj_get_underscore(o, k)
        } else {
            None
        };
        push_elems(Some(c), ext, ty, hint, n.res, out);
    }
}

// ---------------------------------------------------------------------------------------------
// Types

const SYSTEM_TYPES: &[&str] = &[
    "Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity",
];

/// (namespace, name) of an item's type.
fn type_of(v: &V<'_>) -> (&'static str, Cow<'static, str>) {
    let sys = |n: &'static str| ("System", Cow::Borrowed(n));
    match v {
        V::Bool(_) => sys("Boolean"),
        V::Int(_) => sys("Integer"),
        V::Dec(_) => sys("Decimal"),
        V::Str(_) => sys("String"),
        V::Date(_) => sys("Date"),
        V::DateTime(_) => sys("DateTime"),
        V::Time(_) => sys("Time"),
        V::Qty(_) => sys("Quantity"),
        V::Node(n) => match n.ty {
            Some(t) if t.contains('.') => (
                "FHIR",
                Cow::Borrowed(model().parent(t).unwrap_or("BackboneElement")),
            ),
            Some(t) => ("FHIR", Cow::Borrowed(t)),
            None => match node_json(n) {
                Some(Value::Bool(_)) => ("FHIR", Cow::Borrowed("boolean")),
                Some(Value::Number(x)) => (
                    "FHIR",
                    Cow::Borrowed(if matches!(num_prim(x, None), P::Int(_)) {
                        "integer"
                    } else {
                        "decimal"
                    }),
                ),
                Some(Value::String(_)) => ("FHIR", Cow::Borrowed("string")),
                Some(Value::Object(o)) => match o.get("resourceType").and_then(Value::as_str) {
                    Some(rt) => ("FHIR", Cow::Owned(rt.to_string())),
                    None => ("FHIR", Cow::Borrowed(guess_complex(o).unwrap_or("Element"))),
                },
                _ => ("FHIR", Cow::Borrowed("Element")),
            },
        },
    }
}

fn guess_complex(o: &Map<String, Value>) -> Option<&'static str> {
    if o.contains_key("reference") {
        Some("Reference")
    } else if o.contains_key("coding") {
        Some("CodeableConcept")
    } else if o.contains_key("low") || o.contains_key("high") {
        Some("Range")
    } else if o.contains_key("start") || o.contains_key("end") {
        Some("Period")
    } else if o.get("value").is_some_and(Value::is_number) {
        Some("Quantity")
    } else {
        None
    }
}

fn known_type(spec: &str) -> bool {
    let (ns, name) = split_type(spec);
    match ns {
        Some("System") => SYSTEM_TYPES.contains(&name),
        Some("FHIR") => model().kind(name).is_some(),
        Some(_) => false,
        None => SYSTEM_TYPES.contains(&name) || model().kind(name).is_some(),
    }
}

fn split_type(spec: &str) -> (Option<&str>, &str) {
    match spec.split_once('.') {
        Some((ns, n)) => (Some(ns), n.trim_matches('`')),
        None => (None, spec.trim_matches('`')),
    }
}

/// Whether `v` is of type `spec`. `exact`: primitives must match exactly (`as` / `ofType`:
/// a `code` is not a `string`); `is` honours subtypes.
fn type_matches(v: &V<'_>, spec: &str, exact: bool) -> Res<bool> {
    let (ns, name) = split_type(spec);
    if !known_type(spec) {
        // unknown type names: lenient for untyped JSON (profiles, custom types), else an error
        if v.is_untyped_node() || ns.is_some() {
            return Ok(false);
        }
        return err(format!("unknown type {spec}"));
    }
    let m = model();
    let (tns, tname) = type_of(v);
    if let Some(ns) = ns {
        if ns != tns {
            return Ok(false);
        }
    }
    if tns == "System" {
        return Ok(tname == name);
    }
    if let V::Node(n) = v {
        if n.ty.is_none() {
            return Ok(untyped_matches(n, name));
        }
    }
    let t: &str = &tname;
    if t == name {
        return Ok(true);
    }
    if exact && m.kind(t) == Some(Kind::Primitive) {
        // lenient System-name spelling on FHIR primitives for ofType/as (`ofType(DateTime)`)
        return Ok(ns.is_none()
            && SYSTEM_TYPES.contains(&name)
            && name.len() == t.len()
            && name.eq_ignore_ascii_case(t)
            && name[1..] == t[1..]);
    }
    Ok(m.is_subtype(t, name))
}

/// The previous heuristic typing for JSON the type table does not describe.
fn untyped_matches(n: &Node<'_>, wanted: &str) -> bool {
    let eq1 = |a: &str, b: &str| {
        let (mut ca, mut cb) = (a.chars(), b.chars());
        match (ca.next(), cb.next()) {
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(&y) && ca.as_str() == cb.as_str(),
            _ => false,
        }
    };
    if let Some(h) = n.hint {
        return eq1(h, wanted)
            || (wanted == "Quantity" && ["Age", "Count", "Distance", "Duration"].contains(&h));
    }
    match node_json(n) {
        Some(Value::Object(o)) => {
            if let Some(rt) = o.get("resourceType").and_then(Value::as_str) {
                return rt == wanted
                    || wanted == "Resource"
                    || (wanted == "DomainResource"
                        && !matches!(rt, "Bundle" | "Binary" | "Parameters"));
            }
            match guess_complex(o) {
                Some(g) => g == wanted,
                None => wanted.starts_with(|c: char| c.is_ascii_uppercase()),
            }
        }
        Some(Value::Bool(_)) => eq1(wanted, "boolean"),
        Some(Value::Number(_)) => ["integer", "decimal", "positiveInt", "unsignedInt"]
            .iter()
            .any(|t| eq1(t, wanted)),
        Some(Value::String(_)) => [
            "string",
            "code",
            "uri",
            "url",
            "canonical",
            "id",
            "markdown",
            "date",
            "dateTime",
            "instant",
            "time",
            "oid",
            "uuid",
            "base64Binary",
        ]
        .iter()
        .any(|t| eq1(t, wanted)),
        _ => false,
    }
}

/// A type argument (`ofType(FHIR.Patient)`) as text.
fn type_arg(e: Option<&Expr>) -> Res<Cow<'_, str>> {
    // borrowed from the expression for the usual one-segment name (`ofType(Quantity)`)
    fn walk(e: &Expr) -> Option<Cow<'_, str>> {
        match e {
            Expr::Member(None, n) => Some(Cow::Borrowed(n.as_str())),
            Expr::Member(Some(b), n) => Some(Cow::Owned(format!("{}.{n}", walk(b)?))),
            Expr::Literal(Literal::String(s)) => Some(Cow::Borrowed(s.as_str())),
            _ => None,
        }
    }
    e.and_then(walk)
        .map_or_else(|| err("expected a type name"), Ok)
}

// ---------------------------------------------------------------------------------------------
// Equality, equivalence, ordering

fn json_equal(a: &Value, b: &Value, equiv: bool) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let xs: Vec<_> = x.iter().filter(|(k, _)| !(equiv && *k == "id")).collect();
            let ys: Vec<_> = y.iter().filter(|(k, _)| !(equiv && *k == "id")).collect();
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, v)| y.get(*k).is_some_and(|w| json_equal(v, w, equiv)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_equal(v, w, equiv))
        }
        (Value::Number(x), Value::Number(y)) => match (num_prim(x, None), num_prim(y, None)) {
            (P::Int(i), P::Int(j)) => i == j,
            (p, q) => to_dec(&p).zip(to_dec(&q)).is_some_and(|(a, b)| a == b),
        },
        (Value::String(x), Value::String(y)) if equiv => norm_ws(x) == norm_ws(y),
        _ => a == b,
    }
}

fn norm_ws(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn to_dec(p: &P<'_>) -> Option<Decimal> {
    match p {
        P::Int(i) => Some(Decimal::from(*i)),
        P::Dec(d) => Some(*d),
        _ => None,
    }
}

/// Promotes a String to a Date/DateTime/Time when compared with one (untyped JSON).
fn coerce<'x>(a: P<'x>, other: &P<'_>, a_untyped: bool) -> P<'x> {
    if !a_untyped {
        return a;
    }
    match (&a, other) {
        (P::Str(s), P::Date(_) | P::DateTime(_)) => {
            if let Some(d) = value::parse_datetime(s) {
                return if d.prec <= 3 && !s.contains('T') {
                    P::Date(d)
                } else {
                    P::DateTime(d)
                };
            }
            a
        }
        (P::Str(s), P::Time(_)) => value::parse_time(s).map(P::Time).unwrap_or(a),
        _ => a,
    }
}

fn pair<'x, 'y>(a: &'x V<'_>, b: &'y V<'_>) -> Option<(P<'x>, P<'y>)> {
    let pa = a.prim()?;
    let pb = b.prim()?;
    let pa2 = coerce(pa, &pb, a.is_untyped_node());
    let pb2 = coerce(pb, &pa2, b.is_untyped_node());
    Some((pa2, pb2))
}

/// The text of an item that compares as a plain `System.String`: a string literal / computed
/// string, or a typed FHIR string-like primitive (`string`, `uri`, `code`, `id`, …; not the
/// date/time types, which compare as dates, and not untyped JSON, which may be promoted to one).
/// Two such items are equal exactly when their texts are (fast path of [`item_equal`]).
fn plain_str<'x>(v: &'x V<'_>) -> Option<&'x str> {
    match v {
        V::Str(s) => Some(s),
        V::Node(n) => match (node_json(n)?, n.ty?) {
            (_, "date" | "dateTime" | "instant" | "time") => None,
            (Value::String(s), _) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// `=` on two items: `None` = unknown (empty result).
fn item_equal(a: &V<'_>, b: &V<'_>) -> Option<bool> {
    if let (Some(x), Some(y)) = (plain_str(a), plain_str(b)) {
        return Some(x == y);
    }
    if let (V::Node(x), V::Node(y)) = (a, b) {
        let (jx, jy) = (node_json(x), node_json(y));
        if jx.is_some_and(Value::is_object) || jy.is_some_and(Value::is_object) {
            if let (Some(P::Qty(_)), Some(P::Qty(_))) = (a.prim(), b.prim()) {
            } else {
                return Some(match (jx, jy) {
                    (Some(p), Some(q)) => json_equal(p, q, false),
                    _ => false,
                });
            }
        }
    }
    let Some((pa, pb)) = pair(a, b) else {
        return match (a, b) {
            (V::Node(x), V::Node(y)) => Some(match (node_json(x), node_json(y)) {
                (Some(p), Some(q)) => json_equal(p, q, false),
                _ => false,
            }),
            _ => Some(false),
        };
    };
    Some(match (&pa, &pb) {
        (P::Bool(x), P::Bool(y)) => x == y,
        (P::Int(x), P::Int(y)) => x == y,
        (P::Int(_) | P::Dec(_), P::Int(_) | P::Dec(_)) => to_dec(&pa) == to_dec(&pb),
        (P::Str(x), P::Str(y)) => x == y,
        (P::Date(x) | P::DateTime(x), P::Date(y) | P::DateTime(y)) | (P::Time(x), P::Time(y)) => {
            return value::dt_cmp(x, y).map(|o| o == Ordering::Equal)
        }
        (P::Qty(x), P::Qty(y)) => {
            let (u, v) = value::qty_pair(x, y)?;
            return Some(u == v);
        }
        _ => false,
    })
}

/// `~` on two items.
fn item_equiv(a: &V<'_>, b: &V<'_>) -> bool {
    if let (V::Node(x), V::Node(y)) = (a, b) {
        let (jx, jy) = (node_json(x), node_json(y));
        if (jx.is_some_and(Value::is_object) || jy.is_some_and(Value::is_object))
            && !matches!((a.prim(), b.prim()), (Some(P::Qty(_)), Some(P::Qty(_))))
        {
            return match (jx, jy) {
                (Some(p), Some(q)) => json_equal(p, q, true),
                _ => false,
            };
        }
    }
    let Some((pa, pb)) = pair(a, b) else {
        return false;
    };
    match (&pa, &pb) {
        (P::Bool(x), P::Bool(y)) => x == y,
        (P::Int(_) | P::Dec(_), P::Int(_) | P::Dec(_)) => match (to_dec(&pa), to_dec(&pb)) {
            (Some(x), Some(y)) => value::dec_equiv(&x, &y),
            _ => false,
        },
        (P::Str(x), P::Str(y)) => norm_ws(x) == norm_ws(y),
        (P::Date(x) | P::DateTime(x), P::Date(y) | P::DateTime(y)) | (P::Time(x), P::Time(y)) => {
            let same_kind = matches!(
                (&pa, &pb),
                (P::Date(_), P::Date(_))
                    | (P::DateTime(_), P::DateTime(_))
                    | (P::Time(_), P::Time(_))
            );
            same_kind
                && x.prec.min(6) == y.prec.min(6)
                && value::dt_cmp(x, y) == Some(Ordering::Equal)
        }
        (P::Qty(x), P::Qty(y)) => match value::qty_pair(x, y) {
            Some((u, v)) => value::dec_equiv(&u, &v) || u == v,
            None => false,
        },
        _ => false,
    }
}

/// Ordering for `< > <= >=` (and `sort`). `Ok(None)`: unknown (empty). Errors on mixed types.
fn item_cmp(a: &V<'_>, b: &V<'_>) -> Res<Option<Ordering>> {
    let Some((pa, pb)) = pair(a, b) else {
        return err("cannot compare these values");
    };
    Ok(match (&pa, &pb) {
        (P::Int(x), P::Int(y)) => Some(x.cmp(y)),
        (P::Int(_) | P::Dec(_), P::Int(_) | P::Dec(_)) => {
            to_dec(&pa).zip(to_dec(&pb)).map(|(x, y)| x.cmp(&y))
        }
        (P::Str(x), P::Str(y)) => Some(x.cmp(y)),
        (P::Date(x) | P::DateTime(x), P::Date(y) | P::DateTime(y)) | (P::Time(x), P::Time(y)) => {
            value::dt_cmp(x, y)
        }
        (P::Qty(x), P::Qty(y)) => value::qty_pair(x, y).map(|(u, v)| u.cmp(&v)),
        _ => return err("cannot compare values of different types"),
    })
}

fn collections_equal(a: &[V<'_>], b: &[V<'_>]) -> Option<bool> {
    if a.len() != b.len() {
        return Some(false);
    }
    let mut unknown = false;
    for (x, y) in a.iter().zip(b) {
        match item_equal(x, y) {
            Some(false) => return Some(false),
            None => unknown = true,
            Some(true) => {}
        }
    }
    if unknown {
        None
    } else {
        Some(true)
    }
}

fn collections_equiv(a: &[V<'_>], b: &[V<'_>]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    'outer: for x in a {
        for (j, y) in b.iter().enumerate() {
            if !used[j] && item_equiv(x, y) {
                used[j] = true;
                continue 'outer;
            }
        }
        return false;
    }
    true
}

fn same_node(a: &V<'_>, b: &V<'_>) -> bool {
    match (a, b) {
        (V::Node(x), V::Node(y)) => match (&x.val, &y.val) {
            (Some(J::B(p)), Some(J::B(q))) => std::ptr::eq(*p, *q),
            _ => false,
        },
        _ => false,
    }
}

fn contains_eq(c: &[V<'_>], v: &V<'_>) -> bool {
    c.iter()
        .any(|x| same_node(x, v) || item_equal(x, v) == Some(true))
}

fn distinct<'a>(items: impl IntoIterator<Item = V<'a>>) -> Vec<V<'a>> {
    let items = items.into_iter();
    let mut out: Vec<V<'a>> = Vec::new();
    if items.size_hint().0 < 16 {
        for i in items {
            if !contains_eq(&out, &i) {
                out.push(i);
            }
        }
        return out;
    }
    // large collections (`%resource.descendants().as(uri) | …`): plain strings are bucketed by a
    // hash of their text, everything else is compared pairwise as above
    use std::hash::BuildHasher;
    let hasher = foldhash::fast::FixedState::default();
    let mut plain: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut others: Vec<usize> = Vec::new();
    for i in items {
        let dup = match plain_str(&i) {
            Some(s) => {
                let h = hasher.hash_one(s);
                plain
                    .get(&h)
                    .is_some_and(|js| js.iter().any(|&j| plain_str(&out[j]) == Some(s)))
                    || others
                        .iter()
                        .any(|&j| same_node(&out[j], &i) || item_equal(&out[j], &i) == Some(true))
            }
            None => contains_eq(&out, &i),
        };
        if !dup {
            match plain_str(&i) {
                Some(s) => plain.entry(hasher.hash_one(s)).or_default().push(out.len()),
                None => others.push(out.len()),
            }
            out.push(i);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Singleton evaluation to a boolean (N1 §4.5): empty → None; one boolean → it; one other item
/// → true; several → error.
fn to_bool(items: &[V<'_>]) -> Res<Option<bool>> {
    match items {
        [] => Ok(None),
        [one] => Ok(Some(match one.prim() {
            Some(P::Bool(b)) => b,
            _ => true,
        })),
        _ => err("expected a single boolean, got several items"),
    }
}

fn bools<'a>(b: Option<bool>) -> Vec<V<'a>> {
    b.map(V::Bool).into_iter().collect()
}

fn single<'x, 'a>(items: &'x [V<'a>], what: &str) -> Res<Option<&'x V<'a>>> {
    match items {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => err(format!(
            "{what}: expected a single item, got {}",
            items.len()
        )),
    }
}

fn as_string(v: &V<'_>) -> Option<String> {
    match v.prim()? {
        P::Str(s) => Some(s.into_owned()),
        _ => None,
    }
}

/// The single string input of a string function (`None`: empty input); non-strings are errors.
fn str_input(items: &[V<'_>], f: &str) -> Res<Option<String>> {
    match single(items, f)? {
        None => Ok(None),
        Some(v) => match as_string(v) {
            Some(s) => Ok(Some(s)),
            None => err(format!("{f}() expects a string")),
        },
    }
}

fn prim_to_string(p: &P<'_>) -> String {
    match p {
        P::Bool(b) => b.to_string(),
        P::Int(i) => i.to_string(),
        P::Dec(d) => d.to_string(),
        P::Str(s) => s.to_string(),
        P::Date(d) => value::fmt_date(d),
        P::DateTime(d) => value::fmt_datetime(d),
        P::Time(d) => value::fmt_time(d),
        P::Qty(q) => value::fmt_qty(q),
    }
}

fn int_of(v: &V<'_>) -> Option<i64> {
    match v.prim()? {
        P::Int(i) => Some(i),
        _ => None,
    }
}

fn parse_quantity_text(s: &str) -> Option<Qty> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (num, rest) = s.split_at(end);
    let value = Decimal::from_str_exact(num).ok()?;
    if num.ends_with('.') {
        return None;
    }
    let rest = rest.trim();
    if rest.is_empty() {
        return Some(Qty {
            value,
            unit: "1".into(),
        });
    }
    if let Some(u) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return Some(Qty {
            value,
            unit: u.to_string(),
        });
    }
    value::calendar_unit(rest).map(|_| Qty {
        value,
        unit: rest.to_string(),
    })
}

fn convert<'a>(v: &V<'a>, to: &str) -> Option<V<'a>> {
    let p = v.prim()?;
    match to {
        "Boolean" => match p {
            P::Bool(b) => Some(V::Bool(b)),
            P::Int(1) => Some(V::Bool(true)),
            P::Int(0) => Some(V::Bool(false)),
            P::Dec(d) if d == Decimal::ONE => Some(V::Bool(true)),
            P::Dec(d) if d.is_zero() => Some(V::Bool(false)),
            P::Str(s) => match s.to_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(V::Bool(true)),
                "false" | "f" | "no" | "n" | "0" | "0.0" => Some(V::Bool(false)),
                _ => None,
            },
            _ => None,
        },
        "Integer" => match p {
            P::Int(i) => Some(V::Int(i)),
            P::Bool(b) => Some(V::Int(b as i64)),
            P::Str(s) => {
                let t = s.strip_prefix('+').unwrap_or(&s);
                (!t.is_empty()
                    && t.trim_start_matches('-')
                        .chars()
                        .all(|c| c.is_ascii_digit()))
                .then(|| t.parse().ok().map(V::Int))
                .flatten()
            }
            _ => None,
        },
        "Decimal" => match p {
            P::Int(i) => Some(V::Dec(Decimal::from(i))),
            P::Dec(d) => Some(V::Dec(d)),
            P::Bool(b) => Some(V::Dec(Decimal::from(b as i64))),
            P::Str(s) => {
                let ok = {
                    let t = s.strip_prefix(['+', '-']).unwrap_or(&s);
                    let mut parts = t.splitn(2, '.');
                    let a = parts.next().unwrap_or("");
                    let b = parts.next();
                    !a.is_empty()
                        && a.chars().all(|c| c.is_ascii_digit())
                        && b.is_none_or(|b| !b.is_empty() && b.chars().all(|c| c.is_ascii_digit()))
                };
                if ok {
                    Decimal::from_str_exact(&s).ok().map(V::Dec)
                } else {
                    None
                }
            }
            _ => None,
        },
        "String" => Some(V::Str(prim_to_string(&p))),
        "Date" => match p {
            P::Date(d) => Some(V::Date(d)),
            P::DateTime(d) => Some(V::Date(Dt {
                prec: d.prec.min(3),
                tz: None,
                ..d
            })),
            P::Str(s) => value::parse_datetime(&s).map(|d| {
                V::Date(Dt {
                    prec: d.prec.min(3),
                    tz: None,
                    ..d
                })
            }),
            _ => None,
        },
        "DateTime" => match p {
            P::Date(d) | P::DateTime(d) => Some(V::DateTime(d)),
            P::Str(s) => value::parse_datetime(&s).map(V::DateTime),
            _ => None,
        },
        "Time" => match p {
            P::Time(d) => Some(V::Time(d)),
            P::Str(s) => value::parse_time(&s).map(V::Time),
            _ => None,
        },
        "Quantity" => match p {
            P::Qty(q) => Some(V::Qty(q)),
            P::Int(i) => Some(V::Qty(Qty {
                value: Decimal::from(i),
                unit: "1".into(),
            })),
            P::Dec(d) => Some(V::Qty(Qty {
                value: d,
                unit: "1".into(),
            })),
            P::Bool(b) => Some(V::Qty(Qty {
                value: Decimal::from(b as i64),
                unit: "1".into(),
            })),
            P::Str(s) => parse_quantity_text(&s).map(V::Qty),
            _ => None,
        },
        _ => None,
    }
}

fn num_result<'a>(d: Option<Decimal>) -> Vec<V<'a>> {
    d.map(V::Dec).into_iter().collect()
}

fn math1<'a>(base: &[V<'a>], name: &str) -> Res<Vec<V<'a>>> {
    let Some(v) = single(base, name)? else {
        return Ok(vec![]);
    };
    let p = v.prim();
    let (d, is_int) = match &p {
        Some(P::Int(i)) => (Decimal::from(*i), true),
        Some(P::Dec(d)) => (*d, false),
        Some(P::Qty(q)) if name == "abs" => {
            return Ok(vec![V::Qty(Qty {
                value: q.value.abs(),
                unit: q.unit.clone(),
            })]);
        }
        _ => return err(format!("{name}() expects a number")),
    };
    let int_or_dec = |x: Decimal| {
        if is_int {
            x.to_i64().map(V::Int).unwrap_or(V::Dec(x))
        } else {
            V::Dec(x)
        }
    };
    Ok(match name {
        "abs" => vec![int_or_dec(d.abs())],
        "ceiling" => d.ceil().to_i64().map(V::Int).into_iter().collect(),
        "floor" => d.floor().to_i64().map(V::Int).into_iter().collect(),
        "truncate" => d.trunc().to_i64().map(V::Int).into_iter().collect(),
        "exp" => num_result(d.to_f64().and_then(|f| value::dec_from_f64(f.exp()))),
        "ln" => {
            if d <= Decimal::ZERO {
                vec![]
            } else {
                num_result(d.to_f64().and_then(|f| value::dec_from_f64(f.ln())))
            }
        }
        "sqrt" => {
            if d < Decimal::ZERO {
                vec![]
            } else {
                num_result(d.sqrt())
            }
        }
        _ => vec![],
    })
}

fn encode(s: &str, how: &str) -> Option<String> {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    match how {
        "hex" => Some(s.bytes().map(|b| format!("{b:02x}")).collect()),
        "base64" | "urlbase64" => {
            let t = if how == "base64" { STD } else { URL };
            let b = s.as_bytes();
            let mut out = String::new();
            for ch in b.chunks(3) {
                let n = (ch[0] as u32) << 16
                    | (*ch.get(1).unwrap_or(&0) as u32) << 8
                    | *ch.get(2).unwrap_or(&0) as u32;
                out.push(t[(n >> 18) as usize & 63] as char);
                out.push(t[(n >> 12) as usize & 63] as char);
                out.push(if ch.len() > 1 {
                    t[(n >> 6) as usize & 63] as char
                } else {
                    '='
                });
                out.push(if ch.len() > 2 {
                    t[n as usize & 63] as char
                } else {
                    '='
                });
            }
            Some(out)
        }
        _ => None,
    }
}

fn decode(s: &str, how: &str) -> Option<String> {
    match how {
        "hex" => {
            if !s.len().is_multiple_of(2) {
                return None;
            }
            let bytes: Option<Vec<u8>> = (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                .collect();
            String::from_utf8(bytes?).ok()
        }
        "base64" | "urlbase64" => {
            let val = |c: u8| -> Option<u32> {
                Some(match c {
                    b'A'..=b'Z' => c - b'A',
                    b'a'..=b'z' => c - b'a' + 26,
                    b'0'..=b'9' => c - b'0' + 52,
                    b'+' | b'-' => 62,
                    b'/' | b'_' => 63,
                    _ => return None,
                } as u32)
            };
            let clean: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
            let mut out = Vec::new();
            for ch in clean.chunks(4) {
                let mut n = 0u32;
                for (i, c) in ch.iter().enumerate() {
                    n |= val(*c)? << (18 - 6 * i);
                }
                out.push((n >> 16) as u8);
                if ch.len() > 2 {
                    out.push((n >> 8) as u8);
                }
                if ch.len() > 3 {
                    out.push(n as u8);
                }
            }
            String::from_utf8(out).ok()
        }
        _ => None,
    }
}

fn escape(s: &str, how: &str) -> Option<String> {
    match how {
        "html" => Some(
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&#39;"),
        ),
        "json" => Some(
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
                .replace('\r', "\\r")
                .replace('\t', "\\t"),
        ),
        _ => None,
    }
}

fn unescape(s: &str, how: &str) -> Option<String> {
    match how {
        "html" => Some(
            s.replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#39;", "'")
                .replace("&amp;", "&"),
        ),
        "json" => {
            let mut out = String::new();
            let mut it = s.chars();
            while let Some(c) = it.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match it.next()? {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let hex: String = it.by_ref().take(4).collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    other => out.push(other),
                }
            }
            Some(out)
        }
        _ => None,
    }
}

/// Compiled regular expressions of `matches` / `matchesFull` / `replaceMatches`, per thread, keyed by
/// (pattern, full match). Invariants such as `txt-1` (`htmlChecks`-like `matches`) and the string
/// patterns of JP Core run on every element they guard: compiling the pattern each time was the
/// largest single cost of validation. Bounded: cleared when it reaches `REGEX_CACHE_MAX` entries.
const REGEX_CACHE_MAX: usize = 512;

thread_local! {
    /// (pattern → compiled) for `matches` / `replaceMatches` (index 0) and `matchesFull` (index
    /// 1). The compiled regex is shared by `Rc`, not cloned: a cloned `regex::Regex` starts with an
    /// empty search cache (its lazy DFA is rebuilt on the next search), which cost more than the
    /// match itself.
    static REGEX_CACHE: std::cell::RefCell<[HashMap<String, Result<Rc<regex::Regex>, String>>; 2]> =
        std::cell::RefCell::new([HashMap::new(), HashMap::new()]);
}

fn regex(p: &str, full: bool) -> Res<Rc<regex::Regex>> {
    let slot = usize::from(full);
    if let Some(r) = REGEX_CACHE.with(|c| c.borrow()[slot].get(p).cloned()) {
        return r.or_else(err);
    }
    let pat = if full {
        format!("^(?s:{p})$")
    } else {
        format!("(?s){p}")
    };
    let r = regex::Regex::new(&pat).map(Rc::new).map_err(|e| format!("bad regular expression: {e}"));
    REGEX_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c[slot].len() >= REGEX_CACHE_MAX {
            c[slot].clear();
        }
        c[slot].insert(p.to_string(), r.clone());
    });
    r.or_else(err)
}

// ---------------------------------------------------------------------------------------------
// resolve()

/// Target type of a literal reference: `Patient/1`, `…/fhir/Patient/1/_history/2`.
pub(crate) fn reference_type(r: &str) -> Option<&str> {
    if r.starts_with('#') || r.starts_with("urn:") {
        return None;
    }
    let r = match r.find("/_history/") {
        Some(p) => &r[..p],
        None => r,
    };
    let mut it = r.rsplit('/');
    let _id = it.next()?;
    let ty = it.next()?;
    (ty.starts_with(|c: char| c.is_ascii_uppercase())
        && ty.chars().all(|c| c.is_ascii_alphanumeric()))
    .then_some(ty)
}

/// `Reference.type` may be a bare type code or a StructureDefinition URL.
fn reference_type_name(t: &str) -> Option<&str> {
    let last = t.rsplit('/').next()?;
    last.starts_with(|c: char| c.is_ascii_uppercase())
        .then_some(last)
}

fn resolve<'a>(item: &V<'a>, ctx: &Ctx<'a, '_>, out: &mut Vec<V<'a>>) {
    let V::Node(n) = item else {
        return;
    };
    let Some(J::B(v)) = n.val else { return };
    let (r, explicit_type) = match v {
        Value::Object(o) => (
            o.get("reference").and_then(Value::as_str),
            o.get("type").and_then(Value::as_str),
        ),
        Value::String(s) => (Some(s.as_str()), None),
        _ => return,
    };
    if let Some(local) = r.and_then(|r| r.strip_prefix('#')) {
        let container = n.res.unwrap_or(ctx.resource);
        if let Some(Value::Array(cs)) = container.get("contained") {
            if let Some(c) = cs
                .iter()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(local))
            {
                out.push(V::node(c, resource_type_of(c), Some(c)));
            }
        } else if local.is_empty() {
            out.push(V::node(
                container,
                resource_type_of(container),
                Some(container),
            ));
        }
        return;
    }
    // inside a Bundle: entries by fullUrl or Type/id
    if let (Some(r), Some(Value::Array(entries))) = (r, ctx.resource.get("entry")) {
        if ctx.resource.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            let rel = r.find("/_history/").map_or(r, |p| &r[..p]);
            for e in entries {
                let Some(res) = e.get("resource") else {
                    continue;
                };
                let full = e.get("fullUrl").and_then(Value::as_str);
                let type_id = match (
                    res.get("resourceType").and_then(Value::as_str),
                    res.get("id").and_then(Value::as_str),
                ) {
                    (Some(t), Some(i)) => Some(format!("{t}/{i}")),
                    _ => None,
                };
                let hit = full == Some(rel)
                    || type_id
                        .as_deref()
                        .is_some_and(|ti| rel == ti || rel.ends_with(&format!("/{ti}")));
                if hit {
                    out.push(V::node(res, resource_type_of(res), Some(res)));
                    return;
                }
            }
        }
    }
    let ty = r
        .and_then(reference_type)
        .or(explicit_type.and_then(reference_type_name));
    if let Some(t) = ty {
        out.push(V::Node(Node {
            val: Some(J::B(v)),
            ext: None,
            ty: model().type_name(t),
            hint: Some(t),
            res: n.res,
        }));
    }
}

// ---------------------------------------------------------------------------------------------
// Functions

fn arg<'a>(
    args: &[Expr],
    i: usize,
    focus: &[V<'a>],
    scope: Scope<'_, 'a>,
    ctx: &Ctx<'a, '_>,
) -> Res<Vec<V<'a>>> {
    match args.get(i) {
        Some(e) => eval(e, focus, scope, ctx),
        None => err(format!("missing argument {}", i + 1)),
    }
}

fn arg_str<'a>(
    args: &[Expr],
    i: usize,
    focus: &[V<'a>],
    scope: Scope<'_, 'a>,
    ctx: &Ctx<'a, '_>,
) -> Res<Option<String>> {
    let v = arg(args, i, focus, scope, ctx)?;
    match single(&v, "argument")? {
        None => Ok(None),
        Some(x) => as_string(x)
            .map(Some)
            .ok_or_else(|| FhirPathError::Evaluation("expected a string argument".into())),
    }
}

fn arg_int<'a>(
    args: &[Expr],
    i: usize,
    focus: &[V<'a>],
    scope: Scope<'_, 'a>,
    ctx: &Ctx<'a, '_>,
) -> Res<Option<i64>> {
    let v = arg(args, i, focus, scope, ctx)?;
    match single(&v, "argument")? {
        None => Ok(None),
        Some(x) => int_of(x)
            .map(Some)
            .ok_or_else(|| FhirPathError::Evaluation("expected an integer argument".into())),
    }
}

/// Functions whose arguments are evaluated once per item of their input, with `$this` / `$index`
/// bound to the item (the "lambda" arguments of FHIRPath N1 §5.2 and `iif` on an explicit input).
pub(crate) fn lambda_function(name: &str) -> bool {
    matches!(name, "exists" | "all" | "where" | "select" | "repeat" | "trace" | "sort" | "iif")
}

/// Functions whose (first) argument is a type specifier, not an expression to evaluate.
pub(crate) fn type_function(name: &str) -> bool {
    matches!(name, "ofType" | "is" | "as")
}

/// Does `e` evaluate to the same collection wherever it occurs in one evaluation? True when it
/// reads nothing of the current focus, `$this`, `$index` or `$total`: literals, `%variables`
/// (`%resource`, `%context`, … are fixed for one evaluation) and paths / functions / operators
/// over those. Lambda arguments count as closed when they only use their own `$this` / `$index`.
fn closed(e: &Expr) -> bool {
    match e {
        Expr::This | Expr::IndexVar | Expr::Total => false,
        Expr::Var(_) | Expr::Literal(_) => true,
        Expr::Member(None, _) | Expr::Call(None, _, _) => false,
        Expr::Member(Some(b), _) => closed(b),
        Expr::Call(Some(b), name, args) => {
            closed(b)
                && name != "aggregate"
                && (type_function(name)
                    || args.iter().all(|a| {
                        if lambda_function(name) {
                            !uses_total(a)
                        } else {
                            closed(a)
                        }
                    }))
        }
        Expr::Index(b, i) => closed(b) && closed(i),
        Expr::Binary(_, l, r) => closed(l) && closed(r),
        Expr::Is(b, _) | Expr::As(b, _) | Expr::Neg(b) => closed(b),
    }
}

fn uses_total(e: &Expr) -> bool {
    match e {
        Expr::Total => true,
        Expr::This | Expr::IndexVar | Expr::Var(_) | Expr::Literal(_) => false,
        Expr::Member(b, _) => b.as_deref().is_some_and(uses_total),
        Expr::Call(b, _, args) => b.as_deref().is_some_and(uses_total) || args.iter().any(uses_total),
        Expr::Index(b, i) => uses_total(b) || uses_total(i),
        Expr::Binary(_, l, r) => uses_total(l) || uses_total(r),
        Expr::Is(b, _) | Expr::As(b, _) | Expr::Neg(b) => uses_total(b),
    }
}

/// The largest closed sub-expressions of `e` that are worth caching (not bare literals or
/// variables).
fn closed_parts(e: &Expr, out: &mut Vec<*const Expr>) {
    if closed(e) {
        if !matches!(e, Expr::Literal(_) | Expr::Var(_)) {
            out.push(e as *const Expr);
        }
        return;
    }
    match e {
        Expr::This | Expr::IndexVar | Expr::Total | Expr::Var(_) | Expr::Literal(_) => {}
        Expr::Member(b, _) => {
            if let Some(b) = b {
                closed_parts(b, out);
            }
        }
        Expr::Call(b, name, args) => {
            if let Some(b) = b {
                closed_parts(b, out);
            }
            if !type_function(name) {
                for a in args {
                    closed_parts(a, out);
                }
            }
        }
        Expr::Index(b, i) | Expr::Binary(_, b, i) => {
            closed_parts(b, out);
            closed_parts(i, out);
        }
        Expr::Is(b, _) | Expr::As(b, _) | Expr::Neg(b) => closed_parts(b, out),
    }
}

/// Evaluates a lambda-style argument once per item with `$this` / `$index` set.
fn per_item<'a>(
    base: &[V<'a>],
    e: &Expr,
    scope: Scope<'_, 'a>,
    ctx: &Ctx<'a, '_>,
    mut f: impl FnMut(&V<'a>, Vec<V<'a>>) -> Res<bool>,
) -> Res<()> {
    if base.len() > 1 {
        // sub-expressions that do not depend on the item: evaluate them once (see `Ctx::memo`)
        let mut parts = Vec::new();
        closed_parts(e, &mut parts);
        if !parts.is_empty() {
            let mut memo = ctx.memo.borrow_mut();
            for p in parts {
                if !memo.iter().any(|(q, _)| *q == p) {
                    memo.push((p, None));
                }
            }
        }
    }
    for (i, item) in base.iter().enumerate() {
        let s = Scope {
            this: Some(item),
            index: Some(i as i64),
            total: scope.total,
        };
        let r = eval(e, std::slice::from_ref(item), s, ctx)?;
        if !f(item, r)? {
            break;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn call<'a>(
    base: Vec<V<'a>>,
    explicit_base: bool,
    name: &str,
    args: &[Expr],
    focus: &[V<'a>],
    scope: Scope<'_, 'a>,
    ctx: &Ctx<'a, '_>,
) -> Res<Vec<V<'a>>> {
    let one_bool = |b: bool| Ok(vec![V::Bool(b)]);
    match name {
        // ---- existence
        "empty" => one_bool(base.is_empty()),
        "exists" => match args.first() {
            None => one_bool(!base.is_empty()),
            Some(c) => {
                let mut found = false;
                per_item(&base, c, scope, ctx, |_, r| {
                    if to_bool(&r)? == Some(true) {
                        found = true;
                        return Ok(false);
                    }
                    Ok(true)
                })?;
                one_bool(found)
            }
        },
        "all" => {
            let Some(c) = args.first() else {
                return one_bool(true);
            };
            let mut all = true;
            per_item(&base, c, scope, ctx, |_, r| {
                if to_bool(&r)? != Some(true) {
                    all = false;
                    return Ok(false);
                }
                Ok(true)
            })?;
            one_bool(all)
        }
        "allTrue" | "anyTrue" | "allFalse" | "anyFalse" => {
            let mut vals = Vec::with_capacity(base.len());
            for i in &base {
                match i.prim() {
                    Some(P::Bool(b)) => vals.push(b),
                    _ => return err(format!("{name}() expects booleans")),
                }
            }
            one_bool(match name {
                "allTrue" => vals.iter().all(|b| *b),
                "anyTrue" => vals.iter().any(|b| *b),
                "allFalse" => vals.iter().all(|b| !*b),
                _ => vals.iter().any(|b| !*b),
            })
        }
        "subsetOf" | "supersetOf" => {
            let other = arg(args, 0, focus, scope, ctx)?;
            let (sub, sup) = if name == "subsetOf" {
                (&base, &other)
            } else {
                (&other, &base)
            };
            one_bool(sub.iter().all(|x| contains_eq(sup, x)))
        }
        "count" => Ok(vec![V::Int(base.len() as i64)]),
        "distinct" => Ok(distinct(base)),
        "isDistinct" => {
            let n = base.len();
            one_bool(distinct(base).len() == n)
        }
        // ---- filtering and projection
        "where" => {
            let c = args
                .first()
                .ok_or_else(|| FhirPathError::Evaluation("where() needs a criterion".into()))?;
            let mut out = Vec::new();
            per_item(&base, c, scope, ctx, |item, r| {
                if to_bool(&r)? == Some(true) {
                    out.push(item.clone());
                }
                Ok(true)
            })?;
            Ok(out)
        }
        "select" => {
            let c = args
                .first()
                .ok_or_else(|| FhirPathError::Evaluation("select() needs a projection".into()))?;
            let mut out = Vec::new();
            per_item(&base, c, scope, ctx, |_, r| {
                out.extend(r);
                Ok(true)
            })?;
            Ok(out)
        }
        "repeat" => {
            let c = args
                .first()
                .ok_or_else(|| FhirPathError::Evaluation("repeat() needs a projection".into()))?;
            let mut out: Vec<V<'a>> = Vec::new();
            let mut queue = base;
            let mut rounds = 0;
            while !queue.is_empty() && rounds < 10_000 {
                rounds += 1;
                let mut next = Vec::new();
                per_item(&queue, c, scope, ctx, |_, r| {
                    for x in r {
                        if !contains_eq(&out, &x) {
                            out.push(x.clone());
                            next.push(x);
                        }
                    }
                    Ok(true)
                })?;
                queue = next;
            }
            Ok(out)
        }
        "ofType" => {
            let t = type_arg(args.first())?;
            let mut out = Vec::new();
            for i in base {
                if type_matches(&i, &t, true)? {
                    out.push(i);
                }
            }
            Ok(out)
        }
        "is" => {
            let t = type_arg(args.first())?;
            match single(&base, "is")? {
                None => Ok(vec![]),
                Some(v) => one_bool(type_matches(v, &t, false)?),
            }
        }
        "as" => {
            let t = type_arg(args.first())?;
            if !ctx.lenient && base.len() > 1 {
                return err("as(): expected a single item");
            }
            let mut out = Vec::new();
            for i in base {
                if type_matches(&i, &t, true)? {
                    out.push(i);
                }
            }
            Ok(out)
        }
        // ---- subsetting
        "single" => match base.len() {
            0 | 1 => Ok(base),
            _ => err("single(): more than one item"),
        },
        "first" => Ok(base.into_iter().take(1).collect()),
        "last" => Ok(base.into_iter().last().into_iter().collect()),
        "tail" => Ok(base.into_iter().skip(1).collect()),
        "skip" | "take" => {
            let n = arg_int(args, 0, focus, scope, ctx)?.unwrap_or(0);
            let n = n.max(0) as usize;
            Ok(if name == "skip" {
                base.into_iter().skip(n).collect()
            } else {
                base.into_iter().take(n).collect()
            })
        }
        "intersect" => {
            let other = arg(args, 0, focus, scope, ctx)?;
            Ok(distinct(
                base.into_iter().filter(|x| contains_eq(&other, x)),
            ))
        }
        "exclude" => {
            let other = arg(args, 0, focus, scope, ctx)?;
            Ok(base
                .into_iter()
                .filter(|x| !contains_eq(&other, x))
                .collect())
        }
        // ---- combining
        "union" => {
            let other = arg(args, 0, focus, scope, ctx)?;
            Ok(distinct(base.into_iter().chain(other)))
        }
        "combine" => {
            let other = arg(args, 0, focus, scope, ctx)?;
            let mut b = base;
            b.extend(other);
            Ok(b)
        }
        // ---- conversion
        "iif" => {
            let (f, s): (&[V<'a>], Scope<'_, 'a>) = if explicit_base {
                match single(&base, "iif")? {
                    Some(v) => (
                        std::slice::from_ref(v),
                        Scope {
                            this: Some(v),
                            ..scope
                        },
                    ),
                    None => (&[], scope),
                }
            } else {
                (focus, scope)
            };
            let c = arg(args, 0, f, s, ctx)?;
            if c.len() == 1 && !matches!(c[0].prim(), Some(P::Bool(_))) && ctx.strict {
                return err("iif(): criterion is not a boolean");
            }
            match to_bool(&c)? {
                Some(true) => arg(args, 1, f, s, ctx),
                _ => match args.get(2) {
                    Some(e) => eval(e, f, s, ctx),
                    None => Ok(vec![]),
                },
            }
        }
        "toBoolean" | "toInteger" | "toDecimal" | "toString" | "toDate" | "toDateTime"
        | "toTime" => {
            let Some(v) = single(&base, name)? else {
                return Ok(vec![]);
            };
            Ok(convert(v, &name[2..]).into_iter().collect())
        }
        "toQuantity" | "convertsToQuantity" => {
            let Some(v) = single(&base, name)? else {
                return Ok(vec![]);
            };
            let mut q = convert(v, "Quantity");
            if let (Some(V::Qty(x)), Some(u)) = (&q, args.first()) {
                let _ = u;
                let unit = arg_str(args, 0, focus, scope, ctx)?;
                q = match unit {
                    Some(u) => value::convert(x, &u).map(|val| {
                        V::Qty(Qty {
                            value: val,
                            unit: u,
                        })
                    }),
                    None => None,
                };
            }
            if name == "toQuantity" {
                Ok(q.into_iter().collect())
            } else {
                one_bool(q.is_some())
            }
        }
        "convertsToBoolean" | "convertsToInteger" | "convertsToDecimal" | "convertsToString"
        | "convertsToDate" | "convertsToDateTime" | "convertsToTime" => {
            let Some(v) = single(&base, name)? else {
                return Ok(vec![]);
            };
            one_bool(convert(v, &name[10..]).is_some())
        }
        // ---- strings
        "indexOf" => {
            let Some(s) = str_input(&base, name)? else {
                return Ok(vec![]);
            };
            let Some(sub) = arg_str(args, 0, focus, scope, ctx)? else {
                return Ok(vec![]);
            };
            Ok(vec![V::Int(match s.find(&sub) {
                Some(b) => s[..b].chars().count() as i64,
                None => -1,
            })])
        }
        "substring" => {
            let Some(s) = str_input(&base, name)? else {
                return Ok(vec![]);
            };
            let Some(start) = arg_int(args, 0, focus, scope, ctx)? else {
                return Ok(vec![]);
            };
            let chars: Vec<char> = s.chars().collect();
            if start < 0 || start as usize >= chars.len() {
                return Ok(vec![]);
            }
            let len = if args.len() > 1 {
                match arg_int(args, 1, focus, scope, ctx)? {
                    Some(l) => l.max(0) as usize,
                    None => chars.len(),
                }
            } else {
                chars.len()
            };
            let end = (start as usize).saturating_add(len).min(chars.len());
            Ok(vec![V::Str(chars[start as usize..end].iter().collect())])
        }
        "startsWith" | "endsWith" | "contains" => {
            let Some(s) = str_input(&base, name)? else {
                return Ok(vec![]);
            };
            let Some(a) = arg_str(args, 0, focus, scope, ctx)? else {
                return Ok(vec![]);
            };
            one_bool(match name {
                "startsWith" => s.starts_with(&a),
                "endsWith" => s.ends_with(&a),
                _ => s.contains(&a),
            })
        }
        "upper" | "lower" | "trim" | "toChars" | "length" => {
            let Some(s) = str_input(&base, name)? else {
                return Ok(vec![]);
            };
            Ok(match name {
                "upper" => vec![V::Str(s.to_uppercase())],
                "lower" => vec![V::Str(s.to_lowercase())],
                "trim" => vec![V::Str(s.trim().to_string())],
                "length" => vec![V::Int(s.chars().count() as i64)],
                _ => s.chars().map(|c| V::Str(c.to_string())).collect(),
            })
        }
        "replace" => {
            let Some(s) = str_input(&base, name)? else {
                return Ok(vec![]);
            };
            let Some(pat) = arg_str(args, 0, focus, scope, ctx)? else {
                return Ok(vec![]);
            };
            let Some(rep) = arg_str(args, 1, focus, scope, ctx)? else {
                return Ok(vec![]);
            };
            if pat.is_empty() {
                let mut out = rep.clone();
                for c in s.chars() {
                    out.push(c);
                    out.push_str(&rep);
                }
                return Ok(vec![V::Str(out)]);
            }
            Ok(vec![V::Str(s.replace(&pat, &rep))])
        }
        "matches" | "matchesFull" => {
            let Some(s) = str_input(&base, name)? else {
                return Ok(vec![]);
            };
            let Some(p) = arg_str(args, 0, focus, scope, ctx)? else {
                return Ok(vec![]);
            };
            one_bool(regex(&p, name == "matchesFull")?.is_match(&s))
        }
        "replaceMatches" => {
            let Some(s) = str_input(&base, name)? else {
                return Ok(vec![]);
            };
            let Some(p) = arg_str(args, 0, focus, scope, ctx)? else {
                return Ok(vec![]);
            };
            let Some(rep) = arg_str(args, 1, focus, scope, ctx)? else {
                return Ok(vec![]);
            };
            if p.is_empty() {
                return Ok(vec![V::Str(s)]);
            }
            // FHIRPath uses $1 for groups, as the regex crate does
            Ok(vec![V::Str(
                regex(&p, false)?.replace_all(&s, rep.as_str()).into_owned(),
            )])
        }
        "split" => {
            let Some(s) = str_input(&base, name)? else {
                return Ok(vec![]);
            };
            let Some(sep) = arg_str(args, 0, focus, scope, ctx)? else {
                return Ok(vec![]);
            };
            if sep.is_empty() {
                return Ok(s.chars().map(|c| V::Str(c.to_string())).collect());
            }
            Ok(s.split(sep.as_str())
                .map(|x| V::Str(x.to_string()))
                .collect())
        }
        "join" => {
            let sep = if args.is_empty() {
                String::new()
            } else {
                arg_str(args, 0, focus, scope, ctx)?.unwrap_or_default()
            };
            let mut parts = Vec::new();
            for b in &base {
                parts.push(
                    as_string(b).ok_or_else(|| {
                        FhirPathError::Evaluation("join() expects strings".into())
                    })?,
                );
            }
            Ok(vec![V::Str(parts.join(&sep))])
        }
        "encode" | "decode" | "escape" | "unescape" => {
            let Some(s) = str_input(&base, name)? else {
                return Ok(vec![]);
            };
            let Some(how) = arg_str(args, 0, focus, scope, ctx)? else {
                return Ok(vec![]);
            };
            let r = match name {
                "encode" => encode(&s, &how),
                "decode" => decode(&s, &how),
                "escape" => escape(&s, &how),
                _ => unescape(&s, &how),
            };
            Ok(r.map(V::Str).into_iter().collect())
        }
        // ---- math
        "abs" | "ceiling" | "exp" | "floor" | "ln" | "sqrt" | "truncate" => math1(&base, name),
        "round" => {
            let Some(v) = single(&base, name)? else {
                return Ok(vec![]);
            };
            let d = match v.prim() {
                Some(P::Int(i)) => Decimal::from(i),
                Some(P::Dec(d)) => d,
                _ => return err("round() expects a number"),
            };
            let p = if args.is_empty() {
                0
            } else {
                arg_int(args, 0, focus, scope, ctx)?.unwrap_or(0)
            };
            if p < 0 {
                return err("round(): negative precision");
            }
            Ok(vec![V::Dec(d.round_dp_with_strategy(
                p as u32,
                RoundingStrategy::MidpointAwayFromZero,
            ))])
        }
        "log" | "power" => {
            let Some(v) = single(&base, name)? else {
                return Ok(vec![]);
            };
            let a = arg(args, 0, focus, scope, ctx)?;
            let Some(w) = single(&a, name)? else {
                return Ok(vec![]);
            };
            let (x, y) = match (v.prim(), w.prim()) {
                (Some(p), Some(q)) if to_dec(&p).is_some() && to_dec(&q).is_some() => (p, q),
                _ => return err(format!("{name}() expects numbers")),
            };
            let (dx, dy) = (
                to_dec(&x).unwrap_or_default(),
                to_dec(&y).unwrap_or_default(),
            );
            if name == "power" {
                if let (P::Int(b), P::Int(e)) = (&x, &y) {
                    if *e >= 0 {
                        return Ok(u32::try_from(*e)
                            .ok()
                            .and_then(|e| b.checked_pow(e))
                            .map(V::Int)
                            .into_iter()
                            .collect());
                    }
                }
                if dy.fract().is_zero() {
                    if let Some(e) = dy.to_i64() {
                        return Ok(num_result(dx.checked_powi(e)));
                    }
                }
                let r = dx.to_f64().zip(dy.to_f64()).map(|(a, b)| a.powf(b));
                return Ok(num_result(
                    r.filter(|f| f.is_finite()).and_then(value::dec_from_f64),
                ));
            }
            if dx <= Decimal::ZERO || dy <= Decimal::ZERO {
                return Ok(vec![]);
            }
            Ok(num_result(
                dx.to_f64()
                    .zip(dy.to_f64())
                    .and_then(|(a, b)| value::dec_from_f64(a.ln() / b.ln())),
            ))
        }
        // ---- tree navigation
        "children" => {
            let mut out = Vec::new();
            for i in &base {
                children_of(i, &mut out);
            }
            Ok(out)
        }
        "descendants" => {
            // one borrowed node: reuse an earlier walk of the same tree in this evaluation
            let key = match base.as_slice() {
                [V::Node(Node {
                    val: Some(J::B(v)),
                    ext: None,
                    ty,
                    res,
                    ..
                })] => Some((
                    (*v as *const Value, res.map(|r| r as *const Value)),
                    *ty,
                )),
                _ => None,
            };
            if let Some((p, t)) = key {
                if let Some((_, _, d)) = ctx
                    .descendants
                    .borrow()
                    .iter()
                    .find(|(q, u, _)| *q == p && *u == t)
                {
                    return Ok(d.as_ref().clone());
                }
            }
            let mut out = Vec::new();
            let mut queue = base;
            while !queue.is_empty() {
                let mut next = Vec::new();
                for i in &queue {
                    children_of(i, &mut next);
                }
                out.extend(next.iter().cloned());
                queue = next;
            }
            if let Some((p, t)) = key {
                ctx.descendants.borrow_mut().push((p, t, Rc::new(out.clone())));
            }
            Ok(out)
        }
        // ---- utility
        "trace" => {
            if let Some(p) = args.get(1) {
                let mut _proj = Vec::new();
                per_item(&base, p, scope, ctx, |_, r| {
                    _proj.extend(r);
                    Ok(true)
                })?;
            }
            Ok(base)
        }
        "now" => Ok(vec![V::DateTime(ctx.now())]),
        "today" => Ok(vec![V::Date(Dt {
            prec: 3,
            tz: None,
            ..ctx.now()
        })]),
        "timeOfDay" => Ok(vec![V::Time(Dt {
            prec: 7,
            tz: None,
            ..ctx.now()
        })]),
        "lowBoundary" | "highBoundary" => {
            let Some(v) = single(&base, name)? else {
                return Ok(vec![]);
            };
            let p = if args.is_empty() {
                None
            } else {
                arg_int(args, 0, focus, scope, ctx)?
            };
            let high = name == "highBoundary";
            if p.is_some_and(|p| p < 0) {
                return Ok(vec![]);
            }
            let pu = p.map(|p| p as u32);
            Ok(match v.prim() {
                Some(P::Int(i)) => {
                    num_result(value::dec_boundary(Decimal::from(i), pu.unwrap_or(8), high))
                }
                Some(P::Dec(d)) => num_result(value::dec_boundary(d, pu.unwrap_or(8), high)),
                Some(P::Qty(q)) => value::dec_boundary(q.value, pu.unwrap_or(8), high)
                    .map(|d| {
                        V::Qty(Qty {
                            value: d,
                            unit: q.unit.clone(),
                        })
                    })
                    .into_iter()
                    .collect(),
                Some(P::Date(d)) => value::dt_boundary(&d, pu.unwrap_or(8), high, 0)
                    .map(V::Date)
                    .into_iter()
                    .collect(),
                Some(P::DateTime(d)) => value::dt_boundary(&d, pu.unwrap_or(17), high, 1)
                    .map(|r| {
                        if r.prec <= 3 {
                            V::Date(r)
                        } else {
                            V::DateTime(r)
                        }
                    })
                    .into_iter()
                    .collect(),
                Some(P::Time(d)) => value::dt_boundary(&d, pu.unwrap_or(9), high, 2)
                    .map(V::Time)
                    .into_iter()
                    .collect(),
                _ => return err(format!("{name}() expects a number, quantity or date/time")),
            })
        }
        "precision" => {
            let Some(v) = single(&base, name)? else {
                return Ok(vec![]);
            };
            Ok(match v.prim() {
                Some(P::Dec(d)) => vec![V::Int(value::scale(&d) as i64)],
                Some(P::Int(_)) => vec![V::Int(0)],
                Some(P::Date(d)) => vec![V::Int(value::dt_precision(&d, 0))],
                Some(P::DateTime(d)) => vec![V::Int(value::dt_precision(&d, 1))],
                Some(P::Time(d)) => vec![V::Int(value::dt_precision(&d, 2))],
                _ => return err("precision() expects a number or date/time"),
            })
        }
        "comparable" => {
            let Some(v) = single(&base, name)? else {
                return Ok(vec![]);
            };
            let a = arg(args, 0, focus, scope, ctx)?;
            let Some(w) = single(&a, name)? else {
                return Ok(vec![]);
            };
            match (v.prim(), w.prim()) {
                (Some(P::Qty(x)), Some(P::Qty(y))) => one_bool(value::comparable(&x.unit, &y.unit)),
                _ => err("comparable() expects quantities"),
            }
        }
        "type" => Ok(base
            .iter()
            .map(|i| {
                let (ns, n) = type_of(i);
                let mut m = Map::new();
                m.insert("namespace".into(), Value::String(ns.into()));
                m.insert("name".into(), Value::String(n.into_owned()));
                V::Node(Node {
                    val: Some(J::O(Rc::new(Value::Object(m)))),
                    ext: None,
                    ty: None,
                    hint: None,
                    res: None,
                })
            })
            .collect()),
        "aggregate" => {
            let e = args.first().ok_or_else(|| {
                FhirPathError::Evaluation("aggregate() needs an aggregator".into())
            })?;
            let mut total = if args.len() > 1 {
                arg(args, 1, focus, scope, ctx)?
            } else {
                vec![]
            };
            for (i, item) in base.iter().enumerate() {
                let s = Scope {
                    this: Some(item),
                    index: Some(i as i64),
                    total: Some(&total),
                };
                let t = eval(e, std::slice::from_ref(item), s, ctx)?;
                total = t;
            }
            Ok(total)
        }
        "sort" => {
            // keys: `-expr` sorts descending
            let mut keyed: Vec<(Vec<Vec<V<'a>>>, V<'a>)> = Vec::new();
            for (i, item) in base.iter().enumerate() {
                let s = Scope {
                    this: Some(item),
                    index: Some(i as i64),
                    total: scope.total,
                };
                let mut keys = Vec::new();
                for a in args {
                    let e = match a {
                        Expr::Neg(x) => x.as_ref(),
                        x => x,
                    };
                    keys.push(eval(e, std::slice::from_ref(item), s, ctx)?);
                }
                if args.is_empty() {
                    keys.push(vec![item.clone()]);
                }
                keyed.push((keys, item.clone()));
            }
            let desc: Vec<bool> = args.iter().map(|a| matches!(a, Expr::Neg(_))).collect();
            let mut failure = None;
            keyed.sort_by(|(ka, _), (kb, _)| {
                for (i, (x, y)) in ka.iter().zip(kb).enumerate() {
                    let o = match (x.first(), y.first()) {
                        (None, None) => Ordering::Equal,
                        // empty keys sort first in either direction
                        (None, Some(_)) => return Ordering::Less,
                        (Some(_), None) => return Ordering::Greater,
                        (Some(p), Some(q)) => match item_cmp(p, q) {
                            Ok(o) => o.unwrap_or(Ordering::Equal),
                            Err(e) => {
                                failure = Some(e);
                                Ordering::Equal
                            }
                        },
                    };
                    let o = if desc.get(i).copied().unwrap_or(false) {
                        o.reverse()
                    } else {
                        o
                    };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            });
            if let Some(e) = failure {
                return Err(e);
            }
            Ok(keyed.into_iter().map(|(_, v)| v).collect())
        }
        "not" => Ok(bools(to_bool(&base)?.map(|b| !b))),
        // ---- FHIR
        "extension" => {
            let Some(url) = arg_str(args, 0, focus, scope, ctx)? else {
                return Ok(vec![]);
            };
            let mut exts = Vec::new();
            navigate(&base, "extension", false, ctx, &mut exts)?;
            exts.retain(|e| match e {
                V::Node(n) => {
                    node_json(n)
                        .and_then(|v| json_get(v, "url"))
                        .and_then(Value::as_str)
                        == Some(url.as_str())
                }
                _ => false,
            });
            Ok(exts)
        }
        "hasValue" => one_bool(
            matches!(base.as_slice(), [V::Node(n)] if node_json(n).is_some_and(|v| !v.is_object() && !v.is_array()))
                || matches!(base.as_slice(), [one] if !matches!(one, V::Node(_))),
        ),
        "getValue" => Ok(match base.as_slice() {
            [V::Node(n)] if node_json(n).is_some_and(|v| !v.is_object() && !v.is_array()) => {
                vec![V::Node(Node {
                    ext: None,
                    ..n.clone()
                })]
            }
            _ => vec![],
        }),
        "resolve" => {
            let mut out = Vec::new();
            for i in &base {
                resolve(i, ctx, &mut out);
            }
            Ok(out)
        }
        // no terminology server: membership is unknown
        "memberOf" => Ok(vec![]),
        other => Err(FhirPathError::UnsupportedFunction(other.to_string())),
    }
}

// ---------------------------------------------------------------------------------------------
// Expressions

fn env_var<'a>(name: &str, ctx: &Ctx<'a, '_>) -> Res<Vec<V<'a>>> {
    if let Some(env) = ctx.env {
        if let Some(items) = env.variables.get(name) {
            return Ok(items.iter().map(|i| from_item(i, ctx.resource)).collect());
        }
    }
    let s = |x: &str| Ok(vec![V::Str(x.to_string())]);
    match name {
        "resource" | "rootResource" => Ok(vec![root_node(ctx.resource)]),
        "context" => Ok(ctx.context.to_vec()),
        "ucum" => s(UCUM),
        "sct" => s("http://snomed.info/sct"),
        "loinc" => s("http://loinc.org"),
        _ => {
            if let Some(vs) = name.strip_prefix("vs-") {
                return s(&format!("http://hl7.org/fhir/ValueSet/{vs}"));
            }
            if let Some(ext) = name.strip_prefix("ext-") {
                return s(&format!("http://hl7.org/fhir/StructureDefinition/{ext}"));
            }
            err(format!("unknown variable %{name}"))
        }
    }
}

/// Strict mode: `(x as T).name` / `x.ofType(T).name` where `T` has no element `name`.
fn strict_member_check(base: &Expr, name: &str) -> Res<()> {
    let t = match base {
        Expr::As(_, t) => Some(t.clone()),
        Expr::Call(Some(_), f, args) if f == "as" || f == "ofType" => type_arg(args.first()).ok().map(Cow::into_owned),
        _ => None,
    };
    let Some(t) = t else { return Ok(()) };
    let m = model();
    let (_, tn) = split_type(&t);
    if m.kind(tn).is_some_and(|k| k != Kind::Primitive) && m.element(tn, name).is_none() {
        return err(format!("type {tn} has no element `{name}`"));
    }
    Ok(())
}

fn eval<'a>(
    expr: &Expr,
    focus: &[V<'a>],
    scope: Scope<'_, 'a>,
    ctx: &Ctx<'a, '_>,
) -> Res<Vec<V<'a>>> {
    let memo_slot = {
        let memo = ctx.memo.borrow();
        if memo.is_empty() {
            None
        } else {
            let key = expr as *const Expr;
            match memo.iter().position(|(q, _)| *q == key) {
                Some(i) => match &memo[i].1 {
                    Some(v) => return Ok(v.clone()),
                    None => Some(i),
                },
                None => None,
            }
        }
    };
    let out = eval_uncached(expr, focus, scope, ctx)?;
    if let Some(i) = memo_slot {
        ctx.memo.borrow_mut()[i].1 = Some(out.clone());
    }
    Ok(out)
}

fn eval_uncached<'a>(
    expr: &Expr,
    focus: &[V<'a>],
    scope: Scope<'_, 'a>,
    ctx: &Ctx<'a, '_>,
) -> Res<Vec<V<'a>>> {
    match expr {
        Expr::This => Ok(match scope.this {
            Some(t) => vec![t.clone()],
            None => focus.to_vec(),
        }),
        Expr::IndexVar => Ok(scope.index.map(V::Int).into_iter().collect()),
        Expr::Total => Ok(scope.total.map(<[V<'a>]>::to_vec).unwrap_or_default()),
        Expr::Var(v) => env_var(v, ctx),
        Expr::Literal(l) => Ok(match l {
            Literal::Empty => vec![],
            Literal::Bool(b) => vec![V::Bool(*b)],
            Literal::String(s) => vec![V::Str(s.clone())],
            Literal::Integer(i) => vec![V::Int(*i)],
            Literal::Decimal(d) => vec![V::Dec(*d)],
            Literal::Date(d) => vec![V::Date(*d)],
            Literal::DateTime(d) => vec![V::DateTime(*d)],
            Literal::Time(d) => vec![V::Time(*d)],
            Literal::Quantity(q) => vec![V::Qty(q.clone())],
        }),
        Expr::Member(base, name) => {
            if ctx.strict {
                if let Some(b) = base {
                    strict_member_check(b, name)?;
                }
            }
            let mut out = Vec::new();
            match base {
                None => navigate(focus, name, true, ctx, &mut out)?,
                Some(b) => navigate(&eval(b, focus, scope, ctx)?, name, false, ctx, &mut out)?,
            }
            Ok(out)
        }
        Expr::Call(base, name, args) => {
            let (b, explicit) = match base {
                None => (focus.to_vec(), false),
                Some(b) => {
                    if ctx.check_ordered
                        && matches!(name.as_str(), "skip" | "take" | "first" | "last" | "tail")
                        && matches!(&**b, Expr::Call(_, f, _) if f == "children" || f == "descendants")
                    {
                        return err(format!(
                            "{name}() on the unordered result of a tree navigation"
                        ));
                    }
                    (eval(b, focus, scope, ctx)?, true)
                }
            };
            call(b, explicit, name, args, focus, scope, ctx)
        }
        Expr::Index(base, idx) => {
            let b = eval(base, focus, scope, ctx)?;
            let i = eval(idx, focus, scope, ctx)?;
            let Some(iv) = single(&i, "indexer")? else {
                return Ok(vec![]);
            };
            let n = int_of(iv)
                .ok_or_else(|| FhirPathError::Evaluation("indexer must be an integer".into()))?;
            Ok(if n < 0 {
                vec![]
            } else {
                b.into_iter().nth(n as usize).into_iter().collect()
            })
        }
        Expr::Is(e, t) => {
            let r = eval(e, focus, scope, ctx)?;
            match single(&r, "is")? {
                None => Ok(vec![]),
                Some(v) => Ok(vec![V::Bool(type_matches(v, t, false)?)]),
            }
        }
        Expr::As(e, t) => {
            let r = eval(e, focus, scope, ctx)?;
            if !ctx.lenient && r.len() > 1 {
                return err("as: expected a single item");
            }
            let mut out = Vec::new();
            for i in r {
                if type_matches(&i, t, true)? {
                    out.push(i);
                }
            }
            Ok(out)
        }
        Expr::Neg(e) => {
            let r = eval(e, focus, scope, ctx)?;
            let Some(v) = single(&r, "unary -")? else {
                return Ok(vec![]);
            };
            Ok(vec![match v.prim() {
                Some(P::Int(i)) => V::Int(-i),
                Some(P::Dec(d)) => {
                    let mut n = -d;
                    if n.is_zero() {
                        n.set_sign_positive(true);
                    }
                    V::Dec(n)
                }
                Some(P::Qty(q)) => V::Qty(Qty {
                    value: -q.value,
                    unit: q.unit,
                }),
                _ => return err("unary - expects a number or quantity"),
            }])
        }
        Expr::Binary(op, l, r) => binary(*op, l, r, focus, scope, ctx),
    }
}

fn arith<'a>(op: BinOp, a: &V<'a>, b: &V<'a>) -> Res<Vec<V<'a>>> {
    let (pa, pb) = match (a.prim(), b.prim()) {
        (Some(x), Some(y)) => (x, y),
        _ => return err("arithmetic on non-primitive values"),
    };
    let dec = |d: Option<Decimal>| Ok(d.map(V::Dec).into_iter().collect());
    match (op, &pa, &pb) {
        (BinOp::Add, P::Str(x), P::Str(y)) => Ok(vec![V::Str(format!("{x}{y}"))]),
        (BinOp::Add | BinOp::Sub, P::Date(d) | P::DateTime(d) | P::Time(d), P::Qty(q)) => {
            let sign = if op == BinOp::Add { 1 } else { -1 };
            let is_time = matches!(pa, P::Time(_));
            let r = value::dt_add(d, q.value, &q.unit, sign, is_time)
                .map_err(FhirPathError::Evaluation)?;
            Ok(vec![match pa {
                P::Date(_) => V::Date(r),
                P::DateTime(_) => V::DateTime(r),
                _ => V::Time(r),
            }])
        }
        (_, P::Int(x), P::Int(y)) => Ok(match op {
            BinOp::Add => x.checked_add(*y).map(V::Int).into_iter().collect(),
            BinOp::Sub => x.checked_sub(*y).map(V::Int).into_iter().collect(),
            BinOp::Mul => x.checked_mul(*y).map(V::Int).into_iter().collect(),
            BinOp::Div => {
                if *y == 0 {
                    vec![]
                } else {
                    Decimal::from(*x)
                        .checked_div(Decimal::from(*y))
                        .map(V::Dec)
                        .into_iter()
                        .collect()
                }
            }
            BinOp::IntDiv => x.checked_div(*y).map(V::Int).into_iter().collect(),
            BinOp::Mod => x.checked_rem(*y).map(V::Int).into_iter().collect(),
            _ => vec![],
        }),
        (_, P::Int(_) | P::Dec(_), P::Int(_) | P::Dec(_)) => {
            let (x, y) = (
                to_dec(&pa).unwrap_or_default(),
                to_dec(&pb).unwrap_or_default(),
            );
            match op {
                BinOp::Add => dec(x.checked_add(y)),
                BinOp::Sub => dec(x.checked_sub(y)),
                BinOp::Mul => dec(x.checked_mul(y)),
                BinOp::Div => dec(if y.is_zero() { None } else { x.checked_div(y) }),
                BinOp::IntDiv => Ok(if y.is_zero() {
                    vec![]
                } else {
                    x.checked_div(y)
                        .and_then(|q| q.trunc().to_i64())
                        .map(V::Int)
                        .into_iter()
                        .collect()
                }),
                BinOp::Mod => dec(if y.is_zero() { None } else { x.checked_rem(y) }),
                _ => Ok(vec![]),
            }
        }
        (BinOp::Add | BinOp::Sub, P::Qty(x), P::Qty(y)) => {
            let yv = if x.unit == y.unit {
                Some(y.value)
            } else {
                value::convert(y, &x.unit)
            };
            let Some(yv) = yv else {
                return err(format!("incompatible units '{}' and '{}'", x.unit, y.unit));
            };
            let v = if op == BinOp::Add {
                x.value + yv
            } else {
                x.value - yv
            };
            Ok(vec![V::Qty(Qty {
                value: v,
                unit: x.unit.clone(),
            })])
        }
        (BinOp::Mul, P::Qty(x), P::Qty(y)) => Ok(vec![V::Qty(Qty {
            value: x.value * y.value,
            unit: unit_mul(&x.unit, &y.unit, false),
        })]),
        (BinOp::Div, P::Qty(x), P::Qty(y)) => {
            if y.value.is_zero() {
                return Ok(vec![]);
            }
            Ok(vec![V::Qty(Qty {
                value: x.value / y.value,
                unit: unit_mul(&x.unit, &y.unit, true),
            })])
        }
        (BinOp::Mul | BinOp::Div, P::Qty(x), P::Int(_) | P::Dec(_)) => {
            let n = to_dec(&pb).unwrap_or_default();
            if op == BinOp::Div && n.is_zero() {
                return Ok(vec![]);
            }
            let v = if op == BinOp::Mul {
                x.value * n
            } else {
                x.value / n
            };
            Ok(vec![V::Qty(Qty {
                value: v,
                unit: x.unit.clone(),
            })])
        }
        (BinOp::Mul, P::Int(_) | P::Dec(_), P::Qty(y)) => Ok(vec![V::Qty(Qty {
            value: to_dec(&pa).unwrap_or_default() * y.value,
            unit: y.unit.clone(),
        })]),
        _ => err(format!(
            "operator {op:?} is not defined for these operand types"
        )),
    }
}

fn unit_mul(a: &str, b: &str, div: bool) -> String {
    let u = |s: &str| {
        value::calendar_unit(s)
            .map(|c| {
                match c {
                    "week" => "wk",
                    "day" => "d",
                    "hour" => "h",
                    "minute" => "min",
                    "second" => "s",
                    "millisecond" => "ms",
                    "month" => "mo",
                    _ => "a",
                }
                .to_string()
            })
            .unwrap_or_else(|| s.to_string())
    };
    let (a, b) = (u(a), u(b));
    if div {
        if a == b {
            return "1".into();
        }
        if b == "1" {
            return a;
        }
        return format!("{a}/{b}");
    }
    match (a.as_str(), b.as_str()) {
        ("1", _) => b,
        (_, "1") => a,
        _ => format!("{a}.{b}"),
    }
}

fn binary<'a>(
    op: BinOp,
    l: &Expr,
    r: &Expr,
    focus: &[V<'a>],
    scope: Scope<'_, 'a>,
    ctx: &Ctx<'a, '_>,
) -> Res<Vec<V<'a>>> {
    // short-circuit logic first (three-valued, FHIRPath §"Boolean logic")
    match op {
        BinOp::And => {
            let a = to_bool(&eval(l, focus, scope, ctx)?)?;
            if a == Some(false) {
                return Ok(bools(Some(false)));
            }
            let b = to_bool(&eval(r, focus, scope, ctx)?)?;
            return Ok(bools(match (a, b) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }));
        }
        BinOp::Or => {
            let a = to_bool(&eval(l, focus, scope, ctx)?)?;
            if a == Some(true) {
                return Ok(bools(Some(true)));
            }
            let b = to_bool(&eval(r, focus, scope, ctx)?)?;
            return Ok(bools(match (a, b) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }));
        }
        BinOp::Implies => {
            let a = to_bool(&eval(l, focus, scope, ctx)?)?;
            if a == Some(false) {
                return Ok(bools(Some(true)));
            }
            let b = to_bool(&eval(r, focus, scope, ctx)?)?;
            return Ok(bools(match (a, b) {
                (_, Some(true)) => Some(true),
                (Some(true), Some(false)) => Some(false),
                _ => None,
            }));
        }
        _ => {}
    }
    let a = eval(l, focus, scope, ctx)?;
    let b = eval(r, focus, scope, ctx)?;
    match op {
        BinOp::Union => Ok(distinct(a.into_iter().chain(b))),
        BinOp::Xor => Ok(bools(match (to_bool(&a)?, to_bool(&b)?) {
            (Some(x), Some(y)) => Some(x != y),
            _ => None,
        })),
        BinOp::Eq | BinOp::Ne => {
            if a.is_empty() || b.is_empty() {
                return Ok(vec![]);
            }
            let eq = collections_equal(&a, &b);
            Ok(bools(eq.map(|e| if op == BinOp::Eq { e } else { !e })))
        }
        BinOp::Equiv | BinOp::NotEquiv => {
            let eq = collections_equiv(&a, &b);
            Ok(bools(Some(if op == BinOp::Equiv { eq } else { !eq })))
        }
        BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
            let (Some(x), Some(y)) = (single(&a, "comparison")?, single(&b, "comparison")?) else {
                return Ok(vec![]);
            };
            use std::cmp::Ordering::*;
            Ok(bools(item_cmp(x, y)?.map(|o| match op {
                BinOp::Lt => o == Less,
                BinOp::Gt => o == Greater,
                BinOp::Le => o != Greater,
                _ => o != Less,
            })))
        }
        BinOp::Concat => {
            let s = |c: &[V<'_>]| -> Res<String> {
                match single(c, "&")? {
                    None => Ok(String::new()),
                    Some(v) => match v.prim() {
                        Some(P::Str(s)) => Ok(s.into_owned()),
                        Some(p) => Ok(prim_to_string(&p)),
                        None => err("& expects strings"),
                    },
                }
            };
            Ok(vec![V::Str(s(&a)? + &s(&b)?)])
        }
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::IntDiv | BinOp::Mod => {
            let (Some(x), Some(y)) = (single(&a, "arithmetic")?, single(&b, "arithmetic")?) else {
                return Ok(vec![]);
            };
            arith(op, x, y)
        }
        BinOp::In | BinOp::Contains => {
            let (needle, hay) = if op == BinOp::In { (&a, &b) } else { (&b, &a) };
            match single(needle, "in/contains")? {
                None => Ok(vec![]),
                Some(one) => Ok(bools(Some(contains_eq(hay, one)))),
            }
        }
        BinOp::And | BinOp::Or | BinOp::Implies => Ok(vec![]), // handled above
    }
}
