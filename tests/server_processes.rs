//! Real `serve` processes under concurrent conflicting writes (issue "FHIR R4 server …", Must show):
//! 1,000 concurrent `If-Match` updates of one Patient, each either succeeds with a new version or gets
//! 412 — no lost update (FHIR R4 §3.1.0.4 / http.html#concurrency, "version aware updates") — with
//!
//! * two `serve` processes on one PostgreSQL database (a fresh database on the throwaway server of
//!   `common/pg.rs`; under `CI=true` it must run, never skip), the requests split across both, and
//! * one `serve` process on an SQLite file.
//!
//! The servers are the crate's own binary (`CARGO_BIN_EXE_tobiume-gateway`) on free 127.0.0.1 ports with
//! `TOBIUME_DEMO_PATIENTS=0` and `TOBIUME_AUTH=dev` (the dev key in the test's temp dir; the client sends a
//! `dev-token` minted by the binary); a guard kills them when the test ends, also on panic (and then prints
//! the tail of their logs).

#[path = "common/pg.rs"]
mod pg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tobiume_gateway::store::{ResourceStore, Store};

/// A running `tobiume-gateway serve` child process; killed (SIGKILL) and reaped on drop.
struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` (the FHIR base is `{base}/fhir`).
    base: String,
    /// stdout+stderr of the process.
    log: PathBuf,
    name: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of {} ({}) ---", self.name, self.log.display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `serve --listen 127.0.0.1:<free port> --database <url>` (working directory and log in `dir`) and
/// waits until `/health` answers. Retries on another port when the chosen one was taken meanwhile.
async fn start_server(name: &str, database: &str, dir: &Path, http: &reqwest::Client) -> Server {
    for attempt in 0..3 {
        let port = free_port();
        let log = dir.join(format!("{name}-{attempt}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tobiume-gateway"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--database", database])
            .env("TOBIUME_DEMO_PATIENTS", "0")
            .env("TOBIUME_LOG", "info")
            .env("TOBIUME_AUTH", "dev")
            .env("TOBIUME_DEV_KEY", dev_key(dir))
            .env("NO_COLOR", "1")
            .env_remove("TOBIUME_BASE_URL")
            .env_remove("TOBIUME_MAX_BODY_BYTES")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn tobiume-gateway serve");
        let mut server = Server { child, base: format!("http://127.0.0.1:{port}"), log, name: name.to_string() };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&server.log).unwrap_or_default();
                if log.contains("cannot listen") {
                    break; // port taken between probe and bind: next attempt
                }
                panic!("{name} exited before becoming healthy ({status}):\n{log}");
            }
            if let Ok(r) = http.get(format!("{}/health", server.base)).send().await {
                if r.status() == 200 {
                    return server;
                }
            }
            assert!(Instant::now() < deadline, "{name} not healthy within 120 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("{name}: no free port after 3 attempts");
}

/// `W/"7"` → 7.
fn etag_version(r: &reqwest::Response) -> i64 {
    let e = r.headers().get("etag").expect("ETag header").to_str().unwrap();
    e.trim_start_matches("W/").trim_matches('"').parse().unwrap_or_else(|_| panic!("ETag {e}"))
}

/// The outcome of one read-then-conditional-update.
enum Outcome {
    /// (version read, version written, marker written)
    Updated(i64, i64, usize),
    Conflict,
}

const WRITES: usize = 1000;

/// One Patient, then `WRITES` concurrent GET + `PUT If-Match: W/"<read version>"` split round-robin across
/// `servers`; checks every response, the final version, the full history and each version's content.
async fn if_match_storm(servers: &[&Server], database: &str, http: &reqwest::Client) {
    let started = Instant::now();
    let fhir = |i: usize| format!("{}/fhir", servers[i % servers.len()].base);
    let r = http
        .post(format!("{}/Patient", fhir(0)))
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Patient","active":true,"name":[{"text":"競合　試験"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(etag_version(&r), 1);
    let id: String = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    // Every server sees it (one database).
    for i in 0..servers.len() {
        let r = http.get(format!("{}/Patient/{id}", fhir(i))).send().await.unwrap();
        assert_eq!(r.status(), 200, "server {i}");
    }

    let id = Arc::new(id);
    let tasks: Vec<_> = (0..WRITES)
        .map(|i| {
            let (http, id, base) = (http.clone(), id.clone(), fhir(i));
            tokio::spawn(async move {
                // Half fire at once (maximal contention: ~500 writes, split across the servers, read the
                // same version and only one may win); the other half start spread, in a scrambled order,
                // over 10 s, so reads interleave with commits and a chain of writes (~200 in practice)
                // succeeds, each on top of the previous one.
                if i % 2 == 1 {
                    tokio::time::sleep(Duration::from_millis((i * 7919 % 10_000) as u64)).await;
                }
                let cur = http.get(format!("{base}/Patient/{id}")).send().await.unwrap();
                assert_eq!(cur.status(), 200);
                let read = etag_version(&cur);
                let body = format!(r#"{{"resourceType":"Patient","id":"{id}","active":true,"name":[{{"text":"write {i}"}}]}}"#);
                let r = http
                    .put(format!("{base}/Patient/{id}"))
                    .header("content-type", "application/fhir+json")
                    .header("if-match", format!("W/\"{read}\""))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    200 | 201 => {
                        let v = etag_version(&r);
                        let json: Value = r.json().await.unwrap();
                        assert_eq!(json["meta"]["versionId"], v.to_string(), "body and ETag agree");
                        assert_eq!(json["name"][0]["text"], format!("write {i}"));
                        Outcome::Updated(read, v, i)
                    }
                    412 => {
                        let oo: Value = r.json().await.unwrap();
                        assert_eq!(oo["resourceType"], "OperationOutcome", "{oo}");
                        Outcome::Conflict
                    }
                    s => panic!("write {i}: unexpected status {s}: {}", r.text().await.unwrap_or_default()),
                }
            })
        })
        .collect();

    let mut written: BTreeMap<i64, usize> = BTreeMap::new(); // version → marker
    let mut conflicts = 0;
    for t in tasks {
        match t.await.expect("write task") {
            Outcome::Updated(read, v, i) => {
                assert_eq!(v, read + 1, "a write conditional on version {read} must create version {}", read + 1);
                assert!(written.insert(v, i).is_none(), "two successful writes both got version {v}");
            }
            Outcome::Conflict => conflicts += 1,
        }
    }
    let ok = written.len();
    assert_eq!(ok + conflicts, WRITES);
    assert!(ok >= 1 && conflicts >= 1, "{ok} succeeded, {conflicts} conflicted: the test must exercise both");

    // Final version = 1 + successes, the same on every server, holding the last successful write.
    let final_version = 1 + ok as i64;
    assert_eq!(written.keys().copied().collect::<Vec<_>>(), (2..=final_version).collect::<Vec<_>>(), "no gaps");
    for i in 0..servers.len() {
        let r = http.get(format!("{}/Patient/{id}", fhir(i))).send().await.unwrap();
        assert_eq!(etag_version(&r), final_version, "server {i}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["meta"]["versionId"], final_version.to_string());
        assert_eq!(p["name"][0]["text"], format!("write {}", written[&final_version]), "the last successful write is current");
    }

    // History through the API (newest first, at most 1,000 entries): versions final, final-1, … without
    // gaps or duplicates, each holding exactly what the write that got that version sent.
    let h: Value = http.get(format!("{}/Patient/{id}/_history?_count=1000", fhir(0))).send().await.unwrap().json().await.unwrap();
    let entries = h["entry"].as_array().expect("history entries");
    let expected: Vec<i64> = (1..=final_version).rev().take(1000).collect();
    let got: Vec<i64> = entries.iter().map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(got, expected, "API history versions");
    for e in entries {
        let v: i64 = e["resource"]["meta"]["versionId"].as_str().unwrap().parse().unwrap();
        let text = e["resource"]["name"][0]["text"].as_str().unwrap();
        match written.get(&v) {
            Some(i) => assert_eq!(text, format!("write {i}"), "version {v}"),
            None => assert_eq!((v, text), (1, "競合　試験")),
        }
    }
    // The complete history straight from the database (no API page limit).
    let store = Store::connect(database).await.expect("open the servers' database");
    let all = store.history(Some("Patient"), Some(&id), None, 100_000).await.unwrap();
    let versions: Vec<i64> = all.iter().map(|r| r.version_id).collect();
    assert_eq!(versions, (1..=final_version).rev().collect::<Vec<_>>(), "stored history versions");
    store.close().await;

    eprintln!(
        "{} server(s): {WRITES} conditional updates → {ok} succeeded, {conflicts} got 412; final version {final_version}; {:.1} s",
        servers.len(),
        started.elapsed().as_secs_f64()
    );
}

/// The dev key file of the servers started in `dir`.
fn dev_key(dir: &Path) -> PathBuf {
    dir.join("tobiume-dev-key.pem")
}

/// An HTTP client sending a `dev-token` (full access, `system/*.cruds`) for the dev key in `dir`, minted
/// by the binary's `dev-token` command (which generates the key on first use).
fn client(dir: &Path) -> reqwest::Client {
    let out = Command::new(env!("CARGO_BIN_EXE_tobiume-gateway"))
        .args(["dev-token", "--scope", "system/*.cruds", "--key"])
        .arg(dev_key(dir))
        .output()
        .expect("run dev-token");
    assert!(out.status.success(), "dev-token: {}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().timeout(Duration::from_secs(120)).default_headers(headers).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_one_postgresql_database() {
    let Some(url) = pg::fresh_database_url().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let http = client(dir.path());
    // Both start at once: concurrent migrations of the empty database must be safe too.
    let (a, b) = tokio::join!(start_server("serve-a", &url, dir.path(), &http), start_server("serve-b", &url, dir.path(), &http));
    if_match_storm(&[&a, &b], &url, &http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_serve_process_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("fhir.db").display());
    let http = client(dir.path());
    let s = start_server("serve-sqlite", &url, dir.path(), &http).await;
    if_match_storm(&[&s], &url, &http).await;
}

/// SQLite supports several processes on one file (`BEGIN IMMEDIATE` + `busy_timeout`, see
/// `store/sqlite.rs`). The second server starts once the first has created the schema (concurrent first
/// start: see `two_serve_processes_start_together_on_a_fresh_sqlite_file`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("fhir.db").display());
    let http = client(dir.path());
    let a = start_server("serve-a", &url, dir.path(), &http).await;
    let b = start_server("serve-b", &url, dir.path(), &http).await;
    if_match_storm(&[&a, &b], &url, &http).await;
}

/// Two processes started at the same moment on a new SQLite file must both come up (as they do on
/// PostgreSQL, whose migrator holds an advisory lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_start_together_on_a_fresh_sqlite_file() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let http = client(dir.path());
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("fhir.db").display());
        let (a, b) = tokio::join!(start_server("serve-a", &url, dir.path(), &http), start_server("serve-b", &url, dir.path(), &http));
        for s in [&a, &b] {
            let r = http.get(format!("{}/fhir/Patient?_count=1", s.base)).send().await.unwrap();
            assert_eq!(r.status(), 200, "round {round}, {}", s.name);
        }
    }
}

/// Stops `server` with `signal` (`INT`, `TERM`) and returns its exit status (panics after 20 s).
async fn stop_with(server: &mut Server, signal: &str) -> std::process::ExitStatus {
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-s", signal, &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{} still running 20 s after SIG{signal}", server.name);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ctrl-C (SIGINT) shuts `serve` down gracefully: exit status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exits_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("fhir.db").display());
    let mut s = start_server("serve-int", &url, dir.path(), &client(dir.path())).await;
    let status = stop_with(&mut s, "INT").await;
    assert!(status.success(), "{status}");
}

/// SIGTERM (what `docker stop`, systemd and Kubernetes send) must shut `serve` down gracefully too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("fhir.db").display());
    let mut s = start_server("serve-term", &url, dir.path(), &client(dir.path())).await;
    let status = stop_with(&mut s, "TERM").await;
    assert!(status.success(), "{status}");
}
