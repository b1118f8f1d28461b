//! Registration → FHIR R4 resources (JP Core 1.1.2 based Tobiume-net profiles).
//!
//! | item (`docs/domain.md` §1.1) | resource / element | profile |
//! |---|---|---|
//! | card id, names (IDE kanji / SYL kana), birth date, sex, address, phones | `Patient` | TobiumePatient (JP_Patient) |
//! | registering clinic | `Patient.managingOrganization` → `Organization` | TobiumeOrganization |
//! | emergency referral hospital, care facility | Patient extensions → `Organization` | TobiumeOrganization |
//! | emergency contacts | `Patient.contact` (relationship v2-0131 `C` + ours) | |
//! | attending doctor, visiting-nurse station, nurse, home-care support office, care manager | `CareTeam.participant` → `Practitioner` / `Organization` | TobiumeCareTeam, TobiumePractitioner |
//! | insurance | `Coverage` (JP_Coverage symbol/number/sub-number extensions) | TobiumeCoverage |
//! | residence type | `Observation` (social-history) | TobiumeObservationResidence |
//! | main diagnoses (≤ 5) | `Condition` | TobiumeMainDiagnosis (JP_Condition) |
//! | history, remarks | `Observation.valueString` | TobiumeObservationNarrative |
//! | prescriptions (coded and free text) | `MedicationStatement` | TobiumeMedicationStatement |
//! | contraindicated drugs | `AllergyIntolerance` category medication, criticality high (JP-CLINS 薬剤禁忌) | TobiumeContraindicatedDrug |
//! | allergies | `AllergyIntolerance` | TobiumeAllergyIntolerance |
//! | current treatment | pacemaker / implanted metal: `Device` + `DeviceUseStatement`; others: `Procedure` | TobiumeDevice, TobiumeDeviceUseStatement, TobiumeProcedure |
//! | ADL, care level, disability, impairments, dementia level, HDS-R, MMSE, behaviour | `Observation` | TobiumeObservation* |
//! | wishes for emergency care + ACP text | `Consent` scope `adr`, ACP in `sourceAttachment` | TobiumeConsentEmergencyCare |
//! | patient's wishes about information | `Consent` scope `patient-privacy` | TobiumeConsentInformation |

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{json, Map, Value};

use super::terminology::*;
use super::*;
use crate::mapping::json::{put, resource};

const JP_OBS_CATEGORY: &str =
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS";
const NAME_REPRESENTATION: &str =
    "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";
const JP_COVERAGE_EXT: &str =
    "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPerson";

/// The embedded ConceptMap of standard codes (LOINC, SNOMED CT, allergy category) added next to the
/// Tobiume-net codes.
const STANDARD_MAP: &str = include_str!("../../../mappings/tobiume/registration-to-standard.json");

/// `(source system, source code)` → `(target system, code, display)` list.
type StandardMap = HashMap<(String, String), Vec<(String, String, String)>>;

/// The standard-code map, parsed once.
static STANDARD: LazyLock<StandardMap> = LazyLock::new(|| {
    let mut out = HashMap::new();
    // A broken embedded file only loses the extra codings; the `standard_map_loads` test guards it.
    let Ok(cm) = serde_json::from_str::<Value>(STANDARD_MAP) else {
        return out;
    };
    for g in cm["group"].as_array().into_iter().flatten() {
        let (Some(src), Some(tgt)) = (g["source"].as_str(), g["target"].as_str()) else {
            continue;
        };
        for el in g["element"].as_array().into_iter().flatten() {
            let Some(code) = el["code"].as_str() else {
                continue;
            };
            let targets: Vec<_> = el["target"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    Some((
                        tgt.to_string(),
                        t["code"].as_str()?.to_string(),
                        t["display"].as_str().unwrap_or("").to_string(),
                    ))
                })
                .collect();
            out.insert((src.to_string(), code.to_string()), targets);
        }
    }
    out
});

/// Standard codings for a Tobiume-net code (empty when the ConceptMap has none).
fn standard<T: Choice>(c: T) -> Vec<Value> {
    STANDARD
        .get(&(T::system(), c.code().to_string()))
        .map(|v| {
            v.iter()
                .map(|(s, c, d)| json!({"system": s, "code": c, "display": d}))
                .collect()
        })
        .unwrap_or_default()
}

/// The target codes only (for `AllergyIntolerance.category`, a `code`).
fn standard_codes<T: Choice>(c: T) -> Vec<String> {
    STANDARD
        .get(&(T::system(), c.code().to_string()))
        .map(|v| v.iter().map(|t| t.1.clone()).collect())
        .unwrap_or_default()
}

/// The [`ext::ITEM_META`] extension for `m`.
pub(crate) fn item_meta(m: &ItemMeta) -> Value {
    let mut subs = vec![
        json!({"url": "lastUpdated", "valueDateTime": m.last_updated.as_str()}),
        json!({"url": "author", "valueString": m.author.name}),
    ];
    if let Some(f) = &m.author.facility {
        subs.push(json!({"url": "authorFacility", "valueString": f}));
    }
    json!({"url": ext::ITEM_META, "extension": subs})
}

