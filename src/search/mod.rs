//! FHIR search: the database-independent half of search.
//!
//! * [`registry`] — the SearchParameter definitions the server obeys (official FHIR R4 4.0.1
//!   `search-parameters.json`, embedded, plus the gateway's own from `conformance/searchparameters/`),
//!   each FHIRPath expression parsed once.
//! * [`index`] — on every write, [`index::extract`] evaluates each parameter of the resource's type
//!   and turns the FHIR datatypes it finds into [`IndexEntry`] rows for the store's search index.
//! * [`query`] — [`query::parse`] turns URL-decoded `(name, value)` pairs (GET query string or POST
//!   `_search` form) into a typed [`SearchQuery`] the store plans SQL from.
//! * [`normalize`] — Japanese-aware folding used for `string` parameters (NFKC, case fold,
//!   hiragana→katakana, whitespace removal, long-vowel unification).
//!
//! Spec: FHIR R4 "Search" (<http://hl7.org/fhir/R4/search.html>); section anchors are given on each
//! item (e.g. `search.html#date`).
//!
//! ## Range conventions (shared by index and query)
//!
//! * **date**: `lo_ms..=hi_ms`, *inclusive* epoch milliseconds (UTC) covering the value's precision:
//!   `2024` → `2024-01-01T00:00:00.000` ..= `2024-12-31T23:59:59.999`. Values without a time zone
//!   (dates, partial dates, and dateTimes without offset) are interpreted in **Asia/Tokyo (UTC+09:00)**,
//!   the gateway's deployment zone (Japan has no DST, so this is a fixed offset). Open Period ends
//!   are `i64::MIN` / `i64::MAX`.
//! * **number / quantity**: `lo..hi`, *half-open* `[lo, hi)` implied by the decimal's significant
//!   figures: `1.50` → `[1.495, 1.505)`, `100` → `[99.5, 100.5)`. `value` keeps the decimal itself.
//!
//! ## Matching rules the store must implement (summary)
//!
//! | type | index | query → SQL |
//! |---|---|---|
//! | string | `normalized` starts-with (`exact` for `:exact`, substring of `normalized` for `:contains`) | value normalized with [`normalize::fold_ja`] |
//! | token | `(system, code)`; `:text` matches `display` (folded) | see [`TokenSystem`] |
//! | date | ranges, per [`Prefix`] | `search.html#prefix` range semantics |
//! | reference | `(target_type, target_id)` or `url` | see [`SearchValue::Reference`] |
//!
//! ## Known limits
//!
//! * composite and special parameters are neither indexed nor searchable (query parsing reports
//!   them as [`SearchError::Unsupported`]); `:above`/`:below`/`:in`/`:not-in`/`:of-type`/
//!   `:identifier` are rejected;
//! * `where(resolve() is Patient)` is decided from the reference text (`Patient/…`) or
//!   `Reference.type`; `urn:uuid:` references must be rewritten to `Type/id` (as a transaction
//!   does) before extraction, otherwise they are not indexed for such type-restricted parameters;
//! * decimal precision comes from the JSON number's text, which serde_json keeps because the
//!   crate enables `arbitrary_precision`; a `Value` built from an `f64` (e.g. `json!(1.50)`) has
//!   lost its trailing zeros and is indexed with the precision of `1.5`.

pub mod index;
pub mod normalize;
pub mod query;
pub mod registry;
pub mod value;

pub use registry::{Registry, SearchParamDef};

/// The type of a search parameter — `SearchParameter.type` (value set `search-param-type`,
/// FHIR R4 `search.html#ptypes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamType {
    /// `number` — a decimal search (`search.html#number`).
    Number,
    /// `date` — a date/time range search (`search.html#date`).
    Date,
    /// `string` — case/accent-insensitive starts-with (`search.html#string`).
    String,
    /// `token` — code/identifier with optional system (`search.html#token`).
    Token,
    /// `reference` — a reference to another resource (`search.html#reference`).
    Reference,
    /// `composite` — a tuple of other parameters (`search.html#composite`); not indexed yet.
    Composite,
    /// `quantity` — value with unit (`search.html#quantity`).
    Quantity,
    /// `uri` — exact URI match (`search.html#uri`).
    Uri,
    /// `special` — e.g. `Location.near`; not supported.
    Special,
}

impl ParamType {
    /// Parses the FHIR code (`"number"`, `"date"`, …). Returns `None` for an unknown code.
    pub fn from_code(code: &str) -> Option<ParamType> {
        Some(match code {
            "number" => ParamType::Number,
            "date" => ParamType::Date,
            "string" => ParamType::String,
            "token" => ParamType::Token,
            "reference" => ParamType::Reference,
            "composite" => ParamType::Composite,
            "quantity" => ParamType::Quantity,
            "uri" => ParamType::Uri,
            "special" => ParamType::Special,
            _ => return None,
        })
    }

