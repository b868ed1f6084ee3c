//! A streaming reader over any [`Read`](std::io::Read): large block reads, one reusable buffer, bounded frames.
//!
//! The reader asks the input for as much as its buffer holds (not two small
//! reads per command as btrfs-progs does; over a [`ReadAhead`](crate::ReadAhead)
//! it takes the thread's blocks as they are, see [`Source`]), verifies each command's CRC32C,
//! and hands out [`Record`]s that borrow the buffer until the next call. A
//! command longer than the frame cap is refused before any allocation, so
//! memory stays bounded whatever the input claims. Joined streams (several
//! headers back to back) are read in sequence; with
//! [`ReaderOptions::stop_at_end`] reading stops at the first END (`-e`).
//!
//! Over a [`ReadAhead`](crate::ReadAhead) that checks CRCs
//! ([`ReadAhead::checking_crcs`](crate::ReadAhead::checking_crcs)), the CRCs
//! that the read-ahead thread found right are not computed again
//! (see [`crate::precheck`]); every other CRC is checked here, so the items
//! and errors are the same with hints and without.
//!
//! Errors local to one frame (CRC mismatch, bad attributes, unknown command)
//! consume that frame, so a caller that tolerates errors (`--max-errors 0`)
//! can go on; framing errors end the stream.
//!
//! [`StreamReader::next`] refuses a command whose path attribute could escape
//! the destination ([`ErrorKind::BadPath`]): that is what a receive reads.
//! [`StreamReader::next_lenient`] reads the same frames through the same
//! decoder but keeps such paths as [`RawPath`]s, for a dump to print and
//! flag; every other error (framing, CRC, attributes) is the same in both.
//! It is a separate method rather than a [`ReaderOptions`] flag so that the
//! type of what a receive gets, `Command<'_, StreamPath>`, still guarantees
//! validated paths.

use std::io;
use std::sync::Arc;

use crate::command::Command;
use crate::crc::command_crc;
use crate::error::{Error, ErrorKind, Location};
use crate::frame::{CMD_HEADER_LEN, CommandHeader, Frame};
use crate::header::{STREAM_HEADER_LEN, StreamHeader};
use crate::kind::{Attr, CommandKind};
use crate::path::{PathAttr, RawPath, StreamPath};
use crate::precheck::CrcHints;
use crate::progress::ReadProgress;
use crate::resume::{self, CONTINUE_COMMAND, Position};
use crate::source::{ReadBuffer, Source};

/// Largest v1 command, header included (the kernel's 64 KiB send buffer).
pub const V1_FRAME_CAP: usize = 64 * 1024;
/// Default largest v2/v3 command: the kernel's is 144 KiB; leave room for other senders.
pub const DEFAULT_FRAME_CAP: usize = 4 * 1024 * 1024;

/// How a [`StreamReader`] behaves.
#[derive(Clone, Copy, Debug)]
pub struct ReaderOptions {
    /// Largest accepted command in a v1 stream, header included.
    pub v1_frame_cap: usize,
    /// Largest accepted command in a v2/v3 stream, header included.
    pub frame_cap: usize,
    /// Stop after the first END command (`btrfs receive -e`).
    pub stop_at_end: bool,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions { v1_frame_cap: V1_FRAME_CAP, frame_cap: DEFAULT_FRAME_CAP, stop_at_end: false }
    }
}

impl ReaderOptions {
    /// The largest command accepted in a stream of protocol `version`.
    pub(crate) fn cap_for(&self, version: u32) -> usize {
        if version == 1 { self.v1_frame_cap } else { self.frame_cap }
    }
}

