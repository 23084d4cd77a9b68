//! A provider whose every request gives up at a deadline: a mirror that stopped answering must
//! not hold a backup that is already committed past `--mirror-wait`. Retries happen inside
//! (the wrapped provider is usually a [`super::RetryingProvider`]), so the deadline bounds
//! them too.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Layer, ListPage, Provider};
use crate::{Error, ErrorKind, Result, Status};

#[derive(Debug)]
pub struct DeadlineProvider {
    inner: Arc<dyn Provider>,
    deadline: Mutex<Option<Instant>>,
}

impl DeadlineProvider {
    pub fn new(inner: Arc<dyn Provider>) -> Self {
        DeadlineProvider {
            inner,
            deadline: Mutex::new(None),
        }
    }

    /// Requests started or still running after `deadline` fail as temporary; `None` lifts it.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = deadline;
    }

    fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn bounded<T>(
        &self,
        key: &str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let Some(deadline) = self.deadline() else {
            return f.await;
        };
        match tokio::time::timeout_at(deadline.into(), f).await {
            Ok(r) => r,
            Err(_) => Err(Error::Provider {
                provider: self.inner.describe(),
                key: key.into(),
                detail: "no answer before the deadline".into(),
                kind: ErrorKind::Io,
                status: Status::Temporary,
            }),
        }
    }
}

#[async_trait]
impl Layer for DeadlineProvider {
    fn inner(&self) -> &dyn Provider {
        self.inner.as_ref()
    }

    async fn get(&self, key: &str, max_len: u64) -> Result<Bytes> {
        self.bounded(key, self.inner.get(key, max_len)).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes> {
        self.bounded(key, self.inner.get_range(key, offset, len))
            .await
    }

    async fn get_range_into(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        self.bounded(key, self.inner.get_range_into(key, offset, len, buf))
            .await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool> {
        self.bounded(key, self.inner.put_if_absent(key, body)).await
    }

    async fn put_spooled_if_absent(&self, key: &str, path: &Path) -> Result<bool> {
        self.bounded(key, self.inner.put_spooled_if_absent(key, path))
            .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.bounded(key, self.inner.delete(key)).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let first = keys.first().map_or("", String::as_str);
        self.bounded(first, self.inner.delete_many(keys)).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.bounded(key, self.inner.exists(key)).await
    }

    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: usize,
    ) -> Result<ListPage> {
        self.bounded(prefix, self.inner.list(prefix, page_token, page_size))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{FaultyProvider, MemoryProvider};
    use std::time::Duration;

    #[tokio::test]
    async fn requests_fail_at_the_deadline_and_pass_without_one() {
        // Every call hangs, as a server that stopped answering does.
        let hangs = FaultyProvider::new(Arc::new(MemoryProvider::default())).hang_calls(..);
        let bounded = DeadlineProvider::new(Arc::new(hangs));
        let p: &dyn Provider = &bounded;
        bounded.set_deadline(Some(Instant::now() + Duration::from_millis(50)));
        let started = Instant::now();
        let e = p
            .put_if_absent("a", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(250));
        assert_eq!(e.status(), Status::Temporary);
        assert!(e.to_string().contains("deadline"), "{e}");
        bounded.set_deadline(None);
        let unbounded = tokio::time::timeout(Duration::from_millis(200), p.get("a", 10)).await;
        assert!(unbounded.is_err(), "without a deadline the request waits");
    }
}
