//! Where a receive stands in a stream, and continuation streams that start there.
//!
//! A receive that stops part-way through a subvolume's stream is described
//! by the stream's [`Identity`] (the sent subvolume, its parent, the protocol
//! version) and a [`Position`]: how many of that subvolume's commands are
//! applied, how many bytes they take from its stream header, and a [`Digest`]
//! of those commands. A [`Token`] carries both, as one printable word, from
//! the receiving side to the sending side.
//!
//! The sender regenerates the same stream and [`write_continuation`] turns it
//! into a *continuation*: the stream header, a continuation marker naming the
//! position, the subvolume's first command (SUBVOL or SNAPSHOT, so the
//! receiver knows which partial subvolume it continues), then only the
//! commands after the position, byte for byte. The token never decides what
//! is sent: the sender's own arguments do; the token is only checked against
//! the regenerated stream (same identity, same digest of the skipped prefix),
//! and a mismatch is refused rather than sent.
//!
//! The marker is a command of a number the kernel does not use
//! ([`CONTINUE_COMMAND`]) with a fixed payload (a magic word and the three
//! position fields, little-endian) and the usual CRC32C. btrfs-progs refuses
//! it as an unknown command, which is right: only a receiver that holds the
//! partial subvolume and its resume state can apply a continuation.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use crate::command::Command;
use crate::crc::command_crc;
use crate::error::{Error, ErrorKind};
use crate::frame::{CMD_HEADER_LEN, CRC_RANGE};
use crate::header::{STREAM_HEADER_LEN, StreamHeader};
use crate::reader::{Item, StreamReader};
use crate::uuid::Uuid;

/// Command number of the continuation marker (not a kernel command).
pub const CONTINUE_COMMAND: u16 = 0x7273;
/// First payload bytes of a continuation marker.
const MARKER_MAGIC: &[u8; 8] = b"rsresume";
/// Payload of a continuation marker: magic, commands, offset, digest.
const MARKER_PAYLOAD: usize = 32;
/// Bytes of a command header the digest covers: length, type, CRC32C.
const DIGEST_HEADER_LEN: usize = CMD_HEADER_LEN;
/// First word of a token.
const TOKEN_MAGIC: &str = "rawsend1";

/// A running digest of a stream's commands: 64-bit FNV-1a over each command's
/// header (length, type and CRC32C, which the reader has checked against the
/// command's bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest(pub u64);

impl Digest {
    /// The digest of no commands.
    pub const EMPTY: Digest = Digest(0xcbf2_9ce4_8422_2325);

    /// The digest after one more command, given its raw bytes (header first).
    pub fn chain(self, raw: &[u8]) -> Digest {
        self.hash(&raw[..raw.len().min(DIGEST_HEADER_LEN)])
    }

    /// FNV-1a of `bytes`, continuing from this digest.
    pub fn hash(self, bytes: &[u8]) -> Digest {
        Digest(
            bytes.iter().fold(self.0, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)),
        )
    }
}

/// How far into one subvolume's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Commands of this subvolume's stream, its SUBVOL or SNAPSHOT included.
    pub commands: u64,
    /// Bytes of this subvolume's stream, from its stream header.
    pub offset: u64,
    /// Digest of those commands.
    pub digest: Digest,
}

impl Position {
    /// The start of a stream whose header is `header_len` bytes.
    pub fn start(header_len: u64) -> Position {
        Position { commands: 0, offset: header_len, digest: Digest::EMPTY }
    }

    /// The position after command `raw`.
    pub fn after(self, raw: &[u8]) -> Position {
        Position {
            commands: self.commands + 1,
            offset: self.offset + raw.len() as u64,
            digest: self.digest.chain(raw),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command {} (byte {})", self.commands, self.offset)
    }
}

/// What identifies a subvolume's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The sent subvolume's UUID.
    pub uuid: Uuid,
    /// Its ctransid.
    pub ctransid: u64,
    /// A SNAPSHOT's parent UUID and ctransid.
    pub parent: Option<(Uuid, u64)>,
    /// Protocol version.
    pub version: u32,
}

