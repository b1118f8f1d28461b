//! The registration model: every item of the Tobiume-net patient basic information (患者基本情報,
//! `docs/domain.md` §1.1), each with its own last-updated date and author.
//!
//! **The simple registration JSON is the serde form of [`Registration`]** (for systems without FHIR;
//! JSON Schema: `conformance/registration.schema.json`, example: `conformance/registration.example.json`):
//!
//! * member names are **camelCase** (`cardId`, `nameKana`, `emergencyReferralHospital`, …);
//! * every item is an [`Item`]: `{"value": …, "meta": {"lastUpdated": "2026-07-01", "author": {"name":
//!   "…", "facility": "…"}}}`;
//! * choice-list values are the stable codes of [`super::terminology`] (e.g. `"care-3"`, `"2a"`);
//! * absent optional items and empty lists are left out (serde also reads `null` and `[]`; the JSON Schema
//!   accepts `[]` but not `null`);
//! * unknown members are rejected (`deny_unknown_fields`), so a misspelt item is an error, not a loss.
//!
//! Deserialization checks the shape and the date formats only; [`Registration::validate`] checks the
//! rest (card id, non-empty texts, ≤ 5 main diagnoses, score ranges, …). Only valid registrations are
//! guaranteed to survive `to_fhir` → `from_fhir` unchanged.

use serde::{Deserialize, Deserializer, Serialize};

use super::terminology::*;
use super::RegistrationError;

/// Validates the FHIR `date` lexical form (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`, FHIR R4 §2.24.0.1 date).
pub fn is_fhir_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|x| x.iter().all(u8::is_ascii_digit))
    };
    if !digits(0..4) || &s[..4] == "0000" {
        return false;
    }
    match b.len() {
        4 => true,
        7 | 10 => {
            if b[4] != b'-' || !digits(5..7) {
                return false;
            }
            let month: u32 = s[5..7].parse().unwrap_or(0);
            if !(1..=12).contains(&month) {
                return false;
            }
            if b.len() == 7 {
                return true;
            }
            if b[7] != b'-' || !digits(8..10) {
                return false;
            }
            let day: u32 = s[8..10].parse().unwrap_or(0);
            (1..=31).contains(&day)
        }
        _ => false,
    }
}

/// Validates the FHIR `dateTime` lexical form: a [`is_fhir_date`] date, or `YYYY-MM-DDThh:mm:ss[.f+]`
/// followed by `Z` or `±hh:mm` (FHIR R4 §2.24.0.1 dateTime: a time requires a time zone).
pub fn is_fhir_date_time(s: &str) -> bool {
    let Some((date, time)) = s.split_once('T') else {
        return is_fhir_date(s);
    };
    if date.len() != 10 || !is_fhir_date(date) {
        return false;
    }
    let (clock, zone) = if let Some(t) = time.strip_suffix('Z') {
        (t, "")
    } else if time.len() > 6 && matches!(time.as_bytes()[time.len() - 6], b'+' | b'-') {
        let (c, z) = time.split_at(time.len() - 6);
        (c, &z[1..])
    } else {
        return false;
    };
    if !zone.is_empty() {
        let zb = zone.as_bytes();
        if zb.len() != 5 || zb[2] != b':' || !zb[..2].iter().chain(&zb[3..]).all(u8::is_ascii_digit)
        {
            return false;
        }
    }
    let (hms, frac) = match clock.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (clock, None),
    };
    if frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|c| c.is_ascii_digit())) {
        return false;
    }
    let hb = hms.as_bytes();
    if hb.len() != 8 || hb[2] != b':' || hb[5] != b':' {
        return false;
    }
    let num = |r: std::ops::Range<usize>, max: u32| {
        hms.get(r)
            .filter(|x| x.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|x| x.parse::<u32>().ok())
            .is_some_and(|v| v <= max)
    };
    num(0..2, 23) && num(3..5, 59) && num(6..8, 60)
}

