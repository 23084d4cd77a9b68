//! Which module dirs a host in this process has open: a backup reading a module's files asks
//! here before it probes their RocksDB LOCK files, because POSIX record locks belong to the
//! process, and closing any descriptor of a LOCK file would drop the lock RocksDB holds on it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

static OPEN_HERE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn open_here() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    OPEN_HERE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a host in this process runs the module in `module_dir`.
pub fn runs_in_this_process(module_dir: &Path) -> bool {
    open_here().contains(module_dir)
}

/// Records that this process opened the module in `module_dir`.
pub(crate) fn opened_here(module_dir: &Path) {
    open_here().insert(module_dir.to_path_buf());
}

/// Records that this process closed it again.
pub(crate) fn closed_here(module_dir: &Path) {
    open_here().remove(module_dir);
}
