//! Search-index extraction: resource JSON → [`IndexEntry`] rows, run by the store on every
//! create/update (FHIR R4 `search.html` — what each parameter type matches).

use super::normalize::fold_ja;
use super::value::{json_number_range, parse_date_range};
use super::{IndexEntry, IndexValue, ParamType, Registry};
use crate::fhirpath::{self, Item};
use serde_json::{Map, Value};

/// Extracts every search-index entry of `resource` for the parameters the registry defines for
/// `resource_type` (including `Resource` parameters `_id`, `_lastUpdated`, `_profile`, `_tag`,
/// `_security`, `_source`).
///
/// Input: the registry, the resource type (normally `resource["resourceType"]`), the resource
/// JSON as stored. Output: entries grouped by parameter, duplicates (same param, same value)
/// removed; order unspecified. Composite and special parameters, and `_text` / `_content`, are
/// not indexed. Never fails and never panics: values of unexpected JSON shape are skipped.
///
/// Datatype → value conversion (FHIR R4 `search.html` per type):
/// * token: Coding, CodeableConcept (each coding; `text` as display-only entry with empty code),
///   Identifier (`system|value`, display = `type.text`), ContactPoint (`system` code | `value`),
///   code/string/id/uri (no system), boolean (`true`/`false`);
/// * string: string/markdown; HumanName → `text`, `family`, each `given`, `prefix`, `suffix`, and
///   the combined family+given (folded without space, so `name=カンジャタロウ` matches); Address →
///   `text`, each `line`, `city`, `district`, `state`, `postalCode`, `country`;
/// * date: date/dateTime/instant (see [`super::value::parse_date_range`], zone-less values in
///   Asia/Tokyo), Period (`start`..`end`, open ends `i64::MIN`/`MAX`), Timing (`event`s and
///   `repeat.boundsPeriod`);
/// * reference: Reference (`Type/id`, absolute `…/Type/id[/_history/n]`, `urn:uuid:`, `#local`;
///   References with only `identifier`/`display` are not indexed), canonical / uri strings (url
///   only), an inline resource (`Bundle.entry[0].resource` → `Type/id`);
/// * quantity: Quantity and its profiles (Age, Duration, …), Money (system
///   `urn:iso:std:iso:4217`), Range (`low`..`high`);
/// * number: JSON numbers; uri: strings.
pub fn extract(registry: &Registry, resource_type: &str, resource: &Value) -> Vec<IndexEntry> {
    let mut out: Vec<IndexEntry> = Vec::new();
    let mut vals: Vec<IndexValue> = Vec::new();
    // In parameter-code order: the registry's maps are hashed (their order differs per process), and the
    // store interns (type, parameter) keys in order of first use — a fixed order keeps a store's ids
    // independent of the process that wrote it.
    let root = fhirpath::Root::new(resource);
    let params = registry.params_sorted(resource_type);
    for p in params.iter() {
        let Some(expr) = p.compiled else { continue };
        if matches!(p.def.param_type, ParamType::Composite | ParamType::Special) {
            continue;
        }
        // a direct navigation plan for plain paths, the general evaluator otherwise (same result)
        let items = expr.evaluate_root(&root);
        if items.is_empty() {
            continue;
        }
        vals.clear();
        for item in &items {
            convert(p.def.param_type, item, &mut vals);
        }
        // first occurrence of each value, in order; the values move into the entries (no clone)
        let start = out.len();
        for v in vals.drain(..) {
            if !out[start..].iter().any(|e| e.value == v) {
                out.push(IndexEntry { param: p.def.code.clone(), value: v });
            }
        }
    }
    out
}

/// Converts one FHIRPath result item to index values of `ty` (appends 0..n values).
fn convert(ty: ParamType, item: &Item<'_>, out: &mut Vec<IndexValue>) {
    let v: &Value = &item.value;
    match ty {
        ParamType::Token => token(v, out),
        ParamType::String => string(v, out),
        ParamType::Date => date(v, item.type_name, out),
        ParamType::Reference => reference(v, out),
        ParamType::Quantity => quantity(v, out),
        ParamType::Number => {
            if let Value::Number(n) = v {
                if let Some((value, lo, hi)) = json_number_range(n) {
                    out.push(IndexValue::Number { value, lo, hi });
                }
            }
        }
        ParamType::Uri => {
            if let Value::String(s) = v {
                out.push(IndexValue::Uri(s.clone()));
            }
        }
        ParamType::Composite | ParamType::Special => {}
    }
}

fn s<'v>(o: &'v Map<String, Value>, k: &str) -> Option<&'v str> {
    o.get(k).and_then(Value::as_str)
}