/// Appends `ext` to `obj.extension`.
fn add_ext(obj: &mut Map<String, Value>, ext: Value) {
    match obj.get_mut("extension") {
        Some(Value::Array(a)) => a.push(ext),
        _ => {
            obj.insert("extension".into(), Value::Array(vec![ext]));
        }
    }
}

/// An element object carrying only the item-meta extension (for `_birthDate`, `_gender`).
fn meta_only(m: &ItemMeta) -> Value {
    json!({"extension": [item_meta(m)]})
}

fn cc(coding: Value, text: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("coding".into(), json!([coding]));
    put(&mut m, "text", json!(text));
    Value::Object(m)
}

fn cc_many(codings: Vec<Value>, text: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("coding".into(), Value::Array(codings));
    put(&mut m, "text", json!(text));
    Value::Object(m)
}

fn note(text: Option<&str>) -> Value {
    match text {
        Some(t) => json!([{"text": t}]),
        None => Value::Null,
    }
}

/// Splits an address text into (state, city, line) following JP Core: state = 都道府県, city = 郡市区町村
/// (up to the first 市, else 郡…町/村, else the first 区/町/村), line = the rest.
pub(crate) fn split_address(text: &str) -> (Option<&str>, Option<&str>, Option<&str>) {
    let (state, rest) = match crate::mapping::PREFECTURES.iter().find(|p| text.starts_with(*p)) {
        Some(p) => (Some(&text[..p.len()]), &text[p.len()..]),
        None => (None, text),
    };
    let end = |s: &str, chars: &[char]| {
        s.char_indices()
            .find(|(_, c)| chars.contains(c))
            .map(|(i, c)| i + c.len_utf8())
    };
    let city_end = end(rest, &['市'])
        .or_else(|| {
            rest.find('郡')
                .and_then(|g| end(&rest[g..], &['町', '村']).map(|e| g + e))
        })
        .or_else(|| end(rest, &['区', '町', '村']));
    let (city, line) = match city_end {
        Some(e) if e < rest.len() => (Some(&rest[..e]), Some(&rest[e..])),
        Some(_) => (Some(rest), None),
        None => (None, if rest.is_empty() { None } else { Some(rest) }),
    };
    (state, city, line)
}

fn human_name(n: &PersonName, representation: &str, meta: Option<&ItemMeta>) -> Value {
    let mut m = Map::new();
    let mut exts = vec![json!({"url": NAME_REPRESENTATION, "valueCode": representation})];
    if let Some(meta) = meta {
        exts.push(item_meta(meta));
    }
    m.insert("extension".into(), Value::Array(exts));
    m.insert("use".into(), json!("official"));
    let text = match &n.given {
        Some(g) => format!("{} {}", n.family, g),
        None => n.family.clone(),
    };
    m.insert("text".into(), json!(text));
    m.insert("family".into(), json!(n.family));
    if let Some(g) = &n.given {
        m.insert("given".into(), json!([g]));
    }
    Value::Object(m)
}

fn text_name(text: &str, representation: &str) -> Value {
    json!({"extension": [{"url": NAME_REPRESENTATION, "valueCode": representation}], "use": "official", "text": text})
}

fn phone(p: &Phone, meta: Option<&ItemMeta>) -> Value {
    let mut m = Map::new();
    if let Some(meta) = meta {
        m.insert("extension".into(), json!([item_meta(meta)]));
    }
    m.insert("system".into(), json!("phone"));
    m.insert("value".into(), json!(p.number));
    m.insert("use".into(), json!(p.use_.code()));
    Value::Object(m)
}

struct Out<'a> {
    r: &'a Registration,
    ids: &'a Ids,
    patient_ref: Value,
    resources: Vec<Value>,
}

impl<'a> Out<'a> {
    fn id(&self, part: &str) -> String {
        self.ids.part(&self.r.card_id, part)
    }

    fn reference(&self, rtype: &str, part: &str, display: &str, meta: Option<&ItemMeta>) -> Value {
        let mut m = Map::new();
        if let Some(meta) = meta {
            m.insert("extension".into(), json!([item_meta(meta)]));
        }
        m.insert(
            "reference".into(),
            json!(format!("{rtype}/{}", self.id(part))),
        );
        m.insert("display".into(), json!(display));
        Value::Object(m)
    }

    fn organization(&mut self, part: &str, f: &Facility, id_system: &str) {
        let mut o = resource("Organization", &self.id(part), profile::ORGANIZATION);
        if let Some(code) = &f.code {
            o.insert(
                "identifier".into(),
                json!([{"system": id_system, "value": code}]),
            );
        }
        o.insert("active".into(), json!(true));
        o.insert("name".into(), json!(f.name));
        if let Some(p) = &f.phone {
            o.insert(
                "telecom".into(),
                json!([{"system": "phone", "value": p, "use": "work"}]),
            );
        }
        if let Some(a) = &f.address {
            o.insert("address".into(), json!([{"use": "work", "text": a}]));
        }
        self.resources.push(Value::Object(o));
    }

