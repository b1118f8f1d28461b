//! Store behaviour (FHIR R4 §3.1.0 RESTful persistence semantics), run identically against SQLite (temp
//! file) and PostgreSQL (throwaway server from `common/pg.rs`).

#[path = "common/pg.rs"]
mod pg;

use serde_json::{json, Value};
use std::sync::Arc;
use tobiume_gateway::store::{
    ImportFile, ImportWrite, LedgerStatus, ResourceStore, Store, StoreError, TxEntry, TxResult, WriteOutcome,
};

/// A store on a fresh SQLite file; the TempDir must outlive the store.
pub async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display());
    (Store::connect(&url).await.expect("open sqlite store"), dir)
}

/// A store on a fresh PostgreSQL database, or `None` when PostgreSQL is unavailable locally.
pub async fn pg_store() -> Option<(Store, String)> {
    let url = pg::fresh_database_url().await?;
    Some((Store::connect(&url).await.expect("open pg store"), url))
}

/// Runs `$name(store, url_for_second_connection)` on both backends.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (s, dir) = super::sqlite_store().await;
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display());
                super::$name(&s, &url).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some((s, url)) = super::pg_store().await {
                    super::$name(&s, &url).await;
                }
            }
        }
    };
}

fn v(json: &str) -> Value {
    serde_json::from_str(json).expect("stored JSON parses")
}

/// The numbers of a JSON text, as written (outside strings), in order.
fn number_texts(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let st = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
                out.push(&s[st..i]);
            }
            _ => i += 1,
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------

