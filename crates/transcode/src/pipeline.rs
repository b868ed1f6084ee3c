//! The threads: the planner reads the input, a pool of workers compresses,
//! and the output is taken in stream order.
//!
//! The planner turns the input into a sequence of units: bytes ready now
//! (batched up to [`BATCH`]) or a job's result to come. Jobs go through a
//! bounded channel to the workers, which take the next one as soon as they
//! are free; units wait in stream order until they are ready. So compression
//! runs on all workers while the output keeps the input's order, and at most
//! `UNITS_PER_WORKER × workers` units, a job per worker and one batch being
//! filled are held: memory is bounded by the worker count, whatever the
//! stream's size. Two ways to drive it:
//! - [`transcode`]: the calling thread plans and writes the output (a queue);
//!   input and output may be anything, borrowed and not `Send` (the kernel's
//!   pipe in `send --compress`).
//! - [`TranscodeReader`]: the planner runs on a thread of its own and units go
//!   through a bounded channel to whoever reads the output (the receive
//!   engine in `receive --compress`).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use rawsend_stream::{Item, Location, ReadProgress, ReaderOptions, StreamReader};

use crate::error::{CommandError, Error};
use crate::options::Options;
use crate::plan::{Planner, Sink};
use crate::work::{Job, Worker};

/// Ready bytes are handed on once a batch holds this many.
const BATCH: usize = 256 * 1024;
/// Units in flight per worker between the planner and the consumer.
const UNITS_PER_WORKER: usize = 16;

type JobResult = Result<Vec<u8>, Error>;

/// One piece of output, in stream order.
enum Unit {
    Ready(Vec<u8>),
    Pending(Receiver<JobResult>),
    Failed(Error),
    End(Summary),
}

/// What a transcode left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// FILEATTR commands (inode flags) dropped because the output is v1, which
    /// cannot carry them (a v1 send of the same snapshots has none either).
    pub dropped_fileattrs: u64,
}

/// The transcoded stream of an input, read in order; see the module docs.
///
/// Dropping it before the end stops the planner and the workers at their next
/// hand-over (the planner may be waiting for input until then).
pub struct TranscodeReader {
    units: Receiver<Unit>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
    summary: Option<Summary>,
}

impl TranscodeReader {
    /// Starts transcoding `input` (read with `reader` options) on background threads.
    pub fn new<R: Read + Send + 'static>(
        input: R,
        opts: Options,
        reader: ReaderOptions,
    ) -> Result<TranscodeReader, Error> {
        opts.check()?;
        let workers = opts.workers.max(1);
        let (unit_tx, units) = sync_channel(UNITS_PER_WORKER * workers);
        let (job_tx, job_rx) = sync_channel::<(Job, SyncSender<JobResult>)>(workers);
        let job_rx = Arc::new(Mutex::new(job_rx));
        for n in 0..workers {
            let jobs = Arc::clone(&job_rx);
            spawn(format!("transcode-{n}"), move || work(&jobs))?;
        }
        spawn("transcode-plan".to_owned(), move || plan(input, opts, reader, unit_tx, job_tx))?;
        Ok(TranscodeReader { units, current: Vec::new(), pos: 0, done: false, summary: None })
    }

    /// The next piece of output; `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, Error> {
        if self.done {
            return Ok(None);
        }
        let unit = self.units.recv().unwrap_or_else(|_| Unit::Failed(stopped()));
        let result = match unit {
            Unit::Ready(bytes) => Ok(Some(bytes)),
            Unit::Pending(result) => result.recv().unwrap_or_else(|_| Err(stopped())).map(Some),
            Unit::Failed(err) => Err(err),
            Unit::End(summary) => {
                self.summary = Some(summary);
                Ok(None)
            }
        };
        self.done = !matches!(result, Ok(Some(_)));
        result
    }
}

impl TranscodeReader {
    /// What was left out, once the whole output has been read.
    pub fn summary(&self) -> Option<Summary> {
        self.summary
    }
}

fn stopped() -> Error {
    Error::Thread("a transcoding thread stopped without a result".to_owned())
}

impl Read for TranscodeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.next_chunk().map_err(io::Error::other)? {
                Some(bytes) => (self.current, self.pos) = (bytes, 0),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Transcodes `input` into `output` (see the crate docs) and says what was left out.
///
/// The calling thread reads, plans and writes, keeping at most
/// `UNITS_PER_WORKER × workers` units in flight; the workers are scoped threads,
/// so neither `input` nor `output` has to be `Send` or `'static`.
pub fn transcode(input: impl Read, output: impl Write, opts: &Options) -> Result<Summary, Error> {
    transcode_from(StreamReader::new(input), output, opts)
}

/// Like [`transcode`], publishing how far it read into `progress` (for a progress display).
pub fn transcode_reporting(
    input: impl Read,
    output: impl Write,
    opts: &Options,
    progress: Arc<ReadProgress>,
) -> Result<Summary, Error> {
    transcode_from(StreamReader::new(input).with_progress(progress), output, opts)
}

/// [`transcode`] of what `reader` reads.
fn transcode_from<R: Read>(
    reader: StreamReader<R>,
    output: impl Write,
    opts: &Options,
) -> Result<Summary, Error> {
    opts.check()?;
    let workers = opts.workers.max(1);
    let (job_tx, job_rx) = sync_channel::<(Job, SyncSender<JobResult>)>(workers);
    let job_rx = Mutex::new(job_rx);
    thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| work(&job_rx));
        }
        let mut sink = QueueSink {
            batch: Vec::new(),
            queue: VecDeque::new(),
            jobs: job_tx,
            output,
            limit: UNITS_PER_WORKER * workers,
        };
        let mut planner = Planner::new(*opts);
        read_all(reader, &mut planner, &mut sink)?;
        sink.hand_on();
        sink.drain(true)?;
        sink.output.flush().map_err(Error::Write)?;
        Ok(Summary { dropped_fileattrs: planner.dropped_fileattrs })
        // Dropping the sink closes the job channel: the workers end and the scope joins them.
    })
}

fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> Result<(), Error> {
    thread::Builder::new().name(name).spawn(body).map(drop).map_err(|err| Error::Thread(err.to_string()))
}

/// A worker: runs jobs until the planner is gone.
fn work(jobs: &Mutex<Receiver<(Job, SyncSender<JobResult>)>>) {
    let mut worker = Worker::default();
    loop {
        let next = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
        let Ok((job, done)) = next else { return };
        let mut out = Vec::new();
        let result = worker.run(&job, &mut out).map(|()| out);
        // The consumer may be gone; then nobody needs the result.
        let _ = done.send(result);
    }
}

/// The planner thread: reads the input and sends its units; the last is `End` or `Failed`.
fn plan<R: Read>(
    input: R,
    opts: Options,
    reader: ReaderOptions,
    units: SyncSender<Unit>,
    jobs: SyncSender<(Job, SyncSender<JobResult>)>,
) {
    let mut sink = ChannelSink { batch: Vec::new(), units, jobs };
    let mut planner = Planner::new(opts);
    let result = read_all(StreamReader::with_options(input, reader), &mut planner, &mut sink);
    let last = match result.and_then(|()| sink.hand_on()) {
        Ok(()) => Unit::End(Summary { dropped_fileattrs: planner.dropped_fileattrs }),
        Err(err) => {
            let _ = sink.hand_on();
            Unit::Failed(err)
        }
    };
    let _ = sink.units.send(last);
}

fn read_all<R: Read>(
    mut reader: StreamReader<R>,
    planner: &mut Planner,
    sink: &mut impl Sink,
) -> Result<(), Error> {
    while let Some(item) = reader.next()? {
        match item {
            Item::Header { version, .. } => planner.header(version, sink)?,
            Item::Command(record) => planner.command(&record, sink)?,
            Item::Continue { index, offset, .. } => {
                let location = Location { index: Some(index), offset, ..Location::default() };
                return Err(Error::at(&location, CommandError::Continuation));
            }
        }
        sink.step()?;
    }
    planner.finish(sink)
}

/// The planner's [`Sink`]: batches ready bytes, sends jobs to the workers and
/// their places to the consumer.
struct ChannelSink {
    batch: Vec<u8>,
    units: SyncSender<Unit>,
    jobs: SyncSender<(Job, SyncSender<JobResult>)>,
}

impl ChannelSink {
    /// Hands the batch of ready bytes on to the consumer.
    fn hand_on(&mut self) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.units.send(Unit::Ready(batch)).map_err(|_| Error::OutputClosed)
    }
}

impl Sink for ChannelSink {
    fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.batch
    }

    fn step(&mut self) -> Result<(), Error> {
        if self.batch.len() >= BATCH {
            self.hand_on()?;
        }
        Ok(())
    }

    fn job(&mut self, job: Job) -> Result<(), Error> {
        self.hand_on()?;
        let (done, result) = sync_channel(1);
        self.jobs.send((job, done)).map_err(|_| Error::Thread("the workers stopped".to_owned()))?;
        self.units.send(Unit::Pending(result)).map_err(|_| Error::OutputClosed)
    }
}

/// [`transcode`]'s [`Sink`]: units wait in a queue and are written, in order, as
/// soon as they are ready; the planner waits for the oldest once `limit` are queued.
struct QueueSink<W> {
    batch: Vec<u8>,
    queue: VecDeque<Unit>,
    jobs: SyncSender<(Job, SyncSender<JobResult>)>,
    output: W,
    limit: usize,
}

impl<W: Write> QueueSink<W> {
    fn hand_on(&mut self) {
        if !self.batch.is_empty() {
            self.queue.push_back(Unit::Ready(std::mem::take(&mut self.batch)));
        }
    }

    /// Writes the queued units that are ready; with `all`, waits for every one,
    /// otherwise only while more than `limit` are queued.
    fn drain(&mut self, all: bool) -> Result<(), Error> {
        while let Some(unit) = self.queue.pop_front() {
            let bytes = match unit {
                Unit::Ready(bytes) => bytes,
                Unit::Pending(result) if all || self.queue.len() >= self.limit => {
                    result.recv().unwrap_or_else(|_| Err(stopped()))?
                }
                Unit::Pending(result) => match result.try_recv() {
                    Ok(done) => done?,
                    Err(TryRecvError::Empty) => {
                        self.queue.push_front(Unit::Pending(result));
                        return Ok(());
                    }
                    Err(TryRecvError::Disconnected) => return Err(stopped()),
                },
                Unit::Failed(err) => return Err(err),
                Unit::End(_) => continue,
            };
            self.output.write_all(&bytes).map_err(Error::Write)?;
        }
        Ok(())
    }
}

impl<W: Write> Sink for QueueSink<W> {
    fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.batch
    }

    fn step(&mut self) -> Result<(), Error> {
        if self.batch.len() >= BATCH {
            self.hand_on();
        }
        self.drain(false)
    }

    fn job(&mut self, job: Job) -> Result<(), Error> {
        self.hand_on();
        let (done, result) = sync_channel(1);
        self.jobs.send((job, done)).map_err(|_| stopped())?;
        self.queue.push_back(Unit::Pending(result));
        self.drain(false)
    }
}
