//! SS-MIX2 標準化ストレージ (standardized storage): directory layout, file names, condition flags,
//! データ種別 (data types) and version resolution.
//!
//! Spec references (project notes `docs/reference/standards-jp.md` in the shared folder, quoting the
//! 「SS-MIX2 標準化ストレージ 構成の説明と構築ガイドライン」 via nhoHQ/SSMIX2DataTestingTool,
//! yuakagi/ssmixtwins and kuenishi/meddatum):
//! * §3.1 directory layout `<root>/<pid[0:3]>/<pid[3:6]>/<pid>/<診療日 YYYYMMDD | "-">/<データ種別>/<file>`
//!   → [`StorageFile`], [`walk`], [`walk_patients`];
//! * §3.2 file name `<患者ID>_<診療日|->_<データ種別>_<オーダNo>_<発生日時 17桁>_<診療科|->_<フラグ>`
//!   → [`FileName`];
//! * §3.3 condition flag → [`ConditionFlag`], and the JAMI ssmix2-to-fhir use case
//!   (`input/pagecontent/040_usecases.md` 「コンディションフラグとインタラクション」: 0 → delete,
//!   1 → create/update, 2 → delete) → [`resolve_versions`];
//! * §3.4 data type ↔ HL7 v2.5 message → [`DataType`].
//!
//! Nothing in this module reads file *contents*; identity checks against PID-3 belong to `mapping`.
//! Error messages may contain file paths (which contain patient IDs, acceptable in a per-file operator
//! report) but never names, birth dates or other message content.

pub mod fuzzing;
pub mod synth;

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

// ---------------------------------------------------------------------------------------------
// データ種別
// ---------------------------------------------------------------------------------------------

/// SS-MIX2 データ種別 (data type), the third part of a file name and the name of the directory under
/// the 診療日 directory (standards-jp.md §3.1, §3.4).
///
/// The known types of the SS-MIX2 guideline have their own variant; any other syntactically valid
/// type (`[A-Z0-9]{2,5}` optionally followed by `-` and 1–3 alphanumerics, e.g. a local `ZZZ-01`) is
/// kept as [`DataType::Other`] so a storage with local extensions can still be walked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // variant names are the data type strings; see `as_str` and the table there
pub enum DataType {
    Adt00,
    Adt01,
    Adt12,
    Adt21,
    Adt22,
    Adt31,
    Adt32,
    Adt41,
    Adt42,
    Adt51,
    Adt52,
    Adt61,
    Ppr01,
    Omd,
    Omp01,
    Omp02,
    Omp11,
    Omp12,
    Oml01,
    Oml02,
    Oml11,
    Oml12,
    Omg01,
    Omg02,
    Omg03,
    Omg11,
    Omg12,
    Omg13,
    /// A data type not in the SS-MIX2 guideline table (local extension); the exact string.
    Other(String),
}

/// The known data types with their strings, in guideline order (standards-jp.md §3.4).
const KNOWN_TYPES: &[(DataType, &str)] = &[
    (DataType::Adt00, "ADT-00"),
    (DataType::Adt01, "ADT-01"),
    (DataType::Adt12, "ADT-12"),
    (DataType::Adt21, "ADT-21"),
    (DataType::Adt22, "ADT-22"),
    (DataType::Adt31, "ADT-31"),
    (DataType::Adt32, "ADT-32"),
    (DataType::Adt41, "ADT-41"),
    (DataType::Adt42, "ADT-42"),
    (DataType::Adt51, "ADT-51"),
    (DataType::Adt52, "ADT-52"),
    (DataType::Adt61, "ADT-61"),
    (DataType::Ppr01, "PPR-01"),
    (DataType::Omd, "OMD"),
    (DataType::Omp01, "OMP-01"),
    (DataType::Omp02, "OMP-02"),
    (DataType::Omp11, "OMP-11"),
    (DataType::Omp12, "OMP-12"),
    (DataType::Oml01, "OML-01"),
    (DataType::Oml02, "OML-02"),
    (DataType::Oml11, "OML-11"),
    (DataType::Oml12, "OML-12"),
    (DataType::Omg01, "OMG-01"),
    (DataType::Omg02, "OMG-02"),
    (DataType::Omg03, "OMG-03"),
    (DataType::Omg11, "OMG-11"),
    (DataType::Omg12, "OMG-12"),
    (DataType::Omg13, "OMG-13"),
];

/// A string that is not a syntactically valid SS-MIX2 データ種別.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an SS-MIX2 data type (expected e.g. ADT-00, OMD, OMP-01; SS-MIX2 §3.4)")]
pub struct InvalidDataType;

impl DataType {
    /// All data types of the SS-MIX2 guideline table (standards-jp.md §3.4), in table order.
    pub fn known() -> impl Iterator<Item = DataType> {
        KNOWN_TYPES.iter().map(|(t, _)| t.clone())
    }

    /// The data type string as used in file and directory names, e.g. `"OMP-01"`, `"OMD"`.
    pub fn as_str(&self) -> &str {
        match self {
            DataType::Other(s) => s,
            known => KNOWN_TYPES
                .iter()
                .find(|(t, _)| t == known)
                .map(|(_, s)| *s)
                .unwrap_or(""),
        }
    }

    /// Parses a data type string (exact, case-sensitive: `ADT-00`, not `adt-00`).
    ///
    /// Errors: [`InvalidDataType`] when the string is not `[A-Z0-9]{2,5}(-[A-Z0-9]{1,3})?`.
    pub fn parse(s: &str) -> Result<DataType, InvalidDataType> {
        if let Some((t, _)) = KNOWN_TYPES.iter().find(|(_, name)| *name == s) {
            return Ok(t.clone());
        }
        if is_data_type_like(s) {
            Ok(DataType::Other(s.to_owned()))
        } else {
            Err(InvalidDataType)
        }
    }

    /// Whether this is one of the guideline's data types (not [`DataType::Other`]).
    pub fn is_known(&self) -> bool {
        !matches!(self, DataType::Other(_))
    }

