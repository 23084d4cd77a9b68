//! The engine's integration tests, in one binary: every test binary links RocksDB (and the
//! AWS SDK), so one binary instead of one per file saves minutes of linking and gigabytes of
//! disk. One module per concern, as the files were.

mod common;
mod dependents;
mod fuzz_corpus;
mod gc;
mod gc_concurrency;
mod golden;
mod host;
mod hostile;
mod index_sync;
mod parts;
mod roundtrip;
mod s3;
mod stats;
mod task_objects;
mod untrusted_inputs;
mod verify;
