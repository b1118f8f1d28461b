//! `POST /fhir/Patient/$match` — FHIR R4 §Patient-match ("Find patient matches using MPI based
//! logic", `patient-operation-match.html`), as profiled by IHE PDQm (ITI-119 "Patient Demographics
//! Match").
//!
//! # Request
//!
//! A `Parameters` resource with
//!
//! | parameter | type | |
//! |---|---|---|
//! | `resource` | Patient, 1..1 | the demographics to match (name kana/kanji, birthDate, gender, address, telecom, identifier) |
//! | `onlyCertainMatches` | boolean, 0..1 | `true`: return only a single `certain` match — none when there are several (FHIR R4: "If there are multiple potential matches, then the match should not return the results with this flag set to true") |
//! | `count` | integer ≥ 1, 0..1 | the most matches to return (default 10, at most 100) |
//!
//! A bare `Patient` body is accepted as `resource` as a convenience.
//!
//! # Response
//!
//! 200 with a `searchset` Bundle, best match first; every entry has `search.mode = match`,
//! `search.score` (0–1, two decimals) and the extension
//! `http://hl7.org/fhir/StructureDefinition/match-grade` (`certain` | `probable` | `possible`).
//! Candidates graded `certainly-not`, and those scoring below [`POSSIBLE_THRESHOLD`], are left out.
//! When `onlyCertainMatches` finds several certain matches the Bundle has no matches and an
//! `OperationOutcome` entry (`search.mode = outcome`) says so.
//!
//! Errors (OperationOutcome with `expression`): 400 malformed JSON / not Parameters or Patient /
//! `resource` missing / bad `count`; 415 content type; 422 the Patient breaks the R4 schema or has no
//! demographics to match on.
//!
//! # Scoring ([`score`])
//!
//! | feature | weight | match |
//! |---|---|---|
//! | name | 0.35 | full name equal after [`fold_ja`] (kana: hiragana/katakana, width, spaces, long vowels, small kana; kanji: width and spaces) = 1; family name only = 0.5 |
//! | birth date | 0.30 | equal = 1; one a less precise prefix of the other = 0.5 |
//! | sex | 0.10 | equal (`unknown` never matches or conflicts) |
//! | address | 0.15 | equal after [`normalize_address`] = 1; one contains the other = 0.5 |
//! | phone | 0.10 | same digits |
//!
//! An identifier in common (same system and value) lifts the score to `0.6 + 0.4 × weighted`.
//!
//! | grade | rule |
//! |---|---|
//! | `certain` | an identifier in common and no birth-date conflict; or full name + birth date + sex + address all equal (the secretariat's duplicate check, `docs/domain.md` §1.2) |
//! | `probable` | full name + birth date equal, sex not conflicting |
//! | `certainly-not` | no identifier in common, and either birth date or sex conflicting without the full name equal, or the names different (not even the family name equal) without the address or a phone in common |
//! | `possible` | anything else scoring ≥ [`POSSIBLE_THRESHOLD`] |
//!
//! Candidates come from indexed searches through [`access`] (so consent and audit apply): the input's
//! identifiers, its birth date (all patients born that day), and — without a birth date — its names
//! and phone numbers.

use std::collections::HashSet;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::api::access::{self, RequestContext};
use crate::api::body;
use crate::api::bundle::{BundleWriter, Entry};
use crate::api::interaction::{query_pairs, schema_check};
use crate::api::outcome::{operation_outcome, ApiError, ApiResult, Issue};
use crate::api::response::fhir_bytes;
use crate::api::AppState;
use crate::search::normalize::fold_ja;
use crate::store::StoredResource;

/// URL of the FHIR `match-grade` extension on `Bundle.entry.search`.
pub const MATCH_GRADE_EXT: &str = "http://hl7.org/fhir/StructureDefinition/match-grade";
/// Candidates scoring below this are not returned.
pub const POSSIBLE_THRESHOLD: f64 = 0.25;
/// Default `count`.
pub const DEFAULT_COUNT: usize = 10;
/// Largest `count`.
pub const MAX_COUNT: usize = 100;
/// The most candidates read per search (birth date, name, identifier, phone).
const CANDIDATES_PER_SEARCH: usize = 500;

/// The FHIR `MatchGrade` codes (value set `match-grade`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchGrade {
    /// `certain`: this record meets the matching criteria to be automatically considered a full match.
    Certain,
    /// `probable`: likely a match, pending review.
    Probable,
    /// `possible`: partial match data.
    Possible,
    /// `certainly-not`: known not to be a match.
    CertainlyNot,
}