    /// The HL7 v2.5 message type and trigger event (MSH-9.1, MSH-9.2) a file of this type normally
    /// carries (standards-jp.md §3.4; ✓ = confirmed by the MSH-9 of the nhoHQ sample files), e.g.
    /// `ADT-00 → ("ADT","A08")`, `OMP-01 → ("RDE","O11")`, `OML-11 → ("OUL","R22")`,
    /// `OMG-13 → ("ORU","R01")`. `None` for OML-02/OML-12 (unverified) and [`DataType::Other`].
    /// Cancel triggers are in [`DataType::cancel_message`].
    pub fn expected_message(&self) -> Option<(&'static str, &'static str)> {
        use DataType::*;
        Some(match self {
            Adt00 => ("ADT", "A08"),
            Adt01 => ("ADT", "A54"),
            Adt12 => ("ADT", "A04"),
            Adt21 => ("ADT", "A14"),
            Adt22 => ("ADT", "A01"),
            Adt31 => ("ADT", "A21"),
            Adt32 => ("ADT", "A22"),
            Adt41 => ("ADT", "A15"),
            Adt42 => ("ADT", "A02"),
            Adt51 => ("ADT", "A16"),
            Adt52 => ("ADT", "A03"),
            Adt61 => ("ADT", "A60"),
            Ppr01 => ("PPR", "ZD1"),
            Omd => ("OMD", "O03"),
            Omp01 | Omp02 => ("RDE", "O11"),
            Omp11 | Omp12 => ("RAS", "O17"),
            Oml01 => ("OML", "O33"),
            Oml11 => ("OUL", "R22"),
            Omg01 | Omg02 | Omg03 => ("OMG", "O19"),
            Omg11 | Omg12 => ("OMI", "Z23"),
            Omg13 => ("ORU", "R01"),
            Oml02 | Oml12 | Other(_) => return None,
        })
    }

    /// The HL7 v2.5 cancel message (MSH-9.1, MSH-9.2) for ADT data types that have one
    /// (standards-jp.md §3.4 "cancel" column): ADT-00 → A23, ADT-01 → A55, ADT-21 → A27,
    /// ADT-22 → A11, ADT-31 → A52, ADT-32 → A53, ADT-41 → A26, ADT-42 → A12, ADT-51 → A25,
    /// ADT-52 → A13. `None` otherwise (order types cancel via ORC-1 = CA, not via MSH-9).
    pub fn cancel_message(&self) -> Option<(&'static str, &'static str)> {
        use DataType::*;
        let trigger = match self {
            Adt00 => "A23",
            Adt01 => "A55",
            Adt21 => "A27",
            Adt22 => "A11",
            Adt31 => "A52",
            Adt32 => "A53",
            Adt41 => "A26",
            Adt42 => "A12",
            Adt51 => "A25",
            Adt52 => "A13",
            _ => return None,
        };
        Some(("ADT", trigger))
    }

    /// Whether MSH-9 (`msg_type`, `trigger`) is acceptable for a file of this data type: the
    /// [`expected_message`](Self::expected_message) or the [`cancel_message`](Self::cancel_message).
    /// Always `true` when the type has no known message (OML-02/12, [`DataType::Other`]).
    pub fn accepts_message(&self, msg_type: &str, trigger: &str) -> bool {
        match self.expected_message() {
            None => true,
            Some(m) => m == (msg_type, trigger) || self.cancel_message() == Some((msg_type, trigger)),
        }
    }

    /// Whether files of this type live under the 診療日 directory `-` (standards-jp.md §3.1):
    /// ADT-00 (患者基本), ADT-01 (担当医; per meddatum's "static" list), ADT-61 (アレルギー) and
    /// PPR-01 (病名).
    pub fn is_date_independent(&self) -> bool {
        matches!(self, DataType::Adt00 | DataType::Adt01 | DataType::Adt61 | DataType::Ppr01)
    }

    /// Infers the data type from MSH-9 (`msg_type`, `trigger`) when the mapping is unique
    /// (e.g. `OMD^O03` → OMD, `ADT^A60` → ADT-61, `ORU^R01` → OMG-13). Ambiguous messages pick the
    /// first type in guideline order (`RDE^O11` → OMP-01, `RAS^O17` → OMP-11, `OMG^O19` → OMG-01,
    /// `OMI^Z23` → OMG-11). `None` when no guideline type carries that message.
    pub fn from_message(msg_type: &str, trigger: &str) -> Option<DataType> {
        DataType::known().find(|t| t.accepts_message(msg_type, trigger) && t.expected_message().is_some())
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataType {
    type Err = InvalidDataType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DataType::parse(s)
    }
}

fn is_data_type_like(s: &str) -> bool {
    let (head, tail) = match s.split_once('-') {
        Some((h, t)) => (h, Some(t)),
        None => (s, None),
    };
    let alnum_upper = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit();
    (2..=5).contains(&head.len())
        && head.chars().all(alnum_upper)
        && head.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && tail.is_none_or(|t| (1..=3).contains(&t.len()) && t.chars().all(alnum_upper))
}

// ---------------------------------------------------------------------------------------------
// Condition flag
// ---------------------------------------------------------------------------------------------

/// SS-MIX2 コンディションフラグ, the last part of a file name (standards-jp.md §3.3).
///
/// JAMI ssmix2-to-fhir (040_usecases.md) maps 0 → FHIR delete (order control CA), 1 → create/update
/// (NW), 2 → delete (CA). The exact SS-MIX2 semantics of 0 vs 2 are unverified (standards-jp.md §7.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConditionFlag {
    /// `0` 無効 — an invalidated (updated-over or deleted) file.
    Invalid = 0,
    /// `1` 有効 — the valid, current file.
    Valid = 1,
    /// `2` 過去履歴 — past history.
    PastHistory = 2,
}

/// A condition flag that is not `0`, `1` or `2`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition flag must be 0, 1 or 2 (SS-MIX2 §3.3)")]
pub struct InvalidConditionFlag;

impl ConditionFlag {
    /// Parses the flag part of a file name: exactly one of `"0"`, `"1"`, `"2"`.
    ///
    /// Errors: [`InvalidConditionFlag`] for anything else (including `"01"`, `""`, `"3"`).
    pub fn parse(s: &str) -> Result<ConditionFlag, InvalidConditionFlag> {
        match s {
            "0" => Ok(ConditionFlag::Invalid),
            "1" => Ok(ConditionFlag::Valid),
            "2" => Ok(ConditionFlag::PastHistory),
            _ => Err(InvalidConditionFlag),
        }
    }

