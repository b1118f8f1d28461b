//! SS-MIX2 standardized-storage messages (HL7 v2.5, JAHIS conventions) → JP Core 1.1.2 resources.
//!
//! Sources: JAMI ssmix2-to-fhir draft 0.1.0 (field maps per message, logical-id recipe
//! `010_common_specifications.md`), JP Core 1.1.2 profiles, JP-CLINS 1.5 rules where JAMI is silent or
//! wrong (allergy category `biologic` is forbidden; names separated by a half-width space).
//!
//! One file at a time: [`map_message`] takes the storage coordinates ([`Source`]) and the decoded
//! message, and returns the resources the file contributes. Logical ids are built from the storage
//! coordinates **without** the file's timestamp, so a newer version of the same order (same patient,
//! date, data type and order number) updates the same resources (`[pid].[date].[type].[order].[part]`,
//! JAMI's recipe minus 発生日時; ids longer than 64 characters are shortened with a hash).
//!
//! Identity: the storage directory's patient id is authoritative. PID-3 and (against the patient's
//! ADT-00, when given as [`Options::reference_identity`]) name, birth date and sex that disagree produce
//! [`WarningKind::Identity`] warnings; demographics are taken only from ADT-00.

mod adt;
pub mod convert;
mod omg;
mod oml;
mod omp;
mod ppr;

use super::codes::{self, map};
use super::json::{obj, put, s};
use super::{Mapped, MappingError, MappingWarning, WarningKind};
use crate::hl7v2::{Message, Segment, Value as V};
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// Storage coordinates of one SS-MIX2 file (from its directory and file name; SS-MIX2 標準化ストレージ
/// 仕様 §ファイル名).
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The directory's patient id (authoritative), e.g. `9999013`.
    pub patient_id: &'a str,
    /// 診療日 `YYYYMMDD`, or `None` for date-independent data (directory `-`).
    pub date: Option<&'a str>,
    /// SS-MIX2 data type (データ種別), e.g. `OMP-01`.
    pub data_type: &'a str,
    /// Order number (15 digits; `999999999999999` for non-order data).
    pub order_no: &'a str,
    /// 発生日時 `YYYYMMDDHHMMSSfff` (not part of logical ids).
    pub timestamp: &'a str,
    /// 診療科 code (SS-MIX2 user table 0069), or `None` for `-`.
    pub department: Option<&'a str>,
}

/// Mapping options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// The 10-digit 医療機関コード of the source facility. When set, it prefixes logical ids (several
    /// hospitals' storages can share one store) and gives JP Core identifier systems (patient id
    /// `urn:oid:1.2.392.100495.20.3.51.1<code>`, prescription id `urn:oid:1.2.392.100495.20.3.11.1<code>`).
    pub facility_code: Option<&'a str>,
    /// The patient's identity from ADT-00, to check other files' PID against.
    pub reference_identity: Option<&'a Identity>,
}

/// Who a message says the patient is (PID-5, PID-7, PID-8), for identity checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Kanji name (PID-5 repetition with representation `I`), family and given joined by a space.
    pub kanji: Option<String>,
    /// Kana name (representation `P`).
    pub kana: Option<String>,
    /// Birth date `YYYYMMDD` as sent.
    pub birth_date: Option<String>,
    /// Administrative sex code (HL7 0001).
    pub sex: Option<String>,
}

/// Reads the identity a message asserts (its PID segment), or `None` without PID.
pub fn identity_of(msg: &Message) -> Option<Identity> {
    let pid = msg.segment("PID")?;
    let mut id = Identity::default();
    for rep in pid.field(5).reps() {
        let name = join_name(&rep.comp(1).text(), &rep.comp(2).text());
        if name.is_empty() {
            continue;
        }
        match rep.comp(8).raw() {
            "P" => id.kana.get_or_insert(name),
            _ => id.kanji.get_or_insert(name),
        };
    }
    id.birth_date = pid.field(7).comp(1).opt().map(|s| s.into_owned());
    id.sex = pid.field(8).opt().map(|s| s.into_owned());
    Some(id)
}

/// The data types [`map_message`] supports.
pub const SUPPORTED_DATA_TYPES: &[&str] = &[
    "ADT-00", "ADT-01", "ADT-12", "ADT-21", "ADT-22", "ADT-31", "ADT-32", "ADT-41", "ADT-42", "ADT-51", "ADT-52",
    "ADT-61", "PPR-01", "OMD", "OMP-01", "OMP-02", "OMP-11", "OMP-12", "OML-01", "OML-11", "OMG-01", "OMG-02",
    "OMG-03", "OMG-11", "OMG-12", "OMG-13",
];

