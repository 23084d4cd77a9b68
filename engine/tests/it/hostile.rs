//! Hostile input on restore and backup: manifests whose paths escape the target, and module
//! files whose names are not UTF-8. Each is refused with an error naming the object, and
//! nothing is written outside (or into) the target.

use std::os::unix::ffi::OsStrExt;

use crate::common::{Env, MODULE, digest, store_listing};
use bytes::Bytes;
use rbk_engine::manifest::Manifest;
use rbk_engine::ops::{backup, restore};
use rbk_engine::{BackupId, ErrorKind, NoProgress, repo};

#[test]
fn manifests_with_escaping_paths_are_refused_on_restore() {
    let env = Env::new(3);
    let repo = env.repo_for(&env.data);
    let b = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let good = repo.load_manifest(&b.backup_id).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (n, evil) in [
        "../escaped",
        "/tmp/rbk-absolute",
        "a/../../b",
        "a//b",
        "./x",
    ]
    .iter()
    .enumerate()
    {
        // A well-formed, correctly checksummed manifest whose file path is hostile.
        let mut m: Manifest = good.clone();
        m.backup_id = BackupId {
            module: MODULE.into(),
            millis: b.backup_id.millis + 1 + n as u64,
            suffix: 0,
        };
        m.created_ms = m.backup_id.millis;
        m.module_files[0].path = evil.to_string();
        let key = repo::manifest_key(&m.backup_id);
        rt.block_on(env.provider().put_if_absent(&key, Bytes::from(m.encode())))
            .unwrap();
        let listing = store_listing(&env.store);
        let target = env.scratch(&format!("t{n}"));
        let e = restore::restore(
            &env.repo_for(&target),
            &target,
            &m.backup_id,
            restore::RestoreOptions::default(),
            &NoProgress,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{evil}: {e}");
        assert!(e.to_string().contains("unsafe file path"), "{evil}: {e}");
        assert!(!env.scratch("escaped").exists() && !env.scratch("b").exists());
        assert!(!std::path::Path::new("/tmp/rbk-absolute").exists());
        assert!(!target.join("modules").join(MODULE).exists(), "{evil}");
        assert_eq!(store_listing(&env.store), listing);
    }
}

#[test]
fn a_module_file_named_in_invalid_utf8_is_refused_by_backup() {
    let env = Env::new(3);
    let bad = env
        .module()
        .join(std::ffi::OsStr::from_bytes(b"notes-\xff.txt"));
    std::fs::write(&bad, b"x").unwrap();
    let before = digest(&env.module());
    let repo = env.repo_for(&env.data);
    let e = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("notes-"), "{e}");
    assert_eq!(repo.backup_ids(MODULE).unwrap(), vec![]);
    assert_eq!(digest(&env.module()), before);
}
