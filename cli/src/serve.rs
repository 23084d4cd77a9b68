//! `rbk serve`: a long-lived process for one data dir. It runs the modules that have a
//! built-in definition, answers `rbk backup` / `rbk restore` on the control socket, backs
//! modules up every `backup.period.seconds` and collects garbage every
//! `backup.gc.period.seconds` (both from dynamic-options.json, re-read when the file
//! changes), and optionally generates load. Stops cleanly on SIGINT or SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use rand::SeedableRng;
use rbk_engine::NoProgress;
use rbk_engine::host::control::ControlServer;
use rbk_engine::host::schedule::Scheduler;
use rbk_engine::host::{Host, HostOptions};
use rbk_engine::ops::{backup, gc};

use crate::cmd::open_repo_within;
use crate::config::Config;
use crate::journal;
use crate::web::{MirrorLag, ServeStatus, StoredFigures, Web, wall_time};

/// Who the journal says did the periodic work.
const BY: &str = "rbk serve";

fn record_gc(
    side: &str,
    outcome: std::result::Result<&gc::GcReport, &dyn std::fmt::Display>,
    data_dir: &std::path::Path,
) {
    if let Some(event) = journal::gc_event(side, outcome) {
        journal::record(data_dir, BY, event);
    }
}

/// Per-module stored bytes for the backups page (`rbk stats`), after each periodic GC: the
/// round holds the local index this needs. It reads every manifest once more per GC period.
fn publish_stored(web: &Web, repo: &rbk_engine::Repo) {
    use rbk_engine::ops::stats;
    match stats::stats(repo, &stats::Scope::Store, &NoProgress) {
        Ok(s) => web.set_stored(StoredFigures {
            as_of: std::time::SystemTime::now(),
            by_module: s
                .modules
                .iter()
                .map(|(m, t)| (m.clone(), t.stored_bytes))
                .collect(),
            garbage: s.garbage_bytes,
        }),
        Err(e) => eprintln!("stored bytes for the backups page: {e}"),
    }
}

/// What the backups page shows of this loop.
fn status_of(
    host: &Host,
    sched: &Scheduler,
    data_dir: &std::path::Path,
    mirror: Option<MirrorLag>,
) -> ServeStatus {
    ServeStatus {
        running: host.running(),
        next_backup: rbk_engine::layout::module_names(data_dir)
            .into_iter()
            .filter_map(|m| Some((m.clone(), wall_time(sched.next_backup(&m)?))))
            .collect(),
        next_gc: sched.next_gc().map(wall_time),
        mirror,
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Append this many random records per second to each running module (0: none).
    #[arg(long, default_value_t = 0)]
    load: u64,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long = "for-seconds", value_name = "SECONDS")]
    for_seconds: Option<u64>,
    /// Serve the backups page, its JSON API and Prometheus metrics on ADDR, e.g.
    /// `127.0.0.1:9180` (overrides `serve.http` in rbk.yaml; off when neither is set).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
}

/// Set by SIGINT/SIGTERM.
fn stop_on_signals(stop: Arc<AtomicBool>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal listener")?;
    std::thread::spawn(move || {
        rt.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        stop.store(true, Ordering::Release);
    });
    Ok(())
}

fn log(json_out: bool, event: serde_json::Value, text: String) {
    if json_out {
        outln!("{event}");
    } else {
        outln!("{text}");
    }
}

/// How often `rbk serve` checks the mirror when no backup ran, and how long one catch-up may
/// take before the loop goes back to its schedule (the next round carries on).
const MIRROR_CHECK: Duration = Duration::from_secs(60);
const MIRROR_ROUND: Duration = Duration::from_secs(300);

/// How often `rbk serve` looks for pending backups (in parts) of the modules it holds.
const PARTS_CHECK: Duration = Duration::from_secs(2);

/// How often `rbk serve` tries to write its part of one pending backup before it leaves it
/// to the operator (`rbk backup part`).
const PART_ATTEMPTS: u32 = 3;

