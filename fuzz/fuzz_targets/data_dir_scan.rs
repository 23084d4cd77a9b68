//! A hostile data dir — symlinks, FIFOs, odd names and sizes — scanned and backed up: never
//! a panic or a hang, and a backup that succeeds holds only regular files and restores byte
//! for byte. The check lives in `rbk_engine::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rbk_engine::fuzzing::data_dir_scan(data));
