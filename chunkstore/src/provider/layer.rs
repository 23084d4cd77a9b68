//! The base of every provider that wraps another (retries, fault injection, test hooks).
//!
//! A [`Layer`] names the provider it wraps and overrides only what it changes; every other
//! method forwards. Each type implementing `Layer` is a [`Provider`] through the blanket
//! impl below, so a method added to `Provider` later reaches every wrapped provider without
//! touching a layer — a wrapper that re-implemented the trait by hand used to miss
//! `get_range_into`, and silently lost the inner provider's buffer reuse.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ListPage, Provider};
use crate::Result;

#[async_trait]
pub trait Layer: Send + Sync + std::fmt::Debug {
    /// The provider this layer wraps.
    fn inner(&self) -> &dyn Provider;

    fn describe(&self) -> String {
        self.inner().describe()
    }

    fn is_remote(&self) -> bool {
        self.inner().is_remote()
    }

    async fn get(&self, key: &str, max_len: u64) -> Result<Bytes> {
        self.inner().get(key, max_len).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes> {
        self.inner().get_range(key, offset, len).await
    }

    async fn get_range_into(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        self.inner().get_range_into(key, offset, len, buf).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool> {
        self.inner().put_if_absent(key, body).await
    }

    fn spool_dir(&self) -> Option<PathBuf> {
        self.inner().spool_dir()
    }

    async fn put_spooled_if_absent(&self, key: &str, path: &Path) -> Result<bool> {
        self.inner().put_spooled_if_absent(key, path).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner().delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.inner().delete_many(keys).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.inner().exists(key).await
    }

    async fn collect_leftovers(&self, older_than: std::time::Duration) -> Result<u64> {
        self.inner().collect_leftovers(older_than).await
    }

    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: usize,
    ) -> Result<ListPage> {
        self.inner().list(prefix, page_token, page_size).await
    }
}

#[async_trait]
impl<L: Layer> Provider for L {
    fn describe(&self) -> String {
        Layer::describe(self)
    }

    fn is_remote(&self) -> bool {
        Layer::is_remote(self)
    }

    async fn get(&self, key: &str, max_len: u64) -> Result<Bytes> {
        Layer::get(self, key, max_len).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes> {
        Layer::get_range(self, key, offset, len).await
    }

    async fn get_range_into(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        Layer::get_range_into(self, key, offset, len, buf).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool> {
        Layer::put_if_absent(self, key, body).await
    }

    fn spool_dir(&self) -> Option<PathBuf> {
        Layer::spool_dir(self)
    }

    async fn put_spooled_if_absent(&self, key: &str, path: &Path) -> Result<bool> {
        Layer::put_spooled_if_absent(self, key, path).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        Layer::delete(self, key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        Layer::delete_many(self, keys).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        Layer::exists(self, key).await
    }

    async fn collect_leftovers(&self, older_than: std::time::Duration) -> Result<u64> {
        Layer::collect_leftovers(self, older_than).await
    }

    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: usize,
    ) -> Result<ListPage> {
        Layer::list(self, prefix, page_token, page_size).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::provider::MemoryProvider;

    /// Overrides nothing.
    #[derive(Debug)]
    struct Passthrough(Arc<dyn Provider>);

    #[async_trait]
    impl Layer for Passthrough {
        fn inner(&self) -> &dyn Provider {
            self.0.as_ref()
        }
    }

    /// Counts the ranged reads into a buffer that reach it.
    #[derive(Debug)]
    struct CountsBufferedReads(Arc<dyn Provider>, AtomicUsize);

    #[async_trait]
    impl Layer for CountsBufferedReads {
        fn inner(&self) -> &dyn Provider {
            self.0.as_ref()
        }

        async fn get_range_into(
            &self,
            key: &str,
            offset: u64,
            len: u64,
            buf: Vec<u8>,
        ) -> Result<Vec<u8>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.get_range_into(key, offset, len, buf).await
        }
    }

    #[tokio::test]
    async fn a_layer_forwards_what_it_does_not_override_buffer_reuse_included() {
        let mem: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        mem.put_if_absent("k", Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        let counting = Arc::new(CountsBufferedReads(mem, AtomicUsize::new(0)));
        let outer = Passthrough(counting.clone());
        let got = Provider::get_range_into(&outer, "k", 2, 3, Vec::with_capacity(64))
            .await
            .unwrap();
        assert_eq!(&got, b"234");
        // Through the outer layer, the call stayed a buffered read (not a plain ranged read
        // copied into the buffer, which is what a wrapper without the method would do).
        assert_eq!(counting.1.load(Ordering::SeqCst), 1);
        assert_eq!(Provider::describe(&outer), "memory");
    }
}