macro_rules! checked_string {
    ($(#[$m:meta])* $name:ident, $check:path, $what:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);
        impl $name {
            #[doc = concat!("Checks and wraps `s`; `None` unless it is a valid ", $what, ".")]
            pub fn new(s: impl Into<String>) -> Option<Self> {
                let s = s.into();
                $check(&s).then_some($name(s))
            }
            /// The text as given (never reformatted, so precision survives round trips).
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::new(s).ok_or_else(|| serde::de::Error::custom(concat!("not a valid ", $what)))
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

checked_string!(
    /// A FHIR R4 `date` (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`), e.g. a birth date or onset date.
    Date, is_fhir_date, "FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)"
);
checked_string!(
    /// A FHIR R4 `dateTime` (a [`Date`], or `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)`), e.g. an item's
    /// last-updated date.
    DateTime, is_fhir_date_time, "FHIR dateTime (a date, or YYYY-MM-DDThh:mm:ss with a time zone)"
);

/// The Tobiume-net ID printed on the patient's registration card and sticker (`docs/domain.md` §1.2).
///
/// 1–26 characters of `A–Z a–z 0–9 -`, so that the longest logical id, `tobiume-<cardId>-practitioner-attending-doctor`
/// (8 + 26 + 1 + 29 characters), stays within FHIR's 64 (FHIR R4 §2.24.0.1 id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CardId(String);

impl CardId {
    /// Checks and wraps a card id; `None` if it is empty, longer than 26 or has other characters.
    pub fn new(s: impl Into<String>) -> Option<Self> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 26
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then_some(CardId(s))
    }
    /// The id as printed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for CardId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CardId::new(s).ok_or_else(|| {
            serde::de::Error::custom("cardId must be 1-26 characters of A-Z, a-z, 0-9, '-'")
        })
    }
}

/// Who last updated an item (the Tobiume-net "更新者").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Author {
    /// The person's name, e.g. `梅野 花子`.
    pub name: String,
    /// Their facility's name, e.g. `とびうめ内科クリニック` (absent for e.g. a municipality's
    /// pre-registration from receipt data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
}

/// Last-updated date and author of one item (Tobiume-net plus shows both per item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemMeta {
    /// When the item was last updated (FHIR dateTime; a date alone is allowed).
    pub last_updated: DateTime,
    /// Who updated it.
    pub author: Author,
}

/// One registered item: its value and its [`ItemMeta`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Item<T> {
    /// The item's value.
    pub value: T,
    /// Last-updated date and author.
    pub meta: ItemMeta,
}

impl<T> Item<T> {
    /// Wraps `value` with `meta`.
    pub fn new(value: T, meta: ItemMeta) -> Self {
        Item { value, meta }
    }
}

/// A person's name split into family (姓) and given (名) name, as on the form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersonName {
    /// 姓, e.g. `梅野` / `ウメノ`.
    pub family: String,
    /// 名, e.g. `太郎` / `タロウ` (absent when the name is not split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given: Option<String>,
}

/// Administrative sex (FHIR AdministrativeGender; displays 男性 / 女性 / その他 / 不明).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sex {
    /// 男性.
    Male,
    /// 女性.
    Female,
    /// その他.
    Other,
    /// 不明.
    Unknown,
}

impl Sex {
    /// All values.
    pub const ALL: &'static [Sex] = &[Sex::Male, Sex::Female, Sex::Other, Sex::Unknown];
    /// The FHIR `Patient.gender` code.
    pub fn code(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
            Sex::Other => "other",
            Sex::Unknown => "unknown",
        }
    }
    /// The value for a `Patient.gender` code.
    pub fn from_code(c: &str) -> Option<Sex> {
        Sex::ALL.iter().copied().find(|s| s.code() == c)
    }
}

/// A postal address. `text` is authoritative (the whole address without the postcode, JP Core rule);
/// the FHIR side adds `state`/`city`/`line` split from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Address {
    /// 郵便番号 `NNN-NNNN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// The whole address, e.g. `福岡県福岡市中央区天神1丁目1-1`.
    pub text: String,
}

/// Kind of a phone number (FHIR ContactPoint.use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhoneUse {
    /// 自宅.
    Home,
    /// 携帯.
    Mobile,
    /// 勤務先.
    Work,
}