impl Identity {
    /// The identity a stream of `version` starting with `command` has, if it is a
    /// SUBVOL or SNAPSHOT.
    pub fn of<P>(command: &Command<'_, P>, version: u32) -> Option<Identity> {
        match *command {
            Command::Subvol { uuid, ctransid, .. } => {
                Some(Identity { uuid, ctransid, parent: None, version })
            }
            Command::Snapshot { uuid, ctransid, clone_uuid, clone_ctransid, .. } => {
                Some(Identity { uuid, ctransid, parent: Some((clone_uuid, clone_ctransid)), version })
            }
            _ => None,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subvolume {} ctransid {}, parent ", self.uuid, self.ctransid)?;
        match self.parent {
            Some((uuid, ctransid)) => write!(f, "{uuid} ctransid {ctransid}")?,
            None => f.write_str("none")?,
        }
        write!(f, ", protocol {}", self.version)
    }
}

/// The continuation marker's bytes for `position`: a whole command, CRC included.
pub fn continuation_marker(position: &Position) -> Vec<u8> {
    let mut frame = Vec::with_capacity(CMD_HEADER_LEN + MARKER_PAYLOAD);
    frame.extend_from_slice(&(MARKER_PAYLOAD as u32).to_le_bytes());
    frame.extend_from_slice(&CONTINUE_COMMAND.to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(MARKER_MAGIC);
    for field in [position.commands, position.offset, position.digest.0] {
        frame.extend_from_slice(&field.to_le_bytes());
    }
    let crc = command_crc(&frame);
    frame[CRC_RANGE].copy_from_slice(&crc.to_le_bytes());
    frame
}

/// The position a continuation marker names; its CRC is checked by the reader.
pub(crate) fn parse_marker(raw: &[u8]) -> Result<Position, ErrorKind> {
    let payload = &raw[CMD_HEADER_LEN..];
    if payload.len() != MARKER_PAYLOAD || &payload[..8] != MARKER_MAGIC {
        return Err(ErrorKind::BadContinuation);
    }
    let field = |at: usize| u64::from_le_bytes(payload[at..at + 8].try_into().expect("8 bytes"));
    let position = Position { commands: field(8), offset: field(16), digest: Digest(field(24)) };
    if position.commands == 0 {
        return Err(ErrorKind::BadContinuation);
    }
    Ok(position)
}

/// Where a partial receive stands, for the sender: one printable word without
/// spaces (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// The stream being received.
    pub identity: Identity,
    /// Where the receive continues.
    pub position: Position,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = self.body();
        write!(f, "{body}.{:08x}", token_check(&body))
    }
}

impl Token {
    /// The token without its check.
    fn body(&self) -> String {
        let Identity { uuid, ctransid, parent, version } = self.identity;
        let parent = parent.map_or_else(|| "-.-".to_owned(), |(uuid, ctransid)| format!("{uuid}.{ctransid}"));
        let Position { commands, offset, digest } = self.position;
        format!("{TOKEN_MAGIC}.{uuid}.{ctransid}.{parent}.{version}.{commands}.{offset}.{:016x}", digest.0)
    }
}

fn token_check(body: &str) -> u32 {
    Digest::EMPTY.hash(body.as_bytes()).0 as u32
}

/// A string that is not a token [`Token`]'s `Display` wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a rawsend resume token (get one with `rawsend receive --resume-token DEST/NAME`)")]
pub struct BadToken;

impl FromStr for Token {
    type Err = BadToken;

    fn from_str(text: &str) -> Result<Token, BadToken> {
        let (body, check) = text.rsplit_once('.').ok_or(BadToken)?;
        if check.len() != 8 || check != format!("{:08x}", token_check(body)) {
            return Err(BadToken);
        }
        let fields: Vec<&str> = body.split('.').collect();
        let [magic, uuid, ctransid, parent_uuid, parent_ctransid, version, commands, offset, digest] =
            fields[..]
        else {
            return Err(BadToken);
        };
        if magic != TOKEN_MAGIC || digest.len() != 16 {
            return Err(BadToken);
        }
        let parent = match (parent_uuid, parent_ctransid) {
            ("-", "-") => None,
            (uuid, ctransid) => Some((uuid.parse().map_err(|_| BadToken)?, number(ctransid)?)),
        };
        let identity = Identity {
            uuid: uuid.parse().map_err(|_| BadToken)?,
            ctransid: number(ctransid)?,
            parent,
            version: u32::try_from(number(version)?).map_err(|_| BadToken)?,
        };
        let digest = Digest(u64::from_str_radix(digest, 16).map_err(|_| BadToken)?);
        let position = Position { commands: number(commands)?, offset: number(offset)?, digest };
        let token = Token { identity, position };
        // Only the canonical spelling: what was parsed must print back the same.
        if token.to_string() != text || position.commands == 0 {
            return Err(BadToken);
        }
        Ok(token)
    }
}

fn number(text: &str) -> Result<u64, BadToken> {
    text.parse().map_err(|_| BadToken)
}

