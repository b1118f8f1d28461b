//! ADT data types: ADT-00 (patient basic information, ADT^A08), the encounter events ADT-01…52, and
//! ADT-61 (allergy information, ADT^A60 with IAM). JAMI maps: "Message ADT_00 to Bundle",
//! "Segment PID to Patient", "Segment ADT_00_OBX/AL1/IN1", "Segment ADT_XX_PV1 to Encounter",
//! "Segment ADT_61_IAM to AllergyIntolerance".

use super::*;
use crate::mapping::json::resource;
use crate::mapping::profile;

/// JLAC10 codes of the ADT-00 body measurements (身長, 体重) and their LOINC equivalents.
const HEIGHT_JLAC10: &str = "9N001000000000001";
const WEIGHT_JLAC10: &str = "9N006000000000001";

pub(super) fn adt00(cx: &mut Ctx, pid: Segment) -> Result<(), MappingError> {
    let mut p = resource("Patient", &patient_id(cx.src.patient_id, cx.opts), profile::PATIENT);
    // identifier: the facility's patient id (JP Core: urn:oid:1.2.392.100495.20.3.51.1 + 10-digit code).
    let mut ident = Map::new();
    if let Some(f) = cx.opts.facility_code {
        ident.insert("system".into(), json!(format!("urn:oid:1.2.392.100495.20.3.51.1{f}")));
    } else {
        ident.insert(
            "type".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}),
        );
    }
    ident.insert("value".into(), json!(cx.src.patient_id));
    p.insert("identifier".into(), Value::Array(vec![Value::Object(ident)]));
    put(&mut p, "name", names(pid.field(5)));
    put(&mut p, "telecom", Value::Array(telecoms(pid.field(13), None).into_iter().chain(telecoms(pid.field(14), Some("work"))).collect()));
    if let Some(g) = codes::translate(map::GENDER, &pid.field(8).text()) {
        p.insert("gender".into(), json!(g.code));
    } else if !pid.field(8).is_empty() {
        cx.warn(WarningKind::Value, "PID-8", "administrative sex not in HL7 table 0001; left out");
    }
    let birth = cx.dt(pid.field(7), "PID-7");
    put(&mut p, "birthDate", date_part(birth));
    put(&mut p, "address", Value::Array(pid.field(11).reps().filter_map(address).collect()));
    match pid.field(30).raw() {
        "Y" => {
            let died = cx.dt(pid.field(29), "PID-29");
            p.insert("deceasedBoolean".into(), json!(true));
            if !died.is_null() {
                p.remove("deceasedBoolean");
                p.insert("deceasedDateTime".into(), died);
            }
        }
        "N" => {
            p.insert("deceasedBoolean".into(), json!(false));
        }
        _ => {}
    }
    // Contacts (NK1) other than the patient themself (relationship SEL).
    let mut contacts = Vec::new();
    for nk1 in cx.msg.segments().filter(|s| s.id() == "NK1") {
        let rel = nk1.field(3);
        if rel.comp(1).raw() == "SEL" {
            continue;
        }
        let mut c = Map::new();
        if !rel.is_empty() {
            let mut cc = Map::new();
            let code = rel.comp(1).text();
            let mut coding = Map::new();
            coding.insert("system".into(), json!("http://terminology.hl7.org/CodeSystem/v2-0063"));
            coding.insert("code".into(), json!(code));
            put(&mut coding, "display", s(rel.comp(2).opt()));
            cc.insert("coding".into(), Value::Array(vec![Value::Object(coding)]));
            put(&mut cc, "text", s(rel.comp(2).opt()));
            c.insert("relationship".into(), Value::Array(vec![Value::Object(cc)]));
        }
        if let Some(Value::Object(first)) = names(nk1.field(2)).as_array().and_then(|a| a.first().cloned()) {
            c.insert("name".into(), Value::Object(first));
        }
        let tel: Vec<Value> =
            telecoms(nk1.field(5), None).into_iter().chain(telecoms(nk1.field(6), Some("work"))).collect();
        put(&mut c, "telecom", Value::Array(tel));
        if let Some(a) = nk1.field(4).reps().find_map(address) {
            c.insert("address".into(), a);
        }
        if !c.is_empty() {
            contacts.push(Value::Object(c));
        }
    }
    put(&mut p, "contact", Value::Array(contacts));
    cx.push(p);

    // Height / weight / blood type (OBX), allergies (AL1), insurance (IN1).
    let effective = cx.dt(cx.msg.msh().field(7), "MSH-7");
    let obx: Vec<Segment> = cx.msg.segments().filter(|s| s.id() == "OBX").collect();
    for (i, o) in obx.iter().enumerate() {
        observation_from_obx(cx, *o, &format!("OBX{}", i + 1), &effective);
    }
    for (i, al1) in cx.msg.segments().filter(|s| s.id() == "AL1").enumerate() {
        allergy_from_al1(cx, al1, i + 1);
    }
    for (i, in1) in cx.msg.segments().filter(|s| s.id() == "IN1" || s.id() == "ZI1").enumerate() {
        coverage(cx, in1, &format!("{}{}", in1.id(), i + 1));
    }
    Ok(())
}

