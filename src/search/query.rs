//! Parsing FHIR search requests into [`SearchQuery`] (FHIR R4 `search.html`).
//!
//! Input is the list of URL-decoded `(name, value)` pairs exactly as received (GET query string
//! or POST `application/x-www-form-urlencoded` body, repeated names kept in order).
//!
//! * Values: OR-lists split on `,` (`\,` escapes a comma; `\|`, `\$`, `\\` likewise).
//! * Prefixes (`search.html#prefix`) for number, date, quantity: `eq ne gt lt ge le sa eb ap`.
//!   `ap` widens the search range: numbers and quantities by ±10 % of the value; dates by ±10 %
//!   of the distance between the value and *now* (at least the value's own precision), as the
//!   spec suggests.
//! * A literal `+` in a date's zone that arrived as a space (the client did not percent-encode
//!   `+`) is accepted: `2024-01-05T10:00:00 09:00` = `…+09:00`.
//! * Modifiers: `:missing` (all types), `:exact` `:contains` (string; `:contains` also uri),
//!   `:not` `:text` (token), `:[Type]` (reference). `:above :below :in :not-in :of-type
//!   :identifier` and anything else → [`SearchError::UnsupportedModifier`] (always an error,
//!   because ignoring a modifier would change the result).
//! * Chains one level deep: `subject:Patient.name=x`, `patient.birthdate=x`.
//! * Result parameters: `_count` (default [`DEFAULT_COUNT`], clamped to [`MAX_COUNT`]),
//!   `_offset`, `_sort`, `_total`, `_summary`, `_elements`, `_include[:iterate]`,
//!   `_revinclude[:iterate]`; `_format` and `_pretty` are ignored silently.
//! * Unknown or unsupported parameters (including composite/special ones, `_has`, `_text`,
//!   `_content`, `_list`, `_filter`, `_contained`): [`Handling::Lenient`] lists them in
//!   [`SearchQuery::ignored`], [`Handling::Strict`] fails. Malformed values of known parameters
//!   always fail. Empty values (`name=`) are ignored.

use super::index::split_reference;
use super::normalize::fold_ja;
use super::registry::R4_RESOURCE_TYPES;
use super::value::{decimal_range, parse_date_range};
use super::{
    Chain, Handling, Include, Modifier, ParamType, Prefix, Registry, SearchError, SearchParam, SearchQuery,
    SearchValue, SortKey, SummaryMode, TokenSystem, TotalMode, DEFAULT_COUNT, MAX_COUNT,
};

/// Options for [`parse_with_options`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// Unknown-parameter handling (`Prefer: handling=strict|lenient`); default lenient.
    pub handling: Handling,
    /// "Now" in epoch ms for `ap` on dates; `None` = the system clock.
    pub now_ms: Option<i64>,
}

/// Parses a search on `resource_type` with lenient handling (the FHIR default).
/// See [`parse_with_options`] for input, output and errors.
pub fn parse(registry: &Registry, resource_type: &str, params: &[(String, String)]) -> Result<SearchQuery, SearchError> {
    parse_with_options(registry, resource_type, params, &ParseOptions::default())
}

/// Parses a search on `resource_type` with the given handling.
/// See [`parse_with_options`] for input, output and errors.
pub fn parse_with_handling(
    registry: &Registry,
    resource_type: &str,
    params: &[(String, String)],
    handling: Handling,
) -> Result<SearchQuery, SearchError> {
    parse_with_options(registry, resource_type, params, &ParseOptions { handling, now_ms: None })
}

