//! PPR-01 (病名(歴)情報, PPR^ZD1): PRB (+ ZPR modifiers, ORC recorder) → JP_Condition; ZI1 → JP_Coverage.
//! JAMI map "Segment PPR_01_PRB to Condition"; ZPR per JAHIS 病名情報データ交換規約 v3.0C.

use super::*;
use crate::mapping::json::resource;
use crate::mapping::profile;

pub(super) fn ppr01(cx: &mut Ctx) -> Result<(), MappingError> {
    let segs: Vec<Segment> = cx.msg.segments().collect();
    let prb_positions: Vec<usize> = segs.iter().enumerate().filter(|(_, s)| s.id() == "PRB").map(|(i, _)| i).collect();
    if prb_positions.is_empty() {
        return Err(MappingError::MissingSegment("PRB"));
    }
    for (k, &start) in prb_positions.iter().enumerate() {
        let end = prb_positions.get(k + 1).copied().unwrap_or(segs.len());
        let group = &segs[start..end];
        condition(cx, group, k + 1);
    }
    // ZI1 carries insurance with the IN1 field layout (SS-MIX2 sample).
    for (i, zi1) in segs.iter().filter(|s| s.id() == "ZI1").enumerate() {
        super::adt::coverage(cx, *zi1, &format!("ZI1{}", i + 1));
    }
    Ok(())
}

