//! FHIR responses: `application/fhir+json; charset=utf-8`, `ETag: W/"n"`, `Last-Modified` (HTTP date),
//! `Location` (`/fhir/Type/id/_history/n`), and `Prefer: return=` handling (FHIR R4 §3.1.0.1.8, §3.1.0.6).

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::outcome::{operation_outcome, Issue, FHIR_JSON};
use crate::store::StoredResource;

/// `Prefer: return=…` (FHIR R4 §3.1.0.1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreferReturn {
    /// `return=minimal`: empty body.
    Minimal,
    /// `return=representation` (default): the resource.
    Representation,
    /// `return=OperationOutcome`: an OperationOutcome describing the outcome.
    OperationOutcome,
}

/// Read `Prefer: return=` from request headers (default representation).
pub fn prefer_return(headers: &HeaderMap) -> PreferReturn {
    for v in headers.get_all("prefer") {
        let Ok(s) = v.to_str() else { continue };
        for part in s.split([',', ';']) {
            let part = part.trim();
            if let Some(r) = part.strip_prefix("return=") {
                return match r.trim_matches('"') {
                    "minimal" => PreferReturn::Minimal,
                    "OperationOutcome" => PreferReturn::OperationOutcome,
                    _ => PreferReturn::Representation,
                };
            }
        }
    }
    PreferReturn::Representation
}

/// A FHIR JSON response from bytes.
pub fn fhir_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

/// A FHIR JSON response from a value.
pub fn fhir_json(status: StatusCode, v: &serde_json::Value) -> Response {
    fhir_bytes(status, serde_json::to_vec(v).unwrap_or_default())
}

/// `W/"n"`.
pub fn etag(version_id: i64) -> String {
    format!("W/\"{version_id}\"")
}

/// RFC 3339 instant → IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`); `None` if it does not parse.
pub fn http_date(rfc3339: &str) -> Option<String> {
    let t = OffsetDateTime::parse(rfc3339, &Rfc3339).ok()?.to_offset(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&fmt).ok()
}

/// Parse an HTTP date (IMF-fixdate) into a UTC instant.
pub fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s.trim(), &fmt).ok().map(|p| p.assume_utc())
}

/// Add `ETag`, `Last-Modified` and (when `location`) `Location` for a stored version.
pub fn version_headers(r: &mut Response, base_url: &str, sr: &StoredResource, location: bool) {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag(sr.version_id)) {
        h.insert(header::ETAG, v);
    }
    if let Some(v) = http_date(&sr.last_updated).and_then(|d| HeaderValue::from_str(&d).ok()) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if location {
        let loc = format!("{base_url}/{}/{}/_history/{}", sr.resource_type, sr.id, sr.version_id);
        if let Ok(v) = HeaderValue::from_str(&loc) {
            h.insert(header::LOCATION, v);
        }
    }
}

/// The response to a successful write (create/update/patch/conditional create), honouring `Prefer`.
/// `status` is 201 for creates, 200 otherwise; the body is the stored text (representation), empty
/// (minimal) or an informational OperationOutcome.
pub fn write_response(status: StatusCode, base_url: &str, sr: &StoredResource, prefer: PreferReturn) -> Response {
    let mut r = match prefer {
        PreferReturn::Representation => fhir_bytes(status, sr.json.clone().into_bytes()),
        PreferReturn::Minimal => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = status;
            r
        }
        PreferReturn::OperationOutcome => {
            let msg = format!("{}/{} version {} written", sr.resource_type, sr.id, sr.version_id);
            let issue = Issue { severity: "information", code: "informational", diagnostics: msg, expression: None };
            fhir_json(status, &operation_outcome(&[issue]))
        }
    };
    version_headers(&mut r, base_url, sr, true);
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        let d = super::http_date("2026-11-21T07:00:00.123Z").unwrap();
        assert_eq!(d, "Sat, 21 Nov 2026 07:00:00 GMT");
        assert!(super::parse_http_date(&d).is_some());
    }
}
