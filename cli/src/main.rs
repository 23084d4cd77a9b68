//! `rbk`: back up and restore the state of stream-processing modules.
//!
//! Exit codes: 0 success; 1 failure (I/O, provider); 2 usage or invalid input; 3 not found
//! (module, backup, data dir, chunk); 4 corruption detected (manifest, pack or chunk).

/// `println!` that takes a closed stdout (`rbk list | head -1`) as the reader being done and
/// exits quietly, instead of panicking as `println!` does.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*)
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            std::process::exit(0);
        }
    }};
}

mod config;
mod demo;
mod progress;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rbk_chunkstore::provider;
use rbk_engine::ops::{backup, gc, info, list, restore, verify};
use rbk_engine::{BackupId, ErrorKind, Repo, repo};
use serde_json::json;

use crate::config::Config;
use crate::progress::Bars;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_CORRUPT: u8 = 4;
pub const EXIT_DENIED: u8 = 5;

#[derive(Parser, Debug)]
#[command(
    name = "rbk",
    version,
    about = "Deduplicating backups of stream-processing module state"
)]
struct Cli {
    /// Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`).
    #[arg(
        long = "data-dir",
        alias = "dataDir",
        global = true,
        value_name = "DIR"
    )]
    data_dir: Option<PathBuf>,
    /// Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`).
    #[arg(long, global = true, value_name = "SPEC")]
    provider: Option<String>,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release
    /// the local index before giving up.
    #[arg(
        long = "index-wait",
        global = true,
        value_name = "SECONDS",
        default_value_t = 60
    )]
    index_wait: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
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
}

#[derive(Args, Debug, Default)]
struct Target {
    /// Module name, e.g. com.mycompany.BankModule.
    #[arg(long)]
    module: Option<String>,
    /// Backup id, e.g. com.mycompany.BankModule-00000193E038B5F8-DE.
    #[arg(long = "backupId", alias = "backup-id")]
    backup_id: Option<String>,
    /// Page token printed by the previous `list` page.
    #[arg(long = "pageToken", alias = "page-token")]
    page_token: Option<String>,
    /// Backups per `list` page.
    #[arg(long = "pageSize", alias = "page-size", default_value_t = 20)]
    page_size: usize,
    /// Restore over a non-empty module dir (its current state is discarded).
    #[arg(long)]
    force: bool,
    /// Restore a module a host is running: it is stopped, replaced and started again.
    #[arg(long)]
    yes: bool,
    /// restore: skip fsync of restored files and dirs. Faster, but a power loss soon after can
    /// leave the module with empty or missing files; for throwaway copies only.
    #[arg(long = "no-sync")]
    no_sync: bool,
    /// restore: keep setuid/setgid bits of restored files (stripped by default, so a store
    /// writer cannot plant a setuid binary through a restore).
    #[arg(long = "keep-setid")]
    keep_setid: bool,
    #[command(flatten)]
    gc: GcFlags,
    #[command(flatten)]
    verify: VerifyFlags,
}

#[derive(Args, Debug, Default)]
struct VerifyFlags {
    /// verify: download every chunk and check it against its BLAKE3 id.
    #[arg(long = "read-data")]
    read_data: bool,
    /// verify: download and check this share of the distinct chunks, chosen at random
    /// (e.g. `10%`).
    #[arg(
        long = "read-data-subset",
        value_name = "PERCENT",
        conflicts_with = "read_data"
    )]
    read_data_subset: Option<String>,
}

