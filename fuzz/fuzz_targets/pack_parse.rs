//! Arbitrary bytes into the pack trailer/index parser: never panic, and every accepted entry
//! lies inside the pack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbk_chunkstore::pack;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = pack::parse_pack("fuzz", data) {
        for e in entries {
            assert!(e.offset as usize + e.stored_len as usize <= data.len());
        }
    }
});
