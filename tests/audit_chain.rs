//! Tamper-evident audit trail (issue 6): every interaction leaves a hash-chained AuditEvent; changing,
//! deleting or reordering any row — or editing an indexed column — makes `audit verify` fail naming that
//! record (library and the real binary); denials are audited; concurrent reads are group-committed into
//! one linear chain; writes commit their event in their own transaction; a read whose event cannot be
//! written is answered 500 without data; the retention purge keeps the chain verifiable. SQLite and
//! PostgreSQL.

#[macro_use]
#[path = "common/api_support.rs"]
mod support;

use std::sync::Arc;

use axum::body::Body;
use serde_json::json;
use support::{App, Db, Resp};
use tobiume_gateway::audit::{self, verify};
use tobiume_gateway::auth::dev::DevTokenRequest;

/// A clinician at `facility` (dev token, scope `user/*.cruds`, purpose TREAT).
fn principal(facility: &str) -> DevTokenRequest {
    DevTokenRequest {
        subject: format!("user-at-{facility}"),
        client_id: "test-client".into(),
        scope: "user/*.cruds".into(),
        facility: Some(facility.into()),
        purpose_of_use: Some("TREAT".into()),
        ..DevTokenRequest::default()
    }
}

async fn get_as(app: &App, who: &DevTokenRequest, uri: &str) -> Resp {
    app.send_as(Some(&support::token(who.clone())), "GET", uri, &[], Body::empty()).await
}

/// An app with Patient `p1` (attends `clinic-a`) and `p2` (no relation), and some audited traffic.
async fn app_with_trail(db: Db) -> App {
    let app = support::app(db).await;
    for (id, org) in [("p1", Some("clinic-a")), ("p2", None)] {
        let mut p = json!({"resourceType": "Patient", "id": id, "name": [{"family": "山田", "given": ["太郎"]}], "birthDate": "1950-01-02"});
        if let Some(o) = org {
            p["managingOrganization"] = json!({"reference": format!("Organization/{o}")});
        }
        let r = app.json("PUT", &format!("/fhir/Patient/{id}"), &p.to_string()).await;
        assert!(r.status.is_success(), "{}", r.body);
    }
    let a = principal("clinic-a");
    assert_eq!(get_as(&app, &a, "/fhir/Patient/p1").await.status, 200);
    assert_eq!(get_as(&app, &a, "/fhir/Patient/p2").await.status, 403);
    assert_eq!(get_as(&app, &a, "/fhir/Patient?name=山田").await.status, 200);
    assert_eq!(get_as(&app, &a, "/fhir/Patient/p1/_history").await.status, 200);
    app
}

