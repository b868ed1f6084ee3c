//! CRCs checked ahead of the reader, on the thread that reads the input.
//!
//! Checking each command's CRC32C costs the thread that decodes the stream a
//! pass over every byte. The read-ahead thread ([`crate::ReadAhead`]) touches
//! every byte anyway, so a `Precheck` there follows the frames as the bytes
//! pass (stream header, then each command's header and payload, across block
//! boundaries), computes each command's CRC and records a `Hint`: the
//! command's offset, its length, and whether its CRC matched. The read-ahead
//! thread says which blocks to check ([`crate::CheckAhead`]); the others are
//! only followed, and a command with bytes among them gets no hint.
//! [`StreamReader`](crate::StreamReader) reads these through [`CrcHints`] and
//! skips its own CRC computation only for a frame whose offset and length both
//! match a hint that says the CRC is right; for every other frame it computes
//! the CRC as without hints. A hint is a statement about the input bytes at
//! `offset..offset + len`, true however the checker got there, so a checker
//! that lost its way can only cost time, never accept a bad CRC; the
//! reader's items and errors are the same with hints and without.
//!
//! Bounds: the checker stops (records nothing more) at anything it does not
//! follow as the reader would (a bad stream header, a command over the frame
//! cap, bytes after the END that [`ReaderOptions::stop_at_end`] stops at).
//! One block yields a batch of at most [`BATCH_MAX`] hints (the commands after
//! those go unrecorded); batches travel over a bounded channel that the
//! checker never waits on (a full channel drops the batch: those commands are
//! then checked by the reader). Nothing here blocks the reader.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use crate::crc::CommandCrc;
use crate::frame::{CMD_HEADER_LEN, CommandHeader};
use crate::header::{STREAM_HEADER_LEN, StreamHeader};
use crate::kind::CommandKind;
use crate::reader::ReaderOptions;

/// Most hints recorded per block: 16 bytes each, 256 KiB a batch. That is one per
/// 64 bytes of a 1 MiB block; kernel streams average far more per command (usr v1
/// of `bench/`: 1,965 bytes), and the commands of a longer run of small ones are
/// checked by the reader.
pub const BATCH_MAX: usize = 16 * 1024;
/// Most batches of hints waiting for the reader (one per block that completed a
/// command; twice the blocks that can be in flight).
const BATCHES: usize = 16;

/// What the checker found for one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hint {
    /// Byte offset of the command in the input.
    pub(crate) offset: u64,
    /// Length of the command, header included.
    pub(crate) len: u32,
    /// Its stored CRC matched the computed one.
    pub(crate) ok: bool,
}

/// Where the checker is in the stream.
enum Track {
    /// Collecting a stream header's bytes.
    StreamHeader,
    /// Collecting a command header's bytes, in a stream of this version.
    CommandHeader { version: u32 },
    /// Passing a command's payload through its CRC.
    /// `crc` is `None` once part of the payload passed unchecked.
    Payload { version: u32, offset: u64, header: CommandHeader, remaining: usize, crc: Option<CommandCrc> },
    /// Lost: records nothing more.
    Stopped,
}

/// The checking half, on the read-ahead thread. See the module docs.
pub(crate) struct Precheck {
    opts: ReaderOptions,
    track: Track,
    /// Input offset of the next byte passed.
    offset: u64,
    /// A header's bytes so far (stream or command header).
    staged: [u8; STREAM_HEADER_LEN],
    staged_len: usize,
    batch: Vec<Hint>,
    hints: SyncSender<Vec<Hint>>,
    /// Whether the bytes being passed are checked, or only followed.
    checking: bool,
}

/// The reading half, which a [`StreamReader`](crate::StreamReader) takes from the
/// [`ReadAhead`](crate::ReadAhead) it reads ([`Source::take_crc_hints`](crate::Source::take_crc_hints)).
/// Its hints are keyed by offsets in that `ReadAhead`, so the reader must read
/// it from its first byte, which `take_crc_hints` ensures.
pub struct CrcHints {
    batches: Receiver<Vec<Hint>>,
    batch: Vec<Hint>,
    next: usize,
}