    /// The FHIR code of this type (`"number"`, `"date"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Number => "number",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Composite => "composite",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Special => "special",
        }
    }
}

/// One value extracted from a resource for one search parameter — one row of the search index.
///
/// Produced by [`index::extract`]; the store persists it keyed by (resource, [`IndexEntry::param`]).
/// A parameter may yield many values (e.g. every `Patient.name` part); duplicates are removed.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// `token` (`search.html#token`), from Coding, CodeableConcept (one per coding, plus the
    /// `text` as display-only entry with empty code), Identifier (`system`/`value`), ContactPoint
    /// (`system` is the ContactPoint.system code, e.g. `phone`), code, boolean (`"true"`/`"false"`),
    /// string, id, uri.
    Token {
        /// The code system URI; `None` when the element has no system (e.g. plain `code`).
        system: Option<String>,
        /// The code / identifier value, exactly as in the resource (case-sensitive). May be empty
        /// for a CodeableConcept that has only `text`.
        code: String,
        /// `Coding.display` / `CodeableConcept.text` / `Identifier.type.text`, folded with
        /// [`normalize::fold_ja`]; used by `:text`.
        display: Option<String>,
    },
    /// `string` (`search.html#string`), from string, markdown, HumanName, Address.
    String {
        /// The text exactly as in the resource (for `:exact`).
        exact: String,
        /// [`normalize::fold_ja`] of `exact` (for the default starts-with and `:contains`).
        normalized: String,
    },
    /// `date` (`search.html#date`) — inclusive epoch-millisecond range (UTC); see module docs.
    Date {
        /// First millisecond covered (inclusive); `i64::MIN` for an open Period start.
        lo_ms: i64,
        /// Last millisecond covered (inclusive); `i64::MAX` for an open Period end.
        hi_ms: i64,
    },
    /// `reference` (`search.html#reference`), from Reference, canonical, uri-typed references.
    Reference {
        /// Resource type of the target when known (`Patient/123` → `Patient`; absolute
        /// `https://x/fhir/Patient/123` → `Patient`; `Reference.type` otherwise); `None` for
        /// `urn:uuid:`, `#contained` and canonicals.
        target_type: Option<String>,
        /// Logical id of the target (`123`); empty for canonicals / `urn:` references.
        target_id: String,
        /// The reference text exactly as in the resource (relative, absolute, `urn:uuid:…`,
        /// canonical with optional `|version`), for matching absolute/canonical searches.
        url: String,
    },
    /// `quantity` (`search.html#quantity`), from Quantity, SimpleQuantity, Age, Duration, Distance,
    /// Count, Money (system `urn:iso:std:iso:4217`, code = currency), Range (low..high).
    Quantity {
        /// The decimal value as a float.
        value: f64,
        /// Lower bound (inclusive) implied by precision; see module docs.
        lo: f64,
        /// Upper bound (exclusive) implied by precision.
        hi: f64,
        /// `Quantity.system` (e.g. `http://unitsofmeasure.org`).
        system: Option<String>,
        /// `Quantity.code` (e.g. `[lb_av]`).
        code: Option<String>,
        /// `Quantity.unit` — human readable unit (e.g. `lbs`).
        unit: Option<String>,
    },
    /// `number` (`search.html#number`), from integer/decimal/positiveInt/unsignedInt.
    Number {
        /// The decimal value as a float.
        value: f64,
        /// Lower bound (inclusive) implied by precision.
        lo: f64,
        /// Upper bound (exclusive) implied by precision.
        hi: f64,
    },
    /// `uri` (`search.html#uri`), from uri/url/canonical/oid/uuid — exact text.
    Uri(String),
}

/// One search-index row: parameter `code` (e.g. `"name"`, `"_lastUpdated"`) and one value.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// The search parameter code as used in URLs (`SearchParameter.code`).
    pub param: String,
    /// The extracted value.
    pub value: IndexValue,
}

/// Comparison prefix for number, date and quantity values (`search.html#prefix`).
/// Absent prefix = [`Prefix::Eq`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// `eq` — the target range fully contains the search range.
    Eq,
    /// `ne` — the target range does not fully contain the search range.
    Ne,
    /// `gt` — the target range extends above the search value.
    Gt,
    /// `lt` — the target range extends below the search value.
    Lt,
    /// `ge` — `gt` or `eq`.
    Ge,
    /// `le` — `lt` or `eq`.
    Le,
    /// `sa` — starts after: target range entirely above the search range.
    Sa,
    /// `eb` — ends before: target range entirely below the search range.
    Eb,
    /// `ap` — approximately; the query layer already widened the search range (see
    /// [`query`] docs), the store then tests for *overlap*.
    Ap,
}

