//! The authentication layer (axum middleware) and SMART discovery.
//!
//! * Public (no token): `/health`, `/fhir/metadata`, `/.well-known/smart-configuration` and
//!   `/fhir/.well-known/smart-configuration` (SMART App Launch 2.0 §"SMART configuration": at the FHIR
//!   base URL).
//! * Everything else needs `Authorization: Bearer <token>` verified by the [`Authenticator`]; otherwise
//!   401 OperationOutcome with `WWW-Authenticate: Bearer realm="tobiume-gateway"` (no token, RFC 6750
//!   §3.1: no error code) or `…, error="invalid_token", error_description="…"` (bad token).
//! * Operations need a scope besides what their reads/writes need (checked here by route template, 403):
//!   `$summary` and `/view/patient/{id}` → `Patient` `r`; `$match` → `Patient` `s`; `$register` →
//!   `Patient` `c` and `u`; `$validate` → any valid token.
//! * The verified [`Principal`] and a [`DenialSlot`] go into the request extensions (read by
//!   `api::access::RequestContext`), and the principal into the request's audit scope
//!   (`audit::RequestScope`); a 401/403 response carries a [`Denial`] in its extensions.
//! * `TOBIUME_AUTH=none`: the [`AuthenticationDisabled`] marker instead.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::authenticator::{AuthMode, Authenticator, TokenError};
use super::scopes::Grant;
use super::{AuthenticationDisabled, Denial, DenialSlot, Principal};
use crate::api::outcome::ApiError;

/// Paths served without a token.
pub const PUBLIC_PATHS: &[&str] =
    &["/health", "/fhir/metadata", "/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"];

const REALM: &str = "tobiume-gateway";

/// Scope requirements of operations, by route template: (route, resource type, permissions).
pub const OPERATION_SCOPES: &[(&str, &str, &str)] = &[
    ("/fhir/Patient/{id}/$summary", "Patient", "r"),
    ("/fhir/Patient/$summary", "Patient", "r"),
    ("/view/patient/{id}", "Patient", "r"),
    ("/fhir/Patient/$match", "Patient", "s"),
    ("/fhir/Patient/$register", "Patient", "cu"),
];

/// The middleware (`axum::middleware::from_fn_with_state(authenticator, authenticate)`).
pub async fn authenticate(State(auth): State<Arc<Authenticator>>, mut req: Request, next: Next) -> Response {
    if PUBLIC_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    if auth.mode() == AuthMode::None {
        req.extensions_mut().insert(AuthenticationDisabled);
        return next.run(req).await;
    }
    let token = match bearer(req.headers().get(header::AUTHORIZATION)) {
        Ok(t) => t,
        Err(e) => return unauthorized(e),
    };
    let principal = match auth.verify(token).await {
        Ok(p) => p,
        Err(e) => return unauthorized(e),
    };
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    if let Some(route) = route {
        if let Some((_, t, perms)) = OPERATION_SCOPES.iter().find(|(r, _, _)| *r == route) {
            if let Some(p) = perms.chars().find(|p| principal.grant(t, *p) == Grant::None) {
                return forbidden(principal, t, p);
            }
        }
    }
    let slot = Arc::new(DenialSlot::default());
    // the caller into the request's audit scope (set by the audit layer outside this one), so every
    // event names its caller — also for requests that never reach a data access
    if let Some(scope) = crate::audit::current() {
        scope.with(|c| c.principal = Some(principal.clone()));
    }
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(slot.clone());
    let mut resp = next.run(req).await;
    if matches!(resp.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        if let Some(d) = slot.take() {
            resp.extensions_mut().insert(d);
        }
    }
    resp
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 6750 §2.1).
fn bearer(h: Option<&HeaderValue>) -> Result<&str, TokenError> {
    let v = h.ok_or(TokenError::Missing)?.to_str().map_err(|_| TokenError::Malformed)?;
    let (scheme, token) = v.trim().split_once(' ').ok_or(TokenError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(token)
}

/// 401 OperationOutcome + `WWW-Authenticate` + [`Denial`].
pub fn unauthorized(e: TokenError) -> Response {
    let reason = e.to_string();
    let (code, challenge) = match e {
        TokenError::Missing => ("login", format!("Bearer realm=\"{REALM}\"")),
        TokenError::Expired => ("expired", format!("Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{reason}\"")),
        _ => ("unknown", format!("Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{reason}\"")),
    };
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, code, format!("authentication required: {reason}")).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp.extensions_mut().insert(Denial { status: StatusCode::UNAUTHORIZED, reason, principal: None });
    resp
}

