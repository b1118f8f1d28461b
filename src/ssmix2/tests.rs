use super::*;

#[test]
fn parses_sample_names() {
    let n = FileName::parse("9999013_20110701_OMP-01_000000011000185_20110701224603984_01_1").unwrap();
    assert_eq!(n.patient_id, "9999013");
    assert_eq!(n.care_date.as_deref(), Some("20110701"));
    assert_eq!(n.data_type, DataType::Omp01);
    assert_eq!(n.order_number, "000000011000185");
    assert_eq!(n.timestamp, "20110701224603984");
    assert_eq!(n.department.as_deref(), Some("01"));
    assert_eq!(n.condition, ConditionFlag::Valid);
    assert_eq!(n.to_string(), "9999013_20110701_OMP-01_000000011000185_20110701224603984_01_1");
    let n = FileName::parse("9999013_-_ADT-00_999999999999999_20111220224447339_-_1").unwrap();
    assert_eq!(n.care_date, None);
    assert_eq!(n.department, None);
    assert_eq!(n.jami_id_stem(), "9999013.-.ADT-00.999999999999999.20111220224447339");
}

#[test]
fn precise_name_errors() {
    use FileNamePart as P;
    let part = |s: &str| match FileName::parse(s) {
        Err(FileNameError::Part { part, .. }) => Some(part),
        _ => None,
    };
    assert_eq!(FileName::parse("LICENSE"), Err(FileNameError::PartCount { found: 1 }));
    assert_eq!(part("99 9_-_ADT-00_999999999999999_20111220224447339_-_1"), Some(P::PatientId));
    assert_eq!(part("9999013_20110230_ADT-00_999999999999999_20111220224447339_-_1"), Some(P::CareDate));
    assert_eq!(part("9999013_-_adt-00_999999999999999_20111220224447339_-_1"), Some(P::DataType));
    assert_eq!(part("9999013_-_ADT-00__20111220224447339_-_1"), Some(P::OrderNumber));
    assert_eq!(part("9999013_-_ADT-00_999999999999999_2011122022444733_-_1"), Some(P::Timestamp));
    assert_eq!(part("9999013_-_ADT-00_999999999999999_20111220254447339_-_1"), Some(P::Timestamp));
    assert_eq!(part("9999013_-_ADT-00_999999999999999_20111220224447339_0/1_1"), Some(P::Department));
    assert_eq!(part("9999013_-_ADT-00_999999999999999_20111220224447339_-_3"), Some(P::ConditionFlag));
    assert_eq!(part("9999013_-_ADT-00_999999999999999_20111220224447339_-_01"), Some(P::ConditionFlag));
}

#[test]
fn data_type_table() {
    for t in DataType::known() {
        assert_eq!(DataType::parse(t.as_str()).unwrap(), t);
    }
    assert_eq!(DataType::Adt00.expected_message(), Some(("ADT", "A08")));
    assert_eq!(DataType::Adt22.expected_message(), Some(("ADT", "A01")));
    assert_eq!(DataType::Adt12.expected_message(), Some(("ADT", "A04")));
    assert_eq!(DataType::Adt61.expected_message(), Some(("ADT", "A60")));
    assert_eq!(DataType::Ppr01.expected_message(), Some(("PPR", "ZD1")));
    assert_eq!(DataType::Omp02.expected_message(), Some(("RDE", "O11")));
    assert_eq!(DataType::Omp12.expected_message(), Some(("RAS", "O17")));
    assert_eq!(DataType::Omd.expected_message(), Some(("OMD", "O03")));
    assert_eq!(DataType::Oml01.expected_message(), Some(("OML", "O33")));
    assert_eq!(DataType::Oml11.expected_message(), Some(("OUL", "R22")));
    assert_eq!(DataType::Omg03.expected_message(), Some(("OMG", "O19")));
    assert_eq!(DataType::Omg12.expected_message(), Some(("OMI", "Z23")));
    assert_eq!(DataType::Omg13.expected_message(), Some(("ORU", "R01")));
    assert!(DataType::Adt22.accepts_message("ADT", "A11"));
    assert!(!DataType::Adt22.accepts_message("ADT", "A08"));
    assert_eq!(DataType::from_message("ADT", "A60"), Some(DataType::Adt61));
    assert_eq!(DataType::parse("ZZZ-01"), Ok(DataType::Other("ZZZ-01".into())));
    assert!(DataType::parse("ADT-00/x").is_err());
    assert!(DataType::Adt00.is_date_independent() && DataType::Ppr01.is_date_independent());
    assert!(!DataType::Omp01.is_date_independent());
}

fn sf(name: &str) -> StorageFile {
    StorageFile::synthetic(Path::new("/r"), FileName::parse(name).unwrap())
}

#[test]
fn placement_from_path() {
    let f = StorageFile::from_path(Path::new(
        "/r/999/901/9999013/20110701/OMP-01/9999013_20110701_OMP-01_000000011000185_20110701224603984_01_1",
    ))
    .unwrap();
    assert!(f.is_well_placed(), "{:?}", f.placement);
    assert_eq!(f, sf("9999013_20110701_OMP-01_000000011000185_20110701224603984_01_1"));
    let f = StorageFile::from_path(Path::new(
        "/r/000/000/0000001/20000401/ADT-31/9999013_20110630_OMP-11_123456789012345_20110701113813225_01_1",
    ))
    .unwrap();
    assert_eq!(f.placement.len(), 4, "{:?}", f.placement);
}

#[test]
fn versions() {
    let files = vec![
        sf("1234567_20200101_OMP-01_000000000000001_20200101100000000_01_0"),
        sf("1234567_20200101_OMP-01_000000000000001_20200101110000000_01_1"),
        sf("1234567_20200101_OMP-01_000000000000002_20200101100000000_01_1"),
        sf("1234567_20200101_OMP-01_000000000000002_20200101120000000_01_1"),
        sf("1234567_20200101_OMP-01_000000000000003_20200101100000000_01_0"),
        sf("1234567_20200101_OMP-01_000000000000003_20200101110000000_01_2"),
        sf("1234567_20200101_OMP-01_000000000000004_20200101100000000_01_1"),
        sf("1234567_20200101_OMP-01_000000000000004_20200101110000000_01_0"),
    ];
    let d: Vec<VersionStatus> = resolve_versions(&files).into_iter().map(|d| d.status).collect();
    assert_eq!(
        d,
        vec![
            VersionStatus::Superseded { current: 1 },
            VersionStatus::Current { newer_invalid: false },
            VersionStatus::Superseded { current: 3 },
            VersionStatus::Current { newer_invalid: false },
            VersionStatus::Superseded { current: 5 },
            VersionStatus::Deleted,
            VersionStatus::Current { newer_invalid: true },
            VersionStatus::Superseded { current: 6 },
        ]
    );
}
