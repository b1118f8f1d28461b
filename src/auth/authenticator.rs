//! Verification of Bearer access tokens (RFC 6750) into a [`Principal`]: JWTs (RFC 7519) signed RS256,
//! ES256 or ES384 by a configured issuer, checked for `iss`, `aud`, `exp` and `nbf` (with a small leeway),
//! or opaque tokens introspected at the issuer (RFC 7662, [`super::introspect`]), then mapped from SMART on
//! FHIR / IHE IUA claims. Verified tokens are cached by their SHA-256 for
//! their remaining lifetime (bounded cache), so the signature is verified once per token, not per request.
//!
//! Claim mapping ([`Principal`]):
//!
//! | Principal | claim (fallback) |
//! |---|---|
//! | `issuer` / `subject` | `iss` / `sub` (else `client_id`) |
//! | `client_id` | `client_id` (else `azp`) |
//! | `token_id` | `jti` |
//! | `scopes` | `scope` (space-separated string or array; else `scp`) — see [`super::scopes`] |
//! | `patient` | `patient` |
//! | `facility` | `facility` (else `extensions.ihe_iua.subject_organization_id`); `Organization/<id>` → `<id>` |
//! | `roles` | `tobiume_roles` (else `extensions.ihe_iua.subject_role` codes): `emergency`, `secretariat` |
//! | `purpose_of_use` | `purpose_of_use` (else `extensions.ihe_iua.purpose_of_use`): a code, a Coding, or an array of them (first) |
//! | `reason` | `reason` |

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use sha2::Digest;

use super::dev::{DevKey, DEV_AUDIENCE, DEV_ISSUER};
use super::introspect::Introspector;
use super::jwks::{self, KeySource, RemoteJwks, ACCEPTED_ALGORITHMS};
use super::{scopes, Principal, Role};

/// How requests are authenticated (`TOBIUME_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// JWT access tokens from the configured issuers (default). `serve` refuses to start without issuers.
    #[default]
    Jwt,
    /// Tokens signed by the local dev key (`TOBIUME_DEV_KEY`), issuer `tobiume-dev`; configured issuers
    /// are trusted as well.
    Dev,
    /// No authentication (only on a loopback listen address).
    None,
}

impl AuthMode {
    /// Parse `jwt` / `dev` / `none` (case-insensitive).
    pub fn parse(s: &str) -> Option<AuthMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "jwt" => Some(AuthMode::Jwt),
            "dev" => Some(AuthMode::Dev),
            "none" => Some(AuthMode::None),
            _ => None,
        }
    }
}

/// The `[auth]` table of the configuration file (see README "Configuration").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// `jwt` | `dev` | `none` (`TOBIUME_AUTH`). Default `jwt`.
    pub mode: AuthMode,
    /// Dev signing key (PKCS#8 PEM, generated if absent) for `dev` mode (`TOBIUME_DEV_KEY`).
    /// Default `tobiume-dev-key.pem` in the working directory.
    pub dev_key: PathBuf,
    /// Trusted token issuers (`[[auth.issuers]]`, or JSON in `TOBIUME_AUTH_ISSUERS`).
    pub issuers: Vec<IssuerSettings>,
    /// Clock-skew leeway for `exp`/`nbf`, seconds. Default 30.
    pub leeway_seconds: u64,
    /// Capacity of the verified-token cache (entries). Default 10000.
    pub token_cache_entries: usize,
    /// Minimum seconds between two fetches of a JWK Set (unknown `kid` refetches). Default 30.
    pub jwks_min_refresh_seconds: u64,
    /// Seconds after which a fetched JWK Set is fetched again on the next token. Default 3600.
    pub jwks_max_age_seconds: u64,
    /// Longest time an introspection answer (opaque tokens) is reused, seconds. Default 60.
    pub introspection_cache_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            mode: AuthMode::Jwt,
            dev_key: PathBuf::from(super::dev::DEFAULT_DEV_KEY),
            issuers: vec![],
            leeway_seconds: 30,
            token_cache_entries: 10_000,
            jwks_min_refresh_seconds: 30,
            jwks_max_age_seconds: 3600,
            introspection_cache_seconds: 60,
        }
    }
}

