//! FHIR R4 search request parsing (`search.html`): prefixes, modifiers, chains, result
//! parameters, strict/lenient handling.

use std::sync::OnceLock;
use tobiume_gateway::search::query::{parse, parse_with_handling, parse_with_options, ParseOptions};
use tobiume_gateway::search::*;

fn reg() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::standard)
}

fn q(rt: &str, pairs: &[(&str, &str)]) -> Result<SearchQuery, SearchError> {
    let v: Vec<(String, String)> = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    parse_with_options(reg(), rt, &v, &ParseOptions { handling: Handling::Strict, now_ms: Some(NOW) })
}

fn one(rt: &str, k: &str, v: &str) -> SearchParam {
    let mut q = q(rt, &[(k, v)]).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    assert_eq!(q.params.len(), 1, "{k}={v}");
    q.params.remove(0)
}

/// 2024-01-01T00:00:00Z
const Y2024: i64 = 1_704_067_200_000;
const H: i64 = 3_600_000;
const NOW: i64 = Y2024 + 366 * 24 * H; // 2025-01-01T00:00:00Z

#[test]
fn number_and_quantity_prefixes() {
    for (code, p) in [
        ("eq", Prefix::Eq), ("ne", Prefix::Ne), ("gt", Prefix::Gt), ("lt", Prefix::Lt), ("ge", Prefix::Ge),
        ("le", Prefix::Le), ("sa", Prefix::Sa), ("eb", Prefix::Eb), ("ap", Prefix::Ap),
    ] {
        let sp = one("RiskAssessment", "probability", &format!("{code}0.8"));
        assert_eq!(sp.param_type, ParamType::Number);
        match &sp.values[..] {
            [SearchValue::Number { prefix, value, lo, hi }] => {
                assert_eq!((*prefix, *value), (p, 0.8));
                if p == Prefix::Ap {
                    assert!((lo - 0.72).abs() < 1e-9 && (hi - 0.88).abs() < 1e-9);
                } else {
                    assert!((lo - 0.75).abs() < 1e-9 && (hi - 0.85).abs() < 1e-9);
                }
            }
            other => panic!("{other:?}"),
        }
        let sp = one("Observation", "value-quantity", &format!("{code}5.4|http://unitsofmeasure.org|mg"));
        assert!(matches!(&sp.values[..], [SearchValue::Quantity { prefix, value, system: Some(s), code: Some(c), .. }]
            if *prefix == p && *value == 5.4 && s == "http://unitsofmeasure.org" && c == "mg"));
    }
    let sp = one("Observation", "value-quantity", "185||[lb_av]");
    assert!(matches!(&sp.values[..], [SearchValue::Quantity { system: None, code: Some(c), prefix: Prefix::Eq, .. }] if c == "[lb_av]"));
    let sp = one("Observation", "value-quantity", "1.50");
    assert!(matches!(&sp.values[..], [SearchValue::Quantity { lo, hi, system: None, code: None, .. }]
        if (lo - 1.495).abs() < 1e-9 && (hi - 1.505).abs() < 1e-9));
    assert!(matches!(q("Observation", &[("value-quantity", "5|mg")]), Err(SearchError::InvalidValue { .. })));
    assert!(matches!(q("RiskAssessment", &[("probability", "xx1")]), Err(SearchError::InvalidValue { .. })));
}

#[test]
fn date_values() {
    let sp = one("Patient", "birthdate", "ge2024-01");
    assert_eq!(sp.values, [SearchValue::Date { prefix: Prefix::Ge, lo_ms: Y2024 - 9 * H, hi_ms: Y2024 + 31 * 24 * H - 9 * H - 1 }]);
    let sp = one("Observation", "date", "2024-01-05T10:00:00+09:00");
    let t = Y2024 + 4 * 24 * H + H;
    assert_eq!(sp.values, [SearchValue::Date { prefix: Prefix::Eq, lo_ms: t, hi_ms: t + 999 }]);
    // `+` decoded to a space by a careless client
    let sp = one("Observation", "date", "lt2024-01-05T10:00:00 09:00");
    assert_eq!(sp.values, [SearchValue::Date { prefix: Prefix::Lt, lo_ms: t, hi_ms: t + 999 }]);
    // ap: ±10 % of the distance to now (now = 2025-01-01T00:00Z)
    let sp = one("Observation", "_lastUpdated", "ap2024-01-01T00:00:00Z");
    let gap = (NOW - (Y2024 + 499)) / 10; // distance from the middle of the value
    assert_eq!(sp.values, [SearchValue::Date { prefix: Prefix::Ap, lo_ms: Y2024 - gap, hi_ms: Y2024 + 999 + gap }]);
    for p in ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"] {
        let sp = one("Encounter", "date", &format!("{p}2024"));
        assert!(matches!(sp.values[..], [SearchValue::Date { .. }]));
    }
    assert!(matches!(q("Patient", &[("birthdate", "2024-13-01")]), Err(SearchError::InvalidValue { ref param, .. }) if param == "birthdate"));
    assert!(matches!(q("Patient", &[("birthdate", "yesterday")]), Err(SearchError::InvalidValue { .. })));
}