fn date_part(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.split('T').next().unwrap_or_default().to_string()),
        other => other,
    }
}

/// PID-5 / NK1-2 XPN repetitions → JP_HumanName list (IDE kanji, SYL kana; HL7 0465 via ConceptMap).
pub(super) fn names(f: V) -> Value {
    let mut out = Vec::new();
    for rep in f.reps() {
        let family = rep.comp(1).text();
        let given = rep.comp(2).text();
        if family.is_empty() && given.is_empty() {
            continue;
        }
        let mut n = Map::new();
        if let Some(r) = codes::translate(map::NAME_REPRESENTATION, rep.comp(8).raw()) {
            n.insert(
                "extension".into(),
                json!([{ "url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": r.code }]),
            );
        }
        n.insert("use".into(), json!(if rep.comp(7).raw() == "L" { "official" } else { "usual" }));
        n.insert("text".into(), json!(join_name(&family, &given)));
        put(&mut n, "family", json!(family.replace('\u{3000}', " ")));
        if !given.is_empty() {
            n.insert("given".into(), json!([given.replace('\u{3000}', " ")]));
        }
        out.push(Value::Object(n));
    }
    Value::Array(out)
}

/// XTN repetitions → ContactPoint list. XTN-2 use (HL7 0201 via ConceptMap), XTN-3 equipment,
/// XTN-12 unformatted number, else XTN-1.
pub(super) fn telecoms(f: V, default_use: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    for rep in f.reps() {
        let number = rep.comp(12).opt().or_else(|| rep.comp(1).opt()).or_else(|| rep.comp(4).opt());
        let Some(number) = number else { continue };
        let equip = rep.comp(3).raw();
        let system = match equip {
            "FX" => "fax",
            "Internet" | "X.400" => "email",
            "BP" => "pager",
            _ => "phone",
        };
        let mut c = Map::new();
        c.insert("system".into(), json!(system));
        c.insert("value".into(), json!(number));
        let use_ = codes::translate(map::TELECOM_USE, rep.comp(2).raw()).map(|t| t.code.as_str()).or(default_use);
        if rep.comp(3).raw() == "CP" {
            c.insert("use".into(), json!("mobile"));
        } else if let Some(u) = use_ {
            c.insert("use".into(), json!(u));
        }
        if rep.comp(2).raw() == "EMR" {
            c.insert("rank".into(), json!(1));
        }
        out.push(Value::Object(c));
    }
    out
}

