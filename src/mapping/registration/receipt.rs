//! The receipt-derived CSV of diagnoses and drugs (`docs/domain.md` §1: Kitakyushu's pre-registration
//! from national health insurance receipt data, and clinics' exports from their receipt computers),
//! merged into existing registrations.
//!
//! # The CSV
//!
//! RFC 4180 (comma separated, `"` quoting with `""` inside, CRLF or LF), **UTF-8** (a BOM is skipped)
//! or **Shift_JIS** (what receipt computers write; detected when the bytes are not UTF-8). The first
//! record is a header naming the columns, in any order (English or Japanese names):
//!
//! | column | Japanese header | required | content |
//! |---|---|---|---|
//! | `card_id` | `カードID` | one of `card_id` or `name_kana` + `birth_date` per row | Tobiume-net card id |
//! | `name_kana` | `氏名カナ` | 〃 | kana name, family and given (space optional; hiragana, half-width, `ー`/`ウ` all fine) |
//! | `birth_date` | `生年月日` | 〃 | `YYYY-MM-DD`, `YYYY/MM/DD` or `YYYYMMDD` |
//! | `kind` | `種別` | yes | `病名` (also `傷病名`, `disease`) or `薬剤` (also `医薬品`, `drug`) |
//! | `code_system` | `コード体系` | no | 病名: `medis` (MEDIS 病名管理番号), `medis-ex` (病名交換用コード), `receipt` (レセ電 傷病名コード), `icd10`; 薬剤: `yj`, `hot9`, `hot13`, `general` (一般名処方マスタ), `receipt` (レセ電 医薬品コード). Empty: inferred from the code's shape (病名: 8 digits MEDIS, 7 digits レセ電, 4 characters 交換用コード, `A00`–`Z99` ICD-10; 薬剤: 12 characters YJ, 13 digits HOT13, 9 digits レセ電) |
//! | `code` | `コード` | no | the code |
//! | `name` | `名称` | yes | 病名 or drug name as shown |
//! | `start_date` | `開始日` | no | 病名: onset / 診療開始日; 薬剤: first prescribed |
//! | `source` | `出典` | no | where the row comes from, e.g. `北九州市国保レセプト 2026-06` (becomes the item's author; default `レセプトデータ`) |
//!
//! Example:
//!
//! ```text
//! card_id,name_kana,birth_date,kind,code_system,code,name,start_date,source
//! TB-40-0012345,,,病名,medis,20054174,2型糖尿病,2019-04-01,北九州市国保レセプト
//! ,ウメノ ハナコ,1938-03-14,薬剤,yj,2149039F1022,アムロジピン錠5mg,2020-01-10,北九州市国保レセプト
//! ```
//!
//! # Merging ([`merge`])
//!
//! * 病名 → a main diagnosis (JP_Condition) while the registration has fewer than
//!   [`MAX_MAIN_DIAGNOSES`]; the rest are appended to 病名・病歴等 (history) as one line each
//!   (`name [code] 開始日 date (source)`), per `docs/domain.md` §1.1. A diagnosis already present
//!   (same code, or same name after `fold_ja`) among the main diagnoses or the history lines is not
//!   added again.
//! * 薬剤 → a prescription (MedicationStatement) unless one with the same code or name exists. A
//!   レセ電 医薬品コード has no code system in the registration model: the drug is kept by name (a
//!   warning says so). The start date becomes the item's last-updated date (the model has no start
//!   date for a prescription).
//! * Items get `meta.lastUpdated` = the import date (diagnoses) / start date or import date (drugs)
//!   and `meta.author.name` = `source`.
//!
//! Errors never contain the row's values (names, dates, codes are PHI or close to it): only the row
//! number (the line where the record starts; the header is row 1) and the column.

use encoding_rs::SHIFT_JIS;

use super::model::*;
use crate::search::normalize::fold_ja;

/// The default author name for items from receipt data.
pub const DEFAULT_SOURCE: &str = "レセプトデータ";

/// 病名 or 薬剤.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// 病名 (a diagnosis).
    Disease,
    /// 薬剤 (a drug).
    Drug,
}

/// The code of a row, with its system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowCode {
    /// A disease code.
    Disease(DiseaseCode),
    /// A drug code representable in the model.
    Drug(DrugCode),
    /// A レセ電 医薬品コード (no code system in the model; the drug is kept by name).
    ReceiptDrug(String),
}