#[derive(Args, Debug, Default)]
struct GcFlags {
    /// gc: print what would be deleted; change nothing.
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// gc: delete backups older than this (overrides backup.max.age.hours of every module).
    #[arg(long = "max-age-hours", value_name = "HOURS")]
    max_age_hours: Option<f64>,
    /// gc: keep at least this many newest backups per module (overrides
    /// backup.min.backups.to.keep).
    #[arg(long = "min-backups-to-keep", value_name = "N")]
    min_keep: Option<u64>,
    /// gc: rewrite packs with more than this fraction of their bytes unreferenced.
    #[arg(long = "repack-threshold", value_name = "FRACTION", default_value_t = gc::DEFAULT_REPACK_THRESHOLD)]
    repack_threshold: f64,
    /// gc: run even though the data dir belongs to another store, and bind it to this one.
    #[arg(long = "rebind-store")]
    rebind_store: bool,
    /// gc: declare a backup or restore dead after this long without a heartbeat.
    #[arg(long = "lease-seconds", value_name = "SECONDS")]
    lease_seconds: Option<u64>,
    /// gc: declare this session dead now, whatever its heartbeats say (repeatable; `gc
    /// --dry-run` lists the sessions). Its backup, if still running, fails and commits
    /// nothing.
    #[arg(long = "revoke", value_name = "SESSION")]
    revoke: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Back up a module; with --action, any backup operation (Rama-style).
    Backup {
        #[arg(long, value_enum, default_value = "backup")]
        action: Action,
        #[command(flatten)]
        target: Target,
    },
    /// List a module's backups, newest first.
    List(Target),
    /// Show what a backup holds.
    Info(Target),
    /// Restore a backup into the data dir.
    Restore(Target),
    /// Delete one backup; its chunks are freed by the next gc.
    Delete(Target),
    /// Delete backups by retention policy, then free packs no retained backup needs.
    Gc(Target),
    /// Check that backups are restorable without restoring them.
    Verify(Target),
    /// Rebuild the local chunk index from the store's pack trailers.
    RepairIndex(Target),
    /// Run the modules of the data dir (those with a built-in `rbk.definition`), answer
    /// `rbk backup`/`rbk restore` on a control socket, and take periodic backups and GC as
    /// their dynamic options say.
    Serve(serve::ServeArgs),
    /// Generate or advance realistic module state (real RocksDB PStates).
    Testdata {
        #[command(subcommand)]
        command: TestdataCommand,
    },
    /// Generate a module, back it up over several generations, restore and check every
    /// backup, and print dedup ratio and throughput.
    Demo(demo::DemoArgs),
    /// Print the effective configuration and where each value came from.
    Config,
    /// Print a shell completion script (e.g. `rbk completions bash > /etc/bash_completion.d/rbk`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `rbk man > /usr/local/share/man/man1/rbk.1`; with
    /// --out-dir, write it and one page per subcommand (rbk-backup.1, …) there.
    Man {
        #[arg(long = "out-dir", value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum TestdataCommand {
    /// Write a new module into the data dir.
    Generate {
        #[arg(long, default_value = "com.rbk.BankModule")]
        module: String,
        #[arg(long, default_value_t = 4)]
        tasks: u32,
        #[arg(long = "size-mib", default_value_t = 64)]
        size_mib: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Create an empty module that `rbk serve` can run (definition `bank` or `pageviews`).
    Create {
        #[arg(long, default_value = "com.rbk.LiveBank")]
        module: String,
        #[arg(long, default_value = "bank")]
        definition: String,
        #[arg(long, default_value_t = 4)]
        tasks: u32,
    },
    /// Move a generated module one generation forward.
    Advance {
        #[arg(long, default_value = "com.rbk.BankModule")]
        module: String,
        #[arg(long, default_value_t = 5)]
        percent: u64,
    },
}

fn exit_code_of(e: &anyhow::Error) -> u8 {
    let kind = e.chain().find_map(|c| {
        c.downcast_ref::<rbk_engine::Error>()
            .map(rbk_engine::Error::kind)
            .or_else(|| {
                c.downcast_ref::<rbk_chunkstore::Error>()
                    .map(rbk_chunkstore::Error::kind)
            })
    });
    match kind {
        Some(ErrorKind::NotFound) => EXIT_NOT_FOUND,
        Some(ErrorKind::Corrupt) => EXIT_CORRUPT,
        Some(ErrorKind::InvalidInput | ErrorKind::ConfigInvalid) => EXIT_USAGE,
        Some(ErrorKind::PermissionDenied) => EXIT_DENIED,
        // I/O, an unavailable or throttling store, a failing RocksDB, a busy index, a revoked
        // session: the command failed, and running it again (after the cause) may succeed.
        _ => EXIT_FAILURE,
    }
}

fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(rbk_engine::Error::InvalidInput(msg))
}

fn need<'a>(v: &'a Option<String>, flag: &str, action: &str) -> Result<&'a str> {
    v.as_deref()
        .ok_or_else(|| usage(format!("`{action}` needs {flag}")))
}

/// Seconds [`open_repo`] waits for the local index (`--index-wait`).
static INDEX_WAIT_SECONDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(60);

/// Opens the store. The local index admits one process at a time; while another rbk process
/// has it (a backup or GC round of `rbk serve`, typically seconds), this waits for it, up to
/// `--index-wait` seconds, rather than failing a command the operator would simply rerun.
fn open_repo(cfg: &Config, create: bool) -> Result<Repo> {
    use std::sync::atomic::Ordering;
    let wait = INDEX_WAIT_SECONDS.load(Ordering::Relaxed);
    open_repo_within(cfg, create, std::time::Duration::from_secs(wait))
}

