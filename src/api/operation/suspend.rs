//! `POST /fhir/Organization/{id}/$suspend` and `POST /fhir/Organization/{id}/$resume` — the network
//! secretariat suspends a participating facility's use of the network (domain.md §1.3: on a leak, the
//! facility's use is suspended) and lifts the suspension.
//!
//! * Caller: the secretariat role only (`crate::auth::Role::Secretariat`; anyone when authentication is
//!   disabled); others get **403**. The Organization read needs a scope granting `Organization` `r`.
//! * Body: empty, or a `Parameters` with `reason` (valueString) — kept with the suspension and in the
//!   AuditEvent (no PHI belongs there).
//! * Effect: immediate — the suspension row and the AuditEvent are written in one transaction that also
//!   bumps the security generation, so the next request of that facility, in any process sharing the
//!   database, gets **403** for everything (`crate::consent`).
//! * Answer: **200** OperationOutcome (`information`) saying whether the state changed; **404** for an
//!   unknown Organization or another resource type.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::api::access::{self, RequestContext};
use crate::api::outcome::{ApiError, ApiResult};
use crate::api::response::fhir_json;
use crate::api::AppState;
use crate::audit::Interaction;
use crate::auth::Role;

/// `$suspend`. Output/errors: see the module docs.
pub async fn suspend(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    ctx: RequestContext,
    body: Bytes,
) -> ApiResult<Response> {
    set(&state, &t, &id, &ctx, &body, true).await
}

/// `$resume`. Output/errors: see the module docs.
pub async fn resume(
    State(state): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    ctx: RequestContext,
    body: Bytes,
) -> ApiResult<Response> {
    set(&state, &t, &id, &ctx, &body, false).await
}

/// The `reason` of a `Parameters` body (empty body → none). Errors: 400 for a body that is not JSON.
fn reason_of(body: &[u8]) -> ApiResult<Option<String>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| ApiError::bad_request("body must be a Parameters resource"))?;
    Ok(v.get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(Value::as_str) == Some("reason"))
        .and_then(|p| p.get("valueString"))
        .and_then(Value::as_str)
        .map(str::to_string))
}

async fn set(state: &AppState, t: &str, id: &str, ctx: &RequestContext, body: &[u8], suspend: bool) -> ApiResult<Response> {
    let op = if suspend { "$suspend" } else { "$resume" };
    if t != "Organization" {
        return Err(ApiError::not_found(format!("{op} is defined on Organization only")));
    }
    let principal = ctx.principal.clone();
    let allowed = match &principal {
        Some(p) => p.roles.contains(&Role::Secretariat),
        None => ctx.unrestricted,
    };
    if !allowed {
        let why = format!("{op} needs the secretariat role");
        if let Some(s) = crate::audit::current() {
            s.with(|c| c.denied = Some(why.clone()));
        }
        ctx.record_denial(crate::auth::Denial { status: StatusCode::FORBIDDEN, reason: why.clone(), principal: principal.clone() });
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", why));
    }
    let reason = reason_of(body)?;
    // The Organization must exist (read through the decision point: not patient data).
    access::read(state, ctx, "Organization", id).await?;
    let interaction = Interaction {
        code: "operation".into(),
        action: "U",
        status: 200,
        outcome_desc: Some(format!("Organization/{id} {}{}", if suspend { "suspended" } else { "resumed" },
            reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())),
        resources: vec![format!("Organization/{id}")],
        request_id: ctx.request_id.clone(),
        operation: Some(op.into()),
        ..Default::default()
    };
    let record = crate::audit::event::record(principal.as_deref(), &interaction, crate::audit::now_ms());
    let changed = state.store.set_suspension(id, suspend, reason.as_deref(), record).await?;
    if let Some(s) = crate::audit::current() {
        s.with(|c| c.audited_in_tx = true);
    }
    let text = match (suspend, changed) {
        (true, true) => format!("Organization/{id} is suspended"),
        (true, false) => format!("Organization/{id} was already suspended"),
        (false, true) => format!("Organization/{id} is no longer suspended"),
        (false, false) => format!("Organization/{id} was not suspended"),
    };
    Ok(fhir_json(
        StatusCode::OK,
        &json!({"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational", "diagnostics": text}]}),
    ))
}
