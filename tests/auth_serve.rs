//! `serve` start-up in each authentication mode (real processes of the crate's binary):
//!
//! * `jwt` (the default) without issuers refuses to start and says how to fix it;
//! * `none` refuses a non-loopback listen address, and on 127.0.0.1 starts with a loud warning;
//! * `dev` generates the key file, imports the demo data with its Organization, prints a demo token and
//!   curl examples that carry it; the token works, no token is 401, `/health` and `/fhir/metadata` are public;
//! * `dev-token` mints tokens for that key and rejects unknown roles.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tobiume-gateway");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve(dir: &Path, listen: &str, envs: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["serve", "--listen", listen, "--database", &format!("sqlite://{}?mode=rwc", dir.join("fhir.db").display())])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("TOBIUME_DEMO_PATIENTS", "0")
        .env_remove("TOBIUME_AUTH")
        .env_remove("TOBIUME_DEV_KEY")
        .env_remove("TOBIUME_AUTH_ISSUERS")
        .env_remove("TOBIUME_BASE_URL")
        .stdin(Stdio::null());
    for (k, v) in envs {
        c.env(k, v);
    }
    c
}

/// Runs a `serve` that must exit by itself; returns (exit code, stderr).
fn must_refuse(mut c: Command) -> (i32, String) {
    let out = c.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn jwt_without_issuers_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = must_refuse(serve(dir.path(), &format!("127.0.0.1:{}", free_port()), &[]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no token issuer configured") && err.contains("TOBIUME_AUTH=dev"), "{err}");
}

#[test]
fn none_mode_refuses_non_loopback_listen() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = must_refuse(serve(dir.path(), &format!("0.0.0.0:{}", free_port()), &[("TOBIUME_AUTH", "none")]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("only allowed on a loopback"), "{err}");
}

/// A running server, killed on drop.
struct Running {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

async fn start(dir: &Path, envs: &[(&str, &str)], ready: &str) -> (Running, String) {
    let port = free_port();
    let log = dir.join("serve.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = serve(dir, &format!("127.0.0.1:{port}"), envs).stdout(out.try_clone().unwrap()).stderr(out).spawn().unwrap();
    let running = Running { child, log };
    let deadline = Instant::now() + Duration::from_secs(180);
    let base = format!("http://127.0.0.1:{port}");
    loop {
        let log = running.log();
        if log.contains(ready) && reqwest::get(format!("{base}/health")).await.is_ok_and(|r| r.status() == 200) {
            return (running, base);
        }
        assert!(Instant::now() < deadline, "server not ready: {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_mode_on_loopback_warns_and_serves_without_token() {
    let dir = tempfile::tempdir().unwrap();
    let (s, base) = start(dir.path(), &[("TOBIUME_AUTH", "none")], "try:").await;
    assert!(s.log().contains("AUTHENTICATION IS DISABLED"), "{}", s.log());
    let r = reqwest::get(format!("{base}/fhir/Patient")).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_generates_key_prints_demo_token_and_requires_it() {
    let dir = tempfile::tempdir().unwrap();
    let (s, base) = start(dir.path(), &[("TOBIUME_AUTH", "dev"), ("TOBIUME_DEMO_PATIENTS", "2")], "try:").await;
    let log = s.log();
    assert!(dir.path().join("tobiume-dev-key.pem").exists(), "dev key generated in the working directory");
    assert!(log.contains("auth: dev mode"), "{log}");
    let token = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("export TOKEN="))
        .unwrap_or_else(|| panic!("no demo token printed: {log}"))
        .to_string();
    assert!(log.contains(r#"curl -s -H "Authorization: Bearer $TOKEN""#), "{log}");
    let http = reqwest::Client::new();
    // Without a token: 401 with a Bearer challenge; public endpoints answer.
    let r = http.get(format!("{base}/fhir/Patient")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    assert_eq!(http.get(format!("{base}/fhir/metadata")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{base}/.well-known/smart-configuration")).send().await.unwrap().status(), 200);
    // The demo token reads the demo data and its facility.
    let r = http.get(format!("{base}/fhir/Patient?_summary=count")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["total"], 2, "{v}");
    let r = http.get(format!("{base}/fhir/Organization/tobiume-demo-hospital")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // dev-token mints for the same key (read from TOBIUME_DEV_KEY / --key).
    let out = Command::new(BIN)
        .args(["dev-token", "--scope", "user/Patient.rs", "--key"])
        .arg(dir.path().join("tobiume-dev-key.pem"))
        .args(["--facility", "tobiume-demo-hospital", "--purpose", "ETREAT", "--reason", "搬送", "--roles", "emergency"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(http.get(format!("{base}/fhir/Patient")).bearer_auth(&t).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{base}/fhir/Observation")).bearer_auth(&t).send().await.unwrap().status(), 403);
    // A token of another dev key is refused.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["dev-token", "--scope", "user/*.cruds", "--key"])
        .arg(other.path().join("k.pem"))
        .output()
        .unwrap();
    let foreign = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(http.get(format!("{base}/fhir/Patient")).bearer_auth(&foreign).send().await.unwrap().status(), 401);
    // Unknown roles are rejected by dev-token.
    let out = Command::new(BIN)
        .args(["dev-token", "--scope", "user/*.rs", "--roles", "admin", "--key"])
        .arg(dir.path().join("tobiume-dev-key.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