/// Parses URL-decoded search parameters into a [`SearchQuery`].
///
/// Input: registry, resource type (`Patient`), `(name, value)` pairs, options.
/// Output: the query (parameters ANDed in request order).
/// Errors: [`SearchError::UnknownResourceType`]; [`SearchError::UnknownParameter`] and
/// [`SearchError::Unsupported`] (strict handling only); [`SearchError::UnsupportedModifier`];
/// [`SearchError::InvalidValue`]; [`SearchError::InvalidChain`];
/// [`SearchError::InvalidResultParameter`]. Spec: FHIR R4 `search.html` (module docs list the
/// sections).
pub fn parse_with_options(
    registry: &Registry,
    resource_type: &str,
    params: &[(String, String)],
    opts: &ParseOptions,
) -> Result<SearchQuery, SearchError> {
    if !registry.is_resource_type(resource_type) {
        return Err(SearchError::UnknownResourceType(resource_type.to_string()));
    }
    let now_ms = opts.now_ms.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    });
    let mut q = SearchQuery {
        resource_type: resource_type.to_string(),
        params: Vec::new(),
        sort: Vec::new(),
        count: DEFAULT_COUNT,
        offset: 0,
        total: None,
        summary: None,
        elements: Vec::new(),
        includes: Vec::new(),
        revincludes: Vec::new(),
        ignored: Vec::new(),
    };
    let p = Parser { registry, now_ms };
    for (name, value) in params {
        let name = name.trim();
        let (base, key_mod) = match name.split_once(':') {
            Some((b, m)) => (b, Some(m)),
            None => (name, None),
        };
        let result_err = |reason: &str| SearchError::InvalidResultParameter { param: name.to_string(), reason: reason.into() };
        match base {
            "_format" | "_pretty" => continue,
            "_count" => {
                q.count = value.trim().parse::<usize>().map_err(|_| result_err("expected a non-negative integer"))?.min(MAX_COUNT);
                continue;
            }
            "_offset" => {
                q.offset = value.trim().parse::<usize>().map_err(|_| result_err("expected a non-negative integer"))?;
                continue;
            }
            "_total" => {
                q.total = Some(match value.trim() {
                    "none" => TotalMode::None,
                    "estimate" => TotalMode::Estimate,
                    "accurate" => TotalMode::Accurate,
                    _ => return Err(result_err("expected none, estimate or accurate")),
                });
                continue;
            }
            "_summary" => {
                q.summary = Some(match value.trim() {
                    "true" => SummaryMode::True,
                    "false" => SummaryMode::False,
                    "text" => SummaryMode::Text,
                    "data" => SummaryMode::Data,
                    "count" => SummaryMode::Count,
                    _ => return Err(result_err("expected true, false, text, data or count")),
                });
                continue;
            }
            "_elements" => {
                for e in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    if !e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                        return Err(result_err("element names must be FHIR element names"));
                    }
                    q.elements.push(e.to_string());
                }
                continue;
            }
            "_sort" => {
                q.sort.clear();
                for k in value.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    let (code, descending) = match k.strip_prefix('-') {
                        Some(c) => (c, true),
                        None => (k, false),
                    };
                    let def = registry
                        .get_bound(resource_type, code)
                        .filter(|b| b.expression.is_some())
                        .filter(|b| !matches!(b.def.param_type, ParamType::Composite | ParamType::Special))
                        .ok_or_else(|| result_err("sort key is not an indexed search parameter of this type"))?;
                    q.sort.push(SortKey { code: code.to_string(), param_type: def.def.param_type, descending });
                }
                continue;
            }
            "_include" | "_revinclude" => {
                let iterate = match key_mod {
                    None => false,
                    Some("iterate") | Some("recurse") => true,
                    Some(m) => {
                        return Err(SearchError::UnsupportedModifier { param: base.to_string(), modifier: m.to_string() })
                    }
                };
                for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                    let inc = p.include(name, v, iterate)?;
                    if base == "_include" {
                        q.includes.push(inc);
                    } else {
                        q.revincludes.push(inc);
                    }
                }
                continue;
            }
            _ => {}
        }
        if value.is_empty() {
            continue;
        }
        match p.param(resource_type, name, value) {
            Ok(sp) => q.params.push(sp),
            Err(e @ (SearchError::UnknownParameter { .. } | SearchError::Unsupported { .. }))
                if opts.handling == Handling::Lenient =>
            {
                let _ = e;
                q.ignored.push(name.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(q)
}

struct Parser<'r> {
    registry: &'r Registry,
    now_ms: i64,
}

/// Splits `s` at `sep` characters not escaped by a backslash (escapes are kept).
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

/// Removes search escapes: `\,` `\|` `\$` `\\` → the character.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn split_prefix(v: &str) -> (Prefix, &str) {
    if v.len() >= 2 && v.is_char_boundary(2) {
        if let Some(p) = Prefix::from_code(&v[..2]) {
            return (p, &v[2..]);
        }
    }
    (Prefix::Eq, v)
}

