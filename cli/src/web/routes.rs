//! The routes: HTML pages, the same data as JSON under `/api/`, and `/metrics`. Every path
//! parameter is checked before it is used (module names as rbk checks them everywhere, backup
//! ids parsed and of the module in the path, page tokens bounded); nothing from a URL is ever
//! joined to a filesystem path or an object key unchecked.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use rbk_engine::layout::journal::Event;
use rbk_engine::ops::list::{self, BackupPage};
use rbk_engine::{BackupId, ErrorKind};

use super::catalog::Summary;
use super::html::{self, system_ms};
use super::{BackupStatus, Detail, ModuleView, Web};
use crate::cmd::format_ms;

/// Backups per page unless `pageSize` says otherwise, and the most it may say.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;
/// Longer than any backup id (module names are at most 200 bytes).
const MAX_TOKEN_LEN: usize = 300;

pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/modules/{module}", get(module_page))
        .route("/modules/{module}/backups/{id}", get(backup_page))
        .route("/api/modules", get(api_modules))
        .route("/api/modules/{module}", get(api_module))
        .route("/api/modules/{module}/backups", get(api_backups))
        .route("/api/modules/{module}/backups/{id}", get(api_backup))
        .route("/api/gc", get(api_gc))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(web)
}

/// A refusal: its status and what to say, rendered as the route's kind (page or JSON).
struct Refusal(StatusCode, String);

impl Refusal {
    fn page(self, web: &Web) -> Response {
        let title = match self.0 {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "Bad request",
            _ => "Error",
        };
        (self.0, Html(html::error_page(web, title, &self.1))).into_response()
    }

    fn json(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

fn bad(msg: String) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, msg)
}

/// A module name from a URL: valid as rbk requires everywhere, and known here.
fn module_of(web: &Web, raw: &str) -> Result<String, Refusal> {
    rbk_engine::validate_module_name(raw).map_err(|e| bad(e.to_string()))?;
    if !web.knows(raw) {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("no module `{raw}` in this data dir or in the store"),
        ));
    }
    Ok(raw.to_string())
}

fn backup_of(module: &str, raw: &str) -> Result<BackupId, Refusal> {
    if raw.len() > MAX_TOKEN_LEN {
        return Err(bad("a backup id is at most 300 bytes".into()));
    }
    let id = BackupId::parse(raw).map_err(|e| bad(e.to_string()))?;
    if id.module != module {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("backup `{raw}` is not a backup of module `{module}`"),
        ));
    }
    Ok(id)
}

#[derive(Deserialize, Default)]
struct PageQuery {
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
    #[serde(rename = "pageSize")]
    page_size: Option<usize>,
}

/// The page `q` asks for, as `rbk list` pages.
fn page_of(web: &Web, module: &str, q: &PageQuery) -> Result<(BackupPage, usize), Refusal> {
    let size = q.page_size.unwrap_or(DEFAULT_PAGE);
    if size == 0 || size > MAX_PAGE {
        return Err(bad(format!("pageSize must be 1 to {MAX_PAGE}")));
    }
    let after = q
        .page_token
        .as_deref()
        .map(|t| backup_of(module, t).map_err(|Refusal(_, m)| bad(format!("pageToken: {m}"))))
        .transpose()?;
    let ids = web
        .catalog()
        .modules
        .get(module)
        .cloned()
        .unwrap_or_default();
    Ok((list::page(ids, after.as_ref(), size), size))
}

async fn overview(State(web): State<Arc<Web>>) -> Response {
    Html(html::overview(&web, &web.modules())).into_response()
}

async fn module_page(
    State(web): State<Arc<Web>>,
    Path(module): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = (|| -> Result<String, Refusal> {
        let module = module_of(&web, &module)?;
        let Query(q) = query.map_err(|e| bad(e.body_text()))?;
        let (listed, size) = page_of(&web, &module, &q)?;
        let view = web.modules().into_iter().find(|v| v.module == module);
        Ok(html::module_page(
            &web,
            &module,
            view.as_ref(),
            &listed,
            size,
        ))
    })();
    match r {
        Ok(body) => Html(body).into_response(),
        Err(refusal) => refusal.page(&web),
    }
}