/// Maps one SS-MIX2 file to JP Core resources.
///
/// Input: the storage coordinates, the decoded message, options. Output: [`Mapped`] resources (each
/// with `resourceType`, `id`, `meta.profile`) and warnings (identity disagreements, non-conformant
/// triggers, unconvertible values). Errors: [`MappingError::UnsupportedDataType`],
/// [`MappingError::MissingSegment`] (no PID, or none of the data type's main segments),
/// [`MappingError::Invalid`].
pub fn map_message(src: &Source, msg: &Message, opts: &Options) -> Result<Mapped, MappingError> {
    if !SUPPORTED_DATA_TYPES.contains(&src.data_type) {
        return Err(MappingError::UnsupportedDataType(src.data_type.to_string()));
    }
    let pid = msg.segment("PID").ok_or(MappingError::MissingSegment("PID"))?;
    let mut cx = Ctx::new(src, msg, opts);
    cx.check_trigger();
    cx.check_identity(pid);
    match src.data_type {
        "ADT-00" => adt::adt00(&mut cx, pid)?,
        "ADT-61" => adt::adt61(&mut cx)?,
        t if t.starts_with("ADT-") => adt::encounter_event(&mut cx)?,
        "PPR-01" => ppr::ppr01(&mut cx)?,
        "OMP-01" => omp::prescription_order(&mut cx, false)?,
        "OMP-02" => omp::prescription_order(&mut cx, true)?,
        "OMP-11" => omp::administration(&mut cx, false)?,
        "OMP-12" => omp::administration(&mut cx, true)?,
        "OMD" => omp::diet_order(&mut cx)?,
        "OML-01" => oml::lab_order(&mut cx)?,
        "OML-11" => oml::lab_result(&mut cx)?,
        t if t.starts_with("OMG-") => omg::omg(&mut cx)?,
        other => return Err(MappingError::UnsupportedDataType(other.to_string())),
    }
    Ok(Mapped { resources: cx.resources, warnings: cx.warnings })
}

/// Expected (message code, trigger) per data type, and the cancel trigger where one exists
/// (SS-MIX2 構築ガイドライン data-type table; standards-jp.md §3.4).
pub fn expected_trigger(data_type: &str) -> Option<(&'static str, &'static str, Option<&'static str>)> {
    Some(match data_type {
        "ADT-00" => ("ADT", "A08", Some("A23")),
        "ADT-01" => ("ADT", "A54", Some("A55")),
        "ADT-12" => ("ADT", "A04", None),
        "ADT-21" => ("ADT", "A14", Some("A27")),
        "ADT-22" => ("ADT", "A01", Some("A11")),
        "ADT-31" => ("ADT", "A21", Some("A52")),
        "ADT-32" => ("ADT", "A22", Some("A53")),
        "ADT-41" => ("ADT", "A15", Some("A26")),
        "ADT-42" => ("ADT", "A02", Some("A12")),
        "ADT-51" => ("ADT", "A16", Some("A25")),
        "ADT-52" => ("ADT", "A03", Some("A13")),
        "ADT-61" => ("ADT", "A60", None),
        "PPR-01" => ("PPR", "ZD1", None),
        "OMD" => ("OMD", "O03", None),
        "OMP-01" | "OMP-02" => ("RDE", "O11", None),
        "OMP-11" | "OMP-12" => ("RAS", "O17", None),
        "OML-01" => ("OML", "O33", None),
        "OML-11" => ("OUL", "R22", None),
        "OMG-01" | "OMG-02" | "OMG-03" => ("OMG", "O19", None),
        "OMG-11" | "OMG-12" => ("OMI", "Z23", None),
        "OMG-13" => ("ORU", "R01", None),
        _ => return None,
    })
}

/// Per-file mapping context: ids, references, code systems, collected output.
pub(crate) struct Ctx<'a> {
    pub src: &'a Source<'a>,
    pub msg: &'a Message,
    pub opts: &'a Options<'a>,
    /// Sending facility (MSH-4) for local code systems.
    pub facility: String,
    pub resources: Vec<Value>,
    pub warnings: Vec<MappingWarning>,
    /// `true` when MSH-9.2 is the data type's cancel trigger (e.g. ADT^A11 in an ADT-22 file).
    pub cancelled: bool,
    base_id: String,
    patient_ref: Value,
}

