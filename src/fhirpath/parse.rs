//! Lexer and precedence-climbing parser for FHIRPath (FHIRPath N1 §"Grammar", operator
//! precedence table §"Operator precedence").

use super::value::{self, Qty};
use super::{BinOp, Expr, FhirPathError, Literal};
use rust_decimal::Decimal;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A backtick-delimited identifier — never a keyword.
    QIdent(String),
    Str(String),
    /// Number text (integer or decimal).
    Num(String),
    Lit(Literal),
    This,
    Index,
    Total,
    Var(String),
    Sym(&'static str),
    Eof,
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, FhirPathError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // comments
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            match src[i + 2..].find("*/") {
                Some(p) => i = i + 2 + p + 2,
                None => {
                    return Err(FhirPathError::Lex {
                        pos: i,
                        msg: "unterminated comment".into(),
                    })
                }
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Ident(src[start..i].to_string()), start));
            continue;
        }
        if c.is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push((Tok::Num(src[start..i].to_string()), start));
            continue;
        }
        match c {
            b'\'' | b'`' => {
                let quote = c;
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(ch) = src[i..].chars().next() else {
                        return Err(FhirPathError::Lex {
                            pos: start,
                            msg: "unterminated literal".into(),
                        });
                    };
                    if ch as u32 == quote as u32 {
                        i += 1;
                        break;
                    }
                    if ch == '\\' {
                        i += 1;
                        let Some(e) = src[i..].chars().next() else {
                            return Err(FhirPathError::Lex {
                                pos: i,
                                msg: "bad escape".into(),
                            });
                        };
                        i += e.len_utf8();
                        match e {
                            'n' => s.push('\n'),
                            'r' => s.push('\r'),
                            't' => s.push('\t'),
                            'f' => s.push('\u{c}'),
                            'u' => {
                                let hex = src.get(i..i + 4).ok_or(FhirPathError::Lex {
                                    pos: i,
                                    msg: "bad \\u escape".into(),
                                })?;
                                let v = u32::from_str_radix(hex, 16).map_err(|_| {
                                    FhirPathError::Lex {
                                        pos: i,
                                        msg: "bad \\u escape".into(),
                                    }
                                })?;
                                s.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                                i += 4;
                            }
                            other => s.push(other),
                        }
                        continue;
                    }
                    s.push(ch);
                    i += ch.len_utf8();
                }
                out.push((
                    if quote == b'`' {
                        Tok::QIdent(s)
                    } else {
                        Tok::Str(s)
                    },
                    start,
                ));
            }
            b'@' => {
                i += 1;
                let (lit, len) = lex_datetime(&src[i..]).ok_or_else(|| FhirPathError::Lex {
                    pos: start,
                    msg: "bad date/time literal".into(),
                })?;
                i += len;
                out.push((Tok::Lit(lit), start));
            }
            b'$' => {
                i += 1;
                while i < b.len() && b[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                match &src[start..i] {
                    "$this" => out.push((Tok::This, start)),
                    "$index" => out.push((Tok::Index, start)),
                    "$total" => out.push((Tok::Total, start)),
                    other => {
                        return Err(FhirPathError::Lex {
                            pos: start,
                            msg: format!("unsupported variable {other}"),
                        })
                    }
                }
            }
            b'%' => {
                i += 1;
                if b.get(i) == Some(&b'`') || b.get(i) == Some(&b'\'') {
                    let q = b[i];
                    let end = src[i + 1..].find(q as char).ok_or(FhirPathError::Lex {
                        pos: start,
                        msg: "unterminated variable".into(),
                    })?;
                    out.push((Tok::Var(src[i + 1..i + 1 + end].to_string()), start));
                    i = i + 1 + end + 1;
                } else if b.get(i) == Some(&b'"') {
                    let end = src[i + 1..].find('"').ok_or(FhirPathError::Lex {
                        pos: start,
                        msg: "unterminated variable".into(),
                    })?;
                    out.push((Tok::Var(src[i + 1..i + 1 + end].to_string()), start));
                    i = i + 1 + end + 1;
                } else {
                    while i < b.len()
                        && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-')
                    {
                        i += 1;
                    }
                    out.push((Tok::Var(src[start + 1..i].to_string()), start));
                }
            }
            _ => {
                const SYMS: [&str; 22] = [
                    "!=", "!~", "<=", ">=", ".", "(", ")", "[", "]", "{", "}", ",", "|", "=", "~",
                    "<", ">", "&", "+", "-", "*", "/",
                ];
                let rest = &src[i..];
                let sym = SYMS.iter().find(|s| rest.starts_with(**s)).copied();
                match sym {
                    Some(s) => {
                        i += s.len();
                        out.push((Tok::Sym(s), start));
                    }
                    None => {
                        let ch = rest.chars().next().unwrap_or('?');
                        return Err(FhirPathError::Lex {
                            pos: start,
                            msg: format!("unexpected character {ch:?}"),
                        });
                    }
                }
            }
        }
    }
    out.push((Tok::Eof, src.len()));
    Ok(out)
}

