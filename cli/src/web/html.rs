//! The pages, rendered on the server: plain HTML and inline SVG, no script. Every value from
//! outside (module names, ids, error messages) goes through [`esc`] or [`seg`].

use std::fmt::Write as _;
use std::time::SystemTime;

use rbk_engine::layout::journal::{Entry, Event};
use rbk_engine::ops::list::BackupPage;

use super::catalog::Summary;
use super::chart::{self, Series};
use super::escape::{esc, seg};
use super::{BackupStatus, Detail, ModuleView, Web, now_ms};
use crate::cmd::format_ms;

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2328;margin:0;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:10px 24px}header a{color:#fff;text-decoration:none;font-weight:600}
header span{color:#afb8c1;margin-left:12px;font-size:13px}
main{max-width:1200px;margin:0 auto;padding:16px 24px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:16px;margin:24px 0 8px}
.sub{color:#57606a;margin-bottom:12px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de;border-radius:6px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{background:#f6f8fa;font-weight:600;font-size:12px;color:#57606a}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
.ok{color:#1a7f37}.bad{color:#cf222e}.muted{color:#57606a}
.pill{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;background:#ddf4ff;color:#0969da}
.pill.ok{background:#dafbe1;color:#1a7f37}.pill.bad{background:#ffebe9;color:#cf222e}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:130px}
.card b{display:block;font-size:18px}
.chart{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:8px 0;padding:6px 10px;display:inline-block}
.chart figcaption{font-size:12px;color:#57606a}
.nav{margin:10px 0}.nav a{margin-right:12px}
.err{background:#ffebe9;border:1px solid #ff8182;border-radius:6px;padding:8px 12px;margin:8px 0}
";

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// "3 min ago", "in 20 s".
pub fn age(ms: u64) -> String {
    let now = now_ms();
    let (d, past) = if now >= ms {
        (now - ms, true)
    } else {
        (ms - now, false)
    };
    let s = d / 1000;
    let text = match s {
        0..=89 => format!("{s} s"),
        90..=5399 => format!("{} min", (s + 30) / 60),
        5400..=129_599 => format!("{:.1} h", s as f64 / 3600.0),
        _ => format!("{:.1} d", s as f64 / 86_400.0),
    };
    if past {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

pub fn system_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn page(title: &str, web: &Web, body: &str) -> String {
    let c = web.catalog();
    let store = match (&c.error, c.refreshed) {
        (Some(e), _) => format!(r#"<span class="bad">store: {}</span>"#, esc(e)),
        (None, Some(t)) => format!(
            "store {} · {} packs, {} · looked {}",
            esc(&web.provider_shown),
            c.packs,
            bytes(c.pack_bytes),
            age(system_ms(t))
        ),
        (None, None) => format!("store {} · looking…", esc(&web.provider_shown)),
    };
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{} · rbk</title><style>{STYLE}</style></head><body><header><a href="/">rbk backups</a><span>{}</span><span>{store}</span></header><main>{body}</main></body></html>"#,
        esc(title),
        esc(&web.data_dir.display().to_string()),
    )
}

fn status_pill(status: &BackupStatus) -> String {
    match status {
        BackupStatus::Ok(_) => r#"<span class="pill ok">ok</span>"#.into(),
        BackupStatus::Broken(why) => format!(
            r#"<span class="pill bad" title="{}">damaged</span>"#,
            esc(why)
        ),
        BackupStatus::Loading => r#"<span class="pill">loading</span>"#.into(),
    }
}

pub fn overview(web: &Web, modules: &[ModuleView]) -> String {
    let status = web.status();
    let mut b = String::from("<h1>Modules</h1>");
    let _ = write!(
        b,
        r#"<div class="sub">{} module(s) in this data dir or in the store · next GC {}</div>"#,
        modules.len(),
        status
            .next_gc
            .map_or("not scheduled".into(), |t| age(system_ms(t)))
    );
    b.push_str(r#"<table><tr><th>module</th><th>running</th><th class="n">backups</th><th>last backup</th><th>status</th><th class="n">stored</th><th class="n">added by its backups</th><th>next backup</th></tr>"#);
    for m in modules {
        let (last, st) = match &m.newest {
            Some((id, st)) => (
                format!(
                    r#"<a href="/modules/{}/backups/{}">{}</a>"#,
                    seg(&m.module),
                    seg(&id.to_string()),
                    esc(&age(id.millis))
                ),
                status_pill(st),
            ),
            None => (r#"<span class="muted">none</span>"#.into(), String::new()),
        };
        let st = match &m.failing {
            Some(e) => format!(
                r#"{st} <span class="pill bad" title="{}">last backup failed {}</span>"#,
                esc(&failure_text(e)),
                esc(&age(e.ms))
            ),
            None => st,
        };
        let _ = write!(
            b,
            r#"<tr><td><a href="/modules/{}">{}</a>{}</td><td>{}</td><td class="n">{}</td><td>{last}</td><td>{st}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td></tr>"#,
            seg(&m.module),
            esc(&m.module),
            if m.in_data_dir {
                ""
            } else {
                r#" <span class="muted">(not in this data dir)</span>"#
            },
            if m.running {
                r#"<span class="ok">running</span>"#
            } else {
                r#"<span class="muted">stopped</span>"#
            },
            m.backups,
            m.stored_bytes.map_or("—".into(), bytes),
            bytes(m.added_bytes),
            m.next_backup
                .map_or("—".into(), |t| esc(&age(system_ms(t))))
        );
    }
    b.push_str("</table>");
    match web.stored() {
        Some(f) => {
            let _ = write!(
                b,
                r#"<p class="muted">stored: what each module's backups occupy in the store, as of the last periodic GC ({}){}</p>"#,
                esc(&age(system_ms(f.as_of))),
                f.garbage
                    .map_or(String::new(), |g| format!("; {} no backup needs", bytes(g)))
            );
        }
        None => b.push_str(r#"<p class="muted">stored: known after the first periodic GC of this process (or run <code>rbk stats</code>)</p>"#),
    }
    b.push_str(&gc_runs(web, 10));
    b.push_str(&mirror(web));
    b.push_str(r#"<p class="muted">JSON: <a href="/api/modules">/api/modules</a> · Prometheus: <a href="/metrics">/metrics</a></p>"#);
    page("Modules", web, &b)
}

fn failure_text(e: &Entry) -> String {
    match &e.event {
        Event::BackupFailed { error, .. } | Event::GcFailed { error, .. } => error.clone(),
        _ => String::new(),
    }
}

fn gc_runs(web: &Web, n: usize) -> String {
    let history = web.history();
    let runs: Vec<&Entry> = history
        .iter()
        .rev()
        .filter(|e| matches!(e.event, Event::Gc { .. } | Event::GcFailed { .. }))
        .take(n)
        .collect();
    let mut b = String::from("<h2>Recent GC runs</h2>");
    if runs.is_empty() {
        b.push_str(r#"<p class="muted">No GC recorded on this data dir.</p>"#);
        return b;
    }
    b.push_str(r#"<table><tr><th>when</th><th>side</th><th>by</th><th class="n">backups deleted</th><th class="n">packs deleted</th><th class="n">freed</th><th class="n">seconds</th></tr>"#);
    for e in runs {
        match &e.event {
            Event::Gc {
                side,
                backups_deleted,
                packs_deleted,
                bytes_freed,
                seconds,
            } => {
                let _ = write!(
                    b,
                    r#"<tr><td title="{}">{}</td><td>{}</td><td>{}</td><td class="n">{backups_deleted}</td><td class="n">{packs_deleted}</td><td class="n">{}</td><td class="n">{seconds:.2}</td></tr>"#,
                    esc(&format_ms(e.ms)),
                    esc(&age(e.ms)),
                    esc(side),
                    esc(&e.by),
                    bytes(*bytes_freed)
                );
            }
            Event::GcFailed { side, error } => {
                let _ = write!(
                    b,
                    r#"<tr><td title="{}">{}</td><td>{}</td><td>{}</td><td colspan="4" class="bad">failed: {}</td></tr>"#,
                    esc(&format_ms(e.ms)),
                    esc(&age(e.ms)),
                    esc(side),
                    esc(&e.by),
                    esc(error)
                );
            }
            _ => {}
        }
    }
    b.push_str("</table>");
    b
}

/// Backups in parts of `module` begun and not committed (docs/distributed.md).
fn pending(catalog: &super::catalog::Catalog, module: &str) -> String {
    let Some(list) = catalog.pending.get(module).filter(|l| !l.is_empty()) else {
        return String::new();
    };
    let mut b = String::from(
        "<h2>Backups in parts, not committed</h2><table><tr><th>id</th><th>begun</th><th>parts written</th></tr>",
    );
    for (id, parts) in list {
        let _ = write!(
            b,
            "<tr><td><code>{}</code></td><td>{}</td><td>{parts}</td></tr>",
            esc(&id.to_string()),
            esc(&age(id.millis))
        );
    }
    b.push_str(
        r#"</table><p class="muted">Committed with <code>rbk backup commit --backupId …</code> once every task has a part; GC holds back its sweeps until then or until the backup's lease runs out.</p>"#,
    );
    b
}

fn mirror(web: &Web) -> String {
    let Some(m) = web.status().mirror else {
        return String::new();
    };
    let mut b = String::from("<h2>Mirror</h2>");
    let _ = write!(
        b,
        r#"<div class="cards"><div class="card">pending objects<b>{}</b></div><div class="card">pending<b>{}</b></div><div class="card">oldest pending<b>{}</b></div><div class="card">last mirrored<b><code>{}</code></b></div></div><p class="muted">as of {}</p>"#,
        m.pending_objects,
        bytes(m.pending_bytes),
        m.oldest_pending_age_seconds
            .map_or("—".into(), |s| format!("{s} s")),
        esc(m.last_synced.as_deref().unwrap_or("—")),
        esc(&age(system_ms(m.as_of)))
    );
    if let Some(e) = &m.error {
        let _ = write!(b, r#"<div class="err">{}</div>"#, esc(e));
    }
    b
}

pub fn module_page(
    web: &Web,
    module: &str,
    view: Option<&ModuleView>,
    listed: &BackupPage,
    page_size: usize,
) -> String {
    let catalog = web.catalog();
    let durations = web.durations();
    let mut b = format!("<h1>{}</h1>", esc(module));
    if let Some(v) = view {
        let _ = write!(
            b,
            r#"<div class="cards"><div class="card">backups<b>{}</b></div><div class="card">last backup<b>{}</b></div><div class="card">stored<b>{}</b></div><div class="card">added by its backups<b>{}</b></div><div class="card">next backup<b>{}</b></div><div class="card">state<b>{}</b></div></div>"#,
            v.backups,
            v.newest
                .as_ref()
                .map_or("none".into(), |(id, _)| esc(&age(id.millis))),
            v.stored_bytes.map_or("—".into(), bytes),
            bytes(v.added_bytes),
            v.next_backup
                .map_or("not scheduled".into(), |t| esc(&age(system_ms(t)))),
            if v.running { "running" } else { "stopped" }
        );
        if let Some(e) = &v.failing {
            let _ = write!(
                b,
                r#"<div class="err">The last backup failed {} ({}): {}</div>"#,
                esc(&age(e.ms)),
                esc(&e.by),
                esc(&failure_text(e))
            );
        }
    }
    // Charts: the newest 60 backups that read, oldest first.
    let recent: Vec<&std::sync::Arc<Summary>> = {
        let all: Vec<_> = catalog.summaries(module).collect();
        let skip = all.len().saturating_sub(60);
        all.into_iter().skip(skip).collect()
    };
    if !recent.is_empty() {
        let as_mib = |v: f64| bytes(v as u64);
        let secs = |v: f64| format!("{v:.2} s");
        b.push_str(&chart::svg(&Series {
            title: "Added to the store, per backup",
            values: recent.iter().map(|s| Some(s.added_bytes as f64)).collect(),
            label: &as_mib,
            bars: true,
        }));
        b.push_str(&chart::svg(&Series {
            title: "Backup duration (backups taken on this data dir)",
            values: recent
                .iter()
                .map(|s| durations.get(&s.id.to_string()).copied())
                .collect(),
            label: &secs,
            bars: false,
        }));
    }
    b.push_str("<h2>Backups</h2>");
    b.push_str(r#"<table><tr><th>backup</th><th>taken</th><th>status</th><th class="n">logical</th><th class="n">added</th><th class="n">logical ÷ added</th><th class="n">seconds</th><th>depot end offsets</th><th>commit ids</th></tr>"#);
    for id in &listed.backups {
        let st = Web::status_of(&catalog, id);
        let name = id.to_string();
        let _ = write!(
            b,
            r#"<tr><td><a href="/modules/{}/backups/{}"><code>{}</code></a></td><td title="{}">{}</td><td>{}</td>"#,
            seg(module),
            seg(&name),
            esc(&name),
            esc(&format_ms(id.millis)),
            esc(&age(id.millis)),
            status_pill(&st)
        );
        match &st {
            BackupStatus::Ok(s) => {
                let _ = write!(
                    b,
                    r#"<td class="n">{}</td><td class="n">{}</td><td class="n">{:.1}x</td><td class="n">{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>"#,
                    bytes(s.logical_bytes),
                    bytes(s.added_bytes),
                    s.saving_ratio(),
                    durations
                        .get(&name)
                        .map_or("—".into(), |d| format!("{d:.2}")),
                    esc(&depot_ends(s)),
                    esc(&commit_ids(s))
                );
            }
            _ => b.push_str(r#"<td colspan="6"></td></tr>"#),
        }
    }
    b.push_str("</table>");
    let mut nav = String::from(r#"<div class="nav">"#);
    if listed.backups.first() != catalog.modules.get(module).and_then(|ids| ids.last()) {
        let _ = write!(
            nav,
            r#"<a href="/modules/{}?pageSize={page_size}">newest</a>"#,
            seg(module)
        );
    }
    if let Some(t) = &listed.next_token {
        let _ = write!(
            nav,
            r#"<a href="/modules/{}?pageToken={}&amp;pageSize={page_size}">older →</a>"#,
            seg(module),
            seg(t)
        );
    }
    nav.push_str("</div>");
    b.push_str(&nav);
    b.push_str(&failures(web, module, 10));
    b.push_str(&pending(&catalog, module));
    b.push_str(&gc_runs(web, 5));
    b.push_str(&mirror(web));
    let _ = write!(
        b,
        r#"<p class="muted">JSON: <a href="/api/modules/{0}/backups">/api/modules/{1}/backups</a></p>"#,
        seg(module),
        esc(module)
    );
    page(module, web, &b)
}

/// `*d: 12,40,7,9` (one end offset per task).
pub fn depot_ends(s: &Summary) -> String {
    s.depots
        .iter()
        .map(|(d, parts)| {
            let ends: Vec<String> = parts.iter().map(|p| p[2].to_string()).collect();
            format!("{d}: {}", ends.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `banking: 42` (one id when all partitions agree).
pub fn commit_ids(s: &Summary) -> String {
    s.commit_ids
        .iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(t, ids)| {
            let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
            format!("{t}: {}", ids.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn failures(web: &Web, module: &str, n: usize) -> String {
    let history = web.history();
    let failed: Vec<&Entry> = history
        .iter()
        .rev()
        .filter(|e| matches!(&e.event, Event::BackupFailed { module: m, .. } if m == module))
        .take(n)
        .collect();
    if failed.is_empty() {
        return String::new();
    }
    let mut b = String::from(
        r#"<h2>Failed backups</h2><table><tr><th>when</th><th>by</th><th>error</th></tr>"#,
    );
    for e in failed {
        let _ = write!(
            b,
            r#"<tr><td title="{}">{}</td><td>{}</td><td class="bad">{}</td></tr>"#,
            esc(&format_ms(e.ms)),
            esc(&age(e.ms)),
            esc(&e.by),
            esc(&failure_text(e))
        );
    }
    b.push_str("</table>");
    b
}

pub fn backup_page(web: &Web, d: &Detail) -> String {
    let m = &d.info.manifest;
    let module = m.module();
    let id = m.backup_id().to_string();
    let mut b = format!(
        r#"<div class="nav"><a href="/modules/{}">← {}</a></div><h1><code>{}</code></h1><div class="sub">taken {} ({})</div>"#,
        seg(module),
        esc(module),
        esc(&id),
        esc(&format_ms(m.created_ms())),
        esc(&age(m.created_ms()))
    );
    let _ = write!(
        b,
        r#"<div class="cards"><div class="card">tasks<b>{}</b></div><div class="card">files<b>{}</b></div><div class="card">logical<b>{}</b></div><div class="card">unique chunks<b>{}</b></div><div class="card">added when taken<b>{}</b></div><div class="card">new chunks<b>{}</b></div><div class="card">files not re-read<b>{}</b></div></div>"#,
        m.task_count(),
        d.info.files,
        bytes(d.info.logical_bytes),
        // Unknown to a view of a store whose tasks are in task objects.
        d.info
            .unique_chunks
            .map_or("—".to_string(), |n| n.to_string()),
        bytes(d.info.added_bytes),
        m.stats().new_chunks,
        m.stats().files_reused
    );
    b.push_str(
        r#"<h2>Tasks</h2><table><tr><th>task</th><th>kind</th><th>name</th><th>detail</th></tr>"#,
    );
    for (task, t) in m.summaries() {
        for dp in &t.depots {
            let _ = write!(
                b,
                r#"<tr><td>{}</td><td>depot</td><td><code>*{}</code></td><td>offsets {}..{} · {} segment(s)</td></tr>"#,
                task,
                esc(&dp.name),
                dp.start_offset,
                dp.end_offset,
                dp.files
            );
        }
        for p in &t.pstates {
            let _ = write!(
                b,
                r#"<tr><td>{}</td><td>pstate</td><td><code>$${}</code></td><td>{} file(s), {}</td></tr>"#,
                task,
                esc(&p.name),
                p.files,
                bytes(p.bytes)
            );
        }
        for p in &t.topologies {
            let _ = write!(
                b,
                r#"<tr><td>{}</td><td>topology</td><td><code>{}</code></td><td>commit {}</td></tr>"#,
                task,
                esc(&p.name),
                p.commit_id.map_or("—".into(), |c| c.to_string())
            );
        }
    }
    b.push_str("</table>");
    if !d.restores.is_empty() {
        b.push_str(r#"<h2>Restored into this data dir</h2><table><tr><th>when</th><th>epoch</th><th>undo backup</th><th>offsets reset</th></tr>"#);
        for e in &d.restores {
            let resets: Vec<String> = e.resets.iter().map(|r| esc(&r.to_string())).collect();
            let _ = write!(
                b,
                r#"<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>"#,
                esc(&format_ms(e.restored_ms)),
                e.epoch,
                esc(e.undo_backup_id.as_deref().unwrap_or("—")),
                resets.join("<br>")
            );
        }
        b.push_str("</table>");
    }
    let _ = write!(
        b,
        r#"<p class="muted">Restore it with <code>rbk restore --backupId {}</code>. JSON: <a href="/api/modules/{}/backups/{}">here</a>.</p>"#,
        esc(&id),
        seg(module),
        seg(&id)
    );
    page(&id, web, &b)
}

/// A short page for an error (404, 400).
pub fn error_page(web: &Web, title: &str, detail: &str) -> String {
    page(
        title,
        web,
        &format!(
            r#"<h1>{}</h1><div class="err">{}</div><p><a href="/">All modules</a></p>"#,
            esc(title),
            esc(detail)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_naturally() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
        let now = now_ms();
        assert_eq!(age(now - 30_000), "30 s ago");
        assert_eq!(age(now - 600_000), "10 min ago");
        assert!(age(now + 120_000).starts_with("in "));
    }
}