/// A checker for a stream read with `opts`, and the hints it will send.
pub(crate) fn precheck(opts: ReaderOptions) -> (Precheck, CrcHints) {
    let (hints, batches) = sync_channel(BATCHES);
    let precheck = Precheck {
        opts,
        track: Track::StreamHeader,
        offset: 0,
        staged: [0; STREAM_HEADER_LEN],
        staged_len: 0,
        batch: Vec::new(),
        hints,
        checking: true,
    };
    (precheck, CrcHints { batches, batch: Vec::new(), next: 0 })
}

impl Precheck {
    /// Follows the next bytes of the input and sends the hints they completed;
    /// unless `check`, only follows them (a command of which some bytes pass
    /// unchecked gets no hint). False once there is nothing more to do (lost,
    /// or nobody reads the hints).
    pub(crate) fn pass(&mut self, mut bytes: &[u8], check: bool) -> bool {
        self.checking = check;
        while !bytes.is_empty() && !matches!(self.track, Track::Stopped) {
            let used = self.step(bytes);
            bytes = &bytes[used..];
            self.offset += used as u64;
        }
        let batch = std::mem::take(&mut self.batch);
        let connected = batch.is_empty()
            || match self.hints.try_send(batch) {
                Ok(()) | Err(TrySendError::Full(_)) => true,
                Err(TrySendError::Disconnected(_)) => false,
            };
        connected && !matches!(self.track, Track::Stopped)
    }

    /// Takes what the current state needs from `bytes`; returns how many it took.
    fn step(&mut self, bytes: &[u8]) -> usize {
        match &mut self.track {
            Track::StreamHeader => {
                let used = self.stage(bytes, STREAM_HEADER_LEN);
                if self.staged_len == STREAM_HEADER_LEN {
                    self.staged_len = 0;
                    self.track = match StreamHeader::parse(&self.staged) {
                        Ok(header) => Track::CommandHeader { version: header.version },
                        Err(_) => Track::Stopped,
                    };
                }
                used
            }
            Track::CommandHeader { version } => {
                let version = *version;
                let used = self.stage(bytes, CMD_HEADER_LEN);
                if self.staged_len == CMD_HEADER_LEN {
                    self.staged_len = 0;
                    self.start_command(version, self.offset + used as u64 - CMD_HEADER_LEN as u64);
                }
                used
            }
            Track::Payload { remaining, crc, .. } => {
                let used = bytes.len().min(*remaining);
                match crc {
                    Some(crc) if self.checking => crc.update(&bytes[..used]),
                    _ => *crc = None,
                }
                *remaining -= used;
                if *remaining == 0 {
                    self.finish_command();
                }
                used
            }
            Track::Stopped => bytes.len(),
        }
    }

    /// Copies into the staged header up to `want` bytes; returns how many it took.
    fn stage(&mut self, bytes: &[u8], want: usize) -> usize {
        let used = bytes.len().min(want - self.staged_len);
        self.staged[self.staged_len..self.staged_len + used].copy_from_slice(&bytes[..used]);
        self.staged_len += used;
        used
    }

    /// A command header at `offset` is staged: follow its payload, as the reader would.
    fn start_command(&mut self, version: u32, offset: u64) {
        let header_bytes = self.staged[..CMD_HEADER_LEN].try_into().expect("10 bytes");
        let header = CommandHeader::parse(header_bytes);
        if header.frame_len() > self.opts.cap_for(version) {
            self.track = Track::Stopped;
            return;
        }
        let crc = self.checking.then(|| CommandCrc::new(header_bytes));
        let remaining = header.len as usize;
        self.track = Track::Payload { version, offset, header, remaining, crc };
        if remaining == 0 {
            self.finish_command();
        }
    }

    /// The payload has passed: record the command, then expect what follows it.
    fn finish_command(&mut self) {
        let Track::Payload { version, offset, header, crc, .. } =
            std::mem::replace(&mut self.track, Track::Stopped)
        else {
            return;
        };
        if let (Ok(len), Some(crc), true) =
            (u32::try_from(header.frame_len()), crc, self.batch.len() < BATCH_MAX)
        {
            self.batch.push(Hint { offset, len, ok: crc.finish() == header.crc });
        }
        self.track = match header.cmd == CommandKind::End.raw() {
            false => Track::CommandHeader { version },
            true if self.opts.stop_at_end => Track::Stopped,
            true => Track::StreamHeader,
        };
    }
}

