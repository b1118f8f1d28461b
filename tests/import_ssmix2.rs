//! `import ssmix2` of the real SS-MIX2 fixture into SQLite and into PostgreSQL, then the searches an EHR
//! sends through the REST API (issue "FHIR R4 server … and SS-MIX2 import", Must show), and idempotent
//! re-import.

#[macro_use]
#[path = "common/api_support.rs"]
mod support;

use std::path::{Path, PathBuf};
use support::Db;
use tobiume_gateway::api::ApiConfig;
use tobiume_gateway::import::{import_ssmix2, ImportOptions};

fn shared(p: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")).join(p)
}

fn ids(b: &serde_json::Value) -> Vec<String> {
    b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| format!("{}/{}", e["resource"]["resourceType"].as_str().unwrap(), e["resource"]["id"].as_str().unwrap()))
        .collect()
}

both_db!(import_real_fixture_then_search_like_an_ehr);
async fn import_real_fixture_then_search_like_an_ehr(db: Db) {
    let (store, registry, guard) = support::store(db).await;
    let dir = guard.dir.path().to_path_buf();
    let opts = ImportOptions { quarantine: Some(dir.join("quarantine")), ..ImportOptions::default() };
    let first = import_ssmix2(&store, &shared("fixtures/ssmix2-real"), &opts, |_| {}).await.unwrap();
    assert!(first.conversion.failed >= 1, "the broken file is reported");
    assert!(first.store.created > 50);
    let report = std::fs::read_to_string(dir.join("quarantine/report.ndjson")).unwrap();
    assert!(report.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));

    // Re-import changes nothing.
    let second = import_ssmix2(&store, &shared("fixtures/ssmix2-real"), &opts, |_| {}).await.unwrap();
    assert_eq!(second.store.created + second.store.updated + second.store.deleted, 0, "{:?}", second.store);
    assert!(second.unchanged_files >= 19);

    let app = support::App::new(store, registry, ApiConfig::default(), guard);
    let pid = "9999013.ADT-00";
    for q in [
        "/fhir/Patient?name=%E3%82%AB%E3%83%B3%E3%82%B8%E3%83%A3&birthdate=1948-04-05", // カンジャ
        "/fhir/Patient?name=%E3%81%8B%E3%82%93%E3%81%98%E3%82%83",                     // かんじゃ (hiragana)
        "/fhir/Patient?name=%E3%82%AB%E3%83%B3%E3%82%B8%E3%83%A3%E3%82%BF%E3%83%AD%E3%82%A6", // カンジャタロウ
        "/fhir/Patient?name=%E6%82%A3%E8%80%85",                                       // 患者 (kanji)
    ] {
        let b = app.get(q).await.json();
        assert_eq!(ids(&b), vec![format!("Patient/{pid}")], "{q}");
    }
    let b = app.get(&format!("/fhir/Condition?patient={pid}&code=20054174")).await.json();
    assert_eq!(ids(&b).len(), 1, "胃炎 by MEDIS code");
    let b = app.get(&format!("/fhir/AllergyIntolerance?patient={pid}")).await.json();
    assert_eq!(ids(&b).len(), 5, "4 IAM + 1 AL1");
    let b = app.get(&format!("/fhir/MedicationRequest?patient={pid}&_include=MedicationRequest:medication")).await.json();
    assert_eq!(ids(&b).len(), 6, "3 oral + 3 injection orders (medications are contained)");
    let b = app
        .get(&format!("/fhir/Observation?patient={pid}&code=http://medis.or.jp/CodeSystem/master-JLAC10-17digits%7C3A010000002327101&_sort=-date"))
        .await
        .json();
    let obs = b["entry"][0]["resource"].clone();
    assert_eq!(obs["valueQuantity"]["value"].to_string(), "7.2");
    assert!(serde_json::to_string(&obs).unwrap().contains(r#""value":6.70"#), "precision kept through the store");
}
