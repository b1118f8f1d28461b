//! FHIR R4 RESTful API (§3.1.0) end to end on SQLite and PostgreSQL: every instance/type interaction, HTTP semantics and
//! error statuses, each error being an OperationOutcome.

#[macro_use]
#[path = "common/api_support.rs"]
mod support;

use support::Db;
use axum::body::Body;
use serde_json::json;
use support::app;
use tobiume_gateway::api::ApiConfig;

const PATIENT: &str = r#"{"resourceType":"Patient","name":[{"text":"山田　太郎","family":"山田","given":["太郎"]}],"gender":"male","birthDate":"1970-01-01"}"#;

both_db!(health_and_metadata);
async fn health_and_metadata(db: Db) {
    let a = app(db).await;
    let r = a.get("/health").await;
    assert_eq!(r.status, 200);
    let r = a.get("/fhir/metadata").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("application/fhir+json; charset=utf-8"));
    let cs = r.json();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["kind"], "instance");
    assert!(cs["format"].as_array().unwrap().contains(&json!("json")));
    assert_eq!(cs["implementation"]["url"], "http://localhost:8080/fhir");
    assert_eq!(cs["software"]["name"], "tobiume-gateway");
    let res = cs["rest"][0]["resource"].as_array().unwrap();
    assert_eq!(res.len(), 146);
    let patient = res.iter().find(|r| r["type"] == "Patient").unwrap();
    let codes: Vec<&str> = patient["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    for c in ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"] {
        assert!(codes.contains(&c), "{c}");
    }
    let params: Vec<&str> = patient["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for p in ["_id", "_lastUpdated", "name", "birthdate", "identifier", "gender"] {
        assert!(params.contains(&p), "{p} in {params:?}");
    }
    let sys: Vec<&str> = cs["rest"][0]["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert_eq!(sys, ["transaction", "batch", "history-system"]);
    // Every advertised operation exists: a POST/GET to it is never 404 or 405.
    let ops: Vec<&str> = patient["operation"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    for op in ["validate", "match", "register", "summary"] {
        assert!(ops.contains(&op), "{op} in {ops:?}");
    }
    assert_eq!(cs["rest"][0]["operation"][0]["name"], "validate");
    for (method, path) in [
        ("POST", "/fhir/$validate"),
        ("POST", "/fhir/Patient/$validate"),
        ("POST", "/fhir/Patient/$match"),
        ("POST", "/fhir/Patient/$register"),
        ("GET", "/fhir/Patient/x/$summary?mode=emergency"),
    ] {
        let r = a.send(method, path, &[("content-type", "application/fhir+json")], "{}").await;
        assert!(r.status != 404 || path.contains("$summary"), "{method} {path}: {}", r.status);
        assert_ne!(r.status, 405, "{method} {path}");
        if path.contains("$summary") {
            // Unknown patient: a 404 OperationOutcome from the operation, not a missing route.
            assert_eq!(r.json()["resourceType"], "OperationOutcome");
        }
    }
}

both_db!(create_read_vread_update_delete_history);
async fn create_read_vread_update_delete_history(db: Db) {
    let a = app(db).await;
    // create
    let r = a.json("POST", "/fhir/Patient", PATIENT).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let loc = r.header("location").unwrap().to_string();
    assert!(loc.starts_with("http://localhost:8080/fhir/Patient/") && loc.ends_with("/_history/1"), "{loc}");
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    assert!(r.header("last-modified").unwrap().ends_with(" GMT"));
    assert!(r.header("x-request-id").is_some());
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["meta"]["versionId"], "1");
    assert_eq!(created["name"][0]["text"], "山田　太郎");

    // read
    let r = a.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    assert!(r.header("content-type").unwrap().starts_with("application/fhir+json"));
    assert_eq!(r.json()["birthDate"], "1970-01-01");
    // 304 with If-None-Match
    let r = a.send("GET", &format!("/fhir/Patient/{id}"), &[("if-none-match", "W/\"1\"")], Body::empty()).await;
    assert_eq!(r.status, 304);
    // 304 with If-Modified-Since far in the future
    let r = a
        .send("GET", &format!("/fhir/Patient/{id}"), &[("if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT")], Body::empty())
        .await;
    assert_eq!(r.status, 304);

    // update with If-Match
    let upd = PATIENT.replacen("{", &format!("{{\"id\":\"{id}\","), 1).replace("1970-01-01", "1970-01-02");
    let r = a
        .send("PUT", &format!("/fhir/Patient/{id}"), &[("content-type", "application/fhir+json"), ("if-match", "W/\"1\"")], upd.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("etag"), Some("W/\"2\""));
    // stale If-Match → 412
    let r = a
        .send("PUT", &format!("/fhir/Patient/{id}"), &[("content-type", "application/fhir+json"), ("if-match", "W/\"1\"")], upd.clone())
        .await;
    r.assert_outcome(412);
    // vread v1
    let r = a.get(&format!("/fhir/Patient/{id}/_history/1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["birthDate"], "1970-01-01");
    let r = a.get(&format!("/fhir/Patient/{id}/_history/9")).await;
    r.assert_outcome(404);

    // Prefer: return=minimal / OperationOutcome
    let r = a
        .send("PUT", &format!("/fhir/Patient/{id}"), &[("content-type", "application/json"), ("prefer", "return=minimal")], upd.clone())
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some("W/\"3\""));
    let r = a
        .send("PUT", &format!("/fhir/Patient/{id}"), &[("content-type", "application/json"), ("prefer", "return=OperationOutcome")], upd)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");

    // history (instance, type, system)
    let r = a.get(&format!("/fhir/Patient/{id}/_history")).await;
    assert_eq!(r.status, 200);
    let h = r.json();
    assert_eq!(h["type"], "history");
    assert_eq!(h["entry"].as_array().unwrap().len(), 4);
    assert_eq!(h["entry"][0]["request"]["method"], "PUT");
    assert_eq!(h["entry"][3]["request"]["method"], "POST");
    assert_eq!(h["entry"][3]["response"]["etag"], "W/\"1\"");
    assert!(a.get("/fhir/Patient/_history").await.json()["entry"].as_array().unwrap().len() >= 4);
    assert!(a.get("/fhir/_history?_count=2").await.json()["entry"].as_array().unwrap().len() == 2);

    // delete → 204, then read → 410, vread of the tombstone → 410
    let r = a.send("DELETE", &format!("/fhir/Patient/{id}"), &[], Body::empty()).await;
    assert_eq!(r.status, 204);
    a.get(&format!("/fhir/Patient/{id}")).await.assert_outcome(410);
    a.get(&format!("/fhir/Patient/{id}/_history/5")).await.assert_outcome(410);
    let h = a.get(&format!("/fhir/Patient/{id}/_history")).await.json();
    assert_eq!(h["entry"][0]["request"]["method"], "DELETE");
    // update-as-create after delete → 201
    let body = PATIENT.replacen("{", &format!("{{\"id\":\"{id}\","), 1);
    assert_eq!(a.json("PUT", &format!("/fhir/Patient/{id}"), &body).await.status, 201);
}

both_db!(update_as_create_and_id_rules);
async fn update_as_create_and_id_rules(db: Db) {
    let a = app(db).await;
    let body = PATIENT.replacen("{", "{\"id\":\"jp-001\",", 1);
    let r = a.json("PUT", "/fhir/Patient/jp-001", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("location"), Some("http://localhost:8080/fhir/Patient/jp-001/_history/1"));
    // id mismatch → 400 naming Patient.id
    let oo = a.json("PUT", "/fhir/Patient/other", &body).await.assert_outcome(400);
    assert_eq!(oo["issue"][0]["expression"][0], "Patient.id");
    // missing id → 400
    a.json("PUT", "/fhir/Patient/jp-002", PATIENT).await.assert_outcome(400);
    // resourceType ≠ URL type → 400
    a.json("POST", "/fhir/Observation", PATIENT).await.assert_outcome(400);
}

both_db!(decimal_text_is_kept);
async fn decimal_text_is_kept(db: Db) {
    let a = app(db).await;
    let obs = r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"体重"},"valueQuantity":{"value":60.50,"unit":"kg"}}"#;
    let r = a.json("PUT", "/fhir/Observation/o1", obs).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body.contains("60.50"), "{}", r.body);
    assert!(a.get("/fhir/Observation/o1").await.body.contains("\"value\":60.50"));
}

