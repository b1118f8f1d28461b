//! Latency of `GET /fhir/Patient/{id}/$summary?mode=emergency` over N registered patients.
//!
//! ```sh
//! cargo run --release --example bench_summary -- [--patients N] [--requests R] [--database URL] [--mode M]
//! ```
//!
//! * Loads N copies of `conformance/registration.example.json` (card ids `TB-B-0000000` …, ~45
//!   resources each, through the store's bulk import path: prepared batches of 200 registrations in one
//!   transaction each) into a fresh store (default: a temp SQLite file; `--database` to use PostgreSQL or
//!   keep the file — an existing store that already holds the patients is reused), plus the real SS-MIX2
//!   fixture linked to patient 0 by `Patient.link` (so one patient in the sample also merges SS-MIX2
//!   data).
//! * Then sends R requests (default 2000, after 100 warm-up) for random patients through the complete
//!   axum router in process (handler, access layer, store, JSON) — no TCP — one at a time, and prints
//!   p50 / p90 / p99 / max in milliseconds.
//!
//! Default N = 100 000 (the issue's target); loading it takes a while on a small machine — pass a
//! smaller N to measure what fits and say so when reporting.
//!
//! Each copy gets its own demographics (kanji + kana name from the synthetic generator's name lists,
//! sex, birth date between 1925 and 2014, derived from the patient number), so a name + birth-date
//! lookup matches about one patient, as in a real registry.
//!
//! * `--load-only` loads (or reuses) the store and exits — `bench/registry.sh` then measures over HTTP.
//!   An interrupted load resumes where it stopped (registrations are committed in order, batch by
//!   batch); `--load-to K` stops after patient K (exclusive), so a script can load in chunks and check
//!   the free disk space between them.
//! * `--sample-dir DIR` writes `summary.txt` (one Patient id per line) and `lookup.txt`
//!   (`kana family name \t birth date`) for the wrk scenarios in `bench/lib/scenarios.lua`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};
use tobiume_gateway::api::{router, ApiConfig, AppState};
use tobiume_gateway::mapping::registration::{to_fhir, CardId, Ids, Registration};
use tobiume_gateway::search::Registry;
use tobiume_gateway::store::{
    ImportFile, ImportWrite, PreparedImport, ResourceBody, ResourceStore, Store,
};
use tower::ServiceExt;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn card(i: usize) -> String {
    format!("TB-B-{i:07}")
}

