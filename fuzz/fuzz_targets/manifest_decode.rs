//! Arbitrary bytes into the manifest decoder: never panic; any accepted input re-encodes to
//! bytes that decode to the same value. The check lives in `rbk_engine::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rbk_engine::fuzzing::manifest_decode(data));