/// Functions the evaluator implements (anything else is rejected at parse time).
const FUNCTIONS: &[&str] = &[
    // existence
    "empty",
    "exists",
    "all",
    "allTrue",
    "anyTrue",
    "allFalse",
    "anyFalse",
    "subsetOf",
    "supersetOf",
    "count",
    "distinct",
    "isDistinct",
    // filtering and projection
    "where",
    "select",
    "repeat",
    "ofType",
    // subsetting
    "single",
    "first",
    "last",
    "tail",
    "skip",
    "take",
    "intersect",
    "exclude",
    // combining
    "union",
    "combine",
    // conversion
    "iif",
    "toBoolean",
    "convertsToBoolean",
    "toInteger",
    "convertsToInteger",
    "toDecimal",
    "convertsToDecimal",
    "toString",
    "convertsToString",
    "toDate",
    "convertsToDate",
    "toDateTime",
    "convertsToDateTime",
    "toTime",
    "convertsToTime",
    "toQuantity",
    "convertsToQuantity",
    // string manipulation
    "indexOf",
    "substring",
    "startsWith",
    "endsWith",
    "contains",
    "upper",
    "lower",
    "replace",
    "matches",
    "matchesFull",
    "replaceMatches",
    "length",
    "toChars",
    "trim",
    "split",
    "join",
    "encode",
    "decode",
    "escape",
    "unescape",
    // math
    "abs",
    "ceiling",
    "exp",
    "floor",
    "ln",
    "log",
    "power",
    "round",
    "sqrt",
    "truncate",
    // tree navigation
    "children",
    "descendants",
    // utility
    "trace",
    "now",
    "timeOfDay",
    "today",
    "lowBoundary",
    "highBoundary",
    "precision",
    "comparable",
    "type",
    "aggregate",
    "sort",
    "not",
    "is",
    "as",
    // FHIR
    "extension",
    "hasValue",
    "getValue",
    "resolve",
    "memberOf",
];

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

/// Parses a FHIRPath expression into an [`Expr`].
///
/// Input: expression text, e.g. `Patient.name.where(use='official').family`.
/// Output: the AST. Errors: [`FhirPathError::Lex`] / [`FhirPathError::Syntax`] for malformed text,
/// [`FhirPathError::UnsupportedFunction`] for functions outside the subset (module docs).
/// Spec: FHIRPath N1 grammar.
pub fn parse(src: &str) -> Result<Expr, FhirPathError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0 };
    let e = p.expr(0)?;
    if p.peek() != &Tok::Eof {
        return Err(p.err("unexpected trailing input"));
    }
    Ok(e)
}

/// Binding power of binary operators (higher binds tighter), per FHIRPath operator precedence.
fn infix(t: &Tok) -> Option<(u8, BinOp)> {
    Some(match t {
        Tok::Sym("|") => (6, BinOp::Union),
        Tok::Sym("*") => (9, BinOp::Mul),
        Tok::Sym("/") => (9, BinOp::Div),
        Tok::Ident(s) if s == "div" => (9, BinOp::IntDiv),
        Tok::Ident(s) if s == "mod" => (9, BinOp::Mod),
        Tok::Sym("+") => (8, BinOp::Add),
        Tok::Sym("-") => (8, BinOp::Sub),
        Tok::Sym("&") => (8, BinOp::Concat),
        Tok::Sym("<") => (5, BinOp::Lt),
        Tok::Sym(">") => (5, BinOp::Gt),
        Tok::Sym("<=") => (5, BinOp::Le),
        Tok::Sym(">=") => (5, BinOp::Ge),
        Tok::Sym("=") => (4, BinOp::Eq),
        Tok::Sym("!=") => (4, BinOp::Ne),
        Tok::Sym("~") => (4, BinOp::Equiv),
        Tok::Sym("!~") => (4, BinOp::NotEquiv),
        Tok::Ident(s) if s == "in" => (3, BinOp::In),
        Tok::Ident(s) if s == "contains" => (3, BinOp::Contains),
        Tok::Ident(s) if s == "and" => (2, BinOp::And),
        Tok::Ident(s) if s == "or" => (1, BinOp::Or),
        Tok::Ident(s) if s == "xor" => (1, BinOp::Xor),
        Tok::Ident(s) if s == "implies" => (0, BinOp::Implies),
        _ => return None,
    })
}

