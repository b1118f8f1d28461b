//! End-to-end search through the real pipeline: resources written through the store are indexed by
//! `search::index::extract`, URL parameters are parsed by `search::query::parse`, and the store plans the
//! SQL — on SQLite and PostgreSQL alike (FHIR R4 search.html; JP Core names and identifiers).

#[path = "common/pg.rs"]
mod pg;

use tobiume_gateway::search::{query, Registry};
use tobiume_gateway::store::{ResourceStore, Store};

async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display());
    (Store::connect(&url).await.expect("open sqlite store"), dir)
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (s, _dir) = super::sqlite_store().await;
                super::$name(&s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(url) = super::pg::fresh_database_url().await {
                    let s = tobiume_gateway::store::Store::connect(&url).await.expect("open pg store");
                    super::$name(&s).await;
                }
            }
        }
    };
}

/// Runs `Type?a=b&c=d` and returns the ids of the matches (in result order).
async fn ids(s: &Store, reg: &Registry, rt: &str, qs: &[(&str, &str)]) -> Vec<String> {
    let params: Vec<(String, String)> = qs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let q = query::parse(reg, rt, &params).unwrap_or_else(|e| panic!("parse {qs:?}: {e}"));
    s.search(&q).await.unwrap_or_else(|e| panic!("search {qs:?}: {e}")).matches.into_iter().map(|r| r.id).collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const MRN: &str = "urn:oid:1.2.392.100495.20.3.51.11311234567";

async fn seed(s: &Store) {
    let patients = [
        ("p1", "山田", "太郎", "ヤマダ", "タロウ", "male", "1970-01-01", "00001"),
        ("p2", "山田", "花子", "ヤマダ", "ハナコ", "female", "1985-05-05", "00002"),
        ("p3", "佐藤", "次郎", "サトウ", "ジロウ", "male", "", "00003"),
    ];
    for (id, fam, given, kfam, kgiven, gender, bd, mrn) in patients {
        let birth = if bd.is_empty() { String::new() } else { format!(r#","birthDate":"{bd}""#) };
        let body = format!(
            r#"{{"resourceType":"Patient","id":"{id}","identifier":[{{"system":"{MRN}","value":"{mrn}"}}],"name":[{{"use":"official","text":"{fam} {given}","family":"{fam}","given":["{given}"]}},{{"extension":[{{"url":"http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation","valueCode":"SYL"}}],"use":"official","text":"{kfam} {kgiven}","family":"{kfam}","given":["{kgiven}"]}}],"gender":"{gender}"{birth}}}"#
        );
        s.update_raw("Patient", id, &body, None).await.unwrap();
    }
    let obs = [
        ("o1", "p1", "2345-7", "2024-01-01T10:00:00+09:00", "1.50", "mmol/L"),
        ("o2", "p1", "2345-7", "2024-02-01T10:00:00+09:00", "3.0", "mmol/L"),
        ("o3", "p2", "718-7", "2024-03-01T10:00:00+09:00", "100", "mg/dL"),
    ];
    for (id, pid, code, date, value, unit) in obs {
        let body = format!(
            r#"{{"resourceType":"Observation","id":"{id}","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"{code}"}}]}},"subject":{{"reference":"Patient/{pid}"}},"effectiveDateTime":"{date}","valueQuantity":{{"value":{value},"unit":"{unit}","system":"http://unitsofmeasure.org","code":"{unit}"}}}}"#
        );
        s.update_raw("Observation", id, &body, None).await.unwrap();
    }
}

both!(search_end_to_end);
async fn search_end_to_end(s: &Store) {
    let reg = Registry::standard();
    seed(s).await;
    // string (kanji, kana; starts-with), AND with date
    assert_eq!(ids(s, &reg, "Patient", &[("family", "山田")]).await, strs(&["p1", "p2"]));
    assert_eq!(ids(s, &reg, "Patient", &[("name", "ヤマダ")]).await, strs(&["p1", "p2"]));
    assert_eq!(ids(s, &reg, "Patient", &[("name", "山田"), ("birthdate", "1970-01-01")]).await, strs(&["p1"]));
    assert_eq!(ids(s, &reg, "Patient", &[("name:exact", "佐藤")]).await, strs(&["p3"]));
    assert_eq!(ids(s, &reg, "Patient", &[("name:contains", "ハナ")]).await, strs(&["p2"]));
    // date prefixes, :missing
    assert_eq!(ids(s, &reg, "Patient", &[("birthdate", "ge1980")]).await, strs(&["p2"]));
    assert_eq!(ids(s, &reg, "Patient", &[("birthdate", "lt1980-01-01")]).await, strs(&["p1"]));
    assert_eq!(ids(s, &reg, "Patient", &[("birthdate:missing", "true")]).await, strs(&["p3"]));
    // token: identifier with urn:oid system, gender, :not
    assert_eq!(ids(s, &reg, "Patient", &[("identifier", &format!("{MRN}|00002"))]).await, strs(&["p2"]));
    assert_eq!(ids(s, &reg, "Patient", &[("gender", "male")]).await, strs(&["p1", "p3"]));
    assert_eq!(ids(s, &reg, "Patient", &[("gender:not", "male")]).await, strs(&["p2"]));
    // reference + token + _sort=-date
    assert_eq!(
        ids(s, &reg, "Observation", &[("patient", "Patient/p1"), ("code", "http://loinc.org|2345-7"), ("_sort", "-date")]).await,
        strs(&["o2", "o1"])
    );
    assert_eq!(ids(s, &reg, "Observation", &[("subject", "p2")]).await, strs(&["o3"]));
    // quantity with precision: 1.5 matches the stored 1.50; units
    assert_eq!(ids(s, &reg, "Observation", &[("value-quantity", "1.5")]).await, strs(&["o1"]));
    assert_eq!(ids(s, &reg, "Observation", &[("value-quantity", "gt2||mmol/L")]).await, strs(&["o2"]));
    assert_eq!(ids(s, &reg, "Observation", &[("value-quantity", "100|http://unitsofmeasure.org|mg/dL")]).await, strs(&["o3"]));
    // date on Observation (dateTime with +09:00)
    assert_eq!(ids(s, &reg, "Observation", &[("date", "2024-02")]).await, strs(&["o2"]));
    // chain
    assert_eq!(ids(s, &reg, "Observation", &[("subject:Patient.name", "花子")]).await, strs(&["o3"]));
    assert_eq!(ids(s, &reg, "Observation", &[("patient.birthdate", "1970-01-01")]).await, strs(&["o1", "o2"]));
    // _include / _revinclude, _total
    let params = vec![("_id".to_string(), "o3".to_string()), ("_include".to_string(), "Observation:patient".to_string())];
    let page = s.search(&query::parse(&reg, "Observation", &params).unwrap()).await.unwrap();
    assert_eq!(page.included.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["p2"]);
    let params = vec![
        ("_id".to_string(), "p1".to_string()),
        ("_revinclude".to_string(), "Observation:subject".to_string()),
        ("_total".to_string(), "accurate".to_string()),
    ];
    let page = s.search(&query::parse(&reg, "Patient", &params).unwrap()).await.unwrap();
    assert_eq!(page.total, Some(1));
    let mut inc: Vec<_> = page.included.iter().map(|r| r.id.clone()).collect();
    inc.sort();
    assert_eq!(inc, strs(&["o1", "o2"]));
    // paging
    assert_eq!(ids(s, &reg, "Patient", &[("_sort", "-_id"), ("_count", "1"), ("_offset", "1")]).await, strs(&["p2"]));
    // an update re-indexes, a delete removes from search
    let (_, _) = s
        .update_raw("Patient", "p3", r#"{"resourceType":"Patient","id":"p3","gender":"female","birthDate":"2001-02-03"}"#, None)
        .await
        .unwrap();
    assert_eq!(ids(s, &reg, "Patient", &[("gender", "male")]).await, strs(&["p1"]));
    assert_eq!(ids(s, &reg, "Patient", &[("birthdate", "2001-02-03")]).await, strs(&["p3"]));
    s.delete("Observation", "o1").await.unwrap();
    assert_eq!(ids(s, &reg, "Observation", &[("patient", "Patient/p1")]).await, strs(&["o2"]));
    // _lastUpdated
    assert_eq!(ids(s, &reg, "Observation", &[("_lastUpdated", "gt2000-01-01")]).await, strs(&["o2", "o3"]));
}
