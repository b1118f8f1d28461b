//! Code translation as data: HL7 v2 tables → FHIR codes (ConceptMaps in `mappings/conceptmaps/`) and
//! HL7 v2 coding-system IDs → FHIR CodeSystem URIs (`mappings/coding-systems.json`).
//!
//! The data files are embedded at compile time (the gateway needs nothing from disk at run time) and
//! parsed once on first use. A newcomer changes a mapping by editing JSON, not Rust.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::LazyLock;

/// One ConceptMap target: the FHIR code and its display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Target code, e.g. `medication`.
    pub code: String,
    /// Target display, e.g. `Medication` (may be empty).
    pub display: String,
}

/// Embedded ConceptMap files (FHIR R4 ConceptMap JSON). `jami-*` are unmodified copies of the JAMI
/// ssmix2-to-fhir draft (CC0); `tobiume-*` are ours (corrections and tables JAMI lacks).
const CONCEPT_MAPS: &[&str] = &[
    include_str!("../../mappings/conceptmaps/jami-ConceptMap-table-v2-0001-to-administrativegender.json"),
    include_str!("../../mappings/conceptmaps/jami-ConceptMap-table-v2-0003-to-encounterstatus.json"),
    include_str!("../../mappings/conceptmaps/jami-ConceptMap-table-v2-0003-to-encounterlocationstatus.json"),
    include_str!("../../mappings/conceptmaps/jami-ConceptMap-table-v2-0004-to-v3-actcode.json"),
    include_str!("../../mappings/conceptmaps/jami-ConceptMap-table-v2-0127-to-allergyintolerancecategory.json"),
    include_str!("../../mappings/conceptmaps/jami-ConceptMap-table-v2-0128-to-reactioneventseverity.json"),
    include_str!("../../mappings/conceptmaps/jami-ConceptMap-table-v2-0201-to-contactpointuse.json"),
    include_str!("../../mappings/conceptmaps/jami-ConceptMap-table-v2-0465-to-iso-21090.json"),
    include_str!("../../mappings/conceptmaps/tobiume-v2-0127-to-allergyintolerancecategory.json"),
    include_str!("../../mappings/conceptmaps/tobiume-ssmix2-datatype-to-encounterstatus.json"),
    include_str!("../../mappings/conceptmaps/tobiume-v2-0078-to-observationinterpretation.json"),
    include_str!("../../mappings/conceptmaps/tobiume-v2-0323-to-allergyintolerance-clinical.json"),
    include_str!("../../mappings/conceptmaps/tobiume-v2-0241-to-condition-clinical.json"),
];

const CODING_SYSTEMS: &str = include_str!("../../mappings/coding-systems.json");

/// The ConceptMap ids the mappers use (file name without `.json`).
pub mod map {
    /// HL7 0001 → AdministrativeGender (JAMI).
    pub const GENDER: &str = "table-v2-0001-to-administrativegender";
    /// HL7 0004 patient class → v3 ActCode (JAMI).
    pub const PATIENT_CLASS: &str = "table-v2-0004-to-v3-actcode";
    /// HL7 0127 → AllergyIntolerance.category (ours: JP-CLINS forbids `biologic`).
    pub const ALLERGY_CATEGORY: &str = "tobiume-v2-0127-to-allergyintolerancecategory";
    /// HL7 0128 → reaction severity (JAMI).
    pub const ALLERGY_SEVERITY: &str = "table-v2-0128-to-reactioneventseverity";
    /// HL7 0201 → ContactPoint.use (JAMI).
    pub const TELECOM_USE: &str = "table-v2-0201-to-contactpointuse";
    /// HL7 0465 → iso21090 name representation (JAMI).
    pub const NAME_REPRESENTATION: &str = "table-v2-0465-to-iso-21090";
    /// SS-MIX2 ADT data type → Encounter.status (JAMI source table).
    pub const ENCOUNTER_STATUS: &str = "tobiume-ssmix2-datatype-to-encounterstatus";
    /// HL7 0078 → v3 ObservationInterpretation.
    pub const INTERPRETATION: &str = "tobiume-v2-0078-to-observationinterpretation";
    /// HL7 0323 → AllergyIntolerance.clinicalStatus.
    pub const ALLERGY_ACTION: &str = "tobiume-v2-0323-to-allergyintolerance-clinical";
    /// HL7 0241 → Condition.clinicalStatus.
    pub const CONDITION_OUTCOME: &str = "tobiume-v2-0241-to-condition-clinical";
}

struct Tables {
    maps: HashMap<String, HashMap<String, Option<Target>>>,
    systems: HashMap<String, String>,
    local_template: String,
    named: HashMap<String, String>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(load);

fn load() -> Tables {
    let mut maps = HashMap::new();
    for text in CONCEPT_MAPS {
        // The embedded files are checked by the `embedded_tables_load` test; a broken one is skipped.
        let Ok(cm) = serde_json::from_str::<Value>(text) else { continue };
        let id = cm["id"].as_str().unwrap_or_default().to_string();
        let mut entries = HashMap::new();
        for group in cm["group"].as_array().into_iter().flatten() {
            for el in group["element"].as_array().into_iter().flatten() {
                let Some(code) = el["code"].as_str() else { continue };
                let target = el["target"].as_array().and_then(|t| t.first()).and_then(|t| {
                    let c = t["code"].as_str()?;
                    Some(Target { code: c.to_string(), display: t["display"].as_str().unwrap_or("").to_string() })
                });
                entries.insert(code.to_string(), target);
            }
        }
        maps.insert(id, entries);
    }
    let cs: Value = serde_json::from_str(CODING_SYSTEMS).unwrap_or(Value::Null);
    let systems = cs["systems"]
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    let named = cs
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    Tables {
        maps,
        systems,
        local_template: cs["localSystemTemplate"].as_str().unwrap_or("urn:local:{facility}:{table}").to_string(),
        named,
    }
}

/// Translates `code` with the ConceptMap `map_id` (see [`map`]).
///
/// Returns `Some(target)` for an `equivalent` mapping, `None` when the code is unknown or the map says
/// `unmatched`. Source: FHIR R4 §ConceptMap `$translate` semantics, restricted to one group.
pub fn translate(map_id: &str, code: &str) -> Option<&'static Target> {
    TABLES.maps.get(map_id)?.get(code)?.as_ref()
}

