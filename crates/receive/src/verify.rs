//! Test-decoding of encoded extents on a worker thread.
//!
//! The kernel stores an encoded extent without looking inside it: a stream
//! with a valid CRC but corrupt compressed bytes would be stored, marked
//! received, and fail later reads with EIO. So every extent written as it is
//! gets decoded once, to check it, but on worker threads (one per core) so
//! that the main thread's writes do not wait for it: writing an extent as it
//! is costs far less than decoding it, so one worker alone would hold the
//! writes back. The engine submits each extent after
//! writing it and collects the verdicts before it marks the subvolume
//! complete ([`Verifier::finish`]): a corrupt extent fails its subvolume, with
//! the location of the command that carried it.
//!
//! Memory is bounded: at most [`IN_FLIGHT`] extents (each at most 128 KiB)
//! are queued, and their buffers are recycled.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rawsend_codec::{Compression, Decoder};
use rawsend_stream::Location;

use crate::error::{Error, ErrorKind};

/// Extents queued for the workers at most (16 MiB); submitting more waits for them.
/// Enough for the main thread not to wait on the workers between its own waits (for
/// the disk, at the end for the `syncfs`), in which the workers catch up: 16 left the
/// verifiers' CPU on big compressed files in series with the writes (`bench/README.md`).
const IN_FLIGHT: usize = 128;

/// One extent to check.
struct Job {
    location: Location,
    compression: Compression,
    unencoded_len: usize,
    data: Vec<u8>,
}

/// What the worker sends back: the buffer for reuse, and an error if the extent is corrupt.
struct Verdict {
    buffer: Vec<u8>,
    error: Option<Error>,
}

/// Checks encoded extents in the background. See the module docs.
pub(crate) struct Verifier {
    jobs: Option<SyncSender<Job>>,
    verdicts: Receiver<Verdict>,
    workers: Vec<JoinHandle<()>>,
    /// Submitted extents whose verdict has not been collected.
    pending: usize,
    /// Buffers back from the worker.
    spare: Vec<Vec<u8>>,
}

impl Verifier {
    /// Starts the worker threads, one per core.
    pub(crate) fn start() -> std::io::Result<Verifier> {
        let (jobs, inbox) = mpsc::sync_channel::<Job>(IN_FLIGHT);
        let (outbox, verdicts) = mpsc::channel();
        let inbox = Arc::new(Mutex::new(inbox));
        let count = std::thread::available_parallelism().map_or(1, usize::from);
        let mut workers = Vec::with_capacity(count);
        for _ in 0..count {
            let (inbox, outbox) = (Arc::clone(&inbox), outbox.clone());
            let worker = std::thread::Builder::new()
                .name("rawsend-verify".into())
                .spawn(move || check_all(&inbox, &outbox))?;
            workers.push(worker);
        }
        Ok(Verifier { jobs: Some(jobs), verdicts, workers, pending: 0, spare: Vec::new() })
    }

    /// Queues an extent for checking; returns the errors of extents checked meanwhile.
    pub(crate) fn submit(
        &mut self,
        location: Location,
        compression: Compression,
        unencoded_len: usize,
        data: &[u8],
    ) -> Vec<Error> {
        let mut errors = self.poll();
        let mut buffer = self.spare.pop().unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(data);
        let job = Job { location, compression, unencoded_len, data: buffer };
        match self.jobs.as_ref().map(|jobs| jobs.send(job)) {
            Some(Ok(())) => self.pending += 1,
            // The worker is gone (it panicked): nothing can be vouched for.
            _ => errors.push(worker_lost()),
        }
        errors
    }

    /// Whether extents are still being checked.
    pub(crate) fn busy(&self) -> bool {
        self.pending > 0
    }

    /// The errors of extents checked so far, without waiting.
    pub(crate) fn poll(&mut self) -> Vec<Error> {
        self.collect(false)
    }

    /// Waits for every submitted extent's verdict; returns the errors found.
    pub(crate) fn finish(&mut self) -> Vec<Error> {
        self.collect(true)
    }

    /// Collects verdicts: all pending ones if `wait`, else those already there.
    fn collect(&mut self, wait: bool) -> Vec<Error> {
        let mut errors = Vec::new();
        while self.pending > 0 {
            let verdict = if wait {
                self.verdicts.recv().ok()
            } else {
                match self.verdicts.try_recv() {
                    Ok(verdict) => Some(verdict),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => None,
                }
            };
            let Some(verdict) = verdict else {
                self.pending = 0;
                errors.push(worker_lost());
                break;
            };
            self.pending -= 1;
            self.spare.push(verdict.buffer);
            errors.extend(verdict.error);
        }
        errors
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        // Closing the queue ends the workers' loops.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// A worker: takes jobs from the shared queue until it closes, decodes each, reports back.
fn check_all(inbox: &Mutex<Receiver<Job>>, outbox: &mpsc::Sender<Verdict>) {
    let mut decoder = Decoder::new();
    let mut scratch = Vec::new();
    let next = || inbox.lock().unwrap_or_else(PoisonError::into_inner).recv().ok();
    while let Some(job) = next() {
        scratch.resize(job.unencoded_len, 0);
        let error = decoder
            .decode(job.compression, &job.data, &mut scratch)
            .err()
            .map(|err| Error { location: job.location, kind: ErrorKind::Codec(err) });
        if outbox.send(Verdict { buffer: job.data, error }).is_err() {
            return;
        }
    }
}

fn worker_lost() -> Error {
    Error {
        location: Location::default(),
        kind: ErrorKind::io("verify encoded extents", std::io::Error::other("the verifier thread stopped")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(index: u64) -> Location {
        Location { index: Some(index), ..Location::default() }
    }

    #[test]
    fn good_extents_pass_and_corrupt_ones_are_located() {
        let plain = vec![7u8; 4096];
        let good = rawsend_codec::encode(Compression::Zstd, None, &plain).expect("encode").expect("smaller");
        let mut verifier = Verifier::start().expect("start");
        let mut errors = Vec::new();
        for index in 0..100 {
            let data = if index == 42 { &b"not zstd at all"[..] } else { &good[..] };
            errors.extend(verifier.submit(location(index), Compression::Zstd, plain.len(), data));
        }
        errors.extend(verifier.finish());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].location.index, Some(42));
        assert!(matches!(errors[0].kind, ErrorKind::Codec(_)));
        assert!(verifier.finish().is_empty(), "verdicts are collected once");
    }
}
