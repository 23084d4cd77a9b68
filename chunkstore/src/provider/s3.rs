//! A provider on Amazon S3 or any S3-compatible server (Garage, MinIO, Ceph RGW), through
//! aws-sdk-s3.
//!
//! Config strings (see [`S3Location::parse`]):
//! - `s3 <bucket>[/<prefix>]`: AWS itself; endpoint, region and credentials come from the usual
//!   AWS environment variables and profile files;
//! - `s3 http(s)://host:port/<bucket>[/<prefix>]`: an S3-compatible server at that endpoint,
//!   addressed path-style; region and credentials as above.
//!
//! Every method is one request (or one multipart upload) and only *classifies* failures:
//! not found, temporary (throttling, 5xx, timeouts, dropped connections) or permanent (denied,
//! no such bucket). Retrying is the job of [`super::RetryingProvider`], which
//! [`super::from_spec`] puts around this provider, so one tested layer decides about retries
//! for every remote provider. The SDK's own retries are switched off.
//!
//! Put-if-absent is a HEAD, then a PUT when the key is missing; no conditional write is used
//! (Garage 2.x ignores If-None-Match). Two writers racing on a key both write, which is
//! harmless: pack keys are content addresses, and every other key rbk writes is unique to its
//! writer (backup ids, session and GC record ids carry random parts).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    retry::RetryConfig, timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_smithy_http_client::tls;
use bytes::Bytes;
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};

use super::{ListPage, ObjectMeta, Provider, validate_key};
use crate::{Error, ErrorKind, Result, Status};

/// Where the objects live: an optional endpoint (S3-compatible servers), a bucket and a key
/// prefix (empty, or ending in `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub endpoint: Option<String>,
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    /// Parses the argument of an `s3` provider string: `<bucket>[/<prefix>]` or
    /// `http(s)://host[:port]/<bucket>[/<prefix>]`.
    ///
    /// # Errors
    /// `InvalidInput` naming the string and what a valid one looks like.
    pub fn parse(arg: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidInput(format!(
                "backup provider `s3 {arg}`: {why}; use `s3 <bucket>[/<prefix>]` or \
                 `s3 http://host:port/<bucket>[/<prefix>]`"
            ))
        };
        let (endpoint, path) = match arg.split_once("://") {
            Some((scheme, rest)) => {
                if scheme != "http" && scheme != "https" {
                    return Err(bad("the endpoint must start with http:// or https://"));
                }
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                if host.is_empty() || host.contains(['@', '?', '#']) {
                    return Err(bad("the endpoint has no usable host[:port]"));
                }
                (Some(format!("{scheme}://{host}")), path)
            }
            None => (None, arg),
        };
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket given"));
        }
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(bad(&format!(
                "`{bucket}` is not a valid bucket name (3-63 lowercase letters, digits, '-' and '.')"
            )));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            validate_key(prefix).map_err(|_| bad(&format!("`{prefix}` is not a valid prefix")))?;
        }
        Ok(S3Location {
            endpoint,
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = self.prefix.trim_end_matches('/');
        let sep = if prefix.is_empty() { "" } else { "/" };
        match &self.endpoint {
            Some(e) => write!(f, "s3 {e}/{}{sep}{prefix}", self.bucket),
            None => write!(f, "s3 {}{sep}{prefix}", self.bucket),
        }
    }
}

/// Tuning and explicit settings; the defaults suit AWS and Garage.
#[derive(Clone)]
pub struct S3Options {
    /// Access key id and secret; `None` uses the AWS environment/profile chain.
    pub credentials: Option<(String, String)>,
    /// Region; `None` uses the chain, then `us-east-1`.
    pub region: Option<String>,
    /// Objects larger than this are uploaded in parts.
    pub multipart_threshold: usize,
    /// Size of each part (S3 requires at least 5 MiB for all but the last).
    pub part_size: usize,
    /// Requests in flight at once, across all callers of this provider.
    pub max_concurrent_requests: usize,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            credentials: None,
            region: None,
            // Packs are ~16 MiB and go up in one PUT (fewer requests); only large manifests
            // are split.
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
            max_concurrent_requests: 16,
        }
    }
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("S3Options")
            .field("credentials", &self.credentials.as_ref().map(|(id, _)| id))
            .field("region", &self.region)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .finish()
    }
}

