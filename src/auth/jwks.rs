//! Verification keys of a token issuer: static keys (PEM public key / JWK / JWK Set files) or a remote
//! JWK Set (RFC 7517) fetched from the issuer's `jwks_uri`, cached, and fetched again when a token names
//! an unknown `kid` (at most once per `min_refresh`) or the cached set is older than `max_age`.
//!
//! Only keys usable with the accepted algorithms are kept: RSA (RS256), EC P-256 (ES256), EC P-384
//! (ES384). Keys of other types (`oct`, `OKP`, encryption keys with `use: enc`) are skipped, not errors.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// The algorithms the gateway accepts for access tokens (SMART: RS384/ES384 for backend-service
/// assertions are the client's side; IdPs commonly sign access tokens with RS256/ES256).
pub const ACCEPTED_ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::ES384];

/// The kind of a public key, which decides the one algorithm it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA → RS256.
    Rsa,
    /// EC P-256 → ES256.
    EcP256,
    /// EC P-384 → ES384.
    EcP384,
}

impl KeyKind {
    /// The algorithm this kind of key verifies.
    pub fn algorithm(self) -> Algorithm {
        match self {
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::EcP256 => Algorithm::ES256,
            KeyKind::EcP384 => Algorithm::ES384,
        }
    }
}

/// One verification key.
#[derive(Clone)]
pub struct VerifyKey {
    /// `kid`, when the key has one.
    pub kid: Option<String>,
    /// Key type and curve.
    pub kind: KeyKind,
    /// The key for `jsonwebtoken::decode`.
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("kind", &self.kind).finish()
    }
}

/// Keys from a JWK Set JSON (`{"keys": [...]}`) or one JWK; unusable keys are skipped.
pub fn keys_from_jwks_json(v: &Value) -> Vec<VerifyKey> {
    let list: Vec<&Value> = match v.get("keys").and_then(Value::as_array) {
        Some(keys) => keys.iter().collect(),
        None if v.get("kty").is_some() => vec![v],
        None => vec![],
    };
    list.into_iter().filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok()).filter_map(|j| key_from_jwk(&j)).collect()
}

fn key_from_jwk(j: &Jwk) -> Option<VerifyKey> {
    if matches!(j.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let kind = match &j.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyKind::EcP256,
            EllipticCurve::P384 => KeyKind::EcP384,
            _ => return None,
        },
        _ => return None,
    };
    // A declared `alg` must be the one this key kind verifies.
    let declared_ok = match j.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::RS256) => kind == KeyKind::Rsa,
        Some(KeyAlgorithm::ES256) => kind == KeyKind::EcP256,
        Some(KeyAlgorithm::ES384) => kind == KeyKind::EcP384,
        Some(_) => false,
    };
    if !declared_ok {
        return None;
    }
    let key = DecodingKey::from_jwk(j).ok()?;
    Some(VerifyKey { kid: j.common.key_id.clone(), kind, key })
}

/// Load static verification keys from a file: a PEM `PUBLIC KEY` (SPKI, RSA or EC P-256/P-384) or
/// `RSA PUBLIC KEY`, or JSON (one JWK or a JWK Set). `kid` of a PEM key: none (matches tokens without
/// `kid`, or any `kid` when it is the issuer's only key of that kind).
///
/// Errors: unreadable file, no usable key in it (message without key material).
pub fn load_key_file(path: &Path) -> Result<Vec<VerifyKey>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let keys = if text.trim_start().starts_with('{') {
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("key file {} is not JSON: {e}", path.display()))?;
        keys_from_jwks_json(&v)
    } else {
        let mut out = Vec::new();
        for p in pem::parse_many(&bytes).map_err(|e| format!("key file {} is not PEM: {e}", path.display()))? {
            if let Some(k) = key_from_pem(&p) {
                out.push(k);
            }
        }
        out
    };
    if keys.is_empty() {
        return Err(format!("no usable RS256/ES256/ES384 public key in {}", path.display()));
    }
    Ok(keys)
}

/// DER encodings of the OIDs that tell an SPKI's key type (rsaEncryption, prime256v1, secp384r1).
const OID_RSA: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn key_from_pem(p: &pem::Pem) -> Option<VerifyKey> {
    let encoded = pem::encode(p);
    match p.tag() {
        "RSA PUBLIC KEY" => DecodingKey::from_rsa_pem(encoded.as_bytes()).ok().map(|key| VerifyKey { kid: None, kind: KeyKind::Rsa, key }),
        "PUBLIC KEY" => {
            let der = p.contents();
            let kind = if contains(der, OID_RSA) {
                KeyKind::Rsa
            } else if contains(der, OID_P256) {
                KeyKind::EcP256
            } else if contains(der, OID_P384) {
                KeyKind::EcP384
            } else {
                return None;
            };
            let key = match kind {
                KeyKind::Rsa => DecodingKey::from_rsa_pem(encoded.as_bytes()),
                _ => DecodingKey::from_ec_pem(encoded.as_bytes()),
            }
            .ok()?;
            Some(VerifyKey { kid: None, kind, key })
        }
        _ => None,
    }
}

