//! FHIRPath (FHIRPath N1 / 2.0, as used by FHIR R4) over `serde_json::Value`.
//!
//! Shared by [`crate::search`] (evaluating `SearchParameter.expression` on every write) and by
//! validation (invariants). Resources are FHIR JSON as received; element types come from a compact
//! table generated from the R4 StructureDefinitions (`fhir_types.txt`, see
//! `tests/fhirpath_typetable.rs`), so `Observation.value` finds `valueQuantity` typed `Quantity`,
//! `Patient.birthDate` is a `date`, `Patient.gender` a `code` (⊂ `string`).
//!
//! Supported (<http://hl7.org/fhirpath/N1/>):
//! * the full grammar: paths, `[]` indexers, every operator with N1 precedence
//!   (`* / div mod`, `+ - &`, `is as`, `|`, `< > <= >=`, `= ~ != !~`, `in contains`, `and`,
//!   `or xor`, `implies`, unary `+ -`), comments, backtick identifiers;
//! * literals: strings with escapes, integers, decimals (exact, `rust_decimal`), `@` dates,
//!   dateTimes and `@T` times with partial precision, quantities with UCUM units (`10 'mg'`) or
//!   calendar durations (`4 days`), `{}`;
//! * `$this`, `$index`, `$total`; `%resource`, `%rootResource`, `%context`, `%ucum`, `%sct`,
//!   `%loinc`, `%"vs-…"`, `%"ext-…"` and caller-supplied variables ([`Env`]);
//! * all functions of N1 §5–6 (existence, filtering and projection incl. `repeat`, subsetting,
//!   combining, conversion `toX` / `convertsToX`, string incl. `matches` / `replaceMatches`,
//!   math, tree navigation, utility incl. `trace now today timeOfDay`, `iif`, `aggregate`) plus
//!   `sort`, `lowBoundary` / `highBoundary` / `precision` / `comparable`, `trim split join
//!   encode decode escape unescape` and `type()`;
//! * FHIR additions: `extension(url)`, `hasValue`, `getValue`, `resolve()` (contained `#id`,
//!   Bundle entries by `fullUrl` or `Type/id`; otherwise a typed stub so
//!   `where(resolve() is Patient)` works), `ofType` / `is` / `as` with FHIR and System type names
//!   (`FHIR.string`, `System.String`, subtypes: `code is string`, `Age is Quantity`),
//!   `memberOf` (always empty: no terminology server).
//!
//! Not supported (parse error [`FhirPathError::UnsupportedFunction`]): `conformsTo`,
//! `htmlChecks`, `subsumes`, `subsumedBy`, `elementDefinition`, `slice`, `checkModifiers`.
//!
//! Semantics: three-valued logic and empty propagation; equality and equivalence of dates with
//! different precision (empty / false), of quantities with unit conversion for common UCUM units
//! (`mg g kg`, `mL L`, `ms s min h d wk mo a`, `mm cm m`, `[lb_av]`, `[in_i]` …; calendar
//! `year`/`month` do not compare with UCUM `a`/`mo`). Evaluation errors (type errors such as
//! `'a' - 1`, more than one item where a singleton is expected) are `Err` from
//! [`try_evaluate`]; [`evaluate`] keeps the search-friendly contract (errors → empty, `as` on
//! several items filters like `ofType`). Transcendental math (`sqrt ln log exp power` with a
//! decimal exponent) goes through `f64`; every other arithmetic is exact decimal.

use serde_json::Value;
use std::borrow::Cow;

mod compiled;
mod eval;
mod model;
mod parse;
pub mod value;

pub use eval::{
    evaluate, evaluate_on, evaluate_root, try_evaluate, try_evaluate_on, try_evaluate_with, Env, Item, Root,
};
pub use compiled::Compiled;
pub use parse::parse;
pub use rust_decimal::Decimal;
pub use value::{Dt, Qty};

/// Errors from [`parse`]. `pos` is a byte offset into the expression text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirPathError {
    /// Unexpected character or unterminated literal.
    #[error("FHIRPath lexical error at byte {pos}: {msg}")]
    Lex { pos: usize, msg: String },
    /// Grammar error (unexpected token, missing `)`, …).
    #[error("FHIRPath syntax error at byte {pos}: {msg}")]
    Syntax { pos: usize, msg: String },
    /// A function that is not supported (e.g. `conformsTo`) or unknown.
    #[error("FHIRPath function `{0}` is not supported")]
    UnsupportedFunction(String),
    /// An evaluation error: a type error (`'a' - 1`), several items where one is expected,
    /// an unknown type name, … (only from the `try_evaluate*` functions).
    #[error("FHIRPath evaluation error: {0}")]
    Evaluation(String),
}