/// A named URI from `coding-systems.json` (e.g. `departmentSystem`, `jlac10`).
pub fn named_system(key: &str) -> &'static str {
    TABLES.named.get(key).map(String::as_str).unwrap_or("")
}

/// FHIR CodeSystem URI for an HL7 v2 coding-system ID (CWE-3), given the code (some IDs cover several
/// FHIR systems, told apart by the code's form) and the sending facility (MSH-4, for local tables).
///
/// * `MDCDX2`: 8-digit codes → MEDIS 病名管理番号 (`master-disease-keyNumber`), 4-character codes →
///   病名交換用コード (`master-disease-exCode`); modifier codes (`ZZZ…`, 4 chars starting with digits
///   or letters in ZPR-1/3/4/6) are resolved by the caller with [`modifier_system`].
/// * `JC10`: 17-character codes → JLAC10 17 桁 (`master-JLAC10-17digits`); other JC10 codes (15-digit
///   allergen items, 3-digit materials, ECG items) → the JLAC10 OID `urn:oid:1.2.392.200119.4.504`
///   (JP Core defines a URL only for the 17-digit table).
/// * `99xxx` and any unknown ID → `http://tobiume-gateway.local/{facility}/CodeSystem/{table}`.
/// * an empty ID → `None` (a Coding without system).
pub fn system_for(table: &str, code: &str, facility: &str) -> Option<String> {
    let table = table.trim();
    if table.is_empty() {
        return None;
    }
    match table {
        "MDCDX2" => {
            let key = if code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()) {
                "medisDiseaseKeyNumber"
            } else {
                "medisDiseaseExCode"
            };
            return Some(named_system(key).to_string());
        }
        "JC10" | "JLAC10" if code.len() == 17 => return Some(named_system("jlac10").to_string()),
        // Shorter JLAC10 codes (allergen-specific IgE items, material codes): the JLAC10 OID.
        "JC10" | "JLAC10" => return Some("urn:oid:1.2.392.200119.4.504".to_string()),
        _ => {}
    }
    if let Some(s) = TABLES.systems.get(table) {
        return Some(s.clone());
    }
    Some(local_system(table, facility))
}

/// The MEDIS modifier system (修飾語管理番号 for 4-digit numbers, 修飾語交換用コード otherwise).
pub fn modifier_system(code: &str) -> &'static str {
    if code.len() == 4 && code.bytes().all(|b| b.is_ascii_digit()) {
        named_system("medisModifierKeyNumber")
    } else {
        named_system("medisModifierExCode")
    }
}

/// A facility-local CodeSystem URI for table `table` of sending facility `facility` (MSH-4).
pub fn local_system(table: &str, facility: &str) -> String {
    let clean = |s: &str| -> String {
        let c: String = s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.').collect();
        if c.is_empty() {
            "unknown".to_string()
        } else {
            c
        }
    };
    TABLES.local_template.replace("{facility}", &clean(facility)).replace("{table}", &clean(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_tables_load() {
        assert_eq!(TABLES.maps.len(), CONCEPT_MAPS.len(), "every embedded ConceptMap parses and has an id");
        assert_eq!(translate(map::GENDER, "M").unwrap().code, "male");
        assert_eq!(translate(map::ALLERGY_CATEGORY, "DA").unwrap().code, "medication");
        // JP-CLINS forbids `biologic`: our map overrides JAMI's AA → biologic.
        assert_eq!(translate(map::ALLERGY_CATEGORY, "AA").unwrap().code, "environment");
        assert!(translate(map::ALLERGY_CATEGORY, "MA").is_none());
        assert_eq!(translate(map::ENCOUNTER_STATUS, "ADT-52").unwrap().code, "finished");
        assert_eq!(translate(map::NAME_REPRESENTATION, "I").unwrap().code, "IDE");
    }

    #[test]
    fn systems_by_shape() {
        assert_eq!(system_for("MDCDX2", "20054174", "X").unwrap(), "http://medis.or.jp/CodeSystem/master-disease-keyNumber");
        assert_eq!(system_for("MDCDX2", "TSQF", "X").unwrap(), "http://medis.or.jp/CodeSystem/master-disease-exCode");
        assert_eq!(
            system_for("JC10", "3A010000002327101", "X").unwrap(),
            "http://medis.or.jp/CodeSystem/master-JLAC10-17digits"
        );
        assert_eq!(system_for("HOT9", "108665201", "X").unwrap(), "http://medis.or.jp/CodeSystem/master-HOT9");
        assert_eq!(system_for("99XYZ", "1", "SEND").unwrap(), "http://tobiume-gateway.local/SEND/CodeSystem/99XYZ");
        assert!(system_for("", "1", "SEND").is_none());
    }
}
