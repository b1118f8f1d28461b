//! Search (FHIR R4 §3.1.0.8, search.html) through the REST API on SQLite and PostgreSQL: searchset Bundles, paging links,
//! `_total`, `_summary`, `_elements`, `_include`/`_revinclude`, `POST _search`, handling of unknown
//! parameters.

#[macro_use]
#[path = "common/api_support.rs"]
mod support;

use support::Db;
use axum::body::Body;
use serde_json::Value;

async fn seed(a: &support::App) {
    for (id, name, gender, birth) in [
        ("p1", "山田　太郎", "male", "1970-01-01"),
        ("p2", "山田　花子", "female", "1975-05-05"),
        ("p3", "鈴木　一郎", "male", "1980-12-31"),
    ] {
        let family = name.split('　').next().unwrap();
        let body = format!(
            r#"{{"resourceType":"Patient","id":"{id}","name":[{{"text":"{name}","family":"{family}"}}],"gender":"{gender}","birthDate":"{birth}","contact":[{{"name":{{"text":"x"}}}}]}}"#
        );
        assert_eq!(a.json("PUT", &format!("/fhir/Patient/{id}"), &body).await.status, 201);
    }
    let obs = r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"体重"},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":60.50,"unit":"kg"}}"#;
    assert_eq!(a.json("PUT", "/fhir/Observation/o1", obs).await.status, 201);
}

fn entries(b: &Value) -> Vec<Value> {
    b["entry"].as_array().cloned().unwrap_or_default()
}

fn link(b: &Value, rel: &str) -> Option<String> {
    b["link"].as_array()?.iter().find(|l| l["relation"] == rel).map(|l| l["url"].as_str().unwrap().to_string())
}

both_db!(searchset_paging_and_total);
async fn searchset_paging_and_total(db: Db) {
    let a = support::app(db).await;
    seed(&a).await;
    let r = a.get("/fhir/Patient?gender=male&_total=accurate").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "searchset");
    assert_eq!(b["total"], 2);
    assert!(entries(&b).iter().all(|e| e["search"]["mode"] == "match" && e["fullUrl"].as_str().unwrap().starts_with("http://localhost:8080/fhir/Patient/")));
    assert!(link(&b, "self").is_some());

    // paging with _count=1
    let b = a.get("/fhir/Patient?_count=1&_total=accurate").await.json();
    assert_eq!(b["total"], 3);
    assert_eq!(entries(&b).len(), 1);
    let next = link(&b, "next").expect("next link");
    let b2 = a.get(next.trim_start_matches("http://localhost:8080")).await.json();
    assert_eq!(entries(&b2).len(), 1);
    assert!(link(&b2, "previous").is_some());
    assert_ne!(entries(&b)[0]["fullUrl"], entries(&b2)[0]["fullUrl"]);

    // _summary=count
    let b = a.get("/fhir/Patient?_summary=count").await.json();
    assert_eq!(b["total"], 3);
    assert!(b.get("entry").is_none());
}

both_db!(summary_and_elements);
async fn summary_and_elements(db: Db) {
    let a = support::app(db).await;
    seed(&a).await;
    let b = a.get("/fhir/Patient?_id=p1&_summary=true").await.json();
    let p = &entries(&b)[0]["resource"];
    assert_eq!(p["gender"], "male");
    assert!(p.get("contact").is_none(), "contact is not a summary element: {p}");
    assert!(p["meta"]["tag"].as_array().unwrap().iter().any(|t| t["code"] == "SUBSETTED"));
    let b = a.get("/fhir/Patient?_id=p1&_elements=birthDate").await.json();
    let p = &entries(&b)[0]["resource"];
    assert_eq!(p["birthDate"], "1970-01-01");
    assert!(p.get("gender").is_none() && p.get("name").is_none());
    assert_eq!(p["id"], "p1");
    // decimals keep their text inside searchset bundles
    let r = a.get("/fhir/Observation?subject=Patient/p1").await;
    assert!(r.body.contains("60.50"), "{}", r.body);
}

both_db!(include_revinclude_and_post_search);
async fn include_revinclude_and_post_search(db: Db) {
    let a = support::app(db).await;
    seed(&a).await;
    let b = a.get("/fhir/Observation?_include=Observation:subject").await.json();
    let es = entries(&b);
    assert!(es.iter().any(|e| e["search"]["mode"] == "include" && e["resource"]["id"] == "p1"), "{b}");
    let b = a.get("/fhir/Patient?_id=p1&_revinclude=Observation:subject").await.json();
    assert!(entries(&b).iter().any(|e| e["search"]["mode"] == "include" && e["resource"]["resourceType"] == "Observation"));

    let r = a
        .send("POST", "/fhir/Patient/_search", &[("content-type", "application/x-www-form-urlencoded")], Body::from("gender=female"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    assert_eq!(entries(&b).len(), 1);
    assert_eq!(entries(&b)[0]["resource"]["id"], "p2");
    a.send("POST", "/fhir/Patient/_search", &[("content-type", "application/json")], Body::from("{}"))
        .await
        .assert_outcome(415);
}

both_db!(unknown_parameters);
async fn unknown_parameters(db: Db) {
    let a = support::app(db).await;
    seed(&a).await;
    let b = a.get("/fhir/Patient?foo=bar").await.json();
    assert!(entries(&b).iter().any(|e| e["search"]["mode"] == "outcome"), "{b}");
    let r = a.send("GET", "/fhir/Patient?foo=bar", &[("prefer", "handling=strict")], Body::empty()).await;
    r.assert_outcome(400);
    a.get("/fhir/Nope?x=1").await.assert_outcome(404);
}
