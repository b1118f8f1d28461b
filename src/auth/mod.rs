//! Authentication and authorization of API callers (SMART on FHIR resource server).
//!
//! This module defines the **authenticated principal** that the authentication layer puts into every
//! request ([`Principal`]) and that the access decision point (`api::access`), consent (`consent`) and
//! audit (`audit`) consume. Token verification (JWT RS256/ES256/ES384, JWKS, dev keys) and SMART v2
//! scope parsing live in the submodules.

use std::collections::BTreeSet;

/// SMART v2 scope context (SMART App Launch 2.0 §"Scopes for requesting FHIR resources").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeContext {
    /// `patient/…`: limited to the token's patient context ([`Principal::patient`]).
    Patient,
    /// `user/…`: what the user may see (still limited by facility and consent).
    User,
    /// `system/…`: backend services (still limited by facility and consent).
    System,
}

/// One granted SMART v2 scope such as `user/Observation.rs` (v1 `read`/`write`/`*` are mapped to
/// `rs` / `cud` / `cruds`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// `patient` / `user` / `system`.
    pub context: ScopeContext,
    /// Resource type, or `*` for all types.
    pub resource_type: String,
    /// Permitted interactions, a subset of `c r u d s` (create, read, update, delete, search).
    pub permissions: BTreeSet<char>,
}

/// Network roles carried by the token (claim `tobiume_roles`, or IHE IUA `subject_role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A user of an emergency hospital allowed to break the glass (救急時閲覧権限).
    Emergency,
    /// The network secretariat (事務局): reviews AuditEvents, suspends facilities.
    Secretariat,
}

/// The authenticated caller of one request (from a verified access token). Put into the request
/// extensions by the authentication layer and copied into `api::access::RequestContext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token issuer (`iss`).
    pub issuer: String,
    /// Subject (`sub`): the user or, for backend services, the client.
    pub subject: String,
    /// OAuth client (`client_id` / `azp`), if present.
    pub client_id: Option<String>,
    /// Token id (`jti`), recorded in audit (BALP `agent.policy`).
    pub token_id: Option<String>,
    /// The caller's facility: logical id of an `Organization` in this store (claim `facility`, or IUA
    /// `subject_organization_id`). `None` for network-level clients.
    pub facility: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// Patient context for `patient/` scopes (claim `patient`): logical id of a `Patient`.
    pub patient: Option<String>,
    /// Network roles.
    pub roles: BTreeSet<Role>,
    /// Purpose of use (v3-ActReason code, e.g. `TREAT`, `ETREAT`, `BTG`; claim `purpose_of_use`).
    pub purpose_of_use: Option<String>,
    /// Free-text reason stated for an emergency override (claim `reason`).
    pub reason: Option<String>,
}
