//! No PHI in logs (issue "Security …", Must show): a scenario touching every kind of patient data path —
//! SS-MIX2 import (CLI), registration (`$register`), searches by name and birth date, reads, `$summary`,
//! `$match`, the viewer, invalid resources and malformed JSON that carry PHI, PHI in the URL path and
//! query, failed authentication and forbidden access — runs with the server logging at `debug` (more than
//! production's `info`), then the server log and the importer's output are searched for the patients'
//! names (kanji, katakana, hiragana), birth dates (both formats), phone numbers, address and insurance
//! numbers. Any hit fails with the offending line.

#[path = "common/serve.rs"]
mod serve;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

/// PHI of the two patients of the scenario: the SS-MIX2 fixture's 患者 太郎 and the registration
/// example's 梅野 花子.
const PHI: &[&str] = &[
    // SS-MIX2 fixture patient 9999013 (PID-5, PID-7, PID-11, PID-13)
    "患者", "太郎", "カンジャ", "タロウ", "かんじゃ", "1948-04-05", "19480405", "054-000-0000", "登呂",
    // registration example (conformance/registration.example.json)
    "梅野", "花子", "ウメノ", "ハナコ", "うめの", "1938-03-14", "19380314", "12345678", "090-1234-5678",
    "092-711-0000", "梅野 一郎",
];

fn fixture() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/ssmix2-real"))
}

