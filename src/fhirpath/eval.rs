//! Evaluator: walks the AST over borrowed JSON (no copies of the resource).

use super::{BinOp, Expr, Literal};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// One item of a FHIRPath collection: a JSON value (borrowed from the resource, or owned for
/// computed results such as booleans and literals) and, when known, its FHIR type name.
///
/// `type_name` is set for choice elements (`valueQuantity` → `"Quantity"`, `valueDateTime` →
/// `"DateTime"`: compare with the first letter case-insensitive) and by `resolve()` (the
/// reference's target type, e.g. `"Patient"`). Resources carry their type in `resourceType`.
#[derive(Debug, Clone)]
pub struct Item<'a> {
    /// The value.
    pub value: Cow<'a, Value>,
    /// FHIR type name when known (see type docs).
    pub type_name: Option<&'a str>,
}

impl<'a> Item<'a> {
    fn borrowed(v: &'a Value) -> Self {
        Item { value: Cow::Borrowed(v), type_name: None }
    }
    fn owned(v: Value) -> Self {
        Item { value: Cow::Owned(v), type_name: None }
    }
    fn as_borrowed(&self) -> Option<&'a Value> {
        match self.value {
            Cow::Borrowed(v) => Some(v),
            Cow::Owned(_) => None,
        }
    }
}

struct Ctx<'a> {
    root: &'a Value,
}

/// Evaluates `expr` with the resource as root and focus.
///
/// Input: a parsed expression and a FHIR resource in JSON. Output: the resulting collection in
/// document order (borrowing from `resource` where possible). Never fails; see module docs.
/// Spec: FHIRPath N1 §"Path selection", FHIR R4 §"FHIRPath in FHIR" (choice types, `resolve()`).
pub fn evaluate<'a>(expr: &Expr, resource: &'a Value) -> Vec<Item<'a>> {
    let ctx = Ctx { root: resource };
    eval(expr, &[Item::borrowed(resource)], &ctx)
}

/// Evaluates `expr` on a given focus collection (e.g. a SearchParameter component expression on
/// a `useContext` element), with `resource` as `%resource`.
/// Input/output as [`evaluate`].
pub fn evaluate_on<'a>(expr: &Expr, focus: &[Item<'a>], resource: &'a Value) -> Vec<Item<'a>> {
    let ctx = Ctx { root: resource };
    eval(expr, focus, &ctx)
}

const COMPLEX_TYPES: &[&str] = &[
    "Address", "Age", "Annotation", "Attachment", "CodeableConcept", "Coding", "ContactDetail",
    "ContactPoint", "Contributor", "Count", "DataRequirement", "Distance", "Dosage", "Duration",
    "Expression", "HumanName", "Identifier", "Meta", "Money", "ParameterDefinition", "Period",
    "Quantity", "Range", "Ratio", "Reference", "RelatedArtifact", "SampledData", "Signature",
    "Timing", "TriggerDefinition", "UsageContext",
];
const PRIMITIVE_TYPES: &[&str] = &[
    "Base64Binary", "Boolean", "Canonical", "Code", "Date", "DateTime", "Decimal", "Id", "Instant",
    "Integer", "Markdown", "Oid", "PositiveInt", "String", "Time", "UnsignedInt", "Uri", "Url", "Uuid",
];
const STRING_PRIMITIVES: &[&str] = &[
    "string", "code", "uri", "url", "canonical", "id", "markdown", "date", "dateTime", "instant",
    "time", "oid", "uuid", "base64Binary",
];
const NUMBER_PRIMITIVES: &[&str] = &["integer", "decimal", "positiveInt", "unsignedInt"];

fn is_choice_suffix(s: &str) -> bool {
    COMPLEX_TYPES.contains(&s) || PRIMITIVE_TYPES.contains(&s)
}