/// XAD → JP Core Address: `text` = the whole address (JAHIS puts it in XAD-8 or XAD-1), `state` =
/// 都道府県, `city` = 市区町村 (up to the first 市, else 区/町/村), `line` = the rest, `postalCode` as sent,
/// `country` JP, `use` from XAD-7 (H home, B/O work).
pub(super) fn address(rep: V) -> Option<Value> {
    let text = rep.comp(8).opt().or_else(|| {
        let parts: Vec<String> = (1..=4).filter_map(|i| rep.comp(i).opt().map(|c| c.into_owned())).collect();
        if parts.is_empty() {
            None
        } else {
            Some(Cow::Owned(parts.join("")))
        }
    });
    let postal = rep.comp(5).opt();
    if text.is_none() && postal.is_none() {
        return None;
    }
    let mut a = Map::new();
    match rep.comp(7).raw() {
        "H" => {
            a.insert("use".into(), json!("home"));
        }
        "B" | "O" => {
            a.insert("use".into(), json!("work"));
        }
        _ => {}
    }
    if let Some(text) = &text {
        a.insert("text".into(), json!(text));
        if let Some(pref) = crate::mapping::PREFECTURES.iter().find(|p| text.starts_with(**p)) {
            a.insert("state".into(), json!(pref));
            let rest = &text[pref.len()..];
            let cut = ["市", "区", "郡", "町", "村"]
                .iter()
                .filter_map(|m| rest.find(m).map(|i| i + m.len()))
                .min();
            if let Some(i) = cut {
                // A 郡 is followed by its 町/村: include it in the city.
                let mut end = i;
                if rest[..i].ends_with('郡') {
                    if let Some(j) = ["町", "村"].iter().filter_map(|m| rest[i..].find(m).map(|k| i + k + m.len())).min() {
                        end = j;
                    }
                }
                a.insert("city".into(), json!(&rest[..end]));
                if end < rest.len() {
                    a.insert("line".into(), json!([&rest[end..]]));
                }
            } else if !rest.is_empty() {
                a.insert("line".into(), json!([rest]));
            }
        }
    }
    if let Some(p) = postal {
        a.insert("postalCode".into(), json!(p));
    }
    match rep.comp(6).raw() {
        "JPN" | "JP" => {
            a.insert("country".into(), json!("JP"));
        }
        "" => {}
        other => {
            a.insert("country".into(), json!(other));
        }
    }
    Some(Value::Object(a))
}