/// One data row of the CSV, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRow {
    /// Row number (line where the record starts; header = 1).
    pub row: usize,
    /// Card id, when given.
    pub card_id: Option<CardId>,
    /// Kana name, when given (as written).
    pub name_kana: Option<String>,
    /// Birth date, when given (`YYYY-MM-DD`).
    pub birth_date: Option<Date>,
    /// 病名 or 薬剤.
    pub kind: ReceiptKind,
    /// The code, when given.
    pub code: Option<RowCode>,
    /// 病名 / drug name (trimmed, non-empty).
    pub name: String,
    /// Start date (`YYYY-MM-DD`), when given.
    pub start_date: Option<Date>,
    /// Source (trimmed), when given.
    pub source: Option<String>,
}

/// A problem with one row (or, with `row = 0`, the file). `message` names the column, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Row number (header = 1); 0 for the file as a whole.
    pub row: usize,
    /// What is wrong.
    pub message: String,
}

/// A CSV that cannot be read at all (encoding, header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    /// Neither UTF-8 nor Shift_JIS.
    #[error("the file is neither UTF-8 nor Shift_JIS text")]
    Encoding,
    /// No header row.
    #[error("the file is empty (no header row)")]
    Empty,
    /// A header names an unknown column, or repeats one.
    #[error("header column {0}: {1}")]
    Header(usize, String),
    /// A required column is missing from the header.
    #[error("the header lacks the column `{0}`")]
    MissingColumn(&'static str),
    /// A quoted field never ends.
    #[error("row {0}: a quoted field is not closed")]
    Unterminated(usize),
}

/// Decodes the file: UTF-8 (BOM skipped) or else Shift_JIS. Errors: [`CsvError::Encoding`].
pub fn decode(bytes: &[u8]) -> Result<String, CsvError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok(s.to_string());
    }
    let (text, _, had_errors) = SHIFT_JIS.decode(bytes);
    if had_errors {
        return Err(CsvError::Encoding);
    }
    Ok(text.into_owned())
}

/// Splits RFC 4180 text into records of fields, each with the line number where it starts.
/// Errors: [`CsvError::Unterminated`].
pub fn records(text: &str) -> Result<Vec<(usize, Vec<String>)>, CsvError> {
    let mut out = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start = 1;
    let mut quoted = false;
    let mut at_field_start = true;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                other => field.push(other),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                quoted = true;
                at_field_start = false;
                any = true;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
                any = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                if any || !field.is_empty() {
                    fields.push(std::mem::take(&mut field));
                    out.push((start, std::mem::take(&mut fields)));
                }
                line += 1;
                start = line;
                at_field_start = true;
                any = false;
            }
            other => {
                field.push(other);
                at_field_start = false;
                any = true;
            }
        }
    }
    if quoted {
        return Err(CsvError::Unterminated(start));
    }
    if any || !field.is_empty() {
        fields.push(field);
        out.push((start, fields));
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Col {
    CardId,
    NameKana,
    BirthDate,
    Kind,
    CodeSystem,
    Code,
    Name,
    StartDate,
    Source,
}

fn column(h: &str) -> Option<Col> {
    Some(match h.trim().to_ascii_lowercase().as_str() {
        "card_id" | "カードid" | "とびうめid" => Col::CardId,
        "name_kana" | "氏名カナ" | "カナ氏名" => Col::NameKana,
        "birth_date" | "生年月日" => Col::BirthDate,
        "kind" | "種別" => Col::Kind,
        "code_system" | "コード体系" => Col::CodeSystem,
        "code" | "コード" => Col::Code,
        "name" | "名称" => Col::Name,
        "start_date" | "開始日" => Col::StartDate,
        "source" | "出典" => Col::Source,
        _ => return None,
    })
}

/// `YYYY-MM-DD`, `YYYY/MM/DD` or `YYYYMMDD` (full-width digits allowed) → a FHIR date.
pub fn parse_date(s: &str) -> Option<Date> {
    let s = fold_ja(s);
    let s = s.replace('/', "-");
    let s = if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &s[..4], &s[4..6], &s[6..])
    } else if let [y, m, d] = s.split('-').collect::<Vec<_>>()[..] {
        if y.len() == 4 && (1..=2).contains(&m.len()) && (1..=2).contains(&d.len()) {
            format!("{y}-{m:0>2}-{d:0>2}")
        } else {
            return None;
        }
    } else {
        return None;
    };
    (s.len() == 10).then_some(())?;
    Date::new(s)
}

