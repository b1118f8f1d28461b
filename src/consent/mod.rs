//! The consent decision point (PDP): may this caller see this patient's data?
//!
//! Used by exactly one caller, `api::access` (every read and write of the REST API, the operations and
//! the viewer go through it). Rules (domain.md §1.3, federation-security.md §3.2–3.3), for a caller with
//! a facility `F` (an Organization id) and purpose of use `p` (default `TREAT`), about patient `P`:
//!
//! 1. `F` suspended (Organization `$suspend`) → **deny** (everything, not only patient data).
//! 2. Any active Consent of `P` that denies `F` for `p` (a per-facility deny provision nested in a
//!    blanket consent, or a deny root provision naming or covering `F`) → **deny**.
//! 3. `F` is a facility `P` attends ([`model::PatientFacts::attending`]) → permit.
//! 4. `F` is `P`'s emergency referral hospital (registration extension) → permit.
//! 5. An active Consent permits `F` for `p`: a blanket permit (no actor = every participating facility),
//!    or a per-facility permit naming `F` (`provision.actor` IRCP = `Organization/F`) → permit.
//!    National-sharing consents ([`model::NATIONAL_SHARING_POLICY`]) permit only the national service's
//!    facility ([`ConsentConfig::national_service`]), which blanket consents do not cover.
//! 6. Otherwise → **deny**.
//!
//! Consents count when `status = active` (withdrawal = `inactive`), the scope is `patient-privacy`, the
//! period covers now, and the performer is the patient or a proxy (an active `RelatedPerson` of the
//! patient: 代筆者, 成年後見人). A caller without a facility sees only the patient of its token's patient
//! context (`patient/` scopes), except a network-level backend service (`system/` scopes, no facility, no
//! patient context), which sees all; without authentication (`TOBIUME_AUTH=none`) everything is permitted.
//! Break-the-glass ([`Pdp::break_the_glass`]) is decided here but granted only by `api::access` for the
//! emergency `$summary`.
//!
//! # Cache and freshness
//!
//! Facts per patient are cached under the database's **security generation**, a counter that triggers bump
//! in the same transaction as every write of a Consent, Patient, RelatedPerson or CareTeam version and
//! every suspension (any process, any path — REST, import, CLI). Each decision reports the generation it
//! was made under; the audit append that must succeed before a response is sent compares it with the
//! database's in the same transaction and rejects stale decisions, and the request is decided again. So a
//! withdrawal or a suspension takes effect on the next request, in every process sharing the database,
//! without a database round trip per request.

pub mod demo;
pub mod model;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::auth::{Principal, Role, ScopeContext};
use crate::store::{Store, StoreError};
pub use model::{patients_of, PatientFacts, EMERGENCY_PURPOSES, NATIONAL_SHARING_POLICY};

/// Configuration of the PDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentConfig {
    /// Organization id of the national EHR sharing service (`TOBIUME_NATIONAL_SERVICE_ORG`, default
    /// `national-ehr-sharing`): the facility national-sharing consents permit.
    pub national_service: String,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        ConsentConfig {
            national_service: std::env::var("TOBIUME_NATIONAL_SERVICE_ORG")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "national-ehr-sharing".into()),
        }
    }
}

/// Why access was permitted (recorded in the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// Authentication is disabled.
    AuthDisabled,
    /// The token's own patient (`patient/` context, no facility).
    OwnRecord,
    /// A network-level backend service: `system/` scopes and no facility (the network's own systems —
    /// national bridge, federation, exports — whose tokens only the network's authorization server
    /// issues).
    NetworkService,
    /// The caller's facility is one the patient attends.
    Attending,
    /// The caller's facility is the patient's emergency referral hospital.
    EmergencyReferralHospital,
    /// A Consent (its id) permits the facility.
    Consent(String),
    /// Break-the-glass emergency override.
    BreakTheGlass,
}

/// Why access was denied (for the OperationOutcome and the audit trail; never PHI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// The caller's facility is suspended.
    Suspended,
    /// The caller has no facility and no patient context.
    NoFacility,
    /// A Consent (its id) denies the facility.
    ConsentDenied(String),
    /// Nothing permits the facility.
    NoConsent,
    /// The caller asked for break-the-glass but a condition is missing.
    BreakTheGlass(&'static str),
}

