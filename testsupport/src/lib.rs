//! Helpers shared by the test suites of several crates.
//!
//! [`Garage`] starts a real S3 server — Garage, a Rust S3-compatible distributed object store —
//! on loopback: one node, or a cluster with replication factor 3 whose nodes a test can kill.
//! Tests that need it fail (never pass silently) when the `garage` binary is missing, with a
//! message saying how to install it.

mod garage;

pub use garage::{GARAGE_VERSION, Garage, garage_binary};

/// Copies the tree `from` into `to` (created as needed): directories and regular files, the
/// way a test or benchmark sets up another data dir. Panics on any I/O error.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("creating a directory of the copy");
    for e in std::fs::read_dir(from).expect("reading a directory to copy") {
        let e = e.expect("a directory entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("a file type").is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copying a file");
        }
    }
}
