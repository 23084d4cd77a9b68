//! A provider backed by a local directory (or a mounted network filesystem).
//!
//! Crash safety of a write: the body goes to `<root>/.tmp/<random>`, is fsynced, and is then
//! hard-linked to its final name. `link` fails if the name exists, which makes put-if-absent
//! atomic, and a reader never sees a partial object under a final name. The parent directory
//! is fsynced so the new name survives a power loss. Leftover temp files are harmless.
//!
//! A store holds production data: objects are created `0600` and directories `0700`
//! (whatever the umask), so only the owner — the account rbk runs as — can read them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ListPage, ObjectMeta, Provider, page_of, validate_key};
use crate::safe_fs::create_private_dirs;
use crate::{Error, Result};

const TMP_DIR: &str = ".tmp";

#[derive(Debug, Clone)]
pub struct LocalProvider {
    root: PathBuf,
}

impl LocalProvider {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalProvider { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        if key == TMP_DIR || key.starts_with(".tmp/") {
            return Err(Error::InvalidInput(format!(
                "`{key}` is reserved for temporary files"
            )));
        }
        Ok(self.root.join(key))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(LocalProvider) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .map_err(|e| Error::InvalidInput(format!("local provider task failed: {e}")))?
    }
}

fn not_found_or_io(key: &str, path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::NotFound { key: key.into() }
    } else {
        Error::io(path, e)
    }
}

/// Opens an object's file: never through a symlink, never blocking on a FIFO (someone who can
/// write the store directory could plant either), only a regular file.
fn open_object(key: &str, path: &Path) -> Result<(File, fs::Metadata)> {
    crate::safe_fs::open_regular(path).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput => Error::corrupt(
            format!("object `{key}`"),
            format!("`{}` {e}; it is not an object rbk wrote", path.display()),
        ),
        _ => not_found_or_io(key, path, e),
    })
}

/// Links the durable file `tmp` to `path` unless an object is there (then returns false),
/// and makes the link durable. The caller removes `tmp`.
fn link_into_place(tmp: &Path, path: &Path) -> Result<bool> {
    let parent = path.parent().expect("object path has a parent");
    // A concurrent delete may remove the (then empty) parent between the two calls.
    let mut linked = create_private_dirs(parent).and_then(|_| fs::hard_link(tmp, path));
    for _ in 0..8 {
        match &linked {
            Err(e) if e.kind() == io::ErrorKind::NotFound && tmp.exists() => {
                linked = create_private_dirs(parent).and_then(|_| fs::hard_link(tmp, path));
            }
            _ => break,
        }
    }
    match linked {
        Ok(()) => {
            sync_dir(parent)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

fn walk(dir: &Path, root: &Path, prefix: &str, out: &mut Vec<ObjectMeta>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let rel = path.strip_prefix(root).expect("walk stays under root");
        let Some(key) = rel
            .to_str()
            .map(|k| k.replace(std::path::MAIN_SEPARATOR, "/"))
        else {
            continue; // not UTF-8: not an object rbk wrote
        };
        if key == TMP_DIR {
            continue;
        }
        // A concurrent GC may delete an object between the directory read and its stat: it
        // is simply not in this listing.
        let ft = match entry.file_type() {
            Ok(ft) => ft,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path, e)),
        };
        if ft.is_dir() {
            // Descend only where keys under this directory can match the prefix.
            let dir_key = format!("{key}/");
            if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                walk(&path, root, prefix, out)?;
            }
        } else if ft.is_file() && key.starts_with(prefix) {
            let md = match entry.metadata() {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            let modified_ms = md
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64);
            out.push(ObjectMeta {
                key,
                size: md.len(),
                modified_ms,
            });
        }
    }
    Ok(())
}

#[async_trait]
impl Provider for LocalProvider {
    fn describe(&self) -> String {
        format!("fs {}", self.root.display())
    }

    fn is_remote(&self) -> bool {
        false
    }

