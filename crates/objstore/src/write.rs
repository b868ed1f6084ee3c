//! [`ObjectWriter`]: a blocking `Write` that streams into a multipart upload,
//! resumable through a journal ([`crate::Journals`]).
//!
//! The writer drives object_store's `MultipartStore` itself (create, put
//! part, complete, abort), so it knows the upload id and every part's ETag.
//! Memory is bounded: one part being filled plus at most [`PARTS_IN_FLIGHT`]
//! parts uploading; a full part waits while that many are in flight. Each
//! request is retried with backoff by the store's retry configuration. The
//! object exists under its key only after [`ObjectWriter::finish`] completed
//! the upload.
//!
//! With a journal, each acknowledged part is recorded (number, ETag, length,
//! SHA-256) as soon as it is stored, by its upload task on a blocking thread
//! (hashing and fsync stay off the path of the stream); a failure or a drop leaves
//! the upload and the journal for the next run, whose writer continues the same
//! upload: a regenerated part whose hash equals the journal's is not uploaded
//! again. A regenerated part that differs, or an upload the server no longer
//! knows, discards the upload ([`Error::Discarded`]). Without a journal a
//! failure or a drop aborts the upload, as nothing could continue it.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{MultipartId, PutPayload};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::journal::{Journal, Journals, StoredPart};
use crate::{Error, Result, Store};

/// Size of each uploaded part.
pub const PART_SIZE: usize = 8 << 20;

/// Parts uploading at once, besides the one being filled.
pub const PARTS_IN_FLIGHT: usize = 2;

/// Bytes of the stream's beginning kept for its [`crate::StreamInfo`] (its header and
/// first command, SUBVOL or SNAPSHOT, whose path is at most PATH_MAX).
const HEAD_KEPT: usize = 64 << 10;

/// The journal, shared with the upload tasks that record parts in it.
type SharedJournal = Arc<Mutex<Journal>>;

fn lock(journal: &SharedJournal) -> MutexGuard<'_, Journal> {
    journal.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a part's upload task failed.
enum PartFailure {
    /// The server's answer.
    Store(object_store::Error),
    /// The journal could not record the stored part.
    Journal(Error),
}

/// What a part's upload task returns: its index and the stored part.
type PutOutcome = (usize, Result<PartId, PartFailure>);

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Failed,
    Done,
}

/// A streaming upload of one object.
pub struct ObjectWriter {
    store: Store,
    key: String,
    path: ObjectPath,
    upload_id: MultipartId,
    state: State,
    journal: Option<SharedJournal>,
    /// Bytes stored by an earlier run, if this upload continues one.
    continued: Option<u64>,
    /// The parts so far, by index; `None` while uploading.
    parts: Vec<Option<PartId>>,
    part: Vec<u8>,
    in_flight: JoinSet<PutOutcome>,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
    reused: u64,
}

/// What a finished upload wrote.
#[derive(Debug)]
pub struct Uploaded {
    /// Bytes written.
    pub size: u64,
    /// SHA-256 of those bytes, lowercase hex.
    pub sha256: String,
    /// The first bytes written (up to 64 KiB).
    pub head: Vec<u8>,
    /// Bytes that an earlier run had stored and that were not sent again.
    pub reused: u64,
}

impl Store {
    /// Starts the upload of object `key`, visible only after [`ObjectWriter::finish`].
    /// With `journals`, an unfinished upload of `key` recorded there is continued, and
    /// a new one is recorded; without, a failure or a drop aborts the upload.
    pub fn writer(&self, key: &str, journals: Option<&Journals>) -> Result<ObjectWriter> {
        let Some(journals) = journals else {
            let upload_id = self.create_upload(key)?;
            return Ok(ObjectWriter::new(self.clone(), key, upload_id, None));
        };
        let file = journals.file(&self.endpoint, &self.bucket, key);
        if let Some(journal) =
            Journal::load(file.clone(), &self.endpoint, &self.bucket, key, PART_SIZE as u64)
        {
            return Ok(ObjectWriter::new(self.clone(), key, journal.upload_id.clone(), Some(journal)));
        }
        let upload_id = self.create_upload(key)?;
        let journal = Journal {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id: upload_id.clone(),
            part_size: PART_SIZE as u64,
            parts: Vec::new(),
            file,
        };
        let mut writer = ObjectWriter::new(self.clone(), key, upload_id, None);
        if let Err(source) = journal.save() {
            writer.abort_upload();
            writer.state = State::Failed;
            return Err(Error::Journal { path: journal.file, source });
        }
        writer.journal = Some(Arc::new(Mutex::new(journal)));
        Ok(writer)
    }

