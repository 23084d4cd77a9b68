//! Fault injection around any provider, for tests: fail, drop, delay or hang chosen calls.
//!
//! Calls are numbered from 1 in the order they reach the wrapper. A fault applies to calls by
//! number (`fail_calls(3..=3)`), to a seeded random fraction (`fail_fraction(0.1)`), or to calls
//! a predicate picks (`fail_when`). The faults:
//! - *fail*: the call never reaches the inner provider and returns a temporary error, as a
//!   refused connection or a 503 would;
//! - *drop*: the call reaches the inner provider and takes effect, but its answer is lost and a
//!   temporary error is returned, as when a connection breaks after the server wrote;
//! - *delay*: the call is held back before it is made;
//! - *hang*: the call never answers (until the caller's timeout gives up on it);
//! - *crash*: after `crash_after(n)` calls every call fails, as if the process died.

use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{ListPage, Provider, layer};
use crate::{Error, ErrorKind, Result};

/// A provider operation, as seen by [`FaultyProvider`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Put,
    Delete,
    Exists,
    List,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Fail,
    Drop,
    Delay(Duration),
    Hang,
}

type Predicate = Box<dyn Fn(Op, &str) -> bool + Send + Sync>;

enum Which {
    Calls((Bound<u64>, Bound<u64>)),
    Fraction(f64),
    When(Predicate),
}

pub struct FaultyProvider {
    inner: Arc<dyn Provider>,
    rules: Vec<(Which, Fault)>,
    rng: Mutex<StdRng>,
    /// Every call first sleeps a random 0..=this many microseconds.
    jitter_us: u64,
    calls: AtomicU64,
    injected: AtomicU64,
    /// Calls left before the crash; `i64::MAX`: never.
    calls_left: AtomicI64,
    crashed: AtomicBool,
}

impl std::fmt::Debug for FaultyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyProvider({})", self.inner.describe())
    }
}

fn bounds(r: impl RangeBounds<u64>) -> (Bound<u64>, Bound<u64>) {
    (r.start_bound().cloned(), r.end_bound().cloned())
}

impl FaultyProvider {
    pub fn new(inner: Arc<dyn Provider>) -> Self {
        FaultyProvider {
            inner,
            rules: Vec::new(),
            rng: Mutex::new(StdRng::seed_from_u64(0)),
            jitter_us: 0,
            calls: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            calls_left: AtomicI64::new(i64::MAX),
            crashed: AtomicBool::new(false),
        }
    }

    /// Seeds the random choices (fractions and jitter); the default seed is 0.
    pub fn seeded(self, seed: u64) -> Self {
        *self.rng.lock().unwrap_or_else(|p| p.into_inner()) = StdRng::seed_from_u64(seed);
        self
    }

    fn rule(mut self, which: Which, fault: Fault) -> Self {
        self.rules.push((which, fault));
        self
    }

    pub fn fail_calls(self, calls: impl RangeBounds<u64>) -> Self {
        self.rule(Which::Calls(bounds(calls)), Fault::Fail)
    }
    pub fn fail_fraction(self, p: f64) -> Self {
        self.rule(Which::Fraction(p), Fault::Fail)
    }
    pub fn fail_when(self, f: impl Fn(Op, &str) -> bool + Send + Sync + 'static) -> Self {
        self.rule(Which::When(Box::new(f)), Fault::Fail)
    }
    pub fn drop_calls(self, calls: impl RangeBounds<u64>) -> Self {
        self.rule(Which::Calls(bounds(calls)), Fault::Drop)
    }
    pub fn drop_fraction(self, p: f64) -> Self {
        self.rule(Which::Fraction(p), Fault::Drop)
    }
    pub fn delay_calls(self, calls: impl RangeBounds<u64>, by: Duration) -> Self {
        self.rule(Which::Calls(bounds(calls)), Fault::Delay(by))
    }
    pub fn delay_fraction(self, p: f64, by: Duration) -> Self {
        self.rule(Which::Fraction(p), Fault::Delay(by))
    }
    pub fn hang_calls(self, calls: impl RangeBounds<u64>) -> Self {
        self.rule(Which::Calls(bounds(calls)), Fault::Hang)
    }

    /// Every call first sleeps a random 0..=`max_us` microseconds (shuffles interleavings).
    pub fn jitter(mut self, max_us: u64) -> Self {
        self.jitter_us = max_us;
        self
    }

