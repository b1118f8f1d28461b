//! The emergency (救急モード) and multi-disciplinary (多職種連携モード) patient summaries: a FHIR R4
//! **document** Bundle (FHIR R4 `documents.html`, `Composition`) shaped after the International Patient
//! Summary (IPS, `http://hl7.org/fhir/uv/ips`), plus the view model the reference HTML viewer renders.
//!
//! This module is pure: it takes the resources the API gathered through `api::access` ([`Sources`]) and
//! builds [`Summary`] — no store, no clock (the caller passes `now` in [`Options`]), no logging.
//!
//! # Sections
//!
//! One Composition section per Tobiume-net section ([`Section`], the registration CodeSystem
//! `summary-section`), **in the network's order** (the order of [`Section::ALL`], the order of the
//! views in `docs/domain.md` §1.1):
//!
//! | mode | sections |
//! |---|---|
//! | `emergency` | registration (incl. 緊急時紹介先医療機関), prescriptions, contraindicated drugs, main diagnoses, history, allergies, current treatment, wishes for emergency care — exactly [`Section::in_emergency_mode`] |
//! | `multidisciplinary` | all 16: the above plus patient's wishes, remarks, ADL, disability, long-term care, impairments, dementia, behaviour |
//!
//! Every section of the mode is present, also when nothing is registered (then `emptyReason`
//! `unavailable` and the narrative 「登録なし」), so a reader can tell "none registered" from "not
//! shown". `section.code` carries the IPS LOINC code where IPS defines the section ([`ips_loinc`]:
//! problems 11450-4, past illness 11348-0, allergies 48765-2, medications 10160-0, devices 46264-8,
//! advance directives 42348-3, functional status 47420-5) **and** always the Tobiume `summary-section`
//! code. Each section has `text` (generated XHTML: every item with its last-updated date, author and
//! source; contraindicated drugs in red) and, when it has items, the extension
//! [`SECTION_LAST_UPDATED`] (`valueDateTime`) = the latest of its items' last-updated dates.
//!
//! # Merged SS-MIX2 data
//!
//! Resources of SS-MIX2 Patients linked to the registration (the linking rule is the API's, see
//! `api::operation::summary`) are merged in, each with its source shown:
//!
//! * `Condition` (all, except `verificationStatus` entered-in-error / refuted): clinical status
//!   inactive / remission / resolved → 病名・病歴等 (History, IPS past illness), otherwise 主な病名
//!   (MainDiagnoses, IPS problem list);
//! * `AllergyIntolerance` (all, except entered-in-error / refuted) → アレルギー;
//! * `MedicationRequest` with `authoredOn` within the last [`MEDICATION_WINDOW_MONTHS`] months before
//!   `now` (status not entered-in-error / cancelled) → 処方.
//!
//! Their Bundle copies get `meta.source` (if they had none), one `Provenance` per source lists them
//! (`agent.who.display` = the hospital), and the item shows `出典: SS-MIX2 (病院名)`.
//!
//! # Bundle
//!
//! `Bundle.type = document`, `identifier` (`urn:ietf:rfc:3986` / `urn:uuid:…`), `timestamp` = `now`;
//! the Composition first (`urn:uuid:` fullUrl), then the subject Patient and every section entry
//! (fullUrl `<base>/<Type>/<id>`, the stored resource), the linked SS-MIX2 Patients, the Provenances.
//! Composition: `status final`, `type` LOINC 60591-5 (Patient summary Document), `subject`, `date`,
//! `author` (the gateway, display only), `title` 救急用サマリー / 多職種連携サマリー, `confidentiality`
//! R. Section entries reference the fullUrls (absolute). IPS conformance is *structural* (document
//! shape, section codes, required sections always present); the Bundle does not claim the IPS profiles
//! (JP Core-profiled entries, Tobiume sections IPS lacks).

pub mod items;

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::mapping::registration::{
    from_fhir, section_of, Choice, Registration, Section, CODE_SYSTEM_BASE,
};
pub use items::ItemView;

