//! An in-memory provider for unit tests of the logic above providers.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ListPage, ObjectMeta, Provider, page_of, validate_key};
use crate::{Error, Result};

#[derive(Debug, Default)]
pub struct MemoryProvider {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

impl MemoryProvider {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn object(&self, key: &str) -> Result<Bytes> {
        validate_key(key)?;
        self.lock()
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NotFound { key: key.into() })
    }
}

#[async_trait]
impl Provider for MemoryProvider {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn is_remote(&self) -> bool {
        false
    }

    async fn get(&self, key: &str, max_len: u64) -> Result<Bytes> {
        let all = self.object(key)?;
        if all.len() as u64 > max_len {
            return Err(Error::too_large(key, all.len() as u64, max_len));
        }
        Ok(all)
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes> {
        let all = self.object(key)?;
        let end = offset.checked_add(len).filter(|e| *e <= all.len() as u64);
        match end {
            Some(end) => Ok(all.slice(offset as usize..end as usize)),
            None => Err(Error::corrupt(
                format!("object {key}"),
                format!(
                    "range {offset}+{len} is beyond its {} bytes (truncated?)",
                    all.len()
                ),
            )),
        }
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool> {
        validate_key(key)?;
        let mut m = self.lock();
        if m.contains_key(key) {
            return Ok(false);
        }
        m.insert(key.into(), body);
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        self.lock().remove(key);
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        Ok(self.lock().contains_key(key))
    }

    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: usize,
    ) -> Result<ListPage> {
        let keys = self
            .lock()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectMeta {
                key: k.clone(),
                size: v.len() as u64,
                modified_ms: None,
            })
            .collect();
        Ok(page_of(keys, page_token, page_size))
    }
}