/// A literal in an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `{}` — the empty collection.
    Empty,
    /// `true` / `false`.
    Bool(bool),
    /// `'text'`.
    String(String),
    /// An integer literal (`42`).
    Integer(i64),
    /// A decimal literal (`4.50`, scale kept).
    Decimal(Decimal),
    /// `@2024-01-01` (partial precision).
    Date(Dt),
    /// `@2024-01-01T10:00+09:00`, `@2024T` (partial precision).
    DateTime(Dt),
    /// `@T10:30` (partial precision).
    Time(Dt),
    /// `10 'mg'`, `4 days`.
    Quantity(Qty),
}

/// Binary operators, in FHIRPath terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `|` union (duplicates removed).
    Union,
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `~`
    Equiv,
    /// `!~`
    NotEquiv,
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
    /// `and`
    And,
    /// `or`
    Or,
    /// `xor`
    Xor,
    /// `implies`
    Implies,
    /// `&` string concatenation
    Concat,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `div` (integer division)
    IntDiv,
    /// `mod`
    Mod,
    /// `in` (membership)
    In,
    /// `contains` (membership)
    Contains,
}

/// A parsed FHIRPath expression (abstract syntax tree). Build with [`parse`], run with
/// [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `$this` (the focus item inside `where`/`select`, else the root).
    This,
    /// `$index` (position of `$this` inside `where`/`select`/`repeat`/`aggregate`…).
    IndexVar,
    /// `$total` (the accumulator inside `aggregate`).
    Total,
    /// `%name` environment variable.
    Var(String),
    /// A literal.
    Literal(Literal),
    /// `base.name` (or `name` applied to the current focus when `base` is `None`).
    Member(Option<Box<Expr>>, String),
    /// `base.func(args)` (or `func(args)` on the focus).
    Call(Option<Box<Expr>>, String, Vec<Expr>),
    /// `base[index]`
    Index(Box<Expr>, Box<Expr>),
    /// `lhs op rhs`
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `expr is Type` (`Type` as written: `Patient`, `FHIR.Patient`, `System.String`)
    Is(Box<Expr>, String),
    /// `expr as Type`
    As(Box<Expr>, String),
    /// unary `-expr`
    Neg(Box<Expr>),
}