/// LOINC system URI.
pub const LOINC: &str = "http://loinc.org";
/// LOINC 60591-5 "Patient summary Document" (IPS `Composition.type`).
pub const PATIENT_SUMMARY_DOCUMENT: &str = "60591-5";
/// Extension on `Composition.section`: `valueDateTime`, the latest last-updated date of the section's
/// items (Tobiume-net plus shows a last-updated date per item; the section shows the newest).
pub const SECTION_LAST_UPDATED: &str =
    "http://tobiume-gateway.local/fhir/StructureDefinition/section-last-updated";
/// `meta.source` given to merged SS-MIX2 resources (suffixed `:<facility code>` when known).
pub const SSMIX2_SOURCE: &str = "urn:tobiume:source:ssmix2";
/// Prescriptions from SS-MIX2 are shown for this many months before `now` (the national 救急用サマリー
/// shows 3 months of drugs, `reference/federation-security.md` §6).
pub const MEDICATION_WINDOW_MONTHS: u32 = 3;

/// The two views of Tobiume-net plus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// 救急モード.
    Emergency,
    /// 多職種連携モード.
    Multidisciplinary,
}

impl Mode {
    /// Parses the `mode` parameter: `emergency` | `multidisciplinary` (exact, lower case).
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "emergency" => Some(Mode::Emergency),
            "multidisciplinary" => Some(Mode::Multidisciplinary),
            _ => None,
        }
    }
    /// The parameter value.
    pub fn code(self) -> &'static str {
        match self {
            Mode::Emergency => "emergency",
            Mode::Multidisciplinary => "multidisciplinary",
        }
    }
    /// `Composition.title`: 救急用サマリー / 多職種連携サマリー.
    pub fn title(self) -> &'static str {
        match self {
            Mode::Emergency => "救急用サマリー",
            Mode::Multidisciplinary => "多職種連携サマリー",
        }
    }
    /// The view's name: 救急モード / 多職種連携モード.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Emergency => "救急モード",
            Mode::Multidisciplinary => "多職種連携モード",
        }
    }
    /// The sections of this mode in the network's order.
    pub fn sections(self) -> Vec<Section> {
        Section::ALL
            .iter()
            .copied()
            .filter(|s| match self {
                Mode::Emergency => s.in_emergency_mode(),
                Mode::Multidisciplinary => s.in_multidisciplinary_mode(),
            })
            .collect()
    }
}

/// The IPS section code (LOINC code, display) for a Tobiume-net section, where IPS defines one.
pub fn ips_loinc(s: Section) -> Option<(&'static str, &'static str)> {
    Some(match s {
        Section::Prescriptions => ("10160-0", "History of Medication use Narrative"),
        Section::MainDiagnoses => ("11450-4", "Problem list - Reported"),
        Section::History => ("11348-0", "History of Past illness Narrative"),
        Section::Allergies => ("48765-2", "Allergies and adverse reactions Document"),
        Section::CurrentTreatment => ("46264-8", "History of medical device use"),
        Section::EmergencyCareWishes => ("42348-3", "Advance directives"),
        Section::Adl => ("47420-5", "Functional status assessment note"),
        _ => return None,
    })
}

/// The resources of one linked external source (an SS-MIX2 Patient and its data).
#[derive(Debug, Clone)]
pub struct LinkedSource {
    /// The source's Patient resource (e.g. `Patient/9999013.ADT-00`).
    pub patient: Value,
    /// Who sent it, as shown: `SS-MIX2 (福岡市民病院)`.
    pub label: String,
    /// The hospital / sending facility name alone (Provenance `agent.who.display`).
    pub facility: String,
    /// `meta.source` for its merged resources.
    pub source_uri: String,
    /// Its Condition, AllergyIntolerance and MedicationRequest resources (others are ignored).
    pub resources: Vec<Value>,
}