/// Runs raw SQL on the test database (the audit guards dropped first: tampering bypasses them).
async fn tamper(app: &App, db: Db, statements: &[&str]) {
    match db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
            for s in ["DROP TRIGGER IF EXISTS audit_event_no_update", "DROP TRIGGER IF EXISTS audit_event_no_delete"]
                .iter()
                .chain(statements)
            {
                sqlx::query(sqlx::AssertSqlSafe(s.to_string())).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
            for s in [
                "DROP TRIGGER IF EXISTS audit_event_no_update ON audit_event",
                "DROP TRIGGER IF EXISTS audit_event_no_delete ON audit_event",
            ]
            .iter()
            .chain(statements)
            {
                sqlx::query(sqlx::AssertSqlSafe(s.to_string())).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
    }
}

/// The whole trail, oldest first (up to 100 rows), and the number of rows.
async fn trail(app: &App) -> (Vec<tobiume_gateway::store::audit::AuditRow>, u64) {
    let all = tobiume_gateway::store::audit::AuditFilter { limit: 100, ascending: true, ..Default::default() };
    app.store.audit_search(&all).await.unwrap()
}

async fn broken_seq(app: &App) -> Option<i64> {
    verify(&app.store).await.unwrap().broken.map(|b| b.seq)
}

both_db!(every_interaction_is_chained_and_verifies);
async fn every_interaction_is_chained_and_verifies(db: Db) {
    let app = app_with_trail(db).await;
    let r = verify(&app.store).await.unwrap();
    assert!(r.broken.is_none(), "{r:?}");
    // 2 writes + 4 reads
    assert_eq!(r.records, 6, "{r:?}");
    let (rows, total) = trail(&app).await;
    assert_eq!(total, 6);
    let ev: Vec<serde_json::Value> = rows.iter().map(|r| serde_json::from_str(&r.event_json()).unwrap()).collect();
    // writes: BALP PatientUpdate/Create in the write's transaction
    assert_eq!(ev[0]["action"], "U");
    assert!(ev[0]["meta"]["profile"][0].as_str().unwrap().ends_with("IHE.BasicAudit.PatientUpdate"));
    // the read: caller, facility, purpose, jti, patient, request id
    let read = &ev[2];
    assert_eq!(read["subtype"][0]["code"], "read");
    assert_eq!(read["outcome"], "0");
    assert_eq!(read["agent"][0]["who"]["identifier"]["value"], "user-at-clinic-a");
    assert!(read["agent"][0]["policy"][0].as_str().is_some_and(|j| !j.is_empty()), "token jti as policy");
    assert_eq!(read["agent"][1]["who"]["identifier"]["value"], "test-client");
    assert_eq!(read["agent"][0]["purposeOfUse"][0]["coding"][0]["code"], "TREAT");
    assert_eq!(read["agent"][2]["who"]["reference"], "Organization/clinic-a");
    assert_eq!(read["entity"][0]["what"]["reference"], "Patient/p1");
    assert!(read["entity"].as_array().unwrap().iter().any(|e| e["type"]["code"] == "XrequestId"));
    // the denial: outcome 4 with the reason
    let denied = &ev[3];
    assert_eq!(denied["outcome"], "4");
    assert!(denied["outcomeDesc"].as_str().unwrap().contains("HTTP 403: no consent"), "{denied}");
    assert_eq!(denied["entity"][0]["what"]["reference"], "Patient/p2");
    // the search: query recorded (base64), only the permitted patient disclosed
    let search = &ev[4];
    assert_eq!(search["subtype"][0]["code"], "search-type");
    assert!(search["entity"].as_array().unwrap().iter().any(|e| e["query"].is_string()));
    assert_eq!(rows[4].patients, " p1 ");
    // chain links
    for w in rows.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].entry_hash);
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
    // clients cannot write the trail (the refusal itself is audited)
    let fake = json!({"resourceType": "AuditEvent", "id": "3", "type": {"code": "rest"}, "recorded": "2026-01-01T00:00:00Z", "agent": [], "source": {"observer": {"display": "x"}}});
    app.json("PUT", "/fhir/AuditEvent/3", &fake.to_string()).await.assert_outcome(403);
    app.json("POST", "/fhir/AuditEvent", &fake.to_string()).await.assert_outcome(403);
    let r = verify(&app.store).await.unwrap();
    assert!(r.broken.is_none() && r.records == 8, "{r:?}");
}

both_db!(tampering_is_found_and_named);
async fn tampering_is_found_and_named(db: Db) {
    // changed content
    let app = app_with_trail(db).await;
    // (the compact entry records the HTTP status the outcome is derived from)
    tamper(&app, db, &["UPDATE audit_event SET json = replace(json, '\"st\":200', '\"st\":403') WHERE seq = 3"]).await;
    assert_eq!(broken_seq(&app).await, Some(3), "changed row");
    // a changed patient in the compact entry, with the row's own hash recomputed: the next row's link breaks
    let app = app_with_trail(db).await;
    let (rows, _) = app
        .store
        .audit_search(&tobiume_gateway::store::audit::AuditFilter { seq: Some(3), limit: 1, ..Default::default() })
        .await
        .unwrap();
    let forged = rows[0].json.replace("\"pat\":[\"p1\"]", "\"pat\":[\"p9\"]");
    assert_ne!(forged, rows[0].json, "{}", rows[0].json);
    let hash = tobiume_gateway::store::audit::chain_hash(&rows[0].prev_hash, &forged);
    tamper(
        &app,
        db,
        &[&format!(
            "UPDATE audit_event SET json = '{}', entry_hash = '{hash}', patients = ' p9 ' WHERE seq = 3",
            forged.replace('\'', "''")
        )],
    )
    .await;
    assert_eq!(broken_seq(&app).await, Some(4), "re-hashed row breaks the next link");
    // an indexed column edited (hides the event from AuditEvent?patient=)
    let app = app_with_trail(db).await;
    tamper(&app, db, &["UPDATE audit_event SET patients = ' ' WHERE seq = 4"]).await;
    assert_eq!(broken_seq(&app).await, Some(4), "indexed column");
    // deleted row in the middle, the first row, the last row
    for (seq, what) in [(2, "middle"), (1, "first"), (6, "last")] {
        let app = app_with_trail(db).await;
        tamper(&app, db, &[&format!("DELETE FROM audit_event WHERE seq = {seq}")]).await;
        assert_eq!(broken_seq(&app).await, Some(seq), "deleted {what} row");
    }
    // reordered rows
    let app = app_with_trail(db).await;
    tamper(
        &app,
        db,
        &[
            "UPDATE audit_event SET seq = -1 WHERE seq = 3",
            "UPDATE audit_event SET seq = 3 WHERE seq = 4",
            "UPDATE audit_event SET seq = 4 WHERE seq = -1",
        ],
    )
    .await;
    assert_eq!(broken_seq(&app).await, Some(3), "reordered rows");
    // the command line names the row and exits 1; an intact chain exits 0
    let bin = env!("CARGO_BIN_EXE_tobiume-gateway");
    let out = std::process::Command::new(bin).args(["audit", "verify", "--database", &app.db.url]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BROKEN: record seq 3 (AuditEvent/3)"), "{text}");
    let intact = app_with_trail(db).await;
    let out = std::process::Command::new(bin).args(["audit", "verify", "--database", &intact.db.url]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    // the guards refuse ordinary updates and deletes
    let res = match db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&intact.db.url).await.unwrap();
            sqlx::query("DELETE FROM audit_event WHERE seq = 1").execute(&pool).await.map(|_| ())
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&intact.db.url).await.unwrap();
            sqlx::query("UPDATE audit_event SET outcome = '8' WHERE seq = 1").execute(&pool).await.map(|_| ())
        }
    };
    assert!(res.unwrap_err().to_string().contains("append-only"));
}