/// Reads one backup off the HTTP thread (one manifest from the store).
async fn load_detail(web: &Arc<Web>, module: &str, raw: &str) -> Result<Detail, Refusal> {
    let module = module_of(web, module)?;
    let id = backup_of(&module, raw)?;
    let w = web.clone();
    let r = tokio::task::spawn_blocking(move || w.detail(&id))
        .await
        .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    r.map_err(|e| {
        let status = match e.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Corrupt => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Unavailable | ErrorKind::RateLimited => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Refusal(status, e.to_string())
    })
}

async fn backup_page(
    State(web): State<Arc<Web>>,
    Path((module, id)): Path<(String, String)>,
) -> Response {
    match load_detail(&web, &module, &id).await {
        Ok(d) => Html(html::backup_page(&web, &d)).into_response(),
        Err(r) => r.page(&web),
    }
}

fn store_json(web: &Web) -> Value {
    let c = web.catalog();
    json!({
        "provider": web.provider_shown,
        "packs": c.packs,
        "stored_bytes": c.pack_bytes,
        "looked": c.refreshed.map(|t| format_ms(system_ms(t))),
        "error": c.error,
    })
}

fn module_json(v: &ModuleView) -> Value {
    json!({
        "module": v.module,
        "in_data_dir": v.in_data_dir,
        "running": v.running,
        "backups": v.backups,
        "added_bytes": v.added_bytes,
        "stored_bytes": v.stored_bytes,
        "last_backup": v.newest.as_ref().map(|(id, st)| json!({
            "backup_id": id.to_string(),
            "created": format_ms(id.millis),
            "age_seconds": super::now_ms().saturating_sub(id.millis) / 1000,
            "status": st.word(),
        })),
        "next_backup": v.next_backup.map(|t| format_ms(system_ms(t))),
        "last_failure": v.failing.as_ref().map(|e| json!({
            "when": format_ms(e.ms),
            "by": e.by,
            "error": match &e.event { Event::BackupFailed { error, .. } => error.as_str(), _ => "" },
        })),
    })
}

fn mirror_json(web: &Web) -> Value {
    match web.status().mirror {
        None => Value::Null,
        Some(m) => json!({
            "as_of": format_ms(system_ms(m.as_of)),
            "pending_objects": m.pending_objects,
            "pending_bytes": m.pending_bytes,
            "last_synced_backup": m.last_synced,
            "oldest_pending_age_seconds": m.oldest_pending_age_seconds,
            "error": m.error,
        }),
    }
}

async fn api_modules(State(web): State<Arc<Web>>) -> Response {
    let modules: Vec<Value> = web.modules().iter().map(module_json).collect();
    axum::Json(json!({
        "store": store_json(&web),
        "next_gc": web.status().next_gc.map(|t| format_ms(system_ms(t))),
        "mirror": mirror_json(&web),
        "modules": modules,
    }))
    .into_response()
}

async fn api_module(State(web): State<Arc<Web>>, Path(module): Path<String>) -> Response {
    let module = match module_of(&web, &module) {
        Ok(m) => m,
        Err(r) => return r.json(),
    };
    let view = web.modules().into_iter().find(|v| v.module == module);
    let failures: Vec<Value> = web
        .history()
        .iter()
        .rev()
        .filter_map(|e| match &e.event {
            Event::BackupFailed { module: m, error } if *m == module => {
                Some(json!({"when": format_ms(e.ms), "by": e.by, "error": error}))
            }
            _ => None,
        })
        .take(20)
        .collect();
    let pending: Vec<Value> = web
        .catalog()
        .pending
        .get(&module)
        .map(|l| {
            l.iter()
                .map(|(id, parts)| {
                    json!({"backup_id": id.to_string(), "begun": format_ms(id.millis), "parts": parts})
                })
                .collect()
        })
        .unwrap_or_default();
    let mut v = view.as_ref().map(module_json).unwrap_or(Value::Null);
    v["failures"] = Value::Array(failures);
    v["pending"] = Value::Array(pending);
    v["mirror"] = mirror_json(&web);
    axum::Json(v).into_response()
}