/// ADT-00 OBX → JP_Observation_BodyMeasurement (height, weight) or JP_Observation_Common (blood type
/// and other items).
fn observation_from_obx(cx: &mut Ctx, o: Segment, part: &str, effective: &Value) {
    let code_field = o.field(3);
    let jlac = code_field.comp(1).text().into_owned();
    let (prof, body): (&str, Option<(&str, &str, &str, &str)>) = match jlac.as_str() {
        HEIGHT_JLAC10 => (profile::OBSERVATION_BODY_MEASUREMENT, Some(("height", "身長", "8302-2", "Body height"))),
        WEIGHT_JLAC10 => (profile::OBSERVATION_BODY_MEASUREMENT, Some(("weight", "体重", "29463-7", "Body weight"))),
        _ => (profile::OBSERVATION_COMMON, None),
    };
    let mut ob = resource("Observation", &cx.id(part), prof);
    ob.insert("status".into(), json!(observation_status(o.field(11).raw())));
    let mut categories = Vec::new();
    if let Some((cat, disp, _, _)) = body {
        categories.push(json!({"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "body-measurement", "display": "Body Measurement"}]}));
        categories.push(json!({"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationBodyMeasurementCategory_CS", "code": cat, "display": disp}]}));
    } else {
        categories.push(json!({"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "laboratory"}]}));
    }
    ob.insert("category".into(), Value::Array(categories));
    let mut code = cx.cwe(code_field);
    if let (Some((_, _, loinc, ldisp)), Some(arr)) = (body, code.get_mut("coding").and_then(Value::as_array_mut)) {
        arr.push(json!({"system": "http://loinc.org", "code": loinc, "display": ldisp}));
    }
    ob.insert("code".into(), code);
    ob.insert("subject".into(), cx.patient());
    let eff = cx.dt(o.field(14), &format!("{part}-14"));
    put(&mut ob, "effectiveDateTime", if eff.is_null() { effective.clone() } else { eff });
    obx_value(cx, &mut ob, o, part);
    cx.push(ob);
}

/// OBX-2/5/6 → value[x]: NM → valueQuantity (decimal text kept), CWE/CE → valueCodeableConcept, ST/TX/FT
/// → valueString, TS/DT → valueDateTime; OBX-7 reference range, OBX-8 interpretation.
pub(super) fn obx_value(cx: &mut Ctx, ob: &mut Map<String, Value>, o: Segment, part: &str) {
    let vt = o.field(2).raw();
    let val = o.field(5);
    match vt {
        "NM" | "SN" => {
            let q = cx.quantity(&val.rep(1).comp(1).text(), o.field(6), &format!("{part}-5"));
            put(ob, "valueQuantity", q);
        }
        "CWE" | "CE" | "CNE" => {
            let cc = cx.cwe(val.rep(1));
            put(ob, "valueCodeableConcept", cc);
        }
        "TS" | "DT" | "DTM" => {
            let d = cx.dt(val.rep(1), &format!("{part}-5"));
            put(ob, "valueDateTime", d);
        }
        "" => {}
        _ => {
            let texts: Vec<String> = val.reps().map(|r| r.text().into_owned()).filter(|s| !s.is_empty()).collect();
            if !texts.is_empty() {
                ob.insert("valueString".into(), json!(texts.join("\n")));
            }
        }
    }
    let range = o.field(7).text();
    if !range.is_empty() {
        let mut rr = Map::new();
        if let Some((lo, hi)) = range.split_once('-').filter(|(lo, _)| !lo.is_empty()) {
            let unit = o.field(6);
            for (k, v) in [("low", lo), ("high", hi)] {
                if let Some(n) = decimal(v) {
                    let mut q = Map::new();
                    q.insert("value".into(), n);
                    cx.unit_into(&mut q, unit);
                    rr.insert(k.into(), Value::Object(q));
                }
            }
        }
        rr.insert("text".into(), json!(range));
        ob.insert("referenceRange".into(), Value::Array(vec![Value::Object(rr)]));
    }
    let interp: Vec<Value> = o
        .field(8)
        .reps()
        .filter_map(|r| {
            let code = r.comp(1).text();
            let t = codes::translate(map::INTERPRETATION, &code)?;
            Some(json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": t.code, "display": t.display}], "text": code}))
        })
        .collect();
    put(ob, "interpretation", Value::Array(interp));
}

/// AL1 (ADT-00 / OMP-01) → JP_AllergyIntolerance.
pub(super) fn allergy_from_al1(cx: &mut Ctx, al1: Segment, n: usize) {
    let code = al1.field(3);
    if code.is_empty() {
        cx.warn(WarningKind::Value, format!("AL1[{n}]-3"), "allergen code/name missing; AL1 skipped");
        return;
    }
    let part = format!("AL1.{}", al1.field(1).opt().unwrap_or(Cow::Owned(n.to_string())));
    let mut a = resource("AllergyIntolerance", &cx.id(&part), profile::ALLERGY_INTOLERANCE);
    a.insert(
        "clinicalStatus".into(),
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]}),
    );
    a.insert("type".into(), json!("allergy"));
    category(cx, &mut a, al1.field(2), &format!("AL1[{n}]-2"));
    a.insert("code".into(), cx.cwe(code));
    a.insert("patient".into(), cx.patient());
    let onset = cx.dt(al1.field(6), &format!("AL1[{n}]-6"));
    put(&mut a, "onsetDateTime", onset);
    let mut reaction = Map::new();
    let manifest: Vec<Value> = al1.field(5).reps().filter_map(|r| r.opt()).map(|t| json!({"text": t})).collect();
    if let Some(sev) = codes::translate(map::ALLERGY_SEVERITY, al1.field(4).comp(1).raw()) {
        reaction.insert("severity".into(), json!(sev.code));
    }
    if !manifest.is_empty() {
        reaction.insert("manifestation".into(), Value::Array(manifest));
        a.insert("reaction".into(), Value::Array(vec![Value::Object(reaction)]));
    } else if reaction.contains_key("severity") {
        // FHIR requires a manifestation in a reaction; keep the severity as criticality-free note.
        reaction.insert("manifestation".into(), json!([{"text": "不明"}]));
        a.insert("reaction".into(), Value::Array(vec![Value::Object(reaction)]));
    }
    cx.push(a);
}

fn category(cx: &mut Ctx, a: &mut Map<String, Value>, f: V, location: &str) {
    let code = f.comp(1).text();
    if code.is_empty() {
        return;
    }
    match codes::translate(map::ALLERGY_CATEGORY, &code) {
        Some(t) => {
            a.insert("category".into(), json!([t.code]));
        }
        None => cx.warn(
            WarningKind::Value,
            location,
            format!("allergen type {code} has no AllergyIntolerance.category (HL7 0127 → FHIR unmatched); category left out"),
        ),
    }
}

/// IN1 / ZI1 (insurance) → JP_Coverage. IN1-2 plan (JHSD0001 保険種別), IN1-3 insurer number, IN1-4
/// insurer name, IN1-10/11 被保険者証 記号/番号, IN1-12/13 validity, IN1-17 relationship.
pub(super) fn coverage(cx: &mut Ctx, in1: Segment, part: &str) {
    let mut c = resource("Coverage", &cx.id(part), profile::COVERAGE);
    let mut ext = Vec::new();
    for (n, url) in [(10, "JP_Coverage_InsuredPersonSymbol"), (11, "JP_Coverage_InsuredPersonNumber")] {
        if let Some(v) = in1.field(n).opt() {
            ext.push(json!({"url": format!("http://jpfhir.jp/fhir/core/Extension/StructureDefinition/{url}"), "valueString": v}));
        }
    }
    put(&mut c, "extension", Value::Array(ext));
    c.insert("status".into(), json!("active"));
    put(&mut c, "type", cx.cwe(in1.field(2)));
    let rel = in1.field(17).comp(1).text();
    let rel_code = match rel.as_ref() {
        "SEL" => Some("self"),
        "SPO" => Some("spouse"),
        "CHD" => Some("child"),
        "" => None,
        _ => Some("other"),
    };
    if let Some(r) = rel_code {
        c.insert(
            "relationship".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "code": r}]}),
        );
    }
    c.insert("beneficiary".into(), cx.patient());
    let mut period = Map::new();
    let start = cx.dt(in1.field(12), &format!("{part}-12"));
    let end = cx.dt(in1.field(13), &format!("{part}-13"));
    put(&mut period, "start", start);
    put(&mut period, "end", end);
    put(&mut c, "period", Value::Object(period));
    let mut payor = Map::new();
    if let Some(num) = in1.field(3).comp(1).opt() {
        payor.insert("type".into(), json!("Organization"));
        payor.insert(
            "identifier".into(),
            json!({"system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/InsurerNumber", "value": num}),
        );
    }
    put(&mut payor, "display", s(in1.field(4).opt()));
    if payor.is_empty() {
        payor.insert("display".into(), json!("保険者不明"));
        cx.warn(WarningKind::Value, format!("{part}-3"), "insurer number and name missing");
    }
    c.insert("payor".into(), Value::Array(vec![Value::Object(payor)]));
    cx.push(c);
}