/// [`open_repo`], waiting at most `wait` for the index.
fn open_repo_within(cfg: &Config, create: bool, wait: std::time::Duration) -> Result<Repo> {
    announce_default_store(cfg);
    let deadline = std::time::Instant::now() + wait;
    let mut told = false;
    loop {
        let p = provider::from_spec(&cfg.provider)?;
        match Repo::open(p, &repo::index_root(&cfg.data_dir), create) {
            Err(rbk_engine::Error::Store(rbk_chunkstore::Error::IndexBusy { path, .. }))
                if std::time::Instant::now() < deadline =>
            {
                if !told {
                    eprintln!(
                        "rbk: another rbk process is using the local index `{}`; waiting up to {} s for it (--index-wait)",
                        path.display(),
                        wait.as_secs()
                    );
                    told = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            r => return r.with_context(|| format!("opening the store `{}`", cfg.provider)),
        }
    }
}

/// Says on stderr, once per process, that the store is the embedded default, so backups never
/// land in `./data-backups` without the operator being told.
fn announce_default_store(cfg: &Config) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if let Some(line) = cfg.default_store_notice() {
        ONCE.call_once(|| eprintln!("{line}"));
    }
}

fn print(json_out: bool, value: serde_json::Value, text: impl FnOnce() -> String) {
    if json_out {
        outln!("{value}");
    } else {
        let text = text();
        if !text.is_empty() {
            outln!("{text}");
        }
    }
}

fn run_action(cli: &Cli, cfg: &Config, action: Action, t: &Target) -> Result<()> {
    let bars = Bars::new(!cli.quiet && !cli.json);
    match action {
        Action::Backup => {
            let module = need(&t.module, "--module", "backup")?;
            // Validate the module before creating or touching the store.
            rbk_engine::layout::scan_module(&cfg.data_dir, module)?;
            let repo = open_repo(cfg, true)?;
            // A module a host runs is backed up from a consistent snapshot the host takes;
            // a stopped one from its files.
            let mut host = rbk_engine::host::control::Client::connect(&cfg.data_dir)?;
            let mut live = None;
            if let Some(c) = host.as_mut()
                && c.running()?.iter().any(|m| m == module)
            {
                live = Some(c.snapshot(module)?);
            }
            let r = match &live {
                Some(snap) => {
                    backup::backup_snapshot(&repo, &cfg.data_dir, &snap.root, module, &bars)?
                }
                None => backup::backup(&repo, &cfg.data_dir, module, &bars)?,
            };
            if let (Some(c), Some(snap)) = (host.as_mut(), &live) {
                c.release()?;
                if !cli.json && !cli.quiet {
                    eprintln!(
                        "consistent snapshot of the running module: commit ids {:?}, commits paused {:.1} ms",
                        snap.commit_ids,
                        snap.pause_us as f64 / 1000.0
                    );
                }
            }
            let s = r.stats;
            print(
                cli.json,
                json!({"backup_id": r.backup_id.to_string(), "live": live.as_ref().map(|l| json!({"commit_ids": l.commit_ids, "pause_us": l.pause_us})), "files": s.files, "files_reused": s.files_reused, "logical_bytes": s.logical_bytes,
                       "new_chunks": s.new_chunks, "new_stored_bytes": s.new_stored_bytes, "packs_written": r.packs_written, "bytes_read": r.bytes_read, "seconds": r.seconds}),
                || r.backup_id.to_string(),
            );
            if !cli.json && !cli.quiet {
                eprintln!(
                    "backed up {} files ({} reused), {:.1} MiB ({:.1} MiB read) in {:.2}s; uploaded {} new chunks, {:.1} MiB stored",
                    s.files,
                    s.files_reused,
                    mib(s.logical_bytes),
                    mib(r.bytes_read),
                    r.seconds,
                    s.new_chunks,
                    mib(s.new_stored_bytes)
                );
            }
        }
        Action::List => {
            let module = need(&t.module, "--module", "list")?;
            let repo = open_repo(cfg, false)?;
            let page = list::list(&repo, module, t.page_token.as_deref(), t.page_size)?;
            let ids: Vec<String> = page.backups.iter().map(ToString::to_string).collect();
            print(
                cli.json,
                json!({"backups": ids, "next_page_token": page.next_token}),
                || {
                    let mut lines: Vec<String> = page
                        .backups
                        .iter()
                        .map(|id| format!("{id}  {}", format_ms(id.millis)))
                        .collect();
                    if let Some(tok) = &page.next_token {
                        lines.push(format!("next page: --pageToken {tok}"));
                    }
                    lines.join("\n")
                },
            );
            if page.backups.is_empty() && !cli.json {
                eprintln!("no backups of module `{module}` in `{}`", cfg.provider);
            }
        }
        Action::Info => {
            let id = BackupId::parse(need(&t.backup_id, "--backupId", "info")?)?;
            let repo = open_repo(cfg, false)?;
            let i = info::info(&repo, &id)?;
            print(cli.json, info_json(&i), || info_text(&i));
        }
        Action::Restore => {
            let id = BackupId::parse(need(&t.backup_id, "--backupId", "restore")?)?;
            let repo = open_repo(cfg, false)?;
            // A module a host runs is stopped, restored and started from the restored state.
            let mut host = rbk_engine::host::control::Client::connect(&cfg.data_dir)?;
            let running = match host.as_mut() {
                Some(c) => c.running()?.contains(&id.module),
                None => false,
            };
            if running && !t.yes {
                return Err(usage(format!(
                    "module {} is running on this data dir: restoring stops it, replaces its state with {id} and starts it again from there. Its current state is discarded and this cannot be undone; pass --yes to go ahead",
                    id.module
                )));
            }
            let mut host = host.filter(|_| running);
            if let Some(c) = host.as_mut() {
                c.stop(&id.module)?;
            }
            // `--yes` for a served module stands for `--force`: its state is replaced.
            let force = t.force || host.is_some();
            let r = restore::restore(
                &repo,
                &cfg.data_dir,
                &id,
                restore::RestoreOptions {
                    force,
                    no_sync: t.no_sync,
                    keep_setid: t.keep_setid,
                },
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
            print(
                cli.json,
                json!({"backup_id": id.to_string(), "target": r.target, "files": r.files, "bytes": r.bytes, "seconds": r.seconds}),
                || {
                    format!(
                        "restored {id} into {} ({} files, {:.1} MiB, {:.2}s)",
                        r.target.display(),
                        r.files,
                        mib(r.bytes),
                        r.seconds
                    )
                },
            );
        }
        Action::Delete => {
            let id = BackupId::parse(need(&t.backup_id, "--backupId", "delete")?)?;
            let repo = open_repo(cfg, false)?;
            gc::delete_backup(&repo, &id)?;
            print(cli.json, json!({"deleted": id.to_string()}), || {
                format!("deleted {id}; run `rbk gc` to free the space only it used")
            });
        }
        Action::Gc => {
            let f = &t.gc;
            if t.module.is_some() || t.backup_id.is_some() {
                return Err(usage(
                    "gc works on the whole store (every module); drop --module/--backupId, or use `rbk delete` for one backup".into(),
                ));
            }
            let mut repo = open_repo(cfg, false)?;
            if let Some(secs) = f.lease_seconds {
                let mut timing = repo.store().session_timing();
                timing.lease = std::time::Duration::from_secs(secs);
                repo.store_mut().set_session_timing(timing);
            }
            let opts = gc::GcOptions {
                dry_run: f.dry_run,
                policy: rbk_engine::retention::PolicyOverride {
                    max_age_hours: f.max_age_hours,
                    min_keep: f.min_keep,
                },
                repack_threshold: f.repack_threshold,
                rebind_store: f.rebind_store,
                now_ms: None,
                revoke: f.revoke.clone(),
            };
            let r = gc::gc(&repo, &cfg.data_dir, &opts, &bars)?;
            print(cli.json, gc_json(&r), || gc_text(&r));
        }
        Action::Verify => {
            let read = match (&t.verify.read_data_subset, t.verify.read_data) {
                (Some(p), _) => verify::ReadData::Subset(parse_percent(p)?),
                (None, true) => verify::ReadData::All,
                (None, false) => verify::ReadData::None,
            };
            let repo = open_repo(cfg, false)?;
            let ids = match (&t.backup_id, &t.module) {
                (Some(id), _) => vec![BackupId::parse(id)?],
                (None, Some(m)) => {
                    let ids = repo.backup_ids(m)?;
                    if ids.is_empty() {
                        return Err(anyhow::Error::new(rbk_engine::Error::BackupNotFound {
                            backup_id: "(any)".into(),
                            module: m.clone(),
                        }));
                    }
                    ids
                }
                (None, None) => Vec::new(),
            };
            let r = verify::verify(&repo, &ids, read, &bars)?;
            print(cli.json, verify_json(&r), || verify_text(&r));
            if !r.problems.is_empty() {
                return Err(anyhow::Error::new(rbk_engine::Error::Damaged {
                    problems: r.problems.len(),
                    backups: r.damaged_backups().len(),
                }));
            }
        }
        Action::RepairIndex => {
            // Damage can surface at any read of the index, not only when it opens: rebuild
            // into an empty directory, whatever the old one holds. Opening it first checks
            // that no other rbk process is using it.
            let repo = open_repo(cfg, false)?;
            let old = repo.store().index_path().to_path_buf();
            drop(repo);
            let aside = rbk_chunkstore::RocksChunkIndex::set_aside(&old, "replaced")?;
            let repo = open_repo(cfg, false)?;
            let r = verify::repair_index(&repo)?;
            if let Err(e) = std::fs::remove_dir_all(&aside) {
                eprintln!(
                    "rbk: could not delete the old index `{}`: {e}",
                    aside.display()
                );
            }
            let path = repo.store().index_path().display().to_string();
            print(
                cli.json,
                json!({"index": path, "packs": r.packs, "damaged_packs": r.damaged.iter().map(|(k, why)| json!({"key": k, "detail": why})).collect::<Vec<_>>()}),
                || {
                    let mut lines: Vec<String> = r
                        .damaged
                        .iter()
                        .map(|(k, why)| format!("DAMAGED {k}: {why}"))
                        .collect();
                    lines.push(format!("rebuilt the index at {path}: {} packs", r.packs));
                    lines.join("\n")
                },
            );
            if !r.damaged.is_empty() {
                return Err(anyhow::Error::new(rbk_chunkstore::Error::corrupt(
                    format!("{} pack(s) of the store", r.damaged.len()),
                    "their trailers are damaged, so they were left out of the index; the next backup stores their chunks again, and `rbk verify` shows which backups they break",
                )));
            }
        }
    }
    Ok(())
}

/// `10%`, `10` or `0.5%` → a percentage in 0..=100.
fn parse_percent(s: &str) -> Result<f64> {
    s.trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .ok_or_else(|| {
            usage(format!(
                "--read-data-subset `{s}` is not a percentage (0-100%)"
            ))
        })
}

fn verify_json(r: &verify::VerifyReport) -> serde_json::Value {
    json!({
        "backups": r.backups,
        "files": r.files,
        "chunks": r.chunks,
        "chunks_read": r.chunks_read,
        "bytes_read": r.bytes_read,
        "clean": r.problems.is_empty(),
        "damaged_backups": r.damaged_backups().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "problems": r.problems.iter().map(|p| json!({
            "backup_id": p.backup_id.to_string(), "task": p.task, "object": p.object,
            "file": p.file, "chunk": p.chunk.map(|c| c.to_string()), "detail": p.detail,
        })).collect::<Vec<_>>(),
        "seconds": r.seconds,
    })
}

fn verify_text(r: &verify::VerifyReport) -> String {
    let mut out: Vec<String> = r.problems.iter().map(|p| format!("DAMAGED {p}")).collect();
    let read = if r.chunks_read > 0 {
        format!(
            ", {} read and re-hashed ({:.1} MiB)",
            r.chunks_read,
            mib(r.bytes_read)
        )
    } else {
        String::new()
    };
    out.push(format!(
        "verified {} backup(s), {} files, {} distinct chunks{read} in {:.2}s: {}",
        r.backups,
        r.files,
        r.chunks,
        r.seconds,
        if r.problems.is_empty() {
            "clean".to_string()
        } else {
            format!("{} damaged", r.damaged_backups().len())
        }
    ));
    out.join("\n")
}

fn gc_json(r: &gc::GcReport) -> serde_json::Value {
    let s = &r.store.sweep;
    json!({
        "dry_run": r.dry_run,
        "manifests_deleted": r.manifests_deleted.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "manifests_uncommitted": r.manifests_uncommitted.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "manifests_retained": r.manifests_retained,
        "sessions_revoked": r.store.sessions_revoked,
        "sessions": r.store.sessions.iter().map(|s| json!({
            "id": s.id,
            "kind": s.heartbeat.as_ref().map(|h| h.kind.clone()),
            "label": s.heartbeat.as_ref().map(|h| h.label.clone()),
            "host": s.heartbeat.as_ref().map(|h| h.host.clone()),
            "pid": s.heartbeat.as_ref().map(|h| h.pid),
            "silent_seconds": s.silent_ms.map(|ms| ms as f64 / 1000.0),
            "clock": if s.store_clock { "store" } else { "writer" },
            "revoke": s.revoke,
        })).collect::<Vec<_>>(),
        "live_chunks": r.store.live_chunks,
        "packs_total": r.store.packs_total,
        "pack_bytes_total": r.store.pack_bytes_total,
        "packs_condemned": r.store.packs_condemned,
        "bytes_condemned": r.store.bytes_condemned,
        "packs_dead": r.store.packs_dead,
        "dead_bytes_kept": r.store.dead_bytes_kept,
        "records_swept": r.store.records_swept,
        "records_waiting": r.store.records_waiting,
        "waiting_on_sessions": r.store.waiting_on,
        "packs_deleted": s.packs_deleted,
        "packs_rewritten": s.packs_rewritten,
        "packs_reprieved": s.packs_reprieved,
        "new_packs": s.new_packs,
        "bytes_freed": s.bytes_freed,
        "bytes_rewritten": s.bytes_rewritten,
        "problems": s.problems,
        "leftovers_deleted": r.store.leftovers_deleted,
        "tombstones_deleted": r.store.tombstones_deleted,
        "warnings": r.warnings,
        "seconds": r.seconds,
    })
}

fn gc_text(r: &gc::GcReport) -> String {
    let s = &r.store.sweep;
    let would = if r.dry_run { "would delete" } else { "deleted" };
    let mut out = vec![format!(
        "{would} {} backup(s) by retention policy; {} retained",
        r.manifests_deleted.len(),
        r.manifests_retained
    )];
    out.extend(r.manifests_deleted.iter().map(|id| format!("  {id}")));
    if !r.manifests_uncommitted.is_empty() {
        out.push(format!(
            "{} {} backup(s) that were never committed (their session was revoked before they were written):",
            if r.dry_run { "would delete" } else { "deleted" },
            r.manifests_uncommitted.len()
        ));
        out.extend(r.manifests_uncommitted.iter().map(|id| format!("  {id}")));
    }
    for s in &r.store.sessions {
        let who = s.heartbeat.as_ref().map_or_else(
            || "(heartbeat unreadable)".to_string(),
            |h| format!("{} {} on {} pid {}", h.kind, h.label, h.host, h.pid),
        );
        let silent = s.silent_ms.map_or_else(
            || "heartbeat just replaced".to_string(),
            |ms| {
                format!(
                    "silent {:.0} s by the {} clock",
                    ms as f64 / 1000.0,
                    if s.store_clock { "store's" } else { "writer's" }
                )
            },
        );
        let verdict = match (s.revoke, r.dry_run) {
            (true, true) => "; would be revoked",
            (true, false) => "; revoked",
            (false, _) => "",
        };
        out.push(format!("session {} {who}: {silent}{verdict}", s.id));
    }
    out.push(format!(
        "store: {} packs, {:.1} MiB; {} live chunks",
        r.store.packs_total,
        mib(r.store.pack_bytes_total),
        r.store.live_chunks
    ));
    let verb = if r.dry_run {
        "would condemn"
    } else {
        "condemned"
    };
    out.push(format!(
        "{verb} {} pack(s), {:.1} MiB: {} unreferenced, {} to rewrite; {:.1} MiB unreferenced stays in packs under the repack threshold",
        r.store.packs_condemned,
        mib(r.store.bytes_condemned),
        r.store.packs_dead,
        r.store.packs_condemned - r.store.packs_dead,
        mib(r.store.dead_bytes_kept)
    ));
    if !r.dry_run {
        out.push(format!(
            "swept {} record(s): deleted {} pack(s), rewrote {} ({:.1} MiB copied), reprieved {}; freed {:.1} MiB",
            r.store.records_swept,
            s.packs_deleted,
            s.packs_rewritten,
            mib(s.bytes_rewritten),
            s.packs_reprieved,
            mib(s.bytes_freed)
        ));
    }
    if r.store.records_waiting > 0 {
        out.push(format!(
            "{} record(s) wait for running session(s) {}; a later gc sweeps them",
            r.store.records_waiting,
            r.store.waiting_on.join(", ")
        ));
    }
    out.extend(s.problems.iter().map(|p| format!("problem: {p}")));
    out.extend(r.warnings.iter().map(|w| format!("warning: {w}")));
    out.join("\n")
}

pub fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

fn format_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

fn info_json(i: &info::BackupInfo) -> serde_json::Value {
    let m = &i.manifest;
    json!({
        "backup_id": m.backup_id.to_string(),
        "module": m.module(),
        "created": format_ms(m.created_ms),
        "tasks": m.task_count,
        "files": i.files,
        "logical_bytes": i.logical_bytes,
        "stored_bytes": i.stored_bytes,
        "unique_chunks": i.unique_chunks,
        "new_stored_bytes": m.stats.new_stored_bytes,
        "task_entries": m.tasks.iter().map(|t| json!({
            "task": t.task,
            "depots": t.depots.iter().map(|d| json!({"name": format!("*{}", d.name), "start_offset": d.start_offset, "end_offset": d.end_offset, "segments": d.files.len()})).collect::<Vec<_>>(),
            "pstates": t.pstates.iter().map(|p| json!({"name": format!("$${}", p.name), "files": p.files.len(), "bytes": p.files.iter().map(|f| f.size).sum::<u64>()})).collect::<Vec<_>>(),
            "topologies": t.topologies.iter().map(|p| json!({"name": p.name, "commit_id": p.commit_id})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn info_text(i: &info::BackupInfo) -> String {
    let m = &i.manifest;
    let mut out = format!(
        "backup   {}\nmodule   {}\ncreated  {}\ntasks    {}\nfiles    {}\nlogical  {} bytes ({:.1} MiB)\nstored   {} bytes ({:.1} MiB, {} unique chunks; {:.1} MiB new in this backup)\n",
        m.backup_id,
        m.module(),
        format_ms(m.created_ms),
        m.task_count,
        i.files,
        i.logical_bytes,
        mib(i.logical_bytes),
        i.stored_bytes,
        mib(i.stored_bytes),
        i.unique_chunks,
        mib(m.stats.new_stored_bytes)
    );
    for t in &m.tasks {
        out.push_str(&format!("task {}\n", t.task));
        for d in &t.depots {
            out.push_str(&format!(
                "  depot    *{}  offsets {}..{}  {} segments\n",
                d.name,
                d.start_offset,
                d.end_offset,
                d.files.len()
            ));
        }
        for p in &t.pstates {
            out.push_str(&format!(
                "  pstate   $${}  {} files, {} bytes\n",
                p.name,
                p.files.len(),
                p.files.iter().map(|f| f.size).sum::<u64>()
            ));
        }
        for p in &t.topologies {
            let commit = p.commit_id.map_or("-".to_string(), |c| c.to_string());
            out.push_str(&format!("  topology {}  commit {commit}\n", p.name));
        }
    }
    out.trim_end().to_string()
}

fn run(cli: &Cli) -> Result<()> {
    INDEX_WAIT_SECONDS.store(cli.index_wait, std::sync::atomic::Ordering::Relaxed);
    // Printing completions or the man page needs no configuration, and must work anywhere.
    match &cli.command {
        Command::Completions { shell } => {
            outln!("{}", completions(*shell));
            return Ok(());
        }
        Command::Man { out_dir: None } => {
            outln!("{}", man_page()?);
            return Ok(());
        }
        Command::Man { out_dir: Some(dir) } => {
            use clap::CommandFactory;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating `{}`", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("writing man pages into `{}`", dir.display()))?;
            return Ok(());
        }
        _ => {}
    }
    let flags = config::Flags {
        config: cli.config.as_deref(),
        data_dir: cli.data_dir.as_deref(),
        provider: cli.provider.as_deref(),
    };
    let cfg = config::resolve(flags, &|var| std::env::var(var).ok())
        .map_err(|e| usage(format!("{e:#}")))?;
    match &cli.command {
        Command::Backup { action, target } => run_action(cli, &cfg, *action, target),
        Command::List(t) => run_action(cli, &cfg, Action::List, t),
        Command::Info(t) => run_action(cli, &cfg, Action::Info, t),
        Command::Restore(t) => run_action(cli, &cfg, Action::Restore, t),
        Command::Delete(t) => run_action(cli, &cfg, Action::Delete, t),
        Command::Gc(t) => run_action(cli, &cfg, Action::Gc, t),
        Command::Verify(t) => run_action(cli, &cfg, Action::Verify, t),
        Command::RepairIndex(t) => run_action(cli, &cfg, Action::RepairIndex, t),
        Command::Testdata { command } => {
            match command {
                TestdataCommand::Generate {
                    module,
                    tasks,
                    size_mib,
                    seed,
                } => {
                    let spec = rbk_engine::testdata::GenSpec {
                        module: module.clone(),
                        tasks: *tasks,
                        size_mib: *size_mib,
                        seed: *seed,
                        ..Default::default()
                    };
                    if !spec.tasks.is_power_of_two() {
                        return Err(usage(format!(
                            "--tasks {} is not a power of two",
                            spec.tasks
                        )));
                    }
                    std::fs::create_dir_all(&cfg.data_dir)
                        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
                    rbk_engine::testdata::generate(&cfg.data_dir, &spec)?;
                    outln!(
                        "{}",
                        rbk_engine::layout::module_dir(&cfg.data_dir, module).display()
                    );
                }
                TestdataCommand::Advance { module, percent } => {
                    let generation =
                        rbk_engine::testdata::advance(&cfg.data_dir, module, *percent)?;
                    outln!("{module} generation {generation}");
                }
                TestdataCommand::Create {
                    module,
                    definition,
                    tasks,
                } => {
                    std::fs::create_dir_all(&cfg.data_dir)
                        .with_context(|| format!("creating `{}`", cfg.data_dir.display()))?;
                    let dir =
                        rbk_engine::host::create_module(&cfg.data_dir, module, *tasks, definition)?;
                    outln!(
                        "created {module} ({definition}, {tasks} tasks) in {}",
                        dir.display()
                    );
                }
            }
            Ok(())
        }
        Command::Demo(args) => demo::run(args, cli.json),
        Command::Serve(args) => {
            announce_default_store(&cfg);
            serve::run(args, &cfg, cli.json)
        }
        Command::Config => {
            print(cli.json, config_json(&cfg), || config_text(&cfg));
            Ok(())
        }
        // Printed before the configuration was read.
        Command::Completions { .. } | Command::Man { .. } => Ok(()),
    }
}

/// The AWS variables the S3 provider reads, shown by `rbk config` (secrets redacted).
const AWS_VARS: &[(&str, bool)] = &[
    ("AWS_ACCESS_KEY_ID", false),
    ("AWS_SECRET_ACCESS_KEY", true),
    ("AWS_SESSION_TOKEN", true),
    ("AWS_PROFILE", false),
    ("AWS_REGION", false),
    ("AWS_DEFAULT_REGION", false),
];

fn aws_env() -> Vec<(&'static str, String)> {
    AWS_VARS
        .iter()
        .filter_map(|&(var, secret)| {
            let v = std::env::var(var).ok().filter(|v| !v.is_empty())?;
            Some((var, if secret { "<redacted>".to_string() } else { v }))
        })
        .collect()
}

fn config_json(cfg: &Config) -> serde_json::Value {
    let setting = |value: String, source: &config::Source| json!({"value": value, "source": source.to_string()});
    json!({
        "config_file": cfg.file.as_ref().map(|(p, s)| setting(p.display().to_string(), s)),
        "data.dir": setting(cfg.data_dir.display().to_string(), &cfg.data_dir_source),
        "backup.provider": setting(config::redact(&cfg.provider), &cfg.provider_source),
        "index": repo::index_root(&cfg.data_dir).display().to_string(),
        "aws_environment": aws_env().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    })
}

fn config_text(cfg: &Config) -> String {
    let file = match &cfg.file {
        Some((p, source)) => format!("{} ({source})", p.display()),
        None => format!("none (no ./{} here)", config::DEFAULT_CONFIG),
    };
    let mut out = vec![
        format!("config file      {file}"),
        format!(
            "data.dir         {}  ({})",
            cfg.data_dir.display(),
            cfg.data_dir_source
        ),
        format!(
            "backup.provider  {}  ({})",
            config::redact(&cfg.provider),
            cfg.provider_source
        ),
        format!(
            "local index      {}",
            repo::index_root(&cfg.data_dir).display()
        ),
    ];
    out.extend(
        aws_env()
            .into_iter()
            .map(|(var, v)| format!("environment      {var}={v}")),
    );
    out.join("\n")
}

/// The completion script for `shell`, generated from the same definitions as the parser.
fn completions(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory;
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "rbk", &mut buf);
    String::from_utf8_lossy(&buf).trim_end().to_string()
}

/// The man page, generated from the same definitions as the parser.
fn man_page() -> Result<String> {
    use clap::CommandFactory;
    let mut buf = Vec::new();
    // As `generate_to` renders it (no `help` subcommand), so both outputs are one page.
    clap_mangen::Man::new(Cli::command().disable_help_subcommand(true))
        .render(&mut buf)
        .context("rendering the man page")?;
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    // Warnings (a damaged pack skipped, an index rebuilt) reach stderr by default; RBK_LOG
    // (e.g. `debug`) shows more.
    let filter = std::env::var("RBK_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code_of(&e))
        }
    }
}
