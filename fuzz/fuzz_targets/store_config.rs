//! Arbitrary bytes into the store config parser: never panic; what it accepts serializes and
//! parses back equal. The check lives in `rbk_engine::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rbk_engine::fuzzing::store_config(data));
