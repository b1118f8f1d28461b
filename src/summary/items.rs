//! What each summary section shows, item by item: the registration model ([`Registration`], every item
//! with its own last-updated date and author) and the merged SS-MIX2 resources, turned into
//! [`ItemView`]s (a Japanese label, a text, the item's last-updated date, its author, its source).
//!
//! The texts are what a clinician reads: choice-list values by their Japanese display
//! ([`Choice::display`]), facilities with phone and address, drugs with dosage, diagnoses with code and
//! onset. Nothing here logs.

use serde_json::Value;

use crate::mapping::registration::terminology::*;
use crate::mapping::registration::{
    Facility, Item, ItemMeta, Phone, PhoneUse, Professional, Registration, Section, Sex,
};

/// One line of a summary section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemView {
    /// The item's Japanese label, e.g. `緊急時紹介先医療機関`, `禁忌薬`, `病名`.
    pub label: String,
    /// The value as shown, e.g. `ワーファリン（理由: 脳出血の既往のため抗凝固薬禁忌）`.
    pub text: String,
    /// The item's last-updated date (FHIR dateTime as registered; for merged SS-MIX2 data the
    /// recorded/authored date, else the resource's `meta.lastUpdated`).
    pub last_updated: Option<String>,
    /// Who updated it, e.g. `博多 一郎（とびうめ内科クリニック）`.
    pub author: Option<String>,
    /// Where merged data came from, e.g. `SS-MIX2 (福岡市民病院)`; `None` for registered items.
    pub source: Option<String>,
    /// `true` for contraindicated drugs (禁忌薬): shown in red.
    pub contraindicated: bool,
    /// `true` for the item an emergency team looks for first (the emergency referral hospital).
    pub key: bool,
}

impl ItemView {
    fn registered(label: &str, text: String, meta: &ItemMeta) -> ItemView {
        let author = match &meta.author.facility {
            Some(f) => format!("{}（{}）", meta.author.name, f),
            None => meta.author.name.clone(),
        };
        ItemView {
            label: label.to_string(),
            text,
            last_updated: Some(meta.last_updated.as_str().to_string()),
            author: Some(author),
            source: None,
            contraindicated: false,
            key: false,
        }
    }
}

fn sex_ja(s: Sex) -> &'static str {
    match s {
        Sex::Male => "男性",
        Sex::Female => "女性",
        Sex::Other => "その他",
        Sex::Unknown => "不明",
    }
}

fn phone_use_ja(u: PhoneUse) -> &'static str {
    match u {
        PhoneUse::Home => "自宅",
        PhoneUse::Mobile => "携帯",
        PhoneUse::Work => "勤務先",
    }
}

fn phone_text(p: &Phone) -> String {
    format!("{}（{}）", p.number, phone_use_ja(p.use_))
}

fn facility_text(f: &Facility) -> String {
    let mut s = f.name.clone();
    if let Some(p) = &f.phone {
        s.push_str(&format!(" TEL {p}"));
    }
    if let Some(a) = &f.address {
        s.push_str(&format!(" {a}"));
    }
    s
}

fn professional_text(p: &Professional) -> String {
    let mut s = p.name.clone();
    if let Some(k) = &p.name_kana {
        s.push_str(&format!("（{k}）"));
    }
    if let Some(t) = &p.phone {
        s.push_str(&format!(" TEL {t}"));
    }
    s
}

fn with_note(value: &str, note: Option<&String>) -> String {
    match note {
        Some(n) => format!("{value}（{n}）"),
        None => value.to_string(),
    }
}

/// The Japanese sex display (男性 / 女性 / その他 / 不明) of a `Patient.gender` code.
pub fn gender_ja(code: &str) -> Option<&'static str> {
    Sex::from_code(code).map(sex_ja)
}

