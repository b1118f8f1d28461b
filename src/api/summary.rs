//! `_summary=true` element lists (FHIR R4 §3.1.0.8, `search.html#summary`): per resource type, the
//! top-level elements returned in summary mode — `id`, `meta`, `text`, every element with
//! `ElementDefinition.isSummary = true` and every mandatory element — generated from the official
//! `profiles-resources.json` into `conformance/summary-elements.json` (embedded at build time).

use std::collections::HashMap;
use std::sync::LazyLock;

static TABLE: LazyLock<HashMap<String, Vec<String>>> = LazyLock::new(|| {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../conformance/summary-elements.json")).unwrap_or_default();
    let mut m = HashMap::new();
    if let Some(o) = v.get("elements").and_then(|e| e.as_object()) {
        for (t, list) in o {
            let names = list
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            m.insert(t.clone(), names);
        }
    }
    m
});

/// `true` if top-level JSON member `member` of a `resource_type` resource is a summary element.
/// Choice elements match by prefix (`deceased[x]` matches `deceasedBoolean`); primitive extension
/// siblings (`_birthDate`) follow their element. Unknown types keep `id`, `meta`, `text` only.
pub fn is_summary_element(resource_type: &str, member: &str) -> bool {
    let member = member.strip_prefix('_').unwrap_or(member);
    if matches!(member, "id" | "meta" | "text" | "resourceType") {
        return true;
    }
    let Some(list) = TABLE.get(resource_type) else { return false };
    list.iter().any(|e| match e.strip_suffix("[x]") {
        Some(prefix) => member.starts_with(prefix)
            && member[prefix.len()..].chars().next().is_some_and(|c| c.is_ascii_uppercase()),
        None => e == member,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn patient_summary() {
        assert!(super::is_summary_element("Patient", "birthDate"));
        assert!(super::is_summary_element("Patient", "deceasedBoolean"));
        assert!(!super::is_summary_element("Patient", "photo"));
        assert!(!super::is_summary_element("Patient", "contact"));
    }
}
