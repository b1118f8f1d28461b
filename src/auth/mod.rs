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

pub mod authenticator;
pub mod dev;
pub mod introspect;
pub mod jwks;
pub mod layer;
pub mod scopes;

pub use authenticator::{AuthError, AuthMode, Authenticator, AuthSettings, IssuerSettings};

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;

impl Principal {
    /// `true` when the caller holds the role.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// A refusal produced by authentication (401) or authorization (403), put into the **response
/// extensions** so that an outer layer (audit, BALP "failed authentication" / "access denied") can record it.
///
/// `reason` is a short text without PHI (e.g. `expired token`, `missing scope user/Observation.s`);
/// `principal` is the verified caller for a 403, `None` for a 401.
#[derive(Debug, Clone)]
pub struct Denial {
    /// 401 or 403.
    pub status: StatusCode,
    /// Why, without PHI.
    pub reason: String,
    /// The authenticated caller, when there is one.
    pub principal: Option<Arc<Principal>>,
}

/// Per-request slot where the access decision point records a [`Denial`]; the authentication layer
/// puts one into the request extensions and moves its content into the response extensions when the
/// response is a 401/403. Cheap: one uncontended mutex per request.
#[derive(Debug, Default)]
pub struct DenialSlot(Mutex<Option<Denial>>);

impl DenialSlot {
    /// Record `denial` (the last one recorded wins).
    pub fn record(&self, denial: Denial) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(denial);
        }
    }
    /// Take the recorded denial, if any.
    pub fn take(&self) -> Option<Denial> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

/// Marker put into the request extensions by the authentication layer when authentication is disabled
/// (`TOBIUME_AUTH=none`): `api::access::RequestContext` then allows requests without a principal.
#[derive(Debug, Clone, Copy)]
pub struct AuthenticationDisabled;
