//! Reading ahead on a thread of its own, so that the input's `read`s (copies out of
//! the page cache or a pipe) overlap with applying the commands already read.
//!
//! A [`ReadAhead`] hands its input to a thread that reads it into blocks of
//! [`BLOCK`] bytes, at most [`BLOCKS`] of them in flight (filled and waiting, or
//! being filled, or the reader's buffer), so memory stays bounded whatever the
//! input. Each block holds what one `read` returned, passed on at once: data
//! that arrived is never held back waiting for more. Bytes come out in the
//! input's order and an input error after every byte read before it, so a
//! [`StreamReader`](crate::StreamReader) over it sees the same bytes, offsets
//! and errors as over the input itself. The reader takes each block as its
//! buffer rather than copying it ([`Source`]): each block keeps [`ROOM`] bytes
//! free before its data for the unread end of the previous one.
//!
//! [`ReadAhead::checking_crcs`] also checks each command's CRC on that thread
//! as the blocks pass, for the reader made over it to skip (see
//! [`crate::precheck`]; [`Source::take_crc_hints`] hands the hints over): the
//! decoding thread then does not read the bytes twice. `receive`, `dump` and
//! `stats` read this way.
//!
//! Dropping the `ReadAhead` stops the thread before its next read; the thread
//! is not joined, so a read that never returns (an idle pipe) cannot hang the
//! caller.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

use crate::precheck::{CrcHints, Precheck, precheck};
use crate::reader::ReaderOptions;
use crate::source::{ReadBuffer, Source};

/// Bytes asked of the input per read.
pub const BLOCK: usize = 1024 * 1024;
/// Most blocks allocated at once.
pub const BLOCKS: usize = 8;
/// Bytes kept free before each block's data, for the unread end of the block
/// before it (part of one command: the kernel's are at most 144 KiB); a longer
/// end is completed by copying instead.
pub const ROOM: usize = 256 * 1024;

/// Blocks waiting for the reader from which the reader counts as behind
/// ([`CheckAhead::WhenBehind`]).
const BEHIND: usize = 2;

/// When the read-ahead thread checks CRCs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckAhead {
    /// Every block.
    Always,
    /// The blocks read while the reader is behind (at least two blocks wait for it):
    /// the thread then has time to spare. When the reader keeps up, as on streams of
    /// large writes where it has little else to do, checking would only delay the
    /// block it waits for, and the reader checks those CRCs itself.
    WhenBehind,
}

/// A buffer of [`ROOM`] + [`BLOCK`] bytes, of which the `len` after [`ROOM`] were
/// read. Buffers keep their full length while they go round, so each is zeroed
/// once, when allocated, not before every read (a pipe gives 64 KiB per read).
struct Block {
    bytes: Vec<u8>,
    len: usize,
}

/// What the thread passes on: a block (never empty), or the input's error.
type Filled = io::Result<Block>;

/// Reads an input on its own thread. See the module docs.
pub struct ReadAhead {
    filled: Receiver<Filled>,
    /// Blocks handed back for the thread to fill again.
    empty: SyncSender<Vec<u8>>,
    /// The input ended or failed: nothing more comes.
    finished: bool,
    /// Blocks sent and not yet taken.
    backlog: Arc<AtomicUsize>,
    /// The CRCs the thread checks, until a reader takes them.
    hints: Option<CrcHints>,
    /// A block was taken: hints, keyed from the first byte, no longer fit a new reader.
    started: bool,
}