impl<'a> Ctx<'a> {
    fn new(src: &'a Source<'a>, msg: &'a Message, opts: &'a Options<'a>) -> Self {
        let facility = msg.msh().field(4).comp(1).text().into_owned();
        let prefix = match opts.facility_code {
            Some(f) if !f.is_empty() => format!("{f}."),
            _ => String::new(),
        };
        let base_id = format!(
            "{prefix}{}.{}.{}.{}",
            src.patient_id,
            src.date.unwrap_or("-"),
            src.data_type,
            src.order_no
        );
        let patient_ref = json!({ "reference": format!("Patient/{}", patient_id(src.patient_id, opts)) });
        Ctx {
            src,
            msg,
            opts,
            facility,
            resources: Vec::with_capacity(16),
            warnings: Vec::new(),
            cancelled: false,
            base_id,
            patient_ref,
        }
    }

    /// Logical id for a part of this file (`[base].[part]`), ≤ 64 chars of `[A-Za-z0-9\-\.]`.
    pub fn id(&self, part: &str) -> String {
        let raw = if part.is_empty() { self.base_id.clone() } else { format!("{}.{}", self.base_id, part) };
        fhir_id(&raw)
    }

    /// `{"reference": "Patient/<id>"}`.
    pub fn patient(&self) -> Value {
        self.patient_ref.clone()
    }

    pub fn warn(&mut self, kind: WarningKind, location: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(MappingWarning { location: location.into(), kind, message: message.into() });
    }

    pub fn push(&mut self, resource: Map<String, Value>) {
        self.resources.push(Value::Object(resource));
    }

    /// HL7 CWE/CE → CodeableConcept (both triplets; `text` = the first display).
    pub fn cwe(&self, v: V) -> Value {
        let mut codings = Vec::with_capacity(2);
        for base in [1, 4] {
            let code = v.comp(base).text();
            if code.is_empty() {
                continue;
            }
            let table = v.comp(base + 2).text();
            codings.push(self.coding(&code, &v.comp(base + 1).text(), &table));
        }
        let text = v.comp(2).opt().or_else(|| v.comp(5).opt()).or_else(|| v.comp(9).opt());
        let mut m = Map::new();
        put(&mut m, "coding", Value::Array(codings));
        put(&mut m, "text", s(text));
        Value::Object(m)
    }

    /// One Coding from code, display and HL7 coding-system ID.
    pub fn coding(&self, code: &str, display: &str, table: &str) -> Value {
        let mut c = Map::new();
        put(&mut c, "system", s(codes::system_for(table, code, &self.facility)));
        put(&mut c, "code", json!(code));
        put(&mut c, "display", s(Some(display)));
        Value::Object(c)
    }

    /// HL7 XCN (person) → Reference with a facility staff identifier and the display name.
    /// The first repetition gives the id; the kanji repetition gives the display.
    pub fn xcn(&self, v: V) -> Value {
        let first = v.rep(1);
        let id = first.comp(1).text();
        let name = v
            .reps()
            .find(|r| r.comp(9).raw() != "P" && !r.comp(2).is_empty())
            .map(|r| join_name(&r.comp(2).text(), &r.comp(3).text()))
            .unwrap_or_default();
        if id.is_empty() && name.is_empty() {
            return Value::Null;
        }
        let mut r = Map::new();
        if !id.is_empty() {
            let mut ident = Map::new();
            if let Some(f) = self.opts.facility_code {
                put(&mut ident, "system", json!(format!("urn:oid:1.2.392.100495.20.3.41.1{f}")));
            }
            ident.insert("value".into(), json!(id));
            r.insert("type".into(), json!("Practitioner"));
            r.insert("identifier".into(), Value::Object(ident));
        }
        put(&mut r, "display", s(Some(name)));
        Value::Object(r)
    }

    /// Department code (SS-MIX2 診療科, user table 0069) → CodeableConcept.
    pub fn department(&self, v: V) -> Value {
        let code = v.comp(1).text();
        if code.is_empty() {
            return Value::Null;
        }
        let mut c = Map::new();
        c.insert("system".into(), json!(codes::named_system("departmentSystem")));
        c.insert("code".into(), json!(code));
        put(&mut c, "display", s(v.comp(2).opt()));
        obj([("coding", Value::Array(vec![Value::Object(c)]))])
    }

