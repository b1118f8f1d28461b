//! Prescriptions and injections: OMP-01 (処方オーダ) / OMP-02 (注射オーダ) RDE^O11 → JP_MedicationRequest
//! (oral) / JP_MedicationRequest_Injection (with a contained JP_Medication of the RXC components);
//! OMP-11 (処方実施) / OMP-12 (注射実施) RAS^O17 → JP_MedicationAdministration(_Injection); OMD (食事オーダ)
//! OMD^O03 → NutritionOrder. JAMI maps "Segment OMP_01_RXE to MedicationRequest" and
//! "Segment OMP_12_RXA to MedicationAdministration"; JP Core JP_MedicationDosage for dosage structure.

use super::*;
use crate::mapping::json::{obj, resource};
use crate::mapping::profile;

const MERIT9_UNIT: &str = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationUnitMERIT9Code";
const UCUM: &str = "http://unitsofmeasure.org";
const EXT: &str = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/";

/// Splits the message into order groups: each ORC and the segments up to the next ORC.
fn orc_groups<'m>(segs: &[Segment<'m>]) -> Vec<Vec<Segment<'m>>> {
    let mut groups: Vec<Vec<Segment<'m>>> = Vec::new();
    for s in segs {
        if s.id() == "ORC" {
            groups.push(vec![*s]);
        } else if let Some(g) = groups.last_mut() {
            g.push(*s);
        }
    }
    groups
}

fn rp_identifiers(cx: &Ctx, rp: &str, idx: usize, order: &str) -> Vec<Value> {
    let mut ids = vec![
        json!({"system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/Medication-RPGroupNumber", "value": rp}),
        json!({"system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicationAdministrationIndex", "value": idx.to_string()}),
        json!({"system": "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier", "value": format!("{order}.{rp}.{idx}")}),
    ];
    if let Some(f) = cx.opts.facility_code {
        ids.push(json!({"system": format!("urn:oid:1.2.392.100495.20.3.11.1{f}"), "value": order}));
    }
    ids
}

/// A MERIT-9 / UCUM quantity from a number and a CWE unit.
fn med_quantity(cx: &mut Ctx, value: &str, unit: V, location: &str) -> Value {
    cx.quantity(value, unit, location)
}

