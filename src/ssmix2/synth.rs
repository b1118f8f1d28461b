//! Synthetic SS-MIX2 corpus generator: writes a valid 標準化ストレージ tree (standards-jp.md §3.1,
//! §3.2, §3.5) by templating the 19 real sample files of nhoHQ/SSMIX2DataTestingTool
//! (`sampleData/999/901/9999013/**`, Apache-2.0, see `templates/LICENSE`), embedded in the binary.
//!
//! Per patient, every template is re-rendered with:
//! * a new 10-digit 患者ID (PID-3 = `<pid>^^^^PI` in every file, so identity checks pass);
//! * a new name (kanji + katakana reading, PID-5 `I`/`P` repetitions; NK1-2 of 本人 likewise), birth
//!   date (PID-7, ZI1 insured's birth date), sex (PID-8);
//! * all dates / date-times (component tokens `YYYYMMDD[HH[MM[SS]]][.fff]`, years 1900–2099) shifted
//!   by one per-patient number of days, in content, 診療日 and 発生日時;
//! * new order numbers (ORC-2/3/8, OBR-2/3/29, PRB-4, SPM-2 and the file name; 15 digits, unique per
//!   file, relations inside a file preserved) and MSH-10 control IDs;
//! * perturbed numeric results (OBX-5 when OBX-2 = `NM`, ±10 %, same number of decimals:
//!   167.8 → e.g. 171.3);
//! * MSH-18 normalised to `~ISO IR87`; re-encoded to ISO-2022-JP with CR segment terminators.
//!
//! Deterministic for a seed (splitmix64; each patient depends only on `(seed, index)`), needs no
//! files at run time, and renders in memory before writing (benchmark: > 20 000 files/s).

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::sync::OnceLock;

use super::{storage_path, ConditionFlag, FileName};

/// The embedded templates: (file name, ISO-2022-JP bytes).
const TEMPLATES: &[(&str, &[u8])] = &[
    ("9999013_-_ADT-00_999999999999999_20111220224447339_-_1", include_bytes!("templates/9999013_-_ADT-00_999999999999999_20111220224447339_-_1")),
    ("9999013_-_ADT-61_999999999999999_20111014232213000_-_1", include_bytes!("templates/9999013_-_ADT-61_999999999999999_20111014232213000_-_1")),
    ("9999013_-_PPR-01_999999999999999_20111209163030000_01_1", include_bytes!("templates/9999013_-_PPR-01_999999999999999_20111209163030000_01_1")),
    ("9999013_20110630_OMP-11_123456789012345_20110701113813225_01_1", include_bytes!("templates/9999013_20110630_OMP-11_123456789012345_20110701113813225_01_1")),
    ("9999013_20110701_OMP-01_000000011000185_20110701224603984_01_1", include_bytes!("templates/9999013_20110701_OMP-01_000000011000185_20110701224603984_01_1")),
    ("9999013_20110701_OMP-02_123456789012345_20110701224603984_01_1", include_bytes!("templates/9999013_20110701_OMP-02_123456789012345_20110701224603984_01_1")),
    ("9999013_20110701_OMP-12_123456789012345_20110701113813225_01_1", include_bytes!("templates/9999013_20110701_OMP-12_123456789012345_20110701113813225_01_1")),
    ("9999013_20111013_OMD_123456789012345_20111014232213000_01_1", include_bytes!("templates/9999013_20111013_OMD_123456789012345_20111014232213000_01_1")),
    ("9999013_20111120_ADT-22_999999999999999_20111220224447339_01_1", include_bytes!("templates/9999013_20111120_ADT-22_999999999999999_20111220224447339_01_1")),
    ("9999013_20111220_ADT-42_999999999999999_20111220224447339_10_1", include_bytes!("templates/9999013_20111220_ADT-42_999999999999999_20111220224447339_10_1")),
    ("9999013_20111220_ADT-52_999999999999999_20111220224447339_08_1", include_bytes!("templates/9999013_20111220_ADT-52_999999999999999_20111220224447339_08_1")),
    ("9999013_20111220_OMG-01_000201101200100_20111220224447339_-_1", include_bytes!("templates/9999013_20111220_OMG-01_000201101200100_20111220224447339_-_1")),
    ("9999013_20111220_OMG-02_201212201252100_20111220224447339_01_1", include_bytes!("templates/9999013_20111220_OMG-02_201212201252100_20111220224447339_01_1")),
    ("9999013_20111220_OMG-03_201112200089100_20111220224447339_01_1", include_bytes!("templates/9999013_20111220_OMG-03_201112200089100_20111220224447339_01_1")),
    ("9999013_20111220_OMG-11_2011122000300_20111220224447339_24_1", include_bytes!("templates/9999013_20111220_OMG-11_2011122000300_20111220224447339_24_1")),
    ("9999013_20111220_OMG-12_201112201656100_20111220224447339_01_1", include_bytes!("templates/9999013_20111220_OMG-12_201112201656100_20111220224447339_01_1")),
    ("9999013_20111220_OMG-13_999999999999999_20111220224447339_01_1", include_bytes!("templates/9999013_20111220_OMG-13_999999999999999_20111220224447339_01_1")),
    ("9999013_20111220_OML-01_000000011000354_20111220103059123_15_1", include_bytes!("templates/9999013_20111220_OML-01_000000011000354_20111220103059123_15_1")),
    ("9999013_20111220_OML-11_000000011000354_20111220103059000_01_1", include_bytes!("templates/9999013_20111220_OML-11_000000011000354_20111220103059000_01_1")),
];