/// One item of the input; `P` is what path attributes decode to (see [`Command`]).
#[derive(Debug)]
pub enum Item<'a, P = StreamPath<'a>> {
    /// A stream header: a new stream starts.
    Header {
        /// Its protocol version.
        version: u32,
        /// Byte offset of the header in the input.
        offset: u64,
    },
    /// A command.
    Command(Record<'a, P>),
    /// A continuation marker: the stream continues an interrupted receive of the
    /// subvolume whose SUBVOL or SNAPSHOT follows, after `position` (see [`crate::resume`]).
    Continue {
        /// Where the receive continues within that subvolume's stream.
        position: Position,
        /// 0-based command index of the marker across the whole input.
        index: u64,
        /// Byte offset of the marker in the input.
        offset: u64,
    },
}

/// A decoded command and where it came from.
#[derive(Debug)]
pub struct Record<'a, P = StreamPath<'a>> {
    /// 0-based command index across the whole input.
    pub index: u64,
    /// Byte offset of the command in the input.
    pub offset: u64,
    /// Protocol version of the stream it belongs to.
    pub version: u32,
    /// The command's raw bytes (header and payload) as read.
    pub raw: &'a [u8],
    /// The decoded command.
    pub command: Command<'a, P>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    ExpectHeader { first: bool },
    InStream { version: u32 },
    Done,
}

/// Reads send streams from `R`. See the module docs.
pub struct StreamReader<R> {
    input: R,
    opts: ReaderOptions,
    buffer: ReadBuffer,
    /// Input offset of `buf[start]`.
    offset: u64,
    index: u64,
    state: State,
    /// Where to publish how far reading got, if anyone watches.
    progress: Option<Arc<ReadProgress>>,
    /// CRCs checked ahead, if the input is a read-ahead that checks them.
    hints: Option<CrcHints>,
    /// Commands whose CRC a hint vouched for.
    prechecked: u64,
}

impl<R: Source> StreamReader<R> {
    /// A reader with default options.
    pub fn new(input: R) -> Self {
        Self::with_options(input, ReaderOptions::default())
    }

    /// A reader with the given options. Over a [`ReadAhead`](crate::ReadAhead) that
    /// checks CRCs, it skips those found right (see [`Source::take_crc_hints`]).
    pub fn with_options(mut input: R, opts: ReaderOptions) -> Self {
        let hints = input.take_crc_hints();
        StreamReader {
            input,
            opts,
            buffer: ReadBuffer::default(),
            offset: 0,
            index: 0,
            state: State::ExpectHeader { first: true },
            progress: None,
            hints,
            prechecked: 0,
        }
    }

    /// Skips computing the CRC of the commands that `hints` vouch for (forged ones, in tests).
    #[cfg(test)]
    pub(crate) fn with_crc_hints(mut self, hints: CrcHints) -> Self {
        self.hints = Some(hints);
        self
    }

    /// Commands whose CRC was not computed here because a hint vouched for it.
    pub fn prechecked_crcs(&self) -> u64 {
        self.prechecked
    }

    /// Publishes the bytes and commands read, the subvolume and a recent path into
    /// `progress` as reading goes on (see [`ReadProgress`]).
    pub fn with_progress(mut self, progress: Arc<ReadProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Bytes consumed so far (the offset of the next item).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Commands read so far.
    pub fn commands_read(&self) -> u64 {
        self.index
    }

    /// The next header or command; `Ok(None)` at a clean end of input.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Item<'_>>, Error> {
        self.next_item()
    }

    /// Like [`next`](Self::next), but a path attribute that `next` refuses is
    /// kept as a [`RawPath`] (see [`Command::invalid_paths`]). For inspection only.
    pub fn next_lenient(&mut self) -> Result<Option<Item<'_, RawPath<'_>>>, Error> {
        self.next_item()
    }

    fn next_item<'s, P: PathAttr<'s>>(&'s mut self) -> Result<Option<Item<'s, P>>, Error> {
        match self.state {
            State::Done => Ok(None),
            State::ExpectHeader { first } => self.read_header(first),
            State::InStream { version } => self.read_frame(version).map(Some),
        }
    }

    fn read_header<P>(&mut self, first: bool) -> Result<Option<Item<'_, P>>, Error> {
        let location = Location { offset: self.offset, ..Location::default() };
        let fail = |state: &mut State, kind| {
            *state = State::Done;
            Err(Error { location: location.clone(), kind })
        };
        let available = match self.fill(STREAM_HEADER_LEN) {
            Ok(n) => n,
            Err(err) => return fail(&mut self.state, err.into()),
        };
        if available == 0 {
            self.state = State::Done;
            return if first { fail(&mut self.state, ErrorKind::EmptyStream) } else { Ok(None) };
        }
        if available < STREAM_HEADER_LEN {
            return fail(&mut self.state, ErrorKind::TruncatedHeader);
        }
        let bytes = self.buffer.unread()[..STREAM_HEADER_LEN].try_into().expect("17 bytes");
        let header = match StreamHeader::parse(bytes) {
            Ok(header) => header,
            Err(kind) => return fail(&mut self.state, kind),
        };
        let offset = self.offset;
        self.consume(STREAM_HEADER_LEN);
        self.state = State::InStream { version: header.version };
        Ok(Some(Item::Header { version: header.version, offset }))
    }