    /// Aborts the unfinished upload of `key` recorded in `journals`, if any, and deletes
    /// its journal; whether there was one. The abort's own failure (an unreachable
    /// server) only leaves an invisible incomplete upload behind.
    pub fn discard_upload(&self, key: &str, journals: &Journals) -> Result<bool> {
        let file = journals.file(&self.endpoint, &self.bucket, key);
        let Some(journal) = Journal::load(file, &self.endpoint, &self.bucket, key, PART_SIZE as u64) else {
            return Ok(false);
        };
        let _ = self.block_on(self.s3.abort_multipart(&ObjectPath::from(key), &journal.upload_id));
        journal.remove().map_err(|source| Error::Journal { path: journal.file.clone(), source })?;
        Ok(true)
    }

    fn create_upload(&self, key: &str) -> Result<MultipartId> {
        let created = self.block_on(self.s3.create_multipart(&ObjectPath::from(key)));
        created.map_err(|err| self.classify(err, key))
    }
}

impl ObjectWriter {
    fn new(store: Store, key: &str, upload_id: MultipartId, journal: Option<Journal>) -> ObjectWriter {
        ObjectWriter {
            store,
            key: key.to_owned(),
            path: ObjectPath::from(key),
            upload_id,
            state: State::Open,
            continued: journal.as_ref().map(Journal::stored),
            journal: journal.map(|journal| Arc::new(Mutex::new(journal))),
            parts: Vec::new(),
            part: Vec::with_capacity(PART_SIZE),
            in_flight: JoinSet::new(),
            hasher: Sha256::new(),
            size: 0,
            head: Vec::new(),
            reused: 0,
        }
    }

    /// If this upload continues an unfinished one: the bytes its journal says are stored.
    pub fn continued(&self) -> Option<u64> {
        self.continued
    }

    /// Uploads the last part, waits for every part and completes the upload: only now
    /// does the object appear under its key. The journal is then deleted.
    pub fn finish(mut self) -> Result<Uploaded, io::Error> {
        self.complete().map_err(|err| io::Error::from(self.fail(err)))
    }

    fn complete(&mut self) -> Result<Uploaded> {
        if self.state != State::Open {
            return Err(aborted(&self.store, &self.key));
        }
        if !self.part.is_empty() {
            self.ship()?;
        }
        self.wait_for(0)?;
        let parts = self.parts.iter().flatten().cloned().collect();
        let completed =
            self.store.block_on(self.store.s3.complete_multipart(&self.path, &self.upload_id, parts));
        if let Err(err) = completed {
            return Err(self.store_error(err));
        }
        self.state = State::Done;
        if let Some(journal) = self.journal.take() {
            // A journal left behind names a completed upload: the next upload of this key
            // finds the server no longer knows it and starts afresh.
            let _ = lock(&journal).remove();
        }
        let sha256 = hex(&std::mem::take(&mut self.hasher).finalize());
        Ok(Uploaded { size: self.size, sha256, head: std::mem::take(&mut self.head), reused: self.reused })
    }

    /// Ships the part being filled: skipped if an earlier run stored the same bytes,
    /// else uploaded once fewer than [`PARTS_IN_FLIGHT`] parts are in flight.
    fn ship(&mut self) -> Result<()> {
        self.reap_finished()?;
        let index = self.parts.len();
        let stored = self.journal.as_ref().and_then(|journal| lock(journal).part(index + 1).cloned());
        if let Some(stored) = stored {
            if stored.len != self.part.len() as u64 || stored.sha256 != hex(&Sha256::digest(&self.part)) {
                let reason = format!(
                    "part {} of the stream differs from the one stored (another subvolume, parent or option?)",
                    index + 1
                );
                return Err(self.discard(reason));
            }
            self.parts.push(Some(PartId { content_id: stored.etag }));
            self.reused += stored.len;
            self.part.clear();
            return Ok(());
        }
        self.wait_for(PARTS_IN_FLIGHT - 1)?;
        let bytes = Bytes::from(std::mem::replace(&mut self.part, Vec::with_capacity(PART_SIZE)));
        let part = Part { index, bytes, journal: self.journal.clone() };
        let put = part.put(self.store.s3.clone(), self.path.clone(), self.upload_id.clone());
        self.in_flight.spawn_on(put, self.store.runtime.handle());
        self.parts.push(None);
        Ok(())
    }

    /// Records the parts whose upload finished, without waiting.
    fn reap_finished(&mut self) -> Result<()> {
        while let Some(joined) = self.in_flight.try_join_next() {
            self.reap(joined)?;
        }
        Ok(())
    }

    /// Waits until at most `most` parts are in flight, recording those that finish.
    fn wait_for(&mut self, most: usize) -> Result<()> {
        self.reap_finished()?;
        while self.in_flight.len() > most {
            let Some(joined) = self.store.block_on(self.in_flight.join_next()) else { break };
            self.reap(joined)?;
        }
        Ok(())
    }

    /// Takes a finished part, or returns why it failed.
    fn reap(&mut self, joined: Result<PutOutcome, tokio::task::JoinError>) -> Result<()> {
        let (index, put) = joined.map_err(|err| {
            let source = object_store::Error::Generic { store: "S3", source: Box::new(err) };
            Error::Store { url: self.store.url(&self.key), source }
        })?;
        self.parts[index] = Some(match put {
            Ok(part) => part,
            Err(PartFailure::Store(err)) => return Err(self.store_error(err)),
            Err(PartFailure::Journal(err)) => return Err(err),
        });
        Ok(())
    }