impl MatchGrade {
    /// The code, e.g. `certainly-not`.
    pub fn code(self) -> &'static str {
        match self {
            MatchGrade::Certain => "certain",
            MatchGrade::Probable => "probable",
            MatchGrade::Possible => "possible",
            MatchGrade::CertainlyNot => "certainly-not",
        }
    }
}

/// The comparison form of one Patient's demographics (all texts folded; no raw values kept beyond
/// what matching needs). Build it with [`Demographics::of`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demographics {
    /// Folded full names (family + given, or `text`), kana and kanji alike.
    pub full_names: Vec<String>,
    /// Folded family names.
    pub families: Vec<String>,
    /// `birthDate` as written (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`).
    pub birth_date: Option<String>,
    /// `gender` code (`unknown` is dropped).
    pub gender: Option<String>,
    /// Addresses after [`normalize_address`].
    pub addresses: Vec<String>,
    /// Phone numbers as digits only (at least 6 digits).
    pub phones: Vec<String>,
    /// `(system, value)` identifiers.
    pub identifiers: Vec<(String, String)>,
}

impl Demographics {
    /// Extracts the demographics of a Patient resource (JSON). Never fails; absent or malformed
    /// elements are skipped.
    pub fn of(patient: &Value) -> Demographics {
        let mut d = Demographics::default();
        for n in patient
            .get("name")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let family = n.get("family").and_then(Value::as_str).unwrap_or("");
            let given: Vec<&str> = n
                .get("given")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let full = if !family.is_empty() || !given.is_empty() {
                fold_ja(&format!("{family}{}", given.concat()))
            } else {
                fold_ja(n.get("text").and_then(Value::as_str).unwrap_or(""))
            };
            push_unique(&mut d.full_names, full);
            push_unique(&mut d.families, fold_ja(family));
        }
        d.birth_date = patient
            .get("birthDate")
            .and_then(Value::as_str)
            .map(str::to_string);
        d.gender = patient
            .get("gender")
            .and_then(Value::as_str)
            .filter(|g| *g != "unknown")
            .map(str::to_string);
        for a in patient
            .get("address")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = match a.get("text").and_then(Value::as_str) {
                Some(t) => t.to_string(),
                None => {
                    let mut s = String::new();
                    for k in ["state", "city", "district"] {
                        s.push_str(a.get(k).and_then(Value::as_str).unwrap_or(""));
                    }
                    for l in a
                        .get("line")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        s.push_str(l);
                    }
                    s
                }
            };
            push_unique(&mut d.addresses, normalize_address(&text));
        }
        for t in patient
            .get("telecom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if matches!(
                t.get("system").and_then(Value::as_str),
                Some("phone") | Some("sms") | None
            ) {
                let digits: String = t
                    .get("value")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                if digits.len() >= 6 {
                    push_unique(&mut d.phones, digits);
                }
            }
        }
        for i in patient
            .get("identifier")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(s), Some(v)) = (
                i.get("system").and_then(Value::as_str),
                i.get("value").and_then(Value::as_str),
            ) {
                if !s.is_empty() && !v.is_empty() {
                    d.identifiers.push((s.to_string(), v.to_string()));
                }
            }
        }
        d
    }

    /// `true` when there is nothing to match on (no name, birth date, identifier or phone).
    pub fn is_empty(&self) -> bool {
        self.full_names.is_empty()
            && self.birth_date.is_none()
            && self.identifiers.is_empty()
            && self.phones.is_empty()
    }
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !s.is_empty() && !v.contains(&s) {
        v.push(s);
    }
}

/// Comparison form of a Japanese address: [`fold_ja`] (width, spaces, kana), a leading postcode
/// (`〒810-0001`) and prefecture removed, `丁目`/`番地`/`番` written as `-` and `号` dropped, so
/// `福岡県福岡市中央区天神1丁目1番1号` and `福岡市中央区天神１－１－１` compare equal.
pub fn normalize_address(text: &str) -> String {
    let mut s = fold_ja(text);
    s = s.trim_start_matches('〒').to_string();
    let b = s.as_bytes();
    if b.len() >= 8
        && b[..3].iter().all(u8::is_ascii_digit)
        && b[3] == b'-'
        && b[4..8].iter().all(u8::is_ascii_digit)
    {
        s = s[8..].to_string();
    } else if b.len() >= 7 && b[..7].iter().all(u8::is_ascii_digit) {
        s = s[7..].to_string();
    }
    if let Some(p) = crate::mapping::PREFECTURES.iter().find(|p| s.starts_with(*p)) {
        s = s[p.len()..].to_string();
    }
    let s = s
        .replace("丁目", "-")
        .replace("番地", "-")
        .replace('番', "-")
        .replace('号', "");
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '-' && (out.ends_with('-') || out.is_empty()) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The result of comparing two Patients' demographics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchScore {
    /// 0–1, rounded to two decimals.
    pub score: f64,
    /// The match grade.
    pub grade: MatchGrade,
    /// Full name equal (after folding).
    pub name: bool,
    /// Birth date equal.
    pub birth_date: bool,
    /// Sex equal.
    pub sex: bool,
    /// Address equal (after [`normalize_address`]).
    pub address: bool,
    /// An identifier in common.
    pub identifier: bool,
}