    fn read_frame<'s, P: PathAttr<'s>>(&'s mut self, version: u32) -> Result<Item<'s, P>, Error> {
        let index = self.index;
        let offset = self.offset;
        let mut location = Location { index: Some(index), offset, ..Location::default() };
        let frame_len = match self.frame_len(version, &mut location) {
            Ok(len) => len,
            Err(kind) => {
                self.state = State::Done;
                return Err(Error { location, kind });
            }
        };
        let prechecked = self.hints.as_mut().is_some_and(|hints| hints.vouches(offset, frame_len));
        self.prechecked += u64::from(prechecked);
        let start = self.buffer.start;
        self.consume(frame_len);
        self.index += 1;
        let raw = &self.buffer.bytes[start..start + frame_len];
        if location.command == Some(CONTINUE_COMMAND) {
            let marker = check_crc(raw, prechecked).and_then(|()| resume::parse_marker(raw));
            return marker
                .map(|position| Item::Continue { position, index, offset })
                .map_err(|kind| Error { location, kind });
        }
        let decoded: Result<Command<'s, P>, ErrorKind> = decode(raw, version, prechecked, &mut location);
        if let Some(progress) = &self.progress {
            progress.set_commands(self.index, location.path.as_deref());
        }
        match decoded {
            Ok(command) => {
                let starts_subvolume = matches!(command.kind(), CommandKind::Subvol | CommandKind::Snapshot);
                if let (Some(progress), true) = (&self.progress, starts_subvolume) {
                    progress.set_subvolume(command.path().map_or(&[][..], |path: P| path.bytes()));
                }
                if command.kind() == CommandKind::End {
                    self.state = if self.opts.stop_at_end {
                        State::Done
                    } else {
                        State::ExpectHeader { first: false }
                    };
                }
                Ok(Item::Command(Record { index, offset, version, raw, command }))
            }
            Err(kind) => Err(Error { location, kind }),
        }
    }

    /// Makes the whole next frame available and returns its length.
    fn frame_len(&mut self, version: u32, location: &mut Location) -> Result<usize, ErrorKind> {
        let available = self.fill(CMD_HEADER_LEN)?;
        if available == 0 {
            return Err(ErrorKind::MissingEnd);
        }
        if available < CMD_HEADER_LEN {
            return Err(ErrorKind::TruncatedCommand);
        }
        let header_bytes = self.buffer.unread()[..CMD_HEADER_LEN].try_into().expect("10 bytes");
        let header = CommandHeader::parse(header_bytes);
        location.command = Some(header.cmd);
        let cap = self.opts.cap_for(version);
        let frame_len = CMD_HEADER_LEN as u64 + u64::from(header.len);
        if frame_len > cap as u64 {
            return Err(ErrorKind::CommandTooLarge { len: u64::from(header.len), cap: cap as u64 });
        }
        let frame_len = frame_len as usize;
        if self.fill(frame_len)? < frame_len {
            return Err(ErrorKind::TruncatedCommand);
        }
        Ok(frame_len)
    }

    /// Ensures `want` bytes are buffered if the input has them; returns how many are.
    fn fill(&mut self, want: usize) -> io::Result<usize> {
        self.input.fill(&mut self.buffer, want)
    }

    fn consume(&mut self, n: usize) {
        self.buffer.start += n;
        self.offset += n as u64;
        if let Some(progress) = &self.progress {
            progress.set_bytes(self.offset);
        }
    }
}

/// Checks the CRC (unless `prechecked`) and decodes one frame, filling in the path
/// for error messages.
fn decode<'a, P: PathAttr<'a>>(
    raw: &'a [u8],
    version: u32,
    prechecked: bool,
    location: &mut Location,
) -> Result<Command<'a, P>, ErrorKind> {
    let frame = Frame::parse(raw, version);
    if let Ok(frame) = &frame {
        location.path = frame.get(Attr::Path).map(<[u8]>::to_vec);
    }
    check_crc(raw, prechecked)?;
    Command::decode_as(&frame?)
}

/// Checks the CRC of a frame, unless a hint vouched for it (`prechecked`).
fn check_crc(raw: &[u8], prechecked: bool) -> Result<(), ErrorKind> {
    if prechecked {
        return Ok(());
    }
    let stored = CommandHeader::parse(raw[..CMD_HEADER_LEN].try_into().expect("10 bytes")).crc;
    let computed = command_crc(raw);
    if stored != computed && !cfg!(fuzzing) {
        return Err(ErrorKind::CrcMismatch { stored, computed });
    }
    Ok(())
}