impl PhoneUse {
    /// All values.
    pub const ALL: &'static [PhoneUse] = &[PhoneUse::Home, PhoneUse::Mobile, PhoneUse::Work];
    /// The FHIR ContactPoint.use code.
    pub fn code(self) -> &'static str {
        match self {
            PhoneUse::Home => "home",
            PhoneUse::Mobile => "mobile",
            PhoneUse::Work => "work",
        }
    }
    /// The value for a ContactPoint.use code.
    pub fn from_code(c: &str) -> Option<PhoneUse> {
        PhoneUse::ALL.iter().copied().find(|s| s.code() == c)
    }
}

/// A phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Phone {
    /// The number as written, e.g. `092-123-4567`.
    pub number: String,
    /// Home, mobile or work.
    #[serde(rename = "use")]
    pub use_: PhoneUse,
}

/// 患者属性: demographics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Demographics {
    /// 氏名（漢字）.
    pub name_kanji: Item<PersonName>,
    /// 氏名（カナ）— the key, with the birth date, for emergency look-up.
    pub name_kana: Item<PersonName>,
    /// 生年月日.
    pub birth_date: Item<Date>,
    /// 性別.
    pub sex: Item<Sex>,
    /// 住所.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Item<Address>>,
    /// 電話番号 (each number its own item).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<Item<Phone>>,
}

/// A facility: clinic, hospital, care facility, visiting-nurse station, home-care support office.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Facility {
    /// Name, e.g. `福岡市民病院`.
    pub name: String,
    /// 10-digit code: 医療機関コード (JP Core `insurance-medical-institution-no`) for clinics, hospitals
    /// and visiting-nurse stations; 介護保険事業所番号 for care facilities and home-care support offices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Address text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// A clinician or care professional (attending doctor, nurse, care manager).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Professional {
    /// Name in kanji, e.g. `博多 一郎`.
    pub name: String,
    /// Name in kana.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_kana: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// 保険: the health insurance card (被保険者証).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Insurance {
    /// 保険者番号 (6 or 8 digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insurer_number: Option<String>,
    /// 記号.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// 番号.
    pub number: String,
    /// 枝番 (2 digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// An emergency contact (緊急連絡先).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmergencyContact {
    /// Name, e.g. `梅野 一郎`.
    pub name: String,
    /// Relationship to the patient.
    pub relationship: Relationship,
    /// Relationship as written, e.g. `長男`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationship_text: Option<String>,
    /// Phone numbers, in order of preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<Phone>,
}

/// 患者基本情報: registration items (the care network around the patient).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrationInfo {
    /// 登録医療機関: the family doctor's clinic that registered the patient.
    pub registering_clinic: Item<Facility>,
    /// 緊急時紹介先医療機関: the emergency hospital the patient chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_referral_hospital: Option<Item<Facility>>,
    /// 保険（記号・番号）.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insurance: Option<Item<Insurance>>,
    /// 居住形態.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residence_type: Option<Item<ResidenceType>>,
    /// 入所施設.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub care_facility: Option<Item<Facility>>,
    /// 緊急連絡先, in order of preference (each its own item).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emergency_contacts: Vec<Item<EmergencyContact>>,
    /// 主治医.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attending_doctor: Option<Item<Professional>>,
    /// 訪問看護ステーション.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visiting_nurse_station: Option<Item<Facility>>,
    /// 訪問看護師.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visiting_nurse: Option<Item<Professional>>,
    /// 居宅介護支援事業所.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_care_support_office: Option<Item<Facility>>,
    /// 介護支援専門員（ケアマネジャー）.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub care_manager: Option<Item<Professional>>,
}

/// Code systems for disease codes (JP Core `JP_Condition_Diagnosis` coding slices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiseaseCodeSystem {
    /// MEDIS 病名管理番号 (8 digits), `http://medis.or.jp/CodeSystem/master-disease-keyNumber`.
    MedisKeyNumber,
    /// MEDIS 病名交換用コード (4 characters), `http://medis.or.jp/CodeSystem/master-disease-exCode`.
    MedisExCode,
    /// レセプト電算 傷病名コード, `http://jpfhir.jp/fhir/core/mhlw/CodeSystem/masterB-disease`.
    Receipt,
    /// ICD-10 (2013), `http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full`.
    Icd10,
}