#[test]
fn string_modifiers_and_japanese() {
    let sp = one("Patient", "name", "かんじゃ");
    assert_eq!(sp.values, [SearchValue::String { exact: "かんじゃ".into(), normalized: "カンジャ".into() }]);
    assert_eq!(sp.modifier, None);
    let sp = one("Patient", "name:exact", "患者 太郎");
    assert_eq!(sp.modifier, Some(Modifier::Exact));
    assert_eq!(sp.values, [SearchValue::String { exact: "患者 太郎".into(), normalized: "患者太郎".into() }]);
    let sp = one("Patient", "family:contains", "ｶﾝｼﾞｬ");
    assert_eq!(sp.modifier, Some(Modifier::Contains));
    assert_eq!(sp.values, [SearchValue::String { exact: "ｶﾝｼﾞｬ".into(), normalized: "カンジャ".into() }]);
    // OR list with escaped comma
    let sp = one("Patient", "name", r"peter,smith\,jr");
    assert_eq!(sp.values.len(), 2);
    assert_eq!(sp.values[1], SearchValue::String { exact: "smith,jr".into(), normalized: "smith,jr".into() });
    assert!(matches!(q("Patient", &[("name:not", "x")]), Err(SearchError::UnsupportedModifier { ref param, .. }) if param == "name"));
}

#[test]
fn token_forms() {
    let cases: &[(&str, TokenSystem, Option<&str>)] = &[
        ("male", TokenSystem::Any, Some("male")),
        ("|male", TokenSystem::NoSystem, Some("male")),
        ("http://loinc.org|29463-7", TokenSystem::Is("http://loinc.org".into()), Some("29463-7")),
        ("http://loinc.org|", TokenSystem::Is("http://loinc.org".into()), None),
        (r"urn:x|a\|b", TokenSystem::Is("urn:x".into()), Some("a|b")),
    ];
    for (v, sys, code) in cases {
        let sp = one("Observation", "code", v);
        assert_eq!(sp.values, [SearchValue::Token { system: sys.clone(), code: code.map(str::to_string) }], "{v}");
    }
    let sp = one("Patient", "gender:not", "male,female");
    assert_eq!(sp.modifier, Some(Modifier::Not));
    assert_eq!(sp.values.len(), 2);
    let sp = one("Observation", "code:text", "体重");
    assert_eq!(sp.modifier, Some(Modifier::Text));
    let sp = one("Patient", "_id", "p1,p2");
    assert_eq!(sp.values[0], SearchValue::Token { system: TokenSystem::Any, code: Some("p1".into()) });
    for m in ["above", "below", "in", "not-in", "of-type"] {
        assert!(matches!(q("Observation", &[(&format!("code:{m}") as &str, "x")]), Err(SearchError::UnsupportedModifier { .. })), "{m}");
    }
}

#[test]
fn missing_modifier() {
    for (k, v, want) in [("birthdate:missing", "true", true), ("name:missing", "false", false), ("gender:missing", "true", true), ("general-practitioner:missing", "true", true)] {
        let sp = one("Patient", k, v);
        assert_eq!(sp.modifier, Some(Modifier::Missing));
        assert_eq!(sp.values, [SearchValue::Missing(want)]);
    }
    assert!(matches!(q("Patient", &[("birthdate:missing", "maybe")]), Err(SearchError::InvalidValue { .. })));
}

#[test]
fn reference_forms() {
    let sp = one("Observation", "subject", "Patient/123");
    assert_eq!(sp.values, [SearchValue::Reference { target_type: Some("Patient".into()), id: "123".into(), url: "Patient/123".into() }]);
    let sp = one("Observation", "subject:Patient", "123");
    assert_eq!(sp.modifier, Some(Modifier::Type("Patient".into())));
    assert_eq!(sp.values, [SearchValue::Reference { target_type: Some("Patient".into()), id: "123".into(), url: "123".into() }]);
    // single-target parameter: type inferred
    let sp = one("Observation", "patient", "123");
    assert!(matches!(&sp.values[..], [SearchValue::Reference { target_type: Some(t), .. }] if t == "Patient"));
    let sp = one("Observation", "subject", "https://fhir.example.jp/r4/Patient/9");
    assert!(matches!(&sp.values[..], [SearchValue::Reference { target_type: Some(t), id, .. }] if t == "Patient" && id == "9"));
    let sp = one("Observation", "subject", "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0");
    assert!(matches!(&sp.values[..], [SearchValue::Reference { target_type: None, id, .. }] if id.is_empty()));
    assert!(matches!(q("Observation", &[("subject:Medication", "1")]), Err(SearchError::UnsupportedModifier { .. })));
    assert!(matches!(q("Observation", &[("subject:Patient", "Group/1")]), Err(SearchError::InvalidValue { .. })));
}

