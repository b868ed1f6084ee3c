//! Test-decoding of encoded extents on a worker thread.
//!
//! The kernel stores an encoded extent without looking inside it: a stream
//! with a valid CRC but corrupt compressed bytes would be stored, marked
//! received, and fail later reads with EIO. So every extent written as it is
//! gets decoded once, to check it, but on worker threads (one per core, at
//! most [`WORKERS_MAX`]) so
//! that the main thread's writes do not wait for it: writing an extent as it
//! is costs far less than decoding it, so one worker alone would hold the
//! writes back. The engine submits each extent after
//! writing it and collects the verdicts before it marks the subvolume
//! complete ([`Verifier::finish`]): a corrupt extent fails its subvolume, with
//! the location of the command that carried it.
//!
//! Extents go to the workers in batches ([`BATCH_BYTES`], [`BATCH_JOBS`]):
//! one queue operation and at most one wake-up per batch rather than per
//! extent, which on a stream of many small files were a hundred thousand
//! futex calls.
//!
//! Memory is bounded: at most [`IN_FLIGHT`] batches are queued, one more is
//! being filled and one per worker is being decoded, each under
//! [`BATCH_BYTES`] plus one buffer (an extent is at most 128 KiB; a recycled
//! buffer that grew for it, at most twice that); their buffers are recycled.
//! About 16 MiB in all, whatever the stream and the number of cores.
//!
//! Each extent comes with its *mark*, the stream position before its command,
//! and [`Verifier::unchecked_from`] tells the mark of the first extent whose
//! verdict is still out. Progress noted for resume carries it: a kill cuts off
//! the verdicts in flight, and a continuation must bring those extents again
//! to have them checked (see [`crate::resume`]).

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rawsend_codec::{Compression, Decoder};
use rawsend_stream::Location;

use crate::error::{Error, ErrorKind};
use crate::resume::Position;

/// Batches queued for the workers at most (8 MiB); submitting more waits for them.
/// Enough for the main thread not to wait on the workers between its own waits (for
/// the disk, at the end for the `syncfs`), in which the workers catch up: a shorter
/// queue left the verifiers' CPU on big compressed files in series with the writes
/// (`bench/README.md`).
const IN_FLIGHT: usize = 16;
/// A batch is sent once its buffers hold this many bytes...
const BATCH_BYTES: usize = 512 * 1024;
/// ...or this many extents.
const BATCH_JOBS: usize = 32;
/// Most worker threads: enough to keep up with the writes (libzstd decodes
/// 0.5–1.5 GB/s per core), and memory does not grow with the cores.
const WORKERS_MAX: usize = 4;

/// One extent to check.
struct Job {
    location: Location,
    compression: Compression,
    unencoded_len: usize,
    data: Vec<u8>,
}

/// A batch of extents and its sequence number.
type Batch = (u64, Vec<Job>);

/// What a worker sends back for a batch: its sequence number, the buffers for
/// reuse, and the errors of the corrupt extents.
struct Verdict {
    batch: u64,
    buffers: Vec<Vec<u8>>,
    errors: Vec<Error>,
}

/// Checks encoded extents in the background. See the module docs.
pub(crate) struct Verifier {
    jobs: Option<SyncSender<Batch>>,
    verdicts: Receiver<Verdict>,
    workers: Vec<JoinHandle<()>>,
    /// The batch being filled, its bytes, and the mark of its first extent.
    batch: Vec<Job>,
    batch_bytes: usize,
    batch_mark: Option<Position>,
    /// Sent batches whose verdict has not been collected, oldest first: sequence
    /// number and the mark of the first extent.
    pending: VecDeque<(u64, Position)>,
    /// The sequence number of the next batch sent.
    next_batch: u64,
    /// Buffers back from the workers.
    spare: Vec<Vec<u8>>,
}