/// Every item of a registration with the section it belongs to, in form order within each section
/// (`docs/domain.md` §1.1). Labels are the [`RegistrationItem`] displays.
pub fn registration_items(r: &Registration) -> Vec<(Section, ItemView)> {
    use RegistrationItem as I;
    let mut out: Vec<(Section, ItemView)> = Vec::new();
    let mut push = |item: I, text: String, meta: &ItemMeta| {
        out.push((
            item.section(),
            ItemView::registered(item.display(), text, meta),
        ));
    };
    let d = &r.demographics;
    let name = |n: &crate::mapping::registration::PersonName| match &n.given {
        Some(g) => format!("{} {}", n.family, g),
        None => n.family.clone(),
    };
    push(I::NameKanji, name(&d.name_kanji.value), &d.name_kanji.meta);
    push(I::NameKana, name(&d.name_kana.value), &d.name_kana.meta);
    push(
        I::BirthDate,
        d.birth_date.value.as_str().to_string(),
        &d.birth_date.meta,
    );
    push(I::Sex, sex_ja(d.sex.value).to_string(), &d.sex.meta);
    if let Some(a) = &d.address {
        let text = match &a.value.postal_code {
            Some(p) => format!("〒{p} {}", a.value.text),
            None => a.value.text.clone(),
        };
        push(I::Address, text, &a.meta);
    }
    for p in &d.phones {
        push(I::Phone, phone_text(&p.value), &p.meta);
    }
    let g = &r.registration;
    push(
        I::RegisteringClinic,
        facility_text(&g.registering_clinic.value),
        &g.registering_clinic.meta,
    );
    if let Some(f) = &g.emergency_referral_hospital {
        push(
            I::EmergencyReferralHospital,
            facility_text(&f.value),
            &f.meta,
        );
    }
    if let Some(i) = &g.insurance {
        let v = &i.value;
        let mut parts = Vec::new();
        if let Some(n) = &v.insurer_number {
            parts.push(format!("保険者番号 {n}"));
        }
        if let Some(s) = &v.symbol {
            parts.push(format!("記号 {s}"));
        }
        parts.push(format!("番号 {}", v.number));
        if let Some(b) = &v.branch {
            parts.push(format!("枝番 {b}"));
        }
        push(I::Insurance, parts.join(" "), &i.meta);
    }
    if let Some(t) = &g.residence_type {
        push(I::ResidenceType, t.value.display().to_string(), &t.meta);
    }
    if let Some(f) = &g.care_facility {
        push(I::CareFacility, facility_text(&f.value), &f.meta);
    }
    for c in &g.emergency_contacts {
        let v = &c.value;
        let rel = v
            .relationship_text
            .clone()
            .unwrap_or_else(|| v.relationship.display().to_string());
        let phones: Vec<String> = v.phones.iter().map(phone_text).collect();
        let text = if phones.is_empty() {
            format!("{}（{rel}）", v.name)
        } else {
            format!("{}（{rel}） {}", v.name, phones.join(" ／ "))
        };
        push(I::EmergencyContact, text, &c.meta);
    }
    let prof = |p: &Option<Item<Professional>>| {
        p.as_ref()
            .map(|p| (professional_text(&p.value), p.meta.clone()))
    };
    let fac = |f: &Option<Item<Facility>>| {
        f.as_ref()
            .map(|f| (facility_text(&f.value), f.meta.clone()))
    };
    for (item, v) in [
        (I::AttendingDoctor, prof(&g.attending_doctor)),
        (I::VisitingNurseStation, fac(&g.visiting_nurse_station)),
        (I::VisitingNurse, prof(&g.visiting_nurse)),
        (I::HomeCareSupportOffice, fac(&g.home_care_support_office)),
        (I::CareManager, prof(&g.care_manager)),
    ] {
        if let Some((text, meta)) = v {
            push(item, text, &meta);
        }
    }
    for dx in &r.main_diagnoses {
        let v = &dx.value;
        let mut text = v.name.clone();
        if let Some(c) = &v.code {
            let sys = match c.system {
                crate::mapping::registration::DiseaseCodeSystem::Icd10 => "ICD-10",
                crate::mapping::registration::DiseaseCodeSystem::MedisKeyNumber => "病名管理番号",
                crate::mapping::registration::DiseaseCodeSystem::MedisExCode => "病名交換用コード",
                crate::mapping::registration::DiseaseCodeSystem::Receipt => "レセ電コード",
            };
            text.push_str(&format!("（{sys} {}）", c.code));
        }
        if let Some(o) = &v.onset {
            text.push_str(&format!(" 発症 {o}"));
        }
        push(I::MainDiagnosis, text, &dx.meta);
    }
    if let Some(h) = &r.history {
        push(I::History, h.value.clone(), &h.meta);
    }
    for p in &r.prescriptions {
        let v = &p.value;
        let text = match &v.dosage {
            Some(d) => format!("{} {d}", v.drug),
            None => v.drug.clone(),
        };
        push(I::Prescription, text, &p.meta);
    }
    if let Some(t) = &r.prescription_text {
        push(I::PrescriptionText, t.value.clone(), &t.meta);
    }
    for c in &r.contraindicated_drugs {
        let v = &c.value;
        let text = match &v.reason {
            Some(reason) => format!("{}（理由: {reason}）", v.drug),
            None => v.drug.clone(),
        };
        push(I::ContraindicatedDrug, text, &c.meta);
    }
    for a in &r.allergies {
        push(
            I::Allergy,
            with_note(a.value.kind.display(), a.value.detail.as_ref()),
            &a.meta,
        );
    }
    for t in &r.current_treatments {
        push(
            I::CurrentTreatment,
            with_note(t.value.kind.display(), t.value.detail.as_ref()),
            &t.meta,
        );
    }
    let adl = &r.adl;
    if let Some(a) = &adl.eating {
        push(
            I::AdlEating,
            with_note(a.value.level.display(), a.value.note.as_ref()),
            &a.meta,
        );
    }
    if let Some(a) = &adl.feeding_route {
        push(
            I::AdlFeedingRoute,
            with_note(a.value.level.display(), a.value.note.as_ref()),
            &a.meta,
        );
    }
    if let Some(a) = &adl.food_form {
        push(
            I::AdlFoodForm,
            with_note(a.value.level.display(), a.value.note.as_ref()),
            &a.meta,
        );
    }
    if let Some(a) = &adl.excretion {
        push(
            I::AdlExcretion,
            with_note(a.value.level.display(), a.value.note.as_ref()),
            &a.meta,
        );
    }
    if let Some(a) = &adl.mobility {
        push(
            I::AdlMobility,
            with_note(a.value.level.display(), a.value.note.as_ref()),
            &a.meta,
        );
    }
    if let Some(a) = &adl.breathing {
        push(
            I::AdlBreathing,
            with_note(a.value.level.display(), a.value.note.as_ref()),
            &a.meta,
        );
    }
    let dis = &r.disability;
    if let Some(x) = &dis.physical {
        push(
            I::PhysicalDisability,
            x.value.display().to_string(),
            &x.meta,
        );
    }
    if let Some(x) = &dis.mental {
        push(I::MentalDisability, x.value.display().to_string(), &x.meta);
    }
    if let Some(x) = &dis.rehabilitation {
        push(
            I::RehabilitationCertificate,
            x.value.display().to_string(),
            &x.meta,
        );
    }
    if let Some(c) = &r.care_level {
        push(I::CareLevel, c.value.display().to_string(), &c.meta);
    }
    for i in &r.impairments {
        push(
            I::Impairment,
            with_note(i.value.kind.display(), i.value.note.as_ref()),
            &i.meta,
        );
    }
    let dem = &r.dementia;
    if let Some(l) = &dem.level {
        push(I::DementiaLevel, l.value.display().to_string(), &l.meta);
    }
    for (item, s) in [(I::HdsR, &dem.hds_r), (I::Mmse, &dem.mmse)] {
        if let Some(s) = s {
            let text = match &s.value.date {
                Some(d) => format!("{}点（{d}）", s.value.score),
                None => format!("{}点", s.value.score),
            };
            push(item, text, &s.meta);
        }
    }
    if let Some(b) = &r.behaviour {
        let traits: Vec<&str> = b.value.traits.iter().map(|t| t.display()).collect();
        let mut text = traits.join("、");
        if let Some(n) = &b.value.note {
            if !text.is_empty() {
                text.push_str(" ／ ");
            }
            text.push_str(n);
        }
        push(I::Behaviour, text, &b.meta);
    }
    if let Some(w) = &r.emergency_care_wishes {
        let wishes: Vec<&str> = w.value.iter().map(|x| x.display()).collect();
        push(I::EmergencyCareWishes, wishes.join("、"), &w.meta);
    }
    if let Some(a) = &r.acp {
        push(I::Acp, a.value.clone(), &a.meta);
    }
    if let Some(w) = &r.information_wishes {
        let mut parts = Vec::new();
        if let Some(s) = w.value.sharing {
            parts.push(s.display().to_string());
        }
        if let Some(t) = &w.value.text {
            parts.push(t.clone());
        }
        push(I::InformationWishes, parts.join(" ／ "), &w.meta);
    }
    if let Some(x) = &r.remarks {
        push(I::Remarks, x.value.clone(), &x.meta);
    }
    for (s, item) in &mut out {
        match s {
            Section::ContraindicatedDrugs => item.contraindicated = true,
            Section::Registration if item.label == I::EmergencyReferralHospital.display() => {
                item.key = true
            }
            _ => {}
        }
    }
    out
}