both_db!(concurrent_reads_are_group_committed_into_one_chain);
async fn concurrent_reads_are_group_committed_into_one_chain(db: Db) {
    let app = Arc::new(app_with_trail(db).await);
    let a = principal("clinic-a");
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let app = app.clone();
        let a = a.clone();
        tasks.push(tokio::spawn(async move { get_as(&app, &a, "/fhir/Patient/p1").await.status.as_u16() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let r = verify(&app.store).await.unwrap();
    assert!(r.broken.is_none(), "{r:?}");
    assert_eq!(r.records, 206);
}

both_db!(no_audit_no_answer);
async fn no_audit_no_answer(db: Db) {
    let app = app_with_trail(db).await;
    let fail = match db {
        Db::Sqlite => vec!["CREATE TRIGGER audit_down BEFORE INSERT ON audit_event BEGIN SELECT RAISE(ABORT, 'audit storage read-only'); END"],
        Db::Postgres => vec![
            "CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit storage read-only'; END $$",
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_event FOR EACH ROW EXECUTE FUNCTION audit_down()",
        ],
    };
    tamper(&app, db, &fail).await;
    let a = principal("clinic-a");
    let r = get_as(&app, &a, "/fhir/Patient/p1").await;
    r.assert_outcome(500);
    assert!(!r.body.contains("山田") && !r.body.contains("1950"), "data served without audit: {}", r.body);
    let r = get_as(&app, &a, "/fhir/Patient?name=山田").await;
    r.assert_outcome(500);
    assert!(!r.body.contains("山田"));
    // a write whose event cannot be written is not committed either
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}});
    let r = app.json("PUT", "/fhir/Observation/o1", &obs.to_string()).await;
    assert_eq!(r.status, 500, "{}", r.body);
    let drop = match db {
        Db::Sqlite => "DROP TRIGGER audit_down",
        Db::Postgres => "DROP TRIGGER audit_down ON audit_event",
    };
    tamper(&app, db, &[drop]).await;
    assert_eq!(app.get("/fhir/Observation/o1").await.status, 404, "write committed without its audit event");
    assert!(verify(&app.store).await.unwrap().broken.is_none());
}

