//! Finding a patient (`docs/domain.md` §1.2) on SQLite and PostgreSQL: by the Tobiume-net card id
//! (`Patient?identifier=<system>|<card id>`), by kana or kanji name + birth date tolerant to
//! hiragana/katakana, full/half width, spaces, long-vowel spellings and small kana, and by
//! `Patient/$match` (FHIR R4 §Patient-match / IHE PDQm ITI-119) with scores and match grades.

#[macro_use]
#[path = "common/api_support.rs"]
mod support;
mod register_support;

use register_support::{ids, ohno, pct, person, yuko, CARD};
use serde_json::{json, Value};
use support::{App, Db};

async fn seed(a: &App) {
    for form in [
        ohno("TB-1"),
        yuko("TB-2"),
        // same birth date as 大野 翔平, another person (must never be found by his name)
        person("TB-3", ("オノ", "ショウタ"), ("小野", "翔太"), "1950-05-05", "male", "福岡県北九州市八幡西区1-1"),
        // same name as 梅野 優子, another birth date
        person("TB-4", ("ウメノ", "ユウコ"), ("梅野", "裕子"), "1970-01-01", "female", "福岡県久留米市1-1"),
    ] {
        let r = a.send("POST", "/fhir/Patient/$register", &[("content-type", "application/json")], form.to_string()).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
}

async fn find(a: &App, name: &str, birth: &str) -> Vec<String> {
    let r = a.get(&format!("/fhir/Patient?name={}&birthdate={birth}", pct(name))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut v = ids(&r.json());
    v.sort();
    v
}

both_db!(name_and_birth_date_lookup_is_tolerant);
async fn name_and_birth_date_lookup_is_tolerant(db: Db) {
    let a = support::app(db).await;
    seed(&a).await;
    // (query as typed at the emergency hospital, registered as オオノ ショウヘイ / 大野 翔平)
    let ohno_table = [
        "オオノ ショウヘイ",   // as registered
        "オオノショウヘイ",     // without space
        "オオノ　ショウヘイ",   // ideographic space
        "おおの しょうへい",    // hiragana
        "おおのしょうへい",
        "ｵｵﾉ ｼｮｳﾍｲ",          // half-width
        "ｵｵﾉｼｮｳﾍｲ",
        "ｵｰﾉ ｼｮｰﾍｲ",          // half-width long-vowel marks
        "オーノ ショーヘイ",    // ー instead of オ/ウ
        "オーノ ショーヘー",    // ー for エイ too
        "おーの しょーへい",
        "ｼﾖｳﾍｲ",              // given name alone, large kana (old receipt systems)
        "ショウヘイ オオノ",    // given name first
        "オオノ",               // family name alone
        "ＯＯＮＯ",             // (not a reading: must not match) — checked below
        "大野 翔平",            // kanji
        "大野翔平",
        "大野　翔平",
    ];
    for q in ohno_table {
        let got = find(&a, q, "1950-05-05").await;
        if q == "ＯＯＮＯ" {
            assert!(got.is_empty(), "{q}: {got:?}");
        } else {
            assert_eq!(got, ["tobiume-TB-1"], "{q}");
        }
    }
    // オノ (小野) is another person born the same day: the long-vowel folding does not merge オノ and オオノ
    assert_eq!(find(&a, "オノ ショウタ", "1950-05-05").await, ["tobiume-TB-3"]);
    assert_eq!(find(&a, "おの", "1950-05-05").await, ["tobiume-TB-3"]);
    for q in ["ウメノ ユウコ", "うめのゆーこ", "ｳﾒﾉ ﾕｰｺ", "ウメノ　ユーコ", "梅野 優子"] {
        assert_eq!(find(&a, q, "1962-11-03").await, ["tobiume-TB-2"], "{q}");
    }
    // without the birth date the name finds both ウメノ ユウコ
    let r = a.get(&format!("/fhir/Patient?name={}", pct("うめの ゆーこ"))).await.json();
    let mut all = ids(&r);
    all.sort();
    assert_eq!(all, ["tobiume-TB-2", "tobiume-TB-4"]);
    // family / given parameters fold the same way
    let r = a.get(&format!("/fhir/Patient?family={}&birthdate=1950-05-05", pct("おーの"))).await.json();
    assert_eq!(ids(&r), ["tobiume-TB-1"]);
}

both_db!(identifier_lookup_by_card_id);
async fn identifier_lookup_by_card_id(db: Db) {
    let a = support::app(db).await;
    seed(&a).await;
    let r = a.get(&format!("/fhir/Patient?identifier={}", pct(&format!("{CARD}|TB-2")))).await;
    assert_eq!(ids(&r.json()), ["tobiume-TB-2"]);
    let r = a.get(&format!("/fhir/Patient?identifier={}", pct(&format!("{CARD}|TB-99")))).await;
    assert!(ids(&r.json()).is_empty());
    // the card id of another system does not match
    let r = a.get(&format!("/fhir/Patient?identifier={}", pct("urn:other|TB-2"))).await;
    assert!(ids(&r.json()).is_empty());
    // every registered patient
    let r = a.get(&format!("/fhir/Patient?identifier={}&_total=accurate", pct(&format!("{CARD}|")))).await.json();
    assert_eq!(r["total"], 4);
}

fn params(patient: Value, extra: &[Value]) -> String {
    let mut p = vec![json!({"name": "resource", "resource": patient})];
    p.extend(extra.iter().cloned());
    json!({"resourceType": "Parameters", "parameter": p}).to_string()
}

fn query_patient(kana: (&str, &str), birth: Option<&str>, gender: Option<&str>, address: Option<&str>) -> Value {
    let mut p = json!({"resourceType": "Patient", "name": [{"family": kana.0, "given": [kana.1]}]});
    if let Some(b) = birth {
        p["birthDate"] = json!(b);
    }
    if let Some(g) = gender {
        p["gender"] = json!(g);
    }
    if let Some(ad) = address {
        p["address"] = json!([{"text": ad}]);
    }
    p
}

/// (id, score, grade) of a `$match` response.
fn matches(b: &Value) -> Vec<(String, f64, String)> {
    assert_eq!(b["type"], "searchset", "{b}");
    b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| {
            let ext = &e["search"]["extension"][0];
            assert_eq!(ext["url"], "http://hl7.org/fhir/StructureDefinition/match-grade");
            (
                e["resource"]["id"].as_str().unwrap().to_string(),
                e["search"]["score"].as_f64().unwrap(),
                ext["valueCode"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn do_match(a: &App, body: String) -> Value {
    let r = a.json("POST", "/fhir/Patient/$match", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

both_db!(patient_match_scores_and_grades);
async fn patient_match_scores_and_grades(db: Db) {
    let a = support::app(db).await;
    seed(&a).await;
    // everything equal (hiragana, ー, address written differently): certain, 0.9 (no phone given)
    let q = query_patient(("おーの", "しょーへい"), Some("1950-05-05"), Some("male"), Some("北九州市小倉北区城内1丁目1番"));
    let m = matches(&do_match(&a, params(q, &[])).await);
    assert_eq!(m[0], ("tobiume-TB-1".into(), 0.9, "certain".into()), "{m:?}");
    // オノ ショウタ (born the same day, other name) is certainly-not: left out
    assert!(m.iter().all(|(id, _, _)| id != "tobiume-TB-3"), "{m:?}");
    assert_eq!(m.len(), 1);

    // name + birth date + sex, no address: probable
    let q = query_patient(("ウメノ", "ユーコ"), Some("1962-11-03"), Some("female"), None);
    let m = matches(&do_match(&a, params(q, &[])).await);
    assert_eq!(m[0], ("tobiume-TB-2".into(), 0.75, "probable".into()), "{m:?}");
    // the namesake born in 1970 is found through the name only when no birth date is given
    let q = query_patient(("うめの", "ゆうこ"), None, Some("female"), None);
    let m = matches(&do_match(&a, params(q, &[])).await);
    let mut found: Vec<_> = m.iter().map(|(id, s, g)| (id.as_str(), *s, g.as_str())).collect();
    found.sort_by(|x, y| x.0.cmp(y.0));
    assert_eq!(found, [("tobiume-TB-2", 0.45, "possible"), ("tobiume-TB-4", 0.45, "possible")]);

    // the card id alone: certain through the identifier
    let q = json!({"resourceType": "Patient", "identifier": [{"system": CARD, "value": "TB-4"}]});
    let m = matches(&do_match(&a, params(q, &[])).await);
    assert_eq!(m, [("tobiume-TB-4".into(), 0.6, "certain".into())]);

    // a bare Patient body is accepted too
    let q = query_patient(("オオノ", "ショウヘイ"), Some("1950-05-05"), None, None);
    let m = matches(&do_match(&a, q.to_string()).await);
    assert_eq!(m[0].0, "tobiume-TB-1");
    assert_eq!(m[0].2, "probable");

    // onlyCertainMatches: only the certain one; count limits
    let q = query_patient(("オオノ", "ショウヘイ"), Some("1950-05-05"), Some("male"), Some("福岡県北九州市小倉北区城内1-1"));
    let only = json!({"name": "onlyCertainMatches", "valueBoolean": true});
    let m = matches(&do_match(&a, params(q.clone(), std::slice::from_ref(&only))).await);
    assert_eq!(m, [("tobiume-TB-1".into(), 0.9, "certain".into())]);
    let q2 = query_patient(("ウメノ", "ユウコ"), None, None, None);
    let m = matches(&do_match(&a, params(q2.clone(), std::slice::from_ref(&only))).await);
    assert!(m.is_empty(), "probable/possible are not certain: {m:?}");
    let m = matches(&do_match(&a, params(q2, &[json!({"name": "count", "valueInteger": 1})])).await);
    assert_eq!(m.len(), 1);

    // two certain matches (a duplicate made outside the registration API) with onlyCertainMatches: none,
    // and an OperationOutcome entry says why
    let dup = json!({"resourceType": "Patient", "id": "dup-ohno", "name": [{"family": "オオノ", "given": ["ショウヘイ"]}],
        "birthDate": "1950-05-05", "gender": "male", "address": [{"text": "北九州市小倉北区城内1-1"}]});
    assert_eq!(a.json("PUT", "/fhir/Patient/dup-ohno", &dup.to_string()).await.status, 201);
    let b = do_match(&a, params(q.clone(), &[only])).await;
    assert!(matches(&b).is_empty());
    assert!(b["entry"].as_array().unwrap().iter().any(|e| e["search"]["mode"] == "outcome"
        && e["resource"]["issue"][0]["code"] == "multiple-matches"), "{b}");
    let m = matches(&do_match(&a, params(q, &[])).await);
    assert_eq!(m.len(), 2);
    assert!(m.iter().all(|(_, _, g)| g == "certain"));
}

both_db!(patient_match_rejects_bad_input);
async fn patient_match_rejects_bad_input(db: Db) {
    let a = support::app(db).await;
    let e = |v: &Value| v["issue"][0]["expression"][0].as_str().map(str::to_string);
    let v = a.json("POST", "/fhir/Patient/$match", r#"{"resourceType":"Parameters","parameter":[]}"#).await.assert_outcome(400);
    assert_eq!(e(&v).as_deref(), Some("Parameters.parameter"));
    let body = params(json!({"resourceType": "Patient", "birthDate": "1950-05-05"}), &[json!({"name": "count", "valueInteger": 0})]);
    let v = a.json("POST", "/fhir/Patient/$match", &body).await.assert_outcome(400);
    assert_eq!(e(&v).as_deref(), Some("Parameters.parameter[1].valueInteger"));
    let body = json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Observation"}}]});
    a.json("POST", "/fhir/Patient/$match", &body.to_string()).await.assert_outcome(400);
    // nothing to match on
    a.json("POST", "/fhir/Patient/$match", &params(json!({"resourceType": "Patient", "gender": "male"}), &[])).await.assert_outcome(422);
    // a structurally invalid Patient
    let v = a
        .json("POST", "/fhir/Patient/$match", &params(json!({"resourceType": "Patient", "birthDate": 1950}), &[]))
        .await
        .assert_outcome(422);
    assert!(e(&v).unwrap_or_default().contains("birthDate"), "{v}");
    a.json("POST", "/fhir/Patient/$match", "{").await.assert_outcome(400);
}