/// Type names equal with the first letter case-insensitive (`DateTime` = `dateTime`).
fn type_eq(a: &str, b: &str) -> bool {
    let (mut ca, mut cb) = (a.chars(), b.chars());
    match (ca.next(), cb.next()) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(&y) && ca.as_str() == cb.as_str(),
        (None, None) => true,
        _ => false,
    }
}

fn type_matches_name(actual: &str, wanted: &str) -> bool {
    if type_eq(actual, wanted) {
        return true;
    }
    // FHIR specialisations of Quantity; FHIRPath `is` honours subtypes.
    type_eq(wanted, "Quantity")
        && ["Age", "Count", "Distance", "Duration", "SimpleQuantity", "MoneyQuantity"]
            .iter()
            .any(|t| type_eq(actual, t))
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

fn type_matches(item: &Item<'_>, wanted: &str) -> bool {
    if let Some(t) = item.type_name {
        return type_matches_name(t, wanted);
    }
    match &*item.value {
        Value::Object(o) => {
            if let Some(rt) = o.get("resourceType").and_then(Value::as_str) {
                return rt == wanted
                    || wanted == "Resource"
                    || (wanted == "DomainResource" && !matches!(rt, "Bundle" | "Binary" | "Parameters"));
            }
            match guess_complex(o) {
                Some(g) => type_matches_name(g, wanted),
                None => wanted.starts_with(|c: char| c.is_ascii_uppercase()),
            }
        }
        Value::Bool(_) => type_eq(wanted, "boolean"),
        Value::Number(_) => NUMBER_PRIMITIVES.iter().any(|t| type_eq(t, wanted)),
        Value::String(_) => STRING_PRIMITIVES.iter().any(|t| type_eq(t, wanted)),
        _ => false,
    }
}

/// Static copy of a type name, for items whose JSON is owned.
fn static_type(t: &str) -> Option<&'static str> {
    COMPLEX_TYPES.iter().chain(PRIMITIVE_TYPES.iter()).find(|x| **x == t).copied()
}

/// Pushes the children named `name` of `v` (arrays flattened, choice types resolved).
fn push_children<'b>(v: &'b Value, name: &str, out: &mut Vec<(&'b Value, Option<&'b str>)>) {
    let Value::Object(o) = v else {
        // `.value` of a primitive is the primitive itself
        if name == "value" && !v.is_null() && !v.is_array() {
            out.push((v, None));
        }
        return;
    };
    if let Some(c) = o.get(name) {
        push_flat(c, None, out);
        return;
    }
    // choice element: name[x] → nameType
    for (k, c) in o {
        if let Some(suffix) = k.strip_prefix(name) {
            if suffix.starts_with(|ch: char| ch.is_ascii_uppercase()) && is_choice_suffix(suffix) {
                push_flat(c, Some(suffix), out);
            }
        }
    }
}

fn push_flat<'b>(c: &'b Value, ty: Option<&'b str>, out: &mut Vec<(&'b Value, Option<&'b str>)>) {
    match c {
        Value::Array(a) => out.extend(a.iter().filter(|x| !x.is_null()).map(|x| (x, ty))),
        Value::Null => {}
        other => out.push((other, ty)),
    }
}

fn navigate<'a>(focus: &[Item<'a>], name: &str, root_position: bool, out: &mut Vec<Item<'a>>) {
    if root_position && name.starts_with(|c: char| c.is_ascii_uppercase()) {
        // a type name at the start of a path filters the focus by type
        out.extend(focus.iter().filter(|i| type_matches(i, name)).cloned());
        return;
    }
    let mut tmp = Vec::new();
    for item in focus {
        match &item.value {
            Cow::Borrowed(v) => {
                tmp.clear();
                push_children(v, name, &mut tmp);
                out.extend(tmp.drain(..).map(|(v, t)| Item { value: Cow::Borrowed(v), type_name: t }));
            }
            Cow::Owned(v) => {
                let mut t2 = Vec::new();
                push_children(v, name, &mut t2);
                out.extend(t2.into_iter().map(|(v, t)| Item {
                    value: Cow::Owned(v.clone()),
                    type_name: t.and_then(static_type),
                }));
            }
        }
    }
}

