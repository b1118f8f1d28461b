//! The parallel importer (`import ssmix2 --jobs N`) writes exactly the store a single-worker import
//! writes: same resources with the same row ids, versions, content and history, the same search-index
//! rows and the same import ledger — only the `lastUpdated` instants differ. The storage mixes synthetic
//! patients with the real sample (superseded and deleted versions, a broken file that is quarantined), and
//! small batches make batch boundaries fall inside patients.

use std::path::Path;
use tobiume_gateway::import::{import_ssmix2, ImportOptions};
use tobiume_gateway::store::Store;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Every table the importer writes, rendered row by row in a fixed order (instants removed).
fn dump(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let queries = [
        "SELECT rid, rtype, id, version, deleted, content_hash, json_remove(json, '$.meta.lastUpdated') \
         FROM resources ORDER BY rid",
        "SELECT rtype, id, version, deleted, json_remove(json, '$.meta.lastUpdated') FROM resource_history \
         ORDER BY rtype, id, version",
        "SELECT * FROM search_param ORDER BY pid",
        "SELECT * FROM token_system ORDER BY sid",
        "SELECT * FROM idx_token ORDER BY 1, 2, 3, 4, 5",
        "SELECT * FROM idx_string ORDER BY 1, 2, 3, 4",
        "SELECT * FROM idx_date ORDER BY 1, 2, 3, 4",
        "SELECT * FROM idx_reference ORDER BY 1, 2, 3, 4, 5",
        "SELECT * FROM idx_quantity ORDER BY 1, 2, 3, 4, 5, 6, 7, 8",
        "SELECT * FROM idx_number ORDER BY 1, 2, 3, 4, 5",
        "SELECT * FROM idx_uri ORDER BY 1, 2, 3",
        "SELECT path, content_sha256, status, error FROM import_files ORDER BY path",
    ];
    let mut out = Vec::new();
    for q in queries {
        let mut st = c.prepare(q).unwrap();
        let n = st.column_count();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let cols: Vec<String> = (0..n).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect();
            out.push(format!("{q}: {}", cols.join(" | ")));
        }
    }
    out
}

async fn import(root: &Path, db: &Path, jobs: usize) -> tobiume_gateway::import::ImportReport {
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", db.display())).await.unwrap();
    let opts = ImportOptions {
        quarantine: Some(db.with_extension("quarantine")),
        batch_files: 7,
        jobs,
        ..ImportOptions::default()
    };
    let r = import_ssmix2(&store, root, &opts, |_| {}).await.unwrap();
    store.close().await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_import_writes_the_store_a_single_worker_import_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    tobiume_gateway::ssmix2::synth::generate(&root, 24, 11).unwrap();
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/ssmix2-real");
    for top in ["000", "999"] {
        copy_tree(&real.join(top), &root.join(top));
    }

    let one = dir.path().join("one.db");
    let many = dir.path().join("many.db");
    let r1 = import(&root, &one, 1).await;
    let r4 = import(&root, &many, 4).await;
    assert_eq!(r1.conversion, r4.conversion);
    assert_eq!(r1.store, r4.store);
    assert!(r1.conversion.failed >= 1 && r1.conversion.deleted >= 1, "{:?}", r1.conversion);
    assert!(r1.store.created > 24 * 10, "{:?}", r1.store);
    assert!(r1.index_build.is_some() && r4.index_build.is_some(), "an import into an empty store is a bulk load");
    let (d1, d4) = (dump(&one), dump(&many));
    assert!(d1.len() > 1000, "the dump covers the store ({} rows)", d1.len());
    if let Some(i) = (0..d1.len().max(d4.len())).find(|&i| d1.get(i) != d4.get(i)) {
        panic!("stores differ at row {i}:\n jobs=1: {:?}\n jobs=4: {:?}", d1.get(i), d4.get(i));
    }

    // The general sqlx write path (TOBIUME_IMPORT_WRITER=sqlx) writes the same store as the SQLite
    // import writer (rusqlite, cached statements), which the two imports above used.
    // SAFETY: the only test of this binary; no other thread reads the environment concurrently.
    unsafe { std::env::set_var("TOBIUME_IMPORT_WRITER", "sqlx") };
    let via_sqlx = dir.path().join("sqlx.db");
    let rs = import(&root, &via_sqlx, 2).await;
    unsafe { std::env::remove_var("TOBIUME_IMPORT_WRITER") };
    assert_eq!(rs.store, r1.store);
    let ds = dump(&via_sqlx);
    if let Some(i) = (0..d1.len().max(ds.len())).find(|&i| d1.get(i) != ds.get(i)) {
        panic!("stores differ at row {i}:\n bulk writer: {:?}\n sqlx: {:?}", d1.get(i), ds.get(i));
    }

    // Re-import with several workers: every file is skipped by its ledger hash, nothing changes.
    let again = import(&root, &many, 3).await;
    assert_eq!(again.store.created + again.store.updated + again.store.deleted, 0, "{:?}", again.store);
    assert_eq!(again.unchanged_files + again.conversion.failed, again.conversion.files);
    assert_eq!(again.index_build, None, "a re-import into a filled store is not a bulk load: no index rebuild");
    let d4b = dump(&many);
    assert!(d4 == d4b, "a re-import changed the store");
}