impl Prefix {
    /// Parses a two-letter prefix code; `None` if `s` is not one.
    pub fn from_code(s: &str) -> Option<Prefix> {
        Some(match s {
            "eq" => Prefix::Eq,
            "ne" => Prefix::Ne,
            "gt" => Prefix::Gt,
            "lt" => Prefix::Lt,
            "ge" => Prefix::Ge,
            "le" => Prefix::Le,
            "sa" => Prefix::Sa,
            "eb" => Prefix::Eb,
            "ap" => Prefix::Ap,
            _ => return None,
        })
    }
}

/// A search modifier (`search.html#modifiers`). `:above`, `:below`, `:in`, `:not-in`,
/// `:of-type`, `:identifier` are rejected by [`query::parse`] with
/// [`SearchError::UnsupportedModifier`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Modifier {
    /// `:exact` (string) — exact, case- and accent-sensitive match of the whole text.
    Exact,
    /// `:contains` (string, uri) — substring match on the normalized text.
    Contains,
    /// `:missing=true|false` (all types) — the values are [`SearchValue::Missing`].
    Missing,
    /// `:not` (token) — resources with *no* value matching any of the OR-list (includes
    /// resources without the element).
    Not,
    /// `:text` (token) — starts-with on the folded display/text.
    Text,
    /// `:[type]` (reference), e.g. `subject:Patient=123` — restricts the target type.
    Type(String),
}

/// How a token value constrains the system (`search.html#token`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenSystem {
    /// `[code]` — any system (or none).
    Any,
    /// `|[code]` — the element must have *no* system.
    NoSystem,
    /// `[system]|[code]` or `[system]|` — the system must equal this URI.
    Is(String),
}

/// One value of an OR-list (`a,b,c`), typed by the parameter's [`ParamType`].
#[derive(Debug, Clone, PartialEq)]
pub enum SearchValue {
    /// number: `[prefix]decimal`; `lo..hi` half-open as in [`IndexValue::Number`] (for `ap`:
    /// widened by ±10 % of the value).
    Number { prefix: Prefix, value: f64, lo: f64, hi: f64 },
    /// date: `[prefix]date|dateTime|instant`; inclusive epoch ms as in [`IndexValue::Date`]
    /// (for `ap`: widened, see [`query`]).
    Date { prefix: Prefix, lo_ms: i64, hi_ms: i64 },
    /// string: the text as given and its [`normalize::fold_ja`] form.
    String { exact: String, normalized: String },
    /// token: `code`, `|code`, `system|code`, `system|` (then `code` is `None`).
    /// With `:text`, `code` holds the folded text and `system` is [`TokenSystem::Any`].
    Token { system: TokenSystem, code: Option<String> },
    /// reference: `id` (type from `:Type` modifier, or `None` = any target type), `Type/id`,
    /// or an absolute URL / canonical (`url` = the text given, `target_type`/`id` parsed from
    /// `…/Type/id` when possible, else `id` empty). Match on `(target_type, id)` when `id` is
    /// non-empty, else on `url`.
    Reference { target_type: Option<String>, id: String, url: String },
    /// quantity: `[prefix]number|system|code`, `[prefix]number||code`, `[prefix]number`.
    /// `code` matches `IndexValue::Quantity::code`, or `unit` when `system` is `None`.
    Quantity {
        prefix: Prefix,
        value: f64,
        lo: f64,
        hi: f64,
        system: Option<String>,
        code: Option<String>,
    },
    /// uri: exact text.
    Uri(String),
    /// `:missing=true` → `Missing(true)` (no index row for the param), `false` → at least one.
    Missing(bool),
}

/// A chained parameter one level deep (`search.html#chaining`): `subject:Patient.name=x` or
/// `patient.birthdate=x`. Means: the reference parameter (the enclosing [`SearchParam`]) points to
/// a resource of `target_type` that matches `param`.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    /// The resource type the reference must point to (from `:Type`, or the parameter's only
    /// target type that defines the chained parameter).
    pub target_type: String,
    /// The condition on the target resource (its own `code`, `modifier`, `values`). Never
    /// itself chained.
    pub param: Box<SearchParam>,
}

/// One search parameter of the query: an OR-list of values for one code. Several
/// `SearchParam`s with the same code are ANDed (`search.html#combining`).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchParam {
    /// Parameter code (`name`, `_id`, `subject`, …) — the key the index rows use.
    pub code: String,
    /// The parameter type from its definition.
    pub param_type: ParamType,
    /// The modifier, if any (`:Type` on a chained reference is folded into [`Chain`]).
    pub modifier: Option<Modifier>,
    /// OR-list of values; empty iff `chain` is set.
    pub values: Vec<SearchValue>,
    /// Set for chained searches; then `values` is empty.
    pub chain: Option<Chain>,
}

