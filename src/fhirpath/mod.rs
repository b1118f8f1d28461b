//! FHIRPath (a subset of N1 / FHIRPath 2.0 as used by FHIR R4) over `serde_json::Value`.
//!
//! Used by [`crate::search`] to evaluate `SearchParameter.expression` on resources (FHIR JSON as
//! received, no typed model) and later by invariant validation.
//!
//! Supported (<http://hl7.org/fhirpath/N1/>):
//! * paths `Patient.name.given`, a leading type name filters the root (`Patient.x` on an
//!   Observation yields nothing, so unions over many types select the right branch), `Resource` /
//!   `DomainResource` match any resource;
//! * choice elements: `Observation.value` finds `valueQuantity`, `valueString`, … and remembers the
//!   type (`Quantity`, `string`) for `ofType()` / `is` / `as`;
//! * `.value` on a primitive yields the primitive itself; indexers `x[0]`;
//! * literals: `'string'` (with `\'`, `\\`, `\n`, `\uXXXX` escapes), numbers, `true`/`false`, `{}`;
//! * operators `|`, `=`, `!=`, `~`, `!~`, `<`, `>`, `<=`, `>=`, `and`, `or`, `xor`, `implies`,
//!   `is T`, `as T`, unary `-`, `&` (string concatenation);
//! * functions `where`, `select`, `exists`, `empty`, `not`, `first`, `last`, `tail`, `skip`,
//!   `take`, `single`, `count`, `distinct`, `ofType`, `as`, `is`, `extension(url)`, `resolve`,
//!   `hasValue`, `children`, `startsWith`, `endsWith`, `contains`, `lower`, `upper`, `length`,
//!   `iif`, `trace`, `all`, `allTrue`, `anyTrue`;
//! * variables `$this`, `%resource`, `%rootResource`, `%context`, `%ucum`, `%sct`, `%loinc`.
//!
//! `resolve()` does not fetch anything: a `Reference` whose `reference` is `#id` resolves to the
//! contained resource; otherwise it yields the Reference itself typed with the target type taken
//! from the reference text (`Patient/1`, `https://x/fhir/Patient/1/_history/2`) or
//! `Reference.type`, which is what `where(resolve() is Patient)` needs.
//!
//! Evaluation never fails: type mismatches and unknown variables yield the empty collection.

use serde_json::Value;
use std::borrow::Cow;

mod eval;
mod parse;

pub use eval::{evaluate, evaluate_on, Item};
pub use parse::parse;

/// Errors from [`parse`]. `pos` is a byte offset into the expression text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirPathError {
    /// Unexpected character or unterminated literal.
    #[error("FHIRPath lexical error at byte {pos}: {msg}")]
    Lex { pos: usize, msg: String },
    /// Grammar error (unexpected token, missing `)`, …).
    #[error("FHIRPath syntax error at byte {pos}: {msg}")]
    Syntax { pos: usize, msg: String },
    /// A function outside the supported subset (e.g. `memberOf`).
    #[error("FHIRPath function `{0}` is not supported")]
    UnsupportedFunction(String),
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
    /// A number literal (integer or decimal).
    Number(f64),
    /// `@2024-01-01…` — kept as text (compared as string).
    DateTime(String),
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
    /// `expr is Type`
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

/// Convenience: evaluate and keep only the JSON values (drops the type hints).
/// Input: a parsed expression and a resource; output: values in document order.
pub fn evaluate_values<'a>(expr: &Expr, resource: &'a Value) -> Vec<Cow<'a, Value>> {
    evaluate(expr, resource).into_iter().map(|i| i.value).collect()
}

#[cfg(test)]
mod tests;