    /// HL7 DTM → FHIR date/dateTime (see [`hl7_datetime`]), warning on a malformed value.
    pub fn dt(&mut self, v: V, location: &str) -> Value {
        let raw = v.comp(1).text();
        if raw.is_empty() {
            return Value::Null;
        }
        match hl7_datetime(&raw) {
            Some(d) => Value::String(d),
            None => {
                self.warn(WarningKind::Value, location, "not a valid HL7 date/time; left out");
                Value::Null
            }
        }
    }

    /// An HL7 numeric string → a JSON number with the same decimal text (precision kept), warning
    /// and `None` when it is not a number.
    pub fn num(&mut self, raw: &str, location: &str) -> Option<Value> {
        if raw.trim().is_empty() {
            return None;
        }
        let n = decimal(raw);
        if n.is_none() {
            self.warn(WarningKind::Value, location, "not a decimal number; left out");
        }
        n
    }

    /// A Quantity from a numeric text and an HL7 unit CWE (`cm^cm^ISO+`, `TAB^錠^MR9P`, …).
    pub fn quantity(&mut self, value: &str, unit: V, location: &str) -> Value {
        let Some(n) = self.num(value, location) else { return Value::Null };
        let mut q = Map::new();
        q.insert("value".into(), n);
        self.unit_into(&mut q, unit);
        Value::Object(q)
    }

    /// Adds `unit`/`system`/`code` from an HL7 unit CWE into a Quantity object.
    pub fn unit_into(&self, q: &mut Map<String, Value>, unit: V) {
        let code = unit.comp(1).text();
        let display = unit.comp(2).opt().unwrap_or_else(|| code.clone());
        let table = unit.comp(3).text();
        if code.is_empty() {
            return;
        }
        put(q, "unit", json!(display));
        match table.as_ref() {
            "MR9P" => {
                q.insert("system".into(), json!(codes::system_for("MR9P", &code, "").unwrap_or_default()));
                q.insert("code".into(), json!(code));
            }
            _ => {
                if let Some(ucum) = ucum_code(&code) {
                    q.insert("system".into(), json!("http://unitsofmeasure.org"));
                    q.insert("code".into(), json!(ucum));
                }
            }
        }
    }

    fn check_trigger(&mut self) {
        let (code, trigger, _) = self.msg.message_type();
        let Some((exp_code, exp_trigger, cancel)) = expected_trigger(self.src.data_type) else { return };
        if code == exp_code && cancel == Some(trigger) {
            self.cancelled = true;
        } else if code != exp_code || trigger != exp_trigger {
            let (code, trigger) = (code.to_string(), trigger.to_string());
            self.warn(
                WarningKind::Conformance,
                "MSH-9",
                format!(
                    "{} carries {code}^{trigger}, SS-MIX2 expects {exp_code}^{exp_trigger}; mapped as {}",
                    self.src.data_type, self.src.data_type
                ),
            );
        }
    }

    fn check_identity(&mut self, pid: Segment) {
        let pid3 = pid.field(3).rep(1).comp(1).text();
        if !pid3.is_empty() && pid3 != self.src.patient_id {
            self.warn(
                WarningKind::Identity,
                "PID-3",
                "patient id in PID-3 differs from the storage directory's patient id; the directory's id is used",
            );
        }
        let (Some(reference), Some(this)) = (self.opts.reference_identity, identity_of(self.msg)) else { return };
        let checks = [
            ("PID-5", "kanji name", &reference.kanji, &this.kanji),
            ("PID-5", "kana name", &reference.kana, &this.kana),
            ("PID-7", "birth date", &reference.birth_date, &this.birth_date),
            ("PID-8", "sex", &reference.sex, &this.sex),
        ];
        for (loc, what, a, b) in checks {
            if let (Some(a), Some(b)) = (a, b) {
                if normalize_name(a) != normalize_name(b) {
                    self.warn(
                        WarningKind::Identity,
                        loc,
                        format!("{what} differs from the patient's ADT-00; demographics are taken from ADT-00 only"),
                    );
                }
            }
        }
    }
}

/// The Patient logical id for a storage patient id (JAMI: `[患者ID].ADT-00`, facility-prefixed when a
/// facility code is configured).
pub fn patient_id(pid: &str, opts: &Options) -> String {
    match opts.facility_code {
        Some(f) if !f.is_empty() => fhir_id(&format!("{f}.{pid}.ADT-00")),
        _ => fhir_id(&format!("{pid}.ADT-00")),
    }
}