fn folded_opt(x: Option<&str>) -> Option<String> {
    x.filter(|t| !t.is_empty()).map(fold_ja)
}

const CONTACT_SYSTEMS: &[&str] = &["phone", "fax", "email", "pager", "url", "sms", "other"];

fn coding(o: &Map<String, Value>, out: &mut Vec<IndexValue>) {
    if let Some(code) = s(o, "code") {
        out.push(IndexValue::Token {
            system: s(o, "system").map(str::to_string),
            code: code.to_string(),
            display: folded_opt(s(o, "display")),
        });
    }
}

fn token(v: &Value, out: &mut Vec<IndexValue>) {
    match v {
        Value::String(x) => out.push(IndexValue::Token { system: None, code: x.clone(), display: None }),
        Value::Bool(b) => out.push(IndexValue::Token { system: None, code: b.to_string(), display: None }),
        Value::Number(n) => out.push(IndexValue::Token { system: None, code: n.to_string(), display: None }),
        Value::Object(o) => {
            if let Some(Value::Array(codings)) = o.get("coding") {
                // CodeableConcept
                for c in codings {
                    if let Value::Object(c) = c {
                        coding(c, out);
                    }
                }
                if let Some(t) = folded_opt(s(o, "text")) {
                    out.push(IndexValue::Token { system: None, code: String::new(), display: Some(t) });
                }
            } else if let Some(value) = s(o, "value") {
                // Identifier or ContactPoint
                let system = s(o, "system");
                let is_contact = system.is_some_and(|x| CONTACT_SYSTEMS.contains(&x))
                    && !o.contains_key("type")
                    && !o.contains_key("assigner");
                let display = if is_contact {
                    None
                } else {
                    o.get("type").and_then(|t| {
                        folded_opt(t.get("text").and_then(Value::as_str)).or_else(|| {
                            folded_opt(t.pointer("/coding/0/display").and_then(Value::as_str))
                        })
                    })
                };
                out.push(IndexValue::Token { system: system.map(str::to_string), code: value.to_string(), display });
            } else if o.contains_key("code") {
                coding(o, out);
            } else if let Some(t) = folded_opt(s(o, "text")) {
                // CodeableConcept with text only
                out.push(IndexValue::Token { system: None, code: String::new(), display: Some(t) });
            }
        }
        _ => {}
    }
}

fn push_string(x: &str, out: &mut Vec<IndexValue>) {
    if !x.is_empty() {
        out.push(IndexValue::String { exact: x.to_string(), normalized: fold_ja(x) });
    }
}

fn strings_of<'v>(o: &'v Map<String, Value>, k: &str) -> impl Iterator<Item = &'v str> {
    let v = o.get(k);
    let (one, many) = match v {
        Some(Value::String(x)) => (Some(x.as_str()), None),
        Some(Value::Array(a)) => (None, Some(a.iter().filter_map(Value::as_str))),
        _ => (None, None),
    };
    one.into_iter().chain(many.into_iter().flatten())
}

fn string(v: &Value, out: &mut Vec<IndexValue>) {
    match v {
        Value::String(x) => push_string(x, out),
        Value::Object(o) => {
            let is_name = ["family", "given", "prefix", "suffix"].iter().any(|k| o.contains_key(*k));
            let is_address = ["line", "city", "district", "state", "postalCode", "country"]
                .iter()
                .any(|k| o.contains_key(*k));
            if let Some(t) = s(o, "text") {
                push_string(t, out);
            }
            if is_name {
                let family = s(o, "family").unwrap_or("");
                for k in ["family", "given", "prefix", "suffix"] {
                    for part in strings_of(o, k) {
                        push_string(part, out);
                    }
                }
                let given: Vec<&str> = strings_of(o, "given").collect();
                if !family.is_empty() && !given.is_empty() {
                    // family name first (Japanese order) and given first (Western order)
                    let g = given.join(" ");
                    for exact in [format!("{family} {g}"), format!("{g} {family}")] {
                        push_string(&exact, out);
                    }
                }
            } else if is_address {
                for k in ["line", "city", "district", "state", "postalCode", "country"] {
                    for part in strings_of(o, k) {
                        push_string(part, out);
                    }
                }
            }
        }
        _ => {}
    }
}