/// Everything a summary is built from (gathered by the API through `access::read_resources`).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The Patient the summary is about: the registration Patient when there is one, else the requested
    /// (SS-MIX2) Patient.
    pub subject: Value,
    /// The registration's resources (Patient, Organizations, Practitioners, CareTeam, Coverage,
    /// Conditions, …, as [`crate::mapping::registration::to_fhir`] makes them); empty when the patient
    /// has no registration.
    pub registration: Vec<Value>,
    /// Linked SS-MIX2 sources.
    pub linked: Vec<LinkedSource>,
    /// The stored JSON text of resources above, by `Type/id` ([`raw_key`]), as read from the store: a resource the
    /// summary passes through unchanged is written into the Bundle from this text (no re-serialisation;
    /// decimals and member order as stored). Every text must be the JSON of the same version as its
    /// parsed `Value`; resources without an entry are serialised from their `Value`.
    pub raw: HashMap<String, String>,
}

/// Build options.
#[derive(Debug, Clone)]
pub struct Options {
    /// "Now": `Bundle.timestamp`, `Composition.date`, the start of the prescription window, ages.
    pub now: OffsetDateTime,
    /// FHIR base URL (no trailing slash) for `fullUrl`s.
    pub base_url: String,
    /// Months of SS-MIX2 prescriptions shown (default [`MEDICATION_WINDOW_MONTHS`]).
    pub medication_window_months: u32,
    /// `Composition.author.display`, e.g. `tobiume-gateway 0.1.0`.
    pub generator: String,
}

impl Options {
    /// Options with `now`, `base_url` and the defaults.
    pub fn new(now: OffsetDateTime, base_url: impl Into<String>) -> Options {
        Options {
            now,
            base_url: base_url.into(),
            medication_window_months: MEDICATION_WINDOW_MONTHS,
            generator: format!("tobiume-gateway {}", env!("CARGO_PKG_VERSION")),
        }
    }
    /// Start of the prescription window ([`medication_window_start`]).
    pub fn window_start(&self) -> OffsetDateTime {
        medication_window_start(self.now, self.medication_window_months)
    }
}

/// `now` minus `months` calendar months, in Japan time (the day clamped to the month's length:
/// 2026-05-31 − 3 months = 2026-02-28).
pub fn medication_window_start(now: OffsetDateTime, months: u32) -> OffsetDateTime {
    let jst = time::UtcOffset::from_hms(9, 0, 0).unwrap_or(time::UtcOffset::UTC);
    let local = now.to_offset(jst);
    let total = local.year() * 12 + (u8::from(local.month()) as i32 - 1) - months as i32;
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
    let month = time::Month::try_from((month0 + 1) as u8).unwrap_or(time::Month::January);
    let day = local.day().min(month.length(year));
    time::Date::from_calendar_date(year, month, day)
        .map(|d| local.replace_date(d))
        .unwrap_or(local)
}

/// One section as shown.
#[derive(Debug, Clone)]
pub struct SectionView {
    /// Which section.
    pub section: Section,
    /// Its Japanese title ([`Choice::display`]).
    pub title: &'static str,
    /// IPS LOINC code, if any.
    pub loinc: Option<(&'static str, &'static str)>,
    /// The latest item date (FHIR dateTime as given), `None` when empty.
    pub last_updated: Option<String>,
    /// The lines, registered items first (form order), then merged external data.
    pub items: Vec<ItemView>,
    /// The section's entries as absolute fullUrls.
    pub entries: Vec<String>,
}

/// The patient header of the view.
#[derive(Debug, Clone, Default)]
pub struct PatientHeader {
    /// Logical id of the subject Patient.
    pub id: String,
    /// Kanji name.
    pub name: Option<String>,
    /// Kana name.
    pub kana: Option<String>,
    /// Birth date (FHIR date).
    pub birth_date: Option<String>,
    /// Age in full years at `now` (Japan time).
    pub age: Option<i32>,
    /// 男性 / 女性 / その他 / 不明.
    pub sex: Option<String>,
    /// Tobiume-net card id, when registered.
    pub card_id: Option<String>,
}

