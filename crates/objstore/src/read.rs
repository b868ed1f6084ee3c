//! [`ObjectReader`]: a blocking `Read` over ranged GETs of one object.
//!
//! The object is read in [`CHUNK`]-sized ranges; while the caller consumes
//! one chunk the next downloads on the runtime (read-ahead), so at most two
//! chunks are in memory. A body cut short (a dropped connection, a server
//! restart) is continued with a new ranged GET from the byte it stopped at,
//! [`RESUMES`] times in a row at most, with backoff.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore};
use tokio::task::JoinHandle;

use crate::{Result, Store};

/// Bytes asked for by each ranged GET.
pub const CHUNK: u64 = 8 << 20;

/// Attempts without progress before a chunk's download fails.
pub const RESUMES: u32 = 5;

type Fetch = JoinHandle<Result<Bytes, object_store::Error>>;

/// A streaming download of one object.
pub struct ObjectReader {
    store: Store,
    key: String,
    size: u64,
    /// Start of the next chunk to ask for.
    next: u64,
    current: Bytes,
    ahead: Option<Fetch>,
}

impl ObjectReader {
    pub(crate) fn open(store: Store, key: &str) -> Result<ObjectReader> {
        let path = ObjectPath::from(key);
        let head = store.block_on(store.s3.head(&path)).map_err(|err| store.classify(err, key))?;
        let mut reader = ObjectReader {
            store,
            key: key.to_owned(),
            size: head.size,
            next: 0,
            current: Bytes::new(),
            ahead: None,
        };
        reader.ahead = reader.fetch_next();
        Ok(reader)
    }

    /// The object's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Starts downloading the next chunk, if any is left.
    fn fetch_next(&mut self) -> Option<Fetch> {
        if self.next >= self.size {
            return None;
        }
        let range = self.next..self.size.min(self.next + CHUNK);
        self.next = range.end;
        let (s3, path) = (Arc::clone(&self.store.s3), ObjectPath::from(self.key.as_str()));
        Some(self.store.runtime.spawn(fetch(s3, path, range)))
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.current.is_empty() {
            let Some(fetch) = self.ahead.take() else { return Ok(0) };
            let fetched = self.store.block_on(fetch).map_err(io::Error::other)?;
            self.current = fetched.map_err(|err| io::Error::from(self.store.classify(err, &self.key)))?;
            self.ahead = self.fetch_next();
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Downloads `range` of `path`, continuing at the byte where a body stopped.
async fn fetch(s3: Arc<AmazonS3>, path: ObjectPath, range: Range<u64>) -> Result<Bytes, object_store::Error> {
    let mut got = BytesMut::with_capacity((range.end - range.start) as usize);
    let mut failures = 0;
    loop {
        let from = range.start + got.len() as u64;
        if from >= range.end {
            return Ok(got.freeze());
        }
        let before = got.len();
        match fetch_into(&s3, &path, from..range.end, &mut got).await {
            Ok(()) if got.len() == before => return Err(shrunk(&path, range.end)),
            Ok(()) => failures = 0,
            Err(err) if !transient(&err) => return Err(err),
            Err(err) => {
                failures = if got.len() == before { failures + 1 } else { 1 };
                if failures > RESUMES {
                    return Err(err);
                }
                tokio::time::sleep(Duration::from_millis(100 << failures)).await;
            }
        }
    }
}

/// Appends the body of a GET of `range` to `got` (never past the range's end).
async fn fetch_into(
    s3: &AmazonS3,
    path: &ObjectPath,
    range: Range<u64>,
    got: &mut BytesMut,
) -> Result<(), object_store::Error> {
    let len = range.end - range.start;
    let opts = GetOptions { range: Some(GetRange::Bounded(range)), ..GetOptions::default() };
    let mut body = s3.get_opts(path, opts).await?.into_stream();
    let limit = got.len() + len as usize;
    while let Some(bytes) = body.next().await {
        let bytes = bytes?;
        let take = bytes.len().min(limit - got.len());
        got.extend_from_slice(&bytes[..take]);
    }
    Ok(())
}

/// Whether retrying may help: not for what the server refused or lacks.
fn transient(err: &object_store::Error) -> bool {
    !matches!(
        err,
        object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::Precondition { .. }
    )
}

/// The object ended before `end`: it shrank while being read.
fn shrunk(path: &ObjectPath, end: u64) -> object_store::Error {
    let message = format!("object {path} ended before byte {end}: it changed while being read");
    object_store::Error::Generic { store: "S3", source: message.into() }
}
