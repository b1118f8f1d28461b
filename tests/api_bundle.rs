//! `batch` and `transaction` (FHIR R4 §3.1.0.11, http.html#transaction) end to end on SQLite and PostgreSQL.

#[macro_use]
#[path = "common/api_support.rs"]
mod support;

use support::Db;
use serde_json::{json, Value};

fn tx(entries: Value, kind: &str) -> String {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries}).to_string()
}

both_db!(transaction_resolves_urn_uuid_and_is_atomic);
async fn transaction_resolves_urn_uuid_and_is_atomic(db: Db) {
    let a = support::app(db).await;
    // Raw text: the decimal 60.50 must survive the urn:uuid rewrite.
    let body = r#"{"resourceType":"Bundle","type":"transaction","entry":[
      {"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":{"resourceType":"Patient","name":[{"text":"山田　花子"}],"gender":"female"},
       "request":{"method":"POST","url":"Patient"}},
      {"fullUrl":"urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059","resource":{"resourceType":"Observation","status":"final","code":{"text":"体重"},
        "subject":{"reference":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},"valueQuantity":{"value":60.50,"unit":"kg"}},
       "request":{"method":"POST","url":"Observation"}},
      {"resource":{"resourceType":"Organization","id":"org1","name":"とびうめ病院"},"request":{"method":"PUT","url":"Organization/org1"}}
    ]}"#;
    let r = a.json("POST", "/fhir", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    assert_eq!(b["type"], "transaction-response");
    let e = b["entry"].as_array().unwrap();
    assert_eq!(e.len(), 3);
    assert_eq!(e[0]["response"]["status"], "201 Created");
    assert_eq!(e[2]["response"]["status"], "201 Created");
    let ploc = e[0]["response"]["location"].as_str().unwrap();
    assert!(ploc.starts_with("Patient/") && ploc.ends_with("/_history/1"), "{ploc}");
    assert_eq!(e[0]["response"]["etag"], "W/\"1\"");
    let pid = ploc.split('/').nth(1).unwrap();
    let oloc = e[1]["response"]["location"].as_str().unwrap();
    let obs = a.get(&format!("/fhir/{}", oloc.trim_end_matches("/_history/1"))).await;
    assert_eq!(obs.status, 200);
    assert!(obs.body.contains(&format!("\"reference\":\"Patient/{pid}\"")), "{}", obs.body);
    assert!(obs.body.contains("60.50"), "{}", obs.body);

    // atomic: a failing entry (stale ifMatch) rolls back the whole transaction
    let bad = tx(
        json!([
            {"resource": {"resourceType": "Patient", "id": "new1", "gender": "male"}, "request": {"method": "PUT", "url": "Patient/new1"}},
            {"resource": {"resourceType": "Organization", "id": "org1", "name": "x"}, "request": {"method": "PUT", "url": "Organization/org1", "ifMatch": "W/\"7\""}}
        ]),
        "transaction",
    );
    a.json("POST", "/fhir", &bad).await.assert_outcome(412);
    a.get("/fhir/Patient/new1").await.assert_outcome(404);

    // structural failure anywhere → 422 naming the entry element
    let bad = tx(json!([{"resource": {"resourceType": "Patient", "gender": "x"}, "request": {"method": "POST", "url": "Patient"}}]), "transaction");
    let oo = a.json("POST", "/fhir", &bad).await.assert_outcome(422);
    assert!(oo["issue"].as_array().unwrap().iter().any(|i| i["expression"][0] == "Bundle.entry[0].resource.gender"), "{oo}");
}

