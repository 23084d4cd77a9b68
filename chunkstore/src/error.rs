//! Errors of the chunk store. Every variant names the object it concerns.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Broad classes of failure, used by callers to pick exit codes and by retry layers to decide
/// whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named object does not exist.
    NotFound,
    /// Bytes were read but fail a checksum, a hash or a structural check.
    Corrupt,
    /// The caller asked for something malformed (bad key, bad config).
    InvalidInput,
    /// The local filesystem or the provider failed.
    Io,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object `{key}` does not exist in the store")]
    NotFound { key: String },

    #[error("corrupt {object}: {detail}")]
    Corrupt { object: String, detail: String },

    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("I/O error on `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("provider {provider} failed on `{key}`: {detail}")]
    Provider {
        provider: String,
        key: String,
        detail: String,
        temporary: bool,
    },

    #[error(
        "session `{session}` was declared dead by a GC (its heartbeats stopped for longer than the lease, e.g. the store was unreachable or the process was paused); nothing was committed, run the command again"
    )]
    SessionRevoked { session: String },

    #[error("local chunk index at `{}`: {detail} (the index is only a cache: `rbk repair-index` rebuilds it from the store)", path.display())]
    Index { path: PathBuf, detail: String },

    #[error("local chunk index at `{}` is in use by another rbk process (e.g. `rbk serve` taking a backup): wait for it to finish and run the command again ({detail})", path.display())]
    IndexBusy { path: PathBuf, detail: String },
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::Io { .. }
            | Error::Provider { .. }
            | Error::Index { .. }
            | Error::IndexBusy { .. }
            | Error::SessionRevoked { .. } => ErrorKind::Io,
        }
    }

    /// Whether trying the same request again may succeed: throttling, server errors,
    /// timeouts and dropped connections of a provider.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Error::Provider {
                temporary: true,
                ..
            }
        )
    }

    /// An object larger than anything rbk writes under its key: read no further.
    pub fn too_large(key: &str, len: u64, max_len: u64) -> Self {
        Error::corrupt(
            format!("object `{key}`"),
            format!(
                "it is {len} bytes, more than the {max_len} bytes such an object may have (docs/format.md, \"Size limits\"); it is not one rbk wrote. Move it out of the store"
            ),
        )
    }

    pub fn corrupt(object: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            detail: detail.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
