//! What a consent decision is made from: the Consent resources of a patient as federation-security.md
//! §3.2 models them (IHE PCF constraints), the facilities the patient attends, and the emergency
//! referral hospital of the Tobiume registration — parsed from the stored JSON into [`PatientFacts`].

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use time::OffsetDateTime;

use crate::mapping::registration::ext::EMERGENCY_REFERRAL_HOSPITAL;
use crate::store::audit::ConsentFacts;

/// `Consent.policy.uri` that marks a **national-sharing consent**: the patient permits sharing with the
/// national EHR sharing service (電子カルテ情報共有サービス, CLINS; federation-security.md §5). Such a
/// Consent permits only the national service's facility (`TOBIUME_NATIONAL_SERVICE_ORG`), never the
/// participating facilities of the regional network. Alternatively a Consent whose provision actor is the
/// national service's Organization has the same effect.
pub const NATIONAL_SHARING_POLICY: &str = "http://tobiume-gateway.local/fhir/policy/national-sharing";

/// v3-ActReason codes that count as emergency treatment (a `TREAT` permit covers them too).
pub const EMERGENCY_PURPOSES: [&str; 2] = ["ETREAT", "BTG"];

/// One provision of a Consent (R4 `Consent.provision`, nested one level per PCF).
#[derive(Debug, Clone, PartialEq)]
pub struct Provision {
    /// `type`: `permit` (true) or `deny` (false). A provision without `type` is a permit for its root, and
    /// inherits nothing (nested ones default to `deny`, as PCF's exceptions do).
    pub permit: bool,
    /// Organization ids of `actor.reference` (role IRCP or none); empty = everyone in the network.
    pub actors: Vec<String>,
    /// `true` when the provision named actors that are not Organizations (e.g. a Practitioner): it then
    /// applies to no facility (never widened to everyone).
    pub other_actors: bool,
    /// v3-ActReason codes of `purpose` (empty = any purpose).
    pub purposes: Vec<String>,
    /// `period` as epoch-ms bounds (inclusive), `None` = open.
    pub period: (Option<i64>, Option<i64>),
    /// Nested exceptions.
    pub nested: Vec<Provision>,
}

/// A Consent that can take part in decisions (active, privacy scope, performer the patient or a proxy).
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentRule {
    /// Logical id of the Consent.
    pub id: String,
    /// A national-sharing consent ([`NATIONAL_SHARING_POLICY`]).
    pub national: bool,
    /// The root provision.
    pub root: Provision,
}

/// Everything a decision about one patient needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientFacts {
    /// The Patient exists (live).
    pub exists: bool,
    /// Organization ids of the facilities the patient attends: `Patient.managingOrganization` (the
    /// registering clinic of a Tobiume registration, the sending hospital of SS-MIX2 data),
    /// `Patient.generalPractitioner` Organizations, and the Organizations of the patient's active
    /// CareTeams (`participant.member` / `participant.onBehalfOf`: visiting-nurse station, home-care office).
    pub attending: BTreeSet<String>,
    /// The emergency referral hospital (registration extension `emergency-referral-hospital`).
    pub emergency_hospital: Option<String>,
    /// The usable Consents.
    pub consents: Vec<ConsentRule>,
}

impl ConsentRule {
    /// What this Consent says for `facility` with `purpose` at `now_ms`: `Some(true)` permit,
    /// `Some(false)` deny, `None` not applicable. Nested provisions override the root for the actors they
    /// name; an applicable nested `deny` wins over a nested `permit`.
    pub fn verdict(&self, facility: &str, purpose: &str, now_ms: i64) -> Option<bool> {
        if !self.root.applies(facility, purpose, now_ms) {
            return None;
        }
        let mut result = self.root.permit;
        let mut nested_permit = false;
        for n in &self.root.nested {
            if n.applies(facility, purpose, now_ms) {
                if !n.permit {
                    return Some(false);
                }
                nested_permit = true;
            }
        }
        if nested_permit {
            result = true;
        }
        Some(result)
    }

    /// `true` when the root provision names `facility` explicitly (per-facility consent).
    pub fn names(&self, facility: &str) -> bool {
        self.root.actors.iter().any(|a| a == facility)
    }
}

impl Provision {
    fn applies(&self, facility: &str, purpose: &str, now_ms: i64) -> bool {
        if self.period.0.is_some_and(|lo| now_ms < lo) || self.period.1.is_some_and(|hi| now_ms > hi) {
            return false;
        }
        if !purpose_covered(&self.purposes, purpose) {
            return false;
        }
        if self.actors.is_empty() {
            !self.other_actors
        } else {
            self.actors.iter().any(|a| a == facility)
        }
    }
}