impl Verifier {
    /// Starts the worker threads, one per core up to [`WORKERS_MAX`].
    pub(crate) fn start() -> std::io::Result<Verifier> {
        let (jobs, inbox) = mpsc::sync_channel::<Batch>(IN_FLIGHT);
        let (outbox, verdicts) = mpsc::channel();
        let inbox = Arc::new(Mutex::new(inbox));
        let count = std::thread::available_parallelism().map_or(1, usize::from).min(WORKERS_MAX);
        let mut workers = Vec::with_capacity(count);
        for _ in 0..count {
            let (inbox, outbox) = (Arc::clone(&inbox), outbox.clone());
            let worker = std::thread::Builder::new()
                .name("rawsend-verify".into())
                .spawn(move || check_all(&inbox, &outbox))?;
            workers.push(worker);
        }
        Ok(Verifier {
            jobs: Some(jobs),
            verdicts,
            workers,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_mark: None,
            pending: VecDeque::new(),
            next_batch: 0,
            spare: Vec::new(),
        })
    }

    /// Queues an extent for checking, `mark` being the stream position before its
    /// command; returns the errors of extents checked meanwhile.
    pub(crate) fn submit(
        &mut self,
        mark: Position,
        location: Location,
        compression: Compression,
        unencoded_len: usize,
        data: &[u8],
    ) -> Vec<Error> {
        let mut buffer = self.spare.pop().unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(data);
        // Counted by capacity: a recycled buffer keeps its size, so a stream of large
        // extents then small ones cannot make many buffers each hold a large one.
        self.batch_bytes += buffer.capacity();
        self.batch_mark.get_or_insert(mark);
        self.batch.push(Job { location, compression, unencoded_len, data: buffer });
        if self.batch_bytes < BATCH_BYTES && self.batch.len() < BATCH_JOBS {
            return Vec::new();
        }
        let mut errors = self.poll();
        errors.extend(self.send_batch());
        errors
    }

    /// Sends the batch being filled, if any, to the workers.
    fn send_batch(&mut self) -> Option<Error> {
        if self.batch.is_empty() {
            return None;
        }
        let batch = std::mem::take(&mut self.batch);
        let mark = self.batch_mark.take().expect("a batch with extents has a mark");
        self.batch_bytes = 0;
        let number = self.next_batch;
        self.next_batch += 1;
        match self.jobs.as_ref().map(|jobs| jobs.send((number, batch))) {
            Some(Ok(())) => {
                self.pending.push_back((number, mark));
                None
            }
            // The worker is gone (it panicked): nothing can be vouched for.
            _ => Some(worker_lost()),
        }
    }

    /// Whether extents are still waiting or being checked.
    pub(crate) fn busy(&self) -> bool {
        !self.pending.is_empty() || !self.batch.is_empty()
    }

    /// The mark of the first extent submitted whose verdict is not collected yet
    /// (every extent before it decoded); `None` when every verdict is in.
    pub(crate) fn unchecked_from(&self) -> Option<Position> {
        self.pending.front().map(|&(_, mark)| mark).or(self.batch_mark)
    }

    /// The errors of extents checked so far, without waiting.
    pub(crate) fn poll(&mut self) -> Vec<Error> {
        self.collect(false)
    }

    /// Waits for every submitted extent's verdict; returns the errors found.
    pub(crate) fn finish(&mut self) -> Vec<Error> {
        let lost = self.send_batch();
        let mut errors = self.collect(true);
        errors.extend(lost);
        errors
    }

    /// Collects verdicts: all pending ones if `wait`, else those already there.
    fn collect(&mut self, wait: bool) -> Vec<Error> {
        let mut errors = Vec::new();
        while !self.pending.is_empty() {
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
                self.pending.clear();
                errors.push(worker_lost());
                break;
            };
            self.pending.retain(|&(number, _)| number != verdict.batch);
            self.spare.extend(verdict.buffers);
            errors.extend(verdict.errors);
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

/// A worker: takes batches from the shared queue until it closes, decodes each
/// extent, reports back once per batch. A decoder that panics vouches for
/// nothing: its batch gets an error, and the worker stops (the others go on,
/// so the verdict must come from here, or [`Verifier::finish`] would wait for
/// it forever).
fn check_all(inbox: &Mutex<Receiver<Batch>>, outbox: &mpsc::Sender<Verdict>) {
    let mut decoder = Decoder::new();
    let mut scratch = Vec::new();
    let next = || inbox.lock().unwrap_or_else(PoisonError::into_inner).recv().ok();
    while let Some((number, jobs)) = next() {
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_batch(&mut decoder, &mut scratch, number, jobs)
        }));
        let (verdict, panicked) = match checked {
            Ok(verdict) => (verdict, false),
            Err(_) => (Verdict { batch: number, buffers: Vec::new(), errors: vec![worker_lost()] }, true),
        };
        if outbox.send(verdict).is_err() || panicked {
            return;
        }
    }
}

