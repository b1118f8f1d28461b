//! Tobiume-net registration ↔ FHIR: a registration with every item (or with optional items absent)
//! survives model → FHIR → model unchanged, every produced resource is structurally valid FHIR R4 and
//! carries a Tobiume-net profile, and the simple registration JSON follows its JSON Schema.

#![allow(clippy::type_complexity)] // proptest strategy tuples

use std::collections::HashSet;
use std::path::Path;

use proptest::prelude::*;
use serde_json::Value;
use tobiume_gateway::mapping::registration::terminology::*;
use tobiume_gateway::mapping::registration::*;
use tobiume_gateway::validation::schema;

// ---- helpers ------------------------------------------------------------------------------------------

fn conformance(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conformance")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn json_schema() -> jsonschema::Validator {
    jsonschema::validator_for(&conformance("registration.schema.json"))
        .expect("registration.schema.json compiles")
}

fn example() -> Registration {
    serde_json::from_value(conformance("registration.example.json"))
        .expect("the example deserializes")
}

/// Asserts the FHIR-side invariants of one mapping output.
fn check_resources(r: &Registration, out: &[Value]) {
    let ids = Ids::default();
    let mut seen = HashSet::new();
    for res in out {
        let t = res["resourceType"].as_str().unwrap();
        let id = res["id"].as_str().unwrap();
        assert!(seen.insert(format!("{t}/{id}")), "duplicate {t}/{id}");
        assert!(
            id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
            "{id}"
        );
        assert!(ids.owns(&r.card_id, id), "{id} is owned by the card");
        let prof = res["meta"]["profile"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{t}/{id} has no meta.profile"));
        assert!(profile::ALL.contains(&prof), "{t}/{id}: {prof}");
        assert!(section_of(res).is_some(), "{t}/{id} has a summary section");
        if let Err(issues) = schema::check(res) {
            panic!(
                "{t}/{id} is not valid R4: {issues:#?}\n{}",
                serde_json::to_string_pretty(res).unwrap()
            );
        }
    }
}


// ---- strategies -------------------------------------------------------------------------------------------

fn pick<C: Choice + std::fmt::Debug>() -> impl Strategy<Value = C> {
    proptest::sample::select(C::ALL)
}

fn text() -> impl Strategy<Value = String> {
    "[ぁ-んァ-ヶ一-龠a-zA-Z0-9]{1,3}([ 　\n]?[ぁ-んァ-ヶ一-龠A-Za-z0-9（）・ー、。-]{1,6}){0,3}"
        .prop_filter("no surrounding white space", |s| s.trim() == s)
}

fn word() -> impl Strategy<Value = String> {
    "[一-龠ァ-ヶA-Za-z]{1,5}"
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn date() -> impl Strategy<Value = Date> {
    (1900u32..2027, 1u32..13, 1u32..29, 0u8..3).prop_map(|(y, m, d, form)| {
        let s = match form {
            0 => format!("{y:04}"),
            1 => format!("{y:04}-{m:02}"),
            _ => format!("{y:04}-{m:02}-{d:02}"),
        };
        Date::new(s).unwrap()
    })
}

fn date_time() -> impl Strategy<Value = DateTime> {
    (
        2014u32..2027,
        1u32..13,
        1u32..29,
        0u32..24,
        0u32..60,
        0u8..4,
    )
        .prop_map(|(y, mo, d, h, mi, form)| {
            let s = match form {
                0 => format!("{y:04}-{mo:02}-{d:02}"),
                1 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:00+09:00"),
                2 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:30.250Z"),
                _ => format!("{y:04}-{mo:02}"),
            };
            DateTime::new(s).unwrap()
        })
}

fn meta() -> impl Strategy<Value = ItemMeta> {
    (date_time(), word(), proptest::option::of(text())).prop_map(
        |(last_updated, name, facility)| ItemMeta {
            last_updated,
            author: Author { name, facility },
        },
    )
}

fn item<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Item<T>> {
    (s, meta()).prop_map(|(value, meta)| Item { value, meta })
}

fn opt_item<T: std::fmt::Debug>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<Item<T>>> {
    proptest::option::of(item(s))
}

fn name() -> impl Strategy<Value = PersonName> {
    (word(), proptest::option::of(word())).prop_map(|(family, given)| PersonName { family, given })
}

fn phone() -> impl Strategy<Value = Phone> {
    (
        "0[0-9]{1,3}-[0-9]{2,4}-[0-9]{4}",
        proptest::sample::select(PhoneUse::ALL),
    )
        .prop_map(|(number, use_)| Phone { number, use_ })
}

fn facility() -> impl Strategy<Value = Facility> {
    (
        text(),
        proptest::option::of("[0-9]{10}"),
        proptest::option::of("0[0-9]{2}-[0-9]{3}-[0-9]{4}"),
        opt_text(),
    )
        .prop_map(|(name, code, phone, address)| Facility {
            name,
            code,
            phone,
            address,
        })
}

fn professional() -> impl Strategy<Value = Professional> {
    (
        text(),
        opt_text(),
        proptest::option::of("0[0-9]{2}-[0-9]{3}-[0-9]{4}"),
    )
        .prop_map(|(name, name_kana, phone)| Professional {
            name,
            name_kana,
            phone,
        })
}

fn drug_code() -> impl Strategy<Value = Option<DrugCode>> {
    proptest::option::of(
        (
            proptest::sample::select(DrugCodeSystem::ALL),
            "[0-9A-Z]{9,12}",
        )
            .prop_map(|(system, code)| DrugCode { system, code }),
    )
}

fn assessment<C: Choice + std::fmt::Debug>() -> impl Strategy<Value = Option<Item<Assessment<C>>>> {
    opt_item((pick::<C>(), opt_text()).prop_map(|(level, note)| Assessment { level, note }))
}

fn score() -> impl Strategy<Value = Option<Item<CognitiveScore>>> {
    opt_item(
        (0u8..=30, proptest::option::of(date()))
            .prop_map(|(score, date)| CognitiveScore { score, date }),
    )
}

fn demographics() -> impl Strategy<Value = Demographics> {
    (
        item(name()),
        item(name()),
        item(date()),
        item(proptest::sample::select(Sex::ALL)),
        opt_item(
            (proptest::option::of("[0-9]{3}-[0-9]{4}"), text())
                .prop_map(|(postal_code, text)| Address { postal_code, text }),
        ),
        proptest::collection::vec(item(phone()), 0..3),
    )
        .prop_map(
            |(name_kanji, name_kana, birth_date, sex, address, phones)| Demographics {
                name_kanji,
                name_kana,
                birth_date,
                sex,
                address,
                phones,
            },
        )
}

fn registration_info() -> impl Strategy<Value = RegistrationInfo> {
    let contact = (
        text(),
        pick::<Relationship>(),
        opt_text(),
        proptest::collection::vec(phone(), 0..3),
    )
        .prop_map(
            |(name, relationship, relationship_text, phones)| EmergencyContact {
                name,
                relationship,
                relationship_text,
                phones,
            },
        );
    let insurance = (
        proptest::option::of("[0-9]{8}"),
        opt_text(),
        "[0-9]{4,8}",
        proptest::option::of("[0-9]{2}"),
    )
        .prop_map(|(insurer_number, symbol, number, branch)| Insurance {
            insurer_number,
            symbol,
            number,
            branch,
        });
    (
        (
            item(facility()),
            opt_item(facility()),
            opt_item(insurance),
            opt_item(pick::<ResidenceType>()),
            opt_item(facility()),
        ),
        (
            proptest::collection::vec(item(contact), 0..3),
            opt_item(professional()),
            opt_item(facility()),
            opt_item(professional()),
            opt_item(facility()),
            opt_item(professional()),
        ),
    )
        .prop_map(
            |(
                (
                    registering_clinic,
                    emergency_referral_hospital,
                    insurance,
                    residence_type,
                    care_facility,
                ),
                (
                    emergency_contacts,
                    attending_doctor,
                    visiting_nurse_station,
                    visiting_nurse,
                    home_care_support_office,
                    care_manager,
                ),
            )| RegistrationInfo {
                registering_clinic,
                emergency_referral_hospital,
                insurance,
                residence_type,
                care_facility,
                emergency_contacts,
                attending_doctor,
                visiting_nurse_station,
                visiting_nurse,
                home_care_support_office,
                care_manager,
            },
        )
}

fn clinical() -> impl Strategy<
    Value = (
        Vec<Item<Diagnosis>>,
        Option<Item<String>>,
        Vec<Item<Prescription>>,
        Option<Item<String>>,
        Vec<Item<ContraindicatedDrug>>,
        Vec<Item<Allergy>>,
        Vec<Item<CurrentTreatment>>,
    ),
> {
    let disease = proptest::option::of(
        (
            proptest::sample::select(DiseaseCodeSystem::ALL),
            "[0-9A-Z.]{3,8}",
        )
            .prop_map(|(system, code)| DiseaseCode { system, code }),
    );
    (
        proptest::collection::vec(
            item(
                (text(), disease, proptest::option::of(date()))
                    .prop_map(|(name, code, onset)| Diagnosis { name, code, onset }),
            ),
            0..=5,
        ),
        opt_item(text()),
        proptest::collection::vec(
            item(
                (text(), drug_code(), opt_text()).prop_map(|(drug, code, dosage)| Prescription {
                    drug,
                    code,
                    dosage,
                }),
            ),
            0..4,
        ),
        opt_item(text()),
        proptest::collection::vec(
            item(
                (text(), drug_code(), opt_text())
                    .prop_map(|(drug, code, reason)| ContraindicatedDrug { drug, code, reason }),
            ),
            0..3,
        ),
        proptest::collection::vec(
            item(
                (pick::<AllergyKind>(), opt_text())
                    .prop_map(|(kind, detail)| Allergy { kind, detail }),
            ),
            0..4,
        ),
        proptest::collection::vec(
            item(
                (pick::<TreatmentKind>(), opt_text())
                    .prop_map(|(kind, detail)| CurrentTreatment { kind, detail }),
            ),
            0..5,
        ),
    )
}

fn care() -> impl Strategy<
    Value = (
        Adl,
        Disability,
        Option<Item<CareLevel>>,
        Vec<Item<Impairment>>,
        Dementia,
        Option<Item<Behaviour>>,
    ),
> {
    (
        (
            assessment(),
            assessment(),
            assessment(),
            assessment(),
            assessment(),
            assessment(),
        )
            .prop_map(
                |(eating, feeding_route, food_form, excretion, mobility, breathing)| Adl {
                    eating,
                    feeding_route,
                    food_form,
                    excretion,
                    mobility,
                    breathing,
                },
            ),
        (opt_item(pick()), opt_item(pick()), opt_item(pick())).prop_map(
            |(physical, mental, rehabilitation)| Disability {
                physical,
                mental,
                rehabilitation,
            },
        ),
        opt_item(pick::<CareLevel>()),
        proptest::collection::vec(
            item(
                (pick::<ImpairmentKind>(), opt_text())
                    .prop_map(|(kind, note)| Impairment { kind, note }),
            ),
            0..4,
        ),
        (opt_item(pick()), score(), score()).prop_map(|(level, hds_r, mmse)| Dementia {
            level,
            hds_r,
            mmse,
        }),
        opt_item(
            (
                proptest::collection::vec(pick::<BehaviourTrait>(), 0..4),
                opt_text(),
            )
                .prop_map(|(traits, note)| {
                    let note = if traits.is_empty() && note.is_none() {
                        Some("特記なし".to_string())
                    } else {
                        note
                    };
                    Behaviour { traits, note }
                }),
        ),
    )
}

fn wishes() -> impl Strategy<
    Value = (
        Option<Item<Vec<EmergencyCareWish>>>,
        Option<Item<String>>,
        Option<Item<InformationWishes>>,
        Option<Item<String>>,
    ),
> {
    (
        opt_item(proptest::collection::vec(pick::<EmergencyCareWish>(), 1..4)),
        opt_item(text()),
        opt_item(
            (
                proptest::option::of(pick::<InformationSharing>()),
                opt_text(),
            )
                .prop_map(|(sharing, text)| {
                    let text = if sharing.is_none() && text.is_none() {
                        Some("特になし".to_string())
                    } else {
                        text
                    };
                    InformationWishes { sharing, text }
                }),
        ),
        opt_item(text()),
    )
}

fn registration() -> impl Strategy<Value = Registration> {
    (
        "[A-Za-z0-9]{1,2}(-?[A-Za-z0-9]{1,7}){0,3}",
        demographics(),
        registration_info(),
        clinical(),
        care(),
        wishes(),
    )
        .prop_map(
            |(card, demographics, registration, cl, ca, wi)| Registration {
                card_id: CardId::new(card).unwrap(),
                demographics,
                registration,
                main_diagnoses: cl.0,
                history: cl.1,
                prescriptions: cl.2,
                prescription_text: cl.3,
                contraindicated_drugs: cl.4,
                allergies: cl.5,
                current_treatments: cl.6,
                adl: ca.0,
                disability: ca.1,
                care_level: ca.2,
                impairments: ca.3,
                dementia: ca.4,
                behaviour: ca.5,
                emergency_care_wishes: wi.0,
                acp: wi.1,
                information_wishes: wi.2,
                remarks: wi.3,
            },
        )
}

/// One property case: model → FHIR → model loses nothing, in any resource order; the FHIR is valid R4
/// with profiles; the simple JSON round-trips through serde and follows the JSON Schema.
fn roundtrip_case(r: Registration, validator: &jsonschema::Validator) -> Result<(), TestCaseError> {
    prop_assert_eq!(r.validate(), Ok(()));
    let out = to_fhir(&r, &Ids::default());
    check_resources(&r, &out);
    prop_assert_eq!(from_fhir(&out), Ok(r.clone()));
    let mut reversed = out.clone();
    reversed.reverse();
    prop_assert_eq!(from_fhir(&reversed), Ok(r.clone()));
    // Converting twice gives identical output (stable ids: re-registration updates, never duplicates).
    prop_assert_eq!(to_fhir(&r, &Ids::default()), out);

    let j = serde_json::to_value(&r).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&j)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    prop_assert!(errors.is_empty(), "schema errors: {:?}", errors);
    prop_assert_eq!(serde_json::from_value::<Registration>(j).unwrap(), r);
    Ok(())
}

/// Property test over generated registrations (every item present or absent at random). Runs on a
/// thread with a large stack: the generated strategy types nest deeply in debug builds.
#[test]
fn registration_roundtrips() {
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024 * 1024)
        .spawn(|| {
            let validator = json_schema();
            let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
                cases: 96,
                failure_persistence: None,
                ..ProptestConfig::default()
            });
            if let Err(e) = runner.run(&registration(), |r| roundtrip_case(r, &validator)) {
                panic!("{e}");
            }
        })
        .unwrap();
    handle.join().unwrap();
}

