//! Consent matrix (issue 6): every consent situation × read / search (matches, `total`, `_include`,
//! `_revinclude`, `_summary=count`) / `$summary`, each cell asserted, on SQLite and PostgreSQL.
//!
//! Callers send dev tokens (the test app authenticates in `dev` mode) with their facility, roles, purpose
//! of use and reason; the data is written by the app's default token (a network-level backend service).
//!
//! | patient | consent situation |
//! |---|---|
//! | `p-blanket` | blanket permit (no actor) with a nested deny for `hosp-deny` |
//! | `p-facility` | per-facility permit for `hosp-x` |
//! | `p-none` | no consent; attends `clinic-a` (managingOrganization) |
//! | `p-withdrawn` | blanket permit, withdrawn (status inactive) during the test |
//! | `p-proxy` | blanket permit signed by a proxy (RelatedPerson of the patient) |
//! | `p-badproxy` | blanket permit "signed" by another patient's RelatedPerson (not counted) |
//! | `p-national` | national-sharing consent only |
//! | `p-er` | no consent; emergency referral hospital `hosp-er` (registration extension) |

#[macro_use]
#[path = "common/api_support.rs"]
mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};
use support::{App, Db, Resp};
use tobiume_gateway::auth::dev::DevTokenRequest;

const PATIENTS: [&str; 8] =
    ["p-blanket", "p-facility", "p-none", "p-withdrawn", "p-proxy", "p-badproxy", "p-national", "p-er"];
const ER_EXT: &str = "http://tobiume-gateway.local/fhir/StructureDefinition/emergency-referral-hospital";
const NATIONAL: &str = "http://tobiume-gateway.local/fhir/policy/national-sharing";

/// A clinician at `facility` (token scope `user/*.cruds`).
fn principal(facility: &str) -> DevTokenRequest {
    DevTokenRequest {
        subject: format!("user-at-{facility}"),
        client_id: "test-client".into(),
        scope: "user/*.cruds".into(),
        facility: Some(facility.into()),
        ..DevTokenRequest::default()
    }
}

fn btg(facility: &str, role: bool, reason: Option<&str>) -> DevTokenRequest {
    let mut p = principal(facility);
    p.purpose_of_use = Some("ETREAT".into());
    p.reason = reason.map(str::to_string);
    if role {
        p.roles.push("emergency".into());
    }
    p
}

fn secretariat() -> DevTokenRequest {
    let mut p = principal("network-office");
    p.facility = None;
    p.subject = "secretariat-1".into();
    p.roles.push("secretariat".into());
    p
}

/// A request with a dev token minted for `who` (`None`: the app's default token, a network-level
/// backend service with `system/*.cruds`).
async fn send_as(app: &App, who: Option<&DevTokenRequest>, method: &str, uri: &str, body: &str) -> Resp {
    let headers = [("content-type", "application/fhir+json")];
    match who {
        Some(w) => app.send_as(Some(&support::token(w.clone())), method, uri, &headers, body.to_string()).await,
        None => app.send(method, uri, &headers, body.to_string()).await,
    }
}

async fn get_as(app: &App, who: &DevTokenRequest, uri: &str) -> Resp {
    send_as(app, Some(who), "GET", uri, "").await
}

fn org(id: &str) -> Value {
    json!({"resourceType": "Organization", "id": id, "name": format!("Org {id}")})
}

fn patient(id: &str) -> Value {
    let mut p = json!({"resourceType": "Patient", "id": id, "name": [{"family": "テスト", "given": [id]}]});
    match id {
        "p-none" => p["managingOrganization"] = json!({"reference": "Organization/clinic-a"}),
        "p-er" => p["extension"] = json!([{"url": ER_EXT, "valueReference": {"reference": "Organization/hosp-er"}}]),
        _ => {}
    }
    p
}

fn observation(patient: &str) -> Value {
    json!({"resourceType": "Observation", "id": format!("obs-{patient}"), "status": "final",
           "code": {"text": "体温"}, "subject": {"reference": format!("Patient/{patient}")},
           "valueQuantity": {"value": 36.5, "unit": "Cel"}})
}

fn consent(id: &str, patient: &str, performer: &str, provision: Value, policy: Option<&str>) -> Value {
    let mut c = json!({
        "resourceType": "Consent", "id": id, "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "performer": [{"reference": performer}],
        "provision": provision
    });
    if let Some(p) = policy {
        c["policy"] = json!([{"uri": p}]);
    }
    c
}

fn ircp(org: &str) -> Value {
    json!({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
           "reference": {"reference": format!("Organization/{org}")}})
}