both_db!(retention_purge_keeps_the_chain_verifiable);
async fn retention_purge_keeps_the_chain_verifiable(db: Db) {
    let app = app_with_trail(db).await;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let cutoff = audit::now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let a = principal("clinic-a");
    for _ in 0..3 {
        assert_eq!(get_as(&app, &a, "/fhir/Patient/p1").await.status, 200);
    }
    // "now" one day after the cutoff with a retention of one day: the first 6 records go
    let purged = audit::purge(&app.store, 1, cutoff + 86_400_000).await.unwrap();
    assert_eq!(purged, 6);
    let r = verify(&app.store).await.unwrap();
    assert!(r.broken.is_none(), "{r:?}");
    assert_eq!(r.range, Some((7, 10)), "3 reads + the checkpoint");
    // nothing more to purge
    assert_eq!(audit::purge(&app.store, 1, cutoff + 86_400_000).await.unwrap(), 0);
    // removing the oldest remaining record is still found
    tamper(&app, db, &["DELETE FROM audit_event WHERE seq = 7"]).await;
    assert_eq!(broken_seq(&app).await, Some(7));
}

both_db!(failed_authentication_and_scope_refusals_are_audited);
async fn failed_authentication_and_scope_refusals_are_audited(db: Db) {
    let app = app_with_trail(db).await;
    // no token, a forged token
    app.send_as(None, "GET", "/fhir/Patient/p1", &[], Body::empty()).await.assert_outcome(401);
    app.send_as(Some("eyJhbGciOiJFUzI1NiJ9.e30.AAAA"), "GET", "/fhir/Patient/p1", &[], Body::empty()).await.assert_outcome(401);
    // a valid token without the scope for Observation
    let mut narrow = principal("clinic-a");
    narrow.scope = "user/Patient.rs".into();
    get_as(&app, &narrow, "/fhir/Observation?subject=Patient/p1").await.assert_outcome(403);
    // the public metadata is not an access to data: not audited
    assert_eq!(app.send_as(None, "GET", "/fhir/metadata", &[], Body::empty()).await.status, 200);
    let (rows, _) = trail(&app).await;
    assert_eq!(rows.len(), 9, "6 + 2 failed authentications + 1 scope refusal");
    let ev: Vec<serde_json::Value> = rows[6..].iter().map(|r| serde_json::from_str(&r.event_json()).unwrap()).collect();
    for e in &ev[..2] {
        assert_eq!(e["type"]["code"], "110114", "{e}");
        assert_eq!(e["subtype"][0]["code"], "110122");
        assert_eq!(e["outcome"], "4");
        assert!(e["outcomeDesc"].as_str().unwrap().starts_with("HTTP 401"), "{e}");
    }
    assert_eq!(ev[2]["outcome"], "4");
    assert!(ev[2]["outcomeDesc"].as_str().unwrap().contains("scope"), "{}", ev[2]);
    assert_eq!(ev[2]["agent"][0]["who"]["identifier"]["value"], "user-at-clinic-a", "the refused caller is named");
    assert!(verify(&app.store).await.unwrap().broken.is_none());
}

