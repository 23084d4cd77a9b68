//! One conformance suite, run against every provider: memory and local directory here, S3
//! (Garage) in `chunkstore/tests/s3.rs`. Each assertion states a guarantee the chunk store
//! relies on. Run it against an empty store (or an empty prefix).

use bytes::Bytes;

use super::Provider;
use crate::ErrorKind;

/// No size limit, for reads whose limit is not what is being checked.
const ANY: u64 = u64::MAX;

/// Size of the large object: above the multipart threshold the S3 tests configure.
pub const LARGE_OBJECT: usize = 20_000_000;

/// # Panics
/// When `p` breaks a guarantee of the [`Provider`] trait.
pub async fn run(p: &dyn Provider) {
    // Missing keys.
    assert_eq!(
        p.get("a/missing", ANY).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        p.get_range("a/missing", 0, 1).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(!p.exists("a/missing").await.unwrap());
    p.delete("a/missing").await.unwrap();

    // Put, get, range, put of an existing key keeps the first body.
    assert!(
        p.put_if_absent("a/one", Bytes::from_static(b"0123456789"))
            .await
            .unwrap()
    );
    assert!(
        !p.put_if_absent("a/one", Bytes::from_static(b"other"))
            .await
            .unwrap()
    );
    assert_eq!(&p.get("a/one", ANY).await.unwrap()[..], b"0123456789");
    // The size limit: exactly the object's size reads it; one byte less refuses it, naming
    // the object, its size and the limit.
    assert_eq!(&p.get("a/one", 10).await.unwrap()[..], b"0123456789");
    let e = p.get("a/one", 9).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(
        e.to_string().contains("object `a/one`")
            && e.to_string()
                .contains("it is 10 bytes, more than the 9 bytes"),
        "{e}"
    );
    assert_eq!(&p.get_range("a/one", 3, 4).await.unwrap()[..], b"3456");
    assert_eq!(&p.get_range("a/one", 10, 0).await.unwrap()[..], b"");
    assert_eq!(
        p.get_range("a/one", 8, 5).await.unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    // Into a reused buffer: its old contents are gone, whatever its capacity.
    let mut reused = b"stale bytes from an earlier read".to_vec();
    reused.reserve(1 << 20);
    let got = p.get_range_into("a/one", 2, 5, reused).await.unwrap();
    assert_eq!(got, b"23456");
    let got = p.get_range_into("a/one", 0, 10, got).await.unwrap();
    assert_eq!(got, b"0123456789");
    assert_eq!(
        p.get_range_into("a/one", 8, 5, got)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Corrupt
    );
    assert_eq!(
        p.get_range_into("a/missing", 0, 1, Vec::new())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert!(p.exists("a/one").await.unwrap());

    // Empty objects and odd characters.
    assert!(p.put_if_absent("a/empty", Bytes::new()).await.unwrap());
    assert_eq!(p.get("a/empty", ANY).await.unwrap().len(), 0);
    let odd = "a/com.my-Module_1 +=@,ü";
    assert!(
        p.put_if_absent(odd, Bytes::from_static(b"x"))
            .await
            .unwrap()
    );
    assert_eq!(&p.get(odd, ANY).await.unwrap()[..], b"x");

    // Bad keys are rejected, not mapped somewhere surprising.
    for bad in ["", "/abs", "a/../b", "a//b", "a/./b", "a\\b"] {
        assert_eq!(
            p.put_if_absent(bad, Bytes::new()).await.unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "key {bad:?}"
        );
    }

    // Pagination at page size 2 over 5 keys, sorted, prefix respected.
    for i in 0..5 {
        p.put_if_absent(&format!("list/k{i}"), Bytes::from(vec![7u8; i]))
            .await
            .unwrap();
    }
    p.put_if_absent("listx", Bytes::new()).await.unwrap();
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = p.list("list/", token.as_deref(), 2).await.unwrap();
        pages += 1;
        assert!(page.objects.len() <= 2);
        seen.extend(page.objects.into_iter().map(|o| (o.key, o.size)));
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<(String, u64)> = (0..5).map(|i| (format!("list/k{i}"), i as u64)).collect();
    assert_eq!(seen, expected);
    assert_eq!(super::list_all(p, "list").await.unwrap().len(), 6);

    // Batch delete: present and missing keys alike.
    for k in ["del/a", "del/b", "del/c"] {
        p.put_if_absent(k, Bytes::from_static(b"d")).await.unwrap();
    }
    p.delete_many(&["del/a".into(), "del/missing".into(), "del/c".into()])
        .await
        .unwrap();
    let left: Vec<String> = super::list_all(p, "del/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left, ["del/b"]);

    // Large object.
    let big = Bytes::from(
        (0..LARGE_OBJECT as u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    );
    assert!(p.put_if_absent("big/one", big.clone()).await.unwrap());
    assert_eq!(p.get("big/one", ANY).await.unwrap(), big);
    assert_eq!(
        p.get_range("big/one", LARGE_OBJECT as u64 - 1000, 1000)
            .await
            .unwrap(),
        big.slice(LARGE_OBJECT - 1000..)
    );

    // A body handed over as a file (a spooled pack): in the provider's spool dir when it
    // has one. The file stays the caller's; an existing object keeps its body.
    let scratch =
        std::env::temp_dir().join(format!("rbk-conformance-{:016x}", rand::random::<u64>()));
    let dir = p.spool_dir().unwrap_or_else(|| scratch.clone());
    std::fs::create_dir_all(&dir).expect("the spool dir");
    let spooled = dir.join("conformance-spooled");
    std::fs::write(&spooled, b"spooled body").expect("a spool file");
    assert!(p.put_spooled_if_absent("s/one", &spooled).await.unwrap());
    assert!(!p.put_spooled_if_absent("s/one", &spooled).await.unwrap());
    assert!(!p.put_spooled_if_absent("a/one", &spooled).await.unwrap());
    assert_eq!(&p.get("s/one", ANY).await.unwrap()[..], b"spooled body");
    assert_eq!(&p.get("a/one", ANY).await.unwrap()[..], b"0123456789");
    assert!(spooled.exists());
    std::fs::remove_file(&spooled).expect("removing the spool file");
    let _ = std::fs::remove_dir(&scratch);
    p.delete("s/one").await.unwrap();

    // Delete.
    p.delete("a/one").await.unwrap();
    assert!(!p.exists("a/one").await.unwrap());
    assert_eq!(
        p.get("a/one", ANY).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[cfg(test)]
#[tokio::test]
async fn memory_provider_conforms() {
    run(&super::MemoryProvider::default()).await;
}

#[cfg(test)]
#[tokio::test]
async fn local_provider_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let p = super::LocalProvider::new(dir.path());
    run(&p).await;
    // No temp file is left behind, and the temp dir is not listed.
    assert_eq!(
        std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
        0
    );
    assert!(
        super::list_all(&p, "")
            .await
            .unwrap()
            .iter()
            .all(|o| !o.key.starts_with(".tmp"))
    );
    // A spooled body is taken only from the spool dir: anything else is refused, unread.
    let outside = dir.path().join("not-spooled");
    std::fs::write(&outside, b"x").unwrap();
    assert_eq!(
        p.put_spooled_if_absent("s/two", &outside)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert!(!p.exists("s/two").await.unwrap());
    std::fs::remove_file(&outside).unwrap();
    // Deleting the last object of a directory removes the emptied directories, up to (not
    // including) the root; a put into the same place recreates them.
    p.put_if_absent("x/y/z/obj", Bytes::from_static(b"1"))
        .await
        .unwrap();
    p.delete("x/y/z/obj").await.unwrap();
    assert!(!dir.path().join("x").exists());
    assert!(dir.path().is_dir());
    p.put_if_absent("x/y/z/obj", Bytes::from_static(b"2"))
        .await
        .unwrap();
    assert_eq!(
        p.get("x/y/z/obj", ANY).await.unwrap(),
        Bytes::from_static(b"2")
    );
}

/// A GC deleting objects while another process lists them: the listing must not fail on an
/// object that vanished between the directory read and its stat (it once did, 2 runs in 150).
#[cfg(test)]
#[test]
fn a_local_listing_survives_concurrent_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let p = std::sync::Arc::new(super::LocalProvider::new(dir.path()));
    for round in 0..20 {
        // Flat files under a few directories, as packs/<hh>/ are.
        for i in 0..400 {
            std::fs::create_dir_all(dir.path().join(format!("packs/{:02}", i % 8))).unwrap();
            std::fs::write(
                dir.path().join(format!("packs/{:02}/{round}-{i}", i % 8)),
                b"x",
            )
            .unwrap();
        }
        let root = dir.path().to_path_buf();
        let deleter = std::thread::spawn(move || {
            for i in 0..400 {
                let _ = std::fs::remove_file(root.join(format!("packs/{:02}/{round}-{i}", i % 8)));
            }
        });
        while !deleter.is_finished() {
            rt.block_on(super::list_all(p.as_ref(), "packs/"))
                .expect("a listing during deletes");
        }
        deleter.join().unwrap();
    }
}
