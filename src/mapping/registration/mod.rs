//! Tobiume-net patient basic information (患者基本情報) ↔ FHIR R4 (JP Core 1.1.2).
//!
//! * [`model`] — [`Registration`]: every item of `docs/domain.md` §1.1, each with its own last-updated
//!   date and author ([`ItemMeta`]). Its serde form is the **simple registration JSON** for systems
//!   without FHIR (`conformance/registration.schema.json`).
//! * [`to_fhir()`] — registration → resources (JP_Patient, JP_Organization, JP_Practitioner, CareTeam,
//!   JP_Coverage, JP_Condition, MedicationStatement, JP_AllergyIntolerance, Device/DeviceUseStatement,
//!   JP_Procedure, JP_Observation_Common, Consent), each profiled with a Tobiume-net profile
//!   ([`profile`]) under the canonical base [`CANONICAL_BASE`].
//! * [`from_fhir()`] — the inverse; `from_fhir(&to_fhir(r, ids)) == Ok(r)` for every valid `r`.
//! * [`terminology`] — the choice lists (enums ↔ CodeSystems/ValueSets with Japanese displays).
//! * [`section_of`] — which summary section ([`Section`]) a produced resource belongs to, for
//!   `$summary?mode=emergency|multidisciplinary`.
//!
//! ## Where the per-item last-updated date and author go
//!
//! The store overwrites `meta.lastUpdated`, so each item's [`ItemMeta`] is carried in the complex
//! extension [`ext::ITEM_META`] (`lastUpdated` valueDateTime, `author` valueString, `authorFacility`
//! valueString) **on the element that holds the item**: on the resource for one-resource items
//! (Condition, Observation, …), on `Patient.name[n]`, `Patient._birthDate`, `Patient._gender`,
//! `Patient.address[0]`, `Patient.telecom[n]`, `Patient.contact[n]`, `Patient.managingOrganization`,
//! the `valueReference` of the facility extensions, each `CareTeam.participant[n]`, and
//! `Consent.sourceAttachment` for the ACP text. Standard elements (`MedicationStatement.dateAsserted`,
//! `Consent.dateTime`, `Observation.effectiveDateTime`) also get the date, for readers that ignore
//! the extension.
//!
//! ## Logical ids
//!
//! All ids derive from the card id ([`Ids`]): `tobiume-<cardId>` for the Patient and
//! `tobiume-<cardId>-<part>` for the rest (`…-org-registering-clinic`, `…-diagnosis-1`, `…-adl-eating`,
//! …), so a re-registration **updates** the same resources; list items are numbered by position. A
//! caller replacing a registration deletes the ids of the old set that the new set lacks
//! ([`Ids::owns`] tells which ids belong to a card).

pub mod from_fhir;
pub mod model;
pub mod receipt;
pub mod terminology;
pub mod to_fhir;

pub use from_fhir::from_fhir;
pub use model::*;
pub use terminology::{Choice, RegistrationItem, Section};
pub use to_fhir::to_fhir;

use serde_json::Value;

/// Canonical base of every Tobiume-net conformance resource (profiles, extensions, CodeSystems,
/// ValueSets, identifier systems). It is the same base as the gateway's ConceptMaps
/// (`mappings/conceptmaps/tobiume-*.json`); replace it in one place (here and `profiles/tobiume/`) when
/// the association publishes under its own domain.
pub const CANONICAL_BASE: &str = "http://tobiume-gateway.local/fhir";
/// `<base>/StructureDefinition` (profiles and extensions).
pub const STRUCTURE_DEFINITION_BASE: &str = "http://tobiume-gateway.local/fhir/StructureDefinition";
/// `<base>/CodeSystem`.
pub const CODE_SYSTEM_BASE: &str = "http://tobiume-gateway.local/fhir/CodeSystem";
/// `<base>/ValueSet`.
pub const VALUE_SET_BASE: &str = "http://tobiume-gateway.local/fhir/ValueSet";
/// Identifier system of the Tobiume-net card ID (`Patient.identifier.system`); the network's own
/// namespace (JP Core allows a regional network's own system for its patient ids).
pub const CARD_ID_SYSTEM: &str = "http://tobiume-gateway.local/fhir/sid/card-id";
/// Identifier system of 介護保険事業所番号 (care-insurance provider numbers; JP Core defines none).
pub const LTC_PROVIDER_SYSTEM: &str = "http://tobiume-gateway.local/fhir/sid/ltc-provider-no";
/// JP Core identifier system of the 10-digit 医療機関コード.
pub const MEDICAL_INSTITUTION_SYSTEM: &str =
    "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";