/// Number of files generated per patient (one per embedded template: 19 data types).
pub const FILES_PER_PATIENT: usize = 19;

/// Family names (kanji, katakana reading). All JIS X 0208.
pub const FAMILY_NAMES: [(&str, &str); 30] = [
    ("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ"), ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"), ("山本", "ヤマモト"), ("中村", "ナカムラ"), ("小林", "コバヤシ"), ("加藤", "カトウ"),
    ("吉田", "ヨシダ"), ("山田", "ヤマダ"), ("佐々木", "ササキ"), ("山口", "ヤマグチ"), ("松本", "マツモト"),
    ("井上", "イノウエ"), ("木村", "キムラ"), ("林", "ハヤシ"), ("斎藤", "サイトウ"), ("清水", "シミズ"),
    ("山崎", "ヤマザキ"), ("森", "モリ"), ("池田", "イケダ"), ("橋本", "ハシモト"), ("阿部", "アベ"),
    ("石川", "イシカワ"), ("山下", "ヤマシタ"), ("中島", "ナカジマ"), ("石井", "イシイ"), ("小川", "オガワ"),
];

/// Male given names (kanji, katakana reading).
pub const GIVEN_NAMES_MALE: [(&str, &str); 15] = [
    ("太郎", "タロウ"), ("一郎", "イチロウ"), ("健太", "ケンタ"), ("翔太", "ショウタ"), ("大輔", "ダイスケ"),
    ("誠", "マコト"), ("浩", "ヒロシ"), ("隆", "タカシ"), ("修", "オサム"), ("翔", "ショウ"),
    ("拓也", "タクヤ"), ("直樹", "ナオキ"), ("和也", "カズヤ"), ("博之", "ヒロユキ"), ("勇", "イサム"),
];

/// Female given names (kanji, katakana reading).
pub const GIVEN_NAMES_FEMALE: [(&str, &str); 15] = [
    ("花子", "ハナコ"), ("陽子", "ヨウコ"), ("恵子", "ケイコ"), ("美咲", "ミサキ"), ("由美", "ユミ"),
    ("真由美", "マユミ"), ("幸子", "サチコ"), ("愛", "アイ"), ("優子", "ユウコ"), ("智子", "トモコ"),
    ("直美", "ナオミ"), ("久美子", "クミコ"), ("明美", "アケミ"), ("京子", "キョウコ"), ("千尋", "チヒロ"),
];

/// Counts of a [`generate`] run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynthStats {
    /// Patients written.
    pub patients: usize,
    /// Files written (`patients × FILES_PER_PATIENT`).
    pub files: usize,
    /// Total bytes of the files written.
    pub bytes: u64,
}