/// Makes a FHIR id (`[A-Za-z0-9\-\.]{1,64}`, FHIR R4 §2.24.0.1 id): other characters become `-`; longer
/// ids keep their first 47 characters plus `.` and 16 hex digits of SHA-256 of the whole.
pub fn fhir_id(raw: &str) -> String {
    let cleaned: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' }).collect();
    if cleaned.len() <= 64 && !cleaned.is_empty() {
        return cleaned;
    }
    use sha2::Digest;
    let h = sha2::Sha256::digest(raw.as_bytes());
    format!("{}.{}", &cleaned[..47.min(cleaned.len())], hex::encode(&h[..8]))
}

/// Joins family and given with a half-width space (JP-CLINS R1113: no U+3000 in names).
pub fn join_name(family: &str, given: &str) -> String {
    let f = family.trim_matches(|c: char| c.is_whitespace()).replace('\u{3000}', " ");
    let g = given.trim_matches(|c: char| c.is_whitespace()).replace('\u{3000}', " ");
    match (f.is_empty(), g.is_empty()) {
        (false, false) => format!("{f} {g}"),
        (false, true) => f,
        (true, false) => g,
        _ => String::new(),
    }
}

fn normalize_name(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// HL7 v2.5 DTM (`YYYY[MM[DD[HH[MM[SS[.S{1,4}]]]]]][+/-ZZZZ]`) → FHIR `date` or `dateTime`.
///
/// Dates stay at their precision (`199601` → `1996-01`, `20110915` → `2011-09-15`); values with a
/// time get seconds (FHIR requires them) and, when the sender gave no offset, `+09:00` (SS-MIX2 data are
/// in Japan Standard Time). Fractions are kept to milliseconds. Returns `None` for anything that is not
/// a valid date/time (month 13, day 32, hour 25, non-digits, …).
pub fn hl7_datetime(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (main, tz) = match raw.find(['+', '-']) {
        Some(i) if i >= 4 => (&raw[..i], Some(&raw[i..])),
        _ => (raw, None),
    };
    let (digits, frac) = match main.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (main, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![4, 6, 8, 10, 12, 14].contains(&digits.len()) {
        return None;
    }
    let n = |a: usize, b: usize| digits[a..b].parse::<u32>().ok();
    let year = &digits[0..4];
    if digits.len() == 4 {
        return Some(year.to_string());
    }
    let month = n(4, 6)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    if digits.len() == 6 {
        return Some(format!("{year}-{month:02}"));
    }
    let day = n(6, 8)?;
    let y: i32 = year.parse().ok()?;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month as usize - 1];
    if day == 0 || day > dim {
        return None;
    }
    let date = format!("{year}-{month:02}-{day:02}");
    if digits.len() == 8 {
        return Some(date);
    }
    let hour = n(8, 10)?;
    let minute = if digits.len() >= 12 { n(10, 12)? } else { 0 };
    let second = if digits.len() >= 14 { n(12, 14)? } else { 0 };
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut out = format!("{date}T{hour:02}:{minute:02}:{second:02}");
    if let Some(f) = frac {
        if digits.len() == 14 && !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) {
            out.push('.');
            out.push_str(&f[..f.len().min(3)]);
        }
    }
    match tz {
        Some(z) if z.len() == 5 && z[1..].bytes().all(|b| b.is_ascii_digit()) => {
            out.push_str(&format!("{}:{}", &z[..3], &z[3..]));
        }
        Some(_) => return None,
        None => out.push_str("+09:00"),
    }
    Some(out)
}

/// HL7 NM text → a JSON number keeping its decimal text (`6.70` stays `6.70`). Accepts a leading `+`,
/// leading zeros, a leading `.` and full-width digits, normalising them to FHIR decimal syntax
/// (FHIR R4 §2.24.0.1 decimal). `None` for non-numbers.
pub fn decimal(raw: &str) -> Option<Value> {
    let t: String = raw
        .trim()
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
            '．' => '.',
            '－' | '−' => '-',
            '＋' => '+',
            other => other,
        })
        .collect();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(&t)),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    if (int.is_empty() && frac.is_none_or(|f| f.is_empty()))
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let mut text = String::with_capacity(t.len() + 1);
    if neg && (int != "0" || frac.is_some_and(|f| f.bytes().any(|b| b != b'0'))) {
        text.push('-');
    }
    text.push_str(int);
    if let Some(f) = frac {
        text.push('.');
        text.push_str(f);
    }
    serde_json::from_str::<serde_json::Number>(&text).ok().map(Value::Number)
}

