//! Cost of the token check per request (`auth::Authenticator::verify`): a cached token (SHA-256 of the
//! token + bounded cache lookup — what every request after the first pays) versus a full ES256 signature
//! verification with claim checks (first request of each token).
//!
//! `cargo run --release --example bench_auth [N]` prints microseconds per check.

use std::time::Instant;

use tobiume_gateway::auth::dev::{DevKey, DevTokenRequest};
use tobiume_gateway::auth::{AuthMode, AuthSettings, Authenticator};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let key = DevKey::generate().expect("key");
    let settings = AuthSettings { mode: AuthMode::Dev, ..AuthSettings::default() };
    let auth = Authenticator::from_settings_with_dev_key(&settings, "http://localhost:8080/fhir", Some(&key)).expect("auth");
    let req = |i: usize| DevTokenRequest {
        scope: "user/*.cruds".into(),
        facility: Some("tobiume-demo-hospital".into()),
        subject: format!("user-{i}"),
        ..DevTokenRequest::default()
    };
    // Fresh tokens: every check verifies the signature.
    let fresh: Vec<String> = (0..2000).map(|i| key.mint(&req(i)).expect("mint")).collect();
    let t = Instant::now();
    for tok in &fresh {
        auth.verify(tok).await.expect("verify");
    }
    let full = t.elapsed().as_secs_f64() * 1e6 / fresh.len() as f64;
    // One token, checked n times: the cache path.
    let token = key.mint(&req(usize::MAX)).expect("mint");
    auth.verify(&token).await.expect("verify");
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(auth.verify(std::hint::black_box(&token)).await.expect("verify"));
    }
    let cached = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("full ES256 verification + claims: {full:.1} µs/token; cached token check: {cached:.2} µs/request ({} tokens cached)", auth.cached_tokens());
}
