//! Imaging, endoscopy and physiology: OMG-01/02/03 orders (OMG^O19) → JP_ServiceRequest per ORC (parent
//! and child orders, children carry the parent as `requisition`) and supporting OBX → JP_Observation_Common;
//! OMG-11/12 実施 (OMI^Z23) → ServiceRequest (completed), JP_ImagingStudy_Radiology/_Endoscopy per study
//! instance UID (IPC-3), JP_Procedure per performed item (ZE1; endoscopy OBX performers, times, drugs and
//! devices fold into it), remaining OBX → Observation; OMG-13 生理検査結果 (ORU^R01) → JP_DiagnosticReport_Common
//! + JP_Observation_Common per OBX (ECG intervals, axes, amplitudes with their decimal text).
//! JAMI has no maps for these data types; element choices follow JP Core 1.1.2 profiles.

use super::adt::obx_value;
use super::*;
use crate::mapping::json::{obj, resource};
use crate::mapping::profile;

fn kind(data_type: &str) -> (&'static str, Value) {
    match data_type {
        "OMG-01" | "OMG-11" => (
            "radiology",
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "363679005", "display": "Imaging"}], "text": "放射線検査"}),
        ),
        "OMG-02" | "OMG-12" => (
            "endoscopy",
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "423827005", "display": "Endoscopy"}], "text": "内視鏡検査"}),
        ),
        _ => (
            "physiology",
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "103693007", "display": "Diagnostic procedure"}], "text": "生理検査"}),
        ),
    }
}

