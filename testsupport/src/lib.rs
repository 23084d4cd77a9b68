//! Helpers shared by the test suites of several crates.
//!
//! [`Garage`] starts a real S3 server — Garage, a Rust S3-compatible distributed object store —
//! on loopback: one node, or a cluster with replication factor 3 whose nodes a test can kill.
//! Tests that need it fail (never pass silently) when the `garage` binary is missing, with a
//! message saying how to install it.

mod garage;

pub use garage::{GARAGE_VERSION, Garage, garage_binary};
