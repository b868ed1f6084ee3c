//! [`ObjectReader`]: a blocking `Read` (and `BufRead`) over ranged GETs of one object.
//!
//! The object is read in [`CHUNK`]-sized ranges; while the caller consumes
//! one chunk the next [`AHEAD`] download on the runtime (read-ahead), so at
//! most `AHEAD + 1` chunks are in memory. A body cut short (a dropped
//! connection, a server restart) is continued with a new ranged GET from the
//! byte it stopped at, [`RESUMES`] times in a row at most, with backoff.
//!
//! When the object has metadata ([`StreamInfo`]), its size is checked when the
//! reader opens and the SHA-256 of the chunks as they arrive; the last chunk
//! is handed out only if the whole object's SHA-256 is the recorded one, so a
//! consumer never sees the end of an object that was changed or corrupted
//! (a receive never finishes its subvolume). Without metadata nothing is checked.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::write::hex;
use crate::{Error, Result, Store, StreamInfo};

/// Bytes asked for by each ranged GET.
pub const CHUNK: u64 = 8 << 20;

/// Chunks downloading at once, besides the one being consumed.
pub const AHEAD: usize = 2;

/// Attempts without progress before a chunk's download fails.
pub const RESUMES: u32 = 5;

type Fetch = JoinHandle<Result<Bytes, object_store::Error>>;

/// The check of a whole object against its metadata.
struct Check {
    hasher: Sha256,
    /// The recorded SHA-256, lowercase hex.
    expected: String,
}

/// A streaming download of one object.
pub struct ObjectReader {
    store: Store,
    key: String,
    size: u64,
    /// Start of the next chunk to ask for.
    next: u64,
    current: Bytes,
    ahead: VecDeque<Fetch>,
    /// `None` without metadata, and once the last chunk passed.
    check: Option<Check>,
    /// A chunk failed: every later read fails too (never a premature end).
    failed: bool,
}

impl ObjectReader {
    pub(crate) fn open(store: Store, key: &str) -> Result<ObjectReader> {
        let path = ObjectPath::from(key);
        let head = store.block_on(store.s3.head(&path)).map_err(|err| store.classify(err, key))?;
        let check = store.stream_info(key)?.map(|info| Check::of(&store, &info, head.size)).transpose()?;
        let mut reader = ObjectReader {
            store,
            key: key.to_owned(),
            size: head.size,
            next: 0,
            current: Bytes::new(),
            ahead: VecDeque::with_capacity(AHEAD),
            check,
            failed: false,
        };
        reader.fill_ahead();
        Ok(reader)
    }

    /// The object's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the object's SHA-256 is checked against its metadata.
    pub fn is_checked(&self) -> bool {
        self.check.is_some()
    }

    /// Starts downloading chunks until [`AHEAD`] are under way or none is left.
    fn fill_ahead(&mut self) {
        while self.ahead.len() < AHEAD && self.next < self.size {
            let range = self.next..self.size.min(self.next + CHUNK);
            self.next = range.end;
            let (s3, path) = (Arc::clone(&self.store.s3), ObjectPath::from(self.key.as_str()));
            self.ahead.push_back(self.store.runtime.spawn(fetch(s3, path, range)));
        }
    }

    /// The next chunk, checked; `None` at the end.
    fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        let Some(fetch) = self.ahead.pop_front() else {
            self.verify(&[])?;
            return Ok(None);
        };
        self.fill_ahead();
        let joined = self.store.block_on(fetch).map_err(|err| Error::Runtime(io::Error::other(err)))?;
        let chunk = joined.map_err(|err| self.store.classify(err, &self.key))?;
        self.verify(&chunk)?;
        Ok(Some(chunk))
    }

    /// Adds `chunk` to the checksum; after the last chunk, compares it.
    fn verify(&mut self, chunk: &[u8]) -> Result<()> {
        let Some(check) = &mut self.check else { return Ok(()) };
        check.hasher.update(chunk);
        if !self.ahead.is_empty() {
            return Ok(());
        }
        let Check { hasher, expected } = self.check.take().expect("checked above");
        let actual = hex(&hasher.finalize());
        if actual == expected {
            return Ok(());
        }
        Err(Error::ChecksumMismatch { url: self.store.url(&self.key), expected, actual })
    }
}

impl Check {
    /// The check of an object of `size` bytes against `info`; an error if the sizes differ.
    fn of(store: &Store, info: &StreamInfo, size: u64) -> Result<Check> {
        if info.size != size {
            return Err(Error::SizeMismatch { url: store.url(&info.key), expected: info.size, actual: size });
        }
        Ok(Check { hasher: Sha256::new(), expected: info.sha256.to_ascii_lowercase() })
    }
}

impl BufRead for ObjectReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.current.is_empty() {
            if self.failed {
                return Err(io::Error::other(format!(
                    "the download of {} failed",
                    self.store.url(&self.key)
                )));
            }
            match self.next_chunk() {
                Ok(chunk) => self.current = chunk.unwrap_or_default(),
                Err(err) => {
                    self.failed = true;
                    return Err(err.into());
                }
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, amount: usize) {
        self.current.advance(amount);
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
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