    /// The flag digit as in file names (`'0'`, `'1'`, `'2'`).
    pub fn as_char(self) -> char {
        match self {
            ConditionFlag::Invalid => '0',
            ConditionFlag::Valid => '1',
            ConditionFlag::PastHistory => '2',
        }
    }

    /// Whether JAMI ssmix2-to-fhir turns a file with this flag into a FHIR *delete* (0 and 2).
    pub fn is_delete(self) -> bool {
        self != ConditionFlag::Valid
    }
}

// ---------------------------------------------------------------------------------------------
// File name
// ---------------------------------------------------------------------------------------------

/// Which of the seven `_`-separated parts of an SS-MIX2 file name (standards-jp.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileNamePart {
    /// Part 1, 患者ID.
    PatientId,
    /// Part 2, 診療日 (`YYYYMMDD` or `-`).
    CareDate,
    /// Part 3, データ種別.
    DataType,
    /// Part 4, オーダNo.
    OrderNumber,
    /// Part 5, 発生日時 (`YYYYMMDDHHMMSSfff`, 17 digits).
    Timestamp,
    /// Part 6, 診療科コード (or `-`).
    Department,
    /// Part 7, コンディションフラグ.
    ConditionFlag,
}

impl fmt::Display for FileNamePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileNamePart::PatientId => "part 1 (patient ID)",
            FileNamePart::CareDate => "part 2 (care date 診療日)",
            FileNamePart::DataType => "part 3 (data type データ種別)",
            FileNamePart::OrderNumber => "part 4 (order number)",
            FileNamePart::Timestamp => "part 5 (timestamp 発生日時)",
            FileNamePart::Department => "part 6 (department 診療科)",
            FileNamePart::ConditionFlag => "part 7 (condition flag)",
        })
    }
}

/// Why a file name is not an SS-MIX2 file name (standards-jp.md §3.2). The offending part's value
/// is included (file names carry patient IDs and dates of care, never names).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    /// The name is not valid UTF-8.
    #[error("file name is not valid UTF-8")]
    NotUtf8,
    /// The name does not have exactly seven `_`-separated parts.
    #[error("file name has {found} '_'-separated part(s), SS-MIX2 §3.2 requires 7")]
    PartCount {
        /// Number of parts found.
        found: usize,
    },
    /// One part is malformed.
    #[error("{part} {value:?} is invalid: {reason}")]
    Part {
        /// Which part.
        part: FileNamePart,
        /// The part as found (truncated to 40 characters).
        value: String,
        /// What is expected.
        reason: &'static str,
    },
}

/// A parsed SS-MIX2 file name
/// `<患者ID>_<診療日|->_<データ種別>_<オーダNo>_<発生日時 17桁>_<診療科|->_<フラグ>`
/// (standards-jp.md §3.2), e.g. `9999013_20110701_OMP-01_000000011000185_20110701224603984_01_1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileName {
    /// 患者ID: 1–20 ASCII alphanumerics (the samples use 7 or 10 digits; JAMI allows 15).
    pub patient_id: String,
    /// 診療日 `YYYYMMDD` (a valid calendar date), `None` for `-` (date-independent data).
    pub care_date: Option<String>,
    /// データ種別.
    pub data_type: DataType,
    /// オーダNo: 1–20 ASCII alphanumerics (15 digits in the guideline; the real sample has a
    /// 13-digit one; `999999999999999` for non-order data).
    pub order_number: String,
    /// 発生日時 `YYYYMMDDHHMMSSfff` (17 digits, valid date and time of day); string order = time order.
    pub timestamp: String,
    /// 診療科コード (使用者定義表 0069, 1–8 ASCII alphanumerics; the guideline says up to 3),
    /// `None` for `-`.
    pub department: Option<String>,
    /// コンディションフラグ.
    pub condition: ConditionFlag,
}

fn part_err(part: FileNamePart, value: &str, reason: &'static str) -> FileNameError {
    FileNameError::Part { part, value: value.chars().take(40).collect(), reason }
}