/// JP Core identifier system of 保険者番号.
pub const INSURER_NUMBER_SYSTEM: &str = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/InsurerNumber";

/// The Tobiume-net profiles (`<base>/StructureDefinition/<Name>`), one per kind of produced resource.
/// Each derives from the JP Core 1.1.2 profile of its type where one exists, else from FHIR R4.
pub mod profile {
    macro_rules! tb {
        ($name:ident, $s:literal, $base:literal) => {
            #[doc = concat!("`http://tobiume-gateway.local/fhir/StructureDefinition/", $s, "` (base: `", $base, "`).")]
            pub const $name: &str = concat!("http://tobiume-gateway.local/fhir/StructureDefinition/", $s);
        };
    }
    tb!(PATIENT, "TobiumePatient", "JP_Patient");
    tb!(ORGANIZATION, "TobiumeOrganization", "JP_Organization");
    tb!(PRACTITIONER, "TobiumePractitioner", "JP_Practitioner");
    tb!(CARE_TEAM, "TobiumeCareTeam", "CareTeam");
    tb!(COVERAGE, "TobiumeCoverage", "JP_Coverage");
    tb!(CONDITION, "TobiumeMainDiagnosis", "JP_Condition");
    tb!(
        MEDICATION_STATEMENT,
        "TobiumeMedicationStatement",
        "MedicationStatement"
    );
    tb!(
        CONTRAINDICATED_DRUG,
        "TobiumeContraindicatedDrug",
        "JP_AllergyIntolerance"
    );
    tb!(
        ALLERGY,
        "TobiumeAllergyIntolerance",
        "JP_AllergyIntolerance"
    );
    tb!(DEVICE, "TobiumeDevice", "JP_Device");
    tb!(
        DEVICE_USE_STATEMENT,
        "TobiumeDeviceUseStatement",
        "JP_DeviceUseStatement"
    );
    tb!(PROCEDURE, "TobiumeProcedure", "JP_Procedure");
    tb!(
        OBSERVATION_NARRATIVE,
        "TobiumeObservationNarrative",
        "JP_Observation_Common"
    );
    tb!(
        OBSERVATION_RESIDENCE,
        "TobiumeObservationResidence",
        "JP_Observation_SocialHistory"
    );
    tb!(
        OBSERVATION_ADL,
        "TobiumeObservationAdl",
        "JP_Observation_Common"
    );
    tb!(
        OBSERVATION_CARE_LEVEL,
        "TobiumeObservationCareLevel",
        "JP_Observation_Common"
    );
    tb!(
        OBSERVATION_DISABILITY,
        "TobiumeObservationDisability",
        "JP_Observation_Common"
    );
    tb!(
        OBSERVATION_IMPAIRMENT,
        "TobiumeObservationImpairment",
        "JP_Observation_Common"
    );
    tb!(
        OBSERVATION_DEMENTIA,
        "TobiumeObservationDementia",
        "JP_Observation_Common"
    );
    tb!(
        OBSERVATION_BEHAVIOUR,
        "TobiumeObservationBehaviour",
        "JP_Observation_Common"
    );
    tb!(
        CONSENT_EMERGENCY_CARE,
        "TobiumeConsentEmergencyCare",
        "JP_Consent"
    );
    tb!(
        CONSENT_INFORMATION,
        "TobiumeConsentInformation",
        "JP_Consent"
    );

    /// Every profile above.
    pub const ALL: &[&str] = &[
        PATIENT,
        ORGANIZATION,
        PRACTITIONER,
        CARE_TEAM,
        COVERAGE,
        CONDITION,
        MEDICATION_STATEMENT,
        CONTRAINDICATED_DRUG,
        ALLERGY,
        DEVICE,
        DEVICE_USE_STATEMENT,
        PROCEDURE,
        OBSERVATION_NARRATIVE,
        OBSERVATION_RESIDENCE,
        OBSERVATION_ADL,
        OBSERVATION_CARE_LEVEL,
        OBSERVATION_DISABILITY,
        OBSERVATION_IMPAIRMENT,
        OBSERVATION_DEMENTIA,
        OBSERVATION_BEHAVIOUR,
        CONSENT_EMERGENCY_CARE,
        CONSENT_INFORMATION,
    ];
}