fn blanket() -> Value {
    json!({"type": "permit", "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]})
}

async fn put_all(app: &App, resources: &[Value]) {
    let entries: Vec<Value> = resources
        .iter()
        .map(|r| json!({"resource": r, "request": {"method": "PUT",
            "url": format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap())}}))
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let res = app.json("POST", "/fhir", &bundle.to_string()).await;
    assert_eq!(res.status, 200, "{}", res.body);
}

async fn seed(app: &App) {
    let mut r: Vec<Value> = ["clinic-a", "hosp-x", "hosp-deny", "hosp-other", "hosp-er", "national-ehr-sharing"]
        .iter()
        .map(|o| org(o))
        .collect();
    for p in PATIENTS {
        r.push(patient(p));
        r.push(observation(p));
    }
    let mut with_deny = blanket();
    with_deny["provision"] = json!([{"type": "deny", "actor": [ircp("hosp-deny")]}]);
    r.push(consent("c-blanket", "p-blanket", "Patient/p-blanket", with_deny, None));
    r.push(consent("c-facility", "p-facility", "Patient/p-facility",
        json!({"type": "permit", "actor": [ircp("hosp-x")], "period": {"start": "2020-01-01"}}), None));
    r.push(consent("c-withdrawn", "p-withdrawn", "Patient/p-withdrawn", blanket(), None));
    r.push(json!({"resourceType": "RelatedPerson", "id": "rp-proxy", "active": true,
        "patient": {"reference": "Patient/p-proxy"}, "relationship": [{"text": "長男 (代筆者)"}]}));
    r.push(consent("c-proxy", "p-proxy", "RelatedPerson/rp-proxy", blanket(), None));
    r.push(consent("c-badproxy", "p-badproxy", "RelatedPerson/rp-proxy", blanket(), None));
    r.push(consent("c-national", "p-national", "Patient/p-national", json!({"type": "permit"}), Some(NATIONAL)));
    put_all(app, &r).await;
}

fn ids_of(bundle: &Value, mode: &str, rtype: &str) -> BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == mode && e["resource"]["resourceType"] == rtype)
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts exactly `visible` (of [`PATIENTS`]) are visible to `who`: read 200/403, search matches and
/// `total`, `_include` and `_revinclude` never leak, `_summary=count`, `$summary` 200/403.
async fn assert_sees(app: &App, who: &DevTokenRequest, visible: &[&str], cell: &str) {
    let visible: BTreeSet<String> = visible.iter().map(|s| s.to_string()).collect();
    for p in PATIENTS {
        let want = visible.contains(p);
        let r = get_as(app, who, &format!("/fhir/Patient/{p}")).await;
        if want {
            assert_eq!(r.status, 200, "[{cell}] read Patient/{p}: {}", r.body);
        } else {
            let oo = r.assert_outcome(403);
            assert!(!r.body.contains("テスト"), "[{cell}] 403 leaks data: {}", r.body);
            assert_eq!(oo["issue"][0]["code"], "forbidden", "[{cell}]");
        }
        let r = get_as(app, who, &format!("/fhir/Observation/obs-{p}")).await;
        assert_eq!(r.status, if want { 200 } else { 403 }, "[{cell}] read Observation of {p}: {}", r.body);
        let r = get_as(app, who, &format!("/fhir/Patient/{p}/$summary?mode=multidisciplinary")).await;
        assert_eq!(r.status, if want { 200 } else { 403 }, "[{cell}] $summary of {p}: {}", r.body);
    }
    // search: matches and an exact total (all on one page)
    let b = get_as(app, who, "/fhir/Patient?_total=accurate&_count=100").await;
    assert_eq!(b.status, 200, "[{cell}] {}", b.body);
    let b = b.json();
    assert_eq!(ids_of(&b, "match", "Patient"), visible, "[{cell}] Patient search matches");
    assert_eq!(b["total"].as_u64(), Some(visible.len() as u64), "[{cell}] total");
    // a small page: the total is either exact or omitted — never the unfiltered count
    let b = get_as(app, who, "/fhir/Patient?_total=accurate&_count=1").await.json();
    if let Some(t) = b["total"].as_u64() {
        assert_eq!(t, visible.len() as u64, "[{cell}] paged total");
    }
    let c = get_as(app, who, "/fhir/Patient?_summary=count").await.json();
    assert_eq!(c["total"].as_u64(), Some(visible.len() as u64), "[{cell}] _summary=count");
    // _include: Observations with their subjects
    let b = get_as(app, who, "/fhir/Observation?_include=Observation:subject&_count=100").await.json();
    let obs: BTreeSet<String> = visible.iter().map(|p| format!("obs-{p}")).collect();
    assert_eq!(ids_of(&b, "match", "Observation"), obs, "[{cell}] Observation matches");
    assert_eq!(ids_of(&b, "include", "Patient"), visible, "[{cell}] _include");
    // _revinclude from Patients; Consents of hidden patients never come along
    let b = get_as(app, who, "/fhir/Patient?_revinclude=Observation:subject&_revinclude=Consent:patient&_count=100").await.json();
    assert_eq!(ids_of(&b, "include", "Observation"), obs, "[{cell}] _revinclude");
    for c in ids_of(&b, "include", "Consent") {
        let p = c.strip_prefix("c-").unwrap();
        assert!(visible.contains(&format!("p-{p}")), "[{cell}] Consent {c} leaked");
    }
    // non-patient resources are not consent-governed (a `patient/` token has no scope for them)
    if !who.scope.starts_with("patient/") {
        assert_eq!(get_as(app, who, "/fhir/Organization/clinic-a").await.status, 200, "[{cell}] Organization");
    }
}