/// Identity of a synthetic patient (what the files carry in PID; for tests and demo listings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthPatient {
    /// 10-digit 患者ID.
    pub patient_id: String,
    /// Family name, kanji.
    pub family: &'static str,
    /// Given name, kanji.
    pub given: &'static str,
    /// Family name reading, full-width katakana.
    pub family_kana: &'static str,
    /// Given name reading, full-width katakana.
    pub given_kana: &'static str,
    /// Birth date `YYYYMMDD`.
    pub birth_date: String,
    /// HL7 table 0001 sex, `M` or `F`.
    pub sex: char,
    /// Days added to every template date.
    pub day_shift: i32,
}

/// One rendered file: its SS-MIX2 name and ISO-2022-JP bytes (CR-terminated segments).
#[derive(Debug, Clone)]
pub struct SynthFile {
    /// File name (patient ID, shifted 診療日 and 発生日時, new order number).
    pub name: FileName,
    /// The message bytes.
    pub bytes: Vec<u8>,
}

/// splitmix64 (Steele, Lea, Flood 2014): a tiny deterministic PRNG.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Template holes.
#[derive(Debug, Clone)]
enum Piece {
    /// Literal text, already ISO-2022-JP encoded (every piece starts and ends in ASCII state; holes
    /// sit between HL7 delimiters, so concatenation gives canonical ISO-2022-JP).
    Lit(Vec<u8>),
    /// Date token: Julian day of the first 8 digits, followed by the literal rest (time, fraction).
    Date(i32, String),
    /// PID-3 / CX: `<pid>^^^^PI`.
    PidCx,
    /// XPN with kanji and kana repetitions.
    Name,
    Birth,
    Sex,
    ControlId,
    /// Order number k of this template (0 = the file name's, if not 999…).
    Order(usize),
    /// NM value: base value, number of decimals.
    Num(f64, usize),
}

#[derive(Debug)]
struct Template {
    name: FileName,
    /// Whether the file name order number maps to `Order(0)` (false for `999999999999999`).
    name_order_mapped: bool,
    care_jd: Option<i32>,
    ts_jd: i32,
    pieces: Vec<Piece>,
    approx_len: usize,
}

fn julian(date8: &str) -> Option<i32> {
    if date8.len() < 8 || !date8.as_bytes()[..8].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let y: i32 = date8[0..4].parse().ok()?;
    if !(1900..=2099).contains(&y) {
        return None;
    }
    let m = time::Month::try_from(date8[4..6].parse::<u8>().ok()?).ok()?;
    let d: u8 = date8[6..8].parse().ok()?;
    time::Date::from_calendar_date(y, m, d).ok().map(|d| d.to_julian_day())
}

fn push_date(out: &mut String, jd: i32) {
    let mut b = Vec::with_capacity(8);
    push_date_bytes(&mut b, jd);
    out.push_str(&String::from_utf8_lossy(&b));
}

/// `YYYYMMDD[HH[MM[SS]]][.f+]` with a valid date (years 1900–2099)?
fn date_token(tok: &str) -> Option<(i32, String)> {
    let (digits, frac) = match tok.split_once('.') {
        Some((d, f)) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => (d, Some(f)),
        Some(_) => return None,
        None => (tok, None),
    };
    if ![8, 10, 12, 14].contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.is_some() && digits.len() != 14 {
        return None;
    }
    let jd = julian(digits)?;
    Some((jd, tok[8..].to_owned()))
}

fn numeric_token(tok: &str) -> Option<(f64, usize)> {
    let body = tok.strip_prefix('-').unwrap_or(tok);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit() || b == b'.') || body.matches('.').count() > 1 {
        return None;
    }
    let decimals = body.split_once('.').map_or(0, |(_, f)| f.len());
    tok.parse::<f64>().ok().map(|v| (v, decimals))
}

