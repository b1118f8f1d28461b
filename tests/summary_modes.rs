//! `Patient/{id}/$summary?mode=emergency|multidisciplinary` (issue 4): the full example registration
//! (`conformance/registration.example.json` → `to_fhir` → one transaction through the API) linked to the
//! real SS-MIX2 patient (`../shared/fixtures/ssmix2-real`, imported with `import_ssmix2`), then per mode
//! exactly which sections appear, the emergency referral hospital, the contraindicated drug ワーファリン
//! (red), SS-MIX2 胃炎 with its source, the 3-month prescription window at a fixed "now", the R4 schema
//! check of the document, linking by shared identifier and by `Linkage`, and the errors. SQLite and
//! PostgreSQL.

#[macro_use]
#[path = "common/api_support.rs"]
mod support;

use std::path::{Path, PathBuf};

use axum::Extension;
use serde_json::{json, Value};
use support::{App, Db};
use time::OffsetDateTime;
use tobiume_gateway::api::operation::summary::SummaryClock;
use tobiume_gateway::import::{import_ssmix2, ImportOptions};
use tobiume_gateway::mapping::registration::{to_fhir, Ids, Registration};

const REG: &str = "tobiume-TB-40-0012345";
const SS: &str = "9999013.ADT-00";
const BASE: &str = "http://localhost:8080/fhir";

fn shared(p: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")).join(p)
}

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
}

/// The example registration as resources; `patch` edits the Patient (links, identifiers).
fn registration(patch: impl FnOnce(&mut Value)) -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conformance/registration.example.json"
    ))
    .unwrap();
    let r: Registration = serde_json::from_str(&text).unwrap();
    let mut res = to_fhir(&r, &Ids::default());
    patch(
        res.iter_mut()
            .find(|v| v["resourceType"] == "Patient")
            .unwrap(),
    );
    res
}

