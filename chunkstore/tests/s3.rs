//! The S3 provider against a real S3 server (Garage on loopback, started by the test).

use std::sync::Arc;

use bytes::Bytes;
use rbk_chunkstore::ErrorKind;
use rbk_chunkstore::provider::{
    Provider, RetryPolicy, RetryingProvider, S3Location, S3Options, S3Provider, conformance,
    list_all,
};
use rbk_testsupport::Garage;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Small parts so the suite's large object goes up in several.
fn small_parts() -> S3Options {
    S3Options {
        multipart_threshold: 8 << 20,
        part_size: 5 << 20,
        ..S3Options::default()
    }
}

#[test]
fn s3_provider_conforms_on_garage() {
    let garage = Garage::start();
    let rt = runtime();
    let p = garage.s3_provider("conformance", small_parts());
    rt.block_on(conformance::run(&p));
    // The 20 MB object went up in four 5 MiB parts: create, 4 parts, complete.
    assert_eq!(p.requests().multipart, 6);

    // Everything landed under the prefix, nothing outside it.
    let bare = garage.s3_provider("", S3Options::default());
    let all = rt.block_on(list_all(&bare, "")).unwrap();
    assert!(!all.is_empty());
    assert!(
        all.iter().all(|o| o.key.starts_with("conformance/")),
        "{all:?}"
    );

    // The bucket root works as well (no prefix).
    let p = garage.s3_provider("", S3Options::default());
    rt.block_on(async {
        assert!(
            p.put_if_absent("rootkey", Bytes::from_static(b"r"))
                .await
                .unwrap()
        );
        assert_eq!(&p.get("rootkey", u64::MAX).await.unwrap()[..], b"r");
    });
}

#[test]
fn a_multipart_upload_into_a_missing_bucket_fails_for_good_and_names_it() {
    let garage = Garage::start();
    let rt = runtime();
    let location = S3Location::parse(&format!("{}/no-such-bucket", garage.endpoint())).unwrap();
    let mut options = small_parts();
    options.credentials = Some(garage.credentials());
    options.region = Some(garage.region().into());
    let p = S3Provider::new(location, options);
    let big = Bytes::from(vec![1u8; 12 << 20]);
    let err = rt.block_on(p.put_if_absent("big", big)).unwrap_err();
    assert!(!err.is_temporary(), "{err}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
}

#[test]
fn bad_settings_give_errors_that_say_what_to_check_and_are_not_retried() {
    let garage = Garage::start();
    let rt = runtime();
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: std::time::Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let retrying = |p: S3Provider| RetryingProvider::new(Arc::new(p), policy);

    // Wrong secret: denied, permanent, one request.
    let wrong = S3Options {
        credentials: Some(("GK000000000000000000000000".into(), "0".repeat(64))),
        region: Some(garage.region().into()),
        ..S3Options::default()
    };
    let location = S3Location::parse(garage.provider_spec("x").trim_start_matches("s3 ")).unwrap();
    let p = retrying(S3Provider::new(location.clone(), wrong));
    let err = rt.block_on(p.get("config", u64::MAX)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(!err.is_temporary());
    let msg = err.to_string();
    assert!(
        msg.contains("access denied") && msg.contains("AWS_ACCESS_KEY_ID"),
        "{msg}"
    );
    assert!(msg.contains(&garage.endpoint()), "{msg}");

    // Missing bucket: names it.
    let options = S3Options {
        credentials: Some(garage.credentials()),
        region: Some(garage.region().into()),
        ..S3Options::default()
    };
    let missing = S3Location::parse(&format!("{}/missing-bucket", garage.endpoint())).unwrap();
    let p = retrying(S3Provider::new(missing, options.clone()));
    let msg = rt
        .block_on(p.get("config", u64::MAX))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("bucket `missing-bucket` does not exist"),
        "{msg}"
    );

    // Unreachable endpoint: temporary, retried, then the message says what to check.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let unreachable = S3Location::parse(&format!("http://127.0.0.1:{port}/bucket")).unwrap();
    let p = retrying(S3Provider::new(unreachable, options));
    let msg = rt
        .block_on(p.get("config", u64::MAX))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&format!("cannot reach http://127.0.0.1:{port}")),
        "{msg}"
    );
    assert!(msg.contains("gave up after 3 attempts"), "{msg}");
}

#[test]
fn listing_pages_through_more_keys_than_one_response_holds() {
    let garage = Garage::start();
    let rt = runtime();
    let p = garage.provider("many");
    rt.block_on(async {
        for i in 0..1100 {
            p.put_if_absent(&format!("k/{i:05}"), Bytes::new())
                .await
                .unwrap();
        }
        let all = list_all(p.as_ref(), "k/").await.unwrap();
        assert_eq!(all.len(), 1100);
        assert!(all.windows(2).all(|w| w[0].key < w[1].key));
        let keys: Vec<String> = all.iter().map(|o| o.key.clone()).collect();
        p.delete_many(&keys).await.unwrap();
        assert!(list_all(p.as_ref(), "k/").await.unwrap().is_empty());
    });
}