/// Deterministic demographics of bench patient `k`: (kanji family, kanji given, kana family, kana given,
/// sex code, birth date).
fn demographics(k: usize) -> (&'static str, &'static str, &'static str, &'static str, &'static str, String) {
    use tobiume_gateway::ssmix2::synth::{FAMILY_NAMES, GIVEN_NAMES_FEMALE, GIVEN_NAMES_MALE};
    let mut h = (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = |m: u64| {
        h ^= h >> 31;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 29;
        h % m
    };
    let (fk, fr) = FAMILY_NAMES[next(FAMILY_NAMES.len() as u64) as usize];
    let male = next(2) == 0;
    let given = if male { &GIVEN_NAMES_MALE } else { &GIVEN_NAMES_FEMALE };
    let (gk, gr) = given[next(given.len() as u64) as usize];
    let date = time::Date::from_calendar_date(1925, time::Month::January, 1).expect("date")
        + time::Duration::days(next(90 * 365) as i64);
    (fk, gk, fr, gr, if male { "male" } else { "female" }, date.to_string())
}

/// The template registration with bench patient `k`'s card id and demographics.
fn registration(template: &Value, k: usize) -> Registration {
    let mut v = template.clone();
    let (fk, gk, fr, gr, sex, date) = demographics(k);
    let d = &mut v["demographics"];
    d["nameKanji"]["value"] = json!({"family": fk, "given": gk});
    d["nameKana"]["value"] = json!({"family": fr, "given": gr});
    d["birthDate"]["value"] = json!(date);
    d["sex"]["value"] = json!(sex);
    let mut r: Registration = serde_json::from_value(v).expect("bench registration");
    r.card_id = CardId::new(card(k)).expect("card id");
    r
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = arg("--patients")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let requests: usize = arg("--requests")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mode = arg("--mode").unwrap_or_else(|| "emergency".into());
    let tmp = tempfile::tempdir().expect("tempdir");
    let url = arg("--database").unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            tmp.path().join("bench-summary.db").display()
        )
    });
    let registry = Arc::new(Registry::standard());
    let store = Store::connect_with_registry(&url, registry.clone())
        .await
        .expect("store");

    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conformance/registration.example.json"
    ))
    .expect("example registration");
    let template: Value = serde_json::from_str(&text).expect("example parses");
    let _: Registration = serde_json::from_value(template.clone()).expect("example is a registration");
    let ids = Ids::default();
    // Registrations are committed in order (one transaction per batch of 200), so what a killed load
    // left behind is a prefix 0..k: find k by bisection and continue from there.
    let has = |k: usize| {
        let store = &store;
        async move { store.read("Patient", &format!("tobiume-{}", card(k))).await.is_ok() }
    };
    let (mut lo, mut hi) = (0usize, n); // invariant: 0..lo loaded, hi.. not loaded
    if n > 0 && has(n - 1).await {
        lo = n;
    } else {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if has(mid).await {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
    }
    let start = lo;
    // `--load-to K`: load only up to patient K (exclusive) in this run — bench/registry.sh loads in
    // chunks and checks the free disk space between them.
    let stop = arg("--load-to")
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(n, |k| k.min(n));
    let fixture_loaded = store.read("Patient", "9999013.ADT-00").await.is_ok();
    if start >= n && fixture_loaded {
        eprintln!("reusing the {n} registrations already in the store");
    } else {
        if start > 0 {
            eprintln!("resuming: {start} of {n} registrations already in the store");
        }
        eprintln!("loading registrations {start}..{} …", stop.max(start));
        let t0 = Instant::now();
        let batch = 200;
        let mut pending: Option<tokio::task::JoinHandle<PreparedImport>> = None;
        let mut i = start;
        while i < stop || pending.is_some() {
            let next = if i < stop {
                let end = (i + batch).min(stop);
                let (reg, tpl) = (registry.clone(), template.clone());
                let ids = ids.clone();
                let range = i..end;
                i = end;
                Some(tokio::task::spawn_blocking(move || {
                    let files: Vec<ImportFile> = range
                        .map(|k| {
                            let r = registration(&tpl, k);
                            let mut res = to_fhir(&r, &ids);
                            if k == 0 {
                                res[0]["link"] = json!([{"other": {"reference": "Patient/9999013.ADT-00",
                                    "display": "福岡市民病院"}, "type": "seealso"}]);
                            }
                            ImportFile {
                                path: format!("bench/registration/{k}"),
                                content_sha256: format!("{k:064x}"),
                                writes: res
                                    .into_iter()
                                    .map(|v: Value| ImportWrite {
                                        resource_type: v["resourceType"].as_str().unwrap_or_default().to_string(),
                                        id: v["id"].as_str().unwrap_or_default().to_string(),
                                        body: Some(ResourceBody::Json(v)),
                                    })
                                    .collect(),
                            }
                        })
                        .collect();
                    PreparedImport::prepare(&reg, files).expect("prepare")
                }))
            } else {
                None
            };
            if let Some(p) = pending.take() {
                store
                    .apply_import(p.await.expect("prepare task"))
                    .await
                    .expect("apply");
            }
            pending = next;
            if i % 10_000 == 0 && i > start {
                eprintln!("  {i} prepared, {:.0} s", t0.elapsed().as_secs_f64());
            }
        }
        if stop < n {
            eprintln!("loaded up to {stop} of {n} in {:.1} s", t0.elapsed().as_secs_f64());
            return;
        }
        if !fixture_loaded {
            let fixture = Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/fixtures/ssmix2-real"
            ));
            tobiume_gateway::import::import_ssmix2(&store, fixture, &Default::default(), |_| {})
                .await
                .expect("import");
        }
        let _ = store.analyze().await;
        eprintln!("loaded in {:.1} s", t0.elapsed().as_secs_f64());
    }

    if let Some(dir) = arg("--sample-dir") {
        use std::fmt::Write as _;
        std::fs::create_dir_all(&dir).expect("sample dir");
        let (mut ids, mut names) = (String::new(), String::new());
        for k in (0..n).step_by((n / 20_000).max(1)) {
            let (_, _, fr, _, _, date) = demographics(k);
            let _ = writeln!(ids, "tobiume-{}", card(k));
            let _ = writeln!(names, "{fr}\t{date}");
        }
        std::fs::write(Path::new(&dir).join("summary.txt"), ids).expect("write summary.txt");
        std::fs::write(Path::new(&dir).join("lookup.txt"), names).expect("write lookup.txt");
    }
    if std::env::args().any(|a| a == "--load-only") {
        return;
    }
    // Measures the summary itself: authentication disabled (the auth layer's cost is benchmarked by
    // bench/server.sh with AUTH=dev vs AUTH=none).
    let api_cfg = ApiConfig { auth: Arc::new(tobiume_gateway::auth::Authenticator::disabled()), ..ApiConfig::default() };
    let state = AppState::new(Arc::new(store), registry, api_cfg);
    if std::env::args().any(|a| a == "--breakdown") {
        // Time the two stages separately: gathering (reads) and building (pure).
        use tobiume_gateway::api::access::RequestContext;
        use tobiume_gateway::api::operation::summary::gather;
        use tobiume_gateway::summary::{build, Mode, Options};
        let ctx = RequestContext::local(None);
        let opts = Options::new(
            time::OffsetDateTime::now_utc(),
            "http://localhost:8080/fhir",
        );
        let (mut g, mut b, mut ser) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..300 {
            let id = format!("tobiume-{}", card((k * 7919) % n));
            let t = Instant::now();
            let src = gather(&state, &ctx, &id, &opts).await.expect("gather");
            let t1 = Instant::now();
            let s = build(&src, Mode::Emergency, &opts);
            let t2 = Instant::now();
            // The Bundle text is written by build; check it parses (what a client does).
            let _: serde_json::Value = serde_json::from_slice(&s.bundle).expect("bundle JSON");
            let t3 = Instant::now();
            g.push((t1 - t).as_secs_f64() * 1000.0);
            b.push((t2 - t1).as_secs_f64() * 1000.0);
            ser.push((t3 - t2).as_secs_f64() * 1000.0);
        }
        for (name, mut v) in [("gather", g), ("build", b), ("parse bundle (client side)", ser)] {
            v.sort_by(|a, b| a.total_cmp(b));
            println!(
                "{name}: p50 {:.2} ms, p99 {:.2} ms",
                v[v.len() / 2],
                v[v.len() * 99 / 100]
            );
        }
    }
    let app = router(state);
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let mut times = Vec::with_capacity(requests);
    let mut bytes = 0usize;
    for k in 0..(requests + 100) {
        let who = if k % 100 == 0 { 0 } else { next() }; // patient 0 (with SS-MIX2 data) 1 % of the time
        let uri = format!("/fhir/Patient/tobiume-{}/$summary?mode={mode}", card(who));
        let t = Instant::now();
        let res = app
            .clone()
            .oneshot(Request::builder().uri(&uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let dt = t.elapsed();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        if k >= 100 {
            times.push(dt.as_secs_f64() * 1000.0);
            bytes += body.len();
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        times[((times.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(times.len() - 1)]
    };
    println!(
        "$summary?mode={mode} over {n} registered patients ({}): {} requests, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean body {} bytes",
        if url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" },
        times.len(),
        q(0.50),
        q(0.90),
        q(0.99),
        times[times.len() - 1],
        bytes / times.len().max(1)
    );
}