/// Why a continuation was not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContinueError {
    /// The regenerated stream is malformed or could not be read.
    #[error(transparent)]
    Stream(#[from] Error),
    /// Writing the output failed.
    #[error("cannot write the continuation: {0}")]
    Output(#[from] io::Error),
    /// The stream does not start with SUBVOL or SNAPSHOT.
    #[error("the stream does not start with SUBVOL or SNAPSHOT")]
    NoSubvolume,
    /// The stream sends another subvolume than the token's.
    #[error(
        "the token is for {token}, but this send is of {sent}: resume with the same \
         subvolume, -p/-c and --proto/--compressed-data as the interrupted send"
    )]
    OtherStream {
        /// What the token names.
        token: Box<Identity>,
        /// What the regenerated stream sends.
        sent: Box<Identity>,
    },
    /// The regenerated stream's first commands differ from those the receiver applied.
    #[error(
        "the first {commands} commands of this send differ from those the receiver applied \
         (the subvolume, its parent or a clone source changed, or other flags were given): \
         it cannot be continued; discard the partial receive and send it again"
    )]
    PrefixDiffers {
        /// Commands compared.
        commands: u64,
    },
    /// The regenerated stream ends before the token's position.
    #[error("this send has only {commands} commands, fewer than the receiver applied")]
    TooShort {
        /// Commands in the stream.
        commands: u64,
    },
}

/// About how long the continuation from `token` of a stream of `stream_len` bytes is:
/// what the receiver lacks, the stream header and the marker (the SUBVOL or SNAPSHOT
/// repeated, a few dozen bytes, is not counted), for a progress total.
pub fn continuation_len(stream_len: u64, token: &Token) -> u64 {
    let overhead = (STREAM_HEADER_LEN + CMD_HEADER_LEN + MARKER_PAYLOAD) as u64;
    stream_len.saturating_sub(token.position.offset) + overhead
}

/// What [`write_continuation`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Continued {
    /// Commands of the stream read.
    pub commands: u64,
    /// Bytes of the stream read.
    pub read: u64,
    /// Bytes written (the continuation).
    pub written: u64,
}