/// ADT-01…52 → JP_Encounter: status from the data type (JAMI table SSMIX2DATATYPE → EncounterStatus;
/// the cancel trigger gives the `.DEL` row), class from PV1-2, period from PV1-44/45 (or EVN-6 for
/// transfers and leaves), location PV1-3, attending PV1-7, department PV1-10.
pub(super) fn encounter_event(cx: &mut Ctx) -> Result<(), MappingError> {
    let pv1 = cx.msg.segment("PV1").ok_or(MappingError::MissingSegment("PV1"))?;
    let dt = cx.src.data_type;
    let key = if cx.cancelled { format!("{dt}.DEL") } else { dt.to_string() };
    let status = codes::translate(map::ENCOUNTER_STATUS, &key).map(|t| t.code.clone()).unwrap_or_else(|| "unknown".into());
    let mut e = resource("Encounter", &cx.id("PV1"), profile::ENCOUNTER);
    put(&mut e, "identifier", match pv1.field(19).comp(1).opt() {
        Some(v) => json!([{"value": v}]),
        None => Value::Null,
    });
    e.insert("status".into(), json!(status));
    let class = pv1.field(2).comp(1).text();
    let class_code = match class.as_ref() {
        "E" => Some(("EMER", "emergency")),
        other => codes::translate(map::PATIENT_CLASS, other).map(|t| (t.code.as_str(), t.display.as_str())),
    };
    match class_code {
        Some((c, d)) => {
            e.insert("class".into(), json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": c, "display": d}));
        }
        None => {
            e.insert(
                "class".into(),
                json!({"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "code": "UNK", "display": "unknown"}),
            );
        }
    }
    put(&mut e, "serviceType", cx.department(pv1.field(10)));
    e.insert("subject".into(), cx.patient());
    let mut participants = Vec::new();
    for (n, role, disp) in [(7, "ATND", "attender"), (17, "ADM", "admitter"), (8, "REF", "referrer")] {
        let who = cx.xcn(pv1.field(n));
        if !who.is_null() {
            participants.push(json!({"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": role, "display": disp}]}], "individual": who}));
        }
    }
    put(&mut e, "participant", Value::Array(participants));
    let mut period = Map::new();
    let start = cx.dt(pv1.field(44), "PV1-44");
    let end = cx.dt(pv1.field(45), "PV1-45");
    let event = cx.msg.segment("EVN").map(|evn| evn.field(6)).map(|f| f.comp(1).text().into_owned()).unwrap_or_default();
    let event = hl7_datetime(&event).map(Value::String).unwrap_or(Value::Null);
    put(&mut period, "start", if start.is_null() && matches!(dt, "ADT-31" | "ADT-42") { event.clone() } else { start });
    put(&mut period, "end", if end.is_null() && dt == "ADT-52" { event.clone() } else { end });
    put(&mut e, "period", Value::Object(period));
    let loc = pv1.field(3);
    let loc_text: Vec<String> = (1..=3).filter_map(|i| loc.comp(i).opt().map(|c| c.into_owned())).collect();
    if !loc_text.is_empty() {
        let mut l = json!({"location": {"display": loc_text.join("-")}, "status": if status == "finished" { "completed" } else { "active" }});
        if let (Some(start), true) = (period_start(&e), matches!(dt, "ADT-42")) {
            l["period"] = json!({"start": start});
        }
        e.insert("location".into(), json!([l]));
    }
    cx.push(e);
    Ok(())
}

