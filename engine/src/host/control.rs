//! The control socket: how `rbk backup` and `rbk restore` reach a host running in another
//! process (`rbk serve`). A Unix socket at `<data-dir>/.rbk/host.sock`, one JSON request per
//! line, one JSON answer per line:
//!
//! | request | answer |
//! |---|---|
//! | `{"op":"status"}` | `{"ok":true,"running":["com.…", …]}` |
//! | `{"op":"snapshot","module":M}` | `{"ok":true,"root":DIR,"commit_ids":{…},"pause_us":N}` |
//! | `{"op":"release"}` | `{"ok":true}`: the connection's snapshots are deleted |
//! | `{"op":"stop","module":M}` / `{"op":"start","module":M}` | `{"ok":true}` |
//!
//! Failures answer `{"ok":false,"error":"…"}`. A snapshot lives until it is released or its
//! connection closes — so a backup killed mid-way leaves nothing behind in the host.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use super::{Host, Snapshot};
use crate::{Error, Result};

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(".rbk").join("host.sock")
}

/// The listening side, run by a [`Host`]'s process. Dropping it stops listening and removes
/// the socket.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    closing: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlServer {
    /// Listens on the data dir's socket for `host`.
    ///
    /// # Errors
    /// `InvalidInput` when another host already answers there; I/O errors.
    pub fn start(host: Arc<Host>) -> Result<ControlServer> {
        let path = socket_path(host.data_dir());
        let dir = path.parent().expect("parent");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                return Err(Error::InvalidInput(format!(
                    "another host already runs on data dir `{}` (it answers on `{}`); stop it \
                     first",
                    host.data_dir().display(),
                    path.display()
                )));
            }
            // Left by a host that was killed.
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        let listener = UnixListener::bind(&path).map_err(|e| Error::io(&path, e))?;
        let closing = Arc::new(AtomicBool::new(false));
        let flag = closing.clone();
        let thread = std::thread::Builder::new()
            .name("control socket".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let host = host.clone();
                    let _ = std::thread::Builder::new()
                        .name("control connection".into())
                        .spawn(move || serve_connection(&host, conn));
                }
            })
            .map_err(|e| Error::io(&path, e))?;
        Ok(ControlServer {
            path,
            closing,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        // Wakes the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_connection(host: &Host, conn: UnixStream) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut snapshots: Vec<Snapshot> = Vec::new();
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { break };
        let answer = match handle(host, &line, &mut snapshots) {
            Ok(v) => v,
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        };
        if writeln!(out, "{answer}").is_err() {
            break;
        }
    }
    // Connection gone: its snapshots are deleted as they drop here.
}

fn module_arg(req: &Value) -> Result<&str> {
    req.get("module")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::InvalidInput("request names no `module`".into()))
}

fn handle(host: &Host, line: &str, snapshots: &mut Vec<Snapshot>) -> Result<Value> {
    let req: Value = serde_json::from_str(line)
        .map_err(|e| Error::InvalidInput(format!("request is not JSON: {e}")))?;
    match req.get("op").and_then(Value::as_str).unwrap_or("") {
        "status" => Ok(json!({"ok": true, "running": host.running()})),
        "snapshot" => {
            let snap = host.snapshot(module_arg(&req)?)?;
            let answer = json!({
                "ok": true,
                "root": snap.root,
                "commit_ids": snap.commit_ids,
                "pause_us": snap.pause.as_micros() as u64,
            });
            snapshots.push(snap);
            Ok(answer)
        }
        "release" => {
            snapshots.clear();
            Ok(json!({"ok": true}))
        }
        "stop" => {
            host.stop(module_arg(&req)?)?;
            Ok(json!({"ok": true}))
        }
        "start" => {
            host.start(module_arg(&req)?)?;
            Ok(json!({"ok": true}))
        }
        other => Err(Error::InvalidInput(format!("unknown request `{other}`"))),
    }
}

/// The asking side: `rbk backup`/`rbk restore` talking to a host.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// A snapshot a host made for this client; deleted when the client releases or goes away.
#[derive(Debug, Clone)]
pub struct RemoteSnapshot {
    pub root: PathBuf,
    pub commit_ids: BTreeMap<String, u64>,
    pub pause_us: u64,
}

impl Client {
    /// Connects to the host of `data_dir`; `None` when no host runs there (no socket, or a
    /// socket left by a killed host).
    ///
    /// # Errors
    /// I/O errors other than those meaning "nobody listens".
    pub fn connect(data_dir: &Path) -> Result<Option<Client>> {
        let path = socket_path(data_dir);
        match UnixStream::connect(&path) {
            Ok(s) => {
                let writer = s.try_clone().map_err(|e| Error::io(&path, e))?;
                Ok(Some(Client {
                    path,
                    reader: BufReader::new(s),
                    writer,
                }))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn call(&mut self, req: Value) -> Result<Value> {
        let io = |e| Error::io(&self.path, e);
        writeln!(self.writer, "{req}").map_err(io)?;
        let mut line = String::new();
        if self
            .reader
            .read_line(&mut line)
            .map_err(|e| Error::io(&self.path, e))?
            == 0
        {
            return Err(Error::InvalidInput(format!(
                "the host on `{}` closed the connection",
                self.path.display()
            )));
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| {
            Error::InvalidInput(format!("the host answered something that is not JSON: {e}"))
        })?;
        if v.get("ok") == Some(&Value::Bool(true)) {
            Ok(v)
        } else {
            Err(Error::InvalidInput(format!(
                "the host on `{}` refused: {}",
                self.path.display(),
                v.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
            )))
        }
    }

    /// Modules the host runs.
    ///
    /// # Errors
    /// Connection errors; a refusal.
    pub fn running(&mut self) -> Result<Vec<String>> {
        let v = self.call(json!({"op": "status"}))?;
        Ok(serde_json::from_value(v["running"].clone()).unwrap_or_default())
    }

    /// A consistent snapshot of running `module`, kept until [`Client::release`] or drop.
    ///
    /// # Errors
    /// Connection errors; a refusal (e.g. the module is not running).
    pub fn snapshot(&mut self, module: &str) -> Result<RemoteSnapshot> {
        let v = self.call(json!({"op": "snapshot", "module": module}))?;
        Ok(RemoteSnapshot {
            root: v["root"].as_str().map(PathBuf::from).ok_or_else(|| {
                Error::InvalidInput("the host's snapshot answer has no root".into())
            })?,
            commit_ids: serde_json::from_value(v["commit_ids"].clone()).unwrap_or_default(),
            pause_us: v["pause_us"].as_u64().unwrap_or(0),
        })
    }

    /// # Errors
    /// Connection errors.
    pub fn release(&mut self) -> Result<()> {
        self.call(json!({"op": "release"})).map(|_| ())
    }

    /// # Errors
    /// Connection errors; a refusal.
    pub fn stop(&mut self, module: &str) -> Result<()> {
        self.call(json!({"op": "stop", "module": module}))
            .map(|_| ())
    }

    /// # Errors
    /// Connection errors; a refusal (e.g. the restored state cannot be opened).
    pub fn start(&mut self, module: &str) -> Result<()> {
        self.call(json!({"op": "start", "module": module}))
            .map(|_| ())
    }
}
