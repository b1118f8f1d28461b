//! Request bodies and query strings: content-type negotiation (415), size limit (413), JSON parsing with
//! the location of syntax errors (400 with `expression`), `resourceType`/`id` checks, form decoding.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::body::Bytes;
use serde_json::Value;

use super::outcome::{ApiError, ApiResult, Issue};

/// A resource to write: parsed value (for checks) plus the exact JSON text it came from (for the store).
#[derive(Debug, Clone)]
pub struct ResourceText {
    /// The parsed resource.
    pub value: Value,
    /// The exact JSON text (decimal text preserved).
    pub text: String,
}

impl ResourceText {
    /// From a value only (text = compact serialisation).
    pub fn from_value(value: Value) -> Self {
        let text = serde_json::to_string(&value).unwrap_or_else(|_| "{}".into());
        ResourceText { value, text }
    }
}

/// Accepted media types for resource bodies (FHIR R4 §3.1.0.1.4 / §2.6): `application/fhir+json`,
/// `application/json` (any parameters such as `charset`, `fhirVersion`).
pub fn require_json(headers: &HeaderMap) -> ApiResult<()> {
    require_media(headers, &["application/fhir+json", "application/json", "text/json"])
}

/// 415 unless the request `Content-Type` is one of `allowed` (or absent, then JSON is assumed).
pub fn require_media(headers: &HeaderMap, allowed: &[&str]) -> ApiResult<()> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let ct = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if allowed.iter().any(|a| *a == ct) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            format!("unsupported Content-Type '{}'; use {}", ct.chars().take(80).collect::<String>(), allowed.join(" or ")),
        ))
    }
}

/// 406 for `_format` values other than JSON (FHIR R4 §3.1.0.1.10); the gateway speaks JSON only.
pub fn check_format(params: &[(String, String)]) -> ApiResult<()> {
    for (k, v) in params {
        if k == "_format" {
            let v = v.to_ascii_lowercase();
            let ok = v == "json" || v.contains("json");
            if !ok {
                return Err(ApiError::new(StatusCode::NOT_ACCEPTABLE, "not-supported", "only _format=json is supported"));
            }
        }
    }
    Ok(())
}

/// Collect the body up to `limit` bytes. Errors: 413 `too-costly` when larger, 400 when the stream fails.
pub async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let mut too_big = e.to_string().contains("length limit");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                too_big |= s.to_string().contains("length limit");
                src = s.source();
            }
            if too_big {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-costly",
                    format!("request body exceeds the limit of {limit} bytes"),
                ))
            } else {
                Err(ApiError::bad_request("could not read request body"))
            }
        }
    }
}

/// Parse a JSON body. Errors: 400 `invalid` for non-UTF-8 or malformed JSON, with `diagnostics` giving
/// line/column and `expression`/`location` the path reached (e.g. `Patient.name[0].given`).
pub fn parse_json(bytes: &[u8]) -> ApiResult<(Value, String)> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not UTF-8 (byte {})", e.valid_up_to())))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut de = serde_json::Deserializer::from_str(text);
    let res: Result<Value, _> = serde_path_to_error::deserialize(&mut de);
    let value = match res {
        Ok(v) => v,
        Err(e) => {
            let path = path_expression(e.path());
            let inner = e.inner();
            let msg = format!(
                "malformed JSON at line {} column {}: {}",
                inner.line(),
                inner.column(),
                strip_position(&inner.to_string())
            );
            let mut issue = Issue::error("structure", msg);
            issue.expression = Some(path);
            return Err(ApiError { status: StatusCode::BAD_REQUEST, issues: vec![issue] });
        }
    };
    if let Err(e) = de.end() {
        let msg = format!("malformed JSON at line {} column {}: trailing characters", e.line(), e.column());
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "structure", msg));
    }
    Ok((value, text.to_string()))
}

/// FHIRPath-ish path (`Resource.name[0].given`) from a serde_path_to_error path.
fn path_expression(p: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in p.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                out.push('.');
                out.push_str(variant);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    if out.is_empty() {
        "Resource".into()
    } else if out.starts_with('[') {
        format!("Resource{out}")
    } else {
        format!("Resource.{out}")
    }
}

fn strip_position(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Parse a resource body for `resource_type` and check `resourceType`. Errors: 400 (malformed, not an
/// object, missing/mismatched `resourceType`).
pub fn parse_resource(bytes: &[u8], resource_type: &str) -> ApiResult<ResourceText> {
    let (value, text) = parse_json(bytes)?;
    if !value.is_object() {
        return Err(ApiError::bad_request("request body must be a JSON object (a FHIR resource)"));
    }
    match value.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == resource_type => Ok(ResourceText { value, text }),
        Some(t) => Err(ApiError::bad_request(format!(
            "resourceType '{}' does not match the URL type '{resource_type}'",
            t.chars().take(64).collect::<String>()
        ))
        .with_expression("Resource.resourceType")),
        None => Err(ApiError::bad_request("resource has no resourceType").with_expression("Resource.resourceType")),
    }
}

impl ApiError {
    /// Set `expression`/`location` on every issue.
    pub fn with_expression(mut self, e: &str) -> ApiError {
        for i in &mut self.issues {
            i.expression = Some(e.to_string());
        }
        self
    }
}

/// Decode `application/x-www-form-urlencoded` text (query strings and `_search` bodies) into
/// `(name, value)` pairs, `+` as space, `%XX` as bytes (UTF-8, lossy).
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encode a query component (RFC 3986 unreserved kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~:,|$".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Encode pairs as a query string.
pub fn encode_query(params: &[(String, String)]) -> String {
    params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form() {
        assert_eq!(parse_form("name=%E5%B1%B1%E7%94%B0+x&_count=2&x"), vec![
            ("name".into(), "山田 x".into()),
            ("_count".into(), "2".into()),
            ("x".into(), "".into())
        ]);
        assert_eq!(parse_form("a=%"), vec![("a".into(), "%".into())]);
    }

    #[test]
    fn malformed_json_path() {
        let e = parse_json(br#"{"resourceType":"Patient","name":[{"given":["a",]}]}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.issues[0].expression.as_deref(), Some("Resource.name[0].given"), "{e:?}");
    }
}
