//! Send streams in S3-compatible object storage: the one place rawsend talks to it.
//!
//! The rest of rawsend is synchronous; this crate keeps a small tokio runtime
//! (two worker threads, so uploads and read-ahead progress while the caller
//! works) and exposes blocking adapters: [`ObjectWriter`] (`Write`, a streaming
//! multipart upload with bounded memory, visible only once finished, resumable) and
//! [`ObjectReader`] (`Read`, ranged GETs with read-ahead, continued at the byte
//! offset after a dropped connection). The client is `object_store`'s S3 store.
//!
//! Credentials and endpoint come the standard way: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` and `AWS_ENDPOINT_URL` (an `http://`
//! endpoint allows plain HTTP), else the AWS CLI's files (`~/.aws/credentials`,
//! `~/.aws/config`); requests use path-style addressing. Nothing here prints or logs them.
//!
//! An upload with a journal ([`Journals`], kept locally) that stops before it
//! completes is continued by the next upload of the same key, without sending
//! again the parts already stored.
//!
//! Each stream object `KEY` gets a sidecar `KEY.rawsend.json` ([`StreamInfo`]),
//! written after the stream object completed: a half-written stream never has one.

mod config;
mod error;
mod info;
mod journal;
mod read;
mod write;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStore, PutPayload, RetryConfig};
use tokio::runtime::Runtime;

use config::Settings;

pub use error::Error;
pub use info::{CloneSource, Origin, SIDECAR_SUFFIX, StreamInfo, chain_to, chains, clone_sources_outside};
pub use journal::Journals;
pub use read::ObjectReader;
pub use write::{ObjectWriter, Uploaded};

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An object's location: `s3://BUCKET/KEY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The bucket.
    pub bucket: String,
    /// The key (a prefix for listings; may be empty there).
    pub key: String,
}

impl Location {
    /// Parses `s3://BUCKET/KEY`; `None` if `url` is not an `s3://` URL at all.
    pub fn parse(url: &str) -> Option<Result<Location>> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Some(Err(Error::BadUrl(url.to_owned())));
        }
        Some(Ok(Location { bucket: bucket.to_owned(), key: key.to_owned() }))
    }

    /// The location of `key` in the same bucket.
    pub fn with_key(&self, key: &str) -> Location {
        Location { bucket: self.bucket.clone(), key: key.to_owned() }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Retries of failed requests: five, with exponential backoff from 100 ms.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: Duration::from_secs(60),
    }
}

/// A bucket of an S3-compatible store, with the runtime its requests run on.
#[derive(Clone)]
pub struct Store {
    runtime: Arc<Runtime>,
    s3: Arc<AmazonS3>,
    bucket: String,
    /// The server: the endpoint set (`AWS_ENDPOINT_URL` or a config file), or AWS S3's in the region.
    endpoint: String,
}

impl Store {
    /// Opens `bucket` with the settings of the environment and the AWS files (no request yet).
    pub fn open(bucket: &str) -> Result<Store> {
        Store::open_with(bucket, |name| std::env::var(name).ok())
    }

    /// Opens `bucket` with the `AWS_*` settings that `env` looks up, and the AWS files it
    /// names (or `$HOME/.aws/credentials` and `config`); no request yet.
    pub fn open_with(bucket: &str, env: impl Fn(&str) -> Option<String>) -> Result<Store> {
        let settings = Settings::resolve(env)?;
        let endpoint = settings.endpoint.clone();
        let endpoint = endpoint.unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", settings.region));
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_access_key_id(settings.key_id)
            .with_secret_access_key(settings.secret)
            .with_region(settings.region)
            .with_virtual_hosted_style_request(false)
            .with_retry(retry_config());
        if let Some(token) = settings.token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = settings.endpoint {
            builder = builder.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
        }
        let s3 = builder.build().map_err(|source| Error::Store { url: format!("s3://{bucket}/"), source })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        Ok(Store { runtime: Arc::new(runtime), s3: Arc::new(s3), bucket: bucket.to_owned(), endpoint })
    }

    /// Opens the bucket of `location`.
    pub fn for_location(location: &Location) -> Result<Store> {
        Store::open(&location.bucket)
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// Downloads object `key` as a stream.
    pub fn reader(&self, key: &str) -> Result<ObjectReader> {
        ObjectReader::open(self.clone(), key)
    }

    /// The keys and sizes of the objects under `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let path = (!prefix.is_empty()).then(|| ObjectPath::from(prefix.trim_end_matches('/')));
        let listed = self.block_on(self.s3.list(path.as_ref()).try_collect::<Vec<_>>());
        let mut objects = listed
            .map_err(|err| self.classify(err, prefix))?
            .into_iter()
            .map(|meta| (meta.location.to_string(), meta.size))
            .filter(|(key, _)| key.starts_with(prefix))
            .collect::<Vec<_>>();
        objects.sort();
        Ok(objects)
    }

    /// Stores the small object `key` in one request.
    pub fn put_small(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let put = self.block_on(self.s3.put(&ObjectPath::from(key), PutPayload::from(bytes)));
        put.map(drop).map_err(|err| self.classify(err, key))
    }

    /// Reads the small object `key` whole.
    pub fn get_small(&self, key: &str) -> Result<Vec<u8>> {
        let got = self.block_on(async { self.s3.get(&ObjectPath::from(key)).await?.bytes().await });
        got.map(|bytes| bytes.to_vec()).map_err(|err| self.classify(err, key))
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Classifies the failure of a request for `key`: statuses that do not say why
    /// are explained by a listing of the bucket, whose error body names the S3 code.
    fn classify(&self, err: object_store::Error, key: &str) -> Error {
        let url = self.url(key);
        if error::is_connection(&err) {
            return Error::Unreachable { url, source: err };
        }
        let probe = match &err {
            object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => self.probe_bucket(),
            _ => None,
        };
        let text = probe.unwrap_or_else(|| err.to_string());
        if text.contains("NoSuchBucket") {
            return Error::BucketMissing { bucket: self.bucket.clone(), url };
        }
        if ["InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidSecretKey"]
            .iter()
            .any(|code| text.contains(code))
        {
            return Error::WrongCredentials { url };
        }
        match err {
            object_store::Error::NotFound { .. } => Error::ObjectMissing { url },
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                Error::PermissionDenied { url, source: err }
            }
            source => Error::Store { url, source },
        }
    }

    /// The error text of a listing of the bucket, or `None` if the listing works.
    fn probe_bucket(&self) -> Option<String> {
        let listed = self.block_on(self.s3.list_with_delimiter(None));
        listed.err().map(|err| format!("{err} {err:?}"))
    }
}
