//! Specimen tests: OML-01 (検体検査オーダ, OML^O33) → JP_Specimen + one JP_ServiceRequest per ordered
//! item; OML-11 (検体検査結果, OUL^R22) → JP_Specimen, JP_ServiceRequest (ORC), JP_DiagnosticReport_LabResult
//! (OBR) and JP_Observation_LabResult (OBX: JLAC10 code, value with its decimal text, unit, reference
//! range, interpretation). JAMI maps "Segment OML_11_SPM/OBR/ORC/OBX"; the JAMI CSV labels OML-11 ORU_R01
//! although SS-MIX2 sends OUL^R22 (both are accepted).

use super::adt::obx_value;
use super::*;
use crate::mapping::json::resource;
use crate::mapping::profile;

/// Groups segments by SPM: each SPM and everything up to the next SPM.
fn spm_groups<'m>(segs: &[Segment<'m>]) -> Vec<Vec<Segment<'m>>> {
    let mut groups: Vec<Vec<Segment<'m>>> = Vec::new();
    for s in segs {
        match s.id() {
            "SPM" => groups.push(vec![*s]),
            "MSH" | "PID" | "PV1" | "PV2" | "NTE" if groups.is_empty() => {}
            _ => {
                if let Some(g) = groups.last_mut() {
                    g.push(*s);
                }
            }
        }
    }
    groups
}

fn specimen(cx: &mut Ctx, spm: Segment, n: usize) -> String {
    let id = cx.id(&format!("SPM.{n}"));
    let mut sp = resource("Specimen", &id, profile::SPECIMEN);
    if let Some(v) = spm.field(2).comp(1).opt() {
        sp.insert("identifier".into(), json!([{"value": v}]));
    }
    sp.insert("status".into(), json!("available"));
    put(&mut sp, "type", cx.cwe(spm.field(4)));
    sp.insert("subject".into(), cx.patient());
    let collected = cx.dt(spm.field(17).comp(1), &format!("SPM[{n}]-17"));
    if !collected.is_null() {
        sp.insert("collection".into(), json!({"collectedDateTime": collected}));
    }
    let received = cx.dt(spm.field(18), &format!("SPM[{n}]-18"));
    put(&mut sp, "receivedTime", received);
    cx.push(sp);
    id
}

