//! Token verification against configured issuers (`auth::Authenticator`), without the HTTP API:
//!
//! * a remote JWK Set served by a local HTTP server, with key rotation: a token signed by a new key (unknown
//!   `kid`) makes the gateway fetch the set again, at most once per `jwks_min_refresh_seconds`;
//! * static keys: an RSA public key PEM (RS256) and a P-384 JWK Set file (ES384);
//! * `exp` / `nbf` with leeway, audience defaulting to the FHIR base URL, claims → `Principal`;
//! * the verified-token cache (and its speed against a fresh verification).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tobiume_gateway::auth::authenticator::TokenError;
use tobiume_gateway::auth::dev::DevKey;
use tobiume_gateway::auth::{AuthMode, AuthSettings, Authenticator, IssuerSettings, Role, ScopeContext};

const BASE: &str = "https://gw.example/fhir";
const ISS: &str = "https://idp.example/realms/tobiume";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "aud": BASE, "sub": "dr-1", "exp": now() + 300, "iat": now(), "scope": "user/*.rs"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn issuer(jwks_url: Option<String>, keys: Vec<PathBuf>) -> IssuerSettings {
    IssuerSettings {
        issuer: ISS.into(),
        audience: vec![],
        jwks_url,
        keys,
        authorization_endpoint: None,
        token_endpoint: Some("https://idp.example/token".into()),
        introspection_endpoint: None,
        client_id: None,
        client_secret: None,
    }
}

/// A JWK Set server on 127.0.0.1: serves the current set and counts fetches.
struct JwksServer {
    url: String,
    set: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

async fn jwks_server(initial: Value) -> JwksServer {
    let set = Arc::new(Mutex::new(initial));
    let hits = Arc::new(AtomicUsize::new(0));
    let (s, h) = (set.clone(), hits.clone());
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            let (s, h) = (s.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                axum::Json(s.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    JwksServer { url: format!("http://{addr}/certs"), set, hits }
}

#[tokio::test]
async fn jwks_rotation_refetches_on_unknown_kid_with_rate_limit() {
    let k1 = DevKey::generate().unwrap();
    let k2 = DevKey::generate().unwrap();
    let k3 = DevKey::generate().unwrap();
    let server = jwks_server(json!({"keys": [k1.public_jwk()]})).await;
    let settings = AuthSettings {
        mode: AuthMode::Jwt,
        issuers: vec![issuer(Some(server.url.clone()), vec![])],
        jwks_min_refresh_seconds: 2,
        ..AuthSettings::default()
    };
    let auth = Authenticator::from_settings(&settings, BASE).unwrap();
    assert_eq!(auth.discovery().jwks_uri.as_deref(), Some(server.url.as_str()));

    // First token: the set is fetched once.
    let p = auth.verify(&k1.sign(&claims(json!({}))).unwrap()).await.unwrap();
    assert_eq!(p.subject, "dr-1");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    // Another token of the same key: no fetch.
    auth.verify(&k1.sign(&claims(json!({"sub": "dr-2"}))).unwrap()).await.unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);

    // The IdP rotates to k2; wait out the minimum refresh interval, then a k2 token triggers one refetch.
    *server.set.lock().unwrap() = json!({"keys": [k2.public_jwk()]});
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let p = auth.verify(&k2.sign(&claims(json!({"sub": "dr-3"}))).unwrap()).await.unwrap();
    assert_eq!(p.subject, "dr-3");
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);

    // An unknown kid right after a fetch: refused without hitting the IdP again (rate limit).
    let t3 = k3.sign(&claims(json!({}))).unwrap();
    assert_eq!(auth.verify(&t3).await.unwrap_err(), TokenError::UnknownKey);
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    // k1 tokens not cached yet are refused now (k1 left the set).
    assert_eq!(auth.verify(&k1.sign(&claims(json!({"sub": "dr-9"}))).unwrap()).await.unwrap_err(), TokenError::UnknownKey);

    // A forged token: k2's kid but signed by k3.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(k2.kid().to_string());
    let forged = {
        let t = k3.sign(&claims(json!({}))).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        format!("{h}.{}.{}", parts[1], parts[2])
    };
    assert_eq!(auth.verify(&forged).await.unwrap_err(), TokenError::Signature);
}

#[tokio::test]
async fn jwks_unreachable_is_an_unknown_key_not_a_crash() {
    let k = DevKey::generate().unwrap();
    let settings = AuthSettings {
        issuers: vec![issuer(Some("http://127.0.0.1:9/certs".into()), vec![])],
        ..AuthSettings::default()
    };
    let auth = Authenticator::from_settings(&settings, BASE).unwrap();
    assert_eq!(auth.verify(&k.sign(&claims(json!({}))).unwrap()).await.unwrap_err(), TokenError::UnknownKey);
}

/// RS256 with a static RSA public key PEM; ES384 with a P-384 JWK Set file.
#[tokio::test]
async fn static_rsa_pem_and_p384_jwks_files() {
    let dir = tempfile::tempdir().unwrap();
    // RSA 2048 key pair: private PKCS#8 PEM for signing, SPKI PEM for the gateway.
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der = rsa.as_der().unwrap();
    let rsa_priv = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    let spki: aws_lc_rs::encoding::PublicKeyX509Der = rsa.public_key().as_der().unwrap();
    let rsa_pub = dir.path().join("idp-rsa.pem");
    std::fs::write(&rsa_pub, pem::encode(&pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec()))).unwrap();
    // P-384 key pair: JWK Set file.
    let ec = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let ec_priv = pem::encode(&pem::Pem::new("PRIVATE KEY", ec.to_pkcs8v1().unwrap().as_ref().to_vec()));
    let point = ec.public_key().as_ref();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-384", "kid": "ec384", "alg": "ES384",
        "x": b64.encode(&point[1..49]), "y": b64.encode(&point[49..97])}]});
    let jwks_file = dir.path().join("idp-jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();

    let settings = AuthSettings { issuers: vec![issuer(None, vec![rsa_pub, jwks_file])], ..AuthSettings::default() };
    let auth = Authenticator::from_settings(&settings, BASE).unwrap();

    let rs = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims(json!({"scope": "user/Observation.rs launch openid", "facility": "Organization/org-1", "jti": "j1",
            "client_id": "viewer", "tobiume_roles": ["emergency"], "purpose_of_use": "ETREAT", "reason": "救急搬送"})),
        &EncodingKey::from_rsa_pem(rsa_priv.as_bytes()).unwrap(),
    )
    .unwrap();
    let p = auth.verify(&rs).await.unwrap();
    assert_eq!(p.issuer, ISS);
    assert_eq!(p.facility.as_deref(), Some("org-1"));
    assert_eq!(p.token_id.as_deref(), Some("j1"));
    assert_eq!(p.client_id.as_deref(), Some("viewer"));
    assert!(p.has_role(Role::Emergency) && !p.has_role(Role::Secretariat));
    assert_eq!(p.purpose_of_use.as_deref(), Some("ETREAT"));
    assert_eq!(p.scopes.len(), 1);
    assert_eq!(p.scopes[0].context, ScopeContext::User);

    let mut h = Header::new(Algorithm::ES384);
    h.kid = Some("ec384".into());
    let es = jsonwebtoken::encode(&h, &claims(json!({})), &EncodingKey::from_ec_pem(ec_priv.as_bytes()).unwrap()).unwrap();
    assert_eq!(auth.verify(&es).await.unwrap().subject, "dr-1");
    // The same P-384 token re-labelled ES256 must not verify (algorithm bound to the key).
    let mut h256 = Header::new(Algorithm::ES256);
    h256.kid = Some("ec384".into());
    let parts: Vec<&str> = es.split('.').collect();
    let relabelled = format!("{}.{}.{}", b64.encode(serde_json::to_vec(&h256).unwrap()), parts[1], parts[2]);
    assert_eq!(auth.verify(&relabelled).await.unwrap_err(), TokenError::UnknownKey);
    // HS256 is never accepted.
    let hs = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(json!({})), &EncodingKey::from_secret(b"k")).unwrap();
    assert_eq!(auth.verify(&hs).await.unwrap_err(), TokenError::Algorithm);
}