/// The Tobiume-net extensions (`<base>/StructureDefinition/<name>`).
pub mod ext {
    /// Complex extension on any element: the item's last-updated date and author (sub-extensions
    /// `lastUpdated` valueDateTime 1..1, `author` valueString 1..1, `authorFacility` valueString 0..1).
    pub const ITEM_META: &str = "http://tobiume-gateway.local/fhir/StructureDefinition/item-meta";
    /// Patient extension, valueReference(Organization): 緊急時紹介先医療機関 (the emergency hospital
    /// the patient chose).
    pub const EMERGENCY_REFERRAL_HOSPITAL: &str =
        "http://tobiume-gateway.local/fhir/StructureDefinition/emergency-referral-hospital";
    /// Patient extension, valueReference(Organization): 入所施設 (the care facility the patient lives in).
    pub const CARE_FACILITY: &str =
        "http://tobiume-gateway.local/fhir/StructureDefinition/care-facility";
    /// Every extension above.
    pub const ALL: &[&str] = &[ITEM_META, EMERGENCY_REFERRAL_HOSPITAL, CARE_FACILITY];
}

/// Policy URIs referenced by the Consents (`Consent.policy.uri`; FHIR R4 invariant ppc-1).
pub mod policy {
    /// Wishes for emergency care / advance directive.
    pub const EMERGENCY_CARE: &str =
        "http://tobiume-gateway.local/fhir/policy/emergency-care-wishes";
    /// The patient's wishes about information sharing.
    pub const INFORMATION: &str = "http://tobiume-gateway.local/fhir/policy/information-sharing";
}

/// How logical ids are made: `<prefix>-<cardId>` for the Patient, `<prefix>-<cardId>-<part>` for the
/// rest. Ids are at most 8 + 32 + 30 characters, within FHIR's 64 for the default prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// The prefix, `tobiume` by default (1–8 characters of `A–Z a–z 0–9 -`).
    pub prefix: String,
}

impl Default for Ids {
    fn default() -> Self {
        Ids {
            prefix: "tobiume".into(),
        }
    }
}

impl Ids {
    /// The Patient's logical id, e.g. `tobiume-TB0012345`.
    pub fn patient(&self, card: &CardId) -> String {
        format!("{}-{}", self.prefix, card.as_str())
    }
    /// Another resource's logical id, e.g. `tobiume-TB0012345-diagnosis-1`.
    pub fn part(&self, card: &CardId, part: &str) -> String {
        format!("{}-{}-{}", self.prefix, card.as_str(), part)
    }
    /// `true` if `id` is the Patient id or one of the resource ids of `card` (for deleting resources a
    /// re-registration no longer produces).
    pub fn owns(&self, card: &CardId, id: &str) -> bool {
        let p = self.patient(card);
        id == p
            || id.strip_prefix(&p).is_some_and(|rest| {
                rest.starts_with('-') && !rest[1..].is_empty() && is_part(&rest[1..])
            })
    }
}