    /// The process "dies" after `n` more calls: every later call fails.
    pub fn crash_after(&self, n: i64) {
        self.calls_left.store(n, Ordering::SeqCst);
    }

    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Calls that got a fault other than a delay.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// The faults for the next call, in the order they act.
    fn faults_for(&self, op: Op, key: &str) -> (u64, Vec<Fault>) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.calls_left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            self.crashed.store(true, Ordering::SeqCst);
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut faults = Vec::new();
        if self.jitter_us > 0 {
            let us = rng.gen_range(0..=self.jitter_us);
            faults.push(Fault::Delay(Duration::from_micros(us)));
        }
        for (which, fault) in &self.rules {
            let applies = match which {
                Which::Calls(range) => range.contains(&n),
                Which::Fraction(p) => rng.gen_bool(p.clamp(0.0, 1.0)),
                Which::When(f) => f(op, key),
            };
            if applies {
                faults.push(*fault);
            }
        }
        if self.crashed() {
            faults.push(Fault::Fail);
        }
        (n, faults)
    }

    fn injected_error(&self, key: &str, n: u64, what: &str) -> Error {
        self.injected.fetch_add(1, Ordering::SeqCst);
        Error::provider(
            Provider::describe(self),
            key,
            format!("injected fault: call {n} {what}"),
            ErrorKind::Unavailable,
        )
    }

    async fn call<T>(
        &self,
        op: Op,
        key: &str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let (n, faults) = self.faults_for(op, key);
        for fault in &faults {
            match fault {
                Fault::Delay(by) => tokio::time::sleep(*by).await,
                Fault::Hang => {
                    self.injected.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }
                Fault::Fail => return Err(self.injected_error(key, n, "failed")),
                Fault::Drop => {}
            }
        }
        let result = f.await;
        if faults.contains(&Fault::Drop) {
            return Err(self.injected_error(key, n, "was made but its answer was lost"));
        }
        result
    }
}

#[async_trait]
impl layer::Layer for FaultyProvider {
    fn inner(&self) -> &dyn Provider {
        self.inner.as_ref()
    }

    fn describe(&self) -> String {
        format!("faulty {}", self.inner.describe())
    }

    async fn get(&self, key: &str, max_len: u64) -> Result<Bytes> {
        self.call(Op::Get, key, self.inner.get(key, max_len)).await
    }
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes> {
        self.call(Op::Get, key, self.inner.get_range(key, offset, len))
            .await
    }
    async fn get_range_into(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        self.call(
            Op::Get,
            key,
            self.inner.get_range_into(key, offset, len, buf),
        )
        .await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool> {
        self.call(Op::Put, key, self.inner.put_if_absent(key, body))
            .await
    }
    async fn put_spooled_if_absent(&self, key: &str, path: &Path) -> Result<bool> {
        self.call(Op::Put, key, self.inner.put_spooled_if_absent(key, path))
            .await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.call(Op::Delete, key, self.inner.delete(key)).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let first = keys.first().map_or("", String::as_str);
        self.call(Op::Delete, first, self.inner.delete_many(keys))
            .await
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        self.call(Op::Exists, key, self.inner.exists(key)).await
    }
    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: usize,
    ) -> Result<ListPage> {
        self.call(
            Op::List,
            prefix,
            self.inner.list(prefix, page_token, page_size),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::MemoryProvider;

    #[tokio::test]
    async fn numbered_calls_fail_or_drop_and_dropped_calls_take_effect() {
        let store = Arc::new(MemoryProvider::default());
        let p = FaultyProvider::new(store.clone())
            .fail_calls(1..=1)
            .drop_calls(2..=2);
        let body = Bytes::from_static(b"x");
        assert!(
            p.put_if_absent("a", body.clone())
                .await
                .unwrap_err()
                .is_temporary()
        );
        assert!(!store.exists("a").await.unwrap());
        assert!(
            p.put_if_absent("a", body.clone())
                .await
                .unwrap_err()
                .is_temporary()
        );
        assert!(store.exists("a").await.unwrap());
        assert!(!p.put_if_absent("a", body).await.unwrap());
        assert_eq!((p.calls(), p.injected()), (3, 2));
    }

    #[tokio::test]
    async fn a_seeded_fraction_fails_about_that_share_of_calls_and_repeats() {
        let failures = |seed| async move {
            let p = FaultyProvider::new(Arc::new(MemoryProvider::default()))
                .seeded(seed)
                .fail_fraction(0.1);
            let mut failed = Vec::new();
            for i in 0..1000 {
                if p.exists("k").await.is_err() {
                    failed.push(i);
                }
            }
            failed
        };
        let a = failures(7).await;
        assert!((60..=140).contains(&a.len()), "{} of 1000 failed", a.len());
        assert_eq!(a, failures(7).await);
        assert_ne!(a, failures(8).await);
    }

    #[tokio::test]
    async fn after_a_crash_every_call_fails() {
        let p = FaultyProvider::new(Arc::new(MemoryProvider::default()));
        p.crash_after(2);
        assert!(p.exists("k").await.is_ok());
        assert!(p.exists("k").await.is_ok());
        assert!(p.exists("k").await.is_err());
        assert!(p.crashed());
        assert!(p.list("", None, 10).await.is_err());
    }
}
