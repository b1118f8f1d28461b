//! Search-index extraction over the official FHIR R4 examples and the JP-CLINS examples:
//! nothing panics, and the values a clinician would search by are indexed.

use serde_json::Value;
use std::sync::OnceLock;
use tobiume_gateway::search::index::extract;
use tobiume_gateway::search::normalize::fold_ja;
use tobiume_gateway::search::query::parse;
use tobiume_gateway::search::*;

const R4_EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/standards/fhir-r4/examples");
const CLINS_EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/standards/jp-clins/ExampleJson");

fn reg() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::standard)
}

fn load(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn index_of(res: &Value) -> Vec<IndexEntry> {
    let rt = res["resourceType"].as_str().unwrap();
    extract(reg(), rt, res)
}

fn values<'e>(es: &'e [IndexEntry], p: &str) -> Vec<&'e IndexValue> {
    es.iter().filter(|e| e.param == p).map(|e| &e.value).collect()
}

/// The default string match (`search.html#string`): folded index value starts with the folded
/// query value.
fn string_matches(es: &[IndexEntry], rt: &str, param: &str, query: &str) -> bool {
    let q = parse(reg(), rt, &[(param.to_string(), query.to_string())]).unwrap();
    let SearchValue::String { normalized: want, .. } = &q.params[0].values[0] else { panic!("not a string param") };
    values(es, param).iter().any(|v| matches!(v, IndexValue::String { normalized, .. } if normalized.starts_with(want.as_str())))
}

fn each_resource(v: &Value, f: &mut dyn FnMut(&Value)) {
    f(v);
    if let Some(entries) = v.get("entry").and_then(Value::as_array) {
        for e in entries {
            if let Some(r) = e.get("resource").filter(|r| r.get("resourceType").is_some()) {
                each_resource(r, f);
            }
        }
    }
    if let Some(cs) = v.get("contained").and_then(Value::as_array) {
        for c in cs {
            f(c);
        }
    }
}

#[test]
fn every_r4_example_indexes_without_panic() {
    let mut files = 0;
    let mut resources = 0;
    let mut entries = 0;
    let mut by_type = std::collections::HashMap::<ParamType, usize>::new();
    for f in std::fs::read_dir(R4_EXAMPLES).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&std::fs::read_to_string(&p).unwrap()) else { continue };
        files += 1;
        each_resource(&v, &mut |r| {
            if let Some(rt) = r.get("resourceType").and_then(Value::as_str) {
                resources += 1;
                let es = extract(reg(), rt, r);
                entries += es.len();
                for e in &es {
                    let t = match e.value {
                        IndexValue::Token { .. } => ParamType::Token,
                        IndexValue::String { .. } => ParamType::String,
                        IndexValue::Date { lo_ms, hi_ms } => {
                            assert!(lo_ms <= hi_ms, "{}: {} {lo_ms} > {hi_ms}", p.display(), e.param);
                            ParamType::Date
                        }
                        IndexValue::Reference { .. } => ParamType::Reference,
                        IndexValue::Quantity { lo, hi, .. } => {
                            assert!(lo <= hi, "{}", p.display());
                            ParamType::Quantity
                        }
                        IndexValue::Number { .. } => ParamType::Number,
                        IndexValue::Uri(_) => ParamType::Uri,
                    };
                    *by_type.entry(t).or_default() += 1;
                }
            }
        });
    }
    assert!(files > 2800, "{files}");
    assert!(entries > 50_000, "{entries} entries from {resources} resources");
    for t in [ParamType::Token, ParamType::String, ParamType::Date, ParamType::Reference, ParamType::Quantity, ParamType::Number, ParamType::Uri] {
        assert!(by_type.get(&t).copied().unwrap_or(0) > 0, "no {t:?} entries: {by_type:?}");
    }
    eprintln!("{files} files, {resources} resources, {entries} entries: {by_type:?}");
}

#[test]
fn r4_patient_example() {
    let p = load(&format!("{R4_EXAMPLES}/patient-example.json"));
    let es = index_of(&p);
    assert!(string_matches(&es, "Patient", "name", "peter"));
    assert!(string_matches(&es, "Patient", "name", "Chalm"));
    assert!(string_matches(&es, "Patient", "family", "chalmers"));
    assert!(!string_matches(&es, "Patient", "name", "halmers"));
    assert!(string_matches(&es, "Patient", "address-city", "PleasantVille"));
    assert!(values(&es, "identifier").contains(&&IndexValue::Token {
        system: Some("urn:oid:1.2.36.146.595.217.0.1".into()),
        code: "12345".into(),
        display: None,
    }) || values(&es, "identifier").iter().any(|v| matches!(v, IndexValue::Token { code, .. } if code == "12345")));
    assert!(values(&es, "gender").contains(&&IndexValue::Token { system: None, code: "male".into(), display: None }));
    assert!(values(&es, "organization").iter().any(|v| matches!(v,
        IndexValue::Reference { target_type: Some(t), target_id, .. } if t == "Organization" && target_id == "1")));
    // 1974-12-25 (Asia/Tokyo day)
    assert!(values(&es, "birthdate").iter().any(|v| matches!(v, IndexValue::Date { lo_ms: 157_129_200_000, hi_ms: 157_215_599_999 })));
    assert!(values(&es, "phone").iter().any(|v| matches!(v, IndexValue::Token { code, .. } if code == "(03) 5555 6473")));
    assert!(values(&es, "_id").contains(&&IndexValue::Token { system: None, code: "example".into(), display: None }));
}