/// UCUM code for common unit spellings in Japanese lab/vital data, or `None` when unsure.
pub fn ucum_code(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "cm" => "cm",
        "kg" => "kg",
        "g" => "g",
        "mg" => "mg",
        "mL" | "ml" => "mL",
        "L" | "l" => "L",
        "%" => "%",
        "g/dL" | "g/dl" => "g/dL",
        "mg/dL" | "mg/dl" => "mg/dL",
        "mmol/L" | "mmol/l" => "mmol/L",
        "mEq/L" | "mEq/l" => "meq/L",
        "U/L" | "IU/L" | "U/l" => "U/L",
        "pg/mL" | "pg/ml" => "pg/mL",
        "ng/mL" | "ng/ml" => "ng/mL",
        "/uL" | "/μL" | "/µL" => "/uL",
        "10^4/uL" | "万/uL" => "10*4/uL",
        "mmHg" => "mm[Hg]",
        "bpm" | "/min" | "回/分" => "/min",
        "msec" | "ms" => "ms",
        "sec" | "s" | "秒" => "s",
        "mV" => "mV",
        "degree" | "deg" | "度" => "deg",
        "℃" | "Cel" => "Cel",
        "ml/hr" | "mL/hr" | "mL/h" => "mL/h",
        "d" | "日" => "d",
        _ => return None,
    })
}

/// HL7 OBX-11 / result status (table 0085) → Observation.status.
pub fn observation_status(code: &str) -> &'static str {
    match code {
        "F" => "final",
        "C" => "corrected",
        "P" | "R" | "S" | "I" => "preliminary",
        "X" | "D" | "W" => "cancelled",
        "O" => "registered",
        _ => "final",
    }
}

/// ORC-1 order control (table 0119) → request status.
pub fn order_status(orc1: &str, orc5: &str) -> &'static str {
    match (orc1, orc5) {
        ("CA" | "OC" | "CR", _) => "revoked",
        ("DC" | "OD", _) => "completed",
        (_, "CM") => "completed",
        (_, "CA") => "revoked",
        (_, "HD") => "on-hold",
        _ => "active",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(hl7_datetime("19480405").unwrap(), "1948-04-05");
        assert_eq!(hl7_datetime("199601").unwrap(), "1996-01");
        assert_eq!(hl7_datetime("201112202100").unwrap(), "2011-12-20T21:00:00+09:00");
        assert_eq!(hl7_datetime("20111220224447.3399").unwrap(), "2011-12-20T22:44:47.339+09:00");
        assert_eq!(hl7_datetime("2011070100").unwrap(), "2011-07-01T00:00:00+09:00");
        assert_eq!(hl7_datetime("20110701103045-0500").unwrap(), "2011-07-01T10:30:45-05:00");
        assert!(hl7_datetime("20111320").is_none());
        assert!(hl7_datetime("20110230").is_none());
        assert!(hl7_datetime("abc").is_none());
        assert!(hl7_datetime("2011122").is_none());
    }

    #[test]
    fn decimals_keep_their_text() {
        assert_eq!(decimal("6.70").unwrap().to_string(), "6.70");
        assert_eq!(decimal("167.8").unwrap().to_string(), "167.8");
        assert_eq!(decimal("+.5").unwrap().to_string(), "0.5");
        assert_eq!(decimal("007").unwrap().to_string(), "7");
        assert_eq!(decimal("-14").unwrap().to_string(), "-14");
        assert_eq!(decimal("１２．５").unwrap().to_string(), "12.5");
        assert!(decimal("1.2.3").is_none());
        assert!(decimal("abc").is_none());
        assert!(decimal(".").is_none());
        assert!(decimal("").is_none());
    }

    #[test]
    fn ids_are_fhir_ids() {
        assert_eq!(fhir_id("9999013.-.ADT-61.999999999999999.1"), "9999013.-.ADT-61.999999999999999.1");
        let long = fhir_id(&"x".repeat(100));
        assert!(long.len() <= 64);
        assert_eq!(fhir_id("a_b"), "a-b");
    }
}
