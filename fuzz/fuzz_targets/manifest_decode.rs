//! Arbitrary bytes into the manifest decoder: never panic; any accepted input re-encodes to
//! bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbk_engine::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::decode("fuzz", data) {
        let again = Manifest::decode("fuzz", &m.encode()).expect("re-encoded manifest decodes");
        assert_eq!(again, m);
    }
});
