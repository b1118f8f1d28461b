//! Helpers shared by `register_*.rs` and `lookup_*.rs`: registrations built from
//! `conformance/registration.example.json`, and small request helpers over `api_support`'s app.
#![allow(dead_code)]

use serde_json::{json, Value};

/// The card-id identifier system.
pub const CARD: &str = "http://tobiume-gateway.local/fhir/sid/card-id";

/// The full example registration (every item).
pub fn example() -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/registration.example.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The example with other identity data: card id, kana (family, given), kanji (family, given), birth
/// date, sex, address text.
pub fn person(card: &str, kana: (&str, &str), kanji: (&str, &str), birth: &str, sex: &str, address: &str) -> Value {
    let mut v = example();
    v["cardId"] = json!(card);
    let d = &mut v["demographics"];
    d["nameKana"]["value"] = json!({"family": kana.0, "given": kana.1});
    d["nameKanji"]["value"] = json!({"family": kanji.0, "given": kanji.1});
    d["birthDate"]["value"] = json!(birth);
    d["sex"]["value"] = json!(sex);
    d["address"]["value"] = json!({"text": address});
    v
}

/// 大野 翔平 (オオノ ショウヘイ), 1950-05-05, male — the long-vowel test person.
pub fn ohno(card: &str) -> Value {
    person(card, ("オオノ", "ショウヘイ"), ("大野", "翔平"), "1950-05-05", "male", "福岡県北九州市小倉北区城内1-1")
}

/// 梅野 優子 (ウメノ ユウコ), 1962-11-03, female.
pub fn yuko(card: &str) -> Value {
    person(card, ("ウメノ", "ユウコ"), ("梅野", "優子"), "1962-11-03", "female", "福岡県福岡市博多区博多駅前2-2-2")
}

/// Percent-encodes a query value.
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Logical ids of a searchset Bundle's matches.
pub fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}