both_db!(transaction_delete_and_get_entries);
async fn transaction_delete_and_get_entries(db: Db) {
    let a = support::app(db).await;
    assert_eq!(a.json("PUT", "/fhir/Patient/d1", r#"{"resourceType":"Patient","id":"d1"}"#).await.status, 201);
    assert_eq!(a.json("PUT", "/fhir/Patient/g1", r#"{"resourceType":"Patient","id":"g1","gender":"other"}"#).await.status, 201);
    let body = tx(
        json!([
            {"request": {"method": "GET", "url": "Patient/g1"}},
            {"request": {"method": "DELETE", "url": "Patient/d1"}}
        ]),
        "transaction",
    );
    let r = a.json("POST", "/fhir", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    assert_eq!(b["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(b["entry"][0]["resource"]["gender"], "other");
    assert_eq!(b["entry"][1]["response"]["status"], "204 No Content");
    a.get("/fhir/Patient/d1").await.assert_outcome(410);
}

both_db!(batch_entries_are_independent);
async fn batch_entries_are_independent(db: Db) {
    let a = support::app(db).await;
    let body = tx(
        json!([
            {"resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "gender": "bad"}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/missing"}},
            {"resource": {"resourceType": "Patient", "id": "b1"}, "request": {"method": "PUT", "url": "Patient/b1"}},
            {"request": {"method": "GET", "url": "Nonsense/1"}}
        ]),
        "batch",
    );
    let r = a.json("POST", "/fhir", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    assert_eq!(b["type"], "batch-response");
    let e = b["entry"].as_array().unwrap();
    assert_eq!(e[0]["response"]["status"], "201 Created");
    assert!(e[1]["response"]["status"].as_str().unwrap().starts_with("422"));
    assert_eq!(e[1]["response"]["outcome"]["resourceType"], "OperationOutcome");
    assert!(e[2]["response"]["status"].as_str().unwrap().starts_with("404"));
    assert_eq!(e[3]["response"]["status"], "201 Created");
    assert_eq!(e[3]["response"]["location"], "Patient/b1/_history/1");
    assert!(e[4]["response"]["status"].as_str().unwrap().starts_with("404"));
    // the successful ones were written
    assert_eq!(a.get("/fhir/Patient/b1").await.status, 200);
}

both_db!(bundle_errors);
async fn bundle_errors(db: Db) {
    let a = support::app(db).await;
    a.json("POST", "/fhir", r#"{"resourceType":"Patient"}"#).await.assert_outcome(400);
    a.json("POST", "/fhir", r#"{"resourceType":"Bundle","type":"collection"}"#).await.assert_outcome(400);
    a.json("POST", "/fhir", r#"{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"}}]}"#)
        .await
        .assert_outcome(400);
    a.send("POST", "/fhir", &[("content-type", "text/plain")], "x").await.assert_outcome(415);
}

both_db!(transaction_conditional_entries);
async fn transaction_conditional_entries(db: Db) {
    let a = support::app(db).await;
    let ident = "urn:oid:1.2.392.100495.20.3.51.11312345670|000777";
    let pat = json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11312345670", "value": "000777"}]});
    let r = a.json("POST", "/fhir/Patient", &pat.to_string()).await;
    assert_eq!(r.status, 201);
    let existing = r.json()["id"].as_str().unwrap().to_string();
    // ifNoneExist matches the existing patient: no write, and urn:uuid resolves to the existing id
    let body = tx(
        json!([
            {"fullUrl": "urn:uuid:0b9a4bbb-8d42-4b59-b0e1-8c3b2b1e1a01", "resource": pat,
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={ident}")}},
            {"fullUrl": "urn:uuid:0b9a4bbb-8d42-4b59-b0e1-8c3b2b1e1a02",
             "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                          "subject": {"reference": "urn:uuid:0b9a4bbb-8d42-4b59-b0e1-8c3b2b1e1a01"}},
             "request": {"method": "POST", "url": "Encounter"}},
            {"resource": {"resourceType": "Patient", "gender": "male",
                          "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11312345670", "value": "000777"}]},
             "request": {"method": "PUT", "url": format!("Patient?identifier={ident}")}}
        ]),
        "transaction",
    );
    let r = a.json("POST", "/fhir", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    assert_eq!(b["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(b["entry"][0]["resource"]["id"], existing.as_str());
    assert_eq!(b["entry"][1]["resource"]["subject"]["reference"], format!("Patient/{existing}"));
    assert_eq!(b["entry"][2]["response"]["location"], format!("Patient/{existing}/_history/2"));
    assert_eq!(a.get(&format!("/fhir/Patient/{existing}")).await.json()["gender"], "male");
}