/// Reads one subvolume's stream (the sender's regenerated stream) and writes its
/// continuation from `token`'s position (see the module docs).
///
/// # Errors
///
/// A [`ContinueError`]; nothing more is written after one.
pub fn write_continuation(
    input: impl Read,
    mut output: impl Write,
    token: &Token,
) -> Result<Continued, ContinueError> {
    let mut reader = StreamReader::new(input);
    let mut done = Continued::default();
    let version = match reader.next()? {
        Some(Item::Header { version, .. }) => version,
        _ => return Err(ContinueError::NoSubvolume),
    };
    let mut position = Position::start(reader.offset());
    let mut emit = |bytes: &[u8], done: &mut Continued| -> io::Result<()> {
        done.written += bytes.len() as u64;
        output.write_all(bytes)
    };
    loop {
        let Some(Item::Command(record)) = reader.next()? else {
            return Err(ContinueError::TooShort { commands: position.commands });
        };
        let skipped = position.commands < token.position.commands;
        position = position.after(record.raw);
        if position.commands == 1 {
            let sent = Identity::of(&record.command, version).ok_or(ContinueError::NoSubvolume)?;
            if sent != token.identity {
                return Err(ContinueError::OtherStream {
                    token: Box::new(token.identity),
                    sent: Box::new(sent),
                });
            }
            emit(&StreamHeader { version }.to_bytes(), &mut done)?;
            emit(&continuation_marker(&token.position), &mut done)?;
            emit(record.raw, &mut done)?;
        } else if !skipped {
            emit(record.raw, &mut done)?;
        }
        if position.commands == token.position.commands && position != token.position {
            return Err(ContinueError::PrefixDiffers { commands: position.commands });
        }
        if matches!(record.command, Command::End) {
            if position.commands < token.position.commands {
                return Err(ContinueError::TooShort { commands: position.commands });
            }
            done.commands = position.commands;
            done.read = reader.offset();
            output.flush()?;
            return Ok(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::StreamPath;
    use crate::writer::StreamWriter;

    fn identity() -> Identity {
        Identity { uuid: Uuid([0xab; 16]), ctransid: 42, parent: Some((Uuid([3; 16]), 7)), version: 2 }
    }

    fn token(commands: u64) -> Token {
        Token { identity: identity(), position: Position { commands, offset: 99, digest: Digest(0x1234) } }
    }

    #[test]
    fn tokens_print_as_one_word_and_parse_back_exactly() {
        for token in [token(5), Token { identity: Identity { parent: None, ..identity() }, ..token(1) }] {
            let text = token.to_string();
            assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text}");
            assert_eq!(text.parse(), Ok(token));
        }
    }

    #[test]
    fn damaged_or_forged_tokens_are_refused() {
        let good = token(5).to_string();
        let mut variants = vec![
            String::new(),
            good[..good.len() - 1].to_owned(),
            good.replace("rawsend1", "rawsend2"),
            good.to_uppercase(),
            format!("{good} "),
            format!(" {good}"),
            format!("{good}.0"),
        ];
        // Every single-character change is caught by the check.
        for at in 0..good.len() {
            let mut bytes = good.clone().into_bytes();
            bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
            variants.push(String::from_utf8(bytes).expect("ascii"));
        }
        for bad in variants {
            assert_eq!(bad.parse::<Token>(), Err(BadToken), "{bad:?}");
        }
        assert_eq!(token(0).to_string().parse::<Token>(), Err(BadToken), "no commands applied");
    }

    /// A v2 stream: SUBVOL, `count` MKFILEs, END.
    fn stream(count: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut writer = StreamWriter::new(&mut bytes, 2).expect("header");
        let path = StreamPath::new(b"vol").expect("path");
        writer.write(&Command::Subvol { path, uuid: Uuid([0xab; 16]), ctransid: 42 }).expect("subvol");
        for i in 0..count {
            let name = format!("f{i}");
            let path = StreamPath::new(name.as_bytes()).expect("path");
            writer.write(&Command::Mkfile { path, ino: 257 + i as u64 }).expect("mkfile");
        }
        writer.write(&Command::End).expect("end");
        writer.finish().expect("flush");
        bytes
    }

    /// The position after the first `commands` commands of `bytes`, and the raw rest.
    fn split(bytes: &[u8], commands: u64) -> (Position, Vec<u8>) {
        let mut reader = StreamReader::new(bytes);
        let mut position = None;
        let mut rest = Vec::new();
        while let Some(item) = reader.next().expect("valid") {
            match item {
                Item::Header { .. } => position = Some(Position::start(reader.offset())),
                Item::Command(record) => {
                    let at = position.expect("header first");
                    if at.commands < commands {
                        position = Some(at.after(record.raw));
                    } else {
                        rest.extend_from_slice(record.raw);
                    }
                }
                Item::Continue { .. } => panic!("no marker in a plain stream"),
            }
        }
        (position.expect("stream"), rest)
    }

    #[test]
    fn continuations_carry_the_first_command_and_the_rest() {
        let full = stream(10);
        let subvol_identity = Identity { parent: None, ..identity() };
        for commands in [1, 2, 7, 11, 12] {
            let (position, rest) = split(&full, commands);
            let token = Token { identity: subvol_identity, position };
            let mut out = Vec::new();
            let done = write_continuation(&full[..], &mut out, &token).expect("continuation");
            let first = &full[17..split(&full, 1).0.offset as usize];
            let marker = continuation_marker(&position);
            let expected = [&full[..17], &marker[..], first, &rest[..]].concat();
            assert_eq!(out, expected, "after {commands} commands");
            assert_eq!(done, Continued { commands: 12, read: full.len() as u64, written: out.len() as u64 });
            assert_eq!(continuation_len(full.len() as u64, &token) + first.len() as u64, out.len() as u64);
            let mut reader = StreamReader::new(&out[..]);
            assert!(matches!(reader.next(), Ok(Some(Item::Header { version: 2, .. }))));
            match reader.next() {
                Ok(Some(Item::Continue { position: read, .. })) => assert_eq!(read, position),
                other => panic!("expected the marker, got {other:?}"),
            }
        }
    }

    #[test]
    fn mismatched_streams_are_refused() {
        let full = stream(10);
        let (position, _) = split(&full, 5);
        let identity = Identity { parent: None, ..identity() };
        let write = |token: Token, input: &[u8]| write_continuation(input, &mut Vec::new(), &token);
        let other = Identity { ctransid: 43, ..identity };
        assert!(matches!(
            write(Token { identity: other, position }, &full),
            Err(ContinueError::OtherStream { .. })
        ));
        let forged = Position { digest: Digest(position.digest.0 ^ 1), ..position };
        assert!(matches!(
            write(Token { identity, position: forged }, &full),
            Err(ContinueError::PrefixDiffers { commands: 5 })
        ));
        let longer = Position { offset: position.offset + 1, ..position };
        assert!(matches!(
            write(Token { identity, position: longer }, &full),
            Err(ContinueError::PrefixDiffers { .. })
        ));
        let (beyond, _) = split(&stream(20), 15);
        assert!(matches!(
            write(Token { identity, position: beyond }, &full),
            Err(ContinueError::TooShort { commands: 12 })
        ));
        assert!(matches!(
            write(Token { identity, position }, &full[..full.len() - 3]),
            Err(ContinueError::Stream(_))
        ));
    }

    #[test]
    fn markers_round_trip_and_refuse_damage() {
        let position = Position { commands: 3, offset: 4096, digest: Digest(77) };
        let marker = continuation_marker(&position);
        assert_eq!(parse_marker(&marker), Ok(position));
        let mut bad = marker.clone();
        bad[CMD_HEADER_LEN] ^= 1;
        assert_eq!(parse_marker(&bad), Err(ErrorKind::BadContinuation));
        let zero = continuation_marker(&Position { commands: 0, ..position });
        assert_eq!(parse_marker(&zero), Err(ErrorKind::BadContinuation));
    }
}