/// One `_sort` key (`search.html#_sort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// Parameter code (`_id`, `_lastUpdated`, or any indexed parameter of the type).
    pub code: String,
    /// The parameter type (decides which index column to sort by: date → `lo_ms` ascending /
    /// `hi_ms` descending, string → `normalized`, token → `code`, number/quantity → `value`).
    pub param_type: ParamType,
    /// `true` for `-code`.
    pub descending: bool,
}

/// `_total` (`search.html#total`). When absent, [`SearchQuery::total`] is `None`: the server
/// chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalMode {
    /// `_total=none`
    None,
    /// `_total=estimate`
    Estimate,
    /// `_total=accurate`
    Accurate,
}

/// `_summary` (`search.html#summary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryMode {
    /// `_summary=true` — only elements marked isSummary.
    True,
    /// `_summary=false` — full resources (the default).
    False,
    /// `_summary=text` — text, id, meta and mandatory top-level elements.
    Text,
    /// `_summary=data` — everything but `text`.
    Data,
    /// `_summary=count` — only `Bundle.total`, no entries.
    Count,
}

/// `_include` / `_revinclude` (`search.html#include`): `Source:param[:Target]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// Resource type holding the reference (`MedicationRequest` in
    /// `_include=MedicationRequest:patient`).
    pub source_type: String,
    /// The reference search parameter code (`patient`).
    pub param: String,
    /// Optional target type restriction (`Patient`).
    pub target_type: Option<String>,
    /// `:iterate` (or R4-draft `:recurse`) was given.
    pub iterate: bool,
}

/// How unknown / unsupported parameters are treated (`search.html#errors`, `Prefer: handling=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    /// `Prefer: handling=lenient` (default): unknown parameters are skipped and listed in
    /// [`SearchQuery::ignored`] (the API reports them in an OperationOutcome and omits them from
    /// the self link).
    #[default]
    Lenient,
    /// `Prefer: handling=strict`: unknown parameters fail with [`SearchError::UnknownParameter`].
    Strict,
}

/// Default page size when `_count` is absent.
pub const DEFAULT_COUNT: usize = 20;
/// Largest accepted `_count`; larger values are clamped to this.
pub const MAX_COUNT: usize = 1000;

/// A parsed FHIR search on one resource type — the output of [`query::parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// The resource type searched (`Patient`).
    pub resource_type: String,
    /// AND-list of parameters.
    pub params: Vec<SearchParam>,
    /// `_sort` keys in priority order (empty = store's default order).
    pub sort: Vec<SortKey>,
    /// `_count` page size (default [`DEFAULT_COUNT`], clamped to [`MAX_COUNT`]; `0` is allowed
    /// and means "no entries", like `_summary=count`).
    pub count: usize,
    /// `_offset` — entries to skip (the server's own paging links).
    pub offset: usize,
    /// `_total`, `None` if absent.
    pub total: Option<TotalMode>,
    /// `_summary`, `None` if absent.
    pub summary: Option<SummaryMode>,
    /// `_elements` — top-level element names to return (empty = all).
    pub elements: Vec<String>,
    /// `_include` directives.
    pub includes: Vec<Include>,
    /// `_revinclude` directives.
    pub revincludes: Vec<Include>,
    /// Lenient mode: parameter names that were ignored (unknown or unsupported), for the
    /// OperationOutcome warning.
    pub ignored: Vec<String>,
}

/// Errors from [`query::parse`]. Every message names the offending parameter; none contains the
/// searched *value* (it may be PHI, e.g. a patient name) — only its role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// The resource type is not known to the registry (HTTP 404 / 400).
    #[error("unknown resource type `{0}`")]
    UnknownResourceType(String),
    /// Strict handling: the parameter is not defined for the resource type.
    #[error("unknown search parameter `{param}` for {resource_type}")]
    UnknownParameter { param: String, resource_type: String },
    /// The modifier is not valid for the parameter's type, or not supported.
    #[error("modifier `:{modifier}` is not supported on parameter `{param}`")]
    UnsupportedModifier { param: String, modifier: String },
    /// A value could not be parsed for the parameter's type (bad prefix, date, number…).
    #[error("invalid value for search parameter `{param}`: {reason}")]
    InvalidValue { param: String, reason: String },
    /// A chain is malformed, ambiguous, deeper than one level, or names an unknown parameter.
    #[error("invalid chained search `{param}`: {reason}")]
    InvalidChain { param: String, reason: String },
    /// A result parameter (`_count`, `_sort`, `_include`, …) is malformed.
    #[error("invalid result parameter `{param}`: {reason}")]
    InvalidResultParameter { param: String, reason: String },
    /// The parameter exists but its type/feature is not implemented (composite, special, …).
    #[error("search parameter `{param}` is not supported: {reason}")]
    Unsupported { param: String, reason: String },
}