both_db!(consent_matrix);
async fn consent_matrix(db: Db) {
    let app = support::app(db).await;
    seed(&app).await;

    // blanket consent, per-facility permit, proxy: a network facility with no other relation
    assert_sees(&app, &principal("hosp-other"), &["p-blanket", "p-withdrawn", "p-proxy"], "blanket/proxy for hosp-other").await;
    // blanket with a per-facility deny: the denied facility
    assert_sees(&app, &principal("hosp-deny"), &["p-withdrawn", "p-proxy"], "denied facility").await;
    // per-facility permit
    assert_sees(&app, &principal("hosp-x"), &["p-blanket", "p-facility", "p-withdrawn", "p-proxy"], "per-facility").await;
    // attending facility (no consent needed), plus the blanket ones
    assert_sees(&app, &principal("clinic-a"), &["p-blanket", "p-none", "p-withdrawn", "p-proxy"], "attending").await;
    // emergency referral hospital
    assert_sees(&app, &principal("hosp-er"), &["p-blanket", "p-withdrawn", "p-proxy", "p-er"], "emergency referral hospital").await;
    // national-sharing consent: only the national service, which blanket consents do not cover
    assert_sees(&app, &principal("national-ehr-sharing"), &["p-national"], "national").await;
    // a caller without facility and without patient context sees no patient
    let mut nofac = principal("x");
    nofac.facility = None;
    assert_sees(&app, &nofac, &[], "no facility").await;
    // patient context (patient/ scopes): the patient's own record only
    let mut own = nofac.clone();
    own.patient = Some("p-none".into());
    own.scope = "patient/*.rs".into();
    assert_sees(&app, &own, &["p-none"], "own record").await;

    // the denial is audited: outcome 4 with the reason, the caller's facility as agent
    let (rows, _) = app
        .store
        .audit_search(&tobiume_gateway::store::audit::AuditFilter {
            agents: vec!["Organization/hosp-deny".into()],
            outcomes: vec!["4".into()],
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(rows.iter().any(|r| r.json.contains("Consent/c-blanket denies")), "denial audited");
    assert!(rows.iter().any(|r| r.patients.contains(" p-blanket ")), "denied patient named");
}

both_db!(withdrawal_takes_effect_on_the_next_request_in_every_process);
async fn withdrawal_takes_effect_on_the_next_request_in_every_process(db: Db) {
    let app = support::app(db).await;
    seed(&app).await;
    // A second application instance on the same database: its own consent cache, like a second process.
    let registry = Arc::new(tobiume_gateway::search::Registry::standard());
    let store2 = tobiume_gateway::store::Store::connect_with_registry(&app.db.url, registry.clone()).await.unwrap();
    let guard2 = support::DbGuard { dir: tempfile::tempdir().unwrap(), url: app.db.url.clone() };
    let app2 = App::new(store2, registry, Default::default(), guard2);
    let other = principal("hosp-other");
    for _ in 0..2 {
        assert_eq!(get_as(&app, &other, "/fhir/Patient/p-withdrawn").await.status, 200);
    }
    let mut withdrawn = consent("c-withdrawn", "p-withdrawn", "Patient/p-withdrawn", blanket(), None);
    withdrawn["status"] = json!("inactive");
    // withdrawn through the other instance (同意撤回書 recorded at another terminal)
    let r = send_as(&app2, Some(&principal("clinic-a")), "PUT", "/fhir/Consent/c-withdrawn", &withdrawn.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // the very next request in the first instance is denied
    get_as(&app, &other, "/fhir/Patient/p-withdrawn").await.assert_outcome(403);
    let b = get_as(&app, &other, "/fhir/Patient?_total=accurate").await.json();
    assert!(!ids_of(&b, "match", "Patient").contains("p-withdrawn"));
    // re-consent: visible again on the next request
    withdrawn["status"] = json!("active");
    let r = send_as(&app, None, "PUT", "/fhir/Consent/c-withdrawn", &withdrawn.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get_as(&app2, &other, "/fhir/Patient/p-withdrawn").await.status, 200);
}

both_db!(suspended_facility_is_refused_everything);
async fn suspended_facility_is_refused_everything(db: Db) {
    let app = support::app(db).await;
    seed(&app).await;
    let x = principal("hosp-x");
    assert_eq!(get_as(&app, &x, "/fhir/Patient/p-facility").await.status, 200);
    // only the secretariat may suspend
    let r = send_as(&app, Some(&x), "POST", "/fhir/Organization/hosp-x/$suspend", "").await;
    r.assert_outcome(403);
    let reason = json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "漏えい調査中"}]});
    let r = send_as(&app, Some(&secretariat()), "POST", "/fhir/Organization/hosp-x/$suspend", &reason.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("is suspended"));
    // next request: 403 for everything — patient data, non-patient resources, searches, writes
    for uri in ["/fhir/Patient/p-facility", "/fhir/Organization/clinic-a", "/fhir/Patient", "/fhir/Observation?_count=5"] {
        get_as(&app, &x, uri).await.assert_outcome(403);
    }
    let r = send_as(&app, Some(&x), "PUT", "/fhir/Observation/obs-new", &observation("p-facility").to_string().replace("obs-p-facility", "obs-new")).await;
    r.assert_outcome(403);
    assert_eq!(send_as(&app, None, "GET", "/fhir/Observation/obs-new", "").await.status, 404, "suspended write not committed");
    // other facilities are unaffected
    assert_eq!(get_as(&app, &principal("hosp-other"), "/fhir/Patient/p-blanket").await.status, 200);
    // resume
    let r = send_as(&app, Some(&secretariat()), "POST", "/fhir/Organization/hosp-x/$resume", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get_as(&app, &x, "/fhir/Patient/p-facility").await.status, 200);
    // the suspension and the resumption are on the audit trail
    let b = get_as(&app, &secretariat(), "/fhir/AuditEvent?agent=secretariat-1&_count=50").await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert!(b.body.contains("Organization/hosp-x suspended: 漏えい調査中") && b.body.contains("Organization/hosp-x resumed"), "{}", b.body);
}

