//! SS-MIX2 → JP Core conversion on the real and synthetic fixtures in `../shared/fixtures`, asserting
//! what a clinician would check (issue "SS-MIX2 / HL7 v2.5 → JP Core FHIR", Must show).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use tobiume_gateway::mapping::ssmix2::convert::{convert_patient, ConvertOptions, FileStatus, IdentityMode, Summary};
use tobiume_gateway::ssmix2::walk_patients;

fn shared(p: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")).join(p)
}

const REAL: &str = "fixtures/ssmix2-real/999/901/9999013";

struct Run {
    resources: Vec<Value>,
    summary: Summary,
    warnings: Vec<(String, String)>,
    failed: Vec<(PathBuf, String)>,
}

fn run(path: &Path, opts: &ConvertOptions) -> Run {
    let mut r = Run { resources: vec![], summary: Summary::default(), warnings: vec![], failed: vec![] };
    for p in walk_patients(path) {
        let Ok(p) = p else {
            r.summary.files += 1;
            r.summary.failed += 1;
            continue;
        };
        for f in convert_patient(&p, opts) {
            r.summary.add(&f);
            for w in &f.warnings {
                r.warnings.push((f.data_type.clone(), w.clone()));
            }
            match &f.status {
                FileStatus::Converted => r.resources.extend(f.resources.iter().cloned()),
                FileStatus::Failed(e) => r.failed.push((f.path.clone(), e.error.clone())),
                _ => {}
            }
        }
    }
    r
}

fn of_type<'a>(rs: &'a [Value], t: &str) -> Vec<&'a Value> {
    rs.iter().filter(|r| r["resourceType"] == t).collect()
}