/// OMP-01 / OMP-02: one MedicationRequest per RXE.
pub(super) fn prescription_order(cx: &mut Ctx, injection: bool) -> Result<(), MappingError> {
    let segs: Vec<Segment> = cx.msg.segments().collect();
    let groups = orc_groups(&segs);
    if !groups.iter().any(|g| g.iter().any(|s| s.id() == "RXE")) {
        return Err(MappingError::MissingSegment("RXE"));
    }
    let mut per_rp: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (gi, g) in groups.iter().enumerate() {
        let orc = g[0];
        let Some(rxe) = g.iter().find(|s| s.id() == "RXE").copied() else { continue };
        let n = gi + 1;
        let loc = |f: usize| format!("RXE[{n}]-{f}");
        let order = orc.field(2).comp(1).text().into_owned();
        let order = if order.is_empty() { cx.src.order_no.to_string() } else { order };
        // RP number = ORC-4 placer group (JAMI); injections send `<order>_<rp>_<seq>`.
        let group_no = orc.field(4).comp(1).text().into_owned();
        let (rp, idx) = match group_no.split('_').collect::<Vec<_>>().as_slice() {
            [_, rp, seq] => (rp.trim_start_matches('0').to_string(), seq.trim_start_matches('0').parse().unwrap_or(1)),
            _ => {
                let rp = if group_no.is_empty() { n.to_string() } else { group_no.clone() };
                let c = per_rp.entry(rp.clone()).or_insert(0);
                *c += 1;
                (rp, *c)
            }
        };
        let rp = if rp.is_empty() { "1".to_string() } else { rp };
        let prof = if injection { profile::MEDICATION_REQUEST_INJECTION } else { profile::MEDICATION_REQUEST };
        let mut m = resource("MedicationRequest", &cx.id(&format!("RXE.{rp}.{idx}")), prof);
        m.insert("identifier".into(), Value::Array(rp_identifiers(cx, &rp, idx, &order)));
        m.insert("status".into(), json!(order_status(orc.field(1).raw(), orc.field(5).raw())));
        m.insert("intent".into(), json!("order"));
        // RXE-21 dispensing category (MERIT-9 / local) → category.
        let cats: Vec<Value> = rxe
            .field(21)
            .reps()
            .filter(|r| !r.comp(1).is_empty())
            .map(|r| {
                let mut cc = cx.cwe(r);
                if r.comp(3).raw() == "MR9P" {
                    if let Some(c) = cc.pointer_mut("/coding/0/system") {
                        *c = json!("http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicationCategoryMERIT9_CS");
                    }
                }
                cc
            })
            .collect();
        put(&mut m, "category", Value::Array(cats));

        let rxcs: Vec<Segment> = g.iter().filter(|s| s.id() == "RXC").copied().collect();
        if injection {
            let med_id = "medication";
            let mut med = Map::new();
            med.insert("resourceType".into(), json!("Medication"));
            med.insert("id".into(), json!(med_id));
            med.insert("meta".into(), json!({"profile": [profile::MEDICATION]}));
            med.insert("status".into(), json!("active"));
            put(&mut med, "form", cx.cwe(rxe.field(6)));
            let mut ingredients = Vec::new();
            for (ri, rxc) in rxcs.iter().enumerate() {
                let mut ing = Map::new();
                ing.insert("itemCodeableConcept".into(), cx.cwe(rxc.field(2)));
                ing.insert("isActive".into(), json!(rxc.field(1).raw() != "B"));
                let mut num = match med_quantity(cx, &rxc.field(3).text(), rxc.field(4), &format!("RXC[{}]-3", ri + 1)) {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                if num.is_empty() {
                    num.insert("value".into(), json!(1));
                }
                ing.insert(
                    "strength".into(),
                    obj([("numerator", Value::Object(num)), ("denominator", json!({"value": 1, "unit": "回", "system": MERIT9_UNIT, "code": "TIME"}))]),
                );
                ingredients.push(Value::Object(ing));
            }
            if ingredients.is_empty() {
                // The give code itself is the drug.
                ingredients.push(obj([("itemCodeableConcept", cx.cwe(rxe.field(2))), ("strength", json!({"numerator": {"value": 1}, "denominator": {"value": 1, "unit": "回", "system": MERIT9_UNIT, "code": "TIME"}}))]));
            }
            med.insert("ingredient".into(), Value::Array(ingredients));
            m.insert("contained".into(), Value::Array(vec![Value::Object(med)]));
            let display = rxcs.iter().map(|r| r.field(2).comp(2).text().into_owned()).collect::<Vec<_>>().join("＋");
            let mut r = json!({"reference": format!("#{med_id}")});
            if !display.is_empty() {
                r["display"] = json!(display);
            }
            m.insert("medicationReference".into(), r);
        } else {
            m.insert("medicationCodeableConcept".into(), cx.cwe(rxe.field(2)));
        }
        m.insert("subject".into(), cx.patient());
        let authored = cx.dt(orc.field(9), "ORC-9");
        let authored = if authored.is_null() { cx.dt(rxe.field(32), &loc(32)) } else { authored };
        put(&mut m, "authoredOn", authored);
        put(&mut m, "requester", cx.xcn(orc.field(12)));
        put(&mut m, "recorder", cx.xcn(orc.field(10)));

        // Dosage (JP_MedicationDosage / _Injection).
        let tq1 = g.iter().find(|s| s.id() == "TQ1").copied();
        let rxr = g.iter().find(|s| s.id() == "RXR").copied();
        let mut dosage = Map::new();
        let mut dext = Vec::new();
        let mut supply: Option<Value> = None;
        if let Some(tq1) = tq1 {
            // TQ1-6 service duration (days) → UsageDuration + expectedSupplyDuration.
            let dur = tq1.field(6);
            if let Some(days) = cx.num(&dur.comp(1).text(), "TQ1-6") {
                let unit = dur.comp(2).text();
                if unit.is_empty() || unit == "d" || unit == "D" {
                    let d = json!({"value": days, "unit": "日", "system": UCUM, "code": "d"});
                    dext.push(obj([("url", Value::String(format!("{EXT}JP_MedicationDosage_UsageDuration"))), ("valueDuration", d.clone())]));
                    supply = Some(d);
                }
            }
            let start = cx.dt(tq1.field(7), "TQ1-7");
            let end = cx.dt(tq1.field(8), "TQ1-8");
            if injection {
                let mut bp = Map::new();
                put(&mut bp, "start", start);
                put(&mut bp, "end", end);
                if !bp.is_empty() {
                    dosage.insert("timing".into(), obj([("repeat", obj([("boundsPeriod", Value::Object(bp))]))]));
                }
            } else if !start.is_null() {
                let mut p = Map::new();
                p.insert("start".into(), start);
                put(&mut p, "end", end);
                dext.push(obj([("url", Value::String(format!("{EXT}JP_MedicationDosage_PeriodOfUse"))), ("valuePeriod", Value::Object(p))]));
            }
            // TQ1-3 repeat pattern: JAMI 16-digit 用法 code (sent as subcomponents of TQ1-3.1).
            let pattern = tq1.field(3).comp(1);
            let (code, text, table) = (pattern.sub(1).text(), pattern.sub(2).text(), pattern.sub(3).text());
            if !code.is_empty() {
                let mut coding = Map::new();
                put(&mut coding, "system", s(codes::system_for(&table, &code, &cx.facility)));
                coding.insert("code".into(), json!(code));
                put(&mut coding, "display", s(Some(text.clone())));
                let timing = dosage.entry("timing").or_insert_with(|| json!({}));
                timing["code"] = obj([("coding", Value::Array(vec![Value::Object(coding)])), ("text", json!(text))]);
                if !text.is_empty() {
                    dosage.insert("text".into(), json!(text));
                }
            }
        }
        if let Some(instr) = rxe.field(7).comp(2).opt() {
            let t = match dosage.get("text").and_then(Value::as_str) {
                Some(existing) => format!("{existing} {instr}"),
                None => instr.into_owned(),
            };
            dosage.insert("text".into(), json!(t));
            dosage.insert("additionalInstruction".into(), Value::Array(vec![cx.cwe(rxe.field(7))]));
        }
        put(&mut dosage, "extension", Value::Array(dext));
        if let Some(rxr) = rxr {
            put(&mut dosage, "route", cx.cwe(rxr.field(1)));
            put(&mut dosage, "site", cx.cwe(rxr.field(2)));
            put(&mut dosage, "method", cx.cwe(rxr.field(4)));
            if !rxr.field(3).is_empty() {
                // RXR-3 administration device (HL7 0164, e.g. IVP 点滴ポンプ): the JP Core extension takes a
                // Reference(Device), so the device is a contained Device with that type.
                let device_type = cx.cwe(rxr.field(3));
                let device = obj([("resourceType", json!("Device")), ("id", json!("device")), ("type", device_type)]);
                match m.get_mut("contained").and_then(Value::as_array_mut) {
                    Some(c) => c.push(device),
                    None => {
                        m.insert("contained".into(), Value::Array(vec![device]));
                    }
                }
                let display = rxr.field(3).comp(2).text().into_owned();
                let mut r = json!({"reference": "#device"});
                if !display.is_empty() {
                    r["display"] = json!(display);
                }
                let ext = dosage.entry("extension").or_insert_with(|| json!([]));
                if let Some(a) = ext.as_array_mut() {
                    a.push(obj([("url", Value::String(format!("{EXT}JP_MedicationDosage_Device"))), ("valueReference", r)]));
                }
            }
        }
        // doseAndRate: RXE-3/5 dose per administration (製剤量), RXE-19 total daily dose (1日量),
        // injections: RXE-23/24 give rate.
        let mut dr = Map::new();
        let dose = med_quantity(cx, &rxe.field(3).text(), rxe.field(5), &loc(3));
        if !dose.is_null() {
            dr.insert(
                "type".into(),
                json!({"coding": [{"system": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationIngredientStrengthType", "code": "1", "display": "製剤量"}]}),
            );
            dr.insert("doseQuantity".into(), dose);
        }
        let daily = rxe.field(19);
        if !daily.comp(1).is_empty() {
            let unit = daily.comp(2);
            let mut num = Map::new();
            if let Some(n) = cx.num(&daily.comp(1).text(), &loc(19)) {
                num.insert("value".into(), n);
                // CQ unit components are subcomponents here: `TAB&錠&MR9P`.
                let (code, disp, table) = (unit.sub(1).text(), unit.sub(2).text(), unit.sub(3).text());
                if !code.is_empty() {
                    num.insert("unit".into(), json!(if disp.is_empty() { code.clone() } else { disp }));
                    if table == "MR9P" {
                        num.insert("system".into(), json!(MERIT9_UNIT));
                    }
                    num.insert("code".into(), json!(code));
                }
                dr.insert(
                    "rateRatio".into(),
                    obj([("numerator", Value::Object(num)), ("denominator", json!({"value": 1, "unit": "日", "system": UCUM, "code": "d"}))]),
                );
            }
        } else if injection {
            let rate = cx.quantity(&rxe.field(23).text(), rxe.field(24), &loc(23));
            put(&mut dr, "rateQuantity", rate);
        }
        if !dr.is_empty() {
            dosage.insert("doseAndRate".into(), Value::Array(vec![Value::Object(dr)]));
        }
        if !dosage.is_empty() {
            m.insert("dosageInstruction".into(), Value::Array(vec![Value::Object(dosage)]));
        }
        // dispenseRequest: RXE-10/11 total dispense amount, supply duration.
        let mut disp = Map::new();
        let q = med_quantity(cx, &rxe.field(10).text(), rxe.field(11), &loc(10));
        put(&mut disp, "quantity", q);
        if let Some(d) = supply {
            disp.insert("expectedSupplyDuration".into(), d);
        }
        put(&mut m, "dispenseRequest", Value::Object(disp));
        cx.push(m);
    }
    Ok(())
}

/// OMP-11 / OMP-12: one MedicationAdministration per RXA. RXA-3/4 period, RXA-5 drug, RXA-6/7 amount,
/// RXA-10 performer, RXA-20 completion status (HL7 0322), RXR route.
pub(super) fn administration(cx: &mut Ctx, injection: bool) -> Result<(), MappingError> {
    let segs: Vec<Segment> = cx.msg.segments().collect();
    let rxas: Vec<(usize, Segment)> = segs.iter().enumerate().filter(|(_, s)| s.id() == "RXA").map(|(i, s)| (i, *s)).collect();
    if rxas.is_empty() {
        return Err(MappingError::MissingSegment("RXA"));
    }
    let orc = cx.msg.segment("ORC");
    let rxr = cx.msg.segment("RXR");
    let order = orc.map(|o| o.field(2).comp(1).text().into_owned()).filter(|o| !o.is_empty()).unwrap_or_else(|| cx.src.order_no.to_string());
    let rp_raw = orc.map(|o| o.field(4).comp(1).text().into_owned()).unwrap_or_default();
    let rp = match rp_raw.split('_').collect::<Vec<_>>().as_slice() {
        [_, rp, _] => rp.trim_start_matches('0').to_string(),
        _ if !rp_raw.is_empty() => rp_raw.clone(),
        _ => "1".to_string(),
    };
    for (n, (_, rxa)) in rxas.iter().enumerate() {
        let n = n + 1;
        let loc = |f: usize| format!("RXA[{n}]-{f}");
        let prof = if injection { profile::MEDICATION_ADMINISTRATION_INJECTION } else { profile::MEDICATION_ADMINISTRATION };
        let mut a = resource("MedicationAdministration", &cx.id(&format!("RXA.{n}")), prof);
        let mut ids = rp_identifiers(cx, &rp, n, &order);
        if injection {
            ids.remove(1);
        }
        a.insert("identifier".into(), Value::Array(ids));
        let status = match rxa.field(20).raw() {
            "RE" | "NA" => "not-done",
            "PA" => "stopped",
            _ => "completed",
        };
        a.insert("status".into(), json!(status));
        if injection {
            let mut med = Map::new();
            med.insert("resourceType".into(), json!("Medication"));
            med.insert("id".into(), json!("medication"));
            med.insert("meta".into(), json!({"profile": [profile::MEDICATION]}));
            med.insert("status".into(), json!("active"));
            let mut num = match cx.quantity(&rxa.field(6).text(), rxa.field(7), &loc(6)) {
                Value::Object(o) => o,
                _ => Map::new(),
            };
            if num.is_empty() {
                num.insert("value".into(), json!(1));
            }
            med.insert(
                "ingredient".into(),
                Value::Array(vec![obj([("itemCodeableConcept", cx.cwe(rxa.field(5))), ("strength", obj([("numerator", Value::Object(num)), ("denominator", json!({"value": 1, "unit": "回", "system": MERIT9_UNIT, "code": "TIME"}))]))])]),
            );
            a.insert("contained".into(), Value::Array(vec![Value::Object(med)]));
            let mut r = json!({"reference": "#medication"});
            if let Some(d) = rxa.field(5).comp(2).opt() {
                r["display"] = json!(d);
            }
            a.insert("medicationReference".into(), r);
        } else {
            a.insert("medicationCodeableConcept".into(), cx.cwe(rxa.field(5)));
        }
        a.insert("subject".into(), cx.patient());
        let start = cx.dt(rxa.field(3), &loc(3));
        let end = cx.dt(rxa.field(4), &loc(4));
        if start.is_null() {
            cx.warn(WarningKind::Value, loc(3), "administration start missing; using the file's timestamp");
            a.insert(
                "effectiveDateTime".into(),
                json!(hl7_datetime(&cx.src.timestamp[..cx.src.timestamp.len().min(14)]).unwrap_or_default()),
            );
        } else if end.is_null() || end == start {
            a.insert("effectiveDateTime".into(), start);
        } else {
            a.insert("effectivePeriod".into(), obj([("start", start), ("end", end)]));
        }
        let performer = cx.xcn(rxa.field(10));
        if !performer.is_null() {
            a.insert("performer".into(), Value::Array(vec![obj([("actor", performer)])]));
        }
        let mut dosage = Map::new();
        if let Some(site) = rxa.field(9).comp(2).opt() {
            dosage.insert("text".into(), json!(site));
        }
        if let Some(rxr) = rxr {
            put(&mut dosage, "route", cx.cwe(rxr.field(1)));
            put(&mut dosage, "site", cx.cwe(rxr.field(2)));
        }
        let dose = cx.quantity(&rxa.field(6).text(), rxa.field(7), &loc(6));
        put(&mut dosage, "dose", dose);
        if injection {
            if let Some(rate) = rxa.field(12).opt() {
                // RXA-12 administered per time unit, e.g. `102ml/hr`.
                let digits: String = rate.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
                let unit = &rate[digits.len()..];
                if let Some(v) = decimal(&digits) {
                    let mut q = Map::new();
                    q.insert("value".into(), v);
                    q.insert("unit".into(), json!(unit));
                    if let Some(u) = ucum_code(unit) {
                        q.insert("system".into(), json!(UCUM));
                        q.insert("code".into(), json!(u));
                    }
                    dosage.insert("rateQuantity".into(), Value::Object(q));
                }
            }
        }
        put(&mut a, "dosage", Value::Object(dosage));
        cx.push(a);
    }
    Ok(())
}

/// OMD (食事オーダ, OMD^O03): ORC + TQ1 + ODS → NutritionOrder (FHIR R4 base profile; JP Core 1.1.2 has
/// none). ODS-3 diet code, ODS-4 instruction text, TQ1-3 schedule, TQ1-7 start.
pub(super) fn diet_order(cx: &mut Ctx) -> Result<(), MappingError> {
    let ods: Vec<Segment> = cx.msg.segments().filter(|s| s.id() == "ODS").collect();
    if ods.is_empty() {
        return Err(MappingError::MissingSegment("ODS"));
    }
    let orc = cx.msg.segment("ORC");
    let tq1 = cx.msg.segment("TQ1");
    let mut no = resource("NutritionOrder", &cx.id("ODS"), profile::NUTRITION_ORDER);
    if let Some(o) = orc {
        if let Some(p) = o.field(2).comp(1).opt() {
            no.insert("identifier".into(), json!([{"value": p}]));
        }
    }
    let status = orc.map(|o| order_status(o.field(1).raw(), o.field(5).raw())).unwrap_or("active");
    no.insert("status".into(), json!(status));
    no.insert("intent".into(), json!("order"));
    no.insert("patient".into(), cx.patient());
    let when = orc.map(|o| cx.dt(o.field(9), "ORC-9")).unwrap_or(Value::Null);
    let when = if when.is_null() {
        json!(hl7_datetime(&cx.src.timestamp[..cx.src.timestamp.len().min(14)]).unwrap_or_default())
    } else {
        when
    };
    no.insert("dateTime".into(), when);
    if let Some(o) = orc {
        put(&mut no, "orderer", cx.xcn(o.field(12)));
    }
    let mut diet = Map::new();
    let types: Vec<Value> = ods.iter().filter(|o| !o.field(3).is_empty()).map(|o| cx.cwe(o.field(3))).collect();
    put(&mut diet, "type", Value::Array(types));
    let instructions: Vec<String> = ods.iter().filter_map(|o| o.field(4).opt().map(|c| c.into_owned())).collect();
    if !instructions.is_empty() {
        diet.insert("instruction".into(), json!(instructions.join("、")));
    }
    if let Some(tq1) = tq1 {
        let pat = tq1.field(3).comp(1);
        let mut timing = Map::new();
        if !pat.sub(1).is_empty() {
            let mut coding = Map::new();
            coding.insert("system".into(), json!("http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"));
            coding.insert("code".into(), json!(pat.sub(1).text()));
            put(&mut coding, "display", s(pat.sub(2).opt()));
            timing.insert("code".into(), obj([("coding", Value::Array(vec![Value::Object(coding)])), ("text", json!(pat.sub(2).text()))]));
        }
        let start = cx.dt(tq1.field(7), "TQ1-7");
        if !start.is_null() {
            timing.insert("repeat".into(), json!({"boundsPeriod": {"start": start}}));
        }
        if !timing.is_empty() {
            diet.insert("schedule".into(), Value::Array(vec![Value::Object(timing)]));
        }
    }
    if diet.is_empty() {
        diet.insert("instruction".into(), json!("食事オーダ"));
    }
    no.insert("oralDiet".into(), Value::Object(diet));
    cx.push(no);
    Ok(())
}
