//! SMART on FHIR authentication and scope authorization (issue 6, "Must show": a scope matrix test).
//!
//! Every route of the API × representative tokens — none, invalid, expired, wrong audience, wrong issuer,
//! unknown `kid`; `user/*.cruds`; `user/Patient.rs`; `user/Observation.r`; `patient/*.rs` with the patient
//! context `p1` (routes on `p1`'s data = inside the compartment, on `p2`'s = outside); `system/*.rs` — with
//! the expected status of every cell asserted (for batch: the entry's status). 401s must carry
//! `WWW-Authenticate: Bearer …` (RFC 6750) and an OperationOutcome; 403s an OperationOutcome `forbidden`.
//! Mutable fixtures are re-seeded with a full-access token before each cell, so each write really runs.

#[macro_use]
#[path = "common/api_support.rs"]
mod support;

use serde_json::{json, Value};
use support::{App, Db};
use tobiume_gateway::api::ApiConfig;
use tobiume_gateway::auth::dev::{DevKey, DevTokenRequest, DEV_AUDIENCE, DEV_ISSUER};

/// Expected outcome of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum E {
    /// 2xx (for batch: the entry's `response.status` is 2xx).
    Ok,
    /// 401 with `WWW-Authenticate`.
    Unauth,
    /// 403 `forbidden` (for batch: the entry's status).
    Forbid,
}

struct Route {
    name: &'static str,
    method: &'static str,
    uri: &'static str,
    content_type: Option<&'static str>,
    body: String,
    /// Public: 200 with any token or none.
    public: bool,
    batch: bool,
}

fn obs(id: &str, patient: &str, ident: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "identifier": [{"system": "urn:test", "value": ident}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

fn routes() -> Vec<Route> {
    let r = |name, method, uri| Route { name, method, uri, content_type: None, body: String::new(), public: false, batch: false };
    let fhir = |name, method, uri, body: Value| Route {
        content_type: Some("application/fhir+json"),
        body: body.to_string(),
        ..r(name, method, uri)
    };
    let mut new_obs = obs("x", "p1", "new");
    new_obs.as_object_mut().unwrap().remove("id");
    let mut cu = obs("x", "p1", "cu");
    cu.as_object_mut().unwrap().remove("id");
    let registration = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/registration.example.json")).unwrap();
    vec![
        r("read Patient/p1", "GET", "/fhir/Patient/p1"),
        r("read Patient/p2", "GET", "/fhir/Patient/p2"),
        r("read Observation/o1", "GET", "/fhir/Observation/o1"),
        r("read Observation/o2", "GET", "/fhir/Observation/o2"),
        r("vread Observation/o1", "GET", "/fhir/Observation/o1/_history/1"),
        r("search GET Observation?patient=p1", "GET", "/fhir/Observation?patient=p1"),
        r("search GET Observation (any patient)", "GET", "/fhir/Observation"),
        Route {
            content_type: Some("application/x-www-form-urlencoded"),
            body: "patient=p1".into(),
            ..r("search POST Observation/_search", "POST", "/fhir/Observation/_search")
        },
        r("search GET Patient?_id=p1", "GET", "/fhir/Patient?_id=p1"),
        r("history system", "GET", "/fhir/_history"),
        r("history type Observation", "GET", "/fhir/Observation/_history"),
        r("history instance Observation/o1", "GET", "/fhir/Observation/o1/_history"),
        fhir("create Observation", "POST", "/fhir/Observation", new_obs),
        fhir("update Observation/o1", "PUT", "/fhir/Observation/o1", obs("o1", "p1", "o1")),
        fhir("conditional update Observation", "PUT", "/fhir/Observation?identifier=urn:test|cu", cu),
        r("conditional delete Observation", "DELETE", "/fhir/Observation?identifier=urn:test|cd"),
        Route {
            content_type: Some("application/json-patch+json"),
            body: r#"[{"op": "replace", "path": "/status", "value": "amended"}]"#.into(),
            ..r("patch Observation/o1", "PATCH", "/fhir/Observation/o1")
        },
        r("delete Observation/odel", "DELETE", "/fhir/Observation/odel"),
        Route {
            batch: true,
            ..fhir(
                "batch (GET Observation/o1)",
                "POST",
                "/fhir",
                json!({"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": "Observation/o1"}}]}),
            )
        },
        fhir(
            "transaction (PUT Observation/o1)",
            "POST",
            "/fhir",
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": "Observation/o1", "resource": obs("o1", "p1", "o1"), "request": {"method": "PUT", "url": "Observation/o1"}}]}),
        ),
        Route { content_type: Some("application/json"), body: registration, ..r("$register", "POST", "/fhir/Patient/$register") },
        fhir(
            "$match",
            "POST",
            "/fhir/Patient/$match",
            json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient", "birthDate": "1950-05-05", "gender": "female"}}]}),
        ),
        r("$summary Patient/p1", "GET", "/fhir/Patient/p1/$summary"),
        r("$summary Patient/p2", "GET", "/fhir/Patient/p2/$summary"),
        fhir("$validate Patient", "POST", "/fhir/Patient/$validate", json!({"resourceType": "Patient", "gender": "female"})),
        r("viewer /view/patient/p1", "GET", "/view/patient/p1"),
        Route { public: true, ..r("metadata", "GET", "/fhir/metadata") },
        Route { public: true, ..r("smart-configuration", "GET", "/.well-known/smart-configuration") },
        Route { public: true, ..r("smart-configuration (FHIR base)", "GET", "/fhir/.well-known/smart-configuration") },
        Route { public: true, ..r("health", "GET", "/health") },
    ]
}