fn summary_json(s: &Summary, seconds: Option<f64>) -> Value {
    json!({
        "tasks": s.tasks,
        "files": s.files,
        "files_reused": s.files_reused,
        "logical_bytes": s.logical_bytes,
        "added_bytes": s.added_bytes,
        "added_chunks": s.new_chunks,
        "saving_ratio": s.saving_ratio(),
        "seconds": seconds,
        "depots": s.depots.iter().map(|(d, parts)| (d.clone(), json!(parts.iter().map(|p| json!({"task": p[0], "start_offset": p[1], "end_offset": p[2]})).collect::<Vec<_>>()))).collect::<serde_json::Map<_, _>>(),
        "commit_ids": s.commit_ids.iter().map(|(t, ids)| (t.clone(), json!(ids))).collect::<serde_json::Map<_, _>>(),
    })
}

async fn api_backups(
    State(web): State<Arc<Web>>,
    Path(module): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = (|| -> Result<(BackupPage, usize), Refusal> {
        let module = module_of(&web, &module)?;
        let Query(q) = query.map_err(|e| bad(e.body_text()))?;
        page_of(&web, &module, &q)
    })();
    let (listed, _) = match r {
        Ok(p) => p,
        Err(r) => return r.json(),
    };
    let catalog = web.catalog();
    let durations = web.durations();
    let backups: Vec<Value> = listed
        .backups
        .iter()
        .map(|id| {
            let name = id.to_string();
            let st = Web::status_of(&catalog, id);
            let mut v = json!({
                "backup_id": name,
                "created": format_ms(id.millis),
                "status": st.word(),
            });
            match &st {
                BackupStatus::Ok(s) => {
                    if let (Value::Object(o), Value::Object(more)) =
                        (&mut v, summary_json(s, durations.get(&name).copied()))
                    {
                        o.extend(more);
                    }
                }
                BackupStatus::Broken(why) => v["problem"] = json!(why),
                BackupStatus::Loading => {}
            }
            v
        })
        .collect();
    axum::Json(json!({"backups": backups, "next_page_token": listed.next_token})).into_response()
}

async fn api_backup(
    State(web): State<Arc<Web>>,
    Path((module, id)): Path<(String, String)>,
) -> Response {
    let d = match load_detail(&web, &module, &id).await {
        Ok(d) => d,
        Err(r) => return r.json(),
    };
    let m = &d.info.manifest;
    axum::Json(json!({
        "backup_id": m.backup_id().to_string(),
        "module": m.module(),
        "created": format_ms(m.created_ms()),
        "tasks": m.task_count(),
        "files": d.info.files,
        "logical_bytes": d.info.logical_bytes,
        "unique_chunks": d.info.unique_chunks,
        "added_bytes": d.info.added_bytes,
        "added_chunks": m.stats().new_chunks,
        "files_reused": m.stats().files_reused,
        "task_entries": crate::cmd::info::tasks_json(m),
        "restores": crate::cmd::info::restores_json(&d.restores),
    }))
    .into_response()
}

async fn api_gc(State(web): State<Arc<Web>>) -> Response {
    let runs: Vec<Value> = web
        .history()
        .iter()
        .rev()
        .filter(|e| matches!(e.event, Event::Gc { .. } | Event::GcFailed { .. }))
        .take(50)
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            v["when"] = json!(format_ms(e.ms));
            v
        })
        .collect();
    axum::Json(json!({"runs": runs})).into_response()
}

async fn metrics(State(web): State<Arc<Web>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        web.metrics.render(),
    )
        .into_response()
}

async fn not_found(State(web): State<Arc<Web>>, uri: axum::http::Uri) -> Response {
    let msg = format!("nothing at `{}`", uri.path());
    if uri.path().starts_with("/api/") {
        Refusal(StatusCode::NOT_FOUND, msg).json()
    } else {
        Refusal(StatusCode::NOT_FOUND, msg).page(&web)
    }
}