#[tokio::test]
async fn time_and_audience_checks_and_cache() {
    let k = DevKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwk.json");
    std::fs::write(&file, k.public_jwk().to_string()).unwrap();
    let settings = AuthSettings { issuers: vec![issuer(None, vec![file])], leeway_seconds: 30, ..AuthSettings::default() };
    let auth = Authenticator::from_settings(&settings, BASE).unwrap();
    let t = |c: Value| k.sign(&claims(c)).unwrap();
    // Within the leeway: accepted; beyond: refused.
    assert!(auth.verify(&t(json!({"exp": now() - 10}))).await.is_ok());
    assert_eq!(auth.verify(&t(json!({"exp": now() - 120}))).await.unwrap_err(), TokenError::Expired);
    assert_eq!(auth.verify(&t(json!({"nbf": now() + 120}))).await.unwrap_err(), TokenError::NotYetValid);
    assert!(auth.verify(&t(json!({"nbf": now() + 10}))).await.is_ok());
    // Audience: the FHIR base URL by default; in an array also fine.
    assert_eq!(auth.verify(&t(json!({"aud": "https://other/fhir"}))).await.unwrap_err(), TokenError::Audience);
    assert!(auth.verify(&t(json!({"aud": ["x", BASE]}))).await.is_ok());
    // exp is required.
    let mut no_exp = claims(json!({}));
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(auth.verify(&k.sign(&no_exp).unwrap()).await.unwrap_err(), TokenError::Claims);
    assert_eq!(auth.verify("a.b.c").await.unwrap_err(), TokenError::Malformed);

    // Cache: the second verification of a token does not verify the signature again.
    let token = t(json!({"sub": "cached"}));
    let before = auth.cached_tokens();
    let start = Instant::now();
    auth.verify(&token).await.unwrap();
    let first = start.elapsed();
    assert_eq!(auth.cached_tokens(), before + 1);
    let n = 2000;
    let start = Instant::now();
    for _ in 0..n {
        assert_eq!(auth.verify(&token).await.unwrap().subject, "cached");
    }
    let cached = start.elapsed() / n;
    // A fresh ES256 verification for comparison (new token each time: not cached).
    let fresh_tokens: Vec<String> = (0..50).map(|i| t(json!({"sub": format!("u{i}")}))).collect();
    let start = Instant::now();
    for tok in &fresh_tokens {
        auth.verify(tok).await.unwrap();
    }
    let fresh = start.elapsed() / fresh_tokens.len() as u32;
    eprintln!("token check: first {first:?}, fresh ES256 verification {fresh:?}, cached {cached:?}");
    assert!(cached < fresh, "cached {cached:?} should be cheaper than a verification {fresh:?}");
    assert_eq!(auth.cached_tokens(), before + 1 + fresh_tokens.len());
}

