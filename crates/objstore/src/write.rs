//! [`ObjectWriter`]: a blocking `Write` that streams into a multipart upload.
//!
//! Memory is bounded: one part being filled plus at most [`PARTS_IN_FLIGHT`]
//! parts uploading; a write waits while that many are in flight. Parts are
//! retried with backoff by the store's retry configuration. The object exists
//! under its key only after [`ObjectWriter::finish`] completed the upload; a
//! failed write, a failed finish or a drop without finish aborts the upload,
//! so a half-written stream is never visible.

use std::io::{self, Write};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::{Result, Store};

/// Size of each uploaded part.
pub const PART_SIZE: usize = 8 << 20;

/// Parts uploading at once, besides the one being filled.
pub const PARTS_IN_FLIGHT: usize = 2;

/// Bytes of the stream's beginning kept for its [`crate::StreamInfo`] (its header and
/// first command, SUBVOL or SNAPSHOT, whose path is at most PATH_MAX).
const HEAD_KEPT: usize = 64 << 10;

/// A streaming upload of one object.
pub struct ObjectWriter {
    store: Store,
    key: String,
    upload: Option<WriteMultipart>,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
}

/// What a finished upload wrote.
pub struct Uploaded {
    /// Bytes written.
    pub size: u64,
    /// SHA-256 of those bytes, lowercase hex.
    pub sha256: String,
    /// The first bytes written (up to 64 KiB).
    pub head: Vec<u8>,
}

impl ObjectWriter {
    pub(crate) fn create(store: Store, key: &str) -> Result<ObjectWriter> {
        let started = store.block_on(store.s3.put_multipart(&ObjectPath::from(key)));
        let upload = started.map_err(|err| store.classify(err, key))?;
        Ok(ObjectWriter {
            key: key.to_owned(),
            upload: Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)),
            store,
            hasher: Sha256::new(),
            size: 0,
            head: Vec::new(),
        })
    }

    /// Uploads what is buffered, waits for every part and completes the upload: only
    /// now does the object appear under its key.
    pub fn finish(mut self) -> Result<Uploaded, io::Error> {
        let upload = self.upload.take().ok_or_else(aborted)?;
        let Self { store, key, hasher, size, head, .. } = &mut self;
        let finished = store.block_on(upload.finish());
        finished.map_err(|err| io::Error::from(store.classify(err, key)))?;
        let sha256 = hex(&std::mem::take(hasher).finalize());
        Ok(Uploaded { size: *size, sha256, head: std::mem::take(head) })
    }

    /// Aborts the upload (its stored parts are deleted) after `err`, and returns `err`.
    fn fail(&mut self, err: object_store::Error) -> io::Error {
        if let Some(upload) = self.upload.take() {
            // The abort's own failure leaves an incomplete upload, still invisible.
            let _ = self.store.block_on(upload.abort());
        }
        io::Error::from(self.store.classify(err, &self.key))
    }
}

fn aborted() -> io::Error {
    io::Error::other("the upload was aborted after an earlier error")
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let upload = self.upload.as_mut().ok_or_else(aborted)?;
        let written = self.store.block_on(async {
            upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            // In the runtime: a full part starts uploading at once.
            upload.write(buf);
            Ok(())
        });
        if let Err(err) = written {
            return Err(self.fail(err));
        }
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        let keep = buf.len().min(HEAD_KEPT.saturating_sub(self.head.len()));
        self.head.extend_from_slice(&buf[..keep]);
        Ok(buf.len())
    }

    /// Parts upload as they fill; the last one only at [`ObjectWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            let _ = self.store.block_on(upload.abort());
        }
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
