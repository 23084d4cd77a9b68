//! The module host: runs modules over the data-dir layout so that backups of *running*
//! modules can be taken, and proven, consistent (docs/ARCHITECTURE.md, "Module host").
//!
//! - [`definition`]: what a module is (depots, PStates, topologies and their Rust code);
//! - [`builtin`]: the definitions rbk ships — `bank` (microbatch) and `pageviews` (stream) —
//!   and their registry, selected by the `rbk.definition` key of module.json;
//! - [`module`]: one running module — RocksDB partitions, depot writers, topology threads;
//! - [`snapshot`]: consistent snapshots taken while the module runs;
//! - [`control`]: the local control socket through which `rbk backup`/`rbk restore` reach
//!   a host in another process (`rbk serve`);
//! - [`schedule`]: periodic backups and GC from dynamic options;
//! - [`check`]: the consistency checks a restored module must pass.

pub mod builtin;
pub mod check;
pub mod control;
pub mod definition;
pub mod module;
pub mod schedule;
pub mod snapshot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use module::{
    HostOptions, PauseStats, RunningModule, create_module, create_module_reading, definition_of,
};
pub use snapshot::Snapshot;

use crate::layout::{liveness, module_dir, module_names};
use crate::{Error, Result};

pub use crate::layout::liveness::runs_in_this_process;

#[derive(Debug)]
pub struct Host {
    data_dir: PathBuf,
    opts: HostOptions,
    modules: Mutex<BTreeMap<String, Arc<RunningModule>>>,
}

impl Host {
    /// A host for `data_dir`, running nothing yet. Deletes snapshots a crashed host left.
    ///
    /// # Errors
    /// `DataDirMissing`; I/O errors.
    pub fn new(data_dir: &Path, opts: HostOptions) -> Result<Host> {
        if !data_dir.is_dir() {
            return Err(Error::DataDirMissing {
                path: data_dir.into(),
            });
        }
        let snaps = snapshot::snapshots_dir(data_dir);
        if snaps.exists() {
            std::fs::remove_dir_all(&snaps).map_err(|e| Error::io(&snaps, e))?;
        }
        Ok(Host {
            data_dir: data_dir.into(),
            opts,
            modules: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Starts `module`.
    ///
    /// # Errors
    /// `InvalidInput` when it already runs, or as [`RunningModule::open`].
    pub fn start(&self, module: &str) -> Result<Arc<RunningModule>> {
        let mut mods = self.modules.lock().expect("lock");
        if mods.contains_key(module) {
            return Err(Error::InvalidInput(format!(
                "module {module} is already running"
            )));
        }
        let dir = module_dir(&self.data_dir, module);
        // Registered before RocksDB opens the LOCK files, removed after they are closed.
        liveness::opened_here(&dir);
        match RunningModule::open(&self.data_dir, module, &self.opts) {
            Ok(m) => {
                mods.insert(module.into(), m.clone());
                Ok(m)
            }
            Err(e) => {
                liveness::closed_here(&dir);
                Err(e)
            }
        }
    }

    /// Starts every module of the data dir whose module.json names a known definition;
    /// returns their names. Modules without one are left alone (they can still be backed
    /// up from their files).
    ///
    /// # Errors
    /// As [`Host::start`], for the first module that fails.
    pub fn start_all(&self) -> Result<Vec<String>> {
        let mut started = Vec::new();
        for name in module_names(&self.data_dir) {
            if definition_of(&module_dir(&self.data_dir, &name))
                .ok()
                .flatten()
                .is_some()
            {
                self.start(&name)?;
                started.push(name);
            }
        }
        Ok(started)
    }

    pub fn get(&self, module: &str) -> Option<Arc<RunningModule>> {
        self.modules.lock().expect("lock").get(module).cloned()
    }

    pub fn running(&self) -> Vec<String> {
        self.modules.lock().expect("lock").keys().cloned().collect()
    }

    /// Stops `module` and closes its state, so its files can be replaced.
    ///
    /// # Errors
    /// `InvalidInput` when it is not running; as [`RunningModule::stop`].
    pub fn stop(&self, module: &str) -> Result<()> {
        let m = self
            .modules
            .lock()
            .expect("lock")
            .remove(module)
            .ok_or_else(|| Error::InvalidInput(format!("module {module} is not running")))?;
        let stopped = m.stop();
        let dir = m.dir.clone();
        // Waits for other holders of the module (a snapshot being taken, a load generator)
        // to let go, so the DBs are closed when this returns.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut m = m;
        loop {
            match Arc::try_unwrap(m) {
                Ok(inner) => {
                    drop(inner);
                    break;
                }
                Err(back) if std::time::Instant::now() < deadline => {
                    m = back;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(_) => {
                    return Err(Error::InvalidInput(format!(
                        "module {module} stopped, but something in this process still holds                          it open after 30 s"
                    )));
                }
            }
        }
        liveness::closed_here(&dir);
        stopped
    }

    /// A consistent snapshot of running `module` (see [`snapshot`]).
    ///
    /// # Errors
    /// `InvalidInput` when it is not running; as [`RunningModule::snapshot`].
    pub fn snapshot(&self, module: &str) -> Result<Snapshot> {
        let m = self
            .get(module)
            .ok_or_else(|| Error::InvalidInput(format!("module {module} is not running")))?;
        m.snapshot(&self.data_dir)
    }

    /// Stops every module.
    ///
    /// # Errors
    /// The first error; every module is stopped regardless.
    pub fn shutdown(&self) -> Result<()> {
        let mut first = Ok(());
        for name in self.running() {
            if let Err(e) = self.stop(&name)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("stopping modules: {e}");
        }
    }
}