fn date(v: &Value, type_name: Option<&str>, out: &mut Vec<IndexValue>) {
    match v {
        Value::String(x) => {
            if let Some((lo_ms, hi_ms)) = parse_date_range(x) {
                out.push(IndexValue::Date { lo_ms, hi_ms });
            }
        }
        Value::Object(o) => {
            if o.contains_key("start") || o.contains_key("end") {
                period(o, out);
            } else if type_name.is_none_or(|t| t == "Timing") {
                for e in strings_of(o, "event") {
                    if let Some((lo_ms, hi_ms)) = parse_date_range(e) {
                        out.push(IndexValue::Date { lo_ms, hi_ms });
                    }
                }
                if let Some(Value::Object(b)) = o.get("repeat").and_then(|r| r.get("boundsPeriod")) {
                    period(b, out);
                }
            }
        }
        _ => {}
    }
}

fn period(o: &Map<String, Value>, out: &mut Vec<IndexValue>) {
    let lo = s(o, "start").and_then(parse_date_range).map(|r| r.0);
    let hi = s(o, "end").and_then(parse_date_range).map(|r| r.1);
    if lo.is_some() || hi.is_some() {
        out.push(IndexValue::Date { lo_ms: lo.unwrap_or(i64::MIN), hi_ms: hi.unwrap_or(i64::MAX) });
    }
}

/// Splits a literal reference into (type, id): `Patient/1`, `https://h/fhir/Patient/1`,
/// `Patient/1/_history/2`. `None` for `urn:`, `#local`, or URLs not ending in `Type/id`.
pub(crate) fn split_reference(r: &str) -> Option<(&str, &str)> {
    if r.starts_with('#') || r.starts_with("urn:") {
        return None;
    }
    let r = match r.find("/_history/") {
        Some(p) => &r[..p],
        None => r,
    };
    let (rest, id) = r.rsplit_once('/')?;
    let ty = rest.rsplit('/').next()?;
    let ok_ty = ty.starts_with(|c: char| c.is_ascii_uppercase()) && ty.chars().all(|c| c.is_ascii_alphanumeric());
    let ok_id = !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (ok_ty && ok_id).then_some((ty, id))
}

fn reference(v: &Value, out: &mut Vec<IndexValue>) {
    match v {
        Value::Object(o) => {
            if let (Some(rt), Some(id)) = (s(o, "resourceType"), s(o, "id")) {
                // a resource itself (e.g. `Bundle.entry[0].resource` for Bundle `composition`)
                let url = format!("{rt}/{id}");
                out.push(IndexValue::Reference { target_type: Some(rt.to_string()), target_id: id.to_string(), url });
                return;
            }
            let Some(r) = s(o, "reference") else { return };
            let (target_type, target_id) = match split_reference(r) {
                Some((t, id)) => (Some(t.to_string()), id.to_string()),
                None => (
                    s(o, "type").filter(|_| !r.starts_with('#')).map(|t| t.rsplit('/').next().unwrap_or(t).to_string()),
                    String::new(),
                ),
            };
            out.push(IndexValue::Reference { target_type, target_id, url: r.to_string() });
        }
        Value::String(c) => out.push(IndexValue::Reference { target_type: None, target_id: String::new(), url: c.clone() }),
        _ => {}
    }
}

