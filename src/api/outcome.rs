//! Errors as data: every failure of the REST API becomes an `OperationOutcome` (FHIR R4 §3.1.0.1.6,
//! "OperationOutcome") with `application/fhir+json; charset=utf-8` and the right HTTP status.
//!
//! Internal details (database messages, panics) are never sent to clients: a 500 carries a generic
//! diagnostic plus the request id, and the detail is logged without PHI.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::search::SearchError;
use crate::store::StoreError;
use crate::validation::SchemaIssue;

/// `Content-Type` of every FHIR response.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// `issue.severity`: `fatal` | `error` | `warning` | `information`.
    pub severity: &'static str,
    /// `issue.code` (value set `issue-type`), e.g. `invalid`, `structure`, `not-found`, `conflict`.
    pub code: &'static str,
    /// `issue.diagnostics`: human-readable text without PHI.
    pub diagnostics: String,
    /// `issue.expression` (FHIRPath-ish, e.g. `Patient.name[0].text`) and `issue.location` (same path).
    pub expression: Option<String>,
}

impl Issue {
    /// An `error` issue with the given code and text.
    pub fn error(code: &'static str, diagnostics: impl Into<String>) -> Issue {
        Issue { severity: "error", code, diagnostics: diagnostics.into(), expression: None }
    }
    /// Attach `expression`/`location`.
    pub fn at(mut self, expression: impl Into<String>) -> Issue {
        self.expression = Some(expression.into());
        self
    }
    /// The issue as FHIR JSON.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics});
        if let Some(e) = &self.expression {
            v["location"] = json!([e]);
            v["expression"] = json!([e]);
        }
        v
    }
}

/// An API failure: an HTTP status and the OperationOutcome issues describing it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status (400, 404, 405, 406, 409, 410, 412, 413, 415, 422, 500 …).
    pub status: StatusCode,
    /// At least one issue.
    pub issues: Vec<Issue>,
}

impl ApiError {
    /// Error with one issue.
    pub fn new(status: StatusCode, code: &'static str, diagnostics: impl Into<String>) -> ApiError {
        ApiError { status, issues: vec![Issue::error(code, diagnostics)] }
    }
    /// 400 `invalid`.
    pub fn bad_request(diagnostics: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "invalid", diagnostics)
    }
    /// 404 `not-found`.
    pub fn not_found(diagnostics: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not-found", diagnostics)
    }
    /// 404 for a path segment that is not an R4 resource type.
    pub fn unknown_type(t: &str) -> ApiError {
        let shown: String = t.chars().take(64).collect();
        Self::new(StatusCode::NOT_FOUND, "not-supported", format!("unknown resource type '{shown}'"))
    }
    /// 500 `exception`, generic text (detail must be logged by the caller, never returned).
    pub fn internal() -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "exception", "internal server error")
    }
    /// 422 `structure` with one issue per schema problem (FHIR R4 §3.1.0.4: "422 Unprocessable Entity").
    pub fn schema(issues: Vec<SchemaIssue>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            issues: issues
                .into_iter()
                .map(|i| Issue::error("structure", i.message).at(i.expression))
                .collect(),
        }
    }
    /// The OperationOutcome JSON.
    pub fn outcome(&self) -> Value {
        operation_outcome(&self.issues)
    }
}

/// Build an `OperationOutcome` resource from issues.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    json!({"resourceType": "OperationOutcome", "issue": issues.iter().map(Issue::to_json).collect::<Vec<_>>()})
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(t, id) => ApiError::not_found(format!("{t}/{id} not found")),
            StoreError::Gone(t, id) => ApiError::new(StatusCode::GONE, "deleted", format!("{t}/{id} has been deleted")),
            e @ StoreError::VersionConflict { .. } => ApiError::new(StatusCode::PRECONDITION_FAILED, "conflict", e.to_string()),
            e @ StoreError::MultipleMatches(_) => ApiError::new(StatusCode::PRECONDITION_FAILED, "multiple-matches", e.to_string()),
            StoreError::Invalid(m) => ApiError::bad_request(m),
            StoreError::Database(m) => {
                tracing::error!(error.kind = "database", error.len = m.len(), "store failure");
                tracing::debug!(error = %m, "store failure detail");
                ApiError::internal()
            }
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::UnknownResourceType(t) => ApiError::unknown_type(&t),
            SearchError::Unsupported { .. } => ApiError::new(StatusCode::BAD_REQUEST, "not-supported", e.to_string()),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.outcome()).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        resp
    }
}

/// `Result` alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