both_db!(break_the_glass_only_for_the_emergency_summary);
async fn break_the_glass_only_for_the_emergency_summary(db: Db) {
    let app = support::app(db).await;
    seed(&app).await;
    let summary = "/fhir/Patient/p-none/$summary?mode=emergency";
    // no consent, no relation: a normal request is refused
    get_as(&app, &principal("hosp-other"), summary).await.assert_outcome(403);
    // with the emergency role, ETREAT and a reason: the emergency summary is served
    let ok = btg("hosp-other", true, Some("意識障害で救急搬送、既往歴確認のため"));
    let r = get_as(&app, &ok, summary).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["resourceType"], "Bundle");
    // BTG purpose works too
    let mut btg_purpose = ok.clone();
    btg_purpose.purpose_of_use = Some("BTG".into());
    assert_eq!(get_as(&app, &btg_purpose, summary).await.status, 200);
    // without the emergency role / without a reason / with a blank reason: refused, saying why
    let oo = get_as(&app, &btg("hosp-other", false, Some("急変")), summary).await.assert_outcome(403);
    assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().contains("emergency role"), "{oo}");
    let oo = get_as(&app, &btg("hosp-other", true, None), summary).await.assert_outcome(403);
    assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().contains("reason"), "{oo}");
    get_as(&app, &btg("hosp-other", true, Some("  ")), summary).await.assert_outcome(403);
    // anything but the emergency summary: refused
    for uri in [
        "/fhir/Patient/p-none",
        "/fhir/Observation/obs-p-none",
        "/fhir/Patient/p-none/$summary?mode=multidisciplinary",
        "/view/patient/p-none?mode=emergency",
    ] {
        assert_eq!(get_as(&app, &ok, uri).await.status, 403, "{uri}");
    }
    let b = get_as(&app, &ok, "/fhir/Patient?_total=accurate").await.json();
    assert!(!ids_of(&b, "match", "Patient").contains("p-none"), "search is not an emergency summary");

    // audited as emergency overrides (DICOM 110113 / 110127) with the reason; the secretariat sees them
    let r = get_as(&app, &secretariat(), "/fhir/AuditEvent?subtype=110127&date=ge2020-01-01").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    let events: Vec<&Value> = b["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect();
    assert_eq!(events.len(), 2, "two overrides (ETREAT, BTG): {}", r.body);
    for e in &events {
        assert_eq!(e["type"]["code"], "110113");
        assert_eq!(e["subtype"][0]["code"], "110127");
        assert_eq!(e["agent"][0]["purposeOfUse"][0]["text"], "意識障害で救急搬送、既往歴確認のため");
        assert!(e["entity"].as_array().unwrap().iter().any(|x| x["what"]["reference"] == "Patient/p-none"));
    }
    assert_eq!(b["total"], 2);
    // patient filter and agent filter
    let b = get_as(&app, &secretariat(), "/fhir/AuditEvent?patient=Patient/p-none&agent=Organization/hosp-other&_count=100").await.json();
    assert!(b["total"].as_u64().unwrap() >= 7, "{b}");
    // only the secretariat may search the trail
    get_as(&app, &principal("hosp-other"), "/fhir/AuditEvent?subtype=110127").await.assert_outcome(403);
    // the secretariat report lists them
    let rep = tobiume_gateway::audit::report_break_the_glass(&app.store, 0).await.unwrap();
    assert_eq!(rep.len(), 2);
    assert!(rep.iter().all(|e| e.patients == vec!["p-none".to_string()] && e.agents.contains(&"Organization/hosp-other".to_string())));
    // a consented patient needs no override: a normal event
    let r = get_as(&app, &ok, "/fhir/Patient/p-blanket/$summary?mode=emergency").await;
    assert_eq!(r.status, 200);
    assert_eq!(tobiume_gateway::audit::report_break_the_glass(&app.store, 0).await.unwrap().len(), 2);
}

