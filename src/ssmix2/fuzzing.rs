//! The fuzzing / robustness harness body shared by `fuzz/fuzz_targets/ssmix2_pipeline.rs` (cargo-fuzz)
//! and `tests/ssmix2_fuzzish.rs` (proptest on stable). Not part of the gateway's API.

use super::{ConditionFlag, DataType, FileName, StorageFile};
use crate::hl7v2::{Charset, DecodeOptions, Message};
use crate::mapping::ssmix2::convert::{convert_bytes, ConvertOptions, IdentityMode};
use crate::mapping::ssmix2::identity_of;
use std::path::Path;

/// Feeds `data` through the whole SS-MIX2 pipeline and touches every value; panics only on a bug.
///
/// Steps: (1) if `data` is short UTF-8, [`FileName::parse`] it and check that rendering round-trips;
/// (2) [`Message::parse`] with every [`Charset`], reading every segment / field / repetition /
/// component / subcomponent with `text()`; (3) map with `convert_bytes` for the data type named by
/// MSH-9 ([`DataType::from_message`]) and for one chosen by the first byte, in lenient or strict
/// identity mode, with and without a reference identity, and serialize the resources as NDJSON.
/// Returns the number of resources produced (so the optimizer cannot drop the work).
#[doc(hidden)]
pub fn exercise(data: &[u8]) -> usize {
    if data.len() <= 128 {
        if let Ok(s) = std::str::from_utf8(data) {
            if let Ok(n) = FileName::parse(s) {
                let again = FileName::parse(&n.to_string());
                assert_eq!(again.as_ref(), Ok(&n), "file name round trip");
            }
        }
    }
    let mut touched = 0usize;
    for charset in [Charset::Auto, Charset::Iso2022Jp, Charset::Utf8, Charset::ShiftJis] {
        let Ok(msg) = Message::parse(data, &DecodeOptions { charset }) else { continue };
        touched += touch(&msg);
    }
    let Ok(msg) = Message::parse(data, &DecodeOptions::default()) else { return touched };
    let (ty, trig, _) = msg.message_type();
    let mut types: Vec<DataType> = Vec::with_capacity(2);
    if let Some(t) = DataType::from_message(ty, trig) {
        types.push(t);
    }
    let first = data.first().copied().unwrap_or(0) as usize;
    let known: Vec<DataType> = DataType::known().collect();
    let by_byte = known[first % known.len()].clone();
    if !types.contains(&by_byte) {
        types.push(by_byte);
    }
    let reference = identity_of(&msg);
    let mut produced = 0;
    for (i, dt) in types.into_iter().enumerate() {
        let name = FileName {
            patient_id: "1234567890".into(),
            care_date: if dt.is_date_independent() { None } else { Some("20200101".into()) },
            data_type: dt,
            order_number: "000000000000001".into(),
            timestamp: "20200101120000000".into(),
            department: Some("01".into()),
            condition: ConditionFlag::Valid,
        };
        let file = StorageFile::synthetic(Path::new("/fuzz"), name);
        let opts = ConvertOptions {
            charset: Charset::Auto,
            identity: if (first + i).is_multiple_of(2) { IdentityMode::Lenient } else { IdentityMode::Strict },
            facility_code: if first.is_multiple_of(3) { Some("1312345678".into()) } else { None },
            ..ConvertOptions::default()
        };
        for r in [None, reference.as_ref()] {
            let report = convert_bytes(&file, data, &opts, r);
            for res in &report.resources {
                let line = serde_json::to_string(res).unwrap_or_default();
                produced += line.len().min(1);
            }
            produced += report.warnings.len();
        }
    }
    touched + produced
}

fn touch(msg: &Message) -> usize {
    let mut n = msg.warnings().len() + msg.text().len();
    let (a, b, c) = msg.message_type();
    n += a.len() + b.len() + c.len();
    let d = msg.delimiters();
    for seg in msg.segments() {
        n += seg.id().len() + seg.raw().len() + seg.position();
        for f in 0..=seg.field_count() + 1 {
            let field = seg.field(f);
            n += field.text().len() + usize::from(field.is_null()) + field.opt().map_or(0, |s| s.len());
            for (ri, rep) in field.reps().enumerate().take(32) {
                n += field.rep(ri + 1).text().len();
                let comps = rep.raw().split(d.component).count().min(32);
                for ci in 1..=comps + 1 {
                    let comp = rep.comp(ci);
                    n += comp.text().len();
                    let subs = comp.raw().split(d.subcomponent).count().min(16);
                    for si in 1..=subs + 1 {
                        n += comp.sub(si).text().len();
                    }
                }
            }
            // the shortcut navigation without rep() (first repetition)
            n += field.comp(2).sub(2).text().len();
        }
    }
    n
}
