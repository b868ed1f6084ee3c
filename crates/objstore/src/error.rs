//! Errors of object storage, classified into the faults a user can fix.
//!
//! object_store reports HTTP statuses (a HEAD has no body to tell a missing
//! bucket from a missing key, or a wrong key from a missing grant); the
//! store asks the bucket itself (a listing, whose error body names the S3
//! code) before it classifies such an error ([`crate::Store`]).

use std::io;

/// What can go wrong talking to object storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `AWS_ACCESS_KEY_ID` or `AWS_SECRET_ACCESS_KEY` is not set.
    #[error("no credentials for object storage: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")]
    NoCredentials,
    /// Not an `s3://BUCKET/KEY` URL.
    #[error("not an object storage URL (s3://BUCKET/KEY): {0}")]
    BadUrl(String),
    /// The server refused the access key or the signature.
    #[error(
        "the object storage server rejected the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) for {url}"
    )]
    WrongCredentials {
        /// The URL asked for.
        url: String,
    },
    /// The bucket does not exist.
    #[error("bucket '{bucket}' does not exist (for {url})")]
    BucketMissing {
        /// The bucket.
        bucket: String,
        /// The URL asked for.
        url: String,
    },
    /// The object does not exist.
    #[error("object {url} does not exist")]
    ObjectMissing {
        /// The URL asked for.
        url: String,
    },
    /// The credentials are valid but lack a permission.
    #[error("permission denied for {url}: {source}")]
    PermissionDenied {
        /// The URL asked for.
        url: String,
        /// The store's report.
        source: object_store::Error,
    },
    /// No connection to the server.
    #[error("cannot reach the object storage server (AWS_ENDPOINT_URL) for {url}: {source}")]
    Unreachable {
        /// The URL asked for.
        url: String,
        /// The store's report.
        source: object_store::Error,
    },
    /// Any other failure of the store.
    #[error("object storage failed for {url}: {source}")]
    Store {
        /// The URL asked for.
        url: String,
        /// The store's report.
        source: object_store::Error,
    },
    /// The object's metadata sidecar is not rawsend's JSON.
    #[error("bad stream metadata in {url}: {source}")]
    Metadata {
        /// The sidecar's URL.
        url: String,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// The object's SHA-256 is not the one its metadata recorded at upload.
    #[error(
        "checksum mismatch: {url} has SHA-256 {actual}, its metadata ({url}{suffix}) says {expected}: the object was changed or corrupted since it was uploaded",
        suffix = crate::SIDECAR_SUFFIX
    )]
    ChecksumMismatch {
        /// The stream object's URL.
        url: String,
        /// The SHA-256 in the metadata, lowercase hex.
        expected: String,
        /// The SHA-256 of the bytes downloaded, lowercase hex.
        actual: String,
    },
    /// The object's size is not the one its metadata recorded at upload.
    #[error(
        "size mismatch: {url} is {actual} bytes, its metadata ({url}{suffix}) says {expected}: the object was changed since it was uploaded",
        suffix = crate::SIDECAR_SUFFIX
    )]
    SizeMismatch {
        /// The stream object's URL.
        url: String,
        /// The size in the metadata.
        expected: u64,
        /// The object's size.
        actual: u64,
    },
    /// No chain of streams restores the snapshot.
    #[error("cannot restore '{name}': {reason}")]
    Chain {
        /// The snapshot's name.
        name: String,
        /// What is missing.
        reason: String,
    },
    /// The async runtime could not start.
    #[error("cannot start the object storage client: {0}")]
    Runtime(io::Error),
}

/// Whether `err` comes from a connection that could not be made or was lost.
pub(crate) fn is_connection(err: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            use io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | TimedOut
            ) {
                return true;
            }
        }
        source = cause.source();
    }
    let text = err.to_string();
    text.contains("error sending request") || text.contains("Connection refused")
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match &err {
            Error::ObjectMissing { .. } | Error::BucketMissing { .. } => io::ErrorKind::NotFound,
            Error::PermissionDenied { .. } | Error::WrongCredentials { .. } | Error::NoCredentials => {
                io::ErrorKind::PermissionDenied
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}