fn lab_category() -> Value {
    json!([{"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "laboratory", "display": "Laboratory"}]}])
}

/// OML-01: specimen, then one ServiceRequest per ordered OBX item (JLAC10), grouped by ORC-2.
pub(super) fn lab_order(cx: &mut Ctx) -> Result<(), MappingError> {
    let segs: Vec<Segment> = cx.msg.segments().collect();
    let groups = spm_groups(&segs);
    if groups.is_empty() {
        return Err(MappingError::MissingSegment("SPM"));
    }
    for (gi, g) in groups.iter().enumerate() {
        let n = gi + 1;
        let spec_id = specimen(cx, g[0], n);
        let orc = g.iter().find(|s| s.id() == "ORC").copied();
        let obr = g.iter().find(|s| s.id() == "OBR").copied();
        for (oi, obx) in g.iter().filter(|s| s.id() == "OBX").enumerate() {
            let mut sr = resource("ServiceRequest", &cx.id(&format!("SPM.{n}.OBX.{}", oi + 1)), profile::SERVICE_REQUEST);
            if let Some(o) = orc {
                if let Some(p) = o.field(2).comp(1).opt() {
                    sr.insert("requisition".into(), json!({"value": p}));
                }
            }
            let status = orc.map(|o| order_status(o.field(1).raw(), o.field(5).raw())).unwrap_or("active");
            sr.insert("status".into(), json!(status));
            sr.insert("intent".into(), json!("order"));
            let mut cat = vec![json!({"coding": [{"system": "http://snomed.info/sct", "code": "108252007", "display": "Laboratory procedure"}]})];
            if let Some(obr) = obr {
                if !obr.field(4).is_empty() {
                    cat.push(cx.cwe(obr.field(4)));
                }
            }
            sr.insert("category".into(), Value::Array(cat));
            sr.insert("code".into(), cx.cwe(obx.field(3)));
            sr.insert("subject".into(), cx.patient());
            if let Some(o) = orc {
                let authored = cx.dt(o.field(9), "ORC-9");
                put(&mut sr, "authoredOn", authored);
                put(&mut sr, "requester", cx.xcn(o.field(12)));
            }
            sr.insert("specimen".into(), json!([{"reference": format!("Specimen/{spec_id}")}]));
            cx.push(sr);
        }
    }
    Ok(())
}

/// OML-11: specimen, ServiceRequest, DiagnosticReport, Observations per SPM group.
pub(super) fn lab_result(cx: &mut Ctx) -> Result<(), MappingError> {
    let segs: Vec<Segment> = cx.msg.segments().collect();
    let groups = spm_groups(&segs);
    if groups.is_empty() {
        return Err(MappingError::MissingSegment("SPM"));
    }
    for (gi, g) in groups.iter().enumerate() {
        let n = gi + 1;
        let spec_id = specimen(cx, g[0], n);
        let spec_ref = json!({"reference": format!("Specimen/{spec_id}")});
        let orc = g.iter().find(|s| s.id() == "ORC").copied();
        let obr = g.iter().find(|s| s.id() == "OBR").copied();
        let default_effective = match obr {
            Some(o) => cx.dt(o.field(7), &format!("OBR[{n}]-7")),
            None => Value::Null,
        };
        let spm_time = cx.dt(g[0].field(17).comp(1), &format!("SPM[{n}]-17"));
        let default_effective = if default_effective.is_null() { spm_time } else { default_effective };

        // ServiceRequest from ORC (+ OBR-4 code).
        let sr_id = cx.id(&format!("SPM.{n}.ORC"));
        let mut sr = resource("ServiceRequest", &sr_id, profile::SERVICE_REQUEST);
        let placer = orc.and_then(|o| o.field(2).comp(1).opt()).or_else(|| obr.and_then(|o| o.field(2).comp(1).opt()));
        if let Some(p) = &placer {
            sr.insert("identifier".into(), json!([{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}]}, "value": p}]));
        }
        let status = orc.map(|o| order_status(o.field(1).raw(), o.field(5).raw())).unwrap_or("completed");
        sr.insert("status".into(), json!(status));
        sr.insert("intent".into(), json!("order"));
        sr.insert("category".into(), json!([{"coding": [{"system": "http://snomed.info/sct", "code": "108252007", "display": "Laboratory procedure"}]}]));
        if let Some(o) = obr {
            put(&mut sr, "code", cx.cwe(o.field(4)));
        }
        sr.insert("subject".into(), cx.patient());
        if let Some(o) = orc {
            put(&mut sr, "requester", cx.xcn(o.field(12)));
        } else if let Some(o) = obr {
            put(&mut sr, "requester", cx.xcn(o.field(16)));
        }
        sr.insert("specimen".into(), Value::Array(vec![spec_ref.clone()]));
        cx.push(sr);

        // Observations.
        let mut results = Vec::new();
        for (oi, obx) in g.iter().filter(|s| s.id() == "OBX").enumerate() {
            let part = format!("SPM.{n}.OBX.{}", oi + 1);
            let loc = format!("OBX[{n}.{}]", oi + 1);
            let mut ob = resource("Observation", &cx.id(&part), profile::OBSERVATION_LAB_RESULT);
            ob.insert("basedOn".into(), json!([{"reference": format!("ServiceRequest/{sr_id}")}]));
            ob.insert("status".into(), json!(observation_status(obx.field(11).raw())));
            ob.insert("category".into(), lab_category());
            let mut code = cx.cwe(obx.field(3));
            if code.get("text").is_none() {
                let t = obx.field(3).comp(1).text().into_owned();
                code["text"] = json!(t);
            }
            ob.insert("code".into(), code);
            ob.insert("subject".into(), cx.patient());
            let eff = cx.dt(obx.field(14), &format!("{loc}-14"));
            let eff = if eff.is_null() { default_effective.clone() } else { eff };
            if eff.is_null() {
                cx.warn(WarningKind::Value, format!("{loc}-14"), "no observation time in OBX-14, OBR-7 or SPM-17");
            }
            put(&mut ob, "effectiveDateTime", eff);
            if let Some(o) = obr {
                let issued = cx.dt(o.field(22), &format!("OBR[{n}]-22"));
                if let Value::String(s) = &issued {
                    if s.contains('T') {
                        ob.insert("issued".into(), issued.clone());
                    }
                }
            }
            obx_value(cx, &mut ob, *obx, &loc);
            ob.insert("specimen".into(), spec_ref.clone());
            results.push(json!({"reference": format!("Observation/{}", ob["id"].as_str().unwrap_or_default())}));
            cx.push(ob);
        }

        // DiagnosticReport from OBR.
        if let Some(o) = obr {
            let mut dr = resource("DiagnosticReport", &cx.id(&format!("SPM.{n}.OBR")), profile::DIAGNOSTIC_REPORT_LAB_RESULT);
            dr.insert("basedOn".into(), json!([{"reference": format!("ServiceRequest/{sr_id}")}]));
            let st = match o.field(25).raw() {
                "P" | "I" | "S" => "preliminary",
                "C" => "corrected",
                "X" => "cancelled",
                _ => "final",
            };
            dr.insert("status".into(), json!(st));
            dr.insert("category".into(), json!([{"coding": [{"system": "http://loinc.org", "code": "LP29693-6", "display": "Laboratory"}]}]));
            let code = cx.cwe(o.field(4));
            dr.insert("code".into(), if code.as_object().is_some_and(|m| !m.is_empty()) { code } else { json!({"text": "検体検査"}) });
            dr.insert("subject".into(), cx.patient());
            put(&mut dr, "effectiveDateTime", default_effective.clone());
            let issued = cx.dt(o.field(22), &format!("OBR[{n}]-22"));
            if let Value::String(s) = &issued {
                if s.contains('T') {
                    dr.insert("issued".into(), issued.clone());
                }
            }
            dr.insert("specimen".into(), Value::Array(vec![spec_ref.clone()]));
            put(&mut dr, "result", Value::Array(results));
            cx.push(dr);
        }
    }
    Ok(())
}