fn is_alnum(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Validates `YYYYMMDD` as a calendar date.
fn valid_date8(s: &str) -> bool {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let y: i32 = s[0..4].parse().unwrap_or(0);
    let m: u8 = s[4..6].parse().unwrap_or(0);
    let d: u8 = s[6..8].parse().unwrap_or(0);
    let Ok(month) = time::Month::try_from(m) else { return false };
    y >= 1 && time::Date::from_calendar_date(y, month, d).is_ok()
}

fn valid_timestamp17(s: &str) -> bool {
    if s.len() != 17 || !s.bytes().all(|b| b.is_ascii_digit()) || !valid_date8(&s[..8]) {
        return false;
    }
    let hh: u8 = s[8..10].parse().unwrap_or(99);
    let mm: u8 = s[10..12].parse().unwrap_or(99);
    let ss: u8 = s[12..14].parse().unwrap_or(99);
    hh < 24 && mm < 60 && ss < 61
}

impl FileName {
    /// Parses a file name (the last path component, no directories).
    ///
    /// Errors: [`FileNameError::PartCount`] unless there are exactly 7 `_`-separated parts;
    /// [`FileNameError::Part`] naming the first malformed part: patient ID not 1–20 ASCII
    /// alphanumerics; 診療日 neither `-` nor a valid `YYYYMMDD`; data type invalid
    /// ([`DataType::parse`]); order number not 1–20 ASCII alphanumerics; timestamp not 17 digits of a
    /// valid date-time; department neither `-` nor 1–8 ASCII alphanumerics; condition flag not
    /// `0`/`1`/`2`.
    pub fn parse(name: &str) -> Result<FileName, FileNameError> {
        let parts: Vec<&str> = name.split('_').collect();
        if parts.len() != 7 {
            return Err(FileNameError::PartCount { found: parts.len() });
        }
        use FileNamePart as P;
        let [pid, date, dtype, order, ts, dept, flag] =
            [parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6]];
        if !is_alnum(pid, 20) {
            return Err(part_err(P::PatientId, pid, "expected 1-20 ASCII letters/digits"));
        }
        let care_date = if date == "-" {
            None
        } else if valid_date8(date) {
            Some(date.to_owned())
        } else {
            return Err(part_err(P::CareDate, date, "expected '-' or a valid date YYYYMMDD"));
        };
        let data_type = DataType::parse(dtype)
            .map_err(|_| part_err(P::DataType, dtype, "expected a data type like ADT-00, OMD, OMP-01"))?;
        if !is_alnum(order, 20) {
            return Err(part_err(P::OrderNumber, order, "expected 1-20 ASCII letters/digits"));
        }
        if !valid_timestamp17(ts) {
            return Err(part_err(P::Timestamp, ts, "expected 17 digits YYYYMMDDHHMMSSfff"));
        }
        let department = if dept == "-" {
            None
        } else if is_alnum(dept, 8) {
            Some(dept.to_owned())
        } else {
            return Err(part_err(P::Department, dept, "expected '-' or 1-8 ASCII letters/digits"));
        };
        let condition =
            ConditionFlag::parse(flag).map_err(|_| part_err(P::ConditionFlag, flag, "expected 0, 1 or 2"))?;
        Ok(FileName {
            patient_id: pid.to_owned(),
            care_date,
            data_type,
            order_number: order.to_owned(),
            timestamp: ts.to_owned(),
            department,
            condition,
        })
    }

    /// The 診療日 as in names and directories: `YYYYMMDD` or `-`.
    pub fn care_date_str(&self) -> &str {
        self.care_date.as_deref().unwrap_or("-")
    }

    /// The 発生日時 as a date-time (local time, no zone — SS-MIX2 timestamps are JST wall-clock).
    pub fn timestamp_datetime(&self) -> Option<time::PrimitiveDateTime> {
        let t = &self.timestamp;
        let n = |r: std::ops::Range<usize>| t.get(r).and_then(|s| s.parse::<u32>().ok());
        let date = time::Date::from_calendar_date(
            n(0..4)? as i32,
            time::Month::try_from(n(4..6)? as u8).ok()?,
            n(6..8)? as u8,
        )
        .ok()?;
        let time = time::Time::from_hms_milli(
            n(8..10)? as u8,
            n(10..12)? as u8,
            n(12..14)?.min(59) as u8,
            n(14..17)? as u16,
        )
        .ok()?;
        Some(time::PrimitiveDateTime::new(date, time))
    }

    /// The version group this file belongs to (see [`resolve_versions`]).
    pub fn version_key(&self) -> VersionKey {
        VersionKey {
            patient_id: self.patient_id.clone(),
            care_date: self.care_date.clone(),
            data_type: self.data_type.clone(),
            order_number: self.order_number.clone(),
        }
    }

    /// JAMI logical-id stem `<pid>.<診療日|->.<データ種別>.<オーダNo>.<発生日時>` (ssmix2-to-fhir
    /// 010_common_specifications.md 「ロジカルIDの採番」; matches `[A-Za-z0-9\-\.]{1,64}` for IDs of
    /// ≤ 15 characters).
    pub fn jami_id_stem(&self) -> String {
        format!(
            "{}.{}.{}.{}.{}",
            self.patient_id,
            self.care_date_str(),
            self.data_type,
            self.order_number,
            self.timestamp
        )
    }
}

impl fmt::Display for FileName {
    /// Renders the canonical file name (inverse of [`FileName::parse`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}_{}_{}_{}_{}_{}",
            self.patient_id,
            self.care_date_str(),
            self.data_type,
            self.order_number,
            self.timestamp,
            self.department.as_deref().unwrap_or("-"),
            self.condition.as_char()
        )
    }
}

impl FromStr for FileName {
    type Err = FileNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FileName::parse(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Storage file and placement
// ---------------------------------------------------------------------------------------------

/// A way in which a file's location disagrees with its name (standards-jp.md §3.1). Any placement
/// problem makes the file a per-file error for conversion ([`resolve_versions`] marks it
/// [`VersionStatus::Misplaced`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementProblem {
    /// The file is not at `<pid>/<date>/<type>/` depth below the walked storage level (e.g. a file
    /// directly in a patient directory). `depth` = components between the storage root and the file
    /// (6 for a well-placed file), when known.
    NotInDataTypeDirectory {
        /// Depth below the (inferred) storage root, 6 when well placed.
        depth: usize,
    },
    /// 患者ID in the name ≠ patient directory name.
    PatientIdMismatch {
        /// The patient directory name.
        dir: String,
        /// The patient ID in the file name.
        name: String,
    },
    /// 診療日 in the name ≠ date directory name.
    CareDateMismatch {
        /// The date directory name.
        dir: String,
        /// The date in the file name (`-` when date-independent).
        name: String,
    },
    /// データ種別 in the name ≠ data type directory name.
    DataTypeMismatch {
        /// The data type directory name.
        dir: String,
        /// The data type in the file name.
        name: String,
    },
    /// The two prefix directories are not `pid[0:3]/pid[3:6]` of the file name's patient ID.
    PrefixDirectories {
        /// Expected `pid[0:3]/pid[3:6]`.
        expected: String,
        /// Found `<dir>/<dir>`.
        found: String,
    },
    /// A date-independent type (ADT-00, ADT-61, PPR-01) has a 診療日 in its name, or a dated type has
    /// `-`. (ADT-01 is accepted either way: sources disagree.)
    DateDependence {
        /// The data type.
        data_type: String,
        /// The 診療日 part of the name.
        care_date: String,
    },
}

impl fmt::Display for PlacementProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementProblem::NotInDataTypeDirectory { depth } => write!(
                f,
                "file is {depth} level(s) below the storage root, SS-MIX2 §3.1 requires 6 (pid3/pid3/pid/date/type/file)"
            ),
            PlacementProblem::PatientIdMismatch { dir, name } => {
                write!(f, "patient ID {name:?} in the file name differs from the patient directory {dir:?}")
            }
            PlacementProblem::CareDateMismatch { dir, name } => {
                write!(f, "care date {name:?} in the file name differs from the date directory {dir:?}")
            }
            PlacementProblem::DataTypeMismatch { dir, name } => {
                write!(f, "data type {name:?} in the file name differs from the data type directory {dir:?}")
            }
            PlacementProblem::PrefixDirectories { expected, found } => {
                write!(f, "patient prefix directories are {found:?}, expected {expected:?}")
            }
            PlacementProblem::DateDependence { data_type, care_date } => write!(
                f,
                "data type {data_type} with care date {care_date:?}: ADT-00/ADT-61/PPR-01 use '-', other types a date"
            ),
        }
    }
}

