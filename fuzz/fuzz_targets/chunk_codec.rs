//! Arbitrary bytes through the chunk encoder (CRC elision + zstd) and decoder: what rbk
//! stores reads back exactly, and no stored blob panics the decoder. The check lives in
//! `rbk_engine::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rbk_engine::fuzzing::chunk_codec(data));