impl DenyReason {
    /// Text for `OperationOutcome.issue.diagnostics` and `AuditEvent.outcomeDesc`.
    pub fn text(&self) -> String {
        match self {
            DenyReason::Suspended => "the caller's facility is suspended".into(),
            DenyReason::NoFacility => "the caller has no facility and no patient context".into(),
            DenyReason::ConsentDenied(id) => format!("Consent/{id} denies access for the caller's facility"),
            DenyReason::NoConsent => "no consent covers access by the caller's facility to this patient".into(),
            DenyReason::BreakTheGlass(why) => format!("break-the-glass refused: {why}"),
        }
    }
}

/// A decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Access permitted.
    Permit(Basis),
    /// Access denied.
    Deny(DenyReason),
}

impl Decision {
    /// `true` for [`Decision::Permit`].
    pub fn permitted(&self) -> bool {
        matches!(self, Decision::Permit(_))
    }
}

struct CacheState {
    /// The security generation the cached facts belong to (`None` = not yet read).
    generation: Option<i64>,
    facts: HashMap<String, Arc<PatientFacts>>,
    suspended: Option<Arc<HashSet<String>>>,
}

/// Cached facts beyond this many patients are dropped (memory bound: ~200 bytes per patient).
const MAX_CACHED_PATIENTS: usize = 200_000;

/// The policy decision point with its cache (one per process, shared by all requests).
pub struct Pdp {
    store: Arc<Store>,
    config: ConsentConfig,
    state: RwLock<CacheState>,
}