/// One file of an SS-MIX2 storage: its parsed name plus the directory components it was found under
/// (standards-jp.md §3.1 `root/pid[0:3]/pid[3:6]/pid/<YYYYMMDD|->/<data type>/<file>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageFile {
    /// Path of the file (absolute when produced by [`walk`]).
    pub path: PathBuf,
    /// The parsed file name.
    pub name: FileName,
    /// Name of the patient directory (3 levels above the file); empty if there is none.
    pub dir_patient_id: String,
    /// Name of the 診療日 directory (2 levels above the file); empty if there is none.
    pub dir_date: String,
    /// Name of the データ種別 directory (the parent); empty if there is none.
    pub dir_data_type: String,
    /// Disagreements between location and name; empty for a well-placed file.
    pub placement: Vec<PlacementProblem>,
}

fn component_name(p: Option<&Path>) -> String {
    p.and_then(|p| p.file_name()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `s[a..b]` by characters with Python slicing semantics (clamped).
fn char_slice(s: &str, a: usize, b: usize) -> String {
    s.chars().skip(a).take(b.saturating_sub(a)).collect()
}

impl StorageFile {
    /// Builds a storage file from a path whose last component is a valid file name, reading the
    /// directory components from the path's ancestors and checking placement (prefix directories
    /// included). Does not touch the file system.
    ///
    /// Errors: [`FileNameError`] if the last component is missing or not an SS-MIX2 file name.
    pub fn from_path(path: &Path) -> Result<StorageFile, FileNameError> {
        Self::from_path_at(path, Some(6), true)
    }

    /// `depth` = components between storage root and file when known (6 = well placed);
    /// `check_prefix` = whether the two prefix directories are part of the storage.
    fn from_path_at(path: &Path, depth: Option<usize>, check_prefix: bool) -> Result<StorageFile, FileNameError> {
        let file_name = path.file_name().ok_or(FileNameError::PartCount { found: 0 })?;
        let file_name = file_name.to_str().ok_or(FileNameError::NotUtf8)?;
        let name = FileName::parse(file_name)?;
        let anc = |n: usize| component_name(path.ancestors().nth(n));
        let dir_data_type = anc(1);
        let dir_date = anc(2);
        let dir_patient_id = anc(3);
        let mut placement = Vec::new();
        if let Some(d) = depth {
            if d != 6 {
                placement.push(PlacementProblem::NotInDataTypeDirectory { depth: d });
            }
        }
        if dir_patient_id != name.patient_id {
            placement.push(PlacementProblem::PatientIdMismatch {
                dir: dir_patient_id.clone(),
                name: name.patient_id.clone(),
            });
        }
        if dir_date != name.care_date_str() {
            placement.push(PlacementProblem::CareDateMismatch {
                dir: dir_date.clone(),
                name: name.care_date_str().to_owned(),
            });
        }
        if dir_data_type != name.data_type.as_str() {
            placement.push(PlacementProblem::DataTypeMismatch {
                dir: dir_data_type.clone(),
                name: name.data_type.as_str().to_owned(),
            });
        }
        if check_prefix {
            let pid = &name.patient_id;
            let (e1, e2) = (char_slice(pid, 0, 3), char_slice(pid, 3, 6));
            let (f1, f2) = (anc(5), anc(4));
            // For IDs shorter than 4 characters pid[3:6] is empty (layout unverified): only the first
            // prefix directory is checked then.
            let ok = f1 == e1 && (e2.is_empty() || f2 == e2);
            if !ok {
                placement.push(PlacementProblem::PrefixDirectories {
                    expected: format!("{e1}/{e2}"),
                    found: format!("{f1}/{f2}"),
                });
            }
        }
        let strict_independent =
            matches!(name.data_type, DataType::Adt00 | DataType::Adt61 | DataType::Ppr01);
        let dated_ok = match (&name.data_type, &name.care_date) {
            (DataType::Adt01 | DataType::Other(_), _) => true,
            (_, None) => strict_independent,
            (_, Some(_)) => !strict_independent,
        };
        if !dated_ok {
            placement.push(PlacementProblem::DateDependence {
                data_type: name.data_type.as_str().to_owned(),
                care_date: name.care_date_str().to_owned(),
            });
        }
        Ok(StorageFile { path: path.to_path_buf(), name, dir_patient_id, dir_date, dir_data_type, placement })
    }

    /// Whether the file is where its name says it should be (no [`PlacementProblem`]).
    pub fn is_well_placed(&self) -> bool {
        self.placement.is_empty()
    }

    /// A synthetic, well-placed storage file for `name` under `root` (path built per §3.1, nothing
    /// touched on disk). Used by tests, fuzzing and the synthesizer.
    pub fn synthetic(root: &Path, name: FileName) -> StorageFile {
        let path = storage_path(root, &name);
        StorageFile {
            path,
            dir_patient_id: name.patient_id.clone(),
            dir_date: name.care_date_str().to_owned(),
            dir_data_type: name.data_type.as_str().to_owned(),
            name,
            placement: Vec::new(),
        }
    }
}

/// The path of a file in a storage rooted at `root` (standards-jp.md §3.1):
/// `root/pid[0:3]/pid[3:6]/pid/<診療日|->/<データ種別>/<file name>`.
pub fn storage_path(root: &Path, name: &FileName) -> PathBuf {
    let pid = &name.patient_id;
    let mut p = root.join(char_slice(pid, 0, 3));
    let second = char_slice(pid, 3, 6);
    if !second.is_empty() {
        p.push(second);
    }
    p.push(pid);
    p.push(name.care_date_str());
    p.push(name.data_type.as_str());
    p.push(name.to_string());
    p
}

// ---------------------------------------------------------------------------------------------
// Walking
// ---------------------------------------------------------------------------------------------

/// What a path given to [`walk`] is, detected from its structure (standards-jp.md §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageLevel {
    /// A storage root (children are `pid[0:3]` directories) — also the fallback for unrecognised
    /// directories.
    Root,
    /// A first-level prefix directory `root/pid[0:3]`.
    Prefix1,
    /// A second-level prefix directory `root/pid[0:3]/pid[3:6]`.
    Prefix2,
    /// A patient directory. `with_prefix` = it sits under matching `pid[0:3]/pid[3:6]`
    /// directories (if not, e.g. a copied-out patient folder, prefixes are not checked).
    Patient {
        /// Whether the prefix directories exist and match.
        with_prefix: bool,
    },
    /// A 診療日 directory (`YYYYMMDD` or `-`) inside a patient directory.
    Date,
    /// A データ種別 directory inside a date directory.
    DataType,
    /// A single file.
    File,
}

impl StorageLevel {
    /// Number of path components between the storage root and this level (root 0 … file 6).
    pub fn depth(self) -> usize {
        match self {
            StorageLevel::Root => 0,
            StorageLevel::Prefix1 => 1,
            StorageLevel::Prefix2 => 2,
            StorageLevel::Patient { .. } => 3,
            StorageLevel::Date => 4,
            StorageLevel::DataType => 5,
            StorageLevel::File => 6,
        }
    }

    /// Whether the `pid[0:3]/pid[3:6]` directories above the patient directory are checked for files
    /// walked from `path` at this level: not for a patient folder outside a storage (no prefix
    /// directories above it).
    fn check_prefix(self, path: &Path) -> bool {
        let patient_dir = |up: usize| path.ancestors().nth(up).is_some_and(has_prefix_parents);
        match self {
            StorageLevel::Patient { with_prefix } => with_prefix,
            StorageLevel::Date => patient_dir(1),
            StorageLevel::DataType => patient_dir(2),
            StorageLevel::File => patient_dir(3),
            StorageLevel::Root | StorageLevel::Prefix1 | StorageLevel::Prefix2 => true,
        }
    }
}

fn is_date_dir_name(s: &str) -> bool {
    s == "-" || valid_date8(s)
}

fn has_prefix_parents(dir: &Path) -> bool {
    let name = component_name(Some(dir));
    if !is_alnum(&name, 20) {
        return false;
    }
    let p1 = component_name(dir.parent());
    let p0 = component_name(dir.parent().and_then(Path::parent));
    let (e0, e1) = (char_slice(&name, 0, 3), char_slice(&name, 3, 6));
    !e1.is_empty() && p1 == e1 && p0 == e0
}

fn sorted_children(dir: &Path) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type().is_ok_and(|t| t.is_dir())))
        .collect();
    v.sort();
    v
}