/// Precedence of `is` / `as` (between additive and union).
const TYPE_OP_BP: u8 = 7;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }
    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn err(&self, msg: &str) -> FhirPathError {
        FhirPathError::Syntax {
            pos: self.toks[self.pos].1,
            msg: msg.to_string(),
        }
    }
    fn expect(&mut self, s: &'static str) -> Result<(), FhirPathError> {
        if self.peek() == &Tok::Sym(s) {
            self.next();
            Ok(())
        } else {
            Err(self.err(&format!("expected `{s}`")))
        }
    }

    fn expr(&mut self, min_bp: u8) -> Result<Expr, FhirPathError> {
        let mut lhs = self.unary()?;
        loop {
            let t = self.peek().clone();
            if let Tok::Ident(s) = &t {
                if (s == "is" || s == "as") && TYPE_OP_BP >= min_bp {
                    self.next();
                    let ty = self.type_specifier()?;
                    lhs = if s == "is" {
                        Expr::Is(Box::new(lhs), ty)
                    } else {
                        Expr::As(Box::new(lhs), ty)
                    };
                    continue;
                }
            }
            let Some((bp, op)) = infix(&t) else { break };
            if bp < min_bp {
                break;
            }
            self.next();
            let rhs = self.expr(bp + 1)?;
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn type_specifier(&mut self) -> Result<String, FhirPathError> {
        let mut name = match self.next() {
            Tok::Ident(s) | Tok::QIdent(s) => s,
            _ => return Err(self.err("expected type name")),
        };
        if self.peek() == &Tok::Sym(".") {
            self.next();
            match self.next() {
                Tok::Ident(s) | Tok::QIdent(s) => name = format!("{name}.{s}"), // FHIR.Patient
                _ => return Err(self.err("expected type name")),
            }
        }
        Ok(name)
    }

    fn unary(&mut self) -> Result<Expr, FhirPathError> {
        if self.peek() == &Tok::Sym("-") {
            self.next();
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.peek() == &Tok::Sym("+") {
            self.next();
            return self.unary();
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, FhirPathError> {
        let mut e = self.term()?;
        loop {
            match self.peek() {
                Tok::Sym(".") => {
                    self.next();
                    e = self.invocation(Some(Box::new(e)))?;
                }
                Tok::Sym("[") => {
                    self.next();
                    let idx = self.expr(0)?;
                    self.expect("]")?;
                    e = Expr::Index(Box::new(e), Box::new(idx));
                }
                _ => break,
            }
        }
        Ok(e)
    }

    fn invocation(&mut self, base: Option<Box<Expr>>) -> Result<Expr, FhirPathError> {
        let name = match self.next() {
            Tok::Ident(s) | Tok::QIdent(s) => s,
            _ => return Err(self.err("expected identifier")),
        };
        if self.peek() == &Tok::Sym("(") {
            self.next();
            if !FUNCTIONS.contains(&name.as_str()) {
                return Err(FhirPathError::UnsupportedFunction(name));
            }
            let mut args = Vec::new();
            if self.peek() != &Tok::Sym(")") {
                loop {
                    // type arguments (ofType(Quantity), as(FHIR.Period)) parse as member paths
                    args.push(self.expr(0)?);
                    if self.peek() == &Tok::Sym(",") {
                        self.next();
                        continue;
                    }
                    break;
                }
            }
            self.expect(")")?;
            return Ok(Expr::Call(base, name, args));
        }
        Ok(Expr::Member(base, name))
    }

    fn term(&mut self) -> Result<Expr, FhirPathError> {
        match self.peek().clone() {
            Tok::Sym("(") => {
                self.next();
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Sym("{") => {
                self.next();
                self.expect("}")?;
                Ok(Expr::Literal(Literal::Empty))
            }
            Tok::Str(s) => {
                self.next();
                Ok(Expr::Literal(Literal::String(s)))
            }
            Tok::Num(n) => {
                self.next();
                // quantity: number followed by a unit string or a calendar keyword
                let unit = match self.peek() {
                    Tok::Str(u) => Some(u.clone()),
                    Tok::Ident(u) if value::calendar_unit(u).is_some() => Some(u.clone()),
                    _ => None,
                };
                let bad = || FhirPathError::Lex {
                    pos: 0,
                    msg: format!("bad number {n}"),
                };
                if let Some(unit) = unit {
                    self.next();
                    let v = Decimal::from_str_exact(&n).map_err(|_| bad())?;
                    return Ok(Expr::Literal(Literal::Quantity(Qty { value: v, unit })));
                }
                if !n.contains('.') {
                    if let Ok(i) = n.parse::<i64>() {
                        return Ok(Expr::Literal(Literal::Integer(i)));
                    }
                }
                Ok(Expr::Literal(Literal::Decimal(
                    Decimal::from_str_exact(&n).map_err(|_| bad())?,
                )))
            }
            Tok::Lit(l) => {
                self.next();
                Ok(Expr::Literal(l))
            }
            Tok::This => {
                self.next();
                Ok(Expr::This)
            }
            Tok::Index => {
                self.next();
                Ok(Expr::IndexVar)
            }
            Tok::Total => {
                self.next();
                Ok(Expr::Total)
            }
            Tok::Var(v) => {
                self.next();
                Ok(Expr::Var(v))
            }
            Tok::Ident(s) if s == "true" || s == "false" => {
                self.next();
                Ok(Expr::Literal(Literal::Bool(s == "true")))
            }
            Tok::Ident(_) | Tok::QIdent(_) => self.invocation(None),
            _ => Err(self.err("expected expression")),
        }
    }
}

/// Lexes the text after `@`: a date, dateTime (`2015T`, `2015-02-04T14:34:28.123+10:00`) or time
/// (`T14:34`). Returns the literal and the number of bytes consumed.
fn lex_datetime(s: &str) -> Option<(Literal, usize)> {
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| {
        from + n <= b.len() && b[from..from + n].iter().all(u8::is_ascii_digit)
    };
    // time part: HH(:MM(:SS(.f+)?)?)?
    let time_len = |from: usize| -> Option<usize> {
        if !digits(from, 2) {
            return None;
        }
        let mut i = from + 2;
        if b.get(i) == Some(&b':') && digits(i + 1, 2) {
            i += 3;
            if b.get(i) == Some(&b':') && digits(i + 1, 2) {
                i += 3;
                if b.get(i) == Some(&b'.') && digits(i + 1, 1) {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
        }
        Some(i - from)
    };
    let tz_len = |from: usize| -> usize {
        match b.get(from) {
            Some(b'Z') => 1,
            Some(b'+' | b'-')
                if digits(from + 1, 2) && b.get(from + 3) == Some(&b':') && digits(from + 4, 2) =>
            {
                6
            }
            _ => 0,
        }
    };
    if b.first() == Some(&b'T') {
        let n = time_len(1)?;
        if tz_len(1 + n) > 0 {
            return None; // a time has no zone
        }
        let t = value::parse_time(&s[1..1 + n])?;
        return Some((Literal::Time(t), 1 + n));
    }
    if !digits(0, 4) {
        return None;
    }
    let mut i = 4;
    if b.get(i) == Some(&b'-') && digits(i + 1, 2) {
        i += 3;
        if b.get(i) == Some(&b'-') && digits(i + 1, 2) {
            i += 3;
        }
    }
    if b.get(i) != Some(&b'T') {
        return Some((Literal::Date(value::parse_date(&s[..i])?), i));
    }
    i += 1;
    if let Some(n) = time_len(i) {
        i += n;
        i += tz_len(i);
    }
    Some((Literal::DateTime(value::parse_datetime(&s[..i])?), i))
}