    fn practitioner(&mut self, part: &str, p: &Professional) {
        let mut o = resource("Practitioner", &self.id(part), profile::PRACTITIONER);
        o.insert("active".into(), json!(true));
        let mut names = vec![text_name(&p.name, "IDE")];
        if let Some(k) = &p.name_kana {
            names.push(text_name(k, "SYL"));
        }
        o.insert("name".into(), Value::Array(names));
        if let Some(ph) = &p.phone {
            o.insert(
                "telecom".into(),
                json!([{"system": "phone", "value": ph, "use": "work"}]),
            );
        }
        self.resources.push(Value::Object(o));
    }

    fn observation(
        &mut self,
        part: &str,
        prof: &str,
        item: RegistrationItem,
        jp_category: Option<&str>,
        meta: &ItemMeta,
    ) -> Map<String, Value> {
        let mut o = resource("Observation", &self.id(part), prof);
        o.insert("extension".into(), json!([item_meta(meta)]));
        o.insert("status".into(), json!("final"));
        let mut cats = Vec::new();
        if let Some(c) = jp_category {
            cats.push(json!({"coding": [{"system": JP_OBS_CATEGORY, "code": c}]}));
        }
        cats.push(json!({"coding": [item.section().coding()]}));
        o.insert("category".into(), Value::Array(cats));
        let mut codings = vec![item.coding()];
        codings.extend(standard(item));
        o.insert("code".into(), cc_many(codings, Some(item.display())));
        o.insert("subject".into(), self.patient_ref.clone());
        o
    }

    fn coded_observation<C: Choice>(
        &mut self,
        part: &str,
        prof: &str,
        item: RegistrationItem,
        cat: Option<&str>,
        it: &Item<C>,
    ) {
        let mut o = self.observation(part, prof, item, cat, &it.meta);
        o.insert(
            "effectiveDateTime".into(),
            json!(it.meta.last_updated.as_str()),
        );
        o.insert("valueCodeableConcept".into(), cc(it.value.coding(), None));
        self.resources.push(Value::Object(o));
    }

    fn assessment<C: Choice>(
        &mut self,
        part: &str,
        item: RegistrationItem,
        it: &Option<Item<Assessment<C>>>,
    ) {
        let Some(it) = it else { return };
        let mut o = self.observation(
            part,
            profile::OBSERVATION_ADL,
            item,
            Some("functional-status"),
            &it.meta,
        );
        o.insert(
            "effectiveDateTime".into(),
            json!(it.meta.last_updated.as_str()),
        );
        o.insert(
            "valueCodeableConcept".into(),
            cc(it.value.level.coding(), None),
        );
        put(&mut o, "note", note(it.value.note.as_deref()));
        self.resources.push(Value::Object(o));
    }

    fn narrative(&mut self, part: &str, item: RegistrationItem, it: &Option<Item<String>>) {
        let Some(it) = it else { return };
        let mut o = self.observation(part, profile::OBSERVATION_NARRATIVE, item, None, &it.meta);
        o.insert(
            "effectiveDateTime".into(),
            json!(it.meta.last_updated.as_str()),
        );
        o.insert("valueString".into(), json!(it.value));
        self.resources.push(Value::Object(o));
    }

    fn score(&mut self, part: &str, item: RegistrationItem, it: &Option<Item<CognitiveScore>>) {
        let Some(it) = it else { return };
        let mut o = self.observation(
            part,
            profile::OBSERVATION_DEMENTIA,
            item,
            Some("survey"),
            &it.meta,
        );
        if let Some(d) = &it.value.date {
            o.insert("effectiveDateTime".into(), json!(d.as_str()));
        }
        o.insert(
            "valueQuantity".into(),
            json!({"value": it.value.score, "unit": "点", "system": "http://unitsofmeasure.org", "code": "{score}"}),
        );
        self.resources.push(Value::Object(o));
    }
}