fn to_bool(items: &[Item<'_>]) -> Option<bool> {
    match items {
        [] => None,
        [one] => Some(match &*one.value {
            Value::Bool(b) => *b,
            _ => true,
        }),
        _ => None,
    }
}

fn bool_item<'a>(b: Option<bool>) -> Vec<Item<'a>> {
    match b {
        Some(b) => vec![Item::owned(Value::Bool(b))],
        None => Vec::new(),
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn values_equiv(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
            norm(x) == norm(y)
        }
        _ => values_equal(a, b),
    }
}

fn same_item(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (&a.value, &b.value) {
        (Cow::Borrowed(x), Cow::Borrowed(y)) => std::ptr::eq(*x, *y),
        (x, y) => values_equal(x, y),
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn type_arg(e: Option<&Expr>) -> Option<&str> {
    match e? {
        Expr::Member(_, n) => Some(n),
        Expr::Literal(Literal::String(s)) => Some(s),
        _ => None,
    }
}

fn int_arg(e: Option<&Expr>, focus: &[Item<'_>], ctx: &Ctx<'_>) -> Option<usize> {
    let e = e?;
    let v = eval_owned_scalar(e, focus, ctx)?;
    v.as_f64().filter(|n| *n >= 0.0).map(|n| n as usize)
}

fn eval_owned_scalar(e: &Expr, focus: &[Item<'_>], ctx: &Ctx<'_>) -> Option<Value> {
    let r = eval(e, focus, ctx);
    match r.as_slice() {
        [one] => Some(one.value.clone().into_owned()),
        _ => None,
    }
}

fn single_str<'v>(items: &'v [Item<'_>]) -> Option<&'v str> {
    match items {
        [one] => one.value.as_str(),
        _ => None,
    }
}

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
    (ty.starts_with(|c: char| c.is_ascii_uppercase()) && ty.chars().all(|c| c.is_ascii_alphanumeric()))
        .then_some(ty)
}

fn resolve<'a>(item: &Item<'a>, ctx: &Ctx<'a>, out: &mut Vec<Item<'a>>) {
    let Some(v) = item.as_borrowed() else { return };
    let (r, explicit_type) = match v {
        Value::Object(o) => (
            o.get("reference").and_then(Value::as_str),
            o.get("type").and_then(Value::as_str),
        ),
        Value::String(s) => (Some(s.as_str()), None),
        _ => return,
    };
    if let Some(local) = r.and_then(|r| r.strip_prefix('#')) {
        if let Some(Value::Array(cs)) = ctx.root.get("contained") {
            if let Some(c) = cs.iter().find(|c| c.get("id").and_then(Value::as_str) == Some(local)) {
                out.push(Item::borrowed(c));
            }
        }
        return;
    }
    let ty = r.and_then(reference_type).or(explicit_type.and_then(|t| reference_type_name(t)));
    if let Some(t) = ty {
        out.push(Item { value: Cow::Borrowed(v), type_name: Some(t) });
    }
}

/// `Reference.type` may be a bare type code or a StructureDefinition URL.
fn reference_type_name(t: &str) -> Option<&str> {
    let last = t.rsplit('/').next()?;
    last.starts_with(|c: char| c.is_ascii_uppercase()).then_some(last)
}

fn call<'a>(
    base: &[Item<'a>],
    name: &str,
    args: &[Expr],
    outer_focus: &[Item<'a>],
    ctx: &Ctx<'a>,
) -> Vec<Item<'a>> {
    match name {
        "where" => {
            let Some(crit) = args.first() else { return Vec::new() };
            base.iter()
                .filter(|i| to_bool(&eval(crit, std::slice::from_ref(*i), ctx)) == Some(true))
                .cloned()
                .collect()
        }
        "select" => {
            let Some(e) = args.first() else { return Vec::new() };
            base.iter().flat_map(|i| eval(e, std::slice::from_ref(i), ctx)).collect()
        }
        "exists" => {
            let b = match args.first() {
                None => !base.is_empty(),
                Some(crit) => base
                    .iter()
                    .any(|i| to_bool(&eval(crit, std::slice::from_ref(i), ctx)) == Some(true)),
            };
            bool_item(Some(b))
        }
        "all" => {
            let Some(crit) = args.first() else { return bool_item(Some(true)) };
            bool_item(Some(
                base.iter().all(|i| to_bool(&eval(crit, std::slice::from_ref(i), ctx)) == Some(true)),
            ))
        }
        "allTrue" => bool_item(Some(base.iter().all(|i| i.value.as_bool() == Some(true)))),
        "anyTrue" => bool_item(Some(base.iter().any(|i| i.value.as_bool() == Some(true)))),
        "empty" => bool_item(Some(base.is_empty())),
        "not" => bool_item(to_bool(base).map(|b| !b)),
        "hasValue" => bool_item(Some(
            matches!(base, [one] if !one.value.is_object() && !one.value.is_array() && !one.value.is_null()),
        )),
        "getValue" => base.iter().filter(|i| !i.value.is_object()).cloned().collect(),
        "first" => base.first().cloned().into_iter().collect(),
        "last" => base.last().cloned().into_iter().collect(),
        "tail" => base.iter().skip(1).cloned().collect(),
        "single" => {
            if base.len() == 1 {
                base.to_vec()
            } else {
                Vec::new()
            }
        }
        "skip" => {
            let n = int_arg(args.first(), outer_focus, ctx).unwrap_or(0);
            base.iter().skip(n).cloned().collect()
        }
        "take" => {
            let n = int_arg(args.first(), outer_focus, ctx).unwrap_or(0);
            base.iter().take(n).cloned().collect()
        }
        "count" => vec![Item::owned(Value::from(base.len()))],
        "distinct" => {
            let mut out: Vec<Item<'a>> = Vec::new();
            for i in base {
                if !out.iter().any(|o| values_equal(&o.value, &i.value)) {
                    out.push(i.clone());
                }
            }
            out
        }
        "ofType" | "as" => match type_arg(args.first()) {
            Some(t) => base.iter().filter(|i| type_matches(i, t)).cloned().collect(),
            None => Vec::new(),
        },
        "is" => match (type_arg(args.first()), base) {
            (Some(t), [one]) => bool_item(Some(type_matches(one, t))),
            _ => Vec::new(),
        },
        "extension" => {
            let url = args.first().and_then(|e| eval_owned_scalar(e, outer_focus, ctx));
            let Some(url) = url.as_ref().and_then(Value::as_str) else { return Vec::new() };
            let mut exts = Vec::new();
            navigate(base, "extension", false, &mut exts);
            exts.retain(|e| e.value.get("url").and_then(Value::as_str) == Some(url));
            exts
        }
        "resolve" => {
            let mut out = Vec::new();
            for i in base {
                resolve(i, ctx, &mut out);
            }
            out
        }
        "children" => {
            let mut out = Vec::new();
            for i in base {
                if let Some(Value::Object(o)) = i.as_borrowed() {
                    for (k, v) in o {
                        if k != "resourceType" {
                            let mut tmp = Vec::new();
                            push_flat(v, None, &mut tmp);
                            out.extend(tmp.into_iter().map(|(v, t)| Item { value: Cow::Borrowed(v), type_name: t }));
                        }
                    }
                }
            }
            out
        }
        "startsWith" | "endsWith" | "contains" => {
            let arg = args.first().and_then(|e| eval_owned_scalar(e, outer_focus, ctx));
            match (single_str(base), arg.as_ref().and_then(Value::as_str)) {
                (Some(s), Some(a)) => bool_item(Some(match name {
                    "startsWith" => s.starts_with(a),
                    "endsWith" => s.ends_with(a),
                    _ => s.contains(a),
                })),
                _ => Vec::new(),
            }
        }
        "lower" | "upper" => match single_str(base) {
            Some(s) => vec![Item::owned(Value::String(if name == "lower" {
                s.to_lowercase()
            } else {
                s.to_uppercase()
            }))],
            None => Vec::new(),
        },
        "length" => match single_str(base) {
            Some(s) => vec![Item::owned(Value::from(s.chars().count()))],
            None => Vec::new(),
        },
        "toString" => match base {
            [one] => match &*one.value {
                Value::String(s) => vec![Item::owned(Value::String(s.clone()))],
                Value::Number(n) => vec![Item::owned(Value::String(n.to_string()))],
                Value::Bool(b) => vec![Item::owned(Value::String(b.to_string()))],
                _ => Vec::new(),
            },
            _ => Vec::new(),
        },
        "iif" => {
            let cond = args.first().map(|c| to_bool(&eval(c, base, ctx)));
            match cond {
                Some(Some(true)) => args.get(1).map(|e| eval(e, base, ctx)).unwrap_or_default(),
                Some(_) => args.get(2).map(|e| eval(e, base, ctx)).unwrap_or_default(),
                None => Vec::new(),
            }
        }
        "trace" => base.to_vec(),
        _ => Vec::new(),
    }
}

fn eval<'a>(expr: &Expr, focus: &[Item<'a>], ctx: &Ctx<'a>) -> Vec<Item<'a>> {
    match expr {
        Expr::This => focus.to_vec(),
        Expr::Var(v) => match v.as_str() {
            "resource" | "rootResource" | "context" => vec![Item::borrowed(ctx.root)],
            "ucum" => vec![Item::owned(Value::String("http://unitsofmeasure.org".into()))],
            "sct" => vec![Item::owned(Value::String("http://snomed.info/sct".into()))],
            "loinc" => vec![Item::owned(Value::String("http://loinc.org".into()))],
            _ => Vec::new(),
        },
        Expr::Literal(l) => match l {
            Literal::Empty => Vec::new(),
            Literal::Bool(b) => vec![Item::owned(Value::Bool(*b))],
            Literal::String(s) | Literal::DateTime(s) => vec![Item::owned(Value::String(s.clone()))],
            Literal::Number(n) => serde_json::Number::from_f64(*n)
                .map(|n| vec![Item::owned(Value::Number(n))])
                .unwrap_or_default(),
        },
        Expr::Member(base, name) => {
            let mut out = Vec::new();
            match base {
                None => navigate(focus, name, true, &mut out),
                Some(b) => navigate(&eval(b, focus, ctx), name, false, &mut out),
            }
            out
        }
        Expr::Call(base, name, args) => {
            let b = match base {
                None => focus.to_vec(),
                Some(b) => eval(b, focus, ctx),
            };
            call(&b, name, args, focus, ctx)
        }
        Expr::Index(base, idx) => {
            let b = eval(base, focus, ctx);
            match int_arg(Some(idx), focus, ctx) {
                Some(n) => b.into_iter().nth(n).into_iter().collect(),
                None => Vec::new(),
            }
        }
        Expr::Is(e, t) => match eval(e, focus, ctx).as_slice() {
            [one] => bool_item(Some(type_matches(one, t))),
            _ => Vec::new(),
        },
        Expr::As(e, t) => eval(e, focus, ctx).into_iter().filter(|i| type_matches(i, t)).collect(),
        Expr::Neg(e) => eval(e, focus, ctx)
            .into_iter()
            .filter_map(|i| i.value.as_f64().and_then(|n| serde_json::Number::from_f64(-n)))
            .map(|n| Item::owned(Value::Number(n)))
            .collect(),
        Expr::Binary(op, l, r) => binary(*op, l, r, focus, ctx),
    }
}

fn binary<'a>(op: BinOp, l: &Expr, r: &Expr, focus: &[Item<'a>], ctx: &Ctx<'a>) -> Vec<Item<'a>> {
    // short-circuit logic first (three-valued, FHIRPath §"Boolean logic")
    match op {
        BinOp::And => {
            let a = to_bool(&eval(l, focus, ctx));
            if a == Some(false) {
                return bool_item(Some(false));
            }
            let b = to_bool(&eval(r, focus, ctx));
            return bool_item(match (a, b) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            });
        }
        BinOp::Or => {
            let a = to_bool(&eval(l, focus, ctx));
            if a == Some(true) {
                return bool_item(Some(true));
            }
            let b = to_bool(&eval(r, focus, ctx));
            return bool_item(match (a, b) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            });
        }
        BinOp::Implies => {
            let a = to_bool(&eval(l, focus, ctx));
            if a == Some(false) {
                return bool_item(Some(true));
            }
            let b = to_bool(&eval(r, focus, ctx));
            return bool_item(match (a, b) {
                (_, Some(true)) => Some(true),
                (Some(true), Some(false)) => Some(false),
                _ => None,
            });
        }
        _ => {}
    }
    let a = eval(l, focus, ctx);
    let b = eval(r, focus, ctx);
    match op {
        BinOp::Union => {
            let mut out: Vec<Item<'a>> = Vec::with_capacity(a.len() + b.len());
            for i in a.into_iter().chain(b) {
                if !out.iter().any(|o| same_item(o, &i)) {
                    out.push(i);
                }
            }
            out
        }
        BinOp::Xor => bool_item(match (to_bool(&a), to_bool(&b)) {
            (Some(x), Some(y)) => Some(x != y),
            _ => None,
        }),
        BinOp::Eq | BinOp::Ne => {
            if a.is_empty() || b.is_empty() {
                return Vec::new();
            }
            let eq = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| values_equal(&x.value, &y.value));
            bool_item(Some(if op == BinOp::Eq { eq } else { !eq }))
        }
        BinOp::Equiv | BinOp::NotEquiv => {
            let eq = a.len() == b.len()
                && a.iter().all(|x| b.iter().any(|y| values_equiv(&x.value, &y.value)));
            bool_item(Some(if op == BinOp::Equiv { eq } else { !eq }))
        }
        BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => match (a.as_slice(), b.as_slice()) {
            ([x], [y]) => {
                use std::cmp::Ordering::*;
                bool_item(compare(&x.value, &y.value).map(|o| match op {
                    BinOp::Lt => o == Less,
                    BinOp::Gt => o == Greater,
                    BinOp::Le => o != Greater,
                    _ => o != Less,
                }))
            }
            _ => Vec::new(),
        },
        BinOp::Concat => {
            let s = |c: &[Item<'_>]| single_str(c).unwrap_or("").to_string();
            vec![Item::owned(Value::String(s(&a) + &s(&b)))]
        }
        BinOp::Add | BinOp::Sub => match (a.as_slice(), b.as_slice()) {
            ([x], [y]) => match (&*x.value, &*y.value) {
                (Value::Number(m), Value::Number(n)) => {
                    let (m, n) = (m.as_f64().unwrap_or(0.0), n.as_f64().unwrap_or(0.0));
                    let v = if op == BinOp::Add { m + n } else { m - n };
                    serde_json::Number::from_f64(v).map(|n| vec![Item::owned(Value::Number(n))]).unwrap_or_default()
                }
                (Value::String(m), Value::String(n)) if op == BinOp::Add => {
                    vec![Item::owned(Value::String(format!("{m}{n}")))]
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        },
        BinOp::In | BinOp::Contains => {
            let (needle, hay) = if op == BinOp::In { (&a, &b) } else { (&b, &a) };
            match needle.as_slice() {
                [] => Vec::new(),
                [one] => bool_item(Some(hay.iter().any(|h| values_equal(&h.value, &one.value)))),
                _ => Vec::new(),
            }
        }
        BinOp::And | BinOp::Or | BinOp::Implies => Vec::new(), // handled above
    }
}