impl ReadAhead {
    /// Starts reading `input` on a thread named `rawsend-read`.
    pub fn new<R: Read + Send + 'static>(input: R) -> io::Result<ReadAhead> {
        Self::start(input, None, CheckAhead::Always)
    }

    /// Like [`new`](Self::new), the thread also checking (`when` says when) the CRC
    /// of each command of the stream as a reader with `opts` reads it. The
    /// [`StreamReader`](crate::StreamReader) made over this `ReadAhead` skips the
    /// CRCs found right (see [`Source::take_crc_hints`]).
    pub fn checking_crcs<R: Read + Send + 'static>(
        input: R,
        opts: ReaderOptions,
        when: CheckAhead,
    ) -> io::Result<ReadAhead> {
        let (checker, hints) = precheck(opts);
        let mut ahead = Self::start(input, Some(checker), when)?;
        ahead.hints = Some(hints);
        Ok(ahead)
    }

    fn start<R: Read + Send + 'static>(
        input: R,
        checker: Option<Precheck>,
        when: CheckAhead,
    ) -> io::Result<ReadAhead> {
        let (filled_tx, filled) = sync_channel(BLOCKS);
        let (empty, empty_rx) = sync_channel(BLOCKS);
        let backlog = Arc::new(AtomicUsize::new(0));
        let thread = Thread { filled: filled_tx, empty: empty_rx, backlog: Arc::clone(&backlog), when };
        std::thread::Builder::new().name("rawsend-read".into()).spawn(move || thread.fill(input, checker))?;
        Ok(ReadAhead { filled, empty, finished: false, backlog, hints: None, started: false })
    }

    /// The next block; `None` at the end of the input.
    fn next_block(&mut self) -> io::Result<Option<Block>> {
        if self.finished {
            return Ok(None);
        }
        match self.filled.recv() {
            Ok(Ok(block)) => {
                self.backlog.fetch_sub(1, Ordering::Relaxed);
                self.started = true;
                Ok(Some(block))
            }
            Ok(Err(err)) => {
                self.finished = true;
                Err(err)
            }
            Err(_) => {
                self.finished = true;
                Ok(None)
            }
        }
    }
}

impl Source for ReadAhead {
    fn fill(&mut self, buffer: &mut ReadBuffer, want: usize) -> io::Result<usize> {
        while buffer.available() < want && !buffer.eof {
            let Some(block) = self.next_block().inspect_err(|_| buffer.eof = true)? else {
                buffer.eof = true;
                break;
            };
            let unused = buffer.take_block(block.bytes, ROOM, block.len);
            if unused.capacity() != 0 {
                // The thread may have stopped; the buffer is then simply freed.
                let _ = self.empty.try_send(unused);
            }
        }
        Ok(buffer.available())
    }

    fn take_crc_hints(&mut self) -> Option<CrcHints> {
        self.hints.take().filter(|_| !self.started)
    }
}

/// The thread's ends of the channels, and when it checks CRCs.
struct Thread {
    filled: SyncSender<Filled>,
    empty: Receiver<Vec<u8>>,
    backlog: Arc<AtomicUsize>,
    when: CheckAhead,
}

impl Thread {
    /// Fills blocks from `input` until it ends or fails, or the reader is gone;
    /// `checker`, if any, sees each block before the reader does, so that the hints
    /// for the commands a block completes are sent before the block.
    fn fill(self, mut input: impl Read, mut checker: Option<Precheck>) {
        let mut allocated = 0;
        while let Some(mut bytes) = self.next_buffer(&mut allocated) {
            let outcome = loop {
                match input.read(&mut bytes[ROOM..]) {
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    other => break other,
                }
            };
            let (item, last) = match outcome {
                Ok(0) => return,
                Ok(len) => {
                    let check =
                        self.when == CheckAhead::Always || self.backlog.load(Ordering::Relaxed) >= BEHIND;
                    if checker.as_mut().is_some_and(|checker| !checker.pass(&bytes[ROOM..ROOM + len], check))
                    {
                        checker = None;
                    }
                    (Ok(Block { bytes, len }), false)
                }
                Err(err) => (Err(err), true),
            };
            // Counted before it is sent, so that the reader never counts it first.
            self.backlog.fetch_add(1, Ordering::Relaxed);
            if self.filled.send(item).is_err() || last {
                return;
            }
        }
    }