/// Maps a registration to FHIR R4 resources.
///
/// Input: a registration (valid per [`Registration::validate`] for a lossless round trip; an invalid
/// one still maps, e.g. a 6th diagnosis becomes `…-diagnosis-6`) and the id scheme. Output: JSON
/// resources, each with `resourceType`, a stable `id` derived from the card id and `meta.profile` = one
/// Tobiume-net profile ([`profile`]); order: Patient, Organizations, Practitioners, CareTeam, Coverage,
/// then the clinical items in `docs/domain.md` §1.1 order. Every produced resource passes the R4
/// JSON-schema check. Never fails, never panics.
pub fn to_fhir(r: &Registration, ids: &Ids) -> Vec<Value> {
    let patient_id = ids.patient(&r.card_id);
    let mut out = Out {
        r,
        ids,
        patient_ref: json!({"reference": format!("Patient/{patient_id}")}),
        resources: Vec::with_capacity(48),
    };
    let reg = &r.registration;
    let d = &r.demographics;

    // ---- Patient -----------------------------------------------------------------------------------
    let mut p = resource("Patient", &patient_id, profile::PATIENT);
    if let Some(h) = &reg.emergency_referral_hospital {
        add_ext(
            &mut p,
            json!({"url": ext::EMERGENCY_REFERRAL_HOSPITAL, "valueReference": out.reference("Organization", "org-emergency-hospital", &h.value.name, Some(&h.meta))}),
        );
    }
    if let Some(f) = &reg.care_facility {
        add_ext(
            &mut p,
            json!({"url": ext::CARE_FACILITY, "valueReference": out.reference("Organization", "org-care-facility", &f.value.name, Some(&f.meta))}),
        );
    }
    p.insert(
        "identifier".into(),
        json!([{"system": CARD_ID_SYSTEM, "value": r.card_id.as_str()}]),
    );
    p.insert("active".into(), json!(true));
    p.insert(
        "name".into(),
        json!([
            human_name(&d.name_kanji.value, "IDE", Some(&d.name_kanji.meta)),
            human_name(&d.name_kana.value, "SYL", Some(&d.name_kana.meta))
        ]),
    );
    put(
        &mut p,
        "telecom",
        Value::Array(
            d.phones
                .iter()
                .map(|ph| phone(&ph.value, Some(&ph.meta)))
                .collect(),
        ),
    );
    p.insert("gender".into(), json!(d.sex.value.code()));
    p.insert("_gender".into(), meta_only(&d.sex.meta));
    p.insert("birthDate".into(), json!(d.birth_date.value.as_str()));
    p.insert("_birthDate".into(), meta_only(&d.birth_date.meta));
    if let Some(a) = &d.address {
        let mut m = Map::new();
        m.insert("extension".into(), json!([item_meta(&a.meta)]));
        m.insert("use".into(), json!("home"));
        m.insert("text".into(), json!(a.value.text));
        let (state, city, line) = split_address(&a.value.text);
        if let Some(l) = line {
            m.insert("line".into(), json!([l]));
        }
        put(&mut m, "city", json!(city));
        put(&mut m, "state", json!(state));
        put(&mut m, "postalCode", json!(a.value.postal_code));
        m.insert("country".into(), json!("JP"));
        p.insert("address".into(), json!([m]));
    }
    let contacts: Vec<Value> = reg
        .emergency_contacts
        .iter()
        .map(|c| {
            let mut m = Map::new();
            m.insert("extension".into(), json!([item_meta(&c.meta)]));
            m.insert(
                "relationship".into(),
                json!([
                    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "C", "display": "Emergency Contact"}]},
                    cc(c.value.relationship.coding(), c.value.relationship_text.as_deref())
                ]),
            );
            m.insert("name".into(), json!({"text": c.value.name}));
            put(&mut m, "telecom", Value::Array(c.value.phones.iter().map(|ph| phone(ph, None)).collect()));
            Value::Object(m)
        })
        .collect();
    put(&mut p, "contact", Value::Array(contacts));
    let mut gp = Vec::new();
    if let Some(doc) = &reg.attending_doctor {
        gp.push(out.reference(
            "Practitioner",
            "practitioner-attending-doctor",
            &doc.value.name,
            None,
        ));
    }
    gp.push(out.reference(
        "Organization",
        "org-registering-clinic",
        &reg.registering_clinic.value.name,
        None,
    ));
    p.insert("generalPractitioner".into(), Value::Array(gp));
    p.insert(
        "managingOrganization".into(),
        out.reference(
            "Organization",
            "org-registering-clinic",
            &reg.registering_clinic.value.name,
            Some(&reg.registering_clinic.meta),
        ),
    );
    out.resources.push(Value::Object(p));

    // ---- Organizations, Practitioners, CareTeam, Coverage ------------------------------------------
    out.organization(
        "org-registering-clinic",
        &reg.registering_clinic.value,
        MEDICAL_INSTITUTION_SYSTEM,
    );
    if let Some(h) = &reg.emergency_referral_hospital {
        out.organization(
            "org-emergency-hospital",
            &h.value,
            MEDICAL_INSTITUTION_SYSTEM,
        );
    }
    if let Some(f) = &reg.care_facility {
        out.organization("org-care-facility", &f.value, LTC_PROVIDER_SYSTEM);
    }
    if let Some(f) = &reg.visiting_nurse_station {
        out.organization(
            "org-visiting-nurse-station",
            &f.value,
            MEDICAL_INSTITUTION_SYSTEM,
        );
    }
    if let Some(f) = &reg.home_care_support_office {
        out.organization(
            "org-home-care-support-office",
            &f.value,
            LTC_PROVIDER_SYSTEM,
        );
    }
    if let Some(x) = &reg.attending_doctor {
        out.practitioner("practitioner-attending-doctor", &x.value);
    }
    if let Some(x) = &reg.visiting_nurse {
        out.practitioner("practitioner-visiting-nurse", &x.value);
    }
    if let Some(x) = &reg.care_manager {
        out.practitioner("practitioner-care-manager", &x.value);
    }
    let mut participants = Vec::new();
    let mut member = |role: CareTeamRole, rtype: &str, part: &str, name: &str, meta: &ItemMeta| {
        participants.push(json!({
            "extension": [item_meta(meta)],
            "role": [cc(role.coding(), None)],
            "member": out.reference(rtype, part, name, None),
        }));
    };
    if let Some(x) = &reg.attending_doctor {
        member(
            CareTeamRole::AttendingDoctor,
            "Practitioner",
            "practitioner-attending-doctor",
            &x.value.name,
            &x.meta,
        );
    }
    if let Some(x) = &reg.visiting_nurse_station {
        member(
            CareTeamRole::VisitingNurseStation,
            "Organization",
            "org-visiting-nurse-station",
            &x.value.name,
            &x.meta,
        );
    }
    if let Some(x) = &reg.visiting_nurse {
        member(
            CareTeamRole::VisitingNurse,
            "Practitioner",
            "practitioner-visiting-nurse",
            &x.value.name,
            &x.meta,
        );
    }
    if let Some(x) = &reg.home_care_support_office {
        member(
            CareTeamRole::HomeCareSupportOffice,
            "Organization",
            "org-home-care-support-office",
            &x.value.name,
            &x.meta,
        );
    }
    if let Some(x) = &reg.care_manager {
        member(
            CareTeamRole::CareManager,
            "Practitioner",
            "practitioner-care-manager",
            &x.value.name,
            &x.meta,
        );
    }
    let has_care_team = !participants.is_empty();
    if has_care_team {
        let mut t = resource("CareTeam", &out.id("care-team"), profile::CARE_TEAM);
        t.insert("status".into(), json!("active"));
        t.insert("name".into(), json!("とびうめネット 多職種連携ケアチーム"));
        t.insert("subject".into(), out.patient_ref.clone());
        t.insert("participant".into(), Value::Array(participants));
        t.insert(
            "managingOrganization".into(),
            json!([out.reference(
                "Organization",
                "org-registering-clinic",
                &reg.registering_clinic.value.name,
                None
            )]),
        );
        out.resources.push(Value::Object(t));
    }
    if let Some(ins) = &reg.insurance {
        let mut c = resource("Coverage", &out.id("coverage"), profile::COVERAGE);
        let mut exts = vec![item_meta(&ins.meta)];
        if let Some(s) = &ins.value.symbol {
            exts.push(json!({"url": format!("{JP_COVERAGE_EXT}Symbol"), "valueString": s}));
        }
        exts.push(
            json!({"url": format!("{JP_COVERAGE_EXT}Number"), "valueString": ins.value.number}),
        );
        if let Some(b) = &ins.value.branch {
            exts.push(json!({"url": format!("{JP_COVERAGE_EXT}SubNumber"), "valueString": b}));
        }
        c.insert("extension".into(), Value::Array(exts));
        c.insert("status".into(), json!("active"));
        c.insert("beneficiary".into(), out.patient_ref.clone());
        let payor = match &ins.value.insurer_number {
            Some(n) => json!([{"identifier": {"system": INSURER_NUMBER_SYSTEM, "value": n}}]),
            None => json!([{"display": "保険者番号未登録"}]),
        };
        c.insert("payor".into(), payor);
        out.resources.push(Value::Object(c));
    }
    if let Some(rt) = &reg.residence_type {
        out.coded_observation(
            "residence-type",
            profile::OBSERVATION_RESIDENCE,
            RegistrationItem::ResidenceType,
            Some("social-history"),
            rt,
        );
    }

    // ---- Main diagnoses, history ------------------------------------------------------------------
    for (i, dx) in r.main_diagnoses.iter().enumerate() {
        let mut c = resource(
            "Condition",
            &out.id(&format!("diagnosis-{}", i + 1)),
            profile::CONDITION,
        );
        c.insert("extension".into(), json!([item_meta(&dx.meta)]));
        c.insert("clinicalStatus".into(), json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}));
        c.insert("verificationStatus".into(), json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]}));
        c.insert(
            "category".into(),
            json!([
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item", "display": "Problem List Item"}]},
                {"coding": [RegistrationItem::MainDiagnosis.coding()]}
            ]),
        );
        let codings: Vec<Value> = dx
            .value
            .code
            .iter()
            .map(|k| json!({"system": k.system.uri(), "code": k.code, "display": dx.value.name}))
            .collect();
        c.insert("code".into(), cc_many(codings, Some(&dx.value.name)));
        c.insert("subject".into(), out.patient_ref.clone());
        if let Some(o) = &dx.value.onset {
            c.insert("onsetDateTime".into(), json!(o.as_str()));
        }
        out.resources.push(Value::Object(c));
    }
    out.narrative("history", RegistrationItem::History, &r.history);

    // ---- Prescriptions ----------------------------------------------------------------------------
    for (i, rx) in r.prescriptions.iter().enumerate() {
        let mut m = resource(
            "MedicationStatement",
            &out.id(&format!("medication-{}", i + 1)),
            profile::MEDICATION_STATEMENT,
        );
        m.insert("extension".into(), json!([item_meta(&rx.meta)]));
        m.insert("status".into(), json!("active"));
        let codings: Vec<Value> = rx
            .value
            .code
            .iter()
            .map(|k| json!({"system": k.system.uri(), "code": k.code, "display": rx.value.drug}))
            .collect();
        m.insert(
            "medicationCodeableConcept".into(),
            cc_many(codings, Some(&rx.value.drug)),
        );
        m.insert("subject".into(), out.patient_ref.clone());
        m.insert("dateAsserted".into(), json!(rx.meta.last_updated.as_str()));
        if let Some(dose) = &rx.value.dosage {
            m.insert("dosage".into(), json!([{"text": dose}]));
        }
        out.resources.push(Value::Object(m));
    }
    if let Some(t) = &r.prescription_text {
        let mut m = resource(
            "MedicationStatement",
            &out.id("prescription-text"),
            profile::MEDICATION_STATEMENT,
        );
        m.insert("extension".into(), json!([item_meta(&t.meta)]));
        m.insert("status".into(), json!("active"));
        m.insert(
            "medicationCodeableConcept".into(),
            cc(RegistrationItem::PrescriptionText.coding(), Some(&t.value)),
        );
        m.insert("subject".into(), out.patient_ref.clone());
        m.insert("dateAsserted".into(), json!(t.meta.last_updated.as_str()));
        out.resources.push(Value::Object(m));
    }

    // ---- Contraindicated drugs, allergies -----------------------------------------------------------
    for (i, x) in r.contraindicated_drugs.iter().enumerate() {
        let mut a = resource(
            "AllergyIntolerance",
            &out.id(&format!("contraindication-{}", i + 1)),
            profile::CONTRAINDICATED_DRUG,
        );
        a.insert("extension".into(), json!([item_meta(&x.meta)]));
        a.insert("clinicalStatus".into(), json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]}));
        a.insert("verificationStatus".into(), json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]}));
        a.insert("category".into(), json!(["medication"]));
        a.insert("criticality".into(), json!("high"));
        let codings: Vec<Value> = x
            .value
            .code
            .iter()
            .map(|k| json!({"system": k.system.uri(), "code": k.code, "display": x.value.drug}))
            .collect();
        a.insert("code".into(), cc_many(codings, Some(&x.value.drug)));
        a.insert("patient".into(), out.patient_ref.clone());
        put(&mut a, "note", note(x.value.reason.as_deref()));
        out.resources.push(Value::Object(a));
    }
    for (i, x) in r.allergies.iter().enumerate() {
        let mut a = resource(
            "AllergyIntolerance",
            &out.id(&format!("allergy-{}", i + 1)),
            profile::ALLERGY,
        );
        a.insert("extension".into(), json!([item_meta(&x.meta)]));
        a.insert("clinicalStatus".into(), json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]}));
        let ver = if x.value.kind == AllergyKind::Unknown {
            "unconfirmed"
        } else {
            "confirmed"
        };
        a.insert("verificationStatus".into(), json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": ver}]}));
        put(&mut a, "category", json!(standard_codes(x.value.kind)));
        a.insert(
            "code".into(),
            cc(x.value.kind.coding(), x.value.detail.as_deref()),
        );
        a.insert("patient".into(), out.patient_ref.clone());
        out.resources.push(Value::Object(a));
    }

    // ---- Current treatment --------------------------------------------------------------------------
    for (i, t) in r.current_treatments.iter().enumerate() {
        let n = i + 1;
        let mut codings = vec![t.value.kind.coding()];
        codings.extend(standard(t.value.kind));
        let code = cc_many(codings, t.value.detail.as_deref());
        if t.value.kind.is_device() {
            let mut dev = resource("Device", &out.id(&format!("device-{n}")), profile::DEVICE);
            dev.insert("status".into(), json!("active"));
            dev.insert("type".into(), code);
            dev.insert("patient".into(), out.patient_ref.clone());
            out.resources.push(Value::Object(dev));
            let mut u = resource(
                "DeviceUseStatement",
                &out.id(&format!("device-use-{n}")),
                profile::DEVICE_USE_STATEMENT,
            );
            u.insert("extension".into(), json!([item_meta(&t.meta)]));
            u.insert("status".into(), json!("active"));
            u.insert("subject".into(), out.patient_ref.clone());
            u.insert("recordedOn".into(), json!(t.meta.last_updated.as_str()));
            u.insert(
                "device".into(),
                json!({"reference": format!("Device/{}", out.id(&format!("device-{n}")))}),
            );
            out.resources.push(Value::Object(u));
        } else {
            let mut pr = resource(
                "Procedure",
                &out.id(&format!("procedure-{n}")),
                profile::PROCEDURE,
            );
            pr.insert("extension".into(), json!([item_meta(&t.meta)]));
            let status = if t.value.kind == TreatmentKind::Unknown {
                "unknown"
            } else {
                "in-progress"
            };
            pr.insert("status".into(), json!(status));
            pr.insert("code".into(), code);
            pr.insert("subject".into(), out.patient_ref.clone());
            out.resources.push(Value::Object(pr));
        }
    }

    // ---- Wishes for emergency care + ACP --------------------------------------------------------------
    if r.emergency_care_wishes.is_some() || r.acp.is_some() {
        let mut c = resource(
            "Consent",
            &out.id("consent-emergency-care"),
            profile::CONSENT_EMERGENCY_CARE,
        );
        if let Some(w) = &r.emergency_care_wishes {
            c.insert("extension".into(), json!([item_meta(&w.meta)]));
        }
        c.insert("status".into(), json!("active"));
        c.insert("scope".into(), json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "adr", "display": "Advanced Care Directive"}]}));
        c.insert(
            "category".into(),
            json!([
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentcategorycodes", "code": "acd", "display": "Advance Directive"}]},
                {"coding": [RegistrationItem::EmergencyCareWishes.coding()]}
            ]),
        );
        c.insert("patient".into(), out.patient_ref.clone());
        let date = r
            .emergency_care_wishes
            .as_ref()
            .map(|w| &w.meta)
            .or(r.acp.as_ref().map(|a| &a.meta));
        if let Some(m) = date {
            c.insert("dateTime".into(), json!(m.last_updated.as_str()));
        }
        c.insert("performer".into(), json!([out.patient_ref.clone()]));
        c.insert(
            "organization".into(),
            json!([out.reference(
                "Organization",
                "org-registering-clinic",
                &reg.registering_clinic.value.name,
                None
            )]),
        );
        if let Some(a) = &r.acp {
            c.insert(
                "sourceAttachment".into(),
                text_attachment(&a.value, "ACP（人生会議）の記録", &a.meta),
            );
        }
        c.insert("policy".into(), json!([{"uri": policy::EMERGENCY_CARE}]));
        if let Some(w) = &r.emergency_care_wishes {
            let nested: Vec<Value> = w
                .value
                .iter()
                .map(|x| json!({"type": x.provision_type(), "code": [cc(x.coding(), None)]}))
                .collect();
            c.insert(
                "provision".into(),
                json!({"type": "permit", "provision": nested}),
            );
        }
        out.resources.push(Value::Object(c));
    }

    // ---- ADL, disability, care level, impairments, dementia, behaviour -------------------------------
    out.assessment("adl-eating", RegistrationItem::AdlEating, &r.adl.eating);
    out.assessment(
        "adl-feeding-route",
        RegistrationItem::AdlFeedingRoute,
        &r.adl.feeding_route,
    );
    out.assessment(
        "adl-food-form",
        RegistrationItem::AdlFoodForm,
        &r.adl.food_form,
    );
    out.assessment(
        "adl-excretion",
        RegistrationItem::AdlExcretion,
        &r.adl.excretion,
    );
    out.assessment(
        "adl-mobility",
        RegistrationItem::AdlMobility,
        &r.adl.mobility,
    );
    out.assessment(
        "adl-breathing",
        RegistrationItem::AdlBreathing,
        &r.adl.breathing,
    );
    if let Some(x) = &r.disability.physical {
        out.coded_observation(
            "disability-physical",
            profile::OBSERVATION_DISABILITY,
            RegistrationItem::PhysicalDisability,
            Some("disability-status"),
            x,
        );
    }
    if let Some(x) = &r.disability.mental {
        out.coded_observation(
            "disability-mental",
            profile::OBSERVATION_DISABILITY,
            RegistrationItem::MentalDisability,
            Some("disability-status"),
            x,
        );
    }
    if let Some(x) = &r.disability.rehabilitation {
        out.coded_observation(
            "disability-rehabilitation",
            profile::OBSERVATION_DISABILITY,
            RegistrationItem::RehabilitationCertificate,
            Some("disability-status"),
            x,
        );
    }
    if let Some(x) = &r.care_level {
        out.coded_observation(
            "care-level",
            profile::OBSERVATION_CARE_LEVEL,
            RegistrationItem::CareLevel,
            Some("functional-status"),
            x,
        );
    }
    for (i, x) in r.impairments.iter().enumerate() {
        let mut o = out.observation(
            &format!("impairment-{}", i + 1),
            profile::OBSERVATION_IMPAIRMENT,
            RegistrationItem::Impairment,
            Some("disability-status"),
            &x.meta,
        );
        o.insert(
            "effectiveDateTime".into(),
            json!(x.meta.last_updated.as_str()),
        );
        o.insert(
            "valueCodeableConcept".into(),
            cc(x.value.kind.coding(), None),
        );
        put(&mut o, "note", note(x.value.note.as_deref()));
        out.resources.push(Value::Object(o));
    }
    if let Some(x) = &r.dementia.level {
        out.coded_observation(
            "dementia-level",
            profile::OBSERVATION_DEMENTIA,
            RegistrationItem::DementiaLevel,
            Some("cognitive-status"),
            x,
        );
    }
    out.score("hds-r", RegistrationItem::HdsR, &r.dementia.hds_r);
    out.score("mmse", RegistrationItem::Mmse, &r.dementia.mmse);
    if let Some(b) = &r.behaviour {
        let mut o = out.observation(
            "behaviour",
            profile::OBSERVATION_BEHAVIOUR,
            RegistrationItem::Behaviour,
            Some("cognitive-status"),
            &b.meta,
        );
        o.insert(
            "effectiveDateTime".into(),
            json!(b.meta.last_updated.as_str()),
        );
        put(&mut o, "note", note(b.value.note.as_deref()));
        let comps: Vec<Value> = b
            .value
            .traits
            .iter()
            .map(|t| json!({"code": cc(t.coding(), None), "valueBoolean": true}))
            .collect();
        put(&mut o, "component", Value::Array(comps));
        out.resources.push(Value::Object(o));
    }

    // ---- Patient's wishes, remarks ----------------------------------------------------------------------
    if let Some(w) = &r.information_wishes {
        let mut c = resource(
            "Consent",
            &out.id("consent-information"),
            profile::CONSENT_INFORMATION,
        );
        c.insert("extension".into(), json!([item_meta(&w.meta)]));
        c.insert("status".into(), json!("active"));
        c.insert("scope".into(), json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy", "display": "Privacy Consent"}]}));
        let mut cats = vec![
            json!({"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}),
        ];
        cats.push(json!({"coding": [RegistrationItem::InformationWishes.coding()]}));
        if let Some(s) = w.value.sharing {
            cats.push(cc(s.coding(), None));
        }
        c.insert("category".into(), Value::Array(cats));
        c.insert("patient".into(), out.patient_ref.clone());
        c.insert("dateTime".into(), json!(w.meta.last_updated.as_str()));
        c.insert("performer".into(), json!([out.patient_ref.clone()]));
        c.insert(
            "organization".into(),
            json!([out.reference(
                "Organization",
                "org-registering-clinic",
                &reg.registering_clinic.value.name,
                None
            )]),
        );
        if let Some(t) = &w.value.text {
            c.insert(
                "sourceAttachment".into(),
                text_attachment(t, "患者の意向", &w.meta),
            );
        }
        c.insert("policy".into(), json!([{"uri": policy::INFORMATION}]));
        if let Some(s) = w.value.sharing {
            let purpose = |code: &str| json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": code}]);
            let prov = match s {
                InformationSharing::AllParticipants => {
                    json!({"type": "permit", "purpose": purpose("TREAT")})
                }
                InformationSharing::EmergencyOnly => {
                    json!({"type": "permit", "purpose": purpose("ETREAT")})
                }
                InformationSharing::CareTeamOnly => {
                    let role = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]});
                    let mut actors = vec![
                        json!({"role": role, "reference": out.reference("Organization", "org-registering-clinic", &reg.registering_clinic.value.name, None)}),
                    ];
                    if has_care_team {
                        actors.push(json!({"role": role, "reference": {"reference": format!("CareTeam/{}", out.id("care-team"))}}));
                    }
                    json!({"type": "permit", "purpose": purpose("TREAT"), "actor": actors})
                }
            };
            c.insert("provision".into(), prov);
        }
        out.resources.push(Value::Object(c));
    }
    out.narrative("remarks", RegistrationItem::Remarks, &r.remarks);
    out.resources
}

