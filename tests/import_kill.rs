//! Crash safety of `import ssmix2` (issue "FHIR R4 server … and SS-MIX2 import", Must show): the import is
//! killed with SIGKILL at pseudo-random points 20 times, then rerun to completion; the store must equal
//! one uninterrupted import — same resources, same version numbers, same content (only `lastUpdated`
//! differs), no duplicates, nothing lost.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tobiume_gateway::store::{ResourceStore, Store};

const EXE: &str = env!("CARGO_BIN_EXE_tobiume-gateway");

fn import(root: &Path, db: &str) -> Command {
    let mut c = Command::new(EXE);
    c.args(["import", "ssmix2"]).arg(root).args(["--database", db, "--quiet", "--batch", "16"]);
    c.arg("--quarantine").arg(root.parent().unwrap().join("quarantine"));
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Every version in the store: (type, id, version) → (deleted, JSON without meta.lastUpdated).
async fn snapshot(url: &str) -> BTreeMap<(String, String, i64), (bool, serde_json::Value)> {
    let store = Store::connect(url).await.unwrap();
    let all = store.history(None, None, None, usize::MAX / 2).await.unwrap();
    let mut out = BTreeMap::new();
    for r in all {
        let mut v: serde_json::Value = if r.deleted { serde_json::Value::Null } else { serde_json::from_str(&r.json).unwrap() };
        if let Some(meta) = v.get_mut("meta").and_then(|m| m.as_object_mut()) {
            meta.remove("lastUpdated");
        }
        let key = (r.resource_type.clone(), r.id.clone(), r.version_id);
        assert!(out.insert(key, (r.deleted, v)).is_none(), "duplicate version {}/{}/{}", r.resource_type, r.id, r.version_id);
    }
    store.close().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_killed_20_times_equals_one_uninterrupted_import() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    tobiume_gateway::ssmix2::synth::generate(&root, 30, 7).unwrap();

    let base_url = format!("sqlite://{}?mode=rwc", dir.path().join("baseline.db").display());
    let st = import(&root, &base_url).status().unwrap();
    assert!(st.success(), "baseline import failed: {st:?}");
    let t0 = Instant::now();
    let st = import(&root, &format!("sqlite://{}?mode=rwc", dir.path().join("timing.db").display())).status().unwrap();
    assert!(st.success());
    let full = t0.elapsed().max(Duration::from_millis(50));

    let url = format!("sqlite://{}?mode=rwc", dir.path().join("killed.db").display());
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut kills = 0;
    for _ in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Kill after 2.5–5 % of an uninterrupted run's time (start-up included), so that all 20 runs
        // together do not finish the work and each kill lands at a different point mid-import.
        let at = full.mul_f64(0.025 + 0.025 * (seed % 1000) as f64 / 1000.0);
        let mut child = import(&root, &url).spawn().unwrap();
        std::thread::sleep(at);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL on Unix
            kills += 1;
        }
        let _ = child.wait();
    }
    assert!(kills >= 15, "most runs must really be killed mid-way ({kills} of 20; full run {full:?})");
    let st = import(&root, &url).status().unwrap();
    assert!(st.success(), "resumed import failed: {st:?}");

    let a = snapshot(&base_url).await;
    let b = snapshot(&url).await;
    assert_eq!(a.len(), b.len(), "same number of versions");
    for (k, v) in &a {
        assert_eq!(b.get(k), Some(v), "resource version {k:?} differs");
    }
}
