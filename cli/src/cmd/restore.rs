//! `rbk restore --backupId B`: restore a backup into the data dir; a module a host runs is
//! stopped, replaced and started again (with `--yes`).

use anyhow::{Context as _, Result};
use clap::Args;
use rbk_engine::BackupId;
use rbk_engine::ops::restore;
use serde_json::json;

use super::{BackupIdArg, Ctx, Report, mib, need, open_repo, usage};

#[derive(Args, Debug, Default, Clone)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub backup_id: BackupIdArg,
    #[command(flatten)]
    pub flags: RestoreFlags,
}

#[derive(Args, Debug, Default, Clone)]
pub struct RestoreFlags {
    /// Restore over a non-empty module dir (its current state is discarded).
    #[arg(long)]
    pub force: bool,
    /// Restore a module a host is running: it is stopped, replaced and started again.
    #[arg(long)]
    pub yes: bool,
    /// restore: skip fsync of restored files and dirs. Faster, but a power loss soon after can
    /// leave the module with empty or missing files; for throwaway copies only.
    #[arg(long = "no-sync")]
    pub no_sync: bool,
    /// restore: keep setuid/setgid bits of restored files (stripped by default, so a store
    /// writer cannot plant a setuid binary through a restore).
    #[arg(long = "keep-setid")]
    pub keep_setid: bool,
    /// restore: go ahead even if another module of the data dir depends on a depot or PState
    /// the backup does not have. Dangerous: that module then reads an object that is gone.
    #[arg(long = "ignore-dependencies")]
    pub ignore_dependencies: bool,
    /// restore: do not back up the state being replaced first (by default it is, and the
    /// restore prints how to undo it).
    #[arg(long = "no-undo-backup")]
    pub no_undo_backup: bool,
    /// restore: only these tasks (comma-separated, e.g. `2,3`), with the module's own files.
    #[arg(long, value_delimiter = ',', value_name = "TASKS", conflicts_with_all = ["threads", "workers", "worker"])]
    pub tasks: Option<Vec<u32>>,
    /// restore, placed: the module's task threads (Rama's launch setting; with --workers and
    /// --worker).
    #[arg(long, value_name = "T", requires_all = ["workers", "worker"])]
    pub threads: Option<u32>,
    /// restore, placed: the worker processes the module runs in.
    #[arg(long, value_name = "W", requires_all = ["threads", "worker"])]
    pub workers: Option<u32>,
    /// restore, placed: replicas of each task, on different workers (default 1).
    #[arg(
        long = "replicationFactor",
        alias = "replication-factor",
        value_name = "R",
        requires = "worker"
    )]
    pub replication_factor: Option<u32>,
    /// restore, placed: which worker (0..W-1) this machine is: it gets the tasks, replicas
    /// included, that worker runs (placement in docs/distributed.md), and module.json
    /// records the launch settings.
    #[arg(long, value_name = "I", requires_all = ["threads", "workers"])]
    pub worker: Option<u32>,
}

impl RestoreFlags {
    /// Which tasks to restore.
    fn selection(&self) -> restore::Selection {
        use rbk_engine::placement::Launch;
        if let Some(t) = &self.tasks {
            return restore::Selection::Tasks(t.iter().copied().collect());
        }
        match (self.threads, self.workers, self.worker) {
            (Some(threads), Some(workers), Some(worker)) => restore::Selection::Worker {
                launch: Launch {
                    threads,
                    workers,
                    replication_factor: self.replication_factor.unwrap_or(1),
                },
                worker,
            },
            _ => restore::Selection::All,
        }
    }
}

struct Restored {
    id: BackupId,
    report: restore::RestoreReport,
}

