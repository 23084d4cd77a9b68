//! Helpers shared by the engine's integration tests: a generated module with a local store,
//! tree digests, and a provider wrapper that injects delays, failures and crashes.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rbk_chunkstore::provider::{ListPage, LocalProvider, Provider};
use rbk_engine::layout::module_dir;
use rbk_engine::ops::restore;
use rbk_engine::testdata::{self, GenSpec};
use rbk_engine::{BackupId, NoProgress, Repo, repo};

pub const MODULE: &str = "com.rbk.BankModule";

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub store: PathBuf,
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
        Env { tmp, data, store }
    }

    pub fn provider(&self) -> Arc<dyn Provider> {
        Arc::new(LocalProvider::new(&self.store))
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

/// A provider operation, as seen by [`Faulty`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Put,
    Delete,
    Exists,
    List,
}

type FailWhen = Box<dyn Fn(Op, &str) -> bool + Send + Sync>;

/// Wraps a provider: random delays (seeded), failures chosen by a predicate, a crash after
/// N more calls (every later call fails, as if the process died), and optionally revoking
/// every running session right after a manifest is written.
pub struct Faulty {
    inner: Arc<dyn Provider>,
    fail_when: Option<FailWhen>,
    delay: Option<(Mutex<StdRng>, u64)>,
    /// Calls left before the crash; negative: crashed. `i64::MAX`: never.
    calls_left: AtomicI64,
    crashed: AtomicBool,
    revoke_after_manifest_put: bool,
}

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({})", self.inner.describe())
    }
}

impl Faulty {
    pub fn new(inner: Arc<dyn Provider>) -> Self {
        Faulty {
            inner,
            fail_when: None,
            delay: None,
            calls_left: AtomicI64::new(i64::MAX),
            crashed: AtomicBool::new(false),
            revoke_after_manifest_put: false,
        }
    }

    pub fn fail_when(mut self, f: impl Fn(Op, &str) -> bool + Send + Sync + 'static) -> Self {
        self.fail_when = Some(Box::new(f));
        self
    }

    /// Each call first sleeps a random 0..=`max_us` microseconds.
    pub fn delays(mut self, seed: u64, max_us: u64) -> Self {
        self.delay = Some((Mutex::new(StdRng::seed_from_u64(seed)), max_us));
        self
    }

    pub fn revoking_sessions_after_manifest_put(mut self) -> Self {
        self.revoke_after_manifest_put = true;
        self
    }

    /// The process "dies" after `n` more calls.
    pub fn crash_after(&self, n: i64) {
        self.calls_left.store(n, Ordering::SeqCst);
    }

    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    async fn before(&self, op: Op, key: &str) -> rbk_chunkstore::Result<()> {
        if let Some((rng, max_us)) = &self.delay {
            let us = rng.lock().unwrap().gen_range(0..=*max_us);
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        if self.calls_left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            self.crashed.store(true, Ordering::SeqCst);
        }
        let injected = self.crashed() || self.fail_when.as_ref().is_some_and(|f| f(op, key));
        if injected {
            return Err(rbk_chunkstore::Error::Provider {
                provider: self.describe(),
                key: key.into(),
                detail: "injected failure".into(),
                temporary: true,
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Provider for Faulty {
    fn describe(&self) -> String {
        format!("faulty {}", self.inner.describe())
    }
    async fn get(&self, key: &str) -> rbk_chunkstore::Result<Bytes> {
        self.before(Op::Get, key).await?;
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> rbk_chunkstore::Result<Bytes> {
        self.before(Op::Get, key).await?;
        self.inner.get_range(key, offset, len).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> rbk_chunkstore::Result<bool> {
        self.before(Op::Put, key).await?;
        let wrote = self.inner.put_if_absent(key, body).await?;
        if self.revoke_after_manifest_put && key.starts_with("manifests/") {
            use rbk_chunkstore::session;
            for s in session::list_sessions(self.inner.as_ref()).await?.values() {
                session::revoke(self.inner.as_ref(), &s.id).await?;
            }
        }
        Ok(wrote)
    }
    async fn delete(&self, key: &str) -> rbk_chunkstore::Result<()> {
        self.before(Op::Delete, key).await?;
        self.inner.delete(key).await
    }
    async fn exists(&self, key: &str) -> rbk_chunkstore::Result<bool> {
        self.before(Op::Exists, key).await?;
        self.inner.exists(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: usize,
    ) -> rbk_chunkstore::Result<ListPage> {
        self.before(Op::List, prefix).await?;
        self.inner.list(prefix, page_token, page_size).await
    }
}
