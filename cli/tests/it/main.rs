//! The command line's integration tests (they run the `rbk` binary), in one binary: every
//! test binary links RocksDB and the AWS SDK.

mod cli;
mod corrupt_stores;
mod machine;
mod mirror;
mod msrv;
mod parts;
mod s3;
mod web;