#[test]
fn jwt_mode_without_issuers_and_issuer_without_keys_refuse_to_build() {
    let e = Authenticator::from_settings(&AuthSettings::default(), BASE).unwrap_err();
    assert!(e.to_string().contains("TOBIUME_AUTH=dev"), "{e}");
    let s = AuthSettings { issuers: vec![issuer(None, vec![])], ..AuthSettings::default() };
    assert!(Authenticator::from_settings(&s, BASE).unwrap_err().to_string().contains("jwks_url or keys"));
    let s = AuthSettings { issuers: vec![issuer(None, vec![PathBuf::from("/nonexistent.pem")])], ..AuthSettings::default() };
    assert!(Authenticator::from_settings(&s, BASE).is_err());
}

/// Opaque tokens: RFC 7662 introspection at the issuer (client authenticated with HTTP Basic), answers
/// cached for `introspection_cache_seconds`, inactive tokens refused.
#[tokio::test]
async fn opaque_tokens_are_introspected() {
    use axum::extract::Form;
    use axum::http::HeaderMap;
    use std::collections::HashMap;
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/introspect",
        axum::routing::post(move |headers: HeaderMap, Form(form): Form<HashMap<String, String>>| {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                let basic = base64::engine::general_purpose::STANDARD.encode("gateway:s3cret");
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Basic {basic}")) {
                    return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"})));
                }
                let body = match form.get("token").map(String::as_str) {
                    Some("opaque-good") => json!({"active": true, "scope": "user/Patient.rs openid", "sub": "dr-7",
                        "client_id": "emr", "iss": ISS, "aud": BASE, "exp": now() + 300, "jti": "t-7",
                        "facility": "org-9", "purpose_of_use": "TREAT"}),
                    Some("opaque-other-aud") => json!({"active": true, "scope": "user/*.rs", "aud": "https://else/fhir", "exp": now() + 300}),
                    _ => json!({"active": false}),
                };
                (axum::http::StatusCode::OK, axum::Json(body))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut iss = issuer(None, vec![]);
    iss.introspection_endpoint = Some(format!("http://{addr}/introspect"));
    iss.client_id = Some("gateway".into());
    iss.client_secret = Some("s3cret".into());
    let settings = AuthSettings { issuers: vec![iss.clone()], introspection_cache_seconds: 60, ..AuthSettings::default() };
    let auth = Authenticator::from_settings(&settings, BASE).unwrap();

    let p = auth.verify("opaque-good").await.unwrap();
    assert_eq!((p.subject.as_str(), p.facility.as_deref(), p.token_id.as_deref()), ("dr-7", Some("org-9"), Some("t-7")));
    assert_eq!(p.scopes.len(), 1);
    assert_eq!(p.purpose_of_use.as_deref(), Some("TREAT"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    auth.verify("opaque-good").await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1, "cached");
    assert_eq!(auth.verify("opaque-revoked").await.unwrap_err(), TokenError::Inactive);
    assert_eq!(auth.verify("opaque-other-aud").await.unwrap_err(), TokenError::Audience);

    // Cache time 0: every request asks again (revocation effective at once).
    let settings = AuthSettings { issuers: vec![iss.clone()], introspection_cache_seconds: 0, ..AuthSettings::default() };
    let auth = Authenticator::from_settings(&settings, BASE).unwrap();
    let before = hits.load(Ordering::SeqCst);
    auth.verify("opaque-good").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    auth.verify("opaque-good").await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), before + 2);

    // Wrong client secret: the endpoint refuses the gateway → 401 for the token, no crash.
    iss.client_secret = Some("wrong".into());
    let auth = Authenticator::from_settings(&AuthSettings { issuers: vec![iss], ..AuthSettings::default() }, BASE).unwrap();
    assert_eq!(auth.verify("opaque-good").await.unwrap_err(), TokenError::Introspection);
}