/// The id parts [`to_fhir`] uses (so that card `A` does not own card `A-org…`'s ids by accident).
fn is_part(part: &str) -> bool {
    const FIXED: &[&str] = &[
        "org-registering-clinic",
        "org-emergency-hospital",
        "org-care-facility",
        "org-visiting-nurse-station",
        "org-home-care-support-office",
        "practitioner-attending-doctor",
        "practitioner-visiting-nurse",
        "practitioner-care-manager",
        "care-team",
        "coverage",
        "history",
        "prescription-text",
        "residence-type",
        "adl-eating",
        "adl-feeding-route",
        "adl-food-form",
        "adl-excretion",
        "adl-mobility",
        "adl-breathing",
        "disability-physical",
        "disability-mental",
        "disability-rehabilitation",
        "care-level",
        "dementia-level",
        "hds-r",
        "mmse",
        "behaviour",
        "consent-emergency-care",
        "consent-information",
        "remarks",
    ];
    const NUMBERED: &[&str] = &[
        "diagnosis-",
        "medication-",
        "contraindication-",
        "allergy-",
        "device-",
        "device-use-",
        "procedure-",
        "impairment-",
    ];
    FIXED.contains(&part)
        || NUMBERED.iter().any(|n| {
            part.strip_prefix(n)
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Errors of the registration mapping. Messages name the resource (`Type/id`) and the FHIRPath-style
/// location, or the model's JSON path; they never contain names, dates, numbers or other values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// A required element is missing.
    #[error("{resource}: {path} is missing")]
    Missing {
        /// `Type/id` of the resource, or the resource type when there is none.
        resource: String,
        /// Where, e.g. `Patient.birthDate`, `Condition.extension(item-meta).lastUpdated`.
        path: String,
    },
    /// An element is present but unusable (wrong type, unknown code, bad format, dangling reference).
    #[error("{resource}: {path}: {message}")]
    Invalid {
        /// `Type/id` of the resource.
        resource: String,
        /// Where.
        path: String,
        /// What is wrong (no values).
        message: String,
    },
    /// The registration model breaks a rule ([`Registration::validate`]).
    #[error("{path}: {message}")]
    InvalidModel {
        /// camelCase JSON path in the simple registration JSON, e.g. `mainDiagnoses[5]`.
        path: String,
        /// What is wrong (no values).
        message: String,
    },
}

impl RegistrationError {
    pub(crate) fn invalid_model(path: &str, message: &str) -> Self {
        RegistrationError::InvalidModel {
            path: path.to_string(),
            message: message.to_string(),
        }
    }
}

/// The summary section a resource produced by [`to_fhir`] belongs to, or `None` for resources this
/// module does not produce.
///
/// Decided from `meta.profile` (a Tobiume-net profile) and, for Observations, the
/// [`RegistrationItem`] code in `Observation.code`; Organizations, Practitioners, the CareTeam and
/// Coverage are [`Section::Registration`]. Emergency mode shows the resources whose section
/// [`Section::in_emergency_mode`].
pub fn section_of(resource: &Value) -> Option<Section> {
    let profiles: Vec<&str> = resource
        .pointer("/meta/profile")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let has = |p: &str| profiles.iter().any(|x| x.split('|').next() == Some(p));
    use profile as P;
    if [
        P::PATIENT,
        P::ORGANIZATION,
        P::PRACTITIONER,
        P::CARE_TEAM,
        P::COVERAGE,
    ]
    .iter()
    .any(|p| has(p))
    {
        return Some(Section::Registration);
    }
    if has(P::CONDITION) {
        return Some(Section::MainDiagnoses);
    }
    if has(P::MEDICATION_STATEMENT) {
        return Some(Section::Prescriptions);
    }
    if has(P::CONTRAINDICATED_DRUG) {
        return Some(Section::ContraindicatedDrugs);
    }
    if has(P::ALLERGY) {
        return Some(Section::Allergies);
    }
    if has(P::DEVICE) || has(P::DEVICE_USE_STATEMENT) || has(P::PROCEDURE) {
        return Some(Section::CurrentTreatment);
    }
    if has(P::CONSENT_EMERGENCY_CARE) {
        return Some(Section::EmergencyCareWishes);
    }
    if has(P::CONSENT_INFORMATION) {
        return Some(Section::PatientWishes);
    }
    if resource.get("resourceType").and_then(Value::as_str) == Some("Observation")
        && profiles
            .iter()
            .any(|p| p.starts_with(STRUCTURE_DEFINITION_BASE))
    {
        let system = RegistrationItem::system();
        return resource
            .pointer("/code/coding")
            .and_then(Value::as_array)?
            .iter()
            .filter(|c| c.get("system").and_then(Value::as_str) == Some(system.as_str()))
            .find_map(|c| RegistrationItem::from_code(c.get("code")?.as_str()?))
            .map(RegistrationItem::section);
    }
    None
}

/// Minimal standard base64 (RFC 4648 §4, with padding) for `Attachment.data`.
pub(crate) mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// Encodes bytes.
    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// Decodes (white space ignored); `None` on any other non-alphabet character or bad padding.
    pub fn decode(input: &str) -> Option<Vec<u8>> {
        let clean: Vec<u8> = input.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !clean.len().is_multiple_of(4) {
            return None;
        }
        let mut out = Vec::with_capacity(clean.len() / 4 * 3);
        let last = clean.len() / 4;
        for (ci, chunk) in clean.chunks(4).enumerate() {
            let mut n = 0u32;
            let mut pad = 0;
            for (i, &c) in chunk.iter().enumerate() {
                let v = match c {
                    b'A'..=b'Z' => c - b'A',
                    b'a'..=b'z' => c - b'a' + 26,
                    b'0'..=b'9' => c - b'0' + 52,
                    b'+' => 62,
                    b'/' => 63,
                    b'=' if ci + 1 == last && i >= 2 => {
                        pad += 1;
                        0
                    }
                    _ => return None,
                };
                if pad > 0 && c != b'=' {
                    return None;
                }
                n = (n << 6) | u32::from(v);
            }
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..3 - pad]);
        }
        Some(out)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn roundtrip() {
            for s in [
                "",
                "f",
                "fo",
                "foo",
                "foob",
                "fooba",
                "foobar",
                "人生会議の記録",
            ] {
                let e = super::encode(s.as_bytes());
                assert_eq!(super::decode(&e).unwrap(), s.as_bytes());
            }
            assert_eq!(super::encode(b"foobar"), "Zm9vYmFy");
            assert_eq!(super::encode(b"fo"), "Zm8=");
            assert!(super::decode("Zm8").is_none());
            assert!(super::decode("Z=8=").is_none());
        }
    }
}