fn disease_code(system: Option<&str>, code: &str) -> Result<DiseaseCode, String> {
    let c = code.to_string();
    let digits = code.bytes().all(|b| b.is_ascii_digit());
    let sys = match system {
        Some("medis") => DiseaseCodeSystem::MedisKeyNumber,
        Some("medis-ex") => DiseaseCodeSystem::MedisExCode,
        Some("receipt") => DiseaseCodeSystem::Receipt,
        Some("icd10") => DiseaseCodeSystem::Icd10,
        Some(_) => {
            return Err(
                "code_system: not a disease code system (medis, medis-ex, receipt, icd10)".into(),
            )
        }
        None if digits && code.len() == 8 => DiseaseCodeSystem::MedisKeyNumber,
        None if digits && code.len() == 7 => DiseaseCodeSystem::Receipt,
        None if code.len() == 4 && code.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            DiseaseCodeSystem::MedisExCode
        }
        None if code.len() >= 3
            && code.as_bytes()[0].is_ascii_uppercase()
            && code.as_bytes()[1..3].iter().all(u8::is_ascii_digit) =>
        {
            DiseaseCodeSystem::Icd10
        }
        None => return Err("code: cannot tell its code system; fill code_system".into()),
    };
    Ok(DiseaseCode {
        system: sys,
        code: c,
    })
}

fn drug_code(system: Option<&str>, code: &str) -> Result<RowCode, String> {
    let digits = code.bytes().all(|b| b.is_ascii_digit());
    let sys = match system {
        Some("yj") => DrugCodeSystem::Yj,
        Some("hot9") => DrugCodeSystem::Hot9,
        Some("hot13") => DrugCodeSystem::Hot13,
        Some("general") => DrugCodeSystem::GeneralName,
        Some("receipt") => return Ok(RowCode::ReceiptDrug(code.to_string())),
        Some(_) => {
            return Err(
                "code_system: not a drug code system (yj, hot9, hot13, general, receipt)".into(),
            )
        }
        None if code.len() == 12 && code.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            DrugCodeSystem::Yj
        }
        None if digits && code.len() == 13 => DrugCodeSystem::Hot13,
        None if digits && code.len() == 9 => return Ok(RowCode::ReceiptDrug(code.to_string())),
        None => return Err("code: cannot tell its code system; fill code_system".into()),
    };
    Ok(RowCode::Drug(DrugCode {
        system: sys,
        code: code.to_string(),
    }))
}

