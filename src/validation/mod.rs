//! Write-time validation of FHIR resources (FHIR R4 §3.1.0.4, §2.6 JSON representation).
//!
//! * [`schema`]: structural check against the official R4 JSON schema (patched at load for Japanese text,
//!   canonical primitive extensions and precise `resourceType` dispatch). The API maps a failure to
//!   HTTP 422 with one `OperationOutcome.issue` per problem.
//!
//! Profile (StructureDefinition / JP Core) validation and FHIRPath invariants are a later layer.

pub mod schema;

pub use schema::{check, SchemaIssue};
