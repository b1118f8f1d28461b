//! The `register` command line on SQLite and PostgreSQL: `register json FILE` (the simple registration
//! JSON, de-duplicated like `$register`) and `register receipt-csv FILE` (the receipt-derived CSV of
//! diagnoses and drugs merged into existing registrations: main diagnoses up to 5, the rest into the
//! history; drugs as MedicationStatements; unknown patients reported, never created; per-row errors
//! with row numbers while the rest goes on). The results are checked through the REST API.

#[macro_use]
#[path = "common/api_support.rs"]
mod support;
mod register_support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use register_support::{example, ids, ohno, pct};
use serde_json::{json, Value};
use support::{App, Db};
use tobiume_gateway::api::ApiConfig;
use tobiume_gateway::search::Registry;
use tobiume_gateway::store::Store;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tobiume-gateway"))
        .args(args)
        .env("TOBIUME_LOG", "warn")
        .output()
        .expect("run tobiume-gateway");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn cli_async(args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || cli(&args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap()
}

fn write(dir: &Path, name: &str, text: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// An app over the database the CLI wrote to.
async fn app_on(url: &str, db: support::DbGuard) -> App {
    let registry = Arc::new(Registry::standard());
    let store = Store::connect_with_registry(url, registry.clone()).await.unwrap();
    App::new(store, registry, ApiConfig::default(), db)
}

fn minimal(card: &str) -> Value {
    let mut v = ohno(card);
    let o = v.as_object_mut().unwrap();
    for k in ["mainDiagnoses", "history", "prescriptions", "prescriptionText"] {
        o.remove(k);
    }
    v
}

both_db!(register_json_cli);
async fn register_json_cli(db: Db) {
    let g = support::database(db).await;
    let url = g.url.clone();
    let f = write(g.dir.path(), "reg.json", example().to_string().as_bytes());
    let r = cli_async(vec!["register".into(), "json".into(), f.clone(), "--database".into(), url.clone()]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(line["patient"], "Patient/tobiume-TB-40-0012345");
    assert_eq!(line["status"], "created");
    assert_eq!(line["matched"], "new");
    // again: unchanged
    let r = cli_async(vec!["register".into(), "json".into(), f, "--database".into(), url.clone()]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(line["status"], "unchanged", "{line}");
    assert_eq!(line["matched"], "card-id");
    // invalid: exit 1, issues with JSON paths on stderr, no values
    let mut bad = example();
    bad["demographics"]["birthDate"]["value"] = json!("昭和13年");
    let fb = write(g.dir.path(), "bad.json", bad.to_string().as_bytes());
    let r = cli_async(vec!["register".into(), "json".into(), fb, "--database".into(), url.clone()]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("\"expression\":\"demographics.birthDate.value\""), "{}", r.stderr);
    assert!(!r.stderr.contains("昭和"), "{}", r.stderr);
    let r = cli_async(vec!["register".into(), "json".into(), "/nonexistent.json".into(), "--database".into(), url.clone()]).await;
    assert_eq!(r.code, 1);

    let a = app_on(&url, g).await;
    let b = a.get("/fhir/Patient?birthdate=1938-03-14").await.json();
    assert_eq!(ids(&b), ["tobiume-TB-40-0012345"]);
}

both_db!(receipt_csv_cli_merges_into_registrations);
async fn receipt_csv_cli_merges_into_registrations(db: Db) {
    let g = support::database(db).await;
    let url = g.url.clone();
    // two registered patients: 大野 (no diagnoses, no drugs) and 梅野 花子 (the example: 5 main diagnoses)
    for (name, form) in [("a.json", minimal("TB-1")), ("b.json", example())] {
        let f = write(g.dir.path(), name, form.to_string().as_bytes());
        let r = cli_async(vec!["register".into(), "json".into(), f, "--database".into(), url.clone()]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let csv = "\
card_id,name_kana,birth_date,kind,code_system,code,name,start_date,source
TB-1,,,病名,,20054174,2型糖尿病,2019-04-01,北九州市国保レセプト
TB-1,,,病名,icd10,I10,高血圧症,2019/04/01,北九州市国保レセプト
,おーの しょーへい,1950-05-05,病名,,8830052,脂質異常症,20200110,北九州市国保レセプト
TB-1,,,病名,,,慢性胃炎,,北九州市国保レセプト
TB-1,,,病名,,,便秘症,,北九州市国保レセプト
TB-1,,,病名,,,不眠症,,北九州市国保レセプト
TB-1,,,病名,,,腰痛症,2021-06-01,北九州市国保レセプト
TB-1,,,薬剤,yj,2149039F1022,アムロジピン錠5mg,2020-01-10,北九州市国保レセプト
,ｵｵﾉ ｼｮｳﾍｲ,19500505,薬剤,,620004441,メトホルミン塩酸塩錠250mg,,北九州市国保レセプト
TB-1,,,病名,,,２型糖尿病,,北九州市国保レセプト
TB-99,,,病名,,,高血圧症,,北九州市国保レセプト
,ヤマダ タロウ,1940-01-01,薬剤,,,ロキソニン錠,,北九州市国保レセプト
TB-1,,,処置,,,湿布,,北九州市国保レセプト
TB-40-0012345,,,病名,,,骨粗鬆症,2022-02-02,北九州市国保レセプト
TB-40-0012345,,,薬剤,,,アムロジピン錠5mg,,北九州市国保レセプト
";
    let f = write(g.dir.path(), "receipt.csv", csv.as_bytes());
    let run = vec!["register".into(), "receipt-csv".into(), f.clone(), "--database".into(), url.clone(), "--date".into(), "2026-11-01".into()];
    let r = cli_async(run.clone()).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    let errors: Vec<Value> =
        r.stderr.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    let err_rows: Vec<u64> = errors.iter().filter(|e| e.get("error").is_some()).map(|e| e["row"].as_u64().unwrap()).collect();
    assert_eq!(err_rows, [12, 13, 14], "{}", r.stderr); // unknown card, unknown person, unknown kind
    let warn_rows: Vec<u64> = errors.iter().filter(|e| e.get("warning").is_some()).map(|e| e["row"].as_u64().unwrap()).collect();
    assert_eq!(warn_rows, [10], "{}", r.stderr); // レセ電 drug code kept by name
    assert!(!r.stderr.contains("ヤマダ") && !r.stderr.contains("TB-99"), "no values in errors: {}", r.stderr);
    let summary = r.stderr.lines().find(|l| l.starts_with("summary:")).unwrap();
    assert!(
        summary.contains("rows=15 main_diagnoses=5 history=3 prescriptions=2 duplicates=2 patients_updated=2 failed=3"),
        "{summary}"
    );

    // the same file again: everything is already there (the bad rows still fail), nothing written
    let r2 = cli_async(run).await;
    assert_eq!(r2.code, 2);
    assert!(r2.stderr.contains("main_diagnoses=0 history=0 prescriptions=0 duplicates=12 patients_updated=0 failed=3"), "{}", r2.stderr);

    let a = app_on(&url, g).await;
    // 大野: 5 main diagnoses (JP_Condition), the 6th into the history; 2 drugs
    let conds = a.get("/fhir/Condition?patient=Patient/tobiume-TB-1&_count=50").await.json();
    let names: Vec<String> =
        conds["entry"].as_array().unwrap().iter().map(|e| e["resource"]["code"]["text"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    for n in ["2型糖尿病", "高血圧症", "脂質異常症", "慢性胃炎", "便秘症"] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
    let dm = conds["entry"].as_array().unwrap().iter().find(|e| e["resource"]["code"]["text"] == "2型糖尿病").unwrap();
    assert!(dm["resource"]["code"]["coding"].to_string().contains("20054174"), "{dm}");
    assert_eq!(dm["resource"]["onsetDateTime"], "2019-04-01", "{dm}");
    let hist = a.get("/fhir/Observation/tobiume-TB-1-history").await.json();
    let text = hist["valueString"].as_str().unwrap();
    assert!(text.contains("不眠症") && text.contains("腰痛症 開始日 2021-06-01 (北九州市国保レセプト)"), "{text}");
    let meds = a.get("/fhir/MedicationStatement?patient=Patient/tobiume-TB-1").await.json();
    assert_eq!(ids(&meds).len(), 2, "{meds}");
    assert!(meds.to_string().contains("2149039F1022") && meds.to_string().contains("メトホルミン塩酸塩錠250mg"));
    // 梅野 花子 already had 5 main diagnoses: 骨粗鬆症 went to the history; アムロジピン was already prescribed
    let hist = a.get("/fhir/Observation/tobiume-TB-40-0012345-history").await.json();
    assert!(hist["valueString"].as_str().unwrap().contains("骨粗鬆症 開始日 2022-02-02"), "{hist}");
    let conds = a.get("/fhir/Condition?patient=Patient/tobiume-TB-40-0012345").await.json();
    assert_eq!(ids(&conds).len(), 5);
    // no patient was created for the unknown rows
    let all = a.get(&format!("/fhir/Patient?name={}", pct("ヤマダ"))).await.json();
    assert!(ids(&all).is_empty());
    let all = a.get("/fhir/Patient?_total=accurate").await.json();
    assert_eq!(all["total"], 2);
}

both_db!(receipt_csv_cli_file_errors);
async fn receipt_csv_cli_file_errors(db: Db) {
    let g = support::database(db).await;
    let url = g.url.clone();
    let f = write(g.dir.path(), "bad.csv", b"card_id,kind,nam\nTB-1,x,y\n");
    let r = cli_async(vec!["register".into(), "receipt-csv".into(), f, "--database".into(), url.clone()]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("header column 3"), "{}", r.stderr);
    // Shift_JIS, Japanese headers, nobody registered: the row is reported
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("カードID,種別,名称\r\nTB-1,薬剤,ロキソニン錠\r\n");
    let f = write(g.dir.path(), "sjis.csv", &sjis);
    let r = cli_async(vec!["register".into(), "receipt-csv".into(), f, "--database".into(), url.clone()]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("\"row\":2"), "{}", r.stderr);
}
