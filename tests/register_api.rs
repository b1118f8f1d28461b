//! Registration through the REST API on SQLite and PostgreSQL: `POST /fhir/Patient/$register` with the
//! simple registration JSON (201/200, `Location`, transaction-response, `Prefer`), de-duplication (same
//! form twice — also concurrently —, same person under another card id), stale resources deleted,
//! errors with JSON paths, and (a) a FHIR transaction Bundle of `to_fhir` output read back with
//! `from_fhir`.

#[macro_use]
#[path = "common/api_support.rs"]
mod support;
mod register_support;

use register_support::{example, ids, ohno, pct, person, yuko, CARD};
use serde_json::{json, Value};
use support::{App, Db};
use tobiume_gateway::mapping::registration::{from_fhir, to_fhir, Ids, Registration};

async fn post(a: &App, body: &Value) -> support::Resp {
    a.send("POST", "/fhir/Patient/$register", &[("content-type", "application/json")], body.to_string()).await
}

async fn search(a: &App, q: &str) -> Value {
    let r = a.get(q).await;
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    r.json()
}

fn statuses(bundle: &Value) -> Vec<(String, String)> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let url = e["fullUrl"].as_str().unwrap();
            let tail = url.rsplitn(3, '/').take(2).collect::<Vec<_>>();
            (format!("{}/{}", tail[1], tail[0]), e["response"]["status"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Reads every resource named in a transaction-response (except deletes) back from the API.
async fn read_back(a: &App, bundle: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for (key, status) in statuses(bundle) {
        if status.starts_with("204") {
            continue;
        }
        let r = a.get(&format!("/fhir/{key}")).await;
        assert_eq!(r.status, 200, "{key}");
        out.push(r.json());
    }
    out
}

both_db!(register_creates_updates_and_deletes_stale);
async fn register_creates_updates_and_deletes_stale(db: Db) {
    let a = support::app(db).await;
    let reg = example();
    let r = post(&a, &reg).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.header("location").unwrap().ends_with("/fhir/Patient/tobiume-TB-40-0012345/_history/1"),
        "{:?}",
        r.header("location")
    );
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    let b = r.json();
    assert_eq!(b["type"], "transaction-response");
    let st = statuses(&b);
    let expected = to_fhir(&serde_json::from_value::<Registration>(reg.clone()).unwrap(), &Ids::default()).len();
    assert_eq!(st.len(), expected);
    assert!(st.iter().all(|(_, s)| s == "201 Created"), "{st:?}");

    // what was stored is the registration (from_fhir of the read-back resources)
    let stored = read_back(&a, &b).await;
    let want: Registration = serde_json::from_value(reg.clone()).unwrap();
    assert_eq!(from_fhir(&stored).unwrap(), want);
    let p = a.get("/fhir/Patient/tobiume-TB-40-0012345").await.json();
    assert!(p["name"].as_array().unwrap().iter().any(|n| n["family"] == "ウメノ" && n["given"][0] == "ハナコ"));

    // the same form again: 200, nothing written (every resource still version 1)
    let r = post(&a, &reg).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(statuses(&r.json()).iter().all(|(_, s)| s == "200 OK"));
    assert_eq!(a.get("/fhir/Patient/tobiume-TB-40-0012345").await.json()["meta"]["versionId"], "1");
    let hist = a.get("/fhir/Patient/tobiume-TB-40-0012345/_history").await.json();
    assert_eq!(hist["entry"].as_array().unwrap().len(), 1);

    // fewer main diagnoses and a new phone: the dropped Conditions are deleted in the same transaction
    let mut changed = reg.clone();
    changed["mainDiagnoses"].as_array_mut().unwrap().truncate(2);
    changed["demographics"]["phones"][0]["value"]["number"] = json!("092-000-1111");
    let r = a
        .send(
            "POST",
            "/fhir/Patient/$register",
            &[("content-type", "application/json"), ("prefer", "return=representation")],
            changed.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let patient = r.json();
    assert_eq!(patient["resourceType"], "Patient");
    assert_eq!(patient["meta"]["versionId"], "2");
    assert!(r.header("location").unwrap().ends_with("/Patient/tobiume-TB-40-0012345/_history/2"));
    let conds = search(&a, "/fhir/Condition?patient=Patient/tobiume-TB-40-0012345").await;
    assert_eq!(ids(&conds).len(), 2, "{conds}");
    assert_eq!(a.get("/fhir/Condition/tobiume-TB-40-0012345-diagnosis-5").await.status, 410);
    // an unrelated Condition of the same patient (not owned by the registration) survives re-registration
    let foreign = json!({"resourceType": "Condition", "id": "clinic-note-1", "subject": {"reference": "Patient/tobiume-TB-40-0012345"}, "code": {"text": "感冒"}});
    assert_eq!(a.json("PUT", "/fhir/Condition/clinic-note-1", &foreign.to_string()).await.status, 201);
    let r = post(&a, &reg).await;
    assert_eq!(r.status, 200);
    let st = statuses(&r.json());
    assert_eq!(st.iter().filter(|(k, s)| k.starts_with("Condition/") && s == "201 Created").count(), 3, "{st:?}");
    assert_eq!(a.get("/fhir/Condition/clinic-note-1").await.status, 200);
    let back: Vec<Value> = read_back(&a, &r.json()).await;
    assert_eq!(from_fhir(&back).unwrap(), want);
}

both_db!(same_form_twice_concurrently_is_one_patient);
async fn same_form_twice_concurrently_is_one_patient(db: Db) {
    let a = support::app(db).await;
    let form = ohno("TB-1");
    let (r1, r2, r3, r4) = tokio::join!(post(&a, &form), post(&a, &form), post(&a, &form), post(&a, &form));
    let mut codes = vec![r1.status.as_u16(), r2.status.as_u16(), r3.status.as_u16(), r4.status.as_u16()];
    codes.sort();
    assert_eq!(codes, [200, 200, 200, 201], "{} {} {} {}", r1.body, r2.body, r3.body, r4.body);
    let b = search(&a, &format!("/fhir/Patient?identifier={}", pct(&format!("{CARD}|TB-1")))).await;
    assert_eq!(ids(&b), ["tobiume-TB-1"]);
    let b = search(&a, "/fhir/Patient?birthdate=1950-05-05").await;
    assert_eq!(ids(&b).len(), 1);
    assert_eq!(a.get("/fhir/Patient/tobiume-TB-1").await.json()["meta"]["versionId"], "1");
}

both_db!(same_person_under_another_card_is_attached);
async fn same_person_under_another_card_is_attached(db: Db) {
    let a = support::app(db).await;
    assert_eq!(post(&a, &ohno("TB-1")).await.status, 201);
    // the same consent form re-entered with another card id, kana in hiragana, address written differently
    let again = person(
        "TB-2",
        ("おおの", "しょーへい"),
        ("大野", "翔平"),
        "1950-05-05",
        "male",
        "北九州市小倉北区城内１丁目１番",
    );
    let r = post(&a, &again).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    let pe = b["entry"].as_array().unwrap().iter().find(|e| e["fullUrl"].as_str().unwrap().ends_with("/Patient/tobiume-TB-1")).unwrap();
    assert_eq!(pe["response"]["outcome"]["issue"][0]["code"], "duplicate", "{pe}");
    assert!(r.header("location").unwrap().contains("/Patient/tobiume-TB-1/_history/2"));
    assert_eq!(a.get("/fhir/Patient/tobiume-TB-2").await.status, 404);
    assert_eq!(ids(&search(&a, "/fhir/Patient?birthdate=1950-05-05").await), ["tobiume-TB-1"]);

    // another address: only a probable match — a new registration (never merged on less than certain)
    let moved = person("TB-3", ("オオノ", "ショウヘイ"), ("大野", "翔平"), "1950-05-05", "male", "福岡県福岡市東区香椎1-1");
    assert_eq!(post(&a, &moved).await.status, 201);
    assert_eq!(ids(&search(&a, "/fhir/Patient?birthdate=1950-05-05").await).len(), 2);

    // two cards for one person posted at the same time: still one patient
    let (y10, y11) = (yuko("TB-10"), yuko("TB-11"));
    let (r1, r2) = tokio::join!(post(&a, &y10), post(&a, &y11));
    let mut codes = [r1.status.as_u16(), r2.status.as_u16()];
    codes.sort();
    assert_eq!(codes, [200, 201], "{} {}", r1.body, r2.body);
    assert_eq!(ids(&search(&a, "/fhir/Patient?birthdate=1962-11-03").await).len(), 1);
}

both_db!(invalid_registrations_are_rejected_with_paths);
async fn invalid_registrations_are_rejected_with_paths(db: Db) {
    let a = support::app(db).await;
    let expr = |v: &Value| -> Vec<String> {
        v["issue"].as_array().unwrap().iter().filter_map(|i| i["expression"][0].as_str().map(str::to_string)).collect()
    };
    // malformed JSON → 400 with where it stopped
    let r = a.send("POST", "/fhir/Patient/$register", &[("content-type", "application/json")], "{\"cardId\": \"x\",").await;
    r.assert_outcome(400);
    // schema: bad date, missing member, unknown member
    let mut bad = example();
    bad["demographics"]["birthDate"]["value"] = json!("1938/03/14");
    bad["demographics"]["nameKana"]["value"].as_object_mut().unwrap().remove("family");
    bad["demographics"]["nickname"] = json!("x");
    let v = post(&a, &bad).await.assert_outcome(422);
    let e = expr(&v);
    assert!(e.contains(&"demographics.birthDate.value".to_string()), "{e:?}");
    assert!(e.contains(&"demographics.nameKana.value.family".to_string()), "{e:?}");
    assert!(e.iter().any(|p| p.starts_with("demographics")), "{e:?}");
    assert!(!v.to_string().contains("1938"), "values are not echoed: {v}");
    // missing card id
    let mut bad = example();
    bad.as_object_mut().unwrap().remove("cardId");
    assert!(expr(&post(&a, &bad).await.assert_outcome(422)).contains(&"cardId".to_string()));
    // six main diagnoses (domain rule: at most 5, the rest go to the history)
    let mut bad = example();
    let first = bad["mainDiagnoses"][0].clone();
    bad["mainDiagnoses"].as_array_mut().unwrap().push(first);
    let e = expr(&post(&a, &bad).await.assert_outcome(422));
    assert!(e.iter().any(|p| p.starts_with("mainDiagnoses")), "{e:?}");
    // a model rule the schema does not know: blank text
    let mut bad = example();
    bad["remarks"]["value"] = json!(" 備考 ");
    let e = expr(&post(&a, &bad).await.assert_outcome(422));
    assert_eq!(e, ["remarks.value"]);
    // wrong content type
    a.send("POST", "/fhir/Patient/$register", &[("content-type", "text/csv")], "a,b").await.assert_outcome(415);
    // nothing was written
    assert!(ids(&search(&a, "/fhir/Patient").await).is_empty());
}

both_db!(transaction_bundle_of_to_fhir_round_trips);
async fn transaction_bundle_of_to_fhir_round_trips(db: Db) {
    let a = support::app(db).await;
    let reg: Registration = serde_json::from_value(example()).unwrap();
    let resources = to_fhir(&reg, &Ids::default());
    let entries: Vec<Value> = resources
        .iter()
        .map(|r| {
            let url = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
            json!({"fullUrl": format!("http://localhost:8080/fhir/{url}"), "resource": r, "request": {"method": "PUT", "url": url}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let r = a.json("POST", "/fhir", &bundle.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let resp = r.json();
    assert_eq!(resp["type"], "transaction-response");
    let mut back = Vec::new();
    for res in &resources {
        let got = a.get(&format!("/fhir/{}/{}", res["resourceType"].as_str().unwrap(), res["id"].as_str().unwrap())).await;
        assert_eq!(got.status, 200);
        back.push(got.json());
    }
    assert_eq!(from_fhir(&back).unwrap(), reg);
    // and $register of the same registration finds nothing to change
    let r = post(&a, &example()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(statuses(&r.json()).iter().all(|(_, s)| s == "200 OK"), "{}", r.body);
}