/// Detects which storage level `path` is (see [`StorageLevel`]), from its name, its ancestors'
/// names and (for prefix and patient directories) its children.
///
/// Errors: [`WalkError::Io`] if the path does not exist or cannot be inspected.
pub fn detect_level(path: &Path) -> Result<StorageLevel, WalkError> {
    let meta = std::fs::metadata(path).map_err(|e| WalkError::io(path, e))?;
    if !meta.is_dir() {
        return Ok(StorageLevel::File);
    }
    let name = component_name(Some(path));
    let parent = component_name(path.parent());
    if is_data_type_like(&name) && is_date_dir_name(&parent) {
        return Ok(StorageLevel::DataType);
    }
    if is_date_dir_name(&name) && path.parent().is_some_and(has_prefix_parents) {
        return Ok(StorageLevel::Date);
    }
    if has_prefix_parents(path) {
        return Ok(StorageLevel::Patient { with_prefix: true });
    }
    let children = sorted_children(path);
    let dirs: Vec<&str> = children.iter().filter(|(_, d)| *d).map(|(n, _)| n.as_str()).collect();
    if is_date_dir_name(&name) && !dirs.is_empty() && dirs.iter().all(|n| is_data_type_like(n)) {
        // A date directory of a patient folder without prefix directories.
        return Ok(StorageLevel::Date);
    }
    if !dirs.is_empty() && dirs.iter().all(|n| is_date_dir_name(n)) {
        return Ok(StorageLevel::Patient { with_prefix: false });
    }
    if name.chars().count() == 3 && !dirs.is_empty() {
        // Prefix2 if children are patient directories whose IDs start with parent+name.
        if dirs.iter().any(|c| has_prefix_parents(&path.join(c))) {
            return Ok(StorageLevel::Prefix2);
        }
        if dirs.iter().any(|c| {
            let sub = path.join(c);
            sorted_children(&sub).iter().any(|(g, d)| *d && has_prefix_parents(&sub.join(g)))
        }) {
            return Ok(StorageLevel::Prefix1);
        }
    }
    Ok(StorageLevel::Root)
}

/// A per-file or per-directory problem met while walking a storage. Walking continues after every
/// error; paths may contain patient IDs (operator report), never message content.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// A file or directory could not be read (missing, permissions, I/O).
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file inside a データ種別 directory does not have an SS-MIX2 file name.
    #[error("{path}: not an SS-MIX2 file name: {source}")]
    FileName {
        /// The file.
        path: PathBuf,
        /// What is wrong with the name.
        #[source]
        source: FileNameError,
    },
    /// (Only from [`walk_patients`]) an SS-MIX2 file lying outside any patient directory.
    #[error("{path}: SS-MIX2 file outside any patient directory")]
    OutsidePatientDirectory {
        /// The file.
        path: PathBuf,
    },
}

impl WalkError {
    fn io(path: &Path, source: std::io::Error) -> WalkError {
        WalkError::Io { path: path.to_path_buf(), source }
    }

    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            WalkError::Io { path, .. }
            | WalkError::FileName { path, .. }
            | WalkError::OutsidePatientDirectory { path } => path,
        }
    }
}

/// A file that was skipped because it is not part of the SS-MIX2 data (e.g. `LICENSE`, `INDEXDB`
/// exports, `.DS_Store`): it lies outside a データ種別 directory (or is hidden) and its name is not an
/// SS-MIX2 file name. Not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipNote {
    /// The skipped file.
    pub path: PathBuf,
    /// Why (constant text).
    pub reason: &'static str,
}

