//! One machine of the multi-machine tests: a dir with `rbk.yaml` (data dir `data`) and the
//! environment its `rbk` processes run with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const MODULE: &str = "com.rbk.BankModule";

pub struct Machine {
    tmp: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

impl Machine {
    /// A machine whose store is `provider`.
    pub fn new(provider: &str, env: &[(&'static str, String)]) -> Machine {
        Machine::with_config(
            &format!("data.dir: data\nbackup.provider: \"{provider}\"\n"),
            env,
        )
    }

    /// A machine with this `rbk.yaml`.
    pub fn with_config(yaml: &str, env: &[(&'static str, String)]) -> Machine {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("rbk.yaml"), yaml).unwrap();
        std::fs::create_dir_all(tmp.path().join("data")).unwrap();
        Machine {
            tmp,
            env: env.to_vec(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn module(&self) -> PathBuf {
        self.dir().join("data/modules").join(MODULE)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rbk"));
        c.current_dir(self.dir())
            .env_remove("AWS_PROFILE")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(args)
            .arg("--quiet");
        c
    }

    pub fn rbk(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Stdout and stderr of a run that must succeed.
    pub fn run_ok(&self, args: &[&str]) -> (String, String) {
        let out = self.rbk(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "rbk {args:?}: {stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    }

    /// Stdout, trimmed, of a run that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        self.run_ok(args).0.trim().to_string()
    }

    /// Stderr of a run that must exit with `code` (and not panic).
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.rbk(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "rbk {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

pub fn digest(dir: &Path) -> BTreeMap<String, [u8; 32]> {
    rbk_engine::testdata::tree_digest(dir).unwrap()
}
