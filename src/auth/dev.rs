//! Development mode (`TOBIUME_AUTH=dev`): a local ES256 signing key (PKCS#8 PEM file, generated when
//! absent) whose tokens the server trusts with issuer [`DEV_ISSUER`] and audience [`DEV_AUDIENCE`], and
//! the minting of such tokens (`tobiume-gateway dev-token`, tests, the demo token printed at start).
//!
//! Never use dev mode for real patient data: anyone who can read the key file can mint any token.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{json, Value};

use super::jwks::{KeyKind, VerifyKey};

/// `iss` of dev tokens.
pub const DEV_ISSUER: &str = "tobiume-dev";
/// `aud` of dev tokens.
pub const DEV_AUDIENCE: &str = "tobiume-dev";
/// Default dev key file (in the working directory).
pub const DEFAULT_DEV_KEY: &str = "tobiume-dev-key.pem";
/// The Organization the demo data's patients attend (`Organization/tobiume-demo-hospital`, created with
/// the demo data at start); the demo token printed by `serve` in dev mode carries it as `facility`.
pub const DEMO_FACILITY_ID: &str = "tobiume-demo-hospital";

/// The dev signing key.
pub struct DevKey {
    encoding: EncodingKey,
    /// `kid`: RFC 7638 JWK thumbprint of the public key.
    kid: String,
    x: String,
    y: String,
}

impl std::fmt::Debug for DevKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevKey").field("kid", &self.kid).finish()
    }
}

const PEM_TAG: &str = "PRIVATE KEY";

impl DevKey {
    /// Load the PKCS#8 PEM at `path`, or generate a new P-256 key and write it there (mode 0600 on
    /// Unix). Returns the key and whether it was generated. Errors: unreadable/invalid file, cannot write.
    pub fn load_or_generate(path: &Path) -> Result<(DevKey, bool), String> {
        if path.exists() {
            return Ok((DevKey::load(path)?, false));
        }
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| "cannot generate a P-256 key".to_string())?;
        let der = pair.to_pkcs8v1().map_err(|_| "cannot encode the P-256 key".to_string())?;
        let text = pem::encode(&pem::Pem::new(PEM_TAG, der.as_ref().to_vec()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(path) {
            Ok(mut f) => f.write_all(text.as_bytes()).map_err(|e| format!("cannot write dev key {}: {e}", path.display()))?,
            // Another process created it meanwhile: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok((DevKey::load(path)?, false)),
            Err(e) => return Err(format!("cannot create dev key {}: {e}", path.display())),
        }
        Ok((DevKey::from_pkcs8(der.as_ref())?, true))
    }

    /// A new random P-256 key held only in memory (tests, benchmarks). Errors: key generation failure.
    pub fn generate() -> Result<DevKey, String> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| "cannot generate a P-256 key".to_string())?;
        let der = pair.to_pkcs8v1().map_err(|_| "cannot encode the P-256 key".to_string())?;
        DevKey::from_pkcs8(der.as_ref())
    }

    /// Load a PKCS#8 PEM P-256 private key. Errors: unreadable file, not a P-256 PKCS#8 key.
    pub fn load(path: &Path) -> Result<DevKey, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read dev key {}: {e}", path.display()))?;
        let p = pem::parse(&bytes).map_err(|_| format!("dev key {} is not PEM", path.display()))?;
        if p.tag() != PEM_TAG {
            return Err(format!("dev key {} is not a PKCS#8 PRIVATE KEY", path.display()));
        }
        DevKey::from_pkcs8(p.contents()).map_err(|e| format!("dev key {}: {e}", path.display()))
    }

    fn from_pkcs8(der: &[u8]) -> Result<DevKey, String> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|_| "not a P-256 PKCS#8 key".to_string())?;
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err("unexpected public key encoding".into());
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let x = b64.encode(&point[1..33]);
        let y = b64.encode(&point[33..65]);
        // RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
        use sha2::Digest;
        let thumb = sha2::Sha256::digest(format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes());
        let kid = b64.encode(thumb);
        let pem_text = pem::encode(&pem::Pem::new(PEM_TAG, der.to_vec()));
        let encoding = EncodingKey::from_ec_pem(pem_text.as_bytes()).map_err(|e| e.to_string())?;
        Ok(DevKey { encoding, kid, x, y })
    }

    /// The public key as a JWK (`kty` EC, `crv` P-256, `alg` ES256, `use` sig, `kid`).
    pub fn public_jwk(&self) -> Value {
        json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid, "x": self.x, "y": self.y})
    }

    /// The verification key.
    pub fn verify_key(&self) -> Result<VerifyKey, String> {
        let key = DecodingKey::from_ec_components(&self.x, &self.y).map_err(|e| e.to_string())?;
        Ok(VerifyKey { kid: Some(self.kid.clone()), kind: KeyKind::EcP256, key })
    }

    /// Sign a token for `req` (issuer [`DEV_ISSUER`], audience [`DEV_AUDIENCE`], `iat`/`nbf` now, `exp`
    /// now + `expires_in`, fresh `jti`). Errors: signing failure (not expected).
    pub fn mint(&self, req: &DevTokenRequest) -> Result<String, String> {
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = json!({
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "sub": req.subject,
            "client_id": req.client_id,
            "iat": now,
            "nbf": now,
            "exp": now + req.expires_in,
            "jti": uuid::Uuid::new_v4().to_string(),
            "scope": req.scope,
        });
        let put = |c: &mut Value, k: &str, v: &Option<String>| {
            if let Some(v) = v {
                c[k] = json!(v);
            }
        };
        put(&mut claims, "facility", &req.facility);
        put(&mut claims, "patient", &req.patient);
        put(&mut claims, "purpose_of_use", &req.purpose_of_use);
        put(&mut claims, "reason", &req.reason);
        if !req.roles.is_empty() {
            claims["tobiume_roles"] = json!(req.roles);
        }
        self.sign(&claims)
    }

    /// Sign arbitrary `claims` (ES256, header `kid` = this key's) — for tests of issuer/audience/time
    /// checks. Errors: signing failure.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// The `kid` (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// What a dev token says (see `tobiume-gateway dev-token --help`).
#[derive(Debug, Clone)]
pub struct DevTokenRequest {
    /// `sub`. Default `dev-user`.
    pub subject: String,
    /// `client_id`. Default `tobiume-dev-client`.
    pub client_id: String,
    /// `scope` (space-separated SMART scopes).
    pub scope: String,
    /// `facility`: an Organization logical id.
    pub facility: Option<String>,
    /// `patient` context.
    pub patient: Option<String>,
    /// `purpose_of_use` (e.g. `TREAT`, `ETREAT`, `BTG`).
    pub purpose_of_use: Option<String>,
    /// `reason` for an emergency override.
    pub reason: Option<String>,
    /// `tobiume_roles` (`emergency`, `secretariat`).
    pub roles: Vec<String>,
    /// Lifetime in seconds. Default 3600.
    pub expires_in: u64,
}

impl Default for DevTokenRequest {
    fn default() -> Self {
        DevTokenRequest {
            subject: "dev-user".into(),
            client_id: "tobiume-dev-client".into(),
            scope: String::new(),
            facility: None,
            patient: None,
            purpose_of_use: None,
            reason: None,
            roles: vec![],
            expires_in: 3600,
        }
    }
}
