//! One file per command, each with only its own flags and a report that renders itself as
//! text or JSON. `rbk backup --action <op>` (the Rama-style form, `action.rs`) accepts every
//! operation's flags and hands each operation the same arguments its own command takes.

pub mod action;
pub mod backup;
pub mod bench;
pub mod config;
pub mod delete;
pub mod gc;
pub mod info;
pub mod list;
pub mod mirror;
pub mod parts;
pub mod repair_index;
pub mod restore;
pub mod stats;
pub mod testdata;
pub mod verify;

use anyhow::{Context as _, Result};
use clap::Args;
use rbk_chunkstore::provider;
use rbk_engine::{Repo, repo};

use crate::config::Config;
use crate::progress::Bars;

/// What every command gets: the resolved configuration and the global output flags.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub json: bool,
    pub quiet: bool,
}

impl Ctx<'_> {
    /// Progress bars, unless output is JSON or quiet.
    pub fn bars(&self) -> Bars {
        Bars::new(!self.quiet && !self.json)
    }

    /// Prints `report` on stdout as `--json` asks.
    pub fn show(&self, report: &impl Report) {
        if self.json {
            outln!("{}", report.json());
        } else {
            let text = report.text();
            if !text.is_empty() {
                outln!("{text}");
            }
        }
    }

    /// A line for the operator on stderr (not with `--json` or `--quiet`).
    pub fn note(&self, line: impl FnOnce() -> String) {
        if !self.json && !self.quiet {
            eprintln!("{}", line());
        }
    }
}

/// What a command prints: one value, two renderings.
pub trait Report {
    fn json(&self) -> serde_json::Value;
    fn text(&self) -> String;
}

/// `--module`.
#[derive(Args, Debug, Default, Clone)]
pub struct ModuleArg {
    /// Module name, e.g. com.mycompany.BankModule.
    #[arg(long)]
    pub module: Option<String>,
}

/// `--backupId`.
#[derive(Args, Debug, Default, Clone)]
pub struct BackupIdArg {
    /// Backup id, e.g. com.mycompany.BankModule-00000193E038B5F8-DE.
    #[arg(long = "backupId", alias = "backup-id")]
    pub backup_id: Option<String>,
}

pub fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(rbk_engine::Error::InvalidInput(msg))
}

/// The value of an optional flag that `action` needs.
pub fn need<'a>(v: &'a Option<String>, flag: &str, action: &str) -> Result<&'a str> {
    v.as_deref()
        .ok_or_else(|| usage(format!("`{action}` needs {flag}")))
}

/// Seconds [`open_repo`] waits for the local index (`--index-wait`).
pub static INDEX_WAIT_SECONDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(60);

/// Opens the store. The local index admits one process at a time; while another rbk process
/// has it (a backup or GC round of `rbk serve`, typically seconds), this waits for it, up to
/// `--index-wait` seconds, rather than failing a command the operator would simply rerun.
pub fn open_repo(cfg: &Config, create: bool) -> Result<Repo> {
    use std::sync::atomic::Ordering;
    let wait = INDEX_WAIT_SECONDS.load(Ordering::Relaxed);
    open_repo_within(cfg, create, std::time::Duration::from_secs(wait))
}

/// The store as a view, without the local index: for looking while another process (this
/// data dir's `rbk serve`) may hold the index.
pub fn open_view(cfg: &Config) -> Result<Repo> {
    let p = provider::from_spec(&cfg.provider)?;
    Repo::open_view(p).with_context(|| format!("opening the store `{}`", cfg.provider))
}

/// [`open_repo`], waiting at most `wait` for the index.
///
/// With a mirror configured: a command that creates the store (a backup) first gives an
/// empty primary the mirror's config, so a primary whose disk was replaced is the same store
/// again; a command that only reads, finding no store at the primary, reads the mirror
/// instead (and says so).
pub fn open_repo_within(cfg: &Config, create: bool, wait: std::time::Duration) -> Result<Repo> {
    announce_default_store(cfg);
    let primary = provider::from_spec(&cfg.provider)?;
    if let (true, Some((spec, _))) = (create, &cfg.mirror) {
        let mirror = provider::from_spec(spec)?;
        // Two config reads at most: one thread is plenty.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        match rt.block_on(rbk_chunkstore::mirror::seed_primary(
            primary.as_ref(),
            mirror.as_ref(),
        )) {
            Ok(true) => eprintln!(
                "rbk: the store `{}` was empty; it is the mirror's store again (its config was copied from `{}`)",
                cfg.provider,
                crate::config::redact(spec)
            ),
            Ok(false) => {}
            // The mirror not answering must not stop a backup.
            Err(e) => tracing::debug!("could not ask the mirror for its config: {e}"),
        }
    }
    let opened = with_index_wait(wait, || {
        Repo::open(primary.clone(), &repo::index_root(&cfg.data_dir), create)
    });
    match (opened, &cfg.mirror) {
        (Err(rbk_engine::Error::Store(e)), Some((spec, _)))
            if !create && e.kind() == rbk_chunkstore::ErrorKind::NotFound =>
        {
            eprintln!(
                "rbk: there is no store at `{}`; reading its mirror `{}` instead",
                cfg.provider,
                crate::config::redact(spec)
            );
            let mirror = provider::from_spec(spec)?;
            with_index_wait(wait, || {
                Repo::open(
                    mirror.clone(),
                    &repo::mirror_index_root(&cfg.data_dir),
                    false,
                )
            })
            .with_context(|| format!("opening the mirror `{}`", crate::config::redact(spec)))
        }
        (r, _) => r.with_context(|| format!("opening the store `{}`", cfg.provider)),
    }
}

/// Opens the configured mirror beside `repo`; `Ok(false)` when none is configured, or when
/// `repo` is the mirror already (the primary is gone). With `deadline`, requests to the
/// mirror give up then.
pub fn attach_mirror(
    cfg: &Config,
    repo: &mut Repo,
    deadline: Option<std::time::Instant>,
) -> Result<bool> {
    let Some((spec, _)) = &cfg.mirror else {
        return Ok(false);
    };
    let mirror = provider::from_spec(spec)?;
    if repo.store().describe() == mirror.describe() {
        return Ok(false);
    }
    use std::sync::atomic::Ordering;
    let wait = std::time::Duration::from_secs(INDEX_WAIT_SECONDS.load(Ordering::Relaxed));
    let root = repo::mirror_index_root(&cfg.data_dir);
    with_index_wait(wait, || repo.attach_mirror(mirror.clone(), &root, deadline))
        .with_context(|| format!("opening the mirror `{}`", crate::config::redact(spec)))?;
    Ok(true)
}

/// Runs `open` until it does not find the local index busy, at most `wait` long: the index
/// admits one process at a time, and another rbk process (a backup or GC round of `rbk
/// serve`, typically seconds) may have it.
fn with_index_wait<T>(
    wait: std::time::Duration,
    mut open: impl FnMut() -> rbk_engine::Result<T>,
) -> rbk_engine::Result<T> {
    let deadline = std::time::Instant::now() + wait;
    let mut told = false;
    loop {
        match open() {
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
            r => return r,
        }
    }
}

/// Says on stderr, once per process, that the store is the embedded default, so backups never
/// land in `./data-backups` without the operator being told.
pub fn announce_default_store(cfg: &Config) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if let Some(line) = cfg.default_store_notice() {
        ONCE.call_once(|| eprintln!("{line}"));
    }
}

pub fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// `ms` since the epoch as an RFC 3339 UTC time with milliseconds.
pub fn format_ms(ms: u64) -> String {
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