/// The summary as the viewer shows it (same content as the Bundle).
#[derive(Debug, Clone)]
pub struct View {
    /// The mode.
    pub mode: Mode,
    /// 救急用サマリー / 多職種連携サマリー.
    pub title: &'static str,
    /// Who.
    pub patient: PatientHeader,
    /// When generated (RFC 3339, Japan time).
    pub generated: String,
    /// The mode's sections in order.
    pub sections: Vec<SectionView>,
    /// `true` when the registration resources could not be read as a registration and are shown
    /// generically.
    pub degraded: bool,
}

/// A built summary: the FHIR document Bundle and the view model.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The `document` Bundle as JSON text (UTF-8, `application/fhir+json`): written directly, with the
    /// stored resources passed through from [`Sources::raw`].
    pub bundle: Vec<u8>,
    /// The view model.
    pub view: View,
}

fn rtype_id(r: &Value) -> Option<(&str, &str)> {
    Some((r.get("resourceType")?.as_str()?, r.get("id")?.as_str()?))
}

/// The key of resource `r` in [`Sources::raw`]: `Type/id` (`None` without `resourceType` or `id`).
pub fn raw_key(r: &Value) -> Option<String> {
    rtype_id(r).map(|(t, id)| format!("{t}/{id}"))
}

/// Sort key of a FHIR date/dateTime: (start instant, precision) — `None` if it does not parse.
fn date_key(s: &str) -> Option<(i64, usize)> {
    crate::search::value::parse_date_range(s).map(|(lo, _)| (lo, s.len()))
}

/// The latest of some FHIR dates/dateTimes (as given).
pub fn latest<'a>(dates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    dates
        .into_iter()
        .filter_map(|d| date_key(d).map(|k| (k, d)))
        .max_by_key(|(k, _)| *k)
        .map(|(_, d)| d.to_string())
}

fn coded_status(r: &Value, pointer: &str) -> Option<String> {
    items::code_at(r, pointer).map(str::to_string)
}