/// Writes this data dir's part of every pending backup of a module it holds that has none
/// from here yet (docs/distributed.md). `failures` counts the failed attempts per backup, so
/// one that keeps failing is not tried every round.
fn write_parts(
    cfg: &Config,
    view: &mut Option<rbk_engine::Repo>,
    host: &Host,
    worker: &str,
    failures: &mut std::collections::HashMap<String, u32>,
    web: Option<&Web>,
    json_out: bool,
) {
    use rbk_engine::ops::parts;
    let modules = rbk_engine::layout::module_names(&cfg.data_dir);
    if modules.is_empty() {
        return;
    }
    // Looking needs no index (a view, kept between rounds); the index is taken only when
    // there is a part to write.
    if view.is_none() {
        match crate::cmd::open_view(cfg) {
            Ok(v) => *view = Some(v),
            Err(e) => {
                tracing::debug!("pending backups not checked: {e:#}");
                return;
            }
        }
    }
    let Some(view) = view.as_ref() else {
        return;
    };
    let mut todo = Vec::new();
    for module in &modules {
        match parts::list(view, Some(module)) {
            Ok(listed) => todo.extend(listed.into_iter().filter(|l| {
                l.begin
                    && failures.get(&l.name).is_none_or(|n| *n < PART_ATTEMPTS)
                    && !l.parts.iter().any(|p| parts::worker_of(p) == Some(worker))
            })),
            Err(e) => tracing::debug!("pending backups of {module} not checked: {e}"),
        }
    }
    if todo.is_empty() {
        return;
    }
    let repo = match open_repo_within(cfg, true, Duration::from_secs(5)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("parts of pending backups skipped this round: {e:#}");
            return;
        }
    };
    for l in todo {
        let Ok(id) = rbk_engine::BackupId::parse(&l.name) else {
            continue;
        };
        let running = host.get(&id.module);
        let source = match &running {
            Some(m) => backup::Source::Running(m),
            None => backup::Source::Files,
        };
        match parts::part(&repo, &cfg.data_dir, &id, source, &NoProgress) {
            Ok((r, _)) => {
                log(
                    json_out,
                    serde_json::json!({"event": "part", "backup_id": id.to_string(), "tasks": r.tasks, "seconds": r.seconds}),
                    format!(
                        "wrote part of {id}: tasks {:?} in {:.2}s",
                        r.tasks, r.seconds
                    ),
                );
                if let Some(w) = web {
                    w.refresh_soon();
                }
            }
            Err(e) => {
                let n = failures.entry(l.name.clone()).or_default();
                *n += 1;
                eprintln!("part of {id} failed (attempt {n} of {PART_ATTEMPTS}): {e}");
            }
        }
    }
}

