//! Retries with exponential backoff and jitter, around any provider.
//!
//! A call is tried again only when it failed with a *temporary* provider error (throttling,
//! 5xx, timeouts, dropped connections: see [`crate::Error::is_temporary`]); not found, corrupt
//! data, bad input and refusals such as "access denied" are returned at once. Each attempt has
//! its own timeout, so a request that hangs becomes a temporary failure instead of a stuck
//! backup.
//!
//! Put-if-absent needs care: when an attempt fails after the object may have been written (the
//! response was lost) and the next attempt finds the key present, the object is compared with
//! the body; if it is the same, the put counts as written. Otherwise a backup whose manifest
//! write succeeded but was reported lost would think another backup took its id.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;

use super::{ListPage, Provider, layer};
use crate::{Error, ErrorKind, Result, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles after each failure, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// An attempt without an answer after this long fails as temporary. Attempts that move
    /// a known number of bytes get an extra second per MiB (a slow link is not a dead one).
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// Eight attempts over about 10–20 s: rides out a server restart or a throttling burst,
    /// and gives up on a dead endpoint before a user wonders whether rbk hangs.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(8),
            attempt_timeout: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Backoff after the `failures`-th failure: half the exponential delay plus a random
    /// part of the other half, so many clients throttled at once do not retry in lockstep.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.max_delay);
        let half = exp / 2;
        half + half.mul_f64(rand::thread_rng().r#gen::<f64>())
    }
}

#[derive(Debug)]
pub struct RetryingProvider {
    inner: Arc<dyn Provider>,
    policy: RetryPolicy,
}

impl RetryingProvider {
    pub fn new(inner: Arc<dyn Provider>, policy: RetryPolicy) -> Self {
        RetryingProvider { inner, policy }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts are used up. Returns
    /// the result and whether any attempt failed temporarily (its effect is unknown).
    async fn run<T, F, Fut>(&self, key: &str, attempt: F) -> (Result<T>, bool)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_sized(key, 0, attempt).await
    }

    /// [`Self::run`] for an attempt that moves `bytes` bytes.
    async fn run_sized<T, F, Fut>(&self, key: &str, bytes: u64, mut attempt: F) -> (Result<T>, bool)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let timeout = self.policy.attempt_timeout + Duration::from_secs(bytes >> 20);
        let started = Instant::now();
        let mut failures = 0;
        loop {
            let result = match tokio::time::timeout(timeout, attempt()).await {
                Ok(result) => result,
                Err(_) => Err(Error::provider(
                    self.inner.describe(),
                    key,
                    format!("no answer within {} s", timeout.as_secs_f64()),
                    ErrorKind::Unavailable,
                )),
            };
            match result {
                Err(e) if e.status() == Status::Temporary => {
                    failures += 1;
                    if failures >= self.policy.max_attempts {
                        return (Err(gave_up(e, failures, started.elapsed())), true);
                    }
                    tracing::debug!(key, failures, error = %e, "retrying");
                    tokio::time::sleep(self.policy.backoff(failures)).await;
                }
                other => return (other, failures > 0),
            }
        }
    }
}

/// Adds how hard we tried to the final error.
fn gave_up(e: Error, attempts: u32, elapsed: Duration) -> Error {
    match e {
        Error::Provider {
            provider,
            key,
            detail,
            kind,
            status: _,
        } => Error::Provider {
            provider,
            key,
            detail: format!(
                "{detail} (gave up after {attempts} attempts in {:.1} s)",
                elapsed.as_secs_f64()
            ),
            kind,
            status: Status::Persistent,
        },
        other => other,
    }
}

#[async_trait]
impl layer::Layer for RetryingProvider {
    fn inner(&self) -> &dyn Provider {
        self.inner.as_ref()
    }