/// Scores `candidate` against `input` (see the module docs for weights and grades). Symmetric in
/// everything but identifiers' role. Never fails.
pub fn score(input: &Demographics, candidate: &Demographics) -> MatchScore {
    let name_full = input
        .full_names
        .iter()
        .any(|n| candidate.full_names.contains(n));
    let family = !name_full
        && input
            .families
            .iter()
            .any(|n| candidate.families.contains(n));
    let name_conflict =
        !name_full && !family && !input.full_names.is_empty() && !candidate.full_names.is_empty();
    let name_s = if name_full {
        1.0
    } else if family {
        0.5
    } else {
        0.0
    };

    let (birth_s, birth_eq, birth_conflict) = match (&input.birth_date, &candidate.birth_date) {
        (Some(a), Some(b)) if a == b => (1.0, true, false),
        (Some(a), Some(b)) if a.starts_with(b.as_str()) || b.starts_with(a.as_str()) => {
            (0.5, false, false)
        }
        (Some(_), Some(_)) => (0.0, false, true),
        _ => (0.0, false, false),
    };
    let (sex_eq, sex_conflict) = match (&input.gender, &candidate.gender) {
        (Some(a), Some(b)) => (a == b, a != b),
        _ => (false, false),
    };
    let address_eq = input
        .addresses
        .iter()
        .any(|a| candidate.addresses.contains(a));
    let address_part = !address_eq
        && input.addresses.iter().any(|a| {
            candidate.addresses.iter().any(|b| {
                let (short, long) = if a.chars().count() <= b.chars().count() {
                    (a, b)
                } else {
                    (b, a)
                };
                short.chars().count() >= 6 && long.contains(short.as_str())
            })
        });
    let address_s = if address_eq {
        1.0
    } else if address_part {
        0.5
    } else {
        0.0
    };
    let phone_eq = input.phones.iter().any(|p| candidate.phones.contains(p));
    let identifier = input
        .identifiers
        .iter()
        .any(|i| candidate.identifiers.contains(i));

    let weighted = 0.35 * name_s
        + 0.30 * birth_s
        + 0.10 * f64::from(u8::from(sex_eq))
        + 0.15 * address_s
        + 0.10 * f64::from(u8::from(phone_eq));
    let raw = if identifier {
        0.6 + 0.4 * weighted
    } else {
        weighted
    };
    let score = (raw.clamp(0.0, 1.0) * 100.0).round() / 100.0;

    let grade =
        if (identifier && !birth_conflict) || (name_full && birth_eq && sex_eq && address_eq) {
            MatchGrade::Certain
        } else if name_full && birth_eq && !sex_conflict {
            MatchGrade::Probable
        } else if !identifier
            && (((birth_conflict || sex_conflict) && !name_full)
                || (name_conflict && !address_eq && !phone_eq))
        {
            MatchGrade::CertainlyNot
        } else {
            MatchGrade::Possible
        };
    MatchScore {
        score,
        grade,
        name: name_full,
        birth_date: birth_eq,
        sex: sex_eq,
        address: address_eq,
        identifier,
    }
}

/// A scored candidate.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The stored Patient (current version).
    pub resource: StoredResource,
    /// Its parsed JSON.
    pub value: Value,
    /// Its score against the input.
    pub score: MatchScore,
}