/// Expected results of the routes above (same order) for each authorised token.
fn expected(token: &str) -> Vec<E> {
    use E::*;
    let v: Vec<E> = match token {
        // read p1, read p2, read o1, read o2, vread, search p1, search any, POST _search, Patient?_id,
        // hist sys, hist type, hist inst, create, update, cond update, cond delete, patch, delete,
        // batch, transaction, $register, $match, $summary p1, $summary p2, $validate, viewer
        "user/*.cruds" => vec![Ok; 26],
        "system/*.rs" => vec![
            Ok, Ok, Ok, Ok, Ok, Ok, Ok, Ok, Ok, Ok, Ok, Ok, Forbid, Forbid, Forbid, Forbid, Forbid, Forbid, Ok,
            Forbid, Forbid, Ok, Ok, Ok, Ok, Ok,
        ],
        // $summary needs reads of Condition, AllergyIntolerance … too, which this token lacks.
        "user/Patient.rs" => vec![
            Ok, Ok, Forbid, Forbid, Forbid, Forbid, Forbid, Forbid, Ok, Forbid, Forbid, Forbid, Forbid, Forbid, Forbid,
            Forbid, Forbid, Forbid, Forbid, Forbid, Forbid, Ok, Forbid, Forbid, Ok, Forbid,
        ],
        "user/Observation.r" => vec![
            Forbid, Forbid, Ok, Ok, Ok, Forbid, Forbid, Forbid, Forbid, Forbid, Forbid, Forbid, Forbid, Forbid, Forbid,
            Forbid, Forbid, Forbid, Ok, Forbid, Forbid, Forbid, Forbid, Forbid, Ok, Forbid,
        ],
        // patient context p1: p1's data inside, p2's outside; unrestricted searches are narrowed to p1.
        "patient/*.rs" => vec![
            Ok, Forbid, Ok, Forbid, Ok, Ok, Ok, Ok, Ok, Forbid, Forbid, Ok, Forbid, Forbid, Forbid, Forbid, Forbid,
            Forbid, Ok, Forbid, Forbid, Ok, Ok, Forbid, Ok, Ok,
        ],
        other => panic!("no expectations for {other}"),
    };
    v
}

/// The facility of the `user/` test tokens (the fixtures' patients attend it; consent: `src/consent`).
const FACILITY: &str = "scope-test-clinic";

/// A `user/` token of a clinician at [`FACILITY`] with `scope`.
fn user_token(scope: &str) -> String {
    support::token(DevTokenRequest { scope: scope.into(), facility: Some(FACILITY.into()), ..DevTokenRequest::default() })
}