/// Requests sent, by kind (for benchmarks and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestCounts {
    pub get: u64,
    pub head: u64,
    pub put: u64,
    /// CreateMultipartUpload, UploadPart, CompleteMultipartUpload and AbortMultipartUpload.
    pub multipart: u64,
    pub list: u64,
    pub delete: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.get + self.head + self.put + self.multipart + self.list + self.delete
    }

    /// The requests made since `earlier` was read (of the same provider).
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            get: self.get - earlier.get,
            head: self.head - earlier.head,
            put: self.put - earlier.put,
            multipart: self.multipart - earlier.multipart,
            list: self.list - earlier.list,
            delete: self.delete - earlier.delete,
        }
    }

    /// The requests of two providers together.
    pub fn plus(&self, other: &RequestCounts) -> RequestCounts {
        RequestCounts {
            get: self.get + other.get,
            head: self.head + other.head,
            put: self.put + other.put,
            multipart: self.multipart + other.multipart,
            list: self.list + other.list,
            delete: self.delete + other.delete,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    get: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    multipart: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
}

/// An error and its sources, each by its Display, on one line.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ").replace('\n', " ")
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The most keys one DeleteObjects request may carry.
const MAX_BATCH_DELETE: usize = 1000;

#[derive(Debug)]
pub struct S3Provider {
    location: S3Location,
    options: S3Options,
    /// Built on first use: loading the AWS config is async and needs the caller's runtime.
    client: OnceCell<Client>,
    permits: Arc<Semaphore>,
    counters: Counters,
}

impl S3Provider {
    pub fn new(location: S3Location, options: S3Options) -> Self {
        let permits = Arc::new(Semaphore::new(options.max_concurrent_requests.max(1)));
        S3Provider {
            location,
            options,
            client: OnceCell::new(),
            permits,
            counters: Counters::default(),
        }
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    pub fn requests(&self) -> RequestCounts {
        let c = &self.counters;
        RequestCounts {
            get: c.get.load(Ordering::Relaxed),
            head: c.head.load(Ordering::Relaxed),
            put: c.put.load(Ordering::Relaxed),
            multipart: c.multipart.load(Ordering::Relaxed),
            list: c.list.load(Ordering::Relaxed),
            delete: c.delete.load(Ordering::Relaxed),
        }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                // rustls with ring: no C toolchain beyond what RocksDB needs anyway.
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(
                        tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https();
                let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
                if let Some(region) = &self.options.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                if let Some((id, secret)) = &self.options.credentials {
                    loader = loader.credentials_provider(Credentials::new(
                        id.clone(),
                        secret.clone(),
                        None,
                        None,
                        "rbk",
                    ));
                }
                let shared = loader.load().await;
                let mut config = aws_sdk_s3::config::Builder::from(&shared)
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(5))
                            .read_timeout(Duration::from_secs(60))
                            .build(),
                    )
                    // Every chunk is BLAKE3-verified on read; a second checksum in transit
                    // only costs CPU (and aws-chunked encoding some servers mishandle).
                    .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                    .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
                if shared.region().is_none() {
                    config = config.region(Region::new("us-east-1"));
                }
                if let Some(endpoint) = &self.location.endpoint {
                    config = config.endpoint_url(endpoint).force_path_style(true);
                }
                Client::from_conf(config.build())
            })
            .await
    }

    /// The client and a slot among the requests in flight; counts the request under `kind`.
    async fn start(&self, kind: &AtomicU64) -> (&Client, SemaphorePermit<'_>) {
        let client = self.client().await;
        let permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore is never closed");
        bump(kind);
        (client, permit)
    }

    /// GETs `key` (or a range of it), reading at most `max_len` bytes of body: the length
    /// the server announces is checked before the body is read, and the body is read in
    /// pieces and cut off should it run past the limit anyway.
    async fn get_object(&self, key: &str, range: Option<String>, max_len: u64) -> Result<Bytes> {
        validate_key(key)?;
        let (client, _permit) = self.start(&self.counters.get).await;
        let out = client
            .get_object()
            .bucket(self.bucket())
            .key(self.full_key(key))
            .set_range(range)
            .send()
            .await;
        match out {
            Ok(out) => {
                if let Some(len) = out.content_length().and_then(|l| u64::try_from(l).ok())
                    && len > max_len
                {
                    return Err(Error::too_large(key, len, max_len));
                }
                self.read_body(key, out.body, max_len).await
            }
            Err(e) if Self::is_not_found(&e) => Err(Error::NotFound { key: key.into() }),
            Err(e) if e.code() == Some("InvalidRange") => Err(Error::corrupt(
                format!("object `{key}`"),
                "shorter than the range asked for (truncated?)",
            )),
            Err(e) => Err(self.error(key, e)),
        }
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.location.prefix)
    }

    fn bucket(&self) -> &str {
        &self.location.bucket
    }

    fn endpoint(&self) -> String {
        self.location
            .endpoint
            .clone()
            .unwrap_or_else(|| "the AWS S3 endpoint".into())
    }

    /// Turns an SDK failure into an error naming the object, saying whether trying again can
    /// help and what the user should check.
    fn error<E>(&self, key: &str, err: SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().unwrap_or("").to_string();
        let chain = error_chain(&err);
        let (kind, detail) = match &err {
            // The SDK reports a credential chain that found nothing as a dispatch failure;
            // no retry can fix that.
            SdkError::DispatchFailure(_) if chain.contains("no credentials found") => (
                ErrorKind::PermissionDenied,
                "no AWS credentials found (tried the environment, profile files, web identity, \
                 ECS and EC2 instance metadata): set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
                    .to_string(),
            ),
            SdkError::TimeoutError(_) => (
                ErrorKind::Unavailable,
                format!("request to {} timed out", self.endpoint()),
            ),
            SdkError::DispatchFailure(d) if !d.is_user() => (
                ErrorKind::Unavailable,
                format!(
                    "cannot reach {} ({chain}): check the endpoint and that the server is running",
                    self.endpoint()
                ),
            ),
            SdkError::ResponseError(_) => (
                ErrorKind::Unavailable,
                format!("unreadable response: {chain}"),
            ),
            SdkError::ServiceError(_) => self.classify_status(status, &code, &chain),
            _ => (ErrorKind::Io, chain),
        };
        Error::provider(self.describe(), key, detail, kind)
    }

    /// What an S3 error response means: its kind (which also says whether a retry can
    /// help) and a message saying what to check.
    fn classify_status(
        &self,
        status: Option<u16>,
        code: &str,
        context: &str,
    ) -> (ErrorKind, String) {
        let status_text = status.map_or(String::new(), |s| format!("HTTP {s} "));
        let what = format!("{status_text}{code}");
        match (status, code) {
            (_, "NoSuchBucket") => (
                ErrorKind::ConfigInvalid,
                format!(
                    "bucket `{}` does not exist at {}: create it, or fix backup.provider",
                    self.bucket(),
                    self.endpoint()
                ),
            ),
            (Some(401 | 403), _)
            | (
                _,
                "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "AuthorizationHeaderMalformed",
            ) => (
                ErrorKind::PermissionDenied,
                format!(
                    "access denied ({what}): check the credentials (AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, or AWS_PROFILE), the region (AWS_REGION) and that \
                     the key may read and write bucket `{}`",
                    self.bucket()
                ),
            ),
            (Some(429), _) | (_, "SlowDown") => (
                ErrorKind::RateLimited,
                format!("the server is busy or failing ({what}): {context}"),
            ),
            (Some(500..=599), _)
            | (_, "RequestTimeout" | "InternalError" | "ServiceUnavailable") => (
                ErrorKind::Unavailable,
                format!("the server is busy or failing ({what}): {context}"),
            ),
            _ => (
                ErrorKind::Io,
                format!("request refused ({what}): {context}"),
            ),
        }
    }

    /// A missing object: `NoSuchKey` from GET, `NotFound` or a bare 404 from HEAD (which
    /// has no body to carry a code).
    fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
        matches!(err.code(), Some("NoSuchKey" | "NotFound"))
            || (err.code().is_none()
                && err
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 404))
    }

    async fn read_body(&self, key: &str, mut body: ByteStream, max_len: u64) -> Result<Bytes> {
        let mut out = bytes::BytesMut::new();
        while let Some(piece) = body.try_next().await.map_err(|e| {
            Error::provider(
                self.describe(),
                key,
                format!("download interrupted: {}", error_chain(&e)),
                ErrorKind::Unavailable,
            )
        })? {
            if (out.len() + piece.len()) as u64 > max_len {
                return Err(Error::too_large(
                    key,
                    (out.len() + piece.len()) as u64,
                    max_len,
                ));
            }
            out.extend_from_slice(&piece);
        }
        Ok(out.freeze())
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        if body.len() > self.options.multipart_threshold {
            return self.put_multipart(key, body).await;
        }
        let (client, _permit) = self.start(&self.counters.put).await;
        client
            .put_object()
            .bucket(self.bucket())
            .key(self.full_key(key))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error(key, e))?;
        Ok(())
    }

    /// Uploads `body` in parts, up to four at once; aborts the upload on failure so no parts
    /// are left behind (best effort: a bucket lifecycle rule is the backstop).
    async fn put_multipart(&self, key: &str, body: Bytes) -> Result<()> {
        let full_key = self.full_key(key);
        let created = {
            let (client, _permit) = self.start(&self.counters.multipart).await;
            client
                .create_multipart_upload()
                .bucket(self.bucket())
                .key(&full_key)
                .send()
                .await
                .map_err(|e| self.error(key, e))?
        };
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(Error::Provider {
                provider: self.describe(),
                key: key.to_string(),
                detail: "the server started a multipart upload without an upload id".into(),
                kind: ErrorKind::Unavailable,
                status: Status::Temporary,
            });
        };
        let result = self.upload_parts(key, &full_key, &upload_id, body).await;
        if result.is_err() {
            let (client, _permit) = self.start(&self.counters.multipart).await;
            let _ = client
                .abort_multipart_upload()
                .bucket(self.bucket())
                .key(&full_key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        full_key: &str,
        upload_id: &str,
        body: Bytes,
    ) -> Result<()> {
        let client = self.client().await.clone();
        let part_size = self.options.part_size.max(5 << 20);
        let mut tasks = tokio::task::JoinSet::new();
        let in_flight = Arc::new(Semaphore::new(4));
        for (i, start) in (0..body.len()).step_by(part_size).enumerate() {
            let part = body.slice(start..(start + part_size).min(body.len()));
            let part_number = i as i32 + 1;
            let (client, bucket, full_key, upload_id) = (
                client.clone(),
                self.bucket().to_string(),
                full_key.to_string(),
                upload_id.to_string(),
            );
            let (in_flight, permits) = (in_flight.clone(), self.permits.clone());
            bump(&self.counters.multipart);
            tasks.spawn(async move {
                let _part_slot = in_flight.acquire_owned().await;
                let _permit = permits.acquire_owned().await;
                let out = client
                    .upload_part()
                    .bucket(bucket)
                    .key(full_key)
                    .upload_id(upload_id)
                    .part_number(part_number)
                    .body(ByteStream::from(part))
                    .send()
                    .await;
                (part_number, out)
            });
        }
        let mut parts = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (part_number, out) = joined.map_err(|e| Error::Provider {
                provider: self.describe(),
                key: key.to_string(),
                detail: format!("upload task failed: {e}"),
                kind: ErrorKind::Io,
                status: Status::Temporary,
            })?;
            let out = out.map_err(|e| self.error(key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(part_number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build(),
            );
        }
        parts.sort_by_key(|p| p.part_number());
        let (client, _permit) = self.start(&self.counters.multipart).await;
        client
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(full_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error(key, e))?;
        Ok(())
    }
}

#[async_trait]
impl Provider for S3Provider {
    fn describe(&self) -> String {
        self.location.to_string()
    }

    async fn get(&self, key: &str, max_len: u64) -> Result<Bytes> {
        self.get_object(key, None, max_len).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes> {
        if len == 0 {
            // HTTP cannot express an empty range; the object must still exist.
            return if self.exists(key).await? {
                Ok(Bytes::new())
            } else {
                Err(Error::NotFound { key: key.into() })
            };
        }
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let bytes = self.get_object(key, Some(range), len).await?;
        if bytes.len() as u64 != len {
            return Err(Error::corrupt(
                format!("object `{key}`"),
                format!("shorter than the {len} bytes asked for at offset {offset} (truncated?)"),
            ));
        }
        Ok(bytes)
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool> {
        validate_key(key)?;
        if self.exists(key).await? {
            return Ok(false);
        }
        self.put(key, body).await?;
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let (client, _permit) = self.start(&self.counters.delete).await;
        client
            .delete_object()
            .bucket(self.bucket())
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error(key, e))?;
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            validate_key(key)?;
        }
        for batch in keys.chunks(MAX_BATCH_DELETE) {
            let objects = batch
                .iter()
                .map(|k| {
                    ObjectIdentifier::builder()
                        .key(self.full_key(k))
                        .build()
                        .expect("key is set")
                })
                .collect::<Vec<_>>();
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .expect("objects are set");
            let (client, _permit) = self.start(&self.counters.delete).await;
            let out = client
                .delete_objects()
                .bucket(self.bucket())
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.error(&batch[0], e))?;
            if let Some(failed) = out.errors().first() {
                let full = failed.key().unwrap_or_default();
                let key = full.strip_prefix(&self.location.prefix).unwrap_or(full);
                let code = failed.code().unwrap_or_default();
                return Err(Error::Provider {
                    provider: self.describe(),
                    key: key.to_string(),
                    detail: format!(
                        "batch delete refused this key ({code}: {}); {} of {} keys failed",
                        failed.message().unwrap_or_default(),
                        out.errors().len(),
                        batch.len()
                    ),
                    kind: match code {
                        "SlowDown" => ErrorKind::RateLimited,
                        "InternalError" | "ServiceUnavailable" => ErrorKind::Unavailable,
                        "AccessDenied" => ErrorKind::PermissionDenied,
                        _ => ErrorKind::Io,
                    },
                    status: if matches!(code, "InternalError" | "SlowDown" | "ServiceUnavailable") {
                        Status::Temporary
                    } else {
                        Status::Permanent
                    },
                });
            }
        }
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        let (client, _permit) = self.start(&self.counters.head).await;
        match client
            .head_object()
            .bucket(self.bucket())
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if Self::is_not_found(&e) => Ok(false),
            Err(e) => Err(self.error(key, e)),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: usize,
    ) -> Result<ListPage> {
        let (client, _permit) = self.start(&self.counters.list).await;
        // The page token is the last key of the previous page, as for every provider;
        // StartAfter makes that work without server-side continuation state.
        let mut request = client
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(self.full_key(prefix))
            .max_keys(page_size.clamp(1, 1000) as i32);
        if let Some(token) = page_token {
            request = request.start_after(self.full_key(token));
        }
        let out = request.send().await.map_err(|e| self.error(prefix, e))?;
        let objects: Vec<ObjectMeta> = out
            .contents()
            .iter()
            .filter_map(|o| {
                let key = o.key()?.strip_prefix(&self.location.prefix)?;
                Some(ObjectMeta {
                    key: key.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified_ms: o
                        .last_modified()
                        .and_then(|t| t.to_millis().ok())
                        .and_then(|ms| u64::try_from(ms).ok()),
                })
            })
            .collect();
        let next_token = if out.is_truncated() == Some(true) {
            objects.last().map(|o| o.key.clone())
        } else {
            None
        };
        Ok(ListPage {
            objects,
            next_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_strings_parse_into_endpoint_bucket_and_prefix() {
        let l = S3Location::parse("my-bucket").unwrap();
        assert_eq!(
            (l.endpoint, l.bucket, l.prefix),
            (None, "my-bucket".into(), String::new())
        );
        let l = S3Location::parse("my-bucket/team/rbk/").unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("my-bucket", "team/rbk/")
        );
        let l = S3Location::parse("http://127.0.0.1:3900/backups/prod").unwrap();
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("backups", "prod/"));
        assert_eq!(l.to_string(), "s3 http://127.0.0.1:3900/backups/prod");
        assert_eq!(S3Location::parse("b12").unwrap().to_string(), "s3 b12");
    }

    #[test]
    fn throttling_and_server_errors_are_temporary_refusals_are_not() {
        let p = S3Provider::new(
            S3Location::parse("http://127.0.0.1:9/bucket").unwrap(),
            S3Options::default(),
        );
        let temporary = |status, code| {
            matches!(
                p.classify_status(Some(status), code, "").0,
                ErrorKind::RateLimited | ErrorKind::Unavailable
            )
        };
        assert!(temporary(503, "SlowDown"));
        assert!(temporary(429, ""));
        assert!(temporary(500, "InternalError"));
        assert!(temporary(502, ""));
        assert!(temporary(400, "RequestTimeout"));
        assert!(!temporary(403, "AccessDenied"));
        assert!(!temporary(403, "SignatureDoesNotMatch"));
        assert!(!temporary(404, "NoSuchBucket"));
        assert!(!temporary(400, "InvalidArgument"));
        assert!(!temporary(409, "BucketAlreadyExists"));
        let (_, detail) = p.classify_status(Some(403), "InvalidAccessKeyId", "");
        assert!(
            detail.contains("access denied (HTTP 403 InvalidAccessKeyId)"),
            "{detail}"
        );
        let (_, detail) = p.classify_status(Some(404), "NoSuchBucket", "");
        assert!(
            detail.contains("bucket `bucket` does not exist at http://127.0.0.1:9"),
            "{detail}"
        );
    }

    #[test]
    fn malformed_provider_strings_are_rejected_with_the_expected_shape() {
        for bad in [
            "",
            "/prefix",
            "Upper",
            "ab",
            "bucket_with_underscore",
            "ftp://host/bucket",
            "http:///bucket",
            "http://host:9000",
            "http://host:9000/",
            "bucket/../x",
            "bucket/a//b",
        ] {
            let err = S3Location::parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad:?}");
            assert!(err.to_string().contains("s3 <bucket>[/<prefix>]"), "{err}");
        }
    }
}