fn codes(cc: &Value) -> Vec<(String, String)> {
    cc["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["system"].as_str().unwrap_or("").to_string(), c["code"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn real_patient_converts_every_data_type() {
    let r = run(&shared(REAL), &ConvertOptions::default());
    assert_eq!(r.summary.files, 19, "19 data types in the real sample");
    assert_eq!(r.summary.converted, 19, "failed: {:?}", r.failed);
    assert_eq!(r.summary.failed, 0);
    // Every resource: resourceType, id, meta.profile; ids unique per type.
    let mut seen = std::collections::HashSet::new();
    for res in &r.resources {
        let t = res["resourceType"].as_str().unwrap();
        let id = res["id"].as_str().unwrap();
        assert!(id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'), "{id}");
        assert!(seen.insert(format!("{t}/{id}")), "duplicate {t}/{id}");
        assert!(res["meta"]["profile"][0].as_str().is_some_and(|p| p.starts_with("http")), "{t}/{id} has no profile");
    }
    for t in [
        "Patient", "Encounter", "AllergyIntolerance", "Condition", "Coverage", "MedicationRequest",
        "MedicationAdministration", "NutritionOrder", "ServiceRequest", "Specimen", "DiagnosticReport",
        "Observation", "ImagingStudy", "Procedure",
    ] {
        assert!(!of_type(&r.resources, t).is_empty(), "no {t}");
    }
}

#[test]
fn every_resource_is_valid_against_the_r4_json_schema() {
    let r = run(&shared(REAL), &ConvertOptions::default());
    let twins = run(&shared("fixtures/ssmix2-twins"), &ConvertOptions::default());
    for res in r.resources.iter().chain(twins.resources.iter()) {
        if let Err(issues) = tobiume_gateway::validation::schema::check(res) {
            panic!("{}/{} invalid: {:?}", res["resourceType"], res["id"], issues);
        }
    }
}

#[test]
fn patient_demographics_from_adt00() {
    let r = run(&shared(REAL), &ConvertOptions::default());
    let p = of_type(&r.resources, "Patient");
    assert_eq!(p.len(), 1, "demographics only from ADT-00");
    let p = p[0];
    assert_eq!(p["id"], "9999013.ADT-00");
    assert_eq!(p["meta"]["profile"][0], "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient");
    assert_eq!(p["birthDate"], "1948-04-05");
    assert_eq!(p["gender"], "male");
    let names = p["name"].as_array().unwrap();
    let rep = |n: &Value| n["extension"][0]["valueCode"].as_str().unwrap_or("").to_string();
    let kanji = names.iter().find(|n| rep(n) == "IDE").unwrap();
    let kana = names.iter().find(|n| rep(n) == "SYL").unwrap();
    assert_eq!(kanji["text"], "患者 太郎");
    assert_eq!(kanji["family"], "患者");
    assert_eq!(kanji["given"][0], "太郎");
    assert_eq!(kana["text"], "カンジャ タロウ");
    assert_eq!(p["identifier"][0]["value"], "9999013");
    let addr = &p["address"][0];
    assert_eq!(addr["postalCode"], "422-8033");
    assert_eq!(addr["state"], "静岡県");
    assert_eq!(addr["city"], "静岡市");
    assert_eq!(p["telecom"][0]["value"], "054-000-0000");
    // Height and weight keep their decimals.
    let obs = of_type(&r.resources, "Observation");
    let find = |jlac: &str| obs.iter().find(|o| codes(&o["code"]).iter().any(|(_, c)| c == jlac)).copied().unwrap();
    let h = find("9N001000000000001");
    assert_eq!(h["valueQuantity"]["value"].to_string(), "167.8");
    assert_eq!(h["valueQuantity"]["code"], "cm");
    let w = find("9N006000000000001");
    assert_eq!(w["valueQuantity"]["value"].to_string(), "63.5");
    assert_eq!(w["valueQuantity"]["unit"], "kg");
    assert_eq!(h["meta"]["profile"][0], "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Observation_BodyMeasurement");
    let abo = find("5H010000009199911");
    assert_eq!(abo["valueCodeableConcept"]["coding"][0]["code"], "A");
    // Coverage from IN1 (国民健康保険退職者, insurer 67999991).
    let cov = of_type(&r.resources, "Coverage");
    assert!(cov.iter().any(|c| c["payor"][0]["identifier"]["value"] == "67999991" && c["type"]["coding"][0]["code"] == "67"));
}

#[test]
fn main_diagnosis_gastritis_with_medis_and_icd10() {
    let r = run(&shared(REAL), &ConvertOptions::default());
    let c = of_type(&r.resources, "Condition");
    assert_eq!(c.len(), 1);
    let c = c[0];
    let cs = codes(&c["code"]);
    assert!(cs.contains(&("http://medis.or.jp/CodeSystem/master-disease-keyNumber".into(), "20054174".into())), "{cs:?}");
    assert!(cs.contains(&("http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full".into(), "K297".into())), "{cs:?}");
    assert!(cs.contains(&("http://medis.or.jp/CodeSystem/master-disease-exCode".into(), "TSQF".into())), "{cs:?}");
    assert_eq!(c["code"]["text"], "胃炎");
    let cats = c["category"].as_array().unwrap();
    assert!(cats.iter().any(|cat| cat["coding"][0]["display"] == "主診断"), "main diagnosis flag");
    assert_eq!(c["onsetDateTime"], "2011-08-31");
    assert_eq!(c["recordedDate"], "2011-08-31");
    // Outcome N (回復せず) is active: the resolution date is not turned into an abatement (FHIR con-4).
    assert_eq!(c["clinicalStatus"]["coding"][0]["code"], "active");
    assert!(c.get("abatementDateTime").is_none());
    assert_eq!(c["meta"]["security"][0]["code"], "V");
    assert_eq!(c["recorder"]["display"], "医師 一郎");
}

#[test]
fn four_iam_allergies_with_categories_codes_reactions_severities() {
    let r = run(&shared(REAL), &ConvertOptions::default());
    let iam: Vec<&Value> = of_type(&r.resources, "AllergyIntolerance")
        .into_iter()
        .filter(|a| a["id"].as_str().unwrap().contains("ADT-61"))
        .collect();
    assert_eq!(iam.len(), 4);
    let expect = [
        ("environment", "urn:oid:1.2.392.200119.4.504", "5A1002216023023", "スギ", "目のかゆみ", "mild"),
        ("food", "urn:oid:1.2.392.200119.4.504", "5A1002411023006", "ソバ", "湿疹", "moderate"),
        ("environment", "urn:oid:1.2.392.200119.4.504", "5A1102700023023", "ハウスダスト", "くしゃみ", "mild"),
        ("medication", "http://medis.or.jp/CodeSystem/master-HOT9", "106824501", "アリナミン", "のどの渇きが止まらない", "moderate"),
    ];
    for (a, (cat, sys, code, name, reaction, sev)) in iam.iter().zip(expect) {
        assert_eq!(a["category"][0], cat);
        assert_eq!(a["code"]["coding"][0]["system"], sys);
        assert_eq!(a["code"]["coding"][0]["code"], code);
        assert_eq!(a["code"]["text"], name);
        assert_eq!(a["reaction"][0]["manifestation"][0]["text"], reaction);
        assert_eq!(a["reaction"][0]["severity"], sev);
        assert_ne!(a["category"][0], "biologic", "JP-CLINS forbids biologic");
    }
    assert_eq!(iam[0]["onsetDateTime"], "1996-01");
    assert_eq!(iam[1]["onsetString"], "小学校低学年の頃");
    assert_eq!(iam[3]["onsetDateTime"], "2007-07-10");
    // ADT-00 AL1: penicillin, medication allergy.
    let al1 = of_type(&r.resources, "AllergyIntolerance").into_iter().find(|a| a["id"].as_str().unwrap().contains("AL1")).unwrap();
    assert_eq!(al1["code"]["text"], "ペニシリン");
    assert_eq!(al1["category"][0], "medication");
}

#[test]
fn prescriptions_drug_dose_unit_usage_days() {
    let r = run(&shared(REAL), &ConvertOptions::default());
    let oral: Vec<&Value> = of_type(&r.resources, "MedicationRequest")
        .into_iter()
        .filter(|m| m["meta"]["profile"][0] == "http://jpfhir.jp/fhir/core/StructureDefinition/JP_MedicationRequest")
        .collect();
    assert_eq!(oral.len(), 3);
    // (HOT9, name, dose, unit code, unit, daily dose, usage code, days, dispensed)
    let expect = [
        ("108665201", "ダーゼン錠（５mg)", "1", "TAB", "錠", "3", "1013044400000000", "5", "15"),
        ("110626901", "パンスポリンＴ錠（１００mg)", "2", "TAB", "錠", "6", "1013044400000000", "5", "30"),
        ("100607002", "アレピアチン１０倍散", "50", "MG", "ミリグラム", "100", "1012040400000000", "14", "1400"),
    ];
    for (m, (hot, name, dose, ucode, unit, daily, usage, days, total)) in oral.iter().zip(expect) {
        let med = &m["medicationCodeableConcept"]["coding"][0];
        assert_eq!(med["system"], "http://medis.or.jp/CodeSystem/master-HOT9");
        assert_eq!(med["code"], hot);
        assert_eq!(med["display"], name);
        let d = &m["dosageInstruction"][0];
        let dq = &d["doseAndRate"][0]["doseQuantity"];
        assert_eq!(dq["value"].to_string(), dose);
        assert_eq!(dq["code"], ucode);
        assert_eq!(dq["unit"], unit);
        assert_eq!(dq["system"], "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationUnitMERIT9Code");
        assert_eq!(d["doseAndRate"][0]["rateRatio"]["numerator"]["value"].to_string(), daily);
        assert_eq!(d["doseAndRate"][0]["rateRatio"]["denominator"]["code"], "d");
        assert_eq!(d["timing"]["code"]["coding"][0]["system"], "http://jami.jp/CodeSystem/MedicationUsage");
        assert_eq!(d["timing"]["code"]["coding"][0]["code"], usage);
        assert_eq!(d["route"]["coding"][0]["code"], "PO");
        let dur = d["extension"].as_array().unwrap().iter().find(|e| e["url"].as_str().unwrap().ends_with("UsageDuration")).unwrap();
        assert_eq!(dur["valueDuration"]["value"].to_string(), days);
        assert_eq!(m["dispenseRequest"]["quantity"]["value"].to_string(), total);
        assert_eq!(m["dispenseRequest"]["expectedSupplyDuration"]["value"].to_string(), days);
        assert_eq!(m["authoredOn"], "2011-07-01T10:30:45+09:00");
        assert_eq!(m["requester"]["display"], "医師 一郎");
    }
    assert_eq!(oral[0]["dosageInstruction"][0]["text"], "内服・経口・１日３回朝昼夕食後");
    // Injections: a contained JP_Medication with the RXC components, rate 102 mL/h.
    let inj: Vec<&Value> = of_type(&r.resources, "MedicationRequest")
        .into_iter()
        .filter(|m| m["meta"]["profile"][0].as_str().unwrap().ends_with("_Injection"))
        .collect();
    assert_eq!(inj.len(), 3);
    let med = &inj[0]["contained"][0];
    assert_eq!(med["resourceType"], "Medication");
    assert_eq!(med["ingredient"][0]["itemCodeableConcept"]["coding"][0]["code"], "620007329");
    assert_eq!(med["ingredient"][1]["itemCodeableConcept"]["coding"][0]["code"], "620002559");
    let dr = &inj[0]["dosageInstruction"][0]["doseAndRate"][0];
    assert_eq!(dr["doseQuantity"]["value"].to_string(), "510");
    assert_eq!(dr["rateQuantity"]["value"].to_string(), "102");
    assert_eq!(dr["rateQuantity"]["code"], "mL/h");
    // OMP-11/12 administrations.
    let adm = of_type(&r.resources, "MedicationAdministration");
    assert_eq!(adm.len(), 4);
    assert!(adm.iter().any(|a| a["medicationCodeableConcept"]["coding"][0]["code"] == "110626901" && a["dosage"]["dose"]["value"].to_string() == "2"));
}

#[test]
fn lab_values_keep_unit_precision_and_reference_range() {
    let r = run(&shared(REAL), &ConvertOptions::default());
    let labs: Vec<&Value> = of_type(&r.resources, "Observation")
        .into_iter()
        .filter(|o| o["meta"]["profile"][0] == "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Observation_LabResult")
        .collect();
    assert_eq!(labs.len(), 3);
    let tp = labs.iter().find(|o| codes(&o["code"]).contains(&("http://medis.or.jp/CodeSystem/master-JLAC10-17digits".into(), "3A010000002327101".into()))).unwrap();
    let text = serde_json::to_string(tp).unwrap();
    assert!(text.contains(r#""value":7.2"#), "{text}");
    assert!(text.contains(r#""low":{"value":6.70"#), "the reference range keeps 6.70: {text}");
    assert_eq!(tp["valueQuantity"]["unit"], "g/dl");
    assert_eq!(tp["referenceRange"][0]["high"]["value"].to_string(), "8.3");
    assert_eq!(tp["effectiveDateTime"], "2011-12-19T15:00:00+09:00");
    assert!(tp["specimen"]["reference"].as_str().unwrap().starts_with("Specimen/"));
    let ag = labs.iter().find(|o| o["code"]["text"] == "A/G比").unwrap();
    assert_eq!(ag["valueQuantity"]["value"].to_string(), "1.7");
    assert_eq!(ag["referenceRange"][0]["high"]["value"].to_string(), "2.0", "2.0 keeps its decimal");
    let report = of_type(&r.resources, "DiagnosticReport")
        .into_iter()
        .find(|d| d["meta"]["profile"][0].as_str().unwrap().ends_with("LabResult"))
        .unwrap();
    assert_eq!(report["result"].as_array().unwrap().len(), 3);
    // ECG (OMG-13): amplitudes keep decimals.
    let ecg = of_type(&r.resources, "Observation").into_iter().find(|o| o["code"]["coding"][0]["code"] == "58368&7").unwrap();
    assert_eq!(ecg["valueQuantity"]["value"].to_string(), "2.505");
    assert_eq!(ecg["valueQuantity"]["code"], "mV");
    let hr = of_type(&r.resources, "Observation").into_iter().find(|o| o["code"]["text"] == "心拍数").unwrap();
    assert_eq!(hr["valueQuantity"]["value"].to_string(), "67");
    assert_eq!(hr["valueQuantity"]["code"], "/min");
}

#[test]
fn encounters_follow_the_adt_events() {
    let r = run(&shared(REAL), &ConvertOptions::default());
    let e = of_type(&r.resources, "Encounter");
    let by = |t: &str| e.iter().find(|x| x["id"].as_str().unwrap().contains(t)).copied().unwrap();
    assert_eq!(by("ADT-22")["status"], "arrived");
    assert_eq!(by("ADT-22")["class"]["code"], "IMP");
    assert_eq!(by("ADT-22")["period"]["start"], "2011-11-20T16:00:00+09:00");
    assert_eq!(by("ADT-42")["status"], "in-progress");
    assert_eq!(by("ADT-52")["status"], "finished");
    assert_eq!(by("ADT-52")["period"]["end"], "2011-12-20T12:00:00+09:00");
}

#[test]
fn identity_disagreements_are_warnings_or_quarantine_in_strict_mode() {
    let lenient = run(&shared(REAL), &ConvertOptions::default());
    // ADT-61 carries PID-3 12345678 and another name/birth date: warnings, still converted.
    assert!(lenient.warnings.iter().any(|(t, w)| t == "ADT-61" && w.starts_with("PID-3")));
    assert!(lenient.warnings.iter().any(|(t, w)| t == "ADT-61" && w.contains("birth date")));
    // Warnings never carry the names or birth dates themselves.
    for (_, w) in &lenient.warnings {
        assert!(!w.contains("山田") && !w.contains("19650415") && !w.contains("患者"), "PHI in warning: {w}");
    }
    let strict = run(&shared(REAL), &ConvertOptions { identity: IdentityMode::Strict, ..Default::default() });
    assert!(strict.summary.failed > 0);
    assert!(strict.failed.iter().any(|(p, _)| p.to_string_lossy().contains("ADT-61")));
    assert!(strict.summary.converted >= 1, "ADT-00 itself converts");
}

#[test]
fn conversion_is_deterministic() {
    let a = run(&shared(REAL), &ConvertOptions::default());
    let b = run(&shared(REAL), &ConvertOptions::default());
    assert_eq!(a.resources, b.resources);
}

#[test]
fn broken_files_give_one_clear_error_each() {
    let r = run(&shared("fixtures/ssmix2-real/000/000/0000001"), &ConvertOptions::default());
    assert!(r.summary.failed >= 1, "{:?}", r.failed);
    // The misplaced junk file is an error about its placement, not a panic.
    assert!(r.failed.iter().any(|(p, e)| p.to_string_lossy().contains("ADT-31") && !e.is_empty()), "{:?}", r.failed);
}

#[test]
fn twins_convert_with_warnings_for_lf_and_adt_a01_in_adt12() {
    let r = run(&shared("fixtures/ssmix2-twins"), &ConvertOptions::default());
    assert_eq!(r.summary.failed, 0, "{:?}", r.failed);
    assert_eq!(r.summary.converted, 17);
    assert!(r.warnings.iter().any(|(_, w)| w.contains("LF")), "LF terminators reported");
    assert!(r.warnings.iter().any(|(t, w)| t == "ADT-12" && w.contains("ADT^A01")), "ADT^A01 in ADT-12 reported");
    assert_eq!(of_type(&r.resources, "Patient").len(), 2);
    let hba1c = of_type(&r.resources, "Observation").into_iter().find(|o| o["code"]["text"] == "HbA1c").unwrap();
    assert_eq!(hba1c["valueQuantity"]["value"].to_string(), "7.2");
    let crp = of_type(&r.resources, "Observation").into_iter().find(|o| o["code"]["text"] == "CRP定量" && o["valueQuantity"]["value"].to_string() == "10.0");
    assert!(crp.is_some(), "10.0 keeps its decimal");
}

#[test]
fn cli_exit_codes_and_error_objects() {
    let exe = env!("CARGO_BIN_EXE_tobiume-gateway");
    let ok = Command::new(exe).args(["convert", "ssmix2"]).arg(shared(REAL)).output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    let lines = String::from_utf8(ok.stdout).unwrap();
    assert!(lines.lines().count() > 50);
    for l in lines.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(v["resourceType"].is_string() && v["id"].is_string() && v["meta"]["profile"].is_array());
    }
    assert!(String::from_utf8_lossy(&ok.stderr).contains("summary: files=19 converted=19"));

    let root = Command::new(exe).args(["convert", "ssmix2"]).arg(shared("fixtures/ssmix2-real")).output().unwrap();
    assert_eq!(root.status.code(), Some(2));
    let err = String::from_utf8_lossy(&root.stderr);
    let errors: Vec<Value> = err.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get("error").is_some()).collect();
    assert!(!errors.is_empty());
    for e in &errors {
        assert!(e["file"].is_string() && e["location"].is_string(), "{e}");
    }
    assert!(
        !errors.iter().any(|e| e["file"].as_str().unwrap_or("").contains("999/901/9999013")),
        "the good patient is fully converted: {err}"
    );
    assert!(errors.iter().any(|e| e["file"].as_str().unwrap_or("").contains("000/000/0000001")));

    let missing = Command::new(exe).args(["convert", "ssmix2", "/nonexistent/path"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
}