/// Whether a provision's purposes cover the request's purpose: any when empty; emergency purposes
/// (`ETREAT`, `BTG`) are covered by `TREAT` (v3-ActReason: emergency treatment is a kind of treatment).
pub fn purpose_covered(purposes: &[String], purpose: &str) -> bool {
    purposes.is_empty()
        || purposes.iter().any(|p| p == purpose)
        || (EMERGENCY_PURPOSES.contains(&purpose) && purposes.iter().any(|p| p == "TREAT"))
}

/// The logical id of a `Type/id` reference (relative, absolute URL, or with `/_history/n`).
pub fn ref_id<'a>(reference: &'a str, rtype: &str) -> Option<&'a str> {
    let r = match reference.find("/_history/") {
        Some(i) => &reference[..i],
        None => reference,
    };
    let (head, id) = r.rsplit_once('/')?;
    let t = head.rsplit('/').next()?;
    (t == rtype && !id.is_empty()).then_some(id)
}

fn reference_of(v: &Value) -> Option<&str> {
    v.get("reference").and_then(Value::as_str)
}

/// Builds [`PatientFacts`] for each of `patients` from the rows of [`crate::store::Store::consent_facts`].
/// `patients` absent from the rows get `exists = false` facts (no attending facility, no consent).
pub fn build_facts(patients: &[String], rows: &ConsentFacts) -> HashMap<String, PatientFacts> {
    let mut out: HashMap<String, PatientFacts> = patients.iter().map(|p| (p.clone(), PatientFacts::default())).collect();
    let mut parsed: Vec<(&str, &str, Value)> = Vec::with_capacity(rows.resources.len());
    for (t, id, json) in &rows.resources {
        if let Ok(v) = serde_json::from_str::<Value>(json) {
            parsed.push((t.as_str(), id.as_str(), v));
        }
    }
    // RelatedPerson id → its patient (proxy performers).
    let mut proxies: HashMap<&str, &str> = HashMap::new();
    for (t, id, v) in &parsed {
        if *t == "RelatedPerson" {
            if let Some(p) = v.get("patient").and_then(reference_of).and_then(|r| ref_id(r, "Patient")) {
                if v.get("active").and_then(Value::as_bool) != Some(false) {
                    proxies.insert(id, p);
                }
            }
        }
    }
    let mut care_teams: HashMap<&str, (String, Vec<String>)> = HashMap::new();
    for (t, id, v) in &parsed {
        match *t {
            "Patient" => {
                let Some(f) = out.get_mut(*id) else { continue };
                f.exists = true;
                if let Some(o) = v.get("managingOrganization").and_then(reference_of).and_then(|r| ref_id(r, "Organization")) {
                    f.attending.insert(o.to_string());
                }
                for gp in v.get("generalPractitioner").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(o) = reference_of(gp).and_then(|r| ref_id(r, "Organization")) {
                        f.attending.insert(o.to_string());
                    }
                }
                for e in v.get("extension").and_then(Value::as_array).into_iter().flatten() {
                    if e.get("url").and_then(Value::as_str) == Some(EMERGENCY_REFERRAL_HOSPITAL) {
                        f.emergency_hospital = e
                            .get("valueReference")
                            .and_then(reference_of)
                            .and_then(|r| ref_id(r, "Organization"))
                            .map(str::to_string);
                    }
                }
            }
            "CareTeam" => {
                let status = v.get("status").and_then(Value::as_str).unwrap_or("active");
                let Some(p) = v.get("subject").and_then(reference_of).and_then(|r| ref_id(r, "Patient")) else { continue };
                let mut orgs = Vec::new();
                for part in v.get("participant").and_then(Value::as_array).into_iter().flatten() {
                    for key in ["member", "onBehalfOf"] {
                        if let Some(o) = part.get(key).and_then(reference_of).and_then(|r| ref_id(r, "Organization")) {
                            orgs.push(o.to_string());
                        }
                    }
                }
                if status == "active" {
                    if let Some(f) = out.get_mut(p) {
                        f.attending.extend(orgs.iter().cloned());
                    }
                }
                care_teams.insert(id, (p.to_string(), if status == "active" { orgs } else { Vec::new() }));
            }
            _ => {}
        }
    }
    for (t, id, v) in &parsed {
        if *t != "Consent" {
            continue;
        }
        let Some(p) = v.get("patient").and_then(reference_of).and_then(|r| ref_id(r, "Patient")) else { continue };
        let Some(f) = out.get_mut(p) else { continue };
        if let Some(rule) = parse_consent(id, p, v, &proxies, &care_teams) {
            f.consents.push(rule);
        }
    }
    out
}

