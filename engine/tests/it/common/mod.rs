//! Helpers shared by the engine's integration tests: a generated module with a store (a local
//! directory unless a test brings another provider) and tree digests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbk_chunkstore::provider::{LocalProvider, Provider};
use rbk_engine::layout::module_dir;
use rbk_engine::ops::restore;
use rbk_engine::testdata::{self, GenSpec};
use rbk_engine::{BackupId, NoProgress, Repo, repo};

pub const MODULE: &str = "com.rbk.BankModule";

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    /// The local store's directory (unused when `remote` is set).
    pub store: PathBuf,
    /// A store elsewhere (S3) used instead of the local directory.
    pub remote: Option<Arc<dyn Provider>>,
}

impl Env {
    pub fn new(size_mib: u64) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let store = tmp.path().join("store");
        std::fs::create_dir_all(&data).unwrap();
        testdata::generate(
            &data,
            &GenSpec {
                size_mib,
                tasks: 4,
                segment_bytes: 1 << 20,
                ..Default::default()
            },
        )
        .unwrap();
        Env {
            tmp,
            data,
            store,
            remote: None,
        }
    }

    /// A generated module backed up to `provider` instead of a local directory.
    pub fn with_provider(size_mib: u64, provider: Arc<dyn Provider>) -> Env {
        Env {
            remote: Some(provider),
            ..Env::new(size_mib)
        }
    }

    pub fn provider(&self) -> Arc<dyn Provider> {
        match &self.remote {
            Some(p) => p.clone(),
            None => Arc::new(LocalProvider::new(&self.store)),
        }
    }

    pub fn repo_for(&self, data_dir: &Path) -> Repo {
        Repo::open(self.provider(), &repo::index_root(data_dir), true).unwrap()
    }

    pub fn module(&self) -> PathBuf {
        module_dir(&self.data, MODULE)
    }

    pub fn scratch(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Restores `id` into a new data dir `name` with an index of its own (as on a fresh
    /// machine); returns the restored module dir.
    pub fn restore_fresh(&self, id: &BackupId, name: &str) -> PathBuf {
        let target = self.scratch(name);
        restore::restore(
            &self.repo_for(&target),
            &target,
            id,
            restore::RestoreOptions::default(),
            &NoProgress,
        )
        .unwrap();
        module_dir(&target, MODULE)
    }
}

pub fn digest(dir: &Path) -> BTreeMap<String, [u8; 32]> {
    testdata::tree_digest(dir).unwrap()
}

/// Every object in the store with the hash of its bytes.
pub fn store_listing(store: &Path) -> BTreeMap<String, [u8; 32]> {
    digest(store)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(".tmp/"))
        .collect()
}