/// Parses the whole CSV: the checked rows, and one [`RowError`] per rejected row (the rest go on).
///
/// Errors: [`CsvError`] when the file cannot be read at all (encoding, header, unterminated quote).
pub fn parse(bytes: &[u8]) -> Result<(Vec<ReceiptRow>, Vec<RowError>), CsvError> {
    let text = decode(bytes)?;
    let mut recs = records(&text)?.into_iter();
    let (_, header) = recs.next().ok_or(CsvError::Empty)?;
    let mut cols = Vec::new();
    for (i, h) in header.iter().enumerate() {
        let c = column(h).ok_or_else(|| CsvError::Header(i + 1, "unknown column name".into()))?;
        if cols.contains(&c) {
            return Err(CsvError::Header(i + 1, "column given twice".into()));
        }
        cols.push(c);
    }
    if !cols.contains(&Col::Kind) {
        return Err(CsvError::MissingColumn("kind"));
    }
    if !cols.contains(&Col::Name) {
        return Err(CsvError::MissingColumn("name"));
    }
    let by_name = cols.contains(&Col::NameKana) && cols.contains(&Col::BirthDate);
    if !cols.contains(&Col::CardId) && !by_name {
        return Err(CsvError::MissingColumn(
            "card_id (or name_kana and birth_date)",
        ));
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (row, fields) in recs {
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        match parse_row(row, &cols, &fields) {
            Ok(r) => rows.push(r),
            Err(message) => errors.push(RowError { row, message }),
        }
    }
    Ok((rows, errors))
}

fn parse_row(row: usize, cols: &[Col], fields: &[String]) -> Result<ReceiptRow, String> {
    if fields.len() != cols.len() {
        return Err(format!(
            "has {} fields, the header has {}",
            fields.len(),
            cols.len()
        ));
    }
    let get = |c: Col| {
        cols.iter()
            .position(|x| *x == c)
            .map(|i| fields[i].trim())
            .filter(|s| !s.is_empty())
    };
    let card_id = match get(Col::CardId) {
        Some(s) => Some(CardId::new(s).ok_or("card_id: not a card id (1-26 of A-Z a-z 0-9 -)")?),
        None => None,
    };
    let name_kana = get(Col::NameKana).map(str::to_string);
    let birth_date = match get(Col::BirthDate) {
        Some(s) => Some(
            parse_date(s).ok_or("birth_date: not a date (YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD)")?,
        ),
        None => None,
    };
    if card_id.is_none() && (name_kana.is_none() || birth_date.is_none()) {
        return Err("needs card_id, or name_kana and birth_date".into());
    }
    let kind = match get(Col::Kind) {
        Some("病名" | "傷病名" | "disease" | "diagnosis") => ReceiptKind::Disease,
        Some("薬剤" | "医薬品" | "drug" | "medication") => ReceiptKind::Drug,
        Some(_) => return Err("kind: must be 病名 or 薬剤".into()),
        None => return Err("kind: missing".into()),
    };
    let name = get(Col::Name).ok_or("name: missing")?.to_string();
    let system = get(Col::CodeSystem).map(|s| s.to_ascii_lowercase());
    let code = match get(Col::Code) {
        Some(c) => Some(match kind {
            ReceiptKind::Disease => RowCode::Disease(disease_code(system.as_deref(), c)?),
            ReceiptKind::Drug => drug_code(system.as_deref(), c)?,
        }),
        None if system.is_some() => return Err("code_system given without a code".into()),
        None => None,
    };
    let start_date = match get(Col::StartDate) {
        Some(s) => Some(
            parse_date(s).ok_or("start_date: not a date (YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD)")?,
        ),
        None => None,
    };
    let source = get(Col::Source).map(str::to_string);
    Ok(ReceiptRow {
        row,
        card_id,
        name_kana,
        birth_date,
        kind,
        code,
        name,
        start_date,
        source,
    })
}

/// What [`merge`] did with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merged {
    /// Added as a main diagnosis.
    MainDiagnosis,
    /// Appended to the history text (main diagnoses were full).
    History,
    /// Added as a prescription.
    Prescription,
    /// Already registered: nothing changed.
    Duplicate,
}

fn item_meta(row: &ReceiptRow, date: &DateTime) -> ItemMeta {
    ItemMeta {
        last_updated: date.clone(),
        author: Author {
            name: row
                .source
                .clone()
                .unwrap_or_else(|| DEFAULT_SOURCE.to_string()),
            facility: None,
        },
    }
}

/// The history line of a diagnosis: `name [code] 開始日 date (source)`.
pub fn history_line(row: &ReceiptRow) -> String {
    let mut s = row.name.clone();
    if let Some(RowCode::Disease(c)) = &row.code {
        s.push_str(&format!(" [{}]", c.code));
    }
    if let Some(d) = &row.start_date {
        s.push_str(&format!(" 開始日 {d}"));
    }
    if let Some(src) = &row.source {
        s.push_str(&format!(" ({src})"));
    }
    s
}

/// The diagnosis name of a history line written by [`history_line`] (or the whole line).
fn history_name(line: &str) -> &str {
    let mut end = line.len();
    for sep in [" [", " 開始日 ", " ("] {
        if let Some(i) = line.find(sep) {
            end = end.min(i);
        }
    }
    line[..end].trim()
}

