//! `rbk`: back up and restore the state of stream-processing modules.
//!
//! Exit codes: 0 success; 1 failure (I/O, provider, RocksDB); 2 usage or invalid input; 3 not
//! found (module, backup, data dir, chunk); 4 corruption detected (manifest, pack or chunk);
//! 5 permission denied (credentials, bucket policy, file modes).
//!
//! One file per command under `cmd/`; this file parses and dispatches.

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

mod cmd;
mod config;
mod demo;
mod journal;
mod progress;
mod serve;
mod web;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use rbk_engine::ErrorKind;

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
    /// The store's mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides
    /// `backup.mirror`); see docs/mirror.md.
    #[arg(long, global = true, value_name = "SPEC")]
    mirror: Option<String>,
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

#[derive(Subcommand, Debug)]
enum Command {
    /// Back up a module; with --action, any backup operation (Rama-style).
    Backup(cmd::action::ActionArgs),
    /// List a module's backups, newest first.
    List(cmd::list::ListArgs),
    /// Show what a backup holds.
    Info(cmd::info::InfoArgs),
    /// Restore a backup into the data dir.
    Restore(cmd::restore::RestoreArgs),
    /// Delete one backup; its chunks are freed by the next gc.
    Delete(cmd::delete::DeleteArgs),
    /// Delete backups by retention policy, then free packs no retained backup needs.
    Gc(cmd::gc::GcArgs),
    /// Check that backups are restorable without restoring them.
    Verify(cmd::verify::VerifyArgs),
    /// Keep the store's mirror up to date (`sync`) or see how far behind it is (`status`).
    Mirror {
        #[command(subcommand)]
        command: cmd::mirror::MirrorCommand,
    },
    /// Rebuild the local chunk index from the store's pack trailers.
    RepairIndex(cmd::repair_index::RepairIndexArgs),
    /// How much the store saves, and where: logical, unique and stored bytes, dedup and
    /// compression ratios, by module and kind of file; the store's garbage.
    Stats(cmd::stats::StatsArgs),
    /// Measurements that need no store: `rbk bench dedup DIR...` predicts what rbk would
    /// store for successive generations, for several chunk sizes.
    Bench {
        #[command(subcommand)]
        command: cmd::bench::BenchCommand,
    },
    /// Run the modules of the data dir (those with a built-in `rbk.definition`), answer
    /// `rbk backup`/`rbk restore` on a control socket, and take periodic backups and GC as
    /// their dynamic options say.
    Serve(serve::ServeArgs),
    /// Generate or advance realistic module state (real RocksDB PStates).
    Testdata {
        #[command(subcommand)]
        command: cmd::testdata::TestdataCommand,
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

fn run(cli: &Cli) -> Result<()> {
    cmd::INDEX_WAIT_SECONDS.store(cli.index_wait, std::sync::atomic::Ordering::Relaxed);
    // Printing completions or the man page needs no configuration, and must work anywhere.
    match &cli.command {
        Command::Bench { command } => return cmd::bench::run(command, cli.json, cli.quiet),
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
        mirror: cli.mirror.as_deref(),
    };
    let cfg = config::resolve(flags, &|var| std::env::var(var).ok())
        .map_err(|e| cmd::usage(format!("{e:#}")))?;
    let ctx = cmd::Ctx {
        cfg: &cfg,
        json: cli.json,
        quiet: cli.quiet,
    };
    match &cli.command {
        Command::Backup(a) => cmd::action::run(&ctx, a),
        Command::List(a) => cmd::list::run(&ctx, a),
        Command::Info(a) => cmd::info::run(&ctx, a),
        Command::Restore(a) => cmd::restore::run(&ctx, a),
        Command::Delete(a) => cmd::delete::run(&ctx, a),
        Command::Gc(a) => cmd::gc::run(&ctx, a),
        Command::Verify(a) => cmd::verify::run(&ctx, a),
        Command::Mirror { command } => cmd::mirror::run(&ctx, command),
        Command::RepairIndex(a) => cmd::repair_index::run(&ctx, a),
        Command::Stats(a) => cmd::stats::run(&ctx, a),
        Command::Testdata { command } => cmd::testdata::run(&ctx, command),
        Command::Demo(args) => demo::run(args, cli.json),
        Command::Serve(args) => {
            cmd::announce_default_store(&cfg);
            serve::run(args, &cfg, cli.json)
        }
        Command::Config => {
            cmd::config::run(&ctx);
            Ok(())
        }
        // Printed before the configuration was read.
        Command::Completions { .. } | Command::Man { .. } | Command::Bench { .. } => Ok(()),
    }
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