struct Compiler {
    pieces: Vec<Piece>,
    orders: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum FieldKind {
    Plain,
    Order,
    Num,
}

impl Compiler {
    fn lit(&mut self, s: &str) {
        if let Some(Piece::Lit(last)) = self.pieces.last_mut() {
            last.extend_from_slice(s.as_bytes());
        } else {
            self.pieces.push(Piece::Lit(s.as_bytes().to_vec()));
        }
    }

    fn order_index(&mut self, v: &str) -> usize {
        if let Some(i) = self.orders.iter().position(|o| o == v) {
            i
        } else {
            self.orders.push(v.to_owned());
            self.orders.len() - 1
        }
    }

    fn field(&mut self, field: &str, kind: FieldKind) {
        let mut start = 0;
        let bytes = field.as_bytes();
        for i in 0..=bytes.len() {
            let at_delim = i == bytes.len() || matches!(bytes[i], b'^' | b'~' | b'&');
            if !at_delim {
                continue;
            }
            let tok = &field[start..i];
            let is_order = kind == FieldKind::Order
                && (10..=15).contains(&tok.len())
                && tok.bytes().all(|b| b.is_ascii_digit())
                && tok != "999999999999999";
            if is_order {
                let k = self.order_index(tok);
                self.pieces.push(Piece::Order(k));
            } else if let (FieldKind::Num, Some((v, d))) = (kind, numeric_token(tok)) {
                self.pieces.push(Piece::Num(v, d));
            } else if let Some((jd, rest)) = date_token(tok) {
                self.pieces.push(Piece::Date(jd, rest));
            } else {
                self.lit(tok);
            }
            if i < bytes.len() {
                self.lit(&field[i..=i]);
            }
            start = i + 1;
        }
    }
}

fn compile(file_name: &str, bytes: &[u8]) -> Template {
    let name = FileName::parse(file_name).expect("embedded template names are valid");
    let body = bytes.strip_suffix(&[0x1c]).unwrap_or(bytes);
    let (text, _, _) = encoding_rs::ISO_2022_JP.decode(body);
    let mut c = Compiler { pieces: Vec::new(), orders: Vec::new() };
    let name_order_mapped = name.order_number != "999999999999999";
    if name_order_mapped {
        c.order_index(&name.order_number.clone());
    }
    let mut birth_literal: Option<String> = None;
    for seg in text.split(['\r', '\n']).filter(|s| !s.is_empty()) {
        let mut fields: Vec<&str> = seg.split('|').collect();
        let id = fields[0];
        if id == "PID" && fields.len() < 9 {
            fields.resize(9, "");
        }
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                c.lit("|");
            }
            // Field numbers: MSH-n is fields[n-1] (MSH-1 is the separator), others SEG-n = fields[n].
            match (id, i) {
                (_, 0) => c.lit(f),
                ("MSH", 1) => c.lit(f),
                ("MSH", 9) => c.pieces.push(Piece::ControlId),
                ("MSH", 17) => c.lit("~ISO IR87"),
                ("PID", 3) => c.pieces.push(Piece::PidCx),
                ("PID", 5) => c.pieces.push(Piece::Name),
                ("PID", 7) => {
                    if !f.is_empty() {
                        birth_literal = Some(f.to_string());
                    }
                    c.pieces.push(Piece::Birth)
                }
                ("PID", 8) => c.pieces.push(Piece::Sex),
                ("PID", 9) if date_token(f).is_some() => birth_literal = Some(f.to_string()),
                ("NK1", 2) if fields.get(3).is_some_and(|r| r.starts_with("SEL")) => c.pieces.push(Piece::Name),
                ("ZI1" | "IN1", _) if birth_literal.as_deref() == Some(*f) => c.pieces.push(Piece::Birth),
                ("ORC", 2 | 3 | 8) | ("OBR", 2 | 3 | 29) | ("PRB", 4) | ("SPM", 2) => c.field(f, FieldKind::Order),
                ("OBX", 5) if fields.get(2) == Some(&"NM") => c.field(f, FieldKind::Num),
                _ => c.field(f, FieldKind::Plain),
            }
        }
        c.lit("\r");
    }
    // Encode the literal pieces (UTF-8 so far) once.
    for piece in &mut c.pieces {
        if let Piece::Lit(utf8) = piece {
            let text = String::from_utf8_lossy(utf8).into_owned();
            *utf8 = encoding_rs::ISO_2022_JP.encode(&text).0.into_owned();
        }
    }
    let care_jd = name.care_date.as_deref().and_then(julian);
    let ts_jd = julian(&name.timestamp).unwrap_or(0);
    Template { name, name_order_mapped, care_jd, ts_jd, approx_len: bytes.len() + 64, pieces: c.pieces }
}

