//! FHIRPath (subset) over `serde_json::Value` — being written.

/// A parsed FHIRPath expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr;

/// FHIRPath parse error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FHIRPath: {0}")]
pub struct FhirPathError(pub String);