/// One trusted issuer (an OAuth 2.0 authorization server / OpenID provider).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSettings {
    /// Exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values (a string or a list). Default: the FHIR base URL (SMART: `aud` = the FHIR
    /// server's base URL).
    #[serde(default, deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// JWK Set URL (`jwks_uri`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Static key files (PEM public keys, JWK or JWK Set JSON), instead of / in addition to `jwks_url`.
    #[serde(default)]
    pub keys: Vec<PathBuf>,
    /// Authorization endpoint, advertised in `/.well-known/smart-configuration` and the
    /// CapabilityStatement.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Token endpoint, advertised likewise.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// RFC 7662 introspection endpoint for opaque (non-JWT) tokens.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// Client id of the gateway at the introspection endpoint (HTTP Basic).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Client secret of the gateway at the introspection endpoint.
    #[serde(default)]
    pub client_secret: Option<String>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Errors building the [`Authenticator`] (start-up).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// `jwt` mode without any issuer.
    #[error(
        "no token issuer configured: add [[auth.issuers]] to the config file (or TOBIUME_AUTH_ISSUERS), \
         or start with TOBIUME_AUTH=dev for a local development key"
    )]
    NoIssuers,
    /// An issuer has neither `jwks_url`, `keys` nor `introspection_endpoint`.
    #[error("issuer {0}: give jwks_url or keys (or introspection_endpoint with client_id)")]
    NoKeys(String),
    /// A key file could not be used.
    #[error("{0}")]
    Key(String),
    /// The dev key could not be loaded or generated.
    #[error("dev key: {0}")]
    DevKey(String),
    /// `none` mode on a non-loopback address.
    #[error("TOBIUME_AUTH=none is only allowed on a loopback listen address (127.0.0.1, ::1, localhost), not {0}")]
    NoneNotLoopback(String),
}

/// Why a token was refused (the `error_description` of the 401; no token content, no PHI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Not a JWT / undecodable header or claims.
    #[error("malformed token")]
    Malformed,
    /// `alg` not RS256/ES256/ES384.
    #[error("unsupported token algorithm")]
    Algorithm,
    /// `iss` not configured.
    #[error("unknown token issuer")]
    Issuer,
    /// No key for the token's `kid`/`alg`.
    #[error("unknown signing key (kid)")]
    UnknownKey,
    /// Bad signature.
    #[error("invalid token signature")]
    Signature,
    /// `exp` passed.
    #[error("token expired")]
    Expired,
    /// `nbf` in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` not accepted.
    #[error("token audience not accepted")]
    Audience,
    /// A required claim (`exp`, `iss`, `aud`) is missing or malformed.
    #[error("token claims missing or malformed")]
    Claims,
    /// Introspection says the (opaque) token is not active (revoked, expired, unknown).
    #[error("token not active")]
    Inactive,
    /// The introspection endpoint could not be asked.
    #[error("token introspection unavailable")]
    Introspection,
}

struct Issuer {
    iss: String,
    audience: Vec<String>,
    keys: Vec<KeySource>,
    introspector: Option<Introspector>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    jwks_url: Option<String>,
}

#[derive(Clone)]
struct Cached {
    principal: Arc<Principal>,
    /// Reusable until (Unix seconds): `exp` + leeway for JWTs; for introspected tokens at most
    /// `introspection_cache_seconds` from the answer.
    until: u64,
}