/// `CodeableConcept` text: `text`, else the first `coding.display`, else the first code.
pub fn concept_text(cc: Option<&Value>) -> Option<String> {
    let cc = cc?;
    if let Some(t) = cc
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return Some(t.to_string());
    }
    let codings = cc.get("coding").and_then(Value::as_array)?;
    codings
        .iter()
        .find_map(|c| c.get("display").and_then(Value::as_str))
        .or_else(|| {
            codings
                .iter()
                .find_map(|c| c.get("code").and_then(Value::as_str))
        })
        .map(str::to_string)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The first `coding.code` of a CodeableConcept at `pointer`.
pub(crate) fn code_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)?
        .get("coding")?
        .as_array()?
        .iter()
        .find_map(|c| c.get("code")?.as_str())
}

fn clinical_status_ja(code: &str) -> &str {
    match code {
        "active" => "活動中",
        "recurrence" => "再発",
        "relapse" => "再燃",
        "inactive" => "非活動",
        "remission" => "寛解",
        "resolved" => "治癒",
        other => other,
    }
}

/// The date a merged resource's information was recorded (its "last updated" in the summary):
/// `Condition.recordedDate`, `AllergyIntolerance.recordedDate`, `MedicationRequest.authoredOn`, else
/// `meta.lastUpdated` (when the gateway received it).
pub fn recorded_date(r: &Value) -> Option<String> {
    let own = match r.get("resourceType").and_then(Value::as_str) {
        Some("Condition") | Some("AllergyIntolerance") => str_at(r, "/recordedDate"),
        Some("MedicationRequest") => str_at(r, "/authoredOn"),
        _ => None,
    };
    own.or_else(|| str_at(r, "/meta/lastUpdated"))
        .map(str::to_string)
}