pub fn run(a: &ServeArgs, cfg: &Config, json_out: bool) -> Result<()> {
    // Checked before opening any module, so the answer names the real problem rather than
    // a RocksDB lock.
    if rbk_engine::host::control::Client::connect(&cfg.data_dir)?.is_some() {
        return Err(crate::cmd::usage(format!(
            "another `rbk serve` already runs on data dir `{}`; stop it first (SIGTERM)",
            cfg.data_dir.display()
        )));
    }
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(stop.clone())?;
    let host = Arc::new(Host::new(&cfg.data_dir, HostOptions::default())?);
    let started = host.start_all()?;
    let control = ControlServer::start(host.clone())?;
    let web = match a.http.as_ref().or(cfg.serve_http.as_ref()) {
        Some(addr) => {
            let web = Web::new(&cfg.data_dir, &cfg.provider);
            let server = crate::web::start(addr, web.clone())?;
            log(
                json_out,
                serde_json::json!({"event": "http", "addr": server.addr.to_string()}),
                format!("backups page on http://{}/", server.addr),
            );
            Some((web, server))
        }
        None => None,
    };
    log(
        json_out,
        serde_json::json!({"event": "serving", "modules": started}),
        format!(
            "serving {} module(s) of {}: {}",
            started.len(),
            cfg.data_dir.display(),
            started.join(", ")
        ),
    );

    let load = (a.load > 0).then(|| {
        let host = host.clone();
        let stop = stop.clone();
        let per_second = a.load;
        std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::from_entropy();
            let tick = Duration::from_millis(10);
            let per_tick = (per_second / 100).max(1);
            while !stop.load(Ordering::Acquire) {
                for name in host.running() {
                    if let Some(m) = host.get(&name) {
                        for _ in 0..per_tick {
                            if m.append_random(&mut rng).is_err() {
                                break;
                            }
                        }
                    }
                }
                std::thread::sleep(tick);
            }
        })
    });

    let begun = Instant::now();
    let mut sched = Scheduler::new(begun);
    // The mirror is caught up after every round that backed up, and checked once a minute
    // otherwise (a mirror that was down, or backups taken by `rbk backup` meanwhile).
    let mut next_mirror = begun;
    let mut mirror_lag: Option<MirrorLag> = None;
    let worker = rbk_engine::ops::parts::worker_id(&cfg.data_dir)?;
    let mut next_parts = begun;
    let mut part_failures = std::collections::HashMap::new();
    let mut parts_view = None;
    while !stop.load(Ordering::Acquire) {
        if a.for_seconds
            .is_some_and(|s| begun.elapsed() >= Duration::from_secs(s))
        {
            break;
        }
        let now = Instant::now();
        for w in sched.refresh(&cfg.data_dir, now) {
            eprintln!("warning: {w}");
        }
        let due = sched.due(now);
        if now >= next_parts {
            write_parts(
                cfg,
                &mut parts_view,
                &host,
                &worker,
                &mut part_failures,
                web.as_ref().map(|(w, _)| w.as_ref()),
                json_out,
            );
            next_parts = Instant::now() + PARTS_CHECK;
        }
        if let Some((web, _)) = &web {
            web.set_status(status_of(&host, &sched, &cfg.data_dir, mirror_lag.clone()));
        }
        let mirror_due = cfg.mirror.is_some() && now >= next_mirror;
        if !due.backups.is_empty() || due.gc || mirror_due {
            // Opened for this round only: the local index admits one process at a time, and
            // `rbk backup`/`list`/`restore` on this data dir need it between rounds (they
            // wait for a round to end). Not waiting here keeps the loop responsive to stop.
            let mut repo = match open_repo_within(cfg, true, Duration::ZERO) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("periodic work skipped this round: {e:#}");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            let mirrored = cfg.mirror.is_some()
                && match crate::cmd::attach_mirror(cfg, &mut repo, None) {
                    Ok(attached) => attached,
                    Err(e) => {
                        eprintln!("mirror: {e:#}");
                        false
                    }
                };
            let repo = &repo;
            for module in &due.backups {
                // A failed periodic backup is reported and retried at the next period.
                let running = host.get(module);
                let source = match &running {
                    Some(m) => backup::Source::Running(m),
                    None => backup::Source::Files,
                };
                let done =
                    backup::backup_from_source(repo, &cfg.data_dir, module, source, &NoProgress);
                let event = journal::backup_event(
                    module,
                    match &done {
                        Ok((r, live)) => Ok((r, live.as_ref())),
                        Err(e) => Err(e as &dyn std::fmt::Display),
                    },
                );
                journal::record(&cfg.data_dir, BY, event);
                match done.map(|(r, _)| r) {
                    Ok(r) => log(
                        json_out,
                        serde_json::json!({"event": "backup", "backup_id": r.backup_id.to_string(), "seconds": r.seconds}),
                        format!("backed up {} in {:.2}s", r.backup_id, r.seconds),
                    ),
                    Err(e) => eprintln!("periodic backup of {module} failed: {e}"),
                }
            }
            if due.gc {
                let collected = gc::gc(repo, &cfg.data_dir, &gc::GcOptions::default(), &NoProgress);
                record_gc(
                    "store",
                    collected.as_ref().map_err(|e| e as _),
                    &cfg.data_dir,
                );
                if collected.is_ok()
                    && let Some((web, _)) = &web
                {
                    publish_stored(web, repo);
                }
                match collected {
                    Ok(r) => log(
                        json_out,
                        serde_json::json!({"event": "gc", "backups_deleted": r.manifests_deleted.len(), "packs_condemned": r.store.packs_condemned}),
                        format!(
                            "gc: deleted {} backup(s), condemned {} pack(s)",
                            r.manifests_deleted.len(),
                            r.store.packs_condemned
                        ),
                    ),
                    Err(e) => eprintln!("periodic gc failed: {e}"),
                }
                if let Some(side) = repo.mirror_repo() {
                    let opts = gc::GcOptions::default();
                    let collected = gc::gc(&side, &cfg.data_dir, &opts, &NoProgress);
                    record_gc(
                        "mirror",
                        collected.as_ref().map_err(|e| e as _),
                        &cfg.data_dir,
                    );
                    if let Err(e) = collected {
                        eprintln!("periodic gc of the mirror failed: {e}");
                    }
                }
            }
            if mirrored {
                // Bounded like a backup's wait, so the loop goes on serving its schedule.
                repo.set_mirror_deadline(Some(Instant::now() + MIRROR_ROUND));
                let caught_up = crate::cmd::mirror::catch_up(repo, &NoProgress);
                mirror_lag = Some(match &caught_up {
                    Ok(s) => MirrorLag {
                        as_of: std::time::SystemTime::now(),
                        pending_objects: s.status.pending_objects(),
                        pending_bytes: s.status.pending_bytes,
                        last_synced: s.status.last_synced.as_ref().map(|m| m.name.clone()),
                        oldest_pending_age_seconds: s.status.oldest_pending_age_seconds(),
                        error: None,
                    },
                    Err(e) => MirrorLag {
                        as_of: std::time::SystemTime::now(),
                        error: Some(format!("{e:#}")),
                        ..mirror_lag.clone().unwrap_or_else(MirrorLag::unknown)
                    },
                });
                match caught_up {
                    Ok(s) if s.report.manifests_copied > 0 => log(
                        json_out,
                        serde_json::json!({"event": "mirror", "manifests_copied": s.report.manifests_copied, "bytes_copied": s.report.bytes_copied, "pending_objects": s.status.pending_objects()}),
                        format!(
                            "mirror: copied {} backup(s), {} pack(s)",
                            s.report.manifests_copied, s.report.packs_copied
                        ),
                    ),
                    Ok(_) => {}
                    Err(e) => eprintln!("mirror sync failed (retried in a minute): {e:#}"),
                }
            }
            if cfg.mirror.is_some() {
                next_mirror = Instant::now() + MIRROR_CHECK;
            }
            if let Some((web, _)) = &web {
                web.refresh_soon();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Release);
    if let Some(l) = load {
        let _ = l.join();
    }
    drop(control);
    drop(web);
    host.shutdown()?;
    log(
        json_out,
        serde_json::json!({"event": "stopped"}),
        "stopped".into(),
    );
    Ok(())
}