    async fn get(&self, key: &str, max_len: u64) -> Result<Bytes> {
        let path = self.path_of(key)?;
        let key = key.to_string();
        self.blocking(move |_| {
            let (f, md) = open_object(&key, &path)?;
            if md.len() > max_len {
                return Err(Error::too_large(&key, md.len(), max_len));
            }
            let mut buf = Vec::with_capacity(md.len() as usize);
            (&f).take(max_len.saturating_add(1))
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(&path, e))?;
            if buf.len() as u64 > max_len {
                return Err(Error::too_large(&key, buf.len() as u64, max_len));
            }
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes> {
        self.get_range_into(key, offset, len, Vec::new())
            .await
            .map(Bytes::from)
    }

    async fn get_range_into(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let path = self.path_of(key)?;
        let key = key.to_string();
        self.blocking(move |_| {
            let (mut f, md) = open_object(&key, &path)?;
            let size = md.len();
            let beyond = || {
                Error::corrupt(
                    format!("object {key}"),
                    format!("range {offset}+{len} is beyond its {size} bytes (truncated?)"),
                )
            };
            if offset.checked_add(len).is_none_or(|end| end > size) {
                return Err(beyond());
            }
            buf.clear();
            buf.reserve(len as usize);
            // `read_to_end` fills spare capacity without zeroing it first.
            f.seek(SeekFrom::Start(offset))
                .and_then(|_| (&mut f).take(len).read_to_end(&mut buf))
                .map_err(|e| Error::io(&path, e))?;
            if buf.len() as u64 != len {
                return Err(beyond()); // shrank since its size was read
            }
            Ok(buf)
        })
        .await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool> {
        let path = self.path_of(key)?;
        self.blocking(move |me| {
            if path.exists() {
                return Ok(false);
            }
            let tmp_dir = me.root.join(TMP_DIR);
            create_private_dirs(&tmp_dir).map_err(|e| Error::io(&tmp_dir, e))?;
            let tmp = tmp_dir.join(format!("{:016x}", rand::random::<u64>()));
            let write = || -> io::Result<()> {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(&body)?;
                f.sync_all()
            };
            let linked = write()
                .map_err(|e| Error::io(&tmp, e))
                .and_then(|()| link_into_place(&tmp, &path));
            let _ = fs::remove_file(&tmp);
            linked
        })
        .await
    }

    fn spool_dir(&self) -> Option<PathBuf> {
        Some(self.root.join(TMP_DIR))
    }

    /// Makes the spooled file durable and links it into place: no byte is copied.
    async fn put_spooled_if_absent(&self, key: &str, spooled: &Path) -> Result<bool> {
        let path = self.path_of(key)?;
        let tmp = spooled.to_path_buf();
        self.blocking(move |me| {
            if tmp.parent() != Some(me.root.join(TMP_DIR).as_path()) {
                return Err(Error::InvalidInput(format!(
                    "`{}` is not in the store's spool dir",
                    tmp.display()
                )));
            }
            if path.exists() {
                return Ok(false);
            }
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&tmp, e))?;
            link_into_place(&tmp, &path)
        })
        .await
    }

    async fn collect_leftovers(&self, older_than: std::time::Duration) -> Result<u64> {
        self.blocking(move |me| {
            let dir = me.root.join(TMP_DIR);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(Error::io(&dir, e)),
            };
            let cutoff = std::time::SystemTime::now() - older_than;
            let mut deleted = 0;
            for e in entries.flatten() {
                // An in-flight write takes seconds; anything this old was abandoned by a
                // process that died between writing and linking it.
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff);
                if old && fs::remove_file(e.path()).is_ok() {
                    deleted += 1;
                }
            }
            Ok(deleted)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        self.blocking(move |me| {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io(&path, e)),
            }
            // Prune directories the delete emptied (e.g. a finished session's), so they do
            // not pile up and slow listings; `remove_dir` refuses a non-empty one.
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != me.root) {
                if fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let path = self.path_of(key)?;
        self.blocking(move |_| Ok(path.is_file())).await
    }

    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: usize,
    ) -> Result<ListPage> {
        let prefix = prefix.to_string();
        let token = page_token.map(str::to_string);
        self.blocking(move |me| {
            let mut out = Vec::new();
            walk(&me.root, &me.root, &prefix, &mut out)?;
            Ok(page_of(out, token.as_deref(), page_size))
        })
        .await
    }
}
