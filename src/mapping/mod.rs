//! Source formats → JP Core 1.1.2 FHIR R4 resources (raw `serde_json::Value`, the project's source of
//! truth; decimals keep their text thanks to serde_json's `arbitrary_precision`).
//!
//! * [`ssmix2`] — one SS-MIX2 file (an HL7 v2.5 message, JAHIS conventions) → resources, following the
//!   JAMI ssmix2-to-fhir draft maps where they exist and JP Core / JP-CLINS rules where JAMI is silent.
//! * [`codes`] — HL7 v2 table → FHIR code translations and HL7 coding-system IDs → FHIR system URIs,
//!   loaded from the data files in `mappings/` (ConceptMaps), not hard-coded.
//!
//! Every emitted resource has `resourceType`, a stable logical `id` (converting twice gives identical
//! output) and `meta.profile` naming its JP Core profile.

pub mod codes;
pub mod registration;
pub mod ssmix2;

use serde_json::{Map, Value};
use std::fmt;

/// JP Core 1.1.2 profile canonical URLs (`http://jpfhir.jp/fhir/core/StructureDefinition/<Name>`).
pub mod profile {
    macro_rules! jp {
        ($name:ident, $s:literal) => {
            #[doc = concat!("`http://jpfhir.jp/fhir/core/StructureDefinition/", $s, "`")]
            pub const $name: &str = concat!("http://jpfhir.jp/fhir/core/StructureDefinition/", $s);
        };
    }
    jp!(PATIENT, "JP_Patient");
    jp!(ENCOUNTER, "JP_Encounter");
    jp!(ALLERGY_INTOLERANCE, "JP_AllergyIntolerance");
    jp!(CONDITION, "JP_Condition");
    jp!(COVERAGE, "JP_Coverage");
    jp!(OBSERVATION_COMMON, "JP_Observation_Common");
    jp!(OBSERVATION_BODY_MEASUREMENT, "JP_Observation_BodyMeasurement");
    jp!(OBSERVATION_LAB_RESULT, "JP_Observation_LabResult");
    jp!(MEDICATION, "JP_Medication");
    jp!(MEDICATION_REQUEST, "JP_MedicationRequest");
    jp!(MEDICATION_REQUEST_INJECTION, "JP_MedicationRequest_Injection");
    jp!(MEDICATION_ADMINISTRATION, "JP_MedicationAdministration");
    jp!(MEDICATION_ADMINISTRATION_INJECTION, "JP_MedicationAdministration_Injection");
    jp!(SERVICE_REQUEST, "JP_ServiceRequest");
    jp!(SPECIMEN, "JP_Specimen");
    jp!(DIAGNOSTIC_REPORT_LAB_RESULT, "JP_DiagnosticReport_LabResult");
    jp!(DIAGNOSTIC_REPORT_COMMON, "JP_DiagnosticReport_Common");
    jp!(DIAGNOSTIC_REPORT_RADIOLOGY, "JP_DiagnosticReport_Radiology");
    jp!(DIAGNOSTIC_REPORT_ENDOSCOPY, "JP_DiagnosticReport_Endoscopy");
    jp!(IMAGING_STUDY_RADIOLOGY, "JP_ImagingStudy_Radiology");
    jp!(IMAGING_STUDY_ENDOSCOPY, "JP_ImagingStudy_Endoscopy");
    jp!(PROCEDURE, "JP_Procedure");
    /// FHIR R4 base NutritionOrder (JP Core 1.1.2 has no diet-order profile).
    pub const NUTRITION_ORDER: &str = "http://hl7.org/fhir/StructureDefinition/NutritionOrder";
}

