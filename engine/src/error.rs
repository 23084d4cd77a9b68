//! Errors of the engine.
//!
//! Policy:
//! - each error names the module, backup or path involved and, where there is one, what the
//!   user can do;
//! - store errors pass through unchanged ([`Error::Store`]): their kind and status are the
//!   chunk store's (`rbk_chunkstore::error`);
//! - [`Error::kind`] is what callers branch on (the CLI's exit codes): a user's mistake is
//!   `InvalidInput`, a failing RocksDB is `Database`, a refused file is `PermissionDenied` —
//!   never a generic class when a precise one applies.

use std::path::PathBuf;

pub use rbk_chunkstore::ErrorKind;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] rbk_chunkstore::Error),

    #[error("data dir `{}` does not exist; pass --data-dir or set data.dir in rbk.yaml", path.display())]
    DataDirMissing { path: PathBuf },

    #[error("module `{module}` not found: `{}` does not exist", path.display())]
    ModuleNotFound { module: String, path: PathBuf },

    #[error(
        "backup `{backup_id}` not found in the store; run `rbk list --module {module}` to see the backups"
    )]
    BackupNotFound { backup_id: String, module: String },

    #[error(
        "`{id}` is not a backup id ({why}); ids look like `com.mycompany.MyModule-00000193E038B5F8-DE`"
    )]
    InvalidBackupId { id: String, why: String },

    #[error("`{}` violates the module layout: {detail}", path.display())]
    Layout { path: PathBuf, detail: String },

    #[error("restore target `{}` is not empty; pass --force to replace it (the current state is discarded)", path.display())]
    TargetNotEmpty { path: PathBuf },

    #[error(
        "restoring {backup_id} would break module `{dependent}`: it depends on {object} of `{module}`, which that backup does not have. Nothing was changed. Restore a backup that has {object}, or pass --ignore-dependencies (dangerous: `{dependent}` then reads an object that is gone)"
    )]
    DependencyBroken {
        dependent: String,
        module: String,
        object: String,
        backup_id: String,
    },

    #[error("manifest `{key}` is corrupt: {detail}")]
    CorruptManifest { key: String, detail: String },

    #[error("backup `{backup_id}`: {detail}")]
    Uncommitted { backup_id: String, detail: String },

    #[error("I/O error on `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "data dir `{}` belongs to store {bound}, but {provider} is store {store}: two clusters may be sharing one store, and a GC from here could delete what the other needs. Check backup.provider; if this cluster moved to that store on purpose, pass --rebind-store", data_dir.display()
    )]
    ForeignStore {
        data_dir: PathBuf,
        bound: String,
        store: String,
        provider: String,
    },

    #[error(
        "verify found {problems} problem(s) in {backups} backup(s) (the DAMAGED lines): restoring them would fail. A new backup of the module stores missing chunks again; without --read-data, chunk contents were not checked"
    )]
    Damaged { problems: usize, backups: usize },

    #[error(
        "module `{module}` is running ({detail}): copying its live files would not give a consistent backup. Back it up through its host (`rbk serve` answers `rbk backup` on this data dir), or stop it first"
    )]
    ModuleRunning { module: String, detail: String },

    #[error(
        "`{}` changed while rbk read it ({detail}); nothing was committed. Stop whatever writes it (a running module is backed up through its host) and run the backup again", path.display()
    )]
    FileChanged { path: PathBuf, detail: String },

    #[error("RocksDB failed on {what}: {detail}")]
    Database { what: String, detail: String },

    #[error(
        "no pending backup {backup_id} in the store: begin one with `rbk backup begin --module {module}` (a backup already committed, or given up on, has none)"
    )]
    PendingNotFound { backup_id: String, module: String },

    #[error(
        "pending backup {backup_id} was given up on ({detail}): nothing more can be added to it or committed. Begin a new one with `rbk backup begin --module {module}`"
    )]
    PendingGivenUp {
        backup_id: String,
        module: String,
        detail: String,
    },

    #[error(
        "backup {backup_id} cannot be committed: no part has task(s) {missing} of its {tasks} ({parts} part(s) so far). Run `rbk backup part --backupId {backup_id}` on the machines holding them, then commit again"
    )]
    PartsMissing {
        backup_id: String,
        missing: String,
        tasks: u32,
        parts: usize,
    },

    #[error("backup {backup_id} cannot be committed: {detail}")]
    PartsConflict { backup_id: String, detail: String },

    #[error("{0}")]
    InvalidInput(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Store(e) => e.kind(),
            Error::DataDirMissing { .. }
            | Error::ModuleNotFound { .. }
            | Error::BackupNotFound { .. }
            | Error::PendingNotFound { .. }
            | Error::PartsMissing { .. } => ErrorKind::NotFound,
            Error::PendingGivenUp { .. } => ErrorKind::Revoked,
            Error::CorruptManifest { .. } | Error::Uncommitted { .. } | Error::Damaged { .. } => {
                ErrorKind::Corrupt
            }
            Error::InvalidBackupId { .. }
            | Error::Layout { .. }
            | Error::TargetNotEmpty { .. }
            | Error::DependencyBroken { .. }
            | Error::ForeignStore { .. }
            | Error::ModuleRunning { .. }
            | Error::PartsConflict { .. }
            | Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::Io { source, .. } => rbk_chunkstore::error::io_kind(source),
            Error::FileChanged { .. } => ErrorKind::Io,
            Error::Database { .. } => ErrorKind::Database,
        }
    }

    /// A RocksDB failure on `what` (a PState, a module's database).
    pub fn database(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        Error::Database {
            what: what.to_string(),
            detail: e.to_string(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn changed(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::FileChanged {
            path: path.into(),
            detail: detail.into(),
        }
    }

    pub fn layout(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Layout {
            path: path.into(),
            detail: detail.into(),
        }
    }
}