/// An SS-MIX2 (or other external) Condition, AllergyIntolerance or MedicationRequest as a summary line,
/// labelled with its `source` (e.g. `SS-MIX2 (福岡市民病院)`). `None` for other resource types.
pub fn external_item(r: &Value, source: &str) -> Option<ItemView> {
    let rtype = r.get("resourceType").and_then(Value::as_str)?;
    let (label, text) = match rtype {
        "Condition" => {
            let mut text = concept_text(r.get("code")).unwrap_or_else(|| "（名称なし）".into());
            if let Some(o) = str_at(r, "/onsetDateTime").or_else(|| str_at(r, "/onsetString")) {
                text.push_str(&format!(" 発症 {}", o.get(..10).unwrap_or(o)));
            }
            if let Some(s) = code_at(r, "/clinicalStatus") {
                text.push_str(&format!("（{}）", clinical_status_ja(s)));
            }
            ("病名", text)
        }
        "AllergyIntolerance" => {
            let mut text = concept_text(r.get("code")).unwrap_or_else(|| "（名称なし）".into());
            let reactions: Vec<String> = r
                .get("reaction")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|x| {
                    x.get("description")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| {
                            concept_text(
                                x.get("manifestation")
                                    .and_then(Value::as_array)
                                    .and_then(|a| a.first()),
                            )
                        })
                })
                .collect();
            if !reactions.is_empty() {
                text.push_str(&format!("（症状: {}）", reactions.join("、")));
            }
            let category = r
                .get("category")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .map(|c| match c {
                    "medication" => "薬剤",
                    "food" => "食物",
                    "environment" => "環境",
                    "biologic" => "生物",
                    _ => "",
                })
                .unwrap_or("");
            if category.is_empty() {
                ("アレルギー", text)
            } else {
                ("アレルギー", format!("{category}: {text}"))
            }
        }
        "MedicationRequest" => {
            let drug = concept_text(r.get("medicationCodeableConcept"))
                .or_else(|| {
                    // contained Medication (injections): its ingredients
                    let names: Vec<String> = r
                        .get("contained")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .flat_map(|m| {
                            m.get("ingredient")
                                .and_then(Value::as_array)
                                .into_iter()
                                .flatten()
                        })
                        .filter_map(|i| concept_text(i.get("itemCodeableConcept")))
                        .collect();
                    (!names.is_empty()).then(|| names.join("＋"))
                })
                .or_else(|| str_at(r, "/medicationReference/display").map(str::to_string))
                .unwrap_or_else(|| "（薬剤名なし）".into());
            let mut text = drug;
            if let Some(d) = r.pointer("/dosageInstruction/0") {
                if let Some(t) = str_at(d, "/text")
                    .map(str::to_string)
                    .or_else(|| concept_text(d.pointer("/timing/code")))
                {
                    text.push_str(&format!(" {t}"));
                }
            }
            if let Some(a) = str_at(r, "/authoredOn") {
                text.push_str(&format!("（処方日 {}）", a.get(..10).unwrap_or(a)));
            }
            ("処方", text)
        }
        _ => return None,
    };
    Some(ItemView {
        label: label.to_string(),
        text,
        last_updated: recorded_date(r),
        author: None,
        source: Some(source.to_string()),
        contraindicated: false,
        key: false,
    })
}

