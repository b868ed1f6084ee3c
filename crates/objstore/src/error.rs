//! Errors of object storage, classified into the faults a user can fix.
//!
//! object_store reports HTTP statuses (a HEAD has no body to tell a missing
//! bucket from a missing key, or a wrong key from a missing grant); the
//! store asks the bucket itself (a listing, whose error body names the S3
//! code) before it classifies such an error ([`crate::Store`]).

use std::io;
use std::path::PathBuf;

/// What can go wrong talking to object storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither the environment nor the AWS files have both keys.
    #[error(
        "no credentials for object storage: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
         or aws_access_key_id and aws_secret_access_key in ~/.aws/credentials"
    )]
    NoCredentials,
    /// An AWS settings file exists but cannot be read.
    #[error("cannot read the AWS settings file {}: {source}", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        source: io::Error,
    },
    /// An AWS settings file is not an INI file.
    #[error("malformed AWS settings file {}, line {line}: {reason}", path.display())]
    ConfigSyntax {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it (never its text, which may hold secrets).
        reason: &'static str,
    },
    /// `AWS_PROFILE` names a profile that neither AWS file has.
    #[error("AWS profile '{profile}' (AWS_PROFILE) is in neither {files}")]
    ProfileMissing {
        /// The profile.
        profile: String,
        /// The files looked in: `CREDENTIALS nor CONFIG`.
        files: String,
    },
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
    /// A continued upload could not go on and was discarded (aborted, its journal
    /// deleted): the stream differs from the parts stored, or the server no longer
    /// knows the upload. Sending again starts a fresh upload.
    #[error("the unfinished upload to {url} was discarded: {reason}")]
    Discarded {
        /// The URL of the upload.
        url: String,
        /// Why.
        reason: String,
    },
    /// An upload with a journal stopped; its stored parts stay for the next run.
    #[error(
        "the upload to {url} (server {endpoint}) stopped with {stored} bytes stored; running the same command again continues it"
    )]
    Interrupted {
        /// The URL of the upload.
        url: String,
        /// The server (`AWS_ENDPOINT_URL`, or AWS S3 in the region).
        endpoint: String,
        /// Bytes of the stream the server holds in acknowledged parts.
        stored: u64,
        /// What stopped it.
        #[source]
        source: Box<Error>,
    },
    /// The journal of an upload cannot be written.
    #[error("cannot write the upload journal {path}: {source}")]
    Journal {
        /// The journal file.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
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