impl DiseaseCodeSystem {
    /// All values.
    pub const ALL: &'static [DiseaseCodeSystem] = &[
        Self::MedisKeyNumber,
        Self::MedisExCode,
        Self::Receipt,
        Self::Icd10,
    ];
    /// The FHIR system URI (standards-jp.md §1.3).
    pub fn uri(self) -> &'static str {
        match self {
            Self::MedisKeyNumber => "http://medis.or.jp/CodeSystem/master-disease-keyNumber",
            Self::MedisExCode => "http://medis.or.jp/CodeSystem/master-disease-exCode",
            Self::Receipt => "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/masterB-disease",
            Self::Icd10 => "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full",
        }
    }
    /// The value for a system URI.
    pub fn from_uri(u: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.uri() == u)
    }
}

/// A coded disease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiseaseCode {
    /// Which code table.
    pub system: DiseaseCodeSystem,
    /// The code, e.g. `20054174`.
    pub code: String,
}

/// 主な病名: one main diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Diagnosis {
    /// 病名 as shown, e.g. `2型糖尿病`.
    pub name: String,
    /// The code when picked from a master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<DiseaseCode>,
    /// 発症日 / 診断日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset: Option<Date>,
}

/// Code systems for drugs (standards-jp.md §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrugCodeSystem {
    /// YJ コード, `http://capstandard.jp/iyaku.info/CodeSystem/YJ-code`.
    Yj,
    /// HOT9, `http://medis.or.jp/CodeSystem/master-HOT9`.
    Hot9,
    /// HOT13, `http://medis.or.jp/CodeSystem/master-HOT13`.
    Hot13,
    /// 一般名処方マスタ, `http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationGeneralOrderCode`.
    GeneralName,
}

impl DrugCodeSystem {
    /// All values.
    pub const ALL: &'static [DrugCodeSystem] =
        &[Self::Yj, Self::Hot9, Self::Hot13, Self::GeneralName];
    /// The FHIR system URI.
    pub fn uri(self) -> &'static str {
        match self {
            Self::Yj => "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code",
            Self::Hot9 => "http://medis.or.jp/CodeSystem/master-HOT9",
            Self::Hot13 => "http://medis.or.jp/CodeSystem/master-HOT13",
            Self::GeneralName => {
                "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationGeneralOrderCode"
            }
        }
    }
    /// The value for a system URI.
    pub fn from_uri(u: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.uri() == u)
    }
}

/// A coded drug (picked from the drug master or from SS-MIX2 data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrugCode {
    /// Which code table.
    pub system: DrugCodeSystem,
    /// The code, e.g. `3332001F1020` (YJ).
    pub code: String,
}

/// 処方: one drug the patient takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Prescription {
    /// Drug name as shown, e.g. `アムロジピン錠5mg`.
    pub drug: String,
    /// The code when picked from a master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<DrugCode>,
    /// 用法・用量 as text, e.g. `1回1錠 1日1回 朝食後`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dosage: Option<String>,
}

/// 禁忌薬: one contraindicated drug (shown in red).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContraindicatedDrug {
    /// Drug name as written, e.g. `ワーファリン`.
    pub drug: String,
    /// The code when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<DrugCode>,
    /// Why / what happened, e.g. `脳出血の既往のため`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// アレルギー: one checked allergy box with its detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Allergy {
    /// Which box.
    pub kind: AllergyKind,
    /// Detail, e.g. `そば` for food.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// 現在の医療・処置: one checked treatment box with its detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CurrentTreatment {
    /// Which box.
    pub kind: TreatmentKind,
    /// Detail, e.g. `DDD型 2019年植込み` or `週3回 血液透析`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One ADL assessment: a level from a choice list plus a note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Assessment<L> {
    /// The level.
    pub level: L,
    /// Note, e.g. `杖歩行`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// 日常生活状態 (ADL).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Adl {
    /// 食事.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eating: Option<Item<Assessment<AssistanceLevel>>>,
    /// 栄養摂取経路.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feeding_route: Option<Item<Assessment<FeedingRoute>>>,
    /// 食事形態.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub food_form: Option<Item<Assessment<FoodForm>>>,
    /// 排泄.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excretion: Option<Item<Assessment<AssistanceLevel>>>,
    /// 移動.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobility: Option<Item<Assessment<AssistanceLevel>>>,
    /// 呼吸.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breathing: Option<Item<Assessment<Breathing>>>,
}