async fn put_all(app: &App, resources: &[Value]) {
    let entries: Vec<Value> = resources
        .iter()
        .map(|r| {
            json!({"resource": r, "request": {"method": "PUT",
                "url": format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap())}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let res = app.json("POST", "/fhir", &bundle.to_string()).await;
    assert_eq!(res.status, 200, "{}", res.body);
}

/// An app with "now" fixed; the example registration (linked to the SS-MIX2 patient by `Patient.link`
/// with display 福岡市民病院) and the real SS-MIX2 fixture imported.
async fn linked_app(db: Db, now: &str) -> App {
    let mut app = support::app(db).await;
    app.router = app.router.layer(Extension(SummaryClock(at(now))));
    put_all(
        &app,
        &registration(|p| {
            p["link"] = json!([{"other": {"reference": format!("Patient/{SS}"), "display": "福岡市民病院"}, "type": "seealso"}]);
        }),
    )
    .await;
    import_ssmix2(
        &app.store,
        &shared("fixtures/ssmix2-real"),
        &ImportOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    app
}

async fn summary(app: &App, id: &str, mode: &str) -> Value {
    let res = app
        .get(&format!("/fhir/Patient/{id}/$summary?mode={mode}"))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(res
        .header("content-type")
        .unwrap()
        .starts_with("application/fhir+json"));
    res.json()
}

fn composition(b: &Value) -> &Value {
    &b["entry"][0]["resource"]
}

fn section_codes(b: &Value) -> Vec<String> {
    composition(b)["section"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["code"]["coding"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| {
                    c["system"]
                        .as_str()
                        .unwrap()
                        .ends_with("/CodeSystem/summary-section")
                })
                .unwrap()["code"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn section<'a>(b: &'a Value, code: &str) -> &'a Value {
    composition(b)["section"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["code"]["coding"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["code"] == code)
        })
        .unwrap_or_else(|| panic!("no section {code}"))
}

fn entry_refs(s: &Value) -> Vec<String> {
    s["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["reference"].as_str().unwrap().to_string())
        .collect()
}

fn resource<'a>(b: &'a Value, full_url: &str) -> &'a Value {
    &b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["fullUrl"] == full_url)
        .unwrap_or_else(|| panic!("no entry {full_url}"))["resource"]
}

fn last_updated(s: &Value) -> Option<&str> {
    s["extension"]
        .as_array()?
        .iter()
        .find(|e| e["url"].as_str().unwrap().ends_with("section-last-updated"))?["valueDateTime"]
        .as_str()
}

const EMERGENCY: &[&str] = &[
    "registration",
    "prescriptions",
    "contraindicated-drugs",
    "main-diagnoses",
    "history",
    "allergies",
    "current-treatment",
    "emergency-care-wishes",
];
const MULTI_ONLY: &[&str] = &[
    "patient-wishes",
    "remarks",
    "adl",
    "disability",
    "long-term-care",
    "impairments",
    "dementia",
    "behaviour",
];

both_db!(emergency_mode_holds_exactly_the_emergency_items);
async fn emergency_mode_holds_exactly_the_emergency_items(db: Db) {
    let app = linked_app(db, "2011-09-30T12:00:00+09:00").await;
    let b = summary(&app, REG, "emergency").await;

    // Document shape (FHIR R4 documents.html, IPS).
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "document");
    assert_eq!(b["identifier"]["system"], "urn:ietf:rfc:3986");
    assert!(b["identifier"]["value"]
        .as_str()
        .unwrap()
        .starts_with("urn:uuid:"));
    assert_eq!(b["timestamp"], "2011-09-30T12:00:00+09:00");
    assert!(b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["fullUrl"].is_string()));
    let c = composition(&b);
    assert_eq!(c["resourceType"], "Composition");
    assert_eq!(c["status"], "final");
    assert_eq!(c["type"]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(c["type"]["coding"][0]["code"], "60591-5");
    assert_eq!(c["title"], "救急用サマリー");
    assert_eq!(c["date"], "2011-09-30T12:00:00+09:00");
    assert!(c["author"][0]["display"]
        .as_str()
        .unwrap()
        .starts_with("tobiume-gateway"));
    assert_eq!(c["subject"]["reference"], format!("{BASE}/Patient/{REG}"));
    assert_eq!(c["subject"]["display"], "梅野 花子");

    // Exactly the emergency sections, in the network's order.
    assert_eq!(section_codes(&b), EMERGENCY);
    for code in MULTI_ONLY {
        assert!(
            !section_codes(&b).iter().any(|c| c == code),
            "{code} must not be in emergency mode"
        );
    }
    let text = b.to_string();
    for absent in [
        "adl-eating",
        "care-level",
        "behaviour",
        "consent-information",
        "-remarks",
        "hds-r",
        "impairment-1",
    ] {
        assert!(
            !text.contains(&format!("{REG}-{absent}")),
            "{absent} leaked into emergency mode"
        );
    }
    // IPS section codes where IPS has them.
    let loinc = |code: &str| {
        section(&b, code)["code"]["coding"][0]["code"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(loinc("prescriptions"), "10160-0");
    assert_eq!(loinc("main-diagnoses"), "11450-4");
    assert_eq!(loinc("allergies"), "48765-2");
    assert_eq!(loinc("current-treatment"), "46264-8");
    assert_eq!(loinc("emergency-care-wishes"), "42348-3");

    // Registration with the emergency referral hospital.
    let reg = section(&b, "registration");
    let hospital = format!("{BASE}/Organization/{REG}-org-emergency-hospital");
    assert!(entry_refs(reg).contains(&hospital));
    assert_eq!(resource(&b, &hospital)["name"], "福岡市民病院");
    let div = reg["text"]["div"].as_str().unwrap();
    assert!(
        div.contains("緊急時紹介先医療機関: 福岡市民病院 TEL 092-632-1111"),
        "{div}"
    );
    assert_eq!(
        last_updated(reg),
        Some("2026-09-10"),
        "newest registration item (care facility)"
    );

    // Contraindicated drug ワーファリン, in red.
    let ci = section(&b, "contraindicated-drugs");
    let warfarin = resource(
        &b,
        &format!("{BASE}/AllergyIntolerance/{REG}-contraindication-1"),
    );
    assert!(warfarin.to_string().contains("ワーファリン"));
    assert_eq!(entry_refs(ci).len(), 2);
    let div = ci["text"]["div"].as_str().unwrap();
    assert!(div.contains("<li style=\"color:#c00\"><b>禁忌</b> 禁忌薬: ワーファリン（理由: 脳出血の既往のため抗凝固薬禁忌）"), "{div}");
    assert_eq!(last_updated(ci), Some("2026-08-20"));

    // SS-MIX2 胃炎 merged into the problem list, with its source.
    let dx = section(&b, "main-diagnoses");
    let gastritis =
        format!("{BASE}/Condition/9999013.-.PPR-01.999999999999999.PRB.123456789012345");
    assert!(entry_refs(dx).contains(&gastritis));
    assert_eq!(entry_refs(dx).len(), 6, "5 registered + 1 SS-MIX2");
    let g = resource(&b, &gastritis);
    assert_eq!(g["code"]["text"], "胃炎");
    assert_eq!(g["meta"]["source"], "urn:tobiume:source:ssmix2");
    assert!(dx["text"]["div"].as_str().unwrap().contains(
        "病名: 胃炎 発症 2011-08-31（活動中） [更新 2011-08-31 出典: SS-MIX2 (福岡市民病院)]"
    ));
    let prov: Vec<&Value> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "Provenance")
        .collect();
    assert_eq!(prov.len(), 1);
    assert_eq!(prov[0]["agent"][0]["who"]["display"], "福岡市民病院");
    assert!(prov[0]["target"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["reference"] == gastritis.as_str()));
    // The SS-MIX2 Patient the merged data refers to is in the document; the other fixture patient is not.
    resource(&b, &format!("{BASE}/Patient/{SS}"));
    assert!(
        !text.contains("0000001."),
        "unlinked SS-MIX2 patient leaked"
    );

    // SS-MIX2 allergies all (5), after the 3 registered ones.
    let al = section(&b, "allergies");
    assert_eq!(entry_refs(al).len(), 3 + 5);
    assert!(al["text"]["div"]
        .as_str()
        .unwrap()
        .contains("アレルギー: 薬剤: ペニシリン"));

    // Prescriptions: 3 coded + free text registered, and the SS-MIX2 MedicationRequests of the last 3
    // months before 2011-09-30 12:00 (four of 2011-07-01), not the two of 2009.
    let rx = entry_refs(section(&b, "prescriptions"));
    let mr: Vec<&String> = rx
        .iter()
        .filter(|r| r.contains("/MedicationRequest/"))
        .collect();
    assert_eq!(rx.len() - mr.len(), 4, "{rx:?}");
    assert_eq!(mr.len(), 4, "{mr:?}");
    for old in [
        "OMP-02.123456789012345.RXE.1.2",
        "OMP-02.123456789012345.RXE.1.3",
    ] {
        assert!(
            !mr.iter().any(|r| r.ends_with(old)),
            "{old} (authored 2009) is outside the window"
        );
    }
    assert!(
        mr.iter()
            .any(|r| r.ends_with("OMP-02.123456789012345.RXE.1.1")),
        "authored 2011-07-01T01:24 is inside"
    );
    assert_eq!(
        last_updated(section(&b, "prescriptions")),
        Some("2026-08-20")
    );

    // History (registered narrative); wishes for emergency care with their newest date.
    assert_eq!(
        entry_refs(section(&b, "history")),
        vec![format!("{BASE}/Observation/{REG}-history")]
    );
    assert_eq!(
        last_updated(section(&b, "emergency-care-wishes")),
        Some("2026-09-01T15:30:00+09:00")
    );

    // Structurally valid R4.
    if let Err(issues) = tobiume_gateway::validation::schema::check(&b) {
        panic!("schema: {issues:?}");
    }
}

both_db!(multidisciplinary_mode_adds_the_care_items);
async fn multidisciplinary_mode_adds_the_care_items(db: Db) {
    let app = linked_app(db, "2011-09-30T12:00:00+09:00").await;
    let b = summary(&app, REG, "multidisciplinary").await;
    assert_eq!(composition(&b)["title"], "多職種連携サマリー");
    let mut all: Vec<&str> = EMERGENCY.to_vec();
    all.extend(MULTI_ONLY);
    let expected = [
        "registration",
        "prescriptions",
        "contraindicated-drugs",
        "main-diagnoses",
        "history",
        "allergies",
        "current-treatment",
        "emergency-care-wishes",
        "patient-wishes",
        "remarks",
        "adl",
        "disability",
        "long-term-care",
        "impairments",
        "dementia",
        "behaviour",
    ];
    assert_eq!(section_codes(&b), expected);
    assert_eq!(entry_refs(section(&b, "adl")).len(), 6);
    assert_eq!(entry_refs(section(&b, "disability")).len(), 3);
    assert_eq!(
        entry_refs(section(&b, "long-term-care")),
        vec![format!("{BASE}/Observation/{REG}-care-level")]
    );
    assert_eq!(entry_refs(section(&b, "impairments")).len(), 3);
    assert_eq!(entry_refs(section(&b, "dementia")).len(), 3);
    assert_eq!(entry_refs(section(&b, "behaviour")).len(), 1);
    assert_eq!(
        entry_refs(section(&b, "patient-wishes")),
        vec![format!("{BASE}/Consent/{REG}-consent-information")]
    );
    assert_eq!(
        entry_refs(section(&b, "remarks")),
        vec![format!("{BASE}/Observation/{REG}-remarks")]
    );
    assert_eq!(section(&b, "adl")["code"]["coding"][0]["code"], "47420-5");
    assert_eq!(last_updated(section(&b, "behaviour")), Some("2026-09-10"));
    assert!(section(&b, "dementia")["text"]["div"]
        .as_str()
        .unwrap()
        .contains("17点（2026-08-20）"));
    // The emergency content is all still there.
    assert!(b.to_string().contains("ワーファリン"));
    assert!(entry_refs(section(&b, "main-diagnoses"))
        .iter()
        .any(|r| r.contains("PRB.123456789012345")));
    if let Err(issues) = tobiume_gateway::validation::schema::check(&b) {
        panic!("schema: {issues:?}");
    }
}

both_db!(prescription_window_follows_now_and_either_id_works);
async fn prescription_window_follows_now_and_either_id_works(db: Db) {
    // Three months before 2011-10-05 is 2011-07-05: no SS-MIX2 prescription left.
    let app = linked_app(db, "2011-10-05T09:00:00+09:00").await;
    let b = summary(&app, REG, "emergency").await;
    let rx = entry_refs(section(&b, "prescriptions"));
    assert_eq!(rx.len(), 4, "registered prescriptions only: {rx:?}");
    assert!(rx.iter().all(|r| !r.contains("MedicationRequest")));
    // Conditions and allergies are not windowed.
    assert!(entry_refs(section(&b, "main-diagnoses"))
        .iter()
        .any(|r| r.contains("PRB.123456789012345")));

    // $summary on the SS-MIX2 Patient finds the registration through the link and gives the same
    // document subject and sections.
    let via_ss = summary(&app, SS, "emergency").await;
    assert_eq!(
        composition(&via_ss)["subject"]["reference"],
        format!("{BASE}/Patient/{REG}")
    );
    assert_eq!(section_codes(&via_ss), EMERGENCY);
    assert_eq!(
        entry_refs(section(&via_ss, "main-diagnoses")),
        entry_refs(section(&b, "main-diagnoses"))
    );

    // By identifier (type level): the card id.
    let res = app
        .get("/fhir/Patient/$summary?identifier=http://tobiume-gateway.local/fhir/sid/card-id%7CTB-40-0012345&mode=emergency")
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(
        composition(&res.json())["subject"]["reference"],
        format!("{BASE}/Patient/{REG}")
    );
}

both_db!(errors_are_operation_outcomes);
async fn errors_are_operation_outcomes(db: Db) {
    let app = linked_app(db, "2011-09-30T12:00:00+09:00").await;
    app.get("/fhir/Patient/nobody/$summary?mode=emergency")
        .await
        .assert_outcome(404);
    let bad = app
        .get(&format!("/fhir/Patient/{REG}/$summary?mode=everything"))
        .await
        .assert_outcome(400);
    assert_eq!(bad["issue"][0]["expression"][0], "mode");
    app.get("/fhir/Patient/$summary?identifier=urn:x%7Cnone")
        .await
        .assert_outcome(404);
    app.get("/fhir/Patient/$summary").await.assert_outcome(400);
    // Default mode is emergency.
    assert_eq!(
        section_codes(&summary(&app, REG, "emergency").await),
        EMERGENCY
    );
    let res = app.get(&format!("/fhir/Patient/{REG}/$summary")).await;
    assert_eq!(section_codes(&res.json()), EMERGENCY);
}

both_db!(linked_by_shared_identifier_or_linkage);
async fn linked_by_shared_identifier_or_linkage(db: Db) {
    let mut app = support::app(db).await;
    app.router = app
        .router
        .layer(Extension(SummaryClock(at("2011-09-30T12:00:00+09:00"))));
    // The registration carries the hospital patient id; the import with --facility gives the SS-MIX2
    // Patient the same JP Core identifier.
    put_all(
        &app,
        &registration(|p| {
            p["identifier"].as_array_mut().unwrap().push(
                json!({"system": "urn:oid:1.2.392.100495.20.3.51.14010000028", "value": "9999013"}),
            );
        }),
    )
    .await;
    let mut opts = ImportOptions::default();
    opts.convert.facility_code = Some("4010000028".into());
    import_ssmix2(&app.store, &shared("fixtures/ssmix2-real"), &opts, |_| {})
        .await
        .unwrap();
    let b = summary(&app, REG, "emergency").await;
    let dx = section(&b, "main-diagnoses");
    assert!(entry_refs(dx).iter().any(|r| r
        .ends_with("/Condition/4010000028.9999013.-.PPR-01.999999999999999.PRB.123456789012345")));
    assert!(dx["text"]["div"]
        .as_str()
        .unwrap()
        .contains("出典: SS-MIX2 (医療機関コード 4010000028)"));
    let g = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["code"]["text"] == "胃炎")
        .unwrap();
    assert_eq!(
        g["resource"]["meta"]["source"],
        "urn:tobiume:source:ssmix2:4010000028"
    );
    // …and from the SS-MIX2 side.
    let via = summary(&app, "4010000028.9999013.ADT-00", "emergency").await;
    assert_eq!(
        composition(&via)["subject"]["reference"],
        format!("{BASE}/Patient/{REG}")
    );

    // Without a link an SS-MIX2 patient's summary holds its own data only (subject = itself).
    let other = "4010000028.7777777.ADT-00";
    put_all(
        &app,
        &[
            json!({"resourceType": "Patient", "id": other, "name": [{"text": "<script>alert(1)</script> 太郎"}],
                   "birthDate": "1950-01-02", "gender": "male"}),
            json!({"resourceType": "Condition", "id": "4010000028.7777777.-.PPR-01.1.PRB.1",
                   "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
                   "code": {"text": "胃潰瘍"}, "subject": {"reference": format!("Patient/{other}")}, "recordedDate": "2010-01-01"}),
        ],
    )
    .await;
    let alone = summary(&app, other, "emergency").await;
    assert_eq!(
        composition(&alone)["subject"]["reference"],
        format!("{BASE}/Patient/{other}")
    );
    assert!(entry_refs(section(&alone, "registration")).is_empty());
    assert_eq!(
        section(&alone, "registration")["emptyReason"]["coding"][0]["code"],
        "unavailable"
    );
    assert!(
        section(&alone, "history")["text"]["div"]
            .as_str()
            .unwrap()
            .contains("胃潰瘍"),
        "resolved → past illness"
    );
    assert!(!alone.to_string().contains("ワーファリン"));
    if let Err(issues) = tobiume_gateway::validation::schema::check(&alone) {
        panic!("schema: {issues:?}");
    }

    // A Linkage links it to the registration.
    let linkage = json!({"resourceType": "Linkage", "item": [
        {"type": "source", "resource": {"reference": format!("Patient/{REG}")}},
        {"type": "alternate", "resource": {"reference": format!("Patient/{other}")}}]});
    let res = app
        .json("POST", "/fhir/Linkage", &linkage.to_string())
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let now_linked = summary(&app, other, "emergency").await;
    assert_eq!(
        composition(&now_linked)["subject"]["reference"],
        format!("{BASE}/Patient/{REG}")
    );
    let hist = section(&now_linked, "history")["text"]["div"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        hist.contains("胃潰瘍") && hist.contains("出典: SS-MIX2 (医療機関コード 4010000028)"),
        "{hist}"
    );
    // Both SS-MIX2 patients are merged (胃炎 from the identifier link too).
    assert!(now_linked.to_string().contains("胃炎"));
    if let Err(issues) = tobiume_gateway::validation::schema::check(&now_linked) {
        panic!("schema: {issues:?}");
    }
}

both_db!(entries_are_the_stored_resources_unchanged);
/// The Bundle is written from the stored JSON texts (no Value round trip): every entry that is a
/// registration or Patient resource must be exactly what a `read` of it returns, member order included,
/// and merged SS-MIX2 entries differ from their stored version only by the added `meta.source`.
async fn entries_are_the_stored_resources_unchanged(db: Db) {
    let app = linked_app(db, "2011-09-30T12:00:00+09:00").await;
    for mode in ["emergency", "multidisciplinary"] {
        let b = summary(&app, REG, mode).await;
        let entries = b["entry"].as_array().unwrap();
        let mut compared = 0;
        for e in &entries[1..] {
            let url = e["fullUrl"].as_str().unwrap();
            let Some(path) = url.strip_prefix(BASE) else {
                assert!(url.starts_with("urn:uuid:"), "{url}");
                assert_eq!(e["resource"]["resourceType"], "Provenance");
                continue;
            };
            let read = app.get(&format!("/fhir{path}")).await;
            assert_eq!(read.status, 200, "{path}: {}", read.body);
            let mut stored = read.json();
            let r = &e["resource"];
            if r.pointer("/meta/source").and_then(Value::as_str).is_some_and(|s| s.starts_with("urn:tobiume:source:ssmix2"))
                && stored.pointer("/meta/source").is_none()
            {
                stored["meta"]["source"] = r["meta"]["source"].clone();
            }
            assert_eq!(r, &stored, "{path} differs from its stored version");
            // Same member order as stored (serde_json keeps insertion order: compare the texts).
            assert_eq!(r.to_string(), stored.to_string(), "{path}: member order");
            compared += 1;
        }
        assert!(compared >= 20, "{mode}: only {compared} stored entries");
    }
}