both_db!(pages_of_many_patients_are_decided_per_patient);
async fn pages_of_many_patients_are_decided_per_patient(db: Db) {
    // Many patients on one search page (one batched fact lookup), decided identically from the cache
    // on the next request.
    let app = support::app(db).await;
    seed(&app).await;
    let mut r = Vec::new();
    for i in 0..60 {
        let id = format!("bulk-{i}");
        let mut p = patient(&id);
        if i % 3 == 0 {
            p["managingOrganization"] = json!({"reference": "Organization/clinic-a"});
        }
        r.push(p);
    }
    put_all(&app, &r).await;
    let a = principal("clinic-a");
    let first = get_as(&app, &a, "/fhir/Patient?_count=200&_total=accurate").await.json();
    let second = get_as(&app, &a, "/fhir/Patient?_count=200&_total=accurate").await.json();
    let ids: HashSet<String> = ids_of(&first, "match", "Patient").into_iter().collect();
    assert_eq!(ids.iter().filter(|i| i.starts_with("bulk-")).count(), 20);
    assert_eq!(ids_of(&first, "match", "Patient"), ids_of(&second, "match", "Patient"));
    assert_eq!(first["total"], second["total"]);
}

both_db!(demo_consents_show_each_rule);
async fn demo_consents_show_each_rule(db: Db) {
    use tobiume_gateway::consent::demo::{seed as seed_demo, DEMO_FACILITY};
    let app = support::app(db).await;
    let patients: Vec<Value> = (0..5).map(|i| patient(&format!("demo-{i}"))).collect();
    put_all(&app, &patients).await;
    let c = seed_demo(&app.store, 20).await.unwrap();
    assert_eq!(c.blanket, 3);
    let per = c.per_facility.unwrap();
    let gone = c.withdrawn.unwrap();
    let demo = principal(DEMO_FACILITY);
    let b = get_as(&app, &demo, "/fhir/Patient?_total=accurate").await.json();
    assert_eq!(b["total"], 4, "{b}");
    assert!(ids_of(&b, "match", "Patient").contains(&per));
    get_as(&app, &demo, &format!("/fhir/Patient/{gone}")).await.assert_outcome(403);
    let other = get_as(&app, &principal("hosp-other"), "/fhir/Patient?_total=accurate").await.json();
    assert_eq!(other["total"], 3, "the per-facility consent is for the demo facility only");
    assert!(tobiume_gateway::audit::verify(&app.store).await.unwrap().broken.is_none());
}