both_db!(format_1_rows_and_compact_entries_verify_in_one_chain);
/// Stores written before the compact entry (format 1: the full canonical AuditEvent per row) keep
/// verifying after the upgrade, with format-2 rows appended after them; both render as AuditEvents; a
/// change to either kind is named.
async fn format_1_rows_and_compact_entries_verify_in_one_chain(db: Db) {
    use tobiume_gateway::audit::event::{legacy_record, record, Interaction};
    let app = support::app(db).await;
    let read = |p: &str| Interaction {
        code: "read".into(),
        action: "R",
        status: 200,
        patients: vec![p.into()],
        resources: vec![format!("Patient/{p}")],
        request_id: Some(format!("rid-{p}")),
        ..Default::default()
    };
    let old: Vec<_> = ["a", "b", "c"].iter().map(|p| legacy_record(None, &read(p), audit::now_ms())).collect();
    let out = app.store.audit_append(&old, &[None, None, None]).await.unwrap();
    assert_eq!(out.seqs, vec![Some(1), Some(2), Some(3)]);
    let new: Vec<_> = ["d", "e"].iter().map(|p| record(None, &read(p), audit::now_ms())).collect();
    app.store.audit_append(&new, &[None, None]).await.unwrap();
    let r = verify(&app.store).await.unwrap();
    assert!(r.broken.is_none() && r.records == 5, "{r:?}");
    let (rows, _) = trail(&app).await;
    assert!(rows[0].json.contains("\"resourceType\":\"AuditEvent\""), "format 1 stored: {}", rows[0].json);
    assert!(rows[3].json.starts_with("{\"id\":\"4\",\"v\":2,"), "format 2 stored: {}", rows[3].json);
    assert!(rows[3].json.len() * 3 < rows[0].json.len(), "{} vs {}", rows[3].json.len(), rows[0].json.len());
    for (i, r) in rows.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(&r.event_json()).unwrap();
        assert_eq!(v["id"], (i + 1).to_string());
        assert_eq!(v["resourceType"], "AuditEvent");
        assert_eq!(v["entity"][0]["what"]["reference"], format!("Patient/{}", ["a", "b", "c", "d", "e"][i]));
        assert_eq!(v["subtype"][0]["code"], "read");
    }
    // the same interaction renders identically from either format (apart from id and time)
    let strip = |s: String| {
        let mut v: serde_json::Value = serde_json::from_str(&s).unwrap();
        v.as_object_mut().unwrap().remove("id");
        v.as_object_mut().unwrap().remove("recorded");
        v["entity"][0]["what"]["reference"] = json!("x");
        v["entity"][1]["what"]["identifier"]["value"] = json!("x");
        v
    };
    assert_eq!(strip(rows[0].event_json()), strip(rows[3].event_json()));
    // the REST review shows the rendered events (secretariat only)
    let mut sec = principal("network-office");
    sec.facility = None;
    sec.subject = "secretariat-1".into();
    sec.roles.push("secretariat".into());
    let r = get_as(&app, &sec, "/fhir/AuditEvent?patient=Patient/d").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    assert_eq!(b["entry"][0]["resource"]["id"], "4", "{b}");
    assert!(b["entry"][0]["resource"]["meta"]["profile"][0].as_str().unwrap().ends_with("IHE.BasicAudit.PatientRead"));
    let r = get_as(&app, &sec, "/fhir/AuditEvent/2").await;
    assert_eq!(r.json()["entity"][0]["what"]["reference"], "Patient/b");
    // tampering with a format-1 row and with a compact row is named
    tamper(&app, db, &["UPDATE audit_event SET json = replace(json, 'Patient/b', 'Patient/x') WHERE seq = 2"]).await;
    assert_eq!(broken_seq(&app).await, Some(2));
    tamper(&app, db, &["UPDATE audit_event SET json = replace(json, 'Patient/x', 'Patient/b') WHERE seq = 2"]).await;
    assert!(broken_seq(&app).await.is_none(), "restored");
    tamper(&app, db, &["UPDATE audit_event SET json = replace(json, 'rid-e', 'rid-z') WHERE seq = 5"]).await;
    assert_eq!(broken_seq(&app).await, Some(5));
}

both_db!(concurrent_appends_are_committed_exactly_once_and_durable_on_return);
/// Group commit under concurrent load (`store::sqlite_append`: batches, commit delay under load): 300
/// records appended from many tasks at once are each committed exactly once (distinct seqs, contiguous
/// after the trail's head), each is visible to a separate connection as soon as its append returned (the
/// durability point the read path waits for: the commit), and the chain verifies.
async fn concurrent_appends_are_committed_exactly_once_and_durable_on_return(db: Db) {
    let app = app_with_trail(db).await;
    let before = verify(&app.store).await.unwrap().records;
    let auditor = Arc::new(audit::Auditor::new(app.store.clone(), audit::AuditConfig::default()));
    let checker = Checker::open(db, &app.db.url).await;
    let mut tasks = Vec::new();
    for i in 0..300u32 {
        let auditor = auditor.clone();
        let checker = checker.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                tokio::task::yield_now().await;
            }
            let interaction = audit::Interaction {
                code: "read".into(),
                action: "R",
                status: 200,
                resources: vec![format!("Patient/t{i}")],
                ..Default::default()
            };
            let record = audit::event::record(None, &interaction, audit::now_ms());
            let seq = match auditor.append(record, None).await.unwrap() {
                audit::Ack::Written { seq, .. } => seq,
                other => panic!("not written: {other:?}"),
            };
            (seq, checker.rows(seq).await)
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        let (seq, visible) = t.await.unwrap();
        assert_eq!(visible, 1, "record {seq} not visible to another connection after its append returned");
        seqs.push(seq);
    }
    seqs.sort_unstable();
    let expected: Vec<i64> = (before as i64 + 1..=before as i64 + 300).collect();
    assert_eq!(seqs, expected, "every record once, no gap, after the existing trail");
    // a lone append after the burst (the previous batch had company: it may wait the delay once)
    let interaction = audit::Interaction { code: "read".into(), action: "R", status: 200, ..Default::default() };
    let ack = auditor.append(audit::event::record(None, &interaction, audit::now_ms()), None).await.unwrap();
    assert!(matches!(ack, audit::Ack::Written { seq, .. } if seq == before as i64 + 301), "{ack:?}");
    assert_eq!(checker.rows(before as i64 + 301).await, 1);
    let r = verify(&app.store).await.unwrap();
    assert!(r.broken.is_none(), "{r:?}");
    assert_eq!(r.records, before + 301);
}