    /// `err` of a request for this upload, classified; on a continued upload, a
    /// server that does not know the upload (404, or 403 as s3s-fs answers) discards it.
    fn store_error(&mut self, err: object_store::Error) -> Error {
        let unknown = matches!(
            err,
            object_store::Error::NotFound { .. } | object_store::Error::PermissionDenied { .. }
        ) || err.to_string().contains("NoSuchUpload");
        if self.continued.is_some() && unknown {
            return self.discard(format!("the server no longer knows it ({err})"));
        }
        self.store.classify(err, &self.key)
    }

    /// Aborts the upload, deletes its journal and says why ([`Error::Discarded`]).
    fn discard(&mut self, reason: String) -> Error {
        self.state = State::Failed;
        self.abort_upload();
        if let Some(journal) = self.journal.take() {
            let journal = lock(&journal);
            if let Err(source) = journal.remove() {
                return Error::Journal { path: journal.file.clone(), source };
            }
        }
        Error::Discarded { url: self.store.url(&self.key), reason }
    }

    /// Ends the upload after `err`: with a journal, keeps it for the next run (after
    /// recording the parts still in flight that get stored); without, aborts it.
    fn fail(&mut self, err: Error) -> Error {
        if self.state != State::Open {
            return err;
        }
        self.state = State::Failed;
        if self.journal.is_none() {
            self.abort_upload();
            return err;
        }
        while let Some(joined) = self.store.block_on(self.in_flight.join_next()) {
            // A part that failed too is simply not recorded.
            let _ = self.reap(joined);
        }
        let stored = self.journal.as_ref().map_or(0, |journal| lock(journal).stored());
        let (url, endpoint) = (self.store.url(&self.key), self.store.endpoint.clone());
        Error::Interrupted { url, endpoint, stored, source: Box::new(err) }
    }

    /// Aborts the multipart upload (its stored parts are deleted); the abort's own
    /// failure leaves an incomplete upload, still invisible.
    fn abort_upload(&mut self) {
        self.in_flight.abort_all();
        let _ = self.store.block_on(self.store.s3.abort_multipart(&self.path, &self.upload_id));
    }
}

/// A part to upload.
struct Part {
    index: usize,
    bytes: Bytes,
    journal: Option<SharedJournal>,
}

impl Part {
    /// Uploads the part and, once stored, records it in the journal (on a blocking thread).
    async fn put(self, s3: Arc<AmazonS3>, path: ObjectPath, id: MultipartId) -> PutOutcome {
        let Part { index, bytes, journal } = self;
        let put = s3.put_part(&path, &id, index, PutPayload::from(bytes.clone())).await;
        let stored = match (put, journal) {
            (Err(err), _) => Err(PartFailure::Store(err)),
            (Ok(part), None) => Ok(part),
            (Ok(part), Some(journal)) => {
                let (etag, path) = (part.content_id.clone(), lock(&journal).file.clone());
                let record = move || record(&journal, StoredPart::of(index + 1, etag, &bytes));
                let recorded = tokio::task::spawn_blocking(record)
                    .await
                    .unwrap_or_else(|err| Err(Error::Journal { path, source: io::Error::other(err) }));
                recorded.map(|()| part).map_err(PartFailure::Journal)
            }
        };
        (index, stored)
    }
}

/// Records `part` in `journal`.
fn record(journal: &SharedJournal, part: StoredPart) -> Result<()> {
    let mut journal = lock(journal);
    journal.record(part).map_err(|source| Error::Journal { path: journal.file.clone(), source })
}

fn aborted(store: &Store, key: &str) -> Error {
    let message = "the upload was stopped after an earlier error";
    Error::Store {
        url: store.url(key),
        source: object_store::Error::Generic { store: "S3", source: message.into() },
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.state != State::Open {
            return Err(aborted(&self.store, &self.key).into());
        }
        let taken = &buf[..buf.len().min(PART_SIZE - self.part.len())];
        self.part.extend_from_slice(taken);
        self.hasher.update(taken);
        self.size += taken.len() as u64;
        let keep = taken.len().min(HEAD_KEPT.saturating_sub(self.head.len()));
        self.head.extend_from_slice(&taken[..keep]);
        if self.part.len() == PART_SIZE {
            self.ship().map_err(|err| io::Error::from(self.fail(err)))?;
        }
        Ok(taken.len())
    }

    /// Parts upload as they fill; the last one only at [`ObjectWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWriter {
    /// A writer dropped unfinished is stopped as by a failure (see `ObjectWriter::fail`).
    fn drop(&mut self) {
        let stopped = aborted(&self.store, &self.key);
        self.fail(stopped);
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