    async fn get(&self, key: &str, max_len: u64) -> Result<Bytes> {
        self.run(key, || self.inner.get(key, max_len)).await.0
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes> {
        self.run_sized(key, len, || self.inner.get_range(key, offset, len))
            .await
            .0
    }

    async fn get_range_into(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        // The first attempt reads into `buf`; a retry (its buffer went with the failed
        // attempt) into a new one.
        let buf = std::sync::Mutex::new(Some(buf));
        self.run_sized(key, len, || {
            let b = buf
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_default();
            self.inner.get_range_into(key, offset, len, b)
        })
        .await
        .0
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool> {
        let len = body.len() as u64;
        match self
            .run_sized(key, len, || self.inner.put_if_absent(key, body.clone()))
            .await
        {
            (Ok(false), true) => {
                // An earlier attempt may have written it: the same bytes mean it did (or an
                // identical object was there, which is as good).
                // Read at most the body's size: a larger object is not ours either.
                match self.run(key, || self.inner.get(key, len)).await.0 {
                    Ok(stored) => Ok(stored == body),
                    Err(e) if e.kind() == crate::ErrorKind::Corrupt => Ok(false),
                    Err(e) => Err(e),
                }
            }
            (result, _) => result,
        }
    }

    /// Retried as [`Self::put_if_absent`], which needs the body in memory to compare it with
    /// what an earlier attempt may have written.
    async fn put_spooled_if_absent(&self, key: &str, path: &Path) -> Result<bool> {
        let body = tokio::fs::read(path)
            .await
            .map_err(|e| crate::Error::io(path, e))?;
        layer::Layer::put_if_absent(self, key, Bytes::from(body)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.run(key, || self.inner.delete(key)).await.0
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let first = keys.first().map_or("", String::as_str);
        self.run(first, || self.inner.delete_many(keys)).await.0
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.run(key, || self.inner.exists(key)).await.0
    }

    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: usize,
    ) -> Result<ListPage> {
        self.run(prefix, || self.inner.list(prefix, page_token, page_size))
            .await
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::provider::{FaultyProvider, MemoryProvider};

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            attempt_timeout: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn temporary_failures_are_retried_until_an_attempt_succeeds() {
        let store = Arc::new(MemoryProvider::default());
        let faulty = Arc::new(FaultyProvider::new(store.clone()).fail_calls(1..=3));
        let p = RetryingProvider::new(faulty.clone(), quick(4));
        assert!(
            p.put_if_absent("k", Bytes::from_static(b"v"))
                .await
                .unwrap()
        );
        assert_eq!(faulty.calls(), 4);
        assert_eq!(faulty.injected(), 3);
        assert_eq!(&store.get("k", u64::MAX).await.unwrap()[..], b"v");
    }

    #[tokio::test]
    async fn the_last_error_says_how_often_it_was_tried() {
        let faulty =
            Arc::new(FaultyProvider::new(Arc::new(MemoryProvider::default())).fail_calls(1..));
        let p = RetryingProvider::new(faulty.clone(), quick(3));
        let err = p.get("k", u64::MAX).await.unwrap_err();
        assert!(err.is_temporary());
        assert!(
            err.to_string().contains("gave up after 3 attempts"),
            "{err}"
        );
        assert_eq!(faulty.calls(), 3);
    }

    #[tokio::test]
    async fn permanent_failures_and_missing_keys_are_not_retried() {
        let faulty = Arc::new(FaultyProvider::new(Arc::new(MemoryProvider::default())));
        let p = RetryingProvider::new(faulty.clone(), quick(5));
        assert_eq!(
            p.get("k", u64::MAX).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(faulty.calls(), 1);
        assert_eq!(
            p.put_if_absent("a//b", Bytes::new())
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(faulty.calls(), 2);
    }

    #[tokio::test]
    async fn a_put_whose_answer_was_lost_still_counts_as_written() {
        let store = Arc::new(MemoryProvider::default());
        // The first put reaches the store but its answer is lost.
        let faulty = Arc::new(FaultyProvider::new(store.clone()).drop_calls(1..=1));
        let p = RetryingProvider::new(faulty.clone(), quick(4));
        assert!(
            p.put_if_absent("m", Bytes::from_static(b"mine"))
                .await
                .unwrap()
        );
        assert_eq!(faulty.injected(), 1);
        // A different object under the key is still reported as not written.
        let faulty = Arc::new(FaultyProvider::new(store.clone()).drop_calls(1..=1));
        let p = RetryingProvider::new(faulty, quick(4));
        store
            .put_if_absent("n", Bytes::from_static(b"theirs"))
            .await
            .unwrap();
        assert!(
            !p.put_if_absent("n", Bytes::from_static(b"mine"))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_hanging_attempt_times_out_and_is_retried() {
        let store = Arc::new(MemoryProvider::default());
        let faulty = Arc::new(FaultyProvider::new(store).hang_calls(1..=1));
        let p = RetryingProvider::new(faulty.clone(), quick(2));
        let started = Instant::now();
        let err = p.exists("k").await;
        assert!(!err.unwrap());
        assert_eq!(faulty.calls(), 2);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = p.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let capped = p.backoff(30);
            assert!(capped >= Duration::from_millis(500) && capped <= Duration::from_secs(1));
        }
    }
}