both_db!(errors_are_operation_outcomes);
async fn errors_are_operation_outcomes(db: Db) {
    let a = app(db).await;
    // unknown type → 404
    a.get("/fhir/Patientx/1").await.assert_outcome(404);
    a.get("/fhir/Bot/1").await.assert_outcome(404); // Medplum type, not FHIR R4
    a.json("POST", "/fhir/Foo", "{}").await.assert_outcome(404);
    // unknown id → 404
    a.get("/fhir/Patient/nope").await.assert_outcome(404);
    // unknown URL → 404
    a.get("/nothing").await.assert_outcome(404);
    // method not allowed → 405
    a.send("DELETE", "/fhir/metadata", &[], Body::empty()).await.assert_outcome(405);
    a.send("PATCH", "/fhir/Patient", &[], Body::empty()).await.assert_outcome(405);
    // wrong content type → 415
    a.send("POST", "/fhir/Patient", &[("content-type", "application/xml")], PATIENT).await.assert_outcome(415);
    // malformed JSON → 400 with location
    let oo = a.json("POST", "/fhir/Patient", r#"{"resourceType":"Patient","name":[{"given":["a",]}]}"#).await.assert_outcome(400);
    assert_eq!(oo["issue"][0]["expression"][0], "Resource.name[0].given");
    assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().contains("line 1 column"));
    // structural failure → 422 naming the element
    let oo = a.json("POST", "/fhir/Patient", r#"{"resourceType":"Patient","gender":"femalee"}"#).await.assert_outcome(422);
    assert!(oo["issue"].as_array().unwrap().iter().any(|i| i["expression"][0] == "Patient.gender"), "{oo}");
    let oo = a.json("POST", "/fhir/Patient", r#"{"resourceType":"Patient","unknownField":1}"#).await.assert_outcome(422);
    assert_eq!(oo["issue"][0]["code"], "structure");
    // _format=xml → 406
    a.get("/fhir/metadata?_format=xml").await;
    a.get("/fhir/Patient/x?_format=xml").await.assert_outcome(406);
}

both_db!(body_limit_413);
async fn body_limit_413(db: Db) {
    let a = support::app_with(db, ApiConfig { max_body_bytes: 1024, ..ApiConfig::default() }).await;
    let big = format!(r#"{{"resourceType":"Patient","name":[{{"text":"{}"}}]}}"#, "あ".repeat(2000));
    a.json("POST", "/fhir/Patient", &big).await.assert_outcome(413);
}

both_db!(request_id_is_honoured);
async fn request_id_is_honoured(db: Db) {
    let a = app(db).await;
    let r = a.send("GET", "/fhir/metadata", &[("x-request-id", "abc-123")], Body::empty()).await;
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let r = a.get("/fhir/Patient/missing").await;
    assert!(r.header("x-request-id").is_some_and(|v| v.len() >= 32));
}

both_db!(patch_json_patch);
async fn patch_json_patch(db: Db) {
    let a = app(db).await;
    let body = PATIENT.replacen("{", "{\"id\":\"p1\",", 1);
    assert_eq!(a.json("PUT", "/fhir/Patient/p1", &body).await.status, 201);
    let patch = r#"[{"op":"replace","path":"/gender","value":"female"},{"op":"add","path":"/active","value":true}]"#;
    let r = a.send("PATCH", "/fhir/Patient/p1", &[("content-type", "application/json-patch+json")], patch).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("etag"), Some("W/\"2\""));
    let v = a.get("/fhir/Patient/p1").await.json();
    assert_eq!(v["gender"], "female");
    assert_eq!(v["active"], true);
    // result validated like an update → 422
    let bad = r#"[{"op":"replace","path":"/gender","value":"x"}]"#;
    a.send("PATCH", "/fhir/Patient/p1", &[("content-type", "application/json-patch+json")], bad).await.assert_outcome(422);
    // failing test op → 422; wrong content type → 415; stale If-Match → 412
    let t = r#"[{"op":"test","path":"/gender","value":"male"}]"#;
    a.send("PATCH", "/fhir/Patient/p1", &[("content-type", "application/json-patch+json")], t).await.assert_outcome(422);
    a.send("PATCH", "/fhir/Patient/p1", &[("content-type", "application/fhir+json")], patch).await.assert_outcome(415);
    a.send("PATCH", "/fhir/Patient/p1", &[("content-type", "application/json-patch+json"), ("if-match", "W/\"1\"")], patch)
        .await
        .assert_outcome(412);
    a.send("PATCH", "/fhir/Patient/zz", &[("content-type", "application/json-patch+json")], patch).await.assert_outcome(404);
}

both_db!(conditional_create_update_delete);
async fn conditional_create_update_delete(db: Db) {
    let a = app(db).await;
    let p = r#"{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.392.100495.20.3.51.11312345670","value":"000123"}],"gender":"male"}"#;
    let hdr = [("content-type", "application/fhir+json"), ("if-none-exist", "identifier=urn:oid:1.2.392.100495.20.3.51.11312345670|000123")];
    let r = a.send("POST", "/fhir/Patient", &hdr, p).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = a.send("POST", "/fhir/Patient", &hdr, p).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["id"], id.as_str());
    // conditional update: one match → update that id
    let r = a.json("PUT", "/fhir/Patient?identifier=urn:oid:1.2.392.100495.20.3.51.11312345670|000123", &p.replace("male", "female")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["id"], id.as_str());
    // no match → create
    let r = a.json("PUT", "/fhir/Patient?identifier=urn:x|999", p).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // two matches → 412
    a.json("POST", "/fhir/Patient", p).await;
    let r = a.send("POST", "/fhir/Patient", &hdr, p).await;
    r.assert_outcome(412);
    a.json("PUT", "/fhir/Patient?identifier=urn:oid:1.2.392.100495.20.3.51.11312345670|000123", p).await.assert_outcome(412);
    // conditional delete: several → 412, one → 204
    a.send("DELETE", "/fhir/Patient?identifier=urn:oid:1.2.392.100495.20.3.51.11312345670|000123", &[], Body::empty())
        .await
        .assert_outcome(412);
    let r = a.send("DELETE", "/fhir/Patient?identifier=urn:x|999", &[], Body::empty()).await;
    assert_eq!(r.status, 204);
}

/// The gateway's own OperationDefinitions (conformance/) are valid R4.
#[test]
fn own_operation_definitions_are_valid_r4() {
    for name in ["OperationDefinition-Patient-register.json", "OperationDefinition-Patient-summary.json"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance").join(name);
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        if let Err(e) = tobiume_gateway::validation::schema::check(&v) {
            panic!("{name}: {e:?}");
        }
    }
}