/// Pick the keys that may verify a token with header `kid` / `alg`: with a `kid`, the key with that
/// `kid` (or a key without `kid` when it is the only one of the right kind); without, every key of the
/// right kind.
pub fn select(keys: &[Arc<VerifyKey>], kid: Option<&str>, alg: Algorithm) -> Vec<Arc<VerifyKey>> {
    let fitting = keys.iter().filter(|k| k.kind.algorithm() == alg);
    match kid {
        Some(kid) => {
            let exact: Vec<_> = fitting.clone().filter(|k| k.kid.as_deref() == Some(kid)).cloned().collect();
            if !exact.is_empty() {
                return exact;
            }
            let anonymous: Vec<_> = fitting.filter(|k| k.kid.is_none()).cloned().collect();
            if anonymous.len() == 1 {
                anonymous
            } else {
                vec![]
            }
        }
        None => fitting.cloned().collect(),
    }
}

/// A remote JWK Set with its cache.
pub struct RemoteJwks {
    url: String,
    client: reqwest::Client,
    min_refresh: Duration,
    max_age: Duration,
    state: RwLock<Fetched>,
    fetch_lock: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Fetched {
    keys: Arc<Vec<Arc<VerifyKey>>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

impl RemoteJwks {
    /// A JWK Set at `url` (not fetched yet).
    pub fn new(url: String, client: reqwest::Client, min_refresh: Duration, max_age: Duration) -> RemoteJwks {
        RemoteJwks { url, client, min_refresh, max_age, state: RwLock::new(Fetched::default()), fetch_lock: tokio::sync::Mutex::new(()) }
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn snapshot(&self) -> (Arc<Vec<Arc<VerifyKey>>>, bool) {
        match self.state.read() {
            Ok(s) => (s.keys.clone(), s.fetched_at.is_some_and(|t| t.elapsed() < self.max_age)),
            Err(_) => (Arc::new(Vec::new()), false),
        }
    }

    /// Keys for a token's `kid`/`alg`; fetches the set when the `kid` is unknown or the set is stale
    /// (rate-limited by `min_refresh`; a failed fetch keeps the previous keys).
    pub async fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<VerifyKey>> {
        let (keys, fresh) = self.snapshot();
        let found = select(&keys, kid, alg);
        if !found.is_empty() && fresh {
            return found;
        }
        self.refresh().await;
        let (keys, _) = self.snapshot();
        select(&keys, kid, alg)
    }

    /// Fetch the set now unless a fetch was attempted less than `min_refresh` ago. Returns whether a
    /// fetch succeeded.
    pub async fn refresh(&self) -> bool {
        let _guard = self.fetch_lock.lock().await;
        {
            let Ok(mut s) = self.state.write() else { return false };
            if s.attempted_at.is_some_and(|t| t.elapsed() < self.min_refresh) {
                return false;
            }
            s.attempted_at = Some(Instant::now());
        }
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(jwks = %self.url, keys = keys.len(), "fetched JWK Set");
                if let Ok(mut s) = self.state.write() {
                    s.keys = Arc::new(keys.into_iter().map(Arc::new).collect());
                    s.fetched_at = Some(Instant::now());
                }
                true
            }
            Err(e) => {
                tracing::warn!(jwks = %self.url, error = %e, "JWK Set fetch failed; keeping the previous keys");
                false
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<VerifyKey>, String> {
        let resp = self.client.get(&self.url).send().await.map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let v: Value = resp.json().await.map_err(|e| e.without_url().to_string())?;
        Ok(keys_from_jwks_json(&v))
    }
}

/// Where an issuer's keys come from.
pub enum KeySource {
    /// Keys loaded at start.
    Static(Vec<Arc<VerifyKey>>),
    /// A remote JWK Set.
    Remote(RemoteJwks),
}

impl KeySource {
    /// Candidate keys for a token header.
    pub async fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<VerifyKey>> {
        match self {
            KeySource::Static(keys) => select(keys, kid, alg),
            KeySource::Remote(r) => r.candidates(kid, alg).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_skips_unusable_keys() {
        let v = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "h"},
            {"kty": "EC", "crv": "P-256", "kid": "e1", "use": "sig",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "e2", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "e3", "alg": "ES384",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "XYZ"}
        ]});
        let keys: Vec<Arc<VerifyKey>> = keys_from_jwks_json(&v).into_iter().map(Arc::new).collect();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("e1"));
        assert_eq!(select(&keys, Some("e1"), Algorithm::ES256).len(), 1);
        assert!(select(&keys, Some("e1"), Algorithm::RS256).is_empty());
        assert!(select(&keys, Some("nope"), Algorithm::ES256).is_empty());
    }
}