/// A usable [`ConsentRule`] from a Consent of `patient`, or `None` when it must be ignored: status not
/// `active` (withdrawn = `inactive`), a scope other than `patient-privacy`, no provision, or performers
/// none of which is the patient or a proxy (an active RelatedPerson of the patient).
pub fn parse_consent(
    id: &str,
    patient: &str,
    v: &Value,
    proxies: &HashMap<&str, &str>,
    care_teams: &HashMap<&str, (String, Vec<String>)>,
) -> Option<ConsentRule> {
    if v.get("status").and_then(Value::as_str) != Some("active") {
        return None;
    }
    if let Some(scope) = v.get("scope") {
        let privacy = scope
            .get("coding")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c.get("code").and_then(Value::as_str) == Some("patient-privacy"));
        if !privacy {
            return None;
        }
    }
    if let Some(perf) = v.get("performer").and_then(Value::as_array).filter(|a| !a.is_empty()) {
        let ok = perf.iter().filter_map(reference_of).any(|r| {
            ref_id(r, "Patient") == Some(patient) || ref_id(r, "RelatedPerson").and_then(|rp| proxies.get(rp)) == Some(&patient)
        });
        if !ok {
            return None;
        }
    }
    let national = v
        .get("policy")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|p| p.get("uri").and_then(Value::as_str) == Some(NATIONAL_SHARING_POLICY));
    let root = parse_provision(v.get("provision")?, true, care_teams)?;
    Some(ConsentRule { id: id.to_string(), national, root })
}

fn parse_provision(p: &Value, is_root: bool, care_teams: &HashMap<&str, (String, Vec<String>)>) -> Option<Provision> {
    let permit = match p.get("type").and_then(Value::as_str) {
        Some("permit") => true,
        Some("deny") => false,
        Some(_) => return None,
        None => is_root,
    };
    let mut actors = Vec::new();
    let mut other_actors = false;
    for a in p.get("actor").and_then(Value::as_array).into_iter().flatten() {
        let Some(r) = a.get("reference").and_then(reference_of) else {
            other_actors = true;
            continue;
        };
        if let Some(o) = ref_id(r, "Organization") {
            actors.push(o.to_string());
        } else if let Some(ct) = ref_id(r, "CareTeam").and_then(|c| care_teams.get(c)) {
            actors.extend(ct.1.iter().cloned());
            if ct.1.is_empty() {
                other_actors = true;
            }
        } else {
            other_actors = true;
        }
    }
    let purposes = p
        .get("purpose")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("code").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let period = p
        .get("period")
        .map(|per| {
            (
                per.get("start").and_then(Value::as_str).and_then(|s| parse_bound(s, false)),
                per.get("end").and_then(Value::as_str).and_then(|s| parse_bound(s, true)),
            )
        })
        .unwrap_or((None, None));
    let nested = if is_root {
        p.get("provision")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|n| parse_provision(n, false, care_teams))
            .collect()
    } else {
        Vec::new()
    };
    Some(Provision { permit, actors, other_actors, purposes, period, nested })
}