    /// A buffer of [`ROOM`] + [`BLOCK`] bytes to fill: one handed back, or a new one
    /// while fewer than [`BLOCKS`] are `allocated`; `None` once the reader is gone.
    fn next_buffer(&self, allocated: &mut usize) -> Option<Vec<u8>> {
        let mut bytes = match self.empty.try_recv() {
            Ok(bytes) => bytes,
            Err(TryRecvError::Empty) if *allocated < BLOCKS => {
                *allocated += 1;
                vec![0; ROOM + BLOCK]
            }
            Err(TryRecvError::Empty) => self.empty.recv().ok()?,
            Err(TryRecvError::Disconnected) => return None,
        };
        // The reader hands back its buffer of the moment, which may be of another size.
        bytes.resize(ROOM + BLOCK, 0);
        bytes.shrink_to(ROOM + BLOCK);
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An input that returns `chunks` one per read, then `error` if any, then EOF.
    struct Chunks {
        chunks: std::vec::IntoIter<Vec<u8>>,
        error: Option<io::Error>,
    }

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.chunks.next() {
                Some(chunk) => {
                    buf[..chunk.len()].copy_from_slice(&chunk);
                    Ok(chunk.len())
                }
                None => self.error.take().map_or(Ok(0), Err),
            }
        }
    }

    fn pseudo_random(len: usize) -> Vec<u8> {
        (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
    }

    /// Takes everything from `ahead` as a reader does, consuming all it is given;
    /// returns the bytes and the error that ended them, if any.
    fn drain(ahead: &mut ReadAhead) -> (Vec<u8>, Option<io::Error>) {
        let mut buffer = ReadBuffer::default();
        let mut out = Vec::new();
        loop {
            let want = buffer.available() + 1;
            let filled = ahead.fill(&mut buffer, want);
            out.extend_from_slice(buffer.unread());
            buffer.start = buffer.end;
            match filled {
                Ok(n) if n < want => return (out, None),
                Ok(_) => {}
                Err(err) => return (out, Some(err)),
            }
        }
    }

    #[test]
    fn passes_every_byte_in_order_through_more_blocks_than_are_queued() {
        let data = pseudo_random(BLOCK * (BLOCKS + 3) + 12_345);
        let (out, err) = drain(&mut ReadAhead::new(io::Cursor::new(data.clone())).unwrap());
        assert!(err.is_none());
        assert_eq!(out.len(), data.len());
        assert!(out == data);
    }

    #[test]
    fn crc_hints_go_once_and_only_to_a_reader_starting_at_the_first_byte() {
        let checking = || {
            let input = io::Cursor::new(pseudo_random(100));
            ReadAhead::checking_crcs(input, ReaderOptions::default(), CheckAhead::Always).unwrap()
        };
        let mut fresh = checking();
        assert!(fresh.take_crc_hints().is_some());
        assert!(fresh.take_crc_hints().is_none(), "taken once");
        let mut started = checking();
        started.fill(&mut ReadBuffer::default(), 1).unwrap();
        assert!(started.take_crc_hints().is_none(), "keyed from a byte already read");
        assert!(ReadAhead::new(io::Cursor::new(vec![1])).unwrap().take_crc_hints().is_none());
    }

    #[test]
    fn unread_bytes_longer_than_the_room_are_completed_by_copying() {
        let data = pseudo_random(BLOCK * 3 + 7);
        let mut ahead = ReadAhead::new(io::Cursor::new(data.clone())).unwrap();
        let mut buffer = ReadBuffer::default();
        // One "command" of two blocks and a half, then the rest.
        let long = BLOCK * 2 + BLOCK / 2;
        assert_eq!(ahead.fill(&mut buffer, long).unwrap(), BLOCK * 3);
        assert!(buffer.unread()[..long] == data[..long]);
        buffer.start += long;
        assert_eq!(ahead.fill(&mut buffer, BLOCK).unwrap(), BLOCK / 2 + 7);
        assert!(buffer.unread() == &data[long..]);
    }

    #[test]
    fn an_input_error_comes_after_the_bytes_read_before_it() {
        let chunks = vec![b"abc".to_vec(), b"defg".to_vec()];
        let input = Chunks { chunks: chunks.into_iter(), error: Some(io::Error::other("disk on fire")) };
        let mut ahead = ReadAhead::new(input).unwrap();
        let (out, err) = drain(&mut ahead);
        assert_eq!(out, b"abcdefg");
        assert_eq!(err.unwrap().to_string(), "disk on fire");
        assert!(ahead.next_block().unwrap().is_none(), "nothing after the error");
    }

    #[test]
    fn what_one_read_returned_is_passed_on_without_waiting_for_more() {
        let (reader, mut writer) = io::pipe().unwrap();
        let mut ahead = ReadAhead::new(reader).unwrap();
        io::Write::write_all(&mut writer, b"first").unwrap();
        let mut buffer = ReadBuffer::default();
        // The pipe stays open: a reader waiting for a full block would block here.
        assert_eq!(ahead.fill(&mut buffer, 1).unwrap(), 5);
        assert_eq!(buffer.unread(), b"first");
        drop(writer);
        assert_eq!(ahead.fill(&mut buffer, 6).unwrap(), 5);
        assert!(buffer.eof);
    }

    #[test]
    fn dropping_it_while_the_thread_waits_on_an_idle_input_returns_at_once() {
        let (reader, writer) = io::pipe().unwrap();
        let started = std::time::Instant::now();
        drop(ReadAhead::new(reader).unwrap());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        drop(writer);
    }
}
