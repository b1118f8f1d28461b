//! SS-MIX2 storage walking and version resolution over the shared fixtures
//! (standards-jp.md §3.1–§3.3, §4).

use std::path::{Path, PathBuf};
use tobiume_gateway::ssmix2::{
    self, ConditionFlag, DataType, PlacementProblem, StorageLevel, VersionStatus, WalkError,
};

fn fixtures(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures")).join(rel)
}

#[test]
fn real_root_walk() {
    let mut w = ssmix2::walk(fixtures("ssmix2-real"));
    assert_eq!(w.level(), Some(StorageLevel::Root));
    let items: Vec<_> = w.by_ref().collect();
    assert_eq!(items.len(), 22, "19 + 3 files of 000/000/0000001");
    assert!(items.iter().all(|r| r.is_ok()));
    let skipped = w.skipped();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].path.ends_with("LICENSE"));
    // sorted, deterministic
    let paths: Vec<_> = items.iter().map(|r| r.as_ref().unwrap().path.clone()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
}

#[test]
fn real_patient_9999013_has_19_current_files() {
    let dir = fixtures("ssmix2-real/999/901/9999013");
    let mut pw = ssmix2::walk_patients(&dir);
    assert_eq!(pw.level(), Some(StorageLevel::Patient { with_prefix: true }));
    let p = pw.next().unwrap().unwrap();
    assert!(pw.next().is_none());
    assert_eq!(p.patient_id, "9999013");
    assert!(p.errors.is_empty());
    assert_eq!(p.files.len(), 19);
    for f in &p.files {
        assert!(f.is_well_placed(), "{}: {:?}", f.path.display(), f.placement);
    }
    let decisions = p.resolve();
    let current = decisions.iter().filter(|d| matches!(d.status, VersionStatus::Current { newer_invalid: false })).count();
    assert_eq!(current, 19);
    // 19 distinct data types, each with its expected MSH-9 known (OML-02/12 absent)
    let mut types: Vec<DataType> = p.files.iter().map(|f| f.name.data_type.clone()).collect();
    types.sort();
    types.dedup();
    assert_eq!(types.len(), 19);
    assert!(types.iter().all(|t| t.is_known() && t.expected_message().is_some()));
    // date-independent ones live under '-'
    for f in &p.files {
        assert_eq!(f.name.care_date.is_none(), f.name.data_type.is_date_independent(), "{}", f.name);
    }
}

#[test]
fn broken_patient_0000001() {
    let groups: Vec<_> = ssmix2::walk_patients(fixtures("ssmix2-real")).collect::<Result<_, _>>().unwrap();
    assert_eq!(groups.len(), 2);
    let p = &groups[0];
    assert_eq!(p.patient_id, "0000001");
    assert_eq!(p.files.len(), 3);
    let decisions = p.resolve();
    // The junk file 9999013_20110630_OMP-11_… under 0000001/20000401/ADT-31/: misplaced in every way.
    let junk = p.files.iter().position(|f| f.name.patient_id == "9999013").unwrap();
    assert_eq!(decisions[junk].status, VersionStatus::Misplaced);
    let probs = &p.files[junk].placement;
    assert!(probs.contains(&PlacementProblem::PatientIdMismatch { dir: "0000001".into(), name: "9999013".into() }));
    assert!(probs.contains(&PlacementProblem::CareDateMismatch { dir: "20000401".into(), name: "20110630".into() }));
    assert!(probs.contains(&PlacementProblem::DataTypeMismatch { dir: "ADT-31".into(), name: "OMP-11".into() }));
    assert!(probs.contains(&PlacementProblem::PrefixDirectories { expected: "999/901".into(), found: "000/000".into() }));
    // The OMP-11 pair has DIFFERENT order numbers (…345 flag 1, …346 flag 0): two groups, one current,
    // one deleted (no flag-1 file) — not one superseded version.
    let omp: Vec<_> = p.files.iter().enumerate().filter(|(_, f)| f.name.patient_id == "0000001").collect();
    assert_eq!(omp.len(), 2);
    for (i, f) in omp {
        assert!(f.is_well_placed());
        match f.name.condition {
            ConditionFlag::Valid => {
                assert_eq!(f.name.order_number, "123456789012345");
                assert_eq!(decisions[i].status, VersionStatus::Current { newer_invalid: false });
            }
            ConditionFlag::Invalid => {
                assert_eq!(f.name.order_number, "123456789012346");
                assert_eq!(decisions[i].status, VersionStatus::Deleted);
            }
            other => panic!("unexpected flag {other:?}"),
        }
    }
    assert_eq!(groups[1].patient_id, "9999013");
    assert_eq!(groups[1].files.len(), 19);
}