/// A UTF-8 text as an `Attachment` (contentType `text/plain; charset=utf-8`, base64 `data`, `title`,
/// `creation` = the item's date) carrying the item's meta.
fn text_attachment(text: &str, title: &str, meta: &ItemMeta) -> Value {
    json!({
        "extension": [item_meta(meta)],
        "contentType": "text/plain; charset=utf-8",
        "language": "ja",
        "data": base64::encode(text.as_bytes()),
        "title": title,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_map_loads() {
        assert_eq!(standard_codes(AllergyKind::Food), vec!["food".to_string()]);
        assert!(standard_codes(AllergyKind::Asthma).is_empty());
        assert_eq!(standard(TreatmentKind::Pacemaker)[0]["code"], "14106009");
        assert_eq!(
            standard(RegistrationItem::Mmse)[0]["system"],
            "http://loinc.org"
        );
    }

    #[test]
    fn address_split() {
        assert_eq!(
            split_address("福岡県福岡市中央区天神1丁目1-1"),
            (Some("福岡県"), Some("福岡市"), Some("中央区天神1丁目1-1"))
        );
        assert_eq!(
            split_address("福岡県糟屋郡粕屋町大字仲原1"),
            (Some("福岡県"), Some("糟屋郡粕屋町"), Some("大字仲原1"))
        );
        assert_eq!(
            split_address("東京都千代田区"),
            (Some("東京都"), Some("千代田区"), None)
        );
        assert_eq!(split_address("どこか"), (None, None, Some("どこか")));
    }
}