#[test]
fn chains() {
    let sp = one("Observation", "subject:Patient.name", "カンジャ");
    let c = sp.chain.as_ref().unwrap();
    assert_eq!((sp.code.as_str(), c.target_type.as_str()), ("subject", "Patient"));
    assert_eq!(c.param.code, "name");
    assert!(sp.values.is_empty());
    let sp = one("Observation", "patient.birthdate", "ge1970");
    let c = sp.chain.unwrap();
    assert_eq!(c.target_type, "Patient");
    assert!(matches!(c.param.values[..], [SearchValue::Date { prefix: Prefix::Ge, .. }]));
    let sp = one("Encounter", "subject.name:exact", "患者 太郎");
    assert_eq!(sp.chain.unwrap().param.modifier, Some(Modifier::Exact));
    assert!(matches!(q("Observation", &[("patient.organization.name", "x")]), Err(SearchError::InvalidChain { .. })));
    assert!(matches!(q("Observation", &[("patient.nope", "x")]), Err(SearchError::InvalidChain { .. })));
    assert!(matches!(q("Observation", &[("code.name", "x")]), Err(SearchError::InvalidChain { .. })));
    // ambiguous: identifier exists on several targets of Observation.subject
    assert!(matches!(q("Observation", &[("subject.identifier", "x")]), Err(SearchError::InvalidChain { ref reason, .. }) if reason.contains("ambiguous")));
}

#[test]
fn result_parameters() {
    let r = q("Observation", &[
        ("_count", "50"), ("_offset", "100"), ("_sort", "-date,code,_lastUpdated"), ("_total", "accurate"),
        ("_summary", "count"), ("_elements", "id,code, valueQuantity"), ("_include", "Observation:patient"),
        ("_include:iterate", "Observation:subject:Patient"), ("_revinclude", "Provenance:target"), ("_format", "json"),
    ]).unwrap();
    assert_eq!((r.count, r.offset), (50, 100));
    assert_eq!(r.sort, [
        SortKey { code: "date".into(), param_type: ParamType::Date, descending: true },
        SortKey { code: "code".into(), param_type: ParamType::Token, descending: false },
        SortKey { code: "_lastUpdated".into(), param_type: ParamType::Date, descending: false },
    ]);
    assert_eq!(r.total, Some(TotalMode::Accurate));
    assert_eq!(r.summary, Some(SummaryMode::Count));
    assert_eq!(r.elements, ["id", "code", "valueQuantity"]);
    assert_eq!(r.includes, [
        Include { source_type: "Observation".into(), param: "patient".into(), target_type: None, iterate: false },
        Include { source_type: "Observation".into(), param: "subject".into(), target_type: Some("Patient".into()), iterate: true },
    ]);
    assert_eq!(r.revincludes[0].source_type, "Provenance");
    assert!(r.params.is_empty());
    let d = q("Patient", &[]).unwrap();
    assert_eq!((d.count, d.offset, d.total, d.summary), (DEFAULT_COUNT, 0, None, None));
    assert_eq!(q("Patient", &[("_count", "100000")]).unwrap().count, MAX_COUNT);
    for (k, v) in [("_count", "-1"), ("_sort", "nope"), ("_total", "all"), ("_summary", "yes"), ("_include", "Observation:code"),
                   ("_include", "Observation"), ("_include", "Observation:subject:Medication"), ("_revinclude", "Nope:x")] {
        assert!(matches!(q("Observation", &[(k, v)]), Err(SearchError::InvalidResultParameter { .. })), "{k}={v}");
    }
}

#[test]
fn strict_and_lenient_handling() {
    let pairs = vec![("foo".to_string(), "1".to_string()), ("name".to_string(), "x".to_string()), ("_has".to_string(), "y".to_string())];
    let l = parse(reg(), "Patient", &pairs).unwrap();
    assert_eq!(l.ignored, ["foo", "_has"]);
    assert_eq!(l.params.len(), 1);
    let s = parse_with_handling(reg(), "Patient", &pairs, Handling::Strict);
    let e = s.unwrap_err();
    assert!(matches!(e, SearchError::UnknownParameter { ref param, .. } if param == "foo"));
    assert!(e.to_string().contains("foo"));
    assert!(matches!(parse(reg(), "Nope", &[]), Err(SearchError::UnknownResourceType(_))));
    // composite parameters are reported as unsupported
    assert!(matches!(q("Observation", &[("code-value-quantity", "x$5")]), Err(SearchError::Unsupported { .. })));
    // empty values are ignored
    assert!(q("Patient", &[("name", "")]).unwrap().params.is_empty());
    // uri
    let sp = one("ValueSet", "url", "http://jpfhir.jp/fhir/core/ValueSet/x");
    assert_eq!(sp.values, [SearchValue::Uri("http://jpfhir.jp/fhir/core/ValueSet/x".into())]);
    // JP Core gateway parameter
    let sp = one("Patient", "jp-kana-sort", "カンジャ");
    assert_eq!(sp.param_type, ParamType::String);
}