/// Streaming, sorted iterator over the files of a storage (see [`walk`]). Items are
/// `Result<StorageFile, WalkError>`; skipped non-SS-MIX2 files are collected in [`Walk::skipped`].
pub struct Walk {
    level: Result<StorageLevel, Option<WalkError>>,
    /// `components(start) - level depth`: subtracting it from an entry's component count gives the
    /// entry's depth below the (possibly virtual) storage root.
    root_components: isize,
    check_prefix: bool,
    inner: Option<walkdir::IntoIter>,
    skipped: Vec<SkipNote>,
}

impl Walk {
    /// The detected level of the walked path (`None` if the path could not be inspected).
    pub fn level(&self) -> Option<StorageLevel> {
        self.level.as_ref().ok().copied()
    }

    /// Non-SS-MIX2 files skipped so far (cleared by [`Walk::take_skipped`]).
    pub fn skipped(&self) -> &[SkipNote] {
        &self.skipped
    }

    /// Depth of `path` (an entry of this walk) below the storage root (6 for a well-placed file).
    fn depth_below_root(&self, path: &Path) -> isize {
        path.components().count() as isize - self.root_components
    }

    /// Takes the skip notes collected so far (keeps memory flat on huge trees).
    pub fn take_skipped(&mut self) -> Vec<SkipNote> {
        std::mem::take(&mut self.skipped)
    }
}

impl Iterator for Walk {
    type Item = Result<StorageFile, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        let level = match &mut self.level {
            Ok(l) => *l,
            Err(e) => return e.take().map(Err),
        };
        let inner = self.inner.as_mut()?;
        loop {
            let entry = match inner.next()? {
                Ok(e) => e,
                Err(e) => {
                    let path = e.path().map(Path::to_path_buf).unwrap_or_default();
                    let source = e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("directory loop (symbolic link)"));
                    return Some(Err(WalkError::Io { path, source }));
                }
            };
            if entry.file_type().is_dir() {
                continue;
            }
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy();
            let depth = level.depth() + entry.depth();
            if file_name.starts_with('.') {
                self.skipped.push(SkipNote { path: path.to_path_buf(), reason: "hidden file" });
                continue;
            }
            // A file is "in position" when it sits in a <date>/<type>/ directory at depth 6.
            let in_position = depth == 6
                && is_data_type_like(&component_name(path.parent()))
                && is_date_dir_name(&component_name(path.parent().and_then(Path::parent)));
            match StorageFile::from_path_at(path, Some(depth), self.check_prefix) {
                Ok(f) => return Some(Ok(f)),
                Err(source) if in_position => {
                    return Some(Err(WalkError::FileName { path: path.to_path_buf(), source }))
                }
                Err(_) => {
                    self.skipped.push(SkipNote {
                        path: path.to_path_buf(),
                        reason: "not an SS-MIX2 file name and not inside a data type directory",
                    });
                }
            }
        }
    }
}

/// Walks an SS-MIX2 storage (standards-jp.md §3.1) and yields every SS-MIX2 file, in sorted
/// (byte-wise file name) order, streaming (one directory listing in memory per level).
///
/// `path` may be a storage root, a prefix directory, one patient's directory, a 診療日 directory, a
/// データ種別 directory or one file; [`detect_level`] decides which. The path is canonicalised first
/// so directory components come from the real ancestors.
///
/// Items: `Ok(StorageFile)` for every file whose name parses (placement problems are inside);
/// `Err(WalkError::FileName)` for a file in a data type directory whose name does not parse;
/// `Err(WalkError::Io)` for unreadable entries (and once, if `path` does not exist). Files outside
/// data type directories whose names do not parse (e.g. `LICENSE`) and hidden files are skipped with
/// a [`SkipNote`]. Never panics.
pub fn walk(path: impl AsRef<Path>) -> Walk {
    let path = path.as_ref();
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match detect_level(&path) {
        Ok(level) => Walk {
            level: Ok(level),
            root_components: path.components().count() as isize - level.depth() as isize,
            check_prefix: level.check_prefix(&path),
            inner: Some(walkdir::WalkDir::new(&path).follow_links(false).sort_by_file_name().into_iter()),
            skipped: Vec::new(),
        },
        Err(e) => Walk { level: Err(Some(e)), root_components: 0, check_prefix: true, inner: None, skipped: Vec::new() },
    }
}

// ---------------------------------------------------------------------------------------------
// Patients and versions
// ---------------------------------------------------------------------------------------------

/// All files found in one patient directory (see [`walk_patients`]).
#[derive(Debug)]
pub struct PatientFiles {
    /// The patient directory.
    pub dir: PathBuf,
    /// The patient directory's name (the 患者ID the storage files it under).
    pub patient_id: String,
    /// Files with valid names, in walk order (misplaced ones included, see their `placement`).
    pub files: Vec<StorageFile>,
    /// Per-file errors inside this patient directory.
    pub errors: Vec<WalkError>,
}

impl PatientFiles {
    /// [`resolve_versions`] over this patient's files.
    pub fn resolve(&self) -> Vec<VersionDecision> {
        resolve_versions(&self.files)
    }
}

/// Iterator over patients (see [`walk_patients`]).
pub struct PatientWalk {
    walk: Walk,
    pending: Option<(Option<PathBuf>, Result<StorageFile, WalkError>)>,
}

impl PatientWalk {
    /// Skip notes collected by the underlying [`Walk`] so far.
    pub fn skipped(&self) -> &[SkipNote] {
        self.walk.skipped()
    }

    /// Takes the skip notes collected so far.
    pub fn take_skipped(&mut self) -> Vec<SkipNote> {
        self.walk.take_skipped()
    }

    /// The detected level of the walked path.
    pub fn level(&self) -> Option<StorageLevel> {
        self.walk.level()
    }

    /// The patient directory an item belongs to: the ancestor at depth 3 below the storage root.
    fn patient_dir(&self, item: &Result<StorageFile, WalkError>) -> Option<PathBuf> {
        let (path, is_file) = match item {
            Ok(f) => (f.path.as_path(), true),
            Err(WalkError::FileName { path, .. }) | Err(WalkError::OutsidePatientDirectory { path }) => {
                (path.as_path(), true)
            }
            Err(WalkError::Io { path, .. }) => (path.as_path(), false),
        };
        let d = self.walk.depth_below_root(path);
        if d >= 4 || (d == 3 && !is_file) {
            path.ancestors().nth((d - 3) as usize).map(Path::to_path_buf)
        } else {
            None
        }
    }