/// Finds and scores the Patients that may be `input` (FHIR R4 §Patient-match; searches through
/// [`access`]). Returns every candidate graded better than `certainly-not` and scoring at least
/// [`POSSIBLE_THRESHOLD`], best first (score, then grade, then id).
///
/// Errors: as [`access::search`] (500 on a database failure).
pub async fn find_matches(
    state: &AppState,
    ctx: &RequestContext,
    input: &Demographics,
) -> ApiResult<Vec<Candidate>> {
    let mut searches: Vec<Vec<(String, String)>> = Vec::new();
    for (s, v) in &input.identifiers {
        searches.push(vec![(
            "identifier".into(),
            format!("{}|{}", escape(s), escape(v)),
        )]);
    }
    if let Some(b) = &input.birth_date {
        searches.push(vec![("birthdate".into(), b.clone())]);
    } else {
        for n in &input.full_names {
            searches.push(vec![("name".into(), n.clone())]);
        }
        for p in &input.phones {
            searches.push(vec![("phone".into(), p.clone())]);
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for mut params in searches {
        params.push(("_count".into(), CANDIDATES_PER_SEARCH.to_string()));
        let q = crate::search::query::parse(&state.registry, "Patient", &params)?;
        let page = access::search(state, ctx, &q).await?;
        for r in page.matches {
            if r.deleted || !seen.insert(r.id.clone()) {
                continue;
            }
            let Ok(value) = serde_json::from_str::<Value>(&r.json) else {
                continue;
            };
            let s = score(input, &Demographics::of(&value));
            if s.grade != MatchGrade::CertainlyNot && s.score >= POSSIBLE_THRESHOLD {
                out.push(Candidate {
                    resource: r,
                    value,
                    score: s,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        b.score
            .score
            .total_cmp(&a.score.score)
            .then(a.score.grade.cmp(&b.score.grade))
            .then_with(|| a.resource.id.cmp(&b.resource.id))
    });
    Ok(out)
}

/// Escapes `|`, `,`, `$` and `\` in a token search value (FHIR R4 search.html#escaping).
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '|' | ',' | '$') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// The parsed `$match` input.
struct MatchInput {
    patient: Value,
    only_certain: bool,
    count: usize,
}

fn parse_input(v: Value) -> ApiResult<MatchInput> {
    let bad = |msg: &str, at: String| ApiError::bad_request(msg.to_string()).with_expression(&at);
    match v.get("resourceType").and_then(Value::as_str) {
        Some("Patient") => {
            return Ok(MatchInput {
                patient: v,
                only_certain: false,
                count: DEFAULT_COUNT,
            })
        }
        Some("Parameters") => {}
        _ => {
            return Err(bad(
                "the body must be a Parameters resource (or a Patient)",
                "Resource.resourceType".into(),
            ))
        }
    }
    let mut patient = None;
    let mut only_certain = false;
    let mut count = DEFAULT_COUNT;
    for (i, p) in v
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("Parameters.parameter[{i}]");
        match p.get("name").and_then(Value::as_str) {
            Some("resource") => {
                let r = p.get("resource").cloned().unwrap_or(Value::Null);
                if r.get("resourceType").and_then(Value::as_str) != Some("Patient") {
                    return Err(bad(
                        "parameter `resource` must hold a Patient",
                        format!("{at}.resource"),
                    ));
                }
                if patient.is_some() {
                    return Err(bad("parameter `resource` given more than once", at));
                }
                patient = Some(r);
            }
            Some("onlyCertainMatches") => {
                only_certain = p
                    .get("valueBoolean")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| {
                        bad(
                            "onlyCertainMatches needs valueBoolean",
                            format!("{at}.valueBoolean"),
                        )
                    })?;
            }
            Some("count") => {
                let n = p
                    .get("valueInteger")
                    .and_then(Value::as_i64)
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        bad(
                            "count needs a valueInteger of at least 1",
                            format!("{at}.valueInteger"),
                        )
                    })?;
                count = usize::try_from(n).unwrap_or(MAX_COUNT).min(MAX_COUNT);
            }
            _ => {
                return Err(bad(
                    "unknown parameter (expected resource, onlyCertainMatches, count)",
                    format!("{at}.name"),
                ))
            }
        }
    }
    let patient = patient.ok_or_else(|| {
        bad(
            "parameter `resource` (the Patient to match) is required",
            "Parameters.parameter".into(),
        )
    })?;
    Ok(MatchInput {
        patient,
        only_certain,
        count,
    })
}

/// The `search` element of a match entry.
fn search_element(s: &MatchScore) -> Value {
    let score: Value = serde_json::from_str(&format!("{:.2}", s.score)).unwrap_or(json!(0));
    json!({
        "extension": [{"url": MATCH_GRADE_EXT, "valueCode": s.grade.code()}],
        "mode": "match",
        "score": score,
    })
}

