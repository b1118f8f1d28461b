//! tobiume-gateway: a FHIR R4 (JP Core 1.1.2) interoperability gateway for Japanese regional health
//! information networks (とびうめネット first).
//!
//! Data flow (see `docs/architecture.md`): `hl7v2` (bytes → decoded segments) → `ssmix2` (storage
//! layout, versions) → `mapping` (JP Core resources) → `validation` → `store` (versioned resources and
//! search index) → `api` (FHIR REST). `fhirpath` and `search` serve indexing and queries.
#![forbid(unsafe_code)]

/// mimalloc as the global allocator: mapping and indexing build many small JSON objects, and glibc
/// malloc/free were ~25 % of SS-MIX2 conversion time (perf, 2026-11-21).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod consent;
pub mod fhirpath;
pub mod hl7v2;
pub mod import;
pub mod mapping;
pub mod search;
pub mod ssmix2;
pub mod store;
pub mod summary;
pub mod validation;