impl std::fmt::Debug for Pdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pdp").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Now as epoch ms.
fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Pdp {
    /// A PDP over `store`.
    pub fn new(store: Arc<Store>, config: ConsentConfig) -> Pdp {
        Pdp {
            store,
            config,
            state: RwLock::new(CacheState { generation: None, facts: HashMap::new(), suspended: None }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ConsentConfig {
        &self.config
    }

    /// Tells the PDP the database's current security generation (from an audit append): when it differs
    /// from the cache's, the cache is dropped.
    pub fn observe_generation(&self, db_generation: i64) {
        {
            let s = self.state.read().unwrap_or_else(|e| e.into_inner());
            if s.generation == Some(db_generation) {
                return;
            }
        }
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        if s.generation != Some(db_generation) {
            s.generation = Some(db_generation);
            s.facts.clear();
            s.suspended = None;
        }
    }

    async fn ensure_generation(&self) -> Result<i64, StoreError> {
        if let Some(g) = self.state.read().unwrap_or_else(|e| e.into_inner()).generation {
            return Ok(g);
        }
        let g = self.store.security_generation().await?;
        self.observe_generation(g);
        Ok(g)
    }

    /// The suspended facilities and the generation they were read under. Errors: `Database`.
    pub async fn suspended(&self) -> Result<(i64, Arc<HashSet<String>>), StoreError> {
        let g = self.ensure_generation().await?;
        if let Some(s) = &self.state.read().unwrap_or_else(|e| e.into_inner()).suspended {
            return Ok((g, s.clone()));
        }
        let list: HashSet<String> = self.store.suspended_facilities().await?.into_iter().collect();
        let list = Arc::new(list);
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        if s.generation == Some(g) {
            s.suspended = Some(list.clone());
        }
        Ok((g, list))
    }

    /// Whether `principal`'s facility is suspended, with the generation of the answer. `None` principal
    /// (authentication disabled) or no facility → not suspended. Errors: `Database`.
    pub async fn facility_suspended(&self, principal: Option<&Principal>) -> Result<(i64, bool), StoreError> {
        let (g, set) = self.suspended().await?;
        Ok((g, principal.and_then(|p| p.facility.as_deref()).is_some_and(|f| set.contains(f))))
    }

    /// Facts of `patients` (loaded in one batch for the ones not cached) and the generation they belong
    /// to. Errors: `Database`.
    pub async fn facts(&self, patients: &[String]) -> Result<(i64, HashMap<String, Arc<PatientFacts>>), StoreError> {
        let g = self.ensure_generation().await?;
        let mut out = HashMap::with_capacity(patients.len());
        let mut missing: Vec<String> = Vec::new();
        {
            let s = self.state.read().unwrap_or_else(|e| e.into_inner());
            for p in patients {
                match s.facts.get(p) {
                    Some(f) => {
                        out.insert(p.clone(), f.clone());
                    }
                    None if !missing.contains(p) => missing.push(p.clone()),
                    None => {}
                }
            }
        }
        if !missing.is_empty() {
            let rows = self.store.consent_facts(&missing).await?;
            let built = model::build_facts(&missing, &rows);
            let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
            let same = s.generation == Some(g);
            if s.facts.len() + built.len() > MAX_CACHED_PATIENTS {
                s.facts.clear();
            }
            for (p, f) in built {
                let f = Arc::new(f);
                if same {
                    s.facts.insert(p.clone(), f.clone());
                }
                out.insert(p, f);
            }
        }
        Ok((g, out))
    }

    /// The decision for `principal` about one patient with known `facts` (rules 2–6 of the module docs;
    /// suspension is checked separately by [`Pdp::facility_suspended`]). `None` principal → permit.
    pub fn decide(&self, principal: Option<&Principal>, patient: &str, facts: &PatientFacts) -> Decision {
        let Some(pr) = principal else { return Decision::Permit(Basis::AuthDisabled) };
        let Some(facility) = pr.facility.as_deref() else {
            return if pr.patient.as_deref() == Some(patient) {
                Decision::Permit(Basis::OwnRecord)
            } else if Pdp::sees_everything(Some(pr)) {
                Decision::Permit(Basis::NetworkService)
            } else {
                Decision::Deny(DenyReason::NoFacility)
            };
        };
        let purpose = pr.purpose_of_use.as_deref().unwrap_or("TREAT");
        let now = now_ms();
        let national = facility == self.config.national_service;
        let mut permit: Option<&str> = None;
        for c in &facts.consents {
            // Blanket consents cover the regional network's facilities, not the national service; a
            // national-sharing consent covers only the national service.
            let relevant = if national { c.national || c.names(facility) } else { !c.national };
            if !relevant {
                continue;
            }
            match c.verdict(facility, purpose, now) {
                Some(false) => return Decision::Deny(DenyReason::ConsentDenied(c.id.clone())),
                Some(true) if permit.is_none() => permit = Some(&c.id),
                _ => {}
            }
        }
        if facts.attending.contains(facility) {
            return Decision::Permit(Basis::Attending);
        }
        if facts.emergency_hospital.as_deref() == Some(facility) {
            return Decision::Permit(Basis::EmergencyReferralHospital);
        }
        match permit {
            Some(id) => Decision::Permit(Basis::Consent(id.to_string())),
            None => Decision::Deny(DenyReason::NoConsent),
        }
    }

    /// `true` when no decision can deny `principal` anything but a suspension: authentication disabled
    /// (`None`), or a network-level backend service (`system/` scopes, no facility, no patient context).
    pub fn sees_everything(principal: Option<&Principal>) -> bool {
        match principal {
            None => true,
            Some(p) => {
                p.facility.is_none() && p.patient.is_none() && p.scopes.iter().any(|s| s.context == ScopeContext::System)
            }
        }
    }

    /// Whether `principal` may break the glass (federation-security.md §3.2 (c)): purpose of use `ETREAT`
    /// or `BTG`, a non-blank reason, the emergency role, and a facility. Errors: the missing condition.
    pub fn break_the_glass(principal: Option<&Principal>) -> Result<(), DenyReason> {
        let Some(p) = principal else { return Err(DenyReason::BreakTheGlass("no authenticated caller")) };
        if p.purpose_of_use.as_deref().is_none_or(|u| !EMERGENCY_PURPOSES.contains(&u)) {
            return Err(DenyReason::BreakTheGlass("purpose of use must be ETREAT or BTG"));
        }
        if p.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(DenyReason::BreakTheGlass("a reason must be stated"));
        }
        if !p.roles.contains(&Role::Emergency) {
            return Err(DenyReason::BreakTheGlass("the caller lacks the emergency role"));
        }
        if p.facility.is_none() {
            return Err(DenyReason::BreakTheGlass("the caller has no facility"));
        }
        Ok(())
    }
}
