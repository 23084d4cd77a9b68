//! `rbk serve --http`: the backups page, its JSON API and metrics, through real HTTP against
//! the binary.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{Env, MODULE, Served, wait_for};

const OTHER: &str = "com.rbk.Other";

/// `rbk serve --http 127.0.0.1:0` in `env`, and the address it bound.
fn serve(env: &Env) -> (Served, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbk"))
        .current_dir(env.dir())
        .args(["serve", "--http", "127.0.0.1:0"])
        .env_remove("RBK_CONFIG")
        .env_remove("RBK_DATA_DIR")
        .env_remove("RBK_PROVIDER")
        .env_remove("RBK_MIRROR")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let served = Served(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("rbk serve said where it serves")
            .unwrap();
        if let Some(rest) = line.strip_prefix("backups page on http://") {
            break rest.trim_end_matches('/').to_string();
        }
    };
    // Keep reading stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (served, addr)
}

/// GET `path` (sent as is, so hostile paths reach the server unchanged): status and body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // One write, as a client would send it.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

fn get_json(addr: &str, path: &str) -> Value {
    let (status, body) = get(addr, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// The backup ids `rbk list` prints for `module`, newest first, following every page.
fn listed(env: &Env, module: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut args = vec!["list", "--module", module, "--pageSize", "2", "--json"];
        if let Some(t) = &token {
            args.extend(["--pageToken", t.as_str()]);
        }
        let page: Value = serde_json::from_str(&env.ok(&args)).unwrap();
        ids.extend(
            page["backups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return ids,
        }
    }
}

/// The same through the API, with the same page size.
fn api_listed(addr: &str, module: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/api/modules/{module}/backups?pageSize=2");
        if let Some(t) = &token {
            path.push_str(&format!("&pageToken={t}"));
        }
        let page = get_json(addr, &path);
        let backups = page["backups"].as_array().unwrap();
        assert!(backups.len() <= 2);
        for b in backups {
            assert_eq!(b["status"], "ok", "{b}");
            ids.push(b["backup_id"].as_str().unwrap().to_string());
        }
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return ids,
        }
    }
}

/// Prometheus samples by name and labels.
fn metrics(addr: &str) -> BTreeMap<String, f64> {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let mut out = BTreeMap::new();
    for s in scrape.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let key = format!("{}{{{}}}", s.metric, labels.join(","));
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert(key, v);
    }
    out
}

fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pages_api_and_metrics_show_what_the_store_holds() {
    let env = Env::new();
    env.ok(&[
        "testdata",
        "generate",
        "--module",
        OTHER,
        "--size-mib",
        "1",
        "--tasks",
        "2",
    ]);
    for _ in 0..3 {
        env.ok(&["backup", "--module", MODULE]);
        env.ok(&["testdata", "advance", "--module", MODULE]);
    }
    env.ok(&["backup", "--module", OTHER]);
    let (_served, addr) = serve(&env);

    // The overview lists both modules with exactly `rbk list`'s counts.
    let overview = eventually("the store to be read", || {
        let v = get_json(&addr, "/api/modules");
        let loaded = v["modules"]
            .as_array()?
            .iter()
            .all(|m| m["last_backup"]["status"] == "ok");
        (v["store"]["looked"].is_string() && loaded).then_some(v)
    });
    let counts: BTreeMap<String, u64> = overview["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["module"].as_str().unwrap().to_string(),
                m["backups"].as_u64().unwrap(),
            )
        })
        .collect();
    let main_ids = listed(&env, MODULE);
    let other_ids = listed(&env, OTHER);
    assert_eq!(main_ids.len(), 3);
    assert_eq!(
        counts,
        BTreeMap::from([
            (MODULE.to_string(), main_ids.len() as u64),
            (OTHER.to_string(), other_ids.len() as u64)
        ])
    );
    let main = overview["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["module"] == MODULE)
        .unwrap();
    assert_eq!(main["last_backup"]["backup_id"], main_ids[0].as_str());
    assert_eq!(main["in_data_dir"], true);
    assert_eq!(main["running"], false);

    // Pages of the API equal `rbk list`'s pages, id for id.
    assert_eq!(api_listed(&addr, MODULE), main_ids);
    assert_eq!(api_listed(&addr, OTHER), other_ids);

    // The module page shows the first page of backups, newest first, with a link onwards.
    let (status, page) = get(&addr, &format!("/modules/{MODULE}?pageSize=2"));
    assert_eq!(status, 200);
    let at = |id: &str| page.find(id).unwrap_or_else(|| panic!("{id} missing"));
    assert!(at(&main_ids[0]) < at(&main_ids[1]));
    assert!(!page.contains(&format!(">{}<", main_ids[2])), "page size 2");
    assert!(page.contains(&format!("pageToken={}", main_ids[1])));
    assert!(page.contains("<svg"), "the chart");
    // The HTML overview links every module.
    let (status, home) = get(&addr, "/");
    assert_eq!(status, 200);
    assert!(home.contains(&format!("href=\"/modules/{MODULE}\"")));
    assert!(home.contains(&format!("href=\"/modules/{OTHER}\"")));

    // A backup's detail: what `rbk info --json` says.
    let info: Value =
        serde_json::from_str(&env.ok(&["info", "--backupId", &main_ids[1], "--json"])).unwrap();
    let detail = get_json(
        &addr,
        &format!("/api/modules/{MODULE}/backups/{}", main_ids[1]),
    );
    for key in [
        "backup_id",
        "files",
        "logical_bytes",
        "added_bytes",
        "task_entries",
    ] {
        assert_eq!(detail[key], info[key], "{key}");
    }
    // Counting distinct chunks needs the task objects, which the page does not read.
    assert!(info["unique_chunks"].as_u64().unwrap() > 0);
    assert_eq!(detail["unique_chunks"], Value::Null);
    let (status, html) = get(&addr, &format!("/modules/{MODULE}/backups/{}", main_ids[1]));
    assert_eq!(status, 200);
    assert!(html.contains(&main_ids[1]));

    // Metrics: what the store holds, and what happens from now on.
    let before = metrics(&addr);
    let key = |name: &str, module: &str| format!("{name}{{module={module}}}");
    assert_eq!(before[&key("rbk_backups", MODULE)], 3.0);
    assert_eq!(before[&key("rbk_backups", OTHER)], 1.0);
    assert_eq!(before[&key("rbk_backup_failures_total", MODULE)], 0.0);
    assert_eq!(before[&key("rbk_backup_added_bytes_total", MODULE)], 0.0);
    assert_eq!(before["rbk_store_up{}"], 1.0);
    let newest_ms =
        u64::from_str_radix(&main_ids[0][MODULE.len() + 1..MODULE.len() + 17], 16).unwrap() as f64;
    assert_eq!(
        before[&key("rbk_backup_last_success_timestamp_seconds", MODULE)],
        newest_ms / 1000.0
    );
    assert!(before["rbk_store_stored_bytes{}"] > 0.0);

    env.ok(&["testdata", "advance", "--module", MODULE]);
    let out: Value =
        serde_json::from_str(&env.ok(&["backup", "--module", MODULE, "--json"])).unwrap();
    let added = out["added_bytes"].as_f64().unwrap();
    let after = eventually("the backup in the metrics", || {
        let m = metrics(&addr);
        (m[&key("rbk_backups", MODULE)] == 4.0).then_some(m)
    });
    assert_eq!(after[&key("rbk_backup_added_bytes_total", MODULE)], added);
    assert_eq!(
        after[&key("rbk_backup_duration_seconds_count", MODULE)],
        1.0
    );
    assert!(after["rbk_store_stored_bytes{}"] > before["rbk_store_stored_bytes{}"]);

    let gc: Value = serde_json::from_str(&env.ok(&[
        "gc",
        "--max-age-hours",
        "0",
        "--min-backups-to-keep",
        "1",
        "--json",
    ]))
    .unwrap();
    let freed = gc["bytes_freed"].as_f64().unwrap();
    assert!(freed > 0.0, "{gc}");
    let after_gc = eventually("the GC in the metrics", || {
        let m = metrics(&addr);
        (m.get("rbk_gc_runs_total{outcome=ok,side=store}") == Some(&1.0)).then_some(m)
    });
    assert_eq!(after_gc["rbk_gc_freed_bytes_total{side=store}"], freed);
    assert!(after_gc["rbk_gc_last_run_timestamp_seconds{}"] > 0.0);
    let after_gc = eventually("the deleted backups to leave the metrics", || {
        let m = metrics(&addr);
        (m[&key("rbk_backups", MODULE)] == 1.0).then_some(m)
    });
    assert!(after_gc["rbk_store_stored_bytes{}"] < after["rbk_store_stored_bytes{}"]);
    let runs = get_json(&addr, "/api/gc");
    assert_eq!(runs["runs"][0]["bytes_freed"].as_f64(), Some(freed));
    assert_eq!(runs["runs"][0]["by"], "rbk gc");
}

