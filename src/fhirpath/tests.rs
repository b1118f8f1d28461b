use super::*;
use serde_json::json;

fn strings(expr: &str, res: &Value) -> Vec<String> {
    let e = parse(expr).unwrap_or_else(|err| panic!("{expr}: {err}"));
    evaluate(&e, res)
        .into_iter()
        .map(|i| match &*i.value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn obs() -> Value {
    json!({"resourceType":"Observation","id":"o1",
        "code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},
        "subject":{"reference":"Patient/p1"},
        "valueQuantity":{"value":185,"unit":"lbs","system":"http://unitsofmeasure.org","code":"[lb_av]"},
        "component":[{"code":{"text":"a"},"valueString":"x"},{"code":{"text":"b"},"valueQuantity":{"value":1}}],
        "contained":[{"resourceType":"Patient","id":"c1"}],
        "performer":[{"reference":"#c1"},{"reference":"https://ex.org/fhir/Practitioner/9/_history/2"}]})
}

#[test]
fn paths_and_choice_types() {
    let o = obs();
    assert_eq!(strings("Observation.code.coding.code", &o), ["29463-7"]);
    assert_eq!(strings("Patient.name", &o), Vec::<String>::new());
    assert_eq!(
        strings("Observation.value.ofType(Quantity).code", &o),
        ["[lb_av]"]
    );
    assert_eq!(strings("(Observation.value as Quantity).unit", &o), ["lbs"]);
    assert_eq!(strings("Observation.value.as(Quantity).value", &o), ["185"]);
    assert_eq!(
        strings("Observation.value.ofType(string)", &o),
        Vec::<String>::new()
    );
    assert_eq!(
        strings("Observation.component.value.ofType(string)", &o),
        ["x"]
    );
    assert_eq!(strings("Observation.component[1].code.text", &o), ["b"]);
    assert_eq!(strings("Observation.id.value", &o), ["o1"]);
    assert_eq!(strings("Resource.id | DomainResource.id", &o), ["o1"]);
}

#[test]
fn where_resolve_and_logic() {
    let o = obs();
    assert_eq!(
        strings(
            "Observation.subject.where(resolve() is Patient).reference",
            &o
        ),
        ["Patient/p1"]
    );
    assert_eq!(
        strings(
            "Observation.performer.where(resolve() is Patient).reference",
            &o
        ),
        ["#c1"]
    );
    assert_eq!(
        strings(
            "Observation.performer.where(resolve() is Practitioner).reference",
            &o
        )
        .len(),
        1
    );
    assert_eq!(
        strings(
            "Observation.component.where(code.text = 'b' or code.text = 'z').value.value",
            &o
        ),
        ["1"]
    );
    assert_eq!(
        strings(
            "Observation.component.where(code.text != 'b').code.text",
            &o
        ),
        ["a"]
    );
    assert_eq!(
        strings(
            "Observation.component.exists() and Observation.id = 'o1'",
            &o
        ),
        ["true"]
    );
    assert_eq!(
        strings("Observation.component.first().code.text", &o),
        ["a"]
    );
    let p = json!({"resourceType":"Patient","deceasedBoolean":false,
        "extension":[{"url":"http://x/ext","valueString":"v"}]});
    assert_eq!(
        strings(
            "Patient.deceased.exists() and Patient.deceased != false",
            &p
        ),
        ["false"]
    );
    let p2 = json!({"resourceType":"Patient","deceasedDateTime":"2020"});
    assert_eq!(
        strings(
            "Patient.deceased.exists() and Patient.deceased != false",
            &p2
        ),
        ["true"]
    );
    assert_eq!(
        strings("Patient.extension('http://x/ext').value", &p),
        ["v"]
    );
    assert_eq!(
        strings(
            "Patient.extension.where(url='http://x/ext').value.ofType(string)",
            &p
        ),
        ["v"]
    );
}

#[test]
fn errors() {
    assert!(matches!(
        parse("Patient.conformsTo('x')"),
        Err(FhirPathError::UnsupportedFunction(_))
    ));
    assert!(parse("Patient.name.memberOf('x')").is_ok());
    assert!(matches!(
        parse("Patient.name.where("),
        Err(FhirPathError::Syntax { .. })
    ));
    assert!(matches!(parse("'abc"), Err(FhirPathError::Lex { .. })));
    assert!(parse("Patient.name | Patient.address").is_ok());
}

#[test]
fn every_r4_search_parameter_expression_parses() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conformance/searchparameters/search-parameters.json"
    ))
    .unwrap();
    let b: Value = serde_json::from_str(&text).unwrap();
    let mut failed = Vec::new();
    let mut n = 0;
    for e in b["entry"].as_array().unwrap() {
        if let Some(x) = e["resource"]["expression"].as_str() {
            n += 1;
            if let Err(err) = parse(x) {
                failed.push(format!("{}: {err}", e["resource"]["id"]));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {n} failed: {failed:#?}",
        failed.len()
    );
}

fn eval1(expr: &str, res: &Value) -> Result<Vec<Value>, FhirPathError> {
    let e = parse(expr)?;
    try_evaluate(&e, res).map(|r| r.into_iter().map(|i| i.value.into_owned()).collect())
}

#[test]
fn errors_are_results_not_panics() {
    let p = json!({"resourceType":"Patient","name":[{"given":["a"]},{"given":["b"]}]});
    assert!(matches!(
        eval1("'a' - 1", &p),
        Err(FhirPathError::Evaluation(_))
    ));
    assert!(matches!(
        eval1("Patient.name.single()", &p),
        Err(FhirPathError::Evaluation(_))
    ));
    assert!(matches!(
        eval1("Patient.name.given.startsWith('a')", &p),
        Err(FhirPathError::Evaluation(_))
    ));
    assert!(matches!(
        eval1("Patient.name.as(HumanName)", &p),
        Err(FhirPathError::Evaluation(_))
    ));
    // the search-facing API stays lenient: `as` on several items filters
    let e = parse("Patient.name.as(HumanName).given").unwrap();
    assert_eq!(evaluate(&e, &p).len(), 2);
    assert!(evaluate(&parse("'a' - 1").unwrap(), &p).is_empty());
}

#[test]
fn exact_decimals_quantities_dates() {
    let r = json!({"resourceType":"Basic"});
    let t = |x: &str| eval1(x, &r).unwrap_or_else(|e| panic!("{x}: {e}"));
    assert_eq!(t("0.1 + 0.2 = 0.3"), [json!(true)]);
    assert_eq!(
        t("(1.2 / 1.8).round(2)"),
        [serde_json::from_str::<Value>("0.67").unwrap()]
    );
    assert_eq!(t("1 'kg' = 1000 'g'"), [json!(true)]);
    assert_eq!(t("1000 'mL' = 1 'L'"), [json!(true)]);
    assert_eq!(t("2 'h' = 120 'min'"), [json!(true)]);
    assert_eq!(t("1 year = 1 'a'"), Vec::<Value>::new());
    assert_eq!(t("@2024-01-31 + 1 month"), [json!("2024-02-29")]);
    assert_eq!(t("@2024-01 = @2024-01-05"), Vec::<Value>::new());
    assert_eq!(
        t("@2024-01-05T10:00+09:00 = @2024-01-05T01:00Z"),
        [json!(true)]
    );
}

#[test]
fn primitive_extensions_and_bundle_resolve() {
    let p = json!({"resourceType":"Patient","birthDate":"1974-12-25",
        "_birthDate":{"extension":[{"url":"http://x/bt","valueDateTime":"1974-12-25T14:35:45-05:00"}]},
        "name":[{"given":["Jim",null],"_given":[null,{"extension":[{"url":"http://x/e","valueString":"v"}]}]}]});
    assert_eq!(
        eval1(
            "Patient.birthDate.extension('http://x/bt').value is dateTime",
            &p
        )
        .unwrap(),
        [json!(true)]
    );
    assert_eq!(eval1("Patient.name.given.count()", &p).unwrap(), [json!(2)]);
    assert_eq!(
        eval1("Patient.name.given.select(hasValue())", &p).unwrap(),
        [json!(true), json!(false)]
    );
    let b = json!({"resourceType":"Bundle","type":"collection","entry":[
        {"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","id":"p","gender":"male"}},
        {"fullUrl":"urn:uuid:2","resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:1"},
            "performer":[{"reference":"Patient/p"}]}}]});
    assert_eq!(
        eval1(
            "Bundle.entry.resource.ofType(Observation).subject.resolve().gender",
            &b
        )
        .unwrap(),
        [json!("male")]
    );
    assert_eq!(
        eval1(
            "Bundle.entry.resource.ofType(Observation).performer.resolve().id",
            &b
        )
        .unwrap(),
        [json!("p")]
    );
}