/// Decodes every extent of batch `number`; the verdict hands the buffers back.
fn check_batch(decoder: &mut Decoder, scratch: &mut Vec<u8>, number: u64, jobs: Vec<Job>) -> Verdict {
    let mut verdict = Verdict { batch: number, buffers: Vec::with_capacity(jobs.len()), errors: Vec::new() };
    for job in jobs {
        scratch.resize(job.unencoded_len, 0);
        if let Err(err) = decoder.decode(job.compression, &job.data, scratch) {
            verdict.errors.push(Error { location: job.location, kind: ErrorKind::Codec(err) });
        }
        verdict.buffers.push(job.data);
    }
    verdict
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

    fn mark(index: u64) -> Position {
        Position { commands: index, ..Position::start(0) }
    }

    #[test]
    fn good_extents_pass_and_corrupt_ones_are_located() {
        let plain = vec![7u8; 4096];
        let good = rawsend_codec::encode(Compression::Zstd, None, &plain).expect("encode").expect("smaller");
        let mut verifier = Verifier::start().expect("start");
        let mut errors = Vec::new();
        for index in 0..100 {
            let data = if index == 42 { &b"not zstd at all"[..] } else { &good[..] };
            errors.extend(verifier.submit(
                mark(index),
                location(index),
                Compression::Zstd,
                plain.len(),
                data,
            ));
        }
        errors.extend(verifier.finish());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].location.index, Some(42));
        assert!(matches!(errors[0].kind, ErrorKind::Codec(_)));
        assert!(verifier.finish().is_empty(), "verdicts are collected once");
    }

    #[test]
    fn a_corrupt_extent_in_a_batch_not_yet_full_is_found_by_finish() {
        let mut verifier = Verifier::start().expect("start");
        assert!(!verifier.busy());
        let errors = verifier.submit(mark(7), location(7), Compression::Zstd, 4096, b"not zstd at all");
        assert!(errors.is_empty() && verifier.busy(), "one extent waits for its batch to fill");
        let errors = verifier.finish();
        assert_eq!(errors.iter().map(|err| err.location.index).collect::<Vec<_>>(), [Some(7)]);
        assert!(!verifier.busy());
    }

    #[test]
    fn batches_close_on_their_buffers_capacity() {
        let mut verifier = Verifier::start().expect("start");
        let large = vec![0u8; BATCH_BYTES / 2];
        for index in 0..2 {
            verifier.submit(mark(index), location(index), Compression::Zstd, 1, &large);
        }
        assert!(verifier.batch.is_empty(), "two halves fill a batch");
        verifier.finish();
        // The recycled buffers keep their capacity: two tiny extents in them fill a batch too.
        for index in 0..2 {
            verifier.submit(mark(index), location(index), Compression::Zstd, 1, b"x");
        }
        assert!(verifier.batch.is_empty(), "counted by capacity, not by length");
    }

    #[test]
    fn unchecked_from_is_the_first_extent_without_a_verdict() {
        let plain = vec![7u8; 4096];
        let good = rawsend_codec::encode(Compression::Zstd, None, &plain).expect("encode").expect("smaller");
        let mut verifier = Verifier::start().expect("start");
        assert_eq!(verifier.unchecked_from(), None);
        let extents = BATCH_JOBS as u64 * 3 + 5;
        for index in 10..10 + extents {
            verifier.submit(mark(index), location(index), Compression::Zstd, plain.len(), &good);
            let first = verifier.unchecked_from().expect("the batch being filled is unchecked");
            assert!((10..=index).contains(&first.commands), "{first:?} before {index}");
        }
        while !verifier.pending.is_empty() {
            verifier.poll();
            std::thread::yield_now();
        }
        assert_eq!(
            verifier.unchecked_from(),
            Some(mark(10 + BATCH_JOBS as u64 * 3)),
            "the last batch is not sent"
        );
        assert!(verifier.finish().is_empty());
        assert_eq!(verifier.unchecked_from(), None);
    }
}
