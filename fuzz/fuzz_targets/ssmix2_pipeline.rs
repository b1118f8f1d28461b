//! SS-MIX2 pipeline fuzz target: bytes → `hl7v2::Message::parse` (every charset, every value
//! touched) → `mapping::ssmix2` (via `convert_bytes`, data type from MSH-9 and from the first byte)
//! → NDJSON. Body: `tobiume_gateway::ssmix2::fuzzing::exercise`.
//!
//! Run (stable toolchain): `RUSTC_BOOTSTRAP=1 cargo fuzz run ssmix2_pipeline` after `fuzz/seed.sh`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tobiume_gateway::ssmix2::fuzzing::exercise(data);
});