/// Where a merged resource goes, or `None` when it is not shown (wrong type, entered in error, outside
/// the prescription window).
fn external_section(r: &Value, window_start_ms: i64) -> Option<Section> {
    let rtype = r.get("resourceType")?.as_str()?;
    let ver = coded_status(r, "/verificationStatus");
    if matches!(ver.as_deref(), Some("entered-in-error") | Some("refuted")) {
        return None;
    }
    match rtype {
        "Condition" => match coded_status(r, "/clinicalStatus").as_deref() {
            Some("inactive") | Some("remission") | Some("resolved") => Some(Section::History),
            _ => Some(Section::MainDiagnoses),
        },
        "AllergyIntolerance" => Some(Section::Allergies),
        "MedicationRequest" => {
            if matches!(
                r.get("status").and_then(Value::as_str),
                Some("entered-in-error") | Some("cancelled")
            ) {
                return None;
            }
            let authored = r.get("authoredOn").and_then(Value::as_str)?;
            let (_, hi) = crate::search::value::parse_date_range(authored)?;
            (hi >= window_start_ms).then_some(Section::Prescriptions)
        }
        _ => None,
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    let jst = time::UtcOffset::from_hms(9, 0, 0).unwrap_or(time::UtcOffset::UTC);
    t.to_offset(jst)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn age_at(birth: &str, now: OffsetDateTime) -> Option<i32> {
    let jst = time::UtcOffset::from_hms(9, 0, 0).ok()?;
    let today = now.to_offset(jst).date();
    let y: i32 = birth.get(0..4)?.parse().ok()?;
    let m: u8 = birth.get(5..7)?.parse().ok()?;
    let d: u8 = birth.get(8..10)?.parse().ok()?;
    let mut age = today.year() - y;
    if (u8::from(today.month()), today.day()) < (m, d) {
        age -= 1;
    }
    (age >= 0).then_some(age)
}

/// The header from a registration, or else from the subject Patient JSON (JP Core: kanji name with
/// `iso21090-EN-representation` IDE, kana SYL).
fn header(subject: &Value, reg: Option<&Registration>, now: OffsetDateTime) -> PatientHeader {
    let id = subject
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(r) = reg {
        let d = &r.demographics;
        let name = |n: &crate::mapping::registration::PersonName| match &n.given {
            Some(g) => format!("{} {}", n.family, g),
            None => n.family.clone(),
        };
        return PatientHeader {
            id,
            name: Some(name(&d.name_kanji.value)),
            kana: Some(name(&d.name_kana.value)),
            birth_date: Some(d.birth_date.value.as_str().to_string()),
            age: age_at(d.birth_date.value.as_str(), now),
            sex: items::gender_ja(d.sex.value.code()).map(str::to_string),
            card_id: Some(r.card_id.as_str().to_string()),
        };
    }
    let names: Vec<&Value> = subject
        .get("name")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let repr = |n: &Value| {
        n.get("extension")?
            .as_array()?
            .iter()
            .find_map(|e| e.get("valueCode").and_then(Value::as_str))
            .map(str::to_string)
    };
    let text = |n: &Value| {
        n.get("text")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                let family = n.get("family").and_then(Value::as_str).unwrap_or("");
                let given: Vec<&str> = n
                    .get("given")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let s = format!("{family} {}", given.join(" ")).trim().to_string();
                (!s.is_empty()).then_some(s)
            })
    };
    let kanji = names
        .iter()
        .find(|n| repr(n).as_deref() == Some("IDE"))
        .or(names.first())
        .and_then(|n| text(n));
    let kana = names
        .iter()
        .find(|n| repr(n).as_deref() == Some("SYL"))
        .and_then(|n| text(n));
    let birth = subject
        .get("birthDate")
        .and_then(Value::as_str)
        .map(str::to_string);
    PatientHeader {
        id,
        name: kanji,
        kana,
        age: birth.as_deref().and_then(|b| age_at(b, now)),
        birth_date: birth,
        sex: subject
            .get("gender")
            .and_then(Value::as_str)
            .and_then(items::gender_ja)
            .map(str::to_string),
        card_id: None,
    }
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// The section narrative (FHIR R4 Narrative: XHTML `div`, no scripts; inline `style` only).
fn narrative(s: &SectionView) -> String {
    let mut h = String::from("<div xmlns=\"http://www.w3.org/1999/xhtml\">");
    if s.items.is_empty() {
        h.push_str("<p>登録なし</p>");
    } else {
        if let Some(d) = &s.last_updated {
            h.push_str(&format!("<p>最終更新: {}</p>", esc(d)));
        }
        h.push_str("<ul>");
        for it in &s.items {
            if it.contraindicated {
                h.push_str("<li style=\"color:#c00\"><b>禁忌</b> ");
            } else {
                h.push_str("<li>");
            }
            h.push_str(&format!("{}: {}", esc(&it.label), esc(&it.text)));
            let mut meta = Vec::new();
            if let Some(d) = &it.last_updated {
                meta.push(format!("更新 {}", esc(d)));
            }
            if let Some(a) = &it.author {
                meta.push(esc(a));
            }
            if let Some(src) = &it.source {
                meta.push(format!("出典: {}", esc(src)));
            }
            if !meta.is_empty() {
                h.push_str(&format!(" [{}]", meta.join(" ")));
            }
            h.push_str("</li>");
        }
        h.push_str("</ul>");
    }
    h.push_str("</div>");
    h
}

/// Builds the summary of `src` in `mode`. Never fails: a registration that
/// [`from_fhir`] cannot read is shown item by item from its resources ([`View::degraded`]).
///
/// Output: see the module docs (document Bundle + view). Spec: FHIR R4 `documents.html`,
/// `composition.html` (cmp-1: every section has text; cmp-2: `emptyReason` only when empty), IPS
/// section codes.
pub fn build(src: &Sources, mode: Mode, opts: &Options) -> Summary {
    let base = opts.base_url.trim_end_matches('/');
    let full_url = |t: &str, id: &str| format!("{base}/{t}/{id}");
    let sections = mode.sections();
    let wanted: HashSet<Section> = sections.iter().copied().collect();

    // Registered items.
    let reg = if src.registration.is_empty() {
        None
    } else {
        from_fhir(&src.registration).ok()
    };
    let degraded = !src.registration.is_empty() && reg.is_none();
    let mut per_section: Vec<(Section, ItemView)> = match &reg {
        Some(r) => items::registration_items(r),
        None => src
            .registration
            .iter()
            .filter_map(|r| Some((section_of(r)?, items::generic_registration_item(r)?)))
            .collect(),
    };

    // Entries (registration resources by section, then merged ones).
    let mut entries: Vec<(Section, String)> = Vec::new();
    let mut bundle_resources: Vec<(String, EntryRes<'_>)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let subject_url = rtype_id(&src.subject)
        .map(|(t, id)| full_url(t, id))
        .unwrap_or_default();
    for r in &src.registration {
        let (Some(s), Some((t, id))) = (section_of(r), rtype_id(r)) else {
            continue;
        };
        if !wanted.contains(&s) {
            continue;
        }
        let url = full_url(t, id);
        entries.push((s, url.clone()));
        if seen.insert(url.clone()) {
            bundle_resources.push((url, EntryRes::Stored(r)));
        }
    }

    let window_ms = (opts.window_start().unix_timestamp_nanos() / 1_000_000) as i64;
    let mut provenances: Vec<Value> = Vec::new();
    let mut linked_patients: Vec<(String, EntryRes<'_>)> = Vec::new();
    for l in &src.linked {
        let mut targets = Vec::new();
        for r in &l.resources {
            let (Some(s), Some((t, id))) = (external_section(r, window_ms), rtype_id(r)) else {
                continue;
            };
            if !wanted.contains(&s) {
                continue;
            }
            let url = full_url(t, id);
            if !seen.insert(url.clone()) {
                continue;
            }
            if let Some(item) = items::external_item(r, &l.label) {
                per_section.push((s, item));
            }
            entries.push((s, url.clone()));
            let mut copy = r.clone();
            if let Some(obj) = copy.as_object_mut() {
                let meta = obj.entry("meta").or_insert_with(|| json!({}));
                if let Some(m) = meta.as_object_mut() {
                    m.entry("source").or_insert_with(|| json!(l.source_uri));
                }
            }
            targets.push(json!({ "reference": url }));
            bundle_resources.push((url, EntryRes::Owned(copy)));
        }
        if let Some((t, id)) = rtype_id(&l.patient) {
            let url = full_url(t, id);
            if url != subject_url
                && !targets.is_empty()
                && !linked_patients.iter().any(|(u, _)| *u == url)
            {
                linked_patients.push((url, EntryRes::Stored(&l.patient)));
            }
        }
        if !targets.is_empty() {
            provenances.push(json!({
                "resourceType": "Provenance",
                "id": uuid::Uuid::new_v4().to_string(),
                "target": targets,
                "recorded": rfc3339(opts.now),
                "agent": [{
                    "type": {"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                        "code": "author", "display": "Author"}]},
                    "who": {"display": l.facility}
                }],
                "entity": [{"role": "source", "what": {"display": l.label}}]
            }));
        }
    }

    // Sections.
    let mut views = Vec::with_capacity(sections.len());
    for s in &sections {
        let items: Vec<ItemView> = per_section
            .iter()
            .filter(|(x, _)| x == s)
            .map(|(_, i)| i.clone())
            .collect();
        let last = latest(items.iter().filter_map(|i| i.last_updated.as_deref()));
        let mut urls: Vec<String> = Vec::new();
        for (x, u) in &entries {
            if x == s && !urls.contains(u) {
                urls.push(u.clone());
            }
        }
        views.push(SectionView {
            section: *s,
            title: s.display(),
            loinc: ips_loinc(*s),
            last_updated: last,
            items,
            entries: urls,
        });
    }

    let now_s = rfc3339(opts.now);
    let patient = header(&src.subject, reg.as_ref(), opts.now);
    let view = View {
        mode,
        title: mode.title(),
        patient,
        generated: now_s.clone(),
        sections: views,
        degraded,
    };
    let bundle = document(
        &view,
        src,
        &subject_url,
        bundle_resources,
        linked_patients,
        provenances,
        opts,
    );
    Summary { bundle, view }
}

fn section_json(s: &SectionView) -> Value {
    let mut codings = Vec::new();
    if let Some((code, display)) = s.loinc {
        codings.push(json!({"system": LOINC, "code": code, "display": display}));
    }
    codings.push(json!({
        "system": format!("{CODE_SYSTEM_BASE}/{}", Section::CS_ID),
        "code": s.section.code(),
        "display": s.section.display()
    }));
    let mut o = Map::new();
    if let Some(d) = &s.last_updated {
        o.insert(
            "extension".into(),
            json!([{ "url": SECTION_LAST_UPDATED, "valueDateTime": d }]),
        );
    }
    o.insert("title".into(), json!(s.title));
    o.insert("code".into(), json!({ "coding": codings, "text": s.title }));
    o.insert(
        "text".into(),
        json!({ "status": "generated", "div": narrative(s) }),
    );
    if s.entries.is_empty() {
        o.insert(
            "emptyReason".into(),
            json!({"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                "code": "unavailable", "display": "Unavailable"}], "text": "登録なし"}),
        );
    } else {
        o.insert(
            "entry".into(),
            Value::Array(
                s.entries
                    .iter()
                    .map(|u| json!({ "reference": u }))
                    .collect(),
            ),
        );
    }
    Value::Object(o)
}

/// A Bundle entry's resource: a stored resource (written from its stored text when [`Sources::raw`]
/// has it) or one the summary made or changed.
enum EntryRes<'a> {
    Stored(&'a Value),
    Owned(Value),
}

/// Appends `{"fullUrl": url, "resource": …}` to `out`.
fn push_entry(out: &mut Vec<u8>, raw: &HashMap<String, String>, url: &str, res: &EntryRes<'_>) {
    out.extend_from_slice(b"{\"fullUrl\":");
    // Writing JSON into a Vec cannot fail (no I/O; arbitrary-precision numbers are kept as text).
    let _ = serde_json::to_writer(&mut *out, url);
    out.extend_from_slice(b",\"resource\":");
    match res {
        EntryRes::Stored(v) => {
            let text = raw_key(v).and_then(|k| raw.get(&k));
            match text {
                Some(t) => out.extend_from_slice(t.trim().as_bytes()),
                None => {
                    let _ = serde_json::to_writer(&mut *out, *v);
                }
            }
        }
        EntryRes::Owned(v) => {
            let _ = serde_json::to_writer(&mut *out, v);
        }
    }
    out.push(b'}');
}

fn document(
    view: &View,
    src: &Sources,
    subject_url: &str,
    resources: Vec<(String, EntryRes<'_>)>,
    linked_patients: Vec<(String, EntryRes<'_>)>,
    provenances: Vec<Value>,
    opts: &Options,
) -> Vec<u8> {
    let now = rfc3339(opts.now);
    let comp_id = uuid::Uuid::new_v4().to_string();
    let mut subject = json!({ "reference": subject_url });
    if let Some(n) = &view.patient.name {
        subject["display"] = json!(n);
    }
    let composition = json!({
        "resourceType": "Composition",
        "id": comp_id,
        "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{comp_id}")},
        "status": "final",
        "type": {"coding": [{"system": LOINC, "code": PATIENT_SUMMARY_DOCUMENT, "display": "Patient summary Document"}],
                 "text": view.title},
        "subject": subject,
        "date": now,
        "author": [{"type": "Device", "display": opts.generator}],
        "title": view.title,
        "confidentiality": "R",
        "section": view.sections.iter().map(section_json).collect::<Vec<_>>()
    });
    let head = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", uuid::Uuid::new_v4())},
        "type": "document",
        "timestamp": now,
    });
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let _ = serde_json::to_writer(&mut out, &head);
    // `head` is an object: reopen it to append `entry` (members keep their order).
    out.pop();
    out.extend_from_slice(b",\"entry\":[");
    push_entry(
        &mut out,
        &src.raw,
        &format!("urn:uuid:{comp_id}"),
        &EntryRes::Owned(composition),
    );
    let mut seen: HashSet<String> = HashSet::new();
    if !subject_url.is_empty() {
        seen.insert(subject_url.to_string());
        out.push(b',');
        push_entry(&mut out, &src.raw, subject_url, &EntryRes::Stored(&src.subject));
    }
    for (url, r) in resources.into_iter().chain(linked_patients) {
        if seen.insert(url.clone()) {
            out.push(b',');
            push_entry(&mut out, &src.raw, &url, &r);
        }
    }
    for p in provenances {
        let id = p
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        out.push(b',');
        push_entry(&mut out, &src.raw, &format!("urn:uuid:{id}"), &EntryRes::Owned(p));
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn window_is_calendar_months_in_japan_time() {
        assert_eq!(
            rfc3339(medication_window_start(t("2026-05-31T03:00:00Z"), 3)),
            "2026-02-28T12:00:00+09:00"
        );
        assert_eq!(
            rfc3339(medication_window_start(t("2026-01-15T00:00:00+09:00"), 3)),
            "2025-10-15T00:00:00+09:00"
        );
    }

    #[test]
    fn latest_compares_instants_not_text() {
        assert_eq!(
            latest(["2026-07-01", "2026-09-01T15:30:00+09:00", "2026-08-20"]).as_deref(),
            Some("2026-09-01T15:30:00+09:00")
        );
        assert_eq!(
            latest(["2026-07-01T23:00:00-05:00", "2026-07-02"]).as_deref(),
            Some("2026-07-01T23:00:00-05:00")
        );
        assert_eq!(latest(std::iter::empty()), None);
    }

    #[test]
    fn modes_have_the_networks_sections() {
        assert_eq!(Mode::Emergency.sections().len(), 8);
        assert_eq!(Mode::Multidisciplinary.sections().len(), 16);
        assert_eq!(Mode::parse("EMERGENCY"), None);
    }

    #[test]
    fn age_counts_birthdays() {
        assert_eq!(age_at("1938-03-14", t("2026-03-13T15:00:00Z")), Some(88));
        assert_eq!(age_at("1938-03-14", t("2026-03-13T14:59:00Z")), Some(87));
    }

    #[test]
    fn window_excludes_old_prescriptions() {
        let start = (t("2026-08-21T00:00:00+09:00").unix_timestamp_nanos() / 1_000_000) as i64;
        let mr = |d: &str| json!({"resourceType": "MedicationRequest", "status": "active", "authoredOn": d});
        assert_eq!(
            external_section(&mr("2026-08-21T10:00:00+09:00"), start),
            Some(Section::Prescriptions)
        );
        assert_eq!(external_section(&mr("2026-08-20"), start), None);
        assert_eq!(
            external_section(&mr("2026-08"), start),
            Some(Section::Prescriptions)
        );
        let c = json!({"resourceType": "Condition", "clinicalStatus": {"coding": [{"code": "resolved"}]}});
        assert_eq!(external_section(&c, start), Some(Section::History));
    }
}