    fn next_item(&mut self) -> Option<(Option<PathBuf>, Result<StorageFile, WalkError>)> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        let item = self.walk.next()?;
        let dir = self.patient_dir(&item);
        Some((dir, item))
    }
}

impl Iterator for PatientWalk {
    type Item = Result<PatientFiles, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (dir, item) = self.next_item()?;
        let Some(dir) = dir else {
            return Some(Err(match item {
                Ok(f) => WalkError::OutsidePatientDirectory { path: f.path },
                Err(e) => e,
            }));
        };
        let mut group = PatientFiles {
            patient_id: component_name(Some(&dir)),
            dir,
            files: Vec::new(),
            errors: Vec::new(),
        };
        let push = |g: &mut PatientFiles, item: Result<StorageFile, WalkError>| match item {
            Ok(f) => g.files.push(f),
            Err(e) => g.errors.push(e),
        };
        push(&mut group, item);
        while let Some((d, item)) = self.next_item() {
            if d.as_deref() == Some(group.dir.as_path()) {
                push(&mut group, item);
            } else {
                self.pending = Some((d, item));
                break;
            }
        }
        Some(Ok(group))
    }
}

/// Streams an SS-MIX2 storage patient by patient (sorted by directory name), so a converter's memory
/// is proportional to the largest patient, not the corpus (standards-jp.md §3.1).
///
/// `path` is as for [`walk`]. Items: `Ok(PatientFiles)` per patient directory (its per-file errors
/// inside, misplaced files included with their [`PlacementProblem`]s); `Err(WalkError)` for problems
/// outside any patient directory (I/O errors there, or [`WalkError::OutsidePatientDirectory`] for an
/// SS-MIX2 file lying above patient level). A date / data type directory or a single file yields one
/// `PatientFiles` for the enclosing patient directory.
pub fn walk_patients(path: impl AsRef<Path>) -> PatientWalk {
    PatientWalk { walk: walk(path), pending: None }
}

/// Version group of SS-MIX2 files: files with the same (患者ID, 診療日, データ種別, オーダNo) are
/// versions of the same data (standards-jp.md §3.2/§3.3). Note that non-order data share the order
/// number `999999999999999`, so e.g. two ADT-22 files of the same day are versions of each other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionKey {
    /// 患者ID from the file name.
    pub patient_id: String,
    /// 診療日 (`None` = `-`).
    pub care_date: Option<String>,
    /// データ種別.
    pub data_type: DataType,
    /// オーダNo.
    pub order_number: String,
}

/// What to do with one file after version resolution (see [`resolve_versions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionStatus {
    /// The newest file of its group with condition flag 1: convert it (FHIR create/update, JAMI NW).
    /// `newer_invalid` = a newer file of the group has flag 0/2 (ambiguous storage: the newest
    /// valid file still wins, per the rule below; report it).
    Current {
        /// A newer flag-0/2 file exists in the group.
        newer_invalid: bool,
    },
    /// Not the current file of its group (older, or flag 0/2 in a group that has a current file).
    /// `current` = index (in the input slice) of the group's current or deleted-representative file.
    Superseded {
        /// Index of the file that represents the group.
        current: usize,
    },
    /// The group has no flag-1 file: the data was deleted (JAMI 040_usecases: flag 0/2 → FHIR
    /// delete, order control CA). Only the group's newest file carries this status (its name gives
    /// the resource IDs to delete); older ones are [`VersionStatus::Superseded`].
    Deleted,
    /// The file has [`PlacementProblem`]s: it is a per-file error and takes no part in versioning.
    Misplaced,
}

/// The version decision for one file (see [`resolve_versions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDecision {
    /// Index of the file in the slice given to [`resolve_versions`].
    pub index: usize,
    /// The file's version group.
    pub key: VersionKey,
    /// The decision.
    pub status: VersionStatus,
}

/// Resolves versions among the files of ONE patient (standards-jp.md §3.3; JAMI ssmix2-to-fhir
/// 040_usecases.md 「コンディションフラグとインタラクション」).
///
/// Files are grouped by [`VersionKey`]. In each group, the file with the newest 発生日時 among those
/// with condition flag 1 is [`VersionStatus::Current`] (ties: the later path in byte order); all
/// others are [`VersionStatus::Superseded`]. A group without any flag-1 file is deleted: its newest
/// file is [`VersionStatus::Deleted`], the rest superseded. Files with placement problems are
/// [`VersionStatus::Misplaced`] and excluded from grouping.
///
/// Output: one decision per input file, in input order. Never fails.
pub fn resolve_versions(files: &[StorageFile]) -> Vec<VersionDecision> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<VersionKey, Vec<usize>> = BTreeMap::new();
    let mut out: Vec<VersionDecision> = files
        .iter()
        .enumerate()
        .map(|(i, f)| VersionDecision { index: i, key: f.name.version_key(), status: VersionStatus::Misplaced })
        .collect();
    for (i, f) in files.iter().enumerate() {
        if f.is_well_placed() {
            groups.entry(f.name.version_key()).or_default().push(i);
        }
    }
    let newer = |a: usize, b: usize| -> Ordering {
        files[a]
            .name
            .timestamp
            .cmp(&files[b].name.timestamp)
            .then_with(|| files[a].path.cmp(&files[b].path))
    };
    for members in groups.values() {
        let valid = members.iter().copied().filter(|&i| files[i].name.condition == ConditionFlag::Valid);
        let current = valid.max_by(|&a, &b| newer(a, b));
        let (rep, rep_status) = match current {
            Some(c) => {
                let newer_invalid = members.iter().any(|&i| {
                    files[i].name.condition != ConditionFlag::Valid
                        && files[i].name.timestamp > files[c].name.timestamp
                });
                (c, VersionStatus::Current { newer_invalid })
            }
            None => {
                let newest = members.iter().copied().max_by(|&a, &b| newer(a, b)).unwrap_or(members[0]);
                (newest, VersionStatus::Deleted)
            }
        };
        for &i in members {
            out[i].status =
                if i == rep { rep_status.clone() } else { VersionStatus::Superseded { current: rep } };
        }
    }
    out
}

#[cfg(test)]
mod tests;