/// WAL checkpoints run on the appender's checkpointer thread, not inside its commits
/// (`store::sqlite_append`): appended records reach the database file itself shortly after their commit,
/// although the appender connection never checkpoints (`wal_autocheckpoint = 0`) and no data write
/// follows. Read through an `immutable` connection, which ignores the WAL and sees the database file only.
/// Polls up to 20 s: the checkpointer waits 100 ms after a commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_records_are_checkpointed_into_the_database_file() {
    let app = app_with_trail(Db::Sqlite).await;
    let auditor = audit::Auditor::new(app.store.clone(), audit::AuditConfig::default());
    let mut last = 0;
    for i in 0..50u32 {
        let interaction = audit::Interaction {
            code: "read".into(),
            action: "R",
            status: 200,
            resources: vec![format!("Patient/c{i}")],
            ..Default::default()
        };
        match auditor.append(audit::event::record(None, &interaction, audit::now_ms()), None).await.unwrap() {
            audit::Ack::Written { seq, .. } => last = seq,
            other => panic!("not written: {other:?}"),
        }
    }
    let path = app.db.url.trim_start_matches("sqlite://").split('?').next().unwrap().to_string();
    let uri = format!("file:{path}?immutable=1");
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let mut in_file = None;
    for _ in 0..200 {
        // a checkpoint copying pages right now can make the file read as inconsistent: try again
        in_file = rusqlite::Connection::open_with_flags(&uri, flags)
            .and_then(|c| c.query_row("SELECT max(seq) FROM audit_event", [], |r| r.get::<_, Option<i64>>(0)))
            .ok()
            .flatten();
        if in_file == Some(last) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(in_file, Some(last), "the last appended record never reached the database file");
}

/// A small pool of its own on the test database (not the store's connections).
#[derive(Clone)]
enum Checker {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Checker {
    async fn open(db: Db, url: &str) -> Checker {
        match db {
            Db::Sqlite => Checker::Sqlite(sqlx::sqlite::SqlitePoolOptions::new().max_connections(4).connect(url).await.unwrap()),
            Db::Postgres => Checker::Postgres(sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(url).await.unwrap()),
        }
    }

    /// Committed rows with `seq` in `audit_event`.
    async fn rows(&self, seq: i64) -> i64 {
        match self {
            Checker::Sqlite(p) => {
                sqlx::query_scalar("SELECT count(*) FROM audit_event WHERE seq = ?").bind(seq).fetch_one(p).await.unwrap()
            }
            Checker::Postgres(p) => {
                sqlx::query_scalar("SELECT count(*) FROM audit_event WHERE seq = $1").bind(seq).fetch_one(p).await.unwrap()
            }
        }
    }
}

both_db!(events_name_the_caller_also_without_a_data_access);
/// The authentication layer puts the caller into the request's audit scope itself (no per-route layer):
/// requests answered before any data access — an id that is not a FHIR id (404 from the handler), a URL
/// with no endpoint (404 from the router's fallback) — are audited with their caller, and the chain still
/// verifies.
async fn events_name_the_caller_also_without_a_data_access(db: Db) {
    let app = app_with_trail(db).await;
    let a = principal("clinic-a");
    get_as(&app, &a, "/fhir/Patient/not*an*id").await.assert_outcome(404);
    get_as(&app, &a, "/fhir/Patient/p1/no-such-endpoint/x/y").await.assert_outcome(404);
    let (rows, _) = trail(&app).await;
    assert_eq!(rows.len(), 8, "6 + the two 404s");
    for r in &rows[6..] {
        let e: serde_json::Value = serde_json::from_str(&r.event_json()).unwrap();
        assert_eq!(e["agent"][0]["who"]["identifier"]["value"], "user-at-clinic-a", "{e}");
        assert_eq!(e["agent"][1]["who"]["identifier"]["value"], "test-client", "{e}");
    }
    assert!(verify(&app.store).await.unwrap().broken.is_none());
}