#[test]
fn a_failing_periodic_backup_shows_on_the_page_and_in_the_metrics() {
    let env = Env::new();
    env.ok(&["backup", "--module", MODULE]);
    let module_json = env
        .dir()
        .join("data/modules")
        .join(MODULE)
        .join("module.json");
    std::fs::write(
        env.dir()
            .join("data/modules")
            .join(MODULE)
            .join("dynamic-options.json"),
        r#"{"backup.period.seconds": 1}"#,
    )
    .unwrap();
    // Not JSON: every backup of the module fails until it is fixed.
    std::fs::write(&module_json, b"{ broken").unwrap();
    let (_served, addr) = serve(&env);
    let m = eventually("a failure in the metrics", || {
        let m = metrics(&addr);
        (m.get(&format!("rbk_backup_failures_total{{module={MODULE}}}")) >= Some(&1.0)).then_some(m)
    });
    assert_eq!(
        m[&format!("rbk_backup_added_bytes_total{{module={MODULE}}}")],
        0.0
    );
    let v = get_json(&addr, &format!("/api/modules/{MODULE}"));
    let error = v["last_failure"]["error"].as_str().unwrap();
    assert!(error.contains("module.json"), "{error}");
    assert_eq!(v["last_failure"]["by"], "rbk serve");
    assert!(!v["failures"].as_array().unwrap().is_empty());
    let (status, page) = get(&addr, &format!("/modules/{MODULE}"));
    assert_eq!(status, 200);
    assert!(page.contains("The last backup failed"), "{page}");
    assert!(page.contains("module.json"));
    let (_, home) = get(&addr, "/");
    assert!(home.contains("last backup failed"));
}

#[test]
fn hostile_paths_are_refused_and_the_server_goes_on() {
    let env = Env::new();
    let id = env.ok(&["backup", "--module", MODULE]).trim().to_string();
    let (_served, addr) = serve(&env);
    wait_for("the store to be read", || {
        get_json(&addr, "/api/modules")["store"]["looked"].is_string()
    });
    let long = "A".repeat(2_000);
    let huge = "A".repeat(100_000);
    let other_id = id.replacen(MODULE, "com.rbk.Else", 1);
    for (path, expect) in [
        ("/modules/..", 400),
        ("/modules/%2e%2e", 400),
        ("/modules/.", 400),
        ("/modules/a%2Fb", 400),
        ("/modules/..%2F..%2Fetc%2Fpasswd", 400),
        ("/api/modules/..%2F.rbk/backups", 400),
        ("/api/modules/%00", 400),
        ("/modules/no.such.Module", 404),
        ("/api/modules/no.such.Module/backups", 404),
        (&format!("/modules/{MODULE}/backups/..%2F..%2Fconfig"), 400),
        (&format!("/modules/{MODULE}/backups/{other_id}"), 404),
        (
            &format!("/api/modules/{MODULE}/backups?pageToken={long}"),
            400,
        ),
        // Longer than hyper takes a request line: refused before it reaches rbk.
        (
            &format!("/api/modules/{MODULE}/backups?pageToken={huge}"),
            414,
        ),
        (
            &format!("/api/modules/{MODULE}/backups?pageToken=nonsense"),
            400,
        ),
        (
            &format!("/api/modules/{MODULE}/backups?pageToken={other_id}"),
            400,
        ),
        (&format!("/api/modules/{MODULE}/backups?pageSize=0"), 400),
        (&format!("/api/modules/{MODULE}/backups?pageSize=1001"), 400),
        (&format!("/api/modules/{MODULE}/backups?pageSize=-1"), 400),
        (&format!("/modules/{MODULE}?pageSize=abc"), 400),
        ("/../../etc/passwd", 404),
        ("/static/..%2F..%2Fetc%2Fpasswd", 404),
    ] {
        let (status, body) = get(&addr, path);
        let shown: String = path.chars().take(80).collect();
        assert_eq!(status, expect, "{shown}: {}", &body[..body.len().min(300)]);
        assert!(!body.contains("root:"), "{shown}");
    }
    // Still serving, and what it serves is unchanged.
    let v = get_json(&addr, &format!("/api/modules/{MODULE}/backups"));
    assert_eq!(v["backups"][0]["backup_id"], id.as_str());
}