/// 障害者医療: disability certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Disability {
    /// 身体障害者手帳 等級.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<Item<PhysicalDisabilityGrade>>,
    /// 精神障害者保健福祉手帳 等級.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mental: Option<Item<MentalDisabilityGrade>>,
    /// 療育手帳 判定.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehabilitation: Option<Item<RehabilitationGrade>>,
}

/// 障害情報: one impairment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Impairment {
    /// Which impairment.
    pub kind: ImpairmentKind,
    /// Note, e.g. `右半身麻痺`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A cognitive test score (HDS-R or MMSE, both 0–30 points).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CognitiveScore {
    /// Score in points, 0–30 (unit `{score}`).
    pub score: u8,
    /// Date of the test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<Date>,
}

/// 認知自立度: dementia independence level and test scores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dementia {
    /// 認知症高齢者の日常生活自立度.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Item<DementiaLevel>>,
    /// 改訂長谷川式簡易知能評価スケール (HDS-R).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hds_r: Option<Item<CognitiveScore>>,
    /// MMSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mmse: Option<Item<CognitiveScore>>,
}

/// 行動の特徴: choices plus free text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behaviour {
    /// Checked features, in form order or as entered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traits: Vec<BehaviourTrait>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// 患者の意向: the patient's wishes about their information.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InformationWishes {
    /// With whom the information may be shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<InformationSharing>,
    /// The wishes in the patient's words, e.g. `病名は本人に告知済み。家族への説明は長男を通して。`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The Tobiume-net patient basic information (患者基本情報) of one patient: every item of
/// `docs/domain.md` §1.1, each an [`Item`] with its own last-updated date and author.
///
/// Its serde form is the simple registration JSON (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Registration {
    /// The Tobiume-net ID on the registration card (identity key; not an item).
    pub card_id: CardId,
    /// 患者属性.
    pub demographics: Demographics,
    /// 患者基本情報.
    pub registration: RegistrationInfo,
    /// 主な病名, at most 5 ([`MAX_MAIN_DIAGNOSES`]); more go into `history`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub main_diagnoses: Vec<Item<Diagnosis>>,
    /// 病名・病歴等 (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Item<String>>,
    /// 処方 picked from the drug master / SS-MIX2 data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prescriptions: Vec<Item<Prescription>>,
    /// 処方 as free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prescription_text: Option<Item<String>>,
    /// 禁忌薬.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contraindicated_drugs: Vec<Item<ContraindicatedDrug>>,
    /// アレルギー.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allergies: Vec<Item<Allergy>>,
    /// 現在の医療・処置.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current_treatments: Vec<Item<CurrentTreatment>>,
    /// 日常生活状態.
    #[serde(default, skip_serializing_if = "is_default")]
    pub adl: Adl,
    /// 障害者医療.
    #[serde(default, skip_serializing_if = "is_default")]
    pub disability: Disability,
    /// 介護保険 (要介護度).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub care_level: Option<Item<CareLevel>>,
    /// 障害情報.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub impairments: Vec<Item<Impairment>>,
    /// 認知自立度.
    #[serde(default, skip_serializing_if = "is_default")]
    pub dementia: Dementia,
    /// 行動の特徴.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<Item<Behaviour>>,
    /// 搬送先病院に希望する医療 (choices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_care_wishes: Option<Item<Vec<EmergencyCareWish>>>,
    /// ACP（人生会議）の記録 (free text, new in Tobiume-net plus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acp: Option<Item<String>>,
    /// 患者の意向 (about their information).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub information_wishes: Option<Item<InformationWishes>>,
    /// 備考 (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<Item<String>>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Tobiume-net keeps at most 5 main diagnoses (`docs/domain.md` §1.1).