fn scan(what: &str, text: &str) {
    let hits: Vec<String> = text
        .lines()
        .filter(|l| PHI.iter().any(|p| l.contains(p)))
        .map(|l| l.chars().take(300).collect())
        .collect();
    assert!(hits.is_empty(), "PHI found in {what}:\n{}", hits.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_logs_no_names_birth_dates_or_insurance_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("phi.db").display());

    // 1. Import the real SS-MIX2 fixture with the CLI (logging at debug).
    let import = Command::new(env!("CARGO_BIN_EXE_tobiume-gateway"))
        .args(["import", "ssmix2"])
        .arg(fixture())
        .args(["--database", &db, "--quiet", "--quarantine"])
        .arg(dir.path().join("quarantine"))
        .env("TOBIUME_LOG", "debug")
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .output()
        .expect("run import");
    let import_out = format!("{}{}", String::from_utf8_lossy(&import.stdout), String::from_utf8_lossy(&import.stderr));
    assert!(import.status.code().is_some_and(|c| c == 0 || c == 2), "import failed:\n{import_out}");

    // 2. Serve the same store (`Server::start("phi")` uses dir/phi.db) at debug level.
    let server = serve::Server::start("phi", dir.path(), &[("TOBIUME_LOG", "debug")]);
    let base = format!("{}/fhir", server.base);
    // The registering clinic of the example form (it attends 梅野 花子, so consent permits it), and a
    // patient-context token for the fixture's 患者 太郎 (no facility attends him).
    const CLINIC: &str = "tobiume-TB-40-0012345-org-registering-clinic";
    const FIXTURE_PATIENT: &str = "9999013.ADT-00";
    let token = server.token("user/*.cruds", &["--facility", CLINIC]);
    let own = server.token("patient/*.rs", &["--patient", FIXTURE_PATIENT]);
    let http = reqwest::Client::new();
    let auth = format!("Bearer {token}");
    let get = |path: String| {
        let (http, auth, base) = (http.clone(), auth.clone(), base.clone());
        async move {
            let res = http.get(format!("{base}{path}")).header("authorization", auth).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.text().await.unwrap_or_default())
        }
    };
    let post = |path: String, ct: &'static str, body: String| {
        let (http, auth, base) = (http.clone(), auth.clone(), base.clone());
        async move {
            let res = http
                .post(format!("{base}{path}"))
                .header("authorization", auth)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.text().await.unwrap_or_default())
        }
    };

    // Registration of 梅野 花子 (the example form, with insurance and emergency contacts).
    let form = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/registration.example.json")).unwrap();
    let (s, body) = post("/Patient/$register".into(), "application/json", form.clone()).await;
    assert!(s == 200 || s == 201, "$register: {s} {body}");
    // The same form again (de-duplication path).
    let (s, _) = post("/Patient/$register".into(), "application/json", form).await;
    assert!(s == 200 || s == 201, "$register again: {s}");

    // Searches by PHI in the query string; reads; history; summary; viewer.
    for q in [
        "/Patient?name=カンジャ&birthdate=1948-04-05",
        "/Patient?name=かんじゃ",
        "/Patient?name=患者 太郎",
        "/Patient?name=ウメノ&birthdate=1938-03-14",
        "/Patient?name:contains=梅野&_include=Patient:organization",
        "/Patient?telecom=090-1234-5678",
        "/Patient?birthdate=lt1940-01-01&_sort=-birthdate&_count=5",
    ] {
        let (s, _) = get(q.to_string()).await;
        assert!(s < 500, "{q}: {s}");
    }
    let (s, bundle) = get("/Patient?name=ウメノ&birthdate=1938-03-14".into()).await;
    let found: Value = serde_json::from_str(&bundle).unwrap_or(Value::Null);
    let pid = found["entry"][0]["resource"]["id"].as_str().unwrap_or_default().to_string();
    assert!(s == 200 && !pid.is_empty(), "the registering clinic finds its patient: {s} {bundle}");
    // The fixture patient's own reads (patient context), through the same paths.
    for p in [
        format!("/Patient/{FIXTURE_PATIENT}"),
        format!("/Patient/{FIXTURE_PATIENT}/$summary?mode=emergency"),
        format!("/Condition?patient={FIXTURE_PATIENT}&code=20054174"),
        format!("/Observation?patient={FIXTURE_PATIENT}&_sort=-date&_count=5"),
        format!("/AllergyIntolerance?patient={FIXTURE_PATIENT}"),
    ] {
        let res = http.get(format!("{base}{p}")).header("authorization", format!("Bearer {own}")).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{p} with the patient's own token");
    }
    for p in [
        format!("/Patient/{pid}"),
        format!("/Patient/{pid}/_history"),
        format!("/Patient/{pid}/$summary?mode=emergency"),
        format!("/Patient/{pid}/$summary?mode=multidisciplinary"),
        format!("/Condition?patient={pid}"),
        format!("/AllergyIntolerance?patient={pid}"),
        format!("/Patient/{FIXTURE_PATIENT}"),
        "/Patient/$summary?identifier=http://example.org/x|12345678".to_string(),
        "/Patient/梅野花子".to_string(),
        "/Patient?name=梅野&birthdate=notadate-1938-03-14".to_string(),
    ] {
        let (s, _) = get(p.clone()).await;
        assert!(s < 500, "{p}: {s}");
    }
    let view = http.get(format!("{}/view/patient/{pid}", server.base)).header("authorization", &auth).send().await.unwrap();
    assert!(view.status().as_u16() < 500);

    // $match with PHI in the body.
    let m = json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient",
        "name": [{"family": "梅野", "given": ["花子"]}], "birthDate": "1938-03-14", "gender": "female"}}]});
    let (s, _) = post("/Patient/$match".into(), "application/fhir+json", m.to_string()).await;
    assert!(s < 500, "$match: {s}");

    // Invalid resources and malformed JSON carrying PHI: 4xx, and the log must not echo them.
    let bad = json!({"resourceType": "Patient", "name": [{"family": "梅野", "given": ["花子"]}], "birthDate": "1938-03-14",
        "gender": "girl", "telecom": [{"system": "phone", "value": "090-1234-5678"}]});
    let (s, _) = post("/Patient".into(), "application/fhir+json", bad.to_string()).await;
    assert!((400..500).contains(&s), "invalid Patient: {s}");
    let (s, _) = post("/Patient".into(), "application/fhir+json", r#"{"resourceType":"Patient","name":[{"family":"梅野" "#.into()).await;
    assert_eq!(s, 400, "malformed JSON");
    let (s, _) = post("/Patient/$register".into(), "application/json", r#"{"demographics":{"nameKanji":"梅野 花子","birthDate":"1938-03-14"}}"#.into()).await;
    assert!((400..500).contains(&s), "bad registration: {s}");

    // Failed authentication (a bogus token that contains PHI) and a forbidden facility.
    let res = http
        .get(format!("{base}/Patient?name=ウメノ"))
        .header("authorization", "Bearer 梅野花子-1938-03-14")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    // (梅野 花子's registration carries a blanket consent, so the forbidden read is of 患者 太郎, whom no
    // facility attends and who has no consent.)
    let other = server.token("user/*.rs", &["--facility", "no-such-clinic"]);
    let res = http
        .get(format!("{base}/Patient/{FIXTURE_PATIENT}"))
        .header("authorization", format!("Bearer {other}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);

    // 3. The logs.
    let log = server.log_text();
    assert!(log.lines().count() > 10, "the server logged almost nothing — the scan would prove nothing:\n{log}");
    assert!(log.contains("/fhir/{type}"), "route templates are logged (the scan covers request logs):\n{log}");
    scan("the server log", &log);
    scan("the importer's output", &import_out);
}