fn condition(cx: &mut Ctx, group: &[Segment], n: usize) {
    let prb = group[0];
    let loc = |f: usize| format!("PRB[{n}]-{f}");
    let zpr = group.iter().find(|s| s.id() == "ZPR").copied();
    // ORC for this problem: the first ORC after the PRB in its group, else the message's first ORC.
    let orc = group.iter().find(|s| s.id() == "ORC").copied().or_else(|| cx.msg.segment("ORC"));
    let part = format!(
        "PRB.{}",
        prb.field(4).comp(1).opt().unwrap_or(Cow::Owned(n.to_string()))
    );
    let mut c = resource("Condition", &cx.id(&part), profile::CONDITION);

    // Security label PRB-25 (HL7 0177 confidentiality) → meta.security.
    if let Some(conf) = prb.field(25).comp(1).opt() {
        if let Some(meta) = c.get_mut("meta").and_then(Value::as_object_mut) {
            meta.insert(
                "security".into(),
                json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": conf, "display": prb.field(25).comp(2).text()}]),
            );
        }
    }
    // PRB-1 action code: DE = deleted.
    let deleted = prb.field(1).raw() == "DE";
    // PRB-14 outcome (HL7 0241, 転帰) → clinicalStatus; abatement only with a resolving outcome.
    let outcome = prb.field(14).comp(1).text();
    let clinical = codes::translate(map::CONDITION_OUTCOME, &outcome).map(|t| t.code.as_str()).unwrap_or("active");
    c.insert(
        "clinicalStatus".into(),
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]}),
    );
    // Modifiers: prefix ZPR-1 (管理番号) / ZPR-4 (交換用コード), postfix ZPR-3 / ZPR-6.
    let mut extensions = Vec::new();
    let mut suspected = false;
    if let Some(z) = zpr {
        for (key_field, ex_field, url) in [
            (1, 4, "JP_Condition_DiseasePrefixModifier"),
            (3, 6, "JP_Condition_DiseasePostfixModifier"),
        ] {
            for (key, ex) in z.field(key_field).reps().zip(z.field(ex_field).reps().chain(std::iter::repeat(z.field(0)))) {
                let mut codings = Vec::new();
                for v in [key, ex] {
                    let code = v.comp(1).text();
                    if code.is_empty() {
                        continue;
                    }
                    let disp = v.comp(2).text();
                    if disp.contains("疑い") {
                        suspected = true;
                    }
                    let mut coding = Map::new();
                    coding.insert("system".into(), json!(codes::modifier_system(&code)));
                    coding.insert("code".into(), json!(code));
                    put(&mut coding, "display", s(Some(disp)));
                    codings.push(Value::Object(coding));
                }
                if !codings.is_empty() {
                    extensions.push(json!({
                        "url": format!("http://jpfhir.jp/fhir/core/Extension/StructureDefinition/{url}"),
                        "valueCodeableConcept": {"coding": codings}
                    }));
                }
            }
        }
    }
    let verification = if deleted {
        "entered-in-error"
    } else if suspected {
        "provisional"
    } else {
        match prb.field(13).comp(1).raw() {
            "P" | "S" | "W" => "provisional",
            "R" | "E" => "refuted",
            _ => "confirmed",
        }
    };
    c.insert(
        "verificationStatus".into(),
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]}),
    );
    put(&mut c, "extension", Value::Array(extensions));
    // Categories: encounter diagnosis, and 主診断 (PRB-18, JAHIS table JHSD0007) as sent.
    let mut categories = vec![json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis", "display": "Encounter Diagnosis"}]})];
    let main = prb.field(18);
    if !main.comp(1).is_empty() {
        categories.push(cx.cwe(main));
    }
    c.insert("category".into(), Value::Array(categories));
    // code: PRB-3 (MEDIS 病名管理番号 / 交換用コード), ZPR-2/5, PRB-10 ICD-10.
    let mut codings: Vec<Value> = Vec::new();
    let mut add = |coding: Value| {
        if !codings.iter().any(|c| c.get("system") == coding.get("system") && c.get("code") == coding.get("code")) {
            codings.push(coding);
        }
    };
    let prb3 = prb.field(3);
    if !prb3.comp(1).is_empty() {
        add(cx.coding(&prb3.comp(1).text(), &prb3.comp(2).text(), &prb3.comp(3).text()));
    }
    if let Some(z) = zpr {
        for f in [2, 5] {
            let v = z.field(f);
            if !v.comp(1).is_empty() {
                add(cx.coding(&v.comp(1).text(), &v.comp(2).text(), &v.comp(3).text()));
            }
        }
    }
    let icd = prb.field(10);
    if !icd.comp(1).is_empty() {
        let table = if icd.comp(3).is_empty() { Cow::Borrowed("I10") } else { icd.comp(3).text() };
        add(cx.coding(&icd.comp(1).text(), &icd.comp(2).text(), &table));
    }
    // The disease name as written (PRB-17 free text, else PRB-3 display), with modifiers where ZPR-7 says.
    let text = prb.field(17).opt().or_else(|| prb3.comp(2).opt()).or_else(|| zpr.and_then(|z| z.field(7).opt()));
    let mut code = Map::new();
    put(&mut code, "coding", Value::Array(codings));
    put(&mut code, "text", s(text));
    if code.is_empty() {
        cx.warn(WarningKind::Value, loc(3), "no disease code or name; condition kept without code");
    }
    put(&mut c, "code", Value::Object(code));
    c.insert("subject".into(), cx.patient());
    let onset = cx.dt(prb.field(16), &loc(16));
    put(&mut c, "onsetDateTime", onset);
    let abatement = cx.dt(prb.field(9), &loc(9));
    if !abatement.is_null() {
        if matches!(clinical, "resolved" | "remission" | "inactive") {
            c.insert("abatementDateTime".into(), abatement);
        } else {
            cx.warn(
                WarningKind::Value,
                loc(9),
                "resolution date given while the outcome (PRB-14) is not resolved; abatement not set (FHIR con-4)",
            );
        }
    }
    let recorded = cx.dt(prb.field(7), &loc(7));
    put(&mut c, "recordedDate", recorded);
    if let Some(orc) = orc {
        let who = cx.xcn(orc.field(12));
        put(&mut c, "recorder", who.clone());
        put(&mut c, "asserter", who);
    }
    if let Some(id) = prb.field(4).comp(1).opt() {
        c.insert(
            "identifier".into(),
            json!([{"system": "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier", "value": id}]),
        );
    }
    cx.push(c);
}