impl Report for Restored {
    fn json(&self) -> serde_json::Value {
        let (id, r) = (&self.id, &self.report);
        let resets: Vec<_> = r
            .resets
            .iter()
            .map(|x| json!({"module": x.module, "task": x.task, "topology": x.topology, "depot": x.depot, "from": x.from, "to": x.to}))
            .collect();
        json!({"backup_id": id.to_string(), "target": r.target, "tasks": r.tasks, "files": r.files, "bytes": r.bytes, "seconds": r.seconds,
               "undo_backup_id": r.undo_backup_id.as_ref().map(ToString::to_string), "epoch": r.epoch, "offsets_reset": resets})
    }

    fn text(&self) -> String {
        let (id, r) = (&self.id, &self.report);
        let mut out = format!(
            "restored {id} into {} ({} files, {:.1} MiB, {:.2}s)",
            r.target.display(),
            r.files,
            mib(r.bytes),
            r.seconds
        );
        for x in &r.resets {
            out.push_str(&format!("\noffset reset: {x}"));
        }
        if let Some(undo) = &r.undo_backup_id {
            out.push_str(&format!(
                "\nthe replaced state is backup {undo}; undo with rbk restore --backupId {undo} --force"
            ));
        }
        out
    }
}

pub fn run(ctx: &Ctx, args: &RestoreArgs) -> Result<()> {
    let cfg = ctx.cfg;
    let bars = ctx.bars();
    let id = BackupId::parse(need(&args.backup_id.backup_id, "--backupId", "restore")?)?;
    let mut repo = open_repo(cfg, false)?;
    // What the store lacks, or holds damaged, is read from the mirror. A mirror that does
    // not answer within a while is given up on: the store alone may well be enough.
    let patience = std::time::Instant::now() + std::time::Duration::from_secs(30);
    if let Err(e) = super::attach_mirror(cfg, &mut repo, Some(patience)) {
        eprintln!("rbk: restoring without the mirror: {e:#}");
    }
    repo.set_mirror_deadline(None);
    // A module a host runs is stopped, restored and started from the restored state.
    let mut host = rbk_engine::host::control::Client::connect(&cfg.data_dir)?;
    let running = match host.as_mut() {
        Some(c) => c.running()?.contains(&id.module),
        None => false,
    };
    if running && !args.flags.yes {
        return Err(usage(format!(
            "module {} is running on this data dir: restoring stops it, replaces its state with {id} and starts it again from there. Its current state is discarded and this cannot be undone; pass --yes to go ahead",
            id.module
        )));
    }
    // Refused before a served module is stopped: a refused restore changes nothing at all.
    // (`restore::restore` checks too; this only runs it before the stop.)
    if running && !args.flags.ignore_dependencies {
        rbk_engine::ops::dependents::check_restore(&cfg.data_dir, &repo.load_committed(&id)?)?;
    }
    let mut host = host.filter(|_| running);
    if let Some(c) = host.as_mut() {
        c.stop(&id.module)?;
    }
    // `--yes` for a served module stands for `--force`: its state is replaced.
    let force = args.flags.force || host.is_some();
    let r = restore::restore_selected(
        &repo,
        &cfg.data_dir,
        &id,
        restore::RestoreOptions {
            force,
            no_sync: args.flags.no_sync,
            keep_setid: args.flags.keep_setid,
            ignore_dependencies: args.flags.ignore_dependencies,
            undo_backup: !args.flags.no_undo_backup,
        },
        &args.flags.selection(),
        &bars,
    );
    // Started again either way: with the restored state, or (a failed restore leaves
    // the module untouched) with the old one.
    if let Some(c) = host.as_mut() {
        let started = c.start(&id.module);
        if r.is_ok() {
            started.context("the module was restored but the host could not start it")?;
        }
    }
    let r = r?;
    let from_mirror = repo.store().fallback_reads();
    if from_mirror > 0 {
        eprintln!(
            "rbk: {from_mirror} chunk(s) missing or damaged in the store `{}` were read from its mirror; `rbk verify --side primary` shows which backups the store cannot restore alone",
            repo.store().describe()
        );
    }
    ctx.show(&Restored { id, report: r });
    Ok(())
}