// ---- fixed cases ------------------------------------------------------------------------------------------

#[test]
fn example_validates_against_the_json_schema_and_maps() {
    let raw = conformance("registration.example.json");
    let v = json_schema();
    let errors: Vec<String> = v
        .iter_errors(&raw)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let r = example();
    r.validate().unwrap();
    // Every item is filled in the example.
    let j = serde_json::to_value(&r).unwrap();
    for (k, _) in conformance("registration.schema.json")["properties"]
        .as_object()
        .unwrap()
    {
        assert!(j.get(k).is_some(), "example lacks {k}");
    }
    for group in [
        "demographics",
        "registration",
        "adl",
        "disability",
        "dementia",
    ] {
        for (k, _) in conformance("registration.schema.json")["properties"][group]["properties"]
            .as_object()
            .unwrap()
        {
            assert!(j[group].get(k).is_some(), "example lacks {group}.{k}");
        }
    }

    let out = to_fhir(&r, &Ids::default());
    check_resources(&r, &out);
    assert_eq!(from_fhir(&out).unwrap(), r);

    let by_id = |id: &str| {
        out.iter()
            .find(|x| x["id"] == id)
            .unwrap_or_else(|| panic!("no {id}"))
    };
    let p = by_id("tobiume-TB-40-0012345");
    assert_eq!(p["identifier"][0]["system"], CARD_ID_SYSTEM);
    assert_eq!(p["identifier"][0]["value"], "TB-40-0012345");
    assert_eq!(p["name"][0]["text"], "梅野 花子");
    assert_eq!(p["name"][1]["text"], "ウメノ ハナコ");
    assert_eq!(p["name"][1]["extension"][0]["valueCode"], "SYL");
    assert_eq!(p["address"][0]["state"], "福岡県");
    assert_eq!(p["address"][0]["city"], "福岡市");
    assert_eq!(p["_birthDate"]["extension"][0]["url"], ext::ITEM_META);
    assert_eq!(p["extension"][0]["url"], ext::EMERGENCY_REFERRAL_HOSPITAL);
    assert_eq!(
        p["extension"][0]["valueReference"]["reference"],
        "Organization/tobiume-TB-40-0012345-org-emergency-hospital"
    );
    assert_eq!(
        by_id("tobiume-TB-40-0012345-org-emergency-hospital")["name"],
        "福岡市民病院"
    );
    assert_eq!(p["contact"][0]["relationship"][0]["coding"][0]["code"], "C");
    assert_eq!(p["contact"][0]["relationship"][1]["text"], "長男");

    let warfarin = by_id("tobiume-TB-40-0012345-contraindication-1");
    assert_eq!(warfarin["resourceType"], "AllergyIntolerance");
    assert_eq!(warfarin["code"]["text"], "ワーファリン");
    assert_eq!(warfarin["category"][0], "medication");
    assert_eq!(warfarin["criticality"], "high");
    assert_eq!(section_of(warfarin), Some(Section::ContraindicatedDrugs));

    let pm = by_id("tobiume-TB-40-0012345-device-1");
    assert_eq!(pm["type"]["coding"][1]["code"], "14106009");
    assert_eq!(
        by_id("tobiume-TB-40-0012345-procedure-3")["code"]["coding"][0]["code"],
        "dialysis"
    );

    let care = by_id("tobiume-TB-40-0012345-care-level");
    assert_eq!(
        care["valueCodeableConcept"]["coding"][0]["display"],
        "要介護3"
    );
    let dem = by_id("tobiume-TB-40-0012345-dementia-level");
    assert_eq!(
        dem["valueCodeableConcept"]["coding"][0]["display"],
        "Ⅱa".replace('a', "b")
    );
    assert_eq!(
        by_id("tobiume-TB-40-0012345-mmse")["code"]["coding"][1]["code"],
        "72106-8"
    );

    let adr = by_id("tobiume-TB-40-0012345-consent-emergency-care");
    assert_eq!(adr["scope"]["coding"][0]["code"], "adr");
    assert_eq!(adr["provision"]["provision"][0]["type"], "deny");
    assert_eq!(
        adr["provision"]["provision"][0]["code"][0]["coding"][0]["code"],
        "no-cpr"
    );
    assert_eq!(
        adr["sourceAttachment"]["contentType"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(section_of(adr), Some(Section::EmergencyCareWishes));

    // Emergency mode: registration, prescriptions, contraindicated drugs, diagnoses, history, allergies,
    // current treatment, emergency-care wishes — not ADL, care level, dementia, remarks, patient's wishes.
    let emergency: HashSet<String> = out
        .iter()
        .filter(|x| section_of(x).is_some_and(Section::in_emergency_mode))
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    for id in [
        "",
        "-org-emergency-hospital",
        "-care-team",
        "-diagnosis-5",
        "-history",
        "-medication-1",
        "-prescription-text",
        "-allergy-1",
        "-device-use-1",
        "-consent-emergency-care",
    ] {
        assert!(
            emergency.contains(&format!("tobiume-TB-40-0012345{id}")),
            "emergency mode lacks {id}"
        );
    }
    for id in [
        "-adl-eating",
        "-care-level",
        "-dementia-level",
        "-hds-r",
        "-behaviour",
        "-impairment-1",
        "-disability-physical",
        "-remarks",
        "-consent-information",
    ] {
        assert!(
            !emergency.contains(&format!("tobiume-TB-40-0012345{id}")),
            "emergency mode shows {id}"
        );
    }
}

#[test]
fn minimal_registration_roundtrips() {
    let mut r = example();
    let reg = &mut r.registration;
    reg.emergency_referral_hospital = None;
    reg.insurance = None;
    reg.residence_type = None;
    reg.care_facility = None;
    reg.emergency_contacts.clear();
    reg.attending_doctor = None;
    reg.visiting_nurse_station = None;
    reg.visiting_nurse = None;
    reg.home_care_support_office = None;
    reg.care_manager = None;
    r.demographics.address = None;
    r.demographics.phones.clear();
    r.main_diagnoses.clear();
    r.history = None;
    r.prescriptions.clear();
    r.prescription_text = None;
    r.contraindicated_drugs.clear();
    r.allergies.clear();
    r.current_treatments.clear();
    r.adl = Adl::default();
    r.disability = Disability::default();
    r.care_level = None;
    r.impairments.clear();
    r.dementia = Dementia::default();
    r.behaviour = None;
    r.emergency_care_wishes = None;
    r.acp = None;
    r.information_wishes = None;
    r.remarks = None;
    let out = to_fhir(&r, &Ids::default());
    assert_eq!(out.len(), 2, "Patient and the registering clinic");
    check_resources(&r, &out);
    assert_eq!(from_fhir(&out).unwrap(), r);
    let j = serde_json::to_value(&r).unwrap();
    assert!(json_schema().is_valid(&j));
    // ACP without the choices is its own item.
    r.acp = Some(example().acp.unwrap());
    let out = to_fhir(&r, &Ids::default());
    check_resources(&r, &out);
    assert_eq!(from_fhir(&out).unwrap(), r);
}

#[test]
fn errors_name_the_resource_and_path_without_values() {
    let r = example();
    let out = to_fhir(&r, &Ids::default());

    let no_patient: Vec<Value> = out
        .iter()
        .filter(|x| x["resourceType"] != "Patient")
        .cloned()
        .collect();
    assert!(matches!(
        from_fhir(&no_patient),
        Err(RegistrationError::Missing { .. })
    ));

    let mut no_meta = out.clone();
    let i = no_meta
        .iter()
        .position(|x| x["id"] == "tobiume-TB-40-0012345-contraindication-1")
        .unwrap();
    no_meta[i].as_object_mut().unwrap().remove("extension");
    let e = from_fhir(&no_meta).unwrap_err();
    assert_eq!(
        e,
        RegistrationError::Missing {
            resource: "AllergyIntolerance/tobiume-TB-40-0012345-contraindication-1".into(),
            path: "AllergyIntolerance.extension('item-meta')".into()
        }
    );

    let mut bad_date = out.clone();
    bad_date[0]["birthDate"] = Value::String("1938/03/14".into());
    let e = from_fhir(&bad_date).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Patient/tobiume-TB-40-0012345: Patient.birthDate: not a FHIR date"
    );

    let mut bad_code = out.clone();
    let i = bad_code
        .iter()
        .position(|x| x["id"] == "tobiume-TB-40-0012345-care-level")
        .unwrap();
    bad_code[i]["valueCodeableConcept"]["coding"][0]["code"] = Value::String("care-9".into());
    let e = from_fhir(&bad_code).unwrap_err().to_string();
    assert!(
        e.contains("Observation.valueCodeableConcept.coding[0].code"),
        "{e}"
    );

    let mut foreign = out.clone();
    let i = foreign
        .iter()
        .position(|x| x["id"] == "tobiume-TB-40-0012345-diagnosis-1")
        .unwrap();
    foreign[i]["subject"]["reference"] = Value::String("Patient/someone-else".into());
    let e = from_fhir(&foreign).unwrap_err().to_string();
    assert!(e.contains("Condition.subject"), "{e}");

    let mut dangling = out.clone();
    dangling.retain(|x| x["id"] != "tobiume-TB-40-0012345-org-registering-clinic");
    let e = from_fhir(&dangling).unwrap_err().to_string();
    assert!(e.contains("Patient.managingOrganization.reference"), "{e}");

    for e in [e, from_fhir(&bad_date).unwrap_err().to_string()] {
        for phi in ["梅野", "ウメノ", "1938", "TB-40-0012345-x"] {
            assert!(
                !e.contains(phi) || phi == "TB-40-0012345-x",
                "PHI in error: {e}"
            );
        }
    }
}

#[test]
fn model_rules() {
    let mut r = example();
    let extra = r.main_diagnoses[0].clone();
    r.main_diagnoses.push(extra);
    let errs = r.validate().unwrap_err();
    assert!(errs.iter().any(
        |e| matches!(e, RegistrationError::InvalidModel { path, .. } if path == "mainDiagnoses")
    ));
    // The JSON Schema agrees.
    assert!(!json_schema().is_valid(&serde_json::to_value(&r).unwrap()));
    // FHIR with 6 main diagnoses is rejected too.
    let out = to_fhir(&r, &Ids::default());
    assert!(matches!(
        from_fhir(&out),
        Err(RegistrationError::InvalidModel { .. })
    ));

    let mut j = conformance("registration.example.json");
    j["careLevel"]["value"] = Value::String("care-9".into());
    assert!(serde_json::from_value::<Registration>(j.clone()).is_err());
    j["careLevel"]["value"] = Value::String("care-5".into());
    j["unknownItem"] = Value::Bool(true);
    assert!(
        serde_json::from_value::<Registration>(j).is_err(),
        "unknown members are rejected"
    );

    let mut r = example();
    r.dementia.hds_r.as_mut().unwrap().value.score = 31;
    assert!(r.validate().is_err());
}

#[test]
fn ids_are_owned_by_their_card_only() {
    let ids = Ids::default();
    let a = CardId::new("A1").unwrap();
    assert!(ids.owns(&a, "tobiume-A1"));
    assert!(ids.owns(&a, "tobiume-A1-diagnosis-3"));
    assert!(ids.owns(&a, "tobiume-A1-device-use-2"));
    assert!(!ids.owns(&a, "tobiume-A1-2-diagnosis-1x"));
    assert!(!ids.owns(&a, "tobiume-A10"));
    assert!(!ids.owns(&a, "tobiume-A1-"));
}

/// Regression test for a fixed validator defect: U+3000 inside choice-typed strings; formerly ignored until
/// `validation::schema` also relaxes the inline patterns of choice-typed string elements.
#[test]
fn full_width_spaces_in_choice_strings() {
    let mut r = example();
    r.remarks.as_mut().unwrap().value = "長男　一郎に連絡".into();
    r.remarks.as_mut().unwrap().meta.author.facility = Some("とびうめ　内科".into());
    for res in to_fhir(&r, &Ids::default()) {
        assert_eq!(schema::check(&res), Ok(()), "{}", res["id"]);
    }
}
