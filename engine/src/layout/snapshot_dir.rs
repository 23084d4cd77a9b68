//! A snapshot of a running module, as the host writes it and a backup reads it: a data dir of
//! its own (`modules/<module>/…` of hard links) plus the length caps beside `modules/`.
//!
//! `length-caps.json` is JSON `{"<path in the module dir>": length}` for files to back up only
//! up to that length. A snapshot hard-links a depot's newest segment, which keeps growing,
//! instead of copying the captured part, so the file keeps its identity and a backup reads
//! only what was appended since the previous one.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub const LENGTH_CAPS_FILE: &str = "length-caps.json";

/// `<data-dir>/.rbk/snapshots`: where snapshots of running modules are built.
pub fn snapshots_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(".rbk").join("snapshots")
}

/// Writes the length caps of the snapshot at `root`.
///
/// # Errors
/// I/O errors.
pub fn write_length_caps(root: &Path, caps: &BTreeMap<String, u64>) -> Result<()> {
    let path = root.join(LENGTH_CAPS_FILE);
    std::fs::write(
        &path,
        serde_json::to_vec(caps).expect("a map of lengths serializes"),
    )
    .map_err(|e| Error::io(&path, e))
}

/// The length caps of the snapshot at `root` (none: not a snapshot, or nothing capped).
///
/// # Errors
/// `InvalidInput` for a caps file that is not such a map, I/O errors.
pub fn read_length_caps(root: &Path) -> Result<HashMap<String, u64>> {
    let path = root.join(LENGTH_CAPS_FILE);
    match rbk_chunkstore::safe_fs::read_limited(&path, super::MAX_META_FILE_LEN) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidInput(format!("snapshot length caps `{}`: {e}", path.display()))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(Error::io(&path, e)),
    }
}
