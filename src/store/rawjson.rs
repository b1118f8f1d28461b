//! Byte-exact JSON editing for stored resources.
//!
//! FHIR R4 §2.6.2 (JSON representation) makes decimal precision significant (`1.50` ≠ `1.5`), but
//! `serde_json` without `arbitrary_precision` parses numbers into `f64`. The store therefore never
//! re-serialises a resource: it scans the accepted text, finds the top-level `id` and `meta` members and
//! splices new text for `id`, `meta.versionId` and `meta.lastUpdated` into the original bytes. Every other
//! byte (number text, key order, whitespace, unknown members) is kept as received.

use super::StoreError;
#[cfg(test)]
use serde_json::Value;

/// One object member found by the scanner: byte spans into the scanned text.
#[derive(Debug, Clone)]
struct Member {
    /// Decoded key.
    key: String,
    /// Span of the value (start inclusive, end exclusive).
    value: (usize, usize),
}

/// A parsed object: its members and the span of the braces.
#[derive(Debug)]
struct ObjectSpan {
    /// Index of `{`.
    open: usize,
    /// Index of `}`.
    close: usize,
    members: Vec<Member>,
}

struct Scanner<'a> {
    b: &'a [u8],
    s: &'a str,
}

fn bad(msg: &str) -> StoreError {
    StoreError::Invalid(format!("malformed JSON: {msg}"))
}