/// The 47 prefectures (都道府県) as written at the start of Japanese addresses, for splitting
/// `Address.state` off the address text (JP Core JP_Patient address rule) and for comparing addresses
/// that do or do not include the prefecture.
pub const PREFECTURES: [&str; 47] = [
    "北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県", "茨城県", "栃木県", "群馬県", "埼玉県",
    "千葉県", "東京都", "神奈川県", "新潟県", "富山県", "石川県", "福井県", "山梨県", "長野県", "岐阜県", "静岡県",
    "愛知県", "三重県", "滋賀県", "京都府", "大阪府", "兵庫県", "奈良県", "和歌山県", "鳥取県", "島根県", "岡山県",
    "広島県", "山口県", "徳島県", "香川県", "愛媛県", "高知県", "福岡県", "佐賀県", "長崎県", "熊本県", "大分県",
    "宮崎県", "鹿児島県", "沖縄県",
];

/// The resources produced from one source unit (one SS-MIX2 file), plus what was odd about it.
#[derive(Debug, Default, Clone)]
pub struct Mapped {
    /// FHIR R4 resources as JSON objects, each with `resourceType`, `id` and `meta.profile`.
    pub resources: Vec<Value>,
    /// Recoverable problems (the resources are still produced).
    pub warnings: Vec<MappingWarning>,
}

/// A recoverable problem found while mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingWarning {
    /// Where in the source, e.g. `PID-3`, `OBX[2]-5`, `MSH-18`.
    pub location: String,
    /// What kind of problem (strict identity mode quarantines files with [`WarningKind::Identity`]).
    pub kind: WarningKind,
    /// Human-readable explanation; never contains names, birth dates or insurance numbers.
    pub message: String,
}

/// Classes of [`MappingWarning`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// The message disagrees with the storage about who the patient is (PID-3, name, birth date, sex).
    Identity,
    /// The message does not follow HL7 v2.5 / SS-MIX2 conventions (wrong trigger, LF terminators, …).
    Conformance,
    /// A value could not be converted (bad date, bad number, unknown code) and was left out or kept as text.
    Value,
}

impl fmt::Display for MappingWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// The source unit could not be mapped at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The SS-MIX2 data type has no mapping (e.g. an unknown `ZZZ-99`).
    #[error("data type {0} is not supported")]
    UnsupportedDataType(String),
    /// A segment the mapping needs is missing, e.g. PID or the data type's main segment.
    #[error("required segment {0} is missing")]
    MissingSegment(&'static str),
    /// The message is structurally unusable for this data type (e.g. MSH-9 names another message and
    /// no segment of the expected kind exists).
    #[error("{location}: {message}")]
    Invalid {
        /// Where, e.g. `MSH-9`.
        location: String,
        /// What is wrong.
        message: String,
    },
}

/// Small JSON-building helpers shared by the mappers.
pub(crate) mod json {
    use super::*;

    /// Inserts `key: value` when `value` is not JSON null / empty object / empty array.
    pub fn put(obj: &mut Map<String, Value>, key: &str, value: Value) {
        let empty = match &value {
            Value::Null => true,
            Value::Object(m) => m.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::String(s) => s.is_empty(),
            _ => false,
        };
        if !empty {
            obj.insert(key.to_string(), value);
        }
    }

    /// Starts a resource object: `resourceType`, `id`, `meta.profile`.
    pub fn resource(resource_type: &str, id: &str, profile: &str) -> Map<String, Value> {
        let mut m = Map::with_capacity(16);
        m.insert("resourceType".into(), Value::String(resource_type.into()));
        m.insert("id".into(), Value::String(id.into()));
        m.insert("meta".into(), serde_json::json!({ "profile": [profile] }));
        m
    }

    /// A JSON object of `pairs`, in the given order, the values moved in. `json!` would copy each
    /// value through `serde_json::to_value` (a serialisation of the whole tree, ~3.5 % of the import's
    /// CPU while the mapping used `json!` to embed built `Value`s); this builds the same object.
    pub fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Value {
        let mut m = Map::with_capacity(N);
        for (k, v) in pairs {
            m.insert(k.to_string(), v);
        }
        Value::Object(m)
    }

    /// `Some(String)` → JSON string, `None` → null (dropped by [`put`]).
    pub fn s<S: AsRef<str>>(v: Option<S>) -> Value {
        match v {
            Some(x) if !x.as_ref().is_empty() => Value::String(x.as_ref().to_string()),
            _ => Value::Null,
        }
    }
}