/// `POST /fhir/Patient/$match` (FHIR R4 §Patient-match; IHE PDQm ITI-119). See the module docs for
/// the request, response and errors.
pub async fn patient_match(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ctx: RequestContext,
    req_body: Body,
) -> ApiResult<Response> {
    body::check_format(&query_pairs(&q))?;
    body::require_json(&headers)?;
    let bytes = body::read_body(req_body, state.config.max_body_bytes).await?;
    let (value, _) = body::parse_json(&bytes)?;
    let input = parse_input(value)?;
    schema_check(&input.patient)?;
    let demo = Demographics::of(&input.patient);
    if demo.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "required",
            "the Patient has nothing to match on (name, birthDate, identifier or telecom)",
        )
        .with_expression("Patient"));
    }
    let mut found = find_matches(&state, &ctx, &demo).await?;
    let mut outcome = None;
    if input.only_certain {
        found.retain(|c| c.score.grade == MatchGrade::Certain);
        if found.len() > 1 {
            found.clear();
            outcome = Some(operation_outcome(&[Issue {
                severity: "warning",
                code: "multiple-matches",
                diagnostics:
                    "several certain matches; none returned because onlyCertainMatches is true"
                        .into(),
                expression: None,
            }]));
        }
    }
    found.truncate(input.count);
    let mut w = BundleWriter::new("searchset", Some(found.len()), &[]);
    for c in &found {
        w.entry(Entry {
            full_url: Some(format!(
                "{}/Patient/{}",
                state.config.base_url, c.resource.id
            )),
            resource: Some(&c.resource.json),
            search: Some(search_element(&c.score)),
            ..Entry::default()
        });
    }
    let outcome_text = outcome.map(|o| o.to_string());
    if let Some(t) = &outcome_text {
        w.entry(Entry {
            resource: Some(t),
            search_mode: Some("outcome"),
            ..Entry::default()
        });
    }
    Ok(fhir_bytes(StatusCode::OK, w.finish().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient(
        kana: (&str, &str),
        kanji: (&str, &str),
        birth: &str,
        gender: &str,
        address: &str,
    ) -> Value {
        json!({
            "resourceType": "Patient",
            "name": [
                {"family": kanji.0, "given": [kanji.1]},
                {"family": kana.0, "given": [kana.1]}
            ],
            "birthDate": birth,
            "gender": gender,
            "address": [{"text": address}],
            "telecom": [{"system": "phone", "value": "092-711-0000"}]
        })
    }

    #[test]
    fn addresses_normalize() {
        let a = normalize_address("福岡県福岡市中央区天神1丁目1番1号");
        assert_eq!(
            a,
            normalize_address("〒810-0001 福岡市中央区天神１－１－１")
        );
        assert_eq!(a, "福岡市中央区天神1-1-1");
        assert_ne!(a, normalize_address("福岡市中央区天神1-1-2"));
    }

    #[test]
    fn grades() {
        let base = Demographics::of(&patient(
            ("ウメノ", "ハナコ"),
            ("梅野", "花子"),
            "1938-03-14",
            "female",
            "福岡市中央区天神1-1-1",
        ));
        // the same person, written differently
        let same = Demographics::of(&patient(
            ("うめの", "はなこ"),
            ("梅野", "花子"),
            "1938-03-14",
            "female",
            "福岡県福岡市中央区天神1丁目1番1号",
        ));
        let s = score(&base, &same);
        assert_eq!(s.grade, MatchGrade::Certain);
        assert_eq!(s.score, 1.0);
        // moved house: probable
        let moved = Demographics::of(&patient(
            ("ウメノ", "ハナコ"),
            ("梅野", "花子"),
            "1938-03-14",
            "female",
            "北九州市小倉北区1-1",
        ));
        let s = score(&base, &moved);
        assert_eq!(s.grade, MatchGrade::Probable);
        assert_eq!(s.score, 0.85);
        // another person born the same day
        let other = Demographics::of(&patient(
            ("サトウ", "ハナコ"),
            ("佐藤", "花子"),
            "1938-03-14",
            "male",
            "福岡市東区1-1",
        ));
        let s = score(&base, &other);
        assert_eq!(s.grade, MatchGrade::CertainlyNot);
        // same name, other birth date and sex
        let namesake = Demographics::of(&patient(
            ("ウメノ", "ハナコ"),
            ("梅野", "花子"),
            "1990-01-01",
            "male",
            "東京都港区1-1",
        ));
        assert_eq!(score(&base, &namesake).grade, MatchGrade::Possible);
        // identifier in common
        let mut with_id = patient(
            ("ウメノ", "ハナコ"),
            ("梅野", "花子"),
            "1938-03-14",
            "female",
            "x",
        );
        with_id["identifier"] = json!([{"system": "urn:x", "value": "1"}]);
        let a = Demographics::of(&with_id);
        let mut b =
            Demographics::of(&json!({"resourceType": "Patient", "birthDate": "1938-03-14"}));
        b.identifiers.push(("urn:x".into(), "1".into()));
        assert_eq!(score(&a, &b).grade, MatchGrade::Certain);
        assert!(score(&a, &b).score >= 0.6);
    }
}