impl<'a> Scanner<'a> {
    fn ws(&self, mut i: usize) -> usize {
        while i < self.b.len() && matches!(self.b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    }

    /// `i` points at `"`; returns the index after the closing quote.
    fn string_end(&self, i: usize) -> Result<usize, StoreError> {
        let mut j = i + 1;
        while j < self.b.len() {
            match self.b[j] {
                b'"' => return Ok(j + 1),
                b'\\' => j += 2,
                _ => j += 1,
            }
        }
        Err(bad("unterminated string"))
    }

    /// Returns the end (exclusive) of the value starting at `i` (no leading whitespace).
    fn value_end(&self, i: usize) -> Result<usize, StoreError> {
        match self.b.get(i) {
            None => Err(bad("unexpected end")),
            Some(b'"') => self.string_end(i),
            Some(b'{') | Some(b'[') => {
                let mut depth = 0usize;
                let mut j = i;
                while j < self.b.len() {
                    match self.b[j] {
                        b'"' => {
                            j = self.string_end(j)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                Err(bad("unbalanced brackets"))
            }
            Some(_) => {
                let mut j = i;
                while j < self.b.len() && !matches!(self.b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    j += 1;
                }
                if j == i {
                    Err(bad("empty value"))
                } else {
                    Ok(j)
                }
            }
        }
    }

    /// Scans the object whose `{` is at `open`.
    fn object(&self, open: usize) -> Result<ObjectSpan, StoreError> {
        if self.b.get(open) != Some(&b'{') {
            return Err(bad("expected object"));
        }
        let mut members = Vec::new();
        let mut i = self.ws(open + 1);
        if self.b.get(i) == Some(&b'}') {
            return Ok(ObjectSpan { open, close: i, members });
        }
        loop {
            if self.b.get(i) != Some(&b'"') {
                return Err(bad("expected key"));
            }
            let kend = self.string_end(i)?;
            let raw_key = &self.s[i..kend];
            let key = if raw_key.contains('\\') {
                serde_json::from_str::<String>(raw_key).map_err(|_| bad("bad key"))?
            } else {
                raw_key[1..raw_key.len() - 1].to_string()
            };
            i = self.ws(kend);
            if self.b.get(i) != Some(&b':') {
                return Err(bad("expected ':'"));
            }
            let vstart = self.ws(i + 1);
            let vend = self.value_end(vstart)?;
            members.push(Member { key, value: (vstart, vend) });
            i = self.ws(vend);
            match self.b.get(i) {
                Some(b',') => i = self.ws(i + 1),
                Some(b'}') => return Ok(ObjectSpan { open, close: i, members }),
                _ => return Err(bad("expected ',' or '}'")),
            }
        }
    }
}

/// What the store writes into a resource's text.
pub(crate) struct Stamp<'a> {
    pub id: &'a str,
    pub version_id: i64,
    /// RFC 3339 instant with milliseconds and `Z`.
    pub last_updated: &'a str,
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

#[cfg(test)]
/// Checks that `body` is a JSON object for `resource_type` and returns the parsed value (numbers lossy:
/// use only for indexing) together with the stamped text (`id`, `meta.versionId`, `meta.lastUpdated`
/// replaced or inserted; everything else byte-identical).
///
/// Errors: `Invalid` when the text is not JSON, not an object, or `resourceType` differs.
pub(crate) fn stamp(resource_type: &str, body: &str, st: &Stamp<'_>) -> Result<(Value, String), StoreError> {
    let value: Value = serde_json::from_str(body).map_err(|e| StoreError::Invalid(format!("malformed JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| StoreError::Invalid("resource is not a JSON object".into()))?;
    match obj.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == resource_type => {}
        Some(t) => {
            return Err(StoreError::Invalid(format!(
                "resourceType '{t}' does not match the endpoint type '{resource_type}'"
            )))
        }
        None => return Err(StoreError::Invalid("resourceType is missing".into())),
    }
    let text = stamp_text(body, st)?;
    Ok((value, text))
}

/// Text-only part of [`stamp`]; `body` must already be a valid JSON object.
pub(crate) fn stamp_text(body: &str, st: &Stamp<'_>) -> Result<String, StoreError> {
    let sc = Scanner { b: body.as_bytes(), s: body };
    let start = sc.ws(0);
    let top = sc.object(start)?;
    // edits: (start, end, replacement), non-overlapping
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let id_text = json_string(st.id);
    let vid_text = json_string(&st.version_id.to_string());
    let lu_text = json_string(st.last_updated);

    let mut has_id = false;
    let mut has_meta = false;
    for m in &top.members {
        match m.key.as_str() {
            "id" => {
                has_id = true;
                edits.push((m.value.0, m.value.1, id_text.clone()));
            }
            "meta" => {
                has_meta = true;
                let meta = sc.object(m.value.0).map_err(|_| StoreError::Invalid("meta must be a JSON object".into()))?;
                let mut has_vid = false;
                let mut has_lu = false;
                for mm in &meta.members {
                    match mm.key.as_str() {
                        "versionId" => {
                            has_vid = true;
                            edits.push((mm.value.0, mm.value.1, vid_text.clone()));
                        }
                        "lastUpdated" => {
                            has_lu = true;
                            edits.push((mm.value.0, mm.value.1, lu_text.clone()));
                        }
                        _ => {}
                    }
                }
                let mut ins = String::new();
                if !has_vid {
                    ins.push_str("\"versionId\":");
                    ins.push_str(&vid_text);
                }
                if !has_lu {
                    if !ins.is_empty() {
                        ins.push(',');
                    }
                    ins.push_str("\"lastUpdated\":");
                    ins.push_str(&lu_text);
                }
                if !ins.is_empty() {
                    if !meta.members.is_empty() {
                        ins.push(',');
                    }
                    edits.push((meta.open + 1, meta.open + 1, ins));
                }
            }
            _ => {}
        }
    }
    if !has_id || !has_meta {
        // Insert after the `id` member if present, otherwise after `resourceType`, otherwise at the start.
        let anchor = top
            .members
            .iter()
            .find(|m| m.key == "id")
            .or_else(|| top.members.iter().find(|m| m.key == "resourceType"))
            .map(|m| m.value.1);
        let mut ins = String::new();
        if !has_id {
            ins.push_str("\"id\":");
            ins.push_str(&id_text);
        }
        if !has_meta {
            if !ins.is_empty() {
                ins.push(',');
            }
            ins.push_str("\"meta\":{\"versionId\":");
            ins.push_str(&vid_text);
            ins.push_str(",\"lastUpdated\":");
            ins.push_str(&lu_text);
            ins.push('}');
        }
        match anchor {
            Some(pos) => edits.push((pos, pos, format!(",{ins}"))),
            None => {
                if !top.members.is_empty() {
                    ins.push(',');
                }
                edits.push((top.open + 1, top.open + 1, ins));
            }
        }
    }
    edits.sort_by_key(|e| (e.0, e.1));
    let mut out = String::with_capacity(body.len() + 96);
    let mut pos = 0usize;
    for (s, e, rep) in edits {
        out.push_str(&body[pos..s]);
        out.push_str(&rep);
        pos = e;
    }
    out.push_str(&body[pos..]);
    let _ = top.close;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> Stamp<'static> {
        Stamp { id: "abc", version_id: 3, last_updated: "2026-11-21T07:00:00.123Z" }
    }

    #[test]
    fn inserts_id_and_meta_keeping_numbers() {
        let body = r#"{"resourceType":"Observation","valueQuantity":{"value":1.50},"x":[1e3,0.10,-0.0]}"#;
        let (_, out) = stamp("Observation", body, &st()).unwrap();
        assert_eq!(
            out,
            r#"{"resourceType":"Observation","id":"abc","meta":{"versionId":"3","lastUpdated":"2026-11-21T07:00:00.123Z"},"valueQuantity":{"value":1.50},"x":[1e3,0.10,-0.0]}"#
        );
    }

    #[test]
    fn replaces_existing_members() {
        let body = "{ \"resourceType\" : \"Patient\",\n \"id\": \"old\", \"meta\": {\"versionId\":\"9\", \"profile\":[\"p\"], \"lastUpdated\": \"x\"}, \"v\": 1.50 }";
        let (_, out) = stamp("Patient", body, &st()).unwrap();
        assert_eq!(
            out,
            "{ \"resourceType\" : \"Patient\",\n \"id\": \"abc\", \"meta\": {\"versionId\":\"3\", \"profile\":[\"p\"], \"lastUpdated\": \"2026-11-21T07:00:00.123Z\"}, \"v\": 1.50 }"
        );
    }

    #[test]
    fn meta_without_version_fields() {
        let body = r#"{"resourceType":"Patient","meta":{"profile":["p"]},"id":"z"}"#;
        let (_, out) = stamp("Patient", body, &st()).unwrap();
        assert_eq!(
            out,
            r#"{"resourceType":"Patient","meta":{"versionId":"3","lastUpdated":"2026-11-21T07:00:00.123Z","profile":["p"]},"id":"abc"}"#
        );
        let body = r#"{"resourceType":"Patient","meta":{}}"#;
        let (_, out) = stamp("Patient", body, &st()).unwrap();
        assert_eq!(
            out,
            r#"{"resourceType":"Patient","id":"abc","meta":{"versionId":"3","lastUpdated":"2026-11-21T07:00:00.123Z"}}"#
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(stamp("Patient", "[1]", &st()).is_err());
        assert!(stamp("Patient", r#"{"resourceType":"Observation"}"#, &st()).is_err());
        assert!(stamp("Patient", r#"{"resourceType":"Patient","meta":3}"#, &st()).is_err());
        assert!(stamp("Patient", r#"{"resourceType":"Patient""#, &st()).is_err());
        assert!(stamp("Patient", r#"{"id":"x"}"#, &st()).is_err());
    }

    #[test]
    fn strings_with_braces_and_escapes() {
        let body = r#"{"resourceType":"Patient","text":{"div":"<div>{\"}[</div>"},"k\u0069":"v"}"#;
        let (_, out) = stamp("Patient", body, &st()).unwrap();
        assert!(out.contains(r#""text":{"div":"<div>{\"}[</div>"}"#));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["meta"]["versionId"], "3");
    }
}