/// Seeds (again) the fixtures with the full-access token.
async fn seed(a: &App) {
    let put = |t: &'static str, id: &'static str, v: Value| async move {
        let r = a.json("PUT", &format!("/fhir/{t}/{id}"), &v.to_string()).await;
        assert!(r.status.is_success(), "seed {t}/{id}: {}", r.body);
    };
    // Both patients attend the test tokens' facility, so consent permits what the scopes allow.
    let attends = json!({"reference": format!("Organization/{FACILITY}")});
    put("Patient", "p1", json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-05-05", "managingOrganization": attends})).await;
    put("Patient", "p2", json!({"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1960-01-01", "managingOrganization": attends})).await;
    put("Observation", "o1", obs("o1", "p1", "o1")).await;
    put("Observation", "o2", obs("o2", "p2", "o2")).await;
    put("Observation", "odel", obs("odel", "p1", "odel")).await;
    put("Observation", "ocd", obs("ocd", "p1", "cd")).await;
    put("Observation", "ocu", obs("ocu", "p1", "cu")).await;
}

async fn call(a: &App, token: Option<&str>, r: &Route) -> support::Resp {
    let headers: Vec<(&str, &str)> = r.content_type.iter().map(|c| ("content-type", *c)).collect();
    a.send_as(token, r.method, r.uri, &headers, r.body.clone()).await
}

fn check(route: &Route, label: &str, resp: &support::Resp, want: E) {
    let cell = format!("[{label}] × [{}]", route.name);
    let status = if route.batch && resp.status.is_success() {
        let v = resp.json();
        let s = v["entry"][0]["response"]["status"].as_str().unwrap_or_default().to_string();
        s.split(' ').next().unwrap_or_default().parse::<u16>().unwrap_or(0)
    } else {
        resp.status.as_u16()
    };
    match want {
        E::Ok => assert!((200..300).contains(&status), "{cell}: expected 2xx, got {status}: {}", resp.body),
        E::Unauth => {
            assert_eq!(status, 401, "{cell}: {}", resp.body);
            let challenge = resp.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Bearer realm="), "{cell}: WWW-Authenticate {challenge:?}");
            assert_eq!(resp.json()["resourceType"], "OperationOutcome", "{cell}");
        }
        E::Forbid => {
            assert_eq!(status, 403, "{cell}: {}", resp.body);
            if resp.header("content-type").unwrap_or_default().starts_with("text/html") {
                // The viewer answers with its HTML error page.
                assert!(route.uri.starts_with("/view/") && resp.body.contains("権限"), "{cell}: {}", resp.body);
            } else if !route.batch {
                let v = resp.json();
                assert_eq!(v["issue"][0]["code"], "forbidden", "{cell}: {}", resp.body);
                let d = v["issue"][0]["diagnostics"].as_str().unwrap_or_default();
                assert!(d.contains("scope") || d.contains("patient"), "{cell}: names the missing scope: {d}");
            }
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The six refused tokens: (label, token or none, expected `error_description` fragment).
fn bad_tokens() -> Vec<(&'static str, Option<String>, &'static str)> {
    let key = support::test_key();
    let claims = |iss: &str, aud: &str, exp: u64| {
        json!({"iss": iss, "aud": aud, "sub": "u", "exp": exp, "iat": now() - 10, "scope": "user/*.cruds"})
    };
    let other = DevKey::generate().unwrap();
    vec![
        ("no token", None, ""),
        ("invalid token", Some("not.a.jwt".to_string()), "malformed"),
        ("expired", Some(key.sign(&claims(DEV_ISSUER, DEV_AUDIENCE, now() - 3600)).unwrap()), "expired"),
        ("wrong aud", Some(key.sign(&claims(DEV_ISSUER, "https://other.example/fhir", now() + 600)).unwrap()), "audience"),
        ("wrong iss", Some(key.sign(&claims("https://evil.example", DEV_AUDIENCE, now() + 600)).unwrap()), "issuer"),
        ("unknown kid", Some(other.sign(&claims(DEV_ISSUER, DEV_AUDIENCE, now() + 600)).unwrap()), "kid"),
    ]
}

both_db!(scope_matrix);
async fn scope_matrix(db: Db) {
    let a = support::app(db).await;
    let routes = routes();
    seed(&a).await;
    for (label, token, why) in bad_tokens() {
        for r in &routes {
            let resp = call(&a, token.as_deref(), r).await;
            if r.public {
                assert_eq!(resp.status, 200, "[{label}] × [{}]: {}", r.name, resp.body);
            } else {
                check(r, label, &resp, E::Unauth);
                let challenge = resp.header("www-authenticate").unwrap_or_default();
                if token.is_some() {
                    assert!(challenge.contains("error=\"invalid_token\"") && challenge.contains(why), "[{label}]: {challenge}");
                } else {
                    assert!(!challenge.contains("error="), "no token: no error code (RFC 6750 §3.1): {challenge}");
                }
            }
        }
    }
    for scope in ["user/*.cruds", "system/*.rs", "user/Patient.rs", "user/Observation.r", "patient/*.rs"] {
        let patient = scope.starts_with("patient/").then(|| "p1".to_string());
        let facility = scope.starts_with("user/").then(|| FACILITY.to_string());
        let token = support::token(DevTokenRequest { scope: scope.into(), patient, facility, ..DevTokenRequest::default() });
        let want = expected(scope);
        let protected: Vec<&Route> = routes.iter().filter(|r| !r.public).collect();
        assert_eq!(want.len(), protected.len(), "{scope}: one expectation per protected route");
        for (r, w) in protected.into_iter().zip(want) {
            seed(&a).await;
            let resp = call(&a, Some(&token), r).await;
            check(r, scope, &resp, w);
        }
        for r in routes.iter().filter(|r| r.public) {
            assert_eq!(call(&a, Some(&token), r).await.status, 200, "[{scope}] × [{}]", r.name);
        }
    }
}

both_db!(patient_scope_narrows_searches_and_filters_includes);
/// `patient/` searches return exactly the compartment (and `total` counts only it); `_include`d resources
/// of types the token cannot read are left out.
async fn patient_scope_narrows_searches_and_filters_includes(db: Db) {
    let a = support::app(db).await;
    seed(&a).await;
    let pat = support::token(DevTokenRequest { scope: "patient/*.rs".into(), patient: Some("p1".into()), ..Default::default() });
    let r = a.send_as(Some(&pat), "GET", "/fhir/Observation?_total=accurate", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let ids: Vec<&str> = v["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"o1") && !ids.contains(&"o2"), "{ids:?}");
    assert_eq!(v["total"].as_u64(), Some(ids.len() as u64), "total counts the compartment only");
    // Observation.r + s but no Patient scope: the included Patient is dropped.
    let obs_only = user_token("user/Observation.rs");
    let r = a.send_as(Some(&obs_only), "GET", "/fhir/Observation?_id=o1&_include=Observation:subject", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let types: Vec<&str> = v["entry"].as_array().unwrap().iter().map(|e| e["resource"]["resourceType"].as_str().unwrap()).collect();
    assert_eq!(types, ["Observation"]);
    let all = a.get("/fhir/Observation?_id=o1&_include=Observation:subject").await.json();
    assert_eq!(all["entry"].as_array().unwrap().len(), 2, "with Patient access the include is there");
    // patient/ writes inside the compartment need the write permission, and outside are refused.
    let pat_w = support::token(DevTokenRequest { scope: "patient/Observation.cu".into(), patient: Some("p1".into()), ..Default::default() });
    let ct = [("content-type", "application/fhir+json")];
    let r = a.send_as(Some(&pat_w), "PUT", "/fhir/Observation/o1", &ct, obs("o1", "p1", "o1").to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = a.send_as(Some(&pat_w), "PUT", "/fhir/Observation/o1", &ct, obs("o1", "p2", "o1").to_string()).await;
    assert_eq!(r.status, 403, "moving a resource out of the compartment: {}", r.body);
    let r = a.send_as(Some(&pat_w), "PUT", "/fhir/Observation/o2", &ct, obs("o2", "p1", "o2").to_string()).await;
    assert_eq!(r.status, 403, "taking over another patient's resource: {}", r.body);
}

both_db!(denials_are_attached_for_audit);
/// Every 401/403 carries an `auth::Denial` in the response extensions (for the audit layer).
async fn denials_are_attached_for_audit(db: Db) {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let a = support::app(db).await;
    seed(&a).await;
    let send = |token: Option<String>, uri: &'static str| {
        let router = a.router.clone();
        async move {
            let mut b = Request::builder().uri(uri);
            if let Some(t) = token {
                b = b.header("authorization", format!("Bearer {t}"));
            }
            router.oneshot(b.body(Body::empty()).unwrap()).await.unwrap()
        }
    };
    let r = send(None, "/fhir/Patient/p1").await;
    let d = r.extensions().get::<tobiume_gateway::auth::Denial>().expect("401 denial");
    assert_eq!(d.status, 401);
    assert!(d.principal.is_none());
    let t = user_token("user/Patient.rs");
    let r = send(Some(t.clone()), "/fhir/Observation/o1").await;
    let d = r.extensions().get::<tobiume_gateway::auth::Denial>().expect("403 denial (access decision point)");
    assert_eq!(d.status, 403);
    assert!(d.reason.contains("Observation.r"), "{}", d.reason);
    assert_eq!(d.principal.as_ref().unwrap().subject, "dev-user");
    let r = send(Some(user_token("user/Observation.r")), "/fhir/Patient/p1/$summary").await;
    assert_eq!(r.status(), 403);
    assert!(r.extensions().get::<tobiume_gateway::auth::Denial>().is_some(), "403 denial (operation scope)");
    let r = send(Some(t), "/fhir/Patient/p1").await;
    assert_eq!(r.status(), 200);
    assert!(r.extensions().get::<tobiume_gateway::auth::Denial>().is_none());
}

both_db!(discovery_and_capability_security);
/// SMART discovery JSON and `CapabilityStatement.rest.security`; with authentication disabled every
/// route is open (and discovery is 404).
async fn discovery_and_capability_security(db: Db) {
    let a = support::app(db).await;
    let v = a.get("/.well-known/smart-configuration").await.json();
    assert_eq!(v["issuer"], DEV_ISSUER);
    assert!(v["capabilities"].as_array().unwrap().contains(&json!("permission-v2")));
    assert!(v["scopes_supported"].as_array().unwrap().contains(&json!("patient/*.rs")));
    let cs = a.send_as(None, "GET", "/fhir/metadata", &[], "").await.json();
    assert_eq!(cs["rest"][0]["security"]["service"][0]["coding"][0]["code"], "SMART-on-FHIR");

    let (store, registry, guard) = support::store(db).await;
    let cfg = ApiConfig { auth: std::sync::Arc::new(tobiume_gateway::auth::Authenticator::disabled()), ..ApiConfig::default() };
    let open = App::new_with_auth(store, registry, cfg, guard);
    open.send_as(None, "GET", "/.well-known/smart-configuration", &[], "").await.assert_outcome(404);
    let r = open.send_as(None, "PUT", "/fhir/Patient/p1", &[("content-type", "application/fhir+json")], r#"{"resourceType":"Patient","id":"p1"}"#).await;
    assert!(r.status.is_success(), "{}", r.body);
    assert_eq!(open.send_as(None, "GET", "/fhir/Patient/p1", &[], "").await.status, 200);
    let cs = open.send_as(None, "GET", "/fhir/metadata", &[], "").await.json();
    assert!(cs["rest"][0].get("security").is_none());

    // The library default (jwt without issuers) refuses everything protected.
    let (store, registry, guard) = support::store(db).await;
    let closed = App::new_with_auth(store, registry, ApiConfig::default(), guard);
    assert_eq!(closed.get("/fhir/Patient/p1").await.status, 401);
    assert_eq!(closed.get("/health").await.status, 200);
}