#[test]
fn twins_two_patients() {
    let groups: Vec<_> = ssmix2::walk_patients(fixtures("ssmix2-twins")).collect::<Result<_, _>>().unwrap();
    let ids: Vec<_> = groups.iter().map(|g| g.patient_id.as_str()).collect();
    assert_eq!(ids, ["0716153430", "0716154603"]);
    let total: usize = groups.iter().map(|g| g.files.len()).sum();
    assert_eq!(total, 17);
    for g in &groups {
        assert!(g.errors.is_empty());
        assert!(g.files.iter().all(|f| f.is_well_placed()), "{:?}", g.files);
        // the two PPR-01 files of 0716153430 have different order numbers → both current
        assert!(g.resolve().iter().all(|d| matches!(d.status, VersionStatus::Current { .. })));
    }
}

#[test]
fn entry_levels() {
    let base = "ssmix2-real/999/901/9999013";
    let cases = [
        ("ssmix2-real/999", StorageLevel::Prefix1, 19),
        ("ssmix2-real/999/901", StorageLevel::Prefix2, 19),
        ("ssmix2-real/999/901/9999013/20111220", StorageLevel::Date, 10),
        ("ssmix2-real/999/901/9999013/-/ADT-00", StorageLevel::DataType, 1),
        (
            "ssmix2-real/999/901/9999013/-/ADT-00/9999013_-_ADT-00_999999999999999_20111220224447339_-_1",
            StorageLevel::File,
            1,
        ),
    ];
    for (rel, level, n) in cases {
        let mut w = ssmix2::walk(fixtures(rel));
        assert_eq!(w.level(), Some(level), "{rel}");
        let files: Vec<_> = w.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(files.len(), n, "{rel}");
        assert!(files.iter().all(|f| f.is_well_placed()), "{rel}");
        let groups: Vec<_> = ssmix2::walk_patients(fixtures(rel)).collect::<Result<_, _>>().unwrap();
        assert_eq!(groups.len(), 1, "{rel}");
        assert_eq!(groups[0].patient_id, "9999013");
        assert!(groups[0].dir.ends_with(base));
    }
}

#[test]
fn missing_path_and_bad_names() {
    let items: Vec<_> = ssmix2::walk(fixtures("does-not-exist")).collect();
    assert_eq!(items.len(), 1);
    assert!(matches!(items[0], Err(WalkError::Io { .. })));

    // A copied-out patient folder (no prefix dirs) with a junk file in a data type directory.
    let tmp = tempfile::tempdir().unwrap();
    let pdir = tmp.path().join("1234567");
    std::fs::create_dir_all(pdir.join("20200101/OMP-01")).unwrap();
    std::fs::write(pdir.join("20200101/OMP-01/junk.txt"), b"x").unwrap();
    std::fs::write(
        pdir.join("20200101/OMP-01/1234567_20200101_OMP-01_000000000000001_20200101100000000_01_1"),
        b"MSH|^~\\&|\r",
    )
    .unwrap();
    std::fs::write(pdir.join("notes.md"), b"x").unwrap();
    let mut w = ssmix2::walk(&pdir);
    assert_eq!(w.level(), Some(StorageLevel::Patient { with_prefix: false }));
    let items: Vec<_> = w.by_ref().collect();
    assert_eq!(items.len(), 2);
    assert!(items[0].as_ref().is_ok_and(|f| f.is_well_placed()));
    assert!(matches!(items[1], Err(WalkError::FileName { .. })));
    assert_eq!(w.skipped().len(), 1);

    // Its date directory and a single file: prefix directories are not required outside a storage.
    let mut w = ssmix2::walk(pdir.join("20200101"));
    assert_eq!(w.level(), Some(StorageLevel::Date));
    let items: Vec<_> = w.by_ref().collect();
    assert!(items[0].as_ref().is_ok_and(|f| f.is_well_placed()), "{:?}", items[0]);
    let one = pdir.join("20200101/OMP-01/1234567_20200101_OMP-01_000000000000001_20200101100000000_01_1");
    let items: Vec<_> = ssmix2::walk(&one).collect();
    assert_eq!(items.len(), 1);
    assert!(items[0].as_ref().is_ok_and(|f| f.is_well_placed()), "{:?}", items[0]);
}

#[test]
fn synthetic_tree_walks_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let stats = ssmix2::synth::generate(tmp.path(), 5, 99).unwrap();
    assert_eq!(stats.files, 5 * ssmix2::synth::FILES_PER_PATIENT);
    let groups: Vec<_> = ssmix2::walk_patients(tmp.path()).collect::<Result<_, _>>().unwrap();
    assert_eq!(groups.len(), 5);
    for g in &groups {
        assert!(g.errors.is_empty());
        assert_eq!(g.files.len(), 19);
        assert!(g.files.iter().all(|f| f.is_well_placed()), "{:?}", g.files);
        assert!(g.resolve().iter().all(|d| d.status == VersionStatus::Current { newer_invalid: false }));
    }
}