#[test]
fn r4_observation_example() {
    let o = load(&format!("{R4_EXAMPLES}/observation-example.json"));
    let es = index_of(&o);
    assert!(values(&es, "code").iter().any(|v| matches!(v,
        IndexValue::Token { system: Some(s), code, .. } if s == "http://loinc.org" && code == "29463-7")));
    let q: Vec<_> = values(&es, "value-quantity");
    assert_eq!(q.len(), 1, "{q:?}");
    match q[0] {
        IndexValue::Quantity { value, lo, hi, system, code, unit } => {
            assert_eq!(*value, 185.0);
            assert!(*lo <= 185.0 && *hi > 185.0);
            assert_eq!(system.as_deref(), Some("http://unitsofmeasure.org"));
            assert_eq!(code.as_deref(), Some("[lb_av]"));
            assert_eq!(unit.as_deref(), Some("lbs"));
        }
        other => panic!("{other:?}"),
    }
    assert!(values(&es, "subject").iter().any(|v| matches!(v,
        IndexValue::Reference { target_type: Some(t), target_id, .. } if t == "Patient" && target_id == "example")));
    assert_eq!(values(&es, "patient").len(), 1);
    // effectiveDateTime 2016-03-28 (no zone → Asia/Tokyo)
    assert!(matches!(values(&es, "date")[..], [IndexValue::Date { .. }]));
    assert!(values(&es, "category").iter().any(|v| matches!(v, IndexValue::Token { code, .. } if code == "vital-signs")));
    // combo-code covers code and component codes
    assert!(!values(&es, "combo-code").is_empty());
}

#[test]
fn decimal_precision_is_kept_from_json_text() {
    let o: Value = serde_json::from_str(
        r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},
            "valueQuantity":{"value":1.50,"system":"http://unitsofmeasure.org","code":"mg"}}"#,
    )
    .unwrap();
    let es = index_of(&o);
    match values(&es, "value-quantity")[..] {
        [IndexValue::Quantity { value, lo, hi, .. }] => {
            assert_eq!(*value, 1.5);
            assert!((lo - 1.495).abs() < 1e-12 && (hi - 1.505).abs() < 1e-12, "{lo} {hi}");
        }
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn jp_clins_examples_and_japanese_names() {
    let mut patients = 0;
    for f in std::fs::read_dir(CLINS_EXAMPLES).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        each_resource(&v, &mut |r| {
            let es = index_of(r);
            if r["resourceType"] == "Patient" {
                patients += 1;
                // every kana (SYL) name is searchable in hiragana, half-width kana, with or without space
                for n in r["name"].as_array().into_iter().flatten() {
                    let is_syl = n["extension"][0]["valueCode"] == "SYL";
                    let (Some(fam), Some(giv)) = (n["family"].as_str(), n["given"][0].as_str()) else { continue };
                    assert!(string_matches(&es, "Patient", "name", &format!("{fam} {giv}")), "{}", p.display());
                    assert!(string_matches(&es, "Patient", "name", &format!("{fam}{giv}")), "{}", p.display());
                    if is_syl {
                        let hira: String = fold_ja(fam)
                            .chars()
                            .map(|c| if ('\u{30a1}'..='\u{30f6}').contains(&c) { char::from_u32(c as u32 - 0x60).unwrap() } else { c })
                            .collect();
                        assert!(string_matches(&es, "Patient", "name", &hira), "{hira} {}", p.display());
                        assert!(string_matches(&es, "Patient", "family", &hira), "{hira} {}", p.display());
                    }
                }
            }
        });
    }
    assert!(patients >= 3, "{patients}");

    let m = load(&format!("{CLINS_EXAMPLES}/Patient-Example-JP-Patient-eCS-MAKINO.json"));
    let es = index_of(&m);
    for q in ["牧野", "牧野 爛漫", "牧野爛漫", "マキノ ランマン", "まきの", "まきのらんまん", "ﾏｷﾉ ﾗﾝﾏﾝ", "マキノ　ランマン", "らんまん"] {
        assert!(string_matches(&es, "Patient", "name", q), "{q}");
    }
    assert!(!string_matches(&es, "Patient", "name", "やまだ"));
}

#[test]
#[ignore = "timing; run with `cargo test --release --test search_extract -- --ignored --nocapture`"]
fn extraction_timing() {
    let reg = reg();
    for (rt, file) in [("Patient", format!("{R4_EXAMPLES}/patient-example.json")), ("Observation", format!("{R4_EXAMPLES}/observation-example.json")),
                       ("Patient", format!("{CLINS_EXAMPLES}/Patient-Example-JP-Patient-eCS-MAKINO.json"))] {
        let v = load(&file);
        let _ = extract(reg, rt, &v);
        let n = 2000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(extract(reg, rt, std::hint::black_box(&v)));
        }
        eprintln!("{rt} {}: {:?} per extract", file.rsplit('/').next().unwrap(), t.elapsed() / n);
    }
}
