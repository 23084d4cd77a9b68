//! Errors of the chunk store.
//!
//! Policy:
//! - every error names the object it concerns (key, path, pack, session) and, where there is
//!   one, what the user can do about it;
//! - [`Error::kind`] says *what happened*, in classes a caller can act on (exit codes, messages);
//!   [`Error::status`] says *whether trying again can help*: `Temporary` errors are retried by
//!   the retry layer, and come out as `Persistent` once it gave up; everything else is
//!   `Permanent`;
//! - a provider classifies its own failures (an S3 403 is `PermissionDenied`, a 503
//!   `Unavailable` and temporary); layers above never guess from message text;
//! - the kind set grows (`#[non_exhaustive]`): match with a fallback arm.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What happened, broadly enough to pick an exit code and a message by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The named object does not exist.
    NotFound,
    /// Bytes were read but fail a checksum, a hash or a structural check.
    Corrupt,
    /// The caller asked for something malformed (bad key, bad argument).
    InvalidInput,
    /// A configuration cannot work as written (a provider string, a missing bucket).
    ConfigInvalid,
    /// The store or the operating system refused: credentials, policies, file modes.
    PermissionDenied,
    /// The store asked us to slow down.
    RateLimited,
    /// The store did not answer, or answered with a server failure.
    Unavailable,
    /// A local database (the chunk index, a PState) failed.
    Database,
    /// Something is held by another process: the local index, a running module.
    Busy,
    /// A GC declared the session dead; nothing was committed.
    Revoked,
    /// The local filesystem or a provider failed in some other way.
    Io,
}

/// Whether trying the same request again may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Trying again cannot help.
    Permanent,
    /// Trying again may help (throttling, server errors, timeouts, dropped connections).
    Temporary,
    /// Was temporary, and stayed so through every retry.
    Persistent,
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
        kind: ErrorKind,
        status: Status,
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
            Error::Io { source, .. } => io_kind(source),
            Error::Provider { kind, .. } => *kind,
            Error::Index { .. } => ErrorKind::Database,
            Error::IndexBusy { .. } => ErrorKind::Busy,
            Error::SessionRevoked { .. } => ErrorKind::Revoked,
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Error::Provider { status, .. } => *status,
            _ => Status::Permanent,
        }
    }

    /// Whether the failure is of a kind that passes (throttling, server errors, timeouts,
    /// dropped connections of a provider), even if retries already gave up on it
    /// (`Persistent`). Only `Temporary` ones are worth another attempt.
    pub fn is_temporary(&self) -> bool {
        matches!(self.status(), Status::Temporary | Status::Persistent)
    }

    /// A provider failure. `kind` says what happened; the status follows from it: rate
    /// limits and unavailability are temporary, the rest permanent.
    pub fn provider(
        provider: impl Into<String>,
        key: impl Into<String>,
        detail: impl Into<String>,
        kind: ErrorKind,
    ) -> Self {
        let status = match kind {
            ErrorKind::RateLimited | ErrorKind::Unavailable => Status::Temporary,
            _ => Status::Permanent,
        };
        Error::Provider {
            provider: provider.into(),
            key: key.into(),
            detail: detail.into(),
            kind,
            status,
        }
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

/// What a local I/O error says happened.
pub fn io_kind(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::Io,
    }
}