#[test]
fn a_running_module_s_periodic_backups_show_their_pause_and_the_mirror_its_lag() {
    const LIVE: &str = "com.rbk.LiveBank";
    let env = Env::new();
    std::fs::write(
        env.dir().join("rbk.yaml"),
        "data.dir: data\nbackup.provider: \"fs store\"\nbackup.mirror: \"fs mirror\"\n",
    )
    .unwrap();
    env.ok(&["testdata", "create", "--module", LIVE, "--tasks", "2"]);
    std::fs::write(
        env.dir()
            .join("data/modules")
            .join(LIVE)
            .join("dynamic-options.json"),
        r#"{"backup.period.seconds": 1, "backup.gc.period.seconds": 2}"#,
    )
    .unwrap();
    let (_served, addr) = serve(&env);
    let m = eventually("a periodic backup of the running module", || {
        let m = metrics(&addr);
        (m.get(&format!("rbk_commit_pause_seconds_count{{module={LIVE}}}")) >= Some(&1.0))
            .then_some(m)
    });
    assert!(m[&format!("rbk_backup_duration_seconds_count{{module={LIVE}}}")] >= 1.0);
    let v = eventually("the mirror caught up with a backup", || {
        let v = get_json(&addr, "/api/modules");
        v["mirror"]["last_synced_backup"].is_string().then_some(v)
    });
    let live = v["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["module"] == LIVE)
        .unwrap()
        .clone();
    assert_eq!(live["running"], true);
    assert!(live["next_backup"].is_string(), "{live}");
    let synced = v["mirror"]["last_synced_backup"].as_str().unwrap();
    assert!(synced.starts_with(&format!("{LIVE}-")), "{synced}");
    assert!(v["mirror"]["error"].is_null(), "{v}");
    let (_, page) = get(&addr, &format!("/modules/{LIVE}"));
    assert!(page.contains("<h2>Mirror</h2>"));
    assert!(page.contains("running"));

    // After a periodic GC: what the module's backups occupy, on the page and as a metric.
    let (stored, m) = eventually("stored bytes after a periodic GC", || {
        let v = get_json(&addr, &format!("/api/modules/{LIVE}"));
        let stored = v["stored_bytes"].as_f64()?;
        let m = metrics(&addr);
        // The journal's GC line reaches the metrics at the refresher's next look.
        let gc_seen = m.get("rbk_gc_runs_total{outcome=ok,side=store}") >= Some(&1.0);
        (m.get(&format!("rbk_module_stored_bytes{{module={LIVE}}}")) == Some(&stored) && gc_seen)
            .then_some((stored, m))
    });
    assert!(stored > 0.0);
    assert!(m["rbk_store_stored_bytes{}"] > 0.0);
}

#[test]
fn a_backup_in_parts_shows_as_pending_until_committed_and_then_as_a_backup() {
    let env = Env::new();
    env.ok(&["backup", "--module", MODULE]);
    let id = env
        .ok(&["backup", "begin", "--module", MODULE])
        .trim()
        .to_string();
    // `rbk serve` holds the module's tasks: it writes its part of the pending backup.
    let (_served, addr) = serve(&env);
    let v = eventually("the part on the API", || {
        let v = get_json(&addr, &format!("/api/modules/{MODULE}"));
        (v["pending"][0]["parts"] == 1).then_some(v)
    });
    assert_eq!(v["pending"][0]["backup_id"], id.as_str());
    let (status, page) = get(&addr, &format!("/modules/{MODULE}"));
    assert_eq!(status, 200);
    assert!(page.contains("Backups in parts, not committed"), "{page}");
    assert!(page.contains(&id), "{page}");
    assert_eq!(api_listed(&addr, MODULE).len(), 1);

    assert_eq!(env.ok(&["backup", "commit", "--backupId", &id]).trim(), id);
    // The commit is in the journal: the page lists it at once, and nothing is pending.
    eventually("the committed backup on the API", || {
        let v = get_json(&addr, &format!("/api/modules/{MODULE}"));
        (v["pending"].as_array().is_some_and(Vec::is_empty)
            && api_listed(&addr, MODULE).first() == Some(&id))
        .then_some(())
    });
}