fn period_start(e: &Map<String, Value>) -> Option<Value> {
    e.get("period")?.get("start").cloned()
}

/// ADT-61 IAM → JP_AllergyIntolerance: IAM-2 category (HL7 0127), IAM-3 allergen (JLAC10/HOT9 as
/// sent), IAM-4 severity (0128), IAM-5 reaction, IAM-6 action (0323 → clinicalStatus), IAM-11 onset
/// date, IAM-12 onset text, IAM-13 reported date.
pub(super) fn adt61(cx: &mut Ctx) -> Result<(), MappingError> {
    let iams: Vec<Segment> = cx.msg.segments().filter(|s| s.id() == "IAM").collect();
    if iams.is_empty() {
        return Err(MappingError::MissingSegment("IAM"));
    }
    for (i, iam) in iams.iter().enumerate() {
        let n = i + 1;
        let loc = |f: usize| format!("IAM[{n}]-{f}");
        if iam.field(3).is_empty() {
            cx.warn(WarningKind::Value, loc(3), "allergen missing; IAM skipped");
            continue;
        }
        let part = format!(
            "IAM.{}",
            iam.field(7).comp(1).opt().or_else(|| iam.field(1).opt()).unwrap_or(Cow::Owned(n.to_string()))
        );
        let mut a = resource("AllergyIntolerance", &cx.id(&part), profile::ALLERGY_INTOLERANCE);
        let action = iam.field(6).comp(1).text();
        let clinical = codes::translate(map::ALLERGY_ACTION, &action).map(|t| t.code.as_str()).unwrap_or("active");
        a.insert(
            "clinicalStatus".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": clinical}]}),
        );
        a.insert("type".into(), json!("allergy"));
        category(cx, &mut a, iam.field(2), &loc(2));
        a.insert("code".into(), cx.cwe(iam.field(3)));
        a.insert("patient".into(), cx.patient());
        let onset = cx.dt(iam.field(11), &loc(11));
        if !onset.is_null() {
            a.insert("onsetDateTime".into(), onset);
        } else if let Some(text) = iam.field(12).opt() {
            a.insert("onsetString".into(), json!(text));
        }
        let recorded = cx.dt(iam.field(13), &loc(13));
        put(&mut a, "recordedDate", recorded);
        let mut reaction = Map::new();
        let text = iam.field(5).rep(1).text();
        if let Some(sev) = codes::translate(map::ALLERGY_SEVERITY, iam.field(4).comp(1).raw()) {
            reaction.insert("severity".into(), json!(sev.code));
        }
        if !text.is_empty() || !reaction.is_empty() {
            let manifestation = if text.is_empty() { "不明".to_string() } else { text.into_owned() };
            reaction.insert("manifestation".into(), json!([{"text": manifestation}]));
            reaction.insert("description".into(), json!(manifestation));
            a.insert("reaction".into(), Value::Array(vec![Value::Object(reaction)]));
        }
        cx.push(a);
    }
    Ok(())
}