/// The token verifier of one gateway (shared by all requests; cheap to call concurrently).
pub struct Authenticator {
    mode: AuthMode,
    issuers: Vec<Issuer>,
    leeway: u64,
    introspection_ttl: u64,
    cache: quick_cache::sync::Cache<[u8; 32], Cached>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .field("issuers", &self.issuers.iter().map(|i| i.iss.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

/// Endpoints advertised for SMART discovery.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryInfo {
    /// The first issuer.
    pub issuer: Option<String>,
    /// Its JWK Set URL.
    pub jwks_uri: Option<String>,
    /// Its authorization endpoint.
    pub authorization_endpoint: Option<String>,
    /// Its token endpoint.
    pub token_endpoint: Option<String>,
}

impl Authenticator {
    /// Authentication disabled (`TOBIUME_AUTH=none`): every request passes without a principal.
    pub fn disabled() -> Authenticator {
        Authenticator { mode: AuthMode::None, issuers: vec![], leeway: 0, introspection_ttl: 0, cache: quick_cache::sync::Cache::new(1) }
    }

    /// `jwt` mode with no issuer: every protected request is refused (the library default, fail closed).
    pub fn deny_all() -> Authenticator {
        Authenticator { mode: AuthMode::Jwt, issuers: vec![], leeway: 0, introspection_ttl: 0, cache: quick_cache::sync::Cache::new(1) }
    }

    /// Build from settings. `base_url` is the default audience of issuers without `audience`. In `dev`
    /// mode `dev_key` must be given (see [`Authenticator::from_settings_with_dev_key`]).
    ///
    /// Errors: [`AuthError::NoIssuers`] in `jwt` mode without issuers, unusable key files.
    pub fn from_settings(settings: &AuthSettings, base_url: &str) -> Result<Authenticator, AuthError> {
        Self::from_settings_with_dev_key(settings, base_url, None)
    }

    /// As [`Authenticator::from_settings`], trusting `dev_key` (issuer `tobiume-dev`) as well.
    pub fn from_settings_with_dev_key(
        settings: &AuthSettings,
        base_url: &str,
        dev_key: Option<&DevKey>,
    ) -> Result<Authenticator, AuthError> {
        if settings.mode == AuthMode::None {
            return Ok(Authenticator::disabled());
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AuthError::Key(format!("HTTP client: {e}")))?;
        let mut issuers = Vec::new();
        if settings.mode == AuthMode::Dev {
            let key = dev_key.ok_or_else(|| AuthError::DevKey("dev mode needs the dev key".into()))?;
            let vk = key.verify_key().map_err(AuthError::DevKey)?;
            issuers.push(Issuer {
                iss: DEV_ISSUER.into(),
                audience: vec![DEV_AUDIENCE.into()],
                keys: vec![KeySource::Static(vec![Arc::new(vk)])],
                introspector: None,
                authorization_endpoint: None,
                token_endpoint: None,
                jwks_url: None,
            });
        }
        for s in &settings.issuers {
            let mut keys = Vec::new();
            if let Some(url) = &s.jwks_url {
                keys.push(KeySource::Remote(RemoteJwks::new(
                    url.clone(),
                    client.clone(),
                    Duration::from_secs(settings.jwks_min_refresh_seconds),
                    Duration::from_secs(settings.jwks_max_age_seconds.max(1)),
                )));
            }
            if !s.keys.is_empty() {
                let mut loaded = Vec::new();
                for p in &s.keys {
                    loaded.extend(jwks::load_key_file(p).map_err(AuthError::Key)?.into_iter().map(Arc::new));
                }
                keys.push(KeySource::Static(loaded));
            }
            let introspector = match (&s.introspection_endpoint, &s.client_id) {
                (Some(url), Some(id)) => {
                    Some(Introspector::new(url, id, s.client_secret.as_deref(), client.clone()).map_err(AuthError::Key)?)
                }
                (Some(_), None) => return Err(AuthError::Key(format!("issuer {}: introspection_endpoint needs client_id", s.issuer))),
                _ => None,
            };
            if keys.is_empty() && introspector.is_none() {
                return Err(AuthError::NoKeys(s.issuer.clone()));
            }
            let audience = if s.audience.is_empty() { vec![base_url.to_string()] } else { s.audience.clone() };
            issuers.push(Issuer {
                iss: s.issuer.clone(),
                audience,
                keys,
                introspector,
                authorization_endpoint: s.authorization_endpoint.clone(),
                token_endpoint: s.token_endpoint.clone(),
                jwks_url: s.jwks_url.clone(),
            });
        }
        if issuers.is_empty() {
            return Err(AuthError::NoIssuers);
        }
        Ok(Authenticator {
            mode: settings.mode,
            issuers,
            leeway: settings.leeway_seconds,
            introspection_ttl: settings.introspection_cache_seconds,
            cache: quick_cache::sync::Cache::new(settings.token_cache_entries.max(1)),
        })
    }

    /// The mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Issuers (`iss`) trusted.
    pub fn issuers(&self) -> Vec<&str> {
        self.issuers.iter().map(|i| i.iss.as_str()).collect()
    }

    /// What `/.well-known/smart-configuration` and the CapabilityStatement advertise: the first
    /// configured issuer with endpoints (else the first issuer).
    pub fn discovery(&self) -> DiscoveryInfo {
        let pick = self.issuers.iter().find(|i| i.token_endpoint.is_some()).or_else(|| self.issuers.first());
        match pick {
            Some(i) => DiscoveryInfo {
                issuer: Some(i.iss.clone()),
                jwks_uri: i.jwks_url.clone(),
                authorization_endpoint: i.authorization_endpoint.clone(),
                token_endpoint: i.token_endpoint.clone(),
            },
            None => DiscoveryInfo::default(),
        }
    }

    /// Fetch every remote JWK Set once (start-up warm-up; failures are logged, not fatal).
    pub async fn warm_up(&self) {
        for i in &self.issuers {
            for k in &i.keys {
                if let KeySource::Remote(r) = k {
                    r.refresh().await;
                }
            }
        }
    }

    /// Verify a Bearer token and return its principal (cached per token until `exp`).
    ///
    /// Errors: [`TokenError`] naming why (for `WWW-Authenticate: error_description`).
    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, TokenError> {
        let hash: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(c) = self.cache.get(&hash) {
            if now <= c.until {
                return Ok(c.principal);
            }
            // Past its reuse time: verify again (an expired JWT then fails; an opaque token is re-asked).
            self.cache.remove(&hash);
        }
        let (principal, until) = self.verify_uncached(token).await?;
        let principal = Arc::new(principal);
        self.cache.insert(hash, Cached { principal: principal.clone(), until });
        Ok(principal)
    }

    /// Verify without the cache: the principal and until when it may be reused (Unix seconds).
    async fn verify_uncached(&self, token: &str) -> Result<(Principal, u64), TokenError> {
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            // Not a JWT: an opaque token for introspection, if any issuer introspects.
            Err(_) if self.issuers.iter().any(|i| i.introspector.is_some()) => return self.introspect(token).await,
            Err(_) => return Err(TokenError::Malformed),
        };
        if !ACCEPTED_ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        #[derive(Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        let unverified: Iss = jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| TokenError::Malformed)?;
        let iss = unverified.iss.ok_or(TokenError::Claims)?;
        let issuer = self.issuers.iter().find(|i| i.iss == iss).ok_or(TokenError::Issuer)?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&issuer.iss]);
        validation.set_audience(&issuer.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        let mut last = TokenError::UnknownKey;
        for source in &issuer.keys {
            for key in source.candidates(header.kid.as_deref(), header.alg).await {
                match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                    Ok(data) => {
                        let until = data.claims.exp_secs().saturating_add(self.leeway);
                        return Ok((data.claims.into_principal(&issuer.iss), until));
                    }
                    Err(e) => {
                        last = match e.kind() {
                            ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => {
                                TokenError::Signature
                            }
                            ErrorKind::ExpiredSignature => return Err(TokenError::Expired),
                            ErrorKind::ImmatureSignature => return Err(TokenError::NotYetValid),
                            ErrorKind::InvalidAudience => return Err(TokenError::Audience),
                            ErrorKind::InvalidIssuer => return Err(TokenError::Issuer),
                            ErrorKind::InvalidAlgorithm => TokenError::Algorithm,
                            ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => {
                                return Err(TokenError::Claims)
                            }
                            _ => TokenError::Malformed,
                        }
                    }
                }
            }
        }
        Err(last)
    }

    /// RFC 7662: ask each introspecting issuer; the first `active` answer that passes the `iss`, `aud`,
    /// `exp`, `nbf` checks wins.
    async fn introspect(&self, token: &str) -> Result<(Principal, u64), TokenError> {
        let now = jsonwebtoken::get_current_timestamp();
        let mut last = TokenError::Inactive;
        for issuer in self.issuers.iter() {
            let Some(intro) = &issuer.introspector else { continue };
            let v = match intro.introspect(token).await {
                Ok(v) => v,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            if v.get("iss").and_then(Value::as_str).is_some_and(|i| i != issuer.iss) {
                last = TokenError::Issuer;
                continue;
            }
            let aud_ok = match v.get("aud") {
                None | Some(Value::Null) => true,
                Some(Value::String(a)) => issuer.audience.contains(a),
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(|x| issuer.audience.iter().any(|y| y == x)),
                Some(_) => false,
            };
            if !aud_ok {
                return Err(TokenError::Audience);
            }
            let secs = |k: &str| v.get(k).and_then(Value::as_f64).map(|x| x.max(0.0) as u64);
            if secs("exp").is_some_and(|e| now > e.saturating_add(self.leeway)) {
                return Err(TokenError::Expired);
            }
            if secs("nbf").is_some_and(|n| n > now.saturating_add(self.leeway)) {
                return Err(TokenError::NotYetValid);
            }
            let claims: Claims = serde_json::from_value(v.clone()).map_err(|_| TokenError::Claims)?;
            let until = now.saturating_add(self.introspection_ttl).min(secs("exp").unwrap_or(u64::MAX));
            return Ok((claims.into_principal(&issuer.iss), until));
        }
        Err(last)
    }

    /// Number of verified tokens currently cached.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }
}