fn forbidden(principal: Arc<Principal>, resource_type: &str, permission: char) -> Response {
    let reason = format!("insufficient scope: this operation needs a scope granting {resource_type}.{permission}");
    let mut resp = ApiError::new(StatusCode::FORBIDDEN, "forbidden", reason.clone()).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\"")) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp.extensions_mut().insert(Denial { status: StatusCode::FORBIDDEN, reason, principal: Some(principal) });
    resp
}

/// The SMART configuration document (SMART App Launch 2.0 §2.1 "Conformance: SMART configuration"),
/// or `None` when authentication is disabled.
pub fn smart_configuration(auth: &Authenticator) -> Option<Value> {
    if auth.mode() == AuthMode::None {
        return None;
    }
    let d = auth.discovery();
    let mut v = json!({
        "issuer": d.issuer,
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": [
            "openid", "fhirUser", "launch/patient", "offline_access",
            "patient/*.rs", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds"
        ],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": ["permission-patient", "permission-user", "permission-v1", "permission-v2"],
    });
    let put = |v: &mut Value, k: &str, x: Option<String>| {
        if let Some(x) = x {
            v[k] = json!(x);
        }
    };
    put(&mut v, "jwks_uri", d.jwks_uri);
    put(&mut v, "authorization_endpoint", d.authorization_endpoint);
    put(&mut v, "token_endpoint", d.token_endpoint);
    Some(v)
}

/// `GET /.well-known/smart-configuration` handler body: 200 `application/json`, or 404 when
/// authentication is disabled.
pub fn smart_configuration_response(auth: &Authenticator) -> Response {
    match smart_configuration(auth) {
        Some(v) => {
            let mut r = Response::new(Body::from(v.to_string()));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        None => ApiError::not_found("authentication is disabled on this server (TOBIUME_AUTH=none)").into_response(),
    }
}

/// `CapabilityStatement.rest.security` (SMART App Launch 2.0 §"Conformance": service coding
/// `SMART-on-FHIR` and the `oauth-uris` extension when the IdP's endpoints are configured), or `None`
/// when authentication is disabled.
pub fn capability_security(auth: &Authenticator) -> Option<Value> {
    if auth.mode() == AuthMode::None {
        return None;
    }
    let d = auth.discovery();
    let mut sec = json!({
        "cors": false,
        "service": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
            "display": "SMART-on-FHIR"
        }], "text": "OAuth2 Bearer access tokens (JWT RS256/ES256/ES384) with SMART on FHIR v2 scopes"}],
        "description": "Every request except GET /fhir/metadata and /.well-known/smart-configuration needs \
            Authorization: Bearer <access token>. See /.well-known/smart-configuration.",
    });
    let mut uris = Vec::new();
    if let Some(t) = d.token_endpoint {
        uris.push(json!({"url": "token", "valueUri": t}));
    }
    if let Some(a) = d.authorization_endpoint {
        uris.push(json!({"url": "authorize", "valueUri": a}));
    }
    if !uris.is_empty() {
        sec["extension"] = json!([{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": uris
        }]);
    }
    Some(sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_parsing() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(bearer(Some(&h("Bearer abc"))), Ok("abc"));
        assert_eq!(bearer(Some(&h("bearer  abc "))), Ok("abc"));
        assert_eq!(bearer(None), Err(TokenError::Missing));
        assert_eq!(bearer(Some(&h("Basic dXNlcg=="))), Err(TokenError::Missing));
        assert_eq!(bearer(Some(&h("Bearer"))), Err(TokenError::Malformed));
    }
}