/// Merges one row into `reg` (see the module docs). `import_date` is the item date of diagnoses
/// (and of drugs without a start date). Never fails: a row that is already present is
/// [`Merged::Duplicate`].
pub fn merge(reg: &mut Registration, row: &ReceiptRow, import_date: &DateTime) -> Merged {
    let key = fold_ja(&row.name);
    match row.kind {
        ReceiptKind::Disease => {
            let code = match &row.code {
                Some(RowCode::Disease(c)) => Some(c.clone()),
                _ => None,
            };
            let in_main = reg
                .main_diagnoses
                .iter()
                .any(|d| fold_ja(&d.value.name) == key || (code.is_some() && d.value.code == code));
            let in_history = reg.history.as_ref().is_some_and(|h| {
                h.value.lines().any(|l| {
                    fold_ja(history_name(l)) == key
                        || code
                            .as_ref()
                            .is_some_and(|c| l.contains(&format!("[{}]", c.code)))
                })
            });
            if in_main || in_history {
                return Merged::Duplicate;
            }
            let meta = item_meta(row, import_date);
            if reg.main_diagnoses.len() < MAX_MAIN_DIAGNOSES {
                reg.main_diagnoses.push(Item::new(
                    Diagnosis {
                        name: row.name.clone(),
                        code,
                        onset: row.start_date.clone(),
                    },
                    meta,
                ));
                Merged::MainDiagnosis
            } else {
                let line = history_line(row);
                match &mut reg.history {
                    Some(h) => {
                        h.value = format!("{}\n{line}", h.value.trim_end());
                        h.meta = meta;
                    }
                    None => reg.history = Some(Item::new(line, meta)),
                }
                Merged::History
            }
        }
        ReceiptKind::Drug => {
            let code = match &row.code {
                Some(RowCode::Drug(c)) => Some(c.clone()),
                _ => None,
            };
            let present = reg
                .prescriptions
                .iter()
                .any(|p| fold_ja(&p.value.drug) == key || (code.is_some() && p.value.code == code));
            if present {
                return Merged::Duplicate;
            }
            let date = row
                .start_date
                .as_ref()
                .and_then(|d| DateTime::new(d.as_str()))
                .unwrap_or_else(|| import_date.clone());
            reg.prescriptions.push(Item::new(
                Prescription {
                    drug: row.name.clone(),
                    code,
                    dosage: None,
                },
                item_meta(row, &date),
            ));
            Merged::Prescription
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str =
        "card_id,name_kana,birth_date,kind,code_system,code,name,start_date,source\r\n\
TB-1,,,病名,,20054174,2型糖尿病,2019-04-01,北九州市国保レセプト\r\n\
,\"ウメノ ハナコ\",1938/03/14,薬剤,yj,2149039F1022,\"アムロジピン錠5mg\",20200110,\r\n\
TB-1,,,処置,,,x,,\r\n\
TB-1,,,病名,,,\"高血圧症\"\"本態性\"\"\",,\n\
,,,病名,,,y,,\n";

    #[test]
    fn parses_rows_and_reports_bad_ones() {
        let (rows, errors) = parse(CSV.as_bytes()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].row, 2);
        assert_eq!(
            rows[0].code,
            Some(RowCode::Disease(DiseaseCode {
                system: DiseaseCodeSystem::MedisKeyNumber,
                code: "20054174".into()
            }))
        );
        assert_eq!(rows[1].birth_date.as_ref().unwrap().as_str(), "1938-03-14");
        assert_eq!(rows[1].start_date.as_ref().unwrap().as_str(), "2020-01-10");
        assert_eq!(rows[1].name_kana.as_deref(), Some("ウメノ ハナコ"));
        assert_eq!(rows[2].name, "高血圧症\"本態性\"");
        assert_eq!(errors.iter().map(|e| e.row).collect::<Vec<_>>(), [4, 6]);
    }

    #[test]
    fn shift_jis_and_headers() {
        let (bytes, _, _) = SHIFT_JIS.encode("カードID,種別,名称\nTB-1,薬剤,ロキソニン錠\n");
        let (rows, errors) = parse(&bytes).unwrap();
        assert!(errors.is_empty());
        assert_eq!(rows[0].name, "ロキソニン錠");
        assert_eq!(
            parse(b"card_id,kind,nam\n"),
            Err(CsvError::Header(3, "unknown column name".into()))
        );
        assert_eq!(
            parse(b"card_id,name\n"),
            Err(CsvError::MissingColumn("kind"))
        );
        assert_eq!(
            parse(b"card_id,kind,name\n\"x,1"),
            Err(CsvError::Unterminated(2))
        );
        assert_eq!(parse(b""), Err(CsvError::Empty));
    }

    #[test]
    fn dates() {
        for ok in ["2019-04-01", "2019/4/1", "20190401", "２０１９／０４／０１"] {
            assert_eq!(
                parse_date(ok).map(|d| d.as_str().to_string()).as_deref(),
                Some("2019-04-01"),
                "{ok}"
            );
        }
        for bad in ["2019-13-01", "19-04-01", "H31.4.1", "2019"] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }
}