/// A generic line for a registration resource that [`crate::mapping::registration::from_fhir`] could
/// not read (e.g. edited by hand): its code/value text and its `item-meta` date. Used only as a
/// fallback so that a damaged registration still shows what it holds.
pub fn generic_registration_item(r: &Value) -> Option<ItemView> {
    let rtype = r.get("resourceType").and_then(Value::as_str)?;
    let text = match rtype {
        "Patient" | "Organization" | "Practitioner" | "CareTeam" | "Coverage" => {
            str_at(r, "/name/0/text")
                .or_else(|| str_at(r, "/name"))
                .map(str::to_string)
        }
        "Observation" => str_at(r, "/valueString")
            .map(str::to_string)
            .or_else(|| concept_text(r.get("valueCodeableConcept")))
            .or_else(|| concept_text(r.get("code"))),
        "MedicationStatement" => concept_text(r.get("medicationCodeableConcept")),
        "Consent" => concept_text(r.pointer("/category/0")),
        _ => concept_text(r.get("code")).or_else(|| concept_text(r.get("type"))),
    }?;
    let meta = r
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| {
            e.get("url").and_then(Value::as_str)
                == Some(crate::mapping::registration::ext::ITEM_META)
        });
    let sub = |name: &str| {
        meta.and_then(|m| {
            m.get("extension")?
                .as_array()?
                .iter()
                .find(|e| e.get("url").and_then(Value::as_str) == Some(name))
        })
    };
    Some(ItemView {
        label: rtype.to_string(),
        text,
        last_updated: sub("lastUpdated")
            .and_then(|e| e.get("valueDateTime")?.as_str())
            .map(str::to_string),
        author: sub("author")
            .and_then(|e| e.get("valueString")?.as_str())
            .map(str::to_string),
        source: None,
        contraindicated: false,
        key: false,
    })
}