pub const MAX_MAIN_DIAGNOSES: usize = 5;
/// Highest HDS-R / MMSE score.
pub const MAX_COGNITIVE_SCORE: u8 = 30;

struct Checker {
    errors: Vec<RegistrationError>,
}

impl Checker {
    fn text(&mut self, path: &str, s: &str) {
        if s.trim().is_empty() {
            self.errors.push(RegistrationError::invalid_model(
                path,
                "must not be empty or blank",
            ));
        } else if s.trim() != s {
            self.errors.push(RegistrationError::invalid_model(
                path,
                "must not start or end with white space",
            ));
        }
    }
    fn opt(&mut self, path: &str, s: &Option<String>) {
        if let Some(s) = s {
            self.text(path, s);
        }
    }
    fn meta(&mut self, path: &str, m: &ItemMeta) {
        self.text(&format!("{path}.meta.author.name"), &m.author.name);
        self.opt(&format!("{path}.meta.author.facility"), &m.author.facility);
    }
    fn facility(&mut self, path: &str, f: &Item<Facility>) {
        self.meta(path, &f.meta);
        self.text(&format!("{path}.value.name"), &f.value.name);
        self.opt(&format!("{path}.value.code"), &f.value.code);
        self.opt(&format!("{path}.value.phone"), &f.value.phone);
        self.opt(&format!("{path}.value.address"), &f.value.address);
    }
    fn professional(&mut self, path: &str, p: &Item<Professional>) {
        self.meta(path, &p.meta);
        self.text(&format!("{path}.value.name"), &p.value.name);
        self.opt(&format!("{path}.value.nameKana"), &p.value.name_kana);
        self.opt(&format!("{path}.value.phone"), &p.value.phone);
    }
    fn name(&mut self, path: &str, n: &Item<PersonName>) {
        self.meta(path, &n.meta);
        self.text(&format!("{path}.value.family"), &n.value.family);
        self.opt(&format!("{path}.value.given"), &n.value.given);
        if n.value.family.contains([' ', '\u{3000}']) {
            self.errors.push(RegistrationError::invalid_model(
                &format!("{path}.value.family"),
                "must not contain spaces (put the given name in `given`)",
            ));
        }
    }
    fn free_text(&mut self, path: &str, t: &Option<Item<String>>) {
        if let Some(t) = t {
            self.meta(path, &t.meta);
            self.text(&format!("{path}.value"), &t.value);
        }
    }
    fn assessment<L>(&mut self, path: &str, a: &Option<Item<Assessment<L>>>) {
        if let Some(a) = a {
            self.meta(path, &a.meta);
            self.opt(&format!("{path}.value.note"), &a.value.note);
        }
    }
    fn plain<T>(&mut self, path: &str, a: &Option<Item<T>>) {
        if let Some(a) = a {
            self.meta(path, &a.meta);
        }
    }
    fn score(&mut self, path: &str, s: &Option<Item<CognitiveScore>>) {
        if let Some(s) = s {
            self.meta(path, &s.meta);
            if s.value.score > MAX_COGNITIVE_SCORE {
                self.errors.push(RegistrationError::invalid_model(
                    &format!("{path}.value.score"),
                    "must be 0-30",
                ));
            }
        }
    }
}

