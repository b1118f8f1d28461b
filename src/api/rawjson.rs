//! Text-preserving JSON helpers ("raw JSON is the source of truth"): edit the top level of a resource's
//! JSON text without re-serialising nested values, so decimal text (`1.50`), member order and unknown
//! extensions survive `_summary`, `_elements`, `meta` stamping and `urn:uuid:` rewriting.

use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

/// The members of one JSON object, in document order, values as raw text slices.
#[derive(Debug)]
pub struct RawObject<'a>(pub Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<String, &'de RawValue>()? {
                    v.push((k, val));
                }
                Ok(RawObject(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Parse the top level of a JSON object. Errors: the text is not a JSON object.
pub fn object_entries(text: &str) -> Result<RawObject<'_>, serde_json::Error> {
    serde_json::from_str(text)
}

/// Serialise members back to an object (`{"k":raw,…}`), values copied verbatim.
pub fn write_object<'a, I, S>(entries: I) -> String
where
    I: IntoIterator<Item = (S, &'a str)>,
    S: AsRef<str>,
{
    let mut out = String::with_capacity(256);
    out.push('{');
    let mut first = true;
    for (k, v) in entries {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&serde_json::to_string(k.as_ref()).unwrap_or_else(|_| "\"\"".into()));
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    out
}

/// Keep only the top-level members for which `keep(name)` is true (`resourceType` is always kept). When
/// `subsetted`, the `meta.tag` `SUBSETTED` (system `http://terminology.hl7.org/CodeSystem/v3-ObservationValue`)
/// is added, as FHIR R4 §3.1.0.8 / `search.html#summary` requires. Input that is not an object is returned
/// unchanged.
pub fn filter_top_level(text: &str, keep: impl Fn(&str) -> bool, subsetted: bool) -> String {
    let Ok(obj) = object_entries(text) else { return text.to_string() };
    let mut out: Vec<(String, String)> = Vec::with_capacity(obj.0.len() + 1);
    let mut saw_meta = false;
    for (k, v) in &obj.0 {
        if k == "meta" {
            saw_meta = true;
            if subsetted {
                out.push((k.clone(), add_subsetted(Some(v.get()))));
                continue;
            }
        }
        if k == "resourceType" || k == "meta" || keep(k) {
            out.push((k.clone(), v.get().to_string()));
        }
    }
    if subsetted && !saw_meta {
        let pos = out.iter().position(|(k, _)| k == "resourceType").map(|p| p + 1).unwrap_or(0);
        let pos = out.iter().position(|(k, _)| k == "id").map(|p| p + 1).unwrap_or(pos);
        out.insert(pos, ("meta".into(), add_subsetted(None)));
    }
    write_object(out.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn add_subsetted(meta: Option<&str>) -> String {
    let mut m: Value = meta.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_else(|| serde_json::json!({}));
    if let Some(o) = m.as_object_mut() {
        let tags = o.entry("tag").or_insert_with(|| Value::Array(vec![]));
        if let Some(a) = tags.as_array_mut() {
            a.push(serde_json::json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                                       "code": "SUBSETTED", "display": "Resource encoded in summary mode"}));
        }
    }
    m.to_string()
}

/// Set `id`, `meta.versionId` and `meta.lastUpdated` in a resource's text, keeping everything else
/// verbatim (member order: `resourceType`, `id`, `meta` first when they are added). Errors: not an object.
pub fn stamp(text: &str, id: &str, version_id: i64, last_updated: &str) -> Result<String, serde_json::Error> {
    let obj = object_entries(text)?;
    let mut meta: Value = serde_json::json!({});
    let mut rest: Vec<(String, String)> = Vec::new();
    let mut resource_type = None;
    for (k, v) in &obj.0 {
        match k.as_str() {
            "resourceType" => resource_type = Some(v.get().to_string()),
            "id" => {}
            "meta" => meta = serde_json::from_str(v.get()).unwrap_or_else(|_| serde_json::json!({})),
            _ => rest.push((k.clone(), v.get().to_string())),
        }
    }
    if let Some(o) = meta.as_object_mut() {
        o.insert("versionId".into(), Value::String(version_id.to_string()));
        o.insert("lastUpdated".into(), Value::String(last_updated.to_string()));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(rest.len() + 3);
    if let Some(rt) = resource_type {
        out.push(("resourceType".into(), rt));
    }
    out.push(("id".into(), serde_json::to_string(id)?));
    out.push(("meta".into(), meta.to_string()));
    out.extend(rest);
    Ok(write_object(out.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
}

/// Replace every JSON string literal whose (unescaped) content is a key of `map` by the mapped value
/// (FHIR R4 §3.1.0.11.2: `urn:uuid:` fullUrls → `Type/id` references). Literals containing escapes are
/// left alone (a `urn:uuid:` never needs escaping). Works on any JSON text.
pub fn replace_string_literals(text: &str, map: &HashMap<String, String>) -> String {
    if map.is_empty() {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            let start = i;
            i += 1;
            let mut escaped = false;
            while i < bytes.len() && bytes[i] != b'"' {
                if bytes[i] == b'\\' {
                    escaped = true;
                    i += 1;
                }
                i += 1;
            }
            let end = i.min(bytes.len());
            if !escaped && end > start {
                let content = &text[start + 1..end];
                if let Some(new) = map.get(content) {
                    out.push_str(&text[last..start]);
                    out.push_str(&serde_json::to_string(new).unwrap_or_default());
                    last = (end + 1).min(bytes.len());
                }
            }
        }
        i += 1;
    }
    out.push_str(&text[last.min(text.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_keeps_decimal_text() {
        let t = r#"{"resourceType":"Observation","id":"a","valueQuantity":{"value":1.50},"note":[{"text":"x"}]}"#;
        let f = filter_top_level(t, |k| k == "valueQuantity", false);
        assert_eq!(f, r#"{"resourceType":"Observation","valueQuantity":{"value":1.50}}"#);
        let s = filter_top_level(t, |k| k == "id", true);
        assert!(s.contains("SUBSETTED") && s.starts_with(r#"{"resourceType":"Observation","id":"a","meta""#), "{s}");
    }

    #[test]
    fn stamp_and_replace() {
        let t = r#"{"resourceType":"Observation","valueQuantity":{"value":1.50},"subject":{"reference":"urn:uuid:1"}}"#;
        let s = stamp(t, "x", 3, "2026-01-01T00:00:00.000Z").unwrap();
        assert!(s.starts_with(r#"{"resourceType":"Observation","id":"x","meta":{"versionId":"3""#), "{s}");
        assert!(s.contains("1.50"));
        let m = HashMap::from([("urn:uuid:1".to_string(), "Patient/p".to_string())]);
        assert!(replace_string_literals(&s, &m).contains(r#""reference":"Patient/p""#));
    }
}