both!(crud_versioning_history);
async fn crud_versioning_history(s: &Store, _url: &str) {
    // create (§3.1.0.6): server id, version 1, meta stamped
    let created = s
        .create_raw("Patient", r#"{"resourceType":"Patient","id":"client-chosen","name":[{"family":"山田"}]}"#)
        .await
        .unwrap();
    assert_eq!(created.version_id, 1);
    assert_ne!(created.id, "client-chosen");
    assert_eq!(created.id.len(), 36);
    let body = v(&created.json);
    assert_eq!(body["id"], created.id.as_str());
    assert_eq!(body["meta"]["versionId"], "1");
    assert_eq!(body["meta"]["lastUpdated"], created.last_updated.as_str());
    assert_eq!(body["name"][0]["family"], "山田");

    // read (§3.1.0.2)
    let read = s.read("Patient", &created.id).await.unwrap();
    assert_eq!(read, created);

    // update with the right If-Match (§3.1.0.4)
    let id = created.id.clone();
    let upd = format!(r#"{{"resourceType":"Patient","id":"{id}","name":[{{"family":"山田","given":["太郎"]}}]}}"#);
    let (u, outcome) = s.update_raw("Patient", &id, &upd, Some(1)).await.unwrap();
    assert_eq!((u.version_id, outcome), (2, WriteOutcome::Updated));
    assert!(u.last_updated >= created.last_updated);

    // stale If-Match → 412
    match s.update_raw("Patient", &id, &upd, Some(1)).await {
        Err(StoreError::VersionConflict { expected: 1, current: 2 }) => {}
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    // body id ≠ URL id → 400
    assert!(matches!(
        s.update_raw("Patient", &id, r#"{"resourceType":"Patient","id":"other"}"#, None).await,
        Err(StoreError::Invalid(_))
    ));
    // wrong resourceType / not JSON → 400
    assert!(matches!(s.create_raw("Patient", r#"{"resourceType":"Observation"}"#).await, Err(StoreError::Invalid(_))));
    assert!(matches!(s.create_raw("Patient", "{not json").await, Err(StoreError::Invalid(_))));
    assert!(matches!(s.read("Patient", "nope").await, Err(StoreError::NotFound(..))));

    // vread (§3.1.0.3)
    let v1 = s.vread("Patient", &id, 1).await.unwrap();
    assert_eq!(v1.json, created.json);
    assert!(matches!(s.vread("Patient", &id, 9).await, Err(StoreError::NotFound(..))));

    // delete (§3.1.0.7) → Gone; deleting again is a no-op
    assert_eq!(s.delete("Patient", &id).await.unwrap(), Some(3));
    assert!(matches!(s.read("Patient", &id).await, Err(StoreError::Gone(..))));
    assert_eq!(s.delete("Patient", &id).await.unwrap(), None);
    assert_eq!(s.delete("Patient", "never-existed").await.unwrap(), None);
    let tomb = s.vread("Patient", &id, 3).await.unwrap();
    assert!(tomb.deleted);
    assert_eq!(tomb.json, "");

    // history (§3.1.0.9): newest first, count, since
    let h = s.history(Some("Patient"), Some(&id), None, 100).await.unwrap();
    assert_eq!(h.iter().map(|r| r.version_id).collect::<Vec<_>>(), vec![3, 2, 1]);
    assert!(h[0].deleted && !h[1].deleted);
    assert_eq!(s.history(Some("Patient"), Some(&id), None, 2).await.unwrap().len(), 2);
    let later = s.history(Some("Patient"), Some(&id), Some("2999-01-01T00:00:00Z"), 10).await.unwrap();
    assert!(later.is_empty());
    let since_v2 = s.history(Some("Patient"), Some(&id), Some(&u.last_updated), 10).await.unwrap();
    assert!(since_v2.iter().all(|r| r.version_id >= 2));
    assert!(matches!(s.history(Some("Patient"), Some("nope"), None, 10).await, Err(StoreError::NotFound(..))));
    assert!(matches!(s.history(None, None, Some("garbage"), 10).await, Err(StoreError::Invalid(_))));

    // update after delete resurrects the resource (201)
    let (r4, o4) = s.update_raw("Patient", &id, &upd, None).await.unwrap();
    assert_eq!((r4.version_id, o4), (4, WriteOutcome::Created));
    // update-as-create with a client id, in a later millisecond than the resurrection above: the
    // system history below orders by lastUpdated, and same-millisecond entries by version only.
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let resurrected = time::OffsetDateTime::parse(&r4.last_updated, rfc3339).unwrap();
    while time::OffsetDateTime::now_utc() - resurrected < time::Duration::milliseconds(2) {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let (c, oc) = s.update_raw("Patient", "pat-1", r#"{"resourceType":"Patient"}"#, None).await.unwrap();
    assert_eq!((c.version_id, oc), (1, WriteOutcome::Created));
    assert_eq!(v(&c.json)["id"], "pat-1");
    // If-Match on a missing resource → 412
    assert!(matches!(
        s.update_raw("Patient", "pat-2", r#"{"resourceType":"Patient"}"#, Some(1)).await,
        Err(StoreError::VersionConflict { expected: 1, current: 0 })
    ));
    // type- and system-level history
    let all = s.history(None, None, None, 1000).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].id, "pat-1");
    assert_eq!(s.history(Some("Observation"), None, None, 10).await.unwrap().len(), 0);

    // Value-based API still works
    let cv = s.create("Observation", json!({"resourceType":"Observation","status":"final"})).await.unwrap();
    assert_eq!(v(&cv.json)["status"], "final");
    let (uv, _) = s
        .update("Observation", &cv.id, json!({"resourceType":"Observation","status":"amended"}), Some(1))
        .await
        .unwrap();
    assert_eq!(uv.version_id, 2);
}

both!(exact_decimal_text);
async fn exact_decimal_text(s: &Store, _url: &str) {
    let body = r#"{"resourceType":"Observation","status":"final","code":{"text":"Hb"},"valueQuantity":{"value":1.50,"unit":"g/dL"},"component":[{"valueQuantity":{"value":1e3}},{"valueQuantity":{"value":0.10}},{"valueQuantity":{"value":-0.0}},{"valueInteger":12345678901234567890}]}"#;
    let c = s.create_raw("Observation", body).await.unwrap();
    let read = s.read("Observation", &c.id).await.unwrap();
    let expected = body.replacen(
        r#""resourceType":"Observation","#,
        &format!(
            r#""resourceType":"Observation","id":"{}","meta":{{"versionId":"1","lastUpdated":"{}"}},"#,
            c.id, c.last_updated
        ),
        1,
    );
    assert_eq!(read.json, expected);
    assert!(read.json.contains(r#""value":1.50"#) && read.json.contains("1e3") && read.json.contains("0.10"));
    // pretty-printed input keeps its layout, too
    let pretty = "{\n  \"resourceType\": \"Observation\",\n  \"id\": \"pretty\",\n  \"valueDecimal\": 3.140\n}";
    let (p, _) = s.update_raw("Observation", "pretty", pretty, None).await.unwrap();
    let read = s.read("Observation", "pretty").await.unwrap();
    assert_eq!(read.json, p.json);
    assert!(read.json.starts_with("{\n  \"resourceType\": \"Observation\",\n  \"id\": \"pretty\",\"meta\":"));
    assert!(read.json.ends_with("\"valueDecimal\": 3.140\n}"));
    // history keeps the exact text as well
    let h = s.vread("Observation", "pretty", 1).await.unwrap();
    assert_eq!(h.json, read.json);
}

both!(official_r4_examples_round_trip);
async fn official_r4_examples_round_trip(s: &Store, _url: &str) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/standards/fhir-r4/examples");
    let mut paths: Vec<_> = std::fs::read_dir(dir).expect("examples dir").filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    let mut n = 0;
    for p in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let text = std::fs::read_to_string(p).unwrap();
        let Ok(orig) = serde_json::from_str::<Value>(&text) else { continue };
        let Some(rt) = orig["resourceType"].as_str() else { continue };
        let id = orig["id"].as_str().filter(|i| !i.is_empty() && i.len() <= 64 && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        let stored = match id {
            Some(id) => s.update_raw(rt, id, &text, None).await.map(|(r, _)| r),
            None => s.create_raw(rt, &text).await,
        }
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let back = s.read(rt, &stored.id).await.unwrap();
        assert_eq!(back.json, stored.json, "{}", p.display());
        // every number keeps its exact text, in order
        assert_eq!(number_texts(&back.json), number_texts(&text), "{}", p.display());
        // and apart from id/meta.versionId/meta.lastUpdated the content is identical
        let mut a = v(&back.json);
        let mut b = orig.clone();
        for x in [&mut a, &mut b] {
            let o = x.as_object_mut().unwrap();
            o.remove("id");
            if let Some(m) = o.get_mut("meta").and_then(Value::as_object_mut) {
                m.remove("versionId");
                m.remove("lastUpdated");
                if m.is_empty() {
                    o.remove("meta");
                }
            }
        }
        assert_eq!(a, b, "{}", p.display());
        n += 1;
    }
    assert!(n > 2000, "only {n} examples checked");
}

both!(concurrent_if_match_updates);
async fn concurrent_if_match_updates(s: &Store, url: &str) {
    // A second, independent store on the same database stands in for a second server process.
    let s2 = Store::connect(url).await.unwrap();
    let c = s.create_raw("Patient", r#"{"resourceType":"Patient"}"#).await.unwrap();
    let id = Arc::new(c.id.clone());
    let stores = [s.clone(), s2.clone()];

    fn spawn_if_match(st: Store, id: Arc<String>, i: usize) -> tokio::task::JoinHandle<bool> {
        tokio::spawn(async move {
            let cur = st.read("Patient", &id).await.unwrap();
            let body = format!(r#"{{"resourceType":"Patient","id":"{id}","active":true,"n":{i}}}"#);
            match st.update_raw("Patient", &id, &body, Some(cur.version_id)).await {
                Ok((r, WriteOutcome::Updated)) => {
                    assert_eq!(r.version_id, cur.version_id + 1);
                    true
                }
                Err(StoreError::VersionConflict { .. }) => false,
                other => panic!("unexpected {other:?}"),
            }
        })
    }
    async fn tally(hs: Vec<tokio::task::JoinHandle<bool>>) -> (usize, usize) {
        let (mut ok, mut conflict) = (0, 0);
        for h in hs {
            if h.await.unwrap() {
                ok += 1
            } else {
                conflict += 1
            }
        }
        (ok, conflict)
    }

    // Phase 1: 1,000 conflicting If-Match updates from two "processes": each succeeds or gets 412.
    const TASKS: usize = 1000;
    let hs: Vec<_> = (0..TASKS).map(|i| spawn_if_match(stores[i % 2].clone(), id.clone(), i)).collect();
    let (ok1, conflicts1) = tally(hs).await;
    assert_eq!(ok1 + conflicts1, TASKS);
    assert!(ok1 >= 1, "the first writer always holds the current version");

    // Phase 2: If-Match updates interleaved with 100 unconditional updates, none of which may be lost.
    let hs: Vec<_> = (0..200).map(|i| spawn_if_match(stores[i % 2].clone(), id.clone(), i)).collect();
    let blind: Vec<_> = (0..100)
        .map(|i| {
            let st = stores[i % 2].clone();
            let id = id.clone();
            tokio::spawn(async move {
                let body = format!(r#"{{"resourceType":"Patient","id":"{id}","blind":{i}}}"#);
                st.update_raw("Patient", &id, &body, None).await.unwrap().0.version_id
            })
        })
        .collect();
    let (ok2, conflicts2) = tally(hs).await;
    assert_eq!(ok2 + conflicts2, 200);
    let mut blind_versions = Vec::new();
    for h in blind {
        blind_versions.push(h.await.unwrap());
    }
    blind_versions.sort();
    blind_versions.dedup();
    assert_eq!(blind_versions.len(), 100, "every unconditional update got its own version");

    let final_version = s.read("Patient", &id).await.unwrap().version_id;
    assert_eq!(final_version as usize, 1 + ok1 + ok2 + 100, "every successful update made exactly one version");
    let h = s.history(Some("Patient"), Some(&id), None, 10_000).await.unwrap();
    let versions: Vec<i64> = h.iter().map(|r| r.version_id).collect();
    assert_eq!(versions, (1..=final_version).rev().collect::<Vec<_>>(), "versions 1..n without gaps");
    s2.close().await;
}

both!(transaction_is_atomic);
async fn transaction_is_atomic(s: &Store, _url: &str) {
    let (b, _) = s.update_raw("Patient", "b", r#"{"resourceType":"Patient"}"#, None).await.unwrap();
    // entry 1 fails (stale If-Match): entry 0 must roll back
    let err = s
        .transaction(vec![
            TxEntry::Create { resource_type: "Patient".into(), id: Some("a".into()), body: r#"{"resourceType":"Patient","v":1.50}"#.into() },
            TxEntry::Update { resource_type: "Patient".into(), id: "b".into(), body: r#"{"resourceType":"Patient"}"#.into(), if_match: Some(7) },
        ])
        .await
        .unwrap_err();
    assert_eq!(err.entry, Some(1));
    assert!(matches!(err.error, StoreError::VersionConflict { expected: 7, current: 1 }));
    assert!(matches!(s.read("Patient", "a").await, Err(StoreError::NotFound(..))));
    assert_eq!(s.read("Patient", "b").await.unwrap().version_id, b.version_id);
    // a bad body is reported with its index and nothing is written
    let err = s
        .transaction(vec![
            TxEntry::Delete { resource_type: "Patient".into(), id: "b".into() },
            TxEntry::Create { resource_type: "Patient".into(), id: None, body: "{oops".into() },
        ])
        .await
        .unwrap_err();
    assert_eq!(err.entry, Some(1));
    assert!(s.read("Patient", "b").await.is_ok());

    // success: create (pre-assigned id, referenced by the next entry), update, delete
    let res = s
        .transaction(vec![
            TxEntry::Create { resource_type: "Patient".into(), id: Some("p-new".into()), body: r#"{"resourceType":"Patient","v":1.50}"#.into() },
            TxEntry::Create {
                resource_type: "Observation".into(),
                id: None,
                body: json!({"resourceType":"Observation","subject":{"reference":"Patient/p-new"}}).into(),
            },
            TxEntry::Update { resource_type: "Patient".into(), id: "b".into(), body: r#"{"resourceType":"Patient","id":"b"}"#.into(), if_match: Some(1) },
            TxEntry::Delete { resource_type: "Patient".into(), id: "b".into() },
        ])
        .await
        .unwrap();
    assert_eq!(res.len(), 4);
    match &res[0] {
        TxResult::Written { resource, outcome } => {
            assert_eq!(*outcome, WriteOutcome::Created);
            assert!(resource.json.contains("1.50"));
        }
        r => panic!("{r:?}"),
    }
    assert!(matches!(&res[2], TxResult::Written { outcome: WriteOutcome::Updated, resource } if resource.version_id == 2));
    assert!(matches!(&res[3], TxResult::Deleted { version_id: Some(3) }));
    assert!(s.read("Patient", "p-new").await.unwrap().json.contains("1.50"));
    assert!(matches!(s.read("Patient", "b").await, Err(StoreError::Gone(..))));
    // creating an existing id inside a transaction fails
    let err = s
        .transaction(vec![TxEntry::Create { resource_type: "Patient".into(), id: Some("p-new".into()), body: r#"{"resourceType":"Patient"}"#.into() }])
        .await
        .unwrap_err();
    assert!(matches!(err.error, StoreError::Invalid(_)));
}

both!(import_is_idempotent_and_atomic);
async fn import_is_idempotent_and_atomic(s: &Store, _url: &str) {
    let pat = json!({"resourceType":"Patient","id":"p1","name":[{"family":"佐藤"}]});
    let obs = json!({"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"}});
    let writes = vec![
        ("Patient".to_string(), "p1".to_string(), Some(pat.clone())),
        ("Observation".to_string(), "o1".to_string(), Some(obs.clone())),
    ];
    assert!(s.ledger_get("2024/01/x.hl7").await.unwrap().is_none());
    let r = s.import_file_atomic("2024/01/x.hl7", "aaa", writes.clone()).await.unwrap();
    assert_eq!((r.created, r.updated, r.unchanged), (2, 0, 0));
    let l = s.ledger_get("2024/01/x.hl7").await.unwrap().unwrap();
    assert_eq!((l.content_sha256.as_str(), l.status, l.error.clone()), ("aaa", LedgerStatus::Done, None));
    // re-import: nothing changes
    let r = s.import_file_atomic("2024/01/x.hl7", "aaa", writes.clone()).await.unwrap();
    assert_eq!((r.created, r.updated, r.unchanged), (0, 0, 2));
    assert_eq!(s.read("Patient", "p1").await.unwrap().version_id, 1);
    assert_eq!(s.history(None, None, None, 100).await.unwrap().len(), 2);
    // changed content → one new version; delete → tombstone
    let mut pat2 = pat.clone();
    pat2["gender"] = json!("female");
    let r = s
        .import_file_atomic(
            "2024/01/y.hl7",
            "bbb",
            vec![("Patient".into(), "p1".into(), Some(pat2)), ("Observation".into(), "o1".into(), None)],
        )
        .await
        .unwrap();
    assert_eq!((r.updated, r.deleted), (1, 1));
    assert_eq!(s.read("Patient", "p1").await.unwrap().version_id, 2);
    assert!(matches!(s.read("Observation", "o1").await, Err(StoreError::Gone(..))));
    // a bad resource aborts the whole file: no resource, no ledger row
    let bad = s
        .import_file_atomic(
            "2024/01/z.hl7",
            "ccc",
            vec![
                ("Patient".into(), "p9".into(), Some(json!({"resourceType":"Patient"}))),
                ("Patient".into(), "p10".into(), Some(json!({"resourceType":"Observation"}))),
            ],
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))));
    assert!(s.ledger_get("2024/01/z.hl7").await.unwrap().is_none());
    assert!(matches!(s.read("Patient", "p9").await, Err(StoreError::NotFound(..))));
    // failures can be recorded
    s.ledger_put("2024/01/z.hl7", "ccc", LedgerStatus::Failed, Some("mapping error: PID-5 missing")).await.unwrap();
    let l = s.ledger_get("2024/01/z.hl7").await.unwrap().unwrap();
    assert_eq!(l.status, LedgerStatus::Failed);
    assert_eq!(l.error.as_deref(), Some("mapping error: PID-5 missing"));
    // import_upsert with caller hash
    assert_eq!(s.import_upsert("Patient", "u1", json!({"resourceType":"Patient"}), "h1").await.unwrap(), WriteOutcome::Created);
    assert_eq!(s.import_upsert("Patient", "u1", json!({"resourceType":"Patient"}), "h1").await.unwrap(), WriteOutcome::Unchanged);
    assert_eq!(s.import_upsert("Patient", "u1", json!({"resourceType":"Patient","active":true}), "h2").await.unwrap(), WriteOutcome::Updated);
    // batch of files, raw bodies keep decimals; a patient written twice in one batch ends at the last content
    let files: Vec<ImportFile> = (0..50)
        .map(|i| ImportFile {
            path: format!("batch/{i}.hl7"),
            content_sha256: format!("h{i}"),
            writes: vec![
                ImportWrite {
                    resource_type: "Observation".into(),
                    id: format!("bo{i}"),
                    body: Some(format!(r#"{{"resourceType":"Observation","valueQuantity":{{"value":{i}.50}}}}"#).into()),
                },
                ImportWrite { resource_type: "Patient".into(), id: "same".into(), body: Some(json!({"resourceType":"Patient","n":i}).into()) },
            ],
        })
        .collect();
    let r = s.import_files_batch(files).await.unwrap();
    assert_eq!(r.created, 51);
    assert_eq!(r.updated, 49);
    assert!(s.read("Observation", "bo7").await.unwrap().json.contains(r#""value":7.50"#));
    assert_eq!(v(&s.read("Patient", "same").await.unwrap().json)["n"], 49);
    assert_eq!(s.ledger_get("batch/49.hl7").await.unwrap().unwrap().content_sha256, "h49");
}