impl CrcHints {
    /// Whether the command of `len` bytes at `offset` had its CRC checked and
    /// found right. Never waits: a hint not yet sent counts as none.
    pub(crate) fn vouches(&mut self, offset: u64, len: usize) -> bool {
        loop {
            if self.next == self.batch.len() {
                match self.batches.try_recv() {
                    Ok(batch) => (self.batch, self.next) = (batch, 0),
                    Err(_) => return false,
                }
                continue;
            }
            let hint = self.batch[self.next];
            if hint.offset > offset {
                return false;
            }
            self.next += 1;
            if hint.offset == offset {
                return hint.len as usize == len && hint.ok;
            }
        }
    }

    /// Hints sent by hand, for tests of the reader.
    #[cfg(test)]
    pub(crate) fn from_hints(hints: Vec<Hint>) -> CrcHints {
        let (sender, batches) = sync_channel(1);
        sender.send(hints).expect("the receiver is here");
        CrcHints { batches, batch: Vec::new(), next: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, ErrorKind, Item, StreamHeader, StreamPath, StreamReader, Uuid, command_crc};

    /// A v2 stream: SUBVOL, a WRITE of `data_len` bytes, END; and the WRITE's offset and length.
    fn stream_with_write(data_len: usize) -> (Vec<u8>, u64, u32) {
        let data = vec![0x5a; data_len];
        let subvol = Command::Subvol { path: StreamPath::new(b"vol").unwrap(), uuid: Uuid::NIL, ctransid: 1 };
        let write = Command::Write { path: StreamPath::new(b"f").unwrap(), offset: 0, data: &data };
        let mut bytes = StreamHeader { version: 2 }.to_bytes().to_vec();
        subvol.encode(2, &mut bytes).unwrap();
        let before = bytes.len();
        write.encode(2, &mut bytes).unwrap();
        let len = bytes.len() - before;
        Command::<StreamPath<'_>>::End.encode(2, &mut bytes).unwrap();
        (bytes, before as u64, len as u32)
    }

    /// The first error reading `bytes` with `hints`, if any.
    fn first_error(bytes: &[u8], hints: Option<CrcHints>) -> Option<ErrorKind> {
        let mut reader = StreamReader::new(bytes);
        if let Some(hints) = hints {
            reader = reader.with_crc_hints(hints);
        }
        loop {
            match reader.next() {
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(err) => return Some(err.kind),
            }
        }
    }

    #[test]
    fn only_a_hint_of_the_same_offset_and_length_saying_ok_skips_the_crc() {
        let (mut bytes, offset, len) = stream_with_write(4096);
        bytes[offset as usize + len as usize - 1] ^= 1;
        let hint = |offset, len, ok| Some(CrcHints::from_hints(vec![Hint { offset, len, ok }]));
        assert!(matches!(first_error(&bytes, None), Some(ErrorKind::CrcMismatch { .. })));
        // The mechanism: a (forged) hint for exactly this command is trusted.
        assert_eq!(first_error(&bytes, hint(offset, len, true)), None);
        for wrong in [hint(offset, len + 1, true), hint(offset, len - 1, true), hint(offset + 1, len, true)] {
            assert!(matches!(first_error(&bytes, wrong), Some(ErrorKind::CrcMismatch { .. })));
        }
        assert!(matches!(first_error(&bytes, hint(offset, len, false)), Some(ErrorKind::CrcMismatch { .. })));
        assert!(matches!(
            first_error(&bytes, hint(offset - 1, len, true)),
            Some(ErrorKind::CrcMismatch { .. })
        ));
    }

    /// Every command: (offset, length, CRC right?).
    fn truth(bytes: &[u8]) -> Vec<Hint> {
        let mut reader = StreamReader::new(bytes);
        let mut hints = Vec::new();
        while let Ok(Some(item)) = reader.next() {
            if let Item::Command(record) = item {
                let stored = u32::from_le_bytes(record.raw[6..10].try_into().unwrap());
                let (offset, len, ok) =
                    (record.offset, record.raw.len() as u32, command_crc(record.raw) == stored);
                hints.push(Hint { offset, len, ok });
            }
        }
        hints
    }

    /// The hints a checker sends for `bytes` passed in pieces of `piece` bytes.
    fn checked(bytes: &[u8], piece: usize, opts: ReaderOptions) -> (Vec<Hint>, bool) {
        let (mut checker, hints) = precheck(opts);
        let mut going = true;
        for chunk in bytes.chunks(piece) {
            going = checker.pass(chunk, true);
            if !going {
                break;
            }
        }
        drop(checker);
        (hints.batches.iter().flatten().collect(), going)
    }

    #[test]
    fn hints_are_the_same_wherever_the_blocks_split_the_stream() {
        let (one, ..) = stream_with_write(700);
        let (two, ..) = stream_with_write(3000);
        let joined = [&one[..], &two[..]].concat();
        let want = truth(&joined);
        assert_eq!(want.len(), 6);
        for piece in 1..=joined.len() {
            assert_eq!(checked(&joined, piece, ReaderOptions::default()), (want.clone(), true), "{piece}");
        }
        // A wrong CRC is recorded as wrong.
        let mut bad = joined.clone();
        let (offset, len) = (want[4].offset as usize, want[4].len as usize);
        bad[offset + len - 1] ^= 1;
        let (hints, _) = checked(&bad, 100, ReaderOptions::default());
        assert_eq!(hints[4], Hint { ok: false, ..want[4] });
    }

    #[test]
    fn it_stops_at_what_it_does_not_follow() {
        let (stream, _, len) = stream_with_write(1000);
        let stopped = |bytes: &[u8], opts| checked(bytes, 64, opts);
        let mut bad_magic = stream.clone();
        bad_magic[0] = b'B';
        assert_eq!(stopped(&bad_magic, ReaderOptions::default()), (vec![], false));
        // The SUBVOL fits the cap, the WRITE does not.
        let small_cap = ReaderOptions { frame_cap: len as usize - 1, ..ReaderOptions::default() };
        assert_eq!(stopped(&stream, small_cap), (truth(&stream)[..1].to_vec(), false));
        // After the first END: garbage, or a second stream that `stop_at_end` does not read.
        let one = truth(&stream);
        let garbage = [&stream[..], &[0xff; 100]].concat();
        assert_eq!(stopped(&garbage, ReaderOptions::default()), (one.clone(), false));
        let twice = [&stream[..], &stream[..]].concat();
        let at_end = ReaderOptions { stop_at_end: true, ..ReaderOptions::default() };
        assert_eq!(stopped(&twice, at_end), (one, false));
        assert_eq!(stopped(&twice, ReaderOptions::default()), (truth(&twice), true));
    }

    #[test]
    fn a_block_records_at_most_batch_max_hints() {
        let mut stream = StreamHeader { version: 2 }.to_bytes().to_vec();
        for _ in 0..BATCH_MAX + 10 {
            Command::Chmod { path: StreamPath::new(b"f").unwrap(), mode: 0o644 }
                .encode(2, &mut stream)
                .unwrap();
        }
        let (hints, going) = checked(&stream, stream.len(), ReaderOptions::default());
        assert!(going);
        assert_eq!(hints, truth(&stream)[..BATCH_MAX]);
    }

    #[test]
    fn a_full_channel_drops_hints_instead_of_waiting() {
        let (stream, ..) = stream_with_write(1000);
        let (mut checker, hints) = precheck(ReaderOptions::default());
        for _ in 0..BATCHES * 3 {
            assert!(checker.pass(&stream, true));
        }
        assert_eq!(hints.batches.try_iter().count(), BATCHES);
        drop(hints);
        assert!(!checker.pass(&stream, true), "nobody reads the hints: stop checking");
    }

    #[test]
    fn a_command_partly_passed_unchecked_gets_no_hint() {
        let (stream, offset, _) = stream_with_write(1000);
        let all = truth(&stream);
        let (mut checker, hints) = precheck(ReaderOptions::default());
        let middle = offset as usize + 500;
        assert!(checker.pass(&stream[..middle], true));
        assert!(checker.pass(&stream[middle..middle + 1], false));
        assert!(checker.pass(&stream[middle + 1..], true));
        // Only followed: the next stream's SUBVOL is not checked, what comes after it is.
        assert!(checker.pass(&stream[..40], false));
        assert!(checker.pass(&stream[40..], true));
        drop(checker);
        let got: Vec<Hint> = hints.batches.iter().flatten().collect();
        let second: Vec<Hint> =
            all.iter().map(|hint| Hint { offset: hint.offset + stream.len() as u64, ..*hint }).collect();
        assert_eq!(got, [all[0], all[2], second[1], second[2]]);
    }
}
