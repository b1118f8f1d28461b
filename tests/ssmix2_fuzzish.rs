//! Stable-toolchain robustness test for the SS-MIX2 pipeline (the CI sibling of the cargo-fuzz target
//! `fuzz/fuzz_targets/ssmix2_pipeline.rs`): random bytes, mutated real fixture files and mutated
//! synthetic files go through parse (every charset) + map + NDJSON serialization without panicking.

use proptest::prelude::*;
use std::path::Path;
use tobiume_gateway::ssmix2::{self, fuzzing::exercise, FileName};

fn fixture_bytes() -> Vec<Vec<u8>> {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures"));
    let mut out: Vec<Vec<u8>> = ssmix2::walk(root)
        .filter_map(Result::ok)
        .filter_map(|f| std::fs::read(&f.path).ok())
        .collect();
    let s = ssmix2::synth::Synthesizer::new(5);
    out.extend(s.patient_files(0).1.into_iter().map(|f| f.bytes));
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop::sample::select(vec![
        b"|".to_vec(),
        b"^".to_vec(),
        b"~".to_vec(),
        b"\\".to_vec(),
        b"&".to_vec(),
        b"\r".to_vec(),
        b"\n".to_vec(),
        b"\x1b$B".to_vec(),
        b"\x1b(B".to_vec(),
        b"\x1b$(D".to_vec(),
        b"\\X41\\".to_vec(),
        b"\\H\\".to_vec(),
        b"\"\"".to_vec(),
        b"\xff\xfe".to_vec(),
        b"MSH|^~\\&|".to_vec(),
        b"\rPID|1||".to_vec(),
        b"\rOBX|1|NM|x||-1.5e400|".to_vec(),
        b"99999999999999999999".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), prop_oneof![interesting, prop::collection::vec(any::<u8>(), 0..16)])
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 0usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0usize..200).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn apply(mut data: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = data.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if !data.is_empty() {
                    let i = i % data.len();
                    data[i] ^= b;
                }
            }
            Mutation::Insert(i, v) => {
                let i = i % (data.len() + 1);
                data.splice(i..i, v.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = i % len;
                let end = (i + n).min(data.len());
                if i < end {
                    data.drain(i..end);
                }
            }
            Mutation::Truncate(i) => data.truncate(i % len),
            Mutation::Duplicate(i, n) => {
                let i = i % len;
                let end = (i + n).min(data.len());
                if i < end {
                    let chunk: Vec<u8> = data[i..end].to_vec();
                    data.splice(i..i, chunk);
                }
            }
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&data);
    }

    #[test]
    fn random_msh_prefixed_never_panic(tail in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut data = b"MSH|^~\\&|".to_vec();
        data.extend(tail);
        exercise(&data);
    }

    #[test]
    fn mutated_fixtures_never_panic(idx in any::<prop::sample::Index>(), muts in prop::collection::vec(mutation(), 1..6)) {
        thread_local!(static FIXTURES: Vec<Vec<u8>> = fixture_bytes());
        let base = FIXTURES.with(|f| idx.get(f).clone());
        exercise(&apply(base, &muts));
    }

    #[test]
    fn file_names_never_panic(s in "[0-9A-Za-z_\\-]{0,80}") {
        if let Ok(n) = FileName::parse(&s) {
            prop_assert_eq!(FileName::parse(&n.to_string()), Ok(n));
        }
    }

    #[test]
    fn structured_file_names_round_trip(
        pid in "[0-9A-Za-z]{1,20}",
        date in prop_oneof![Just("-".to_string()), (1900u32..2100, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y:04}{m:02}{d:02}"))],
        dt in prop::sample::select(ssmix2::DataType::known().map(|d| d.as_str().to_string()).collect::<Vec<_>>()),
        order in "[0-9]{1,15}",
        ts in (2000u32..2030, 1u32..13, 1u32..29, 0u32..24, 0u32..60, 0u32..60, 0u32..1000)
            .prop_map(|(y, mo, d, h, mi, s, f)| format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}{f:03}")),
        dept in prop_oneof![Just("-".to_string()), "[0-9A-Z]{1,3}"],
        flag in 0u8..3,
    ) {
        let s = format!("{pid}_{date}_{dt}_{order}_{ts}_{dept}_{flag}");
        let n = FileName::parse(&s).unwrap();
        prop_assert_eq!(n.to_string(), s);
    }
}

#[test]
fn every_fixture_and_synthetic_file_survives() {
    for data in fixture_bytes() {
        exercise(&data);
    }
}