impl Expr {
    /// Splits a top-level `|` union into its branches (a non-union expression is one branch).
    /// Input: any expression; output: borrowed branches left to right.
    pub fn union_branches(&self) -> Vec<&Expr> {
        let mut out = Vec::new();
        fn walk<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
            if let Expr::Binary(BinOp::Union, l, r) = e {
                walk(l, out);
                walk(r, out);
            } else {
                out.push(e);
            }
        }
        walk(self, &mut out);
        out
    }

    /// The names of the focus's elements this expression reads, when its value depends on nothing
    /// else of the focus: if none of them is present on the focus, the result is the same as on an
    /// empty object (`{}`), whatever the focus and `%resource` are.
    ///
    /// Output: `Some(names)` (lower-case element names as written, e.g. `["dataAbsentReason",
    /// "value"]` for `dataAbsentReason.empty() or value.empty()`; a choice name `value` stands for
    /// `valueQuantity` … too), or `None` when the expression also reads the focus as a whole
    /// (`$this`, `hasValue()`, `children()`, a leading type name such as `Observation.code`), the
    /// context variables (`%resource`, `%rootResource`, `%context`) outside a lambda argument whose
    /// input is empty when the names are absent, or the clock (`now()`). Used by the validator to skip
    /// invariants whose elements are absent (FHIR R4 §2.26: a constraint is evaluated on each
    /// element; an absent path makes most invariants vacuously true).
    pub fn focus_roots(&self) -> Option<Vec<&str>> {
        fn constant_var(v: &str) -> bool {
            matches!(v, "ucum" | "sct" | "loinc") || v.starts_with("vs-") || v.starts_with("ext-")
        }
        /// `e` is empty when every root name is absent (a path from the focus through
        /// functions that give empty on empty input).
        fn gated(e: &Expr) -> bool {
            match e {
                Expr::Member(None, n) => n.starts_with(|c: char| c.is_ascii_lowercase()),
                Expr::Member(Some(b), _) | Expr::Index(b, _) | Expr::As(b, _) => gated(b),
                Expr::Call(Some(b), f, _) => {
                    matches!(
                        f.as_str(),
                        "where" | "select" | "repeat" | "ofType" | "as" | "first" | "last" | "tail" | "skip" | "take"
                            | "distinct" | "resolve" | "extension" | "children" | "descendants" | "trace" | "sort"
                            | "single" | "getValue"
                    ) && gated(b)
                }
                _ => false,
            }
        }
        fn walk<'e>(e: &'e Expr, out: &mut Vec<&'e str>) -> bool {
            match e {
                Expr::Literal(_) => true,
                Expr::Var(v) => constant_var(v),
                Expr::This | Expr::IndexVar | Expr::Total => false,
                Expr::Member(None, n) => {
                    if !n.starts_with(|c: char| c.is_ascii_lowercase()) {
                        return false;
                    }
                    if !out.contains(&n.as_str()) {
                        out.push(n);
                    }
                    true
                }
                Expr::Member(Some(b), _) | Expr::Is(b, _) | Expr::As(b, _) | Expr::Neg(b) => walk(b, out),
                Expr::Call(None, f, args) => f == "iif" && args.iter().all(|a| walk(a, out)),
                Expr::Call(Some(b), f, args) => {
                    if eval::type_function(f) {
                        walk(b, out)
                    } else if eval::lambda_function(f) || f == "aggregate" {
                        // arguments run per item of `b`: never when `b` is empty
                        gated(b) && walk(b, out)
                    } else {
                        walk(b, out) && args.iter().all(|a| walk(a, out))
                    }
                }
                Expr::Index(b, i) | Expr::Binary(_, b, i) => walk(b, out) && walk(i, out),
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out).then_some(out)
    }

    /// The type name a path starts with (`Patient` for `Patient.name.where(…)`,
    /// `(Observation.value as Quantity)`, `Observation.value.ofType(Quantity)`), if any.
    /// Used by the search registry to pick the branch of a multi-resource union.
    pub fn root_type(&self) -> Option<&str> {
        match self {
            Expr::Member(None, name) if name.starts_with(|c: char| c.is_ascii_uppercase()) => {
                Some(name)
            }
            Expr::Member(Some(b), _) | Expr::Call(Some(b), _, _) | Expr::Index(b, _) => {
                b.root_type()
            }
            Expr::Is(b, _) | Expr::As(b, _) => b.root_type(),
            Expr::Binary(op, l, _) if *op != BinOp::Union => l.root_type(),
            _ => None,
        }
    }
}

/// Objects up to this many properties are searched by comparing keys, larger ones through the map.
const SCAN_MAX: usize = 12;

/// `o.get(k)`, faster for the small objects FHIR JSON is made of: serde_json's order-preserving
/// map hashes the key with SipHash on every lookup, which costs more than comparing a dozen short
/// keys (same result: keys are unique).
#[inline]
pub(crate) fn obj_get<'v>(o: &'v serde_json::Map<String, Value>, k: &str) -> Option<&'v Value> {
    if o.len() <= SCAN_MAX {
        o.iter().find(|(x, _)| x.as_str() == k).map(|(_, v)| v)
    } else {
        o.get(k)
    }
}

/// [`obj_get`] returning the stored key too (`Map::get_key_value`).
#[inline]
pub(crate) fn obj_get_key_value<'v>(o: &'v serde_json::Map<String, Value>, k: &str) -> Option<(&'v String, &'v Value)> {
    if o.len() <= SCAN_MAX {
        o.iter().find(|(x, _)| x.as_str() == k)
    } else {
        o.get_key_value(k)
    }
}

/// `o.get("_" + k)` (the primitive-extension sibling of `k`) without building the key.
#[inline]
pub(crate) fn obj_get_underscore<'v>(o: &'v serde_json::Map<String, Value>, k: &str) -> Option<&'v Value> {
    if o.len() <= SCAN_MAX {
        o.iter().find(|(x, _)| x.len() == k.len() + 1 && x.starts_with('_') && &x[1..] == k).map(|(_, v)| v)
    } else {
        o.get(&format!("_{k}"))
    }
}

/// `v.get(k)` for an object `v` ([`obj_get`]); `None` for every other JSON value.
#[inline]
pub(crate) fn json_get<'v>(v: &'v Value, k: &str) -> Option<&'v Value> {
    match v {
        Value::Object(o) => obj_get(o, k),
        _ => None,
    }
}

/// Convenience: evaluate and keep only the JSON values (drops the type hints).
/// Input: a parsed expression and a resource; output: values in document order (errors → empty).
pub fn evaluate_values<'a>(expr: &Expr, resource: &'a Value) -> Vec<Cow<'a, Value>> {
    evaluate(expr, resource)
        .into_iter()
        .map(|i| i.value)
        .collect()
}

#[cfg(test)]
mod tests;