/// A FHIR `dateTime` (or date, year-month, year) as epoch ms: the start of its range, or with `end` the
/// last millisecond of it. Dates without an offset are Japan Standard Time (+09:00).
pub fn parse_bound(s: &str, end: bool) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(dt) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some((dt.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let parts: Vec<&str> = s.split('-').collect();
    let year: i32 = parts.first()?.parse().ok()?;
    let (m0, m1) = match parts.get(1) {
        Some(m) => {
            let m: u8 = m.parse().ok()?;
            (m, m)
        }
        None => (1, 12),
    };
    let start_month = time::Month::try_from(if end { m1 } else { m0 }).ok()?;
    let day = match parts.get(2) {
        Some(d) => d.parse().ok()?,
        None if end => time::util::days_in_month(start_month, year),
        None => 1,
    };
    let date = time::Date::from_calendar_date(year, start_month, day).ok()?;
    let jst = time::UtcOffset::from_hms(9, 0, 0).ok()?;
    let t = if end { date.with_hms_milli(23, 59, 59, 999).ok()? } else { date.midnight() };
    Some((t.assume_offset(jst).unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The logical ids of every Patient a resource is about: a `Patient` itself, otherwise every
/// `Patient/<id>` in any `"reference"` of its JSON text (relative, absolute or versioned; contained
/// resources included). A superset of the patient compartment, so filtering by it never leaks.
pub fn patients_of(resource_type: &str, id: &str, json: &str) -> Vec<String> {
    if resource_type == "Patient" {
        return vec![id.to_string()];
    }
    let mut out: Vec<String> = Vec::new();
    let bytes = json.as_bytes();
    let mut from = 0;
    while let Some(pos) = json[from..].find("\"reference\"") {
        let mut i = from + pos + "\"reference\"".len();
        from = i;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'"') {
            continue;
        }
        let start = i + 1;
        let mut j = start;
        let mut escaped = false;
        while j < bytes.len() && bytes[j] != b'"' {
            if bytes[j] == b'\\' {
                escaped = true;
                j += 1;
            }
            j += 1;
        }
        if j > bytes.len() {
            break;
        }
        let raw = &json[start..j.min(json.len())];
        let value: std::borrow::Cow<str> = if escaped {
            match serde_json::from_str::<String>(&json[start - 1..(j + 1).min(json.len())]) {
                Ok(s) => s.into(),
                Err(_) => continue,
            }
        } else {
            raw.into()
        };
        if let Some(p) = ref_id(&value, "Patient") {
            if !out.iter().any(|x| x == p) {
                out.push(p.to_string());
            }
        }
        from = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_resolve_to_ids() {
        assert_eq!(ref_id("Patient/p1", "Patient"), Some("p1"));
        assert_eq!(ref_id("http://x/fhir/Patient/p1/_history/3", "Patient"), Some("p1"));
        assert_eq!(ref_id("Organization/p1", "Patient"), None);
        assert_eq!(ref_id("#c1", "Patient"), None);
    }

    #[test]
    fn patients_of_scans_every_reference() {
        let obs = r#"{"resourceType":"Observation","subject": {"reference" : "Patient/a"},"performer":[{"reference":"Organization/o"},{"reference":"http://h/fhir/Patient/b/_history/2"}],"note":[{"text":"Patient/zz"}],"x":{"reference":"Patient\/c"}}"#;
        assert_eq!(patients_of("Observation", "o1", obs), vec!["a", "b", "c"]);
        assert_eq!(patients_of("Patient", "p9", r#"{"link":[{"other":{"reference":"Patient/q"}}]}"#), vec!["p9"]);
        assert!(patients_of("Organization", "o", r#"{"name":"Patient/x"}"#).is_empty());
    }

    #[test]
    fn blanket_with_exclusion_and_per_facility() {
        let care = HashMap::new();
        let proxies = HashMap::new();
        let blanket = json!({"status": "active", "patient": {"reference": "Patient/p"},
            "performer": [{"reference": "Patient/p"}],
            "provision": {"type": "permit", "purpose": [{"code": "TREAT"}],
                "provision": [{"type": "deny", "actor": [{"reference": {"reference": "Organization/bad"}}]}]}});
        let r = parse_consent("c1", "p", &blanket, &proxies, &care).unwrap();
        assert_eq!(r.verdict("good", "TREAT", 0), Some(true));
        assert_eq!(r.verdict("good", "ETREAT", 0), Some(true));
        assert_eq!(r.verdict("good", "HRESCH", 0), None);
        assert_eq!(r.verdict("bad", "TREAT", 0), Some(false));
        let per = json!({"status": "active", "provision": {"type": "permit",
            "actor": [{"reference": {"reference": "Organization/h1"}}], "period": {"start": "2025-04-01", "end": "2026-03-31"}}});
        let r = parse_consent("c2", "p", &per, &proxies, &care).unwrap();
        let in_period = parse_bound("2025-10-01", false).unwrap();
        assert_eq!(r.verdict("h1", "TREAT", in_period), Some(true));
        assert_eq!(r.verdict("h2", "TREAT", in_period), None);
        assert_eq!(r.verdict("h1", "TREAT", parse_bound("2026-04-01", false).unwrap()), None);
        assert_eq!(r.verdict("h1", "TREAT", parse_bound("2026-03-31T23:00:00+09:00", false).unwrap()), Some(true));
        let mut inactive = per.clone();
        inactive["status"] = json!("inactive");
        assert!(parse_consent("c3", "p", &inactive, &proxies, &care).is_none());
    }

    #[test]
    fn performer_must_be_patient_or_proxy() {
        let care = HashMap::new();
        let c = json!({"status": "active", "performer": [{"reference": "RelatedPerson/rp"}], "provision": {"type": "permit"}});
        assert!(parse_consent("c", "p", &c, &HashMap::new(), &care).is_none());
        let proxies: HashMap<&str, &str> = [("rp", "p")].into_iter().collect();
        assert!(parse_consent("c", "p", &c, &proxies, &care).is_some());
        let other: HashMap<&str, &str> = [("rp", "q")].into_iter().collect();
        assert!(parse_consent("c", "p", &c, &other, &care).is_none());
    }

    #[test]
    fn dates_are_jst_ranges() {
        assert_eq!(parse_bound("2025-04-01", false), parse_bound("2025-03-31T15:00:00Z", false));
        assert_eq!(parse_bound("2025", true), parse_bound("2025-12-31T23:59:59.999+09:00", false));
        assert_eq!(parse_bound("2024-02", true), parse_bound("2024-02-29T23:59:59.999+09:00", false));
    }
}