fn quantity(v: &Value, out: &mut Vec<IndexValue>) {
    let Value::Object(o) = v else { return };
    if let Some(Value::Number(n)) = o.get("value") {
        let Some((value, lo, hi)) = json_number_range(n) else { return };
        if let Some(cur) = s(o, "currency") {
            out.push(IndexValue::Quantity {
                value,
                lo,
                hi,
                system: Some("urn:iso:std:iso:4217".into()),
                code: Some(cur.to_string()),
                unit: None,
            });
        } else {
            out.push(IndexValue::Quantity {
                value,
                lo,
                hi,
                system: s(o, "system").map(str::to_string),
                code: s(o, "code").map(str::to_string),
                unit: s(o, "unit").map(str::to_string),
            });
        }
        return;
    }
    // Range
    let low = o.get("low").and_then(Value::as_object);
    let high = o.get("high").and_then(Value::as_object);
    let rng = |q: Option<&Map<String, Value>>| match q.and_then(|q| q.get("value")) {
        Some(Value::Number(n)) => json_number_range(n),
        _ => None,
    };
    let (l, h) = (rng(low), rng(high));
    if l.is_none() && h.is_none() {
        return;
    }
    let unit_src = if l.is_some() { low } else { high };
    let Some(q) = unit_src else { return };
    out.push(IndexValue::Quantity {
        value: l.or(h).map(|x| x.0).unwrap_or(0.0),
        lo: l.map(|x| x.1).unwrap_or(f64::NEG_INFINITY),
        hi: h.map(|x| x.2).unwrap_or(f64::INFINITY),
        system: s(q, "system").map(str::to_string),
        code: s(q, "code").map(str::to_string),
        unit: s(q, "unit").map(str::to_string),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reg() -> &'static Registry {
        static R: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
        R.get_or_init(Registry::standard)
    }

    fn of<'e>(es: &'e [IndexEntry], p: &str) -> Vec<&'e IndexValue> {
        es.iter().filter(|e| e.param == p).map(|e| &e.value).collect()
    }

    fn normalized(es: &[IndexEntry], p: &str) -> Vec<String> {
        of(es, p)
            .into_iter()
            .filter_map(|v| match v {
                IndexValue::String { normalized, .. } => Some(normalized.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn japanese_patient() {
        let p = json!({"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"2024-05-01T10:00:00+09:00"},
            "identifier":[{"system":"urn:oid:1.2.392.100495.20.3.51.11311234567","value":"00000010"}],
            "name":[{"use":"official","family":"患者","given":["太郎"],"text":"患者 太郎"},
                    {"use":"official","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation","valueCode":"SYL"}],
                     "family":"カンジャ","given":["タロウ"],"text":"カンジャ タロウ"}],
            "telecom":[{"system":"phone","value":"0312345678"}],
            "gender":"male","birthDate":"1970-01-01","active":true,
            "address":[{"text":"東京都新宿区","postalCode":"1600000","city":"新宿区","state":"東京都"}]});
        let es = extract(reg(), "Patient", &p);
        let names = normalized(&es, "name");
        for want in ["患者", "太郎", "患者太郎", "カンジャタロウ", "タロウカンジャ", "カンジャ"] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert!(names.iter().any(|n| n.starts_with(&fold_ja("かんじゃ"))));
        assert_eq!(of(&es, "_id"), [&IndexValue::Token { system: None, code: "p1".into(), display: None }]);
        assert_eq!(of(&es, "gender").len(), 1);
        assert!(of(&es, "phone").contains(&&IndexValue::Token { system: Some("phone".into()), code: "0312345678".into(), display: None }));
        assert!(matches!(of(&es, "birthdate")[..], [IndexValue::Date { lo_ms: -32_400_000, hi_ms: 53_999_999 }]));
        assert_eq!(of(&es, "active"), [&IndexValue::Token { system: None, code: "true".into(), display: None }]);
        assert!(!normalized(&es, "address").is_empty());
        assert_eq!(of(&es, "_lastUpdated").len(), 1);
        assert!(of(&es, "identifier").iter().any(|v| matches!(v, IndexValue::Token { code, .. } if code == "00000010")));
    }

    #[test]
    fn observation_values() {
        let o = json!({"resourceType":"Observation","status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body Weight"}],"text":"体重"},
            "subject":{"reference":"Patient/example"},
            "effectivePeriod":{"start":"2024-01-05T10:00:00+09:00"},
            "valueQuantity":{"value":1.50,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}});
        let es = extract(reg(), "Observation", &o);
        assert!(of(&es, "code").contains(&&IndexValue::Token {
            system: Some("http://loinc.org".into()), code: "29463-7".into(), display: Some("bodyweight".into())
        }));
        assert!(of(&es, "subject").contains(&&IndexValue::Reference {
            target_type: Some("Patient".into()), target_id: "example".into(), url: "Patient/example".into()
        }));
        assert_eq!(of(&es, "patient").len(), 1);
        match of(&es, "date")[..] {
            [IndexValue::Date { lo_ms, hi_ms }] => {
                assert_eq!(*hi_ms, i64::MAX);
                assert_eq!(*lo_ms, 1_704_416_400_000);
            }
            ref other => panic!("{other:?}"),
        }
        match of(&es, "value-quantity")[..] {
            [IndexValue::Quantity { value, lo, hi, code, .. }] => {
                assert_eq!(*value, 1.5);
                assert!((lo - 1.45).abs() < 1e-9 && (hi - 1.55).abs() < 1e-9);
                assert_eq!(code.as_deref(), Some("kg"));
            }
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn odd_input_never_panics() {
        for v in [json!(null), json!([]), json!("x"), json!({"resourceType":"Patient","name":"oops","birthDate":5,
            "identifier":{"value":3},"telecom":[null,1,{"value":{}}],"meta":{"lastUpdated":"garbage"}}),
            json!({"resourceType":"Observation","valueQuantity":{"value":"1"},"effectivePeriod":{"start":7},
            "subject":{"reference":7},"component":[{"valueRange":{"low":{"value":1}}}]})] {
            for t in ["Patient", "Observation", "Nope"] {
                let _ = extract(reg(), t, &v);
            }
        }
        assert!(split_reference("urn:uuid:abc").is_none());
        assert_eq!(split_reference("http://x/fhir/Patient/1/_history/2"), Some(("Patient", "1")));
    }
}