pub(super) fn omg(cx: &mut Ctx) -> Result<(), MappingError> {
    let segs: Vec<Segment> = cx.msg.segments().collect();
    if cx.src.data_type == "OMG-13" {
        return physiology_result(cx, &segs);
    }
    if !segs.iter().any(|s| s.id() == "OBR") {
        return Err(MappingError::MissingSegment("OBR"));
    }
    let performed = matches!(cx.src.data_type, "OMG-11" | "OMG-12");
    let (kind_name, category) = kind(cx.src.data_type);

    // Groups: ORC + following segments.
    let mut groups: Vec<Vec<Segment>> = Vec::new();
    for s in &segs {
        if s.id() == "ORC" {
            groups.push(vec![*s]);
        } else if let Some(g) = groups.last_mut() {
            g.push(*s);
        }
    }
    let mut seen_orders: Vec<String> = Vec::new();
    let mut studies: Vec<String> = Vec::new();
    let mut order_ids: Vec<(String, String)> = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let n = gi + 1;
        let orc = g[0];
        let Some(obr) = g.iter().find(|s| s.id() == "OBR").copied() else { continue };
        let placer = orc.field(2).comp(1).text().into_owned();
        let placer = if placer.is_empty() { obr.field(2).comp(1).text().into_owned() } else { placer };
        let key = if placer.is_empty() { format!("G{n}") } else { placer.clone() };
        let sr_id = cx.id(&format!("ORC.{key}"));
        let first_time = !seen_orders.contains(&key);
        if first_time {
            seen_orders.push(key.clone());
            order_ids.push((key.clone(), sr_id.clone()));
            let mut sr = resource("ServiceRequest", &sr_id, profile::SERVICE_REQUEST);
            if !placer.is_empty() {
                sr.insert("identifier".into(), json!([{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}]}, "value": placer}]));
            }
            let parent = orc.field(8).comp(1).opt().or_else(|| obr.field(29).comp(1).opt());
            if let Some(p) = parent {
                sr.insert("requisition".into(), json!({"value": p}));
            }
            let status = if performed { "completed" } else { order_status(orc.field(1).raw(), orc.field(5).raw()) };
            sr.insert("status".into(), json!(status));
            sr.insert("intent".into(), json!(if orc.field(1).raw() == "CH" { "order" } else { "original-order" }));
            sr.insert("category".into(), Value::Array(vec![category.clone()]));
            if let Some(tq1) = g.iter().find(|s| s.id() == "TQ1") {
                let pr = match tq1.field(9).comp(1).raw() {
                    "S" => Some("stat"),
                    "A" => Some("asap"),
                    "R" => Some("routine"),
                    _ => None,
                };
                if let Some(p) = pr {
                    sr.insert("priority".into(), json!(p));
                }
            }
            put(&mut sr, "code", cx.cwe(obr.field(4)));
            sr.insert("subject".into(), cx.patient());
            let authored = cx.dt(orc.field(9), &format!("ORC[{n}]-9"));
            put(&mut sr, "authoredOn", authored);
            put(&mut sr, "requester", cx.xcn(orc.field(12)));
            // Supporting OBX in orders (e.g. body weight for contrast, clinical findings).
            if !performed {
                let mut support = Vec::new();
                for (oi, obx) in g.iter().filter(|s| s.id() == "OBX").enumerate() {
                    let oid = observation(cx, *obx, &format!("ORC.{key}.OBX.{}", oi + 1), &format!("OBX[{n}.{}]", oi + 1), &category);
                    support.push(json!({"reference": format!("Observation/{oid}")}));
                }
                put(&mut sr, "supportingInfo", Value::Array(support));
            }
            cx.push(sr);
        }
        if !performed {
            continue;
        }
        // ImagingStudy per IPC study instance UID.
        for ipc in g.iter().filter(|s| s.id() == "IPC") {
            let uid = ipc.field(3).comp(1).text().into_owned();
            if uid.is_empty() || studies.contains(&uid) {
                continue;
            }
            studies.push(uid.clone());
            let prof = if kind_name == "endoscopy" { profile::IMAGING_STUDY_ENDOSCOPY } else { profile::IMAGING_STUDY_RADIOLOGY };
            let mut st = resource("ImagingStudy", &cx.id(&format!("IPC.{}", studies.len())), prof);
            let mut ids = vec![json!({"system": "urn:dicom:uid", "value": format!("urn:oid:{uid}")})];
            if let Some(acc) = ipc.field(1).comp(1).opt() {
                ids.push(json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}, "value": acc}));
            }
            st.insert("identifier".into(), Value::Array(ids));
            st.insert("status".into(), json!("available"));
            let modality = ipc.field(5).comp(1).text();
            if !modality.is_empty() {
                st.insert("modality".into(), json!([{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": modality}]));
            }
            st.insert("subject".into(), cx.patient());
            let started = cx.dt(obr.field(7), &format!("OBR[{n}]-7"));
            put(&mut st, "started", started);
            st.insert("basedOn".into(), json!([{"reference": format!("ServiceRequest/{sr_id}")}]));
            put(&mut st, "procedureCode", Value::Array(vec![cx.cwe(obr.field(4))]));
            cx.push(st);
        }
        // Procedure for the performed child order (one per ZE1, or the OBR itself).
        if orc.field(1).raw() == "CH" || !groups.iter().any(|gg| gg[0].field(1).raw() == "CH") {
            procedure(cx, g, &key, &sr_id, obr, n, &category);
        }
    }
    Ok(())
}

fn procedure(cx: &mut Ctx, g: &[Segment], key: &str, sr_id: &str, obr: Segment, n: usize, category: &Value) {
    let mut p = resource("Procedure", &cx.id(&format!("ORC.{key}.PROC")), profile::PROCEDURE);
    p.insert("basedOn".into(), json!([{"reference": format!("ServiceRequest/{sr_id}")}]));
    p.insert("status".into(), json!("completed"));
    p.insert("category".into(), category.clone());
    let ze1 = g.iter().find(|s| s.id() == "ZE1");
    let code = match ze1 {
        Some(z) if !z.field(3).is_empty() => cx.cwe(z.field(3)),
        _ => cx.cwe(obr.field(4)),
    };
    p.insert("code".into(), code);
    p.insert("subject".into(), cx.patient());
    let mut performers = Vec::new();
    let mut start = Value::Null;
    let mut end = Value::Null;
    let mut used = Vec::new();
    let mut notes = Vec::new();
    for obx in g.iter().filter(|s| s.id() == "OBX") {
        let code = obx.field(3).comp(1).text().into_owned();
        match obx.field(2).raw() {
            "XCN" => {
                let who = cx.xcn(obx.field(5));
                if !who.is_null() {
                    performers.push(obj([("function", json!({"text": obx.field(3).comp(2).text()})), ("actor", who)]));
                }
            }
            "TS" => {
                let v = cx.dt(obx.field(5), "OBX-5");
                if code.ends_with("P1") || code.ends_with("B1") && start.is_null() {
                    if start.is_null() {
                        start = v;
                    }
                } else if code.ends_with("P2") {
                    end = v;
                }
            }
            "ZRD" | "CWE" | "CE" => {
                let v = obx.field(5);
                if !v.comp(1).is_empty() {
                    used.push(cx.cwe(v));
                }
            }
            _ => {
                if let Some(t) = obx.field(5).opt() {
                    notes.push(json!({"text": format!("{}: {}", obx.field(3).comp(2).text(), t)}));
                }
            }
        }
    }
    if let Some(z) = ze1 {
        let who = cx.xcn(z.field(7));
        if !who.is_null() {
            performers.push(obj([("actor", who)]));
        }
    }
    if start.is_null() {
        start = cx.dt(obr.field(7), &format!("OBR[{n}]-7"));
    }
    if !start.is_null() {
        if end.is_null() {
            p.insert("performedDateTime".into(), start);
        } else {
            p.insert("performedPeriod".into(), obj([("start", start), ("end", end)]));
        }
    }
    put(&mut p, "performer", Value::Array(performers));
    put(&mut p, "usedCode", Value::Array(used));
    put(&mut p, "note", Value::Array(notes));
    cx.push(p);
}

fn observation(cx: &mut Ctx, obx: Segment, part: &str, loc: &str, category: &Value) -> String {
    let id = cx.id(part);
    let mut ob = resource("Observation", &id, profile::OBSERVATION_COMMON);
    ob.insert("status".into(), json!(observation_status(obx.field(11).raw())));
    ob.insert(
        "category".into(),
        Value::Array(vec![json!({"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "procedure", "display": "Procedure"}]}), category.clone()]),
    );
    let mut code = cx.cwe(obx.field(3));
    if code.get("text").is_none() {
        code["text"] = json!(obx.field(3).comp(1).text());
    }
    ob.insert("code".into(), code);
    ob.insert("subject".into(), cx.patient());
    let eff = cx.dt(obx.field(14), &format!("{loc}-14"));
    let eff = if eff.is_null() {
        json!(hl7_datetime(&cx.src.timestamp[..cx.src.timestamp.len().min(14)]).unwrap_or_default())
    } else {
        eff
    };
    ob.insert("effectiveDateTime".into(), eff);
    obx_value(cx, &mut ob, obx, loc);
    cx.push(ob);
    id
}

/// OMG-13: ORU^R01 physiology results (ECG): DiagnosticReport per OBR, Observations per OBX.
fn physiology_result(cx: &mut Ctx, segs: &[Segment]) -> Result<(), MappingError> {
    let obrs: Vec<usize> = segs.iter().enumerate().filter(|(_, s)| s.id() == "OBR").map(|(i, _)| i).collect();
    if obrs.is_empty() {
        return Err(MappingError::MissingSegment("OBR"));
    }
    let (_, category) = kind("OMG-13");
    for (k, &start) in obrs.iter().enumerate() {
        let n = k + 1;
        let end = obrs.get(k + 1).copied().unwrap_or(segs.len());
        let obr = segs[start];
        let effective = cx.dt(obr.field(7), &format!("OBR[{n}]-7"));
        let mut results = Vec::new();
        for (oi, obx) in segs[start..end].iter().filter(|s| s.id() == "OBX").enumerate() {
            let loc = format!("OBX[{n}.{}]", oi + 1);
            let id = cx.id(&format!("OBR.{n}.OBX.{}", oi + 1));
            let mut ob = resource("Observation", &id, profile::OBSERVATION_COMMON);
            ob.insert("status".into(), json!(observation_status(obx.field(11).raw())));
            ob.insert(
                "category".into(),
                Value::Array(vec![json!({"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "procedure", "display": "Procedure"}]}), category.clone()]),
            );
            // OBX-3.1 may carry subcomponents (MFER code & lead, `58368&7`): keep them as one code.
            let c1 = obx.field(3).comp(1);
            let code_text = if c1.sub(2).is_empty() { c1.text().into_owned() } else { c1.raw().to_string() };
            let disp = obx.field(3).comp(2).raw().replace('&', " ");
            let table = obx.field(3).comp(3).text();
            let coding = cx.coding(&code_text, &disp, &table);
            ob.insert("code".into(), obj([("coding", Value::Array(vec![coding])), ("text", Value::String(disp))]));
            ob.insert("subject".into(), cx.patient());
            let eff = cx.dt(obx.field(14), &format!("{loc}-14"));
            put(&mut ob, "effectiveDateTime", if eff.is_null() { effective.clone() } else { eff });
            if obx.field(6).comp(2).is_empty() && obx.field(6).comp(3).is_empty() {
                // A bare unit (`bpm`, `msec`, `mV`): UCUM where known.
                if let ("NM", Some(v)) = (obx.field(2).raw(), decimal(&obx.field(5).text())) {
                    let unit = obx.field(6).comp(1).text();
                    let mut q = Map::new();
                    q.insert("value".into(), v);
                    if !unit.is_empty() {
                        q.insert("unit".into(), json!(unit));
                        if let Some(u) = ucum_code(&unit) {
                            q.insert("system".into(), json!("http://unitsofmeasure.org"));
                            q.insert("code".into(), json!(u));
                        }
                    }
                    ob.insert("valueQuantity".into(), Value::Object(q));
                } else {
                    obx_value(cx, &mut ob, *obx, &loc);
                }
            } else {
                obx_value(cx, &mut ob, *obx, &loc);
            }
            results.push(json!({"reference": format!("Observation/{id}")}));
            cx.push(ob);
        }
        let mut dr = resource("DiagnosticReport", &cx.id(&format!("OBR.{n}")), profile::DIAGNOSTIC_REPORT_COMMON);
        if let Some(p) = obr.field(2).comp(1).opt() {
            dr.insert("identifier".into(), json!([{"value": p}]));
        }
        dr.insert("status".into(), json!(match obr.field(25).raw() { "P" | "I" => "preliminary", "C" => "corrected", _ => "final" }));
        dr.insert("category".into(), Value::Array(vec![category.clone()]));
        dr.insert("code".into(), cx.cwe(obr.field(4)));
        dr.insert("subject".into(), cx.patient());
        put(&mut dr, "effectiveDateTime", effective);
        let issued = cx.dt(obr.field(22), &format!("OBR[{n}]-22"));
        if issued.as_str().is_some_and(|s| s.contains('T')) {
            dr.insert("issued".into(), issued);
        }
        put(&mut dr, "resultsInterpreter", match cx.xcn(obr.field(32)) {
            Value::Null => Value::Null,
            v => Value::Array(vec![v]),
        });
        put(&mut dr, "result", Value::Array(results));
        cx.push(dr);
    }
    Ok(())
}