impl Registration {
    /// Checks what serde cannot: every text non-empty and without surrounding white space, family names
    /// without spaces, at most [`MAX_MAIN_DIAGNOSES`] main diagnoses, HDS-R / MMSE 0–30, behaviour and
    /// information wishes not empty, emergency-care wishes at least one choice.
    ///
    /// Errors: every problem as [`RegistrationError::InvalidModel`] with the camelCase JSON path (e.g.
    /// `mainDiagnoses`, `demographics.nameKana.value.family`); messages never contain the values.
    pub fn validate(&self) -> Result<(), Vec<RegistrationError>> {
        let mut c = Checker { errors: Vec::new() };
        let d = &self.demographics;
        c.name("demographics.nameKanji", &d.name_kanji);
        c.name("demographics.nameKana", &d.name_kana);
        c.meta("demographics.birthDate", &d.birth_date.meta);
        c.meta("demographics.sex", &d.sex.meta);
        if let Some(a) = &d.address {
            c.meta("demographics.address", &a.meta);
            c.text("demographics.address.value.text", &a.value.text);
            c.opt(
                "demographics.address.value.postalCode",
                &a.value.postal_code,
            );
        }
        for (i, p) in d.phones.iter().enumerate() {
            c.meta(&format!("demographics.phones[{i}]"), &p.meta);
            c.text(
                &format!("demographics.phones[{i}].value.number"),
                &p.value.number,
            );
        }
        let r = &self.registration;
        c.facility("registration.registeringClinic", &r.registering_clinic);
        for (path, f) in [
            (
                "registration.emergencyReferralHospital",
                &r.emergency_referral_hospital,
            ),
            ("registration.careFacility", &r.care_facility),
            (
                "registration.visitingNurseStation",
                &r.visiting_nurse_station,
            ),
            (
                "registration.homeCareSupportOffice",
                &r.home_care_support_office,
            ),
        ] {
            if let Some(f) = f {
                c.facility(path, f);
            }
        }
        for (path, p) in [
            ("registration.attendingDoctor", &r.attending_doctor),
            ("registration.visitingNurse", &r.visiting_nurse),
            ("registration.careManager", &r.care_manager),
        ] {
            if let Some(p) = p {
                c.professional(path, p);
            }
        }
        if let Some(ins) = &r.insurance {
            c.meta("registration.insurance", &ins.meta);
            c.text("registration.insurance.value.number", &ins.value.number);
            c.opt(
                "registration.insurance.value.insurerNumber",
                &ins.value.insurer_number,
            );
            c.opt("registration.insurance.value.symbol", &ins.value.symbol);
            c.opt("registration.insurance.value.branch", &ins.value.branch);
        }
        c.plain("registration.residenceType", &r.residence_type);
        for (i, e) in r.emergency_contacts.iter().enumerate() {
            let p = format!("registration.emergencyContacts[{i}]");
            c.meta(&p, &e.meta);
            c.text(&format!("{p}.value.name"), &e.value.name);
            c.opt(
                &format!("{p}.value.relationshipText"),
                &e.value.relationship_text,
            );
            for (j, ph) in e.value.phones.iter().enumerate() {
                c.text(&format!("{p}.value.phones[{j}].number"), &ph.number);
            }
        }
        if self.main_diagnoses.len() > MAX_MAIN_DIAGNOSES {
            c.errors.push(RegistrationError::invalid_model(
                "mainDiagnoses",
                "at most 5 main diagnoses (put more into history)",
            ));
        }
        for (i, dx) in self.main_diagnoses.iter().enumerate() {
            let p = format!("mainDiagnoses[{i}]");
            c.meta(&p, &dx.meta);
            c.text(&format!("{p}.value.name"), &dx.value.name);
            if let Some(code) = &dx.value.code {
                c.text(&format!("{p}.value.code.code"), &code.code);
            }
        }
        c.free_text("history", &self.history);
        for (i, rx) in self.prescriptions.iter().enumerate() {
            let p = format!("prescriptions[{i}]");
            c.meta(&p, &rx.meta);
            c.text(&format!("{p}.value.drug"), &rx.value.drug);
            c.opt(&format!("{p}.value.dosage"), &rx.value.dosage);
            if let Some(code) = &rx.value.code {
                c.text(&format!("{p}.value.code.code"), &code.code);
            }
        }
        c.free_text("prescriptionText", &self.prescription_text);
        for (i, x) in self.contraindicated_drugs.iter().enumerate() {
            let p = format!("contraindicatedDrugs[{i}]");
            c.meta(&p, &x.meta);
            c.text(&format!("{p}.value.drug"), &x.value.drug);
            c.opt(&format!("{p}.value.reason"), &x.value.reason);
            if let Some(code) = &x.value.code {
                c.text(&format!("{p}.value.code.code"), &code.code);
            }
        }
        for (i, a) in self.allergies.iter().enumerate() {
            c.meta(&format!("allergies[{i}]"), &a.meta);
            c.opt(&format!("allergies[{i}].value.detail"), &a.value.detail);
        }
        for (i, t) in self.current_treatments.iter().enumerate() {
            c.meta(&format!("currentTreatments[{i}]"), &t.meta);
            c.opt(
                &format!("currentTreatments[{i}].value.detail"),
                &t.value.detail,
            );
        }
        c.assessment("adl.eating", &self.adl.eating);
        c.assessment("adl.feedingRoute", &self.adl.feeding_route);
        c.assessment("adl.foodForm", &self.adl.food_form);
        c.assessment("adl.excretion", &self.adl.excretion);
        c.assessment("adl.mobility", &self.adl.mobility);
        c.assessment("adl.breathing", &self.adl.breathing);
        c.plain("disability.physical", &self.disability.physical);
        c.plain("disability.mental", &self.disability.mental);
        c.plain("disability.rehabilitation", &self.disability.rehabilitation);
        c.plain("careLevel", &self.care_level);
        for (i, m) in self.impairments.iter().enumerate() {
            c.meta(&format!("impairments[{i}]"), &m.meta);
            c.opt(&format!("impairments[{i}].value.note"), &m.value.note);
        }
        c.plain("dementia.level", &self.dementia.level);
        c.score("dementia.hdsR", &self.dementia.hds_r);
        c.score("dementia.mmse", &self.dementia.mmse);
        if let Some(b) = &self.behaviour {
            c.meta("behaviour", &b.meta);
            c.opt("behaviour.value.note", &b.value.note);
            if b.value.traits.is_empty() && b.value.note.is_none() {
                c.errors.push(RegistrationError::invalid_model(
                    "behaviour.value",
                    "needs at least one trait or a note",
                ));
            }
        }
        if let Some(w) = &self.emergency_care_wishes {
            c.meta("emergencyCareWishes", &w.meta);
            if w.value.is_empty() {
                c.errors.push(RegistrationError::invalid_model(
                    "emergencyCareWishes.value",
                    "needs at least one choice",
                ));
            }
        }
        c.free_text("acp", &self.acp);
        if let Some(w) = &self.information_wishes {
            c.meta("informationWishes", &w.meta);
            c.opt("informationWishes.value.text", &w.value.text);
            if w.value.sharing.is_none() && w.value.text.is_none() {
                c.errors.push(RegistrationError::invalid_model(
                    "informationWishes.value",
                    "needs sharing or text",
                ));
            }
        }
        c.free_text("remarks", &self.remarks);
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(c.errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_dates() {
        for ok in ["2026", "2026-07", "2026-07-01"] {
            assert!(is_fhir_date(ok), "{ok}");
            assert!(is_fhir_date_time(ok), "{ok}");
        }
        for bad in [
            "",
            "0000",
            "2026-13",
            "2026-07-32",
            "26-07-01",
            "2026/07/01",
            "2026-07-01T",
        ] {
            assert!(!is_fhir_date(bad), "{bad}");
        }
        for ok in [
            "2026-07-01T09:30:00+09:00",
            "2026-07-01T00:00:00Z",
            "2026-07-01T23:59:59.123-05:00",
        ] {
            assert!(is_fhir_date_time(ok), "{ok}");
        }
        for bad in [
            "2026-07-01T09:30:00",
            "2026-07-01T24:00:00Z",
            "2026-07-01T09:30+09:00",
            "2026-07T09:30:00Z",
            "2026-07-01T09:30:00.+09:00",
        ] {
            assert!(!is_fhir_date_time(bad), "{bad}");
        }
    }

    #[test]
    fn card_ids() {
        assert!(CardId::new("TB-0012345").is_some());
        assert!(CardId::new("").is_none());
        assert!(CardId::new("a b").is_none());
        assert!(CardId::new("x".repeat(33)).is_none());
    }
}
