//! The `rbk` binary against a real S3 server (Garage on loopback), configured the way a user
//! would: `backup.provider: "s3 http://host:port/<bucket>/<prefix>"` and AWS_* variables.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rbk_chunkstore::provider::{S3Options, list_all};
use rbk_testsupport::Garage;

const MODULE: &str = "com.rbk.BankModule";

/// A machine: its own dir with `rbk.yaml` (data dir `data`, the given provider) and the
/// environment rbk runs with.
struct Machine {
    tmp: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

impl Machine {
    fn new(provider: &str, env: Vec<(&'static str, String)>) -> Machine {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("rbk.yaml"),
            format!("data.dir: data\nbackup.provider: \"{provider}\"\n"),
        )
        .unwrap();
        Machine { tmp, env }
    }

    fn with_module(provider: &str, env: Vec<(&'static str, String)>) -> Machine {
        let m = Machine::new(provider, env);
        m.ok(&["testdata", "generate", "--size-mib", "6", "--tasks", "4"]);
        m
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn module(&self) -> PathBuf {
        self.dir().join("data/modules").join(MODULE)
    }

    fn rbk(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rbk"))
            .current_dir(self.dir())
            .env_remove("AWS_PROFILE")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(args)
            .arg("--quiet")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.rbk(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "rbk {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command expected to fail; returns its stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.rbk(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "rbk {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        eprintln!("rbk {args:?} → exit {code}: {stderr}");
        stderr
    }
}

fn digest(dir: &Path) -> std::collections::BTreeMap<String, [u8; 32]> {
    rbk_engine::testdata::tree_digest(dir).unwrap()
}

/// Keys in the bucket under `prefix`, read with good credentials.
fn keys_under(garage: &Garage, prefix: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let p = garage.s3_provider("", S3Options::default());
    rt.block_on(list_all(&p, prefix))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

#[test]
fn backup_list_info_verify_and_restore_on_s3_including_a_fresh_machine() {
    let garage = Garage::start();
    let spec = garage.provider_spec("team/rbk");
    let m = Machine::with_module(&spec, garage.aws_env());
    let id1 = m
        .ok(&["backup", "--action", "backup", "--module", MODULE])
        .trim()
        .to_string();
    m.ok(&["testdata", "advance", "--percent", "5"]);
    let id2 = m.ok(&["backup", "--module", MODULE]).trim().to_string();
    assert_ne!(id1, id2);

    let listed = m.ok(&["backup", "--action", "list", "--module", MODULE]);
    let listed: Vec<&str> = listed
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(listed, [id2.as_str(), id1.as_str()]);
    let info = m.ok(&["info", "--backupId", &id2, "--json"]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["backup_id"], id2.as_str());
    m.ok(&["verify", "--read-data"]);

    // Everything is in the bucket under the prefix: packs, manifests, the store config.
    let keys = keys_under(&garage, "team/rbk/");
    assert!(keys.contains(&"team/rbk/config".to_string()), "{keys:?}");
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("team/rbk/manifests/"))
            .count(),
        2
    );

    // A fresh machine with the same settings and nothing else restores both backups.
    let fresh = Machine::new(&spec, garage.aws_env());
    fresh.ok(&["restore", "--backupId", &id1]);
    fresh.ok(&["restore", "--backupId", &id2, "--force"]);
    assert_eq!(digest(&fresh.module()), digest(&m.module()));
}

#[test]
fn bad_s3_settings_fail_with_messages_that_say_what_to_check_and_write_nothing() {
    let garage = Garage::start();
    let spec = garage.provider_spec("bad");
    let good = garage.aws_env();

    // Malformed provider strings: usage errors, before any request.
    let m = Machine::with_module("s3 Not_A_Bucket", good.clone());
    let err = m.fails(&["backup", "--module", MODULE], 2);
    assert!(
        err.contains("`Not_A_Bucket` is not a valid bucket name"),
        "{err}"
    );
    let m = Machine::with_module("s3 ftp://host/bucket", good.clone());
    let err = m.fails(&["backup", "--module", MODULE], 2);
    assert!(err.contains("http:// or https://"), "{err}");

    // Wrong secret.
    let wrong: Vec<_> = good
        .iter()
        .map(|(k, v)| match *k {
            "AWS_SECRET_ACCESS_KEY" => (*k, "0".repeat(64)),
            _ => (*k, v.clone()),
        })
        .collect();
    let m = Machine::with_module(&spec, wrong);
    // Refused, not failed: its own exit code (5), so scripts can tell a key problem apart.
    let err = m.fails(&["backup", "--module", MODULE], 5);
    assert!(err.contains("access denied"), "{err}");
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    assert!(err.contains(&garage.endpoint()), "{err}");

    // No credentials at all.
    let none: Vec<_> = good
        .iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"))
        .cloned()
        .collect();
    let m = Machine::with_module(&spec, none);
    let err = m.fails(&["backup", "--module", MODULE], 5);
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");

    // A bucket that does not exist.
    let m = Machine::with_module(
        &format!("s3 {}/no-such-bucket", garage.endpoint()),
        good.clone(),
    );
    // A configuration that cannot work: a usage error.
    let err = m.fails(&["backup", "--module", MODULE], 2);
    assert!(
        err.contains("bucket `no-such-bucket` does not exist"),
        "{err}"
    );

    // An endpoint nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let m = Machine::with_module(&format!("s3 http://127.0.0.1:{port}/bucket"), good.clone());
    let err = m.fails(&["list", "--module", MODULE], 1);
    assert!(
        err.contains(&format!("cannot reach http://127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("gave up after 8 attempts"), "{err}");

    // None of that wrote a thing into the bucket.
    assert_eq!(keys_under(&garage, ""), Vec::<String>::new());
}
