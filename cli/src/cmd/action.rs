//! `rbk backup --action <op>`: every operation through one command, as the system we model
//! drives its backup tool. It accepts every operation's flags, and hands each operation the
//! same arguments its own command (`rbk list`, `rbk gc`, ...) takes.

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::backup::BackupArgs;
use super::delete::DeleteArgs;
use super::gc::{GcArgs, GcFlags};
use super::info::InfoArgs;
use super::list::ListArgs;
use super::repair_index::RepairIndexArgs;
use super::restore::{RestoreArgs, RestoreFlags};
use super::verify::{VerifyArgs, VerifyFlags};
use super::{BackupIdArg, Ctx, ModuleArg};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Backup,
    List,
    Info,
    Restore,
    /// Delete one backup (--backupId); its chunks are freed by the next gc.
    Delete,
    /// Delete backups by retention policy and free unreferenced packs.
    Gc,
    /// Check that backups are restorable: every chunk present (and with --read-data, intact).
    Verify,
    /// Rebuild the local index from the store.
    RepairIndex,
    /// Begin a backup written in parts by several machines (--module); prints its id.
    Begin,
    /// Back up this data dir's tasks into the pending backup --backupId.
    Part,
    /// Commit the pending backup --backupId once its parts cover every task.
    Commit,
    /// Give up on the pending backup --backupId.
    Abort,
}

/// `rbk backup begin|part|commit|abort`: the steps of a backup in parts, as words.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Begin,
    Part,
    Commit,
    Abort,
}

#[derive(Args, Debug)]
pub struct ActionArgs {
    /// A step of a backup in parts (docs/distributed.md): `begin` (--module), then `part`
    /// on each machine and `commit` (--backupId); `abort` gives one up.
    #[arg(value_enum, conflicts_with = "action")]
    pub step: Option<Step>,
    #[arg(long, value_enum, default_value = "backup")]
    pub action: Action,
    #[command(flatten)]
    pub module: ModuleArg,
    #[command(flatten)]
    pub backup_id: BackupIdArg,
    /// list: page token printed by the previous page.
    #[arg(long = "pageToken", alias = "page-token")]
    pub page_token: Option<String>,
    /// list: backups per page.
    #[arg(long = "pageSize", alias = "page-size", default_value_t = 20)]
    pub page_size: usize,
    #[command(flatten)]
    pub restore: RestoreFlags,
    #[command(flatten)]
    pub gc: GcFlags,
    #[command(flatten)]
    pub verify: VerifyFlags,
    /// backup, with a mirror: how long to wait, once the backup committed, for the mirror to
    /// catch up. A mirror still behind or unreachable then is reported on stderr, not an
    /// error: the backup is in the store, and the next backup, `rbk mirror sync` or `rbk
    /// serve` catches up.
    #[arg(long = "mirror-wait", value_name = "SECONDS", default_value_t = 300)]
    pub mirror_wait: u64,
    /// backup: back up in parts: begin, write this data dir's part, wait up to SECONDS for
    /// the parts of the other machines (their `rbk serve` writes them), then commit. Fails
    /// (exit 3, naming the tasks missing) and gives the backup up if they do not all come.
    #[arg(long = "wait-parts", value_name = "SECONDS")]
    pub wait_parts: Option<u64>,
    /// begin, --wait-parts: how long a pending backup waits for its parts and commit before
    /// GC gives up on it (it holds back GC's sweeps meanwhile).
    #[arg(
        long = "pending-lease-seconds",
        value_name = "SECONDS",
        default_value_t = 86_400
    )]
    pub pending_lease_seconds: u64,
}

pub fn run(ctx: &Ctx, a: &ActionArgs) -> Result<()> {
    let (module, backup_id) = (a.module.clone(), a.backup_id.clone());
    let action = match a.step {
        Some(Step::Begin) => Action::Begin,
        Some(Step::Part) => Action::Part,
        Some(Step::Commit) => Action::Commit,
        Some(Step::Abort) => Action::Abort,
        None => a.action,
    };
    match action {
        Action::Begin => {
            super::parts::check_lease(a.pending_lease_seconds)?;
            let m = super::need(&module.module, "--module", "backup begin")?;
            super::parts::begin(ctx, m, a.pending_lease_seconds)
        }
        Action::Part => super::parts::part(ctx, &backup_id.backup_id),
        Action::Commit => super::parts::commit(ctx, &backup_id.backup_id),
        Action::Abort => super::parts::abort(ctx, &backup_id.backup_id),
        Action::Backup if a.wait_parts.is_some() => {
            super::parts::check_lease(a.pending_lease_seconds)?;
            let m = super::need(&module.module, "--module", "backup")?;
            super::parts::whole(ctx, m, a.wait_parts.unwrap_or(0), a.pending_lease_seconds)
        }
        Action::Backup => super::backup::run(
            ctx,
            &BackupArgs {
                module,
                mirror_wait: a.mirror_wait,
            },
        ),
        Action::List => super::list::run(
            ctx,
            &ListArgs {
                module,
                page_token: a.page_token.clone(),
                page_size: a.page_size,
            },
        ),
        Action::Info => super::info::run(ctx, &InfoArgs { backup_id }),
        Action::Restore => super::restore::run(
            ctx,
            &RestoreArgs {
                backup_id,
                flags: a.restore.clone(),
            },
        ),
        Action::Delete => super::delete::run(ctx, &DeleteArgs { backup_id }),
        Action::Gc => super::gc::run(
            ctx,
            &GcArgs {
                module: module.module,
                backup_id: backup_id.backup_id,
                flags: a.gc.clone(),
            },
        ),
        Action::Verify => super::verify::run(
            ctx,
            &VerifyArgs {
                module,
                backup_id,
                flags: a.verify.clone(),
            },
        ),
        Action::RepairIndex => super::repair_index::run(ctx, &RepairIndexArgs {}),
    }
}