/// A string or an array of strings (`scope`, `scp`, `tobiume_roles`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrOrList {
    One(String),
    Many(Vec<String>),
}

impl StrOrList {
    fn items(&self) -> Vec<&str> {
        match self {
            StrOrList::One(s) => s.split_ascii_whitespace().collect(),
            StrOrList::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<f64>,
    scope: Option<StrOrList>,
    scp: Option<StrOrList>,
    patient: Option<String>,
    facility: Option<String>,
    tobiume_roles: Option<StrOrList>,
    purpose_of_use: Option<Value>,
    reason: Option<String>,
    jti: Option<String>,
    client_id: Option<String>,
    azp: Option<String>,
    extensions: Option<Value>,
}

/// The first code of a purpose-of-use / role claim: `"TREAT"`, `{"code": "TREAT"}`, a CodeableConcept
/// (`coding[0].code`) or an array of those.
fn codes(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(codes).collect(),
        Value::Object(o) => match (o.get("code"), o.get("coding")) {
            (Some(Value::String(c)), _) => vec![c.clone()],
            (_, Some(coding)) => codes(coding),
            _ => vec![],
        },
        _ => vec![],
    }
}

/// `Organization/<id>` (relative or absolute) → `<id>`; other values unchanged.
fn organization_id(v: &str) -> String {
    match v.rsplit_once("Organization/") {
        Some((_, id)) if !id.is_empty() && !id.contains('/') => id.to_string(),
        _ => v.to_string(),
    }
}

impl Claims {
    fn into_principal(self, iss: &str) -> Principal {
        let iua = self.extensions.as_ref().and_then(|e| e.get("ihe_iua"));
        let scope_items = self.scope.as_ref().or(self.scp.as_ref()).map(|s| s.items().join(" ")).unwrap_or_default();
        let mut roles = BTreeSet::new();
        let role_codes: Vec<String> = match &self.tobiume_roles {
            Some(r) => r.items().into_iter().map(str::to_string).collect(),
            None => iua.and_then(|i| i.get("subject_role")).map(codes).unwrap_or_default(),
        };
        for c in role_codes {
            match c.to_ascii_lowercase().as_str() {
                "emergency" => {
                    roles.insert(Role::Emergency);
                }
                "secretariat" => {
                    roles.insert(Role::Secretariat);
                }
                _ => {}
            }
        }
        let purpose = self
            .purpose_of_use
            .as_ref()
            .or_else(|| iua.and_then(|i| i.get("purpose_of_use")))
            .and_then(|v| codes(v).into_iter().next());
        let facility = self
            .facility
            .clone()
            .or_else(|| iua.and_then(|i| i.get("subject_organization_id")).and_then(Value::as_str).map(str::to_string))
            .map(|f| organization_id(&f));
        let client_id = self.client_id.or(self.azp);
        Principal {
            issuer: iss.to_string(),
            subject: self.sub.or_else(|| client_id.clone()).unwrap_or_default(),
            client_id,
            token_id: self.jti,
            facility,
            scopes: scopes::parse_scopes(&scope_items),
            patient: self.patient,
            roles,
            purpose_of_use: purpose,
            reason: self.reason,
        }
    }
}

impl Claims {
    /// `exp` as whole seconds.
    fn exp_secs(&self) -> u64 {
        self.exp.unwrap_or(0.0).max(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iua_fallbacks_and_codes() {
        let c: Claims = serde_json::from_value(serde_json::json!({
            "exp": 1, "azp": "app", "scope": ["user/Patient.rs", "openid"],
            "extensions": {"ihe_iua": {
                "subject_organization_id": "https://gw.example/fhir/Organization/org-1",
                "subject_role": [{"system": "x", "code": "emergency"}],
                "purpose_of_use": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT"}]
            }}
        }))
        .unwrap();
        let p = c.into_principal("iss");
        assert_eq!(p.facility.as_deref(), Some("org-1"));
        assert_eq!(p.client_id.as_deref(), Some("app"));
        assert_eq!(p.subject, "app");
        assert!(p.roles.contains(&Role::Emergency));
        assert_eq!(p.purpose_of_use.as_deref(), Some("ETREAT"));
        assert_eq!(p.scopes.len(), 1);
    }
}