impl Parser<'_> {
    fn include(&self, name: &str, v: &str, iterate: bool) -> Result<Include, SearchError> {
        let err = |reason: &str| SearchError::InvalidResultParameter { param: name.to_string(), reason: reason.into() };
        let mut parts = v.split(':');
        let source = parts.next().unwrap_or("");
        let code = parts.next().ok_or_else(|| err("expected Source:parameter[:Target]"))?;
        let target = parts.next();
        if parts.next().is_some() {
            return Err(err("expected Source:parameter[:Target]"));
        }
        if !self.registry.is_resource_type(source) {
            return Err(err("unknown source resource type"));
        }
        if code == "*" {
            return Err(err("wildcard `*` includes are not supported"));
        }
        let def = self
            .registry
            .get(source, code)
            .filter(|d| d.param_type == ParamType::Reference)
            .ok_or_else(|| err("not a reference search parameter of the source type"))?;
        if let Some(t) = target {
            if !self.registry.is_resource_type(t) || (!def.target.is_empty() && !def.target.iter().any(|x| x == t)) {
                return Err(err("target type is not a target of the parameter"));
            }
        }
        Ok(Include { source_type: source.to_string(), param: code.to_string(), target_type: target.map(str::to_string), iterate })
    }

    /// Parses one non-result parameter `name=value` for `rt` (possibly chained).
    fn param(&self, rt: &str, name: &str, value: &str) -> Result<SearchParam, SearchError> {
        let (head, chained) = match name.split_once('.') {
            Some((h, c)) => (h, Some(c)),
            None => (name, None),
        };
        let (code, modifier) = match head.split_once(':') {
            Some((c, m)) => (c, Some(m)),
            None => (head, None),
        };
        let unsupported_special = ["_has", "_text", "_content", "_list", "_filter", "_contained", "_containedType", "_query", "_type"];
        if unsupported_special.contains(&code) {
            return Err(SearchError::Unsupported { param: name.to_string(), reason: "this search feature is not implemented".into() });
        }
        let def = self.registry.get_bound(rt, code).ok_or_else(|| SearchError::UnknownParameter {
            param: code.to_string(),
            resource_type: rt.to_string(),
        })?;
        let ty = def.def.param_type;
        if matches!(ty, ParamType::Composite | ParamType::Special) || def.expression.is_none() {
            return Err(SearchError::Unsupported {
                param: code.to_string(),
                reason: format!("{} parameters are not indexed", ty.as_str()),
            });
        }
        let Some(chained) = chained else {
            let modifier = self.modifier(code, ty, &def.def.target, modifier)?;
            let values = self.values(code, ty, modifier.as_ref(), &def.def.target, value)?;
            return Ok(SearchParam { code: code.to_string(), param_type: ty, modifier, values, chain: None });
        };
        // chained search, one level
        let chain_err = |reason: String| SearchError::InvalidChain { param: name.to_string(), reason };
        if ty != ParamType::Reference {
            return Err(chain_err(format!("`{code}` is not a reference parameter")));
        }
        if chained.contains('.') {
            return Err(chain_err("only one level of chaining is supported".into()));
        }
        let (ccode, _) = chained.split_once(':').unwrap_or((chained, ""));
        let target_type = match modifier {
            Some(t) if t.starts_with(|c: char| c.is_ascii_uppercase()) => {
                if !self.registry.is_resource_type(t) || (!def.def.target.is_empty() && !def.def.target.iter().any(|x| x == t)) {
                    return Err(chain_err(format!("`{t}` is not a target type of `{code}`")));
                }
                t.to_string()
            }
            Some(m) => return Err(chain_err(format!("modifier `:{m}` cannot be used in a chain"))),
            None => {
                let candidates: Vec<&String> =
                    def.def.target.iter().filter(|t| self.registry.get(t, ccode).is_some()).collect();
                match candidates.as_slice() {
                    [one] => (*one).clone(),
                    [] => return Err(chain_err(format!("no target type of `{code}` defines `{ccode}`"))),
                    many => {
                        let list: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
                        return Err(chain_err(format!(
                            "ambiguous: `{ccode}` exists on {}; use `{code}:[type].{ccode}`",
                            list.join(", ")
                        )));
                    }
                }
            }
        };
        let inner = match self.param(&target_type, chained, value) {
            Ok(p) => p,
            Err(SearchError::UnknownParameter { .. }) => {
                return Err(chain_err(format!("`{ccode}` is not a search parameter of {target_type}")))
            }
            Err(e) => return Err(e),
        };
        Ok(SearchParam {
            code: code.to_string(),
            param_type: ty,
            modifier: None,
            values: Vec::new(),
            chain: Some(Chain { target_type, param: Box::new(inner) }),
        })
    }

    fn modifier(&self, code: &str, ty: ParamType, targets: &[String], m: Option<&str>) -> Result<Option<Modifier>, SearchError> {
        let Some(m) = m else { return Ok(None) };
        let unsupported = || SearchError::UnsupportedModifier { param: code.to_string(), modifier: m.to_string() };
        Ok(Some(match (m, ty) {
            ("missing", _) => Modifier::Missing,
            ("exact", ParamType::String) => Modifier::Exact,
            ("contains", ParamType::String | ParamType::Uri) => Modifier::Contains,
            ("not", ParamType::Token) => Modifier::Not,
            ("text", ParamType::Token) => Modifier::Text,
            (t, ParamType::Reference) if t.starts_with(|c: char| c.is_ascii_uppercase()) => {
                if !self.registry.is_resource_type(t) || (!targets.is_empty() && !targets.iter().any(|x| x == t)) {
                    return Err(unsupported());
                }
                Modifier::Type(t.to_string())
            }
            _ => return Err(unsupported()),
        }))
    }

    fn values(
        &self,
        code: &str,
        ty: ParamType,
        modifier: Option<&Modifier>,
        targets: &[String],
        value: &str,
    ) -> Result<Vec<SearchValue>, SearchError> {
        let invalid = |reason: &str| SearchError::InvalidValue { param: code.to_string(), reason: reason.into() };
        if modifier == Some(&Modifier::Missing) {
            return match value.trim() {
                "true" => Ok(vec![SearchValue::Missing(true)]),
                "false" => Ok(vec![SearchValue::Missing(false)]),
                _ => Err(invalid(":missing takes true or false")),
            };
        }
        let mut out = Vec::new();
        for raw in split_unescaped(value, ',') {
            if raw.is_empty() {
                continue;
            }
            out.push(match ty {
                ParamType::Number => {
                    let (prefix, rest) = split_prefix(raw);
                    let (v, lo, hi) = decimal_range(rest).ok_or_else(|| invalid("expected [prefix]decimal"))?;
                    let (lo, hi) = widen_ap(prefix, v, lo, hi);
                    SearchValue::Number { prefix, value: v, lo, hi }
                }
                ParamType::Date => {
                    let (prefix, rest) = split_prefix(raw);
                    let fixed;
                    let rest = if rest.contains(' ') {
                        fixed = rest.replace(' ', "+");
                        fixed.as_str()
                    } else {
                        rest
                    };
                    let (mut lo_ms, mut hi_ms) =
                        parse_date_range(rest).ok_or_else(|| invalid("expected [prefix]date, dateTime or instant"))?;
                    if prefix == Prefix::Ap {
                        let mid = lo_ms / 2 + hi_ms / 2;
                        let gap = (self.now_ms - mid).unsigned_abs() / 10;
                        let gap = i64::try_from(gap).unwrap_or(i64::MAX);
                        lo_ms = lo_ms.saturating_sub(gap);
                        hi_ms = hi_ms.saturating_add(gap);
                    }
                    SearchValue::Date { prefix, lo_ms, hi_ms }
                }
                ParamType::String => {
                    let exact = unescape(raw);
                    let normalized = fold_ja(&exact);
                    if normalized.is_empty() {
                        return Err(invalid("empty search text"));
                    }
                    SearchValue::String { exact, normalized }
                }
                ParamType::Token => {
                    if modifier == Some(&Modifier::Text) {
                        SearchValue::Token { system: TokenSystem::Any, code: Some(fold_ja(&unescape(raw))) }
                    } else {
                        match split_unescaped(raw, '|').as_slice() {
                            [c] => SearchValue::Token { system: TokenSystem::Any, code: Some(unescape(c)) },
                            ["", ""] => return Err(invalid("expected [system]|[code]")),
                            ["", c] => SearchValue::Token { system: TokenSystem::NoSystem, code: Some(unescape(c)) },
                            [s, ""] => SearchValue::Token { system: TokenSystem::Is(unescape(s)), code: None },
                            [s, c] => SearchValue::Token { system: TokenSystem::Is(unescape(s)), code: Some(unescape(c)) },
                            _ => return Err(invalid("too many `|` in token")),
                        }
                    }
                }
                ParamType::Reference => {
                    let url = unescape(raw);
                    let type_mod = match modifier {
                        Some(Modifier::Type(t)) => Some(t.as_str()),
                        _ => None,
                    };
                    if let Some((t, id)) = split_reference(&url) {
                        if type_mod.is_some_and(|m| m != t) {
                            return Err(invalid("reference type differs from the :type modifier"));
                        }
                        SearchValue::Reference { target_type: Some(t.to_string()), id: id.to_string(), url: url.clone() }
                    } else if !url.contains(['/', ':', '|', '#']) {
                        // bare id
                        if url.len() > 64 || !url.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
                            return Err(invalid("not a valid resource id"));
                        }
                        let t = type_mod.map(str::to_string).or_else(|| match targets {
                            [one] => Some(one.clone()),
                            _ => None,
                        });
                        SearchValue::Reference { target_type: t, id: url.clone(), url }
                    } else {
                        // urn:uuid:…, canonical (with optional |version), other absolute URLs
                        SearchValue::Reference { target_type: None, id: String::new(), url }
                    }
                }
                ParamType::Quantity => {
                    let (prefix, rest) = split_prefix(raw);
                    let parts = split_unescaped(rest, '|');
                    let (num, system, unit) = match parts.as_slice() {
                        [n] => (*n, None, None),
                        [n, s, c] => (*n, Some(unescape(s)).filter(|s| !s.is_empty()), Some(unescape(c)).filter(|c| !c.is_empty())),
                        _ => return Err(invalid("expected [prefix]number|system|code")),
                    };
                    let (v, lo, hi) = decimal_range(num).ok_or_else(|| invalid("expected [prefix]number|system|code"))?;
                    let (lo, hi) = widen_ap(prefix, v, lo, hi);
                    SearchValue::Quantity { prefix, value: v, lo, hi, system, code: unit }
                }
                ParamType::Uri => SearchValue::Uri(unescape(raw)),
                ParamType::Composite | ParamType::Special => {
                    return Err(SearchError::Unsupported { param: code.to_string(), reason: "not indexed".into() })
                }
            });
        }
        if out.is_empty() {
            return Err(invalid("no value"));
        }
        Ok(out)
    }
}

/// `ap` on numbers/quantities: ±10 % of the value, never narrower than the precision range.
fn widen_ap(prefix: Prefix, v: f64, lo: f64, hi: f64) -> (f64, f64) {
    if prefix == Prefix::Ap {
        let d = v.abs() * 0.1;
        (lo.min(v - d), hi.max(v + d))
    } else {
        (lo, hi)
    }
}

/// The resource types of FHIR R4 (re-exported for callers validating `_type`).
pub fn r4_resource_types() -> &'static [&'static str] {
    R4_RESOURCE_TYPES
}
