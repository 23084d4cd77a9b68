//! Arbitrary sequences of change / backup / delete / gc / restore on an in-memory store,
//! compared after every step with a model of which backups exist and what each holds. The
//! check lives in `rbk_engine::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rbk_engine::fuzzing::model(data));
