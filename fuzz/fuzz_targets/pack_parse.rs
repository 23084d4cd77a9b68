//! Arbitrary bytes into the pack trailer/index parser: never panic, and every accepted entry
//! lies inside the pack. The check lives in `rbk_engine::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rbk_engine::fuzzing::pack_parse(data));
