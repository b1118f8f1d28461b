//! Demo consents for `serve` with synthetic demo patients (README "The two commands"): one Consent per
//! demo patient, a mix that shows the rules to the demo token (facility [`DEMO_FACILITY`]):
//!
//! * all but the last two patients: **blanket** consent (permit for every participating facility,
//!   purpose TREAT) — the demo token sees them;
//! * the second-to-last: **per-facility** consent for [`DEMO_FACILITY`] only;
//! * the last: a blanket consent **withdrawn** (status `inactive`, 同意撤回) — the demo token gets 403.

use serde_json::{json, Value};

use crate::search::query;
use crate::store::{ResourceStore, Store, StoreError, TxEntry};

/// Organization id of the demo facility: the facility of the demo token (`auth::dev::DEMO_FACILITY_ID`;
/// its Organization is written by `serve`'s demo data).
pub const DEMO_FACILITY: &str = crate::auth::dev::DEMO_FACILITY_ID;

/// What [`seed`] wrote: `(blanket, per-facility, withdrawn patient id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConsents {
    /// Patients with a blanket consent.
    pub blanket: usize,
    /// The patient with a per-facility consent for [`DEMO_FACILITY`].
    pub per_facility: Option<String>,
    /// The patient whose consent is withdrawn.
    pub withdrawn: Option<String>,
}

fn consent(patient: &str, provision: Value, status: &str) -> Value {
    json!({
        "resourceType": "Consent",
        "id": format!("demo-consent-{patient}").chars().take(64).collect::<String>(),
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "performer": [{"reference": format!("Patient/{patient}")}],
        "organization": [{"reference": format!("Organization/{DEMO_FACILITY}")}],
        "policy": [{"uri": "http://tobiume-gateway.local/fhir/policy/blanket-consent/v1"}],
        "provision": provision
    })
}

/// Writes one Consent per Patient in the store (up to `max_patients`, in store order), in one
/// transaction whose AuditEvent is chained with it. Errors: `Invalid`, `Database`.
pub async fn seed(store: &Store, max_patients: usize) -> Result<DemoConsents, StoreError> {
    let reg = store.registry().clone();
    let q = query::parse(&reg, "Patient", &[("_count".into(), max_patients.min(crate::search::MAX_COUNT).to_string())])
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let ids = store.search_ids(&q, max_patients).await?;
    let purpose = json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]);
    let mut entries = Vec::with_capacity(ids.len());
    let mut out = DemoConsents { blanket: 0, per_facility: None, withdrawn: None };
    let n = ids.len();
    for (i, p) in ids.iter().enumerate() {
        let c = if n >= 3 && i == n - 1 {
            out.withdrawn = Some(p.clone());
            consent(p, json!({"type": "permit", "purpose": purpose}), "inactive")
        } else if n >= 3 && i == n - 2 {
            out.per_facility = Some(p.clone());
            consent(
                p,
                json!({"type": "permit", "purpose": purpose, "actor": [{
                    "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                    "reference": {"reference": format!("Organization/{DEMO_FACILITY}")}}]}),
                "active",
            )
        } else {
            out.blanket += 1;
            consent(p, json!({"type": "permit", "purpose": purpose}), "active")
        };
        let id = c["id"].as_str().unwrap_or_default().to_string();
        entries.push(TxEntry::Update { resource_type: "Consent".into(), id, body: c.into(), if_match: None });
    }
    let count = entries.len();
    store
        .transaction_audited(entries, None, |results| {
            let i = crate::audit::Interaction {
                code: "transaction".into(),
                action: "C",
                status: 200,
                outcome_desc: Some(format!("demo data: {count} Consents")),
                resources: results
                    .iter()
                    .filter_map(|r| match r {
                        crate::store::TxResult::Written { resource, .. } => Some(format!("{}/{}", resource.resource_type, resource.id)),
                        _ => None,
                    })
                    .take(crate::audit::MAX_RESOURCES)
                    .collect(),
                ..Default::default()
            };
            vec![crate::audit::event::record(None, &i, crate::audit::now_ms())]
        })
        .await
        .map_err(|e| match e {
            crate::store::audit::AuditedTxError::Tx(t) => t.error,
            crate::store::audit::AuditedTxError::Suspended => StoreError::Invalid("suspended".into()),
        })?;
    Ok(out)
}