fn templates() -> &'static [Template] {
    static T: OnceLock<Vec<Template>> = OnceLock::new();
    T.get_or_init(|| TEMPLATES.iter().map(|(n, b)| compile(n, b)).collect())
}

/// A deterministic synthetic-patient factory (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Synthesizer {
    seed: u64,
}

/// 9 × 10⁹ 10-digit IDs; the multiplier is coprime with it, so `index → ID` is injective.
const PID_SPACE: u64 = 9_000_000_000;
const PID_MUL: u64 = 1_000_003;

impl Synthesizer {
    /// A synthesizer for `seed`.
    pub fn new(seed: u64) -> Synthesizer {
        Synthesizer { seed }
    }

    fn rng(&self, index: usize) -> SplitMix64 {
        let mut r = SplitMix64(self.seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }

    /// The identity of patient `index` (0-based; distinct indexes give distinct 10-digit IDs for
    /// indexes < 9 × 10⁹).
    pub fn patient(&self, index: usize) -> SynthPatient {
        let mut r = self.rng(index);
        let offset = SplitMix64(self.seed).next() % PID_SPACE;
        let pid = 1_000_000_000 + ((index as u64 % PID_SPACE) * PID_MUL + offset) % PID_SPACE;
        let sex = if r.below(2) == 0 { 'M' } else { 'F' };
        let (family, family_kana) = FAMILY_NAMES[r.below(FAMILY_NAMES.len() as u64) as usize];
        let given_list: &[(&str, &str)] = if sex == 'M' { &GIVEN_NAMES_MALE } else { &GIVEN_NAMES_FEMALE };
        let (given, given_kana) = given_list[r.below(given_list.len() as u64) as usize];
        // Birth 1930-01-01 .. 2000-12-31; dates shifted from 2011 into 2001 .. 2024.
        let b0 = julian("19300101").unwrap_or(0);
        let b1 = julian("20001231").unwrap_or(0);
        let mut birth_date = String::with_capacity(8);
        push_date(&mut birth_date, b0 + r.below((b1 - b0) as u64) as i32);
        let day_shift = r.below(365 * 13) as i32 - 365 * 10;
        SynthPatient {
            patient_id: pid.to_string(),
            family,
            given,
            family_kana,
            given_kana,
            birth_date,
            sex,
            day_shift,
        }
    }

    /// Renders all [`FILES_PER_PATIENT`] files of patient `index` in memory.
    pub fn patient_files(&self, index: usize) -> (SynthPatient, Vec<SynthFile>) {
        let p = self.patient(index);
        let mut r = self.rng(index);
        for _ in 0..8 {
            r.next();
        }
        let xpn = format!("{}^{}^^^^^L^I~{}^{}^^^^^L^P", p.family, p.given, p.family_kana, p.given_kana);
        let pb = PatientBytes { p: &p, name: encoding_rs::ISO_2022_JP.encode(&xpn).0.into_owned() };
        let files = templates()
            .iter()
            .enumerate()
            .map(|(t_idx, t)| {
                let serial = (index as u64) * FILES_PER_PATIENT as u64 + t_idx as u64;
                render(t, &pb, serial, &mut r)
            })
            .collect();
        (p, files)
    }
}

fn push_date_bytes(out: &mut Vec<u8>, jd: i32) {
    let (y, m, d) = match time::Date::from_julian_day(jd) {
        Ok(d) => (d.year().clamp(0, 9999) as u32, d.month() as u32, d.day() as u32),
        Err(_) => (2000, 1, 1),
    };
    let digits = [y / 1000, y / 100 % 10, y / 10 % 10, y % 10, m / 10, m % 10, d / 10, d % 10];
    out.extend(digits.iter().map(|&x| b'0' + x as u8));
}

fn push_order_number(out: &mut Vec<u8>, serial: u64, k: usize) {
    let _ = write!(VecWriter(out), "{:015}", (serial * 100 + k as u64) % 1_000_000_000_000_000);
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Per-patient values rendered once (the name already ISO-2022-JP encoded).
struct PatientBytes<'p> {
    p: &'p SynthPatient,
    name: Vec<u8>,
}

fn render(t: &Template, pb: &PatientBytes<'_>, serial: u64, r: &mut SplitMix64) -> SynthFile {
    let p = pb.p;
    let mut out = Vec::with_capacity(t.approx_len);
    for piece in &t.pieces {
        match piece {
            Piece::Lit(b) => out.extend_from_slice(b),
            Piece::Date(jd, rest) => {
                push_date_bytes(&mut out, jd + p.day_shift);
                out.extend_from_slice(rest.as_bytes());
            }
            Piece::PidCx => {
                out.extend_from_slice(p.patient_id.as_bytes());
                out.extend_from_slice(b"^^^^PI");
            }
            Piece::Name => out.extend_from_slice(&pb.name),
            Piece::Birth => out.extend_from_slice(p.birth_date.as_bytes()),
            Piece::Sex => out.push(p.sex as u8),
            Piece::ControlId => {
                out.extend_from_slice(p.patient_id.as_bytes());
                let n = (serial % FILES_PER_PATIENT as u64) as u8;
                out.extend_from_slice(&[b'0' + n / 10, b'0' + n % 10]);
            }
            Piece::Order(k) => push_order_number(&mut out, serial, *k),
            Piece::Num(v, d) => {
                let f = 1.0 + (r.unit() * 0.2 - 0.1);
                let _ = write!(VecWriter(&mut out), "{:.*}", *d, v * f);
            }
        }
    }
    let mut name = t.name.clone();
    name.patient_id.clone_from(&p.patient_id);
    if let Some(jd) = t.care_jd {
        let mut s = Vec::with_capacity(8);
        push_date_bytes(&mut s, jd + p.day_shift);
        name.care_date = Some(String::from_utf8_lossy(&s).into_owned());
    }
    let mut ts = Vec::with_capacity(17);
    push_date_bytes(&mut ts, t.ts_jd + p.day_shift);
    ts.extend_from_slice(&t.name.timestamp.as_bytes()[8..]);
    name.timestamp = String::from_utf8_lossy(&ts).into_owned();
    if t.name_order_mapped {
        let mut o = Vec::with_capacity(15);
        push_order_number(&mut o, serial, 0);
        name.order_number = String::from_utf8_lossy(&o).into_owned();
    }
    debug_assert_eq!(name.condition, ConditionFlag::Valid);
    SynthFile { name, bytes: out }
}

/// Writes a synthetic SS-MIX2 storage with `patients` patients (19 files each, one per data type
/// of the real sample) under `out_root` (created if missing), laid out per standards-jp.md §3.1.
/// Patient `i` is identical for the same `(seed, i)` whatever `patients` is.
///
/// Errors: the first I/O error creating directories or writing files (the tree is then partial).
pub fn generate(out_root: &Path, patients: usize, seed: u64) -> io::Result<SynthStats> {
    generate_range(out_root, 0, patients, seed)
}

/// Like [`generate`] for patients `first .. first + patients` of `seed` (distinct chunks of one corpus:
/// the same patients as one [`generate`] of `first + patients`, split over several storage roots).
/// Errors: I/O.
pub fn generate_range(out_root: &Path, first: usize, patients: usize, seed: u64) -> io::Result<SynthStats> {
    let synth = Synthesizer::new(seed);
    let mut stats = SynthStats::default();
    std::fs::create_dir_all(out_root)?;
    for i in first..first.saturating_add(patients) {
        let (_, files) = synth.patient_files(i);
        let mut last_dir = std::path::PathBuf::new();
        for f in files {
            let path = storage_path(out_root, &f.name);
            if let Some(dir) = path.parent() {
                if dir != last_dir {
                    std::fs::create_dir_all(dir)?;
                    last_dir = dir.to_path_buf();
                }
            }
            std::fs::write(&path, &f.bytes)?;
            stats.files += 1;
            stats.bytes += f.bytes.len() as u64;
        }
        stats.patients += 1;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7v2::{DecodeOptions, Message};

    #[test]
    fn templates_compile_and_roundtrip_unchanged_encoding() {
        assert_eq!(templates().len(), FILES_PER_PATIENT);
        for (name, bytes) in TEMPLATES {
            let body = bytes.strip_suffix(&[0x1c]).unwrap_or(bytes);
            let (text, _, err) = encoding_rs::ISO_2022_JP.decode(body);
            assert!(!err, "{name}");
            let (enc, _, err) = encoding_rs::ISO_2022_JP.encode(&text);
            assert!(!err, "{name}");
            assert_eq!(&enc[..], body, "{name}: ISO-2022-JP round trip");
        }
    }

    #[test]
    fn deterministic_and_distinct() {
        let s = Synthesizer::new(42);
        let (a, fa) = s.patient_files(3);
        let (b, fb) = s.patient_files(3);
        assert_eq!(a, b);
        assert!(fa.iter().zip(&fb).all(|(x, y)| x.bytes == y.bytes && x.name == y.name));
        let ids: std::collections::HashSet<String> = (0..2000).map(|i| s.patient(i).patient_id).collect();
        assert_eq!(ids.len(), 2000);
        assert!(ids.iter().all(|id| id.len() == 10));
        assert_ne!(Synthesizer::new(43).patient(3), a);
    }

    #[test]
    fn generated_files_parse_cleanly_and_carry_identity() {
        let s = Synthesizer::new(7);
        for i in 0..40 {
            let (p, files) = s.patient_files(i);
            assert_eq!(files.len(), FILES_PER_PATIENT);
            for f in &files {
                let (_, _, err) = encoding_rs::ISO_2022_JP.decode(&f.bytes);
                assert!(!err);
                assert!(!f.bytes.contains(&b'\n'));
                let m = Message::parse(&f.bytes, &DecodeOptions::default()).expect("parses");
                assert!(m.warnings().is_empty(), "{}: {:?}", f.name, m.warnings());
                let (ty, trig, _) = m.message_type();
                assert!(f.name.data_type.accepts_message(ty, trig), "{}: {ty}^{trig}", f.name);
                let pid = m.segment("PID").expect("PID");
                assert_eq!(pid.field(3).rep(1).comp(1).text(), p.patient_id.as_str());
                assert_eq!(pid.field(5).rep(1).comp(1).text(), p.family);
                assert_eq!(pid.field(5).rep(1).comp(2).text(), p.given);
                assert_eq!(pid.field(5).rep(2).comp(1).text(), p.family_kana);
                assert_eq!(pid.field(5).rep(2).comp(2).text(), p.given_kana);
                assert_eq!(pid.field(7).text(), p.birth_date.as_str());
                assert_eq!(pid.field(8).text(), p.sex.to_string().as_str());
                // the name round-trips through the file name parser
                assert_eq!(FileName::parse(&f.name.to_string()).as_ref(), Ok(&f.name));
                assert_eq!(f.name.patient_id, p.patient_id);
            }
        }
    }

    #[test]
    fn numbers_keep_decimals() {
        let s = Synthesizer::new(1);
        let (_, files) = s.patient_files(0);
        let adt = files.iter().find(|f| f.name.data_type == super::super::DataType::Adt00).unwrap();
        let m = Message::parse(&adt.bytes, &DecodeOptions::default()).unwrap();
        let obx: Vec<_> = m.segments().filter(|s| s.id() == "OBX").collect();
        let height = obx[0].field(5).text();
        let (int, frac) = height.split_once('.').expect("one decimal");
        assert_eq!(frac.len(), 1);
        let v: f64 = height.parse().unwrap();
        assert!((150.0..185.0).contains(&v), "{height} {int}");
    }
}
